-- +goose Up
-- API keys, stored only as digests: the embedded store's schema, the same
-- keys as PostgreSQL's (keystore/postgres/migrations) in SQLite's types.
-- Times are unix microseconds (UTC); scopes and allowed_cidrs are sorted
-- lists joined by "," (neither ever holds a comma); metadata is a JSON
-- object. A key is never deleted: revocation and expiry keep the record
-- (and its audit trail) for investigation.
CREATE TABLE api_keys (
    id             TEXT    PRIMARY KEY,
    account_id     TEXT    NOT NULL,
    name           TEXT    NOT NULL,
    description    TEXT    NOT NULL DEFAULT '',
    display_prefix TEXT    NOT NULL,
    digest         BLOB    NOT NULL CONSTRAINT api_keys_digest_len CHECK (length(digest) = 32),
    hash_scheme    TEXT    NOT NULL CONSTRAINT api_keys_hash_scheme CHECK (hash_scheme IN ('sha256', 'hmac-sha256')),
    scopes         TEXT    NOT NULL DEFAULT '',
    created_at     INTEGER NOT NULL,
    created_by     TEXT    NOT NULL DEFAULT '',
    expires_at     INTEGER,
    revoked_at     INTEGER,
    disabled_at    INTEGER,
    last_used_at   INTEGER,
    rotated_from   TEXT    REFERENCES api_keys (id),
    allowed_cidrs  TEXT    NOT NULL DEFAULT '',
    metadata       TEXT    NOT NULL DEFAULT '{}' CONSTRAINT api_keys_metadata_object CHECK (json_type(metadata) = 'object'),
    -- The time of the last lifecycle change, moved forward by every change
    -- of the key: the delta poll reads changes since its previous poll
    -- through it.
    updated_at     INTEGER NOT NULL
) STRICT;

-- The decision path's one query: a point lookup by digest.
CREATE UNIQUE INDEX api_keys_digest ON api_keys (digest);
-- A key has at most one successor.
CREATE UNIQUE INDEX api_keys_rotated_from ON api_keys (rotated_from) WHERE rotated_from IS NOT NULL;
CREATE INDEX api_keys_account ON api_keys (account_id, created_at, id);
CREATE INDEX api_keys_created ON api_keys (created_at, id);
CREATE INDEX api_keys_updated_at ON api_keys (updated_at);

-- One row per lifecycle change, written in the same transaction as the
-- change. Never holds secrets.
CREATE TABLE api_key_events (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    key_id  TEXT    NOT NULL REFERENCES api_keys (id),
    action  TEXT    NOT NULL,
    actor   TEXT    NOT NULL DEFAULT '',
    at      INTEGER NOT NULL,
    detail  TEXT    NOT NULL DEFAULT '{}'
) STRICT;
CREATE INDEX api_key_events_key ON api_key_events (key_id, id);

-- +goose Down
DROP TABLE api_key_events;
DROP TABLE api_keys;
