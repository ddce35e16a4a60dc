// Package admin owns keygate's admin API and its web console: the REST API
// a host product's backend (or an operator with curl) calls to create,
// list, show, change, rotate and revoke API keys, the admin tokens that
// authenticate it, the JSON shape of a key (shared with the CLI's -o json),
// the OpenAPI 3.1 document that describes the API, and the console, the
// product's Settings → API Keys page, embedded in the binary.
//
// It depends on keystore (the keys) and policy (the modules a scope may
// name) and on nothing above them: the decision path never reaches it, and
// it never reaches the decision path.
//
// # Admin tokens
//
// An admin token is "kgadm_<body><checksum>", in the format of API keys
// (keystore.GenerateSecret with the prefix TokenPrefix), so that neither is
// ever taken for the other. The tokens file (LoadTokens) lists the SHA-256
// of each valid token, never a token in clear, with a name (the actor in
// the audit trail, as "admin:<name>") and optionally the one account the
// token may manage. Presented tokens are hashed and compared with every
// entry in constant time. Tokens.Reload replaces the set, or keeps the old
// one when the file is wrong. A source address that presents too many
// tokens that are not valid (Config.FailureLimit, counted by
// internal/failurelimit) gets 429 until its budget frees up; a valid token
// is never refused.
//
// # Events
//
// Webhooks (/v1/webhooks…), GET /v1/event-types and POST /v1/keys/lookup
// take an admin token like the key endpoints; POST /v1/leaks and GET
// /v1/leaks/revocable_token_types take none: a leak report proves its
// origin by GitHub's ECDSA signature or GitLab's token (LeakIntake), and
// failures count against the source's budget like bad admin tokens.
// EventsConfig configures them (webhooks.go, leaks.go).
//
// # Bodies
//
// Every request body is read, at most MaxBodySize bytes, before routing; a
// larger one is answered 413 at once and the rest read and discarded
// (bounded), so the client gets the answer rather than a reset connection.
// JSON text that encoding/json would silently repair (invalid UTF-8,
// unpaired surrogate escapes) is refused (keystore.CheckJSONText).
//
// # Errors
//
// Every error the API answers is an RFC 9457 application/problem+json
// object with type (urn:keygate:problem:<name>), title, status and detail;
// invalid input adds errors, one {field, detail} per field that is wrong,
// and changes nothing. Errors never contain a secret, a token, or the
// request's own values beyond a field name. LoadTokens and Reload return
// errors naming the file and line (*TokenFileError, several joined with
// errors.Join). Nothing in the package panics on any input; a panic below
// a handler is recovered into a 500 problem.
package admin
