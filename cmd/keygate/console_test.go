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

// TestConsoleInBrowser drives the console in Debian's chromium with
// Playwright (test/browser/console.mjs) against a real serve: sign in
// (a wrong token refused), generate a key and read its secret, shown once,
// use it in a real Check (allowed), tag it tier=gold (the Check's dynamic
// metadata says so), disable it (refused, listed as disabled) and enable it
// again (allowed), rotate it, delete it through the confirmation dialog and
// see the next Check refused. No console errors,
// no request to another host. Screenshots of each step land in
// test/browser/screenshots/.
func TestConsoleInBrowser(t *testing.T) {
	node := needs.Program(t, "node", "apt-get install nodejs npm")
	chromium := os.Getenv("CHROMIUM")
	if chromium == "" {
		chromium = needs.Program(t, "chromium", "apt-get install chromium, or set CHROMIUM", "/usr/bin/chromium")
	}
	if _, err := os.Stat(filepath.Join(browserDir, "node_modules", "playwright-core")); err != nil {
		needs.Missing(t, "playwright-core", "npm ci in test/browser")
	}

	db := storetest.NewDatabase(t)
	token, entry, err := admin.NewToken("console test", "")
	if err != nil {
		t.Fatal(err)
	}
	wrong, _, _ := admin.NewToken("not in the file", "")
	tokens := filepath.Join(t.TempDir(), "tokens.yaml")
	writeTokensFile(t, tokens, entry)
	// Keys that make the list look like a real one.
	mustRun(t, db, "keys", "create", "--account", "acme", "--name", "staging deploys", "--description", "GitHub Actions, staging", "--scope", "projects:read", "--expires-in", "60d")
	mustRun(t, db, "keys", "create", "--account", "globex", "--name", "nightly export", "--expires-in", "3d", "--scope", "projects:read")
	old := decode[keyOut](t, mustRun(t, db, "keys", "create", "--account", "acme", "--name", "billing sync", "--no-expiry", "-o", "json"))
	mustRun(t, db, "keys", "rotate", old.ID, "--grace", "12h")

	inst := startServe(t, db, "--admin-addr", "127.0.0.1:0", "--admin-tokens-file", tokens)
	shots, err := filepath.Abs(filepath.Join(browserDir, "screenshots"))
	if err != nil {
		t.Fatal(err)
	}
	os.RemoveAll(shots)

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
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
		answer := "ok"
		switch ev.Event {
		case "allowed":
			if code := checkKey(t, inst, ev.Secret); code != codes.OK {
				answer = "the Check was " + code.String()
			}
		case "refused":
			// The revocation reaches the serving cache by notification.
			if !waittest.Within(5*time.Second, func() bool { return checkKey(t, inst, ev.Secret) == codes.Unauthenticated }) {
				answer = "the Check is still allowed"
			}
		case "metadata":
			resp := inst.check(t, checkRequest("GET", "/api/v1/projects", map[string]string{"x-api-key": ev.Secret}, ""))
			if got := resp.GetDynamicMetadata().GetFields()["meta"].GetStructValue().GetFields()["tier"].GetStringValue(); got != ev.Tier {
				answer = "the Check's dynamic metadata has tier " + strconv.Quote(got)
			}
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
