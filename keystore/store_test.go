package keystore_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/keystore/conformance"
	"github.com/keygate/keygate/keystore/sqlite"
)

// The store's own behaviour, on every backend, is tested by the
// conformance suite (keystore/conformance), run by keystore/postgres and
// keystore/sqlite. The tests here, of the cache and the parsers, need a
// store only as a source of records: an in-memory SQLite one.

// clock is an injected, settable clock.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock { return &clock{now: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }

func (c *clock) Advance(d time.Duration) { c.mu.Lock(); c.now = c.now.Add(d); c.mu.Unlock() }

// newStore returns a store on a fresh in-memory database.
func newStore(t *testing.T, opts keystore.Options) (*keystore.Store, keystore.Backend) {
	t.Helper()
	b, err := sqlite.Open(context.Background(), sqlite.Memory, sqlite.Options{Create: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	if _, err := b.Migrate(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	s, err := keystore.New(b, opts)
	if err != nil {
		t.Fatal(err)
	}
	return s, b
}

// mustCreate is conformance.MustCreate.
var mustCreate = conformance.MustCreate
