package authz

import (
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/keygate/keygate/internal/authztest"
)

// FuzzCredential: header scanning never panics, and what it accepts as
// one key is trimmed and holds no comma.
func FuzzCredential(f *testing.F) {
	s := newTestServer(f, &authztest.Lookup{}, nil)
	f.Add("x-api-key", " kg_abc ", "authorization", "Bearer kg_abc")
	f.Add("authorization", "Bearer a, Bearer b", "x-keygate-key-id", "forged")
	f.Add("authorization", "bearer", "x-api-key", "")
	f.Add("AUTHORIZATION", "Basic x", ":path", "/")
	f.Fuzz(func(t *testing.T, n1, v1, n2, v2 string) {
		var r Request
		s.ReadHeader(&r, n1, v1)
		s.ReadHeader(&r, n2, v2)
		c := r.cred
		if c.found && !c.several {
			if strings.Contains(c.value, ",") || c.value != trimOWS(c.value) {
				t.Fatalf("accepted %q as one key", c.value)
			}
		}
		for _, name := range r.spoofed {
			if !hasIdentityPrefix(name, s.identityPrefix) || name != lowerASCII(name) {
				t.Fatalf("spoofed list has %q", name)
			}
		}
	})
}

// FuzzReadings: a request read by every reading a backend may give its
// method and its path, with one extra header (a method or path override,
// in any spelling). Property: never a panic; an allow of the read-only key
// (projects:read) means that no reading of the method is anything but a
// safe one and no target lands outside projects; an allow of the
// write-only key (projects:write) that no reading of the method is a safe
// one. The reference readings are written with net/url, apart from the
// code under test.
func FuzzReadings(f *testing.F) {
	w := authztest.NewWorld(f)
	s := newTestServer(f, w.Lookup, nil)
	f.Add("GET", "/api/v1/projects/7", "X-HTTP-Method-Override", "DELETE")
	f.Add("POST", "/api/v1/projects/7?a=1;_method=GET", "x", "y")
	f.Add("POST", "/api/v1/projects/7?_method=G%45T", "x", "y")
	f.Add("get", "/api/v1/projects", "x_method_override", "head")
	f.Add("GET", "/api/v1/projects", "X-Original-URL", "/api/v1/users")
	f.Add("GET", "/api/v1/projects", "x_rewrite_url", "https://h/api/v1/projects/1?_method=put")
	f.Add("GET", "/api/v1/projects/a,b", "X-Forwarded-Uri", "/api/v1/accounts,x")
	safe := func(m string) bool { return slices.Contains([]string{"GET", "HEAD", "OPTIONS"}, m) }
	f.Fuzz(func(t *testing.T, method, target, name, value string) {
		norm := strings.ReplaceAll(strings.ToLower(name), "_", "-")
		isMethodOverride := slices.Contains(MethodOverrideHeaders(), norm)
		isPathOverride := slices.Contains(PathOverrideHeaders(), norm)
		// Every method a backend may run: the request's, upper-cased too,
		// and those the override and the _method parameters name.
		// A repeated header reaches keygate merged with "," (Envoy) and the
		// backend as several: each part is a reading too.
		parts := append([]string{value}, strings.Split(value, ",")...)
		methods := []string{method, strings.ToUpper(method)}
		targets := []string{target}
		for i, p := range parts {
			p = strings.Trim(p, " \t")
			switch {
			case isMethodOverride:
				methods = append(methods, strings.ToUpper(p))
			case isPathOverride && (i == 0 || strings.HasPrefix(p, "/")):
				targets = append(targets, p)
			}
		}
		for _, t := range targets {
			for _, m := range refMethodParams(t) {
				methods = append(methods, strings.ToUpper(m))
			}
		}
		for _, k := range []struct {
			secret, scope string
			read          bool
		}{{w.ReadOnly.Secret, "projects:read", true}, {w.WriteOnly.Secret, "projects:write", false}} {
			r := &Request{Method: method, Path: target}
			s.ReadHeader(r, "x-api-key", k.secret)
			s.ReadHeader(r, name, value)
			if d := s.Decide(t.Context(), r); d.Outcome != Allow {
				continue
			}
			for i, m := range methods {
				if i == 0 && k.read && !safe(m) || i > 0 && safe(m) != k.read {
					t.Fatalf("key %s allowed %s %q with %s: %q; a backend may run it as %q", k.scope, method, target, name, value, m)
				}
			}
			for _, tg := range targets {
				if strings.Contains(tg, "://") {
					continue // an absolute URL: its path is decided (TestOverrideTarget)
				}
				route, err := s.policy.Route(tg)
				if err != nil || route.Restricted || slices.ContainsFunc(route.Modules, func(m string) bool { return m != "projects" }) {
					t.Fatalf("allowed %s %q with %s: %q; target %q routes to %+v, %v", method, target, name, value, tg, route, err)
				}
			}
		}
	})
}

// refMethodParams returns the values of the _method parameters in the
// query of target, as the backends that split on '&' and ';' read them:
// name decoded and in any case, value raw and decoded.
func refMethodParams(target string) []string {
	_, q, ok := strings.Cut(target, "?")
	if !ok {
		return nil
	}
	var out []string
	for _, p := range strings.FieldsFunc(q, func(r rune) bool { return r == '&' || r == ';' }) {
		n, v, _ := strings.Cut(p, "=")
		if name, err := url.QueryUnescape(n); err != nil || !strings.EqualFold(name, "_method") {
			continue
		}
		out = append(out, v)
		if d, err := url.QueryUnescape(v); err == nil {
			out = append(out, d)
		}
	}
	return out
}
