package main

import (
	"strings"
	"testing"

	"github.com/keygate/keygate/internal/pgtest"
)

// TestLimitFlagsRefused: bad limit flags of serve are one line naming the
// flag, found before any I/O (nothing migrated), and a Redis URL's
// password never shows.
func TestLimitFlagsRefused(t *testing.T) {
	for _, c := range []struct {
		name string
		args []string
		flag string
	}{
		{"redis without a URL", []string{"--limit-store", "redis"}, "--redis-url"},
		{"a URL for the local store", []string{"--redis-url", "redis://127.0.0.1:6379/0"}, "--redis-url"},
		{"a URL that does not parse", []string{"--limit-store", "redis", "--redis-url", "http://user:s3cret@host:6379"}, "--redis-url"},
		{"a bad port", []string{"--limit-store", "redis", "--redis-url", "redis://user:s3cret@host:port/0"}, "--redis-url"},
		{"an unknown store", []string{"--limit-store", "memcached"}, "--limit-store"},
		{"an unknown fallback", []string{"--limit-fallback", "maybe"}, "--limit-fallback"},
		{"zero redis timeout", []string{"--redis-timeout", "0s"}, "--redis-timeout"},
		{"zero heartbeat", []string{"--heartbeat-interval", "0s"}, "--heartbeat-interval"},
		{"short retention", []string{"--usage-retention", "1d"}, "--usage-retention"},
	} {
		t.Run(c.name, func(t *testing.T) {
			db := pgtest.NewEmptyDatabase(t)
			r := runCLI(t, db, append([]string{"serve", "--migrate", "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"}, c.args...)...)
			if r.code != 2 || !strings.Contains(r.stderr, c.flag) || strings.Count(strings.TrimSpace(r.stderr), "\n") > 1 {
				t.Fatalf("exit %d (%q), want 2 naming %s in one line", r.code, r.stderr, c.flag)
			}
			if strings.Contains(r.stderr, "s3cret") {
				t.Fatalf("the error shows the password: %q", r.stderr)
			}
			if r := runCLI(t, db, "keys", "list"); !strings.Contains(r.stderr, "no keygate schema") {
				t.Fatalf("serve with a bad limit flag migrated the database (keys list: %q)", r.stderr)
			}
		})
	}
}

// TestKeyLimitFlags: keys create and update take --limit and --quota,
// refuse bad ones naming the flag with nothing written, and keys show
// prints the limits and the quota.
func TestKeyLimitFlags(t *testing.T) {
	db := pgtest.NewDatabase(t)
	k := decode[struct {
		ID     string
		Limits []string
		Quota  *string
	}](t, mustRun(t, db, "keys", "create", "--account", "acme", "--name", "n", "--limit", "100/s", "--limit", "5000/d,burst=50", "--quota", "1000000/month", "-o", "json"))
	if strings.Join(k.Limits, " ") != "100/s 5000/d,burst=50" || k.Quota == nil || *k.Quota != "1000000/month" {
		t.Fatalf("created: %+v", k)
	}
	for _, c := range []struct {
		args []string
		flag string
	}{
		{[]string{"--limit", "0/s"}, "--limit"},
		{[]string{"--limit", "abc"}, "--limit"},
		{[]string{"--limit", "10/fortnight"}, "--limit"},
		{[]string{"--limit", "100/s", "--quota", "10/day"}, "--quota"},
		{[]string{"--quota", "10/year"}, "--quota"},
	} {
		r := runCLI(t, db, append([]string{"keys", "create", "--account", "acme", "--name", "bad"}, c.args...)...)
		if r.code != 2 || !strings.Contains(r.stderr, c.flag) {
			t.Errorf("create %v: exit %d %q, want 2 naming %s", c.args, r.code, r.stderr, c.flag)
		}
		r = runCLI(t, db, append([]string{"keys", "update", k.ID}, c.args...)...)
		if r.code != 2 || !strings.Contains(r.stderr, c.flag) {
			t.Errorf("update %v: exit %d %q, want 2 naming %s", c.args, r.code, r.stderr, c.flag)
		}
	}
	mustRun(t, db, "keys", "update", k.ID, "--limit", "7/m", "--clear-quota")
	out := mustRun(t, db, "keys", "show", k.ID)
	if !strings.Contains(out, "Limits:") || !strings.Contains(out, "7/m") || !strings.Contains(out, "Quota:        -") {
		t.Fatalf("keys show:\n%s", out)
	}
	if out := mustRun(t, db, "keys", "usage", k.ID); !strings.Contains(out, "TOTAL") {
		t.Fatalf("keys usage:\n%s", out)
	}
}
