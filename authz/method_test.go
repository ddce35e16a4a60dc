package authz

import (
	"testing"

	"github.com/keygate/keygate/internal/authztest"
	"github.com/keygate/keygate/keystore"
)

// TestAction: the action a request needs, from its method, its
// method-override headers in any spelling a backend reads, and its _method
// query parameters.
func TestAction(t *testing.T) {
	s := newTestServer(t, &authztest.Lookup{}, nil)
	for _, c := range []struct {
		method, path string
		headers      [][2]string
		want         string
	}{
		{"GET", "/x", nil, keystore.ActionRead},
		{"HEAD", "/x?a=b", nil, keystore.ActionRead},
		{"OPTIONS", "/x", nil, keystore.ActionRead},
		{"get", "/x", nil, keystore.ActionWrite}, // methods are case-sensitive
		{"", "/x", nil, keystore.ActionWrite},
		{"POST", "/x", [][2]string{{"X-HTTP-Method-Override", "GET"}}, keystore.ActionWrite},
		{"GET", "/x", [][2]string{{"X-HTTP-Method-Override", "DELETE"}}, keystore.ActionWrite},
		{"GET", "/x", [][2]string{{"x_http_method_override", "DELETE"}}, keystore.ActionWrite},
		{"GET", "/x", [][2]string{{"X-Http-Method", "\tpost "}}, keystore.ActionWrite},
		{"GET", "/x", [][2]string{{"X-Method-Override", "MERGE"}}, keystore.ActionWrite},
		{"GET", "/x", [][2]string{{"X-Method-Override", "GET"}, {"X-Method-Override", "PUT"}}, keystore.ActionWrite},
		{"GET", "/x", [][2]string{{"X-HTTP-Method-Override", "head"}}, keystore.ActionRead},
		{"GET", "/x", [][2]string{{"X-HTTP-Method-Overrides", "DELETE"}}, keystore.ActionRead},
		{"GET", "/x?_method=DELETE", nil, keystore.ActionWrite},
		{"GET", "/x?_method", nil, keystore.ActionWrite},
		{"GET", "/x?_METHOD=put", nil, keystore.ActionWrite},
		{"GET", "/x?a&%5fmethod=put", nil, keystore.ActionWrite},
		{"GET", "/x?%5F%6d%65%74%68%6f%64=put", nil, keystore.ActionWrite},
		{"GET", "/x?_method=get&b=1", nil, keystore.ActionRead},
		{"GET", "/x?_method_=put&x_method=put&_metho=put&%5=put", nil, keystore.ActionRead},
		{"GET", "/x/_method=put", nil, keystore.ActionRead}, // in the path, not the query
	} {
		r := &Request{Method: c.method, Path: c.path}
		for _, h := range c.headers {
			s.ReadHeader(r, h[0], h[1])
		}
		if got := action(r); got != c.want {
			t.Errorf("%s %s %q: %s, want %s", c.method, c.path, c.headers, got, c.want)
		}
	}
}
