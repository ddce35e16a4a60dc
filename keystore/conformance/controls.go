package conformance

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/keystore"
)

// controlTests check the per-key controls: disable and enable, source
// restrictions, metadata.
var controlTests = []test{
	{"DisableEnable", testDisableEnable},
	{"ListDisabled", testListDisabled},
	{"AllowedCIDRs", testAllowedCIDRs},
	{"Metadata", testMetadata},
}

func testDisableEnable(t *testing.T, h Harness) {
	clk := newClock()
	s := h.newStore(t, keystore.Options{Now: clk.Now})
	ctx := context.Background()
	k, secret := mustCreate(t, s, keystore.CreateParams{})

	got, err := s.Disable(ctx, k.ID, "cli:alice")
	if err != nil {
		t.Fatal(err)
	}
	if got.DisabledAt == nil || !got.DisabledAt.Equal(clk.Now()) || got.StateAt(clk.Now()) != keystore.StateDisabled {
		t.Fatalf("disabled key: disabled_at %v, state %v", got.DisabledAt, got.StateAt(clk.Now()))
	}
	if st := stateOf(t, s, secret, clk.Now()); st != keystore.StateDisabled {
		t.Fatalf("the decision path sees a disabled key as %v", st)
	}
	if !got.UpdatedAt.After(k.UpdatedAt) {
		t.Fatal("disabling did not give the record a new version")
	}
	if _, err := s.Disable(ctx, k.ID, "cli:alice"); !errors.Is(err, keystore.ErrDisabled) {
		t.Fatalf("second Disable = %v, want ErrDisabled", err)
	}
	if _, err := s.Rotate(ctx, k.ID, keystore.RotateParams{}); !errors.Is(err, keystore.ErrDisabled) {
		t.Fatalf("Rotate of a disabled key = %v, want ErrDisabled", err)
	}

	clk.Advance(time.Minute)
	if got, err = s.Enable(ctx, k.ID, "admin:root"); err != nil {
		t.Fatal(err)
	}
	if got.DisabledAt != nil || stateOf(t, s, secret, clk.Now()) != keystore.StateActive {
		t.Fatalf("enabled key: disabled_at %v", got.DisabledAt)
	}
	if _, err := s.Enable(ctx, k.ID, "admin:root"); !errors.Is(err, keystore.ErrNotDisabled) {
		t.Fatalf("second Enable = %v, want ErrNotDisabled", err)
	}

	events, _ := s.Events(ctx, k.ID)
	var actions []string
	for _, e := range events {
		actions = append(actions, e.Action+" by "+e.Actor)
	}
	if want := []string{"create by ", "disable by cli:alice", "enable by admin:root"}; !slices.Equal(actions, want) {
		t.Fatalf("audit trail %q, want %q (refused changes record nothing)", actions, want)
	}

	// A revoked key can be neither disabled nor enabled again.
	if _, err := s.Disable(ctx, k.ID, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Revoke(ctx, k.ID, ""); err != nil {
		t.Fatal(err)
	}
	for name, f := range map[string]func(context.Context, string, string) (*keystore.Key, error){"Enable": s.Enable, "Disable": s.Disable} {
		if _, err := f(ctx, k.ID, ""); !errors.Is(err, keystore.ErrRevoked) {
			t.Errorf("%s of a revoked key = %v, want ErrRevoked", name, err)
		}
	}
	if st := stateOf(t, s, secret, clk.Now()); st != keystore.StateRevoked {
		t.Fatalf("revoked while disabled: %v, want revoked", st)
	}
	for _, bad := range []string{"nope", "00000000-0000-0000-0000-000000000000"} {
		if _, err := s.Disable(ctx, bad, ""); !errors.Is(err, keystore.ErrInvalid) && !errors.Is(err, keystore.ErrNotFound) {
			t.Errorf("Disable(%q) = %v", bad, err)
		}
	}
}

func testListDisabled(t *testing.T, h Harness) {
	clk := newClock()
	s := h.newStore(t, keystore.Options{Now: clk.Now})
	ctx := context.Background()
	mustCreate(t, s, keystore.CreateParams{Name: "active"})
	off, _ := mustCreate(t, s, keystore.CreateParams{Name: "disabled"})
	offExpired, _ := mustCreate(t, s, keystore.CreateParams{Name: "disabled and expired", Expiry: keystore.Expiry{In: time.Hour}})
	for _, k := range []*keystore.Key{off, offExpired} {
		if _, err := s.Disable(ctx, k.ID, ""); err != nil {
			t.Fatal(err)
		}
	}
	clk.Advance(2 * time.Hour)
	names := func(f keystore.StatusFilter) []string {
		keys, err := s.List(ctx, keystore.ListParams{Status: f})
		if err != nil {
			t.Fatal(err)
		}
		out := []string{}
		for _, k := range keys {
			out = append(out, k.Name)
		}
		return out
	}
	for f, want := range map[keystore.StatusFilter][]string{
		keystore.ListActive:   {"active"},
		keystore.ListDisabled: {"disabled", "disabled and expired"},
		keystore.ListExpired:  {},
		keystore.ListAll:      {"active", "disabled", "disabled and expired"},
	} {
		if got := names(f); !slices.Equal(got, want) {
			t.Errorf("List(status %d) = %q, want %q", f, got, want)
		}
	}
}

func testAllowedCIDRs(t *testing.T, h Harness) {
	clk := newClock()
	s, db := h.newStoreAt(t, keystore.Options{Now: clk.Now})
	ctx := context.Background()
	k, secret := mustCreate(t, s, keystore.CreateParams{AllowedCIDRs: []string{"2001:db8::/32", "10.0.0.0/8", "192.0.2.7"}})
	want := []string{"10.0.0.0/8", "192.0.2.7/32", "2001:db8::/32"}
	got, err := s.Get(ctx, k.ID)
	if err != nil || !slices.Equal(prefixStrings(got.AllowedCIDRs), want) || !slices.Equal(prefixStrings(k.AllowedCIDRs), want) {
		t.Fatalf("Get: %v, %v; want %v", got.AllowedCIDRs, err, want)
	}
	rec, err := s.Lookup(ctx, s.Hasher().Digest(secret))
	if err != nil || !rec.AllowsSource(netip.MustParseAddr("10.9.8.7")) || rec.AllowsSource(netip.MustParseAddr("203.0.113.1")) ||
		!rec.AllowsSource(netip.MustParseAddr("2001:db8::1")) {
		t.Fatalf("the decision's record does not restrict the source: %v", err)
	}

	// Update replaces them; an empty list removes them.
	if got, err = s.Update(ctx, k.ID, keystore.UpdateParams{AllowedCIDRs: &[]string{"203.0.113.0/24"}}); err != nil ||
		!slices.Equal(prefixStrings(got.AllowedCIDRs), []string{"203.0.113.0/24"}) || got.Name != k.Name {
		t.Fatalf("Update: %+v, %v", got, err)
	}
	rotated, err := s.Rotate(ctx, k.ID, keystore.RotateParams{Grace: time.Hour})
	if err != nil || !slices.Equal(prefixStrings(rotated.New.AllowedCIDRs), []string{"203.0.113.0/24"}) {
		t.Fatalf("the successor of a restricted key: %v, %v", rotated.New.AllowedCIDRs, err)
	}
	if got, err = s.Update(ctx, k.ID, keystore.UpdateParams{AllowedCIDRs: &[]string{}}); err != nil || got.AllowedCIDRs != nil {
		t.Fatalf("clearing: %v, %v", got.AllowedCIDRs, err)
	}
	if rec, _ := s.Lookup(ctx, s.Hasher().Digest(secret)); rec.RestrictsSource() {
		t.Fatal("the record still restricts the source after clearing")
	}
	events, _ := s.Events(ctx, k.ID)
	if len(events) != 4 || events[0].Detail["allowed_cidrs"] == nil || events[1].Action != "update" || events[1].Detail["allowed_cidrs"] == nil {
		t.Fatalf("events %+v: want the prefixes in the create and update details", events)
	}

	// Bad prefixes are refused, naming the field, and change nothing.
	before := snapshot(t, db)
	for _, bad := range [][]string{{"10.1.2.3/8"}, {"nope"}, {"fe80::1%eth0"}, make([]string, keystore.MaxAllowedCIDRs+1)} {
		var ve *keystore.ValidationError
		if _, _, err := s.Create(ctx, keystore.CreateParams{AccountID: "a", Name: "n", AllowedCIDRs: bad}); !errors.As(err, &ve) || ve.Field != "allowed_cidrs" {
			t.Errorf("Create with %q: %v, want a validation error for allowed_cidrs", bad, err)
		}
		if _, err := s.Update(ctx, k.ID, keystore.UpdateParams{AllowedCIDRs: &bad}); !errors.As(err, &ve) || ve.Field != "allowed_cidrs" {
			t.Errorf("Update with %q: %v, want a validation error for allowed_cidrs", bad, err)
		}
	}
	if after := snapshot(t, db); string(before) != string(after) {
		t.Fatal("refused source restrictions changed the database")
	}
}

func prefixStrings(ps []netip.Prefix) []string {
	out := []string{}
	for _, p := range ps {
		out = append(out, p.String())
	}
	return out
}

func testMetadata(t *testing.T, h Harness) {
	clk := newClock()
	s, db := h.newStoreAt(t, keystore.Options{Now: clk.Now})
	ctx := context.Background()
	k, secret := mustCreate(t, s, keystore.CreateParams{Metadata: map[string]string{"tier": "gold", "team": "Zürich ops"},
		AllowedCIDRs: []string{"10.0.0.0/8"}})
	if got, _ := s.Get(ctx, k.ID); !maps.Equal(got.Metadata, map[string]string{"tier": "gold", "team": "Zürich ops"}) {
		t.Fatalf("Get: metadata %v", got.Metadata)
	}
	rec, err := s.Lookup(ctx, s.Hasher().Digest(secret))
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := rec.Meta("tier"); !ok || v != "gold" {
		t.Fatalf("the record's tier: %q %v", v, ok)
	}
	if !rec.AllowsSource(netip.MustParseAddr("10.1.1.1")) || rec.AllowsSource(netip.MustParseAddr("11.1.1.1")) {
		t.Fatal("metadata broke the record's source restrictions")
	}

	change := func(c keystore.MetadataChange) (map[string]string, error) {
		k, err := s.Update(ctx, k.ID, keystore.UpdateParams{Metadata: &c})
		if err != nil {
			return nil, err
		}
		return k.Metadata, nil
	}
	if got, err := change(keystore.MetadataChange{Set: map[string]string{"tier": "silver", "region": "eu"}, Unset: []string{"team"}}); err != nil ||
		!maps.Equal(got, map[string]string{"tier": "silver", "region": "eu"}) {
		t.Fatalf("set and unset: %v, %v", got, err)
	}
	rotated, err := s.Rotate(ctx, k.ID, keystore.RotateParams{Grace: time.Hour})
	if err != nil || !maps.Equal(rotated.New.Metadata, map[string]string{"tier": "silver", "region": "eu"}) {
		t.Fatalf("the successor's metadata: %v, %v", rotated.New.Metadata, err)
	}
	// Seventeen entries in all are refused, whichever way they come.
	many := map[string]string{}
	for i := range keystore.MaxMetadata - 1 {
		many[fmt.Sprintf("k%d", i)] = "v"
	}
	before := snapshot(t, db)
	var ve *keystore.ValidationError
	if _, err := change(keystore.MetadataChange{Set: many}); !errors.As(err, &ve) || ve.Field != "metadata" {
		t.Fatalf("17 entries after merging: %v, want a validation error for metadata", err)
	}
	for _, bad := range []keystore.MetadataChange{
		{Set: map[string]string{"Tier": "gold"}},
		{Set: map[string]string{"tier": ""}},
		{Set: map[string]string{"tier": " gold"}},
		{Set: map[string]string{"tier": "a\nb"}},
		{Set: map[string]string{"tier": strings.Repeat("x", keystore.MaxMetadataValueLen+1)}},
		{Set: map[string]string{strings.Repeat("k", keystore.MaxMetadataKeyLen+1): "v"}},
		{Unset: []string{"no-such-syntax"}},
	} {
		if _, err := change(bad); !errors.As(err, &ve) || ve.Field != "metadata" {
			t.Errorf("%+v: %v, want a validation error for metadata", bad, err)
		}
		if bad.Set == nil {
			continue
		}
		if _, _, err := s.Create(ctx, keystore.CreateParams{AccountID: "a", Name: "n", Metadata: bad.Set}); !errors.As(err, &ve) || ve.Field != "metadata" {
			t.Errorf("Create with %v: %v, want a validation error for metadata", bad.Set, err)
		}
	}
	if after := snapshot(t, db); string(before) != string(after) {
		t.Fatal("refused metadata changed the database")
	}
	if got, err := change(keystore.MetadataChange{Clear: true}); err != nil || got != nil {
		t.Fatalf("clear: %v, %v", got, err)
	}
	events, _ := s.Events(ctx, k.ID)
	if len(events) < 2 || events[0].Detail["metadata"] == nil || events[1].Detail["metadata"] == nil {
		t.Fatalf("events %+v: want the metadata in the create and update details", events)
	}
}
