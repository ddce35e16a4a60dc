package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/keygate/keygate/authz/forwardauth"
)

// httpBaselineKind is the forward-auth mode's reference server: an empty
// net/http handler that answers 200, on the same kind of listener as
// keygate's --http-addr.
const httpBaselineKind = "http-baseline-server"

// runHTTPBaseline serves the empty handler until ctx ends.
func runHTTPBaseline(ctx context.Context, addr string, stdout io.Writer) error {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	// keygate's HTTP server settings (cmd/keygate serve).
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })}
	errs := make(chan error, 1)
	go func() { errs <- srv.Serve(lis) }()
	if err := json.NewEncoder(stdout).Encode(readyLine{Addr: lis.Addr().String(), GC: readGCInfo()}); err != nil {
		return err
	}
	select {
	case <-ctx.Done():
	case err := <-errs:
		return err
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return srv.Shutdown(shutdownCtx)
}

// loadTarget is a server as the load generator drives it.
type loadTarget interface {
	// each sends every request once with n workers, checking the answers.
	each(ctx context.Context, n int, timeout time.Duration) error
	// run is one closed-loop run of conc workers (see runLoad).
	run(ctx context.Context, conc int, timeout time.Duration, t0, t1 time.Time, mark func(end bool)) sample
	close()
}

// grpcLoad is a gRPC target with its CheckRequests.
type grpcLoad struct {
	t    *target
	reqs []*authv3.CheckRequest
}

func (g grpcLoad) each(ctx context.Context, n int, timeout time.Duration) error {
	return g.t.each(ctx, g.reqs, n, timeout)
}

// run uses min(conc, the target's) connections.
func (g grpcLoad) run(ctx context.Context, conc int, timeout time.Duration, t0, t1 time.Time, mark func(end bool)) sample {
	n := min(conc, len(g.t.clients))
	t := &target{clients: g.t.clients[:n], verify: g.t.verify}
	return t.load(ctx, g.reqs, conc, timeout, t0, t1, mark)
}

func (g grpcLoad) close() { g.t.close() }

// httpTarget is a forward-auth endpoint, or the empty handler it is
// compared with, asked as Caddy or nginx asks it: GET /auth with the
// forwarded method and URI and the client's headers, each worker over a
// keep-alive HTTP/1.1 connection of its own.
type httpTarget struct {
	client  *http.Client
	reqs    []*http.Request // one per key
	keygate bool            // the answer must carry the identity headers
}

// newHTTPTarget asks http://addr/auth with one request per secret over
// at most conns connections.
func newHTTPTarget(addr string, secrets []string, conns int, keygate bool) (*httpTarget, error) {
	t := &httpTarget{keygate: keygate, client: &http.Client{Transport: &http.Transport{
		MaxIdleConns: conns, MaxIdleConnsPerHost: conns, MaxConnsPerHost: conns,
		DisableCompression: true, IdleConnTimeout: time.Minute,
	}}}
	for _, sec := range secrets {
		req, err := http.NewRequest(http.MethodGet, "http://"+addr+forwardauth.AuthPath, nil)
		if err != nil {
			return nil, err
		}
		// What Caddy's forward_auth sends for a client's GET benchPath.
		for k, v := range map[string]string{
			"X-Forwarded-Method": "GET", "X-Forwarded-Uri": benchPath, "X-Forwarded-For": "203.0.113.9",
			"X-Forwarded-Proto": "https", "X-Forwarded-Host": "api.example.com", "User-Agent": "curl/8.5.0",
			"Accept": "*/*", "X-Request-Id": "8c1f0e9c-63f5-4c1b-9f1a-2d8a1b6f3e77", "X-Api-Key": sec,
		} {
			req.Header.Set(k, v)
		}
		t.reqs = append(t.reqs, req)
	}
	return t, nil
}

func (t *httpTarget) call(ctx context.Context, _, i int) error {
	resp, err := t.client.Do(t.reqs[i].WithContext(ctx))
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	switch {
	case resp.StatusCode != http.StatusOK:
		return fmt.Errorf("denied: HTTP %d", resp.StatusCode)
	case t.keygate && resp.Header.Get("X-Keygate-Key-Id") == "":
		return errors.New("200 without identity headers")
	}
	return nil
}

func (t *httpTarget) each(ctx context.Context, n int, timeout time.Duration) error {
	return eachRequest(ctx, t, len(t.reqs), n, timeout)
}

func (t *httpTarget) run(ctx context.Context, conc int, timeout time.Duration, t0, t1 time.Time, mark func(end bool)) sample {
	return runLoad(ctx, t, len(t.reqs), conc, timeout, t0, t1, mark)
}

func (t *httpTarget) close() { t.client.CloseIdleConnections() }
