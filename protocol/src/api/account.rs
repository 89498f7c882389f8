//! TOTP management and the account export (`docs/PROTOCOL.md` §11.8, §11.9).

use std::fmt;

use serde::{Deserialize, Serialize};

use super::Id;

/// Reply to `POST /v1/account/totp/setup`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TotpSetupResponse {
    /// The secret, base32 (for manual entry).
    pub secret: String,
    /// `otpauth://totp/Haven:<account_id>?…` for QR codes.
    pub otpauth_uri: String,
}

// The secret is the second factor: never printed.
impl fmt::Debug for TotpSetupResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TotpSetupResponse").finish_non_exhaustive()
    }
}

/// Body of TOTP verify and disable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct TotpCodeRequest {
    /// The 6-digit code.
    #[cfg_attr(feature = "openapi", schema(schema_with = super::schema::totp_code))]
    pub code: String,
}

/// The account part of an export.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ExportAccount {
    /// Account id.
    pub account_id: Id,
    /// HMAC-SHA256(pepper, username), base64, if the account has a username.
    pub username_hash: Option<String>,
    /// Serialized OPAQUE registration record, base64.
    pub opaque_registration_record: String,
    /// Serialized OPAQUE registration record of the recovery code, base64, if one is set.
    #[serde(default)]
    pub opaque_recovery_record: Option<String>,
    /// Whether a TOTP secret is stored (the secret itself is not exported, so a stolen access
    /// token cannot be turned into a second factor).
    pub totp_secret_stored: bool,
    /// Whether TOTP is enabled.
    pub totp_enabled: bool,
    /// Last accepted TOTP time step.
    pub totp_last_step: Option<i64>,
    /// Creation time.
    pub created_at: i64,
}

/// A refresh token in an export (only its hash is stored).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ExportRefreshToken {
    /// SHA-256 of the token, base64.
    pub token_hash: String,
    /// Creation time.
    pub created_at: i64,
    /// Expiry time.
    pub expires_at: i64,
    /// When it was spent.
    pub used_at: Option<i64>,
}

/// A session (refresh family) in an export.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ExportSession {
    /// Family id.
    pub family_id: Id,
    /// Device.
    pub device_id: Id,
    /// Whether it was revoked.
    pub revoked: bool,
    /// Creation time.
    pub created_at: i64,
    /// Its refresh tokens.
    pub refresh_tokens: Vec<ExportRefreshToken>,
}

/// A device in an export.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ExportDevice {
    /// Device id.
    pub device_id: Id,
    /// Device number.
    pub device_number: u32,
    /// Public identity key, base64.
    pub identity_key: String,
    /// Encrypted name, base64.
    pub name: Option<String>,
    /// Creation time.
    pub created_at: i64,
}

/// One vault item in an export (its blobs are read with the vault's history route).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ExportVaultItem {
    /// Collection id.
    pub collection_id: Id,
    /// Item id.
    pub item_id: Id,
    /// Current revision.
    pub revision: u64,
    /// Whether it is soft-deleted.
    pub deleted: bool,
    /// Coarse creation time.
    pub created_at: i64,
    /// Coarse time of the last change.
    pub updated_at: i64,
    /// Bytes stored for it, every revision.
    pub bytes: u64,
}

/// Everything the relay stores about an account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AccountExport {
    /// Always `haven-relay-export/v1`.
    pub format: String,
    /// Export time.
    pub exported_at: i64,
    /// The account row.
    pub account: ExportAccount,
    /// Devices.
    pub devices: Vec<ExportDevice>,
    /// Sessions and their refresh tokens.
    pub sessions: Vec<ExportSession>,
    /// The vault's items (metadata only; the encrypted blobs of every revision are read with
    /// `GET /v1/vault/{collection_id}/items/{item_id}/history`).
    pub vault: Vec<ExportVaultItem>,
}
