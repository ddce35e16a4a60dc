package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/keygate/keygate/internal/pgcluster"
	"github.com/keygate/keygate/keystore"
)

type devCmd struct {
	dbFlags
	keyFlags
	serveFlags
	Postgres  bool   `help:"Run on a throwaway PostgreSQL cluster (needs PostgreSQL's server binaries: initdb, pg_ctl) instead of a throwaway SQLite file."`
	LogFormat string `enum:"json,text" default:"text" help:"Log format: json or text."`
	LogLevel  string `default:"info" enum:"debug,info,warn,error" help:"Least severe level logged."`

	secret keystore.Secret `kong:"-"` // the demo key
}

// devAddr is where dev listens by default: this machine only, since its
// demo key and admin token are printed on the terminal.
const devHost = "127.0.0.1"

// Run starts on a throwaway database unless --database-url names one (it
// never reads DATABASE_URL: a shell pointing at a real database must not
// get a demo key there), migrates it, creates a demo key, prints how to
// use it, and serves on 127.0.0.1.
func (c *devCmd) Run(e *env) error {
	logger, err := newLogger(e.stderr, c.LogFormat, c.LogLevel)
	if err != nil {
		return err
	}
	if c.Postgres && c.DatabaseURL != "" {
		return usageError("--postgres starts a throwaway PostgreSQL: it can't be used with --database-url")
	}
	c.localListeners()
	throwaway := c.DatabaseURL == ""
	switch {
	case c.Postgres:
		fmt.Fprintln(e.stdout, "Starting a throwaway PostgreSQL…")
		cluster, err := pgcluster.Start()
		if err != nil {
			return fmt.Errorf("starting PostgreSQL: %w (without --postgres, dev needs nothing installed)", err)
		}
		defer cluster.Destroy()
		c.DatabaseURL = cluster.URL()
	case throwaway:
		dir, err := os.MkdirTemp("", "keygate-dev-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		c.DatabaseURL = sqliteScheme + filepath.Join(dir, "keygate.db")
	}
	db, err := c.database(func(string) string { return "" })
	if err != nil {
		return err
	}
	if !throwaway {
		fmt.Fprintf(e.stdout, "keygate dev writes to the %s: it migrates it and adds a demo key.\n", db.where())
	}
	b, err := db.open(e.ctx, forMigration, nil)
	if err != nil {
		return err
	}
	_, err = db.migrate(e.ctx, b, logger)
	if err == nil {
		err = c.demoKey(e.ctx, b)
	}
	b.Close()
	if err != nil {
		return err
	}
	c.Reflection = true // for grpcurl, on 127.0.0.1 only
	adminToken, removeTokens, err := c.devAdminToken()
	if err != nil {
		return fmt.Errorf("admin token: %w", err)
	}
	defer removeTokens()
	var adminAddr net.Addr
	c.onListen = func(a net.Addr) { adminAddr = a }
	return serve(e, logger, c.dbFlags, c.keyFlags, c.serveFlags, func(grpcAddr, httpAddr net.Addr) {
		printDevGuide(e, c.secret, grpcAddr, httpAddr, db, throwaway, devConsoleGuide(adminAddr, adminToken))
	})
}

// localListeners moves listeners left at their defaults to 127.0.0.1.
func (c *devCmd) localListeners() {
	for _, addr := range []*string{&c.GRPCAddr, &c.HTTPAddr} {
		if host, port, err := net.SplitHostPort(*addr); err == nil && host == "" {
			*addr = net.JoinHostPort(devHost, port)
		}
	}
}

// demoKey creates a key for the guide: account "demo", a day to live.
func (c *devCmd) demoKey(ctx context.Context, b keystore.Backend) error {
	store, err := c.keyFlags.store(b, keystore.Options{})
	if err != nil {
		return err
	}
	_, c.secret, err = store.Create(ctx, keystore.CreateParams{
		AccountID: "demo", Name: "keygate dev demo key", Description: "created by keygate dev",
		Expiry: keystore.Expiry{In: 24 * time.Hour}, Actor: "keygate dev",
	})
	if err != nil {
		return c.storeError(err, "")
	}
	return nil
}

func printDevGuide(e *env, secret keystore.Secret, grpcAddr, httpAddr net.Addr, db database, throwaway bool, console string) {
	g, h := dialable(grpcAddr), dialable(httpAddr)
	self, grpcurl := invocation()
	check := func(method, path string) string {
		body := fmt.Sprintf(`{"attributes":{"request":{"http":{"method":%q,"path":%q,"headers":{"x-api-key":%q}}}}}`,
			method, path, secret.Reveal())
		return fmt.Sprintf("%s -plaintext -d '%s' %s envoy.service.auth.v3.Authorization/Check", grpcurl, body, g)
	}
	fmt.Fprintf(e.stdout, `
keygate is running, on this machine only (127.0.0.1), on the %s.

  Demo key (account "demo", expires in 24h; shown once):

    %s

%s
  The same decision over gRPC, as Envoy asks it. Allowed: projects is open to API keys
  (status {} and okResponse with x-keygate-* headers):

    %s

  Denied: users is closed to API keys (status code 7, 403 module_forbidden):

    %s
%s
  Health and metrics:

    curl -s http://%s/readyz
    curl -s http://%s/metrics | grep keygate_

  More keys, in another terminal (in this directory):

    %s keys create --database-url '%s' --account demo --name second

Press Ctrl-C to stop.
`, db.where(), secret.Reveal(), forwardAuthGuide(secret.Reveal(), h), check("GET", "/api/v1/projects"), check("GET", "/api/v1/users/42"),
		console, h, h, self, devDatabase(db, throwaway))
	if throwaway {
		fmt.Fprintln(e.stdout, "The throwaway database is deleted when keygate dev stops.")
	}
}

// invocation is how to run keygate and grpcurl from the shell dev runs
// in, as a command a user can paste: "go run ./cmd/keygate" and "go tool
// grpcurl" (the module's tool) when dev itself was started with go run,
// keygate's own path otherwise, and grpcurl from PATH when it is there.
func invocation() (self, grpcurl string) {
	self, grpcurl = "keygate", "grpcurl"
	exe, err := os.Executable()
	fromGoRun := err == nil && strings.Contains(filepath.ToSlash(exe), "/go-build")
	switch {
	case fromGoRun:
		self = "go run ./cmd/keygate"
	case err == nil:
		if onPath, lerr := exec.LookPath(filepath.Base(exe)); lerr != nil || onPath != exe {
			self = exe
		}
	}
	if _, err := exec.LookPath("grpcurl"); err != nil {
		grpcurl = "go tool grpcurl" // the keygate module's tool directive: works in its directory
	}
	return self, grpcurl
}

// devDatabase is the --database-url to show: the throwaway one's, or a
// stand-in for the user's own PostgreSQL URL, whose password must not be
// printed.
func devDatabase(db database, throwaway bool) string {
	switch {
	case db.kind == sqliteDB:
		return sqliteScheme + db.path
	case throwaway:
		return db.conn // the throwaway cluster's: no password
	}
	return "<your --database-url>"
}

// dialable turns a listener address into one a client on this machine can
// dial: an unspecified host becomes localhost.
func dialable(a net.Addr) string {
	addr, _, err := dialAddr(a.String())
	if err != nil {
		return a.String()
	}
	return addr
}
