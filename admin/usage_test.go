package admin_test

import (
	"context"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/keygate/keygate/admin"
	"github.com/keygate/keygate/keystore"
)

// TestLimitsAndUsage: limits and a quota at create and in a merge patch,
// refused limits named by field with nothing written, the quota's usage on
// GET, and GET /v1/keys/{id}/usage and /v1/usage/top answering what the
// store holds, each response checked against the OpenAPI document.
func TestLimitsAndUsage(t *testing.T) {
	f := newFixture(t)
	k := f.create(map[string]any{"limits": []string{"100/s", "50000/d,burst=500"}, "quota": "1000000/month"})
	if !slices.Equal(k.Limits, []string{"100/s", "50000/d,burst=500"}) || k.Quota == nil || *k.Quota != "1000000/month" {
		t.Fatalf("created key: limits %v, quota %v", k.Limits, k.Quota)
	}
	before, _ := f.count()
	for _, bad := range []struct {
		body   map[string]any
		field  string
		schema schemaRule
	}{
		{map[string]any{"account_id": "acme", "name": "x", "limits": []string{"0/s"}}, "limits", schemaRejects},
		{map[string]any{"account_id": "acme", "name": "x", "limits": []string{"10/w"}}, "limits", schemaRejects},
		{map[string]any{"account_id": "acme", "name": "x", "limits": []string{"1/s", "2/m", "3/h", "4/d", "5/10s"}}, "limits", schemaRejects},
		// Beyond what the document can say: a quota below a burst.
		{map[string]any{"account_id": "acme", "name": "x", "limits": []string{"100/s"}, "quota": "10/day"}, "quota", schemaAny},
		{map[string]any{"account_id": "acme", "name": "x", "quota": "10/week"}, "quota", schemaRejects},
		{map[string]any{"account_id": "acme", "name": "x", "limits": "100/s"}, "limits", schemaRejects},
	} {
		res := f.do(call{method: "POST", path: "/v1/keys", token: f.root, body: bad.body, schema: bad.schema})
		if res.status != http.StatusBadRequest || !slices.Contains(res.fields(), bad.field) {
			t.Errorf("create with %v: %d %s; want 400 naming %s", bad.body, res.status, res.body, bad.field)
		}
	}
	if after, _ := f.count(); after != before {
		t.Fatal("a refused create wrote a key")
	}
	var got admin.Key
	res := f.do(call{method: "PATCH", path: "/v1/keys/" + k.ID, token: f.root, body: map[string]any{"limits": []string{"10/s"}, "quota": nil}})
	res.decode(t, &got)
	if res.status != http.StatusOK || !slices.Equal(got.Limits, []string{"10/s"}) || got.Quota != nil {
		t.Fatalf("patch: %d %s", res.status, res.body)
	}
	if res := f.do(call{method: "PATCH", path: "/v1/keys/" + k.ID, token: f.root, body: map[string]any{"limits": []string{"-1/s"}}, schema: schemaRejects}); res.status != http.StatusBadRequest || !slices.Equal(res.fields(), []string{"limits"}) {
		t.Fatalf("a bad patch: %d %s", res.status, res.body)
	}

	// Usage, as the counter writes it.
	q := f.create(map[string]any{"quota": "100/day"})
	now := time.Now().UTC()
	minute := now.Truncate(time.Minute)
	if err := f.store.AddUsage(context.Background(), []keystore.UsageCount{
		{KeyID: q.ID, Start: minute, Step: time.Minute, Outcome: "ok", Count: 40},
		{KeyID: q.ID, Start: minute, Step: time.Minute, Outcome: "rate_limited", Count: 3},
		{KeyID: k.ID, Start: minute, Step: time.Minute, Outcome: "ok", Count: 7},
	}); err != nil {
		t.Fatal(err)
	}
	f.do(call{method: "GET", path: "/v1/keys/" + q.ID, token: f.root}).decode(t, &got)
	if got.QuotaUsage == nil || got.QuotaUsage.Used != 40 || got.QuotaUsage.Remaining != 60 || !got.QuotaUsage.ResetsAt.Equal(now.Truncate(24*time.Hour).Add(24*time.Hour)) {
		t.Fatalf("quota usage: %+v", got.QuotaUsage)
	}
	var u admin.Usage
	res = f.do(call{method: "GET", path: "/v1/keys/" + q.ID + "/usage?step=1m&from=" + minute.Add(-time.Hour).Format(time.RFC3339), token: f.root})
	res.decode(t, &u)
	if res.status != http.StatusOK || u.Totals.Allowed != 40 || u.Totals.Denied != 3 || u.Totals.ByOutcome["rate_limited"] != 3 || u.StepSeconds != 60 ||
		len(u.Buckets) != 61 && len(u.Buckets) != 62 {
		t.Fatalf("usage: %d, totals %+v, %d buckets", res.status, u.Totals, len(u.Buckets))
	}
	for _, bad := range []string{"?step=30s", "?from=yesterday", "?from=2099-01-01T00:00:00Z", "?step=1m&from=2020-01-01T00:00:00Z", "?nope=1", "?step=1h&step=1d"} {
		if res := f.do(call{method: "GET", path: "/v1/keys/" + q.ID + "/usage" + bad, token: f.root, schema: schemaAny}); res.status != http.StatusBadRequest {
			t.Errorf("usage%s: %d %s, want 400", bad, res.status, res.body)
		}
	}
	// An account-bound token sees its account's keys only.
	other := f.create(map[string]any{"account_id": "globex"})
	if res := f.do(call{method: "GET", path: "/v1/keys/" + other.ID + "/usage", token: f.acme}); res.status != http.StatusNotFound {
		t.Fatalf("another account's usage: %d", res.status)
	}
	var top struct{ Items []admin.TopKey }
	f.do(call{method: "GET", path: "/v1/usage/top?account_id=acme", token: f.root}).decode(t, &top)
	if len(top.Items) != 2 || top.Items[0].KeyID != q.ID || top.Items[0].Allowed != 40 || top.Items[0].Denied != 3 || top.Items[1].KeyID != k.ID {
		t.Fatalf("top keys: %+v", top.Items)
	}
	if res := f.do(call{method: "GET", path: "/v1/usage/top?account_id=globex", token: f.acme}); res.status != http.StatusForbidden {
		t.Fatalf("an acme token asking for globex's top keys: %d", res.status)
	}
}
