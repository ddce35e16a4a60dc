package policy

import (
	_ "embed"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
)

// Access says whether API keys may use a module. The zero value is
// AccessDeny, so an Access that was never set fails closed.
type Access int

const (
	// AccessDeny refuses API keys (HTTP 403).
	AccessDeny Access = iota
	// AccessAllow lets API keys through, subject to their scopes.
	AccessAllow
)

// String returns "allow" or "deny", the spelling of the policy file.
func (a Access) String() string {
	switch a {
	case AccessAllow:
		return "allow"
	case AccessDeny:
		return "deny"
	}
	return "Access(" + strconv.Itoa(int(a)) + ")"
}

// Module is one module of a policy: a named set of path prefixes.
type Module struct {
	// Name identifies the module in scopes ("projects:read"), in Envoy's
	// context_extensions["module"], and in logs.
	Name string
	// Paths are the module's path prefixes, canonical and lower-case, in
	// file order. Each matches itself and every path below it, whole
	// segments only.
	Paths []string
	// APIKeys says whether API keys may reach the module.
	APIKeys Access
	// DryRun makes keygate decide requests in the module as usual but let
	// denied ones through (marked as dry-run denials), for a rollout.
	DryRun bool
}

// Policy is a parsed policy file. It is immutable and safe for concurrent
// use. Its exported fields describe it; Route and Module answer from a
// private copy, so changing the fields changes no decision. A Policy that
// was not made by Parse, Load or Example refuses API keys on every path.
type Policy struct {
	// Default is the access of a path that matches no module.
	Default Access
	// Modules are the modules in file order.
	Modules []Module

	mods   []Module // private copy of Modules
	byName map[string]int
	ix     *index
}

// newPolicy builds a Policy from validated modules.
func newPolicy(def Access, mods []Module) *Policy {
	p := &Policy{Default: def, mods: mods, byName: make(map[string]int, len(mods))}
	for i, m := range mods {
		p.Modules = append(p.Modules, cloneModule(m))
		p.byName[m.Name] = i
	}
	p.ix = newIndex(mods, def)
	return p
}

func cloneModule(m Module) Module {
	m.Paths = slices.Clone(m.Paths)
	return m
}

// Module returns the module with this exact name (names are lower-case), for
// a route whose module Envoy names in context_extensions["module"]. ok is
// false if the policy has no such module; callers should refuse the request
// then, as the Envoy configuration and the policy disagree.
func (p *Policy) Module(name string) (m Module, ok bool) {
	if p == nil {
		return Module{}, false
	}
	i, ok := p.byName[name]
	if !ok {
		return Module{}, false
	}
	return cloneModule(p.mods[i]), true
}

// Access returns whether API keys may use the module with this exact
// name, without copying anything: the decision path's form of Module. ok is
// false if the policy has no such module. module is the policy's own
// string for the name, which a caller may keep where it would not keep
// name (a decision's shared responses outlive the request buffer that an
// adapter's name may point into).
func (p *Policy) Access(name string) (module string, a Access, ok bool) {
	if p == nil {
		return "", AccessDeny, false
	}
	i, ok := p.byName[name]
	if !ok {
		return "", AccessDeny, false
	}
	return p.mods[i].Name, p.mods[i].APIKeys, true
}

// DryRun reports whether the module is in dry run (false for a module the
// policy does not know).
func (p *Policy) DryRun(name string) bool {
	if p == nil {
		return false
	}
	i, ok := p.byName[name]
	return ok && p.mods[i].DryRun
}

// DryRunModules are the names of the modules in dry run, in file order.
func (p *Policy) DryRunModules() []string {
	var out []string
	for _, m := range p.Modules {
		if m.DryRun {
			out = append(out, m.Name)
		}
	}
	return out
}

// Route reads rawPath, the request target as Envoy sends it in :path
// (origin-form, query included, not decoded), in every reasonable way (see
// the package documentation) and says which module the canonical path
// belongs to, which open modules the readings reach, and whether any
// reading reaches a module closed to API keys.
//
// A decision for an API key must:
//   - refuse the request with 400 when the error is not nil: the path
//     cannot be read one way (the error wraps ErrInvalidPath and is a
//     *PathError);
//   - refuse it with 403 when Restricted is true;
//   - otherwise require the key's scope for the request's action in every
//     module of Modules, not only in Module: a "" entry (always the first)
//     stands for no module, and requires what a path in no module requires.
//
// Callers that take the module from Envoy's context_extensions should still
// call Route, to refuse invalid paths and the readings Envoy's route table
// did not see: refuse when RestrictedModule is not "" (a reading reaches a
// closed module; with RestrictedModule "" only the policy's default
// restricted the path, which the route's module overrides), and require
// the scopes of the route's module and of every entry of Modules but "".
func (p *Policy) Route(rawPath string) (Route, error) {
	if p == nil || p.ix == nil {
		if _, err := scan(rawPath); err != nil {
			return Route{}, err
		}
		return Route{Restricted: true, Modules: noModule[:1:1]}, nil
	}
	return p.ix.route(rawPath)
}

// RouteEvery is Route without stopping at the first reading that lands in
// a closed module: Modules lists every open module some reading lands in
// also when RestrictedModule is not "" (Module first, closed or not), and
// Closed every closed module some reading lands in, and "" when one lands
// in no module under default: deny. It does more work than Route for a
// restricted path; a caller needs it only to tell whether every module a
// refused path reaches is in dry run.
func (p *Policy) RouteEvery(rawPath string) (Route, error) {
	if p == nil || p.ix == nil {
		return p.Route(rawPath)
	}
	if r, ok := p.ix.fast(rawPath); ok { // one reading
		switch {
		case r.RestrictedModule != "":
			r.Closed, r.Modules = []string{r.RestrictedModule}, []string{r.Module}
		case r.Restricted:
			r.Closed = []string{""}
		}
		return r, nil
	}
	return p.ix.slow(rawPath, true)
}

// noModule backs the Route.Modules of the Routes of a Policy not made by
// Parse: no module.
var noModule = [1]string{""}

// MaxPolicySize is the largest policy file Parse and Load accept, in bytes.
const MaxPolicySize = 1 << 20

// Load reads the policy file at path and parses it. Errors name the file
// and, for mistakes in it, the line.
func Load(path string) (*Policy, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxPolicySize+1))
	if err != nil {
		return nil, fmt.Errorf("policy: read %s: %w", path, err)
	}
	return Parse(path, data)
}

// ExampleYAML is the example policy file shipped with keygate, commented for
// operators to copy. It reproduces the product's rule: API keys never reach
// the accounts, users and authentication modules.
//
//go:embed example.yaml
var ExampleYAML []byte

//go:embed example.yaml
var exampleYAML string

// Example returns the example policy, parsed from the embedded example
// file. Each call returns a new Policy. It panics only if the embedded file
// is broken, which the package's tests rule out.
func Example() *Policy {
	p, err := Parse("example.yaml", []byte(exampleYAML))
	if err != nil {
		panic("policy: embedded example.yaml: " + err.Error())
	}
	return p
}
