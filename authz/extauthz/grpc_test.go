package extauthz

import (
	"context"
	"net"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/keygate/keygate/internal/authztest"
)

// serveGRPC runs NewGRPCServer on loopback and returns a client.
func serveGRPC(t *testing.T, s *Server, opts ...grpc.ServerOption) authv3.AuthorizationClient {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := NewGRPCServer(s, opts...)
	go g.Serve(lis)
	t.Cleanup(g.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
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
