package policy

import (
	"slices"
	"strings"
)

// Route is where a request path leads, by the policy's path table.
type Route struct {
	// Module is the module the canonical path belongs to: the module of
	// the longest policy path that is a whole-segment prefix of it or, if
	// none is, the first open module that a suffix or case reading of the
	// canonical path lands in (/api/v1/projects.json and
	// /api/v1/projects:search belong to projects); "" if none.
	Module string
	// Restricted reports whether API keys are refused on this path: some
	// reading of it lands in a module with api_keys: deny, or lands in no
	// module while the policy's default is deny.
	Restricted bool
	// RestrictedModule names the denied module Restricted is about, for
	// logs; "" when the path is not restricted or only the default denies it.
	RestrictedModule string
	// Modules lists every module whose scopes the key must hold for this
	// path: Module first ("" when the path belongs to no module), then every
	// other open module that some reading of the path lands in, in no
	// particular order. It is nil when RestrictedModule is not "" (Route
	// stops at the first reading that lands in a denied module), and
	// complete otherwise, also when only the policy's default restricts the
	// path (a caller that takes the module from Envoy's route needs it
	// then). It may be shared with other Routes: read it, never modify it.
	Modules []string
	// Closed lists every closed module some reading lands in, and "" when
	// one lands in no module under default: deny; only Policy.RouteEvery
	// sets it (there Modules is complete as well, Module first even when
	// it is closed).
	Closed []string
}

// maxPolicySegment is the longest segment a policy path may hold.
const maxPolicySegment = 128

// index is the path table of a Policy: a trie of lower-case segments.
type index struct {
	root        node
	names       []string // module names, by module number
	singles     []string // "", then names: the backing of single
	deny        []bool   // api_keys: deny, by module number
	defaultDeny bool
}

type node struct {
	children map[string]*node
	module   int // module number of the policy path ending here, or -1
	nearest  int // module of the longest policy path ending here or above, or -1
}

func newIndex(mods []Module, def Access) *index {
	asciiFolds() // now, not during the first request that needs it
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
	ix.singles = append([]string{""}, ix.names...)
	ix.root.setNearest(-1)
	return ix
}

// setNearest sets the nearest module of n and of the nodes below it, given
// the nearest module above n.
func (n *node) setNearest(above int) {
	n.nearest = above
	if n.module >= 0 {
		n.nearest = n.module
	}
	for _, c := range n.children {
		c.setNearest(n.nearest)
	}
}

// result is the Route of a path that has only one reading, landing in
// module m (-1 for none).
func (ix *index) result(m int) Route {
	switch {
	case m < 0:
		return Route{Restricted: ix.defaultDeny, Modules: ix.single(-1)}
	case ix.deny[m]:
		return Route{Module: ix.names[m], Restricted: true, RestrictedModule: ix.names[m]}
	}
	return Route{Module: ix.names[m], Modules: ix.single(m)}
}

func (ix *index) route(raw string) (Route, error) {
	if r, ok := ix.fast(raw); ok {
		return r, nil
	}
	return ix.slow(raw, false)
}

// fast routes the common path that has one reading: only characters of
// class cFast before the query (no escape, "\", ";", ",", "#", ".", ":",
// "(" or non-ASCII), no empty segment but a trailing one. ok is false for any
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

// slow computes every reading of a path and routes each; with every, also
// those after one that lands in a denied module (Policy.RouteEvery).
func (ix *index) slow(raw string, every bool) (Route, error) {
	t, err := scan(raw)
	if err != nil {
		return Route{}, err
	}
	e := evaluation{every: every}
	e.init(ix, t)
	forEachReading(e.applies, e.visit)
	return e.route(), nil
}

// evaluation collects the outcome of the readings of one path.
type evaluation struct {
	ix      *index
	sp      splitter
	nseg    int // segments of the reading being visited, in buf
	buf     [MaxSegments]string
	keyBuf  [3][4 * maxPolicySegment]byte // for the spellings of a segment (see walk)
	foldBuf [3][maxPolicySegment]byte     // for them with letters folded (see foldLetters)

	// differs[c] has bit o set when option o of choice c may read the path
	// differently from option 0, given the options of the choices before c
	// (see forEachReading).
	differs [numChoices]uint8

	started bool  // a reading was visited
	groups  int   // groups ended so far
	group   group // the group being visited
	primary int   // module of the group of the canonical reading, or -1

	restricted bool
	denied     int // first denied module found, or -1
	// every: visit every reading, also after one lands in a denied module
	// (Policy.RouteEvery), and collect the denied modules in closed.
	every         bool
	closed        []int
	defaultDenied bool // a reading landed in no module under default: deny
	// The open modules found, in order, without repeats: the first
	// len(nearOpen) of them in nearOpen, the others in farOpen. (No slice
	// of the evaluation points into it, which would move it to the heap.)
	nopen    int
	nearOpen [8]int
	farOpen  []int
}

// A group is the readings that differ only by heuristic choices: one sure
// reading and its heuristic variants.
type group struct {
	sure int // module the sure reading lands in, or -1
	open int // first open module a heuristic variant lands in, or -1
}

func (e *evaluation) init(ix *index, t target) {
	e.ix, e.primary, e.denied, e.group = ix, -1, -1, group{sure: -1, open: -1}
	e.sp.init(t)
}

func (e *evaluation) applies(c choice, o uint8) bool { return e.differs[c]&(1<<o) != 0 }

// may records, during a visit of r with option 0 of choice c, that option
// o of c may read the path differently.
func (e *evaluation) may(r *reading, c choice, o uint8) {
	if r[c] == 0 {
		e.differs[c] |= 1 << o
	}
}

func (e *evaluation) visit(r reading, first choice) bool {
	for c := first + 1; c < numChoices; c++ {
		e.differs[c] = 0
	}
	if first < firstHeuristic && e.started {
		e.endGroup()
	}
	e.started = true
	if first < firstWalkChoice {
		segs, f := e.sp.split(&r, e.buf[:0])
		e.nseg = len(segs)
		if e.sp.flags&fBackslash != 0 {
			e.may(&r, chSeparators, 1)
		}
		if e.sp.flags&fSemicolon != 0 {
			e.may(&r, chParams, 1)
			e.may(&r, chParams, 2)
		}
		if e.sp.flags&fComma != 0 {
			e.may(&r, chComma, 1)
		}
		if e.sp.flags&fHash != 0 {
			e.may(&r, chFragment, 1)
		}
		if f.authority {
			e.may(&r, chAuthority, 1)
		}
		if f.popped {
			e.may(&r, chDots, 1)
		}
		if f.dot {
			e.may(&r, chDots, 2)
		}
	}
	e.walk(&r)
	return e.every || e.denied < 0
}

// endGroup closes the group being visited. A sure reading that lands in
// no module, and none of whose heuristic variants lands in an open module,
// counts as denied when the default is deny. The group of the canonical
// reading gives Route.Module: the module its sure reading lands in or, if
// none, the first open module a variant lands in (/api/v1/projects.json,
// /api/v1/projects:search belong to projects).
func (e *evaluation) endGroup() {
	m := e.group.sure
	if m < 0 {
		m = e.group.open
	}
	if e.groups == 0 {
		e.primary = m
	}
	if m < 0 && e.ix.defaultDeny {
		e.restricted, e.defaultDenied = true, true
	}
	e.groups++
	e.group = group{sure: -1, open: -1}
}

// land records that a reading lands in module m (-1 for none).
func (e *evaluation) land(m int, heuristic bool) {
	switch {
	case m < 0:
	case e.ix.deny[m]:
		e.restricted = true
		if e.denied < 0 {
			e.denied = m
		}
		if e.every && !slices.Contains(e.closed, m) {
			e.closed = append(e.closed, m)
		}
	default:
		e.addOpen(m)
		if heuristic && e.group.open < 0 {
			e.group.open = m
		}
	}
	if !heuristic {
		e.group.sure = m
	}
}

// addOpen adds open module m to those found.
func (e *evaluation) addOpen(m int) {
	near := e.nearOpen[:min(e.nopen, len(e.nearOpen))]
	if slices.Contains(near, m) || slices.Contains(e.farOpen, m) {
		return
	}
	if e.nopen < len(e.nearOpen) {
		e.nearOpen[e.nopen] = m
	} else {
		e.farOpen = append(e.farOpen, m)
	}
	e.nopen++
}

// route ends the last group and returns the Route.
func (e *evaluation) route() Route {
	e.endGroup()
	var r Route
	if e.primary >= 0 {
		r.Module = e.ix.names[e.primary]
	}
	r.Restricted = e.restricted
	if e.denied >= 0 {
		r.RestrictedModule = e.ix.names[e.denied]
	}
	if e.denied < 0 || e.every {
		r.Modules = e.ix.modules(e.primary, e.nearOpen[:min(e.nopen, len(e.nearOpen))], e.farOpen)
	}
	for _, m := range e.closed {
		r.Closed = append(r.Closed, e.ix.names[m])
	}
	if e.every && e.defaultDenied {
		r.Closed = append(r.Closed, "")
	}
	return r
}

// modules returns the Route.Modules of a path whose canonical reading
// belongs to module primary (-1 for none) and whose readings land in the
// open modules near and far: primary first, then the others.
func (ix *index) modules(primary int, near, far []int) []string {
	if len(far) == 0 && (len(near) == 0 || len(near) == 1 && near[0] == primary) {
		return ix.single(primary)
	}
	mods := make([]string, 1, len(near)+len(far)+1)
	mods[0] = ix.single(primary)[0]
	for _, ms := range [...][]int{near, far} {
		for _, m := range ms {
			if m != primary {
				mods = append(mods, ix.names[m])
			}
		}
	}
	return mods
}

// single returns the shared Route.Modules of a path that belongs to module
// m alone ("" for none), with no spare capacity, so that append copies it.
func (ix *index) single(m int) []string {
	return ix.singles[m+1 : m+2 : m+2]
}

// walk matches the segments of the reading being visited, with the
// options of r for the choices from firstWalkChoice on, against the trie,
// and lands every reading they make: one, or, with chSuffix option 1, one
// for every way of reading each segment whole or without its suffix (the
// walk follows all of them at once, as a set of trie nodes). A reading
// lands in the module of the longest policy path it matches.
func (e *evaluation) walk(r *reading) {
	heuristic := r[chCase] != 0 || r[chSuffix] != 0
	segs := e.buf[:e.nseg]
	for len(segs) > 0 && segs[len(segs)-1] == "" {
		segs = segs[:len(segs)-1] // a trailing "/" matches as no "/" does
	}
	if k := scriptEnd(segs); k > 0 {
		e.may(r, chScript, 1)
		if r[chScript] != 0 {
			segs = segs[k:]
		}
	}
	var curBuf, nextBuf [8]*node
	cur, next := append(curBuf[:0], &e.ix.root), nextBuf[:0]
	var spellings [3]string
	var keys [3][]byte
	for _, s := range segs {
		if s == "" {
			e.may(r, chMerge, 1)
			if r[chMerge] != 0 {
				break
			}
			continue
		}
		if strings.IndexByte(s, '%') >= 0 {
			e.may(r, chDecode, 1)
			if r[chDecode] != 0 {
				break
			}
		}
		sp := append(spellings[:0], s)
		// The other spellings are needed by a suffix reading, or to learn
		// whether one would differ, until that is known.
		if r[chSuffix] != 0 || e.differs[chSuffix] == 0 {
			if sp = spell(s, &spellings); len(sp) > 1 {
				e.may(r, chSuffix, 1)
			}
			if r[chSuffix] == 0 {
				sp = sp[:1]
			}
		}
		for i, v := range sp {
			key, ok := decodeKey(e.keyBuf[i][:], v)
			if ok && (r[chCase] != 0 || e.differs[chCase] == 0) && mayFold(key) {
				e.may(r, chCase, 1)
				if r[chCase] != 0 {
					key, ok = foldLetters(e.foldBuf[i][:], key)
				}
			}
			if !ok {
				key = nil // too long to match any policy segment
			}
			keys[i] = key
		}
		next = next[:0]
		for _, n := range cur {
			for i := range sp {
				c := (*node)(nil)
				if keys[i] != nil {
					c = n.children[string(keys[i])]
				}
				switch {
				case c == nil:
					e.land(n.nearest, heuristic)
				case !slices.Contains(next, c):
					next = append(next, c)
				}
			}
		}
		cur, next = next, cur
		if len(cur) == 0 {
			return
		}
	}
	for _, n := range cur {
		e.land(n.nearest, heuristic)
	}
}

// scriptEnd returns the index in segs of the segment after the first one
// that names a server script (isScript), if another follows it; 0 if none
// does.
func scriptEnd(segs []string) int {
	for i, s := range segs[:max(len(segs)-1, 0)] {
		if isScript(s) {
			return i + 1
		}
	}
	return 0
}

// isScript reports whether segment s (which passed scan) names a file that
// web servers run as a script, with the rest of the path as its PATH_INFO:
// without its trailing dots and escaped spaces (as Windows names files),
// one of the extensions of its name (Apache runs index.php.x as PHP too),
// escapes decoded, in any ASCII case, is that of a PHP, CGI, WSGI, ASP,
// ASP.NET, ColdFusion, JSP or ISAPI handler.
func isScript(s string) bool {
	_, exts, ok := strings.Cut(trimTrailing(s), ".")
	if !ok {
		return false
	}
	for ext := range strings.SplitSeq(exts, ".") {
		var buf [8]byte
		key, ok := decodeKey(buf[:], ext)
		if !ok {
			continue
		}
		switch string(key) {
		case "php", "php3", "php4", "php5", "php7", "php8", "pht", "phtml", "phar",
			"cgi", "fcgi", "pl", "py", "wsgi", "rb",
			"asp", "aspx", "asmx", "ashx", "axd", "svc", "cshtml", "vbhtml", "rem", "soap",
			"cfm", "cfml", "cfc",
			"jsp", "jspx", "dll", "exe":
			return true
		}
	}
	return false
}

// spell returns s and, after it, the other spellings a suffix reading
// matches s by (see chSuffix), without repeats, in buf.
func spell(s string, buf *[3]string) []string {
	out := append(buf[:0], s)
	if !strings.ContainsAny(s, ".:%(") {
		return out
	}
	for _, dot := range [...]bool{false, true} {
		v := trimTrailing(cutSuffix(s, dot))
		if v != "" && !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	return out
}

// cutSuffix cuts segment s at its first ":" (raw or escaped) after the
// first byte, or, if dot, at its first ".", ":" or "(" (raw or escaped: an
// OData key, "users(42)", names the entity set users).
func cutSuffix(s string, dot bool) string {
	for k := 1; k < len(s); k++ {
		switch {
		case s[k] == ':' || dot && (s[k] == '.' || s[k] == '('):
			return s[:k]
		case s[k] == '%' && k+2 < len(s) && s[k+1] == '3' && (s[k+2] == 'a' || s[k+2] == 'A'):
			return s[:k]
		case dot && s[k] == '%' && k+2 < len(s) && s[k+1] == '2' && s[k+2] == '8':
			return s[:k]
		}
	}
	return s
}

// trimTrailing drops the trailing dots and escaped spaces of segment s, as
// Windows does with file names.
func trimTrailing(s string) string {
	for {
		switch {
		case strings.HasSuffix(s, "."):
			s = s[:len(s)-1]
		case strings.HasSuffix(s, "%20"):
			s = s[:len(s)-3]
		default:
			return s
		}
	}
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
