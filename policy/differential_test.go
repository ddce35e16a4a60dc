package policy

import (
	"bufio"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// The differential fuzz target reads random paths with small reference
// readers modelled on real routers, written independently of the package's
// code, and checks that Route refuses every path that one of them maps into
// a closed module, and lists in Route.Modules every open module one of them
// maps it into.

// A refReader reads a request target as one HTTP stack does and returns
// the paths it may route it by; ok is false if the stack refuses it.
type refReader struct {
	name string
	read func(p *Policy, raw string) (paths []string, ok bool)
}

var refReaders = []refReader{
	{"net/http ServeMux", readServeMux},
	{"Envoy normalize_path+merge_slashes", readEnvoyNormalized},
	{"Envoy without normalization", readEnvoyRaw},
	{"WHATWG URL", readWHATWG},
	{"Werkzeug (decodes, no dot resolution)", readNoDots},
	{"Express prefix mount (no decoding, no dot resolution)", readExpress},
	{"servlet container (;params dropped)", readServlet},
	{"RFC 3986 parameters (;params and ,params dropped)", readParams},
	{"decoded, then ,params dropped", readDecodedCommaParams},
	{"Rails (format suffix, no dot resolution)", readRails},
	{"gRPC transcoding (custom method)", readCustomMethod},
	{"IIS (streams, trailing dots and spaces)", readIIS},
	{"Windows file names before dot segments", readWindowsNames},
	{"letters folded to ASCII (NFKD, marks dropped, best fit)", readFolded},
	{"letters folded to ASCII, no dot resolution", readFoldedNoDots},
}

// beforeQuery returns raw without its query.
func beforeQuery(raw string) string {
	p, _, _ := strings.Cut(raw, "?")
	return p
}

// asciiLower lower-cases ASCII letters only.
func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// readServeMux asks a real net/http ServeMux, with a subtree and an exact
// pattern for every policy path, which pattern a request for raw (made
// lower-case, as the policy ignores case) reaches, after http.ReadRequest
// parses it. ServeMux cleans the path (a redirect to the cleaned path);
// Handler reports the pattern that path reaches.
func readServeMux(p *Policy, raw string) ([]string, bool) {
	req, err := http.ReadRequest(bufio.NewReader(strings.NewReader("GET " + asciiLower(raw) + " HTTP/1.1\r\nHost: h\r\n\r\n")))
	if err != nil {
		return nil, false
	}
	_, pattern := serveMux(p).Handler(req)
	return []string{strings.TrimSuffix(pattern, "/")}, true
}

var muxes = map[*Policy]*http.ServeMux{}

func serveMux(p *Policy) *http.ServeMux {
	if m := muxes[p]; m != nil {
		return m
	}
	m := http.NewServeMux()
	for _, mod := range p.Modules {
		for _, pp := range mod.Paths {
			m.HandleFunc(pp, http.NotFound)
			m.HandleFunc(pp+"/", http.NotFound)
		}
	}
	muxes[p] = m
	return m
}

// readEnvoyNormalized reads raw as Envoy with normalize_path and
// merge_slashes: fragment dropped, "\" read as "/", escapes of unreserved
// characters decoded, dot segments removed (RFC 3986 5.2.4), then repeated
// slashes merged.
func readEnvoyNormalized(_ *Policy, raw string) ([]string, bool) {
	p, _, _ := strings.Cut(beforeQuery(raw), "#")
	p = strings.ReplaceAll(p, `\`, "/")
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		if p[i] == '%' && i+2 < len(p) {
			if v, err := strconv.ParseUint(p[i+1:i+3], 16, 8); err == nil && isUnreserved(byte(v)) {
				b.WriteByte(byte(v))
				i += 2
				continue
			}
		}
		b.WriteByte(p[i])
	}
	p = removeDotSegments(b.String())
	for strings.Contains(p, "//") {
		p = strings.ReplaceAll(p, "//", "/")
	}
	return []string{p}, true
}

func isUnreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-._~", c) >= 0
}

// removeDotSegments is RFC 3986 section 5.2.4, on a path starting with "/".
func removeDotSegments(in string) string {
	var out []string
	segs := strings.Split(in[1:], "/")
	for i, s := range segs {
		switch s {
		case ".":
		case "..":
			if len(out) > 0 {
				out = out[:len(out)-1]
			}
		default:
			out = append(out, s)
			continue
		}
		if i == len(segs)-1 {
			out = append(out, "")
		}
	}
	return "/" + strings.Join(out, "/")
}

// readEnvoyRaw reads raw as Envoy without normalization: the path as sent.
func readEnvoyRaw(_ *Policy, raw string) ([]string, bool) {
	return []string{beforeQuery(raw)}, true
}

// readWHATWG parses raw as a reference relative to http://h/ by the WHATWG URL standard's state machine (special scheme:
// "\" is "/"; a leading run of separators starts the authority; "." and
// ".." and their escaped spellings resolved; ";" ordinary), then decodes
// the path as a backend would.
func readWHATWG(_ *Policy, raw string) ([]string, bool) {
	s := raw
	isSep := func(c byte) bool { return c == '/' || c == '\\' }
	if len(s) >= 2 && isSep(s[0]) && isSep(s[1]) {
		for s != "" && isSep(s[0]) {
			s = s[1:]
		}
		i := strings.IndexAny(s, `/\?#`)
		if i < 0 {
			return []string{"/"}, true
		}
		s = s[i:]
	}
	if i := strings.IndexAny(s, "?#"); i >= 0 {
		s = s[:i]
	}
	var out []string
	segs := strings.Split(strings.ReplaceAll(s, `\`, "/"), "/")[1:]
	for i, seg := range segs {
		last := i == len(segs)-1
		switch strings.ToLower(seg) {
		case ".", "%2e":
			if last {
				out = append(out, "")
			}
		case "..", ".%2e", "%2e.", "%2e%2e":
			if len(out) > 0 {
				out = out[:len(out)-1]
			}
			if last {
				out = append(out, "")
			}
		default:
			out = append(out, seg)
		}
	}
	return decoded("/" + strings.Join(out, "/"))
}

// decoded returns p percent-decoded, as a backend that decodes sees it.
func decoded(p string) ([]string, bool) {
	d, err := url.PathUnescape(p)
	if err != nil {
		return nil, false
	}
	return []string{d}, true
}

// readNoDots reads raw as Werkzeug does: decoded, dot segments and empty
// segments kept.
func readNoDots(_ *Policy, raw string) ([]string, bool) {
	return decoded(beforeQuery(raw))
}

// readExpress reads raw as an Express prefix mount: not decoded, dot
// segments kept.
func readExpress(_ *Policy, raw string) ([]string, bool) {
	return []string{beforeQuery(raw)}, true
}

// readServlet reads raw as a servlet container: ";params" dropped from
// every segment, decoded, dot segments resolved and slashes merged.
func readServlet(_ *Policy, raw string) ([]string, bool) {
	segs := strings.Split(beforeQuery(raw), "/")
	for i, s := range segs {
		segs[i], _, _ = strings.Cut(s, ";")
	}
	d, ok := decoded(strings.Join(segs, "/"))
	if !ok {
		return nil, false
	}
	return []string{path.Clean(d[0])}, true
}

// readParams reads raw as a stack that takes both of RFC 3986 section
// 3.3's parameter delimiters, ";" and ",", as starting parameters: every
// segment cut at the first of them, then decoded, dot segments resolved
// and slashes merged.
func readParams(_ *Policy, raw string) ([]string, bool) {
	segs := strings.Split(beforeQuery(raw), "/")
	for i, s := range segs {
		if j := strings.IndexAny(s, ";,"); j >= 0 {
			segs[i] = s[:j]
		}
	}
	d, ok := decoded(strings.Join(segs, "/"))
	if !ok {
		return nil, false
	}
	return []string{path.Clean(d[0])}, true
}

// readDecodedCommaParams reads raw as a stack that decodes the path first
// and then drops ",params" from every segment (an escaped "," included),
// without resolving dot segments, and with them resolved.
func readDecodedCommaParams(_ *Policy, raw string) ([]string, bool) {
	d, ok := decoded(beforeQuery(raw))
	if !ok {
		return nil, false
	}
	segs := strings.Split(d[0], "/")
	for i, s := range segs {
		segs[i], _, _ = strings.Cut(s, ",")
	}
	p := strings.Join(segs, "/")
	return []string{p, path.Clean(p)}, true
}

// readRails reads raw as Rails routes it: decoded, dot segments kept, the
// format suffix of the last segment dropped.
func readRails(_ *Policy, raw string) ([]string, bool) {
	d, ok := decoded(beforeQuery(raw))
	if !ok {
		return nil, false
	}
	dir, last := path.Split(d[0])
	if i := strings.IndexByte(last, '.'); i > 0 {
		last = last[:i]
	}
	return []string{dir + last}, true
}

// readCustomMethod reads raw as gRPC transcoding does: decoded, cleaned,
// the custom method after the last ":" of the last segment dropped.
func readCustomMethod(_ *Policy, raw string) ([]string, bool) {
	d, ok := decoded(beforeQuery(raw))
	if !ok {
		return nil, false
	}
	dir, last := path.Split(path.Clean(d[0]))
	if i := strings.LastIndexByte(last, ':'); i > 0 {
		last = last[:i]
	}
	return []string{dir + last}, true
}

// readIIS reads raw as IIS and the Windows file system do: "\" is "/",
// decoded, dot segments resolved, and every segment without its stream
// (from its first ":") and its trailing dots and spaces.
func readIIS(_ *Policy, raw string) ([]string, bool) {
	d, ok := decoded(strings.ReplaceAll(beforeQuery(raw), `\`, "/"))
	if !ok {
		return nil, false
	}
	segs := strings.Split(path.Clean(d[0]), "/")
	for i, s := range segs {
		if j := strings.IndexByte(s, ':'); j > 0 {
			s = s[:j]
		}
		segs[i] = strings.TrimRight(s, ". ")
	}
	return []string{strings.Join(segs, "/")}, true
}

// readWindowsNames reads raw as a stack that turns every segment into a
// Windows file name (its stream from the first ":" dropped, then its
// trailing dots and spaces) before it resolves dot segments: "..::$DATA",
// ".. " and "..." are then "..".
func readWindowsNames(_ *Policy, raw string) ([]string, bool) {
	d, ok := decoded(strings.ReplaceAll(beforeQuery(raw), `\`, "/"))
	if !ok {
		return nil, false
	}
	segs := strings.Split(d[0], "/")
	for i, s := range segs {
		if j := strings.IndexByte(s, ':'); j > 0 {
			s = s[:j]
		}
		switch name := strings.TrimRight(s, ". "); {
		case name != "" || s == "":
			segs[i] = name
		case strings.Count(s, ".") >= 2:
			segs[i] = ".."
		default:
			segs[i] = "."
		}
	}
	return []string{path.Clean(strings.Join(segs, "/"))}, true
}

// readFolded reads raw as a stack that folds letters to ASCII ones
// (refFold) after decoding it, and then cleans it.
func readFolded(_ *Policy, raw string) ([]string, bool) {
	d, ok := decoded(beforeQuery(raw))
	if !ok {
		return nil, false
	}
	return []string{path.Clean(refFold(d[0]))}, true
}

// readFoldedNoDots is readFolded without dot resolution.
func readFoldedNoDots(_ *Policy, raw string) ([]string, bool) {
	d, ok := decoded(beforeQuery(raw))
	if !ok {
		return nil, false
	}
	return []string{refFold(d[0])}, true
}

// refModule returns the module of the longest policy path that is a
// whole-segment, ASCII-case-insensitive prefix of path, or "".
func refModule(p *Policy, path string) string {
	return longestPrefix(p, asciiLower(path))
}

func checkDifferential(t *testing.T, p *Policy, raw string) {
	t.Helper()
	r, err := p.Route(raw)
	if err != nil {
		return // refused as invalid
	}
	for _, rd := range refReaders {
		paths, ok := rd.read(p, raw)
		if !ok {
			continue
		}
		for _, out := range paths {
			m := refModule(p, out)
			if m == "" {
				continue
			}
			mod, _ := p.Module(m)
			switch {
			case mod.APIKeys == AccessDeny && !r.Restricted:
				t.Fatalf("%s reads %q as %q, in closed module %s; Route = %+v", rd.name, raw, out, m, r)
			case mod.APIKeys == AccessAllow && !r.Restricted && !slices.Contains(r.Modules, m):
				t.Fatalf("%s reads %q as %q, in open module %s; Route = %+v does not list it", rd.name, raw, out, m, r)
			}
		}
	}
}

func FuzzDifferential(f *testing.F) {
	for _, p := range testPaths() {
		f.Add(p)
	}
	for _, dir := range []string{"FuzzRoute", "FuzzCanonicalize"} {
		for _, s := range corpus(f, dir) {
			f.Add(s)
		}
	}
	policies := testPolicies(f)
	f.Fuzz(func(t *testing.T, raw string) {
		for _, p := range policies {
			checkDifferential(t, p, raw)
		}
	})
}

// corpus returns the strings of the fuzz corpus testdata/fuzz/<name>.
func corpus(tb testing.TB, name string) []string {
	files, err := filepath.Glob(filepath.Join("testdata", "fuzz", name, "*"))
	if err != nil {
		tb.Fatal(err)
	}
	var out []string
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			tb.Fatal(err)
		}
		for _, line := range strings.Split(string(data), "\n") {
			if lit, ok := strings.CutPrefix(line, "string("); ok {
				if s, err := strconv.Unquote(strings.TrimSuffix(lit, ")")); err == nil {
					out = append(out, s)
				}
			}
		}
	}
	if len(out) == 0 {
		tb.Fatalf("no corpus in testdata/fuzz/%s", name)
	}
	return out
}

// TestDifferentialSpellings runs the differential check on paths made of
// the pieces path tricks are made of.
func TestDifferentialSpellings(t *testing.T) {
	policies := testPolicies(t)
	for _, path := range append(testPaths(), randomSpellings(5, 5000, 10)...) {
		for _, p := range policies {
			checkDifferential(t, p, path)
		}
	}
}
