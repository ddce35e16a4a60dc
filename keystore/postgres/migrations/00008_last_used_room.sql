-- +goose Up
-- Leave a third of each page of api_keys free. Last-used writes (one per
-- key used in each --last-used-interval, from every replica) change no
-- indexed column, so with room on the row's page they are HOT updates: no
-- entry added to any of the table's seven indexes and no dead index tuple
-- left to vacuum. A table filled by inserts has no room, and every such
-- write moved its row and wrote each index. The setting takes a lock that
-- reads and writes do not wait for; it applies to pages written from now
-- on (VACUUM FULL api_keys, or pg_repack, rewrites the others).
ALTER TABLE api_keys SET (fillfactor = 70);

-- +goose Down
ALTER TABLE api_keys RESET (fillfactor);
