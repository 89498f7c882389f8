//! Listing and renaming devices (`docs/PROTOCOL.md` §11.9).

use serde::{Deserialize, Serialize};

use super::Id;

/// One device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeviceBody {
    /// Device id.
    pub device_id: Id,
    /// Small per-account device number (stable, never reused).
    pub device_number: u32,
    /// Public identity key, base64.
    pub identity_key: String,
    /// Encrypted name, base64, if set.
    pub name: Option<String>,
    /// Creation time, Unix seconds.
    pub created_at: i64,
    /// Whether this is the device making the request.
    pub current: bool,
}

/// Reply to `GET /v1/devices`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeviceList {
    /// The account's devices, oldest first.
    pub devices: Vec<DeviceBody>,
}

/// Body of `PUT /v1/devices/{device_id}/name`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RenameRequest {
    /// New encrypted name, base64 (1–1024 bytes), or `null` to clear it.
    #[cfg_attr(feature = "openapi", schema(schema_with = super::schema::device_name_or_null))]
    pub name: Option<String>,
}
