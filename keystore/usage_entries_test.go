package keystore

import (
	"context"
	"testing"
	"time"
)

// These tests drive the steps of a use and of Flush's forgetting in the
// orders that can interleave, without a store: an entry whose use was
// written is forgotten without writing anything.

func usageTestRecord(id string) *Record {
	return newRecord(RecordFields{ID: id, AccountID: "acct", UpdatedAt: time.Now()})
}

// idleSince is a time long enough ago for Flush to forget a key used then.
func idleSince() time.Time { return time.Now().Add(-2 * forgetIdleAfter) }

// markWritten makes e's latest use count as written, as a flush that
// wrote it would.
func markWritten(e *usage) { e.flushed.Store(e.last.Load()) }

// A use that found its record's entry before Flush forgot it, and writes
// after Flush's last read of it, lands in the entry that replaces it.
func TestUseAfterForgettingFindsTheNewEntry(t *testing.T) {
	u := NewUsageRecorder(nil, time.Hour, nil)
	rec := usageTestRecord("k1")
	old := idleSince()
	u.Used(rec, old)
	e := u.held(rec) // the use's first step: the entry the record keeps
	markWritten(e)
	if err := u.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !e.gone.Load() {
		t.Fatal("Flush did not forget an idle, written key")
	}
	u.record(rec, e, old.Add(time.Second).UnixNano()) // its second step
	if got := u.entry("k1").last.Load(); got != old.Add(time.Second).UnixNano() {
		t.Fatalf("the map's entry says %v, want the use at %v", time.Unix(0, got), old.Add(time.Second))
	}
	if rec.lastUse.Load() != u.entry("k1") {
		t.Fatal("the record still keeps the forgotten entry")
	}
}

// A use that lands in an entry after Flush removed it from the map, but
// before it was marked gone, is carried over to the entry that replaces it.
func TestUseWhileForgettingIsCarriedOver(t *testing.T) {
	u := NewUsageRecorder(nil, time.Hour, nil)
	rec := usageTestRecord("k1")
	old := idleSince()
	u.Used(rec, old)
	e := u.held(rec)
	markWritten(e)
	if !u.keys.CompareAndDelete("k1", e) { // Flush's first step
		t.Fatal("the entry is not in the map")
	}
	u.Used(rec, old.Add(2*time.Second)) // not gone yet: lands in e
	u.retire("k1", e, old.UnixNano())   // Flush's second step
	if got := u.entry("k1").last.Load(); got != old.Add(2*time.Second).UnixNano() {
		t.Fatalf("the map's entry says %v, want the use at %v", time.Unix(0, got), old.Add(2*time.Second))
	}
}

// A record used through two recorders (or counted by two counters) keeps
// each one's use in that one's own entry.
func TestUsageEntriesAreTheirOwners(t *testing.T) {
	rec := usageTestRecord("k1")
	at := time.Now()
	u1, u2 := NewUsageRecorder(nil, time.Hour, nil), NewUsageRecorder(nil, time.Hour, nil)
	u1.Used(rec, at)
	u2.Used(rec, at.Add(time.Second))
	if got := u1.entry("k1").last.Load(); got != at.UnixNano() {
		t.Errorf("the first recorder's entry says %v, want %v", time.Unix(0, got), at)
	}
	if got := u2.entry("k1").last.Load(); got != at.Add(time.Second).UnixNano() {
		t.Errorf("the second recorder's entry says %v, want %v", time.Unix(0, got), at.Add(time.Second))
	}

	outcomes := []string{"ok", "denied"}
	c1, err := NewUsageCounter(nil, UsageCounterOptions{Outcomes: outcomes})
	if err != nil {
		t.Fatal(err)
	}
	c2, err := NewUsageCounter(nil, UsageCounterOptions{Outcomes: outcomes})
	if err != nil {
		t.Fatal(err)
	}
	c1.Count(rec, 0, at)
	c2.Count(rec, 1, at)
	c2.Count(rec, 1, at)
	if got := c1.entry("k1").counts; got[0] != 1 || got[1] != 0 {
		t.Errorf("the first counter's entry counts %v, want [1 0]", got[:2])
	}
	if got := c2.entry("k1").counts; got[0] != 0 || got[1] != 2 {
		t.Errorf("the second counter's entry counts %v, want [0 2]", got[:2])
	}
}

// A count through a record that keeps an entry Flush forgot goes to a new
// entry in the map.
func TestCountAfterForgettingFindsTheNewEntry(t *testing.T) {
	old := idleSince()
	u, err := NewUsageCounter(nil, UsageCounterOptions{Outcomes: []string{"ok"}})
	if err != nil {
		t.Fatal(err)
	}
	rec := usageTestRecord("k1")
	u.Count(rec, 0, old)
	c := rec.counts.Load()
	c.take() // as a flush that wrote them
	if err := u.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !c.dead {
		t.Fatal("Flush did not forget an idle, written key")
	}
	u.Count(rec, 0, old)
	if n := u.entry("k1").counts[0]; n != 1 || rec.counts.Load() != u.entry("k1") {
		t.Fatalf("the map's entry counts %d (want 1); the record keeps the map's entry: %v", n, rec.counts.Load() == u.entry("k1"))
	}
}

// Equal compares what records say, not the usage entries they keep.
func TestRecordEqualLeavesUsageAside(t *testing.T) {
	k := &Key{ID: "k1", AccountID: "acct", Scopes: []string{"a:read"}, UpdatedAt: time.Now()}
	a, b := k.Record(), k.Record()
	NewUsageRecorder(nil, time.Hour, nil).Used(a, time.Now())
	if !a.Equal(b) || !b.Equal(a) {
		t.Fatal("a used record and an unused one of the same key and version differ")
	}
	k.UpdatedAt = k.UpdatedAt.Add(time.Second)
	if a.Equal(k.Record()) {
		t.Fatal("records of two versions are equal")
	}
}
