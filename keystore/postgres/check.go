package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Connection names one of the connections a Backend uses, for Findings.
type Connection int

const (
	// MainConn is the pool: writes, the change poll, and lookups without
	// read replicas.
	MainConn Connection = iota
	// ListenConn is the LISTEN connection (Options.Direct).
	ListenConn
	// ReadConn is a read replica (Options.Reads).
	ReadConn
)

// Finding is one thing Check found wrong with the connections.
type Finding struct {
	Conn  Connection
	Where string // the server, as Where names it
	// Problem says what is wrong and what to do, in one sentence.
	Problem string
	// Fatal: keygate would not work, or could be wrong; otherwise it
	// works around the problem (a warning).
	Fatal bool
}

// Check looks at every connection once, as a server starting should: the
// pool reaches the primary and, through a pooler, one in transaction mode
// with statements that mode supports (a pooler in session mode works but
// pins a server connection to each of keygate's); the LISTEN connection
// receives notifications (ProbeListen); each read replica is a hot standby
// of the same cluster (system identifier) and database, with the keygate
// schema. An error means the primary could not be asked at all.
func (b *Backend) Check(ctx context.Context) ([]Finding, error) {
	primary, _, err := identity(ctx, b.pool)
	if err != nil {
		return nil, err
	}
	var found []Finding
	add := func(c Connection, where string, fatal bool, format string, args ...any) {
		found = append(found, Finding{Conn: c, Where: where, Problem: fmt.Sprintf(format, args...), Fatal: fatal})
	}
	mode, err := poolerMode(ctx, b.pool)
	switch {
	case err != nil:
		return nil, err
	case mode == sessionPooling:
		add(MainConn, b.Where(), false, "reached through a pooler in session mode (PgBouncer pool_mode = session): it works, "+
			"but each of keygate's connections holds a server connection as long as it is open; use transaction mode")
	case mode == transactionPooling && b.pool.Config().ConnConfig.DefaultQueryExecMode == pgx.QueryExecModeCacheStatement:
		add(MainConn, b.Where(), true, "reached through a pooler in transaction mode, where prepared statements do not survive the "+
			"transaction: drop default_query_exec_mode=cache_statement from the URL (keygate's default, cache_describe, works there)")
	}
	if err := b.ProbeListen(ctx); err != nil {
		fatal := errors.Is(err, ErrListenProbe)
		add(ListenConn, Where(&b.direct.Config), fatal, "%s", strings.TrimPrefix(oneLine(err), "keystore: "))
	}
	var migrated bool // a standby's schema is checked once the primary has one
	if err := b.pool.QueryRow(ctx, schemaExists, pgx.QueryExecModeSimpleProtocol).Scan(&migrated); err != nil {
		return nil, err
	}
	for _, s := range b.standbys {
		found = append(found, checkStandby(ctx, s, primary, migrated)...)
	}
	return found, nil
}

// checkStandby checks one read replica against the primary.
func checkStandby(ctx context.Context, s *standby, primary primaryIdentity, migrated bool) []Finding {
	finding := func(fatal bool, format string, args ...any) []Finding {
		return []Finding{{Conn: ReadConn, Where: s.where, Problem: fmt.Sprintf(format, args...), Fatal: fatal}}
	}
	st, err := standbyStatus(ctx, s.pool)
	switch {
	case err != nil:
		return finding(false, "does not answer (%s); lookups go to the primary until it does", oneLine(err))
	case st.identity.system != primary.system:
		return finding(true, "belongs to another cluster (system identifier %d, the primary's is %d): "+
			"give standbys that stream from the --database-url's server", st.identity.system, primary.system)
	case st.identity.database != primary.database:
		return finding(true, "names database %q, the primary's is %q: give the same database", st.identity.database, primary.database)
	}
	var hasSchema bool
	if err := s.pool.QueryRow(ctx, schemaExists, pgx.QueryExecModeSimpleProtocol).Scan(&hasSchema); err != nil {
		return finding(false, "does not answer (%s); lookups go to the primary until it does", oneLine(err))
	}
	if migrated && !hasSchema {
		return finding(true, "has no keygate schema: it must be a standby of the migrated primary, same database")
	}
	if !st.inRecovery {
		return finding(false, "is not a standby (pg_is_in_recovery() is false): it is the primary itself, or a standby "+
			"promoted since; no lookup is sent to it while it is one, so it adds nothing")
	}
	return nil
}

// schemaExists asks whether the keygate schema is there.
const schemaExists = `SELECT to_regclass('api_keys') IS NOT NULL`

// pooling is how a connection reaches PostgreSQL.
type pooling int

const (
	direct pooling = iota
	sessionPooling
	transactionPooling
)

// poolerMode tells whether the pool reaches PostgreSQL through a pooler,
// and in which mode. A pooler shows itself by the process id it announces
// at connection (BackendKeyData, its own) differing from the server's
// pg_backend_pid() (isDirect). Its mode shows in whether a client keeps its server
// session between transactions: a first client reads its server's pid and
// ends its transaction; a second client opens a transaction, which in
// transaction mode takes the session just released (pgbouncer reuses the
// most recent), while in session mode it cannot; then the first client
// reads its pid again, which only session mode keeps.
func poolerMode(ctx context.Context, pool *pgxpool.Pool) (pooling, error) {
	first, err := pool.Acquire(ctx)
	if err != nil {
		return direct, err
	}
	defer first.Release()
	if own, err := isDirect(ctx, first.Conn()); err != nil || own {
		return direct, err
	}
	pid := func(q querier) (uint32, error) { return backendPID(ctx, q) }
	p1, err := pid(first)
	if err != nil {
		return direct, err
	}
	second, err := pool.Acquire(ctx)
	if err != nil {
		return direct, err
	}
	defer second.Release()
	tx, err := second.BeginTx(ctx, pgx.TxOptions{})
	if err != nil {
		return direct, err
	}
	defer tx.Rollback(ctx) //nolint:errcheck // read-only
	p2, err := pid(tx)
	if err != nil {
		return direct, err
	}
	p3, err := pid(first)
	if err != nil {
		return direct, err
	}
	if p1 == p3 && p2 != p1 {
		return sessionPooling, nil
	}
	return transactionPooling, nil
}
