package main

import (
	"io"
	"reflect"
	"testing"
	"time"

	"github.com/keygate/keygate/admin"
	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/authz/forwardauth"
	"github.com/keygate/keygate/keystore"
)

// parseCLI parses args with an empty environment, failing t on an error.
func parseCLI(t *testing.T, args ...string) *cli {
	t.Helper()
	var c cli
	if _, err := parse(&c, args, func(string) string { return "" }, io.Discard, io.Discard); err != nil {
		t.Fatalf("keygate %q: %v", args, err)
	}
	return &c
}

// Every flag default that stands for a package's constant is, once
// parsed, that constant (flagDefaults feeds them to kong), so that a flag
// and the package it configures cannot disagree.
func TestFlagDefaultsAreThePackages(t *testing.T) {
	t.Parallel()
	serve := parseCLI(t, "serve").Serve
	dev := parseCLI(t, "dev").Dev
	health := parseCLI(t, "health").Health
	rotate := parseCLI(t, "keys", "rotate", "an-id").Keys.Rotate
	cases := []struct {
		flag      string
		got, want any
	}{
		{"--grpc-addr", serve.GRPCAddr, defaultGRPCAddr},
		{"--http-addr", serve.HTTPAddr, defaultHTTPAddr},
		{"--admin-addr", serve.AdminAddr, defaultAdminAddr},
		{"--drain-delay", time.Duration(serve.DrainDelay), defaultDrainDelay},
		{"--shutdown-timeout", time.Duration(serve.ShutdownTimeout), defaultShutdownTimeout},
		{"--key-header", serve.KeyHeader, authz.DefaultKeyHeaders},
		{"--identity-prefix", serve.IdentityPrefix, authz.DefaultIdentityPrefix},
		{"--decision-log-rate", serve.DecisionLogRate, float64(authz.DefaultDecisionLogRate)},
		{"--envoy-http-prefix", serve.EnvoyHTTPPrefix, forwardauth.DefaultEnvoyPrefix},
		{"--lookup-timeout", time.Duration(serve.LookupTimeout), keystore.DefaultLoadTimeout},
		{"--cache-size", serve.CacheSize, keystore.DefaultCacheKeys},
		{"--cache-fresh", time.Duration(serve.CacheFresh), keystore.DefaultFresh},
		{"--cache-max-stale", time.Duration(serve.CacheMaxStale), keystore.DefaultMaxStale},
		{"--negative-ttl", time.Duration(serve.NegativeTTL), keystore.DefaultNegativeTTL},
		{"--poll-interval", time.Duration(serve.PollInterval), keystore.DefaultPollInterval},
		{"--last-used-interval", time.Duration(serve.LastUsedInterval), keystore.DefaultUsageFlushInterval},
		{"--key-prefix", serve.KeyPrefix, keystore.DefaultPrefix},
		{"dev --grpc-addr", dev.GRPCAddr, defaultGRPCAddr},
		{"dev --cache-size", dev.CacheSize, keystore.DefaultCacheKeys},
		{"health --grpc-addr", health.GRPCAddr, defaultGRPCAddr},
		{"health --timeout", time.Duration(health.Timeout), defaultHealthTimeout},
		{"keys rotate --grace", time.Duration(rotate.Grace), admin.DefaultGrace},
	}
	for _, c := range cases {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s defaults to %v, want %v", c.flag, c.got, c.want)
		}
	}
}

func TestFlagDuration(t *testing.T) {
	t.Parallel()
	for d, want := range map[time.Duration]string{
		100 * time.Millisecond: "100ms", 5 * time.Second: "5s", time.Minute: "1m", 90 * time.Second: "1m30s",
		15 * time.Minute: "15m", time.Hour: "1h", 24 * time.Hour: "24h", 90 * time.Minute: "1h30m", time.Hour + time.Second: "1h0m1s",
	} {
		if got := flagDuration(d); got != want {
			t.Errorf("flagDuration(%v) = %q, want %q", d, got, want)
		}
		if back, err := keystore.ParseDuration(flagDuration(d)); err != nil || back != d {
			t.Errorf("%q reads back as %v, %v", flagDuration(d), back, err)
		}
	}
}
