package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gofrs/flock"
	sqlite "modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/keygate/keygate/keystore"
)

// Memory is the path of an in-memory database: nothing is written to
// disk, and everything is gone when the backend closes (keygate dev).
const Memory = ":memory:"

// Options configure Open. The zero value opens an existing database file
// for a command that reads or changes keys.
type Options struct {
	// Create creates the file if it does not exist (migrate, dev).
	// Otherwise a missing file is an error that says to migrate first.
	Create bool
	// Exclusive takes the file's serve lock, held until Close: a second
	// Exclusive backend on the same file, in any process, is refused
	// (ErrInUse). Serve takes it: its cache learns of changes made by
	// other processes only through the delta poll, and more than one
	// serving replica needs PostgreSQL.
	Exclusive bool
	// BusyTimeout is how long a write waits for another process's write
	// to finish before failing. Default 5s.
	BusyTimeout time.Duration
	// Readers bounds the connections that read at once. Default 4.
	Readers int
}

// Backend keeps keys in an SQLite database file, embedded (modernc.org/
// sqlite: pure Go, no cgo): the keystore.Backend for one node. The file is
// in WAL mode, so that reads never wait for the one writer; writes take
// the database's write lock when their transaction begins (BEGIN
// IMMEDIATE), so that two writers never deadlock.
type Backend struct {
	path   string // absolute, or Memory
	writer *sql.DB
	reader *sql.DB // == writer for Memory
	lock   *flock.Flock
	hub    hub

	lookupMu sync.Mutex
	lookup   atomic.Pointer[sql.Stmt] // lookupSQL, once prepared (lookupStatement)
}

var _ keystore.Backend = (*Backend)(nil)

// Open opens the database at path (a file, or Memory).
func Open(ctx context.Context, path string, opts Options) (*Backend, error) {
	if path == "" {
		return nil, errors.New("sqlite: no file: give a path, like sqlite:keygate.db")
	}
	if opts.BusyTimeout <= 0 {
		opts.BusyTimeout = 5 * time.Second
	}
	if opts.Readers <= 0 {
		opts.Readers = 4
	}
	b := &Backend{path: path}
	if path == Memory {
		// One connection holds the database; it must never close.
		db, err := sql.Open("sqlite", "file:keygate?mode=memory&_txlock=immediate&_pragma=foreign_keys(1)")
		if err != nil {
			return nil, err
		}
		db.SetMaxOpenConns(1)
		db.SetMaxIdleConns(1)
		db.SetConnMaxLifetime(0)
		db.SetConnMaxIdleTime(0)
		b.writer, b.reader = db, db
		if err := db.PingContext(ctx); err != nil {
			db.Close()
			return nil, b.openError(err)
		}
		return b, nil
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("sqlite file %s: %w", path, err)
	}
	b.path = abs
	if err := b.checkPlace(opts.Create); err != nil {
		return nil, err
	}
	if opts.Exclusive {
		b.lock = flock.New(abs + ".lock")
		locked, err := b.lock.TryLock()
		if err != nil {
			return nil, fmt.Errorf("sqlite file %s: taking its serve lock %s: %w", abs, abs+".lock", err)
		}
		if !locked {
			return nil, &FileError{Path: abs, Problem: "is in use by another keygate serve (it holds " + abs + ".lock): " +
				"one file serves one process; more than one replica needs PostgreSQL (--database-url postgres://…)"}
		}
	}
	mode := "rw"
	if opts.Create {
		mode = "rwc"
	}
	params := fmt.Sprintf("mode=%s&_pragma=busy_timeout(%d)&_pragma=foreign_keys(1)&_pragma=synchronous(NORMAL)",
		mode, opts.BusyTimeout.Milliseconds())
	name := "file:" + (&url.URL{Path: abs}).EscapedPath()
	writer, err := sql.Open("sqlite", name+"?"+params+"&_pragma=journal_mode(WAL)&_txlock=immediate")
	if err == nil {
		writer.SetMaxOpenConns(1)
		writer.SetConnMaxIdleTime(time.Minute)
		b.writer = writer
		err = writer.PingContext(ctx)
	}
	if err == nil {
		b.reader, err = sql.Open("sqlite", name+"?"+params+"&_pragma=query_only(1)")
	}
	if err == nil {
		b.reader.SetMaxOpenConns(opts.Readers)
		b.reader.SetMaxIdleConns(opts.Readers)
		err = b.reader.PingContext(ctx)
	}
	if err == nil {
		err = b.checkNotNewer(ctx)
	}
	if err != nil {
		b.Close()
		return nil, b.openError(err)
	}
	return b, nil
}

// checkPlace refuses, with the fix, a file that cannot be a database
// here: a missing directory, one keygate cannot write in (SQLite needs
// its -wal and -shm files beside the database), or a missing file when
// none may be created.
func (b *Backend) checkPlace(create bool) error {
	dir := filepath.Dir(b.path)
	st, err := os.Stat(dir)
	switch {
	case err != nil:
		return &FileError{Path: b.path, Problem: "is in a directory that does not exist (" + dir + "): create it, or choose another path"}
	case !st.IsDir():
		return &FileError{Path: b.path, Problem: "is in " + dir + ", which is not a directory"}
	}
	if st, err := os.Stat(b.path); err == nil && st.IsDir() {
		return &FileError{Path: b.path, Problem: "is a directory: name a file in it, like sqlite:" + filepath.Join(b.path, "keygate.db")}
	} else if err != nil && !create {
		return &FileError{Path: b.path, Problem: "does not exist: create it with 'keygate migrate --database-url sqlite:" + b.path + "'"}
	}
	probe, err := os.CreateTemp(dir, ".keygate-probe-*")
	if err != nil {
		return &FileError{Path: b.path, Problem: fmt.Sprintf("is in a directory keygate cannot write in (%s: %v; SQLite keeps its -wal and -shm files beside the database): "+
			"choose a writable directory", dir, errors.Unwrap(err))}
	}
	probe.Close()
	os.Remove(probe.Name())
	return nil
}

// FileError says why an SQLite file cannot be used, and what to do, in
// one line that names the file.
type FileError struct {
	Path    string
	Problem string // "is locked by another program: close it …"
	Err     error  // the cause, when it is one of keystore's errors
}

func (e *FileError) Error() string { return "sqlite file " + e.Path + " " + e.Problem }

// Unwrap is the cause.
func (e *FileError) Unwrap() error { return e.Err }

// fileError is err as a *FileError when it says the file cannot be used
// (damaged, locked, not writable), else err.
func (b *Backend) fileError(err error) error {
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return err
	}
	switch se.Code() & 0xff {
	case sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_CORRUPT:
		return &FileError{Path: b.path, Problem: "is not a keygate database, or it is damaged: restore it from a backup, or choose another path"}
	case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED:
		return &FileError{Path: b.path, Problem: "is locked by another program: close it (or wait for it) and try again"}
	case sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_READONLY, sqlite3.SQLITE_PERM:
		return &FileError{Path: b.path, Problem: "cannot be written: check its permissions and its directory's"}
	case sqlite3.SQLITE_FULL:
		return &FileError{Path: b.path, Problem: "cannot grow: the disk is full"}
	}
	return err
}

// openError says in one line why the file could not be opened.
func (b *Backend) openError(err error) error {
	if fe := b.fileError(err); fe != err {
		return fe
	}
	return fmt.Errorf("sqlite file %s: %w", b.path, err)
}

// Kind is "sqlite".
func (b *Backend) Kind() string { return "sqlite" }

// Where names the file.
func (b *Backend) Where() string {
	if b.path == Memory {
		return "in-memory SQLite database"
	}
	return "SQLite file " + b.path
}

// Path is the database file's absolute path, or Memory.
func (b *Backend) Path() string { return b.path }

// Close closes the connections, then releases the serve lock.
func (b *Backend) Close() {
	if stmt := b.lookup.Load(); stmt != nil {
		stmt.Close()
	}
	if b.reader != nil && b.reader != b.writer {
		b.reader.Close()
	}
	if b.writer != nil {
		b.writer.Close()
	}
	if b.lock != nil {
		b.lock.Unlock()
	}
}

// Ping checks that the database answers.
func (b *Backend) Ping(ctx context.Context) error {
	if err := b.reader.PingContext(ctx); err != nil {
		return fmt.Errorf("keystore: ping: %w: %w", keystore.ErrUnavailable, err)
	}
	return nil
}

// schemaError marks an error that says the schema is missing (or older
// than this build's) with keystore.ErrNoSchema.
func schemaError(err error) error {
	if err != nil && (strings.Contains(err.Error(), "no such table") || strings.Contains(err.Error(), "no such column")) {
		return fmt.Errorf("%w: %w", keystore.ErrNoSchema, err)
	}
	return err
}

// unavailable marks a failed read of the decision path.
func unavailable(what string, err error) error {
	return fmt.Errorf("keystore: %s: %w: %w", what, keystore.ErrUnavailable, schemaError(err))
}

// Write runs fn in one transaction, which takes the write lock as it
// begins; the notices it gave are published once it commits.
func (b *Backend) Write(ctx context.Context, fn func(keystore.Tx) error) error {
	tx, err := b.writer.BeginTx(ctx, nil)
	if err != nil {
		return b.fileError(schemaError(err))
	}
	t := &txn{tx: tx}
	if err := fn(t); err != nil {
		tx.Rollback()
		return b.fileError(schemaError(err))
	}
	if err := tx.Commit(); err != nil {
		return b.fileError(schemaError(err))
	}
	at := time.Now()
	for _, n := range t.notices {
		n.At = at
		b.hub.publish(n)
	}
	return nil
}

// micros is a time as stored: unix microseconds.
func micros(t time.Time) int64 { return t.UnixMicro() }

// nullMicros is an optional time as stored.
func nullMicros(t *time.Time) sql.NullInt64 {
	if t == nil {
		return sql.NullInt64{}
	}
	return sql.NullInt64{Int64: t.UnixMicro(), Valid: true}
}

// fromMicros reads a stored time.
func fromMicros(us int64) time.Time { return time.UnixMicro(us).UTC() }

// fromNullMicros reads a stored optional time.
func fromNullMicros(v sql.NullInt64) *time.Time {
	if !v.Valid {
		return nil
	}
	t := fromMicros(v.Int64)
	return &t
}

// joinList stores a list of scopes or prefixes: joined by ",".
func joinList[T ~string | netip.Prefix](list []T) string {
	parts := make([]string, len(list))
	for i, v := range list {
		parts[i] = fmt.Sprint(v)
	}
	return strings.Join(parts, ",")
}

// splitScopes reads stored scopes.
func splitScopes(s string) []string {
	if s == "" {
		return []string{}
	}
	return strings.Split(s, ",")
}

// splitPrefixes reads stored source restrictions.
func splitPrefixes(s string) ([]netip.Prefix, error) {
	if s == "" {
		return nil, nil
	}
	parts := strings.Split(s, ",")
	out := make([]netip.Prefix, len(parts))
	for i, p := range parts {
		var err error
		if out[i], err = netip.ParsePrefix(p); err != nil {
			return nil, fmt.Errorf("a stored source restriction %q: %w", p, err)
		}
	}
	return out, nil
}

// metadataText stores metadata.
func metadataText(m map[string]string) (string, error) {
	if len(m) == 0 {
		return "{}", nil
	}
	b, err := json.Marshal(m)
	return string(b), err
}

// hub delivers the notices of this backend's commits to its listeners.
type hub struct {
	mu        sync.Mutex
	listeners map[*listener]struct{}
}

// listener is one Listen call's queue: lost is set when it overflowed, so
// that Listen ends and the caller resyncs.
type listener struct {
	notices chan keystore.Notice
	lost    chan struct{}
	once    sync.Once
}

// listenQueue bounds the notices waiting for one listener.
const listenQueue = 4096

func (h *hub) subscribe() *listener {
	l := &listener{notices: make(chan keystore.Notice, listenQueue), lost: make(chan struct{})}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.listeners == nil {
		h.listeners = map[*listener]struct{}{}
	}
	h.listeners[l] = struct{}{}
	return l
}

func (h *hub) unsubscribe(l *listener) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.listeners, l)
}

func (h *hub) publish(n keystore.Notice) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for l := range h.listeners {
		select {
		case l.notices <- n:
		default:
			l.once.Do(func() { close(l.lost) })
		}
	}
}

// Listen delivers the notices of changes committed through this backend
// (the serving process's own admin API and console) as they commit.
// Changes made by other processes on the file (the CLI) reach the cache
// through the delta poll (ChangedSince) instead.
func (b *Backend) Listen(ctx context.Context, listening func() error, deliver func(keystore.Notice)) error {
	l := b.hub.subscribe()
	defer b.hub.unsubscribe(l)
	if err := listening(); err != nil {
		return err
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case n := <-l.notices:
			deliver(n)
		case <-l.lost:
			return errors.New("change notices overflowed their queue")
		}
	}
}
