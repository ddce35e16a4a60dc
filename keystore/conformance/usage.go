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
	{"UsageRecorderForgetsUnderHeldRecords", testUsageRecorderForgets},
}

func testUsageRecorder(t *testing.T, h Harness) {
	s := h.newStore(t, keystore.Options{})
	a, _ := mustCreate(t, s, keystore.CreateParams{})
	b, _ := mustCreate(t, s, keystore.CreateParams{})
	unused, _ := mustCreate(t, s, keystore.CreateParams{})
	u := keystore.NewUsageRecorder(s, time.Hour, nil)
	base := time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)
	// Half the goroutines share one record of each key, as requests share
	// the cache's; the others bring their own.
	shared := []*keystore.Record{a.Record(), b.Record()}
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Go(func() {
			ra, rb := shared[0], shared[1]
			if g%2 == 1 {
				ra, rb = a.Record(), b.Record()
			}
			for i := 0; i < 1000; i++ {
				u.Used(ra, base.Add(time.Duration(i)*time.Second))
				u.Used(rb, base.Add(-time.Duration(i)*time.Second))
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
	old.Used(shared[0], base.Add(-time.Hour))
	old.Flush(context.Background())
	if k, _ := s.Get(context.Background(), a.ID); !k.LastUsedAt.Equal(base.Add(999 * time.Second)) {
		t.Fatalf("an older use overwrote a newer one: %v", k.LastUsedAt)
	}
	// Uses closer together than the resolution are one use.
	c, _ := mustCreate(t, s, keystore.CreateParams{})
	fine := keystore.NewUsageRecorder(s, time.Hour, nil)
	rc := c.Record()
	fine.Used(rc, base)
	fine.Used(rc, base.Add(50*time.Millisecond))
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
	u.Used(a.Record(), at)
	cancel()
	<-done
	if k, _ := s.Get(context.Background(), a.ID); k.LastUsedAt == nil || !k.LastUsedAt.Equal(at) {
		t.Fatalf("after stop, last_used_at = %v, want %v", k.LastUsedAt, at)
	}
}

// A record keeps the recorder's entry for its key; Flush forgets entries
// idle for long. A use through a record that still holds a forgotten entry
// is written all the same, also when it races the forgetting.
func testUsageRecorderForgets(t *testing.T, h Harness) {
	s := h.newStore(t, keystore.Options{})
	ctx := context.Background()
	a, _ := mustCreate(t, s, keystore.CreateParams{})
	u := keystore.NewUsageRecorder(s, time.Hour, nil)
	rec := a.Record()
	old := time.Now().Add(-time.Hour).UTC().Truncate(time.Microsecond) // idle long enough to be forgotten
	lastUsed := func() time.Time {
		t.Helper()
		k, err := s.Get(ctx, a.ID)
		if err != nil || k.LastUsedAt == nil {
			t.Fatalf("Get = %+v, %v; want a last use", k, err)
		}
		return *k.LastUsedAt
	}
	u.Used(rec, old)
	for range 2 { // the first writes the use, the second forgets the entry
		if err := u.Flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
	u.Used(rec, old.Add(time.Second))
	if err := u.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if got := lastUsed(); !got.Equal(old.Add(time.Second)) {
		t.Fatalf("a use through a record holding a forgotten entry: last_used_at %v, want %v", got, old.Add(time.Second))
	}

	// Uses alongside flushes that forget (spaced so that the entry is
	// forgotten and found again many times): the last one is written.
	// keystore's own tests (usage_entries_test.go) drive, step by step,
	// the orders in which a use and the forgetting can interleave.
	const uses = 300
	flushAlongside(t, u.Flush, uses, func(i int) { u.Used(rec, old.Add(time.Duration(i)*time.Second)) })
	if got, want := lastUsed(), old.Add(uses*time.Second); !got.Equal(want) {
		t.Fatalf("after uses racing flushes: last_used_at %v, want %v", got, want)
	}
}

// flushAlongside calls use(1) to use(n) a millisecond apart while flush
// runs over and over, then flushes once more.
func flushAlongside(t *testing.T, flush func(context.Context) error, n int, use func(i int)) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 1; i <= n; i++ {
			use(i)
			time.Sleep(time.Millisecond)
		}
	}()
	for flushing := true; flushing; {
		select {
		case <-done:
			flushing = false
		default:
		}
		if err := flush(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if err := flush(context.Background()); err != nil {
		t.Fatal(err)
	}
}
