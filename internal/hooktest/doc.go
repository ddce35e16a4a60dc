// Package hooktest is a webhook receiver for tests: an HTTP server that
// verifies each delivery's Standard Webhooks signature and counts the
// deliveries it accepted by event id, or answers 503 while it is down.
package hooktest
