package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/admin"
	"github.com/keygate/keygate/internal/storetest"
	"github.com/keygate/keygate/internal/waittest"
	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/webhook"
)

// TestKeysWhoami: the key comes from standard input only, and is never
// printed back; its id, account, state and expiry come out.
func TestKeysWhoami(t *testing.T) {
	t.Parallel()
	db := storetest.NewDatabase(t)
	id, secret := createKey(t, db)
	r := runTerminal(t, db, secret+"\n", "keys", "whoami")
	if r.code != 0 || !strings.Contains(r.stdout, id) || !strings.Contains(r.stdout, "acme") || !strings.Contains(r.stdout, "active") ||
		!strings.Contains(r.stdout, "Expires:") {
		t.Fatalf("whoami: %d %q %q", r.code, r.stdout, r.stderr)
	}
	j := runTerminal(t, db, secret, "keys", "whoami", "-o", "json")
	if k := decode[admin.Key](t, j.stdout); k.ID != id || k.Status != "active" {
		t.Fatalf("whoami -o json: %s", j.stdout)
	}
	mustRun(t, db, "keys", "revoke", id)
	if r := runTerminal(t, db, secret, "keys", "whoami"); r.code != 0 || !strings.Contains(r.stdout, "revoked") {
		t.Fatalf("whoami of a revoked key: %d %s", r.code, r.stdout)
	}
	stranger, _ := keystore.GenerateSecret("kg")
	for name, c := range map[string]struct {
		input string
		args  []string
		code  int
		says  string
	}{
		"in argv":         {"", []string{"keys", "whoami", secret}, 2, "never from an argument"},
		"not a key":       {"hello\n", []string{"keys", "whoami"}, 2, "does not hold a keygate key"},
		"a wrong sum":     {secret[:len(secret)-1] + "0\n", []string{"keys", "whoami"}, 2, "does not hold a keygate key"},
		"nothing":         {"", []string{"keys", "whoami"}, 2, "does not hold a keygate key"},
		"not of this one": {stranger.Reveal() + "\n", []string{"keys", "whoami"}, 1, "no key of this store has this value"},
	} {
		r := runTerminal(t, db, c.input, c.args...)
		if r.code != c.code || !strings.Contains(r.stderr, c.says) {
			t.Errorf("%s: exit %d %q, want %d saying %q", name, r.code, r.stderr, c.code, c.says)
		}
		if strings.Contains(r.stderr, secret[4:]) || strings.Contains(r.stdout, secret[4:]) {
			t.Errorf("%s: the key is printed back", name)
		}
	}
}

// TestWebhooksCommands: the CLI registers, lists, changes and deletes
// endpoints, shows the delivery log, and refuses URLs that lead where
// deliveries may not go.
func TestWebhooksCommands(t *testing.T) {
	t.Parallel()
	db := storetest.NewDatabase(t)
	created := runCLI(t, db, "webhooks", "create", "--url", "http://127.0.0.1:8080/hook", "--event", "key.created", "--event", "key.revoked", "-o", "json")
	w := decode[admin.Webhook](t, created.stdout)
	if created.code != 0 || !strings.HasPrefix(w.Secret, "whsec_") || w.EventTypes[0] != "key.created" {
		t.Fatalf("create: %d %s %s", created.code, created.stdout, created.stderr)
	}
	if out := mustRun(t, db, "webhooks", "list"); !strings.Contains(out, w.ID) || strings.Contains(out, "whsec_") {
		t.Fatalf("list: %s", out)
	}
	createKey(t, db)
	if out := mustRun(t, db, "webhooks", "deliveries", w.ID); !strings.Contains(out, "key.created") || !strings.Contains(out, "pending") {
		t.Fatalf("deliveries: %s", out)
	}
	ds := decode[[]admin.Delivery](t, mustRun(t, db, "webhooks", "deliveries", w.ID, "-o", "json"))
	if len(ds) != 1 {
		t.Fatalf("%d deliveries", len(ds))
	}
	mustRun(t, db, "webhooks", "redeliver", w.ID, jsonInt(ds[0].ID))
	if out := mustRun(t, db, "webhooks", "update", w.ID, "--disable", "--all-events"); !strings.Contains(out, "no, since") || !strings.Contains(out, "(every type)") {
		t.Fatalf("update: %s", out)
	}
	rot := decode[admin.Webhook](t, mustRun(t, db, "webhooks", "rotate-secret", w.ID, "--overlap", "1h", "-o", "json"))
	if rot.Secret == w.Secret || rot.PreviousSecretExpiresAt == nil {
		t.Fatalf("rotate-secret: %+v", rot)
	}
	for _, url := range []string{"http://169.254.169.254/latest/meta-data/", "ftp://example.com/", "http://u:p@example.com/", "http://[fe80::1]/"} {
		if r := runCLI(t, db, "webhooks", "create", "--url", url); r.code != 2 || !strings.Contains(r.stderr, "--url") {
			t.Errorf("create --url %s: exit %d %q, want 2 naming --url", url, r.code, r.stderr)
		}
	}
	if r := runCLI(t, db, "webhooks", "create", "--url", "http://127.0.0.1/", "--event", "key.exploded"); r.code != 2 || !strings.Contains(r.stderr, "--event") {
		t.Errorf("an unknown event: exit %d %q", r.code, r.stderr)
	}
	mustRun(t, db, "webhooks", "delete", w.ID)
	if r := runCLI(t, db, "webhooks", "show", w.ID); r.code != 1 || !strings.Contains(r.stderr, "no such webhook") {
		t.Fatalf("show after delete: %d %q", r.code, r.stderr)
	}
}

func jsonInt(n int64) string { return strconv.FormatInt(n, 10) }

// TestServeDeliversWebhooks: serve delivers a change made by the CLI,
// signed with the endpoint's secret, and /metrics has the expiring-keys
// gauge, one series per lead time.
func TestServeDeliversWebhooks(t *testing.T) {
	t.Parallel()
	db := storetest.NewDatabase(t)
	var mu sync.Mutex
	var got []string
	var secret keystore.SigningSecret
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		if err := webhook.Verify(secret, r.Header, body, time.Now(), time.Minute); err != nil {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		got = append(got, r.Header.Get(webhook.HeaderID)+" "+string(body))
	}))
	t.Cleanup(receiver.Close)
	w := decode[admin.Webhook](t, mustRun(t, db, "webhooks", "create", "--url", receiver.URL, "-o", "json"))
	mu.Lock()
	secret = keystore.SigningSecret(w.Secret)
	mu.Unlock()
	inst := startServe(t, db, "--expiry-leads", "1d,3d,14d", "--expiry-interval", "200ms")
	id, _ := createKey(t, db, "--expires-in", "2d")
	waittest.Until(t, 10*time.Second, "the key.expiring delivery and the gauge", func() bool {
		mu.Lock()
		n := len(got)
		mu.Unlock()
		metrics := httpBody(t, "http://"+inst.httpAddr+"/metrics")
		return n >= 2 && strings.Contains(metrics, `keygate_keys_expiring{within="3d"} 1`) &&
			strings.Contains(metrics, `keygate_keys_expiring{within="1d"} 0`) && strings.Contains(metrics, `keygate_keys_expiring{within="14d"} 1`)
	})
	mu.Lock()
	defer mu.Unlock()
	all := strings.Join(got, "\n")
	if len(got) != 2 || !strings.Contains(all, `"type":"key.created"`) || !strings.Contains(all, `"type":"key.expiring"`) ||
		!strings.Contains(all, `"lead":"3d"`) || !strings.Contains(all, id) || !strings.HasPrefix(got[0], "evt_") {
		t.Fatalf("delivered:\n%s", all)
	}
	if r := runCLI(t, db, "serve", "--expiry-leads", "0s"); r.code != 2 || !strings.Contains(r.stderr, "--expiry-leads") {
		t.Fatalf("a zero lead time: %d %q", r.code, r.stderr)
	}
}

// TestExpiryLeadsDefault: the flag's default is the package's.
func TestExpiryLeadsDefault(t *testing.T) {
	t.Parallel()
	var c cli
	if _, err := parse(&c, []string{"serve"}, func(string) string { return "" }, io.Discard, io.Discard); err != nil {
		t.Fatal(err)
	}
	cfg, err := c.Serve.eventFlags.config()
	if err != nil {
		t.Fatal(err)
	}
	want, _ := keystore.NormalizeExpiryLeads(keystore.DefaultExpiryLeads)
	if len(cfg.leads) != len(want) {
		t.Fatalf("leads %v, want %v", cfg.leads, want)
	}
	for i := range want {
		if cfg.leads[i] != want[i] {
			t.Fatalf("leads %v, want %v", cfg.leads, want)
		}
	}
}
