-- Tombstones of acknowledged envelopes (docs/PROTOCOL.md §11.12): an ack deletes the envelope
-- and records its message id here until the envelope would have expired, so a sender's
-- idempotent resend of the same message id after the ack is answered as a duplicate instead of
-- being queued (and delivered) a second time. Reaped with the envelopes' TTL.
CREATE TABLE acked_envelopes (
    account_id    BLOB NOT NULL,
    device_number BIGINT NOT NULL,
    message_id    BLOB NOT NULL,
    seq           BIGINT NOT NULL,
    digest        BLOB NOT NULL,
    expires_at    BIGINT NOT NULL,
    PRIMARY KEY (account_id, device_number, message_id),
    FOREIGN KEY (account_id, device_number)
        REFERENCES devices(account_id, device_number) ON DELETE CASCADE
);
CREATE INDEX acked_envelopes_expires_at ON acked_envelopes(expires_at);
