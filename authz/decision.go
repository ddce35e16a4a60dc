package authz

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"slices"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/limits"
	"github.com/keygate/keygate/policy"
)

// Decision is the outcome of one authorization check, independent of the
// transport that asked.
type Decision struct {
	Outcome Outcome
	Reason  Reason
	// Key is the authenticated key's record; nil unless the key was found
	// and valid.
	Key *keystore.Record
	// Module is the module the request reaches ("" if none).
	Module string
	// DryRun marks a denial that is not enforced (--dry-run, or a policy
	// module's dry_run): it is logged and counted as a denial, and the
	// adapters let the request through with the dry-run header.
	DryRun bool
	// Limits is the verdict of the key's limits (nil for a key without
	// any, or a decision made before them): adapters render its RateLimit
	// fields and, on a denial, its Retry-After (Server.LimitHeaders).
	Limits *limits.Verdict

	// found is the record of a key found but refused as revoked,
	// disabled or expired: the decision log names it, the client is told
	// nothing more than for an unknown key.
	found     *keystore.Record
	carriers  uint8    // which key headers carried the key (Request.cred)
	spoofed   []string // client-sent identity headers (Request.spoofed)
	fromCache bool     // the key's record came from memory
}

// Denied reports whether the request is refused: a denial not in dry run.
func (d *Decision) Denied() bool { return d.Outcome != Allow && !d.DryRun }

// Forged reports whether the request carried client-sent headers with the
// identity prefix, which an allow must remove.
func (d *Decision) Forged() bool { return len(d.spoofed) > 0 }

// because is the decision a reason alone makes: its outcome follows from
// the reasons table.
func because(r Reason, key *keystore.Record, module string) Decision {
	return Decision{Outcome: r.Outcome(), Reason: r, Key: key, Module: module}
}

// KeyLookup is how the decision finds keys: the cache in front of the
// store, which *keystore.Cache is. Both methods must return when ctx ends.
type KeyLookup interface {
	// LookupCached finds the record of the key stored under d:
	// keystore.ErrNotFound when there is none, an error matching
	// keystore.ErrUnavailable when the store cannot answer (the cache
	// bounds each store query with its own deadline). fromMemory says
	// whether it answered without the store; spans record it.
	LookupCached(ctx context.Context, d keystore.Digest) (key *keystore.Record, fromMemory bool, err error)
	// Peek returns the record under d if memory holds one that
	// LookupCached would answer with, without asking the store: a source
	// over its failure budget is answered this way (Config.FailureLimit).
	Peek(ctx context.Context, d keystore.Digest) (key *keystore.Record, ok bool)
}

// UsageRecorder learns of every allowed request, off the request path (it
// must not block), so that last-used times can be written in batches.
type UsageRecorder interface {
	Used(key *keystore.Record, at time.Time)
}

// Decide decides r. Every outcome, a store failure or a recovered panic
// included, is a Decision: a bug can only deny. It counts the decision,
// logs it (the decision log), traces it, and reports an allowed key's use.
func (s *Server) Decide(ctx context.Context, r *Request) (d Decision) {
	start := s.now()
	if r.At.IsZero() {
		r.At = start
	}
	var span trace.Span
	if s.tracer != nil {
		ctx, span = s.startSpan(ctx, r)
	}
	defer func() {
		if p := recover(); p != nil {
			s.logger.Error("recovered from a panic in a decision; denying", "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			d = because(ReasonPanic, nil, "")
		}
		s.finish(ctx, r, &d, start)
		if span != nil {
			endSpan(span, r, &d, d.fromCache)
		}
	}()
	// The targets the query names, before any step may refuse: a dry run
	// (moduleDryRun) reads them as well.
	r.readQueryTargets()
	d = s.decide(ctx, r)
	d.carriers, d.spoofed = r.cred.carriers, r.spoofed
	if d.Outcome == InvalidKey && s.failures != nil {
		s.failures.Add(r.Source, r.At)
	}
	return d
}

// Refuse records the refusal of a request that an adapter could not turn
// into a Request (reason ReasonForwardedHeaders or ReasonUndecodable), the
// way Decide records its decisions, and returns it; r holds what the
// adapter could read, for the decision log. Such a refusal is enforced even
// in a dry run: the adapter could not tell which client-sent identity
// headers an allow would have to remove.
func (s *Server) Refuse(ctx context.Context, r *Request, reason Reason) Decision {
	d := because(reason, nil, "")
	s.record(ctx, r, &d, s.now())
	return d
}

// finish completes a decision: dry run, then record.
func (s *Server) finish(ctx context.Context, r *Request, d *Decision, start time.Time) {
	if d.Outcome != Allow && (s.dryRun || s.moduleDryRun(r, d)) {
		d.DryRun = true
	}
	s.record(ctx, r, d, start)
}

// moduleDryRun reports whether the denial d of r is exempt as a policy
// module's dry run: only when every module whose check failed is in dry
// run. The modules are every one the decision checks: the request's module
// (d's, or Envoy's route module), every module some reading of the path
// lands in (Route.Modules), every closed module a reading lands in, and all
// of these for every path-override target. For a denial about the key's
// scopes or a closed module (failed per module), a module failed when it is
// closed or the key lacks one of its scopes the request needs; for any
// other denial (no key, an invalid one, its source, its limits, ...) every
// module failed. A path or target that cannot be read has modules unknown,
// so its denial is enforced. One enforced module that failed enforces the
// denial, whichever module d names.
func (s *Server) moduleDryRun(r *Request, d *Decision) bool {
	if !s.anyDryRun {
		return false
	}
	route, err := s.routeEvery(r.Path)
	if err != nil {
		return false
	}
	var key *keystore.Record // nil: every module failed
	var need actions
	switch d.Reason {
	case ReasonScope, ReasonRestricted, ReasonDefaultDeny:
		key, need = d.Key, needs(r)
	}
	if d.Module != "" && !s.passedOrDryRun(d.Module, key, need) ||
		r.Module != "" && !s.passedOrDryRun(r.Module, key, need) {
		return false
	}
	// A reading in no module counts only without a route module (the
	// route module overrides the policy's default, as in decide).
	if route.Restricted && (route.RestrictedModule != "" || r.Module == "") && !s.policy.DryRun(route.RestrictedModule) {
		return false
	}
	for _, m := range route.Modules {
		if (m != "" || r.Module == "") && !s.passedOrDryRun(m, key, need) {
			return false
		}
	}
	if d.Module == "" && r.Module == "" && !s.passedOrDryRun(route.Module, key, need) {
		return false
	}
	return s.targetsDryRun(r, key, need)
}

// routeEvery routes path for moduleDryRun: when a reading lands in a
// closed module, Route stops there, so the modules of the readings after
// it are read too (Policy.RouteEvery). RestrictedModule is then a closed
// module not in dry run, if some reading lands in one; or else "" if some
// reading lands in no module under default: deny (which the policy's
// default restricts, and no dry run exempts); or else the dry-run one.
func (s *Server) routeEvery(path string) (policy.Route, error) {
	route, err := s.policy.Route(path)
	if err != nil || route.RestrictedModule == "" {
		return route, err
	}
	route, err = s.policy.RouteEvery(path)
	if err != nil {
		return route, err
	}
	for _, m := range route.Closed {
		if m != "" && !s.policy.DryRun(m) {
			route.RestrictedModule = m
			return route, nil
		}
	}
	if slices.Contains(route.Closed, "") {
		route.RestrictedModule = ""
	}
	return route, nil
}

// passedOrDryRun reports whether module m ("" for no module) passed the
// checks of a request that needs the actions need of key (nil: m failed),
// or is in dry run: m is open to API keys and key holds its scopes.
func (s *Server) passedOrDryRun(m string, key *keystore.Record, need actions) bool {
	if s.policy.DryRun(m) {
		return true
	}
	if key == nil {
		return false
	}
	if m != "" {
		if _, access, ok := s.policy.Access(m); !ok || access != policy.AccessAllow {
			return false
		}
	}
	return need.allowedBy(key, m)
}

// record counts and logs a decision, and reports an allowed key's use.
func (s *Server) record(ctx context.Context, r *Request, d *Decision, start time.Time) {
	s.metrics.observe(d.Reason, d.DryRun, start)
	if d.Outcome == Allow && s.usage != nil {
		s.usage.Used(d.Key, start)
	}
	if d.Key != nil && s.counter != nil {
		s.counter.Count(d.Key, int(d.Outcome), start)
	}
	if s.decisions.wants(d) {
		s.decisions.write(ctx, r, d, s.now().Sub(start))
	}
}

// decide makes the decision. It is the one place the decision table
// lives; transports only translate in and out.
func (s *Server) decide(ctx context.Context, r *Request) Decision {
	// 1. A key, well formed, checked without I/O; and whether its source
	// may still fail (FailureLimit): one over its budget gets answers from
	// memory only, and a refusal for anything but a cached valid key.
	if !r.cred.found {
		return because(ReasonMissingKey, nil, "")
	}
	limited := s.failures != nil && s.failures.Over(r.Source, r.At)
	if r.cred.several {
		return because(failure(ReasonSeveralKeys, limited), nil, "")
	}
	secret, err := s.parseKey(r.cred.value)
	if err != nil {
		return because(failure(ReasonMalformed, limited), nil, "")
	}

	// 2. A path that reads one way, and the module it reaches.
	route, err := s.policy.Route(r.Path)
	if err != nil {
		return because(ReasonInvalidPath, nil, "")
	}
	// So must every target a path-override header names (X-Original-URL:
	// some backends route by it instead), or the query does (?rest_route=,
	// read by Decide).
	over, ok := s.readTargets(r)
	if !ok {
		return because(ReasonInvalidPath, nil, "")
	}
	module, restricted := route.Module, route.Restricted
	if r.Module != "" {
		name, access, ok := s.policy.Access(r.Module)
		if !ok {
			// Envoy names a module the policy does not know: the two
			// configurations disagree, so refuse rather than guess.
			return because(ReasonUnknownModule, nil, r.Module)
		}
		// The route names a known module: it decides, unless some reading
		// of the path lands in a closed module (the policy's default for
		// paths in no module does not override the route). The policy's
		// own name is what the decision keeps (in shared responses and
		// their cache): r.Module may point into the request's buffer.
		module = name
		restricted = route.RestrictedModule != "" || access != policy.AccessAllow
	}

	// 3. The key itself: the one step that may touch the store.
	if err := ctx.Err(); err != nil {
		return because(ReasonCanceled, nil, module)
	}
	key, reason, fromCache := s.authenticate(ctx, secret, r.At, limited)
	if reason != ReasonAllowed {
		d := because(reason, nil, module)
		d.found = key
		return d
	}

	// 4. Where the key may be used from.
	if !key.AllowsSource(r.Source) {
		reason := ReasonSource
		if !r.Source.IsValid() {
			reason = ReasonNoSource
		}
		return because(reason, key, module)
	}

	// 5. What the key may do here.
	switch {
	case restricted && module == "":
		return because(ReasonDefaultDeny, key, module)
	case restricted:
		return because(ReasonRestricted, key, module)
	case over.restricted && over.module == "":
		return because(ReasonDefaultDeny, key, module)
	case over.restricted:
		return because(ReasonRestricted, key, module)
	}
	// The key's scopes must cover, for every action some reading of the
	// method needs, the module and every other open module some reading of
	// the path lands in (a router that does not resolve dots reads
	// /projects/../deployments as projects, Envoy as deployments), and
	// every module a path override reaches. A route module overrides the
	// default for paths in no module, so "" counts only without one (but
	// always for an override's target, which the route did not see).
	need := needs(r)
	if !need.allowedBy(key, module) {
		return because(ReasonScope, key, module)
	}
	for _, m := range route.Modules {
		if m != module && (m != "" || r.Module == "") && !need.allowedBy(key, m) {
			return because(ReasonScope, key, module)
		}
	}
	for _, m := range over.modules {
		if !need.allowedBy(key, m) {
			return because(ReasonScope, key, module)
		}
	}
	// 6. What the key may still spend: its limits, counted only for a
	// request that passed everything else.
	if s.limiter != nil && key.Limited() {
		d := s.limit(ctx, key, module, r.At)
		d.fromCache = fromCache
		return d
	}
	d := because(ReasonAllowed, key, module)
	d.fromCache = fromCache
	return d
}

// parseKey checks a presented key without I/O: a keygate key, or with
// AcceptLegacyKeys a legacy one.
func (s *Server) parseKey(v string) (keystore.Secret, error) {
	secret, err := keystore.ParseSecret(v)
	if err != nil && s.acceptLegacy {
		return keystore.ParseLegacySecret(v)
	}
	return secret, err
}

// failure is reason, or ReasonTooManyFailures for a source over its
// failure budget.
func failure(reason Reason, limited bool) Reason {
	if limited {
		return ReasonTooManyFailures
	}
	return reason
}

// authenticate finds the key behind secret and checks that it is usable
// now. It returns the key and ReasonAllowed, or a reason why not (with the
// key when it was found but is revoked, disabled or expired), and whether
// the record came from memory. For a source over its failure budget (limited) it asks
// the cache alone, and every reason but an allow is ReasonTooManyFailures.
func (s *Server) authenticate(ctx context.Context, secret keystore.Secret, now time.Time, limited bool) (*keystore.Record, Reason, bool) {
	if limited {
		return s.authenticateFromMemory(ctx, secret, now)
	}
	var digests [2]keystore.Digest
	failure := ReasonUnknown // what to say if no candidate finds the key
	fromCache := true
	// With a pepper there are two candidate digests (the current scheme's
	// and the one before the pepper): a failure to look up one must not
	// hide the other, which may well be cached.
	for _, d := range s.hasher.AppendCandidates(digests[:0], secret) {
		key, cached, err := s.keys.LookupCached(ctx, d)
		fromCache = fromCache && cached
		switch {
		case err == nil:
			switch key.StateAt(now) {
			case keystore.StateActive:
				return key, ReasonAllowed, fromCache
			case keystore.StateRevoked:
				return key, ReasonRevoked, fromCache
			case keystore.StateDisabled:
				return key, ReasonDisabled, fromCache
			default:
				return key, ReasonExpired, fromCache
			}
		case errors.Is(err, keystore.ErrNotFound):
		case errors.Is(err, context.DeadlineExceeded):
			failure = ReasonTimeout
		case errors.Is(err, context.Canceled):
			failure = ReasonCanceled
		default:
			failure = ReasonStoreError
		}
	}
	return nil, failure, fromCache
}

// authenticateFromMemory is authenticate with nothing but what the cache
// holds: a cached valid key, or ReasonTooManyFailures. No store query.
func (s *Server) authenticateFromMemory(ctx context.Context, secret keystore.Secret, now time.Time) (*keystore.Record, Reason, bool) {
	var digests [2]keystore.Digest
	for _, d := range s.hasher.AppendCandidates(digests[:0], secret) {
		if key, ok := s.keys.Peek(ctx, d); ok && key.StateAt(now) == keystore.StateActive {
			return key, ReasonAllowed, true
		}
	}
	return nil, ReasonTooManyFailures, true
}
