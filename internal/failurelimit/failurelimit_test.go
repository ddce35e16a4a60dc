package failurelimit_test

import (
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/failurelimit"
)

func TestParse(t *testing.T) {
	for in, want := range map[string]failurelimit.Limit{
		"20/1m":  {20, time.Minute},
		"1/1s":   {1, time.Second},
		"500/1h": {500, time.Hour},
		"5/1d":   {5, 24 * time.Hour},
	} {
		if got, err := failurelimit.Parse(in); err != nil || got != want {
			t.Errorf("failurelimit.Parse(%q) = %v, %v; want %v", in, got, err, want)
		}
		if got, _ := failurelimit.Parse(want.String()); got != want {
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
		if _, err := failurelimit.Parse(in); err == nil || !strings.Contains(err.Error(), problem) {
			t.Errorf("failurelimit.Parse(%q) = %v; want an error saying %q", in, err, problem)
		}
	}
}

func TestCounterWindows(t *testing.T) {
	start := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	f := failurelimit.NewCounter(failurelimit.Limit{Count: 10, Window: time.Minute}, start)
	a := netip.MustParseAddr("203.0.113.9")
	for i := range 10 {
		if f.Over(a, start) {
			t.Fatalf("over the budget after %d failures of 10", i)
		}
		f.Add(a, start.Add(time.Duration(i)*time.Second))
	}
	now := start.Add(10 * time.Second)
	if !f.Over(a, now) {
		t.Fatal("10 failures in 10s: not over a budget of 10 a minute")
	}
	// The sliding window: 30s into the next minute, half of the last
	// window's 10 still count (5), so 5 more make it 10 again.
	later := start.Add(90 * time.Second)
	if f.Over(a, later) {
		t.Fatal("still over the budget with half of the window gone")
	}
	for range 5 {
		f.Add(a, later)
	}
	if !f.Over(a, later) {
		t.Fatal("5 new failures and half of the 10 before: not over")
	}
	if f.Over(a, start.Add(3*time.Minute)) {
		t.Fatal("over the budget two windows later")
	}
	if f.Over(netip.MustParseAddr("203.0.113.10"), now) {
		t.Fatal("the next IPv4 address shares the budget")
	}
}

func TestCounterSources(t *testing.T) {
	now := time.Now()
	f := failurelimit.NewCounter(failurelimit.Limit{Count: 3, Window: time.Minute}, now)
	for range 3 {
		f.Add(netip.MustParseAddr("2001:db8:1:2::1"), now)
	}
	for addr, want := range map[string]bool{
		"2001:db8:1:2::1":     true,
		"2001:db8:1:2:ffff::": true, // the same /64
		"2001:db8:1:3::1":     false,
		"203.0.113.9":         false,
	} {
		if got := f.Over(netip.MustParseAddr(addr), now); got != want {
			t.Errorf("over(%s) = %v, want %v", addr, got, want)
		}
	}
	// Sources the transport does not know share one budget.
	for range 3 {
		f.Add(netip.Addr{}, now)
	}
	if !f.Over(netip.Addr{}, now) || f.Over(netip.MustParseAddr("198.51.100.1"), now) {
		t.Error("unknown sources: one shared budget, and no one else's")
	}
}

// TestCounterIsBounded: a million sources cost nothing beyond the
// counter's fixed cells, and counting allocates nothing; one hostile source
// among ten thousand is over its budget and no other is.
func TestCounterIsBounded(t *testing.T) {
	now := time.Now()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f := failurelimit.NewCounter(failurelimit.Limit{Count: 20, Window: time.Minute}, now)
	hostile := netip.MustParseAddr("192.0.2.66")
	for i := range 1_000_000 {
		a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		f.Add(a, now)
		if i%50_000 == 0 {
			f.Add(hostile, now)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if grown := int64(after.HeapAlloc) - int64(before.HeapAlloc); grown > 3<<20 {
		t.Errorf("the counter took %d bytes for a million sources, want its fixed 2 MiB", grown)
	}
	if n := testing.AllocsPerRun(100, func() { f.Add(hostile, now); f.Over(hostile, now) }); n != 0 {
		t.Errorf("%v allocations per count and check", n)
	}

	f = failurelimit.NewCounter(failurelimit.Limit{Count: 20, Window: time.Minute}, now)
	for i := range 10_000 {
		a := netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)})
		for range i % 5 { // 0 to 4 failures each
			f.Add(a, now)
		}
	}
	for range 20 {
		f.Add(hostile, now)
	}
	limited := 0
	for i := range 10_000 {
		if f.Over(netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}), now) {
			limited++
		}
	}
	if limited != 0 || !f.Over(hostile, now) {
		t.Errorf("%d of 10,000 sources with at most 4 failures are over a budget of 20; hostile over: %v", limited, f.Over(hostile, now))
	}
}

func TestCounterConcurrent(t *testing.T) {
	now := time.Now()
	f := failurelimit.NewCounter(failurelimit.Limit{Count: 1000, Window: time.Hour}, now)
	a := netip.MustParseAddr("203.0.113.9")
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 125 {
				f.Add(a, now)
				f.Over(a, now)
			}
		})
	}
	wg.Wait()
	if !f.Over(a, now) {
		t.Fatal("8 × 125 concurrent failures did not reach a budget of 1000: counts were lost")
	}
}

func TestRetryAfter(t *testing.T) {
	for l, want := range map[failurelimit.Limit]string{
		{Count: 1, Window: time.Minute}:             "60",
		{Count: 1, Window: time.Second}:             "1",
		{Count: 1, Window: 1500 * time.Millisecond}: "2",
		{Count: 1, Window: 24 * time.Hour}:          "86400",
	} {
		if got := l.RetryAfter(); got != want {
			t.Errorf("%v.RetryAfter() = %q, want %q", l, got, want)
		}
	}
}
