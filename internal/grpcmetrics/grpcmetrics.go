package grpcmetrics

import (
	"context"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"
)

// Metrics is a prometheus.Collector of a gRPC server's calls, and the unary
// interceptor that counts them.
type Metrics struct {
	started, handled, received, sent *prometheus.CounterVec
	seconds                          *prometheus.HistogramVec
	// unary holds each registered unary method's series by full method
	// name ("/package.Service/Method"). Initialize writes it before the
	// server serves; calls only read it.
	unary map[string]*series
}

// numCodes is the number of gRPC's codes (OK to Unauthenticated): the
// codes whose handled series Initialize creates, as the provider's does.
const numCodes = int(codes.Unauthenticated) + 1

// series are one method's series, resolved.
type series struct {
	service, method         string
	started, received, sent prometheus.Counter
	seconds                 prometheus.Observer
	handled                 [numCodes]prometheus.Counter // by code
}

// New returns Metrics whose handling-time histogram has the given buckets
// (in seconds). Register it, then call Initialize once the server's
// services are registered.
func New(buckets []float64) *Metrics {
	labels := []string{"grpc_type", "grpc_service", "grpc_method"}
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
	}
	return &Metrics{
		started:  counter("grpc_server_started_total", "Total number of RPCs started on the server.", labels...),
		handled:  counter("grpc_server_handled_total", "Total number of RPCs completed on the server, regardless of success or failure.", append(labels, "grpc_code")...),
		received: counter("grpc_server_msg_received_total", "Total number of RPC stream messages received on the server.", labels...),
		sent:     counter("grpc_server_msg_sent_total", "Total number of gRPC stream messages sent by the server.", labels...),
		seconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "grpc_server_handling_seconds",
			Help:    "Histogram of response latency (seconds) of gRPC that had been application-level handled by the server.",
			Buckets: buckets,
		}, labels),
		unary: map[string]*series{},
	}
}

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, c := range m.vecs() {
		c.Describe(ch)
	}
}

// Collect implements prometheus.Collector.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	for _, c := range m.vecs() {
		c.Collect(ch)
	}
}

func (m *Metrics) vecs() []prometheus.Collector {
	return []prometheus.Collector{m.started, m.handled, m.received, m.sent, m.seconds}
}

// Initialize creates the series of every method s serves, at zero (every
// code's handled series included), and resolves the unary ones for the
// interceptor. Call it before the server serves: calls read what it
// writes unguarded.
func (m *Metrics) Initialize(server reflection.ServiceInfoProvider) {
	for service, info := range server.GetServiceInfo() {
		for _, mi := range info.Methods {
			typ := methodType(mi)
			resolved := m.resolve(typ, service, mi.Name)
			if typ == unaryType {
				m.unary["/"+service+"/"+mi.Name] = resolved
			}
		}
	}
}

// The provider's grpc_type values.
const (
	unaryType        = "unary"
	clientStreamType = "client_stream"
	serverStreamType = "server_stream"
	bidiStreamType   = "bidi_stream"
)

func methodType(mi grpc.MethodInfo) string {
	switch {
	case mi.IsClientStream && mi.IsServerStream:
		return bidiStreamType
	case mi.IsClientStream:
		return clientStreamType
	case mi.IsServerStream:
		return serverStreamType
	}
	return unaryType
}

// resolve looks a method's series up, creating them at zero.
func (m *Metrics) resolve(typ, service, method string) *series {
	s := &series{
		service:  service,
		method:   method,
		started:  m.started.WithLabelValues(typ, service, method),
		received: m.received.WithLabelValues(typ, service, method),
		sent:     m.sent.WithLabelValues(typ, service, method),
		seconds:  m.seconds.WithLabelValues(typ, service, method),
	}
	for c := range s.handled {
		s.handled[c] = m.handled.WithLabelValues(typ, service, method, codes.Code(c).String())
	}
	return s
}

// UnaryServerInterceptor counts unary calls as the provider's does: the
// call started and its message received, the handler, its answer sent
// (when the handler returned no error), and the call handled, with its
// code and its duration.
func (m *Metrics) UnaryServerInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		s := m.unary[info.FullMethod]
		if s == nil {
			return m.unregistered(ctx, req, info.FullMethod, handler)
		}
		start := time.Now()
		s.started.Inc()
		s.received.Inc()
		resp, err := handler(ctx, req)
		if err == nil {
			s.sent.Inc()
		}
		if c := code(err); int(c) < numCodes {
			s.handled[c].Inc()
		} else {
			m.handled.WithLabelValues(unaryType, s.service, s.method, c.String()).Inc()
		}
		s.seconds.Observe(time.Since(start).Seconds())
		return resp, err
	}
}

// unregistered counts a call of a method Initialize did not see, looking
// each series up as the provider does (a grpc.Server passes such a call to
// no interceptor unless it has an unknown-service handler).
func (m *Metrics) unregistered(ctx context.Context, req any, fullMethod string, handler grpc.UnaryHandler) (any, error) {
	start := time.Now()
	service, method := splitMethod(fullMethod)
	m.started.WithLabelValues(unaryType, service, method).Inc()
	m.received.WithLabelValues(unaryType, service, method).Inc()
	resp, err := handler(ctx, req)
	if err == nil {
		m.sent.WithLabelValues(unaryType, service, method).Inc()
	}
	m.handled.WithLabelValues(unaryType, service, method, code(err).String()).Inc()
	m.seconds.WithLabelValues(unaryType, service, method).Observe(time.Since(start).Seconds())
	return resp, err
}

// code is err's code as the provider reads it: a status error's code, a
// context error's, Unknown otherwise (OK for nil).
func code(err error) codes.Code {
	st, ok := status.FromError(err)
	if !ok {
		st = status.FromContextError(err)
	}
	return st.Code()
}

// splitMethod splits "/package.Service/Method" as the provider does.
func splitMethod(fullMethod string) (service, method string) {
	if service, method, ok := strings.Cut(strings.TrimPrefix(fullMethod, "/"), "/"); ok {
		return service, method
	}
	return "unknown", "unknown"
}
