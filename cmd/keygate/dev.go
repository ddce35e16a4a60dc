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

	"go.yaml.in/yaml/v3"

	"github.com/keygate/keygate/admin"
	"github.com/keygate/keygate/authz/extauthz"
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
}

// devHost is where dev listens by default: this machine only, since its
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
	c.Reflection = true // for grpcurl, on 127.0.0.1 only
	c.Migrate = true
	adminToken, removeTokens, err := c.devAdminToken()
	if err != nil {
		return fmt.Errorf("admin token: %w", err)
	}
	defer removeTokens()
	noEnv := func(string) string { return "" }
	cfg, err := c.config(c.dbFlags, c.keyFlags, noEnv, logger)
	if err != nil {
		return err
	}
	if !throwaway {
		fmt.Fprintf(e.stdout, "keygate dev writes to the %s: it migrates it and adds a demo key.\n", cfg.store.db.where())
	}
	srv, err := build(e, logger, cfg)
	if err != nil {
		return err
	}
	defer srv.Close()
	secret, err := c.demoKey(e.ctx, srv.db.store)
	if err != nil {
		return err
	}
	printDevGuide(e, secret, srv.grpcAddr(), srv.httpAddr(), cfg.store.db, throwaway, devConsoleGuide(srv.adminAddr(), adminToken))
	return srv.Run(e.ctx)
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
func (c *devCmd) demoKey(ctx context.Context, store *keystore.Store) (keystore.Secret, error) {
	_, secret, err := store.Create(ctx, keystore.CreateParams{
		AccountID: "demo", Name: "keygate dev demo key", Description: "created by keygate dev",
		Expiry: keystore.Expiry{In: 24 * time.Hour}, Actor: "keygate dev",
	})
	if err != nil {
		return "", c.storeError(err, "")
	}
	return secret, nil
}

func printDevGuide(e *env, secret keystore.Secret, grpcAddr, httpAddr net.Addr, db database, throwaway bool, console string) {
	g, h := dialable(grpcAddr), dialable(httpAddr)
	self, grpcurl := invocation()
	check := func(method, path string) string {
		body := fmt.Sprintf(`{"attributes":{"request":{"http":{"method":%q,"path":%q,"headers":{"x-api-key":%q}}}}}`,
			method, path, secret.Reveal())
		return fmt.Sprintf("%s -plaintext -d '%s' %s %s/Check", grpcurl, body, g, extauthz.ServiceName)
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

// devAdminToken makes a fresh admin token for `keygate dev` in a tokens
// file of its own, unless one is configured, and returns the token ("" if
// configured) and the function that deletes the file.
func (f *adminFlags) devAdminToken() (keystore.Secret, func(), error) {
	if f.AdminTokensFile != "" {
		return "", func() {}, nil
	}
	token, entry, err := admin.NewToken("keygate dev", "")
	if err != nil {
		return "", nil, err
	}
	dir, err := os.MkdirTemp("", "keygate-dev-")
	if err != nil {
		return "", nil, err
	}
	b, err := yaml.Marshal([]admin.TokenEntry{entry})
	if err == nil {
		f.AdminTokensFile = filepath.Join(dir, "admin-tokens.yaml")
		err = os.WriteFile(f.AdminTokensFile, b, 0o600)
	}
	if err != nil {
		os.RemoveAll(dir)
		return "", nil, err
	}
	return token, func() { os.RemoveAll(dir) }, nil
}

// devConsoleGuide is the part of the dev guide about the console.
func devConsoleGuide(addr net.Addr, token keystore.Secret) string {
	if addr == nil {
		return ""
	}
	url := "http://" + dialable(addr) + "/"
	signIn := "Sign in with one of the tokens of your --admin-tokens-file."
	if token != "" {
		signIn = fmt.Sprintf("Admin token (sign in with it; shown once):\n\n    %s", token.Reveal())
	}
	return fmt.Sprintf(`
  Console (Settings → API Keys) and admin API:

    %s

  %s

  The admin API with curl (ADMIN_TOKEN set to the token):

    curl -s -H "Authorization: Bearer $ADMIN_TOKEN" '%sv1/keys?status=all'
`, url, signIn, url)
}
