package postgres_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/keygate/keygate/internal/pgtest"
	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/keystore/conformance"
	"github.com/keygate/keygate/keystore/postgres"
)

// preparedLookups counts the lookup statements prepared on the session
// that q's next statement runs on.
func preparedLookups(t *testing.T, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}) int {
	t.Helper()
	var n int
	if err := q.QueryRow(context.Background(), `SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE '%FROM api_keys WHERE digest%'`,
		pgx.QueryExecModeSimpleProtocol).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestLookupsPreparedOnlyOnDirectSessions: in keygate's statement mode
// (cache_describe), the decision path's lookup is prepared on a session
// of PostgreSQL's own, once, and never through PgBouncer in transaction
// mode, where every lookup keeps working; a URL that chose a mode keeps
// it.
func TestLookupsPreparedOnlyOnDirectSessions(t *testing.T) {
	url := pgtest.NewDatabase(t)
	lookups := func(t *testing.T, b keystore.Backend, n int) {
		t.Helper()
		s, err := keystore.New(b, keystore.Options{})
		if err != nil {
			t.Fatal(err)
		}
		_, secret := conformance.MustCreate(t, s, keystore.CreateParams{AccountID: "acme", Name: "prepared"})
		for range n {
			if _, err := s.Lookup(context.Background(), s.Hasher().Digest(secret)); err != nil {
				t.Fatalf("lookup: %v", err)
			}
		}
	}
	for _, tc := range []struct {
		name string
		mode pgx.QueryExecMode
		ask  func(*pgxpool.Config) // nil: the first lookup asks
		want int
	}{
		{"direct", pgx.QueryExecModeCacheDescribe, nil, 1},
		{"direct, asked on connect", pgx.QueryExecModeCacheDescribe, postgres.AskOnConnect, 1},
		{"a mode the URL chose (describe_exec)", pgx.QueryExecModeDescribeExec, nil, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			one := func(cfg *pgxpool.Config) { cfg.MaxConns = 1 }
			b := postgres.New(connectWith(t, url, tc.mode, one, tc.ask), postgres.Options{})
			lookups(t, b, 3)
			if n := preparedLookups(t, b.Pool()); n != tc.want {
				t.Fatalf("prepared lookup statements on the pool's one session: %d, want %d", n, tc.want)
			}
		})
	}
	t.Run("through PgBouncer in transaction mode", func(t *testing.T) {
		bouncer := pgtest.NewPgBouncer(t, pgtest.ServerURL(t), "transaction")
		direct, err := pgx.ParseConfig(url)
		if err != nil {
			t.Fatal(err)
		}
		pool := connectWith(t, bouncer.Through(t, url), pgx.QueryExecModeCacheDescribe)
		b := postgres.New(pool, postgres.Options{Direct: direct})
		lookups(t, b, 50)
		if got := preparedLookups(t, pool); got != 0 {
			t.Fatalf("a lookup statement was prepared through PgBouncer: %d", got)
		}
	})
}
