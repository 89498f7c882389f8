//! The admin feature's store trait and records: admin API keys (by hash) and the aggregate
//! figures the overview shows.

use std::future::Future;

use crate::db::error::StoreResult;
use crate::ids::Id;

/// One admin API key as stored: never the key itself, only its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminKeyRecord {
    /// Random id, shown to operators (hex) and used to revoke the key.
    pub id: Id,
    /// Operator-chosen label (e.g. "ops laptop"); not secret.
    pub label: String,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds of the last successful use (to the minute), if any.
    pub last_used_at: Option<i64>,
    /// Unix seconds after which the key no longer works; `None`: never expires.
    pub expires_at: Option<i64>,
    /// Unix seconds of revocation; `None`: not revoked.
    pub revoked_at: Option<i64>,
}

impl AdminKeyRecord {
    /// Whether the key authenticates at `now`: not revoked and not expired.
    pub fn is_active(&self, now: i64) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|at| now < at)
    }
}

/// Aggregate counts over the whole relay, for the admin overview. No row identifies anyone: only
/// sums and counts leave the database.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AdminCounts {
    /// Accounts.
    pub accounts: u64,
    /// Devices (over all accounts).
    pub devices: u64,
    /// Envelopes queued and not yet expired, over all mailboxes.
    pub queued_envelopes: u64,
    /// Devices with at least one unexpired queued envelope.
    pub devices_with_mail: u64,
    /// Padded bytes of all blobs (pending and complete), from the per-account quota counters.
    pub blob_bytes: u64,
    /// Bytes of all vault items, from the per-account quota counters.
    pub vault_bytes: u64,
}

/// Storage of admin keys and the overview's counts.
pub trait AdminStore {
    /// Stores a new key (`key_hash` is the SHA-256 of its 32 bytes).
    fn insert_admin_key(
        &self,
        record: &AdminKeyRecord,
        key_hash: &[u8; 32],
    ) -> impl Future<Output = StoreResult<()>> + Send;

    /// The key whose hash is `key_hash`, revoked and expired ones included.
    fn admin_key_by_hash(
        &self,
        key_hash: &[u8; 32],
    ) -> impl Future<Output = StoreResult<Option<AdminKeyRecord>>> + Send;

    /// Records a use of key `id` at `now`; writes at most once a minute per key.
    fn touch_admin_key(&self, id: &Id, now: i64) -> impl Future<Output = StoreResult<()>> + Send;

    /// Every key (revoked and expired ones included), oldest first.
    fn list_admin_keys(&self) -> impl Future<Output = StoreResult<Vec<AdminKeyRecord>>> + Send;

    /// Revokes key `id` at `now`. Returns `false` if no such key exists; revoking a revoked key
    /// keeps its first revocation time and returns `true`.
    fn revoke_admin_key(&self, id: &Id, now: i64)
    -> impl Future<Output = StoreResult<bool>> + Send;

    /// The relay-wide counts of the overview at `now`.
    fn admin_counts(&self, now: i64) -> impl Future<Output = StoreResult<AdminCounts>> + Send;
}
