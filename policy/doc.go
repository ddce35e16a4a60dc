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
//   - a segment made of dots and escaped spaces that is not "." or ".."
//     ("...", "..%20"), which Windows reads as a dot segment.
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
// Non-ASCII text is compared as it is: a fullwidth "ｕsers" is a different
// path from "users", and a backend that applies compatibility
// normalization (NFKC) to paths is not one keygate can protect.
//
// # Every reading
//
// Envoy, proxies and backends do not agree on how to read a path: Envoy
// resolves dot segments before merging slashes and many backends merge
// first; servlet containers drop ";params", other stacks keep them; some
// read "\" as "/". A path that reaches a restricted module for any of them
// must be refused, so Route computes every reading below and sets
// Route.Restricted if any of them lands in a module with api_keys: deny
// (by longest prefix), or, when the default is deny, in no module at all:
//   - "\" read as "/", or as an ordinary character;
//   - ";params" dropped from every segment, or kept as ordinary
//     characters, or everything from the first ";" dropped;
//   - "#" starting a fragment, or an ordinary character (for stacks that
//     do not look for fragments in a request target, as Go's net/http);
//   - dot segments resolved before merging repeated "/", or after; the
//     order matters only when a ".." removes an empty segment, so the
//     second is computed only then;
//   - "//host/rest" read as the path "/rest", as by a stack that parses the
//     target as a generic URI reference (with the first two of the options
//     above as WHATWG URL parsers or RFC 3986 ones read them, to bound the
//     work);
//   - matching that stops at the first segment holding an escape (a stack
//     that does not decode) or at the first empty segment (a stack that
//     does not merge slashes).
//
// Two heuristic readings count only when they land in a denied module:
// non-ASCII letters that Unicode simple case mapping turns into ASCII
// ("ı" "İ" "ſ" and the Kelvin sign) read as those letters, as by Java's
// equalsIgnoreCase or .NET's OrdinalIgnoreCase; and, in addition, trailing
// dots and escaped spaces dropped from every segment (Windows) and the last
// segment cut at its first "." or ":" (format suffixes such as
// "users.json" in Rails or Spring, custom methods such as "users:search"
// in gRPC transcoding).
//
// Over-blocking is a bug too: every reading is a full, whole-segment
// reading of the path, so /api/v1/administrator, /api/v1/projects/users,
// /api/v1/projects?next=/api/v1/users and /api/v1/projects#/api/v1/users
// stay out of the users module.
//
// The cost is bounded: a path without "%", "\", ";", "#", ".", ":",
// non-ASCII bytes or repeated "/" takes a fast path with a single reading
// and no allocation; any other path costs at most a few dozen linear passes
// over at most MaxPathLength bytes and MaxSegments segments.
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
