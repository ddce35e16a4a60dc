package pgcluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// Cluster is a throwaway PostgreSQL cluster in a temporary directory,
// listening on 127.0.0.1 only, tuned for speed over durability.
type Cluster struct {
	dir     string // data directory
	port    int
	bin     string
	runAs   string // "" or "postgres" when running as root
	running bool
}

// URL is the connection string of the cluster's "postgres" database.
func (c *Cluster) URL() string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", c.port)
}

// Port is the TCP port the cluster listens on.
func (c *Cluster) Port() int { return c.port }

// Stop shuts the cluster down at once, closing every connection, as a
// crash or an outage would.
func (c *Cluster) Stop() error {
	if err := c.pgctl("-m", "immediate", "stop"); err != nil {
		return err
	}
	c.running = false
	return nil
}

// Start starts a stopped cluster again, on the same port.
func (c *Cluster) Start() error { return c.start() }

// Start initialises and starts a new cluster in a temporary directory,
// on a free port of 127.0.0.1. Destroy removes it.
func Start() (*Cluster, error) { return startCluster() }

func startCluster() (*Cluster, error) {
	c, err := newDir()
	if err != nil {
		return nil, err
	}
	data := filepath.Join(c.dir, "data")
	if out, err := c.command("initdb", "-D", data, "-U", "postgres", "-A", "trust", "-E", "UTF8",
		"--locale=C", "--no-sync").CombinedOutput(); err != nil {
		os.RemoveAll(c.dir)
		return nil, fmt.Errorf("initdb: %v: %s", err, out)
	}
	return c.run(
		"max_connections = 300",
		"fsync = off",
		"synchronous_commit = off",
		"full_page_writes = off",
		"log_min_messages = warning",
		// Standbys (StartStandby) stream from any cluster.
		"wal_level = replica",
		"max_wal_senders = 10",
	)
}

// run configures a new cluster's directory with settings and starts it;
// on an error it removes the directory.
func (c *Cluster) run(settings ...string) (*Cluster, error) {
	if err := c.configure(settings...); err != nil {
		os.RemoveAll(c.dir)
		return nil, err
	}
	if err := c.start(); err != nil {
		c.Destroy()
		return nil, err
	}
	return c, nil
}

// newDir makes a cluster's temporary directory, owned by the user the
// server will run as.
func newDir() (*Cluster, error) {
	bin, err := FindBinaries()
	if err != nil {
		return nil, err
	}
	c := &Cluster{bin: bin}
	if os.Geteuid() == 0 {
		if _, err := user.Lookup("postgres"); err != nil {
			return nil, errors.New("running as root, and initdb refuses root: create a 'postgres' user or run the tests as another user")
		}
		c.runAs = "postgres"
	}
	if c.dir, err = os.MkdirTemp("", "keygate-pgtest-"); err != nil {
		return nil, err
	}
	if c.runAs != "" {
		if out, err := exec.Command("chown", c.runAs, c.dir).CombinedOutput(); err != nil {
			os.RemoveAll(c.dir)
			return nil, fmt.Errorf("chown %s: %v: %s", c.dir, err, out)
		}
	}
	return c, nil
}

// configure picks a free port and appends it, with settings, to the
// cluster's postgresql.conf (later lines win over earlier ones).
func (c *Cluster) configure(settings ...string) error {
	var err error
	if c.port, err = freePort(); err != nil {
		return err
	}
	conf := strings.Join(append([]string{
		"listen_addresses = '127.0.0.1'",
		"port = " + strconv.Itoa(c.port),
		"unix_socket_directories = ''",
	}, settings...), "\n") + "\n"
	f, err := os.OpenFile(filepath.Join(c.dir, "data", "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err == nil {
		_, err = f.WriteString(conf)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	return err
}

// StandbyOptions configure StartStandby.
type StandbyOptions struct {
	// ApplyDelay is the standby's recovery_min_apply_delay: how long it
	// waits before replaying a commit it has received, so that it lags
	// for certain.
	ApplyDelay time.Duration
}

// StartStandby starts a hot standby of primary, copied with
// pg_basebackup (-R: primary_conninfo and standby.signal) and streaming
// from it. Destroy removes it.
func StartStandby(primary *Cluster, opts StandbyOptions) (*Cluster, error) {
	c, err := newDir()
	if err != nil {
		return nil, err
	}
	data := filepath.Join(c.dir, "data")
	if out, err := c.command("pg_basebackup", "-h", "127.0.0.1", "-p", strconv.Itoa(primary.port), "-U", "postgres",
		"-D", data, "-R", "-X", "stream", "-c", "fast", "--no-sync").CombinedOutput(); err != nil {
		os.RemoveAll(c.dir)
		return nil, fmt.Errorf("pg_basebackup: %v: %s", err, out)
	}
	settings := []string{"hot_standby = on", "wal_receiver_status_interval = 1s"}
	if opts.ApplyDelay > 0 {
		settings = append(settings, fmt.Sprintf("recovery_min_apply_delay = '%dms'", opts.ApplyDelay.Milliseconds()))
	}
	return c.run(settings...)
}

// Promote makes a standby a primary (pg_ctl promote) and waits until it
// accepts writes.
func (c *Cluster) Promote() error { return c.pgctl("-w", "-t", "60", "promote") }

// StopClean shuts the cluster down cleanly (pg_ctl -m fast): sessions are
// ended, and connected standbys receive every record written before the
// shutdown, as in a planned switchover.
func (c *Cluster) StopClean() error {
	if err := c.pgctl("-m", "fast", "-w", "-t", "60", "stop"); err != nil {
		return err
	}
	c.running = false
	return nil
}

func (c *Cluster) start() error {
	if err := c.pgctl("-w", "-t", "60", "-l", filepath.Join(c.dir, "postgres.log"), "start"); err != nil {
		log, _ := os.ReadFile(filepath.Join(c.dir, "postgres.log"))
		return fmt.Errorf("%v\n%s", err, log)
	}
	c.running = true
	// pg_ctl -w waits for the server; make sure TCP answers too.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		conn, err := pgx.Connect(ctx, c.URL())
		if err == nil {
			conn.Close(ctx)
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("cluster started but does not accept connections: %w", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Destroy stops the cluster and deletes its directory.
func (c *Cluster) Destroy() {
	if c.running {
		_ = c.pgctl("-m", "immediate", "stop")
		c.running = false
	}
	os.RemoveAll(c.dir)
}

func (c *Cluster) pgctl(args ...string) error {
	args = append([]string{"-D", filepath.Join(c.dir, "data")}, args...)
	out, err := c.command("pg_ctl", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("pg_ctl %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return nil
}

// command runs a PostgreSQL program, as the postgres user when root.
func (c *Cluster) command(name string, args ...string) *exec.Cmd {
	path := filepath.Join(c.bin, name)
	if c.runAs != "" {
		return exec.Command("runuser", append([]string{"-u", c.runAs, "--", path}, args...)...)
	}
	return exec.Command(path, args...)
}

// FindBinaries returns the directory holding initdb and pg_ctl: from PATH,
// or the newest /usr/lib/postgresql/*/bin.
func FindBinaries() (string, error) {
	if p, err := exec.LookPath("initdb"); err == nil {
		if real, err := filepath.EvalSymlinks(p); err == nil {
			p = real // Debian links /usr/lib/postgresql/N/bin/initdb onto PATH
		}
		dir := filepath.Dir(p)
		if _, err := os.Stat(filepath.Join(dir, "pg_ctl")); err == nil {
			return dir, nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	slices.SortFunc(dirs, func(a, b string) int {
		va, _ := strconv.Atoi(filepath.Base(filepath.Dir(a)))
		vb, _ := strconv.Atoi(filepath.Base(filepath.Dir(b)))
		return vb - va
	})
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d, nil
		}
	}
	return "", ErrNoBinaries
}

// ErrNoBinaries is FindBinaries' error when PostgreSQL's server is not
// installed.
var ErrNoBinaries = errors.New("no PostgreSQL server found: install its binaries (Debian: apt-get install postgresql) " +
	"so that initdb and pg_ctl are on PATH or under /usr/lib/postgresql/*/bin")

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Dump returns a plain-text pg_dump of the database at url, schema and
// data, with the random \restrict lines of recent pg_dump versions
// removed so that two dumps of one state are equal.
func Dump(url string) ([]byte, error) {
	bin, err := FindBinaries()
	if err != nil {
		return nil, err
	}
	out, err := exec.Command(filepath.Join(bin, "pg_dump"), "--no-owner", "--dbname", url).Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		return nil, fmt.Errorf("pg_dump: %v: %s", err, stderr)
	}
	lines := bytes.Split(out, []byte("\n"))
	kept := lines[:0]
	for _, l := range lines {
		if !bytes.HasPrefix(l, []byte(`\restrict `)) && !bytes.HasPrefix(l, []byte(`\unrestrict `)) {
			kept = append(kept, l)
		}
	}
	return bytes.Join(kept, []byte("\n")), nil
}
