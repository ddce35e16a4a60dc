package extauthz

import (
	"context"
	"slices"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/internal/authztest"
)

// TestMetadataInResponse: a key's metadata is in dynamic_metadata (meta),
// for rate-limit descriptors, and the --meta-header entries go upstream;
// forged copies never survive.
func TestMetadataInResponse(t *testing.T) {
	w := authztest.NewWorld(t)
	s := newTestServer(t, w.Lookup, func(c *authz.Config) { c.MetaHeaders = []string{"tier", "region"} })
	resp, err := s.Check(context.Background(), envoyRequest("GET", "/api/v1/projects", map[string]string{
		"x-api-key": w.Gold.Secret, "x-keygate-meta-tier": "platinum", "x-keygate-meta-region": "forged"}, nil))
	if err != nil {
		t.Fatal(err)
	}
	wantMeta, _ := structpb.NewStruct(map[string]any{
		"key_id": "k-gold", "account_id": "acct-k-gold", "module": "projects",
		"meta": map[string]any{"tier": "gold", "cost_center": "eng-42"},
	})
	if diff := cmp.Diff(wantMeta, resp.GetDynamicMetadata(), protocmp.Transform()); diff != "" {
		t.Errorf("dynamic_metadata (-want +got):\n%s", diff)
	}
	ok := resp.GetOkResponse()
	set := map[string]string{}
	for _, h := range ok.GetHeaders() {
		if h.GetAppendAction() != corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD {
			t.Errorf("%s: append action %v", h.GetHeader().GetKey(), h.GetAppendAction())
		}
		set[h.GetHeader().GetKey()] = h.GetHeader().GetValue()
	}
	if set["x-keygate-meta-tier"] != "gold" {
		t.Errorf("x-keygate-meta-tier = %q, want gold (the key's, over the forged one)", set["x-keygate-meta-tier"])
	}
	if _, sent := set["x-keygate-meta-region"]; sent || !slices.Contains(ok.GetHeadersToRemove(), "x-keygate-meta-region") {
		t.Errorf("the key has no region: the forged header must be removed, not set (set %v, removed %v)", set, ok.GetHeadersToRemove())
	}

	// A key without metadata: no meta in dynamic_metadata, every metadata
	// header removed.
	resp, _ = s.Check(context.Background(), envoyRequest("GET", "/api/v1/projects", map[string]string{"x-api-key": w.Plain.Secret}, nil))
	if _, ok := resp.GetDynamicMetadata().GetFields()["meta"]; ok {
		t.Errorf("meta in the dynamic metadata of a key without metadata: %v", resp.GetDynamicMetadata())
	}
	for _, name := range []string{"x-keygate-meta-tier", "x-keygate-meta-region"} {
		if !slices.Contains(resp.GetOkResponse().GetHeadersToRemove(), name) {
			t.Errorf("%s not removed for a key without metadata", name)
		}
	}
}
