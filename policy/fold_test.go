package policy

import (
	"strings"
	"testing"
)

// TestFoldLetters: the letters some stack reads as ASCII ones, from every
// source asciiFolds draws on, and what stays as it is.
func TestFoldLetters(t *testing.T) {
	for in, want := range map[string]string{
		"ｕsers":                "users", // fullwidth (NFKC)
		"𝐮𝐬𝐞𝐫𝐬":                "users", // mathematical bold (NFKC)
		"ūsers":                "users", // a precomposed diacritic (NFKD)
		"u\u0308sers":          "users", // a combining mark, dropped
		"\u0130d":              "id",    // İ (NFKD, and simple case mapping)
		"ıd":                   "id",    // dotless i (simple case mapping only)
		"ſ":                    "s",     // long s
		"\u212a":               "k",     // Kelvin sign
		"ﬃx":                   "ffix",  // a ligature
		"\u3389":               "kcal",  // longer than its code point
		"łøđ":                  "lod",   // best fit: no decomposition
		"acc☺unts":             "accounts",
		"\u0663":               "3", // Arabic-Indic digit (best fit, 1256)
		"café":                 "cafe",
		"中文":                   "中文", // no fold
		"projects":             "projects",
		"\u2081":               "1", // the decomposition, not code page 1254's "0"
		strings.Repeat("a", 8): strings.Repeat("a", 8),
	} {
		var dst [maxPolicySegment]byte
		got, ok := foldLetters(dst[:], []byte(in))
		if !ok || string(got) != want {
			t.Errorf("foldLetters(%q) = %q, %v; want %q", in, got, ok, want)
		}
		if changes := string(got) != in; mayFold([]byte(in)) != changes {
			t.Errorf("mayFold(%q) = %v, but the fold changes it: %v", in, !changes, changes)
		}
	}
	var small [4]byte
	if got, ok := foldLetters(small[:], []byte("\u3389x")); ok {
		t.Errorf("foldLetters into 4 bytes of a 5-byte fold = %q, ok", got)
	}
	// No code point folds to something a path's structure depends on.
	for r, to := range asciiFolds() {
		if strings.ContainsAny(to, "/\\.;?#%: ") || badRune(r) != "" {
			t.Errorf("%U folds to %q", r, to)
		}
	}
}
