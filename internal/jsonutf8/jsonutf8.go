package jsonutf8

import (
	"fmt"
	"unicode/utf16"
	"unicode/utf8"
)

// Error says where JSON text holds what a decoder would replace.
type Error struct {
	Offset  int    // the byte where the problem starts
	Problem string // "not UTF-8" or "an unpaired surrogate escape"
}

func (e *Error) Error() string { return fmt.Sprintf("%s at byte %d", e.Problem, e.Offset) }

// Check returns an *Error for the first byte of b that is not UTF-8 (a
// UTF-8-encoded surrogate included) or the first \u escape of a surrogate
// that is not half of a pair, or nil. Anything else that is not valid JSON
// is left to the decoder: Check only looks at bytes above 0x7F and at
// backslashes, which valid JSON has only inside strings.
func Check(b []byte) error {
	for i := 0; i < len(b); {
		switch c := b[i]; {
		case c >= utf8.RuneSelf:
			r, size := utf8.DecodeRune(b[i:])
			if r == utf8.RuneError && size == 1 {
				return &Error{Offset: i, Problem: "not UTF-8"}
			}
			i += size
		case c == '\\':
			n, ok := escape(b[i:])
			if !ok {
				return &Error{Offset: i, Problem: "an unpaired surrogate escape"}
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
func escape(b []byte) (int, bool) {
	r, ok := hex4(b)
	switch {
	case !ok:
		return min(2, len(b)), true // \n, \", \\ (or a syntax error the decoder reports)
	case !utf16.IsSurrogate(r):
		return 6, true
	case r >= 0xdc00: // a low surrogate first
		return 0, false
	}
	if low, ok := hex4(b[6:]); ok && low >= 0xdc00 && low <= 0xdfff {
		return 12, true
	}
	return 0, false
}

// hex4 reads `\uXXXX` at the start of b.
func hex4(b []byte) (rune, bool) {
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
