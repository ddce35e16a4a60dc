package main

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keygate/keygate/internal/storetest"
	"google.golang.org/grpc/codes"
)

// A dry run, for the whole server or for one module, through the real
// serve in gRPC and HTTP mode: denials are let through with the dry-run
// header, counted with dry_run="true", and logged.
func TestServeDryRun(t *testing.T) {
	t.Parallel()
	db := storetest.NewDatabase(t)
	_, secret := createKey(t, db, "--scope", "projects:read")
	policyFile := filepath.Join(t.TempDir(), "policy.yaml")
	os.WriteFile(policyFile, []byte(`modules:
  users: { paths: [/api/v1/users], api_keys: deny, dry_run: true }
  accounts: { paths: [/api/v1/accounts], api_keys: deny }
  projects: { paths: [/api/v1/projects] }
`), 0o600)
	cases := []struct {
		name   string
		args   []string
		path   string
		dryRun bool // let through as a dry-run denial
	}{
		{"whole server", []string{"--dry-run"}, "/api/v1/accounts/1", true},
		{"module in dry run", []string{"--policy", policyFile}, "/api/v1/users/1", true},
		{"module not in dry run", []string{"--policy", policyFile}, "/api/v1/accounts/1", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			inst := startServe(t, db, c.args...)
			resp := inst.check(t, checkRequest("GET", c.path, map[string]string{"x-api-key": secret, "x-request-id": "dry-1"}, ""))
			got := codes.Code(resp.GetStatus().GetCode())
			if c.dryRun {
				headers := map[string]string{}
				for _, h := range resp.GetOkResponse().GetHeaders() {
					headers[h.GetHeader().GetKey()] = h.GetHeader().GetValue()
				}
				if got != codes.OK || headers["x-keygate-dry-run"] != "module_forbidden" {
					t.Fatalf("gRPC: %v %v; want an allow with x-keygate-dry-run: module_forbidden", got, headers)
				}
			} else if got != codes.PermissionDenied {
				t.Fatalf("gRPC: %v, want PERMISSION_DENIED", got)
			}
			req, _ := http.NewRequest("GET", "http://"+inst.httpAddr+"/auth", nil)
			req.Header.Set("X-Forwarded-Method", "GET")
			req.Header.Set("X-Forwarded-Uri", c.path)
			req.Header.Set("X-Api-Key", secret)
			hr, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			hr.Body.Close()
			if c.dryRun && (hr.StatusCode != 200 || hr.Header.Get("X-Keygate-Dry-Run") != "module_forbidden") {
				t.Fatalf("HTTP: %d %v; want 200 with X-Keygate-Dry-Run", hr.StatusCode, hr.Header)
			}
			if !c.dryRun && hr.StatusCode != 403 {
				t.Fatalf("HTTP: %d, want 403", hr.StatusCode)
			}
			metrics := httpBody(t, "http://"+inst.httpAddr+"/metrics")
			want := `keygate_decisions_total{code="module_forbidden",dry_run="` + map[bool]string{true: "true", false: "false"}[c.dryRun] + `",reason="restricted"} 2`
			if !strings.Contains(metrics, want) {
				t.Fatalf("metrics lack %s:\n%s", want, grepLines(metrics, "module_forbidden"))
			}
			if logs := inst.logs.String(); !strings.Contains(logs, `"request_id":"dry-1"`) || !strings.Contains(logs, `"dry_run":`+map[bool]string{true: "true", false: "false"}[c.dryRun]) {
				t.Fatalf("no decision log line for the request:\n%s", logs)
			}
			if c.dryRun && !strings.Contains(inst.logs.String(), "NOT ENFORCING") {
				t.Fatal("serve did not say loudly that it is not enforcing")
			}
		})
	}
}

func httpBody(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
