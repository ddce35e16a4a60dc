//go:build unix

package test

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/pgtest"
	"github.com/keygate/keygate/internal/redistest"
	"github.com/keygate/keygate/internal/waittest"
)

// limitLoad is how long each phase of TestLimitsAcrossReplicas sends load:
// KEYGATE_LIMITS_LOAD (a duration, like 60s) for the measurement the
// documentation quotes, 3s by default so that CI's run stays short.
func limitLoad(tb testing.TB) time.Duration {
	if v := os.Getenv("KEYGATE_LIMITS_LOAD"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			tb.Fatalf("KEYGATE_LIMITS_LOAD=%q: want a duration like 60s", v)
		}
		return d
	}
	return 3 * time.Second
}

// TestLimitsAcrossReplicas: three replicas share one key's limit. Through
// redis the allowed requests are within 2% of what the limit allows over
// the run (burst + rate × time); through local (each replica its share,
// the replicas counted by the heartbeat) within the stated bound; and with
// Redis stopped mid-run the fallback decides, counted in metrics, and the
// replicas go back to Redis when it returns.
func TestLimitsAcrossReplicas(t *testing.T) {
	srv := redistest.Start(t)
	db := pgtest.NewDatabase(t)
	cli(t, db, "migrate")
	d := limitLoad(t)
	const rate, burst = 50, 10 // the key's limit: 50/s, bursts of 10
	common := []string{"--last-used-interval", "1s", "--heartbeat-interval", "1s"}

	t.Run("redis", func(t *testing.T) {
		key := createKey(t, db, "acme", "shared", "--limit", fmt.Sprintf("%d/s,burst=%d", rate, burst))
		replicas := startReplicas(t, db, append(common, "--limit-store", "redis", "--redis-url", srv.URL())...)
		allowed, sent, took := loadReplicas(t, replicas, key.Secret, d, 4*rate)
		want := burst + rate*took.Seconds()
		var fallbacks float64
		for _, r := range replicas {
			fallbacks += metric(t, r, "keygate_limit_fallback_total")
		}
		t.Logf("redis, 3 replicas, %v at %d/s offered: %d of %d allowed; the limit allows %.0f (%+.2f%%); %.0f decisions by the fallback",
			took.Round(time.Millisecond), sent*int(time.Second)/int(took), allowed, sent, want, 100*(float64(allowed)-want)/want, fallbacks)
		if diff := (float64(allowed) - want) / want; diff > 0.02 || diff < -0.02 {
			t.Fatalf("redis: %d allowed, the limit allows %.0f: off by %.1f%%, want within 2%%", allowed, want, 100*diff)
		}
	})
	t.Run("local", func(t *testing.T) {
		key := createKey(t, db, "acme", "local", "--limit", fmt.Sprintf("%d/s,burst=%d", rate, burst))
		replicas := startReplicas(t, db, common...)
		for _, r := range replicas {
			waittest.Until(t, 10*time.Second, "every replica counting three", func() bool { return metric(t, r, "keygate_limit_replicas") == 3 })
		}
		allowed, sent, took := loadReplicas(t, replicas, key.Secret, d, 4*rate)
		// The bound (limits.Local): spread evenly, each replica lets
		// through its third of the rate and of the burst (rounded up).
		perReplicaBurst := (burst + 2) / 3
		upper := float64(3*perReplicaBurst) + rate*took.Seconds()
		lower := 0.98 * rate * took.Seconds()
		t.Logf("local, 3 replicas, %v: %d of %d allowed; the bound is %.0f to %.0f (the limit allows %.0f)",
			took.Round(time.Millisecond), allowed, sent, lower, upper, burst+rate*took.Seconds())
		if float64(allowed) > upper*1.02 || float64(allowed) < lower {
			t.Fatalf("local: %d allowed, outside the bound %.0f to %.0f", allowed, lower, upper)
		}
	})
	t.Run("redis stopped", func(t *testing.T) {
		key := createKey(t, db, "acme", "outage", "--limit", fmt.Sprintf("%d/s,burst=%d", rate, burst))
		replicas := startReplicas(t, db, append(common, "--limit-store", "redis", "--redis-url", srv.URL(), "--limit-fallback", "local")...)
		for _, r := range replicas {
			waittest.Until(t, 10*time.Second, "every replica counting three", func() bool { return metric(t, r, "keygate_limit_replicas") == 3 })
		}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go func() {
			select {
			case <-time.After(d / 3):
				srv.Stop()
			case <-ctx.Done():
			}
		}()
		allowed, sent, took := loadReplicas(t, replicas, key.Secret, d, 4*rate)
		cancel()
		var fallbacks, errs float64
		for _, r := range replicas {
			fallbacks += metric(t, r, "keygate_limit_fallback_total")
			errs += metric(t, r, "keygate_limit_store_errors_total")
		}
		want := burst + rate*took.Seconds()
		t.Logf("Redis stopped after %v of %v: %d of %d allowed (the limit allows %.0f); %.0f decisions by the local fallback, %.0f store errors",
			(d / 3).Round(time.Millisecond), took.Round(time.Millisecond), allowed, sent, want, fallbacks, errs)
		if fallbacks == 0 || errs == 0 {
			t.Fatalf("with Redis stopped: %v fallback decisions, %v store errors counted; want both", fallbacks, errs)
		}
		if float64(allowed) > want*1.1+float64(3*burst) {
			t.Fatalf("with Redis stopped: %d allowed, far over the %.0f the limit allows", allowed, want)
		}
		srv.Restart()
		before := 0.0
		for _, r := range replicas {
			before += metric(t, r, "keygate_limit_fallback_total")
		}
		time.Sleep(1200 * time.Millisecond) // past the retry interval
		loadReplicas(t, replicas, key.Secret, 500*time.Millisecond, rate)
		after := 0.0
		for _, r := range replicas {
			after += metric(t, r, "keygate_limit_fallback_total")
		}
		if after != before {
			t.Fatalf("with Redis back: %v more fallback decisions, want none", after-before)
		}
	})
}

// startReplicas starts three keygate serve processes on one database.
func startReplicas(tb testing.TB, db string, flags ...string) []*server {
	tb.Helper()
	var out []*server
	for range 3 {
		out = append(out, startServer(tb, db, flags...))
	}
	return out
}

// loadReplicas sends forward-auth requests for secret to the replicas in
// turn at about perSecond a second for d, and returns how many were
// allowed (200), how many were sent, and how long from the first to the
// last.
func loadReplicas(tb testing.TB, replicas []*server, secret string, d time.Duration, perSecond int) (allowed, sent int, took time.Duration) {
	tb.Helper()
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	var ok, all, other atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	const workers = 8
	interval := time.Duration(workers) * time.Second / time.Duration(perSecond)
	for w := range workers {
		wg.Go(func() {
			next := start.Add(time.Duration(w) * interval / workers)
			for i := w; time.Since(start) < d; i++ {
				time.Sleep(time.Until(next))
				next = next.Add(interval)
				r := replicas[i%len(replicas)]
				req, _ := http.NewRequest("GET", "http://"+r.httpAddr+"/auth", nil)
				req.Header.Set("X-Forwarded-Method", "GET")
				req.Header.Set("X-Forwarded-Uri", "/api/v1/projects")
				req.Header.Set("X-API-Key", secret)
				resp, err := client.Do(req)
				if err != nil {
					other.Add(1)
					continue
				}
				resp.Body.Close()
				all.Add(1)
				switch resp.StatusCode {
				case 200:
					ok.Add(1)
				case 429:
				default:
					other.Add(1)
				}
			}
		})
	}
	wg.Wait()
	took = time.Since(start)
	if n := other.Load(); n > 0 {
		tb.Errorf("%d requests failed or got neither 200 nor 429", n)
	}
	return int(ok.Load()), int(all.Load()), took
}

// metric reads one unlabeled metric of a replica's /metrics.
func metric(tb testing.TB, r *server, name string) float64 {
	tb.Helper()
	resp, err := http.Get("http://" + r.httpAddr + "/metrics")
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				tb.Fatal(err)
			}
			return f
		}
	}
	return -1
}
