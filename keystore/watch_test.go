package keystore_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/keygate/keygate/internal/pgtest"
	"github.com/keygate/keygate/keystore"
)

// watched is a store with a cache kept in step by a running Watcher.
type watched struct {
	store   *keystore.Store
	cache   *keystore.Cache
	watcher *keystore.Watcher
	url     string
}

func startWatched(t *testing.T, url string, opts keystore.WatchOptions, listenURL string) *watched {
	t.Helper()
	pool := pgtest.Connect(t, url)
	s, err := keystore.New(pool, keystore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	// A long Fresh: only notifications and the poll can bring changes.
	c, _ := keystore.NewCache(s, keystore.CacheOptions{Fresh: time.Hour, NegativeTTL: time.Hour})
	cfg, err := pgx.ParseConfig(listenURL)
	if err != nil {
		t.Fatal(err)
	}
	w := keystore.NewWatcher(cfg, s, c, opts)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { w.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	waitUntil(t, 5*time.Second, "the listener", func() bool { return w.Stats().Listening.Load() || listenURL != url })
	return &watched{store: s, cache: c, watcher: w, url: url}
}

// revokedInCache reports whether the cache already sees the key revoked.
func revokedInCache(w *watched, d keystore.Digest) bool {
	k, err := w.cache.Lookup(context.Background(), d)
	return err == nil && revoked(k)
}

func TestWatcherNotificationReachesCache(t *testing.T) {
	url := pgtest.NewDatabase(t)
	var lags []time.Duration
	var lagMu sync.Mutex
	w := startWatched(t, url, keystore.WatchOptions{PollInterval: time.Hour, OnPropagation: func(d time.Duration) {
		lagMu.Lock()
		lags = append(lags, d)
		lagMu.Unlock()
	}}, url)
	k, secret := mustCreate(t, w.store, keystore.CreateParams{})
	d := w.store.Hasher().Digest(secret)
	waitUntil(t, time.Second, "the create's notification", func() bool { return w.watcher.Stats().Notifications.Load() == 1 })
	if _, err := w.cache.Lookup(context.Background(), d); err != nil {
		t.Fatal(err)
	}
	loads := w.cache.Stats().Loads.Load()
	start := time.Now()
	if _, err := w.store.Revoke(context.Background(), k.ID, ""); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, time.Second, "the revocation to reach the cache", func() bool { return revokedInCache(w, d) })
	took := time.Since(start)
	t.Logf("revocation reached the cache in %v", took)
	lagMu.Lock()
	if len(lags) != 2 || lags[1] <= 0 || lags[1] > took+time.Second {
		t.Errorf("propagation lags %v for a create and a revoke that took %v", lags, took)
	}
	lagMu.Unlock()
	if w.cache.Stats().Loads.Load() != loads+1 {
		t.Fatalf("want exactly one reload after the notification, got %d", w.cache.Stats().Loads.Load()-loads)
	}

	// A key created after its digest was looked up as unknown.
	next, _ := keystore.GenerateSecret("kg")
	keystore.SetSecretGenerator(w.store, func(string) (keystore.Secret, error) { return next, nil })
	nd := w.store.Hasher().Digest(next)
	if _, err := w.cache.Lookup(context.Background(), nd); !errors.Is(err, keystore.ErrNotFound) {
		t.Fatal(err)
	}
	mustCreate(t, w.store, keystore.CreateParams{})
	waitUntil(t, time.Second, "the new key to clear the unknown-key entry", func() bool {
		_, err := w.cache.Lookup(context.Background(), nd)
		return err == nil
	})
}

func TestWatcherSurvivesTerminatedListener(t *testing.T) {
	url := pgtest.NewDatabase(t)
	w := startWatched(t, url, keystore.WatchOptions{PollInterval: time.Hour}, url)
	k, secret := mustCreate(t, w.store, keystore.CreateParams{})
	d := w.store.Hasher().Digest(secret)
	waitUntil(t, time.Second, "the create's notification", func() bool { return w.watcher.Stats().Notifications.Load() == 1 })
	w.cache.Lookup(context.Background(), d)
	loads := w.cache.Stats().Loads.Load()
	admin := pgtest.Connect(t, url)
	// Kill the listener, and revoke while it is gone: the notification is
	// lost, so only the resync after reconnecting can bring the change.
	tag, err := admin.Exec(context.Background(), `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
		WHERE datname = current_database() AND query LIKE 'LISTEN%'`)
	if err != nil || tag.RowsAffected() != 1 {
		rows, _ := admin.Query(context.Background(), `SELECT coalesce(query, ''), coalesce(state, '') FROM pg_stat_activity WHERE datname = current_database()`)
		for rows.Next() {
			var q, st string
			rows.Scan(&q, &st)
			t.Logf("backend: %q %q", q, st)
		}
		t.Fatalf("terminating the listener: %v, %d rows", err, tag.RowsAffected())
	}
	waitUntil(t, 2*time.Second, "the listener to notice", func() bool { return w.watcher.Stats().Reconnects.Load() > 0 })
	if _, err := w.store.Revoke(context.Background(), k.ID, ""); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 3*time.Second, "the resync after reconnecting", func() bool { return revokedInCache(w, d) })
	if st := w.watcher.Stats(); st.Resyncs.Load() == 0 || w.cache.Stats().Loads.Load() != loads {
		t.Fatalf("the change arrived by a cache miss, not by the resync: resyncs %d, loads %d → %d",
			st.Resyncs.Load(), loads, w.cache.Stats().Loads.Load())
	}
	// And the new connection listens again.
	k2, secret2 := mustCreate(t, w.store, keystore.CreateParams{})
	d2 := w.store.Hasher().Digest(secret2)
	w.cache.Lookup(context.Background(), d2)
	w.store.Revoke(context.Background(), k2.ID, "")
	waitUntil(t, time.Second, "a notification on the new connection", func() bool { return revokedInCache(w, d2) })
}

func TestWatcherPollCatchesLostNotifications(t *testing.T) {
	url := pgtest.NewDatabase(t)
	// The listener points at a database that does not exist: no
	// notification ever arrives, only the poll can help.
	w := startWatched(t, url, keystore.WatchOptions{PollInterval: 200 * time.Millisecond},
		pgtest.WithDatabase(t, url, "keygate_nowhere"))
	k, secret := mustCreate(t, w.store, keystore.CreateParams{})
	d := w.store.Hasher().Digest(secret)
	w.cache.Lookup(context.Background(), d)
	loads := w.cache.Stats().Loads.Load()
	time.Sleep(300 * time.Millisecond) // let the first poll learn the database's time
	if _, err := w.store.Revoke(context.Background(), k.ID, ""); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 2*time.Second, "the poll to bring the revocation", func() bool { return revokedInCache(w, d) })
	if w.cache.Stats().Loads.Load() != loads {
		t.Fatal("the change arrived by a cache miss, not by the poll")
	}
}
