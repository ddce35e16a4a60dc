package keystore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// NotifyChannel is the PostgreSQL channel on which every lifecycle change
// is announced, in the same transaction as the change. The payload is the
// hex digest of the changed key, or "*" for keys added in bulk (Import).
const NotifyChannel = "keygate_keys"

// DefaultLifetime is how long a key lives when its creator chooses no
// expiry at all (neither a lifetime, a date, nor "never").
const DefaultLifetime = 90 * 24 * time.Hour

// Options configure a Store. The zero value of every field is usable.
type Options struct {
	// Hasher hashes new keys. Default: plain SHA-256.
	Hasher *Hasher
	// Prefix starts every new key. Default: DefaultPrefix.
	Prefix string
	// MaxLifetime, when positive, caps how far in the future a new key may
	// expire and forbids keys that never expire.
	MaxLifetime time.Duration
	// Now is the clock of lifecycle changes, for tests. Default: the
	// database's clock (its transaction time), so that creation, expiry
	// and revocation times never depend on the clock of the machine that
	// runs the CLI.
	Now func() time.Time
}

// Store keeps keys in PostgreSQL. Its methods are safe for concurrent use.
type Store struct {
	pool        *pgxpool.Pool
	hasher      *Hasher
	prefix      string
	maxLifetime time.Duration
	now         func() time.Time
	generate    func(prefix string) (Secret, error)
}

// New returns a Store on pool, which must point at a migrated database.
func New(pool *pgxpool.Pool, opts Options) (*Store, error) {
	s := &Store{pool: pool, hasher: opts.Hasher, prefix: opts.Prefix, maxLifetime: opts.MaxLifetime, now: opts.Now}
	if s.hasher == nil {
		s.hasher, _ = NewHasher(nil)
	}
	if s.prefix == "" {
		s.prefix = DefaultPrefix
	}
	if err := ValidatePrefix(s.prefix); err != nil {
		return nil, fmt.Errorf("keystore: %w", err)
	}
	if s.maxLifetime < 0 {
		return nil, errors.New("keystore: max lifetime must not be negative")
	}
	s.generate = GenerateSecret
	return s, nil
}

// Hasher returns the hasher the store creates keys with, so that the
// decision path hashes presented keys the same way.
func (s *Store) Hasher() *Hasher { return s.hasher }

// txNow is the time of a lifecycle change made in tx: the injected clock
// if there is one, else the database's transaction time; at the
// database's precision either way.
func (s *Store) txNow(ctx context.Context, tx pgx.Tx) (time.Time, error) {
	if s.now != nil {
		return s.now().UTC().Truncate(time.Microsecond), nil
	}
	var t time.Time
	if err := tx.QueryRow(ctx, `SELECT now()`).Scan(&t); err != nil {
		return time.Time{}, err
	}
	return t.UTC().Truncate(time.Microsecond), nil
}

// Expiry is a key's chosen lifetime: at most one of its fields is set. The
// zero value means DefaultLifetime (capped by the store's MaxLifetime).
type Expiry struct {
	In    time.Duration // expires this long after creation
	At    time.Time     // expires at this instant
	Never bool          // never expires
}

func (e Expiry) resolve(now time.Time, maxLifetime time.Duration) (*time.Time, error) {
	set := 0
	for _, b := range []bool{e.In != 0, !e.At.IsZero(), e.Never} {
		if b {
			set++
		}
	}
	if set > 1 {
		return nil, invalid("expiry", "choose one of a lifetime, an expiry time, or no expiry")
	}
	var at time.Time
	switch {
	case e.Never:
		if maxLifetime > 0 {
			return nil, invalidf("expiry", "keys must expire: the maximum lifetime is %s", FormatDuration(maxLifetime))
		}
		return nil, nil
	case e.In < 0:
		return nil, invalid("expiry", "lifetime must be positive")
	case e.In > 0 && e.In < MinLifetime:
		return nil, invalidf("expiry", "lifetime %s is too short: a key must live at least %s", e.In, FormatDuration(MinLifetime))
	case e.In > 0:
		at = now.Add(e.In).Truncate(time.Microsecond)
	case !e.At.IsZero():
		at = e.At.UTC().Truncate(time.Microsecond)
		if !at.After(now) {
			return nil, invalidf("expiry", "expiry time %s is not in the future", at.Format(time.RFC3339))
		}
		if at.Sub(now) < MinLifetime {
			return nil, invalidf("expiry", "expiry time %s is too soon: a key must live at least %s", at.Format(time.RFC3339Nano), FormatDuration(MinLifetime))
		}
	default:
		at = now.Add(defaultLifetime(maxLifetime))
	}
	if maxLifetime > 0 && at.Sub(now) > maxLifetime {
		return nil, invalidf("expiry", "exceeds the maximum lifetime of %s", FormatDuration(maxLifetime))
	}
	return &at, nil
}

// CreateParams describe a new key.
type CreateParams struct {
	AccountID   string
	Name        string
	Description string
	Scopes      []string
	// AllowedCIDRs are the source addresses the key may be used from
	// (ParseCIDR); none: anywhere.
	AllowedCIDRs []string
	// Metadata is returned with every decision for the key (see
	// NormalizeMetadata).
	Metadata map[string]string
	Expiry   Expiry
	Actor    string // who asks, for the audit trail
}

// check validates every field of p but its expiry and returns the key it
// describes (its id, secret and times not yet set), or every problem found
// (errors.Join of *ValidationError); more, when set, joins problems found
// elsewhere.
func (p CreateParams) check(more ...error) (*Key, error) {
	scopes, scopesErr := NormalizeScopes(p.Scopes)
	cidrs, cidrsErr := NormalizeCIDRs(p.AllowedCIDRs)
	metadata, metadataErr := NormalizeMetadata(p.Metadata)
	err := errors.Join(append([]error{
		ValidateAccountID(p.AccountID),
		ValidateName(p.Name),
		ValidateDescription(p.Description),
		scopesErr,
		cidrsErr,
		metadataErr,
	}, more...)...)
	if err != nil {
		return nil, err
	}
	return &Key{AccountID: p.AccountID, Name: p.Name, Description: p.Description, Scopes: scopes, AllowedCIDRs: cidrs,
		Metadata: metadata, CreatedBy: p.Actor}, nil
}

// CheckCreate reports every problem Create would find with p, judging its
// expiry at now (Create itself judges it at the database's clock), and
// writes nothing. The error joins one *ValidationError per field that is
// wrong (errors.Join); nil means Create would accept p at now.
func (s *Store) CheckCreate(p CreateParams, now time.Time) error {
	_, expiryErr := p.Expiry.resolve(now.UTC().Truncate(time.Microsecond), s.maxLifetime)
	_, err := p.check(expiryErr)
	return err
}

// Lifetimes returns the lifetime of a key created without an expiry of its
// own (DefaultLifetime, capped by the maximum) and the maximum lifetime (0:
// none, and keys may never expire).
func (s *Store) Lifetimes() (def, max time.Duration) {
	return defaultLifetime(s.maxLifetime), s.maxLifetime
}

func defaultLifetime(maxLifetime time.Duration) time.Duration {
	if maxLifetime > 0 && maxLifetime < DefaultLifetime {
		return maxLifetime
	}
	return DefaultLifetime
}

// Create issues a new key and returns its record and its secret, which is
// never available again.
func (s *Store) Create(ctx context.Context, p CreateParams) (*Key, Secret, error) {
	k, err := p.check()
	if err != nil {
		return nil, "", err
	}
	var secret Secret
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		now, err := s.txNow(ctx, tx)
		if err != nil {
			return err
		}
		if k.ExpiresAt, err = p.Expiry.resolve(now, s.maxLifetime); err != nil {
			return err
		}
		k.CreatedAt = now
		secret, err = s.insert(ctx, tx, k)
		if err != nil {
			return err
		}
		return recordEvent(ctx, tx, k, "create", p.Actor, now, createDetail(k))
	})
	if err != nil {
		return nil, "", fmt.Errorf("keystore: create: %w", err)
	}
	return k, secret, nil
}

// createDetail is the audit detail of a key's creation.
func createDetail(k *Key) map[string]any {
	d := map[string]any{"name": k.Name, "account_id": k.AccountID, "scopes": k.Scopes, "expires_at": k.ExpiresAt}
	if len(k.AllowedCIDRs) > 0 {
		d["allowed_cidrs"] = cidrStrings(k.AllowedCIDRs)
	}
	if len(k.Metadata) > 0 {
		d["metadata"] = k.Metadata
	}
	return d
}

// insert generates a secret for k, fills in its id, digest and display
// prefix, and inserts it. It retries with a fresh secret in the
// astronomically unlikely case of a digest collision.
func (s *Store) insert(ctx context.Context, tx pgx.Tx, k *Key) (Secret, error) {
	id, err := uuid.NewV7()
	if err != nil {
		return "", err
	}
	k.ID = id.String()
	k.HashScheme = s.hasher.Scheme()
	for attempt := 0; ; attempt++ {
		secret, err := s.generate(s.prefix)
		if err != nil {
			return "", err
		}
		k.Digest = s.hasher.Digest(secret)
		k.DisplayPrefix = secret.DisplayPrefix()
		_, err = tx.Exec(ctx, `SAVEPOINT insert_key`)
		if err != nil {
			return "", err
		}
		err = tx.QueryRow(ctx, `
			INSERT INTO api_keys (id, account_id, name, description, display_prefix, digest, hash_scheme,
			                      scopes, created_at, created_by, expires_at, rotated_from, allowed_cidrs, metadata)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
			RETURNING updated_at`,
			k.ID, k.AccountID, k.Name, k.Description, k.DisplayPrefix, k.Digest[:], k.HashScheme,
			k.Scopes, k.CreatedAt, k.CreatedBy, k.ExpiresAt, nullIfEmpty(k.RotatedFrom), nonNil(k.AllowedCIDRs),
			metadataJSON(k.Metadata)).Scan(&k.UpdatedAt)
		k.UpdatedAt = k.UpdatedAt.UTC()
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "23505" && pgErr.ConstraintName == "api_keys_digest" && attempt < 3 {
			if _, err := tx.Exec(ctx, `ROLLBACK TO SAVEPOINT insert_key`); err != nil {
				return "", err
			}
			continue
		}
		if err != nil {
			return "", err
		}
		return secret, notify(ctx, tx, k.Digest)
	}
}

// keyColumns are the columns scanned into a Key, in scanKey's order.
const keyColumns = `id::text, account_id, name, description, display_prefix, digest, hash_scheme, scopes,
	created_at, created_by, expires_at, revoked_at, last_used_at, rotated_from::text, updated_at, disabled_at, allowed_cidrs, metadata`

// shownColumns are keyColumns and the id of the key's successor, for the
// reads and changes that show a key (the decision path reads
// decisionColumns instead). The statement's table must be api_keys itself.
const shownColumns = keyColumns + `,
	(SELECT successor.id::text FROM api_keys AS successor WHERE successor.rotated_from = api_keys.id)`

func scanKey(row pgx.CollectableRow) (*Key, error) { return scanKeyWith(row) }

// scanShown scans shownColumns.
func scanShown(row pgx.CollectableRow) (*Key, error) {
	var rotatedTo *string
	k, err := scanKeyWith(row, &rotatedTo)
	if err == nil && rotatedTo != nil {
		k.RotatedTo = *rotatedTo
	}
	return k, err
}

// scanKeyWith scans keyColumns, then extra.
func scanKeyWith(row pgx.CollectableRow, extra ...any) (*Key, error) {
	var (
		k           Key
		digest      []byte
		rotatedFrom *string
	)
	dest := append([]any{&k.ID, &k.AccountID, &k.Name, &k.Description, &k.DisplayPrefix, &digest, &k.HashScheme,
		&k.Scopes, &k.CreatedAt, &k.CreatedBy, &k.ExpiresAt, &k.RevokedAt, &k.LastUsedAt, &rotatedFrom, &k.UpdatedAt, &k.DisabledAt, &k.AllowedCIDRs, &k.Metadata}, extra...)
	if err := row.Scan(dest...); err != nil {
		return nil, err
	}
	if len(digest) != len(k.Digest) {
		return nil, fmt.Errorf("key %s has a digest of %d bytes", k.ID, len(digest))
	}
	copy(k.Digest[:], digest)
	if rotatedFrom != nil {
		k.RotatedFrom = *rotatedFrom
	}
	k.CreatedAt, k.UpdatedAt = k.CreatedAt.UTC(), k.UpdatedAt.UTC()
	for _, t := range []*time.Time{k.ExpiresAt, k.RevokedAt, k.LastUsedAt, k.DisabledAt} {
		if t != nil {
			*t = t.UTC()
		}
	}
	if k.Scopes == nil {
		k.Scopes = []string{}
	}
	if len(k.AllowedCIDRs) == 0 {
		k.AllowedCIDRs = nil
	}
	if len(k.Metadata) == 0 {
		k.Metadata = nil
	}
	return &k, nil
}

func queryKeysWith(ctx context.Context, q pgxQuerier, scan pgx.RowToFunc[*Key], sql string, args ...any) ([]*Key, error) {
	rows, err := q.Query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, scan)
}

// queryKey is queryKeys for at most one key; none is ErrNotFound.
func queryKey(ctx context.Context, q pgxQuerier, sql string, args ...any) (*Key, error) {
	return queryKeyWith(ctx, q, scanKey, sql, args...)
}

// queryShown is queryKey for a query selecting shownColumns.
func queryShown(ctx context.Context, q pgxQuerier, sql string, args ...any) (*Key, error) {
	return queryKeyWith(ctx, q, scanShown, sql, args...)
}

func queryKeyWith(ctx context.Context, q pgxQuerier, scan pgx.RowToFunc[*Key], sql string, args ...any) (*Key, error) {
	rows, err := q.Query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	k, err := pgx.CollectExactlyOneRow(rows, scan)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, ErrNotFound
	}
	return k, err
}

type pgxQuerier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// decisionColumns are the columns the decision needs, scanned by
// scanRecord into a Record: what the decision path's reads select.
const decisionColumns = `id::text, account_id, scopes, expires_at, revoked_at IS NOT NULL, disabled_at IS NOT NULL, updated_at,
	allowed_cidrs, metadata`

// scanRecord scans decisionColumns, then extra.
func scanRecord(row pgx.CollectableRow, extra ...any) (*Record, error) {
	var f recordFields
	if err := row.Scan(append([]any{&f.id, &f.accountID, &f.scopes, &f.expiresAt, &f.revoked, &f.disabled, &f.updatedAt,
		&f.cidrs, &f.metadata}, extra...)...); err != nil {
		return nil, err
	}
	// A row the store did not write (by hand, with SQL) could hold what a
	// Record cannot encode: refuse to decide rather than ignore some.
	if len(f.cidrs) > MaxAllowedCIDRs {
		return nil, fmt.Errorf("key %s has %d source restrictions", f.id, len(f.cidrs))
	}
	if _, err := NormalizeMetadata(f.metadata); err != nil {
		return nil, fmt.Errorf("key %s has metadata the store would not write: %w", f.id, err)
	}
	return newRecord(f), nil
}

// scanStored scans decisionColumns and the digest.
func scanStored(row pgx.CollectableRow) (Stored, error) {
	var digest []byte
	r, err := scanRecord(row, &digest)
	if err != nil {
		return Stored{}, err
	}
	var st Stored
	if len(digest) != len(st.Digest) {
		return Stored{}, fmt.Errorf("key %s has a digest of %d bytes", r.ID(), len(digest))
	}
	copy(st.Digest[:], digest)
	st.Record = r
	return st, nil
}

// Lookup returns the record of the key stored under digest, whatever its
// state: the caller decides with Record.StateAt. It returns ErrNotFound for
// an unknown digest and an error matching ErrUnavailable when the database
// cannot answer. This is the decision path's one query; it reads only what
// the decision needs.
func (s *Store) Lookup(ctx context.Context, d Digest) (*Record, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+decisionColumns+` FROM api_keys WHERE digest = $1`, d[:])
	if err != nil {
		return nil, fmt.Errorf("keystore: lookup: %w: %w", ErrUnavailable, err)
	}
	r, err := pgx.CollectExactlyOneRow(rows, func(row pgx.CollectableRow) (*Record, error) { return scanRecord(row) })
	switch {
	case err == nil:
		return r, nil
	case errors.Is(err, pgx.ErrNoRows):
		return nil, ErrNotFound
	}
	return nil, fmt.Errorf("keystore: lookup: %w: %w", ErrUnavailable, err)
}

// LookupMany returns the records stored under any of digests, in no order:
// the cache uses it to resync what it holds.
func (s *Store) LookupMany(ctx context.Context, digests []Digest) ([]Stored, error) {
	raw := make([][]byte, len(digests))
	for i := range digests {
		raw[i] = digests[i][:]
	}
	rows, err := s.pool.Query(ctx, `SELECT `+decisionColumns+`, digest FROM api_keys WHERE digest = ANY($1)`, raw)
	if err == nil {
		var stored []Stored
		if stored, err = pgx.CollectRows(rows, scanStored); err == nil {
			return stored, nil
		}
	}
	return nil, fmt.Errorf("keystore: lookup: %w: %w", ErrUnavailable, err)
}

// parseID validates a key id; a malformed one is ErrInvalid, so that it
// never reaches the database as a type error.
func parseID(id string) (uuid.UUID, error) {
	u, err := uuid.Parse(id)
	if err != nil || len(id) != 36 {
		return uuid.UUID{}, invalid("id", "must be a key id like 0193c7a2-5d6e-7f00-8a1b-2c3d4e5f6a7b")
	}
	return u, nil
}

// Get returns the key with the given id.
func (s *Store) Get(ctx context.Context, id string) (*Key, error) {
	u, err := parseID(id)
	if err != nil {
		return nil, err
	}
	k, err := queryShown(ctx, s.pool, `SELECT `+shownColumns+` FROM api_keys WHERE id = $1`, u)
	if err != nil {
		return nil, fmt.Errorf("keystore: get %s: %w", id, err)
	}
	return k, nil
}

// StatusFilter selects keys by their state in List. The zero value,
// ListActive, lists only keys that authenticate.
type StatusFilter uint8

// The filters of List.
const (
	ListActive   StatusFilter = iota // neither revoked, disabled nor expired
	ListAll                          // every key
	ListExpired                      // expired, and neither revoked nor disabled
	ListRevoked                      // revoked
	ListDisabled                     // disabled and not revoked
)

// ListParams select keys to list.
type ListParams struct {
	AccountID string       // "" lists every account
	Status    StatusFilter // which states; judged at the store's clock
	// Newest lists the newest keys first; otherwise in creation order.
	Newest bool
	// Limit, when positive, is the most keys returned.
	Limit int
	// After, when set, continues a listing (in the same order) after the
	// key at that position: keyset pagination, so that keys created or
	// changed between pages never make a page repeat or skip a key.
	After *Position
}

// Position is a key's place in List's order: its creation time, then its
// id.
type Position struct {
	CreatedAt time.Time
	ID        string
}

// Position returns k's place in List's order.
func (k *Key) Position() Position { return Position{CreatedAt: k.CreatedAt, ID: k.ID} }

// List returns the keys p selects, in creation order (or newest first).
func (s *Store) List(ctx context.Context, p ListParams) ([]*Key, error) {
	if p.AccountID != "" {
		if err := ValidateAccountID(p.AccountID); err != nil {
			return nil, err
		}
	}
	if p.Status > ListDisabled {
		return nil, invalid("status", "unknown status filter")
	}
	if p.Limit < 0 {
		return nil, invalid("limit", "must not be negative")
	}
	var now *time.Time // nil: the database's clock
	if s.now != nil {
		t := s.now()
		now = &t
	}
	// Each condition is in the statement only when it applies, so that a
	// plan cached for the statement uses the indexes (a generic plan of
	// "$4 IS NULL OR (created_at, id) < …" would scan from the start).
	args := []any{int(p.Status), now}
	where := `CASE $1::int
		WHEN 0 THEN revoked_at IS NULL AND disabled_at IS NULL AND (expires_at IS NULL OR expires_at > coalesce($2, now()))
		WHEN 2 THEN revoked_at IS NULL AND disabled_at IS NULL AND expires_at <= coalesce($2, now())
		WHEN 3 THEN revoked_at IS NOT NULL
		WHEN 4 THEN revoked_at IS NULL AND disabled_at IS NOT NULL
		ELSE true
	END`
	if p.AccountID != "" {
		args = append(args, p.AccountID)
		where += fmt.Sprintf(" AND account_id = $%d", len(args))
	}
	order, cmp := "ASC", ">"
	if p.Newest {
		order, cmp = "DESC", "<"
	}
	if p.After != nil {
		u, err := parseID(p.After.ID)
		if err != nil {
			return nil, err
		}
		args = append(args, p.After.CreatedAt, u)
		where += fmt.Sprintf(" AND (api_keys.created_at, api_keys.id) %s ($%d, $%d)", cmp, len(args)-1, len(args))
	}
	limit := ""
	if p.Limit > 0 {
		args = append(args, p.Limit)
		limit = fmt.Sprintf(" LIMIT $%d", len(args))
	}
	keys, err := queryKeysWith(ctx, s.pool, scanShown, `SELECT `+shownColumns+` FROM api_keys WHERE `+where+`
		ORDER BY api_keys.created_at `+order+`, api_keys.id `+order+limit, args...)
	if err != nil {
		return nil, fmt.Errorf("keystore: list: %w", err)
	}
	return keys, nil
}

// UpdateParams change a key's descriptive fields and source restrictions;
// nil leaves a field as it is.
type UpdateParams struct {
	Name        *string
	Description *string
	// AllowedCIDRs, when not nil, replace the key's source restrictions
	// (ParseCIDR); an empty list removes them.
	AllowedCIDRs *[]string
	// Metadata, when not nil, changes the key's metadata.
	Metadata *MetadataChange
	Actor    string
}

// Update changes a key's name, description, source restrictions or
// metadata.
func (s *Store) Update(ctx context.Context, id string, p UpdateParams) (*Key, error) {
	u, err := parseID(id)
	if err != nil {
		return nil, err
	}
	detail := map[string]any{}
	var problems []error
	if p.Name != nil {
		problems = append(problems, ValidateName(*p.Name))
		detail["name"] = *p.Name
	}
	if p.Description != nil {
		problems = append(problems, ValidateDescription(*p.Description))
		detail["description"] = *p.Description
	}
	var cidrs []netip.Prefix // nil: unchanged
	if p.AllowedCIDRs != nil {
		var err error
		cidrs, err = NormalizeCIDRs(*p.AllowedCIDRs)
		problems = append(problems, err)
		cidrs = nonNil(cidrs)
		detail["allowed_cidrs"] = cidrStrings(cidrs)
	}
	if p.Metadata != nil {
		// Checked here as a change; the result against the key, below.
		_, err := (&MetadataChange{Set: p.Metadata.Set, Unset: p.Metadata.Unset, Clear: true}).apply(nil)
		problems = append(problems, err)
	}
	if err := errors.Join(problems...); err != nil {
		return nil, err
	}
	if len(detail) == 0 && p.Metadata == nil {
		return nil, invalid("update", "nothing to change: give a name, a description, source restrictions or metadata")
	}
	var k *Key
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		now, err := s.txNow(ctx, tx)
		if err != nil {
			return err
		}
		var metadata map[string]string // nil: unchanged
		if p.Metadata != nil {
			old, err := lockKey(ctx, tx, u)
			if err != nil {
				return err
			}
			if metadata, err = p.Metadata.apply(old.Metadata); err != nil {
				return err
			}
			metadata = metadataJSON(metadata)
			detail["metadata"] = metadata
		}
		k, err = queryShown(ctx, tx, `UPDATE api_keys SET
				name = COALESCE($2, name), description = COALESCE($3, description),
				allowed_cidrs = COALESCE($4::cidr[], allowed_cidrs), metadata = COALESCE($5::jsonb, metadata),
				updated_at = clock_timestamp()
			WHERE id = $1 RETURNING `+shownColumns, u, p.Name, p.Description, cidrs, metadata)
		if err != nil {
			return err
		}
		if err := recordEvent(ctx, tx, k, "update", p.Actor, now, detail); err != nil {
			return err
		}
		return notify(ctx, tx, k.Digest)
	})
	if err != nil {
		return nil, fmt.Errorf("keystore: update %s: %w", id, err)
	}
	return k, nil
}

// Revoke makes a key unusable from now on, everywhere. Revoking a revoked
// key is ErrRevoked.
func (s *Store) Revoke(ctx context.Context, id, actor string) (*Key, error) {
	return s.changeState(ctx, id, "revoke", actor, `revoked_at = $2`, func(_ *Key, now time.Time) (any, error) {
		return now, nil
	})
}

// Disable makes a key unusable, everywhere, until Enable: it is refused
// like a revoked key meanwhile. Disabling a disabled key is ErrDisabled; a
// revoked key cannot be disabled (ErrRevoked).
func (s *Store) Disable(ctx context.Context, id, actor string) (*Key, error) {
	return s.changeState(ctx, id, "disable", actor, `disabled_at = $2`, func(k *Key, now time.Time) (any, error) {
		if k.DisabledAt != nil {
			return nil, fmt.Errorf("%w already (since %s)", ErrDisabled, k.DisabledAt.Format(time.RFC3339))
		}
		return now, nil
	})
}

// Enable makes a disabled key work again. Enabling a key that is not
// disabled is ErrNotDisabled; a revoked key cannot be enabled (ErrRevoked).
func (s *Store) Enable(ctx context.Context, id, actor string) (*Key, error) {
	return s.changeState(ctx, id, "enable", actor, `disabled_at = $2`, func(k *Key, _ time.Time) (any, error) {
		if k.DisabledAt == nil {
			return nil, ErrNotDisabled
		}
		return (*time.Time)(nil), nil
	})
}

// changeState makes one lifecycle change of a key that is not revoked
// (ErrRevoked), audited as action and announced, in one transaction: with
// the key's row locked, allow says whether the change may be made (nothing
// is written when it may not) and what $2 of set, an assignment of the
// UPDATE, is.
func (s *Store) changeState(ctx context.Context, id, action, actor, set string, allow func(k *Key, now time.Time) (any, error)) (*Key, error) {
	u, err := parseID(id)
	if err != nil {
		return nil, err
	}
	var k *Key
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		now, err := s.txNow(ctx, tx)
		if err != nil {
			return err
		}
		if k, err = lockKey(ctx, tx, u); err != nil {
			return err
		}
		if k.RevokedAt != nil {
			return fmt.Errorf("%w (at %s)", ErrRevoked, k.RevokedAt.Format(time.RFC3339))
		}
		arg, err := allow(k, now)
		if err != nil {
			return err
		}
		if k, err = queryShown(ctx, tx, `UPDATE api_keys SET `+set+`, updated_at = clock_timestamp()
			WHERE id = $1 RETURNING `+shownColumns, u, arg); err != nil {
			return err
		}
		if err := recordEvent(ctx, tx, k, action, actor, now, nil); err != nil {
			return err
		}
		return notify(ctx, tx, k.Digest)
	})
	if err != nil {
		return nil, fmt.Errorf("keystore: %s %s: %w", action, id, err)
	}
	return k, nil
}

// RotateParams control a rotation.
type RotateParams struct {
	// Grace is how long the old secret keeps working; 0 ends it at once.
	Grace time.Duration
	Actor string
}

// Rotation is the outcome of Rotate.
type Rotation struct {
	New    *Key   // the successor, with the same account, name, description, scopes and expiry
	Secret Secret // the successor's secret, shown once
	Old    *Key   // the predecessor, now expiring at the end of the grace period
}

// Rotate issues a new secret for a key: a successor key with the same
// account, name, description, scopes, source restrictions, metadata and
// expiry, linked to its
// predecessor, whose own expiry is brought forward to the end of the grace
// period. A revoked, disabled, expired or already rotated key cannot be
// rotated.
func (s *Store) Rotate(ctx context.Context, id string, p RotateParams) (*Rotation, error) {
	u, err := parseID(id)
	if err != nil {
		return nil, err
	}
	if p.Grace < 0 {
		return nil, invalid("grace", "must not be negative")
	}
	var r Rotation
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		now, err := s.txNow(ctx, tx)
		if err != nil {
			return err
		}
		old, err := lockKey(ctx, tx, u)
		if err != nil {
			return err
		}
		switch old.StateAt(now) {
		case StateRevoked:
			return ErrRevoked
		case StateDisabled:
			// The successor would work at once.
			return fmt.Errorf("%w: enable it first", ErrDisabled)
		case StateExpired:
			return ErrExpired
		}
		var successor string
		err = tx.QueryRow(ctx, `SELECT id::text FROM api_keys WHERE rotated_from = $1`, u).Scan(&successor)
		if err == nil {
			return fmt.Errorf("%w (successor %s)", ErrRotated, successor)
		} else if !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		r.New = &Key{
			AccountID:    old.AccountID,
			Name:         old.Name,
			Description:  old.Description,
			Scopes:       old.Scopes,
			AllowedCIDRs: old.AllowedCIDRs,
			Metadata:     old.Metadata,
			CreatedAt:    now,
			CreatedBy:    p.Actor,
			ExpiresAt:    old.ExpiresAt,
			RotatedFrom:  old.ID,
		}
		if s.maxLifetime > 0 {
			// Rotation must not outlive the server's maximum lifetime.
			if limit := now.Add(s.maxLifetime); r.New.ExpiresAt == nil || r.New.ExpiresAt.After(limit) {
				r.New.ExpiresAt = &limit
			}
		}
		if r.Secret, err = s.insert(ctx, tx, r.New); err != nil {
			return err
		}
		graceEnd := now.Add(p.Grace)
		if old.ExpiresAt != nil && old.ExpiresAt.Before(graceEnd) {
			graceEnd = *old.ExpiresAt
		}
		if r.Old, err = queryKey(ctx, tx, `UPDATE api_keys SET expires_at = $2, updated_at = clock_timestamp()
			WHERE id = $1 RETURNING `+keyColumns, u, graceEnd); err != nil {
			return err
		}
		r.Old.RotatedTo = r.New.ID
		detail := createDetail(r.New)
		detail["rotated_from"] = old.ID
		if err := recordEvent(ctx, tx, r.New, "create", p.Actor, now, detail); err != nil {
			return err
		}
		if err := recordEvent(ctx, tx, r.Old, "rotate", p.Actor, now, map[string]any{
			"successor": r.New.ID, "grace_ends_at": graceEnd,
		}); err != nil {
			return err
		}
		return notify(ctx, tx, r.Old.Digest)
	})
	if err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.ConstraintName == "api_keys_rotated_from" {
			err = ErrRotated
		}
		return nil, fmt.Errorf("keystore: rotate %s: %w", id, err)
	}
	return &r, nil
}

// lockKey reads a key and locks its row until the transaction ends, so
// that revocation and rotation of one key serialise.
func lockKey(ctx context.Context, tx pgx.Tx, id uuid.UUID) (*Key, error) {
	return queryKey(ctx, tx, `SELECT `+keyColumns+` FROM api_keys WHERE id = $1 FOR UPDATE`, id)
}

// Event is one entry of a key's audit trail.
type Event struct {
	KeyID  string
	Action string // create, update, rotate, revoke, disable, enable
	Actor  string
	At     time.Time
	Detail map[string]any
}

// Events returns a key's audit trail, oldest first.
func (s *Store) Events(ctx context.Context, id string) ([]Event, error) {
	u, err := parseID(id)
	if err != nil {
		return nil, err
	}
	rows, err := s.pool.Query(ctx, `SELECT key_id::text, action, actor, at, detail
		FROM api_key_events WHERE key_id = $1 ORDER BY id`, u)
	if err != nil {
		return nil, fmt.Errorf("keystore: events %s: %w", id, err)
	}
	events, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Event, error) {
		var e Event
		err := row.Scan(&e.KeyID, &e.Action, &e.Actor, &e.At, &e.Detail)
		e.At = e.At.UTC()
		return e, err
	})
	if err != nil {
		return nil, fmt.Errorf("keystore: events %s: %w", id, err)
	}
	return events, nil
}

func recordEvent(ctx context.Context, tx pgx.Tx, k *Key, action, actor string, at time.Time, detail map[string]any) error {
	if detail == nil {
		detail = map[string]any{}
	}
	b, err := json.Marshal(detail)
	if err != nil {
		return err
	}
	_, err = tx.Exec(ctx, `INSERT INTO api_key_events (key_id, action, actor, at, detail) VALUES ($1, $2, $3, $4, $5)`,
		k.ID, action, actor, at, b)
	return err
}

// notify announces a change to the key stored under d; PostgreSQL delivers
// it to every listener when the transaction commits, and drops it if the
// transaction rolls back. The payload is the hex digest, "@", and the
// database's clock in microseconds since the epoch, from which listeners
// measure how long the change took to reach them.
func notify(ctx context.Context, tx pgx.Tx, d Digest) error {
	return notifyPayload(ctx, tx, d.String())
}

// addedPayload, as a notification's payload before the "@", announces keys
// added in bulk (Import): every unknown-key entry may be stale.
const addedPayload = "*"

// notifyAdded announces keys added in bulk, in one notification.
func notifyAdded(ctx context.Context, tx pgx.Tx) error { return notifyPayload(ctx, tx, addedPayload) }

func notifyPayload(ctx context.Context, tx pgx.Tx, what string) error {
	_, err := tx.Exec(ctx, `SELECT pg_notify($1, $2 || '@' || (extract(epoch from clock_timestamp()) * 1000000)::bigint)`,
		NotifyChannel, what)
	return err
}

// metadataJSON is a key's metadata column value.
func metadataJSON(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

// nonNil is s, or an empty slice for nil: a NOT NULL array column's
// value.
func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func nullIfEmpty(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.pool.Ping(ctx); err != nil {
		return fmt.Errorf("keystore: ping: %w: %w", ErrUnavailable, err)
	}
	return nil
}

// ChangedSince returns the records of the keys whose lifecycle changed
// after since (database time), and the database time the answer is
// complete up to: pass it, minus a margin for transactions still
// committing, to the next call. The delta poll uses it as the safety net
// for lost notifications.
func (s *Store) ChangedSince(ctx context.Context, since time.Time) ([]Stored, time.Time, error) {
	var now time.Time
	var changed []Stored
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, `SELECT now()`).Scan(&now); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `SELECT `+decisionColumns+`, digest FROM api_keys WHERE updated_at > $1 ORDER BY updated_at`, since)
		if err != nil {
			return err
		}
		changed, err = pgx.CollectRows(rows, scanStored)
		return err
	})
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("keystore: changes: %w: %w", ErrUnavailable, err)
	}
	return changed, now, nil
}

// LastUsed is one key's latest use, for RecordLastUsed.
type LastUsed struct {
	KeyID string
	At    time.Time
}

// RecordLastUsed writes a batch of last-use times in one statement; a time
// older than the one stored is ignored. It is not a lifecycle change: no
// audit row, no notification.
func (s *Store) RecordLastUsed(ctx context.Context, batch []LastUsed) error {
	if len(batch) == 0 {
		return nil
	}
	ids := make([]string, len(batch))
	ats := make([]time.Time, len(batch))
	for i, u := range batch {
		ids[i], ats[i] = u.KeyID, u.At
	}
	_, err := s.pool.Exec(ctx, `UPDATE api_keys AS k SET last_used_at = u.at
		FROM unnest($1::uuid[], $2::timestamptz[]) AS u(id, at)
		WHERE k.id = u.id AND (k.last_used_at IS NULL OR k.last_used_at < u.at)`, ids, ats)
	if err != nil {
		return fmt.Errorf("keystore: last used: %w", err)
	}
	return nil
}
