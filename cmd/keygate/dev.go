package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
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
	LogFormat string `enum:"json,text" default:"text" help:"Log format: json or text."`
	LogLevel  string `default:"info" enum:"debug,info,warn,error" help:"Least severe level logged."`
}

// Run starts a throwaway PostgreSQL unless a database is configured,
// migrates it, creates a demo key, prints how to use it, and serves.
func (c *devCmd) Run(e *env) error {
	logger, err := newLogger(e.stderr, c.LogFormat, c.LogLevel)
	if err != nil {
		return err
	}
	throwaway := c.DatabaseURL == "" && e.getenv("PGHOST") == ""
	if throwaway {
		fmt.Fprintln(e.stdout, "Starting a throwaway PostgreSQL (set DATABASE_URL to use your own)…")
		cluster, err := pgcluster.Start()
		if err != nil {
			return fmt.Errorf("starting PostgreSQL: %w", err)
		}
		defer cluster.Destroy()
		c.DatabaseURL = cluster.URL()
	}
	c.Reflection = true // for grpcurl
	c.Migrate = true
	adminToken, removeTokens, err := c.devAdminToken()
	if err != nil {
		return fmt.Errorf("admin token: %w", err)
	}
	defer removeTokens()
	cfg, err := c.config(c.dbFlags, c.keyFlags, logger)
	if err != nil {
		return err
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
	printDevGuide(e, secret, srv.grpcAddr(), srv.httpAddr(), c.DatabaseURL, throwaway, devConsoleGuide(srv.adminAddr(), adminToken))
	return srv.Run(e.ctx)
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

func printDevGuide(e *env, secret keystore.Secret, grpcAddr, httpAddr net.Addr, dbURL string, throwaway bool, console string) {
	g, h := dialable(grpcAddr), dialable(httpAddr)
	check := func(method, path string) string {
		body := fmt.Sprintf(`{"attributes":{"request":{"http":{"method":%q,"path":%q,"headers":{"x-api-key":%q}}}}}`,
			method, path, secret.Reveal())
		return fmt.Sprintf("grpcurl -plaintext -d '%s' %s %s/Check", body, g, extauthz.ServiceName)
	}
	fmt.Fprintf(e.stdout, `
keygate is running.

  Demo key (account "demo", expires in 24h; shown once):

    %s

  Allowed: projects is open to API keys (status {} and okResponse with x-keygate-* headers):

    %s

  Denied: users is closed to API keys (status code 7, 403 module_forbidden):

    %s

%s
  Health and metrics:

    curl -s http://%s/readyz
    curl -s http://%s/metrics | grep keygate_
%s
  No grpcurl? 'go install github.com/fullstorydev/grpcurl/cmd/grpcurl@latest', or inside the
  keygate repository use 'go tool grpcurl'.

  More keys, in another terminal:

    DATABASE_URL='%s' keygate keys create --account demo --name second

Press Ctrl-C to stop.
`, secret.Reveal(), check("GET", "/api/v1/projects"), check("GET", "/api/v1/users/42"), forwardAuthGuide(secret.Reveal(), h), h, h, console, devDatabase(dbURL, throwaway))
	if throwaway {
		fmt.Fprintln(e.stdout, "The throwaway database is deleted when keygate dev stops.")
	}
}

// devDatabase is the connection string to show: the throwaway cluster's
// (no password), or a stand-in for the user's own, whose password must
// not be printed.
func devDatabase(url string, throwaway bool) string {
	if throwaway {
		return url
	}
	return "<your DATABASE_URL>"
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
