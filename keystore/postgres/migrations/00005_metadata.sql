-- +goose Up
-- A key's metadata: at most 16 string entries, for Envoy's dynamic metadata
-- (rate-limit descriptors) and upstream headers. Not secret.
ALTER TABLE api_keys ADD COLUMN metadata jsonb NOT NULL DEFAULT '{}'
    CONSTRAINT api_keys_metadata_object CHECK (jsonb_typeof(metadata) = 'object');

-- +goose Down
ALTER TABLE api_keys DROP COLUMN metadata;
