// Package forwardauth is keygate's HTTP forward-auth adapter: an
// http.Handler that answers the authorization subrequests of nginx
// (auth_request), Caddy (forward_auth), Traefik (forwardAuth) and Envoy's
// ext_authz filter in http_service mode with the decisions of an
// authz.Server.
//
// It translates and nothing more. What it owns:
//
//   - /auth (any method) decides the request named by X-Forwarded-Method
//     and X-Forwarded-Uri (Caddy, Traefik) or X-Original-Method and
//     X-Original-URI (nginx). Each must be present in one of the two
//     spellings, once; when both spellings are present they must agree.
//     Anything else is refused with authz.ReasonForwardedHeaders (400
//     invalid_path, with a message that says what the proxy sent wrong:
//     "The proxy sent no X-Forwarded-Uri or X-Original-URI header…"):
//     keygate never guesses which request it is deciding.
//   - Requests under the Envoy prefix (Options.EnvoyPrefix, default
//     /ext_authz) are Envoy's http_service mode: decided with the request's
//     own method and the raw request target after the prefix (never the
//     decoded URL path).
//   - /auth/denial renders the denial named by the Keygate-Outcome request
//     header: the second half of the nginx workaround below.
//   - Every other request goes to Options.Next (health, metrics).
//
// Every request header is passed to the core, so the key is read from the
// same headers as in gRPC mode. The client's address (authz.Request.Source)
// is the TCP peer, unless the peer is in Options.TrustedProxies: then it is
// the rightmost X-Forwarded-For address that is not itself a trusted proxy
// (the first hop no trusted proxy vouches for), or X-Real-IP when there is
// no X-Forwarded-For; an unparsable entry before such an address leaves the
// peer.
//
// # Responses
//
// An allow is 200, no body, with the identity headers in the response. On
// /auth all four are always sent, empty when there is nothing (no scopes,
// no module), because some proxies copy a missing header as garbage (Caddy
// 2.6's copy_headers sends its placeholder text); the proxy's configuration
// strips the credential and client-sent identity headers. In Envoy mode an
// empty identity header is left out and listed, with the credential and
// forged identity headers, in x-envoy-auth-headers-to-remove.
//
// A denial is the core's status, headers (content-type, cache-control,
// www-authenticate, retry-after) and JSON body. nginx's auth_request passes
// only 401 and 403 to the client, turns every other status into 500, and
// replaces bodies with its own pages; so a request carrying
// "Keygate-Auth-Request: nginx" (set by deploy/nginx/keygate.conf.template
// on its subrequest) gets every denial as a bodiless 401 whose
// Keygate-Outcome header names the outcome, and the template's error page
// fetches /auth/denial with that name to serve keygate's real status, body
// and headers. That works for every outcome, including ones added later.
//
// # The listener
//
// NewServer is the http.Server of the listener these requests arrive on:
// a bound on reading headers, and keep-alive connections closed once idle
// for IdleTimeout (2 minutes), so that neither a proxy's pool nor a client
// that went away holds a connection forever.
//
// # Speed
//
// Denials and allows without forged identity headers are rendered once and
// shared (authz.Grants): header values are assigned as prebuilt slices, so
// the handler allocates nothing beyond what net/http does.
//
// # Errors
//
// The handler never fails open: a store failure, a timeout or a recovered
// panic is a 503 denial. New returns an error naming a bad option.
package forwardauth
