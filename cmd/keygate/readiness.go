package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/keygate/keygate/keystore"
)

// authorizationService is the gRPC service name Envoy's health check may
// ask about, besides "" (the whole server).
const authorizationService = "envoy.service.auth.v3.Authorization"

// readiness is whether keygate can make decisions: the store answers and
// it is not shutting down. It drives gRPC health and /readyz together.
type readiness struct {
	health *healthService

	mu       sync.Mutex
	ready    bool
	stopping bool
	reason   string

	// reachable is whether the last ping of the store succeeded.
	reachable atomic.Bool
}

// registerReadinessMetrics exposes keygate_ready and
// keygate_store_reachable.
func registerReadinessMetrics(reg prometheus.Registerer, r *readiness) {
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "keygate_ready", Help: "1 while keygate reports SERVING (store reachable, schema migrated, not shutting down)."},
			func() float64 {
				r.mu.Lock()
				defer r.mu.Unlock()
				return boolGauge(r.ready && !r.stopping)
			}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "keygate_store_reachable", Help: "1 while the database answers keygate's pings (every second)."},
			func() float64 { return boolGauge(r.reachable.Load()) }),
	)
}

func boolGauge(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func newReadiness(h *healthService) *readiness {
	r := &readiness{health: h, reason: "starting"}
	r.apply()
	return r
}

func (r *readiness) set(ready bool, reason string) (changed bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stopping {
		return false // shutting down is final
	}
	changed = r.ready != ready || r.reason != reason
	r.ready, r.reason = ready, reason
	r.apply()
	return changed
}

func (r *readiness) shutdown() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stopping, r.reason = true, "shutting down"
	r.apply()
}

// apply pushes the state to the health server; r.mu is held.
func (r *readiness) apply() {
	status := healthpb.HealthCheckResponse_NOT_SERVING
	if r.ready && !r.stopping {
		status = healthpb.HealthCheckResponse_SERVING
	}
	if r.stopping {
		r.health.shutdown() // NOT_SERVING for every service, for good
		return
	}
	r.health.SetServingStatus("", status)
	r.health.SetServingStatus(authorizationService, status)
}

// ServeHTTP answers /readyz: 200 when ready, 503 with the reason if not.
func (r *readiness) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	r.mu.Lock()
	ready, reason := r.ready && !r.stopping, r.reason
	r.mu.Unlock()
	if !ready {
		http.Error(w, "not ready: "+reason, http.StatusServiceUnavailable)
		return
	}
	fmt.Fprintln(w, "ready")
}

// storeCheckInterval is how often the store's reachability is checked.
const storeCheckInterval = time.Second

// storeWatch is what watchStore needs.
type storeWatch struct {
	store  *keystore.Store
	db     database // for messages
	ready  *readiness
	logger *slog.Logger
	// schemaReady is closed once the schema is known to be migrated.
	schemaReady chan struct{}
}

// watchStore pings the store every second and sets readiness from the
// answer, logging each change once. Until the schema is found migrated it
// also checks that, reporting not ready while migrations are pending (a
// replica may start before the migration job has run: it waits rather
// than crash-looping, and never migrates by itself).
func watchStore(ctx context.Context, w storeWatch) {
	t := time.NewTicker(storeCheckInterval)
	defer t.Stop()
	schemaOK := false
	for {
		pingCtx, cancel := context.WithTimeout(ctx, storeCheckInterval)
		err := w.store.Ping(pingCtx)
		w.ready.reachable.Store(err == nil)
		if err == nil && !schemaOK {
			var pending bool
			if pending, err = w.store.Backend().PendingMigrations(pingCtx); err == nil && pending {
				cancel()
				if w.ready.set(false, "schema not migrated") {
					w.logger.Warn("waiting for the database schema: NOT_SERVING until 'keygate migrate' has run",
						"database", w.store.Backend().Where())
				}
				if !sleep(ctx, t.C) {
					return
				}
				continue
			}
			if err == nil {
				schemaOK = true
				close(w.schemaReady)
			}
		}
		cancel()
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			if w.ready.set(false, "database unreachable") {
				w.logger.Warn("database unreachable: NOT_SERVING; cached keys keep working, others get 503",
					"error", w.db.reachError(err).Error())
			}
		} else if w.ready.set(true, "ok") {
			w.logger.Info("database reachable: SERVING")
		}
		if !sleep(ctx, t.C) {
			return
		}
	}
}

// sleep waits for the next tick; false when ctx ended first.
func sleep(ctx context.Context, tick <-chan time.Time) bool {
	select {
	case <-ctx.Done():
		return false
	case <-tick:
		return true
	}
}

// healthService is grpc-go's health server, whose Watch streams end when
// shutdown starts (after telling the watcher NOT_SERVING): an open Watch,
// as gRPC clients with client-side health checking keep, must not hold
// GracefulStop until the shutdown timeout.
type healthService struct {
	*health.Server
	stopping chan struct{}
	once     sync.Once
}

func newHealthService() *healthService {
	return &healthService{Server: health.NewServer(), stopping: make(chan struct{})}
}

func (h *healthService) shutdown() {
	h.once.Do(func() {
		h.Server.Shutdown()
		close(h.stopping)
	})
}

// Watch is health.Server's Watch on a stream whose context also ends at
// shutdown.
func (h *healthService) Watch(req *healthpb.HealthCheckRequest, stream healthpb.Health_WatchServer) error {
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	go func() {
		select {
		case <-h.stopping:
			// Let the NOT_SERVING update reach the watcher first.
			time.Sleep(50 * time.Millisecond)
			cancel()
		case <-ctx.Done():
		}
	}()
	return h.Server.Watch(req, watchStream{stream, ctx})
}

type watchStream struct {
	healthpb.Health_WatchServer
	ctx context.Context
}

func (w watchStream) Context() context.Context { return w.ctx }
