package keystore

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Key is the record of an API key: everything about it except the secret,
// which is never stored.
type Key struct {
	ID            string            // opaque, not secret; used in URLs, headers and logs
	AccountID     string            // the client the key belongs to, opaque text from the host system
	Name          string            // human name, required
	Description   string            // optional free text
	DisplayPrefix string            // first characters of the key, for humans to recognise it
	Scopes        []string          // empty means every module that is not restricted
	AllowedCIDRs  []netip.Prefix    // source addresses the key may be used from; none: anywhere
	Metadata      map[string]string // at most MaxMetadata entries, for Envoy's dynamic metadata and upstream headers; nil: none
	Limits        Limits            // rates and quota keygate enforces; zero: none
	HashScheme    string            // SchemeSHA256 or SchemeHMACSHA256
	CreatedAt     time.Time         // when it was issued
	CreatedBy     string            // who issued it (actor recorded by the CLI or admin API)
	ExpiresAt     *time.Time        // nil: never expires
	RevokedAt     *time.Time        // nil: not revoked
	DisabledAt    *time.Time        // nil: not disabled (a disabled key is refused until enabled again)
	LastUsedAt    *time.Time        // approximate: recorded in batches
	RotatedFrom   string            // id of the key this one replaced, "" if none
	RotatedTo     string            // id of the key that replaced this one, "" if none
	Digest        Digest            // the hash the key is stored under
	UpdatedAt     time.Time         // database time of the last lifecycle change: the record's version
}

// State is where a key stands at a given instant.
type State int

// The states of a key. Only StateActive keys authenticate.
const (
	StateActive State = iota
	StateExpired
	StateRevoked
	StateDisabled
)

// String names the state as logs, metrics and JSON output spell it.
func (s State) String() string {
	switch s {
	case StateActive:
		return "active"
	case StateExpired:
		return "expired"
	case StateRevoked:
		return "revoked"
	case StateDisabled:
		return "disabled"
	}
	return "unknown"
}

// StateAt reports the key's state at now. A revoked key is revoked
// whatever its revocation time says (revocation is never scheduled, so a
// clock running behind the database's must not delay it), and so is a
// disabled key disabled; revocation wins over disabling, and both over
// expiry.
func (k *Key) StateAt(now time.Time) State {
	switch {
	case k.RevokedAt != nil:
		return StateRevoked
	case k.DisabledAt != nil:
		return StateDisabled
	case k.ExpiresAt != nil && !now.Before(*k.ExpiresAt):
		return StateExpired
	}
	return StateActive
}

// Limits on the text fields of a key.
const (
	MaxNameLen        = 100
	MaxDescriptionLen = 1000
	MaxAccountIDLen   = 200
	MaxScopes         = 64
	maxModuleNameLen  = 63
)

// Scope syntax: "*", "<module>:read", "<module>:write" or "<module>:*",
// where module is a lower-case identifier of at most 63 characters
// ([a-z][a-z0-9_-]*), the same syntax as module names in the policy file.
const (
	ScopeAll    = "*"
	ActionRead  = "read"
	ActionWrite = "write"
)

// ValidateScope checks one scope against the scope syntax.
func ValidateScope(s string) error {
	if s == ScopeAll {
		return nil
	}
	module, action, ok := strings.Cut(s, ":")
	if !ok {
		return fmt.Errorf("scope %s: want \"*\" or \"<module>:read|write|*\"", echo(s))
	}
	if !ValidModuleName(module) {
		return fmt.Errorf("scope %s: module must match [a-z][a-z0-9_-]{0,62}", echo(s))
	}
	switch action {
	case ActionRead, ActionWrite, ScopeAll:
		return nil
	}
	return fmt.Errorf("scope %s: action must be read, write or *", echo(s))
}

// ValidModuleName reports whether name is a valid module name: the part of
// a scope before the colon.
func ValidModuleName(name string) bool {
	if name == "" || len(name) > maxModuleNameLen || name[0] < 'a' || name[0] > 'z' {
		return false
	}
	for i := 1; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// NormalizeScopes validates scopes and returns them sorted without
// duplicates.
func NormalizeScopes(scopes []string) ([]string, error) {
	if len(scopes) > MaxScopes {
		return nil, invalid("scopes", fmt.Sprintf("at most %d scopes, got %d", MaxScopes, len(scopes)))
	}
	out := make([]string, 0, len(scopes))
	for _, s := range scopes {
		if err := ValidateScope(s); err != nil {
			return nil, invalid("scopes", err.Error())
		}
		out = append(out, s)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// The account id rule: 1 to MaxAccountIDLen characters, each an ASCII
// letter or digit or one of AccountIDPunctuation, the first a letter or a
// digit. It admits what host systems use for tenants (UUIDs, slugs, e-mail
// addresses, "org:123", "auth0|5f7c…") and nothing that an HTTP header,
// a proxy or a log line would change, split or hide: no white space, no
// comma or semicolon (list separators in headers), no quote, no control
// character, no non-ASCII character. Nothing is trimmed or folded: " acme"
// is refused, not read as "acme", and "Acme" and "acme" are two accounts.
const AccountIDPunctuation = "-_.:@+|"

// AccountIDPattern is the account id rule as a regular expression, in the
// syntax both Go's regexp and PostgreSQL's ~ operator read, for finding
// stored rows that break it.
const AccountIDPattern = `^[A-Za-z0-9][A-Za-z0-9._:@+|-]{0,199}$`

// ValidAccountID reports whether id follows the account id rule.
func ValidAccountID(id string) bool { return ValidateAccountID(id) == nil }

// ValidateAccountID checks an account id against the account id rule (see
// AccountIDPunctuation). The admin API, the CLI, the tokens file and import
// files all apply it; its error says which part of the rule id breaks,
// without repeating id.
func ValidateAccountID(id string) error {
	const rule = "an account id is letters, digits and " + AccountIDPunctuation + ", starting with a letter or digit"
	switch {
	case id == "":
		return invalid("account_id", "must not be empty")
	case strings.TrimSpace(id) != id:
		return invalid("account_id", "must not start or end with white space: "+rule)
	case !isASCIIAlnum(id[0]):
		return invalid("account_id", "must start with a letter or digit: "+rule)
	}
	for i := 1; i < len(id); i++ {
		if c := id[i]; !isASCIIAlnum(c) && strings.IndexByte(AccountIDPunctuation, c) < 0 {
			return invalid("account_id", "must hold only letters, digits and "+AccountIDPunctuation+": "+rule)
		}
	}
	if len(id) > MaxAccountIDLen { // all ASCII by now: bytes are characters
		return invalidf("account_id", "at most %d characters, got %d", MaxAccountIDLen, len(id))
	}
	return nil
}

func isASCIIAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// ValidateName checks a name by the rules of a key's name (not blank, at
// most MaxNameLen characters, one line, and nothing invisible: no control
// or format character, no line or paragraph separator, no other default
// ignorable code point such as a variation selector or a Hangul filler).
// A name is what people tell keys apart by in the console and the CLI, so
// two names that look the same must be the same: U+202E (right-to-left
// override) or U+200B (zero width space) would make "prod" and
// "pro\u200bd" two names that show alike, or make a name show reversed.
func ValidateName(name string) error {
	return validateText("name", name, MaxNameLen, true, refusedInName)
}

// ValidateDescription checks a key's description (at most
// MaxDescriptionLen characters; newlines and tabs allowed, no other control
// character). Free text in other scripts needs joiners, direction marks
// and soft hyphens, so they stay; what it never needs is refused: the
// bidirectional embeddings, overrides and isolates (U+202A–U+202E,
// U+2066–U+2069), which reorder how the text after them shows, and the
// invisible tag characters (U+E0000–U+E007F), which carry hidden text.
func ValidateDescription(d string) error {
	return validateText("description", d, MaxDescriptionLen, false, refusedInDescription)
}

// refusedInName reports the characters a name may not hold.
func refusedInName(r rune) bool {
	return unicode.In(r, unicode.Cc, unicode.Cf, unicode.Zl, unicode.Zp, unicode.Other_Default_Ignorable_Code_Point, unicode.Variation_Selector)
}

// refusedInDescription reports the characters a description may not hold.
func refusedInDescription(r rune) bool {
	return unicode.IsControl(r) && r != '\n' && r != '\t' ||
		r >= 0x202a && r <= 0x202e || r >= 0x2066 && r <= 0x2069 || r >= 0xe0000 && r <= 0xe007f
}

// validateText checks a free-text field: valid UTF-8, no character that
// refused reports, at most max characters, and (when required) not blank.
func validateText(field, v string, max int, required bool, refused func(rune) bool) error {
	if !utf8.ValidString(v) {
		return invalid(field, "must be valid UTF-8")
	}
	if required && strings.TrimSpace(v) == "" {
		return invalid(field, "must not be empty")
	}
	if n := utf8.RuneCountInString(v); n > max {
		return invalid(field, fmt.Sprintf("at most %d characters, got %d", max, n))
	}
	for _, r := range v {
		switch {
		case refused(r) && unicode.IsControl(r):
			return invalid(field, "must not contain control characters")
		case refused(r):
			return invalidf(field, "must not contain U+%04X, an invisible formatting character", r)
		}
	}
	return nil
}
