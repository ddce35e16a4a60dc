package keystore

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestParseDuration(t *testing.T) {
	good := map[string]time.Duration{
		"30d":     30 * 24 * time.Hour,
		"1d12h":   36 * time.Hour,
		"12h":     12 * time.Hour,
		"90m":     90 * time.Minute,
		"1h30m5s": time.Hour + 30*time.Minute + 5*time.Second,
		"0s":      0,
	}
	for in, want := range good {
		got, err := ParseDuration(in)
		if err != nil || got != want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "d", "30", "-1h", "1d-1h", "+1h", "1.5d", "30days", "1w", "99999d", "1d1d", "abc"} {
		if got, err := ParseDuration(in); err == nil {
			t.Errorf("ParseDuration(%q) = %v, want an error", in, got)
		}
	}
	// Each kind of mistake has its own message.
	for in, want := range map[string]string{
		"-5d":                      "negative duration",
		"-1h":                      "negative duration",
		"99999d":                   "too long",
		"99999999999999999999999d": "too long",
		"9999999999h":              "too long",
		"1d9999999999h":            "too long",
		"3w":                       "invalid duration",
		"1.5d":                     "invalid duration",
	} {
		if _, err := ParseDuration(in); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseDuration(%q) error %v, want one saying %q", in, err, want)
		}
	}
	for _, d := range []time.Duration{30 * 24 * time.Hour, 36 * time.Hour, 90 * time.Minute} {
		if back, err := ParseDuration(FormatDuration(d)); err != nil || back != d {
			t.Errorf("FormatDuration(%v) = %q does not parse back", d, FormatDuration(d))
		}
	}
}

func TestValidateScope(t *testing.T) {
	for _, s := range []string{"*", "projects:read", "projects:write", "projects:*", "a:read", "deploy-targets:read", "x_1:write"} {
		if err := ValidateScope(s); err != nil {
			t.Errorf("ValidateScope(%q) = %v", s, err)
		}
	}
	for _, s := range []string{"", "projects", "projects:", ":read", "Projects:read", "projects:admin",
		"projects:read:x", "1projects:read", "pro jects:read", "**", "*:read", strings.Repeat("a", 64) + ":read"} {
		if err := ValidateScope(s); err == nil {
			t.Errorf("ValidateScope(%q) accepted an invalid scope", s)
		}
	}
}

func TestNormalizeScopes(t *testing.T) {
	got, err := NormalizeScopes([]string{"b:read", "a:write", "b:read"})
	if err != nil || strings.Join(got, ",") != "a:write,b:read" {
		t.Fatalf("NormalizeScopes = %v, %v", got, err)
	}
	_, err = NormalizeScopes([]string{"ok:read", "bad"})
	var ve *ValidationError
	if !errors.As(err, &ve) || ve.Field != "scopes" || !errors.Is(err, ErrInvalid) {
		t.Fatalf("NormalizeScopes(bad) = %v, want a ValidationError on scopes", err)
	}
}

func TestAllows(t *testing.T) {
	cases := []struct {
		name   string
		scopes []string
		module string
		action string
		want   bool
	}{
		{"no scopes, any module", nil, "projects", "write", true},
		{"no scopes, no module", nil, "", "read", true},
		{"star", []string{"*"}, "projects", "write", true},
		{"star, no module", []string{"*"}, "", "write", true},
		{"read allows read", []string{"projects:read"}, "projects", "read", true},
		{"read forbids write", []string{"projects:read"}, "projects", "write", false},
		{"write allows write", []string{"projects:write"}, "projects", "write", true},
		{"write does not imply read", []string{"projects:write"}, "projects", "read", false},
		{"module star", []string{"projects:*"}, "projects", "write", true},
		{"other module", []string{"billing:*"}, "projects", "read", false},
		{"prefix module is another module", []string{"project:read"}, "projects", "read", false},
		{"longer module is another module", []string{"projectsx:read"}, "projects", "read", false},
		{"scoped key, unmatched route", []string{"projects:*"}, "", "read", false},
		{"second scope matches", []string{"billing:read", "projects:write"}, "projects", "write", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := (&Key{ID: "k", AccountID: "a", Scopes: c.scopes}).Record()
			if got := r.Allows(c.module, c.action); got != c.want {
				t.Fatalf("Allows(%v, %q, %q) = %v, want %v", c.scopes, c.module, c.action, got, c.want)
			}
		})
	}
}

func TestStateAt(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	past, future := now.Add(-time.Second), now.Add(time.Second)
	cases := []struct {
		name string
		key  Key
		want State
	}{
		{"no expiry", Key{}, StateActive},
		{"expires later", Key{ExpiresAt: &future}, StateActive},
		{"expired", Key{ExpiresAt: &past}, StateExpired},
		{"expires exactly now", Key{ExpiresAt: &now}, StateExpired},
		{"revoked", Key{RevokedAt: &past}, StateRevoked},
		{"revoked by a clock ahead of ours", Key{RevokedAt: &future}, StateRevoked},
		{"revoked and expired", Key{RevokedAt: &past, ExpiresAt: &past}, StateRevoked},
		{"disabled", Key{DisabledAt: &past}, StateDisabled},
		{"disabled by a clock ahead of ours", Key{DisabledAt: &future}, StateDisabled},
		{"disabled and expired", Key{DisabledAt: &past, ExpiresAt: &past}, StateDisabled},
		{"revoked and disabled", Key{RevokedAt: &past, DisabledAt: &past}, StateRevoked},
	}
	for _, c := range cases {
		if got := c.key.StateAt(now); got != c.want {
			t.Errorf("%s: StateAt = %v, want %v", c.name, got, c.want)
		}
		// The decision's compact record agrees, also within a microsecond
		// of the expiry (stored times are whole microseconds).
		for _, at := range []time.Time{now, now.Add(-500 * time.Nanosecond), now.Add(500 * time.Nanosecond)} {
			if got, want := c.key.Record().StateAt(at), c.key.StateAt(at); got != want {
				t.Errorf("%s: Record.StateAt(%v) = %v, Key.StateAt = %v", c.name, at, got, want)
			}
		}
	}
}

func TestHasher(t *testing.T) {
	s, _ := GenerateSecret("kg")
	plain, _ := NewHasher(nil)
	if plain.Scheme() != SchemeSHA256 || len(plain.Candidates(s)) != 1 || plain.Candidates(s)[0] != plain.Digest(s) {
		t.Fatal("plain hasher: wrong scheme or candidates")
	}
	pepper := []byte(strings.Repeat("p", 32))
	peppered, err := NewHasher(pepper)
	if err != nil {
		t.Fatal(err)
	}
	c := peppered.Candidates(s)
	if peppered.Scheme() != SchemeHMACSHA256 || len(c) != 2 || c[0] != peppered.Digest(s) || c[1] != plain.Digest(s) {
		t.Fatal("peppered hasher: the HMAC digest must come first, then the legacy SHA-256 digest")
	}
	if c[0] == c[1] {
		t.Fatal("HMAC digest equals plain digest")
	}
	other, _ := NewHasher([]byte(strings.Repeat("q", 32)))
	if other.Digest(s) == peppered.Digest(s) {
		t.Fatal("two peppers give the same digest")
	}
	if _, err := NewHasher([]byte("short")); err == nil {
		t.Fatal("a short pepper was accepted")
	}
}

// TestValidateAccountID: one rule for every way an account id comes in.
// What passes survives an HTTP header unchanged (one value, nothing to
// trim, fold or split); what fails is refused, never trimmed.
func TestValidateAccountID(t *testing.T) {
	good := []string{
		"acme", "a", "Acme", "ACME-42", "0193c7a2-5d6e-7f00-8a1b-2c3d4e5f6a7b", "org:123", "alice+test@example.com",
		"auth0|5f7c8ec7c33c6c004bbafe82", "tenant_7.eu-west-1", "9", strings.Repeat("a", MaxAccountIDLen),
		"a-", "a.", "a@b:c|d+e_f.g-h",
	}
	for _, id := range good {
		if err := ValidateAccountID(id); err != nil {
			t.Errorf("ValidateAccountID(%q) = %v", id, err)
		}
	}
	bad := map[string]string{
		"":                                     "empty",
		" acme":                                "white space",
		"acme ":                                "white space",
		"\tacme":                               "white space",
		"acme\n":                               "white space",
		"acme\u00a0":                           "white space", // no-break space
		"\u2003acme":                           "white space", // em space
		"acme,beta":                            "only letters",
		"acme;beta":                            "only letters",
		"acme beta":                            "only letters",
		"acme\x00":                             "only letters",
		"ac\x7fme":                             "only letters",
		"ac\rme":                               "only letters",
		"acme\u200b":                           "only letters", // zero width space
		"\u202eemca":                           "start with",
		"acmé":                                 "only letters",
		"аcme":                                 "start with", // Cyrillic а
		"acme\xff":                             "only letters",
		`acme"`:                                "only letters",
		"acme'":                                "only letters",
		"a/b":                                  "only letters",
		"../etc":                               "start with",
		".":                                    "start with",
		"-acme":                                "start with",
		"_acme":                                "start with",
		"@acme":                                "start with",
		"a=b":                                  "only letters",
		"a%20b":                                "only letters",
		"a\\b":                                 "only letters",
		"a<b>":                                 "only letters",
		strings.Repeat("a", MaxAccountIDLen+1): "at most 200 characters, got 201",
		strings.Repeat("é", 150):               "start with",
		"a" + strings.Repeat("é", 150):         "only letters",
	}
	for id, want := range bad {
		err := ValidateAccountID(id)
		var ve *ValidationError
		if !errors.As(err, &ve) || ve.Field != "account_id" || !strings.Contains(ve.Problem, want) {
			t.Errorf("ValidateAccountID(%q) = %v, want an account_id error saying %q", id, err, want)
			continue
		}
		if len(id) >= 5 && strings.Contains(err.Error(), id) {
			t.Errorf("ValidateAccountID(%q) repeats the id: %v", id, err)
		}
		if ValidAccountID(id) {
			t.Errorf("ValidAccountID(%q) = true", id)
		}
	}
}

// TestAccountIDPattern: the pattern a database query can use says what
// ValidateAccountID says, for every id tried.
func TestAccountIDPattern(t *testing.T) {
	re := regexp.MustCompile(AccountIDPattern)
	check := func(id string) {
		if re.MatchString(id) != ValidAccountID(id) {
			t.Fatalf("%q: the pattern says %v, ValidAccountID %v", id, re.MatchString(id), ValidAccountID(id))
		}
	}
	for c := range 256 {
		check(string(rune(c)))
		check("a" + string(rune(c)))
		check("a" + string([]byte{byte(c)}) + "b")
	}
	for _, id := range []string{"", strings.Repeat("a", MaxAccountIDLen), strings.Repeat("a", MaxAccountIDLen+1), "a\u200b", "a\n"} {
		check(id)
	}
}

func FuzzAccountIDPattern(f *testing.F) {
	re := regexp.MustCompile(AccountIDPattern)
	for _, s := range []string{"acme", " acme", "a,b", "org:1", strings.Repeat("x", 201)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		if re.MatchString(id) != ValidAccountID(id) {
			t.Fatalf("%q: the pattern says %v, ValidAccountID %v", id, re.MatchString(id), ValidAccountID(id))
		}
		if ValidAccountID(id) && (strings.ContainsAny(id, " ,;\"\r\n\t") || strings.TrimSpace(id) != id) {
			t.Fatalf("%q passes but would not survive a header", id)
		}
	})
}

// TestValidateNameRefusesInvisibleCharacters: a name is what people tell
// keys apart by, so nothing in it may be invisible or reorder the text.
func TestValidateNameRefusesInvisibleCharacters(t *testing.T) {
	good := []string{"deploy bot", "CI (prod)", "déploiement", "部署机器人", "نشر", "ci 🚀", "a\u00a0b", "tab-less"}
	for _, n := range good {
		if err := ValidateName(n); err != nil {
			t.Errorf("ValidateName(%q) = %v", n, err)
		}
	}
	for _, r := range []rune{
		0x202a, 0x202b, 0x202c, 0x202d, 0x202e, // bidi embeddings and overrides
		0x2066, 0x2067, 0x2068, 0x2069, // bidi isolates
		0x200b, 0x200c, 0x200d, 0x200e, 0x200f, // zero widths and direction marks
		0x061c, 0x00ad, 0xfeff, 0x2060, 0x2061, 0x2064, 0x180e, // other format characters
		0x2028, 0x2029, // line and paragraph separators
		0xfe0f, 0xe0100, 0x180b, // variation selectors
		0x3164, 0x115f, 0xffa0, 0x034f, // Hangul fillers, combining grapheme joiner
		0xe0001, 0xe0041, 0xe007f, // tags
		0xfff9, 0xfffb, // interlinear annotations
	} {
		for _, n := range []string{"prod" + string(r), string(r) + "prod", "pr" + string(r) + "od"} {
			err := ValidateName(n)
			var ve *ValidationError
			if !errors.As(err, &ve) || ve.Field != "name" || !strings.Contains(ve.Problem, fmt.Sprintf("U+%04X", r)) {
				t.Errorf("ValidateName(%q) = %v, want a name error naming U+%04X", n, err, r)
			}
		}
	}
	for _, n := range []string{"a\x00b", "a\nb", "a\tb", "a\x1bb", "a\u0085b", "a\u009bb"} {
		if err := ValidateName(n); err == nil || !strings.Contains(err.Error(), "control characters") {
			t.Errorf("ValidateName(%q) = %v, want a control character error", n, err)
		}
	}
	for _, n := range []string{"a\xffb", "\xed\xa0\x80", "ab\xc3"} {
		if err := ValidateName(n); err == nil || !strings.Contains(err.Error(), "UTF-8") {
			t.Errorf("ValidateName(%q) = %v, want a UTF-8 error", n, err)
		}
	}
	for _, n := range []string{"\u200b", "\u3164", "\u202e "} {
		if err := ValidateName(n); err == nil {
			t.Errorf("ValidateName(%q): an invisible name passed", n)
		}
	}
}

// TestValidateDescription: free text keeps what prose in any script needs
// (lines, tabs, joiners, direction marks) and refuses what reorders or
// hides text.
func TestValidateDescription(t *testing.T) {
	good := []string{"", "CI deploys\nfor staging\tonly", "می\u200cخواهم", "עברית\u200e (EN)", "soft\u00adhyphen", "👨\u200d👩\u200d👧", "❤\ufe0f"}
	for _, d := range good {
		if err := ValidateDescription(d); err != nil {
			t.Errorf("ValidateDescription(%q) = %v", d, err)
		}
	}
	for _, r := range []rune{0x202a, 0x202b, 0x202c, 0x202d, 0x202e, 0x2066, 0x2067, 0x2068, 0x2069, 0xe0001, 0xe0041, 0xe007f} {
		d := "deploys " + string(r) + "txt.exe"
		if err := ValidateDescription(d); err == nil || !strings.Contains(err.Error(), fmt.Sprintf("U+%04X", r)) {
			t.Errorf("ValidateDescription(%q) = %v, want an error naming U+%04X", d, err, r)
		}
	}
	for _, d := range []string{"a\x00", "a\rb", "a\x1b[31m", "a\u0085"} {
		if err := ValidateDescription(d); err == nil || !strings.Contains(err.Error(), "control characters") {
			t.Errorf("ValidateDescription(%q) = %v, want a control character error", d, err)
		}
	}
	if err := ValidateDescription("a\xffb"); err == nil || !strings.Contains(err.Error(), "UTF-8") {
		t.Errorf("invalid UTF-8 in a description: %v", err)
	}
}
