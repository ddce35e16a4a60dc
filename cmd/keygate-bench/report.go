package main

import (
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/perf/benchmath"
)

// row aggregates the runs of one server at one concurrency.
type row struct {
	rates                    []float64 // per run, requests/s
	cpus                     []float64 // per run, server CPU seconds per request
	ok, errors               int
	firstError               string
	window                   time.Duration
	latencies                []time.Duration
	serverCPU, dbCPU, genCPU time.Duration
	machineCPU, steal        time.Duration
	maxOther                 float64 // cores, the most of any run
	dbKnown                  bool    // in every run
	runs                     int
}

func (r *row) add(x result) {
	r.rates = append(r.rates, float64(x.ok)/x.window.Seconds())
	cpu := math.NaN() // no request answered: no CPU per request
	if x.ok > 0 {
		cpu = x.serverCPU.Seconds() / float64(x.ok)
	}
	r.cpus = append(r.cpus, cpu)
	r.ok += x.ok
	r.errors += x.errors
	if r.firstError == "" {
		r.firstError = x.firstError
	}
	r.window += x.window
	r.latencies = append(r.latencies, x.latencies...)
	r.serverCPU += x.serverCPU
	r.dbCPU += x.dbCPU
	r.genCPU += x.genCPU
	r.machineCPU += x.machineCPU
	r.steal += x.steal
	r.maxOther = max(r.maxOther, x.other())
	r.dbKnown = x.dbKnown && (r.runs == 0 || r.dbKnown)
	r.runs++
}

// other is the CPU, in cores, that processes other than the server, the
// load generator and the server's database backends used during the run.
func (x result) other() float64 {
	return (x.machineCPU - x.serverCPU - x.genCPU - x.dbCPU).Seconds() / x.window.Seconds()
}

// rate is requests/s over every run.
func (r *row) rate() float64 { return float64(r.ok) / r.window.Seconds() }

// spread is (max-min)/mean of the per-run rates.
func (r *row) spread() float64 {
	if len(r.rates) < 2 {
		return 0
	}
	var sum float64
	for _, v := range r.rates {
		sum += v
	}
	return (slices.Max(r.rates) - slices.Min(r.rates)) / (sum / float64(len(r.rates)))
}

func (r *row) cpuPerDecision() time.Duration {
	if r.ok == 0 {
		return 0
	}
	return r.serverCPU / time.Duration(r.ok)
}

// confidence is the level of the paired ratios' intervals.
const confidence = 0.95

// pairedRatio summarises a/b over the rounds: round i's two runs were back
// to back (ABBA), so their ratio cancels most of the drift a shared machine
// puts between rounds, where the aggregate ratio carries it. It is the
// median of the per-round ratios with its distribution-free confidence
// interval, as benchstat computes them (benchmath.AssumeNothing; the
// interval's level is at least confidence). A round whose ratio is not a
// number (a server answered nothing in it) is left out: used says how many
// rounds are in the summary.
func pairedRatio(a, b []float64) (s benchmath.Summary, used int) {
	var ratios []float64
	for i := range min(len(a), len(b)) {
		if q := a[i] / b[i]; !math.IsNaN(q) && !math.IsInf(q, 0) {
			ratios = append(ratios, q)
		}
	}
	if len(ratios) == 0 {
		return benchmath.Summary{}, 0
	}
	return benchmath.AssumeNothing.Summary(benchmath.NewSample(ratios, &benchmath.DefaultThresholds), confidence), len(ratios)
}

// fmtRatio prints a paired ratio over used of rounds rounds and its
// interval, or why there is none.
func fmtRatio(s benchmath.Summary, used, rounds int) string {
	var out string
	switch {
	case used == 0:
		out = "none (no round where both servers answered)"
	case len(s.Warnings) > 0 || math.IsInf(s.Lo, 0) || math.IsInf(s.Hi, 0):
		out = fmt.Sprintf("%.2f (no %.0f%% interval: %v)", s.Center, 100*confidence, errors.Join(s.Warnings...))
	default:
		out = fmt.Sprintf("%.2f [%.2f, %.2f]", s.Center, s.Lo, s.Hi)
	}
	if used < rounds {
		out += fmt.Sprintf(" over %d of %d rounds", used, rounds)
	}
	return out
}

// printMode prints one mode's table: the reference server's row, then
// keygate's with the ratio of their rates, per concurrency.
func (s *setup) printMode(w io.Writer, mode string, servers []*server, rows map[*server]map[int]*row) {
	cfg := s.cfg
	ref, kg := servers[0], servers[1]
	gogc := func(c *child) string {
		if !c.gcKnown {
			return "unknown"
		}
		return c.gc.gogc()
	}
	what := "keygate, every key cached, vs an empty Check server"
	if cfg.store == "sqlite" {
		what = "keygate on SQLite, every key cached, vs an empty Check server"
	}
	switch mode {
	case "uncached":
		what = "keygate --cache-size 1 vs one raw pgx query per Check"
		if cfg.store == "sqlite" {
			what = "keygate --cache-size 1 on SQLite vs one raw SQLite point query per Check (database/sql, a prepared statement, 4 connections as keygate's readers)"
		}
	case "forward-auth":
		what = "keygate's HTTP /auth (as Caddy asks it: 9 headers, one HTTP/1.1 keep-alive connection per worker), every key cached, vs an empty net/http handler"
		if cfg.httpRef == "identity" {
			what = "keygate's HTTP /auth (as Caddy asks it: 9 headers, one HTTP/1.1 keep-alive connection per worker), every key cached, vs a net/http handler answering with the fields of keygate's allow"
		}
	}
	if mode != "forward-auth" && cfg.grpcRef == "identity" {
		what += ", the reference answering with keygate's allow (--grpc-reference identity)"
	}
	fmt.Fprintf(w, "%s path: %s (%d keys, %s x %d rounds, GOGC: %s=%s keygate=%s)\n", mode, what, cfg.keys,
		cfg.duration, cfg.rounds, ref.name, gogc(ref.child), gogc(kg.child))
	for _, sv := range servers {
		gc := "unknown: keygate's /metrics has no go_gc_* samples"
		if sv.gcKnown {
			gc = sv.gc.String()
		}
		if sv.logGC != "" {
			gc += "; " + sv.logGC
		}
		fmt.Fprintf(w, "  %-8s %s\n", sv.name, gc)
	}
	if ref.gcKnown && kg.gcKnown && (ref.gc.GOGC != kg.gc.GOGC || ref.gc.GOMEMLIMIT != kg.gc.GOMEMLIMIT) {
		fmt.Fprintf(w, "  NOTE: the servers run different GC settings (keygate sets its own defaults); --gogc and --gomemlimit set both\n")
	}
	fmt.Fprintf(w, "  keygate  %s\n", strings.Join(append([]string{"serve", "--grpc-addr 127.0.0.1:0 --http-addr 127.0.0.1:0 --log-format json"},
		kgArgs(mode, cfg)...), " "))

	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "conc\tserver\treq/s\tspread\tp50\tp99\tcpu/decision\tdb-cpu/decision\tgen-cpu\tother-cpu\terrors\tratio\t")
	var cpuRatios, paired []string
	var (
		errs            []string
		maxOther, steal float64
	)
	for _, conc := range cfg.concurrency {
		for _, sv := range servers {
			r := rows[sv][conc]
			lat := sortedCopy(r.latencies)
			db := "-"
			if r.dbKnown {
				db = fmtDur(r.dbCPU / time.Duration(max(r.ok, 1)))
			}
			ratio := ""
			if sv == kg {
				base := rows[ref][conc]
				q := r.rate() / base.rate()
				ratio = fmt.Sprintf("%.2f", q)
				cpuRatios = append(cpuRatios, fmt.Sprintf("%.2f", float64(r.cpuPerDecision())/float64(base.cpuPerDecision())))
				rates, ratesUsed := pairedRatio(r.rates, base.rates)
				cpus, cpusUsed := pairedRatio(r.cpus, base.cpus)
				paired = append(paired, fmt.Sprintf("    %d: req/s %s, cpu/decision %s", conc,
					fmtRatio(rates, ratesUsed, r.runs), fmtRatio(cpus, cpusUsed, r.runs)))
			}
			cores := func(d time.Duration) float64 { return d.Seconds() / r.window.Seconds() }
			// /proc/stat is sampled per tick, the processes' times are
			// exact: small negative values are sampling error.
			other := max(0, cores(r.machineCPU-r.serverCPU-r.genCPU-r.dbCPU))
			maxOther, steal = max(maxOther, r.maxOther), max(steal, cores(r.steal))
			fmt.Fprintf(tw, "%d\t%s\t%.0f\t%.1f%%\t%s\t%s\t%s\t%s\t%.2f\t%.2f\t%d\t%s\t\n", conc, sv.name, r.rate(), 100*r.spread(),
				fmtDur(percentile(lat, 50)), fmtDur(percentile(lat, 99)), fmtDur(r.cpuPerDecision()), db,
				cores(r.genCPU), other, r.errors, ratio)
			if r.errors > 0 {
				errs = append(errs, fmt.Sprintf("%s at %d: %s", sv.name, conc, r.firstError))
			}
		}
	}
	tw.Flush()
	fmt.Fprintf(w, "  ratio is keygate/%s req/s; keygate/%s cpu/decision: %s (concurrency %s)\n", ref.name, ref.name,
		strings.Join(cpuRatios, " "), joinInts(cfg.concurrency))
	fmt.Fprintf(w, "  paired ratios keygate/%s by concurrency: the median of the rounds' ratios [its %.0f%% interval]\n", ref.name, 100*confidence)
	for _, p := range paired {
		fmt.Fprintln(w, p)
	}
	if maxOther > 0.15 || steal > 0.05 {
		fmt.Fprintf(w, "  NOTE: other processes used up to %.2f cores during a run (steal up to %.2f): the rates are disturbed, cpu/decision much less\n",
			maxOther, steal)
	}
	c := kg.cache
	if total := c.hits + c.stale + c.misses + c.negative; total > 0 {
		fmt.Fprintf(w, "  keygate cache during the runs: %.1f%% fresh hits, %.1f%% stale hits, %.1f%% misses, %.1f%% negative hits; %.0f database lookups for %.0f Checks\n",
			100*c.hits/total, 100*c.stale/total, 100*c.misses/total, 100*c.negative/total, c.loads, total)
	}
	for _, labels := range slices.Sorted(maps.Keys(c.refusals)) {
		fmt.Fprintf(w, "  keygate refused %.0f Checks with %s (its keygate_decisions_total)\n", c.refusals[labels], labels)
	}
	if ref.dbApp != "" {
		fmt.Fprintf(w, "  database connections seen: %s %d (pgxpool max %d), keygate %d (the same pool size, + LISTEN)\n",
			ref.name, ref.dbConns, ref.maxConns, kg.dbConns)
	}
	for _, e := range errs {
		fmt.Fprintf(w, "  first error: %s\n", e)
	}
	if n, lines := kg.loggedWarnings(); n > 0 {
		fmt.Fprintf(w, "  keygate logged %d warnings or errors; the first:\n", n)
		for _, l := range lines {
			fmt.Fprintf(w, "    %s\n", l)
		}
	}
}

// kgArgs are the arguments keygate serve gets in mode besides the
// addresses, the log format and the database.
func kgArgs(mode string, cfg *config) []string {
	if mode == "uncached" {
		return append([]string{"--cache-size", "1"}, cfg.keygateArgs...)
	}
	return cfg.keygateArgs
}

// fmtDur prints a duration with three significant digits.
func fmtDur(d time.Duration) string {
	switch {
	case d < 10*time.Microsecond:
		return fmt.Sprintf("%.2fµs", float64(d)/1e3)
	case d < time.Millisecond:
		return fmt.Sprintf("%.1fµs", float64(d)/1e3)
	case d < 10*time.Millisecond:
		return fmt.Sprintf("%.2fms", float64(d)/1e6)
	default:
		return fmt.Sprintf("%.1fms", float64(d)/1e6)
	}
}

func joinInts(v []int) string {
	s := make([]string, len(v))
	for i, n := range v {
		s[i] = fmt.Sprint(n)
	}
	return strings.Join(s, ",")
}
