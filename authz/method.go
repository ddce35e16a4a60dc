package authz

import (
	"net/url"
	"strings"

	"github.com/keygate/keygate/keystore"
)

// The actions a request needs. Safe methods read, the rest write; but many
// backends honour a method override, reading a request with
// X-HTTP-Method-Override: DELETE (Google APIs, ASP.NET, Express's
// method-override, Laravel and Symfony with _method) as the DELETE it
// names, and others ignore it. So every method a backend may read the
// request as is a reading of its method, and the key must hold the scope
// of each: the request's own method (upper-cased too, as Symfony and Rack
// read "get" as GET), and every method an override header or a _method
// query parameter names. A method that is neither safe nor POST, PUT,
// PATCH or DELETE (PROPFIND, QUERY, an empty or unknown one) may read or
// write: it needs both. A GET that names DELETE needs write, a POST that
// names GET needs read too.

// actions is a set of the scope actions a request needs.
type actions uint8

const (
	needsRead actions = 1 << iota
	needsWrite
)

// scopeActions names the actions of a set, in the order Decide checks them.
var scopeActions = [...]struct {
	bit  actions
	name string
}{{needsRead, keystore.ActionRead}, {needsWrite, keystore.ActionWrite}}

// methodOverrideHeaders are the headers that name a method to use instead
// of the request's, in lower case.
var methodOverrideHeaders = [...]string{"x-http-method-override", "x-http-method", "x-method-override"}

// MethodOverrideHeaders returns the method-override headers keygate reads,
// in lower case: a proxy that sends keygate only some headers (Envoy's
// http_service) must send these.
func MethodOverrideHeaders() []string { return methodOverrideHeaders[:] }

// needs is the set of actions r needs: those of every reading of its
// method, and of the _method parameters in the query of its target and of
// every target a path-override header or its query names.
func needs(r *Request) actions {
	a := requestMethodNeeds(r.Method) | r.overrideNeeds | queryNeeds(r.Path)
	for _, t := range r.targets {
		a |= queryNeeds(t)
	}
	return a
}

// requestMethodNeeds is what the request's own method needs: read for a
// safe method, write for POST, PUT, PATCH and DELETE, and both for any
// other: a safe method in another case ("get"), since methods are
// case-sensitive but some backends upper-case them, and a method the
// contract does not name ("", PROPFIND, QUERY, COPY, BREW), which may read
// (WebDAV's PROPFIND, the QUERY method), write, or both.
func requestMethodNeeds(method string) actions {
	switch {
	case safeMethod(method, false):
		return needsRead
	case writeMethod(method, false):
		return needsWrite
	}
	return needsRead | needsWrite
}

// writeMethod reports whether method is POST, PUT, PATCH or DELETE, as
// safeMethod reads methods.
func writeMethod(method string, anyCase bool) bool {
	return methodIn(method, writeMethods[:], anyCase)
}

// The methods the contract names: those that read and those that write.
var (
	safeMethods  = [...]string{"GET", "HEAD", "OPTIONS"}
	writeMethods = [...]string{"POST", "PUT", "PATCH", "DELETE"}
)

// methodIn reports whether method is one of names (upper case): as it is,
// or if anyCase also as any stack upper-cases or case-folds it
// (JavaScript's toUpperCase reads "optıons" and "optionſ" as OPTIONS).
func methodIn(method string, names []string, anyCase bool) bool {
	upper := method
	if anyCase {
		upper = strings.ToUpper(method)
	}
	for _, m := range names {
		if method == m || anyCase && (upper == m || strings.EqualFold(method, m)) {
			return true
		}
	}
	return false
}

// readMethodOverride reads the value of a method-override header: the
// method it names, and, when it holds a comma (Envoy's merged view of a
// repeated header, which the backend receives as several), each method
// between the commas too.
func (r *Request) readMethodOverride(value string) {
	r.overrideNeeds |= overrideNeeds(trimOWS(value))
	if strings.IndexByte(value, ',') >= 0 {
		for part := range strings.SplitSeq(value, ",") {
			r.overrideNeeds |= overrideNeeds(trimOWS(part))
		}
	}
}

// overrideNeeds is what a method override naming method needs, in any
// case (whoever honours an override upper-cases it): read for a safe
// method, write for POST, PUT, PATCH and DELETE, both for anything else,
// an empty or unknown name included.
func overrideNeeds(method string) actions {
	switch {
	case safeMethod(method, true):
		return needsRead
	case writeMethod(method, true):
		return needsWrite
	}
	return needsRead | needsWrite
}

// safeMethod reports whether method reads: GET, HEAD or OPTIONS, in upper
// case, or if anyCase also as any stack upper-cases or case-folds it
// (JavaScript's toUpperCase reads "optıons" and "optionſ" as OPTIONS).
func safeMethod(method string, anyCase bool) bool {
	return methodIn(method, safeMethods[:], anyCase)
}

// isMethodOverride reports whether header name is a method-override
// header, read as backends may read it (see hasIdentityPrefix).
func isMethodOverride(name string) bool {
	return isHeaderOf(name, methodOverrideHeaders[:])
}

// isHeaderOf reports whether header name is one of names (lower case),
// ignoring ASCII case and reading every byte that is not a letter or digit
// as '-' (see hasIdentityPrefix).
func isHeaderOf(name string, names []string) bool {
	for _, h := range names {
		if len(name) == len(h) && hasIdentityPrefix(name, h) {
			return true
		}
	}
	return false
}

// allowedBy reports whether key holds the scopes of module m ("" for no
// module) for every action in a.
func (a actions) allowedBy(key *keystore.Record, m string) bool {
	for _, act := range scopeActions {
		if a&act.bit != 0 && !key.Allows(m, act.name) {
			return false
		}
	}
	return true
}

// queryNeeds is what the _method parameters in the query of target need
// (none without one): each parameter's name is compared ignoring ASCII
// case, escapes decoded, and its raw value read as an override. Parameters
// are separated by '&', and also by ';' as Rack 2, older Python parse_qs
// and PHP with arg_separator.input do; a parameter is read both ways.
func queryNeeds(target string) actions {
	var a actions
	eachQueryParam(target, func(param string) { a |= paramNeeds(param) })
	return a
}

// eachQueryParam calls visit with each raw parameter of target's query
// (none without one) as backends split them: between '&', and, for a
// parameter holding a ';', also between ';' (Rack 2, older Python
// parse_qs, PHP's arg_separator.input), so such a parameter is visited
// both ways.
func eachQueryParam(target string, visit func(param string)) {
	_, query, ok := strings.Cut(target, "?")
	if !ok {
		return
	}
	for param := range strings.SplitSeq(query, "&") {
		visit(param)
		if strings.IndexByte(param, ';') >= 0 {
			for p := range strings.SplitSeq(param, ";") {
				visit(p)
			}
		}
	}
}

// paramNeeds is what one raw query parameter needs: a _method one what its
// value names, raw and decoded (a backend decodes G%45T to GET), any other
// nothing.
func paramNeeds(param string) actions {
	name, value, _ := strings.Cut(param, "=")
	if !isMethodParam(name) {
		return 0
	}
	a := overrideNeeds(value)
	if strings.ContainsAny(value, "%+") {
		if decoded, err := url.QueryUnescape(value); err == nil {
			a |= overrideNeeds(decoded)
		}
	}
	return a
}

// isMethodParam reports whether a raw query parameter name is _method as
// a backend may read it (isParamNamed).
func isMethodParam(name string) bool { return isParamNamed(name, "_method") }

// queryByte decodes the byte of query text s at i as form decoding does,
// leniently (as PHP's urldecode): '+' is a space, a valid escape its byte,
// anything else, a malformed escape included, itself. n is how many bytes
// of s it covers.
func queryByte(s string, i int) (c byte, n int) {
	switch c = s[i]; {
	case c == '+':
		return ' ', 1
	case c == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]):
		return unhex(s[i+1])<<4 | unhex(s[i+2]), 3
	}
	return c, 1
}

// isHex reports whether c is a hexadecimal digit.
func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// unhex is the value of hexadecimal digit c.
func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c <= 'F':
		return c - 'A' + 10
	}
	return c - 'a' + 10
}

// isParamNamed reports whether a raw query parameter name is want (lower
// case) as a backend may read it: escapes decoded ('+' as a space, as form
// decoding does), ASCII case ignored, and as PHP names $_GET's entries
// (Laravel and Symfony read the _method override there): leading spaces
// skipped, '.', ' ' and '[' read as '_', and the name cut at its first
// NUL (" _method", "%2Emethod", "_method%00x" are all _method to PHP, and
// "rest[route" is rest_route).
func isParamNamed(name, want string) bool {
	k := 0 // bytes of want matched
	leading := true
	for i := 0; i < len(name); {
		c, n := queryByte(name, i)
		i += n
		switch {
		case c == 0:
			return k == len(want)
		case c == ' ' && leading:
			continue
		case c == ' ' || c == '.' || c == '[':
			c = '_' // PHP: "rest[route" is rest_route ("a[b]" an array)
		case c >= 'A' && c <= 'Z':
			c += 'a' - 'A'
		}
		leading = false
		if k == len(want) || c != want[k] {
			return false
		}
		k++
	}
	return k == len(want)
}
