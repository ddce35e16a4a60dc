package authz

import (
	"fmt"
	"log/slog"
	"strings"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/keygate/keygate/internal/failurelimit"
	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/policy"
)

// Config configures a Server. Policy, Hasher and Lookup are required; the
// zero value of every other field selects the documented default.
type Config struct {
	// Lookup finds keys by digest: the cache in front of the store.
	Lookup KeyLookup
	// Policy maps paths to modules and closes modules to API keys.
	Policy *policy.Policy
	// Hasher hashes presented keys the way the store hashed them.
	Hasher *keystore.Hasher
	// KeyHeaders are read for the key, in order. Default: DefaultKeyHeaders.
	// "authorization" and "proxy-authorization" carry "Bearer <key>".
	KeyHeaders []string
	// IdentityPrefix starts the upstream identity headers (key-id,
	// account-id, scopes, module). Default: DefaultIdentityPrefix.
	IdentityPrefix string
	// MetaHeaders are the keys' metadata entries sent upstream as
	// headers: <IdentityPrefix>meta-<key>, with '_' written '-' (nginx drops
	// header names with underscores, CGI-style backends mangle them). At
	// most keystore.MaxMetadata. Default: none (every entry is in Envoy's
	// dynamic metadata either way).
	MetaHeaders []string
	// KeepCredentials forwards the key header upstream; by default
	// Identity lists it for removal, so that the upstream never sees the
	// key.
	KeepCredentials bool
	// Usage, when set, learns of every allowed request.
	Usage UsageRecorder
	// Limiter, when set, counts the requests of keys with limits (the
	// step after scopes); Counter, when set, counts every decision of an
	// authenticated key by outcome (usage per key). See limits.go.
	Limiter Limiter
	Counter DecisionCounter
	// Metrics, when set, counts decisions.
	Metrics *Metrics
	// Logger logs recovered panics. Default: discard.
	Logger *slog.Logger
	// DecisionLog chooses the decisions written to DecisionLogger, one
	// JSON line each, at most DecisionLogRate a second (default
	// DefaultDecisionLogRate). Default: off.
	DecisionLog     DecisionLogMode
	DecisionLogger  *slog.Logger
	DecisionLogRate float64
	// AcceptLegacyKeys also looks up presented keys that lack keygate's
	// prefix and checksum (keys of another system, imported with keygate
	// keys import --accept-legacy-keys), when they are 16 to 256
	// characters of A-Z, a-z, 0-9 and "-._~+/=" (keystore.ParseLegacySecret):
	// they are hashed and looked up like any key, so unknown ones cost a
	// store query (then the negative cache answers) and count against
	// FailureLimit. A mistyped keygate key is still refused without one.
	// Default: off.
	AcceptLegacyKeys bool
	// FailureLimit, when set, refuses a source that made more failed
	// attempts (invalid_api_key decisions) than it allows, with 429
	// too_many_failures and without any store query, unless the key it
	// sends is cached and valid: a source over its budget is answered from
	// memory only (KeyLookup.Peek). Its memory is fixed (2 MiB). Default: none.
	FailureLimit FailureLimit
	// DryRun makes every denial a dry-run one: decided, logged and
	// counted, but let through (Decision.DryRun). A policy module with
	// dry_run: true does the same for the requests in it.
	DryRun bool
	// Tracer, when set, records a span per decision.
	Tracer trace.Tracer
	// Now is the clock expiry is checked against. Default: time.Now.
	Now func() time.Time
}

// Server makes authorization decisions for any transport: adapters build
// a Request, call Decide, and render the Decision with Identity and
// Denial. It is safe for concurrent use.
type Server struct {
	keys            KeyLookup
	policy          *policy.Policy
	hasher          *keystore.Hasher
	keyHeaders      []keyHeader
	identityPrefix  string
	keepCredentials bool
	usage           UsageRecorder
	limiter         Limiter
	counter         DecisionCounter
	metrics         *Metrics
	logger          *slog.Logger
	decisions       *decisionLog
	dryRun          bool
	anyDryRun       bool // some policy module is in dry run
	tracer          trace.Tracer
	now             func() time.Time

	names        identityNames
	metaHeaders  []metaHeader
	acceptLegacy bool
	failures     *failurelimit.Counter // nil: no failure limit
	denials      [numOutcomes]*Denial
}

// metaHeader is one metadata entry sent upstream as a header.
type metaHeader struct {
	key  string // the metadata key
	name string // the header, lower case
}

// identityNames are the upstream identity header names, computed once.
type identityNames struct {
	keyID, accountID, scopes, module, dryRun string
}

// ConfigError is NewServer's error: the Config field that is wrong, and
// why.
type ConfigError struct {
	Setting string // the Config field: "KeyHeaders", "IdentityPrefix", …
	Problem string
}

func (e *ConfigError) Error() string { return "authz: " + e.Setting + ": " + e.Problem }

func configError(setting, problem string) error {
	return &ConfigError{Setting: setting, Problem: problem}
}

// CheckSettings reports the first of cfg's settings that is wrong (a
// *ConfigError naming it): the key headers and the identity prefix, which
// NewServer would refuse. It needs neither Lookup nor Policy, so that a
// program can check its configuration before any I/O.
func (cfg Config) CheckSettings() error {
	_, _, err := cfg.settings()
	return err
}

// settings are the identity prefix and the key headers cfg asks for.
func (cfg Config) settings() (string, []keyHeader, error) {
	prefix := strings.ToLower(cfg.IdentityPrefix)
	if prefix == "" {
		prefix = DefaultIdentityPrefix
	}
	if !validHeaderName(prefix) {
		return "", nil, configError("IdentityPrefix", fmt.Sprintf("%q is not a valid header name prefix", prefix))
	}
	headers := cfg.KeyHeaders
	if len(headers) == 0 {
		headers = DefaultKeyHeaders
	}
	kh, err := newKeyHeaders(headers, prefix)
	return prefix, kh, err
}

// NewServer checks cfg and returns a Server, or a *ConfigError.
func NewServer(cfg Config) (*Server, error) {
	if cfg.Lookup == nil || cfg.Policy == nil || cfg.Hasher == nil {
		return nil, configError("Lookup", "Lookup, Policy and Hasher are required")
	}
	s := &Server{
		keys:            cfg.Lookup,
		policy:          cfg.Policy,
		hasher:          cfg.Hasher,
		keepCredentials: cfg.KeepCredentials,
		usage:           cfg.Usage,
		limiter:         cfg.Limiter,
		counter:         cfg.Counter,
		metrics:         cfg.Metrics,
		logger:          cfg.Logger,
		now:             cfg.Now,
		decisions:       newDecisionLog(cfg.DecisionLog, cfg.DecisionLogger, cfg.DecisionLogRate),
		dryRun:          cfg.DryRun,
		acceptLegacy:    cfg.AcceptLegacyKeys,
		tracer:          cfg.Tracer,
	}
	s.anyDryRun = len(cfg.Policy.DryRunModules()) > 0
	var err error
	if s.identityPrefix, s.keyHeaders, err = cfg.settings(); err != nil {
		return nil, err
	}
	if s.logger == nil {
		s.logger = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	s.names = identityNames{
		keyID:     s.identityPrefix + "key-id",
		accountID: s.identityPrefix + "account-id",
		scopes:    s.identityPrefix + "scopes",
		module:    s.identityPrefix + "module",
		dryRun:    s.identityPrefix + "dry-run",
	}
	if s.metaHeaders, err = newMetaHeaders(cfg.MetaHeaders, s.identityPrefix); err != nil {
		return nil, err
	}
	s.denials = denials
	if cfg.FailureLimit != (FailureLimit{}) {
		if err := cfg.FailureLimit.Check(); err != nil {
			return nil, configError("FailureLimit", err.Error())
		}
		s.failures = failurelimit.NewCounter(cfg.FailureLimit, s.now())
		s.denials[TooManyFailures] = newDenial(TooManyFailures, cfg.FailureLimit.RetryAfter())
	}
	return s, nil
}

// DecisionLogDropped is the number of decision log lines the rate limit
// dropped.
func (s *Server) DecisionLogDropped() uint64 {
	if s.decisions == nil {
		return 0
	}
	return s.decisions.total.Load()
}
