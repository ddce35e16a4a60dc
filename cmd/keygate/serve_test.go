package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/keygate/keygate/internal/envoytest"
	"github.com/keygate/keygate/internal/pgtest"
)

// instance is `keygate serve` running in this test process, through run.
type instance struct {
	grpcAddr, httpAddr string
	stop               func() error // cancels and waits; returns run's error
	logs               *lockedBuffer
	conn               *grpc.ClientConn

	admin string // the admin listener's address, when on
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startServe runs `keygate serve` on 127.0.0.1:0 against dbURL with extra
// args, waits until it serves, and connects a real gRPC client to it.
func startServe(t *testing.T, dbURL string, args ...string) *instance {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	logs := &lockedBuffer{}
	done := make(chan error, 1)
	env := map[string]string{"DATABASE_URL": dbURL}
	all := append([]string{"serve", "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--log-format", "json"}, args...)
	go func() {
		err := run(ctx, all, func(k string) string { return env[k] }, io.Discard, io.MultiWriter(pw, logs))
		pw.CloseWithError(fmt.Errorf("run returned: %v", err))
		done <- err
	}()
	inst := &instance{logs: logs}
	scanner := bufio.NewScanner(pr)
	for scanner.Scan() {
		var line struct {
			Msg      string `json:"msg"`
			GRPCAddr string `json:"grpc_addr"`
			HTTPAddr string `json:"http_addr"`
			Admin    string `json:"admin_addr"`
		}
		ok := json.Unmarshal(scanner.Bytes(), &line) == nil
		if ok && line.Admin != "" {
			inst.admin = line.Admin
		}
		if ok && line.Msg == "keygate serving" {
			inst.grpcAddr, inst.httpAddr = line.GRPCAddr, line.HTTPAddr
			break
		}
	}
	if inst.grpcAddr == "" {
		cancel()
		t.Fatalf("serve did not start: %v\n%s", <-done, logs.String())
	}
	go io.Copy(io.Discard, pr)
	var once sync.Once
	var runErr error
	inst.stop = func() error {
		once.Do(func() { cancel(); runErr = <-done })
		return runErr
	}
	t.Cleanup(func() { inst.stop() })
	conn, err := grpc.NewClient(inst.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	inst.conn = conn
	return inst
}

func (inst *instance) check(t *testing.T, req *authv3.CheckRequest) *authv3.CheckResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := authv3.NewAuthorizationClient(inst.conn).Check(ctx, req)
	if err != nil {
		t.Fatalf("Check: gRPC error %v; keygate must answer every Check with a CheckResponse", err)
	}
	return resp
}

func (inst *instance) health(t *testing.T) healthpb.HealthCheckResponse_ServingStatus {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	resp, err := healthpb.NewHealthClient(inst.conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		return healthpb.HealthCheckResponse_UNKNOWN
	}
	return resp.GetStatus()
}

// checkRequest builds a CheckRequest as Envoy does in gRPC mode.
func checkRequest(method, path string, headers map[string]string, module string) *authv3.CheckRequest {
	var ext map[string]string
	if module != "" {
		ext = map[string]string{"module": module}
	}
	return envoytest.CheckRequest(method, path, headers, ext)
}

// createKey makes a key through the CLI and returns its id and secret.
func createKey(t *testing.T, db string, args ...string) (string, string) {
	t.Helper()
	k := decode[keyOut](t, mustRun(t, db, append([]string{"keys", "create", "--account", "acme", "--name", "t", "-o", "json"}, args...)...))
	return k.ID, *k.Secret
}

func TestServeDecisionTableEndToEnd(t *testing.T) {
	db := pgtest.NewDatabase(t)
	plainID, plain := createKey(t, db)
	readID, readOnly := createKey(t, db, "--scope", "projects:read")
	revokedID, revoked := createKey(t, db)
	mustRun(t, db, "keys", "revoke", revokedID)
	_, short := createKey(t, db, "--expires-in", "1s")
	inst := startServe(t, db)
	unknownSecret := "kg_" + strings.Repeat("A", 33)
	time.Sleep(1100 * time.Millisecond) // let the short-lived key expire

	type upstream struct {
		set    map[string]string
		remove []string
	}
	cases := []struct {
		name     string
		req      *authv3.CheckRequest
		grpc     codes.Code
		http     int
		errCode  string
		upstream *upstream
	}{
		{"no key", checkRequest("GET", "/api/v1/projects", nil, ""), codes.Unauthenticated, 401, "missing_api_key", nil},
		{"malformed", checkRequest("GET", "/api/v1/projects", map[string]string{"x-api-key": "nope"}, ""), codes.Unauthenticated, 401, "invalid_api_key", nil},
		{"bad checksum", checkRequest("GET", "/api/v1/projects", map[string]string{"x-api-key": unknownSecret}, ""), codes.Unauthenticated, 401, "invalid_api_key", nil},
		{"revoked", checkRequest("GET", "/api/v1/projects", map[string]string{"x-api-key": revoked}, ""), codes.Unauthenticated, 401, "invalid_api_key", nil},
		{"expired", checkRequest("GET", "/api/v1/projects", map[string]string{"x-api-key": short}, ""), codes.Unauthenticated, 401, "invalid_api_key", nil},
		{"several keys", checkRequest("GET", "/api/v1/projects", map[string]string{"x-api-key": plain, "authorization": "Bearer " + readOnly}, ""), codes.Unauthenticated, 401, "invalid_api_key", nil},
		{"invalid path", checkRequest("GET", "/api/v1/%2e%2e/users", map[string]string{"x-api-key": plain}, ""), codes.InvalidArgument, 400, "invalid_path", nil},
		{"restricted by path", checkRequest("GET", "/api/v1/accounts/1", map[string]string{"x-api-key": plain}, ""), codes.PermissionDenied, 403, "module_forbidden", nil},
		{"restricted by route", checkRequest("POST", "/login", map[string]string{"x-api-key": plain}, "authentication"), codes.PermissionDenied, 403, "module_forbidden", nil},
		{"insufficient scope", checkRequest("PATCH", "/api/v1/projects/1", map[string]string{"x-api-key": readOnly}, ""), codes.PermissionDenied, 403, "insufficient_scope", nil},
		{"allow x-api-key", checkRequest("GET", "/api/v1/projects/1?x=1", map[string]string{"x-api-key": plain, "x-keygate-account-id": "forged", "x-keygate-role": "admin"}, ""),
			codes.OK, 200, "", &upstream{
				set:    map[string]string{"x-keygate-key-id": plainID, "x-keygate-account-id": "acme", "x-keygate-module": "projects"},
				remove: []string{"x-api-key", "x-keygate-role", "x-keygate-scopes"},
			}},
		{"allow bearer with scopes", checkRequest("GET", "/api/v1/projects", map[string]string{"authorization": "Bearer " + readOnly}, "projects"),
			codes.OK, 200, "", &upstream{
				set:    map[string]string{"x-keygate-key-id": readID, "x-keygate-account-id": "acme", "x-keygate-module": "projects", "x-keygate-scopes": "projects:read"},
				remove: []string{"authorization"},
			}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resp := inst.check(t, c.req)
			if got := codes.Code(resp.GetStatus().GetCode()); got != c.grpc {
				t.Fatalf("status %v, want %v", got, c.grpc)
			}
			if c.upstream == nil {
				d := resp.GetDeniedResponse()
				var body struct {
					Error struct{ Code string } `json:"error"`
				}
				if int(d.GetStatus().GetCode()) != c.http || json.Unmarshal([]byte(d.GetBody()), &body) != nil || body.Error.Code != c.errCode {
					t.Fatalf("denied %d %q, want %d %s", d.GetStatus().GetCode(), d.GetBody(), c.http, c.errCode)
				}
				return
			}
			ok := resp.GetOkResponse()
			set := map[string]string{}
			for _, h := range ok.GetHeaders() {
				if h.GetAppendAction() != corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD {
					t.Errorf("%s: append action %v", h.GetHeader().GetKey(), h.GetAppendAction())
				}
				set[h.GetHeader().GetKey()] = h.GetHeader().GetValue()
			}
			if fmt.Sprint(set) != fmt.Sprint(c.upstream.set) {
				t.Errorf("upstream headers set %v, want exactly %v", set, c.upstream.set)
			}
			remove := slices.Sorted(slices.Values(ok.GetHeadersToRemove()))
			if want := slices.Sorted(slices.Values(c.upstream.remove)); !slices.Equal(remove, want) {
				t.Errorf("headers removed %v, want exactly %v", remove, want)
			}
			md := resp.GetDynamicMetadata().GetFields()
			if md["key_id"].GetStringValue() != set["x-keygate-key-id"] || md["account_id"].GetStringValue() != "acme" {
				t.Errorf("dynamic metadata %v", md)
			}
		})
	}
	if inst.health(t) != healthpb.HealthCheckResponse_SERVING {
		t.Fatal("health is not SERVING with the database up")
	}
	resp, err := http.Get("http://" + inst.httpAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !bytes.Contains(metrics, []byte(`keygate_decisions_total{code="ok",reason="allowed"} 2`)) {
		t.Fatalf("metrics do not count the two allows:\n%s", grepLines(string(metrics), "keygate_decisions_total"))
	}
	for _, s := range []string{plain, readOnly, revoked} {
		if strings.Contains(inst.logs.String(), s[3:]) || bytes.Contains(metrics, []byte(s[3:])) {
			t.Fatal("a secret appears in the logs or the metrics")
		}
	}
}

func grepLines(s, substr string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, substr) && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func TestServeDatabaseUnreachable(t *testing.T) {
	cluster := pgtest.NewCluster(t)
	db := cluster.URL()
	mustRun(t, db, "migrate")
	_, secret := createKey(t, db)
	inst := startServe(t, db, "--lookup-timeout", "100ms")
	if resp := inst.check(t, checkRequest("GET", "/api/v1/projects", map[string]string{"x-api-key": secret}, "")); resp.GetStatus().GetCode() != 0 {
		t.Fatalf("with the database up: %v", resp.GetStatus())
	}
	cluster.Stop(t)
	// A well-formed key the server has never seen needs the store: 503.
	uncached := mustWellFormed(t)
	start := time.Now()
	resp := inst.check(t, checkRequest("GET", "/api/v1/projects", map[string]string{"x-api-key": uncached}, ""))
	took := time.Since(start)
	if codes.Code(resp.GetStatus().GetCode()) != codes.Unavailable || resp.GetDeniedResponse().GetStatus().GetCode() != 503 {
		t.Fatalf("uncached key with the database down: %v, want a 503 denial", resp.GetStatus())
	}
	if took > 500*time.Millisecond {
		t.Fatalf("the 503 took %v; the lookup deadline is 100ms", took)
	}
	waitFor(t, 5*time.Second, "health NOT_SERVING", func() bool { return inst.health(t) == healthpb.HealthCheckResponse_NOT_SERVING })
	if code := httpStatus(t, "http://"+inst.httpAddr+"/readyz"); code != 503 {
		t.Fatalf("/readyz = %d with the database down, want 503", code)
	}
	if code := httpStatus(t, "http://"+inst.httpAddr+"/healthz"); code != 200 {
		t.Fatalf("/healthz = %d; liveness must not depend on the database", code)
	}
	cluster.Start(t)
	waitFor(t, 10*time.Second, "health SERVING again", func() bool { return inst.health(t) == healthpb.HealthCheckResponse_SERVING })
}

func mustWellFormed(t *testing.T) string {
	t.Helper()
	db := pgtest.NewDatabase(t)
	_, s := createKey(t, db) // a real key from another database: unknown here
	return s
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func httpStatus(t *testing.T, url string) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestServeShutdown(t *testing.T) {
	db := pgtest.NewDatabase(t)
	inst := startServe(t, db)
	waitFor(t, 5*time.Second, "SERVING", func() bool { return inst.health(t) == healthpb.HealthCheckResponse_SERVING })
	if err := inst.stop(); err != nil {
		t.Fatalf("serve returned %v on shutdown, want nil", err)
	}
	if !strings.Contains(inst.logs.String(), `"msg":"stopped"`) {
		t.Fatalf("no clean stop in the logs:\n%s", inst.logs.String())
	}
}

func TestServeRefusesBadPolicy(t *testing.T) {
	db := pgtest.NewDatabase(t)
	dir := t.TempDir()
	bad := filepath.Join(dir, "policy.yaml")
	os.WriteFile(bad, []byte("default: allow\nmodules:\n  users:\n    paths: [/api/v1/users]\n    api_keys: maybe\n"), 0o600)
	r := runCLI(t, db, "serve", "--policy", bad, "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0")
	if r.code != 2 || !strings.Contains(r.stderr, "policy.yaml:5") {
		t.Fatalf("serve with a bad policy: exit %d, stderr %q; want exit 2 naming policy.yaml:5", r.code, r.stderr)
	}
	r = runCLI(t, db, "serve", "--policy", filepath.Join(dir, "missing.yaml"), "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0")
	if r.code != 2 || !strings.Contains(r.stderr, "--policy") {
		t.Fatalf("serve with a missing policy: exit %d, stderr %q", r.code, r.stderr)
	}
}

func TestServeRefusesUnmigratedDatabase(t *testing.T) {
	db := pgtest.NewEmptyDatabase(t)
	r := runCLI(t, db, "serve", "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0")
	if r.code != 1 || !strings.Contains(r.stderr, "keygate migrate") {
		t.Fatalf("exit %d, stderr %q; want a pointer to keygate migrate", r.code, r.stderr)
	}
	inst := startServe(t, db, "--migrate")
	if inst.health(t) == healthpb.HealthCheckResponse_UNKNOWN {
		t.Fatal("serve --migrate did not come up")
	}
}

func TestServeBadFlags(t *testing.T) {
	cases := map[string][]string{
		"bad address":        {"serve", "--grpc-addr", "nonsense:address:1"},
		"bad lookup timeout": {"serve", "--lookup-timeout", "fast"},
		"zero lookup":        {"serve", "--lookup-timeout", "0s"},
		"bad key header":     {"serve", "--key-header", "x api key"},
		"bad prefix":         {"serve", "--identity-prefix", "x keygate"},
		"zero cache-fresh":   {"serve", "--cache-fresh", "0s"},
		"zero negative-ttl":  {"serve", "--negative-ttl", "0s"},
		"zero poll interval": {"serve", "--poll-interval", "0s"},
		"zero cache size":    {"serve", "--cache-size", "0"},
		"malformed policy":   {"serve", "--policy", "/nonexistent/policy.yaml"},
	}
	db := pgtest.NewDatabase(t)
	for name, args := range cases {
		t.Run(name, func(t *testing.T) {
			r := runCLI(t, db, append(args, "--http-addr", "127.0.0.1:0")...)
			if r.code != 2 {
				t.Fatalf("exit %d (%q), want 2", r.code, r.stderr)
			}
		})
	}
}

// Pool settings in the connection string (pool_max_conns…) are the pool's:
// the single connections of migrate and the change listener must not pass
// them to the server, which would refuse them.
func TestPoolSettingsInDatabaseURL(t *testing.T) {
	db := pgtest.NewEmptyDatabase(t)
	sep := "?"
	if strings.Contains(db, "?") {
		sep = "&"
	}
	db += sep + "pool_max_conns=3"
	mustRun(t, db, "migrate")
	inst := startServe(t, db)
	waitFor(t, 5*time.Second, "the change listener to connect", func() bool {
		resp, err := http.Get("http://" + inst.httpAddr + "/metrics")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return bytes.Contains(b, []byte("keygate_listener_up 1"))
	})
}
