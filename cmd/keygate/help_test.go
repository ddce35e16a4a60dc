package main

import (
	"bytes"
	"io"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/alecthomas/kong"
)

// TestServeHelpGroupsItsFlags: serve --help lists its flags in sections,
// in a fixed order, each flag (but --help) in one of them.
func TestServeHelpGroupsItsFlags(t *testing.T) {
	t.Parallel()
	for _, command := range []string{"serve", "dev"} {
		r := runWithEnv(t, nil, command, "--help")
		if r.code != 0 {
			t.Fatalf("%s --help: exit %d %s", command, r.code, r.stderr)
		}
		last := -1
		for _, g := range flagGroups {
			i := strings.Index(r.stdout, "\n"+g.Title+"\n")
			if i < 0 || i < last {
				t.Fatalf("%s --help: section %q missing or out of order:\n%s", command, g.Title, r.stdout)
			}
			last = i
		}
	}
	node := commandNode(t, "serve")
	for _, f := range node.Flags {
		if f.Name != "help" && f.Group == nil {
			t.Errorf("serve --%s is in no section of the help", f.Name)
		}
	}
}

// TestHelpSaysDefaultsOneWay: in every command's help, a flag with a
// default says it in its text, "(default X)", once, and shows a
// placeholder rather than its value (--grpc-addr=":9001").
func TestHelpSaysDefaultsOneWay(t *testing.T) {
	t.Parallel()
	valueShown := regexp.MustCompile(`(?m)^\s+(-\w, )?--[a-z0-9-]+="`)
	var walk func(n *kong.Node, path []string)
	walk = func(n *kong.Node, path []string) {
		for _, c := range n.Children {
			walk(c, append(path, c.Name))
		}
		if n.Type != kong.CommandNode || len(n.Children) > 0 {
			return
		}
		r := runWithEnv(t, nil, append(path, "--help")...)
		if m := valueShown.FindString(r.stdout); m != "" {
			t.Errorf("keygate %s --help shows a default as the flag's value: %q", strings.Join(path, " "), m)
		}
		for _, f := range n.Flags {
			if !f.HasDefault || f.Default == "" || f.IsBool() {
				continue
			}
			if strings.Count(f.Help, "(default ") != 1 || !strings.Contains(f.Help, "(default "+f.Default+")") {
				t.Errorf("keygate %s --%s: help %q, want it to say (default %s) once", strings.Join(path, " "), f.Name, f.Help, f.Default)
			}
		}
	}
	var c cli
	parser, err := kong.New(&c, kong.ExplicitGroups(flagGroups), kong.PostBuild(documentFlags), flagDefaults())
	if err != nil {
		t.Fatal(err)
	}
	walk(parser.Model.Node, nil)
}

// TestHealthReadsItsOwnEnvironment: keygate health's flags read
// KEYGATE_HEALTH_<FLAG>, never names as generic as KEYGATE_TIMEOUT or
// KEYGATE_TLS; its --grpc-addr reads serve's KEYGATE_GRPC_ADDR.
func TestHealthReadsItsOwnEnvironment(t *testing.T) {
	t.Parallel()
	parseWith := func(env map[string]string) healthCmd {
		t.Helper()
		var c cli
		if _, err := parse(&c, []string{"health"}, func(k string) string { return env[k] }, io.Discard, io.Discard); err != nil {
			t.Fatalf("health with %v: %v", env, err)
		}
		return c.Health
	}
	generic := parseWith(map[string]string{"KEYGATE_TIMEOUT": "9s", "KEYGATE_TLS": "true", "KEYGATE_SERVICE": "other",
		"KEYGATE_TLS_SERVER_NAME": "elsewhere"})
	if time.Duration(generic.Timeout) != defaultHealthTimeout || generic.TLS || generic.Service != "" || generic.TLSServerName != "" {
		t.Fatalf("generic variables changed health: %+v", generic)
	}
	own := parseWith(map[string]string{"KEYGATE_HEALTH_TIMEOUT": "9s", "KEYGATE_HEALTH_TLS": "true", "KEYGATE_HEALTH_SERVICE": "keygate",
		"KEYGATE_HEALTH_TLS_SERVER_NAME": "keygate.internal", "KEYGATE_GRPC_ADDR": ":7001"})
	if time.Duration(own.Timeout) != 9*time.Second || !own.TLS || own.Service != "keygate" || own.TLSServerName != "keygate.internal" || own.GRPCAddr != ":7001" {
		t.Fatalf("health's own variables: %+v", own)
	}
	var help bytes.Buffer
	var c cli
	parse(&c, []string{"health", "--help"}, func(string) string { return "" }, &help, io.Discard)
	for _, want := range []string{"$KEYGATE_HEALTH_TIMEOUT", "$KEYGATE_HEALTH_TLS)", "$KEYGATE_GRPC_ADDR"} {
		if !strings.Contains(help.String(), want) {
			t.Errorf("health --help does not name %s:\n%s", want, help.String())
		}
	}
}

// commandNode is the kong node of a command.
func commandNode(t *testing.T, name string) *kong.Node {
	t.Helper()
	var c cli
	parser, err := kong.New(&c, kong.ExplicitGroups(flagGroups), kong.PostBuild(documentFlags), flagDefaults())
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range parser.Model.Children {
		if n.Name == name {
			return n
		}
	}
	t.Fatalf("no command %s", name)
	return nil
}
