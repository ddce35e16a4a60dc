// Package authz is keygate's decision, independent of any transport: given
// a request (method, path, headers, source address, the route's module) it
// decides allow or deny, and defines once what every transport renders —
// the outcome table, the identity headers and the denials.
//
// # The decision
//
// A transport adapter (authz/extauthz for Envoy's gRPC ext_authz,
// authz/forwardauth for HTTP forward-auth) fills a Request, passes each
// header to Server.ReadHeader, and calls Server.Decide:
//
//	var r authz.Request
//	r.Method, r.Path, r.Module = method, target, routeModule
//	for name, value := range headers {
//		core.ReadHeader(&r, name, value)
//	}
//	d := core.Decide(ctx, &r)
//	if d.Outcome != authz.Allow {
//		render(d.Outcome.Denial()) // status, headers, JSON body
//	} else {
//		render(core.Identity(&d)) // headers to set upstream, headers to remove
//	}
//
// Decide takes the steps of DESIGN.md §4 in order, the cheap ones first so
// that garbage never reaches the store: the key (from the configured
// headers, checksum verified without I/O), the path and its module (the
// policy package reads every reasonable reading of the path), the key's
// record (through KeyLookup: the cache in front of the store), and what
// the key may do there (closed modules, then scopes).
//
// A request is decided by every reading a backend may give it, not only
// the one in front of keygate: every reading of its path (the policy
// package), every target a path-override header names (X-Original-URL,
// X-Rewrite-URL, X-Original-URI, X-Forwarded-Uri: PathOverrideHeaders),
// and every method it may run as, its own or one a method-override header
// or a _method query parameter names (MethodOverrideHeaders): the key must
// hold the scope of each.
//
// # Outcomes and reasons
//
// Each Outcome is one row of a keyed table: its name (the JSON error.code
// and the metric label), HTTP status, message, gRPC status code and
// challenge headers. Each Reason (why, for logs and metrics only; every
// invalid key looks the same from outside) is one row naming the outcome
// it belongs to, so a decision is built from its reason and the two labels
// of keygate_decisions_total cannot disagree.
//
// # Errors
//
// Decide never fails: a store error, a lookup deadline, a canceled caller
// or a recovered panic is a Decision with outcome Unavailable (503), so a
// bug can only deny. NewServer returns an error naming the bad setting.
//
// # Imports
//
// authz imports policy and keystore, never pgx, gRPC or Envoy types; the
// adapters import authz, never the other way.
package authz
