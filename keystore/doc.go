// Package keystore owns API keys at rest: the Key record, secret
// generation and parsing, hashing, the Store with the key lifecycle
// (create, lookup, get, list, update, revoke, disable, enable, rotate,
// import, copy), each change audited and announced in the same
// transaction, and the Cache and Watcher that keep the decision path in
// memory.
//
// # Stores
//
// The Store owns the rules of the lifecycle, written once; a Backend (the
// store contract, backend.go) reads and writes rows in transactions and
// announces changes. Two implement it: keystore/postgres, for any number
// of replicas, and keystore/sqlite, embedded, for one node. The suite in
// keystore/conformance runs every operation against both.
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
// expiry, state and version in one compact value, immutable but for the
// usage entries it keeps, which is what the Cache holds (about 280 bytes
// of heap per cached key, its entry included). Everything else (Get, List, the lifecycle changes) returns
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
// Every lifecycle change gives the backend a Notice in its own
// transaction, so that caches learn of it when, and only if, it commits
// (PostgreSQL's NOTIFY reaches every replica; SQLite's reaches the
// process that made the change, and the delta poll the others); an import
// notifies once for all its keys.
//
// # Events out
//
// Store.record, which every lifecycle change goes through, also writes the
// change's event (key.created, key.revoked, …) to an outbox in the same
// transaction, with one delivery per webhook endpoint subscribed to it
// (events.go); ClaimDeliveries hands due deliveries to one claimer at a
// time (FOR UPDATE SKIP LOCKED on PostgreSQL) and FinishDelivery records
// each attempt. WarnExpiring sends key.expiring and key.expired once per
// key, lead time and expiry (expiring.go); HandleLeak revokes, disables or
// only reports the keys a leak report names, once per report (leaks.go);
// LookupKey finds a key by its secret. Payloads never hold a secret or a
// digest. The webhook package signs and delivers.
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
