package postgres

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/keygate/keygate/keystore"
)

// Listen holds a LISTEN connection of its own (Options.Direct) for as long
// as ctx lasts and the connection works: LISTEN first, then listening,
// then every notification, pinging the connection when it is quiet so
// that a dead one is noticed within the ping interval.
func (b *Backend) Listen(ctx context.Context, listening func() error, deliver func(keystore.Notice)) error {
	connectCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	conn, err := pgx.ConnectConfig(connectCtx, b.direct)
	cancel()
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "LISTEN "+NotifyChannel); err != nil {
		return err
	}
	if err := listening(); err != nil {
		return err
	}
	for {
		waitCtx, cancel := context.WithTimeout(ctx, b.pingInterval)
		n, err := conn.WaitForNotification(waitCtx)
		cancel()
		switch {
		case err == nil:
			if notice, ok := parseNotice(n.Payload); ok {
				deliver(notice)
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
