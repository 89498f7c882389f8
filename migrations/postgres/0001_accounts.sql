-- Accounts, devices, sessions and server secrets. Every account-owned table cascades from
-- accounts(id) so deleting the account row removes everything (ON DELETE CASCADE).
CREATE TABLE server_secrets (
    name  TEXT PRIMARY KEY NOT NULL,
    value BYTEA NOT NULL
);

CREATE TABLE accounts (
    id             BYTEA PRIMARY KEY NOT NULL,
    username_hash  BYTEA UNIQUE,
    opaque_record  BYTEA NOT NULL,
    totp_secret    BYTEA,
    totp_enabled   BOOLEAN NOT NULL DEFAULT FALSE,
    totp_last_step BIGINT,
    created_at     BIGINT NOT NULL
);

CREATE TABLE devices (
    id           BYTEA PRIMARY KEY NOT NULL,
    account_id   BYTEA NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    identity_key BYTEA NOT NULL,
    name_blob    BYTEA,
    created_at   BIGINT NOT NULL
);
CREATE INDEX devices_account_id ON devices(account_id);

CREATE TABLE token_families (
    id         BYTEA PRIMARY KEY NOT NULL,
    account_id BYTEA NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    device_id  BYTEA NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    revoked    BOOLEAN NOT NULL DEFAULT FALSE,
    created_at BIGINT NOT NULL
);
CREATE INDEX token_families_account_id ON token_families(account_id);
CREATE INDEX token_families_device_id ON token_families(device_id);

CREATE TABLE refresh_tokens (
    token_hash BYTEA PRIMARY KEY NOT NULL,
    family_id  BYTEA NOT NULL REFERENCES token_families(id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at    BIGINT
);
CREATE INDEX refresh_tokens_family_id ON refresh_tokens(family_id);

-- Pending registrations: the account id handed out by registration/start (no account yet).
CREATE TABLE registration_states (
    id         BYTEA PRIMARY KEY NOT NULL,
    account_id BYTEA NOT NULL,
    expires_at BIGINT NOT NULL
);

-- OPAQUE server login state between login/start and login/finish (single use, short-lived).
-- account_id is NULL for the fake login of an unknown identifier.
CREATE TABLE login_states (
    id         BYTEA PRIMARY KEY NOT NULL,
    account_id BYTEA REFERENCES accounts(id) ON DELETE CASCADE,
    state      BYTEA NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX login_states_account_id ON login_states(account_id);
