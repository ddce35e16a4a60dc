//go:build unix

package test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/hooktest"
	"github.com/keygate/keygate/internal/pgtest"
	"github.com/keygate/keygate/internal/waittest"
	"github.com/keygate/keygate/keystore"
)

// register makes a webhook for h with the CLI.
func register(t *testing.T, h *hooktest.Receiver, db string, events ...string) string {
	args := []string{"webhooks", "create", "--url", h.URL + "/keygate", "-o", "json"}
	for _, e := range events {
		args = append(args, "--event", e)
	}
	var w struct{ ID, Secret string }
	if err := json.Unmarshal(cli(t, db, args...), &w); err != nil {
		t.Fatal(err)
	}
	h.SetSecret(keystore.SigningSecret(w.Secret))
	return w.ID
}

// kill sends SIGKILL to a server's process group and waits for it.
func (s *server) kill(t *testing.T) {
	t.Helper()
	_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
	<-s.exited
}

// TestWebhookSurvivesSIGKILL: keygate killed with SIGKILL between a change
// and its delivery (the receiver down, the first attempt failed): after a
// restart the event still arrives, once.
func TestWebhookSurvivesSIGKILL(t *testing.T) {
	db := pgtest.NewDatabase(t)
	h := hooktest.New(t, nil)
	h.Down.Store(true)
	hook := register(t, h, db, "key.created")
	s := startServer(t, db)
	k := createKey(t, db, "acme", "killed")
	var log []struct {
		State      string
		Attempts   int
		LastStatus *int `json:"last_status"`
	}
	// The first attempt is refused and recorded (a kill before it is
	// recorded leaves its claim to lapse first: a minute later).
	waittest.Until(t, 10*time.Second, "the first failed attempt, recorded", func() bool {
		if err := json.Unmarshal(cli(t, db, "webhooks", "deliveries", hook, "-o", "json"), &log); err != nil {
			t.Fatal(err)
		}
		return len(log) == 1 && log[0].LastStatus != nil && *log[0].LastStatus == 503
	})
	s.kill(t)
	if err := json.Unmarshal(cli(t, db, "webhooks", "deliveries", hook, "-o", "json"), &log); err != nil {
		t.Fatal(err)
	}
	if len(log) != 1 || log[0].State != "pending" {
		t.Fatalf("after SIGKILL the delivery log says %+v; want one pending delivery", log)
	}
	h.Down.Store(false)
	startServer(t, db)
	waittest.Until(t, 30*time.Second, "the delivery after the restart", func() bool { d, _ := h.Counts(); return d == 1 })
	time.Sleep(time.Second) // a duplicate would arrive now
	if d, most := h.Counts(); d != 1 || most != 1 || h.BadSignatures.Load() != 0 {
		t.Fatalf("%d events accepted, one of them %d times (%d bad signatures); want the one key.created once", d, most, h.BadSignatures.Load())
	}
	t.Logf("key %s: %d refused attempts before SIGKILL, delivered once after the restart", k.ID, h.Refused.Load())
}

// TestTwoReplicasDeliverOnce: two replicas on one PostgreSQL database
// deliver every event once: no receiver sees an event twice when no
// attempt failed.
func TestTwoReplicasDeliverOnce(t *testing.T) {
	db := pgtest.NewDatabase(t)
	h := hooktest.New(t, nil)
	register(t, h, db)
	a, b := startServer(t, db), startServer(t, db)
	const keys = 25
	var ids []string
	for i := range keys {
		ids = append(ids, createKey(t, db, "acme", fmt.Sprintf("k%d", i)).ID)
	}
	for _, id := range ids {
		revokeKey(t, db, id)
	}
	waittest.Until(t, 30*time.Second, "every event delivered", func() bool { d, _ := h.Counts(); return d == 2*keys })
	time.Sleep(2 * time.Second) // a duplicate would arrive now
	d, most := h.Counts()
	if d != 2*keys || most != 1 || h.BadSignatures.Load() != 0 {
		t.Fatalf("%d distinct events, one delivered %d times, %d bad signatures; want %d, each once", d, most, h.BadSignatures.Load(), 2*keys)
	}
	delivered := a.metric(t, `keygate_webhook_attempts_total{outcome="delivered"}`) + b.metric(t, `keygate_webhook_attempts_total{outcome="delivered"}`)
	if delivered != 2*keys {
		t.Fatalf("the replicas counted %v deliveries, want %d", delivered, 2*keys)
	}
	t.Logf("%d events: replica A delivered %v, replica B %v; none twice", 2*keys,
		a.metric(t, `keygate_webhook_attempts_total{outcome="delivered"}`), b.metric(t, `keygate_webhook_attempts_total{outcome="delivered"}`))
}

// TestLeakRevokesOnEveryReplica: a GitLab leak report to one replica's
// admin listener revokes the key, which then gets 401 on every replica
// within the revocation bound (1s).
func TestLeakRevokesOnEveryReplica(t *testing.T) {
	db := pgtest.NewDatabase(t)
	dir := t.TempDir()
	tokenFile, tokensFile := filepath.Join(dir, "gitlab-token"), filepath.Join(dir, "admin-tokens.yaml")
	const gitlabToken = "gitlab-revocation-token-0123456789"
	if err := os.WriteFile(tokenFile, []byte(gitlabToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(tokensFile, []byte("[]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	replicas := []*server{
		startServer(t, db, "--admin-addr", "127.0.0.1:0", "--admin-tokens-file", tokensFile, "--leaks-gitlab-token-file", tokenFile),
		startServer(t, db), startServer(t, db),
	}
	adminAddr := ""
	waittest.Until(t, 5*time.Second, "the admin listener's address", func() bool {
		replicas[0].logs.mu.Lock()
		defer replicas[0].logs.mu.Unlock()
		for _, l := range replicas[0].logs.lines {
			var line struct {
				AdminAddr string `json:"admin_addr"`
			}
			if json.Unmarshal([]byte(l), &line) == nil && line.AdminAddr != "" {
				adminAddr = line.AdminAddr
				return true
			}
		}
		return false
	})
	var lags []time.Duration
	for trial := range 5 {
		k := createKey(t, db, "acme", fmt.Sprintf("leaked %d", trial))
		req := keyCheck(k.Secret, "/api/v1/projects")
		for _, r := range replicas {
			cacheKey(t, r, req)
		}
		body := fmt.Sprintf(`[{"type":"gitleaks_rule_id_keygate_api_key","token":%q,"location":"https://gitlab.example.com/g/p/-/blob/%d/.env"}]`, k.Secret, trial)
		post, _ := http.NewRequest("POST", "http://"+adminAddr+"/v1/leaks", strings.NewReader(body))
		post.Header.Set("Content-Type", "application/json")
		post.Header.Set("Authorization", gitlabToken)
		sent := time.Now()
		resp, err := http.DefaultClient.Do(post)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNoContent {
			t.Fatalf("the leak report: %d", resp.StatusCode)
		}
		for i, d := range waitDenied(replicas, req, 5*time.Second) {
			if d.err != nil {
				t.Fatalf("trial %d: replica %d: %v", trial, i, d.err)
			}
			lags = append(lags, d.at.Sub(sent))
		}
	}
	worst := slicesMax(lags)
	t.Logf("leak report → 401 on every replica: p50 %s, worst %s over %d (trial, replica) pairs", ms(percentile(lags, 0.5)), ms(worst), len(lags))
	if worst > time.Second {
		t.Fatalf("a leaked key still worked %s after the report; the bound is 1s", worst)
	}
	events := string(cli(t, db, "keys", "list", "--all", "-o", "json"))
	if strings.Count(events, `"status": "revoked"`) != 5 {
		t.Fatalf("want the 5 leaked keys revoked:\n%s", events)
	}
}

func slicesMax(ds []time.Duration) time.Duration {
	var m time.Duration
	for _, d := range ds {
		m = max(m, d)
	}
	return m
}
