package authz

import (
	"context"
	"testing"
)

// BenchmarkCheck measures the cached decision path: a realistic
// 12-header CheckRequest with a valid key whose record is in memory, from
// request to response (gRPC marshalling excluded).
func BenchmarkCheck(b *testing.B) {
	w := newWorld(b)
	s := newTestServer(b, w.lookup, nil)
	cases := map[string]map[string]string{
		"allow":        {"x-api-key": w.plain.secret},
		"allow-bearer": {"authorization": "Bearer " + w.plain.secret},
		"deny-missing": {},
		"deny-invalid": {"x-api-key": "kg_not-a-key"},
	}
	for name, headers := range cases {
		req := envoyRequest("GET", "/api/v1/projects/42/builds?page=2", headers, nil)
		b.Run(name, func(b *testing.B) {
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := s.Check(ctx, req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	req := envoyRequest("GET", "/api/v1/projects/42", map[string]string{"x-api-key": w.plain.secret}, map[string]string{"module": "projects"})
	b.Run("allow-route-module", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			s.Check(context.Background(), req)
		}
	})
}
