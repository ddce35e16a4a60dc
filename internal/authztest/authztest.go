package authztest

import (
	"context"
	"errors"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keygate/keygate/keystore"
)

// Now is the clock of the world: keys were created an hour before it.
var Now = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)

// Lookup is an in-memory key lookup: an authz.KeyLookup, and a
// keystore.Source for a real cache in front of it.
type Lookup struct {
	// Err, when set, is returned for every lookup.
	Err error
	// Block makes every lookup wait for its context to end, like a hung
	// database.
	Block bool
	// Panic makes every lookup panic.
	Panic bool
	// Calls counts lookups.
	Calls atomic.Int64

	mu   sync.Mutex
	keys map[keystore.Digest]*keystore.Record
}

// Lookup finds the record of the key stored under d.
func (f *Lookup) Lookup(ctx context.Context, d keystore.Digest) (*keystore.Record, error) {
	f.Calls.Add(1)
	if f.Panic {
		panic("lookup exploded")
	}
	if f.Block {
		<-ctx.Done()
		return nil, errors.Join(keystore.ErrUnavailable, ctx.Err())
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.Err != nil {
		return nil, f.Err
	}
	k, ok := f.keys[d]
	if !ok {
		return nil, keystore.ErrNotFound
	}
	return k, nil
}

// LookupCached is Lookup, answered as the store would (never from memory).
func (f *Lookup) LookupCached(ctx context.Context, d keystore.Digest) (*keystore.Record, bool, error) {
	k, err := f.Lookup(ctx, d)
	return k, false, err
}

// Peek is Lookup from memory alone: everything the fake holds counts as
// cached.
func (f *Lookup) Peek(ctx context.Context, d keystore.Digest) (*keystore.Record, bool) {
	k, err := f.Lookup(ctx, d)
	return k, err == nil
}

// Put stores k's record under its digest, replacing any record there.
func (f *Lookup) Put(k *keystore.Key) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.keys == nil {
		f.keys = map[keystore.Digest]*keystore.Record{}
	}
	f.keys[k.Digest] = k.Record()
}

// Key is a key the lookup knows, with its secret.
type Key struct {
	Secret string
	Record *keystore.Key
}

// Add stores a new key with the given scopes, hashed with SHA-256 (no
// pepper); mutate, if set, changes the record first (revocation, expiry).
func (f *Lookup) Add(tb testing.TB, id string, scopes []string, mutate func(*keystore.Key)) Key {
	tb.Helper()
	secret, err := keystore.GenerateSecret("kg")
	if err != nil {
		tb.Fatal(err)
	}
	h, _ := keystore.NewHasher(nil)
	k := &keystore.Key{ID: id, AccountID: "acct-" + id, Name: id, Scopes: scopes, CreatedAt: Now.Add(-time.Hour),
		Digest: h.Digest(secret), DisplayPrefix: secret.DisplayPrefix()}
	if mutate != nil {
		mutate(k)
	}
	f.Put(k)
	return Key{Secret: secret.Reveal(), Record: k}
}

// World is a lookup with one key of each kind.
type World struct {
	Lookup *Lookup
	// Plain has no scopes; ReadOnly has projects:read; WriteOnly has
	// projects:write; Star has *.
	Plain, ReadOnly, WriteOnly, Revoked, Expired, Star Key
	// Disabled is disabled (and would otherwise be valid).
	Disabled Key
	// Restricted may be used only from SourceCIDRs.
	Restricted Key
	// Gold has the metadata tier=gold and cost_center=eng-42.
	Gold Key
	// Legacy is a key of another system (no keygate prefix or checksum),
	// stored under its SHA-256 digest as an import stores it.
	Legacy Key
}

// SourceCIDRs are the addresses World.Restricted may be used from. No
// transport's default client address is in them.
var SourceCIDRs = []string{"198.51.100.0/24", "2001:db8::/32"}

// LegacySecret is World.Legacy's key: no keygate prefix or checksum.
const LegacySecret = "kong-Zm9vYmFyYmF6cXV4cXV1eA"

// UnknownSource, as Case.Source, is a request whose client address the
// transport does not know.
const UnknownSource = "unknown"

// NewWorld returns a World.
func NewWorld(tb testing.TB) *World {
	w := &World{Lookup: &Lookup{}}
	past := Now.Add(-time.Minute)
	w.Plain = w.Lookup.Add(tb, "k-plain", nil, nil)
	w.ReadOnly = w.Lookup.Add(tb, "k-read", []string{"projects:read"}, nil)
	w.WriteOnly = w.Lookup.Add(tb, "k-write", []string{"projects:write"}, nil)
	w.Revoked = w.Lookup.Add(tb, "k-revoked", nil, func(k *keystore.Key) { k.RevokedAt = &past })
	w.Expired = w.Lookup.Add(tb, "k-expired", nil, func(k *keystore.Key) { k.ExpiresAt = &past })
	w.Star = w.Lookup.Add(tb, "k-star", []string{"*"}, nil)
	w.Disabled = w.Lookup.Add(tb, "k-disabled", nil, func(k *keystore.Key) { k.DisabledAt = &past })
	cidrs, err := keystore.NormalizeCIDRs(SourceCIDRs)
	if err != nil {
		tb.Fatal(err)
	}
	w.Restricted = w.Lookup.Add(tb, "k-restricted", nil, func(k *keystore.Key) { k.AllowedCIDRs = cidrs })
	h, _ := keystore.NewHasher(nil)
	legacyKey := &keystore.Key{ID: "k-legacy", AccountID: "acct-k-legacy", Name: "k-legacy", CreatedAt: Now.Add(-time.Hour),
		Digest: h.Digest(keystore.Secret(LegacySecret))}
	w.Lookup.Put(legacyKey)
	w.Legacy = Key{Secret: LegacySecret, Record: legacyKey}
	w.Gold = w.Lookup.Add(tb, "k-gold", []string{"projects:*"}, func(k *keystore.Key) {
		k.Metadata = map[string]string{"tier": "gold", "cost_center": "eng-42"}
	})
	return w
}

// Case is one row of the decision table under the example policy: a
// request and the outcome it must get, by its JSON error.code ("ok" for an
// allow).
type Case struct {
	Name         string
	Method, Path string
	Headers      map[string]string // header name → value, as the client sent them
	Module       string            // the route's module, "" if none
	Want         string
	// Source is the client's address as the transport must convey it: ""
	// for the transport's usual one (its fixtures' client address),
	// UnknownSource for none it knows.
	Source string
	// Failures is how many failed attempts the source makes before the
	// request (FailureCase, that many times), against a server whose
	// FailureLimit is FailureBudget in FailureWindow.
	Failures int
}

// FailureBudget in FailureWindow is the failure limit the transports'
// table servers get: more than the table's failed attempts from the usual
// source, so that only the cases with Failures find their source over it.
const (
	FailureBudget = 100
	FailureWindow = time.Hour
)

// FailureCase is a failed attempt from c's source (a malformed key).
func (c *Case) FailureCase() Case {
	return Case{Name: c.Name + " (failure)", Method: "GET", Path: "/api/v1/projects", Headers: map[string]string{"x-api-key": "kg_not-a-key"},
		Source: c.Source, Want: "invalid_api_key"}
}

// FlipChar returns a character other than c, to break a checksum.
func FlipChar(c byte) string {
	if c == 'A' {
		return "B"
	}
	return "A"
}

// withHeader returns headers with name: value added.
func withHeader(headers map[string]string, name, value string) map[string]string {
	headers[name] = value
	return headers
}

// DecisionTable is the decision table as requests, for every transport to
// replay.
func (w *World) DecisionTable(tb testing.TB) []Case {
	tb.Helper()
	unknown, err := keystore.GenerateSecret("kg")
	if err != nil {
		tb.Fatal(err)
	}
	plain, star, readOnly, writeOnly := w.Plain.Secret, w.Star.Secret, w.ReadOnly.Secret, w.WriteOnly.Secret
	tampered := plain[:10] + FlipChar(plain[10]) + plain[11:]
	key := func(k string) map[string]string { return map[string]string{"x-api-key": k} }
	const projects = "/api/v1/projects"
	type row struct {
		name, method, path string
		headers            map[string]string
		module, want       string
	}
	rows := []row{
		{"no key", "GET", projects, nil, "", "missing_api_key"},
		{"empty x-api-key", "GET", projects, key("  "), "", "missing_api_key"},
		{"basic authorization is not a key", "GET", projects, map[string]string{"authorization": "Basic dXNlcjpwYXNz"}, "", "missing_api_key"},
		{"malformed key", "GET", projects, key("hunter2"), "", "invalid_api_key"},
		{"bad checksum", "GET", projects, key(tampered), "", "invalid_api_key"},
		{"empty bearer", "GET", projects, map[string]string{"authorization": "Bearer"}, "", "invalid_api_key"},
		{"unknown key", "GET", projects, key(unknown.Reveal()), "", "invalid_api_key"},
		{"revoked key", "GET", projects, key(w.Revoked.Secret), "", "invalid_api_key"},
		{"expired key", "GET", projects, key(w.Expired.Secret), "", "invalid_api_key"},
		{"legacy key, legacy keys not accepted", "GET", projects, key(w.Legacy.Secret), "", "invalid_api_key"},
		{"disabled key", "GET", projects, key(w.Disabled.Secret), "", "invalid_api_key"},
		{"two different keys", "GET", projects, map[string]string{"x-api-key": plain, "authorization": "Bearer " + star}, "", "invalid_api_key"},
		{"comma-merged x-api-key", "GET", projects, key(plain + "," + plain), "", "invalid_api_key"},
		{"comma-merged bearer", "GET", projects, map[string]string{"authorization": "Bearer " + plain + ", Bearer " + star}, "", "invalid_api_key"},
		{"invalid path", "GET", "/api/v1/projects/%2e%2e/users", key(plain), "", "invalid_path"},
		{"absolute-form path", "GET", "http://evil/api/v1/users", key(plain), "", "invalid_path"},
		{"restricted module by path", "GET", "/api/v1/users/42", key(star), "", "module_forbidden"},
		// RFC 3986 section 3.3 names "," with ";" as a parameter delimiter.
		{"comma params into a closed module", "GET", "/api/v1/accounts,a=b/123", key(star), "", "module_forbidden"},
		{"escaped comma params into a closed module", "GET", "/api/v1/users%2Cx", key(star), "", "module_forbidden"},
		{"comma params on a dot-dot into a closed module", "GET", "/api/v1/projects/..,x/users", key(star), "", "module_forbidden"},
		// A forward-auth proxy's X-Forwarded-Uri is the request's own target,
		// read once: not also an override whose comma-separated parts are
		// targets of their own.
		{"a comma in an open module's path", "GET", "/api/v1/projects,/api/v1/users", key(star), "", "ok"},
		{"restricted module by route", "GET", "/v2/whoever", key(star), "accounts", "module_forbidden"},
		{"route names projects, path reads as users", "GET", "/api/v1/projects/..;/users", key(star), "projects", "module_forbidden"},
		{"route names an unknown module", "GET", projects, key(star), "nosuch", "module_forbidden"},
		{"authentication module", "POST", "/api/v1/api-keys", key(star), "", "module_forbidden"},
		{"read scope, write method", "POST", projects, key(readOnly), "", "insufficient_scope"},
		{"read scope, other module", "GET", "/api/v1/deployments", key(readOnly), "", "insufficient_scope"},
		// A backend that honours a method override reads a GET as the
		// method it names: a read scope must not be enough.
		{"read scope, X-HTTP-Method-Override to a write", "GET", "/api/v1/projects/7", withHeader(key(readOnly), "x-http-method-override", "DELETE"), "", "insufficient_scope"},
		{"read scope, X-HTTP-Method to a write", "GET", "/api/v1/projects/7", withHeader(key(readOnly), "x-http-method", "put"), "", "insufficient_scope"},
		{"read scope, X-Method-Override to a write", "GET", "/api/v1/projects/7", withHeader(key(readOnly), "x-method-override", " Patch "), "", "insufficient_scope"},
		{"read scope, an empty method override", "GET", "/api/v1/projects/7", withHeader(key(readOnly), "x-http-method-override", ""), "", "insufficient_scope"},
		{"read scope, _method in the query", "GET", "/api/v1/projects/7?_method=DELETE", key(readOnly), "", "insufficient_scope"},
		{"read scope, escaped _method in the query", "GET", "/api/v1/projects/7?a=1&%5F%4Dethod=delete", key(readOnly), "", "insufficient_scope"},
		{"read scope, _method in mixed case", "GET", "/api/v1/projects/7?_MeThOd=delete", key(readOnly), "", "insufficient_scope"},
		{"read scope, _method twice in the query", "GET", "/api/v1/projects/7?_method=GET&_method=POST", key(readOnly), "", "insufficient_scope"},
		// ';' separates query parameters for Rack 2, older Python parse_qs
		// and PHP's arg_separator.input.
		{"read scope, _method after a semicolon", "GET", "/api/v1/projects/7?a=1;_method=DELETE", key(readOnly), "", "insufficient_scope"},
		{"read scope, _method first after a semicolon", "GET", "/api/v1/projects/7?;_METHOD=put", key(readOnly), "", "insufficient_scope"},
		// The other direction: a backend that honours the override reads
		// a write as the read it names, one that does not as the write: a
		// key needs both scopes.
		{"write scope, X-HTTP-Method-Override to a read", "POST", "/api/v1/projects/7", withHeader(key(writeOnly), "x-http-method-override", "GET"), "", "insufficient_scope"},
		{"write scope, X-Method-Override to a read in lower case", "PUT", "/api/v1/projects/7", withHeader(key(writeOnly), "x-method-override", "head"), "", "insufficient_scope"},
		{"write scope, _method to a read", "POST", "/api/v1/projects/7?_method=GET", key(writeOnly), "", "insufficient_scope"},
		{"write scope, _method to a read after a semicolon", "POST", "/api/v1/projects/7?x=1;_method=GET", key(writeOnly), "", "insufficient_scope"},
		{"write scope, escaped _method value to a read", "POST", "/api/v1/projects/7?_method=G%45T", key(writeOnly), "", "insufficient_scope"},
		{"write scope, a read naming a write", "GET", "/api/v1/projects/7", withHeader(key(writeOnly), "x-http-method-override", "DELETE"), "", "insufficient_scope"},
		{"write scope, write method", "POST", projects, key(writeOnly), "", "ok"},
		{"write scope, a write naming a write", "POST", "/api/v1/projects/7", withHeader(key(writeOnly), "x-http-method-override", "PATCH"), "", "ok"},
		{"write scope, read method", "GET", projects, key(writeOnly), "", "insufficient_scope"},
		// Headers that some backends route by instead of the target
		// (X-Original-URL, X-Rewrite-URL): every target they name is
		// decided too.
		{"read scope, X-Original-URL into a closed module", "GET", projects, withHeader(key(readOnly), "x-original-url", "/api/v1/users"), "", "module_forbidden"},
		{"star key, X-Rewrite-URL into a closed module", "GET", projects, withHeader(key(star), "X-Rewrite-URL", "/api/v1/accounts/1?x=1"), "", "module_forbidden"},
		{"star key, X-Original-URL in another case into a closed module", "POST", projects, withHeader(key(star), "X-ORIGINAL-URL", "/API/v1/auth/login"), "", "module_forbidden"},
		{"star key, X-Original-URL reading into a closed module", "GET", projects, withHeader(key(star), "x-original-url", "/api/v1/projects/../users"), "", "module_forbidden"},
		{"star key, X-Original-URL absolute URL into a closed module", "GET", projects, withHeader(key(star), "x-original-url", "https://api.example/api/v1/users/1"), "", "module_forbidden"},
		{"star key, X-Original-URL with comma params into a closed module", "GET", projects, withHeader(key(star), "x-original-url", "/api/v1/accounts,x/1"), "", "module_forbidden"},
		{"read scope, X-Original-URL into another module", "GET", projects, withHeader(key(readOnly), "x-original-url", "/api/v1/deployments"), "", "insufficient_scope"},
		{"read scope, X-Rewrite-URL into no module", "GET", projects, withHeader(key(readOnly), "x-rewrite-url", "/status"), "", "insufficient_scope"},
		{"read scope, X-Original-URL naming a write", "GET", projects, withHeader(key(readOnly), "x-original-url", "/api/v1/projects/7?_method=DELETE"), "", "insufficient_scope"},
		{"star key, X-Original-URL that cannot be read one way", "GET", projects, withHeader(key(star), "x-original-url", "/api/v1/projects/%2e%2e/users"), "", "invalid_path"},
		{"star key, X-Rewrite-URL not a path", "GET", projects, withHeader(key(star), "x-rewrite-url", "users"), "", "invalid_path"},
		{"read scope, a reading in another module", "GET", "/api/v1/projects/../deployments", key(readOnly), "", "insufficient_scope"},
		{"read scope, route module, a reading in another module", "GET", "/api/v1/projects/../deployments", key(readOnly), "projects", "insufficient_scope"},
		{"scoped key, route in no module", "GET", "/status", key(readOnly), "", "insufficient_scope"},
		{"valid x-api-key", "GET", projects, key(plain), "", "ok"},
		{"valid bearer", "DELETE", "/api/v1/projects/7", map[string]string{"authorization": "Bearer " + plain}, "", "ok"},
		{"bearer scheme in other case", "GET", projects, map[string]string{"authorization": "bEaReR   " + plain + " "}, "", "ok"},
		{"same key in both headers", "GET", projects, map[string]string{"x-api-key": plain, "authorization": "Bearer " + plain}, "", "ok"},
		{"read scope, read method", "HEAD", "/api/v1/projects/1", key(readOnly), "", "ok"},
		{"read scope, method override to a read", "GET", "/api/v1/projects/1", withHeader(key(readOnly), "x-http-method-override", "get"), "", "ok"},
		{"read scope, _method to a read after a semicolon", "GET", "/api/v1/projects/1?a=1;_method=get", key(readOnly), "", "ok"},
		{"read scope, X-Original-URL in the module", "GET", projects, withHeader(key(readOnly), "x-original-url", "/api/v1/projects/7?page=2"), "", "ok"},
		{"read scope, X-Rewrite-URL the same target", "GET", "/api/v1/projects/7", withHeader(key(readOnly), "x-rewrite-url", "/api/v1/projects/7"), "", "ok"},
		{"unscoped key, X-Original-URL in an open module", "DELETE", "/status", withHeader(key(plain), "x-original-url", "/api/v1/projects/7"), "", "ok"},
		{"read scope, a list of ids in the module", "GET", "/api/v1/projects/1,2,3", key(readOnly), "", "ok"},
		{"read scope, _method to a read", "GET", "/api/v1/projects/1?_method=HEAD", key(readOnly), "", "ok"},
		{"read scope, a parameter ending in _method", "GET", "/api/v1/projects/1?my_method=DELETE&_methods=PUT", key(readOnly), "", "ok"},
		{"read scope, _method after a fragment-like text in the path", "GET", "/api/v1/projects/1?q=%23_method=DELETE", key(readOnly), "", "ok"},
		{"read scope, format suffix on the module", "GET", "/api/v1/projects.json", key(readOnly), "", "ok"},
		{"read scope, custom method on the module", "GET", "/api/v1/projects:search", key(readOnly), "", "ok"},
		{"read scope, no-dot reading stays in the module", "GET", "/api/v1/projects/x/../1", key(readOnly), "", "ok"},
		{"read scope via route module", "GET", "/anything", key(readOnly), "projects", "ok"},
		{"unscoped key, route in no module", "GET", "/status", key(plain), "", "ok"},
		{"look-alike of a restricted module", "GET", "/api/v1/projects/users", key(plain), "", "ok"},
		{"query mentions a restricted module", "GET", "/api/v1/projects?next=/api/v1/users", key(plain), "", "ok"},
	}
	cases := make([]Case, 0, len(rows)+8)
	for _, r := range rows {
		cases = append(cases, Case{Name: r.name, Method: r.method, Path: r.path, Headers: r.headers, Module: r.module, Want: r.want})
	}
	restricted := key(w.Restricted.Secret)
	for _, c := range []struct{ name, source, want string }{
		{"restricted key, allowed IPv4 source", "198.51.100.7", "ok"},
		{"restricted key, allowed IPv6 source", "2001:db8::7", "ok"},
		{"restricted key, allowed IPv4-mapped source", "::ffff:198.51.100.7", "ok"},
		{"restricted key, other IPv4 source", "203.0.113.9", "source_not_allowed"},
		{"restricted key, other IPv6 source", "2001:db9::1", "source_not_allowed"},
		{"restricted key, the transport's usual source", "", "source_not_allowed"},
		{"restricted key, unknown source", UnknownSource, "source_not_allowed"},
	} {
		cases = append(cases, Case{Name: c.name, Method: "GET", Path: projects, Headers: restricted, Source: c.source, Want: c.want})
	}
	// Another key's from anywhere, and the restricted key's source is
	// checked before what the path allows.
	// A source over its failure budget gets 429 for anything but a cached
	// valid key, which works (the fake holds every key as cached).
	const hostile = "192.0.2.66"
	n := FailureBudget
	cases = append(cases,
		Case{Name: "over the failure budget, unknown key", Method: "GET", Path: projects, Headers: key(unknown.Reveal()), Source: hostile, Failures: n, Want: "too_many_failures"},
		Case{Name: "over the failure budget, malformed key", Method: "GET", Path: projects, Headers: key("hunter2"), Source: hostile, Failures: n, Want: "too_many_failures"},
		Case{Name: "over the failure budget, revoked key", Method: "GET", Path: projects, Headers: key(w.Revoked.Secret), Source: hostile, Failures: n, Want: "too_many_failures"},
		Case{Name: "over the failure budget, cached valid key", Method: "GET", Path: projects, Headers: key(plain), Source: hostile, Failures: n, Want: "ok"},
		Case{Name: "over the failure budget, no key", Method: "GET", Path: projects, Source: hostile, Failures: n, Want: "missing_api_key"},
	)
	cases = append(cases,
		Case{Name: "unrestricted key, unknown source", Method: "GET", Path: projects, Headers: key(plain), Source: UnknownSource, Want: "ok"},
		Case{Name: "restricted key, other source, closed module", Method: "GET", Path: "/api/v1/users", Headers: restricted, Source: "203.0.113.9", Want: "source_not_allowed"},
	)
	return cases
}

// SourceAddr is the address c.Source names; invalid for "" and
// UnknownSource.
func (c *Case) SourceAddr() netip.Addr {
	a, _ := netip.ParseAddr(c.Source)
	return a
}
