package keystore

import (
	"fmt"
	"unicode/utf16"
	"unicode/utf8"
)

// JSONTextError says where JSON text holds what a decoder would replace.
type JSONTextError struct {
	Offset  int    // the byte where the problem starts
	Problem string // "not UTF-8" or "an unpaired surrogate escape"
}

func (e *JSONTextError) Error() string { return fmt.Sprintf("%s at byte %d", e.Problem, e.Offset) }

// CheckJSONText finds, in JSON text, what encoding/json silently repairs
// when it decodes a string: bytes that are not UTF-8 and \u escapes of
// unpaired UTF-16 surrogates (\ud800 alone), both turned into U+FFFD, so
// that a value checked after decoding has already lost them. The admin API
// (request bodies) and ReadImport (import lines) check the raw text with
// it first, to refuse such input rather than store a replacement.
//
// It returns a *JSONTextError for the first byte of b that is not UTF-8 (a
// UTF-8-encoded surrogate included) or the first \u escape of a surrogate
// that is not half of a pair, or nil. Anything else that is not valid JSON
// is left to the decoder: Check only looks at bytes above 0x7F and at
// backslashes, which valid JSON has only inside strings.
func CheckJSONText(b []byte) error {
	for i := 0; i < len(b); {
		switch c := b[i]; {
		case c >= utf8.RuneSelf:
			r, size := utf8.DecodeRune(b[i:])
			if r == utf8.RuneError && size == 1 {
				return &JSONTextError{Offset: i, Problem: "not UTF-8"}
			}
			i += size
		case c == '\\':
			n, ok := jsonEscape(b[i:])
			if !ok {
				return &JSONTextError{Offset: i, Problem: "an unpaired surrogate escape"}
			}
			i += n
		default:
			i++
		}
	}
	return nil
}

// escape reads the escape at the start of b and returns its length, and
// false when it is a \u escape of a surrogate that the next escape does not
// pair.
func jsonEscape(b []byte) (int, bool) {
	r, ok := jsonHex4(b)
	switch {
	case !ok:
		return min(2, len(b)), true // \n, \", \\ (or a syntax error the decoder reports)
	case !utf16.IsSurrogate(r):
		return 6, true
	case r >= 0xdc00: // a low surrogate first
		return 0, false
	}
	if low, ok := jsonHex4(b[6:]); ok && low >= 0xdc00 && low <= 0xdfff {
		return 12, true
	}
	return 0, false
}

// hex4 reads `\uXXXX` at the start of b.
func jsonHex4(b []byte) (rune, bool) {
	if len(b) < 6 || b[0] != '\\' || b[1] != 'u' {
		return 0, false
	}
	var r rune
	for _, c := range b[2:6] {
		switch {
		case c >= '0' && c <= '9':
			r = r<<4 | rune(c-'0')
		case c >= 'a' && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case c >= 'A' && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return 0, false
		}
	}
	return r, true
}
