package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/alecthomas/kong"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/keygate/keygate/admin"
	"github.com/keygate/keygate/keystore"
)

// duration is a flag value in Go syntax extended with days ("30d").
type duration time.Duration

// Decode implements kong.MapperValue.
func (d *duration) Decode(ctx *kong.DecodeContext) error {
	var s string
	if err := ctx.Scan.PopValueInto("duration", &s); err != nil {
		return err
	}
	v, err := keystore.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = duration(v)
	return nil
}

// dbFlags locate PostgreSQL.
type dbFlags struct {
	DatabaseURL string `name:"database-url" placeholder:"URL" help:"PostgreSQL connection string, libpq URL or key=value form; DATABASE_URL and the PG* variables work too."`
}

// connectTimeout bounds how long a command waits for an unreachable
// database when the connection string sets no connect_timeout.
const connectTimeout = 5 * time.Second

// connConfig is the configuration of a single connection (migrations,
// the change listener). It is read through the pool's parser, which takes
// out the pool's own settings (pool_max_conns…): passed to the server as
// parameters, they would make it refuse the connection.
func (f dbFlags) connConfig() (*pgx.ConnConfig, error) {
	cfg, err := f.poolConfig()
	if err != nil {
		return nil, err
	}
	return cfg.ConnConfig.Copy(), nil
}

// defaultPoolSize is the most connections a process opens when the
// connection string sets no pool_max_conns: lookups of uncached keys share
// the pool with the delta poll, last-used writes and health pings.
const defaultPoolSize = 10

func (f dbFlags) poolConfig() (*pgxpool.Config, error) {
	cfg, err := pgxpool.ParseConfig(f.DatabaseURL)
	if err != nil {
		return nil, usageError("--database-url: %v", redactConnError(err))
	}
	if !strings.Contains(f.DatabaseURL, "pool_max_conns") {
		cfg.MaxConns = max(cfg.MaxConns, defaultPoolSize)
	}
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = connectTimeout
	}
	if cfg.ConnConfig.RuntimeParams["application_name"] == "" {
		cfg.ConnConfig.RuntimeParams["application_name"] = "keygate"
	}
	return cfg, nil
}

// pool connects and checks that the database answers, so that a command
// against a stopped database fails at once with one clear line.
func (f dbFlags) pool(ctx context.Context) (*pgxpool.Pool, error) {
	cfg, err := f.poolConfig()
	if err != nil {
		return nil, err
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("database: %w", err)
	}
	pingCtx, cancel := context.WithTimeout(ctx, cfg.ConnConfig.ConnectTimeout+time.Second)
	defer cancel()
	if err := pool.Ping(pingCtx); err != nil {
		pool.Close()
		return nil, connError(&cfg.ConnConfig.Config, err)
	}
	return pool, nil
}

// where names the database and server a configuration reaches, for
// messages: `"keygate" on db.internal:5432 (user keygate)` (never the
// password).
func where(cfg *pgconn.Config) string {
	db := cfg.Database
	if db == "" {
		db = cfg.User // PostgreSQL's default
	}
	server := net.JoinHostPort(cfg.Host, strconv.Itoa(int(cfg.Port)))
	if strings.HasPrefix(cfg.Host, "/") {
		server = fmt.Sprintf("the socket in %s (port %d)", cfg.Host, cfg.Port)
	}
	return fmt.Sprintf("%q on %s (user %s)", db, server, cfg.User)
}

// connError says, in one line, why a connection to cfg failed: the server
// refused it (it answered with an error: no such database, bad password),
// or it could not be reached (nothing listening, no route, a timeout).
func connError(cfg *pgconn.Config, err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return fmt.Errorf("the database server refused the connection to %s: %s (SQLSTATE %s)", where(cfg), pgErr.Message, pgErr.Code)
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
	return fmt.Errorf("database unreachable at %s: %s", where(cfg), oneLineError(cause))
}

// schemaError is the error of a command run against a database without
// keygate's schema.
func schemaError(cfg *pgconn.Config) error {
	return fmt.Errorf("the database %s has no keygate schema (or an older one): run 'keygate migrate' first", where(cfg))
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

// keyFlags shape new keys; serve and the key commands share them so that
// every replica and the CLI agree.
type keyFlags struct {
	KeyPrefix      string   `default:"${key_prefix}" help:"Prefix of new keys (lower-case letters, digits, '_'). Keys with other prefixes keep working."`
	PepperFile     string   `type:"existingfile" placeholder:"FILE" help:"File holding a server-side secret of at least 32 bytes: keys are then hashed with HMAC-SHA-256 instead of SHA-256. Every replica and the CLI need the same one."`
	Pepper         string   `hidden:"" help:"The pepper itself; prefer --pepper-file."`
	MaxKeyLifetime duration `placeholder:"DURATION" help:"Longest lifetime a new key may have, like 365d; 0 means no limit."`
}

func (f keyFlags) hasher() (*keystore.Hasher, error) {
	const source = "pepper (--pepper-file or KEYGATE_PEPPER)"
	pepper := f.Pepper
	if f.PepperFile != "" {
		if f.Pepper != "" {
			return nil, usageError("--pepper-file and KEYGATE_PEPPER can't be used together")
		}
		b, err := os.ReadFile(f.PepperFile)
		if err != nil {
			return nil, usageError("--pepper-file: %v", err)
		}
		if pepper = string(b); strings.TrimSpace(pepper) == "" {
			return nil, usageError("--pepper-file: %s is empty", f.PepperFile)
		}
	}
	// A trailing newline is the file's, not the secret's: trimmed the same
	// way from either source, so that a server and a CLI configured
	// differently hash alike.
	h, err := keystore.NewHasher([]byte(strings.TrimRight(pepper, "\r\n")))
	if err != nil {
		return nil, usageError("%s: %v", source, strings.TrimPrefix(err.Error(), "keystore: "))
	}
	return h, nil
}

// options checks the key flags, before any I/O, into the store's options.
func (f keyFlags) options() (keystore.Options, error) {
	if err := keystore.ValidatePrefix(f.KeyPrefix); err != nil {
		return keystore.Options{}, usageError("--key-prefix: %v", err)
	}
	if f.KeyPrefix == admin.TokenPrefix {
		return keystore.Options{}, usageError("--key-prefix: %q is the prefix of admin tokens; choose another", f.KeyPrefix)
	}
	if f.MaxKeyLifetime < 0 {
		return keystore.Options{}, usageError("--max-key-lifetime: must not be negative")
	}
	h, err := f.hasher()
	if err != nil {
		return keystore.Options{}, err
	}
	return keystore.Options{Hasher: h, Prefix: f.KeyPrefix, MaxLifetime: time.Duration(f.MaxKeyLifetime)}, nil
}

func (f keyFlags) store(pool *pgxpool.Pool) (*keystore.Store, error) {
	opts, err := f.options()
	if err != nil {
		return nil, err
	}
	return keystore.New(pool, opts)
}

// openStore connects to the database and returns a store, shaped by kf
// when the command creates keys (nil: the defaults, enough to read and
// revoke), and the function that closes it.
func openStore(ctx context.Context, db dbFlags, kf *keyFlags) (*keystore.Store, func(), error) {
	pool, err := db.pool(ctx)
	if err != nil {
		return nil, nil, err
	}
	var store *keystore.Store
	if kf != nil {
		store, err = kf.store(pool)
	} else {
		store, err = keystore.New(pool, keystore.Options{})
	}
	if err != nil {
		pool.Close()
		return nil, nil, err
	}
	return store, pool.Close, nil
}

// flagOfField names the flag behind a keystore validation error's field.
var flagOfField = map[string]string{
	"account_id":    "--account",
	"name":          "--name",
	"description":   "--description",
	"scopes":        "--scope",
	"expiry":        "expiry (--expires-in, --expires-at, --no-expiry)",
	"grace":         "--grace",
	"id":            "ID",
	"update":        "--name, --description, --allow-cidr or --meta (or --clear-allow-cidrs, --unset-meta, --clear-meta)",
	"allowed_cidrs": "--allow-cidr",
	"metadata":      "--meta",
}

// oneLineError flattens pgx's multi-line connection errors.
func oneLineError(err error) string { return oneLine(err.Error()) }

// storeError maps an error from the store to what the user sees: bad input
// is a usage error naming the flag (exit 2); the rest exit 1.
// A missing schema's message names the database f reaches.
func (f dbFlags) storeError(err error, id string) error {
	var ve *keystore.ValidationError
	switch {
	case errors.As(err, &ve):
		name := flagOfField[ve.Field]
		if name == "" {
			name = ve.Field
		}
		return usageError("%s: %s", name, ve.Problem)
	case errors.Is(err, keystore.ErrNotFound):
		return fmt.Errorf("no key with id %s", id)
	case keystore.IsNoSchema(err):
		if cfg, perr := f.poolConfig(); perr == nil {
			return schemaError(&cfg.ConnConfig.Config)
		}
		return errors.New("the database has no keygate schema (or an older one): run 'keygate migrate' first")
	}
	return errors.New(strings.ReplaceAll(oneLineError(err), "keystore: ", ""))
}
