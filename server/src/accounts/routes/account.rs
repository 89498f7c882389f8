//! TOTP management, password change, the recovery code, account deletion and data export
//! (PROTOCOL.md §11.6.1–§11.6.3, §11.8, §11.9).

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use haven_protocol::api::account::{
    AccountExport, ExportAccount, ExportDevice, ExportRefreshToken, ExportSession, ExportVaultItem,
    TotpCodeRequest, TotpSetupResponse,
};
use haven_protocol::api::auth::{
    CredentialFinishRequest, CredentialStartRequest, CredentialStartResponse, TokenResponse,
};
use haven_protocol::opaque::HavenCipherSuite;
use opaque_ke::ServerRegistration;

use crate::accounts::credentials::CredentialChange;
use crate::accounts::routes::auth::{
    FreshAuth, open_totp_secret, recovery_credential_id, registration_request, registration_upload,
    totp_invalid,
};
use crate::accounts::session::Auth;
use crate::accounts::store::{AccountRecord, FamilyRecord, RefreshTokenRecord};
use crate::accounts::tokens::RefreshToken;
use crate::accounts::totp;
use crate::app::state::AppState;
use crate::client_addr::ClientKey;
use crate::clock::{now_i64, now_secs};
use crate::db::Store;
use crate::error::{ApiJson, AppError, ErrorBody};
use crate::http::b64;
use crate::ids::Id;

async fn load_account<S: Store>(state: &AppState<S>, id: &Id) -> Result<AccountRecord, AppError> {
    // The session check already proved the account exists; a vanished row means a race with
    // deletion, which the client sees as a revoked session.
    state
        .store()
        .account(id)
        .await?
        .ok_or_else(|| AppError::unauthorized("session_revoked", "this session is no longer valid"))
}

/// Checks `code` against the account's secret; counts a wrong code as a failed login attempt.
/// With `claim`, its time step is claimed (no replay); without, the code only has to be current
/// (disabling TOTP, where the single-use fresh-authentication proof already prevents replay and
/// the code its re-authentication used is accepted again).
async fn check_code<S: Store>(
    state: &AppState<S>,
    account: &AccountRecord,
    client: &ClientKey,
    code: &str,
    claim: bool,
) -> Result<(), AppError> {
    let limit_key = state.secrets().username_pepper.hmac(
        crate::accounts::routes::auth::LOGIN_LIMIT_LABEL,
        account.id.as_bytes(),
    );
    crate::limits::check_login(state, &limit_key).await?;
    let opened = open_totp_secret(state, account)?;
    let secret = opened.as_ref().map_or(&[][..], |o| &o.secret[..]);
    let accepted = match totp::matching_step(secret, code, now_secs()) {
        Some(step) if claim => state.store().claim_totp_step(&account.id, step).await?,
        Some(_) => true,
        None => false,
    };
    if accepted {
        if let (Some(opened), Some(stored)) = (&opened, &account.totp_secret) {
            totp::reseal_if_stale(
                state.store(),
                &state.secrets().totp,
                &account.id,
                stored.expose(),
                opened,
            )
            .await;
        }
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
    let secret = zeroize::Zeroizing::new(totp::generate_secret());
    let sealed = totp::seal(&state.secrets().totp, &session.account, &secret[..])
        .map_err(|err| AppError::internal(err.to_string()))?;
    if !state
        .store()
        .set_totp_pending(&session.account, &sealed)
        .await?
    {
        return Err(AppError::conflict(
            "totp_already_enabled",
            "TOTP is already enabled",
        ));
    }
    let (secret, otpauth_uri) = totp::provisioning(&secret[..], &session.account.to_hex());
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
    check_code(&state, &account, &client, &req.code, true).await?;
    state.store().set_totp_enabled(&account.id, true).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Disables TOTP (requires a fresh authentication and a valid code).
#[utoipa::path(post, path = "/v1/account/totp/disable", tag = "account", security(("bearer" = [])),
    request_body = TotpCodeRequest,
    params(("haven-fresh-auth" = String, Header, description = "fresh-authentication proof")),
    responses((status = 204, description = "TOTP disabled"),
              (status = 401, description = "`totp_invalid` or no valid session", body = ErrorBody),
              (status = 403, description = "`fresh_auth_required`, `fresh_auth_invalid`", body = ErrorBody),
              (status = 409, description = "`totp_not_enabled`", body = ErrorBody)))]
pub async fn totp_disable<S: Store>(
    State(state): State<AppState<S>>,
    Auth(session): Auth,
    client: ClientKey,
    headers: HeaderMap,
    ApiJson(req): ApiJson<TotpCodeRequest>,
) -> Result<StatusCode, AppError> {
    let fresh = FreshAuth::from_headers(&headers)?;
    fresh.check(&state, &session).await?;
    let account = load_account(&state, &session.account).await?;
    if !account.totp_enabled {
        return Err(AppError::conflict(
            "totp_not_enabled",
            "TOTP is not enabled",
        ));
    }
    check_code(&state, &account, &client, &req.code, false).await?;
    fresh.spend(&state, &session).await?;
    state.store().set_totp_enabled(&account.id, false).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Deletes the account and every row belonging to it (requires a fresh authentication).
#[utoipa::path(delete, path = "/v1/account", tag = "account", security(("bearer" = [])),
    params(("haven-fresh-auth" = String, Header, description = "fresh-authentication proof")),
    responses((status = 204, description = "deleted"),
              (status = 401, description = "no valid session", body = ErrorBody),
              (status = 403, description = "`fresh_auth_required`, `fresh_auth_invalid`", body = ErrorBody)))]
pub async fn delete<S: Store>(
    State(state): State<AppState<S>>,
    Auth(session): Auth,
    headers: HeaderMap,
) -> Result<StatusCode, AppError> {
    FreshAuth::from_headers(&headers)?
        .spend(&state, &session)
        .await?;
    // Blob objects live outside the database: delete them first. Whatever fails here is
    // removed later by the collector, which deletes the blobs of accounts that no longer exist.
    if let Some(blobs) = state.blobs()
        && let Err(err) = blobs.delete_account(state.store(), &session.account).await
    {
        tracing::warn!(%err, "deleting the account's blobs failed; left to the collector");
    }
    state.store().delete_account(&session.account).await?;
    tracing::info!("account deleted");
    state.hub().notify_sessions_changed(session.account);
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
    let recovery = store.recovery_record(&account.id).await?;
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
            opaque_recovery_record: recovery.as_deref().map(b64),
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

/// Answers the first round of an OPAQUE re-registration of the session's account under
/// `credential_id` (stateless: the answer depends only on the request and the identifier).
fn credential_start<S: Store>(
    state: &AppState<S>,
    req: &CredentialStartRequest,
    credential_id: &[u8],
) -> Result<CredentialStartResponse, AppError> {
    let request = registration_request(&req.registration_request)?;
    let start = ServerRegistration::<HavenCipherSuite>::start(
        &state.secrets().opaque_setup,
        request,
        credential_id,
    )
    .map_err(|_| {
        AppError::bad_request(
            "invalid_opaque_message",
            "registration_request is not a valid OPAQUE message",
        )
    })?;
    Ok(CredentialStartResponse {
        registration_response: b64(&start.message.serialize()),
    })
}

/// First round of a password change: OPAQUE's registration response for the account.
#[utoipa::path(post, path = "/v1/account/password/start", tag = "account", security(("bearer" = [])),
    request_body = CredentialStartRequest,
    responses((status = 200, body = CredentialStartResponse),
              (status = 400, description = "malformed input", body = ErrorBody),
              (status = 401, description = "no valid session", body = ErrorBody)))]
pub async fn password_start<S: Store>(
    State(state): State<AppState<S>>,
    Auth(session): Auth,
    ApiJson(req): ApiJson<CredentialStartRequest>,
) -> Result<Json<CredentialStartResponse>, AppError> {
    Ok(Json(credential_start(
        &state,
        &req,
        session.account.as_bytes(),
    )?))
}

/// Replaces the password (requires a fresh authentication): every session of the account ends,
/// and the calling device gets a new one.
#[utoipa::path(post, path = "/v1/account/password/finish", tag = "account", security(("bearer" = [])),
    request_body = CredentialFinishRequest,
    params(("haven-fresh-auth" = String, Header, description = "fresh-authentication proof")),
    responses((status = 200, body = TokenResponse),
              (status = 400, description = "malformed input", body = ErrorBody),
              (status = 401, description = "no valid session", body = ErrorBody),
              (status = 403, description = "`fresh_auth_required`, `fresh_auth_invalid`", body = ErrorBody)))]
pub async fn password_finish<S: Store>(
    State(state): State<AppState<S>>,
    Auth(session): Auth,
    headers: HeaderMap,
    ApiJson(req): ApiJson<CredentialFinishRequest>,
) -> Result<Json<TokenResponse>, AppError> {
    let fresh = FreshAuth::from_headers(&headers)?;
    let upload = registration_upload(&req.registration_upload)?;
    fresh.spend(&state, &session).await?;
    let now = now_i64();
    let family = FamilyRecord {
        id: Id::random(),
        account_id: session.account,
        device_id: session.device,
        revoked: false,
        created_at: now,
    };
    let refresh = RefreshToken::generate();
    let ttl = i64::try_from(state.settings().refresh_token_ttl_secs).unwrap_or(i64::MAX);
    let token = RefreshTokenRecord {
        token_hash: refresh.hash(),
        family_id: family.id,
        created_at: now,
        expires_at: now.saturating_add(ttl),
        used_at: None,
    };
    let change = CredentialChange {
        opaque_record: ServerRegistration::<HavenCipherSuite>::finish(upload)
            .serialize()
            .to_vec(),
        clear_recovery: false,
        new_session: Some((family.clone(), token)),
    };
    if !state
        .store()
        .replace_credentials(&session.account, &change)
        .await?
    {
        return Err(AppError::unauthorized(
            "session_revoked",
            "this session is no longer valid",
        ));
    }
    tracing::info!("password changed; other sessions revoked");
    state.hub().notify_sessions_changed(session.account);
    let session = crate::accounts::session::Session {
        account: session.account,
        device: session.device,
        family: family.id,
    };
    Ok(Json(
        crate::accounts::routes::auth::token_response(&state, session, &refresh).await?,
    ))
}

/// First round of setting the recovery code: OPAQUE's registration response for the account's
/// recovery credential.
#[utoipa::path(post, path = "/v1/account/recovery/start", tag = "account", security(("bearer" = [])),
    request_body = CredentialStartRequest,
    responses((status = 200, body = CredentialStartResponse),
              (status = 400, description = "malformed input", body = ErrorBody),
              (status = 401, description = "no valid session", body = ErrorBody)))]
pub async fn recovery_start<S: Store>(
    State(state): State<AppState<S>>,
    Auth(session): Auth,
    ApiJson(req): ApiJson<CredentialStartRequest>,
) -> Result<Json<CredentialStartResponse>, AppError> {
    Ok(Json(credential_start(
        &state,
        &req,
        &recovery_credential_id(session.account.as_bytes()),
    )?))
}

/// Sets or replaces the recovery code's record (requires a fresh authentication).
#[utoipa::path(post, path = "/v1/account/recovery/finish", tag = "account", security(("bearer" = [])),
    request_body = CredentialFinishRequest,
    params(("haven-fresh-auth" = String, Header, description = "fresh-authentication proof")),
    responses((status = 204, description = "recovery code set"),
              (status = 400, description = "malformed input", body = ErrorBody),
              (status = 401, description = "no valid session", body = ErrorBody),
              (status = 403, description = "`fresh_auth_required`, `fresh_auth_invalid`", body = ErrorBody)))]
pub async fn recovery_finish<S: Store>(
    State(state): State<AppState<S>>,
    Auth(session): Auth,
    headers: HeaderMap,
    ApiJson(req): ApiJson<CredentialFinishRequest>,
) -> Result<StatusCode, AppError> {
    let fresh = FreshAuth::from_headers(&headers)?;
    let upload = registration_upload(&req.registration_upload)?;
    fresh.spend(&state, &session).await?;
    let record = ServerRegistration::<HavenCipherSuite>::finish(upload)
        .serialize()
        .to_vec();
    if !state
        .store()
        .set_recovery_record(&session.account, &record)
        .await?
    {
        return Err(AppError::unauthorized(
            "session_revoked",
            "this session is no longer valid",
        ));
    }
    tracing::info!("recovery code set");
    Ok(StatusCode::NO_CONTENT)
}
