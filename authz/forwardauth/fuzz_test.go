package forwardauth

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/keygate/keygate/internal/authztest"
	"github.com/keygate/keygate/policy"
)

// FuzzForwardAuth drives /auth with hostile forwarded headers (either
// convention, repeated, or both at once), a hostile target under the
// Envoy prefix, and hostile key headers. Property: never a panic, only
// statuses of the decision table, and never a 200 unless the key header
// carried the one valid key and no reading of the URI reaches a closed
// module.
func FuzzForwardAuth(f *testing.F) {
	w := authztest.NewWorld(f)
	h := newTestHandler(f, w.Lookup, nil)
	valid := w.Plain.Secret
	pol := policy.Example()
	f.Add("GET", "/api/v1/projects", "", "", valid, false)
	f.Add("GET", "/api/v1/users/1", "GET", "/api/v1/projects", valid, false)
	f.Add("POST", "/api/v1/projects/..;/users", "", "", valid, true)
	f.Add("GET", "//api/v1/accounts", "", "", "Bearer "+valid, false)
	f.Add("get", "/api/v1/projects?x=%2e%2e", "GET", "/api/v1/projects", valid+","+valid, false)
	f.Fuzz(func(t *testing.T, method, uri, originalMethod, originalURI, key string, envoy bool) {
		var r *http.Request
		if envoy {
			if _, err := url.ParseRequestURI(uri); err != nil || !strings.HasPrefix(uri, "/") || strings.ContainsAny(uri, " \r\n\t") {
				return // not a request target net/http would hand to a handler
			}
			r = httptest.NewRequest("GET", DefaultEnvoyPrefix+uri, nil)
		} else {
			r = httptest.NewRequest("GET", AuthPath, nil)
			r.Header["X-Forwarded-Method"] = []string{method}
			r.Header["X-Forwarded-Uri"] = []string{uri}
			if originalMethod != "" || originalURI != "" {
				r.Header["X-Original-Method"] = []string{originalMethod}
				r.Header["X-Original-Uri"] = []string{originalURI}
			}
		}
		r.Header["X-Api-Key"] = []string{key}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		switch rec.Code {
		case 200, 400, 401, 403, 503:
		default:
			t.Fatalf("status %d", rec.Code)
		}
		if rec.Code != 200 {
			return
		}
		if strings.Trim(key, " \t") != valid {
			t.Fatalf("allowed without the valid key: %q", key)
		}
		target := uri
		if envoy {
			target = r.RequestURI[len(DefaultEnvoyPrefix):]
		}
		if route, err := pol.Route(target); err != nil || route.Restricted {
			t.Fatalf("allowed %q: Route = %+v, %v", target, route, err)
		}
		if !envoy && (originalMethod != "" || originalURI != "") && (originalURI != uri || originalMethod != method) {
			t.Fatalf("allowed with contradictory forwarded headers: %q %q vs %q %q", method, uri, originalMethod, originalURI)
		}
	})
}
