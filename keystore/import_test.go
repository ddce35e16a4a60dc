package keystore_test

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/keygate/keygate/keystore"
)

func TestReadImport(t *testing.T) {
	good, _ := keystore.GenerateSecret("kg")
	tampered := good.Reveal()[:10] + "Z" + good.Reveal()[11:]
	if tampered == good.Reveal() {
		tampered = good.Reveal()[:10] + "Y" + good.Reveal()[11:]
	}
	legacy := "sk_live_4eC39HqLyjWDarjtT1zdp7dc"
	sum := sha256.Sum256([]byte(legacy))
	cases := []struct {
		name, line string
		legacy     bool
		want       string // "" when accepted; else in the error, after "line 1: "
	}{
		{"a keygate key", `{"account":"acme","name":"ci","key":"` + good.Reveal() + `"}`, false, ""},
		{"every field", `{"account":"acme","name":"ci","description":"d","scopes":["projects:read"],"expires_at":"2099-01-01T00:00:00Z",` +
			`"allowed_cidrs":["10.0.0.0/8"],"metadata":{"tier":"gold"},"key":"` + good.Reveal() + `"}`, false, ""},
		{"nulls", `{"account":"acme","name":"ci","description":null,"scopes":null,"expires_at":null,"key":"` + good.Reveal() + `"}`, false, ""},
		{"a legacy key", `{"account":"acme","name":"kong","key":"` + legacy + `"}`, true, ""},
		{"a digest", `{"account":"acme","name":"old","sha256":"` + hex.EncodeToString(sum[:]) + `"}`, true, ""},
		{"a legacy key without the flag", `{"account":"acme","name":"kong","key":"` + legacy + `"}`, false, "key: not a keygate key"},
		{"a digest without the flag", `{"account":"acme","name":"old","sha256":"` + hex.EncodeToString(sum[:]) + `"}`, false, "sha256: keygate cannot tell"},
		{"a mistyped keygate key", `{"account":"acme","name":"ci","key":"` + tampered + `"}`, true, "key: shaped like a keygate key, but its checksum is wrong"},
		{"a short legacy key", `{"account":"acme","name":"ci","key":"short"}`, true, "key: a legacy key must be 16 to 256 characters"},
		{"a legacy key with a space", `{"account":"acme","name":"ci","key":"0123456789 abcdefgh"}`, true, "key: a legacy key must be"},
		{"both", `{"account":"acme","name":"ci","key":"` + good.Reveal() + `","sha256":"` + hex.EncodeToString(sum[:]) + `"}`, true, "exactly one of key"},
		{"neither", `{"account":"acme","name":"ci"}`, true, "exactly one of key"},
		{"a short digest", `{"account":"acme","name":"ci","sha256":"abcd"}`, true, "sha256: must be 64 hex digits"},
		{"no account", `{"name":"ci","key":"` + good.Reveal() + `"}`, false, "account: must not be empty"},
		{"no name", `{"account":"acme","key":"` + good.Reveal() + `"}`, false, "name: must not be empty"},
		{"an empty account", `{"account":"","name":"ci","key":"` + good.Reveal() + `"}`, false, "account: must not be empty"},
		{"a null account", `{"account":null,"name":"ci","key":"` + good.Reveal() + `"}`, false, "account: must not be empty"},
		{"a blank account", `{"account":"  ","name":"ci","key":"` + good.Reveal() + `"}`, false, "account: must not start or end with white space"},
		{"an account with a leading space", `{"account":" acme","name":"ci","key":"` + good.Reveal() + `"}`, false, "account: must not start or end"},
		{"an account with a trailing tab", `{"account":"acme\t","name":"ci","key":"` + good.Reveal() + `"}`, false, "account: must not start or end"},
		{"an account with a comma", `{"account":"acme,beta","name":"ci","key":"` + good.Reveal() + `"}`, false, "account: must hold only letters"},
		{"an account with a zero width space", `{"account":"acme\u200b","name":"ci","key":"` + good.Reveal() + `"}`, false, "account: must hold only letters"},
		{"an account of invalid UTF-8", "{\"account\":\"acme\xff\",\"name\":\"ci\",\"key\":\"" + good.Reveal() + `"}`, false, "account: must be valid UTF-8"},
		{"a name of invalid UTF-8", "{\"account\":\"acme\",\"name\":\"c\xc3\",\"key\":\"" + good.Reveal() + `"}`, false, "name: must be valid UTF-8"},
		{"a name with a lone surrogate", `{"account":"acme","name":"ci\ud800","key":"` + good.Reveal() + `"}`, false, "name: must be valid UTF-8, without unpaired surrogate"},
		{"a description with a lone surrogate", `{"account":"acme","name":"ci","description":"\udc00x","key":"` + good.Reveal() + `"}`, false, "description: must be valid UTF-8"},
		{"a name with a bidi override", `{"account":"acme","name":"ci\u202egnp.exe","key":"` + good.Reveal() + `"}`, false, "name: must not contain U+202E"},
		{"a paired surrogate", `{"account":"acme","name":"ci \ud83d\ude80","key":"` + good.Reveal() + `"}`, false, ""},
		{"a bad scope", `{"account":"acme","name":"ci","scopes":["projects:admin"],"key":"` + good.Reveal() + `"}`, false, "scopes: scope \"projects:admin\""},
		{"scopes not strings", `{"account":"acme","name":"ci","scopes":"projects:read","key":"` + good.Reveal() + `"}`, false, "scopes: must be an array of strings"},
		{"a bad time", `{"account":"acme","name":"ci","expires_at":"tomorrow","key":"` + good.Reveal() + `"}`, false, "expires_at: must be an RFC 3339 time"},
		{"a bad prefix", `{"account":"acme","name":"ci","allowed_cidrs":["10.1.2.3/8"],"key":"` + good.Reveal() + `"}`, false, "allowed_cidrs:"},
		{"bad metadata", `{"account":"acme","name":"ci","metadata":{"Tier":"x"},"key":"` + good.Reveal() + `"}`, false, "metadata: key \"Tier\""},
		{"an unknown field", `{"account":"acme","name":"ci","account_id":"x","key":"` + good.Reveal() + `"}`, false, `unknown field "account_id"`},
		{"a key as a field name", `{"account":"acme","name":"ci","` + good.Reveal() + `":1}`, false, "unknown field (a name that is not a field)"},
		{"a field twice", `{"account":"acme","name":"ci","key":"` + good.Reveal() + `","key":"` + good.Reveal() + `"}`, false, `field "key" is given twice`},
		{"not JSON", `{"account":"acme","name":"ci","key":` + good.Reveal() + `}`, false, "not valid JSON at byte"},
		{"an array", `["acme"]`, false, "not a JSON object"},
		{"two objects", `{"account":"acme","name":"ci","key":"` + good.Reveal() + `"} {}`, false, "more than one JSON value"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			keys, err := keystore.ReadImport(strings.NewReader("\n"+c.line+"\n"), keystore.ImportOptions{AcceptLegacy: c.legacy})
			if c.want == "" {
				if err != nil || len(keys) != 1 || keys[0].Line != 2 {
					t.Fatalf("ReadImport = %v, %v; want one key, from line 2", keys, err)
				}
				return
			}
			var ie *keystore.ImportError
			if !errors.As(err, &ie) || !errors.Is(err, keystore.ErrInvalid) || ie.Line != 2 || !strings.HasPrefix(err.Error(), "line 2: ") ||
				!strings.Contains(err.Error(), c.want) {
				t.Fatalf("ReadImport error %v; want an ImportError for line 2 saying %q", err, c.want)
			}
			for _, secret := range []string{good.Reveal()[3:], tampered[3:], legacy[8:]} {
				if strings.Contains(err.Error(), secret) {
					t.Fatalf("the error %q repeats a key", err)
				}
			}
		})
	}
	long := `{"account":"acme","name":"` + strings.Repeat("n", keystore.MaxImportLine) + `"}`
	if _, err := keystore.ReadImport(strings.NewReader(long), keystore.ImportOptions{}); err == nil || !strings.Contains(err.Error(), "line 1: longer than") {
		t.Fatalf("an over-long line: %v", err)
	}
}
