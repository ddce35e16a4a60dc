package forwardauth

import (
	"strings"
	"testing"

	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/internal/authztest"
)

// TestMetaHeaders: the --meta-header entries of a key go upstream in both
// HTTP modes; a forged copy never survives.
func TestMetaHeaders(t *testing.T) {
	w := authztest.NewWorld(t)
	h := newTestHandler(t, w.Lookup, func(c *authz.Config, _ *Options) { c.MetaHeaders = []string{"tier", "cost_center", "region"} })
	forged := map[string]string{"x-api-key": w.Gold.Secret, "X-Keygate-Meta-Tier": "platinum", "X-Keygate-Meta-Region": "forged"}

	// /auth: every metadata header, empty when the key has no such entry,
	// so that a proxy copying them overwrites what the client sent.
	resp := ask(t, h, caddyMode, "GET", "/api/v1/projects", forged)
	for name, want := range map[string]string{"X-Keygate-Meta-Tier": "gold", "X-Keygate-Meta-Cost-Center": "eng-42", "X-Keygate-Meta-Region": ""} {
		if got, ok := resp.Header()[name]; !ok || len(got) != 1 || got[0] != want {
			t.Errorf("/auth %s = %q, want %q", name, got, want)
		}
	}

	// Envoy: the empty ones removed, and the forged one with them.
	resp = ask(t, h, envoyMode, "GET", "/api/v1/projects", forged)
	remove := strings.Split(resp.Header().Get(envoyRemoveHeader), ",")
	if resp.Header().Get("X-Keygate-Meta-Tier") != "gold" || !contains(remove, "x-keygate-meta-region") || contains(remove, "x-keygate-meta-tier") {
		t.Errorf("Envoy mode: tier %q, removals %q", resp.Header().Get("X-Keygate-Meta-Tier"), remove)
	}
}
