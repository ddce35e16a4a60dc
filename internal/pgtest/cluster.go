package pgtest

import (
	"testing"

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
