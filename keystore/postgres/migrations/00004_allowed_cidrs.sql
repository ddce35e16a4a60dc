-- +goose Up
-- The source addresses a key may be used from (empty: anywhere).
ALTER TABLE api_keys ADD COLUMN allowed_cidrs cidr[] NOT NULL DEFAULT '{}';

-- +goose Down
ALTER TABLE api_keys DROP COLUMN allowed_cidrs;
