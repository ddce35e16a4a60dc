package main

import (
	"context"
	"encoding/hex"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/storetest"
	"github.com/keygate/keygate/internal/waittest"
	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
)

// otlpReceiver is an OTLP/gRPC trace collector in the test process: it
// keeps every span exported to it and counts the connections it accepted.
type otlpReceiver struct {
	collectortrace.UnimplementedTraceServiceServer
	addr  string
	conns atomic.Int64
	mu    sync.Mutex
	spans []*tracepb.Span
}

type countingListener struct {
	net.Listener
	n *atomic.Int64
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

func newOTLPReceiver(t *testing.T) *otlpReceiver {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &otlpReceiver{addr: lis.Addr().String()}
	g := grpc.NewServer()
	collectortrace.RegisterTraceServiceServer(g, r)
	go g.Serve(countingListener{lis, &r.conns})
	t.Cleanup(g.Stop)
	return r
}

func (r *otlpReceiver) Export(_ context.Context, req *collectortrace.ExportTraceServiceRequest) (*collectortrace.ExportTraceServiceResponse, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rs := range req.GetResourceSpans() {
		for _, ss := range rs.GetScopeSpans() {
			r.spans = append(r.spans, ss.GetSpans()...)
		}
	}
	return &collectortrace.ExportTraceServiceResponse{}, nil
}

func (r *otlpReceiver) named(name string) []*tracepb.Span {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*tracepb.Span
	for _, s := range r.spans {
		if s.GetName() == name {
			out = append(out, s)
		}
	}
	return out
}

func attrs(s *tracepb.Span) map[string]string {
	out := map[string]string{}
	for _, kv := range s.GetAttributes() {
		out[kv.GetKey()] = anyValue(kv.GetValue())
	}
	return out
}

func anyValue(v *commonpb.AnyValue) string {
	switch x := v.GetValue().(type) {
	case *commonpb.AnyValue_StringValue:
		return x.StringValue
	case *commonpb.AnyValue_BoolValue:
		if x.BoolValue {
			return "true"
		}
		return "false"
	}
	return v.String()
}

func TestTracingToOTLP(t *testing.T) {
	db := storetest.NewDatabase(t)
	_, secret := createKey(t, db)
	recv := newOTLPReceiver(t)
	otel := map[string]string{
		"OTEL_EXPORTER_OTLP_ENDPOINT": "http://" + recv.addr,
		"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
		"OTEL_BSP_SCHEDULE_DELAY":     "50",
		"OTEL_SERVICE_NAME":           "keygate-test",
	}
	for k, v := range otel { // the OpenTelemetry SDK reads the process's environment
		t.Setenv(k, v)
	}
	inst := startServeEnv(t, db, otel)
	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	headers := map[string]string{"x-api-key": secret, "traceparent": "00-" + traceID + "-00f067aa0ba902b7-01", "x-request-id": "trace-me"}
	inst.check(t, checkRequest("GET", "/api/v1/projects/1?token=hunter2", headers, ""))
	inst.check(t, checkRequest("GET", "/api/v1/users/1?token=hunter2", headers, ""))
	waittest.Until(t, 10*time.Second, "two decision spans at the receiver", func() bool { return len(recv.named("keygate.decide")) == 2 })

	outcomes := map[string]bool{}
	for _, s := range recv.named("keygate.decide") {
		if hex.EncodeToString(s.GetTraceId()) != traceID || hex.EncodeToString(s.GetParentSpanId()) != "00f067aa0ba902b7" {
			t.Errorf("decision span not in the request's trace: trace %x parent %x", s.GetTraceId(), s.GetParentSpanId())
		}
		a := attrs(s)
		outcomes[a["keygate.outcome"]] = true
		if a["keygate.key_id"] == "" || a["keygate.account_id"] != "acme" || a["url.path"] == "" || a["keygate.request_id"] != "trace-me" {
			t.Errorf("decision span attributes %v", a)
		}
		if len(s.GetLinks()) == 0 {
			t.Errorf("the decision span does not link the gRPC server span")
		}
	}
	if !outcomes["ok"] || !outcomes["module_forbidden"] {
		t.Errorf("outcomes in spans %v, want ok and module_forbidden", outcomes)
	}
	waittest.Until(t, 5*time.Second, "the store lookup's span", func() bool { return len(recv.named("keystore.cache.load")) > 0 })
	waittest.Until(t, 5*time.Second, "the gRPC server span", func() bool {
		return len(recv.named("envoy.service.auth.v3.Authorization/Check")) >= 2
	})
	recv.mu.Lock()
	for _, s := range recv.spans {
		text := s.String()
		if strings.Contains(text, "hunter2") || strings.Contains(text, secret[3:]) {
			t.Errorf("span %s holds a query string or the key: %s", s.GetName(), text)
		}
	}
	recv.mu.Unlock()

	// OTEL_TRACES_EXPORTER=none, or no endpoint: tracing is off, and
	// nothing dials the receiver.
	quiet := newOTLPReceiver(t)
	inst.stop() // one serving process at a time: the store may be an SQLite file
	for _, env := range []map[string]string{
		{"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://" + quiet.addr},
		{"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
	} {
		for k, v := range env {
			t.Setenv(k, v)
		}
		off := startServeEnv(t, db, env)
		off.check(t, checkRequest("GET", "/api/v1/projects/1", headers, ""))
		off.stop()
		if strings.Contains(off.logs.String(), "tracing on") {
			t.Errorf("tracing on with %v", env)
		}
	}
	if n := quiet.conns.Load(); n != 0 {
		t.Fatalf("%d connections to the receiver with tracing off", n)
	}
}
