package main

import (
	"runtime"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/internal/readiness"
	"github.com/keygate/keygate/keystore"
)

// registerStoreMetrics exposes the cache's, the watcher's and the usage
// recorder's counters. They are read when Prometheus scrapes, so the hot
// path only bumps atomic counters.
func registerStoreMetrics(reg prometheus.Registerer, cache *keystore.Cache, capacity int, w *keystore.Watcher, u *keystore.UsageRecorder) {
	counter := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, f)
	}
	gauge := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f)
	}
	cs, ws := cache.Stats(), w.Stats()
	load := func(v interface{ Load() uint64 }) func() float64 { return func() float64 { return float64(v.Load()) } }
	reg.MustRegister(
		counter("keygate_cache_hits_total", "Lookups answered from a fresh cached key.", load(&cs.Hits)),
		counter("keygate_cache_negative_hits_total", "Lookups answered from a cached unknown-key entry.", load(&cs.NegativeHits)),
		counter("keygate_cache_stale_total", "Lookups answered from a cached key older than --cache-fresh (refreshed in the background, or kept while the database is down).", load(&cs.StaleServed)),
		counter("keygate_cache_misses_total", "Lookups that had to ask the database.", load(&cs.Misses)),
		counter("keygate_cache_loads_total", "Database lookups made by the cache (concurrent misses of one key share one).", load(&cs.Loads)),
		counter("keygate_cache_load_errors_total", "Database lookups that failed.", load(&cs.LoadErrors)),
		counter("keygate_cache_invalidations_total", "Cache entries dropped or replaced because a key changed.", load(&cs.Invalidations)),
		gauge("keygate_cache_entries", "Digests held in the cache.", func() float64 { return float64(cache.Len()) }),
		gauge("keygate_cache_capacity", "Most digests the cache holds (--cache-size).", func() float64 { return float64(capacity) }),
		counter("keygate_notifications_total", "Change notifications received.", load(&ws.Notifications)),
		counter("keygate_listener_reconnects_total", "Times the change listener lost its connection.", load(&ws.Reconnects)),
		counter("keygate_cache_resyncs_total", "Full cache resyncs after the listener reconnected.", load(&ws.Resyncs)),
		counter("keygate_poll_changes_total", "Changed keys found by the delta poll (usually already known by notification).", load(&ws.PolledChanges)),
		counter("keygate_poll_errors_total", "Delta polls that failed.", load(&ws.PollErrors)),
		gauge("keygate_listener_up", "1 while the change listener is connected.", func() float64 { return boolGauge(ws.Listening.Load()) }),
		counter("keygate_last_used_written_total", "Last-used times written to the database.", func() float64 {
			_, n, _ := u.Stats()
			return float64(n)
		}),
		counter("keygate_last_used_flushes_total", "Batched last-used flushes (every --last-used-interval).", func() float64 {
			n, _, _ := u.Stats()
			return float64(n)
		}),
		counter("keygate_last_used_write_errors_total", "Batched last-used writes that failed (retried at the next flush).", func() float64 {
			_, _, n := u.Stats()
			return float64(n)
		}),
	)
}

// propagationHistogram is keygate_change_propagation_seconds: how long a
// lifecycle change took from its commit to this replica's cache, by
// notification.
func propagationHistogram(reg prometheus.Registerer) prometheus.Histogram {
	h := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "keygate_change_propagation_seconds",
		Help:    "Time from a key change's commit (database clock) to its notification invalidating this replica's cache (local clock).",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
	})
	reg.MustRegister(h)
	return h
}

// registerDecisionLogMetrics exposes what the decision log's rate limit
// dropped.
func registerDecisionLogMetrics(reg prometheus.Registerer, s *authz.Server) {
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "keygate_decision_log_dropped_total",
		Help: "Decision log lines dropped by --decision-log-rate.",
	}, func() float64 { return float64(s.DecisionLogDropped()) }))
}

// buildInfo is keygate_build_info: 1, labelled with the version, commit and
// Go version of the binary.
func buildInfo() prometheus.Collector {
	revision, _ := buildRevision()
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "keygate_build_info",
		Help:        "Always 1; the labels say which keygate build this is.",
		ConstLabels: prometheus.Labels{"version": version, "revision": revision, "goversion": runtime.Version()},
	})
	g.Set(1)
	return g
}

// registerReadinessMetrics exposes keygate_ready and
// keygate_store_reachable.
func registerReadinessMetrics(reg prometheus.Registerer, ready *readiness.Status, reachable *atomic.Bool) {
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "keygate_ready", Help: "1 while keygate reports SERVING (store reachable, schema migrated, not shutting down)."},
			func() float64 {
				r, _ := ready.Ready()
				return boolGauge(r)
			}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "keygate_store_reachable", Help: "1 while the database answers keygate's pings (every second)."},
			func() float64 { return boolGauge(reachable.Load()) }),
	)
}

func boolGauge(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
