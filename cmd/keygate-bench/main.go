package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/keygate/keygate/keystore"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	interrupted := ctx.Err() != nil // before stop, which cancels ctx
	stop()
	switch {
	case err == nil:
	case errors.Is(err, flag.ErrHelp):
		os.Exit(2)
	case interrupted:
		fmt.Fprintln(os.Stderr, "keygate-bench: interrupted; servers stopped, temporary files removed")
		os.Exit(130)
	default:
		fmt.Fprintln(os.Stderr, "keygate-bench:", err)
		os.Exit(1)
	}
}

// run is main without the process: the benchmark, or one of the
// reference servers it re-executes itself as.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 {
		switch args[0] {
		case baselineKind, pgxKind, sqliteKind:
			return runReferenceServer(ctx, args[0], args[1:], stdout, stderr)
		case httpBaselineKind:
			fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
			fs.SetOutput(stderr)
			addr := fs.String("addr", "127.0.0.1:0", "listen address")
			identity := fs.Bool("identity", false, "answer with the fields of keygate's allow")
			if err := fs.Parse(args[1:]); err != nil {
				return err
			}
			return runHTTPBaseline(ctx, *addr, *identity, stdout)
		}
	}
	cfg, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	return bench(ctx, cfg, stdout, stderr)
}

// config is the benchmark's command line.
type config struct {
	args        []string // as given, for the report
	mode        string   // all, cached or uncached
	duration    time.Duration
	warmup      time.Duration
	rounds      int
	concurrency []int
	conns       int
	keys        int
	timeout     time.Duration
	store       string // postgres or sqlite
	databaseURL string
	poolSize    int
	keygateBin  string
	keygateArgs []string
	gogc        string
	gomemlimit  string
	limits      []string // every seeded key's rates (--limit)
	httpRef     string   // forward-auth's reference: empty or identity
	grpcRef     string   // the gRPC references' allow: empty or identity
}

func parseFlags(args []string, stderr io.Writer) (*config, error) {
	cfg := &config{args: args}
	fs := flag.NewFlagSet("keygate-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: keygate-bench [flags]\n\nCompares keygate with reference Check servers over gRPC on loopback; see go doc ./cmd/keygate-bench.\n\nFlags:")
		fs.PrintDefaults()
	}
	conc := "1,16,64"
	fs.StringVar(&cfg.mode, "mode", "all", "what to measure: `all` (cached and uncached), cached (keygate vs an empty Check server), uncached (keygate --cache-size 1 vs one raw pgx query per Check) or forward-auth (keygate's HTTP /auth vs an empty net/http handler)")
	fs.DurationVar(&cfg.duration, "duration", 2*time.Second, "measured time of one run")
	fs.DurationVar(&cfg.warmup, "warmup", 250*time.Millisecond, "unmeasured load before each run's measurement (the servers stay up and connected between runs)")
	fs.IntVar(&cfg.rounds, "rounds", 4, "runs of each server per concurrency, alternating ABBA: many short runs cancel the drift of a shared machine better than a few long ones")
	fs.StringVar(&conc, "concurrency", conc, "comma-separated numbers of closed-loop workers")
	fs.IntVar(&cfg.conns, "conns", runtime.NumCPU(), "most gRPC connections per server (Envoy opens one per worker thread, one worker per CPU by default); workers share them round-robin")
	fs.IntVar(&cfg.keys, "keys", 1000, "keys seeded and cycled over")
	fs.DurationVar(&cfg.timeout, "timeout", 200*time.Millisecond, "deadline of each Check (Envoy's ext_authz default)")
	fs.IntVar(&cfg.poolSize, "pool-size", 10, "pool_max_conns of every server under test (keygate's own default is 10)")
	fs.StringVar(&cfg.store, "store", "postgres", "keygate's store: postgres, or sqlite (a file in a temporary directory; the uncached path is then compared with one raw SQLite point query per Check)")
	fs.StringVar(&cfg.databaseURL, "database-url", "", "PostgreSQL to seed and query (keys are added to account keygate-bench); default: a throwaway cluster")
	fs.StringVar(&cfg.keygateBin, "keygate-bin", "", "keygate binary; default: go build ./cmd/keygate into a temporary directory")
	fs.Func("keygate-arg", "extra argument to keygate serve, repeatable (e.g. --keygate-arg=--cache-fresh=10m)", func(s string) error {
		cfg.keygateArgs = append(cfg.keygateArgs, s)
		return nil
	})
	fs.Func("limit", "a rate every seeded key gets (keys create --limit), repeatable, e.g. --limit=1000000/s: the cached path with limits on (keygate's --limit-store is its default, local, unless --keygate-arg says otherwise)", func(s string) error {
		if _, err := keystore.ParseRate(s); err != nil {
			return err
		}
		cfg.limits = append(cfg.limits, s)
		return nil
	})
	fs.StringVar(&cfg.httpRef, "http-reference", "empty", "forward-auth's reference handler: empty (answers 200 and nothing else) or identity (answers 200 with the fields keygate's allow has, values included: what the answer itself costs net/http and the client)")
	fs.StringVar(&cfg.grpcRef, "grpc-reference", "empty", "the gRPC reference servers' allow (cached and uncached): empty (status OK and nothing else) or identity (keygate's allow for a seeded key: identity headers set and removed, dynamic metadata, values as long: what the answer itself costs gRPC and the client)")
	fs.StringVar(&cfg.gogc, "gogc", "", "GOGC for every server (default: inherited, usually unset)")
	fs.StringVar(&cfg.gomemlimit, "gomemlimit", "", "GOMEMLIMIT for every server (default: inherited, usually unset)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	var err error
	if cfg.concurrency, err = parseInts(conc); err != nil {
		return nil, fmt.Errorf("--concurrency: %v", err)
	}
	switch {
	case !slices.Contains([]string{"all", "cached", "uncached", "forward-auth"}, cfg.mode):
		return nil, fmt.Errorf("--mode: %q is not all, cached, uncached or forward-auth", cfg.mode)
	case cfg.httpRef != "empty" && cfg.httpRef != "identity":
		return nil, fmt.Errorf("--http-reference: %q is not empty or identity", cfg.httpRef)
	case cfg.grpcRef != "empty" && cfg.grpcRef != "identity":
		return nil, fmt.Errorf("--grpc-reference: %q is not empty or identity", cfg.grpcRef)
	case cfg.store != "postgres" && cfg.store != "sqlite":
		return nil, fmt.Errorf("--store: %q is not postgres or sqlite", cfg.store)
	case cfg.store == "sqlite" && cfg.databaseURL != "":
		return nil, errors.New("--database-url names a PostgreSQL database: with --store sqlite the benchmark makes its own file")
	case cfg.duration <= 0:
		return nil, errors.New("--duration: must be positive")
	case cfg.warmup < 0:
		return nil, errors.New("--warmup: must not be negative")
	case cfg.rounds < 1:
		return nil, errors.New("--rounds: must be at least 1")
	case cfg.conns < 1:
		return nil, errors.New("--conns: must be at least 1")
	case cfg.keys < 1:
		return nil, errors.New("--keys: must be at least 1")
	case cfg.timeout <= 0:
		return nil, errors.New("--timeout: must be positive")
	}
	return cfg, nil
}

func parseInts(s string) ([]int, error) {
	var out []int
	for f := range strings.SplitSeq(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%q is not a positive number", f)
		}
		out = append(out, n)
	}
	return out, nil
}

// modes lists the modes cfg asks for, in order.
func (c *config) modes() []string {
	if c.mode == "all" {
		return []string{"cached", "uncached"}
	}
	return []string{c.mode}
}
