package postgres

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/keygate/keygate/keystore"
)

// NotifyChannel is the channel on which every lifecycle change is
// announced, in the same transaction as the change. The payload is the hex
// digest of the changed key, or "*" for keys added in bulk, then "@" and
// the database's clock in microseconds since the epoch.
const NotifyChannel = "keygate_keys"

// Options configure a Backend. The zero value of every field is usable.
type Options struct {
	// Direct is the connection for what needs a session of its own: the
	// LISTEN of change notifications and the advisory lock of migrations,
	// neither of which works through PgBouncer in transaction mode.
	// Default: the pool's connection settings.
	Direct *pgx.ConnConfig
	// PingInterval is how long the listener waits for a notification
	// before checking that its connection is alive. Default 2s.
	PingInterval time.Duration
	// Reads are pools on hot standbys of the primary (one pool per host),
	// which may answer the decision path's reads (Lookup, LookupMany)
	// whenever they have replayed every change to the keys read; writes,
	// LISTEN and the change poll stay on the primary. Close closes them.
	Reads []*pgxpool.Pool
	// MaxReadLag skips a standby whose replay lags what it has received
	// by more than this. Default DefaultMaxReadLag.
	MaxReadLag time.Duration
	// ReadPollInterval spaces the polls of the standbys' replay
	// positions. Default DefaultReadPollInterval.
	ReadPollInterval time.Duration
}

// DefaultPingInterval is Options.PingInterval's default.
const DefaultPingInterval = 2 * time.Second

// Backend keeps keys in PostgreSQL: the keystore.Backend for any number of
// replicas, which learn of each other's changes through LISTEN/NOTIFY.
type Backend struct {
	pool         *pgxpool.Pool
	direct       *pgx.ConnConfig
	pingInterval time.Duration
	// prepareWhenDirect: the pool's mode is keygate's default
	// (cache_describe), which decision reads upgrade on sessions that are
	// PostgreSQL's own (prepare.go).
	prepareWhenDirect bool

	// Read replicas (replicas.go): empty without Options.Reads.
	standbys                     []*standby
	fences                       *fences
	maxReadLag, readPollInterval time.Duration
	nextStandby                  atomic.Uint32
	readStats                    ReadStats
	unfenced                     bool // tests only (export_test.go)
}

var _ keystore.Backend = (*Backend)(nil)

// New returns a Backend on pool. It does not connect; Close closes the
// pool.
func New(pool *pgxpool.Pool, opts Options) *Backend {
	cfg := pool.Config()
	b := &Backend{pool: pool, direct: opts.Direct, pingInterval: opts.PingInterval,
		prepareWhenDirect: cfg.ConnConfig.DefaultQueryExecMode == pgx.QueryExecModeCacheDescribe}
	if b.direct == nil {
		b.direct = cfg.ConnConfig.Copy()
	}
	if b.pingInterval <= 0 {
		b.pingInterval = DefaultPingInterval
	}
	b.fences = newFences()
	b.maxReadLag, b.readPollInterval = opts.MaxReadLag, opts.ReadPollInterval
	if b.maxReadLag <= 0 {
		b.maxReadLag = DefaultMaxReadLag
	}
	if b.readPollInterval <= 0 {
		b.readPollInterval = DefaultReadPollInterval
	}
	for _, p := range opts.Reads {
		b.standbys = append(b.standbys, &standby{pool: p, where: Where(&p.Config().ConnConfig.Config)})
	}
	return b
}

// Kind is "postgres".
func (b *Backend) Kind() string { return "postgres" }

// Pool is the backend's connection pool.
func (b *Backend) Pool() *pgxpool.Pool { return b.pool }

// Close closes the pools.
func (b *Backend) Close() {
	b.pool.Close()
	for _, s := range b.standbys {
		s.pool.Close()
	}
}

// Where names the database the pool reaches.
func (b *Backend) Where() string { return Where(&b.pool.Config().ConnConfig.Config) }

// Where names the database and server a configuration reaches, for
// messages: `"keygate" on db.internal:5432 (user keygate)` (never the
// password).
func Where(cfg *pgconn.Config) string {
	db := cfg.Database
	if db == "" {
		db = cfg.User // PostgreSQL's default
	}
	server := net.JoinHostPort(cfg.Host, strconv.Itoa(int(cfg.Port)))
	if strings.HasPrefix(cfg.Host, "/") {
		server = fmt.Sprintf("the socket in %s (port %d)", cfg.Host, cfg.Port)
	}
	return fmt.Sprintf("PostgreSQL database %q on %s (user %s)", db, server, cfg.User)
}

// Ping checks that the database answers.
func (b *Backend) Ping(ctx context.Context) error {
	if err := b.pool.Ping(ctx); err != nil {
		return fmt.Errorf("keystore: ping: %w: %w", keystore.ErrUnavailable, err)
	}
	return nil
}

// schemaError marks an error that says the schema is missing (or older
// than this build's) with keystore.ErrNoSchema.
func schemaError(err error) error {
	var pgErr *pgconn.PgError
	// undefined_table, undefined_column
	if errors.As(err, &pgErr) && (pgErr.Code == "42P01" || pgErr.Code == "42703") {
		return fmt.Errorf("%w: %w", keystore.ErrNoSchema, err)
	}
	return err
}

// unavailable marks a failed read of the decision path: whatever went
// wrong, the decision cannot be made (503, never an allow).
func unavailable(what string, err error) error {
	return fmt.Errorf("keystore: %s: %w: %w", what, keystore.ErrUnavailable, schemaError(err))
}

// Write runs fn in one transaction.
func (b *Backend) Write(ctx context.Context, fn func(keystore.Tx) error) error {
	err := pgx.BeginFunc(ctx, b.pool, func(tx pgx.Tx) error { return fn(&txn{tx: tx}) })
	return schemaError(err)
}

// keyColumns are the columns scanned into a Key, in scanKey's order.
const keyColumns = `id::text, account_id, name, description, display_prefix, digest, hash_scheme, scopes,
	created_at, created_by, expires_at, revoked_at, last_used_at, rotated_from::text, updated_at, disabled_at, allowed_cidrs, metadata,
	limits::text`

// shownColumns are keyColumns and the id of the key's successor, for the
// reads and changes that show a key (the decision path reads
// decisionColumns instead). The statement's table must be api_keys itself.
const shownColumns = keyColumns + `,
	(SELECT successor.id::text FROM api_keys AS successor WHERE successor.rotated_from = api_keys.id)`

// scanKey scans keyColumns.
func scanKey(row pgx.CollectableRow) (*keystore.Key, error) { return scanKeyWith(row) }

// scanShown scans shownColumns.
func scanShown(row pgx.CollectableRow) (*keystore.Key, error) {
	var rotatedTo *string
	k, err := scanKeyWith(row, &rotatedTo)
	if err == nil && rotatedTo != nil {
		k.RotatedTo = *rotatedTo
	}
	return k, err
}

// scanKeyWith scans keyColumns, then extra.
func scanKeyWith(row pgx.CollectableRow, extra ...any) (*keystore.Key, error) {
	var (
		k           keystore.Key
		digest      []byte
		rotatedFrom *string
		limits      string
	)
	dest := append([]any{&k.ID, &k.AccountID, &k.Name, &k.Description, &k.DisplayPrefix, &digest, &k.HashScheme,
		&k.Scopes, &k.CreatedAt, &k.CreatedBy, &k.ExpiresAt, &k.RevokedAt, &k.LastUsedAt, &rotatedFrom, &k.UpdatedAt,
		&k.DisabledAt, &k.AllowedCIDRs, &k.Metadata, &limits}, extra...)
	if err := row.Scan(dest...); err != nil {
		return nil, err
	}
	var err error
	if k.Limits, err = keystore.UnmarshalLimits(limits); err != nil {
		return nil, fmt.Errorf("key %s: %w", k.ID, err)
	}
	if len(digest) != len(k.Digest) {
		return nil, fmt.Errorf("key %s has a digest of %d bytes", k.ID, len(digest))
	}
	copy(k.Digest[:], digest)
	if rotatedFrom != nil {
		k.RotatedFrom = *rotatedFrom
	}
	k.CreatedAt, k.UpdatedAt = k.CreatedAt.UTC(), k.UpdatedAt.UTC()
	for _, t := range []*time.Time{k.ExpiresAt, k.RevokedAt, k.LastUsedAt, k.DisabledAt} {
		if t != nil {
			*t = t.UTC()
		}
	}
	if k.Scopes == nil {
		k.Scopes = []string{}
	}
	if len(k.AllowedCIDRs) == 0 {
		k.AllowedCIDRs = nil
	}
	if len(k.Metadata) == 0 {
		k.Metadata = nil
	}
	return &k, nil
}

type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

func queryKeys(ctx context.Context, q querier, scan pgx.RowToFunc[*keystore.Key], sql string, args ...any) ([]*keystore.Key, error) {
	rows, err := q.Query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, scan)
}

// queryKey is queryKeys for exactly one key; none is keystore.ErrNotFound.
func queryKey(ctx context.Context, q querier, scan pgx.RowToFunc[*keystore.Key], sql string, args ...any) (*keystore.Key, error) {
	rows, err := q.Query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	k, err := pgx.CollectExactlyOneRow(rows, scan)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, keystore.ErrNotFound
	}
	return k, err
}

// decisionColumns are the columns the decision needs, scanned by
// scanRecord into a Record: what the decision path's reads select.
// Metadata and limits come as text, so that most keys' ("{}") are not
// decoded.
const decisionColumns = `id::text, account_id, scopes, expires_at, revoked_at IS NOT NULL, disabled_at IS NOT NULL, updated_at,
	allowed_cidrs, metadata::text, limits::text`

// LookupSQL is the decision path's read of one key, by digest ($1): what
// Lookup asks (keygate-bench's reference server asks the same).
const LookupSQL = `SELECT ` + decisionColumns + ` FROM api_keys WHERE digest = $1`

// scanRecord scans decisionColumns, then extra.
func scanRecord(row pgx.CollectableRow, extra ...any) (*keystore.Record, error) {
	var f keystore.RecordFields
	var metadata, limits string
	if err := row.Scan(append([]any{&f.ID, &f.AccountID, &f.Scopes, &f.ExpiresAt, &f.Revoked, &f.Disabled, &f.UpdatedAt,
		&f.AllowedCIDRs, &metadata, &limits}, extra...)...); err != nil {
		return nil, err
	}
	var err error
	if f.Metadata, err = keystore.UnmarshalMetadata(metadata); err != nil {
		return nil, fmt.Errorf("key %s: %w", f.ID, err)
	}
	if f.Limits, err = keystore.UnmarshalLimits(limits); err != nil {
		return nil, fmt.Errorf("key %s: %w", f.ID, err)
	}
	return keystore.NewRecord(f)
}

// scanStored scans decisionColumns and the digest.
func scanStored(row pgx.CollectableRow) (keystore.Stored, error) {
	var digest []byte
	r, err := scanRecord(row, &digest)
	if err != nil {
		return keystore.Stored{}, err
	}
	var st keystore.Stored
	if len(digest) != len(st.Digest) {
		return keystore.Stored{}, fmt.Errorf("key %s has a digest of %d bytes", r.ID(), len(digest))
	}
	copy(st.Digest[:], digest)
	st.Record = r
	return st, nil
}

// Lookup returns the record stored under d.
func (b *Backend) Lookup(ctx context.Context, d keystore.Digest) (*keystore.Record, error) {
	var r *keystore.Record
	err := b.read(ctx, []keystore.Digest{d}, func(rows pgx.Rows) (err error) {
		r, err = pgx.CollectExactlyOneRow(rows, func(row pgx.CollectableRow) (*keystore.Record, error) { return scanRecord(row) })
		return err
	}, LookupSQL, d[:])
	switch {
	case err == nil:
		return r, nil
	case errors.Is(err, pgx.ErrNoRows):
		return nil, keystore.ErrNotFound
	}
	return nil, unavailable("lookup", err)
}

// LookupMany returns the records stored under any of ds.
func (b *Backend) LookupMany(ctx context.Context, ds []keystore.Digest) ([]keystore.Stored, error) {
	var stored []keystore.Stored
	err := b.read(ctx, ds, func(rows pgx.Rows) (err error) {
		stored, err = pgx.CollectRows(rows, scanStored)
		return err
	}, `SELECT `+decisionColumns+`, digest FROM api_keys WHERE digest = ANY($1)`, rawDigests(ds))
	if err != nil {
		return nil, unavailable("lookup", err)
	}
	return stored, nil
}

func rawDigests(ds []keystore.Digest) [][]byte {
	raw := make([][]byte, len(ds))
	for i := range ds {
		raw[i] = ds[i][:]
	}
	return raw
}

// Get returns the key with the given id.
func (b *Backend) Get(ctx context.Context, id string) (*keystore.Key, error) {
	k, err := queryKey(ctx, b.pool, scanShown, `SELECT `+shownColumns+` FROM api_keys WHERE id = $1`, id)
	return k, schemaError(err)
}

// statusCondition is the SQL of keystore.StatusFilter.Matches for f,
// judged at the time of the parameter now (NULL: the database's clock).
func statusCondition(f keystore.StatusFilter, now string) string {
	at := "coalesce(" + now + "::timestamptz, now())"
	switch f {
	case keystore.ListActive:
		return `revoked_at IS NULL AND disabled_at IS NULL AND (expires_at IS NULL OR expires_at > ` + at + `)`
	case keystore.ListExpired:
		return `revoked_at IS NULL AND disabled_at IS NULL AND expires_at <= ` + at
	case keystore.ListRevoked:
		return `revoked_at IS NOT NULL`
	case keystore.ListDisabled:
		return `revoked_at IS NULL AND disabled_at IS NOT NULL`
	}
	return `true`
}

// List returns the keys q selects.
func (b *Backend) List(ctx context.Context, q keystore.ListQuery) ([]*keystore.Key, error) {
	// Each condition is in the statement only when it applies, so that a
	// plan cached for the statement uses the indexes (a generic plan of
	// "$4 IS NULL OR (created_at, id) < …" would scan from the start).
	var args []any
	arg := func(v any) string { args = append(args, v); return fmt.Sprintf("$%d", len(args)) }
	var where []string
	if q.Status == keystore.ListActive || q.Status == keystore.ListExpired {
		where = append(where, statusCondition(q.Status, arg(q.Now)))
	} else {
		where = append(where, statusCondition(q.Status, ""))
	}
	if q.AccountID != "" {
		where = append(where, "account_id = "+arg(q.AccountID))
	}
	order, cmp := "ASC", ">"
	if q.Newest {
		order, cmp = "DESC", "<"
	}
	if q.After != nil {
		where = append(where, fmt.Sprintf("(api_keys.created_at, api_keys.id) %s (%s, %s::uuid)", cmp, arg(q.After.CreatedAt), arg(q.After.ID)))
	}
	limit := ""
	if q.Limit > 0 {
		limit = " LIMIT " + arg(q.Limit)
	}
	keys, err := queryKeys(ctx, b.pool, scanShown, `SELECT `+shownColumns+` FROM api_keys WHERE `+strings.Join(where, " AND ")+`
		ORDER BY api_keys.created_at `+order+`, api_keys.id `+order+limit, args...)
	return keys, schemaError(err)
}

// Accounts returns the distinct account ids, sorted, with their keys.
func (b *Backend) Accounts(ctx context.Context) ([]keystore.AccountKeys, error) {
	rows, err := b.pool.Query(ctx, `SELECT account_id, count(*) FROM api_keys GROUP BY account_id ORDER BY account_id COLLATE "C"`)
	if err != nil {
		return nil, schemaError(err)
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (keystore.AccountKeys, error) {
		var a keystore.AccountKeys
		err := row.Scan(&a.AccountID, &a.Keys)
		return a, err
	})
}

// Events returns a key's audit trail, oldest first.
func (b *Backend) Events(ctx context.Context, id string) ([]keystore.Event, error) {
	rows, err := b.pool.Query(ctx, `SELECT key_id::text, action, actor, at, detail
		FROM api_key_events WHERE key_id = $1 ORDER BY id`, id)
	if err != nil {
		return nil, schemaError(err)
	}
	return pgx.CollectRows(rows, scanEvent)
}

func scanEvent(row pgx.CollectableRow) (keystore.Event, error) {
	var e keystore.Event
	err := row.Scan(&e.KeyID, &e.Action, &e.Actor, &e.At, &e.Detail)
	e.At = e.At.UTC()
	return e, err
}

// ChangedSince returns the records changed after since.
func (b *Backend) ChangedSince(ctx context.Context, since time.Time) ([]keystore.Stored, time.Time, error) {
	var now time.Time
	var changed []keystore.Stored
	err := pgx.BeginFunc(ctx, b.pool, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, `SELECT now()`).Scan(&now); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `SELECT `+decisionColumns+`, digest FROM api_keys WHERE updated_at > $1 ORDER BY updated_at`, since)
		if err != nil {
			return err
		}
		changed, err = pgx.CollectRows(rows, scanStored)
		return err
	})
	if err != nil {
		return nil, time.Time{}, unavailable("changes", err)
	}
	return changed, now, nil
}

// RecordLastUsed writes last-use times in one statement. The rows are
// locked in id order first, so that replicas flushing at once (a rolling
// restart) wait for each other instead of deadlocking; should the server
// still report a deadlock or a serialization failure (another writer of
// the rows), the statement is retried, so that no flush is lost to one.
func (b *Backend) RecordLastUsed(ctx context.Context, batch []keystore.LastUsed) error {
	ids := make([]string, len(batch))
	ats := make([]time.Time, len(batch))
	for i, u := range batch {
		ids[i], ats[i] = u.KeyID, u.At
	}
	var err error
	for attempt := 0; attempt < lastUsedAttempts; attempt++ {
		_, err = b.pool.Exec(ctx, `WITH u AS (SELECT * FROM unnest($1::uuid[], $2::timestamptz[]) AS u(id, at)),
			locked AS (SELECT k.id FROM api_keys AS k JOIN u ON k.id = u.id
				WHERE k.last_used_at IS NULL OR k.last_used_at < u.at ORDER BY k.id FOR UPDATE OF k)
			UPDATE api_keys AS k SET last_used_at = u.at FROM u, locked
			WHERE k.id = u.id AND k.id = locked.id AND (k.last_used_at IS NULL OR k.last_used_at < u.at)`, ids, ats)
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || (pgErr.Code != "40P01" && pgErr.Code != "40001") || ctx.Err() != nil {
			break
		}
	}
	return schemaError(err)
}

// lastUsedAttempts is how many times RecordLastUsed tries a batch that
// loses to a deadlock or a serialization failure.
const lastUsedAttempts = 3

// Export calls keys with every key in creation order, then events with
// every audit event in the order they were written.
func (b *Backend) Export(ctx context.Context, keys func(*keystore.Key) error, events func(keystore.Event) error) error {
	return pgx.BeginTxFunc(ctx, b.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT `+keyColumns+` FROM api_keys ORDER BY created_at, id`)
		if err != nil {
			return schemaError(err)
		}
		for rows.Next() {
			k, err := scanKey(rows)
			if err == nil {
				err = keys(k)
			}
			if err != nil {
				rows.Close()
				return err
			}
		}
		if err := rows.Err(); err != nil {
			return err
		}
		rows, err = tx.Query(ctx, `SELECT key_id::text, action, actor, at, detail FROM api_key_events ORDER BY id`)
		if err != nil {
			return err
		}
		for rows.Next() {
			e, err := scanEvent(rows)
			if err == nil {
				err = events(e)
			}
			if err != nil {
				rows.Close()
				return err
			}
		}
		return rows.Err()
	})
}
