package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"unicode/utf8"

	"github.com/alecthomas/kong"

	"github.com/keygate/keygate/keystore"
)

// envPrefix starts the environment variable that every flag also reads:
// --grpc-addr is KEYGATE_GRPC_ADDR.
const envPrefix = "KEYGATE_"

// cli is the whole command line.
type cli struct {
	Serve      serveCmd      `cmd:"" help:"Decide requests for Envoy (gRPC ext_authz and http_service), nginx, Caddy and Traefik until SIGTERM or SIGINT, then drain."`
	Dev        devCmd        `cmd:"" help:"Run locally in one command: a throwaway PostgreSQL (unless DATABASE_URL is set), a demo key, an admin token, and serve."`
	Migrate    migrateCmd    `cmd:"" help:"Apply the database schema migrations (idempotent, safe with concurrent replicas)."`
	Keys       keysCmd       `cmd:"" help:"Manage API keys: create, list, show, update, revoke, disable, enable, rotate, import."`
	AdminToken adminTokenCmd `cmd:"" name:"admin-token" help:"Make admin tokens for the admin API and the console."`
	Health     healthCmd     `cmd:"" help:"Ask a running keygate whether it is serving: exit 0 if so, 1 if not (for exec health checks)."`
	Version    versionCmd    `cmd:"" help:"Print version and build information."`
}

// env is what commands need from their surroundings; run builds it once,
// so that tests can run commands with their own.
type env struct {
	ctx    context.Context
	getenv func(string) string
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	// terminal reports whether stdin is a terminal someone answers at.
	terminal bool
}

// interactive reports whether a command may ask its user a question.
func (e *env) interactive() bool { return e.terminal && e.stdin != nil }

// exitError carries an exit status; err nil means the message was printed
// already (kong's help and usage errors).
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}

func (e *exitError) Unwrap() error { return e.err }

// usageError is bad input from the user: exit status 2, nothing done.
func usageError(format string, args ...any) error {
	return &exitError{code: 2, err: fmt.Errorf(format, args...)}
}

// run parses args and runs the chosen command. It is main without the
// process: tests call it with their own arguments, environment and output.
// It asks no questions (no terminal); runInteractive may.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	return runInteractive(ctx, args, getenv, nil, false, stdout, stderr)
}

// runInteractive is run with an input to ask questions on when terminal
// says someone answers there (keys delete's confirmation).
func runInteractive(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, terminal bool, stdout, stderr io.Writer) (err error) {
	var c cli
	parser, err := kong.New(&c,
		kong.Name("keygate"),
		kong.Description("API-key authentication and authorization for services behind Envoy, Istio, nginx, Caddy or Traefik.\n\n"+
			"Server and connection settings can also be set with an environment variable: --grpc-addr as KEYGATE_GRPC_ADDR; "+
			"the database also comes from DATABASE_URL or the standard PG* variables. Flags that describe one key or "+
			"token (--name, --scope, --no-expiry…) are read from the command line only."),
		kong.Writers(stdout, stderr),
		kong.Exit(func(code int) { panic(&exitError{code: code}) }),
		kong.Resolvers(envResolver(getenv)),
		kong.PostBuild(documentEnv),
		kong.ConfigureHelp(kong.HelpOptions{Compact: true}),
		kong.Vars{"admin_addr": defaultAdminAddr},
	)
	if err != nil {
		return err
	}
	defer func() {
		// kong exits (help, or an error it already printed) by calling the
		// Exit option, which panics with an exitError.
		if r := recover(); r != nil {
			ex, ok := r.(*exitError)
			if !ok {
				panic(r)
			}
			err = ex
		}
	}()
	if len(args) == 0 {
		args = []string{"--help"} // a bare `keygate` shows what it can do
	}
	if err := checkUTF8(args); err != nil {
		return err
	}
	kctx, err := parser.Parse(args)
	if err != nil {
		help := "keygate --help"
		var perr *kong.ParseError
		if errors.As(err, &perr) && perr.Context != nil {
			if cmd := perr.Context.Command(); cmd != "" {
				help = "keygate " + strings.Join(strings.Fields(stripArgs(cmd)), " ") + " --help"
			}
		}
		return &exitError{code: 2, err: fmt.Errorf("%w (see %s)", negativeDuration(err), help)}
	}
	e := &env{ctx: ctx, getenv: getenv, stdin: stdin, terminal: terminal, stdout: stdout, stderr: stderr}
	return kctx.Run(e)
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

// envName is the environment variable that sets a flag.
func envName(flag string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// perInvocation are the commands whose flags describe one key or token:
// only their connection settings (settingFlags) come from the environment,
// so that a KEYGATE_NAME or KEYGATE_NO_EXPIRY left in a shell never renames
// a key or makes one that never expires.
var perInvocation = map[string]bool{"keys": true, "admin-token": true}

// settingFlags are the flags of those commands that are settings: the
// database, and the key format every replica and the CLI must share.
var settingFlags = map[string]bool{"database-url": true, "key-prefix": true, "pepper-file": true, "pepper": true, "max-key-lifetime": true}

// readsEnv reports whether a flag of a command (perInvocation or not)
// may come from the environment.
func readsEnv(flag string, invocation bool) bool {
	return flag != "help" && (!invocation || settingFlags[flag])
}

// underPerInvocation reports whether n is, or is below, a perInvocation
// command.
func underPerInvocation(n *kong.Node) bool {
	for ; n != nil; n = n.Parent {
		if n.Type == kong.CommandNode && perInvocation[n.Name] {
			return true
		}
	}
	return false
}

// envResolver gives flags not set on the command line their value from
// the environment: KEYGATE_<FLAG>, and DATABASE_URL for --database-url
// (see readsEnv for which flags).
func envResolver(getenv func(string) string) kong.Resolver {
	return kong.ResolverFunc(func(ctx *kong.Context, _ *kong.Path, flag *kong.Flag) (any, error) {
		if !readsEnv(flag.Name, underPerInvocation(ctx.Selected())) {
			return nil, nil
		}
		if v := getenv(envName(flag.Name)); v != "" {
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

// documentEnv appends the environment variable of each flag that reads
// one to its help.
func documentEnv(k *kong.Kong) error {
	var walk func(n *kong.Node)
	walk = func(n *kong.Node) {
		invocation := underPerInvocation(n)
		for _, f := range n.Flags {
			if readsEnv(f.Name, invocation) {
				f.Help += " ($" + envName(f.Name) + ")"
			}
		}
		for _, c := range n.Children {
			walk(c)
		}
	}
	walk(k.Model.Node)
	return nil
}
