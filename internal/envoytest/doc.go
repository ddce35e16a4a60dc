// Package envoytest builds CheckRequests the way Envoy's ext_authz filter
// does in gRPC mode, for tests and benchmarks: lower-case header keys
// including the pseudo-headers, the request target as received (query
// included, nothing decoded), the request attributes, the peers, and the
// route's context extensions.
package envoytest
