package policy

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func TestExample(t *testing.T) {
	p := Example()
	want := &Policy{
		Default: AccessAllow,
		Modules: []Module{
			{Name: "accounts", Paths: []string{"/api/v1/accounts"}, APIKeys: AccessDeny},
			{Name: "users", Paths: []string{"/api/v1/users"}, APIKeys: AccessDeny},
			{Name: "authentication", Paths: []string{"/api/v1/auth", "/api/v1/api-keys"}, APIKeys: AccessDeny},
			{Name: "projects", Paths: []string{"/api/v1/projects"}, APIKeys: AccessAllow},
			{Name: "deployments", Paths: []string{"/api/v1/deployments"}, APIKeys: AccessAllow},
		},
	}
	if diff := cmp.Diff(want, p, cmpopts.IgnoreUnexported(Policy{})); diff != "" {
		t.Errorf("Example() mismatch (-want +got):\n%s", diff)
	}
	// ExampleYAML is what Example parses.
	q, err := Parse("example.yaml", ExampleYAML)
	if err != nil {
		t.Fatalf("Parse(ExampleYAML): %v", err)
	}
	if diff := cmp.Diff(p, q, cmpopts.IgnoreUnexported(Policy{})); diff != "" {
		t.Errorf("Parse(ExampleYAML) differs from Example() (-Example +Parse):\n%s", diff)
	}
	// Each call returns its own Policy: changing one changes no other.
	p.Modules[1].Paths[0] = "/changed"
	if got := Example().Modules[1].Paths[0]; got != "/api/v1/users" {
		t.Errorf("after changing a returned Policy, Example().Modules[1].Paths[0] = %q, want %q", got, "/api/v1/users")
	}
	if r, _ := p.Route("/api/v1/users"); !r.Restricted {
		t.Errorf("changing Policy.Modules changed Route: %+v", r)
	}
}

func TestModule(t *testing.T) {
	p := Example()
	tests := []struct {
		name   string
		want   Module
		wantOK bool
	}{
		{"users", Module{Name: "users", Paths: []string{"/api/v1/users"}, APIKeys: AccessDeny}, true},
		{"authentication", Module{Name: "authentication", Paths: []string{"/api/v1/auth", "/api/v1/api-keys"}, APIKeys: AccessDeny}, true},
		{"projects", Module{Name: "projects", Paths: []string{"/api/v1/projects"}, APIKeys: AccessAllow}, true},
		{"Users", Module{}, false}, // names are exact
		{"nope", Module{}, false},
		{"", Module{}, false},
	}
	for _, tt := range tests {
		got, ok := p.Module(tt.name)
		if ok != tt.wantOK {
			t.Errorf("Module(%q) ok = %v, want %v", tt.name, ok, tt.wantOK)
		}
		if diff := cmp.Diff(tt.want, got, cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("Module(%q) mismatch (-want +got):\n%s", tt.name, diff)
		}
	}
	// The returned Paths are a copy.
	m, _ := p.Module("users")
	m.Paths[0] = "/changed"
	if m2, _ := p.Module("users"); m2.Paths[0] != "/api/v1/users" {
		t.Errorf("changing a returned Module changed the policy: %q", m2.Paths[0])
	}
	var nilPolicy *Policy
	if _, ok := nilPolicy.Module("users"); ok {
		t.Errorf("(*Policy)(nil).Module(users) ok = true")
	}
}

func TestAccessString(t *testing.T) {
	for a, want := range map[Access]string{AccessAllow: "allow", AccessDeny: "deny", Access(7): "Access(7)"} {
		if got := a.String(); got != want {
			t.Errorf("Access(%d).String() = %q, want %q", int(a), got, want)
		}
	}
	var zero Access
	if zero != AccessDeny {
		t.Errorf("zero Access = %v, want deny (fail closed)", zero)
	}
}

func TestParseValid(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want *Policy
	}{
		{
			name: "empty modules",
			yaml: "modules: {}\n",
			want: &Policy{Default: AccessAllow},
		},
		{
			name: "default deny, quoted values, flow style",
			yaml: `{"default": "deny", "modules": {"projects": {"paths": ["/api/v1/projects"], "api_keys": "allow"}}}`,
			want: &Policy{Default: AccessDeny, Modules: []Module{{Name: "projects", Paths: []string{"/api/v1/projects"}, APIKeys: AccessAllow}}},
		},
		{
			name: "paths stored lower-case, api_keys defaults to allow",
			yaml: "modules:\n  projects:\n    paths: [/API/V1/Projects, /api/v2/projects]\n",
			want: &Policy{Default: AccessAllow, Modules: []Module{{Name: "projects", Paths: []string{"/api/v1/projects", "/api/v2/projects"}, APIKeys: AccessAllow}}},
		},
		{
			name: "nested prefixes across modules, in file order",
			yaml: "modules:\n  admin:\n    paths: [/api/v1/projects/admin]\n    api_keys: deny\n  projects:\n    paths: [/api/v1/projects]\n",
			want: &Policy{Default: AccessAllow, Modules: []Module{
				{Name: "admin", Paths: []string{"/api/v1/projects/admin"}, APIKeys: AccessDeny},
				{Name: "projects", Paths: []string{"/api/v1/projects"}, APIKeys: AccessAllow},
			}},
		},
		{
			name: "every character a policy path may hold",
			yaml: "modules:\n  m_1-x:\n    paths: [\"/a-b.c_d~e!f$g&h'i(j)k*l+m,n=o:p@q/.well-known/x..y\"]\n",
			want: &Policy{Default: AccessAllow, Modules: []Module{{Name: "m_1-x", Paths: []string{"/a-b.c_d~e!f$g&h'i(j)k*l+m,n=o:p@q/.well-known/x..y"}, APIKeys: AccessAllow}}},
		},
		{
			name: "comments and document markers",
			yaml: "# a policy\n---\ndefault: allow # yes\nmodules: {} # none\n...\n",
			want: &Policy{Default: AccessAllow},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse("policy.yaml", []byte(tt.yaml))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if diff := cmp.Diff(tt.want, got, cmpopts.IgnoreUnexported(Policy{}), cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("Parse mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want string // the whole error text; several errors are one per line
	}{
		// The file as a whole.
		{"empty file", "", `policy.yaml:1: empty policy file: want a mapping with "modules" (and optionally "default"); see keygate's example policy`},
		{"only comments", "# nothing\n\n", `policy.yaml:1: empty policy file: want a mapping with "modules" (and optionally "default"); see keygate's example policy`},
		{"null document", "---\n~\n", `policy.yaml:2: empty policy file: want a mapping with "modules" (and optionally "default"); see keygate's example policy`},
		{"two documents", "modules: {}\n---\nmodules: {}\n", `policy.yaml:2: a second YAML document: a policy file holds one (remove the "---")`},
		{"syntax error first line", "modules: {x: y: z}\n", `policy.yaml:1: invalid YAML: did not find expected ',' or '}'`},
		{"syntax error later line", "default: allow\nmodules:\n\tusers: {}\n", `policy.yaml:3: invalid YAML: found character that cannot start any token`},
		{"syntax error in second document", "modules: {}\n---\n[\n", `policy.yaml:3: invalid YAML: did not find expected node content`},
		{"top level is a list", "- modules\n", `policy.yaml:1: a policy is a mapping with the keys "default" and "modules", got a list`},
		{"top level is a string", "allow\n", `policy.yaml:1: a policy is a mapping with the keys "default" and "modules", got "allow"`},
		{"anchor", "default: &d allow\nmodules: {}\n", `policy.yaml:1: YAML anchors (&d) are not supported in a policy file`},
		{"alias", "modules:\n  a: &m {paths: [/a]}\n  b: *m\n", "policy.yaml:2: YAML anchors (&m) are not supported in a policy file\npolicy.yaml:3: YAML aliases (*m) are not supported in a policy file"},
		{"too large", strings.Repeat("#", MaxPolicySize+1), `policy.yaml:1: policy file is larger than 1048576 bytes`},

		// Top-level keys.
		{"missing modules", "default: allow\n", `policy.yaml:1: missing "modules": list the modules of your API, or write "modules: {}" for none`},
		{"unknown top-level key", "default: allow\nmodule: {}\n", "policy.yaml:1: missing \"modules\": list the modules of your API, or write \"modules: {}\" for none\npolicy.yaml:2: unknown key \"module\" (known keys: default, modules)"},
		{"duplicate top-level key", "modules: {}\ndefault: allow\ndefault: deny\n", `policy.yaml:3: duplicate key "default" (first at line 2)`},
		{"non-string key", "modules: {}\n1: x\n", `policy.yaml:2: key 1 (int) is not a string`},
		{"default bad value", "default: maybe\nmodules: {}\n", `policy.yaml:1: default: must be "allow" or "deny", got "maybe"`},
		{"default upper case", "default: Allow\nmodules: {}\n", `policy.yaml:1: default: must be "allow" or "deny", got "Allow"`},
		{"default boolean", "modules: {}\ndefault: false\n", `policy.yaml:2: default: must be "allow" or "deny", got false (bool)`},
		{"default null", "modules: {}\ndefault:\n", `policy.yaml:2: default: must be "allow" or "deny", got nothing (null)`},
		{"default list", "modules: {}\ndefault: [allow]\n", `policy.yaml:2: default: must be "allow" or "deny", got a list`},
		{"default custom tag", "modules: {}\ndefault: !access allow\n", `policy.yaml:2: default: must be "allow" or "deny", got a value tagged "!access"`},
		{"modules null", "modules:\n", `policy.yaml:1: modules: must be a mapping of module names to modules (or "{}" for none), got nothing (null)`},
		{"modules list", "modules:\n  - users\n", `policy.yaml:2: modules: must be a mapping of module names to modules (or "{}" for none), got a list`},

		// Modules.
		{"module name upper case", "modules:\n  Users:\n    paths: [/api/v1/users]\n", `policy.yaml:2: modules: module name "Users" must be a lower-case letter followed by at most 62 lower-case letters, digits, "_" or "-"`},
		{"module name with colon", "modules:\n  'users:read':\n    paths: [/api/v1/users]\n", `policy.yaml:2: modules: module name "users:read" must be a lower-case letter followed by at most 62 lower-case letters, digits, "_" or "-"`},
		{"module name with star", "modules:\n  '*':\n    paths: [/api/v1/users]\n", `policy.yaml:2: modules: module name "*" must be a lower-case letter followed by at most 62 lower-case letters, digits, "_" or "-"`},
		{"module name with space", "modules:\n  'my users':\n    paths: [/api/v1/users]\n", `policy.yaml:2: modules: module name "my users" must be a lower-case letter followed by at most 62 lower-case letters, digits, "_" or "-"`},
		{"module name starts with digit", "modules:\n  1users:\n    paths: [/api/v1/users]\n", `policy.yaml:2: modules: module name "1users" must be a lower-case letter followed by at most 62 lower-case letters, digits, "_" or "-"`},
		{"module name too long", "modules:\n  " + strings.Repeat("a", 64) + ":\n    paths: [/api/v1/users]\n", `policy.yaml:2: modules: module name "` + strings.Repeat("a", 64) + `" must be a lower-case letter followed by at most 62 lower-case letters, digits, "_" or "-"`},
		{"module name empty", "modules:\n  '':\n    paths: [/api/v1/users]\n", `policy.yaml:2: modules: module name "" must be a lower-case letter followed by at most 62 lower-case letters, digits, "_" or "-"`},
		{"duplicate module", "modules:\n  users:\n    paths: [/api/v1/users]\n  users:\n    paths: [/api/v2/users]\n", `policy.yaml:4: modules: duplicate module "users" (first at line 2)`},
		{"module null", "modules:\n  users:\n", `policy.yaml:2: modules.users: must be a mapping with "paths" and optionally "api_keys" and "dry_run", got nothing (null)`},
		{"module is a list", "modules:\n  users: [/api/v1/users]\n", `policy.yaml:2: modules.users: must be a mapping with "paths" and optionally "api_keys" and "dry_run", got a list`},
		{"module unknown key", "modules:\n  users:\n    paths: [/api/v1/users]\n    api_key: deny\n", `policy.yaml:4: modules.users: unknown key "api_key" (known keys: paths, api_keys, dry_run)`},
		{"dry_run not a boolean", "modules:\n  users:\n    paths: [/api/v1/users]\n    dry_run: yes\n", `policy.yaml:4: modules.users.dry_run: must be true or false, got "yes"`},
		{"dry_run a string", "modules:\n  users:\n    paths: [/api/v1/users]\n    dry_run: \"true\"\n", `policy.yaml:4: modules.users.dry_run: must be true or false, got "true"`},
		{"module duplicate key", "modules:\n  users:\n    paths: [/api/v1/users]\n    api_keys: deny\n    api_keys: allow\n", `policy.yaml:5: modules.users: duplicate key "api_keys" (first at line 4)`},
		{"module missing paths", "modules:\n  users:\n    api_keys: deny\n", `policy.yaml:2: modules.users: missing "paths": list the path prefixes of the module`},
		{"api_keys bad value", "modules:\n  users:\n    paths: [/api/v1/users]\n    api_keys: maybe\n", `policy.yaml:4: modules.users.api_keys: must be "allow" or "deny", got "maybe"`},
		{"api_keys boolean", "modules:\n  users:\n    paths: [/api/v1/users]\n    api_keys: false\n", `policy.yaml:4: modules.users.api_keys: must be "allow" or "deny", got false (bool)`},
		{"api_keys null", "modules:\n  users:\n    paths: [/api/v1/users]\n    api_keys:\n", `policy.yaml:4: modules.users.api_keys: must be "allow" or "deny", got nothing (null)`},

		// Paths.
		{"paths is a string", "modules:\n  users:\n    paths: /api/v1/users\n", `policy.yaml:3: modules.users.paths: must be a list of paths, like [/api/v1/users], got "/api/v1/users"`},
		{"paths empty", "modules:\n  users:\n    paths: []\n", `policy.yaml:3: modules.users.paths: must list at least one path`},
		{"path not a string", "modules:\n  users:\n    paths:\n      - /api/v1/users\n      - 42\n", `policy.yaml:5: modules.users.paths[1]: must be a path, got 42 (int)`},
		{"path is a mapping", "modules:\n  users:\n    paths:\n      - {a: b}\n", `policy.yaml:4: modules.users.paths[0]: must be a path, got a mapping`},
		{"path empty", "modules:\n  users:\n    paths: ['']\n", `policy.yaml:3: modules.users.paths[0]: a path must not be empty`},
		{"path relative", "modules:\n  users:\n    paths: [api/v1/users]\n", `policy.yaml:3: modules.users.paths[0]: "api/v1/users" must start with "/"`},
		{"path absolute URL", "modules:\n  users:\n    paths: ['http://x/api/v1/users']\n", `policy.yaml:3: modules.users.paths[0]: "http://x/api/v1/users" must start with "/"`},
		{"path root", "modules:\n  all:\n    paths: [/]\n", `policy.yaml:3: modules.all.paths[0]: "/" would match every path; use "default" for the paths that match no module`},
		{"path root twice", "modules:\n  all:\n    paths: [//]\n", `policy.yaml:3: modules.all.paths[0]: "//" would match every path; use "default" for the paths that match no module`},
		{"path trailing slash", "modules:\n  users:\n    paths: [/api/v1/users/]\n", `policy.yaml:3: modules.users.paths[0]: "/api/v1/users/" must not end with "/"; write "/api/v1/users"`},
		{"path double slash", "modules:\n  users:\n    paths: [/api//v1/users]\n", `policy.yaml:3: modules.users.paths[0]: "/api//v1/users" is not canonical (it has an empty, "." or ".." segment); write "/api/v1/users"`},
		{"path dot segment", "modules:\n  users:\n    paths: [/api/./v1/users]\n", `policy.yaml:3: modules.users.paths[0]: "/api/./v1/users" is not canonical (it has an empty, "." or ".." segment); write "/api/v1/users"`},
		{"path dot-dot segment", "modules:\n  users:\n    paths: [/api/v2/../v1/users]\n", `policy.yaml:3: modules.users.paths[0]: "/api/v2/../v1/users" is not canonical (it has an empty, "." or ".." segment); write "/api/v1/users"`},
		{"path percent-escape", "modules:\n  users:\n    paths: [/api/v1/%75sers]\n", `policy.yaml:3: modules.users.paths[0]: "/api/v1/%75sers" holds '%'; a policy path holds ASCII letters, digits, "/" and -._~!$&'()*+,=:@ (write the character itself, not a percent-escape)`},
		{"path params", "modules:\n  users:\n    paths: [/api/v1/users;v=1]\n", `policy.yaml:3: modules.users.paths[0]: "/api/v1/users;v=1" holds ';'; a policy path holds ASCII letters, digits, "/" and -._~!$&'()*+,=:@ (a policy path has no ;params, they are dropped before matching)`},
		{"path query", "modules:\n  users:\n    paths: ['/api/v1/users?x=1']\n", `policy.yaml:3: modules.users.paths[0]: "/api/v1/users?x=1" holds '?'; a policy path holds ASCII letters, digits, "/" and -._~!$&'()*+,=:@ (a policy path has no query)`},
		{"path backslash", "modules:\n  users:\n    paths: ['/api\\v1']\n", `policy.yaml:3: modules.users.paths[0]: "/api\\v1" holds '\\'; a policy path holds ASCII letters, digits, "/" and -._~!$&'()*+,=:@ (use "/")`},
		{"path space", "modules:\n  users:\n    paths: ['/api/v1/my users']\n", `policy.yaml:3: modules.users.paths[0]: "/api/v1/my users" holds ' '; a policy path holds ASCII letters, digits, "/" and -._~!$&'()*+,=:@`},
		{"path non-ASCII", "modules:\n  users:\n    paths: [/api/v1/ｕsers]\n", `policy.yaml:3: modules.users.paths[0]: "/api/v1/ｕsers" holds a non-ASCII byte; a policy path holds ASCII letters, digits, "/" and -._~!$&'()*+,=:@`},
		{"path control character", "modules:\n  users:\n    paths: [\"/api/v1/\\tusers\"]\n", `policy.yaml:3: modules.users.paths[0]: "/api/v1/\tusers" holds a control character; a policy path holds ASCII letters, digits, "/" and -._~!$&'()*+,=:@`},
		{"path segment too long", "modules:\n  users:\n    paths: [/" + strings.Repeat("a", 129) + "]\n", `policy.yaml:3: modules.users.paths[0]: "/` + strings.Repeat("a", 63) + `"... has a segment longer than 128 bytes`},
		{"path too many segments", "modules:\n  users:\n    paths: [" + strings.Repeat("/a", 300) + "]\n", `policy.yaml:3: modules.users.paths[0]: "` + strings.Repeat("/a", 32) + `"... is not a valid path: more than 128 segments`},
		{"duplicate path across modules", "modules:\n  users:\n    paths: [/api/v1/users]\n  people:\n    paths:\n      - /api/v1/people\n      - /API/v1/Users\n", `policy.yaml:7: modules.people.paths[1]: "/api/v1/users" is already listed at line 3 (module "users")`},
		{"duplicate path in one module", "modules:\n  users:\n    paths: [/api/v1/users, /api/v1/users]\n", `policy.yaml:3: modules.users.paths[1]: "/api/v1/users" is already listed at line 3 (module "users")`},

		// Several mistakes are all reported, by line.
		{
			"several errors",
			"default: open\nmodules:\n  users:\n    paths: [api/v1/users]\n    api_keys: no\n  Bad:\n    paths: [/x]\n",
			"policy.yaml:1: default: must be \"allow\" or \"deny\", got \"open\"\n" +
				"policy.yaml:4: modules.users.paths[0]: \"api/v1/users\" must start with \"/\"\n" +
				"policy.yaml:5: modules.users.api_keys: must be \"allow\" or \"deny\", got \"no\"\n" +
				"policy.yaml:6: modules: module name \"Bad\" must be a lower-case letter followed by at most 62 lower-case letters, digits, \"_\" or \"-\"",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Parse("policy.yaml", []byte(tt.yaml))
			if err == nil {
				t.Fatalf("Parse succeeded with %+v, want error %q", p, tt.want)
			}
			if p != nil {
				t.Errorf("Parse returned a policy with an error")
			}
			if got := err.Error(); got != tt.want {
				t.Errorf("Parse error:\n got: %s\nwant: %s", got, tt.want)
			}
			var pe *ParseError
			if !errors.As(err, &pe) || pe.File != "policy.yaml" || pe.Line < 1 {
				t.Errorf("Parse error %#v is not a *ParseError naming file and line", err)
			}
		})
	}
}

func TestParseTooManyErrors(t *testing.T) {
	var b strings.Builder
	b.WriteString("modules:\n")
	for i := range 30 {
		b.WriteString("  m" + strings.Repeat("x", i) + ": {paths: [rel]}\n")
	}
	_, err := Parse("p.yaml", []byte(b.String()))
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != maxErrors+1 || lines[maxErrors] != "p.yaml:22: too many errors" {
		t.Errorf("got %d error lines ending %q, want %d ending %q", len(lines), lines[len(lines)-1], maxErrors+1, "p.yaml:22: too many errors")
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(good, ExampleYAML, 0o600); err != nil {
		t.Fatal(err)
	}
	p, err := Load(good)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if diff := cmp.Diff(Example(), p, cmpopts.IgnoreUnexported(Policy{})); diff != "" {
		t.Errorf("Load(example) mismatch (-want +got):\n%s", diff)
	}

	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("modules:\n  users:\n    paths: [/api/v1/users]\n    api_keys: maybe\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = Load(bad)
	if want := bad + `:4: modules.users.api_keys: must be "allow" or "deny", got "maybe"`; err == nil || err.Error() != want {
		t.Errorf("Load(bad) error = %v, want %s", err, want)
	}

	big := filepath.Join(dir, "big.yaml")
	if err := os.WriteFile(big, []byte(strings.Repeat("#", MaxPolicySize+1)), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(big); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("Load(big) error = %v, want too large", err)
	}

	_, err = Load(filepath.Join(dir, "missing.yaml"))
	if !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), "missing.yaml") {
		t.Errorf("Load(missing) error = %v, want ErrNotExist naming the file", err)
	}
}

func TestParseDryRun(t *testing.T) {
	p, err := Parse("policy.yaml", []byte("modules:\n  users:\n    paths: [/api/v1/users]\n    api_keys: deny\n    dry_run: true\n  projects:\n    paths: [/api/v1/projects]\n    dry_run: false\n"))
	if err != nil {
		t.Fatal(err)
	}
	if !p.DryRun("users") || p.DryRun("projects") || p.DryRun("nosuch") {
		t.Fatalf("DryRun: users %v, projects %v, nosuch %v", p.DryRun("users"), p.DryRun("projects"), p.DryRun("nosuch"))
	}
	if got := p.DryRunModules(); len(got) != 1 || got[0] != "users" {
		t.Fatalf("DryRunModules = %v", got)
	}
	if Example().DryRunModules() != nil {
		t.Fatal("the example policy has modules in dry run")
	}
}
