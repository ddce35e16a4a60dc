-- +goose Up
-- A disabled key is refused like a revoked one, but can be enabled again.
ALTER TABLE api_keys ADD COLUMN disabled_at timestamptz;

-- +goose Down
ALTER TABLE api_keys DROP COLUMN disabled_at;
