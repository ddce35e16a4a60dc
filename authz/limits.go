package authz

import (
	"context"
	"strconv"
	"time"

	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/limits"
)

// Limiter counts a request of a key that has limits and says whether it
// may go on: *limits.Limiter is one. Limit must not fail (a counting store
// that cannot answer is its fallback's verdict) and must return when ctx
// ends.
type Limiter interface {
	Limit(ctx context.Context, key *keystore.Record, now time.Time) limits.Verdict
}

// DecisionCounter learns of every decision about an authenticated key
// (allows, and denials after the key was found valid), by outcome: the
// usage per key and minute (*keystore.UsageCounter). It must not block.
type DecisionCounter interface {
	Count(key *keystore.Record, outcome int, at time.Time)
}

// OutcomeNames are the outcomes' names in Outcome order: what a
// DecisionCounter's outcome index means.
func OutcomeNames() []string {
	out := make([]string, NumOutcomes)
	for o := range numOutcomes {
		out[o] = o.String()
	}
	return out
}

// limit is the decision's last step for a key with limits: allowed, or
// refused by a rate, the quota, or (with --limit-fallback=deny) a counting
// store that cannot answer.
func (s *Server) limit(ctx context.Context, key *keystore.Record, module string, now time.Time) Decision {
	v := s.limiter.Limit(ctx, key, now)
	reason := ReasonAllowed
	switch v.Result {
	case limits.RateLimited:
		reason = ReasonRateLimited
	case limits.QuotaExhausted:
		reason = ReasonQuotaExhausted
	case limits.Unavailable:
		reason = ReasonLimitStore
	}
	d := because(reason, key, module)
	d.Limits = &v
	return d
}

// The header fields LimitHeaders sets.
const (
	RateLimitPolicyHeader = limits.PolicyHeader // ratelimit-policy
	RateLimitHeader       = limits.StateHeader  // ratelimit
)

// LimitHeaders are the response header fields d's limits add, whatever
// the transport: for a key with limits, RateLimit-Policy and RateLimit
// (draft-ietf-httpapi-ratelimit-headers), on allows (where the proxy can
// pass them to the client) and denials alike; on a rate_limited or
// quota_exhausted denial, Retry-After, the seconds until the request would
// be allowed (for a quota, until the UTC day or month ends). Nil for a
// decision without limits: a key with none pays nothing.
func (s *Server) LimitHeaders(d *Decision) []Field {
	v := d.Limits
	if v == nil {
		return nil
	}
	var out []Field
	if v.N > 0 {
		policy, state := v.Headers()
		out = append(out, Field{RateLimitPolicyHeader, policy}, Field{RateLimitHeader, state})
	}
	switch d.Outcome {
	case RateLimited, QuotaExhausted:
		out = append(out, Field{"retry-after", strconv.FormatInt(v.RetryAfterSeconds(), 10)})
	}
	return out
}
