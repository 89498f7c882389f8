//! Mailboxes and sealed delivery: sends, fetch, ack and the unidentified-access key
//! (`docs/PROTOCOL.md` §11.12).

use std::fmt;

use serde::{Deserialize, Serialize};

use super::Id;

/// One device's envelope in a send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct EnvelopeBody {
    /// Recipient device number.
    pub device_number: u32,
    /// The opaque envelope, base64.
    #[cfg_attr(feature = "openapi", schema(schema_with = super::schema::base64_nonempty))]
    pub content: String,
    /// The sender's franking commitment `c` for this envelope (PROTOCOL.md §16.3), base64 of
    /// 32 bytes; absent for ephemeral sends and for clients from before franking.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(schema_with = super::schema::bytes_32))]
    pub franking_commitment: Option<String>,
}

/// The franking of a delivered envelope (PROTOCOL.md §16.4): the sender's commitment and the
/// relay's delivery stamp over it, the destination, `seq` and `received_at`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct FrankingBody {
    /// The commitment `c`, base64 of 32 bytes.
    pub commitment: String,
    /// The stamp `s`, base64 of 32 bytes.
    pub stamp: String,
}

/// Body of `POST /v1/messages/{account_id}` and `…/sealed`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SendBody {
    /// Client-chosen id (32 hex digits), the idempotency key.
    pub message_id: Id,
    /// One envelope per device of the recipient.
    pub envelopes: Vec<EnvelopeBody>,
    /// Ephemeral class (never stored; dropped unless the device is connected).
    #[serde(default)]
    pub ephemeral: bool,
    /// The recipient's access key, base64 of 16 bytes, if not given in the
    /// `Unidentified-Access-Key` header: required on a sealed send; on a logged-in send it is
    /// needed for an ephemeral send to another account and for a 409/410 naming devices.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(schema_with = super::schema::access_key))]
    pub access_key: Option<String>,
}

// The access key authorises sends to the account: never printed.
impl fmt::Debug for SendBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SendBody")
            .field("message_id", &self.message_id)
            .field("envelopes", &self.envelopes.len())
            .field("ephemeral", &self.ephemeral)
            .finish_non_exhaustive()
    }
}

/// One device's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeviceResult {
    /// Device number.
    pub device_number: u32,
    /// `queued`, or `accepted` (ephemeral: handed on if the device is connected, else dropped;
    /// the same answer either way).
    pub status: String,
    /// Server sequence number when queued.
    pub seq: Option<i64>,
    /// Whether the envelope had already been queued by an earlier identical send.
    pub duplicate: bool,
}

/// Reply to a send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SendResponse {
    /// One entry per device, ascending device number.
    pub devices: Vec<DeviceResult>,
}

/// One device header of a multi-recipient send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct HeaderBody {
    /// Recipient device number.
    pub device_number: u32,
    /// The per-device header, base64.
    #[cfg_attr(feature = "openapi", schema(schema_with = super::schema::base64_nonempty))]
    pub header: String,
    /// The sender's franking commitment for this device's envelope (PROTOCOL.md §16.3, §16.9),
    /// base64 of 32 bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(schema_with = super::schema::bytes_32))]
    pub franking_commitment: Option<String>,
}

/// One recipient of a multi-recipient send.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RecipientBody {
    /// Recipient account.
    pub account_id: Id,
    /// The recipient's unidentified-access key, base64 (16 bytes).
    #[cfg_attr(feature = "openapi", schema(schema_with = super::schema::access_key))]
    pub access_key: String,
    /// One header per device of the recipient.
    pub devices: Vec<HeaderBody>,
}

// The access key authorises sends to the account: never printed.
impl fmt::Debug for RecipientBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecipientBody")
            .field("account_id", &self.account_id)
            .field("devices", &self.devices)
            .finish_non_exhaustive()
    }
}

/// Body of `POST /v1/messages/multi`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct MultiSendBody {
    /// Client-chosen id (32 hex digits), used for every recipient device.
    pub message_id: Id,
    /// The shared payload, base64, stored once.
    #[cfg_attr(feature = "openapi", schema(schema_with = super::schema::base64_nonempty))]
    pub payload: String,
    /// The recipients.
    pub recipients: Vec<RecipientBody>,
}

/// One recipient's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RecipientResult {
    /// Recipient account.
    pub account_id: Id,
    /// Its devices' results.
    pub devices: Vec<DeviceResult>,
}

/// Reply to `POST /v1/messages/multi`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MultiSendResponse {
    /// One entry per recipient, in request order.
    pub recipients: Vec<RecipientResult>,
}

/// Query of `GET /v1/messages`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
#[serde(deny_unknown_fields)]
pub struct FetchQuery {
    /// Only envelopes with a larger sequence number (default 0: from the start).
    #[serde(default)]
    pub after: i64,
    /// Page size (default and maximum `mail.max_fetch`).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", param(minimum = 1))]
    pub limit: Option<u32>,
}

/// The sender of an envelope sent by a logged-in device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SourceBody {
    /// Sender account.
    pub account_id: Id,
    /// Sender device number.
    pub device_number: u32,
}

/// A queued envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct QueuedBody {
    /// Server sequence number.
    pub seq: i64,
    /// Client-chosen id.
    pub message_id: Id,
    /// The sender, `null` for sealed sends.
    pub source: Option<SourceBody>,
    /// The envelope (or the per-device header of a multi-recipient send), base64.
    pub content: String,
    /// The shared payload of a multi-recipient send, base64.
    pub payload: Option<String>,
    /// Receive time, rounded down to `mail.received_at_granularity_secs`.
    pub received_at: i64,
    /// Expiry time.
    pub expires_at: i64,
    /// The envelope's franking (§16.4), `null` when the sender sent no commitment.
    #[serde(default)]
    pub franking: Option<FrankingBody>,
}

/// Reply to `GET /v1/messages`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FetchResponse {
    /// Envelopes in queue order.
    pub envelopes: Vec<QueuedBody>,
    /// Whether the page was full (more may follow after the last `seq`).
    pub more: bool,
}

/// Body of `POST /v1/messages/ack`: exactly one of the two fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct AckBody {
    /// Delete the envelopes with these message ids.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_ids: Option<Vec<Id>>,
    /// Delete every envelope with `seq <= up_to_seq`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub up_to_seq: Option<i64>,
}

/// Reply to `POST /v1/messages/ack`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AckResponse {
    /// How many envelopes were deleted.
    pub deleted: u64,
}

/// Body of `PUT /v1/account/access-key`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct AccessKeyBody {
    /// The unidentified-access key, base64 of exactly 16 bytes, or `null` to remove it (then
    /// no sealed send reaches the account).
    #[cfg_attr(feature = "openapi", schema(schema_with = super::schema::access_key_or_null))]
    pub access_key: Option<String>,
}

// The access key authorises sends to the account: never printed.
impl fmt::Debug for AccessKeyBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessKeyBody")
            .field("set", &self.access_key.is_some())
            .finish()
    }
}
