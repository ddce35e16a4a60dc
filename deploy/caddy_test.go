package deploy

import (
	"errors"
	"fmt"
	"net/textproto"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// The Caddyfile runs through a real Caddy in the test package
// (test/forwardauth_test.go), which is skipped where Caddy is not
// installed. This check needs no Caddy: it reads the request_header
// deletions the Caddyfile makes before forward_auth and applies them as
// Caddy 2.6 does (a field name "*s*" deletes every header whose name
// contains s, "s*" every one that starts with s, "*s" every one that ends
// with it; names as Go's server stores them, canonical), then holds them
// to what keygate needs: no header name with a byte other than a letter, a
// digit or '-' reaches keygate or the upstream (backends read such names
// loosely: PHP, lighttpd and keygate itself read X.Keygate.Scopes as
// X-Keygate-Scopes), nor any client-sent X-Keygate-*; the key and the
// headers keygate decides on do reach keygate.

// caddyFile is the Caddyfile under test.
var caddyFile = filepath.Join("caddy", "Caddyfile")

// caddyDelete matches a request_header line that deletes a header.
var caddyDelete = regexp.MustCompile(`^\s*request_header\s+-(\S+)\s*$`)

func TestCaddyStripsLooseNames(t *testing.T) {
	if err := checkCaddyStrips(string(mustReadFile(t, caddyFile))); err != nil {
		t.Fatalf("%s does not pass the check:\n%v", caddyFile, err)
	}
}

// caddyDeletions returns the field names the Caddyfile deletes from the
// request before forward_auth.
func caddyDeletions(doc string) []string {
	var out []string
	for _, line := range strings.Split(doc, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "forward_auth ") {
			break
		}
		if m := caddyDelete.FindStringSubmatch(line); m != nil {
			out = append(out, m[1])
		}
	}
	return out
}

// caddyDeletes reports whether deleting field, as Caddy's headers handler
// does, removes the header name (canonical).
func caddyDeletes(field, name string) bool {
	switch {
	case len(field) > 1 && strings.HasPrefix(field, "*") && strings.HasSuffix(field, "*"):
		return strings.Contains(name, field[1:len(field)-1])
	case strings.HasPrefix(field, "*"):
		return strings.HasSuffix(name, field[1:])
	case strings.HasSuffix(field, "*"):
		return strings.HasPrefix(name, field[:len(field)-1])
	default:
		return textproto.CanonicalMIMEHeaderKey(field) == name
	}
}

func checkCaddyStrips(doc string) error {
	fields := caddyDeletions(doc)
	var errs []error
	deleted := func(name string) bool {
		canon := textproto.CanonicalMIMEHeaderKey(name)
		for _, f := range fields {
			if caddyDeletes(f, canon) {
				return true
			}
		}
		return false
	}
	mustGo := func(name, why string) {
		if !deleted(name) {
			errs = append(errs, fmt.Errorf("a client-sent %s reaches keygate and the upstream: %s", name, why))
		}
	}
	for _, h := range identityHeaders {
		mustGo(h, "only keygate's answer may set it")
		mustGo(strings.ToLower(h), "only keygate's answer may set it")
	}
	mustGo("X-Keygate-Admin", "the identity namespace is keygate's")
	for _, sep := range looseSeparators {
		why := fmt.Sprintf("a name with %q is read loosely (PHP, lighttpd and keygate read it as '-')", sep)
		for _, name := range []string{
			"X" + sep + "Keygate" + sep + "Scopes",
			"X" + sep + "Keygate" + sep + "Account" + sep + "Id",
			"X-Keygate" + sep + "Module",
			"X" + sep + "Original" + sep + "URL",
			"X" + sep + "Api" + sep + "Key",
			sep + "Anything",
			"Anything" + sep,
		} {
			mustGo(name, why)
		}
	}
	// What keygate must still see: the key, and what it decides on.
	for _, name := range []string{"X-Api-Key", "Authorization", "X-Original-URL", "X-Rewrite-URL", "Content-Type", "X-Request-Id", "Accept"} {
		if deleted(name) {
			errs = append(errs, fmt.Errorf("%s is deleted before forward_auth: keygate would not see it", name))
		}
	}
	return errors.Join(errs...)
}

// TestCaddyStripsLooseNamesFails proves the check can fail: each case
// drops one deletion from the Caddyfile, or adds one too many.
func TestCaddyStripsLooseNamesFails(t *testing.T) {
	base := string(mustReadFile(t, caddyFile))
	tests := []struct{ drop, add, want string }{
		{drop: "-X-Keygate-*", want: "X-Keygate-Admin"},
		{drop: "-*_*", want: `"_"`},
		{drop: "-*.*", want: "X.Keygate.Scopes"},
		{drop: "-*+*", want: `"+"`},
		{drop: "-*~*", want: `"~"`},
		{drop: "-*#*", want: `"#"`},
		{drop: "-*`*", want: "\"`\""},
		{drop: "-***", want: `"*"`},
		{add: "-X-Api-*", want: "X-Api-Key is deleted"},
		{add: "-X-Original-*", want: "X-Original-URL is deleted"},
	}
	for _, tc := range tests {
		name := "drop " + tc.drop
		if tc.add != "" {
			name = "add " + tc.add
		}
		t.Run(name, func(t *testing.T) {
			doc := base
			if tc.drop != "" {
				line := "request_header " + tc.drop + "\n"
				if !strings.Contains(doc, line) {
					t.Fatalf("%s has no line %q", caddyFile, line)
				}
				doc = strings.Replace(doc, line, "\n", 1)
			} else {
				doc = strings.Replace(doc, "request_header -X-Keygate-*\n", "request_header -X-Keygate-*\n\t\trequest_header "+tc.add+"\n", 1)
			}
			err := checkCaddyStrips(doc)
			if err == nil {
				t.Fatalf("check passed; want an error containing %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("check error does not mention %q:\n%v", tc.want, err)
			}
		})
	}
}
