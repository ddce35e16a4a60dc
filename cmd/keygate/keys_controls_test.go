package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keygate/keygate/internal/storetest"
	"github.com/keygate/keygate/keystore"
)

func TestKeysDisableEnable(t *testing.T) {
	t.Parallel()
	db := storetest.NewDatabase(t)
	k := decode[keyOut](t, mustRun(t, db, "keys", "create", "--account", "acme", "--name", "ci", "-o", "json"))

	out := mustRun(t, db, "keys", "disable", k.ID, "--actor", "cli:alice")
	if !strings.HasPrefix(out, "Disabled key "+k.ID) || !strings.Contains(out, "keygate keys enable "+k.ID) {
		t.Fatalf("keys disable printed %q", out)
	}
	shown := decode[keyOut](t, mustRun(t, db, "keys", "show", k.ID, "-o", "json"))
	if shown.Status != "disabled" || shown.DisabledAt == nil {
		t.Fatalf("show -o json after disable: status %q, disabled_at %v", shown.Status, shown.DisabledAt)
	}
	if list := decode[[]keyOut](t, mustRun(t, db, "keys", "list", "-o", "json")); len(list) != 0 {
		t.Fatalf("keys list shows %d keys, want none: a disabled key is not active", len(list))
	}
	if list := decode[[]keyOut](t, mustRun(t, db, "keys", "list", "--all", "-o", "json")); len(list) != 1 || list[0].Status != "disabled" {
		t.Fatalf("keys list --all = %+v", list)
	}
	if r := runCLI(t, db, "keys", "disable", k.ID); r.code != 1 || !strings.Contains(r.stderr, "disabled already") {
		t.Fatalf("disabling twice: exit %d, %q", r.code, r.stderr)
	}
	if r := runCLI(t, db, "keys", "rotate", k.ID); r.code != 1 || !strings.Contains(r.stderr, "enable it first") {
		t.Fatalf("rotating a disabled key: exit %d, %q", r.code, r.stderr)
	}

	enabled := decode[keyOut](t, mustRun(t, db, "keys", "enable", k.ID, "-o", "json"))
	if enabled.Status != "active" || enabled.DisabledAt != nil {
		t.Fatalf("enable -o json = %+v", enabled)
	}
	if r := runCLI(t, db, "keys", "enable", k.ID); r.code != 1 || !strings.Contains(r.stderr, "not disabled") {
		t.Fatalf("enabling an enabled key: exit %d, %q", r.code, r.stderr)
	}
	events := mustRun(t, db, "keys", "events", k.ID)
	if !strings.Contains(events, "disable  cli:alice") || !strings.Contains(events, "enable") {
		t.Fatalf("keys events:\n%s", events)
	}

	mustRun(t, db, "keys", "revoke", k.ID)
	if r := runCLI(t, db, "keys", "enable", k.ID); r.code != 1 || !strings.Contains(r.stderr, "revoked") {
		t.Fatalf("enabling a revoked key: exit %d, %q", r.code, r.stderr)
	}
	if r := runCLI(t, db, "keys", "disable", "not-an-id"); r.code != 2 || !strings.Contains(r.stderr, "ID") {
		t.Fatalf("disable with a malformed id: exit %d, %q", r.code, r.stderr)
	}
}

func TestKeysAllowCIDR(t *testing.T) {
	t.Parallel()
	db := storetest.NewDatabase(t)
	k := decode[keyOut](t, mustRun(t, db, "keys", "create", "--account", "acme", "--name", "office", "-o", "json",
		"--allow-cidr", "203.0.113.0/24", "--allow-cidr", "2001:db8::/32,192.0.2.7"))
	if want := "192.0.2.7/32 203.0.113.0/24 2001:db8::/32"; strings.Join(k.AllowedCIDRs, " ") != want {
		t.Fatalf("create --allow-cidr: %q, want %s", k.AllowedCIDRs, want)
	}
	if out := mustRun(t, db, "keys", "show", k.ID); !strings.Contains(out, "Allowed from:  192.0.2.7/32, 203.0.113.0/24, 2001:db8::/32") {
		t.Fatalf("keys show:\n%s", out)
	}
	up := decode[keyOut](t, mustRun(t, db, "keys", "update", k.ID, "--allow-cidr", "10.0.0.0/8", "-o", "json"))
	if strings.Join(up.AllowedCIDRs, " ") != "10.0.0.0/8" || up.Name != "office" {
		t.Fatalf("update --allow-cidr: %+v", up)
	}
	up = decode[keyOut](t, mustRun(t, db, "keys", "update", k.ID, "--clear-allow-cidrs", "-o", "json"))
	if len(up.AllowedCIDRs) != 0 {
		t.Fatalf("update --clear-allow-cidrs: %q", up.AllowedCIDRs)
	}
	if out := mustRun(t, db, "keys", "show", k.ID); !strings.Contains(out, "Allowed from:  anywhere") {
		t.Fatalf("keys show after clearing:\n%s", out)
	}
	before := storetest.Snapshot(t, db)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"keys", "create", "--account", "a", "--name", "n", "--allow-cidr", "10.1.2.3/8"}, "--allow-cidr: \"10.1.2.3/8\" has address bits set beyond /8: did you mean 10.0.0.0/8?"},
		{[]string{"keys", "create", "--account", "a", "--name", "n", "--allow-cidr", "office"}, "--allow-cidr"},
		{[]string{"keys", "update", k.ID, "--allow-cidr", "300.0.0.1"}, "--allow-cidr"},
		{[]string{"keys", "update", k.ID, "--allow-cidr", "10.0.0.0/8", "--clear-allow-cidrs"}, "can't be used together"},
	} {
		r := runCLI(t, db, c.args...)
		if line := strings.TrimSpace(r.stderr); r.code != 2 || strings.Contains(line, "\n") || !strings.Contains(line, c.want) {
			t.Errorf("%v: exit %d, %q; want exit 2 and one line with %q", c.args, r.code, r.stderr, c.want)
		}
	}
	if after := storetest.Snapshot(t, db); string(before) != string(after) {
		t.Fatal("a refused command changed the database")
	}
}

func TestKeysMeta(t *testing.T) {
	t.Parallel()
	db := storetest.NewDatabase(t)
	k := decode[keyOut](t, mustRun(t, db, "keys", "create", "--account", "acme", "--name", "gold", "-o", "json",
		"--meta", "tier=gold", "--meta", "note=a=b, c"))
	if k.Metadata["tier"] != "gold" || k.Metadata["note"] != "a=b, c" || len(k.Metadata) != 2 {
		t.Fatalf("create --meta: %v", k.Metadata)
	}
	up := decode[keyOut](t, mustRun(t, db, "keys", "update", k.ID, "--meta", "tier=silver", "--unset-meta", "note", "-o", "json"))
	if len(up.Metadata) != 1 || up.Metadata["tier"] != "silver" {
		t.Fatalf("update --meta --unset-meta: %v", up.Metadata)
	}
	if out := mustRun(t, db, "keys", "show", k.ID); !strings.Contains(out, "Metadata:      tier=silver") {
		t.Fatalf("keys show:\n%s", out)
	}
	up = decode[keyOut](t, mustRun(t, db, "keys", "update", k.ID, "--clear-meta", "--meta", "region=eu", "-o", "json"))
	if len(up.Metadata) != 1 || up.Metadata["region"] != "eu" {
		t.Fatalf("update --clear-meta --meta: %v", up.Metadata)
	}
	before := storetest.Snapshot(t, db)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"keys", "create", "--account", "a", "--name", "n", "--meta", "tier"}, "--meta: \"tier\": want key=value"},
		{[]string{"keys", "create", "--account", "a", "--name", "n", "--meta", "Tier=gold"}, "--meta: key \"Tier\""},
		{[]string{"keys", "create", "--account", "a", "--name", "n", "--meta", "tier="}, "--meta: tier: the value must not be empty"},
		{[]string{"keys", "create", "--account", "a", "--name", "n", "--meta", "tier=a", "--meta", "tier=b"}, "--meta: tier is given twice"},
		{[]string{"keys", "create", "--account", "a", "--name", "n", "--meta", "tier=" + strings.Repeat("x", 257)}, "at most 256"},
		{[]string{"keys", "update", k.ID, "--unset-meta", "no-dashes"}, "--meta"},
	} {
		r := runCLI(t, db, c.args...)
		if line := strings.TrimSpace(r.stderr); r.code != 2 || strings.Contains(line, "\n") || !strings.Contains(line, c.want) {
			t.Errorf("%v: exit %d, %q; want exit 2 and one line with %q", c.args, r.code, r.stderr, c.want)
		}
	}
	if after := storetest.Snapshot(t, db); string(before) != string(after) {
		t.Fatal("a refused command changed the database")
	}
}

func TestKeysImport(t *testing.T) {
	t.Parallel()
	db := storetest.NewDatabase(t)
	dir := t.TempDir()
	s1, _ := keystore.GenerateSecret("kg")
	s2, _ := keystore.GenerateSecret("kg")
	file := filepath.Join(dir, "keys.jsonl")
	lines := `{"account":"acme","name":"one","key":"` + s1.Reveal() + `"}` + "\n\n" + `{"account":"acme","name":"two","scopes":["projects:read"],"key":"` + s2.Reveal() + `"}` + "\n"
	if err := os.WriteFile(file, []byte(lines), 0o600); err != nil {
		t.Fatal(err)
	}
	if out := mustRun(t, db, "keys", "import", file, "--actor", "migration"); !strings.HasPrefix(out, "Imported 2 keys in ") {
		t.Fatalf("keys import printed %q", out)
	}
	// Newest first, as the API lists them: the import's keys, made at one
	// time, the later line first.
	list := decode[[]keyOut](t, mustRun(t, db, "keys", "list", "-o", "json"))
	if len(list) != 2 || list[1].Name != "one" || list[0].Scopes[0] != "projects:read" || list[1].DisplayPrefix != s1.DisplayPrefix() {
		t.Fatalf("keys list after the import: %+v", list)
	}
	if out := mustRun(t, db, "keys", "events", list[1].ID); !strings.Contains(out, "import  migration") {
		t.Fatalf("keys events:\n%s", out)
	}
	// From standard input, one more.
	s3, _ := keystore.GenerateSecret("kg")
	var stdout, stderr strings.Builder
	err := runInteractive(context.Background(), []string{"keys", "import", "-", "-o", "json"}, func(k string) string { return map[string]string{"DATABASE_URL": db}[k] },
		strings.NewReader(`{"account":"acme","name":"three","key":"`+s3.Reveal()+`"}`), false, &stdout, &stderr)
	if err != nil || strings.TrimSpace(stdout.String()) != "{\n  \"imported\": 1\n}" {
		t.Fatalf("keys import - -o json: %v, %q %q", err, stdout.String(), stderr.String())
	}

	before := storetest.Snapshot(t, db)
	empty := filepath.Join(dir, "empty.jsonl")
	os.WriteFile(empty, []byte("\n\n"), 0o600)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"keys", "import", filepath.Join(dir, "none.jsonl")}, "FILE: open"},
		{[]string{"keys", "import", empty}, "no keys in the file"},
		{[]string{"keys", "import", file}, "line 1: this key is stored already"},
	} {
		r := runCLI(t, db, c.args...)
		if line := strings.TrimSpace(r.stderr); r.code != 2 || strings.Contains(line, "\n") || !strings.Contains(line, c.want) ||
			strings.Contains(line, s1.Reveal()[3:]) {
			t.Errorf("%v: exit %d, %q; want exit 2 and one line with %q", c.args, r.code, r.stderr, c.want)
		}
	}
	if after := storetest.Snapshot(t, db); string(before) != string(after) {
		t.Fatal("a refused import changed the database")
	}
}

// The per-key flags of the controls come from the command line only, like
// every flag that describes one key.
func TestControlFlagsIgnoreTheEnvironment(t *testing.T) {
	t.Parallel()
	db := storetest.NewDatabase(t)
	env := map[string]string{"DATABASE_URL": db, "KEYGATE_META": "tier=gold", "KEYGATE_ALLOW_CIDR": "10.0.0.0/8",
		"KEYGATE_ACCEPT_LEGACY_KEYS": "true", "KEYGATE_CLEAR_META": "true"}
	r := runWithEnv(t, env, "keys", "create", "--account", "acme", "--name", "n", "-o", "json")
	if k := decode[keyOut](t, r.stdout); r.code != 0 || len(k.Metadata) != 0 || len(k.AllowedCIDRs) != 0 {
		t.Fatalf("the environment shaped the key: %d %+v", r.code, k)
	}
}
