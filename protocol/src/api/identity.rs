//! Account identity on the relay (`docs/PROTOCOL.md` §11.18, §15): the account's signed device
//! list, link tokens and provisioning boxes (how an existing device approves a new one).

use std::fmt;

use serde::{Deserialize, Serialize};

use super::Id;
use super::auth::NewDeviceBody;

/// Body of `PUT /v1/account/device-list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct DeviceListUpload {
    /// The signed device list (§15.2), base64.
    #[cfg_attr(feature = "openapi", schema(schema_with = super::schema::base64_nonempty))]
    pub list: String,
    /// Accept a list signed by another account key than the stored list's (an account
    /// identity change, which every contact will see).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub replace_account_key: bool,
}

/// Reply to `GET /v1/accounts/{account_id}/device-list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeviceListReply {
    /// The signed device list (§15.2), base64, exactly as the account uploaded it.
    pub list: String,
    /// Its version (also inside the list; here so a client can skip an unchanged list).
    pub version: u64,
}

/// Reply to `POST /v1/devices/link-token`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LinkTokenReply {
    /// 32 random bytes, base64: lets one new device join this account, once.
    #[cfg_attr(feature = "openapi", schema(schema_with = super::schema::bytes_32))]
    pub link_token: String,
    /// Expiry, Unix seconds.
    pub expires: u64,
}

// The token admits a device to the account: never printed.
impl fmt::Debug for LinkTokenReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LinkTokenReply")
            .field("expires", &self.expires)
            .finish_non_exhaustive()
    }
}

/// Body of `POST /v1/devices/link`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct LinkDeviceRequest {
    /// The link token an existing device made (it reached this device end to end encrypted).
    #[cfg_attr(feature = "openapi", schema(schema_with = super::schema::bytes_32))]
    pub link_token: String,
    /// The new device.
    pub device: NewDeviceBody,
}

impl fmt::Debug for LinkDeviceRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LinkDeviceRequest")
            .field("device", &self.device)
            .finish_non_exhaustive()
    }
}

/// Reply to `POST /v1/provisioning`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ProvisioningCreated {
    /// The box's id (the capability to read it; shown by the new device in its code).
    pub id: Id,
    /// Expiry, Unix seconds.
    pub expires: u64,
}

/// Body of `PUT /v1/provisioning/{id}` and reply to `GET /v1/provisioning/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ProvisioningMessage {
    /// The provisioning ciphertext (§15.3), base64 (at most 16 KiB of bytes).
    #[cfg_attr(feature = "openapi", schema(schema_with = super::schema::base64_nonempty))]
    pub message: String,
}
