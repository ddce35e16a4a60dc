// Package limits counts the requests of keys that have limits (a key's
// rates and quota, keystore.Limits) and says whether one more is allowed:
// the step of the decision after the key is authenticated. It owns the
// counting (GCRA for rates, a counter per UTC period for quotas), the two
// counting stores and the IETF RateLimit header fields.
//
// # Counting stores
//
// Local counts in each replica's memory. Each replica enforces its share
// of every rate, 1/n with n the live replicas that the store's heartbeat
// table counts (RunHeartbeat; on SQLite, one); quotas add what the store's
// usage counts say the key spent (every replica's allowed decisions,
// written in batches) to what this replica allowed since (RefreshQuotas).
// It is approximate; the bounds are on Local.
//
// Redis (package limits/redisstore) counts in Redis, exact and shared: one Lua script (EVALSHA) checks
// and counts every limit of a key atomically, one round trip per limited
// decision, on the Redis server's clock. keygate does not invent a
// distributed counter of its own.
//
// # The limiter
//
// A Limiter puts the two together: the shared store when there is one and
// it answers, else the Fallback (count locally, let through, or refuse),
// counted in metrics and logged when it starts and stops. A quota seen
// spent stays refused on this replica until its period ends, whatever the
// store does meanwhile, so that an outage never lets a key past an
// exhausted quota that this replica knew of. While the shared store
// answers, the local buckets shadow what this replica allowed, so that the
// local fallback starts from what the key spent, not from a full burst.
//
//	l, _ := limits.New(limits.Options{Local: limits.NewLocal(store)})
//	if rec.Limited() {
//		v := l.Limit(ctx, rec, time.Now())
//		policy, state := v.Headers() // RateLimit-Policy, RateLimit
//	}
//
// # Errors
//
// Limit never fails: a store error becomes the fallback's verdict. NewRedis
// refuses a URL that does not parse, with an error that never repeats it
// (it may hold a password).
package limits
