package redistest

import (
	"net"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/needs"
)

// Server is a running redis-server of a test's own.
type Server struct {
	Addr string // 127.0.0.1:port
	path string
	port int
	cmd  *exec.Cmd
	tb   testing.TB
}

// Start starts a redis-server on a free port and waits until it answers;
// it is stopped when the test ends.
func Start(tb testing.TB) *Server {
	tb.Helper()
	path := needs.Program(tb, "redis-server", "apt-get install redis-server", "/usr/bin/redis-server")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	s := &Server{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), path: path, port: port, tb: tb}
	s.start()
	tb.Cleanup(s.Stop)
	return s
}

// URL is the server's redis:// URL.
func (s *Server) URL() string { return "redis://" + s.Addr + "/0" }

func (s *Server) start() {
	s.tb.Helper()
	s.cmd = exec.Command(s.path, "--port", strconv.Itoa(s.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", s.tb.TempDir(), "--logfile", "")
	if err := s.cmd.Start(); err != nil {
		s.tb.Fatalf("starting redis-server: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if c, err := net.DialTimeout("tcp", s.Addr, 200*time.Millisecond); err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			s.tb.Fatalf("redis-server on %s did not answer within 10s", s.Addr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop stops the server (its data is gone); Restart starts it again on
// the same port.
func (s *Server) Stop() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	s.cmd.Process.Kill()
	s.cmd.Wait()
	s.cmd = nil
}

// Restart starts a stopped server again, empty, on the same address; a
// running one is left as it is.
func (s *Server) Restart() {
	s.tb.Helper()
	if s.cmd == nil {
		s.start()
	}
}
