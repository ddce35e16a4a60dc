package authz

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/policy"
)

// The store and the cache are what the decision path depends on.
var _ KeyLookup = (*keystore.Store)(nil)

// fakeLookup is an in-memory KeyLookup: the one seam where authz tests use
// a fake. err, when set, is returned for every lookup.
type fakeLookup struct {
	mu    sync.Mutex
	keys  map[keystore.Digest]*keystore.Key
	err   error
	block bool // wait for the context to end, like a hung database
	panic bool
	calls atomic.Int64
}

func (f *fakeLookup) Lookup(ctx context.Context, d keystore.Digest) (*keystore.Key, error) {
	f.calls.Add(1)
	if f.panic {
		panic("lookup exploded")
	}
	if f.block {
		<-ctx.Done()
		return nil, errors.Join(keystore.ErrUnavailable, ctx.Err())
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return nil, f.err
	}
	k, ok := f.keys[d]
	if !ok {
		return nil, keystore.ErrNotFound
	}
	return k, nil
}

// testKey is a key the fake store knows, with its secret.
type testKey struct {
	secret string
	key    *keystore.Key
}

var testNow = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)

// newTestKey adds a key with the given scopes to f; mutate sets revocation
// or expiry.
func (f *fakeLookup) add(t testing.TB, id string, scopes []string, mutate func(*keystore.Key)) testKey {
	t.Helper()
	secret, err := keystore.GenerateSecret("kg")
	if err != nil {
		t.Fatal(err)
	}
	h, _ := keystore.NewHasher(nil)
	k := &keystore.Key{ID: id, AccountID: "acct-" + id, Name: id, Scopes: scopes, CreatedAt: testNow.Add(-time.Hour),
		Digest: h.Digest(secret), DisplayPrefix: secret.DisplayPrefix()}
	if mutate != nil {
		mutate(k)
	}
	f.mu.Lock()
	if f.keys == nil {
		f.keys = map[keystore.Digest]*keystore.Key{}
	}
	f.keys[k.Digest] = k
	f.mu.Unlock()
	return testKey{secret: secret.Reveal(), key: k}
}

func newTestServer(t testing.TB, lookup KeyLookup, mutate func(*Config)) *Server {
	t.Helper()
	h, _ := keystore.NewHasher(nil)
	cfg := Config{Lookup: lookup, Policy: policy.Example(), Hasher: h, Now: func() time.Time { return testNow }}
	if mutate != nil {
		mutate(&cfg)
	}
	s, err := NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// envoyRequest builds a CheckRequest the way Envoy's ext_authz filter does
// in gRPC mode: lower-case header keys including the pseudo-headers, the
// path with its query as received, addresses, and the route's context
// extensions. extra headers are added to a realistic browser/SDK set.
func envoyRequest(method, path string, extra map[string]string, contextExtensions map[string]string) *authv3.CheckRequest {
	headers := map[string]string{
		":authority":                     "api.example.com",
		":method":                        method,
		":path":                          path,
		":scheme":                        "https",
		"accept":                         "application/json",
		"accept-encoding":                "gzip, br",
		"user-agent":                     "example-sdk/2.3.1 go1.26",
		"x-forwarded-proto":              "https",
		"x-forwarded-for":                "203.0.113.7",
		"x-request-id":                   "5f0b0a58-6a55-4a8e-9a53-0c8e0f8f3e1d",
		"x-envoy-expected-rq-timeout-ms": "15000",
		"content-type":                   "application/json",
	}
	for k, v := range extra {
		headers[k] = v
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source: &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
			SocketAddress: &corev3.SocketAddress{Address: "10.0.3.17", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 51234}}}}},
		Destination: &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
			SocketAddress: &corev3.SocketAddress{Address: "10.0.1.5", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 8080}}}}},
		Request: &authv3.AttributeContext_Request{
			Time: timestamppb.New(testNow),
			Http: &authv3.AttributeContext_HttpRequest{
				Id:       "14877394212342345",
				Method:   method,
				Headers:  headers,
				Path:     path,
				Host:     "api.example.com",
				Scheme:   "https",
				Protocol: "HTTP/1.1",
			},
		},
		ContextExtensions: contextExtensions,
	}}
}

// rawRequest is envoyRequest with encode_raw_headers on: header_map with
// repeated headers kept apart and values in raw_value, headers empty.
func rawRequest(method, path string, headers [][2]string) *authv3.CheckRequest {
	req := envoyRequest(method, path, nil, nil)
	hm := &corev3.HeaderMap{}
	for _, h := range append([][2]string{{":method", method}, {":path", path}, {":authority", "api.example.com"}}, headers...) {
		hm.Headers = append(hm.Headers, &corev3.HeaderValue{Key: h[0], RawValue: []byte(h[1])})
	}
	http := req.Attributes.Request.Http
	http.Headers = nil
	http.HeaderMap = hm
	return req
}
