package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/limits"
	"github.com/keygate/keygate/limits/redisstore"
)

// limitFlags configure how serve (and dev) enforces keys' limits and keeps
// their usage.
type limitFlags struct {
	LimitStore        string   `group:"limits" enum:"local,redis" default:"local" help:"Where keys' limits are counted: local (each replica its share of every rate, the live replicas counted through the database; approximate) or redis (exact, shared; needs --redis-url)."`
	RedisURL          string   `group:"limits" name:"redis-url" placeholder:"URL" help:"Redis for --limit-store redis: redis://[user:password@]host:port[/db], or rediss:// for TLS."`
	RedisTimeout      duration `group:"limits" default:"${redis_timeout}" placeholder:"DURATION" help:"Deadline of one Redis round trip; past it the fallback decides."`
	LimitFallback     string   `group:"limits" enum:"local,allow,deny" default:"local" help:"While Redis cannot answer, limited keys are: local (counted in this replica's memory, its share of each rate), allow (let through uncounted) or deny (503). A quota seen spent stays refused either way."`
	HeartbeatInterval duration `group:"limits" default:"${heartbeat_interval}" placeholder:"DURATION" help:"How often a replica records that it serves; the local store divides rates by the replicas seen within three of these."`
	UsageRetention    duration `group:"limits" default:"${usage_retention}" placeholder:"DURATION" help:"How long usage is kept: per minute for 2 days, per hour for 40 days, then per day until this."`
}

// limitDefaults are the kong variables of the limit flags' defaults.
func limitDefaults() map[string]string {
	return map[string]string{
		"redis_timeout":      flagDuration(redisstore.DefaultTimeout),
		"heartbeat_interval": flagDuration(limits.DefaultHeartbeat),
		"usage_retention":    keystore.FormatDuration(keystore.DefaultUsageRetention.Days),
	}
}

// limitConfig is the checked limit flags.
type limitConfig struct {
	redis     *redisstore.Options // nil: the local store
	fallback  limits.Fallback
	heartbeat time.Duration
	retention keystore.UsageRetention
}

// config checks the flags, before any I/O: a Redis URL that parses when
// the store is redis, and none otherwise.
func (f limitFlags) config() (limitConfig, error) {
	c := limitConfig{fallback: limits.Fallbacks[f.LimitFallback], heartbeat: time.Duration(f.HeartbeatInterval),
		retention: keystore.DefaultUsageRetention}
	switch {
	case f.LimitStore == "redis" && f.RedisURL == "":
		return c, usageError("--redis-url: --limit-store redis needs a Redis URL, like redis://127.0.0.1:6379/0")
	case f.LimitStore != "redis" && f.RedisURL != "":
		return c, usageError("--redis-url: given, but --limit-store is %s; add --limit-store redis", f.LimitStore)
	case f.RedisTimeout <= 0:
		return c, usageError("--redis-timeout: must be positive, like 50ms")
	case f.HeartbeatInterval <= 0:
		return c, usageError("--heartbeat-interval: must be positive, like 5s")
	}
	if f.LimitStore == "redis" {
		if _, err := redisstore.ParseURL(f.RedisURL); err != nil {
			return c, usageError("--redis-url: %v", err)
		}
		c.redis = &redisstore.Options{URL: f.RedisURL, Timeout: time.Duration(f.RedisTimeout)}
	}
	c.retention.Days = time.Duration(f.UsageRetention)
	if err := c.retention.Check(); err != nil {
		return c, usageError("--usage-retention: %v (at least %s)", err, keystore.FormatDuration(keystore.DefaultUsageRetention.Hours))
	}
	return c, nil
}

// limitParts are the parts serve builds for limits and usage, and their
// background work.
type limitParts struct {
	limiter *limits.Limiter
	usage   *keystore.UsageCounter
	replica string
	cfg     limitConfig
	store   *keystore.Store
}

// buildLimits makes the limiter and the usage counter, and sets them in
// the decision's configuration.
func (s *server) buildLimits(reg prometheus.Registerer, decisions *authz.Config) error {
	cfg := s.cfg.limits
	local := limits.NewLocal(s.db.store)
	opts := limits.Options{Local: local, Fallback: cfg.fallback, Logger: s.logger, Registerer: reg}
	if cfg.redis != nil {
		r, err := redisstore.New(*cfg.redis)
		if err != nil {
			return usageError("--redis-url: %v", err)
		}
		s.onClose(func() { r.Close() })
		opts.Shared, opts.SharedName = r, "redis"
	}
	limiter, err := limits.New(opts)
	if err != nil {
		return err
	}
	usage, err := keystore.NewUsageCounter(s.db.store, keystore.UsageCounterOptions{
		Outcomes: authz.OutcomeNames(), Interval: s.cfg.lastUsedInterval, Retention: cfg.retention, Logger: s.logger,
		AfterFlush: func(ctx context.Context) {
			if err := local.RefreshQuotas(ctx, time.Now()); err != nil {
				s.logger.Warn("reading quotas' usage failed; will retry", "error", oneLine(err.Error()))
			}
		},
	})
	if err != nil {
		return err
	}
	registerUsageMetrics(reg, usage)
	s.limits = limitParts{limiter: limiter, usage: usage, replica: replicaID(), cfg: cfg, store: s.db.store}
	decisions.Limiter, decisions.Counter = limiter, usage
	return nil
}

// start runs the usage counter and the heartbeat until ctx ends; the
// counter flushes once more then.
func (p *limitParts) start(ctx context.Context, wg *sync.WaitGroup, s *server) {
	wg.Go(func() { p.usage.Run(ctx) })
	wg.Go(func() {
		select {
		case <-s.db.migrated: // the heartbeat table must exist
			p.limiter.Local().RunHeartbeat(ctx, p.store, p.replica, p.cfg.heartbeat, s.logger)
		case <-ctx.Done():
		}
	})
}

// replicaID names this replica in the heartbeat table: its host name and
// a random suffix, so that a restarted replica is a new one.
func replicaID() string {
	host, _ := os.Hostname()
	var b [4]byte
	rand.Read(b[:])
	return fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b[:]))
}

// registerUsageMetrics counts the usage counter's work.
func registerUsageMetrics(reg prometheus.Registerer, u *keystore.UsageCounter) {
	for name, help := range map[string]string{
		"keygate_usage_rows_written_total":   "Usage rows (one per key, minute and outcome) written.",
		"keygate_usage_write_failures_total": "Batched usage writes that failed (their counts are kept and written later).",
		"keygate_usage_dropped_total":        "Minutes of a key's usage dropped because writes kept failing for a day.",
	} {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 {
			st := u.Stats()
			switch name {
			case "keygate_usage_rows_written_total":
				return float64(st.Written)
			case "keygate_usage_write_failures_total":
				return float64(st.Failures)
			}
			return float64(st.Dropped)
		}))
	}
}
