package authz

import (
	"context"
	"fmt"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/authztest"
	"github.com/keygate/keygate/keystore"
)

func TestParseFailureLimit(t *testing.T) {
	for in, want := range map[string]FailureLimit{
		"20/1m":  {20, time.Minute},
		"1/1s":   {1, time.Second},
		"500/1h": {500, time.Hour},
		"5/1d":   {5, 24 * time.Hour},
	} {
		if got, err := ParseFailureLimit(in); err != nil || got != want {
			t.Errorf("ParseFailureLimit(%q) = %v, %v; want %v", in, got, err, want)
		}
		if got, _ := ParseFailureLimit(want.String()); got != want {
			t.Errorf("%v does not read back from %q", want, want.String())
		}
	}
	for in, problem := range map[string]string{
		"20":       "COUNT/WINDOW",
		"x/1m":     "COUNT/WINDOW",
		"20/soon":  "the window",
		"0/1m":     "the count must be 1 to 10000",
		"20000/1m": "the count must be 1 to 10000",
		"20/500ms": "the window must be 1s to 1d",
		"20/2d":    "the window must be 1s to 1d",
		"-1/1m":    "the count",
	} {
		if _, err := ParseFailureLimit(in); err == nil || !strings.Contains(err.Error(), problem) {
			t.Errorf("ParseFailureLimit(%q) = %v; want an error saying %q", in, err, problem)
		}
	}
}

func TestFailureCounterWindows(t *testing.T) {
	start := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	f := newFailureCounter(FailureLimit{Count: 10, Window: time.Minute}, start)
	a := netip.MustParseAddr("203.0.113.9")
	for i := range 10 {
		if f.over(a, start) {
			t.Fatalf("over the budget after %d failures of 10", i)
		}
		f.add(a, start.Add(time.Duration(i)*time.Second))
	}
	now := start.Add(10 * time.Second)
	if !f.over(a, now) {
		t.Fatal("10 failures in 10s: not over a budget of 10 a minute")
	}
	// The sliding window: 30s into the next minute, half of the last
	// window's 10 still count (5), so 5 more make it 10 again.
	later := start.Add(90 * time.Second)
	if f.over(a, later) {
		t.Fatal("still over the budget with half of the window gone")
	}
	for range 5 {
		f.add(a, later)
	}
	if !f.over(a, later) {
		t.Fatal("5 new failures and half of the 10 before: not over")
	}
	if f.over(a, start.Add(3*time.Minute)) {
		t.Fatal("over the budget two windows later")
	}
	if f.over(netip.MustParseAddr("203.0.113.10"), now) {
		t.Fatal("the next IPv4 address shares the budget")
	}
}

func TestFailureCounterSources(t *testing.T) {
	now := time.Now()
	f := newFailureCounter(FailureLimit{Count: 3, Window: time.Minute}, now)
	for range 3 {
		f.add(netip.MustParseAddr("2001:db8:1:2::1"), now)
	}
	for addr, want := range map[string]bool{
		"2001:db8:1:2::1":     true,
		"2001:db8:1:2:ffff::": true, // the same /64
		"2001:db8:1:3::1":     false,
		"203.0.113.9":         false,
	} {
		if got := f.over(netip.MustParseAddr(addr), now); got != want {
			t.Errorf("over(%s) = %v, want %v", addr, got, want)
		}
	}
	// Sources the transport does not know share one budget.
	for range 3 {
		f.add(netip.Addr{}, now)
	}
	if !f.over(netip.Addr{}, now) || f.over(netip.MustParseAddr("198.51.100.1"), now) {
		t.Error("unknown sources: one shared budget, and no one else's")
	}
}

// TestFailureCounterIsBounded: a million sources cost nothing beyond the
// counter's fixed cells, and counting allocates nothing; one hostile source
// among ten thousand is over its budget and no other is.
func TestFailureCounterIsBounded(t *testing.T) {
	now := time.Now()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f := newFailureCounter(FailureLimit{Count: 20, Window: time.Minute}, now)
	hostile := netip.MustParseAddr("192.0.2.66")
	for i := range 1_000_000 {
		a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		f.add(a, now)
		if i%50_000 == 0 {
			f.add(hostile, now)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if grown := int64(after.HeapAlloc) - int64(before.HeapAlloc); grown > 3<<20 {
		t.Errorf("the counter took %d bytes for a million sources, want its fixed 2 MiB", grown)
	}
	if n := testing.AllocsPerRun(100, func() { f.add(hostile, now); f.over(hostile, now) }); n != 0 {
		t.Errorf("%v allocations per count and check", n)
	}

	f = newFailureCounter(FailureLimit{Count: 20, Window: time.Minute}, now)
	for i := range 10_000 {
		a := netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)})
		for range i % 5 { // 0 to 4 failures each
			f.add(a, now)
		}
	}
	for range 20 {
		f.add(hostile, now)
	}
	limited := 0
	for i := range 10_000 {
		if f.over(netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}), now) {
			limited++
		}
	}
	if limited != 0 || !f.over(hostile, now) {
		t.Errorf("%d of 10,000 sources with at most 4 failures are over a budget of 20; hostile over: %v", limited, f.over(hostile, now))
	}
}

func TestFailureCounterConcurrent(t *testing.T) {
	now := time.Now()
	f := newFailureCounter(FailureLimit{Count: 1000, Window: time.Hour}, now)
	a := netip.MustParseAddr("203.0.113.9")
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 125 {
				f.add(a, now)
				f.over(a, now)
			}
		})
	}
	wg.Wait()
	if !f.over(a, now) {
		t.Fatal("8 × 125 concurrent failures did not reach a budget of 1000: counts were lost")
	}
}

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
