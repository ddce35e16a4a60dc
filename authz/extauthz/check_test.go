package extauthz

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/internal/authztest"
	"github.com/keygate/keygate/keystore"
)

// want describes an expected denial.
func deniedWith(o authz.Outcome) *authv3.CheckResponse { return denied(o.Denial()).CheckResponse }

func TestCheckDecisionTable(t *testing.T) {
	w := authztest.NewWorld(t)
	s := newTestServer(t, w.Lookup, func(c *authz.Config) {
		c.FailureLimit = authz.FailureLimit{Count: authztest.FailureBudget, Window: authztest.FailureWindow}
	})
	outcomes := map[string]authz.Outcome{}
	for o := range authz.NumOutcomes {
		outcomes[authz.Outcome(o).String()] = authz.Outcome(o)
	}
	type testCase struct {
		name     string
		req      *authv3.CheckRequest
		want     authz.Outcome
		failures []*authv3.CheckRequest // sent first
	}
	var cases []testCase
	for _, c := range w.DecisionTable(t) {
		var failures []*authv3.CheckRequest
		for range c.Failures {
			failures = append(failures, tableRequest(c.FailureCase()))
		}
		cases = append(cases, testCase{c.Name, tableRequest(c), outcomes[c.Want], failures})
	}
	plain := w.Plain.Secret
	cases = append(cases, []testCase{
		{"raw headers, one key", rawRequest("GET", "/api/v1/projects", [][2]string{{"x-api-key", plain}}), authz.Allow, nil},
		{"raw headers, same key twice", rawRequest("GET", "/api/v1/projects", [][2]string{{"x-api-key", plain}, {"x-api-key", plain}}), authz.Allow, nil},
		{"raw headers, two keys", rawRequest("GET", "/api/v1/projects", [][2]string{{"x-api-key", plain}, {"x-api-key", w.Star.Secret}}), authz.InvalidKey, nil},
		{"raw headers, restricted", rawRequest("GET", "/API/v1/Users", [][2]string{{"x-api-key", plain}}), authz.ModuleForbidden, nil},
		{"raw headers, no key", rawRequest("GET", "/api/v1/projects", nil), authz.MissingKey, nil},
		{"pseudo-headers only", pseudoOnly(envoyRequest("POST", "/api/v1/projects", map[string]string{"x-api-key": w.ReadOnly.Secret}, nil)), authz.InsufficientScope, nil},
	}...)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for _, req := range c.failures {
				if resp, _ := s.Check(context.Background(), req); resp.GetDeniedResponse() == nil {
					t.Fatal("a failed attempt was allowed")
				}
			}
			resp, err := s.Check(context.Background(), c.req)
			if err != nil {
				t.Fatalf("Check returned a gRPC error %v; every outcome must be a CheckResponse", err)
			}
			if got := codes.Code(resp.GetStatus().GetCode()); got != codes.Code(c.want.GRPCCode()) {
				t.Fatalf("status %v (%s), want %v (%s)", got, resp.GetStatus().GetMessage(), codes.Code(c.want.GRPCCode()), c.want)
			}
			if c.want == authz.Allow {
				if resp.GetOkResponse() == nil || resp.GetDeniedResponse() != nil {
					t.Fatalf("allow without ok_response: %v", resp)
				}
				return
			}
			if diff := cmp.Diff(denied(s.core.Denial(c.want)).CheckResponse, resp, protocmp.Transform()); diff != "" {
				t.Fatalf("denial (-want +got):\n%s", diff)
			}
		})
	}
}

// tableRequest is the CheckRequest of a decision table case.
func tableRequest(c authztest.Case) *authv3.CheckRequest {
	var ext map[string]string
	if c.Module != "" {
		ext = map[string]string{"module": c.Module}
	}
	return fromSource(envoyRequest(c.Method, c.Path, c.Headers, ext), c)
}

// fromSource sets the request's source.address as c.Source says: Envoy's
// fixture address for "", none for authztest.UnknownSource.
func fromSource(req *authv3.CheckRequest, c authztest.Case) *authv3.CheckRequest {
	switch {
	case c.Source == authztest.UnknownSource:
		req.Attributes.Source = nil
	case c.Source != "":
		req.Attributes.Source.Address.GetSocketAddress().Address = c.Source
	}
	return req
}

// pseudoOnly leaves method and path to the :method and :path
// pseudo-headers, as some Envoy versions fill them.
func pseudoOnly(req *authv3.CheckRequest) *authv3.CheckRequest {
	req.Attributes.Request.Http.Method, req.Attributes.Request.Http.Path = "", ""
	return req
}

// The outcome table's gRPC codes are grpc-go's.
func TestGRPCCodes(t *testing.T) {
	want := map[authz.Outcome]codes.Code{
		authz.Allow: codes.OK, authz.MissingKey: codes.Unauthenticated, authz.InvalidKey: codes.Unauthenticated,
		authz.InvalidPath: codes.InvalidArgument, authz.InvalidRequest: codes.InvalidArgument, authz.ModuleForbidden: codes.PermissionDenied,
		authz.InsufficientScope: codes.PermissionDenied, authz.Unavailable: codes.Unavailable,
		authz.SourceNotAllowed: codes.PermissionDenied, authz.TooManyFailures: codes.ResourceExhausted,
		authz.RateLimited: codes.ResourceExhausted, authz.QuotaExhausted: codes.ResourceExhausted,
	}
	for o := range authz.NumOutcomes {
		o := authz.Outcome(o)
		if w, ok := want[o]; !ok || codes.Code(o.GRPCCode()) != w {
			t.Errorf("%s: gRPC code %d, want %v", o, o.GRPCCode(), w)
		}
	}
}

func TestDenialResponses(t *testing.T) {
	cases := []struct {
		code       authz.Outcome
		grpc       codes.Code
		httpStatus int
		header     string // a header this denial must carry
	}{
		{authz.MissingKey, codes.Unauthenticated, 401, "www-authenticate"},
		{authz.InvalidKey, codes.Unauthenticated, 401, "www-authenticate"},
		{authz.InvalidPath, codes.InvalidArgument, 400, "content-type"},
		{authz.ModuleForbidden, codes.PermissionDenied, 403, "content-type"},
		{authz.InsufficientScope, codes.PermissionDenied, 403, "content-type"},
		{authz.Unavailable, codes.Unavailable, 503, "retry-after"},
	}
	for _, c := range cases {
		t.Run(c.code.String(), func(t *testing.T) {
			resp := deniedWith(c.code)
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
	w := authztest.NewWorld(t)
	s := newTestServer(t, w.Lookup, nil)
	req := envoyRequest("POST", "/api/v1/projects/7/builds?dry=1", map[string]string{
		"x-api-key":            w.ReadOnly.Secret, // replaced below
		"authorization":        "Basic dXNlcjpwYXNz",
		"x-keygate-key-id":     "forged",
		"x-keygate-account-id": "forged",
		"x-keygate-scopes":     "*",
		"x-keygate-admin":      "true",
	}, map[string]string{"module": "projects"})
	req.Attributes.Request.Http.Headers["x-api-key"] = w.Plain.Secret
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
	req = envoyRequest("GET", "/api/v1/projects", map[string]string{"authorization": "Bearer " + w.ReadOnly.Secret}, nil)
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
	w := authztest.NewWorld(t)
	s := newTestServer(t, w.Lookup, func(c *authz.Config) { c.KeepCredentials = true; c.IdentityPrefix = "X-Auth-" })
	resp, _ := s.Check(context.Background(), envoyRequest("GET", "/api/v1/projects", map[string]string{"x-api-key": w.Plain.Secret}, nil))
	ok := resp.GetOkResponse()
	if slices.Contains(ok.GetHeadersToRemove(), "x-api-key") {
		t.Fatal("KeepCredentials: the key header was removed")
	}
	if ok.GetHeaders()[0].GetHeader().GetKey() != "x-auth-key-id" {
		t.Fatalf("identity prefix not applied: %v", ok.GetHeaders()[0])
	}
}

func TestStoreFailuresFailClosed(t *testing.T) {
	w := authztest.NewWorld(t)
	req := envoyRequest("GET", "/api/v1/projects", map[string]string{"x-api-key": w.Plain.Secret}, nil)
	cases := []struct {
		name   string
		lookup *authztest.Lookup
	}{
		{"store unavailable", &authztest.Lookup{Err: fmt.Errorf("lookup: %w: connection refused", keystore.ErrUnavailable)}},
		{"unexpected error", &authztest.Lookup{Err: errors.New("something else")}},
		{"hung store, caller's deadline passes", &authztest.Lookup{Block: true}},
		{"panicking store", &authztest.Lookup{Panic: true}},
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
			if diff := cmp.Diff(deniedWith(authz.Unavailable), resp, protocmp.Transform()); diff != "" {
				t.Fatalf("(-want +got):\n%s", diff)
			}
			if took := time.Since(start); took > time.Second {
				t.Fatalf("took %v; the caller's deadline is 50ms", took)
			}
		})
	}
	t.Run("caller gave up", func(t *testing.T) {
		s := newTestServer(t, w.Lookup, nil)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		resp, _ := s.Check(ctx, req)
		if codes.Code(resp.GetStatus().GetCode()) != codes.Unavailable {
			t.Fatalf("status %v, want UNAVAILABLE", resp.GetStatus())
		}
	})
}

func TestSharedAllowResponses(t *testing.T) {
	w := authztest.NewWorld(t)
	s := newTestServer(t, w.Lookup, nil)
	shared := func(req *authv3.CheckRequest) *authv3.CheckResponse {
		return s.respond(context.Background(), viewFor(req)).CheckResponse
	}
	plain := envoyRequest("GET", "/api/v1/projects", map[string]string{"x-api-key": w.Plain.Secret}, nil)
	first := shared(plain)
	if second := shared(plain); first != second {
		t.Fatal("two identical allows built two responses; want one shared response")
	}
	// Forged identity headers make a response of their own.
	forged := envoyRequest("GET", "/api/v1/projects", map[string]string{"x-api-key": w.Plain.Secret, "x-keygate-role": "admin"}, nil)
	resp := shared(forged)
	if resp == first || !slices.Contains(resp.GetOkResponse().GetHeadersToRemove(), "x-keygate-role") {
		t.Fatalf("a forged identity header was not removed: %v", resp.GetOkResponse().GetHeadersToRemove())
	}
	// Another module, or the key in another header, is another response.
	bearer := envoyRequest("GET", "/api/v1/projects", map[string]string{"authorization": "Bearer " + w.Plain.Secret}, nil)
	if resp := shared(bearer); resp == first || !slices.Contains(resp.GetOkResponse().GetHeadersToRemove(), "authorization") {
		t.Fatal("the bearer request got the x-api-key request's response")
	}
	other := envoyRequest("GET", "/api/v1/deployments", map[string]string{"x-api-key": w.Plain.Secret}, nil)
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
	changed := *w.Plain.Record
	changed.UpdatedAt = changed.UpdatedAt.Add(time.Second)
	changed.AccountID = "acct-moved"
	w.Lookup.Put(&changed)
	resp, _ = s.Check(context.Background(), plain)
	if got := resp.GetDynamicMetadata().GetFields()["account_id"].GetStringValue(); got != "acct-moved" {
		t.Fatalf("after a change the response still says account %q", got)
	}
}

func TestUnderscoreIdentityHeadersRemoved(t *testing.T) {
	w := authztest.NewWorld(t)
	s := newTestServer(t, w.Lookup, nil)
	resp, _ := s.Check(context.Background(), envoyRequest("GET", "/api/v1/projects", map[string]string{
		"x-api-key": w.Plain.Secret, "x_keygate_scopes": "*", "x_keygate-account_id": "victim"}, nil))
	removed := resp.GetOkResponse().GetHeadersToRemove()
	for _, h := range []string{"x_keygate_scopes", "x_keygate-account_id"} {
		if !slices.Contains(removed, h) {
			t.Errorf("forged %s not removed (removals %v)", h, removed)
		}
	}
}

func TestDryRunCheck(t *testing.T) {
	w := authztest.NewWorld(t)
	s := newTestServer(t, w.Lookup, func(c *authz.Config) { c.DryRun = true })
	resp, err := s.Check(context.Background(), envoyRequest("GET", "/api/v1/users/1", map[string]string{
		"x-api-key": w.Plain.Secret, "x-keygate-dry-run": "forged", "x-keygate-account-id": "forged"}, nil))
	if err != nil || codes.Code(resp.GetStatus().GetCode()) != codes.OK {
		t.Fatalf("a dry-run denial: %v, %v; want an allow", resp.GetStatus(), err)
	}
	set := map[string]string{}
	for _, h := range resp.GetOkResponse().GetHeaders() {
		set[h.GetHeader().GetKey()] = h.GetHeader().GetValue()
	}
	if set["x-keygate-dry-run"] != "module_forbidden" || set["x-keygate-account-id"] != "acct-k-plain" {
		t.Fatalf("dry-run headers %v", set)
	}
	if got := resp.GetDynamicMetadata().GetFields()["dry_run"].GetStringValue(); got != "module_forbidden" {
		t.Fatalf("dynamic metadata dry_run %q", got)
	}
	if !slices.Contains(resp.GetOkResponse().GetHeadersToRemove(), "x-api-key") {
		t.Fatal("a dry-run allow forwards the key")
	}
	// No key: let through with no identity, and nothing forged survives.
	resp, _ = s.Check(context.Background(), envoyRequest("GET", "/api/v1/projects", map[string]string{"x-keygate-key-id": "forged"}, nil))
	ok := resp.GetOkResponse()
	if ok == nil || !slices.Contains(ok.GetHeadersToRemove(), "x-keygate-key-id") {
		t.Fatalf("a dry-run request without a key: %v", resp)
	}
	for _, h := range ok.GetHeaders() {
		if h.GetHeader().GetKey() == "x-keygate-dry-run" && h.GetHeader().GetValue() != "missing_api_key" {
			t.Fatalf("dry-run header %v", h)
		}
	}
}
