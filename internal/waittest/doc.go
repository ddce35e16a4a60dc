// Package waittest waits, in tests, for something that happens in the
// background: a server to report SERVING, a notification to arrive, a log
// line to appear. It is the one way keygate's tests wait: poll a condition
// until it holds, and fail the test, naming what it waited for, when it
// does not hold in time.
package waittest
