-- Franking of group messages (docs/PROTOCOL.md §16.3, §16.4): the writer's 32-byte commitment,
-- stored with its channel entry so the relay can stamp it when the entry is read; NULL for
-- entries appended without one.
ALTER TABLE channel_entries ADD COLUMN franking_commitment BYTEA;
