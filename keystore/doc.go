// Package keystore owns API keys at rest: the Key record, secret
// generation and parsing, hashing, the PostgreSQL schema and its
// migrations, and the Store with the key lifecycle (create, lookup, get,
// list, update, revoke, rotate), each change audited and announced in the
// same transaction.
//
// # Keys
//
// A key is "<prefix>_<body><checksum>": the prefix (default "kg") tells
// people and secret scanners what it is; the body is 33 base62 characters
// from crypto/rand (about 196 bits); the checksum is the CRC32 of prefix and
// body in 6 base62 characters, so ParseSecret rejects a mistyped or
// truncated key without any I/O. Only the digest (SHA-256, or HMAC-SHA-256
// with a pepper; the scheme is recorded per key) is stored. Secret's String
// method redacts it, so that a key cannot leak through a log line.
//
//	secret, _ := keystore.GenerateSecret("kg")
//	if _, err := keystore.ParseSecret(presented); err != nil { /* 401, no lookup */ }
//	rec, err := store.Lookup(ctx, store.Hasher().Digest(secret))
//	if err == nil && rec.StateAt(time.Now()) == keystore.StateActive { /* authenticated */ }
//
// # Records
//
// The decision path's reads (Lookup, LookupMany, ChangedSince) select only
// what a decision needs and return a Record: the key's id, account, scopes,
// expiry, state and version in one compact, immutable value, which is what
// the Cache holds (about 270 bytes of heap per cached key, its entry
// included). Everything else (Get, List, the lifecycle changes) returns
// the whole Key.
//
// # Listing
//
// List filters by account and state and pages by keyset (ListParams.After,
// Key.Position): creation time, then id, either way, so that keys created
// while a client pages never make a page repeat or skip a key. Records read
// by Get, List, Update and Revoke carry RotatedTo, the successor's id.
//
// # Errors
//
// Store methods wrap the sentinel errors ErrNotFound, ErrInvalid (with a
// *ValidationError naming the field; Create and CheckCreate join one per
// field that is wrong), ErrRevoked, ErrExpired, ErrRotated
// and ErrUnavailable; test them with errors.Is. Nothing is written when an
// error is returned. No error message ever contains a secret.
//
// # Changes
//
// Every lifecycle change notifies NotifyChannel with the key's hex digest
// in its own transaction, so replicas' caches learn of it when, and only
// if, it commits; an import notifies once for all its keys.
//
// # Limits and usage
//
// A key's Limits (rates with a burst, a quota per UTC day or month;
// ParseLimits, NormalizeLimits) are stored with it and carried in its
// Record's extras only when it has some (Record.Limited is one byte test
// for a key without). Usage is counted per key, outcome and minute by a
// UsageCounter, which writes in batches (AddUsage: one statement per
// flush); CompactUsage rolls minutes into hours and hours into days and
// deletes what is past a UsageRetention; Usage, TopUsage and QuotaUsed
// read it. Heartbeat counts the serving replicas (the local counting
// store divides rates by it).
//
// # Importing
//
// ReadImport reads keys of another system from JSON lines (a key in clear,
// or its SHA-256 digest); Import stores them in one transaction, all or
// none, with an *ImportError naming the first line that cannot be. Keys
// without keygate's prefix and checksum (ParseLegacySecret) are read only
// when ImportOptions.AcceptLegacy says so.
package keystore
