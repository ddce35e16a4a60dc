package admin_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/keygate/keygate/admin"
	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/policy"
	"github.com/keygate/keygate/webhook"
)

// newEventsFixture is newFixture with the events endpoints configured.
func newEventsFixture(t *testing.T, events admin.EventsConfig) *fixture {
	t.Helper()
	f := newFixture(t)
	srv, err := admin.New(admin.Config{Store: f.store, Policy: policy.Example(), Tokens: f.tokens, Events: events})
	if err != nil {
		t.Fatal(err)
	}
	f.handler = srv
	f.srv = httptest.NewServer(srv)
	t.Cleanup(f.srv.Close)
	return f
}

func TestWebhooksAPI(t *testing.T) {
	t.Parallel()
	guard := &webhook.Guard{}
	f := newEventsFixture(t, admin.EventsConfig{CheckURL: guard.CheckURL, ExpiryLeads: keystore.DefaultExpiryLeads})
	res := f.do(call{method: "POST", path: "/v1/webhooks", token: f.root, body: map[string]any{"url": "http://127.0.0.1:8080/hook",
		"event_types": []string{"key.created", "key.revoked"}, "description": "pager"}})
	if res.status != http.StatusCreated || !strings.HasPrefix(res.header.Get("Location"), "/v1/webhooks/") {
		t.Fatalf("create: %d %s", res.status, res.body)
	}
	var created admin.Webhook
	res.decode(t, &created)
	if !strings.HasPrefix(created.Secret, "whsec_") || !created.Enabled || created.AccountID != nil {
		t.Fatalf("created %+v", created)
	}
	get := f.do(call{method: "GET", path: "/v1/webhooks/" + created.ID, token: f.root})
	if get.status != 200 || strings.Contains(string(get.body), "whsec_") {
		t.Fatalf("get: %d %s", get.status, get.body)
	}
	// Refused URLs and fields: 400 naming the field, nothing stored.
	for _, body := range []map[string]any{
		{"url": "http://169.254.169.254/latest/meta-data/"},
		{"url": "http://[fe80::1]/x"},
		{"url": "ftp://example.com/"},
		{"url": "http://user:secret@example.com/"},
		{"url": "http://0.0.0.0:8080/"},
		{"url": "http://127.0.0.1:8080/", "event_types": []string{"key.exploded"}},
		{"url": "http://127.0.0.1:8080/", "colour": "red"},
		{},
	} {
		res := f.do(call{method: "POST", path: "/v1/webhooks", token: f.root, body: body, schema: schemaAny})
		if res.status != http.StatusBadRequest || len(res.problem.Errors) == 0 {
			t.Errorf("create %v: %d %s, want 400 with field errors", body, res.status, res.body)
		}
	}
	list := f.do(call{method: "GET", path: "/v1/webhooks", token: f.root})
	var items struct{ Items []admin.Webhook }
	list.decode(t, &items)
	if len(items.Items) != 1 || items.Items[0].Secret != "" {
		t.Fatalf("list: %s", list.body)
	}
	// A key's creation is delivered to it: the log shows it pending.
	k := f.create(map[string]any{})
	log := f.do(call{method: "GET", path: "/v1/webhooks/" + created.ID + "/deliveries", token: f.root})
	var page struct {
		Items      []admin.Delivery
		NextBefore *int64 `json:"next_before"`
	}
	log.decode(t, &page)
	if log.status != 200 || len(page.Items) != 1 || page.Items[0].EventType != "key.created" || page.Items[0].State != "pending" || page.NextBefore != nil {
		t.Fatalf("deliveries: %d %s", log.status, log.body)
	}
	if res := f.do(call{method: "POST", path: "/v1/webhooks/" + created.ID + "/deliveries/" + jsonInt(page.Items[0].ID) + "/redeliver", token: f.root}); res.status != http.StatusAccepted {
		t.Fatalf("redeliver: %d %s", res.status, res.body)
	}
	// The delivery log's query is read as every list's: unknown, repeated
	// or empty parameters are a 400 naming them.
	for query, field := range map[string]string{"?bogus=1": "bogus", "?limit=1&limit=2": "limit", "?limit=": "limit", "?before=x": "before"} {
		res := f.do(call{method: "GET", path: "/v1/webhooks/" + created.ID + "/deliveries" + query, token: f.root, schema: schemaAny})
		if res.status != http.StatusBadRequest || !slices.Equal(res.fields(), []string{field}) {
			t.Errorf("deliveries%s: %d, fields %v; want 400 on %s", query, res.status, res.fields(), field)
		}
	}
	if res := f.do(call{method: "POST", path: "/v1/webhooks/" + created.ID + "/deliveries/999999/redeliver", token: f.root}); res.status != http.StatusNotFound {
		t.Fatalf("redeliver nothing: %d %s", res.status, res.body)
	}
	// Change it; rotate its secret (201, the new one once, the old one
	// signing until previous_secret_expires_at).
	patch := f.do(call{method: "PATCH", path: "/v1/webhooks/" + created.ID, token: f.root, body: map[string]any{"enabled": false, "event_types": nil}})
	var patched admin.Webhook
	patch.decode(t, &patched)
	if patch.status != 200 || patched.Enabled || len(patched.EventTypes) != 0 {
		t.Fatalf("patch: %d %s", patch.status, patch.body)
	}
	rot := f.do(call{method: "POST", path: "/v1/webhooks/" + created.ID + "/rotate-secret", token: f.root, body: map[string]any{"overlap": "1h"}})
	var rotated admin.Webhook
	rot.decode(t, &rotated)
	if rot.status != http.StatusCreated || rotated.Secret == created.Secret || rotated.PreviousSecretExpiresAt == nil {
		t.Fatalf("rotate: %d %s", rot.status, rot.body)
	}
	if res := f.do(call{method: "POST", path: "/v1/webhooks/" + created.ID + "/rotate-secret", token: f.root, body: map[string]any{"overlap": "30d"}}); res.status != 400 {
		t.Fatalf("an overlap of 30d: %d", res.status)
	}
	// Account binding: acme's token sees acme's webhooks only, and makes
	// only acme's.
	if res := f.do(call{method: "GET", path: "/v1/webhooks/" + created.ID, token: f.acme}); res.status != http.StatusNotFound {
		t.Fatalf("a bound token reading an every-account webhook: %d", res.status)
	}
	if res := f.do(call{method: "POST", path: "/v1/webhooks", token: f.acme, body: map[string]any{"url": "http://127.0.0.1:8080/", "account_id": "other"}}); res.status != http.StatusForbidden {
		t.Fatalf("a bound token making another account's webhook: %d", res.status)
	}
	own := f.do(call{method: "POST", path: "/v1/webhooks", token: f.acme, body: map[string]any{"url": "http://127.0.0.1:8080/acme"}})
	var ownHook admin.Webhook
	own.decode(t, &ownHook)
	if own.status != http.StatusCreated || ownHook.AccountID == nil || *ownHook.AccountID != "acme" {
		t.Fatalf("a bound token's webhook: %d %s", own.status, own.body)
	}
	var acmeList struct{ Items []admin.Webhook }
	f.do(call{method: "GET", path: "/v1/webhooks", token: f.acme}).decode(t, &acmeList)
	if len(acmeList.Items) != 1 || acmeList.Items[0].ID != ownHook.ID {
		t.Fatalf("the bound token lists %+v", acmeList.Items)
	}
	if res := f.do(call{method: "DELETE", path: "/v1/webhooks/" + created.ID, token: f.root}); res.status != http.StatusNoContent {
		t.Fatalf("delete: %d", res.status)
	}
	if res := f.do(call{method: "GET", path: "/v1/webhooks/" + created.ID, token: f.root}); res.status != http.StatusNotFound {
		t.Fatalf("get after delete: %d", res.status)
	}
	types := f.do(call{method: "GET", path: "/v1/event-types", token: f.acme})
	var et struct {
		EventTypes  []string `json:"event_types"`
		ExpiryLeads []string `json:"expiry_leads"`
	}
	types.decode(t, &et)
	if !slices.Equal(et.ExpiryLeads, []string{"14d", "3d", "1d"}) || len(et.EventTypes) != 9 {
		t.Fatalf("event types: %s", types.body)
	}
	if k.ID == "" {
		t.Fatal("no key")
	}
}

func jsonInt(n int64) string { b, _ := json.Marshal(n); return string(b) }

// TestLookupKey: POST /v1/keys/lookup finds a key by its value; an
// unknown, malformed or another account's key is the same 404; the key
// never reaches the log (the fixture checks).
func TestLookupKey(t *testing.T) {
	t.Parallel()
	f := newEventsFixture(t, admin.EventsConfig{})
	acme := f.create(map[string]any{"account_id": "acme"})
	other := f.create(map[string]any{"account_id": "other"})
	res := f.do(call{method: "POST", path: "/v1/keys/lookup", token: f.root, body: map[string]any{"key": acme.Secret}})
	var k admin.Key
	res.decode(t, &k)
	if res.status != 200 || k.ID != acme.ID || k.AccountID != "acme" || k.Status != "active" {
		t.Fatalf("lookup: %d %s", res.status, res.body)
	}
	stranger, _ := keystore.GenerateSecret("kg")
	var bodies []string
	for _, c := range []struct{ token, key string }{{f.acme, other.Secret}, {f.root, stranger.Reveal()}, {f.root, "kg_short"}, {f.acme, stranger.Reveal()}} {
		res := f.do(call{method: "POST", path: "/v1/keys/lookup", token: c.token, body: map[string]any{"key": c.key}})
		if res.status != http.StatusNotFound {
			t.Fatalf("lookup: %d %s, want 404", res.status, res.body)
		}
		bodies = append(bodies, res.problem.Detail)
	}
	if len(slices.Compact(slices.Clone(bodies))) != 1 {
		t.Fatalf("the 404s differ: %q", bodies)
	}
	if res := f.do(call{method: "POST", path: "/v1/keys/lookup", token: f.root, body: map[string]any{}, schema: schemaRejects}); res.status != 400 {
		t.Fatalf("no key: %d", res.status)
	}
	if strings.Contains(f.logs.String(), acme.Secret) || strings.Contains(f.logs.String(), other.Secret) {
		t.Fatal("a looked-up key is in the log")
	}
}

// githubKeys makes an ECDSA P-256 key pair and writes its public key as
// GitHub serves them.
func githubKeys(t *testing.T, id string) (*ecdsa.PrivateKey, string) {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKIXPublicKey(&priv.PublicKey)
	pemKey := string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
	doc, _ := json.Marshal(map[string]any{"public_keys": []map[string]any{{"key_identifier": id, "key": pemKey, "is_current": true}}})
	path := filepath.Join(t.TempDir(), "github-keys.json")
	if err := os.WriteFile(path, doc, 0o600); err != nil {
		t.Fatal(err)
	}
	return priv, path
}

func signGitHub(t *testing.T, priv *ecdsa.PrivateKey, id string, body []byte) http.Header {
	t.Helper()
	digest := sha256.Sum256(body)
	sig, err := ecdsa.SignASN1(rand.Reader, priv, digest[:])
	if err != nil {
		t.Fatal(err)
	}
	return http.Header{"Github-Public-Key-Identifier": {id}, "Github-Public-Key-Signature": {base64.StdEncoding.EncodeToString(sig)}}
}

// TestLeakIntake: GitHub's signed reports and GitLab's token-bearing
// ones revoke the keys they name; the answer is the same for keys of this
// store and others; bad signatures, wrong tokens, replays, huge bodies
// and tokens of another format are refused or contained.
func TestLeakIntake(t *testing.T) {
	t.Parallel()
	priv, keysFile := githubKeys(t, "k1")
	keys, err := admin.LoadGitHubKeys(keysFile)
	if err != nil {
		t.Fatal(err)
	}
	f := newEventsFixture(t, admin.EventsConfig{Leaks: &admin.LeakIntake{GitHubKeys: keys, GitLabToken: "gitlab-shared-token",
		Policy: keystore.LeakRevoke, TokenTypes: []string{"gitleaks_rule_id_keygate_api_key"}}})
	leaked := f.create(map[string]any{})
	stranger, _ := keystore.GenerateSecret("kg")
	report := func(tokens ...string) []byte {
		var items []map[string]string
		for _, tok := range tokens {
			items = append(items, map[string]string{"token": tok, "type": "keygate_api_key", "url": "https://github.com/o/r/blob/abc/.env", "source": "content"})
		}
		b, _ := json.Marshal(items)
		return b
	}
	post := func(body []byte, h http.Header) *result {
		return f.do(call{method: "POST", path: "/v1/leaks", body: string(body), header: h, schema: schemaAny})
	}
	ours, theirs := report(leaked.Secret), report(stranger.Reveal())
	a, b := post(ours, signGitHub(t, priv, "k1", ours)), post(theirs, signGitHub(t, priv, "k1", theirs))
	if a.status != 200 || b.status != 200 || string(a.body) != string(b.body) || string(a.body) != "[]\n" {
		t.Fatalf("GitHub reports: ours %d %s, theirs %d %s; want the same 200 []", a.status, a.body, b.status, b.body)
	}
	var k admin.Key
	f.do(call{method: "GET", path: "/v1/keys/" + leaked.ID, token: f.root}).decode(t, &k)
	if k.Status != "revoked" {
		t.Fatalf("the leaked key is %s", k.Status)
	}
	events := f.do(call{method: "GET", path: "/v1/keys/" + leaked.ID + "/events", token: f.root})
	if !strings.Contains(string(events.body), `"leak"`) || !strings.Contains(string(events.body), "https://github.com/o/r/blob/abc/.env") {
		t.Fatalf("the audit trail does not say where it leaked: %s", events.body)
	}
	// Replayed: 409, nothing done.
	if res := post(ours, signGitHub(t, priv, "k1", ours)); res.status != http.StatusConflict {
		t.Fatalf("a replay: %d %s", res.status, res.body)
	}
	// Bad signatures: another body, another key, garbage, no key id.
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	for name, h := range map[string]http.Header{
		"signed over another body": signGitHub(t, priv, "k1", theirs),
		"signed by another key":    signGitHub(t, other, "k1", report("x")),
		"an unknown key id":        signGitHub(t, priv, "k9", report("x")),
		"not base64":               {"Github-Public-Key-Identifier": {"k1"}, "Github-Public-Key-Signature": {"!!"}},
		"no credential":            {},
	} {
		body := report("x")
		if name == "signed over another body" {
			body = report(leaked.Secret, "y")
		}
		if res := post(body, h); res.status != http.StatusUnauthorized {
			t.Errorf("%s: %d %s, want 401", name, res.status, res.body)
		}
	}
	// GitLab.
	gl := f.create(map[string]any{})
	body := []byte(`[{"type":"gitleaks_rule_id_keygate_api_key","token":"` + gl.Secret + `","location":"https://gitlab.example.com/g/p/-/blob/1/x"}]`)
	if res := post(body, http.Header{"Authorization": {"wrong"}}); res.status != 401 {
		t.Fatalf("a wrong GitLab token: %d", res.status)
	}
	if res := post(body, http.Header{"Authorization": {"gitlab-shared-token"}}); res.status != http.StatusNoContent {
		t.Fatalf("GitLab's report: %d %s", res.status, res.body)
	}
	f.do(call{method: "GET", path: "/v1/keys/" + gl.ID, token: f.root}).decode(t, &k)
	if k.Status != "revoked" {
		t.Fatalf("GitLab's leaked key is %s", k.Status)
	}
	types := f.do(call{method: "GET", path: "/v1/leaks/revocable_token_types", header: http.Header{"Authorization": {"gitlab-shared-token"}}})
	if types.status != 200 || !strings.Contains(string(types.body), "gitleaks_rule_id_keygate_api_key") {
		t.Fatalf("revocable types: %d %s", types.status, types.body)
	}
	// Tokens of another format, or not JSON, or too many.
	mixed := report("ghp_notakeygatekey", "kg_"+strings.Repeat("A", 39))
	if res := post(mixed, signGitHub(t, priv, "k1", mixed)); res.status != 200 {
		t.Fatalf("tokens of another format: %d %s, want 200 (ignored)", res.status, res.body)
	}
	for _, bad := range [][]byte{[]byte(`{"token":"x"}`), []byte(`[`), []byte(`[]`), []byte(`[{"token":5}]`), []byte(`[{"type":"x"}]`)} {
		if res := post(bad, signGitHub(t, priv, "k1", bad)); res.status != 400 {
			t.Errorf("report %s: %d, want 400", bad, res.status)
		}
	}
	huge := report(slices.Repeat([]string{stranger.Reveal()}, 2000)...)
	if res := post(huge, signGitHub(t, priv, "k1", huge)); res.status != http.StatusRequestEntityTooLarge {
		t.Fatalf("a huge report: %d", res.status)
	}
	if strings.Contains(f.logs.String(), leaked.Secret) || strings.Contains(f.logs.String(), stranger.Reveal()) {
		t.Fatal("a reported token is in the log")
	}
	// Not configured: 404.
	plain := newEventsFixture(t, admin.EventsConfig{})
	if res := plain.do(call{method: "POST", path: "/v1/leaks", body: string(ours), header: signGitHub(t, priv, "k1", ours), schema: schemaAny}); res.status != 404 {
		t.Fatalf("without an intake: %d", res.status)
	}
}
