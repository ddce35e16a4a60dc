package conformance

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/keystore"
)

// limitTests check per-key limits, usage counts and their rollups, and
// the replicas' heartbeat.
var limitTests = []test{
	{"Limits", testLimits},
	{"LimitsRefused", testLimitsRefused},
	{"UsageCounter", testUsageCounter},
	{"UsageCounterForgetsUnderHeldRecords", testUsageCounterForgets},
	{"UsageCompaction", testUsageCompaction},
	{"UsageCompactionConcurrent", testUsageCompactionConcurrent},
	{"TopUsage", testTopUsage},
	{"Heartbeat", testHeartbeat},
}

func testLimits(t *testing.T, h Harness) {
	s := h.newStore(t, keystore.Options{})
	ctx := context.Background()
	plain, plainSecret := mustCreate(t, s, keystore.CreateParams{})
	k, secret := mustCreate(t, s, keystore.CreateParams{Limits: []string{"50000/d,burst=500", "100/s"}, Quota: "1000000/month"})
	want := keystore.Limits{
		Rates: []keystore.Rate{{Count: 100, Per: time.Second, Burst: 100}, {Count: 50000, Per: 24 * time.Hour, Burst: 500}},
		Quota: keystore.Quota{Count: 1000000, Period: keystore.QuotaMonth},
	}
	if !reflect.DeepEqual(k.Limits, want) {
		t.Fatalf("created key's limits %+v, want %+v", k.Limits, want)
	}
	got, err := s.Get(ctx, k.ID)
	if err != nil || !reflect.DeepEqual(got.Limits, want) {
		t.Fatalf("Get: limits %+v, %v; want %+v", got.Limits, err, want)
	}
	r, err := s.Lookup(ctx, s.Hasher().Digest(secret))
	if err != nil || !r.Limited() || !reflect.DeepEqual(r.Limits(), want) {
		t.Fatalf("the decision's record: limited %v, limits %+v, %v; want %+v", r.Limited(), r.Limits(), err, want)
	}
	if r, _ := s.Lookup(ctx, s.Hasher().Digest(plainSecret)); r.Limited() || !r.Limits().IsZero() || !plain.Limits.IsZero() {
		t.Fatalf("a key without limits reads as limited: %+v", r.Limits())
	}

	// Update: the rates replaced, the quota kept; then the quota removed.
	rates := []string{"10/m"}
	up, err := s.Update(ctx, k.ID, keystore.UpdateParams{Limits: &keystore.LimitsChange{Rates: &rates}, Actor: "cli:bob"})
	if err != nil {
		t.Fatal(err)
	}
	if got := up.Limits; len(got.Rates) != 1 || got.Rates[0] != (keystore.Rate{Count: 10, Per: time.Minute, Burst: 10}) || got.Quota != want.Quota {
		t.Fatalf("after update: %+v", got)
	}
	none := ""
	if up, err = s.Update(ctx, k.ID, keystore.UpdateParams{Limits: &keystore.LimitsChange{Quota: &none}}); err != nil || up.Limits.Quota.Period != keystore.NoQuota {
		t.Fatalf("removing the quota: %+v, %v", up.Limits, err)
	}
	if r, _ := s.Lookup(ctx, s.Hasher().Digest(secret)); r.Quota().Period != keystore.NoQuota || len(r.Limits().Rates) != 1 {
		t.Fatalf("the record after the update: %+v", r.Limits())
	}
	events, _ := s.Events(ctx, k.ID)
	if len(events) != 3 || events[1].Detail["limits"] == nil || events[1].Actor != "cli:bob" {
		t.Fatalf("limit changes are audited: %+v", events)
	}
	if prev, _ := events[1].Detail["previous"].(map[string]any); prev == nil || prev["limits"] == nil {
		t.Fatalf("the audit detail lacks the previous limits: %+v", events[1].Detail)
	}
	// A rotated key keeps its limits.
	rot, err := s.Rotate(ctx, k.ID, keystore.RotateParams{})
	if err != nil || !reflect.DeepEqual(rot.New.Limits, up.Limits) {
		t.Fatalf("rotation: successor limits %+v, %v; want %+v", rot.New.Limits, err, up.Limits)
	}
	// Source restrictions and metadata live beside limits in the record.
	both, bothSecret := mustCreate(t, s, keystore.CreateParams{Limits: []string{"5/s"}, AllowedCIDRs: []string{"10.0.0.0/8"},
		Metadata: map[string]string{"tier": "gold"}})
	r, _ = s.Lookup(ctx, s.Hasher().Digest(bothSecret))
	if v, _ := r.Meta("tier"); v != "gold" || !r.RestrictsSource() || !reflect.DeepEqual(r.Limits(), both.Limits) {
		t.Fatalf("record with limits, CIDRs and metadata: meta %q, restricts %v, limits %+v", v, r.RestrictsSource(), r.Limits())
	}
}

func testLimitsRefused(t *testing.T, h Harness) {
	s, db := h.newStoreAt(t, keystore.Options{})
	ctx := context.Background()
	k, _ := mustCreate(t, s, keystore.CreateParams{Limits: []string{"10/s"}})
	before := snapshot(t, db)
	cases := []struct {
		name   string
		rates  []string
		quota  string
		field  string
		should string
	}{
		{"zero", []string{"0/s"}, "", "limits", "positive"},
		{"negative", []string{"-5/s"}, "", "limits", "positive"},
		{"not a number", []string{"ten/s"}, "", "limits", "whole number"},
		{"unknown window", []string{"10/w"}, "", "limits", "unknown window"},
		{"no window", []string{"10"}, "", "limits", "COUNT/WINDOW"},
		{"zero window", []string{"10/0s"}, "", "limits", "unknown window"},
		{"window too long", []string{"10/31d"}, "", "limits", "30d"},
		{"zero burst", []string{"10/s,burst=0"}, "", "limits", "positive"},
		{"bad burst", []string{"10/s,bust=3"}, "", "limits", "burst=N"},
		{"too fast", []string{"2000000/s"}, "", "limits", "a second"},
		{"too many", []string{"1/s", "2/m", "3/h", "4/d", "5/10s"}, "", "limits", "at most 4"},
		{"same window", []string{"1/s", "5/s"}, "", "limits", "one per window"},
		{"quota below burst", []string{"100/s"}, "50/day", "quota", "below the burst"},
		{"unknown period", nil, "100/week", "quota", "unknown period"},
		{"zero quota", nil, "0/day", "quota", "positive"},
		{"huge", []string{"99999999999999999999/s"}, "", "limits", "too large"},
	}
	for _, tc := range cases {
		_, _, err := s.Create(ctx, keystore.CreateParams{AccountID: "acct-1", Name: "x", Limits: tc.rates, Quota: tc.quota})
		var ve *keystore.ValidationError
		if !errors.As(err, &ve) || ve.Field != tc.field || !strings.Contains(ve.Problem, tc.should) {
			t.Errorf("%s: Create = %v; want a %s error saying %q", tc.name, err, tc.field, tc.should)
		}
		rates := tc.rates
		quota := tc.quota
		change := &keystore.LimitsChange{Rates: &rates}
		if tc.quota != "" {
			change.Quota = &quota
		}
		if _, err := s.Update(ctx, k.ID, keystore.UpdateParams{Limits: change}); !errors.As(err, &ve) || ve.Field != tc.field {
			t.Errorf("%s: Update = %v; want a %s error", tc.name, err, tc.field)
		}
	}
	if after := snapshot(t, db); after != before {
		t.Fatal("a refused limit wrote something")
	}
}

var usageOutcomes = []string{"ok", "rate_limited", "quota_exhausted"}

func testUsageCounter(t *testing.T, h Harness) {
	s := h.newStore(t, keystore.Options{})
	ctx := context.Background()
	a, _ := mustCreate(t, s, keystore.CreateParams{})
	b, _ := mustCreate(t, s, keystore.CreateParams{})
	u, err := keystore.NewUsageCounter(s, keystore.UsageCounterOptions{Outcomes: usageOutcomes, Interval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	base := time.Now().UTC().Truncate(time.Hour).Add(-2 * time.Hour)
	ra := a.Record() // shared, as requests share the cache's; b's are each their own
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Go(func() {
			for i := 0; i < 300; i++ {
				at := base.Add(time.Duration(i) * time.Second) // minutes 0 to 4
				u.Count(ra, 0, at)
				if i%3 == 0 {
					u.Count(ra, 1, at)
				}
				u.Count(b.Record(), 2, at)
			}
		})
	}
	wg.Wait()
	if err := u.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	written := u.Stats().Written
	// 5 minutes × (ok, rate_limited) for a, 5 × quota_exhausted for b.
	if written != 15 {
		t.Fatalf("%d rows written, want 15 (one per key, minute and outcome)", written)
	}
	if err := u.Flush(ctx); err != nil || u.Stats().Written != written {
		t.Fatalf("a flush with nothing new wrote rows: %+v, %v", u.Stats(), err)
	}
	// More counts for a minute already written add to it.
	u.Count(ra, 0, base)
	if err := u.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	series, err := s.Usage(ctx, a.ID, base, base.Add(10*time.Minute), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if len(series.Buckets) != 10 || series.Totals["ok"] != 2401 || series.Totals["rate_limited"] != 800 {
		t.Fatalf("series: %d buckets, totals %v; want 10, ok 2401, rate_limited 800", len(series.Buckets), series.Totals)
	}
	if got := series.Buckets[0].Counts["ok"]; got != 481 {
		t.Fatalf("first minute: ok %d, want 481", got)
	}
	if got := series.Buckets[5].Counts; len(got) != 0 {
		t.Fatalf("minute 5 holds %v, want nothing", got)
	}
	coarse, err := s.Usage(ctx, a.ID, base, base.Add(time.Hour), 5*time.Minute)
	if err != nil || coarse.Buckets[0].Counts["ok"] != 2401 {
		t.Fatalf("5-minute buckets: %+v, %v", coarse.Buckets[0], err)
	}
	used, err := s.AllowedSince(ctx, []string{a.ID, b.ID}, base)
	if err != nil || used[a.ID] != 2401 || used[b.ID] != 0 {
		t.Fatalf("AllowedSince = %v, %v; want a: 2401, b: none", used, err)
	}
	// Bad ranges are refused, naming the parameter.
	var ve *keystore.ValidationError
	for _, bad := range []struct {
		from, to time.Time
		step     time.Duration
		field    string
	}{
		{base, base.Add(time.Hour), 30 * time.Second, "step"},
		{base, base, time.Minute, "from"},
		{base, base.Add(30 * 24 * time.Hour), time.Minute, "step"},
	} {
		if _, err := s.Usage(ctx, a.ID, bad.from, bad.to, bad.step); !errors.As(err, &ve) || ve.Field != bad.field {
			t.Errorf("Usage(%v, %v, %v) = %v; want a %s error", bad.from, bad.to, bad.step, err, bad.field)
		}
	}
}

// testUsageCompaction rolls minutes into hours and hours into days and
// deletes what is past retention: totals survive every step.
func testUsageCompaction(t *testing.T, h Harness) {
	s := h.newStore(t, keystore.Options{})
	ctx := context.Background()
	k, _ := mustCreate(t, s, keystore.CreateParams{})
	now := time.Date(2026, 6, 15, 12, 30, 0, 0, time.UTC)
	var counts []keystore.UsageCount
	add := func(at time.Time, outcome string, n int64) {
		counts = append(counts, keystore.UsageCount{KeyID: k.ID, Start: at.Truncate(time.Minute), Step: time.Minute, Outcome: outcome, Count: n})
	}
	for d := 0; d < 60; d++ { // a sample minute on each of 60 days back
		add(now.Add(-time.Duration(d)*24*time.Hour-time.Duration(d)*time.Minute), "ok", int64(d+1))
	}
	add(now.Add(-3*time.Hour), "rate_limited", 7)
	add(now.Add(-3*time.Hour+time.Minute), "rate_limited", 5)
	if err := s.AddUsage(ctx, counts); err != nil {
		t.Fatal(err)
	}
	total := func(from time.Time) map[string]int64 {
		series, err := s.Usage(ctx, k.ID, from, now.Add(time.Hour), 24*time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return series.Totals
	}
	since := now.Add(-40 * 24 * time.Hour).Truncate(24 * time.Hour)
	before := total(since)
	r := keystore.UsageRetention{Minutes: 2 * time.Hour, Hours: 10 * 24 * time.Hour, Days: 45 * 24 * time.Hour}
	if err := s.CompactUsage(ctx, now, r); err != nil {
		t.Fatal(err)
	}
	if err := s.CompactUsage(ctx, now, r); err != nil { // twice: nothing more moves
		t.Fatal(err)
	}
	after := total(since)
	if !reflect.DeepEqual(before, after) {
		t.Fatalf("compaction changed the totals of the last 40 days: %v before, %v after", before, after)
	}
	rows, err := s.Backend().UsageRows(ctx, k.ID, now.Add(-100*24*time.Hour), now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	steps := map[time.Duration]int{}
	for _, row := range rows {
		steps[row.Step]++
		age := now.Sub(row.Start)
		switch {
		case row.Step == time.Minute && age > 2*time.Hour:
			t.Errorf("a minute bucket %v old was kept", age)
		case row.Step == time.Hour && age > 10*24*time.Hour+time.Hour:
			t.Errorf("an hour bucket %v old was kept", age)
		case age > 46*24*time.Hour:
			t.Errorf("a bucket %v old was kept past retention", age)
		}
		if row.Start != row.Start.Truncate(row.Step) {
			t.Errorf("bucket of step %v starts at %v", row.Step, row.Start)
		}
	}
	if steps[time.Minute] != 1 || steps[time.Hour] == 0 || steps[24*time.Hour] == 0 {
		t.Fatalf("buckets by step after compaction: %v", steps)
	}
	// The rate_limited minutes 3 hours ago are now one hour bucket.
	series, _ := s.Usage(ctx, k.ID, now.Add(-4*time.Hour), now, time.Hour)
	if series.Totals["rate_limited"] != 12 {
		t.Fatalf("rolled-up rate_limited: %v, want 12", series.Totals)
	}
}

// testUsageCompactionConcurrent compacts from three backends at once, as
// replicas do: no bucket is counted twice.
func testUsageCompactionConcurrent(t *testing.T, h Harness) {
	s, db := h.newStoreAt(t, keystore.Options{})
	ctx := context.Background()
	k, _ := mustCreate(t, s, keystore.CreateParams{})
	now := time.Date(2026, 6, 15, 12, 30, 0, 0, time.UTC)
	var counts []keystore.UsageCount
	for m := 0; m < 600; m++ {
		counts = append(counts, keystore.UsageCount{KeyID: k.ID, Start: now.Add(-time.Duration(180+m) * time.Minute).Truncate(time.Minute),
			Step: time.Minute, Outcome: "ok", Count: 1})
	}
	if err := s.AddUsage(ctx, counts); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 6)
	for range 3 {
		other := newStoreOn(t, db(t), keystore.Options{})
		wg.Go(func() { errs <- other.CompactUsage(ctx, now, keystore.DefaultUsageRetention) })
		wg.Go(func() {
			errs <- other.CompactUsage(ctx, now, keystore.UsageRetention{Minutes: time.Hour, Hours: 48 * time.Hour, Days: 400 * 24 * time.Hour})
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	series, err := s.Usage(ctx, k.ID, now.Add(-24*time.Hour), now, time.Hour)
	if err != nil || series.Totals["ok"] != 600 {
		t.Fatalf("after concurrent compactions: %v, %v; want 600", series.Totals, err)
	}
}

func testTopUsage(t *testing.T, h Harness) {
	s := h.newStore(t, keystore.Options{})
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Minute)
	var ids []string
	var counts []keystore.UsageCount
	for i, account := range []string{"acct-a", "acct-a", "acct-a", "acct-b"} {
		k, _ := mustCreate(t, s, keystore.CreateParams{AccountID: account, Name: "key"})
		ids = append(ids, k.ID)
		counts = append(counts,
			keystore.UsageCount{KeyID: k.ID, Start: now.Add(-time.Hour), Step: time.Minute, Outcome: "ok", Count: int64(10 * (i + 1))},
			keystore.UsageCount{KeyID: k.ID, Start: now.Add(-time.Hour), Step: time.Minute, Outcome: "rate_limited", Count: 1})
	}
	if err := s.AddUsage(ctx, counts); err != nil {
		t.Fatal(err)
	}
	top, err := s.TopUsage(ctx, "acct-a", now.Add(-24*time.Hour), now, 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(top) != 2 || top[0].KeyID != ids[2] || top[0].Allowed != 30 || top[0].Total != 31 || top[1].KeyID != ids[1] || top[0].AccountID != "acct-a" {
		t.Fatalf("top keys of acct-a: %+v", top)
	}
	all, err := s.TopUsage(ctx, "", now.Add(-24*time.Hour), now, 10)
	if err != nil || len(all) != 4 || all[0].KeyID != ids[3] {
		t.Fatalf("top keys of every account: %+v, %v", all, err)
	}
	if _, err := s.TopUsage(ctx, "acct-a", now, now, 10); !errors.Is(err, keystore.ErrInvalid) {
		t.Fatalf("an empty range: %v, want ErrInvalid", err)
	}
}

func testHeartbeat(t *testing.T, h Harness) {
	s, db := h.newStoreAt(t, keystore.Options{})
	ctx := context.Background()
	others := []*keystore.Store{s, newStoreOn(t, db(t), keystore.Options{}), newStoreOn(t, db(t), keystore.Options{})}
	for i, st := range others {
		n, err := st.Heartbeat(ctx, "replica-"+string(rune('a'+i)), time.Minute)
		if err != nil || n != i+1 {
			t.Fatalf("heartbeat %d: %d live, %v; want %d", i, n, err, i+1)
		}
	}
	if n, _ := s.Heartbeat(ctx, "replica-a", time.Minute); n != 3 {
		t.Fatalf("a second beat of one replica: %d live, want 3", n)
	}
	time.Sleep(300 * time.Millisecond)
	// Replicas not seen within the window are not counted; the one
	// beating is.
	if n, _ := s.Heartbeat(ctx, "replica-a", 200*time.Millisecond); n != 1 {
		t.Fatalf("after the others went quiet: %d live, want 1", n)
	}
}

// A record keeps the counter's entry for its key; Flush forgets entries
// idle for long. A count through a record that still holds a forgotten
// entry is written all the same, also when it races the forgetting.
func testUsageCounterForgets(t *testing.T, h Harness) {
	s := h.newStore(t, keystore.Options{})
	ctx := context.Background()
	a, _ := mustCreate(t, s, keystore.CreateParams{})
	u, err := keystore.NewUsageCounter(s, keystore.UsageCounterOptions{Outcomes: usageOutcomes, Interval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	rec := a.Record()
	base := time.Now().UTC().Truncate(time.Hour).Add(-2 * time.Hour) // idle long enough to be forgotten
	flush := func() {
		t.Helper()
		if err := u.Flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
	total := func() int64 {
		t.Helper()
		series, err := s.Usage(ctx, a.ID, base, base.Add(time.Hour), time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return series.Totals["ok"]
	}
	u.Count(rec, 0, base)
	flush() // writes the count
	flush() // forgets the entry
	u.Count(rec, 0, base)
	flush()
	if got := total(); got != 2 {
		t.Fatalf("a count through a record holding a forgotten entry: %d ok, want 2", got)
	}

	// Counts alongside flushes that forget (spaced so that the entry is
	// forgotten and found again many times): every one is written.
	// keystore's own tests (usage_entries_test.go) drive, step by step,
	// the orders in which a use and the forgetting can interleave.
	const counts = 300
	flushAlongside(t, u.Flush, counts, func(int) { u.Count(rec, 0, base) })
	if got := total(); got != 2+counts {
		t.Fatalf("after counts racing flushes: %d ok, want %d", got, 2+counts)
	}
}
