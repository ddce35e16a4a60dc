package keystore

import (
	"fmt"
	"iter"
	"maps"
	"math"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"
	"time"
)

// Record is the part of a key the decision needs, and what the cache
// holds: the key's id, account, scopes, expiry, state, version, source
// restrictions and metadata. The decision path's reads (Store.Lookup,
// LookupMany, ChangedSince) return Records; everything else reads the
// whole Key.
//
// A Record is compact, so that a million cached keys fit in well under
// 300 MB of heap (BenchmarkCacheMemory): its text is one allocation, its
// times are integers, and a key without source restrictions or metadata
// carries no room for them. It is immutable once built, but for the
// usage entries it finds on its first use: share it freely.
type Record struct {
	recordFields

	// The UsageRecorder's and the UsageCounter's entries for the key, kept
	// from the record's first use so that the decision path does not look
	// them up by id on every request (one that was forgotten, or is another
	// recorder's or counter's, is looked up again).
	lastUse atomic.Pointer[usage]
	counts  atomic.Pointer[keyCounts]
}

// recordFields are what a Record says about its key, and all that Equal
// compares.
type recordFields struct {
	// text is the id, the account id, the scopes joined by "," (scopes
	// never hold a comma), then, for a key with source restrictions or
	// metadata, its extras (see appendExtras).
	text                         string
	idEnd, accountEnd, scopesEnd uint32
	revoked, disabled            bool
	expires                      int64 // unix microseconds; noExpiry when the key never expires
	version                      int64 // UpdatedAt in unix microseconds
}

// noExpiry is Record.expires of a key that never expires.
const noExpiry = math.MaxInt64

// RecordFields are what a Record is built from: a backend reads them
// from its row (the decision's columns), valid as the Store wrote them.
type RecordFields struct {
	ID, AccountID     string
	Scopes            []string // normalized (NormalizeScopes)
	ExpiresAt         *time.Time
	Revoked, Disabled bool
	UpdatedAt         time.Time
	AllowedCIDRs      []netip.Prefix    // normalized (NormalizeCIDRs)
	Metadata          map[string]string // valid (NormalizeMetadata)
	Limits            Limits            // normalized (NormalizeLimits)
}

// NewRecord builds a Record. A row that the Store did not write (changed
// by hand, with SQL) could hold what a Record cannot encode: NewRecord
// refuses it rather than drop a restriction.
func NewRecord(f RecordFields) (*Record, error) {
	if len(f.AllowedCIDRs) > MaxAllowedCIDRs {
		return nil, fmt.Errorf("key %s has %d source restrictions", f.ID, len(f.AllowedCIDRs))
	}
	if _, err := NormalizeMetadata(f.Metadata); err != nil {
		return nil, fmt.Errorf("key %s has metadata the store would not write: %w", f.ID, err)
	}
	if _, err := NormalizeLimits(f.Limits); err != nil {
		return nil, fmt.Errorf("key %s has limits the store would not write: %w", f.ID, err)
	}
	return newRecord(f), nil
}

// newRecord builds a Record of valid fields.
func newRecord(f RecordFields) *Record {
	b := make([]byte, 0, len(f.ID)+len(f.AccountID)+64)
	b = append(b, f.ID...)
	b = append(b, f.AccountID...)
	for i, s := range f.Scopes {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, s...)
	}
	scopesEnd := len(b)
	b = appendExtras(b, f.AllowedCIDRs, f.Metadata, f.Limits)
	r := &Record{recordFields: recordFields{
		text:       string(b),
		idEnd:      uint32(len(f.ID)),
		accountEnd: uint32(len(f.ID) + len(f.AccountID)),
		scopesEnd:  uint32(scopesEnd),
		revoked:    f.Revoked,
		disabled:   f.Disabled,
		expires:    noExpiry,
		version:    f.UpdatedAt.UnixMicro(),
	}}
	if f.ExpiresAt != nil {
		r.expires = f.ExpiresAt.UnixMicro()
	}
	return r
}

// appendExtras encodes a key's source restrictions, metadata and limits,
// if it has any: the number of prefixes (one byte, with hasLimits set when
// the key has limits, which follow it: see appendLimits), each prefix as
// its family (4 or 6), its length in bits and its address bytes, then each
// metadata entry as key "=" value NUL, in key order (keys hold no "=",
// values no NUL).
func appendExtras(b []byte, cidrs []netip.Prefix, metadata map[string]string, limits Limits) []byte {
	if len(cidrs) == 0 && len(metadata) == 0 && limits.IsZero() {
		return b
	}
	if limits.IsZero() {
		b = append(b, byte(len(cidrs)))
	} else {
		b = appendLimits(append(b, byte(len(cidrs))|hasLimits), limits)
	}
	for _, p := range cidrs {
		a := p.Addr()
		if a.Is4() {
			a4 := a.As4()
			b = append(append(b, 4, byte(p.Bits())), a4[:]...)
		} else {
			a16 := a.As16()
			b = append(append(b, 6, byte(p.Bits())), a16[:]...)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(metadata)) {
		b = append(append(append(append(b, k...), '='), metadata[k]...), 0)
	}
	return b
}

// Record returns the decision's view of k.
func (k *Key) Record() *Record {
	return newRecord(RecordFields{ID: k.ID, AccountID: k.AccountID, Scopes: k.Scopes, ExpiresAt: k.ExpiresAt,
		Revoked: k.RevokedAt != nil, Disabled: k.DisabledAt != nil, UpdatedAt: k.UpdatedAt,
		AllowedCIDRs: k.AllowedCIDRs, Metadata: k.Metadata, Limits: k.Limits})
}

// ID is the key's id.
func (r *Record) ID() string { return r.text[:r.idEnd] }

// AccountID is the account the key belongs to.
func (r *Record) AccountID() string { return r.text[r.idEnd:r.accountEnd] }

// JoinedScopes are the key's scopes, sorted, joined by ","; "" when it has
// none (every module that is not restricted).
func (r *Record) JoinedScopes() string { return r.text[r.accountEnd:r.scopesEnd] }

// extras are the encoded source restrictions and metadata (appendExtras),
// "" when the key has neither.
func (r *Record) extras() string { return r.text[r.scopesEnd:] }

// RestrictsSource reports whether the key may be used only from some
// addresses (Key.AllowedCIDRs).
func (r *Record) RestrictsSource() bool { x := r.extras(); return x != "" && x[0]&^hasLimits != 0 }

// prefixes returns the number of encoded source restrictions and the
// extras after that count (and after the limits, when the key has some):
// the prefixes, then the metadata.
func (r *Record) prefixes() (int, string) {
	x := r.extras()
	if x == "" {
		return 0, ""
	}
	n := int(x[0] &^ hasLimits)
	if x[0]&hasLimits == 0 {
		return n, x[1:]
	}
	return n, x[1+limitsLen(x[1:]):]
}

// AllowsSource reports whether the key may be used from a: always when it
// has no source restrictions; otherwise only from an address in one of its
// prefixes, and never from an unknown (invalid) one. It allocates nothing.
func (r *Record) AllowsSource(a netip.Addr) bool {
	n, x := r.prefixes()
	if n == 0 {
		return true
	}
	if !a.IsValid() {
		return false
	}
	a = a.Unmap()
	for range n {
		var p netip.Prefix
		if x[0] == 4 {
			p = netip.PrefixFrom(netip.AddrFrom4([4]byte{x[2], x[3], x[4], x[5]}), int(x[1]))
			x = x[2+4:]
		} else {
			var a16 [16]byte
			copy(a16[:], x[2:2+16])
			p = netip.PrefixFrom(netip.AddrFrom16(a16), int(x[1]))
			x = x[2+16:]
		}
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// metadata is the encoded metadata: the extras after the prefixes.
func (r *Record) metadata() string {
	n, x := r.prefixes()
	for range n {
		if x[0] == 4 {
			x = x[2+4:]
		} else {
			x = x[2+16:]
		}
	}
	return x
}

// Metadata yields the key's metadata entries in key order.
func (r *Record) Metadata() iter.Seq2[string, string] {
	return func(yield func(string, string) bool) {
		m := r.metadata()
		for m != "" {
			var entry string
			entry, m, _ = strings.Cut(m, "\x00")
			k, v, _ := strings.Cut(entry, "=")
			if !yield(k, v) {
				return
			}
		}
	}
}

// Meta returns the key's metadata value for key, and whether it has one.
func (r *Record) Meta(key string) (string, bool) {
	for k, v := range r.Metadata() {
		if k == key {
			return v, true
		}
	}
	return "", false
}

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

// Equal reports whether r and o say the same: the same key at the same
// version, with the same decision fields (the usage entries they keep
// aside).
func (r *Record) Equal(o *Record) bool {
	return r == o || r != nil && o != nil && r.recordFields == o.recordFields
}
