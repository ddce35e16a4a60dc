//go:build unix

package test

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/keygate/keygate/internal/pgtest"
	"github.com/keygate/keygate/internal/storetest"
)

// keyKind is what the load knows about a key it sends.
type keyKind int

const (
	validCached   keyKind = iota // valid, used before the outage
	validUncached                // valid, first used while the database is down
	revoked
	expired
	expiring  // valid and cached, expires while the database is down
	unknown   // well formed, from another database
	malformed // bad shape or checksum
	numKinds
)

var kindNames = [numKinds]string{"valid cached", "valid uncached", "revoked", "expired", "expiring", "unknown", "malformed"}

// outagePhase is where in the test a Check was sent.
type outagePhase int

const (
	phaseBefore outagePhase = iota // database up
	phaseStop                      // pg_ctl stop running
	phaseDown                      // database stopped
	phaseStart                     // pg_ctl start running
	phaseAfter                     // database back
	numPhases
)

var phaseNames = [numPhases]string{"before", "stopping", "down", "starting", "after"}

// call is one Check of the load.
type call struct {
	kind     keyKind
	key      int // index in the load's key list
	sent     time.Time
	took     time.Duration
	code     codes.Code // the CheckResponse status
	httpCode int32      // the denied response's HTTP status, 0 if allowed
	err      error      // a gRPC error: keygate must never answer with one
}

// TestDatabaseOutageUnderLoad stops the database for 10s under a steady
// load of every kind of key, and checks DESIGN.md §6: cached valid keys
// keep working, uncached ones get 503, nothing invalid is ever allowed,
// every Check answers well inside Envoy's 200ms, health follows the
// database, and recovery takes seconds.
func TestDatabaseOutageUnderLoad(t *testing.T) {
	const (
		workers     = 8
		think       = 5 * time.Millisecond // pause between one worker's Checks
		callTimeout = time.Second          // generous, so that slow answers are measured, not cut
		// Envoy's default ext_authz timeout: an answer later than this
		// is a failure to Envoy. keygate's own decisions end at its
		// lookup deadline (100ms) plus the work around the lookup,
		// checked below from its histogram; the client's clock adds
		// this machine's scheduling.
		maxLatency     = 200 * time.Millisecond
		outage         = 10 * time.Second
		recoveryBound  = 5 * time.Second
		validCachedN   = 20
		validUncachedN = 3
	)
	cluster := pgtest.NewCluster(t)
	db := cluster.URL()
	cli(t, db, "migrate")

	type loadKey struct {
		kind keyKind
		req  *authv3.CheckRequest
	}
	var keys []loadKey
	add := func(kind keyKind, secret string) {
		keys = append(keys, loadKey{kind, keyCheck(secret, fmt.Sprintf("/api/v1/projects/%d", len(keys)))})
	}
	// Expired keys first, so that they have expired by the time the rest exist.
	var expiredAt time.Time
	for i := range 3 {
		k := createExpiringKey(t, db, "acme", fmt.Sprintf("expired %d", i), -time.Second)
		add(expired, k.Secret)
		expiredAt = *k.ExpiresAt
	}
	for i := range validCachedN {
		add(validCached, createKey(t, db, "acme", fmt.Sprintf("cached %d", i)).Secret)
	}
	for i := range validUncachedN {
		add(validUncached, createKey(t, db, "acme", fmt.Sprintf("uncached %d", i)).Secret)
	}
	for i := range 3 {
		k := createKey(t, db, "acme", fmt.Sprintf("revoked %d", i))
		revokeKey(t, db, k.ID)
		add(revoked, k.Secret)
	}
	other := storetest.NewDatabase(t)
	var sample string
	for i := range 3 {
		sample = createKey(t, other, "acme", fmt.Sprintf("elsewhere %d", i)).Secret
		add(unknown, sample)
	}
	flipped := []byte(sample)
	flipped[len(flipped)-1] ^= 1 // a typo: the checksum no longer matches
	for _, s := range []string{string(flipped), sample[:len(sample)-2], "kg_", "not-an-api-key"} {
		add(malformed, s)
	}
	keys = append(keys, loadKey{malformed, envoyCheck("GET", "/api/v1/projects", map[string]string{"authorization": "Bearer " + string(flipped)}, nil)})
	// Expiry is checked on every decision, also from the cache: this key
	// is to expire 5s into the outage, which is scheduled accordingly.
	expiringKey := createExpiringKey(t, db, "acme", "expiring", 10*time.Second)
	expiresAt := *expiringKey.ExpiresAt
	add(expiring, expiringKey.Secret)

	srv := startServer(t, db, "--cache-fresh", "2s", "--cache-max-stale", "1m", "--lookup-timeout", "100ms")
	time.Sleep(time.Until(expiredAt.Add(50 * time.Millisecond)))
	// Warm the cache: every key but the uncached ones, once.
	for i, k := range keys {
		if k.kind == validUncached {
			continue
		}
		want := codes.Unauthenticated
		if k.kind == validCached || k.kind == expiring {
			want = codes.OK
		}
		if code, resp := srv.mustCheck(t, k.req); code != want {
			t.Fatalf("warming: key %d (%s): %s; want %v", i, kindNames[k.kind], describe(resp), want)
		}
	}

	// The load: closed loop, each worker one Check at a time.
	var (
		mu       sync.Mutex
		calls    []call
		next     atomic.Uint64
		uncached atomic.Bool // send the uncached keys too (only once the database is down)
		stop     = make(chan struct{})
		wg       sync.WaitGroup
	)
	loadStart := time.Now()
	for range workers {
		wg.Go(func() {
			var mine []call
			defer func() {
				mu.Lock()
				calls = append(calls, mine...)
				mu.Unlock()
			}()
			for {
				select {
				case <-stop:
					return
				default:
				}
				i := int(next.Add(1) % uint64(len(keys)))
				k := keys[i]
				if k.kind == validUncached && !uncached.Load() {
					continue
				}
				c := call{kind: k.kind, key: i, sent: time.Now()}
				resp, err := srv.check(k.req, callTimeout)
				c.took = time.Since(c.sent)
				c.err = err
				c.code = codes.Code(resp.GetStatus().GetCode())
				c.httpCode = int32(resp.GetDeniedResponse().GetStatus().GetCode())
				mine = append(mine, c)
				time.Sleep(think)
			}
		})
	}
	// Health, polled every 100ms.
	type healthSample struct {
		at     time.Time
		status healthpb.HealthCheckResponse_ServingStatus
	}
	var healths []healthSample
	healthDone := make(chan struct{})
	go func() {
		defer close(healthDone)
		for {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
			healths = append(healths, healthSample{time.Now(), srv.healthStatus()})
		}
	}()

	// Stop the load and the health poll when the test ends, also early.
	stopLoad := sync.OnceFunc(func() {
		close(stop)
		wg.Wait()
		<-healthDone
	})
	defer stopLoad()

	// Load with the database up for at least 2s (past --cache-fresh: the
	// cache refreshes in the background), and until the expiring key has 5s
	// left.
	time.Sleep(max(2*time.Second, time.Until(expiresAt.Add(-outage/2))))
	stopBegin := time.Now()
	cluster.Stop(t)
	stopped := time.Now()
	uncached.Store(true)
	time.Sleep(outage / 2)
	readyDown, _ := srv.httpGet(t, "/readyz")
	// One 503 in full: the denial Envoy sends the client.
	for i, k := range keys {
		if k.kind != validUncached {
			continue
		}
		code, resp := srv.mustCheck(t, k.req)
		headers := map[string]string{}
		for _, h := range resp.GetDeniedResponse().GetHeaders() {
			headers[h.GetHeader().GetKey()] = h.GetHeader().GetValue()
		}
		if code != codes.Unavailable || resp.GetDeniedResponse().GetStatus().GetCode() != 503 || errorCode(resp) != "unavailable" || headers["retry-after"] == "" {
			t.Errorf("uncached valid key %d, database down: %s, headers %v; want 503 unavailable with retry-after", i, describe(resp), headers)
		}
		break
	}
	time.Sleep(time.Until(stopped.Add(outage)))
	startBegin := time.Now()
	cluster.Start(t)
	started := time.Now()
	time.Sleep(10 * time.Second)
	stopLoad()
	loadEnd := time.Now()
	readyAfter, _ := srv.httpGet(t, "/readyz")
	decisions := srv.buckets(t, "keygate_decision_duration_seconds")
	t.Logf("database stop took %s, down %s (stop returned → start called), start took %s; the expiring key expired %s after the stop returned",
		ms(stopped.Sub(stopBegin)), ms(startBegin.Sub(stopped)), ms(started.Sub(startBegin)), ms(expiresAt.Sub(stopped)))
	if expiresAt.Before(stopped) || expiresAt.After(startBegin) {
		t.Logf("NOTE: the setup took so long that the expiring key did not expire while the database was down")
	}

	phaseOf := func(c call) outagePhase {
		switch end := c.sent.Add(c.took); {
		case end.Before(stopBegin):
			return phaseBefore
		case c.sent.Before(stopped):
			return phaseStop
		case end.Before(startBegin):
			return phaseDown
		case c.sent.Before(started):
			return phaseStart
		}
		return phaseAfter
	}

	// Per key kind and phase: what keygate answered and how fast.
	type cell struct {
		n, allow, unauth, unavailable, other, errs int
		lat                                        []time.Duration
	}
	var table [numKinds][numPhases]cell
	var downLat, allLat []time.Duration
	firstAllow := map[int]time.Time{} // uncached key → first allowed answer after the restart
	var failures []string
	fail := func(format string, args ...any) {
		if len(failures) < 20 {
			failures = append(failures, fmt.Sprintf(format, args...))
		} else if len(failures) == 20 {
			failures = append(failures, "…")
		}
	}
	all := func() []call { mu.Lock(); defer mu.Unlock(); return calls }()
	for _, c := range all {
		ph := phaseOf(c)
		cl := &table[c.kind][ph]
		cl.n++
		cl.lat = append(cl.lat, c.took)
		allLat = append(allLat, c.took)
		if ph == phaseDown {
			downLat = append(downLat, c.took)
		}
		at := c.sent.Sub(stopBegin).Round(time.Millisecond)
		switch {
		case c.err != nil:
			cl.errs++
			fail("%s key %d at %v (%s): gRPC error %v; want a CheckResponse", kindNames[c.kind], c.key, at, phaseNames[ph], c.err)
			continue
		case c.code == codes.OK:
			cl.allow++
		case c.code == codes.Unauthenticated:
			cl.unauth++
		case c.code == codes.Unavailable:
			cl.unavailable++
		default:
			cl.other++
		}
		if c.took > maxLatency {
			fail("%s key %d at %v (%s): Check took %v, want ≤ %v", kindNames[c.kind], c.key, at, phaseNames[ph], c.took, maxLatency)
		}
		switch c.kind {
		case expiring:
			switch {
			case c.code == codes.OK && !c.sent.Before(expiresAt):
				fail("expiring key at %v (%s): ALLOWED %v after it expired", at, phaseNames[ph], c.sent.Sub(expiresAt))
			case c.code != codes.OK && c.sent.Add(c.took).Before(expiresAt):
				fail("expiring key at %v (%s): %v %v before it expires; want allowed", at, phaseNames[ph], c.code, expiresAt.Sub(c.sent))
			case c.code != codes.OK && c.code != codes.Unauthenticated:
				fail("expiring key at %v (%s): %v; want allowed or 401", at, phaseNames[ph], c.code)
			}
		case validCached:
			if c.code != codes.OK {
				fail("cached valid key %d at %v (%s): %v, want allowed", c.key, at, phaseNames[ph], c.code)
			}
		case validUncached:
			switch {
			case ph == phaseDown && (c.code != codes.Unavailable || c.httpCode != 503):
				fail("uncached valid key %d at %v, database down: %v HTTP %d, want 503 (code 14)", c.key, at, c.code, c.httpCode)
			case c.code != codes.OK && c.code != codes.Unavailable:
				fail("uncached valid key %d at %v (%s): %v; a valid key may be allowed or get 503, nothing else", c.key, at, phaseNames[ph], c.code)
			case c.code == codes.OK && ph >= phaseStart:
				if first, ok := firstAllow[c.key]; !ok || c.sent.Add(c.took).Before(first) {
					firstAllow[c.key] = c.sent.Add(c.took)
				}
			}
		default:
			if c.code == codes.OK {
				fail("%s key %d at %v (%s): ALLOWED", kindNames[c.kind], c.key, at, phaseNames[ph])
			}
		}
	}
	// Once allowed after the restart, an uncached key stays allowed.
	for _, c := range all {
		if first, ok := firstAllow[c.key]; ok && c.kind == validUncached && c.sent.After(first) && c.code != codes.OK {
			fail("uncached valid key %d: %v at %v after it was first allowed at %v", c.key, c.code,
				c.sent.Sub(started).Round(time.Millisecond), first.Sub(started).Round(time.Millisecond))
		}
	}

	var rows strings.Builder
	fmt.Fprintf(&rows, "\n  %-15s %-9s %6s %6s %6s %6s %6s %9s %9s", "key", "phase", "calls", "allow", "401", "503", "other", "p99", "max")
	for kind := range numKinds {
		for ph := range numPhases {
			cl := table[kind][ph]
			if cl.n == 0 {
				continue
			}
			fmt.Fprintf(&rows, "\n  %-15s %-9s %6d %6d %6d %6d %6d %9s %9s", kindNames[kind], phaseNames[ph], cl.n, cl.allow,
				cl.unauth, cl.unavailable, cl.other+cl.errs, ms(percentile(cl.lat, 99)), ms(percentile(cl.lat, 100)))
		}
	}
	t.Logf("%d Checks by %d workers over %s:%s", len(all), workers, ms(loadEnd.Sub(loadStart)), rows.String())
	t.Logf("latency with the database down: p50 %s, p99 %s, max %s over %d Checks; whole run: p99 %s, max %s",
		ms(percentile(downLat, 50)), ms(percentile(downLat, 99)), ms(percentile(downLat, 100)), len(downLat),
		ms(percentile(allLat, 99)), ms(percentile(allLat, 100)))

	slowest := slices.SortedFunc(slices.Values(all), func(a, b call) int { return cmp.Compare(b.took, a.took) })[:min(5, len(all))]
	var slow []string
	for _, c := range slowest {
		slow = append(slow, fmt.Sprintf("%s (%s key %d, sent %s after the stop began)", ms(c.took), kindNames[c.kind], c.key, ms(c.sent.Sub(stopBegin))))
	}
	t.Logf("slowest Checks: %s", strings.Join(slow, ", "))
	t.Logf("keygate's own decision histogram: %.0f decisions, %.0f over 10ms, %.0f over 50ms, %.0f over 100ms",
		decisions["+Inf"], decisions["+Inf"]-decisions["0.01"], decisions["+Inf"]-decisions["0.05"], decisions["+Inf"]-decisions["0.1"])

	// A decision whose lookup ran to the 100ms deadline takes a little
	// longer (the request's decoding, the cache, the answer; under -race,
	// while the database restarts, 100-107ms was seen): the next bucket,
	// 250ms, is the bound. The client's bound (maxLatency) is the tighter
	// check of what Envoy sees.
	if over := decisions["+Inf"] - decisions["0.25"]; over > 0 {
		t.Errorf("%.0f decisions took over 250ms by keygate's own histogram, want none (its lookup deadline is 100ms)", over)
	}
	if table[validUncached][phaseDown].n == 0 || table[validCached][phaseDown].n == 0 {
		t.Errorf("the load sent no valid keys while the database was down: the test measured nothing")
	}
	for i, k := range keys {
		if k.kind != validUncached {
			continue
		}
		first, ok := firstAllow[i]
		if !ok {
			t.Errorf("uncached valid key %d never allowed in the 10s after the database returned", i)
			continue
		}
		took := max(first.Sub(started), 0)
		t.Logf("uncached valid key %d first allowed %s after pg_ctl start was called, %s after it returned",
			i, ms(first.Sub(startBegin)), ms(took))
		if took > recoveryBound {
			t.Errorf("uncached valid key %d allowed %v after the database returned, want ≤ %v", i, took, recoveryBound)
		}
	}
	for _, f := range failures {
		t.Error(f)
	}

	// Health: NOT_SERVING while down, SERVING again after.
	var notServing, servingAgain time.Time
	for _, h := range healths {
		switch {
		case h.at.After(stopped) && h.at.Before(startBegin) && notServing.IsZero() && h.status == healthpb.HealthCheckResponse_NOT_SERVING:
			notServing = h.at
		case !notServing.IsZero() && h.at.Before(startBegin) && h.status == healthpb.HealthCheckResponse_SERVING:
			t.Errorf("gRPC health SERVING again at %v, with the database still down", h.at.Sub(stopped))
		case h.at.After(started) && servingAgain.IsZero() && h.status == healthpb.HealthCheckResponse_SERVING:
			servingAgain = h.at
		}
	}
	switch {
	case notServing.IsZero():
		t.Errorf("gRPC health never NOT_SERVING while the database was down")
	case servingAgain.IsZero():
		t.Errorf("gRPC health not SERVING again within 10s of the database's return")
	default:
		t.Logf("gRPC health NOT_SERVING %s after the database stopped, SERVING %s after it returned",
			ms(notServing.Sub(stopped)), ms(servingAgain.Sub(started)))
	}
	if readyDown != 503 || readyAfter != 200 {
		t.Errorf("/readyz = %d with the database down and %d after, want 503 and 200", readyDown, readyAfter)
	}
}
