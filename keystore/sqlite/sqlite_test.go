package sqlite_test

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/keystore/conformance"
	"github.com/keygate/keygate/keystore/sqlite"
)

// harness gives the conformance suite database files of their own.
var harness = conformance.Harness{
	NewDatabase: func(tb testing.TB, migrated bool) func(testing.TB) keystore.Backend {
		path := filepath.Join(tb.TempDir(), "keygate.db")
		if migrated {
			b := open(tb, path, sqlite.Options{Create: true})
			if _, err := b.Migrate(context.Background(), slog.New(slog.DiscardHandler)); err != nil {
				tb.Fatal(err)
			}
		}
		return func(tb testing.TB) keystore.Backend { return open(tb, path, sqlite.Options{Create: true}) }
	},
}

// open opens the database at path, closed when the test ends.
func open(tb testing.TB, path string, opts sqlite.Options) *sqlite.Backend {
	tb.Helper()
	b, err := sqlite.Open(context.Background(), path, opts)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(b.Close)
	return b
}

func TestConformance(t *testing.T) { conformance.RunTests(t, harness) }

// TestOneServingProcess: the serve lock lets one Exclusive backend hold a
// file, in this process or another; the CLI's backends open it meanwhile,
// and the next server may take it once the first has closed.
func TestOneServingProcess(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keygate.db")
	first := open(t, path, sqlite.Options{Create: true, Exclusive: true})
	_, err := sqlite.Open(context.Background(), path, sqlite.Options{Exclusive: true})
	var fe *sqlite.FileError
	if !errors.As(err, &fe) || !strings.Contains(err.Error(), "in use by another keygate serve") ||
		!strings.Contains(err.Error(), "PostgreSQL") || strings.Count(err.Error(), "\n") != 0 {
		t.Fatalf("a second serving backend: %v; want one line saying that more than one replica needs PostgreSQL", err)
	}
	cli := open(t, path, sqlite.Options{})
	if err := cli.Ping(context.Background()); err != nil {
		t.Fatalf("the CLI beside the server: %v", err)
	}
	first.Close()
	open(t, path, sqlite.Options{Exclusive: true})
}

// TestFilesThatCannotServe: every file keygate cannot use is refused at
// Open with one line naming the file and the fix, and nothing is created.
func TestFilesThatCannotServe(t *testing.T) {
	dir := t.TempDir()
	damaged := filepath.Join(dir, "damaged.db")
	if err := os.WriteFile(damaged, bytes.Repeat([]byte("not a database "), 1000), 0o600); err != nil {
		t.Fatal(err)
	}
	newer := filepath.Join(dir, "newer.db")
	b := open(t, newer, sqlite.Options{Create: true})
	if _, err := b.Migrate(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	b.Close()
	raw, err := sql.Open("sqlite", newer)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := raw.Exec(`INSERT INTO keygate_schema_migrations (version_id, is_applied) VALUES (9999, 1)`); err != nil {
		t.Fatal(err)
	}
	raw.Close()
	cases := []struct {
		name, path string
		opts       sqlite.Options
		want       string
	}{
		{"missing directory", filepath.Join(dir, "nowhere", "keygate.db"), sqlite.Options{Create: true}, "directory that does not exist"},
		{"read-only directory", "/sys/keygate.db", sqlite.Options{Create: true}, "cannot write in"},
		{"a directory", dir, sqlite.Options{Create: true}, "is a directory"},
		{"missing file, not migrating", filepath.Join(dir, "missing.db"), sqlite.Options{}, "keygate migrate --database-url sqlite:"},
		{"damaged file", damaged, sqlite.Options{}, "not a keygate database, or it is damaged"},
		{"damaged file, migrating", damaged, sqlite.Options{Create: true}, "not a keygate database, or it is damaged"},
		{"file from a newer keygate", newer, sqlite.Options{}, "migrated by a newer keygate"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before, _ := os.ReadDir(dir)
			_, err := sqlite.Open(context.Background(), c.path, c.opts)
			var fe *sqlite.FileError
			if !errors.As(err, &fe) || !strings.Contains(err.Error(), c.want) || strings.Count(err.Error(), "\n") != 0 {
				t.Fatalf("Open(%s): %v; want a FileError saying %q", c.path, err, c.want)
			}
			if abs, _ := filepath.Abs(c.path); !strings.Contains(err.Error(), abs) {
				t.Fatalf("the error %q does not name the file", err)
			}
			if after, _ := os.ReadDir(dir); len(after) != len(before) {
				t.Fatalf("a refused Open left files behind: %v → %v", before, after)
			}
		})
	}
}

// TestLockedFile: a write that finds the file locked by another program
// (an sqlite3 shell in a transaction) fails after the busy timeout with
// one line naming the file, and writes nothing.
func TestLockedFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keygate.db")
	b := open(t, path, sqlite.Options{Create: true, BusyTimeout: 200 * time.Millisecond})
	if _, err := b.Migrate(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	other, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	conn, err := other.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(context.Background(), `BEGIN EXCLUSIVE`); err != nil {
		t.Fatal(err)
	}
	s, _ := keystore.New(b, keystore.Options{})
	_, _, err = s.Create(context.Background(), keystore.CreateParams{AccountID: "a", Name: "n"})
	var fe *sqlite.FileError
	if !errors.As(err, &fe) || !strings.Contains(err.Error(), "locked by another program") {
		t.Fatalf("Create on a locked file: %v; want a FileError saying it is locked", err)
	}
	conn.ExecContext(context.Background(), `ROLLBACK`)
	if keys, err := s.List(context.Background(), keystore.ListParams{Status: keystore.ListAll}); err != nil || len(keys) != 0 {
		t.Fatalf("after the refused create: %d keys, %v", len(keys), err)
	}
}

// TestInMemory: sqlite::memory: is a database of its own per backend,
// usable at once after Migrate.
func TestInMemory(t *testing.T) {
	for range 2 {
		b := open(t, sqlite.Memory, sqlite.Options{Create: true})
		if _, err := b.Migrate(context.Background(), nil); err != nil {
			t.Fatal(err)
		}
		s, _ := keystore.New(b, keystore.Options{})
		conformance.MustCreate(t, s, keystore.CreateParams{})
		keys, err := s.List(context.Background(), keystore.ListParams{})
		if err != nil || len(keys) != 1 {
			t.Fatalf("an in-memory database holds %d keys (%v), want its own one", len(keys), err)
		}
	}
}
