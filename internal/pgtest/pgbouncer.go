package pgtest

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/keygate/keygate/internal/needs"
)

// PgBouncer is a pgbouncer process of one test's own, in front of one
// PostgreSQL server.
type PgBouncer struct {
	port   int
	cmd    *exec.Cmd
	exited chan error
}

// NewPgBouncer starts Debian's pgbouncer in front of the server that
// server (a postgres:// URL) reaches, on a free port of 127.0.0.1, in
// pool mode mode ("transaction" or "session"), trusting every client; as
// an unprivileged process (as the postgres user when the tests run as
// root: pgbouncer refuses root). It is stopped when the test ends.
func NewPgBouncer(tb testing.TB, server, mode string) *PgBouncer {
	tb.Helper()
	bin := needs.Program(tb, "pgbouncer", "apt-get install pgbouncer", "/usr/sbin/pgbouncer")
	// Not tb.TempDir(): its parent is private, and pgbouncer may run as
	// another user.
	dir, err := os.MkdirTemp("", "keygate-pgbouncer-")
	if err != nil {
		tb.Fatal(err)
	}
	p, err := startPgBouncer(bin, dir, server, mode)
	if err != nil {
		os.RemoveAll(dir)
		tb.Fatalf("pgtest: %v", err)
	}
	tb.Cleanup(func() { p.stop(); os.RemoveAll(dir) })
	return p
}

func startPgBouncer(bin, dir, server, mode string) (*PgBouncer, error) {
	u, err := url.Parse(server)
	if err != nil || u.Hostname() == "" {
		return nil, fmt.Errorf("pgbouncer: %q is not a postgres:// URL with a host", server)
	}
	targetPort := u.Port()
	if targetPort == "" {
		targetPort = "5432"
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	conf := strings.Join([]string{
		"[databases]",
		fmt.Sprintf("* = host=%s port=%s", u.Hostname(), targetPort),
		"[pgbouncer]",
		"listen_addr = 127.0.0.1",
		"listen_port = " + strconv.Itoa(port),
		"unix_socket_dir =",
		"auth_type = trust",
		"auth_file = " + filepath.Join(dir, "users.txt"),
		"pool_mode = " + mode,
		"max_client_conn = 1000",
		"default_pool_size = 20",
		"ignore_startup_parameters = extra_float_digits",
		"logfile = " + filepath.Join(dir, "pgbouncer.log"),
	}, "\n") + "\n"
	if err := os.WriteFile(filepath.Join(dir, "pgbouncer.ini"), []byte(conf), 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "users.txt"), []byte(`"postgres" ""`+"\n"), 0o644); err != nil {
		return nil, err
	}
	args := []string{filepath.Join(dir, "pgbouncer.ini")}
	cmd := exec.Command(bin, args...)
	if os.Geteuid() == 0 {
		if err := os.Chmod(dir, 0o777); err != nil {
			return nil, err
		}
		cmd = exec.Command("runuser", append([]string{"-u", "postgres", "--", bin}, args...)...)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting pgbouncer: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	p := &PgBouncer{port: port, cmd: cmd, exited: exited}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		conn, err := pgx.Connect(ctx, p.URL(strings.TrimPrefix(u.Path, "/")))
		if err == nil {
			conn.Close(ctx)
			return p, nil
		}
		log, _ := os.ReadFile(filepath.Join(dir, "pgbouncer.log"))
		select {
		case err := <-exited:
			return nil, fmt.Errorf("pgbouncer exited: %v\n%s", err, log)
		case <-ctx.Done():
			p.stop()
			return nil, fmt.Errorf("pgbouncer does not accept connections: %v\n%s", err, log)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// stop stops the pgbouncer.
func (p *PgBouncer) stop() {
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM) // the group: runuser and pgbouncer
	select {
	case <-p.exited:
	case <-time.After(5 * time.Second):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.exited
	}
}

// URL is the connection string of database through the pgbouncer.
func (p *PgBouncer) URL(database string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", p.port, database)
}

// Through returns dbURL (a postgres:// URL) with its host and port
// replaced by the pgbouncer's.
func (p *PgBouncer) Through(tb testing.TB, dbURL string) string {
	tb.Helper()
	u, err := url.Parse(dbURL)
	if err != nil {
		tb.Fatalf("pgtest: %v", err)
	}
	u.Host = "127.0.0.1:" + strconv.Itoa(p.port)
	return u.String()
}
