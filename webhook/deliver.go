package webhook

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keygate/keygate/keystore"
)

// Defaults of Options.
const (
	DefaultTimeout   = 15 * time.Second
	DefaultRetryFor  = 24 * time.Hour
	DefaultWorkers   = 4
	DefaultPoll      = time.Second
	DefaultRetainFor = 30 * 24 * time.Hour
	// MaxResponseBody is how much of a receiver's answer is read (for the
	// delivery log); the rest is never read.
	MaxResponseBody = 4 << 10
	// maxBackoff caps the wait between two attempts.
	maxBackoff = 6 * time.Hour
)

// Options configure a Deliverer.
type Options struct {
	Store  *keystore.Store // required; its clock (keystore.Options.Now) is the deliverer's
	Guard  *Guard          // where deliveries may go; default: the zero Guard
	Logger *slog.Logger
	// Timeout bounds one attempt, from dialing to the end of the answer's
	// headers and MaxResponseBody of its body. Default DefaultTimeout.
	Timeout time.Duration
	// RetryFor is how long a delivery is retried, from its event (or its
	// manual redelivery): at least 24 hours. Default DefaultRetryFor.
	RetryFor time.Duration
	// Workers is how many attempts are made at once. Default 4.
	Workers int
	// Poll is how often the outbox is asked for due deliveries when the
	// last ask found none. Default 1s.
	Poll time.Duration
	// RetainFor is how long finished events are kept for the delivery
	// log. Default 30 days.
	RetainFor time.Duration
	// Transport, when set, replaces the guarded transport (tests only).
	Transport http.RoundTripper
}

// Deliverer posts the outbox's deliveries to their endpoints. Run claims
// and sends until its context ends; on PostgreSQL any number of replicas
// may run one each, and every delivery is claimed by one of them.
type Deliverer struct {
	opts   Options
	client *http.Client
	lease  time.Duration
	stats  Stats
}

// Stats count what a Deliverer did.
type Stats struct {
	Attempts, Delivered, Retried, Failed, Lost atomic.Uint64
}

// New returns a Deliverer.
func New(opts Options) (*Deliverer, error) {
	if opts.Store == nil {
		return nil, errors.New("webhook: a store is required")
	}
	if opts.Guard == nil {
		opts.Guard = &Guard{}
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.RetryFor == 0 {
		opts.RetryFor = DefaultRetryFor
	}
	if opts.RetryFor < 24*time.Hour {
		return nil, errors.New("webhook: deliveries must be retried for at least 24h")
	}
	if opts.Workers <= 0 {
		opts.Workers = DefaultWorkers
	}
	if opts.Poll <= 0 {
		opts.Poll = DefaultPoll
	}
	if opts.RetainFor <= 0 {
		opts.RetainFor = DefaultRetainFor
	}
	// An attempt ends within Timeout (the client's deadline): a claim
	// outlives it with room for recording the outcome.
	d := &Deliverer{opts: opts, lease: 2*opts.Timeout + 30*time.Second}
	transport := opts.Transport
	if transport == nil {
		dialer := &net.Dialer{Timeout: opts.Timeout, Control: opts.Guard.control}
		transport = &http.Transport{
			Proxy:                  nil, // a proxy would be dialed instead of the receiver, past the guard
			DialContext:            dialer.DialContext,
			TLSHandshakeTimeout:    opts.Timeout,
			ResponseHeaderTimeout:  opts.Timeout,
			MaxResponseHeaderBytes: 16 << 10,
			MaxIdleConnsPerHost:    2,
			IdleConnTimeout:        time.Minute,
			ForceAttemptHTTP2:      true,
		}
	}
	d.client = &http.Client{
		Transport: transport,
		Timeout:   opts.Timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse // a 3xx is the answer, and a failure
		},
	}
	return d, nil
}

// Stats returns the deliverer's counters.
func (d *Deliverer) Stats() *Stats { return &d.stats }

// Run claims due deliveries and sends them, Workers at a time, until ctx
// ends; then it waits for the attempts under way (each bounded by
// Timeout) and returns. A delivery whose attempt did not finish is
// claimed again once its claim lapses, as a retry.
func (d *Deliverer) Run(ctx context.Context) {
	sem := make(chan struct{}, d.opts.Workers)
	var wg sync.WaitGroup
	defer wg.Wait()
	lastPrune := time.Time{}
	for ctx.Err() == nil {
		if time.Since(lastPrune) > time.Hour {
			lastPrune = time.Now()
			if _, err := d.opts.Store.PruneEvents(ctx, d.opts.Store.Clock().Add(-d.opts.RetainFor)); err != nil && ctx.Err() == nil {
				d.opts.Logger.Warn("webhooks: pruning old events failed", "error", oneLine(err.Error()))
			}
		}
		claims, err := d.opts.Store.ClaimDeliveries(ctx, d.lease, d.opts.Workers)
		if err != nil && ctx.Err() == nil {
			d.opts.Logger.Warn("webhooks: claiming deliveries failed; will retry", "error", oneLine(err.Error()))
		}
		if len(claims) == 0 {
			select {
			case <-ctx.Done():
			case <-time.After(d.opts.Poll):
			}
			continue
		}
		for _, c := range claims {
			sem <- struct{}{}
			wg.Go(func() {
				defer func() { <-sem }()
				d.Attempt(context.WithoutCancel(ctx), c)
			})
		}
		// Claim again once a worker is free.
		sem <- struct{}{}
		<-sem
	}
}

// Attempt makes one claimed attempt and records its outcome.
func (d *Deliverer) Attempt(ctx context.Context, c keystore.Claim) {
	d.stats.Attempts.Add(1)
	status, retryAfter, problem := d.post(ctx, c)
	now := d.opts.Store.Clock()
	o := keystore.DeliveryOutcome{DeliveryID: c.DeliveryID, Attempt: c.Attempt, At: now, Status: status, Error: problem}
	switch {
	case problem == "":
		o.State = keystore.DeliveryDelivered
	case now.Sub(c.WindowStart) >= d.opts.RetryFor:
		o.State = keystore.DeliveryFailed
		o.Error = fmt.Sprintf("%s; gave up after %d attempts over %s", problem, c.Attempt, keystore.FormatDuration(d.opts.RetryFor))
	default:
		o.State = keystore.DeliveryPending
		o.NextAttemptAt = now.Add(max(Backoff(c.Attempt), min(retryAfter, maxBackoff)))
	}
	if status == http.StatusGone {
		o.DisableEndpoint = "the receiver answered 410 Gone: it wants no more deliveries"
	}
	ok, err := d.opts.Store.FinishDelivery(ctx, o)
	switch {
	case err != nil:
		// The claim lapses and the delivery is attempted again.
		d.opts.Logger.Warn("webhooks: recording a delivery failed; it will be retried", "delivery", c.DeliveryID,
			"error", oneLine(err.Error()))
	case !ok:
		d.stats.Lost.Add(1)
	case o.State == keystore.DeliveryDelivered:
		d.stats.Delivered.Add(1)
	case o.State == keystore.DeliveryFailed:
		d.stats.Failed.Add(1)
		d.opts.Logger.Warn("webhooks: a delivery failed for good", "endpoint", c.EndpointID, "event", c.EventID, "error", o.Error)
	default:
		d.stats.Retried.Add(1)
		d.opts.Logger.Info("webhooks: a delivery will be retried", "endpoint", c.EndpointID, "event", c.EventID,
			"attempt", c.Attempt, "next", o.NextAttemptAt, "error", problem)
	}
}

// post sends one attempt and returns the receiver's status, how long it
// asked to wait (Retry-After), and why the attempt failed ("" if it did
// not).
func (d *Deliverer) post(ctx context.Context, c keystore.Claim) (status int, retryAfter time.Duration, problem string) {
	now := d.opts.Store.Clock()
	sig, err := Sign(c.Secrets, c.EventID, now, c.Payload)
	if err != nil {
		return 0, 0, "the endpoint's secret cannot sign: " + err.Error()
	}
	ctx, cancel := context.WithTimeout(ctx, d.opts.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.URL, bytes.NewReader(c.Payload))
	if err != nil {
		return 0, 0, "the endpoint's URL cannot be requested"
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "keygate-webhooks")
	req.Header.Set(HeaderID, c.EventID)
	req.Header.Set(HeaderTimestamp, strconv.FormatInt(now.Unix(), 10))
	req.Header.Set(HeaderSignature, sig)
	resp, err := d.client.Do(req)
	if err != nil {
		return 0, 0, describe(err, d.opts.Timeout)
	}
	defer resp.Body.Close()
	// Read a little of the answer, so that the connection can be reused
	// when it is short; never all of a huge one.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, MaxResponseBody))
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return resp.StatusCode, 0, ""
	case resp.StatusCode >= 300 && resp.StatusCode < 400:
		return resp.StatusCode, 0, fmt.Sprintf("the receiver answered %d, a redirect: redirects are not followed; update the endpoint's URL",
			resp.StatusCode)
	}
	return resp.StatusCode, parseRetryAfter(resp.Header.Get("Retry-After")), fmt.Sprintf("the receiver answered %d", resp.StatusCode)
}

// describe says why a request failed without its URL (whose query may
// hold a receiver's token).
func describe(err error, timeout time.Duration) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	switch {
	case errors.Is(err, ErrForbidden):
		return "refused: " + oneLine(err.Error())
	case errors.Is(err, context.DeadlineExceeded) || strings.Contains(err.Error(), "Client.Timeout") || isTimeout(err):
		return fmt.Sprintf("the receiver did not answer within %s", keystore.FormatDuration(timeout))
	}
	return "could not reach the receiver: " + oneLine(err.Error())
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// parseRetryAfter reads a Retry-After of seconds (0 for anything else).
func parseRetryAfter(v string) time.Duration {
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || n <= 0 {
		return 0
	}
	return time.Duration(min(n, int(maxBackoff/time.Second))) * time.Second
}

// Backoff is the wait after failed attempt n (1 for the first): 10s
// tripled each time (30s, 90s, 4.5m, …) up to 6h, give or take a fifth at
// random so that many deliveries failing together do not retry together.
// With the default RetryFor a delivery gets about 11 attempts.
func Backoff(n int) time.Duration {
	d := 10 * time.Second
	for i := 1; i < n && d < maxBackoff; i++ {
		d *= 3
	}
	d = min(d, maxBackoff)
	return time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
}

func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}
