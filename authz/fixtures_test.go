package authz

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/envoytest"
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

// envoyRequest and rawRequest build CheckRequests as Envoy does.
var (
	envoyRequest = envoytest.CheckRequest
	rawRequest   = envoytest.RawCheckRequest
)
