//go:build unix

package test

import (
	"maps"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/internal/authztest"
	"github.com/keygate/keygate/internal/pgtest"
	"github.com/keygate/keygate/internal/waittest"
	"github.com/keygate/keygate/policy"
)

// TestNginx and TestCaddy put the real proxy, configured from the shipped
// file, in front of the real keygate binary's forward-auth endpoint and a
// recording upstream, and hold the pair to keygate's contract from the
// client's side: the whole decision table (status, JSON body,
// www-authenticate), identity headers from keygate only, the hostile path
// corpus, 503 with retry-after once the database is stopped, the proxy's
// own 502 once the upstream is, and keygate's 503, never the upstream,
// once keygate itself is stopped.
func TestNginx(t *testing.T) { proxyContract(t, startNginx) }

func TestCaddy(t *testing.T) { proxyContract(t, startCaddy) }

// startFunc starts a proxy in front of keygate's HTTP listener and the
// upstream.
type startFunc func(tb testing.TB, keygateHTTP, upstreamAddr string) *proxyProc

func proxyContract(t *testing.T, start startFunc) {
	cluster := pgtest.NewCluster(t) // of its own: the last step stops it
	db := cluster.URL()
	cli(t, db, "migrate")
	w := tableWorld(t, db)
	uncached := createKey(t, db, "acme", "used only once the database is down").Secret
	kg := startServer(t, db, "--trusted-proxies", "127.0.0.1")
	up := startUpstream(t)
	p := start(t, kg.httpAddr, up.addr)

	t.Run("decision table", func(t *testing.T) { decisionTableThrough(t, p, up, w) })
	t.Run("identity headers", func(t *testing.T) { identityThrough(t, p, up, w) })
	t.Run("hostile paths", func(t *testing.T) { pathsThrough(t, p, up, w) })
	t.Run("path overrides", func(t *testing.T) { pathOverridesThrough(t, p, up, w) })
	t.Run("loose header names", func(t *testing.T) { looseNamesThrough(t, p, up, w) })
	t.Run("database stopped", func(t *testing.T) {
		cluster.Stop(t)
		n := up.count()
		var r reply
		waittest.Until(t, 10*time.Second, "a 503 for an uncached key", func() bool {
			r = send(t, p.addr, "GET", "/api/v1/projects", [][2]string{{"X-API-Key", uncached}})
			return r.status == 503
		})
		wantDenial(t, r, authz.Unavailable)
		if r.header.Get("retry-after") != authz.RetryAfterSeconds {
			t.Errorf("503 without retry-after %s: %v", authz.RetryAfterSeconds, r)
		}
		// A key keygate has cached keeps working.
		if r := send(t, p.addr, "GET", "/api/v1/projects", [][2]string{{"X-API-Key", w.Plain.Secret}}); r.status != 200 || r.body != "upstream" {
			t.Errorf("cached key while the database is down: %v; want the upstream's 200", r)
		}
		if got := up.count() - n; got != 1 {
			t.Errorf("%d requests reached the upstream; want 1 (the cached key's)", got)
		}
	})
	t.Run("upstream stopped", func(t *testing.T) {
		up.stop()
		// keygate allows (the key is cached); the API's failure is the
		// proxy's own, never dressed as keygate's.
		r := send(t, p.addr, "GET", "/api/v1/projects", [][2]string{{"X-API-Key", w.Plain.Secret}})
		if r.status != 502 || strings.Contains(r.body, "unavailable") {
			t.Errorf("with the upstream stopped: %v; want the proxy's 502", r)
		}
	})
	t.Run("keygate stopped", func(t *testing.T) {
		if err := kg.terminate(t); err != nil {
			t.Fatalf("keygate serve exited with %v", err)
		}
		n := up.count()
		for _, key := range []string{w.Plain.Secret, uncached, ""} {
			var headers [][2]string
			if key != "" {
				headers = [][2]string{{"X-API-Key", key}}
			}
			wantDenial(t, send(t, p.addr, "GET", "/api/v1/projects", headers), authz.Unavailable)
		}
		if got := up.count() - n; got != 0 {
			t.Errorf("%d requests reached the upstream with keygate stopped", got)
		}
	})
}

// tableWorld creates, through the CLI, one key of each kind the decision
// table needs.
func tableWorld(tb testing.TB, db string) *authztest.World {
	tb.Helper()
	expired := createExpiringKey(tb, db, "acme", "expired", -time.Second)
	revoked := createKey(tb, db, "acme", "revoked")
	revokeKey(tb, db, revoked.ID)
	disabled := createKey(tb, db, "acme", "disabled")
	cli(tb, db, "keys", "disable", disabled.ID)
	var cidrs []string
	for _, c := range authztest.SourceCIDRs {
		cidrs = append(cidrs, "--allow-cidr", c)
	}
	restricted := createKey(tb, db, "acme", "restricted", cidrs...)
	w := &authztest.World{
		Plain:      authztest.Key{Secret: createKey(tb, db, "acme", "plain").Secret},
		ReadOnly:   authztest.Key{Secret: createKey(tb, db, "acme", "read-only", "--scope", "projects:read").Secret},
		WriteOnly:  authztest.Key{Secret: createKey(tb, db, "acme", "write-only", "--scope", "projects:write").Secret},
		Star:       authztest.Key{Secret: createKey(tb, db, "acme", "star", "--scope", "*").Secret},
		Revoked:    authztest.Key{Secret: revoked.Secret},
		Expired:    authztest.Key{Secret: expired.Secret},
		Disabled:   authztest.Key{Secret: disabled.Secret},
		Restricted: authztest.Key{Secret: restricted.Secret},
		// Not accepted by a keygate without --accept-legacy-keys, stored
		// or not.
		Legacy: authztest.Key{Secret: authztest.LegacySecret},
	}
	time.Sleep(time.Until(*expired.ExpiresAt) + 50*time.Millisecond)
	return w
}

// outcomeNamed maps a JSON error.code to its outcome.
func outcomeNamed(tb testing.TB, name string) authz.Outcome {
	tb.Helper()
	for o := range authz.NumOutcomes {
		if authz.Outcome(o).String() == name {
			return authz.Outcome(o)
		}
	}
	tb.Fatalf("no outcome %q", name)
	return 0
}

// wantDenial fails tb unless r is keygate's denial o as the client must
// see it: status, JSON body byte for byte, and its headers.
func wantDenial(tb testing.TB, r reply, o authz.Outcome) {
	tb.Helper()
	d := o.Denial()
	if r.status != d.Status || r.body != d.Body {
		tb.Errorf("got %v; want %d %s", r, d.Status, d.Body)
		return
	}
	for _, f := range d.Headers {
		if got := r.header.Values(f.Name); len(got) != 1 || got[0] != f.Value {
			tb.Errorf("header %s: %q, want %q", f.Name, got, f.Value)
		}
	}
}

// headerList turns a case's headers into a request's, in a stable order.
func headerList(m map[string]string) [][2]string {
	var out [][2]string
	for _, name := range slices.Sorted(maps.Keys(m)) {
		out = append(out, [2]string{name, m[name]})
	}
	return out
}

func decisionTableThrough(t *testing.T, p *proxyProc, up *upstream, w *authztest.World) {
	for _, c := range w.DecisionTable(t) {
		if c.Module != "" || c.Source != "" {
			// HTTP proxies name no route module, and the client's address
			// is the test's own (TestSourceRestrictions tries others).
			continue
		}
		t.Run(c.Name, func(t *testing.T) {
			n := up.count()
			r := send(t, p.addr, c.Method, c.Path, headerList(c.Headers))
			reached := up.since(n)
			want := outcomeNamed(t, c.Want)
			if want != authz.Allow {
				if len(reached) != 0 {
					t.Errorf("a %s request reached the upstream: %+v", want, reached)
				}
				if !strings.HasPrefix(c.Path, "/") && r.status == authz.ModuleForbidden.HTTPStatus() {
					// An absolute-form target: the proxy takes it apart and
					// asks keygate about its path, /api/v1/users.
					want = authz.ModuleForbidden
				}
				wantDenial(t, r, want)
				return
			}
			body := "upstream"
			if c.Method == "HEAD" {
				body = ""
			}
			if r.status != 200 || r.body != body || len(reached) != 1 {
				t.Fatalf("got %v with %d upstream requests; want the upstream's 200", r, len(reached))
			}
			h := reached[0].header
			if h.Get("X-Keygate-Account-Id") != "acme" || h.Get("X-Keygate-Key-Id") == "" {
				t.Errorf("upstream identity %v", h)
			}
			for _, name := range []string{"X-Api-Key", "Authorization"} {
				if _, ok := h[name]; ok {
					t.Errorf("the upstream received %s", name)
				}
			}
		})
	}
}

// identityThrough forges identity headers in every spelling and smuggles
// the key in spellings keygate does not read: the upstream must see
// keygate's identity and nothing else, and no key.
func identityThrough(t *testing.T, p *proxyProc, up *upstream, w *authztest.World) {
	forged := [][2]string{
		{"X-Keygate-Key-Id", "forged"},
		{"x-keygate-account-id", "forged"},
		{"X-KEYGATE-SCOPES", "*"},
		{"X_Keygate_Scopes", "*"},
		{"x_keygate_module", "accounts"},
		{"x-keygate_account-id", "forged"},
		{"X-Keygate-Admin", "true"},
		{"x_keygate_admin", "true"},
		{"X_API_KEY", w.Star.Secret},
		{"x_api_key", w.Star.Secret},
	}
	for _, c := range []struct {
		name, path string
		key        [2]string
		scopes     string
		module     string
	}{
		{"no scopes, no module", "/status", [2]string{"X-API-Key", w.Plain.Secret}, "", ""},
		{"scoped, in a module, bearer", "/api/v1/projects/7", [2]string{"Authorization", "Bearer " + w.ReadOnly.Secret}, "projects:read", "projects"},
	} {
		t.Run(c.name, func(t *testing.T) {
			n := up.count()
			r := send(t, p.addr, "GET", c.path, append([][2]string{c.key}, forged...))
			reached := up.since(n)
			if r.status != 200 || len(reached) != 1 {
				t.Fatalf("got %v with %d upstream requests; want the upstream's 200", r, len(reached))
			}
			want := map[string]string{"x-keygate-account-id": "acme", "x-keygate-scopes": c.scopes, "x-keygate-module": c.module}
			got := map[string]string{}
			for name, values := range reached[0].header {
				norm := strings.ReplaceAll(strings.ToLower(name), "_", "-")
				switch {
				case norm == "x-api-key" || norm == "authorization":
					t.Errorf("the upstream received the credential header %s", name)
				case strings.HasPrefix(norm, "x-keygate-"):
					if _, dup := got[norm]; dup || len(values) != 1 {
						t.Errorf("the upstream received %s more than once: %q", norm, values)
					}
					got[norm] = values[0]
				}
			}
			keyID := got["x-keygate-key-id"]
			delete(got, "x-keygate-key-id")
			if keyID == "" || keyID == "forged" {
				t.Errorf("key id %q", keyID)
			}
			for name, v := range want {
				if got[name] != v {
					t.Errorf("%s = %q, want %q (all: %v)", name, got[name], v, got)
				}
				delete(got, name)
			}
			for name, v := range got {
				if v != "" || (name != "x-keygate-scopes" && name != "x-keygate-module" && name != "x-keygate-dry-run") {
					t.Errorf("the upstream received %s: %q, which keygate did not set", name, v)
				}
			}
		})
	}
}

// pathOverridesThrough sends requests carrying the headers some backends
// route by instead of the path (authz.PathOverrideHeaders), in several
// spellings, naming the request's own target or a closed module: the
// upstream never receives one; one naming the request's own target is
// allowed; X-Original-URL and X-Rewrite-URL naming a closed module are
// refused (keygate decides on them; the proxy sets the other two for
// keygate itself, from the request).
func pathOverridesThrough(t *testing.T, p *proxyProc, up *upstream, w *authztest.World) {
	const target, closed = "/api/v1/projects/7?page=2", "/api/v1/users/1"
	for _, h := range authz.PathOverrideHeaders() {
		for _, name := range []string{h, strings.ToUpper(h), http.CanonicalHeaderKey(h), strings.ReplaceAll(h, "-", "_")} {
			for _, value := range []string{target, closed, "https://api.test" + closed} {
				n := up.count()
				r := send(t, p.addr, "GET", target, [][2]string{{"X-API-Key", w.Plain.Secret}, {name, value}})
				reached := up.since(n)
				for _, a := range reached {
					for got := range a.header {
						if norm := strings.ReplaceAll(strings.ToLower(got), "_", "-"); slices.Contains(authz.PathOverrideHeaders(), norm) {
							t.Errorf("%s: %q reached the upstream as %s: %q", name, value, got, a.header[got])
						}
					}
				}
				decided := !strings.Contains(name, "_") && (h == "x-original-url" || h == "x-rewrite-url")
				switch {
				case value == target && (r.status != 200 || len(reached) != 1):
					t.Errorf("%s naming the request's own target: %v with %d upstream requests; want the upstream's 200", name, r, len(reached))
				case value != target && decided:
					wantDenial(t, r, authz.ModuleForbidden)
				}
			}
		}
	}
}

// pathsThrough sends the hostile path corpus and the look-alikes through
// the proxy with a key without scopes and a "*" key. Whatever reaches the
// upstream must be in no closed module by any reading, as the client sent
// it and as the upstream received it; every look-alike must reach it.
func pathsThrough(t *testing.T, p *proxyProc, up *upstream, w *authztest.World) {
	pol := policy.Example()
	open := func(target string) bool {
		route, err := pol.Route(target)
		return err == nil && !route.Restricted
	}
	refused := map[int]int{}
	for _, key := range []string{w.Plain.Secret, w.Star.Secret} {
		for _, c := range hostilePaths {
			n := up.count()
			r := send(t, p.addr, "GET", c.path, [][2]string{{"X-API-Key", key}})
			for _, a := range up.since(n) {
				if !open(c.path) || !open(a.target) {
					t.Errorf("hostile %s %q reached the upstream as %q", c.name, c.path, a.target)
				}
			}
			refused[r.status]++
		}
		for _, c := range lookalikePaths {
			n := up.count()
			r := send(t, p.addr, "GET", c.path, [][2]string{{"X-API-Key", key}})
			reached := up.since(n)
			if why, ok := p.refused[c.path]; ok {
				if r.status != authz.InvalidPath.HTTPStatus() || len(reached) != 0 {
					t.Errorf("look-alike %s %q: %v; %s expected a 400 (%s)", c.name, c.path, r, p.name, why)
				}
				continue
			}
			if r.status != 200 || len(reached) != 1 {
				t.Errorf("look-alike %s %q: %v; want it to reach the upstream", c.name, c.path, r)
				continue
			}
			if !open(reached[0].target) {
				t.Errorf("look-alike %s %q reached the upstream as %q, which a reading puts in a closed module", c.name, c.path, reached[0].target)
			}
		}
	}
	t.Logf("%s: %d hostile spellings × 2 keys refused with statuses %v; %d look-alikes reached the upstream per key",
		p.name, len(hostilePaths), refused, len(lookalikePaths))
}

// looseNames are header names some backend reads as an identity header, a
// path override or the key: PHP (behind php_fastcgi) maps '.' and '_' to
// '_', lighttpd every byte but letters and digits, and keygate reads every
// such byte as '-'. The values are what a forger wants.
var looseNames = [][2]string{
	{"X.Keygate.Scopes", "*"},
	{"X.Keygate.Account.Id", "victim"},
	{"X+Keygate+Module", "x"},
	{"X.Original.URL", "/api/v1/users"},
	{"x.keygate.key.id", "forged"},
	{"X-Keygate.Dry-Run", "forged"},
	{"X!Keygate!Scopes", "*"},
	{"X~Keygate~Account~Id", "victim"},
	{"X|Keygate|Scopes", "*"},
	{"X^Keygate^Scopes", "*"},
	{"X#Keygate#Scopes", "*"},
	{"X$Keygate$Scopes", "*"},
	{"X%Keygate%Scopes", "*"},
	{"X&Keygate&Scopes", "*"},
	{"X'Keygate'Scopes", "*"},
	{"X`Keygate`Scopes", "*"},
	{"X*Keygate*Scopes", "*"},
	{"X.Rewrite.URL", "/api/v1/users"},
	{"X+Original+URI", "/api/v1/users"},
	{"X.Forwarded.Uri", "/api/v1/users"},
}

// looseName reads a header name as the loosest backend does: ASCII case
// ignored, every byte other than a letter or digit read as '-'.
func looseName(name string) string {
	b := []byte(strings.ToLower(name))
	for i, c := range b {
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') {
			b[i] = '-'
		}
	}
	return string(b)
}

// looseNamesThrough sends, with a key that is allowed, headers whose names
// a backend reads as keygate's identity headers, a path override or the
// key, one at a time and all at once: the request still reaches the
// upstream, which receives no header name with a byte other than a
// letter, a digit or '-', and keygate's identity only (no forged value).
func looseNamesThrough(t *testing.T, p *proxyProc, up *upstream, w *authztest.World) {
	const target = "/api/v1/projects/7"
	cases := map[string][][2]string{"all at once": append(append([][2]string(nil), looseNames...), [2]string{"X.Api.Key", w.Star.Secret})}
	for _, h := range looseNames {
		cases[h[0]] = [][2]string{h}
	}
	cases["X.Api.Key"] = [][2]string{{"X.Api.Key", w.Star.Secret}}
	for _, name := range slices.Sorted(maps.Keys(cases)) {
		t.Run(name, func(t *testing.T) {
			n := up.count()
			r := send(t, p.addr, "GET", target, append([][2]string{{"X-API-Key", w.Plain.Secret}}, cases[name]...))
			reached := up.since(n)
			if r.status != 200 || r.body != "upstream" || len(reached) != 1 {
				t.Fatalf("got %v with %d upstream requests; want the upstream's 200", r, len(reached))
			}
			a := reached[0]
			if a.target != target {
				t.Errorf("the upstream was asked for %q, want %q", a.target, target)
			}
			for got, values := range a.header {
				loose := looseName(got)
				if loose != strings.ToLower(got) {
					t.Errorf("the upstream received %s: %q (a backend reads it as %s)", got, values, loose)
				}
				switch {
				case loose == "x-api-key" || loose == "authorization":
					t.Errorf("the upstream received the credential header %s", got)
				case slices.Contains(authz.PathOverrideHeaders(), loose):
					t.Errorf("the upstream received the path override %s: %q", got, values)
				case strings.HasPrefix(loose, "x-keygate-"):
					for _, v := range values {
						if v == "*" || v == "victim" || v == "x" || v == "forged" {
							t.Errorf("the upstream received %s: %q, a forged value", got, values)
						}
					}
				}
			}
			if got := a.header.Get("X-Keygate-Account-Id"); got != "acme" {
				t.Errorf("X-Keygate-Account-Id %q, want acme", got)
			}
			if got := a.header.Get("X-Keygate-Scopes"); got != "" {
				t.Errorf("X-Keygate-Scopes %q, want none (the key has no scopes)", got)
			}
			if got := a.header.Get("X-Keygate-Module"); got != "projects" {
				t.Errorf("X-Keygate-Module %q, want projects", got)
			}
		})
	}
}
