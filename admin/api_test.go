package admin_test

import (
	"context"
	"errors"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/keygate/keygate/admin"
	"github.com/keygate/keygate/keystore"
)

func TestKeyLifecycle(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	res := f.do(call{method: "POST", path: "/v1/keys", token: f.root, body: map[string]any{
		"account_id": "acme", "name": "deploy bot", "description": "CI deploys", "scopes": []string{"projects:write", "projects:read"}, "expires_in": "30d",
	}})
	if res.status != http.StatusCreated {
		t.Fatalf("create: %d %s", res.status, res.body)
	}
	var created admin.Key
	res.decode(t, &created)
	if res.header.Get("Location") != "/v1/keys/"+created.ID {
		t.Fatalf("Location %q", res.header.Get("Location"))
	}
	if _, err := keystore.ParseSecret(created.Secret); err != nil || !strings.HasPrefix(created.Secret, created.DisplayPrefix) {
		t.Fatalf("the secret %v does not parse or start with the display prefix %q", err, created.DisplayPrefix)
	}
	if created.ExpiresAt == nil || created.ExpiresAt.Sub(created.CreatedAt) != 30*24*time.Hour ||
		!slices.Equal(created.Scopes, []string{"projects:read", "projects:write"}) || created.Status != "active" || created.CreatedBy != "admin:root" {
		t.Fatalf("created %+v", created)
	}

	var got admin.Key
	f.do(call{method: "GET", path: "/v1/keys/" + created.ID, token: f.root}).decode(t, &got)
	want := created
	want.Secret = ""
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("GET (-want +got):\n%s", diff)
	}

	var list admin.KeyList
	f.do(call{method: "GET", path: "/v1/keys?account_id=acme", token: f.root}).decode(t, &list)
	if len(list.Items) != 1 || list.Items[0].ID != created.ID || list.NextCursor != nil {
		t.Fatalf("list %+v", list)
	}

	res = f.do(call{method: "PATCH", path: "/v1/keys/" + created.ID, token: f.root, contentType: "application/merge-patch+json",
		body: map[string]any{"name": "deploy bot (prod)", "description": nil}})
	res.decode(t, &got)
	if res.status != http.StatusOK || got.Name != "deploy bot (prod)" || got.Description != "" {
		t.Fatalf("PATCH: %d %+v", res.status, got)
	}
	res = f.do(call{method: "PATCH", path: "/v1/keys/" + created.ID, token: f.root, body: map[string]any{}})
	if res.status != http.StatusOK {
		t.Fatalf("empty PATCH: %d %s", res.status, res.body)
	}

	res = f.do(call{method: "POST", path: "/v1/keys/" + created.ID + "/rotate", token: f.root, body: map[string]any{"grace": "1h"}})
	if res.status != http.StatusCreated {
		t.Fatalf("rotate: %d %s", res.status, res.body)
	}
	var rotated admin.Key
	res.decode(t, &rotated)
	if rotated.Secret == "" || rotated.Secret == created.Secret || *rotated.RotatedFrom != created.ID || rotated.PreviousExpiresAt == nil ||
		res.header.Get("Location") != "/v1/keys/"+rotated.ID || rotated.PreviousExpiresAt.After(time.Now().Add(time.Hour+time.Minute)) {
		t.Fatalf("rotated %+v", rotated)
	}
	f.do(call{method: "GET", path: "/v1/keys/" + created.ID, token: f.root}).decode(t, &got)
	if got.RotatedTo == nil || *got.RotatedTo != rotated.ID || !got.ExpiresAt.Equal(*rotated.PreviousExpiresAt) {
		t.Fatalf("the old key after rotation: %+v", got)
	}
	// A rotation without a body takes the default grace.
	res = f.do(call{method: "POST", path: "/v1/keys/" + rotated.ID + "/rotate", token: f.root})
	var again admin.Key
	res.decode(t, &again)
	if res.status != http.StatusCreated || again.PreviousExpiresAt.Before(time.Now().Add(admin.DefaultGrace-time.Minute)) {
		t.Fatalf("rotate without a body: %d %s", res.status, res.body)
	}

	for i := range 2 { // revoking twice: 204 both times, one event
		if res := f.do(call{method: "DELETE", path: "/v1/keys/" + again.ID, token: f.root}); res.status != http.StatusNoContent {
			t.Fatalf("DELETE %d: %d %s", i+1, res.status, res.body)
		}
	}
	f.do(call{method: "GET", path: "/v1/keys/" + again.ID, token: f.root}).decode(t, &got)
	if got.Status != "revoked" || got.RevokedAt == nil {
		t.Fatalf("after DELETE: %+v", got)
	}
	if res := f.do(call{method: "POST", path: "/v1/keys/" + again.ID + "/rotate", token: f.root}); res.status != http.StatusConflict {
		t.Fatalf("rotating a revoked key: %d %s", res.status, res.body)
	}

	var events struct{ Items []admin.Event }
	f.do(call{method: "GET", path: "/v1/keys/" + again.ID + "/events", token: f.root}).decode(t, &events)
	var actions []string
	for _, e := range events.Items {
		actions = append(actions, e.Action+" by "+e.Actor)
	}
	if diff := cmp.Diff([]string{"create by admin:root", "revoke by admin:root"}, actions); diff != "" {
		t.Fatalf("events (-want +got):\n%s", diff)
	}
	f.do(call{method: "GET", path: "/v1/keys/" + created.ID + "/events", token: f.acme}).decode(t, &events)
	actions = nil
	for _, e := range events.Items {
		actions = append(actions, e.Action+" by "+e.Actor)
	}
	if diff := cmp.Diff([]string{"create by admin:root", "update by admin:root", "rotate by admin:root"}, actions); diff != "" {
		t.Fatalf("events (-want +got):\n%s", diff)
	}
}

func TestModulesAndWhoami(t *testing.T) {
	t.Parallel()
	f := newFixture(t, fixtureOptions{maxLifetime: 365 * 24 * time.Hour})
	var mods struct {
		Default string
		Items   []admin.Module
	}
	f.do(call{method: "GET", path: "/v1/modules", token: f.acme}).decode(t, &mods)
	var open, closed []string
	for _, m := range mods.Items {
		if m.APIKeys == "allow" {
			open = append(open, m.Name)
		} else {
			closed = append(closed, m.Name)
		}
	}
	if mods.Default != "allow" || !slices.Contains(open, "projects") || !slices.Equal(closed, []string{"accounts", "users", "authentication"}) {
		t.Fatalf("modules %+v", mods)
	}
	var who struct {
		Name      string
		AccountID *string `json:"account_id"`
		Keys      struct {
			Default  int64  `json:"default_lifetime_seconds"`
			Max      *int64 `json:"max_lifetime_seconds"`
			NoExpiry bool   `json:"no_expiry_allowed"`
		}
	}
	f.do(call{method: "GET", path: "/v1/whoami", token: f.acme}).decode(t, &who)
	if who.Name != "acme-backend" || who.AccountID == nil || *who.AccountID != "acme" || who.Keys.Default != 90*86400 ||
		who.Keys.Max == nil || *who.Keys.Max != 365*86400 || who.Keys.NoExpiry {
		t.Fatalf("whoami %+v", who)
	}
	f = newFixture(t)
	f.do(call{method: "GET", path: "/v1/whoami", token: f.root}).decode(t, &who)
	if who.AccountID != nil || who.Keys.Max != nil || !who.Keys.NoExpiry {
		t.Fatalf("whoami %+v", who)
	}
}

func TestCreateValidation(t *testing.T) {
	t.Parallel()
	f := newFixture(t, fixtureOptions{maxLifetime: 365 * 24 * time.Hour})
	past := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)
	long := strings.Repeat("n", 101)
	cases := []struct {
		name   string
		body   any
		schema schemaRule
		fields []string
	}{
		{"missing name", map[string]any{"account_id": "acme"}, schemaRejects, []string{"name"}},
		{"blank name", map[string]any{"account_id": "acme", "name": "   "}, schemaAny, []string{"name"}},
		{"name too long", map[string]any{"account_id": "acme", "name": long}, schemaRejects, []string{"name"}},
		{"name not a string", map[string]any{"account_id": "acme", "name": 7}, schemaRejects, []string{"name"}},
		{"missing account", map[string]any{"name": "n"}, schemaAny, []string{"account_id"}},
		{"account with a control character", map[string]any{"account_id": "a\x00", "name": "n"}, schemaAny, []string{"account_id"}},
		{"description too long", map[string]any{"account_id": "acme", "name": "n", "description": strings.Repeat("d", 1001)}, schemaRejects, []string{"description"}},
		{"scopes not an array", map[string]any{"account_id": "acme", "name": "n", "scopes": "projects:read"}, schemaRejects, []string{"scopes"}},
		{"a malformed scope", map[string]any{"account_id": "acme", "name": "n", "scopes": []string{"projects:read", "projects:admin"}}, schemaRejects, []string{"scopes[1]"}},
		{"an unknown module", map[string]any{"account_id": "acme", "name": "n", "scopes": []string{"billing:read"}}, schemaAny, []string{"scopes[0]"}},
		{"a closed module", map[string]any{"account_id": "acme", "name": "n", "scopes": []string{"projects:read", "users:read", "accounts:*"}}, schemaAny, []string{"scopes[1]", "scopes[2]"}},
		{"a malformed lifetime", map[string]any{"account_id": "acme", "name": "n", "expires_in": "a month"}, schemaAny, []string{"expires_in"}},
		{"a zero lifetime", map[string]any{"account_id": "acme", "name": "n", "expires_in": "0s"}, schemaAny, []string{"expires_in"}},
		{"a lifetime over the maximum", map[string]any{"account_id": "acme", "name": "n", "expires_in": "366d"}, schemaAny, []string{"expires_in"}},
		{"a malformed time", map[string]any{"account_id": "acme", "name": "n", "expires_at": "tomorrow"}, schemaRejects, []string{"expires_at"}},
		{"a time in the past", map[string]any{"account_id": "acme", "name": "n", "expires_at": past}, schemaAny, []string{"expires_at"}},
		{"no expiry under a maximum", map[string]any{"account_id": "acme", "name": "n", "no_expiry": true}, schemaAny, []string{"no_expiry"}},
		{"two expiries", map[string]any{"account_id": "acme", "name": "n", "expires_in": "1d", "no_expiry": true}, schemaAny, []string{"expires_in", "no_expiry"}},
		{"an unknown field", map[string]any{"account_id": "acme", "name": "n", "expiry": "30d"}, schemaRejects, []string{"expiry"}},
		{"every field wrong", map[string]any{"account_id": "", "name": "", "description": 1, "scopes": []string{"users:read"}, "expires_in": "x", "color": "red"},
			schemaRejects, []string{"account_id", "name", "description", "scopes[0]", "expires_in", "color"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res := f.do(call{method: "POST", path: "/v1/keys", token: f.root, body: c.body, schema: c.schema})
			if res.status != http.StatusBadRequest || res.problem.Type != "urn:keygate:problem:invalid-request" {
				t.Fatalf("%d %s, want 400 invalid-request", res.status, res.body)
			}
			if diff := cmp.Diff(c.fields, res.fields()); diff != "" {
				t.Fatalf("field errors (-want +got):\n%s\n%s", diff, res.body)
			}
		})
	}
	if keys, events := f.count(); keys != 0 || events != 0 {
		t.Fatalf("refused creates wrote %d keys and %d events", keys, events)
	}
	// The maximum lifetime applies to the default too, and allows what fits.
	k := f.create(map[string]any{"expires_at": time.Now().Add(300 * 24 * time.Hour).UTC().Format(time.RFC3339)})
	if k.ExpiresAt == nil {
		t.Fatal("no expiry")
	}
	k = f.create(map[string]any{"scopes": []string{"*"}})
	if k.ExpiresAt.Sub(k.CreatedAt) != 90*24*time.Hour {
		t.Fatalf("default lifetime %v", k.ExpiresAt.Sub(k.CreatedAt))
	}
}

func TestUpdateValidation(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	k := f.create(map[string]any{"description": "keep"})
	cases := []struct {
		name   string
		body   any
		schema schemaRule
		fields []string
	}{
		{"name removed", map[string]any{"name": nil}, schemaRejects, []string{"name"}},
		{"blank name", map[string]any{"name": " "}, schemaAny, []string{"name"}},
		{"name not a string", map[string]any{"name": []string{"x"}}, schemaRejects, []string{"name"}},
		{"description too long", map[string]any{"description": strings.Repeat("d", 1001)}, schemaRejects, []string{"description"}},
		{"both wrong", map[string]any{"name": strings.Repeat("n", 101), "description": false}, schemaRejects, []string{"name", "description"}},
		{"an unknown field", map[string]any{"scope": []string{"*"}}, schemaRejects, []string{"scope"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res := f.do(call{method: "PATCH", path: "/v1/keys/" + k.ID, token: f.root, body: c.body, schema: c.schema})
			if res.status != http.StatusBadRequest {
				t.Fatalf("%d %s, want 400", res.status, res.body)
			}
			if diff := cmp.Diff(c.fields, res.fields()); diff != "" {
				t.Fatalf("field errors (-want +got):\n%s", diff)
			}
		})
	}
	var got admin.Key
	f.do(call{method: "GET", path: "/v1/keys/" + k.ID, token: f.root}).decode(t, &got)
	if got.Name != "ci" || got.Description != "keep" {
		t.Fatalf("refused patches changed the key: %+v", got)
	}
	res := f.do(call{method: "POST", path: "/v1/keys/" + k.ID + "/rotate", token: f.root, body: map[string]any{"grace": "-1h"}, schema: schemaAny})
	if res.status != http.StatusBadRequest || !slices.Equal(res.fields(), []string{"grace"}) {
		t.Fatalf("rotate with a negative grace: %d %s", res.status, res.body)
	}
	res = f.do(call{method: "POST", path: "/v1/keys/" + k.ID + "/rotate", token: f.root, body: map[string]any{"grace": 3600}, schema: schemaRejects})
	if res.status != http.StatusBadRequest || !slices.Equal(res.fields(), []string{"grace"}) {
		t.Fatalf("rotate with a numeric grace: %d %s", res.status, res.body)
	}
	if keys, _ := f.count(); keys != 1 {
		t.Fatalf("refused rotations made keys: %d", keys)
	}
}

func TestRequestShape(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	k := f.create(map[string]any{})
	big := `{"account_id":"acme","name":"n","description":"` + strings.Repeat("d", admin.MaxBodySize) + `"}`
	cases := []struct {
		name   string
		c      call
		status int
		allow  string
	}{
		{"not JSON", call{method: "POST", path: "/v1/keys", body: "{name:", schema: schemaRejects}, 400, ""},
		{"an array", call{method: "POST", path: "/v1/keys", body: `[{"name":"n"}]`, schema: schemaRejects}, 400, ""},
		{"two objects", call{method: "POST", path: "/v1/keys", body: `{"name":"n","account_id":"a"} {}`, schema: schemaAny}, 400, ""},
		{"a member twice", call{method: "POST", path: "/v1/keys", body: `{"name":"n","account_id":"acme","account_id":"other"}`, schema: schemaAny}, 400, ""},
		{"empty", call{method: "POST", path: "/v1/keys", body: "", schema: schemaRejects}, 400, ""},
		{"too large", call{method: "POST", path: "/v1/keys", body: big, schema: schemaRejects}, 413, ""},
		{"form encoded", call{method: "POST", path: "/v1/keys", body: "name=n", contentType: "application/x-www-form-urlencoded", schema: schemaRejects}, 415, ""},
		{"text", call{method: "PATCH", path: "/v1/keys/" + k.ID, body: `{"name":"n"}`, contentType: "text/plain", schema: schemaRejects}, 415, ""},
		{"another charset", call{method: "POST", path: "/v1/keys", body: `{"name":"n"}`, contentType: "application/json; charset=latin1", schema: schemaAny}, 415, ""},
		{"a wrong method", call{method: "PUT", path: "/v1/keys/" + k.ID, body: `{}`, schema: schemaAny}, 405, "DELETE, GET, HEAD, PATCH"},
		{"a wrong method on the list", call{method: "DELETE", path: "/v1/keys", schema: schemaAny}, 405, "GET, HEAD, POST"},
		{"an unknown path", call{method: "GET", path: "/v1/nothing", schema: schemaAny}, 404, ""},
		{"an unknown key", call{method: "GET", path: "/v1/keys/0193c7a2-5d6e-7f00-8a1b-2c3d4e5f6a7b"}, 404, ""},
		{"a malformed id", call{method: "GET", path: "/v1/keys/not-an-id"}, 404, ""},
		{"an unknown parameter", call{method: "GET", path: "/v1/keys?acount_id=acme", schema: schemaAny}, 400, ""},
		{"a parameter twice", call{method: "GET", path: "/v1/keys?status=all&status=active", schema: schemaAny}, 400, ""},
		{"a bad status", call{method: "GET", path: "/v1/keys?status=paused", schema: schemaRejects}, 400, ""},
		{"a bad limit", call{method: "GET", path: "/v1/keys?limit=1000", schema: schemaRejects}, 400, ""},
		{"a bad cursor", call{method: "GET", path: "/v1/keys?cursor=abc", schema: schemaAny}, 400, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.c.token = f.root
			res := f.do(c.c)
			if res.status != c.status || res.problem.Status != c.status {
				t.Fatalf("%d %s, want %d", res.status, res.body, c.status)
			}
			if got := res.header.Get("Allow"); got != c.allow {
				t.Fatalf("Allow %q, want %q", got, c.allow)
			}
		})
	}
	if keys, events := f.count(); keys != 1 || events != 1 {
		t.Fatalf("refused requests wrote: %d keys, %d events", keys, events)
	}
}

func TestAuthentication(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	k := f.create(map[string]any{})
	wrong, _ := newToken(t, "stranger", "")
	cases := []struct {
		name   string
		header http.Header
	}{
		{"no token", nil},
		{"another scheme", http.Header{"Authorization": {"Basic " + f.root}}},
		{"a malformed token", http.Header{"Authorization": {"Bearer kgadm_nope"}}},
		{"a token not in the file", http.Header{"Authorization": {"Bearer " + wrong}}},
		{"an API key", http.Header{"Authorization": {"Bearer " + k.Secret}}},
		{"two tokens", http.Header{"Authorization": {"Bearer " + f.root, "Bearer " + f.acme}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for _, path := range []string{"/v1/keys", "/v1/keys/" + k.ID, "/v1/modules", "/v1/whoami"} {
				res := f.do(call{method: "GET", path: path, header: c.header})
				if res.status != http.StatusUnauthorized || !strings.HasPrefix(res.header.Get("WWW-Authenticate"), "Bearer") {
					t.Fatalf("GET %s: %d %s, want 401 with a Bearer challenge", path, res.status, res.body)
				}
			}
			res := f.do(call{method: "DELETE", path: "/v1/keys/" + k.ID, header: c.header})
			if res.status != http.StatusUnauthorized {
				t.Fatalf("DELETE: %d", res.status)
			}
		})
	}
	f.mu.Lock()
	f.secrets[wrong] = true
	f.mu.Unlock()

	// Rotating tokens: the file is re-read; a bad file keeps the old set.
	_, newEntry := newToken(t, "root-2", "")
	f.writeTokens(newEntry)
	if err := f.tokens.Reload(); err != nil {
		t.Fatal(err)
	}
	if res := f.do(call{method: "GET", path: "/v1/whoami", token: f.root}); res.status != http.StatusUnauthorized {
		t.Fatalf("a token removed from the file still works: %d", res.status)
	}
	if err := os.WriteFile(f.tokensFile, []byte("- name: x\n  sha256: 1234\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	err := f.tokens.Reload()
	var tfe *admin.TokenFileError
	if !errors.As(err, &tfe) || tfe.Line != 2 || tfe.File != f.tokensFile {
		t.Fatalf("Reload of a bad file = %v, want an error naming the file and line 2", err)
	}
	if f.tokens.Len() != 1 {
		t.Fatalf("after a bad reload %d tokens, want the 1 of the previous set", f.tokens.Len())
	}
	if keys, events := f.count(); keys != 1 || events != 1 {
		t.Fatalf("refused requests wrote: %d keys, %d events", keys, events)
	}
}

func TestAccountBinding(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	mine := f.create(map[string]any{"account_id": "acme"})
	theirs := f.create(map[string]any{"account_id": "globex"})
	for _, c := range []call{
		{method: "GET", path: "/v1/keys/" + theirs.ID},
		{method: "PATCH", path: "/v1/keys/" + theirs.ID, body: map[string]any{"name": "x"}},
		{method: "DELETE", path: "/v1/keys/" + theirs.ID},
		{method: "POST", path: "/v1/keys/" + theirs.ID + "/rotate"},
		{method: "GET", path: "/v1/keys/" + theirs.ID + "/events"},
	} {
		c.token = f.acme
		if res := f.do(c); res.status != http.StatusNotFound || !strings.Contains(res.problem.Detail, "no key") {
			t.Fatalf("%s another account's key: %d %s, want 404", c.method, res.status, res.body)
		}
	}
	unknown := f.do(call{method: "GET", path: "/v1/keys/0193c7a2-5d6e-7f00-8a1b-2c3d4e5f6a7b", token: f.acme})
	other := f.do(call{method: "GET", path: "/v1/keys/" + theirs.ID, token: f.acme})
	if string(unknown.body) != string(other.body) {
		t.Fatalf("another account's key and an unknown key answer differently:\n%s\n%s", unknown.body, other.body)
	}
	res := f.do(call{method: "POST", path: "/v1/keys", token: f.acme, body: map[string]any{"account_id": "globex", "name": "n"}, schema: schemaAny})
	if res.status != http.StatusForbidden {
		t.Fatalf("creating for another account: %d %s, want 403", res.status, res.body)
	}
	if res := f.do(call{method: "GET", path: "/v1/keys?account_id=globex", token: f.acme, schema: schemaAny}); res.status != http.StatusForbidden {
		t.Fatalf("listing another account: %d, want 403", res.status)
	}
	var k admin.Key
	res = f.do(call{method: "POST", path: "/v1/keys", token: f.acme, body: map[string]any{"name": "own"}})
	res.decode(t, &k)
	if res.status != http.StatusCreated || k.AccountID != "acme" || k.CreatedBy != "admin:acme-backend" {
		t.Fatalf("creating without account_id: %d %+v", res.status, k)
	}
	var list admin.KeyList
	f.do(call{method: "GET", path: "/v1/keys?status=all", token: f.acme}).decode(t, &list)
	var ids []string
	for _, k := range list.Items {
		ids = append(ids, k.ID)
	}
	if !slices.Equal(ids, []string{k.ID, mine.ID}) {
		t.Fatalf("the bound token lists %v, want its account's two keys newest first", ids)
	}
	// A wrong request is a 400 naming every wrong parameter, in the
	// parameters' order, before the account binding is looked at.
	res = f.do(call{method: "GET", path: "/v1/keys?limit=0&status=bogus&account_id=beta", token: f.acme, schema: schemaAny})
	if res.status != http.StatusBadRequest || !slices.Equal(res.fields(), []string{"status", "limit"}) {
		t.Fatalf("a bound token's wrong list request: %d, fields %v; want 400 on status and limit", res.status, res.fields())
	}
	var got admin.Key
	f.do(call{method: "GET", path: "/v1/keys/" + theirs.ID, token: f.root}).decode(t, &got)
	if got.Status != "active" || got.Name != "ci" {
		t.Fatalf("the other account's key was changed: %+v", got)
	}
}

// TestRevokeRacingRotate revokes and rotates one key at once, many times:
// either the rotation came first (both succeed, and the successor lives)
// or the revocation did (the rotation is a 409 and there is no successor).
func TestRevokeRacingRotate(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	for range 15 {
		k := f.create(map[string]any{})
		var rotate, revoke *result
		var wg sync.WaitGroup
		wg.Go(func() {
			rotate = f.do(call{method: "POST", path: "/v1/keys/" + k.ID + "/rotate", token: f.root, body: map[string]any{"grace": "1h"}})
		})
		wg.Go(func() { revoke = f.do(call{method: "DELETE", path: "/v1/keys/" + k.ID, token: f.root}) })
		wg.Wait()
		if revoke.status != http.StatusNoContent {
			t.Fatalf("DELETE: %d %s", revoke.status, revoke.body)
		}
		var old admin.Key
		f.do(call{method: "GET", path: "/v1/keys/" + k.ID, token: f.root}).decode(t, &old)
		if old.Status != "revoked" {
			t.Fatalf("the key is %s after DELETE", old.Status)
		}
		switch rotate.status {
		case http.StatusCreated:
			var successor admin.Key
			rotate.decode(t, &successor)
			if old.RotatedTo == nil || *old.RotatedTo != successor.ID {
				t.Fatalf("the rotation succeeded but the old key says rotated_to %v", old.RotatedTo)
			}
			var now admin.Key
			f.do(call{method: "GET", path: "/v1/keys/" + successor.ID, token: f.root}).decode(t, &now)
			if now.Status != "active" {
				t.Fatalf("the successor is %s", now.Status)
			}
		case http.StatusConflict:
			if old.RotatedTo != nil {
				t.Fatalf("the rotation failed but made a successor %s", *old.RotatedTo)
			}
		default:
			t.Fatalf("rotate: %d %s", rotate.status, rotate.body)
		}
	}
}

// TestPagination pages through more keys than a page while keys are being
// created through the API: no key is listed twice, and none that existed
// before the first page is skipped.
func TestPagination(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	before := map[string]bool{}
	for range 23 {
		before[f.create(map[string]any{}).ID] = true
	}
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		for ctx.Err() == nil {
			f.create(map[string]any{"name": "concurrent"})
		}
	})
	seen := map[string]int{}
	cursor := ""
	pages := 0
	for {
		path := "/v1/keys?account_id=acme&limit=5"
		if cursor != "" {
			path += "&cursor=" + cursor
		}
		var page admin.KeyList
		f.do(call{method: "GET", path: path, token: f.acme}).decode(t, &page)
		pages++
		for i, k := range page.Items {
			seen[k.ID]++
			if i > 0 && page.Items[i-1].CreatedAt.Before(k.CreatedAt) {
				t.Fatal("a page is not newest first")
			}
		}
		if page.NextCursor == nil {
			break
		}
		cursor = *page.NextCursor
	}
	stop()
	wg.Wait()
	for id, n := range seen {
		if n != 1 {
			t.Errorf("key %s listed %d times", id, n)
		}
	}
	for id := range before {
		if seen[id] != 1 {
			t.Errorf("key %s skipped", id)
		}
	}
	if pages < 5 {
		t.Fatalf("%d pages for 23 keys at 5 a page", pages)
	}
	var empty admin.KeyList
	f.do(call{method: "GET", path: "/v1/keys?account_id=nobody", token: f.root}).decode(t, &empty)
	if empty.Items == nil || len(empty.Items) != 0 || empty.NextCursor != nil {
		t.Fatalf("an empty list: %+v", empty)
	}
}

// TestStoreUnavailable answers 503 with Retry-After when the database is
// gone, and says nothing about why beyond that.
func TestStoreUnavailable(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	k := f.create(map[string]any{})
	f.backend.Close()
	for _, c := range []call{
		{method: "GET", path: "/v1/keys"},
		{method: "GET", path: "/v1/keys/" + k.ID},
		{method: "POST", path: "/v1/keys", body: map[string]any{"account_id": "acme", "name": "n"}},
	} {
		c.token = f.root
		res := f.do(c)
		if res.status != http.StatusServiceUnavailable || res.header.Get("Retry-After") == "" || strings.Contains(string(res.body), "pool") {
			t.Fatalf("%s %s with the database gone: %d %s", c.method, c.path, res.status, res.body)
		}
	}
}
