package main

import (
	"strings"
	"testing"

	"github.com/keygate/keygate/internal/pgtest"
)

func TestKeysDisableEnable(t *testing.T) {
	db := pgtest.NewDatabase(t)
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
