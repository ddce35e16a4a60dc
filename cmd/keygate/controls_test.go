package main

import (
	"strings"
	"testing"
	"time"
)

// Bad control flags exit 2 naming the flag, before any I/O: the database
// here does not exist, and is never dialled.
func TestServeBadControlFlags(t *testing.T) {
	cases := map[string]struct {
		args []string
		want string
	}{
		"negative hops":     {[]string{"--xff-trusted-hops", "-1"}, "--xff-trusted-hops"},
		"hops not a number": {[]string{"--xff-trusted-hops", "two"}, "--xff-trusted-hops"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			start := time.Now()
			r := runCLI(t, "postgres://keygate@127.0.0.1:1/none?connect_timeout=3", append([]string{"serve", "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"}, c.args...)...)
			if line := strings.TrimSpace(r.stderr); r.code != 2 || !strings.Contains(line, c.want) || strings.Contains(line, "\n") {
				t.Fatalf("exit %d, stderr %q; want 2 and one line naming %s", r.code, r.stderr, c.want)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("took %v: the flag was checked after dialling the database", d)
			}
		})
	}
}
