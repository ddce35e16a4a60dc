package keystore

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// TestRefusalsEchoAShortPrefix: every parser of untrusted text (the
// admin API's and the CLI's) refuses with a message that repeats at most
// a short, printable prefix of the input, whatever the input holds: the
// message's length is bounded as shown, not as a count of input bytes.
func TestRefusalsEchoAShortPrefix(t *testing.T) {
	hostile := map[string]string{
		"nul bytes":     strings.Repeat("\x00", 300),
		"invalid utf-8": strings.Repeat("\xff", 300),
		"control runes": strings.Repeat("\u0085\u2028", 200),
		"wide runes":    strings.Repeat("🔑", 300),
		"a long paste":  strings.Repeat("kg_0123456789abcdef", 10000),
		"cut mid-rune":  strings.Repeat("a", maxEcho-1) + "ü" + strings.Repeat("b", 100),
	}
	parsers := map[string]func(string) error{
		"ParseMeta (no =)":   func(s string) error { _, _, err := ParseMeta(s); return err },
		"ParseMeta (key)":    func(s string) error { _, _, err := ParseMeta(s + "=v"); return err },
		"ParseCIDR":          func(s string) error { _, err := ParseCIDR(s); return err },
		"ParseCIDR (prefix)": func(s string) error { _, err := ParseCIDR(s + "/8"); return err },
		"ValidateScope":      ValidateScope,
		"ValidateScope (module)": func(s string) error {
			return ValidateScope(s + ":read")
		},
		"ValidateScope (action)": func(s string) error { return ValidateScope("projects:" + s) },
		"ParseDuration":          func(s string) error { _, err := ParseDuration(s); return err },
		"ParseDuration (days)":   func(s string) error { _, err := ParseDuration(s + "d"); return err },
		"ParseDuration (-)":      func(s string) error { _, err := ParseDuration("-" + s); return err },
		"ValidatePrefix":         ValidatePrefix,
	}
	for pname, parse := range parsers {
		for iname, in := range hostile {
			err := parse(in)
			if err == nil {
				t.Errorf("%s(%s): accepted", pname, iname)
				continue
			}
			msg := err.Error()
			if len(msg) > 160 || !utf8.ValidString(msg) || strings.ContainsAny(msg, "\x00\u0085\u2028") {
				t.Errorf("%s(%s): %d bytes: %q", pname, iname, len(msg), msg)
			}
		}
	}
}

func TestEcho(t *testing.T) {
	for in, want := range map[string]string{
		"":                                   `""`,
		"tier":                               `"tier"`,
		"Zürich":                             `"Zürich"`,
		"a\x00b":                             `"a\x00b"`,
		"\xff":                               `"\xff"`,
		strings.Repeat("a", maxEcho):         `"` + strings.Repeat("a", maxEcho) + `"`,
		strings.Repeat("a", maxEcho+1):       `"` + strings.Repeat("a", maxEcho) + `"…`,
		strings.Repeat("a", maxEcho-1) + "ü": `"` + strings.Repeat("a", maxEcho-1) + `"…`,
		strings.Repeat("\x00", 20):           `"` + strings.Repeat(`\x00`, 12) + `"…`,
	} {
		if got := echo(in); got != want {
			t.Errorf("echo(%q) = %s, want %s", in, got, want)
		}
	}
}
