package authz

import (
	"context"
	"errors"
	"time"

	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/policy"
)

// Code is the outcome of a decision. Every code but Allow is a denial,
// with the HTTP status and JSON error.code of DESIGN.md's decision table.
type Code uint8

// The outcomes, in the order the decision reaches them.
const (
	Allow             Code = iota
	MissingKey             // 401 missing_api_key: no key in any configured header
	InvalidKey             // 401 invalid_api_key: malformed, unknown, revoked, expired, or several keys
	InvalidPath            // 400 invalid_path: the path cannot be read one way
	ModuleForbidden        // 403 module_forbidden: the module is closed to API keys
	InsufficientScope      // 403 insufficient_scope: the key's scopes do not cover module and action
	Unavailable            // 503 unavailable: the store cannot answer and the key is not cached
	numCodes
)

// String returns the JSON error.code of the outcome ("ok" for Allow).
func (c Code) String() string {
	if c < numCodes {
		return codeInfo[c].name
	}
	return "unknown"
}

// HTTPStatus is the status the client receives.
func (c Code) HTTPStatus() int {
	if c < numCodes {
		return codeInfo[c].status
	}
	return 503
}

var codeInfo = [numCodes]struct {
	name    string
	status  int
	message string
}{
	Allow:             {"ok", 200, ""},
	MissingKey:        {"missing_api_key", 401, "An API key is required: send it in the X-API-Key header or as Authorization: Bearer."},
	InvalidKey:        {"invalid_api_key", 401, "The API key is not valid."},
	InvalidPath:       {"invalid_path", 400, "The request path cannot be interpreted unambiguously."},
	ModuleForbidden:   {"module_forbidden", 403, "This part of the API cannot be used with an API key."},
	InsufficientScope: {"insufficient_scope", 403, "The API key's scopes do not allow this request."},
	Unavailable:       {"unavailable", 503, "Authorization is temporarily unavailable; retry shortly."},
}

// Reason explains a decision in logs and metrics, never to the client:
// every InvalidKey denial looks the same from outside.
type Reason uint8

// The reasons.
const (
	ReasonAllowed       Reason = iota // allowed
	ReasonMissingKey                  // no key in any configured header
	ReasonMalformed                   // not a well-formed key (shape or checksum)
	ReasonSeveralKeys                 // several different keys, or a comma-merged header
	ReasonUnknown                     // well formed, but no such key
	ReasonRevoked                     // the key is revoked
	ReasonExpired                     // the key has expired (or its rotation grace ended)
	ReasonInvalidPath                 // the path cannot be read one way
	ReasonRestricted                  // the module is closed to API keys
	ReasonDefaultDeny                 // no module matched and the policy's default is deny
	ReasonUnknownModule               // the proxy named a module the policy does not know
	ReasonScope                       // the key's scopes do not cover module and action
	ReasonStoreError                  // the store failed and the key is not cached
	ReasonTimeout                     // the lookup deadline passed
	ReasonCanceled                    // the caller gave up
	ReasonPanic                       // a bug: recovered, and denied
	numReasons
)

var reasonNames = [numReasons]string{
	"allowed", "missing", "malformed", "several_keys", "unknown", "revoked", "expired", "invalid_path",
	"restricted", "default_deny", "unknown_module", "scope", "store_error", "timeout", "canceled", "panic",
}

// String names the reason as logs and metrics spell it.
func (r Reason) String() string {
	if r < numReasons {
		return reasonNames[r]
	}
	return "unknown_reason"
}

// Decision is the outcome of one authorization check, independent of the
// transport that asked.
type Decision struct {
	Code   Code
	Reason Reason
	// Key is the authenticated key; nil unless the key was found and valid.
	Key *keystore.Key
	// Module is the module the request reaches ("" if none).
	Module string
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

// request is what a decision needs from a transport.
type request struct {
	at     time.Time // when the request arrived: expiry is checked against it
	method string    // HTTP method; "" is treated as a write
	path   string    // request target as received: query included, not decoded
	module string    // module named by the proxy's route, "" if none
	cred   credential
}

// decide makes the decision. It is the one place the decision table
// lives; transports only translate in and out.
func (s *Server) decide(ctx context.Context, r *request) Decision {
	// 1. A key, well formed, checked without I/O.
	switch {
	case r.cred.several:
		return Decision{Code: InvalidKey, Reason: ReasonSeveralKeys}
	case !r.cred.found:
		return Decision{Code: MissingKey, Reason: ReasonMissingKey}
	}
	secret, err := keystore.ParseSecret(r.cred.value)
	if err != nil {
		return Decision{Code: InvalidKey, Reason: ReasonMalformed}
	}

	// 2. A path that reads one way, and the module it reaches.
	route, err := s.policy.Route(r.path)
	if err != nil {
		return Decision{Code: InvalidPath, Reason: ReasonInvalidPath}
	}
	module, restricted := route.Module, route.Restricted
	if r.module != "" {
		access, ok := s.policy.Access(r.module)
		if !ok {
			// Envoy names a module the policy does not know: the two
			// configurations disagree, so refuse rather than guess.
			return Decision{Code: ModuleForbidden, Reason: ReasonUnknownModule, Module: r.module}
		}
		// The route names a known module: it decides, unless some reading
		// of the path lands in a closed module (the policy's default for
		// paths in no module does not override the route).
		module = r.module
		restricted = route.RestrictedModule != "" || access != policy.AccessAllow
	}

	// 3. The key itself: the one step that may touch the store.
	if err := ctx.Err(); err != nil {
		return Decision{Code: Unavailable, Reason: ReasonCanceled, Module: module}
	}
	key, reason := s.authenticate(ctx, secret, r.at)
	switch reason {
	case ReasonAllowed:
	case ReasonStoreError, ReasonTimeout, ReasonCanceled:
		return Decision{Code: Unavailable, Reason: reason, Module: module}
	default:
		return Decision{Code: InvalidKey, Reason: reason, Module: module}
	}

	// 4. What the key may do here.
	if restricted {
		reason := ReasonRestricted
		if module == "" {
			reason = ReasonDefaultDeny
		}
		return Decision{Code: ModuleForbidden, Reason: reason, Key: key, Module: module}
	}
	if !keystore.Allows(key.Scopes, module, action(r.method)) {
		return Decision{Code: InsufficientScope, Reason: ReasonScope, Key: key, Module: module}
	}
	return Decision{Code: Allow, Reason: ReasonAllowed, Key: key, Module: module}
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
