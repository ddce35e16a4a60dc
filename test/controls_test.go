//go:build unix

package test

import (
	"fmt"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/keygate/keygate/internal/pgtest"
)

// TestReplicasSeeDisableEnable runs three replicas on one database and
// measures how long `keygate keys disable` and `keys enable` take to reach
// each of them: a disabled key is refused (401) and an enabled one allowed
// again on every replica within the revocation bound (DESIGN.md §6).
func TestReplicasSeeDisableEnable(t *testing.T) {
	const (
		trials = 8
		bound  = time.Second // DESIGN.md §6: p99 across replicas
	)
	db := pgtest.NewDatabase(t)
	replicas := make([]*server, 3)
	for i := range replicas {
		replicas[i] = startServer(t, db)
	}
	var disabled, enabled []time.Duration
	for trial := range trials {
		k := createKey(t, db, "acme", fmt.Sprintf("trial %d", trial))
		req := keyCheck(k.Secret, "/api/v1/projects")
		for _, r := range replicas {
			cacheKey(t, r, req)
		}
		cli(t, db, "keys", "disable", k.ID)
		returned := time.Now()
		for i, d := range waitSwitch(replicas, req, codes.OK, codes.Unauthenticated, 5*time.Second) {
			if d.err != nil {
				t.Fatalf("trial %d: disabled key on replica %d: %v", trial, i, d.err)
			}
			disabled = append(disabled, d.at.Sub(returned))
		}
		cli(t, db, "keys", "enable", k.ID)
		returned = time.Now()
		for i, d := range waitSwitch(replicas, req, codes.Unauthenticated, codes.OK, 5*time.Second) {
			if d.err != nil {
				t.Fatalf("trial %d: enabled key on replica %d: %v", trial, i, d.err)
			}
			enabled = append(enabled, d.at.Sub(returned))
		}
	}
	for _, m := range []struct {
		what string
		ds   []time.Duration
	}{{"keys disable → refused", disabled}, {"keys enable → allowed", enabled}} {
		p50, p99 := percentile(m.ds, 50), percentile(m.ds, 99)
		t.Logf("%s on every replica, %d samples, from the CLI returning: p50 %s, p99 %s, max %s",
			m.what, len(m.ds), ms(p50), ms(p99), ms(percentile(m.ds, 100)))
		if p99 > bound {
			t.Errorf("%s: p99 across replicas %v, want ≤ %v", m.what, p99, bound)
		}
	}
	// The refusals were counted with their own reason.
	if n := replicas[0].metric(t, `keygate_decisions_total{code="invalid_api_key",dry_run="false",reason="disabled"}`); n < 1 {
		t.Errorf("keygate_decisions_total{reason=\"disabled\"} = %v", n)
	}
}
