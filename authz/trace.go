package authz

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// traceContext reads the W3C trace context of the request being decided.
var traceContext propagation.TraceContext

// requestCarrier is a Request's trace headers as a propagation carrier
// (copies: a pointer to the Request would make every Request escape).
type requestCarrier struct{ traceParent, traceState string }

func (c requestCarrier) Get(key string) string {
	switch key {
	case "traceparent":
		return c.traceParent
	case "tracestate":
		return c.traceState
	}
	return ""
}

func (requestCarrier) Set(string, string) {}

func (requestCarrier) Keys() []string { return []string{"traceparent", "tracestate"} }

// startSpan starts the decision's span. Its parent is the trace context
// of the request being authorized, when it has one, so that the span sits
// in the caller's trace; the transport's own span (a gRPC server span, say)
// is then linked. Without one, the transport's span is the parent.
func (s *Server) startSpan(ctx context.Context, r *Request) (context.Context, trace.Span) {
	opts := []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindInternal)}
	if r.traceParent != "" {
		if sc := trace.SpanContextFromContext(traceContext.Extract(context.Background(), requestCarrier{r.traceParent, r.traceState})); sc.IsValid() {
			if transport := trace.SpanContextFromContext(ctx); transport.IsValid() {
				opts = append(opts, trace.WithLinks(trace.Link{SpanContext: transport}))
			}
			ctx = trace.ContextWithRemoteSpanContext(ctx, sc)
		}
	}
	return s.tracer.Start(ctx, "keygate.decide", opts...)
}

// endSpan records the decision on its span and ends it. Neither the key
// nor the query string ever becomes an attribute.
func endSpan(span trace.Span, r *Request, d *Decision, fromCache bool) {
	attrs := []attribute.KeyValue{
		attribute.String("keygate.outcome", d.Outcome.String()),
		attribute.String("keygate.reason", d.Reason.String()),
		attribute.String("keygate.module", d.Module),
		attribute.Bool("keygate.dry_run", d.DryRun),
		attribute.Bool("keygate.cache_hit", fromCache),
		attribute.String("http.request.method", r.Method),
		attribute.String("url.path", loggablePath(r.Path)),
	}
	if k := loggedKey(d); k != nil { // a refused key is named, as in the decision log
		attrs = append(attrs, attribute.String("keygate.key_id", k.ID()), attribute.String("keygate.account_id", k.AccountID()))
	}
	if r.requestID != "" {
		attrs = append(attrs, attribute.String("keygate.request_id", r.requestID))
	}
	span.SetAttributes(attrs...)
	if d.Outcome == Unavailable {
		span.SetStatus(codes.Error, d.Reason.String())
	}
	span.End()
}
