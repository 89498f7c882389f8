//! The vault's storage trait and row types (`docs/PROTOCOL.md` §11.16).
//!
//! Items are addressed by (account, collection, item); the relay sees only opaque ciphertext
//! (body and metadata), revision numbers and its own coarse timestamps. Every write is one
//! transaction that first bumps the account's change sequence, so writers of one account are
//! serialised and sequence numbers (the sync tokens) become visible in increasing order.

use std::future::Future;

use crate::db::error::StoreResult;
use crate::ids::Id;

/// Which item a vault operation is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VaultKey {
    /// Owning account (from the access token, never from the request).
    pub account: Id,
    /// Client-chosen collection id.
    pub collection: Id,
    /// Client-chosen item id.
    pub item: Id,
}

/// Per-account limits checked inside the write transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VaultQuota {
    /// Most items (live or soft-deleted) an account may hold.
    pub max_items: u64,
    /// Most bytes (body + metadata of every stored revision) an account may hold.
    pub max_bytes: u64,
}

/// The two opaque blobs of one revision.
#[derive(Clone, Copy, Debug)]
pub struct VaultBlobs<'a> {
    /// Encrypted body.
    pub body: &'a [u8],
    /// Encrypted metadata.
    pub meta: &'a [u8],
}

impl VaultBlobs<'_> {
    /// Bytes this revision counts against the quota.
    pub fn size(&self) -> u64 {
        (self.body.len() as u64).saturating_add(self.meta.len() as u64)
    }
}

/// The head of an item after a successful write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VaultHead {
    /// Current revision (1 for a new item).
    pub revision: i64,
    /// Whether the current revision is a deletion tombstone.
    pub deleted: bool,
    /// The change sequence number of this write (a sync token).
    pub seq: i64,
    /// Coarse server time of creation.
    pub created_at: i64,
    /// Coarse server time of the last change.
    pub updated_at: i64,
}

/// Result of a vault write that did not fail in the database.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum VaultWriteOutcome {
    /// Written; the new head.
    Written(VaultHead),
    /// The expected revision is not the current one (0 = the item does not exist).
    RevisionMismatch {
        /// The current revision (0 if the item does not exist).
        current_revision: i64,
        /// Whether the current revision is a tombstone.
        deleted: bool,
    },
    /// No such item (delete and restore only).
    NotFound,
    /// The item is soft-deleted (update or delete); restore it first.
    ItemDeleted {
        /// The current revision (the tombstone).
        current_revision: i64,
    },
    /// Restore of an item that is not deleted.
    ItemNotDeleted {
        /// The current revision.
        current_revision: i64,
    },
    /// The account already has `max_items` items.
    ItemQuota,
    /// The write would take the account over `max_bytes`.
    ByteQuota,
}

/// An item with the blobs of its current revision (`None` for a tombstone).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VaultItemRecord {
    /// Item id.
    pub item_id: Id,
    /// Current revision.
    pub revision: i64,
    /// Whether the current revision is a tombstone.
    pub deleted: bool,
    /// Sequence number of the last change.
    pub seq: i64,
    /// Coarse creation time.
    pub created_at: i64,
    /// Coarse time of the last change.
    pub updated_at: i64,
    /// Encrypted body of the current revision.
    pub body: Option<Vec<u8>>,
    /// Encrypted metadata of the current revision.
    pub meta: Option<Vec<u8>>,
}

/// One stored revision of an item.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VaultRevisionRecord {
    /// Revision number.
    pub revision: i64,
    /// Encrypted body (`None` for a tombstone).
    pub body: Option<Vec<u8>>,
    /// Encrypted metadata (`None` for a tombstone).
    pub meta: Option<Vec<u8>>,
    /// Coarse server time the revision was written.
    pub created_at: i64,
}

/// A page of changes of one collection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VaultChanges {
    /// Items changed after the token, in sequence order (at most the requested limit).
    pub items: Vec<VaultItemRecord>,
    /// Highest sequence number of any item purged from the account; a client whose token is
    /// below it may have missed a deletion and must resync from the beginning.
    pub purged_seq: i64,
    /// The account's last committed sequence number when the page was read; every change up to
    /// it is either in `items` (or a later page) or belongs to another collection.
    pub last_seq: i64,
}

/// One item of an account's vault as listed in the data export (no blobs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VaultListing {
    /// Collection id.
    pub collection_id: Id,
    /// Item id.
    pub item_id: Id,
    /// Current revision.
    pub revision: i64,
    /// Whether it is soft-deleted.
    pub deleted: bool,
    /// Coarse creation time.
    pub created_at: i64,
    /// Coarse time of the last change.
    pub updated_at: i64,
    /// Bytes stored for it (every revision).
    pub bytes: i64,
}

/// An account's vault usage.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VaultUsage {
    /// Items (live and soft-deleted).
    pub items: i64,
    /// Bytes of every stored revision.
    pub bytes: i64,
    /// Last change sequence number.
    pub last_seq: i64,
}

/// The vault: per-account encrypted items with revisions, history, soft delete and sync.
pub trait VaultStore {
    /// Creates (`expected_revision == 0`) or updates (iff the current revision equals
    /// `expected_revision` and the item is not deleted) an item.
    fn vault_put(
        &self,
        key: &VaultKey,
        expected_revision: i64,
        blobs: VaultBlobs<'_>,
        now: i64,
        quota: VaultQuota,
    ) -> impl Future<Output = StoreResult<VaultWriteOutcome>> + Send;
    /// Soft-deletes an item: a tombstone revision `expected_revision + 1`.
    fn vault_delete(
        &self,
        key: &VaultKey,
        expected_revision: i64,
        now: i64,
    ) -> impl Future<Output = StoreResult<VaultWriteOutcome>> + Send;
    /// Restores a soft-deleted item with new blobs (encrypted by the client for revision
    /// `expected_revision + 1`).
    fn vault_restore(
        &self,
        key: &VaultKey,
        expected_revision: i64,
        blobs: VaultBlobs<'_>,
        now: i64,
        quota: VaultQuota,
    ) -> impl Future<Output = StoreResult<VaultWriteOutcome>> + Send;
    /// The item with the blobs of its current revision.
    fn vault_item(
        &self,
        key: &VaultKey,
    ) -> impl Future<Output = StoreResult<Option<VaultItemRecord>>> + Send;
    /// Up to `limit` revisions after `after_revision`, oldest first; `None` if no such item.
    fn vault_history(
        &self,
        key: &VaultKey,
        after_revision: i64,
        limit: u32,
    ) -> impl Future<Output = StoreResult<Option<Vec<VaultRevisionRecord>>>> + Send;
    /// Up to `limit` items of a collection changed after sequence number `since`.
    fn vault_changes(
        &self,
        account: &Id,
        collection: &Id,
        since: i64,
        limit: u32,
    ) -> impl Future<Output = StoreResult<VaultChanges>> + Send;
    /// Every item of the account (for the data export), by collection and item id.
    fn vault_listing(
        &self,
        account: &Id,
    ) -> impl Future<Output = StoreResult<Vec<VaultListing>>> + Send;
    /// The account's usage.
    fn vault_usage(&self, account: &Id) -> impl Future<Output = StoreResult<VaultUsage>> + Send;
    /// Purges (with all their revisions) items soft-deleted at or before `deleted_before`.
    /// Returns how many items were purged.
    fn vault_purge_deleted(
        &self,
        deleted_before: i64,
    ) -> impl Future<Output = StoreResult<u64>> + Send;
}
