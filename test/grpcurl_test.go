//go:build unix

package test

import (
	"bytes"
	"context"
	"encoding/json"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/keygate/keygate/internal/storetest"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/encoding/protojson"
)

// TestGrpcurlSmoke is the CI smoke test: a migrated database, a key from
// the CLI, a server, and the stock grpcurl client finding every type
// through server reflection.
func TestGrpcurlSmoke(t *testing.T) {
	db := storetest.NewEmptyDatabase(t)
	cli(t, db, "migrate")
	key := createKey(t, db, "acme", "ci smoke")
	srv := startServer(t, db, "--reflection")

	// Allowed: an ok_response carrying the key's identity upstream.
	out, took := grpcurlCheck(t, srv.grpcAddr, keyCheck(key.Secret, "/api/v1/projects/42"))
	t.Logf("grpcurl Check (allow) took %v", took)
	var top map[string]json.RawMessage
	if err := json.Unmarshal(out, &top); err != nil {
		t.Fatalf("grpcurl printed no JSON object: %v\n%s", err, out)
	}
	if _, ok := top["okResponse"]; !ok {
		t.Fatalf("grpcurl output has no okResponse:\n%s", out)
	}
	resp := parseCheckResponse(t, out)
	if got := codes.Code(resp.GetStatus().GetCode()); got != codes.OK {
		t.Fatalf("status %v, want OK:\n%s", got, out)
	}
	up := upstreamHeaders(resp)
	if got, want := up["x-keygate-key-id"], key.ID; got != want {
		t.Errorf("x-keygate-key-id = %q, want %q:\n%s", got, want, out)
	}
	if got, want := up["x-keygate-account-id"], "acme"; got != want {
		t.Errorf("x-keygate-account-id = %q, want %q", got, want)
	}
	if !slices.Contains(resp.GetOkResponse().GetHeadersToRemove(), "x-api-key") {
		t.Errorf("headers to remove %v do not strip x-api-key", resp.GetOkResponse().GetHeadersToRemove())
	}

	// Denied: the Users module is closed to API keys.
	out, took = grpcurlCheck(t, srv.grpcAddr, keyCheck(key.Secret, "/api/v1/users/1"))
	t.Logf("grpcurl Check (deny) took %v", took)
	resp = parseCheckResponse(t, out)
	if got := codes.Code(resp.GetStatus().GetCode()); got != codes.PermissionDenied {
		t.Fatalf("status %v, want code 7 (PermissionDenied):\n%s", got, out)
	}
	if got := resp.GetDeniedResponse().GetStatus().GetCode(); got != 403 {
		t.Errorf("denied HTTP status %d, want 403", got)
	}
	if got := errorCode(resp); got != "module_forbidden" || !bytes.Contains(out, []byte("module_forbidden")) {
		t.Errorf("error.code %q, want module_forbidden in grpcurl's output:\n%s", got, out)
	}

	// Reflection lists the services.
	list := string(grpcurl(t, "-plaintext", srv.grpcAddr, "list"))
	services := strings.Fields(list)
	for _, want := range []string{"envoy.service.auth.v3.Authorization", "grpc.health.v1.Health"} {
		if !slices.Contains(services, want) {
			t.Errorf("grpcurl list = %q, missing %s", services, want)
		}
	}

	// Health.
	out = grpcurl(t, "-plaintext", "-d", `{"service":""}`, srv.grpcAddr, "grpc.health.v1.Health/Check")
	var health struct {
		Status string `json:"status"`
	}
	if err := json.Unmarshal(out, &health); err != nil || health.Status != "SERVING" {
		t.Errorf("grpc.health.v1.Health/Check printed %s, want status SERVING", out)
	}
}

// grpcurl runs the grpcurl binary and returns its standard output.
func grpcurl(tb testing.TB, args ...string) []byte {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, grpcurlBin(tb), append([]string{"-max-time", "10"}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		tb.Fatalf("grpcurl %s: %v\nstdout: %s\nstderr: %s", strings.Join(args, " "), err, stdout.Bytes(), stderr.Bytes())
	}
	return stdout.Bytes()
}

// grpcurlCheck sends req, as JSON, to Authorization/Check with grpcurl.
func grpcurlCheck(tb testing.TB, addr string, req *authv3.CheckRequest) ([]byte, time.Duration) {
	tb.Helper()
	body, err := protojson.Marshal(req)
	if err != nil {
		tb.Fatal(err)
	}
	start := time.Now()
	out := grpcurl(tb, "-plaintext", "-d", string(body), addr, "envoy.service.auth.v3.Authorization/Check")
	return out, time.Since(start)
}

// parseCheckResponse reads grpcurl's JSON rendering of a CheckResponse.
func parseCheckResponse(tb testing.TB, out []byte) *authv3.CheckResponse {
	tb.Helper()
	var resp authv3.CheckResponse
	if err := protojson.Unmarshal(out, &resp); err != nil {
		tb.Fatalf("grpcurl output is not a CheckResponse: %v\n%s", err, out)
	}
	return &resp
}
