//! Username lookup (`docs/PROTOCOL.md` §11.4): a logged-in client resolves a username a user
//! typed to the account id. The relay hashes the name with its pepper, answers, and forgets it;
//! neither the name nor the lookup is stored or logged.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use haven_protocol::api::usernames::{LookupRequest, LookupResponse};
use haven_ratelimit::Quota;

use crate::accounts::session::Auth;
use crate::accounts::username;
use crate::app::state::AppState;
use crate::db::Store;
use crate::error::{ApiJson, AppError, ErrorBody};

/// Resolves a username to its account id.
#[utoipa::path(post, path = "/v1/usernames/lookup", tag = "accounts", security(("bearer" = [])),
    request_body = LookupRequest,
    responses((status = 200, body = LookupResponse),
              (status = 400, description = "`invalid_username`", body = ErrorBody),
              (status = 404, description = "`username_not_found`", body = ErrorBody),
              (status = 429, description = "too many lookups", body = ErrorBody)))]
pub async fn lookup<S: Store>(
    State(state): State<AppState<S>>,
    Auth(session): Auth,
    ApiJson(req): ApiJson<LookupRequest>,
) -> Result<Json<LookupResponse>, AppError> {
    // Limits enumeration: lookups per requesting account per minute, shared across instances.
    crate::limits::hit_shared(
        &state,
        &crate::limits::keyed(&state, "usernames", &session.account),
        Quota::new(
            state.settings().keys.username_lookups_per_minute,
            Duration::from_secs(60),
        ),
    )
    .await?;
    let hash = username::hash(&state.secrets().username_pepper, &req.username)
        .map_err(|e| AppError::bad_request("invalid_username", e.to_string()))?;
    match state.store().account_by_username_hash(&hash).await? {
        Some(account_id) => Ok(Json(LookupResponse { account_id })),
        None => Err(AppError::not_found(
            "username_not_found",
            "no account has this username",
        )),
    }
}
