package postgres_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/keygate/keygate/internal/pgtest"
	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/keystore/conformance"
	"github.com/keygate/keygate/keystore/postgres"
)

// replicated is a primary with one hot standby, the keygate schema
// migrated on the primary's "postgres" database.
type replicated struct {
	primary, standby *pgtest.Cluster
}

// newReplicated starts a primary and a standby replaying each commit
// applyDelay after it arrives.
func newReplicated(t *testing.T, applyDelay time.Duration) replicated {
	t.Helper()
	primary := pgtest.NewCluster(t)
	cfg, err := pgx.ParseConfig(primary.URL())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := postgres.Migrate(context.Background(), cfg, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	return replicated{primary: primary, standby: primary.NewStandby(t, applyDelay)}
}

// backend is a Backend on the primary reading from the standby.
func (r replicated) backend(t *testing.T, opts postgres.Options) *postgres.Backend {
	t.Helper()
	pool := pgtest.Connect(t, r.primary.URL())
	opts.Reads = []*pgxpool.Pool{pgtest.Connect(t, r.standby.URL())}
	opts.PingInterval = 500 * time.Millisecond
	return postgres.New(pool, opts)
}

// TestStandbyNeverUndoesARevocation revokes keys held in a watched cache
// while the only standby replays commits two seconds late: the lookup
// that follows each notification must see the revocation (the primary
// answers it), where a backend without the fences reads the standby and
// finds the key still valid. Lookups of keys that did not change are
// answered by the standby.
func TestStandbyNeverUndoesARevocation(t *testing.T) {
	const delay = 2 * time.Second
	r := newReplicated(t, delay)
	for _, tc := range []struct {
		name     string
		unfenced bool
	}{{"fenced", false}, {"unfenced", true}} {
		t.Run(tc.name, func(t *testing.T) {
			b := r.backend(t, postgres.Options{})
			if tc.unfenced {
				postgres.Unfenced(b)
			}
			w := conformance.Watch(t, b, keystore.WatchOptions{PollInterval: time.Hour}, true)
			ctx := context.Background()
			k, secret := conformance.MustCreate(t, w.Store, keystore.CreateParams{})
			d := w.Store.Hasher().Digest(secret)
			_, otherSecret := conformance.MustCreate(t, w.Store, keystore.CreateParams{})
			od := w.Store.Hasher().Digest(otherSecret)
			r.primary.WaitReplayed(t, r.standby, delay+5*time.Second)
			conformance.WaitUntil(t, 2*time.Second, "the standby to be polled", func() bool { return b.Standbys()[0].Usable })
			if st := w.CachedState(t, d, time.Now()); st != keystore.StateActive {
				t.Fatalf("new key is %v, want active", st)
			}

			before := b.ReadStats().Standby.Load()
			if _, err := w.Store.Revoke(ctx, k.ID, ""); err != nil {
				t.Fatal(err)
			}
			conformance.WaitUntil(t, time.Second, "the revocation's notification", func() bool {
				return w.Watcher.Stats().Notifications.Load() >= 3
			})
			got := w.CachedState(t, d, time.Now())
			switch {
			case !tc.unfenced && got != keystore.StateRevoked:
				t.Errorf("lookup after the revocation's notification: %v, want revoked (the standby replays %v late)", got, delay)
			case tc.unfenced && got != keystore.StateActive:
				t.Errorf("without fences, the lookup after the notification read %v; want the standby's stale active state (the test shows nothing)", got)
			}
			t.Logf("%s: the first lookup after the revocation's notification saw the key %v; reads: %d from the standby, %d from the primary (%d of them fenced)",
				tc.name, got, b.ReadStats().Standby.Load(), b.ReadStats().Primary.Load(), b.ReadStats().Fenced.Load())

			// A key that did not change is read from the standby.
			if _, err := w.Store.Lookup(ctx, od); err != nil {
				t.Fatal(err)
			}
			if b.ReadStats().Standby.Load() == before {
				t.Errorf("no lookup was answered by the standby")
			}

			// Once the standby has replayed the revocation, it answers that
			// key again, and the fence is gone.
			r.primary.WaitReplayed(t, r.standby, delay+5*time.Second)
			if !tc.unfenced {
				conformance.WaitUntil(t, 2*time.Second, "the fence to be folded into the floor", func() bool { return postgres.Fenced(b) == 0 })
			}
			fromStandby := b.ReadStats().Standby.Load()
			rec, err := w.Store.Lookup(ctx, d)
			if err != nil || rec.StateAt(time.Now()) != keystore.StateRevoked {
				t.Fatalf("lookup once replayed: %v, %v", rec, err)
			}
			if b.ReadStats().Standby.Load() != fromStandby+1 {
				t.Errorf("the lookup after the standby replayed the revocation was not answered by it")
			}
		})
	}
}
