// Package test holds keygate's end-to-end tests: they build the real
// keygate binary (and the grpcurl client pinned in go.mod) once, run
// `keygate migrate`, `keygate keys …` and `keygate serve` as separate
// processes against a real PostgreSQL, and call the servers the way Envoy
// does, over gRPC with CheckRequests shaped like Envoy's ext_authz filter
// sends them.
//
// The tests hold keygate to the contract of DESIGN.md sections 4 to 6
// from the outside: a smoke test with grpcurl through server reflection,
// hostile path spellings, revocation and rotation reaching every replica
// (also when a notification is lost, and after the change listeners lose
// their connections), a database outage under load, last-used times
// flushed by a graceful shutdown, and a graceful shutdown with a gRPC
// health watcher connected. TestNginx and TestCaddy run the real proxies
// (Debian's packages) from the shipped deploy/nginx and deploy/caddy
// configurations in front of keygate's HTTP forward-auth endpoint and a Go
// upstream that records what reaches it: the decision table, identity
// headers from keygate only, the hostile paths, and a stopped database,
// as a client sees them. Each test logs the figures it measures
// (t.Logf; run with -v to see them).
//
// The database comes from internal/pgtest: DATABASE_URL when it is set,
// otherwise a throwaway cluster from the local PostgreSQL binaries. The
// outage test always starts a cluster of its own, which it stops and
// starts. Run them with
//
//	go test -race ./test
//
// The package has no non-test code.
package test
