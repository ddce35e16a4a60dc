package hooktest

import (
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/webhook"
)

// Receiver accepts deliveries signed with its secret (2xx) and counts
// them by webhook-id; while Down it answers 503 and counts the attempt in
// Refused; a bad signature is 401, counted in BadSignatures.
type Receiver struct {
	URL           string
	Down          atomic.Bool
	Refused       atomic.Int64
	BadSignatures atomic.Int64
	Attempts      atomic.Int64

	now      func() time.Time
	secret   atomic.Value // keystore.SigningSecret
	mu       sync.Mutex
	accepted map[string]int
}

// New starts a receiver, closed when the test ends; now is the clock
// timestamps are judged at (nil: time.Now).
func New(tb testing.TB, now func() time.Time) *Receiver {
	tb.Helper()
	if now == nil {
		now = time.Now
	}
	r := &Receiver{now: now, accepted: map[string]int{}}
	srv := httptest.NewServer(http.HandlerFunc(r.serve))
	tb.Cleanup(srv.Close)
	r.URL = srv.URL
	return r
}

func (r *Receiver) serve(w http.ResponseWriter, req *http.Request) {
	r.Attempts.Add(1)
	body, _ := io.ReadAll(req.Body)
	if r.Down.Load() {
		r.Refused.Add(1)
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	secret, _ := r.secret.Load().(keystore.SigningSecret)
	if err := webhook.Verify(secret, req.Header, body, r.now(), 5*time.Minute); err != nil {
		r.BadSignatures.Add(1)
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	r.mu.Lock()
	r.accepted[req.Header.Get(webhook.HeaderID)]++
	r.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

// SetSecret sets the secret deliveries must be signed with.
func (r *Receiver) SetSecret(s keystore.SigningSecret) { r.secret.Store(s) }

// Accepted returns how many times each event was accepted.
func (r *Receiver) Accepted() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return maps.Clone(r.accepted)
}

// Counts returns how many distinct events were accepted, and the most
// times one was.
func (r *Receiver) Counts() (distinct, most int) {
	for _, n := range r.Accepted() {
		most = max(most, n)
	}
	return len(r.Accepted()), most
}
