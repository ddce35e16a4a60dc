package keystore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
)

// Options configure a Store. The zero value of every field is usable.
type Options struct {
	// Hasher hashes new keys. Default: plain SHA-256.
	Hasher *Hasher
	// Prefix starts every new key. Default: DefaultPrefix.
	Prefix string
	// MaxLifetime, when positive, caps how far in the future a key may
	// expire and forbids keys that never expire.
	MaxLifetime time.Duration
	// Now is the clock of lifecycle changes, for tests. Default: the
	// backend's (PostgreSQL's transaction time), so that creation, expiry
	// and revocation times never depend on the clock of the machine that
	// runs the CLI.
	Now func() time.Time
	// Generate makes the secrets of new keys. Default: GenerateSecret.
	// Tests set it to know a key's secret before the key exists.
	Generate func(prefix string) (Secret, error)
	// BeforeWrite, when set, is called before each write transaction
	// begins, once the request itself has been checked: the CLI names the
	// database it writes to there.
	BeforeWrite func()
}

// Store keeps keys in a Backend and owns the rules of their lifecycle:
// what may change and when, what is audited, and what is announced. Its
// methods are safe for concurrent use.
type Store struct {
	db          Backend
	hasher      *Hasher
	prefix      string
	maxLifetime time.Duration
	now         func() time.Time
	generate    func(prefix string) (Secret, error)
	beforeWrite func()
}

// New returns a Store on db, which must hold a migrated database.
func New(db Backend, opts Options) (*Store, error) {
	s := &Store{db: db, hasher: opts.Hasher, prefix: opts.Prefix, maxLifetime: opts.MaxLifetime, now: opts.Now,
		beforeWrite: opts.BeforeWrite}
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
	s.generate = opts.Generate
	if s.generate == nil {
		s.generate = GenerateSecret
	}
	return s, nil
}

// Backend returns the backend the store keeps keys in.
func (s *Store) Backend() Backend { return s.db }

// Hasher returns the hasher the store creates keys with, so that the
// decision path hashes presented keys the same way.
func (s *Store) Hasher() *Hasher { return s.hasher }

// txNow is the time of a lifecycle change made in tx: the injected clock
// if there is one, else the backend's; at microsecond precision either way.
func (s *Store) txNow(ctx context.Context, tx Tx) (time.Time, error) {
	if s.now != nil {
		return s.now().UTC().Truncate(time.Microsecond), nil
	}
	t, err := tx.Now(ctx)
	return t.UTC().Truncate(time.Microsecond), err
}

// write runs fn in one transaction of the backend, wrapping a failure
// with what was being done.
func (s *Store) write(ctx context.Context, what string, fn func(tx Tx, now time.Time) error) error {
	if s.beforeWrite != nil {
		s.beforeWrite()
	}
	err := s.db.Write(ctx, func(tx Tx) error {
		now, err := s.txNow(ctx, tx)
		if err != nil {
			return err
		}
		return fn(tx, now)
	})
	if err != nil {
		return fmt.Errorf("keystore: %s: %w", what, err)
	}
	return nil
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
	// Limits are the key's rates (ParseRate: "100/s", "50000/d,burst=500")
	// and Quota its allowance per UTC day or month (ParseQuota:
	// "1000000/month"); none: unlimited.
	Limits []string
	Quota  string
	Expiry Expiry
	Actor  string // who asks, for the audit trail
}

// check validates every field of p but its expiry and returns the key it
// describes (its id, secret and times not yet set), or every problem found
// (errors.Join of *ValidationError); more, when set, joins problems found
// elsewhere.
func (p CreateParams) check(more ...error) (*Key, error) {
	scopes, scopesErr := NormalizeScopes(p.Scopes)
	cidrs, cidrsErr := NormalizeCIDRs(p.AllowedCIDRs)
	metadata, metadataErr := NormalizeMetadata(p.Metadata)
	limits, limitsErr := ParseLimits(p.Limits, p.Quota)
	err := errors.Join(append([]error{
		ValidateAccountID(p.AccountID),
		ValidateName(p.Name),
		ValidateDescription(p.Description),
		scopesErr,
		cidrsErr,
		metadataErr,
		limitsErr,
	}, more...)...)
	if err != nil {
		return nil, err
	}
	return &Key{AccountID: p.AccountID, Name: p.Name, Description: p.Description, Scopes: scopes, AllowedCIDRs: cidrs,
		Metadata: metadata, Limits: limits, CreatedBy: p.Actor}, nil
}

// CheckCreate reports every problem Create would find with p, judging its
// expiry at now (Create itself judges it at the backend's clock), and
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

// Create issues a new key and returns its record and its secret, which is
// never available again.
func (s *Store) Create(ctx context.Context, p CreateParams) (*Key, Secret, error) {
	k, err := p.check(p.Expiry.check())
	if err != nil {
		return nil, "", err
	}
	var secret Secret
	err = s.write(ctx, "create", func(tx Tx, now time.Time) error {
		if k.ExpiresAt, err = p.Expiry.resolve(now, s.maxLifetime); err != nil {
			return err
		}
		k.CreatedAt = now
		if secret, err = s.insert(ctx, tx, k); err != nil {
			return err
		}
		return s.record(ctx, tx, k, Event{Action: "create", Actor: p.Actor, At: now, Detail: createDetail(k)})
	})
	if err != nil {
		return nil, "", err
	}
	return k, secret, nil
}

// createDetail is the audit detail of a key's creation.
func createDetail(k *Key) map[string]any {
	d := map[string]any{"name": k.Name, "account_id": k.AccountID, "scopes": k.Scopes, "expires_at": k.ExpiresAt}
	if k.Description != "" {
		d["description"] = k.Description
	}
	if len(k.AllowedCIDRs) > 0 {
		d["allowed_cidrs"] = cidrStrings(k.AllowedCIDRs)
	}
	if len(k.Metadata) > 0 {
		d["metadata"] = k.Metadata
	}
	if !k.Limits.IsZero() {
		d["limits"] = limitsDetail(k.Limits)
	}
	return d
}

// insert generates a secret for k, fills in its id, digest and display
// prefix, stores it and announces it. It retries with a fresh secret in
// the astronomically unlikely case of a digest collision.
func (s *Store) insert(ctx context.Context, tx Tx, k *Key) (Secret, error) {
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
		err = tx.Insert(ctx, k)
		if errors.Is(err, ErrDigestTaken) && attempt < 3 {
			continue
		}
		if err != nil {
			return "", err
		}
		return secret, tx.Notify(ctx, Notice{Digest: k.Digest})
	}
}

// parseID validates a key id and returns it in canonical form; a malformed
// one is ErrInvalid, so that it never reaches the database.
func parseID(id string) (string, error) {
	u, err := uuid.Parse(id)
	if err != nil || len(id) != 36 {
		return "", invalid("id", "must be a key id like 0193c7a2-5d6e-7f00-8a1b-2c3d4e5f6a7b")
	}
	return u.String(), nil
}

// Lookup returns the record of the key stored under digest, whatever its
// state: the caller decides with Record.StateAt. It returns ErrNotFound for
// an unknown digest and an error matching ErrUnavailable when the database
// cannot answer. This is the decision path's one query; it reads only what
// the decision needs.
func (s *Store) Lookup(ctx context.Context, d Digest) (*Record, error) { return s.db.Lookup(ctx, d) }

// LookupMany returns the records stored under any of digests, in no order:
// the cache uses it to resync what it holds.
func (s *Store) LookupMany(ctx context.Context, digests []Digest) ([]Stored, error) {
	return s.db.LookupMany(ctx, digests)
}

// Get returns the key with the given id.
func (s *Store) Get(ctx context.Context, id string) (*Key, error) {
	u, err := parseID(id)
	if err != nil {
		return nil, err
	}
	k, err := s.db.Get(ctx, u)
	if err != nil {
		return nil, fmt.Errorf("keystore: get %s: %w", id, err)
	}
	return k, nil
}

// StatusFilter selects keys by their state in List. The zero value,
// ListActive, lists only keys that authenticate. StatusFilter.Matches
// defines each.
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
	q := ListQuery{AccountID: p.AccountID, Status: p.Status, Newest: p.Newest, Limit: p.Limit}
	if p.After != nil {
		id, err := parseID(p.After.ID)
		if err != nil {
			return nil, err
		}
		q.After = &Position{CreatedAt: p.After.CreatedAt.UTC().Truncate(time.Microsecond), ID: id}
	}
	if s.now != nil {
		t := s.now().UTC()
		q.Now = &t
	}
	keys, err := s.db.List(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("keystore: list: %w", err)
	}
	return keys, nil
}

// UpdateParams change a key in place; nil (or empty) leaves a field as it
// is.
type UpdateParams struct {
	Name        *string
	Description *string
	// Scopes, when not nil, replace the key's scopes (an empty list: every
	// module that is not restricted). AddScopes and RemoveScopes change
	// them instead, after Scopes if it is set too.
	Scopes       *[]string
	AddScopes    []string
	RemoveScopes []string
	// Expiry, when not nil, sets a new expiry, judged at the time of the
	// change: a lifetime from now, a time, or never (within the store's
	// maximum lifetime).
	Expiry *Expiry
	// AllowedCIDRs, when not nil, replace the key's source restrictions
	// (ParseCIDR); an empty list removes them.
	AllowedCIDRs *[]string
	// Metadata, when not nil, changes the key's metadata.
	Metadata *MetadataChange
	// Limits, when not nil, changes the key's rates or quota.
	Limits *LimitsChange
	Actor  string
}

// changesScopes reports whether p changes scopes at all.
func (p UpdateParams) changesScopes() bool {
	return p.Scopes != nil || len(p.AddScopes) > 0 || len(p.RemoveScopes) > 0
}

// Empty reports whether p changes nothing: Update refuses it, the admin
// API answers the key as it is.
func (p UpdateParams) Empty() bool {
	return p.Name == nil && p.Description == nil && !p.changesScopes() && p.Expiry == nil && p.AllowedCIDRs == nil && p.Metadata == nil &&
		(p.Limits == nil || p.Limits.Rates == nil && p.Limits.Quota == nil)
}

// checkUpdate reports what is wrong with p whatever the key: each field
// on its own.
func (p UpdateParams) check() error {
	var problems []error
	if p.Name != nil {
		problems = append(problems, ValidateName(*p.Name))
	}
	if p.Description != nil {
		problems = append(problems, ValidateDescription(*p.Description))
	}
	if p.Scopes != nil {
		_, err := NormalizeScopes(*p.Scopes)
		problems = append(problems, err)
	}
	for _, list := range [][]string{p.AddScopes, p.RemoveScopes} {
		if len(list) > 0 {
			_, err := NormalizeScopes(list)
			problems = append(problems, err)
		}
	}
	if p.Expiry != nil {
		problems = append(problems, p.Expiry.check())
	}
	if p.AllowedCIDRs != nil {
		_, err := NormalizeCIDRs(*p.AllowedCIDRs)
		problems = append(problems, err)
	}
	if p.Metadata != nil {
		// Checked here as a change; the result against the key, later.
		_, err := (&MetadataChange{Set: p.Metadata.Set, Unset: p.Metadata.Unset, Clear: true}).apply(nil)
		problems = append(problems, err)
	}
	if p.Limits != nil {
		// Checked here each on its own; together with the key's, later.
		if p.Limits.Rates != nil {
			_, err := ParseLimits(*p.Limits.Rates, "")
			problems = append(problems, err)
		}
		if p.Limits.Quota != nil && *p.Limits.Quota != "" {
			_, err := ParseQuota(*p.Limits.Quota)
			problems = append(problems, err)
		}
	}
	if err := errors.Join(problems...); err != nil {
		return err
	}
	if p.Empty() {
		return invalid("update", "nothing to change: give a name, a description, scopes, an expiry, source restrictions, metadata or limits")
	}
	return nil
}

// Update changes a key in place: its name, description, scopes, expiry,
// source restrictions or metadata. A revoked key cannot change
// (ErrRevoked). The audit event records each changed field's new value,
// and its value before under "previous".
func (s *Store) Update(ctx context.Context, id string, p UpdateParams) (*Key, error) {
	u, err := parseID(id)
	if err != nil {
		return nil, err
	}
	if err := p.check(); err != nil {
		return nil, err
	}
	var k *Key
	err = s.write(ctx, "update "+id, func(tx Tx, now time.Time) error {
		old, err := tx.Lock(ctx, u)
		if err != nil {
			return err
		}
		if old.RevokedAt != nil {
			return fmt.Errorf("%w (at %s): it cannot change", ErrRevoked, old.RevokedAt.Format(time.RFC3339))
		}
		c, detail, err := s.keyChange(old, p, now)
		if err != nil {
			return err
		}
		k, err = s.apply(ctx, tx, u, c, Event{Action: "update", Actor: p.Actor, At: now, Detail: detail})
		return err
	})
	if err != nil {
		return nil, err
	}
	return k, nil
}

// apply makes change c to key id in tx, records event e of it, and
// notifies every replica's cache: the end of every lifecycle change of one
// key.
func (s *Store) apply(ctx context.Context, tx Tx, id string, c KeyChange, e Event) (*Key, error) {
	k, err := tx.Change(ctx, id, c)
	if err != nil {
		return nil, err
	}
	if err := s.record(ctx, tx, k, e); err != nil {
		return nil, err
	}
	return k, tx.Notify(ctx, Notice{Digest: k.Digest})
}

// keyChange is what p changes of old at now, and the audit detail saying
// so: each changed field's new value, and its old one under "previous".
func (s *Store) keyChange(old *Key, p UpdateParams, now time.Time) (KeyChange, map[string]any, error) {
	var c KeyChange
	detail, previous := map[string]any{}, map[string]any{}
	if p.Name != nil {
		c.Name = To(*p.Name)
		detail["name"], previous["name"] = *p.Name, old.Name
	}
	if p.Description != nil {
		c.Description = To(*p.Description)
		detail["description"], previous["description"] = *p.Description, old.Description
	}
	if p.changesScopes() {
		scopes := old.Scopes
		if p.Scopes != nil {
			scopes = *p.Scopes
		}
		scopes = append(slices.Clone(scopes), p.AddScopes...)
		// Removing is narrowing: a scope that is not there, or the last
		// one (no scopes: every open module), would widen or change
		// nothing while its caller believes it narrowed.
		for _, sc := range p.RemoveScopes {
			if !slices.Contains(scopes, sc) {
				return c, nil, invalidf("remove_scopes", "the key has no scope %s to remove (its scopes: %s)", sc, scopeList(scopes))
			}
		}
		kept := slices.DeleteFunc(slices.Clone(scopes), func(sc string) bool { return slices.Contains(p.RemoveScopes, sc) })
		if len(kept) == 0 && len(p.RemoveScopes) > 0 {
			return c, nil, invalid("remove_scopes", "removing every scope would let the key use every module open to API keys: "+
				"to mean that, clear its scopes")
		}
		scopes = kept
		normalized, err := NormalizeScopes(scopes)
		if err != nil {
			return c, nil, err
		}
		c.Scopes = To(normalized)
		detail["scopes"], previous["scopes"] = normalized, old.Scopes
	}
	if p.Expiry != nil {
		at, err := p.Expiry.resolve(now, s.maxLifetime)
		if err != nil {
			return c, nil, err
		}
		c.ExpiresAt = To(at)
		detail["expires_at"], previous["expires_at"] = at, old.ExpiresAt
	}
	if p.AllowedCIDRs != nil {
		cidrs, _ := NormalizeCIDRs(*p.AllowedCIDRs) // checked
		c.AllowedCIDRs = To(cidrs)
		detail["allowed_cidrs"], previous["allowed_cidrs"] = cidrStrings(cidrs), cidrStrings(old.AllowedCIDRs)
	}
	if p.Metadata != nil {
		metadata, err := p.Metadata.apply(old.Metadata)
		if err != nil {
			return c, nil, err
		}
		c.Metadata = To(metadata)
		detail["metadata"], previous["metadata"] = orEmpty(metadata), orEmpty(old.Metadata)
	}
	if p.Limits != nil {
		limits, err := p.Limits.apply(old.Limits)
		if err != nil {
			return c, nil, err
		}
		c.Limits = To(limits)
		detail["limits"], previous["limits"] = limitsDetail(limits), limitsDetail(old.Limits)
	}
	detail["previous"] = previous
	return c, detail, nil
}

// scopeList is a key's scopes for an error message.
func scopeList(scopes []string) string {
	if len(scopes) == 0 {
		return "none, every open module"
	}
	return strings.Join(scopes, ", ")
}

// orEmpty is m, or an empty map for nil, for audit details.
func orEmpty(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

// Revoke makes a key unusable from now on, everywhere. Revoking a revoked
// key is ErrRevoked.
func (s *Store) Revoke(ctx context.Context, id, actor string) (*Key, error) {
	return s.changeState(ctx, id, "revoke", actor, func(_ *Key, now time.Time) (KeyChange, error) {
		return KeyChange{RevokedAt: To(&now)}, nil
	})
}

// Disable makes a key unusable, everywhere, until Enable: it is refused
// like a revoked key meanwhile. Disabling a disabled key is ErrDisabled; a
// revoked key cannot be disabled (ErrRevoked).
func (s *Store) Disable(ctx context.Context, id, actor string) (*Key, error) {
	return s.changeState(ctx, id, "disable", actor, func(k *Key, now time.Time) (KeyChange, error) {
		if k.DisabledAt != nil {
			return KeyChange{}, fmt.Errorf("%w already (since %s)", ErrDisabled, k.DisabledAt.Format(time.RFC3339))
		}
		return KeyChange{DisabledAt: To(&now)}, nil
	})
}

// Enable makes a disabled key work again. Enabling a key that is not
// disabled is ErrNotDisabled; a revoked key cannot be enabled (ErrRevoked).
func (s *Store) Enable(ctx context.Context, id, actor string) (*Key, error) {
	return s.changeState(ctx, id, "enable", actor, func(k *Key, _ time.Time) (KeyChange, error) {
		if k.DisabledAt == nil {
			return KeyChange{}, ErrNotDisabled
		}
		return KeyChange{DisabledAt: To[*time.Time](nil)}, nil
	})
}

// changeState makes one lifecycle change of a key that is not revoked
// (ErrRevoked), audited as action and announced, in one transaction: with
// the key locked, change says what to write, or why it may not be made
// (then nothing is written).
func (s *Store) changeState(ctx context.Context, id, action, actor string, change func(k *Key, now time.Time) (KeyChange, error)) (*Key, error) {
	u, err := parseID(id)
	if err != nil {
		return nil, err
	}
	var k *Key
	err = s.write(ctx, action+" "+id, func(tx Tx, now time.Time) error {
		old, err := tx.Lock(ctx, u)
		if err != nil {
			return err
		}
		if old.RevokedAt != nil {
			return fmt.Errorf("%w (at %s)", ErrRevoked, old.RevokedAt.Format(time.RFC3339))
		}
		c, err := change(old, now)
		if err != nil {
			return err
		}
		k, err = s.apply(ctx, tx, u, c, Event{Action: action, Actor: actor, At: now, Detail: map[string]any{}})
		return err
	})
	if err != nil {
		return nil, err
	}
	return k, nil
}

// RotateParams control a rotation.
type RotateParams struct {
	// Grace is how long the old secret keeps working; 0 ends it at once.
	Grace time.Duration
	// Expiry, when not zero, is the successor's expiry, judged at the
	// time of the rotation; otherwise it keeps the predecessor's.
	Expiry Expiry
	Actor  string
}

// Rotation is the outcome of Rotate.
type Rotation struct {
	New    *Key   // the successor, with the same account, name, description, scopes and expiry
	Secret Secret // the successor's secret, shown once
	Old    *Key   // the predecessor, now expiring at the end of the grace period
}

// Rotate issues a new secret for a key: a successor key with the same
// account, name, description, scopes, source restrictions, metadata and
// expiry (or the expiry p gives), linked to its predecessor, whose own
// expiry is brought forward to the end of the grace period. A revoked,
// disabled, expired or already rotated key cannot be rotated.
func (s *Store) Rotate(ctx context.Context, id string, p RotateParams) (*Rotation, error) {
	u, err := parseID(id)
	if err != nil {
		return nil, err
	}
	if p.Grace < 0 {
		return nil, invalid("grace", "must not be negative")
	}
	if err := p.Expiry.check(); err != nil {
		return nil, err
	}
	var r Rotation
	err = s.write(ctx, "rotate "+id, func(tx Tx, now time.Time) error {
		old, err := tx.Lock(ctx, u)
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
		if successor, err := tx.Successor(ctx, u); err != nil {
			return err
		} else if successor != "" {
			return fmt.Errorf("%w (successor %s)", ErrRotated, successor)
		}
		expiresAt := old.ExpiresAt
		if !p.Expiry.IsZero() {
			if expiresAt, err = p.Expiry.resolve(now, s.maxLifetime); err != nil {
				return err
			}
		} else if s.maxLifetime > 0 {
			// Rotation must not outlive the server's maximum lifetime.
			if limit := now.Add(s.maxLifetime); expiresAt == nil || expiresAt.After(limit) {
				expiresAt = &limit
			}
		}
		r.New = &Key{
			AccountID:    old.AccountID,
			Name:         old.Name,
			Description:  old.Description,
			Scopes:       old.Scopes,
			AllowedCIDRs: old.AllowedCIDRs,
			Metadata:     old.Metadata,
			Limits:       old.Limits,
			CreatedAt:    now,
			CreatedBy:    p.Actor,
			ExpiresAt:    expiresAt,
			RotatedFrom:  old.ID,
		}
		if r.Secret, err = s.insert(ctx, tx, r.New); err != nil {
			return err
		}
		graceEnd := now.Add(p.Grace)
		if old.ExpiresAt != nil && old.ExpiresAt.Before(graceEnd) {
			graceEnd = *old.ExpiresAt
		}
		if r.Old, err = tx.Change(ctx, u, KeyChange{ExpiresAt: To(&graceEnd)}); err != nil {
			return err
		}
		detail := createDetail(r.New)
		detail["rotated_from"] = old.ID
		if err := s.record(ctx, tx, r.New, Event{Action: "create", Actor: p.Actor, At: now, Detail: detail}); err != nil {
			return err
		}
		if err := s.record(ctx, tx, r.Old, Event{Action: "rotate", Actor: p.Actor, At: now, Detail: map[string]any{
			"successor": r.New.ID, "grace_ends_at": graceEnd,
		}}); err != nil {
			return err
		}
		return tx.Notify(ctx, Notice{Digest: r.Old.Digest})
	})
	if err != nil {
		return nil, err
	}
	return &r, nil
}

// record writes the audit event e of a change to k, in the change's
// transaction; k is the key as the change left it. Every lifecycle change
// is recorded here, and only here: its audit row, and its event in the
// outbox for the webhook endpoints subscribed to it (announce).
func (s *Store) record(ctx context.Context, tx Tx, k *Key, e Event) error {
	e.KeyID = k.ID
	if err := tx.AddEvents(ctx, e); err != nil {
		return err
	}
	if t, ok := eventOfAction[e.Action]; ok {
		return s.announce(ctx, tx, t, k, e.At, e.Actor, e.Detail)
	}
	return nil
}

// Event is one entry of a key's audit trail.
type Event struct {
	KeyID  string
	Action string // create, import, update, rotate, revoke, disable, enable
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
	events, err := s.db.Events(ctx, u)
	if err != nil {
		return nil, fmt.Errorf("keystore: events %s: %w", id, err)
	}
	return events, nil
}

// NonCanonicalAccounts returns the accounts whose ids break today's rule
// (ValidateAccountID), with how many keys each has: rows written before
// the rule, which keys from elsewhere (an import of another product's
// dump) cannot have any more. migrate reports them; nothing rewrites them,
// since the host system knows them by those ids.
func (s *Store) NonCanonicalAccounts(ctx context.Context) ([]AccountKeys, error) {
	all, err := s.db.Accounts(ctx)
	if err != nil {
		return nil, fmt.Errorf("keystore: accounts: %w", err)
	}
	var out []AccountKeys
	for _, a := range all {
		if !ValidAccountID(a.AccountID) {
			out = append(out, a)
		}
	}
	return out, nil
}

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error { return s.db.Ping(ctx) }

// ChangedSince returns the records of the keys whose lifecycle changed
// after since (backend time), and the backend time the answer is complete
// up to: pass it, minus a margin for transactions still committing, to the
// next call. The delta poll uses it as the safety net for lost
// notifications.
func (s *Store) ChangedSince(ctx context.Context, since time.Time) ([]Stored, time.Time, error) {
	return s.db.ChangedSince(ctx, since)
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
	if err := s.db.RecordLastUsed(ctx, batch); err != nil {
		return fmt.Errorf("keystore: last used: %w", err)
	}
	return nil
}
