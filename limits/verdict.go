package limits

import (
	"strconv"
	"time"

	"github.com/keygate/keygate/keystore"
)

// Result is what counting one request says.
type Result uint8

// The results.
const (
	Allowed        Result = iota // within every limit: counted
	RateLimited                  // over a rate: not counted
	QuotaExhausted               // the quota's period is spent: not counted
	Unavailable                  // the counting store cannot answer and the fallback refuses
)

// String names the result.
func (r Result) String() string {
	switch r {
	case Allowed:
		return "allowed"
	case RateLimited:
		return "rate_limited"
	case QuotaExhausted:
		return "quota_exhausted"
	}
	return "unavailable"
}

// Verdict is the answer for one request of a limited key: the result,
// when to retry, and the state of each of the key's limits for the
// RateLimit header fields. It is a value with no pointers into shared
// state, so that it costs no allocation.
type Verdict struct {
	Result     Result
	RetryAfter time.Duration // when a denied request would be allowed
	// Policies are the key's limits (rates, then the quota) as the
	// RateLimit fields describe them; the first N hold something.
	Policies [keystore.MaxRates + 1]Policy
	N        int
	// Approximate marks a verdict of the local fallback while the shared
	// store cannot answer.
	Approximate bool
}

// Policy is one limit's state.
type Policy struct {
	Rate      keystore.Rate  // the rate, unless Quota is set
	Quota     keystore.Quota // the quota, when Period is not NoQuota
	Limit     int64          // q: requests a window allows
	Window    int64          // w: the window in seconds
	Remaining int64          // r: requests left now
	Reset     time.Duration  // t: until the window is whole again
}

// Name is the policy's name in the RateLimit fields: the limit as it is
// written without its burst ("100/s", "1000000/month").
func (p *Policy) Name() string {
	if p.Quota.Period != keystore.NoQuota {
		return p.Quota.String()
	}
	return keystore.Rate{Count: p.Rate.Count, Per: p.Rate.Per, Burst: p.Rate.Count}.String()
}

// The header fields of draft-ietf-httpapi-ratelimit-headers, lower case.
const (
	PolicyHeader = "ratelimit-policy"
	StateHeader  = "ratelimit"
)

// Headers renders the verdict's RateLimit-Policy and RateLimit fields
// (draft-ietf-httpapi-ratelimit-headers): one item per limit, named for
// it, with q (requests per window), w (window, seconds), r (remaining)
// and t (seconds until the window is whole again), e.g.
//
//	RateLimit-Policy: "100/s";q=100;w=1, "1000000/month";q=1000000;w=2592000
//	RateLimit: "100/s";r=57;t=1, "1000000/month";r=999812;t=1130400
func (v *Verdict) Headers() (policy, state string) {
	var pb, sb []byte
	for i := range v.Policies[:v.N] {
		p := &v.Policies[i]
		if i > 0 {
			pb, sb = append(pb, ", "...), append(sb, ", "...)
		}
		name := strconv.Quote(p.Name())
		pb = append(append(pb, name...), ";q="...)
		pb = strconv.AppendInt(pb, p.Limit, 10)
		pb = strconv.AppendInt(append(pb, ";w="...), p.Window, 10)
		sb = append(append(sb, name...), ";r="...)
		sb = strconv.AppendInt(sb, max(p.Remaining, 0), 10)
		sb = strconv.AppendInt(append(sb, ";t="...), seconds(p.Reset), 10)
	}
	return string(pb), string(sb)
}

// RetryAfterSeconds is the Retry-After of a denial: whole seconds, at
// least 1.
func (v *Verdict) RetryAfterSeconds() int64 { return max(seconds(v.RetryAfter), 1) }

// seconds rounds d up to whole seconds (0 for none).
func seconds(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64((d + time.Second - 1) / time.Second)
}

// RatePolicy is the state of a rate whose theoretical arrival time (GCRA)
// is tat at now; share divides the rate among replicas.
func RatePolicy(r keystore.Rate, tat, now int64) Policy {
	interval := int64(r.Interval())
	tolerance := interval * r.Burst
	p := Policy{Rate: r, Limit: r.Count, Window: r.Window()}
	if tat < now {
		tat = now
	}
	p.Remaining = (tolerance - (tat - now)) / interval
	p.Reset = time.Duration(tat - now)
	return p
}

// QuotaPolicy is the state of a quota with used of it spent at now.
func QuotaPolicy(q keystore.Quota, used int64, now time.Time) Policy {
	end := q.Period.End(now)
	return Policy{Quota: q, Limit: q.Count, Window: int64(end.Sub(q.Period.Start(now)) / time.Second),
		Remaining: q.Count - used, Reset: end.Sub(now)}
}
