package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/keygate/keygate/admin"
	"github.com/keygate/keygate/internal/failurelimit"
	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/policy"
)

// adminFlags configure the admin listener; serve and dev share them.
type adminFlags struct {
	AdminAddr         string `name:"admin-addr" default:"${admin_addr}" help:"Address of the admin listener: the admin REST API and the web console. Off unless --admin-tokens-file is set."`
	AdminTokensFile   string `name:"admin-tokens-file" type:"path" placeholder:"FILE" help:"YAML list of admin tokens (name, sha256, account) made by 'keygate admin-token new'; re-read on SIGHUP. Turns the admin listener on."`
	AdminFailureLimit string `name:"admin-failure-limit" placeholder:"COUNT/WINDOW" help:"Refuse a source address that sent COUNT admin tokens that are not valid within WINDOW (IPv6 addresses per /64): its requests without a valid token get 429 with Retry-After until the window has passed; a valid token is never refused. Default: 20/1m."`

	// onListen, when set, is told the admin listener's address (dev).
	onListen func(net.Addr) `kong:"-"`
}

// defaultAdminAddr is --admin-addr's default: loopback only.
const defaultAdminAddr = "127.0.0.1:9003"

// loadTokens checks the admin flags and reads the admin tokens file, or
// returns nil when the admin listener is off.
func (f adminFlags) loadTokens(logger *slog.Logger) (*admin.Tokens, error) {
	if f.AdminTokensFile == "" {
		if f.AdminAddr != defaultAdminAddr {
			logger.Warn("--admin-addr is set but the admin listener is off: it needs --admin-tokens-file")
		}
		return nil, nil
	}
	if _, _, err := net.SplitHostPort(f.AdminAddr); err != nil {
		return nil, usageError("--admin-addr: %v", err)
	}
	if _, err := f.failureLimit(); err != nil {
		return nil, err
	}
	tokens, err := admin.LoadTokens(f.AdminTokensFile)
	if err != nil {
		return nil, usageError("--admin-tokens-file: %s", oneLineError(err))
	}
	return tokens, nil
}

// failureLimit reads --admin-failure-limit; "" is admin's default.
func (f adminFlags) failureLimit() (failurelimit.Limit, error) {
	if f.AdminFailureLimit == "" {
		return admin.DefaultFailureLimit, nil
	}
	l, err := failurelimit.Parse(f.AdminFailureLimit)
	if err != nil {
		return l, usageError("--admin-failure-limit: %v", err)
	}
	return l, nil
}

// adminListener is the admin API and console of serve; nil when off. Its
// methods do nothing on nil.
type adminListener struct {
	lis    net.Listener
	server *http.Server
	tokens *admin.Tokens
	logger *slog.Logger
}

// listenAdmin builds the admin server and listens on --admin-addr, when
// tokens are configured.
func listenAdmin(f adminFlags, tokens *admin.Tokens, store *keystore.Store, pol *policy.Policy, logger *slog.Logger,
	instrument func(string, http.Handler) http.Handler) (*adminListener, error) {
	if tokens == nil {
		return nil, nil
	}
	limit, err := f.failureLimit()
	if err != nil {
		return nil, err
	}
	handler, err := admin.New(admin.Config{Store: store, Policy: pol, Tokens: tokens, Logger: logger, FailureLimit: limit})
	if err != nil {
		return nil, err
	}
	lis, err := net.Listen("tcp", f.AdminAddr)
	if err != nil {
		return nil, usageError("--admin-addr: %v", err)
	}
	if f.onListen != nil {
		f.onListen(lis.Addr())
	}
	return &adminListener{
		lis: lis, tokens: tokens, logger: logger,
		server: &http.Server{Handler: instrument("admin", handler), ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 30 * time.Second,
			WriteTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 64 << 10},
	}, nil
}

func (a *adminListener) close() {
	if a != nil {
		a.lis.Close()
	}
}

// start serves until shutdown, and re-reads the tokens file on every
// SIGHUP until ctx ends: a bad file keeps the tokens that were valid and
// logs one error naming the file and line.
func (a *adminListener) start(ctx context.Context, wg *sync.WaitGroup, errs chan<- error) {
	if a == nil {
		return
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	wg.Go(func() {
		defer signal.Stop(hup)
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				if err := a.tokens.Reload(); err != nil {
					a.logger.Error("admin tokens not reloaded; the previous tokens stay valid", "error", oneLineError(err))
				} else {
					a.logger.Info("admin tokens reloaded", "file", a.tokens.Path(), "tokens", a.tokens.Len())
				}
			}
		}
	})
	wg.Go(func() {
		if err := a.server.Serve(a.lis); !errors.Is(err, http.ErrServerClosed) {
			errs <- fmt.Errorf("admin listener: %w", err)
		}
	})
	a.logger.Info("admin API and console serving", "admin_addr", a.lis.Addr().String(), "tokens", a.tokens.Len(), "tokens_file", a.tokens.Path())
}

// shutdown stops accepting and waits for requests in flight, until ctx
// ends.
// useTLS makes the listener serve TLS with cfg.
func (a *adminListener) useTLS(cfg *tls.Config) {
	if a != nil {
		a.lis = tls.NewListener(a.lis, cfg)
	}
}

func (a *adminListener) shutdown(ctx context.Context) {
	if a != nil {
		_ = a.server.Shutdown(ctx)
	}
}

type adminTokenCmd struct {
	New adminTokenNewCmd `cmd:"" help:"Make an admin token: print it once, and the entry for the tokens file."`
}

type adminTokenNewCmd struct {
	outputFlag
	Name    string  `required:"" help:"Name of the token: the audit trail records its changes as admin:NAME."`
	Account *string `placeholder:"ID" help:"The one account the token may manage. Default: every account."`
}

func (c *adminTokenNewCmd) Run(e *env) error {
	var account string
	if c.Account != nil {
		// An empty --account (an unset variable in a script) must not
		// turn into every account.
		if account = *c.Account; account == "" {
			return usageError("--account: must not be empty; leave the flag out for a token that manages every account")
		}
	}
	token, entry, err := admin.NewToken(c.Name, account)
	if err != nil {
		return usageError("%v", err)
	}
	if c.Output == "json" {
		return writeJSON(e.stdout, struct {
			Token string `json:"token"`
			admin.TokenEntry
		}{token.Reveal(), entry})
	}
	entryYAML, err := yaml.Marshal([]admin.TokenEntry{entry})
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, `New admin token %q (shown once; keygate keeps only its SHA-256):

  %s

Add this entry to the admin tokens file (--admin-tokens-file), then send keygate
SIGHUP or restart it. Several tokens may be valid at once; delete an entry to
revoke its token.

%s`, c.Name, token.Reveal(), entryYAML)
	return nil
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
