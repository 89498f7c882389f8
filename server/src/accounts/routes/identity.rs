//! Account identity (PROTOCOL.md §11.18, §15): the account's signed device list, and the
//! approval of a new device by an existing one (a link token the existing device makes and
//! sends end to end, through a provisioning box the new device opened).
//!
//! The relay stores and serves the device list but cannot make one: a list is signed by the
//! account identity key, which never reaches the relay. It checks what it can without trusting
//! itself: the layout, the signature under the list's own account key, that the list names the
//! uploading account and only devices it has registered with those identity keys, and that the
//! version goes up. Clients check the signature against the key they pinned (§15.2) whatever the
//! relay says.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use ed25519_dalek::{Signature, VerifyingKey};
use haven_protocol::account::DeviceListBody;
use haven_protocol::api::auth::TokenResponse;
use haven_protocol::api::error::ErrorBody;
use haven_protocol::api::identity::{
    DeviceListReply, DeviceListUpload, LinkDeviceRequest, LinkTokenReply, ProvisioningCreated,
    ProvisioningMessage,
};
use sha2::{Digest, Sha256};

use crate::accounts::device_lists::{FillOutcome, PutListOutcome};
use crate::accounts::routes::NewDevice;
use crate::accounts::routes::auth::{add_device, issue_session};
use crate::accounts::session::Auth;
use crate::accounts::store::DeviceRecord;
use crate::app::state::AppState;
use crate::clock::now_i64;
use crate::db::Store;
use crate::error::{ApiJson, ApiPath, AppError};
use crate::http::{b64, decode_b64, path_id};
use crate::ids::Id;

/// Largest provisioning message (the account key, the access key and a few ids fit in far less).
pub const MAX_PROVISIONING_BYTES: usize = 16 * 1024;
/// Lifetime of a link token and of a provisioning box.
pub const LINK_TTL_SECS: i64 = 600;
/// Live link tokens kept per account (older ones are dropped).
pub const MAX_LINK_TOKENS: u32 = 5;

fn bad_list(message: &'static str) -> AppError {
    AppError::bad_request("invalid_device_list", message)
}

/// Stores the account's new signed device list.
#[utoipa::path(put, path = "/v1/account/device-list", tag = "identity", security(("bearer" = [])),
    request_body = DeviceListUpload,
    responses((status = 204, description = "stored"),
              (status = 400, description = "`invalid_device_list`: not a list, a bad signature, another account, or a device this account does not have with that key", body = ErrorBody),
              (status = 401, description = "no valid session", body = ErrorBody),
              (status = 409, description = "`stale_device_list` (a list of this version or newer is stored) or `account_key_changed` (signed by another account key than the stored list, without `replace_account_key`)", body = ErrorBody)))]
pub async fn put_device_list<S: Store>(
    State(state): State<AppState<S>>,
    Auth(session): Auth,
    ApiJson(req): ApiJson<DeviceListUpload>,
) -> Result<StatusCode, AppError> {
    let bytes = decode_b64("list", &req.list, haven_protocol::account::MAX_LIST_LEN)?;
    let (body, signature) =
        DeviceListBody::decode(&bytes).map_err(|_| bad_list("not a device list"))?;
    if body.account != *session.account.as_bytes() {
        return Err(bad_list("the list is for another account"));
    }
    let key = VerifyingKey::from_bytes(&body.account_key)
        .map_err(|_| bad_list("the account key is not a valid key"))?;
    let message = body
        .signing_input()
        .map_err(|_| bad_list("not a device list"))?;
    if key.is_weak()
        || key
            .verify_strict(&message, &Signature::from_bytes(&signature))
            .is_err()
    {
        return Err(bad_list("the signature does not verify"));
    }
    // Every listed device is one the account registered, with the same identity key: the
    // relay's own records and the account's statement agree.
    let registered = state.store().devices(&session.account).await?;
    for listed in &body.devices {
        let known = registered
            .iter()
            .any(|d| d.number == listed.number && d.identity_key == listed.identity_key);
        if !known {
            return Err(bad_list(
                "the list names a device this account does not have with that key",
            ));
        }
    }
    if let Some(stored) = state.store().device_list(&session.account).await?
        && let Ok((previous, _)) = DeviceListBody::decode(&stored.list)
        && previous.account_key != body.account_key
        && !req.replace_account_key
    {
        return Err(AppError::conflict(
            "account_key_changed",
            "the list is signed by another account key than the stored one",
        ));
    }
    match state
        .store()
        .put_device_list(&session.account, body.version, &bytes, now_i64())
        .await?
    {
        PutListOutcome::Stored => {
            tracing::info!(version = body.version, "device list stored");
            Ok(StatusCode::NO_CONTENT)
        }
        PutListOutcome::Stale { current } => Err(AppError::conflict(
            "stale_device_list",
            format!("a list of version {current} is stored; upload a newer version"),
        )),
    }
}

/// An account's signed device list, as it uploaded it.
#[utoipa::path(get, path = "/v1/accounts/{account_id}/device-list", tag = "identity", security(("bearer" = [])),
    params(("account_id" = String, Path, pattern = "^[0-9a-f]{32}$", description = "Account id (32 hex digits)")),
    responses((status = 200, body = DeviceListReply),
              (status = 401, description = "no valid session", body = ErrorBody),
              (status = 404, description = "`device_list_not_found`", body = ErrorBody)))]
pub async fn device_list<S: Store>(
    State(state): State<AppState<S>>,
    Auth(_session): Auth,
    ApiPath(account): ApiPath<String>,
) -> Result<Json<DeviceListReply>, AppError> {
    let account = path_id(&account)?;
    let stored = state.store().device_list(&account).await?.ok_or_else(|| {
        AppError::not_found("device_list_not_found", "the account has no device list")
    })?;
    Ok(Json(DeviceListReply {
        list: b64(&stored.list),
        version: stored.version,
    }))
}

/// Makes a link token: with it, one new device can join this account (the caller sends it to
/// the new device end to end encrypted, through the new device's provisioning box).
#[utoipa::path(post, path = "/v1/devices/link-token", tag = "identity", security(("bearer" = [])),
    responses((status = 200, body = LinkTokenReply),
              (status = 401, description = "no valid session", body = ErrorBody)))]
pub async fn link_token<S: Store>(
    State(state): State<AppState<S>>,
    Auth(session): Auth,
) -> Result<Json<LinkTokenReply>, AppError> {
    let mut token = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut token);
    let now = now_i64();
    let expires = now.saturating_add(LINK_TTL_SECS);
    state
        .store()
        .put_link_token(
            &Sha256::digest(token).into(),
            &session.account,
            expires,
            now,
            MAX_LINK_TOKENS,
        )
        .await?;
    Ok(Json(LinkTokenReply {
        link_token: b64(&token),
        expires: u64::try_from(expires).unwrap_or(0),
    }))
}

/// Adds a device to the account a link token was made for, and logs it in. The token is spent
/// whether or not the rest succeeds.
#[utoipa::path(post, path = "/v1/devices/link", tag = "identity",
    request_body = LinkDeviceRequest,
    responses((status = 201, body = TokenResponse),
              (status = 400, description = "malformed input", body = ErrorBody),
              (status = 401, description = "`invalid_link_token`: unknown, used or expired", body = ErrorBody),
              (status = 409, description = "`device_limit`", body = ErrorBody)))]
pub async fn link<S: Store>(
    State(state): State<AppState<S>>,
    ApiJson(req): ApiJson<LinkDeviceRequest>,
) -> Result<(StatusCode, Json<TokenResponse>), AppError> {
    let token: [u8; 32] = decode_b64("link_token", &req.link_token, 32)?
        .try_into()
        .map_err(|_| AppError::bad_request("invalid_length", "link_token is 32 bytes"))?;
    let device = NewDevice::from_body(&req.device)?;
    let now = now_i64();
    let account = state
        .store()
        .take_link_token(&Sha256::digest(token).into(), now)
        .await?
        .ok_or_else(|| {
            AppError::unauthorized(
                "invalid_link_token",
                "the link token is unknown, used or expired",
            )
        })?;
    let record = DeviceRecord {
        id: Id::random(),
        account_id: account,
        identity_key: device.identity_key,
        name_blob: device.name_blob,
        created_at: now,
        number: 0,
    };
    add_device(&state, &record).await?;
    tracing::info!("device linked by approval");
    state.hub().notify_sessions_changed(account);
    Ok((
        StatusCode::CREATED,
        Json(issue_session(&state, account, record.id).await?),
    ))
}

/// Opens a provisioning box for a new device (which shows its id, with its own public key, as
/// a code an existing device reads).
#[utoipa::path(post, path = "/v1/provisioning", tag = "identity",
    responses((status = 201, body = ProvisioningCreated)))]
pub async fn create_box<S: Store>(
    State(state): State<AppState<S>>,
) -> Result<(StatusCode, Json<ProvisioningCreated>), AppError> {
    let id = Id::random();
    let now = now_i64();
    let expires = now.saturating_add(LINK_TTL_SECS);
    state.store().create_box(&id, expires, now).await?;
    Ok((
        StatusCode::CREATED,
        Json(ProvisioningCreated {
            id,
            expires: u64::try_from(expires).unwrap_or(0),
        }),
    ))
}

/// Puts the approving device's provisioning message into a box (once).
#[utoipa::path(put, path = "/v1/provisioning/{id}", tag = "identity", security(("bearer" = [])),
    params(("id" = String, Path, pattern = "^[0-9a-f]{32}$", description = "Box id (32 hex digits)")),
    request_body = ProvisioningMessage,
    responses((status = 204, description = "delivered"),
              (status = 400, description = "malformed input", body = ErrorBody),
              (status = 401, description = "no valid session", body = ErrorBody),
              (status = 404, description = "`provisioning_not_found`: no such box, or it expired", body = ErrorBody),
              (status = 409, description = "`provisioning_filled`: the box already holds a message", body = ErrorBody)))]
pub async fn fill_box<S: Store>(
    State(state): State<AppState<S>>,
    Auth(_session): Auth,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<ProvisioningMessage>,
) -> Result<StatusCode, AppError> {
    let id = path_id(&id)?;
    let message = decode_b64("message", &req.message, MAX_PROVISIONING_BYTES)?;
    match state.store().fill_box(&id, &message, now_i64()).await? {
        FillOutcome::Filled => Ok(StatusCode::NO_CONTENT),
        FillOutcome::AlreadyFilled => Err(AppError::conflict(
            "provisioning_filled",
            "the box already holds a message",
        )),
        FillOutcome::NotFound => Err(provisioning_not_found()),
    }
}

fn provisioning_not_found() -> AppError {
    AppError::not_found("provisioning_not_found", "no such box, or it expired")
}

/// Reads a provisioning box: 204 while it is empty; its message once (the box is then gone).
#[utoipa::path(get, path = "/v1/provisioning/{id}", tag = "identity",
    params(("id" = String, Path, pattern = "^[0-9a-f]{32}$", description = "Box id (32 hex digits)")),
    responses((status = 200, body = ProvisioningMessage),
              (status = 204, description = "empty: ask again later"),
              (status = 404, description = "`provisioning_not_found`", body = ErrorBody)))]
pub async fn take_box<S: Store>(
    State(state): State<AppState<S>>,
    ApiPath(id): ApiPath<String>,
) -> Result<axum::response::Response, AppError> {
    use axum::response::IntoResponse as _;
    let id = path_id(&id)?;
    match state.store().take_box(&id, now_i64()).await? {
        Some(Some(message)) => Ok(Json(ProvisioningMessage {
            message: b64(&message),
        })
        .into_response()),
        Some(None) => Ok(StatusCode::NO_CONTENT.into_response()),
        None => Err(provisioning_not_found()),
    }
}
