package keystore

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/jackc/pgx/v5"
)

// WatchOptions configure a Watcher. Zero values select the defaults.
type WatchOptions struct {
	// PollInterval spaces the delta polls that catch changes whose
	// notification was lost. Default 5s.
	PollInterval time.Duration
	// PingInterval is how long the listener waits for a notification
	// before checking that its connection is alive. Default 2s.
	PingInterval time.Duration
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
	DefaultPingInterval = 2 * time.Second
	// pollMargin re-reads changes this far back, for transactions that
	// stamped updated_at before the previous poll but committed after it.
	pollMargin         = 30 * time.Second
	resyncBatch        = 5000
	resyncBatchTimeout = 30 * time.Second
)

// Watcher keeps a Cache in step with the database: it LISTENs for change
// notifications on a dedicated connection (reconnecting, re-LISTENing and
// resyncing the whole cache after any interruption, and pinging to notice
// a dead connection quickly), and polls for changes as a safety net.
type Watcher struct {
	connConfig *pgx.ConnConfig
	store      *Store
	cache      *Cache
	opts       WatchOptions
	logger     *slog.Logger
	stats      WatchStats
}

// WatchStats are counters for metrics.
type WatchStats struct {
	Notifications, Resyncs, Reconnects, PolledChanges, PollErrors atomic.Uint64
	Listening                                                     atomic.Bool
}

// NewWatcher returns a Watcher; Run starts it.
func NewWatcher(connConfig *pgx.ConnConfig, store *Store, cache *Cache, opts WatchOptions) *Watcher {
	if opts.PollInterval <= 0 {
		opts.PollInterval = DefaultPollInterval
	}
	if opts.PingInterval <= 0 {
		opts.PingInterval = DefaultPingInterval
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Watcher{connConfig: connConfig, store: store, cache: cache, opts: opts, logger: logger}
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

// session is one connection's life: LISTEN first, then resync what the
// cache holds (changes made while nobody listened are otherwise lost),
// then apply notifications until the connection fails.
func (w *Watcher) session(ctx context.Context, first bool) error {
	connectCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	conn, err := pgx.ConnectConfig(connectCtx, w.connConfig)
	cancel()
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "LISTEN "+NotifyChannel); err != nil {
		return err
	}
	w.stats.Listening.Store(true)
	if !first {
		if err := w.resync(ctx); err != nil {
			return err
		}
		w.logger.Info("change listener reconnected; cache resynced", "keys", w.cache.Len())
	}
	for {
		waitCtx, cancel := context.WithTimeout(ctx, w.opts.PingInterval)
		n, err := conn.WaitForNotification(waitCtx)
		cancel()
		switch {
		case err == nil:
			w.apply(n.Payload)
			continue
		case ctx.Err() != nil:
			return nil
		case !errors.Is(err, context.DeadlineExceeded):
			return err
		}
		// Quiet for a while: make sure the connection is still there.
		pingCtx, cancel := context.WithTimeout(ctx, w.opts.PingInterval)
		err = conn.Ping(pingCtx)
		cancel()
		if err != nil {
			return fmt.Errorf("listener connection is dead: %w", err)
		}
	}
}

// apply handles one notification: the hex digest of a changed key, and
// since this version "@" and the database time of the change in unix
// microseconds (a bare digest, from an older keygate, is read too).
func (w *Watcher) apply(payload string) {
	w.stats.Notifications.Add(1)
	hexDigest, stamp, stamped := strings.Cut(payload, "@")
	if hexDigest == addedPayload { // keys added in bulk
		w.cache.ForgetUnknown()
		return
	}
	var d Digest
	if b, err := hex.DecodeString(hexDigest); err == nil && len(b) == len(d) {
		copy(d[:], b)
		w.cache.Invalidate(d)
		if us, err := strconv.ParseInt(stamp, 10, 64); stamped && err == nil && w.opts.OnPropagation != nil {
			w.opts.OnPropagation(max(0, time.Since(time.UnixMicro(us))))
		}
		return
	}
	w.logger.Warn("ignoring a malformed change notification", "length", len(payload))
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
