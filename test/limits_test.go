//go:build unix

package test

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/storetest"
	"github.com/keygate/keygate/internal/waittest"
)

// TestLimitsThroughProxies puts nginx and Caddy, from the shipped
// configurations, in front of the real keygate: a key over its rate gets
// 429 rate_limited with retry-after and the RateLimit fields, a key past its
// quota 429 quota_exhausted with the seconds to midnight UTC, an allowed
// request of a limited key shows the client its RateLimit fields (and the
// upstream none), a key without limits gets none; and the usage that
// keygate keys usage reports matches the decisions sent.
func TestLimitsThroughProxies(t *testing.T) {
	db := storetest.NewDatabase(t)
	cli(t, db, "migrate")
	kg := startServer(t, db, "--trusted-proxies", "127.0.0.1", "--last-used-interval", "1s")
	plain := createKey(t, db, "acme", "unlimited")
	for name, start := range map[string]startFunc{"nginx": startNginx, "caddy": startCaddy} {
		t.Run(name, func(t *testing.T) {
			rated := createKey(t, db, "acme", name+" rated", "--limit", "2/m")
			quota := createKey(t, db, "acme", name+" quota", "--quota", "2/day")
			up := startUpstream(t)
			p := start(t, kg.httpAddr, up.addr)
			get := func(secret string) reply {
				return send(t, p.addr, "GET", "/api/v1/projects", [][2]string{{"X-API-Key", secret}})
			}
			// A key's cache entry is loaded at its first request; the
			// limits apply from it.
			n := up.count()
			for i, wantRemaining := range []string{"1", "0"} {
				r := get(rated.Secret)
				if r.status != 200 || r.body != "upstream" {
					t.Fatalf("rated key, request %d: %v", i, r)
				}
				if got := r.header.Get("RateLimit-Policy"); got != `"2/m";q=2;w=60` {
					t.Errorf("request %d: RateLimit-Policy %q", i, got)
				}
				if got := r.header.Get("RateLimit"); !strings.HasPrefix(got, `"2/m";r=`+wantRemaining+";t=") {
					t.Errorf("request %d: RateLimit %q, want r=%s", i, got, wantRemaining)
				}
				if r.header.Get("Retry-After") != "" {
					t.Errorf("an allow with retry-after: %v", r.header)
				}
			}
			for _, a := range up.since(n) {
				if a.header.Get("RateLimit") != "" || a.header.Get("RateLimit-Policy") != "" {
					t.Errorf("the upstream received the RateLimit fields: %v", a.header)
				}
			}
			r := get(rated.Secret)
			if r.status != 429 || !strings.Contains(r.body, `"code":"rate_limited"`) || r.header.Get("Content-Type") != "application/json" {
				t.Fatalf("over the rate: %v", r)
			}
			if s, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || s < 1 || s > 60 {
				t.Errorf("over the rate: retry-after %q, want 1 to 60 seconds", r.header.Get("Retry-After"))
			}
			if !strings.HasPrefix(r.header.Get("RateLimit"), `"2/m";r=0;t=`) || r.header.Get("RateLimit-Policy") == "" {
				t.Errorf("over the rate: RateLimit fields %v", r.header)
			}
			if len(r.header.Values("Retry-After")) != 1 {
				t.Errorf("retry-after given %d times", len(r.header.Values("Retry-After")))
			}
			for range 2 {
				if r := get(quota.Secret); r.status != 200 {
					t.Fatalf("quota key within its quota: %v", r)
				}
			}
			r = get(quota.Secret)
			now := time.Now().UTC()
			toMidnight := time.Date(now.Year(), now.Month(), now.Day()+1, 0, 0, 0, 0, time.UTC).Sub(now)
			s, err := strconv.Atoi(r.header.Get("Retry-After"))
			if r.status != 429 || !strings.Contains(r.body, `"code":"quota_exhausted"`) || err != nil ||
				time.Duration(s)*time.Second < toMidnight-5*time.Second || time.Duration(s)*time.Second > toMidnight+5*time.Second {
				t.Fatalf("past the quota: %v; want 429 quota_exhausted with retry-after ≈ %v", r, toMidnight)
			}
			if !strings.Contains(r.header.Get("RateLimit"), `"2/day";r=0`) {
				t.Errorf("past the quota: RateLimit %q", r.header.Get("RateLimit"))
			}
			if r := get(plain.Secret); r.status != 200 || len(r.header.Values("RateLimit")) != 0 || len(r.header.Values("RateLimit-Policy")) != 0 {
				t.Fatalf("a key without limits: %v %v", r, r.header)
			}
			// The usage API counts what was decided: 2 allowed and 1
			// rate_limited for the rated key.
			var u struct {
				Totals struct {
					Allowed   int64            `json:"allowed"`
					Denied    int64            `json:"denied"`
					ByOutcome map[string]int64 `json:"by_outcome"`
				} `json:"totals"`
			}
			waittest.Until(t, 10*time.Second, "the usage written", func() bool {
				out := cli(t, db, "keys", "usage", rated.ID, "--step", "1m", "-o", "json")
				if err := json.Unmarshal(out, &u); err != nil {
					t.Fatal(err)
				}
				return u.Totals.Allowed+u.Totals.Denied >= 3
			})
			if u.Totals.Allowed != 2 || u.Totals.Denied != 1 || u.Totals.ByOutcome["rate_limited"] != 1 {
				t.Fatalf("usage of the rated key: %+v; want 2 allowed, 1 rate_limited", u.Totals)
			}
		})
	}
}
