package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/keygate/keygate/admin"
	"github.com/keygate/keygate/internal/needs"
	"github.com/keygate/keygate/internal/storetest"
	"github.com/keygate/keygate/internal/waittest"
)

// browserDir holds the Playwright script and its package-lock.json.
const browserDir = "../../test/browser"

// longKeyName is a name of the longest kind (100 characters).
const longKeyName = "Nightly export of invoices, payments, refunds and disputes to the finance warehouse (EU-West region)"

// browserTools returns Node.js and Debian's chromium, and checks that
// playwright-core is installed in test/browser: the browser tests skip
// without them (fail in CI, internal/needs).
func browserTools(t *testing.T) (node, chromium string) {
	t.Helper()
	node = needs.Program(t, "node", "apt-get install nodejs npm")
	chromium = os.Getenv("CHROMIUM")
	if chromium == "" {
		chromium = needs.Program(t, "chromium", "apt-get install chromium, or set CHROMIUM", "/usr/bin/chromium")
	}
	if _, err := os.Stat(filepath.Join(browserDir, "node_modules", "playwright-core")); err != nil {
		needs.Missing(t, "playwright-core", "npm ci in test/browser")
	}
	return node, chromium
}

// TestConsoleInBrowser drives the console in Debian's chromium with
// Playwright (test/browser/console.mjs) against a real serve: sign in
// (a wrong token refused); at 1024, 1280 and 1440 px wide, with used keys,
// a long name and many scopes, every row action is inside the viewport
// and nothing scrolls sideways; relative expiry ("tomorrow"); search by
// name, with an older answer arriving last never shown; generate a key and
// read its secret, shown once, use it in a real Check (allowed); edit its
// scopes (a write is then refused), expiry and metadata (the Check's
// dynamic metadata says so); read its history; disable it (refused,
// listed as disabled) and enable it again (allowed), rotate it with a new
// expiry, delete it through the confirmation dialog and see the next
// Check refused. No console errors, no request to another host.
// Screenshots of each step land in test/browser/screenshots/.
func TestConsoleInBrowser(t *testing.T) {
	t.Parallel()
	node, chromium := browserTools(t)

	db := storetest.NewDatabase(t)
	token, entry, err := admin.NewToken("console test", "")
	if err != nil {
		t.Fatal(err)
	}
	wrong, _, _ := admin.NewToken("not in the file", "")
	tokens := filepath.Join(t.TempDir(), "tokens.yaml")
	writeTokensFile(t, tokens, entry)
	// Keys that make the list look like a real one: used ones, a long name
	// and account, many scopes, one expiring tomorrow.
	create := func(args ...string) keyOut {
		t.Helper()
		return decode[keyOut](t, mustRun(t, db, append([]string{"keys", "create", "-o", "json"}, args...)...))
	}
	used := []keyOut{
		create("--account", "acme", "--name", "staging deploys", "--description", "GitHub Actions, staging", "--scope", "projects:read", "--expires-in", "60d"),
		create("--account", "org:0193c7a2-5d6e-7f00-8a1b-2c3d4e5f6a7b", "--name", longKeyName,
			"--description", "Reads every project and deployment, writes reports; owned by the data platform team (ticket DATA-1234)",
			"--scope", "projects:read", "--scope", "projects:write", "--scope", "deployments:read", "--scope", "deployments:write",
			"--scope", "projects:*", "--scope", "deployments:*", "--scope", "*", "--expires-in", "200d", "--meta", "tier=gold"),
		create("--account", "globex", "--name", "release tomorrow", "--expires-in", "1d", "--scope", "projects:read", "--scope", "deployments:write"),
	}
	create("--account", "globex", "--name", "nightly export", "--expires-in", "3d", "--scope", "projects:read")
	old := create("--account", "acme", "--name", "billing sync", "--no-expiry")
	mustRun(t, db, "keys", "rotate", old.ID, "--grace", "12h")

	inst := startServe(t, db, "--admin-addr", "127.0.0.1:0", "--admin-tokens-file", tokens, "--last-used-interval", "100ms")
	for _, k := range used {
		checkKey(t, inst, *k.Secret)
		waittest.Until(t, 5*time.Second, "the last use of "+k.Name+" to be written", func() bool {
			return decode[keyOut](t, mustRun(t, db, "keys", "show", k.ID, "-o", "json")).LastUsedAt != nil
		})
	}
	shots, err := filepath.Abs(filepath.Join(browserDir, "screenshots"))
	if err != nil {
		t.Fatal(err)
	}
	os.RemoveAll(shots)

	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "console.mjs")
	cmd.Dir = browserDir
	cmd.Env = append(os.Environ(), "CONSOLE_URL=http://"+inst.adminAddr(t)+"/", "ADMIN_TOKEN="+token.Reveal(),
		"WRONG_ADMIN_TOKEN="+wrong.Reveal(), "SCREENSHOT_DIR="+shots, "CHROMIUM="+chromium)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := false
	scanner := bufio.NewScanner(stdout)
	for scanner.Scan() {
		var ev struct{ Event, Secret, Tier string }
		if err := json.Unmarshal(scanner.Bytes(), &ev); err != nil {
			t.Errorf("console.mjs printed %q", scanner.Text())
			continue
		}
		// Each change the browser made reaches the serving cache by
		// notification, within the propagation bound: the Check is asked
		// until it answers as expected, for up to 5 s.
		answer := "ok"
		expect := func(check func() (ok bool, got string)) {
			var got string
			if !waittest.Within(5*time.Second, func() (ok bool) { ok, got = check(); return ok }) {
				answer = got
			}
		}
		switch ev.Event {
		case "allowed", "refused":
			want := map[string]codes.Code{"allowed": codes.OK, "refused": codes.Unauthenticated}[ev.Event]
			expect(func() (bool, string) {
				code := checkKey(t, inst, ev.Secret)
				return code == want, "the Check was " + code.String()
			})
		case "write-denied":
			// A scope removed in the Edit dialog: writing is refused.
			expect(func() (bool, string) {
				resp := inst.check(t, checkRequest("POST", "/api/v1/projects", map[string]string{"x-api-key": ev.Secret}, ""))
				code := codes.Code(resp.GetStatus().GetCode())
				return code == codes.PermissionDenied, "a write with the narrowed key was " + code.String()
			})
		case "metadata":
			expect(func() (bool, string) {
				resp := inst.check(t, checkRequest("GET", "/api/v1/projects", map[string]string{"x-api-key": ev.Secret}, ""))
				got := resp.GetDynamicMetadata().GetFields()["meta"].GetStructValue().GetFields()["tier"].GetStringValue()
				return got == ev.Tier, "the Check's dynamic metadata has tier " + strconv.Quote(got)
			})
		case "done":
			done = true
			continue
		default:
			answer = "unknown event " + ev.Event
		}
		if answer != "ok" {
			t.Errorf("%s: %s", ev.Event, answer)
		}
		if _, err := stdin.Write([]byte(answer + "\n")); err != nil {
			t.Errorf("answering console.mjs: %v", err)
		}
	}
	err = cmd.Wait()
	t.Logf("browser test: %v, screenshots in %s", time.Since(start).Round(100*time.Millisecond), shots)
	if err != nil || !done {
		t.Fatalf("console.mjs: %v (done: %v)\n%s", err, done, stderr.String())
	}
	if strings.Contains(inst.logs.String(), token.Reveal()) {
		t.Fatal("the admin token appears in serve's logs")
	}
}

// checkKey makes a real ext_authz Check with secret on an open module.
func checkKey(t *testing.T, inst *instance, secret string) codes.Code {
	t.Helper()
	resp := inst.check(t, checkRequest("GET", "/api/v1/projects/7", map[string]string{"x-api-key": secret}, ""))
	return codes.Code(resp.GetStatus().GetCode())
}
