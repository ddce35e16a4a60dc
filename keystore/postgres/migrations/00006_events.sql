-- +goose Up
-- Events out (webhooks). An endpoint subscribes to event types, for every
-- account or one. Its signing secrets are Standard Webhooks secrets
-- (whsec_…), kept so that deliveries can be signed; the previous one keeps
-- signing too until previous_secret_until (rotation with overlap).
CREATE TABLE webhook_endpoints (
    id                    uuid        PRIMARY KEY,
    url                   text        NOT NULL,
    description           text        NOT NULL DEFAULT '',
    event_types           text[]      NOT NULL DEFAULT '{}', -- empty: every type
    account_id            text,                              -- NULL: every account
    secret                text        NOT NULL,
    previous_secret       text,
    previous_secret_until timestamptz,
    disabled_at           timestamptz,
    disabled_reason       text        NOT NULL DEFAULT '',
    created_at            timestamptz NOT NULL,
    updated_at            timestamptz NOT NULL
);

-- The outbox: one row per event, written in the transaction of the change
-- it announces, and only when an endpoint subscribes to it. payload is the
-- exact body delivered (and signed). Never holds a secret or a digest.
CREATE TABLE webhook_events (
    id          text        PRIMARY KEY,
    type        text        NOT NULL,
    account_id  text        NOT NULL,
    key_id      uuid,
    occurred_at timestamptz NOT NULL,
    payload     text        NOT NULL
);
CREATE INDEX webhook_events_occurred ON webhook_events (occurred_at);

-- One row per event and endpoint subscribed to it, written with the event:
-- the delivery's state, attempts and last outcome. A replica claims due
-- rows (FOR UPDATE SKIP LOCKED) by setting claimed_until; a claim that
-- outlives it (the replica died) is claimed again, as a retry.
CREATE TABLE webhook_deliveries (
    id              bigserial   PRIMARY KEY,
    event_id        text        NOT NULL REFERENCES webhook_events (id) ON DELETE CASCADE,
    endpoint_id     uuid        NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    state           text        NOT NULL DEFAULT 'pending'
        CONSTRAINT webhook_deliveries_state CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL,
    claimed_until   timestamptz,
    window_start    timestamptz NOT NULL,
    last_attempt_at timestamptz,
    last_status     integer     NOT NULL DEFAULT 0,
    last_error      text        NOT NULL DEFAULT '',
    delivered_at    timestamptz,
    created_at      timestamptz NOT NULL,
    CONSTRAINT webhook_deliveries_once UNIQUE (endpoint_id, event_id)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE state = 'pending';
CREATE INDEX webhook_deliveries_endpoint ON webhook_deliveries (endpoint_id, id);
CREATE INDEX webhook_deliveries_event ON webhook_deliveries (event_id);

-- Which expiry warnings went out: one per key, lead time (0: expired) and
-- expiry, so that each fires once across replicas and restarts.
CREATE TABLE key_expiry_notices (
    key_id       uuid        NOT NULL REFERENCES api_keys (id),
    lead_seconds bigint      NOT NULL,
    expires_at   timestamptz NOT NULL,
    noticed_at   timestamptz NOT NULL,
    PRIMARY KEY (key_id, lead_seconds, expires_at)
);
-- The expiry scan and the expiring-keys gauge: keys that can still expire.
CREATE INDEX api_keys_expiring ON api_keys (expires_at) WHERE revoked_at IS NULL AND disabled_at IS NULL;

-- Leak reports received (the SHA-256 of each body), so that a replayed
-- report changes nothing.
CREATE TABLE leak_reports (
    digest      bytea       PRIMARY KEY CONSTRAINT leak_reports_digest_len CHECK (octet_length(digest) = 32),
    source      text        NOT NULL,
    received_at timestamptz NOT NULL
);

-- +goose Down
DROP TABLE leak_reports;
DROP INDEX api_keys_expiring;
DROP TABLE key_expiry_notices;
DROP TABLE webhook_deliveries;
DROP TABLE webhook_events;
DROP TABLE webhook_endpoints;
