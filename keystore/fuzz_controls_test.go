package keystore

import (
	"net/netip"
	"testing"
)

// FuzzParseMeta: --meta entries and source restrictions are untrusted text
// (a script's, or the admin API's). Whatever ParseMeta and ParseCIDR
// accept survives a Record unchanged, next to everything else the record
// holds; whatever they refuse is refused with a ValidationError that does
// not echo more than a short prefix of the input.
func FuzzParseMeta(f *testing.F) {
	f.Add("tier=gold", "10.0.0.0/8", "2001:db8::/32")
	f.Add("note=a=b, c", "192.0.2.7", "::ffff:10.0.0.0/104")
	f.Add("z_z=Zürich", "10.1.2.3/8", "fe80::1%eth0")
	f.Add("k=\x00", "", "0.0.0.0/0")
	f.Add("=v", "::/0", "10.0.0.0/33")
	f.Fuzz(func(t *testing.T, entry, cidr1, cidr2 string) {
		k, v, err := ParseMeta(entry)
		if err != nil {
			var ve *ValidationError
			if !asValidation(err, &ve) || ve.Field != "metadata" || len(err.Error()) > 200 {
				t.Fatalf("ParseMeta(%q): %v", entry, err)
			}
			k, v = "tier", "gold"
		}
		if k+"="+v != entry && err == nil {
			t.Fatalf("ParseMeta(%q) = %q, %q", entry, k, v)
		}
		var cidrs []netip.Prefix
		for _, c := range []string{cidr1, cidr2} {
			if p, err := ParseCIDR(c); err == nil {
				if p != p.Masked() || p.Addr().Is4In6() || p.Addr().Zone() != "" {
					t.Fatalf("ParseCIDR(%q) = %v: not canonical", c, p)
				}
				cidrs = append(cidrs, p)
			}
		}
		cidrs, err = NormalizeCIDRs(prefixStrings(cidrs))
		if err != nil {
			t.Fatalf("NormalizeCIDRs of accepted prefixes: %v", err)
		}
		meta := map[string]string{k: v, "other": "x"}
		if _, err := NormalizeMetadata(meta); err != nil {
			t.Fatalf("NormalizeMetadata of accepted entries: %v", err)
		}
		r := (&Key{ID: "019ab5d2-4c1e-7a3b-9f00-2b4c6d8e0f11", AccountID: "acct", Scopes: []string{"projects:read"},
			AllowedCIDRs: cidrs, Metadata: meta}).Record()
		if got, ok := r.Meta(k); !ok || got != v {
			t.Fatalf("%q=%q came back from the record as %q %v", k, v, got, ok)
		}
		n := 0
		for range r.Metadata() {
			n++
		}
		if n != len(meta) || r.ID() != "019ab5d2-4c1e-7a3b-9f00-2b4c6d8e0f11" || r.AccountID() != "acct" || r.JoinedScopes() != "projects:read" {
			t.Fatalf("record %q: %d entries, id %q, account %q, scopes %q", r.text, n, r.ID(), r.AccountID(), r.JoinedScopes())
		}
		if r.RestrictsSource() != (len(cidrs) > 0) {
			t.Fatalf("record restricts the source: %v, with %v", r.RestrictsSource(), cidrs)
		}
		for _, p := range cidrs {
			if !r.AllowsSource(p.Addr()) {
				t.Fatalf("the record refuses %v, the first address of its prefix %v", p.Addr(), p)
			}
		}
	})
}

func prefixStrings(ps []netip.Prefix) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.String()
	}
	return out
}
