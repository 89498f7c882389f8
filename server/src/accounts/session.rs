//! The `Auth` extractor (a valid access token of a live session) and the client-address key.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;

pub use crate::accounts::tokens::Session;
use crate::accounts::tokens::{self, TokenError};
use crate::app::state::AppState;
use crate::db::Store;
use crate::error::AppError;

/// An authenticated request: a valid, unexpired access token whose session (device and refresh
/// family) still exists, checked against the store on every request so that unlink, logout and
/// account deletion take effect at once.
#[derive(Debug, Clone, Copy)]
pub struct Auth(pub Session);

impl<S: Store> FromRequestParts<AppState<S>> for Auth {
    type Rejection = AppError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState<S>,
    ) -> Result<Self, Self::Rejection> {
        let header = parts.headers.get(AUTHORIZATION).ok_or_else(|| {
            AppError::unauthorized("missing_token", "an access token is required")
        })?;
        let token = header
            .to_str()
            .ok()
            .and_then(|h| h.strip_prefix("Bearer "))
            .ok_or_else(|| AppError::unauthorized("invalid_token", "expected a Bearer token"))?;
        let session =
            tokens::verify_access(&state.secrets().jwt_key, token.trim()).map_err(|e| match e {
                TokenError::Expired => {
                    AppError::unauthorized("token_expired", "the access token has expired")
                }
                _ => AppError::unauthorized("invalid_token", "the access token is not valid"),
            })?;
        let valid = state
            .store()
            .session_valid(&session.account, &session.device, &session.family)
            .await?;
        if !valid {
            return Err(AppError::unauthorized(
                "session_revoked",
                "this session is no longer valid",
            ));
        }
        Ok(Self(session))
    }
}

/// The client address as a keyed hash (hex), or `None` when unknown (e.g. in-process tests).
///
/// The address itself is never stored or logged; the HMAC key is random per process.
#[derive(Debug, Clone)]
pub struct ClientKey(pub Option<String>);

impl<S: Store> FromRequestParts<AppState<S>> for ClientKey {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState<S>,
    ) -> Result<Self, Self::Rejection> {
        Ok(Self(client_ip(parts, state.settings().trusted_proxy).map(
            |ip| {
                hex::encode(
                    state
                        .addr_key()
                        .hmac(b"client-addr", ip.to_string().as_bytes()),
                )
            },
        )))
    }
}

pub(crate) fn client_ip(parts: &Parts, trusted_proxy: bool) -> Option<IpAddr> {
    if trusted_proxy {
        // The proxy appends the peer it saw; the left-most entry is the original client.
        let forwarded = parts
            .headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .and_then(|v| v.trim().parse::<IpAddr>().ok());
        if forwarded.is_some() {
            return forwarded;
        }
    }
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ci| ci.0.ip())
}
