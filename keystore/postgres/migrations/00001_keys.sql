-- +goose Up
-- API keys, stored only as digests. A key is never deleted: revocation and
-- expiry keep the record (and its audit trail) for investigation.
CREATE TABLE api_keys (
    id             uuid        PRIMARY KEY,
    account_id     text        NOT NULL,
    name           text        NOT NULL,
    description    text        NOT NULL DEFAULT '',
    display_prefix text        NOT NULL,
    digest         bytea       NOT NULL,
    hash_scheme    text        NOT NULL,
    scopes         text[]      NOT NULL DEFAULT '{}',
    created_at     timestamptz NOT NULL,
    created_by     text        NOT NULL DEFAULT '',
    expires_at     timestamptz,
    revoked_at     timestamptz,
    last_used_at   timestamptz,
    rotated_from   uuid        REFERENCES api_keys (id),
    -- Database time of the last lifecycle change; the delta poll of every
    -- replica reads changes since its previous poll through this column.
    updated_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    CONSTRAINT api_keys_digest_len CHECK (octet_length(digest) = 32),
    CONSTRAINT api_keys_hash_scheme CHECK (hash_scheme IN ('sha256', 'hmac-sha256'))
);

-- The decision path's one query: a point lookup by digest.
CREATE UNIQUE INDEX api_keys_digest ON api_keys (digest);
-- A key has at most one successor, so two concurrent rotations cannot
-- both succeed.
CREATE UNIQUE INDEX api_keys_rotated_from ON api_keys (rotated_from) WHERE rotated_from IS NOT NULL;
CREATE INDEX api_keys_account ON api_keys (account_id, created_at, id);
CREATE INDEX api_keys_updated_at ON api_keys (updated_at);

-- One row per lifecycle change (create, rotate, revoke, update), written in
-- the same transaction as the change. Never holds secrets.
CREATE TABLE api_key_events (
    id      bigserial   PRIMARY KEY,
    key_id  uuid        NOT NULL REFERENCES api_keys (id),
    action  text        NOT NULL,
    actor   text        NOT NULL DEFAULT '',
    at      timestamptz NOT NULL,
    detail  jsonb       NOT NULL DEFAULT '{}'
);
CREATE INDEX api_key_events_key ON api_key_events (key_id, id);

-- +goose Down
DROP TABLE api_key_events;
DROP TABLE api_keys;
