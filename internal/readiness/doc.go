// Package readiness is whether a server can answer, told the three ways
// load balancers and orchestrators ask: gRPC health (grpc.health.v1.Health
// Check, List and Watch), an HTTP readiness endpoint (/readyz), and a
// liveness endpoint (/healthz) that says only that the process answers.
//
// A Status is a small state machine: it starts not ready ("starting"),
// moves between ready and not ready (with a reason) as a Probe finds its
// dependencies, and ends in shutting down, which is final. Every way of
// asking reads that one state, so gRPC health and /readyz never disagree.
//
// At shutdown every Health/Watch stream is sent NOT_SERVING and then ends:
// a watcher hears the change before its stream closes (the order holds by
// construction, not by a pause), and an open Watch, which gRPC clients
// with client-side health checking keep, does not hold a graceful stop.
//
// # Errors
//
// Nothing here fails once built. Health Check and Watch answer NotFound
// and SERVICE_UNKNOWN for a service the Status was not told of; a Watch
// stream ends with Unavailable at shutdown and Canceled when its client
// leaves. A Probe's error is the reason /readyz gives (a *NotReady says
// it, and what to log, itself).
package readiness
