package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/keygate/keygate/keystore"
)

// txn is a keystore.Tx on a pgx transaction.
type txn struct{ tx pgx.Tx }

// Now is the transaction's start time (PostgreSQL's now()).
func (t *txn) Now(ctx context.Context) (time.Time, error) {
	var now time.Time
	err := t.tx.QueryRow(ctx, `SELECT now()`).Scan(&now)
	return now.UTC(), err
}

// Lock reads a key and locks its row until the transaction ends, so that
// changes of one key serialise.
func (t *txn) Lock(ctx context.Context, id string) (*keystore.Key, error) {
	return queryKey(ctx, t.tx, scanKey, `SELECT `+keyColumns+` FROM api_keys WHERE id = $1 FOR UPDATE`, id)
}

// Successor is the id of the key that replaced id, "" if none.
func (t *txn) Successor(ctx context.Context, id string) (string, error) {
	var successor string
	err := t.tx.QueryRow(ctx, `SELECT id::text FROM api_keys WHERE rotated_from = $1`, id).Scan(&successor)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", nil
	}
	return successor, err
}

// insertColumns are the columns Insert writes.
var insertColumns = []string{"id", "account_id", "name", "description", "display_prefix", "digest", "hash_scheme", "scopes",
	"created_at", "created_by", "expires_at", "revoked_at", "disabled_at", "last_used_at", "rotated_from", "allowed_cidrs",
	"metadata", "limits", "updated_at"}

func insertValues(k *keystore.Key) []any {
	var rotatedFrom *string
	if k.RotatedFrom != "" {
		rotatedFrom = &k.RotatedFrom
	}
	return []any{k.ID, k.AccountID, k.Name, k.Description, k.DisplayPrefix, k.Digest[:], k.HashScheme, nonNil(k.Scopes),
		k.CreatedAt, k.CreatedBy, k.ExpiresAt, k.RevokedAt, k.DisabledAt, k.LastUsedAt, rotatedFrom, nonNil(k.AllowedCIDRs),
		metadataJSON(k.Metadata), keystore.MarshalLimits(k.Limits), k.UpdatedAt}
}

// bulkInsert is the number of keys from which Insert copies them (COPY)
// instead of inserting them one statement each.
const bulkInsert = 16

// Insert stores new keys. A key whose UpdatedAt is zero gets the
// database's clock_timestamp(). A digest or a successor stored already is
// keystore.ErrDigestTaken or ErrRotated, with nothing of the call written
// (a savepoint keeps the transaction usable).
func (t *txn) Insert(ctx context.Context, keys ...*keystore.Key) error {
	if _, err := t.tx.Exec(ctx, `SAVEPOINT insert_keys`); err != nil {
		return err
	}
	err := t.insert(ctx, keys)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "23505" {
		if _, rbErr := t.tx.Exec(ctx, `ROLLBACK TO SAVEPOINT insert_keys`); rbErr != nil {
			return rbErr
		}
		switch pgErr.ConstraintName {
		case "api_keys_digest":
			return keystore.ErrDigestTaken
		case "api_keys_rotated_from":
			return keystore.ErrRotated
		}
	}
	if err != nil {
		return err
	}
	_, err = t.tx.Exec(ctx, `RELEASE SAVEPOINT insert_keys`)
	return err
}

func (t *txn) insert(ctx context.Context, keys []*keystore.Key) error {
	if len(keys) >= bulkInsert {
		// Times are the database's unless given: COPY has no defaults for
		// given columns, so give them all.
		var now time.Time
		if err := t.tx.QueryRow(ctx, `SELECT clock_timestamp()`).Scan(&now); err != nil {
			return err
		}
		for _, k := range keys {
			if k.UpdatedAt.IsZero() {
				k.UpdatedAt = now.UTC().Truncate(time.Microsecond)
			}
		}
		_, err := t.tx.CopyFrom(ctx, pgx.Identifier{"api_keys"}, insertColumns, pgx.CopyFromSlice(len(keys), func(i int) ([]any, error) {
			return insertValues(keys[i]), nil
		}))
		return err
	}
	placeholders := make([]string, len(insertColumns))
	for i := range placeholders {
		placeholders[i] = fmt.Sprintf("$%d", i+1)
	}
	placeholders[len(placeholders)-1] = fmt.Sprintf("coalesce($%d, clock_timestamp())", len(placeholders))
	sql := `INSERT INTO api_keys (` + strings.Join(insertColumns, ", ") + `) VALUES (` + strings.Join(placeholders, ", ") + `)
		RETURNING updated_at`
	for _, k := range keys {
		values := insertValues(k)
		if k.UpdatedAt.IsZero() {
			values[len(values)-1] = nil
		}
		if err := t.tx.QueryRow(ctx, sql, values...).Scan(&k.UpdatedAt); err != nil {
			return err
		}
		k.UpdatedAt = k.UpdatedAt.UTC()
	}
	return nil
}

// CountKeys is how many keys the database holds.
func (t *txn) CountKeys(ctx context.Context) (int, error) {
	var n int
	err := t.tx.QueryRow(ctx, `SELECT count(*) FROM api_keys`).Scan(&n)
	return n, err
}

// StoredDigests returns which of ds are stored, and their keys' ids.
func (t *txn) StoredDigests(ctx context.Context, ds []keystore.Digest) (map[keystore.Digest]string, error) {
	rows, err := t.tx.Query(ctx, `SELECT digest, id::text FROM api_keys WHERE digest = ANY($1)`, rawDigests(ds))
	if err != nil {
		return nil, err
	}
	out := map[keystore.Digest]string{}
	var raw []byte
	var id string
	_, err = pgx.ForEachRow(rows, []any{&raw, &id}, func() error {
		var d keystore.Digest
		copy(d[:], raw)
		out[d] = id
		return nil
	})
	return out, err
}

// Change writes c, moving updated_at to clock_timestamp().
func (t *txn) Change(ctx context.Context, id string, c keystore.KeyChange) (*keystore.Key, error) {
	sets := []string{"updated_at = clock_timestamp()"}
	args := []any{id}
	set := func(column string, v any) {
		args = append(args, v)
		sets = append(sets, fmt.Sprintf("%s = $%d", column, len(args)))
	}
	if c.Name.Set {
		set("name", c.Name.Value)
	}
	if c.Description.Set {
		set("description", c.Description.Value)
	}
	if c.Scopes.Set {
		set("scopes", nonNil(c.Scopes.Value))
	}
	if c.AllowedCIDRs.Set {
		set("allowed_cidrs", nonNil(c.AllowedCIDRs.Value))
	}
	if c.Metadata.Set {
		set("metadata", metadataJSON(c.Metadata.Value))
	}
	if c.Limits.Set {
		set("limits", keystore.MarshalLimits(c.Limits.Value))
	}
	if c.ExpiresAt.Set {
		set("expires_at", c.ExpiresAt.Value)
	}
	if c.RevokedAt.Set {
		set("revoked_at", c.RevokedAt.Value)
	}
	if c.DisabledAt.Set {
		set("disabled_at", c.DisabledAt.Value)
	}
	return queryKey(ctx, t.tx, scanShown, `UPDATE api_keys SET `+strings.Join(sets, ", ")+` WHERE id = $1 RETURNING `+shownColumns, args...)
}

// AddEvents appends audit events.
func (t *txn) AddEvents(ctx context.Context, events ...keystore.Event) error {
	rows := make([][]any, len(events))
	for i, e := range events {
		detail := e.Detail
		if detail == nil {
			detail = map[string]any{}
		}
		b, err := json.Marshal(detail)
		if err != nil {
			return err
		}
		rows[i] = []any{e.KeyID, e.Action, e.Actor, e.At, b}
	}
	if len(rows) >= bulkInsert {
		_, err := t.tx.CopyFrom(ctx, pgx.Identifier{"api_key_events"}, []string{"key_id", "action", "actor", "at", "detail"},
			pgx.CopyFromRows(rows))
		return err
	}
	for _, r := range rows {
		if _, err := t.tx.Exec(ctx, `INSERT INTO api_key_events (key_id, action, actor, at, detail) VALUES ($1, $2, $3, $4, $5)`, r...); err != nil {
			return err
		}
	}
	return nil
}

// addedPayload, as a notification's payload before the "@", announces keys
// added in bulk.
const addedPayload = "*"

// Notify announces a change with pg_notify: PostgreSQL delivers it to
// every listener when the transaction commits, and drops it if the
// transaction rolls back. The payload ends with the database's clock, from
// which listeners measure how long the change took to reach them.
func (t *txn) Notify(ctx context.Context, n keystore.Notice) error {
	what := n.Digest.String()
	if n.Added {
		what = addedPayload
	}
	_, err := t.tx.Exec(ctx, `SELECT pg_notify($1, $2 || '@' || (extract(epoch from clock_timestamp()) * 1000000)::bigint)`,
		NotifyChannel, what)
	return err
}

// metadataJSON is a key's metadata column value.
func metadataJSON(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

// nonNil is s, or an empty slice for nil: a NOT NULL array column's
// value.
func nonNil[T string | netip.Prefix](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
