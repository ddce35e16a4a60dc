package authz

import (
	"strconv"
	"time"
)

// Outcome is what a decision answers. Every outcome but Allow is a denial;
// each has one row in the outcomes table: its name (the JSON error.code),
// HTTP status, client message, gRPC status code and challenge headers.
type Outcome uint8

// The outcomes, in the order the decision reaches them.
const (
	Allow             Outcome = iota // 200: the request goes upstream
	MissingKey                       // 401 missing_api_key: no key in any configured header
	InvalidKey                       // 401 invalid_api_key: malformed, unknown, revoked, disabled, expired, or several keys
	TooManyFailures                  // 429 too_many_failures: the source is over its failed-attempt budget and the key is not a cached valid one
	InvalidPath                      // 400 invalid_path: the path cannot be read one way
	InvalidRequest                   // 400 invalid_request: the transport could not read the request
	SourceNotAllowed                 // 403 source_not_allowed: the key may not be used from this address
	ModuleForbidden                  // 403 module_forbidden: the module is closed to API keys
	InsufficientScope                // 403 insufficient_scope: the key's scopes do not cover module and action
	RateLimited                      // 429 rate_limited: the key is over one of its rates
	QuotaExhausted                   // 429 quota_exhausted: the key has spent its quota for the day or month
	Unavailable                      // 503 unavailable: the store cannot answer and the key is not cached
	numOutcomes
)

// NumOutcomes is the number of outcomes: Outcome(0) to Outcome(NumOutcomes-1)
// are all of them, so that adapters can prebuild one response per outcome.
const NumOutcomes = int(numOutcomes)

// gRPC status codes (google.golang.org/grpc/codes, fixed by the gRPC
// specification), spelled here so that the core imports nothing of gRPC.
const (
	grpcOK                = 0
	grpcInvalidArgument   = 3
	grpcPermissionDenied  = 7
	grpcResourceExhausted = 8
	grpcUnavailable       = 14
	grpcUnauthenticated   = 16
)

// RetryAfterSeconds is the Retry-After of a 503: the store usually comes
// back, or the key gets cached, within seconds.
const RetryAfterSeconds = "2"

// DefaultFailureWindow is the Retry-After of a too_many_failures denial
// when no FailureLimit says otherwise; a Server with one says its window
// (Server.Denial).
const DefaultFailureWindow = time.Minute

// outcomeInfo is one row of the outcomes table.
type outcomeInfo struct {
	name       string // JSON error.code; "ok" for Allow
	status     int    // HTTP status the client receives
	grpc       uint32 // CheckResponse status code
	message    string // JSON error.message
	challenge  string // WWW-Authenticate, "" for none
	retryAfter string // Retry-After, "" for none
}

// outcomes is the decision table. Adding an outcome is one constant and
// one row here; names, statuses and metric labels follow from it.
var outcomes = [numOutcomes]outcomeInfo{
	Allow: {name: "ok", status: 200, grpc: grpcOK},
	MissingKey: {name: "missing_api_key", status: 401, grpc: grpcUnauthenticated,
		message:   "An API key is required: send it in the X-API-Key header or as Authorization: Bearer.",
		challenge: `Bearer realm="api"`},
	InvalidKey: {name: "invalid_api_key", status: 401, grpc: grpcUnauthenticated,
		message:   "The API key is not valid.",
		challenge: `Bearer realm="api", error="invalid_token"`},
	TooManyFailures: {name: "too_many_failures", status: 429, grpc: grpcResourceExhausted,
		message:    "Too many requests with invalid API keys came from this address; retry later.",
		retryAfter: strconv.Itoa(int(DefaultFailureWindow / time.Second))},
	InvalidPath: {name: "invalid_path", status: 400, grpc: grpcInvalidArgument,
		message: "The request path cannot be interpreted unambiguously."},
	InvalidRequest: {name: "invalid_request", status: 400, grpc: grpcInvalidArgument,
		message: "The authorization request cannot be read."},
	SourceNotAllowed: {name: "source_not_allowed", status: 403, grpc: grpcPermissionDenied,
		message: "This API key may not be used from this address."},
	ModuleForbidden: {name: "module_forbidden", status: 403, grpc: grpcPermissionDenied,
		message: "This part of the API cannot be used with an API key."},
	InsufficientScope: {name: "insufficient_scope", status: 403, grpc: grpcPermissionDenied,
		message: "The API key's scopes do not allow this request."},
	// Retry-After and the RateLimit fields of these two depend on the key:
	// the adapters add Server.LimitHeaders.
	RateLimited: {name: "rate_limited", status: 429, grpc: grpcResourceExhausted,
		message: "This API key is over its rate limit; retry after the time Retry-After gives."},
	QuotaExhausted: {name: "quota_exhausted", status: 429, grpc: grpcResourceExhausted,
		message: "This API key has used its quota for this period; it resets at the time Retry-After gives."},
	Unavailable: {name: "unavailable", status: 503, grpc: grpcUnavailable,
		message:    "Authorization is temporarily unavailable; retry shortly.",
		retryAfter: RetryAfterSeconds},
}

// info returns o's row; an out-of-range outcome reads as Unavailable, so
// that a bug can only deny.
func (o Outcome) info() *outcomeInfo {
	if o < numOutcomes {
		return &outcomes[o]
	}
	return &outcomes[Unavailable]
}

// String returns the JSON error.code of the outcome ("ok" for Allow).
func (o Outcome) String() string { return o.info().name }

// HTTPStatus is the status the client receives.
func (o Outcome) HTTPStatus() int { return o.info().status }

// GRPCCode is the status code of Envoy's CheckResponse for the outcome, a
// google.golang.org/grpc/codes value.
func (o Outcome) GRPCCode() uint32 { return o.info().grpc }

// Message is the human-readable error.message of a denial ("" for Allow).
func (o Outcome) Message() string { return o.info().message }

// Reason explains a decision in logs and metrics, never to the client:
// every InvalidKey denial looks the same from outside.
type Reason uint8

// The reasons.
const (
	ReasonAllowed          Reason = iota // allowed
	ReasonMissingKey                     // no key in any configured header
	ReasonMalformed                      // not a well-formed key (shape or checksum)
	ReasonSeveralKeys                    // several different keys, or a comma-merged header
	ReasonUnknown                        // well formed, but no such key
	ReasonRevoked                        // the key is revoked
	ReasonExpired                        // the key has expired (or its rotation grace ended)
	ReasonDisabled                       // the key is disabled (until it is enabled again)
	ReasonTooManyFailures                // the source is over its failed-attempt budget, and the key is not a cached valid one
	ReasonInvalidPath                    // the path cannot be read one way
	ReasonForwardedHeaders               // forwarded method or URI headers missing, repeated or contradictory
	ReasonUndecodable                    // the transport could not decode the request
	ReasonSource                         // the key's source restrictions do not include the request's address
	ReasonNoSource                       // the key has source restrictions and the transport knows no address
	ReasonRestricted                     // the module is closed to API keys
	ReasonDefaultDeny                    // no module matched and the policy's default is deny
	ReasonUnknownModule                  // the proxy named a module the policy does not know
	ReasonScope                          // the key's scopes do not cover module and action
	ReasonRateLimited                    // the key is over one of its rates
	ReasonQuotaExhausted                 // the key's quota for the period is spent
	ReasonStoreError                     // the store failed and the key is not cached
	ReasonTimeout                        // the lookup deadline passed
	ReasonCanceled                       // the caller gave up
	ReasonPanic                          // a bug: recovered, and denied
	ReasonLimitStore                     // the limits' counting store cannot answer and --limit-fallback=deny
	numReasons
)

// reasonInfo is one row of the reasons table.
type reasonInfo struct {
	name    string  // as logs and metrics spell it
	outcome Outcome // the outcome a decision with this reason has
}

// reasons names each reason and the outcome it belongs to; the metric
// label pairs are derived from it.
var reasons = [numReasons]reasonInfo{
	ReasonAllowed:          {"allowed", Allow},
	ReasonMissingKey:       {"missing", MissingKey},
	ReasonMalformed:        {"malformed", InvalidKey},
	ReasonSeveralKeys:      {"several_keys", InvalidKey},
	ReasonUnknown:          {"unknown", InvalidKey},
	ReasonRevoked:          {"revoked", InvalidKey},
	ReasonExpired:          {"expired", InvalidKey},
	ReasonDisabled:         {"disabled", InvalidKey},
	ReasonTooManyFailures:  {"too_many_failures", TooManyFailures},
	ReasonInvalidPath:      {"invalid_path", InvalidPath},
	ReasonForwardedHeaders: {"forwarded_headers", InvalidPath},
	ReasonUndecodable:      {"undecodable", InvalidRequest},
	ReasonSource:           {"source", SourceNotAllowed},
	ReasonNoSource:         {"no_source", SourceNotAllowed},
	ReasonRestricted:       {"restricted", ModuleForbidden},
	ReasonDefaultDeny:      {"default_deny", ModuleForbidden},
	ReasonUnknownModule:    {"unknown_module", ModuleForbidden},
	ReasonScope:            {"scope", InsufficientScope},
	ReasonRateLimited:      {"rate_limited", RateLimited},
	ReasonQuotaExhausted:   {"quota_exhausted", QuotaExhausted},
	ReasonStoreError:       {"store_error", Unavailable},
	ReasonTimeout:          {"timeout", Unavailable},
	ReasonCanceled:         {"canceled", Unavailable},
	ReasonPanic:            {"panic", Unavailable},
	ReasonLimitStore:       {"limit_store", Unavailable},
}

// String names the reason as logs and metrics spell it.
func (r Reason) String() string {
	if r < numReasons {
		return reasons[r].name
	}
	return "unknown_reason"
}

// Outcome is the outcome a decision with this reason has.
func (r Reason) Outcome() Outcome {
	if r < numReasons {
		return reasons[r].outcome
	}
	return Unavailable
}
