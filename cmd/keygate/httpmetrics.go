package main

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/trace"
)

// httpInstruments measure the forward-auth and admin endpoints: request
// counts and durations by handler (promhttp), and, with tracing on, a
// server span per request (otelhttp; its attributes hold the URL path,
// never the query).
type httpInstruments struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	tracer   trace.TracerProvider // nil: no spans
}

func newHTTPInstruments(reg prometheus.Registerer, tp trace.TracerProvider) *httpInstruments {
	i := &httpInstruments{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keygate_http_requests_total",
			Help: "Requests to keygate's HTTP endpoints, by handler (forward_auth, admin), status code and method.",
		}, []string{"handler", "code", "method"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "keygate_http_request_duration_seconds",
			Help:    "Time to answer keygate's HTTP endpoints, by handler.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1},
		}, []string{"handler"}),
		tracer: tp,
	}
	reg.MustRegister(i.requests, i.duration)
	return i
}

// wrap instruments h as the handler called name.
func (i *httpInstruments) wrap(name string, h http.Handler) http.Handler {
	labels := prometheus.Labels{"handler": name}
	h = promhttp.InstrumentHandlerDuration(i.duration.MustCurryWith(labels), promhttp.InstrumentHandlerCounter(i.requests.MustCurryWith(labels), h))
	if i.tracer != nil {
		h = otelhttp.NewHandler(h, name, otelhttp.WithTracerProvider(i.tracer), otelhttp.WithPropagators(propagator))
	}
	return h
}
