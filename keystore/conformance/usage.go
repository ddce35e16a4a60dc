package conformance

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/keystore"
)

// usageTests check the batched last-used times.
var usageTests = []test{
	{"UsageRecorder", testUsageRecorder},
	{"UsageRecorderFlushesOnStop", testUsageRecorderFlushesOnStop},
}

func testUsageRecorder(t *testing.T, h Harness) {
	s := h.newStore(t, keystore.Options{})
	a, _ := mustCreate(t, s, keystore.CreateParams{})
	b, _ := mustCreate(t, s, keystore.CreateParams{})
	unused, _ := mustCreate(t, s, keystore.CreateParams{})
	u := keystore.NewUsageRecorder(s, time.Hour, nil)
	base := time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Go(func() {
			for i := 0; i < 1000; i++ {
				u.Used(a.ID, base.Add(time.Duration(i)*time.Second))
				u.Used(b.ID, base.Add(-time.Duration(i)*time.Second))
			}
		})
	}
	wg.Wait()
	if err := u.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	for id, want := range map[string]*time.Time{a.ID: ptr(base.Add(999 * time.Second)), b.ID: &base, unused.ID: nil} {
		k, err := s.Get(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if (want == nil) != (k.LastUsedAt == nil) || (want != nil && !k.LastUsedAt.Equal(*want)) {
			t.Errorf("key %s: last_used_at %v, want %v", id, k.LastUsedAt, want)
		}
	}
	// Nothing new: a second flush writes nothing. An older time never
	// overwrites a newer one.
	if err := u.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, written, _ := u.Stats(); written != 2 {
		t.Fatalf("%d last-used times written, want 2 (one per used key, once)", written)
	}
	old := keystore.NewUsageRecorder(s, time.Hour, nil)
	old.Used(a.ID, base.Add(-time.Hour))
	old.Flush(context.Background())
	if k, _ := s.Get(context.Background(), a.ID); !k.LastUsedAt.Equal(base.Add(999 * time.Second)) {
		t.Fatalf("an older use overwrote a newer one: %v", k.LastUsedAt)
	}
	// Uses closer together than the resolution are one use.
	c, _ := mustCreate(t, s, keystore.CreateParams{})
	fine := keystore.NewUsageRecorder(s, time.Hour, nil)
	fine.Used(c.ID, base)
	fine.Used(c.ID, base.Add(50*time.Millisecond))
	fine.Flush(context.Background())
	if k, _ := s.Get(context.Background(), c.ID); !k.LastUsedAt.Equal(base) {
		t.Fatalf("uses 50ms apart: last_used_at %v, want the first (%v)", k.LastUsedAt, base)
	}
	// Recording use is not a lifecycle change.
	if events, _ := s.Events(context.Background(), a.ID); len(events) != 1 {
		t.Fatalf("last-used writes added audit events: %v", events)
	}
}

func testUsageRecorderFlushesOnStop(t *testing.T, h Harness) {
	s := h.newStore(t, keystore.Options{})
	a, _ := mustCreate(t, s, keystore.CreateParams{})
	u := keystore.NewUsageRecorder(s, time.Hour, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { u.Run(ctx); close(done) }()
	at := time.Now().UTC().Truncate(time.Microsecond)
	u.Used(a.ID, at)
	cancel()
	<-done
	if k, _ := s.Get(context.Background(), a.ID); k.LastUsedAt == nil || !k.LastUsedAt.Equal(at) {
		t.Fatalf("after stop, last_used_at = %v, want %v", k.LastUsedAt, at)
	}
}
