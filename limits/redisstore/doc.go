// Package redisstore is the redis counting store of package limits: exact
// and shared by every replica. One Lua script, run with EVALSHA, checks
// and counts all of a key's limits atomically (GCRA for rates on the
// Redis server's clock, a counter per key and UTC period for the quota),
// so that a limited decision costs one round trip. The client is
// github.com/redis/go-redis/v9.
//
// # Errors
//
// New refuses a URL that does not parse, without repeating it (it may
// hold a password). Take returns the client's error (unreachable, timed
// out, or an error reply); limits.Limiter turns it into its fallback.
package redisstore
