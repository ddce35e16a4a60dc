//go:build unix

package test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/keygate/keygate/internal/envoytest"
	"github.com/keygate/keygate/internal/waittest"
)

// server is one `keygate serve` process with a gRPC client connected to it.
type server struct {
	grpcAddr, httpAddr string
	cmd                *exec.Cmd
	conn               *grpc.ClientConn
	authz              authv3.AuthorizationClient
	health             healthpb.HealthClient
	logs               *logLines
	exited             chan struct{} // closed once the process has exited
	waitErr            error         // the process's exit, valid once exited is closed
}

// logLines keeps the lines a server writes to stderr.
type logLines struct {
	mu    sync.Mutex
	lines []string
}

func (l *logLines) add(s string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, s)
}

// contains reports whether some line contains s.
func (l *logLines) contains(s string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, line := range l.lines {
		if strings.Contains(line, s) {
			return true
		}
	}
	return false
}

// tail returns the last n lines.
func (l *logLines) tail(n int) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines[max(0, len(l.lines)-n):], "\n")
}

// startServer runs `keygate serve` on 127.0.0.1:0 against dbURL with extra
// flags, waits for its "keygate serving" log line and for gRPC health to
// say SERVING, and connects a client. The process (its whole group) is
// killed when the test ends, if it is still running.
func startServer(tb testing.TB, dbURL string, flags ...string) *server {
	tb.Helper()
	// The lookup deadline is 500 ms, under the tests' 1 s Check deadlines,
	// instead of serve's 100 ms: under go test -race ./... on two cores a
	// lookup can take longer, and its fail-closed 503 is not what most
	// tests look for. A test about the deadline passes its own (the last
	// --lookup-timeout wins).
	args := append([]string{"serve", "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--log-format", "json", "--drain-delay", "0s",
		"--lookup-timeout", "500ms"}, flags...)
	cmd := exec.Command(keygateBin(tb), args...)
	cmd.Env = environ(dbURL)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		tb.Fatalf("starting keygate serve: %v", err)
	}
	s := &server{cmd: cmd, logs: &logLines{}, exited: make(chan struct{})}
	type servingLine struct {
		Msg      string `json:"msg"`
		GRPCAddr string `json:"grpc_addr"`
		HTTPAddr string `json:"http_addr"`
	}
	serving := make(chan servingLine, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			s.logs.add(sc.Text())
			var line servingLine
			if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "keygate serving" {
				select {
				case serving <- line:
				default:
				}
			}
		}
		_, _ = io.Copy(io.Discard, stderr) // a line over 1 MiB: keep draining
		s.waitErr = cmd.Wait()             // after the last read, as os/exec requires
		close(s.exited)
	}()
	tb.Cleanup(func() {
		if s.conn != nil {
			s.conn.Close()
		}
		select {
		case <-s.exited:
		default:
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-s.exited
		}
		if tb.Failed() {
			tb.Logf("last log lines of keygate serve (%s):\n%s", s.grpcAddr, s.logs.tail(20))
		}
	})
	select {
	case line := <-serving:
		s.grpcAddr, s.httpAddr = line.GRPCAddr, line.HTTPAddr
	case <-s.exited:
		tb.Fatalf("keygate serve exited before serving: %v\n%s", s.waitErr, s.logs.tail(20))
	case <-time.After(30 * time.Second):
		tb.Fatalf("keygate serve logged no \"keygate serving\" line within 30s:\n%s", s.logs.tail(20))
	}
	s.conn, err = grpc.NewClient(s.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		tb.Fatal(err)
	}
	s.authz = authv3.NewAuthorizationClient(s.conn)
	s.health = healthpb.NewHealthClient(s.conn)
	waittest.Until(tb, 10*time.Second, "gRPC health SERVING at start", func() bool {
		return s.healthStatus() == healthpb.HealthCheckResponse_SERVING
	})
	// The change listener starts once the schema is found migrated: a
	// change made before it listens would reach this server only by the
	// delta poll.
	waittest.Until(tb, 10*time.Second, "the change listener at start", func() bool {
		return s.metric(tb, "keygate_listener_up") == 1
	})
	return s
}

// terminate sends SIGTERM and waits for the process to exit; it returns
// the exit error (nil for status 0).
func (s *server) terminate(tb testing.TB) error {
	tb.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		tb.Fatalf("SIGTERM: %v", err)
	}
	select {
	case <-s.exited:
		return s.waitErr
	case <-time.After(30 * time.Second):
		tb.Fatalf("keygate serve did not exit within 30s of SIGTERM:\n%s", s.logs.tail(20))
		return nil
	}
}

// check sends one Check with a deadline.
func (s *server) check(req *authv3.CheckRequest, timeout time.Duration) (*authv3.CheckResponse, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return s.authz.Check(ctx, req)
}

// mustCheck sends one Check and returns the response's status code,
// failing tb on a gRPC error: keygate answers every Check with a
// CheckResponse.
func (s *server) mustCheck(tb testing.TB, req *authv3.CheckRequest) (codes.Code, *authv3.CheckResponse) {
	tb.Helper()
	resp, err := s.check(req, 5*time.Second)
	if err != nil {
		tb.Fatalf("Check on %s: gRPC error %v; want a CheckResponse", s.grpcAddr, err)
	}
	return codes.Code(resp.GetStatus().GetCode()), resp
}

// healthStatus asks gRPC health about the whole server (service "");
// UNKNOWN stands for no answer.
func (s *server) healthStatus() healthpb.HealthCheckResponse_ServingStatus {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	resp, err := s.health.Check(ctx, &healthpb.HealthCheckRequest{Service: ""})
	if err != nil {
		return healthpb.HealthCheckResponse_UNKNOWN
	}
	return resp.GetStatus()
}

// httpGet returns the status and body of a GET on the HTTP listener.
func (s *server) httpGet(tb testing.TB, path string) (int, string) {
	tb.Helper()
	client := http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get("http://" + s.httpAddr + path)
	if err != nil {
		tb.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// metric returns the value of an unlabelled sample in /metrics.
func (s *server) metric(tb testing.TB, name string) float64 {
	tb.Helper()
	_, body := s.httpGet(tb, "/metrics")
	for _, line := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				tb.Fatalf("metric %s: %q", name, line)
			}
			return f
		}
	}
	tb.Fatalf("metric %s not in /metrics", name)
	return 0
}

// buckets returns the cumulative bucket counts of a histogram in
// /metrics, by upper bound ("+Inf" included).
func (s *server) buckets(tb testing.TB, name string) map[string]float64 {
	tb.Helper()
	_, body := s.httpGet(tb, "/metrics")
	out := map[string]float64{}
	for _, line := range strings.Split(body, "\n") {
		rest, ok := strings.CutPrefix(line, name+`_bucket{le="`)
		if !ok {
			continue
		}
		le, v, ok := strings.Cut(rest, `"} `)
		f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if !ok || err != nil {
			tb.Fatalf("metric %s: %q", name, line)
		}
		out[le] = f
	}
	if len(out) == 0 {
		tb.Fatalf("histogram %s not in /metrics", name)
	}
	return out
}

// envoyCheck builds a CheckRequest as Envoy's ext_authz filter does.
var envoyCheck = envoytest.CheckRequest

// keyCheck is a GET of path with the key in x-api-key.
func keyCheck(secret, path string) *authv3.CheckRequest {
	return envoyCheck("GET", path, map[string]string{"x-api-key": secret}, nil)
}

// upstreamHeaders returns the headers an ok_response sets upstream.
func upstreamHeaders(resp *authv3.CheckResponse) map[string]string {
	out := map[string]string{}
	for _, h := range resp.GetOkResponse().GetHeaders() {
		out[h.GetHeader().GetKey()] = h.GetHeader().GetValue()
	}
	return out
}

// errorCode returns error.code of a denied_response's JSON body.
func errorCode(resp *authv3.CheckResponse) string {
	var body struct {
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	_ = json.Unmarshal([]byte(resp.GetDeniedResponse().GetBody()), &body)
	return body.Error.Code
}

// describe summarizes a response for failure messages.
func describe(resp *authv3.CheckResponse) string {
	if d := resp.GetDeniedResponse(); d != nil {
		return fmt.Sprintf("%v, HTTP %d %s", codes.Code(resp.GetStatus().GetCode()), d.GetStatus().GetCode(), errorCode(resp))
	}
	return fmt.Sprintf("%v, upstream %v", codes.Code(resp.GetStatus().GetCode()), upstreamHeaders(resp))
}

// percentile returns the p-th percentile (0 < p ≤ 100, nearest rank) of ds.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	rank := int(math.Ceil(p / 100 * float64(len(s))))
	return s[min(max(rank, 1), len(s))-1]
}

// ms formats a duration in milliseconds for the logged tables.
func ms(d time.Duration) string { return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond)) }
