package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

// healthCmd asks a running keygate's gRPC health service, for exec health
// checks in images without curl or grpc_health_probe.
type healthCmd struct {
	GRPCAddr string   `name:"grpc-addr" default:"${grpc_addr}" help:"Address of keygate's gRPC listener; a host-less address means this machine."`
	Service  string   `placeholder:"NAME" help:"Health service to ask about; empty: the whole server."`
	Timeout  duration `default:"${health_timeout}" placeholder:"DURATION" help:"How long to wait for the answer."`

	TLS           bool   `name:"tls" help:"Connect with TLS (when serve runs with --tls-cert-file)."`
	TLSCAFile     string `name:"tls-ca-file" type:"existingfile" placeholder:"FILE" help:"PEM CA bundle that keygate's certificate chains to; default: the system's roots."`
	TLSServerName string `name:"tls-server-name" placeholder:"NAME" help:"Name to verify keygate's certificate against; default: the host of --grpc-addr, or localhost."`
	TLSClientCert string `name:"tls-client-cert-file" type:"existingfile" placeholder:"FILE" help:"PEM client certificate, when serve requires mutual TLS."`
	TLSClientKey  string `name:"tls-client-key-file" type:"existingfile" placeholder:"FILE" help:"PEM private key of --tls-client-cert-file."`
}

// Run prints one line, SERVING or why not, and exits 0 only when SERVING.
func (c *healthCmd) Run(e *env) error {
	if c.Timeout <= 0 {
		return usageError("--timeout: must be positive, like 2s")
	}
	addr, host, err := dialAddr(c.GRPCAddr)
	if err != nil {
		return usageError("--grpc-addr: %v", err)
	}
	creds := insecure.NewCredentials()
	if c.TLS || c.TLSCAFile != "" || c.TLSClientCert != "" {
		cfg, err := c.tlsConfig(host)
		if err != nil {
			return err
		}
		creds = credentials.NewTLS(cfg)
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		return usageError("--grpc-addr: %v", err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(e.ctx, time.Duration(c.Timeout))
	defer cancel()
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: c.Service})
	if err != nil {
		return &exitError{code: 1, err: fmt.Errorf("health check of %s failed: %s", addr, oneLine(status.Convert(err).Message()))}
	}
	if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		return &exitError{code: 1, err: fmt.Errorf("%s: %s", addr, resp.GetStatus())}
	}
	fmt.Fprintln(e.stdout, "SERVING")
	return nil
}

func (c *healthCmd) tlsConfig(host string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: c.TLSServerName}
	if cfg.ServerName == "" {
		cfg.ServerName = host
	}
	if c.TLSCAFile != "" {
		pem, err := os.ReadFile(c.TLSCAFile)
		if err != nil {
			return nil, usageError("--tls-ca-file: %v", err)
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, usageError("--tls-ca-file: %s holds no PEM certificate", c.TLSCAFile)
		}
	}
	if (c.TLSClientCert == "") != (c.TLSClientKey == "") {
		return nil, usageError("--tls-client-cert-file and --tls-client-key-file go together")
	}
	if c.TLSClientCert != "" {
		cert, err := tls.LoadX509KeyPair(c.TLSClientCert, c.TLSClientKey)
		if err != nil {
			return nil, usageError("--tls-client-cert-file: %v", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// dialAddr turns a listen address (":9001", "0.0.0.0:9001") into one to
// dial on this machine, and the host name to verify a certificate against.
func dialAddr(listen string) (addr, host string, err error) {
	h, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "", "", err
	}
	if ip := net.ParseIP(h); h == "" || (ip != nil && ip.IsUnspecified()) {
		h = "localhost"
	}
	return net.JoinHostPort(h, port), h, nil
}
