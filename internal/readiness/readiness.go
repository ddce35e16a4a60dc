package readiness

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"
)

// Status is whether the server can answer: ready, not ready for a reason,
// or shutting down. It is safe for concurrent use.
type Status struct {
	services []string // the gRPC services reported, "" (the whole server) first

	mu       sync.Mutex
	ready    bool
	stopping bool
	reason   string
	changed  chan struct{} // closed, and replaced, at every change
}

// Starting is the reason of a new Status, until it is first Set.
const Starting = "starting"

// New returns a Status that is not ready yet (Starting). Health reports
// on the whole server (service "") and on each of services by name.
func New(services ...string) *Status {
	return &Status{services: append([]string{""}, services...), reason: Starting, changed: make(chan struct{})}
}

// Set makes s ready, or not ready for reason, and reports whether that
// changed anything. Once shutting down, Set does nothing.
func (s *Status) Set(ready bool, reason string) (changed bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopping || (s.ready == ready && s.reason == reason) {
		return false
	}
	s.ready, s.reason = ready, reason
	s.notify()
	return true
}

// Shutdown makes s not ready, for good: "shutting down".
func (s *Status) Shutdown() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.stopping {
		s.stopping, s.ready, s.reason = true, false, "shutting down"
		s.notify()
	}
}

// notify wakes everything waiting for a change; s.mu is held.
func (s *Status) notify() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// Ready reports whether s is ready, and if not, why.
func (s *Status) Ready() (ready bool, reason string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ready, s.reason
}

// state is Ready, whether s is shutting down, and a channel closed at the
// next change.
func (s *Status) state() (ready, stopping bool, changed <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ready, s.stopping, s.changed
}

// ServeHTTP answers a readiness probe (/readyz): 200 "ready", or 503 with
// the reason.
func (s *Status) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	if ready, reason := s.Ready(); !ready {
		http.Error(w, "not ready: "+reason, http.StatusServiceUnavailable)
		return
	}
	fmt.Fprintln(w, "ready")
}

// Alive answers a liveness probe (/healthz): 200 "ok" while the process
// answers at all, whatever its dependencies say.
func Alive(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") }

// A Probe looks once at what readiness depends on: nil when the server can
// answer, else why not (a *NotReady, or any error, whose text is the
// reason). It must return when ctx ends.
type Probe func(ctx context.Context) error

// NotReady is a Probe's answer when the server cannot answer: Reason is
// what /readyz says, Log the warning logged once when it begins, with
// Attrs (slog key-value pairs).
type NotReady struct {
	Reason string
	Log    string
	Attrs  []any
}

func (e *NotReady) Error() string { return e.Reason }

// WatchOptions configure Watch.
type WatchOptions struct {
	// Probe is asked every Interval, each time with Interval to answer.
	Probe    Probe
	Interval time.Duration
	// Logger is told of every change, once; ReadyLog is the message when
	// the server becomes ready.
	Logger   *slog.Logger
	ReadyLog string
}

// Watch asks o.Probe at once and then every o.Interval until ctx ends,
// and sets s from each answer.
func (s *Status) Watch(ctx context.Context, o WatchOptions) {
	t := time.NewTicker(o.Interval)
	defer t.Stop()
	for {
		probeCtx, cancel := context.WithTimeout(ctx, o.Interval)
		err := o.Probe(probeCtx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		var nr *NotReady
		switch {
		case err == nil:
			if s.Set(true, "ok") {
				o.Logger.Info(o.ReadyLog)
			}
		case errors.As(err, &nr):
			if s.Set(false, nr.Reason) {
				o.Logger.Warn(nr.Log, nr.Attrs...)
			}
		default:
			if s.Set(false, err.Error()) {
				o.Logger.Warn("not ready: NOT_SERVING", "error", err.Error())
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
