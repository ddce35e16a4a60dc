package main

import (
	"net/http"
	"strconv"
	"sync"
	"time"

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

// handlingBuckets are the bounds, in seconds, of the transports' handling
// time histograms: keygate_http_request_duration_seconds and
// grpc_server_handling_seconds.
var handlingBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1}

func newHTTPInstruments(reg prometheus.Registerer, tp trace.TracerProvider) *httpInstruments {
	i := &httpInstruments{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keygate_http_requests_total",
			Help: "Requests to keygate's HTTP endpoints, by handler (forward_auth, admin), status code and method.",
		}, []string{"handler", "code", "method"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "keygate_http_request_duration_seconds",
			Help:    "Time to answer keygate's HTTP endpoints, by handler.",
			Buckets: handlingBuckets,
		}, []string{"handler"}),
		tracer: tp,
	}
	reg.MustRegister(i.requests, i.duration)
	return i
}

// initialise makes the series of handler name exist from the start, at
// zero: its duration, and its count of successful GETs, so that a fresh
// keygate's panels and rules see zeros, not an absent series.
func (i *httpInstruments) initialise(name string) {
	i.duration.WithLabelValues(name)
	i.requests.WithLabelValues(name, strconv.Itoa(http.StatusOK), "get")
}

// wrap instruments h as the handler called name: metrics by promhttp's
// middleware, and spans.
func (i *httpInstruments) wrap(name string, h http.Handler) http.Handler {
	i.initialise(name)
	labels := prometheus.Labels{"handler": name}
	return i.traced(name, promhttp.InstrumentHandlerDuration(i.duration.MustCurryWith(labels),
		promhttp.InstrumentHandlerCounter(i.requests.MustCurryWith(labels), h)))
}

// traced adds a server span per request to h when tracing is on.
func (i *httpInstruments) traced(name string, h http.Handler) http.Handler {
	if i.tracer == nil {
		return h
	}
	return otelhttp.NewHandler(h, name, otelhttp.WithTracerProvider(i.tracer), otelhttp.WithPropagators(propagator))
}

// observer is the same metrics for a handler that reports its own
// responses (forward-auth, whose hot path promhttp's middleware would
// cost four allocations a request): the counters are resolved once per
// status and method, and looked up without allocating.
func (i *httpInstruments) observer(name string) func(method string, status int, took time.Duration) {
	i.initialise(name)
	duration := i.duration.WithLabelValues(name)
	var counters sync.Map // statusMethod → prometheus.Counter
	return func(method string, status int, took time.Duration) {
		key := statusMethod{status, metricMethod(method)}
		c, ok := counters.Load(key)
		if !ok {
			c, _ = counters.LoadOrStore(key, i.requests.WithLabelValues(name, strconv.Itoa(status), key.method))
		}
		c.(prometheus.Counter).Inc()
		duration.Observe(took.Seconds())
	}
}

type statusMethod struct {
	status int
	method string
}

// metricMethod is the method label, as promhttp spells it (lower case),
// from a fixed set so that a client cannot mint label values.
func metricMethod(m string) string {
	switch m {
	case "GET":
		return "get"
	case "HEAD":
		return "head"
	case "POST":
		return "post"
	case "PUT":
		return "put"
	case "PATCH":
		return "patch"
	case "DELETE":
		return "delete"
	case "OPTIONS":
		return "options"
	}
	return "other"
}
