package admin_test

import (
	"net/http"
	"slices"
	"testing"

	"github.com/keygate/keygate/admin"
)

func TestDisableEnable(t *testing.T) {
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
