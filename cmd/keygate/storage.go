package main

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/exaring/otelpgx"
	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"

	"github.com/keygate/keygate/internal/readiness"
	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/keystore/postgres"
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

// startCheckTimeout bounds serve's look at its PostgreSQL connections.
const startCheckTimeout = 10 * time.Second

// check looks at serve's PostgreSQL connections once at start
// (postgres.Backend.Check): the first problem that would make keygate fail
// or be wrong is the error, those it works around are logged as warnings.
// A database that does not answer yet is no error (serve waits for it);
// the read replicas and the listen connection are then checked by the
// backend before each use.
func (s *storage) check(ctx context.Context, logger *slog.Logger) error {
	pg, ok := s.backend.(*postgres.Backend)
	if !ok {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, startCheckTimeout)
	defer cancel()
	if err := pg.Ping(ctx); err != nil {
		logger.Warn("database unreachable at start: its connections are checked once it answers", "error", s.db.reachError(err).Error())
		return nil
	}
	findings, err := pg.Check(ctx)
	if err != nil {
		logger.Warn("checking the database connections at start failed", "error", oneLineError(err))
		return nil
	}
	flags := map[postgres.Connection]string{postgres.MainConn: "--database-url", postgres.ListenConn: "--database-listen-url", postgres.ReadConn: "--database-read-url"}
	for _, f := range findings {
		flag := flags[f.Conn]
		if f.Conn == postgres.ListenConn && s.db.listen == "" {
			flag = "--database-url (used for LISTEN: give --database-listen-url)"
		}
		if f.Fatal {
			return usageError("%s: the %s %s", flag, f.Where, f.Problem)
		}
		logger.Warn(fmt.Sprintf("%s: the %s %s", flag, f.Where, f.Problem))
	}
	return nil
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

// registerReadMetrics exposes where lookups went when read replicas are
// configured (--database-read-url): nothing otherwise.
func (s *storage) registerReadMetrics(reg prometheus.Registerer) {
	pg, ok := s.backend.(*postgres.Backend)
	if !ok || len(pg.Standbys()) == 0 {
		return
	}
	rs := pg.ReadStats()
	reads := func(by string, v *atomic.Uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "keygate_database_reads_total",
			Help:        "Lookups of keys not cached, by the server that answered: a standby (--database-read-url) or the primary.",
			ConstLabels: prometheus.Labels{"by": by}}, func() float64 { return float64(v.Load()) })
	}
	reg.MustRegister(reads("standby", &rs.Standby), reads("primary", &rs.Primary),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "keygate_database_reads_fenced_total",
			Help: "Lookups the primary answered because no standby had replayed a change to the key yet."},
			func() float64 { return float64(rs.Fenced.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "keygate_database_standby_errors_total",
			Help: "Lookups a standby failed to answer (then asked of the primary)."},
			func() float64 { return float64(rs.StandbyErrors.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "keygate_database_standbys_usable",
			Help: "Standbys that answered the last poll, are in recovery, belong to the primary and lag within --database-read-max-lag."},
			func() float64 {
				n := 0
				for _, st := range pg.Standbys() {
					if st.Usable {
						n++
					}
				}
				return float64(n)
			}))
}
