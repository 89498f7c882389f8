//! The admin API (`docs/PROTOCOL.md` §11.19): admin key management and the overview. Every
//! route needs `Authorization: Bearer hvn_admin_…`. Nothing here carries content, addresses or
//! any per-account figure: only counts, sums and latency percentiles.

use serde::{Deserialize, Serialize};

use super::Id;

/// Body of `POST /v1/admin/keys`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateAdminKeyRequest {
    /// A label for the key (1 to 100 bytes, no control characters), e.g. "ops laptop".
    pub label: String,
    /// Days until the key expires (1 to 3650); left out: the key never expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_days: Option<u32>,
}

/// One admin key as listed (never the key itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AdminKeyInfo {
    /// The key's id (used to revoke it).
    pub id: Id,
    /// Its label.
    pub label: String,
    /// Creation time, Unix seconds.
    pub created_at: i64,
    /// Last successful use, Unix seconds, to the minute; `null` if never used.
    pub last_used_at: Option<i64>,
    /// Expiry, Unix seconds; `null`: never expires.
    pub expires_at: Option<i64>,
    /// Revocation time, Unix seconds; `null`: not revoked.
    pub revoked_at: Option<i64>,
    /// Whether the key authenticates now (not revoked, not expired).
    pub active: bool,
}

/// Reply to `POST /v1/admin/keys` (201): the key, shown this once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreatedAdminKey {
    /// The new key's record.
    #[serde(flatten)]
    pub info: AdminKeyInfo,
    /// The key, `hvn_admin_` followed by 43 base64url characters (32 bytes). The relay keeps
    /// only its SHA-256 and cannot show it again.
    pub key: String,
}

/// Reply to `GET /v1/admin/keys`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AdminKeyList {
    /// Every key, revoked and expired ones included, oldest first.
    pub keys: Vec<AdminKeyInfo>,
}

/// Reply to `GET /v1/admin/overview`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AdminOverview {
    /// Server time of the snapshot, Unix seconds.
    pub generated_at: i64,
    /// Seconds since this relay process started.
    pub uptime_secs: u64,
    /// HTTP requests served by this process over the last 1, 5 and 15 minutes.
    pub requests: RequestWindows,
    /// WebSockets open on this instance now.
    pub live_sockets: u64,
    /// Relay-wide storage figures (from the database, so the same on every instance).
    pub storage: StorageFigures,
    /// Abuse reports waiting for review; `null` when the relay has no moderation feature.
    pub pending_reports: Option<u64>,
    /// Bans in force; `null` when the relay has no moderation feature.
    pub active_bans: Option<u64>,
}

/// The request figures of the three rolling windows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RequestWindows {
    /// The last minute.
    pub last_1m: RequestWindow,
    /// The last 5 minutes.
    pub last_5m: RequestWindow,
    /// The last 15 minutes.
    pub last_15m: RequestWindow,
}

/// Request counts and latency percentiles over one window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RequestWindow {
    /// The window's length in seconds (60, 300 or 900).
    pub window_secs: u64,
    /// Every request answered in the window.
    pub total: u64,
    /// Answers with a 2xx status.
    pub status_2xx: u64,
    /// Answers with a 4xx status.
    pub status_4xx: u64,
    /// Answers with a 5xx status.
    pub status_5xx: u64,
    /// Median latency, milliseconds (upper bound of its histogram bin); `null` without requests.
    pub p50_ms: Option<f64>,
    /// 95th percentile latency, milliseconds; `null` without requests.
    pub p95_ms: Option<f64>,
    /// 99th percentile latency, milliseconds; `null` without requests.
    pub p99_ms: Option<f64>,
}

/// Relay-wide counts and sums.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StorageFigures {
    /// Accounts.
    pub accounts: u64,
    /// Devices over all accounts.
    pub devices: u64,
    /// Envelopes queued (unexpired) over all mailboxes.
    pub queued_envelopes: u64,
    /// Devices with at least one queued envelope.
    pub devices_with_mail: u64,
    /// Padded bytes of all blobs.
    pub blob_bytes: u64,
    /// Bytes of all vault items.
    pub vault_bytes: u64,
}
