-- +goose Up
-- A key's limits: its rates and quota as the CLI spells them,
-- {"rates": ["100/s", "50000/d,burst=500"], "quota": "1000000/month"}; {}: none.
ALTER TABLE api_keys ADD COLUMN limits TEXT NOT NULL DEFAULT '{}'
    CONSTRAINT api_keys_limits_object CHECK (json_type(limits) = 'object');

-- Decisions per key, outcome and time bucket (start in unix seconds): per
-- minute (step 60) as serve writes them, in batches; rolled into hours
-- (3600) and days (86400) as they age, and deleted past the retention.
CREATE TABLE api_key_usage (
    key_id  TEXT    NOT NULL,
    step    INTEGER NOT NULL CONSTRAINT api_key_usage_step CHECK (step IN (60, 3600, 86400)),
    start   INTEGER NOT NULL,
    outcome TEXT    NOT NULL,
    count   INTEGER NOT NULL CONSTRAINT api_key_usage_count CHECK (count >= 0),
    PRIMARY KEY (key_id, start, step, outcome)
) STRICT, WITHOUT ROWID;
CREATE INDEX api_key_usage_age ON api_key_usage (step, start);

-- Replicas that serve (one, on SQLite: the file is held by one serve).
CREATE TABLE keygate_replicas (
    id      TEXT    PRIMARY KEY,
    seen_at INTEGER NOT NULL
) STRICT;

-- +goose Down
DROP TABLE keygate_replicas;
DROP TABLE api_key_usage;
ALTER TABLE api_keys DROP COLUMN limits;
