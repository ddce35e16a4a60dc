package extauthz

import (
	"context"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/internal/authztest"
	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/limits"
)

// TestLimitHeaders: a limited key's allow adds the RateLimit fields to the
// client's response (response_headers_to_add); its denial is 429 with
// them and Retry-After.
func TestLimitHeaders(t *testing.T) {
	w := authztest.NewWorld(t)
	l, _ := keystore.ParseLimits([]string{"1/m"}, "")
	k := w.Lookup.Add(t, "k-limited", nil, func(k *keystore.Key) { k.Limits = l })
	lim, err := limits.New(limits.Options{Local: limits.NewLocal(nil)})
	if err != nil {
		t.Fatal(err)
	}
	s := newTestServer(t, w.Lookup, func(c *authz.Config) { c.Limiter = lim })
	req := envoyRequest("GET", "/api/v1/projects", map[string]string{"x-api-key": k.Secret}, nil)
	ok, _ := s.Check(context.Background(), req)
	added := map[string]string{}
	for _, h := range ok.GetOkResponse().GetResponseHeadersToAdd() {
		added[h.GetHeader().GetKey()] = h.GetHeader().GetValue()
	}
	if ok.GetStatus().GetCode() != 0 || added["ratelimit-policy"] != `"1/m";q=1;w=60` || added["ratelimit"] != `"1/m";r=0;t=60` {
		t.Fatalf("allow: %v", ok)
	}
	if len(ok.GetOkResponse().GetHeaders()) == 0 {
		t.Fatal("the allow lost its identity headers")
	}
	deny, _ := s.Check(context.Background(), req)
	got := map[string]string{}
	for _, h := range deny.GetDeniedResponse().GetHeaders() {
		got[h.GetHeader().GetKey()] = h.GetHeader().GetValue()
	}
	if deny.GetDeniedResponse().GetStatus().GetCode() != 429 || got["retry-after"] != "60" || got["ratelimit"] == "" || got["content-type"] != "application/json" {
		t.Fatalf("denial: %v", deny)
	}
	// The shared denial is untouched.
	if n := len(s.denials[authz.RateLimited].GetDeniedResponse().GetHeaders()); n != 2 {
		t.Fatalf("the shared rate_limited denial has %d headers, want its 2", n)
	}
}

// BenchmarkCheckLimits is BenchmarkCheck's allow with and without limits
// (the local store): what a key's limits cost its decision, and that a key
// without any costs nothing more than before.
func BenchmarkCheckLimits(b *testing.B) {
	w := authztest.NewWorld(b)
	l, _ := keystore.ParseLimits([]string{"1000000/s", "1000000000/d"}, "")
	limited := w.Lookup.Add(b, "k-limited", nil, func(k *keystore.Key) { k.Limits = l })
	cache, err := keystore.NewCache(w.Lookup, keystore.CacheOptions{})
	if err != nil {
		b.Fatal(err)
	}
	lim, err := limits.New(limits.Options{Local: limits.NewLocal(nil)})
	if err != nil {
		b.Fatal(err)
	}
	s := newTestServer(b, cache, func(c *authz.Config) {
		c.Metrics = authz.NewMetrics(prometheus.NewRegistry())
		c.Now = nil
		c.Limiter = lim
	})
	for name, secret := range map[string]string{"unlimited": w.Plain.Secret, "limited-local": limited.Secret} {
		req := envoyRequest("GET", "/api/v1/projects/42/builds?page=2", map[string]string{"x-api-key": secret}, nil)
		b.Run(name, func(b *testing.B) {
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if r := s.respond(ctx, viewFor(req)); r.GetStatus().GetCode() != 0 {
					b.Fatalf("denied: %v", r)
				}
			}
		})
	}
}
