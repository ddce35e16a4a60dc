package keystore

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"
)

// DefaultExpiryLeads are the lead times of expiry warnings: 14 days, 3
// days and 1 day before a key expires.
var DefaultExpiryLeads = []time.Duration{14 * 24 * time.Hour, 3 * 24 * time.Hour, 24 * time.Hour}

// MaxExpiryLeads bounds how many lead times may be configured (each is a
// label value of the expiring-keys gauge).
const MaxExpiryLeads = 8

// NormalizeExpiryLeads checks lead times (1 to MaxExpiryLeads of them,
// each at least a minute, at most a year) and returns them sorted, shortest
// first, without duplicates.
func NormalizeExpiryLeads(leads []time.Duration) ([]time.Duration, error) {
	if len(leads) == 0 || len(leads) > MaxExpiryLeads {
		return nil, fmt.Errorf("give 1 to %d lead times, got %d", MaxExpiryLeads, len(leads))
	}
	out := slices.Clone(leads)
	for _, l := range out {
		if l < time.Minute || l > 366*24*time.Hour {
			return nil, fmt.Errorf("lead time %s: must be between 1m and 366d", FormatDuration(l))
		}
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// expiryBatch bounds the keys one transaction of WarnExpiring warns.
const expiryBatch = 100

// WarnExpiring sends the expiry warnings due at the store's clock: for
// each key that can still expire (neither revoked, disabled nor rotated),
// one key.expiring event for the shortest lead time its remaining life is
// within (a key created with two days to live gets the 3-day warning, not
// the 14-day one too), and one key.expired event once it has expired (for
// keys that expired within the longest lead time). Each key, lead time and
// expiry is warned once: the warning is noted in the event's transaction,
// and a warning noted already, by this process or another replica, is not
// sent again. A key whose expiry changes is warned again for the new one.
// leads must be normalized (NormalizeExpiryLeads). It returns how many
// events it wrote.
func (s *Store) WarnExpiring(ctx context.Context, leads []time.Duration) (int, error) {
	now := s.Clock()
	sent := 0
	bands := make([]ExpiryQuery, 0, len(leads)+1)
	bands = append(bands, ExpiryQuery{From: now.Add(-leads[len(leads)-1]), To: now, Lead: 0})
	from := now
	for _, l := range leads {
		bands = append(bands, ExpiryQuery{From: from, To: now.Add(l), Lead: l})
		from = now.Add(l)
	}
	for _, q := range bands {
		q.Limit = expiryBatch
		for {
			keys, err := s.db.ExpiringKeys(ctx, q)
			if err != nil {
				return sent, fmt.Errorf("keystore: expiring keys: %w", err)
			}
			n, err := s.warn(ctx, keys, q.Lead, now)
			sent += n
			if err != nil {
				return sent, err
			}
			if len(keys) < q.Limit || n == 0 {
				break
			}
		}
	}
	return sent, nil
}

// warn writes the warning of lead for each of keys, in one transaction,
// skipping those warned already or changed meanwhile.
func (s *Store) warn(ctx context.Context, keys []*Key, lead time.Duration, now time.Time) (int, error) {
	if len(keys) == 0 {
		return 0, nil
	}
	sent := 0
	err := s.write(ctx, "expiry warnings", func(tx Tx, _ time.Time) error {
		sent = 0
		for _, read := range keys {
			k, err := tx.Lock(ctx, read.ID)
			if err != nil {
				return err
			}
			if k.RevokedAt != nil || k.DisabledAt != nil || k.ExpiresAt == nil || !k.ExpiresAt.Equal(*read.ExpiresAt) {
				continue
			}
			fresh, err := tx.NoteExpiry(ctx, k.ID, lead, *k.ExpiresAt, now)
			if err != nil {
				return err
			}
			if !fresh {
				continue
			}
			t, detail := EventKeyExpired, map[string]any{"expired_at": k.ExpiresAt}
			if lead > 0 {
				t, detail = EventKeyExpiring, map[string]any{"lead": FormatDuration(lead), "expires_at": k.ExpiresAt}
			}
			if err := s.announce(ctx, tx, t, k, now, "", detail); err != nil {
				return err
			}
			sent++
		}
		return nil
	})
	return sent, err
}

// CountExpiring counts, for each of leads, the keys active at the store's
// clock that expire within it: the expiring-keys gauge.
func (s *Store) CountExpiring(ctx context.Context, leads []time.Duration) ([]int, error) {
	n, err := s.db.CountExpiring(ctx, s.Clock(), leads)
	if err != nil {
		return nil, fmt.Errorf("keystore: count expiring keys: %w", err)
	}
	return n, nil
}

// ExpiryWarner sends expiry warnings (WarnExpiring) and counts expiring
// keys (CountExpiring) every interval, off the decision path.
type ExpiryWarner struct {
	store    *Store
	leads    []time.Duration
	interval time.Duration
	logger   *slog.Logger

	mu     sync.Mutex
	counts []int // by lead, from the last pass; nil before the first
	sent   uint64
}

// DefaultExpiryInterval spaces expiry passes.
const DefaultExpiryInterval = time.Minute

// NewExpiryWarner returns a warner for leads (normalized), every interval.
func NewExpiryWarner(store *Store, leads []time.Duration, interval time.Duration, logger *slog.Logger) *ExpiryWarner {
	if interval <= 0 {
		interval = DefaultExpiryInterval
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &ExpiryWarner{store: store, leads: leads, interval: interval, logger: logger}
}

// Leads are the warner's lead times, shortest first.
func (w *ExpiryWarner) Leads() []time.Duration { return w.leads }

// Run makes a pass at once and then every interval until ctx ends.
func (w *ExpiryWarner) Run(ctx context.Context) {
	t := time.NewTicker(w.interval)
	defer t.Stop()
	for {
		passCtx, cancel := context.WithTimeout(ctx, w.interval)
		if err := w.Pass(passCtx); err != nil && ctx.Err() == nil {
			w.logger.Warn("expiry warnings: the pass failed; the next one retries", "error", oneLine(err))
		}
		cancel()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Pass sends the warnings due now and counts the expiring keys.
func (w *ExpiryWarner) Pass(ctx context.Context) error {
	sent, err := w.store.WarnExpiring(ctx, w.leads)
	w.mu.Lock()
	w.sent += uint64(sent)
	w.mu.Unlock()
	if err != nil {
		return err
	}
	counts, err := w.store.CountExpiring(ctx, w.leads)
	if err != nil {
		return err
	}
	w.mu.Lock()
	w.counts = counts
	w.mu.Unlock()
	return nil
}

// Counts are the keys expiring within each lead time as the last pass
// counted them (nil before the first), and how many warnings were sent.
func (w *ExpiryWarner) Counts() (byLead []int, sent uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.counts), w.sent
}
