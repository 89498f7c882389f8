//! Sender certificates (PROTOCOL.md §5.1, §11.13): the relay vouches that an identity key belongs
//! to (account, device number) until an expiry. The layout is `haven_protocol::certificate`,
//! the one the SDK parses; the relay signs it with its Ed25519 key and knows nothing else of
//! the SDK's cryptography.

use axum::Json;
use axum::extract::State;
use ed25519_dalek::Signer as _;
use haven_protocol::api::certificate::{CertificateKeyResponse, CertificateResponse};
use haven_protocol::certificate::{CertificateBody, IDENTITY_KEY_LEN};

use crate::accounts::session::Auth;
use crate::app::state::AppState;
use crate::clock::now_secs;
use crate::db::Store;
use crate::error::{AppError, ErrorBody};
use crate::http::b64;

/// The public key that verifies sender certificates.
#[utoipa::path(get, path = "/v1/certificate/key", tag = "certificates",
    responses((status = 200, body = CertificateKeyResponse)))]
pub async fn key<S: Store>(State(state): State<AppState<S>>) -> Json<CertificateKeyResponse> {
    Json(CertificateKeyResponse {
        public_key: b64(state.secrets().certificate_key.verifying_key().as_bytes()),
    })
}

/// Issues a sender certificate for the calling device.
#[utoipa::path(post, path = "/v1/certificate", tag = "certificates", security(("bearer" = [])),
    responses((status = 200, body = CertificateResponse),
              (status = 401, description = "no valid session", body = ErrorBody),
              (status = 409, description = "`identity_key_unsupported`: the device's identity key is not 64 bytes", body = ErrorBody)))]
pub async fn issue<S: Store>(
    State(state): State<AppState<S>>,
    Auth(session): Auth,
) -> Result<Json<CertificateResponse>, AppError> {
    // Sealed sends from a sanctioned account cannot be recognised (they name no sender), so it
    // gets no sender certificate to seal them with.
    crate::moderation::routes::refuse_sanctioned(&state, &session.account).await?;
    let device = state
        .store()
        .device(&session.account, &session.device)
        .await?
        .ok_or_else(|| {
            AppError::unauthorized("session_revoked", "this session is no longer valid")
        })?;
    // The relay does not interpret the key; it only vouches for the bytes the device
    // registered, which must have the length of an SDK identity key.
    let identity_key: [u8; IDENTITY_KEY_LEN] =
        device.identity_key.as_slice().try_into().map_err(|_| {
            AppError::conflict(
                "identity_key_unsupported",
                "the device's identity key is not a 64-byte SDK identity key",
            )
        })?;
    let expires = now_secs().saturating_add(state.settings().keys.certificate_ttl_secs);
    let body = CertificateBody {
        account: *session.account.as_bytes(),
        device: device.number,
        identity_key,
        expires,
    };
    let signature = state
        .secrets()
        .certificate_key
        .sign(&body.signing_input())
        .to_bytes();
    Ok(Json(CertificateResponse {
        certificate: b64(&body.with_signature(&signature)),
        expires,
    }))
}
