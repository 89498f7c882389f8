//! The vault over HTTP: item writes, reads, history, incremental sync and usage
//! (`docs/PROTOCOL.md` §11.16). The size rules of the blobs are [`crate::vault`].

use serde::{Deserialize, Serialize};

use super::Id;

/// The body of a 409 from the vault.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VaultConflictBody {
    /// The error.
    pub error: VaultConflictDetail,
}

/// Code, message and the current revision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VaultConflictDetail {
    /// `revision_conflict`, `item_deleted` or `item_not_deleted`.
    pub code: String,
    /// Human-readable message.
    pub message: String,
    /// The item's current revision (0 if it does not exist).
    pub current_revision: u64,
    /// Whether the current revision is a deletion tombstone.
    pub deleted: bool,
}

/// Body of `PUT …/items/{item_id}` and `POST …/items/{item_id}/restore`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ItemWriteRequest {
    /// The revision the client last saw: 0 to create, else the current revision.
    pub expected_revision: u64,
    /// Encrypted body, base64: a padding bucket plus 41 bytes, at most `max_body_bytes`.
    #[cfg_attr(feature = "openapi", schema(schema_with = super::schema::base64_nonempty))]
    pub body: String,
    /// Encrypted metadata, base64: a padding bucket plus 41 bytes, at most `max_meta_bytes`.
    #[cfg_attr(feature = "openapi", schema(schema_with = super::schema::base64_nonempty))]
    pub meta: String,
}

/// Reply to a successful write (put, delete, restore).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ItemWritten {
    /// The item.
    pub item_id: Id,
    /// Its new revision.
    pub revision: u64,
    /// Whether it is now soft-deleted.
    pub deleted: bool,
    /// Sync token of this change.
    pub sync_token: u64,
    /// Coarse creation time (Unix seconds).
    pub created_at: i64,
    /// Coarse time of this change (Unix seconds).
    pub updated_at: i64,
}

/// An item with its current blobs (`null` when it is soft-deleted).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ItemBody {
    /// The item.
    pub item_id: Id,
    /// Current revision.
    pub revision: u64,
    /// Whether the current revision is a deletion tombstone.
    pub deleted: bool,
    /// Sync token of the item's last change.
    pub sync_token: u64,
    /// Coarse creation time.
    pub created_at: i64,
    /// Coarse time of the last change.
    pub updated_at: i64,
    /// Encrypted body, base64, or `null` for a tombstone.
    pub body: Option<String>,
    /// Encrypted metadata, base64, or `null` for a tombstone.
    pub meta: Option<String>,
}

/// One revision in an item's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RevisionBody {
    /// Revision number.
    pub revision: u64,
    /// Whether this revision is a deletion tombstone.
    pub deleted: bool,
    /// Encrypted body, base64 (`null` for a tombstone).
    pub body: Option<String>,
    /// Encrypted metadata, base64 (`null` for a tombstone).
    pub meta: Option<String>,
    /// Coarse time the revision was written.
    pub created_at: i64,
}

/// Reply to `GET …/items/{item_id}/history`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HistoryReply {
    /// Revisions after `after`, oldest first.
    pub revisions: Vec<RevisionBody>,
    /// Pass as `after` to get the next page; `null` when this page is the last.
    pub next_after: Option<u64>,
}

/// Reply to `GET /v1/vault/{collection_id}/changes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ChangesReply {
    /// Items changed after `since`, in change order, each in its current state.
    pub changes: Vec<ItemBody>,
    /// Pass as `since` next time (equals `since` when nothing changed).
    pub sync_token: u64,
    /// Whether more changes are waiting (ask again at once with the new token).
    pub more: bool,
}

/// Reply to `GET /v1/vault/usage`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UsageReply {
    /// Items held (live and soft-deleted).
    pub items: u64,
    /// Bytes held (every stored revision).
    pub bytes: u64,
    /// The item quota.
    pub max_items: u64,
    /// The byte quota.
    pub max_bytes: u64,
}

/// Query of `DELETE …/items/{item_id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
#[serde(deny_unknown_fields)]
pub struct DeleteQuery {
    /// The current revision.
    pub expected_revision: u64,
}

/// Query of `GET …/history`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
#[serde(deny_unknown_fields)]
pub struct HistoryQuery {
    /// Only revisions above this one (default 0).
    pub after: Option<u64>,
    /// Page size (1..=`max_page`, default `max_page`).
    #[cfg_attr(feature = "openapi", param(minimum = 1))]
    pub limit: Option<u32>,
}

/// Query of `GET …/changes`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
#[serde(deny_unknown_fields)]
pub struct ChangesQuery {
    /// Sync token from the previous reply (0 or absent: from the beginning).
    pub since: Option<u64>,
    /// Page size (1..=`max_page`, default `max_page`).
    #[cfg_attr(feature = "openapi", param(minimum = 1))]
    pub limit: Option<u32>,
}
