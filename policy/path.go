package policy

import (
	"errors"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxPathLength is the longest request target, query included, that
// Canonicalize and Route accept. Longer targets are invalid paths.
const MaxPathLength = 8 << 10

// MaxSegments is the largest number of "/" and "\" separators the path part
// of a request target may hold. It bounds the work Route does per request.
const MaxSegments = 128

// ErrInvalidPath is wrapped by every error Canonicalize and Route return: the
// path cannot be read one way, so the request must be refused (HTTP 400).
var ErrInvalidPath = errors.New("invalid path")

// PathError says why a path is invalid. It wraps ErrInvalidPath.
//
// Its text never contains bytes of the path: Reason is one of a fixed set of
// descriptions, and Offset is a number, so the error is safe to log.
type PathError struct {
	Reason string // what is wrong, e.g. `encoded "/" (%2F)`
	Offset int    // byte offset in the raw path where it is, or -1
}

// Error returns "invalid path: " followed by the reason and the offset.
func (e *PathError) Error() string {
	if e.Offset < 0 {
		return "invalid path: " + e.Reason
	}
	return "invalid path: " + e.Reason + " at byte " + strconv.Itoa(e.Offset)
}

// Unwrap returns ErrInvalidPath.
func (e *PathError) Unwrap() error { return ErrInvalidPath }

func pathErr(reason string, offset int) error {
	return &PathError{Reason: reason, Offset: offset}
}

// Byte classes.
const (
	cRaw    uint8 = 1 << iota // may appear unescaped in the path part of a target
	cFast                     // may appear in a path that Route reads on its fast path
	cDecode                   // an escape of this byte is decoded in the canonical form
	cPolicy                   // may appear in a segment of a policy path
)

var class = func() (t [256]uint8) {
	set := func(chars string, c uint8) {
		for i := 0; i < len(chars); i++ {
			t[chars[i]] |= c
		}
	}
	const alnum = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	// RFC 3986 pchar: unreserved / sub-delims / ":" / "@" (and pct-encoded).
	set(alnum+"-_~!$&')*+=@", cRaw|cFast|cDecode|cPolicy)
	set(",:(", cRaw|cDecode|cPolicy)
	set(".", cRaw|cPolicy)
	set(";", cRaw)
	set("/", cRaw|cFast)
	set(`\%#?`, cRaw)
	return t
}()

// Facts about a target that decide which readings Route computes (the
// others are found by the readings themselves, see evaluation.may).
const (
	fBackslash uint8 = 1 << iota
	fSemicolon
	fComma // a "," or an escaped one
	fHash
)

// target is a request target that passed scan.
type target struct {
	path  string // the path part: everything before the first '?'
	flags uint8
}

// scan checks raw against the rejection rules (see the package
// documentation) and splits off the query.
func scan(raw string) (target, error) {
	t := target{path: raw}
	switch {
	case raw == "":
		return t, pathErr("empty path", -1)
	case len(raw) > MaxPathLength:
		return t, pathErr("longer than "+strconv.Itoa(MaxPathLength)+" bytes", -1)
	case raw[0] != '/':
		return t, notOriginForm(raw)
	}
	seps := 0
	seg := 0 // start of the current segment, or -1 within ;params
	i := 0
	for i < len(raw) {
		c := raw[i]
		switch {
		case c == '?':
			if seg >= 0 && ambiguousDots(raw[seg:i]) {
				return t, pathErr(errAmbiguousDots, seg)
			}
			seg = -1
			t.path = raw[:i]
			// The query is not part of any reading; refuse only control
			// characters in it, which no HTTP stack should see.
			for j := i + 1; j < len(raw); j++ {
				if raw[j] < 0x20 || raw[j] == 0x7f {
					return t, pathErr("control character in the query", j)
				}
			}
			i = len(raw)
			continue
		case c == '%':
			if isEscapedComma(raw, i) {
				if seg >= 0 && ambiguousDots(raw[seg:i]) {
					return t, pathErr(errAmbiguousDots, seg)
				}
				t.flags |= fComma
			}
			n, err := scanEscape(raw, i)
			if err != nil {
				return t, err
			}
			i += n
			continue
		case c >= utf8.RuneSelf:
			r, size := utf8.DecodeRuneInString(raw[i:])
			if r == utf8.RuneError && size <= 1 {
				return t, pathErr("invalid UTF-8", i)
			}
			if reason := badRune(r); reason != "" {
				return t, pathErr(reason, i)
			}
			i += size
			continue
		case c < 0x20 || c == 0x7f:
			return t, pathErr("control character", i)
		case c == ' ':
			return t, pathErr("space", i)
		case class[c]&cRaw == 0:
			return t, pathErr("character not allowed in a request target", i)
		}
		switch c {
		case '/', '\\', ';', ',', '#':
			// A "," ends the segment of the readings that cut ",params"
			// (the segment goes on for the others).
			if seg >= 0 && ambiguousDots(raw[seg:i]) {
				return t, pathErr(errAmbiguousDots, seg)
			}
			switch c {
			case ',':
			case ';':
				seg = -1
			default:
				seg = i + 1
			}
		}
		switch c {
		case '/', '\\':
			if seps++; seps > MaxSegments {
				return t, pathErr("more than "+strconv.Itoa(MaxSegments)+" segments", -1)
			}
			if c == '\\' {
				t.flags |= fBackslash
			}
		case ';':
			t.flags |= fSemicolon
		case ',':
			t.flags |= fComma
		case '#':
			t.flags |= fHash
		}
		i++
	}
	if seg >= 0 && ambiguousDots(raw[seg:]) {
		return t, pathErr(errAmbiguousDots, seg)
	}
	if k := cookieless(t.path); k >= 0 {
		return t, pathErr(`ASP.NET cookieless value "(X("`, k)
	}
	return t, nil
}

// cookieless returns the offset in path (which passed scan's other rules)
// of the first "(", a letter and "(" in a row, escapes decoded, or -1:
// ASP.NET (System.Web) removes "/(S(…))/" and the like, cookieless
// session and ticket values, from a path before it routes it, anywhere in
// the path and, with the AspFilterSessionId header, inside a segment.
func cookieless(path string) int {
	var at [3]int // offsets of the last three decoded bytes
	var b [3]byte
	for i := 0; i < len(path); {
		c, n := path[i], 1
		if c == '%' {
			c, _ = unescape(path, i)
			n = 3
		}
		at[0], at[1], at[2] = at[1], at[2], i
		b[0], b[1], b[2] = b[1], b[2], c
		if b[0] == '(' && b[2] == '(' && ('a' <= b[1]|0x20 && b[1]|0x20 <= 'z') {
			return at[0]
		}
		i += n
	}
	return -1
}

const errAmbiguousDots = "dot segment with trailing dots, spaces or a stream"

// ambiguousDots reports whether segment s is not "." or ".." but Windows
// reads it as one: a file name loses its stream (from its first ":",
// raw or escaped) and then its trailing dots and spaces, so "...",
// "..%20", "%20..", ".%20", "..::$DATA" and "..%3a$DATA" all name a dot
// segment for a stack that makes file names before it resolves dot
// segments.
func ambiguousDots(s string) bool {
	if s == "." || s == ".." {
		return false
	}
	dots := false
	for i := 0; i < len(s); {
		switch {
		case s[i] == '.':
			dots = true
			i++
		case strings.HasPrefix(s[i:], "%20"):
			i += 3
		case i > 0 && (s[i] == ':' || strings.HasPrefix(s[i:], "%3a") || strings.HasPrefix(s[i:], "%3A")):
			return dots // the rest is a stream
		default:
			return false
		}
	}
	return dots
}

// notOriginForm explains why a target that does not start with "/" is refused.
func notOriginForm(raw string) error {
	if raw == "*" {
		return pathErr("asterisk-form request target", -1)
	}
	// scheme ":" at the start: absolute-form ("http://host/path").
	if k := strings.IndexByte(raw, ':'); k > 0 && isScheme(raw[:k]) {
		return pathErr("absolute-form request target (scheme://host/...)", -1)
	}
	return pathErr(`does not start with "/"`, 0)
}

// PathOfURL returns the path and query of an absolute URL, as a backend
// that takes one for a request target reads it: "https://host/a?b" is
// "/a?b", "https://host?b" is "/?b", "https://host" is "/"; the authority
// ends at the first "/", "?", "#" or "\" (the path then starts with it, and
// Route refuses a "\" there). ok is false for anything else, origin-form
// targets included.
func PathOfURL(s string) (path string, ok bool) {
	scheme, rest, found := strings.Cut(s, "://")
	if !found || !isScheme(scheme) {
		return "", false
	}
	i := strings.IndexAny(rest, `/?#\`)
	switch {
	case i < 0:
		return "/", true
	case rest[i] == '?' || rest[i] == '#':
		return "/" + rest[i:], true
	}
	return rest[i:], true
}

// isScheme reports whether s is an RFC 3986 scheme.
func isScheme(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z':
		case i > 0 && ('0' <= c && c <= '9' || c == '+' || c == '-' || c == '.'):
		default:
			return false
		}
	}
	return s != ""
}

// Reasons for escapes of bytes that would change the structure of the path.
var encodedReason = map[byte]string{
	'/':  `encoded "/" (%2F)`,
	'\\': `encoded "\" (%5C)`,
	'.':  `encoded "." (%2E)`,
	';':  `encoded ";" (%3B)`,
	'?':  `encoded "?" (%3F)`,
	'#':  `encoded "#" (%23)`,
	'%':  `encoded "%" (%25, double encoding)`,
	0:    `encoded NUL (%00)`,
}

// scanEscape checks the percent-escape at raw[i] (and, for a UTF-8 sequence,
// the escapes after it) and returns how many bytes of raw it covers.
func scanEscape(raw string, i int) (int, error) {
	b, ok := unescape(raw, i)
	if !ok {
		return 0, pathErr("malformed percent-escape", i)
	}
	if b < utf8.RuneSelf {
		if reason := encodedReason[b]; reason != "" {
			return 0, pathErr(reason, i)
		}
		if b < 0x20 || b == 0x7f {
			return 0, pathErr("encoded control character", i)
		}
		return 3, nil
	}
	n := seqLen(b)
	if n == 0 {
		return 0, pathErr("invalid UTF-8 in percent-escapes", i)
	}
	var buf [utf8.UTFMax]byte
	buf[0] = b
	for k := 1; k < n; k++ {
		if buf[k], ok = unescape(raw, i+3*k); !ok {
			return 0, pathErr("invalid UTF-8 in percent-escapes", i)
		}
	}
	r, size := utf8.DecodeRune(buf[:n])
	if r == utf8.RuneError && size <= 1 || size != n {
		return 0, pathErr("invalid UTF-8 in percent-escapes", i)
	}
	if reason := badRune(r); reason != "" {
		return 0, pathErr("encoded "+reason, i)
	}
	return 3 * n, nil
}

// seqLen is the length of the UTF-8 sequence that lead byte b starts, or 0
// if b cannot start one. utf8.DecodeRune rejects the rest: overlong forms,
// surrogates, code points above U+10FFFF.
func seqLen(b byte) int {
	switch {
	case 0xc2 <= b && b <= 0xdf:
		return 2
	case 0xe0 <= b && b <= 0xef:
		return 3
	case 0xf0 <= b && b <= 0xf4:
		return 4
	}
	return 0
}

// unescape decodes the escape "%XX" at s[i].
func unescape(s string, i int) (byte, bool) {
	if i+2 >= len(s) || s[i] != '%' {
		return 0, false
	}
	h, ok1 := unhex(s[i+1])
	l, ok2 := unhex(s[i+2])
	return h<<4 | l, ok1 && ok2
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// badRune says why a non-ASCII code point is refused, or returns "".
func badRune(r rune) string {
	switch {
	case r < 0xa0:
		return "control character"
	case unicode.IsSpace(r):
		return "Unicode space"
	case unicode.Is(unicode.Cf, r):
		return "invisible Unicode format character"
	case delimiterLookalike(r):
		return "Unicode look-alike of a path delimiter"
	}
	return ""
}

// delimiterLookalikes lists, sorted, the code points that Unicode
// compatibility normalization (NFKC; computed with
// golang.org/x/text/unicode/norm) or Windows "best fit" mapping (the
// WCTABLE of the bestfit*.txt table of every Windows ANSI code page) turn
// into text holding one of the characters that change a reading of a path:
// / \ . ; ? # % and ":" (suffix readings cut at it, see the package
// documentation). A stack that applies such a mapping would see a different
// path structure, so these code points make a path invalid.
var delimiterLookalikes = [...][2]rune{
	{0x00a5, 0x00a5},   // ¥ YEN SIGN (best fit, code page 932: 0x5C, "\")
	{0x037e, 0x037e},   // ; GREEK QUESTION MARK (even NFC maps it to ";")
	{0x0589, 0x0589},   // ։ ARMENIAN FULL STOP (best fit: ":")
	{0x066a, 0x066a},   // ٪ ARABIC PERCENT SIGN (best fit: "%")
	{0x2024, 0x2026},   // ․ ‥ …
	{0x2044, 0x2044},   // ⁄ FRACTION SLASH (best fit)
	{0x2047, 0x2049},   // ⁇ ⁈ ⁉
	{0x20a9, 0x20a9},   // ₩ WON SIGN (best fit, code pages 949 and 1361: 0x5C, "\")
	{0x2100, 0x2101},   // ℀ ℁
	{0x2105, 0x2106},   // ℅ ℆
	{0x2215, 0x2216},   // ∕ ∖ (best fit)
	{0x2236, 0x2236},   // ∶ RATIO (best fit: ":")
	{0x2488, 0x249b},   // ⒈ … ⒛
	{0x29f5, 0x29f5},   // ⧵ REVERSE SOLIDUS OPERATOR (best fit)
	{0x29f8, 0x29f9},   // ⧸ ⧹ BIG SOLIDUS, BIG REVERSE SOLIDUS
	{0x2a74, 0x2a74},   // ⩴ DOUBLE COLON EQUAL
	{0x3002, 0x3002},   // 。 IDEOGRAPHIC FULL STOP (IDNA maps it to ".")
	{0x33c2, 0x33c2},   // ㏂
	{0x33c7, 0x33c7},   // ㏇
	{0x33d8, 0x33d8},   // ㏘
	{0xfe13, 0xfe14},   // ︓ ︔
	{0xfe16, 0xfe16},   // ︖
	{0xfe19, 0xfe19},   // ︙
	{0xfe30, 0xfe30},   // ︰
	{0xfe52, 0xfe52},   // ﹒
	{0xfe54, 0xfe56},   // ﹔ ﹕ ﹖
	{0xfe5f, 0xfe5f},   // ﹟
	{0xfe68, 0xfe68},   // ﹨
	{0xfe6a, 0xfe6a},   // ﹪
	{0xff03, 0xff03},   // ＃
	{0xff05, 0xff05},   // ％
	{0xff0e, 0xff0f},   // ． ／
	{0xff1a, 0xff1b},   // ： ；
	{0xff1f, 0xff1f},   // ？
	{0xff3c, 0xff3c},   // ＼
	{0xff61, 0xff61},   // ｡ HALFWIDTH IDEOGRAPHIC FULL STOP
	{0x1f100, 0x1f100}, // 🄀
}

func delimiterLookalike(r rune) bool {
	for _, rg := range delimiterLookalikes {
		if r < rg[0] {
			return false
		}
		if r <= rg[1] {
			return true
		}
	}
	return false
}

// Canonicalize returns the primary reading of rawPath, the request target as
// Envoy sends it in :path (origin-form, query included, not decoded): the
// query and fragment dropped, ";params" dropped from every segment, "\" read
// as "/", dot segments resolved (clamped at the root) and then repeated
// separators merged, escapes of characters that may appear unescaped in a
// path decoded, escapes of other ASCII characters kept with lower-case hex,
// escaped UTF-8 decoded, ASCII letters lower-cased, and no trailing "/"
// (except for the root, "/").
//
// The result is the key Route matches policy paths against; matching is
// case-insensitive, so it is lower-case. Canonicalize is idempotent. It
// refuses what Route refuses, with an error wrapping ErrInvalidPath.
func Canonicalize(rawPath string) (string, error) {
	t, err := scan(rawPath)
	if err != nil {
		return "", err
	}
	var sp splitter
	sp.init(t)
	var arr [32]string
	segs, _ := sp.split(&reading{}, arr[:0])
	b := make([]byte, 0, len(t.path))
	for _, s := range segs {
		if s == "" {
			continue
		}
		b = append(b, '/')
		b = appendCanonical(b, s)
	}
	if len(b) == 0 {
		return "/", nil
	}
	return string(b), nil
}

const hexDigits = "0123456789abcdef"

// appendCanonical appends the canonical spelling of segment s, which passed
// scan and holds no separator.
func appendCanonical(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '%' {
			c, _ = unescape(s, i)
			i += 2
			if c < utf8.RuneSelf && class[c]&cDecode == 0 {
				b = append(b, '%', hexDigits[c>>4], hexDigits[c&15])
				continue
			}
		}
		b = append(b, lower(c))
	}
	return b
}

func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}
