//! The key directory's store: signed, last-resort and one-time prekeys per device (PROTOCOL.md
//! §11.11), with their records.

use std::future::Future;

use crate::db::error::StoreResult;
use crate::ids::Id;

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
