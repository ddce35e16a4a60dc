package policy

import "strings"

// Route is where a request path leads, by the policy's path table.
type Route struct {
	// Module is the module of the primary reading of the path (the
	// canonical path), by longest whole-segment prefix; "" if no policy
	// path matches it.
	Module string
	// Restricted reports whether API keys are refused on this path: some
	// reading of it lands in a module with api_keys: deny, or lands in no
	// module while the policy's default is deny.
	Restricted bool
	// RestrictedModule names the denied module Restricted is about, for
	// logs; "" when the path is not restricted or only the default denies it.
	RestrictedModule string
}

// maxPolicySegment is the longest segment a policy path may hold.
const maxPolicySegment = 128

// index is the path table of a Policy: a trie of lower-case segments.
type index struct {
	root        node
	names       []string // module names, by module number
	deny        []bool   // api_keys: deny, by module number
	defaultDeny bool
}

type node struct {
	children map[string]*node
	module   int // module number of the policy path ending here, or -1
}

func newIndex(mods []Module, def Access) *index {
	ix := &index{root: node{module: -1}, defaultDeny: def != AccessAllow}
	for m, mod := range mods {
		ix.names = append(ix.names, mod.Name)
		ix.deny = append(ix.deny, mod.APIKeys != AccessAllow)
		for _, p := range mod.Paths {
			n := &ix.root
			for _, s := range strings.Split(p[1:], "/") {
				c := n.children[s]
				if c == nil {
					c = &node{module: -1}
					if n.children == nil {
						n.children = make(map[string]*node)
					}
					n.children[s] = c
				}
				n = c
			}
			n.module = m
		}
	}
	return ix
}

// result is the Route of a path that has only one reading, landing in
// module m (-1 for none).
func (ix *index) result(m int) Route {
	if m < 0 {
		return Route{Restricted: ix.defaultDeny}
	}
	r := Route{Module: ix.names[m]}
	if ix.deny[m] {
		r.Restricted, r.RestrictedModule = true, ix.names[m]
	}
	return r
}

func (ix *index) route(raw string) (Route, error) {
	if r, ok := ix.fast(raw); ok {
		return r, nil
	}
	return ix.slow(raw)
}

// fast routes the common path that has one reading: only characters of
// class cFast before the query (no escape, "\", ";", "#", ".", ":" or
// non-ASCII), no empty segment but a trailing one. ok is false for any
// other path, which slow then reads.
func (ix *index) fast(raw string) (_ Route, ok bool) {
	if len(raw) == 0 || len(raw) > MaxPathLength || raw[0] != '/' {
		return Route{}, false
	}
	end, seps := len(raw), 1
	for i := 1; i < len(raw); i++ {
		c := raw[i]
		if class[c]&cFast == 0 {
			if c != '?' {
				return Route{}, false
			}
			for j := i + 1; j < len(raw); j++ {
				if raw[j] < 0x20 || raw[j] == 0x7f {
					return Route{}, false
				}
			}
			end = i
			break
		}
		if c == '/' {
			if raw[i-1] == '/' {
				return Route{}, false
			}
			if seps++; seps > MaxSegments {
				return Route{}, false
			}
		}
	}
	var buf [maxPolicySegment]byte
	n, m := &ix.root, -1
	for p := raw[1:end]; p != ""; {
		j := strings.IndexByte(p, '/')
		if j < 0 {
			j = len(p)
		}
		if j > len(buf) {
			break
		}
		for k := 0; k < j; k++ {
			buf[k] = lower(p[k])
		}
		if n = n.children[string(buf[:j])]; n == nil {
			break
		}
		if n.module >= 0 {
			m = n.module
		}
		if j == len(p) {
			break
		}
		p = p[j+1:]
	}
	return ix.result(m), true
}

// slow computes every reading of a path and routes each.
func (ix *index) slow(raw string) (Route, error) {
	t, err := scan(raw)
	if err != nil {
		return Route{}, err
	}
	// The options that can change the reading of this path.
	var apply reading
	if t.flags&fBackslash != 0 {
		apply |= bsLiteral
	}
	if t.flags&fSemicolon != 0 {
		apply |= paramsLiteral | paramsTruncate
	}
	if t.flags&fHash != 0 {
		apply |= fragLiteral
	}
	if len(t.path) > 1 && (t.path[1] == '/' || t.path[1] == '\\') {
		apply |= netPath
	}
	e := evaluation{ix: ix, flags: t.flags, denied: -1}
	var arr [32]string
	segs := arr[:0]
	for r := reading(0); r < mergeFirst; r++ {
		if r&^apply != 0 || r&(paramsLiteral|paramsTruncate) == paramsLiteral|paramsTruncate {
			continue
		}
		// A network-path reading is a guess at stacks that parse the target
		// as a generic URI reference; combine it only with the readings of
		// WHATWG URL parsers ("\" is "/") and of RFC 3986 ones ("\" and
		// ";" are ordinary characters), to bound the work.
		if r&netPath != 0 && r&^(netPath|fragLiteral) != 0 && r&^(netPath|fragLiteral) != (bsLiteral|paramsLiteral)&apply {
			continue
		}
		var popped, ok bool
		if segs, popped, ok = resolve(t.path, r, segs); !ok {
			continue
		}
		e.add(segs, r)
		if popped && !e.done() {
			segs, _, _ = resolve(t.path, r|mergeFirst, segs)
			e.add(segs, r|mergeFirst)
		}
		if e.done() {
			break
		}
	}
	return e.route(), nil
}

// evaluation collects the outcome of the readings of one path.
type evaluation struct {
	ix         *index
	flags      uint8 // of the target
	module     int   // module of the primary reading
	restricted bool
	denied     int // first denied module found, or -1
}

// add routes the segments of reading r, and the readings derived from them:
//   - the reading of a stack that stops matching at the first segment
//     holding an escape (it does not decode them) or at the first empty
//     segment (it does not merge separators), which can only land in an
//     ancestor of the module the full reading lands in;
//   - the heuristic readings (see walkMode), which count only when they
//     land in a denied module.
func (e *evaluation) add(segs []string, r reading) {
	deepest, beforeCut := e.ix.walk(segs, exact)
	if r == 0 {
		e.module = deepest
	}
	e.check(deepest, true)
	e.check(beforeCut, true)
	if e.flags&fNonASCII != 0 {
		m, _ := e.ix.walk(segs, folded)
		e.check(m, false)
	}
	if e.flags&fHeuristic != 0 {
		m, _ := e.ix.walk(segs, foldedTrimmed)
		e.check(m, false)
	}
}

// check records a reading that lands in module m (-1 for none). A reading
// that lands in no module counts as denied when the default is deny and
// the reading is sure (not heuristic).
func (e *evaluation) check(m int, sure bool) {
	switch {
	case m >= 0 && e.ix.deny[m]:
		e.restricted = true
		if e.denied < 0 {
			e.denied = m
		}
	case m < 0 && sure && e.ix.defaultDeny:
		e.restricted = true
	}
}

// done reports whether more readings cannot change the Route.
func (e *evaluation) done() bool { return e.denied >= 0 }

func (e *evaluation) route() Route {
	var r Route
	if e.module >= 0 {
		r.Module = e.ix.names[e.module]
	}
	r.Restricted = e.restricted
	if e.denied >= 0 {
		r.RestrictedModule = e.ix.names[e.denied]
	}
	return r
}

// How walk compares a segment with the segments of policy paths.
type walkMode int

const (
	// exact: with escapes decoded and ASCII letters lower-cased.
	exact walkMode = iota
	// folded: like exact, then changed by foldCase, as by a stack that
	// compares paths ignoring case by Unicode's simple case mappings.
	folded
	// foldedTrimmed: trimSuffix, then like folded, as by a stack that also
	// ignores what segments end with.
	foldedTrimmed
)

// walk matches the segments of one reading against the trie and returns the
// module of the longest matching policy path (-1 for none), and that of the
// longest one matching before the first segment that is empty or holds an
// escape. Empty segments are skipped, so repeated separators are merged.
func (ix *index) walk(segs []string, mode walkMode) (deepest, beforeCut int) {
	deepest, beforeCut = -1, -1
	cut := false
	last := len(segs) - 1
	for last >= 0 && segs[last] == "" {
		last--
	}
	var buf [4 * maxPolicySegment]byte
	n := &ix.root
	for i, s := range segs {
		if !cut && (s == "" || strings.IndexByte(s, '%') >= 0) {
			cut, beforeCut = true, deepest
		}
		if s == "" {
			continue
		}
		if mode == foldedTrimmed {
			s = trimSuffix(s, i == last)
		}
		key, ok := decodeKey(buf[:], s)
		if !ok {
			break
		}
		if mode != exact {
			key = foldCase(key)
		}
		if n = n.children[string(key)]; n == nil {
			break
		}
		if n.module >= 0 {
			deepest = n.module
		}
	}
	if !cut {
		beforeCut = deepest
	}
	return deepest, beforeCut
}

// decodeKey writes segment s (which passed scan), with every escape decoded
// and ASCII letters lower-cased, into buf. ok is false if it does not fit.
func decodeKey(buf []byte, s string) (key []byte, ok bool) {
	n := 0
	for i := 0; i < len(s); i++ {
		if n == len(buf) {
			return nil, false
		}
		c := s[i]
		if c == '%' {
			c, _ = unescape(s, i)
			i += 2
		}
		buf[n] = lower(c)
		n++
	}
	return buf[:n], true
}

// trimSuffix changes a segment as a stack that ignores what segments end
// with reads it: trailing dots and escaped
// spaces are dropped from every segment (Windows file names), and the last
// segment is cut at its first "." or ":" after the first byte (format
// suffixes like "users.json" in Rails or Spring, custom methods like
// "users:search" in gRPC transcoding).
func trimSuffix(s string, last bool) string {
	for {
		switch {
		case strings.HasSuffix(s, "."):
			s = s[:len(s)-1]
			continue
		case strings.HasSuffix(s, "%20"):
			s = s[:len(s)-3]
			continue
		}
		break
	}
	if last {
		for k := 1; k < len(s); k++ {
			switch {
			case s[k] == '.' || s[k] == ':':
				return s[:k]
			case s[k] == '%' && k+2 < len(s) && s[k+1] == '3' && (s[k+2] == 'a' || s[k+2] == 'A'):
				return s[:k]
			}
		}
	}
	return s
}

// foldCase changes a decoded segment as a stack that ignores case reads it:
// the four non-ASCII code points that Unicode simple case mapping turns into
// ASCII letters become those letters, as in a stack that compares paths
// with Java's equalsIgnoreCase or .NET's OrdinalIgnoreCase: U+0130 "İ" and
// U+0131 "ı" become "i", U+017F "ſ" becomes "s", U+212A (Kelvin sign)
// becomes "k". It works in place on a decoded key.
func foldCase(key []byte) []byte {
	w := 0
	for i := 0; i < len(key); {
		c := key[i]
		switch {
		case c == 0xc4 && i+1 < len(key) && (key[i+1] == 0xb0 || key[i+1] == 0xb1):
			c, i = 'i', i+2
		case c == 0xc5 && i+1 < len(key) && key[i+1] == 0xbf:
			c, i = 's', i+2
		case c == 0xe2 && i+2 < len(key) && key[i+1] == 0x84 && key[i+2] == 0xaa:
			c, i = 'k', i+3
		default:
			i++
		}
		key[w] = c
		w++
	}
	return key[:w]
}
