package deploy

import (
	"errors"
	"fmt"
	"net/textproto"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/keygate/keygate/authz"
)

// Traefik cannot be installed where keygate is tested, so its dynamic
// configuration is checked structurally: decoded strictly into the subset
// of Traefik's dynamic configuration it uses (an unknown or misspelt
// field fails), then held to what keygate needs from it.

// traefikDir holds the Traefik configuration.
const traefikDir = "traefik"

// traefikFile is the dynamic configuration under test.
var traefikFile = filepath.Join(traefikDir, "dynamic.yml")

// The subset of Traefik's dynamic configuration (file provider) the file
// uses, with Traefik's field names.
type traefikConfig struct {
	HTTP struct {
		Routers     map[string]traefikRouter     `json:"routers"`
		Middlewares map[string]traefikMiddleware `json:"middlewares"`
		Services    map[string]struct {
			LoadBalancer struct {
				Servers []struct {
					URL string `json:"url"`
				} `json:"servers"`
			} `json:"loadBalancer"`
		} `json:"services"`
	} `json:"http"`
}

type traefikRouter struct {
	EntryPoints []string `json:"entryPoints"`
	Rule        string   `json:"rule"`
	Middlewares []string `json:"middlewares"`
	Service     string   `json:"service"`
}

type traefikMiddleware struct {
	ForwardAuth *struct {
		Address                  string   `json:"address"`
		TrustForwardHeader       bool     `json:"trustForwardHeader"`
		AuthResponseHeaders      []string `json:"authResponseHeaders"`
		AuthResponseHeadersRegex string   `json:"authResponseHeadersRegex"`
		AuthRequestHeaders       []string `json:"authRequestHeaders"`
	} `json:"forwardAuth"`
	Headers *struct {
		CustomRequestHeaders map[string]string `json:"customRequestHeaders"`
	} `json:"headers"`
}

// identityHeaders are keygate's identity headers (default prefix).
var identityHeaders = []string{"X-Keygate-Key-Id", "X-Keygate-Account-Id", "X-Keygate-Scopes", "X-Keygate-Module", "X-Keygate-Dry-Run"}

func TestTraefik(t *testing.T) {
	if err := checkTraefik(mustReadFile(t, traefikFile)); err != nil {
		t.Fatalf("%s does not pass the check:\n%v", traefikFile, err)
	}
}

// checkTraefik returns every problem found in a dynamic configuration.
func checkTraefik(doc []byte) error {
	var cfg traefikConfig
	if err := yaml.UnmarshalStrict(doc, &cfg); err != nil {
		return fmt.Errorf("decode: %w", err)
	}
	var errs []error
	fail := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	h := cfg.HTTP
	if len(h.Routers) == 0 {
		fail("no routers")
	}
	for name, r := range h.Routers {
		if _, ok := h.Services[r.Service]; !ok {
			fail("router %s: unknown service %q", name, r.Service)
		}
		auth, strip := -1, -1
		for i, m := range r.Middlewares {
			mw, ok := h.Middlewares[m]
			switch {
			case !ok:
				fail("router %s: unknown middleware %q", name, m)
			case mw.ForwardAuth != nil && auth < 0:
				auth = i
			case mw.Headers != nil && removes(mw.Headers.CustomRequestHeaders, "X-Api-Key") && strip < 0:
				strip = i
			}
		}
		switch {
		case auth < 0:
			fail("router %s does not use a forwardAuth middleware: nothing checks its requests", name)
		case strip < 0:
			fail("router %s does not remove the credential headers: the upstream would see the key", name)
		case strip < auth:
			fail("router %s removes the credential headers before forwardAuth: keygate would never see the key", name)
		}
	}
	for name, mw := range h.Middlewares {
		if fa := mw.ForwardAuth; fa != nil {
			errs = append(errs, forwardAuthAssertions(name, mw)...)
		}
		if hd := mw.Headers; hd != nil && removes(hd.CustomRequestHeaders, "X-Api-Key") {
			for _, k := range []string{"X-Api-Key", "X_Api_Key", "X-Api_Key", "X_Api-Key", "Authorization"} {
				if !removes(hd.CustomRequestHeaders, k) {
					fail("middleware %s does not remove %s (an empty customRequestHeaders value removes it)", name, k)
				}
			}
		}
	}
	return errors.Join(errs...)
}

func forwardAuthAssertions(name string, mw traefikMiddleware) []error {
	var errs []error
	fail := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("middleware %s: forwardAuth: "+format, append([]any{name}, args...)...))
	}
	fa := mw.ForwardAuth
	if !strings.HasPrefix(fa.Address, "http://") || !strings.HasSuffix(fa.Address, ":9002/auth") {
		fail("address %q: want keygate's /auth on its HTTP port, like http://keygate:9002/auth", fa.Address)
	}
	if fa.TrustForwardHeader {
		fail("trustForwardHeader is true: a client could name the request keygate decides (X-Forwarded-Uri)")
	}
	if len(fa.AuthRequestHeaders) != 0 {
		fail("authRequestHeaders filters what keygate sees; keygate needs every header (the key, forged identity)")
	}
	for _, h := range identityHeaders {
		if !slices.ContainsFunc(fa.AuthResponseHeaders, func(s string) bool { return strings.EqualFold(s, h) }) {
			fail("authResponseHeaders lacks %s", h)
		}
	}
	re, err := regexp.Compile(fa.AuthResponseHeadersRegex)
	if err != nil || fa.AuthResponseHeadersRegex == "" {
		fail("authResponseHeadersRegex %q: want one that removes every client-sent identity header (%v)", fa.AuthResponseHeadersRegex, err)
		return errs
	}
	// Traefik matches it against canonical header names (Go's
	// CanonicalMIMEHeaderKey), which keep every token character: '_', '.',
	// '+' and the rest. Backends read any of them as '-' (PHP maps '.' and
	// '_' alike, lighttpd every byte but letters and digits, and so does
	// keygate), so each must be matched where '-' stands.
	for _, h := range []string{"X-Keygate-Admin", "X_keygate_scopes", "X-Keygate_account-Id", "X-Keygate-Key-Id", "X_keygate-Module",
		"X.Keygate.Scopes", "X.Keygate.Account.Id", "X+Keygate+Module", "X-Keygate.Dry-Run", "X.keygate-key-id"} {
		if canon := textproto.CanonicalMIMEHeaderKey(h); !re.MatchString(canon) {
			fail("authResponseHeadersRegex %q does not match %s: a forged one would reach the upstream", fa.AuthResponseHeadersRegex, canon)
		}
	}
	for _, sep := range looseSeparators {
		h := "X" + sep + "Keygate" + sep + "Scopes"
		if canon := textproto.CanonicalMIMEHeaderKey(h); !re.MatchString(canon) {
			fail("authResponseHeadersRegex %q does not match %s: a forged one would reach the upstream", fa.AuthResponseHeadersRegex, canon)
		}
	}
	// ... and every path override, which a backend may route by, in the
	// same spellings.
	for _, h := range authz.PathOverrideHeaders() {
		spellings := []string{h, strings.ReplaceAll(h, "-", "_"), strings.Replace(h, "-", "_", 1)}
		for _, sep := range looseSeparators {
			spellings = append(spellings, strings.ReplaceAll(h, "-", sep))
		}
		for _, spelling := range spellings {
			if canon := textproto.CanonicalMIMEHeaderKey(spelling); !re.MatchString(canon) {
				fail("authResponseHeadersRegex %q does not match %s: it would reach the upstream, which may route by it", fa.AuthResponseHeadersRegex, canon)
			}
		}
	}
	for _, h := range []string{"X-Api-Key", "Authorization", "X-Keygatex", "Content-Type", "X-Forwarded-For", "X-Original-Url-Extra", "X-Forwarded-Host", "X-Original-Method"} {
		if re.MatchString(h) {
			fail("authResponseHeadersRegex %q matches %s", fa.AuthResponseHeadersRegex, h)
		}
	}
	return errs
}

// looseSeparators are the characters a header name may hold besides
// letters, digits and '-' (RFC 9110's tchar), each of which some backend
// reads as '-' or '_'.
var looseSeparators = []string{"_", ".", "+", "!", "~", "|", "^", "#", "$", "%", "&", "'", "`", "*"}

// removes reports whether headers has name with an empty value (Traefik's
// way to remove a request header), ignoring case.
func removes(headers map[string]string, name string) bool {
	for k, v := range headers {
		if strings.EqualFold(k, name) && v == "" {
			return true
		}
	}
	return false
}

// TestTraefikCheckFails proves the check can fail: each case breaks the
// file in one way.
func TestTraefikCheckFails(t *testing.T) {
	fa := []string{"http", "middlewares", "keygate", "forwardAuth"}
	creds := []string{"http", "middlewares", "keygate-credentials", "headers", "customRequestHeaders"}
	router := []string{"http", "routers", "api"}
	tests := []struct {
		name   string
		mutate func(tb testing.TB, doc map[string]any)
		want   string
	}{
		{"typo in a field", func(tb testing.TB, doc map[string]any) {
			m := traefikObject(tb, doc, fa)
			m["authResponseHeader"] = m["authResponseHeaders"]
			delete(m, "authResponseHeaders")
		}, "authResponseHeader"},
		{"trusting client forwarded headers", func(tb testing.TB, doc map[string]any) {
			traefikObject(tb, doc, fa)["trustForwardHeader"] = true
		}, "trustForwardHeader"},
		{"an identity header not copied", func(tb testing.TB, doc map[string]any) {
			m := traefikObject(tb, doc, fa)
			m["authResponseHeaders"] = m["authResponseHeaders"].([]any)[:3]
		}, "X-Keygate-Module"},
		{"forged identity headers kept", func(tb testing.TB, doc map[string]any) {
			delete(traefikObject(tb, doc, fa), "authResponseHeadersRegex")
		}, "authResponseHeadersRegex"},
		{"regex blind to underscores", func(tb testing.TB, doc map[string]any) {
			traefikObject(tb, doc, fa)["authResponseHeadersRegex"] = "(?i)^x-keygate-"
		}, "X_keygate_scopes"},
		{"regex blind to dots", func(tb testing.TB, doc map[string]any) {
			traefikObject(tb, doc, fa)["authResponseHeadersRegex"] = "(?i)^x[-_](keygate[-_]|original[-_]ur[il]$|rewrite[-_]url$|forwarded[-_]uri$)"
		}, "X.keygate.scopes: a forged"},
		{"path override blind to dots", func(tb testing.TB, doc map[string]any) {
			traefikObject(tb, doc, fa)["authResponseHeadersRegex"] = "(?i)^x[^a-z0-9](keygate[^a-z0-9]|original[-_]ur[il]$|rewrite[^a-z0-9]url$|forwarded[^a-z0-9]uri$)"
		}, "X.original.url: it would reach the upstream"},
		{"regex blind to a rare separator", func(tb testing.TB, doc map[string]any) {
			traefikObject(tb, doc, fa)["authResponseHeadersRegex"] = "(?i)^x[-_.+](keygate[-_.+]|original[-_.+]ur[il]$|rewrite[-_.+]url$|forwarded[-_.+]uri$)"
		}, "X~keygate~scopes"},
		{"path overrides kept", func(tb testing.TB, doc map[string]any) {
			traefikObject(tb, doc, fa)["authResponseHeadersRegex"] = "(?i)^x[-_]keygate[-_]"
		}, "X-Original-Url: it would reach the upstream"},
		{"a path override kept", func(tb testing.TB, doc map[string]any) {
			traefikObject(tb, doc, fa)["authResponseHeadersRegex"] = "(?i)^x[-_](keygate[-_]|original[-_]ur[il]$|forwarded[-_]uri$)"
		}, "X-Rewrite-Url"},
		{"case-sensitive regex", func(tb testing.TB, doc map[string]any) {
			traefikObject(tb, doc, fa)["authResponseHeadersRegex"] = "^X[-_]Keygate[-_]"
		}, "X_keygate_scopes: a forged"},
		{"keygate sees only some headers", func(tb testing.TB, doc map[string]any) {
			traefikObject(tb, doc, fa)["authRequestHeaders"] = []any{"X-Api-Key"}
		}, "authRequestHeaders"},
		{"address off keygate's /auth", func(tb testing.TB, doc map[string]any) {
			traefikObject(tb, doc, fa)["address"] = "http://keygate:9002/"
		}, "address"},
		{"key kept in an underscore spelling", func(tb testing.TB, doc map[string]any) {
			delete(traefikObject(tb, doc, creds), "X_Api_Key")
		}, "X_Api_Key"},
		{"authorization kept", func(tb testing.TB, doc map[string]any) {
			delete(traefikObject(tb, doc, creds), "Authorization")
		}, "Authorization"},
		{"credentials stripped before forwardAuth", func(tb testing.TB, doc map[string]any) {
			traefikObject(tb, doc, router)["middlewares"] = []any{"keygate-credentials", "keygate"}
		}, "before forwardAuth"},
		{"router without forwardAuth", func(tb testing.TB, doc map[string]any) {
			traefikObject(tb, doc, router)["middlewares"] = []any{"keygate-credentials"}
		}, "forwardAuth"},
		{"router naming a missing middleware", func(tb testing.TB, doc map[string]any) {
			traefikObject(tb, doc, router)["middlewares"] = []any{"keygat", "keygate-credentials"}
		}, `"keygat"`},
		{"router naming a missing service", func(tb testing.TB, doc map[string]any) {
			traefikObject(tb, doc, router)["service"] = "apii"
		}, `"apii"`},
	}
	base := mustReadFile(t, traefikFile)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var doc map[string]any
			if err := yaml.Unmarshal(base, &doc); err != nil {
				t.Fatal(err)
			}
			tc.mutate(t, doc)
			out, err := yaml.Marshal(doc)
			if err != nil {
				t.Fatal(err)
			}
			err = checkTraefik(out)
			if err == nil {
				t.Fatalf("check passed; want an error containing %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("check error does not mention %q:\n%v", tc.want, err)
			}
		})
	}
}

func traefikObject(tb testing.TB, doc map[string]any, path []string) map[string]any {
	tb.Helper()
	var v any = doc
	for _, k := range path {
		m, ok := v.(map[string]any)
		if !ok {
			tb.Fatalf("%v: %q is not in an object", path, k)
		}
		if v, ok = m[k]; !ok {
			tb.Fatalf("%v: no key %q", path, k)
		}
	}
	m, ok := v.(map[string]any)
	if !ok {
		tb.Fatalf("%v: not an object", path)
	}
	return m
}

func mustReadFile(tb testing.TB, name string) []byte {
	tb.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}
