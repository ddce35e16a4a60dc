package main

import (
	"errors"
	"log/slog"
	"time"

	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/authz/extauthz"
	"github.com/keygate/keygate/authz/forwardauth"
	"github.com/keygate/keygate/internal/tlsfiles"
	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/policy"
)

// serveFlags configure the servers; serve and dev share them. Each
// default is a kong variable set from the constant it stands for
// (flagDefaults).
type serveFlags struct {
	GRPCAddr        string   `group:"listeners" name:"grpc-addr" default:"${grpc_addr}" help:"Address of the gRPC listener: ext_authz Check, health, reflection."`
	HTTPAddr        string   `group:"listeners" name:"http-addr" default:"${http_addr}" help:"Address of the HTTP listener: forward-auth (/auth for nginx, Caddy and Traefik; --envoy-http-prefix for Envoy's http_service), /healthz, /readyz, /metrics."`
	Policy          string   `group:"policy" placeholder:"FILE" help:"Policy file (YAML). Default: the built-in example, where accounts, users and authentication are closed to API keys."`
	KeyHeader       []string `group:"policy" default:"${key_headers}" placeholder:"HEADER" help:"Headers the key is read from, in order; authorization means 'Bearer <key>'."`
	IdentityPrefix  string   `group:"policy" default:"${identity_prefix}" help:"Prefix of the identity headers set upstream (key-id, account-id, scopes, module)."`
	KeepCredentials bool     `group:"policy" help:"Forward the key header upstream instead of removing it."`
	LookupTimeout   duration `group:"store" default:"${lookup_timeout}" placeholder:"DURATION" help:"Deadline of one database query for a key that is not cached; keep it well under Envoy's ext_authz timeout."`
	ShutdownTimeout duration `group:"listeners" default:"${shutdown_timeout}" placeholder:"DURATION" help:"After the drain, how long shutdown waits for in-flight requests before closing connections."`
	Migrate         bool     `group:"store" help:"Apply pending schema migrations before serving. Without it, serve waits (not ready) until the schema is migrated."`
	Reflection      bool     `group:"listeners" help:"Serve gRPC server reflection (for grpcurl and other tools)."`

	DecisionLog     string  `group:"logging" enum:"off,denials,all" default:"denials" help:"Decisions logged, one JSON line each on stderr: off, denials or all."`
	DecisionLogRate float64 `group:"logging" default:"${decision_log_rate}" placeholder:"N" help:"Most decision log lines a second; the rest are counted and dropped."`
	DryRun          bool    `group:"policy" help:"Enforce nothing: every decision is made, logged and counted, but a denial lets the request through with x-keygate-dry-run: <outcome>."`

	TLSCertFile     string `group:"tls" name:"tls-cert-file" type:"existingfile" placeholder:"FILE" help:"PEM certificate for every listener; re-read when it changes. Needs --tls-key-file."`
	TLSKeyFile      string `group:"tls" name:"tls-key-file" type:"existingfile" placeholder:"FILE" help:"PEM private key of --tls-cert-file."`
	TLSClientCAFile string `group:"tls" name:"tls-client-ca-file" type:"existingfile" placeholder:"FILE" help:"PEM CA bundle: clients must present a certificate signed by it (mutual TLS). Needs --tls-cert-file."`

	CacheSize        int      `group:"cache" default:"${cache_size}" placeholder:"N" help:"Most keys (valid, revoked or unknown) held in memory."`
	CacheFresh       duration `group:"cache" default:"${cache_fresh}" placeholder:"DURATION" help:"Age after which a cached key is refreshed in the background; changes usually arrive sooner by notification."`
	CacheMaxStale    duration `group:"cache" default:"${cache_max_stale}" placeholder:"DURATION" help:"How long past --cache-fresh a cached key keeps working while the database is unreachable; 0: not at all."`
	NegativeTTL      duration `group:"cache" default:"${negative_ttl}" placeholder:"DURATION" help:"How long an unknown key is remembered as unknown (creating it clears that at once)."`
	PollInterval     duration `group:"cache" default:"${poll_interval}" placeholder:"DURATION" help:"Interval of the delta poll that catches changes whose notification was lost."`
	LastUsedInterval duration `group:"store" default:"${last_used_interval}" placeholder:"DURATION" help:"Interval of the batched last-used writes."`

	forwardAuthFlags
	adminFlags
	controlFlags
	eventFlags
	limitFlags
}

// serveConfig is serve's configuration, checked: the values its parts are
// built from. Making one (serveFlags.config) reads the files the flags
// name (policy, admin tokens, TLS) and does no other I/O.
type serveConfig struct {
	grpcAddr, httpAddr string
	reflection         bool
	migrate            bool          // apply pending migrations before serving
	drain              time.Duration // serve's --drain-delay; dev, which no load balancer sends to, has none
	shutdownTimeout    time.Duration

	store            storeConfig // the database (storage.go)
	cache            keystore.CacheOptions
	pollInterval     time.Duration
	lastUsedInterval time.Duration

	// decisions is authz's configuration but for what build makes: the
	// lookup, the usage recorder, the hasher, metrics, loggers, tracer.
	decisions   authz.Config
	grpcSource  extauthz.Options // where a gRPC request's client address comes from
	forwardAuth forwardauth.Options
	tls         *tlsfiles.Files // nil: plain text
	admin       adminConfig
	events      eventsConfig // webhooks, expiry warnings, the leak intake (events.go)
	limits      limitConfig
}

// config checks the flags, all of them, before any I/O: every interval
// must be positive (--cache-max-stale may be 0), TLS files come in pairs,
// and the files named must hold what they should.
func (sf serveFlags) config(db dbFlags, kf keyFlags, getenv func(string) string, logger *slog.Logger) (serveConfig, error) {
	if err := sf.validate(); err != nil {
		return serveConfig{}, err
	}
	cfg := serveConfig{
		grpcAddr: sf.GRPCAddr, httpAddr: sf.HTTPAddr, reflection: sf.Reflection, migrate: sf.Migrate,
		shutdownTimeout: time.Duration(sf.ShutdownTimeout),
		pollInterval:    time.Duration(sf.PollInterval), lastUsedInterval: time.Duration(sf.LastUsedInterval),
		cache: keystore.CacheOptions{MaxKeys: sf.CacheSize, Fresh: time.Duration(sf.CacheFresh), MaxStale: time.Duration(sf.CacheMaxStale),
			NegativeTTL: time.Duration(sf.NegativeTTL), LoadTimeout: time.Duration(sf.LookupTimeout)},
	}
	if cfg.cache.MaxStale == 0 {
		cfg.cache.MaxStale = keystore.NoMaxStale
	}
	var err error
	if cfg.forwardAuth, err = sf.forwardAuthFlags.options(); err != nil {
		return serveConfig{}, err
	}
	controls, err := sf.controlFlags.config()
	if err != nil {
		return serveConfig{}, err
	}
	if cfg.limits, err = sf.limitFlags.config(); err != nil {
		return serveConfig{}, err
	}
	pol, err := loadPolicy(sf.Policy, logger)
	if err != nil {
		return serveConfig{}, err
	}
	if cfg.admin, err = sf.adminFlags.config(logger); err != nil {
		return serveConfig{}, err
	}
	if cfg.events, err = sf.eventFlags.config(); err != nil {
		return serveConfig{}, err
	}
	cfg.admin.events = cfg.events.admin()
	if cfg.store, err = db.storeConfig(kf, getenv); err != nil {
		return serveConfig{}, err
	}
	if cfg.tls, err = sf.tls(logger); err != nil {
		return serveConfig{}, err
	}
	cfg.decisions = authz.Config{
		Policy:          pol,
		KeyHeaders:      sf.KeyHeader,
		IdentityPrefix:  sf.IdentityPrefix,
		KeepCredentials: sf.KeepCredentials,
		DecisionLogRate: sf.DecisionLogRate,
		DryRun:          sf.DryRun,
	}
	cfg.decisions.DecisionLog, _ = authz.ParseDecisionLogMode(sf.DecisionLog) // kong checked the enum
	controls.apply(&cfg.decisions)
	if err := cfg.decisions.CheckSettings(); err != nil {
		return serveConfig{}, authzConfigError(err)
	}
	cfg.grpcSource = controls.extauthz
	return cfg, nil
}

// validate rejects settings that would silently mean something else. It
// does no I/O.
func (sf serveFlags) validate() error {
	if sf.CacheSize <= 0 {
		return usageError("--cache-size: must be positive")
	}
	for _, f := range []struct {
		name string
		d    duration
	}{
		{"--lookup-timeout", sf.LookupTimeout}, {"--shutdown-timeout", sf.ShutdownTimeout},
		{"--cache-fresh", sf.CacheFresh}, {"--negative-ttl", sf.NegativeTTL},
		{"--poll-interval", sf.PollInterval}, {"--last-used-interval", sf.LastUsedInterval},
	} {
		if f.d <= 0 {
			return usageError("%s: must be positive, like 5s", f.name)
		}
	}
	if sf.CacheMaxStale < 0 {
		return usageError("--cache-max-stale: must not be negative")
	}
	if sf.DecisionLogRate <= 0 {
		return usageError("--decision-log-rate: must be positive")
	}
	switch {
	case (sf.TLSCertFile == "") != (sf.TLSKeyFile == ""):
		return usageError("--tls-cert-file and --tls-key-file go together")
	case sf.TLSClientCAFile != "" && sf.TLSCertFile == "":
		return usageError("--tls-client-ca-file needs --tls-cert-file and --tls-key-file")
	}
	return nil
}

// tls loads the listeners' TLS files, or returns nil for plain text.
func (sf serveFlags) tls(logger *slog.Logger) (*tlsfiles.Files, error) {
	if sf.TLSCertFile == "" {
		return nil, nil
	}
	files, err := tlsfiles.Load(sf.TLSCertFile, sf.TLSKeyFile, sf.TLSClientCAFile, logger)
	if err != nil {
		return nil, usageError("--tls-cert-file: %v", err)
	}
	return files, nil
}

// loadPolicy reads --policy, or takes the built-in example and says so.
func loadPolicy(path string, logger *slog.Logger) (*policy.Policy, error) {
	if path == "" {
		logger.Info("no --policy given: using the built-in example policy; accounts, users and authentication are closed to API keys")
		return policy.Example(), nil
	}
	p, err := policy.Load(path)
	if err != nil {
		return nil, usageError("--policy: %v", err)
	}
	return p, nil
}

// authzFlagOf names the flag behind an authz.ConfigError's setting.
var authzFlagOf = map[string]string{"KeyHeaders": "--key-header", "IdentityPrefix": "--identity-prefix"}

// authzConfigError maps an error of authz.NewServer to the flag behind it.
func authzConfigError(err error) error {
	var ce *authz.ConfigError
	if errors.As(err, &ce) && authzFlagOf[ce.Setting] != "" {
		return usageError("%s: %s", authzFlagOf[ce.Setting], ce.Problem)
	}
	return err
}
