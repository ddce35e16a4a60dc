package conformance

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/keystore"
)

// importTests check Import: all or none, hashed like created keys, and
// announced.
var importTests = []test{
	{"Import", testImport},
}

// testImportReachesCaches: one notice makes every replica forget the
// unknown-key entries an imported key may have.
func testImportReachesCaches(t *testing.T, h Harness) {
	w := Watch(t, h.NewDatabase(t, true)(t), keystore.WatchOptions{PollInterval: time.Hour}, true)
	file, secrets := importFile(t, 3, nil)
	d := w.Store.Hasher().Digest(secrets[1])
	if _, err := w.Cache.Lookup(context.Background(), d); !errors.Is(err, keystore.ErrNotFound) {
		t.Fatalf("before the import: %v", err) // now remembered as unknown, for an hour
	}
	keys, err := keystore.ReadImport(strings.NewReader(file), keystore.ImportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Store.Import(context.Background(), keys, ""); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, time.Second, "the imported key to be found", func() bool {
		_, err := w.Cache.Lookup(context.Background(), d)
		return err == nil
	})
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
func testImport(t *testing.T, h Harness) {
	clk := newClock()
	hasher, _ := keystore.NewHasher([]byte(strings.Repeat("p", 32)))
	s, db := h.newStoreAt(t, keystore.Options{Hasher: hasher, Now: clk.Now})
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
		for j, d := range hasher.Candidates(secret) {
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
	before := snapshot(t, db)
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
	capped, _ := keystore.New(db(t), keystore.Options{MaxLifetime: 24 * time.Hour, Now: clk.Now})
	if keys, err := keystore.ReadImport(strings.NewReader(fresh), keystore.ImportOptions{}); err != nil {
		t.Fatal(err)
	} else if _, err := capped.Import(ctx, keys, ""); err == nil || !strings.Contains(err.Error(), "line 1: expires_at: required: keys must expire") {
		t.Errorf("never-expiring keys with a maximum lifetime: %v", err)
	}
	if after := snapshot(t, db); string(before) != string(after) {
		t.Fatal("a refused import changed the database")
	}
}

// importFileOne is one line of an import file with a fresh key.
func importFileOne(tb testing.TB) string {
	f, _ := importFile(tb, 1, nil)
	return f
}
