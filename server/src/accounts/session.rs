//! The `Auth` extractor: a valid access token of a live session.

use std::future::Future;

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;

use crate::accounts::tokens;
pub use crate::accounts::tokens::Session;
use crate::accounts::tokens::TokenError;
use crate::db::error::StoreResult;
use crate::error::AppError;
use crate::ids::Id;
use crate::secrets::Key32;

/// An authenticated request: a valid, unexpired access token whose session (device and refresh
/// family) still exists, checked against the store on every request so that unlink, logout and
/// account deletion take effect at once.
#[derive(Debug, Clone, Copy)]
pub struct Auth(pub Session);

/// What the [`Auth`] extractor needs of the application state: the token key and whether a
/// session is still valid. Implemented by the application state, so this module does not depend
/// on the router.
pub trait SessionCheck: Send + Sync {
    /// The key access tokens are signed with.
    fn jwt_key(&self) -> &Key32;
    /// Whether the session (account, device, token family) is still valid.
    fn session_valid(
        &self,
        account: &Id,
        device: &Id,
        family: &Id,
    ) -> impl Future<Output = StoreResult<bool>> + Send;
}

impl<St: SessionCheck> FromRequestParts<St> for Auth {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &St) -> Result<Self, Self::Rejection> {
        let header = parts.headers.get(AUTHORIZATION).ok_or_else(|| {
            AppError::unauthorized("missing_token", "an access token is required")
        })?;
        let token = header
            .to_str()
            .ok()
            .and_then(|h| h.strip_prefix("Bearer "))
            .ok_or_else(|| AppError::unauthorized("invalid_token", "expected a Bearer token"))?;
        let session =
            tokens::verify_access(state.jwt_key(), token.trim()).map_err(|e| match e {
                TokenError::Expired => {
                    AppError::unauthorized("token_expired", "the access token has expired")
                }
                _ => AppError::unauthorized("invalid_token", "the access token is not valid"),
            })?;
        let valid = state
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
