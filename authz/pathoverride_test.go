package authz

import (
	"testing"

	"github.com/keygate/keygate/internal/authztest"
)

// TestPathOverrideHeaders: a header some backend routes by is read in any
// spelling such a backend reads (any case, '_' for '-'), every value of a
// repeated one counts, and absolute URLs name their path.
func TestPathOverrideHeaders(t *testing.T) {
	w := authztest.NewWorld(t)
	s := newTestServer(t, w.Lookup, nil)
	star := w.Star.Secret
	for _, c := range []struct {
		name    string
		path    string
		headers [][2]string
		want    Outcome
	}{
		{"X-Original-URL", "/api/v1/projects", [][2]string{{"X-Original-URL", "/api/v1/users"}}, ModuleForbidden},
		{"x_original_url", "/api/v1/projects", [][2]string{{"x_original_url", "/api/v1/users"}}, ModuleForbidden},
		{"X-Rewrite_Url", "/api/v1/projects", [][2]string{{"X-Rewrite_Url", "/api/v1/auth/login"}}, ModuleForbidden},
		// forward-auth's own headers, when a client sends them to a
		// backend that routes by them (gRPC mode sees the client's).
		{"X-Original-URI", "/api/v1/projects", [][2]string{{"X-Original-URI", "/api/v1/accounts"}}, ModuleForbidden},
		{"X-Forwarded-Uri", "/api/v1/projects", [][2]string{{"x-forwarded-uri", "/api/v1/users/1?a=b"}}, ModuleForbidden},
		{"repeated, the second closed", "/api/v1/projects", [][2]string{{"X-Original-URL", "/api/v1/projects/1"}, {"X-Original-URL", "/api/v1/users"}}, ModuleForbidden},
		{"two headers, the second closed", "/api/v1/projects", [][2]string{{"X-Original-URL", "/api/v1/projects/1"}, {"X-Rewrite-URL", "/api/v1/users"}}, ModuleForbidden},
		{"absolute URL", "/api/v1/projects", [][2]string{{"X-Original-URL", "http://h:8080/api/v1/users?x"}}, ModuleForbidden},
		{"absolute URL without a path", "/api/v1/projects", [][2]string{{"X-Original-URL", "https://h"}}, Allow},
		{"absolute URL with a backslash", "/api/v1/projects", [][2]string{{"X-Original-URL", `http://h\api\v1\users`}}, InvalidPath},
		{"white space around", "/api/v1/projects", [][2]string{{"X-Original-URL", " \t/api/v1/users "}}, ModuleForbidden},
		{"empty", "/api/v1/projects", [][2]string{{"X-Original-URL", ""}}, InvalidPath},
		// Envoy merges a repeated header with ",": the backend gets each.
		{"comma-merged, the second closed", "/api/v1/projects", [][2]string{{"X-Original-URL", "/api/v1/projects,/api/v1/users"}}, ModuleForbidden},
		{"comma-merged with a space, the second closed", "/api/v1/projects", [][2]string{{"X-Original-URL", "/api/v1/projects/1, /api/v1/users"}}, InvalidPath},
		{"comma-merged, an absolute URL closed", "/api/v1/projects", [][2]string{{"X-Rewrite-URL", "/api/v1/projects,http://h/api/v1/auth"}}, ModuleForbidden},
		{"comma-merged, a relative part", "/api/v1/projects", [][2]string{{"X-Rewrite-URL", "x,/api/v1/projects"}}, InvalidPath},
		{"a comma inside one path", "/api/v1/projects", [][2]string{{"X-Original-URL", "/api/v1/projects/1,2"}}, Allow},
		{"a comma inside one path, params", "/api/v1/projects", [][2]string{{"X-Original-URL", "/api/v1/projects/1,users"}}, Allow},
		{"relative", "/api/v1/projects", [][2]string{{"X-Rewrite-URL", "api/v1/users"}}, InvalidPath},
		{"fragment in a closed module", "/api/v1/projects", [][2]string{{"X-Original-URL", "/api/v1/projects#/../users"}}, ModuleForbidden},
		{"a name that only looks like one", "/api/v1/projects", [][2]string{{"X-Original-URLs", "/api/v1/users"}, {"X-Original-Host", "/api/v1/users"}}, Allow},
		{"the same target as the request's", "/api/v1/projects/1", [][2]string{{"X-Forwarded-Uri", "/api/v1/projects/1"}}, Allow},
		{"another target in the module", "/api/v1/projects/1", [][2]string{{"X-Original-URL", "/api/v1/projects/2/tasks"}}, Allow},
	} {
		r := &Request{Method: "GET", Path: c.path}
		s.ReadHeader(r, "x-api-key", star)
		for _, h := range c.headers {
			s.ReadHeader(r, h[0], h[1])
		}
		if d := s.Decide(t.Context(), r); d.Outcome != c.want {
			t.Errorf("%s: %s (reason %s), want %s", c.name, d.Outcome, d.Reason, c.want)
		}
	}
	// Adapters that set the path after the headers (gRPC) still decide an
	// empty override, which is no target.
	r := &Request{}
	s.ReadHeader(r, "x-api-key", star)
	s.ReadHeader(r, "x-original-url", "")
	r.Method, r.Path = "GET", "/api/v1/projects"
	if d := s.Decide(t.Context(), r); d.Outcome != InvalidPath {
		t.Errorf("empty override read before the path: %s, want %s", d.Outcome, InvalidPath)
	}
	// An Envoy route module does not make a target in no module open to
	// a scoped key: the route never saw it.
	d := s.decideRequest("GET", "/api/v1/projects", map[string]string{"x-api-key": w.ReadOnly.Secret, "x-original-url": "/other"}, "projects")
	if d.Outcome != InsufficientScope {
		t.Errorf("route module, override target in no module: %s, want %s", d.Outcome, InsufficientScope)
	}
}

// TestQueryTargets: a query some framework routes by is a target too:
// WordPress's rest_route, Phalcon's _url, and a query that starts with "/"
// (CodeIgniter).
func TestQueryTargets(t *testing.T) {
	w := authztest.NewWorld(t)
	s := newTestServer(t, w.Lookup, nil)
	for _, c := range []struct {
		path string
		want Outcome
	}{
		{"/api/v1/projects?rest_route=/api/v1/users", ModuleForbidden},
		{"/?rest_route=/api/v1/users/1&x=1", ModuleForbidden},
		{"/api/v1/projects?a=1&_url=%2Fapi%2Fv1%2Fusers", ModuleForbidden},
		{"/api/v1/projects?a=1;_url=/api/v1/accounts", ModuleForbidden},
		{"/api/v1/projects?.url=/api/v1/users", ModuleForbidden},       // PHP reads ".url" as "_url"
		{"/api/v1/projects?REST_ROUTE=/api/v1/users", ModuleForbidden}, // any case
		{"/?/api/v1/users", ModuleForbidden},
		{"/index.php?/api/v1/users&x=1", ModuleForbidden},
		{"/?/api/v1/users?x=1", ModuleForbidden},
		{"/api/v1/projects?rest_route=/api/v1/projects/2", Allow},
		{"/api/v1/projects?next=/api/v1/users", Allow},      // not a routing parameter
		{"/api/v1/projects?rest_route=api/v1/users", Allow}, // no route without the "/"
		{"/api/v1/projects?x=/api/v1/users&rest_routes=/api/v1/users", Allow},
		{"/api/v1/projects?_url=/a%20b", InvalidPath},
		{"/api/v1/projects?rest[route=/api/v1/users", ModuleForbidden},   // PHP: rest_route
		{"/api/v1/projects?rest%5Broute=/api/v1/users", ModuleForbidden}, // the same, escaped
		{"/api/v1/projects?rest_route=%2Fapi%2Fv1%2Fusers%2F1%ZZ", InvalidPath},
		{"/api/v1/projects?rest_route=+/api/v1/users", Allow}, // " /api…" names no route
		{"/api/v1/projects?rest[route]=/api/v1/users", Allow}, // an array
	} {
		d := s.decideRequest("GET", c.path, map[string]string{"x-api-key": w.Star.Secret}, "")
		if d.Outcome != c.want {
			t.Errorf("%s: %s (reason %s), want %s", c.path, d.Outcome, d.Reason, c.want)
		}
	}
	// A scoped key needs the scopes of the module the query names.
	d := s.decideRequest("GET", "/api/v1/projects?rest_route=/api/v1/deployments", map[string]string{"x-api-key": w.ReadOnly.Secret}, "")
	if d.Outcome != InsufficientScope {
		t.Errorf("rest_route in another module, projects:read key: %s, want %s", d.Outcome, InsufficientScope)
	}
}

func TestOverrideTarget(t *testing.T) {
	for in, want := range map[string]string{
		"/a/b?c":          "/a/b?c",
		" \t/a ":          "/a",
		"http://h/a?b":    "/a?b", // policy.PathOfURL
		"/x?u=http://h/a": "/x?u=http://h/a",
		"":                "",
	} {
		if got := overrideTarget(in); got != want {
			t.Errorf("overrideTarget(%q) = %q, want %q", in, got, want)
		}
	}
}
