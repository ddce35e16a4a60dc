package main

import (
	"bufio"
	"context"
	"debug/buildinfo"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/keygate/keygate/internal/pgcluster"
	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/keystore/postgres"
	"github.com/keygate/keygate/keystore/sqlite"
)

// benchAccount owns the seeded keys.
const benchAccount = "keygate-bench"

// setup is what every mode shares.
type setup struct {
	cfg     *config
	self    string // this binary, for the reference servers
	bin     string // keygate
	dbURL   string
	dbLocal bool // the database runs here: its backends' CPU is readable
	pool    *pgxpool.Pool
	reqs    []*authv3.CheckRequest
	secrets []string
	env     []string
	stderr  io.Writer
}

func bench(ctx context.Context, cfg *config, stdout, stderr io.Writer) error {
	began := time.Now()
	tmp, err := os.MkdirTemp("", "keygate-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	s := &setup{cfg: cfg, bin: cfg.keygateBin, dbURL: cfg.databaseURL, env: childEnv(cfg), stderr: stderr}
	if s.self, err = os.Executable(); err != nil {
		return err
	}

	// Build keygate and start PostgreSQL side by side.
	var (
		wg                  sync.WaitGroup
		buildErr, clusterEr error
		cluster             *pgcluster.Cluster
	)
	if s.bin == "" {
		s.bin = filepath.Join(tmp, "keygate")
		progress(stderr, "building keygate")
		wg.Go(func() { buildErr = buildKeygate(ctx, s.bin) })
	}
	if s.dbURL == "" && cfg.store == "postgres" {
		progress(stderr, "starting a throwaway PostgreSQL cluster")
		wg.Go(func() {
			if cluster, clusterEr = pgcluster.Start(); clusterEr == nil {
				s.dbURL, s.dbLocal = cluster.URL(), true
			}
		})
	} else if cfg.store == "postgres" {
		s.dbLocal = isLocal(s.dbURL)
	}
	wg.Wait()
	if cluster != nil {
		defer cluster.Destroy()
	}
	if buildErr != nil {
		return buildErr
	}
	if clusterEr != nil {
		return fmt.Errorf("PostgreSQL: %w", clusterEr)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	kgVersion := "unknown"
	if bi, err := buildinfo.ReadFile(s.bin); err == nil {
		kgVersion = bi.GoVersion
	}

	// Schema and keys.
	var (
		backend  keystore.Backend
		database string
	)
	if cfg.store == "sqlite" {
		path := filepath.Join(tmp, "keygate.db")
		b, err := sqlite.Open(ctx, path, sqlite.Options{Create: true})
		if err != nil {
			return err
		}
		defer b.Close()
		if _, err := b.Migrate(ctx, slog.New(slog.DiscardHandler)); err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
		backend, s.dbURL = b, "sqlite:"+path
		database = "SQLite (modernc.org/sqlite), a file in a temporary directory"
	} else {
		connCfg, err := pgx.ParseConfig(s.dbURL)
		if err != nil {
			return fmt.Errorf("--database-url: %w", err)
		}
		if _, err := postgres.Migrate(ctx, connCfg, slog.New(slog.DiscardHandler)); err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
		if s.pool, err = pgxpool.New(ctx, s.dbURL); err != nil {
			return err
		}
		defer s.pool.Close()
		var pgVersion string
		if err := s.pool.QueryRow(ctx, `SHOW server_version`).Scan(&pgVersion); err != nil {
			return err
		}
		where := "given by --database-url"
		if cluster != nil {
			where = "throwaway cluster on 127.0.0.1 (fsync off)"
		}
		backend, database = postgres.New(s.pool, postgres.Options{}), "PostgreSQL "+pgVersion+", "+where
	}
	progress(stderr, "seeding %d keys", cfg.keys)
	seedStart := time.Now()
	secrets, err := seed(ctx, backend, cfg.keys, cfg.limits)
	if err != nil {
		return err
	}
	seedTime := time.Since(seedStart)
	s.secrets = secrets
	for _, sec := range secrets {
		s.reqs = append(s.reqs, checkRequest(sec))
	}

	ncpu, model := cpuInfo()
	fmt.Fprintf(stdout, "command:  %s\n", commandLine(cfg.args))
	fmt.Fprintf(stdout, "go:       %s (bench), %s (keygate binary), %s/%s\n", runtime.Version(), kgVersion, runtime.GOOS, runtime.GOARCH)
	fmt.Fprintf(stdout, "machine:  %d CPUs, %s; GOMAXPROCS %d (bench)\n", ncpu, model, runtime.GOMAXPROCS(0))
	fmt.Fprintf(stdout, "database: %s; %d keys seeded in %s via keystore.Store.Create\n", database, cfg.keys, seedTime.Round(time.Millisecond))
	conns := fmt.Sprintf("C workers over min(C, %d) HTTP/2 connections per server, %s deadline per Check", cfg.conns, cfg.timeout)
	what := fmt.Sprintf("GET %s, %d headers", benchPath, len(s.reqs[0].Attributes.Request.Http.Headers))
	if cfg.mode == "forward-auth" {
		conns = fmt.Sprintf("C workers, each over an HTTP/1.1 keep-alive connection of its own, %s deadline per request", cfg.timeout)
		what = "GET /auth as Caddy asks it for GET " + benchPath
	}
	fmt.Fprintf(stdout, "load:     closed loop, %s;\n", conns)
	fmt.Fprintf(stdout, "          %s, keys cycled per worker; %s measured after %s warmup per run,\n", what, cfg.duration, cfg.warmup)
	fmt.Fprintf(stdout, "          %d round(s) per server, alternating ABBA; the table aggregates the rounds, the paired ratios compare each round's two runs\n", cfg.rounds)
	for _, mode := range cfg.modes() {
		fmt.Fprintln(stdout)
		if err := s.runMode(ctx, mode, stdout); err != nil {
			return err
		}
	}
	fmt.Fprintf(stdout, "\ntotal time %s\n", time.Since(began).Round(time.Second))
	return nil
}

// runMode starts the two servers of a mode, measures them and prints the
// table.
func (s *setup) runMode(ctx context.Context, mode string, stdout io.Writer) error {
	cfg := s.cfg
	// The reference server: an empty Check server for the cached path,
	// one pgx query per Check for the uncached one.
	refKind, refName, refApp, refArgs := baselineKind, "baseline", "", []string(nil)
	switch mode {
	case "uncached":
		refKind, refName, refApp = pgxKind, "pgx", "keygate-bench-pgx"
		if cfg.store == "sqlite" {
			refKind, refName, refApp = sqliteKind, "sqlite", ""
		}
		refArgs = []string{"--database-url", serverURL(s.dbURL, refApp, s.cfg.poolSize)}
	case "forward-auth":
		refKind, refName = httpBaselineKind, "net/http"
		if cfg.httpRef == "identity" {
			refName, refArgs = "net/http+id", []string{"-identity"}
		}
	}
	if mode != "forward-auth" && cfg.grpcRef == "identity" {
		refName, refArgs = refName+"+id", append(refArgs, "-identity")
	}
	progress(s.stderr, "%s path: starting the servers", mode)
	ref, err := startReference(ctx, s.self, refKind, refArgs, s.env)
	if err != nil {
		return err
	}
	defer ref.stop()
	ref.name, ref.dbApp = refName, refApp
	kgApp := "keygate-bench-keygate-" + mode
	kg, err := startKeygate(ctx, s.bin, "keygate", serverURL(s.dbURL, kgApp, s.cfg.poolSize), kgArgs(mode, cfg), s.env)
	if err != nil {
		return err
	}
	defer kg.stop()
	if cfg.store == "postgres" {
		kg.dbApp = kgApp
	}

	maxConc := 0
	for _, c := range cfg.concurrency {
		maxConc = max(maxConc, c)
	}
	nconns := min(cfg.conns, maxConc)
	servers := []*server{{child: ref}, {child: kg, keygate: true}}
	if mode == "forward-auth" {
		// HTTP/1.1: one connection per worker.
		for i, addr := range []string{ref.grpcAddr, kg.httpAddr} {
			t, err := newHTTPTarget(addr, s.secrets, maxConc, i == 1)
			if err != nil {
				return err
			}
			servers[i].target = t
			defer t.close()
		}
	} else {
		for i, addr := range []string{ref.grpcAddr, kg.grpcAddr} {
			verify := allowed
			if i == 1 {
				verify = allowedWithHeaders
			}
			t, err := dial(addr, nconns, verify)
			if err != nil {
				return err
			}
			if cfg.grpcRef == "identity" {
				t.verifyEach = sameAllow // keygate's answer, and the reference's own
			}
			servers[i].target = grpcLoad{t, s.reqs}
			defer t.close()
		}
	}

	// One request per key on each server: every answer must be an allow.
	// For the cached paths this also puts every key in keygate's cache. A
	// first pass may meet a cold pool (a lookup past --lookup-timeout is a
	// 503): only the second must be all allows.
	for _, sv := range servers {
		_ = sv.target.each(ctx, 8, time.Second)
		if err := sv.target.each(ctx, 8, time.Second); err != nil {
			return fmt.Errorf("%s does not allow the seeded keys: %w", sv.name, err)
		}
	}

	rows := map[*server]map[int]*row{}
	for _, sv := range servers {
		rows[sv] = map[int]*row{}
	}
	for _, conc := range cfg.concurrency {
		for round := range cfg.rounds {
			order := servers
			if round%2 == 1 {
				order = []*server{servers[1], servers[0]}
			}
			for _, sv := range order {
				r, err := s.measure(ctx, sv, conc)
				if err != nil {
					return err
				}
				agg := rows[sv][conc]
				if agg == nil {
					agg = &row{}
					rows[sv][conc] = agg
				}
				agg.add(r)
				progress(s.stderr, "%s c=%d round %d/%d %-8s %8.0f req/s  p99 %s  errors %d",
					mode, conc, round+1, cfg.rounds, sv.name, float64(r.ok)/r.window.Seconds(),
					fmtDur(percentile(sortedCopy(r.latencies), 99)), r.errors)
			}
		}
	}
	s.printMode(stdout, mode, servers, rows)
	return nil
}

// server is one of the two servers of a mode.
type server struct {
	*child
	target  loadTarget
	keygate bool
	cache   cacheCounts // keygate only, summed over its runs
	dbConns int         // most database connections seen
}

// result is one run of one server.
type result struct {
	sample
	serverCPU, dbCPU, genCPU time.Duration
	dbKnown                  bool
	// machineCPU is what every process used (steal apart): what the
	// server, the generator and the backends did not use went to others.
	machineCPU, steal time.Duration
}

// measure runs one closed-loop run against sv.
func (s *setup) measure(ctx context.Context, sv *server, conc int) (result, error) {
	var (
		r                            result
		cpu0, gen0, machine0, steal0 time.Duration
		db0                          map[int]time.Duration
		before                       map[string]float64
		err                          error
		markErr                      error
	)
	if sv.keygate {
		if before, err = sv.scrape(ctx); err != nil {
			return r, err
		}
	}
	t0 := time.Now().Add(s.cfg.warmup)
	t1 := t0.Add(s.cfg.duration)
	r.sample = sv.target.run(ctx, conc, s.cfg.timeout, t0, t1, func(end bool) {
		machine, steal, err1 := machineCPU()
		cpu, _, err2 := procCPU(sv.pid())
		gen := selfCPU()
		if err := errors.Join(err1, err2); err != nil {
			markErr = fmt.Errorf("%s: %w", sv.name, err)
		}
		var db map[int]time.Duration
		if sv.dbApp != "" && s.dbLocal {
			db, _ = s.backendCPU(ctx, sv.dbApp) // nil: not known
		}
		if !end {
			cpu0, gen0, db0, machine0, steal0 = cpu, gen, db, machine, steal
			return
		}
		r.serverCPU, r.genCPU, r.machineCPU, r.steal = cpu-cpu0, gen-gen0, machine-machine0, steal-steal0
		if db != nil && db0 != nil {
			r.dbKnown = true
			sv.dbConns = max(sv.dbConns, len(db))
			for pid, c := range db {
				r.dbCPU += c - db0[pid] // a backend new in the window counts whole
			}
		}
	})
	if err := ctx.Err(); err != nil {
		return r, err
	}
	if err := sv.alive(); err != nil {
		return r, err
	}
	if markErr != nil {
		return r, markErr
	}
	if sv.keygate {
		after, err := sv.scrape(ctx)
		if err != nil {
			return r, err
		}
		sv.cache.add(before, after)
	}
	return r, nil
}

// backendCPU is the CPU time of each PostgreSQL backend whose connection
// has application_name app, by pid.
func (s *setup) backendCPU(ctx context.Context, app string) (map[int]time.Duration, error) {
	rows, err := s.pool.Query(ctx, `SELECT pid FROM pg_stat_activity WHERE application_name = $1`, app)
	if err != nil {
		return nil, err
	}
	pids, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		return nil, err
	}
	cpu := map[int]time.Duration{}
	for _, pid := range pids {
		c, comm, err := procCPU(int(pid))
		if err != nil || comm != "postgres" {
			return nil, fmt.Errorf("backend %d is not a local postgres process", pid)
		}
		cpu[int(pid)] = c
	}
	return cpu, nil
}

// cacheCounts are keygate's cache counters over some runs.
type cacheCounts struct {
	hits, stale, misses, negative, loads float64
	refusals                             map[string]float64 // decisions other than ok, by labels
}

func (c *cacheCounts) add(before, after map[string]float64) {
	d := func(name string) float64 { return after[name] - before[name] }
	for name := range after {
		if labels, ok := strings.CutPrefix(name, "keygate_decisions_total"); ok && !strings.Contains(labels, `code="ok"`) && d(name) > 0 {
			if c.refusals == nil {
				c.refusals = map[string]float64{}
			}
			c.refusals[labels] += d(name)
		}
	}
	c.hits += d("keygate_cache_hits_total")
	c.stale += d("keygate_cache_stale_total")
	c.misses += d("keygate_cache_misses_total")
	c.negative += d("keygate_cache_negative_hits_total")
	c.loads += d("keygate_cache_loads_total")
}

// seed creates n keys for the benchmark through the real creation path
// and returns their secrets.
func seed(ctx context.Context, db keystore.Backend, n int, limits []string) ([]string, error) {
	store, err := keystore.New(db, keystore.Options{})
	if err != nil {
		return nil, err
	}
	secrets := make([]string, n)
	errs := make([]error, 8)
	var wg sync.WaitGroup
	for w := range errs {
		wg.Go(func() {
			for i := w; i < n && errs[w] == nil; i += len(errs) {
				_, sec, err := store.Create(ctx, keystore.CreateParams{AccountID: benchAccount, Name: fmt.Sprintf("bench-%d", i),
					Limits: limits, Actor: "keygate-bench"})
				secrets[i], errs[w] = sec.Reveal(), err
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, fmt.Errorf("seeding keys: %w", err)
		}
	}
	return secrets, nil
}

// buildKeygate builds ./cmd/keygate of the module in the working
// directory.
func buildKeygate(ctx context.Context, out string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, "github.com/keygate/keygate/cmd/keygate")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build keygate (run from the keygate module, or pass --keygate-bin): %v\n%s", err, b)
	}
	return nil
}

// withAppName sets application_name in a connection string, so that the
// benchmark can find each server's backends in pg_stat_activity.
// serverURL is conn for one server under test: its connections named
// name (to find their CPU) and its pool at poolSize, the same for every
// server so that the uncached comparison is like for like.
func serverURL(conn, name string, poolSize int) string {
	if strings.HasPrefix(conn, "sqlite:") {
		return conn // one process's file: no names, keygate's own readers
	}
	if u, err := url.Parse(conn); err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") {
		q := u.Query()
		q.Set("application_name", name)
		q.Set("pool_max_conns", strconv.Itoa(poolSize))
		u.RawQuery = q.Encode()
		return u.String()
	}
	return conn + " application_name=" + name + " pool_max_conns=" + strconv.Itoa(poolSize)
}

// isLocal reports whether the database of conn runs on this machine.
func isLocal(conn string) bool {
	cfg, err := pgx.ParseConfig(conn)
	if err != nil {
		return false
	}
	switch h := cfg.Host; {
	case h == "127.0.0.1", h == "::1", h == "localhost", strings.HasPrefix(h, "/"):
		return true
	}
	return false
}

// cpuInfo returns the number of CPUs and the model of the first.
func cpuInfo() (int, string) {
	model := "unknown model"
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return runtime.NumCPU(), model
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			model = strings.TrimSpace(v)
			break
		}
	}
	return runtime.NumCPU(), model
}

// commandLine is how the benchmark was invoked, shell-quoted where needed.
func commandLine(args []string) string {
	parts := []string{"keygate-bench"}
	for _, a := range args {
		if k, v, ok := strings.Cut(a, "="); ok && strings.HasPrefix(k, "-") {
			a = k + "=" + redact(v)
		} else {
			a = redact(a)
		}
		if a == "" || strings.ContainsAny(a, " \t\"'$\\*?;&|<>()") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		parts = append(parts, a)
	}
	return strings.Join(parts, " ")
}

// redact hides the password of a connection string.
func redact(s string) string {
	if u, err := url.Parse(s); err == nil && u.Scheme != "" && u.User != nil {
		if _, ok := u.User.Password(); ok {
			u.User = url.UserPassword(u.User.Username(), "REDACTED")
			return u.String()
		}
	}
	if i := strings.Index(s, "password="); i >= 0 {
		end := strings.IndexAny(s[i:], " \t")
		if end < 0 {
			end = len(s) - i
		}
		return s[:i] + "password=REDACTED" + s[i+end:]
	}
	return s
}

func progress(w io.Writer, format string, args ...any) {
	fmt.Fprintf(w, "keygate-bench: "+format+"\n", args...)
}
