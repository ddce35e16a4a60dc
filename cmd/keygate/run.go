package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/alecthomas/kong"

	"github.com/keygate/keygate/admin"
	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/authz/forwardauth"
	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/keystore/postgres"
)

// envPrefix starts the environment variable that every flag also reads:
// --grpc-addr is KEYGATE_GRPC_ADDR.
const envPrefix = "KEYGATE_"

// cli is the whole command line.
type cli struct {
	Serve      serveCmd      `cmd:"" help:"Decide requests for Envoy (gRPC ext_authz and http_service), nginx, Caddy and Traefik until SIGTERM or SIGINT, then drain."`
	Dev        devCmd        `cmd:"" help:"Run locally in one command, with nothing installed: a throwaway embedded database (or --database-url), a demo key, an admin token, the console, on 127.0.0.1."`
	Migrate    migrateCmd    `cmd:"" help:"Apply the database schema migrations (idempotent, safe with concurrent replicas)."`
	Keys       keysCmd       `cmd:"" help:"Manage API keys: create, list, change, rotate, revoke and delete them, and read their history and usage."`
	Store      storeCmd      `cmd:"" help:"Act on a store as a whole: copy it to another database (SQLite to PostgreSQL)."`
	AdminToken adminTokenCmd `cmd:"" name:"admin-token" help:"Make admin tokens for the admin API and the console."`
	Webhooks   webhooksCmd   `cmd:"" help:"Manage webhook endpoints: create, change and delete them, rotate their secrets, and read and redeliver their deliveries."`
	Health     healthCmd     `cmd:"" help:"Ask a running keygate whether it is serving: exit 0 if so, 1 if not (for exec health checks)."`
	Version    versionCmd    `cmd:"" help:"Print version and build information."`
}

// run parses args and runs the chosen command. It is main without the
// process: tests call it with their own arguments, environment and output.
// It asks no questions (no terminal); runInteractive may.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	return runInteractive(ctx, args, getenv, nil, false, stdout, stderr)
}

// runInteractive is run with an input to ask questions on when terminal
// says someone answers there (keys delete's confirmation).
func runInteractive(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, terminal bool, stdout, stderr io.Writer) error {
	var c cli
	kctx, err := parse(&c, args, getenv, stdout, stderr)
	if err != nil {
		return err
	}
	e := &env{ctx: ctx, getenv: getenv, stdin: stdin, terminal: terminal, stdout: stdout, stderr: stderr}
	return kctx.Run(e)
}

// parse reads args, and the environment through getenv, into c; help and
// kong's own errors are written to stdout and stderr. Tests call it to
// make a command without running it.
func parse(c *cli, args []string, getenv func(string) string, stdout, stderr io.Writer) (kctx *kong.Context, err error) {
	parser, err := kong.New(c,
		kong.Name("keygate"),
		kong.Description("API-key authentication and authorization for services behind Envoy, Istio, nginx, Caddy or Traefik.\n\n"+
			"Server and connection settings can also be set with an environment variable: --grpc-addr as KEYGATE_GRPC_ADDR; "+
			"the database (--database-url: sqlite:PATH for the embedded store, or postgres://… for PostgreSQL) also comes from "+
			"DATABASE_URL, and for PostgreSQL from the standard PG* variables. Flags that describe one key or "+
			"token (--name, --scope, --no-expiry…) are read from the command line only."),
		kong.Writers(stdout, stderr),
		kong.Exit(func(code int) { panic(&exitError{code: code}) }),
		kong.Resolvers(envResolver(getenv)),
		kong.ExplicitGroups(flagGroups),
		kong.PostBuild(documentFlags),
		kong.ConfigureHelp(kong.HelpOptions{Compact: true}),
		flagDefaults(),
	)
	if err != nil {
		return nil, err
	}
	defer func() {
		// kong exits (help, or an error it already printed) by calling the
		// Exit option, which panics with an exitError.
		if r := recover(); r != nil {
			ex, ok := r.(*exitError)
			if !ok {
				panic(r)
			}
			kctx, err = nil, ex
		}
	}()
	if len(args) == 0 {
		args = []string{"--help"} // a bare `keygate` shows what it can do
	}
	if err := checkUTF8(args); err != nil {
		return nil, err
	}
	kctx, err = parser.Parse(args)
	if err != nil {
		help := "keygate --help"
		var perr *kong.ParseError
		if errors.As(err, &perr) && perr.Context != nil {
			if cmd := perr.Context.Command(); cmd != "" {
				help = "keygate " + strings.Join(strings.Fields(stripArgs(cmd)), " ") + " --help"
			}
		}
		return nil, &exitError{code: 2, err: fmt.Errorf("%w (see %s)", negativeDuration(err), help)}
	}
	return kctx, nil
}

// The defaults of keygate's own settings (the packages' defaults are
// theirs: flagDefaults reads them).
const (
	defaultGRPCAddr        = ":9001"
	defaultHTTPAddr        = ":9002"
	defaultDrainDelay      = 5 * time.Second
	defaultShutdownTimeout = 15 * time.Second
	defaultHealthTimeout   = 2 * time.Second
)

// flagDefaults are the flags' defaults as kong variables, each from the
// constant it stands for: a tag says default:"${cache_size}", never the
// value itself, so that a flag and the package it configures cannot
// disagree.
func flagDefaults() kong.Vars {
	vars := kong.Vars{
		"grpc_addr":           defaultGRPCAddr,
		"http_addr":           defaultHTTPAddr,
		"admin_addr":          defaultAdminAddr,
		"admin_failure_limit": strconv.Itoa(admin.DefaultFailureLimit.Count) + "/" + flagDuration(admin.DefaultFailureLimit.Window),
		"drain_delay":         flagDuration(defaultDrainDelay),
		"shutdown_timeout":    flagDuration(defaultShutdownTimeout),
		"health_timeout":      flagDuration(defaultHealthTimeout),
		"key_headers":         strings.Join(authz.DefaultKeyHeaders, ","),
		"identity_prefix":     authz.DefaultIdentityPrefix,
		"decision_log_rate":   strconv.Itoa(authz.DefaultDecisionLogRate),
		"envoy_http_prefix":   forwardauth.DefaultEnvoyPrefix,
		"lookup_timeout":      flagDuration(keystore.DefaultLoadTimeout),
		"cache_size":          strconv.Itoa(keystore.DefaultCacheKeys),
		"cache_fresh":         flagDuration(keystore.DefaultFresh),
		"cache_max_stale":     flagDuration(keystore.DefaultMaxStale),
		"negative_ttl":        flagDuration(keystore.DefaultNegativeTTL),
		"poll_interval":       flagDuration(keystore.DefaultPollInterval),
		"read_max_lag":        flagDuration(postgres.DefaultMaxReadLag),
		"last_used_interval":  flagDuration(keystore.DefaultUsageFlushInterval),
		"key_prefix":          keystore.DefaultPrefix,
		"key_lifetime":        keystore.FormatDuration(keystore.DefaultLifetime),
		"rotate_grace":        flagDuration(admin.DefaultGrace),
		"page_size":           strconv.Itoa(admin.DefaultPageSize),
		"max_page_size":       strconv.Itoa(admin.MaxPageSize),
		"max_deliveries_page": strconv.Itoa(keystore.MaxDeliveriesPage),
	}
	maps.Copy(vars, limitDefaults())
	return vars
}

// flagDuration writes d as people write it in a flag: "1m", "24h",
// "100ms" (time.Duration's String says "1m0s" and "24h0m0s").
func flagDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// checkUTF8 refuses an argument that is not UTF-8 before kong reads it:
// kong would replace its bytes with U+FFFD, and a key would be stored under
// a name nobody typed. The error names the flag the argument belongs to.
func checkUTF8(args []string) error {
	for i, a := range args {
		if utf8.ValidString(a) {
			continue
		}
		flag, _, _ := strings.Cut(a, "=")
		if !strings.HasPrefix(flag, "-") || !utf8.ValidString(flag) {
			flag = "an argument"
			if i > 0 && strings.HasPrefix(args[i-1], "-") && utf8.ValidString(args[i-1]) {
				flag = args[i-1]
			}
		}
		return usageError("%s: must be valid UTF-8", flag)
	}
	return nil
}

// shortFlagDuration is kong's error for a duration flag given "-5d",
// which it reads as a short flag.
var shortFlagDuration = regexp.MustCompile(`^(--[a-z-]+): expected duration value but got "(-[^"]*)" \(short flag\)`)

// negativeDuration turns kong's puzzling error for "--grace -1h" into the
// message ParseDuration gives for "--grace=-1h".
func negativeDuration(err error) error {
	if m := shortFlagDuration.FindStringSubmatch(err.Error()); m != nil {
		_, perr := keystore.ParseDuration(m[2])
		if perr == nil {
			perr = fmt.Errorf("%q is not a duration", m[2])
		}
		return fmt.Errorf("%s: %v", m[1], perr)
	}
	return err
}

// stripArgs drops positional placeholders like "<id>" from a kong command
// path such as "keys show <id>".
func stripArgs(cmd string) string {
	var out []string
	for _, w := range strings.Fields(cmd) {
		if !strings.HasPrefix(w, "<") {
			out = append(out, w)
		}
	}
	return strings.Join(out, " ")
}

// envName is the environment variable that sets a flag of the command n,
// or "" when it reads none (readsEnv): KEYGATE_<FLAG>, or for the health
// command's own flags KEYGATE_HEALTH_<FLAG>, so that a KEYGATE_TIMEOUT or
// KEYGATE_TLS set for something else never changes a health check (its
// --grpc-addr reads KEYGATE_GRPC_ADDR, serve's: in serve's environment it
// finds serve).
func envName(flag string, n *kong.Node) string {
	if !readsEnv(flag, n) {
		return ""
	}
	prefix := envPrefix
	if under(n, health) && flag != "grpc-addr" {
		prefix += "HEALTH_"
	}
	return prefix + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// health is the health command, as under takes it.
var health = map[string]bool{"health": true}

// settingsCommands are the commands whose flags are settings, each of
// which also comes from the environment (KEYGATE_<FLAG>). Every other
// command's flags describe one invocation (a key, a token, a webhook
// endpoint, an output format): only their connection settings
// (settingFlags) come from the environment, so that a KEYGATE_NAME,
// KEYGATE_NO_EXPIRY or KEYGATE_ALLOW_LINK_LOCAL left in a shell never
// renames a key, makes one that never expires or opens a webhook to a
// metadata address. A new command is per invocation unless listed here.
var settingsCommands = map[string]bool{"serve": true, "dev": true, "migrate": true, "health": true}

// settingFlags are the flags of the other commands that are settings: the
// database, the key format every replica and the CLI must share, and the
// policy new scopes are judged by.
var settingFlags = map[string]bool{"database-url": true, "key-prefix": true, "pepper-file": true, "pepper": true, "max-key-lifetime": true,
	"policy": true}

// readsEnv reports whether a flag of a command may come from the
// environment. dev never takes its database from the
// environment: a shell pointing DATABASE_URL at a real database must not
// get a demo key there.
func readsEnv(flag string, n *kong.Node) bool {
	if flag == "help" || flag == "database-url" && under(n, dev) {
		return false
	}
	return under(n, settingsCommands) || settingFlags[flag]
}

// under reports whether n is, or is below, a command among commands.
func under(n *kong.Node, commands map[string]bool) bool {
	for ; n != nil; n = n.Parent {
		if n.Type == kong.CommandNode && commands[n.Name] {
			return true
		}
	}
	return false
}

// dev is the dev command, as under takes it.
var dev = map[string]bool{"dev": true}

// envResolver gives flags not set on the command line their value from
// the environment: KEYGATE_<FLAG>, and DATABASE_URL for --database-url
// (see readsEnv for which flags).
func envResolver(getenv func(string) string) kong.Resolver {
	return kong.ResolverFunc(func(ctx *kong.Context, _ *kong.Path, flag *kong.Flag) (any, error) {
		env := envName(flag.Name, ctx.Selected())
		if env == "" {
			return nil, nil
		}
		if v := getenv(env); v != "" {
			return v, nil
		}
		if flag.Name == "database-url" {
			if v := getenv("DATABASE_URL"); v != "" {
				return v, nil
			}
		}
		return nil, nil
	})
}
