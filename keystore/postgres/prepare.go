package postgres

import (
	"context"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// directKey marks, in a connection's CustomData, whether the session is
// PostgreSQL's own (true) or a pooler's (false).
const directKey = "keygate.direct"

// queryPrimary runs a decision-path read on the primary's pool. keygate's
// default mode (cache_describe) sends every statement unprepared, which
// works through PgBouncer in transaction mode but makes PostgreSQL parse
// and plan the lookup each time: about twice the database's CPU of a
// prepared statement. So on a session that is PostgreSQL's own (the
// server's process id, from the connection's start, is the one that
// answers pg_backend_pid(); a pooler answers with its own), the read is
// prepared once per connection (pgx's cache_statement). A URL that sets
// default_query_exec_mode itself is obeyed as it is.
func (b *Backend) queryPrimary(ctx context.Context, read func(pgx.Rows) error, sql string, args ...any) error {
	c, err := b.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer c.Release()
	if b.prepareWhenDirect {
		direct, err := isDirect(ctx, c.Conn())
		if err != nil {
			return err
		}
		if direct {
			args = append([]any{pgx.QueryExecModeCacheStatement}, args...)
		}
	}
	rows, err := c.Query(ctx, sql, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	return read(rows)
}

// AskOnConnect makes each connection of a pool built from cfg ask, as it
// connects, whether it is PostgreSQL's own session (isDirect), so that no
// lookup pays for the question within its deadline. Without it the first
// lookup on each connection asks.
func AskOnConnect(cfg *pgxpool.Config) {
	prev := cfg.AfterConnect
	cfg.AfterConnect = func(ctx context.Context, c *pgx.Conn) error {
		if prev != nil {
			if err := prev(ctx, c); err != nil {
				return err
			}
		}
		_, err := isDirect(ctx, c)
		return err
	}
}

// isDirect says whether c is a session of PostgreSQL itself rather than
// of a pooler, asking the server once per connection.
func isDirect(ctx context.Context, c *pgx.Conn) (bool, error) {
	data := c.PgConn().CustomData()
	if direct, known := data[directKey].(bool); known {
		return direct, nil
	}
	pid, err := backendPID(ctx, c)
	if err != nil {
		return false, err
	}
	// A pooler announces a process id of its own when a client connects.
	direct := pid == c.PgConn().PID()
	data[directKey] = direct
	return direct, nil
}

// backendPID is the process id of the server session that q's next
// statement runs on.
func backendPID(ctx context.Context, q querier) (uint32, error) {
	var pid uint32
	rows, err := q.Query(ctx, `SELECT pg_backend_pid()::int8`, pgx.QueryExecModeSimpleProtocol)
	if err == nil {
		_, err = pgx.ForEachRow(rows, []any{&pid}, func() error { return nil })
	}
	return pid, err
}
