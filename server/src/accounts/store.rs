//! The accounts feature's store: accounts, devices, sessions (refresh-token families) and
//! the OPAQUE states of logins in progress, with their records.

use std::future::Future;

use crate::db::error::{SecretBytes, StoreResult};
use crate::ids::Id;

/// A new account to insert.
pub struct NewAccount {
    /// Random account id (also the OPAQUE credential identifier).
    pub id: Id,
    /// HMAC-SHA256(pepper, normalised username), if the account has a username.
    pub username_hash: Option<Vec<u8>>,
    /// Serialized OPAQUE registration record (`ServerRegistration`).
    pub opaque_record: Vec<u8>,
    /// Creation time.
    pub created_at: i64,
}

/// An account row.
pub struct AccountRecord {
    /// Account id.
    pub id: Id,
    /// Keyed hash of the username, if any.
    pub username_hash: Option<Vec<u8>>,
    /// Serialized OPAQUE registration record.
    pub opaque_record: Vec<u8>,
    /// TOTP secret (pending or enabled).
    pub totp_secret: Option<SecretBytes>,
    /// Whether TOTP is enabled (verified).
    pub totp_enabled: bool,
    /// Last TOTP time step accepted (replay protection).
    pub totp_last_step: Option<i64>,
    /// Creation time.
    pub created_at: i64,
}

/// A device row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceRecord {
    /// Device id.
    pub id: Id,
    /// Owning account.
    pub account_id: Id,
    /// The device's public identity key (opaque bytes).
    pub identity_key: Vec<u8>,
    /// Encrypted device name (opaque bytes).
    pub name_blob: Option<Vec<u8>>,
    /// Creation time.
    pub created_at: i64,
    /// Small per-account device number (the SDK's `DeviceAddress::device_id`), stable and never
    /// reused. Assigned by the store on insert (the value given to an insert is ignored): the
    /// first device of an account is 1.
    pub number: u32,
}

/// A refresh-token family row (one login session of one device).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FamilyRecord {
    /// Family id (the `fam` claim).
    pub id: Id,
    /// Owning account.
    pub account_id: Id,
    /// Device the session belongs to.
    pub device_id: Id,
    /// Whether the family has been revoked (logout or reuse).
    pub revoked: bool,
    /// Creation time.
    pub created_at: i64,
}

/// A refresh-token row (only the SHA-256 of the token is stored).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefreshTokenRecord {
    /// SHA-256 of the token.
    pub token_hash: Vec<u8>,
    /// Family.
    pub family_id: Id,
    /// Creation time.
    pub created_at: i64,
    /// Expiry time.
    pub expires_at: i64,
    /// When it was spent (rotated), if it was.
    pub used_at: Option<i64>,
}

/// Outcome of presenting a refresh token.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RefreshOutcome {
    /// The token was valid; it is now spent and the new one is stored.
    Rotated(FamilyRecord),
    /// The token had already been spent: the whole family is now revoked.
    Reused {
        /// The account whose session it was (its sockets re-check their sessions).
        account: Id,
    },
    /// No such token, or its family was revoked, or it expired.
    Invalid,
}

/// What a stored OPAQUE login run is for (PROTOCOL.md §11.6): each finishing route accepts
/// only its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LoginPurpose {
    /// `login/start` → `login/finish`: a new session.
    Login,
    /// `account/reauth/start` → `account/reauth/finish`: a fresh-authentication proof.
    Reauth,
    /// `recover/start` → `recover/finish`: a login with the recovery code.
    Recovery,
}

impl LoginPurpose {
    /// The value of the `purpose` column.
    pub fn code(self) -> i16 {
        match self {
            Self::Login => 0,
            Self::Reauth => 1,
            Self::Recovery => 2,
        }
    }

    /// The purpose a `purpose` column value stands for.
    pub fn from_code(code: i16) -> Option<Self> {
        match code {
            0 => Some(Self::Login),
            1 => Some(Self::Reauth),
            2 => Some(Self::Recovery),
            _ => None,
        }
    }
}

/// Pending OPAQUE login state.
pub struct LoginState {
    /// The account, or `None` for the fake login of an unknown identifier.
    pub account_id: Option<Id>,
    /// What the run is for.
    pub purpose: LoginPurpose,
    /// Serialized `ServerLogin` state.
    pub state: SecretBytes,
}

/// Accounts.
pub trait AccountStore {
    /// Inserts an account together with its first device (one transaction).
    /// [`StoreError::Conflict`] if the username hash (or id) is taken.
    fn create_account(
        &self,
        account: &NewAccount,
        device: &DeviceRecord,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    /// Reads an account.
    fn account(&self, id: &Id) -> impl Future<Output = StoreResult<Option<AccountRecord>>> + Send;
    /// Finds the account with this username hash.
    fn account_by_username_hash(
        &self,
        hash: &[u8],
    ) -> impl Future<Output = StoreResult<Option<Id>>> + Send;
    /// Whether an account with this username hash exists.
    fn username_hash_taken(&self, hash: &[u8]) -> impl Future<Output = StoreResult<bool>> + Send;
    /// Deletes the account and (by cascade) every row belonging to it. Returns whether it existed.
    fn delete_account(&self, id: &Id) -> impl Future<Output = StoreResult<bool>> + Send;
    /// Stores a pending (not yet enabled) TOTP secret, replacing any previous pending one.
    /// Does nothing and returns `false` if TOTP is already enabled.
    fn set_totp_pending(
        &self,
        id: &Id,
        secret: &[u8],
    ) -> impl Future<Output = StoreResult<bool>> + Send;
    /// Atomically records `step` as the last used TOTP step if it is newer than the stored one.
    /// Returns `false` if the step was already used (replay) or an older one.
    fn claim_totp_step(&self, id: &Id, step: i64)
    -> impl Future<Output = StoreResult<bool>> + Send;
    /// Enables (`true`) TOTP, or disables it and forgets the secret (`false`).
    fn set_totp_enabled(
        &self,
        id: &Id,
        enabled: bool,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    /// Replaces the stored TOTP secret of `id` with `new` if it is still exactly `old` (sealing
    /// it again under another key); returns whether it was replaced.
    fn replace_totp_secret(
        &self,
        id: &Id,
        old: &[u8],
        new: &[u8],
    ) -> impl Future<Output = StoreResult<bool>> + Send;
    /// Up to `limit` accounts with a stored TOTP secret (pending or enabled), with it, in
    /// ascending id order after `after`.
    fn totp_secrets_page(
        &self,
        after: Option<&Id>,
        limit: u32,
    ) -> impl Future<Output = StoreResult<Vec<(Id, SecretBytes)>>> + Send;
}

/// Devices.
pub trait DeviceStore {
    /// Inserts a device unless the account already has `max_devices` devices
    /// ([`StoreError::LimitReached`]); returns the device number it was given.
    fn create_device(
        &self,
        device: &DeviceRecord,
        max_devices: u32,
    ) -> impl Future<Output = StoreResult<u32>> + Send;
    /// Reads one device of an account by its device number.
    fn device_by_number(
        &self,
        account: &Id,
        number: u32,
    ) -> impl Future<Output = StoreResult<Option<DeviceRecord>>> + Send;
    /// The number the account's next device will get (every smaller number was used once), or
    /// `None` if the account does not exist.
    fn next_device_number(
        &self,
        account: &Id,
    ) -> impl Future<Output = StoreResult<Option<u32>>> + Send;
    /// Reads one device of an account.
    fn device(
        &self,
        account: &Id,
        device: &Id,
    ) -> impl Future<Output = StoreResult<Option<DeviceRecord>>> + Send;
    /// The account's next device number and its current device numbers (ascending), in one
    /// query; `None` if the account does not exist. What a send checks its device list against.
    fn device_numbers(
        &self,
        account: &Id,
    ) -> impl Future<Output = StoreResult<Option<(u32, Vec<u32>)>>> + Send;
    /// Lists an account's devices, oldest first.
    fn devices(&self, account: &Id) -> impl Future<Output = StoreResult<Vec<DeviceRecord>>> + Send;
    /// Replaces a device's encrypted name. Returns whether the device exists.
    fn set_device_name(
        &self,
        account: &Id,
        device: &Id,
        name_blob: Option<&[u8]>,
    ) -> impl Future<Output = StoreResult<bool>> + Send;
    /// Deletes a device (and by cascade its sessions), keeping its number and identity key as
    /// retired at `now` (for attributing abuse reports within the report window). Returns
    /// whether it existed.
    fn delete_device(
        &self,
        account: &Id,
        device: &Id,
        now: i64,
    ) -> impl Future<Output = StoreResult<bool>> + Send;
    /// The identity key a since unlinked device of the account had under `number`, if it was
    /// unlinked at or after `since` (and not reaped yet).
    fn retired_identity_key(
        &self,
        account: &Id,
        number: u32,
        since: i64,
    ) -> impl Future<Output = StoreResult<Option<Vec<u8>>>> + Send;
}

/// Sessions: refresh-token families and their tokens.
pub trait TokenStore {
    /// Creates a family with its first refresh token.
    fn create_family(
        &self,
        family: &FamilyRecord,
        token: &RefreshTokenRecord,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    /// Spends the token with hash `presented` and stores `next` in the same family; revokes the
    /// family if the token was already spent.
    fn rotate_refresh(
        &self,
        presented: &[u8],
        next_hash: &[u8],
        now: i64,
        next_expires_at: i64,
    ) -> impl Future<Output = StoreResult<RefreshOutcome>> + Send;
    /// Revokes a family (logout). Returns whether it existed.
    fn revoke_family(&self, family: &Id) -> impl Future<Output = StoreResult<bool>> + Send;
    /// Whether the session (family, unrevoked, of this account and an existing device) is valid.
    fn session_valid(
        &self,
        account: &Id,
        device: &Id,
        family: &Id,
    ) -> impl Future<Output = StoreResult<bool>> + Send;
    /// All families of an account (for export).
    fn families(&self, account: &Id)
    -> impl Future<Output = StoreResult<Vec<FamilyRecord>>> + Send;
    /// All refresh-token rows of an account (for export).
    fn refresh_tokens(
        &self,
        account: &Id,
    ) -> impl Future<Output = StoreResult<Vec<RefreshTokenRecord>>> + Send;
}

/// Short-lived state between the two round trips of registration and login.
pub trait AuthStateStore {
    /// Records that registration attempt `id` was handed `account_id`.
    fn put_registration(
        &self,
        id: &Id,
        account_id: &Id,
        expires_at: i64,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    /// Consumes (deletes) a registration attempt; `None` if unknown or expired.
    fn take_registration(
        &self,
        id: &Id,
        now: i64,
    ) -> impl Future<Output = StoreResult<Option<Id>>> + Send;
    /// Stores a login state.
    fn put_login(
        &self,
        id: &Id,
        state: &LoginState,
        expires_at: i64,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    /// Consumes (deletes) a login state; `None` if unknown or expired.
    fn take_login(
        &self,
        id: &Id,
        now: i64,
    ) -> impl Future<Output = StoreResult<Option<LoginState>>> + Send;
    /// Deletes expired registration and login states. Returns how many rows were removed.
    fn purge_expired(&self, now: i64) -> impl Future<Output = StoreResult<u64>> + Send;
}
