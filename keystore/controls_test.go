package keystore_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/pgtest"
	"github.com/keygate/keygate/keystore"
)

// stateOf is the decision path's view of the key behind secret at now.
func stateOf(t *testing.T, s *keystore.Store, secret keystore.Secret, now time.Time) keystore.State {
	t.Helper()
	r, err := s.Lookup(context.Background(), s.Hasher().Digest(secret))
	if err != nil {
		t.Fatalf("Lookup: %v", err)
	}
	return r.StateAt(now)
}

func TestDisableEnable(t *testing.T) {
	clk := newClock()
	s, _ := newStore(t, keystore.Options{Now: clk.Now})
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

func TestListDisabled(t *testing.T) {
	clk := newClock()
	s, _ := newStore(t, keystore.Options{Now: clk.Now})
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

// TestWatcherDisableEnableReachCache: disabling and enabling are announced
// like revocation, so a cached record follows both at once.
func TestWatcherDisableEnableReachCache(t *testing.T) {
	url := pgtest.NewDatabase(t)
	w := startWatched(t, url, keystore.WatchOptions{PollInterval: time.Hour}, url)
	ctx := context.Background()
	k, secret := mustCreate(t, w.store, keystore.CreateParams{})
	d := w.store.Hasher().Digest(secret)
	waitUntil(t, time.Second, "the create's notification", func() bool { return w.watcher.Stats().Notifications.Load() == 1 })
	cached := func() keystore.State {
		r, err := w.cache.Lookup(ctx, d)
		if err != nil {
			t.Fatal(err)
		}
		return r.StateAt(time.Now())
	}
	if cached() != keystore.StateActive {
		t.Fatal("new key not active")
	}
	if _, err := w.store.Disable(ctx, k.ID, ""); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, time.Second, "the disable to reach the cache", func() bool { return cached() == keystore.StateDisabled })
	if _, err := w.store.Enable(ctx, k.ID, ""); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, time.Second, "the enable to reach the cache", func() bool { return cached() == keystore.StateActive })
}
