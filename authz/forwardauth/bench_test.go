package forwardauth

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/internal/authztest"
	"github.com/keygate/keygate/keystore"
)

// discard is the least a ResponseWriter can be: it keeps its header map
// across requests, as net/http's does within one response.
type discard struct {
	h      http.Header
	status int
}

func (w *discard) Header() http.Header         { return w.h }
func (w *discard) Write(b []byte) (int, error) { return len(b), nil }
func (w *discard) WriteHeader(status int)      { w.status = status }

// benchCase is one request of the benchmark.
type benchCase struct {
	name string
	req  *http.Request
	want int
}

// benchCases returns the handler as serve runs it (the key's record in
// the real keystore.Cache, metrics on, the real clock) and requests as
// Caddy, nginx or Envoy send them: forwarded headers and the client's.
func benchCases(tb testing.TB) (*Handler, []benchCase) {
	w := authztest.NewWorld(tb)
	cache, err := keystore.NewCache(w.Lookup, keystore.CacheOptions{})
	if err != nil {
		tb.Fatal(err)
	}
	h := newTestHandler(tb, cache, func(c *authz.Config, _ *Options) {
		c.Metrics = authz.NewMetrics(prometheus.NewRegistry())
		c.Now = nil // the real clock: cache freshness and metrics use it
	})
	client := map[string]string{
		"Host": "api.example.com", "User-Agent": "curl/8.5.0", "Accept": "*/*",
		"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "api.example.com",
		"X-Request-Id": "8c1f0e9c-63f5-4c1b-9f1a-2d8a1b6f3e77",
	}
	const path = "/api/v1/projects/42/builds?page=2"
	specs := []struct {
		name, target, uri string // uri: X-Forwarded-Uri, "" for none
		key               map[string]string
		want              int
	}{
		{"allow", AuthPath, path, map[string]string{"X-Api-Key": w.Plain.Secret}, 200},
		{"allow-bearer", AuthPath, path, map[string]string{"Authorization": "Bearer " + w.Plain.Secret}, 200},
		{"allow-envoy", DefaultEnvoyPrefix + path, "", map[string]string{"X-Api-Key": w.Plain.Secret}, 200},
		{"deny-missing", AuthPath, path, nil, 401},
		{"deny-invalid", AuthPath, path, map[string]string{"X-Api-Key": "kg_not-a-key"}, 401},
		{"deny-restricted", AuthPath, "/api/v1/users/42", map[string]string{"X-Api-Key": w.Plain.Secret}, 403},
		{"deny-forwarded", AuthPath, "", map[string]string{"X-Api-Key": w.Plain.Secret}, 400},
	}
	var cases []benchCase
	for _, s := range specs {
		r := httptest.NewRequest("GET", s.target, nil)
		for k, v := range client {
			r.Header.Set(k, v)
		}
		for k, v := range s.key {
			r.Header.Set(k, v)
		}
		if s.uri != "" {
			r.Header.Set("X-Forwarded-Method", "GET")
			r.Header.Set("X-Forwarded-Uri", s.uri)
		}
		cases = append(cases, benchCase{s.name, r, s.want})
	}
	return h, cases
}

// BenchmarkServeHTTP measures the handler into a minimal ResponseWriter
// (net/http's own work excluded): cached allows and every denial allocate
// nothing.
func BenchmarkServeHTTP(b *testing.B) {
	h, cases := benchCases(b)
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			rw := &discard{h: http.Header{}}
			b.ReportAllocs()
			for b.Loop() {
				h.ServeHTTP(rw, c.req)
			}
			if rw.status != c.want {
				b.Fatalf("status %d, want %d", rw.status, c.want)
			}
		})
	}
}

// The same as a test, so that an allocation creeping in fails go test.
func TestServeHTTPAllocations(t *testing.T) {
	h, cases := benchCases(t)
	for _, c := range cases {
		rw := &discard{h: http.Header{}}
		h.ServeHTTP(rw, c.req) // warm: the grant is built, the header map sized
		if allocs := testing.AllocsPerRun(200, func() { h.ServeHTTP(rw, c.req) }); allocs != 0 {
			t.Errorf("%s: %.1f allocations per request, want 0", c.name, allocs)
		}
		if rw.status != c.want {
			t.Errorf("%s: status %d, want %d", c.name, rw.status, c.want)
		}
	}
}
