package authz

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics count decisions for Prometheus. Label values come from fixed
// sets (codes and reasons), never from requests, so cardinality is bounded
// and no secret can become a label.
type Metrics struct {
	vec       *prometheus.CounterVec
	decisions [numCodes][numReasons]prometheus.Counter // the pairs that occur, resolved once
	duration  prometheus.Histogram
}

// reasonsOf lists the reasons each outcome can have.
var reasonsOf = [numCodes][]Reason{
	Allow:             {ReasonAllowed},
	MissingKey:        {ReasonMissingKey},
	InvalidKey:        {ReasonMalformed, ReasonSeveralKeys, ReasonUnknown, ReasonRevoked, ReasonExpired},
	InvalidPath:       {ReasonInvalidPath},
	ModuleForbidden:   {ReasonRestricted, ReasonDefaultDeny, ReasonUnknownModule},
	InsufficientScope: {ReasonScope},
	Unavailable:       {ReasonStoreError, ReasonTimeout, ReasonCanceled, ReasonPanic},
}

// NewMetrics registers keygate's decision metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	decisions := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "keygate_decisions_total",
		Help: "Authorization decisions by outcome (the JSON error code, or ok) and reason.",
	}, []string{"code", "reason"})
	duration := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "keygate_decision_duration_seconds",
		Help:    "Time to decide, from request decoded to response built.",
		Buckets: []float64{.00001, .00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25},
	})
	reg.MustRegister(decisions, duration)
	m := &Metrics{vec: decisions, duration: duration}
	for c, reasons := range reasonsOf {
		for _, r := range reasons {
			m.decisions[c][r] = decisions.WithLabelValues(Code(c).String(), r.String())
		}
	}
	return m
}

func (m *Metrics) observe(c Code, r Reason, start time.Time) {
	if m == nil || c >= numCodes || r >= numReasons {
		return
	}
	if counter := m.decisions[c][r]; counter != nil {
		counter.Inc()
	} else {
		m.vec.WithLabelValues(c.String(), r.String()).Inc()
	}
	m.duration.Observe(time.Since(start).Seconds())
}
