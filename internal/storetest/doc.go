// Package storetest gives a test a real database of its own, migrated, on
// the backend the run chooses, for the tests whose subject is not one
// backend (the admin API, the CLI, the servers end to end): they pass on
// either. KEYGATE_TEST_STORE chooses (postgres or sqlite); by default it is
// PostgreSQL where the tests can have one (KEYGATE_TEST_DATABASE_URL, or
// its binaries for a throwaway cluster), else the embedded SQLite, so that
// the suite runs on a machine with Go and nothing else. CI runs those
// tests on both.
//
//	func TestMain(m *testing.M) { storetest.Main(m) }
//
//	func TestSomething(t *testing.T) {
//		url := storetest.NewDatabase(t) // for --database-url
//		store := storetest.NewStore(t, keystore.Options{})
//	}
//
// Tests of what only PostgreSQL does (replicas sharing one database,
// stopping the server) use package pgtest directly.
package storetest
