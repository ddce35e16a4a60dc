package keystore

import (
	"crypto/rand"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"strings"
	"unsafe"
)

// DefaultPrefix is the key prefix used when none is configured.
const DefaultPrefix = "kg"

const (
	base62Alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	// bodyLen base62 characters carry 33·log2(62) ≈ 196.5 random bits.
	bodyLen = 33
	// checksumLen base62 characters hold any CRC32 value (62^6 > 2^32).
	checksumLen = 6
	// displayBodyLen is how much of the body the display prefix shows:
	// enough for a human to tell keys apart, a small fraction of the entropy.
	displayBodyLen = 6
	maxPrefixLen   = 32
	// MaxSecretLen bounds the length of anything worth parsing as a key.
	MaxSecretLen = maxPrefixLen + 1 + bodyLen + checksumLen
)

// ErrMalformedKey reports a string that is not a well-formed API key:
// wrong shape, wrong alphabet, or a checksum that does not match. The
// error never contains the key itself.
var ErrMalformedKey = errors.New("keystore: malformed API key")

// Secret is an API key in clear. It exists only between generation and
// the create/rotate response, and on the request path between reading a
// header and hashing it. Its String method never prints it.
type Secret string

// String redacts the secret so that it cannot leak through %v or %s.
func (Secret) String() string { return "[REDACTED]" }

// GoString redacts the secret for %#v as well.
func (Secret) GoString() string { return `keystore.Secret("[REDACTED]")` }

// Reveal returns the key in clear, for the one response that shows it.
func (s Secret) Reveal() string { return string(s) }

// DisplayPrefix returns the non-secret beginning of the key that humans use
// to recognise it: the prefix, the separator and the first characters of
// the random body. s must be well formed.
func (s Secret) DisplayPrefix() string {
	i := strings.LastIndexByte(string(s), '_')
	return string(s[:i+1+displayBodyLen])
}

// ValidatePrefix checks a configured key prefix: 1–32 characters of
// lower-case letters, digits and underscores, starting with a letter and
// not ending with an underscore.
func ValidatePrefix(prefix string) error {
	if prefix == "" || len(prefix) > maxPrefixLen {
		return fmt.Errorf("key prefix must be 1 to %d characters, got %d", maxPrefixLen, len(prefix))
	}
	for i := 0; i < len(prefix); i++ {
		c := prefix[i]
		switch {
		case c >= 'a' && c <= 'z':
		case (c >= '0' && c <= '9' || c == '_') && i > 0:
		default:
			return fmt.Errorf("key prefix %s: use lower-case letters, digits and '_', starting with a letter", echo(prefix))
		}
	}
	if prefix[len(prefix)-1] == '_' {
		return fmt.Errorf("key prefix %s must not end with '_'", echo(prefix))
	}
	return nil
}

// GenerateSecret returns a new random key "<prefix>_<body><checksum>" whose
// body comes from crypto/rand.
func GenerateSecret(prefix string) (Secret, error) {
	return generateSecret(prefix, rand.Reader)
}

func generateSecret(prefix string, random io.Reader) (Secret, error) {
	if err := ValidatePrefix(prefix); err != nil {
		return "", fmt.Errorf("keystore: %w", err)
	}
	b := make([]byte, 0, len(prefix)+1+bodyLen+checksumLen)
	b = append(b, prefix...)
	b = append(b, '_')
	// Rejection sampling keeps every character uniform: bytes ≥ 248 are
	// discarded so that byte % 62 is unbiased.
	var buf [64]byte
	for len(b) < len(prefix)+1+bodyLen {
		if _, err := io.ReadFull(random, buf[:]); err != nil {
			return "", fmt.Errorf("keystore: reading randomness: %w", err)
		}
		for _, r := range buf {
			if r < 248 && len(b) < len(prefix)+1+bodyLen {
				b = append(b, base62Alphabet[r%62])
			}
		}
	}
	b = appendChecksum(b, checksum(string(b[:len(prefix)]), string(b[len(prefix)+1:])))
	return Secret(b), nil
}

// ParseSecret checks the shape and checksum of a presented key without any
// I/O. It accepts any well-formed prefix, so keys issued under an earlier
// prefix keep working. On failure it returns ErrMalformedKey, never
// anything derived from the input.
func ParseSecret(s string) (Secret, error) {
	if len(s) > MaxSecretLen {
		return "", ErrMalformedKey
	}
	i := strings.LastIndexByte(s, '_')
	if i <= 0 || len(s)-i-1 != bodyLen+checksumLen {
		return "", ErrMalformedKey
	}
	prefix, rest := s[:i], s[i+1:]
	if ValidatePrefix(prefix) != nil {
		return "", ErrMalformedKey
	}
	var digits int8 // negative once any character is not a base62 digit
	for j := 0; j < len(rest); j++ {
		digits |= base62Values[rest[j]]
	}
	if digits < 0 {
		return "", ErrMalformedKey
	}
	body, sum := rest[:bodyLen], rest[bodyLen:]
	want := checksum(prefix, body)
	var got uint64
	for j := 0; j < len(sum); j++ {
		got = got*62 + uint64(base62Value(sum[j]))
	}
	if got != uint64(want) {
		return "", ErrMalformedKey
	}
	return Secret(s), nil
}

// Bounds of a legacy key: a key of another system, imported with
// --accept-legacy-keys, that lacks keygate's prefix and checksum.
const (
	MinLegacySecretLen = 16
	MaxLegacySecretLen = 256
)

// ErrKeygateChecksum reports a string shaped like a keygate key (a valid
// prefix, '_', 39 base62 characters) whose checksum does not match: a
// mistyped keygate key, never taken for a legacy one.
var ErrKeygateChecksum = errors.New("keystore: a keygate key with a wrong checksum")

// ParseLegacySecret checks a key of another system: 16 to 256 characters
// of A-Z, a-z, 0-9 and "-._~+/=" (what API keys, base64 and base64url use),
// and not shaped like a keygate key (ErrKeygateChecksum: those are
// mistyped keygate keys, refused without a lookup). On failure it returns
// ErrMalformedKey or ErrKeygateChecksum, never anything derived from the
// input.
func ParseLegacySecret(s string) (Secret, error) {
	if len(s) < MinLegacySecretLen || len(s) > MaxLegacySecretLen {
		return "", ErrMalformedKey
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if base62Value(c) < 0 && strings.IndexByte("-._~+/=", c) < 0 {
			return "", ErrMalformedKey
		}
	}
	if keygateShaped(s) {
		return "", ErrKeygateChecksum
	}
	return Secret(s), nil
}

// keygateShaped reports whether s has the shape of a keygate key, checksum
// aside.
func keygateShaped(s string) bool {
	i := strings.LastIndexByte(s, '_')
	if i <= 0 || len(s)-i-1 != bodyLen+checksumLen || ValidatePrefix(s[:i]) != nil {
		return false
	}
	for j := i + 1; j < len(s); j++ {
		if base62Value(s[j]) < 0 {
			return false
		}
	}
	return true
}

// LegacyDisplayPrefix is the display prefix of a legacy key: its first
// characters, at most 8 and a quarter of it, for people to recognise it.
func (s Secret) LegacyDisplayPrefix() string {
	return string(s[:min(8, len(s)/4)])
}

// checksum is the CRC32 (IEEE) of prefix and body, the separator excluded.
// It reads the strings in place (crc32 only reads its input), so that
// checking a presented key allocates nothing.
func checksum(prefix, body string) uint32 {
	c := crc32.Update(0, crc32.IEEETable, unsafe.Slice(unsafe.StringData(prefix), len(prefix)))
	return crc32.Update(c, crc32.IEEETable, unsafe.Slice(unsafe.StringData(body), len(body)))
}

// appendChecksum appends sum as exactly checksumLen base62 digits.
func appendChecksum(b []byte, sum uint32) []byte {
	var digits [checksumLen]byte
	v := uint64(sum)
	for i := checksumLen - 1; i >= 0; i-- {
		digits[i] = base62Alphabet[v%62]
		v /= 62
	}
	return append(b, digits[:]...)
}

// base62Value is c's value as a base62 digit, or -1.
func base62Value(c byte) int { return int(base62Values[c]) }

// base62Values maps every byte to its value as a base62 digit, or -1: a
// table, because a key's characters are random and a comparison per
// range mispredicts on nearly every one.
var base62Values = func() (t [256]int8) {
	for i := range t {
		t[i] = -1
	}
	for i := 0; i < len(base62Alphabet); i++ {
		t[base62Alphabet[i]] = int8(i)
	}
	return t
}()
