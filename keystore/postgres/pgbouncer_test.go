package postgres_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/keygate/keygate/internal/pgtest"
	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/keystore/conformance"
	"github.com/keygate/keygate/keystore/postgres"
)

// connectWith opens a pool on url in the given statement mode, closed when
// the test ends; configure, if not nil, changes its configuration first.
func connectWith(tb testing.TB, url string, mode pgx.QueryExecMode, configure ...func(*pgxpool.Config)) *pgxpool.Pool {
	tb.Helper()
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		tb.Fatal(err)
	}
	cfg.ConnConfig.DefaultQueryExecMode = mode
	for _, c := range configure {
		if c != nil {
			c(cfg)
		}
	}
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(pool.Close)
	return pool
}

// TestConformanceThroughPgBouncer runs the whole store contract with the
// pool through PgBouncer in transaction mode, in keygate's statement mode
// (cache_describe), and LISTEN on a direct connection.
func TestConformanceThroughPgBouncer(t *testing.T) {
	bouncer := pgtest.NewPgBouncer(t, pgtest.ServerURL(t), "transaction")
	conformance.RunTests(t, conformance.Harness{
		NewDatabase: func(tb testing.TB, migrated bool) func(testing.TB) keystore.Backend {
			url := pgtest.NewEmptyDatabase(tb)
			if migrated {
				url = pgtest.NewDatabase(tb)
			}
			return func(tb testing.TB) keystore.Backend {
				direct, err := pgx.ParseConfig(url)
				if err != nil {
					tb.Fatal(err)
				}
				b := postgres.New(connectWith(tb, bouncer.Through(tb, url), pgx.QueryExecModeCacheDescribe), postgres.Options{Direct: direct})
				tb.Cleanup(b.Close)
				return b
			}
		},
	})
}

// TestCheckFindsMisconfiguredConnections: each wrong connection is named
// in one finding, fatal where keygate would fail or could be wrong, and a
// good setup has none.
func TestCheckFindsMisconfiguredConnections(t *testing.T) {
	r := newReplicated(t, 0)
	other := pgtest.NewCluster(t) // a cluster of its own: another system identifier
	url := pgtest.NewDatabase(t)
	transaction := pgtest.NewPgBouncer(t, pgtest.ServerURL(t), "transaction")
	session := pgtest.NewPgBouncer(t, pgtest.ServerURL(t), "session")
	direct := func(tb testing.TB, url string) *pgx.ConnConfig {
		cfg, err := pgx.ParseConfig(url)
		if err != nil {
			tb.Fatal(err)
		}
		return cfg
	}
	describe := pgx.QueryExecModeCacheDescribe
	for _, tc := range []struct {
		name  string
		open  func(t *testing.T) *postgres.Backend
		want  postgres.Connection
		fatal bool
		says  string // "": no finding at all
	}{
		{"direct, no replicas", func(t *testing.T) *postgres.Backend {
			return postgres.New(connectWith(t, url, describe), postgres.Options{})
		}, 0, false, ""},
		{"a standby of the primary", func(t *testing.T) *postgres.Backend {
			return r.backend(t, postgres.Options{})
		}, 0, false, ""},
		{"pool through PgBouncer in transaction mode, LISTEN direct", func(t *testing.T) *postgres.Backend {
			return postgres.New(connectWith(t, transaction.Through(t, url), describe), postgres.Options{Direct: direct(t, url)})
		}, 0, false, ""},
		{"listen through PgBouncer in transaction mode", func(t *testing.T) *postgres.Backend {
			return postgres.New(connectWith(t, url, describe), postgres.Options{Direct: direct(t, transaction.Through(t, url))})
		}, postgres.ListenConn, true, "LISTEN needs a direct connection"},
		{"everything through PgBouncer in transaction mode", func(t *testing.T) *postgres.Backend {
			return postgres.New(connectWith(t, transaction.Through(t, url), describe), postgres.Options{})
		}, postgres.ListenConn, true, "not PgBouncer in transaction mode"},
		{"prepared statements through PgBouncer in transaction mode", func(t *testing.T) *postgres.Backend {
			return postgres.New(connectWith(t, transaction.Through(t, url), pgx.QueryExecModeCacheStatement), postgres.Options{Direct: direct(t, url)})
		}, postgres.MainConn, true, "drop default_query_exec_mode=cache_statement"},
		{"PgBouncer in session mode", func(t *testing.T) *postgres.Backend {
			return postgres.New(connectWith(t, session.Through(t, url), describe), postgres.Options{})
		}, postgres.MainConn, false, "session mode"},
		{"read URL at the primary", func(t *testing.T) *postgres.Backend {
			return postgres.New(connectWith(t, r.primary.URL(), describe), postgres.Options{Reads: []*pgxpool.Pool{connectWith(t, r.primary.URL(), describe)}})
		}, postgres.ReadConn, false, "is not a standby"},
		{"read URL at another cluster", func(t *testing.T) *postgres.Backend {
			return postgres.New(connectWith(t, r.primary.URL(), describe), postgres.Options{Reads: []*pgxpool.Pool{connectWith(t, other.URL(), describe)}})
		}, postgres.ReadConn, true, "belongs to another cluster"},
		{"read URL at another database of the standby", func(t *testing.T) *postgres.Backend {
			return postgres.New(connectWith(t, r.primary.URL(), describe),
				postgres.Options{Reads: []*pgxpool.Pool{connectWith(t, pgtest.WithDatabase(t, r.standby.URL(), "template1"), describe)}})
		}, postgres.ReadConn, true, `names database "template1"`},
		{"read URL where nothing listens", func(t *testing.T) *postgres.Backend {
			return postgres.New(connectWith(t, r.primary.URL(), describe),
				postgres.Options{Reads: []*pgxpool.Pool{connectWith(t, "postgres://postgres@127.0.0.1:1/postgres?connect_timeout=1", describe)}})
		}, postgres.ReadConn, false, "does not answer"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := tc.open(t)
			found, err := b.Check(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if tc.says == "" {
				if len(found) != 0 {
					t.Fatalf("findings %+v, want none", found)
				}
				return
			}
			if len(found) != 1 {
				t.Fatalf("findings %+v, want one", found)
			}
			f := found[0]
			if f.Conn != tc.want || f.Fatal != tc.fatal || !strings.Contains(f.Problem, tc.says) {
				t.Errorf("finding %+v, want connection %v, fatal %v, saying %q", f, tc.want, tc.fatal, tc.says)
			}
			t.Logf("%s: %s (fatal %v)", f.Where, f.Problem, f.Fatal)
		})
	}
}

// TestListenThroughTransactionPoolingFails: a listener through PgBouncer
// in transaction mode would wait for notifications that go elsewhere; it
// fails at once instead, every session.
func TestListenThroughTransactionPoolingFails(t *testing.T) {
	url := pgtest.NewDatabase(t)
	transaction := pgtest.NewPgBouncer(t, pgtest.ServerURL(t), "transaction")
	b := postgres.New(connectWith(t, transaction.Through(t, url), pgx.QueryExecModeCacheDescribe), postgres.Options{})
	err := b.Listen(context.Background(), func() error { t.Fatal("listening through transaction pooling"); return nil }, func(keystore.Notice) {})
	if !errors.Is(err, postgres.ErrListenProbe) {
		t.Fatalf("Listen through PgBouncer in transaction mode = %v, want ErrListenProbe", err)
	}
}

// TestConcurrentLastUsedFlushesNeitherDeadlockNorLose has replicas flush
// last-used times of the same keys at once, each batch in its own order
// (a rolling restart, where every replica flushes at shutdown): no flush
// fails, and every key ends with the latest time any replica wrote.
func TestConcurrentLastUsedFlushesNeitherDeadlockNorLose(t *testing.T) {
	const (
		keys     = 200
		replicas = 10
		rounds   = 5
	)
	url := pgtest.NewDatabase(t)
	s, err := keystore.New(open(t, url), keystore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ids := make([]string, keys)
	for i := range ids {
		k, _ := conformance.MustCreate(t, s, keystore.CreateParams{})
		ids[i] = k.ID
	}
	base := time.Now().UTC().Truncate(time.Second)
	want := map[string]time.Time{}
	errs := make(chan error, replicas*rounds)
	var wg sync.WaitGroup
	for r := range replicas {
		b := open(t, url) // a pool of its own, as a replica has
		batches := make([][]keystore.LastUsed, rounds)
		for round := range rounds {
			rng := rand.New(rand.NewPCG(uint64(r), uint64(round)))
			for _, i := range rng.Perm(keys) {
				at := base.Add(time.Duration(rng.IntN(1_000_000)) * time.Microsecond)
				batches[round] = append(batches[round], keystore.LastUsed{KeyID: ids[i], At: at})
				if at.After(want[ids[i]]) {
					want[ids[i]] = at
				}
			}
		}
		wg.Go(func() {
			for _, batch := range batches {
				errs <- b.RecordLastUsed(context.Background(), batch)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("a flush failed: %v", err)
		}
	}
	for _, id := range ids {
		k, err := s.Get(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if k.LastUsedAt == nil || !k.LastUsedAt.Equal(want[id]) {
			t.Errorf("key %s last used %v, want %v (the latest written)", id, k.LastUsedAt, want[id])
		}
	}
}

// BenchmarkLookup is one uncached lookup, in pgx's default statement mode
// (prepared on the server) and in keygate's (cache_describe: not
// prepared, which PgBouncer in transaction mode supports), to show what
// the latter costs.
func BenchmarkLookup(b *testing.B) {
	url := pgtest.NewDatabase(b)
	s, err := keystore.New(postgres.New(connectWith(b, url, pgx.QueryExecModeCacheDescribe), postgres.Options{}), keystore.Options{})
	if err != nil {
		b.Fatal(err)
	}
	_, secret, err := s.Create(context.Background(), keystore.CreateParams{AccountID: "acme", Name: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	d := s.Hasher().Digest(secret)
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeCacheStatement, pgx.QueryExecModeCacheDescribe} {
		b.Run(mode.String(), func(b *testing.B) {
			backend := postgres.New(connectWith(b, url, mode), postgres.Options{})
			ctx := context.Background()
			for b.Loop() {
				if _, err := backend.Lookup(ctx, d); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
