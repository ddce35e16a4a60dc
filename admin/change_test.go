package admin_test

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/keygate/keygate/admin"
	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/policy"
)

// lastEvent returns a key's newest audit event through the API.
func (f *fixture) lastEvent(id string) admin.Event {
	f.t.Helper()
	var events struct{ Items []admin.Event }
	f.do(call{method: "GET", path: "/v1/keys/" + id + "/events", token: f.root}).decode(f.t, &events)
	if len(events.Items) == 0 {
		f.t.Fatalf("key %s has no events", id)
	}
	return events.Items[len(events.Items)-1]
}

// patch sends a merge patch of key id as root.
func (f *fixture) patch(id string, body any, schema schemaRule) *result {
	f.t.Helper()
	return f.do(call{method: "PATCH", path: "/v1/keys/" + id, token: f.root, body: body, contentType: "application/merge-patch+json", schema: schema})
}

// TestChangeScopesInPlace: PATCH scopes replaces a key's scopes, audited
// with the scopes before and after; a new scope is judged against the
// policy as at creation (the same words as the CLI: admin.ScopeProblem),
// while a scope the key holds already is kept even when the policy no
// longer knows its module; every refusal writes nothing.
func TestChangeScopesInPlace(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	k := f.create(map[string]any{"scopes": []string{"projects:read"}})

	res := f.patch(k.ID, map[string]any{"scopes": []string{"projects:read", "projects:write"}}, schemaValid)
	var got admin.Key
	res.decode(t, &got)
	if res.status != http.StatusOK || !slices.Equal(got.Scopes, []string{"projects:read", "projects:write"}) {
		t.Fatalf("widen: %d %s", res.status, res.body)
	}
	e := f.lastEvent(k.ID)
	if e.Action != "update" || e.Actor != "admin:root" ||
		cmp.Diff([]any{"projects:read", "projects:write"}, e.Detail["scopes"]) != "" ||
		cmp.Diff(map[string]any{"scopes": []any{"projects:read"}}, e.Detail["previous"]) != "" {
		t.Fatalf("the update event %+v: want the scopes before and after", e)
	}

	_, events := f.count()
	pol := policy.Example()
	cases := []struct {
		name   string
		scopes any
		schema schemaRule
		fields []string
		detail string // of the first field error
	}{
		{"a typo of a module", []string{"project:read"}, schemaAny, []string{"scopes[0]"}, admin.ScopeProblem(pol, "project:read")},
		{"a closed module", []string{"projects:read", "users:read"}, schemaAny, []string{"scopes[1]"}, "module users is closed to API keys by the policy"},
		{"an unknown module and a closed one", []string{"billing:*", "accounts:write"}, schemaAny, []string{"scopes[0]", "scopes[1]"}, "no module billing in the policy"},
		{"a malformed scope", []string{"projects:admin"}, schemaRejects, []string{"scopes[0]"}, `must be "*"`},
		{"upper case", []string{"Projects:read"}, schemaRejects, []string{"scopes[0]"}, `must be "*"`},
		{"null", nil, schemaRejects, []string{"scopes"}, "[] lets the key use every module"},
		{"not an array", "projects:read", schemaRejects, []string{"scopes"}, "must be an array"},
		{"too many", slices.Repeat([]string{"projects:read"}, keystore.MaxScopes+1), schemaRejects, []string{"scopes"}, "at most"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res := f.patch(k.ID, map[string]any{"scopes": c.scopes}, c.schema)
			if res.status != http.StatusBadRequest {
				t.Fatalf("%d %s, want 400", res.status, res.body)
			}
			if diff := cmp.Diff(c.fields, res.fields()); diff != "" {
				t.Fatalf("field errors (-want +got):\n%s\n%s", diff, res.body)
			}
			if !strings.Contains(res.problem.Errors[0].Detail, c.detail) {
				t.Fatalf("detail %q, want it to say %q", res.problem.Errors[0].Detail, c.detail)
			}
		})
	}
	if d := admin.ScopeProblem(pol, "project:read"); d != "no module project in the policy; modules open to API keys: projects, deployments" {
		t.Fatalf("ScopeProblem(project:read) = %q", d)
	}
	if _, after := f.count(); after != events {
		t.Fatalf("refused scope changes wrote %d events", after-events)
	}

	// A key made before the policy lost a module keeps that scope through
	// a change, but cannot be given another scope of that module.
	old, _, err := f.store.Create(context.Background(), keystore.CreateParams{AccountID: "acme", Name: "legacy", Scopes: []string{"billing:read"}})
	if err != nil {
		t.Fatal(err)
	}
	res = f.patch(old.ID, map[string]any{"scopes": []string{"billing:read", "projects:read"}}, schemaValid)
	if res.decode(t, &got); res.status != http.StatusOK || !slices.Equal(got.Scopes, []string{"billing:read", "projects:read"}) {
		t.Fatalf("keeping a scope the policy no longer knows: %d %s", res.status, res.body)
	}
	if res := f.patch(old.ID, map[string]any{"scopes": []string{"billing:read", "billing:write"}}, schemaAny); res.status != http.StatusBadRequest ||
		!slices.Equal(res.fields(), []string{"scopes[1]"}) {
		t.Fatalf("adding a scope the policy does not know: %d %s", res.status, res.body)
	}
	// [] means every open module: said explicitly, and audited.
	res = f.patch(old.ID, map[string]any{"scopes": []string{}}, schemaValid)
	if res.decode(t, &got); res.status != http.StatusOK || len(got.Scopes) != 0 {
		t.Fatalf("scopes []: %d %s", res.status, res.body)
	}
}

// TestChangeExpiryInPlace: a key about to expire is extended, or given a
// shorter life, or none, with expires_in, expires_at (a date: the end of
// that day in UTC) or no_expiry; the maximum lifetime applies as at
// creation; the event has the expiry before and after; a revoked key
// cannot change.
func TestChangeExpiryInPlace(t *testing.T) {
	t.Parallel()
	f := newFixture(t, fixtureOptions{maxLifetime: 400 * 24 * time.Hour})
	k := f.create(map[string]any{"expires_in": "1h"})

	var got admin.Key
	start := time.Now()
	res := f.patch(k.ID, map[string]any{"expires_in": "30d"}, schemaValid)
	if res.decode(t, &got); res.status != http.StatusOK || got.ExpiresAt == nil ||
		got.ExpiresAt.Before(start.Add(30*24*time.Hour-time.Minute)) || got.ExpiresAt.After(time.Now().Add(30*24*time.Hour+time.Minute)) {
		t.Fatalf("extend by 30d: %d %s", res.status, res.body)
	}
	e := f.lastEvent(k.ID)
	previous, _ := e.Detail["previous"].(map[string]any)
	if e.Action != "update" || previous == nil || previous["expires_at"] != k.ExpiresAt.Format(time.RFC3339Nano) || e.Detail["expires_at"] == nil {
		t.Fatalf("the update event %+v: want the expiry before (%s) and after", e, k.ExpiresAt.Format(time.RFC3339Nano))
	}

	day := time.Now().UTC().AddDate(0, 2, 0).Format(time.DateOnly)
	res = f.patch(k.ID, map[string]any{"expires_at": day}, schemaValid)
	if res.decode(t, &got); res.status != http.StatusOK || got.ExpiresAt.Format(time.RFC3339) != day+"T23:59:59Z" {
		t.Fatalf("expires_at %s: %d %s, want the end of that day in UTC", day, res.status, res.body)
	}

	past := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)
	_, events := f.count()
	cases := []struct {
		name   string
		body   map[string]any
		schema schemaRule
		fields []string
	}{
		{"no expiry under a maximum", map[string]any{"no_expiry": true}, schemaAny, []string{"no_expiry"}},
		{"beyond the maximum", map[string]any{"expires_in": "401d"}, schemaAny, []string{"expires_in"}},
		{"a date beyond the maximum", map[string]any{"expires_at": time.Now().AddDate(2, 0, 0).Format(time.DateOnly)}, schemaAny, []string{"expires_at"}},
		{"too short", map[string]any{"expires_in": "30s"}, schemaAny, []string{"expires_in"}},
		{"zero", map[string]any{"expires_in": "0s"}, schemaAny, []string{"expires_in"}},
		{"negative", map[string]any{"expires_in": "-1h"}, schemaAny, []string{"expires_in"}},
		{"in the past", map[string]any{"expires_at": past}, schemaAny, []string{"expires_at"}},
		{"not a time", map[string]any{"expires_at": "next tuesday"}, schemaRejects, []string{"expires_at"}},
		{"two at once", map[string]any{"expires_in": "1d", "expires_at": day}, schemaAny, []string{"expires_in", "expires_at"}},
		{"null expires_at", map[string]any{"expires_at": nil}, schemaRejects, []string{"expires_at"}},
		{"null expires_in", map[string]any{"expires_in": nil}, schemaRejects, []string{"expires_in"}},
		{"no_expiry not a boolean", map[string]any{"no_expiry": "yes"}, schemaRejects, []string{"no_expiry"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res := f.patch(k.ID, c.body, c.schema)
			if res.status != http.StatusBadRequest {
				t.Fatalf("%d %s, want 400", res.status, res.body)
			}
			if diff := cmp.Diff(c.fields, res.fields()); diff != "" {
				t.Fatalf("field errors (-want +got):\n%s\n%s", diff, res.body)
			}
		})
	}
	if _, after := f.count(); after != events {
		t.Fatalf("refused expiry changes wrote %d events", after-events)
	}
	// no_expiry: false chooses nothing.
	if res := f.patch(k.ID, map[string]any{"no_expiry": false}, schemaValid); res.status != http.StatusOK {
		t.Fatalf("no_expiry false: %d %s", res.status, res.body)
	}
	if _, after := f.count(); after != events {
		t.Fatal("an empty change wrote an event")
	}

	// A revoked key cannot change: 409, and nothing written.
	if res := f.do(call{method: "DELETE", path: "/v1/keys/" + k.ID, token: f.root}); res.status != http.StatusNoContent {
		t.Fatalf("revoke: %d", res.status)
	}
	_, events = f.count()
	for _, body := range []map[string]any{{"expires_in": "90d"}, {"scopes": []string{"projects:read"}}, {"name": "revived"}} {
		if res := f.patch(k.ID, body, schemaValid); res.status != http.StatusConflict {
			t.Fatalf("change %v of a revoked key: %d %s, want 409", body, res.status, res.body)
		}
	}
	if _, after := f.count(); after != events {
		t.Fatal("refused changes of a revoked key wrote events")
	}

	// Without a maximum, no_expiry clears the expiry.
	g := newFixture(t)
	k = g.create(map[string]any{"expires_in": "1d"})
	res = g.patch(k.ID, map[string]any{"no_expiry": true}, schemaValid)
	if res.decode(t, &got); res.status != http.StatusOK || got.ExpiresAt != nil {
		t.Fatalf("no_expiry: %d %s", res.status, res.body)
	}
}

// TestRotateWithExpiry: the successor takes the expiry the rotation
// gives, within the maximum lifetime, or else keeps its predecessor's.
func TestRotateWithExpiry(t *testing.T) {
	t.Parallel()
	f := newFixture(t, fixtureOptions{maxLifetime: 90 * 24 * time.Hour})
	k := f.create(map[string]any{"expires_in": "2d"})
	rotate := func(id string, body map[string]any, schema schemaRule) (*result, admin.Key) {
		t.Helper()
		res := f.do(call{method: "POST", path: "/v1/keys/" + id + "/rotate", token: f.root, body: body, schema: schema})
		var got admin.Key
		if res.status == http.StatusCreated {
			res.decode(t, &got)
		}
		return res, got
	}
	for _, c := range []struct {
		body   map[string]any
		fields []string
	}{
		{map[string]any{"expires_in": "91d"}, []string{"expires_in"}},
		{map[string]any{"no_expiry": true}, []string{"no_expiry"}},
		{map[string]any{"expires_in": "1d", "no_expiry": true}, []string{"expires_in", "no_expiry"}},
		{map[string]any{"expires_at": "someday"}, []string{"expires_at"}},
	} {
		if res, _ := rotate(k.ID, c.body, schemaAny); res.status != http.StatusBadRequest || !slices.Equal(res.fields(), c.fields) {
			t.Fatalf("rotate %v: %d %s, want 400 on %v", c.body, res.status, res.body, c.fields)
		}
	}
	if keys, _ := f.count(); keys != 1 {
		t.Fatalf("refused rotations made %d keys", keys-1)
	}
	start := time.Now()
	res, successor := rotate(k.ID, map[string]any{"grace": "1h", "expires_in": "60d"}, schemaValid)
	if res.status != http.StatusCreated || successor.ExpiresAt == nil || successor.ExpiresAt.Before(start.Add(60*24*time.Hour-time.Minute)) {
		t.Fatalf("rotate with expires_in 60d: %d %s", res.status, res.body)
	}
	res, third := rotate(successor.ID, map[string]any{}, schemaValid)
	if res.status != http.StatusCreated || !third.ExpiresAt.Equal(*successor.ExpiresAt) {
		t.Fatalf("rotate without an expiry: %d %s, want the predecessor's expiry %v", res.status, res.body, successor.ExpiresAt)
	}
}

// TestListByName: name keeps the keys whose name contains it, ignoring
// case, with the other filters, newest first, a page at a time; a search
// that reads its limit of keys ends the page early with a cursor.
func TestListByName(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	var deploys []string // newest first
	for i, name := range []string{"Deploy bot", "billing", "staging DEPLOYS", "nightly", "deploy (old)"} {
		k := f.create(map[string]any{"name": name})
		if strings.Contains(strings.ToLower(name), "deploy") {
			deploys = append([]string{k.ID}, deploys...)
		}
		if i == 4 {
			f.do(call{method: "DELETE", path: "/v1/keys/" + k.ID, token: f.root})
		}
	}
	list := func(query string) admin.KeyList {
		t.Helper()
		var page admin.KeyList
		res := f.do(call{method: "GET", path: "/v1/keys?" + query, token: f.root})
		if res.status != http.StatusOK {
			t.Fatalf("GET /v1/keys?%s: %d %s", query, res.status, res.body)
		}
		res.decode(t, &page)
		return page
	}
	ids := func(items []admin.Key) []string {
		var out []string
		for _, k := range items {
			out = append(out, k.ID)
		}
		return out
	}
	if got := ids(list("name=deploy&status=all").Items); !slices.Equal(got, deploys) {
		t.Fatalf("name=deploy&status=all: %v, want %v", got, deploys)
	}
	if got := ids(list("name=DEPLOY").Items); !slices.Equal(got, deploys[1:]) {
		t.Fatalf("name=DEPLOY (active): %v, want %v", got, deploys[1:])
	}
	first := list("name=deploy&status=all&limit=2")
	if !slices.Equal(ids(first.Items), deploys[:2]) || first.NextCursor == nil {
		t.Fatalf("first page: %+v", first)
	}
	second := list("name=deploy&status=all&limit=2&cursor=" + *first.NextCursor)
	if !slices.Equal(ids(second.Items), deploys[2:]) || second.NextCursor != nil {
		t.Fatalf("second page: %+v", second)
	}
	for _, q := range []string{"name=", "name=" + strings.Repeat("n", 101), "name=%FF"} {
		res := f.do(call{method: "GET", path: "/v1/keys?" + q, token: f.root, schema: schemaAny})
		if res.status != http.StatusBadRequest || !slices.Equal(res.fields(), []string{"name"}) {
			t.Fatalf("GET /v1/keys?%s: %d %s, want 400 on name", q, res.status, res.body)
		}
	}

	// A search that reads at most 2 keys a page: pages end early, with a
	// cursor, and together hold every match once.
	var found []string
	req := admin.ListRequest{Name: "deploy", Status: keystore.ListAll, Limit: 10}
	for pages := 0; ; pages++ {
		page, err := admin.ListKeysScanning(context.Background(), f.store, req, 1, 2)
		if err != nil || pages > 5 {
			t.Fatalf("page %d: %v", pages, err)
		}
		found = append(found, ids(keysOf(page.Keys))...)
		if page.NextCursor == "" {
			break
		}
		req.Cursor = page.NextCursor
	}
	if !slices.Equal(found, deploys) {
		t.Fatalf("a bounded search found %v, want %v", found, deploys)
	}
}

func keysOf(keys []*keystore.Key) []admin.Key {
	out := make([]admin.Key, len(keys))
	for i, k := range keys {
		out[i] = admin.NewKey(k, time.Now())
	}
	return out
}
