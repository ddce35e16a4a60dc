package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/keygate/keygate/keystore"
)

// keyColumns are the columns scanned into a Key, in scanKey's order.
const keyColumns = `id, account_id, name, description, display_prefix, digest, hash_scheme, scopes,
	created_at, created_by, expires_at, revoked_at, last_used_at, rotated_from, updated_at, disabled_at, allowed_cidrs, metadata,
	limits`

// shownColumns are keyColumns and the id of the key's successor, for the
// reads and changes that show a key.
const shownColumns = keyColumns + `,
	(SELECT successor.id FROM api_keys AS successor WHERE successor.rotated_from = api_keys.id)`

// scanner is a *sql.Row or *sql.Rows.
type scanner interface{ Scan(dest ...any) error }

// scanKey scans keyColumns, then, when shown, the successor's id.
func scanKey(row scanner, shown bool) (*keystore.Key, error) {
	var (
		k                                    keystore.Key
		digest                               []byte
		scopes, cidrs, metadata, limits      string
		created, updated                     int64
		expires, revoked, lastUsed, disabled sql.NullInt64
		rotatedFrom, rotatedTo               sql.NullString
	)
	dest := []any{&k.ID, &k.AccountID, &k.Name, &k.Description, &k.DisplayPrefix, &digest, &k.HashScheme, &scopes,
		&created, &k.CreatedBy, &expires, &revoked, &lastUsed, &rotatedFrom, &updated, &disabled, &cidrs, &metadata, &limits}
	if shown {
		dest = append(dest, &rotatedTo)
	}
	if err := row.Scan(dest...); err != nil {
		return nil, err
	}
	if len(digest) != len(k.Digest) {
		return nil, fmt.Errorf("key %s has a digest of %d bytes", k.ID, len(digest))
	}
	copy(k.Digest[:], digest)
	k.Scopes = splitScopes(scopes)
	var err error
	if k.AllowedCIDRs, err = splitPrefixes(cidrs); err != nil {
		return nil, fmt.Errorf("key %s: %w", k.ID, err)
	}
	if k.Metadata, err = keystore.UnmarshalMetadata(metadata); err != nil {
		return nil, fmt.Errorf("key %s: %w", k.ID, err)
	}
	if k.Limits, err = keystore.UnmarshalLimits(limits); err != nil {
		return nil, fmt.Errorf("key %s: %w", k.ID, err)
	}
	k.CreatedAt, k.UpdatedAt = fromMicros(created), fromMicros(updated)
	k.ExpiresAt, k.RevokedAt, k.LastUsedAt, k.DisabledAt = fromNullMicros(expires), fromNullMicros(revoked),
		fromNullMicros(lastUsed), fromNullMicros(disabled)
	k.RotatedFrom, k.RotatedTo = rotatedFrom.String, rotatedTo.String
	return &k, nil
}

// queryKey reads exactly one key; none is keystore.ErrNotFound.
func queryKey(ctx context.Context, q querier, shown bool, query string, args ...any) (*keystore.Key, error) {
	k, err := scanKey(q.QueryRowContext(ctx, query, args...), shown)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, keystore.ErrNotFound
	}
	return k, schemaError(err)
}

// querier is a *sql.DB or *sql.Tx.
type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// decisionColumns are the columns the decision needs, scanned by
// scanRecord into a Record.
const decisionColumns = `id, account_id, scopes, expires_at, revoked_at IS NOT NULL, disabled_at IS NOT NULL, updated_at,
	allowed_cidrs, metadata, limits`

// scanRecord scans decisionColumns, then extra.
func scanRecord(row scanner, extra ...any) (*keystore.Record, error) {
	var (
		f                               keystore.RecordFields
		scopes, cidrs, metadata, limits string
		expires                         sql.NullInt64
		updated                         int64
	)
	if err := row.Scan(append([]any{&f.ID, &f.AccountID, &scopes, &expires, &f.Revoked, &f.Disabled, &updated,
		&cidrs, &metadata, &limits}, extra...)...); err != nil {
		return nil, err
	}
	if scopes != "" {
		f.Scopes = strings.Split(scopes, ",")
	}
	f.ExpiresAt, f.UpdatedAt = fromNullMicros(expires), fromMicros(updated)
	var err error
	if f.AllowedCIDRs, err = splitPrefixes(cidrs); err != nil {
		return nil, fmt.Errorf("key %s: %w", f.ID, err)
	}
	if f.Metadata, err = keystore.UnmarshalMetadata(metadata); err != nil {
		return nil, fmt.Errorf("key %s: %w", f.ID, err)
	}
	if f.Limits, err = keystore.UnmarshalLimits(limits); err != nil {
		return nil, fmt.Errorf("key %s: %w", f.ID, err)
	}
	return keystore.NewRecord(f)
}

// Lookup returns the record stored under d: one indexed query.
func (b *Backend) Lookup(ctx context.Context, d keystore.Digest) (*keystore.Record, error) {
	stmt, err := b.lookupStatement(ctx)
	if err != nil {
		return nil, unavailable("lookup", err)
	}
	r, err := scanRecord(stmt.QueryRowContext(ctx, d[:]))
	switch {
	case err == nil:
		return r, nil
	case errors.Is(err, sql.ErrNoRows):
		return nil, keystore.ErrNotFound
	}
	return nil, unavailable("lookup", err)
}

// lookupSQL is the decision path's read of one key.
const lookupSQL = `SELECT ` + decisionColumns + ` FROM api_keys WHERE digest = ?`

// lookupStatement is lookupSQL prepared, once (database/sql prepares it
// once on each reader connection) and on first use, when the schema is
// there: SQLite would otherwise compile (and finalize) it for every
// lookup, a quarter of the uncached path's CPU (keygate-bench --store
// sqlite, profiled).
func (b *Backend) lookupStatement(ctx context.Context) (*sql.Stmt, error) {
	if stmt := b.lookup.Load(); stmt != nil {
		return stmt, nil
	}
	b.lookupMu.Lock()
	defer b.lookupMu.Unlock()
	if stmt := b.lookup.Load(); stmt != nil {
		return stmt, nil
	}
	stmt, err := b.reader.PrepareContext(ctx, lookupSQL)
	if err != nil {
		return nil, err
	}
	b.lookup.Store(stmt)
	return stmt, nil
}

// queryStored reads decisionColumns and the digest of every row.
func queryStored(ctx context.Context, q querier, query string, args ...any) ([]keystore.Stored, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []keystore.Stored
	for rows.Next() {
		var st keystore.Stored
		var digest []byte
		r, err := scanRecord(rows, &digest)
		if err != nil {
			return nil, err
		}
		if len(digest) != len(st.Digest) {
			return nil, fmt.Errorf("key %s has a digest of %d bytes", r.ID(), len(digest))
		}
		copy(st.Digest[:], digest)
		st.Record = r
		out = append(out, st)
	}
	return out, rows.Err()
}

// lookupBatch bounds the digests of one query (SQLite's limit on
// parameters is 32766).
const lookupBatch = 500

// LookupMany returns the records stored under any of ds.
func (b *Backend) LookupMany(ctx context.Context, ds []keystore.Digest) ([]keystore.Stored, error) {
	var out []keystore.Stored
	for start := 0; start < len(ds); start += lookupBatch {
		batch := ds[start:min(start+lookupBatch, len(ds))]
		args := make([]any, len(batch))
		for i := range batch {
			args[i] = batch[i][:]
		}
		stored, err := queryStored(ctx, b.reader, `SELECT `+decisionColumns+`, digest FROM api_keys WHERE digest IN (`+
			placeholders(len(batch))+`)`, args...)
		if err != nil {
			return nil, unavailable("lookup", err)
		}
		out = append(out, stored...)
	}
	return out, nil
}

// placeholders is n "?" joined by ",".
func placeholders(n int) string { return strings.TrimSuffix(strings.Repeat("?,", n), ",") }

// Get returns the key with the given id.
func (b *Backend) Get(ctx context.Context, id string) (*keystore.Key, error) {
	return queryKey(ctx, b.reader, true, `SELECT `+shownColumns+` FROM api_keys WHERE id = ?`, id)
}

// statusCondition is the SQL of keystore.StatusFilter.Matches for f, with
// at the time (unix microseconds) the state is judged at.
func statusCondition(f keystore.StatusFilter) string {
	switch f {
	case keystore.ListActive:
		return `revoked_at IS NULL AND disabled_at IS NULL AND (expires_at IS NULL OR expires_at > :now)`
	case keystore.ListExpired:
		return `revoked_at IS NULL AND disabled_at IS NULL AND expires_at <= :now`
	case keystore.ListRevoked:
		return `revoked_at IS NOT NULL`
	case keystore.ListDisabled:
		return `revoked_at IS NULL AND disabled_at IS NOT NULL`
	}
	return `true`
}

// List returns the keys q selects.
func (b *Backend) List(ctx context.Context, q keystore.ListQuery) ([]*keystore.Key, error) {
	now := time.Now()
	if q.Now != nil {
		now = *q.Now
	}
	args := []any{sql.Named("now", micros(now))}
	where := []string{statusCondition(q.Status)}
	if q.AccountID != "" {
		where = append(where, "account_id = :account")
		args = append(args, sql.Named("account", q.AccountID))
	}
	order, cmp := "ASC", ">"
	if q.Newest {
		order, cmp = "DESC", "<"
	}
	if q.After != nil {
		where = append(where, "(created_at, id) "+cmp+" (:after_at, :after_id)")
		args = append(args, sql.Named("after_at", micros(q.After.CreatedAt)), sql.Named("after_id", q.After.ID))
	}
	limit := ""
	if q.Limit > 0 {
		limit = " LIMIT :limit"
		args = append(args, sql.Named("limit", q.Limit))
	}
	rows, err := b.reader.QueryContext(ctx, `SELECT `+shownColumns+` FROM api_keys WHERE `+strings.Join(where, " AND ")+
		` ORDER BY created_at `+order+`, id `+order+limit, args...)
	if err != nil {
		return nil, schemaError(err)
	}
	defer rows.Close()
	var keys []*keystore.Key
	for rows.Next() {
		k, err := scanKey(rows, true)
		if err != nil {
			return nil, err
		}
		keys = append(keys, k)
	}
	return keys, rows.Err()
}

// Accounts returns the distinct account ids, sorted, with their keys.
func (b *Backend) Accounts(ctx context.Context) ([]keystore.AccountKeys, error) {
	rows, err := b.reader.QueryContext(ctx, `SELECT account_id, count(*) FROM api_keys GROUP BY account_id ORDER BY account_id`)
	if err != nil {
		return nil, schemaError(err)
	}
	defer rows.Close()
	var out []keystore.AccountKeys
	for rows.Next() {
		var a keystore.AccountKeys
		if err := rows.Scan(&a.AccountID, &a.Keys); err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, rows.Err()
}

// Events returns a key's audit trail, oldest first.
func (b *Backend) Events(ctx context.Context, id string) ([]keystore.Event, error) {
	return queryEvents(ctx, b.reader, `SELECT key_id, action, actor, at, detail FROM api_key_events WHERE key_id = ? ORDER BY id`, id)
}

func queryEvents(ctx context.Context, q querier, query string, args ...any) ([]keystore.Event, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, schemaError(err)
	}
	defer rows.Close()
	var out []keystore.Event
	for rows.Next() {
		e, err := scanEvent(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

func scanEvent(row scanner) (keystore.Event, error) {
	var e keystore.Event
	var at int64
	var detail string
	if err := row.Scan(&e.KeyID, &e.Action, &e.Actor, &at, &detail); err != nil {
		return e, err
	}
	e.At = fromMicros(at)
	if err := json.Unmarshal([]byte(detail), &e.Detail); err != nil {
		return e, fmt.Errorf("event of key %s: %w", e.KeyID, err)
	}
	return e, nil
}

// ChangedSince returns the records changed after since, by this
// machine's clock, which every process writing the file shares.
func (b *Backend) ChangedSince(ctx context.Context, since time.Time) ([]keystore.Stored, time.Time, error) {
	now := time.Now()
	changed, err := queryStored(ctx, b.reader, `SELECT `+decisionColumns+`, digest FROM api_keys WHERE updated_at > ? ORDER BY updated_at`,
		micros(since))
	if err != nil {
		return nil, time.Time{}, unavailable("changes", err)
	}
	return changed, now, nil
}

// RecordLastUsed writes last-use times in one transaction.
func (b *Backend) RecordLastUsed(ctx context.Context, batch []keystore.LastUsed) error {
	return b.Write(ctx, func(t keystore.Tx) error {
		tx := t.(*txn).tx
		stmt, err := tx.PrepareContext(ctx, `UPDATE api_keys SET last_used_at = ?1
			WHERE id = ?2 AND (last_used_at IS NULL OR last_used_at < ?1)`)
		if err != nil {
			return err
		}
		defer stmt.Close()
		for _, u := range batch {
			if _, err := stmt.ExecContext(ctx, micros(u.At), u.KeyID); err != nil {
				return err
			}
		}
		return nil
	})
}

// Export calls keys with every key in creation order, then events with
// every audit event in the order they were written, from one snapshot.
func (b *Backend) Export(ctx context.Context, keys func(*keystore.Key) error, events func(keystore.Event) error) error {
	tx, err := b.reader.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return schemaError(err)
	}
	defer tx.Rollback()
	rows, err := tx.QueryContext(ctx, `SELECT `+keyColumns+` FROM api_keys ORDER BY created_at, id`)
	if err != nil {
		return schemaError(err)
	}
	for rows.Next() {
		k, err := scanKey(rows, false)
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
	rows.Close()
	rows, err = tx.QueryContext(ctx, `SELECT key_id, action, actor, at, detail FROM api_key_events ORDER BY id`)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		e, err := scanEvent(rows)
		if err == nil {
			err = events(e)
		}
		if err != nil {
			return err
		}
	}
	return rows.Err()
}
