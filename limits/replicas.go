package limits

import (
	"context"
	"log/slog"
	"time"

	"github.com/keygate/keygate/keystore"
)

// DefaultHeartbeat is how often a replica records that it serves; a
// replica not seen for three of them no longer counts.
const DefaultHeartbeat = 5 * time.Second

// RunHeartbeat records every interval that replica serves, and shares the
// local store's rates among the replicas seen within three intervals
// (on SQLite, which one serve holds, that is always one), until ctx ends.
// While the store cannot answer, the last count stands.
func (l *Local) RunHeartbeat(ctx context.Context, store *keystore.Store, replica string, interval time.Duration, logger *slog.Logger) {
	if interval <= 0 {
		interval = DefaultHeartbeat
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	beat := func() {
		bctx, cancel := context.WithTimeout(ctx, interval)
		defer cancel()
		n, err := store.Heartbeat(bctx, replica, 3*interval)
		if err != nil {
			if ctx.Err() == nil {
				logger.Warn("recording this replica's heartbeat failed; the local limits keep their last share", "error", err.Error())
			}
			return
		}
		if old := l.Replicas(); old != n {
			logger.Info("live replicas changed: each takes its share of every key's rates", "replicas", n, "was", old)
		}
		l.SetReplicas(n)
	}
	beat()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			beat()
		}
	}
}
