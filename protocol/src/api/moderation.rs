//! Abuse reports, the review queue, sanctions and bans over HTTP
//! (`docs/PROTOCOL.md` §11.19, §16.9). The report's bytes are [`crate::franking`].

use serde::{Deserialize, Serialize};

use super::Id;

/// Reply to `GET /v1/franking/key`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FrankingKeyResponse {
    /// The current franking key `F`, base64 of its 33-byte encoding (§16.2).
    pub franking_key: String,
    /// Earlier keys whose secrets the relay still holds for reports, same encoding.
    pub previous: Vec<String>,
}

/// Body of `POST /v1/reports`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ReportRequest {
    /// The report body (§16.2), base64.
    #[cfg_attr(feature = "openapi", schema(schema_with = super::schema::base64_nonempty))]
    pub report: String,
    /// The channel's read token, for a channel destination.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(schema_with = super::schema::token_32))]
    pub read_token: Option<String>,
}

/// Reply (202) to `POST /v1/reports`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReportResponse {
    /// The report id (§16.6).
    pub report_id: Id,
    /// Whether the sender tag verified: the relay knows who sent it.
    pub attributed: bool,
}

/// One report in the review queue (`GET /v1/admin/reports`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReportSummary {
    /// The report id.
    pub report_id: Id,
    /// The reporting account.
    pub reporter: Id,
    /// The reported sender account.
    pub sender_account: Id,
    /// The reported sender's device number.
    pub sender_device: u32,
    /// The destination (§16.2), base64 of 21 bytes.
    pub destination: String,
    /// The message's relay time.
    pub message_time: i64,
    /// Whether the sender tag verified.
    pub attributed: bool,
    /// `pending` or `decided`.
    pub status: String,
    /// The decision, once decided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<String>,
    /// When it was filed.
    pub created_at: i64,
}

/// A page of the review queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReportPage {
    /// The reports, oldest first.
    pub reports: Vec<ReportSummary>,
    /// The cursor of the next page (`after=`), if there may be more.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// `GET /v1/admin/reports/{id}`: the report opened for the reviewer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReportDetail {
    /// What the queue shows.
    #[serde(flatten)]
    pub summary: ReportSummary,
    /// The revealed content (the §13.1 content bytes), base64.
    pub content: String,
    /// The message's `seq`.
    pub message_seq: u64,
}

/// Body of `POST /v1/admin/reports/{id}/decision` and `POST /v1/admin/bans/accounts`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct DecisionRequest {
    /// `dismiss`, `warn`, `suspend` or `ban` (account bans: `suspend` or `ban`).
    pub decision: String,
    /// When a suspension or ban lifts by itself (Unix seconds); none: never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
    /// For suspend/ban: `keep` (default) or `purge` (§11.19).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mail: Option<String>,
    /// The account (account bans only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_id: Option<Id>,
}

/// Reply to a decision or an account ban.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DecisionResponse {
    /// The decision applied.
    pub decision: String,
    /// The sanctioned account, for suspend/ban.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_id: Option<Id>,
    /// Sessions revoked.
    pub sessions_revoked: u64,
    /// Undelivered logged-in sends deleted by `mail: purge`.
    pub envelopes_purged: u64,
    /// Blobs expired by `mail: purge`.
    pub blobs_purged: u64,
}

/// A sanction in force (`GET /v1/admin/bans/accounts`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SanctionView {
    /// The account.
    pub account_id: Id,
    /// `suspended` or `banned`.
    pub kind: String,
    /// When it lifts (none: never).
    pub expires_at: Option<i64>,
    /// When it was imposed.
    pub created_at: i64,
}

/// Body of `POST /v1/admin/bans/addresses`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct AddressBanRequest {
    /// An IPv4 or IPv6 address, or a prefix `addr/len` whose length is the configured one.
    pub address: String,
    /// When the ban lifts by itself (Unix seconds); none: never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
}

/// An address ban as the relay keeps it: the keyed hash of the prefix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AddressBanView {
    /// Hex of the HMAC of the prefix.
    pub prefix_hash: String,
    /// When it lifts (none: never).
    pub expires_at: Option<i64>,
    /// When it was imposed.
    pub created_at: i64,
}
