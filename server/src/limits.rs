//! Rate limits (login failures per account and per client address; per-route request limits).
//!
//! TEMPORARY: the `haven-ratelimit` crate is not on `main` yet; until it is merged these checks
//! allow everything. They are wired to it in the next step.

use crate::auth::ClientKey;
use crate::error::AppError;
use crate::state::AppState;
use crate::store::Store;

/// Refuses (429) when the account behind `limit_key` is locked after too many failures.
pub(crate) async fn check_login<S: Store>(
    _state: &AppState<S>,
    _limit_key: &[u8],
) -> Result<(), AppError> {
    Ok(())
}

/// Refuses (429) when the client address has too many recent failures.
pub(crate) async fn check_client<S: Store>(
    _state: &AppState<S>,
    _client: &ClientKey,
) -> Result<(), AppError> {
    Ok(())
}

/// Counts one failed login (or wrong TOTP code) against the account and the client address.
pub(crate) async fn record_failure<S: Store>(
    _state: &AppState<S>,
    _limit_key: &[u8],
    _client: &ClientKey,
) -> Result<(), AppError> {
    Ok(())
}

/// A successful login clears the account's failure count.
pub(crate) async fn record_success<S: Store>(
    _state: &AppState<S>,
    _limit_key: &[u8],
) -> Result<(), AppError> {
    Ok(())
}
