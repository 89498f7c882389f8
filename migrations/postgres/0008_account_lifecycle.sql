-- The account lifecycle (PROTOCOL.md §11.6–§11.9): what an OPAQUE run in login_states is for,
-- the recovery credential, and the short-lived single-use proofs of a fresh authentication.

-- 0 = login, 1 = re-authentication of a logged-in session, 2 = recovery with a recovery code.
ALTER TABLE login_states ADD COLUMN purpose SMALLINT NOT NULL DEFAULT 0;

-- The OPAQUE registration record of the account's recovery code (NULL when none is set).
ALTER TABLE accounts ADD COLUMN recovery_record BYTEA;

-- A fresh-authentication proof: only SHA-256 of it is stored; it belongs to one session and is
-- spent by the first request that presents it.
CREATE TABLE fresh_auth (
    token_hash BYTEA PRIMARY KEY NOT NULL,
    account_id BYTEA NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    family_id  BYTEA NOT NULL REFERENCES token_families(id) ON DELETE CASCADE,
    expires_at BIGINT NOT NULL
);
CREATE INDEX fresh_auth_account_id ON fresh_auth(account_id);
CREATE INDEX fresh_auth_family_id ON fresh_auth(family_id);
