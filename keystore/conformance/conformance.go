package conformance

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/keystore"
)

// Harness gives the suite databases of one backend.
type Harness struct {
	// NewDatabase makes a database of the test's own, with keygate's
	// schema when migrated is true and empty otherwise, and returns a
	// function that opens a backend on it. Each call of open is another
	// backend on the same database, as another process would have (its
	// notices reach only its own listeners unless the database itself
	// delivers them); every backend is closed when the test ends.
	NewDatabase func(tb testing.TB, migrated bool) (open func(tb testing.TB) keystore.Backend)
}

// test is one test of the suite.
type test struct {
	name string
	run  func(t *testing.T, h Harness)
}

// RunTests runs every test of the suite against the backend h gives, each
// as a subtest of t, in parallel with each other.
func RunTests(t *testing.T, h Harness) {
	for _, group := range [][]test{lifecycleTests, changeTests, controlTests, importTests, watchTests, usageTests, eventTests, limitTests, schemaTests} {
		for _, tc := range group {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				tc.run(t, h)
			})
		}
	}
}

// database is a migrated database of the test's own.
type database func(tb testing.TB) keystore.Backend

// newStoreAt returns a store on a fresh migrated database, and the
// database, to open more backends on it or take its snapshot.
func (h Harness) newStoreAt(t *testing.T, opts keystore.Options) (*keystore.Store, database) {
	t.Helper()
	db := database(h.NewDatabase(t, true))
	return newStoreOn(t, db(t), opts), db
}

// newStore returns a store on a fresh migrated database.
func (h Harness) newStore(t *testing.T, opts keystore.Options) *keystore.Store {
	t.Helper()
	s, _ := h.newStoreAt(t, opts)
	return s
}

func newStoreOn(t *testing.T, b keystore.Backend, opts keystore.Options) *keystore.Store {
	t.Helper()
	s, err := keystore.New(b, opts)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// snapshot is everything a database holds (Snapshot).
func snapshot(t *testing.T, db database) string { return string(Snapshot(t, db(t))) }

// Snapshot is everything b's database holds, as Export reads it (keys,
// then audit events), for checking that a refused change wrote nothing.
func Snapshot(tb testing.TB, b keystore.Backend) []byte {
	tb.Helper()
	var out []any
	err := b.Export(context.Background(), func(k *keystore.Key) error {
		out = append(out, k)
		return nil
	}, func(e keystore.Event) error {
		out = append(out, e)
		return nil
	})
	if err != nil {
		tb.Fatalf("Export: %v", err)
	}
	data, err := json.Marshal(out)
	if err != nil {
		tb.Fatal(err)
	}
	return data
}

// counts is how many keys and audit events the store's database holds.
func counts(t *testing.T, s *keystore.Store) (keys, events int) { return Count(t, s.Backend()) }

// Count is how many keys and audit events b's database holds.
func Count(tb testing.TB, b keystore.Backend) (keys, events int) {
	tb.Helper()
	err := b.Export(context.Background(), func(*keystore.Key) error {
		keys++
		return nil
	}, func(keystore.Event) error {
		events++
		return nil
	})
	if err != nil {
		tb.Fatalf("Export: %v", err)
	}
	return keys, events
}

// clock is an injected, settable clock.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock { return &clock{now: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }

func (c *clock) Advance(d time.Duration) { c.mu.Lock(); c.now = c.now.Add(d); c.mu.Unlock() }

func mustCreate(t *testing.T, s *keystore.Store, p keystore.CreateParams) (*keystore.Key, keystore.Secret) {
	t.Helper()
	if p.AccountID == "" {
		p.AccountID = "acct-1"
	}
	if p.Name == "" {
		p.Name = "ci"
	}
	k, secret, err := s.Create(context.Background(), p)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	return k, secret
}

// verifies reports whether secret authenticates at now: the decision
// path's view of a key.
func verifies(t *testing.T, s *keystore.Store, secret keystore.Secret, now time.Time) bool {
	t.Helper()
	k, err := s.Lookup(context.Background(), s.Hasher().Digest(secret))
	if errors.Is(err, keystore.ErrNotFound) {
		return false
	}
	if err != nil {
		t.Fatalf("Lookup: %v", err)
	}
	return k.StateAt(now) == keystore.StateActive
}

// stateOf is the decision path's view of the key behind secret at now.
func stateOf(t *testing.T, s *keystore.Store, secret keystore.Secret, now time.Time) keystore.State {
	t.Helper()
	r, err := s.Lookup(context.Background(), s.Hasher().Digest(secret))
	if err != nil {
		t.Fatalf("Lookup: %v", err)
	}
	return r.StateAt(now)
}

func ptr[T any](v T) *T { return &v }

// waitUntil polls cond until it holds, failing the test after d. (The
// suite keeps its own, small, so that keystore imports nothing of the
// tests' internal packages.)
func waitUntil(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// schemaTests check the backend's migrations.
var schemaTests = []test{
	{"MigrateTwiceIsNoOp", testMigrateTwiceIsNoOp},
	{"MigrateConcurrently", testMigrateConcurrently},
}

func testMigrateTwiceIsNoOp(t *testing.T, h Harness) {
	b := h.NewDatabase(t, false)(t)
	ctx := context.Background()
	if pending, err := b.PendingMigrations(ctx); err != nil || !pending {
		t.Fatalf("PendingMigrations of an empty database = %v, %v; want true", pending, err)
	}
	first, err := b.Migrate(ctx, slog.New(slog.DiscardHandler))
	if err != nil || len(first) == 0 {
		t.Fatalf("first Migrate = %v, %v; want migrations applied", first, err)
	}
	second, err := b.Migrate(ctx, slog.New(slog.DiscardHandler))
	if err != nil || len(second) != 0 {
		t.Fatalf("second Migrate = %v, %v; want no-op", second, err)
	}
	if pending, err := b.PendingMigrations(ctx); err != nil || pending {
		t.Fatalf("PendingMigrations after Migrate = %v, %v; want false", pending, err)
	}
}

// testMigrateConcurrently migrates one empty database from three backends
// at once, as replicas starting together do: every migration is applied
// exactly once and the schema works.
func testMigrateConcurrently(t *testing.T, h Harness) {
	open := h.NewDatabase(t, false)
	backends := []keystore.Backend{open(t), open(t), open(t)}
	var wg sync.WaitGroup
	applied := make([]int, len(backends))
	errs := make([]error, len(backends))
	for i, b := range backends {
		wg.Go(func() {
			r, err := b.Migrate(context.Background(), slog.New(slog.DiscardHandler))
			applied[i], errs[i] = len(r), err
		})
	}
	wg.Wait()
	total := 0
	for i := range errs {
		if errs[i] != nil {
			t.Fatalf("migration %d failed: %v", i, errs[i])
		}
		total += applied[i]
	}
	again, err := open(t).Migrate(context.Background(), slog.New(slog.DiscardHandler))
	if err != nil || len(again) != 0 {
		t.Fatalf("a migration after the concurrent ones applied %v, %v; want none left", again, err)
	}
	if total == 0 {
		t.Fatal("no migration was applied")
	}
	s := newStoreOn(t, backends[0], keystore.Options{})
	mustCreate(t, s, keystore.CreateParams{})
	if keys, events := counts(t, s); keys != 1 || events != 1 {
		t.Fatalf("after concurrent migrations the store holds %d keys and %d events, want 1 and 1", keys, events)
	}

}
