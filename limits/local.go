package limits

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keygate/keygate/keystore"
)

// Local counts in this replica's memory, per key: each rate as GCRA (a
// token bucket) with this replica's share of it, 1/n of the rate and of
// the burst with n the live replicas (SetReplicas, from the store's
// heartbeat); each quota as what the store says the key spent in the
// period (every replica's allowed decisions, written in batches) plus what
// this replica allowed since it last asked (RefreshQuotas).
//
// The bound, with n replicas and a load balancer that spreads a key's
// requests evenly: a rate lets through its count per window, within one
// burst per replica. Spread unevenly, a key gets less (one replica alone
// gives it 1/n of its rate). For the heartbeat interval after a replica
// joins, the others still take 1/(n-1) each: up to (n+1)/n of the rate. A
// quota overshoots by at most what the other replicas allow between two
// refreshes: replicas × flush interval × the key's rate.
type Local struct {
	keys     sync.Map // key id → *bucket
	replicas atomic.Int64
	store    *keystore.Store // for RefreshQuotas; nil: quotas count this replica only
}

// bucket is one key's counting state.
type bucket struct {
	mu     sync.Mutex
	rates  [keystore.MaxRates]keystore.Rate
	n      int
	share  int64 // the replicas the tats were counted for
	tat    [keystore.MaxRates]int64
	quota  keystore.Quota
	period int64 // unix seconds of the quota period's start
	base   int64 // the period's allowed decisions, as the store last said
	local  int64 // allowed here since then
	seen   int64 // unix nanoseconds of the latest request
}

// NewLocal returns a local counting store; store, when set, is where
// quotas' shared counts are read (RefreshQuotas).
func NewLocal(store *keystore.Store) *Local {
	l := &Local{store: store}
	l.replicas.Store(1)
	return l
}

// SetReplicas sets the number of live replicas the rates are shared by.
func (l *Local) SetReplicas(n int) { l.replicas.Store(int64(max(n, 1))) }

// Replicas is the number of live replicas the rates are shared by.
func (l *Local) Replicas() int { return int(l.replicas.Load()) }

// Take counts one request of key at now against its limits.
func (l *Local) Take(_ context.Context, key *keystore.Record, now time.Time) (Verdict, error) {
	var buf [keystore.MaxRates]keystore.Rate
	rates := key.AppendRates(buf[:0])
	quota := key.Quota()
	v, ok := l.keys.Load(key.ID())
	if !ok {
		v, _ = l.keys.LoadOrStore(key.ID(), &bucket{})
	}
	b := v.(*bucket)
	share := l.replicas.Load()
	ns := now.UnixNano()

	b.mu.Lock()
	defer b.mu.Unlock()
	b.seen = ns
	if b.n != len(rates) || b.rates != ratesArray(rates) || b.share != share {
		b.n, b.rates, b.share = len(rates), ratesArray(rates), share
		b.tat = [keystore.MaxRates]int64{}
	}
	var verdict Verdict
	var next [keystore.MaxRates]int64
	limited := false
	for i, r := range rates {
		interval, tolerance := shared(r, share)
		tat := max(b.tat[i], ns)
		next[i] = tat + interval
		if over := next[i] - ns - tolerance; over > 0 {
			limited = true
			verdict.RetryAfter = max(verdict.RetryAfter, time.Duration(over))
			next[i] = tat
		}
	}
	var used int64
	if quota.Period != keystore.NoQuota {
		if ps := quota.Period.Start(now).Unix(); ps != b.period {
			b.period, b.base, b.local = ps, 0, 0
		}
		b.quota = quota
		used = b.base + b.local
		if used >= quota.Count {
			verdict.Result = QuotaExhausted
			verdict.RetryAfter = quota.Period.End(now).Sub(now)
		}
	}
	if verdict.Result == Allowed && limited {
		verdict.Result = RateLimited
	}
	if verdict.Result == Allowed {
		b.tat = next
		if quota.Period != keystore.NoQuota {
			b.local++
			used++
		}
	}
	for i, r := range rates {
		interval, tolerance := shared(r, share)
		tat := max(b.tat[i], ns)
		p := Policy{Rate: r, Limit: r.Count, Window: r.Window(), Reset: time.Duration(tat - ns)}
		p.Remaining = (tolerance - (tat - ns)) / interval * share
		verdict.Policies[verdict.N] = p
		verdict.N++
	}
	if quota.Period != keystore.NoQuota {
		verdict.Policies[verdict.N] = QuotaPolicy(quota, used, now)
		verdict.N++
	}
	return verdict, nil
}

// shared is the GCRA interval and tolerance of this replica's share of r:
// 1/share of the rate, and of the burst (at least one request).
func shared(r keystore.Rate, share int64) (interval, tolerance int64) {
	interval = int64(r.Interval()) * share
	burst := max((r.Burst+share-1)/share, 1)
	return interval, interval * burst
}

func ratesArray(rates []keystore.Rate) (a [keystore.MaxRates]keystore.Rate) {
	copy(a[:], rates)
	return a
}

// forgetAfter drops a key's state once it has not been used for this
// long (its buckets are whole again by then, or nearly).
const forgetAfter = 10 * time.Minute

// RefreshQuotas reads, for every key with a quota used lately, what the
// store says the key spent in its period (every replica's allowed
// decisions as written so far), and starts counting this replica's own
// from there; it forgets keys not used for a while. The usage counter
// calls it after each flush, which has just written this replica's.
func (l *Local) RefreshQuotas(ctx context.Context, now time.Time) error {
	idle := now.Add(-forgetAfter).UnixNano()
	byPeriod := map[int64][]string{}
	l.keys.Range(func(k, v any) bool {
		b := v.(*bucket)
		b.mu.Lock()
		stale, hasQuota, period := b.seen < idle, b.quota.Period != keystore.NoQuota, b.period
		b.mu.Unlock()
		switch {
		case stale:
			l.keys.CompareAndDelete(k, v)
		case hasQuota:
			byPeriod[period] = append(byPeriod[period], k.(string))
		}
		return true
	})
	if l.store == nil {
		return nil
	}
	for period, ids := range byPeriod {
		used, err := l.store.AllowedSince(ctx, ids, time.Unix(period, 0))
		if err != nil {
			return err
		}
		for _, id := range ids {
			if v, ok := l.keys.Load(id); ok {
				b := v.(*bucket)
				b.mu.Lock()
				if b.period == period {
					b.base, b.local = used[id], 0
				}
				b.mu.Unlock()
			}
		}
	}
	return nil
}
