//go:build unix

package test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/storetest"
	"github.com/keygate/keygate/internal/waittest"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// TestGracefulShutdownWithHealthWatch stops a server that a client
// watches with grpc.health.v1.Health/Watch, as gRPC clients with
// client-side health checking do. On SIGTERM the watcher must hear
// NOT_SERVING at once, /readyz must say 503 for the shutdown, and the open
// Watch stream must not hold the drain until --shutdown-timeout (15s by
// default), after which keygate closes every connection, cutting any
// Check still in flight.
func TestGracefulShutdownWithHealthWatch(t *testing.T) {
	const exitBound = 5 * time.Second // a third of the default --shutdown-timeout
	db := storetest.NewDatabase(t)
	key := createKey(t, db, "acme", "shutdown")
	srv := startServer(t, db)
	if code, resp := srv.mustCheck(t, keyCheck(key.Secret, "/api/v1/projects")); code != codes.OK {
		t.Fatalf("Check: %s; want allowed", describe(resp))
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stream, err := srv.health.Watch(ctx, &healthpb.HealthCheckRequest{Service: ""})
	if err != nil {
		t.Fatal(err)
	}
	if m, err := stream.Recv(); err != nil || m.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("Health/Watch first answer: %v, %v; want SERVING", m.GetStatus(), err)
	}
	notServing := make(chan time.Time, 1)
	go func() {
		for {
			m, err := stream.Recv()
			if err != nil {
				return
			}
			if m.GetStatus() == healthpb.HealthCheckResponse_NOT_SERVING {
				notServing <- time.Now()
				return
			}
		}
	}()

	sigterm := time.Now()
	if err := srv.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case at := <-notServing:
		t.Logf("Health/Watch heard NOT_SERVING %s after SIGTERM", ms(at.Sub(sigterm)))
	case <-time.After(time.Second):
		t.Fatalf("Health/Watch did not hear NOT_SERVING within 1s of SIGTERM")
	}
	// From then on, while the server drains, /readyz (if it still
	// answers) says 503 because of the shutdown.
	var readyz []string
	client := http.Client{Timeout: time.Second}
	for time.Since(sigterm) < 2500*time.Millisecond {
		resp, err := client.Get("http://" + srv.httpAddr + "/readyz")
		if err != nil {
			break // closed: fine
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		answer := fmt.Sprintf("%d %s", resp.StatusCode, strings.TrimSpace(string(body)))
		if len(readyz) == 0 || readyz[len(readyz)-1] != answer {
			readyz = append(readyz, answer)
		}
		if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), "shutting down") {
			t.Errorf("/readyz %v after SIGTERM: %q; want 503 saying it is shutting down", time.Since(sigterm).Round(time.Millisecond), answer)
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("/readyz answers after SIGTERM: %q", readyz)

	select {
	case <-srv.exited:
		took := time.Since(sigterm)
		t.Logf("exited %s after SIGTERM: %v", ms(took), srv.waitErr)
		if srv.waitErr != nil {
			t.Errorf("keygate serve exited with %v, want status 0", srv.waitErr)
		}
	case <-time.After(exitBound - time.Since(sigterm)):
		t.Errorf("keygate serve still running %v after SIGTERM with only a Health/Watch stream open: "+
			"the stream holds GracefulStop until --shutdown-timeout, and then every connection is closed", exitBound)
	}
	// Nothing claims the server is fine after the shutdown began.
	var after bool
	for _, line := range strings.Split(srv.logs.tail(1000), "\n") {
		var l struct {
			Msg string `json:"msg"`
		}
		_ = json.Unmarshal([]byte(line), &l)
		switch {
		case l.Msg == "shutting down":
			after = true
		case after && strings.Contains(l.Msg, "SERVING") && !strings.Contains(l.Msg, "NOT_SERVING"):
			t.Errorf("after \"shutting down\", keygate logged %s", line)
		}
	}
}

// TestDrainUnderLoad sends SIGTERM to a server under load with a drain
// delay: health goes NOT_SERVING at once, and every request sent during
// the drain is still answered (none refused, none a gRPC error) until the
// graceful stop, after which the process exits 0.
func TestDrainUnderLoad(t *testing.T) {
	const drain = 2 * time.Second
	db := storetest.NewDatabase(t)
	key := createKey(t, db, "acme", "drain")
	srv := startServer(t, db, "--drain-delay", drain.String())
	req := keyCheck(key.Secret, "/api/v1/projects")
	if code, resp := srv.mustCheck(t, req); code != codes.OK {
		t.Fatalf("Check: %s", describe(resp))
	}
	var sigterm time.Time
	loadUntil := make(chan struct{})
	type result struct {
		answered int
		failures []string
	}
	results := make(chan result, 4)
	for range 4 {
		go func() {
			var r result
			for {
				select {
				case <-loadUntil:
					results <- r
					return
				default:
				}
				resp, err := srv.check(req, time.Second)
				switch {
				case err != nil:
					r.failures = append(r.failures, err.Error())
				case codes.Code(resp.GetStatus().GetCode()) != codes.OK:
					r.failures = append(r.failures, describe(resp))
				default:
					r.answered++
				}
			}
		}()
	}
	time.Sleep(300 * time.Millisecond)
	sigterm = time.Now()
	if err := srv.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	took := waittest.Until(t, time.Second, "NOT_SERVING after SIGTERM", func() bool {
		return srv.healthStatus() == healthpb.HealthCheckResponse_NOT_SERVING
	})
	// Load through most of the drain.
	time.Sleep(drain - 300*time.Millisecond - time.Since(sigterm))
	close(loadUntil)
	total := 0
	for range 4 {
		r := <-results
		total += r.answered
		for _, f := range r.failures {
			t.Errorf("during the drain: %s", f)
		}
	}
	select {
	case <-srv.exited:
		if srv.waitErr != nil {
			t.Errorf("exit: %v, want status 0", srv.waitErr)
		}
		if exit := time.Since(sigterm); exit < drain {
			t.Errorf("exited %s after SIGTERM, before the %s drain ended", ms(exit), drain)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("keygate serve did not exit within 10s of the drain")
	}
	t.Logf("NOT_SERVING %s after SIGTERM; %d Checks answered under load, none refused", ms(took), total)
}
