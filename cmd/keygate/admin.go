package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
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
	AdminAddr         string `group:"listeners" name:"admin-addr" default:"${admin_addr}" help:"Address of the admin listener: the admin REST API and the web console. Off unless --admin-tokens-file is set."`
	AdminTokensFile   string `group:"listeners" name:"admin-tokens-file" type:"path" placeholder:"FILE" help:"YAML list of admin tokens (name, sha256, account) made by 'keygate admin-token new'; re-read on SIGHUP. Turns the admin listener on."`
	AdminFailureLimit string `group:"limits" name:"admin-failure-limit" default:"${admin_failure_limit}" placeholder:"COUNT/WINDOW" help:"Refuse a source address that sent COUNT admin tokens that are not valid within WINDOW (IPv6 addresses per /64): its requests without a valid token get 429 with Retry-After until the window has passed; a valid token is never refused."`
}

// defaultAdminAddr is --admin-addr's default: loopback only.
const defaultAdminAddr = "127.0.0.1:9003"

// adminConfig is the admin listener's checked configuration.
type adminConfig struct {
	addr         string
	tokens       *admin.Tokens // nil: the admin listener is off
	failureLimit failurelimit.Limit
	events       admin.EventsConfig
}

// config checks the admin flags and reads the admin tokens file, when the
// admin listener is on.
func (f adminFlags) config(logger *slog.Logger) (adminConfig, error) {
	if f.AdminTokensFile == "" {
		if f.AdminAddr != defaultAdminAddr {
			logger.Warn("--admin-addr is set but the admin listener is off: it needs --admin-tokens-file")
		}
		return adminConfig{}, nil
	}
	if _, _, err := net.SplitHostPort(f.AdminAddr); err != nil {
		return adminConfig{}, usageError("--admin-addr: %v", err)
	}
	limit, err := f.failureLimit()
	if err != nil {
		return adminConfig{}, err
	}
	tokens, err := admin.LoadTokens(f.AdminTokensFile)
	if err != nil {
		return adminConfig{}, usageError("--admin-tokens-file: %s", oneLineError(err))
	}
	return adminConfig{addr: f.AdminAddr, tokens: tokens, failureLimit: limit}, nil
}

// failureLimit reads --admin-failure-limit.
func (f adminFlags) failureLimit() (failurelimit.Limit, error) {
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

// listenAdmin builds the admin server and listens on its address, with
// TLS when tlsCfg is not nil, when the admin listener is on.
func listenAdmin(cfg adminConfig, store *keystore.Store, pol *policy.Policy, logger *slog.Logger,
	instrument func(string, http.Handler) http.Handler, tlsCfg *tls.Config) (*adminListener, error) {
	if cfg.tokens == nil {
		return nil, nil
	}
	handler, err := admin.New(admin.Config{Store: store, Policy: pol, Tokens: cfg.tokens, Logger: logger, FailureLimit: cfg.failureLimit, Events: cfg.events})
	if err != nil {
		return nil, err
	}
	lis, err := net.Listen("tcp", cfg.addr)
	if err != nil {
		return nil, usageError("--admin-addr: %v", err)
	}
	if tlsCfg != nil {
		lis = tls.NewListener(lis, tlsCfg)
	}
	return &adminListener{
		lis: lis, tokens: cfg.tokens, logger: logger,
		server: &http.Server{Handler: instrument("admin", handler), ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 30 * time.Second,
			WriteTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 64 << 10},
	}, nil
}

// addr is the listener's address; nil when off.
func (a *adminListener) addr() net.Addr {
	if a == nil {
		return nil
	}
	return a.lis.Addr()
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
	AddTo   string  `name:"add-to" type:"path" placeholder:"FILE" help:"Also add the token's entry to this admin tokens file (created, readable by its owner only, if it does not exist); a running keygate reads it again on SIGHUP."`
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
	if c.AddTo != "" {
		if err := addTokenEntry(c.AddTo, entry); err != nil {
			return err
		}
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

%s

%s`, c.Name, token.Reveal(), addedHow(c.AddTo), entryYAML)
	return nil
}

// addedHow says where the entry went, or where it should go.
func addedHow(file string) string {
	if file != "" {
		return fmt.Sprintf("Its entry is added to %s: keygate serve --admin-tokens-file %s reads it\n"+
			"(send a running keygate SIGHUP). Delete the entry to revoke the token.", file, file)
	}
	return "Add this entry to the admin tokens file (--admin-tokens-file), then send keygate\n" +
		"SIGHUP or restart it. Several tokens may be valid at once; delete an entry to\n" +
		"revoke its token."
}

// addTokenEntry adds entry to the tokens file at path, creating it (mode
// 0600) if needed, after checking that what it holds already is a valid
// tokens file, so that a mistake never leaves it half-written. An existing
// file keeps its comments, mode, owner and links: the entry is appended
// to the file as it is, once the whole is proven to load; only a file
// whose list cannot take an appended entry (a flow list like []) is
// written anew.
func addTokenEntry(path string, entry admin.TokenEntry) error {
	added, err := yaml.Marshal([]admin.TokenEntry{entry})
	if err != nil {
		return err
	}
	old, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return replaceTokensFile(path, added)
	case err != nil:
		return usageError("--add-to: %v", err)
	}
	tokens, err := admin.LoadTokens(path)
	if err != nil {
		return usageError("--add-to: %s", oneLineError(err))
	}
	var entries []admin.TokenEntry
	if err := yaml.Unmarshal(old, &entries); err != nil {
		return usageError("--add-to: %s: %v", path, err)
	}
	for _, e := range entries {
		if e.Name == entry.Name {
			return usageError("--add-to: %s has a token named %q already: choose another --name, or delete that entry first", path, entry.Name)
		}
	}
	if len(old) > 0 && old[len(old)-1] != '\n' {
		added = append([]byte("\n"), added...)
	}
	if loads(append(slices.Clip(old), added...), tokens.Len()+1) {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			return usageError("--add-to: %v", err)
		}
		if _, err := f.Write(added); err != nil {
			f.Close()
			return usageError("--add-to: %v", err)
		}
		return f.Close()
	}
	whole, err := yaml.Marshal(append(entries, entry))
	if err != nil {
		return err
	}
	return replaceTokensFile(path, whole)
}

// loads reports whether data is a tokens file of n tokens.
func loads(data []byte, n int) bool {
	dir, err := os.MkdirTemp("", "keygate-tokens-")
	if err != nil {
		return false
	}
	defer os.RemoveAll(dir)
	check := filepath.Join(dir, "tokens.yaml")
	if os.WriteFile(check, data, 0o600) != nil {
		return false
	}
	t, err := admin.LoadTokens(check)
	return err == nil && t.Len() == n
}

// replaceTokensFile writes a whole tokens file (mode 0600) through a
// temporary file renamed over it.
func replaceTokensFile(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return usageError("--add-to: %v", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return usageError("--add-to: %v", err)
	}
	return nil
}
