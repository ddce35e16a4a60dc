package sqlite

import (
	"context"
	"database/sql"
	"time"

	"github.com/keygate/keygate/keystore"
)

// Usage buckets' starts are stored in unix seconds.

// AddUsage adds the counts to their buckets in one transaction.
func (b *Backend) AddUsage(ctx context.Context, counts []keystore.UsageCount) error {
	return b.Write(ctx, func(t keystore.Tx) error {
		tx := t.(*txn).tx
		stmt, err := tx.PrepareContext(ctx, `INSERT INTO api_key_usage (key_id, start, step, outcome, count) VALUES (?, ?, ?, ?, ?)
			ON CONFLICT (key_id, start, step, outcome) DO UPDATE SET count = count + excluded.count`)
		if err != nil {
			return err
		}
		defer stmt.Close()
		for _, c := range counts {
			if _, err := stmt.ExecContext(ctx, c.KeyID, c.Start.Unix(), int64(c.Step/time.Second), c.Outcome, c.Count); err != nil {
				return err
			}
		}
		return nil
	})
}

// UsageRows returns a key's buckets that start in [from, to).
func (b *Backend) UsageRows(ctx context.Context, id string, from, to time.Time) ([]keystore.UsageCount, error) {
	rows, err := b.reader.QueryContext(ctx, `SELECT key_id, start, step, outcome, count FROM api_key_usage
		WHERE key_id = ? AND start >= ? AND start < ?`, id, from.Unix(), ceilSeconds(to))
	if err != nil {
		return nil, schemaError(err)
	}
	defer rows.Close()
	var out []keystore.UsageCount
	for rows.Next() {
		var c keystore.UsageCount
		var start, step int64
		if err := rows.Scan(&c.KeyID, &start, &step, &c.Outcome, &c.Count); err != nil {
			return nil, err
		}
		c.Start, c.Step = time.Unix(start, 0).UTC(), time.Duration(step)*time.Second
		out = append(out, c)
	}
	return out, rows.Err()
}

// ceilSeconds is t in unix seconds, rounded up: a bound "before t" in
// whole seconds.
func ceilSeconds(t time.Time) int64 {
	s := t.Unix()
	if t.Nanosecond() > 0 {
		s++
	}
	return s
}

// UsageSince sums each key's counts of outcome since since.
func (b *Backend) UsageSince(ctx context.Context, ids []string, outcome string, since time.Time) (map[string]int64, error) {
	out := map[string]int64{}
	for start := 0; start < len(ids); start += lookupBatch {
		batch := ids[start:min(start+lookupBatch, len(ids))]
		args := []any{outcome, ceilSeconds(since)}
		for _, id := range batch {
			args = append(args, id)
		}
		rows, err := b.reader.QueryContext(ctx, `SELECT key_id, sum(count) FROM api_key_usage
			WHERE outcome = ? AND start >= ? AND key_id IN (`+placeholders(len(batch))+`) GROUP BY key_id`, args...)
		if err != nil {
			return nil, schemaError(err)
		}
		for rows.Next() {
			var id string
			var n int64
			if err := rows.Scan(&id, &n); err != nil {
				rows.Close()
				return nil, err
			}
			out[id] = n
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// TopUsage returns the keys with the most decisions in [from, to).
func (b *Backend) TopUsage(ctx context.Context, accountID, allowed string, from, to time.Time, limit int) ([]keystore.KeyUsage, error) {
	rows, err := b.reader.QueryContext(ctx, `SELECT k.id, k.account_id, k.name,
			coalesce(sum(CASE WHEN u.outcome = :allowed THEN u.count END), 0), sum(u.count)
		FROM api_key_usage AS u JOIN api_keys AS k ON k.id = u.key_id
		WHERE u.start >= :from AND u.start < :to AND (:account = '' OR k.account_id = :account)
		GROUP BY k.id ORDER BY 5 DESC, k.id LIMIT :limit`,
		sql.Named("allowed", allowed), sql.Named("from", ceilSeconds(from)), sql.Named("to", ceilSeconds(to)),
		sql.Named("account", accountID), sql.Named("limit", limit))
	if err != nil {
		return nil, schemaError(err)
	}
	defer rows.Close()
	var out []keystore.KeyUsage
	for rows.Next() {
		var u keystore.KeyUsage
		if err := rows.Scan(&u.KeyID, &u.AccountID, &u.Name, &u.Allowed, &u.Total); err != nil {
			return nil, err
		}
		out = append(out, u)
	}
	return out, rows.Err()
}

// RollUpUsage moves old buckets of step from into buckets of step to, in
// one transaction (which holds the database's write lock).
func (b *Backend) RollUpUsage(ctx context.Context, from, to time.Duration, before time.Time) (int64, error) {
	var moved int64
	err := b.Write(ctx, func(t keystore.Tx) error {
		tx := t.(*txn).tx
		args := []any{sql.Named("from", int64(from/time.Second)), sql.Named("to", int64(to/time.Second)), sql.Named("before", ceilSeconds(before))}
		if _, err := tx.ExecContext(ctx, `INSERT INTO api_key_usage (key_id, start, step, outcome, count)
			SELECT key_id, (start / :to) * :to, :to, outcome, sum(count) FROM api_key_usage
			WHERE step = :from AND start < :before GROUP BY 1, 2, 4 ORDER BY 1, 2, 4
			ON CONFLICT (key_id, start, step, outcome) DO UPDATE SET count = count + excluded.count`, args...); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `DELETE FROM api_key_usage WHERE step = :from AND start < :before`, args...)
		if err != nil {
			return err
		}
		moved, err = res.RowsAffected()
		return err
	})
	return moved, err
}

// DeleteUsage deletes old buckets of step.
func (b *Backend) DeleteUsage(ctx context.Context, step time.Duration, before time.Time) (int64, error) {
	var n int64
	err := b.Write(ctx, func(t keystore.Tx) error {
		res, err := t.(*txn).tx.ExecContext(ctx, `DELETE FROM api_key_usage WHERE step = ? AND start < ?`, int64(step/time.Second), ceilSeconds(before))
		if err == nil {
			n, err = res.RowsAffected()
		}
		return err
	})
	return n, err
}

// Heartbeat refreshes replica's row and counts the live ones, by this
// machine's clock (every process on the file shares it).
func (b *Backend) Heartbeat(ctx context.Context, replica string, within time.Duration) (int, error) {
	var n int
	err := b.Write(ctx, func(t keystore.Tx) error {
		tx := t.(*txn).tx
		now := time.Now().UnixMicro()
		if _, err := tx.ExecContext(ctx, `INSERT INTO keygate_replicas (id, seen_at) VALUES (?, ?)
			ON CONFLICT (id) DO UPDATE SET seen_at = excluded.seen_at`, replica, now); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM keygate_replicas WHERE seen_at < ?`, now-(10*within).Microseconds()); err != nil {
			return err
		}
		return tx.QueryRowContext(ctx, `SELECT count(*) FROM keygate_replicas WHERE seen_at >= ?`, now-within.Microseconds()).Scan(&n)
	})
	return n, err
}
