package extauthz

import (
	"context"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	protocodec "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
)

// NewGRPCServer returns a gRPC server answering Envoy's
// envoy.service.auth.v3.Authorization service with s. Its codec sends the
// shared responses in their pre-encoded form and is protobuf for everything
// else, so other services (health, reflection) may be registered on it too.
func NewGRPCServer(s *Server, opts ...grpc.ServerOption) *grpc.Server {
	g := grpc.NewServer(append(opts, grpc.ForceServerCodecV2(codec{fallback: encoding.GetCodecV2(protocodec.Name)}))...)
	g.RegisterService(&authorizationService, s)
	return g
}

// authorizationService is Envoy's Authorization service (the same name,
// method and proto file as the generated descriptor, so that clients and
// reflection see no difference), with a handler that returns *response.
var authorizationService = grpc.ServiceDesc{
	ServiceName: "envoy.service.auth.v3.Authorization",
	HandlerType: (*authv3.AuthorizationServer)(nil),
	Methods: []grpc.MethodDesc{{
		MethodName: "Check",
		Handler: func(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
			in := new(authv3.CheckRequest)
			if err := dec(in); err != nil {
				return nil, err
			}
			s := srv.(*Server)
			if interceptor == nil {
				return s.respond(ctx, in), nil
			}
			// Interceptors expect the generated types: give them the plain
			// method, whose responses are their own.
			info := &grpc.UnaryServerInfo{Server: srv, FullMethod: authv3.Authorization_Check_FullMethodName}
			return interceptor(ctx, in, info, func(ctx context.Context, req any) (any, error) {
				return s.Check(ctx, req.(*authv3.CheckRequest))
			})
		},
	}},
	Streams:  []grpc.StreamDesc{},
	Metadata: "envoy/service/auth/v3/external_auth.proto",
}

// codec is the server codec: protobuf, with *response sent as encoded.
type codec struct{ fallback encoding.CodecV2 }

func (codec) Name() string { return protocodec.Name }

func (c codec) Marshal(v any) (mem.BufferSlice, error) {
	if r, ok := v.(*response); ok {
		if r.wire != nil {
			// Shared, never written to: gRPC only reads it, and
			// SliceBuffer's Free does nothing.
			return mem.BufferSlice{mem.SliceBuffer(r.wire)}, nil
		}
		v = r.msg
	}
	return c.fallback.Marshal(v)
}

func (c codec) Unmarshal(data mem.BufferSlice, v any) error { return c.fallback.Unmarshal(data, v) }
