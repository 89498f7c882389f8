//! Channels: append-only logs of opaque entries guarded by read and write capability tokens
//! (`docs/PROTOCOL.md` §11.15).

use std::fmt;

use serde::{Deserialize, Serialize};

use super::Id;
use super::messages::FrankingBody;

/// Body of `POST /v1/channels`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateChannelRequest {
    /// Lifetime in seconds (60 up to the configured maximum, which is also the default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_secs: Option<u64>,
}

/// Reply to `POST /v1/channels`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreateChannelResponse {
    /// The channel id.
    pub channel_id: Id,
    /// Read capability: base64url of 32 random bytes, no padding. Shown once.
    pub read_token: String,
    /// Write capability: base64url of 32 random bytes, no padding. Shown once.
    pub write_token: String,
    /// When the channel and its entries are deleted, Unix seconds.
    pub expires_at: i64,
}

// The tokens are capabilities: never printed.
impl fmt::Debug for CreateChannelResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CreateChannelResponse")
            .field("channel_id", &self.channel_id)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// Body of `POST /v1/channels/{channel_id}/entries`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct AppendRequest {
    /// The opaque entry, base64 (1 to `max_entry_bytes` bytes).
    pub entry: String,
    /// The sender's franking commitment `c` for this entry (PROTOCOL.md §16.3, destination
    /// `0x02 || channel id || 0`), base64 of 32 bytes; absent from unfranked appends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(schema_with = super::schema::bytes_32))]
    pub franking_commitment: Option<String>,
}

/// Reply to an append.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AppendResponse {
    /// The entry's sequence number in the channel.
    pub seq: i64,
}

/// Query of `GET /v1/channels/{channel_id}/entries`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
#[serde(deny_unknown_fields)]
pub struct EntriesQuery {
    /// Return entries with a sequence number greater than this (default 0: from the start).
    #[serde(default)]
    pub after: u64,
    /// Page size, 1 to `page_limit` (default 100).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", param(minimum = 1))]
    pub limit: Option<u32>,
}

/// One entry as returned by the history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EntryBody {
    /// Sequence number.
    pub seq: i64,
    /// The opaque entry, base64.
    pub entry: String,
    /// When it was appended, Unix seconds.
    pub created_at: i64,
    /// The entry's franking (§16.4): its commitment and the relay's stamp over the channel
    /// destination, `seq` and `created_at`; `null` when the writer sent no commitment.
    #[serde(default)]
    pub franking: Option<FrankingBody>,
}

/// A page of history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EntriesPage {
    /// Entries, oldest first.
    pub entries: Vec<EntryBody>,
    /// Pass as `after` to read the next page (the last returned seq, or the given `after`).
    pub next_after: i64,
    /// Whether more entries follow.
    pub more: bool,
}
