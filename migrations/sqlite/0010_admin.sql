-- Admin API keys. Only the SHA-256 of each key is stored: a key is 32 random bytes, so a fast
-- hash is enough (no guessing attack can walk a 256-bit space) and lets the relay find a key by
-- its hash in one indexed lookup. Several keys may be active at once; rotation is "create a new
-- key, then revoke the old one". Revoked keys stay listed (revoked_at set) for the record.
CREATE TABLE admin_keys (
    id           BLOB PRIMARY KEY NOT NULL,   -- 16 random bytes, shown as hex
    key_hash     BLOB NOT NULL UNIQUE,        -- SHA-256 of the 32 key bytes
    label        TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    last_used_at BIGINT,
    expires_at   BIGINT,                    -- NULL: never expires
    revoked_at   BIGINT                     -- NULL: not revoked
);
