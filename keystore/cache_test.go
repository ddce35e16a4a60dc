package keystore_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keygate/keygate/keystore"
)

// The cache decorates the store with the same method.
var _ keystore.Source = (*keystore.Cache)(nil)

// gatedSource wraps the real store: it can be made slow, or cut off as if
// the database were unreachable. It is a decorator over a real database,
// not a fake.
type gatedSource struct {
	store   *keystore.Store
	delay   atomic.Int64 // nanoseconds
	down    atomic.Bool
	lookups atomic.Int64
}

func (g *gatedSource) Lookup(ctx context.Context, d keystore.Digest) (*keystore.Record, error) {
	g.lookups.Add(1)
	if g.down.Load() {
		return nil, errors.Join(keystore.ErrUnavailable, errors.New("connection refused"))
	}
	k, err := g.store.Lookup(ctx, d)
	// The answer is read first and delivered late, like a query whose
	// result is still on its way when the key changes.
	select {
	case <-time.After(time.Duration(g.delay.Load())):
	case <-ctx.Done():
		return nil, errors.Join(keystore.ErrUnavailable, ctx.Err())
	}
	return k, err
}

// revoked reports whether r is the record of a revoked key.
func revoked(r *keystore.Record) bool {
	return r != nil && r.StateAt(time.Now()) == keystore.StateRevoked
}

func newCache(t *testing.T, src keystore.Source, clk *clock, opts keystore.CacheOptions) *keystore.Cache {
	t.Helper()
	opts.Now = clk.Now
	c, err := keystore.NewCache(src, opts)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestCacheHitsAndMisses(t *testing.T) {
	clk := newClock()
	s, _ := newStore(t, keystore.Options{Now: clk.Now})
	src := &gatedSource{store: s}
	c := newCache(t, src, clk, keystore.CacheOptions{})
	_, secret := mustCreate(t, s, keystore.CreateParams{})
	d := s.Hasher().Digest(secret)
	ctx := context.Background()
	for i := 0; i < 5; i++ {
		if _, err := c.Lookup(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	if n := src.lookups.Load(); n != 1 {
		t.Fatalf("%d store lookups for 5 cache lookups of one key, want 1", n)
	}
	unknown, _ := keystore.GenerateSecret("kg")
	for i := 0; i < 5; i++ {
		if _, err := c.Lookup(ctx, s.Hasher().Digest(unknown)); !errors.Is(err, keystore.ErrNotFound) {
			t.Fatalf("unknown key: %v", err)
		}
	}
	if n := src.lookups.Load(); n != 2 {
		t.Fatalf("%d store lookups after 5 of an unknown key, want 2 (the unknown key is remembered)", n)
	}
	clk.Advance(keystore.DefaultNegativeTTL)
	c.Lookup(ctx, s.Hasher().Digest(unknown))
	if n := src.lookups.Load(); n != 3 {
		t.Fatalf("the unknown-key entry outlived its TTL (%d lookups)", n)
	}
}

func TestCacheConcurrentMissesMakeOneQuery(t *testing.T) {
	clk := newClock()
	s, _ := newStore(t, keystore.Options{Now: clk.Now})
	src := &gatedSource{store: s}
	src.delay.Store(int64(50 * time.Millisecond))
	c := newCache(t, src, clk, keystore.CacheOptions{})
	_, secret := mustCreate(t, s, keystore.CreateParams{})
	d := s.Hasher().Digest(secret)
	var wg sync.WaitGroup
	for i := 0; i < 50; i++ {
		wg.Go(func() {
			if _, err := c.Lookup(context.Background(), d); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if n := src.lookups.Load(); n != 1 {
		t.Fatalf("50 concurrent misses made %d queries, want 1", n)
	}
}

func TestCacheNewKeyClearsUnknownEntry(t *testing.T) {
	clk := newClock()
	next, _ := keystore.GenerateSecret("kg")
	s, _ := newStore(t, keystore.Options{Now: clk.Now, Generate: func(string) (keystore.Secret, error) { return next, nil }})
	c := newCache(t, s, clk, keystore.CacheOptions{NegativeTTL: time.Hour})
	d := s.Hasher().Digest(next)
	if _, err := c.Lookup(context.Background(), d); !errors.Is(err, keystore.ErrNotFound) {
		t.Fatalf("before creation: %v", err)
	}
	mustCreate(t, s, keystore.CreateParams{})
	c.Invalidate(d) // what the notification of the create does
	if _, err := c.Lookup(context.Background(), d); err != nil {
		t.Fatalf("a created key is hidden by the unknown-key entry: %v", err)
	}
}

func TestCacheStaleAndOutage(t *testing.T) {
	clk := newClock()
	s, _ := newStore(t, keystore.Options{Now: clk.Now})
	src := &gatedSource{store: s}
	c := newCache(t, src, clk, keystore.CacheOptions{Fresh: time.Minute, MaxStale: 10 * time.Minute})
	ctx := context.Background()
	k, secret := mustCreate(t, s, keystore.CreateParams{})
	d := s.Hasher().Digest(secret)
	c.Lookup(ctx, d)

	// Stale with the store up: answered at once, refreshed behind.
	if _, err := s.Revoke(ctx, k.ID, ""); err != nil {
		t.Fatal(err)
	}
	clk.Advance(2 * time.Minute)
	got, err := c.Lookup(ctx, d)
	if err != nil || revoked(got) {
		t.Fatalf("stale lookup: %v, %v; want the cached (unrevoked) record at once", got, err)
	}
	waitUntil(t, time.Second, "the background refresh", func() bool {
		got, _ := c.Lookup(ctx, d)
		return revoked(got)
	})

	// Store down: cached keys work up to Fresh+MaxStale, unknown ones fail.
	k2, secret2 := mustCreate(t, s, keystore.CreateParams{})
	d2 := s.Hasher().Digest(secret2)
	c.Lookup(ctx, d2)
	src.down.Store(true)
	clk.Advance(5 * time.Minute)
	if got, err := c.Lookup(ctx, d2); err != nil || got.ID() != k2.ID {
		t.Fatalf("cached key within max-stale while the store is down: %v, %v", got, err)
	}
	other, _ := keystore.GenerateSecret("kg")
	if _, err := c.Lookup(ctx, s.Hasher().Digest(other)); !errors.Is(err, keystore.ErrUnavailable) {
		t.Fatalf("uncached key while the store is down: %v, want ErrUnavailable", err)
	}
	clk.Advance(6 * time.Minute) // now 11 min old: past Fresh+MaxStale
	if _, err := c.Lookup(ctx, d2); !errors.Is(err, keystore.ErrUnavailable) {
		t.Fatalf("cached key past max-stale: %v, want ErrUnavailable", err)
	}
	src.down.Store(false)
	if _, err := c.Lookup(ctx, d2); err != nil {
		t.Fatalf("after the store is back: %v", err)
	}
}

func TestCacheInvalidationBeatsSlowLoad(t *testing.T) {
	clk := newClock()
	s, _ := newStore(t, keystore.Options{Now: clk.Now})
	src := &gatedSource{store: s}
	c := newCache(t, src, clk, keystore.CacheOptions{})
	k, secret := mustCreate(t, s, keystore.CreateParams{})
	d := s.Hasher().Digest(secret)
	src.delay.Store(int64(100 * time.Millisecond))
	// The slow load reads the key before it is revoked, and its answer
	// arrives after the revocation was announced.
	done := make(chan struct{})
	go func() { c.Lookup(context.Background(), d); close(done) }()
	time.Sleep(20 * time.Millisecond)
	if _, err := s.Revoke(context.Background(), k.ID, ""); err != nil {
		t.Fatal(err)
	}
	c.Invalidate(d)
	<-done
	src.delay.Store(0)
	got, err := c.Lookup(context.Background(), d)
	if err != nil || !revoked(got) {
		t.Fatalf("after an invalidation during a load: %+v, %v; want the revoked record", got, err)
	}
}

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

func TestCacheLoadTimeout(t *testing.T) {
	clk := newClock()
	s, _ := newStore(t, keystore.Options{Now: clk.Now})
	src := &gatedSource{store: s}
	src.delay.Store(int64(5 * time.Second)) // a hung database
	c := newCache(t, src, clk, keystore.CacheOptions{LoadTimeout: 50 * time.Millisecond})
	_, secret := mustCreate(t, s, keystore.CreateParams{})
	start := time.Now()
	_, err := c.Lookup(context.Background(), s.Hasher().Digest(secret))
	if took := time.Since(start); !errors.Is(err, keystore.ErrUnavailable) || took > 500*time.Millisecond {
		t.Fatalf("lookup against a hung store: %v after %v; want ErrUnavailable within the 50ms load timeout", err, took)
	}
}

func TestCacheUpdateNeverGoesBackInTime(t *testing.T) {
	clk := newClock()
	s, _ := newStore(t, keystore.Options{Now: clk.Now})
	c := newCache(t, s, clk, keystore.CacheOptions{})
	ctx := context.Background()
	k, secret := mustCreate(t, s, keystore.CreateParams{})
	d := s.Hasher().Digest(secret)
	before, _ := s.Get(ctx, k.ID) // a poll's snapshot, taken before the revocation
	if _, err := s.Revoke(ctx, k.ID, ""); err != nil {
		t.Fatal(err)
	}
	if got, _ := c.Lookup(ctx, d); !revoked(got) {
		t.Fatal("the cache loaded an unrevoked record after the revocation")
	}
	c.Update(before.Digest, before.Record(), clk.Now())
	if got, _ := c.Lookup(ctx, d); !revoked(got) {
		t.Fatal("an older record (a late poll) replaced the revoked one")
	}
}

// panicSource panics on every lookup, like a bug below the cache.
type panicSource struct{}

func (panicSource) Lookup(context.Context, keystore.Digest) (*keystore.Record, error) {
	panic("boom in store")
}

func TestCacheContainsPanicsBelowIt(t *testing.T) {
	clk := newClock()
	c := newCache(t, panicSource{}, clk, keystore.CacheOptions{})
	secret, _ := keystore.GenerateSecret("kg")
	h, _ := keystore.NewHasher(nil)
	// The load runs on a goroutine of its own: an unrecovered panic there
	// would end the whole process, not just this test.
	_, err := c.Lookup(context.Background(), h.Digest(secret))
	if !errors.Is(err, keystore.ErrUnavailable) {
		t.Fatalf("lookup through a panicking store: %v, want ErrUnavailable", err)
	}
}

func TestCacheNoMaxStale(t *testing.T) {
	clk := newClock()
	s, _ := newStore(t, keystore.Options{Now: clk.Now})
	src := &gatedSource{store: s}
	c := newCache(t, src, clk, keystore.CacheOptions{Fresh: time.Minute, MaxStale: keystore.NoMaxStale})
	_, secret := mustCreate(t, s, keystore.CreateParams{})
	d := s.Hasher().Digest(secret)
	c.Lookup(context.Background(), d)
	src.down.Store(true)
	clk.Advance(time.Minute + time.Second)
	if _, err := c.Lookup(context.Background(), d); !errors.Is(err, keystore.ErrUnavailable) {
		t.Fatalf("with no max-stale, a key past Fresh with the store down: %v, want ErrUnavailable", err)
	}
}

// TestCacheBoundsConcurrentLoads: a cold cache asked for many distinct
// keys at once (a replica restarted under load) runs at most MaxLoads
// store queries at a time, and every lookup is still answered.
func TestCacheBoundsConcurrentLoads(t *testing.T) {
	const maxLoads, keys = 4, 40
	s, _ := newStore(t, keystore.Options{})
	src := &countingSource{store: s, delay: 20 * time.Millisecond}
	c, err := keystore.NewCache(src, keystore.CacheOptions{MaxLoads: maxLoads, LoadTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	var ds []keystore.Digest
	for range keys {
		_, secret, err := s.Create(context.Background(), keystore.CreateParams{AccountID: "acme", Name: "k"})
		if err != nil {
			t.Fatal(err)
		}
		ds = append(ds, s.Hasher().Digest(secret))
	}
	var wg sync.WaitGroup
	for _, d := range ds {
		for range 3 { // three requests for each key: one query
			wg.Go(func() {
				if _, err := c.Lookup(context.Background(), d); err != nil {
					t.Error(err)
				}
			})
		}
	}
	wg.Wait()
	if got := src.most.Load(); got > maxLoads || got < 2 {
		t.Errorf("at most %d queries ran at once, want 2..%d", got, maxLoads)
	}
	if got := src.queries.Load(); got != keys {
		t.Errorf("%d queries for %d keys asked three times each, want one per key", got, keys)
	}
}

// countingSource is the store, slowed down, counting its queries and the
// most that ran at once.
type countingSource struct {
	store                  *keystore.Store
	delay                  time.Duration
	queries, running, most atomic.Int64
}

func (s *countingSource) Lookup(ctx context.Context, d keystore.Digest) (*keystore.Record, error) {
	s.queries.Add(1)
	n := s.running.Add(1)
	defer s.running.Add(-1)
	for {
		m := s.most.Load()
		if n <= m || s.most.CompareAndSwap(m, n) {
			break
		}
	}
	time.Sleep(s.delay)
	return s.store.Lookup(ctx, d)
}
