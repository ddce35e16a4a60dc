package extauthz

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/internal/authztest"
	"github.com/keygate/keygate/keystore"
)

// BenchmarkCheck measures the cached decision path as serve runs it
// (NewGRPCServer's handler, which sends the shared pre-encoded responses):
// a realistic 12-header CheckRequest with a valid key whose record is in
// the real keystore.Cache, metrics on, from decoded request to encoded
// response (gRPC transport excluded).
func BenchmarkCheck(b *testing.B) {
	w := authztest.NewWorld(b)
	cache, err := keystore.NewCache(w.Lookup, keystore.CacheOptions{})
	if err != nil {
		b.Fatal(err)
	}
	s := newTestServer(b, cache, func(c *authz.Config) {
		c.Metrics = authz.NewMetrics(prometheus.NewRegistry())
		c.Now = nil // the real clock: cache freshness and metrics use it
	})
	cases := map[string]map[string]string{
		"allow":        {"x-api-key": w.Plain.Secret},
		"allow-bearer": {"authorization": "Bearer " + w.Plain.Secret},
		"deny-missing": {},
		"deny-invalid": {"x-api-key": "kg_not-a-key"},
	}
	for name, headers := range cases {
		req := viewFor(envoyRequest("GET", "/api/v1/projects/42/builds?page=2", headers, nil))
		b.Run(name, func(b *testing.B) {
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if r := s.respond(ctx, req); r.wire == nil {
					b.Fatal("not a shared, pre-encoded response")
				}
			}
		})
	}
	req := viewFor(envoyRequest("GET", "/api/v1/projects/42", map[string]string{"x-api-key": w.Plain.Secret}, map[string]string{"module": "projects"}))
	b.Run("allow-route-module", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			s.respond(context.Background(), req)
		}
	})
	// With a failure limit: each request checks its source's budget.
	limited := newTestServer(b, cache, func(c *authz.Config) {
		c.Metrics = authz.NewMetrics(prometheus.NewRegistry())
		c.Now = nil
		c.FailureLimit = authz.FailureLimit{Count: 20, Window: time.Minute}
	})
	b.Run("allow-failure-limit", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if r := limited.respond(context.Background(), req); r.wire == nil {
				b.Fatal("not a shared, pre-encoded response")
			}
		}
	})
	// The client's address from X-Forwarded-For (--xff-trusted-hops 0).
	xff := New(s.core, Options{TrustXFF: true})
	req = viewFor(envoyRequest("GET", "/api/v1/projects/42/builds?page=2", map[string]string{"x-api-key": w.Plain.Secret}, nil))
	b.Run("allow-xff", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if r := xff.respond(context.Background(), req); r.wire == nil {
				b.Fatal("not a shared, pre-encoded response")
			}
		}
	})
}

// discardSpans is a span exporter that keeps nothing.
type discardSpans struct{}

func (discardSpans) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (discardSpans) Shutdown(context.Context) error                             { return nil }

// BenchmarkCheckTraced is BenchmarkCheck's allow with tracing on, every
// decision sampled, spans batched to an exporter that drops them: the
// cost tracing adds to a decision (a span with its attributes, the W3C
// parent read from the request's traceparent).
//
//	go test ./authz/extauthz -run '^$' -bench 'BenchmarkCheck(Traced)?/allow$' -benchmem
func BenchmarkCheckTraced(b *testing.B) {
	w := authztest.NewWorld(b)
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()), sdktrace.WithBatcher(discardSpans{}))
	b.Cleanup(func() { tp.Shutdown(context.Background()) })
	cache, err := keystore.NewCache(w.Lookup, keystore.CacheOptions{Tracer: tp.Tracer("bench")})
	if err != nil {
		b.Fatal(err)
	}
	s := newTestServer(b, cache, func(c *authz.Config) {
		c.Metrics = authz.NewMetrics(prometheus.NewRegistry())
		c.Tracer = tp.Tracer("bench")
		c.Now = nil
	})
	req := viewFor(envoyRequest("GET", "/api/v1/projects/42/builds?page=2", map[string]string{"x-api-key": w.Plain.Secret,
		"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}, nil))
	b.Run("allow", func(b *testing.B) {
		ctx := context.Background()
		b.ReportAllocs()
		for b.Loop() {
			s.respond(ctx, req)
		}
	})
}
