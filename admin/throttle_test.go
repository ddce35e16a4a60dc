package admin_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/failurelimit"
)

// testClock is a clock the test moves.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// TestFailedTokensThrottled: a source that sent its budget of admin
// tokens that are not valid gets 429 with Retry-After for every request
// without a valid token, until the window has passed; its valid tokens
// keep working all along.
func TestFailedTokensThrottled(t *testing.T) {
	t.Parallel()
	clk := &testClock{t: time.Now()}
	f := newFixture(t, fixtureOptions{failureLimit: failurelimit.Limit{Count: 5, Window: time.Minute}, now: clk.Now})
	k := f.create(map[string]any{})
	stranger, _ := newToken(t, "stranger", "")
	f.mu.Lock()
	f.secrets[stranger] = true
	f.mu.Unlock()
	wrong := []http.Header{
		{"Authorization": {"Bearer " + stranger}},
		{"Authorization": {"Bearer kgadm_nope"}},
		{"Authorization": {"Bearer " + k.Secret}}, // an API key
		{"Authorization": {"Basic " + f.root}},
		{"Authorization": {"Bearer " + f.root, "Bearer " + f.acme}},
	}
	for i, h := range wrong {
		if res := f.do(call{method: "GET", path: "/v1/keys", header: h}); res.status != http.StatusUnauthorized {
			t.Fatalf("failure %d: %d %s, want 401", i+1, res.status, res.body)
		}
	}
	for _, h := range append(wrong, nil) { // nil: no token at all
		for _, c := range []call{{method: "GET", path: "/v1/whoami"}, {method: "POST", path: "/v1/keys", body: map[string]any{"account_id": "acme", "name": "n"}},
			{method: "DELETE", path: "/v1/keys/" + k.ID}} {
			c.header = h
			res := f.do(c)
			if res.status != http.StatusTooManyRequests || res.header.Get("Retry-After") != "60" || res.problem.Type != "urn:keygate:problem:too-many-failures" {
				t.Fatalf("%s %s over the budget: %d %v %s, want 429 with Retry-After: 60", c.method, c.path, res.status, res.header, res.body)
			}
		}
	}
	// Valid tokens from the same source: never refused, however many.
	for i := range 50 {
		res := f.do(call{method: "GET", path: "/v1/whoami", token: []string{f.root, f.acme}[i%2]})
		if res.status != http.StatusOK {
			t.Fatalf("a valid token over the budget: %d %s", res.status, res.body)
		}
	}
	if res := f.do(call{method: "DELETE", path: "/v1/keys/" + k.ID, token: f.root}); res.status != http.StatusNoContent {
		t.Fatalf("a change with a valid token: %d %s", res.status, res.body)
	}
	if strings.Count(f.logs.String(), "over its budget of failed admin tokens") != 1 {
		t.Fatalf("want one warning when the source went over its budget:\n%s", f.logs.String())
	}
	// The window slides: half of the 5 failures (2, rounded down) still
	// count 90 s later, so 3 more may fail; two windows later, 5 again.
	clk.Add(90 * time.Second)
	for i := range 4 {
		want := http.StatusUnauthorized
		if i == 3 {
			want = http.StatusTooManyRequests
		}
		if res := f.do(call{method: "GET", path: "/v1/whoami", header: wrong[0]}); res.status != want {
			t.Fatalf("90 s later, attempt %d: %d, want %d", i+1, res.status, want)
		}
	}
	clk.Add(2 * time.Minute)
	if res := f.do(call{method: "GET", path: "/v1/whoami", header: wrong[1]}); res.status != http.StatusUnauthorized {
		t.Fatalf("two windows later: %d, want 401", res.status)
	}
}

// TestFailedTokensPerSource: the budget is per source address, an IPv6
// one per /64, an IPv4-mapped IPv6 address as the IPv4 address; another
// source is not affected.
func TestFailedTokensPerSource(t *testing.T) {
	t.Parallel()
	f := newFixture(t, fixtureOptions{failureLimit: failurelimit.Limit{Count: 3, Window: time.Hour}})
	send := func(remote, token string) int {
		r := httptest.NewRequest("GET", "/v1/whoami", nil)
		r.RemoteAddr = remote
		r.Header.Set("Authorization", "Bearer "+token)
		w := httptest.NewRecorder()
		f.handler.ServeHTTP(w, r)
		return w.Code
	}
	cases := []struct {
		name                string
		failFrom, checkFrom string
		shared              bool
	}{
		{"the same IPv4 address", "203.0.113.9:1234", "203.0.113.9:5678", true},
		{"the next IPv4 address", "203.0.113.20:1", "203.0.113.21:1", false},
		{"the same /64", "[2001:db8:1:2::1]:1", "[2001:db8:1:2:ffff:ffff:ffff:ffff]:1", true},
		{"the next /64", "[2001:db8:5:6::1]:1", "[2001:db8:5:7::1]:1", false},
		{"IPv4-mapped", "[::ffff:198.51.100.7]:1", "198.51.100.7:1", true},
		{"a zone", "[fe80::1%eth0]:1", "[fe80::2%eth1]:1", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for i := range 3 {
				if code := send(c.failFrom, "kgadm_nope"); code != http.StatusUnauthorized {
					t.Fatalf("failure %d: %d", i+1, code)
				}
			}
			if code := send(c.failFrom, "kgadm_nope"); code != http.StatusTooManyRequests {
				t.Fatalf("over the budget: %d, want 429", code)
			}
			want := http.StatusUnauthorized
			if c.shared {
				want = http.StatusTooManyRequests
			}
			if code := send(c.checkFrom, "kgadm_nope"); code != want {
				t.Fatalf("from %s: %d, want %d", c.checkFrom, code, want)
			}
			for _, from := range []string{c.failFrom, c.checkFrom} {
				if code := send(from, f.root); code != http.StatusOK {
					t.Fatalf("a valid token from %s: %d", from, code)
				}
			}
		})
	}
}
