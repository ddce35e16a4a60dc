package admin_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"

	"github.com/keygate/keygate/admin"
	"github.com/keygate/keygate/internal/failurelimit"
	"github.com/keygate/keygate/internal/storetest"
	"github.com/keygate/keygate/internal/syncbuffer"
	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/policy"
)

func TestMain(m *testing.M) { storetest.Main(m) }

// The OpenAPI document, loaded and checked once.
var spec struct {
	once   sync.Once
	doc    *openapi3.T
	router routers.Router
	err    error
}

func openAPI(t testing.TB) (*openapi3.T, routers.Router) {
	t.Helper()
	spec.once.Do(func() {
		loader := openapi3.NewLoader()
		spec.doc, spec.err = loader.LoadFromData(admin.OpenAPI())
		if spec.err != nil {
			return
		}
		if spec.err = spec.doc.Validate(context.Background()); spec.err != nil {
			return
		}
		// The document names the default address; the tests' servers
		// listen elsewhere, so route by path and method alone.
		spec.doc.Servers = nil
		spec.router, spec.err = legacy.NewRouter(spec.doc)
	})
	if spec.err != nil {
		t.Fatalf("the OpenAPI document: %v", spec.err)
	}
	return spec.doc, spec.router
}

// lockedBuffer holds a server's logs while tests read them.
type lockedBuffer = syncbuffer.Buffer

// fixture is an admin server on a fresh database, with two admin tokens:
// "root" for every account and "acme-backend" bound to account acme.
type fixture struct {
	t          *testing.T
	srv        *httptest.Server
	handler    *admin.Server // what srv serves
	store      *keystore.Store
	backend    keystore.Backend
	tokens     *admin.Tokens
	tokensFile string
	root, acme string // the tokens in clear
	logs       *lockedBuffer

	mu      sync.Mutex
	secrets map[string]bool // every secret and token seen: none may show up again
}

type fixtureOptions struct {
	maxLifetime  time.Duration
	failureLimit failurelimit.Limit // default: one no test reaches
	now          func() time.Time
}

func newFixture(t *testing.T, opts ...fixtureOptions) *fixture {
	t.Helper()
	var o fixtureOptions
	if len(opts) > 0 {
		o = opts[0]
	}
	f := &fixture{t: t, logs: &lockedBuffer{}, secrets: map[string]bool{}}
	f.backend = storetest.Open(t, storetest.NewDatabase(t))
	var err error
	f.store, err = keystore.New(f.backend, keystore.Options{MaxLifetime: o.maxLifetime})
	if err != nil {
		t.Fatal(err)
	}
	root, rootEntry := newToken(t, "root", "")
	acme, acmeEntry := newToken(t, "acme-backend", "acme")
	f.root, f.acme = root, acme
	f.tokensFile = filepath.Join(t.TempDir(), "admin-tokens.yaml")
	f.writeTokens(rootEntry, acmeEntry)
	if f.tokens, err = admin.LoadTokens(f.tokensFile); err != nil {
		t.Fatal(err)
	}
	if o.failureLimit == (failurelimit.Limit{}) {
		o.failureLimit = failurelimit.Limit{Count: failurelimit.MaxCount, Window: time.Second}
	}
	srv, err := admin.New(admin.Config{Store: f.store, Policy: policy.Example(), Tokens: f.tokens,
		Logger: slog.New(slog.NewJSONHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug})), FailureLimit: o.failureLimit, Now: o.now})
	if err != nil {
		t.Fatal(err)
	}
	f.handler = srv
	f.srv = httptest.NewServer(srv)
	t.Cleanup(f.srv.Close)
	t.Cleanup(func() {
		logs := f.logs.String()
		for s := range f.secrets {
			if strings.Contains(logs, s) {
				t.Errorf("a secret or admin token appears in the logs")
			}
		}
	})
	return f
}

func newToken(t testing.TB, name, account string) (string, admin.TokenEntry) {
	t.Helper()
	token, entry, err := admin.NewToken(name, account)
	if err != nil {
		t.Fatal(err)
	}
	return token.Reveal(), entry
}

func (f *fixture) writeTokens(entries ...admin.TokenEntry) {
	f.t.Helper()
	var b strings.Builder
	for _, e := range entries {
		fmt.Fprintf(&b, "- name: %q\n  sha256: %s\n", e.Name, e.SHA256)
		if e.Account != "" {
			fmt.Fprintf(&b, "  account: %q\n", e.Account)
		}
	}
	if len(entries) == 0 {
		b.WriteString("[]\n")
	}
	if err := os.WriteFile(f.tokensFile, []byte(b.String()), 0o600); err != nil {
		f.t.Fatal(err)
	}
}

// schemaRule says how a request relates to the OpenAPI document.
type schemaRule int

const (
	schemaValid   schemaRule = iota // the document accepts it (the default)
	schemaRejects                   // broken on purpose in a way the document describes: it must refuse it too
	schemaAny                       // broken on purpose beyond the document (a wrong token, a past date): not checked
)

// call is one request to the API.
type call struct {
	method, path string
	token        string // sent as Bearer unless empty
	body         any    // a string is sent as it is; anything else as JSON
	contentType  string // default application/json when there is a body
	header       http.Header
	schema       schemaRule
}

type result struct {
	status  int
	header  http.Header
	body    []byte
	problem admin.Problem
}

func (r *result) decode(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("response %d %s is not the JSON expected: %v", r.status, r.body, err)
	}
}

// fields lists the problem's field errors' fields.
func (r *result) fields() []string {
	var out []string
	for _, e := range r.problem.Errors {
		out = append(out, e.Field)
	}
	return out
}

// do sends c and validates the request and the response against the
// OpenAPI document; a response holding a secret seen before fails.
func (f *fixture) do(c call) *result {
	f.t.Helper()
	var body []byte
	switch b := c.body.(type) {
	case nil:
	case string:
		body = []byte(b)
	default:
		var err error
		if body, err = json.Marshal(b); err != nil {
			f.t.Fatal(err)
		}
	}
	req, err := http.NewRequest(c.method, f.srv.URL+c.path, bytes.NewReader(body))
	if err != nil {
		f.t.Fatal(err)
	}
	for k, v := range c.header {
		req.Header[k] = v
	}
	if c.body != nil {
		ct := c.contentType
		if ct == "" {
			ct = "application/json"
		}
		req.Header.Set("Content-Type", ct)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	input := f.validateRequest(req, body, c.schema)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	res := &result{status: resp.StatusCode, header: resp.Header}
	if res.body, err = io.ReadAll(resp.Body); err != nil {
		f.t.Fatal(err)
	}
	f.validateResponse(c, input, res)
	if strings.HasPrefix(res.header.Get("Content-Type"), "application/problem+json") {
		res.decode(f.t, &res.problem)
	}
	f.checkSecrets(c, res)
	return res
}

func (f *fixture) validateRequest(req *http.Request, body []byte, rule schemaRule) *openapi3filter.RequestValidationInput {
	f.t.Helper()
	_, router := openAPI(f.t)
	route, params, err := router.FindRoute(req)
	for _, v := range params {
		if v == "" && err == nil { // the legacy router matches /v1/keys to /v1/keys/{id} with an empty id
			err = errors.New("no operation with an empty path parameter")
		}
	}
	if err != nil {
		if rule == schemaValid {
			f.t.Fatalf("%s %s is not in the OpenAPI document: %v", req.Method, req.URL.Path, err)
		}
		return nil
	}
	// The validator reads the body: give it a copy.
	vreq := req.Clone(context.Background())
	vreq.Body = io.NopCloser(bytes.NewReader(body))
	input := &openapi3filter.RequestValidationInput{Request: vreq, PathParams: params, Route: route,
		Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc, MultiError: true}}
	err = openapi3filter.ValidateRequest(context.Background(), input)
	switch {
	case rule == schemaValid && err != nil:
		f.t.Fatalf("%s %s: the OpenAPI document refuses the request: %v", req.Method, req.URL.Path, err)
	case rule == schemaRejects && err == nil:
		f.t.Fatalf("%s %s %s: the request is broken on purpose, but the OpenAPI document accepts it", req.Method, req.URL.Path, body)
	}
	input.Request = req
	return input
}

func (f *fixture) validateResponse(c call, input *openapi3filter.RequestValidationInput, res *result) {
	f.t.Helper()
	if input == nil {
		// A path or method the document does not have: the answer is a
		// problem all the same.
		doc, _ := openAPI(f.t)
		var v any
		if err := json.Unmarshal(res.body, &v); err != nil {
			f.t.Fatalf("%s %s: %d %q is not JSON", c.method, c.path, res.status, res.body)
		}
		if err := doc.Components.Schemas["Problem"].Value.VisitJSON(v, openapi3.EnableJSONSchema2020()); err != nil {
			f.t.Fatalf("%s %s: %d is not a Problem: %v", c.method, c.path, res.status, err)
		}
		return
	}
	out := &openapi3filter.ResponseValidationInput{RequestValidationInput: input, Status: res.status, Header: res.header,
		Options: &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true}}
	out.SetBodyBytes(res.body)
	if err := openapi3filter.ValidateResponse(context.Background(), out); err != nil {
		f.t.Fatalf("%s %s: the response %d %s does not match the OpenAPI document: %v", c.method, c.path, res.status, res.body, err)
	}
	if res.status == http.StatusNoContent && len(res.body) != 0 {
		f.t.Fatalf("%s %s: 204 with a body", c.method, c.path)
	}
	if cc := res.header.Get("Cache-Control"); cc != "no-store" {
		f.t.Fatalf("%s %s: Cache-Control %q, want no-store on every API response", c.method, c.path, cc)
	}
}

// checkSecrets fails on a response that repeats a secret or token seen
// before, and remembers the secrets a create or rotate shows.
func (f *fixture) checkSecrets(c call, res *result) {
	f.t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, tok := range []string{f.root, f.acme} {
		f.secrets[tok] = true
	}
	for s := range f.secrets {
		if bytes.Contains(res.body, []byte(s)) || strings.Contains(fmt.Sprint(res.header), s) {
			f.t.Fatalf("%s %s: the response repeats a secret or token", c.method, c.path)
		}
	}
	var k struct{ Secret string }
	if json.Unmarshal(res.body, &k) == nil && k.Secret != "" {
		if res.status != http.StatusCreated || res.header.Get("Cache-Control") != "no-store" {
			f.t.Fatalf("%s %s: a secret in a %d response with Cache-Control %q", c.method, c.path, res.status, res.header.Get("Cache-Control"))
		}
		f.secrets[k.Secret] = true
	}
}

// create makes a key through the API as root and returns it with its secret.
func (f *fixture) create(body map[string]any) admin.Key {
	f.t.Helper()
	if body["account_id"] == nil {
		body["account_id"] = "acme"
	}
	if body["name"] == nil {
		body["name"] = "ci"
	}
	res := f.do(call{method: "POST", path: "/v1/keys", token: f.root, body: body})
	if res.status != http.StatusCreated {
		f.t.Fatalf("create: %d %s", res.status, res.body)
	}
	var k admin.Key
	res.decode(f.t, &k)
	return k
}

// count returns the number of keys and of audit events in the database.
func (f *fixture) count() (keys, events int) {
	f.t.Helper()
	err := f.backend.Export(context.Background(), func(*keystore.Key) error {
		keys++
		return nil
	}, func(keystore.Event) error {
		events++
		return nil
	})
	if err != nil {
		f.t.Fatal(err)
	}
	return keys, events
}
