package authz

import (
	"slices"
	"testing"

	"github.com/keygate/keygate/internal/authztest"
)

// Backends read a header's name loosely: CGI, WSGI and Rack give '_' and
// '-' the same name, PHP also '.', lighttpd every byte that is not a
// letter or digit. keygate reads every header it acts on that way.
func TestHeaderNamesReadAsBackendsReadThem(t *testing.T) {
	w := authztest.NewWorld(t)
	s := newTestServer(t, w.Lookup, nil)

	forged := []string{"x.keygate.scopes", "X+Keygate+Account+Id", "x~keygate|module", "X.Keygate_Dry-Run"}
	headers := map[string]string{"x-api-key": w.Plain.Secret}
	for _, h := range forged {
		headers[h] = "forged"
	}
	d := s.decideRequest("GET", "/api/v1/projects", headers, "")
	if d.Outcome != Allow || !d.Forged() {
		t.Fatalf("outcome %s, forged %v; want an allow that saw the forged headers", d.Outcome, d.Forged())
	}
	removed := s.Identity(&d).Remove
	for _, h := range forged {
		if !slices.Contains(removed, lowerASCII(h)) {
			t.Errorf("forged %s not removed (removals %v)", h, removed)
		}
	}

	// A path override in any such spelling is decided too.
	for _, h := range []string{"X.Original.URL", "x+rewrite+url", "X-Original.Url"} {
		d := s.decideRequest("GET", "/api/v1/projects", map[string]string{"x-api-key": w.Plain.Secret, h: "/api/v1/users/1"}, "")
		if d.Outcome != ModuleForbidden {
			t.Errorf("%s: /api/v1/users/1: %s, want %s", h, d.Outcome, ModuleForbidden)
		}
	}
	// A name that only looks alike is not one.
	d = s.decideRequest("GET", "/api/v1/projects", map[string]string{"x-api-key": w.Plain.Secret, "X-Original-URLs": "/api/v1/users/1"}, "")
	if d.Outcome != Allow {
		t.Errorf("X-Original-URLs: %s, want %s", d.Outcome, Allow)
	}
}
