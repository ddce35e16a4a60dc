package authz

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keygate/keygate/internal/authztest"
	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/policy"
)

// The cache is what the decision path asks, and the fake stands in for it.
var (
	_ KeyLookup = (*keystore.Cache)(nil)
	_ KeyLookup = (*authztest.Lookup)(nil)
)

func newTestServer(tb testing.TB, lookup KeyLookup, mutate func(*Config)) *Server {
	tb.Helper()
	h, _ := keystore.NewHasher(nil)
	cfg := Config{Lookup: lookup, Policy: policy.Example(), Hasher: h, Now: func() time.Time { return authztest.Now }}
	if mutate != nil {
		mutate(&cfg)
	}
	s, err := NewServer(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// request builds a Request the way every adapter does: its fields, and
// each header through ReadHeader.
func (s *Server) request(method, path string, headers map[string]string, module string) *Request {
	r := &Request{Method: method, Path: path, Module: module}
	for name, value := range headers {
		s.ReadHeader(r, name, value)
	}
	return r
}

func (s *Server) decideRequest(method, path string, headers map[string]string, module string) Decision {
	return s.Decide(context.Background(), s.request(method, path, headers, module))
}

// decideCase decides a case of the shared decision table, after its
// source's failed attempts.
func (s *Server) decideCase(c authztest.Case) Decision {
	for range c.Failures {
		s.decideCase(c.FailureCase())
	}
	r := s.request(c.Method, c.Path, c.Headers, c.Module)
	r.Source = c.SourceAddr() // the core has no usual source: "" is none
	return s.Decide(context.Background(), r)
}

// tableLimit gives a server the failure limit the decision table is
// replayed against.
func tableLimit(c *Config) {
	c.FailureLimit = FailureLimit{Count: authztest.FailureBudget, Window: authztest.FailureWindow}
}

func TestDecisionTable(t *testing.T) {
	w := authztest.NewWorld(t)
	s := newTestServer(t, w.Lookup, tableLimit)
	for _, c := range w.DecisionTable(t) {
		t.Run(c.Name, func(t *testing.T) {
			d := s.decideCase(c)
			if got := d.Outcome.String(); got != c.Want {
				t.Fatalf("outcome %s (reason %s), want %s", got, d.Reason, c.Want)
			}
			if d.Outcome == Allow && d.Key == nil {
				t.Fatal("an allow without a key")
			}
		})
	}
	// Header names in any case, as net/http canonicalizes them.
	d := s.decideRequest("GET", "/api/v1/projects", map[string]string{"X-Api-Key": w.Plain.Secret, "X-Keygate-Scopes": "*"}, "")
	if d.Outcome != Allow || !d.Forged() {
		t.Fatalf("canonical-case headers: %s, forged %v", d.Outcome, d.Forged())
	}
}

func TestOutcomeAndReasonTables(t *testing.T) {
	names := map[string]bool{}
	for o := range numOutcomes {
		info := outcomes[o]
		if info.name == "" || names[info.name] {
			t.Errorf("outcome %d: name %q empty or repeated", o, info.name)
		}
		names[info.name] = true
		// The statuses are the ones net/http names, so that every
		// transport and Envoy agree.
		if http.StatusText(o.HTTPStatus()) == "" {
			t.Errorf("%s: %d is not an HTTP status", o, o.HTTPStatus())
		}
		if (o == Allow) != (info.message == "") || (o == Allow) != (o.GRPCCode() == grpcOK) {
			t.Errorf("%s: only Allow has no message and gRPC status OK", o)
		}
		if !slices.ContainsFunc(reasons[:], func(r reasonInfo) bool { return r.outcome == o }) {
			t.Errorf("%s: no reason leads to it", o)
		}
	}
	reasonNames := map[string]bool{}
	for r := range numReasons {
		if n := r.String(); n == "" || reasonNames[n] {
			t.Errorf("reason %d: name %q empty or repeated", r, n)
		}
		reasonNames[r.String()] = true
	}
	if Outcome(200).String() != "unavailable" || Outcome(200).Denial() != Unavailable.Denial() {
		t.Error("an outcome out of range must read as unavailable")
	}
}

func TestDenials(t *testing.T) {
	cases := []struct {
		outcome    Outcome
		httpStatus int
		header     string // a header this denial must carry
	}{
		{MissingKey, 401, "www-authenticate"},
		{InvalidKey, 401, "www-authenticate"},
		{InvalidPath, 400, "content-type"},
		{InvalidRequest, 400, "content-type"},
		{ModuleForbidden, 403, "content-type"},
		{InsufficientScope, 403, "content-type"},
		{Unavailable, 503, "retry-after"},
	}
	for _, c := range cases {
		t.Run(c.outcome.String(), func(t *testing.T) {
			d := c.outcome.Denial()
			if d.Status != c.httpStatus || d.Outcome != c.outcome {
				t.Errorf("status %d, want %d", d.Status, c.httpStatus)
			}
			var body struct {
				Error struct{ Code, Message string } `json:"error"`
			}
			if err := json.Unmarshal([]byte(d.Body), &body); err != nil || body.Error.Code != c.outcome.String() || body.Error.Message != c.outcome.Message() {
				t.Errorf("body %q: want {\"error\":{\"code\":%q,\"message\":…}}", d.Body, c.outcome)
			}
			headers := map[string]string{}
			for _, h := range d.Headers {
				headers[h.Name] = h.Value
			}
			if headers["content-type"] != "application/json" || headers["cache-control"] != "no-store" || headers[c.header] == "" {
				t.Errorf("headers %v: want content-type application/json, cache-control no-store and %s", headers, c.header)
			}
		})
	}
}

func TestIdentity(t *testing.T) {
	w := authztest.NewWorld(t)
	s := newTestServer(t, w.Lookup, nil)
	d := s.decideRequest("POST", "/api/v1/projects/7/builds?dry=1", map[string]string{
		"x-api-key":            w.Plain.Secret,
		"authorization":        "Basic dXNlcjpwYXNz",
		"x-keygate-key-id":     "forged",
		"x-keygate-account-id": "forged",
		"x-keygate-scopes":     "*",
		"x-keygate-admin":      "true",
		"X_Keygate_Role":       "admin",
	}, "projects")
	if d.Outcome != Allow {
		t.Fatalf("outcome %s (%s)", d.Outcome, d.Reason)
	}
	id := s.Identity(&d)
	want := [NumIdentityHeaders]Field{{"x-keygate-key-id", "k-plain"}, {"x-keygate-account-id", "acct-k-plain"}, {"x-keygate-scopes", ""}, {"x-keygate-module", "projects"}, {"x-keygate-dry-run", ""}}
	if id.Headers != want {
		t.Fatalf("identity headers %v, want %v", id.Headers, want)
	}
	// The key's header goes; Basic credentials are someone else's and
	// stay; forged identity headers are either identity headers (set or
	// removed by the adapter) or removed here, lower-cased.
	slices.Sort(id.Remove)
	if !slices.Equal(id.Remove, []string{"x-api-key", "x-keygate-admin", "x_keygate_role"}) {
		t.Fatalf("removals %v", id.Remove)
	}
	if got := s.IdentityHeaders(); got != [NumIdentityHeaders]string{want[0].Name, want[1].Name, want[2].Name, want[3].Name, want[4].Name} {
		t.Fatalf("IdentityHeaders %v", got)
	}

	// A scoped key, bearer-style, on a path the table puts in projects.
	d = s.decideRequest("GET", "/api/v1/projects", map[string]string{"authorization": "Bearer " + w.ReadOnly.Secret}, "")
	id = s.Identity(&d)
	if id.Headers[2].Value != "projects:read" || id.Headers[3].Value != "projects" || !slices.Equal(id.Remove, []string{"authorization"}) {
		t.Fatalf("headers %v, removals %v", id.Headers, id.Remove)
	}
}

// What a decision keeps past its request (shared responses and their
// cache, keyed by module) holds none of the request's strings, which may
// point into a buffer as large as the request (extauthz reads a
// CheckRequest's strings in place): the module is the policy's own.
func TestDecisionKeepsNoRequestString(t *testing.T) {
	w := authztest.NewWorld(t)
	s := newTestServer(t, w.Lookup, nil)
	buffer := []byte("projects")
	module := unsafe.String(&buffer[0], len(buffer))
	d := s.decideRequest("GET", "/api/v1/projects/7", map[string]string{"x-api-key": w.Plain.Secret}, module)
	if d.Outcome != Allow || d.Module != "projects" {
		t.Fatalf("outcome %s (%s), module %q", d.Outcome, d.Reason, d.Module)
	}
	if inBuffer(buffer, d.Module) {
		t.Fatal("the decision's module is the request's string")
	}
	for _, f := range s.Identity(&d).Headers {
		if inBuffer(buffer, f.Value) {
			t.Fatalf("identity header %s holds the request's string", f.Name)
		}
	}
}

// The shared renderings keep no request string either, also for a
// dry-run denial that names a module the policy does not know (which the
// decision keeps as the request named it).
func TestGrantsKeepNoRequestString(t *testing.T) {
	w := authztest.NewWorld(t)
	s := newTestServer(t, w.Lookup, func(c *Config) { c.DryRun = true })
	buffer := []byte("no-such-module")
	module := unsafe.String(&buffer[0], len(buffer))
	d := s.decideRequest("GET", "/api/v1/projects/7", map[string]string{"x-api-key": w.Plain.Secret}, module)
	if !d.DryRun || d.Reason != ReasonUnknownModule || d.Module != "no-such-module" {
		t.Fatalf("dry run %v, reason %s, module %q", d.DryRun, d.Reason, d.Module)
	}
	kept := NewGrants[string]().Get(&d, func(d Decision) string { return d.Module })
	if kept != "no-such-module" || inBuffer(buffer, kept) {
		t.Fatalf("the rendering kept %q from the request's buffer", kept)
	}
}

// inBuffer reports whether v is a non-empty string in buffer's memory.
func inBuffer(buffer []byte, v string) bool {
	p := uintptr(unsafe.Pointer(unsafe.StringData(v)))
	start := uintptr(unsafe.Pointer(&buffer[0]))
	return v != "" && p >= start && p < start+uintptr(len(buffer))
}

func TestKeepCredentialsAndPrefix(t *testing.T) {
	w := authztest.NewWorld(t)
	s := newTestServer(t, w.Lookup, func(c *Config) { c.KeepCredentials = true; c.IdentityPrefix = "X-Auth-" })
	d := s.decideRequest("GET", "/api/v1/projects", map[string]string{"x-api-key": w.Plain.Secret, "x-auth-scopes": "*"}, "")
	id := s.Identity(&d)
	if slices.Contains(id.Remove, "x-api-key") {
		t.Fatal("KeepCredentials: the key header was removed")
	}
	if id.Headers[0].Name != "x-auth-key-id" || !d.Forged() {
		t.Fatalf("identity prefix not applied: %v (forged %v)", id.Headers, d.Forged())
	}
}

func TestNoLookupForMalformedKeys(t *testing.T) {
	w := authztest.NewWorld(t)
	s := newTestServer(t, w.Lookup, nil)
	plain := w.Plain.Secret
	for _, v := range []string{"x", strings.Repeat("k", 5000), plain[:len(plain)-1] + authztest.FlipChar(plain[len(plain)-1])} {
		s.decideRequest("GET", "/api/v1/projects", map[string]string{"x-api-key": v}, "")
	}
	s.decideRequest("GET", "/api/v1/%2e%2e/users", map[string]string{"x-api-key": plain}, "")
	if n := w.Lookup.Calls.Load(); n != 0 {
		t.Fatalf("%d store lookups for malformed keys or invalid paths, want 0", n)
	}
}

func TestStoreFailuresFailClosed(t *testing.T) {
	w := authztest.NewWorld(t)
	headers := map[string]string{"x-api-key": w.Plain.Secret}
	cases := []struct {
		name   string
		lookup *authztest.Lookup
		reason Reason
	}{
		{"store unavailable", &authztest.Lookup{Err: fmt.Errorf("lookup: %w: connection refused", keystore.ErrUnavailable)}, ReasonStoreError},
		{"unexpected error", &authztest.Lookup{Err: errors.New("something else")}, ReasonStoreError},
		{"hung store, caller's deadline passes", &authztest.Lookup{Block: true}, ReasonTimeout},
		{"panicking store", &authztest.Lookup{Panic: true}, ReasonPanic},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := newTestServer(t, c.lookup, nil)
			start := time.Now()
			ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
			defer cancel()
			d := s.Decide(ctx, s.request("GET", "/api/v1/projects", headers, ""))
			if d.Outcome != Unavailable || d.Reason != c.reason || d.Key != nil {
				t.Fatalf("%s (%s), want unavailable (%s)", d.Outcome, d.Reason, c.reason)
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
		if d := s.Decide(ctx, s.request("GET", "/api/v1/projects", headers, "")); d.Outcome != Unavailable || d.Reason != ReasonCanceled {
			t.Fatalf("%s (%s), want unavailable (canceled)", d.Outcome, d.Reason)
		}
	})
}

func TestRefuse(t *testing.T) {
	w := authztest.NewWorld(t)
	rec := &usageLog{}
	s := newTestServer(t, w.Lookup, func(c *Config) { c.Usage = rec })
	for r, want := range map[Reason]Outcome{ReasonForwardedHeaders: InvalidPath, ReasonUndecodable: InvalidRequest} {
		if d := s.Refuse(context.Background(), &Request{}, r); d.Outcome != want || d.Reason != r || d.Key != nil {
			t.Errorf("Refuse(%s) = %s (%s), want %s", r, d.Outcome, d.Reason, want)
		}
	}
	if len(rec.ids) != 0 {
		t.Fatalf("a refusal recorded a use: %v", rec.ids)
	}
}

func TestDefaultDenyPolicy(t *testing.T) {
	w := authztest.NewWorld(t)
	p, err := policy.Parse("strict.yaml", []byte("default: deny\nmodules:\n  projects: { paths: [/api/v1/projects] }\n"))
	if err != nil {
		t.Fatal(err)
	}
	s := newTestServer(t, w.Lookup, func(c *Config) { c.Policy = p })
	for path, want := range map[string]Outcome{
		"/api/v1/projects/1": Allow,
		"/api/v1/other":      ModuleForbidden,
		"/":                  ModuleForbidden,
	} {
		if got := s.decideRequest("GET", path, map[string]string{"x-api-key": w.Plain.Secret}, ""); got.Outcome != want {
			t.Errorf("%s: %s, want %s", path, got.Outcome, want)
		}
	}
}

type usageLog struct{ ids []string }

func (u *usageLog) Used(key *keystore.Record, _ time.Time) { u.ids = append(u.ids, key.ID()) }

func TestUsageRecorded(t *testing.T) {
	w := authztest.NewWorld(t)
	rec := &usageLog{}
	s := newTestServer(t, w.Lookup, func(c *Config) { c.Usage = rec })
	s.decideRequest("GET", "/api/v1/projects", map[string]string{"x-api-key": w.Plain.Secret}, "")
	s.decideRequest("GET", "/api/v1/users", map[string]string{"x-api-key": w.Plain.Secret}, "")
	s.decideRequest("GET", "/api/v1/projects", map[string]string{"x-api-key": w.Revoked.Secret}, "")
	if !slices.Equal(rec.ids, []string{"k-plain"}) {
		t.Fatalf("usage recorded for %v, want only the one allowed request", rec.ids)
	}
}

func TestNewServerRejectsBadConfig(t *testing.T) {
	h, _ := keystore.NewHasher(nil)
	base := func() Config { return Config{Lookup: &authztest.Lookup{}, Policy: policy.Example(), Hasher: h} }
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

func TestUnderscoreIdentityHeadersRemoved(t *testing.T) {
	w := authztest.NewWorld(t)
	s := newTestServer(t, w.Lookup, nil)
	d := s.decideRequest("GET", "/api/v1/projects", map[string]string{
		"x-api-key": w.Plain.Secret, "x_keygate_scopes": "*", "x_keygate-account_id": "victim"}, "")
	removed := s.Identity(&d).Remove
	for _, h := range []string{"x_keygate_scopes", "x_keygate-account_id"} {
		if !slices.Contains(removed, h) {
			t.Errorf("forged %s not removed (removals %v)", h, removed)
		}
	}
}

func TestRouteModuleUnderDefaultDeny(t *testing.T) {
	w := authztest.NewWorld(t)
	p, err := policy.Parse("strict.yaml", []byte("default: deny\nmodules:\n  reports: { paths: [/api/v1/reports] }\n  users: { paths: [/api/v1/users], api_keys: deny }\n"))
	if err != nil {
		t.Fatal(err)
	}
	s := newTestServer(t, w.Lookup, func(c *Config) { c.Policy = p })
	cases := []struct {
		path string
		want Outcome
	}{
		{"/v2/reports/7", Allow},                            // the route says reports; the table knows no such path
		{"/v2/reports/../../api/v1/users", ModuleForbidden}, // a reading lands in a closed module
	}
	for _, c := range cases {
		if got := s.decideRequest("GET", c.path, map[string]string{"x-api-key": w.Plain.Secret}, "reports"); got.Outcome != c.want {
			t.Errorf("%s with route module reports: %s, want %s", c.path, got.Outcome, c.want)
		}
	}
}

// pepperedLookup finds keys under their plain SHA-256 digest only, and
// fails for every other digest, like a database that is down while the
// key is cached under its pre-pepper digest.
type pepperedLookup struct{ plain *authztest.Lookup }

func (p pepperedLookup) LookupCached(ctx context.Context, d keystore.Digest) (*keystore.Record, bool, error) {
	if k, err := p.plain.Lookup(ctx, d); err == nil {
		return k, true, nil
	}
	return nil, false, fmt.Errorf("lookup: %w: connection refused", keystore.ErrUnavailable)
}

func (p pepperedLookup) Peek(ctx context.Context, d keystore.Digest) (*keystore.Record, bool) {
	return p.plain.Peek(ctx, d)
}

func TestPepperCandidatesSurviveOneFailure(t *testing.T) {
	w := authztest.NewWorld(t)
	h, _ := keystore.NewHasher([]byte(strings.Repeat("p", 32)))
	s := newTestServer(t, pepperedLookup{w.Lookup}, func(c *Config) { c.Hasher = h })
	if d := s.decideRequest("GET", "/api/v1/projects", map[string]string{"x-api-key": w.Plain.Secret}, ""); d.Outcome != Allow {
		t.Fatalf("a key found under its second candidate digest was refused: %s (%s)", d.Outcome, d.Reason)
	}
	unknown, _ := keystore.GenerateSecret("kg")
	if d := s.decideRequest("GET", "/api/v1/projects", map[string]string{"x-api-key": unknown.Reveal()}, ""); d.Outcome != Unavailable {
		t.Fatalf("an unknown key with the store failing: %s, want unavailable", d.Outcome)
	}
}

func TestGrantsShareRenderings(t *testing.T) {
	w := authztest.NewWorld(t)
	s := newTestServer(t, w.Lookup, nil)
	g := NewGrants[*Identity]()
	builds := 0
	render := func(d Decision) *Identity { builds++; id := s.Identity(&d); return &id }
	get := func(headers map[string]string, path string) *Identity {
		d := s.decideRequest("GET", path, headers, "")
		return g.Get(&d, render)
	}
	plain := map[string]string{"x-api-key": w.Plain.Secret}
	first := get(plain, "/api/v1/projects")
	if second := get(plain, "/api/v1/projects/2"); second != first || builds != 1 {
		t.Fatalf("two allows of one key, module and header built %d renderings; want one shared", builds)
	}
	if forged := get(map[string]string{"x-api-key": w.Plain.Secret, "x-keygate-role": "admin"}, "/api/v1/projects"); forged == first || !slices.Contains(forged.Remove, "x-keygate-role") {
		t.Fatal("a request with forged identity headers got the shared rendering")
	}
	if bearer := get(map[string]string{"authorization": "Bearer " + w.Plain.Secret}, "/api/v1/projects"); bearer == first {
		t.Fatal("the key in another header got the x-api-key rendering")
	}
	if other := get(plain, "/api/v1/deployments"); other == first {
		t.Fatal("another module got the projects rendering")
	}
	// A new version of the record (any lifecycle change) is a new rendering.
	changed := *w.Plain.Record
	changed.UpdatedAt = changed.UpdatedAt.Add(time.Second)
	changed.AccountID = "acct-moved"
	w.Lookup.Put(&changed)
	if got := get(plain, "/api/v1/projects"); got.Headers[1].Value != "acct-moved" {
		t.Fatalf("after a change the rendering still says account %q", got.Headers[1].Value)
	}
}

// BenchmarkDecide measures the transport-neutral cached decision with the
// real keystore.Cache and metrics on: reading the headers of a typical
// request, deciding, and the identity's shared rendering.
func BenchmarkDecide(b *testing.B) {
	w := authztest.NewWorld(b)
	cache, err := keystore.NewCache(w.Lookup, keystore.CacheOptions{})
	if err != nil {
		b.Fatal(err)
	}
	s := newTestServer(b, cache, func(c *Config) { c.Now = nil })
	g := NewGrants[*Identity]()
	render := func(d Decision) *Identity { id := s.Identity(&d); return &id }
	headers := [][2]string{{"accept", "application/json"}, {"user-agent", "example-sdk/2.3.1"}, {"x-request-id", "5f0b0a58"},
		{"x-forwarded-for", "203.0.113.7"}, {"content-type", "application/json"}, {"x-api-key", w.Plain.Secret}}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		r := Request{Method: "GET", Path: "/api/v1/projects/42/builds?page=2"}
		for _, h := range headers {
			s.ReadHeader(&r, h[0], h[1])
		}
		d := s.Decide(ctx, &r)
		if d.Outcome != Allow || g.Get(&d, render) == nil {
			b.Fatal("not allowed")
		}
	}
}

// BenchmarkDecideKeys measures the cached decision as serve makes it
// across many keys (each request another key, so that little stays in
// the processor's caches): metrics on, last-used times and usage counted.
func BenchmarkDecideKeys(b *testing.B) {
	w := authztest.NewWorld(b)
	keys := make([]string, 1000)
	for i := range keys {
		keys[i] = w.Lookup.Add(b, fmt.Sprintf("key-%04d", i), []string{"projects:read"}, nil).Secret
	}
	cache, err := keystore.NewCache(w.Lookup, keystore.CacheOptions{})
	if err != nil {
		b.Fatal(err)
	}
	usage := keystore.NewUsageRecorder(nil, time.Hour, nil) // never flushed
	counter, err := keystore.NewUsageCounter(nil, keystore.UsageCounterOptions{Outcomes: OutcomeNames(), Interval: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	s := newTestServer(b, cache, func(c *Config) {
		c.Now, c.Usage, c.Counter, c.Metrics = nil, usage, counter, NewMetrics(prometheus.NewRegistry())
	})
	ctx := context.Background()
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		r := Request{Method: "GET", Path: "/api/v1/projects/42/builds?page=2"}
		s.ReadHeader(&r, "x-api-key", keys[i%len(keys)])
		if d := s.Decide(ctx, &r); d.Outcome != Allow {
			b.Fatal("not allowed")
		}
		i++
	}
}

func mustAddr(t *testing.T, s string) netip.Addr {
	t.Helper()
	a, err := netip.ParseAddr(s)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// dryRunPolicy has dry-run modules (users closed, projects and builds
// open) next to enforced ones (accounts closed, deployments open).
const dryRunPolicy = `modules:
  users: { paths: [/api/v1/users], api_keys: deny, dry_run: true }
  accounts: { paths: [/api/v1/accounts], api_keys: deny }
  projects: { paths: [/api/v1/projects], dry_run: true }
  builds: { paths: [/api/v1/builds], dry_run: true }
  deployments: { paths: [/api/v1/deployments] }
`

// TestDryRunOnlyWhenEveryFailingModuleIs: a denial is let through as a dry
// run only when every module whose check failed is in dry run: across
// every reading of the path (Route.Modules), every path-override target,
// and every closed module involved. One enforced module that failed
// enforces the denial, whatever module the decision names.
// TestDryRunKeepsDefaultDeny: under default: deny, a reading in a closed
// module in dry run does not hide another reading in no module, which the
// default refuses and no dry run exempts.
func TestDryRunKeepsDefaultDeny(t *testing.T) {
	w := authztest.NewWorld(t)
	p, err := policy.Parse("policy.yaml", []byte("default: deny\n"+dryRunPolicy))
	if err != nil {
		t.Fatal(err)
	}
	s := newTestServer(t, w.Lookup, func(c *Config) { c.Policy = p })
	star := map[string]string{"x-api-key": w.Star.Secret}
	for _, c := range []struct {
		name, path string
		headers    map[string]string
		dryRun     bool
	}{
		{"in no module", "/other", star, false},
		{"a reading in a dry-run closed module, another in no module", "/api/v1/users/../../other", star, false},
		{"an override target with such readings", "/api/v1/projects/1", map[string]string{"x-api-key": w.Star.Secret, "x-original-url": "/api/v1/users/../../other"}, false},
		{"only the dry-run closed module", "/api/v1/users/1", star, true},
	} {
		d := s.decideRequest("GET", c.path, c.headers, "")
		if d.Outcome == Allow || d.DryRun != c.dryRun {
			t.Errorf("%s: %s (reason %s) dry run %v, want a denial with dry run %v", c.name, d.Outcome, d.Reason, d.DryRun, c.dryRun)
		}
	}
}

func TestDryRunOnlyWhenEveryFailingModuleIs(t *testing.T) {
	w := authztest.NewWorld(t)
	p, err := policy.Parse("policy.yaml", []byte(dryRunPolicy))
	if err != nil {
		t.Fatal(err)
	}
	s := newTestServer(t, w.Lookup, func(c *Config) { c.Policy = p })
	read := map[string]string{"x-api-key": w.ReadOnly.Secret} // projects:read only
	deploy := map[string]string{"x-api-key": w.Lookup.Add(t, "k-deploy", []string{"projects:read", "deployments:read"}, nil).Secret}
	with := func(h map[string]string, name, value string) map[string]string {
		out := map[string]string{name: value}
		for k, v := range h {
			out[k] = v
		}
		return out
	}
	cases := []struct {
		name, method, path, module string
		headers                    map[string]string
		want                       Outcome
		dryRun                     bool
	}{
		// The findings: a reading, or an override target, in an enforced
		// module the key lacks the scope of.
		{"a reading in an enforced module", "GET", "/api/v1/deployments/../projects/1", "", read, InsufficientScope, false},
		{"a reading in an enforced module, POST", "POST", "/api/v1/deployments/../projects/1", "", read, InsufficientScope, false},
		{"a reading in an enforced module, route module in dry run", "GET", "/api/v1/deployments/../projects/1", "projects", read, InsufficientScope, false},
		{"an override target in an enforced module", "GET", "/api/v1/projects/1", "", with(read, "x-original-url", "/api/v1/deployments/1"), InsufficientScope, false},
		{"an override target in an enforced module, POST", "POST", "/api/v1/projects/1", "", with(read, "x-forwarded-uri", "/api/v1/deployments/1"), InsufficientScope, false},
		{"an override target with a reading in an enforced module", "GET", "/api/v1/projects/1", "", with(read, "x-rewrite-url", "/api/v1/deployments/../builds/1"), InsufficientScope, false},
		{"no key, a reading in an enforced module", "GET", "/api/v1/deployments/../projects/1", "", nil, MissingKey, false},
		{"no key, an override target in an enforced module", "GET", "/api/v1/projects/1", "", map[string]string{"x-original-url": "/api/v1/deployments/1"}, MissingKey, false},
		{"closed module in dry run, an override target in an enforced module", "GET", "/api/v1/users/1", "", with(read, "x-original-url", "/api/v1/deployments/1"), ModuleForbidden, false},
		{"closed module in dry run, an override target in no module", "GET", "/api/v1/users/1", "", with(read, "x-original-url", "/other"), ModuleForbidden, false},
		// A reading in a closed module in dry run, another in an enforced
		// one: the readings after the closed one count too.
		{"closed module in dry run, a reading in an enforced module", "GET", "/api/v1/deployments/../users/1", "", read, ModuleForbidden, false},
		{"closed module in dry run, a reading in a closed enforced module", "GET", "/api/v1/accounts/../users/1", "", read, ModuleForbidden, false},
		{"closed module in dry run, an override target with such readings", "GET", "/api/v1/projects/1", "", with(read, "x-original-url", "/api/v1/deployments/../users/1"), ModuleForbidden, false},
		// Targets the query names count before any step refuses.
		{"no key, a query target in a closed enforced module", "GET", "/api/v1/builds/1?rest_route=/api/v1/accounts/1", "", nil, MissingKey, false},
		{"no key, a query path in an enforced module", "GET", "/api/v1/builds/1?/api/v1/deployments/1", "", nil, MissingKey, false},
		{"malformed key, a query target in an enforced module", "GET", "/api/v1/builds/1?_url=/api/v1/deployments/1", "", map[string]string{"x-api-key": "kg_x"}, InvalidKey, false},
		// A target keygate cannot read: its modules are unknown, so not
		// all in dry run.
		{"an override target that cannot be read", "GET", "/api/v1/projects/1", "", with(read, "x-original-url", "api/v1/deployments/1"), InvalidPath, false},
		{"a path that cannot be read, route module in dry run", "GET", "api/v1/projects/1", "projects", read, InvalidPath, false},
		// The controls: every failing module in dry run.
		{"enforced module", "GET", "/api/v1/deployments/1", "", read, InsufficientScope, false},
		{"only in a dry-run module", "POST", "/api/v1/projects/1", "", read, InsufficientScope, true},
		{"only in another dry-run module", "GET", "/api/v1/builds/1", "", read, InsufficientScope, true},
		{"two readings in two dry-run modules, one failing", "GET", "/api/v1/builds/../projects/1", "", read, InsufficientScope, true},
		{"two readings in two dry-run modules, both failing", "POST", "/api/v1/builds/../projects/1", "", read, InsufficientScope, true},
		{"a reading in a dry-run module the key may use", "GET", "/api/v1/projects/../builds/1", "", read, InsufficientScope, true},
		{"a reading in an enforced module the key may use", "GET", "/api/v1/deployments/../builds/1", "", deploy, InsufficientScope, true},
		{"an override target in an enforced module the key may use", "GET", "/api/v1/builds/1", "", with(deploy, "x-original-url", "/api/v1/deployments/1"), InsufficientScope, true},
		{"override targets all in dry-run modules", "GET", "/api/v1/projects/1", "", with(read, "x-original-url", "/api/v1/builds/1"), InsufficientScope, true},
		{"override targets all in dry-run modules, POST", "POST", "/api/v1/builds/1", "", with(read, "x-original-url", "/api/v1/projects/1,/api/v1/builds/2"), InsufficientScope, true},
		{"no key, readings all in dry-run modules", "GET", "/api/v1/builds/../projects/1", "", nil, MissingKey, true},
		{"closed module in dry run, an override target the key may use", "GET", "/api/v1/users/1", "", with(read, "x-original-url", "/api/v1/projects/1"), ModuleForbidden, true},
		{"closed module in dry run, a reading in a dry-run module", "GET", "/api/v1/builds/../users/1", "", read, ModuleForbidden, true},
		{"an allow is an allow", "GET", "/api/v1/projects/1", "", with(read, "x-original-url", "/api/v1/projects/2"), Allow, false},
	}
	for _, c := range cases {
		d := s.decideRequest(c.method, c.path, c.headers, c.module)
		if d.Outcome != c.want || d.DryRun != c.dryRun || d.Denied() != (c.want != Allow && !c.dryRun) {
			t.Errorf("%s: %s (reason %s, module %q) dry run %v denied %v, want %s dry run %v",
				c.name, d.Outcome, d.Reason, d.Module, d.DryRun, d.Denied(), c.want, c.dryRun)
		}
	}
}
