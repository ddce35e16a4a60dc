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
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/keygate/keygate/internal/needs"
)

// PgBouncer is a pgbouncer process of one test's own, in front of one
// PostgreSQL server.
type PgBouncer struct {
	port int
	cmd  *exec.Cmd
}

// NewPgBouncer starts Debian's pgbouncer in front of the server that
// server (a postgres:// URL) reaches, on a free port of 127.0.0.1, in
// pool mode mode ("transaction" or "session"), trusting every client; as
// an unprivileged process (as the postgres user when the tests run as
// root: pgbouncer refuses root). It is stopped when the test ends.
func NewPgBouncer(tb testing.TB, server, mode string) *PgBouncer {
	tb.Helper()
	bin := needs.Program(tb, "pgbouncer", "apt-get install pgbouncer", "/usr/sbin/pgbouncer")
	u, err := url.Parse(server)
	if err != nil || u.Hostname() == "" {
		tb.Fatalf("pgtest: pgbouncer: %q is not a postgres:// URL with a host", server)
	}
	targetPort := u.Port()
	if targetPort == "" {
		targetPort = "5432"
	}
	dir := tb.TempDir()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
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
		tb.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "users.txt"), []byte(`"postgres" ""`+"\n"), 0o644); err != nil {
		tb.Fatal(err)
	}
	args := []string{filepath.Join(dir, "pgbouncer.ini")}
	cmd := exec.Command(bin, args...)
	if os.Geteuid() == 0 {
		if err := os.Chmod(dir, 0o777); err != nil {
			tb.Fatal(err)
		}
		cmd = exec.Command("runuser", append([]string{"-u", "postgres", "--", bin}, args...)...)
	}
	if err := cmd.Start(); err != nil {
		tb.Fatalf("pgtest: starting pgbouncer: %v", err)
	}
	p := &PgBouncer{port: port, cmd: cmd}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	tb.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		conn, err := pgx.Connect(ctx, p.URL(u.Path[1:]))
		if err == nil {
			conn.Close(ctx)
			return p
		}
		select {
		case err := <-exited:
			log, _ := os.ReadFile(filepath.Join(dir, "pgbouncer.log"))
			tb.Fatalf("pgtest: pgbouncer exited: %v\n%s", err, log)
		case <-ctx.Done():
			log, _ := os.ReadFile(filepath.Join(dir, "pgbouncer.log"))
			tb.Fatalf("pgtest: pgbouncer does not accept connections: %v\n%s", err, log)
		case <-time.After(50 * time.Millisecond):
		}
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
