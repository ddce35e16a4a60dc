package postgres

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/keygate/keygate/keystore"
)

// This file answers lookups from read replicas (hot standbys streaming
// from the primary) without ever undoing a change by lag. A standby shows a
// committed change only once it has replayed the change's commit record,
// so every digest that changed is fenced at a position of the primary's
// write-ahead log (WAL) past that record, and a lookup of it is answered by
// a standby only once that standby has replayed at least that far; any
// other lookup needs the standby to have replayed past the floor, the
// position at which the current LISTEN session began. Everything else goes
// to the primary. See docs/scale.md.

// lsn is a position in the write-ahead log.
type lsn uint64

// never is the fence of lookups that no standby may answer: while nobody
// listens for changes, the backend cannot know which digests a standby
// might still show in an older state.
const never lsn = math.MaxUint64

// parseLSN reads PostgreSQL's text form of a position, "16/B374D848".
func parseLSN(s string) (lsn, error) {
	hi, lo, ok := strings.Cut(s, "/")
	h, err1 := strconv.ParseUint(hi, 16, 32)
	l, err2 := strconv.ParseUint(lo, 16, 32)
	if !ok || err1 != nil || err2 != nil {
		return 0, fmt.Errorf("not a WAL position: %q", s)
	}
	return lsn(h<<32 | l), nil
}

// String is PostgreSQL's text form of l.
func (l lsn) String() string { return fmt.Sprintf("%X/%X", uint64(l)>>32, uint64(l)&0xFFFFFFFF) }

// maxFences bounds the digests fenced one by one; past it they are folded
// into the floor (which only sends more lookups to the primary).
const maxFences = 100_000

// fences are the WAL positions a standby must have replayed before it may
// answer a lookup: the floor for every digest, and a higher one for each
// digest changed since.
type fences struct {
	mu       sync.Mutex
	floor    lsn
	byDigest map[keystore.Digest]lsn
}

func newFences() *fences { return &fences{floor: never, byDigest: map[keystore.Digest]lsn{}} }

// need is the position a standby must have replayed to answer a lookup of
// ds.
func (f *fences) need(ds ...keystore.Digest) lsn {
	f.mu.Lock()
	defer f.mu.Unlock()
	need := f.floor
	for _, d := range ds {
		need = max(need, f.byDigest[d])
	}
	return need
}

// floorNow is the current floor.
func (f *fences) floorNow() lsn {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.floor
}

// listening starts a LISTEN session at position at: every change
// committed before it is behind at, every later one will be announced.
func (f *fences) listening(at lsn) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.floor = at
	clear(f.byDigest)
}

// deaf ends a session: until the next, no standby answers.
func (f *fences) deaf() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.floor = never
	clear(f.byDigest)
}

// changed fences the digests of announced changes (nil: keys added in
// bulk, which raises the floor) at a position past their commits.
func (f *fences) changed(ds []keystore.Digest, bulk bool, at lsn) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.floor == never {
		return
	}
	if bulk || len(f.byDigest)+len(ds) > maxFences {
		f.floor = max(f.floor, at)
		clear(f.byDigest)
		return
	}
	for _, d := range ds {
		f.byDigest[d] = max(f.byDigest[d], at)
	}
}

// replayedBy folds the fences that every usable standby has replayed
// (those at or before pos) into the floor, keeping the map to the changes
// still in flight.
func (f *fences) replayedBy(pos lsn) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.floor == never {
		return
	}
	for d, at := range f.byDigest {
		if at <= pos {
			f.floor = max(f.floor, at)
			delete(f.byDigest, d)
		}
	}
}

// len is the number of digests fenced one by one.
func (f *fences) len() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.byDigest)
}

// standby is one read replica.
type standby struct {
	pool   *pgxpool.Pool
	where  string
	replay atomic.Uint64 // the position it had replayed at the last poll
	usable atomic.Bool   // the last poll found it a standby of the primary, lagging within bounds
	lag    atomic.Int64  // replay lag at the last poll, in nanoseconds
}

// Defaults of the read-replica options.
const (
	DefaultMaxReadLag       = 10 * time.Second
	DefaultReadPollInterval = 100 * time.Millisecond
)

// primaryIdentity is what makes a standby one of the primary's: the same
// cluster (system identifier) and the same database.
type primaryIdentity struct {
	system   uint64
	database string
}

// ReadStats are counters of the lookups and where they went.
type ReadStats struct {
	// Standby: answered by a standby; Primary: answered by the primary
	// although standbys are configured; Fenced: of those, sent to the
	// primary (or retried there) because no standby had replayed the
	// change yet; StandbyErrors: standby queries that failed.
	Standby, Primary, Fenced, StandbyErrors atomic.Uint64
}

// ReadStats returns the counters of read routing (all zero without read
// replicas).
func (b *Backend) ReadStats() *ReadStats { return &b.readStats }

// Standbys reports each read replica's state at the last poll: whether it
// is used, and its replay lag.
func (b *Backend) Standbys() []StandbyState {
	out := make([]StandbyState, len(b.standbys))
	for i, s := range b.standbys {
		out[i] = StandbyState{Where: s.where, Usable: s.usable.Load(), Lag: time.Duration(s.lag.Load())}
	}
	return out
}

// StandbyState is a read replica's state at the last poll.
type StandbyState struct {
	Where  string
	Usable bool
	Lag    time.Duration
}

// pollStandbys asks every standby where it is, every interval, until ctx
// ends; a standby that does not answer, is not in recovery, belongs to
// another cluster or database, or lags more than the bound is not used
// until a later poll finds it fit. Fences every usable standby has passed
// are folded into the floor.
func (b *Backend) pollStandbys(ctx context.Context, primary primaryIdentity) {
	t := time.NewTicker(b.readPollInterval)
	defer t.Stop()
	for {
		// Each standby in a goroutine of its own: one that hangs delays
		// only its own position.
		var wg sync.WaitGroup
		for _, s := range b.standbys {
			wg.Go(func() { b.pollStandby(ctx, s, primary) })
		}
		wg.Wait()
		lowest := never
		for _, s := range b.standbys {
			if s.usable.Load() {
				lowest = min(lowest, lsn(s.replay.Load()))
			}
		}
		if lowest != never {
			b.fences.replayedBy(lowest)
		}
		select {
		case <-ctx.Done():
			for _, s := range b.standbys {
				s.usable.Store(false)
			}
			return
		case <-t.C:
		}
	}
}

// pollStandby polls one standby and records whether it is usable.
func (b *Backend) pollStandby(ctx context.Context, s *standby, primary primaryIdentity) {
	ctx, cancel := context.WithTimeout(ctx, max(b.readPollInterval, time.Second))
	defer cancel()
	st, err := standbyStatus(ctx, s.pool)
	usable := err == nil && st.inRecovery && st.identity == primary && st.lag <= b.maxReadLag
	if err == nil {
		s.replay.Store(uint64(st.replay))
		s.lag.Store(int64(st.lag))
	}
	s.usable.Store(usable)
}

// standbyState is what a read replica says of itself.
type standbyState struct {
	inRecovery bool
	replay     lsn
	lag        time.Duration
	identity   primaryIdentity
}

// standbyStatus asks a server whether it is a standby, how far it has
// replayed, how far behind what it has received it is (0 when it has
// replayed all it received), and which cluster and database it is.
func standbyStatus(ctx context.Context, q querier) (standbyState, error) {
	var st standbyState
	var replay *string
	var lagSeconds float64
	rows, err := q.Query(ctx, `SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn()::text,
		CASE WHEN pg_last_wal_receive_lsn() IS NULL OR pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0
			ELSE coalesce(extract(epoch FROM now() - pg_last_xact_replay_timestamp()), 0) END::float8,
		(SELECT system_identifier FROM pg_control_system()), current_database()`, pgx.QueryExecModeSimpleProtocol)
	if err == nil {
		_, err = pgx.ForEachRow(rows, []any{&st.inRecovery, &replay, &lagSeconds, &st.identity.system, &st.identity.database}, func() error { return nil })
	}
	if err != nil {
		return st, err
	}
	if replay != nil {
		if st.replay, err = parseLSN(*replay); err != nil {
			return st, err
		}
	}
	st.lag = time.Duration(max(0, lagSeconds) * float64(time.Second))
	return st, nil
}

// identity is the primary's cluster and database, and its WAL insert
// position: every change committed so far is behind it. Like every query
// without parameters here, it uses the simple protocol, which works
// whatever the pool's statement mode and pooler.
func identity(ctx context.Context, q querier) (primaryIdentity, lsn, error) {
	var id primaryIdentity
	var at string
	rows, err := q.Query(ctx, `SELECT (SELECT system_identifier FROM pg_control_system()), current_database(),
		pg_current_wal_insert_lsn()::text`, pgx.QueryExecModeSimpleProtocol)
	if err == nil {
		_, err = pgx.ForEachRow(rows, []any{&id.system, &id.database, &at}, func() error { return nil })
	}
	if err != nil {
		return id, 0, err
	}
	pos, err := parseLSN(at)
	return id, pos, err
}

// walPosition is the primary's WAL insert position.
func walPosition(ctx context.Context, pool *pgxpool.Pool) (lsn, error) {
	var at string
	if err := pool.QueryRow(ctx, `SELECT pg_current_wal_insert_lsn()::text`).Scan(&at); err != nil {
		return 0, err
	}
	return parseLSN(at)
}

// pickStandby chooses the standby for a lookup that needs position need:
// a usable one known to have replayed it (in turn, to spread the load),
// else the usable one furthest ahead, which is asked anyway (it has
// likely replayed it since the last poll); nil when none is usable or no
// standby may answer at all.
func (b *Backend) pickStandby(need lsn) *standby {
	if need == never || len(b.standbys) == 0 {
		return nil
	}
	start := int(b.nextStandby.Add(1))
	var ahead *standby
	for i := range b.standbys {
		s := b.standbys[(start+i)%len(b.standbys)]
		if !s.usable.Load() {
			continue
		}
		if lsn(s.replay.Load()) >= need {
			return s
		}
		if ahead == nil || s.replay.Load() > ahead.replay.Load() {
			ahead = s
		}
	}
	return ahead
}

// errBehind: the standby asked had not replayed the fence yet.
var errBehind = errors.New("the standby has not replayed the change yet")

// onStandby runs a read on a standby chosen for position need, after
// checking in the same round trip that the standby has replayed it: the
// check runs first, and the read's snapshot is taken after it, so the read
// sees every change committed before need. It returns errBehind when the
// standby had not, or no standby can answer (the caller then asks the
// primary).
func (b *Backend) onStandby(ctx context.Context, need lsn, read func(pgx.Rows) error, sql string, args ...any) error {
	s := b.pickStandby(need)
	if s == nil {
		return errBehind
	}
	batch := &pgx.Batch{}
	batch.Queue(`SELECT coalesce(pg_last_wal_replay_lsn() >= $1::text::pg_lsn, false)`, need.String())
	batch.Queue(sql, args...)
	results := s.pool.SendBatch(ctx, batch)
	var replayed bool
	err := results.QueryRow().Scan(&replayed)
	if err == nil && replayed {
		var rows pgx.Rows
		if rows, err = results.Query(); err == nil {
			err = read(rows)
		}
	}
	if cerr := results.Close(); err == nil {
		err = cerr
	}
	switch {
	case err != nil && !errors.Is(err, pgx.ErrNoRows):
		b.readStats.StandbyErrors.Add(1)
		return errBehind
	case !replayed:
		return errBehind
	}
	b.readStats.Standby.Add(1)
	return err
}

// read runs a decision-path read of ds on a standby that has replayed
// every change to them, or on the primary.
func (b *Backend) read(ctx context.Context, ds []keystore.Digest, read func(pgx.Rows) error, sql string, args ...any) error {
	if len(b.standbys) > 0 {
		need := b.fences.need(ds...)
		if b.unfenced { // tests only: what lag does without the fences
			need = 0
		}
		err := b.onStandby(ctx, need, read, sql, args...)
		if !errors.Is(err, errBehind) {
			return err
		}
		b.readStats.Primary.Add(1)
		if need != b.fences.floorNow() {
			b.readStats.Fenced.Add(1)
		}
	}
	return b.queryPrimary(ctx, read, sql, args...)
}

// SplitHosts returns one pool configuration per host of cfg (a URL with
// several hosts, "postgres://a,b:5433/db", is one configuration with
// fallbacks): the read replicas are polled and chosen one by one, where a
// multi-host pool would only ever use the first that answers. Each keeps
// its host's own fallbacks (sslmode=prefer tries TLS, then plain).
func SplitHosts(cfg *pgxpool.Config) []*pgxpool.Config {
	type target struct {
		host string
		port uint16
	}
	var order []target
	variants := map[target][]*pgconn.FallbackConfig{}
	all := append([]*pgconn.FallbackConfig{{Host: cfg.ConnConfig.Host, Port: cfg.ConnConfig.Port, TLSConfig: cfg.ConnConfig.TLSConfig}},
		cfg.ConnConfig.Fallbacks...)
	for _, fb := range all {
		t := target{fb.Host, fb.Port}
		if _, seen := variants[t]; !seen {
			order = append(order, t)
		}
		variants[t] = append(variants[t], fb)
	}
	out := make([]*pgxpool.Config, 0, len(order))
	for _, t := range order {
		c := cfg.Copy()
		first := variants[t][0]
		c.ConnConfig.Host, c.ConnConfig.Port, c.ConnConfig.TLSConfig = first.Host, first.Port, first.TLSConfig
		c.ConnConfig.Fallbacks = variants[t][1:]
		out = append(out, c)
	}
	return out
}

// oneLine flattens an error for a one-line message.
func oneLine(err error) string { return strings.Join(strings.Fields(err.Error()), " ") }
