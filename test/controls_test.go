//go:build unix

package test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/jackc/pgx/v5"
	"google.golang.org/grpc/codes"

	"github.com/keygate/keygate/internal/pgtest"
	"github.com/keygate/keygate/internal/storetest"
	"github.com/keygate/keygate/keystore"
)

// TestReplicasSeeDisableEnable runs three replicas on one database and
// measures how long `keygate keys disable` and `keys enable` take to reach
// each of them: a disabled key is refused (401) and an enabled one allowed
// again on every replica within the revocation bound (DESIGN.md §6).
func TestReplicasSeeDisableEnable(t *testing.T) {
	const (
		trials = 8
		bound  = time.Second // DESIGN.md §6: p99 across replicas
	)
	db := pgtest.NewDatabase(t) // replicas on one database: PostgreSQL
	replicas := make([]*server, 3)
	for i := range replicas {
		replicas[i] = startServer(t, db)
	}
	var disabled, enabled []time.Duration
	for trial := range trials {
		k := createKey(t, db, "acme", fmt.Sprintf("trial %d", trial))
		req := keyCheck(k.Secret, "/api/v1/projects")
		for _, r := range replicas {
			cacheKey(t, r, req)
		}
		cli(t, db, "keys", "disable", k.ID)
		returned := time.Now()
		for i, d := range waitSwitch(replicas, req, codes.OK, codes.Unauthenticated, 5*time.Second) {
			if d.err != nil {
				t.Fatalf("trial %d: disabled key on replica %d: %v", trial, i, d.err)
			}
			disabled = append(disabled, d.at.Sub(returned))
		}
		cli(t, db, "keys", "enable", k.ID)
		returned = time.Now()
		for i, d := range waitSwitch(replicas, req, codes.Unauthenticated, codes.OK, 5*time.Second) {
			if d.err != nil {
				t.Fatalf("trial %d: enabled key on replica %d: %v", trial, i, d.err)
			}
			enabled = append(enabled, d.at.Sub(returned))
		}
	}
	for _, m := range []struct {
		what string
		ds   []time.Duration
	}{{"keys disable → refused", disabled}, {"keys enable → allowed", enabled}} {
		p50, p99 := percentile(m.ds, 50), percentile(m.ds, 99)
		t.Logf("%s on every replica, %d samples, from the CLI returning: p50 %s, p99 %s, max %s",
			m.what, len(m.ds), ms(p50), ms(p99), ms(percentile(m.ds, 100)))
		if p99 > bound {
			t.Errorf("%s: p99 across replicas %v, want ≤ %v", m.what, p99, bound)
		}
	}
	// The refusals were counted with their own reason.
	if n := replicas[0].metric(t, `keygate_decisions_total{code="invalid_api_key",dry_run="false",reason="disabled"}`); n < 1 {
		t.Errorf("keygate_decisions_total{reason=\"disabled\"} = %v", n)
	}
}

// TestSourceRestrictions holds a key restricted to an IPv4 and an IPv6
// prefix (`keys create --allow-cidr`) to its sources in both modes: in
// gRPC mode Envoy's source.address, or with --xff-trusted-hops the
// X-Forwarded-For entry Envoy trusts; over HTTP forward-auth the peer, or
// what a --trusted-proxies peer (nginx here, the real one) forwards.
func TestSourceRestrictions(t *testing.T) {
	db := pgtest.NewDatabase(t) // replicas on one database: PostgreSQL
	k := createKey(t, db, "acme", "office", "--allow-cidr", "198.51.100.0/24", "--allow-cidr", "2001:db8::/32")
	plain := startServer(t, db) // trusts no X-Forwarded-For at all
	kg := startServer(t, db, "--xff-trusted-hops", "1", "--trusted-proxies", "127.0.0.1")

	grpc := func(peer, xff string) *authv3.CheckRequest {
		req := envoyCheck("GET", "/api/v1/projects", map[string]string{"x-api-key": k.Secret, "x-forwarded-for": xff}, nil)
		req.Attributes.Source.Address.GetSocketAddress().Address = peer
		return req
	}
	for _, c := range []struct {
		name string
		srv  *server
		req  *authv3.CheckRequest
		want codes.Code
	}{
		{"IPv4 peer inside", plain, grpc("198.51.100.7", ""), codes.OK},
		{"IPv6 peer inside", plain, grpc("2001:db8::7", ""), codes.OK},
		{"IPv4 peer outside", plain, grpc("203.0.113.9", ""), codes.PermissionDenied},
		{"IPv6 peer outside", plain, grpc("2001:db9::1", ""), codes.PermissionDenied},
		{"X-Forwarded-For not trusted", plain, grpc("10.0.3.17", "198.51.100.7"), codes.PermissionDenied},
		{"one trusted hop, IPv4 client", kg, grpc("10.0.3.17", "198.51.100.7, 10.0.0.2"), codes.OK},
		{"one trusted hop, IPv6 client", kg, grpc("10.0.3.17", "2001:db8::7, 10.0.0.2"), codes.OK},
		{"one trusted hop, client outside", kg, grpc("10.0.3.17", "203.0.113.9, 10.0.0.2"), codes.PermissionDenied},
		{"one trusted hop, forged entry to its left", kg, grpc("10.0.3.17", "198.51.100.7, 203.0.113.9, 10.0.0.2"), codes.PermissionDenied},
		{"no X-Forwarded-For: Envoy's peer", kg, grpc("198.51.100.7", ""), codes.OK},
	} {
		code, resp := c.srv.mustCheck(t, c.req)
		if code != c.want || (c.want != codes.OK && errorCode(resp) != "source_not_allowed") {
			t.Errorf("gRPC, %s: %s; want %v", c.name, describe(resp), c.want)
		}
	}

	// HTTP forward-auth: straight from the test (the peer 127.0.0.1 is a
	// trusted proxy of kg, not of plain), and through nginx, which appends
	// the address it sees to what the client sent.
	up := startUpstream(t)
	nginx := startNginx(t, kg.httpAddr, up.addr)
	ask := func(addr, xff string) reply {
		h := [][2]string{{"X-Forwarded-Method", "GET"}, {"X-Forwarded-Uri", "/api/v1/projects"}, {"X-API-Key", k.Secret}}
		if xff != "" {
			h = append(h, [2]string{"X-Forwarded-For", xff})
		}
		return send(t, addr, "GET", "/auth", h)
	}
	through := func(xff string) reply {
		h := [][2]string{{"X-API-Key", k.Secret}}
		if xff != "" {
			h = append(h, [2]string{"X-Forwarded-For", xff})
		}
		return send(t, nginx.addr, "GET", "/api/v1/projects", h)
	}
	for _, c := range []struct {
		name string
		r    reply
		want int
	}{
		{"untrusted peer, forwarded inside", ask(plain.httpAddr, "198.51.100.7"), 403},
		{"trusted peer, IPv4 client inside", ask(kg.httpAddr, "198.51.100.7"), 200},
		{"trusted peer, IPv6 client inside", ask(kg.httpAddr, "2001:db8::7"), 200},
		{"trusted peer, client outside", ask(kg.httpAddr, "203.0.113.9"), 403},
		{"trusted peer, no X-Forwarded-For", ask(kg.httpAddr, ""), 403},
		{"nginx, client inside", through("198.51.100.7"), 200},
		{"nginx, client outside", through("203.0.113.9"), 403},
		{"nginx, the test itself", through(""), 403},
	} {
		if c.r.status != c.want || (c.want == 403 && !strings.Contains(c.r.body, "source_not_allowed")) {
			t.Errorf("HTTP, %s: %v; want %d", c.name, c.r, c.want)
		}
	}
}

// TestFailureLimit: with --failure-limit 20/1m, one hostile source among
// 10,000 others that fail now and then is refused with 429
// too_many_failures once over its budget, with no database query (counted
// in PostgreSQL's own statistics, pg_stat_user_indexes, and in keygate's
// cache loads); the others are not; a valid key the cache holds still works
// from the hostile source; and memory stays put.
func TestFailureLimit(t *testing.T) {
	db := pgtest.NewDatabase(t) // replicas on one database: PostgreSQL
	valid := createKey(t, db, "acme", "used behind the same NAT")
	uncached := createKey(t, db, "acme", "never used before")
	kg := startServer(t, db, "--failure-limit", "20/1m", "--cache-fresh", "10m", "--decision-log", "off")
	const hostile = "192.0.2.66"
	from := func(addr, key string) *authv3.CheckRequest {
		req := keyCheck(key, "/api/v1/projects")
		req.Attributes.Source.Address.GetSocketAddress().Address = addr
		return req
	}
	madeUp := func() string {
		s, err := keystore.GenerateSecret("kg")
		if err != nil {
			t.Fatal(err)
		}
		return s.Reveal()
	}
	others := func(round int, want codes.Code) {
		t.Helper()
		shared := madeUp() // one unknown key for all of them: the negative cache answers
		var wg sync.WaitGroup
		var wrong atomic.Int64
		for w := range 8 {
			wg.Go(func() {
				for i := w; i < 10_000; i += 8 {
					addr := fmt.Sprintf("10.%d.%d.%d", round, i>>8, i&0xff)
					if code, _ := kg.mustCheck(t, from(addr, shared)); code != want {
						wrong.Add(1)
					}
				}
			})
		}
		wg.Wait()
		if n := wrong.Load(); n != 0 {
			t.Errorf("round %d: %d of 10,000 other sources were not answered %v", round, n, want)
		}
	}
	heap := func() float64 { return kg.metric(t, "go_memstats_heap_inuse_bytes") }

	scans0 := digestScans(t, db)
	if code, resp := kg.mustCheck(t, from(hostile, valid.Secret)); code != codes.OK { // cached from now on
		t.Fatalf("the valid key: %s", describe(resp))
	}
	heapBefore := heap()
	others(1, codes.Unauthenticated)
	for i := range 20 {
		if code, resp := kg.mustCheck(t, from(hostile, madeUp())); code != codes.Unauthenticated {
			t.Fatalf("hostile failure %d of its budget of 20: %s", i+1, describe(resp))
		}
	}
	scansLimited := settledDigestScans(t, db)
	if scansLimited-scans0 < 20 {
		t.Fatalf("pg_stat_user_indexes counted %d scans of api_keys_digest for at least 20 lookups: the statistics are not live", scansLimited-scans0)
	}
	loads := kg.metric(t, "keygate_cache_loads_total")
	start := time.Now()
	const flood = 2000
	for i := range flood {
		code, resp := kg.mustCheck(t, from(hostile, madeUp()))
		if code != codes.ResourceExhausted || errorCode(resp) != "too_many_failures" {
			t.Fatalf("hostile attempt %d over its budget: %s", i+1, describe(resp))
		}
		if i == 0 {
			if ra := deniedHeader(resp, "retry-after"); ra != "60" {
				t.Errorf("retry-after %q, want 60 (the window)", ra)
			}
		}
	}
	took := time.Since(start)
	for name, key := range map[string]string{"malformed": "kg_nope", "valid but not cached": uncached.Secret} {
		if code, resp := kg.mustCheck(t, from(hostile, key)); code != codes.ResourceExhausted {
			t.Errorf("%s key from the hostile source: %s; want 429", name, describe(resp))
		}
	}
	if code, resp := kg.mustCheck(t, from(hostile, valid.Secret)); code != codes.OK {
		t.Errorf("the cached valid key from the hostile source: %s; want allowed", describe(resp))
	}
	if got := kg.metric(t, "keygate_cache_loads_total") - loads; got != 0 {
		t.Errorf("keygate made %v database lookups for a source over its budget", got)
	}
	scansAfter := settledDigestScans(t, db)
	if scansAfter != scansLimited {
		t.Errorf("PostgreSQL counted %d scans of api_keys_digest while the hostile source was limited, want none", scansAfter-scansLimited)
	}
	others(2, codes.Unauthenticated) // not limited: each has made one failure before
	if code, resp := kg.mustCheck(t, from("10.1.0.7", valid.Secret)); code != codes.OK {
		t.Errorf("the valid key from another source: %s", describe(resp))
	}
	heapAfter := heap()
	limited := kg.metric(t, `keygate_decisions_total{code="too_many_failures",dry_run="false",reason="too_many_failures"}`)
	t.Logf("%d attempts over the budget refused in %s (%.0f/s), %v counted as too_many_failures; api_keys_digest scans: %d before the flood, %d after; heap in use %.1f MiB → %.1f MiB after 20,000 checks from 20,000 sources",
		flood, took.Round(time.Millisecond), flood/took.Seconds(), limited, scansLimited, scansAfter, heapBefore/(1<<20), heapAfter/(1<<20))
	if limited < flood+2 {
		t.Errorf("keygate_decisions_total counted %v limited requests, want at least %d", limited, flood+2)
	}
	if heapAfter-heapBefore > 32<<20 {
		t.Errorf("heap in use grew by %.1f MiB with 20,000 sources", (heapAfter-heapBefore)/(1<<20))
	}
}

// digestScans is PostgreSQL's count of scans of api_keys' digest index:
// the decision path's lookups, as the server's statistics see them.
func digestScans(tb testing.TB, dbURL string) int64 {
	tb.Helper()
	return queryCount(tb, dbURL, `SELECT idx_scan FROM pg_stat_user_indexes WHERE indexrelname = 'api_keys_digest'`)
}

// queryCount runs a query answering one number, on a connection of its
// own.
func queryCount(tb testing.TB, dbURL, sql string) int64 {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		tb.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int64
	if err := conn.QueryRow(ctx, sql).Scan(&n); err != nil {
		tb.Fatal(err)
	}
	return n
}

// settledDigestScans is digestScans once every backend has reported what
// it did: a backend flushes its statistics when it goes idle, or at most
// 10 s later (PostgreSQL 15's PGSTAT_IDLE_INTERVAL).
func settledDigestScans(tb testing.TB, dbURL string) int64 {
	tb.Helper()
	time.Sleep(11 * time.Second)
	return digestScans(tb, dbURL)
}

// deniedHeader is a header of a denied_response.
func deniedHeader(resp *authv3.CheckResponse, name string) string {
	for _, h := range resp.GetDeniedResponse().GetHeaders() {
		if h.GetHeader().GetKey() == name {
			return h.GetHeader().GetValue()
		}
	}
	return ""
}

// TestImport imports 100,000 keys with `keygate keys import` in one run
// (the time is logged), refuses a whole file for one bad line, and the
// imported keys, legacy ones included, verify in real Checks; legacy keys
// get the negative cache and the failure limit like any other.
func TestImport(t *testing.T) {
	const n = 100_000
	db := pgtest.NewDatabase(t) // two servers on one database: PostgreSQL
	dir := t.TempDir()
	var b strings.Builder
	secrets := make([]string, n)
	for i := range n {
		s, err := keystore.GenerateSecret("kg")
		if err != nil {
			t.Fatal(err)
		}
		secrets[i] = s.Reveal()
		fmt.Fprintf(&b, `{"account":"acct-%d","name":"imported %d","scopes":["projects:read"],"key":%q}`+"\n", i%1000, i, secrets[i])
	}
	const legacy, digestOnly = "kong-0123456789abcdefABCDEF", "unkey_3ZbPnPvXB4oq8dWkXpm6cyX1"
	sum := sha256.Sum256([]byte(digestOnly))
	fmt.Fprintf(&b, `{"account":"acme","name":"from kong","key":%q}`+"\n", legacy)
	fmt.Fprintf(&b, `{"account":"acme","name":"from unkey","metadata":{"tier":"gold"},"sha256":%q}`+"\n", hex.EncodeToString(sum[:]))
	good := filepath.Join(dir, "keys.jsonl")
	if err := os.WriteFile(good, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}

	// One bad line, the 50,000th: nothing is imported, and the error names
	// the line and never the key.
	lines := strings.SplitAfter(b.String(), "\n")
	lines[49_999] = strings.Replace(lines[49_999], `"projects:read"`, `"projects:admin"`, 1)
	bad := filepath.Join(dir, "bad.jsonl")
	if err := os.WriteFile(bad, []byte(strings.Join(lines, "")), 0o600); err != nil {
		t.Fatal(err)
	}
	r := run(t, db, "keys", "import", bad, "--accept-legacy-keys")
	if r.code != 2 || !strings.Contains(r.stderr, "line 50000: scopes:") || !strings.Contains(r.stderr, "nothing was imported") ||
		strings.Contains(r.stderr, secrets[49_999][3:]) {
		t.Fatalf("a bad line: exit %d, %q", r.code, r.stderr)
	}
	if got := keyCount(t, db); got != 0 {
		t.Fatalf("%d keys stored after a refused import", got)
	}
	if r := run(t, db, "keys", "import", good); r.code != 2 || !strings.Contains(r.stderr, "line 100001: key: not a keygate key") {
		t.Fatalf("a legacy key without --accept-legacy-keys: exit %d, %q", r.code, r.stderr)
	}

	start := time.Now()
	out := cli(t, db, "keys", "import", good, "--accept-legacy-keys", "-o", "json")
	took := time.Since(start)
	if !strings.Contains(string(out), fmt.Sprintf(`"imported": %d`, n+2)) || keyCount(t, db) != n+2 {
		t.Fatalf("keys import printed %s; %d keys stored", out, keyCount(t, db))
	}
	t.Logf("keys import: %d keys from a %.1f MB file in %s (%.0f keys/s), the binary's whole run", n+2, float64(b.Len())/1e6, took.Round(time.Millisecond), float64(n+2)/took.Seconds())
	if r := run(t, db, "keys", "import", good, "--accept-legacy-keys"); r.code != 2 || !strings.Contains(r.stderr, "line 1: this key is stored already") {
		t.Fatalf("importing the file again: exit %d, %q", r.code, r.stderr)
	}

	kg := startServer(t, db, "--accept-legacy-keys", "--failure-limit", "5/1m", "--meta-header", "tier")
	plain := startServer(t, db)
	for _, secret := range []string{secrets[0], secrets[n/2], secrets[n-1]} {
		for _, srv := range []*server{kg, plain} {
			if code, resp := srv.mustCheck(t, keyCheck(secret, "/api/v1/projects")); code != codes.OK {
				t.Errorf("an imported keygate key: %s", describe(resp))
			}
		}
	}
	if code, resp := kg.mustCheck(t, keyCheck(legacy, "/api/v1/projects")); code != codes.OK {
		t.Errorf("the imported legacy key: %s", describe(resp))
	}
	if code, resp := kg.mustCheck(t, keyCheck(digestOnly, "/api/v1/projects")); code != codes.OK || upstreamHeaders(resp)["x-keygate-meta-tier"] != "gold" {
		t.Errorf("the key imported by its digest: %s", describe(resp))
	}
	if code, resp := plain.mustCheck(t, keyCheck(legacy, "/api/v1/projects")); code != codes.Unauthenticated {
		t.Errorf("a legacy key without serve --accept-legacy-keys: %s; want 401", describe(resp))
	}
	// An unknown legacy key: one query, then the negative cache; the
	// failure limit counts it.
	loads := kg.metric(t, "keygate_cache_loads_total")
	for i := range 5 {
		if code, resp := kg.mustCheck(t, keyCheck("kong-not-a-key-at-all", "/api/v1/projects")); code != codes.Unauthenticated {
			t.Fatalf("unknown legacy key, attempt %d: %s", i+1, describe(resp))
		}
	}
	if got := kg.metric(t, "keygate_cache_loads_total") - loads; got != 1 {
		t.Errorf("%v database lookups for one unknown legacy key sent 5 times, want 1", got)
	}
	if code, resp := kg.mustCheck(t, keyCheck("kong-another-made-up-key", "/api/v1/projects")); code != codes.ResourceExhausted {
		t.Errorf("a sixth failure from the source: %s; want 429", describe(resp))
	}
}

// keyCount is the number of keys in the database.
func keyCount(tb testing.TB, dbURL string) int {
	tb.Helper()
	keys, _ := storetest.Count(tb, dbURL)
	return keys
}
