//go:build unix

package test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"google.golang.org/grpc/codes"

	"github.com/keygate/keygate/internal/pgtest"
)

// TestLastUsedAfterGracefulShutdown sends 10,000 allowed requests to a
// server whose periodic last-used flush is an hour away, stops it with
// SIGTERM, and checks that the shutdown flush wrote every used key's last
// use, in a handful of row updates rather than one per request.
func TestLastUsedAfterGracefulShutdown(t *testing.T) {
	const (
		requests = 10_000
		workers  = 4
		skew     = time.Second // slack between the test's clock and keygate's (the same machine's)
	)
	db := pgtest.NewDatabase(t) // counts row updates in pg_stat_user_tables
	used := make([]cliKey, 20)
	for i := range used {
		used[i] = createKey(t, db, "acme", fmt.Sprintf("used %d", i))
	}
	unused := make([]cliKey, 3)
	for i := range unused {
		unused[i] = createKey(t, db, "acme", fmt.Sprintf("unused %d", i))
	}
	pool := pgtest.Connect(t, db)
	srv := startServer(t, db, "--last-used-interval", "1h")
	updatesBefore := tupleUpdates(t, pool)

	lastSent := make([]atomic.Int64, len(used)) // unix nanoseconds of each key's last request
	var (
		next    atomic.Int64
		wg      sync.WaitGroup
		errMu   sync.Mutex
		errs    []string
		allowed atomic.Int64
	)
	loadStart := time.Now()
	for range workers {
		wg.Go(func() {
			for {
				n := next.Add(1) - 1
				if n >= requests {
					return
				}
				k := int(n % int64(len(used)))
				sent := time.Now()
				for old := lastSent[k].Load(); old < sent.UnixNano() && !lastSent[k].CompareAndSwap(old, sent.UnixNano()); old = lastSent[k].Load() {
				}
				resp, err := srv.check(keyCheck(used[k].Secret, "/api/v1/projects"), 5*time.Second)
				switch {
				case err != nil:
					errMu.Lock()
					errs = append(errs, fmt.Sprintf("request %d: gRPC error %v", n, err))
					errMu.Unlock()
				case codes.Code(resp.GetStatus().GetCode()) != codes.OK:
					errMu.Lock()
					errs = append(errs, fmt.Sprintf("request %d: %s; want allowed", n, describe(resp)))
					errMu.Unlock()
				default:
					allowed.Add(1)
				}
			}
		})
	}
	wg.Wait()
	loadTook := time.Since(loadStart)
	if len(errs) > 0 {
		t.Fatalf("%d of %d requests not allowed, first: %s", len(errs), requests, errs[0])
	}

	sigterm := time.Now()
	if err := srv.terminate(t); err != nil {
		t.Fatalf("keygate serve exited with %v after SIGTERM, want status 0", err)
	}
	exited := time.Now()
	if !srv.logs.contains(`"msg":"stopped"`) {
		t.Fatalf("no \"stopped\" log line after SIGTERM:\n%s", srv.logs.tail(10))
	}
	updatesAfter := waitTupleUpdates(t, pool, updatesBefore)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	lastUsed := map[string]*time.Time{}
	rows, err := pool.Query(ctx, `SELECT id::text, last_used_at FROM api_keys`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id string
		var at *time.Time
		if err := rows.Scan(&id, &at); err != nil {
			t.Fatal(err)
		}
		lastUsed[id] = at
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	minLead, maxLead := time.Duration(1<<62), time.Duration(-1<<62)
	for i, k := range used {
		at := lastUsed[k.ID]
		sent := time.Unix(0, lastSent[i].Load())
		switch {
		case at == nil:
			t.Errorf("used key %d (%s): last_used_at is NULL after a graceful shutdown; its last request was sent at %v", i, k.ID, sent)
			continue
		case at.Before(sent.Add(-skew)):
			t.Errorf("used key %d: last_used_at %v is %v before its last request was sent (%v): a use was lost",
				i, at.Format(time.RFC3339Nano), sent.Sub(*at), sent.Format(time.RFC3339Nano))
		case at.After(exited):
			t.Errorf("used key %d: last_used_at %v is after keygate exited (%v)", i, at.Format(time.RFC3339Nano), exited.Format(time.RFC3339Nano))
		}
		minLead, maxLead = min(minLead, at.Sub(sent)), max(maxLead, at.Sub(sent))
	}
	for i, k := range unused {
		if at := lastUsed[k.ID]; at != nil {
			t.Errorf("unused key %d: last_used_at = %v, want NULL", i, at)
		}
	}
	grew := updatesAfter - updatesBefore
	t.Logf("%d allowed requests over %d keys in %s (%.0f/s); SIGTERM → exit 0 in %s; api_keys n_tup_upd %d → %d (+%d); last_used_at − last send per key: min %s, max %s",
		allowed.Load(), len(used), ms(loadTook), float64(requests)/loadTook.Seconds(), ms(exited.Sub(sigterm)),
		updatesBefore, updatesAfter, grew, ms(minLead), ms(maxLead))
	if grew > int64(len(used)) {
		t.Errorf("api_keys rows updated %d times for %d requests over %d keys, want at most %d (no write per request)",
			grew, requests, len(used), len(used))
	}
}

// tupleUpdates reads pg_stat_user_tables.n_tup_upd of api_keys.
func tupleUpdates(tb testing.TB, pool *pgxpool.Pool) int64 {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var n int64
	if err := pool.QueryRow(ctx, `SELECT n_tup_upd FROM pg_stat_user_tables WHERE relname = 'api_keys'`).Scan(&n); err != nil {
		tb.Fatal(err)
	}
	return n
}

// waitTupleUpdates reads n_tup_upd once the statistics of keygate's
// connections have reached the shared counters: backends report them when
// they exit, shortly after keygate closes its pool. It waits for the
// counter to move from before, and to stay put for 300ms.
func waitTupleUpdates(tb testing.TB, pool *pgxpool.Pool, before int64) int64 {
	tb.Helper()
	deadline := time.Now().Add(5 * time.Second)
	n := tupleUpdates(tb, pool)
	for n == before && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
		n = tupleUpdates(tb, pool)
	}
	for {
		time.Sleep(300 * time.Millisecond)
		m := tupleUpdates(tb, pool)
		if m == n || time.Now().After(deadline) {
			return m
		}
		n = m
	}
}
