package policy

import (
	"fmt"
	"slices"
	"testing"
)

// TestReadingsAreTheProduct checks that forEachReading visits every
// combination of the options of every choice exactly once, so that a
// choice or option added to the table is combined with all the others.
func TestReadingsAreTheProduct(t *testing.T) {
	want := 1
	for c, ch := range choices {
		if ch.name == "" || len(ch.options) < 2 {
			t.Errorf("choice %d (%q) has %d options; a choice needs a name and at least two options", c, ch.name, len(ch.options))
		}
		want *= len(ch.options)
	}
	seen := make(map[reading]bool)
	var prev reading
	n := 0
	forEachReading(func(choice, uint8) bool { return true }, func(r reading, first choice) bool {
		if seen[r] {
			t.Errorf("reading %v visited twice", r)
		}
		seen[r] = true
		for c := range numChoices {
			if int(r[c]) >= len(choices[c].options) {
				t.Errorf("reading %v: option %d of %s does not exist", r, r[c], choices[c].name)
			}
			switch {
			case c < first && r[c] != prev[c]:
				t.Errorf("reading %v after %v: first = %d, but %s changed", r, prev, first, choices[c].name)
			case c > first && r[c] != 0:
				t.Errorf("reading %v: first = %d, but %s is not 0", r, first, choices[c].name)
			}
		}
		if n == 0 && r != (reading{}) {
			t.Errorf("first reading %v, want the zero reading", r)
		}
		prev = r
		n++
		return true
	})
	if n != want || len(seen) != want {
		t.Errorf("forEachReading visited %d readings (%d distinct); the product of the choices' options is %d", n, len(seen), want)
	}
}

// witnesses holds, for every option o > 0 of every choice, a path of the
// example policy that the reading with option o of that choice, and 0 for
// the others, lands elsewhere than the canonical reading does: proof that
// the option is implemented. Add one with every new option.
var witnesses = map[string][]string{
	"separators": {1: `/api/v1\users`},
	"params":     {1: "/api/v1/users;x", 2: "/api/v1/projects;/../users"},
	"comma":      {1: "/api/v1/users,x"},
	"fragment":   {1: "/api/v1/projects#/../users"},
	"authority":  {1: "//x/api/v1/users"},
	"dots":       {1: "/api/v1/projects//../users", 2: "/api/v1/users/../projects"},
	"decode":     {1: "/api/v1/%75sers"},
	"merge":      {1: "/api/v1//users"},
	"script":     {1: "/index.php/api/v1/users"},
	"case":       {1: "/api/v1/uſers"},
	"suffix":     {1: "/api/v1/users.json"},
}

func TestEveryOptionHasAWitness(t *testing.T) {
	p := Example()
	for c, ch := range choices {
		for o := 1; o < len(ch.options); o++ {
			w := witnesses[ch.name]
			if o >= len(w) || w[o] == "" {
				t.Errorf("choice %s option %d (%s) has no witness path", ch.name, o, ch.options[o])
				continue
			}
			var r reading
			r[c] = uint8(o)
			if base, alt := landing(t, p, w[o], reading{}), landing(t, p, w[o], r); base == alt {
				t.Errorf("witness %q of %s option %d: lands in %s with and without it", w[o], ch.name, o, base)
			}
		}
	}
}

// landing returns what the one reading r of raw lands in.
func landing(t *testing.T, p *Policy, raw string, r reading) string {
	t.Helper()
	tg, err := scan(raw)
	if err != nil {
		t.Fatalf("scan(%q): %v", raw, err)
	}
	var e evaluation
	e.init(p.ix, tg)
	segs, _ := e.sp.split(&r, e.buf[:0])
	e.nseg = len(segs)
	e.walk(&r)
	return fmt.Sprintf("sure %d, open %v %v, denied %d", e.group.sure, e.nearOpen[:min(e.nopen, len(e.nearOpen))], e.farOpen, e.denied)
}

// routeAll is Route without skipping any reading.
func routeAll(p *Policy, raw string) (Route, error) {
	t, err := scan(raw)
	if err != nil {
		return Route{}, err
	}
	var e evaluation
	e.init(p.ix, t)
	forEachReading(func(choice, uint8) bool { return true }, e.visit)
	return e.route(), nil
}

// checkSkipping checks that the readings Route skips read the path as the
// ones it computes do.
func checkSkipping(t *testing.T, p *Policy, raw string) {
	t.Helper()
	got, err := p.ix.slow(raw, false)
	want, werr := routeAll(p, raw)
	if (err == nil) != (werr == nil) || err == nil && !sameRoute(got, want) {
		t.Fatalf("path %q: Route gives %+v, %v; every reading gives %+v, %v", raw, got, err, want, werr)
	}
}

func TestSkippedReadingsAgree(t *testing.T) {
	policies := testPolicies(t)
	for _, path := range append(testPaths(), randomSpellings(3, 1500, 10)...) {
		for _, p := range policies {
			checkSkipping(t, p, path)
		}
	}
}

// A policy with open modules nested in open modules, and several open
// modules a path can reach at once.
const modulesYAML = `
modules:
  projects: {paths: [/api/v1/projects]}
  public:   {paths: [/api/v1/projects/public]}
  deployments: {paths: [/api/v1/deployments]}
  users:    {paths: [/api/v1/users], api_keys: deny}
`

// TestRouteModules checks Route.Module and Route.Modules: the module a
// path belongs to, and every open module whose scopes the key must hold.
func TestRouteModules(t *testing.T) {
	p := mustParse(t, modulesYAML)
	ex := Example()
	tests := []struct {
		name    string
		p       *Policy
		path    string
		module  string
		modules []string
	}{
		{"plain", p, "/api/v1/projects/42", "projects", []string{"projects"}},
		{"no module", p, "/healthz", "", []string{""}},
		{"nested open module", p, "/api/v1/projects/public/x", "public", []string{"public"}},

		// A suffix or case reading puts the canonical path in an open
		// module: the path belongs to it.
		{"format suffix", ex, "/api/v1/projects.json", "projects", nil},
		{"format suffix and more", ex, "/api/v1/projects.json/42", "projects", nil},
		{"custom method", ex, "/api/v1/projects:search", "projects", nil},
		{"escaped custom method", ex, "/api/v1/projects%3Abatch", "projects", nil},
		{"trailing dot", ex, "/api/v1/projects.", "projects", nil},
		{"trailing escaped space", ex, "/api/v1/deployments%20", "deployments", nil},
		{"stream", ex, "/api/v1/projects::$DATA", "projects", nil},
		{"named stream", ex, "/api/v1/deployments:$i30:$INDEX_ALLOCATION/7", "deployments", nil},
		{"long s", ex, "/api/v1/projectſ", "projects", nil},
		{"suffix on a name no module has", ex, "/api/v1/projectsx.json", "", nil},

		// Readings that land in several open modules: all count.
		{"dot-dot across modules", p, "/api/v1/projects/../deployments", "deployments", []string{"deployments", "projects"}},
		{"dot-dot params across modules", p, "/api/v1/deployments/..;/projects", "projects", []string{"projects", "deployments"}},
		{"comma params on a module", p, "/api/v1/projects,v=2/1", "", []string{"", "projects"}},
		{"comma params on dot-dot across modules", p, "/api/v1/deployments/..,x/projects", "deployments", []string{"deployments", "projects"}},
		{"suffix into a nested module", p, "/api/v1/projects/public.json", "projects", []string{"projects", "public"}},
		{"escape hides a nested module", p, "/api/v1/projects/%70ublic", "public", []string{"public", "projects"}},
		{"empty segment hides a nested module", p, "/api/v1/projects//public", "public", []string{"public", "projects"}},
		{"fragment hides another module", p, "/api/v1/deployments#/../projects", "deployments", []string{"deployments", "projects"}},
		{"authority leads to another module", p, "//x/api/v1/projects/../deployments", "", []string{"", "deployments", "projects"}},
		{"no module, then a module", p, "/api/v1/projects/../../x", "", []string{"", "projects"}},
		{"three slashes into a module", p, "///x/api/v1/deployments", "", []string{"", "deployments"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := Route{Module: tt.module, Modules: tt.modules}
			if r, err := tt.p.Route(tt.path); err != nil || !sameRoute(r, want) {
				t.Errorf("Route(%q) = %+v, %v; want %+v", tt.path, r, err, want)
			}
		})
	}
}

func TestRouteModulesShared(t *testing.T) {
	p := Example()
	for _, path := range []string{"/api/v1/projects", "/api/v1/projects.json", "/x"} {
		r, err := p.Route(path)
		if err != nil || len(r.Modules) != 1 || cap(r.Modules) != 1 {
			t.Errorf("Route(%q).Modules = %q (cap %d), %v; want one module and no spare capacity", path, r.Modules, cap(r.Modules), err)
		}
		if m := append(r.Modules, "x"); &m[0] == &r.Modules[0] {
			t.Errorf("Route(%q): append to Modules writes into the shared array", path)
		}
	}
	if r, _ := p.Route("/api/v1/users"); r.Modules != nil {
		t.Errorf("Route.Modules in a denied module = %q, want nil", r.Modules)
	}
	// With default deny, a caller that takes the module from Envoy's
	// route needs the modules of a path only the default restricts.
	nested := mustParse(t, nestedYAML)
	for path, want := range map[string][]string{
		"/api/v1/other":              {""},
		"//api/v1/projects":          {"projects"},
		"/api/v1/projects/../x":      {"", "projects"},
		"/api/v1/projects.json#x/..": {"projects"},
	} {
		if r, err := nested.Route(path); err != nil || !r.Restricted || !slices.Equal(r.Modules, want) {
			t.Errorf("default deny: Route(%q) = %+v, %v; want Modules %q", path, r, err, want)
		}
	}
}

func TestRouteAllocations(t *testing.T) {
	p := Example()
	for _, path := range []string{"/api/v1/projects/42/tasks?page=2", "/api/v1/users/42", "/healthz", "/api/v1/projects.json", "/api/v1/projects/caf%C3%A9/tasks.json"} {
		if n := testing.AllocsPerRun(100, func() { _, _ = p.Route(path) }); n != 0 {
			t.Errorf("Route(%q) allocates %v times, want 0", path, n)
		}
	}
	if r, _ := p.Route("/api/v1/projects/42"); !slices.Equal(r.Modules, []string{"projects"}) {
		t.Errorf("Modules = %q", r.Modules)
	}
}
