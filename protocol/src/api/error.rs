//! The error body every relay error answers with (`docs/PROTOCOL.md` §11.2):
//! `{"error": {"code": "snake_case_code", "message": "…"}}`, plus the device lists of a 409
//! `mismatched_devices` / 410 `stale_devices` (§11.12).

use serde::{Deserialize, Serialize};

use super::Id;

/// How the device list of a send differs from one recipient account's devices.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeviceMismatch {
    /// The recipient account.
    pub account_id: Id,
    /// Devices of the account that the send has no envelope for.
    pub missing_devices: Vec<u32>,
    /// Device numbers in the send that the account never had.
    pub extra_devices: Vec<u32>,
    /// Device numbers in the send whose devices were removed.
    pub removed_devices: Vec<u32>,
}

/// The JSON error body (documented in the OpenAPI document).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// Code and message of an error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorDetail {
    /// Stable snake_case code.
    pub code: String,
    /// Human-readable message.
    pub message: String,
    /// Only on 409 `mismatched_devices` / 410 `stale_devices`: the differences per account.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mismatches: Option<Vec<DeviceMismatch>>,
}
