package keystore

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// MaxUsageOutcomes bounds the outcomes a UsageCounter counts.
const MaxUsageOutcomes = 16

// UsageCounter counts decisions per key, outcome and minute in memory and
// writes them in batches (one row per key, minute and outcome per flush,
// all in one statement), so that the decision path never writes to the
// database; Run flushes every interval, compacts old usage now and then,
// and flushes once more when its context ends, so that a graceful
// shutdown loses nothing.
type UsageCounter struct {
	store     *Store
	outcomes  []string
	interval  time.Duration
	retention UsageRetention
	logger    *slog.Logger
	now       func() time.Time
	afterEach func(ctx context.Context) // called after each flush: the local store refreshes its quotas

	keys     sync.Map   // key id → *keyCounts
	flushing sync.Mutex // one Flush at a time
	flushes  atomic.Uint64
	written  atomic.Uint64
	failures atomic.Uint64
	dropped  atomic.Uint64
}

// keyCounts are one key's counts not yet written.
type keyCounts struct {
	mu      sync.Mutex
	minute  int64 // unix minute of counts
	any     bool  // counts holds something
	counts  [MaxUsageOutcomes]int64
	pending []minuteCounts // earlier minutes, and counts a failed write gave back
	seen    int64          // unix minute of the latest count
	dead    bool           // forgotten: counts go to a new entry
	owner   *UsageCounter
}

type minuteCounts struct {
	minute int64
	counts [MaxUsageOutcomes]int64
}

// maxPendingMinutes bounds what one key keeps while writes fail: a day.
const maxPendingMinutes = 24 * 60

// UsageCounterOptions configure a UsageCounter.
type UsageCounterOptions struct {
	// Outcomes name the outcomes Count is given by index (at most
	// MaxUsageOutcomes): the decision's outcome table.
	Outcomes []string
	// Interval spaces the writes. Default: DefaultUsageFlushInterval.
	Interval time.Duration
	// Retention is how long usage is kept. Default: DefaultUsageRetention.
	Retention UsageRetention
	Logger    *slog.Logger
	// AfterFlush, when set, is called after each flush of Run.
	AfterFlush func(ctx context.Context)
	// Now is the clock of compaction. Default: time.Now.
	Now func() time.Time
}

// NewUsageCounter returns a counter writing to store.
func NewUsageCounter(store *Store, opts UsageCounterOptions) (*UsageCounter, error) {
	if len(opts.Outcomes) == 0 || len(opts.Outcomes) > MaxUsageOutcomes {
		return nil, errors.New("keystore: usage counter: 1 to 16 outcomes")
	}
	u := &UsageCounter{store: store, outcomes: opts.Outcomes, interval: opts.Interval, retention: opts.Retention,
		logger: opts.Logger, afterEach: opts.AfterFlush, now: opts.Now}
	if u.interval <= 0 {
		u.interval = DefaultUsageFlushInterval
	}
	if u.retention == (UsageRetention{}) {
		u.retention = DefaultUsageRetention
	}
	if err := u.retention.Check(); err != nil {
		return nil, err
	}
	if u.logger == nil {
		u.logger = slog.New(slog.DiscardHandler)
	}
	if u.now == nil {
		u.now = time.Now
	}
	return u, nil
}

// Count counts one decision of key with outcome (an index into the
// outcomes) at at. It never blocks on I/O, and after a record's first
// count it finds the key's entry in the record (a Record from the cache is
// shared by every request).
func (u *UsageCounter) Count(key *Record, outcome int, at time.Time) {
	if outcome < 0 || outcome >= len(u.outcomes) {
		return
	}
	m := at.Unix() / 60
	c := key.counts.Load()
	if c == nil || c.owner != u {
		c = u.entry(key.ID())
		key.counts.Store(c)
	}
	c.mu.Lock()
	for c.dead { // forgotten: the next load finds a new entry
		c.mu.Unlock()
		c = u.entry(key.ID())
		key.counts.Store(c)
		c.mu.Lock()
	}
	if c.any && m != c.minute {
		c.park()
	}
	if !c.any {
		c.minute, c.any = m, true
	}
	c.counts[outcome]++
	c.seen = max(c.seen, m)
	c.mu.Unlock()
}

// entry returns keyID's entry, adding one if there is none.
func (u *UsageCounter) entry(keyID string) *keyCounts {
	return loadOrAdd(&u.keys, keyID, func() *keyCounts { return &keyCounts{owner: u} })
}

// park moves the current minute's counts to pending (c.mu held).
func (c *keyCounts) park() {
	if len(c.pending) < maxPendingMinutes {
		c.pending = append(c.pending, minuteCounts{minute: c.minute, counts: c.counts})
	}
	c.counts, c.any = [MaxUsageOutcomes]int64{}, false
}

// take removes and returns every count of c.
func (c *keyCounts) take() []minuteCounts {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.any {
		c.park()
	}
	out := c.pending
	c.pending = nil
	return out
}

// giveBack returns counts a failed write could not store.
func (c *keyCounts) giveBack(counts []minuteCounts) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	room := max(0, maxPendingMinutes-len(c.pending))
	kept := min(room, len(counts))
	c.pending = append(c.pending, counts[len(counts)-kept:]...)
	return len(counts) - kept
}

// Run flushes every interval until ctx ends, compacting old usage every
// hour (and once at start), then flushes once more with a fresh deadline.
func (u *UsageCounter) Run(ctx context.Context) {
	t := time.NewTicker(u.interval)
	defer t.Stop()
	var compacted time.Time
	for {
		select {
		case <-t.C:
			flushCtx, cancel := context.WithTimeout(ctx, u.interval)
			if err := u.Flush(flushCtx); err != nil {
				u.logger.Warn("writing usage failed; will retry", "error", oneLine(err))
			}
			if u.afterEach != nil {
				u.afterEach(flushCtx)
			}
			if now := u.now(); now.Sub(compacted) >= time.Hour {
				if err := u.store.CompactUsage(flushCtx, now, u.retention); err != nil {
					u.logger.Warn("compacting usage failed; will retry", "error", oneLine(err))
				} else {
					compacted = now
				}
			}
			cancel()
		case <-ctx.Done():
			flushCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			if err := u.Flush(flushCtx); err != nil {
				u.logger.Error("writing usage at shutdown failed", "error", oneLine(err))
			}
			cancel()
			return
		}
	}
}

// Flush writes every count not yet written, in batches of 1000 rows, and
// forgets keys idle for long. Flushes run one at a time.
func (u *UsageCounter) Flush(ctx context.Context) error {
	u.flushing.Lock()
	defer u.flushing.Unlock()
	u.flushes.Add(1)
	type taken struct {
		c      *keyCounts
		counts []minuteCounts
	}
	var batch []UsageCount
	var from []taken
	var firstErr error
	write := func() {
		if len(batch) == 0 {
			return
		}
		if err := u.store.AddUsage(ctx, batch); err != nil {
			u.failures.Add(1)
			if firstErr == nil {
				firstErr = err
			}
			for _, t := range from {
				u.dropped.Add(uint64(t.c.giveBack(t.counts)))
			}
		} else {
			u.written.Add(uint64(len(batch)))
		}
		batch, from = batch[:0], from[:0]
	}
	idle := u.now().Add(-forgetIdleAfter).Unix() / 60
	u.keys.Range(func(k, v any) bool {
		c := v.(*keyCounts)
		counts := c.take()
		if len(counts) == 0 {
			// Forgotten under its lock, so that a Count waiting for it
			// finds it dead and out of the map at once.
			c.mu.Lock()
			if !c.any && len(c.pending) == 0 && c.seen < idle {
				c.dead = true
				u.keys.CompareAndDelete(k, v)
			}
			c.mu.Unlock()
			return true
		}
		batch = append(batch, u.rows(k.(string), counts)...)
		from = append(from, taken{c, counts})
		if len(batch) >= 1000 {
			write()
		}
		return true
	})
	write()
	return firstErr
}

// rows are one key's counts as usage rows, a minute and an outcome each.
func (u *UsageCounter) rows(keyID string, counts []minuteCounts) []UsageCount {
	merged := map[[2]int64]int64{}
	for _, mc := range counts {
		for o, n := range mc.counts[:len(u.outcomes)] {
			if n > 0 {
				merged[[2]int64{mc.minute, int64(o)}] += n
			}
		}
	}
	out := make([]UsageCount, 0, len(merged))
	for k, n := range merged {
		out = append(out, UsageCount{KeyID: keyID, Start: time.Unix(k[0]*60, 0).UTC(), Step: UsageMinute,
			Outcome: u.outcomes[k[1]], Count: n})
	}
	return out
}

// UsageCounterStats are what a UsageCounter did.
type UsageCounterStats struct {
	Flushes, Written, Failures, Dropped uint64
}

// Stats reports how many flushes ran, how many rows were written, how many
// batch writes failed, and how many minutes of counts were dropped because
// writes kept failing for a day.
func (u *UsageCounter) Stats() UsageCounterStats {
	return UsageCounterStats{Flushes: u.flushes.Load(), Written: u.written.Load(), Failures: u.failures.Load(), Dropped: u.dropped.Load()}
}
