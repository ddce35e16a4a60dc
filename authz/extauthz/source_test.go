package extauthz

import (
	"context"
	"testing"

	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/internal/authztest"
	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/policy"
)

func TestForwardedForClient(t *testing.T) {
	cases := []struct {
		name  string
		lines []string
		hops  int
		want  string // "" for none
	}{
		{"rightmost", []string{"198.51.100.7"}, 0, "198.51.100.7"},
		{"one hop", []string{"203.0.113.9, 198.51.100.7, 10.0.0.2"}, 1, "198.51.100.7"},
		{"two hops", []string{"203.0.113.9, 198.51.100.7, 10.0.0.2"}, 2, "203.0.113.9"},
		{"fewer entries than hops", []string{"198.51.100.7, 10.0.0.2"}, 2, ""},
		{"across lines, right to left", []string{"203.0.113.9", "198.51.100.7, 10.0.0.2"}, 2, "203.0.113.9"},
		{"IPv6", []string{"2001:db8::7, 10.0.0.2"}, 1, "2001:db8::7"},
		{"IPv4-mapped", []string{"::ffff:198.51.100.7"}, 0, "198.51.100.7"},
		{"spaces and tabs", []string{" 198.51.100.7 ,\t10.0.0.2"}, 1, "198.51.100.7"},
		{"garbage at the entry", []string{"evil, 10.0.0.2"}, 1, ""},
		{"empty entry at the entry", []string{"198.51.100.7,, 10.0.0.2"}, 1, ""},
		{"port (Envoy writes none)", []string{"198.51.100.7:1234"}, 0, ""},
		{"no header", nil, 0, ""},
	}
	for _, c := range cases {
		var f forwardedFor
		for _, l := range c.lines {
			f.add(l)
		}
		a, ok := f.client(c.hops)
		if got := map[bool]string{true: a.String(), false: ""}[ok]; got != c.want {
			t.Errorf("%s: client(%d) = %q, want %q", c.name, c.hops, got, c.want)
		}
	}
	var many forwardedFor
	for range maxXFFLines + 1 {
		many.add("198.51.100.7")
	}
	if _, ok := many.client(0); ok {
		t.Error("more X-Forwarded-For lines than read: a source was taken from them")
	}
}

// TestSourceFromXFF: with TrustXFF, a restricted key is judged by the
// X-Forwarded-For entry Envoy trusts, and never by one a client wrote to
// the left of it.
func TestSourceFromXFF(t *testing.T) {
	w := authztest.NewWorld(t)
	h, _ := keystore.NewHasher(nil)
	core, err := authz.NewServer(authz.Config{Lookup: w.Lookup, Policy: policy.Example(), Hasher: h})
	if err != nil {
		t.Fatal(err)
	}
	s := New(core, Options{TrustXFF: true, XFFTrustedHops: 1})
	cases := []struct {
		name, xff, peer string
		want            authz.Outcome
	}{
		{"client behind one trusted hop", "198.51.100.7, 10.0.0.2", "10.0.3.17", authz.Allow},
		{"IPv6 client", "2001:db8::7, 10.0.0.2", "10.0.3.17", authz.Allow},
		{"a forged entry to the left", "198.51.100.7, 203.0.113.9, 10.0.0.2", "10.0.3.17", authz.SourceNotAllowed},
		{"too few entries: Envoy's peer", "10.0.0.2", "198.51.100.9", authz.Allow},
		{"too few entries, peer outside", "198.51.100.7", "10.0.3.17", authz.SourceNotAllowed},
	}
	for _, c := range cases {
		req := envoyRequest("GET", "/api/v1/projects", map[string]string{"x-api-key": w.Restricted.Secret, "x-forwarded-for": c.xff}, nil)
		req.Attributes.Source.Address.GetSocketAddress().Address = c.peer
		resp := s.respond(context.Background(), viewFor(req))
		if got := resp.GetStatus().GetCode(); got != int32(c.want.GRPCCode()) || (c.want != authz.Allow) != (resp.GetDeniedResponse() != nil) {
			t.Errorf("%s: %v, want %s", c.name, resp.GetStatus(), c.want)
		}
	}
	// Without TrustXFF the header means nothing.
	plain := New(core, Options{})
	req := envoyRequest("GET", "/api/v1/projects", map[string]string{"x-api-key": w.Restricted.Secret, "x-forwarded-for": "198.51.100.7"}, nil)
	if resp := plain.respond(context.Background(), viewFor(req)); resp.GetDeniedResponse() == nil {
		t.Fatal("X-Forwarded-For was believed without TrustXFF")
	}
}
