package forwardauth

import (
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/internal/authztest"
	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/limits"
)

// TestLimitHeaders: a limited key's allows and denials carry the RateLimit
// fields, its denials Retry-After, in every mode; nginx's bodiless 401
// carries them for the configuration to pass on.
func TestLimitHeaders(t *testing.T) {
	w := authztest.NewWorld(t)
	l, _ := keystore.ParseLimits([]string{"1/m"}, "")
	for m, name := range modeNames {
		t.Run(name, func(t *testing.T) {
			k := w.Lookup.Add(t, "k-limited-"+name, nil, func(k *keystore.Key) { k.Limits = l })
			lim, err := limits.New(limits.Options{Local: limits.NewLocal(nil)})
			if err != nil {
				t.Fatal(err)
			}
			h := newTestHandler(t, w.Lookup, func(c *authz.Config, _ *Options) { c.Limiter = lim })
			headers := map[string]string{"x-api-key": k.Secret}
			ok := ask(t, h, m, "GET", "/api/v1/projects", headers)
			if ok.Code != 200 || ok.Header().Get("RateLimit-Policy") != `"1/m";q=1;w=60` || ok.Header().Get("RateLimit") != `"1/m";r=0;t=60` ||
				ok.Header().Get("Retry-After") != "" {
				t.Fatalf("allow: %d %v", ok.Code, ok.Header())
			}
			if m == nginxMode {
				r := httptest.NewRequest("GET", AuthPath, nil)
				r.Header.Set("X-Original-Method", "GET")
				r.Header.Set("X-Original-Uri", "/api/v1/projects")
				r.Header.Set("X-Api-Key", k.Secret)
				r.Header.Set(ModeHeader, ModeNginx)
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, r)
				if rec.Code != 401 || rec.Header().Get(OutcomeHeader) != "rate_limited" || rec.Header().Get("Retry-After") != "60" ||
					!strings.HasPrefix(rec.Header().Get("RateLimit"), `"1/m";r=0`) {
					t.Fatalf("nginx's denial: %d %v", rec.Code, rec.Header())
				}
				return
			}
			deny := ask(t, h, m, "GET", "/api/v1/projects", headers)
			if deny.Code != 429 || deny.Header().Get("Retry-After") != "60" || deny.Header().Get("RateLimit-Policy") == "" ||
				!strings.Contains(deny.Body.String(), `"rate_limited"`) {
				t.Fatalf("denial: %d %v %s", deny.Code, deny.Header(), deny.Body)
			}
			// A key without limits: no fields.
			plain := ask(t, h, m, "GET", "/api/v1/projects", map[string]string{"x-api-key": w.Plain.Secret})
			if plain.Header().Get("RateLimit") != "" || plain.Header().Get("RateLimit-Policy") != "" {
				t.Fatalf("a key without limits got fields: %v", plain.Header())
			}
		})
	}
}
