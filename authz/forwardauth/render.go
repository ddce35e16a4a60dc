package forwardauth

import (
	"net/http"
	"net/textproto"
	"strconv"
	"strings"

	"github.com/keygate/keygate/authz"
)

// response is a prebuilt HTTP answer: its headers are assigned to the
// ResponseWriter's map as they are (shared slices, never modified), so
// that writing it allocates nothing of its own.
type response struct {
	status int
	header []field
	body   []byte
}

// field is one response header: its canonical name and shared value.
type field struct {
	name   string
	values []string // len == cap, so that an append by net/http copies
}

func newField(name, value string) field {
	return field{name: textproto.CanonicalMIMEHeaderKey(name), values: []string{value}[:1:1]}
}

// write sends r and returns its status.
func (r *response) write(w http.ResponseWriter) int { return r.writeWith(w, nil) }

// writeWith sends r with extra fields set over its own (a limited key's
// RateLimit fields) and returns its status.
func (r *response) writeWith(w http.ResponseWriter, extra []authz.Field) int {
	h := w.Header()
	for i := range r.header {
		h[r.header[i].name] = r.header[i].values
	}
	setFields(w, extra)
	w.WriteHeader(r.status)
	if len(r.body) > 0 {
		_, _ = w.Write(r.body)
	}
	return r.status
}

// newResponse builds a response with the given headers and body, and its
// Content-Length.
func newResponse(status int, body string, fields ...field) *response {
	fields = append(fields, newField("content-length", strconv.Itoa(len(body))))
	return &response{status: status, header: fields, body: []byte(body)}
}

// denial renders the core's refusal.
func denial(d *authz.Denial) *response {
	var fields []field
	for _, f := range d.Headers {
		fields = append(fields, newField(f.Name, f.Value))
	}
	return newResponse(d.Status, d.Body, fields...)
}

// nginxDenial is the refusal with outcome o as nginx's auth_request can
// pass it on: a 401 (which auth_request forwards, where any status but
// 401 and 403 becomes a 500) naming the outcome, for the error page that
// fetches the real one from DenialPath.
func nginxDenial(o authz.Outcome) *response {
	return newResponse(http.StatusUnauthorized, "", newField(OutcomeHeader, o.String()),
		newField("cache-control", "no-store"))
}

// grant is an allow rendered for both kinds of request.
type grant struct {
	auth  response // /auth: every identity header, empty when it says nothing
	envoy response // Envoy: non-empty identity headers, the rest removed
}

// build renders the allow (or dry-run denial) d.
func (h *Handler) build(d authz.Decision) *grant {
	id := h.core.Identity(&d)
	g := &grant{auth: response{status: http.StatusOK}, envoy: response{status: http.StatusOK}}
	remove := id.Remove
	for i, f := range id.Headers {
		g.auth.header = append(g.auth.header, newField(f.Name, f.Value))
		switch {
		case f.Value != "":
			g.envoy.header = append(g.envoy.header, newField(f.Name, f.Value))
		case i != authz.IdentityDryRun: // a forged one is in id.Remove
			remove = append(remove, f.Name)
		}
	}
	for _, f := range id.Meta {
		g.auth.header = append(g.auth.header, newField(f.Name, f.Value))
		if f.Value != "" {
			g.envoy.header = append(g.envoy.header, newField(f.Name, f.Value))
		} else {
			remove = append(remove, f.Name)
		}
	}
	if len(remove) > 0 {
		g.envoy.header = append(g.envoy.header, newField(envoyRemoveHeader, strings.Join(remove, ",")))
	}
	// The RateLimit fields, empty: a limited key's are set over them per
	// request (Caddy 2.6 would copy a missing one as placeholder text).
	g.auth.header = append(g.auth.header, newField(authz.RateLimitPolicyHeader, ""), newField(authz.RateLimitHeader, ""))
	zero := newField("content-length", "0")
	g.auth.header = append(g.auth.header, zero)
	g.envoy.header = append(g.envoy.header, zero)
	return g
}

// setFields sets fields on w's response, for the one request: a limited
// key's RateLimit fields and Retry-After (authz.Server.LimitHeaders), which
// the prebuilt responses then leave in place. With nginx's workaround they
// ride on the bodiless 401, where the configuration picks them up.
func setFields(w http.ResponseWriter, fields []authz.Field) {
	h := w.Header()
	for _, f := range fields {
		h[textproto.CanonicalMIMEHeaderKey(f.Name)] = []string{f.Value}
	}
}
