package grpcmetrics

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// handlerTime is how long each compared call's handler takes.
const handlerTime = time.Millisecond

var buckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1}

// server is a gRPC server with a unary and a streaming method (health's
// Check and Watch), for Initialize.
func server(t testing.TB) *grpc.Server {
	s := grpc.NewServer()
	healthpb.RegisterHealthServer(s, health.NewServer())
	t.Cleanup(s.Stop)
	return s
}

// calls is what the comparison drives through both interceptors: every
// way a handler's error maps to a code, on a registered method and on one
// the server does not have.
var calls = []struct {
	method string
	err    error
}{
	{"/grpc.health.v1.Health/Check", nil},
	{"/grpc.health.v1.Health/Check", nil},
	{"/grpc.health.v1.Health/Check", status.Error(codes.Unavailable, "down")},
	{"/grpc.health.v1.Health/Check", status.Error(codes.PermissionDenied, "no")},
	{"/grpc.health.v1.Health/Check", context.Canceled},
	{"/grpc.health.v1.Health/Check", context.DeadlineExceeded},
	{"/grpc.health.v1.Health/Check", fmt.Errorf("wrapped: %w", context.DeadlineExceeded)},
	{"/grpc.health.v1.Health/Check", errors.New("not a status")},
	{"/grpc.health.v1.Health/Check", status.Error(codes.Code(42), "beyond the known codes")},
	{"/grpc.health.v1.Health/Watch", nil}, // a stream's name through the unary interceptor: labelled unary
	{"/other.Service/Method", nil},
	{"/other.Service/Method", status.Error(codes.Internal, "x")},
	{"no-slash", nil},
}

// TestSameSeriesAsGRPCProm: the same calls through the provider's
// interceptor and through this package's gather to the same families,
// series and values. Durations differ between two runs: each histogram's
// count is compared, and its sum must be the calls' time in seconds.
func TestSameSeriesAsGRPCProm(t *testing.T) {
	theirs := grpcprom.NewServerMetrics(grpcprom.WithServerHandlingTimeHistogram(grpcprom.WithHistogramBuckets(buckets)))
	ours := New(buckets)
	gathered := map[string][]*dto.MetricFamily{}
	for name, m := range map[string]interface {
		prometheus.Collector
	}{"grpcprom": theirs, "grpcmetrics": ours} {
		reg := prometheus.NewRegistry()
		reg.MustRegister(m)
		var ic grpc.UnaryServerInterceptor
		switch m := m.(type) {
		case *grpcprom.ServerMetrics:
			m.InitializeMetrics(server(t))
			ic = m.UnaryServerInterceptor()
		case *Metrics:
			m.Initialize(server(t))
			ic = m.UnaryServerInterceptor()
		}
		began := time.Now()
		for _, c := range calls {
			resp, err := ic(t.Context(), "request", &grpc.UnaryServerInfo{FullMethod: c.method},
				func(context.Context, any) (any, error) {
					time.Sleep(handlerTime)
					return "answer", c.err
				})
			if resp != "answer" || !errors.Is(err, c.err) {
				t.Fatalf("%s: the interceptor returned (%v, %v), want the handler's (answer, %v)", name, resp, err, c.err)
			}
		}
		took := time.Since(began)
		fams, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range fams {
			for _, m := range f.Metric {
				m.TimestampMs = nil
				if c := m.Counter; c != nil {
					c.CreatedTimestamp = nil
				}
				if h := m.Histogram; h != nil {
					// Durations differ between the two runs: each sum must be
					// the calls' time in seconds (each call slept handlerTime,
					// all of them took took), not where exactly it fell.
					if n := float64(h.GetSampleCount()); h.GetSampleSum() < n*handlerTime.Seconds() || h.GetSampleSum() > took.Seconds() {
						t.Errorf("%s: %s %v: %d calls summed to %vs, want between %vs and %vs", name, f.GetName(), m.Label,
							h.GetSampleCount(), h.GetSampleSum(), n*handlerTime.Seconds(), took.Seconds())
					}
					h.CreatedTimestamp, h.SampleSum = nil, nil
					for _, b := range h.Bucket {
						b.CumulativeCount = nil
					}
				}
			}
		}
		gathered[name] = fams
	}
	theirFams, ourFams := gathered["grpcprom"], gathered["grpcmetrics"]
	if len(theirFams) != 5 {
		t.Fatalf("grpcprom gathered %d families, want 5", len(theirFams))
	}
	if len(ourFams) != len(theirFams) {
		t.Fatalf("gathered %d families, grpcprom %d", len(ourFams), len(theirFams))
	}
	series := 0
	for i := range theirFams {
		series += len(theirFams[i].Metric)
		if !proto.Equal(ourFams[i], theirFams[i]) {
			t.Errorf("family %s differs:\n ours:     %v\n grpcprom: %v", theirFams[i].GetName(), ourFams[i], theirFams[i])
		}
	}
	// Health's Check and Watch, created at zero (17 codes each), plus the
	// two unregistered methods' series, in both.
	if series < 2*(4+17) {
		t.Errorf("compared %d series, want at least %d", series, 2*(4+17))
	}
}

// BenchmarkUnaryInterceptor is the cost of one measured call, the
// provider's against this package's, in the same run.
func BenchmarkUnaryInterceptor(b *testing.B) {
	info := &grpc.UnaryServerInfo{FullMethod: "/grpc.health.v1.Health/Check"}
	handler := func(_ context.Context, req any) (any, error) { return req, nil }
	theirs := grpcprom.NewServerMetrics(grpcprom.WithServerHandlingTimeHistogram(grpcprom.WithHistogramBuckets(buckets)))
	theirs.InitializeMetrics(server(b))
	ours := New(buckets)
	ours.Initialize(server(b))
	for name, ic := range map[string]grpc.UnaryServerInterceptor{
		"grpcprom":    theirs.UnaryServerInterceptor(),
		"grpcmetrics": ours.UnaryServerInterceptor(),
	} {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					_, _ = ic(context.Background(), "request", info, handler)
				}
			})
		})
	}
}
