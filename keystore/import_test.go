package keystore_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/pgtest"
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

// importFile builds an import file of n keygate keys and returns it with
// the keys' secrets.
func importFile(tb testing.TB, n int, mutate func(i int, line string) string) (string, []keystore.Secret) {
	tb.Helper()
	var b strings.Builder
	secrets := make([]keystore.Secret, n)
	for i := range n {
		s, err := keystore.GenerateSecret("kg")
		if err != nil {
			tb.Fatal(err)
		}
		secrets[i] = s
		line := fmt.Sprintf(`{"account":"acct-%d","name":"imported %d","scopes":["projects:read"],"key":%q}`, i%100, i, s.Reveal())
		if mutate != nil {
			line = mutate(i, line)
		}
		b.WriteString(line + "\n")
	}
	return b.String(), secrets
}

func TestImport(t *testing.T) {
	clk := newClock()
	h, _ := keystore.NewHasher([]byte(strings.Repeat("p", 32)))
	s, db := newStoreAt(t, keystore.Options{Hasher: h, Now: clk.Now})
	ctx := context.Background()
	file, secrets := importFile(t, 50, nil)
	legacy := "kong-0123456789abcdefABCDEF"
	digestOnly := "unkey_3ZbPnPvXB4oq8dWkXpm6cyX1"
	sum := sha256.Sum256([]byte(digestOnly))
	file += `{"account":"acme","name":"kong","expires_at":"2027-01-01T00:00:00Z","key":"` + legacy + `"}` + "\n"
	file += `{"account":"acme","name":"unkey","metadata":{"tier":"gold"},"sha256":"` + hex.EncodeToString(sum[:]) + `"}` + "\n"
	keys, err := keystore.ReadImport(strings.NewReader(file), keystore.ImportOptions{AcceptLegacy: true})
	if err != nil {
		t.Fatal(err)
	}
	n, err := s.Import(ctx, keys, "cli:alice")
	if err != nil || n != 52 {
		t.Fatalf("Import = %d, %v", n, err)
	}
	// Each key is found where the decision path looks for it: a key in
	// clear under its HMAC digest (the pepper's scheme), a digest-only one
	// under its SHA-256 digest, the second candidate.
	for i, secret := range append(secrets, keystore.Secret(legacy), keystore.Secret(digestOnly)) {
		found := false
		for j, d := range h.Candidates(secret) {
			if r, err := s.Lookup(ctx, d); err == nil {
				found = true
				if want := map[bool]int{true: 1, false: 0}[i == len(secrets)+1]; j != want {
					t.Errorf("key %d found under candidate digest %d, want %d", i, j, want)
				}
				if r.StateAt(clk.Now()) != keystore.StateActive {
					t.Errorf("key %d is %v", i, r.StateAt(clk.Now()))
				}
			}
		}
		if !found {
			t.Fatalf("imported key %d is not found", i)
		}
	}
	list, err := s.List(ctx, keystore.ListParams{AccountID: "acme"})
	if err != nil || len(list) != 2 {
		t.Fatalf("List: %d keys, %v", len(list), err)
	}
	for _, k := range list {
		switch k.Name {
		case "kong":
			if k.HashScheme != keystore.SchemeHMACSHA256 || k.DisplayPrefix != "kong-0" || k.ExpiresAt == nil || k.CreatedBy != "cli:alice" {
				t.Errorf("kong: %+v", k)
			}
		case "unkey":
			if k.HashScheme != keystore.SchemeSHA256 || k.DisplayPrefix != "" || k.Metadata["tier"] != "gold" || k.ExpiresAt != nil {
				t.Errorf("unkey: %+v", k)
			}
		}
		events, _ := s.Events(ctx, k.ID)
		if len(events) != 1 || events[0].Action != "import" || events[0].Actor != "cli:alice" {
			t.Errorf("%s: events %+v", k.Name, events)
		}
		if d := fmt.Sprint(events[0].Detail); strings.Contains(d, legacy) || strings.Contains(d, hex.EncodeToString(sum[:])) {
			t.Errorf("the audit trail holds a key or its digest: %s", d)
		}
	}

	// A file that cannot be imported whole imports nothing, and says why
	// by line.
	before := pgtest.Dump(t, db)
	again, _ := keystore.ReadImport(strings.NewReader(file), keystore.ImportOptions{AcceptLegacy: true})
	if _, err := s.Import(ctx, again[len(again)-3:], ""); err == nil || !strings.Contains(err.Error(), "line 50: this key is stored already (key ") {
		t.Fatalf("importing stored keys: %v", err)
	}
	fresh, _ := importFile(t, 3, nil)
	for name, c := range map[string]struct {
		file, want string
	}{
		"a key twice":    {fresh + strings.SplitAfter(fresh, "\n")[1], "line 4: the same key as line 2"},
		"an expired key": {fresh + strings.Replace(strings.SplitAfter(importFileOne(t), "\n")[0], `"name"`, `"expires_at":"2020-01-01T00:00:00Z","name"`, 1), "line 4: expires_at: 2020-01-01T00:00:00Z is not in the future"},
	} {
		keys, err := keystore.ReadImport(strings.NewReader(c.file), keystore.ImportOptions{})
		if err == nil {
			_, err = s.Import(ctx, keys, "")
		}
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v; want %q", name, err, c.want)
		}
	}
	capped, _ := keystore.New(pgtest.Connect(t, db), keystore.Options{MaxLifetime: 24 * time.Hour, Now: clk.Now})
	if keys, err := keystore.ReadImport(strings.NewReader(fresh), keystore.ImportOptions{}); err != nil {
		t.Fatal(err)
	} else if _, err := capped.Import(ctx, keys, ""); err == nil || !strings.Contains(err.Error(), "line 1: expires_at: required: keys must expire") {
		t.Errorf("never-expiring keys with a maximum lifetime: %v", err)
	}
	if after := pgtest.Dump(t, db); string(before) != string(after) {
		t.Fatal("a refused import changed the database")
	}
}

// importFileOne is one line of an import file with a fresh key.
func importFileOne(tb testing.TB) string {
	f, _ := importFile(tb, 1, nil)
	return f
}

// TestImportReachesCaches: one notification makes every replica forget
// the unknown-key entries an imported key may have.
func TestImportReachesCaches(t *testing.T) {
	url := pgtest.NewDatabase(t)
	w := startWatched(t, url, keystore.WatchOptions{PollInterval: time.Hour}, url)
	file, secrets := importFile(t, 3, nil)
	d := w.store.Hasher().Digest(secrets[1])
	if _, err := w.cache.Lookup(context.Background(), d); !errors.Is(err, keystore.ErrNotFound) {
		t.Fatalf("before the import: %v", err) // now remembered as unknown, for an hour
	}
	keys, err := keystore.ReadImport(strings.NewReader(file), keystore.ImportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.store.Import(context.Background(), keys, ""); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, time.Second, "the imported key to be found", func() bool {
		_, err := w.cache.Lookup(context.Background(), d)
		return err == nil
	})
}
