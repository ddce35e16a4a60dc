//go:build unix

package test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/needs"
	"github.com/keygate/keygate/internal/pgtest"
	"github.com/keygate/keygate/internal/waittest"
	"go.yaml.in/yaml/v3"
)

// metricName finds the keygate and gRPC metrics a PromQL expression uses
// (recording rules, named keygate:…, do not match).
var metricName = regexp.MustCompile(`\b(keygate_[a-z0-9_]+|grpc_server_[a-z0-9_]+)\b`)

// TestDashboardAndRules checks the shipped Prometheus rules with promtool
// (syntax, and the unit tests that make every alert fire on its series),
// and that every metric the rules and the Grafana dashboard name is one a
// running keygate serves.
func TestDashboardAndRules(t *testing.T) {
	promtool := needs.Program(t, "promtool", "apt-get install prometheus")
	root := repoRoot(t)
	rules := filepath.Join(root, "deploy", "prometheus", "keygate-rules.yaml")
	for _, args := range [][]string{{"check", "rules", rules}, {"test", "rules", filepath.Join(root, "deploy", "prometheus", "keygate-rules.test.yaml")}} {
		if out, err := exec.Command(promtool, args...).CombinedOutput(); err != nil {
			t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}

	used := map[string][]string{} // metric → where
	var ruleFile struct {
		Groups []struct {
			Rules []struct {
				Record, Alert, Expr string
			}
		}
	}
	b, err := os.ReadFile(rules)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &ruleFile); err != nil {
		t.Fatal(err)
	}
	for _, g := range ruleFile.Groups {
		for _, r := range g.Rules {
			for _, m := range metricName.FindAllString(r.Expr, -1) {
				used[m] = append(used[m], "rule "+r.Record+r.Alert)
			}
		}
	}
	var dash struct {
		Panels []struct {
			ID      int
			Title   string
			Type    string
			Targets []struct{ Expr string }
		}
	}
	b, err = os.ReadFile(filepath.Join(root, "deploy", "grafana", "keygate.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("keygate.json: %v", err)
	}
	ids := map[int]bool{}
	for _, p := range dash.Panels {
		if ids[p.ID] {
			t.Errorf("dashboard panel id %d repeated", p.ID)
		}
		ids[p.ID] = true
		if p.Type != "row" && len(p.Targets) == 0 {
			t.Errorf("dashboard panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			for _, m := range metricName.FindAllString(tg.Expr, -1) {
				used[m] = append(used[m], "panel "+p.Title)
			}
		}
	}
	if len(used) < 15 {
		t.Fatalf("only %d metrics found in the rules and the dashboard", len(used))
	}

	// A fresh keygate serves every series they name (at zero), so that its
	// panels show zeros, not "no data"; and so does one that has answered.
	db := pgtest.NewDatabase(t) // the CLI's revocation notifies the server: PostgreSQL
	key := createKey(t, db, "acme", "metrics")
	srv := startServer(t, db)
	missing := func(when string) {
		t.Helper()
		_, body := srv.httpGet(t, "/metrics")
		served := map[string]bool{}
		for _, line := range strings.Split(body, "\n") {
			if line == "" || line[0] == '#' {
				continue
			}
			served[line[:strings.IndexAny(line, "{ ")]] = true
		}
		var missing []string
		for m, where := range used {
			if !served[m] {
				missing = append(missing, m+" ("+strings.Join(where, ", ")+")")
			}
		}
		sort.Strings(missing)
		if len(missing) > 0 {
			t.Fatalf("%s, metrics named by the rules or the dashboard that keygate does not serve:\n  %s", when, strings.Join(missing, "\n  "))
		}
	}
	missing("before any request")
	srv.mustCheck(t, keyCheck(key.Secret, "/api/v1/projects"))
	srv.httpGet(t, "/auth")  // a forward-auth request (a 400: no forwarded headers)
	revokeKey(t, db, key.ID) // a notification: the propagation histogram has a sample
	waittest.Until(t, 5*time.Second, "the revocation's notification", func() bool { return srv.metric(t, "keygate_notifications_total") > 0 })
	missing("after requests")
	t.Logf("%d metrics named by the rules and the dashboard, all served", len(used))
}

// repoRoot is the module's directory.
func repoRoot(tb testing.TB) string {
	tb.Helper()
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		tb.Fatal(err)
	}
	return filepath.Dir(strings.TrimSpace(string(out)))
}
