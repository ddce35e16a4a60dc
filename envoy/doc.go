// Package envoy holds keygate's reference Envoy configuration, envoy.yaml, and
// the structural test that keeps it loadable and safe.
//
// envoy.yaml is a complete Envoy v3 bootstrap: a listener on :8080 whose HTTP
// connection manager canonicalizes paths, calls keygate through the ext_authz
// filter (gRPC, fail closed, 200 ms), tags every module route with
// context_extensions.module, and forwards allowed requests to the API. It is
// the configuration docker-compose.yaml runs and the one users copy.
//
// envoy-http.yaml is the same edge proxy asking keygate over HTTP (ext_authz
// http_service, keygate's forward-auth endpoint under /ext_authz on its HTTP
// listener): the key and client-sent identity headers are sent to keygate,
// only keygate's identity headers are taken from its answer (and filed as
// metadata for the access log), and there are no module routes, since
// context_extensions are gRPC only. envoy_http_test.go checks it with the
// same loader and shared assertions, and its own for HTTP mode.
//
// No Envoy binary runs where keygate is tested, so envoy_test.go checks the
// file the way Envoy would load it: YAML to JSON, protojson into
// go-control-plane's Bootstrap (unknown fields and bad enum values fail),
// the generated validation rules on the bootstrap and on every embedded
// typed_config (google.protobuf.Any), no deprecated fields; then assertions on
// what validation cannot see: referenced clusters exist, the router is the
// last HTTP filter, the keygate cluster speaks HTTP/2 and has outlier
// detection, ext_authz fails closed within a bounded timeout and sends raw
// headers, routes that skip the check strip identity and key headers, and
// each path reaches the route (and module) it should. Every access-log
// format, in these files and in any other Envoy configuration the
// repository ships, uses only Envoy's documented command operators and never
// writes the query string or a credential. The commented TLS example of the
// keygate cluster is uncommented and checked too. Negative cases mutate the
// files and require each check to fail.
//
// ratelimit_test.go checks deploy/ratelimit (per-key rate limits with
// envoyproxy/ratelimit) the same way, and replays what Envoy's rate limit
// actions make of the dynamic metadata keygate's gRPC adapter really returns
// against what envoyproxy/ratelimit's configuration limits.
//
// The package has no Go API; it exists for the files and their tests.
package envoy
