package keystore

import (
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestParseCIDR(t *testing.T) {
	cases := []struct {
		in, want string // want "" for an error, containing problem
		problem  string
	}{
		{"10.0.0.0/8", "10.0.0.0/8", ""},
		{" 192.0.2.7 ", "192.0.2.7/32", ""},
		{"2001:db8::/32", "2001:db8::/32", ""},
		{"2001:db8::1", "2001:db8::1/128", ""},
		{"::ffff:10.0.0.0/104", "10.0.0.0/8", ""},
		{"::ffff:192.0.2.7", "192.0.2.7/32", ""},
		{"0.0.0.0/0", "0.0.0.0/0", ""},
		{"10.1.2.3/8", "", "did you mean 10.0.0.0/8"},
		{"::ffff:10.0.0.0/64", "", "at least 96 bits"},
		{"fe80::1%eth0", "", "not a CIDR prefix"},
		{"10.0.0.0/33", "", "not a CIDR prefix"},
		{"example.com", "", "not a CIDR prefix"},
		{"", "", "not a CIDR prefix"},
	}
	for _, c := range cases {
		p, err := ParseCIDR(c.in)
		switch {
		case c.want != "" && (err != nil || p.String() != c.want):
			t.Errorf("ParseCIDR(%q) = %v, %v; want %s", c.in, p, err, c.want)
		case c.want == "" && (err == nil || !strings.Contains(err.Error(), c.problem)):
			t.Errorf("ParseCIDR(%q) = %v, %v; want an error saying %q", c.in, p, err, c.problem)
		}
	}
	got, err := NormalizeCIDRs([]string{"2001:db8::/32", "10.0.0.0/8", "10.0.0.0/8", "192.0.2.7"})
	if err != nil || len(got) != 3 || got[0].String() != "10.0.0.0/8" || got[1].String() != "192.0.2.7/32" {
		t.Fatalf("NormalizeCIDRs = %v, %v; want sorted without duplicates", got, err)
	}
	if _, err := NormalizeCIDRs(make([]string, MaxAllowedCIDRs+1)); err == nil {
		t.Fatal("more than MaxAllowedCIDRs prefixes accepted")
	}
	var ve *ValidationError
	if _, err := NormalizeCIDRs([]string{"nope"}); err == nil || !asValidation(err, &ve) || ve.Field != "allowed_cidrs" {
		t.Fatalf("NormalizeCIDRs error %v, want a ValidationError for allowed_cidrs", err)
	}
}

func asValidation(err error, ve **ValidationError) bool {
	v, ok := err.(*ValidationError)
	*ve = v
	return ok
}

func TestRecordSourcesAndMetadata(t *testing.T) {
	cidrs, err := NormalizeCIDRs([]string{"10.0.0.0/8", "2001:db8::/32", "192.0.2.7"})
	if err != nil {
		t.Fatal(err)
	}
	k := &Key{ID: "019ab5d2-4c1e-7a3b-9f00-2b4c6d8e0f11", AccountID: "acme, inc.", Scopes: []string{"projects:read"},
		AllowedCIDRs: cidrs, UpdatedAt: time.Unix(1700000000, 123000)}
	r := k.Record()
	if r.ID() != k.ID || r.AccountID() != k.AccountID || r.JoinedScopes() != "projects:read" || r.Version() != k.UpdatedAt.UnixMicro() {
		t.Fatalf("record %q: id %q account %q scopes %q", r.text, r.ID(), r.AccountID(), r.JoinedScopes())
	}
	if !r.RestrictsSource() {
		t.Fatal("a key with prefixes does not restrict its source")
	}
	for addr, want := range map[string]bool{
		"10.1.2.3": true, "192.0.2.7": true, "192.0.2.8": false, "11.0.0.1": false,
		"2001:db8::42": true, "2001:db9::1": false, "::ffff:10.9.9.9": true, "::1": false,
	} {
		if got := r.AllowsSource(netip.MustParseAddr(addr)); got != want {
			t.Errorf("AllowsSource(%s) = %v, want %v", addr, got, want)
		}
	}
	if r.AllowsSource(netip.Addr{}) {
		t.Error("a restricted key allows an unknown source")
	}
	open := (&Key{ID: "k", AccountID: "a"}).Record()
	if open.RestrictsSource() || !open.AllowsSource(netip.Addr{}) || !open.AllowsSource(netip.MustParseAddr("203.0.113.9")) {
		t.Error("a key without prefixes must allow every source, known or not")
	}
	for range r.Metadata() {
		t.Error("metadata on a key that has none")
	}
}

func TestRecordMetadata(t *testing.T) {
	cidrs, _ := NormalizeCIDRs([]string{"2001:db8::/32"})
	meta := map[string]string{"tier": "gold", "a": "x=y", "z_z": "Zürich"}
	for _, k := range []*Key{
		{ID: "k", AccountID: "a", Metadata: meta},
		{ID: "k", AccountID: "a", Scopes: []string{"*"}, AllowedCIDRs: cidrs, Metadata: meta},
	} {
		r := k.Record()
		var keys []string
		for key, v := range r.Metadata() {
			keys = append(keys, key)
			if meta[key] != v {
				t.Errorf("%s = %q, want %q", key, v, meta[key])
			}
		}
		if strings.Join(keys, ",") != "a,tier,z_z" {
			t.Errorf("metadata keys %v, want them in order", keys)
		}
		if v, ok := r.Meta("tier"); !ok || v != "gold" {
			t.Errorf("Meta(tier) = %q %v", v, ok)
		}
		if _, ok := r.Meta("none"); ok {
			t.Error("Meta of an absent key")
		}
		if r.RestrictsSource() != (k.AllowedCIDRs != nil) || r.JoinedScopes() != strings.Join(k.Scopes, ",") {
			t.Errorf("record %q: restricts %v, scopes %q", r.text, r.RestrictsSource(), r.JoinedScopes())
		}
	}
}
