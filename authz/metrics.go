package authz

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics count decisions for Prometheus. Label values come from fixed
// sets (codes and reasons), never from requests, so cardinality is bounded
// and no secret can become a label.
type Metrics struct {
	decisions [numReasons][2]prometheus.Counter // per reason (a reason has one outcome) and dry run, resolved once
	duration  prometheus.Histogram
}

// NewMetrics registers keygate's decision metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	decisions := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "keygate_decisions_total",
		Help: "Authorization decisions by outcome (the JSON error code, or ok), reason, and whether the denial was a dry run (let through).",
	}, []string{"code", "reason", "dry_run"})
	duration := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "keygate_decision_duration_seconds",
		Help:    "Time to decide, from request decoded to response built.",
		Buckets: []float64{.00001, .00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25},
	})
	reg.MustRegister(decisions, duration)
	m := &Metrics{duration: duration}
	for r := range numReasons {
		m.decisions[r][0] = decisions.WithLabelValues(r.Outcome().String(), r.String(), "false")
		if r.Outcome() != Allow {
			m.decisions[r][1] = decisions.WithLabelValues(r.Outcome().String(), r.String(), "true")
		}
	}
	return m
}

// observe counts a decision by its reason; the outcome label is the
// reason's (decisions are built from their reason), so the two agree.
func (m *Metrics) observe(r Reason, dryRun bool, start time.Time) {
	if m == nil || r >= numReasons {
		return
	}
	if dryRun && r.Outcome() != Allow {
		m.decisions[r][1].Inc()
	} else {
		m.decisions[r][0].Inc()
	}
	m.duration.Observe(time.Since(start).Seconds())
}
