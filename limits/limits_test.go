package limits_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/keygate/keygate/internal/redistest"
	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/limits"
	"github.com/keygate/keygate/limits/redisstore"
)

// record is a key's record with the given limits.
func record(tb testing.TB, id string, rates []string, quota string) *keystore.Record {
	tb.Helper()
	l, err := keystore.ParseLimits(rates, quota)
	if err != nil {
		tb.Fatal(err)
	}
	k := &keystore.Key{ID: id, AccountID: "acct", Limits: l, UpdatedAt: time.Now()}
	return k.Record()
}

// stores are the counting stores every semantic test runs against.
func stores(t *testing.T) map[string]func() limits.Store {
	srv := redistest.Start(t)
	return map[string]func() limits.Store{
		"local": func() limits.Store { return limits.NewLocal(nil) },
		"redis": func() limits.Store {
			r, err := redisstore.New(redisstore.Options{URL: srv.URL(), Prefix: t.Name() + time.Now().String() + ":"})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { r.Close() })
			return r
		},
	}
}

func take(t *testing.T, s limits.Store, r *keystore.Record, now time.Time) limits.Verdict {
	t.Helper()
	v, err := s.Take(context.Background(), r, now)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestBurstThenRate: a burst of Burst requests at once, then one per
// interval; a denial says when to retry, and counts nothing.
func TestBurstThenRate(t *testing.T) {
	for name, newStore := range stores(t) {
		t.Run(name, func(t *testing.T) {
			s := newStore()
			r := record(t, "k1", []string{"10/s,burst=5"}, "")
			now := time.Now()
			allowed := 0
			for range 8 {
				if v := take(t, s, r, now); v.Result == limits.Allowed {
					allowed++
				}
			}
			if allowed != 5 {
				t.Fatalf("%d of 8 requests at once allowed, want the burst of 5", allowed)
			}
			v := take(t, s, r, now)
			if v.Result != limits.RateLimited || v.RetryAfter <= 0 || v.RetryAfter > 100*time.Millisecond {
				t.Fatalf("over the burst: %v, retry after %v; want rate_limited within 100ms", v.Result, v.RetryAfter)
			}
			if v.RetryAfterSeconds() != 1 {
				t.Fatalf("Retry-After %d, want 1 (whole seconds, at least 1)", v.RetryAfterSeconds())
			}
			if name == "redis" {
				return // the rest moves the clock, which Redis owns
			}
			if v := take(t, s, r, now.Add(100*time.Millisecond)); v.Result != limits.Allowed {
				t.Fatalf("one interval later: %v, want allowed", v.Result)
			}
			if v := take(t, s, r, now.Add(100*time.Millisecond)); v.Result != limits.RateLimited {
				t.Fatalf("a second request in the same interval: %v", v.Result)
			}
			if v := take(t, s, r, now.Add(10*time.Second)); v.Result != limits.Allowed || v.Policies[0].Remaining != 4 {
				t.Fatalf("after a quiet while: %v, remaining %d; want allowed with 4 left", v.Result, v.Policies[0].Remaining)
			}
		})
	}
}

// TestSeveralRates: every rate must allow; a denied request is counted by
// none of them.
func TestSeveralRates(t *testing.T) {
	for name, newStore := range stores(t) {
		t.Run(name, func(t *testing.T) {
			s := newStore()
			r := record(t, "k2", []string{"100/s", "3/h"}, "")
			now := time.Now()
			for i := range 3 {
				if v := take(t, s, r, now); v.Result != limits.Allowed {
					t.Fatalf("request %d: %v", i, v.Result)
				}
			}
			v := take(t, s, r, now)
			if v.Result != limits.RateLimited || v.RetryAfter < 19*time.Minute {
				t.Fatalf("fourth request: %v, retry after %v; want rate_limited by 3/h (20 minutes)", v.Result, v.RetryAfter)
			}
			if v.N != 2 || v.Policies[0].Remaining < 96 || v.Policies[1].Remaining != 0 {
				t.Fatalf("policies %+v", v.Policies[:v.N])
			}
			policy, state := v.Headers()
			if policy != `"100/s";q=100;w=1, "3/h";q=3;w=3600` {
				t.Fatalf("RateLimit-Policy %q", policy)
			}
			if !strings.HasPrefix(state, `"100/s";r=9`) || !strings.Contains(state, `"3/h";r=0;t=3600`) {
				t.Fatalf("RateLimit %q", state)
			}
		})
	}
}

// TestQuota: a quota allows its count in its UTC period, then refuses
// until the period ends, which Retry-After says.
func TestQuota(t *testing.T) {
	for name, newStore := range stores(t) {
		t.Run(name, func(t *testing.T) {
			s := newStore()
			r := record(t, "k3", nil, "3/day")
			now := time.Now().UTC()
			for i := range 3 {
				if v := take(t, s, r, now); v.Result != limits.Allowed || v.Policies[0].Remaining != int64(2-i) {
					t.Fatalf("request %d: %v, remaining %d", i, v.Result, v.Policies[0].Remaining)
				}
			}
			v := take(t, s, r, now)
			midnight := time.Date(now.Year(), now.Month(), now.Day()+1, 0, 0, 0, 0, time.UTC)
			if v.Result != limits.QuotaExhausted || v.RetryAfter != midnight.Sub(now) {
				t.Fatalf("over the quota: %v, retry after %v; want quota_exhausted until midnight UTC (%v)", v.Result, v.RetryAfter, midnight.Sub(now))
			}
			if _, state := v.Headers(); !strings.Contains(state, `"3/day";r=0;t=`) {
				t.Fatalf("RateLimit %q", state)
			}
			if name == "local" {
				if v := take(t, s, r, midnight); v.Result != limits.Allowed {
					t.Fatalf("the next day: %v", v.Result)
				}
			}
		})
	}
}

// TestChangedLimitsStartAfresh: a key whose rate changed is counted by the
// new rate at once.
func TestChangedLimitsStartAfresh(t *testing.T) {
	for name, newStore := range stores(t) {
		t.Run(name, func(t *testing.T) {
			s := newStore()
			now := time.Now()
			tight := record(t, "k4", []string{"1/m"}, "")
			take(t, s, tight, now)
			if v := take(t, s, tight, now); v.Result != limits.RateLimited {
				t.Fatalf("second request at 1/m: %v", v.Result)
			}
			if v := take(t, s, record(t, "k4", []string{"10/m"}, ""), now); v.Result != limits.Allowed {
				t.Fatalf("after raising the limit: %v", v.Result)
			}
		})
	}
}

// TestLocalShare: with n replicas each takes 1/n of a rate and its burst.
func TestLocalShare(t *testing.T) {
	l := limits.NewLocal(nil)
	l.SetReplicas(4)
	r := record(t, "k5", []string{"100/s"}, "")
	now := time.Now()
	allowed := 0
	for range 100 {
		if v := take(t, l, r, now); v.Result == limits.Allowed {
			allowed++
		}
	}
	if allowed != 25 {
		t.Fatalf("with 4 replicas, %d of 100 at once allowed, want 25", allowed)
	}
}

// TestFallback: with Redis stopped, limited keys are decided by the
// fallback, counted; a quota seen spent stays refused whatever the
// fallback; and Redis is used again once it answers.
func TestFallback(t *testing.T) {
	srv := redistest.Start(t)
	for _, fb := range []limits.Fallback{limits.FallbackLocal, limits.FallbackAllow, limits.FallbackDeny} {
		t.Run(fb.String(), func(t *testing.T) {
			if srv.Addr == "" {
				t.Skip()
			}
			shared, err := redisstore.New(redisstore.Options{URL: srv.URL(), Prefix: "fb-" + fb.String() + time.Now().String() + ":"})
			if err != nil {
				t.Fatal(err)
			}
			defer shared.Close()
			reg := prometheus.NewRegistry()
			l, err := limits.New(limits.Options{Local: limits.NewLocal(nil), Shared: shared, SharedName: "redis", Fallback: fb,
				Retry: 50 * time.Millisecond, Registerer: reg})
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			spentKey := record(t, "spent", nil, "2/day")
			rated := record(t, "rated", []string{"2/m"}, "")
			now := time.Now()
			for range 2 {
				l.Limit(ctx, spentKey, now)
			}
			if v := l.Limit(ctx, spentKey, now); v.Result != limits.QuotaExhausted {
				t.Fatalf("third request of a 2/day quota: %v", v.Result)
			}
			srv.Stop()
			defer srv.Restart()
			if v := l.Limit(ctx, spentKey, now); v.Result != limits.QuotaExhausted || v.RetryAfter <= 0 {
				t.Fatalf("spent quota with Redis down: %v; want still quota_exhausted", v.Result)
			}
			results := map[limits.Result]int{}
			for range 5 {
				v := l.Limit(ctx, rated, now)
				results[v.Result]++
			}
			want := map[limits.Fallback]map[limits.Result]int{
				limits.FallbackLocal: {limits.Allowed: 2, limits.RateLimited: 3},
				limits.FallbackAllow: {limits.Allowed: 5},
				limits.FallbackDeny:  {limits.Unavailable: 5},
			}[fb]
			if len(results) != len(want) || results[limits.Allowed] != want[limits.Allowed] || results[limits.RateLimited] != want[limits.RateLimited] {
				t.Fatalf("with Redis down and fallback %s: %v, want %v", fb, results, want)
			}
			if n := testutil.ToFloat64(counter(t, reg, "keygate_limit_fallback_total")); n != 5 {
				t.Fatalf("fallback decisions counted: %v, want 5", n)
			}
			if n := testutil.ToFloat64(counter(t, reg, "keygate_limit_store_errors_total")); n < 1 {
				t.Fatalf("store errors counted: %v", n)
			}
			srv.Restart()
			time.Sleep(60 * time.Millisecond) // past Retry
			if v := l.Limit(ctx, record(t, "fresh", []string{"1/m"}, ""), time.Now()); v.Result != limits.Allowed || v.Approximate {
				t.Fatalf("with Redis back: %v, approximate %v; want an exact allow", v.Result, v.Approximate)
			}
		})
	}
}

func counter(t *testing.T, reg *prometheus.Registry, name string) prometheus.Collector {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name}, func() float64 { return mf.GetMetric()[0].GetCounter().GetValue() })
		}
	}
	t.Fatalf("no metric %s", name)
	return nil
}

// TestRedisURL: a URL that does not parse is refused without repeating
// it; one that parses but answers with an error fails Take, never allows.
func TestRedisURL(t *testing.T) {
	for _, bad := range []string{"http://localhost:6379", "redis://user:s3cret@host:notaport", "redis://host:6379/notadb", "", "::"} {
		_, err := redisstore.New(redisstore.Options{URL: bad})
		if err == nil {
			t.Errorf("NewRedis(%q) accepted it", bad)
			continue
		}
		if strings.Contains(err.Error(), "s3cret") {
			t.Errorf("the error repeats the password: %v", err)
		}
	}
	// A server that answers with an error (a database it does not have).
	srv := redistest.Start(t)
	r, err := redisstore.New(redisstore.Options{URL: "redis://:wrong@" + srv.Addr + "/99"})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if _, err := r.Take(context.Background(), record(t, "k", []string{"1/s"}, ""), time.Now()); err == nil {
		t.Fatal("Take against a server refusing the password succeeded")
	} else if strings.Contains(err.Error(), "wrong") {
		t.Fatalf("the error repeats the password: %v", err)
	}
}
