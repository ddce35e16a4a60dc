package policy

import (
	"sync"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// Letters that some HTTP stacks read as ASCII ones (the case choice's
// option 1, see chCase). A stack that compares paths with Java's
// equalsIgnoreCase or .NET's OrdinalIgnoreCase reads "ı" as "i"; one that
// applies compatibility normalization (NFKC, NFKD) reads the fullwidth
// "ｕ", the mathematical "𝐮" and the ligature "ﬃ" as "u", "u" and "ffi";
// and Windows, converting a path to an ANSI code page with "best fit",
// drops diacritics ("ū" is "u", and so is "u" followed by a combining
// diaeresis) and maps a few letters that have no decomposition ("ł" is
// "l"). So /api/v1/ｕsers may reach users there.

// foldTo returns the lower-case ASCII letters and digits the non-ASCII
// code point r is read as by such a stack ("" for a combining mark, which
// it drops); ok is false if r stays as it is.
func foldTo(r rune) (to string, ok bool) {
	to, ok = asciiFolds()[r]
	return to, ok
}

// asciiFolds maps every non-ASCII code point that some stack reads as
// ASCII letters or digits to them, lower-cased, and every nonspacing mark
// to "": computed once, from the Unicode tables of golang.org/x/text
// (about 1,700 letters and 2,000 marks, in about 20 ms), when the first
// policy is built.
var asciiFolds = sync.OnceValue(func() map[rune]string {
	m := make(map[rune]string, 4096)
	add := func(r rune, to string) {
		if _, ok := m[r]; !ok && badRune(r) == "" { // not one a path may not hold at all
			m[r] = to
		}
	}
	for _, rg := range unicode.Mn.R16 {
		for r := rune(rg.Lo); r <= rune(rg.Hi); r += rune(rg.Stride) {
			add(r, "")
		}
	}
	for _, rg := range unicode.Mn.R32 {
		for r := rune(rg.Lo); r <= rune(rg.Hi); r += rune(rg.Stride) {
			add(r, "")
		}
	}
	var buf []byte
	for r := rune(utf8.RuneSelf); r <= unicode.MaxRune; r++ {
		if s, ok := compatibilityLetters(buf[:0], r); ok {
			add(r, string(s))
			buf = s
		}
	}
	for _, f := range caseAndBestFitFolds {
		add(f.r, f.to)
	}
	return m
})

// compatibilityLetters appends to buf the compatibility decomposition
// (NFKD) of r without its nonspacing marks, lower-cased, if it is one or
// more ASCII letters and digits; ok is false otherwise.
func compatibilityLetters(buf []byte, r rune) ([]byte, bool) {
	if !utf8.ValidRune(r) {
		return nil, false // a surrogate
	}
	var rb [utf8.UTFMax]byte
	d := norm.NFKD.Properties(rb[:utf8.EncodeRune(rb[:], r)]).Decomposition()
	if d == nil {
		return nil, false // most code points: no decomposition
	}
	for _, c := range string(d) {
		switch {
		case unicode.Is(unicode.Mn, c):
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9':
			buf = append(buf, byte(c))
		case 'A' <= c && c <= 'Z':
			buf = append(buf, byte(c)+'a'-'A')
		default:
			return nil, false
		}
	}
	return buf, len(buf) > 0
}

// caseAndBestFitFolds are the code points folded to ASCII that
// compatibility decomposition leaves alone: "ı", which Unicode simple case
// mapping turns into "I" (Java, .NET), and those that the Windows best-fit
// tables of the single-byte code pages (bestfit874.txt and bestfit1250.txt
// to bestfit1258.txt, section WCTABLE, at
// unicode.org/Public/MAPPINGS/VENDORS/MICSFT/WindowsBestFit) map to an
// ASCII letter or digit:
//
//	¢£¼½¾ÆØæøĐđĦħŁłŒœŦŧƀƉƑƒƗƚƟƫƮƶǤǥɡΓΘΣΦΩαδεπστφһ٠١٢٣٤٥٦٧٨٩₧ℇ℘℮↓√∞∟∩└┬╘╙╚╤╥╦○◙☺☻☼♪♫
//
// A code point has one fold: where a table disagrees with its
// decomposition (code page 1254 maps "₁" to "0"), the decomposition wins.
var caseAndBestFitFolds = [...]struct {
	r  rune
	to string
}{
	{0x0131, "i"},
	{0x00a2, "c"}, {0x00a3, "l"}, {0x00bc, "1"}, {0x00bd, "1"}, {0x00be, "3"},
	{0x00c6, "a"}, {0x00d8, "o"}, {0x00e6, "a"}, {0x00f8, "o"}, {0x0110, "d"},
	{0x0111, "d"}, {0x0126, "h"}, {0x0127, "h"}, {0x0141, "l"}, {0x0142, "l"},
	{0x0152, "o"}, {0x0153, "o"}, {0x0166, "t"}, {0x0167, "t"}, {0x0180, "b"},
	{0x0189, "d"}, {0x0191, "f"}, {0x0192, "f"}, {0x0197, "i"}, {0x019a, "l"},
	{0x019f, "o"}, {0x01ab, "t"}, {0x01ae, "t"}, {0x01b6, "z"}, {0x01e4, "g"},
	{0x01e5, "g"}, {0x0261, "g"}, {0x0393, "g"}, {0x0398, "t"}, {0x03a3, "s"},
	{0x03a6, "f"}, {0x03a9, "o"}, {0x03b1, "a"}, {0x03b4, "d"}, {0x03b5, "e"},
	{0x03c0, "p"}, {0x03c3, "s"}, {0x03c4, "t"}, {0x03c6, "f"}, {0x04bb, "h"},
	{0x0660, "0"}, {0x0661, "1"}, {0x0662, "2"}, {0x0663, "3"}, {0x0664, "4"},
	{0x0665, "5"}, {0x0666, "6"}, {0x0667, "7"}, {0x0668, "8"}, {0x0669, "9"},
	{0x20a7, "p"}, {0x2107, "e"}, {0x2118, "p"}, {0x212e, "e"}, {0x2193, "v"},
	{0x221a, "v"}, {0x221e, "8"}, {0x221f, "l"}, {0x2229, "n"}, {0x2514, "l"},
	{0x252c, "t"}, {0x2558, "l"}, {0x2559, "l"}, {0x255a, "l"}, {0x2564, "t"},
	{0x2565, "t"}, {0x2566, "t"}, {0x25cb, "0"}, {0x25d9, "0"}, {0x263a, "o"},
	{0x263b, "o"}, {0x263c, "0"}, {0x266a, "d"}, {0x266b, "d"},
}

// mayFold reports whether foldLetters changes key, a decoded segment.
func mayFold(key []byte) bool {
	for i := 0; i < len(key); {
		if key[i] < utf8.RuneSelf {
			i++
			continue
		}
		r, size := utf8.DecodeRune(key[i:])
		if _, ok := foldTo(r); ok {
			return true
		}
		i += size
	}
	return false
}

// foldLetters writes key, a decoded segment, into dst as a stack that
// reads letters loosely reads it: every code point of asciiFolds becomes
// its ASCII letters, or nothing. ok is false if the result does not fit in dst (it
// could then match no policy segment).
func foldLetters(dst, key []byte) (folded []byte, ok bool) {
	n := 0
	for i := 0; i < len(key); {
		c := key[i]
		if c < utf8.RuneSelf {
			if n == len(dst) {
				return nil, false
			}
			dst[n] = c
			n++
			i++
			continue
		}
		r, size := utf8.DecodeRune(key[i:])
		to, ok := foldTo(r)
		if !ok {
			if n+size > len(dst) {
				return nil, false
			}
			n += copy(dst[n:], key[i:i+size])
		} else {
			if n+len(to) > len(dst) {
				return nil, false
			}
			n += copy(dst[n:], to)
		}
		i += size
	}
	return dst[:n], true
}
