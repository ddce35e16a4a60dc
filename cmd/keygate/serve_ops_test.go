package main

import (
	"context"
	"crypto/tls"
	"net/http"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"

	"github.com/keygate/keygate/internal/certtest"
	"github.com/keygate/keygate/internal/storetest"
	"github.com/keygate/keygate/internal/waittest"
)

// checkOver sends one Check over a new TLS connection and returns the
// status code and the serial number of the certificate the server showed.
func checkOver(t *testing.T, addr string, cfg *tls.Config, req *authv3.CheckRequest) (codes.Code, int64, error) {
	t.Helper()
	var serial int64
	cfg = cfg.Clone()
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		serial = cs.PeerCertificates[0].SerialNumber.Int64()
		return nil
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := authv3.NewAuthorizationClient(conn).Check(ctx, req)
	if err != nil {
		return 0, serial, err
	}
	return codes.Code(resp.GetStatus().GetCode()), serial, nil
}

func TestServeTLS(t *testing.T) {
	t.Parallel()
	db := storetest.NewDatabase(t)
	_, secret := createKey(t, db)
	req := checkRequest("GET", "/api/v1/projects", map[string]string{"x-api-key": secret}, "")
	ca := certtest.NewCA(t, "mesh")
	server := ca.Server(t, "keygate")

	t.Run("TLS, and a renewed certificate without restart", func(t *testing.T) {
		inst := startServe(t, db, "--tls-cert-file", server.CertFile, "--tls-key-file", server.KeyFile)
		code, serial, err := checkOver(t, inst.grpcAddr, ca.ClientConfig(t, nil), req)
		if err != nil || code != codes.OK || serial != server.Serial {
			t.Fatalf("Check over TLS: %v, %v, certificate %d; want OK with certificate %d", code, err, serial, server.Serial)
		}
		// The HTTP listener is TLS too.
		client := &http.Client{Transport: &http.Transport{TLSClientConfig: ca.ClientConfig(t, nil)}}
		resp, err := client.Get("https://" + inst.httpAddr + "/healthz")
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("GET https /healthz: %v, %v", resp, err)
		}
		resp.Body.Close()
		// Renew the certificate in place: new connections get it.
		renewed := ca.Server(t, "keygate")
		renewed.Install(t, server)
		waittest.Until(t, 5*time.Second, "the renewed certificate", func() bool {
			_, serial, err := checkOver(t, inst.grpcAddr, ca.ClientConfig(t, nil), req)
			return err == nil && serial == renewed.Serial
		})
		if !strings.Contains(inst.logs.String(), "TLS files reloaded") {
			t.Fatal("no log line for the reload")
		}
	})

	t.Run("mutual TLS", func(t *testing.T) {
		token, entry := newAdminToken(t, "--name", "tls")
		tokens := t.TempDir() + "/tokens.yaml"
		writeTokensFile(t, tokens, entry)
		inst := startServe(t, db, "--tls-cert-file", server.CertFile, "--tls-key-file", server.KeyFile, "--tls-client-ca-file", ca.CertFile,
			"--admin-addr", "127.0.0.1:0", "--admin-tokens-file", tokens)
		envoy := ca.Client(t, "envoy")
		// The HTTP listener: forward-auth only with a client certificate;
		// health checks and metrics (kubelet probes, Prometheus) without.
		get := func(cfg *tls.Config, url string, header map[string]string) int {
			req, _ := http.NewRequest("GET", url, nil)
			for k, v := range header {
				req.Header.Set(k, v)
			}
			resp, err := (&http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}).Do(req)
			if err != nil {
				t.Fatalf("GET %s: %v", url, err)
			}
			resp.Body.Close()
			return resp.StatusCode
		}
		auth := map[string]string{"X-Forwarded-Method": "GET", "X-Forwarded-Uri": "/api/v1/projects", "X-API-Key": secret}
		if code := get(ca.ClientConfig(t, &envoy), "https://"+inst.httpAddr+"/auth", auth); code != 200 {
			t.Fatalf("/auth with a client certificate: %d", code)
		}
		if code := get(ca.ClientConfig(t, nil), "https://"+inst.httpAddr+"/auth", auth); code != 403 {
			t.Fatalf("/auth without a client certificate: %d, want 403", code)
		}
		if code := get(ca.ClientConfig(t, nil), "https://"+inst.httpAddr+"/healthz", nil); code != 200 {
			t.Fatalf("/healthz without a client certificate: %d", code)
		}
		// The admin listener: TLS, admin tokens, no client certificate.
		if code := get(ca.ClientConfig(t, nil), "https://"+inst.adminAddr(t)+"/v1/whoami", map[string]string{"Authorization": "Bearer " + token}); code != 200 {
			t.Fatalf("the admin API over TLS: %d", code)
		}
		if code, _, err := checkOver(t, inst.grpcAddr, ca.ClientConfig(t, &envoy), req); err != nil || code != codes.OK {
			t.Fatalf("Check with a client certificate from the CA: %v, %v", code, err)
		}
		if _, _, err := checkOver(t, inst.grpcAddr, ca.ClientConfig(t, nil), req); err == nil {
			t.Fatal("a client without a certificate was answered")
		}
		stranger := certtest.NewCA(t, "other").Client(t, "stranger")
		if _, _, err := checkOver(t, inst.grpcAddr, ca.ClientConfig(t, &stranger), req); err == nil {
			t.Fatal("a client certificate from another CA was answered")
		}
		// keygate health speaks mutual TLS too (once serving: the first
		// ping of the database may still be under way).
		var r result
		waittest.Until(t, 5*time.Second, "keygate health over mutual TLS", func() bool {
			r = runCLI(t, db, "health", "--grpc-addr", inst.grpcAddr, "--tls-ca-file", ca.CertFile,
				"--tls-client-cert-file", envoy.CertFile, "--tls-client-key-file", envoy.KeyFile)
			return r.code == 0
		})
		if strings.TrimSpace(r.stdout) != "SERVING" {
			t.Fatalf("keygate health over mutual TLS: exit %d, %q %q", r.code, r.stdout, r.stderr)
		}
		if r := runCLI(t, db, "health", "--grpc-addr", inst.grpcAddr, "--tls-ca-file", ca.CertFile); r.code != 1 {
			t.Fatalf("keygate health without a client certificate: exit %d, want 1", r.code)
		}
	})
}

func TestHealthCommand(t *testing.T) {
	t.Parallel()
	db := storetest.NewDatabase(t)
	inst := startServe(t, db)
	waittest.Until(t, 5*time.Second, "SERVING", func() bool { return inst.health(t) == healthpb.HealthCheckResponse_SERVING })
	r := runCLI(t, db, "health", "--grpc-addr", inst.grpcAddr)
	if r.code != 0 || r.stdout != "SERVING\n" {
		t.Fatalf("health of a serving keygate: exit %d, %q %q", r.code, r.stdout, r.stderr)
	}
	if r := runCLI(t, db, "health", "--grpc-addr", inst.grpcAddr, "--service", "envoy.service.auth.v3.Authorization"); r.code != 0 {
		t.Fatalf("health of the Authorization service: exit %d, %q", r.code, r.stderr)
	}
	inst.stop()
	r = runCLI(t, db, "health", "--grpc-addr", inst.grpcAddr, "--timeout", "500ms")
	if r.code != 1 || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 || !strings.Contains(r.stderr, inst.grpcAddr) {
		t.Fatalf("health of a stopped keygate: exit %d, %q; want exit 1 and one line naming the address", r.code, r.stderr)
	}
	if r := runCLI(t, db, "health", "--grpc-addr", "nonsense"); r.code != 2 {
		t.Fatalf("health --grpc-addr nonsense: exit %d, want 2", r.code)
	}
}

func TestReflectionOnlyWhenAsked(t *testing.T) {
	t.Parallel()
	db := storetest.NewDatabase(t)
	list := func(inst *instance) error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		stream, err := reflectionpb.NewServerReflectionClient(inst.conn).ServerReflectionInfo(ctx)
		if err != nil {
			return err
		}
		// A failed Send says only EOF; Recv has the status.
		_ = stream.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}})
		_, err = stream.Recv()
		return err
	}
	if err := list(startServe(t, db)); status.Code(err) != codes.Unimplemented {
		t.Fatalf("reflection without --reflection: %v, want Unimplemented", err)
	}
	if err := list(startServe(t, storetest.NewDatabase(t), "--reflection")); err != nil {
		t.Fatalf("reflection with --reflection: %v", err)
	}
}

// On shutdown keygate is not ready at once, keeps answering through the
// drain, then stops.
func TestServeDrain(t *testing.T) {
	t.Parallel()
	db := storetest.NewDatabase(t)
	_, secret := createKey(t, db)
	inst := startServe(t, db, "--drain-delay", "1500ms")
	req := checkRequest("GET", "/api/v1/projects", map[string]string{"x-api-key": secret}, "")
	waittest.Until(t, 5*time.Second, "SERVING", func() bool { return inst.health(t) == healthpb.HealthCheckResponse_SERVING })
	stopped := make(chan error, 1)
	start := time.Now()
	go func() { stopped <- inst.stop() }()
	waittest.Until(t, 500*time.Millisecond, "NOT_SERVING at once", func() bool { return inst.health(t) == healthpb.HealthCheckResponse_NOT_SERVING })
	if code := httpStatus(t, "http://"+inst.httpAddr+"/readyz"); code != 503 {
		t.Fatalf("/readyz during the drain: %d, want 503", code)
	}
	answered := 0
	for time.Since(start) < time.Second {
		if resp := inst.check(t, req); resp.GetStatus().GetCode() != 0 {
			t.Fatalf("a Check during the drain was refused: %v", resp.GetStatus())
		}
		answered++
	}
	if err := <-stopped; err != nil {
		t.Fatalf("serve returned %v", err)
	}
	if took := time.Since(start); took < 1500*time.Millisecond || took > 10*time.Second {
		t.Fatalf("shutdown took %v with a 1.5s drain", took)
	}
	logs := inst.logs.String()
	if i, j := strings.Index(logs, `"msg":"shutting down"`), strings.Index(logs, `"msg":"stopped"`); i < 0 || j < i {
		t.Fatalf("no 'shutting down' before 'stopped' in the logs:\n%s", logs)
	}
	t.Logf("%d Checks answered during the drain", answered)
}
