-- +goose Up
-- Events out (webhooks): the embedded store's schema, the same tables as
-- PostgreSQL's 00006_events.sql in SQLite's types (times in unix
-- microseconds, event_types joined by ",").
CREATE TABLE webhook_endpoints (
    id                    TEXT    PRIMARY KEY,
    url                   TEXT    NOT NULL,
    description           TEXT    NOT NULL DEFAULT '',
    event_types           TEXT    NOT NULL DEFAULT '',
    account_id            TEXT,
    secret                TEXT    NOT NULL,
    previous_secret       TEXT,
    previous_secret_until INTEGER,
    disabled_at           INTEGER,
    disabled_reason       TEXT    NOT NULL DEFAULT '',
    created_at            INTEGER NOT NULL,
    updated_at            INTEGER NOT NULL
) STRICT;

CREATE TABLE webhook_events (
    id          TEXT    PRIMARY KEY,
    type        TEXT    NOT NULL,
    account_id  TEXT    NOT NULL,
    key_id      TEXT,
    occurred_at INTEGER NOT NULL,
    payload     TEXT    NOT NULL
) STRICT;
CREATE INDEX webhook_events_occurred ON webhook_events (occurred_at);

CREATE TABLE webhook_deliveries (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id        TEXT    NOT NULL REFERENCES webhook_events (id) ON DELETE CASCADE,
    endpoint_id     TEXT    NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    state           TEXT    NOT NULL DEFAULT 'pending'
        CONSTRAINT webhook_deliveries_state CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    claimed_until   INTEGER,
    window_start    INTEGER NOT NULL,
    last_attempt_at INTEGER,
    last_status     INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT    NOT NULL DEFAULT '',
    delivered_at    INTEGER,
    created_at      INTEGER NOT NULL,
    CONSTRAINT webhook_deliveries_once UNIQUE (endpoint_id, event_id)
) STRICT;
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE state = 'pending';
CREATE INDEX webhook_deliveries_endpoint ON webhook_deliveries (endpoint_id, id);
CREATE INDEX webhook_deliveries_event ON webhook_deliveries (event_id);

CREATE TABLE key_expiry_notices (
    key_id       TEXT    NOT NULL REFERENCES api_keys (id),
    lead_seconds INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    noticed_at   INTEGER NOT NULL,
    PRIMARY KEY (key_id, lead_seconds, expires_at)
) STRICT;
CREATE INDEX api_keys_expiring ON api_keys (expires_at) WHERE revoked_at IS NULL AND disabled_at IS NULL;

CREATE TABLE leak_reports (
    digest      BLOB    PRIMARY KEY CONSTRAINT leak_reports_digest_len CHECK (length(digest) = 32),
    source      TEXT    NOT NULL,
    received_at INTEGER NOT NULL
) STRICT;

-- +goose Down
DROP TABLE leak_reports;
DROP INDEX api_keys_expiring;
DROP TABLE key_expiry_notices;
DROP TABLE webhook_deliveries;
DROP TABLE webhook_events;
DROP TABLE webhook_endpoints;
