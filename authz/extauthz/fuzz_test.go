package extauthz

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/keygate/keygate/internal/authztest"
	"github.com/keygate/keygate/policy"
)

// trimOWS trims the white space HTTP allows around a value (an oracle
// written apart from the code under test).
func trimOWS(s string) string { return strings.Trim(s, " \t") }

// FuzzCheck drives the whole Check with hostile headers, paths, methods
// and route modules. Property: it never panics, never returns a gRPC
// error, and never allows a request unless one of its key headers carried
// the one valid key, exactly, and the path is not in a restricted module.
func FuzzCheck(f *testing.F) {
	w := authztest.NewWorld(f)
	s := newTestServer(f, w.Lookup, nil)
	valid := w.Plain.Secret
	pol := policy.Example()
	f.Add("GET", "/api/v1/projects", valid, "", "", true)
	f.Add("GET", "/api/v1/projects", "", "Bearer "+valid, "", true)
	f.Add("POST", "/api/v1/users", valid, "", "", true)
	f.Add("GET", "/api/v1/projects/..;/users", valid, "", "projects", true)
	f.Add("GET", "/api/v1/projects", valid+","+valid, "", "", true)
	f.Add("GET", "/api/v1/%2e%2e/users", " "+valid+"\t", "Bearer x", "", false)
	f.Add("PUT", "//api//v1//accounts", valid, "Bearer "+valid, "accounts", false)
	f.Add("GET", "/api/v1/projects", w.Revoked.Secret, "", "", true)
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
		if a := trimOWS(authorization); len(a) > 7 && strings.EqualFold(a[:7], "bearer ") && trimOWS(a[7:]) == valid {
			carried = true
		}
		if !carried {
			t.Fatalf("allowed without the valid key: x-api-key %q, authorization %q", apiKey, authorization)
		}
		if other := trimOWS(apiKey); other != "" && other != valid {
			t.Fatalf("allowed with a second, different key in x-api-key %q", apiKey)
		}
		if r, err := pol.Route(path); err != nil || r.Restricted {
			t.Fatalf("allowed path %q: Route = %+v, %v", path, r, err)
		}
		if module != "" {
			if m, ok := pol.Module(module); !ok || m.APIKeys.String() != "allow" {
				t.Fatalf("allowed route module %q", module)
			}
		}
	})
}
