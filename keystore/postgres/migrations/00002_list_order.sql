-- +goose Up
-- Keyset pagination of every account's keys (the admin API's list) in
-- creation order, either way; one account's keys use api_keys_account.
CREATE INDEX api_keys_created ON api_keys (created_at, id);

-- +goose Down
DROP INDEX api_keys_created;
