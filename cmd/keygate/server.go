package main

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
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

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/reflection"

	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/authz/extauthz"
	"github.com/keygate/keygate/internal/grpcmetrics"
	"github.com/keygate/keygate/internal/readiness"
	"github.com/keygate/keygate/internal/tlsfiles"
	"github.com/keygate/keygate/keystore"
)

// server is `keygate serve` built from a serveConfig: every part is made
// and the listeners are open (tests read their addresses here), but
// nothing is served until Run. Close releases what build opened, after
// Run or instead of it.
type server struct {
	cfg    serveConfig
	logger *slog.Logger

	db      *storage
	watcher *keystore.Watcher
	usage   *keystore.UsageRecorder
	events  *eventWorkers
	limits  limitParts
	ready   *readiness.Status

	grpcLis, httpLis net.Listener
	grpc             *grpc.Server
	http             *http.Server
	admin            *adminListener
	gc               gcSettings

	closers []func() // what Close undoes, in the order build did it
}

// build makes serve's parts from cfg, in dependency order: tracing, the
// store, the decision path (cache, change watcher, usage recorder, authz),
// metrics and readiness, the listeners (so that a taken port fails before
// anything changes), the schema migration when asked, and the servers.
// On an error it closes what it opened.
func build(e *env, logger *slog.Logger, cfg serveConfig) (_ *server, err error) {
	s := &server{cfg: cfg, logger: logger}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	tr, err := newTracing(e.ctx, e.getenv, logger)
	if err != nil {
		return nil, err
	}
	s.onClose(func() { tr.shutdown(context.Background(), logger) })
	var tp trace.TracerProvider // nil: no tracing
	if tr.tp != nil {
		tp = tr.tp
	}
	if s.db, err = openStorage(e.ctx, cfg.store, tp); err != nil {
		return nil, err
	}
	s.onClose(s.db.close)

	reg := newRegistry()
	core, err := s.buildDecisions(reg, tp, e.stderr)
	if err != nil {
		return nil, err
	}
	s.ready = readiness.New(extauthz.ServiceName)
	registerReadinessMetrics(reg, s.ready, &s.db.reachable)
	s.db.registerReadMetrics(reg)
	httpMetrics := newHTTPInstruments(reg, tp)
	httpHandler, err := s.httpHandler(core, reg, httpMetrics)
	if err != nil {
		return nil, err
	}
	if err := s.listen(httpMetrics); err != nil {
		return nil, err
	}
	if err := s.buildEvents(reg); err != nil {
		return nil, err
	}
	if cfg.migrate {
		if err := s.db.migrate(e.ctx, logger); err != nil {
			return nil, err
		}
	}
	if err := s.db.check(e.ctx, logger); err != nil {
		return nil, err
	}
	s.gc = tuneGC(e.getenv, logger)
	s.grpc = s.grpcServer(core, reg, tp)
	s.http = newHTTPServer(httpHandler, logger)
	return s, nil
}

// onClose adds f to what Close undoes.
func (s *server) onClose(f func()) { s.closers = append(s.closers, f) }

// newRegistry is the metrics registry, with the Go runtime's, the
// process's and the build's metrics.
func newRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), buildInfo())
	return reg
}

// buildDecisions makes the decision path: the cache in front of the
// store, the watcher that keeps it current, the usage recorder, and the
// authz core; decision log lines go to decisionLog.
func (s *server) buildDecisions(reg prometheus.Registerer, tp trace.TracerProvider, decisionLog io.Writer) (*authz.Server, error) {
	cacheOpts := s.cfg.cache
	decisions := s.cfg.decisions
	if tp != nil {
		cacheOpts.Tracer = tp.Tracer("github.com/keygate/keygate/keystore")
		decisions.Tracer = tp.Tracer("github.com/keygate/keygate/authz")
	}
	cache, err := keystore.NewCache(s.db.store, cacheOpts)
	if err != nil {
		return nil, usageError("%v", err)
	}
	propagation := propagationHistogram(reg)
	s.watcher = s.db.newWatcher(cache, keystore.WatchOptions{PollInterval: s.cfg.pollInterval, Logger: s.logger,
		OnPropagation: func(d time.Duration) { propagation.Observe(d.Seconds()) }})
	s.usage = keystore.NewUsageRecorder(s.db.store, s.cfg.lastUsedInterval, s.logger)
	registerStoreMetrics(reg, cache, cacheOpts.MaxKeys, s.watcher, s.usage)
	decisions.Lookup, decisions.Usage, decisions.Hasher, decisions.Metrics = cache, s.usage, s.db.store.Hasher(), authz.NewMetrics(reg)
	decisions.Logger, decisions.DecisionLogger = s.logger, slog.New(slog.NewJSONHandler(decisionLog, nil))
	if err := s.buildLimits(reg, &decisions); err != nil {
		return nil, err
	}
	core, err := authz.NewServer(decisions)
	if err != nil {
		return nil, authzConfigError(err)
	}
	registerDecisionLogMetrics(reg, core)
	return core, nil
}

// httpHandler is the HTTP listener's handler: forward-auth in front of
// /healthz, /readyz and /metrics.
func (s *server) httpHandler(core *authz.Server, reg *prometheus.Registry, metrics *httpInstruments) (http.Handler, error) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", readiness.Alive)
	mux.Handle("GET /readyz", s.ready)
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mutualTLS := s.cfg.tls != nil && s.cfg.tls.MutualTLS()
	return withForwardAuth(core, s.cfg.forwardAuth, mux, s.logger, mutualTLS, metrics)
}

// listen opens the listeners: gRPC, HTTP and, when on, admin. With TLS,
// only clients with a certificate may ask for decisions under mutual TLS;
// the HTTP listener's health checks and metrics stay open to probes
// without one, and the admin listener (browsers, the host product's
// backend, with admin tokens) asks for none.
func (s *server) listen(metrics *httpInstruments) error {
	var err error
	if s.grpcLis, err = net.Listen("tcp", s.cfg.grpcAddr); err != nil {
		return usageError("--grpc-addr: %v", err)
	}
	s.onClose(func() { s.grpcLis.Close() })
	if s.httpLis, err = net.Listen("tcp", s.cfg.httpAddr); err != nil {
		return usageError("--http-addr: %v", err)
	}
	s.onClose(func() { s.httpLis.Close() })
	var adminTLS *tls.Config
	if s.cfg.tls != nil {
		s.httpLis = tls.NewListener(s.httpLis, s.cfg.tls.ServerConfig(tlsfiles.VerifyClientCertIfGiven))
		adminTLS = s.cfg.tls.ServerConfig(tlsfiles.NoClientCert)
	}
	if s.admin, err = listenAdmin(s.cfg.admin, s.db.store, s.cfg.decisions.Policy, s.logger, metrics.wrap, adminTLS); err != nil {
		return err
	}
	s.onClose(s.admin.close)
	return nil
}

// grpcWorkersPerCPU is the number of gRPC stream workers per GOMAXPROCS.
const grpcWorkersPerCPU = 64

// grpcServer is the gRPC server: Envoy's Authorization service, health,
// and reflection when asked, measured and (with tracing on) traced.
func (s *server) grpcServer(core *authz.Server, reg prometheus.Registerer, tp trace.TracerProvider) *grpc.Server {
	metrics := grpcmetrics.New(handlingBuckets)
	reg.MustRegister(metrics)
	opts := []grpc.ServerOption{
		// A fixed set of workers serves the streams, so that a Check does
		// not start a goroutine (and grow its stack) per request: a miss
		// runs its query on the worker (keystore.Cache.load), deep through
		// the driver. Streams beyond the workers get goroutines of their
		// own, so there are enough for Envoy's usual concurrency per
		// replica; an idle worker costs its stack.
		grpc.NumStreamWorkers(uint32(grpcWorkersPerCPU * runtime.GOMAXPROCS(0))),
		grpc.ChainUnaryInterceptor(metrics.UnaryServerInterceptor()),
	}
	if tp != nil {
		opts = append(opts, grpc.StatsHandler(otelgrpc.NewServerHandler(otelgrpc.WithTracerProvider(tp), otelgrpc.WithPropagators(propagator))))
	}
	if s.cfg.tls != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(s.cfg.tls.ServerConfig(tlsfiles.RequireClientCert))))
	}
	source := s.cfg.grpcSource
	source.Logger = s.logger
	g := extauthz.NewGRPCServer(extauthz.New(core, source), opts...)
	s.ready.RegisterHealth(g)
	if s.cfg.reflection {
		reflection.Register(g)
	}
	metrics.Initialize(g)
	return g
}

// grpcAddr, httpAddr and adminAddr are the listeners' addresses (admin:
// nil when off).
func (s *server) grpcAddr() net.Addr  { return s.grpcLis.Addr() }
func (s *server) httpAddr() net.Addr  { return s.httpLis.Addr() }
func (s *server) adminAddr() net.Addr { return s.admin.addr() }

// Run serves until ctx ends or a listener fails, then shuts down in
// order: not ready at once, a drain while still answering (a second signal
// ends it early), graceful stop with a hard-stop fallback, and a last
// flush of the batched writes. It returns the listener's error, if any.
func (s *server) Run(ctx context.Context) error {
	// Background work runs until the servers have drained, so that the
	// last requests' uses are flushed too.
	workCtx, stopWork := context.WithCancel(context.WithoutCancel(ctx))
	defer stopWork()
	var wg sync.WaitGroup
	errs := make(chan error, 3)
	wg.Go(func() { errs <- s.grpc.Serve(s.grpcLis) })
	wg.Go(func() {
		if err := s.http.Serve(s.httpLis); !errors.Is(err, http.ErrServerClosed) {
			errs <- err
		}
	})
	wg.Go(func() {
		s.ready.Watch(workCtx, readiness.WatchOptions{Probe: s.db.probe, Interval: storeCheckInterval, Logger: s.logger, ReadyLog: readyLog})
	})
	wg.Go(func() { s.db.runWatcher(workCtx, s.watcher) })
	wg.Go(func() { s.usage.Run(workCtx) })
	s.events.start(workCtx, &wg)
	s.limits.start(workCtx, &wg, s)
	s.admin.start(workCtx, &wg, errs)
	s.logServing()

	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errs:
		s.logger.Error("a listener failed; shutting down", "error", serveErr)
	}
	s.shutdown(serveErr == nil)
	stopWork() // the usage recorder flushes once more
	wg.Wait()
	s.logger.Info("stopped")
	return serveErr
}

// logServing says that keygate serves, where, and how; and warns when it
// enforces nothing, or not everywhere.
func (s *server) logServing() {
	pol := s.cfg.decisions.Policy
	mutualTLS := s.cfg.tls != nil && s.cfg.tls.MutualTLS()
	s.logger.Info("keygate serving", "grpc_addr", s.grpcAddr().String(), "http_addr", s.httpAddr().String(),
		"tls", s.cfg.tls != nil, "mutual_tls", mutualTLS, "reflection", s.cfg.reflection,
		"policy_modules", len(pol.Modules), "version", version, "gogc", s.gc.gogc, "gomemlimit", s.gc.memoryLimit)
	if s.cfg.decisions.DryRun {
		s.logger.Warn("DRY RUN: keygate is NOT ENFORCING; every denial is let through upstream with x-keygate-dry-run: <outcome>, and counted with dry_run=\"true\"")
	} else if mods := pol.DryRunModules(); len(mods) > 0 {
		s.logger.Warn("DRY RUN in some modules: keygate is NOT ENFORCING there; their denials are let through upstream with x-keygate-dry-run: <outcome>",
			"modules", strings.Join(mods, ","))
	}
}

// shutdown stops the servers: not ready at once, then the drain (when
// drain is set and cfg has one), then every listener's graceful stop
// within the shutdown timeout, after which connections are closed.
func (s *server) shutdown(drain bool) {
	// A second signal during the drain ends it early.
	again := make(chan os.Signal, 1)
	signal.Notify(again, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(again)

	s.logger.Info("shutting down", "drain_delay", s.cfg.drain.String())
	s.ready.Shutdown()
	if drain && s.cfg.drain > 0 {
		t := time.NewTimer(s.cfg.drain)
		select {
		case <-t.C:
		case <-again:
			s.logger.Info("second signal: ending the drain early")
		}
		t.Stop()
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.shutdownTimeout)
	defer cancel()
	var stopping sync.WaitGroup
	stopping.Go(func() {
		stopped := make(chan struct{})
		go func() { s.grpc.GracefulStop(); close(stopped) }()
		select {
		case <-stopped:
		case <-ctx.Done():
			s.logger.Warn("graceful stop of the gRPC listener timed out; closing its connections")
			s.grpc.Stop()
		}
	})
	stopping.Go(func() {
		if err := s.http.Shutdown(ctx); err != nil {
			s.logger.Warn("graceful stop of the HTTP listener timed out; closing its connections")
			s.http.Close()
		}
	})
	stopping.Go(func() { s.admin.shutdown(ctx) })
	stopping.Wait()
}

// Close releases what build opened, the last first: the listeners, the
// database, and tracing (flushing the spans still buffered).
func (s *server) Close() {
	for i := len(s.closers) - 1; i >= 0; i-- {
		s.closers[i]()
	}
	s.closers = nil
}
