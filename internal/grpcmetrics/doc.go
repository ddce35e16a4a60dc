// Package grpcmetrics measures a gRPC server's unary calls in the series
// of go-grpc-middleware's Prometheus provider (grpcprom): the same names,
// help, label names and values, and the same series created at zero by
// Initialize, so that dashboards and alerts written for the provider (the
// ones keygate ships name grpc_server_handled_total and
// grpc_server_handling_seconds) read it unchanged.
//
// It exists for speed alone. The provider's interceptor builds a reporter
// and looks up each of its five series by label values on every call
// (hashing the labels each time): 1.0-1.3 µs a call on one core of
// keygate's 2-core machine, more than keygate's whole cached decision
// (BenchmarkUnaryInterceptor, -cpu 1), and 5.8% of keygate's
// CPU on the cached Check path at concurrency 16. Here each method's series
// are resolved once, by Initialize, so that a call costs a map read by
// method name, four counter increments and one histogram observation.
//
// TestSameSeriesAsGRPCProm drives the provider and this package through the
// same calls and requires the same gathered output, so a change in the
// provider's series fails the test.
//
// Streaming calls are not measured, as keygate's server never measured
// them (its provider was installed as a unary interceptor only); their
// series are still created at zero, as the provider's InitializeMetrics
// does.
package grpcmetrics
