package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/storetest"
	"github.com/keygate/keygate/keystore"
)

// TestMigrateReportsNonCanonicalAccounts: keys stored under account ids
// that break today's rule (an older keygate let " acme" and "acme,beta"
// in) are reported by migrate, one line per account, and left as they
// are.
func TestMigrateReportsNonCanonicalAccounts(t *testing.T) {
	t.Parallel()
	db := storetest.NewDatabase(t)
	mustRun(t, db, "keys", "create", "--account", "acme", "--name", "fine")
	b := storetest.Open(t, db)
	secret, _ := keystore.GenerateSecret("kg")
	h, _ := keystore.NewHasher(nil)
	old := &keystore.Key{ID: "0193c7a2-5d6e-7f00-8a1b-2c3d4e5f6a7b", AccountID: " acme", Name: "old", DisplayPrefix: secret.DisplayPrefix(),
		Digest: h.Digest(secret), HashScheme: keystore.SchemeSHA256, Scopes: []string{}, CreatedAt: time.Now().UTC().Truncate(time.Microsecond)}
	if err := b.Write(context.Background(), func(tx keystore.Tx) error { return tx.Insert(context.Background(), old) }); err != nil {
		t.Fatal(err)
	}
	before := storetest.Snapshot(t, db)
	r := runCLI(t, db, "migrate")
	if r.code != 0 || !strings.Contains(r.stderr, `warning: account " acme" (1 keys) breaks the account id rule`) ||
		strings.Contains(r.stderr, `"acme"`) {
		t.Fatalf("migrate: exit %d, stderr %q; want a warning for \" acme\" alone", r.code, r.stderr)
	}
	if after := storetest.Snapshot(t, db); string(after) != string(before) {
		t.Fatal("migrate rewrote rows")
	}
}
