package postgres

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/keygate/keygate/keystore"
)

// AddUsage adds the counts to their buckets in one statement; rows are
// locked in the order the store sorted them, so that replicas flushing at
// once wait for each other instead of deadlocking.
func (b *Backend) AddUsage(ctx context.Context, counts []keystore.UsageCount) error {
	ids := make([]string, len(counts))
	starts := make([]time.Time, len(counts))
	steps := make([]int32, len(counts))
	outcomes := make([]string, len(counts))
	ns := make([]int64, len(counts))
	for i, c := range counts {
		ids[i], starts[i], steps[i], outcomes[i], ns[i] = c.KeyID, c.Start, int32(c.Step/time.Second), c.Outcome, c.Count
	}
	_, err := b.pool.Exec(ctx, `INSERT INTO api_key_usage AS u (key_id, start, step, outcome, count)
		SELECT * FROM unnest($1::uuid[], $2::timestamptz[], $3::integer[], $4::text[], $5::bigint[])
		ON CONFLICT (key_id, start, step, outcome) DO UPDATE SET count = u.count + excluded.count`,
		ids, starts, steps, outcomes, ns)
	return schemaError(err)
}

// UsageRows returns a key's buckets that start in [from, to).
func (b *Backend) UsageRows(ctx context.Context, id string, from, to time.Time) ([]keystore.UsageCount, error) {
	rows, err := b.pool.Query(ctx, `SELECT key_id::text, start, step, outcome, count FROM api_key_usage
		WHERE key_id = $1 AND start >= $2 AND start < $3`, id, from, to)
	if err != nil {
		return nil, schemaError(err)
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (keystore.UsageCount, error) {
		var c keystore.UsageCount
		var step int32
		err := row.Scan(&c.KeyID, &c.Start, &step, &c.Outcome, &c.Count)
		c.Start, c.Step = c.Start.UTC(), time.Duration(step)*time.Second
		return c, err
	})
}

// UsageSince sums each key's counts of outcome since since.
func (b *Backend) UsageSince(ctx context.Context, ids []string, outcome string, since time.Time) (map[string]int64, error) {
	rows, err := b.pool.Query(ctx, `SELECT key_id::text, sum(count)::bigint FROM api_key_usage
		WHERE key_id = ANY($1::uuid[]) AND outcome = $2 AND start >= $3 GROUP BY key_id`, ids, outcome, since)
	if err != nil {
		return nil, schemaError(err)
	}
	out := map[string]int64{}
	var id string
	var n int64
	_, err = pgx.ForEachRow(rows, []any{&id, &n}, func() error { out[id] = n; return nil })
	return out, schemaError(err)
}

// TopUsage returns the keys with the most decisions in [from, to).
func (b *Backend) TopUsage(ctx context.Context, accountID, allowed string, from, to time.Time, limit int) ([]keystore.KeyUsage, error) {
	rows, err := b.pool.Query(ctx, `SELECT k.id::text, k.account_id, k.name,
			sum(u.count) FILTER (WHERE u.outcome = $2)::bigint, sum(u.count)::bigint
		FROM api_key_usage AS u JOIN api_keys AS k ON k.id = u.key_id
		WHERE u.start >= $3 AND u.start < $4 AND ($1 = '' OR k.account_id = $1)
		GROUP BY k.id ORDER BY 5 DESC, k.id LIMIT $5`, accountID, allowed, from, to, limit)
	if err != nil {
		return nil, schemaError(err)
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (keystore.KeyUsage, error) {
		var u keystore.KeyUsage
		var allowedN *int64
		err := row.Scan(&u.KeyID, &u.AccountID, &u.Name, &allowedN, &u.Total)
		if allowedN != nil {
			u.Allowed = *allowedN
		}
		return u, err
	})
}

// RollUpUsage moves old buckets of step from into buckets of step to: the
// DELETE … RETURNING locks the rows it moves, so a second rollup running
// at once waits, then finds them gone.
func (b *Backend) RollUpUsage(ctx context.Context, from, to time.Duration, before time.Time) (int64, error) {
	tag, err := b.pool.Exec(ctx, `WITH moved AS (
			DELETE FROM api_key_usage WHERE step = $1 AND start < $3 RETURNING key_id, start, outcome, count)
		INSERT INTO api_key_usage AS u (key_id, start, step, outcome, count)
		SELECT key_id, to_timestamp(floor(extract(epoch FROM start) / $2) * $2), $2, outcome, sum(count)
		FROM moved GROUP BY 1, 2, 4 ORDER BY 1, 2, 4
		ON CONFLICT (key_id, start, step, outcome) DO UPDATE SET count = u.count + excluded.count`,
		int32(from/time.Second), int32(to/time.Second), before)
	return tag.RowsAffected(), schemaError(err)
}

// DeleteUsage deletes old buckets of step.
func (b *Backend) DeleteUsage(ctx context.Context, step time.Duration, before time.Time) (int64, error) {
	tag, err := b.pool.Exec(ctx, `DELETE FROM api_key_usage WHERE step = $1 AND start < $2`, int32(step/time.Second), before)
	return tag.RowsAffected(), schemaError(err)
}

// Heartbeat refreshes replica's row and counts the live ones, by the
// database's clock.
func (b *Backend) Heartbeat(ctx context.Context, replica string, within time.Duration) (int, error) {
	var n int
	err := pgx.BeginFunc(ctx, b.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO keygate_replicas (id, seen_at) VALUES ($1, now())
			ON CONFLICT (id) DO UPDATE SET seen_at = now()`, replica); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM keygate_replicas WHERE seen_at < now() - $1::interval`, 10*within); err != nil {
			return err
		}
		return tx.QueryRow(ctx, `SELECT count(*) FROM keygate_replicas WHERE seen_at >= now() - $1::interval`, within).Scan(&n)
	})
	return n, schemaError(err)
}
