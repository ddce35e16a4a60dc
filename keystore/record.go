package keystore

import (
	"math"
	"strings"
	"time"
)

// Record is the part of a key the decision needs, and what the cache
// holds: the key's id, account, scopes, expiry, state and version. The
// decision path's reads (Store.Lookup, LookupMany, ChangedSince) return
// Records; everything else reads the whole Key.
//
// A Record is compact, so that a million cached keys fit in well under
// 300 MB of heap (BenchmarkCacheMemory): its text is one allocation, its
// times are integers, and a key without source restrictions or metadata
// carries no room for them. It is immutable once built: share it freely.
type Record struct {
	// text is the id, the account id, then the scopes joined by ","
	// (scopes never hold a comma).
	text              string
	idEnd, accountEnd uint32
	revoked, disabled bool
	expires           int64 // unix microseconds; noExpiry when the key never expires
	version           int64 // UpdatedAt in unix microseconds
}

// noExpiry is Record.expires of a key that never expires.
const noExpiry = math.MaxInt64

// newRecord builds a Record. scopes must be normalized (NormalizeScopes).
func newRecord(id, accountID string, scopes []string, expiresAt *time.Time, revoked, disabled bool, updatedAt time.Time) *Record {
	n := len(id) + len(accountID)
	for i, s := range scopes {
		n += len(s)
		if i > 0 {
			n++
		}
	}
	var b strings.Builder
	b.Grow(n)
	b.WriteString(id)
	b.WriteString(accountID)
	for i, s := range scopes {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(s)
	}
	r := &Record{
		text:       b.String(),
		idEnd:      uint32(len(id)),
		accountEnd: uint32(len(id) + len(accountID)),
		revoked:    revoked,
		disabled:   disabled,
		expires:    noExpiry,
		version:    updatedAt.UnixMicro(),
	}
	if expiresAt != nil {
		r.expires = expiresAt.UnixMicro()
	}
	return r
}

// Record returns the decision's view of k.
func (k *Key) Record() *Record {
	return newRecord(k.ID, k.AccountID, k.Scopes, k.ExpiresAt, k.RevokedAt != nil, k.DisabledAt != nil, k.UpdatedAt)
}

// ID is the key's id.
func (r *Record) ID() string { return r.text[:r.idEnd] }

// AccountID is the account the key belongs to.
func (r *Record) AccountID() string { return r.text[r.idEnd:r.accountEnd] }

// JoinedScopes are the key's scopes, sorted, joined by ","; "" when it has
// none (every module that is not restricted).
func (r *Record) JoinedScopes() string { return r.text[r.accountEnd:] }

// Version is the record's version: the database time of the key's last
// lifecycle change (Key.UpdatedAt), in unix microseconds.
func (r *Record) Version() int64 { return r.version }

// StateAt is Key.StateAt for the record.
func (r *Record) StateAt(now time.Time) State {
	switch {
	case r.revoked:
		return StateRevoked
	case r.disabled:
		return StateDisabled
	case now.UnixMicro() >= r.expires:
		// Expiry is stored to the microsecond, so comparing whole
		// microseconds is exactly !now.Before(expiresAt).
		return StateExpired
	}
	return StateActive
}

// Allows reports whether the key's scopes permit action ("read" or
// "write") on module. No scopes at all means every module; "*" means
// everything; "<module>:*" means both actions on that module. module ""
// (a route that matches no module) is reachable only by keys without
// scopes or with "*". It allocates nothing.
func (r *Record) Allows(module, action string) bool {
	scopes := r.JoinedScopes()
	if scopes == "" {
		return true
	}
	for scopes != "" {
		var s string
		s, scopes, _ = strings.Cut(scopes, ",")
		if s == ScopeAll {
			return true
		}
		if module == "" {
			continue
		}
		if len(s) == len(module)+1+len(action) && s[len(module)] == ':' &&
			s[:len(module)] == module && s[len(module)+1:] == action {
			return true
		}
		if len(s) == len(module)+2 && s[len(module)] == ':' && s[len(module)+1] == '*' &&
			s[:len(module)] == module {
			return true
		}
	}
	return false
}

// Stored is a record and the digest it is stored under, as the cache's
// resync and delta poll read them.
type Stored struct {
	Digest Digest
	Record *Record
}
