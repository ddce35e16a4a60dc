package authz

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"time"

	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/policy"
)

// Decision is the outcome of one authorization check, independent of the
// transport that asked.
type Decision struct {
	Outcome Outcome
	Reason  Reason
	// Key is the authenticated key; nil unless the key was found and valid.
	Key *keystore.Key
	// Module is the module the request reaches ("" if none).
	Module string

	carriers uint8    // which key headers carried the key (Request.cred)
	spoofed  []string // client-sent identity headers (Request.spoofed)
}

// Forged reports whether the request carried client-sent headers with the
// identity prefix, which an allow must remove.
func (d *Decision) Forged() bool { return len(d.spoofed) > 0 }

// because is the decision a reason alone makes: its outcome follows from
// the reasons table.
func because(r Reason, key *keystore.Key, module string) Decision {
	return Decision{Outcome: r.Outcome(), Reason: r, Key: key, Module: module}
}

// KeyLookup finds the key stored under a digest: ErrNotFound when there is
// none, an error matching keystore.ErrUnavailable when the store cannot
// answer. *keystore.Cache (which bounds each store query with its own
// deadline) and *keystore.Store satisfy it. Lookup must return when ctx
// ends.
type KeyLookup interface {
	Lookup(ctx context.Context, d keystore.Digest) (*keystore.Key, error)
}

// UsageRecorder learns of every allowed request, off the request path (it
// must not block), so that last-used times can be written in batches.
type UsageRecorder interface {
	Used(keyID string, at time.Time)
}

// Decide decides r. Every outcome, a store failure or a recovered panic
// included, is a Decision: a bug can only deny. It counts the decision,
// logs it at debug level, and reports an allowed key's use.
func (s *Server) Decide(ctx context.Context, r *Request) (d Decision) {
	start := s.now()
	if r.At.IsZero() {
		r.At = start
	}
	defer func() {
		if p := recover(); p != nil {
			s.logger.Error("recovered from a panic in a decision; denying", "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			d = because(ReasonPanic, nil, "")
		}
		s.finish(ctx, &d, start)
	}()
	d = s.decide(ctx, r)
	d.carriers, d.spoofed = r.cred.carriers, r.spoofed
	return d
}

// Refuse records the refusal of a request that an adapter could not turn
// into a Request (reason ReasonForwardedHeaders or ReasonUndecodable), the
// way Decide records its decisions, and returns it.
func (s *Server) Refuse(ctx context.Context, r Reason) Decision {
	d := because(r, nil, "")
	s.finish(ctx, &d, s.now())
	return d
}

// finish records a decision: metrics, the debug log, and last use.
func (s *Server) finish(ctx context.Context, d *Decision, start time.Time) {
	s.metrics.observe(d.Reason, start)
	if d.Outcome == Allow && s.usage != nil {
		s.usage.Used(d.Key.ID, start)
	}
	if s.logger.Enabled(ctx, slog.LevelDebug) {
		attrs := []slog.Attr{slog.String("code", d.Outcome.String()), slog.String("reason", d.Reason.String()),
			slog.String("module", d.Module)}
		if d.Key != nil {
			attrs = append(attrs, slog.String("key_id", d.Key.ID), slog.String("account_id", d.Key.AccountID))
		}
		s.logger.LogAttrs(ctx, slog.LevelDebug, "decision", attrs...)
	}
}

// decide makes the decision. It is the one place the decision table
// lives; transports only translate in and out.
func (s *Server) decide(ctx context.Context, r *Request) Decision {
	// 1. A key, well formed, checked without I/O.
	switch {
	case r.cred.several:
		return because(ReasonSeveralKeys, nil, "")
	case !r.cred.found:
		return because(ReasonMissingKey, nil, "")
	}
	secret, err := keystore.ParseSecret(r.cred.value)
	if err != nil {
		return because(ReasonMalformed, nil, "")
	}

	// 2. A path that reads one way, and the module it reaches.
	route, err := s.policy.Route(r.Path)
	if err != nil {
		return because(ReasonInvalidPath, nil, "")
	}
	module, restricted := route.Module, route.Restricted
	if r.Module != "" {
		access, ok := s.policy.Access(r.Module)
		if !ok {
			// Envoy names a module the policy does not know: the two
			// configurations disagree, so refuse rather than guess.
			return because(ReasonUnknownModule, nil, r.Module)
		}
		// The route names a known module: it decides, unless some reading
		// of the path lands in a closed module (the policy's default for
		// paths in no module does not override the route).
		module = r.Module
		restricted = route.RestrictedModule != "" || access != policy.AccessAllow
	}

	// 3. The key itself: the one step that may touch the store.
	if err := ctx.Err(); err != nil {
		return because(ReasonCanceled, nil, module)
	}
	key, reason := s.authenticate(ctx, secret, r.At)
	if reason != ReasonAllowed {
		return because(reason, nil, module)
	}

	// 4. What the key may do here.
	if restricted {
		reason := ReasonRestricted
		if module == "" {
			reason = ReasonDefaultDeny
		}
		return because(reason, key, module)
	}
	if !keystore.Allows(key.Scopes, module, action(r.Method)) {
		return because(ReasonScope, key, module)
	}
	return because(ReasonAllowed, key, module)
}

// authenticate finds the key behind secret and checks that it is usable
// now. It returns the key, or a reason why not.
func (s *Server) authenticate(ctx context.Context, secret keystore.Secret, now time.Time) (*keystore.Key, Reason) {
	var digests [2]keystore.Digest
	failure := ReasonUnknown // what to say if no candidate finds the key
	// With a pepper there are two candidate digests (the current scheme's
	// and the one before the pepper): a failure to look up one must not
	// hide the other, which may well be cached.
	for _, d := range s.hasher.AppendCandidates(digests[:0], secret) {
		key, err := s.lookup.Lookup(ctx, d)
		switch {
		case err == nil:
			switch key.StateAt(now) {
			case keystore.StateActive:
				return key, ReasonAllowed
			case keystore.StateRevoked:
				return nil, ReasonRevoked
			default:
				return nil, ReasonExpired
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
	return nil, failure
}

// action is the scope action a method needs: safe methods read, the rest
// write.
func action(method string) string {
	switch method {
	case "GET", "HEAD", "OPTIONS":
		return keystore.ActionRead
	}
	return keystore.ActionWrite
}
