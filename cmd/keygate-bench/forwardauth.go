package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/keygate/keygate/authz/forwardauth"
)

// httpBaselineKind is the forward-auth mode's reference server: an empty
// net/http handler that answers 200, on a listener with the settings of
// keygate's --http-addr (forwardauth.NewServer).
const httpBaselineKind = "http-baseline-server"

// identityFields are the fields of keygate's /auth allow for a key
// without scopes, limits or metadata under the example policy (each
// checks that keygate's answers have these): what --http-reference
// identity answers.
var identityFields = [][2]string{
	{"Content-Length", "0"}, {"Ratelimit", ""}, {"Ratelimit-Policy", ""},
	{"X-Keygate-Account-Id", "keygate-bench"}, {"X-Keygate-Dry-Run", ""},
	{"X-Keygate-Key-Id", identityKeyID}, {"X-Keygate-Module", "projects"},
	{"X-Keygate-Scopes", ""},
}

// runHTTPBaseline serves the reference handler until ctx ends: empty, or
// answering with identityFields.
func runHTTPBaseline(ctx context.Context, addr string, identity bool, stdout io.Writer) error {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	handler := func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) }
	if identity {
		handler = func(w http.ResponseWriter, _ *http.Request) {
			h := w.Header()
			for _, f := range identityFields {
				h[f[0]] = []string{f[1]}
			}
			w.WriteHeader(http.StatusOK)
		}
	}
	// keygate's HTTP listener settings (cmd/keygate serve): its header
	// and idle keep-alive timeouts, which arm a read deadline per request.
	srv := forwardauth.NewServer(http.HandlerFunc(handler), nil)
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
	// checkFields: each is running, and keygate's answers are compared
	// with identityFields (the load itself does not pay for it).
	checkFields bool
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
	case t.keygate && t.checkFields:
		return sameFields(resp.Header)
	}
	return nil
}

// sameFields checks that keygate's allow has the fields identityFields
// has (Date aside), so that --http-reference identity answers as much.
func sameFields(h http.Header) error {
	var got, want []string
	for name := range h {
		if name != "Date" {
			got = append(got, name)
		}
	}
	for _, f := range identityFields {
		want = append(want, f[0])
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		return fmt.Errorf("keygate's allow has the fields %v, --http-reference identity answers with %v", got, want)
	}
	return nil
}

// each checks every answer, and the fields of keygate's (see sameFields).
func (t *httpTarget) each(ctx context.Context, n int, timeout time.Duration) error {
	t.checkFields = true
	defer func() { t.checkFields = false }()
	return eachRequest(ctx, t, len(t.reqs), n, timeout)
}

func (t *httpTarget) run(ctx context.Context, conc int, timeout time.Duration, t0, t1 time.Time, mark func(end bool)) sample {
	return runLoad(ctx, t, len(t.reqs), conc, timeout, t0, t1, mark)
}

func (t *httpTarget) close() { t.client.CloseIdleConnections() }
