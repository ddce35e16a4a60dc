// Package webhook sends keygate's events out: it signs deliveries as the
// Standard Webhooks specification says (webhook-id, webhook-timestamp and
// webhook-signature headers; "v1," and the base64 HMAC-SHA256 of
// "id.timestamp.body" under the endpoint's whsec_ secret, one signature per
// secret while a rotation overlaps), and its Deliverer claims due
// deliveries from the store's outbox (keystore.Store.ClaimDeliveries), posts
// them, and records each outcome: delivered on a 2xx, retried with
// exponential backoff and jitter for at least RetryFor (24 hours) on
// anything else, given up after that. A receiver that answers 410 Gone has
// its endpoint disabled.
//
// Where a delivery may go is guarded when an endpoint is registered
// (Guard.CheckURL) and again whenever a connection is dialed (the dialer's
// Control function sees the address actually dialed, after DNS): never the
// admin listener itself, an unspecified, multicast or broadcast address,
// and, unless allowed, never a link-local or cloud metadata address
// (169.254.169.254 and its kin). Redirects are never followed (a 3xx is a
// failed attempt), each attempt has a deadline, and at most MaxResponseBody
// bytes of an answer are read: a slow, hung, redirecting or huge receiver
// costs one worker for one timeout, and never the decision path, which
// this package is not on.
//
// Errors recorded in the delivery log and logged never hold the URL's
// query, the payload or a secret.
package webhook
