//! Storage traits, split per concern, and their two backends (SQLite and Postgres).
//!
//! Handlers are generic over [`Store`] (no `dyn`): the binary picks the backend from the URL
//! scheme. All timestamps are Unix seconds passed in by the caller, so tests control time.

use std::future::Future;

use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::error::DeviceMismatch;
use crate::ids::Id;

mod batch;
mod blobs;
mod channels;
mod conformance;
pub mod credentials;
pub mod identity;
mod postgres;
mod seed;
mod sql;
mod sql_mail;
mod sqlite;
mod sqlite_mail;
mod vault;
mod vault_conformance;
mod vault_sql;

pub use batch::{DeliveryCommit, PendingWrite};
pub use blobs::{
    BlobMetaStore, BlobPart, BlobQuota, BlobRecord, BlobState, BlobUsage, CreateBlobOutcome,
};
pub use channels::{
    AppendOutcome, ChannelEntry, ChannelQuota, ChannelRecord, ChannelStore, NewChannel, TicketStore,
};
pub use credentials::{CredentialChange, CredentialStore};
pub use identity::{AccountIdentityStore, FillOutcome, PutListOutcome, StoredDeviceList};
pub use postgres::PgStore;
pub use seed::seed_session;
pub use sqlite::SqliteStore;
pub use vault::{
    VaultBlobs, VaultChanges, VaultHead, VaultItemRecord, VaultKey, VaultListing, VaultQuota,
    VaultRevisionRecord, VaultStore, VaultUsage, VaultWriteOutcome,
};

/// Errors from a store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A unique constraint was violated (maps to HTTP 409).
    #[error("unique constraint violated")]
    Conflict,
    /// A configured count limit (e.g. devices per account) was reached.
    #[error("limit reached")]
    LimitReached,
    /// A stored value had an unexpected shape (e.g. an id that is not 16 bytes).
    #[error("corrupt row in {table}")]
    Corrupt {
        /// The table the row came from.
        table: &'static str,
    },
    /// The database reported an error.
    #[error("database error: {0}")]
    Database(#[source] sqlx::Error),
    /// Running the migrations failed.
    #[error("migration error: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The database URL could not be used.
    #[error("invalid database url: {0}")]
    InvalidUrl(String),
    /// The SQLite library reported an error (the SQLite mailbox writer).
    #[error("database error: {0}")]
    Sqlite(#[source] rusqlite::Error),
    /// The mailbox writer task is gone (the store is shutting down).
    #[error("mailbox writer stopped")]
    WriterStopped,
}

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> Self {
        match &err {
            sqlx::Error::Database(db) if db.is_unique_violation() => Self::Conflict,
            _ => Self::Database(err),
        }
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(err: rusqlite::Error) -> Self {
        match &err {
            rusqlite::Error::SqliteFailure(e, _)
                if e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                    || e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY =>
            {
                Self::Conflict
            }
            _ => Self::Sqlite(err),
        }
    }
}

/// Shorthand for store results.
pub type StoreResult<T> = Result<T, StoreError>;

/// Secret bytes read from the store (TOTP secrets, server secrets): zeroized, no `Debug`.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct SecretBytes(Vec<u8>);

impl SecretBytes {
    /// Wraps bytes.
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }

    /// The bytes.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

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
    /// Deletes a device (and by cascade its sessions). Returns whether it existed.
    fn delete_device(
        &self,
        account: &Id,
        device: &Id,
    ) -> impl Future<Output = StoreResult<bool>> + Send;
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

/// Server-wide secrets (pepper, JWT key, OPAQUE server setup).
pub trait SecretStore {
    /// Inserts `value` under `name` unless present, then returns the stored value, so several
    /// instances starting at once converge on one secret.
    fn secret_or_insert(
        &self,
        name: &str,
        value: &[u8],
    ) -> impl Future<Output = StoreResult<SecretBytes>> + Send;
}

/// Which pool a one-time key belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum OneTimeKeyKind {
    /// One-time X25519 prekey (`OPK`, unsigned).
    X25519,
    /// One-time ML-KEM-1024 prekey (`PQOPK`, signed).
    Kem,
}

impl OneTimeKeyKind {
    /// The value of the `kind` column.
    pub fn code(self) -> i16 {
        match self {
            Self::X25519 => 1,
            Self::Kem => 2,
        }
    }
}

/// A public key with its id and (for signed keys) the owner's signature, all opaque to the relay
/// apart from their lengths (checked by the HTTP layer, PROTOCOL.md §11.11).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicPreKey {
    /// Key id chosen by the owner.
    pub key_id: u32,
    /// Public key bytes.
    pub public_key: Vec<u8>,
    /// Identity signature (empty for one-time X25519 prekeys).
    pub signature: Vec<u8>,
}

/// One key upload of a device (`PUT /v1/keys`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyUpload {
    /// Registration id (replaces the stored one).
    pub registration_id: Option<u32>,
    /// Signed X25519 prekey (replaces the stored one).
    pub signed_prekey: Option<PublicPreKey>,
    /// Signed last-resort ML-KEM prekey (replaces the stored one).
    pub last_resort_kem_prekey: Option<PublicPreKey>,
    /// One-time X25519 prekeys to append.
    pub one_time_prekeys: Vec<PublicPreKey>,
    /// One-time ML-KEM prekeys to append.
    pub one_time_kem_prekeys: Vec<PublicPreKey>,
}

/// What [`KeyStore::upload_keys`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum UploadOutcome {
    /// Everything was stored.
    Stored,
    /// The device has no medium-term keys yet and the upload does not carry all three of
    /// registration id, signed prekey and last-resort KEM prekey. Nothing was stored.
    MissingBaseKeys,
    /// The upload would take a one-time pool over the per-device maximum. Nothing was stored.
    TooManyKeys,
    /// The device does not exist (any more). Nothing was stored.
    DeviceGone,
}

/// How many keys the relay holds for a device.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KeyCounts {
    /// One-time X25519 prekeys left.
    pub one_time_prekeys: u64,
    /// One-time ML-KEM prekeys left.
    pub one_time_kem_prekeys: u64,
    /// Whether the signed prekey and last-resort KEM prekey are stored.
    pub has_base_keys: bool,
}

/// The medium-term keys of a device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BaseKeys {
    /// Registration id.
    pub registration_id: u32,
    /// Signed X25519 prekey.
    pub signed_prekey: PublicPreKey,
    /// Signed last-resort ML-KEM prekey.
    pub last_resort_kem_prekey: PublicPreKey,
}

/// Everything the relay holds for a device's key directory (for the digest).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeviceKeySet {
    /// Medium-term keys, if uploaded.
    pub base: Option<BaseKeys>,
    /// One-time X25519 prekeys, ascending id.
    pub one_time_prekeys: Vec<PublicPreKey>,
    /// One-time ML-KEM prekeys, ascending id.
    pub one_time_kem_prekeys: Vec<PublicPreKey>,
}

/// The keys handed out by one claim.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimedKeys {
    /// The medium-term keys.
    pub base: BaseKeys,
    /// The one-time X25519 prekey claimed (now deleted), if any was left.
    pub one_time_prekey: Option<PublicPreKey>,
    /// The one-time ML-KEM prekey claimed (now deleted), or `None` when the pool was empty and
    /// the last-resort key (in `base`) must be used.
    pub one_time_kem_prekey: Option<PublicPreKey>,
}

/// The key directory.
pub trait KeyStore {
    /// Applies an upload atomically: replaces the given medium-term keys and appends the
    /// one-time keys, unless a pool would exceed `max_one_time` keys per kind. A one-time key id
    /// already stored for the device (per kind) is [`StoreError::Conflict`]. Nothing is stored
    /// unless everything is.
    fn upload_keys(
        &self,
        account: &Id,
        device: u32,
        upload: &KeyUpload,
        max_one_time: u32,
        now: i64,
    ) -> impl Future<Output = StoreResult<UploadOutcome>> + Send;
    /// Counts a device's keys.
    fn key_counts(
        &self,
        account: &Id,
        device: u32,
    ) -> impl Future<Output = StoreResult<KeyCounts>> + Send;
    /// Everything stored for a device.
    fn device_key_set(
        &self,
        account: &Id,
        device: u32,
    ) -> impl Future<Output = StoreResult<DeviceKeySet>> + Send;
    /// Claims one one-time X25519 prekey and one one-time KEM prekey of the device atomically
    /// (each is handed out at most once, whatever the concurrency). `None` if the device has no
    /// medium-term keys.
    fn claim_keys(
        &self,
        account: &Id,
        device: u32,
    ) -> impl Future<Output = StoreResult<Option<ClaimedKeys>>> + Send;
}

/// An envelope to queue for one device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewEnvelope {
    /// Recipient account.
    pub account: Id,
    /// Recipient device number.
    pub device: u32,
    /// Client-chosen id (unique per recipient device; resending the same id with the same bytes
    /// is a no-op).
    pub message_id: Id,
    /// The opaque envelope (or, in a multi-recipient send, the per-device header).
    pub content: Vec<u8>,
}

/// A payload shared by every envelope of a multi-recipient send, stored once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SharedPayload {
    /// First 16 bytes of SHA-256(payload).
    pub id: Id,
    /// The payload.
    pub payload: Vec<u8>,
}

/// One send: envelopes for one or more devices, stored all-or-nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// The authenticated sender (account, device number), `None` for sealed sends.
    pub source: Option<(Id, u32)>,
    /// The shared payload of a multi-recipient send.
    pub shared_payload: Option<SharedPayload>,
    /// The envelopes.
    pub envelopes: Vec<NewEnvelope>,
    /// Coarse receive time.
    pub received_at: i64,
    /// Expiry time.
    pub expires_at: i64,
    /// Device lists to check, inside the transaction that stores the delivery (under the lock
    /// of the recipient devices), before anything else: if one differs from the account's
    /// current devices the delivery is refused with [`DeliveryOutcome::Devices`]. Empty: no
    /// check (the envelopes' devices must still exist, else [`DeliveryOutcome::DeviceGone`]).
    pub device_checks: Vec<DeviceListCheck>,
}

/// The device list a sender addressed for one recipient account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceListCheck {
    /// The recipient account.
    pub account: Id,
    /// The device numbers the send has an envelope for.
    pub listed: std::collections::BTreeSet<u32>,
    /// The sending device itself, on a send to one's own account (it needs no envelope).
    pub exclude: Option<u32>,
}

impl DeviceListCheck {
    /// Compares the listed devices with an account's current device numbers and the number its
    /// next device will get. `None` when they match.
    pub fn compare(&self, next: u32, current: &[u32]) -> Option<DeviceMismatch> {
        let current: std::collections::BTreeSet<u32> = current
            .iter()
            .copied()
            .filter(|n| Some(*n) != self.exclude)
            .collect();
        let missing: Vec<u32> = current.difference(&self.listed).copied().collect();
        let mut extra = Vec::new();
        let mut removed = Vec::new();
        for n in self.listed.difference(&current) {
            // A number below `next` that is not current was used by a device that is now gone
            // (the sender's own device, listed on a self-send, is simply extra).
            if *n >= 1 && *n < next && Some(*n) != self.exclude {
                removed.push(*n);
            } else {
                extra.push(*n);
            }
        }
        if missing.is_empty() && extra.is_empty() && removed.is_empty() {
            return None;
        }
        Some(DeviceMismatch {
            account_id: self.account,
            missing_devices: missing,
            extra_devices: extra,
            removed_devices: removed,
        })
    }
}

/// Per-device queue limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueLimits {
    /// Most envelopes queued per device.
    pub max_messages: u64,
    /// Most bytes queued per device (content plus shared payload, counted per envelope).
    pub max_bytes: u64,
}

/// Where one envelope of a delivery ended up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoredEnvelope {
    /// Recipient account.
    pub account: Id,
    /// Recipient device number.
    pub device: u32,
    /// Server sequence number.
    pub seq: i64,
    /// Whether it was already queued (an idempotent resend): nothing new was stored.
    pub duplicate: bool,
    /// For a new envelope: the highest sequence number queued for the device just before it
    /// (`None`: the queue was empty). A socket that has delivered everything up to this number
    /// can deliver the new envelope without reading the queue (see `ws/conn.rs`).
    pub prev_seq: Option<i64>,
}

/// What [`MailboxStore::deliver`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeliveryOutcome {
    /// Every envelope is queued (new or duplicate).
    Stored(Vec<StoredEnvelope>),
    /// A device's queue is full (messages or bytes). Nothing was stored.
    QueueFull {
        /// Account.
        account: Id,
        /// Device number.
        device: u32,
    },
    /// A message id was already used for this device with different bytes. Nothing was stored.
    IdConflict {
        /// Account.
        account: Id,
        /// Device number.
        device: u32,
    },
    /// A checked device list differs from the account's devices (see
    /// [`Delivery::device_checks`]). Nothing was stored.
    Devices(Vec<DeviceMismatch>),
    /// A checked account does not exist. Nothing was stored.
    UnknownAccount(Id),
    /// A recipient device does not exist (any more). Nothing was stored.
    DeviceGone {
        /// Account.
        account: Id,
        /// Device number.
        device: u32,
    },
}

/// A queued envelope as read back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueuedEnvelope {
    /// Server sequence number (increasing in queue order).
    pub seq: i64,
    /// Client-chosen id.
    pub message_id: Id,
    /// The authenticated sender, `None` for sealed sends.
    pub source: Option<(Id, u32)>,
    /// The envelope bytes (or the per-device header of a multi-recipient send).
    pub content: Vec<u8>,
    /// The shared payload of a multi-recipient send.
    pub shared_payload: Option<Vec<u8>>,
    /// Coarse receive time.
    pub received_at: i64,
    /// Expiry time.
    pub expires_at: i64,
}

/// How full a device's queue is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Envelopes queued.
    pub messages: u64,
    /// Bytes queued.
    pub bytes: u64,
}

/// Mailboxes and sealed-sender access keys.
pub trait MailboxStore {
    /// Stores a delivery all-or-nothing, respecting `limits` per device (checked under a lock of
    /// each recipient device, so concurrent sends cannot overshoot). A message id that was
    /// already stored for a device, or stored and acked within its TTL, is a duplicate (same
    /// bytes) or a conflict (other bytes). Returns once the delivery is committed (group commit:
    /// concurrent writes share one transaction, see `store/batch.rs`).
    fn deliver(
        &self,
        delivery: Delivery,
        limits: QueueLimits,
    ) -> impl Future<Output = StoreResult<DeliveryOutcome>> + Send;
    /// Queues a delivery for the next group commit and returns as soon as it is queued (in the
    /// order of the calls); the [`PendingWrite`] resolves like [`Self::deliver`] once committed.
    fn queue_delivery(
        &self,
        delivery: Delivery,
        limits: QueueLimits,
    ) -> impl Future<Output = StoreResult<PendingWrite<DeliveryCommit>>> + Send;
    /// Reads up to `limit` unexpired envelopes of a device with `seq > after_seq`, in order.
    fn fetch_envelopes(
        &self,
        account: &Id,
        device: u32,
        after_seq: i64,
        limit: u32,
        now: i64,
    ) -> impl Future<Output = StoreResult<Vec<QueuedEnvelope>>> + Send;
    /// Deletes the device's envelopes with these message ids (unknown ids are ignored), keeping
    /// a tombstone of each until it would have expired. Returns how many were deleted.
    fn ack_ids(
        &self,
        account: &Id,
        device: u32,
        ids: &[Id],
    ) -> impl Future<Output = StoreResult<u64>> + Send;
    /// Queues [`Self::ack_ids`] for the next group commit; resolves once committed.
    fn queue_ack_ids(
        &self,
        account: &Id,
        device: u32,
        ids: Vec<Id>,
    ) -> impl Future<Output = StoreResult<PendingWrite<u64>>> + Send;
    /// Deletes the device's envelopes with `seq <= up_to` (keeping tombstones like
    /// [`Self::ack_ids`]). Returns how many were deleted.
    fn ack_up_to(
        &self,
        account: &Id,
        device: u32,
        up_to: i64,
    ) -> impl Future<Output = StoreResult<u64>> + Send;
    /// Counts a device's queue.
    fn queue_stats(
        &self,
        account: &Id,
        device: u32,
    ) -> impl Future<Output = StoreResult<QueueStats>> + Send;
    /// Deletes envelopes and ack tombstones with `expires_at <= now` and shared payloads nothing
    /// refers to. Returns how many envelopes were deleted.
    fn purge_expired_mail(&self, now: i64) -> impl Future<Output = StoreResult<u64>> + Send;
    /// Sets (or clears) the hash of the account's unidentified-access key. Returns whether the
    /// account exists.
    fn set_access_key_hash(
        &self,
        account: &Id,
        hash: Option<&[u8]>,
    ) -> impl Future<Output = StoreResult<bool>> + Send;
    /// The hash of the account's unidentified-access key, if the account exists and has one.
    fn access_key_hash(
        &self,
        account: &Id,
    ) -> impl Future<Output = StoreResult<Option<Vec<u8>>>> + Send;
}

/// Everything the relay needs from storage.
pub trait Store:
    AccountStore
    + DeviceStore
    + KeyStore
    + MailboxStore
    + TokenStore
    + AuthStateStore
    + SecretStore
    + VaultStore
    + ChannelStore
    + TicketStore
    + BlobMetaStore
    + AccountIdentityStore
    + CredentialStore
    + Clone
    + Send
    + Sync
    + 'static
{
    /// Checks the database answers (readiness).
    fn ping(&self) -> impl Future<Output = StoreResult<()>> + Send;
    /// Names every table with rows (used by tests that dump the database).
    fn table_names(&self) -> impl Future<Output = StoreResult<Vec<String>>> + Send;
}

/// How the SQL stores open a write transaction.
///
/// SQLite's default `BEGIN` is deferred: a transaction that reads before it writes takes the
/// write lock only at its first write, and if another connection committed in between it fails
/// at once with `SQLITE_BUSY` (the busy timeout cannot help, its snapshot is stale). `BEGIN
/// IMMEDIATE` takes the write lock up front and waits for it under the busy timeout, so
/// concurrent writers queue instead of failing. Postgres' `BEGIN` needs nothing more.
pub trait TxBegin {
    /// The statement that starts a transaction.
    const BEGIN: &'static str;
}

impl TxBegin for sqlx::Sqlite {
    const BEGIN: &'static str = "BEGIN IMMEDIATE";
}

impl TxBegin for sqlx::Postgres {
    const BEGIN: &'static str = "BEGIN";
}
