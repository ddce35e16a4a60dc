package authz

import (
	"context"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/keygate/keygate/keystore"
)

// DecisionLogMode chooses which decisions are logged.
type DecisionLogMode uint8

// The modes of the decision log.
const (
	DecisionLogOff     DecisionLogMode = iota // nothing
	DecisionLogDenials                        // every denial (dry-run ones included)
	DecisionLogAll                            // every decision
)

// ParseDecisionLogMode reads "off", "denials" or "all".
func ParseDecisionLogMode(s string) (DecisionLogMode, bool) {
	switch s {
	case "off":
		return DecisionLogOff, true
	case "denials":
		return DecisionLogDenials, true
	case "all":
		return DecisionLogAll, true
	}
	return DecisionLogOff, false
}

// DefaultDecisionLogRate bounds the decision log, in lines per second (and
// burst), so that a flood of bad keys cannot fill a disk.
const DefaultDecisionLogRate = 100

// maxLoggedPath bounds the path in a log line or a span.
const maxLoggedPath = 512

// decisionLog writes one JSON line per decision, rate-limited; what the
// limit drops is counted and reported in the next line that gets through.
type decisionLog struct {
	mode    DecisionLogMode
	logger  *slog.Logger
	limit   *rate.Limiter
	dropped atomic.Uint64
	// Dropped counts every line the limit dropped.
	total atomic.Uint64
}

func newDecisionLog(mode DecisionLogMode, logger *slog.Logger, perSecond float64) *decisionLog {
	if mode == DecisionLogOff || logger == nil {
		return nil
	}
	if perSecond <= 0 {
		perSecond = DefaultDecisionLogRate
	}
	return &decisionLog{mode: mode, logger: logger, limit: rate.NewLimiter(rate.Limit(perSecond), max(1, int(perSecond)))}
}

// wants reports whether d is one the log records.
func (l *decisionLog) wants(d *Decision) bool {
	return l != nil && (l.mode == DecisionLogAll || d.Outcome != Allow)
}

// write logs d for r, or counts it as dropped.
func (l *decisionLog) write(ctx context.Context, r *Request, d *Decision, latency time.Duration) {
	if !l.limit.Allow() {
		l.dropped.Add(1)
		l.total.Add(1)
		return
	}
	if n := l.dropped.Swap(0); n > 0 {
		l.logger.LogAttrs(ctx, slog.LevelWarn, "decision log lines dropped by the rate limit", slog.Uint64("dropped", n))
	}
	attrs := [...]slog.Attr{
		slog.String("method", r.Method),
		slog.String("path", loggablePath(r.Path)),
		slog.String("request_id", r.requestID),
		slog.String("source", sourceText(r)),
		slog.String("key_id", keyID(d)),
		slog.String("account_id", accountID(d)),
		slog.String("module", d.Module),
		slog.String("outcome", d.Outcome.String()),
		slog.String("reason", d.Reason.String()),
		slog.Bool("dry_run", d.DryRun),
		slog.Float64("latency_ms", float64(latency.Microseconds())/1000),
	}
	l.logger.LogAttrs(ctx, slog.LevelInfo, "decision", attrs[:]...)
}

// loggablePath is a request target fit for logs and spans: the path
// without the query and fragment (which may carry secrets), at most
// maxLoggedPath bytes.
func loggablePath(target string) string {
	if i := strings.IndexAny(target, "?#"); i >= 0 {
		target = target[:i]
	}
	if len(target) > maxLoggedPath {
		target = target[:maxLoggedPath] + "…"
	}
	return target
}

func sourceText(r *Request) string {
	if !r.Source.IsValid() {
		return ""
	}
	return r.Source.String()
}

// loggedKey is the key a decision's log line names: the authenticated
// key, or the one found but refused (revoked, disabled, expired).
func loggedKey(d *Decision) *keystore.Record {
	if d.Key != nil {
		return d.Key
	}
	return d.found
}

func keyID(d *Decision) string {
	if k := loggedKey(d); k != nil {
		return k.ID()
	}
	return ""
}

func accountID(d *Decision) string {
	if k := loggedKey(d); k != nil {
		return k.AccountID()
	}
	return ""
}
