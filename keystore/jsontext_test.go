package keystore_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/keygate/keygate/keystore"
)

func TestCheckJSONText(t *testing.T) {
	good := []string{
		``, `{}`, `{"name":"plain"}`, `"é"`, `"日本"`, `"😀"`,
		`"\ud83d\ude00"`,       // a pair: 😀
		`"\uD83D\uDE00"`,       // upper-case hex
		`"\u00e9\n\t\"\\"`,     // other escapes
		`"\\ud800"`,            // an escaped backslash, then text "ud800"
		`"\\\ud83d\ude00"`,     // an escaped backslash, then a pair
		`"\u0000"`,             // a NUL escape is JSON (the field rules refuse it)
		`"\ufffd"`,             // U+FFFD sent on purpose
		`{"a":"\ud800\udc00"}`, // the first pair
		`{"a":"\udbff\udfff"}`, // the last pair
		`"\u"`, `"\`,           // malformed: left to the decoder
	}
	for _, s := range good {
		if err := keystore.CheckJSONText([]byte(s)); err != nil {
			t.Errorf("keystore.CheckJSONText(%q) = %v, want nil", s, err)
		}
	}
	bad := map[string]int{ // the input and the offset reported
		"\"\xff\"":                1,  // not UTF-8
		"{\"name\":\"ab\xc3\"}":   11, // a truncated sequence
		"\"\xed\xa0\x80\"":        1,  // a surrogate encoded in UTF-8 (CESU-8)
		"\"\xc0\xaf\"":            1,  // an overlong encoding
		"\"\xf4\x90\x80\x80\"":    1,  // beyond U+10FFFF
		`"\ud800"`:                1,  // a lone high surrogate
		`"\udc00"`:                1,  // a lone low surrogate
		`"\uDFFF\uD800"`:          1,  // a pair in the wrong order
		`"\ud800\u0041"`:          1,  // a high surrogate then not a low one
		`"\ud800\ud800"`:          1,  // two high surrogates
		`"ab\ud83d"`:              3,  // at the end of the string
		`{"a":"x","b":"\ud83dz"}`: 14,
		`"\ud83d\ude00\ud83d"`:    13, // a pair, then a lone half
		`"\\\ud800"`:              3,  // an escaped backslash, then a lone half
	}
	for s, offset := range bad {
		err := keystore.CheckJSONText([]byte(s))
		var e *keystore.JSONTextError
		if !errors.As(err, &e) || e.Offset != offset {
			t.Errorf("keystore.CheckJSONText(%q) = %v, want an error at byte %d", s, err, offset)
		}
	}
}

// FuzzCheck: whatever Check accepts, encoding/json decodes without
// replacing anything, and what Check refuses is what it would replace.
func FuzzCheckJSONText(f *testing.F) {
	for _, s := range []string{`"a"`, `"\ud800"`, "\"\xff\"", `"\ud83d\ude00"`, `"\\ud800"`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var s string
		if json.Unmarshal(b, &s) != nil {
			return
		}
		ok := keystore.CheckJSONText(b) == nil
		// encoding/json writes U+FFFD for what it replaces; an input may
		// also spell U+FFFD itself, raw or escaped.
		spelled := strings.Count(string(b), "\ufffd") + strings.Count(strings.ToLower(string(b)), `\ufffd`)
		replaced := strings.Count(s, "\ufffd") > spelled
		if ok == replaced || !utf8.ValidString(s) {
			t.Fatalf("keystore.CheckJSONText(%q) ok=%v, but decoding gives %q", b, ok, s)
		}
	})
}
