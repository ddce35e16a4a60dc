package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/keygate/keygate/internal/envoytest"
)

// benchPath is the request target of every Check: a module open to keys
// without scopes in keygate's built-in example policy.
const benchPath = "/api/v1/projects/42/builds?page=2"

// checkRequest is a GET of benchPath with secret in x-api-key, as
// Envoy's ext_authz filter sends it.
func checkRequest(secret string) *authv3.CheckRequest {
	return envoytest.CheckRequest("GET", benchPath, map[string]string{"x-api-key": secret}, nil)
}

// verifier checks that a response is the allow the benchmark expects.
type verifier func(*authv3.CheckResponse) error

// allowed accepts status code 0.
func allowed(r *authv3.CheckResponse) error {
	if c := r.GetStatus().GetCode(); c != 0 {
		return fmt.Errorf("denied: status code %d %s %s", c, r.GetStatus().GetMessage(), r.GetDeniedResponse().GetBody())
	}
	return nil
}

// allowedWithHeaders accepts what keygate answers for a valid key: status
// code 0 and an OkResponse (with the identity headers).
func allowedWithHeaders(r *authv3.CheckResponse) error {
	if err := allowed(r); err != nil {
		return err
	}
	if r.GetOkResponse() == nil {
		return errors.New("status 0 without an OkResponse")
	}
	return nil
}

// target is one server as the load generator sees it: a few connections.
type target struct {
	conns   []*grpc.ClientConn
	clients []authv3.AuthorizationClient
	verify  verifier
	// verifyEach, when set, checks each's answers too (the load does not
	// pay for it).
	verifyEach verifier
}

func dial(addr string, n int, verify verifier) (*target, error) {
	t := &target{verify: verify}
	for range n {
		cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.close()
			return nil, err
		}
		cc.Connect()
		t.conns = append(t.conns, cc)
		t.clients = append(t.clients, authv3.NewAuthorizationClient(cc))
	}
	return t, nil
}

func (t *target) close() {
	for _, cc := range t.conns {
		cc.Close()
	}
}

// caller sends request i of the load (keys cycled) for worker w, and
// checks that the answer is the expected allow.
type caller interface {
	call(ctx context.Context, w, i int) error
}

// grpcCall is a gRPC target sending CheckRequests.
type grpcCall struct {
	t    *target
	reqs []*authv3.CheckRequest
}

func (g grpcCall) call(ctx context.Context, w, i int) error {
	resp, err := g.t.clients[w%len(g.t.clients)].Check(ctx, g.reqs[i])
	if err != nil {
		return err
	}
	return g.t.verify(resp)
}

// each sends one Check per request, over every connection, with n workers,
// and returns the first error or wrong answer.
func (t *target) each(ctx context.Context, reqs []*authv3.CheckRequest, n int, timeout time.Duration) error {
	checked := *t
	if t.verifyEach != nil {
		checked.verify = func(r *authv3.CheckResponse) error {
			if err := t.verify(r); err != nil {
				return err
			}
			return t.verifyEach(r)
		}
	}
	return eachRequest(ctx, grpcCall{&checked, reqs}, len(reqs), n, timeout)
}

// eachRequest sends each of the nreqs requests once with n workers, and
// returns the first error or wrong answer.
func eachRequest(ctx context.Context, c caller, nreqs, n int, timeout time.Duration) error {
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	for w := range n {
		wg.Go(func() {
			for i := w; i < nreqs; i += n {
				cctx, cancel := context.WithTimeout(ctx, timeout)
				err := c.call(cctx, w, i)
				cancel()
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = fmt.Errorf("key %d: %w", i, err)
					}
					mu.Unlock()
					return
				}
			}
		})
	}
	wg.Wait()
	return firstErr
}

// sample is what the load generator measured in one run.
type sample struct {
	ok, errors int
	firstError string
	window     time.Duration
	latencies  []time.Duration // of the ok requests, unsorted
}

// load runs conc closed-loop workers against t from now until the end of
// the measured window [t0, t1), counting the requests that complete inside
// it; at t0 and t1 it calls mark, which reads CPU counters.
func (t *target) load(ctx context.Context, reqs []*authv3.CheckRequest, conc int, timeout time.Duration,
	t0, t1 time.Time, mark func(end bool)) sample {
	return runLoad(ctx, grpcCall{t, reqs}, len(reqs), conc, timeout, t0, t1, mark)
}

// runLoad is load for any caller of nreqs requests.
func runLoad(ctx context.Context, c caller, nreqs, conc int, timeout time.Duration,
	t0, t1 time.Time, mark func(end bool)) sample {
	results := make([]sample, conc)
	var wg sync.WaitGroup
	for w := range conc {
		wg.Go(func() {
			r := &results[w]
			r.latencies = make([]time.Duration, 0, 4096)
			i := w * nreqs / conc // workers start apart, so concurrent requests rarely share a key
			for ctx.Err() == nil {
				start := time.Now()
				if !start.Before(t1) {
					return
				}
				cctx, cancel := context.WithTimeout(ctx, timeout)
				err := c.call(cctx, w, i)
				cancel()
				end := time.Now()
				if i++; i == nreqs {
					i = 0
				}
				if end.Before(t0) || !end.Before(t1) {
					continue
				}
				if err != nil {
					if r.errors++; r.firstError == "" {
						r.firstError = err.Error()
					}
					continue
				}
				r.ok++
				r.latencies = append(r.latencies, end.Sub(start))
			}
		})
	}
	sleepUntil(ctx, t0)
	mark(false)
	sleepUntil(ctx, t1)
	mark(true)
	wg.Wait()
	var s sample
	s.window = t1.Sub(t0)
	n := 0
	for _, r := range results {
		n += len(r.latencies)
	}
	s.latencies = make([]time.Duration, 0, n)
	for _, r := range results {
		s.ok += r.ok
		s.errors += r.errors
		if s.firstError == "" {
			s.firstError = r.firstError
		}
		s.latencies = append(s.latencies, r.latencies...)
	}
	return s
}

func sleepUntil(ctx context.Context, t time.Time) {
	timer := time.NewTimer(time.Until(t))
	defer timer.Stop()
	select {
	case <-timer.C:
	case <-ctx.Done():
	}
}

// percentile returns the p-th percentile (0 < p <= 100) of sorted, by the
// nearest-rank method.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(float64(len(sorted))*p/100)) - 1
	return sorted[max(0, min(rank, len(sorted)-1))]
}

// sortedCopy returns the durations sorted.
func sortedCopy(d []time.Duration) []time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s
}
