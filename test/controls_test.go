//go:build unix

package test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"

	"github.com/keygate/keygate/internal/pgtest"
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
	db := pgtest.NewDatabase(t)
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
	db := pgtest.NewDatabase(t)
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
