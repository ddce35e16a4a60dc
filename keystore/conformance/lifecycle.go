package conformance

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/keygate/keygate/keystore"
)

// lifecycleTests check the key lifecycle: create, look up, list and page,
// update, revoke, rotate, and their refusals.
var lifecycleTests = []test{
	{"CreateGetLookup", testCreateGetLookup},
	{"LookupUnknownAndMalformedIDs", testLookupUnknownAndMalformedIDs},
	{"CreateRejectsBadInputAndWritesNothing", testCreateRejectsBadInputAndWritesNothing},
	{"ExpiryChoices", testExpiryChoices},
	{"ExpiredKeyStopsVerifying", testExpiredKeyStopsVerifying},
	{"List", testList},
	{"ListPagesWithConcurrentInserts", testListPagesWithConcurrentInserts},
	{"CheckCreateReportsEveryField", testCheckCreateReportsEveryField},
	{"Update", testUpdate},
	{"Revoke", testRevoke},
	{"RotateWithGrace", testRotateWithGrace},
	{"RotateRefusals", testRotateRefusals},
	{"RotateWithoutGraceEndsOldKeyAtOnce", testRotateWithoutGraceEndsOldKeyAtOnce},
	{"ConcurrentCreates", testConcurrentCreates},
	{"RevokeRacingRotate", testRevokeRacingRotate},
	{"PepperedStoreFindsLegacyKeys", testPepperedStoreFindsLegacyKeys},
	{"RotateRespectsMaxLifetime", testRotateRespectsMaxLifetime},
}

func testCreateGetLookup(t *testing.T, h Harness) {
	clk := newClock()
	s := h.newStore(t, keystore.Options{Now: clk.Now})
	ctx := context.Background()
	k, secret := mustCreate(t, s, keystore.CreateParams{
		AccountID: "acct-1", Name: "deploy bot", Description: "used by CI\nline two",
		Scopes: []string{"projects:write", "projects:read", "projects:read"}, Expiry: keystore.Expiry{In: 30 * 24 * time.Hour}, Actor: "cli:alice",
	})
	if _, err := keystore.ParseSecret(secret.Reveal()); err != nil {
		t.Fatalf("the issued secret does not parse: %v", err)
	}
	if !strings.HasPrefix(secret.Reveal(), k.DisplayPrefix) || len(k.DisplayPrefix) != len("kg_")+6 {
		t.Fatalf("display prefix %q is not the start of the key", k.DisplayPrefix)
	}
	wantExpiry := clk.Now().Add(30 * 24 * time.Hour)
	want := &keystore.Key{
		ID: k.ID, AccountID: "acct-1", Name: "deploy bot", Description: "used by CI\nline two",
		DisplayPrefix: k.DisplayPrefix, Scopes: []string{"projects:read", "projects:write"},
		HashScheme: keystore.SchemeSHA256, CreatedAt: clk.Now(), CreatedBy: "cli:alice", ExpiresAt: &wantExpiry,
		Digest: s.Hasher().Digest(secret), UpdatedAt: k.UpdatedAt,
	}
	if k.UpdatedAt.IsZero() {
		t.Fatal("Create did not return the record's version (updated_at)")
	}
	if diff := cmp.Diff(want, k); diff != "" {
		t.Fatalf("Create returned (-want +got):\n%s", diff)
	}
	got, err := s.Get(ctx, k.ID)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("Get (-want +got):\n%s", diff)
	}
	rec, err := s.Lookup(ctx, s.Hasher().Digest(secret))
	if err != nil {
		t.Fatal(err)
	}
	if !want.Record().Equal(rec) || rec.ID() != k.ID || rec.JoinedScopes() != "projects:read,projects:write" {
		t.Fatalf("Lookup = %+v, want %+v", rec, want.Record())
	}
	events, err := s.Events(ctx, k.ID)
	if err != nil || len(events) != 1 || events[0].Action != "create" || events[0].Actor != "cli:alice" {
		t.Fatalf("Events = %+v, %v; want one create by cli:alice", events, err)
	}
}

func testLookupUnknownAndMalformedIDs(t *testing.T, h Harness) {
	s := h.newStore(t, keystore.Options{})
	ctx := context.Background()
	other, _ := keystore.GenerateSecret("kg")
	if _, err := s.Lookup(ctx, s.Hasher().Digest(other)); !errors.Is(err, keystore.ErrNotFound) {
		t.Fatalf("Lookup(unknown) = %v, want ErrNotFound", err)
	}
	for _, id := range []string{"", "nope", "0193c7a2-5d6e-7f00-8a1b", "0193c7a25d6e7f008a1b2c3d4e5f6a7b", "'; DROP TABLE api_keys; --"} {
		if _, err := s.Get(ctx, id); !errors.Is(err, keystore.ErrInvalid) {
			t.Errorf("Get(%q) = %v, want ErrInvalid", id, err)
		}
		if _, err := s.Revoke(ctx, id, ""); !errors.Is(err, keystore.ErrInvalid) {
			t.Errorf("Revoke(%q) = %v, want ErrInvalid", id, err)
		}
	}
	unknown := "0193c7a2-5d6e-7f00-8a1b-2c3d4e5f6a7b"
	if _, err := s.Get(ctx, unknown); !errors.Is(err, keystore.ErrNotFound) {
		t.Errorf("Get(unknown) = %v, want ErrNotFound", err)
	}
	if _, err := s.Revoke(ctx, unknown, ""); !errors.Is(err, keystore.ErrNotFound) {
		t.Errorf("Revoke(unknown) = %v, want ErrNotFound", err)
	}
	if _, err := s.Rotate(ctx, unknown, keystore.RotateParams{}); !errors.Is(err, keystore.ErrNotFound) {
		t.Errorf("Rotate(unknown) = %v, want ErrNotFound", err)
	}
	name := "x"
	if _, err := s.Update(ctx, unknown, keystore.UpdateParams{Name: &name}); !errors.Is(err, keystore.ErrNotFound) {
		t.Errorf("Update(unknown) = %v, want ErrNotFound", err)
	}
}

func testCreateRejectsBadInputAndWritesNothing(t *testing.T, h Harness) {
	clk := newClock()
	s := h.newStore(t, keystore.Options{Now: clk.Now, MaxLifetime: 365 * 24 * time.Hour})
	cases := []struct {
		name  string
		p     keystore.CreateParams
		field string
	}{
		{"missing name", keystore.CreateParams{AccountID: "a"}, "name"},
		{"blank name", keystore.CreateParams{AccountID: "a", Name: "   "}, "name"},
		{"over-long name", keystore.CreateParams{AccountID: "a", Name: strings.Repeat("n", 101)}, "name"},
		{"control character in name", keystore.CreateParams{AccountID: "a", Name: "a\x00b"}, "name"},
		{"newline in name", keystore.CreateParams{AccountID: "a", Name: "a\nb"}, "name"},
		{"invalid UTF-8 name", keystore.CreateParams{AccountID: "a", Name: "\xff"}, "name"},
		{"missing account", keystore.CreateParams{Name: "n"}, "account_id"},
		{"over-long account", keystore.CreateParams{AccountID: strings.Repeat("a", 201), Name: "n"}, "account_id"},
		{"over-long description", keystore.CreateParams{AccountID: "a", Name: "n", Description: strings.Repeat("d", 1001)}, "description"},
		{"invalid scope", keystore.CreateParams{AccountID: "a", Name: "n", Scopes: []string{"projects:admin"}}, "scopes"},
		{"too many scopes", keystore.CreateParams{AccountID: "a", Name: "n", Scopes: manyScopes(65)}, "scopes"},
		{"expiry in the past", keystore.CreateParams{AccountID: "a", Name: "n", Expiry: keystore.Expiry{At: clk.Now().Add(-time.Minute)}}, "expiry"},
		{"expiry now", keystore.CreateParams{AccountID: "a", Name: "n", Expiry: keystore.Expiry{At: clk.Now()}}, "expiry"},
		{"negative lifetime", keystore.CreateParams{AccountID: "a", Name: "n", Expiry: keystore.Expiry{In: -time.Hour}}, "expiry"},
		{"contradictory expiry", keystore.CreateParams{AccountID: "a", Name: "n", Expiry: keystore.Expiry{In: time.Hour, Never: true}}, "expiry"},
		{"beyond max lifetime", keystore.CreateParams{AccountID: "a", Name: "n", Expiry: keystore.Expiry{In: 366 * 24 * time.Hour}}, "expiry"},
		{"never with max lifetime", keystore.CreateParams{AccountID: "a", Name: "n", Expiry: keystore.Expiry{Never: true}}, "expiry"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, _, err := s.Create(context.Background(), c.p)
			var ve *keystore.ValidationError
			if !errors.As(err, &ve) || ve.Field != c.field || !errors.Is(err, keystore.ErrInvalid) {
				t.Fatalf("Create: got %v, want a ValidationError on %q", err, c.field)
			}
		})
	}
	if keys, events := counts(t, s); keys != 0 || events != 0 {
		t.Fatalf("rejected creates wrote %d keys and %d events", keys, events)
	}
}

func manyScopes(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("m%d:read", i)
	}
	return out
}

func testExpiryChoices(t *testing.T, h Harness) {
	clk := newClock()
	s := h.newStore(t, keystore.Options{Now: clk.Now})
	at := clk.Now().Add(48 * time.Hour)
	cases := []struct {
		name   string
		expiry keystore.Expiry
		want   *time.Time
	}{
		{"default lifetime", keystore.Expiry{}, ptr(clk.Now().Add(keystore.DefaultLifetime))},
		{"lifetime", keystore.Expiry{In: time.Hour}, ptr(clk.Now().Add(time.Hour))},
		{"date", keystore.Expiry{At: at}, &at},
		{"never", keystore.Expiry{Never: true}, nil},
	}
	for _, c := range cases {
		k, _ := mustCreate(t, s, keystore.CreateParams{Expiry: c.expiry})
		if diff := cmp.Diff(c.want, k.ExpiresAt); diff != "" {
			t.Errorf("%s: expires_at (-want +got):\n%s", c.name, diff)
		}
	}
	capped := h.newStore(t, keystore.Options{Now: clk.Now, MaxLifetime: 7 * 24 * time.Hour})
	k, _ := mustCreate(t, capped, keystore.CreateParams{})
	if want := clk.Now().Add(7 * 24 * time.Hour); !k.ExpiresAt.Equal(want) {
		t.Errorf("default expiry under a 7d maximum = %v, want %v", k.ExpiresAt, want)
	}
}

func testExpiredKeyStopsVerifying(t *testing.T, h Harness) {
	clk := newClock()
	s := h.newStore(t, keystore.Options{Now: clk.Now})
	_, secret := mustCreate(t, s, keystore.CreateParams{Expiry: keystore.Expiry{In: time.Hour}})
	if !verifies(t, s, secret, clk.Now().Add(59*time.Minute)) {
		t.Fatal("key does not verify before its expiry")
	}
	if verifies(t, s, secret, clk.Now().Add(time.Hour)) {
		t.Fatal("key verifies at its expiry")
	}
}

func testList(t *testing.T, h Harness) {
	clk := newClock()
	s := h.newStore(t, keystore.Options{Now: clk.Now})
	ctx := context.Background()
	a1, _ := mustCreate(t, s, keystore.CreateParams{AccountID: "a", Name: "one"})
	a2, _ := mustCreate(t, s, keystore.CreateParams{AccountID: "a", Name: "two", Expiry: keystore.Expiry{In: time.Hour}})
	b1, _ := mustCreate(t, s, keystore.CreateParams{AccountID: "b", Name: "three"})
	if _, err := s.Revoke(ctx, b1.ID, "test"); err != nil {
		t.Fatal(err)
	}
	clk.Advance(2 * time.Hour) // a2 expires
	ids := func(p keystore.ListParams) []string {
		keys, err := s.List(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		out := []string{}
		for _, k := range keys {
			out = append(out, k.Name)
		}
		return out
	}
	rotated, err := s.Rotate(ctx, a1.ID, keystore.RotateParams{Grace: 3 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		p    keystore.ListParams
		want []string
	}{
		{keystore.ListParams{}, []string{"one", "one"}},
		{keystore.ListParams{Status: keystore.ListAll}, []string{"one", "two", "three", "one"}},
		{keystore.ListParams{Status: keystore.ListAll, Newest: true}, []string{"one", "three", "two", "one"}},
		{keystore.ListParams{Status: keystore.ListAll, Limit: 2}, []string{"one", "two"}},
		{keystore.ListParams{Status: keystore.ListAll, After: ptr(a2.Position())}, []string{"three", "one"}},
		{keystore.ListParams{Status: keystore.ListAll, Newest: true, After: ptr(b1.Position()), Limit: 1}, []string{"two"}},
		{keystore.ListParams{Status: keystore.ListExpired}, []string{"two"}},
		{keystore.ListParams{Status: keystore.ListRevoked}, []string{"three"}},
		{keystore.ListParams{AccountID: "a", Status: keystore.ListAll}, []string{"one", "two", "one"}},
		{keystore.ListParams{AccountID: "b"}, []string{}},
		{keystore.ListParams{AccountID: "nobody", Status: keystore.ListAll}, []string{}},
	}
	for _, c := range cases {
		if diff := cmp.Diff(c.want, ids(c.p)); diff != "" {
			t.Errorf("List(%+v) (-want +got):\n%s", c.p, diff)
		}
	}
	// Records show the rotation both ways; the decision path's reads do
	// not need the successor.
	keys, err := s.List(ctx, keystore.ListParams{AccountID: "a"})
	if err != nil || len(keys) != 2 || keys[0].ID != a1.ID || keys[0].RotatedTo != rotated.New.ID || keys[1].RotatedFrom != a1.ID || keys[1].RotatedTo != "" {
		t.Fatalf("List after rotation = %+v, %v; want the old key linked to its successor", keys, err)
	}
	if rotated.Old.RotatedTo != rotated.New.ID {
		t.Fatalf("Rotate's old key has RotatedTo %q, want %q", rotated.Old.RotatedTo, rotated.New.ID)
	}
	for _, get := range []func() (*keystore.Key, error){
		func() (*keystore.Key, error) { return s.Get(ctx, a1.ID) },
		func() (*keystore.Key, error) { return s.Update(ctx, a1.ID, keystore.UpdateParams{Name: ptr("one")}) },
		func() (*keystore.Key, error) { return s.Revoke(ctx, a1.ID, "test") },
	} {
		if k, err := get(); err != nil || k.RotatedTo != rotated.New.ID {
			t.Fatalf("got %+v, %v; want RotatedTo %s", k, err, rotated.New.ID)
		}
	}
	for _, bad := range []keystore.ListParams{
		{AccountID: "\x00"}, {Status: 9}, {Limit: -1}, {After: &keystore.Position{ID: "nope"}},
	} {
		if _, err := s.List(ctx, bad); !errors.Is(err, keystore.ErrInvalid) {
			t.Errorf("List(%+v) = %v, want ErrInvalid", bad, err)
		}
	}
}

// testListPagesWithConcurrentInserts pages through more keys than a page
// while other keys are created: every key that existed before the first
// page is listed exactly once, whichever the order.
func testListPagesWithConcurrentInserts(t *testing.T, h Harness) {
	s := h.newStore(t, keystore.Options{})
	ctx := context.Background()
	before := map[string]bool{}
	for i := range 25 {
		k, _ := mustCreate(t, s, keystore.CreateParams{AccountID: "a", Name: fmt.Sprint("k", i)})
		before[k.ID] = true
	}
	for _, newest := range []bool{false, true} {
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				if _, _, err := s.Create(ctx, keystore.CreateParams{AccountID: "a", Name: fmt.Sprint("new", i)}); err != nil {
					t.Error(err)
					return
				}
			}
		})
		seen := map[string]int{}
		var after *keystore.Position
		for pages := 0; ; pages++ {
			page, err := s.List(ctx, keystore.ListParams{AccountID: "a", Newest: newest, Limit: 4, After: after})
			if err != nil {
				t.Fatal(err)
			}
			for _, k := range page {
				seen[k.ID]++
			}
			// Newest first, keys created meanwhile sort before the cursor
			// and the listing ends; oldest first, it may chase them.
			if len(page) < 4 || (!newest && pages > 200) {
				break
			}
			after = ptr(page[len(page)-1].Position())
		}
		close(stop)
		wg.Wait()
		for id, n := range seen {
			if n != 1 {
				t.Errorf("newest=%v: key %s listed %d times", newest, id, n)
			}
		}
		for id := range before {
			if seen[id] != 1 {
				t.Errorf("newest=%v: key %s, created before the first page, was skipped", newest, id)
			}
		}
	}
}

func testCheckCreateReportsEveryField(t *testing.T, h Harness) {
	clk := newClock()
	s := h.newStore(t, keystore.Options{Now: clk.Now, MaxLifetime: 30 * 24 * time.Hour})
	err := s.CheckCreate(keystore.CreateParams{
		Name: " ", Description: strings.Repeat("d", 1001), Scopes: []string{"nope"}, Expiry: keystore.Expiry{Never: true},
	}, clk.Now())
	var fields []string
	for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
		var ve *keystore.ValidationError
		if errors.As(e, &ve) {
			fields = append(fields, ve.Field)
		}
	}
	if diff := cmp.Diff([]string{"account_id", "name", "description", "scopes", "expiry"}, fields); diff != "" {
		t.Fatalf("CheckCreate fields (-want +got):\n%s", diff)
	}
	if !errors.Is(err, keystore.ErrInvalid) {
		t.Fatalf("CheckCreate = %v, want ErrInvalid", err)
	}
	if err := s.CheckCreate(keystore.CreateParams{AccountID: "a", Name: "n", Expiry: keystore.Expiry{In: time.Hour}}, clk.Now()); err != nil {
		t.Fatalf("CheckCreate(valid) = %v", err)
	}
	if _, _, err := s.Create(context.Background(), keystore.CreateParams{Name: "n", Description: strings.Repeat("d", 1001)}); err == nil {
		t.Fatal("Create accepted two bad fields")
	}
	if n, _ := counts(t, s); n != 0 {
		t.Fatalf("CheckCreate and a refused Create wrote %d keys", n)
	}
	def, max := s.Lifetimes()
	if def != 30*24*time.Hour || max != 30*24*time.Hour {
		t.Fatalf("Lifetimes() = %v, %v; want the default capped by the 30d maximum", def, max)
	}
}

func testUpdate(t *testing.T, h Harness) {
	s := h.newStore(t, keystore.Options{})
	ctx := context.Background()
	k, _ := mustCreate(t, s, keystore.CreateParams{Description: "old"})
	got, err := s.Update(ctx, k.ID, keystore.UpdateParams{Name: ptr("renamed"), Actor: "cli:bob"})
	if err != nil {
		t.Fatal(err)
	}
	if got.Name != "renamed" || got.Description != "old" {
		t.Fatalf("Update changed name=%q description=%q", got.Name, got.Description)
	}
	for _, p := range []keystore.UpdateParams{{}, {Name: ptr("")}, {Description: ptr(strings.Repeat("x", 1001))}} {
		if _, err := s.Update(ctx, k.ID, p); !errors.Is(err, keystore.ErrInvalid) {
			t.Errorf("Update(%+v) = %v, want ErrInvalid", p, err)
		}
	}
	events, _ := s.Events(ctx, k.ID)
	if len(events) != 2 || events[1].Action != "update" || events[1].Detail["name"] != "renamed" {
		t.Fatalf("events = %+v, want create then update(name)", events)
	}
}

func testRevoke(t *testing.T, h Harness) {
	clk := newClock()
	s := h.newStore(t, keystore.Options{Now: clk.Now})
	ctx := context.Background()
	k, secret := mustCreate(t, s, keystore.CreateParams{})
	if !verifies(t, s, secret, clk.Now()) {
		t.Fatal("new key does not verify")
	}
	got, err := s.Revoke(ctx, k.ID, "cli:alice")
	if err != nil {
		t.Fatal(err)
	}
	if got.RevokedAt == nil || !got.RevokedAt.Equal(clk.Now()) {
		t.Fatalf("revoked_at = %v, want %v", got.RevokedAt, clk.Now())
	}
	if verifies(t, s, secret, clk.Now()) {
		t.Fatal("revoked key still verifies")
	}
	if _, err := s.Revoke(ctx, k.ID, "cli:alice"); !errors.Is(err, keystore.ErrRevoked) {
		t.Fatalf("second Revoke = %v, want ErrRevoked", err)
	}
	events, _ := s.Events(ctx, k.ID)
	if len(events) != 2 || events[1].Action != "revoke" || events[1].Actor != "cli:alice" {
		t.Fatalf("events = %+v, want create then revoke", events)
	}
}

func testRotateWithGrace(t *testing.T, h Harness) {
	clk := newClock()
	s := h.newStore(t, keystore.Options{Now: clk.Now})
	ctx := context.Background()
	old, oldSecret := mustCreate(t, s, keystore.CreateParams{Name: "svc", Description: "d", Scopes: []string{"projects:read"},
		Expiry: keystore.Expiry{In: 30 * 24 * time.Hour}})
	clk.Advance(time.Minute)
	r, err := s.Rotate(ctx, old.ID, keystore.RotateParams{Grace: time.Hour, Actor: "cli:alice"})
	if err != nil {
		t.Fatal(err)
	}
	if r.Secret == oldSecret {
		t.Fatal("rotation returned the old secret")
	}
	if r.New.RotatedFrom != old.ID || r.New.Name != "svc" || r.New.Description != "d" ||
		!cmp.Equal(r.New.Scopes, []string{"projects:read"}) || !r.New.ExpiresAt.Equal(*old.ExpiresAt) {
		t.Fatalf("successor does not inherit the key's properties: %+v", r.New)
	}
	if want := clk.Now().Add(time.Hour); !r.Old.ExpiresAt.Equal(want) {
		t.Fatalf("old key expires at %v, want the end of the grace period %v", r.Old.ExpiresAt, want)
	}
	if !verifies(t, s, r.Secret, clk.Now()) {
		t.Fatal("new secret does not verify")
	}
	clk.Advance(59 * time.Minute)
	if !verifies(t, s, oldSecret, clk.Now()) {
		t.Fatal("old secret stopped verifying inside the grace period")
	}
	clk.Advance(time.Minute)
	if verifies(t, s, oldSecret, clk.Now()) {
		t.Fatal("old secret still verifies after the grace period")
	}
	if !verifies(t, s, r.Secret, clk.Now()) {
		t.Fatal("new secret stopped verifying")
	}
	oldEvents, _ := s.Events(ctx, old.ID)
	newEvents, _ := s.Events(ctx, r.New.ID)
	if len(oldEvents) != 2 || oldEvents[1].Action != "rotate" || len(newEvents) != 1 || newEvents[0].Detail["rotated_from"] != old.ID {
		t.Fatalf("audit trail: old %+v new %+v", oldEvents, newEvents)
	}
}

func testRotateRefusals(t *testing.T, h Harness) {
	clk := newClock()
	s := h.newStore(t, keystore.Options{Now: clk.Now})
	ctx := context.Background()

	revoked, _ := mustCreate(t, s, keystore.CreateParams{})
	if _, err := s.Revoke(ctx, revoked.ID, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Rotate(ctx, revoked.ID, keystore.RotateParams{}); !errors.Is(err, keystore.ErrRevoked) {
		t.Errorf("Rotate(revoked) = %v, want ErrRevoked", err)
	}

	expiring, _ := mustCreate(t, s, keystore.CreateParams{Expiry: keystore.Expiry{In: time.Minute}})
	clk.Advance(time.Hour)
	if _, err := s.Rotate(ctx, expiring.ID, keystore.RotateParams{}); !errors.Is(err, keystore.ErrExpired) {
		t.Errorf("Rotate(expired) = %v, want ErrExpired", err)
	}

	k, _ := mustCreate(t, s, keystore.CreateParams{})
	if _, err := s.Rotate(ctx, k.ID, keystore.RotateParams{Grace: time.Hour}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Rotate(ctx, k.ID, keystore.RotateParams{Grace: time.Hour}); !errors.Is(err, keystore.ErrRotated) {
		t.Errorf("second Rotate = %v, want ErrRotated", err)
	}
	if _, err := s.Rotate(ctx, k.ID, keystore.RotateParams{Grace: -time.Hour}); !errors.Is(err, keystore.ErrInvalid) {
		t.Errorf("Rotate(negative grace) = %v, want ErrInvalid", err)
	}
}

func testRotateWithoutGraceEndsOldKeyAtOnce(t *testing.T, h Harness) {
	clk := newClock()
	s := h.newStore(t, keystore.Options{Now: clk.Now})
	k, oldSecret := mustCreate(t, s, keystore.CreateParams{})
	r, err := s.Rotate(context.Background(), k.ID, keystore.RotateParams{})
	if err != nil {
		t.Fatal(err)
	}
	if verifies(t, s, oldSecret, clk.Now()) || !verifies(t, s, r.Secret, clk.Now()) {
		t.Fatal("with no grace, the old secret must stop and the new one work at once")
	}
}

func testConcurrentCreates(t *testing.T, h Harness) {
	s := h.newStore(t, keystore.Options{})
	const n = 40
	var wg sync.WaitGroup
	errs := make(chan error, n)
	secrets := make(chan keystore.Secret, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			_, secret, err := s.Create(context.Background(), keystore.CreateParams{AccountID: "a", Name: "same name"})
			errs <- err
			secrets <- secret
		}(i)
	}
	wg.Wait()
	close(errs)
	close(secrets)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	seen := map[keystore.Secret]bool{}
	for secret := range secrets {
		if seen[secret] {
			t.Fatal("two creates returned the same secret")
		}
		seen[secret] = true
		if !verifies(t, s, secret, time.Now()) {
			t.Fatal("a concurrently created key does not verify")
		}
	}
	if keys, events := counts(t, s); keys != n || events != n {
		t.Fatalf("%d keys and %d create events, want %d of each", keys, events, n)
	}
}

// testRevokeRacingRotate runs a revocation against a rotation of the same
// key many times. Whichever commits first, the outcome must be one of the
// two serial orders: rotate then revoke (both succeed, the successor
// works, the old key is revoked), or revoke then rotate (rotation fails
// with ErrRevoked and there is no successor).
func testRevokeRacingRotate(t *testing.T, h Harness) {
	s := h.newStore(t, keystore.Options{})
	ctx := context.Background()
	orders := map[string]int{}
	for i := 0; i < 30; i++ {
		k, _ := mustCreate(t, s, keystore.CreateParams{})
		var (
			wg        sync.WaitGroup
			rotation  *keystore.Rotation
			rotateErr error
			revokeErr error
		)
		wg.Add(2)
		go func() {
			defer wg.Done()
			rotation, rotateErr = s.Rotate(ctx, k.ID, keystore.RotateParams{Grace: time.Hour})
		}()
		go func() { defer wg.Done(); _, revokeErr = s.Revoke(ctx, k.ID, "") }()
		wg.Wait()
		if revokeErr != nil {
			t.Fatalf("trial %d: revoke failed: %v", i, revokeErr)
		}
		successors := 0
		if old, err := s.Get(ctx, k.ID); err != nil {
			t.Fatal(err)
		} else if old.RotatedTo != "" {
			successors = 1
		}
		switch {
		case rotateErr == nil:
			orders["rotate first"]++
			if successors != 1 || !verifies(t, s, rotation.Secret, time.Now()) {
				t.Fatalf("trial %d: rotation succeeded but its successor is missing or unusable", i)
			}
		case errors.Is(rotateErr, keystore.ErrRevoked):
			orders["revoke first"]++
			if successors != 0 {
				t.Fatalf("trial %d: rotation failed but left %d successors", i, successors)
			}
		default:
			t.Fatalf("trial %d: rotate: %v", i, rotateErr)
		}
		old, err := s.Get(ctx, k.ID)
		if err != nil || old.RevokedAt == nil {
			t.Fatalf("trial %d: the old key is not revoked: %v", i, err)
		}
	}
	t.Logf("orders observed: %v", orders)
}

func testPepperedStoreFindsLegacyKeys(t *testing.T, h Harness) {
	db := database(h.NewDatabase(t, true))
	plain := newStoreOn(t, db(t), keystore.Options{})
	_, legacy := mustCreate(t, plain, keystore.CreateParams{})
	hasher, _ := keystore.NewHasher([]byte(strings.Repeat("s", 32)))
	peppered := newStoreOn(t, db(t), keystore.Options{Hasher: hasher})
	k, fresh := mustCreate(t, peppered, keystore.CreateParams{})
	if k.HashScheme != keystore.SchemeHMACSHA256 {
		t.Fatalf("scheme = %q, want %q", k.HashScheme, keystore.SchemeHMACSHA256)
	}
	found := func(secret keystore.Secret) bool {
		for _, d := range hasher.Candidates(secret) {
			if _, err := peppered.Lookup(context.Background(), d); err == nil {
				return true
			}
		}
		return false
	}
	if !found(legacy) || !found(fresh) {
		t.Fatal("a peppered store must find both legacy SHA-256 keys and HMAC keys")
	}
	if _, err := plain.Lookup(context.Background(), plain.Hasher().Digest(fresh)); !errors.Is(err, keystore.ErrNotFound) {
		t.Fatal("an HMAC key was found under its plain SHA-256 digest")
	}
}

func testRotateRespectsMaxLifetime(t *testing.T, h Harness) {
	clk := newClock()
	db := database(h.NewDatabase(t, true))
	open := newStoreOn(t, db(t), keystore.Options{Now: clk.Now})
	k, _ := mustCreate(t, open, keystore.CreateParams{Expiry: keystore.Expiry{Never: true}})
	capped := newStoreOn(t, db(t), keystore.Options{Now: clk.Now, MaxLifetime: 30 * 24 * time.Hour})
	r, err := capped.Rotate(context.Background(), k.ID, keystore.RotateParams{})
	if err != nil {
		t.Fatal(err)
	}
	if want := clk.Now().Add(30 * 24 * time.Hour); r.New.ExpiresAt == nil || !r.New.ExpiresAt.Equal(want) {
		t.Fatalf("successor of a never-expiring key under a 30d maximum expires at %v, want %v", r.New.ExpiresAt, want)
	}
}
