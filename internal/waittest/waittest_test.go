package waittest

import (
	"fmt"
	"testing"
	"time"
)

// recorder is a testing.TB whose Fatalf records the failure and stops the
// goroutine, as testing's does.
type recorder struct {
	testing.TB
	failed string
}

func (r *recorder) Helper() {}
func (r *recorder) Fatalf(format string, args ...any) {
	r.failed = fmt.Sprintf(format, args...)
	panic(r)
}

// run calls Until on a recorder and returns its failure, if any.
func run(limit time.Duration, cond func() bool) (failure string) {
	r := &recorder{TB: nil}
	defer func() {
		if p := recover(); p != nil && p != r {
			panic(p)
		}
		failure = r.failed
	}()
	Until(r, limit, "the thing", cond)
	return ""
}

func TestUntil(t *testing.T) {
	asked := 0
	if f := run(time.Second, func() bool { asked++; return asked == 3 }); f != "" || asked != 3 {
		t.Fatalf("a condition that holds at the third ask: failure %q after %d asks", f, asked)
	}
	asked = 0
	if f := run(50*time.Millisecond, func() bool { asked++; return false }); f != "timed out after 50ms waiting for the thing" || asked < 2 {
		t.Fatalf("a condition that never holds: failure %q after %d asks", f, asked)
	}
	if !Within(time.Second, func() bool { return true }) || Within(30*time.Millisecond, func() bool { return false }) {
		t.Fatal("Within does not report whether the condition held")
	}
}
