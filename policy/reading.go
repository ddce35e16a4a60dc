package policy

import "strings"

// A choice is one point on which HTTP stacks disagree when they read the
// path of a request target. Its options are numbered from 0, the option of
// the canonical path. A reading picks one option of every choice; Route
// evaluates every reading, the product of all the options (see
// forEachReading).
type choice uint8

const (
	chSeparators choice = iota // is "\" a separator?
	chParams                   // what becomes of ";params"?
	chComma                    // does "," start parameters too?
	chFragment                 // does "#" start a fragment?
	chAuthority                // is a leading run of separators an authority?
	chDots                     // when, if ever, are dot segments resolved?
	chDecode                   // are escapes decoded before matching?
	chMerge                    // are empty segments skipped when matching?
	chScript                   // is the path after a script segment the path?
	chCase                     // which case differences are ignored?
	chSuffix                   // are segments matched without their suffix?
	numChoices
)

// The choices before firstWalkChoice decide how the path is split into
// segments (see splitter.split); the others how segments are matched
// against policy paths (see evaluation.walk). Those from firstHeuristic on
// are heuristic: a reading with a non-zero option for one of them never
// counts as landing in no module (see evaluation.land).
const (
	firstWalkChoice = chDecode
	firstHeuristic  = chCase
)

// choices describes the options of every choice, option 0 first. The
// number of options of a choice is the length of its list.
var choices = [numChoices]struct {
	name    string
	options []string
}{
	chSeparators: {"separators", []string{
		`"\" is a separator, as "/" (WHATWG URL parsers, Envoy's normalize_path, Windows)`,
		`"\" is an ordinary character (RFC 3986)`,
	}},
	chParams: {"params", []string{
		`";params" dropped from every segment (servlet containers)`,
		`";" is an ordinary character`,
		`everything from the first ";" dropped`,
	}},
	chComma: {"comma", []string{
		`"," is an ordinary character (Envoy, most routers)`,
		`",params" dropped from every segment: a segment cut at its first "," or escaped "%2C" (RFC 3986 section 3.3 names "," with ";" as a parameter delimiter: "name,1.1" for "name;v=1.1"; a stack that decodes first sees the escaped one)`,
	}},
	chFragment: {"fragment", []string{
		`"#" starts a fragment, which is dropped`,
		`"#" is an ordinary character (Go's net/http)`,
	}},
	chAuthority: {"authority", []string{
		"no authority: the whole target is the path",
		"a leading run of two or more separators starts an authority that ends at the next separator; the rest is the path (WHATWG URL parsers skip the whole run; RFC 3986 reads //host/path)",
	}},
	chDots: {"dots", []string{
		`"." and ".." resolved on the path with its empty segments, then repeated separators merged (RFC 3986, Envoy)`,
		`repeated separators merged, then "." and ".." resolved (many backends)`,
		`"." and ".." kept as ordinary segments (Werkzeug, Express and Rails prefix mounts)`,
	}},
	chDecode: {"decode", []string{
		"escapes decoded before matching",
		"escapes not decoded: a segment holding one matches no policy path",
	}},
	chMerge: {"merge", []string{
		"empty segments skipped when matching (repeated separators merged)",
		"empty segments kept: one matches no policy path",
	}},
	chScript: {"script", []string{
		"a segment naming a server script is an ordinary segment",
		`the path after the first segment that names a server script ("index.php", "app.cgi", "default.aspx"; see isScript), when more follow: the script's PATH_INFO, which a front controller routes by (Symfony and Laravel read /index.php/api/v1/users as /api/v1/users)`,
	}},
	chCase: {"case", []string{
		"ASCII case ignored",
		`also the non-ASCII code points some stack reads as ASCII letters or digits read as them, and combining marks dropped: Unicode simple case mapping ("ı" "İ" "ſ", Kelvin sign: Java's equalsIgnoreCase, .NET's OrdinalIgnoreCase), compatibility forms (NFKC, NFKD: fullwidth "ｕ", "𝐮", "ﬃ"), diacritics and Windows best fit ("ū", "ł", "ø"); see asciiFolds`,
	}},
	chSuffix: {"suffix", []string{
		"segments matched whole",
		`any segment also matched without its suffix: cut at its first ":" (Windows streams "users::$DATA", "users:$i30:$INDEX_ALLOCATION") or at its first "." or ":" (format suffixes "users.json", custom methods "users:search"), and without trailing dots and escaped spaces (Windows)`,
	}},
}

// reading holds the option of every choice.
type reading [numChoices]uint8

// forEachReading calls visit for every reading, the product of the options
// of all the choices, in odometer order: the last choice varies fastest,
// and the first visit is the zero reading, the canonical path. first is
// the first choice whose option changed since the previous visit (0 on the
// first one); the options of the choices after it are all 0.
//
// Option o > 0 of choice c, and every reading with it, is skipped when
// applies(c, o) is false. applies is asked once every reading with option 0
// of c and the same options of the choices before c has been visited, so
// it may decide from what those visits saw that option o would read the
// path as option 0 does. forEachReading stops when visit returns false.
func forEachReading(applies func(c choice, o uint8) bool, visit func(r reading, first choice) bool) {
	var r reading
	first := choice(0)
	for visit(r, first) {
		c := numChoices - 1
		for {
			o := r[c] + 1
			for int(o) < len(choices[c].options) && !applies(c, o) {
				o++
			}
			if int(o) < len(choices[c].options) {
				r[c] = o
				break
			}
			r[c] = 0
			if c == 0 {
				return
			}
			c--
		}
		first = c
	}
}

// splitter splits the path part of a target into segments, as the choices
// before firstWalkChoice say.
type splitter struct {
	path  string
	flags uint8 // of the target
	hash  int   // index of the first "#" in path, or -1
	semi  int   // index of the first ";" in path, or -1
	nsep  int
	sep   [MaxSegments]uint16 // indexes of the "/" and "\" after path[0]
	// comma[i]: the index of the first "," or escaped "," at or after the
	// start of the segment after separator i-1 (comma[0]: after path[0]),
	// or len(path); set only when the target holds one.
	comma [MaxSegments + 1]uint16
}

func (sp *splitter) init(t target) {
	sp.path, sp.flags, sp.hash, sp.semi, sp.nsep = t.path, t.flags, -1, -1, 0
	if t.flags&fHash != 0 {
		sp.hash = strings.IndexByte(t.path, '#')
	}
	if t.flags&fSemicolon != 0 {
		sp.semi = strings.IndexByte(t.path, ';')
	}
	for i := 1; i < len(t.path); i++ {
		if c := t.path[i]; c == '/' || c == '\\' {
			sp.sep[sp.nsep] = uint16(i)
			sp.nsep++
		}
	}
	if t.flags&fComma != 0 {
		next := -1 // the first comma at or after the segment start, once found
		for i := 0; i <= sp.nsep; i++ {
			start := 1
			if i > 0 {
				start = int(sp.sep[i-1]) + 1
			}
			if next < start {
				next = start + commaParams(t.path[start:])
			}
			sp.comma[i] = uint16(next)
		}
	}
}

// splitFacts are what a split with option 0 of a choice saw that another
// option of it would read differently.
type splitFacts struct {
	authority bool // the path starts with a run of two or more separators
	dot       bool // a "." or ".." segment
	popped    bool // a ".." that removed an empty segment
}

// split appends the segments of the path, read with the options of r for
// the choices before firstWalkChoice, to segs[:0]. Empty segments are kept
// (but with chDots option 1, which merges them first). The path passed scan,
// so it starts with "/" and has at most MaxSegments separators.
func (sp *splitter) split(r *reading, segs []string) ([]string, splitFacts) {
	var f splitFacts
	path := sp.path
	end := len(path)
	if r[chFragment] == 0 && sp.hash >= 0 {
		end = sp.hash
	}
	if r[chParams] == 2 && sp.semi >= 0 && sp.semi < end {
		end = sp.semi
	}
	bsSep := r[chSeparators] == 0
	f.authority = end > 1 && (path[1] == '/' || path[1] == '\\' && bsSep)
	// authority: 2 while in the leading run of separators, 1 on the
	// authority, 0 on the path.
	authority := 0
	if r[chAuthority] != 0 && f.authority {
		authority = 2
	}
	segs = segs[:0]
	start, k, ci := 1, 0, 0 // ci: the index in sp.comma of start
	for {
		j := end
		for ; k < sp.nsep; k++ {
			p := int(sp.sep[k])
			if p >= end {
				k = sp.nsep
				break
			}
			if bsSep || path[p] == '/' {
				j = p
				k++
				break
			}
		}
		s := path[start:j]
		switch {
		case authority == 2 && s == "" && j < end:
			// Still in the leading run.
		case authority > 0:
			authority = 0 // s is the authority: not part of the path
		default:
			if r[chParams] == 0 && sp.semi >= 0 {
				if i := strings.IndexByte(s, ';'); i >= 0 {
					s = s[:i]
				}
			}
			if r[chComma] != 0 && sp.flags&fComma != 0 {
				if c := int(sp.comma[ci]) - start; c < len(s) {
					s = s[:c]
				}
			}
			switch {
			case s == "." || s == "..":
				f.dot = true
				switch {
				case r[chDots] == 2:
					segs = append(segs, s)
				case s == ".." && len(segs) > 0:
					f.popped = f.popped || segs[len(segs)-1] == ""
					segs = segs[:len(segs)-1]
				}
			case s == "" && r[chDots] == 1:
			default:
				segs = append(segs, s)
			}
		}
		if j == end {
			return segs, f
		}
		start, ci = j+1, k
	}
}

// commaParams returns the index in segment s of its first "," or escaped
// "," (%2C, %2c), where ",params" start; len(s) if there is none.
func commaParams(s string) int {
	end := strings.IndexByte(s, ',')
	if end < 0 {
		end = len(s)
	}
	for i := 0; ; i++ {
		k := strings.IndexByte(s[i:end], '%')
		if k < 0 {
			return end
		}
		if i += k; isEscapedComma(s, i) {
			return i
		}
	}
}

// isEscapedComma reports whether s[i:] starts with "%2C" or "%2c".
func isEscapedComma(s string, i int) bool {
	return i+2 < len(s) && s[i] == '%' && s[i+1] == '2' && (s[i+2] == 'C' || s[i+2] == 'c')
}
