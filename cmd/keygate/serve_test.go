package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
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

	"github.com/keygate/keygate/internal/certtest"
	"github.com/keygate/keygate/internal/envoytest"
	"github.com/keygate/keygate/internal/pgtest"
	"github.com/keygate/keygate/internal/readiness"
	"github.com/keygate/keygate/internal/storetest"
	"github.com/keygate/keygate/internal/syncbuffer"
	"github.com/keygate/keygate/internal/waittest"
	"github.com/keygate/keygate/keystore"
)

// instance is `keygate serve` running in this test process: the command
// line parsed as run parses it, then built and run as serveCmd.Run does.
type instance struct {
	grpcAddr, httpAddr string
	admin              net.Addr     // the admin listener's address; nil when off
	stop               func() error // cancels and waits; returns Run's error
	logs               *lockedBuffer
	conn               *grpc.ClientConn
}

// lockedBuffer holds a server's logs while tests read them.
type lockedBuffer = syncbuffer.Buffer

// startServe runs `keygate serve` on 127.0.0.1:0 against dbURL with extra
// args, and connects a real gRPC client to it.
func startServe(t *testing.T, dbURL string, args ...string) *instance {
	t.Helper()
	return startServeEnv(t, dbURL, nil, args...)
}

// startServeEnv is startServe with more environment variables. The
// listeners' addresses come from the built server; it returns once the
// server has first looked at the database (ready or not), so that the
// pool holds a connection when the test's first request arrives.
func startServeEnv(t *testing.T, dbURL string, extraEnv map[string]string, args ...string) *instance {
	t.Helper()
	vars := map[string]string{"DATABASE_URL": dbURL}
	for k, v := range extraEnv {
		vars[k] = v
	}
	getenv := func(k string) string { return vars[k] }
	logs := &lockedBuffer{}
	// A lookup deadline that the whole suite under -race on two cores still
	// meets (the default, 100ms, is not always); tests of the deadline pass
	// their own, which comes later and wins.
	all := append([]string{"serve", "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--log-format", "json", "--drain-delay", "0s", "--lookup-timeout", "2s"}, args...)
	var c cli
	if _, err := parse(&c, all, getenv, io.Discard, logs); err != nil {
		t.Fatalf("keygate %s: %v", strings.Join(all, " "), err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := c.Serve.server(&env{ctx: ctx, getenv: getenv, stdout: io.Discard, stderr: logs})
	if err != nil {
		cancel()
		t.Fatalf("serve did not start: %v\n%s", err, logs.String())
	}
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	inst := &instance{grpcAddr: srv.grpcAddr().String(), httpAddr: srv.httpAddr().String(), admin: srv.adminAddr(), logs: logs}
	var once sync.Once
	var runErr error
	inst.stop = func() error {
		once.Do(func() {
			cancel()
			runErr = <-done
			srv.Close()
		})
		return runErr
	}
	t.Cleanup(func() { inst.stop() })
	waittest.Until(t, 10*time.Second, "serve's first look at the database", func() bool {
		_, reason := srv.ready.Ready()
		return reason != readiness.Starting
	})
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
	t.Parallel()
	db := storetest.NewDatabase(t)
	plainID, plain := createKey(t, db)
	readID, readOnly := createKey(t, db, "--scope", "projects:read")
	revokedID, revoked := createKey(t, db)
	mustRun(t, db, "keys", "revoke", revokedID)
	_, expired := storetest.CreateExpiring(t, db, keystore.CreateParams{AccountID: "acme", Name: "t"}, -time.Second)
	short := expired.Reveal()
	inst := startServe(t, db)
	unknownSecret := "kg_" + strings.Repeat("A", 33)

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
	waittest.Until(t, 5*time.Second, "health to be SERVING with the database up", func() bool {
		return inst.health(t) == healthpb.HealthCheckResponse_SERVING
	})
	resp, err := http.Get("http://" + inst.httpAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !bytes.Contains(metrics, []byte(`keygate_decisions_total{code="ok",dry_run="false",reason="allowed"} 2`)) {
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
	t.Parallel()
	cluster := pgtest.NewCluster(t)
	db := cluster.URL()
	mustRun(t, db, "migrate")
	_, secret := createKey(t, db)
	inst := startServe(t, db, "--lookup-timeout", "100ms")
	// SERVING: the pool has a connection, and a lookup needs no new one
	// within the 100ms deadline (on a loaded machine a first connection
	// can take longer).
	waittest.Until(t, 10*time.Second, "SERVING", func() bool { return inst.health(t) == healthpb.HealthCheckResponse_SERVING })
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
	waittest.Until(t, 5*time.Second, "health NOT_SERVING", func() bool { return inst.health(t) == healthpb.HealthCheckResponse_NOT_SERVING })
	if code := httpStatus(t, "http://"+inst.httpAddr+"/readyz"); code != 503 {
		t.Fatalf("/readyz = %d with the database down, want 503", code)
	}
	if code := httpStatus(t, "http://"+inst.httpAddr+"/healthz"); code != 200 {
		t.Fatalf("/healthz = %d; liveness must not depend on the database", code)
	}
	cluster.Start(t)
	waittest.Until(t, 10*time.Second, "health SERVING again", func() bool { return inst.health(t) == healthpb.HealthCheckResponse_SERVING })
}

func mustWellFormed(t *testing.T) string {
	t.Helper()
	db := storetest.NewDatabase(t)
	_, s := createKey(t, db) // a real key from another database: unknown here
	return s
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
	t.Parallel()
	db := storetest.NewDatabase(t)
	inst := startServe(t, db)
	waittest.Until(t, 5*time.Second, "SERVING", func() bool { return inst.health(t) == healthpb.HealthCheckResponse_SERVING })
	if err := inst.stop(); err != nil {
		t.Fatalf("serve returned %v on shutdown, want nil", err)
	}
	if !strings.Contains(inst.logs.String(), `"msg":"stopped"`) {
		t.Fatalf("no clean stop in the logs:\n%s", inst.logs.String())
	}
}

func TestServeRefusesBadPolicy(t *testing.T) {
	t.Parallel()
	db := storetest.NewDatabase(t)
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

// A replica that starts before the migration job has run waits, not
// ready and saying why, and never migrates by itself; once the schema is
// there it serves.
func TestServeWaitsForSchema(t *testing.T) {
	t.Parallel()
	db := pgtest.NewEmptyDatabase(t)
	inst := startServe(t, db)
	waittest.Until(t, 5*time.Second, "a log line about the missing schema", func() bool {
		return strings.Contains(inst.logs.String(), "waiting for the database schema")
	})
	if got := inst.health(t); got != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("health %v before the schema exists, want NOT_SERVING", got)
	}
	resp, err := http.Get("http://" + inst.httpAddr + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 503 || !strings.Contains(string(body), "schema not migrated") {
		t.Fatalf("/readyz = %d %q, want 503 saying the schema is not migrated", resp.StatusCode, body)
	}
	if !strings.Contains(inst.logs.String(), " on 127.0.0.1:") {
		t.Fatalf("the log does not say which database it reached:\n%s", inst.logs.String())
	}
	if r := runCLI(t, db, "keys", "list"); r.code != 1 || !strings.Contains(r.stderr, "keygate migrate") {
		t.Fatalf("serve migrated by itself, or keys list does not point at migrate: exit %d, %q", r.code, r.stderr)
	}
	mustRun(t, db, "migrate")
	_, secret := createKey(t, db)
	waittest.Until(t, 10*time.Second, "SERVING once migrated", func() bool { return inst.health(t) == healthpb.HealthCheckResponse_SERVING })
	if resp := inst.check(t, checkRequest("GET", "/api/v1/projects", map[string]string{"x-api-key": secret}, "")); resp.GetStatus().GetCode() != 0 {
		t.Fatalf("a key after the migration: %v", resp.GetStatus())
	}

	// --migrate migrates.
	fresh := pgtest.NewEmptyDatabase(t)
	migrated := startServe(t, fresh, "--migrate")
	waittest.Until(t, 10*time.Second, "serve --migrate SERVING", func() bool { return migrated.health(t) == healthpb.HealthCheckResponse_SERVING })
}

func TestServeBadFlags(t *testing.T) {
	t.Parallel()
	ca := certtest.NewCA(t, "test")
	pair := ca.Server(t, "keygate")
	cases := []struct {
		name string
		args []string
		flag string // the flag the one-line error names
	}{
		{"bad address", []string{"--grpc-addr", "nonsense:address:1"}, "--grpc-addr"},
		{"bad lookup timeout", []string{"--lookup-timeout", "fast"}, "--lookup-timeout"},
		{"zero lookup", []string{"--lookup-timeout", "0s"}, "--lookup-timeout"},
		{"bad key header", []string{"--key-header", "x api key"}, "--key-header"},
		{"key header twice", []string{"--key-header", "x-api-key,X-API-Key"}, "--key-header"},
		{"bad prefix", []string{"--identity-prefix", "x keygate"}, "--identity-prefix"},
		{"zero cache-fresh", []string{"--cache-fresh", "0s"}, "--cache-fresh"},
		{"zero negative-ttl", []string{"--negative-ttl", "0s"}, "--negative-ttl"},
		{"zero poll interval", []string{"--poll-interval", "0s"}, "--poll-interval"},
		{"zero cache size", []string{"--cache-size", "0"}, "--cache-size"},
		{"negative drain delay", []string{"--drain-delay", "-1s"}, "--drain-delay"},
		{"zero shutdown timeout", []string{"--shutdown-timeout", "0s"}, "--shutdown-timeout"},
		{"malformed policy", []string{"--policy", "/nonexistent/policy.yaml"}, "--policy"},
		{"certificate without key", []string{"--tls-cert-file", pair.CertFile}, "--tls-cert-file"},
		{"client CA without certificate", []string{"--tls-client-ca-file", ca.CertFile}, "--tls-client-ca-file"},
		{"key of no certificate", []string{"--tls-cert-file", pair.CertFile, "--tls-key-file", ca.CertFile}, "--tls-cert-file"},
		{"bad read URL", []string{"--database-read-url", "postgres://standby:notaport/keygate"}, "--database-read-url"},
		{"bad listen URL", []string{"--database-listen-url", "postgres://primary:notaport/keygate"}, "--database-listen-url"},
		{"zero read lag", []string{"--database-read-max-lag", "0s"}, "--database-read-max-lag"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			// Bad flags are found before any I/O: even with --migrate,
			// nothing is written.
			db := pgtest.NewEmptyDatabase(t)
			r := runCLI(t, db, append([]string{"serve", "--migrate", "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"}, c.args...)...)
			if r.code != 2 || !strings.Contains(r.stderr, c.flag) {
				t.Fatalf("exit %d (%q), want 2 naming %s", r.code, r.stderr, c.flag)
			}
			if lines := strings.Split(strings.TrimSpace(r.stderr), "\n"); !strings.HasPrefix(lines[len(lines)-1], "keygate: ") || strings.Count(lines[len(lines)-1], "keygate:") != 1 {
				t.Fatalf("the error is not one line with one prefix: %q", r.stderr)
			}
			if r := runCLI(t, db, "keys", "list"); !strings.Contains(r.stderr, "no keygate schema") {
				t.Fatalf("serve --migrate with a bad flag migrated the database (keys list: %q)", r.stderr)
			}
		})
	}
}

// Pool settings in the connection string (pool_max_conns…) are the pool's:
// the single connections of migrate and the change listener must not pass
// them to the server, which would refuse them.
func TestPoolSettingsInDatabaseURL(t *testing.T) {
	t.Parallel()
	db := pgtest.NewEmptyDatabase(t)
	sep := "?"
	if strings.Contains(db, "?") {
		sep = "&"
	}
	db += sep + "pool_max_conns=3"
	mustRun(t, db, "migrate")
	inst := startServe(t, db)
	waittest.Until(t, 5*time.Second, "the change listener to connect", func() bool {
		resp, err := http.Get("http://" + inst.httpAddr + "/metrics")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return bytes.Contains(b, []byte("keygate_listener_up 1"))
	})
}
