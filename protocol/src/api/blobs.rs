//! Blobs (attachments and diary media) over HTTP (`docs/PROTOCOL.md` §11.17); the padded sizes
//! they must have are [`crate::padding`].

use serde::{Deserialize, Serialize};

use super::Id;

/// `POST /v1/blobs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateBlobRequest {
    /// Exact blob size in bytes: a valid padded attachment size.
    pub size: u64,
    /// Lifetime in seconds (default `blobs.default_ttl_secs`, at most `blobs.max_ttl_secs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_secs: Option<u64>,
}

/// A blob's metadata as the owner sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BlobInfo {
    /// Blob id.
    pub blob_id: Id,
    /// Exact size in bytes.
    pub size: u64,
    /// Size of every part but the last.
    pub part_size: u64,
    /// Number of parts.
    pub part_count: u64,
    /// `pending` or `complete`.
    pub state: String,
    /// Creation time.
    pub created_at: i64,
    /// Expiry time.
    pub expires_at: i64,
    /// Pending uploads: the parts received (local) or reported (S3) so far.
    pub parts_received: Vec<u64>,
}

/// `POST /v1/blobs/{id}/parts`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PartUrlsRequest {
    /// Part numbers (0-based).
    pub parts: Vec<u64>,
}

/// Where and how to upload one part.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PartUrl {
    /// Part number (0-based).
    pub part: u64,
    /// Always `PUT`.
    pub method: String,
    /// Absolute (S3, presigned) or relative to the relay's base URL (local backend).
    pub url: String,
    /// Exact body length the URL accepts.
    pub len: u64,
    /// When the URL stops working.
    pub expires_at: u64,
}

/// Answer to `POST /v1/blobs/{id}/parts`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PartUrls {
    /// One per requested part.
    pub urls: Vec<PartUrl>,
}

/// `PUT /v1/blobs/{id}/parts/{n}`: the ETag S3 returned for a part uploaded with a presigned URL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PartReport {
    /// The `ETag` response header of the part upload.
    pub etag: String,
}

/// Answer to `GET /v1/blobs/{id}/download`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DownloadUrl {
    /// Absolute (S3, presigned) or relative to the relay's base URL (local backend).
    pub url: String,
    /// Blob size.
    pub size: u64,
    /// When the URL stops working.
    pub expires_at: u64,
}

/// Answer to `GET /v1/blobs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BlobList {
    /// The account's blobs, newest first (at most 1000).
    pub blobs: Vec<BlobInfo>,
    /// Padded bytes used.
    pub used_bytes: u64,
    /// Blobs stored.
    pub used_blobs: u64,
    /// `blobs.quota_bytes`.
    pub quota_bytes: u64,
    /// `blobs.max_blobs`.
    pub max_blobs: u64,
    /// `blobs.max_blob_bytes`.
    pub max_blob_bytes: u64,
}

/// Answer to a local part upload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PartStored {
    /// Part number.
    pub part: u64,
    /// Its ETag.
    pub etag: String,
}

/// `?token=` of the transfer routes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
#[serde(deny_unknown_fields)]
pub struct TokenQuery {
    /// The transfer token.
    pub token: String,
}
