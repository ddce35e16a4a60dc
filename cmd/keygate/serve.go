package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"

	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/policy"
)

// serveFlags configure the servers; serve and dev share them.
type serveFlags struct {
	GRPCAddr        string   `name:"grpc-addr" default:":9001" help:"Address of the gRPC listener: ext_authz Check, health, reflection."`
	HTTPAddr        string   `name:"http-addr" default:":9002" help:"Address of the HTTP listener: /healthz, /readyz, /metrics."`
	Policy          string   `placeholder:"FILE" help:"Policy file (YAML). Default: the built-in example, where accounts, users and authentication are closed to API keys."`
	KeyHeader       []string `default:"x-api-key,authorization" placeholder:"HEADER" help:"Headers the key is read from, in order; authorization means 'Bearer <key>'."`
	IdentityPrefix  string   `default:"x-keygate-" help:"Prefix of the identity headers set upstream (key-id, account-id, scopes, module)."`
	KeepCredentials bool     `help:"Forward the key header upstream instead of removing it."`
	LookupTimeout   duration `default:"100ms" placeholder:"DURATION" help:"Deadline of one database query for a key that is not cached; keep it well under Envoy's ext_authz timeout (default ${default})."`
	ShutdownTimeout duration `default:"15s" placeholder:"DURATION" help:"How long a shutdown waits for in-flight requests before closing connections (default ${default})."`
	Migrate         bool     `help:"Apply pending schema migrations before serving."`

	CacheSize        int      `default:"100000" placeholder:"N" help:"Most keys (valid, revoked or unknown) held in memory (default ${default})."`
	CacheFresh       duration `default:"1m" placeholder:"DURATION" help:"Age after which a cached key is refreshed in the background; changes usually arrive sooner by notification (default ${default})."`
	CacheMaxStale    duration `default:"15m" placeholder:"DURATION" help:"How long past --cache-fresh a cached key keeps working while the database is unreachable; 0: not at all (default ${default})."`
	NegativeTTL      duration `default:"5s" placeholder:"DURATION" help:"How long an unknown key is remembered as unknown (creating it clears that at once) (default ${default})."`
	PollInterval     duration `default:"5s" placeholder:"DURATION" help:"Interval of the delta poll that catches changes whose notification was lost (default ${default})."`
	LastUsedInterval duration `default:"10s" placeholder:"DURATION" help:"Interval of the batched last-used writes (default ${default})."`

	adminFlags
}

type serveCmd struct {
	dbFlags
	keyFlags
	logFlags
	serveFlags
}

func (c *serveCmd) Run(e *env) error {
	logger, err := c.logger(e.stderr)
	if err != nil {
		return err
	}
	return serve(e, logger, c.dbFlags, c.keyFlags, c.serveFlags, nil)
}

// validateCache rejects cache and background settings that would
// silently mean something else: every interval must be positive
// (--cache-max-stale may be 0: no stale answers while the database is
// down).
func (sf serveFlags) validateCache() error {
	if sf.CacheSize <= 0 {
		return usageError("--cache-size: must be positive")
	}
	for _, f := range []struct {
		name string
		d    duration
	}{
		{"--cache-fresh", sf.CacheFresh}, {"--negative-ttl", sf.NegativeTTL},
		{"--poll-interval", sf.PollInterval}, {"--last-used-interval", sf.LastUsedInterval},
	} {
		if f.d <= 0 {
			return usageError("%s: must be positive, like 5s", f.name)
		}
	}
	return nil
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

// serve runs the servers until e.ctx ends, then shuts down in order:
// health NOT_SERVING, stop accepting and drain, flush, close the pool.
// onServing, if set, is called once both listeners accept connections.
func serve(e *env, logger *slog.Logger, db dbFlags, kf keyFlags, sf serveFlags, onServing func(grpcAddr, httpAddr net.Addr)) error {
	if sf.LookupTimeout <= 0 {
		return usageError("--lookup-timeout: must be positive")
	}
	gc := tuneGC(e.getenv, logger)
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
	if err := prepareSchema(e.ctx, db, sf.Migrate, logger); err != nil {
		return err
	}
	pool, err := pgxpool.NewWithConfig(e.ctx, poolCfg)
	if err != nil {
		return fmt.Errorf("database: %w", err)
	}
	defer pool.Close()
	store, err := kf.store(pool)
	if err != nil {
		return err
	}
	if err := sf.validateCache(); err != nil {
		return err
	}
	maxStale := time.Duration(sf.CacheMaxStale)
	if maxStale == 0 {
		maxStale = keystore.NoMaxStale
	}
	cache, err := keystore.NewCache(store, keystore.CacheOptions{MaxKeys: sf.CacheSize, Fresh: time.Duration(sf.CacheFresh),
		MaxStale: maxStale, NegativeTTL: time.Duration(sf.NegativeTTL), LoadTimeout: time.Duration(sf.LookupTimeout)})
	if err != nil {
		return usageError("%v", err)
	}
	listenCfg, err := db.connConfig()
	if err != nil {
		return err
	}
	watcher := keystore.NewWatcher(listenCfg, store, cache, keystore.WatchOptions{
		PollInterval: time.Duration(sf.PollInterval), Logger: logger})
	usage := keystore.NewUsageRecorder(store, time.Duration(sf.LastUsedInterval), logger)

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	registerStoreMetrics(reg, cache, watcher, usage)
	authzServer, err := authz.NewServer(authz.Config{
		Lookup:          cache,
		Usage:           usage,
		Policy:          pol,
		Hasher:          store.Hasher(),
		KeyHeaders:      sf.KeyHeader,
		IdentityPrefix:  sf.IdentityPrefix,
		KeepCredentials: sf.KeepCredentials,
		Metrics:         authz.NewMetrics(reg),
		Logger:          logger,
	})
	if err != nil {
		return usageError("%v", err)
	}

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
	adminLis, err := listenAdmin(sf.adminFlags, adminTokens, store, pol, logger)
	if err != nil {
		return err
	}
	defer adminLis.close()

	healthServer := newHealthService()
	grpcServer := authz.NewGRPCServer(authzServer, grpcServerOptions()...)
	healthpb.RegisterHealthServer(grpcServer, healthServer)
	reflection.Register(grpcServer)
	ready := newReadiness(healthServer)

	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("GET /readyz", ready.ServeHTTP)
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	httpServer := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}

	// Background work runs until the servers have drained, so that the
	// last requests' uses are flushed too.
	workCtx, stopWork := context.WithCancel(context.WithoutCancel(e.ctx))
	defer stopWork()
	var wg sync.WaitGroup
	errs := make(chan error, 3)
	wg.Go(func() { errs <- grpcServer.Serve(grpcLis) })
	wg.Go(func() {
		if err := httpServer.Serve(httpLis); !errors.Is(err, http.ErrServerClosed) {
			errs <- err
		}
	})
	wg.Go(func() { watchStore(workCtx, store, ready, logger) })
	wg.Go(func() { watcher.Run(workCtx) })
	wg.Go(func() { usage.Run(workCtx) })
	adminLis.start(workCtx, &wg, errs)
	logger.Info("keygate serving", "grpc_addr", grpcLis.Addr().String(), "http_addr", httpLis.Addr().String(),
		"policy_modules", len(pol.Modules), "version", version, "gogc", gc.gogc, "gomemlimit", gc.memoryLimit)
	if onServing != nil {
		onServing(grpcLis.Addr(), httpLis.Addr())
	}

	var serveErr error
	select {
	case <-e.ctx.Done():
	case serveErr = <-errs:
		logger.Error("a listener failed; shutting down", "error", serveErr)
	}

	// Shutdown, in order: NOT_SERVING, drain, flush, close the pool.
	logger.Info("shutting down")
	ready.shutdown()
	stopped := make(chan struct{})
	go func() { grpcServer.GracefulStop(); close(stopped) }()
	timer := time.NewTimer(time.Duration(sf.ShutdownTimeout))
	select {
	case <-stopped:
	case <-timer.C:
		logger.Warn("graceful stop timed out; closing connections")
		grpcServer.Stop()
	}
	timer.Stop()
	shutdownCtx, cancelShutdown := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancelShutdown()
	_ = httpServer.Shutdown(shutdownCtx)
	adminLis.shutdown(shutdownCtx)
	stopWork() // the usage recorder flushes once more
	wg.Wait()
	logger.Info("stopped")
	return serveErr
}

// prepareSchema applies migrations when asked, and otherwise refuses to
// serve an out-of-date schema. An unreachable database is not fatal: serve
// starts NOT_SERVING and recovers when the database returns.
func prepareSchema(ctx context.Context, db dbFlags, migrate bool, logger *slog.Logger) error {
	cfg, err := db.connConfig()
	if err != nil {
		return err
	}
	if migrate {
		applied, err := keystore.Migrate(ctx, cfg, logger)
		if err != nil {
			return fmt.Errorf("--migrate: %s", oneLineError(err))
		}
		logger.Info("schema migrated", "applied", len(applied))
		return nil
	}
	checkCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	pending, err := keystore.PendingMigrations(checkCtx, cfg)
	switch {
	case err != nil:
		logger.Warn("database unreachable at start; serving NOT_SERVING until it answers", "error", oneLineError(err))
	case pending:
		return errors.New("the database schema is not up to date: run 'keygate migrate' (or serve with --migrate)")
	}
	return nil
}

// grpcServerOptions tune the gRPC server for many small unary calls: a
// fixed set of workers serves the streams, so that a Check does not start
// a goroutine (and grow its stack) per request.
func grpcServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.NumStreamWorkers(uint32(4 * runtime.GOMAXPROCS(0))),
	}
}
