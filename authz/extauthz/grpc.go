package extauthz

import (
	"context"
	"slices"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	protocodec "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
)

// MaxRequestSize is the largest CheckRequest NewGRPCServer receives
// (unless an option says otherwise). Envoy sends at most its
// max_request_headers_kb of headers (at most 8 MiB), once, plus well under
// a KiB of attributes, and keygate never asks for the body; 16 MiB leaves
// room for the header_map encoding. gRPC refuses a larger message with a
// gRPC error before the handler sees it, so the limit must be above
// anything Envoy sends.
const MaxRequestSize = 16 << 20

// NewGRPCServer returns a gRPC server answering Envoy's
// envoy.service.auth.v3.Authorization service with s. Its codec sends the
// shared responses in their pre-encoded form and is protobuf for everything
// else, so other services (health, reflection) may be registered on it too.
func NewGRPCServer(s *Server, opts ...grpc.ServerOption) *grpc.Server {
	opts = append([]grpc.ServerOption{grpc.MaxRecvMsgSize(MaxRequestSize)}, opts...)
	g := grpc.NewServer(append(opts, grpc.ForceServerCodecV2(codec{fallback: encoding.GetCodecV2(protocodec.Name)}))...)
	g.RegisterService(&authorizationService, s)
	return g
}

// authorizationService is the generated descriptor of Envoy's
// Authorization service with one change: its Check handler returns
// *response (see codec). The service name, methods, streams and proto file
// are the generated ones, so that clients and reflection see no difference
// and an upgrade of go-control-plane cannot drift from them unseen.
var authorizationService = withHandler(authv3.Authorization_ServiceDesc, "Check", checkHandler)

// ServiceName is the gRPC service NewGRPCServer answers, as the generated
// descriptor names it: gRPC health reports on it by name.
var ServiceName = authorizationService.ServiceName

// withHandler is desc with the handler of its unary method named method
// replaced by h. Without such a method desc is returned as it is (still a
// working service, through Server.Check); the tests fail on that.
func withHandler(desc grpc.ServiceDesc, method string, h grpc.MethodHandler) grpc.ServiceDesc {
	desc.Methods = slices.Clone(desc.Methods)
	for i := range desc.Methods {
		if desc.Methods[i].MethodName == method {
			desc.Methods[i].Handler = h
		}
	}
	return desc
}

// checkHandler is the Check handler: as the generated one, but it decodes
// into a checkInput (an undecodable request is a denial, not a gRPC error)
// and returns the *response of Server.respond.
func checkHandler(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
	s := srv.(*Server)
	input := new(checkInput)
	if err := dec(input); err != nil {
		return nil, err // the stream failed; gRPC has answered already
	}
	if input.undecodable {
		// Garbage, or invalid UTF-8 in a string field: a denial, never a
		// gRPC error, which Envoy's failure_mode_allow would let through.
		return s.undecodable(ctx), nil
	}
	if interceptor == nil {
		return s.respond(ctx, &input.view), nil
	}
	// Interceptors see proto messages: the request (empty when the codec
	// read its view straight from the wire; keygate's interceptors count,
	// they do not read it), and the shared response (a proto.Message they
	// must not modify).
	info := &grpc.UnaryServerInfo{Server: srv, FullMethod: authv3.Authorization_Check_FullMethodName}
	return interceptor(ctx, &input.req, info, func(ctx context.Context, _ any) (any, error) {
		return s.respond(ctx, &input.view), nil
	})
}

// checkInput is what the Check handler decodes into: the view of the
// request a decision reads, or the fact that it could not be decoded.
// gRPC answers a decoding error itself, with a gRPC error, before the
// handler can say anything; the codec reports it here instead, so that the
// handler answers with a denial.
type checkInput struct {
	view        requestView
	req         authv3.CheckRequest // decoded by proto.Unmarshal when decodeView declined
	undecodable bool
	headers     [16]headerField // view.headers' first backing array
}

// codec is the server codec: protobuf, with *response sent as encoded and
// *checkInput decoded without failing.
type codec struct{ fallback encoding.CodecV2 }

func (codec) Name() string { return protocodec.Name }

func (c codec) Marshal(v any) (mem.BufferSlice, error) {
	if r, ok := v.(*response); ok {
		if r.wire != nil {
			// Shared, never written to: gRPC only reads it, and
			// SliceBuffer's Free does nothing.
			return mem.BufferSlice{mem.SliceBuffer(r.wire)}, nil
		}
		v = r.CheckResponse
	}
	return c.fallback.Marshal(v)
}

func (c codec) Unmarshal(data mem.BufferSlice, v any) error {
	in, ok := v.(*checkInput)
	if !ok {
		return c.fallback.Unmarshal(data, v)
	}
	// A copy of its own (gRPC reuses data's buffers), which the view's
	// strings point into.
	b := data.Materialize()
	in.view.headers = in.headers[:0]
	if decodeView(b, &in.view) {
		return nil
	}
	in.view = requestView{headers: in.headers[:0]}
	if err := proto.Unmarshal(b, &in.req); err != nil {
		in.req.Reset()
		in.undecodable = true
		return nil
	}
	viewOf(&in.req, &in.view)
	return nil
}
