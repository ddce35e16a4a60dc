package authz

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/authztest"
	"github.com/keygate/keygate/keystore"
)

// TestFailureLimitWithTheCache: over its budget, a source is answered from
// the real cache alone: a cached valid key works, anything else is 429
// without a store query, also an unknown key that a lookup would have
// found unknown, and a valid key that is not cached. Other sources are not
// affected.
func TestFailureLimitWithTheCache(t *testing.T) {
	w := authztest.NewWorld(t)
	cache, err := keystore.NewCache(w.Lookup, keystore.CacheOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s := newTestServer(t, cache, func(c *Config) { c.FailureLimit = FailureLimit{Count: 5, Window: time.Minute} })
	hostile, other := netip.MustParseAddr("192.0.2.66"), netip.MustParseAddr("198.51.100.1")
	decide := func(from netip.Addr, key string) Decision {
		r := s.request("GET", "/api/v1/projects", map[string]string{"x-api-key": key}, "")
		r.Source = from
		return s.Decide(context.Background(), r)
	}
	if d := decide(hostile, w.Plain.Secret); d.Outcome != Allow { // now cached
		t.Fatal(d.Outcome)
	}
	for i := range 5 {
		unknown, _ := keystore.GenerateSecret("kg")
		if d := decide(hostile, unknown.Reveal()); d.Outcome != InvalidKey {
			t.Fatalf("failure %d: %s", i, d.Outcome)
		}
	}
	calls := w.Lookup.Calls.Load()
	for i := range 100 {
		unknown, _ := keystore.GenerateSecret("kg")
		if d := decide(hostile, unknown.Reveal()); d.Outcome != TooManyFailures || d.Reason != ReasonTooManyFailures {
			t.Fatalf("attempt %d over the budget: %s (%s)", i, d.Outcome, d.Reason)
		}
	}
	for name, key := range map[string]string{"malformed": "kg_nope", "uncached valid": w.ReadOnly.Secret, "revoked": w.Revoked.Secret} {
		if d := decide(hostile, key); d.Outcome != TooManyFailures {
			t.Errorf("%s key over the budget: %s", name, d.Outcome)
		}
	}
	if got := w.Lookup.Calls.Load() - calls; got != 0 {
		t.Fatalf("%d store lookups for a source over its budget, want none", got)
	}
	if d := decide(hostile, w.Plain.Secret); d.Outcome != Allow || !d.fromCache {
		t.Fatalf("a cached valid key from the limited source: %s", d.Outcome)
	}
	if d := decide(hostile, ""); d.Outcome != MissingKey {
		t.Fatalf("no key from the limited source: %s, want the usual 401", d.Outcome)
	}
	if d := decide(other, w.ReadOnly.Secret); d.Outcome != Allow {
		t.Fatalf("another source: %s", d.Outcome)
	}
	// Its denial says when to retry: the window, in seconds.
	if d := s.Denial(TooManyFailures); d.Status != 429 || !strings.Contains(fmt.Sprint(d.Headers), "{retry-after 60}") {
		t.Fatalf("denial %+v", d)
	}
	if _, err := NewServer(Config{Lookup: cache, Policy: s.policy, Hasher: s.hasher, FailureLimit: FailureLimit{Count: 0, Window: time.Minute}}); err == nil {
		t.Fatal("a failure limit of 0 accepted")
	}
}
