package admin

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/keygate/keygate/internal/failurelimit"
	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/policy"
)

// MaxBodySize bounds every request body: 64 KiB.
const MaxBodySize = 64 << 10

// A body over MaxBodySize is answered 413 at once, and then the rest of it
// is read and thrown away, for at most drainTimeout and maxDrain bytes, so
// that the client, still sending, gets to read the answer: a server that
// closes a connection with unread data in it resets the connection, and
// the client loses the response.
const (
	drainTimeout = 10 * time.Second
	maxDrain     = 1 << 30
)

// DefaultFailureLimit is the budget of failed admin token attempts per
// source address when Config.FailureLimit is zero: 20 a minute.
var DefaultFailureLimit = failurelimit.Limit{Count: 20, Window: time.Minute}

// Config configures the admin server.
type Config struct {
	Store  *keystore.Store // required: where keys live
	Policy *policy.Policy  // required: the modules scopes may name
	Tokens *Tokens         // required: the valid admin tokens
	Logger *slog.Logger    // default: discard
	// Now is the clock a key's status is judged at. Default: time.Now.
	Now func() time.Time
	// FailureLimit is how many requests with an admin token that is not
	// valid a source address (an IPv6 one per /64) may send in a window;
	// over it, every request of that source without a valid token is 429
	// with Retry-After. A valid token is never refused. Default:
	// DefaultFailureLimit.
	FailureLimit failurelimit.Limit
	Events       EventsConfig // webhooks, the leak intake, expiry warnings (webhooks.go)
}

// Server serves the admin API and the console. It is an http.Handler.
type Server struct {
	store    *keystore.Store
	policy   *policy.Policy
	tokens   *Tokens
	logger   *slog.Logger
	now      func() time.Time
	mux      *http.ServeMux
	limit    failurelimit.Limit
	failures *failurelimit.Counter // failed admin token attempts per source
	events   EventsConfig
}

// securityHeaders go on every response: the console runs no inline script
// or style, loads nothing from elsewhere, and may not be framed.
var securityHeaders = map[string]string{
	"Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; " +
		"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
	"X-Content-Type-Options":       "nosniff",
	"Referrer-Policy":              "no-referrer",
	"X-Frame-Options":              "DENY",
	"Cross-Origin-Opener-Policy":   "same-origin",
	"Cross-Origin-Resource-Policy": "same-origin",
}

// New returns the admin server.
func New(cfg Config) (*Server, error) {
	if cfg.Store == nil || cfg.Policy == nil || cfg.Tokens == nil {
		return nil, errors.New("admin: Store, Policy and Tokens are required")
	}
	s := &Server{store: cfg.Store, policy: cfg.Policy, tokens: cfg.Tokens, logger: cfg.Logger, now: cfg.Now, mux: http.NewServeMux(),
		limit: cfg.FailureLimit, events: cfg.Events}
	if s.logger == nil {
		s.logger = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.limit == (failurelimit.Limit{}) {
		s.limit = DefaultFailureLimit
	}
	if err := s.limit.Check(); err != nil {
		return nil, fmt.Errorf("admin: FailureLimit: %w", err)
	}
	s.failures = failurelimit.NewCounter(s.limit, s.now())
	for _, r := range s.routes() {
		s.mux.Handle(r.pattern, s.endpoint(r))
	}
	return s, nil
}

// route is one endpoint: a ServeMux pattern (method and path) and its
// handler, which returns the status it wrote or a problem to write.
type route struct {
	pattern string
	public  bool // served without an admin token (the console's files, the OpenAPI document)
	handle  func(w http.ResponseWriter, r *http.Request, p Principal) *problem
}

func (s *Server) routes() []route {
	return append([]route{
		{pattern: "POST /v1/keys", handle: s.createKey},
		{pattern: "GET /v1/keys", handle: s.listKeys},
		{pattern: "GET /v1/keys/{id}", handle: s.getKey},
		{pattern: "PATCH /v1/keys/{id}", handle: s.updateKey},
		{pattern: "DELETE /v1/keys/{id}", handle: s.revokeKey},
		{pattern: "POST /v1/keys/{id}/rotate", handle: s.rotateKey},
		{pattern: "POST /v1/keys/{id}/disable", handle: s.disableKey},
		{pattern: "POST /v1/keys/{id}/enable", handle: s.enableKey},
		{pattern: "GET /v1/keys/{id}/events", handle: s.keyEvents},
		{pattern: "GET /v1/keys/{id}/usage", handle: s.keyUsage},
		{pattern: "GET /v1/usage/top", handle: s.topUsage},
		{pattern: "GET /v1/modules", handle: s.modules},
		{pattern: "GET /v1/whoami", handle: s.whoami},
		{pattern: "GET /v1/openapi.json", public: true, handle: serveOpenAPI},
		{pattern: "GET /{$}", public: true, handle: serveConsole},
		{pattern: "GET /{file}", public: true, handle: serveConsole},
	}, s.eventRoutes()...)
}

// ServeHTTP routes r with the ServeMux; a path it does not know is a 404
// problem and a method it does not serve there a 405 problem with Allow.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	for k, v := range securityHeaders {
		w.Header().Set(k, v)
	}
	if !s.bufferBody(w, r) {
		return
	}
	if _, pattern := s.mux.Handler(r); pattern != "" {
		s.mux.ServeHTTP(w, r)
		return
	}
	// The mux answers itself (404, 405, a redirect to a clean path): find
	// out what it would say, and say it as a problem.
	h, _ := s.mux.Handler(r)
	rec := &headerRecorder{header: http.Header{}}
	h.ServeHTTP(rec, r)
	switch rec.status {
	case http.StatusMethodNotAllowed:
		s.finish(w, r, "", Principal{}, time.Now(), newProblem(probMethod, "This path does not take "+safeMethod(r.Method)+".").
			with("Allow", rec.header.Get("Allow")))
	case http.StatusNotFound:
		s.finish(w, r, "", Principal{}, time.Now(), newProblem(probNotFound, "There is nothing at this path."))
	default:
		s.mux.ServeHTTP(w, r)
	}
}

// safeMethod echoes a method only if it is a plain token.
func safeMethod(m string) string {
	if len(m) > 10 || strings.ContainsFunc(m, func(r rune) bool { return r < 'A' || r > 'Z' }) {
		return "this method"
	}
	return m
}

type headerRecorder struct {
	header http.Header
	status int
}

func (h *headerRecorder) Header() http.Header         { return h.header }
func (h *headerRecorder) Write(b []byte) (int, error) { return len(b), nil }
func (h *headerRecorder) WriteHeader(status int)      { h.status = status }

// endpoint wraps a route: API responses are never cached, the admin token
// is checked unless the route is public, panics are contained, and each
// request is logged once (its route pattern, never its path, query or
// headers, which may hold a pasted secret).
func (s *Server) endpoint(rt route) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		var p Principal
		var prob *problem
		defer func() {
			if v := recover(); v != nil {
				s.logger.Error("admin: handler panicked", "route", rt.pattern, "panic", fmt.Sprintf("%T", v))
				if sw.status == 0 {
					prob = newProblem(probInternal, "The server failed; the change, if any, was not made or was made in full.")
				} else {
					prob = nil
				}
			}
			s.finish(sw, r, rt.pattern, p, start, prob)
		}()
		w.Header().Set("Cache-Control", cacheControl(rt.pattern))
		if !rt.public {
			if p, prob = s.authenticate(r); prob != nil {
				return
			}
		}
		prob = rt.handle(sw, r, p)
	})
}

// cacheControl is the Cache-Control of a route's responses: API responses
// are never cached; the console's files are, but revalidated.
func cacheControl(pattern string) string {
	if strings.Contains(pattern, " /v1/") {
		return "no-store"
	}
	return "no-cache"
}

// finish writes prob, if any, and logs the request.
func (s *Server) finish(w http.ResponseWriter, r *http.Request, pattern string, p Principal, start time.Time, prob *problem) {
	if prob != nil {
		writeProblem(w, prob)
	}
	status := http.StatusOK
	if sw, ok := w.(*statusWriter); ok && sw.status != 0 {
		status = sw.status
	} else if prob != nil {
		status = prob.kind.status
	}
	level := slog.LevelInfo
	if !strings.Contains(pattern, "/v1/") || pattern == "GET /v1/openapi.json" {
		level = slog.LevelDebug // the console's files
	}
	attrs := []any{"method", safeMethod(r.Method), "route", pattern, "status", status, "duration", time.Since(start).Round(time.Microsecond)}
	if p.Name != "" {
		attrs = append(attrs, "actor", p.Actor())
	}
	s.logger.Log(r.Context(), level, "admin request", attrs...)
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(status int) {
	if w.status == 0 {
		w.status = status
	}
	w.ResponseWriter.WriteHeader(status)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// authenticate reads the admin token from "Authorization: Bearer …". A
// valid token is always accepted; a request without one from a source
// over its failure budget is 429, and each token that is not valid counts
// against its source's budget.
func (s *Server) authenticate(r *http.Request) (Principal, *problem) {
	p, prob, presented := s.checkToken(r)
	if prob == nil {
		return p, nil
	}
	source, now := sourceAddr(r), s.now()
	if s.failures.Over(source, now) {
		return Principal{}, newProblem(probThrottled, "This address sent too many admin tokens that are not valid; try again later.").
			with("Retry-After", s.limit.RetryAfter())
	}
	if presented {
		s.failures.Add(source, now)
		if s.failures.Over(source, now) {
			s.logger.Warn("admin: a source is over its budget of failed admin tokens; its requests without a valid token get 429",
				"source", source.String(), "limit", s.limit.String())
		}
	}
	return Principal{}, prob
}

// checkToken checks the admin token of r, and reports whether r presented
// one at all (an Authorization header).
func (s *Server) checkToken(r *http.Request) (p Principal, prob *problem, presented bool) {
	challenge := `Bearer realm="keygate admin"`
	values := r.Header.Values("Authorization")
	if len(values) == 0 {
		return Principal{}, newProblem(probUnauth, "Send an admin token: Authorization: Bearer kgadm_….").with("WWW-Authenticate", challenge), false
	}
	challenge += `, error="invalid_token"`
	scheme, token, _ := strings.Cut(values[0], " ")
	token = strings.TrimSpace(token)
	if len(values) > 1 || !strings.EqualFold(scheme, "Bearer") || token == "" {
		return Principal{}, newProblem(probUnauth, "Send one admin token as Authorization: Bearer kgadm_….").with("WWW-Authenticate", challenge), true
	}
	secret, err := keystore.ParseSecret(token)
	if err != nil {
		return Principal{}, newProblem(probUnauth, "The admin token is not valid.").with("WWW-Authenticate", challenge), true
	}
	if !strings.HasPrefix(secret.Reveal(), TokenPrefix+"_") {
		return Principal{}, newProblem(probUnauth, "This is not an admin token: the admin API takes admin tokens (kgadm_…), never API keys.").
			with("WWW-Authenticate", challenge), true
	}
	p, ok := s.tokens.authenticate(secret.Reveal())
	if !ok {
		return Principal{}, newProblem(probUnauth, "The admin token is not valid.").with("WWW-Authenticate", challenge), true
	}
	return p, nil, true
}

// sourceAddr is the address a request came from, as the failure budget
// counts it; the zero Addr when the transport does not say.
func sourceAddr(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// bufferBody reads r's body, at most MaxBodySize bytes, into memory before
// any handler runs, so that no handler leaves part of a body unread and
// every one reads a whole body. It reports whether to go on: a body that
// is larger (declared, or found so) has been answered 413 (see
// drainTimeout), and one that could not be read 400.
func (s *Server) bufferBody(w http.ResponseWriter, r *http.Request) bool {
	if r.Body == nil || r.Body == http.NoBody {
		return true
	}
	start, original, pattern := time.Now(), r.Body, s.pattern(r)
	w.Header().Set("Cache-Control", cacheControl(pattern))
	var body []byte
	read := r.ContentLength <= MaxBodySize
	if read {
		var err error
		if body, err = io.ReadAll(io.LimitReader(original, MaxBodySize+1)); err != nil {
			s.finish(w, r, pattern, Principal{}, start, newProblem(probInvalid, "The request body could not be read."))
			return false
		}
		if len(body) <= MaxBodySize {
			r.Body = io.NopCloser(bytes.NewReader(body))
			return true
		}
	}
	// The client may still be sending: answer now, and read on.
	rc := http.NewResponseController(w)
	fullDuplex := rc.EnableFullDuplex() == nil
	// A client that waits for 100 Continue sends no body unless a read
	// asks for it: leave it unasked.
	drain := read || !strings.EqualFold(r.Header.Get("Expect"), "100-continue")
	if drain && !fullDuplex {
		discard(rc, original) // the answer cannot go out first
	}
	if r.ProtoMajor == 1 {
		w.Header().Set("Connection", "close") // over HTTP/2, only this stream ends
	}
	s.finish(w, r, pattern, Principal{}, start, newProblem(probTooLarge, fmt.Sprintf("Request bodies are at most %d bytes.", MaxBodySize)))
	if drain && fullDuplex {
		_ = rc.Flush()
		discard(rc, original)
	}
	return false
}

// discard reads and throws away what is left of a body, within
// drainTimeout and maxDrain.
func discard(rc *http.ResponseController, body io.Reader) {
	_ = rc.SetReadDeadline(time.Now().Add(drainTimeout))
	_, _ = io.CopyN(io.Discard, body, maxDrain)
}

// pattern is the route pattern r matches, for the log; "" for none.
func (s *Server) pattern(r *http.Request) string {
	_, pattern := s.mux.Handler(r)
	return pattern
}

// decodeObject reads a request body that must be one JSON object of at
// most MaxBodySize bytes, sent as one of mediaTypes, and returns its
// members. An empty body is a nil map when allowEmpty is set. Duplicate
// members are refused: parsers disagree on which one wins. So is text that
// encoding/json would silently replace with U+FFFD (bytes that are not
// UTF-8, unpaired surrogate escapes): the field errors name the members
// that hold it.
func decodeObject(r *http.Request, allowEmpty bool, mediaTypes ...string) (map[string]json.RawMessage, *problem) {
	body, err := io.ReadAll(io.LimitReader(r.Body, MaxBodySize+1))
	switch {
	case err != nil:
		return nil, newProblem(probInvalid, "The request body could not be read.")
	case len(body) > MaxBodySize:
		return nil, newProblem(probTooLarge, fmt.Sprintf("Request bodies are at most %d bytes.", MaxBodySize))
	}
	if len(bytes.TrimSpace(body)) == 0 && allowEmpty && r.Header.Get("Content-Type") == "" {
		return nil, nil
	}
	mt, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	okType := false
	for _, want := range mediaTypes {
		okType = okType || mt == want
	}
	if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") {
		okType = false
	}
	if err != nil || !okType {
		return nil, newProblem(probMediaType, "Send the body as "+strings.Join(mediaTypes, " or ")+".")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	notObject := newProblem(probInvalid, "The body must be one JSON object.")
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil, notObject
	}
	members := map[string]json.RawMessage{}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil, notObject
		}
		key, ok := t.(string) // inside an object, Token returns keys as strings
		if !ok {
			return nil, notObject
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, notObject
		}
		if _, dup := members[key]; dup {
			return nil, newProblem(probInvalid, "A member of the body is given twice.")
		}
		members[key] = v
	}
	if _, err := dec.Token(); err != nil {
		return nil, notObject
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, notObject
	}
	if keystore.CheckJSONText(body) != nil {
		var errs fieldErrors
		for key, v := range members {
			if keystore.CheckJSONText(v) != nil {
				errs.add(fieldName(key), `must be valid UTF-8, without unpaired surrogate escapes (\ud800)`)
			}
		}
		if prob := errs.problem(); prob != nil {
			return nil, prob
		}
		return nil, newProblem(probInvalid, `The body must be valid UTF-8, without unpaired surrogate escapes (\ud800).`)
	}
	return members, nil
}

// storeProblem maps an error from the store that is not about a field.
func (s *Server) storeProblem(err error) *problem {
	switch {
	case errors.Is(err, keystore.ErrNotFound):
		return notFound()
	case errors.Is(err, keystore.ErrRevoked):
		return newProblem(probConflict, "The key is revoked.")
	case errors.Is(err, keystore.ErrExpired):
		return newProblem(probConflict, "The key has expired.")
	case errors.Is(err, keystore.ErrRotated):
		return newProblem(probConflict, "The key has already been rotated: rotate its successor (rotated_to).")
	case errors.Is(err, keystore.ErrDisabled):
		return newProblem(probConflict, "The key is disabled: enable it first.")
	}
	if ves := validationErrors(err); len(ves) > 0 {
		// Input the store refuses is the client's mistake, whatever
		// slipped past the handler's own checks: never a 503.
		var errs fieldErrors
		for _, ve := range ves {
			errs.add(ve.Field, ve.Problem)
		}
		return errs.problem()
	}
	// Unavailable (keystore.ErrUnavailable) or failed: either way the
	// client may try again, and the log says which.
	s.logger.Warn("admin: the key store failed or did not answer", "error", oneLine(err.Error()))
	return newProblem(probUnavailable, "The key store failed or did not answer; try again.").with("Retry-After", "2")
}

func notFound() *problem { return newProblem(probNotFound, "There is no key with this id.") }

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
