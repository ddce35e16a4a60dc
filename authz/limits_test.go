package authz

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/authztest"
	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/limits"
)

// counted is a DecisionCounter that remembers.
type counted struct {
	mu     sync.Mutex
	counts map[string]int // "key id outcome"
}

func (c *counted) Count(key *keystore.Record, outcome int, _ time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.counts == nil {
		c.counts = map[string]int{}
	}
	c.counts[key.ID()+" "+Outcome(outcome).String()]++
}

func limitedWorld(t *testing.T) (*authztest.World, map[string]authztest.Key) {
	w := authztest.NewWorld(t)
	add := func(id string, rates []string, quota string, scopes []string) authztest.Key {
		l, err := keystore.ParseLimits(rates, quota)
		if err != nil {
			t.Fatal(err)
		}
		return w.Lookup.Add(t, id, scopes, func(k *keystore.Key) { k.Limits = l })
	}
	return w, map[string]authztest.Key{
		"rated":  add("k-rated", []string{"2/h"}, "", nil),
		"quota":  add("k-quota", nil, "1/day", nil),
		"scoped": add("k-scoped", []string{"1/h"}, "", []string{"projects:read"}),
	}
}

// TestLimitedDecisions: a key over a rate is 429 rate_limited, over its
// quota 429 quota_exhausted, each with Retry-After and the RateLimit
// fields; a request refused before the limits spends nothing of them; a
// key without limits gets no fields; every decision about a key is
// counted by outcome.
func TestLimitedDecisions(t *testing.T) {
	w, keys := limitedWorld(t)
	lim, err := limits.New(limits.Options{Local: limits.NewLocal(nil)})
	if err != nil {
		t.Fatal(err)
	}
	c := &counted{}
	s := newTestServer(t, w.Lookup, func(cfg *Config) { cfg.Limiter, cfg.Counter = lim, c })
	get := func(k authztest.Key, method string) Decision {
		return s.decideRequest(method, "/api/v1/projects", map[string]string{"x-api-key": k.Secret}, "")
	}
	scoped := keys["scoped"]
	// Refused by scope first: the limit is not spent.
	for range 3 {
		if d := get(scoped, "POST"); d.Outcome != InsufficientScope || d.Limits != nil {
			t.Fatalf("scoped key writing: %v, limits %v", d.Outcome, d.Limits)
		}
	}
	if d := get(scoped, "GET"); d.Outcome != Allow {
		t.Fatalf("scoped key's first read: %v (a refused request spent its limit)", d.Outcome)
	}
	for i, want := range []Outcome{Allow, Allow, RateLimited, RateLimited} {
		d := get(keys["rated"], "GET")
		if d.Outcome != want || d.Limits == nil {
			t.Fatalf("rated key, request %d: %v, want %v", i, d.Outcome, want)
		}
		fields := map[string]string{}
		for _, f := range s.LimitHeaders(&d) {
			fields[f.Name] = f.Value
		}
		if fields["ratelimit-policy"] != `"2/h";q=2;w=3600` || !strings.HasPrefix(fields["ratelimit"], `"2/h";r=`) {
			t.Fatalf("request %d: fields %v", i, fields)
		}
		if ra, ok := fields["retry-after"]; (want == RateLimited) != ok || (ok && ra != "1800") {
			t.Fatalf("request %d (%v): retry-after %q", i, want, ra)
		}
		if want == RateLimited && (d.Outcome.HTTPStatus() != 429 || d.Reason != ReasonRateLimited) {
			t.Fatalf("denial: status %d, reason %v", d.Outcome.HTTPStatus(), d.Reason)
		}
	}
	get(keys["quota"], "GET")
	d := get(keys["quota"], "GET")
	if d.Outcome != QuotaExhausted || d.Reason != ReasonQuotaExhausted || d.Outcome.HTTPStatus() != 429 {
		t.Fatalf("spent quota: %v (%v)", d.Outcome, d.Reason)
	}
	midnight := authztest.Now.UTC().Truncate(24 * time.Hour).Add(24 * time.Hour)
	for _, f := range s.LimitHeaders(&d) {
		if f.Name == "retry-after" && f.Value != strconv.FormatInt(int64(midnight.Sub(authztest.Now)/time.Second), 10) {
			t.Fatalf("quota retry-after %s, want the seconds to midnight UTC (%v)", f.Value, midnight.Sub(authztest.Now))
		}
	}
	plain := get(w.Plain, "GET")
	if plain.Outcome != Allow || plain.Limits != nil || s.LimitHeaders(&plain) != nil {
		t.Fatalf("a key without limits: %v, limits %v", plain.Outcome, plain.Limits)
	}
	want := map[string]int{
		"k-scoped insufficient_scope": 3, "k-scoped ok": 1, "k-rated ok": 2, "k-rated rate_limited": 2,
		"k-quota ok": 1, "k-quota quota_exhausted": 1, "k-plain ok": 1,
	}
	for k, n := range want {
		if c.counts[k] != n {
			t.Errorf("counted %s: %d, want %d (all: %v)", k, c.counts[k], n, c.counts)
		}
	}
	if len(c.counts) != len(want) {
		t.Errorf("counted %v, want %v", c.counts, want)
	}
	// Dry run: the denial is let through, still with its fields.
	dry := newTestServer(t, w.Lookup, func(cfg *Config) { cfg.Limiter, cfg.DryRun = lim, true })
	d = dry.decideRequest("GET", "/api/v1/projects", map[string]string{"x-api-key": keys["rated"].Secret}, "")
	if d.Outcome != RateLimited || !d.DryRun || d.Denied() || len(dry.LimitHeaders(&d)) != 3 {
		t.Fatalf("dry run: %v, dry %v, fields %v", d.Outcome, d.DryRun, dry.LimitHeaders(&d))
	}
}

// TestLimitStoreDown: with --limit-fallback=deny and no store, a limited
// key is 503 unavailable (reason limit_store); a key without limits is
// not affected.
func TestLimitStoreDown(t *testing.T) {
	w, keys := limitedWorld(t)
	lim, err := limits.New(limits.Options{Local: limits.NewLocal(nil), Shared: failing{}, Fallback: limits.FallbackDeny})
	if err != nil {
		t.Fatal(err)
	}
	s := newTestServer(t, w.Lookup, func(cfg *Config) { cfg.Limiter = lim })
	if d := s.decideRequest("GET", "/api/v1/projects", map[string]string{"x-api-key": keys["rated"].Secret}, ""); d.Outcome != Unavailable || d.Reason != ReasonLimitStore {
		t.Fatalf("limited key with the store down: %v (%v)", d.Outcome, d.Reason)
	}
	if d := s.decideRequest("GET", "/api/v1/projects", map[string]string{"x-api-key": w.Plain.Secret}, ""); d.Outcome != Allow {
		t.Fatalf("unlimited key with the store down: %v", d.Outcome)
	}
}

type failing struct{}

func (failing) Take(context.Context, *keystore.Record, time.Time) (limits.Verdict, error) {
	return limits.Verdict{}, context.DeadlineExceeded
}

// TestOutcomeNames: the counter's outcome names are the outcome table's,
// and an allow is what the store's quotas count (keystore.UsageAllowed).
func TestOutcomeNames(t *testing.T) {
	names := OutcomeNames()
	if len(names) != NumOutcomes || names[Allow] != keystore.UsageAllowed || names[RateLimited] != "rate_limited" || names[QuotaExhausted] != "quota_exhausted" {
		t.Fatalf("OutcomeNames() = %v", names)
	}
	if NumOutcomes > keystore.MaxUsageOutcomes {
		t.Fatalf("%d outcomes, the usage counter counts %d", NumOutcomes, keystore.MaxUsageOutcomes)
	}
}
