// Package policy owns keygate's policy file and the reading of request
// paths: it parses and validates the YAML file that groups an API's paths
// into modules and says which modules are closed to API keys, turns the
// path of a request into its canonical form, and answers, for every
// request, "which module does this path reach, and does any reading of it
// reach a module closed to API keys?".
//
// It is pure computation: it imports nothing from keygate and does no I/O
// except Load reading the policy file. A *Policy is immutable and safe for
// concurrent use.
//
// # The policy file
//
// See Parse for the format and ExampleYAML for a commented example. Parse
// refuses anything unexpected (unknown or duplicate keys, wrong types,
// anchors, non-canonical or duplicate paths) so that a typo never silently
// opens access.
//
// A module's paths are prefixes that match whole segments, ignoring ASCII
// case: /api/v1/users matches /api/v1/users, /api/v1/users/ and
// /API/V1/Users/42, not /api/v1/usersettings. When paths of several modules
// match, the longest one wins, so modules may nest: /api/v1/projects/admin
// (deny) inside /api/v1/projects (allow), or an allowed module inside a
// denied one. A path that matches no module gets the policy's default.
//
// # Canonical path
//
// Route and Canonicalize take the request target as Envoy sends it in
// :path: origin-form, query included, not decoded. They refuse, with an
// error wrapping ErrInvalidPath (HTTP 400 invalid_path), a target that
// cannot be read one way:
//   - an empty target, one longer than MaxPathLength bytes, or with more than
//     MaxSegments separators;
//   - a target not in origin-form: absolute-form ("http://host/path"),
//     authority-form, asterisk-form ("*"), anything not starting with "/";
//   - escapes of "/", "\", ".", ";", "?", "#" and "%" (%2F %5C %2E %3B %3F
//     %23 %25): each would change the structure of the path for a stack
//     that decodes before parsing. Refusing every %25 refuses all double
//     encoding (%252e, %25%32%65) at once;
//   - malformed escapes ("%zz", "%4", "%u0075");
//   - control characters (U+0000–U+001F, U+007F, U+0080–U+009F), raw or
//     escaped, in the path, and raw ones in the query;
//   - a raw space, and the ASCII characters a request target may not hold
//     unescaped: " < > [ ] ^ ` { | };
//   - invalid UTF-8, raw or escaped, including overlong forms (%C0%AE,
//     %E0%80%AE), surrogates and code points above U+10FFFF;
//   - Unicode spaces and invisible format characters (U+00A0, U+200B,
//     U+202E, U+00AD, ...), and the code points that Unicode compatibility
//     normalization (NFKC) or the Windows "best fit" mapping of any ANSI
//     code page turn into "/", "\", ".", ";", "?", "#", "%" or ":" (U+FF0F
//     "／", U+2215 "∕", U+FF0E "．", U+2025 "‥", U+00A5 "¥" and U+20A9 "₩",
//     which the Japanese and Korean code pages map to "\", U+FF1A "：",
//     U+2236 "∶", ...);
//   - a segment that is not "." or ".." but is made of dots and escaped
//     spaces (at least one dot), or of them followed by a stream (from a
//     raw or escaped ":"): "...", "..%20", "%20..", "..::$DATA",
//     ".%3a$DATA"; a Windows file name drops
//     its stream and its trailing dots and spaces, so a stack that makes
//     file names before it resolves dot segments reads each as one;
//   - "(", an ASCII letter and "(" in a row, escapes decoded: ASP.NET
//     (System.Web) removes such cookieless session and ticket values
//     ("/(S(x))/api/v1/users") from a path before it routes it.
//
// The canonical path (the primary reading, returned by Canonicalize and
// used for Route.Module) is then, in this order: the query and the
// fragment dropped; "\" read as "/"; ";params" dropped from every segment;
// "." and ".." segments resolved (".." above the root stays at the root)
// on the path with its empty segments, as RFC 3986 and Envoy's
// normalize_path do; repeated "/" merged; a trailing "/" dropped. Escapes
// of characters that may appear unescaped in a path segment (letters,
// digits, - _ ~ ! $ & ' ( ) * + , = : @) are decoded once; escapes of the
// other ASCII characters (space " < > [ ] ^ ` { | }) are kept with
// lower-case hex; escaped UTF-8 is decoded; ASCII letters are lower-cased
// and nothing else is case-folded. Canonicalize is idempotent.
//
// Non-ASCII text is compared as it is in the canonical path; the case
// choice below also reads it as stacks that fold letters to ASCII do.
//
// # Every reading
//
// Envoy, proxies and backends do not agree on how to read a path, and a
// path that reaches a restricted module for any of them must be refused.
// A reading is one combination of independent choices, each with a few
// options (the first is the canonical path's):
//   - separators: "\" is a separator, as "/"; or an ordinary character;
//   - ";params": dropped from every segment; or kept as ordinary
//     characters; or everything from the first ";" dropped;
//   - ",params": "," is an ordinary character; or it starts parameters
//     too, dropped from every segment with the "," (RFC 3986 section 3.3
//     names "," with ";": "name,1.1" for "name;v=1.1"), raw or escaped
//     (%2C, as a stack that decodes first sees it), so that
//     /api/v1/accounts,a=b/123 reaches accounts;
//   - "#": starts a fragment, which is dropped; or is an ordinary character
//     (Go's net/http does not look for fragments in a request target);
//   - authority: none; or a leading run of two or more separators (of
//     either kind when "\" is a separator) starts an authority, which ends
//     at the next separator, and the rest is the path, as WHATWG URL parsers
//     read "//host/path", "///host/path" and "/\host/path";
//   - dot segments: "." and ".." resolved on the path with its empty
//     segments, then repeated separators merged (RFC 3986, Envoy); or
//     repeated separators merged first; or "." and ".." not resolved at
//     all but kept as ordinary segments, as by Werkzeug (Flask) and Express
//     and Rails prefix mounts, for which /api/v1/users/../x is under
//     /api/v1/users;
//   - escapes: decoded before matching; or not, so that a segment holding
//     one matches no policy path;
//   - empty segments: skipped when matching; or not, so that one matches no
//     policy path;
//   - scripts: a segment that names a server script is an ordinary segment;
//     or the path after the first one that does (one of the extensions of
//     its name, escapes decoded and trailing dots dropped, is ".php",
//     ".cgi", ".wsgi", ".aspx", ".cfm", ".jsp" or another PHP, CGI, WSGI,
//     ASP.NET, ColdFusion, JSP or ISAPI extension, in any case: Apache runs
//     index.php.x as PHP too) is the path, as a front controller reads its
//     PATH_INFO: Symfony and Laravel route /index.php/api/v1/users as
//     /api/v1/users;
//   - case: ASCII letters compared ignoring case; or also every non-ASCII
//     code point that some stack reads as ASCII letters or digits read as
//     them, and combining marks dropped: those Unicode simple case mapping
//     turns into ASCII ("ı" "İ" "ſ" and the Kelvin sign, as Java's
//     equalsIgnoreCase and .NET's OrdinalIgnoreCase do), compatibility
//     forms (NFKC and NFKD: the fullwidth "ｕsers", "𝐮", the ligature "ﬃ"),
//     letters with diacritics, and what Windows "best fit" makes of a path
//     it converts to an ANSI code page ("ł" is "l", "ø" is "o");
//   - suffixes: segments matched whole; or any segment, each independently,
//     also matched cut at its first ":" (raw or escaped) after its first
//     byte, as Windows reads streams ("users::$DATA",
//     "users:$i30:$INDEX_ALLOCATION"), or cut at its first ".", ":" or "("
//     (raw or escaped), as format suffixes ("users.json" in Rails or
//     Spring), custom methods ("users:search" in gRPC transcoding) and
//     OData keys ("users(42)") are, and without its trailing dots and
//     escaped spaces (Windows).
//
// Route evaluates every combination of these options, 4608 readings, each
// landing in the module of the longest policy path it matches (or in none):
// the readings are the cartesian product of the choices, and a test fails
// when a choice is added without being combined with the others. It skips
// a reading only when it would read the path as one it evaluates does
// (an option that the path gives nothing to change), so the work stays
// bounded (see below).
//
// Route.Restricted is set when any reading lands in a module with
// api_keys: deny, or when the default is deny and some reading lands in no
// module. The case and suffix options are heuristic: a reading with one of
// them that lands in no module does not count, and one that lands in an
// open module stands for its reading without them when that one lands in no
// module (/api/v1/projects.json belongs to projects, even when the default
// is deny).
//
// Route.Module is the module the canonical path belongs to: the one its
// reading lands in, or, when that is none, the first open module a case or
// suffix variant of it lands in (/api/v1/projects.json,
// /api/v1/projects:search and /api/v1/projects::$DATA belong to projects).
// Unless a reading lands in a denied module, Route.Modules lists Module (""
// for none) and after it every other open module some reading lands in: a
// key must hold the scope for the request's action in every one of them.
// For example /api/v1/projects/../deployments reaches deployments, but
// projects for a router that does not resolve dot segments, so a key needs
// both deployments and projects scopes; a reading other than the canonical
// one that lands in no module adds nothing.
//
// Over-blocking is a bug too: every reading is a full, whole-segment
// reading of the path, so /api/v1/administrator, /api/v1/projects/users,
// /api/v1/projects/users.json, /api/v1/usersettings.json,
// /api/v1/projects?next=/api/v1/users and /api/v1/projects#/api/v1/users
// stay out of the users module.
//
// The cost is bounded: a path without "%", "\", ";", ",", "#", ".", ":", "(",
// non-ASCII bytes or repeated "/" takes a fast path with a single reading
// and no allocation. Any other path is split into segments at most 144 times
// (the combinations of the first six choices), each split linear in its
// at most MaxSegments segments, and every reading matches segments only as
// deep as the policy's paths go. Route allocates only the Route.Modules of
// a path that reaches more than one module (and, for a policy whose paths
// spell one segment in many ways, a larger set of trie nodes to follow).
//
// # Errors
//
// Route and Canonicalize return a *PathError wrapping ErrInvalidPath; its
// text holds a fixed reason and a byte offset, never bytes of the path, so
// it is safe to log. Parse returns a *ParseError, or several joined with
// errors.Join, each reading "file:line: where: what", for example
//
//	policy.yaml:7: modules.users.api_keys: must be "allow" or "deny", got "maybe"
//
// Load returns the error of opening or reading the file, wrapped, or
// Parse's error.
package policy
