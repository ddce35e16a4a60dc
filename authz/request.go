package authz

import (
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// DefaultKeyHeaders are where keys are read from: X-API-Key, then
// Authorization with the Bearer scheme.
var DefaultKeyHeaders = []string{"x-api-key", "authorization"}

// DefaultIdentityPrefix starts the upstream headers keygate sets.
const DefaultIdentityPrefix = "x-keygate-"

// maxKeyHeaders bounds the configured key headers (a bit mask tracks which
// ones carried the key).
const maxKeyHeaders = 8

// keyHeader is one header keys are read from.
type keyHeader struct {
	name   string // lower case
	bearer bool   // the value is "Bearer <key>" (Authorization-style)
}

func newKeyHeaders(names []string, identityPrefix string) ([]keyHeader, error) {
	if len(names) == 0 {
		return nil, configError("KeyHeaders", "at least one key header is needed")
	}
	if len(names) > maxKeyHeaders {
		return nil, configError("KeyHeaders", fmt.Sprintf("at most %d key headers, got %d", maxKeyHeaders, len(names)))
	}
	out := make([]keyHeader, 0, len(names))
	for _, n := range names {
		n = strings.ToLower(strings.TrimSpace(n))
		if !validHeaderName(n) || n[0] == ':' {
			return nil, configError("KeyHeaders", fmt.Sprintf("%q is not a valid header name", n))
		}
		if strings.HasPrefix(n, identityPrefix) {
			return nil, configError("KeyHeaders", fmt.Sprintf("%q must not start with the identity prefix %q", n, identityPrefix))
		}
		for _, h := range out {
			if h.name == n {
				return nil, configError("KeyHeaders", fmt.Sprintf("%q is listed twice", n))
			}
		}
		out = append(out, keyHeader{name: n, bearer: n == "authorization" || n == "proxy-authorization"})
	}
	return out, nil
}

// validHeaderName reports whether s is an HTTP field name (RFC 9110 token).
func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// Request is one request to decide, as a transport read it. The adapter
// fills the fields it knows and passes every header of the request to
// Server.ReadHeader; the zero value is a request with no key.
type Request struct {
	// Method is the HTTP method; "" is treated as a write.
	Method string
	// Path is the request target as the client sent it: query included,
	// nothing decoded.
	Path string
	// Module is the module the proxy's route names, "" if none.
	Module string
	// Source is the client's address, when the transport knows it.
	Source netip.Addr
	// At is when the request arrived: expiry is checked against it. Zero
	// means the server's clock at Decide.
	At time.Time

	cred    credential
	spoofed []string // client-sent headers with the identity prefix, lower case
	// overrideNeeds: the actions the methods that method-override headers
	// name need (see needs).
	overrideNeeds actions
	// targets: the request targets path-override headers and the query
	// name (see readTargets, readQueryTargets), but for copies of Path.
	targets []string
	// requestID is x-request-id, for decision logs and spans; traceParent
	// and traceState are the W3C trace context of the request.
	requestID, traceParent, traceState string
}

// credential is what a request's headers say about its key.
type credential struct {
	value    string // the presented key, white space trimmed
	found    bool   // some key header carried a key
	several  bool   // several different keys, or a comma-merged header
	carriers uint8  // bit i: keyHeaders[i] carried the key
}

// ReadHeader reads one header of r: the key, when name is one of the key
// headers; a client-sent header impersonating an identity header; a method
// override; or a path override, whose target is decided too (a copy of
// r.Path, when the adapter set it before, costs nothing). name may be in
// any case; a header repeated is read once per value.
func (s *Server) ReadHeader(r *Request, name, value string) {
	for i := range s.keyHeaders {
		h := &s.keyHeaders[i]
		if !equalFoldASCII(name, h.name) {
			continue
		}
		v := trimOWS(value)
		if h.bearer {
			token, ok := bearerToken(v)
			if !ok {
				return // another scheme (Basic, say) is for someone else
			}
			v = token
		} else if v == "" {
			return
		}
		c := &r.cred
		if strings.IndexByte(v, ',') >= 0 || (c.found && v != c.value) {
			c.several = true
		}
		c.value, c.found = v, true
		c.carriers |= 1 << i
		return
	}
	switch {
	case hasIdentityPrefix(name, s.identityPrefix):
		r.spoofed = append(r.spoofed, lowerASCII(name))
	case isMethodOverride(name):
		r.readMethodOverride(value)
	case isPathOverride(name):
		r.readPathOverride(value)
	case equalFoldASCII(name, "x-request-id"):
		r.requestID = value
	case equalFoldASCII(name, "traceparent"):
		r.traceParent = value
	case equalFoldASCII(name, "tracestate"):
		r.traceState = value
	}
}

// equalFoldASCII reports whether a equals lower, a lower-case ASCII name,
// ignoring ASCII case.
func equalFoldASCII(a, lower string) bool {
	if len(a) != len(lower) {
		return false
	}
	for i := 0; i < len(a); i++ {
		c := a[i]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

// hasIdentityPrefix reports whether name starts with prefix (lower case),
// as a backend may read header names: ignoring ASCII case, and with every
// byte that is not an ASCII letter or digit read as '-'. Many backends give
// x_keygate_scopes and x-keygate-scopes the same name (CGI, WSGI, Rack,
// PHP), PHP also x.keygate.scopes (it turns '.' in a variable's name into
// '_'), and lighttpd turns every other byte into '_'; so a forged spelling
// with any of them must go too.
func hasIdentityPrefix(name, prefix string) bool {
	if len(name) < len(prefix) {
		return false
	}
	for i := 0; i < len(prefix); i++ {
		if headerNameByte(name[i]) != headerNameByte(prefix[i]) {
			return false
		}
	}
	return true
}

// headerNameByte is byte c of a header name as hasIdentityPrefix compares
// it: an ASCII letter in lower case, a digit as it is, anything else '-'.
func headerNameByte(c byte) byte {
	switch {
	case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		return c
	case c >= 'A' && c <= 'Z':
		return c + 'a' - 'A'
	}
	return '-'
}

// bearerToken returns the token of an Authorization value with the
// Bearer scheme (case-insensitive); ok is false for other schemes. A Bearer
// value with no token yields "", which no key matches.
func bearerToken(v string) (token string, ok bool) {
	const scheme = "bearer"
	if len(v) < len(scheme) || !strings.EqualFold(v[:len(scheme)], scheme) {
		return "", false
	}
	rest := v[len(scheme):]
	if rest == "" {
		return "", true
	}
	if rest[0] != ' ' && rest[0] != '\t' {
		return "", false // "Bearerx…" is some other scheme
	}
	return trimOWS(rest), true
}

// trimOWS trims the optional white space (spaces and tabs) HTTP allows
// around a field value.
func trimOWS(s string) string {
	for len(s) > 0 && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for len(s) > 0 && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}

// ForwardedEntries calls yield with each entry of X-Forwarded-For header
// lines, right to left across the lines and their comma-separated entries
// (each proxy appends the address it saw), white space trimmed and empty
// ones included, until yield returns false. The adapters read a client's
// address with it; it allocates nothing.
func ForwardedEntries(lines []string, yield func(entry string) bool) {
	for i := len(lines) - 1; i >= 0; i-- {
		line := lines[i]
		for line != "" {
			var entry string
			if j := strings.LastIndexByte(line, ','); j >= 0 {
				entry, line = line[j+1:], line[:j]
			} else {
				entry, line = line, ""
			}
			if !yield(trimOWS(entry)) {
				return
			}
		}
	}
}

// lowerASCII returns s in lower case, without allocating when it already
// is.
func lowerASCII(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 'A' && c <= 'Z' {
			return strings.ToLower(s)
		}
	}
	return s
}
