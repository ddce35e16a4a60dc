package main

import (
	"context"
	"fmt"
	"log/slog"

	"go.opentelemetry.io/contrib/exporters/autoexport"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
)

// tracing is OpenTelemetry tracing as the standard OTEL_* variables
// configure it, or nothing (tp nil) when they switch it off.
type tracing struct {
	tp *sdktrace.TracerProvider
}

// tracingOn reports whether the OTEL_* variables ask for traces: an
// exporter other than "none", and for OTLP (the default) an endpoint.
// Without one keygate does not guess localhost:4317 and never dials.
func tracingOn(getenv func(string) string) bool {
	switch getenv("OTEL_TRACES_EXPORTER") {
	case "none":
		return false
	case "console":
		return true
	}
	return getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != ""
}

// newTracing builds the tracer provider: the exporter from
// OTEL_TRACES_EXPORTER and OTEL_EXPORTER_OTLP_* (OTLP over gRPC or HTTP),
// the sampler from OTEL_TRACES_SAMPLER, the resource from
// OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES (service.name defaults to
// keygate). It dials nothing until the first batch is exported.
func newTracing(ctx context.Context, getenv func(string) string, logger *slog.Logger) (*tracing, error) {
	if !tracingOn(getenv) {
		return &tracing{}, nil
	}
	exporter, err := autoexport.NewSpanExporter(ctx)
	if err != nil {
		return nil, usageError("OTEL_TRACES_EXPORTER: %v", err)
	}
	res, err := resource.Merge(
		resource.NewSchemaless(semconv.ServiceName("keygate"), semconv.ServiceVersion(version)),
		resource.Environment(), // OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES
	)
	if err != nil {
		return nil, usageError("OTEL_RESOURCE_ATTRIBUTES: %v", err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exporter), sdktrace.WithResource(res))
	logger.Info("tracing on", "exporter", fmt.Sprintf("%T", exporter))
	return &tracing{tp: tp}, nil
}

// propagator reads W3C trace context (traceparent, tracestate).
var propagator = propagation.TraceContext{}

// shutdown flushes the spans still buffered.
func (t *tracing) shutdown(ctx context.Context, logger *slog.Logger) {
	if t.tp == nil {
		return
	}
	if err := t.tp.Shutdown(ctx); err != nil {
		logger.Warn("flushing traces at shutdown failed", "error", err)
	}
}
