package main

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/exaring/otelpgx"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.opentelemetry.io/otel/trace"

	"github.com/keygate/keygate/internal/readiness"
	"github.com/keygate/keygate/keystore"
)

// This file is everything in serve that knows the store is PostgreSQL:
// the database's configuration, opening it, migrating it, its change
// watcher, and the readiness probe that waits for its schema.

// storeConfig is the database serve uses: checked, not opened.
type storeConfig struct {
	pool *pgxpool.Config
	keys keystore.Options
}

// storeConfig checks the database and key flags, before any I/O.
func (f dbFlags) storeConfig(kf keyFlags) (storeConfig, error) {
	pool, err := f.poolConfig()
	if err != nil {
		return storeConfig{}, err
	}
	keys, err := kf.options()
	if err != nil {
		return storeConfig{}, err
	}
	return storeConfig{pool: pool, keys: keys}, nil
}

// storage is serve's database: the store, and what only the database
// knows (its schema, its change notifications, whether it answers).
type storage struct {
	store *keystore.Store
	pool  *pgxpool.Pool
	conn  *pgx.ConnConfig // for single connections: migrations, the change listener, the schema check

	reachable atomic.Bool   // the last probe's ping succeeded
	migrated  chan struct{} // closed once the probe found the schema migrated
}

// openStorage opens the store cfg names, traced by tp when it is not nil.
// It connects lazily, at the first query: build's later steps may still
// refuse the configuration with nothing changed.
func openStorage(ctx context.Context, cfg storeConfig, tp trace.TracerProvider) (*storage, error) {
	poolCfg := cfg.pool.Copy()
	if tp != nil {
		poolCfg.ConnConfig.Tracer = otelpgx.NewTracer(otelpgx.WithTracerProvider(tp))
	}
	pool, err := pgxpool.NewWithConfig(ctx, poolCfg)
	if err != nil {
		return nil, fmt.Errorf("database: %w", err)
	}
	store, err := keystore.New(pool, cfg.keys)
	if err != nil {
		pool.Close()
		return nil, err
	}
	return &storage{store: store, pool: pool, conn: cfg.pool.ConnConfig.Copy(), migrated: make(chan struct{})}, nil
}

// close closes the pool.
func (s *storage) close() { s.pool.Close() }

// migrate applies the pending migrations (serve --migrate).
func (s *storage) migrate(ctx context.Context, logger *slog.Logger) error {
	applied, err := migrateSchema(ctx, s.conn, logger)
	if err != nil {
		return fmt.Errorf("--migrate: %w", err)
	}
	logger.Info("schema migrated", "applied", len(applied))
	return nil
}

// newWatcher returns the watcher that keeps cache in step with the
// database's changes; runWatcher runs it.
func (s *storage) newWatcher(cache *keystore.Cache, opts keystore.WatchOptions) *keystore.Watcher {
	return keystore.NewWatcher(s.conn, s.store, cache, opts)
}

// runWatcher runs w until ctx ends, from the moment the probe has found
// the schema migrated (the listener resyncs and polls tables that must
// exist).
func (s *storage) runWatcher(ctx context.Context, w *keystore.Watcher) {
	select {
	case <-s.migrated:
		w.Run(ctx)
	case <-ctx.Done():
	}
}

// probe is serve's readiness probe: the database answers a ping, and
// (until it has once) shows its schema migrated. A replica that starts
// before the migration job has run waits, not ready, rather than
// crash-looping, and never migrates by itself.
func (s *storage) probe(ctx context.Context) error {
	err := s.store.Ping(ctx)
	s.reachable.Store(err == nil)
	if err == nil && !s.schemaMigrated() {
		var pending bool
		if pending, err = keystore.PendingMigrations(ctx, s.conn); err == nil && pending {
			return &readiness.NotReady{Reason: "schema not migrated",
				Log: "waiting for the database schema: NOT_SERVING until 'keygate migrate' has run", Attrs: []any{"database", where(&s.conn.Config)}}
		}
		if err == nil {
			close(s.migrated) // the probe runs in one goroutine: once
		}
	}
	if err != nil {
		return &readiness.NotReady{Reason: "database unreachable",
			Log: "database unreachable: NOT_SERVING; cached keys keep working, others get 503", Attrs: []any{"error", connError(&s.conn.Config, err).Error()}}
	}
	return nil
}

// schemaMigrated reports whether the probe has found the schema migrated.
func (s *storage) schemaMigrated() bool {
	select {
	case <-s.migrated:
		return true
	default:
		return false
	}
}

// storeCheckInterval is how often the readiness probe asks the database.
const storeCheckInterval = time.Second

// readyLog is logged when the probe finds the database again.
const readyLog = "database reachable: SERVING"
