-- Device numbers, key directory, mailboxes and sealed-sender access keys (docs/PROTOCOL.md
-- §11.11-§11.13). Every new table cascades from devices(account_id, device_number), so unlinking a
-- device or deleting its account purges its keys and its queued envelopes.

-- Small per-account device numbers (the SDK's DeviceAddress.device_id): assigned from
-- accounts.next_device_number, so a number is never reused after its device is removed.
ALTER TABLE accounts ADD COLUMN next_device_number BIGINT NOT NULL DEFAULT 1;
-- SHA-256("haven/access-key/v1" || 0x00 || access key) of the unidentified-access key, if set.
ALTER TABLE accounts ADD COLUMN access_key_hash BYTEA;
ALTER TABLE devices ADD COLUMN device_number BIGINT NOT NULL DEFAULT 0;
UPDATE devices SET device_number = (
    SELECT COUNT(*) FROM devices d2
    WHERE d2.account_id = devices.account_id
      AND (d2.created_at < devices.created_at
           OR (d2.created_at = devices.created_at AND d2.id <= devices.id)));
UPDATE accounts SET next_device_number = 1 + COALESCE(
    (SELECT MAX(device_number) FROM devices WHERE devices.account_id = accounts.id), 0);
CREATE UNIQUE INDEX devices_account_number ON devices(account_id, device_number);

-- The medium-term keys of a device: signed X25519 prekey and last-resort ML-KEM prekey.
CREATE TABLE device_keys (
    account_id                BYTEA NOT NULL,
    device_number             BIGINT NOT NULL,
    registration_id           BIGINT NOT NULL,
    signed_prekey_id          BIGINT NOT NULL,
    signed_prekey             BYTEA NOT NULL,
    signed_prekey_signature   BYTEA NOT NULL,
    last_resort_kem_id        BIGINT NOT NULL,
    last_resort_kem           BYTEA NOT NULL,
    last_resort_kem_signature BYTEA NOT NULL,
    updated_at                BIGINT NOT NULL,
    PRIMARY KEY (account_id, device_number),
    FOREIGN KEY (account_id, device_number)
        REFERENCES devices(account_id, device_number) ON DELETE CASCADE
);

-- One-time keys: kind 1 = X25519 (no signature), kind 2 = ML-KEM-1024 (signed).
CREATE TABLE one_time_prekeys (
    account_id    BYTEA NOT NULL,
    device_number BIGINT NOT NULL,
    kind          SMALLINT NOT NULL,
    key_id        BIGINT NOT NULL,
    public_key    BYTEA NOT NULL,
    signature     BYTEA,
    PRIMARY KEY (account_id, device_number, kind, key_id),
    FOREIGN KEY (account_id, device_number)
        REFERENCES devices(account_id, device_number) ON DELETE CASCADE
);

-- Payloads of multi-recipient sends, stored once; id = first 16 bytes of SHA-256(payload).
CREATE TABLE shared_payloads (
    id         BYTEA PRIMARY KEY NOT NULL,
    payload    BYTEA NOT NULL,
    expires_at BIGINT NOT NULL
);

-- Per-device queues. The identity sequence never reuses a number.
CREATE TABLE envelopes (
    seq            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id     BYTEA NOT NULL,
    device_number  BIGINT NOT NULL,
    message_id     BYTEA NOT NULL,
    source_account BYTEA,
    source_device  BIGINT,
    content        BYTEA NOT NULL,
    payload_id     BYTEA REFERENCES shared_payloads(id),
    digest         BYTEA NOT NULL,
    size           BIGINT NOT NULL,
    received_at    BIGINT NOT NULL,
    expires_at     BIGINT NOT NULL,
    UNIQUE (account_id, device_number, message_id),
    FOREIGN KEY (account_id, device_number)
        REFERENCES devices(account_id, device_number) ON DELETE CASCADE
);
CREATE INDEX envelopes_queue ON envelopes(account_id, device_number, seq);
CREATE INDEX envelopes_expires_at ON envelopes(expires_at);
CREATE INDEX envelopes_payload_id ON envelopes(payload_id);
