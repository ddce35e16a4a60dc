package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/exaring/otelpgx"
	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"

	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/authz/extauthz"
	"github.com/keygate/keygate/internal/tlsfiles"
	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/policy"
)

// serveFlags configure the servers; serve and dev share them.
type serveFlags struct {
	GRPCAddr        string   `name:"grpc-addr" default:":9001" help:"Address of the gRPC listener: ext_authz Check, health, reflection."`
	HTTPAddr        string   `name:"http-addr" default:":9002" help:"Address of the HTTP listener: forward-auth (/auth for nginx, Caddy and Traefik; --envoy-http-prefix for Envoy's http_service), /healthz, /readyz, /metrics."`
	Policy          string   `placeholder:"FILE" help:"Policy file (YAML). Default: the built-in example, where accounts, users and authentication are closed to API keys."`
	KeyHeader       []string `default:"x-api-key,authorization" placeholder:"HEADER" help:"Headers the key is read from, in order; authorization means 'Bearer <key>'."`
	IdentityPrefix  string   `default:"x-keygate-" help:"Prefix of the identity headers set upstream (key-id, account-id, scopes, module)."`
	KeepCredentials bool     `help:"Forward the key header upstream instead of removing it."`
	LookupTimeout   duration `default:"100ms" placeholder:"DURATION" help:"Deadline of one database query for a key that is not cached; keep it well under Envoy's ext_authz timeout (default ${default})."`
	ShutdownTimeout duration `default:"15s" placeholder:"DURATION" help:"After the drain, how long shutdown waits for in-flight requests before closing connections (default ${default})."`
	Migrate         bool     `help:"Apply pending schema migrations before serving. Without it, serve waits (not ready) until the schema is migrated."`
	Reflection      bool     `help:"Serve gRPC server reflection (for grpcurl and other tools)."`

	DecisionLog     string  `enum:"off,denials,all" default:"denials" help:"Decisions logged, one JSON line each on stderr: off, denials or all (default ${default})."`
	DecisionLogRate float64 `default:"100" placeholder:"N" help:"Most decision log lines a second; the rest are counted and dropped (default ${default})."`
	DryRun          bool    `help:"Enforce nothing: every decision is made, logged and counted, but a denial lets the request through with x-keygate-dry-run: <outcome>."`

	TLSCertFile     string `name:"tls-cert-file" type:"existingfile" placeholder:"FILE" help:"PEM certificate for every listener; re-read when it changes. Needs --tls-key-file."`
	TLSKeyFile      string `name:"tls-key-file" type:"existingfile" placeholder:"FILE" help:"PEM private key of --tls-cert-file."`
	TLSClientCAFile string `name:"tls-client-ca-file" type:"existingfile" placeholder:"FILE" help:"PEM CA bundle: clients must present a certificate signed by it (mutual TLS). Needs --tls-cert-file."`

	CacheSize        int      `default:"100000" placeholder:"N" help:"Most keys (valid, revoked or unknown) held in memory (default ${default})."`
	CacheFresh       duration `default:"1m" placeholder:"DURATION" help:"Age after which a cached key is refreshed in the background; changes usually arrive sooner by notification (default ${default})."`
	CacheMaxStale    duration `default:"15m" placeholder:"DURATION" help:"How long past --cache-fresh a cached key keeps working while the database is unreachable; 0: not at all (default ${default})."`
	NegativeTTL      duration `default:"5s" placeholder:"DURATION" help:"How long an unknown key is remembered as unknown (creating it clears that at once) (default ${default})."`
	PollInterval     duration `default:"5s" placeholder:"DURATION" help:"Interval of the delta poll that catches changes whose notification was lost (default ${default})."`
	LastUsedInterval duration `default:"10s" placeholder:"DURATION" help:"Interval of the batched last-used writes (default ${default})."`

	forwardAuthFlags
	adminFlags
	controlFlags

	// Drain is serve's --drain-delay (dev, which no load balancer sends to,
	// has none).
	Drain time.Duration `kong:"-"`
}

type serveCmd struct {
	dbFlags
	keyFlags
	logFlags
	serveFlags
	DrainDelay duration `default:"5s" placeholder:"DURATION" help:"On SIGTERM, how long health and /readyz report not serving while requests are still answered, so that load balancers stop sending first; a second signal ends it early (default ${default})."`
}

func (c *serveCmd) Run(e *env) error {
	if c.DrainDelay < 0 {
		return usageError("--drain-delay: must not be negative")
	}
	c.Drain = time.Duration(c.DrainDelay)
	logger, err := c.logger(e.stderr)
	if err != nil {
		return err
	}
	return serve(e, logger, c.dbFlags, c.keyFlags, c.serveFlags, nil)
}

// validate rejects settings that would silently mean something else: every
// interval must be positive (--cache-max-stale may be 0),
// and TLS files come in pairs. It does no I/O.
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

// serve runs the servers until e.ctx ends, then shuts down in order:
// not ready at once, a drain while still answering, graceful stop, flush,
// close the pool. Everything the flags say is checked before any I/O.
// onServing, if set, is called once both listeners accept connections.
func serve(e *env, logger *slog.Logger, db dbFlags, kf keyFlags, sf serveFlags, onServing func(grpcAddr, httpAddr net.Addr)) error {
	// Configuration, all of it, before any I/O.
	if err := sf.validate(); err != nil {
		return err
	}
	forwardAuth, err := sf.forwardAuthFlags.options()
	if err != nil {
		return err
	}
	controls, err := sf.controlFlags.config()
	if err != nil {
		return err
	}
	pol, err := loadPolicy(sf.Policy, logger)
	if err != nil {
		return err
	}
	adminTokens, err := sf.loadTokens(logger)
	if err != nil {
		return err
	}
	poolCfg, err := db.poolConfig()
	if err != nil {
		return err
	}
	listenCfg, err := db.connConfig()
	if err != nil {
		return err
	}
	tlsFiles, err := sf.tls(logger)
	if err != nil {
		return err
	}
	tr, err := newTracing(e.ctx, e.getenv, logger)
	if err != nil {
		return err
	}
	defer tr.shutdown(context.WithoutCancel(e.ctx), logger)
	if tr.tp != nil {
		poolCfg.ConnConfig.Tracer = otelpgx.NewTracer(otelpgx.WithTracerProvider(tr.tp))
	}
	pool, err := pgxpool.NewWithConfig(e.ctx, poolCfg) // connects lazily
	if err != nil {
		return fmt.Errorf("database: %w", err)
	}
	defer pool.Close()
	store, err := kf.store(pool)
	if err != nil {
		return err
	}
	maxStale := time.Duration(sf.CacheMaxStale)
	if maxStale == 0 {
		maxStale = keystore.NoMaxStale
	}
	cacheOpts := keystore.CacheOptions{MaxKeys: sf.CacheSize, Fresh: time.Duration(sf.CacheFresh),
		MaxStale: maxStale, NegativeTTL: time.Duration(sf.NegativeTTL), LoadTimeout: time.Duration(sf.LookupTimeout)}
	authzCfg := authz.Config{
		Policy:          pol,
		KeyHeaders:      sf.KeyHeader,
		IdentityPrefix:  sf.IdentityPrefix,
		KeepCredentials: sf.KeepCredentials,
		Logger:          logger,
		DecisionLogger:  slog.New(slog.NewJSONHandler(e.stderr, nil)),
		DecisionLogRate: sf.DecisionLogRate,
		DryRun:          sf.DryRun,
	}
	authzCfg.DecisionLog, _ = authz.ParseDecisionLogMode(sf.DecisionLog) // kong checked the enum
	controls.apply(&authzCfg)
	if tr.tp != nil {
		cacheOpts.Tracer = tr.tp.Tracer("github.com/keygate/keygate/keystore")
		authzCfg.Tracer = tr.tp.Tracer("github.com/keygate/keygate/authz")
	}
	cache, err := keystore.NewCache(store, cacheOpts)
	if err != nil {
		return usageError("%v", err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), buildInfo())
	propagation := propagationHistogram(reg)
	watcher := keystore.NewWatcher(listenCfg, store, cache, keystore.WatchOptions{
		PollInterval: time.Duration(sf.PollInterval), Logger: logger,
		OnPropagation: func(d time.Duration) { propagation.Observe(d.Seconds()) }})
	usage := keystore.NewUsageRecorder(store, time.Duration(sf.LastUsedInterval), logger)
	registerStoreMetrics(reg, cache, sf.CacheSize, watcher, usage)
	authzCfg.Lookup, authzCfg.Usage, authzCfg.Hasher, authzCfg.Metrics = cache, usage, store.Hasher(), authz.NewMetrics(reg)
	authzServer, err := authz.NewServer(authzCfg)
	if err != nil {
		return authzConfigError(err)
	}
	registerDecisionLogMetrics(reg, authzServer)
	grpcMetrics := grpcprom.NewServerMetrics(grpcprom.WithServerHandlingTimeHistogram(
		grpcprom.WithHistogramBuckets([]float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1})))
	reg.MustRegister(grpcMetrics)

	healthServer := newHealthService()
	ready := newReadiness(healthServer)
	registerReadinessMetrics(reg, ready)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("GET /readyz", ready.ServeHTTP)
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	var tp trace.TracerProvider
	if tr.tp != nil {
		tp = tr.tp
	}
	httpMetrics := newHTTPInstruments(reg, tp)
	httpHandler, err := withForwardAuth(authzServer, forwardAuth, mux, logger, tlsFiles != nil && tlsFiles.MutualTLS(), httpMetrics)
	if err != nil {
		return err
	}

	// The listeners, so that a taken port fails before anything changes.
	grpcLis, err := net.Listen("tcp", sf.GRPCAddr)
	if err != nil {
		return usageError("--grpc-addr: %v", err)
	}
	defer grpcLis.Close()
	httpLis, err := net.Listen("tcp", sf.HTTPAddr)
	if err != nil {
		return usageError("--http-addr: %v", err)
	}
	defer httpLis.Close()
	adminLis, err := listenAdmin(sf.adminFlags, adminTokens, store, pol, logger, httpMetrics.wrap)
	if err != nil {
		return err
	}
	defer adminLis.close()

	// The schema: migrated when asked; otherwise serve waits for it.
	if sf.Migrate {
		applied, err := migrateSchema(e.ctx, listenCfg, logger)
		if err != nil {
			return fmt.Errorf("--migrate: %w", err)
		}
		logger.Info("schema migrated", "applied", len(applied))
	}

	gc := tuneGC(e.getenv, logger)
	grpcOpts := append(grpcServerOptions(), grpc.ChainUnaryInterceptor(grpcMetrics.UnaryServerInterceptor()))
	if tr.tp != nil {
		grpcOpts = append(grpcOpts, grpc.StatsHandler(otelgrpc.NewServerHandler(
			otelgrpc.WithTracerProvider(tr.tp), otelgrpc.WithPropagators(propagator))))
	}
	if tlsFiles != nil {
		// With mutual TLS, only clients with a certificate may ask for
		// decisions; the HTTP listener's health checks and metrics stay
		// open to probes without one, and the admin listener (browsers,
		// the host product's backend, with admin tokens) asks for none.
		grpcOpts = append(grpcOpts, grpc.Creds(credentials.NewTLS(tlsFiles.ServerConfig(tlsfiles.RequireClientCert))))
		httpLis = tls.NewListener(httpLis, tlsFiles.ServerConfig(tlsfiles.VerifyClientCertIfGiven))
		adminLis.useTLS(tlsFiles.ServerConfig(tlsfiles.NoClientCert))
	}
	grpcServer := extauthz.NewGRPCServer(controls.checkServer(authzServer, logger), grpcOpts...)
	healthpb.RegisterHealthServer(grpcServer, healthServer)
	if sf.Reflection {
		reflection.Register(grpcServer)
	}
	grpcMetrics.InitializeMetrics(grpcServer)

	httpServer := newHTTPServer(httpHandler, logger)

	// Background work runs until the servers have drained, so that the
	// last requests' uses are flushed too.
	workCtx, stopWork := context.WithCancel(context.WithoutCancel(e.ctx))
	defer stopWork()
	schemaReady := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 3)
	wg.Go(func() { errs <- grpcServer.Serve(grpcLis) })
	wg.Go(func() {
		if err := httpServer.Serve(httpLis); !errors.Is(err, http.ErrServerClosed) {
			errs <- err
		}
	})
	wg.Go(func() {
		watchStore(workCtx, storeWatch{store: store, connCfg: listenCfg, ready: ready, logger: logger, schemaReady: schemaReady})
	})
	wg.Go(func() {
		select {
		case <-schemaReady: // the listener resyncs and polls tables that must exist
			watcher.Run(workCtx)
		case <-workCtx.Done():
		}
	})
	wg.Go(func() { usage.Run(workCtx) })
	adminLis.start(workCtx, &wg, errs)
	logger.Info("keygate serving", "grpc_addr", grpcLis.Addr().String(), "http_addr", httpLis.Addr().String(),
		"tls", tlsFiles != nil, "mutual_tls", tlsFiles != nil && tlsFiles.MutualTLS(), "reflection", sf.Reflection,
		"policy_modules", len(pol.Modules), "version", version, "gogc", gc.gogc, "gomemlimit", gc.memoryLimit)
	if sf.DryRun {
		logger.Warn("DRY RUN: keygate is NOT ENFORCING; every denial is let through upstream with x-keygate-dry-run: <outcome>, and counted with dry_run=\"true\"")
	} else if mods := pol.DryRunModules(); len(mods) > 0 {
		logger.Warn("DRY RUN in some modules: keygate is NOT ENFORCING there; their denials are let through upstream with x-keygate-dry-run: <outcome>",
			"modules", strings.Join(mods, ","))
	}
	if onServing != nil {
		onServing(grpcLis.Addr(), httpLis.Addr())
	}

	var serveErr error
	select {
	case <-e.ctx.Done():
	case serveErr = <-errs:
		logger.Error("a listener failed; shutting down", "error", serveErr)
	}
	// A second signal during the drain ends it early.
	again := make(chan os.Signal, 1)
	signal.Notify(again, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(again)

	// Shutdown, in order: not ready at once, drain, graceful stop, flush,
	// close the pool.
	logger.Info("shutting down", "drain_delay", sf.Drain.String())
	ready.shutdown()
	if serveErr == nil && sf.Drain > 0 {
		drain := time.NewTimer(sf.Drain)
		select {
		case <-drain.C:
		case <-again:
			logger.Info("second signal: ending the drain early")
		}
		drain.Stop()
	}
	shutdownCtx, cancelShutdown := context.WithTimeout(context.Background(), time.Duration(sf.ShutdownTimeout))
	defer cancelShutdown()
	var stopping sync.WaitGroup
	stopping.Go(func() {
		stopped := make(chan struct{})
		go func() { grpcServer.GracefulStop(); close(stopped) }()
		select {
		case <-stopped:
		case <-shutdownCtx.Done():
			logger.Warn("graceful stop of the gRPC listener timed out; closing its connections")
			grpcServer.Stop()
		}
	})
	stopping.Go(func() {
		if err := httpServer.Shutdown(shutdownCtx); err != nil {
			logger.Warn("graceful stop of the HTTP listener timed out; closing its connections")
			httpServer.Close()
		}
	})
	stopping.Go(func() { adminLis.shutdown(shutdownCtx) })
	stopping.Wait()
	stopWork() // the usage recorder flushes once more
	wg.Wait()
	logger.Info("stopped")
	return serveErr
}

// grpcServerOptions tune the gRPC server for many small unary calls: a
// fixed set of workers serves the streams, so that a Check does not start
// a goroutine (and grow its stack) per request.
func grpcServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.NumStreamWorkers(uint32(4 * runtime.GOMAXPROCS(0))),
	}
}
