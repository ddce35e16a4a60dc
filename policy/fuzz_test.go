package policy

import (
	"errors"
	"math/rand/v2"
	"net/url"
	"path"
	"regexp"
	"slices"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/runes"
	"golang.org/x/text/transform"
	"golang.org/x/text/unicode/norm"
)

// Seeds in code; more under testdata/fuzz/<FuzzName>/.

func FuzzCanonicalize(f *testing.F) {
	for _, p := range testPaths() {
		f.Add(p)
	}
	ex := Example()
	f.Fuzz(func(t *testing.T, raw string) {
		c, err := Canonicalize(raw)
		r, rerr := ex.Route(raw)
		if err != nil {
			checkPathError(t, err)
			if rerr == nil {
				t.Fatalf("Canonicalize(%q) refuses (%v), Route accepts", raw, err)
			}
			return
		}
		if rerr != nil {
			t.Fatalf("Route(%q) refuses (%v), Canonicalize accepts", raw, rerr)
		}
		checkCanonical(t, raw, c)
		if c2, err := Canonicalize(c); err != nil || c2 != c {
			t.Fatalf("Canonicalize not idempotent: %q -> %q -> %q, %v", raw, c, c2, err)
		}
		// The canonical path's module, or, if it has none, an open module
		// a suffix or case reading of it lands in.
		if want := longestPrefix(ex, c); r.Module != want && (want != "" || !landsInOpen(ex, naiveVariants(c))) {
			t.Fatalf("Route(%q).Module = %q; the longest policy path matching canonical %q is in %q", raw, r.Module, c, want)
		}
	})
}

// checkCanonical checks the form of c = Canonicalize(raw).
func checkCanonical(t *testing.T, raw, c string) {
	t.Helper()
	fail := func(why string) {
		t.Helper()
		t.Fatalf("Canonicalize(%q) = %q: %s", raw, c, why)
	}
	if !strings.HasPrefix(c, "/") {
		fail(`does not start with "/"`)
	}
	if len(c) > len(raw) {
		fail("longer than its input")
	}
	if c != "/" && strings.HasSuffix(c, "/") {
		fail(`ends with "/"`)
	}
	if !utf8.ValidString(c) {
		fail("invalid UTF-8")
	}
	for _, bad := range []string{"//", "/./", "/../", `\`, ";", "?", "#", " "} {
		if strings.Contains(c, bad) {
			fail("contains " + bad)
		}
	}
	for _, seg := range strings.Split(c[1:], "/") {
		if seg == "." || seg == ".." {
			fail("has a dot segment")
		}
	}
	for i := 0; i < len(c); i++ {
		switch b := c[i]; {
		case b < 0x20 || b == 0x7f:
			fail("contains a control character")
		case 'A' <= b && b <= 'Z':
			fail("contains upper case")
		case b == '%':
			e, ok := unescape(c, i)
			if !ok || c[i+1] >= 'A' && c[i+1] <= 'F' || c[i+2] >= 'A' && c[i+2] <= 'F' {
				fail("contains a malformed or upper-case escape")
			}
			// Only ASCII characters that may not appear raw stay escaped.
			if e >= 0x80 || class[e]&cRaw != 0 || e < 0x20 || e == 0x7f {
				fail("contains an escape that should be decoded or refused")
			}
		}
	}
}

// longestPrefix returns the module of the longest policy path that is a
// whole-segment prefix of canonical path c: a plain string search, unlike
// the trie walk.
func longestPrefix(p *Policy, c string) string {
	best, bestLen := "", 0
	for _, m := range p.Modules {
		for _, pp := range m.Paths {
			if (c == pp || strings.HasPrefix(c, pp+"/")) && len(pp) > bestLen {
				best, bestLen = m.Name, len(pp)
			}
		}
	}
	return best
}

func FuzzRoute(f *testing.F) {
	for _, p := range testPaths() {
		f.Add(p)
	}
	policies := testPolicies(f)
	f.Fuzz(func(t *testing.T, raw string) {
		for _, p := range policies {
			checkRoute(t, p, raw)
			if _, fast := p.ix.fast(raw); !fast {
				checkSkipping(t, p, raw)
			}
		}
	})
}

// checkRoute checks Route against naive readings of raw.
func checkRoute(t *testing.T, p *Policy, raw string) {
	t.Helper()
	r, err := p.Route(raw)
	checkFastPath(t, p, raw)
	if err != nil {
		checkPathError(t, err)
		return
	}
	if _, err := Canonicalize(raw); err != nil {
		t.Fatalf("Route(%q) accepts, Canonicalize refuses: %v", raw, err)
	}
	if r.RestrictedModule != "" {
		if m, ok := p.Module(r.RestrictedModule); !ok || m.APIKeys != AccessDeny || !r.Restricted {
			t.Fatalf("Route(%q) = %+v: RestrictedModule is not a denied module", raw, r)
		}
	}
	if _, ok := p.Module(r.Module); r.Module != "" && !ok {
		t.Fatalf("Route(%q) = %+v: no such module", raw, r)
	}
	checkModules(t, p, raw, r)
	if r.Restricted {
		return
	}
	for _, reading := range naiveReadings(raw) {
		m := longestPrefix(p, reading)
		mod, _ := p.Module(m)
		if m != "" && mod.APIKeys == AccessDeny || m == "" && p.Default == AccessDeny && !landsInOpen(p, naiveVariants(reading)) {
			t.Fatalf("Route(%q) = %+v, not restricted, but the naive reading %q lands in %q, which is denied", raw, r, reading, m)
		}
	}
}

// naiveVariants returns the suffix and case readings of a decoded path:
// every segment cut at its first ":", or at its first "." or ":", and
// without trailing dots and spaces; letters read as ASCII (refFold).
func naiveVariants(p string) []string {
	var out []string
	for _, cut := range []string{":", ".:("} {
		segs := strings.Split(p, "/")
		for i, s := range segs {
			if j := strings.IndexAny(s, cut); j > 0 {
				s = s[:j]
			}
			segs[i] = strings.TrimRight(s, ". ")
		}
		v := strings.Join(segs, "/")
		out = append(out, v, refFold(v))
	}
	return append(out, refFold(p))
}

// refFold reads p as a stack that folds letters to ASCII ones does:
// compatibility decomposition (NFKD), nonspacing marks dropped, then the
// letters that neither changes (caseAndBestFitFolds). It is written with
// golang.org/x/text's transformers, apart from foldLetters.
func refFold(p string) string {
	s, _, err := transform.String(transform.Chain(norm.NFKD, runes.Remove(runes.In(unicode.Mn))), p)
	if err != nil {
		return p
	}
	var b strings.Builder
	for _, r := range s {
		to := string(r)
		for _, f := range caseAndBestFitFolds {
			if f.r == r {
				to = f.to
			}
		}
		b.WriteString(to)
	}
	return b.String()
}

// landsInOpen reports whether one of paths lands in an open module.
func landsInOpen(p *Policy, paths []string) bool {
	for _, path := range paths {
		if m, ok := p.Module(longestPrefix(p, strings.ToLower(path))); ok && m.APIKeys == AccessAllow {
			return true
		}
	}
	return false
}

// checkModules checks Route.Modules against Route's other fields.
func checkModules(t *testing.T, p *Policy, raw string, r Route) {
	t.Helper()
	if r.RestrictedModule != "" {
		if r.Modules != nil {
			t.Fatalf("Route(%q) = %+v: in a denied module, with Modules", raw, r)
		}
		return
	}
	if len(r.Modules) == 0 || r.Modules[0] != r.Module {
		t.Fatalf("Route(%q) = %+v: Modules does not start with Module", raw, r)
	}
	for i, m := range r.Modules {
		if m == "" && i == 0 {
			continue
		}
		if mod, ok := p.Module(m); !ok || mod.APIKeys != AccessAllow || slices.Index(r.Modules, m) != i {
			t.Fatalf("Route(%q) = %+v: Modules[%d] is not an open module, or repeated", raw, r, i)
		}
	}
}

var (
	naiveParams      = regexp.MustCompile(`;[^/]*`)
	naiveCommaParams = regexp.MustCompile(`(,|%2[cC])[^/]*`)
)

// naiveReadings decodes raw the way simple HTTP stacks do, independently of
// the package's code: fragment dropped or not, "\" as "/" or not, ;params
// dropped or not, ,params dropped or not, then url.PathUnescape, path.Clean
// and strings.ToLower.
func naiveReadings(raw string) []string {
	p, _, _ := strings.Cut(raw, "?")
	var out []string
	for _, frag := range []bool{false, true} {
		p := p
		if frag {
			p, _, _ = strings.Cut(p, "#")
		}
		for _, bs := range []bool{false, true} {
			p := p
			if bs {
				p = strings.ReplaceAll(p, `\`, "/")
			}
			for _, params := range []bool{false, true} {
				p := p
				if params {
					p = naiveParams.ReplaceAllString(p, "")
				}
				for _, comma := range []bool{false, true} {
					p := p
					if comma {
						p = naiveCommaParams.ReplaceAllString(p, "")
					}
					u, err := url.PathUnescape(p)
					if err != nil || !strings.HasPrefix(u, "/") {
						continue
					}
					out = append(out, strings.ToLower(path.Clean(u)))
				}
			}
		}
	}
	return out
}

func FuzzParse(f *testing.F) {
	f.Add(exampleYAML)
	f.Add(nestedYAML)
	f.Add("modules: {}\n")
	f.Add("default: deny\nmodules:\n  a:\n    paths: [/A/b, /a/b/c]\n    api_keys: deny\n")
	f.Add("modules:\n  a: &x {paths: [/a]}\n  b: *x\n")
	f.Add("modules:\n  a: {paths: [/a//b/../c/]}\n")
	f.Fuzz(func(t *testing.T, data string) {
		p, err := Parse("f.yaml", []byte(data))
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("Parse error %v is not a *ParseError", err)
			}
			for _, line := range strings.Split(err.Error(), "\n") {
				if !parseErrorLine.MatchString(line) {
					t.Fatalf("Parse error line %q does not start with file:line:", line)
				}
			}
			return
		}
		if p.Default != AccessAllow && p.Default != AccessDeny {
			t.Fatalf("Default = %v", p.Default)
		}
		for _, m := range p.Modules {
			if !moduleNameRE.MatchString(m.Name) || len(m.Paths) == 0 {
				t.Fatalf("module %+v: bad name or no paths", m)
			}
			for _, pp := range m.Paths {
				if c, err := Canonicalize(pp); err != nil || c != pp || pp == "/" {
					t.Fatalf("module %q path %q is not canonical: %q, %v", m.Name, pp, c, err)
				}
				r, err := p.Route(pp)
				if err != nil || r.Module != m.Name || m.APIKeys == AccessDeny && !r.Restricted {
					t.Fatalf("Route(%q) = %+v, %v; want module %q (%v)", pp, r, err, m.Name, m.APIKeys)
				}
			}
		}
	})
}

var parseErrorLine = regexp.MustCompile(`^f\.yaml:[1-9][0-9]*: \S`)

// spellingPieces are what path tricks are made of.
var spellingPieces = []string{
	"/", "/", "/", "/", `\`, "//", "///", `/\`, "api", "API", "v1", "users", "Users", "projects", "admin", "public",
	"deployments", "auth", "accounts", "..", "..", ".", "..;", ";x", ";", "#", "?", "%75", "%2e", "%2f", "%20",
	".json", ":x", "::$DATA", ":$i30:$INDEX_ALLOCATION", "%3A", "ſ", "%C5%BF", "İ", "x", "42", "@h:1",
	",", ",x", "..,", "%2C", "%2c..",
}

// TestRouteSpellings checks Route against the naive readings on paths made
// of the pieces path tricks are made of, which random bytes rarely hit.
func TestRouteSpellings(t *testing.T) {
	policies := testPolicies(t)
	for _, path := range randomSpellings(1, 50000, 12) {
		for _, p := range policies {
			checkRoute(t, p, path)
		}
	}
}

// testPolicies returns the policies of the tests: the example, nested
// modules with default deny, and open modules in open modules.
func testPolicies(tb testing.TB) []*Policy {
	return []*Policy{Example(), mustParse(tb, nestedYAML), mustParse(tb, modulesYAML)}
}

// randomSpellings returns n random paths (a tenth with -short) of up to
// maxPieces spellingPieces each, the same for the same seed.
func randomSpellings(seed uint64, n, maxPieces int) []string {
	if testing.Short() {
		n /= 10
	}
	rng := rand.New(rand.NewPCG(seed, seed))
	paths := make([]string, n)
	var b strings.Builder
	for i := range paths {
		b.Reset()
		b.WriteString("/")
		for range 1 + rng.IntN(maxPieces) {
			b.WriteString(spellingPieces[rng.IntN(len(spellingPieces))])
		}
		paths[i] = b.String()
	}
	return paths
}
