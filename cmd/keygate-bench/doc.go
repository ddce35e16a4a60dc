// Command keygate-bench measures keygate over gRPC on loopback against
// servers that do the least possible work, with the same load, so that the
// ratio between them says what keygate costs:
//
//   - cached path: keygate serve, every seeded key in its cache, against an
//     empty Check server (grpc-go defaults, answers OK without looking);
//
//   - uncached path: keygate serve with --cache-size 1, so that nearly every
//     Check misses the cache and queries PostgreSQL, against a Check server
//     that makes one raw pgx point query by digest (keygate's own query,
//     postgres.LookupSQL, on a pgxpool of the same size, --pool-size, 10
//     by default like keygate's) and answers OK.
//
//   - with --grpc-reference identity, both gRPC references allow with
//     keygate's own answer for a seeded key (the identity headers set and
//     removed, and the dynamic metadata; the key id's value aside, the
//     benchmark checks that keygate answers exactly that) instead of a
//     bare status OK: the answer is what Envoy needs, and parsing it costs
//     the load generator, on the same cores, more than an empty one, so
//     this separates what keygate does from what its answer costs gRPC and
//     the client;
//
//   - with --store sqlite, keygate serves from a SQLite file (the embedded
//     store) made in a temporary directory, and the uncached path's
//     reference makes one raw SQLite point query per Check (database/sql
//     with modernc.org/sqlite, a statement prepared once, as many
//     connections as keygate's SQLite readers) on the same file;
//
//   - forward-auth (--mode forward-auth, not part of all): keygate's HTTP
//     /auth on --http-addr, every key cached, asked as Caddy asks it (GET
//     /auth with X-Forwarded-Method, X-Forwarded-Uri and the client's
//     headers, the key in X-Api-Key; each worker over an HTTP/1.1
//     keep-alive connection of its own), against an empty net/http handler
//     that answers 200 on a listener with keygate's settings
//     (forwardauth.NewServer: the same header and idle keep-alive
//     timeouts; "keygate-bench http-baseline-server"); with --http-reference identity the handler
//     answers with the fields of keygate's allow (eight, values included),
//     which separates what keygate does from what its answer costs
//     net/http and the client.
//
// A cache of one key is the honest way to miss: --cache-fresh 1ns would
// measure stale hits refreshed in the background, and a fresh key per
// request would need seeding duration x rate keys. Each miss also pays the
// cache's insert and eviction, as misses do in a full cache. keygate fails
// closed (503) when a query outlives --lookup-timeout; the pgx server
// waits as long as it takes.
//
// Run it from the module root:
//
//	go run ./cmd/keygate-bench                  # both paths, about 2 minutes
//	go run ./cmd/keygate-bench --mode cached --concurrency 16 --rounds 8
//	go run ./cmd/keygate-bench --gogc 400       # the same GC settings for every server
//	go run ./cmd/keygate-bench --store sqlite   # the embedded store
//	go run ./cmd/keygate-bench --grpc-reference identity
//
// It builds keygate (or takes --keygate-bin), starts a throwaway PostgreSQL
// cluster (or uses --database-url, where it adds --keys keys to account
// keygate-bench), migrates and seeds it through keystore.Store.Create, and
// starts every server as its own process so that its CPU can be read from
// /proc. The reference servers are this binary re-executed as
// "keygate-bench baseline-server" and "keygate-bench pgx-server".
//
// The load is closed-loop and in-process: at each concurrency C, C workers
// each send a Check, wait for the answer, and send the next, over
// min(C, --conns) HTTP/2 connections. --conns defaults to the number of
// CPUs because Envoy opens one connection per worker thread and runs one
// worker per CPU by default. Each Check is a CheckRequest as Envoy's
// ext_authz filter builds it (12 request headers, addresses, a timestamp)
// for GET /api/v1/projects/42/builds?page=2 with a seeded key in
// x-api-key, sent with Envoy's default 200ms deadline; each worker cycles
// over the keys from its own offset. Every answer must be an allow (status
// code 0 and, from keygate, an OkResponse): anything else is counted and
// printed as an error, since a benchmark that measures denials by mistake
// is worthless.
//
// Each run warms up for --warmup, then measures for --duration: requests
// completed in the window, their p50/p99 latency (exact, from every
// sample), and the CPU the server process used in the window divided by the
// requests (cpu/decision: utime+stime from /proc/PID/stat). For servers
// that query the database it also prints the CPU of their PostgreSQL
// backends per request (found by application_name in pg_stat_activity),
// when the database runs on this machine. The servers stay up and
// connected between runs, and their runs alternate, ABBA, over --rounds
// rounds: many short runs (default 4 x 2s) cancel the drift of a shared
// machine better than a few long ones. The table shows the aggregate of
// the rounds and their spread ((max-min)/mean of the per-round rates).
// Below it, the paired ratios: each round's two runs are back to back, so
// the ratio of keygate's rate (and CPU per decision) to the reference's
// within a round carries little of the drift between rounds; the median
// of those per-round ratios is printed with its 95% confidence interval,
// distribution-free, as benchstat computes it (golang.org/x/perf/benchmath;
// it needs 6 rounds or more, and its level is at least 95%: 96.9% with 6
// rounds, 95.1% with 16). Rounds alternate which server runs first, so an
// even number of rounds balances the order. A round where a server
// answered nothing is left out of the paired ratios, and the line says so. A goal such as "at least 0.95 of the
// reference" is met when the interval's low end is at or above it, and
// missed when its high end is below it.
// With the defaults, --mode all takes about two minutes.
//
// The load generator shares the machine with the servers: its own CPU is
// printed (gen-cpu, in cores), and so is the CPU that other processes used
// during the runs (other-cpu: the machine's busy time from /proc/stat,
// sampled per tick, less the server, the generator and the backends). When
// other processes took a noticeable share the table says so: the rates are
// then disturbed, cpu/decision much less.
//
// GC settings move such figures a lot (GOGC alone by up to 2.3x on a
// 2-core machine), so each server's effective GOGC, GOMEMLIMIT and
// GOMAXPROCS are printed: the reference servers report them from
// runtime/metrics, keygate through its /metrics endpoint (and its
// "keygate serving" log line, where it names its own defaults). --gogc and
// --gomemlimit set GOGC and GOMEMLIMIT for every server, never for one
// only. KEYGATE_* variables are removed from keygate's environment so that
// only the flags the benchmark passes (and --keygate-arg) configure it.
//
// keygate's cache counters and its refusals (keygate_decisions_total other
// than ok), read from /metrics before and after each run, show that the
// cached path hit the cache, that the uncached path missed it, and why any
// Check was refused.
//
// Every child process, the cluster and the temporary directory are removed
// on exit, including on Ctrl-C.
package main
