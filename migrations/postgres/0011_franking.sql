-- Message franking (docs/PROTOCOL.md §16.4): the sender's 32-byte commitment, stored with its
-- envelope so the relay can stamp it at delivery; NULL for envelopes sent without one.
ALTER TABLE envelopes ADD COLUMN franking_commitment BYTEA;
