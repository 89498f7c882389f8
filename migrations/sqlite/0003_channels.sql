-- Channels (append-only logs addressed by a random id, access by capability token) and
-- single-use WebSocket tickets. Only SHA-256 hashes of tokens and tickets are stored; a channel
-- row records nothing about who created it or who reads it.
CREATE TABLE channels (
    id          BLOB PRIMARY KEY NOT NULL,
    read_hash   BLOB NOT NULL,
    write_hash  BLOB NOT NULL,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    entry_count BIGINT NOT NULL DEFAULT 0,
    byte_count  BIGINT NOT NULL DEFAULT 0,
    last_seq    BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX channels_expires_at ON channels(expires_at);

CREATE TABLE channel_entries (
    channel_id BLOB NOT NULL REFERENCES channels(id) ON DELETE CASCADE,
    seq        BIGINT NOT NULL,
    body       BLOB NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (channel_id, seq)
);

CREATE TABLE ws_tickets (
    ticket_hash BLOB PRIMARY KEY NOT NULL,
    account_id  BLOB NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    device_id   BLOB NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    family_id   BLOB NOT NULL REFERENCES token_families(id) ON DELETE CASCADE,
    expires_at  BIGINT NOT NULL
);
CREATE INDEX ws_tickets_expires_at ON ws_tickets(expires_at);
CREATE INDEX ws_tickets_account_id ON ws_tickets(account_id);
CREATE INDEX ws_tickets_device_id ON ws_tickets(device_id);
CREATE INDEX ws_tickets_family_id ON ws_tickets(family_id);
