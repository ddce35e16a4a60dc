package main

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keygate/keygate/internal/pgtest"
	"github.com/keygate/keygate/internal/storetest"
	"github.com/keygate/keygate/keystore"
)

// TestStoreCopySQLiteToPostgres moves a SQLite store to PostgreSQL with
// the documented command: every key (active, rotated with grace, revoked;
// scopes, sources, metadata, limits, expiry) and every audit event arrive as they
// were, the keys verify there, and a second copy, or a copy onto the same
// database, is refused and changes nothing.
func TestStoreCopySQLiteToPostgres(t *testing.T) {
	t.Parallel()
	from := "sqlite:" + filepath.Join(t.TempDir(), "keygate.db")
	to := pgtest.NewEmptyDatabase(t)
	mustRun(t, from, "migrate")
	a := decode[keyOut](t, mustRun(t, from, "keys", "create", "--account", "acme", "--name", "deploy bot", "--scope", "projects:read",
		"--allow-cidr", "10.0.0.0/8", "--meta", "tier=gold", "--limit", "100/s", "--expires-in", "30d", "-o", "json"))
	rotated := decode[keyOut](t, mustRun(t, from, "keys", "rotate", a.ID, "--grace", "1h", "-o", "json"))
	b := decode[keyOut](t, mustRun(t, from, "keys", "create", "--account", "globex", "--name", "old", "-o", "json"))
	mustRun(t, from, "keys", "revoke", b.ID)

	r := runCLI(t, "", "store", "copy", "--from", from, "--to", to)
	if r.code != 0 || !strings.Contains(r.stdout, "Copied 3 keys and ") {
		t.Fatalf("store copy: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if !strings.Contains(r.stderr, "SQLite file") || !strings.Contains(r.stderr, "PostgreSQL") {
		t.Fatalf("store copy did not name both databases: %q", r.stderr)
	}
	if got, want := storetest.Snapshot(t, to), storetest.Snapshot(t, from); !bytes.Equal(got, want) {
		t.Fatalf("the PostgreSQL copy differs:\n from %s\n   to %s", want, got)
	}
	s, err := keystore.New(storetest.Open(t, to), keystore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []keyOut{a, rotated} {
		secret, err := keystore.ParseSecret(*k.Secret)
		if err != nil {
			t.Fatal(err)
		}
		if rec, err := s.Lookup(context.Background(), s.Hasher().Digest(secret)); err != nil || rec.ID() != k.ID {
			t.Fatalf("key %s in PostgreSQL: %v, %v", k.ID, rec, err)
		}
	}

	before := storetest.Snapshot(t, to)
	if r := runCLI(t, "", "store", "copy", "--from", from, "--to", to); r.code != 2 || !strings.Contains(r.stderr, "nothing was copied") {
		t.Fatalf("a second copy: exit %d: %s", r.code, r.stderr)
	}
	if r := runCLI(t, "", "store", "copy", "--from", to, "--to", to); r.code != 2 || !strings.Contains(r.stderr, "same database") {
		t.Fatalf("a copy onto itself: exit %d: %s", r.code, r.stderr)
	}
	if !bytes.Equal(storetest.Snapshot(t, to), before) {
		t.Fatal("a refused copy changed the target")
	}
}
