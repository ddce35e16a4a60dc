// Package pgtest gives tests a real PostgreSQL: the server named by
// KEYGATE_TEST_DATABASE_URL when it is set (a test-only variable: never
// DATABASE_URL, which keygate reads), otherwise a throwaway cluster started from
// the local PostgreSQL binaries (initdb and pg_ctl, found on PATH or under
// /usr/lib/postgresql/*/bin, run as the postgres user when the tests run
// as root). There are no mocks: every test talks to a real server.
//
// Each test gets its own database, created from a migrated template, and
// dropped when the test ends:
//
//	func TestMain(m *testing.M) { pgtest.Main(m) }
//
//	func TestSomething(t *testing.T) {
//		pool := pgtest.NewPool(t) // a fresh, migrated database
//		...
//	}
//
// Tests that stop and restart the database get a cluster of their own with
// NewCluster. Without PostgreSQL's binaries a test is skipped with one line
// saying what to install, except in CI (CI=true), where it fails: CI
// installs them (package needs).
package pgtest
