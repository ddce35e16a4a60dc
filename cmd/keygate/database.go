package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/keystore/postgres"
	"github.com/keygate/keygate/keystore/sqlite"
)

// dbFlags locate the database.
type dbFlags struct {
	DatabaseURL string `group:"store" name:"database-url" placeholder:"URL" help:"Where keys live: sqlite:PATH, the embedded store for one node (sqlite::memory: for a throwaway one), or a PostgreSQL URL (postgres://… or key=value) for any number of replicas; DATABASE_URL works too, and PGHOST and the other PG* variables for PostgreSQL."`

	// opened is the database openStore opened, for storeError's messages.
	opened database `kong:"-"`
}

// sqliteScheme starts --database-url for the embedded store.
const sqliteScheme = "sqlite:"

// databaseKind is which backend a --database-url names.
type databaseKind int

const (
	postgresDB databaseKind = iota
	sqliteDB
)

// database is a parsed --database-url.
type database struct {
	kind databaseKind
	// path is the SQLite file (or sqlite.Memory); conn the PostgreSQL
	// connection string ("" when the PG* variables say everything).
	path, conn string
	getenv     func(string) string
	// serve's PostgreSQL connections besides the pool (replicaFlags):
	// the read replicas and the LISTEN connection ("": none, and conn).
	reads, listen string
	readMaxLag    time.Duration
}

// noDatabase is the error of a command run without a database.
var noDatabase = usageError("--database-url: no database configured: give sqlite:PATH (embedded, like sqlite:keygate.db) " +
	"or a PostgreSQL URL (postgres://user@host/db), or set DATABASE_URL")

// database parses --database-url. Without one it refuses, rather than
// guess (libpq's defaults would reach a database named after the user),
// unless PGHOST, PGDATABASE or PGSERVICE say which PostgreSQL database.
func (f dbFlags) database(getenv func(string) string) (database, error) {
	u := strings.TrimSpace(f.DatabaseURL)
	switch {
	case u == "":
		for _, v := range []string{"PGHOST", "PGDATABASE", "PGSERVICE"} {
			if getenv(v) != "" {
				return database{kind: postgresDB, getenv: getenv}, nil
			}
		}
		return database{}, noDatabase
	case strings.HasPrefix(u, sqliteScheme):
		path := strings.TrimPrefix(strings.TrimPrefix(u, sqliteScheme), "//")
		if path == "" {
			return database{}, usageError("--database-url: %s names no file: give sqlite:PATH, like sqlite:keygate.db", u)
		}
		return database{kind: sqliteDB, path: path}, nil
	case strings.HasPrefix(u, "postgres://"), strings.HasPrefix(u, "postgresql://"):
		return database{kind: postgresDB, conn: u, getenv: getenv}, nil
	case !strings.Contains(u, "://") && strings.Contains(u, "="):
		return database{kind: postgresDB, conn: u, getenv: getenv}, nil // key=value
	}
	scheme, _, _ := strings.Cut(u, ":")
	return database{}, usageError("--database-url: %q is not a database keygate knows: use sqlite:PATH (embedded) or postgres://… (PostgreSQL)",
		echoShort(scheme+":"))
}

// same reports whether d and o name one database, as far as their URLs
// tell: one SQLite file, or one PostgreSQL connection string.
func (d database) same(o database) bool {
	if d.kind != o.kind {
		return false
	}
	if d.kind == sqliteDB {
		a, errA := filepath.Abs(d.path)
		b, errB := filepath.Abs(o.path)
		return errA == nil && errB == nil && a == b && d.path != sqlite.Memory
	}
	return d.conn == o.conn
}

// echoShort is s cut to a length fit for an error message.
func echoShort(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}

// connectTimeout bounds how long a command waits for an unreachable
// database when the connection string sets no connect_timeout.
const connectTimeout = 5 * time.Second

// defaultPoolSize is the most connections a process opens when the
// connection string sets no pool_max_conns: lookups of uncached keys share
// the pool with the delta poll, last-used writes and health pings.
const defaultPoolSize = 10

// defaultMinConns is how many connections the pool keeps open when the
// connection string sets no pool_min_conns.
const defaultMinConns = 2

// poolConfig is the PostgreSQL pool's configuration.
func (d database) poolConfig() (*pgxpool.Config, error) { return poolConfig("--database-url", d.conn) }

// poolConfig is the configuration of a pool on conn, the value of flag.
// Unless conn says otherwise, statements are not prepared on the server
// but their descriptions cached (pgx's cache_describe), which works
// through PgBouncer in transaction mode at no extra round trip.
func poolConfig(flag, conn string) (*pgxpool.Config, error) {
	cfg, err := pgxpool.ParseConfig(conn)
	if err != nil {
		return nil, usageError("%s: %v", flag, redactConnError(err))
	}
	if !strings.Contains(conn, "default_query_exec_mode") {
		cfg.ConnConfig.DefaultQueryExecMode = pgx.QueryExecModeCacheDescribe
	}
	if !strings.Contains(conn, "pool_max_conns") {
		cfg.MaxConns = max(cfg.MaxConns, defaultPoolSize)
	}
	if !strings.Contains(conn, "pool_min_conns") {
		// Connections kept open, so that the first uncached lookups after
		// a start (or an outage) do not pay for connecting inside their
		// deadline.
		cfg.MinConns = min(defaultMinConns, cfg.MaxConns)
	}
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = connectTimeout
	}
	if cfg.ConnConfig.RuntimeParams["application_name"] == "" {
		cfg.ConnConfig.RuntimeParams["application_name"] = "keygate"
	}
	return cfg, nil
}

// openMode says what a command does with the database.
type openMode int

const (
	// forChanges opens an existing, migrated database (the key commands).
	forChanges openMode = iota
	// forMigration may create the database (an SQLite file) first.
	forMigration
	// forServing is forMigration for the one serving process of an
	// SQLite file, which holds its serve lock.
	forServing
)

// open opens the backend, checking that the database answers (an SQLite
// file is opened; PostgreSQL, unless serving, pinged), so that a command
// against a stopped or missing database fails at once with one line.
// tracer, when set, traces PostgreSQL's queries.
func (d database) open(ctx context.Context, mode openMode, tracer pgx.QueryTracer) (_ keystore.Backend, err error) {
	if d.kind == sqliteDB {
		b, err := sqlite.Open(ctx, d.path, sqlite.Options{Create: mode != forChanges, Exclusive: mode == forServing})
		if err != nil {
			return nil, &exitError{code: 2, err: err}
		}
		return b, nil
	}
	cfg, err := d.poolConfig()
	if err != nil {
		return nil, err
	}
	cfg.ConnConfig.Tracer = tracer
	direct := cfg.ConnConfig.Copy()
	if d.listen != "" {
		listen, err := poolConfig("--database-listen-url", d.listen)
		if err != nil {
			return nil, err
		}
		direct = listen.ConnConfig
	}
	direct.Tracer = nil
	opts := postgres.Options{Direct: direct, MaxReadLag: d.readMaxLag}
	defer func() {
		if err != nil {
			for _, p := range opts.Reads {
				p.Close()
			}
		}
	}()
	if d.reads != "" {
		reads, err := poolConfig("--database-read-url", d.reads)
		if err != nil {
			return nil, err
		}
		for _, rc := range postgres.SplitHosts(reads) {
			rc.ConnConfig.Tracer = tracer
			p, err := pgxpool.NewWithConfig(ctx, rc) // connects lazily
			if err != nil {
				return nil, fmt.Errorf("--database-read-url: %w", err)
			}
			opts.Reads = append(opts.Reads, p)
		}
	}
	postgres.AskOnConnect(cfg)                   // what a connection is, learnt before any lookup
	pool, err := pgxpool.NewWithConfig(ctx, cfg) // connects lazily
	if err != nil {
		return nil, fmt.Errorf("database: %w", err)
	}
	b := postgres.New(pool, opts)
	if mode == forServing {
		return b, nil // serve waits for the database instead (readiness)
	}
	pingCtx, cancel := context.WithTimeout(ctx, cfg.ConnConfig.ConnectTimeout+time.Second)
	defer cancel()
	if err := pool.Ping(pingCtx); err != nil {
		pool.Close()
		return nil, connError(&cfg.ConnConfig.Config, err)
	}
	return b, nil
}

// where names the database for messages, without a password.
func (d database) where() string {
	if d.kind == sqliteDB {
		if d.path == sqlite.Memory {
			return "an in-memory SQLite database"
		}
		return "SQLite file " + d.path
	}
	if cfg, err := d.poolConfig(); err == nil {
		return postgres.Where(&cfg.ConnConfig.Config)
	}
	return "the PostgreSQL database"
}

// connError says, in one line, why a connection to cfg failed: the server
// refused it (it answered with an error: no such database, bad password),
// or it could not be reached (nothing listening, no route, a timeout).
func connError(cfg *pgconn.Config, err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return fmt.Errorf("the database server refused the connection to %s: %s (SQLSTATE %s)", postgres.Where(cfg), pgErr.Message, pgErr.Code)
	}
	cause := err
	var opErr *net.OpError
	var dnsErr *net.DNSError
	switch {
	case errors.As(err, &dnsErr):
		cause = dnsErr
	case errors.As(err, &opErr):
		cause = opErr.Err
	case errors.Is(err, context.DeadlineExceeded):
		cause = errors.New("no answer in time")
	}
	return fmt.Errorf("database unreachable at %s: %s", postgres.Where(cfg), oneLineError(cause))
}

// reachError is connError for the database d names.
func (d database) reachError(err error) error {
	if d.kind == postgresDB {
		if cfg, perr := d.poolConfig(); perr == nil {
			return connError(&cfg.ConnConfig.Config, err)
		}
	}
	return fmt.Errorf("%s: %s", d.where(), oneLineError(err))
}

// schemaError is the error of a command run against a database without
// keygate's schema.
func (d database) schemaError() error {
	return fmt.Errorf("the %s has no keygate schema (or an older one): run 'keygate migrate --database-url %s' first",
		d.where(), d.flagValue())
}

// flagValue is how to write the database on a command line: the SQLite
// URL, or a stand-in for a PostgreSQL URL, whose password must not be
// printed.
func (d database) flagValue() string {
	if d.kind == sqliteDB {
		return sqliteScheme + d.path
	}
	return "<the same URL>"
}

// redactConnError drops anything after "password" from a connection
// string parse error; pgx does not print passwords, this is belt and
// braces.
func redactConnError(err error) string {
	msg := err.Error()
	if i := strings.Index(strings.ToLower(msg), "password"); i >= 0 {
		return msg[:i] + "[redacted]"
	}
	return msg
}

// migrate applies the schema migrations, saying which database first. Its
// error says why in one line: the connection, a schema from a newer
// keygate, or the migration.
func (d database) migrate(ctx context.Context, b keystore.Backend, logger *slog.Logger) ([]keystore.MigrationResult, error) {
	logger.Info("migrating the schema", "database", b.Where())
	applied, err := b.Migrate(ctx, logger)
	if err == nil {
		return applied, nil
	}
	var connErr *pgconn.ConnectError
	switch {
	case errors.As(err, &connErr):
		return nil, d.reachError(err)
	case errors.Is(err, keystore.ErrSchemaTooNew):
		return nil, &exitError{code: 2, err: fmt.Errorf("the %s: %s", d.where(), strings.TrimPrefix(err.Error(), "keystore: "))}
	}
	return nil, fmt.Errorf("migrating the %s: %s", d.where(), strings.ReplaceAll(oneLineError(err), "keystore: ", ""))
}

// replicaFlags are serve's PostgreSQL connections besides --database-url.
type replicaFlags struct {
	DatabaseReadURL    string   `group:"store" name:"database-read-url" placeholder:"URL" help:"Hot standbys of the --database-url's primary that may answer lookups of keys not cached, one URL with one or several hosts (postgres://standby1,standby2/keygate); a lookup that follows a change is answered by a standby only once it has replayed the change, otherwise by the primary. Writes, LISTEN and the change poll stay on the primary."`
	DatabaseListenURL  string   `group:"store" name:"database-listen-url" placeholder:"URL" help:"A direct connection to the primary for LISTEN (change notifications), when --database-url goes through PgBouncer in transaction mode, where LISTEN cannot work (default: --database-url)."`
	DatabaseReadMaxLag duration `group:"store" name:"database-read-max-lag" default:"${read_max_lag}" placeholder:"DURATION" help:"A standby whose replay lags what it has received by more than this answers no lookups until it catches up."`
}

// apply checks the flags, before any I/O, into db.
func (f replicaFlags) apply(db database) (database, error) {
	for _, u := range []struct{ flag, value string }{{"--database-read-url", f.DatabaseReadURL}, {"--database-listen-url", f.DatabaseListenURL}} {
		if strings.TrimSpace(u.value) == "" {
			continue
		}
		if db.kind != postgresDB {
			return db, usageError("%s: needs a PostgreSQL --database-url; %s is embedded, one node", u.flag, db.where())
		}
		if _, err := poolConfig(u.flag, u.value); err != nil {
			return db, err
		}
	}
	if f.DatabaseReadMaxLag <= 0 {
		return db, usageError("--database-read-max-lag: must be positive")
	}
	if reads := strings.TrimSpace(f.DatabaseReadURL); reads != "" && reads == strings.TrimSpace(db.conn) {
		return db, usageError("--database-read-url: is the --database-url: give the primary's hot standbys, or leave it out")
	}
	db.reads, db.listen, db.readMaxLag = strings.TrimSpace(f.DatabaseReadURL), strings.TrimSpace(f.DatabaseListenURL), time.Duration(f.DatabaseReadMaxLag)
	return db, nil
}
