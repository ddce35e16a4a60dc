package main

import (
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/authz/forwardauth"
	"github.com/keygate/keygate/internal/storetest"
)

// Bad forward-auth flags exit 2 naming the flag, before any I/O: the
// database here is never dialled (neverDialled).
func TestServeBadForwardAuthFlags(t *testing.T) {
	t.Parallel()
	cases := map[string]struct {
		args []string
		flag string
	}{
		"bad CIDR":                 {[]string{"--trusted-proxies", "10.0.0.0/33"}, "--trusted-proxies"},
		"host name":                {[]string{"--trusted-proxies", "127.0.0.1,proxy.internal"}, "--trusted-proxies"},
		"prefix without slash":     {[]string{"--envoy-http-prefix", "ext_authz"}, "--envoy-http-prefix"},
		"prefix with a slash last": {[]string{"--envoy-http-prefix", "/ext_authz/"}, "--envoy-http-prefix"},
		"prefix shadowing /auth":   {[]string{"--envoy-http-prefix", "/auth"}, "--envoy-http-prefix"},
		"prefix shadowing metrics": {[]string{"--envoy-http-prefix", "/metrics"}, "--envoy-http-prefix"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			r := runCLI(t, neverDialled(t), append([]string{"serve", "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"}, c.args...)...)
			if r.code != 2 || !strings.Contains(r.stderr, c.flag) {
				t.Fatalf("exit %d, stderr %q; want 2 naming %s", r.code, r.stderr, c.flag)
			}
		})
	}
}

// serve answers forward-auth on --http-addr beside health and metrics.
func TestServeForwardAuth(t *testing.T) {
	t.Parallel()
	db := storetest.NewDatabase(t)
	_, secret := createKey(t, db)
	inst := startServe(t, db, "--envoy-http-prefix", "/authz", "--trusted-proxies", "127.0.0.1/32")
	get := func(target string, headers map[string]string) (*http.Response, string) {
		t.Helper()
		req, err := http.NewRequest("GET", "http://"+inst.httpAddr+target, nil)
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range headers {
			req.Header.Set(k, v)
		}
		client := http.Client{Timeout: 5 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	key := map[string]string{"X-Api-Key": secret}
	forwarded := func(uri string) map[string]string {
		return map[string]string{"X-Api-Key": secret, "X-Forwarded-Method": "GET", "X-Forwarded-Uri": uri}
	}
	resp, body := get("/auth", forwarded("/api/v1/projects/1"))
	if resp.StatusCode != 200 || resp.Header.Get("X-Keygate-Account-Id") != "acme" || resp.Header.Get("X-Keygate-Module") != "projects" {
		t.Fatalf("/auth allow: %d %v %q", resp.StatusCode, resp.Header, body)
	}
	resp, body = get("/auth", forwarded("/api/v1/users/1"))
	if resp.StatusCode != 403 || !strings.Contains(body, `"module_forbidden"`) {
		t.Fatalf("/auth deny: %d %q", resp.StatusCode, body)
	}
	resp, body = get("/auth", key)
	if resp.StatusCode != 400 || !strings.Contains(body, `"invalid_path"`) {
		t.Fatalf("/auth without forwarded headers: %d %q", resp.StatusCode, body)
	}
	// Envoy mode on the raw target: a ServeMux in front would redirect
	// this to /authz/api/v1/users instead.
	resp, body = get("/authz/api/v1/projects/../users", key)
	if resp.StatusCode != 403 || !strings.Contains(body, `"module_forbidden"`) {
		t.Fatalf("Envoy mode, dot segments: %d %q", resp.StatusCode, body)
	}
	resp, _ = get("/authz/api/v1/projects", key)
	if resp.StatusCode != 200 || resp.Header.Get("X-Envoy-Auth-Headers-To-Remove") == "" {
		t.Fatalf("Envoy mode allow: %d %v", resp.StatusCode, resp.Header)
	}
	if resp, _ = get("/healthz", nil); resp.StatusCode != 200 {
		t.Fatalf("/healthz: %d", resp.StatusCode)
	}
	if resp, body = get("/metrics", nil); resp.StatusCode != 200 || !strings.Contains(body, `reason="forwarded_headers"`) {
		t.Fatalf("/metrics: %d, no forwarded_headers refusal counted", resp.StatusCode)
	}
}

// The server of --http-addr closes idle keep-alive connections, with
// forwardauth's timeouts (authz/forwardauth's TestServerClosesIdleConnections
// shows it doing so).
func TestHTTPServerTimeouts(t *testing.T) {
	t.Parallel()
	srv := newHTTPServer(http.NotFoundHandler(), slog.New(slog.DiscardHandler))
	if srv.IdleTimeout != forwardauth.IdleTimeout || srv.ReadHeaderTimeout != forwardauth.ReadHeaderTimeout || srv.ErrorLog == nil {
		t.Errorf("idle %v, read header %v, error log %v; want %v, %v and a logger", srv.IdleTimeout, srv.ReadHeaderTimeout, srv.ErrorLog,
			forwardauth.IdleTimeout, forwardauth.ReadHeaderTimeout)
	}
}
