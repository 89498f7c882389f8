//! Registration, login (OPAQUE), token refresh, fresh authentication, password change and
//! account recovery (`docs/PROTOCOL.md` §11.5–§11.7).
//!
//! OPAQUE messages are standard base64 of the `opaque-ke` serialisations; their sizes are listed
//! in §11.3.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::Id;

/// A device being added (at registration or when logging in on a new device).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NewDeviceBody {
    /// The device's public identity key, base64 (1–2048 bytes, opaque to the relay).
    #[cfg_attr(feature = "openapi", schema(schema_with = super::schema::identity_key))]
    pub identity_key: String,
    /// The device's encrypted name, base64 (1–1024 bytes, opaque), optional.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(schema_with = super::schema::device_name))]
    pub name: Option<String>,
}

/// Tokens issued by registration, login and refresh.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TokenResponse {
    /// The account.
    pub account_id: Id,
    /// The device this session belongs to.
    pub device_id: Id,
    /// The device's small per-account number (the SDK's `DeviceAddress::device_id`).
    pub device_number: u32,
    /// JWT access token (HS256), sent as `Authorization: Bearer …`.
    pub access_token: String,
    /// Single-use refresh token (base64url of 32 bytes, no padding).
    #[cfg_attr(feature = "openapi", schema(schema_with = super::schema::token_32))]
    pub refresh_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Access-token lifetime in seconds.
    pub expires_in: u64,
}

// Tokens are credentials: never printed.
impl fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenResponse")
            .field("account_id", &self.account_id)
            .field("device_id", &self.device_id)
            .field("device_number", &self.device_number)
            .field("token_type", &self.token_type)
            .field("expires_in", &self.expires_in)
            .finish_non_exhaustive()
    }
}

/// Body of `POST /v1/register/start`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RegisterStartRequest {
    /// OPAQUE `RegistrationRequest`, base64 (32 bytes).
    #[cfg_attr(feature = "openapi", schema(schema_with = super::schema::opaque_registration_request))]
    pub registration_request: String,
}

/// Reply to `POST /v1/register/start`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RegisterStartResponse {
    /// Pass back to `register/finish` within 60 seconds.
    pub registration_id: Id,
    /// The new account's id: the OPAQUE credential identifier (its 16 raw bytes).
    pub account_id: Id,
    /// OPAQUE `RegistrationResponse`, base64 (64 bytes).
    pub registration_response: String,
}

/// Body of `POST /v1/register/finish`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RegisterFinishRequest {
    /// From `register/start`.
    pub registration_id: Id,
    /// OPAQUE `RegistrationUpload`, base64 (192 bytes).
    #[cfg_attr(feature = "openapi", schema(schema_with = super::schema::opaque_registration_upload))]
    pub registration_upload: String,
    /// Optional username (3–32 of `a-z 0-9 . _ -`, ASCII case-insensitive); only its keyed hash
    /// is stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(schema_with = super::schema::username))]
    pub username: Option<String>,
    /// The first device.
    pub device: NewDeviceBody,
}

/// Body of `POST /v1/login/start`: exactly one of `username` and `account_id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct LoginStartRequest {
    /// Log in by username.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(schema_with = super::schema::username))]
    pub username: Option<String>,
    /// Log in by account id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_id: Option<Id>,
    /// OPAQUE `CredentialRequest` (KE1), base64 (96 bytes).
    #[cfg_attr(feature = "openapi", schema(schema_with = super::schema::opaque_credential_request))]
    pub credential_request: String,
}

/// Reply to `POST /v1/login/start`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LoginStartResponse {
    /// Pass back to `login/finish` within 60 seconds.
    pub login_id: Id,
    /// OPAQUE `CredentialResponse` (KE2), base64 (320 bytes).
    pub credential_response: String,
}

/// Body of `POST /v1/login/finish`: exactly one of `device_id` and `device`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct LoginFinishRequest {
    /// From `login/start`.
    pub login_id: Id,
    /// OPAQUE `CredentialFinalization` (KE3), base64 (64 bytes).
    #[cfg_attr(feature = "openapi", schema(schema_with = super::schema::opaque_credential_finalization))]
    pub credential_finalization: String,
    /// Current TOTP code, required when TOTP is enabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(schema_with = super::schema::totp_code))]
    pub totp_code: Option<String>,
    /// Log in as this existing device of the account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<Id>,
    /// Or add this new device (subject to the device limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<NewDeviceBody>,
}

/// Body of `POST /v1/token/refresh`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    /// The current refresh token.
    #[cfg_attr(feature = "openapi", schema(schema_with = super::schema::token_32))]
    pub refresh_token: String,
}

// The refresh token is a credential: never printed.
impl fmt::Debug for RefreshRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RefreshRequest").finish_non_exhaustive()
    }
}

/// The request header that carries a fresh-authentication proof (§11.6.1), on the routes that
/// need one: unlinking a device, deleting the account, disabling TOTP, changing the password and
/// setting the recovery code.
pub const FRESH_AUTH_HEADER: &str = "haven-fresh-auth";

/// Seconds a fresh-authentication proof stays valid.
pub const FRESH_AUTH_TTL_SECS: u64 = 300;

/// Body of `POST /v1/account/reauth/start` (bearer): an OPAQUE login of the session's own
/// account. The reply is a [`LoginStartResponse`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ReauthStartRequest {
    /// OPAQUE `CredentialRequest` (KE1), base64 (96 bytes).
    #[cfg_attr(feature = "openapi", schema(schema_with = super::schema::opaque_credential_request))]
    pub credential_request: String,
}

/// Body of `POST /v1/account/reauth/finish` (bearer).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ReauthFinishRequest {
    /// From `reauth/start`.
    pub login_id: Id,
    /// OPAQUE `CredentialFinalization` (KE3), base64 (64 bytes).
    #[cfg_attr(feature = "openapi", schema(schema_with = super::schema::opaque_credential_finalization))]
    pub credential_finalization: String,
    /// Current TOTP code, required when TOTP is enabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(schema_with = super::schema::totp_code))]
    pub totp_code: Option<String>,
}

/// Reply to `POST /v1/account/reauth/finish`: a single-use proof of a fresh authentication.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FreshAuthResponse {
    /// The proof (base64url of 32 bytes, no padding), sent in the `Haven-Fresh-Auth` header
    /// together with the same session's access token.
    #[cfg_attr(feature = "openapi", schema(schema_with = super::schema::token_32))]
    pub fresh_auth: String,
    /// Seconds the proof stays valid.
    pub expires_in: u64,
}

// The proof is a credential: never printed.
impl fmt::Debug for FreshAuthResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FreshAuthResponse")
            .field("expires_in", &self.expires_in)
            .finish_non_exhaustive()
    }
}

/// Body of the first round of an OPAQUE re-registration of a logged-in account:
/// `POST /v1/account/password/start` and `POST /v1/account/recovery/start` (bearer).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CredentialStartRequest {
    /// OPAQUE `RegistrationRequest`, base64 (32 bytes).
    #[cfg_attr(feature = "openapi", schema(schema_with = super::schema::opaque_registration_request))]
    pub registration_request: String,
}

/// Reply to `password/start` and `recovery/start`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CredentialStartResponse {
    /// OPAQUE `RegistrationResponse`, base64 (64 bytes).
    pub registration_response: String,
}

/// Body of `POST /v1/account/password/finish` and `POST /v1/account/recovery/finish` (bearer
/// and a fresh-authentication proof).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CredentialFinishRequest {
    /// OPAQUE `RegistrationUpload`, base64 (192 bytes).
    #[cfg_attr(feature = "openapi", schema(schema_with = super::schema::opaque_registration_upload))]
    pub registration_upload: String,
}

/// Body of `POST /v1/recover/start`: exactly one of `username` and `account_id`, an OPAQUE login
/// with the recovery code, and the first round of the new password's registration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RecoverStartRequest {
    /// Recover by username.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(schema_with = super::schema::username))]
    pub username: Option<String>,
    /// Recover by account id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_id: Option<Id>,
    /// OPAQUE `CredentialRequest` (KE1) made with the recovery code, base64 (96 bytes).
    #[cfg_attr(feature = "openapi", schema(schema_with = super::schema::opaque_credential_request))]
    pub credential_request: String,
    /// OPAQUE `RegistrationRequest` made with the new password, base64 (32 bytes).
    #[cfg_attr(feature = "openapi", schema(schema_with = super::schema::opaque_registration_request))]
    pub registration_request: String,
}

/// Reply to `POST /v1/recover/start`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RecoverStartResponse {
    /// Pass back to `recover/finish` within 60 seconds.
    pub login_id: Id,
    /// OPAQUE `CredentialResponse` (KE2) for the recovery credential, base64 (320 bytes).
    pub credential_response: String,
    /// OPAQUE `RegistrationResponse` for the new password, base64 (64 bytes).
    pub registration_response: String,
}

/// Body of `POST /v1/recover/finish`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RecoverFinishRequest {
    /// From `recover/start`.
    pub login_id: Id,
    /// OPAQUE `CredentialFinalization` (KE3) of the recovery login, base64 (64 bytes).
    #[cfg_attr(feature = "openapi", schema(schema_with = super::schema::opaque_credential_finalization))]
    pub credential_finalization: String,
    /// OPAQUE `RegistrationUpload` of the new password, base64 (192 bytes).
    #[cfg_attr(feature = "openapi", schema(schema_with = super::schema::opaque_registration_upload))]
    pub registration_upload: String,
    /// Current TOTP code, required when TOTP is enabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(schema_with = super::schema::totp_code))]
    pub totp_code: Option<String>,
}
