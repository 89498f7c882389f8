//! TOTP management, account deletion and data export.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use haven_protocol::api::account::{
    AccountExport, ExportAccount, ExportDevice, ExportRefreshToken, ExportSession, ExportVaultItem,
    TotpCodeRequest, TotpSetupResponse,
};

use super::auth::totp_invalid;
use super::b64;
use crate::auth::{Auth, ClientKey, totp};
use crate::error::{ApiJson, AppError, ErrorBody};
use crate::ids::Id;
use crate::state::{AppState, now_i64, now_secs};
use crate::store::{AccountRecord, SecretBytes, Store};

async fn load_account<S: Store>(state: &AppState<S>, id: &Id) -> Result<AccountRecord, AppError> {
    // The session check already proved the account exists; a vanished row means a race with
    // deletion, which the client sees as a revoked session.
    state
        .store()
        .account(id)
        .await?
        .ok_or_else(|| AppError::unauthorized("session_revoked", "this session is no longer valid"))
}

/// Checks `code` against the account's secret and claims its time step (no replay); counts a
/// wrong code as a failed login attempt.
async fn check_code<S: Store>(
    state: &AppState<S>,
    account: &AccountRecord,
    client: &ClientKey,
    code: &str,
) -> Result<(), AppError> {
    let limit_key = state
        .secrets()
        .username_pepper
        .hmac(b"haven/login-limit/v1", account.id.as_bytes());
    crate::limits::check_login(state, &limit_key).await?;
    let secret = account
        .totp_secret
        .as_ref()
        .map(SecretBytes::expose)
        .unwrap_or_default();
    let claimed = match totp::matching_step(secret, code, now_secs()) {
        Some(step) => state.store().claim_totp_step(&account.id, step).await?,
        None => false,
    };
    if claimed {
        Ok(())
    } else {
        crate::limits::record_failure(state, &limit_key, client).await?;
        Err(totp_invalid())
    }
}

/// Creates a new (pending) TOTP secret; it takes effect once verified.
#[utoipa::path(post, path = "/v1/account/totp/setup", tag = "account", security(("bearer" = [])),
    responses((status = 200, body = TotpSetupResponse),
              (status = 401, description = "no valid session", body = ErrorBody),
              (status = 409, description = "`totp_already_enabled`", body = ErrorBody)))]
pub async fn totp_setup<S: Store>(
    State(state): State<AppState<S>>,
    Auth(session): Auth,
) -> Result<Json<TotpSetupResponse>, AppError> {
    let secret = totp::generate_secret();
    if !state
        .store()
        .set_totp_pending(&session.account, &secret)
        .await?
    {
        return Err(AppError::conflict(
            "totp_already_enabled",
            "TOTP is already enabled",
        ));
    }
    let (secret, otpauth_uri) = totp::provisioning(&secret, &session.account.to_hex());
    Ok(Json(TotpSetupResponse {
        secret,
        otpauth_uri,
    }))
}

/// Enables TOTP after checking a code from the pending secret.
#[utoipa::path(post, path = "/v1/account/totp/verify", tag = "account", security(("bearer" = [])),
    request_body = TotpCodeRequest,
    responses((status = 204, description = "TOTP enabled"),
              (status = 401, description = "`totp_invalid` or no valid session", body = ErrorBody),
              (status = 409, description = "`totp_not_set_up` or `totp_already_enabled`", body = ErrorBody)))]
pub async fn totp_verify<S: Store>(
    State(state): State<AppState<S>>,
    Auth(session): Auth,
    client: ClientKey,
    ApiJson(req): ApiJson<TotpCodeRequest>,
) -> Result<StatusCode, AppError> {
    let account = load_account(&state, &session.account).await?;
    if account.totp_enabled {
        return Err(AppError::conflict(
            "totp_already_enabled",
            "TOTP is already enabled",
        ));
    }
    if account.totp_secret.is_none() {
        return Err(AppError::conflict(
            "totp_not_set_up",
            "call totp/setup first",
        ));
    }
    check_code(&state, &account, &client, &req.code).await?;
    state.store().set_totp_enabled(&account.id, true).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Disables TOTP (requires a valid code).
#[utoipa::path(post, path = "/v1/account/totp/disable", tag = "account", security(("bearer" = [])),
    request_body = TotpCodeRequest,
    responses((status = 204, description = "TOTP disabled"),
              (status = 401, description = "`totp_invalid` or no valid session", body = ErrorBody),
              (status = 409, description = "`totp_not_enabled`", body = ErrorBody)))]
pub async fn totp_disable<S: Store>(
    State(state): State<AppState<S>>,
    Auth(session): Auth,
    client: ClientKey,
    ApiJson(req): ApiJson<TotpCodeRequest>,
) -> Result<StatusCode, AppError> {
    let account = load_account(&state, &session.account).await?;
    if !account.totp_enabled {
        return Err(AppError::conflict(
            "totp_not_enabled",
            "TOTP is not enabled",
        ));
    }
    check_code(&state, &account, &client, &req.code).await?;
    state.store().set_totp_enabled(&account.id, false).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Deletes the account and every row belonging to it.
#[utoipa::path(delete, path = "/v1/account", tag = "account", security(("bearer" = [])),
    responses((status = 204, description = "deleted"),
              (status = 401, description = "no valid session", body = ErrorBody)))]
pub async fn delete<S: Store>(
    State(state): State<AppState<S>>,
    Auth(session): Auth,
) -> Result<StatusCode, AppError> {
    // Blob objects live outside the database: delete them first. Whatever fails here is
    // removed later by the collector, which deletes the blobs of accounts that no longer exist.
    if let Some(blobs) = state.blobs()
        && let Err(err) = blobs.delete_account(state.store(), &session.account).await
    {
        tracing::warn!(%err, "deleting the account's blobs failed; left to the collector");
    }
    state.store().delete_account(&session.account).await?;
    tracing::info!("account deleted");
    crate::messaging::notify_sessions_changed(&state, session.account);
    Ok(StatusCode::NO_CONTENT)
}

/// Returns everything stored about the account as one JSON document.
#[utoipa::path(get, path = "/v1/account/export", tag = "account", security(("bearer" = [])),
    responses((status = 200, body = AccountExport),
              (status = 401, description = "no valid session", body = ErrorBody)))]
pub async fn export<S: Store>(
    State(state): State<AppState<S>>,
    Auth(session): Auth,
) -> Result<Json<AccountExport>, AppError> {
    let store = state.store();
    let account = load_account(&state, &session.account).await?;
    let devices = store.devices(&account.id).await?;
    let families = store.families(&account.id).await?;
    let tokens = store.refresh_tokens(&account.id).await?;
    let vault = store.vault_listing(&account.id).await?;
    let sessions = families
        .into_iter()
        .map(|f| ExportSession {
            family_id: f.id,
            device_id: f.device_id,
            revoked: f.revoked,
            created_at: f.created_at,
            refresh_tokens: tokens
                .iter()
                .filter(|t| t.family_id == f.id)
                .map(|t| ExportRefreshToken {
                    token_hash: b64(&t.token_hash),
                    created_at: t.created_at,
                    expires_at: t.expires_at,
                    used_at: t.used_at,
                })
                .collect(),
        })
        .collect();
    Ok(Json(AccountExport {
        format: "haven-relay-export/v1".to_owned(),
        exported_at: now_i64(),
        account: ExportAccount {
            account_id: account.id,
            username_hash: account.username_hash.as_deref().map(b64),
            opaque_registration_record: b64(&account.opaque_record),
            totp_secret_stored: account.totp_secret.is_some(),
            totp_enabled: account.totp_enabled,
            totp_last_step: account.totp_last_step,
            created_at: account.created_at,
        },
        devices: devices
            .into_iter()
            .map(|d| ExportDevice {
                device_id: d.id,
                device_number: d.number,
                identity_key: b64(&d.identity_key),
                name: d.name_blob.as_deref().map(b64),
                created_at: d.created_at,
            })
            .collect(),
        sessions,
        vault: vault
            .into_iter()
            .map(|v| ExportVaultItem {
                collection_id: v.collection_id,
                item_id: v.item_id,
                revision: u64::try_from(v.revision).unwrap_or(0),
                deleted: v.deleted,
                created_at: v.created_at,
                updated_at: v.updated_at,
                bytes: u64::try_from(v.bytes).unwrap_or(0),
            })
            .collect(),
    }))
}
