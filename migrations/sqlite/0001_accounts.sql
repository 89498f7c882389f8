-- Accounts, devices, sessions and server secrets. Every account-owned table cascades from
-- accounts(id) so deleting the account row removes everything (PRAGMA foreign_keys is on).
CREATE TABLE server_secrets (
    name  TEXT PRIMARY KEY NOT NULL,
    value BLOB NOT NULL
);

CREATE TABLE accounts (
    id             BLOB PRIMARY KEY NOT NULL,
    username_hash  BLOB UNIQUE,
    opaque_record  BLOB NOT NULL,
    totp_secret    BLOB,
    totp_enabled   BOOLEAN NOT NULL DEFAULT FALSE,
    totp_last_step BIGINT,
    created_at     BIGINT NOT NULL
);

CREATE TABLE devices (
    id           BLOB PRIMARY KEY NOT NULL,
    account_id   BLOB NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    identity_key BLOB NOT NULL,
    name_blob    BLOB,
    created_at   BIGINT NOT NULL
);
CREATE INDEX devices_account_id ON devices(account_id);

CREATE TABLE token_families (
    id         BLOB PRIMARY KEY NOT NULL,
    account_id BLOB NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    device_id  BLOB NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    revoked    BOOLEAN NOT NULL DEFAULT FALSE,
    created_at BIGINT NOT NULL
);
CREATE INDEX token_families_account_id ON token_families(account_id);
CREATE INDEX token_families_device_id ON token_families(device_id);

CREATE TABLE refresh_tokens (
    token_hash BLOB PRIMARY KEY NOT NULL,
    family_id  BLOB NOT NULL REFERENCES token_families(id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at    BIGINT
);
CREATE INDEX refresh_tokens_family_id ON refresh_tokens(family_id);

-- Pending registrations: the account id handed out by registration/start (no account yet).
CREATE TABLE registration_states (
    id         BLOB PRIMARY KEY NOT NULL,
    account_id BLOB NOT NULL,
    expires_at BIGINT NOT NULL
);

-- OPAQUE server login state between login/start and login/finish (single use, short-lived).
-- account_id is NULL for the fake login of an unknown identifier.
CREATE TABLE login_states (
    id         BLOB PRIMARY KEY NOT NULL,
    account_id BLOB REFERENCES accounts(id) ON DELETE CASCADE,
    state      BLOB NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX login_states_account_id ON login_states(account_id);
