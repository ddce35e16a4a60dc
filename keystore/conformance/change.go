package conformance

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/keygate/keygate/keystore"
)

// changeTests check the changes of scopes and expiry in place, the status
// filters against the one definition of a key's state, and Export.
var changeTests = []test{
	{"UpdateScopes", testUpdateScopes},
	{"UpdateExpiry", testUpdateExpiry},
	{"RevokedKeyCannotChange", testRevokedKeyCannotChange},
	{"RotateWithNewExpiry", testRotateWithNewExpiry},
	{"MinimumLifetime", testMinimumLifetime},
	{"StatusFiltersFollowStateAt", testStatusFiltersFollowStateAt},
	{"ExportHoldsEverything", testExportHoldsEverything},
	{"Copy", testCopy},
	{"NonCanonicalAccounts", testNonCanonicalAccounts},
}

func testUpdateScopes(t *testing.T, h Harness) {
	clk := newClock()
	s, db := h.newStoreAt(t, keystore.Options{Now: clk.Now})
	ctx := context.Background()
	k, secret := mustCreate(t, s, keystore.CreateParams{Scopes: []string{"projects:read", "billing:read"}})
	scopes := func(p keystore.UpdateParams) []string {
		t.Helper()
		got, err := s.Update(ctx, k.ID, p)
		if err != nil {
			t.Fatalf("Update(%+v): %v", p, err)
		}
		r, err := s.Lookup(ctx, s.Hasher().Digest(secret))
		if err != nil || r.JoinedScopes() != joined(got.Scopes) {
			t.Fatalf("the decision's record has scopes %q (%v), the key %q", r.JoinedScopes(), err, got.Scopes)
		}
		return got.Scopes
	}
	if got := scopes(keystore.UpdateParams{AddScopes: []string{"projects:write"}, RemoveScopes: []string{"billing:read"}}); !slices.Equal(got, []string{"projects:read", "projects:write"}) {
		t.Fatalf("add and remove: %q", got)
	}
	if got := scopes(keystore.UpdateParams{Scopes: &[]string{"reports:*", "projects:read"}, AddScopes: []string{"projects:read"}}); !slices.Equal(got, []string{"projects:read", "reports:*"}) {
		t.Fatalf("replace: %q", got)
	}
	if got := scopes(keystore.UpdateParams{Scopes: &[]string{}}); len(got) != 0 {
		t.Fatalf("clear: %q", got)
	}
	events, _ := s.Events(ctx, k.ID)
	last := events[len(events)-1]
	previous, _ := last.Detail["previous"].(map[string]any)
	if last.Action != "update" || previous == nil || cmp.Diff([]any{"projects:read", "reports:*"}, previous["scopes"]) != "" {
		t.Fatalf("the last event %+v: want the scopes before and after", last)
	}
	before := snapshot(t, db)
	for _, bad := range []keystore.UpdateParams{
		{AddScopes: []string{"projects:admin"}},
		{RemoveScopes: []string{"nope"}},
		{Scopes: &[]string{"Projects:read"}},
		{AddScopes: manyScopes(keystore.MaxScopes + 1)},
	} {
		var ve *keystore.ValidationError
		if _, err := s.Update(ctx, k.ID, bad); !errors.As(err, &ve) || ve.Field != "scopes" {
			t.Errorf("Update(%+v) = %v, want a validation error for scopes", bad, err)
		}
	}
	// Removing what is not there narrows nothing, and removing the last
	// scope would open every module: both refused, on remove_scopes.
	for _, bad := range []keystore.UpdateParams{
		{RemoveScopes: []string{"projects:write"}},
		{RemoveScopes: []string{"reports:*"}, AddScopes: []string{"projects:read"}},
		{Scopes: &[]string{"projects:read"}, RemoveScopes: []string{"projects:read"}},
	} {
		var ve *keystore.ValidationError
		if _, err := s.Update(ctx, k.ID, bad); !errors.As(err, &ve) || ve.Field != "remove_scopes" {
			t.Errorf("Update(%+v) = %v, want a validation error for remove_scopes", bad, err)
		}
	}
	if snapshot(t, db) != before {
		t.Fatal("refused scope changes changed the database")
	}
}

func joined(scopes []string) string {
	out := ""
	for i, s := range scopes {
		if i > 0 {
			out += ","
		}
		out += s
	}
	return out
}

func testUpdateExpiry(t *testing.T, h Harness) {
	clk := newClock()
	s, db := h.newStoreAt(t, keystore.Options{Now: clk.Now, MaxLifetime: 365 * 24 * time.Hour})
	ctx := context.Background()
	k, secret := mustCreate(t, s, keystore.CreateParams{Expiry: keystore.Expiry{In: time.Hour}})
	clk.Advance(30 * time.Minute)
	// Extending a key about to expire.
	got, err := s.Update(ctx, k.ID, keystore.UpdateParams{Expiry: &keystore.Expiry{In: 30 * 24 * time.Hour}, Actor: "cli:alice"})
	if want := clk.Now().Add(30 * 24 * time.Hour); err != nil || got.ExpiresAt == nil || !got.ExpiresAt.Equal(want) {
		t.Fatalf("extend: %v, %v; want %v", got.ExpiresAt, err, want)
	}
	if !verifies(t, s, secret, clk.Now().Add(2*time.Hour)) {
		t.Fatal("the extended key does not verify after its old expiry")
	}
	// Shortening it is a revocation in effect at its new expiry.
	at := clk.Now().Add(2 * time.Hour)
	if got, err = s.Update(ctx, k.ID, keystore.UpdateParams{Expiry: &keystore.Expiry{At: at}}); err != nil || !got.ExpiresAt.Equal(at) {
		t.Fatalf("shorten: %v, %v", got, err)
	}
	if verifies(t, s, secret, at) || !verifies(t, s, secret, at.Add(-time.Second)) {
		t.Fatal("the shortened key's new expiry is not what the decision sees")
	}
	events, _ := s.Events(ctx, k.ID)
	last := events[len(events)-1]
	previous, _ := last.Detail["previous"].(map[string]any)
	if previous == nil || previous["expires_at"] == nil || last.Detail["expires_at"] == nil {
		t.Fatalf("the last event %+v: want the expiry before and after", last)
	}
	before := snapshot(t, db)
	for _, bad := range []keystore.Expiry{
		{Never: true},                     // the maximum lifetime forbids it
		{In: 400 * 24 * time.Hour},        // beyond the maximum
		{At: clk.Now().Add(-time.Minute)}, // in the past
		{In: time.Second},                 // born expired, nearly
		{In: time.Hour, Never: true},      // two choices
	} {
		var ve *keystore.ValidationError
		if _, err := s.Update(ctx, k.ID, keystore.UpdateParams{Expiry: &bad}); !errors.As(err, &ve) || ve.Field != "expiry" {
			t.Errorf("Update(expiry %+v) = %v, want a validation error for expiry", bad, err)
		}
	}
	if snapshot(t, db) != before {
		t.Fatal("refused expiry changes changed the database")
	}
	open := newStoreOn(t, db(t), keystore.Options{Now: clk.Now})
	if got, err := open.Update(ctx, k.ID, keystore.UpdateParams{Expiry: &keystore.Expiry{Never: true}}); err != nil || got.ExpiresAt != nil {
		t.Fatalf("no expiry without a maximum: %v, %v", got, err)
	}
}

func testRevokedKeyCannotChange(t *testing.T, h Harness) {
	s, db := h.newStoreAt(t, keystore.Options{})
	ctx := context.Background()
	k, _ := mustCreate(t, s, keystore.CreateParams{})
	if _, err := s.Revoke(ctx, k.ID, ""); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, db)
	for _, p := range []keystore.UpdateParams{
		{Name: ptr("renamed")},
		{AddScopes: []string{"projects:read"}},
		{Expiry: &keystore.Expiry{In: time.Hour}},
	} {
		if _, err := s.Update(ctx, k.ID, p); !errors.Is(err, keystore.ErrRevoked) {
			t.Errorf("Update(revoked, %+v) = %v, want ErrRevoked", p, err)
		}
	}
	if snapshot(t, db) != before {
		t.Fatal("changes refused for a revoked key changed the database")
	}
}

func testRotateWithNewExpiry(t *testing.T, h Harness) {
	clk := newClock()
	s := h.newStore(t, keystore.Options{Now: clk.Now, MaxLifetime: 90 * 24 * time.Hour})
	ctx := context.Background()
	k, _ := mustCreate(t, s, keystore.CreateParams{Expiry: keystore.Expiry{In: 24 * time.Hour}})
	r, err := s.Rotate(ctx, k.ID, keystore.RotateParams{Grace: time.Hour, Expiry: keystore.Expiry{In: 60 * 24 * time.Hour}})
	if want := clk.Now().Add(60 * 24 * time.Hour); err != nil || !r.New.ExpiresAt.Equal(want) {
		t.Fatalf("rotate with a new expiry: %v; want the successor to expire at %v", err, want)
	}
	k2, _ := mustCreate(t, s, keystore.CreateParams{})
	if _, err := s.Rotate(ctx, k2.ID, keystore.RotateParams{Expiry: keystore.Expiry{In: 100 * 24 * time.Hour}}); !errors.Is(err, keystore.ErrInvalid) {
		t.Fatalf("rotate beyond the maximum lifetime: %v, want ErrInvalid", err)
	}
	if got, _ := s.Get(ctx, k2.ID); got.RotatedTo != "" {
		t.Fatal("a refused rotation left a successor")
	}
}

// testMinimumLifetime: a key cannot be born expired, whichever way its
// expiry is given.
func testMinimumLifetime(t *testing.T, h Harness) {
	clk := newClock()
	s := h.newStore(t, keystore.Options{Now: clk.Now})
	for _, e := range []keystore.Expiry{{In: time.Nanosecond}, {In: keystore.MinLifetime - time.Microsecond}, {At: clk.Now().Add(time.Second)}} {
		_, _, err := s.Create(context.Background(), keystore.CreateParams{AccountID: "a", Name: "n", Expiry: e})
		var ve *keystore.ValidationError
		if !errors.As(err, &ve) || ve.Field != "expiry" || !containsDuration(ve.Problem, keystore.MinLifetime) {
			t.Errorf("Create(expiry %+v) = %v; want a refusal stating the minimum", e, err)
		}
	}
	if keys, _ := counts(t, s); keys != 0 {
		t.Fatalf("%d keys written", keys)
	}
	mustCreate(t, s, keystore.CreateParams{Expiry: keystore.Expiry{In: keystore.MinLifetime}})
}

func containsDuration(s string, d time.Duration) bool {
	return len(s) > 0 && (contains(s, keystore.FormatDuration(d)) || contains(s, d.String()))
}

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}

// testStatusFiltersFollowStateAt lists keys in every state with every
// filter: each lists exactly the keys whose Key.StateAt it matches
// (StatusFilter.Matches), so that the backend's SQL cannot drift from the
// one definition of a key's state.
func testStatusFiltersFollowStateAt(t *testing.T, h Harness) {
	clk := newClock()
	s := h.newStore(t, keystore.Options{Now: clk.Now})
	ctx := context.Background()
	short := keystore.Expiry{In: time.Hour}
	kinds := []struct {
		name            string
		expiry          keystore.Expiry
		revoke, disable bool
	}{
		{"active", keystore.Expiry{}, false, false},
		{"expired", short, false, false},
		{"revoked", keystore.Expiry{}, true, false},
		{"disabled", keystore.Expiry{}, false, true},
		{"disabled, expired", short, false, true},
		{"revoked, disabled", keystore.Expiry{}, true, true},
		{"revoked, expired", short, true, false},
		{"never expires", keystore.Expiry{Never: true}, false, false},
	}
	for _, kind := range kinds {
		k, _ := mustCreate(t, s, keystore.CreateParams{Name: kind.name, Expiry: kind.expiry})
		if kind.disable {
			if _, err := s.Disable(ctx, k.ID, ""); err != nil {
				t.Fatal(err)
			}
		}
		if kind.revoke {
			if _, err := s.Revoke(ctx, k.ID, ""); err != nil {
				t.Fatal(err)
			}
		}
	}
	clk.Advance(2 * time.Hour)
	all, err := s.List(ctx, keystore.ListParams{Status: keystore.ListAll})
	if err != nil || len(all) != len(kinds) {
		t.Fatalf("List(all) = %d keys, %v", len(all), err)
	}
	for _, f := range []keystore.StatusFilter{keystore.ListActive, keystore.ListAll, keystore.ListExpired, keystore.ListRevoked, keystore.ListDisabled} {
		var want []string
		for _, k := range all {
			if f.Matches(k.StateAt(clk.Now())) {
				want = append(want, k.Name)
			}
		}
		keys, err := s.List(ctx, keystore.ListParams{Status: f})
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, k := range keys {
			got = append(got, k.Name)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("List(status %d) (-StateAt +backend):\n%s", f, diff)
		}
	}
}

// testExportHoldsEverything: Export yields every key with every field
// (what a copy to another store needs), and every audit event.
func testExportHoldsEverything(t *testing.T, h Harness) {
	clk := newClock()
	s, db := h.newStoreAt(t, keystore.Options{Now: clk.Now})
	ctx := context.Background()
	a, _ := mustCreate(t, s, keystore.CreateParams{Description: "d", Scopes: []string{"projects:read"},
		AllowedCIDRs: []string{"10.0.0.0/8"}, Metadata: map[string]string{"tier": "gold"}})
	r, err := s.Rotate(ctx, a.ID, keystore.RotateParams{Grace: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := mustCreate(t, s, keystore.CreateParams{Expiry: keystore.Expiry{Never: true}})
	if _, err := s.Disable(ctx, b.ID, ""); err != nil {
		t.Fatal(err)
	}
	if err := s.RecordLastUsed(ctx, []keystore.LastUsed{{KeyID: r.New.ID, At: clk.Now()}}); err != nil {
		t.Fatal(err)
	}
	var keys []*keystore.Key
	var events []keystore.Event
	if err := db(t).Export(ctx, func(k *keystore.Key) error {
		keys = append(keys, k)
		return nil
	}, func(e keystore.Event) error {
		events = append(events, e)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		got, err := s.Get(ctx, k.ID)
		if err != nil {
			t.Fatal(err)
		}
		got.RotatedTo = "" // Export reads keys, not the links shown
		if diff := cmp.Diff(got, k, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
			t.Errorf("Export of %s differs from Get (-Get +Export):\n%s", k.Name, diff)
		}
	}
	if len(keys) != 3 || keys[1].RotatedFrom != a.ID || keys[1].LastUsedAt == nil || keys[2].DisabledAt == nil {
		t.Fatalf("Export yielded %d keys: %+v", len(keys), keys)
	}
	var want int
	for _, k := range keys {
		e, _ := s.Events(ctx, k.ID)
		want += len(e)
	}
	if len(events) != want || events[0].Action != "create" {
		t.Fatalf("Export yielded %d events, want %d", len(events), want)
	}
}

// testCopy copies a database holding keys in every state into an empty
// one: the copy reads the same (Export), its keys verify there, and a
// second copy into it is refused whole.
func testCopy(t *testing.T, h Harness) {
	clk := newClock()
	s, from := h.newStoreAt(t, keystore.Options{Now: clk.Now})
	ctx := context.Background()
	a, secret := mustCreate(t, s, keystore.CreateParams{Scopes: []string{"projects:read"}, AllowedCIDRs: []string{"10.0.0.0/8"},
		Metadata: map[string]string{"tier": "gold"}})
	r, err := s.Rotate(ctx, a.ID, keystore.RotateParams{Grace: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := mustCreate(t, s, keystore.CreateParams{Expiry: keystore.Expiry{Never: true}})
	if _, err := s.Revoke(ctx, b.ID, "cli:alice"); err != nil {
		t.Fatal(err)
	}
	_, to := h.newStoreAt(t, keystore.Options{})
	copied, err := keystore.Copy(ctx, from(t), to(t))
	if err != nil || copied.Keys != 3 || copied.Events < 5 {
		t.Fatalf("Copy = %+v, %v", copied, err)
	}
	if diff := cmp.Diff(snapshot(t, from), snapshot(t, to)); diff != "" {
		t.Fatalf("the copy differs (-from +to):\n%s", diff)
	}
	target := newStoreOn(t, to(t), keystore.Options{Now: clk.Now})
	if !verifies(t, target, secret, clk.Now()) || !verifies(t, target, r.Secret, clk.Now()) {
		t.Fatal("copied keys do not verify in the target")
	}
	before := snapshot(t, to)
	if _, err := keystore.Copy(ctx, from(t), to(t)); !errors.Is(err, keystore.ErrInvalid) {
		t.Fatalf("a copy into a database with keys: %v, want ErrInvalid", err)
	}
	if snapshot(t, to) != before {
		t.Fatal("a refused copy changed the target")
	}
}

// testNonCanonicalAccounts: keys stored under account ids that break the
// rule (written before it, by hand) are found and counted, and the
// canonical ones are not reported.
func testNonCanonicalAccounts(t *testing.T, h Harness) {
	s, db := h.newStoreAt(t, keystore.Options{})
	ctx := context.Background()
	mustCreate(t, s, keystore.CreateParams{AccountID: "acme"})
	mustCreate(t, s, keystore.CreateParams{AccountID: "acme"})
	mustCreate(t, s, keystore.CreateParams{AccountID: "beta:42"})
	// Rows as an older keygate let them be written: straight through the
	// backend, past the Store's rule.
	now := time.Now().UTC().Truncate(time.Microsecond)
	var old []*keystore.Key
	for i, account := range []string{" acme", "acme ", "acme,beta", " acme"} {
		secret, _ := keystore.GenerateSecret("kg")
		old = append(old, &keystore.Key{ID: fmt.Sprintf("0193c7a2-5d6e-7f00-8a1b-2c3d4e5f6a%02d", i), AccountID: account, Name: "old",
			DisplayPrefix: secret.DisplayPrefix(), Digest: s.Hasher().Digest(secret), HashScheme: keystore.SchemeSHA256,
			Scopes: []string{}, CreatedAt: now})
	}
	if err := db(t).Write(ctx, func(tx keystore.Tx) error { return tx.Insert(ctx, old...) }); err != nil {
		t.Fatal(err)
	}
	got, err := s.NonCanonicalAccounts(ctx)
	want := []keystore.AccountKeys{{AccountID: " acme", Keys: 2}, {AccountID: "acme ", Keys: 1}, {AccountID: "acme,beta", Keys: 1}}
	if err != nil || !cmp.Equal(got, want) {
		t.Fatalf("NonCanonicalAccounts = %+v, %v; want %+v", got, err, want)
	}
}
