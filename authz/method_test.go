package authz

import (
	"testing"

	"github.com/keygate/keygate/internal/authztest"
)

// TestNeeds: the actions a request needs, from every reading of its
// method: its own (upper-cased too), its method-override headers in any
// spelling a backend reads, and its _method query parameters, separated by
// '&' or ';', raw and decoded, also in the query of a path-override target.
func TestNeeds(t *testing.T) {
	s := newTestServer(t, &authztest.Lookup{}, nil)
	const (
		read  = needsRead
		write = needsWrite
		both  = needsRead | needsWrite
	)
	for _, c := range []struct {
		method, path string
		headers      [][2]string
		want         actions
	}{
		{"GET", "/x", nil, read},
		{"HEAD", "/x?a=b", nil, read},
		{"OPTIONS", "/x", nil, read},
		{"POST", "/x", nil, write},
		{"DELETE", "/x", nil, write},
		{"get", "/x", nil, both}, // not GET, but upper-cased by some backends
		{"Head", "/x", nil, both},
		// A method the contract does not name may read, write or both.
		{"", "/x", nil, both},
		{"BREW", "/x", nil, both},
		{"PROPFIND", "/x", nil, both},
		{"QUERY", "/x", nil, both},
		{"COPY", "/x", nil, both},
		{"post", "/x", nil, both},
		{"PUT", "/x", nil, write},
		{"PATCH", "/x", nil, write},

		// A safe method that names another needs write, and read for the
		// backends that ignore the override.
		{"GET", "/x", [][2]string{{"X-HTTP-Method-Override", "DELETE"}}, both},
		{"GET", "/x", [][2]string{{"x_http_method_override", "DELETE"}}, both},
		{"GET", "/x", [][2]string{{"X-Http-Method", "\tpost "}}, both},
		{"GET", "/x", [][2]string{{"X-Method-Override", "MERGE"}}, both},
		{"GET", "/x", [][2]string{{"X-Method-Override", ""}}, both},
		{"GET", "/x", [][2]string{{"X-Method-Override", "GET"}, {"X-Method-Override", "PUT"}}, both},
		// Envoy's merged view of a repeated header: the backend gets each.
		{"POST", "/x", [][2]string{{"X-HTTP-Method-Override", "GET,GET"}}, both},
		{"POST", "/x", [][2]string{{"X-HTTP-Method-Override", "PUT, head"}}, both},
		{"GET", "/x", [][2]string{{"X-HTTP-Method-Override", "GET, HEAD"}}, both}, // "GET, HEAD" whole is no method
		{"GET", "/x", [][2]string{{"X-HTTP-Method-Override", "head"}}, read},
		{"GET", "/x", [][2]string{{"X-HTTP-Method-Overrides", "DELETE"}}, read},
		// ... and the other way: a write that names a read needs read too.
		{"POST", "/x", [][2]string{{"X-HTTP-Method-Override", "GET"}}, both},
		{"POST", "/x", [][2]string{{"x-http-method", "get"}}, both},
		{"PUT", "/x", [][2]string{{"X_Method_Override", "OPTIONS"}}, both},
		{"POST", "/x", [][2]string{{"X-HTTP-Method-Override", "PATCH"}}, write},
		{"POST", "/x", [][2]string{{"X-HTTP-Method-Override", "optıons"}}, both}, // toUpperCase: OPTIONS
		{"POST", "/x", [][2]string{{"X-HTTP-Method-Override", "OPTIONſ"}}, both},
		// Any byte that is not a letter or digit may stand for '-': PHP reads
		// '.' in a name as '_', lighttpd every other byte.
		{"GET", "/x", [][2]string{{"X.HTTP.Method.Override", "DELETE"}}, both},
		{"POST", "/x", [][2]string{{"X+Http+Method", "GET"}}, both},
		{"POST", "/x", [][2]string{{"x~method|override", "get"}}, both},
		{"GET", "/x", [][2]string{{"X.HTTP.Method.Overrides", "DELETE"}}, read},
		{"POST", "/x?_method=opt%C4%B1ons", nil, both},
		{"POST", "/x?_method=GET", nil, both},
		{"DELETE", "/x?_method=head", nil, both},
		{"POST", "/x?_method=PUT", nil, write},

		// _method in the query.
		{"GET", "/x?_method=DELETE", nil, both},
		{"GET", "/x?_method", nil, both},
		{"GET", "/x?_METHOD=put", nil, both},
		{"GET", "/x?a&%5fmethod=put", nil, both},
		{"GET", "/x?%5F%6d%65%74%68%6f%64=put", nil, both},
		{"GET", "/x?_method=get&b=1", nil, read},
		{"GET", "/x?_method_=put&x_method=put&_metho=put&%5=put", nil, read},
		{"GET", "/x/_method=put", nil, read}, // in the path, not the query
		// _method as PHP names $_GET's entries: leading spaces skipped, '.'
		// and ' ' as '_', the name cut at a NUL.
		{"POST", "/x?.method=GET", nil, both},
		{"POST", "/x?%2Emethod=HEAD", nil, both},
		{"POST", "/x?+_method=GET", nil, both},
		{"POST", "/x?%20%20_method=GET", nil, both},
		{"POST", "/x?_method%00x=GET", nil, both},
		{"POST", "/x?_METHOD%00=get", nil, both},
		{"POST", "/x?_method+=GET", nil, write},   // "_method_"
		{"POST", "/x?_method.=GET", nil, write},   // "_method_"
		{"POST", "/x?x+_method=GET", nil, write},  // "x__method"
		{"POST", "/x?%00_method=GET", nil, write}, // the empty name
		// ';' separates parameters too (Rack 2, older parse_qs, PHP's
		// arg_separator.input); a parameter is read both ways.
		{"GET", "/x?a=1;_method=DELETE", nil, both},
		{"GET", "/x?;_method=PUT", nil, both},
		{"GET", "/x?a=1;_METHOD=delete&b=2", nil, both},
		{"POST", "/x?a=1;_method=GET", nil, both},
		{"GET", "/x?_method=GET;x=1", nil, both}, // "GET;x=1" read whole is no safe method
		{"GET", "/x?a=1;b=_method", nil, read},
		// The value decoded as a backend decodes it.
		{"POST", "/x?_method=G%45T", nil, both},
		{"POST", "/x?_method=%48EAD", nil, both},
		{"GET", "/x?_method=%44ELETE", nil, both},

		// The query of a path-override target counts like the request's.
		{"GET", "/x", [][2]string{{"X-Original-URL", "/y?_method=DELETE"}}, both},
		{"POST", "/x", [][2]string{{"X-Rewrite-URL", "/y?a;_method=GET"}}, both},
		{"GET", "/x", [][2]string{{"X-Original-URL", "/y?_method=GET"}}, read},
	} {
		r := &Request{Method: c.method, Path: c.path}
		for _, h := range c.headers {
			s.ReadHeader(r, h[0], h[1])
		}
		if got := needs(r); got != c.want {
			t.Errorf("%s %s %q: %b, want %b (read 1, write 2)", c.method, c.path, c.headers, got, c.want)
		}
	}
}
