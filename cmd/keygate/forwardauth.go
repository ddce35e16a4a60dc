package main

import (
	"fmt"
	"log/slog"
	"net/http"
	"strings"

	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/authz/forwardauth"
)

// forwardAuthFlags configure the HTTP forward-auth endpoint on
// --http-addr (nginx, Caddy, Traefik, Envoy http_service); serve and dev
// share them.
type forwardAuthFlags struct {
	EnvoyHTTPPrefix string   `group:"listeners" name:"envoy-http-prefix" default:"${envoy_http_prefix}" placeholder:"PATH" help:"Path prefix of Envoy's ext_authz http_service requests on --http-addr (its path_prefix); requests under it are decided with their own method and the path after it."`
	TrustedProxies  []string `group:"listeners" name:"trusted-proxies" placeholder:"CIDR" help:"Comma-separated CIDR prefixes (or addresses) of the proxies whose X-Forwarded-For and X-Real-IP are believed on --http-addr; from any other peer the client is the peer itself. Default: none."`
}

// httpPaths are the other endpoints of --http-addr: the Envoy prefix must
// not shadow them.
var httpPaths = []string{"/healthz", "/readyz", "/metrics"}

// options validates the flags, before any I/O, into the handler's options.
func (f forwardAuthFlags) options() (forwardauth.Options, error) {
	if err := forwardauth.ValidateEnvoyPrefix(f.EnvoyHTTPPrefix); err != nil {
		return forwardauth.Options{}, usageError("--envoy-http-prefix: %s", strings.TrimPrefix(err.Error(), "forwardauth: "))
	}
	for _, p := range httpPaths {
		if p == f.EnvoyHTTPPrefix || strings.HasPrefix(p, f.EnvoyHTTPPrefix+"/") {
			return forwardauth.Options{}, usageError("--envoy-http-prefix: %q would shadow %s", f.EnvoyHTTPPrefix, p)
		}
	}
	trusted, err := forwardauth.ParseTrustedProxies(f.TrustedProxies)
	if err != nil {
		return forwardauth.Options{}, usageError("--trusted-proxies: %v", err)
	}
	return forwardauth.Options{EnvoyPrefix: f.EnvoyHTTPPrefix, TrustedProxies: trusted}, nil
}

// withForwardAuth puts the forward-auth endpoint in front of the HTTP
// listener's other endpoints (next): it routes on the raw request target,
// which a ServeMux would clean (and redirect) first. The forward-auth
// requests are measured and traced by instruments, the others are not.
func withForwardAuth(core *authz.Server, opts forwardauth.Options, next http.Handler, logger *slog.Logger, requireClientCert bool,
	instruments *httpInstruments) (http.Handler, error) {
	opts.Logger, opts.RequireClientCert, opts.Observe = logger, requireClientCert, instruments.observer("forward_auth")
	h, err := forwardauth.New(core, opts)
	if err != nil {
		return nil, usageError("%v", err)
	}
	auth := instruments.traced("forward_auth", h)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if h.Handles(r) {
			auth.ServeHTTP(w, r)
		} else {
			next.ServeHTTP(w, r)
		}
	}), nil
}

// newHTTPServer is the server of --http-addr: forward-auth, health and
// metrics, with forwardauth's timeouts (idle keep-alive connections are
// closed), logging net/http's own errors as warnings.
func newHTTPServer(handler http.Handler, logger *slog.Logger) *http.Server {
	return forwardauth.NewServer(handler, slog.NewLogLogger(logger.Handler(), slog.LevelWarn))
}

// forwardAuthGuide is the part of keygate dev's guide about --http-addr:
// curl commands that ask /auth what nginx, Caddy or Traefik would.
func forwardAuthGuide(secret, httpAddr string) string {
	curl := func(method, uri string) string {
		return fmt.Sprintf("curl -si http://%s%s -H 'X-Forwarded-Method: %s' -H 'X-Forwarded-Uri: %s' -H 'X-API-Key: %s'",
			httpAddr, forwardauth.AuthPath, method, uri, secret)
	}
	return fmt.Sprintf(`  The same over HTTP forward-auth, as nginx, Caddy and Traefik ask it (deploy/ has their
  configurations). Allowed: 200 with x-keygate-* headers:

    %s

  Denied: 403 and a JSON body {"error":{"code":"module_forbidden",…}}:

    %s
`, curl("GET", "/api/v1/projects"), curl("GET", "/api/v1/users/42"))
}
