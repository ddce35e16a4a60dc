package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	sqlite "modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/keygate/keygate/keystore"
)

// txn is a keystore.Tx on an SQLite transaction, which holds the
// database's write lock from its start: nobody else changes a row it read.
type txn struct {
	tx      *sql.Tx
	notices []keystore.Notice
}

// Now is this machine's clock: SQLite has none of its own.
func (t *txn) Now(context.Context) (time.Time, error) {
	return time.Now().UTC().Truncate(time.Microsecond), nil
}

// Lock reads a key; the transaction's write lock keeps it as read.
func (t *txn) Lock(ctx context.Context, id string) (*keystore.Key, error) {
	return queryKey(ctx, t.tx, false, `SELECT `+keyColumns+` FROM api_keys WHERE id = ?`, id)
}

// Successor is the id of the key that replaced id, "" if none.
func (t *txn) Successor(ctx context.Context, id string) (string, error) {
	var successor string
	err := t.tx.QueryRowContext(ctx, `SELECT id FROM api_keys WHERE rotated_from = ?`, id).Scan(&successor)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	return successor, err
}

// Insert stores new keys. A key whose UpdatedAt is zero gets this
// machine's clock. A digest or a successor stored already is
// keystore.ErrDigestTaken or ErrRotated, with nothing of the call written.
func (t *txn) Insert(ctx context.Context, keys ...*keystore.Key) error {
	if _, err := t.tx.ExecContext(ctx, `SAVEPOINT insert_keys`); err != nil {
		return err
	}
	err := t.insert(ctx, keys)
	if err != nil {
		for _, undo := range []string{`ROLLBACK TO insert_keys`, `RELEASE insert_keys`} {
			if _, rbErr := t.tx.ExecContext(ctx, undo); rbErr != nil {
				return rbErr
			}
		}
		var se *sqlite.Error
		if errors.As(err, &se) && se.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE {
			switch {
			case strings.Contains(se.Error(), "api_keys.digest"):
				return keystore.ErrDigestTaken
			case strings.Contains(se.Error(), "api_keys.rotated_from"):
				return keystore.ErrRotated
			}
		}
		return err
	}
	_, err = t.tx.ExecContext(ctx, `RELEASE insert_keys`)
	return err
}

func (t *txn) insert(ctx context.Context, keys []*keystore.Key) error {
	stmt, err := t.tx.PrepareContext(ctx, `INSERT INTO api_keys (id, account_id, name, description, display_prefix, digest,
		hash_scheme, scopes, created_at, created_by, expires_at, revoked_at, disabled_at, last_used_at, rotated_from,
		allowed_cidrs, metadata, limits, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
	if err != nil {
		return err
	}
	defer stmt.Close()
	now := time.Now().UTC().Truncate(time.Microsecond)
	for _, k := range keys {
		metadata, err := metadataText(k.Metadata)
		if err != nil {
			return err
		}
		if k.UpdatedAt.IsZero() {
			k.UpdatedAt = now
		}
		var rotatedFrom sql.NullString
		if k.RotatedFrom != "" {
			rotatedFrom = sql.NullString{String: k.RotatedFrom, Valid: true}
		}
		if _, err := stmt.ExecContext(ctx, k.ID, k.AccountID, k.Name, k.Description, k.DisplayPrefix, k.Digest[:],
			k.HashScheme, joinList(k.Scopes), micros(k.CreatedAt), k.CreatedBy, nullMicros(k.ExpiresAt),
			nullMicros(k.RevokedAt), nullMicros(k.DisabledAt), nullMicros(k.LastUsedAt), rotatedFrom,
			joinList(k.AllowedCIDRs), metadata, keystore.MarshalLimits(k.Limits), micros(k.UpdatedAt)); err != nil {
			return err
		}
	}
	return nil
}

// CountKeys is how many keys the database holds.
func (t *txn) CountKeys(ctx context.Context) (int, error) {
	var n int
	err := t.tx.QueryRowContext(ctx, `SELECT count(*) FROM api_keys`).Scan(&n)
	return n, err
}

// StoredDigests returns which of ds are stored, and their keys' ids.
func (t *txn) StoredDigests(ctx context.Context, ds []keystore.Digest) (map[keystore.Digest]string, error) {
	out := map[keystore.Digest]string{}
	for start := 0; start < len(ds); start += lookupBatch {
		batch := ds[start:min(start+lookupBatch, len(ds))]
		args := make([]any, len(batch))
		for i := range batch {
			args[i] = batch[i][:]
		}
		rows, err := t.tx.QueryContext(ctx, `SELECT digest, id FROM api_keys WHERE digest IN (`+placeholders(len(batch))+`)`, args...)
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			var raw []byte
			var id string
			if err := rows.Scan(&raw, &id); err != nil {
				rows.Close()
				return nil, err
			}
			var d keystore.Digest
			copy(d[:], raw)
			out[d] = id
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// Change writes c, moving updated_at to this machine's clock, and at least
// a microsecond past its previous value, so that every change is a new
// version.
func (t *txn) Change(ctx context.Context, id string, c keystore.KeyChange) (*keystore.Key, error) {
	sets := []string{"updated_at = max(:now, updated_at + 1)"}
	args := []any{sql.Named("id", id), sql.Named("now", micros(time.Now()))}
	set := func(column string, v any) {
		sets = append(sets, column+" = :"+column)
		args = append(args, sql.Named(column, v))
	}
	if c.Name.Set {
		set("name", c.Name.Value)
	}
	if c.Description.Set {
		set("description", c.Description.Value)
	}
	if c.Scopes.Set {
		set("scopes", joinList(c.Scopes.Value))
	}
	if c.AllowedCIDRs.Set {
		set("allowed_cidrs", joinList(c.AllowedCIDRs.Value))
	}
	if c.Metadata.Set {
		m, err := metadataText(c.Metadata.Value)
		if err != nil {
			return nil, err
		}
		set("metadata", m)
	}
	if c.Limits.Set {
		set("limits", keystore.MarshalLimits(c.Limits.Value))
	}
	if c.ExpiresAt.Set {
		set("expires_at", nullMicros(c.ExpiresAt.Value))
	}
	if c.RevokedAt.Set {
		set("revoked_at", nullMicros(c.RevokedAt.Value))
	}
	if c.DisabledAt.Set {
		set("disabled_at", nullMicros(c.DisabledAt.Value))
	}
	res, err := t.tx.ExecContext(ctx, `UPDATE api_keys SET `+strings.Join(sets, ", ")+` WHERE id = :id`, args...)
	if err != nil {
		return nil, err
	}
	if n, err := res.RowsAffected(); err != nil {
		return nil, err
	} else if n != 1 {
		return nil, keystore.ErrNotFound
	}
	return queryKey(ctx, t.tx, true, `SELECT `+shownColumns+` FROM api_keys WHERE id = ?`, id)
}

// AddEvents appends audit events.
func (t *txn) AddEvents(ctx context.Context, events ...keystore.Event) error {
	stmt, err := t.tx.PrepareContext(ctx, `INSERT INTO api_key_events (key_id, action, actor, at, detail) VALUES (?, ?, ?, ?, ?)`)
	if err != nil {
		return err
	}
	defer stmt.Close()
	for _, e := range events {
		detail := e.Detail
		if detail == nil {
			detail = map[string]any{}
		}
		b, err := json.Marshal(detail)
		if err != nil {
			return fmt.Errorf("event detail: %w", err)
		}
		if _, err := stmt.ExecContext(ctx, e.KeyID, e.Action, e.Actor, micros(e.At), string(b)); err != nil {
			return err
		}
	}
	return nil
}

// Notify keeps n until the transaction commits (Backend.Write publishes
// it then).
func (t *txn) Notify(_ context.Context, n keystore.Notice) error {
	t.notices = append(t.notices, n)
	return nil
}
