-- Account identity (PROTOCOL.md §15): each account's current signed device list, the one-time
-- tokens with which an existing device approves a new one, and the provisioning boxes that
-- carry the approval, end to end encrypted, to the new device.

-- The list as the account signed it (opaque to the relay beyond its layout and signature) and
-- its version, which only goes up.
CREATE TABLE device_lists (
    account_id BLOB PRIMARY KEY NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    version    BIGINT NOT NULL,
    list       BLOB NOT NULL,
    updated_at BIGINT NOT NULL
);

-- SHA-256 of a link token an existing device made for a new one (single use, short-lived).
CREATE TABLE link_tokens (
    token_hash BLOB PRIMARY KEY NOT NULL,
    account_id BLOB NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    expires_at BIGINT NOT NULL
);
CREATE INDEX link_tokens_account_id ON link_tokens(account_id);

-- A new device's provisioning box: an id it chose to show as a code, and (once an existing
-- device approved it) the ciphertext for it. Read once, then gone; nothing ties it to an
-- account until the new device links.
CREATE TABLE provisioning_boxes (
    id         BLOB PRIMARY KEY NOT NULL,
    message    BLOB,
    expires_at BIGINT NOT NULL
);
