package keystore

import (
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"testing"
)

var secretShape = regexp.MustCompile(`^kg_[0-9A-Za-z]{39}$`)

func TestGenerateSecret(t *testing.T) {
	seen := map[Secret]bool{}
	for i := 0; i < 1000; i++ {
		s, err := GenerateSecret(DefaultPrefix)
		if err != nil {
			t.Fatal(err)
		}
		if !secretShape.MatchString(s.Reveal()) {
			t.Fatalf("generated key has the wrong shape (length %d)", len(s.Reveal()))
		}
		if _, err := ParseSecret(s.Reveal()); err != nil {
			t.Fatalf("a generated key does not parse: %v", err)
		}
		if seen[s] {
			t.Fatal("the same key was generated twice")
		}
		seen[s] = true
		if got, want := s.DisplayPrefix(), s.Reveal()[:3+displayBodyLen]; got != want {
			t.Fatalf("DisplayPrefix = %q, want %q", got, want)
		}
	}
}

func TestGenerateSecretUniformAlphabet(t *testing.T) {
	// Every base62 character appears among 2000 bodies; a biased or
	// truncated alphabet would leave some out or overweight others.
	counts := map[rune]int{}
	for i := 0; i < 2000; i++ {
		s, _ := GenerateSecret("kg")
		for _, r := range s.Reveal()[3 : 3+bodyLen] {
			counts[r]++
		}
	}
	if len(counts) != 62 {
		t.Fatalf("saw %d distinct body characters, want 62", len(counts))
	}
	mean := 2000 * bodyLen / 62
	for r, n := range counts {
		if n < mean*3/4 || n > mean*5/4 {
			t.Errorf("character %q appears %d times, mean %d", r, n, mean)
		}
	}
}

func TestSecretNeverPrints(t *testing.T) {
	s, _ := GenerateSecret("kg")
	for _, format := range []string{"%v", "%s", "%+v", "%#v", "%q"} {
		if out := fmt.Sprintf(format, s); strings.Contains(out, s.Reveal()[3:]) {
			t.Errorf("fmt %s printed the secret", format)
		}
	}
	if out := fmt.Sprintf("%v", struct{ S Secret }{s}); strings.Contains(out, s.Reveal()[3:]) {
		t.Error("a struct holding the secret printed it")
	}
}

func TestParseSecretRejects(t *testing.T) {
	good, _ := GenerateSecret("kg")
	g := good.Reveal()
	cases := map[string]string{
		"empty":              "",
		"no separator":       strings.Replace(g, "_", "", 1),
		"prefix only":        "kg_",
		"short body":         g[:len(g)-1],
		"long body":          g + "A",
		"bad checksum":       g[:len(g)-1] + string(flip(g[len(g)-1])),
		"upper-case prefix":  "KG" + g[2:],
		"empty prefix":       g[2:],
		"non-base62 body":    g[:10] + "-" + g[11:],
		"space":              " " + g,
		"trailing newline":   g + "\n",
		"unicode":            g[:10] + "é" + g[12:],
		"huge":               strings.Repeat("a", 10000),
		"prefix ends in _":   "kg__" + g[3:],
		"prefix digit first": "1g" + g[2:],
	}
	for name, in := range cases {
		t.Run(name, func(t *testing.T) {
			if _, err := ParseSecret(in); !errors.Is(err, ErrMalformedKey) {
				t.Fatalf("ParseSecret: got %v, want ErrMalformedKey", err)
			}
		})
	}
}

func TestParseSecretAcceptsOtherPrefixes(t *testing.T) {
	for _, prefix := range []string{"kg", "acme", "sk_live", "a", "x1"} {
		s, err := GenerateSecret(prefix)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ParseSecret(s.Reveal()); err != nil {
			t.Errorf("prefix %q: %v", prefix, err)
		}
	}
	for _, prefix := range []string{"", "KG", "1a", "a_", "a-b", strings.Repeat("a", 33)} {
		if _, err := GenerateSecret(prefix); err == nil {
			t.Errorf("GenerateSecret(%q) accepted an invalid prefix", prefix)
		}
	}
}

func TestErrMalformedKeyHasNoInput(t *testing.T) {
	in := "kg_" + strings.Repeat("Z", 39)
	_, err := ParseSecret(in)
	if err == nil || strings.Contains(err.Error(), "ZZZZ") {
		t.Fatalf("error %v mentions the input", err)
	}
}

func flip(c byte) byte {
	if c == 'A' {
		return 'B'
	}
	return 'A'
}

// FuzzSecret: every generated key parses, and every single-character
// change of it is rejected (CRC32 catches every burst error of up to 32
// bits, so one changed character can never keep the checksum right).
func FuzzSecret(f *testing.F) {
	f.Add([]byte("seed"), "kg", uint(0), byte('x'))
	f.Add(bytes.Repeat([]byte{0xff}, 64), "sk_live", uint(10), byte('_'))
	f.Add([]byte{1, 2, 3}, "a", uint(41), byte('0'))
	f.Fuzz(func(t *testing.T, seed []byte, prefix string, pos uint, replacement byte) {
		if len(seed) == 0 || ValidatePrefix(prefix) != nil {
			return
		}
		s, err := generateSecret(prefix, &cycle{b: seed})
		if err != nil {
			t.Skip() // a seed of bytes ≥ 248 only never yields a character
		}
		key := s.Reveal()
		if _, err := ParseSecret(key); err != nil {
			t.Fatalf("generated key %q does not parse: %v", key, err)
		}
		i := int(pos % uint(len(key)))
		if key[i] == replacement {
			return
		}
		changed := key[:i] + string([]byte{replacement}) + key[i+1:]
		if _, err := ParseSecret(changed); err == nil {
			t.Fatalf("changing byte %d of %q to %q was accepted", i, key, replacement)
		}
	})
}

// FuzzParseSecret: arbitrary input never panics, and whatever parses has
// the documented shape.
func FuzzParseSecret(f *testing.F) {
	s, _ := GenerateSecret("kg")
	f.Add(s.Reveal())
	f.Add("kg_")
	f.Add("")
	f.Add("Bearer kg_abc")
	f.Fuzz(func(t *testing.T, in string) {
		got, err := ParseSecret(in)
		if err != nil {
			if !errors.Is(err, ErrMalformedKey) {
				t.Fatalf("unexpected error %v", err)
			}
			return
		}
		i := strings.LastIndexByte(got.Reveal(), '_')
		if i < 1 || len(got.Reveal())-i-1 != bodyLen+checksumLen || ValidatePrefix(got.Reveal()[:i]) != nil {
			t.Fatalf("accepted %q, which does not have the key shape", in)
		}
	})
}

// cycle is an endless reader repeating b, so that a fuzz seed drives
// generation.
type cycle struct {
	b []byte
	i int
	n int
}

func (c *cycle) Read(p []byte) (int, error) {
	for j := range p {
		p[j] = c.b[c.i%len(c.b)] + byte(c.n)
		c.i++
		if c.i%len(c.b) == 0 {
			c.n++ // vary the stream so that a short seed cannot loop forever
		}
	}
	return len(p), nil
}

// Every byte's base62 value is its place in the alphabet, or -1.
func TestBase62Values(t *testing.T) {
	for c := range 256 {
		if got, want := base62Value(byte(c)), strings.IndexByte(base62Alphabet, byte(c)); got != want {
			t.Errorf("base62Value(%q) = %d, want %d", byte(c), got, want)
		}
	}
}

// A character that is no base62 digit is refused wherever it is in the
// body, even under a checksum that matches it.
func TestParseSecretRefusesNonDigitsUnderAMatchingChecksum(t *testing.T) {
	good, _ := GenerateSecret("kg")
	body := good.Reveal()[len("kg_"):][:bodyLen]
	for i := range bodyLen {
		for _, c := range []byte{'-', '_', ' ', '+', '/', 0, 0x80, 0xff} {
			bad := body[:i] + string([]byte{c}) + body[i+1:]
			key := string(appendChecksum([]byte("kg_"+bad), checksum("kg", bad)))
			if _, err := ParseSecret(key); !errors.Is(err, ErrMalformedKey) {
				t.Fatalf("%q at %d of the body: got %v, want ErrMalformedKey", c, i, err)
			}
		}
	}
}
