package admin_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3filter"

	"github.com/keygate/keygate/admin"
	"github.com/keygate/keygate/internal/storetest"
	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/policy"
)

// TestDocumentMatchesRoutes keeps the OpenAPI document and the server's
// routes in step: every documented operation is a route, and every API
// route is documented.
func TestDocumentMatchesRoutes(t *testing.T) {
	t.Parallel()
	doc, _ := openAPI(t)
	if doc.OpenAPI != "3.1.0" || !doc.IsOpenAPI31OrLater() {
		t.Fatalf("openapi %q, want 3.1.0", doc.OpenAPI)
	}
	var documented []string
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			documented = append(documented, method+" "+path)
		}
	}
	store, err := keystore.New(storetest.Open(t, storetest.NewDatabase(t)), keystore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := admin.New(admin.Config{Store: store, Policy: policy.Example(), Tokens: emptyTokens(t)})
	if err != nil {
		t.Fatal(err)
	}
	var routes []string
	for _, p := range admin.RoutePatterns(srv) {
		if strings.Contains(p, " /v1/") {
			routes = append(routes, p)
		}
	}
	slices.Sort(documented)
	slices.Sort(routes)
	if !slices.Equal(documented, routes) {
		t.Fatalf("documented operations %v\nroutes %v", documented, routes)
	}
	// The served document is the committed one.
	f := newFixture(t)
	res := f.do(call{method: "GET", path: "/v1/openapi.json"})
	if res.status != http.StatusOK || !bytes.Equal(res.body, admin.OpenAPI()) || !json.Valid(res.body) {
		t.Fatalf("GET /v1/openapi.json: %d, %d bytes", res.status, len(res.body))
	}
}

func emptyTokens(t *testing.T) *admin.Tokens {
	t.Helper()
	f := &fixture{t: t, tokensFile: t.TempDir() + "/tokens.yaml"}
	f.writeTokens()
	tokens, err := admin.LoadTokens(f.tokensFile)
	if err != nil {
		t.Fatal(err)
	}
	return tokens
}

// TestDocumentIsStrict shows that the validation the tests rely on applies
// OpenAPI 3.1 (JSON Schema 2020-12) rules: kin-openapi's older validator
// ignores unevaluatedProperties and would let an undocumented member
// through.
func TestDocumentIsStrict(t *testing.T) {
	t.Parallel()
	_, router := openAPI(t)
	good := `{"id":"019ab5d2-4c1e-7a3b-9f00-2b4c6d8e0f11","account_id":"a","name":"n","description":"","display_prefix":"kg_abcdef",
		"scopes":[],"allowed_cidrs":[],"metadata":{},"limits":[],"quota":null,"status":"active","created_at":"2026-01-01T00:00:00Z","created_by":"x","expires_at":null,"revoked_at":null,"disabled_at":null,
		"last_used_at":null,"rotated_from":null,"rotated_to":null}`
	cases := []struct {
		name, body string
		ok         bool
	}{
		{"the shape", good, true},
		{"an undocumented member", strings.Replace(good, `"name":"n"`, `"name":"n","extra":1`, 1), false},
		{"a secret outside create and rotate", strings.Replace(good, `"name":"n"`, `"name":"n","secret":"kg_x"`, 1), false},
		{"a missing member", strings.Replace(good, `"rotated_to":null`, `"rotated_from2":null`, 1), false},
		{"a wrong type", strings.Replace(good, `"expires_at":null`, `"expires_at":5`, 1), false},
		{"a wrong format", strings.Replace(good, `"expires_at":null`, `"expires_at":"soon"`, 1), false},
		{"an unknown status", strings.Replace(good, `"active"`, `"paused"`, 1), false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", "/v1/keys/019ab5d2-4c1e-7a3b-9f00-2b4c6d8e0f11", nil)
			route, params, err := router.FindRoute(req)
			if err != nil {
				t.Fatal(err)
			}
			in := &openapi3filter.ResponseValidationInput{
				RequestValidationInput: &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route},
				Status:                 200, Header: http.Header{"Content-Type": {"application/json"}, "Cache-Control": {"no-store"}},
			}
			in.SetBodyBytes([]byte(c.body))
			err = openapi3filter.ValidateResponse(context.Background(), in)
			if (err == nil) != c.ok {
				t.Fatalf("ValidateResponse = %v, want ok=%v", err, c.ok)
			}
		})
	}
}
