package forwardauth

import (
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"runtime/debug"
	"strings"
	"time"

	"github.com/keygate/keygate/authz"
)

// DefaultEnvoyPrefix is where Envoy's http_service requests arrive: its
// path_prefix.
const DefaultEnvoyPrefix = "/ext_authz"

// The paths the handler answers besides the Envoy prefix.
const (
	AuthPath   = "/auth"
	DenialPath = "/auth/denial"
)

// Request and response headers of the nginx workaround (see the package
// documentation).
const (
	// ModeHeader on an /auth request, with the value ModeNginx, asks for
	// every denial as a bodiless 401 naming its outcome in OutcomeHeader.
	ModeHeader = "Keygate-Auth-Request"
	ModeNginx  = "nginx"
	// OutcomeHeader names an outcome (its JSON error.code): on a denial in
	// nginx mode, and on a request to DenialPath.
	OutcomeHeader = "Keygate-Outcome"
)

// envoyRemoveHeader lists, on an allow in Envoy's http_service mode, the
// headers Envoy removes from the upstream request.
const envoyRemoveHeader = "X-Envoy-Auth-Headers-To-Remove"

// Options configure a Handler; the zero value selects the defaults.
type Options struct {
	// EnvoyPrefix is Envoy's http_service path_prefix: it starts with '/',
	// does not end with one, and is neither /auth nor under it. Default:
	// DefaultEnvoyPrefix.
	EnvoyPrefix string
	// TrustedProxies are the peers whose X-Forwarded-For and X-Real-IP
	// are believed. Default: none.
	TrustedProxies []netip.Prefix
	// Next serves every other request. Default: 404.
	Next http.Handler
	// Logger learns of recovered panics. Default: discard.
	Logger *slog.Logger
	// Observe, when set, learns of every forward-auth response: the
	// request's method, the status and how long it took (for metrics).
	Observe func(method string, status int, took time.Duration)
	// RequireClientCert refuses (403, no decision) forward-auth requests
	// that did not come with a verified TLS client certificate: with mutual
	// TLS only the proxies may ask, while health checks and metrics on the
	// same listener stay open.
	RequireClientCert bool
}

// Handler answers forward-auth requests with the decisions of an
// authz.Server. It is safe for concurrent use.
type Handler struct {
	core        *authz.Server
	envoyPrefix string
	trusted     []netip.Prefix
	next        http.Handler
	logger      *slog.Logger
	grants      *authz.Grants[*grant]
	denials     [authz.NumOutcomes]*response    // the core's denials
	forwardedBy [numForwardedProblems]*response // the core's denial for each forwarded-header problem, saying which
	nginx       [authz.NumOutcomes]*response    // the same as nginx's auth_request needs them
	outcomes    map[string]authz.Outcome        // denials by name, for DenialPath
	requireCert bool
	observe     func(method string, status int, took time.Duration)
}

// New returns a Handler deciding with core.
func New(core *authz.Server, opts Options) (*Handler, error) {
	if core == nil {
		return nil, fmt.Errorf("forwardauth: a core is required")
	}
	h := &Handler{core: core, envoyPrefix: opts.EnvoyPrefix, trusted: opts.TrustedProxies, next: opts.Next,
		logger: opts.Logger, grants: authz.NewGrants[*grant](), outcomes: map[string]authz.Outcome{},
		requireCert: opts.RequireClientCert, observe: opts.Observe}
	if h.envoyPrefix == "" {
		h.envoyPrefix = DefaultEnvoyPrefix
	}
	if err := ValidateEnvoyPrefix(h.envoyPrefix); err != nil {
		return nil, err
	}
	if h.next == nil {
		h.next = http.NotFoundHandler()
	}
	if h.logger == nil {
		h.logger = slog.New(slog.DiscardHandler)
	}
	for o := range authz.NumOutcomes {
		o := authz.Outcome(o)
		if o == authz.Allow {
			continue
		}
		h.denials[o] = denial(core.Denial(o))
		h.nginx[o] = nginxDenial(o)
		h.outcomes[o.String()] = o
	}
	forwardedDenial := core.Denial(authz.ReasonForwardedHeaders.Outcome())
	for p := range numForwardedProblems {
		if msg := p.message(); msg != "" {
			h.forwardedBy[p] = denial(forwardedDenial.Saying(msg))
		}
	}
	return h, nil
}

// ValidateEnvoyPrefix reports whether p can be the Envoy prefix: a path
// that starts with '/', does not end with one, holds only unreserved path
// characters, and is neither /auth nor under it.
func ValidateEnvoyPrefix(p string) error {
	if len(p) < 2 || p[0] != '/' || p[len(p)-1] == '/' {
		return fmt.Errorf("forwardauth: Envoy prefix %q must start with '/' and not end with one, like %s", p, DefaultEnvoyPrefix)
	}
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', strings.IndexByte("/-._~", c) >= 0:
		default:
			return fmt.Errorf("forwardauth: Envoy prefix %q: %q is not allowed (letters, digits, '/', '-', '.', '_', '~')", p, c)
		}
	}
	if strings.Contains(p, "//") || strings.Contains(p+"/", "/./") || strings.Contains(p+"/", "/../") {
		return fmt.Errorf("forwardauth: Envoy prefix %q is not a canonical path", p)
	}
	if p == AuthPath || strings.HasPrefix(p, AuthPath+"/") {
		return fmt.Errorf("forwardauth: Envoy prefix %q would shadow %s", p, AuthPath)
	}
	return nil
}

// Handles reports whether r is a forward-auth request (under the Envoy
// prefix, /auth or /auth/denial), which ServeHTTP answers itself rather
// than passing to Next.
func (h *Handler) Handles(r *http.Request) bool {
	if rest, ok := strings.CutPrefix(r.RequestURI, h.envoyPrefix); ok && rest != "" && rest[0] == '/' {
		return true
	}
	path, _, _ := strings.Cut(r.RequestURI, "?")
	return path == AuthPath || path == DenialPath
}

// ServeHTTP routes on the raw request target: under the Envoy prefix,
// /auth, /auth/denial, or Next.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	target := r.RequestURI
	if rest, ok := strings.CutPrefix(target, h.envoyPrefix); ok && rest != "" && rest[0] == '/' {
		h.answer(w, r, func() int { return h.serve(w, r, rest) })
		return
	}
	path, _, _ := strings.Cut(target, "?")
	switch path {
	case AuthPath:
		h.answer(w, r, func() int { return h.serve(w, r, "") })
	case DenialPath:
		h.answer(w, r, func() int { return h.serveDenial(w, r) })
	default:
		h.next.ServeHTTP(w, r)
	}
}

// answer answers a forward-auth request with respond (which returns the
// status it wrote), after the client-certificate check, and reports it to
// Options.Observe.
func (h *Handler) answer(w http.ResponseWriter, r *http.Request, respond func() int) {
	var start time.Time
	if h.observe != nil {
		start = time.Now()
	}
	status := http.StatusForbidden
	if h.certified(w, r) {
		status = respond()
	}
	if h.observe != nil {
		h.observe(r.Method, status, time.Since(start))
	}
}

// certified reports whether r may ask: always, unless RequireClientCert,
// when it must have come with a verified client certificate. Otherwise it
// answers 403 itself.
func (h *Handler) certified(w http.ResponseWriter, r *http.Request) bool {
	if !h.requireCert || (r.TLS != nil && len(r.TLS.VerifiedChains) > 0) {
		return true
	}
	http.Error(w, "a verified TLS client certificate is required", http.StatusForbidden)
	return false
}

// serve decides one request: the one named by the forwarded headers when
// envoyPath is "", otherwise r itself with envoyPath as its target.
func (h *Handler) serve(w http.ResponseWriter, r *http.Request, envoyPath string) (status int) {
	envoy := envoyPath != ""
	defer func() {
		// The decision recovers its own panics; this is for the
		// translation around it.
		if p := recover(); p != nil {
			h.logger.Error("recovered from a panic in forward-auth; denying", "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			status = h.deny(w, r, envoy, authz.Unavailable)
		}
	}()
	ctx := r.Context()
	var req authz.Request
	if envoy {
		req.Method, req.Path = r.Method, envoyPath
	} else {
		method, uri, problem := forwarded(r.Header)
		if problem != forwardedOK {
			o := h.core.Refuse(ctx, &authz.Request{Method: r.Method, Source: h.source(r)}, authz.ReasonForwardedHeaders).Outcome
			if asksNginx(r) {
				return h.nginx[o].write(w)
			}
			return h.forwardedBy[problem].write(w)
		}
		req.Method, req.Path = method, uri
	}
	req.Source = h.source(r)
	for name, values := range r.Header {
		if !envoy && (name == forwardedHeaders[1][0] || name == forwardedHeaders[1][1]) {
			continue // the request's own target, read above: not an override
		}
		for _, v := range values {
			h.core.ReadHeader(&req, name, v)
		}
	}
	d := h.core.Decide(ctx, &req)
	var limits []authz.Field // a limited key's RateLimit fields (and a denial's Retry-After)
	if d.Limits != nil {
		limits = h.core.LimitHeaders(&d)
	}
	if d.Denied() {
		setFields(w, limits)
		return h.deny(w, r, envoy, d.Outcome)
	}
	g := h.grants.Get(&d, h.build)
	resp := &g.auth
	if envoy {
		resp = &g.envoy
	}
	return resp.writeWith(w, limits)
}

// deny writes the denial with outcome o, as nginx needs it when the
// request asks for that.
func (h *Handler) deny(w http.ResponseWriter, r *http.Request, envoy bool, o authz.Outcome) int {
	if o == authz.Allow || int(o) >= authz.NumOutcomes {
		o = authz.Unavailable // a bug can only deny
	}
	resp := h.denials[o]
	if !envoy && asksNginx(r) {
		resp = h.nginx[o]
	}
	return resp.write(w)
}

// asksNginx reports whether an /auth request asks for nginx's denials
// (ModeHeader: ModeNginx, once).
func asksNginx(r *http.Request) bool {
	v := r.Header[ModeHeader]
	return len(v) == 1 && v[0] == ModeNginx
}

// serveDenial renders the denial that OutcomeHeader names, without
// deciding anything (nginx's error page asks for it after its
// auth_request got a 401 naming the outcome). A missing or unknown name is
// the 503 denial: something went wrong between nginx and keygate.
func (h *Handler) serveDenial(w http.ResponseWriter, r *http.Request) int {
	o := authz.Unavailable
	if v := r.Header[OutcomeHeader]; len(v) == 1 {
		if known, ok := h.outcomes[v[0]]; ok {
			o = known
		}
	}
	return h.denials[o].write(w)
}

// forwardedProblem is what is wrong with the forwarded method or URI of an
// /auth request: the refusal's message says which (its code is
// invalid_path, like that of a path that cannot be read one way). It is
// one of the faults below for the method, or that plus forwardedURIFaults
// for the URI.
type forwardedProblem uint8

const (
	forwardedOK          forwardedProblem = iota
	missing                               // absent or empty in both spellings
	repeated                              // one spelling sent more than once
	contradictory                         // both spellings, with different values
	forwardedURIFaults                    // added to a fault: the URI's, not the method's
	numForwardedProblems = forwardedURIFaults + contradictory + 1
)

// forwardedHeaders names the headers of the request an /auth request is
// about, method first, then URI: Caddy's and Traefik's spelling, then
// nginx's.
var forwardedHeaders = [2][2]string{{"X-Forwarded-Method", "X-Original-Method"}, {"X-Forwarded-Uri", "X-Original-Uri"}}

// message is the refusal's error.message for p, naming the headers as
// the proxy's configuration spells them.
func (p forwardedProblem) message() string {
	names := forwardedHeaders[0]
	if p > forwardedURIFaults {
		p, names = p-forwardedURIFaults, forwardedHeaders[1]
	}
	a, b := names[0], strings.ReplaceAll(names[1], "Uri", "URI")
	const why = ", so keygate cannot tell which request to decide."
	switch p {
	case missing:
		return "The proxy sent no " + a + " or " + b + " header (or an empty one)" + why
	case repeated:
		return "The proxy sent " + a + " or " + b + " more than once" + why
	case contradictory:
		return "The proxy sent " + a + " and " + b + " with different values" + why
	}
	return ""
}

// forwarded returns the method and URI of the request an /auth request
// names: each from X-Forwarded-* or X-Original-*, present once, not empty,
// and the same in both spellings when both are present; or what is wrong.
func forwarded(header http.Header) (method, uri string, problem forwardedProblem) {
	// Any method but "" is decided; one that is not safe needs write scopes.
	if method, problem = forwardedOne(header, forwardedHeaders[0]); problem != forwardedOK {
		return "", "", problem
	}
	if uri, problem = forwardedOne(header, forwardedHeaders[1]); problem != forwardedOK {
		return "", "", problem + forwardedURIFaults
	}
	return method, uri, forwardedOK
}

// forwardedOne returns the one value of the headers names (canonical, two
// spellings), or what is wrong with them.
func forwardedOne(header http.Header, names [2]string) (string, forwardedProblem) {
	va, vb := header[names[0]], header[names[1]]
	var v string
	switch {
	case len(va) > 1 || len(vb) > 1:
		return "", repeated
	case len(va) == 1 && len(vb) == 1 && va[0] != vb[0]:
		return "", contradictory
	case len(va) == 1:
		v = va[0]
	case len(vb) == 1:
		v = vb[0]
	}
	if v == "" {
		return "", missing
	}
	return v, forwardedOK
}
