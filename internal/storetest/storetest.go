package storetest

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/pgcluster"
	"github.com/keygate/keygate/internal/pgtest"
	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/keystore/conformance"
	"github.com/keygate/keygate/keystore/postgres"
	"github.com/keygate/keygate/keystore/sqlite"
)

// Variable chooses the backend: "postgres" or "sqlite".
const Variable = "KEYGATE_TEST_STORE"

// The backends.
const (
	Postgres = "postgres"
	SQLite   = "sqlite"
)

// Main runs the package's tests (see pgtest.Main) and exits.
func Main(m *testing.M) { pgtest.Main(m) }

var chosen struct {
	once sync.Once
	kind string
	err  error
}

// Kind is the backend this run's tests use.
func Kind(tb testing.TB) string {
	tb.Helper()
	chosen.once.Do(func() {
		switch k := os.Getenv(Variable); k {
		case Postgres, SQLite:
			chosen.kind = k
		case "":
			chosen.kind = SQLite
			if os.Getenv(pgtest.ServerVariable) != "" {
				chosen.kind = Postgres
			} else if _, err := pgcluster.FindBinaries(); err == nil {
				chosen.kind = Postgres
			}
		default:
			chosen.err = fmt.Errorf("%s=%q: want %s or %s", Variable, k, Postgres, SQLite)
		}
	})
	if chosen.err != nil {
		tb.Fatal(chosen.err)
	}
	return chosen.kind
}

// NewDatabase makes a migrated database for this test only and returns
// its --database-url: a PostgreSQL database dropped when the test ends, or
// an SQLite file in the test's temporary directory.
func NewDatabase(tb testing.TB) string {
	tb.Helper()
	if Kind(tb) == Postgres {
		return pgtest.NewDatabase(tb)
	}
	path := filepath.Join(tb.TempDir(), "keygate.db")
	b, err := sqlite.Open(context.Background(), path, sqlite.Options{Create: true})
	if err != nil {
		tb.Fatal(err)
	}
	defer b.Close()
	if _, err := b.Migrate(context.Background(), slog.New(slog.DiscardHandler)); err != nil {
		tb.Fatal(err)
	}
	return "sqlite:" + path
}

// Open opens a backend on a database NewDatabase made, closed when the
// test ends.
func Open(tb testing.TB, url string) keystore.Backend {
	tb.Helper()
	var b keystore.Backend
	if rest, ok := strings.CutPrefix(url, "sqlite:"); ok {
		sb, err := sqlite.Open(context.Background(), rest, sqlite.Options{})
		if err != nil {
			tb.Fatal(err)
		}
		b = sb
	} else {
		b = postgres.New(pgtest.Connect(tb, url), postgres.Options{})
	}
	tb.Cleanup(b.Close)
	return b
}

// NewStore returns a store on a fresh database, and its --database-url.
func NewStore(tb testing.TB, opts keystore.Options) (*keystore.Store, string) {
	tb.Helper()
	url := NewDatabase(tb)
	s, err := keystore.New(Open(tb, url), opts)
	if err != nil {
		tb.Fatal(err)
	}
	return s, url
}

// Snapshot is everything the database at url holds, as Export reads it
// (keys, then audit events), for checking that a refused change wrote
// nothing.
func Snapshot(tb testing.TB, url string) []byte {
	tb.Helper()
	return conformance.Snapshot(tb, Open(tb, url))
}

// CreateExpiring creates a key, described by p, that expires after in
// from now (in may be shorter than keystore.MinLifetime, which the store
// refuses to issue, or negative): it is created with a clock set back. It
// returns the key and its secret.
func CreateExpiring(tb testing.TB, url string, p keystore.CreateParams, in time.Duration) (*keystore.Key, keystore.Secret) {
	tb.Helper()
	s, err := keystore.New(Open(tb, url), keystore.Options{Now: func() time.Time { return time.Now().Add(in - keystore.MinLifetime) }})
	if err != nil {
		tb.Fatal(err)
	}
	p.Expiry = keystore.Expiry{In: keystore.MinLifetime}
	k, secret, err := s.Create(context.Background(), p)
	if err != nil {
		tb.Fatal(err)
	}
	return k, secret
}

// NewEmptyDatabase is a database for this test only with no schema yet,
// for tests of migration: its --database-url.
func NewEmptyDatabase(tb testing.TB) string {
	tb.Helper()
	if Kind(tb) == Postgres {
		return pgtest.NewEmptyDatabase(tb)
	}
	return "sqlite:" + filepath.Join(tb.TempDir(), "keygate.db")
}

// Count is how many keys and audit events the database at url holds.
func Count(tb testing.TB, url string) (keys, events int) {
	tb.Helper()
	return conformance.Count(tb, Open(tb, url))
}
