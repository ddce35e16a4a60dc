package authz

import (
	"strings"
	"testing"

	"github.com/keygate/keygate/internal/authztest"
)

// FuzzCredential: header scanning never panics, and what it accepts as
// one key is trimmed and holds no comma.
func FuzzCredential(f *testing.F) {
	s := newTestServer(f, &authztest.Lookup{}, nil)
	f.Add("x-api-key", " kg_abc ", "authorization", "Bearer kg_abc")
	f.Add("authorization", "Bearer a, Bearer b", "x-keygate-key-id", "forged")
	f.Add("authorization", "bearer", "x-api-key", "")
	f.Add("AUTHORIZATION", "Basic x", ":path", "/")
	f.Fuzz(func(t *testing.T, n1, v1, n2, v2 string) {
		var r Request
		s.ReadHeader(&r, n1, v1)
		s.ReadHeader(&r, n2, v2)
		c := r.cred
		if c.found && !c.several {
			if strings.Contains(c.value, ",") || c.value != trimOWS(c.value) {
				t.Fatalf("accepted %q as one key", c.value)
			}
		}
		for _, name := range r.spoofed {
			if !hasIdentityPrefix(name, s.identityPrefix) || name != lowerASCII(name) {
				t.Fatalf("spoofed list has %q", name)
			}
		}
	})
}
