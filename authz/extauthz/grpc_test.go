package extauthz

import (
	"bytes"
	"context"
	"net"
	"reflect"
	"strings"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/internal/authztest"
)

// serveGRPCAddr runs NewGRPCServer on loopback and returns its address.
func serveGRPCAddr(t *testing.T, s *Server, opts ...grpc.ServerOption) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := NewGRPCServer(s, opts...)
	go g.Serve(lis)
	t.Cleanup(g.Stop)
	return lis.Addr().String()
}

// serveGRPC runs NewGRPCServer on loopback and returns a client.
func serveGRPC(t *testing.T, s *Server, opts ...grpc.ServerOption) authv3.AuthorizationClient {
	t.Helper()
	conn, err := grpc.NewClient(serveGRPCAddr(t, s, opts...), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return authv3.NewAuthorizationClient(conn)
}

// The pre-encoded responses on the wire are exactly what Check returns.
func TestGRPCServerSendsTheDecision(t *testing.T) {
	w := authztest.NewWorld(t)
	s := newTestServer(t, w.Lookup, nil)
	var intercepted []any
	plainClient := serveGRPC(t, s)
	interceptedClient := serveGRPC(t, s, grpc.UnaryInterceptor(
		func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			resp, err := h(ctx, req)
			intercepted = append(intercepted, resp)
			return resp, err
		}))
	for name, req := range map[string]*authv3.CheckRequest{
		"allow":  envoyRequest("GET", "/api/v1/projects", map[string]string{"x-api-key": w.Plain.Secret}, nil),
		"forged": envoyRequest("GET", "/api/v1/projects", map[string]string{"x-api-key": w.Plain.Secret, "x-keygate-x": "1"}, nil),
		"deny":   envoyRequest("GET", "/api/v1/users", map[string]string{"x-api-key": w.Plain.Secret}, nil),
	} {
		want, _ := s.Check(context.Background(), req)
		for _, client := range []authv3.AuthorizationClient{plainClient, interceptedClient} {
			for i := 0; i < 2; i++ { // the second time from the shared responses
				got, err := client.Check(context.Background(), req)
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
					t.Fatalf("%s: on the wire (-want +got):\n%s", name, diff)
				}
			}
		}
	}
	for _, r := range intercepted {
		if _, ok := r.(proto.Message); !ok {
			t.Fatalf("an interceptor saw a %T, want the generated response type", r)
		}
	}
}

// rawCodec sends requests as the bytes given, and decodes responses as
// protobuf: a client that can send what no protobuf encoder would.
type rawCodec struct{}

func (rawCodec) Name() string { return "proto" }
func (rawCodec) Marshal(v any) ([]byte, error) {
	if b, ok := v.([]byte); ok {
		return b, nil
	}
	return proto.Marshal(v.(proto.Message))
}
func (rawCodec) Unmarshal(data []byte, v any) error { return proto.Unmarshal(data, v.(proto.Message)) }

// A CheckRequest that cannot be decoded gets a denial, never a gRPC error
// (with failure_mode_allow, Envoy lets a gRPC error through).
func TestUndecodableCheckRequestsAreDenied(t *testing.T) {
	w := authztest.NewWorld(t)
	s := newTestServer(t, w.Lookup, nil)
	addr := serveGRPCAddr(t, s)
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(32<<20)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	valid, err := proto.Marshal(envoyRequest("GET", "/api/v1/projectsZZ", map[string]string{"x-api-key": w.Plain.Secret}, nil))
	if err != nil {
		t.Fatal(err)
	}
	badUTF8 := bytes.Replace(valid, []byte("projectsZZ"), []byte("projects\xff\xfe"), 1)
	for name, in := range map[string][]byte{
		"garbage":                  {0xff, 0xff, 0xff, 0x01},
		"truncated":                valid[:len(valid)/2],
		"invalid UTF-8 in a field": badUTF8,
	} {
		t.Run(name, func(t *testing.T) {
			var out authv3.CheckResponse
			err := conn.Invoke(context.Background(), authv3.Authorization_Check_FullMethodName, in, &out, grpc.ForceCodec(rawCodec{}))
			if err != nil {
				t.Fatalf("gRPC error %v; want a 400 invalid_request CheckResponse", err)
			}
			if diff := cmp.Diff(deniedWith(authz.InvalidRequest), &out, protocmp.Transform()); diff != "" {
				t.Fatalf("(-want +got):\n%s", diff)
			}
		})
	}

	// The largest headers Envoy allows (max_request_headers_kb up to 8 MiB)
	// are decided, not refused by gRPC's default 4 MiB limit.
	big := envoyRequest("GET", "/api/v1/projects", map[string]string{"x-api-key": w.Plain.Secret, "x-big": strings.Repeat("b", 8<<20-1024)}, nil)
	resp, err := authv3.NewAuthorizationClient(conn).Check(context.Background(), big)
	if err != nil || resp.GetOkResponse() == nil {
		t.Fatalf("an 8 MiB CheckRequest: %v, %v; want an allow", resp.GetStatus(), err)
	}
}

// The service NewGRPCServer registers is go-control-plane's generated
// descriptor with only the Check handler replaced, and that descriptor is
// still the one the handler was written for: an upgrade that changes the
// service (a method added, renamed or streaming, other message types,
// another proto file) fails here instead of drifting unseen.
func TestAuthorizationServiceIsTheGenerated(t *testing.T) {
	gen := authv3.Authorization_ServiceDesc
	handler := func(d grpc.ServiceDesc) uintptr { return reflect.ValueOf(d.Methods[0].Handler).Pointer() }

	// The generated descriptor, as checkHandler expects it.
	if gen.ServiceName != "envoy.service.auth.v3.Authorization" || gen.Metadata != "envoy/service/auth/v3/external_auth.proto" ||
		len(gen.Methods) != 1 || gen.Methods[0].MethodName != "Check" || len(gen.Streams) != 0 ||
		reflect.TypeOf(gen.HandlerType) != reflect.TypeOf((*authv3.AuthorizationServer)(nil)) {
		t.Fatalf("go-control-plane's Authorization descriptor changed: %+v; check checkHandler against it", gen)
	}
	svc := authv3.File_envoy_service_auth_v3_external_auth_proto.Services().ByName("Authorization")
	if svc == nil || svc.Methods().Len() != 1 {
		t.Fatal("the Authorization service is not in the proto file, or has other methods")
	}
	m := svc.Methods().Get(0)
	if m.Name() != "Check" || m.IsStreamingClient() || m.IsStreamingServer() ||
		m.Input().FullName() != (&authv3.CheckRequest{}).ProtoReflect().Descriptor().FullName() ||
		m.Output().FullName() != (&authv3.CheckResponse{}).ProtoReflect().Descriptor().FullName() {
		t.Fatalf("Authorization/Check is now %s(%s) returns %s; check checkHandler against it", m.Name(), m.Input().FullName(), m.Output().FullName())
	}

	// The registered descriptor: the generated one, the handler aside.
	got := authorizationService
	if handler(got) != reflect.ValueOf(checkHandler).Pointer() {
		t.Fatal("the registered Check handler is not checkHandler")
	}
	if handler(gen) == handler(got) {
		t.Fatal("the generated descriptor's handler was replaced in place")
	}
	got.Methods, gen.Methods = nil, nil
	if !reflect.DeepEqual(got, gen) || ServiceName != gen.ServiceName {
		t.Fatalf("registered %+v, want the generated %+v", got, gen)
	}
}
