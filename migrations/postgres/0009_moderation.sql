-- Moderation (PROTOCOL.md §11.19, §16): the security audit log, abuse reports, account
-- sanctions and address bans. Nothing here holds an address, a username or plaintext: audit
-- subjects are opaque account ids, report contents are sealed under a key derived from the
-- server secret, address bans are keyed HMACs of an address prefix.
CREATE TABLE audit_events (
    id      BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind    TEXT NOT NULL,
    at      BIGINT NOT NULL,
    subject BYTEA,
    actor   BYTEA,
    detail  TEXT NOT NULL
);
CREATE INDEX audit_events_at ON audit_events(at);
CREATE INDEX audit_events_kind ON audit_events(kind, id);

-- Reports are moderation evidence: they do not cascade from accounts (a sender deleting its
-- account must not erase the report about it); they are deleted by the retention reaper.
CREATE TABLE reports (
    id              BYTEA PRIMARY KEY NOT NULL,
    reporter        BYTEA NOT NULL,
    sender_account  BYTEA NOT NULL,
    sender_device   BIGINT NOT NULL,
    destination     BYTEA NOT NULL,
    message_seq     BIGINT NOT NULL,
    message_time    BIGINT NOT NULL,
    attributed      BOOLEAN NOT NULL,
    sealed          BYTEA NOT NULL,
    status          TEXT NOT NULL,
    decision        TEXT,
    decided_at      BIGINT,
    decided_by      BYTEA,
    created_at      BIGINT NOT NULL
);
CREATE INDEX reports_status ON reports(status, created_at);

CREATE TABLE account_sanctions (
    account_id  BYTEA PRIMARY KEY NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    kind        TEXT NOT NULL,
    expires_at  BIGINT,
    created_at  BIGINT NOT NULL
);

CREATE TABLE address_bans (
    prefix_hash BYTEA PRIMARY KEY NOT NULL,
    expires_at  BIGINT,
    created_at  BIGINT NOT NULL
);
