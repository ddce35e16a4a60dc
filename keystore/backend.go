package keystore

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"time"
)

// Backend is the store contract: what a database does for a Store. The
// Store owns every rule of the key lifecycle (what may change, when, and
// what is audited); a Backend only reads and writes rows, in transactions,
// and announces changes. Two backends implement it, each proven by the
// same conformance suite (keystore/conformance): keystore/postgres, for any
// number of replicas, and keystore/sqlite, embedded, for one node.
//
// Every method is safe for concurrent use. Errors wrap the package's
// sentinels where one applies: ErrNotFound, ErrUnavailable (the database
// cannot answer), ErrNoSchema (it has no keygate schema, or an older one),
// ErrDigestTaken and ErrRotated (a uniqueness rule held).
type Backend interface {
	EventBackend // webhook endpoints, deliveries, expiry bookkeeping (events.go)
	// Kind names the backend for messages and metrics: "postgres" or
	// "sqlite".
	Kind() string
	// Write runs fn in one read-write transaction, committed when fn
	// returns nil and rolled back otherwise. Notices given to Tx.Notify are
	// delivered to listeners when, and only if, it commits.
	Write(ctx context.Context, fn func(Tx) error) error

	// Lookup returns the record of the key stored under d: the decision
	// path's one indexed query. ErrNotFound when there is none; any other
	// failure matches ErrUnavailable.
	Lookup(ctx context.Context, d Digest) (*Record, error)
	// LookupMany returns the records stored under any of ds, in no order.
	LookupMany(ctx context.Context, ds []Digest) ([]Stored, error)
	// Get returns the key with the given id (canonical, as parseID makes
	// it), with RotatedTo set.
	Get(ctx context.Context, id string) (*Key, error)
	// List returns the keys q selects, in its order, with RotatedTo set.
	List(ctx context.Context, q ListQuery) ([]*Key, error)
	// Events returns a key's audit trail, oldest first.
	Events(ctx context.Context, id string) ([]Event, error)
	// Accounts returns the distinct account ids keys are stored under,
	// sorted, with how many keys each has.
	Accounts(ctx context.Context) ([]AccountKeys, error)
	// ChangedSince returns the records whose UpdatedAt is after since, and
	// the backend's time that the answer is complete up to.
	ChangedSince(ctx context.Context, since time.Time) ([]Stored, time.Time, error)
	// RecordLastUsed writes last-use times in one statement, never moving
	// one back; not a lifecycle change (no audit, no notice).
	RecordLastUsed(ctx context.Context, batch []LastUsed) error
	// Export calls fn with every key (with its digest, rotation link,
	// creator and times) in creation order, then with every audit event in
	// the order they were written, for copying a store.
	Export(ctx context.Context, keys func(*Key) error, events func(Event) error) error

	// Listen delivers the notices of committed changes until ctx ends
	// (nil) or the feed breaks (an error: the caller resyncs). listening
	// is called once every change committed from then on will be
	// delivered, before the first delivery; an error from it ends Listen.
	Listen(ctx context.Context, listening func() error, deliver func(Notice)) error
	// Ping checks that the database answers (ErrUnavailable if not).
	Ping(ctx context.Context) error
	// Migrate applies the backend's schema migrations that the database
	// lacks; safe to run from several processes at once.
	Migrate(ctx context.Context, logger *slog.Logger) ([]MigrationResult, error)
	// PendingMigrations reports whether the database lacks migrations
	// this build knows. A database migrated by a newer keygate is
	// ErrSchemaTooNew.
	PendingMigrations(ctx context.Context) (bool, error)
	// Where names the database for messages, never with a password:
	// `"keygate" on db:5432 (user keygate)` or `sqlite file /var/lib/keygate.db`.
	Where() string
	// Close releases the backend's connections (and, for an embedded
	// database, its lock).
	Close()

	UsageBackend // usage and replicas (usage.go)
}

// Tx is one read-write transaction of a Backend.
type Tx interface {
	EventTx // the outbox, endpoints, expiry and leak bookkeeping (events.go)
	// Now is the transaction's time: the database's clock where it has
	// one, at microsecond precision, in UTC.
	Now(ctx context.Context) (time.Time, error)
	// Lock reads the key with the given id and keeps others from changing
	// it until the transaction ends (ErrNotFound if there is none).
	Lock(ctx context.Context, id string) (*Key, error)
	// Successor is the id of the key that replaced id, "" if none.
	Successor(ctx context.Context, id string) (string, error)
	// Insert stores new keys with every field they carry (RotatedTo
	// excepted) and sets their UpdatedAt. A digest stored already is
	// ErrDigestTaken, a second successor of one key ErrRotated; the
	// transaction stays usable after either, with nothing of the call
	// written.
	Insert(ctx context.Context, keys ...*Key) error
	// CountKeys is how many keys the database holds.
	CountKeys(ctx context.Context) (int, error)
	// StoredDigests returns which of ds are stored already, and the ids
	// of their keys.
	StoredDigests(ctx context.Context, ds []Digest) (map[Digest]string, error)
	// Change writes c to the key with the given id, moves its UpdatedAt
	// forward (so that caches and the delta poll see a new version), and
	// returns the key as it now is, RotatedTo included.
	Change(ctx context.Context, id string, c KeyChange) (*Key, error)
	// AddEvents appends audit events.
	AddEvents(ctx context.Context, events ...Event) error
	// Notify announces a change to listeners on commit.
	Notify(ctx context.Context, n Notice) error
}

// AccountKeys is an account id and how many keys it has.
type AccountKeys struct {
	AccountID string
	Keys      int
}

// Field is a value that a KeyChange writes when Set is true.
type Field[T any] struct {
	Value T
	Set   bool
}

// To is a Field that writes v.
func To[T any](v T) Field[T] { return Field[T]{Value: v, Set: true} }

// KeyChange is what Tx.Change writes: the fields that are Set, the others
// left as they are. Values are valid (the Store checked them).
type KeyChange struct {
	Name         Field[string]
	Description  Field[string]
	Scopes       Field[[]string]
	AllowedCIDRs Field[[]netip.Prefix]
	Metadata     Field[map[string]string]
	Limits       Field[Limits]
	ExpiresAt    Field[*time.Time]
	RevokedAt    Field[*time.Time]
	DisabledAt   Field[*time.Time]
}

// Notice announces a committed change: to the key stored under Digest, or,
// with Added, keys added in bulk (every unknown-key entry may be stale).
// At is the backend's time of the change, from which listeners measure how
// long it took to reach them (zero when unknown).
type Notice struct {
	Digest Digest
	Added  bool
	At     time.Time
}

// ListQuery is what Backend.List selects: keys of an account ("" for all)
// in a state, in creation order (or newest first), after a position, at
// most Limit of them (0: no limit). Status is judged at Now, or at the
// database's clock when Now is nil.
type ListQuery struct {
	AccountID string
	Status    StatusFilter
	Newest    bool
	Limit     int
	After     *Position
	Now       *time.Time
}

// Matches reports whether a key in state s is one that the filter lists:
// the one definition of the filters, which every backend's query follows
// (the conformance suite checks each against it).
func (f StatusFilter) Matches(s State) bool {
	switch f {
	case ListAll:
		return true
	case ListActive:
		return s == StateActive
	case ListExpired:
		return s == StateExpired
	case ListRevoked:
		return s == StateRevoked
	case ListDisabled:
		return s == StateDisabled
	}
	return false
}

// Errors of the store contract, besides those in errors.go.
var (
	// ErrDigestTaken: a key is stored under that digest already.
	ErrDigestTaken = errors.New("keystore: a key with that digest is stored already")
	// ErrNoSchema: the database has no keygate schema, or an older one;
	// the fix is `keygate migrate`, not a retry.
	ErrNoSchema = errors.New("keystore: the database has no keygate schema (or an older one)")
	// ErrSchemaTooNew: the database was migrated by a newer keygate than
	// this one.
	ErrSchemaTooNew = errors.New("keystore: the database was migrated by a newer keygate")
)

// IsNoSchema reports whether err says the database has no keygate schema
// (or not all of it).
func IsNoSchema(err error) bool { return errors.Is(err, ErrNoSchema) }
