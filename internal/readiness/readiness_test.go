package readiness

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/keygate/keygate/internal/syncbuffer"
)

const service = "envoy.service.auth.v3.Authorization"

// serve runs s's health service on loopback and returns a client and the
// server.
func serve(t *testing.T, s *Status) (healthpb.HealthClient, *grpc.Server) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	s.RegisterHealth(g)
	go g.Serve(lis)
	t.Cleanup(g.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return healthpb.NewHealthClient(conn), g
}

// readyz returns /readyz's status and body.
func readyz(s *Status) (int, string) {
	w := httptest.NewRecorder()
	s.ServeHTTP(w, httptest.NewRequest("GET", "/readyz", nil))
	return w.Code, strings.TrimSpace(w.Body.String())
}

// checkAll asks health about the whole server and the named service.
func checkAll(t *testing.T, c healthpb.HealthClient) []healthpb.HealthCheckResponse_ServingStatus {
	t.Helper()
	var out []healthpb.HealthCheckResponse_ServingStatus
	for _, name := range []string{"", service} {
		resp, err := c.Check(context.Background(), &healthpb.HealthCheckRequest{Service: name})
		if err != nil {
			t.Fatalf("Check(%q): %v", name, err)
		}
		out = append(out, resp.GetStatus())
	}
	return out
}

// The states, as each way of asking tells them: gRPC health (both
// services) and /readyz always agree.
func TestStates(t *testing.T) {
	s := New(service)
	c, _ := serve(t, s)
	notServing := []healthpb.HealthCheckResponse_ServingStatus{healthpb.HealthCheckResponse_NOT_SERVING, healthpb.HealthCheckResponse_NOT_SERVING}
	serving := []healthpb.HealthCheckResponse_ServingStatus{healthpb.HealthCheckResponse_SERVING, healthpb.HealthCheckResponse_SERVING}
	steps := []struct {
		name   string
		do     func() bool // the transition; its result is Set's
		change bool
		health []healthpb.HealthCheckResponse_ServingStatus
		readyz string
	}{
		{"new", func() bool { return true }, true, notServing, "503 not ready: starting"},
		{"ready", func() bool { return s.Set(true, "ok") }, true, serving, "200 ready"},
		{"ready again", func() bool { return s.Set(true, "ok") }, false, serving, "200 ready"},
		{"not ready", func() bool { return s.Set(false, "database unreachable") }, true, notServing, "503 not ready: database unreachable"},
		{"another reason", func() bool { return s.Set(false, "schema not migrated") }, true, notServing, "503 not ready: schema not migrated"},
		{"ready once more", func() bool { return s.Set(true, "ok") }, true, serving, "200 ready"},
		{"shutdown", func() bool { s.Shutdown(); return true }, true, notServing, "503 not ready: shutting down"},
		{"ready after shutdown", func() bool { return s.Set(true, "ok") }, false, notServing, "503 not ready: shutting down"},
	}
	for _, st := range steps {
		if got := st.do(); got != st.change {
			t.Errorf("%s: changed %v, want %v", st.name, got, st.change)
		}
		if got := checkAll(t, c); got[0] != st.health[0] || got[1] != st.health[1] {
			t.Errorf("%s: health %v, want %v", st.name, got, st.health)
		}
		code, body := readyz(s)
		if got := fmt.Sprintf("%d %s", code, body); got != st.readyz {
			t.Errorf("%s: /readyz %q, want %q", st.name, got, st.readyz)
		}
	}
	if _, err := c.Check(context.Background(), &healthpb.HealthCheckRequest{Service: "other"}); status.Code(err) != codes.NotFound {
		t.Errorf("Check of an unknown service: %v, want NotFound", err)
	}
	list, err := c.List(context.Background(), &healthpb.HealthListRequest{})
	if err != nil || len(list.GetStatuses()) != 2 || list.GetStatuses()[service].GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Errorf("List: %v, %v; want both services NOT_SERVING", list, err)
	}
	w := httptest.NewRecorder()
	Alive(w, httptest.NewRequest("GET", "/healthz", nil))
	if w.Code != 200 {
		t.Errorf("/healthz after shutdown: %d; liveness does not depend on readiness", w.Code)
	}
}

// recv reads the next Watch message, or fails after a second.
func recv(t *testing.T, stream grpc.ServerStreamingClient[healthpb.HealthCheckResponse]) (healthpb.HealthCheckResponse_ServingStatus, error) {
	t.Helper()
	type answer struct {
		m   *healthpb.HealthCheckResponse
		err error
	}
	ch := make(chan answer, 1)
	go func() {
		m, err := stream.Recv()
		ch <- answer{m, err}
	}()
	select {
	case a := <-ch:
		return a.m.GetStatus(), a.err
	case <-time.After(time.Second):
		t.Fatal("no Watch message within 1s")
		return 0, nil
	}
}

// At shutdown a watcher hears NOT_SERVING, then its stream ends, so that a
// graceful stop is not held by it; whichever status it heard last.
func TestWatchEndsAtShutdown(t *testing.T) {
	for _, c := range []struct {
		name  string
		ready bool
	}{{"serving watcher", true}, {"watcher that already heard NOT_SERVING", false}} {
		t.Run(c.name, func(t *testing.T) {
			s := New(service)
			s.Set(c.ready, "ok")
			client, g := serve(t, s)
			stream, err := client.Watch(context.Background(), &healthpb.HealthCheckRequest{Service: service})
			if err != nil {
				t.Fatal(err)
			}
			if got, err := recv(t, stream); err != nil || got != servingStatus(c.ready) {
				t.Fatalf("first Watch message: %v, %v", got, err)
			}
			s.Shutdown()
			if c.ready {
				if got, err := recv(t, stream); err != nil || got != healthpb.HealthCheckResponse_NOT_SERVING {
					t.Fatalf("after Shutdown: %v, %v; want NOT_SERVING", got, err)
				}
			}
			if _, err := recv(t, stream); status.Code(err) != codes.Unavailable {
				t.Fatalf("after NOT_SERVING: %v; want the stream to end with Unavailable", err)
			}
			stopped := make(chan struct{})
			go func() { g.GracefulStop(); close(stopped) }()
			select {
			case <-stopped:
			case <-time.After(5 * time.Second):
				t.Fatal("GracefulStop held by a Watch stream")
			}
		})
	}
}

// Watchers hear every change, and a watch of a service health does not
// know says so without failing.
func TestWatchFollowsChanges(t *testing.T) {
	s := New(service)
	client, _ := serve(t, s)
	stream, err := client.Watch(context.Background(), &healthpb.HealthCheckRequest{Service: ""})
	if err != nil {
		t.Fatal(err)
	}
	unknown, err := client.Watch(context.Background(), &healthpb.HealthCheckRequest{Service: "other"})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := recv(t, unknown); err != nil || got != healthpb.HealthCheckResponse_SERVICE_UNKNOWN {
		t.Fatalf("Watch of an unknown service: %v, %v", got, err)
	}
	want := []healthpb.HealthCheckResponse_ServingStatus{healthpb.HealthCheckResponse_NOT_SERVING}
	if got, _ := recv(t, stream); got != want[0] {
		t.Fatalf("first: %v", got)
	}
	for i, ready := range []bool{true, false, true} {
		s.Set(ready, map[bool]string{true: "ok", false: "down"}[ready])
		if got, err := recv(t, stream); err != nil || got != servingStatus(ready) {
			t.Fatalf("change %d: %v, %v; want %v", i, got, err, servingStatus(ready))
		}
	}
	s.Shutdown()
	if _, err := recv(t, unknown); status.Code(err) != codes.Unavailable {
		t.Fatalf("Watch of an unknown service at shutdown: %v, want Unavailable", err)
	}
}

// Watch sets the status from the probe and logs each change once.
func TestWatchProbe(t *testing.T) {
	var mu sync.Mutex
	answers := []error{
		&NotReady{Reason: "schema not migrated", Log: "waiting for the schema", Attrs: []any{"database", "db"}},
		&NotReady{Reason: "schema not migrated", Log: "waiting for the schema"},
		errors.New("something else"),
		nil, nil,
		&NotReady{Reason: "database unreachable", Log: "database unreachable"},
	}
	n := len(answers)
	probed := make(chan struct{}, n+1)
	probe := func(context.Context) error {
		mu.Lock()
		defer mu.Unlock()
		err := answers[0]
		if len(answers) > 1 {
			answers = answers[1:]
		}
		select {
		case probed <- struct{}{}:
		default: // probes after the test's last: nobody counts them
		}
		return err
	}
	s := New()
	logs := &syncbuffer.Buffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.Watch(ctx, WatchOptions{Probe: probe, Interval: time.Millisecond, Logger: slog.New(slog.NewTextHandler(logs, nil)), ReadyLog: "ready now"})
	}()
	for range n + 1 { // the last answer, twice
		<-probed
	}
	cancel()
	<-done
	if ready, reason := s.Ready(); ready || reason != "database unreachable" {
		t.Errorf("after the probes: %v %q", ready, reason)
	}
	var msgs []string
	for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		_, rest, _ := strings.Cut(line, "msg=")
		msgs = append(msgs, rest)
	}
	want := []string{`"waiting for the schema" database=db`, `"not ready: NOT_SERVING" error="something else"`, `"ready now"`, `"database unreachable"`}
	if strings.Join(msgs, "\n") != strings.Join(want, "\n") {
		t.Errorf("logged:\n%s\nwant each change once:\n%s", strings.Join(msgs, "\n"), strings.Join(want, "\n"))
	}
}
