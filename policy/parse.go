package policy

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// ParseError is one mistake in a policy file. Its text is
// "file:line: message".
type ParseError struct {
	File string // the file name given to Parse or Load
	Line int    // 1-based line of the mistake
	Msg  string // what is wrong, starting with where: "modules.users.api_keys: ..."
}

// Error returns "file:line: message".
func (e *ParseError) Error() string {
	return e.File + ":" + strconv.Itoa(e.Line) + ": " + e.Msg
}

// moduleNameRE is the rule for module names. A name is also the module part
// of a scope ("projects:read"), so it has no ":", "*", space or upper case.
var moduleNameRE = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,62}$`)

// maxPolicyPath is the longest path a policy may list, in bytes.
const maxPolicyPath = 1024

// maxErrors bounds how many mistakes Parse reports.
const maxErrors = 20

// Parse parses and validates a policy file. filename is used only in error
// messages. On failure the error is a *ParseError, or several joined with
// errors.Join (one per line, sorted by line); use errors.As to get the
// first.
//
// The file is one YAML document, a mapping with these keys:
//
//	default: allow | deny     # optional, default allow: paths that match no module
//	modules:                  # required, may be {}: module name -> module
//	  NAME:                   # ^[a-z][a-z0-9_-]{0,62}$
//	    paths: [PATH, ...]    # required, at least one
//	    api_keys: allow|deny  # optional, default allow
//	    dry_run: true|false   # optional, default false: decide, log and count, but let denials through
//
// Unknown keys, duplicate keys, anchors and aliases, tags other than the
// plain ones and values of the wrong type are errors, so that a typo never
// silently opens access. Each PATH starts with "/", is canonical (no empty,
// "." or ".." segment, no trailing "/", no escape, ";", "?", "#" or "\"),
// is not "/" alone (that is what default is for), holds only ASCII letters,
// digits and -._~!$&'()*+,=:@ besides "/", is at most 1024 bytes long with
// segments of at most 128 bytes, and is listed once in the whole file,
// compared case-insensitively; it is stored lower-case. A path may
// lie under another module's path: the longest prefix wins.
func Parse(filename string, data []byte) (*Policy, error) {
	ps := &parser{file: filename, seen: make(map[string]seenPath)}
	if len(data) > MaxPolicySize {
		ps.errorf(1, "policy file is larger than %d bytes", MaxPolicySize)
		return nil, ps.err()
	}
	root := ps.document(data)
	if root == nil {
		return nil, ps.err()
	}
	p := ps.policy(root)
	if err := ps.err(); err != nil {
		return nil, err
	}
	return p, nil
}

type parser struct {
	file string
	errs []*ParseError
	more *ParseError         // the first mistake past maxErrors
	seen map[string]seenPath // lower-case path -> where it was listed
}

type seenPath struct {
	module string
	line   int
}

func (ps *parser) errorf(line int, format string, args ...any) {
	e := &ParseError{File: ps.file, Line: max(line, 1), Msg: fmt.Sprintf(format, args...)}
	switch {
	case len(ps.errs) < maxErrors:
		ps.errs = append(ps.errs, e)
	case ps.more == nil:
		e.Msg = "too many errors"
		ps.more = e
	}
}

func (ps *parser) err() error {
	switch {
	case len(ps.errs) == 0:
		return nil
	case len(ps.errs) == 1:
		return ps.errs[0]
	}
	slices.SortStableFunc(ps.errs, func(a, b *ParseError) int { return cmp.Compare(a.Line, b.Line) })
	errs := make([]error, 0, len(ps.errs)+1)
	for _, e := range ps.errs {
		errs = append(errs, e)
	}
	if ps.more != nil {
		errs = append(errs, ps.more)
	}
	return errors.Join(errs...)
}

const emptyMsg = `empty policy file: want a mapping with "modules" (and optionally "default"); see keygate's example policy`

// document decodes the one YAML document of data and returns its root node,
// or nil after recording errors.
func (ps *parser) document(data []byte) *yaml.Node {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if err == io.EOF {
			ps.errorf(1, emptyMsg)
		} else {
			ps.yamlError(err)
		}
		return nil
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case err == nil:
		ps.errorf(next.Line, `a second YAML document: a policy file holds one (remove the "---")`)
		return nil
	case err != io.EOF:
		ps.yamlError(err)
		return nil
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 {
		ps.errorf(doc.Line, emptyMsg)
		return nil
	}
	root := doc.Content[0]
	if root.Kind == yaml.ScalarNode && root.ShortTag() == "!!null" {
		ps.errorf(root.Line, emptyMsg)
		return nil
	}
	ps.noAliases(root)
	if len(ps.errs) > 0 {
		return nil
	}
	return root
}

// yamlLineRE finds the line in go-yaml's syntax errors ("yaml: line 3: ...").
// go-yaml leaves the line out for mistakes on the first line.
var yamlLineRE = regexp.MustCompile(`^yaml: line ([0-9]+): (.*)$`)

func (ps *parser) yamlError(err error) {
	msg := err.Error()
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		ps.errorf(line, "invalid YAML: %s", m[2])
		return
	}
	ps.errorf(1, "invalid YAML: %s", strings.TrimPrefix(msg, "yaml: "))
}

// noAliases refuses anchors and aliases: a policy is short, and a value
// shared by reference is easy to misread.
func (ps *parser) noAliases(n *yaml.Node) {
	switch {
	case n.Kind == yaml.AliasNode:
		ps.errorf(n.Line, "YAML aliases (*%s) are not supported in a policy file", n.Value)
		return
	case n.Anchor != "":
		ps.errorf(n.Line, "YAML anchors (&%s) are not supported in a policy file", n.Anchor)
	}
	for _, c := range n.Content {
		ps.noAliases(c)
	}
}

// mapping calls fn for each key of mapping node n, in order. It reports
// keys that are not strings and repeated keys; fn sees only the first.
func (ps *parser) mapping(n *yaml.Node, where, what string, fn func(key string, k, v *yaml.Node)) {
	first := make(map[string]int, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode || k.ShortTag() != "!!str" {
			ps.errorf(k.Line, "%s%s %s is not a string", prefix(where), what, describe(k))
			continue
		}
		if line, dup := first[k.Value]; dup {
			ps.errorf(k.Line, "%sduplicate %s %s (first at line %d)", prefix(where), what, quote(k.Value), line)
			continue
		}
		first[k.Value] = k.Line
		fn(k.Value, k, v)
	}
}

func prefix(where string) string {
	if where == "" {
		return ""
	}
	return where + ": "
}

func (ps *parser) policy(root *yaml.Node) *Policy {
	if root.Kind != yaml.MappingNode {
		ps.errorf(root.Line, `a policy is a mapping with the keys "default" and "modules", got %s`, describe(root))
		return nil
	}
	def := AccessAllow
	var mods []Module
	sawModules := false
	ps.mapping(root, "", "key", func(key string, k, v *yaml.Node) {
		switch key {
		case "default":
			def = ps.access(v, "default")
		case "modules":
			sawModules = true
			mods = ps.modules(v)
		default:
			ps.errorf(k.Line, "unknown key %s (known keys: default, modules)", quote(key))
		}
	})
	if !sawModules {
		ps.errorf(root.Line, `missing "modules": list the modules of your API, or write "modules: {}" for none`)
	}
	if len(ps.errs) > 0 {
		return nil
	}
	return newPolicy(def, mods)
}

func (ps *parser) access(n *yaml.Node, where string) Access {
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!str" {
		switch n.Value {
		case "allow":
			return AccessAllow
		case "deny":
			return AccessDeny
		}
	}
	ps.errorf(n.Line, `%s: must be "allow" or "deny", got %s`, where, describe(n))
	return AccessDeny
}

func (ps *parser) boolean(n *yaml.Node, where string) bool {
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!bool" {
		switch n.Value {
		case "true":
			return true
		case "false":
			return false
		}
	}
	ps.errorf(n.Line, `%s: must be true or false, got %s`, where, describe(n))
	return false
}

func (ps *parser) modules(n *yaml.Node) []Module {
	if n.Kind != yaml.MappingNode {
		ps.errorf(n.Line, `modules: must be a mapping of module names to modules (or "{}" for none), got %s`, describe(n))
		return nil
	}
	var mods []Module
	ps.mapping(n, "modules", "module", func(name string, k, v *yaml.Node) {
		where := "modules." + name
		if !moduleNameRE.MatchString(name) {
			where = "modules." + quote(name)
			ps.errorf(k.Line, `modules: module name %s must be a lower-case letter followed by at most 62 lower-case letters, digits, "_" or "-"`, quote(name))
		}
		mods = append(mods, ps.module(name, k, v, where))
	})
	return mods
}

func (ps *parser) module(name string, k, n *yaml.Node, where string) Module {
	m := Module{Name: name, APIKeys: AccessAllow}
	if n.Kind != yaml.MappingNode {
		ps.errorf(n.Line, `%s: must be a mapping with "paths" and optionally "api_keys" and "dry_run", got %s`, where, describe(n))
		return m
	}
	sawPaths := false
	ps.mapping(n, where, "key", func(key string, k, v *yaml.Node) {
		switch key {
		case "paths":
			sawPaths = true
			m.Paths = ps.paths(v, where+".paths", name)
		case "api_keys":
			m.APIKeys = ps.access(v, where+".api_keys")
		case "dry_run":
			m.DryRun = ps.boolean(v, where+".dry_run")
		default:
			ps.errorf(k.Line, "%s: unknown key %s (known keys: paths, api_keys, dry_run)", where, quote(key))
		}
	})
	if !sawPaths {
		ps.errorf(k.Line, `%s: missing "paths": list the path prefixes of the module`, where)
	}
	return m
}

func (ps *parser) paths(n *yaml.Node, where, module string) []string {
	if n.Kind != yaml.SequenceNode {
		ps.errorf(n.Line, "%s: must be a list of paths, like [/api/v1/%s], got %s", where, module, describe(n))
		return nil
	}
	if len(n.Content) == 0 {
		ps.errorf(n.Line, "%s: must list at least one path", where)
		return nil
	}
	var paths []string
	for i, pn := range n.Content {
		w := where + "[" + strconv.Itoa(i) + "]"
		if pn.Kind != yaml.ScalarNode || pn.ShortTag() != "!!str" {
			ps.errorf(pn.Line, "%s: must be a path, got %s", w, describe(pn))
			continue
		}
		p, msg := policyPath(pn.Value)
		if msg != "" {
			ps.errorf(pn.Line, "%s: %s", w, msg)
			continue
		}
		if prev, dup := ps.seen[p]; dup {
			ps.errorf(pn.Line, "%s: %s is already listed at line %d (module %s)", w, quote(p), prev.line, quote(prev.module))
			continue
		}
		ps.seen[p] = seenPath{module: module, line: pn.Line}
		paths = append(paths, p)
	}
	return paths
}

// Hints for characters a policy path may not hold.
var pathCharHint = map[byte]string{
	'%':  "write the character itself, not a percent-escape",
	';':  "a policy path has no ;params, they are dropped before matching",
	'?':  "a policy path has no query",
	'#':  "a policy path has no fragment",
	'\\': `use "/"`,
}

// policyPath validates path s of a policy and returns it lower-cased, or a
// message saying what is wrong.
func policyPath(s string) (_ string, msg string) {
	switch {
	case s == "":
		return "", "a path must not be empty"
	case s[0] != '/':
		return "", quote(s) + ` must start with "/"`
	case s == "/":
		return "", `"/" would match every path; use "default" for the paths that match no module`
	case len(s) > maxPolicyPath:
		return "", "path longer than " + strconv.Itoa(maxPolicyPath) + " bytes"
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c != '/' && class[c]&cPolicy == 0 {
			what := "a non-ASCII byte"
			if c >= 0x20 && c < 0x7f {
				what = strconv.QuoteRune(rune(c))
			} else if c < 0x20 || c == 0x7f {
				what = "a control character"
			}
			msg := quote(s) + " holds " + what + `; a policy path holds ASCII letters, digits, "/" and -._~!$&'()*+,=:@`
			if hint := pathCharHint[c]; hint != "" {
				msg += " (" + hint + ")"
			}
			return "", msg
		}
	}
	low := []byte(s)
	for i, c := range low {
		low[i] = lower(c)
	}
	canon, err := Canonicalize(string(low))
	switch {
	case err != nil:
		reason := err.Error()
		var pe *PathError
		if errors.As(err, &pe) {
			reason = pe.Reason
		}
		return "", quote(s) + " is not a valid path: " + reason
	case canon == "/":
		return "", quote(s) + ` would match every path; use "default" for the paths that match no module`
	case strings.HasSuffix(s, "/"):
		return "", quote(s) + ` must not end with "/"; write ` + quote(canon)
	case canon != string(low):
		return "", quote(s) + ` is not canonical (it has an empty, "." or ".." segment); write ` + quote(canon)
	}
	for _, seg := range strings.Split(canon[1:], "/") {
		if len(seg) > maxPolicySegment {
			return "", quote(s) + " has a segment longer than " + strconv.Itoa(maxPolicySegment) + " bytes"
		}
	}
	return canon, ""
}

// describe names a YAML value for an error message.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!str":
			return quote(n.Value)
		case "!!null":
			return "nothing (null)"
		case "!!bool", "!!int", "!!float":
			return n.Value + " (" + strings.TrimPrefix(n.ShortTag(), "!!") + ")"
		}
		return "a value tagged " + quote(n.ShortTag())
	}
	return "nothing"
}

// quote quotes s for an error message, shortened if long.
func quote(s string) string {
	const limit = 64
	if len(s) > limit {
		return strconv.Quote(s[:limit]) + "..."
	}
	return strconv.Quote(s)
}
