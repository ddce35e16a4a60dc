-- +goose Up
-- A key's limits: its rates and quota as the CLI spells them,
-- {"rates": ["100/s", "50000/d,burst=500"], "quota": "1000000/month"}; {}: none.
ALTER TABLE api_keys ADD COLUMN limits jsonb NOT NULL DEFAULT '{}'
    CONSTRAINT api_keys_limits_object CHECK (jsonb_typeof(limits) = 'object');

-- Decisions per key, outcome and time bucket: per minute (step 60) as the
-- replicas write them, in batches; rolled into hours (3600) and days
-- (86400) as they age, and deleted past the retention. Buckets start on
-- whole minutes, hours and UTC days.
CREATE TABLE api_key_usage (
    key_id  uuid        NOT NULL,
    step    integer     NOT NULL CONSTRAINT api_key_usage_step CHECK (step IN (60, 3600, 86400)),
    start   timestamptz NOT NULL,
    outcome text        NOT NULL,
    count   bigint      NOT NULL CONSTRAINT api_key_usage_count CHECK (count >= 0),
    PRIMARY KEY (key_id, start, step, outcome)
);
-- Rollups and retention walk the oldest buckets of one step.
CREATE INDEX api_key_usage_age ON api_key_usage (step, start);

-- Replicas that serve, each refreshing its row: the live count divides a
-- key's limits among them (the local counting store).
CREATE TABLE keygate_replicas (
    id      text        PRIMARY KEY,
    seen_at timestamptz NOT NULL
);

-- +goose Down
DROP TABLE keygate_replicas;
DROP TABLE api_key_usage;
ALTER TABLE api_keys DROP COLUMN limits;
