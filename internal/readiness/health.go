package readiness

import (
	"context"
	"slices"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

// RegisterHealth serves gRPC health (grpc.health.v1.Health) from s on g.
func (s *Status) RegisterHealth(g grpc.ServiceRegistrar) {
	healthpb.RegisterHealthServer(g, health{s: s})
}

// health is the gRPC health service over a Status: every service it
// knows has the Status's one state.
type health struct {
	healthpb.UnimplementedHealthServer
	s *Status
}

// servingStatus is the health status of the state ready.
func servingStatus(ready bool) healthpb.HealthCheckResponse_ServingStatus {
	if ready {
		return healthpb.HealthCheckResponse_SERVING
	}
	return healthpb.HealthCheckResponse_NOT_SERVING
}

func (h health) Check(_ context.Context, req *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	if !slices.Contains(h.s.services, req.GetService()) {
		return nil, status.Error(codes.NotFound, "unknown service")
	}
	ready, _ := h.s.Ready()
	return &healthpb.HealthCheckResponse{Status: servingStatus(ready)}, nil
}

func (h health) List(context.Context, *healthpb.HealthListRequest) (*healthpb.HealthListResponse, error) {
	ready, _ := h.s.Ready()
	out := &healthpb.HealthListResponse{Statuses: map[string]*healthpb.HealthCheckResponse{}}
	for _, name := range h.s.services {
		out.Statuses[name] = &healthpb.HealthCheckResponse{Status: servingStatus(ready)}
	}
	return out, nil
}

// Watch sends the status at once and then at every change. At shutdown it
// sends NOT_SERVING (unless that was the last status sent) and then ends
// the stream, so that an open Watch does not hold a graceful stop. A
// service it does not know is SERVICE_UNKNOWN, not an error, as grpc-go's
// health server answers.
func (h health) Watch(req *healthpb.HealthCheckRequest, stream grpc.ServerStreamingServer[healthpb.HealthCheckResponse]) error {
	known := slices.Contains(h.s.services, req.GetService())
	last := healthpb.HealthCheckResponse_ServingStatus(-1)
	for {
		ready, stopping, changed := h.s.state()
		st := healthpb.HealthCheckResponse_SERVICE_UNKNOWN
		if known {
			st = servingStatus(ready)
		}
		if st != last {
			if err := stream.Send(&healthpb.HealthCheckResponse{Status: st}); err != nil {
				return err
			}
			last = st
		}
		if stopping {
			return status.Error(codes.Unavailable, "shutting down")
		}
		select {
		case <-changed:
		case <-stream.Context().Done():
			return status.Error(codes.Canceled, "stream ended")
		}
	}
}
