-- Blobs: padded attachment ciphertexts kept in the blob store (a local directory or an S3
-- bucket). The database holds only metadata: who owns a blob, its padded size, its state and
-- expiry, the parts received so far, and each account's quota use.
--
-- Blob rows deliberately do NOT cascade from accounts(id): the objects live outside the
-- database, so a row must survive until its objects are gone. Account deletion removes the
-- objects and rows first; the garbage collector removes whatever is left of accounts that no
-- longer exist.

-- Quota use per account: padded bytes and number of blobs (pending and complete).
CREATE TABLE blob_accounts (
    account_id BYTEA PRIMARY KEY NOT NULL,
    byte_count BIGINT NOT NULL,
    blob_count BIGINT NOT NULL
);

CREATE TABLE blobs (
    id          BYTEA PRIMARY KEY NOT NULL,
    account_id  BYTEA NOT NULL,
    size        BIGINT NOT NULL,      -- exact padded blob size (is_valid_blob_size)
    part_size   BIGINT NOT NULL,      -- every part but the last has this size
    state       SMALLINT NOT NULL,    -- 0 = pending upload, 1 = complete
    upload_id   TEXT,                 -- S3 multipart upload id while pending
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    completed_at BIGINT
);
CREATE INDEX blobs_account ON blobs(account_id);
CREATE INDEX blobs_expiry ON blobs(expires_at);
CREATE INDEX blobs_pending ON blobs(state, created_at);

-- Parts received (local backend) or reported uploaded (S3, with the ETag S3 returned), so an
-- interrupted upload resumes with the missing parts only.
CREATE TABLE blob_parts (
    blob_id BYTEA NOT NULL REFERENCES blobs(id) ON DELETE CASCADE,
    part    BIGINT NOT NULL,
    size    BIGINT NOT NULL,
    etag    TEXT NOT NULL,
    PRIMARY KEY (blob_id, part)
);
