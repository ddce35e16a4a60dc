//go:build unix

package test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/pgtest"
	"github.com/keygate/keygate/internal/storetest"
	"github.com/keygate/keygate/keystore"
)

// binaries are the programs under test, built once by TestMain.
var binaries struct {
	keygate, grpcurl string
	err              error // why they could not be built
}

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "keygate-e2e-")
	if err != nil {
		binaries.err = err
	} else {
		binaries.keygate, binaries.grpcurl, binaries.err = build(dir)
	}
	code := pgtest.Run(m) // runs the tests and stops the throwaway cluster
	if dir != "" {
		os.RemoveAll(dir)
	}
	os.Exit(code)
}

// build compiles keygate and grpcurl, from the module the tests belong to,
// into dir.
func build(dir string) (keygate, grpcurl string, err error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", "", fmt.Errorf("go env GOMOD: %v", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", "", errors.New("go env GOMOD: not inside the keygate module")
	}
	for _, b := range []struct{ pkg, out string }{
		{"./cmd/keygate", filepath.Join(dir, "keygate")},
		{"github.com/fullstorydev/grpcurl/cmd/grpcurl", filepath.Join(dir, "grpcurl")},
	} {
		cmd := exec.Command("go", "build", "-o", b.out, b.pkg)
		cmd.Dir = filepath.Dir(gomod)
		if out, err := cmd.CombinedOutput(); err != nil {
			return "", "", fmt.Errorf("go build -o %s %s: %v\n%s", b.out, b.pkg, err, out)
		}
	}
	return filepath.Join(dir, "keygate"), filepath.Join(dir, "grpcurl"), nil
}

// keygateBin returns the keygate binary, failing tb if it could not be built.
func keygateBin(tb testing.TB) string {
	tb.Helper()
	if binaries.err != nil {
		tb.Fatalf("building the binaries under test failed: %v", binaries.err)
	}
	return binaries.keygate
}

// grpcurlBin returns the grpcurl binary, failing tb if it could not be built.
func grpcurlBin(tb testing.TB) string {
	tb.Helper()
	keygateBin(tb)
	return binaries.grpcurl
}

// environ is this process's environment for a keygate subprocess: no
// KEYGATE_* setting leaks in, and DATABASE_URL is dbURL.
func environ(dbURL string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "KEYGATE_") || strings.HasPrefix(kv, "DATABASE_URL=") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "DATABASE_URL="+dbURL, "USER=e2e")
}

// cli runs a keygate command against dbURL and returns its standard
// output, failing tb unless it exits 0.
func cli(tb testing.TB, dbURL string, args ...string) []byte {
	tb.Helper()
	r := run(tb, dbURL, args...)
	if r.code != 0 {
		tb.Fatalf("keygate %s: exit status %d\n%s", strings.Join(args, " "), r.code, r.stderr)
	}
	return []byte(r.stdout)
}

// result is how a keygate command ended.
type result struct {
	code           int
	stdout, stderr string
}

// run runs a keygate command against dbURL and returns its exit status
// and output, whatever the status.
func run(tb testing.TB, dbURL string, args ...string) result {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, keygateBin(tb), args...)
	cmd.Env = environ(dbURL)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	var r result
	switch {
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	case err != nil:
		tb.Fatalf("keygate %s: %v", strings.Join(args, " "), err)
	}
	r.stdout, r.stderr = stdout.String(), stderr.String()
	return r
}

// cliKey is the JSON that `keygate keys create -o json` prints.
type cliKey struct {
	ID        string     `json:"id"`
	Secret    string     `json:"secret"`
	AccountID string     `json:"account_id"`
	Scopes    []string   `json:"scopes"`
	ExpiresAt *time.Time `json:"expires_at"`
}

// createKey creates a key with `keygate keys create`; args add flags.
func createKey(tb testing.TB, dbURL, account, name string, args ...string) cliKey {
	tb.Helper()
	out := cli(tb, dbURL, append([]string{"keys", "create", "--account", account, "--name", name, "-o", "json"}, args...)...)
	var k cliKey
	if err := json.Unmarshal(out, &k); err != nil || k.ID == "" || k.Secret == "" {
		tb.Fatalf("keygate keys create -o json printed %q (%v); want an object with id and secret", out, err)
	}
	return k
}

// createExpiringKey creates a key that expires after in (negative: has
// expired), through the store: the CLI refuses lifetimes under
// keystore.MinLifetime.
func createExpiringKey(tb testing.TB, dbURL, account, name string, in time.Duration) cliKey {
	tb.Helper()
	k, secret := storetest.CreateExpiring(tb, dbURL, keystore.CreateParams{AccountID: account, Name: name}, in)
	return cliKey{ID: k.ID, Secret: secret.Reveal(), ExpiresAt: k.ExpiresAt}
}

// revokeKey revokes a key with `keygate keys revoke`.
func revokeKey(tb testing.TB, dbURL, id string) {
	tb.Helper()
	cli(tb, dbURL, "keys", "revoke", id)
}

// rotateKey rotates a key with `keygate keys rotate --grace` and returns
// the successor with its secret.
func rotateKey(tb testing.TB, dbURL, id, grace string) cliKey {
	tb.Helper()
	out := cli(tb, dbURL, "keys", "rotate", id, "--grace", grace, "-o", "json")
	var k cliKey
	if err := json.Unmarshal(out, &k); err != nil || k.ID == "" || k.Secret == "" || k.ID == id {
		tb.Fatalf("keygate keys rotate -o json printed %q (%v); want the successor's id and secret", out, err)
	}
	return k
}
