// Package postgres is the keystore.Backend on PostgreSQL, for any number
// of keygate replicas on one database: a pgx pool for reads and writes,
// a connection of its own for LISTEN (Options.Direct: changes announced
// with NOTIFY in the changing transaction reach every replica), embedded
// migrations applied under an advisory lock, and, with Options.Reads, hot
// standbys that answer the decision path's lookups without ever undoing a
// change by replication lag: a lookup of a key that changed is answered
// by a standby only once it has replayed the change (replicas.go), else by
// the primary.
//
//	b := postgres.New(pool, postgres.Options{Direct: listenConfig, Reads: standbyPools})
//	findings, err := b.Check(ctx) // wrong connections, named, before serving
//
// Its statements work through PgBouncer in transaction mode when the pool
// does not prepare them (pgx's cache_describe mode); LISTEN does not, and
// every listening session proves that its connection receives a
// notification (ErrListenProbe otherwise).
//
// Errors wrap keystore's sentinels: keystore.ErrUnavailable for a failed
// read of the decision path, keystore.ErrNoSchema for a database without
// the schema, keystore.ErrNotFound, ErrDigestTaken and ErrRotated.
package postgres
