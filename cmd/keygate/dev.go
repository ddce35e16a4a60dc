package main

import (
	"context"
	"fmt"
	"net"
	"time"

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
	cfg, err := c.connConfig()
	if err != nil {
		return err
	}
	if _, err := migrateSchema(e.ctx, cfg, logger); err != nil {
		return err
	}
	c.Reflection = true // for grpcurl
	secret, err := c.demoKey(e.ctx)
	if err != nil {
		return err
	}
	adminToken, removeTokens, err := c.devAdminToken()
	if err != nil {
		return fmt.Errorf("admin token: %w", err)
	}
	defer removeTokens()
	var adminAddr net.Addr
	c.onListen = func(a net.Addr) { adminAddr = a }
	return serve(e, logger, c.dbFlags, c.keyFlags, c.serveFlags, func(grpcAddr, httpAddr net.Addr) {
		printDevGuide(e, secret, grpcAddr, httpAddr, c.DatabaseURL, throwaway, devConsoleGuide(adminAddr, adminToken))
	})
}

// demoKey creates a key for the guide: account "demo", a day to live.
func (c *devCmd) demoKey(ctx context.Context) (keystore.Secret, error) {
	store, closeStore, err := openStore(ctx, c.dbFlags, &c.keyFlags)
	if err != nil {
		return "", err
	}
	defer closeStore()
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
		return fmt.Sprintf("grpcurl -plaintext -d '%s' %s envoy.service.auth.v3.Authorization/Check", body, g)
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
