package postgres

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/keygate/keygate/keystore"
)

// Listen holds a LISTEN connection of its own (Options.Direct) for as long
// as ctx lasts and the connection works: LISTEN first, then a probe that
// the connection really receives notifications (ProbeListen), then
// listening, then every notification, pinging the connection when it is
// quiet so that a dead one is noticed within the ping interval.
//
// With read replicas, each session also fences: it starts at the
// primary's WAL position (every earlier change is behind it), and every
// notice is fenced at a position read after it arrived, so past its
// commit, before it is delivered; the standbys are polled meanwhile.
// Between sessions no standby answers.
func (b *Backend) Listen(ctx context.Context, listening func() error, deliver func(keystore.Notice)) error {
	conn, early, err := b.listenConn(ctx, NotifyChannel)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	if len(b.standbys) > 0 {
		primary, at, err := identity(ctx, b.pool)
		if err != nil {
			return err
		}
		b.fences.listening(at)
		defer b.fences.deaf()
		pollCtx, stop := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { defer close(done); b.pollStandbys(pollCtx, primary) }()
		defer func() { stop(); <-done }()
	}
	if err := listening(); err != nil {
		return err
	}
	if len(early) > 0 {
		if err := b.deliver(ctx, conn, early, deliver); err != nil {
			return err
		}
	}
	for {
		waitCtx, cancel := context.WithTimeout(ctx, b.pingInterval)
		n, err := conn.WaitForNotification(waitCtx)
		cancel()
		switch {
		case err == nil:
			if err := b.deliver(ctx, conn, []*pgconn.Notification{n}, deliver); err != nil {
				return err
			}
			continue
		case ctx.Err() != nil:
			return nil
		case !errors.Is(err, context.DeadlineExceeded):
			return err
		}
		// Quiet for a while: make sure the connection is still there.
		pingCtx, cancel := context.WithTimeout(ctx, b.pingInterval)
		err = conn.Ping(pingCtx)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("listener connection is dead: %w", err)
		}
	}
}

// deliver hands over the notifications in batch and those received with
// them. With read replicas it first reads the primary's WAL position, which is
// past the commit of every change announced so far (a notification is
// sent once its transaction has committed), and fences their digests
// there; the position the writer could read inside its transaction would
// be before its commit record, which a standby may not have replayed.
func (b *Backend) deliver(ctx context.Context, conn *pgx.Conn, batch []*pgconn.Notification, deliver func(keystore.Notice)) error {
	if len(b.standbys) > 0 {
		// Take the notifications received already, without waiting.
		done, cancel := context.WithCancel(ctx)
		cancel()
		for {
			more, err := conn.WaitForNotification(done)
			if err != nil || more == nil {
				break
			}
			batch = append(batch, more)
		}
	}
	notices := make([]keystore.Notice, 0, len(batch))
	for _, n := range batch {
		if notice, ok := parseNotice(n.Payload); ok && n.Channel == NotifyChannel {
			notices = append(notices, notice)
		}
	}
	if len(b.standbys) > 0 && len(notices) > 0 {
		posCtx, cancel := context.WithTimeout(ctx, b.pingInterval)
		at, err := walPosition(posCtx, b.pool)
		cancel()
		if err != nil {
			// No fence to give: no standby answers until the next
			// session, and the cache still learns of the changes.
			b.fences.deaf()
			for _, n := range notices {
				deliver(n)
			}
			return err
		}
		var ds []keystore.Digest
		bulk := false
		for _, n := range notices {
			bulk = bulk || n.Added
			ds = append(ds, n.Digest)
		}
		b.fences.changed(ds, bulk, at)
	}
	for _, n := range notices {
		deliver(n)
	}
	return nil
}

// listenProbeTimeout bounds the wait for the probe's notification.
const listenProbeTimeout = 3 * time.Second

// ErrListenProbe: a notification sent to the LISTEN connection did not
// reach it, as happens through a pooler in transaction mode (PgBouncer
// gives the connection's server session to other clients between
// transactions, and notifications reach whichever session listened).
var ErrListenProbe = errors.New("keystore: a notification sent to the listen connection did not arrive: " +
	"LISTEN needs a direct connection to PostgreSQL (or PgBouncer in session mode), not PgBouncer in transaction mode")

// listenConn connects with Options.Direct, listens on channel, and proves
// it: it sends a notification from the pool (as a writer would) to a
// channel of its own and waits for it, so that a connection that cannot
// receive notifications fails here (ErrListenProbe) instead of missing
// every change quietly. It returns the notifications on channel that
// arrived meanwhile.
func (b *Backend) listenConn(ctx context.Context, channel string) (*pgx.Conn, []*pgconn.Notification, error) {
	connectCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	conn, err := pgx.ConnectConfig(connectCtx, b.direct)
	cancel()
	if err != nil {
		return nil, nil, err
	}
	probe := "keygate_probe_" + strconv.FormatUint(rand.Uint64(), 36)
	var early []*pgconn.Notification
	err = func() error {
		// The probe's channel first, so that the session's last statement
		// is the LISTEN that matters (what pg_stat_activity shows).
		for _, c := range []string{probe, channel} {
			if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{c}.Sanitize()); err != nil {
				return err
			}
		}
		// Not prepared, whatever the pool's mode: this must work where
		// the pool's other statements might not (Check reports those).
		if _, err := b.pool.Exec(ctx, `SELECT pg_notify($1, '')`, pgx.QueryExecModeExec, probe); err != nil {
			return err
		}
		waitCtx, cancel := context.WithTimeout(ctx, listenProbeTimeout)
		defer cancel()
		for {
			n, err := conn.WaitForNotification(waitCtx)
			switch {
			case err == nil && n.Channel == probe:
				return nil
			case err == nil:
				early = append(early, n) // a change announced meanwhile
				continue
			case ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded):
				return ErrListenProbe
			}
			return err
		}
	}()
	if err != nil {
		conn.Close(context.Background())
		return nil, nil, err
	}
	return conn, early, nil
}

// ProbeListen checks that the LISTEN connection (Options.Direct) receives
// the notifications the pool sends: ErrListenProbe if not.
func (b *Backend) ProbeListen(ctx context.Context) error {
	conn, _, err := b.listenConn(ctx, NotifyChannel)
	if err != nil {
		return err
	}
	return conn.Close(ctx)
}

// parseNotice reads a notification's payload: the hex digest of a changed
// key (or addedPayload), "@", and the database time of the change in unix
// microseconds; a bare digest, from an older keygate, is read too.
func parseNotice(payload string) (keystore.Notice, bool) {
	what, stamp, stamped := strings.Cut(payload, "@")
	var n keystore.Notice
	if us, err := strconv.ParseInt(stamp, 10, 64); stamped && err == nil {
		n.At = time.UnixMicro(us)
	}
	if what == addedPayload {
		n.Added = true
		return n, true
	}
	b, err := hex.DecodeString(what)
	if err != nil || len(b) != len(n.Digest) {
		return n, false
	}
	copy(n.Digest[:], b)
	return n, true
}
