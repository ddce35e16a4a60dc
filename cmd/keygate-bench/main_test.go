package main

import (
	"bytes"
	"context"
	"math"
	"net"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/keygate/keygate/internal/pgtest"
)

func TestMain(m *testing.M) {
	// The benchmark re-executes its own binary as the reference servers;
	// under test, that binary is this one.
	if len(os.Args) > 1 && (os.Args[1] == baselineKind || os.Args[1] == pgxKind || os.Args[1] == sqliteKind || os.Args[1] == httpBaselineKind) {
		main()
		return
	}
	pgtest.Main(m)
}

// slowMachine gives keygate's lookups and every Check deadlines that a
// machine running the whole test suite with -race still meets (a 100ms
// lookup and a 200ms Check have failed there): these tests check that the
// benchmark works, not its figures.
var slowMachine = []string{"--keygate-arg=--lookup-timeout=2s", "--timeout=5s"}

// TestBench runs the whole benchmark briefly against a fresh database:
// keygate built from this tree, both paths, every answer an allow.
func TestBench(t *testing.T) {
	if testing.Short() {
		t.Skip("builds keygate and runs both paths")
	}
	dbURL := pgtest.NewEmptyDatabase(t)
	var stdout, stderr bytes.Buffer
	err := run(t.Context(), append([]string{"--database-url", dbURL, "--duration", "300ms", "--warmup", "100ms",
		"--rounds", "2", "--concurrency", "1,4", "--keys", "20"}, slowMachine...), &stdout, &stderr)
	if err != nil {
		t.Fatalf("run: %v\nstderr:\n%s", err, stderr.String())
	}
	out := stdout.String()
	for _, want := range []string{
		"cached path: keygate, every key cached",
		"uncached path: keygate --cache-size 1",
		"keygate cache during the runs: 100.0% fresh hits",
		"database connections seen: pgx ",
		"paired ratios keygate/baseline by concurrency",
		"paired ratios keygate/pgx by concurrency",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "first error") {
		t.Errorf("errors:\n%s", out)
	}
	if rows := errorFreeRows(t, out, "baseline", "pgx", "keygate"); rows != 8 {
		t.Errorf("got %d table rows, want 8:\n%s", rows, out)
	}
}

// errorFreeRows counts the table rows of the named servers in out, and
// fails the test for each with errors.
func errorFreeRows(t *testing.T, out string, servers ...string) int {
	t.Helper()
	rows, errCol := 0, -1
	for line := range strings.Lines(out) {
		f := strings.Fields(line)
		if len(f) > 0 && f[0] == "conc" {
			errCol = slices.Index(f, "errors")
		}
		if len(f) > 2 && slices.Contains(servers, f[1]) {
			rows++
			if errCol < 1 || errCol >= len(f) || f[errCol] != "0" {
				t.Errorf("row with errors (column %d): %s", errCol, line)
			}
		}
	}
	return rows
}

// TestBenchSQLite runs both paths briefly on the embedded store: keygate
// on a SQLite file against the empty server and against one raw SQLite
// point query per Check, every answer an allow.
func TestBenchSQLite(t *testing.T) {
	if testing.Short() {
		t.Skip("builds keygate and runs both paths")
	}
	var stdout, stderr bytes.Buffer
	// The references answer with keygate's allow: each checks that
	// keygate's answers are identityAllow (sameAllow).
	err := run(t.Context(), append([]string{"--store", "sqlite", "--grpc-reference", "identity", "--duration", "300ms", "--warmup", "100ms",
		"--rounds", "2", "--concurrency", "1,4", "--keys", "20"}, slowMachine...), &stdout, &stderr)
	if err != nil {
		t.Fatalf("run: %v\nstderr:\n%s", err, stderr.String())
	}
	out := stdout.String()
	for _, want := range []string{
		"database: SQLite",
		"cached path: keygate on SQLite, every key cached",
		"uncached path: keygate --cache-size 1 on SQLite vs one raw SQLite point query per Check",
		"the reference answering with keygate's allow (--grpc-reference identity)",
		"keygate cache during the runs: 100.0% fresh hits",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "first error") {
		t.Errorf("errors:\n%s", out)
	}
	// The uncached path missed the cache (a cache of one key, 20 keys).
	m := regexp.MustCompile(`([0-9.]+)% misses`).FindAllStringSubmatch(out, -1)
	if len(m) != 2 {
		t.Fatalf("cache lines: %v", m)
	}
	if misses, err := strconv.ParseFloat(m[1][1], 64); err != nil || misses < 50 {
		t.Errorf("the uncached path missed the cache for %s%% of its Checks", m[1][1])
	}
	if rows := errorFreeRows(t, out, "baseline+id", "sqlite+id", "keygate"); rows != 8 {
		t.Errorf("got %d table rows, want 8:\n%s", rows, out)
	}
	if r := run(t.Context(), []string{"--store", "sqlite", "--database-url", "postgres://x@127.0.0.1/x"}, &stdout, &stderr); r == nil {
		t.Error("--store sqlite with --database-url was accepted")
	}
	if r := run(t.Context(), []string{"--grpc-reference", "full"}, &stdout, &stderr); r == nil {
		t.Error("--grpc-reference full was accepted")
	}
}

// TestSameAllow: the identity reference's answer is keygate's allow but
// for the key id, and anything else is a difference the benchmark reports.
func TestSameAllow(t *testing.T) {
	keygates := proto.Clone(identityAllow).(*authv3.CheckResponse)
	keygates.GetOkResponse().Headers[0].Header.Value = "0199ffff-0000-7000-8000-000000000001"
	keygates.DynamicMetadata.Fields["key_id"] = structpb.NewStringValue("0199ffff-0000-7000-8000-000000000001")
	if err := sameAllow(keygates); err != nil {
		t.Fatalf("keygate's allow for another key: %v", err)
	}
	moreHeaders := proto.Clone(keygates).(*authv3.CheckResponse)
	moreHeaders.GetOkResponse().Headers = append(moreHeaders.GetOkResponse().Headers, setHeader("x-keygate-scopes", "projects:read"))
	otherAccount := proto.Clone(keygates).(*authv3.CheckResponse)
	otherAccount.DynamicMetadata.Fields["account_id"] = structpb.NewStringValue("acct-2")
	for name, r := range map[string]*authv3.CheckResponse{"empty": emptyAllow, "a header more": moreHeaders, "another account": otherAccount} {
		if err := sameAllow(r); err == nil {
			t.Errorf("%s: taken for keygate's allow", name)
		}
	}
}

// TestLoadCountsDenials: an answer that is not the expected allow is an
// error, never a measured request.
func TestLoadCountsDenials(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	authv3.RegisterAuthorizationServer(s, baselineServer{allow: emptyAllow})
	go s.Serve(lis)
	t.Cleanup(s.Stop)

	reqs := []*authv3.CheckRequest{checkRequest("kg_a"), checkRequest("kg_b")}
	for _, tc := range []struct {
		name       string
		verify     verifier
		wantErrors bool
	}{
		{"status 0 is an allow", allowed, false},
		{"status 0 without OkResponse is not keygate's allow", allowedWithHeaders, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tg, err := dial(lis.Addr().String(), 2, tc.verify)
			if err != nil {
				t.Fatal(err)
			}
			defer tg.close()
			marks := 0
			t0 := time.Now().Add(50 * time.Millisecond)
			got := tg.load(t.Context(), reqs, 3, time.Second, t0, t0.Add(200*time.Millisecond), func(bool) { marks++ })
			if marks != 2 {
				t.Errorf("mark called %d times, want 2", marks)
			}
			if tc.wantErrors {
				if got.ok != 0 || got.errors == 0 || !strings.Contains(got.firstError, "OkResponse") {
					t.Errorf("got ok %d, errors %d (%q), want only errors", got.ok, got.errors, got.firstError)
				}
				return
			}
			if got.ok == 0 || got.errors != 0 || len(got.latencies) != got.ok {
				t.Errorf("got ok %d, errors %d (%q), %d latencies", got.ok, got.errors, got.firstError, len(got.latencies))
			}
		})
	}
}

func TestReferenceServerReportsGC(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	r, w := net.Pipe()
	done := make(chan error, 1)
	go func() { done <- runReferenceServer(ctx, baselineKind, []string{"--addr", "127.0.0.1:0"}, w, os.Stderr) }()
	buf := make([]byte, 4096)
	n, err := r.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	line := string(buf[:n])
	for _, want := range []string{`"addr":"127.0.0.1:`, `"gogc":`, `"gomemlimit":`, `"gomaxprocs":`} {
		if !strings.Contains(line, want) {
			t.Errorf("ready line %s lacks %s", line, want)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Error(err)
	}
}

func TestParseStat(t *testing.T) {
	clk := clockTick
	for _, tc := range []struct {
		name, stat string
		cpu        time.Duration
		comm       string
	}{
		{"plain", "4242 (postgres) S 1 4242 4242 0 -1 4194560 913 0 0 0 150 50 0 0 20 0 1 0 100 0 0",
			200 * clk, "postgres"},
		{"spaces and parentheses in the name", "17 (a (b) c) R 1 17 17 0 -1 0 0 0 0 0 7 3 0 0 20 0 1 0",
			10 * clk, "a (b) c"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cpu, comm, err := parseStat([]byte(tc.stat))
			if err != nil || cpu != tc.cpu || comm != tc.comm {
				t.Errorf("got %v %q %v, want %v %q", cpu, comm, err, tc.cpu, tc.comm)
			}
		})
	}
	if _, _, err := parseStat([]byte("17 (x) R 1")); err == nil {
		t.Error("short line: got no error")
	}
	cpu, comm, err := procCPU(os.Getpid())
	if err != nil || cpu < 0 || comm == "" {
		t.Errorf("own /proc stat: %v %q %v", cpu, comm, err)
	}
}

func TestPercentile(t *testing.T) {
	var d []time.Duration
	for i := 1; i <= 100; i++ {
		d = append(d, time.Duration(i))
	}
	for _, tc := range []struct {
		p    float64
		want time.Duration
	}{{50, 50}, {99, 99}, {100, 100}, {0.1, 1}} {
		if got := percentile(d, tc.p); got != tc.want {
			t.Errorf("p%v: got %v, want %v", tc.p, got, tc.want)
		}
	}
	if got := percentile(nil, 50); got != 0 {
		t.Errorf("empty: got %v", got)
	}
}

func TestParseMetrics(t *testing.T) {
	m, err := parseMetrics(strings.NewReader(`# HELP go_gc_gogc_percent Heap size target percentage.
# TYPE go_gc_gogc_percent gauge
go_gc_gogc_percent 100
go_gc_gomemlimit_bytes 9.223372036854776e+18
keygate_decisions_total{code="ok",reason="allowed"} 12
keygate_cache_hits_total 42
`))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{"go_gc_gogc_percent": 100, "go_gc_gomemlimit_bytes": 9.223372036854776e+18, "keygate_cache_hits_total": 42,
		`keygate_decisions_total{code="ok",reason="allowed"}`: 12}
	if len(m) != len(want) {
		t.Errorf("got %v, want %v", m, want)
	}
	for k, v := range want {
		if m[k] != v {
			t.Errorf("%s: got %v, want %v", k, m[k], v)
		}
	}
}

func TestConnectionStrings(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"url", "postgres://u@127.0.0.1:5432/db?sslmode=disable", "postgres://u@127.0.0.1:5432/db?application_name=x&pool_max_conns=7&sslmode=disable"},
		{"key=value", "host=/tmp dbname=db", "host=/tmp dbname=db application_name=x pool_max_conns=7"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := serverURL(tc.in, "x", 7); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
	got := commandLine([]string{"--database-url=postgres://u:secret@h/db", "--database-url", "host=h password=secret dbname=d", "--keys", "5"})
	if strings.Contains(got, "secret") {
		t.Errorf("command line shows the password: %s", got)
	}
	if !isLocal("postgres://u@127.0.0.1/db") || isLocal("postgres://u@db.example.com/db") {
		t.Error("isLocal")
	}
}

// TestBenchForwardAuth runs the forward-auth mode briefly: keygate's /auth
// against the empty net/http handler, every answer an allow.
func TestBenchForwardAuth(t *testing.T) {
	if testing.Short() {
		t.Skip("builds keygate and runs the forward-auth mode")
	}
	dbURL := pgtest.NewEmptyDatabase(t)
	var stdout, stderr bytes.Buffer
	err := run(t.Context(), append([]string{"--mode", "forward-auth", "--database-url", dbURL, "--duration", "300ms", "--warmup", "100ms",
		"--rounds", "2", "--concurrency", "1,4", "--keys", "20"}, slowMachine...), &stdout, &stderr)
	if err != nil {
		t.Fatalf("run: %v\nstderr:\n%s", err, stderr.String())
	}
	out := stdout.String()
	for _, want := range []string{"forward-auth path: keygate's HTTP /auth", "keygate cache during the runs: 100.0% fresh hits"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "first error") {
		t.Errorf("errors:\n%s", out)
	}
	if rows := errorFreeRows(t, out, "net/http", "keygate"); rows != 4 {
		t.Errorf("got %d table rows, want 4:\n%s", rows, out)
	}
}

// TestPairedRatio: each round's two runs are compared with each other, so
// drift between rounds cancels, and the interval is benchstat's.
func TestPairedRatio(t *testing.T) {
	// The machine halves its speed every other round; keygate is at 0.9
	// of the reference in every round.
	ref := []float64{1000, 500, 1000, 500, 1000, 500}
	kg := []float64{900, 450, 900, 450, 900, 450}
	s, used := pairedRatio(kg, ref)
	if math.Abs(s.Center-0.9) > 1e-9 || math.Abs(s.Lo-0.9) > 1e-9 || math.Abs(s.Hi-0.9) > 1e-9 || used != 6 {
		t.Errorf("drifting rounds, steady ratio: got %.3f [%.3f, %.3f] over %d, want 0.90 [0.90, 0.90] over 6", s.Center, s.Lo, s.Hi, used)
	}
	if got, want := fmtRatio(s, used, 6), "0.90 [0.90, 0.90]"; got != want {
		t.Errorf("fmtRatio = %q, want %q", got, want)
	}

	// Six rounds: the median of the ratios, and for six samples the 95%
	// interval is their whole range.
	s, _ = pairedRatio([]float64{1, 2, 3, 4, 5, 6}, []float64{1, 1, 1, 1, 1, 1})
	if s.Center != 3.5 || s.Lo != 1 || s.Hi != 6 {
		t.Errorf("got %v [%v, %v], want 3.5 [1, 6]", s.Center, s.Lo, s.Hi)
	}

	// Too few rounds for an interval: said, not printed as one.
	s, used = pairedRatio([]float64{1, 2, 3, 4}, []float64{1, 1, 1, 1})
	if got := fmtRatio(s, used, 4); !strings.Contains(got, "2.50 (no 95% interval: need >= 6 samples") {
		t.Errorf("four rounds: fmtRatio = %q, want the median and why there is no interval", got)
	}

	// A round where a server answered nothing (a rate of 0, a CPU per
	// request that is not a number) is left out, and the line says so.
	nan := math.NaN()
	s, used = pairedRatio([]float64{1, 1, 1, 1, 1, 1, 0, nan}, []float64{1, 1, 1, 1, 1, 1, 0, 1})
	if got, want := fmtRatio(s, used, 8), "1.00 [1.00, 1.00] over 6 of 8 rounds"; got != want {
		t.Errorf("rounds without answers: fmtRatio = %q, want %q", got, want)
	}
	s, used = pairedRatio([]float64{nan, 5}, []float64{1, 0})
	if got, want := fmtRatio(s, used, 2), "none (no round where both servers answered) over 0 of 2 rounds"; got != want {
		t.Errorf("no usable round: fmtRatio = %q, want %q", got, want)
	}
}
