//go:build unix

package test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/keygate/keygate/internal/storetest"
	"google.golang.org/grpc/codes"
)

// hostilePaths are spellings of requests that reach the Accounts, Users or
// Authentication module (for some HTTP stack between Envoy and the
// backend). Each must be refused: 403 module_forbidden, or 400
// invalid_path when the path cannot be read one way.
var hostilePaths = []struct{ name, path string }{
	// The plain forms.
	{"plain users", "/api/v1/users"},
	{"plain accounts item", "/api/v1/accounts/1"},
	{"plain auth", "/api/v1/auth/login"},
	{"plain api-keys", "/api/v1/api-keys/7"},
	{"trailing slash", "/api/v1/users/"},
	{"query", "/api/v1/users?x=1"},
	// Dot segments.
	{"dotdot from projects", "/api/v1/projects/../users"},
	{"dotdot twice", "/api/v1/projects/42/../../auth/login"},
	{"dotdot back to version", "/api/v1/projects/../../v1/users"},
	{"dot segment", "/api/v1/./users"},
	{"dot then dotdot", "/api/v1/projects/.././users"},
	{"dotdot above root", "/../../api/v1/users"},
	{"dotdot from other root", "/x/../api/v1/accounts"},
	{"dotdot then empty segment", "/api/v1/projects/..//users"},
	// Percent-encoded dots.
	{"encoded dotdot lower", "/api/v1/projects/%2e%2e/users"},
	{"encoded dotdot upper", "/api/v1/projects/%2E%2E/users"},
	{"half encoded dotdot", "/api/v1/projects/.%2e/users"},
	{"other half encoded dotdot", "/api/v1/projects/%2e./users"},
	{"encoded dot", "/api/v1/%2e/users"},
	// Encoded slashes and backslashes.
	{"encoded slash", "/api/v1%2fusers"},
	{"encoded slash upper", "/api/v1%2Fusers"},
	{"encoded slash dotdot", "/api/v1/projects%2f..%2fusers"},
	{"dotdot encoded slash", "/api/v1/projects/..%2fusers"},
	{"encoded backslashes", "/api%5cv1%5cusers"},
	{"dotdot encoded backslash", "/api/v1/projects/..%5cusers"},
	// Double and triple encoding.
	{"double encoded dotdot", "/api/v1/projects/%252e%252e/users"},
	{"double encoded slash", "/api/v1%252fusers"},
	{"double encoded letter", "/api/v1/%2575sers"},
	{"triple encoded dotdot", "/api/v1/projects/%25252e%25252e/users"},
	// Repeated slashes.
	{"leading double slash", "//api/v1/users"},
	{"doubled slashes", "/api//v1//users"},
	{"tripled slash", "/api/v1///users/1"},
	{"leading triple slash", "///api/v1/accounts"},
	{"network-path form", "//evil.example/api/v1/users"},
	// Semicolon parameters.
	{"dotdot with params", "/api/v1/projects/..;/users"},
	{"session param", "/api/v1/users;jsessionid=abc"},
	{"param on version", "/api/v1;x=y/users"},
	{"empty param", "/api/v1/users;/1"},
	{"params everywhere", "/api;/v1;/accounts;"},
	{"param then dotdot", "/api/v1/projects;/../users"},
	// Comma parameters (RFC 3986 names "," with ";").
	{"comma params", "/api/v1/accounts,a=b/123"},
	{"comma params at the end", "/api/v1/users,x"},
	{"escaped comma params", "/api/v1/users%2Cx"},
	{"comma params on dotdot", "/api/v1/projects/..,x/users"},
	{"comma version on auth", "/api/v1/auth,v=2/login"},
	// Case.
	{"upper case", "/API/V1/USERS"},
	{"mixed case", "/Api/V1/Accounts/1"},
	{"upper auth", "/api/v1/AUTH/login"},
	{"mixed api-keys", "/api/v1/Api-Keys"},
	// Unreserved characters percent-encoded (decoded once).
	{"encoded first letter", "/%61pi/v1/users"},
	{"encoded module letter", "/api/v1/%75sers"},
	{"encoded upper letter", "/api/v1/%55SERS"},
	// NUL and control characters, raw and encoded.
	{"raw NUL at end", "/api/v1/users\x00"},
	{"raw NUL then dotdot", "/api/v1/projects\x00/../users"},
	{"encoded NUL segment", "/api/v1/projects/%00/../users"},
	{"encoded NUL extension", "/api/v1/users%00.json"},
	{"raw tab", "/api/v1/users\t"},
	{"raw tab segment", "/api/v1/projects/\t/../users"},
	{"encoded tab", "/api/v1/projects%09/../users"},
	{"raw CR", "/api/v1/pro\rjects/../users"},
	{"encoded CRLF", "/api/v1/projects/%0d%0a/../users"},
	{"raw DEL", "/api/v1/users\x7f"},
	{"raw space", "/api/v1/ users"},
	{"control in query", "/api/v1/users?a=\x01"},
	// Overlong and look-alike UTF-8.
	{"overlong dots", "/api/v1/projects/%c0%ae%c0%ae/users"},
	{"overlong slash", "/api/v1/projects%c0%af..%c0%afusers"},
	{"three-byte overlong slash", "/api/v1/projects%e0%80%af..%e0%80%afusers"},
	{"four-byte overlong dots", "/api/v1/projects/%f0%80%80%ae%f0%80%80%ae/users"},
	{"invalid continuation", "/api/v1/projects/%c0%2e%c0%2e/users"},
	{"fullwidth dots encoded", "/api/v1/projects/%ef%bc%8e%ef%bc%8e/users"},
	{"fullwidth slash raw", "/api/v1/projects／..／users"},
	{"two-dot leader", "/api/v1/projects/‥/users"},
	// Fragments.
	{"fragment after module", "/api/v1/users#/api/v1/projects"},
	{"fragment then dotdot", "/api/v1/accounts/#/../projects"},
	{"empty query and fragment", "/api/v1/users?#"},
	// Request targets that are not origin-form.
	{"absolute form", "http://h/api/v1/users"},
	{"absolute form https", "https://api.example.com/api/v1/accounts"},
	{"absolute form upper scheme", "HTTP://h/api/v1/users"},
	{"relative", "api/v1/users"},
	// Backslashes.
	{"leading backslash", `\api\v1\users`},
	{"backslashes", `/api\v1\users`},
	{"backslash dotdot", `/api/v1/projects\..\users`},
	{"backslash dotdot to accounts", `/api/v1\..\v1\accounts`},
	// Trailing dots and spaces (Windows drops them from names).
	{"trailing dot", "/api/v1/users."},
	{"trailing dot segment", "/api/v1/users./1"},
	{"trailing dots", "/api/v1/accounts..."},
	{"trailing encoded space", "/api/v1/users%20/1"},
	{"three dots", "/api/v1/projects/.../users"},
	{"dotdot encoded space", "/api/v1/projects/..%20/users"},
	{"dotdot with a stream", "/api/v1/x/..::$DATA/users"},
	{"dotdot with an escaped stream", "/api/v1/projects/..%3A$DATA/../users"},
	// Letters some stacks read as ASCII ones.
	{"fullwidth letter", "/api/v1/ｕsers"},
	{"fullwidth letters escaped", "/api/v1/%EF%BD%81ccounts"},
	{"mathematical letters", "/api/v1/𝐚𝐮𝐭𝐡/login"},
	{"combining mark", "/api/v1/u\u0301sers"},
	{"best fit", "/api/v1/acc☺unts"},
	// Encoded delimiters.
	{"encoded semicolon", "/api/v1/projects/..%3b/users"},
	{"encoded question mark", "/api/v1/projects/%3f/../../users"},
	{"encoded hash", "/api/v1/users%23"},
	// A server script's PATH_INFO, which a front controller routes by.
	{"php front controller", "/index.php/api/v1/users"},
	{"php front controller escaped", "/%69ndex.php/api/v1/accounts/1"},
	{"cgi script", "/cgi-bin/app.cgi/api/v1/auth/login"},
	// ASP.NET cookieless values, OData keys.
	{"cookieless session", "/(S(x))/api/v1/users"},
	{"cookieless escaped", "/api/v1/%28S%28x%29%29/users"},
	{"odata key", "/api/v1/users(42)"},
	// The query some frameworks route by.
	{"rest_route", "/api/v1/projects?rest_route=/api/v1/users"},
	{"_url escaped", "/api/v1/projects?_url=%2Fapi%2Fv1%2Faccounts"},
	{"query path", "/?/api/v1/users"},
}

// lookalikePaths resemble restricted modules but are in allowed ones (or
// in none, and the example policy's default is allow): refusing them is a
// bug too.
var lookalikePaths = []struct{ name, path string }{
	{"resource named users", "/api/v1/projects/users"},
	{"administrator", "/api/v1/administrator"},
	{"usersettings", "/api/v1/usersettings"},
	{"accountsettings", "/api/v1/accountsettings"},
	{"authors", "/api/v1/authors"},
	{"api-keyset", "/api/v1/api-keyset"},
	{"redirect in query", "/api/v1/projects?next=/api/v1/users"},
	{"encoded redirect in query", "/api/v1/projects/42?redirect=%2Fapi%2Fv1%2Fusers%2F..%2F"},
	{"fragment", "/api/v1/projects#/api/v1/users"},
	{"nested users", "/api/v1/projects/42/users/7"},
	{"nested accounts", "/api/v1/deployments/9/accounts"},
	{"nested auth", "/api/v1/projects/auth/callback"},
	{"nested full path", "/api/v1/projects/42/api/v1/users"},
	{"other version", "/api/v2/users"},
	{"root users", "/users"},
	{"dots in a name", "/api/v1/projects/..users"},
	{"users.json", "/api/v1/projects/users.json"},
	{"encoded letter in projects", "/api/v1/projects/%75sers"},
	{"dotdot within projects", "/api/v1/projects/a/../b"},
	{"params on projects", "/api/v1/projects;v=2/1"},
	{"list of ids in projects", "/api/v1/projects/1,2"},
	{"closed names in a list in projects", "/api/v1/projects/users,accounts"},
	{"accented resource in projects", "/api/v1/projects/ｕsers/café"},
	{"accented name in no module", "/api/v1/über"},
	{"script as the last segment", "/api/v1/projects/report.php"},
	{"parentheses in projects", "/api/v1/projects/(draft)/1"},
	{"odata key in projects", "/api/v1/projects(42)"},
	{"routing parameter naming projects", "/api/v1/projects?rest_route=/api/v1/projects/2"},
}

// TestPathSpellingsEndToEnd sends hostile spellings of the restricted
// modules through a running server, with a key without scopes and with a
// "*" key: none may be allowed. Look-alikes in allowed modules must be.
func TestPathSpellingsEndToEnd(t *testing.T) {
	if len(hostilePaths) < 60 || len(lookalikePaths) < 15 {
		t.Fatalf("%d hostile spellings and %d look-alikes; the contract wants at least 60 and 15", len(hostilePaths), len(lookalikePaths))
	}
	db := storetest.NewDatabase(t)
	keys := []struct{ name, secret string }{
		{"no scopes", createKey(t, db, "acme", "no scopes").Secret},
		{"scope *", createKey(t, db, "acme", "star", "--scope", "*").Secret},
	}
	srv := startServer(t, db)

	counts := map[codes.Code]int{}
	var table strings.Builder
	for i, k := range keys {
		t.Run(k.name, func(t *testing.T) {
			for _, c := range hostilePaths {
				code, resp := srv.mustCheck(t, keyCheck(k.secret, c.path))
				counts[code]++
				if i == 0 {
					fmt.Fprintf(&table, "\n  %-28s %-52q %v", c.name, c.path, code)
				}
				wantHTTP := map[codes.Code]int32{codes.PermissionDenied: 403, codes.InvalidArgument: 400}[code]
				if wantHTTP == 0 {
					t.Errorf("hostile %s %q: %s; want 403 (code 7) or 400 (code 3)", c.name, c.path, describe(resp))
					continue
				}
				if got := resp.GetDeniedResponse().GetStatus().GetCode(); int32(got) != wantHTTP {
					t.Errorf("hostile %s %q: code %v with HTTP %d, want %d", c.name, c.path, code, got, wantHTTP)
				}
			}
			for _, c := range lookalikePaths {
				if code, resp := srv.mustCheck(t, keyCheck(k.secret, c.path)); code != codes.OK {
					t.Errorf("look-alike %s %q: %s; want allowed (over-blocking)", c.name, c.path, describe(resp))
				}
			}
		})
	}
	t.Logf("hostile spellings (key without scopes):%s", table.String())
	t.Logf("%d hostile spellings × %d keys: %d refused 403, %d refused 400; %d look-alikes allowed per key",
		len(hostilePaths), len(keys), counts[codes.PermissionDenied], counts[codes.InvalidArgument], len(lookalikePaths))

	// The route names the module (context_extensions): restricted modules
	// stay closed whatever the path says, and whatever the key's scopes.
	for _, k := range keys {
		for _, module := range []string{"accounts", "users", "authentication"} {
			for _, path := range []string{"/api/v1/projects/1", "/login", "/"} {
				for _, method := range []string{"GET", "POST"} {
					req := envoyCheck(method, path, map[string]string{"x-api-key": k.secret}, map[string]string{"module": module})
					code, resp := srv.mustCheck(t, req)
					if code != codes.PermissionDenied || errorCode(resp) != "module_forbidden" {
						t.Errorf("key %s, context_extensions module %s, %s %s: %s; want 403 module_forbidden",
							k.name, module, method, path, describe(resp))
					}
				}
			}
		}
	}
	// An allowed module named by the route works with both keys.
	for _, k := range keys {
		req := envoyCheck("GET", "/anything", map[string]string{"x-api-key": k.secret}, map[string]string{"module": "projects"})
		if code, resp := srv.mustCheck(t, req); code != codes.OK || upstreamHeaders(resp)["x-keygate-module"] != "projects" {
			t.Errorf("key %s, context_extensions module projects: %s; want allowed in module projects", k.name, describe(resp))
		}
	}
}

// TestDecisionTableOverGRPC replays the shared decision table (the reading
// classes among it: path-override headers, method overrides both ways,
// _method after ';', ,params) through the real binary over gRPC, as Envoy
// asks: header names in lower case, the route's module as
// context_extensions. The cases about source addresses and failure limits
// have tests of their own.
func TestDecisionTableOverGRPC(t *testing.T) {
	db := storetest.NewDatabase(t)
	w := tableWorld(t, db)
	srv := startServer(t, db)
	for _, c := range w.DecisionTable(t) {
		if c.Source != "" || c.Failures != 0 {
			continue
		}
		t.Run(c.Name, func(t *testing.T) {
			headers := map[string]string{}
			for name, value := range c.Headers {
				headers[strings.ToLower(name)] = value
			}
			var ext map[string]string
			if c.Module != "" {
				ext = map[string]string{"module": c.Module}
			}
			code, resp := srv.mustCheck(t, envoyCheck(c.Method, c.Path, headers, ext))
			switch {
			case c.Want == "ok" && code != codes.OK:
				t.Errorf("%s; want allowed", describe(resp))
			case c.Want != "ok" && errorCode(resp) != c.Want:
				t.Errorf("%s; want %s", describe(resp), c.Want)
			}
		})
	}
}
