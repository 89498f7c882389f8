//! Sender certificates over HTTP (`docs/PROTOCOL.md` §11.13); the certificate's bytes are
//! [`crate::certificate`].

use serde::{Deserialize, Serialize};

/// Reply to `GET /v1/certificate/key`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CertificateKeyResponse {
    /// The relay's Ed25519 public key, base64 (32 bytes): the SDK's trusted relay key.
    pub public_key: String,
}

/// Reply to `POST /v1/certificate`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CertificateResponse {
    /// The certificate (PROTOCOL.md §5.1, 158 bytes), base64.
    pub certificate: String,
    /// Its expiry, Unix seconds.
    pub expires: u64,
}
