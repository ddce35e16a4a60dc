package redisstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/limits"
)

// Store counts in Redis, shared by every replica and exact: one script
// (EVALSHA) checks and counts all of a key's limits atomically, so that a
// limited decision costs one round trip. Rates are GCRA with the Redis
// server's clock (TIME), so that replicas' clocks do not matter; a quota
// is a counter per key and period that expires after it. Keys hash to one
// slot per API key ({id}), so that Redis Cluster takes the script.
type Store struct {
	client redis.UniversalClient
	prefix string
}

// Options configure New.
type Options struct {
	// URL is the server: redis://[user:password@]host:port[/db] or
	// rediss:// for TLS (go-redis's ParseURL).
	URL string
	// Timeout bounds one round trip (dial, write, read). Default 50ms.
	Timeout time.Duration
	// Prefix starts every Redis key. Default "keygate:".
	Prefix string
}

// DefaultTimeout is Options.Timeout's default: well under
// Envoy's 200 ms ext_authz timeout, and far above a healthy round trip.
const DefaultTimeout = 50 * time.Millisecond

// ParseURL checks a Redis URL without connecting. Its error names
// what is wrong, never the URL itself (it may hold a password).
func ParseURL(raw string) (*redis.Options, error) {
	opts, err := redis.ParseURL(raw)
	if err != nil {
		msg := err.Error()
		if raw != "" && strings.Contains(msg, raw) || strings.Contains(raw, "@") {
			msg = "not a valid Redis URL"
		}
		return nil, fmt.Errorf("%s: want redis://[user:password@]host:port[/db] or rediss://…", msg)
	}
	return opts, nil
}

// New returns a Redis counting store. It does not connect: Ping
// does, and Take at the first request.
func New(o Options) (*Store, error) {
	opts, err := ParseURL(o.URL)
	if err != nil {
		return nil, err
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	opts.DialTimeout, opts.ReadTimeout, opts.WriteTimeout = o.Timeout, o.Timeout, o.Timeout
	opts.MaxRetries = -1 // a retry would double the wait; the fallback answers instead
	opts.ContextTimeoutEnabled = true
	if o.Prefix == "" {
		o.Prefix = "keygate:"
	}
	return &Store{client: redis.NewClient(opts), prefix: o.Prefix}, nil
}

// Ping checks that Redis answers.
func (r *Store) Ping(ctx context.Context) error {
	if err := r.client.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("redisstore: %w", err)
	}
	return nil
}

// Close closes the connections.
func (r *Store) Close() error { return r.client.Close() }

// take is the script: KEYS are the rates' keys then the quota's; ARGV
// the number of rates, each rate's interval and tolerance (microseconds),
// the quota's count (0: none) and its key's lifetime (seconds). It returns
// {allowed, exhausted, now, retry, used, tat...}: a rate's tat as it
// stands after the request (counted only when allowed and not exhausted).
var take = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local n = tonumber(ARGV[1])
local ok, retry = 1, 0
local old, new = {}, {}
for i = 1, n do
  local interval, tolerance = tonumber(ARGV[2*i]), tonumber(ARGV[2*i+1])
  local tat = tonumber(redis.call('GET', KEYS[i])) or now
  if tat < now then tat = now end
  old[i], new[i] = tat, tat + interval
  local over = new[i] - now - tolerance
  if over > 0 then
    ok = 0
    if over > retry then retry = over end
  end
end
local quota = tonumber(ARGV[2*n+2])
local used, exhausted = 0, 0
if quota > 0 then
  used = tonumber(redis.call('GET', KEYS[n+1])) or 0
  if used >= quota then exhausted = 1 end
end
local out = {ok, exhausted, now, retry, used}
if ok == 1 and exhausted == 0 then
  for i = 1, n do
    redis.call('SET', KEYS[i], string.format('%.0f', new[i]), 'PX', math.floor((new[i] - now) / 1000) + 1000)
    out[5 + i] = new[i]
  end
  if quota > 0 then
    out[5] = redis.call('INCR', KEYS[n+1])
    if out[5] == 1 then redis.call('EXPIRE', KEYS[n+1], tonumber(ARGV[2*n+3])) end
  end
else
  for i = 1, n do out[5 + i] = old[i] end
end
return out
`)

// Take counts one request of key against its limits, in one round trip.
func (r *Store) Take(ctx context.Context, key *keystore.Record, now time.Time) (limits.Verdict, error) {
	var buf [keystore.MaxRates]keystore.Rate
	rates := key.AppendRates(buf[:0])
	quota := key.Quota()
	keys := make([]string, 0, len(rates)+1)
	args := make([]any, 0, 2*len(rates)+3)
	args = append(args, len(rates))
	id := key.ID()
	for _, rt := range rates {
		keys = append(keys, r.prefix+"{"+id+"}:r:"+rt.String())
		interval := rt.Interval().Microseconds()
		args = append(args, interval, interval*rt.Burst)
	}
	var periodEnd time.Time
	if quota.Period != keystore.NoQuota {
		start := quota.Period.Start(now)
		periodEnd = quota.Period.End(now)
		keys = append(keys, r.prefix+"{"+id+"}:q:"+quota.Period.String()+":"+strconv.FormatInt(start.Unix(), 10))
		args = append(args, quota.Count, int64(periodEnd.Sub(now)/time.Second)+3600)
	} else {
		args = append(args, 0, 0)
	}
	res, err := take.Run(ctx, r.client, keys, args...).Int64Slice()
	if err != nil {
		return limits.Verdict{}, fmt.Errorf("redisstore: %w", err)
	}
	if len(res) != 5+len(rates) {
		return limits.Verdict{}, errors.New("redisstore: the script answered an unexpected shape")
	}
	var v limits.Verdict
	redisNow := res[2] * int64(time.Microsecond)
	switch {
	case res[1] == 1:
		v.Result, v.RetryAfter = limits.QuotaExhausted, periodEnd.Sub(now)
	case res[0] == 0:
		v.Result, v.RetryAfter = limits.RateLimited, time.Duration(res[3])*time.Microsecond
	}
	for i, rt := range rates {
		v.Policies[v.N] = limits.RatePolicy(rt, res[5+i]*int64(time.Microsecond), redisNow)
		v.N++
	}
	if quota.Period != keystore.NoQuota {
		v.Policies[v.N] = limits.QuotaPolicy(quota, res[4], now)
		v.N++
	}
	return v, nil
}
