package keystore

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"hash"
	"sync"
)

// Digest is the hash of an API key: the only form in which a key is stored,
// cached, and looked up.
type Digest [sha256.Size]byte

// String returns the digest in hex. A digest is not secret, but it is only
// ever printed for debugging and change notifications.
func (d Digest) String() string { return hex.EncodeToString(d[:]) }

// Hash schemes recorded with every key, so that the scheme can change
// without invalidating keys issued under the previous one.
const (
	SchemeSHA256     = "sha256"
	SchemeHMACSHA256 = "hmac-sha256"
)

// minPepperLen is the shortest pepper accepted: 32 bytes, the HMAC-SHA-256
// block-size recommendation's lower end.
const minPepperLen = 32

// Hasher turns secrets into digests. It is the one place keys are hashed,
// used both when a key is created and when it is checked. Without a pepper
// it uses SHA-256; with one, HMAC-SHA-256 keyed by the pepper, while still
// recognising keys hashed with plain SHA-256 before the pepper was set.
type Hasher struct {
	pepper []byte
	pool   sync.Pool // of hash.Hash keyed by pepper
}

// NewHasher returns a Hasher. An empty pepper selects plain SHA-256; a
// non-empty one must be at least 32 bytes.
func NewHasher(pepper []byte) (*Hasher, error) {
	if len(pepper) > 0 && len(pepper) < minPepperLen {
		return nil, errors.New("keystore: pepper must be at least 32 bytes")
	}
	h := &Hasher{pepper: append([]byte(nil), pepper...)}
	if len(pepper) > 0 {
		h.pool.New = func() any { return hmac.New(sha256.New, h.pepper) }
	}
	return h, nil
}

// Scheme is the scheme new keys are hashed with.
func (h *Hasher) Scheme() string {
	if len(h.pepper) > 0 {
		return SchemeHMACSHA256
	}
	return SchemeSHA256
}

// Digest hashes s with the current scheme.
func (h *Hasher) Digest(s Secret) Digest {
	if len(h.pepper) == 0 {
		return plainDigest(s)
	}
	m := h.pool.Get().(hash.Hash)
	m.Reset()
	m.Write([]byte(s))
	var d Digest
	m.Sum(d[:0])
	h.pool.Put(m)
	return d
}

// plainDigest is SHA-256 of s, computed from a stack copy when s is short
// (every well-formed key, legacy ones included, is) so that hashing
// allocates nothing.
func plainDigest(s Secret) Digest {
	var buf [MaxLegacySecretLen]byte
	if len(s) <= len(buf) {
		return sha256.Sum256(append(buf[:0], s...))
	}
	return sha256.Sum256([]byte(s))
}

// Candidates returns the digests under which s may be stored, current
// scheme first: with a pepper, the HMAC digest and then the plain SHA-256
// digest of keys created before the pepper was configured.
func (h *Hasher) Candidates(s Secret) []Digest {
	return h.AppendCandidates(nil, s)
}

// AppendCandidates appends the candidate digests of s to dst, so that the
// decision path can keep them on its stack.
func (h *Hasher) AppendCandidates(dst []Digest, s Secret) []Digest {
	dst = append(dst, h.Digest(s))
	if len(h.pepper) > 0 {
		dst = append(dst, plainDigest(s))
	}
	return dst
}
