package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/admin"
	"github.com/keygate/keygate/internal/pgtest"
	"github.com/keygate/keygate/internal/storetest"
	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/policy"
)

// keyOut mirrors the documented -o json shape.
type keyOut struct {
	ID            string            `json:"id"`
	Secret        *string           `json:"secret"`
	AccountID     string            `json:"account_id"`
	Name          string            `json:"name"`
	Description   string            `json:"description"`
	DisplayPrefix string            `json:"display_prefix"`
	Scopes        []string          `json:"scopes"`
	AllowedCIDRs  []string          `json:"allowed_cidrs"`
	Metadata      map[string]string `json:"metadata"`
	Status        string            `json:"status"`
	CreatedAt     time.Time         `json:"created_at"`
	ExpiresAt     *time.Time        `json:"expires_at"`
	RevokedAt     *time.Time        `json:"revoked_at"`
	DisabledAt    *time.Time        `json:"disabled_at"`
	LastUsedAt    *time.Time        `json:"last_used_at"`
	RotatedFrom   *string           `json:"rotated_from"`
	RotatedTo     *string           `json:"rotated_to"`
}

func TestKeysLifecycle(t *testing.T) {
	t.Parallel()
	db := storetest.NewDatabase(t)
	var outputs bytes.Buffer // everything printed after create
	runLater := func(args ...string) string {
		out := mustRun(t, db, args...)
		outputs.WriteString(out)
		return out
	}

	created := decode[keyOut](t, mustRun(t, db, "keys", "create", "--account", "acme", "--name", "deploy bot",
		"--description", "CI deploys", "--expires-in", "30d", "--scope", "projects:read", "--scope", "projects:write", "-o", "json"))
	if created.Secret == nil || !strings.HasPrefix(*created.Secret, created.DisplayPrefix) {
		t.Fatalf("create -o json: missing secret or display prefix: %+v", created)
	}
	secret := *created.Secret
	body := secret[len("kg_"):]
	if created.AccountID != "acme" || created.Name != "deploy bot" || created.Description != "CI deploys" ||
		strings.Join(created.Scopes, ",") != "projects:read,projects:write" || created.ExpiresAt == nil ||
		created.ExpiresAt.Sub(created.CreatedAt) != 30*24*time.Hour || created.Status != "active" {
		t.Fatalf("create -o json = %+v", created)
	}

	list := decode[[]keyOut](t, runLater("keys", "list", "--account", "acme", "-o", "json"))
	if len(list) != 1 || list[0].ID != created.ID || list[0].Secret != nil {
		t.Fatalf("list -o json = %+v, want the one key without its secret", list)
	}
	shown := decode[keyOut](t, runLater("keys", "show", created.ID, "-o", "json"))
	if shown.ID != created.ID || shown.Secret != nil || shown.RevokedAt != nil || shown.LastUsedAt != nil {
		t.Fatalf("show -o json = %+v", shown)
	}
	runLater("keys", "list")
	runLater("keys", "show", created.ID)

	rotated := decode[keyOut](t, mustRun(t, db, "keys", "rotate", created.ID, "--grace", "1h", "-o", "json"))
	if rotated.Secret == nil || *rotated.Secret == secret || rotated.RotatedFrom == nil || *rotated.RotatedFrom != created.ID {
		t.Fatalf("rotate -o json = %+v", rotated)
	}
	newSecret := *rotated.Secret
	old := decode[keyOut](t, runLater("keys", "show", created.ID, "-o", "json"))
	if old.ExpiresAt == nil || old.ExpiresAt.After(time.Now().Add(time.Hour+time.Minute)) {
		t.Fatalf("after rotate --grace 1h the old key expires at %v", old.ExpiresAt)
	}
	if old.RotatedTo == nil || *old.RotatedTo != rotated.ID || rotated.RotatedTo != nil {
		t.Fatalf("show -o json after rotate: rotated_to %v, want %s", old.RotatedTo, rotated.ID)
	}

	runLater("keys", "revoke", rotated.ID)
	revoked := decode[keyOut](t, runLater("keys", "show", rotated.ID, "-o", "json"))
	if revoked.RevokedAt == nil || revoked.Status != "revoked" {
		t.Fatalf("after revoke: %+v", revoked)
	}
	if r := runCLI(t, db, "keys", "revoke", rotated.ID); r.code != 1 || !strings.Contains(r.stderr, "revoked") {
		t.Fatalf("second revoke: exit %d, %q", r.code, r.stderr)
	}
	all := decode[[]keyOut](t, runLater("keys", "list", "--all", "-o", "json"))
	active := decode[[]keyOut](t, runLater("keys", "list", "-o", "json"))
	if len(all) != 2 || len(active) != 1 {
		t.Fatalf("list --all has %d keys, list %d; want 2 and 1 (the old key in its grace period)", len(all), len(active))
	}

	for _, s := range []string{secret, body, newSecret, newSecret[len("kg_"):]} {
		if strings.Contains(outputs.String(), s) {
			t.Fatal("a secret appears in list/show/revoke output after it was shown")
		}
	}
	dump := storetest.Snapshot(t, db)
	if !bytes.Contains(dump, []byte(created.ID)) {
		t.Fatal("the dump does not contain the key id: is it dumping the right database?")
	}
	for _, s := range []string{secret, body, newSecret, newSecret[len("kg_"):]} {
		if bytes.Contains(dump, []byte(s)) {
			t.Fatal("a secret or its random body appears in pg_dump")
		}
	}
}

func TestCreateHumanOutputShowsSecretOnce(t *testing.T) {
	t.Parallel()
	db := storetest.NewDatabase(t)
	out := mustRun(t, db, "keys", "create", "--account", "a", "--name", "n")
	var secret string
	for _, f := range strings.Fields(out) {
		if strings.HasPrefix(f, "kg_") && len(f) == 42 {
			secret = f
		}
	}
	if secret == "" || strings.Count(out, secret) != 1 || !strings.Contains(out, "only this once") {
		t.Fatalf("create output must show the secret exactly once with a warning:\n%s", out)
	}
}

func TestBadInputWritesNothing(t *testing.T) {
	t.Parallel()
	db := storetest.NewDatabase(t)
	existing := decode[keyOut](t, mustRun(t, db, "keys", "create", "--account", "a", "--name", "n", "-o", "json"))
	unknownID := "0193c7a2-5d6e-7f00-8a1b-2c3d4e5f6a7b"
	cases := []struct {
		name string
		args []string
		code int
		want string // in the one-line error
	}{
		{"missing name", []string{"keys", "create", "--account", "a"}, 2, "--name"},
		{"empty name", []string{"keys", "create", "--account", "a", "--name", ""}, 2, "--name"},
		{"blank name", []string{"keys", "create", "--account", "a", "--name", "  "}, 2, "--name"},
		{"over-long name", []string{"keys", "create", "--account", "a", "--name", strings.Repeat("x", 101)}, 2, "--name"},
		{"over-long description", []string{"keys", "create", "--account", "a", "--name", "n", "--description", strings.Repeat("x", 1001)}, 2, "--description"},
		{"over-long account", []string{"keys", "create", "--account", strings.Repeat("a", 201), "--name", "n"}, 2, "--account"},
		{"missing account", []string{"keys", "create", "--name", "n"}, 2, "--account"},
		{"empty account", []string{"keys", "create", "--account", "", "--name", "n"}, 2, "--account: must not be empty"},
		{"blank account", []string{"keys", "create", "--account", "  ", "--name", "n"}, 2, "--account: must not start or end with white space"},
		{"account with a leading space", []string{"keys", "create", "--account", " acme", "--name", "n"}, 2, "--account: must not start or end"},
		{"account with a trailing space", []string{"keys", "create", "--account", "acme ", "--name", "n"}, 2, "--account: must not start or end"},
		{"account with a comma", []string{"keys", "create", "--account", "acme,beta", "--name", "n"}, 2, "--account: must hold only letters"},
		{"account with a newline", []string{"keys", "create", "--account", "acme\nX-Evil: 1", "--name", "n"}, 2, "--account: must hold only letters"},
		{"account with a zero width space", []string{"keys", "create", "--account", "ac\u200bme", "--name", "n"}, 2, "--account: must hold only letters"},
		{"account of invalid UTF-8", []string{"keys", "create", "--account", "acme\xff", "--name", "n"}, 2, "--account"},
		{"list an account with a trailing space", []string{"keys", "list", "--account", "acme "}, 2, "--account: must not start or end"},
		{"name with a bidi override", []string{"keys", "create", "--account", "a", "--name", "ci\u202egnp.exe"}, 2, "--name: must not contain U+202E"},
		{"name with a zero width space", []string{"keys", "create", "--account", "a", "--name", "pro\u200bd"}, 2, "--name: must not contain U+200B"},
		{"name of invalid UTF-8", []string{"keys", "create", "--account", "a", "--name", "ci\xff"}, 2, "--name: must be valid UTF-8"},
		{"name of invalid UTF-8, joined", []string{"keys", "create", "--account", "a", "--name=ci\xfe"}, 2, "--name: must be valid UTF-8"},
		{"id of invalid UTF-8", []string{"keys", "show", "\xff"}, 2, "must be valid UTF-8"},
		{"name with a lone surrogate's bytes", []string{"keys", "create", "--account", "a", "--name", "ci\xed\xa0\x80"}, 2, "--name: must be valid UTF-8"},
		{"description with a bidi isolate", []string{"keys", "create", "--account", "a", "--name", "n", "--description", "x\u2067y"}, 2, "--description: must not contain U+2067"},
		{"rename with a bidi override", []string{"keys", "update", existing.ID, "--name", "\u202dci"}, 2, "--name: must not contain U+202D"},
		{"description of invalid UTF-8", []string{"keys", "update", existing.ID, "--description", "\xc3"}, 2, "--description: must be valid UTF-8"},
		{"a nanosecond lifetime", []string{"keys", "create", "--account", "a", "--name", "n", "--expires-in", "1ns"}, 2, "at least 1m"},
		{"a lifetime under a minute", []string{"keys", "create", "--account", "a", "--name", "n", "--expires-in", "59s"}, 2, "at least 1m"},
		{"an expiry under a second away", []string{"keys", "create", "--account", "a", "--name", "n", "--expires-at", time.Now().Add(500 * time.Millisecond).UTC().Format(time.RFC3339Nano)}, 2, "expiry"},
		{"malformed duration", []string{"keys", "create", "--account", "a", "--name", "n", "--expires-in", "3 weeks"}, 2, "--expires-in"},
		{"zero duration", []string{"keys", "create", "--account", "a", "--name", "n", "--expires-in", "0s"}, 2, "--expires-in"},
		{"malformed time", []string{"keys", "create", "--account", "a", "--name", "n", "--expires-at", "tomorrow"}, 2, "--expires-at"},
		{"expiry in the past", []string{"keys", "create", "--account", "a", "--name", "n", "--expires-at", "2020-01-01T00:00:00Z"}, 2, "not in the future"},
		{"contradictory expiry flags", []string{"keys", "create", "--account", "a", "--name", "n", "--expires-in", "1d", "--no-expiry"}, 2, "can't be used together"},
		{"contradictory expiry flags 2", []string{"keys", "create", "--account", "a", "--name", "n", "--expires-in", "1d", "--expires-at", "2030-01-01T00:00:00Z"}, 2, "can't be used together"},
		{"beyond max lifetime", []string{"keys", "create", "--account", "a", "--name", "n", "--expires-in", "400d", "--max-key-lifetime", "365d"}, 2, "maximum lifetime"},
		{"never with max lifetime", []string{"keys", "create", "--account", "a", "--name", "n", "--no-expiry", "--max-key-lifetime", "365d"}, 2, "must expire"},
		{"unknown flag", []string{"keys", "create", "--account", "a", "--name", "n", "--colour", "red"}, 2, "--colour"},
		{"invalid scope", []string{"keys", "create", "--account", "a", "--name", "n", "--scope", "projects:admin"}, 2, "--scope"},
		{"invalid scope module", []string{"keys", "create", "--account", "a", "--name", "n", "--scope", "Projects:read"}, 2, "--scope"},
		{"invalid output", []string{"keys", "list", "-o", "yaml"}, 2, "--output"},
		{"bad prefix", []string{"keys", "create", "--account", "a", "--name", "n", "--key-prefix", "KG!"}, 2, "--key-prefix"},
		{"malformed id", []string{"keys", "revoke", "not-an-id"}, 2, "ID"},
		{"malformed id show", []string{"keys", "show", "'; drop table api_keys; --"}, 2, "ID"},
		{"unknown id revoke", []string{"keys", "revoke", unknownID}, 1, "no key with id"},
		{"unknown id rotate", []string{"keys", "rotate", unknownID}, 1, "no key with id"},
		{"malformed grace", []string{"keys", "rotate", existing.ID, "--grace", "soon"}, 2, "--grace"},
		{"negative grace", []string{"keys", "rotate", existing.ID, "--grace", "-1h"}, 2, "--grace"},
		{"update nothing", []string{"keys", "update", existing.ID}, 2, "--name"},
		{"unknown command", []string{"keys", "destroy", existing.ID}, 2, "destroy"},
		{"missing id", []string{"keys", "show"}, 2, "id"},
	}
	before := storetest.Snapshot(t, db)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := runCLI(t, db, c.args...)
			if r.code != c.code {
				t.Fatalf("exit %d, want %d; stderr %q", r.code, c.code, r.stderr)
			}
			line := strings.TrimSpace(r.stderr)
			if strings.Count(line, "\n") != 0 || !strings.HasPrefix(line, "keygate: ") || !strings.Contains(line, c.want) {
				t.Fatalf("stderr %q: want one line starting with \"keygate: \" mentioning %q", r.stderr, c.want)
			}
			if r.stdout != "" {
				t.Fatalf("printed %q on stdout", r.stdout)
			}
		})
	}
	if after := storetest.Snapshot(t, db); !bytes.Equal(before, after) {
		t.Fatalf("a rejected command changed the database:\n%s", lineDiff(string(before), string(after)))
	}
}

func TestEnvironmentSetsFlags(t *testing.T) {
	t.Parallel()
	db := storetest.NewDatabase(t)
	r := runWithEnv(t, map[string]string{"KEYGATE_DATABASE_URL": db, "KEYGATE_KEY_PREFIX": "acme"},
		"keys", "create", "--account", "a", "--name", "n", "-o", "json")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	if k := decode[keyOut](t, r.stdout); !strings.HasPrefix(*k.Secret, "acme_") {
		t.Fatalf("KEYGATE_KEY_PREFIX was ignored: display prefix %q", k.DisplayPrefix)
	}
	// A server setting from the environment is checked like the flag.
	r = runWithEnv(t, map[string]string{"DATABASE_URL": db, "KEYGATE_LOG_FORMAT": "yaml"}, "serve")
	if r.code != 2 || !strings.Contains(r.stderr, "--log-format") {
		t.Fatalf("a bad KEYGATE_LOG_FORMAT: exit %d, %q", r.code, r.stderr)
	}
	// -o describes one invocation: KEYGATE_OUTPUT is not read.
	if r = runWithEnv(t, map[string]string{"DATABASE_URL": db, "KEYGATE_OUTPUT": "yaml"}, "keys", "list"); r.code != 0 {
		t.Fatalf("KEYGATE_OUTPUT was read by keys list: exit %d, %q", r.code, r.stderr)
	}
	// So are every command's flags but serve's, dev's, migrate's and
	// health's: a webhook's flags too.
	if r = runWithEnv(t, map[string]string{"DATABASE_URL": db, "KEYGATE_OUTPUT": "yaml"}, "webhooks", "list"); r.code != 0 {
		t.Fatalf("KEYGATE_OUTPUT was read by webhooks list: exit %d, %q", r.code, r.stderr)
	}
	r = runWithEnv(t, map[string]string{"DATABASE_URL": db, "KEYGATE_ALLOW_LINK_LOCAL": "true"}, "webhooks", "create", "--url", "http://169.254.169.254/hook")
	if r.code != 2 {
		t.Fatalf("KEYGATE_ALLOW_LINK_LOCAL opened a webhook to the metadata address: exit %d, %q", r.code, r.stderr)
	}
}

func TestMigrateCommand(t *testing.T) {
	t.Parallel()
	db := pgtest.NewEmptyDatabase(t)
	if out := mustRun(t, db, "migrate"); !strings.Contains(out, "Applied") {
		t.Fatalf("first migrate printed %q", out)
	}
	if out := mustRun(t, db, "migrate"); !strings.Contains(out, "up to date") {
		t.Fatalf("second migrate printed %q, want a no-op", out)
	}
	var wg sync.WaitGroup
	codes := make([]int, 2)
	fresh := pgtest.NewEmptyDatabase(t)
	for i := range codes {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			codes[i] = runCLI(t, fresh, "migrate").code
		}(i)
	}
	wg.Wait()
	if codes[0] != 0 || codes[1] != 0 {
		t.Fatalf("two concurrent migrations on an empty database exited %v", codes)
	}
	mustRun(t, fresh, "keys", "list")
}

func TestUnmigratedDatabase(t *testing.T) {
	t.Parallel()
	db := pgtest.NewEmptyDatabase(t)
	r := runCLI(t, db, "keys", "list")
	if r.code != 1 || !strings.Contains(r.stderr, "keygate migrate") {
		t.Fatalf("keys list on an empty database: exit %d, %q; want a pointer to keygate migrate", r.code, r.stderr)
	}
}

func TestStoppedDatabase(t *testing.T) {
	t.Parallel()
	start := time.Now()
	r := runCLI(t, "postgres://keygate@127.0.0.1:1/keygate", "keys", "list")
	if r.code != 1 || !strings.Contains(r.stderr, "database unreachable") || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
		t.Fatalf("exit %d, stderr %q: want one line saying the database is unreachable", r.code, r.stderr)
	}
	if time.Since(start) > 10*time.Second {
		t.Fatalf("took %v to give up", time.Since(start))
	}
	_ = context.Background()
}

func TestHelpAndVersion(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"--help"}, {"keys", "create", "--help"}, {"serve", "--help"}, {"version"}} {
		r := runCLI(t, "", args...)
		if r.code != 0 || r.stdout == "" {
			t.Errorf("keygate %v: exit %d, stdout %q", args, r.code, r.stdout)
		}
	}
	if r := runCLI(t, "", "keys", "create", "--help"); !strings.Contains(r.stdout, "$KEYGATE_DATABASE_URL") || strings.Contains(r.stdout, "$KEYGATE_EXPIRES_IN") {
		t.Error("keys create --help must name the variables of the connection settings, and none for the key's own flags")
	}
	if r := runCLI(t, "", "serve", "--help"); !strings.Contains(r.stdout, "$KEYGATE_GRPC_ADDR") || !strings.Contains(r.stdout, "$KEYGATE_CACHE_SIZE") {
		t.Error("serve --help does not name the environment variable of each flag")
	}
}

// lineDiff lists the lines only one of a and b has.
func lineDiff(a, b string) string {
	in := func(s string) map[string]bool {
		m := map[string]bool{}
		for _, l := range strings.Split(s, "\n") {
			m[l] = true
		}
		return m
	}
	ma, mb := in(a), in(b)
	var out []string
	for l := range ma {
		if !mb[l] {
			out = append(out, "- "+l)
		}
	}
	for l := range mb {
		if !ma[l] {
			out = append(out, "+ "+l)
		}
	}
	return strings.Join(out, "\n")
}

func TestListEmptyAccountIsAnError(t *testing.T) {
	t.Parallel()
	db := storetest.NewDatabase(t)
	mustRun(t, db, "keys", "create", "--account", "a", "--name", "n")
	if r := runCLI(t, db, "keys", "list", "--account", ""); r.code != 2 || !strings.Contains(r.stderr, "--account") {
		t.Fatalf("keys list --account '': exit %d, %q; want exit 2 (not every account's keys)", r.code, r.stderr)
	}
}

func TestPepperFromFileOrEnvironmentHashesAlike(t *testing.T) {
	t.Parallel()
	db := storetest.NewDatabase(t)
	file := t.TempDir() + "/pepper"
	pepper := strings.Repeat("s3cr3t-", 6)
	if err := os.WriteFile(file, []byte(pepper+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	viaFile := decode[keyOut](t, mustRun(t, db, "keys", "create", "--account", "a", "--name", "f", "--pepper-file", file, "-o", "json"))
	env := map[string]string{"DATABASE_URL": db, "KEYGATE_PEPPER": pepper + "\n"}
	r := runWithEnv(t, env, "keys", "create", "--account", "a", "--name", "e", "-o", "json")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	// Both keys verify with the same hasher: find both by their digests.
	stored := map[keystore.Digest]string{} // digest → hash scheme
	if err := storetest.Open(t, db).Export(context.Background(), func(k *keystore.Key) error {
		stored[k.Digest] = k.HashScheme
		return nil
	}, func(keystore.Event) error { return nil }); err != nil {
		t.Fatal(err)
	}
	h, _ := keystore.NewHasher([]byte(pepper))
	viaEnv := decode[keyOut](t, r.stdout)
	for _, secret := range []string{*viaFile.Secret, *viaEnv.Secret} {
		s, _ := keystore.ParseSecret(secret)
		if scheme := stored[h.Digest(s)]; scheme != keystore.SchemeHMACSHA256 {
			t.Fatalf("a key peppered via file or environment is not stored under HMAC(pepper): scheme %q", scheme)
		}
	}
	if r := runWithEnv(t, map[string]string{"DATABASE_URL": db, "KEYGATE_PEPPER": "short"}, "keys", "create", "--account", "a", "--name", "x"); r.code != 2 || !strings.Contains(r.stderr, "KEYGATE_PEPPER") {
		t.Fatalf("a short KEYGATE_PEPPER: exit %d, %q; want exit 2 naming it", r.code, r.stderr)
	}
}

// Flags that describe one key never come from the environment: a
// KEYGATE_NAME or KEYGATE_NO_EXPIRY left in a shell must not rename a key
// or make one that never expires. Connection settings still do.
func TestPerKeyFlagsIgnoreTheEnvironment(t *testing.T) {
	t.Parallel()
	db := storetest.NewDatabase(t)
	env := map[string]string{"KEYGATE_DATABASE_URL": db, "KEYGATE_NAME": "from-env", "KEYGATE_NO_EXPIRY": "true",
		"KEYGATE_DESCRIPTION": "from-env", "KEYGATE_SCOPE": "*", "KEYGATE_ACCOUNT": "other", "KEYGATE_ALL": "true"}
	r := runWithEnv(t, env, "keys", "create", "--account", "acme", "--name", "real", "-o", "json")
	if r.code != 0 {
		t.Fatalf("create: %d %s", r.code, r.stderr)
	}
	k := decode[keyOut](t, r.stdout)
	if k.Name != "real" || k.Description != "" || k.ExpiresAt == nil || len(k.Scopes) != 0 || k.AccountID != "acme" {
		t.Fatalf("the environment shaped the key: %+v", k)
	}
	r = runWithEnv(t, env, "keys", "update", k.ID, "--description", "changed", "-o", "json")
	if got := decode[keyOut](t, r.stdout); got.Name != "real" {
		t.Fatalf("KEYGATE_NAME renamed the key on update: %q", got.Name)
	}
	if r := runWithEnv(t, env, "keys", "create", "--help"); strings.Contains(r.stdout, "$KEYGATE_NAME") || !strings.Contains(r.stdout, "$KEYGATE_DATABASE_URL") {
		t.Fatalf("--help documents the wrong variables:\n%s", r.stdout)
	}
}

func runTerminal(t *testing.T, dbURL, input string, args ...string) result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	err := runInteractive(context.Background(), args, func(k string) string { return map[string]string{"DATABASE_URL": dbURL}[k] },
		strings.NewReader(input), true, &stdout, &stderr)
	r := result{stdout: stdout.String(), stderr: stderr.String()}
	if err != nil {
		var errOut bytes.Buffer
		r.code = exitCodeTo(err, &errOut)
		r.stderr += errOut.String()
	}
	return r
}

func TestKeysDelete(t *testing.T) {
	t.Parallel()
	db := storetest.NewDatabase(t)
	id, _ := createKey(t, db, "--name", "doomed")
	// On a terminal it asks, and anything but yes changes nothing.
	r := runTerminal(t, db, "n\n", "keys", "delete", id)
	if r.code != 1 || !strings.Contains(r.stdout, "doomed") || !strings.Contains(r.stdout, "Not deleted") {
		t.Fatalf("delete answered no: exit %d, %q %q", r.code, r.stdout, r.stderr)
	}
	if k := decode[keyOut](t, mustRun(t, db, "keys", "show", id, "-o", "json")); k.RevokedAt != nil {
		t.Fatal("deleted although the answer was no")
	}
	if r := runTerminal(t, db, "yes\n", "keys", "delete", id); r.code != 0 || !strings.Contains(r.stdout, "Revoked key") {
		t.Fatalf("delete answered yes: exit %d, %q %q", r.code, r.stdout, r.stderr)
	}
	// --yes does not ask.
	other, _ := createKey(t, db)
	if r := runTerminal(t, db, "", "keys", "delete", "--yes", other, "-o", "json"); r.code != 0 || decode[keyOut](t, r.stdout).RevokedAt == nil {
		t.Fatalf("delete --yes: exit %d, %q", r.code, r.stderr)
	}
	// Without a terminal nobody can be asked: it needs --yes, and without
	// it changes nothing.
	third, _ := createKey(t, db)
	_, events := storetest.Count(t, db)
	if r := runCLI(t, db, "keys", "delete", third); r.code != 2 || !strings.Contains(r.stderr, "--yes") || r.database != "" {
		t.Fatalf("delete without a terminal nor --yes: exit %d, %q %q", r.code, r.stdout, r.stderr)
	}
	if k := decode[keyOut](t, mustRun(t, db, "keys", "show", third, "-o", "json")); k.RevokedAt != nil {
		t.Fatal("deleted without a terminal nor --yes")
	}
	if _, after := storetest.Count(t, db); after != events {
		t.Fatal("a refused delete wrote an event")
	}
	// A key revoked already is deleted already: exit 0, as DELETE answers
	// 204, and no second event; on a terminal, nobody is asked.
	_, events = storetest.Count(t, db)
	if r := runCLI(t, db, "keys", "delete", "--yes", other); r.code != 0 || !strings.Contains(r.stdout, "revoked already") {
		t.Fatalf("delete of a revoked key: exit %d, %q %q", r.code, r.stdout, r.stderr)
	}
	if r := runTerminal(t, db, "", "keys", "delete", id, "-o", "json"); r.code != 0 || decode[keyOut](t, r.stdout).RevokedAt == nil {
		t.Fatalf("delete of a revoked key on a terminal: exit %d, %q %q", r.code, r.stdout, r.stderr)
	}
	if _, after := storetest.Count(t, db); after != events {
		t.Fatalf("deleting revoked keys wrote %d events", after-events)
	}
	if r := runCLI(t, db, "keys", "delete", "--yes", "not-an-id"); r.code == 0 {
		t.Fatal("deleted a malformed id")
	}
}

func TestKeysEventsAndRotatedStatus(t *testing.T) {
	t.Parallel()
	db := storetest.NewDatabase(t)
	id, _ := createKey(t, db, "--name", "audited")
	mustRun(t, db, "keys", "update", id, "--description", "now described", "--actor", "alice")
	mustRun(t, db, "keys", "rotate", id, "--grace", "2h")
	var events []struct {
		Action, Actor string
		At            time.Time
		Detail        map[string]any
	}
	decodeInto(t, mustRun(t, db, "keys", "events", id, "-o", "json"), &events)
	if len(events) != 3 || events[0].Action != "create" || events[1].Action != "update" || events[1].Actor != "alice" || events[2].Action != "rotate" {
		t.Fatalf("events %+v", events)
	}
	if out := mustRun(t, db, "keys", "events", id); !strings.Contains(out, "ACTION") || strings.Count(out, "\n") != 4 {
		t.Fatalf("events table:\n%s", out)
	}
	if r := runCLI(t, db, "keys", "events", "01a233a0-6ecf-7e0b-84b4-acb2b4f326e5"); r.code != 1 || !strings.Contains(r.stderr, "no key") {
		t.Fatalf("events of an unknown key: exit %d %q", r.code, r.stderr)
	}
	show := mustRun(t, db, "keys", "show", id)
	if !strings.Contains(show, "rotated (grace until ") || !strings.Contains(show, "Rotated to:") {
		t.Fatalf("show does not mark the rotated key:\n%s", show)
	}
	if list := mustRun(t, db, "keys", "list", "--account", "acme"); !strings.Contains(list, "rotated (grace until ") {
		t.Fatalf("list does not mark the rotated key:\n%s", list)
	}
}

// TestKeysUpdateScopesAndExpiry: keys update changes a key's scopes
// (replace, add, remove) and expiry (--expires-in, --expires-at with a
// plain date, --no-expiry) in place, audited with the values before and
// after, within --max-key-lifetime (flag or KEYGATE_MAX_KEY_LIFETIME);
// scopes that could never work, removals that narrow nothing and changes
// of a revoked key are refused and write nothing.
func TestKeysUpdateScopesAndExpiry(t *testing.T) {
	t.Parallel()
	db := storetest.NewDatabase(t)
	id, _ := createKey(t, db, "--scope", "projects:read", "--expires-in", "1h")
	update := func(args ...string) keyOut {
		t.Helper()
		return decode[keyOut](t, mustRun(t, db, append([]string{"keys", "update", id, "-o", "json"}, args...)...))
	}
	if k := update("--add-scope", "projects:write", "--add-scope", "deployments:read"); strings.Join(k.Scopes, ",") != "deployments:read,projects:read,projects:write" {
		t.Fatalf("--add-scope: %q", k.Scopes)
	}
	if k := update("--remove-scope", "projects:write"); strings.Join(k.Scopes, ",") != "deployments:read,projects:read" {
		t.Fatalf("--remove-scope: %q", k.Scopes)
	}
	if k := update("--scope", "projects:*"); strings.Join(k.Scopes, ",") != "projects:*" {
		t.Fatalf("--scope: %q", k.Scopes)
	}
	var events []struct {
		Action, Actor string
		Detail        map[string]any
	}
	decodeInto(t, mustRun(t, db, "keys", "events", id, "-o", "json"), &events)
	last := events[len(events)-1]
	if last.Action != "update" || last.Actor != "cli:tester" || fmt.Sprint(last.Detail["scopes"]) != "[projects:*]" ||
		fmt.Sprint(last.Detail["previous"]) != "map[scopes:[deployments:read projects:read]]" {
		t.Fatalf("the last event %+v: want the scopes before and after", last)
	}

	start := time.Now()
	if k := update("--expires-in", "30d"); k.ExpiresAt == nil || k.ExpiresAt.Before(start.Add(30*24*time.Hour-time.Minute)) {
		t.Fatalf("--expires-in 30d: expires at %v", k.ExpiresAt)
	}
	day := time.Now().UTC().AddDate(0, 3, 0).Format(time.DateOnly)
	if k := update("--expires-at", day); k.ExpiresAt == nil || k.ExpiresAt.Format(time.RFC3339) != day+"T23:59:59Z" {
		t.Fatalf("--expires-at %s: expires at %v, want the end of that day in UTC", day, k.ExpiresAt)
	}
	if k := update("--no-expiry"); k.ExpiresAt != nil {
		t.Fatalf("--no-expiry: expires at %v", k.ExpiresAt)
	}

	_, before := storetest.Count(t, db)
	long := time.Now().UTC().AddDate(2, 0, 0).Format(time.DateOnly)
	pol := policy.Example()
	for _, c := range []struct {
		name string
		args []string
		env  map[string]string
		code int
		want string
	}{
		{"a module the policy does not know", []string{"--add-scope", "project:read"}, nil, 2,
			`--add-scope "project:read": ` + admin.ScopeProblem(pol, "project:read") + " (the built-in example policy"},
		{"a closed module", []string{"--scope", "projects:read", "--scope", "users:read"}, nil, 2, `--scope "users:read": ` + admin.ScopeProblem(pol, "users:read")},
		{"a malformed scope", []string{"--add-scope", "projects:admin"}, nil, 2, admin.ScopeProblem(pol, "projects:admin")},
		{"removing a scope it does not have", []string{"--remove-scope", "projects:read"}, nil, 2, "--remove-scope: the key has no scope projects:read to remove"},
		{"removing its last scope", []string{"--remove-scope", "projects:*"}, nil, 2, "--remove-scope: removing every scope would let the key use every module"},
		{"replacing and clearing", []string{"--scope", "projects:read", "--clear-scopes"}, nil, 2, "can't be used together"},
		{"two expiries", []string{"--expires-in", "1d", "--no-expiry"}, nil, 2, "can't be used together"},
		{"a malformed date", []string{"--expires-at", "2027-02-30"}, nil, 2, "--expires-at: must be an RFC 3339 time"},
		{"an empty date", []string{"--expires-at", ""}, nil, 2, "--expires-at"},
		{"too short", []string{"--expires-in", "30s"}, nil, 2, "too short"},
		{"beyond --max-key-lifetime", []string{"--expires-at", long, "--max-key-lifetime", "365d"}, nil, 2, "maximum lifetime"},
		{"beyond KEYGATE_MAX_KEY_LIFETIME", []string{"--expires-in", "400d"}, map[string]string{"KEYGATE_MAX_KEY_LIFETIME": "365d"}, 2, "maximum lifetime"},
		{"no expiry under a maximum", []string{"--no-expiry"}, map[string]string{"KEYGATE_MAX_KEY_LIFETIME": "365d"}, 2, "keys must expire"},
		{"nothing to change", nil, nil, 2, "keys update: nothing to change: give --name"},
		{"a policy file that is not there", []string{"--add-scope", "billing:read", "--policy", "/nonexistent.yaml"}, nil, 2, "--policy"},
	} {
		env := map[string]string{"DATABASE_URL": db, "USER": "tester"}
		maps.Copy(env, c.env)
		r := runWithEnv(t, env, append([]string{"keys", "update", id}, c.args...)...)
		if r.code != c.code || !strings.Contains(r.stderr, c.want) || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
			t.Errorf("%s: exit %d, %q; want %d and one line with %q", c.name, r.code, r.stderr, c.code, c.want)
		}
	}
	if _, after := storetest.Count(t, db); after != before {
		t.Fatalf("refused updates wrote %d events", after-before)
	}

	// The policy serve uses, from --policy or KEYGATE_POLICY: billing is a
	// module there.
	file := filepath.Join(t.TempDir(), "policy.yaml")
	os.WriteFile(file, []byte("modules:\n  billing: {paths: [/api/v1/billing]}\n  users: {paths: [/api/v1/users], api_keys: deny}\n"), 0o600)
	if k := update("--add-scope", "billing:read", "--policy", file); !slices.Contains(k.Scopes, "billing:read") {
		t.Fatalf("--policy: %q", k.Scopes)
	}
	r := runWithEnv(t, map[string]string{"DATABASE_URL": db, "KEYGATE_POLICY": file}, "keys", "update", id, "--add-scope", "projects:write")
	if r.code != 2 || !strings.Contains(r.stderr, "no module projects in the policy; modules open to API keys: billing") || strings.Contains(r.stderr, "example") {
		t.Fatalf("KEYGATE_POLICY: exit %d %q", r.code, r.stderr)
	}

	// A revoked key cannot change.
	mustRun(t, db, "keys", "revoke", id)
	_, before = storetest.Count(t, db)
	if r := runCLI(t, db, "keys", "update", id, "--expires-in", "1d"); r.code != 1 || !strings.Contains(r.stderr, "revoked") {
		t.Fatalf("update of a revoked key: exit %d %q", r.code, r.stderr)
	}
	if _, after := storetest.Count(t, db); after != before {
		t.Fatal("a refused update of a revoked key wrote an event")
	}
}

// TestKeysCreateAndRotateExpiry: create takes a plain date; rotate gives
// the successor the expiry asked for, or keeps the old key's; create
// refuses the scopes the API refuses, in its words.
func TestKeysCreateAndRotateExpiry(t *testing.T) {
	t.Parallel()
	db := storetest.NewDatabase(t)
	day := time.Now().UTC().AddDate(0, 1, 0).Format(time.DateOnly)
	k := decode[keyOut](t, mustRun(t, db, "keys", "create", "--account", "acme", "--name", "ci", "--expires-at", day, "-o", "json"))
	if k.ExpiresAt == nil || k.ExpiresAt.Format(time.RFC3339) != day+"T23:59:59Z" {
		t.Fatalf("create --expires-at %s: %v", day, k.ExpiresAt)
	}
	start := time.Now()
	next := decode[keyOut](t, mustRun(t, db, "keys", "rotate", k.ID, "--expires-in", "90d", "-o", "json"))
	if next.ExpiresAt == nil || next.ExpiresAt.Before(start.Add(90*24*time.Hour-time.Minute)) {
		t.Fatalf("rotate --expires-in 90d: %v", next.ExpiresAt)
	}
	third := decode[keyOut](t, mustRun(t, db, "keys", "rotate", next.ID, "-o", "json"))
	if third.ExpiresAt == nil || !third.ExpiresAt.Equal(*next.ExpiresAt) {
		t.Fatalf("rotate without an expiry: %v, want %v", third.ExpiresAt, next.ExpiresAt)
	}
	if r := runCLI(t, db, "keys", "rotate", third.ID, "--expires-in", "400d", "--max-key-lifetime", "365d"); r.code != 2 || !strings.Contains(r.stderr, "maximum lifetime") {
		t.Fatalf("rotate beyond the maximum: exit %d %q", r.code, r.stderr)
	}
	for _, scope := range []string{"project:read", "accounts:*", "nope", "billing:write"} {
		r := runCLI(t, db, "keys", "create", "--account", "acme", "--name", "n", "--scope", "projects:read", "--scope", scope)
		if r.code != 2 || !strings.Contains(r.stderr, admin.ScopeProblem(policy.Example(), scope)) || r.database != "" {
			t.Errorf("create --scope %s: exit %d %q", scope, r.code, r.stderr)
		}
	}
	if keys, _ := storetest.Count(t, db); keys != 3 {
		t.Fatalf("refused creates made %d keys", keys-3)
	}
}

// TestKeysActorFromTheOSUser: without $USER, the audit actor is the
// login of the user running keygate.
func TestKeysActorFromTheOSUser(t *testing.T) {
	t.Parallel()
	u, err := user.Current()
	if err != nil || u.Username == "" {
		t.Skipf("no current user: %v", err)
	}
	db := storetest.NewDatabase(t)
	r := runWithEnv(t, map[string]string{"DATABASE_URL": db}, "keys", "create", "--account", "acme", "--name", "n", "-o", "json")
	if r.code != 0 {
		t.Fatalf("create: exit %d %q", r.code, r.stderr)
	}
	var events []struct{ Actor string }
	decodeInto(t, mustRun(t, db, "keys", "events", decode[keyOut](t, r.stdout).ID, "-o", "json"), &events)
	if len(events) != 1 || events[0].Actor != "cli:"+u.Username {
		t.Fatalf("events %+v, want the actor cli:%s", events, u.Username)
	}
}

// TestCLIAndAPIAgree runs serve's admin API and the CLI on one database
// and one policy file: a scope is refused by both in the same words, and
// keys list pages through the keys as GET /v1/keys does, with the same
// filters, order (newest first) and cursors.
func TestCLIAndAPIAgree(t *testing.T) {
	t.Parallel()
	db := storetest.NewDatabase(t)
	file := filepath.Join(t.TempDir(), "policy.yaml")
	os.WriteFile(file, []byte("modules:\n  billing: {paths: [/api/v1/billing]}\n  projects: {paths: [/api/v1/projects]}\n  users: {paths: [/api/v1/users], api_keys: deny}\n"), 0o600)
	token, entry := newAdminToken(t, "--name", "ops")
	_, _, base := serveAdmin(t, db, []admin.TokenEntry{entry}, "--policy", file)
	env := map[string]string{"DATABASE_URL": db, "KEYGATE_POLICY": file, "USER": "tester"}

	for _, scope := range []string{"project:read", "users:read", "projects:admin", "*:read", "accounts:write"} {
		var prob admin.Problem
		status := adminJSON(t, "POST", base+"/v1/keys", token, map[string]any{"account_id": "acme", "name": "n", "scopes": []string{scope}}, &prob)
		if status != 400 || len(prob.Errors) != 1 || prob.Errors[0].Field != "scopes[0]" {
			t.Fatalf("API, scope %s: %d %+v", scope, status, prob)
		}
		r := runWithEnv(t, env, "keys", "create", "--account", "acme", "--name", "n", "--scope", scope)
		if want := fmt.Sprintf("--scope %q: %s", scope, prob.Errors[0].Detail); r.code != 2 || !strings.Contains(r.stderr, want) {
			t.Errorf("CLI, scope %s: exit %d %q; want the API's words %q", scope, r.code, r.stderr, want)
		}
	}

	for i := range 7 {
		name := []string{"deploy", "billing sync", "Deploy nightly"}[i%3]
		id, _ := createKey(t, db, "--name", fmt.Sprintf("%s %d", name, i), "--account", []string{"acme", "globex"}[i%2])
		if i == 3 {
			mustRun(t, db, "keys", "revoke", id)
		}
	}
	for _, q := range []struct{ api, cli []string }{
		{[]string{"limit=2"}, []string{"--limit", "2"}},
		{[]string{"status=all", "limit=2", "name=DEPLOY"}, []string{"--status", "all", "--limit", "2", "--name", "DEPLOY"}},
		{[]string{"account_id=acme", "limit=3", "status=revoked"}, []string{"--account", "acme", "--limit", "3", "--status", "revoked"}},
		{[]string{"account_id=globex", "limit=1", "name=deploy"}, []string{"--account", "globex", "--limit", "1", "--name", "deploy"}},
	} {
		apiCursor, cliCursor := "", ""
		for pages := 0; ; pages++ {
			query := strings.Join(q.api, "&")
			if apiCursor != "" {
				query += "&cursor=" + apiCursor
			}
			var page admin.KeyList
			if status := adminJSON(t, "GET", base+"/v1/keys?"+query, token, nil, &page); status != 200 {
				t.Fatalf("GET /v1/keys?%s: %d", query, status)
			}
			args := append([]string{"keys", "list", "-o", "json"}, q.cli...)
			if cliCursor != "" {
				args = append(args, "--cursor", cliCursor)
			}
			r := runWithEnv(t, env, args...)
			cliKeys := decode[[]keyOut](t, r.stdout)
			var apiIDs, cliIDs []string
			for _, k := range page.Items {
				apiIDs = append(apiIDs, k.ID)
			}
			for _, k := range cliKeys {
				cliIDs = append(cliIDs, k.ID)
			}
			if !slices.Equal(apiIDs, cliIDs) {
				t.Fatalf("%v page %d: API %v, CLI %v", q.cli, pages, apiIDs, cliIDs)
			}
			_, cliCursor, _ = strings.Cut(strings.TrimSpace(r.stderr), "--cursor ")
			if page.NextCursor == nil {
				if cliCursor != "" {
					t.Fatalf("%v page %d: the API's last page, but the CLI prints a cursor: %q", q.cli, pages, r.stderr)
				}
				break
			}
			if apiCursor = *page.NextCursor; cliCursor != apiCursor {
				t.Fatalf("%v page %d: API cursor %q, CLI %q", q.cli, pages, apiCursor, r.stderr)
			}
		}
	}
}

// TestKeysListBadInput: keys list refuses what GET /v1/keys refuses,
// naming the flag, and reads nothing.
func TestKeysListBadInput(t *testing.T) {
	t.Parallel()
	db := storetest.NewDatabase(t)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--limit", "0"}, "--limit: must be a whole number from 1 to 200"},
		{[]string{"--limit", "201"}, "--limit: must be a whole number from 1 to 200"},
		{[]string{"--cursor", "bogus"}, "--cursor: must be a next cursor"},
		{[]string{"--name", ""}, "--name: must not be empty"},
		{[]string{"--name", strings.Repeat("n", 101)}, "--name: must be valid UTF-8 of at most 100 characters"},
		{[]string{"--all", "--status", "revoked"}, "--all and --status revoked"},
		{[]string{"--status", "gone"}, "--status"},
	} {
		r := runCLI(t, db, append([]string{"keys", "list"}, c.args...)...)
		if r.code != 2 || !strings.Contains(r.stderr, c.want) {
			t.Errorf("keys list %q: exit %d %q, want 2 and %q", c.args, r.code, r.stderr, c.want)
		}
	}
}

// adminJSON sends a JSON request to the admin API and decodes the answer
// into out.
func adminJSON(t *testing.T, method, url, token string, body, out any) int {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, url, rd)
	req.Header.Set("Authorization", "Bearer "+token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		t.Fatalf("%s %s: %d, not JSON: %v", method, url, resp.StatusCode, err)
	}
	return resp.StatusCode
}
