package pgtest

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/keygate/keygate/internal/pgcluster"
)

// Cluster is a PostgreSQL cluster of one test's own, which it may stop and
// start.
type Cluster struct{ *pgcluster.Cluster }

// NewCluster starts a cluster that only this test uses, so that the test
// may stop and start it. It is stopped and deleted when the test ends.
func NewCluster(tb testing.TB) *Cluster {
	tb.Helper()
	c, err := pgcluster.Start()
	if err != nil {
		missing(tb, err)
	}
	tb.Cleanup(c.Destroy)
	return &Cluster{c}
}

// Stop shuts the cluster down at once, as a crash or an outage would.
func (c *Cluster) Stop(tb testing.TB) {
	tb.Helper()
	if err := c.Cluster.Stop(); err != nil {
		tb.Fatalf("pgtest: stopping cluster: %v", err)
	}
}

// Start starts the stopped cluster again on the same port.
func (c *Cluster) Start(tb testing.TB) {
	tb.Helper()
	if err := c.Cluster.Start(); err != nil {
		tb.Fatalf("pgtest: starting cluster: %v", err)
	}
}

// Dump returns a plain-text pg_dump of the database at url.
func Dump(tb testing.TB, url string) []byte {
	tb.Helper()
	out, err := pgcluster.Dump(url)
	if err != nil {
		tb.Fatalf("pgtest: %v", err)
	}
	return out
}

// NewStandby starts a hot standby of c, copied with pg_basebackup and
// streaming from it, replaying each commit applyDelay after it arrives
// (recovery_min_apply_delay; 0: at once). It is stopped and deleted when
// the test ends.
func (c *Cluster) NewStandby(tb testing.TB, applyDelay time.Duration) *Cluster {
	tb.Helper()
	s, err := pgcluster.StartStandby(c.Cluster, pgcluster.StandbyOptions{ApplyDelay: applyDelay})
	if err != nil {
		tb.Fatalf("pgtest: starting a standby: %v", err)
	}
	tb.Cleanup(s.Destroy)
	return &Cluster{s}
}

// Promote makes a standby the primary and waits until it accepts writes.
func (c *Cluster) Promote(tb testing.TB) {
	tb.Helper()
	if err := c.Cluster.Promote(); err != nil {
		tb.Fatalf("pgtest: promoting: %v", err)
	}
}

// StopClean shuts the cluster down cleanly, its standbys receiving all it
// wrote, as a planned switchover does.
func (c *Cluster) StopClean(tb testing.TB) {
	tb.Helper()
	if err := c.Cluster.StopClean(); err != nil {
		tb.Fatalf("pgtest: stopping cluster: %v", err)
	}
}

// WaitReplayed waits until standby has replayed everything c had written
// when it was called.
func (c *Cluster) WaitReplayed(tb testing.TB, standby *Cluster, within time.Duration) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	var target string
	if err := queryRow(ctx, c.URL(), `SELECT pg_current_wal_insert_lsn()::text`, &target); err != nil {
		tb.Fatalf("pgtest: %v", err)
	}
	for {
		var done bool
		err := queryRow(ctx, standby.URL(), `SELECT coalesce(pg_last_wal_replay_lsn() >= $1::text::pg_lsn, false)`, &done, target)
		if err == nil && done {
			return
		}
		select {
		case <-ctx.Done():
			tb.Fatalf("pgtest: the standby has not replayed %s within %v (%v)", target, within, err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func queryRow(ctx context.Context, url, sql string, dest any, args ...any) error {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	return conn.QueryRow(ctx, sql, args...).Scan(dest)
}
