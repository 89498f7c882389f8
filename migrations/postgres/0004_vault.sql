-- The vault: per-account collections of opaque encrypted items with full revision history.
-- Everything cascades from accounts(id), so deleting an account purges its vault.

-- Per-account counters: the change sequence (sync tokens), quota usage and the highest sequence
-- number of any purged item (older sync tokens must resync from scratch). Every write
-- transaction starts by updating this row, which serialises the writers of one account so
-- sequence numbers become visible in order.
CREATE TABLE vault_accounts (
    account_id BYTEA PRIMARY KEY NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    last_seq   BIGINT NOT NULL,
    item_count BIGINT NOT NULL,
    byte_count BIGINT NOT NULL,
    purged_seq BIGINT NOT NULL DEFAULT 0
);

-- The head of each item: current revision, whether it is soft-deleted, its last change.
-- Times are coarse server times (rounded down), never client times.
CREATE TABLE vault_items (
    account_id    BYTEA NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    collection_id BYTEA NOT NULL,
    item_id       BYTEA NOT NULL,
    revision      BIGINT NOT NULL,
    deleted       BOOLEAN NOT NULL,
    seq           BIGINT NOT NULL,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    deleted_at    BIGINT,
    PRIMARY KEY (account_id, collection_id, item_id)
);
CREATE UNIQUE INDEX vault_items_changes ON vault_items(account_id, collection_id, seq);
CREATE INDEX vault_items_deleted_at ON vault_items(deleted_at);

-- Every revision of every item; body and meta are NULL for a deletion tombstone.
CREATE TABLE vault_revisions (
    account_id    BYTEA NOT NULL,
    collection_id BYTEA NOT NULL,
    item_id       BYTEA NOT NULL,
    revision      BIGINT NOT NULL,
    body          BYTEA,
    meta          BYTEA,
    size_bytes    BIGINT NOT NULL,
    created_at    BIGINT NOT NULL,
    PRIMARY KEY (account_id, collection_id, item_id, revision),
    FOREIGN KEY (account_id, collection_id, item_id)
        REFERENCES vault_items(account_id, collection_id, item_id) ON DELETE CASCADE
);
