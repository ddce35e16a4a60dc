package keystore

import (
	"encoding/json"
	"fmt"
	"maps"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Limits on a key's metadata.
const (
	MaxMetadata         = 16  // entries
	MaxMetadataKeyLen   = 32  // bytes of a key: [a-z0-9_]
	MaxMetadataValueLen = 256 // bytes of a value
)

// ValidateMetaKey checks a metadata key: 1 to 32 of a-z, 0-9 and '_'.
func ValidateMetaKey(k string) error {
	if k == "" || len(k) > MaxMetadataKeyLen {
		return fmt.Errorf("key %s: want 1 to %d of a-z, 0-9 and _", echo(k), MaxMetadataKeyLen)
	}
	for i := 0; i < len(k); i++ {
		if c := k[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return fmt.Errorf("key %s: want 1 to %d of a-z, 0-9 and _", echo(k), MaxMetadataKeyLen)
		}
	}
	return nil
}

// validateMetaValue checks a metadata value: 1 to 256 bytes of UTF-8
// without control characters or white space at either end, so that it is
// the same in an upstream header as in Envoy's dynamic metadata.
func validateMetaValue(k, v string) error {
	switch {
	case v == "":
		return fmt.Errorf("%s: the value must not be empty", k)
	case len(v) > MaxMetadataValueLen:
		return fmt.Errorf("%s: the value is %d bytes, at most %d", k, len(v), MaxMetadataValueLen)
	case !utf8.ValidString(v):
		return fmt.Errorf("%s: the value must be UTF-8", k)
	case strings.TrimSpace(v) != v:
		return fmt.Errorf("%s: the value must not start or end with white space", k)
	case strings.ContainsFunc(v, unicode.IsControl):
		return fmt.Errorf("%s: the value must not contain control characters", k)
	}
	return nil
}

// ParseMeta reads one metadata entry written key=value, as --meta takes
// it.
func ParseMeta(s string) (key, value string, err error) {
	key, value, ok := strings.Cut(s, "=")
	if !ok {
		return "", "", invalidf("metadata", "%s: want key=value, like tier=gold", echo(s))
	}
	if err := ValidateMetaKey(key); err != nil {
		return "", "", invalid("metadata", err.Error())
	}
	if err := validateMetaValue(key, value); err != nil {
		return "", "", invalid("metadata", err.Error())
	}
	return key, value, nil
}

// NormalizeMetadata checks a key's metadata (at most 16 entries, each
// key [a-z0-9_]{1,32} and value 1 to 256 bytes, see ParseMeta) and
// returns it, nil for none, or a *ValidationError for field "metadata".
func NormalizeMetadata(m map[string]string) (map[string]string, error) {
	if len(m) > MaxMetadata {
		return nil, invalidf("metadata", "at most %d entries, got %d", MaxMetadata, len(m))
	}
	for k, v := range m {
		if err := ValidateMetaKey(k); err != nil {
			return nil, invalid("metadata", err.Error())
		}
		if err := validateMetaValue(k, v); err != nil {
			return nil, invalid("metadata", err.Error())
		}
	}
	if len(m) == 0 {
		return nil, nil
	}
	return maps.Clone(m), nil
}

// MetadataChange changes a key's metadata: Clear removes every entry
// first, then Set adds or replaces entries and Unset removes them.
type MetadataChange struct {
	Clear bool
	Set   map[string]string
	Unset []string
}

// apply returns m changed by c, checked (NormalizeMetadata).
func (c *MetadataChange) apply(m map[string]string) (map[string]string, error) {
	for _, k := range c.Unset {
		if err := ValidateMetaKey(k); err != nil {
			return nil, invalid("metadata", err.Error())
		}
	}
	out := map[string]string{}
	if !c.Clear {
		maps.Copy(out, m)
	}
	maps.Copy(out, c.Set)
	for _, k := range c.Unset {
		delete(out, k)
	}
	return NormalizeMetadata(out)
}

// UnmarshalMetadata reads metadata as the stores keep it, a JSON object
// ("{}" for none, most keys' case, read without decoding): nil for none.
func UnmarshalMetadata(s string) (map[string]string, error) {
	if s == "" || s == "{}" {
		return nil, nil
	}
	var m map[string]string
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		return nil, fmt.Errorf("stored metadata: %w", err)
	}
	if len(m) == 0 {
		return nil, nil
	}
	return m, nil
}
