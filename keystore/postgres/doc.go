// Package postgres is keygate's store on PostgreSQL: the keystore.Backend
// for any number of replicas sharing one database.
//
// It owns the PostgreSQL schema (embedded migrations, applied by goose
// under a session advisory lock so that replicas migrating at once take
// turns), the SQL of every store operation (pgx, $n parameters only), and
// change notifications: every lifecycle change calls pg_notify on
// NotifyChannel in its own transaction, so that each replica's Listen,
// on a connection of its own (Options.Direct), hears of it when, and only
// if, it commits.
//
//	pool, _ := pgxpool.New(ctx, "postgres://keygate@db/keygate")
//	store, _ := keystore.New(postgres.New(pool, postgres.Options{}), keystore.Options{})
//
// # At scale
//
// With Options.Reads, hot standbys answer the decision path's lookups
// without ever undoing a change by replication lag: a lookup of a key that
// changed is answered by a standby only once it has replayed the change,
// else by the primary (replicas.go). The statements work through PgBouncer
// in transaction mode when the pool does not prepare them (pgx's
// cache_describe mode); the decision path's reads are prepared only on
// connections that are PostgreSQL's own (prepare.go). LISTEN does not work
// through such a pooler, and every listening session proves that its
// connection receives a notification (ErrListenProbe otherwise). Check
// names a wrong connection before a server starts:
//
//	b := postgres.New(pool, postgres.Options{Direct: listenConfig, Reads: standbyPools})
//	findings, err := b.Check(ctx)
//
// # Errors
//
// Reads of the decision path (Lookup, LookupMany, ChangedSince) wrap every
// failure with keystore.ErrUnavailable; a missing table or column (the
// schema not migrated) matches keystore.ErrNoSchema; a digest or a
// successor stored twice is keystore.ErrDigestTaken or ErrRotated.
package postgres
