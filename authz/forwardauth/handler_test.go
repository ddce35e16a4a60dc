package forwardauth

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/internal/authztest"
	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/policy"
)

// newTestHandler returns the adapter over a core deciding with lookup under
// the example policy, at authztest.Now; mutate changes the options.
func newTestHandler(tb testing.TB, lookup authz.KeyLookup, mutate func(*authz.Config, *Options)) *Handler {
	tb.Helper()
	hasher, _ := keystore.NewHasher(nil)
	cfg := authz.Config{Lookup: lookup, Policy: policy.Example(), Hasher: hasher, Now: func() time.Time { return authztest.Now }}
	var opts Options
	if mutate != nil {
		mutate(&cfg, &opts)
	}
	core, err := authz.NewServer(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	h, err := New(core, opts)
	if err != nil {
		tb.Fatal(err)
	}
	return h
}

// mode is one way a proxy asks.
type mode int

const (
	caddyMode mode = iota // /auth with X-Forwarded-*
	nginxMode             // /auth with X-Original-* and the nginx workaround
	envoyMode             // under the Envoy prefix
)

var modeNames = map[mode]string{caddyMode: "caddy", nginxMode: "nginx", envoyMode: "envoy"}

// ask sends the request method path with headers the way m does, and
// returns what the proxy would pass on: for nginx, the error page's
// answer from DenialPath after a 401.
func ask(t *testing.T, h *Handler, m mode, method, path string, headers map[string]string) *httptest.ResponseRecorder {
	t.Helper()
	return askFrom(t, h, m, method, path, headers, "")
}

// askCase asks c of the shared decision table, from the client address
// c.Source says (the proxy's peer, trusting no proxy).
func askCase(t *testing.T, h *Handler, m mode, c authztest.Case) *httptest.ResponseRecorder {
	t.Helper()
	var remote string
	switch a := c.SourceAddr(); {
	case c.Source == authztest.UnknownSource:
		remote = "@" // a Unix socket's peer: no address
	case a.IsValid():
		remote = netip.AddrPortFrom(a, 4321).String()
	}
	return askFrom(t, h, m, c.Method, c.Path, c.Headers, remote)
}

// askCase asks c of the shared decision table, after its source's failed
// attempts.
func askCaseAfterFailures(t *testing.T, h *Handler, m mode, c authztest.Case) *httptest.ResponseRecorder {
	t.Helper()
	for range c.Failures {
		if r := askCase(t, h, m, c.FailureCase()); r.Code == http.StatusOK {
			t.Fatal("a failed attempt was allowed")
		}
	}
	return askCase(t, h, m, c)
}

// askFrom is ask from the peer remote ("": httptest's 192.0.2.1:1234).
func askFrom(t *testing.T, h *Handler, m mode, method, path string, headers map[string]string, remote string) *httptest.ResponseRecorder {
	t.Helper()
	var r *http.Request
	switch m {
	case envoyMode:
		r = httptest.NewRequest(method, DefaultEnvoyPrefix+path, nil)
	default:
		r = httptest.NewRequest("GET", AuthPath, nil)
		if m == nginxMode {
			r.Header.Set("X-Original-Method", method)
			r.Header.Set("X-Original-URI", path)
			r.Header.Set(ModeHeader, ModeNginx)
		} else {
			r.Header.Set("X-Forwarded-Method", method)
			r.Header.Set("X-Forwarded-Uri", path)
		}
	}
	for k, v := range headers {
		r.Header.Add(k, v)
	}
	if remote != "" {
		r.RemoteAddr = remote
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if m != nginxMode || w.Code == http.StatusOK {
		return w
	}
	if w.Code != http.StatusUnauthorized || w.Body.Len() != 0 || w.Header().Get(OutcomeHeader) == "" {
		t.Fatalf("nginx mode: %d %q %v; want a bodiless 401 naming the outcome", w.Code, w.Body, w.Header())
	}
	replay := httptest.NewRequest("GET", DenialPath, nil)
	replay.Header.Set(OutcomeHeader, w.Header().Get(OutcomeHeader))
	w = httptest.NewRecorder()
	h.ServeHTTP(w, replay)
	return w
}

// checkDenial fails t unless w is the core's denial o, byte for byte.
func checkDenial(t *testing.T, w *httptest.ResponseRecorder, o authz.Outcome) {
	t.Helper()
	checkDenialOf(t, w, o.Denial())
}

// checkDenialOf fails t unless w is the denial d, byte for byte.
func checkDenialOf(t *testing.T, w *httptest.ResponseRecorder, d *authz.Denial) {
	t.Helper()
	if w.Code != d.Status || w.Body.String() != d.Body {
		t.Fatalf("got %d %s; want %d %s", w.Code, w.Body, d.Status, d.Body)
	}
	for _, f := range d.Headers {
		if got := w.Header().Values(f.Name); len(got) != 1 || got[0] != f.Value {
			t.Errorf("header %s: %q, want %q", f.Name, got, f.Value)
		}
	}
	if w.Header().Get(OutcomeHeader) != "" {
		t.Errorf("%s leaks to the client", OutcomeHeader)
	}
}

func TestDecisionTable(t *testing.T) {
	w := authztest.NewWorld(t)
	h := newTestHandler(t, w.Lookup, func(c *authz.Config, _ *Options) {
		c.FailureLimit = authz.FailureLimit{Count: authztest.FailureBudget, Window: authztest.FailureWindow}
	})
	outcomes := map[string]authz.Outcome{}
	for o := range authz.NumOutcomes {
		outcomes[authz.Outcome(o).String()] = authz.Outcome(o)
	}
	for _, m := range []mode{caddyMode, nginxMode, envoyMode} {
		for _, c := range w.DecisionTable(t) {
			if c.Module != "" {
				continue // no HTTP proxy names a route's module
			}
			if m == envoyMode && !strings.HasPrefix(c.Path, "/") {
				continue // Envoy sends path_prefix + :path, which is origin-form
			}
			t.Run(modeNames[m]+"/"+c.Name, func(t *testing.T) {
				resp := askCaseAfterFailures(t, h, m, c)
				want := outcomes[c.Want]
				if want != authz.Allow {
					checkDenialOf(t, resp, h.core.Denial(want))
					return
				}
				if resp.Code != http.StatusOK || resp.Body.Len() != 0 {
					t.Fatalf("got %d %q; want an empty 200", resp.Code, resp.Body)
				}
				if resp.Header().Get("X-Keygate-Key-Id") == "" || resp.Header().Get("X-Keygate-Account-Id") == "" {
					t.Fatalf("allow without identity: %v", resp.Header())
				}
			})
		}
	}
}

func TestAllowHeaders(t *testing.T) {
	w := authztest.NewWorld(t)
	h := newTestHandler(t, w.Lookup, nil)
	headers := map[string]string{
		"x-api-key":            w.Plain.Secret,
		"X-Keygate-Account-Id": "forged",
		"x_keygate_scopes":     "*",
		"X-Keygate-Admin":      "true",
	}
	// /auth: all five identity headers, empty when they say nothing.
	resp := ask(t, h, caddyMode, "GET", "/status", headers)
	got := map[string][]string{}
	for _, k := range []string{"X-Keygate-Key-Id", "X-Keygate-Account-Id", "X-Keygate-Scopes", "X-Keygate-Module", "X-Keygate-Dry-Run", envoyRemoveHeader} {
		if v, ok := resp.Header()[k]; ok {
			got[k] = v
		}
	}
	want := map[string][]string{"X-Keygate-Key-Id": {"k-plain"}, "X-Keygate-Account-Id": {"acct-k-plain"},
		"X-Keygate-Scopes": {""}, "X-Keygate-Module": {""}, "X-Keygate-Dry-Run": {""}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("/auth allow headers (-want +got):\n%s", diff)
	}

	// Envoy: the empty ones removed, with the key header and the forged ones.
	resp = ask(t, h, envoyMode, "GET", "/status", headers)
	remove := strings.Split(resp.Header().Get(envoyRemoveHeader), ",")
	for _, name := range []string{"x-keygate-scopes", "x-keygate-module", "x-api-key", "x_keygate_scopes", "x-keygate-admin"} {
		if !contains(remove, name) {
			t.Errorf("%s = %q; want it to list %s", envoyRemoveHeader, remove, name)
		}
	}
	if contains(remove, "x-keygate-account-id") || resp.Header().Get("X-Keygate-Account-Id") != "acct-k-plain" {
		t.Errorf("account id: header %q, removals %q; want it set, not removed", resp.Header().Get("X-Keygate-Account-Id"), remove)
	}
	if _, ok := resp.Header()["X-Keygate-Scopes"]; ok {
		t.Errorf("Envoy allow sets an empty scopes header")
	}

	// A scoped key in a module, bearer-style.
	resp = ask(t, h, envoyMode, "GET", "/api/v1/projects/1", map[string]string{"authorization": "Bearer " + w.ReadOnly.Secret})
	if resp.Header().Get("X-Keygate-Scopes") != "projects:read" || resp.Header().Get("X-Keygate-Module") != "projects" ||
		resp.Header().Get(envoyRemoveHeader) != "authorization" {
		t.Errorf("scoped allow: %v", resp.Header())
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func TestForwardedHeaders(t *testing.T) {
	w := authztest.NewWorld(t)
	h := newTestHandler(t, w.Lookup, nil)
	key := w.Plain.Secret
	cases := []struct {
		name    string
		headers [][2]string
		want    authz.Outcome
		says    string // in the denial's message, for a forwarded-header problem
	}{
		{"caddy", [][2]string{{"X-Forwarded-Method", "GET"}, {"X-Forwarded-Uri", "/api/v1/projects"}}, authz.Allow, ""},
		{"nginx", [][2]string{{"X-Original-Method", "GET"}, {"X-Original-URI", "/api/v1/projects"}}, authz.Allow, ""},
		{"both spellings agree", [][2]string{{"X-Original-Method", "GET"}, {"X-Original-URI", "/api/v1/projects"},
			{"X-Forwarded-Method", "GET"}, {"X-Forwarded-Uri", "/api/v1/projects"}}, authz.Allow, ""},
		{"one of each", [][2]string{{"X-Original-Method", "GET"}, {"X-Forwarded-Uri", "/api/v1/projects"}}, authz.Allow, ""},
		{"no forwarded headers", nil, authz.InvalidPath, "sent no X-Forwarded-Method or X-Original-Method header"},
		{"no method", [][2]string{{"X-Forwarded-Uri", "/api/v1/projects"}}, authz.InvalidPath, "sent no X-Forwarded-Method or X-Original-Method header"},
		{"no URI", [][2]string{{"X-Forwarded-Method", "GET"}}, authz.InvalidPath, "sent no X-Forwarded-Uri or X-Original-URI header"},
		{"no URI, nginx's method", [][2]string{{"X-Original-Method", "GET"}}, authz.InvalidPath, "sent no X-Forwarded-Uri or X-Original-URI header"},
		{"empty URI", [][2]string{{"X-Forwarded-Method", "GET"}, {"X-Forwarded-Uri", ""}}, authz.InvalidPath, "sent no X-Forwarded-Uri or X-Original-URI header (or an empty one)"},
		{"empty method", [][2]string{{"X-Forwarded-Method", ""}, {"X-Forwarded-Uri", "/api/v1/projects"}}, authz.InvalidPath, "sent no X-Forwarded-Method or X-Original-Method header (or an empty one)"},
		{"repeated URI", [][2]string{{"X-Forwarded-Method", "GET"}, {"X-Forwarded-Uri", "/api/v1/projects"}, {"X-Forwarded-Uri", "/api/v1/projects"}}, authz.InvalidPath, "sent X-Forwarded-Uri or X-Original-URI more than once"},
		{"repeated method", [][2]string{{"X-Forwarded-Method", "GET"}, {"X-Forwarded-Method", "GET"}, {"X-Forwarded-Uri", "/api/v1/projects"}}, authz.InvalidPath, "sent X-Forwarded-Method or X-Original-Method more than once"},
		{"contradictory URI (a client smuggling one past nginx)", [][2]string{{"X-Original-Method", "GET"}, {"X-Original-URI", "/api/v1/users"},
			{"X-Forwarded-Uri", "/api/v1/projects"}}, authz.InvalidPath, "sent X-Forwarded-Uri and X-Original-URI with different values"},
		{"contradictory method", [][2]string{{"X-Original-Method", "POST"}, {"X-Forwarded-Method", "GET"}, {"X-Forwarded-Uri", "/api/v1/projects"}}, authz.InvalidPath, "sent X-Forwarded-Method and X-Original-Method with different values"},
		{"lower-case names", [][2]string{{"x-forwarded-method", "GET"}, {"x-forwarded-uri", "/api/v1/users"}}, authz.ModuleForbidden, ""},
		{"the URI decides, not the auth request's own path", [][2]string{{"X-Forwarded-Method", "GET"}, {"X-Forwarded-Uri", "/api/v1/users"}}, authz.ModuleForbidden, ""},
		{"the method decides", [][2]string{{"X-Forwarded-Method", "POST"}, {"X-Forwarded-Uri", "/api/v1/projects"}}, authz.Allow, ""},
		{"an invalid path says the usual", [][2]string{{"X-Forwarded-Method", "GET"}, {"X-Forwarded-Uri", "/api/v1/%2e%2e/users"}}, authz.InvalidPath, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := httptest.NewRequest("POST", AuthPath+"?from=test", nil)
			r.Header.Set("x-api-key", key)
			for _, kv := range c.headers {
				r.Header[kv[0]] = append(r.Header[kv[0]], kv[1]) // as sent, not canonicalized…
				if canon := http.CanonicalHeaderKey(kv[0]); canon != kv[0] {
					r.Header[canon] = append(r.Header[canon], kv[1]) // …as net/http would have
					delete(r.Header, kv[0])
				}
			}
			resp := httptest.NewRecorder()
			h.ServeHTTP(resp, r)
			switch {
			case c.want == authz.Allow:
				if resp.Code != http.StatusOK {
					t.Fatalf("got %d %s; want 200", resp.Code, resp.Body)
				}
			case c.says == "":
				checkDenial(t, resp, c.want)
			default:
				// The outcome's denial, saying what the proxy got wrong.
				want := c.want.Denial()
				var body struct {
					Error struct{ Code, Message string }
				}
				if err := json.Unmarshal(resp.Body.Bytes(), &body); err != nil || resp.Code != want.Status || body.Error.Code != c.want.String() {
					t.Fatalf("got %d %s; want %d with code %s", resp.Code, resp.Body, want.Status, c.want)
				}
				if !strings.Contains(body.Error.Message, c.says) {
					t.Errorf("message %q does not say %q", body.Error.Message, c.says)
				}
				checkDenialOf(t, resp, want.Saying(body.Error.Message)) // the headers, and nothing else in the body
				// nginx's workaround still names the outcome.
				r.Header.Set(ModeHeader, ModeNginx)
				resp = httptest.NewRecorder()
				h.ServeHTTP(resp, r)
				if resp.Code != http.StatusUnauthorized || resp.Header().Get(OutcomeHeader) != c.want.String() {
					t.Errorf("nginx mode: %d %v; want a 401 naming %s", resp.Code, resp.Header(), c.want)
				}
			}
		})
	}
}

func TestRouting(t *testing.T) {
	w := authztest.NewWorld(t)
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusTeapot) })
	h := newTestHandler(t, w.Lookup, func(_ *authz.Config, o *Options) { o.Next, o.EnvoyPrefix = next, "/check" })
	key := map[string]string{"x-api-key": w.Plain.Secret}
	for _, c := range []struct {
		method, target string
		want           int
	}{
		{"GET", "/healthz", http.StatusTeapot},
		{"GET", "/check", http.StatusTeapot},         // the prefix alone is not a request
		{"GET", "/checkapi/v1", http.StatusTeapot},   // not under the prefix
		{"GET", "/ext_authz/api", http.StatusTeapot}, // the default prefix is gone
		{"GET", "/auth/", http.StatusTeapot},
		{"GET", "/AUTH", http.StatusTeapot},
		{"GET", "/check/api/v1/projects", http.StatusOK},
		{"DELETE", "/check/api/v1/projects/7", http.StatusOK},
		{"GET", "/check/api/v1/users", http.StatusForbidden},
		{"GET", "/check/api/v1/projects/%2e%2e/users", http.StatusBadRequest}, // raw, not decoded
		{"GET", "/check/api/v1/projects/..;/users", http.StatusForbidden},
		{"GET", "/auth", http.StatusBadRequest},                // no forwarded headers
		{"GET", "/auth?x=1", http.StatusBadRequest},            // a query does not change that
		{"GET", "/auth/denial", http.StatusServiceUnavailable}, // no outcome named
	} {
		r := httptest.NewRequest(c.method, c.target, nil)
		for k, v := range key {
			r.Header.Set(k, v)
		}
		resp := httptest.NewRecorder()
		h.ServeHTTP(resp, r)
		if resp.Code != c.want {
			t.Errorf("%s %s: %d %s, want %d", c.method, c.target, resp.Code, resp.Body, c.want)
		}
	}
}

func TestDenialPath(t *testing.T) {
	h := newTestHandler(t, authztest.NewWorld(t).Lookup, nil)
	for o := range authz.NumOutcomes {
		o := authz.Outcome(o)
		want := o
		if o == authz.Allow {
			want = authz.Unavailable // never an allow
		}
		for _, name := range []string{o.String(), strings.ToUpper(o.String())} {
			r := httptest.NewRequest("GET", DenialPath, nil)
			r.Header.Set(OutcomeHeader, name)
			resp := httptest.NewRecorder()
			h.ServeHTTP(resp, r)
			if name != o.String() {
				checkDenial(t, resp, authz.Unavailable)
				continue
			}
			checkDenial(t, resp, want)
		}
	}
}

// A store outage is a 503 with retry-after, in every mode; nginx's comes
// through its error page.
func TestUnavailable(t *testing.T) {
	w := authztest.NewWorld(t)
	w.Lookup.Err = keystore.ErrUnavailable
	h := newTestHandler(t, w.Lookup, nil)
	for _, m := range []mode{caddyMode, nginxMode, envoyMode} {
		t.Run(modeNames[m], func(t *testing.T) {
			checkDenial(t, ask(t, h, m, "GET", "/api/v1/projects", map[string]string{"x-api-key": w.Plain.Secret}), authz.Unavailable)
		})
	}
}

// A panic below the adapter is a 503, never an allow or a dropped
// connection.
func TestPanic(t *testing.T) {
	w := authztest.NewWorld(t)
	w.Lookup.Panic = true
	h := newTestHandler(t, w.Lookup, nil)
	checkDenial(t, ask(t, h, caddyMode, "GET", "/api/v1/projects", map[string]string{"x-api-key": w.Plain.Secret}), authz.Unavailable)
}

func TestSource(t *testing.T) {
	trusted, err := ParseTrustedProxies([]string{"10.0.0.0/8", " 192.168.1.1 ", "", "::ffff:172.16.0.0/108"})
	if err != nil {
		t.Fatal(err)
	}
	h := newTestHandler(t, authztest.NewWorld(t).Lookup, func(_ *authz.Config, o *Options) { o.TrustedProxies = trusted })
	cases := []struct {
		name, peer string
		headers    [][2]string
		want       string
	}{
		{"untrusted peer, headers ignored", "203.0.113.9:4000", [][2]string{{"X-Forwarded-For", "1.1.1.1"}, {"X-Real-IP", "2.2.2.2"}}, "203.0.113.9"},
		{"trusted peer, no headers", "10.1.2.3:4000", nil, "10.1.2.3"},
		{"trusted peer, one hop", "10.1.2.3:4000", [][2]string{{"X-Forwarded-For", "198.51.100.7"}}, "198.51.100.7"},
		{"client-sent entries left of the real one", "10.1.2.3:4000", [][2]string{{"X-Forwarded-For", "6.6.6.6, 198.51.100.7, 10.9.9.9"}}, "198.51.100.7"},
		{"several header lines", "10.1.2.3:4000", [][2]string{{"X-Forwarded-For", "6.6.6.6"}, {"X-Forwarded-For", "198.51.100.7,192.168.1.1"}}, "198.51.100.7"},
		{"every hop trusted", "10.1.2.3:4000", [][2]string{{"X-Forwarded-For", "10.0.0.1, 192.168.1.1"}}, "10.1.2.3"},
		{"garbage before a client", "10.1.2.3:4000", [][2]string{{"X-Forwarded-For", "198.51.100.7, junk, 10.0.0.1"}}, "10.1.2.3"},
		{"empty entries skipped", "10.1.2.3:4000", [][2]string{{"X-Forwarded-For", "198.51.100.7, ,"}}, "198.51.100.7"},
		{"X-Real-IP when no X-Forwarded-For", "10.1.2.3:4000", [][2]string{{"X-Real-IP", "198.51.100.8"}}, "198.51.100.8"},
		{"X-Forwarded-For over X-Real-IP", "10.1.2.3:4000", [][2]string{{"X-Forwarded-For", "198.51.100.7"}, {"X-Real-IP", "198.51.100.8"}}, "198.51.100.7"},
		{"bad X-Real-IP", "10.1.2.3:4000", [][2]string{{"X-Real-IP", "nope"}}, "10.1.2.3"},
		{"IPv6 client with port", "10.1.2.3:4000", [][2]string{{"X-Forwarded-For", "[2001:db8::1]:443"}}, "2001:db8::1"},
		{"mapped peer in a mapped prefix", "[::ffff:172.16.0.5]:4000", [][2]string{{"X-Forwarded-For", "::ffff:198.51.100.7"}}, "198.51.100.7"},
		{"IPv6 peer", "[2001:db8::2]:4000", [][2]string{{"X-Forwarded-For", "1.1.1.1"}}, "2001:db8::2"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", AuthPath, nil)
			r.RemoteAddr = c.peer
			for _, kv := range c.headers {
				r.Header.Add(kv[0], kv[1])
			}
			if got := h.source(r); got != netip.MustParseAddr(c.want) {
				t.Errorf("source %v, want %s", got, c.want)
			}
		})
	}
}

func TestOptions(t *testing.T) {
	for _, bad := range [][]string{{"10.0.0.0/33"}, {"10.0.0.1/8x"}, {"localhost"}, {"10.0.0.0/8", "300.1.1.1"}, {"::ffff:1.2.3.4/64"}} {
		if _, err := ParseTrustedProxies(bad); err == nil {
			t.Errorf("ParseTrustedProxies(%q) succeeded", bad)
		}
	}
	for _, bad := range []string{"ext_authz", "/", "/ext_authz/", "/auth", "/auth/x", "/a b", "/a%2f", "/a//b", "/a/../b", "/a?b"} {
		if err := ValidateEnvoyPrefix(bad); err == nil {
			t.Errorf("ValidateEnvoyPrefix(%q) succeeded", bad)
		}
	}
	for _, good := range []string{DefaultEnvoyPrefix, "/authz", "/keygate/v1/check", "/a.b_c~d-e"} {
		if err := ValidateEnvoyPrefix(good); err != nil {
			t.Errorf("ValidateEnvoyPrefix(%q): %v", good, err)
		}
	}
	if _, err := New(nil, Options{}); err == nil {
		t.Error("New without a core succeeded")
	}
}

// The JSON of every denial is the core's.
func TestDenialBodies(t *testing.T) {
	h := newTestHandler(t, authztest.NewWorld(t).Lookup, nil)
	for o := 1; o < authz.NumOutcomes; o++ {
		var body struct {
			Error struct{ Code, Message string } `json:"error"`
		}
		if err := json.Unmarshal(h.denials[o].body, &body); err != nil || body.Error.Code != authz.Outcome(o).String() {
			t.Errorf("outcome %d: body %s (%v)", o, h.denials[o].body, err)
		}
	}
}

// A dry run lets a denied request through every kind of forward-auth
// request, with the outcome in the dry-run header and nothing forged.
func TestDryRun(t *testing.T) {
	w := authztest.NewWorld(t)
	h := newTestHandler(t, w.Lookup, func(c *authz.Config, _ *Options) { c.DryRun = true })
	headers := map[string]string{"x-api-key": w.Plain.Secret, "x-keygate-dry-run": "forged"}
	for _, m := range []mode{caddyMode, nginxMode, envoyMode} {
		resp := ask(t, h, m, "GET", "/api/v1/users/1", headers)
		if resp.Code != 200 || resp.Header().Get("X-Keygate-Dry-Run") != "module_forbidden" || resp.Header().Get("X-Keygate-Key-Id") != "k-plain" {
			t.Errorf("%s: %d %v; want 200 with X-Keygate-Dry-Run: module_forbidden", modeNames[m], resp.Code, resp.Header())
		}
		if m == envoyMode && !strings.Contains(resp.Header().Get(envoyRemoveHeader), "x-keygate-dry-run") {
			t.Errorf("envoy: the forged dry-run header is not removed: %v", resp.Header())
		}
	}
	if resp := ask(t, h, caddyMode, "GET", "/api/v1/projects", nil); resp.Code != 200 || resp.Header().Get("X-Keygate-Dry-Run") != "missing_api_key" {
		t.Errorf("no key in a dry run: %d %v", resp.Code, resp.Header())
	}
}
