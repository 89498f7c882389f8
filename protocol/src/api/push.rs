//! Content-free wake-ups for devices without a live socket (`docs/PROTOCOL.md` §18): the
//! relay's VAPID key, and registering, listing and removing a device's push endpoints.

use serde::{Deserialize, Serialize};

/// The only plaintext a Web Push or gateway notification carries (§18.4): 15 bytes, no sender,
/// no content, no count.
pub const WAKE_PAYLOAD: &[u8] = br#"{"type":"wake"}"#;

/// Most push endpoints one device may register (§18.2).
pub const MAX_ENDPOINTS_PER_DEVICE: usize = 5;

/// Longest Web Push endpoint URL, bytes.
pub const MAX_ENDPOINT_URL_LEN: usize = 1024;

/// Longest gateway `app_id`, characters (`[A-Za-z0-9._-]`).
pub const MAX_APP_ID_LEN: usize = 64;

/// Longest gateway `pushkey`, bytes.
pub const MAX_PUSHKEY_LEN: usize = 512;

/// Reply to `GET /v1/push/vapid`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VapidKeyBody {
    /// The relay's VAPID public key: the 65-byte uncompressed P-256 point, base64url without
    /// padding (what a browser's `applicationServerKey` takes).
    pub public_key: String,
}

/// Body of `POST /v1/push/endpoints`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum PushEndpointRequest {
    /// A Web Push subscription (RFC 8030 / RFC 8291), as a browser's `PushSubscription` gives it.
    WebPush {
        /// The push service URL (`https://`, at most 1024 bytes).
        #[cfg_attr(feature = "openapi", schema(pattern = "^https?://", max_length = 1024))]
        endpoint: String,
        /// The subscription's P-256 public key, 65 bytes uncompressed, base64url (no padding).
        #[cfg_attr(
            feature = "openapi",
            schema(pattern = "^[A-Za-z0-9_-]{86}[AEIMQUYcgkosw048]=?$")
        )]
        p256dh: String,
        /// The subscription's authentication secret, 16 bytes, base64url (no padding).
        #[cfg_attr(
            feature = "openapi",
            schema(pattern = "^[A-Za-z0-9_-]{21}[AQgw](==)?$")
        )]
        auth: String,
    },
    /// A device token relayed through the operator's push gateway (APNs, FCM, …).
    Gateway {
        /// The app the token belongs to, 1..=64 characters of `[A-Za-z0-9._-]`.
        #[cfg_attr(feature = "openapi", schema(pattern = "^[A-Za-z0-9._-]{1,64}$"))]
        app_id: String,
        /// The platform's device token, 1..=512 bytes without control characters.
        #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 512))]
        pushkey: String,
    },
}

/// Reply to `POST /v1/push/endpoints` (201).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PushEndpointCreated {
    /// The endpoint id: 16 random bytes, base64url without padding.
    pub id: String,
}

/// One registered endpoint, as listed (never its URL, keys or token).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PushEndpointBody {
    /// The endpoint id (base64url, 16 bytes).
    pub id: String,
    /// `web_push` or `gateway`.
    pub kind: String,
    /// Registration time, Unix seconds.
    pub created_at: i64,
}

/// Reply to `GET /v1/push/endpoints`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PushEndpointList {
    /// This device's endpoints, oldest first.
    pub endpoints: Vec<PushEndpointBody>,
}

/// What the relay POSTs to the operator's push gateway (§18.6).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayRequest {
    /// The notification.
    pub notification: GatewayNotification,
}

/// The notification of a [`GatewayRequest`]: a wake-up and the tokens to wake.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayNotification {
    /// Always `wake`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The devices to wake.
    pub devices: Vec<GatewayDevice>,
}

/// One device token in a [`GatewayNotification`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayDevice {
    /// The app id the device registered.
    pub app_id: String,
    /// The device token.
    pub pushkey: String,
}

/// The gateway's 200 reply: tokens the platform refused for good (the relay drops them).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayResponse {
    /// Refused pushkeys.
    #[serde(default)]
    pub rejected: Vec<String>,
}
