//! The key directory: prekey upload, counts, digest and claimed bundles (`docs/PROTOCOL.md`
//! §11.11).

use serde::{Deserialize, Serialize};

use super::Id;

/// A signed public key (signed prekey, KEM prekeys).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SignedKeyBody {
    /// Key id chosen by the owner.
    pub key_id: u32,
    /// Public key, base64 (32 bytes for X25519, 1568 for ML-KEM-1024).
    #[cfg_attr(feature = "openapi", schema(schema_with = super::schema::directory_key))]
    pub public_key: String,
    /// Identity signature, base64 (64 bytes).
    #[cfg_attr(feature = "openapi", schema(schema_with = super::schema::bytes_64))]
    pub signature: String,
}

/// A one-time X25519 prekey.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct OneTimeKeyBody {
    /// Key id chosen by the owner.
    pub key_id: u32,
    /// Public key, base64 (32 bytes).
    #[cfg_attr(feature = "openapi", schema(schema_with = super::schema::bytes_32))]
    pub public_key: String,
    /// Identity signature, base64 (64 bytes, PROTOCOL.md §2.1): required in an upload (the
    /// relay checks it and keeps no copy); absent from claimed bundles.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(schema_with = super::schema::bytes_64))]
    pub signature: Option<String>,
}

/// Body of `PUT /v1/keys`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct KeyUploadRequest {
    /// Registration id (replaces the stored one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registration_id: Option<u32>,
    /// Signed X25519 prekey (replaces the stored one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(schema_with = super::schema::signed_x25519_key))]
    pub signed_prekey: Option<SignedKeyBody>,
    /// Signed last-resort ML-KEM-1024 prekey (replaces the stored one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(schema_with = super::schema::signed_kem_key))]
    pub last_resort_kem_prekey: Option<SignedKeyBody>,
    /// One-time X25519 prekeys to append.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub one_time_prekeys: Vec<OneTimeKeyBody>,
    /// Signed one-time ML-KEM-1024 prekeys to append.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[cfg_attr(feature = "openapi", schema(schema_with = super::schema::signed_kem_keys))]
    pub one_time_kem_prekeys: Vec<SignedKeyBody>,
}

/// Reply to `GET /v1/keys/counts`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct KeyCountsResponse {
    /// One-time X25519 prekeys left.
    pub one_time_prekeys: u64,
    /// One-time ML-KEM prekeys left.
    pub one_time_kem_prekeys: u64,
    /// Whether the signed prekey and last-resort KEM prekey are stored.
    pub has_base_keys: bool,
    /// True when either pool is below the low-stock threshold or the base keys are missing.
    pub low: bool,
}

/// Reply to `GET /v1/keys/digest`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct KeyDigestResponse {
    /// SHA-256 of the canonical encoding, base64 (32 bytes).
    pub digest: String,
}

/// One device's bundle as served by a claim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BundleBody {
    /// Device number.
    pub device_number: u32,
    /// Registration id.
    pub registration_id: u32,
    /// The device's identity key, base64.
    pub identity_key: String,
    /// Signed X25519 prekey.
    pub signed_prekey: SignedKeyBody,
    /// A one-time X25519 prekey, if any was left.
    pub one_time_prekey: Option<OneTimeKeyBody>,
    /// One-time ML-KEM prekey, or the last-resort one when none was left.
    pub kem_prekey: SignedKeyBody,
    /// Whether `kem_prekey` is the last-resort key.
    pub kem_prekey_last_resort: bool,
    /// The same bundle in the SDK's `PreKeyBundle` encoding (PROTOCOL.md §2.4), base64; `null`
    /// when the identity key is not a 64-byte SDK identity key.
    pub bundle: Option<String>,
}

/// Reply to `GET /v1/keys/{account}` and `GET /v1/keys/{account}/{device}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BundlesResponse {
    /// The account.
    pub account_id: Id,
    /// One bundle per device that has keys, ascending device number.
    pub bundles: Vec<BundleBody>,
}
