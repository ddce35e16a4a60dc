package limits

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keygate/keygate/keystore"
)

// Store counts requests against a key's limits: Local or Redis.
type Store interface {
	Take(ctx context.Context, key *keystore.Record, now time.Time) (Verdict, error)
}

// Fallback is what a Limiter does with limited keys while its shared
// store (Redis) cannot answer. The decision still authenticates either
// way; only the counting changes.
type Fallback uint8

// The fallbacks.
const (
	// FallbackLocal counts in this replica's memory, its share of each
	// rate (approximate, as the local store is); quotas a key has spent
	// stay spent. The default.
	FallbackLocal Fallback = iota
	// FallbackAllow lets limited keys through uncounted, except a key
	// whose quota this replica saw spent, which stays refused until the
	// period ends.
	FallbackAllow
	// FallbackDeny refuses limited keys (503 unavailable) until the store
	// answers again.
	FallbackDeny
)

// Fallbacks names the fallbacks as --limit-fallback takes them.
var Fallbacks = map[string]Fallback{"local": FallbackLocal, "allow": FallbackAllow, "deny": FallbackDeny}

// String names the fallback.
func (f Fallback) String() string {
	for name, v := range Fallbacks {
		if v == f {
			return name
		}
	}
	return "unknown"
}

// Options configure a Limiter.
type Options struct {
	// Local is the replica's own counting store; required.
	Local *Local
	// Shared, when set, is the counting store every replica shares
	// (Redis); Local then only stands in for it while it cannot answer.
	Shared Store
	// SharedName names the shared store in logs and metrics ("redis").
	SharedName string
	// Fallback is what happens while Shared cannot answer.
	Fallback Fallback
	// Retry is how long the shared store is left alone after it failed,
	// before a request tries it again. Default 1s.
	Retry time.Duration
	// Logger learns when the shared store stops and starts answering.
	Logger *slog.Logger
	// Registerer, when set, gets the limiter's metrics.
	Registerer prometheus.Registerer
}

// Limiter counts requests of limited keys: in the shared store when there
// is one and it answers, else as the fallback says. Limit never fails.
type Limiter struct {
	local      *Local
	shared     Store
	sharedName string
	fallback   Fallback
	retry      time.Duration
	logger     *slog.Logger

	downUntil atomic.Int64 // unix nanoseconds until which the shared store is left alone
	down      atomic.Bool  // the shared store is failing (for logging the change once)
	exhausted sync.Map     // key id → spent: quotas seen spent, refused without asking

	results     [Unavailable + 1]prometheus.Counter
	storeErrors prometheus.Counter
	fallbacks   prometheus.Counter
}

// spent is a quota seen spent: which quota, and until when.
type spent struct {
	quota keystore.Quota
	until int64 // unix nanoseconds: the period's end
}

// New returns a Limiter.
func New(o Options) (*Limiter, error) {
	if o.Local == nil {
		return nil, fmt.Errorf("limits: a local store is required")
	}
	l := &Limiter{local: o.Local, shared: o.Shared, sharedName: o.SharedName, fallback: o.Fallback, retry: o.Retry, logger: o.Logger}
	if l.retry <= 0 {
		l.retry = time.Second
	}
	if l.logger == nil {
		l.logger = slog.New(slog.DiscardHandler)
	}
	if l.sharedName == "" {
		l.sharedName = "shared"
	}
	results := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "keygate_limit_results_total",
		Help: "Requests of limited keys counted against their limits, by result (allowed, rate_limited, quota_exhausted, unavailable).",
	}, []string{"result"})
	l.storeErrors = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "keygate_limit_store_errors_total",
		Help: "Requests of limited keys the shared counting store (Redis) failed to count.",
	})
	l.fallbacks = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "keygate_limit_fallback_total",
		Help: "Requests of limited keys decided by the fallback (--limit-fallback) because the shared counting store could not answer.",
	})
	replicas := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "keygate_limit_replicas",
		Help: "Live replicas the local counting store divides each rate by.",
	}, func() float64 { return float64(l.local.Replicas()) })
	for r := range l.results {
		l.results[r] = results.WithLabelValues(Result(r).String())
	}
	if o.Registerer != nil {
		if err := registerAll(o.Registerer, results, l.storeErrors, l.fallbacks, replicas); err != nil {
			return nil, err
		}
	}
	return l, nil
}

func registerAll(reg prometheus.Registerer, cs ...prometheus.Collector) error {
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("limits: metrics: %w", err)
		}
	}
	return nil
}

// Limit counts one request of key (a key with limits) at now.
func (l *Limiter) Limit(ctx context.Context, key *keystore.Record, now time.Time) Verdict {
	v := l.limit(ctx, key, now)
	l.results[min(v.Result, Unavailable)].Inc()
	return v
}

func (l *Limiter) limit(ctx context.Context, key *keystore.Record, now time.Time) Verdict {
	quota := key.Quota()
	if quota.Period != keystore.NoQuota {
		if v, ok := l.spent(key.ID(), quota, now); ok {
			return v
		}
	}
	if l.shared == nil {
		v, _ := l.local.Take(ctx, key, now) // never fails
		l.remember(key.ID(), quota, &v, now)
		return v
	}
	if now.UnixNano() >= l.downUntil.Load() {
		v, err := l.shared.Take(ctx, key, now)
		if err == nil {
			if l.down.CompareAndSwap(true, false) {
				l.logger.Info("the limits' counting store answers again: limited keys are counted in it", "store", l.sharedName)
			}
			l.remember(key.ID(), quota, &v, now)
			if v.Result == Allowed && l.fallback == FallbackLocal {
				// Shadow the shared count in this replica's buckets, so
				// that a fallback starts from what the key spent here, not
				// from a full burst.
				l.local.Take(ctx, key, now)
			}
			return v
		}
		l.storeErrors.Inc()
		l.downUntil.Store(now.Add(l.retry).UnixNano())
		if l.down.CompareAndSwap(false, true) {
			l.logger.Warn("the limits' counting store cannot answer: limited keys are decided by the fallback until it does",
				"store", l.sharedName, "fallback", l.fallback.String(), "error", err.Error())
		}
	}
	l.fallbacks.Inc()
	switch l.fallback {
	case FallbackAllow:
		return Verdict{Result: Allowed, Approximate: true}
	case FallbackDeny:
		return Verdict{Result: Unavailable}
	}
	v, _ := l.local.Take(ctx, key, now)
	v.Approximate = true
	l.remember(key.ID(), quota, &v, now)
	return v
}

// spent answers for a key whose quota this replica saw spent, until the
// period ends.
func (l *Limiter) spent(id string, quota keystore.Quota, now time.Time) (Verdict, bool) {
	e, ok := l.exhausted.Load(id)
	if !ok {
		return Verdict{}, false
	}
	s := e.(spent)
	if s.quota != quota || now.UnixNano() >= s.until {
		l.exhausted.CompareAndDelete(id, e)
		return Verdict{}, false
	}
	v := Verdict{Result: QuotaExhausted, RetryAfter: time.Duration(s.until - now.UnixNano())}
	v.Policies[0] = QuotaPolicy(quota, quota.Count, now)
	v.N = 1
	return v, true
}

// remember notes a quota v found spent.
func (l *Limiter) remember(id string, quota keystore.Quota, v *Verdict, now time.Time) {
	if v.Result == QuotaExhausted {
		l.exhausted.Store(id, spent{quota: quota, until: quota.Period.End(now).UnixNano()})
	}
}

// Local is the limiter's local store.
func (l *Limiter) Local() *Local { return l.local }
