package waittest

import (
	"testing"
	"time"
)

// Interval is how often Until asks its condition.
const Interval = 20 * time.Millisecond

// Within asks cond every Interval until it holds, and reports whether it
// did within limit. cond is asked at once, and a last time after limit
// has passed.
func Within(limit time.Duration, cond func() bool) bool {
	_, ok := within(limit, cond)
	return ok
}

// Until is Within that fails tb, saying it waited for what, if cond does
// not hold within limit; it returns how long cond took to hold.
func Until(tb testing.TB, limit time.Duration, what string, cond func() bool) time.Duration {
	tb.Helper()
	took, ok := within(limit, cond)
	if !ok {
		tb.Fatalf("timed out after %v waiting for %s", limit, what)
	}
	return took
}

func within(limit time.Duration, cond func() bool) (time.Duration, bool) {
	start := time.Now()
	for !cond() {
		if time.Since(start) > limit {
			return time.Since(start), false
		}
		time.Sleep(Interval)
	}
	return time.Since(start), true
}
