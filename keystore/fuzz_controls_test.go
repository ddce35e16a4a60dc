package keystore

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/netip"
	"strings"
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
	f.Add(strings.Repeat("\x00", 64), strings.Repeat("\xff", 64)+"/8", strings.Repeat("\x01", 64))
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
			p, err := ParseCIDR(c)
			if err != nil && len(err.Error()) > 200 {
				t.Fatalf("ParseCIDR(%q): a %d-byte error", c, len(err.Error()))
			}
			if err == nil {
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

// FuzzImportLine: a line of an import file is untrusted text that may hold
// a key in clear. ParseImportLine never panics; what it accepts is a key
// Create would accept, hashed from a keygate or a legacy key or a digest;
// what it refuses is an *ImportError that does not repeat the key.
func FuzzImportLine(f *testing.F) {
	s, _ := GenerateSecret("kg")
	for _, seed := range []string{
		`{"account":"acme","name":"ci","key":"` + s.Reveal() + `"}`,
		`{"account":"acme","name":"ci","scopes":["projects:read"],"expires_at":"2099-01-01T00:00:00Z","key":"` + s.Reveal() + `"}`,
		`{"account":"acme","name":"kong","key":"kong-0123456789abcdefABCDEF"}`,
		`{"account":"acme","name":"old","sha256":"` + strings.Repeat("ab", 32) + `"}`,
		`{"account":"acme","name":"ci","key":"kong-0123456789abcdefABCDEF","key":"x"}`,
		`{"account":"acme","name":"ci","metadata":{"tier":"gold"},"allowed_cidrs":["10.0.0.0/8"],"key":"` + s.Reveal() + `"}`,
		`{"kg_secretsecretsecret":1}`,
		`[]`, `{`, `{"account":1}`, `null`,
	} {
		f.Add([]byte(seed), true)
	}
	f.Fuzz(func(t *testing.T, line []byte, legacy bool) {
		k, err := ParseImportLine(line, ImportOptions{AcceptLegacy: legacy})
		var members map[string]json.RawMessage
		var key string
		if json.Unmarshal(line, &members) == nil {
			_ = json.Unmarshal(members["key"], &key)
		}
		if err != nil {
			var ie *ImportError
			if !errors.As(err, &ie) || !errors.Is(err, ErrInvalid) {
				t.Fatalf("ParseImportLine: %T %v, want an *ImportError", err, err)
			}
			if len(key) >= 16 && bytes.Count(line, []byte(key)) == 1 && strings.Contains(err.Error(), key[4:]) {
				t.Fatalf("the error %q repeats the key %q", err, key)
			}
			return
		}
		if ValidateAccountID(k.key.AccountID) != nil || ValidateName(k.key.Name) != nil || ValidateDescription(k.key.Description) != nil {
			t.Fatalf("accepted a key Create would refuse: %+v", k.key)
		}
		switch {
		case k.sha256 != nil:
			if !legacy || k.secret != "" {
				t.Fatalf("a digest accepted: legacy %v, secret %q", legacy, k.secret)
			}
		case k.secret == "":
			t.Fatal("accepted with neither a key nor a digest")
		default:
			if _, err := ParseSecret(k.secret.Reveal()); err != nil {
				if _, lerr := ParseLegacySecret(k.secret.Reveal()); !legacy || lerr != nil {
					t.Fatalf("accepted %q: keygate %v, legacy %v (allowed %v)", k.secret.Reveal(), err, lerr, legacy)
				}
			}
		}
	})
}
