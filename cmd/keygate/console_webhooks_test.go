package main

import (
	"bufio"
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keygate/keygate/admin"
	"github.com/keygate/keygate/internal/storetest"
	"github.com/keygate/keygate/internal/waittest"
)

// TestConsoleWebhooksInBrowser drives the console's Webhooks page in
// Debian's chromium (test/browser/webhooks.mjs): a key within the longest
// expiry lead time is marked, an endpoint is added (its secret shown once),
// a key created afterwards shows in its delivery log, and is redelivered.
func TestConsoleWebhooksInBrowser(t *testing.T) {
	t.Parallel()
	node, chromium := browserTools(t)
	var received atomic.Int64
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { received.Add(1) }))
	t.Cleanup(receiver.Close)
	db := storetest.NewDatabase(t)
	token, entry, err := admin.NewToken("console test", "")
	if err != nil {
		t.Fatal(err)
	}
	tokens := filepath.Join(t.TempDir(), "tokens.yaml")
	writeTokensFile(t, tokens, entry)
	mustRun(t, db, "keys", "create", "--account", "acme", "--name", "renew me", "--expires-in", "10d")
	inst := startServe(t, db, "--admin-addr", "127.0.0.1:0", "--admin-tokens-file", tokens)
	shots, _ := filepath.Abs(filepath.Join(browserDir, "screenshots"))
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "webhooks.mjs")
	cmd.Dir = browserDir
	cmd.Env = append(os.Environ(), "CONSOLE_URL=http://"+inst.adminAddr(t)+"/", "ADMIN_TOKEN="+token.Reveal(),
		"RECEIVER_URL="+receiver.URL+"/hook", "SCREENSHOT_DIR="+shots, "CHROMIUM="+chromium)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := bufio.NewScanner(stdout)
	if !lines.Scan() || lines.Text() != "endpoint added" {
		cmd.Wait()
		t.Fatalf("webhooks.mjs: %q\n%s", lines.Text(), stderr.String())
	}
	mustRun(t, db, "keys", "create", "--account", "acme", "--name", "after the endpoint")
	waittest.Until(t, 10*time.Second, "the delivery", func() bool { return received.Load() >= 1 })
	stdin.Write([]byte("go\n"))
	done := lines.Scan() && lines.Text() == "done"
	if err := cmd.Wait(); err != nil || !done {
		t.Fatalf("webhooks.mjs: %v (done: %v)\n%s", err, done, stderr.String())
	}
	waittest.Until(t, 10*time.Second, "the redelivery", func() bool { return received.Load() >= 2 })
}
