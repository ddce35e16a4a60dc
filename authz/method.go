package authz

import (
	"strconv"
	"strings"

	"github.com/keygate/keygate/keystore"
)

// The action a request needs. Safe methods read, the rest write; but many
// backends honour a method override, reading a GET with
// X-HTTP-Method-Override: DELETE (Google APIs, ASP.NET, Express's
// method-override, Laravel and Symfony with _method) as the DELETE it
// names. So a request needs the write action when its method writes, or
// when a method-override header or a _method query parameter names
// anything but a safe method (an empty or unknown one included).

// methodOverrideHeaders are the headers that name a method to use instead
// of the request's, in lower case.
var methodOverrideHeaders = [...]string{"x-http-method-override", "x-http-method", "x-method-override"}

// MethodOverrideHeaders returns the method-override headers keygate reads,
// in lower case: a proxy that sends keygate only some headers (Envoy's
// http_service) must send these.
func MethodOverrideHeaders() []string { return methodOverrideHeaders[:] }

// action is the scope action r needs.
func action(r *Request) string {
	if !safeMethod(r.Method, false) || r.overridesMethod || queryOverridesMethod(r.Path) {
		return keystore.ActionWrite
	}
	return keystore.ActionRead
}

// safeMethod reports whether method reads: GET, HEAD or OPTIONS, in upper
// case, or in any case if anyCase (overrides are often upper-cased by
// whoever honours them).
func safeMethod(method string, anyCase bool) bool {
	for _, m := range [...]string{"GET", "HEAD", "OPTIONS"} {
		if method == m || anyCase && strings.EqualFold(method, m) {
			return true
		}
	}
	return false
}

// isMethodOverride reports whether header name is a method-override
// header, ignoring ASCII case and reading '_' as '-' (as CGI-style
// backends do).
func isMethodOverride(name string) bool {
	for _, h := range methodOverrideHeaders {
		if len(name) == len(h) && hasIdentityPrefix(name, h) {
			return true
		}
	}
	return false
}

// queryOverridesMethod reports whether the query of target has a _method
// parameter (its name compared ignoring ASCII case, escapes decoded) whose
// raw value is not a safe method.
func queryOverridesMethod(target string) bool {
	q := strings.IndexByte(target, '?')
	if q < 0 {
		return false
	}
	for param := range strings.SplitSeq(target[q+1:], "&") {
		name, value, _ := strings.Cut(param, "=")
		if isMethodParam(name) && !safeMethod(value, true) {
			return true
		}
	}
	return false
}

// isMethodParam reports whether a raw query parameter name is _method,
// ignoring ASCII case, with any of its bytes percent-escaped.
func isMethodParam(name string) bool {
	const want = "_method"
	i := 0
	for k := 0; k < len(want); k++ {
		if i >= len(name) {
			return false
		}
		c := name[i]
		i++
		if c == '%' && i+1 < len(name) {
			b, err := strconv.ParseUint(name[i:i+2], 16, 8)
			if err != nil {
				return false
			}
			c, i = byte(b), i+2
		}
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != want[k] {
			return false
		}
	}
	return i == len(name)
}
