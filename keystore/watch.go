package keystore

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v5"
)

// WatchOptions configure a Watcher. Zero values select the defaults.
type WatchOptions struct {
	// PollInterval spaces the delta polls that catch changes whose
	// notification was lost. Default 5s.
	PollInterval time.Duration
	// Logger logs connection changes. Default: discard.
	Logger *slog.Logger
	// OnPropagation, when set, learns how long each notified change took
	// from the database to this cache (the database's clock against this
	// machine's, so clock skew counts too; never negative).
	OnPropagation func(time.Duration)
}

// Defaults of WatchOptions.
const (
	DefaultPollInterval = 5 * time.Second
	// pollMargin re-reads changes this far back, for transactions that
	// stamped updated_at before the previous poll but committed after it.
	pollMargin         = 30 * time.Second
	resyncBatch        = 5000
	resyncBatchTimeout = 30 * time.Second
)

// Watcher keeps a Cache in step with the store: it listens for the
// notices of committed changes (Backend.Listen: a LISTEN connection on
// PostgreSQL, the process's own commits on SQLite), reconnecting and
// resyncing the whole cache after any interruption, and polls for changes
// as a safety net (on SQLite, the way changes made by other processes
// arrive).
type Watcher struct {
	store  *Store
	cache  *Cache
	opts   WatchOptions
	logger *slog.Logger
	stats  WatchStats
}

// WatchStats are counters for metrics.
type WatchStats struct {
	Notifications, Resyncs, Reconnects, PolledChanges, PollErrors atomic.Uint64
	Listening                                                     atomic.Bool
}

// NewWatcher returns a Watcher; Run starts it.
func NewWatcher(store *Store, cache *Cache, opts WatchOptions) *Watcher {
	if opts.PollInterval <= 0 {
		opts.PollInterval = DefaultPollInterval
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Watcher{store: store, cache: cache, opts: opts, logger: logger}
}

// Stats returns the watcher's counters.
func (w *Watcher) Stats() *WatchStats { return &w.stats }

// Run listens and polls until ctx ends.
func (w *Watcher) Run(ctx context.Context) {
	done := make(chan struct{})
	go func() { defer close(done); w.poll(ctx) }()
	w.listen(ctx)
	<-done
}

// listen holds a LISTEN connection open for as long as ctx lasts.
func (w *Watcher) listen(ctx context.Context) {
	retry := backoff.NewExponentialBackOff()
	retry.InitialInterval = 100 * time.Millisecond
	retry.MaxInterval = 2 * time.Second
	first := true
	for ctx.Err() == nil {
		err := w.session(ctx, first)
		first = false
		connected := w.stats.Listening.Load()
		if connected {
			retry.Reset() // it was listening: a new interruption, start the backoff over
		}
		w.stats.Listening.Store(false)
		if ctx.Err() != nil {
			return
		}
		w.stats.Reconnects.Add(1)
		wait := retry.NextBackOff()
		// The first failure of an outage is a warning; the retries that
		// follow are not news.
		level := slog.LevelDebug
		if connected {
			level = slog.LevelWarn
		}
		w.logger.Log(ctx, level, "change listener disconnected; reconnecting", "error", oneLine(err), "retry_in", wait)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// session is one listening session: once the backend listens, resync
// what the cache holds (changes made while nobody listened are otherwise
// lost), then apply notices until the feed breaks.
func (w *Watcher) session(ctx context.Context, first bool) error {
	return w.store.db.Listen(ctx, func() error {
		w.stats.Listening.Store(true)
		if first {
			return nil
		}
		if err := w.resync(ctx); err != nil {
			return err
		}
		w.logger.Info("change listener reconnected; cache resynced", "keys", w.cache.Len())
		return nil
	}, w.apply)
}

// apply handles one notice.
func (w *Watcher) apply(n Notice) {
	w.stats.Notifications.Add(1)
	if n.Added { // keys added in bulk
		w.cache.ForgetUnknown()
		return
	}
	w.cache.Invalidate(n.Digest)
	if !n.At.IsZero() && w.opts.OnPropagation != nil {
		w.opts.OnPropagation(max(0, time.Since(n.At)))
	}
}

// resync re-reads every cached key and forgets every unknown-key entry.
func (w *Watcher) resync(ctx context.Context) error {
	w.stats.Resyncs.Add(1)
	w.cache.ForgetUnknown()
	digests := w.cache.Digests()
	for start := 0; start < len(digests); start += resyncBatch {
		batch := digests[start:min(start+resyncBatch, len(digests))]
		fetched := w.cache.now()
		batchCtx, cancel := context.WithTimeout(ctx, resyncBatchTimeout)
		stored, err := w.store.LookupMany(batchCtx, batch)
		cancel()
		if err != nil {
			return err
		}
		found := make(map[Digest]bool, len(stored))
		for _, st := range stored {
			found[st.Digest] = true
			w.cache.Update(st.Digest, st.Record, fetched)
		}
		for _, d := range batch {
			if !found[d] {
				w.cache.Invalidate(d)
			}
		}
	}
	return nil
}

// poll reads recent changes every PollInterval, so that a lost
// notification delays a change by at most that long.
func (w *Watcher) poll(ctx context.Context) {
	var since time.Time // zero: the first poll only establishes the time
	t := time.NewTicker(w.opts.PollInterval)
	defer t.Stop()
	for {
		if err := w.pollOnce(ctx, &since); err != nil && ctx.Err() == nil {
			w.stats.PollErrors.Add(1)
			w.logger.Debug("delta poll failed", "error", oneLine(err))
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (w *Watcher) pollOnce(ctx context.Context, since *time.Time) error {
	ctx, cancel := context.WithTimeout(ctx, w.opts.PollInterval)
	defer cancel()
	from := *since
	if from.IsZero() {
		from = time.Now().Add(365 * 24 * time.Hour) // nothing yet: just learn the database's time
	}
	fetched := w.cache.now()
	changed, now, err := w.store.ChangedSince(ctx, from)
	if err != nil {
		return err
	}
	for _, st := range changed {
		w.stats.PolledChanges.Add(1)
		w.cache.Update(st.Digest, st.Record, fetched)
	}
	*since = now.Add(-pollMargin)
	return nil
}

// oneLine flattens an error for a log attribute.
func oneLine(err error) string {
	if err == nil {
		return ""
	}
	b := []byte(err.Error())
	for i, c := range b {
		if c == '\n' || c == '\t' {
			b[i] = ' '
		}
	}
	return string(b)
}
