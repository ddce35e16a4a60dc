package extauthz

import (
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/internal/authztest"
	"github.com/keygate/keygate/internal/envoytest"
	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/policy"
)

// newTestServer returns the adapter over a core deciding with lookup under
// the example policy, at authztest.Now; mutate changes the core's config.
func newTestServer(tb testing.TB, lookup authz.KeyLookup, mutate func(*authz.Config)) *Server {
	tb.Helper()
	h, _ := keystore.NewHasher(nil)
	cfg := authz.Config{Lookup: lookup, Policy: policy.Example(), Hasher: h, Now: func() time.Time { return authztest.Now }}
	if mutate != nil {
		mutate(&cfg)
	}
	core, err := authz.NewServer(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	return New(core, Options{})
}

// envoyRequest and rawRequest build CheckRequests as Envoy does.
var (
	envoyRequest = envoytest.CheckRequest
	rawRequest   = envoytest.RawCheckRequest
)

// viewFor is the view Server.respond reads of req.
func viewFor(req *authv3.CheckRequest) *requestView {
	v := new(requestView)
	viewOf(req, v)
	return v
}
