package authz

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/policy"
)

// world is a fake store with one key of each kind.
type world struct {
	lookup                                *fakeLookup
	plain, readOnly, revoked, expired, ns testKey
}

func newWorld(t testing.TB) *world {
	w := &world{lookup: &fakeLookup{}}
	past := testNow.Add(-time.Minute)
	w.plain = w.lookup.add(t, "k-plain", nil, nil)
	w.readOnly = w.lookup.add(t, "k-read", []string{"projects:read"}, nil)
	w.revoked = w.lookup.add(t, "k-revoked", nil, func(k *keystore.Key) { k.RevokedAt = &past })
	w.expired = w.lookup.add(t, "k-expired", nil, func(k *keystore.Key) { k.ExpiresAt = &past })
	w.ns = w.lookup.add(t, "k-star", []string{"*"}, nil)
	return w
}

// want describes an expected denial.
func deniedWith(c Code) *authv3.CheckResponse { return newDenial(c).msg }

func TestCheckDecisionTable(t *testing.T) {
	w := newWorld(t)
	s := newTestServer(t, w.lookup, nil)
	unknown, _ := keystore.GenerateSecret("kg")
	tampered := w.plain.secret[:10] + flipChar(w.plain.secret[10]) + w.plain.secret[11:]
	cases := []struct {
		name string
		req  *authv3.CheckRequest
		want Code
	}{
		{"no key", envoyRequest("GET", "/api/v1/projects", nil, nil), MissingKey},
		{"empty x-api-key", envoyRequest("GET", "/api/v1/projects", map[string]string{"x-api-key": "  "}, nil), MissingKey},
		{"basic authorization is not a key", envoyRequest("GET", "/api/v1/projects", map[string]string{"authorization": "Basic dXNlcjpwYXNz"}, nil), MissingKey},
		{"malformed key", envoyRequest("GET", "/api/v1/projects", map[string]string{"x-api-key": "hunter2"}, nil), InvalidKey},
		{"bad checksum", envoyRequest("GET", "/api/v1/projects", map[string]string{"x-api-key": tampered}, nil), InvalidKey},
		{"empty bearer", envoyRequest("GET", "/api/v1/projects", map[string]string{"authorization": "Bearer"}, nil), InvalidKey},
		{"unknown key", envoyRequest("GET", "/api/v1/projects", map[string]string{"x-api-key": unknown.Reveal()}, nil), InvalidKey},
		{"revoked key", envoyRequest("GET", "/api/v1/projects", map[string]string{"x-api-key": w.revoked.secret}, nil), InvalidKey},
		{"expired key", envoyRequest("GET", "/api/v1/projects", map[string]string{"x-api-key": w.expired.secret}, nil), InvalidKey},
		{"two different keys", envoyRequest("GET", "/api/v1/projects", map[string]string{"x-api-key": w.plain.secret, "authorization": "Bearer " + w.ns.secret}, nil), InvalidKey},
		{"comma-merged x-api-key", envoyRequest("GET", "/api/v1/projects", map[string]string{"x-api-key": w.plain.secret + "," + w.plain.secret}, nil), InvalidKey},
		{"comma-merged bearer", envoyRequest("GET", "/api/v1/projects", map[string]string{"authorization": "Bearer " + w.plain.secret + ", Bearer " + w.ns.secret}, nil), InvalidKey},
		{"invalid path", envoyRequest("GET", "/api/v1/projects/%2e%2e/users", map[string]string{"x-api-key": w.plain.secret}, nil), InvalidPath},
		{"absolute-form path", envoyRequest("GET", "http://evil/api/v1/users", map[string]string{"x-api-key": w.plain.secret}, nil), InvalidPath},
		{"restricted module by path", envoyRequest("GET", "/api/v1/users/42", map[string]string{"x-api-key": w.ns.secret}, nil), ModuleForbidden},
		{"restricted module by route", envoyRequest("GET", "/v2/whoever", map[string]string{"x-api-key": w.ns.secret}, map[string]string{"module": "accounts"}), ModuleForbidden},
		{"route names projects, path reads as users", envoyRequest("GET", "/api/v1/projects/..;/users", map[string]string{"x-api-key": w.ns.secret}, map[string]string{"module": "projects"}), ModuleForbidden},
		{"route names an unknown module", envoyRequest("GET", "/api/v1/projects", map[string]string{"x-api-key": w.ns.secret}, map[string]string{"module": "nosuch"}), ModuleForbidden},
		{"authentication module", envoyRequest("POST", "/api/v1/api-keys", map[string]string{"x-api-key": w.ns.secret}, nil), ModuleForbidden},
		{"read scope, write method", envoyRequest("POST", "/api/v1/projects", map[string]string{"x-api-key": w.readOnly.secret}, nil), InsufficientScope},
		{"read scope, other module", envoyRequest("GET", "/api/v1/deployments", map[string]string{"x-api-key": w.readOnly.secret}, nil), InsufficientScope},
		{"scoped key, route in no module", envoyRequest("GET", "/status", map[string]string{"x-api-key": w.readOnly.secret}, nil), InsufficientScope},
		{"valid x-api-key", envoyRequest("GET", "/api/v1/projects", map[string]string{"x-api-key": w.plain.secret}, nil), Allow},
		{"valid bearer", envoyRequest("DELETE", "/api/v1/projects/7", map[string]string{"authorization": "Bearer " + w.plain.secret}, nil), Allow},
		{"bearer scheme in other case", envoyRequest("GET", "/api/v1/projects", map[string]string{"authorization": "bEaReR   " + w.plain.secret + " "}, nil), Allow},
		{"same key in both headers", envoyRequest("GET", "/api/v1/projects", map[string]string{"x-api-key": w.plain.secret, "authorization": "Bearer " + w.plain.secret}, nil), Allow},
		{"read scope, read method", envoyRequest("HEAD", "/api/v1/projects/1", map[string]string{"x-api-key": w.readOnly.secret}, nil), Allow},
		{"read scope via route module", envoyRequest("GET", "/anything", map[string]string{"x-api-key": w.readOnly.secret}, map[string]string{"module": "projects"}), Allow},
		{"unscoped key, route in no module", envoyRequest("GET", "/status", map[string]string{"x-api-key": w.plain.secret}, nil), Allow},
		{"look-alike of a restricted module", envoyRequest("GET", "/api/v1/projects/users", map[string]string{"x-api-key": w.plain.secret}, nil), Allow},
		{"query mentions a restricted module", envoyRequest("GET", "/api/v1/projects?next=/api/v1/users", map[string]string{"x-api-key": w.plain.secret}, nil), Allow},
		{"raw headers, one key", rawRequest("GET", "/api/v1/projects", [][2]string{{"x-api-key", w.plain.secret}}), Allow},
		{"raw headers, same key twice", rawRequest("GET", "/api/v1/projects", [][2]string{{"x-api-key", w.plain.secret}, {"x-api-key", w.plain.secret}}), Allow},
		{"raw headers, two keys", rawRequest("GET", "/api/v1/projects", [][2]string{{"x-api-key", w.plain.secret}, {"x-api-key", w.ns.secret}}), InvalidKey},
		{"raw headers, restricted", rawRequest("GET", "/API/v1/Users", [][2]string{{"x-api-key", w.plain.secret}}), ModuleForbidden},
		{"raw headers, no key", rawRequest("GET", "/api/v1/projects", nil), MissingKey},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resp, err := s.Check(context.Background(), c.req)
			if err != nil {
				t.Fatalf("Check returned a gRPC error %v; every outcome must be a CheckResponse", err)
			}
			if got := codes.Code(resp.GetStatus().GetCode()); got != grpcCode(c.want) {
				t.Fatalf("status %v (%s), want %v (%s)", got, resp.GetStatus().GetMessage(), grpcCode(c.want), c.want)
			}
			if c.want == Allow {
				if resp.GetOkResponse() == nil || resp.GetDeniedResponse() != nil {
					t.Fatalf("allow without ok_response: %v", resp)
				}
				return
			}
			if diff := cmp.Diff(deniedWith(c.want), resp, protocmp.Transform()); diff != "" {
				t.Fatalf("denial (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDenialResponses(t *testing.T) {
	cases := []struct {
		code       Code
		grpc       codes.Code
		httpStatus int
		header     string // a header this denial must carry
	}{
		{MissingKey, codes.Unauthenticated, 401, "www-authenticate"},
		{InvalidKey, codes.Unauthenticated, 401, "www-authenticate"},
		{InvalidPath, codes.InvalidArgument, 400, "content-type"},
		{ModuleForbidden, codes.PermissionDenied, 403, "content-type"},
		{InsufficientScope, codes.PermissionDenied, 403, "content-type"},
		{Unavailable, codes.Unavailable, 503, "retry-after"},
	}
	for _, c := range cases {
		t.Run(c.code.String(), func(t *testing.T) {
			resp := newDenial(c.code).msg
			if codes.Code(resp.GetStatus().GetCode()) != c.grpc {
				t.Errorf("status %v, want %v", resp.GetStatus().GetCode(), c.grpc)
			}
			d := resp.GetDeniedResponse()
			if int(d.GetStatus().GetCode()) != c.httpStatus {
				t.Errorf("HTTP status %d, want %d", d.GetStatus().GetCode(), c.httpStatus)
			}
			var body struct {
				Error struct{ Code, Message string } `json:"error"`
			}
			if err := json.Unmarshal([]byte(d.GetBody()), &body); err != nil || body.Error.Code != c.code.String() || body.Error.Message == "" {
				t.Errorf("body %q: want {\"error\":{\"code\":%q,\"message\":…}}", d.GetBody(), c.code)
			}
			headers := map[string]string{}
			for _, h := range d.GetHeaders() {
				if h.GetAppendAction() != corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD {
					t.Errorf("header %s: append action %v", h.GetHeader().GetKey(), h.GetAppendAction())
				}
				headers[h.GetHeader().GetKey()] = h.GetHeader().GetValue()
			}
			if headers["content-type"] != "application/json" || headers[c.header] == "" {
				t.Errorf("headers %v: want content-type application/json and %s", headers, c.header)
			}
		})
	}
}

func TestAllowResponse(t *testing.T) {
	w := newWorld(t)
	s := newTestServer(t, w.lookup, nil)
	req := envoyRequest("POST", "/api/v1/projects/7/builds?dry=1", map[string]string{
		"x-api-key":            w.readOnly.secret, // replaced below
		"authorization":        "Basic dXNlcjpwYXNz",
		"x-keygate-key-id":     "forged",
		"x-keygate-account-id": "forged",
		"x-keygate-scopes":     "*",
		"x-keygate-admin":      "true",
	}, map[string]string{"module": "projects"})
	req.Attributes.Request.Http.Headers["x-api-key"] = w.plain.secret
	resp, err := s.Check(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	want := &authv3.CheckResponse{
		Status: &status.Status{},
		HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{
			Headers: []*corev3.HeaderValueOption{
				setHeader("x-keygate-key-id", "k-plain"),
				setHeader("x-keygate-account-id", "acct-k-plain"),
				setHeader("x-keygate-module", "projects"),
			},
			// the key's header goes; Basic credentials are someone else's
			// and stay; forged identity headers are either overwritten
			// above or removed here.
			HeadersToRemove: []string{"x-keygate-scopes", "x-api-key", "x-keygate-admin"},
		}},
		DynamicMetadata: &structpb.Struct{Fields: map[string]*structpb.Value{
			"key_id": structpb.NewStringValue("k-plain"), "account_id": structpb.NewStringValue("acct-k-plain"),
			"module": structpb.NewStringValue("projects"),
		}},
	}
	sortRemovals := protocmp.SortRepeated(func(a, b string) bool { return a < b })
	if diff := cmp.Diff(want, resp, protocmp.Transform(), sortRemovals); diff != "" {
		t.Fatalf("allow response (-want +got):\n%s", diff)
	}

	// A scoped key on a route with no module, bearer-style.
	req = envoyRequest("GET", "/api/v1/projects", map[string]string{"authorization": "Bearer " + w.readOnly.secret}, nil)
	resp, _ = s.Check(context.Background(), req)
	ok := resp.GetOkResponse()
	got := map[string]string{}
	for _, h := range ok.GetHeaders() {
		got[h.GetHeader().GetKey()] = h.GetHeader().GetValue()
	}
	if got["x-keygate-scopes"] != "projects:read" || got["x-keygate-module"] != "projects" || !slices.Contains(ok.GetHeadersToRemove(), "authorization") {
		t.Fatalf("headers %v, removals %v", got, ok.GetHeadersToRemove())
	}
}

func TestKeepCredentials(t *testing.T) {
	w := newWorld(t)
	s := newTestServer(t, w.lookup, func(c *Config) { c.KeepCredentials = true; c.IdentityPrefix = "X-Auth-" })
	resp, _ := s.Check(context.Background(), envoyRequest("GET", "/api/v1/projects", map[string]string{"x-api-key": w.plain.secret}, nil))
	ok := resp.GetOkResponse()
	if slices.Contains(ok.GetHeadersToRemove(), "x-api-key") {
		t.Fatal("KeepCredentials: the key header was removed")
	}
	if ok.GetHeaders()[0].GetHeader().GetKey() != "x-auth-key-id" {
		t.Fatalf("identity prefix not applied: %v", ok.GetHeaders()[0])
	}
}

func TestNoLookupForMalformedKeys(t *testing.T) {
	w := newWorld(t)
	s := newTestServer(t, w.lookup, nil)
	for _, v := range []string{"x", strings.Repeat("k", 5000), w.plain.secret[:len(w.plain.secret)-1] + flipChar(w.plain.secret[len(w.plain.secret)-1])} {
		s.Check(context.Background(), envoyRequest("GET", "/api/v1/projects", map[string]string{"x-api-key": v}, nil))
	}
	s.Check(context.Background(), envoyRequest("GET", "/api/v1/%2e%2e/users", map[string]string{"x-api-key": w.plain.secret}, nil))
	if n := w.lookup.calls.Load(); n != 0 {
		t.Fatalf("%d store lookups for malformed keys or invalid paths, want 0", n)
	}
}

func TestStoreFailuresFailClosed(t *testing.T) {
	w := newWorld(t)
	req := envoyRequest("GET", "/api/v1/projects", map[string]string{"x-api-key": w.plain.secret}, nil)
	cases := []struct {
		name   string
		lookup *fakeLookup
		reason Reason
	}{
		{"store unavailable", &fakeLookup{err: fmt.Errorf("lookup: %w: connection refused", keystore.ErrUnavailable)}, ReasonStoreError},
		{"unexpected error", &fakeLookup{err: errors.New("something else")}, ReasonStoreError},
		{"hung store, caller's deadline passes", &fakeLookup{block: true}, ReasonTimeout},
		{"panicking store", &fakeLookup{panic: true}, ReasonPanic},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := newTestServer(t, c.lookup, nil)
			start := time.Now()
			// gRPC gives the handler Envoy's deadline (grpc-timeout).
			ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
			defer cancel()
			resp, err := s.Check(ctx, req)
			if err != nil {
				t.Fatalf("gRPC error %v; want a 503 CheckResponse", err)
			}
			if diff := cmp.Diff(deniedWith(Unavailable), resp, protocmp.Transform()); diff != "" {
				t.Fatalf("(-want +got):\n%s", diff)
			}
			if took := time.Since(start); took > time.Second {
				t.Fatalf("took %v; the caller's deadline is 50ms", took)
			}
		})
	}
	t.Run("caller gave up", func(t *testing.T) {
		s := newTestServer(t, w.lookup, nil)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		resp, _ := s.Check(ctx, req)
		if codes.Code(resp.GetStatus().GetCode()) != codes.Unavailable {
			t.Fatalf("status %v, want UNAVAILABLE", resp.GetStatus())
		}
	})
}

func TestDefaultDenyPolicy(t *testing.T) {
	w := newWorld(t)
	p, err := policy.Parse("strict.yaml", []byte("default: deny\nmodules:\n  projects: { paths: [/api/v1/projects] }\n"))
	if err != nil {
		t.Fatal(err)
	}
	s := newTestServer(t, w.lookup, func(c *Config) { c.Policy = p })
	for path, want := range map[string]codes.Code{
		"/api/v1/projects/1": codes.OK,
		"/api/v1/other":      codes.PermissionDenied,
		"/":                  codes.PermissionDenied,
	} {
		resp, _ := s.Check(context.Background(), envoyRequest("GET", path, map[string]string{"x-api-key": w.plain.secret}, nil))
		if got := codes.Code(resp.GetStatus().GetCode()); got != want {
			t.Errorf("%s: %v, want %v", path, got, want)
		}
	}
}

func TestUsageRecorded(t *testing.T) {
	w := newWorld(t)
	rec := &usageLog{}
	s := newTestServer(t, w.lookup, func(c *Config) { c.Usage = rec })
	s.Check(context.Background(), envoyRequest("GET", "/api/v1/projects", map[string]string{"x-api-key": w.plain.secret}, nil))
	s.Check(context.Background(), envoyRequest("GET", "/api/v1/users", map[string]string{"x-api-key": w.plain.secret}, nil))
	s.Check(context.Background(), envoyRequest("GET", "/api/v1/projects", map[string]string{"x-api-key": w.revoked.secret}, nil))
	if !slices.Equal(rec.ids, []string{"k-plain"}) {
		t.Fatalf("usage recorded for %v, want only the one allowed request", rec.ids)
	}
}

type usageLog struct{ ids []string }

func (u *usageLog) Used(id string, _ time.Time) { u.ids = append(u.ids, id) }

func TestNewServerRejectsBadConfig(t *testing.T) {
	h, _ := keystore.NewHasher(nil)
	base := func() Config { return Config{Lookup: &fakeLookup{}, Policy: policy.Example(), Hasher: h} }
	cases := map[string]func(*Config){
		"no lookup":                  func(c *Config) { c.Lookup = nil },
		"no policy":                  func(c *Config) { c.Policy = nil },
		"bad key header":             func(c *Config) { c.KeyHeaders = []string{"x api key"} },
		"pseudo-header":              func(c *Config) { c.KeyHeaders = []string{":path"} },
		"duplicate key header":       func(c *Config) { c.KeyHeaders = []string{"x-api-key", "X-API-Key"} },
		"key header with the prefix": func(c *Config) { c.KeyHeaders = []string{"x-keygate-key"} },
		"bad identity prefix":        func(c *Config) { c.IdentityPrefix = "x keygate" },
		"too many key headers":       func(c *Config) { c.KeyHeaders = strings.Split("a,b,c,d,e,f,g,h,i", ",") },
	}
	for name, mutate := range cases {
		cfg := base()
		mutate(&cfg)
		if _, err := NewServer(cfg); err == nil {
			t.Errorf("%s: NewServer accepted it", name)
		}
	}
}

func TestStatusCodesMatchHTTP(t *testing.T) {
	// The HTTP statuses are the ones net/http names, so that the forward
	// auth endpoint and Envoy agree.
	for c := MissingKey; c < numCodes; c++ {
		if http.StatusText(c.HTTPStatus()) == "" {
			t.Errorf("%s: %d is not an HTTP status", c, c.HTTPStatus())
		}
	}
}

func flipChar(c byte) string {
	if c == 'A' {
		return "B"
	}
	return "A"
}

func TestSharedAllowResponses(t *testing.T) {
	w := newWorld(t)
	s := newTestServer(t, w.lookup, nil)
	shared := func(req *authv3.CheckRequest) *authv3.CheckResponse { return s.respond(context.Background(), req).msg }
	plain := envoyRequest("GET", "/api/v1/projects", map[string]string{"x-api-key": w.plain.secret}, nil)
	first := shared(plain)
	if second := shared(plain); first != second {
		t.Fatal("two identical allows built two responses; want one shared response")
	}
	// Forged identity headers make a response of their own.
	forged := envoyRequest("GET", "/api/v1/projects", map[string]string{"x-api-key": w.plain.secret, "x-keygate-role": "admin"}, nil)
	resp := shared(forged)
	if resp == first || !slices.Contains(resp.GetOkResponse().GetHeadersToRemove(), "x-keygate-role") {
		t.Fatalf("a forged identity header was not removed: %v", resp.GetOkResponse().GetHeadersToRemove())
	}
	// Another module, or the key in another header, is another response.
	bearer := envoyRequest("GET", "/api/v1/projects", map[string]string{"authorization": "Bearer " + w.plain.secret}, nil)
	if resp := shared(bearer); resp == first || !slices.Contains(resp.GetOkResponse().GetHeadersToRemove(), "authorization") {
		t.Fatal("the bearer request got the x-api-key request's response")
	}
	other := envoyRequest("GET", "/api/v1/deployments", map[string]string{"x-api-key": w.plain.secret}, nil)
	if resp := shared(other); resp == first {
		t.Fatal("another module got the projects response")
	}
	// Check hands out copies: changing one changes nothing else.
	mine, _ := s.Check(context.Background(), plain)
	mine.GetOkResponse().Headers[0].Header.Value = "someone-else"
	if again, _ := s.Check(context.Background(), plain); again.GetOkResponse().GetHeaders()[0].GetHeader().GetValue() != "k-plain" {
		t.Fatal("changing a response from Check changed the next one")
	}
	// A new version of the record (any lifecycle change) is a new response.
	w.lookup.mu.Lock()
	changed := *w.plain.key
	changed.UpdatedAt = changed.UpdatedAt.Add(time.Second)
	changed.AccountID = "acct-moved"
	w.lookup.keys[changed.Digest] = &changed
	w.lookup.mu.Unlock()
	resp, _ = s.Check(context.Background(), plain)
	if got := resp.GetDynamicMetadata().GetFields()["account_id"].GetStringValue(); got != "acct-moved" {
		t.Fatalf("after a change the response still says account %q", got)
	}
}

func TestUnderscoreIdentityHeadersRemoved(t *testing.T) {
	w := newWorld(t)
	s := newTestServer(t, w.lookup, nil)
	resp, _ := s.Check(context.Background(), envoyRequest("GET", "/api/v1/projects", map[string]string{
		"x-api-key": w.plain.secret, "x_keygate_scopes": "*", "x_keygate-account_id": "victim"}, nil))
	removed := resp.GetOkResponse().GetHeadersToRemove()
	for _, h := range []string{"x_keygate_scopes", "x_keygate-account_id"} {
		if !slices.Contains(removed, h) {
			t.Errorf("forged %s not removed (removals %v)", h, removed)
		}
	}
}

func TestRouteModuleUnderDefaultDeny(t *testing.T) {
	w := newWorld(t)
	p, err := policy.Parse("strict.yaml", []byte("default: deny\nmodules:\n  reports: { paths: [/api/v1/reports] }\n  users: { paths: [/api/v1/users], api_keys: deny }\n"))
	if err != nil {
		t.Fatal(err)
	}
	s := newTestServer(t, w.lookup, func(c *Config) { c.Policy = p })
	cases := []struct {
		path string
		want codes.Code
	}{
		{"/v2/reports/7", codes.OK},                                // the route says reports; the table knows no such path
		{"/v2/reports/../../api/v1/users", codes.PermissionDenied}, // a reading lands in a closed module
	}
	for _, c := range cases {
		resp, _ := s.Check(context.Background(), envoyRequest("GET", c.path, map[string]string{"x-api-key": w.plain.secret}, map[string]string{"module": "reports"}))
		if got := codes.Code(resp.GetStatus().GetCode()); got != c.want {
			t.Errorf("%s with route module reports: %v, want %v", c.path, got, c.want)
		}
	}
}

// pepperedLookup finds keys under their plain SHA-256 digest only, and
// fails for every other digest, like a database that is down while the
// key is cached under its pre-pepper digest.
type pepperedLookup struct{ plain *fakeLookup }

func (p pepperedLookup) Lookup(ctx context.Context, d keystore.Digest) (*keystore.Key, error) {
	if k, err := p.plain.Lookup(ctx, d); err == nil {
		return k, nil
	}
	return nil, fmt.Errorf("lookup: %w: connection refused", keystore.ErrUnavailable)
}

func TestPepperCandidatesSurviveOneFailure(t *testing.T) {
	w := newWorld(t)
	h, _ := keystore.NewHasher([]byte(strings.Repeat("p", 32)))
	s := newTestServer(t, pepperedLookup{w.lookup}, func(c *Config) { c.Hasher = h })
	resp, _ := s.Check(context.Background(), envoyRequest("GET", "/api/v1/projects", map[string]string{"x-api-key": w.plain.secret}, nil))
	if codes.Code(resp.GetStatus().GetCode()) != codes.OK {
		t.Fatalf("a key found under its second candidate digest was refused: %v", resp.GetStatus())
	}
	unknown, _ := keystore.GenerateSecret("kg")
	resp, _ = s.Check(context.Background(), envoyRequest("GET", "/api/v1/projects", map[string]string{"x-api-key": unknown.Reveal()}, nil))
	if codes.Code(resp.GetStatus().GetCode()) != codes.Unavailable {
		t.Fatalf("an unknown key with the store failing: %v, want UNAVAILABLE", resp.GetStatus())
	}
}
