// Package sqlite is keygate's embedded store: the keystore.Backend for one
// node, in an SQLite file, with nothing to install (modernc.org/sqlite is
// SQLite in pure Go, so go run and go install work anywhere, without cgo).
//
// The file is opened in WAL mode (readers never wait for the writer) with
// foreign keys on and a busy timeout; writes take the database's write
// lock as their transaction begins (BEGIN IMMEDIATE), one connection at a
// time, so that two writers never deadlock. Times are stored as unix
// microseconds, scopes and source restrictions as sorted lists joined by
// ",", metadata as a JSON object.
//
// A serving process opens the file Exclusive: it holds an advisory lock
// on PATH.lock until Close, and a second serving process is refused. The
// CLI opens the file beside it. Changes made through a backend reach its
// own listeners when they commit (Listen); changes made by other processes
// reach a server's cache through the delta poll (ChangedSince).
//
//	b, err := sqlite.Open(ctx, "/var/lib/keygate/keygate.db", sqlite.Options{})
//	store, _ := keystore.New(b, keystore.Options{})
//
// # Errors
//
// A file that cannot be used (its directory missing or not writable, the
// file missing when not creating, damaged, locked by another program,
// migrated by a newer keygate, or served already) is a *FileError whose
// message names the file and the fix. Reads of the decision path wrap
// every failure with keystore.ErrUnavailable; a missing table matches
// keystore.ErrNoSchema.
package sqlite
