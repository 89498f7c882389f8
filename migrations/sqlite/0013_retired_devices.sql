-- Identity keys of unlinked devices (docs/PROTOCOL.md §16.6 step 6): kept for the report window
-- so a report of a message a device sent before it was unlinked can still be attributed to it.
-- Device numbers are never reused (accounts.next_device_number), so (account, number) names one
-- device. Deleted with the account, and by the moderation reaper once older than the window.
CREATE TABLE retired_devices (
    account_id    BLOB NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    device_number BIGINT NOT NULL,
    identity_key  BLOB NOT NULL,
    retired_at    BIGINT NOT NULL,
    PRIMARY KEY (account_id, device_number)
);
CREATE INDEX retired_devices_retired_at ON retired_devices(retired_at);
