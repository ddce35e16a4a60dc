// Package redistest starts throwaway Redis servers for tests: Debian's
// redis-server on a free 127.0.0.1 port, without persistence, stopped when
// the test ends. A machine without redis-server skips the test (fails it
// in CI), through internal/needs.
package redistest
