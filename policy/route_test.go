package policy

import (
	"errors"
	"net/url"
	"slices"
	"strings"
	"testing"
)

// outcome is what keygate answers for a path with an API key.
type outcome int

const (
	allowed    outcome = iota // the key's scopes decide
	forbidden                 // 403 module_forbidden: Route.Restricted
	badRequest                // 400 invalid_path: Route returns ErrInvalidPath
)

func (o outcome) String() string {
	return [...]string{"allowed", "forbidden (403)", "invalid (400)"}[o]
}

func outcomeOf(r Route, err error) outcome {
	switch {
	case err != nil:
		return badRequest
	case r.Restricted:
		return forbidden
	}
	return allowed
}

// restrictedPaths are spellings of paths in the restricted modules of the
// example policy (accounts, users, authentication). Each must be refused:
// forbidden with the module named, or invalid.
var restrictedPaths = []struct {
	name   string
	path   string
	want   outcome
	module string // RestrictedModule when want is forbidden
}{
	// Plain spellings and case.
	{"plain", "/api/v1/users", forbidden, "users"},
	{"trailing slash", "/api/v1/users/", forbidden, "users"},
	{"sub-resource", "/api/v1/users/42", forbidden, "users"},
	{"upper case", "/API/V1/USERS", forbidden, "users"},
	{"mixed case", "/Api/V1/Users/42", forbidden, "users"},
	{"accounts", "/api/v1/accounts", forbidden, "accounts"},
	{"auth", "/api/v1/auth/login", forbidden, "authentication"},
	{"api-keys", "/api/v1/api-keys", forbidden, "authentication"},
	{"api-keys upper case", "/api/v1/API-KEYS/7", forbidden, "authentication"},
	{"query", "/api/v1/users?x=1", forbidden, "users"},
	{"query with another path", "/api/v1/users/?next=/api/v1/projects", forbidden, "users"},
	{"fragment", "/api/v1/users#frag", forbidden, "users"},
	{"fragment with another path", "/api/v1/users#/../projects", forbidden, "users"},

	// Dot segments.
	{"leading dot", "/./api/v1/users", forbidden, "users"},
	{"inner dot", "/api/./v1/users", forbidden, "users"},
	{"dot before module", "/api/v1/./users", forbidden, "users"},
	{"trailing dot segment", "/api/v1/users/.", forbidden, "users"},
	{"dot-dot from sibling", "/api/v1/projects/../users", forbidden, "users"},
	{"two dot-dots", "/api/v1/projects/42/../../users", forbidden, "users"},
	{"dot-dot across versions", "/api/v2/../v1/users", forbidden, "users"},
	{"dot-dot above root", "/../api/v1/users", forbidden, "users"},
	{"many dot-dots above root", "/../../../../api/v1/users", forbidden, "users"},
	{"dot-dot back into module", "/api/v1/users/x/..", forbidden, "users"},
	{"empty segment then dot-dot", "/api/v1/projects//../users", forbidden, "users"},
	{"empty segment then two dot-dots", "/api/v1/projects/x//../../users", forbidden, "users"},

	// Dot segments read by a router that does not resolve them
	// (Werkzeug/Flask, Express and Rails prefix mounts): the path stays in
	// the module it starts in.
	{"no-dot: out of users", "/api/v1/users/../projects", forbidden, "users"},
	{"no-dot: out of auth", "/api/v1/auth/../projects/1", forbidden, "authentication"},
	{"no-dot: out of api-keys", "/api/v1/api-keys/../deployments", forbidden, "authentication"},
	{"no-dot: out of accounts to the root", "/api/v1/accounts/../../..", forbidden, "accounts"},
	{"no-dot: dot then dot-dot", "/api/v1/users/./../projects", forbidden, "users"},
	{"no-dot: upper case", "/API/V1/Users/../../v1/projects", forbidden, "users"},
	{"no-dot: empty segment", "/api/v1/users//../projects", forbidden, "users"},
	{"no-dot: backslashes", `/api/v1/users\..\projects`, forbidden, "users"},
	{"no-dot: trailing dot-dot", "/api/v1/users/..", forbidden, "users"},
	{"no-dot: escaped module", "/api/v1/%75sers/../projects", forbidden, "users"},
	{"no-dot: params", "/api/v1/users;x/../projects", forbidden, "users"},
	{"no-dot: deeper", "/api/v1/users/42/../../projects/7", forbidden, "users"},

	// Encoded dots and double encoding.
	{"encoded dot-dot", "/api/v1/projects/%2e%2e/users", badRequest, ""},
	{"encoded dot-dot upper", "/api/v1/projects/%2E%2E/users", badRequest, ""},
	{"half-encoded dot-dot", "/api/v1/projects/.%2e/users", badRequest, ""},
	{"encoded dot", "/api/v1/%2e/users", badRequest, ""},
	{"double-encoded dot-dot", "/api/v1/projects/%252e%252e/users", badRequest, ""},
	{"double-encoded dot upper", "/api/v1/projects/%252E./users", badRequest, ""},
	{"escaped percent of escape", "/api/v1/projects/%25%32%65%25%32%65/users", badRequest, ""},

	// Encoded separators.
	{"encoded slash", "/api/v1%2fusers", badRequest, ""},
	{"encoded slashes upper", "/api%2Fv1%2Fusers", badRequest, ""},
	{"dot-dot encoded slash", "/api/v1/projects/..%2fusers", badRequest, ""},
	{"encoded slash dot-dot", "/api/v1/users%2f..", badRequest, ""},
	{"encoded backslash", "/api/v1/projects%5c..%5cusers", badRequest, ""},
	{"double-encoded slash", "/api/v1/%252fusers", badRequest, ""},
	{"double-encoded backslash", "/api%255cv1%255cusers", badRequest, ""},

	// Backslashes.
	{"backslashes", `/api\v1\users`, forbidden, "users"},
	{"backslash dot-dot", `/api/v1/projects\..\users`, forbidden, "users"},
	{"last separator backslash", `/api/v1\users`, forbidden, "users"},
	{"dot-dot backslash", `/api/v1/projects/..\users`, forbidden, "users"},
	{"leading backslash", `\api\v1\users`, badRequest, ""},
	{"backslash dot-dots read literally", `/api/v1/users/x\..\..\..\projects`, forbidden, "users"},

	// Repeated slashes.
	{"doubled slashes", "//api//v1//users", forbidden, "users"},
	{"tripled slash", "/api///v1/users", forbidden, "users"},
	{"doubled before module", "/api/v1//users", forbidden, "users"},
	{"leading slashes", "///api/v1/users", forbidden, "users"},
	{"network-path reference", "//x/api/v1/users", forbidden, "users"},

	// A leading run of separators is an authority to WHATWG URL parsers,
	// however long it is and whichever separators it holds.
	{"three slashes and a host", "///x/api/v1/users", forbidden, "users"},
	{"four slashes and a host", "////x/api/v1/users", forbidden, "users"},
	{"many slashes and a host", "/////////x/api/v1/users/42", forbidden, "users"},
	{"slash backslash slash", `/\/x/api/v1/users`, forbidden, "users"},
	{"slash backslashes", `/\\x/api/v1/users`, forbidden, "users"},
	{"slash backslash", `/\x/api/v1/users`, forbidden, "users"},
	{"slashes backslash", `//\x/api/v1/accounts`, forbidden, "accounts"},
	{"run then backslashed path", `///x\api\v1\users`, forbidden, "users"},
	{"run with userinfo and port", "///u:p@x:80/api/v1/users", forbidden, "users"},
	{"run then dot segments", "///x/api/v1/projects/../users", forbidden, "users"},
	{"run then fragment", "///x/api/v1/auth#y", forbidden, "authentication"},
	{"run then escape", "///x/api/v1/%75sers", forbidden, "users"},

	// Readings that combine every choice: the WHATWG reading ("\" a
	// separator, ";" an ordinary character) with an authority, ...
	{"authority, backslashes, literal params", `//x\api\v1\users\..;\..;\projects`, forbidden, "users"},
	{"run, backslashes, literal params", `///x\api\v1\users\..;\projects;y`, forbidden, "users"},
	{"authority, backslash, literal params, no dots", `/\x/api/v1/users/..;/../projects;z`, forbidden, "users"},
	{"authority, truncated params, no dots", `//x\api\v1\users\..;/projects`, forbidden, "users"},
	{"authority, literal fragment", `//x/api/v1/projects#/../users`, forbidden, "users"},
	{"authority, merge first", `//x/api/v1/projects//../users;y`, forbidden, "users"},

	// ;params.
	{"params", "/api/v1/users;x=1", forbidden, "users"},
	{"params on segments", "/api;x=1/v1/users;y", forbidden, "users"},
	{"params on dot-dot", "/api/v1/projects/..;/users", forbidden, "users"},
	{"params then dot-dot", "/api/v1/projects;/../users", forbidden, "users"},
	{"params hide the rest", "/api/v1/users;/../projects", forbidden, "users"},
	{"params-only segment", "/api/v1/;x/users", forbidden, "users"},
	{"params dot-dot backslash", `/api/v1/projects\..;\users`, forbidden, "users"},
	{"params then backslash dot-dot", `/api/v1/projects;/..\users`, forbidden, "users"},
	{"encoded semicolon", "/api/v1/users%3bx", badRequest, ""},

	// ,params (RFC 3986 section 3.3 names "," with ";").
	{"comma params", "/api/v1/accounts,a=b/123", forbidden, "accounts"},
	{"comma params at the end", "/api/v1/users,x", forbidden, "users"},
	{"comma version", "/api/v1/api-keys,1.1", forbidden, "authentication"},
	{"comma params on the first segment", "/api,v=2/v1/auth/login", forbidden, "authentication"},
	{"escaped comma params", "/api/v1/users%2Cx", forbidden, "users"},
	{"escaped comma params lower case", "/api/v1/accounts%2ca/1", forbidden, "accounts"},
	{"comma params on dot-dot", "/api/v1/projects/..,x/users", forbidden, "users"},
	{"escaped comma params on dot-dot", "/api/v1/projects/..%2C/users", forbidden, "users"},
	{"comma params, semicolon params", "/api/v1/projects/..;a,b/users", forbidden, "users"},
	{"comma params, backslash dot-dot", `/api/v1/projects\..,x\users`, forbidden, "users"},
	{"comma params, three dots", "/api/v1/projects/...,x/users", badRequest, ""},
	{"comma params, dots and escaped space", "/api/v1/projects/..%20%2Cx/users", badRequest, ""},
	{"comma params hide the rest", "/api/v1/users,/../projects", forbidden, "users"},
	{"encoded semicolon on dot-dot", "/api/v1/projects/..%3b/users", badRequest, ""},

	// NUL and control characters.
	{"encoded NUL", "/api/v1/users%00", badRequest, ""},
	{"raw NUL", "/api/v1/users\x00", badRequest, ""},
	{"encoded NUL before dot-dot", "/api/v1/projects%00/../users", badRequest, ""},
	{"raw tab", "/api/v1/us\ters", badRequest, ""},
	{"trailing tab", "/api/v1/users\t", badRequest, ""},
	{"encoded tab", "/api/v1/us%09ers", badRequest, ""},
	{"raw CR LF", "/api/v1/users\r\n", badRequest, ""},
	{"encoded CR LF", "/api/v1/users%0d%0a", badRequest, ""},
	{"encoded DEL", "/api/v1/users%7f", badRequest, ""},
	{"raw DEL", "/api/v1/users\x7f", badRequest, ""},
	{"encoded C1 NEL", "/api/v1/users%c2%85", badRequest, ""},
	{"control character in query", "/api/v1/users?x=\x00", badRequest, ""},
	{"raw space", "/api/v1/users ", badRequest, ""},
	{"encoded trailing space", "/api/v1/users%20", forbidden, "users"},
	{"dot-dot with escaped space", "/api/v1/projects/..%20/users", badRequest, ""},
	{"three dots", "/api/v1/projects/x/.../users", badRequest, ""},
	{"dot with escaped space", "/api/v1/projects/.%20/../users", badRequest, ""},
	// Windows drops a file name's stream before its trailing dots.
	{"dot-dot with a stream", "/api/v1/projects/..::$DATA/users", badRequest, ""},
	{"dot-dot with an escaped stream", "/api/v1/x/..%3a%3a$DATA/users/1", badRequest, ""},
	{"dot with a stream", "/api/v1/users/.:$i30:$INDEX_ALLOCATION/1", badRequest, ""},
	{"dots, space and a stream", "/api/v1/x/..%20.:s/users", badRequest, ""},
	{"escaped space before dots", "/api/v1/x/%20../users", badRequest, ""},

	// Invalid and overlong UTF-8.
	{"overlong dots", "/api/v1/projects/%c0%ae%c0%ae/users", badRequest, ""},
	{"overlong slash", "/api/v1/projects%c0%af..%c0%afusers", badRequest, ""},
	{"3-byte overlong dots", "/api/v1/projects/%e0%80%ae%e0%80%ae/users", badRequest, ""},
	{"3-byte overlong slash", "/api/v1/projects%e0%80%afusers", badRequest, ""},
	{"overlong backslash", "/api/v1/projects%c1%9c..%c1%9cusers", badRequest, ""},
	{"raw overlong dot", "/api/v1/users/\xc0\xae\xc0\xae", badRequest, ""},
	{"encoded surrogate", "/api/v1/users%ed%a0%80", badRequest, ""},
	{"encoded 0xff", "/api/v1/users%ff", badRequest, ""},
	{"truncated sequence", "/api/v1/users%c3", badRequest, ""},
	{"sequence half raw", "/api/v1/users%c3\xa9", badRequest, ""},
	{"above U+10FFFF", "/api/v1/users%f4%90%80%80", badRequest, ""},

	// Malformed escapes.
	{"bad hex", "/api/v1/users%zz", badRequest, ""},
	{"short escape", "/api/v1/users%4", badRequest, ""},
	{"bare percent", "/api/v1/users%", badRequest, ""},
	{"IIS %u escape", "/api/v1/%u0075sers", badRequest, ""},

	// Escapes of unreserved characters are decoded.
	{"encoded letter", "/api/v1/%75sers", forbidden, "users"},
	{"encoded upper-case letter", "/api/v1/%55SERS", forbidden, "users"},
	{"encoded first segment", "/%61pi/v1/users", forbidden, "users"},
	{"encoded last letter", "/api/v1/user%73", forbidden, "users"},
	{"encoded accounts", "/api/v1/%61ccounts", forbidden, "accounts"},
	{"encoded hyphen", "/api/v1/api%2dkeys", forbidden, "authentication"},
	{"encoded with dot-dot", "/api/v1/projects/..;x=1/%75sers", forbidden, "users"},

	// Fragments and encoded delimiters.
	{"fragment read as path", "/api/v1/projects#/../users", forbidden, "users"},
	{"encoded hash", "/api/v1/projects%23/../users", badRequest, ""},
	{"encoded question mark", "/api/v1/users%3f/../../projects", badRequest, ""},

	// Targets that are not origin-form.
	{"absolute-form", "http://x/api/v1/users", badRequest, ""},
	{"absolute-form https with port", "https://evil.example:443/api/v1/users", badRequest, ""},
	{"absolute-form upper-case scheme", "HTTP://x/api/v1/users", badRequest, ""},
	{"authority-form", "x:80", badRequest, ""},
	{"asterisk-form", "*", badRequest, ""},
	{"empty", "", badRequest, ""},
	{"relative", "api/v1/users", badRequest, ""},
	{"query only", "?/api/v1/users", badRequest, ""},

	// Suffixes some backends ignore.
	{"format suffix", "/api/v1/users.json", forbidden, "users"},
	{"trailing dot", "/api/v1/users.", forbidden, "users"},
	{"trailing dots inside", "/api/v1/users../42", forbidden, "users"},
	{"custom method", "/api/v1/users:search", forbidden, "users"},
	{"encoded custom method", "/api/v1/users%3Asearch", forbidden, "users"},
	{"format suffix auth", "/api/v1/auth.php", forbidden, "authentication"},

	// Suffixes on any segment: Windows streams, format suffixes, custom
	// methods, trailing dots and escaped spaces.
	{"stream on a middle segment", "/api/v1/users::$INDEX_ALLOCATION/42", forbidden, "users"},
	{"named stream on a middle segment", "/api/v1/users:$i30:$INDEX_ALLOCATION/42", forbidden, "users"},
	{"data stream on a middle segment", "/api/v1/users::$DATA/x", forbidden, "users"},
	{"escaped stream on a middle segment", "/api/v1/users%3A%3A$DATA/x", forbidden, "users"},
	{"stream on the first segment", "/api::$INDEX_ALLOCATION/v1/users", forbidden, "users"},
	{"stream on two segments", "/api/v1::$INDEX_ALLOCATION/auth::$INDEX_ALLOCATION/login", forbidden, "authentication"},
	{"stream on the last segment", "/api/v1/accounts::$DATA", forbidden, "accounts"},
	{"format suffix on a middle segment", "/api/v1/users.json/42", forbidden, "users"},
	{"custom method on a middle segment", "/api/v1/users:batchGet/x", forbidden, "users"},
	{"trailing escaped space on a middle segment", "/api/v1/users%20/42", forbidden, "users"},
	{"trailing dots and spaces", "/api/v1/users.%20./42", forbidden, "users"},
	{"stream then dot-dot", "/api/v1/users::$INDEX_ALLOCATION/../projects", forbidden, "users"},

	// Non-ASCII letters that case mapping turns into ASCII.
	{"long s encoded", "/api/v1/u%C5%BFers", forbidden, "users"},
	{"long s raw", "/api/v1/uſers", forbidden, "users"},
	{"dotless i", "/apı/v1/users", forbidden, "users"},
	{"dotted capital I", "/apİ/v1/users", forbidden, "users"},
	{"Kelvin sign", "/api/v1/api-\u212Aeys", forbidden, "authentication"},
	// Compatibility forms (NFKC, NFKD) and Windows best fit read letters
	// as ASCII ones.
	{"fullwidth u", "/api/v1/ｕsers", forbidden, "users"},
	{"fullwidth users escaped", "/api/v1/%EF%BD%95%EF%BD%93%EF%BD%85%EF%BD%92%EF%BD%93", forbidden, "users"},
	{"mathematical bold letters", "/api/v1/𝐮𝐬𝐞𝐫𝐬/1", forbidden, "users"},
	{"letter with a macron", "/api/v1/ūsers", forbidden, "users"},
	{"combining diaeresis", "/api/v1/u\u0308sers", forbidden, "users"},
	{"square AU", "/api/v1/\u3373th/login", forbidden, "authentication"},
	{"circled letters", "/api/v1/ⓐccounts", forbidden, "accounts"},
	{"ligature in a closed path", "/api/v1/\uFB00oo/../users", forbidden, "users"},
	{"fullwidth on the open side of a dot segment", "/api/v1/ｐrojects/../users", forbidden, "users"},
	{"best fit of a symbol", "/api/v1/acc☺unts/1", forbidden, "accounts"},
	{"best fit of a Greek letter", "/api/v1/αuth/token", forbidden, "authentication"},
	{"best fit of a stroke letter, escaped", "/api/v1/acc%C3%B8unts", forbidden, "accounts"},
	{"folded after a suffix cut", "/api/v1/ｕsers.json", forbidden, "users"},

	// Unicode look-alikes of delimiters and invisible characters.
	{"fullwidth dots", "/api/v1/projects/%ef%bc%8e%ef%bc%8e/users", badRequest, ""},
	{"fullwidth solidus", "/api/v1/projects%ef%bc%8f..%ef%bc%8fusers", badRequest, ""},
	{"two dot leader raw", "/api/v1/projects/‥/users", badRequest, ""},
	{"division slash", "/api/v1/projects%e2%88%95..%e2%88%95users", badRequest, ""},
	{"zero-width space", "/api/v1/users%e2%80%8b", badRequest, ""},
	{"soft hyphen", "/api/v1/us%c2%aders", badRequest, ""},
	{"right-to-left override", "/api/v1/users%e2%80%ae", badRequest, ""},
	{"no-break space", "/api/v1/users%c2%a0", badRequest, ""},
	// Windows best fit turns these into "\" (code pages 932, 949, 1361),
	// "%" or ":", and NFKC turns the last ones into ":".
	{"yen sign as backslash", "/api/v1/projects¥..¥users", badRequest, ""},
	{"yen sign escaped", "/api/v1/projects%C2%A5..%C2%A5users", badRequest, ""},
	{"won sign as backslash", "/api/v1/projects₩..₩users", badRequest, ""},
	{"won sign escaped", "/api/v1/projects%E2%82%A9..%E2%82%A9users", badRequest, ""},
	{"won sign before module", "/api/v1₩users", badRequest, ""},
	{"arabic percent sign", "/api/v1/%D9%AA75sers", badRequest, ""},
	{"fullwidth colon stream", "/api/v1/users：：$DATA", badRequest, ""},
	{"ratio colon verb", "/api/v1/users∶search", badRequest, ""},
	{"armenian full stop colon", "/api/v1/users%D6%89%24DATA", badRequest, ""},
	{"small colon", "/api/v1/users%EF%B9%95search", badRequest, ""},

	// Size limits.
	{"too long", "/api/v1/users/" + strings.Repeat("x", MaxPathLength), badRequest, ""},
	{"too many segments", strings.Repeat("/a", MaxSegments) + strings.Repeat("/..", MaxSegments) + "/api/v1/users", badRequest, ""},

	// The PATH_INFO of a server script, which a front controller routes by.
	{"php front controller", "/index.php/api/v1/users", forbidden, "users"},
	{"php front controller escaped", "/%69ndex.php/api/v1/users/1", forbidden, "users"},
	{"php front controller upper case", "/INDEX.PHP/api/v1/accounts/7", forbidden, "accounts"},
	{"php front controller trailing dot", "/index.php./api/v1/users", forbidden, "users"},
	{"php front controller escaped extension", "/index.%70hp/api/v1/users", forbidden, "users"},
	{"php front controller in a directory", "/app/public/index.php/api/v1/users", forbidden, "users"},
	{"php front controller params", "/index.php;x/api/v1/users", forbidden, "users"},
	{"cgi script", "/cgi-bin/app.cgi/api/v1/users", forbidden, "users"},
	{"asp.net handler", "/api.ashx/api/v1/accounts", forbidden, "accounts"},
	{"coldfusion front controller", "/index.cfm/api/v1/users", forbidden, "users"},
	{"wsgi script", "/app.wsgi/api/v1/users", forbidden, "users"},
	{"php handler of another extension", "/index.pht/api/v1/users", forbidden, "users"},
	{"php among several extensions", "/index.php.x/api/v1/users", forbidden, "users"},
	{"php front controller under an open module", "/api/v1/projects/index.php/api/v1/users", forbidden, "users"},

	// ASP.NET cookieless values, which System.Web removes before routing.
	{"cookieless session", "/(S(x))/api/v1/users", badRequest, ""},
	{"cookieless in the path", "/api/v1/(S(x))/users/1", badRequest, ""},
	{"cookieless several", "/api/v1/(A(1)F(2))/accounts/7", badRequest, ""},
	{"cookieless escaped", "/api/v1/%28S%28x%29%29/users", badRequest, ""},
	{"cookieless lower case", "/api/v1/(s(x))/users", badRequest, ""},
	{"cookieless in a segment", "/api/v1/users(X(1))", badRequest, ""},

	// OData keys: users(42) is the entity set users.
	{"odata key", "/api/v1/users(42)", forbidden, "users"},
	{"odata key escaped", "/api/v1/users%2842%29", forbidden, "users"},
	{"odata key string", "/api/v1/accounts('a')/keys", forbidden, "accounts"},

	// Several tricks at once.
	{"everything", `//api\v1/./users;x?y#z`, forbidden, "users"},
	{"case, dots, params, escapes", `/API/V1/Projects/..;/%55sers/`, forbidden, "users"},
}

// allowedPaths look like restricted paths but are not: over-blocking is a
// bug too. Each must be allowed, in the module named.
var allowedPaths = []struct {
	name   string
	path   string
	module string
}{
	{"longer segment", "/api/v1/administrator", ""},
	{"script as the last segment", "/api/v1/projects/report.php", "projects"},
	{"script-like segment", "/api/v1/projects/v1.phpx/users", "projects"},
	{"parentheses", "/api/v1/projects/(draft)", "projects"},
	{"odata key of an open module", "/api/v1/projects(42)", "projects"},
	{"parenthesis, letter, no parenthesis", "/api/v1/projects/(S)x(", "projects"},
	{"users prefix of segment", "/api/v1/usersettings", ""},
	{"shorter segment", "/api/v1/user", ""},
	{"users with suffix word", "/api/v1/users-export", ""},
	{"accounts prefix of segment", "/api/v1/accountsx", ""},
	{"auth prefix of segment", "/api/v1/authentication", ""},
	{"authorize", "/api/v1/authorize", ""},
	{"api-keys prefix of segment", "/api/v1/api-keysmith", ""},
	{"other version", "/api/v2/users", ""},
	{"no version", "/api/users", ""},
	{"no api", "/v1/users", ""},
	{"bare users", "/users", ""},
	{"root", "/", ""},
	{"health", "/healthz", ""},
	{"projects", "/api/v1/projects", "projects"},
	{"projects upper case", "/API/V1/Projects/42", "projects"},
	{"users inside projects", "/api/v1/projects/users", "projects"},
	{"users under a project", "/api/v1/projects/42/users", "projects"},
	{"user under a project", "/api/v1/projects/42/users/7", "projects"},
	{"auth inside projects", "/api/v1/projects/auth", "projects"},
	{"format suffix inside projects", "/api/v1/projects/users.json", "projects"},
	{"custom method inside projects", "/api/v1/projects/42:archive", "projects"},
	{"params inside projects", "/api/v1/projects/a;b/users", "projects"},
	{"session params on module", "/api/v1/projects;jsessionid=1", "projects"},
	{"path in query", "/api/v1/projects?next=/api/v1/users", "projects"},
	{"dot-dots in query", "/api/v1/projects?r=../../users", "projects"},
	{"encoded slash in query", "/api/v1/projects?r=..%2f..%2fusers", "projects"},
	{"invalid escape in query", "/api/v1/projects?q=%zz", "projects"},
	{"path in fragment", "/api/v1/projects#/api/v1/users", "projects"},
	{"dots then letters", "/api/v1/projects/..users", "projects"},
	{"dot-dot within projects", "/api/v1/projects/x/../42", "projects"},
	{"dot-dot out of a users-like name", "/api/v1/users-old/../projects", "projects"},
	{"dot-dot from a users segment in projects", "/api/v1/projects/users/../42", "projects"},
	{"dot-dot out of a users resource", "/api/v1/projects/users/..", "projects"},
	{"three slashes", "///api/v1/projects", "projects"},
	{"stream inside projects", "/api/v1/projects/users::$DATA", "projects"},
	{"format suffix on a users-like name", "/api/v1/usersettings.json", ""},
	{"format suffix on a users-like prefix", "/api/v1/users-export.csv", ""},
	{"colon inside a users-like name", "/api/v1/usersx:y/z", ""},
	{"dotted resource in projects", "/api/v1/projects/users.v2/accounts", "projects"},
	{"yen-like currency sign", "/api/v1/projects/%C2%A4", "projects"},
	{"doubled slash within projects", "/api/v1/projects//42", "projects"},
	{"dot within projects", "/api/v1/projects/./42", "projects"},
	{"leading double slash", "//api/v1/projects", "projects"},
	{"deployments", "/api/v1/deployments/7/logs", "deployments"},
	{"escaped UTF-8", "/api/v1/projects/caf%C3%A9", "projects"},
	{"raw UTF-8", "/api/v1/projects/café", "projects"},
	{"dotless i in a project name", "/api/v1/projects/kapı", "projects"},
	{"escaped space", "/api/v1/projects/my%20project", "projects"},
	{"dot file with a stream", "/api/v1/projects/.env:backup", "projects"},
	{"dots inside a name with a stream", "/api/v1/projects/..x::$DATA", "projects"},
	{"escaped tilde", "/api/v1/projects/%7Eme", "projects"},
	{"sub-delims and colon", "/api/v1/projects/a!$&'()*+,=:@b", "projects"},
	{"list of ids in projects", "/api/v1/projects/a,b", "projects"},
	{"list of ids then more", "/api/v1/projects/1,2,3/tasks", "projects"},
	{"closed module names in a list", "/api/v1/projects/users,accounts", "projects"},
	{"escaped comma in projects", "/api/v1/projects/a%2Cusers", "projects"},
	{"comma params on a users-like name", "/api/v1/usersettings,x", ""},
	{"comma after a users-like prefix", "/api/v1/users-export,csv", ""},
	// Fullwidth letters are other code points, not "users"; keygate
	// does not apply compatibility normalization (see the package doc).
	{"fullwidth letters in projects", "/api/v1/ｐｒｏｊｅｃｔｓ/1", "projects"},
	{"a resource spelt like a module in fullwidth", "/api/v1/projects/ｕｓｅｒｓ", "projects"},
	{"diacritics in no module", "/api/v1/über", ""},
}

func TestRouteRestricted(t *testing.T) {
	if len(restrictedPaths) < 70 {
		t.Fatalf("only %d restricted spellings; keep at least 70", len(restrictedPaths))
	}
	p := Example()
	for _, tt := range restrictedPaths {
		t.Run(tt.name, func(t *testing.T) {
			r, err := p.Route(tt.path)
			if got := outcomeOf(r, err); got != tt.want {
				t.Fatalf("Route(%q) = %+v, %v: %v, want %v", tt.path, r, err, got, tt.want)
			}
			if err != nil {
				checkPathError(t, err)
				return
			}
			if r.RestrictedModule != tt.module {
				t.Errorf("Route(%q).RestrictedModule = %q, want %q", tt.path, r.RestrictedModule, tt.module)
			}
		})
	}
}

func TestRouteAllowed(t *testing.T) {
	p := Example()
	for _, tt := range allowedPaths {
		t.Run(tt.name, func(t *testing.T) {
			r, err := p.Route(tt.path)
			if want := (Route{Module: tt.module}); err != nil || !sameRoute(r, want) {
				t.Errorf("Route(%q) = %+v, %v; want %+v, nil", tt.path, r, err, want)
			}
		})
	}
}

// sameRoute reports whether got is want. A want without Modules and
// without RestrictedModule stands for one with Modules [want.Module].
func sameRoute(got, want Route) bool {
	if want.Modules == nil && want.RestrictedModule == "" {
		want.Modules = []string{want.Module}
	}
	return got.Module == want.Module && got.Restricted == want.Restricted &&
		got.RestrictedModule == want.RestrictedModule && slices.Equal(got.Modules, want.Modules) &&
		(got.Modules == nil) == (want.Modules == nil)
}

// checkPathError checks the error contract of Route and Canonicalize.
func checkPathError(t *testing.T, err error) {
	t.Helper()
	if !errors.Is(err, ErrInvalidPath) {
		t.Errorf("error %v does not wrap ErrInvalidPath", err)
	}
	var pe *PathError
	if !errors.As(err, &pe) {
		t.Errorf("error %v is not a *PathError", err)
	}
	msg := err.Error()
	if !strings.HasPrefix(msg, "invalid path: ") || len(msg) > 100 {
		t.Errorf("error text %q: want a short text starting with %q", msg, "invalid path: ")
	}
	for _, c := range msg {
		if c < 0x20 || c >= 0x7f {
			t.Errorf("error text %q holds %U; want printable ASCII only", msg, c)
		}
	}
}

// A policy with nested modules, a carve-out and default deny.
const nestedYAML = `
default: deny
modules:
  projects: {paths: [/api/v1/projects]}
  admin:    {paths: [/api/v1/projects/admin], api_keys: deny}
  users:    {paths: [/api/v1/users], api_keys: deny}
  public:   {paths: [/api/v1/users/public]}
`

func mustParse(tb testing.TB, yaml string) *Policy {
	tb.Helper()
	p, err := Parse("test.yaml", []byte(yaml))
	if err != nil {
		tb.Fatalf("Parse: %v", err)
	}
	return p
}

func TestRouteNested(t *testing.T) {
	p := mustParse(t, nestedYAML)
	tests := []struct {
		name string
		path string
		want Route
	}{
		{"allowed module", "/api/v1/projects/42", Route{Module: "projects"}},
		{"allowed module, trailing slash", "/api/v1/projects/", Route{Module: "projects"}},
		{"denied module inside allowed", "/api/v1/projects/admin", Route{Module: "admin", Restricted: true, RestrictedModule: "admin"}},
		{"denied module inside allowed, case", "/api/v1/projects/ADMIN/x", Route{Module: "admin", Restricted: true, RestrictedModule: "admin"}},
		{"denied module, escaped", "/api/v1/projects/%61dmin", Route{Module: "admin", Restricted: true, RestrictedModule: "admin"}},
		{"admin-like name", "/api/v1/projects/administrator", Route{Module: "projects"}},
		{"carve-out", "/api/v1/users/public", Route{Module: "public"}},
		{"carve-out sub-path", "/api/v1/users/public/x", Route{Module: "public"}},
		// A stack that does not decode, or does not merge slashes, or
		// keeps ;params, reaches users, not public.
		{"carve-out escaped", "/api/v1/users/%70ublic", Route{Module: "public", Restricted: true, RestrictedModule: "users"}},
		{"carve-out after empty segment", "/api/v1/users//public", Route{Module: "public", Restricted: true, RestrictedModule: "users"}},
		{"carve-out with params", "/api/v1/users/public;x", Route{Module: "public", Restricted: true, RestrictedModule: "users"}},
		{"out of carve-out", "/api/v1/users/public/../42", Route{Module: "users", Restricted: true, RestrictedModule: "users"}},
		// Default deny: readings that land in no module count.
		{"no module", "/api/v1/other", Route{Restricted: true}},
		{"root", "/", Route{Restricted: true}},
		{"escaped module segment", "/api/v1/%70rojects", Route{Module: "projects", Restricted: true}},
		{"params on module segment", "/api/v1/projects;v=1", Route{Module: "projects", Restricted: true}},
		{"params below module", "/api/v1/projects/42;v=1", Route{Module: "projects"}},
		{"escape below module", "/api/v1/projects/%34%32", Route{Module: "projects"}},
		{"leading empty segment", "//api/v1/projects", Route{Module: "projects", Restricted: true}},
		// Heuristic readings count only when they land in a denied module.
		// A suffix reading puts the path in an open module: it belongs there.
		{"format suffix on allowed module", "/api/v1/projects.json", Route{Module: "projects"}},
		{"custom method on allowed module", "/api/v1/projects:search", Route{Module: "projects"}},
		{"suffix on a name no module has", "/api/v1/projectsx.json", Route{Restricted: true}},
		// A no-dot reading lands in no module.
		{"dot-dot out of the module", "/api/v1/x/../projects/1", Route{Module: "projects", Restricted: true}},
		{"dot-dot into no module", "/api/v1/projects/../x", Route{Restricted: true, Modules: []string{"", "projects"}}},
		{"dot-dot within the module", "/api/v1/projects/x/../1", Route{Module: "projects"}},
		{"authority into no module", "///x/api/v1/projects", Route{Restricted: true, Modules: []string{"", "projects"}}},
		{"format suffix below module", "/api/v1/projects/x.json", Route{Module: "projects"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := p.Route(tt.path)
			if err != nil || !sameRoute(r, tt.want) {
				t.Errorf("Route(%q) = %+v, %v; want %+v, nil", tt.path, r, err, tt.want)
			}
		})
	}
}

// TestRouteDottedPolicy checks readings on a policy whose paths end with a
// dotted segment.
func TestRouteDottedPolicy(t *testing.T) {
	p := mustParse(t, "modules:\n  assets: {paths: [/static/app.js, /rpc/users:list], api_keys: deny}\n")
	tests := []struct {
		path string
		want Route
	}{
		{"/static/app.js", Route{Module: "assets", Restricted: true, RestrictedModule: "assets"}},
		{"/STATIC/APP.JS", Route{Module: "assets", Restricted: true, RestrictedModule: "assets"}},
		{"/static/app.js/x", Route{Module: "assets", Restricted: true, RestrictedModule: "assets"}},
		{"/static/app.j%C5%BF", Route{Restricted: true, RestrictedModule: "assets"}},
		{"/rpc/users:li%C5%BFt", Route{Restricted: true, RestrictedModule: "assets"}},
		{"/rpc/users%3alist", Route{Module: "assets", Restricted: true, RestrictedModule: "assets"}},
		{"/static/app.js.map", Route{}},
		{"/static/app", Route{}},
		{"/rpc/users:get", Route{}},
	}
	for _, tt := range tests {
		if r, err := p.Route(tt.path); err != nil || !sameRoute(r, tt.want) {
			t.Errorf("Route(%q) = %+v, %v; want %+v, nil", tt.path, r, err, tt.want)
		}
	}
}

func TestRouteZeroPolicy(t *testing.T) {
	for _, p := range []*Policy{nil, {}, {Default: AccessAllow}} {
		r, err := p.Route("/api/v1/projects")
		if err != nil || !sameRoute(r, Route{Restricted: true}) {
			t.Errorf("%#v.Route = %+v, %v; want restricted (a Policy not made by Parse fails closed)", p, r, err)
		}
		if _, err := p.Route("/a%2fb"); !errors.Is(err, ErrInvalidPath) {
			t.Errorf("%#v.Route(invalid) error = %v, want ErrInvalidPath", p, err)
		}
	}
}

// TestFastPathAgrees checks that the fast path answers as the full
// computation of readings does, wherever it answers.
func TestFastPathAgrees(t *testing.T) {
	for _, p := range []*Policy{Example(), mustParse(t, nestedYAML)} {
		for _, path := range testPaths() {
			checkFastPath(t, p, path)
		}
	}
}

func checkFastPath(t *testing.T, p *Policy, path string) {
	t.Helper()
	fast, ok := p.ix.fast(path)
	if !ok {
		return
	}
	slow, err := p.ix.slow(path, false)
	if err != nil || !sameRoute(fast, slow) {
		t.Errorf("path %q: fast path gives %+v, full computation %+v, %v", path, fast, slow, err)
	}
}

// testPaths returns every path of the tables in this file.
func testPaths() []string {
	var paths []string
	for _, tt := range restrictedPaths {
		paths = append(paths, tt.path)
	}
	for _, tt := range allowedPaths {
		paths = append(paths, tt.path)
	}
	return append(paths, "/api/v1/projects/42/tasks", "/api/v1/users/public/", "/a/b/c/d/e/f/g/h/i/j/k/l/m/n/o/p/q/r/s/t/u/v/w/x/y/z/1/2/3/4/5/6/7/8/9/0/a/b/c/d")
}

func TestCanonicalize(t *testing.T) {
	tests := []struct {
		raw, want string
	}{
		{"/", "/"},
		{"/api/v1/users", "/api/v1/users"},
		{"/API/V1/Users/", "/api/v1/users"},
		{"/api/v1/users?x=1#y", "/api/v1/users"},
		{"/api/v1/users#y?x", "/api/v1/users"},
		{"/api;x=1/v1/users;y", "/api/v1/users"},
		{`/api\v1\users`, "/api/v1/users"},
		{"//api///v1//users//", "/api/v1/users"},
		{"/./api/./v1/../v1/users/.", "/api/v1/users"},
		{"/../../a", "/a"},
		{"/a/b/..", "/a"},
		{"/a/..", "/"},
		{"/..", "/"},
		{"/.", "/"},
		{"/;x", "/"},
		{"/?", "/"},
		{"/#", "/"},
		// Envoy's order: dot segments first, then repeated slashes.
		{"/api/v1/projects//../users", "/api/v1/projects/users"},
		{"/a/..;x/b", "/b"},
		{"/a/.;x/b", "/a/b"},
		// Escapes of characters allowed in a path are decoded.
		{"/%41%62%7e%2D%5F", "/ab~-_"},
		{"/%21%24%26%27%28%29%2a%2B%2c%3d%3A%40", "/!$&'()*+,=:@"},
		// Escapes of other ASCII characters stay, with lower-case hex.
		{"/a%20b%22%3C%3E%5B%5D%5E%60%7B%7C%7D", "/a%20b%22%3c%3e%5b%5d%5e%60%7b%7c%7d"},
		// Escaped UTF-8 is decoded; raw UTF-8 stays; neither is lower-cased.
		{"/caf%C3%A9/%C3%89/É", "/café/É/É"},
		{"/a.b/..c/c..", "/a.b/..c/c.."},
	}
	for _, tt := range tests {
		got, err := Canonicalize(tt.raw)
		if err != nil || got != tt.want {
			t.Errorf("Canonicalize(%q) = %q, %v; want %q", tt.raw, got, err, tt.want)
		}
	}
	for _, tt := range restrictedPaths {
		if tt.want != badRequest {
			continue
		}
		if got, err := Canonicalize(tt.path); err == nil {
			t.Errorf("Canonicalize(%q) = %q, want ErrInvalidPath", tt.path, got)
		} else {
			checkPathError(t, err)
		}
	}
}

func TestPathErrorText(t *testing.T) {
	tests := []struct {
		raw, want string
	}{
		{"", "invalid path: empty path"},
		{"*", "invalid path: asterisk-form request target"},
		{"http://x/", "invalid path: absolute-form request target (scheme://host/...)"},
		{"x", `invalid path: does not start with "/" at byte 0`},
		{"/a%2fb", `invalid path: encoded "/" (%2F) at byte 2`},
		{"/a%252e", `invalid path: encoded "%" (%25, double encoding) at byte 2`},
		{"/a%zz", "invalid path: malformed percent-escape at byte 2"},
		{"/ab\x00", "invalid path: control character at byte 3"},
		{"/ab%e2%80%8b", "invalid path: encoded invisible Unicode format character at byte 3"},
		{"/ab\xff", "invalid path: invalid UTF-8 at byte 3"},
		{"/a|b", "invalid path: character not allowed in a request target at byte 2"},
		{"/" + strings.Repeat("a", MaxPathLength), "invalid path: longer than 8192 bytes"},
	}
	for _, tt := range tests {
		_, err := Canonicalize(tt.raw)
		if err == nil || err.Error() != tt.want {
			t.Errorf("Canonicalize(%q) error = %v, want %s", tt.raw, err, tt.want)
		}
	}
}

// ExamplePolicy_Route and ExampleCanonicalize are in example_test.go.

var benchPaths = []struct{ name, path string }{
	{"plain", "/api/v1/projects/42/tasks?page=2"},
	{"plain-restricted", "/api/v1/users/42"},
	{"escaped", "/api/v1/projects/caf%C3%A9/tasks.json"},
	{"hostile", `//api\v1/projects/x//..;y/%2E%2e/../%75sers;z/42#/../x`},
	{"hostile-valid", `//api\v1/projects/x//..;y/./../%75sers;z/42.json#/../x`},
	{"long", "/api/v1/projects/" + strings.Repeat("abcdefgh/", 800)},
	{"long-hostile", "//api/v1/projects;x/" + strings.Repeat(`a\b;c/./`, 31) + "#/..?q"},
	{"worst", worstPath()},
	{"worst-readings", worstReadingsPath()},
}

// worstReadingsPath is a valid path for which Route computes every
// reading of forEachReading that can differ: about 8 KiB and MaxSegments
// separators, with a leading "//", "\", ";", ",", "#", dot segments after empty
// ones, and, in the segments every walk matches, an empty segment, an
// escape, suffixes and a foldable letter; no reading lands in a denied
// module (which would end the work early).
func worstReadingsPath() string {
	return repeatedPath("//x/api//v1/projects/ſ%41.x:y,z", `/`+strings.Repeat("%41", 8)+`\b,;`+strings.Repeat("c", 240)+`.d:e//..`, "#/.x")
}

// worstPath is a valid path for which the first version of Route computed
// every reading: MaxSegments separators with "\", ";", "#", "%", ".", a
// "," (since the ",params" choice),
// leading "//" and "//.." everywhere, and no reading that lands in a denied
// module (which would end the work early).
func worstPath() string {
	return repeatedPath("//x/api/v1/projects", `/`+strings.Repeat("%41", 8)+`\b,;`+strings.Repeat("c", 60)+`//..`, "#/.x")
}

// repeatedPath returns head, then seg as many times as MaxPathLength and
// MaxSegments allow, then tail.
func repeatedPath(head, seg, tail string) string {
	seps := func(s string) int { return strings.Count(s, "/") + strings.Count(s, `\`) }
	var b strings.Builder
	b.WriteString(head)
	for b.Len()+len(seg)+len(tail) <= MaxPathLength && seps(b.String())+seps(seg)+seps(tail) <= MaxSegments {
		b.WriteString(seg)
	}
	b.WriteString(tail)
	return b.String()
}

func BenchmarkRoute(b *testing.B) {
	p := Example()
	for _, bp := range benchPaths {
		b.Run(bp.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_, _ = p.Route(bp.path)
			}
		})
	}
}

func BenchmarkCanonicalize(b *testing.B) {
	for _, bp := range benchPaths {
		b.Run(bp.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_, _ = Canonicalize(bp.path)
			}
		})
	}
}

func TestDelimiterLookalikes(t *testing.T) {
	for i, rg := range delimiterLookalikes {
		if rg[0] > rg[1] || i > 0 && rg[0] <= delimiterLookalikes[i-1][1] {
			t.Fatalf("delimiterLookalikes[%d] = %U..%U: not sorted or overlapping", i, rg[0], rg[1])
		}
		for _, r := range []rune{rg[0], rg[1]} {
			raw := "/a" + string(r) + "b"
			enc := "/a" + url.PathEscape(string(r)) + "b"
			for _, path := range []string{raw, enc} {
				if _, err := Canonicalize(path); !errors.Is(err, ErrInvalidPath) {
					t.Errorf("Canonicalize(%q) error = %v, want ErrInvalidPath (%U)", path, err, r)
				}
			}
		}
	}
	for _, r := range []rune{0x2023, 0x2027, 0xff0d, 0xff10, 0xfe53, 0xa4, 0xa6, 0x20a8, 0x20aa, 0x2235, 0x2237, 'é', 'ı', 'ｕ'} {
		if _, err := Canonicalize("/a" + string(r)); err != nil {
			t.Errorf("Canonicalize(%q) error = %v, want none (%U)", "/a"+string(r), err, r)
		}
	}
}

func TestRouteConcurrent(t *testing.T) {
	p := Example()
	paths := testPaths()
	done := make(chan struct{})
	for range 4 {
		go func() {
			defer func() { done <- struct{}{} }()
			for _, path := range paths {
				_, _ = p.Route(path)
				_, _ = p.Module("users")
			}
		}()
	}
	for range 4 {
		<-done
	}
}

func TestPathOfURL(t *testing.T) {
	for in, want := range map[string]string{
		"http://h/a?b":    "/a?b",
		"HTTPS://h:1/a":   "/a",
		"https://u@h":     "/",
		"http://h?x=/a":   "/?x=/a",
		"http://h#/a":     "/#/a",
		`http://h\a`:      `\a`,
		"h+x.y-z://x/y":   "/y",
		"http:///a":       "/a",
		"1http://h/a":     "",
		"/x?u=http://h/a": "",
		"":                "",
		"http:/a":         "",
		"mailto:x@h":      "",
	} {
		got, ok := PathOfURL(in)
		if got != want || ok != (want != "") {
			t.Errorf("PathOfURL(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
}

// TestRouteEvery: RouteEvery reads on past a reading in a closed module,
// where Route stops: every closed module and every open one some reading
// lands in.
func TestRouteEvery(t *testing.T) {
	p, err := Parse("every.yaml", []byte(`modules:
  users: { paths: [/api/v1/users], api_keys: deny }
  accounts: { paths: [/api/v1/accounts], api_keys: deny }
  deployments: { paths: [/api/v1/deployments] }
`))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		path           string
		closed, opened []string
	}{
		{"/api/v1/deployments/../users/1", []string{"users"}, []string{"deployments"}},
		{"/api/v1/accounts/../users/1", []string{"users", "accounts"}, nil},
		{"/api/v1/users/1", []string{"users"}, nil},
		{"/api/v1/deployments/1", nil, []string{"deployments"}},
		{"/api/v1/users/1.json", []string{"users"}, nil}, // not the fast path: the same Route
	} {
		r, err := p.RouteEvery(c.path)
		if err != nil {
			t.Fatalf("%s: %v", c.path, err)
		}
		var opened []string
		for _, m := range r.Modules {
			if m != "" && !slices.Contains(r.Closed, m) { // Module comes first, closed or not
				opened = append(opened, m)
			}
		}
		if !slices.Equal(r.Closed, c.closed) || !slices.Equal(opened, c.opened) || r.Restricted != (c.closed != nil) {
			t.Errorf("RouteEvery(%q) = %+v; want closed %v, open %v", c.path, r, c.closed, c.opened)
		}
		if route, _ := p.Route(c.path); route.RestrictedModule != r.RestrictedModule || route.Module != r.Module {
			t.Errorf("%s: Route %+v and RouteEvery %+v disagree", c.path, route, r)
		}
		if r.Restricted && (len(r.Modules) == 0 || r.Modules[0] != r.Module) {
			t.Errorf("RouteEvery(%q).Modules = %q, want Module %q first", c.path, r.Modules, r.Module)
		}
	}
	// Under default: deny a reading in no module is "" in Closed, on the
	// fast path and off it.
	strict, err := Parse("strict.yaml", []byte("default: deny\nmodules:\n  users: { paths: [/api/v1/users], api_keys: deny }\n"))
	if err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string][]string{
		"/other":                    {""},
		"/api/v1/users/../../other": {"users", ""},
		"/api/v1/users/1":           {"users"},
	} {
		if r, err := strict.RouteEvery(path); err != nil || !slices.Equal(r.Closed, want) {
			t.Errorf("default deny: RouteEvery(%q).Closed = %q, %v; want %q", path, r.Closed, err, want)
		}
	}
}
