package main

import (
	"strings"
	"testing"

	"github.com/keygate/keygate/internal/storetest"
)

// Bad control flags exit 2 naming the flag, before any I/O: the database
// here is never dialled (neverDialled).
func TestServeBadControlFlags(t *testing.T) {
	t.Parallel()
	cases := map[string]struct {
		args []string
		want string
	}{
		"negative hops":      {[]string{"--xff-trusted-hops", "-1"}, "--xff-trusted-hops"},
		"hops not a number":  {[]string{"--xff-trusted-hops", "two"}, "--xff-trusted-hops"},
		"no window":          {[]string{"--failure-limit", "20"}, "--failure-limit: \"20\": want COUNT/WINDOW, like 20/1m"},
		"zero count":         {[]string{"--failure-limit", "0/1m"}, "--failure-limit: the count must be 1 to 10000"},
		"tiny window":        {[]string{"--failure-limit", "20/1ms"}, "--failure-limit: the window must be"},
		"meta header syntax": {[]string{"--meta-header", "Tier"}, "--meta-header: key \"Tier\""},
		"meta header twice":  {[]string{"--meta-header", "tier", "--meta-header", "tier"}, "--meta-header: \"tier\" is listed twice"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			r := runCLI(t, neverDialled(t), append([]string{"serve", "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"}, c.args...)...)
			if line := strings.TrimSpace(r.stderr); r.code != 2 || !strings.Contains(line, c.want) || strings.Contains(line, "\n") {
				t.Fatalf("exit %d, stderr %q; want 2 and one line naming %s", r.code, r.stderr, c.want)
			}
		})
	}
}

// TestServeMetadata: a key tagged tier=gold with the CLI has its tier in
// the Check response's dynamic metadata, and upstream with --meta-header.
func TestServeMetadata(t *testing.T) {
	t.Parallel()
	db := storetest.NewDatabase(t)
	id, secret := createKey(t, db, "--meta", "tier=gold", "--meta", "cost_center=eng-42")
	inst := startServe(t, db, "--meta-header", "tier", "--meta-header", "cost_center")
	resp := inst.check(t, checkRequest("GET", "/api/v1/projects", map[string]string{"x-api-key": secret, "x-keygate-meta-tier": "platinum"}, ""))
	md := resp.GetDynamicMetadata().GetFields()
	meta := md["meta"].GetStructValue().GetFields()
	if md["key_id"].GetStringValue() != id || meta["tier"].GetStringValue() != "gold" || meta["cost_center"].GetStringValue() != "eng-42" {
		t.Fatalf("dynamic_metadata %v", resp.GetDynamicMetadata())
	}
	set := map[string]string{}
	for _, h := range resp.GetOkResponse().GetHeaders() {
		set[h.GetHeader().GetKey()] = h.GetHeader().GetValue()
	}
	if set["x-keygate-meta-tier"] != "gold" || set["x-keygate-meta-cost-center"] != "eng-42" {
		t.Fatalf("upstream headers %v", set)
	}
}
