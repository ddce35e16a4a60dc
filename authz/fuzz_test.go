package authz

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
)

// FuzzCheck drives the whole Check with hostile headers, paths, methods
// and route modules. Property: it never panics, never returns a gRPC
// error, and never allows a request unless one of its key headers carried
// the one valid key, exactly, and the path is not in a restricted module.
func FuzzCheck(f *testing.F) {
	w := newWorld(f)
	s := newTestServer(f, w.lookup, nil)
	valid := w.plain.secret
	f.Add("GET", "/api/v1/projects", valid, "", "", true)
	f.Add("GET", "/api/v1/projects", "", "Bearer "+valid, "", true)
	f.Add("POST", "/api/v1/users", valid, "", "", true)
	f.Add("GET", "/api/v1/projects/..;/users", valid, "", "projects", true)
	f.Add("GET", "/api/v1/projects", valid+","+valid, "", "", true)
	f.Add("GET", "/api/v1/%2e%2e/users", " "+valid+"\t", "Bearer x", "", false)
	f.Add("PUT", "//api//v1//accounts", valid, "Bearer "+valid, "accounts", false)
	f.Add("GET", "/api/v1/projects", w.revoked.secret, "", "", true)
	f.Add("GET", "/api/v1/projects", valid[:20], "", "", true)
	f.Fuzz(func(t *testing.T, method, path, apiKey, authorization, module string, mapMode bool) {
		headers := map[string]string{}
		if apiKey != "" {
			headers["x-api-key"] = apiKey
		}
		if authorization != "" {
			headers["authorization"] = authorization
		}
		var ext map[string]string
		if module != "" {
			ext = map[string]string{"module": module}
		}
		req := envoyRequest(method, path, headers, ext)
		if !mapMode {
			raw := [][2]string{}
			for k, v := range headers {
				raw = append(raw, [2]string{k, v})
			}
			req = rawRequest(method, path, raw)
			req.Attributes.ContextExtensions = ext
		}
		resp, err := s.Check(context.Background(), req)
		if err != nil {
			t.Fatalf("gRPC error: %v", err)
		}
		if codes.Code(resp.GetStatus().GetCode()) != codes.OK {
			if resp.GetDeniedResponse() == nil {
				t.Fatal("a denial without denied_response")
			}
			return
		}
		carried := trimOWS(apiKey) == valid
		if tok, ok := bearerToken(trimOWS(authorization)); ok && tok == valid {
			carried = true
		}
		if !carried {
			t.Fatalf("allowed without the valid key: x-api-key %q, authorization %q", apiKey, authorization)
		}
		if other := trimOWS(apiKey); other != "" && other != valid {
			t.Fatalf("allowed with a second, different key in x-api-key %q", apiKey)
		}
		if r, err := s.policy.Route(path); err != nil || r.Restricted {
			t.Fatalf("allowed path %q: Route = %+v, %v", path, r, err)
		}
		if module != "" {
			if m, ok := s.policy.Module(module); !ok || m.APIKeys.String() != "allow" {
				t.Fatalf("allowed route module %q", module)
			}
		}
	})
}

// FuzzCredential: header scanning never panics, and what it accepts as
// one key is trimmed and holds no comma.
func FuzzCredential(f *testing.F) {
	s := newTestServer(f, &fakeLookup{}, nil)
	f.Add("x-api-key", " kg_abc ", "authorization", "Bearer kg_abc")
	f.Add("authorization", "Bearer a, Bearer b", "x-keygate-key-id", "forged")
	f.Add("authorization", "bearer", "x-api-key", "")
	f.Add("AUTHORIZATION", "Basic x", ":path", "/")
	f.Fuzz(func(t *testing.T, n1, v1, n2, v2 string) {
		var sc headerScan
		s.scanHeader(&sc, lowerASCII(n1), v1)
		s.scanHeader(&sc, lowerASCII(n2), v2)
		c := sc.cred
		if c.found && !c.several {
			if strings.Contains(c.value, ",") || c.value != trimOWS(c.value) {
				t.Fatalf("accepted %q as one key", c.value)
			}
		}
		for _, name := range sc.spoofed {
			if !strings.HasPrefix(name, s.identityPrefix) {
				t.Fatalf("spoofed list has %q", name)
			}
		}
	})
}
