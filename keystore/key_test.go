package keystore

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestParseDuration(t *testing.T) {
	good := map[string]time.Duration{
		"30d":     30 * 24 * time.Hour,
		"1d12h":   36 * time.Hour,
		"12h":     12 * time.Hour,
		"90m":     90 * time.Minute,
		"1h30m5s": time.Hour + 30*time.Minute + 5*time.Second,
		"0s":      0,
	}
	for in, want := range good {
		got, err := ParseDuration(in)
		if err != nil || got != want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "d", "30", "-1h", "1d-1h", "+1h", "1.5d", "30days", "1w", "99999d", "1d1d", "abc"} {
		if got, err := ParseDuration(in); err == nil {
			t.Errorf("ParseDuration(%q) = %v, want an error", in, got)
		}
	}
	// Each kind of mistake has its own message.
	for in, want := range map[string]string{
		"-5d":                      "negative duration",
		"-1h":                      "negative duration",
		"99999d":                   "too long",
		"99999999999999999999999d": "too long",
		"9999999999h":              "too long",
		"1d9999999999h":            "too long",
		"3w":                       "invalid duration",
		"1.5d":                     "invalid duration",
	} {
		if _, err := ParseDuration(in); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseDuration(%q) error %v, want one saying %q", in, err, want)
		}
	}
	for _, d := range []time.Duration{30 * 24 * time.Hour, 36 * time.Hour, 90 * time.Minute} {
		if back, err := ParseDuration(FormatDuration(d)); err != nil || back != d {
			t.Errorf("FormatDuration(%v) = %q does not parse back", d, FormatDuration(d))
		}
	}
}

func TestValidateScope(t *testing.T) {
	for _, s := range []string{"*", "projects:read", "projects:write", "projects:*", "a:read", "deploy-targets:read", "x_1:write"} {
		if err := ValidateScope(s); err != nil {
			t.Errorf("ValidateScope(%q) = %v", s, err)
		}
	}
	for _, s := range []string{"", "projects", "projects:", ":read", "Projects:read", "projects:admin",
		"projects:read:x", "1projects:read", "pro jects:read", "**", "*:read", strings.Repeat("a", 64) + ":read"} {
		if err := ValidateScope(s); err == nil {
			t.Errorf("ValidateScope(%q) accepted an invalid scope", s)
		}
	}
}

func TestNormalizeScopes(t *testing.T) {
	got, err := NormalizeScopes([]string{"b:read", "a:write", "b:read"})
	if err != nil || strings.Join(got, ",") != "a:write,b:read" {
		t.Fatalf("NormalizeScopes = %v, %v", got, err)
	}
	_, err = NormalizeScopes([]string{"ok:read", "bad"})
	var ve *ValidationError
	if !errors.As(err, &ve) || ve.Field != "scopes" || !errors.Is(err, ErrInvalid) {
		t.Fatalf("NormalizeScopes(bad) = %v, want a ValidationError on scopes", err)
	}
}

func TestAllows(t *testing.T) {
	cases := []struct {
		name   string
		scopes []string
		module string
		action string
		want   bool
	}{
		{"no scopes, any module", nil, "projects", "write", true},
		{"no scopes, no module", nil, "", "read", true},
		{"star", []string{"*"}, "projects", "write", true},
		{"star, no module", []string{"*"}, "", "write", true},
		{"read allows read", []string{"projects:read"}, "projects", "read", true},
		{"read forbids write", []string{"projects:read"}, "projects", "write", false},
		{"write allows write", []string{"projects:write"}, "projects", "write", true},
		{"write does not imply read", []string{"projects:write"}, "projects", "read", false},
		{"module star", []string{"projects:*"}, "projects", "write", true},
		{"other module", []string{"billing:*"}, "projects", "read", false},
		{"prefix module is another module", []string{"project:read"}, "projects", "read", false},
		{"longer module is another module", []string{"projectsx:read"}, "projects", "read", false},
		{"scoped key, unmatched route", []string{"projects:*"}, "", "read", false},
		{"second scope matches", []string{"billing:read", "projects:write"}, "projects", "write", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := (&Key{ID: "k", AccountID: "a", Scopes: c.scopes}).Record()
			if got := r.Allows(c.module, c.action); got != c.want {
				t.Fatalf("Allows(%v, %q, %q) = %v, want %v", c.scopes, c.module, c.action, got, c.want)
			}
		})
	}
}

func TestStateAt(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	past, future := now.Add(-time.Second), now.Add(time.Second)
	cases := []struct {
		name string
		key  Key
		want State
	}{
		{"no expiry", Key{}, StateActive},
		{"expires later", Key{ExpiresAt: &future}, StateActive},
		{"expired", Key{ExpiresAt: &past}, StateExpired},
		{"expires exactly now", Key{ExpiresAt: &now}, StateExpired},
		{"revoked", Key{RevokedAt: &past}, StateRevoked},
		{"revoked by a clock ahead of ours", Key{RevokedAt: &future}, StateRevoked},
		{"revoked and expired", Key{RevokedAt: &past, ExpiresAt: &past}, StateRevoked},
		{"disabled", Key{DisabledAt: &past}, StateDisabled},
		{"disabled by a clock ahead of ours", Key{DisabledAt: &future}, StateDisabled},
		{"disabled and expired", Key{DisabledAt: &past, ExpiresAt: &past}, StateDisabled},
		{"revoked and disabled", Key{RevokedAt: &past, DisabledAt: &past}, StateRevoked},
	}
	for _, c := range cases {
		if got := c.key.StateAt(now); got != c.want {
			t.Errorf("%s: StateAt = %v, want %v", c.name, got, c.want)
		}
		// The decision's compact record agrees, also within a microsecond
		// of the expiry (stored times are whole microseconds).
		for _, at := range []time.Time{now, now.Add(-500 * time.Nanosecond), now.Add(500 * time.Nanosecond)} {
			if got, want := c.key.Record().StateAt(at), c.key.StateAt(at); got != want {
				t.Errorf("%s: Record.StateAt(%v) = %v, Key.StateAt = %v", c.name, at, got, want)
			}
		}
	}
}

func TestHasher(t *testing.T) {
	s, _ := GenerateSecret("kg")
	plain, _ := NewHasher(nil)
	if plain.Scheme() != SchemeSHA256 || len(plain.Candidates(s)) != 1 || plain.Candidates(s)[0] != plain.Digest(s) {
		t.Fatal("plain hasher: wrong scheme or candidates")
	}
	pepper := []byte(strings.Repeat("p", 32))
	peppered, err := NewHasher(pepper)
	if err != nil {
		t.Fatal(err)
	}
	c := peppered.Candidates(s)
	if peppered.Scheme() != SchemeHMACSHA256 || len(c) != 2 || c[0] != peppered.Digest(s) || c[1] != plain.Digest(s) {
		t.Fatal("peppered hasher: the HMAC digest must come first, then the legacy SHA-256 digest")
	}
	if c[0] == c[1] {
		t.Fatal("HMAC digest equals plain digest")
	}
	other, _ := NewHasher([]byte(strings.Repeat("q", 32)))
	if other.Digest(s) == peppered.Digest(s) {
		t.Fatal("two peppers give the same digest")
	}
	if _, err := NewHasher([]byte("short")); err == nil {
		t.Fatal("a short pepper was accepted")
	}
}
