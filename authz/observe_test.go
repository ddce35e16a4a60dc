package authz

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/keygate/keygate/internal/authztest"
	"github.com/keygate/keygate/internal/syncbuffer"
	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/policy"
)

// syncBuffer holds decision log lines while tests read them.
type syncBuffer struct{ syncbuffer.Buffer }

// lines decodes the JSON lines written so far.
func (s *syncBuffer) lines(t *testing.T) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(s.Bytes()))
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("not a JSON line: %q", sc.Text())
		}
		out = append(out, m)
	}
	return out
}

func TestDecisionLog(t *testing.T) {
	w := authztest.NewWorld(t)
	for _, mode := range []DecisionLogMode{DecisionLogDenials, DecisionLogAll} {
		out := &syncBuffer{}
		s := newTestServer(t, w.Lookup, func(c *Config) {
			c.DecisionLog, c.DecisionLogger = mode, slog.New(slog.NewJSONHandler(out, nil))
		})
		allowed := s.request("GET", "/api/v1/projects/1?token=hunter2", map[string]string{"x-api-key": w.Plain.Secret, "x-request-id": "req-allow"}, "")
		s.Decide(context.Background(), allowed)
		denied := s.request("POST", "/api/v1/users/7?token=hunter2#frag", map[string]string{"x-api-key": w.Plain.Secret, "X-Request-Id": "req-deny"}, "")
		denied.Source = mustAddr(t, "203.0.113.9")
		s.Decide(context.Background(), denied)
		lines := out.lines(t)
		want := 1
		if mode == DecisionLogAll {
			want = 2
		}
		if len(lines) != want {
			t.Fatalf("mode %d: %d lines, want %d:\n%s", mode, len(lines), want, out)
		}
		last := lines[len(lines)-1]
		for k, v := range map[string]any{"msg": "decision", "method": "POST", "path": "/api/v1/users/7", "request_id": "req-deny",
			"source": "203.0.113.9", "key_id": "k-plain", "account_id": "acct-k-plain", "module": "users",
			"outcome": "module_forbidden", "reason": "restricted", "dry_run": false} {
			if last[k] != v {
				t.Errorf("%s = %v, want %v (line %v)", k, last[k], v, last)
			}
		}
		if _, ok := last["latency_ms"].(float64); !ok {
			t.Errorf("no latency_ms in %v", last)
		}
		if text := out.String(); strings.Contains(text, "hunter2") || strings.Contains(text, "frag") || strings.Contains(text, w.Plain.Secret[3:]) {
			t.Fatalf("a query string, fragment or key in the decision log:\n%s", text)
		}
	}
}

// Every outcome of the decision table makes one line, with its outcome.
func TestDecisionLogEveryOutcome(t *testing.T) {
	w := authztest.NewWorld(t)
	out := &syncBuffer{}
	s := newTestServer(t, w.Lookup, func(c *Config) {
		tableLimit(c)
		c.DecisionLog, c.DecisionLogger, c.DecisionLogRate = DecisionLogAll, slog.New(slog.NewJSONHandler(out, nil)), 1e6
	})
	table := w.DecisionTable(t)
	var last []int // the line of each case's own decision, after its source's failures
	decisions := 0
	for _, c := range table {
		s.decideCase(c)
		decisions += c.Failures + 1
		last = append(last, decisions-1)
	}
	s.Decide(context.Background(), s.request("GET", "/api/v1/projects", map[string]string{"x-api-key": w.Plain.Secret}, "")) // warm
	lines := out.lines(t)
	if len(lines) != decisions+1 {
		t.Fatalf("%d lines for %d decisions", len(lines), decisions+1)
	}
	seen := map[string]bool{}
	for i, c := range table {
		if lines[last[i]]["outcome"] != c.Want {
			t.Errorf("%s: logged outcome %v, want %s", c.Name, lines[last[i]]["outcome"], c.Want)
		}
		seen[c.Want] = true
	}
	for o := range numOutcomes {
		// InvalidRequest and Unavailable below; the limits' outcomes in
		// TestLimitedDecisions (limits_test.go), with a limiter.
		if o != InvalidRequest && o != Unavailable && o != RateLimited && o != QuotaExhausted && !seen[o.String()] {
			t.Errorf("the table has no case for %s", o)
		}
	}
	unavailable := newTestServer(t, &authztest.Lookup{Err: keystore.ErrUnavailable}, func(c *Config) {
		c.DecisionLog, c.DecisionLogger = DecisionLogDenials, slog.New(slog.NewJSONHandler(out, nil))
	})
	unavailable.decideRequest("GET", "/api/v1/projects", map[string]string{"x-api-key": w.Plain.Secret}, "")
	unavailable.Refuse(context.Background(), &Request{Method: "GET"}, ReasonUndecodable)
	lines = out.lines(t)
	if lines[len(lines)-2]["outcome"] != "unavailable" || lines[len(lines)-1]["outcome"] != "invalid_request" {
		t.Fatalf("last lines %v", lines[len(lines)-2:])
	}
}

func TestDecisionLogRateLimit(t *testing.T) {
	w := authztest.NewWorld(t)
	out := &syncBuffer{}
	s := newTestServer(t, w.Lookup, func(c *Config) {
		c.DecisionLog, c.DecisionLogger, c.DecisionLogRate = DecisionLogDenials, slog.New(slog.NewJSONHandler(out, nil)), 5
	})
	for range 200 {
		s.decideRequest("GET", "/api/v1/projects", map[string]string{"x-api-key": "kg_garbage"}, "")
	}
	if n := len(out.lines(t)); n > 10 {
		t.Fatalf("%d lines for 200 denials at 5 a second", n)
	}
	if s.DecisionLogDropped() < 190 {
		t.Fatalf("dropped %d, want at least 190", s.DecisionLogDropped())
	}
}

func TestDryRun(t *testing.T) {
	w := authztest.NewWorld(t)
	reg := prometheus.NewRegistry()
	s := newTestServer(t, w.Lookup, func(c *Config) { tableLimit(c); c.DryRun = true; c.Metrics = NewMetrics(reg) })
	missing := 1.0 // the one below
	for _, c := range w.DecisionTable(t) {
		if c.Want == "missing_api_key" {
			missing++
		}
		d := s.decideCase(c)
		if d.Outcome.String() != c.Want {
			t.Fatalf("%s: a dry run changed the outcome to %s, want %s", c.Name, d.Outcome, c.Want)
		}
		if d.Denied() || d.DryRun != (d.Outcome != Allow) {
			t.Fatalf("%s: %s denied %v dry run %v; a dry run denies nothing", c.Name, d.Outcome, d.Denied(), d.DryRun)
		}
	}
	// A dry-run denial carries what it would have been, and nothing a
	// client forged.
	d := s.decideRequest("GET", "/api/v1/users", map[string]string{"x-api-key": w.Plain.Secret, "x-keygate-dry-run": "none", "x-keygate-key-id": "forged"}, "")
	id := s.Identity(&d)
	if id.Headers[IdentityDryRun].Value != "module_forbidden" || id.Headers[IdentityKeyID].Value != "k-plain" {
		t.Fatalf("dry-run identity %v", id.Headers)
	}
	if !strings.Contains(strings.Join(id.Remove, ","), "x-keygate-dry-run") {
		t.Fatalf("a forged dry-run header is not removed: %v", id.Remove)
	}
	d = s.decideRequest("GET", "/api/v1/projects", nil, "")
	if id := s.Identity(&d); id.Headers[IdentityKeyID].Value != "" || id.Headers[IdentityDryRun].Value != "missing_api_key" {
		t.Fatalf("dry-run identity without a key %v", id.Headers)
	}
	if got := testutil.ToFloat64(s.metrics.decisions[ReasonMissingKey][1]); got != missing {
		t.Fatalf("dry-run missing-key decisions counted %v, want %v", got, missing)
	}
	// What an adapter could not read is refused even in a dry run.
	if d := s.Refuse(context.Background(), &Request{}, ReasonUndecodable); !d.Denied() {
		t.Fatal("a dry run let an undecodable request through")
	}
}

func TestDecisionSpans(t *testing.T) {
	w := authztest.NewWorld(t)
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	cache, err := keystore.NewCache(w.Lookup, keystore.CacheOptions{Tracer: tp.Tracer("test")})
	if err != nil {
		t.Fatal(err)
	}
	s := newTestServer(t, cache, func(c *Config) { c.Tracer = tp.Tracer("test"); c.Now = nil })
	const parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	headers := map[string]string{"x-api-key": w.Plain.Secret, "traceparent": parent, "x-request-id": "r1"}
	s.decideRequest("GET", "/api/v1/projects/1?secret=hunter2", headers, "") // a miss: the store
	s.decideRequest("GET", "/api/v1/projects/1?secret=hunter2", headers, "") // a hit
	spans := rec.Ended()
	var decisions []sdktrace.ReadOnlySpan
	loads := 0
	for _, sp := range spans {
		switch sp.Name() {
		case "keygate.decide":
			decisions = append(decisions, sp)
		case "keystore.cache.load":
			loads++
			if sp.Parent().TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" {
				t.Errorf("the store lookup's span is not in the request's trace")
			}
		}
		for _, a := range sp.Attributes() {
			if v := a.Value.String(); strings.Contains(v, "hunter2") || strings.Contains(v, w.Plain.Secret[3:]) {
				t.Errorf("span %s attribute %s holds a secret or a query string: %q", sp.Name(), a.Key, v)
			}
		}
	}
	if len(decisions) != 2 || loads != 1 {
		t.Fatalf("%d decision spans and %d store lookups, want 2 and 1", len(decisions), loads)
	}
	for i, sp := range decisions {
		if sp.SpanContext().TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" || sp.Parent().SpanID().String() != "00f067aa0ba902b7" {
			t.Errorf("decision span %d is not a child of the request's traceparent: %v", i, sp.Parent())
		}
		attrs := map[string]string{}
		for _, a := range sp.Attributes() {
			attrs[string(a.Key)] = a.Value.String()
		}
		want := map[string]string{"keygate.outcome": "ok", "keygate.reason": "allowed", "keygate.module": "projects",
			"keygate.key_id": "k-plain", "keygate.account_id": "acct-k-plain", "url.path": "/api/v1/projects/1",
			"keygate.request_id": "r1", "keygate.cache_hit": map[int]string{0: "false", 1: "true"}[i]}
		for k, v := range want {
			if attrs[k] != v {
				t.Errorf("decision span %d: %s = %q, want %q", i, k, attrs[k], v)
			}
		}
	}
}

func TestModuleDryRun(t *testing.T) {
	w := authztest.NewWorld(t)
	p, err := policy.Parse("policy.yaml", []byte(`modules:
  users: { paths: [/api/v1/users], api_keys: deny, dry_run: true }
  accounts: { paths: [/api/v1/accounts], api_keys: deny }
  projects: { paths: [/api/v1/projects], dry_run: true }
  deployments: { paths: [/api/v1/deployments] }
`))
	if err != nil {
		t.Fatal(err)
	}
	s := newTestServer(t, w.Lookup, func(c *Config) { c.Policy = p })
	cases := []struct {
		name, method, path, module string
		headers                    map[string]string
		want                       Outcome
		dryRun                     bool
	}{
		{"closed module in dry run", "GET", "/api/v1/users/1", "", map[string]string{"x-api-key": w.Plain.Secret}, ModuleForbidden, true},
		{"closed module not in dry run", "GET", "/api/v1/accounts/1", "", map[string]string{"x-api-key": w.Plain.Secret}, ModuleForbidden, false},
		{"no key, module in dry run", "GET", "/api/v1/projects/1", "", nil, MissingKey, true},
		{"no key, module not in dry run", "GET", "/api/v1/deployments/1", "", nil, MissingKey, false},
		{"no key, route module in dry run", "GET", "/v2/p", "projects", nil, MissingKey, true},
		{"scope, module in dry run", "POST", "/api/v1/projects/1", "", map[string]string{"x-api-key": w.ReadOnly.Secret}, InsufficientScope, true},
		{"dry-run module, a reading in a closed module not in dry run", "GET", "/api/v1/projects/../accounts", "projects", map[string]string{"x-api-key": w.Plain.Secret}, ModuleForbidden, false},
		{"dry-run module, a reading in a closed module in dry run", "GET", "/api/v1/projects/../users", "projects", map[string]string{"x-api-key": w.Plain.Secret}, ModuleForbidden, true},
		{"dry-run module, a path override in a closed module not in dry run", "GET", "/api/v1/projects/1", "", map[string]string{"x-api-key": w.Plain.Secret, "x-original-url": "/api/v1/accounts/1"}, ModuleForbidden, false},
		{"dry-run module, a path override in a closed module in dry run", "GET", "/api/v1/projects/1", "", map[string]string{"x-api-key": w.Plain.Secret, "x-original-url": "/api/v1/users/1"}, ModuleForbidden, true},
		{"path in no module", "GET", "/other", "", nil, MissingKey, false},
		{"an allow is an allow", "GET", "/api/v1/projects/1", "", map[string]string{"x-api-key": w.Plain.Secret}, Allow, false},
	}
	for _, c := range cases {
		d := s.decideRequest(c.method, c.path, c.headers, c.module)
		if d.Outcome != c.want || d.DryRun != c.dryRun {
			t.Errorf("%s: %s dry run %v, want %s dry run %v", c.name, d.Outcome, d.DryRun, c.want, c.dryRun)
		}
	}
}
