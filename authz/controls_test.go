package authz

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/keygate/keygate/internal/authztest"
)

func TestMetaHeaders(t *testing.T) {
	w := authztest.NewWorld(t)
	s := newTestServer(t, w.Lookup, func(c *Config) { c.MetaHeaders = []string{"tier", "cost_center", "region"} })
	d := s.decideRequest("GET", "/api/v1/projects", map[string]string{"x-api-key": w.Gold.Secret,
		"X-Keygate-Meta-Tier": "platinum", "x_keygate_meta_region": "forged", "x-keygate-meta-other": "forged"}, "")
	if d.Outcome != Allow {
		t.Fatalf("%s (%s)", d.Outcome, d.Reason)
	}
	id := s.Identity(&d)
	want := []Field{{"x-keygate-meta-tier", "gold"}, {"x-keygate-meta-cost-center", "eng-42"}, {"x-keygate-meta-region", ""}}
	if !slices.Equal(id.Meta, want) {
		t.Fatalf("metadata headers %v, want %v", id.Meta, want)
	}
	// Forged copies of metadata headers are set or removed with them; any
	// other forged header with the prefix is removed.
	if !slices.Contains(id.Remove, "x-keygate-meta-other") || slices.Contains(id.Remove, "x-keygate-meta-tier") {
		t.Fatalf("Remove %v", id.Remove)
	}
	// A key without metadata: every metadata header empty.
	d = s.decideRequest("GET", "/api/v1/projects", map[string]string{"x-api-key": w.Plain.Secret}, "")
	if id := s.Identity(&d); len(id.Meta) != 3 || id.Meta[0].Value != "" || id.Meta[1].Value != "" {
		t.Fatalf("metadata headers of a key without metadata: %v", id.Meta)
	}

	for _, bad := range [][]string{{"Tier"}, {"tier", "tier"}, {"a-b"}, {strings.Repeat("k", 33)}, make([]string, 17)} {
		_, err := NewServer(Config{Lookup: w.Lookup, Policy: s.policy, Hasher: s.hasher, MetaHeaders: bad})
		var ce *ConfigError
		if !errors.As(err, &ce) || ce.Setting != "MetaHeaders" {
			t.Errorf("MetaHeaders %q: %v, want a ConfigError naming MetaHeaders", bad, err)
		}
	}
}

func TestAcceptLegacyKeys(t *testing.T) {
	w := authztest.NewWorld(t)
	s := newTestServer(t, w.Lookup, func(c *Config) { c.AcceptLegacyKeys = true })
	tampered := w.Plain.Secret[:10] + authztest.FlipChar(w.Plain.Secret[10]) + w.Plain.Secret[11:]
	for _, c := range []struct {
		name, key string
		want      Outcome
		reason    Reason
		lookups   int64
	}{
		{"the legacy key", w.Legacy.Secret, Allow, ReasonAllowed, 1},
		{"as a bearer token", "Bearer " + w.Legacy.Secret, Allow, ReasonAllowed, 1},
		{"an unknown legacy key", "kong-unknown-0123456789", InvalidKey, ReasonUnknown, 1},
		{"a keygate key", w.Plain.Secret, Allow, ReasonAllowed, 1},
		{"a mistyped keygate key: no lookup", tampered, InvalidKey, ReasonMalformed, 0},
		{"too short: no lookup", "kong-short", InvalidKey, ReasonMalformed, 0},
		{"a space: no lookup", "kong 0123456789abcdef", InvalidKey, ReasonMalformed, 0},
		{"too long: no lookup", strings.Repeat("k", 257), InvalidKey, ReasonMalformed, 0},
	} {
		before := w.Lookup.Calls.Load()
		header := "x-api-key"
		if strings.HasPrefix(c.key, "Bearer ") {
			header = "authorization"
		}
		d := s.decideRequest("GET", "/api/v1/projects", map[string]string{header: c.key}, "")
		if d.Outcome != c.want || d.Reason != c.reason || w.Lookup.Calls.Load()-before != c.lookups {
			t.Errorf("%s: %s (%s) with %d lookups; want %s (%s) with %d", c.name, d.Outcome, d.Reason, w.Lookup.Calls.Load()-before, c.want, c.reason, c.lookups)
		}
	}
}
