package keystore

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// UsageRecorder collects the last use of each key in memory (to 100 ms)
// and writes
// them in batches, so that the decision path never writes to the
// database. Used is lock-free for keys seen before; Run flushes every
// interval and once more when its context ends, so a graceful shutdown
// loses nothing.
type UsageRecorder struct {
	store    *Store
	interval time.Duration
	logger   *slog.Logger
	keys     sync.Map   // key id → *usage
	flushing sync.Mutex // one Flush at a time
	flushes  atomic.Uint64
	written  atomic.Uint64
	failures atomic.Uint64
}

type usage struct {
	last    atomic.Int64 // unix nanoseconds of the latest use
	flushed atomic.Int64 // the value last written
	owner   *UsageRecorder
	gone    atomic.Bool // forgotten by Flush: records holding it look again
}

// DefaultUsageFlushInterval spaces last-used writes.
const DefaultUsageFlushInterval = 10 * time.Second

// forgetIdleAfter drops a key from the recorder's memory once it has been
// written and not used for this long.
const forgetIdleAfter = 10 * time.Minute

// NewUsageRecorder returns a recorder writing to store every interval.
func NewUsageRecorder(store *Store, interval time.Duration, logger *slog.Logger) *UsageRecorder {
	if interval <= 0 {
		interval = DefaultUsageFlushInterval
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &UsageRecorder{store: store, interval: interval, logger: logger}
}

// Used records that key was used at at. It never blocks on I/O, and
// after a record's first use it touches only that key's entry, which the
// record keeps (a Record from the cache is shared by every request).
func (u *UsageRecorder) Used(key *Record, at time.Time) {
	u.record(key, u.held(key), at.UnixNano())
}

// held is the entry key keeps for u, looked up by id when it keeps none,
// keeps another recorder's, or keeps one Flush forgot.
func (u *UsageRecorder) held(key *Record) *usage {
	e := key.lastUse.Load()
	if e == nil || e.owner != u || e.gone.Load() {
		e = u.entry(key.ID())
		key.lastUse.Store(e)
	}
	return e
}

// record records the use t (unix nanoseconds) in e, key's entry. Flush
// marks an entry gone before it reads the entry's last use for the last
// time (retire), and record reads gone after its write: so either Flush
// carries the use over to the entry that replaces e, or record writes it
// there itself, or both.
func (u *UsageRecorder) record(key *Record, e *usage, t int64) {
	for e.use(t) && e.gone.Load() {
		e = u.entry(key.ID())
		key.lastUse.Store(e)
	}
}

// entry returns keyID's entry, adding one if there is none.
func (u *UsageRecorder) entry(keyID string) *usage {
	return loadOrAdd(&u.keys, keyID, func() *usage { return &usage{owner: u} })
}

// loadOrAdd returns the entry under keyID in m, a map of the UsageRecorder's
// or the UsageCounter's, storing fresh() there first if it holds none.
func loadOrAdd[E any](m *sync.Map, keyID string, fresh func() *E) *E {
	v, ok := m.Load(keyID)
	if !ok {
		v, _ = m.LoadOrStore(keyID, fresh())
	}
	return v.(*E)
}

// use moves e's last use to t (unix nanoseconds) if that is later by
// usageResolution or more, and reports whether it did.
func (e *usage) use(t int64) bool {
	for {
		old := e.last.Load()
		// Within usageResolution of the recorded use there is nothing to
		// write: busy keys cost a shared read, not a contended write.
		if t < old+int64(usageResolution) {
			return false
		}
		if e.last.CompareAndSwap(old, t) {
			return true
		}
	}
}

// usageResolution is the precision of last-used times.
const usageResolution = 100 * time.Millisecond

// Run flushes every interval until ctx ends, then flushes once more with
// a fresh deadline.
func (u *UsageRecorder) Run(ctx context.Context) {
	t := time.NewTicker(u.interval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			flushCtx, cancel := context.WithTimeout(ctx, u.interval)
			if err := u.Flush(flushCtx); err != nil {
				u.logger.Warn("writing last-used times failed; will retry", "error", oneLine(err))
			}
			cancel()
		case <-ctx.Done():
			flushCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			if err := u.Flush(flushCtx); err != nil {
				u.logger.Error("writing last-used times at shutdown failed", "error", oneLine(err))
			}
			cancel()
			return
		}
	}
}

// Flush writes every use not yet written, in batches of 1000, and
// forgets keys idle for long. Flushes run one at a time.
func (u *UsageRecorder) Flush(ctx context.Context) error {
	u.flushing.Lock()
	defer u.flushing.Unlock()
	u.flushes.Add(1)
	var batch []LastUsed
	var recs []*usage
	var firstErr error
	write := func() {
		if len(batch) == 0 {
			return
		}
		if err := u.store.RecordLastUsed(ctx, batch); err != nil {
			u.failures.Add(1)
			if firstErr == nil {
				firstErr = err
			}
		} else {
			for i, r := range recs {
				r.flushed.Store(batch[i].At.UnixNano())
			}
			u.written.Add(uint64(len(batch)))
		}
		batch, recs = batch[:0], recs[:0]
	}
	idle := time.Now().Add(-forgetIdleAfter).UnixNano()
	u.keys.Range(func(k, v any) bool {
		rec := v.(*usage)
		last := rec.last.Load()
		if last == rec.flushed.Load() {
			if last < idle && u.keys.CompareAndDelete(k, v) {
				u.retire(k.(string), rec, last)
			}
			return true
		}
		batch = append(batch, LastUsed{KeyID: k.(string), At: time.Unix(0, last).UTC()})
		recs = append(recs, rec)
		if len(batch) == 1000 {
			write()
		}
		return true
	})
	write()
	return firstErr
}

// retire marks e gone once Flush has removed it from the map, idle since
// last, and carries a use that a record still holding e wrote since then
// over to the entry that replaces it.
func (u *UsageRecorder) retire(keyID string, e *usage, last int64) {
	e.gone.Store(true)
	if now := e.last.Load(); now != last {
		u.entry(keyID).use(now)
	}
}

// Stats reports how many flushes ran, how many last-used times were
// written, and how many batch writes failed.
func (u *UsageRecorder) Stats() (flushes, written, failures uint64) {
	return u.flushes.Load(), u.written.Load(), u.failures.Load()
}
