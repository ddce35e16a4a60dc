package pgtest

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/keygate/keygate/internal/needs"
	"github.com/keygate/keygate/internal/pgcluster"
	"github.com/keygate/keygate/keystore/postgres"
)

var (
	mainCalled bool
	shared     struct {
		once    sync.Once
		url     string
		cluster *pgcluster.Cluster
		err     error
	}
	template struct {
		once sync.Once
		name string
		err  error
	}
)

// Main runs the package's tests, stops the throwaway cluster if one was
// started, and exits. Call it from TestMain.
func Main(m *testing.M) { os.Exit(Run(m)) }

// Run is Main without the exit, for a TestMain with its own cleanup to do:
// it returns the exit code.
func Run(m *testing.M) int {
	mainCalled = true
	code := m.Run()
	if bouncer.p != nil {
		bouncer.p.stop()
		os.RemoveAll(bouncer.dir)
	}
	if shared.cluster != nil {
		shared.cluster.Destroy()
	}
	return code
}

// ServerVariable names the environment variable that points the tests at
// a PostgreSQL server they may create and drop databases on. It is a
// test-only variable, never DATABASE_URL, which keygate itself reads: a
// shell left pointing at a real server must not get test databases there.
const ServerVariable = "KEYGATE_TEST_DATABASE_URL"

// ServerURL returns the connection string of the server tests create
// their databases on: KEYGATE_TEST_DATABASE_URL, or a throwaway cluster
// started once per test binary.
func ServerURL(tb testing.TB) string {
	tb.Helper()
	if !mainCalled {
		tb.Fatal("pgtest: call pgtest.Main(m) from TestMain, so that the throwaway cluster is stopped at the end")
	}
	shared.once.Do(func() {
		if u := os.Getenv(ServerVariable); u != "" {
			shared.url = u
			return
		}
		shared.cluster, shared.err = pgcluster.Start()
		if shared.err == nil {
			shared.url = shared.cluster.URL()
		}
	})
	if shared.err != nil {
		missing(tb, shared.err)
	}
	return shared.url
}

// NewDatabase creates a database with the keygate schema migrated, for this
// test only, and returns its connection string. It is dropped when the test
// ends.
func NewDatabase(tb testing.TB) string {
	tb.Helper()
	return createDatabase(tb, migratedTemplate(tb))
}

// NewEmptyDatabase creates an empty database for this test only, for tests
// of migration itself.
func NewEmptyDatabase(tb testing.TB) string {
	tb.Helper()
	return createDatabase(tb, "template0")
}

// NewPool returns a pool on a fresh migrated database, closed when the test
// ends.
func NewPool(tb testing.TB) *pgxpool.Pool {
	tb.Helper()
	return Connect(tb, NewDatabase(tb))
}

// Connect opens a pool on url, closed when the test ends.
func Connect(tb testing.TB, url string) *pgxpool.Pool {
	tb.Helper()
	pool, err := pgxpool.New(context.Background(), url)
	if err != nil {
		tb.Fatalf("pgtest: connecting: %v", err)
	}
	tb.Cleanup(pool.Close)
	return pool
}

// WithDatabase returns url with its database name replaced by name. url is
// a postgres:// URL or a keyword/value connection string.
func WithDatabase(tb testing.TB, base, name string) string {
	tb.Helper()
	if strings.HasPrefix(base, "postgres://") || strings.HasPrefix(base, "postgresql://") {
		u, err := url.Parse(base)
		if err != nil {
			tb.Fatalf("pgtest: %s: %v", ServerVariable, err)
		}
		u.Path = "/" + name
		return u.String()
	}
	return base + " dbname=" + name
}

func createDatabase(tb testing.TB, template string) string {
	tb.Helper()
	server := ServerURL(tb)
	name := "keygate_test_" + randomSuffix()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	admin, err := pgx.Connect(ctx, server)
	if err != nil {
		tb.Fatalf("pgtest: connecting to %s: %v", redact(server), err)
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, fmt.Sprintf(`CREATE DATABASE %s TEMPLATE %s`, name, template)); err != nil {
		tb.Fatalf("pgtest: creating database: %v", err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		admin, err := pgx.Connect(ctx, server)
		if err != nil {
			tb.Logf("pgtest: dropping %s: %v", name, err)
			return
		}
		defer admin.Close(ctx)
		if _, err := admin.Exec(ctx, fmt.Sprintf(`DROP DATABASE IF EXISTS %s WITH (FORCE)`, name)); err != nil {
			tb.Logf("pgtest: dropping %s: %v", name, err)
		}
	})
	return throughPgBouncer(tb, WithDatabase(tb, server, name))
}

// PgBouncerVariable, set to "transaction" or "session", makes NewDatabase
// and NewEmptyDatabase hand out URLs through one pgbouncer in that pool
// mode, started for the test binary in front of the test server, with
// statements in pgx's cache_describe mode (keygate's default, which
// transaction mode supports): a package's suite then runs through
// PgBouncer,
//
//	KEYGATE_TEST_PGBOUNCER=transaction go test ./admin
const PgBouncerVariable = "KEYGATE_TEST_PGBOUNCER"

var bouncer struct {
	once sync.Once
	p    *PgBouncer
	dir  string
	err  error
}

// throughPgBouncer is url, or url through the shared pgbouncer when
// PgBouncerVariable asks for one.
func throughPgBouncer(tb testing.TB, dbURL string) string {
	tb.Helper()
	mode := os.Getenv(PgBouncerVariable)
	if mode == "" {
		return dbURL
	}
	bouncer.once.Do(func() {
		bin := needs.Program(tb, "pgbouncer", "apt-get install pgbouncer", "/usr/sbin/pgbouncer")
		if bouncer.dir, bouncer.err = os.MkdirTemp("", "keygate-pgbouncer-"); bouncer.err == nil {
			bouncer.p, bouncer.err = startPgBouncer(bin, bouncer.dir, ServerURL(tb), mode)
		}
	})
	if bouncer.err != nil || bouncer.p == nil {
		tb.Fatalf("pgtest: %s=%s: no pgbouncer (%v)", PgBouncerVariable, mode, bouncer.err)
	}
	u, err := url.Parse(bouncer.p.Through(tb, dbURL))
	if err != nil {
		tb.Fatal(err)
	}
	q := u.Query()
	q.Set("default_query_exec_mode", "cache_describe")
	u.RawQuery = q.Encode()
	return u.String()
}

// migratedTemplate returns the name of a template database holding the
// current schema. Its name includes a hash of the migrations, so a server
// shared between runs never hands out a stale schema; an advisory lock
// keeps concurrent test binaries from building it twice.
func migratedTemplate(tb testing.TB) string {
	tb.Helper()
	server := ServerURL(tb)
	template.once.Do(func() {
		template.name, template.err = buildTemplate(server, tb)
	})
	if template.err != nil {
		tb.Fatalf("pgtest: building the migrated template: %v", template.err)
	}
	return template.name
}

func buildTemplate(server string, tb testing.TB) (string, error) {
	sum := sha256.New()
	err := fs.WalkDir(postgres.MigrationsFS(), ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(postgres.MigrationsFS(), path)
		fmt.Fprintf(sum, "%s\x00%s\x00", path, b)
		return err
	})
	if err != nil {
		return "", err
	}
	name := "keygate_template_" + hex.EncodeToString(sum.Sum(nil))[:16]

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	admin, err := pgx.Connect(ctx, server)
	if err != nil {
		return "", fmt.Errorf("connecting to %s: %w", redact(server), err)
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, `SELECT pg_advisory_lock(727274)`); err != nil {
		return "", err
	}
	defer admin.Exec(ctx, `SELECT pg_advisory_unlock(727274)`)
	var exists bool
	if err := admin.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, name).Scan(&exists); err != nil {
		return "", err
	}
	if exists {
		return name, nil
	}
	building := name + "_building"
	if _, err := admin.Exec(ctx, `DROP DATABASE IF EXISTS `+building+` WITH (FORCE)`); err != nil {
		return "", err
	}
	if _, err := admin.Exec(ctx, `CREATE DATABASE `+building+` TEMPLATE template0`); err != nil {
		return "", err
	}
	cfg, err := pgx.ParseConfig(WithDatabase(tb, server, building))
	if err != nil {
		return "", err
	}
	if _, err := postgres.Migrate(ctx, cfg, slog.New(slog.DiscardHandler)); err != nil {
		return "", err
	}
	if _, err := admin.Exec(ctx, `ALTER DATABASE `+building+` RENAME TO `+name); err != nil {
		return "", err
	}
	return name, nil
}

func randomSuffix() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// redact hides a password in a connection string for messages.
func redact(s string) string {
	if u, err := url.Parse(s); err == nil && u.User != nil {
		if _, ok := u.User.Password(); ok {
			u.User = url.UserPassword(u.User.Username(), "xxxxx")
		}
		return u.String()
	}
	return "the database"
}

// missing ends a test that cannot have PostgreSQL: skipped outside CI,
// failed in CI.
func missing(tb testing.TB, err error) {
	tb.Helper()
	if errors.Is(err, pgcluster.ErrNoBinaries) {
		needs.Missing(tb, "PostgreSQL's server (initdb, pg_ctl) or "+ServerVariable, "apt-get install postgresql")
	}
	tb.Fatalf("pgtest: %v", err)
}
