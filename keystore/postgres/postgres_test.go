package postgres_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/keygate/keygate/internal/pgtest"
	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/keystore/conformance"
	"github.com/keygate/keygate/keystore/postgres"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// harness gives the conformance suite databases on the test server.
var harness = conformance.Harness{
	NewDatabase: func(tb testing.TB, migrated bool) func(testing.TB) keystore.Backend {
		url := pgtest.NewEmptyDatabase(tb)
		if migrated {
			url = pgtest.NewDatabase(tb)
		}
		return func(tb testing.TB) keystore.Backend { return open(tb, url) }
	},
}

// open returns a backend on the database at url in keygate's statement
// mode (cache_describe, as serve's pool), closed when the test ends.
func open(tb testing.TB, url string) *postgres.Backend {
	b := postgres.New(connectWith(tb, url, pgx.QueryExecModeCacheDescribe), postgres.Options{})
	tb.Cleanup(b.Close)
	return b
}

func TestConformance(t *testing.T) { conformance.RunTests(t, harness) }

func TestStoreUnavailable(t *testing.T) {
	pool, err := pgxpool.New(context.Background(), "postgres://nobody@127.0.0.1:1/none?connect_timeout=1")
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	s, _ := keystore.New(postgres.New(pool, postgres.Options{}), keystore.Options{})
	secret, _ := keystore.GenerateSecret("kg")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, err = s.Lookup(ctx, s.Hasher().Digest(secret))
	if !errors.Is(err, keystore.ErrUnavailable) {
		t.Fatalf("Lookup with no database = %v, want ErrUnavailable", err)
	}
	if strings.Contains(err.Error(), secret.Reveal()[3:]) {
		t.Fatal("error mentions the secret")
	}
}

func TestLifecycleTimesComeFromTheDatabase(t *testing.T) {
	url := pgtest.NewDatabase(t)
	b := open(t, url)
	s, _ := keystore.New(b, keystore.Options{}) // no injected clock
	ctx := context.Background()
	k, _ := conformance.MustCreate(t, s, keystore.CreateParams{Expiry: keystore.Expiry{In: time.Hour}})
	revoked, err := s.Revoke(ctx, k.ID, "")
	if err != nil {
		t.Fatal(err)
	}
	var dbNow time.Time
	if err := b.Pool().QueryRow(ctx, `SELECT now()`).Scan(&dbNow); err != nil {
		t.Fatal(err)
	}
	for name, at := range map[string]time.Time{"created_at": k.CreatedAt, "revoked_at": *revoked.RevokedAt} {
		if at.After(dbNow) || dbNow.Sub(at) > 10*time.Second {
			t.Errorf("%s = %v, want the database's time (now %v)", name, at, dbNow)
		}
	}
	if !k.ExpiresAt.Equal(k.CreatedAt.Add(time.Hour)) {
		t.Errorf("expires_at %v, want created_at + 1h", k.ExpiresAt)
	}
}

// TestWatcherSurvivesTerminatedListener kills the LISTEN connection just
// after a revocation whose notification was lost: only the resync after
// reconnecting can bring the change.
func TestWatcherSurvivesTerminatedListener(t *testing.T) {
	url := pgtest.NewDatabase(t)
	w := conformance.Watch(t, open(t, url), keystore.WatchOptions{PollInterval: time.Hour}, true)
	k, secret := conformance.MustCreate(t, w.Store, keystore.CreateParams{})
	d := w.Store.Hasher().Digest(secret)
	conformance.WaitUntil(t, time.Second, "the create's notification", func() bool { return w.Watcher.Stats().Notifications.Load() == 1 })
	w.Cache.Lookup(context.Background(), d)
	loads := w.Cache.Stats().Loads.Load()
	admin := pgtest.Connect(t, url)
	// The revocation is written without its notification (as if it had
	// been lost with the connection), so that only the resync can bring
	// it, however fast the listener reconnects.
	if tag, err := admin.Exec(context.Background(), `UPDATE api_keys SET revoked_at = now(), updated_at = clock_timestamp()
		WHERE id = $1`, k.ID); err != nil || tag.RowsAffected() != 1 {
		t.Fatalf("revoking without a notification: %v, %d rows", err, tag.RowsAffected())
	}
	tag, err := admin.Exec(context.Background(), `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
		WHERE datname = current_database() AND query LIKE 'LISTEN%'`)
	if err != nil || tag.RowsAffected() != 1 {
		t.Fatalf("terminating the listener: %v, %d rows", err, tag.RowsAffected())
	}
	conformance.WaitUntil(t, 2*time.Second, "the listener to notice", func() bool { return w.Watcher.Stats().Reconnects.Load() > 0 })
	conformance.WaitUntil(t, 3*time.Second, "the resync after reconnecting", func() bool {
		return w.CachedState(t, d, time.Now()) == keystore.StateRevoked
	})
	if st := w.Watcher.Stats(); st.Resyncs.Load() == 0 || w.Cache.Stats().Loads.Load() != loads {
		t.Fatalf("the change arrived by a cache miss, not by the resync: resyncs %d, loads %d → %d",
			st.Resyncs.Load(), loads, w.Cache.Stats().Loads.Load())
	}
	// And the new connection listens again.
	k2, secret2 := conformance.MustCreate(t, w.Store, keystore.CreateParams{})
	d2 := w.Store.Hasher().Digest(secret2)
	w.Cache.Lookup(context.Background(), d2)
	w.Store.Revoke(context.Background(), k2.ID, "")
	conformance.WaitUntil(t, time.Second, "a notification on the new connection", func() bool {
		return w.CachedState(t, d2, time.Now()) == keystore.StateRevoked
	})
}

// TestWatcherPollCatchesLostNotifications points the listener at a
// database that does not exist: no notification ever arrives, only the
// poll can bring a change.
func TestWatcherPollCatchesLostNotifications(t *testing.T) {
	url := pgtest.NewDatabase(t)
	direct, err := pgxpool.ParseConfig(pgtest.WithDatabase(t, url, "keygate_nowhere"))
	if err != nil {
		t.Fatal(err)
	}
	b := postgres.New(pgtest.Connect(t, url), postgres.Options{Direct: direct.ConnConfig})
	w := conformance.Watch(t, b, keystore.WatchOptions{PollInterval: 200 * time.Millisecond}, false)
	k, secret := conformance.MustCreate(t, w.Store, keystore.CreateParams{})
	d := w.Store.Hasher().Digest(secret)
	w.Cache.Lookup(context.Background(), d)
	loads := w.Cache.Stats().Loads.Load()
	time.Sleep(300 * time.Millisecond) // let the first poll learn the database's time
	if _, err := w.Store.Revoke(context.Background(), k.ID, ""); err != nil {
		t.Fatal(err)
	}
	conformance.WaitUntil(t, 2*time.Second, "the poll to bring the revocation", func() bool {
		return w.CachedState(t, d, time.Now()) == keystore.StateRevoked
	})
	if w.Cache.Stats().Loads.Load() != loads {
		t.Fatal("the change arrived by a cache miss, not by the poll")
	}
}
