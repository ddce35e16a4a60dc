package admin_test

import (
	"fmt"
	"maps"
	"net/http"
	"slices"
	"testing"

	"github.com/keygate/keygate/admin"
)

func TestDisableEnable(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	k := f.create(map[string]any{})
	var got admin.Key
	events := func() []string {
		var out struct{ Items []admin.Event }
		f.do(call{method: "GET", path: "/v1/keys/" + k.ID + "/events", token: f.root}).decode(t, &out)
		var actions []string
		for _, e := range out.Items {
			actions = append(actions, e.Action+" by "+e.Actor)
		}
		return actions
	}

	for range 2 { // the second time changes nothing
		res := f.do(call{method: "POST", path: "/v1/keys/" + k.ID + "/disable", token: f.root})
		res.decode(t, &got)
		if res.status != http.StatusOK || got.Status != "disabled" || got.DisabledAt == nil {
			t.Fatalf("disable: %d %s", res.status, res.body)
		}
	}
	var list admin.KeyList
	f.do(call{method: "GET", path: "/v1/keys?status=disabled", token: f.root}).decode(t, &list)
	if len(list.Items) != 1 || list.Items[0].ID != k.ID {
		t.Fatalf("status=disabled lists %+v", list.Items)
	}
	f.do(call{method: "GET", path: "/v1/keys", token: f.root}).decode(t, &list)
	if len(list.Items) != 0 {
		t.Fatalf("the active list shows the disabled key: %+v", list.Items)
	}
	if res := f.do(call{method: "POST", path: "/v1/keys/" + k.ID + "/rotate", token: f.root}); res.status != http.StatusConflict {
		t.Fatalf("rotating a disabled key: %d %s, want 409", res.status, res.body)
	}

	for range 2 {
		res := f.do(call{method: "POST", path: "/v1/keys/" + k.ID + "/enable", token: f.root, body: map[string]any{}})
		res.decode(t, &got)
		if res.status != http.StatusOK || got.Status != "active" || got.DisabledAt != nil {
			t.Fatalf("enable: %d %s", res.status, res.body)
		}
	}
	if want := []string{"create by admin:root", "disable by admin:root", "enable by admin:root"}; !slices.Equal(events(), want) {
		t.Fatalf("audit trail %q, want %q", events(), want)
	}

	res := f.do(call{method: "POST", path: "/v1/keys/" + k.ID + "/disable", token: f.root, body: map[string]any{"until": "tomorrow"}, schema: schemaRejects})
	if res.status != http.StatusBadRequest || !slices.Equal(res.fields(), []string{"until"}) {
		t.Fatalf("disable with an unknown member: %d %s", res.status, res.body)
	}
	theirs := f.create(map[string]any{"account_id": "globex"})
	for _, action := range []string{"disable", "enable"} {
		if res := f.do(call{method: "POST", path: "/v1/keys/" + theirs.ID + "/" + action, token: f.acme}); res.status != http.StatusNotFound {
			t.Fatalf("%s another account's key: %d, want 404", action, res.status)
		}
	}
	f.do(call{method: "DELETE", path: "/v1/keys/" + k.ID, token: f.root})
	for _, action := range []string{"disable", "enable"} {
		if res := f.do(call{method: "POST", path: "/v1/keys/" + k.ID + "/" + action, token: f.root}); res.status != http.StatusConflict {
			t.Fatalf("%s a revoked key: %d %s, want 409", action, res.status, res.body)
		}
	}
}

func TestAllowedCIDRs(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	k := f.create(map[string]any{"allowed_cidrs": []string{"2001:db8::/32", "10.0.0.0/8", "192.0.2.7"}})
	if want := []string{"10.0.0.0/8", "192.0.2.7/32", "2001:db8::/32"}; !slices.Equal(k.AllowedCIDRs, want) {
		t.Fatalf("created with allowed_cidrs %q, want %q", k.AllowedCIDRs, want)
	}
	var got admin.Key
	res := f.do(call{method: "PATCH", path: "/v1/keys/" + k.ID, token: f.root, contentType: "application/merge-patch+json",
		body: map[string]any{"allowed_cidrs": []string{"203.0.113.0/24"}}})
	res.decode(t, &got)
	if res.status != http.StatusOK || !slices.Equal(got.AllowedCIDRs, []string{"203.0.113.0/24"}) || got.Name != k.Name {
		t.Fatalf("PATCH allowed_cidrs: %d %s", res.status, res.body)
	}
	for _, clear := range []any{nil, []string{}} {
		f.do(call{method: "PATCH", path: "/v1/keys/" + k.ID, token: f.root, body: map[string]any{"allowed_cidrs": []string{"203.0.113.0/24"}}})
		res := f.do(call{method: "PATCH", path: "/v1/keys/" + k.ID, token: f.root, body: map[string]any{"allowed_cidrs": clear}})
		res.decode(t, &got)
		if res.status != http.StatusOK || len(got.AllowedCIDRs) != 0 || got.AllowedCIDRs == nil {
			t.Fatalf("PATCH allowed_cidrs %v: %d %s", clear, res.status, res.body)
		}
	}
	keys, events := f.count()
	for _, c := range []call{
		{method: "POST", path: "/v1/keys", body: map[string]any{"account_id": "acme", "name": "n", "allowed_cidrs": []string{"10.1.2.3/8"}}, schema: schemaAny},
		{method: "POST", path: "/v1/keys", body: map[string]any{"account_id": "acme", "name": "n", "allowed_cidrs": "10.0.0.0/8"}, schema: schemaRejects},
		{method: "PATCH", path: "/v1/keys/" + k.ID, body: map[string]any{"allowed_cidrs": []string{"example.com"}}, schema: schemaAny},
		{method: "PATCH", path: "/v1/keys/" + k.ID, body: map[string]any{"allowed_cidrs": []int{10}}, schema: schemaRejects},
	} {
		c.token = f.root
		res := f.do(c)
		if res.status != http.StatusBadRequest || !slices.Equal(res.fields(), []string{"allowed_cidrs"}) {
			t.Errorf("%s %v: %d %s, want a 400 naming allowed_cidrs", c.method, c.body, res.status, res.body)
		}
	}
	if k2, e2 := f.count(); k2 != keys || e2 != events {
		t.Fatalf("refused requests changed the database: %d keys %d events, was %d %d", k2, e2, keys, events)
	}
}

func TestMetadata(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	k := f.create(map[string]any{"metadata": map[string]string{"tier": "gold", "team": "ops"}})
	if !maps.Equal(k.Metadata, map[string]string{"tier": "gold", "team": "ops"}) {
		t.Fatalf("created with metadata %v", k.Metadata)
	}
	var got admin.Key
	res := f.do(call{method: "PATCH", path: "/v1/keys/" + k.ID, token: f.root, contentType: "application/merge-patch+json",
		body: map[string]any{"metadata": map[string]any{"tier": "silver", "team": nil, "region": "eu"}}})
	res.decode(t, &got)
	if res.status != http.StatusOK || !maps.Equal(got.Metadata, map[string]string{"tier": "silver", "region": "eu"}) {
		t.Fatalf("PATCH metadata: %d %s", res.status, res.body)
	}
	keys, events := f.count()
	many := map[string]any{}
	for i := range 15 {
		many[fmt.Sprintf("k%d", i)] = "v"
	}
	for _, c := range []call{
		{method: "POST", path: "/v1/keys", body: map[string]any{"account_id": "acme", "name": "n", "metadata": map[string]string{"Tier": "gold"}}, schema: schemaRejects},
		{method: "POST", path: "/v1/keys", body: map[string]any{"account_id": "acme", "name": "n", "metadata": map[string]string{"tier": " gold"}}, schema: schemaAny},
		{method: "POST", path: "/v1/keys", body: map[string]any{"account_id": "acme", "name": "n", "metadata": map[string]int{"tier": 1}}, schema: schemaRejects},
		{method: "PATCH", path: "/v1/keys/" + k.ID, body: map[string]any{"metadata": []string{"tier=gold"}}, schema: schemaRejects},
		{method: "PATCH", path: "/v1/keys/" + k.ID, body: map[string]any{"metadata": map[string]any{"tier": ""}}, schema: schemaRejects},
		// 2 entries + 15 new ones: 17 after the change.
		{method: "PATCH", path: "/v1/keys/" + k.ID, body: map[string]any{"metadata": many}, schema: schemaAny},
	} {
		c.token = f.root
		res := f.do(c)
		if res.status != http.StatusBadRequest || !slices.Equal(res.fields(), []string{"metadata"}) {
			t.Errorf("%s %v: %d %s, want a 400 naming metadata", c.method, c.body, res.status, res.body)
		}
	}
	if k2, e2 := f.count(); k2 != keys || e2 != events {
		t.Fatalf("refused requests changed the database: %d keys %d events, was %d %d", k2, e2, keys, events)
	}
	res = f.do(call{method: "PATCH", path: "/v1/keys/" + k.ID, token: f.root, body: map[string]any{"metadata": nil}})
	got = admin.Key{}
	res.decode(t, &got)
	if res.status != http.StatusOK || len(got.Metadata) != 0 || got.Metadata == nil {
		t.Fatalf("PATCH metadata null: %d %s", res.status, res.body)
	}
}
