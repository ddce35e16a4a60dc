package forwardauth

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/authztest"
)

// TestServerClosesIdleConnections: the listener's server answers on a
// keep-alive connection, then closes it once it has been idle for
// IdleTimeout (shortened here), while a busy one stays open.
func TestServerClosesIdleConnections(t *testing.T) {
	srv := NewServer(newTestHandler(t, authztest.NewWorld(t).Lookup, nil), nil)
	if srv.IdleTimeout != IdleTimeout || IdleTimeout <= 0 || srv.ReadHeaderTimeout != ReadHeaderTimeout {
		t.Fatalf("idle timeout %v, read-header timeout %v; want %v and %v", srv.IdleTimeout, srv.ReadHeaderTimeout, IdleTimeout, ReadHeaderTimeout)
	}
	const idle = 300 * time.Millisecond
	srv.IdleTimeout = idle
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(func() { srv.Close() })

	conn, err := net.Dial("tcp", lis.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	br := bufio.NewReader(conn)
	ask := func() {
		t.Helper()
		if _, err := io.WriteString(conn, "GET /auth HTTP/1.1\r\nHost: k\r\nX-Forwarded-Method: GET\r\nX-Forwarded-Uri: /api/v1/projects\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized || resp.Close {
			t.Fatalf("got %d, close %v; want a 401 on a kept-alive connection", resp.StatusCode, resp.Close)
		}
	}
	// Requests closer together than the idle timeout keep it open.
	for range 3 {
		ask()
		time.Sleep(idle / 3)
	}
	start := time.Now()
	if err := conn.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := br.ReadByte(); !errors.Is(err, io.EOF) {
		t.Fatalf("an idle connection read %v; want EOF, the server closing it", err)
	}
	t.Logf("closed after %v idle (idle timeout %v)", time.Since(start).Round(time.Millisecond), idle)
}
