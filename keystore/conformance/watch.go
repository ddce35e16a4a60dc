package conformance

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/keystore"
)

// watchTests check that changes reach a watched cache: through the
// backend's own notices, and through the delta poll for changes made by
// another backend on the same database (another process).
var watchTests = []test{
	{"WatcherNotificationReachesCache", testWatcherNotificationReachesCache},
	{"WatcherSeesOtherProcessesChanges", testWatcherSeesOtherProcessesChanges},
	{"WatcherDisableEnableReachCache", testWatcherDisableEnableReachCache},
	{"ImportReachesCaches", testImportReachesCaches},
}

// Watched is a store with a cache kept in step by a running Watcher.
type Watched struct {
	Store   *keystore.Store
	Cache   *keystore.Cache
	Watcher *keystore.Watcher
}

// Watch starts a Watcher for a cache in front of a store on b, stopped
// when the test ends. The cache's Fresh and NegativeTTL are an hour (only
// notices, the resync and the poll bring changes), and its loads have ten
// seconds (the suite checks what changes arrive, not how fast a query
// is). With wait, it returns once the watcher listens.
func Watch(t *testing.T, b keystore.Backend, opts keystore.WatchOptions, wait bool) *Watched {
	t.Helper()
	s := newStoreOn(t, b, keystore.Options{})
	c, err := keystore.NewCache(s, keystore.CacheOptions{Fresh: time.Hour, NegativeTTL: time.Hour, LoadTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	w := keystore.NewWatcher(s, c, opts)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { w.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done; c.Close() })
	if wait {
		waitUntil(t, 5*time.Second, "the listener", w.Stats().Listening.Load)
	}
	return &Watched{Store: s, Cache: c, Watcher: w}
}

// CachedState is the cache's view of the key stored under d at now.
func (w *Watched) CachedState(t *testing.T, d keystore.Digest, now time.Time) keystore.State {
	t.Helper()
	r, err := w.Cache.Lookup(context.Background(), d)
	if err != nil {
		t.Fatalf("cache lookup: %v", err)
	}
	return r.StateAt(now)
}

// WaitUntil is the suite's waitUntil, for backend-specific tests.
func WaitUntil(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	waitUntil(t, d, what, cond)
}

// MustCreate creates a key in s (account and name defaulted), failing the
// test on an error.
func MustCreate(t *testing.T, s *keystore.Store, p keystore.CreateParams) (*keystore.Key, keystore.Secret) {
	t.Helper()
	return mustCreate(t, s, p)
}

func testWatcherNotificationReachesCache(t *testing.T, h Harness) {
	var lags []time.Duration
	var lagMu sync.Mutex
	w := Watch(t, h.NewDatabase(t, true)(t), keystore.WatchOptions{PollInterval: time.Hour, OnPropagation: func(d time.Duration) {
		lagMu.Lock()
		lags = append(lags, d)
		lagMu.Unlock()
	}}, true)
	k, secret := mustCreate(t, w.Store, keystore.CreateParams{})
	d := w.Store.Hasher().Digest(secret)
	waitUntil(t, time.Second, "the create's notification", func() bool { return w.Watcher.Stats().Notifications.Load() == 1 })
	if _, err := w.Cache.Lookup(context.Background(), d); err != nil {
		t.Fatal(err)
	}
	loads := w.Cache.Stats().Loads.Load()
	start := time.Now()
	if _, err := w.Store.Revoke(context.Background(), k.ID, ""); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, time.Second, "the revocation to reach the cache", func() bool {
		return w.CachedState(t, d, time.Now()) == keystore.StateRevoked
	})
	took := time.Since(start)
	t.Logf("revocation reached the cache in %v", took)
	lagMu.Lock()
	if len(lags) != 2 || lags[1] < 0 || lags[1] > took+time.Second {
		t.Errorf("propagation lags %v for a create and a revoke that took %v", lags, took)
	}
	lagMu.Unlock()
	if w.Cache.Stats().Loads.Load() != loads+1 {
		t.Fatalf("want exactly one reload after the notification, got %d", w.Cache.Stats().Loads.Load()-loads)
	}

	// A key created after its digest was looked up as unknown.
	next, _ := keystore.GenerateSecret("kg")
	known := newStoreOn(t, w.Store.Backend(), keystore.Options{Generate: func(string) (keystore.Secret, error) { return next, nil }})
	nd := w.Store.Hasher().Digest(next)
	if _, err := w.Cache.Lookup(context.Background(), nd); !errors.Is(err, keystore.ErrNotFound) {
		t.Fatal(err)
	}
	mustCreate(t, known, keystore.CreateParams{})
	waitUntil(t, time.Second, "the new key to clear the unknown-key entry", func() bool {
		_, err := w.Cache.Lookup(context.Background(), nd)
		return err == nil
	})
}

// testWatcherSeesOtherProcessesChanges: a change made through another
// backend on the database (the CLI, another process) reaches the cache
// within the poll interval: at once where the database delivers notices
// to every listener (PostgreSQL), by the delta poll where it cannot
// (SQLite).
func testWatcherSeesOtherProcessesChanges(t *testing.T, h Harness) {
	open := h.NewDatabase(t, true)
	const poll = 200 * time.Millisecond
	w := Watch(t, open(t), keystore.WatchOptions{PollInterval: poll}, true)
	other := newStoreOn(t, open(t), keystore.Options{})
	k, secret := mustCreate(t, other, keystore.CreateParams{})
	d := other.Hasher().Digest(secret)
	if st := w.CachedState(t, d, time.Now()); st != keystore.StateActive {
		t.Fatalf("a key created by another process is %v", st)
	}
	time.Sleep(poll + 100*time.Millisecond) // the first poll learns the time
	start := time.Now()
	if _, err := other.Revoke(context.Background(), k.ID, ""); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 5*poll, "another process's revocation to reach the cache", func() bool {
		return w.CachedState(t, d, time.Now()) == keystore.StateRevoked
	})
	t.Logf("another process's revocation reached the cache in %v (poll interval %v)", time.Since(start), poll)
}

// testWatcherDisableEnableReachCache: disabling and enabling are announced
// like revocation, so a cached record follows both at once.
func testWatcherDisableEnableReachCache(t *testing.T, h Harness) {
	w := Watch(t, h.NewDatabase(t, true)(t), keystore.WatchOptions{PollInterval: time.Hour}, true)
	ctx := context.Background()
	k, secret := mustCreate(t, w.Store, keystore.CreateParams{})
	d := w.Store.Hasher().Digest(secret)
	waitUntil(t, time.Second, "the create's notification", func() bool { return w.Watcher.Stats().Notifications.Load() == 1 })
	if w.CachedState(t, d, time.Now()) != keystore.StateActive {
		t.Fatal("new key not active")
	}
	if _, err := w.Store.Disable(ctx, k.ID, ""); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, time.Second, "the disable to reach the cache", func() bool { return w.CachedState(t, d, time.Now()) == keystore.StateDisabled })
	if _, err := w.Store.Enable(ctx, k.ID, ""); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, time.Second, "the enable to reach the cache", func() bool { return w.CachedState(t, d, time.Now()) == keystore.StateActive })
}
