package main

import (
	"cmp"
	"slices"
	"strings"

	"github.com/alecthomas/kong"
)

// flagGroups are the sections of a command's help, in order; a flag joins
// one with its group tag. Flags without one come first, under "Flags:".
var flagGroups = []kong.Group{
	{Key: "listeners", Title: "Listeners and shutdown:"},
	{Key: "store", Title: "Store:"},
	{Key: "cache", Title: "Cache:"},
	{Key: "tls", Title: "TLS:"},
	{Key: "policy", Title: "Policy and decisions:"},
	{Key: "logging", Title: "Logging:"},
	{Key: "limits", Title: "Limits:"},
	{Key: "events", Title: "Events out (webhooks, expiry warnings, leak reports):"},
}

// documentFlags finishes every flag's help: flags are listed by group, in
// flagGroups' order; a default value is said one way, "(default X)" in the
// text, never as the flag's value (--grpc-addr=":9001"), which takes a
// placeholder instead; and a flag read from the environment names its
// variable.
func documentFlags(k *kong.Kong) error {
	rank := func(f *kong.Flag) int {
		if f.Group == nil {
			return -1
		}
		return slices.IndexFunc(flagGroups, func(g kong.Group) bool { return g.Key == f.Group.Key })
	}
	var walk func(n *kong.Node)
	walk = func(n *kong.Node) {
		slices.SortStableFunc(n.Flags, func(a, b *kong.Flag) int { return cmp.Compare(rank(a), rank(b)) })
		for _, f := range n.Flags {
			documentDefault(f)
			if env := envName(f.Name, n); env != "" {
				f.Help += " ($" + env + ")"
			}
		}
		for _, c := range n.Children {
			walk(c)
		}
	}
	walk(k.Model.Node)
	return nil
}

// documentDefault says a flag's default in its help, "(default X)" before
// the closing period, unless the help says it already, and gives a flag
// with a default a placeholder: the enum's values, or the last word of its
// name.
func documentDefault(f *kong.Flag) {
	if !f.HasDefault || f.Default == "" || f.IsBool() || f.IsCounter() {
		return
	}
	if f.PlaceHolder == "" {
		if f.Enum != "" {
			f.PlaceHolder = strings.Join(f.EnumSlice(), "|")
		} else {
			words := strings.Split(f.Name, "-")
			f.PlaceHolder = strings.ToUpper(words[len(words)-1])
		}
	}
	if strings.Contains(f.Help, "(default ") {
		return
	}
	said := "(default " + f.Default + ")"
	if strings.HasSuffix(f.Help, ".") {
		f.Help = strings.TrimSuffix(f.Help, ".") + " " + said + "."
	} else {
		f.Help += " " + said
	}
}
