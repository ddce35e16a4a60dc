package main

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/exaring/otelpgx"
	"github.com/jackc/pgx/v5"
	"go.opentelemetry.io/otel/trace"

	"github.com/keygate/keygate/internal/readiness"
	"github.com/keygate/keygate/keystore"
)

// This file is everything in serve that knows about the database: its
// configuration, opening it (an SQLite file, which serve then holds, or a
// PostgreSQL pool), migrating it, its change watcher, and the readiness
// probe that waits for its schema. database.go parses --database-url.

// storeConfig is the database serve uses: checked, not opened.
type storeConfig struct {
	db   database
	keys keystore.Options
}

// storeConfig checks the database and key flags, before any I/O.
func (f dbFlags) storeConfig(kf keyFlags, getenv func(string) string) (storeConfig, error) {
	db, err := f.database(getenv)
	if err != nil {
		return storeConfig{}, err
	}
	if db.kind == postgresDB {
		if _, err := db.poolConfig(); err != nil {
			return storeConfig{}, err
		}
	}
	keys, err := kf.options()
	if err != nil {
		return storeConfig{}, err
	}
	return storeConfig{db: db, keys: keys}, nil
}

// storage is serve's database: the store, and what only the database
// knows (its schema, its change notifications, whether it answers).
type storage struct {
	store   *keystore.Store
	backend keystore.Backend
	db      database

	reachable atomic.Bool   // the last probe's ping succeeded
	migrated  chan struct{} // closed once the probe found the schema migrated
}

// openStorage opens the store cfg names, traced by tp when it is not nil:
// an SQLite file (created if missing, and held: a second serve on it is
// refused), or a PostgreSQL pool that connects at the first query.
func openStorage(ctx context.Context, cfg storeConfig, tp trace.TracerProvider) (*storage, error) {
	var tracer pgx.QueryTracer
	if tp != nil {
		tracer = otelpgx.NewTracer(otelpgx.WithTracerProvider(tp))
	}
	backend, err := cfg.db.open(ctx, forServing, tracer)
	if err != nil {
		return nil, err
	}
	store, err := keystore.New(backend, cfg.keys)
	if err != nil {
		backend.Close()
		return nil, err
	}
	return &storage{store: store, backend: backend, db: cfg.db, migrated: make(chan struct{})}, nil
}

// close closes the backend.
func (s *storage) close() { s.backend.Close() }

// migrate applies the pending migrations (serve --migrate, dev).
func (s *storage) migrate(ctx context.Context, logger *slog.Logger) error {
	applied, err := s.db.migrate(ctx, s.backend, logger)
	if err != nil {
		return fmt.Errorf("--migrate: %w", err)
	}
	logger.Info("schema migrated", "applied", len(applied))
	return nil
}

// newWatcher returns the watcher that keeps cache in step with the
// database's changes; runWatcher runs it.
func (s *storage) newWatcher(cache *keystore.Cache, opts keystore.WatchOptions) *keystore.Watcher {
	return keystore.NewWatcher(s.store, cache, opts)
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
		if pending, err = s.backend.PendingMigrations(ctx); err == nil && pending {
			return &readiness.NotReady{Reason: "schema not migrated",
				Log: "waiting for the database schema: NOT_SERVING until 'keygate migrate' has run", Attrs: []any{"database", s.backend.Where()}}
		}
		if err == nil {
			close(s.migrated) // the probe runs in one goroutine: once
		}
	}
	if err != nil {
		return &readiness.NotReady{Reason: "database unreachable",
			Log: "database unreachable: NOT_SERVING; cached keys keep working, others get 503", Attrs: []any{"error", s.db.reachError(err).Error()}}
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
