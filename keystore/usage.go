package keystore

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"
)

// UsageBackend is the part of the store contract that keeps usage: the
// decisions per key, outcome and time bucket, and the serving replicas.
// Backend embeds it; every backend implements it, proven by the same
// conformance suite.
type UsageBackend interface {
	// AddUsage adds each count to its bucket (creating it), in one
	// statement: the batched write of the decisions of an interval.
	AddUsage(ctx context.Context, counts []UsageCount) error
	// UsageRows returns the buckets of key id that start in [from, to),
	// of every step, in no order.
	UsageRows(ctx context.Context, id string, from, to time.Time) ([]UsageCount, error)
	// UsageSince sums, for each of ids, the counts of outcome in buckets
	// that start at or after since; keys without any are left out.
	UsageSince(ctx context.Context, ids []string, outcome string, since time.Time) (map[string]int64, error)
	// TopUsage sums the counts of each key of an account ("" for every
	// account) in buckets that start in [from, to) and returns the limit
	// keys with the most, most first, with their allowed count (outcome
	// allowed) and total.
	TopUsage(ctx context.Context, accountID, allowed string, from, to time.Time, limit int) ([]KeyUsage, error)
	// RollUpUsage moves the buckets of step from that start before before
	// into buckets of step to (which starts on a multiple of to), adding
	// their counts, in one transaction: concurrent calls never count a
	// bucket twice. It returns how many buckets it moved.
	RollUpUsage(ctx context.Context, from, to time.Duration, before time.Time) (int64, error)
	// DeleteUsage deletes the buckets of step that start before before.
	DeleteUsage(ctx context.Context, step time.Duration, before time.Time) (int64, error)
	// Heartbeat records that replica serves (now, by the database's
	// clock), forgets replicas not seen for 10×within, and returns how
	// many were seen within the last within, this one included.
	Heartbeat(ctx context.Context, replica string, within time.Duration) (int, error)
}

// UsageCount is a count of decisions of one key with one outcome in one
// time bucket: Step long (a minute, an hour or a day) from Start.
type UsageCount struct {
	KeyID   string
	Start   time.Time
	Step    time.Duration
	Outcome string
	Count   int64
}

// KeyUsage is one key's total in TopUsage.
type KeyUsage struct {
	KeyID     string
	AccountID string
	Name      string
	Allowed   int64
	Total     int64
}

// The steps usage is kept in.
const (
	UsageMinute = time.Minute
	UsageHour   = time.Hour
	UsageDay    = 24 * time.Hour
)

// UsageAllowed is the outcome of allowed decisions, as the decision names
// it ("ok"): what a quota counts.
const UsageAllowed = "ok"

// Bounds of a usage query.
const (
	MaxUsagePoints = 1500 // buckets one query returns
)

// UsageSeries is a key's usage from From to To, in buckets of Step.
type UsageSeries struct {
	KeyID    string
	From, To time.Time
	Step     time.Duration
	// Buckets are every bucket from From to To, empty ones included, each
	// with its counts by outcome.
	Buckets []UsageBucket
	// Totals are the counts by outcome over the whole range.
	Totals map[string]int64
}

// UsageBucket is one bucket of a UsageSeries.
type UsageBucket struct {
	Start  time.Time
	Counts map[string]int64 // by outcome; empty for none
}

// Usage returns the usage of the key with the given id from from to to
// in buckets of step (a whole number of minutes, at most MaxUsagePoints of
// them): from is moved back to a multiple of step. Buckets older data was
// rolled into (an hour, a day) count whole in the bucket their start
// falls in: a step finer than the data shows it as it is kept.
func (s *Store) Usage(ctx context.Context, id string, from, to time.Time, step time.Duration) (*UsageSeries, error) {
	u, err := parseID(id)
	if err != nil {
		return nil, err
	}
	if err := CheckUsageRange(from, to, step); err != nil {
		return nil, err
	}
	from = from.UTC().Truncate(step)
	to = to.UTC()
	rows, err := s.db.UsageRows(ctx, u, from, to)
	if err != nil {
		return nil, fmt.Errorf("keystore: usage %s: %w", id, err)
	}
	series := &UsageSeries{KeyID: u, From: from, To: to, Step: step, Totals: map[string]int64{}}
	for t := from; t.Before(to); t = t.Add(step) {
		series.Buckets = append(series.Buckets, UsageBucket{Start: t, Counts: map[string]int64{}})
	}
	for _, r := range rows {
		i := int(r.Start.Sub(from) / step)
		if i < 0 || i >= len(series.Buckets) {
			continue
		}
		series.Buckets[i].Counts[r.Outcome] += r.Count
		series.Totals[r.Outcome] += r.Count
	}
	return series, nil
}

// CheckUsageRange reports what is wrong with a usage query: from before
// to, a step of whole minutes, at most MaxUsagePoints buckets.
func CheckUsageRange(from, to time.Time, step time.Duration) error {
	switch {
	case step < time.Minute || step%time.Minute != 0:
		return invalid("step", "must be a whole number of minutes, like 60s, 5m, 1h or 1d")
	case !from.Before(to):
		return invalid("from", "must be before to")
	case to.Sub(from.Truncate(step))/step > MaxUsagePoints:
		return invalidf("step", "at most %d buckets a query: choose a coarser step or a shorter range", MaxUsagePoints)
	}
	return nil
}

// QuotaUsed is how much of k's quota its period holding now has used:
// its allowed decisions since the period began, as written so far (the
// usage of the last flush interval is not in it yet). Zero for a key
// without a quota.
func (s *Store) QuotaUsed(ctx context.Context, k *Key, now time.Time) (int64, error) {
	if k.Limits.Quota.Period == NoQuota {
		return 0, nil
	}
	used, err := s.db.UsageSince(ctx, []string{k.ID}, UsageAllowed, k.Limits.Quota.Period.Start(now))
	if err != nil {
		return 0, fmt.Errorf("keystore: quota used %s: %w", k.ID, err)
	}
	return used[k.ID], nil
}

// AllowedSince sums the allowed decisions of each of ids since since (see
// UsageBackend.UsageSince): the local counting store reads what the other
// replicas spent of their quotas with it.
func (s *Store) AllowedSince(ctx context.Context, ids []string, since time.Time) (map[string]int64, error) {
	if len(ids) == 0 {
		return map[string]int64{}, nil
	}
	used, err := s.db.UsageSince(ctx, ids, UsageAllowed, since)
	if err != nil {
		return nil, fmt.Errorf("keystore: usage since: %w", err)
	}
	return used, nil
}

// TopUsage returns the keys of an account ("" for every account) that
// made the most decisions from from to to, at most limit of them (1 to
// 100), most first.
func (s *Store) TopUsage(ctx context.Context, accountID string, from, to time.Time, limit int) ([]KeyUsage, error) {
	if accountID != "" {
		if err := ValidateAccountID(accountID); err != nil {
			return nil, err
		}
	}
	if limit < 1 || limit > 100 {
		return nil, invalid("limit", "must be from 1 to 100")
	}
	if !from.Before(to) {
		return nil, invalid("from", "must be before to")
	}
	top, err := s.db.TopUsage(ctx, accountID, UsageAllowed, from.UTC(), to.UTC(), limit)
	if err != nil {
		return nil, fmt.Errorf("keystore: top usage: %w", err)
	}
	return top, nil
}

// UsageRetention says how long usage is kept, in each step: minutes for
// Minutes, then hours until Hours, then days until Days, then nothing.
type UsageRetention struct {
	Minutes, Hours, Days time.Duration
}

// DefaultUsageRetention keeps minutes for two days (the last 24 hours at
// full detail), hours for 40 days (the last 30 days by the hour) and days
// for 400 days. A key's usage is then at most 2880 + 960 + 400 buckets per
// outcome.
var DefaultUsageRetention = UsageRetention{Minutes: 48 * time.Hour, Hours: 40 * 24 * time.Hour, Days: 400 * 24 * time.Hour}

// Check reports what is wrong with r: each tier at least as long as the
// one before, and longer than its bucket.
func (r UsageRetention) Check() error {
	switch {
	case r.Minutes < time.Hour:
		return fmt.Errorf("minutes must be kept at least an hour")
	case r.Hours < r.Minutes || r.Hours < 24*time.Hour:
		return fmt.Errorf("hours must be kept at least a day, and as long as minutes")
	case r.Days < r.Hours:
		return fmt.Errorf("days must be kept at least as long as hours")
	}
	return nil
}

// CompactUsage rolls aged usage into coarser buckets and deletes what is
// past retention, judged at now: minutes older than r.Minutes become
// hours, hours older than r.Hours days, and days older than r.Days go.
// Safe to run from every replica at once.
func (s *Store) CompactUsage(ctx context.Context, now time.Time, r UsageRetention) error {
	now = now.UTC()
	if _, err := s.db.RollUpUsage(ctx, UsageMinute, UsageHour, now.Add(-r.Minutes).Truncate(UsageHour)); err != nil {
		return fmt.Errorf("keystore: usage rollup: %w", err)
	}
	if _, err := s.db.RollUpUsage(ctx, UsageHour, UsageDay, now.Add(-r.Hours).Truncate(UsageDay)); err != nil {
		return fmt.Errorf("keystore: usage rollup: %w", err)
	}
	if _, err := s.db.DeleteUsage(ctx, UsageDay, now.Add(-r.Days).Truncate(UsageDay)); err != nil {
		return fmt.Errorf("keystore: usage retention: %w", err)
	}
	return nil
}

// Heartbeat records that replica serves and returns how many replicas
// were seen within the last within (at least 1: this one).
func (s *Store) Heartbeat(ctx context.Context, replica string, within time.Duration) (int, error) {
	n, err := s.db.Heartbeat(ctx, replica, within)
	if err != nil {
		return 0, fmt.Errorf("keystore: heartbeat: %w", err)
	}
	return max(n, 1), nil
}

// sortUsage orders counts for a statement: by key, start, step and
// outcome, so that concurrent writers lock rows in one order.
func sortUsage(counts []UsageCount) {
	slices.SortFunc(counts, func(a, b UsageCount) int {
		switch {
		case a.KeyID != b.KeyID:
			return cmp.Compare(a.KeyID, b.KeyID)
		case !a.Start.Equal(b.Start):
			return a.Start.Compare(b.Start)
		case a.Step != b.Step:
			return int(a.Step - b.Step)
		}
		return cmp.Compare(a.Outcome, b.Outcome)
	})
}

// AddUsage writes counts (the usage counter's batch) in one statement.
func (s *Store) AddUsage(ctx context.Context, counts []UsageCount) error {
	if len(counts) == 0 {
		return nil
	}
	sortUsage(counts)
	if err := s.db.AddUsage(ctx, counts); err != nil {
		return fmt.Errorf("keystore: usage: %w", err)
	}
	return nil
}
