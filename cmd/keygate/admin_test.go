package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/keygate/keygate/admin"
	"github.com/keygate/keygate/internal/storetest"
	"github.com/keygate/keygate/internal/waittest"
)

// checkDevConsole follows the console part of the dev guide: the URL
// serves the console, and the token printed once signs in.
func checkDevConsole(t *testing.T, guide string) {
	t.Helper()
	m := regexp.MustCompile(`(?s)Console \(Settings → API Keys\) and admin API:\s+(http://\S+/)\s+Admin token \(sign in with it; shown once\):\s+(kgadm_\S+)`).FindStringSubmatch(guide)
	if m == nil {
		t.Fatalf("the dev guide has no console URL and admin token:\n%s", guide)
	}
	url, token := m[1], m[2]
	if strings.Count(guide, token) != 1 {
		t.Fatal("the dev guide prints the admin token more than once")
	}
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), "API Keys") || resp.Header.Get("Content-Security-Policy") == "" {
		t.Fatalf("GET %s: %d, CSP %q", url, resp.StatusCode, resp.Header.Get("Content-Security-Policy"))
	}
	if code := adminGet(t, url+"v1/whoami", token); code != 200 {
		t.Fatalf("GET /v1/whoami with the dev token: %d", code)
	}
}

func adminGet(t *testing.T, url, token string) int {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// newAdminToken runs `keygate admin-token new -o json`.
func newAdminToken(t *testing.T, args ...string) (token string, entry admin.TokenEntry) {
	t.Helper()
	var out struct {
		Token string `json:"token"`
		admin.TokenEntry
	}
	decodeInto(t, mustRun(t, "", append([]string{"admin-token", "new", "-o", "json"}, args...)...), &out)
	return out.Token, out.TokenEntry
}

func decodeInto(t *testing.T, s string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(s), v); err != nil {
		t.Fatalf("%v:\n%s", err, s)
	}
}

func writeTokensFile(t *testing.T, path string, entries ...admin.TokenEntry) {
	t.Helper()
	var b strings.Builder
	b.WriteString("[]\n")
	if len(entries) > 0 {
		b.Reset()
	}
	for _, e := range entries {
		fmt.Fprintf(&b, "- name: %q\n  sha256: %s\n", e.Name, e.SHA256)
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestAdminTokenNew(t *testing.T) {
	t.Parallel()
	out := mustRun(t, "", "admin-token", "new", "--name", "console backend", "--account", "acme")
	m := regexp.MustCompile(`(?s)\n  (kgadm_\S+)\n.*- name: console backend\n  sha256: ([0-9a-f]{64})\n  account: acme\n$`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("admin-token new printed:\n%s", out)
	}
	path := filepath.Join(t.TempDir(), "tokens.yaml")
	os.WriteFile(path, []byte(out[strings.Index(out, "- name:"):]), 0o600)
	tokens, err := admin.LoadTokens(path)
	if err != nil || tokens.Len() != 1 {
		t.Fatalf("the printed entry does not load: %v", err)
	}
	for _, args := range [][]string{{"--name", " "}, {"--name", "n", "--account", ""}, {}, {"--name", "n", "--account", " acme"},
		{"--name", "n", "--account", "acme "}, {"--name", "n", "--account", "acme,beta"}, {"--name", "n", "--account", "  "},
		{"--name", "ops\u202e"}, {"--name", "ops\xff"}} {
		if r := runCLI(t, "", append([]string{"admin-token", "new"}, args...)...); r.code != 2 {
			t.Errorf("admin-token new %q: exit %d, want 2 (%s)", args, r.code, r.stderr)
		}
	}
}

func TestAdminPrefixIsNotAKeyPrefix(t *testing.T) {
	t.Parallel()
	db := storetest.NewDatabase(t)
	r := runCLI(t, db, "keys", "create", "--account", "a", "--name", "n", "--key-prefix", "kgadm")
	if r.code != 2 || !strings.Contains(r.stderr, "--key-prefix") {
		t.Fatalf("exit %d %q; want 2 naming --key-prefix", r.code, r.stderr)
	}
}

// TestServeAdmin runs serve with an admin tokens file: the admin listener
// serves the API with those tokens, re-reads the file on SIGHUP, keeps the
// old tokens when the new file is wrong and says where, and never logs a
// token.
func TestServeAdmin(t *testing.T) {
	t.Parallel()
	db := storetest.NewDatabase(t)
	first, firstEntry := newAdminToken(t, "--name", "first")
	second, secondEntry := newAdminToken(t, "--name", "second")
	inst, path, base := serveAdmin(t, db, []admin.TokenEntry{firstEntry})
	if code := adminGet(t, base+"/v1/keys", first); code != 200 {
		t.Fatalf("the first token: %d", code)
	}
	if code := adminGet(t, base+"/v1/keys", second); code != 401 {
		t.Fatalf("a token not yet in the file: %d", code)
	}
	writeTokensFile(t, path, firstEntry, secondEntry)
	hup(t)
	waittest.Until(t, 5*time.Second, "the reload", func() bool { return adminGet(t, base+"/v1/keys", second) == 200 })

	os.WriteFile(path, []byte("- name: broken\n  sha256: nope\n"), 0o600)
	hup(t)
	waittest.Until(t, 5*time.Second, "the reload error", func() bool { return strings.Contains(inst.logs.String(), "admin tokens not reloaded") })
	if !strings.Contains(inst.logs.String(), path+":2: sha256") {
		t.Fatalf("the reload error does not name file and line:\n%s", grepLines(inst.logs.String(), "not reloaded"))
	}
	if adminGet(t, base+"/v1/keys", first) != 200 || adminGet(t, base+"/v1/keys", second) != 200 {
		t.Fatal("a bad file at reload dropped the tokens that were valid")
	}
	writeTokensFile(t, path, secondEntry)
	hup(t)
	waittest.Until(t, 5*time.Second, "the revocation of the first token", func() bool { return adminGet(t, base+"/v1/keys", first) == 401 })
	if err := inst.stop(); err != nil {
		t.Fatalf("serve: %v", err)
	}
	for _, tok := range []string{first, second} {
		if strings.Contains(inst.logs.String(), tok) {
			t.Fatal("an admin token appears in the logs")
		}
	}
}

// TestServeAdminFailureLimit: --admin-failure-limit sets the budget of
// admin tokens that are not valid per source; over it, 429 with
// Retry-After, and the valid token still works.
func TestServeAdminFailureLimit(t *testing.T) {
	t.Parallel()
	db := storetest.NewDatabase(t)
	token, entry := newAdminToken(t, "--name", "ops")
	stranger, _ := newAdminToken(t, "--name", "stranger")
	inst, _, base := serveAdmin(t, db, []admin.TokenEntry{entry}, "--admin-failure-limit", "2/90s")
	for i, want := range []int{401, 401, 429, 429} {
		if code := adminGet(t, base+"/v1/whoami", stranger); code != want {
			t.Fatalf("attempt %d with a token not in the file: %d, want %d", i+1, code, want)
		}
	}
	req, _ := http.NewRequest("GET", base+"/v1/whoami", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") != "90" {
		t.Fatalf("no token over the budget: %d, Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	if code := adminGet(t, base+"/v1/whoami", token); code != 200 {
		t.Fatalf("the valid token over the budget: %d", code)
	}
	if err := inst.stop(); err != nil {
		t.Fatalf("serve: %v", err)
	}
}

// serveAdmin starts serve on db with the admin listener on a free port and
// a tokens file of entries, and returns it, the file and the admin API's
// base URL.
func serveAdmin(t *testing.T, db string, entries []admin.TokenEntry, args ...string) (inst *instance, tokensFile, base string) {
	t.Helper()
	tokensFile = filepath.Join(t.TempDir(), "tokens.yaml")
	writeTokensFile(t, tokensFile, entries...)
	inst = startServe(t, db, append([]string{"--admin-addr", "127.0.0.1:0", "--admin-tokens-file", tokensFile}, args...)...)
	return inst, tokensFile, "http://" + inst.adminAddr(t)
}

func (inst *instance) adminAddr(t *testing.T) string {
	t.Helper()
	if inst.admin == nil {
		t.Fatal("serve has no admin listener")
	}
	return inst.admin.String()
}

// hup sends this process SIGHUP, which serve's admin listener catches.
func hup(t *testing.T) {
	t.Helper()
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
}

func TestServeRefusesBadAdminConfig(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	bad := filepath.Join(dir, "tokens.yaml")
	os.WriteFile(bad, []byte("- name: x\n  sha256: 12\n"), 0o600)
	emptyAccount := filepath.Join(dir, "empty-account.yaml")
	os.WriteFile(emptyAccount, []byte("- name: x\n  sha256: "+strings.Repeat("ab", 32)+"\n  account: \"\"\n"), 0o600)
	good := filepath.Join(dir, "good.yaml")
	os.WriteFile(good, []byte("[]\n"), 0o600)
	// No database is reached: the configuration is checked first.
	env := map[string]string{"DATABASE_URL": "postgres://nobody@127.0.0.1:1/none?connect_timeout=1"}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--admin-tokens-file", bad}, bad + ":2:"},
		{[]string{"--admin-tokens-file", filepath.Join(dir, "missing.yaml")}, "--admin-tokens-file"},
		{[]string{"--admin-tokens-file", emptyAccount}, emptyAccount + ":3: account: must not be empty"},
		{[]string{"--admin-tokens-file", good, "--admin-failure-limit", "0/1m"}, "--admin-failure-limit: the count"},
		{[]string{"--admin-tokens-file", good, "--admin-failure-limit", "20/1ms"}, "--admin-failure-limit: the window"},
		{[]string{"--admin-tokens-file", good, "--admin-failure-limit", "often"}, "--admin-failure-limit"},
	} {
		var stderr strings.Builder
		err := run(context.Background(), append([]string{"serve", "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"}, c.args...),
			func(k string) string { return env[k] }, io.Discard, &stderr)
		if code := exitCodeTo(err, &stderr); code != 2 || !strings.Contains(stderr.String(), c.want) {
			t.Errorf("serve %q: exit %d, %q; want 2 naming %q", c.args, code, stderr.String(), c.want)
		}
	}
}

func TestServeRefusesBadAdminAddr(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "tokens.yaml")
	writeTokensFile(t, path)
	env := map[string]string{"DATABASE_URL": "postgres://nobody@127.0.0.1:1/none?connect_timeout=1"}
	var stderr strings.Builder
	err := run(context.Background(), []string{"serve", "--admin-addr", "nowhere", "--admin-tokens-file", path},
		func(k string) string { return env[k] }, io.Discard, &stderr)
	if code := exitCodeTo(err, &stderr); code != 2 || !strings.Contains(stderr.String(), "--admin-addr") {
		t.Fatalf("exit %d, %q; want 2 naming --admin-addr", code, stderr.String())
	}
	r := runCLI(t, "", "serve", "--help")
	if !strings.Contains(r.stdout, "127.0.0.1:9003") {
		t.Fatalf("serve --help does not show the admin address default:\n%s", r.stdout)
	}
}

// TestAdminTokenAddTo: --add-to writes the entry into a tokens file that
// serve accepts, creating it readable by its owner only, appends to it,
// refuses a second token of one name, never half-writes a bad file, and
// leaves an existing file's comments, mode and link as they were.
func TestAdminTokenAddTo(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "tokens.yaml")
	for _, name := range []string{"ops", "ci"} {
		if r := runWithEnv(t, nil, "admin-token", "new", "--name", name, "--add-to", file); r.code != 0 {
			t.Fatalf("admin-token new --name %s --add-to: exit %d %s", name, r.code, r.stderr)
		}
	}
	if _, err := admin.LoadTokens(file); err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(file); st.Mode().Perm() != 0o600 {
		t.Fatalf("the tokens file has mode %v, want 0600", st.Mode().Perm())
	}
	b, _ := os.ReadFile(file)
	if strings.Count(string(b), "name:") != 2 {
		t.Fatalf("the tokens file holds %q; want two entries", b)
	}
	if r := runWithEnv(t, nil, "admin-token", "new", "--name", "ci", "--add-to", file); r.code != 2 || !strings.Contains(r.stderr, `token named "ci" already`) {
		t.Fatalf("a second ci: exit %d %q", r.code, r.stderr)
	}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte("- name: x\n  sha256: nope\n"), 0o600)
	if r := runWithEnv(t, nil, "admin-token", "new", "--name", "y", "--add-to", bad); r.code != 2 {
		t.Fatalf("a bad tokens file: exit %d %q", r.code, r.stderr)
	}
	if after, _ := os.ReadFile(bad); string(after) != "- name: x\n  sha256: nope\n" {
		t.Fatalf("a bad tokens file was changed: %q", after)
	}
	// An operator's file keeps its comments, its mode and its link; a flow
	// list ([]) is written anew.
	dir := t.TempDir()
	kept := filepath.Join(dir, "kept.yaml")
	os.WriteFile(kept, append([]byte("# rotated every quarter\n"), b...), 0o640)
	link := filepath.Join(dir, "link.yaml")
	if err := os.Symlink(kept, link); err != nil {
		t.Fatal(err)
	}
	if r := runWithEnv(t, nil, "admin-token", "new", "--name", "deploy", "--add-to", link); r.code != 0 {
		t.Fatalf("--add-to a link: exit %d %s", r.code, r.stderr)
	}
	after, _ := os.ReadFile(kept)
	st, _ := os.Stat(kept)
	if lst, _ := os.Lstat(link); lst.Mode()&os.ModeSymlink == 0 || st.Mode().Perm() != 0o640 ||
		!strings.HasPrefix(string(after), "# rotated every quarter\n") || strings.Count(string(after), "name:") != 3 {
		t.Fatalf("the file behind the link: mode %v, %q (link kept: %v)", st.Mode().Perm(), after, lst.Mode()&os.ModeSymlink != 0)
	}
	if tokens, err := admin.LoadTokens(kept); err != nil || tokens.Len() != 3 {
		t.Fatalf("the appended file: %v", err)
	}
	flow := filepath.Join(dir, "flow.yaml")
	os.WriteFile(flow, []byte("[]\n"), 0o600)
	if r := runWithEnv(t, nil, "admin-token", "new", "--name", "first", "--add-to", flow); r.code != 0 {
		t.Fatalf("--add-to an empty flow list: exit %d %s", r.code, r.stderr)
	}
	if tokens, err := admin.LoadTokens(flow); err != nil || tokens.Len() != 1 {
		t.Fatalf("the flow list written anew: %v", err)
	}
}
