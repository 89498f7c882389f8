//! Listing, renaming and unlinking devices.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use haven_protocol::api::devices::{DeviceBody, DeviceList, RenameRequest};

use crate::accounts::routes::MAX_DEVICE_NAME_LEN;
use crate::accounts::routes::auth::FreshAuth;
use crate::accounts::session::Auth;
use crate::app::state::AppState;
use crate::clock::now_i64;
use crate::db::Store;
use crate::error::{ApiJson, ApiPath, AppError, ErrorBody};
use crate::http::{b64, decode_b64, path_id};

/// Lists the account's devices.
#[utoipa::path(get, path = "/v1/devices", tag = "devices", security(("bearer" = [])),
    responses((status = 200, body = DeviceList),
              (status = 401, description = "no valid session", body = ErrorBody)))]
pub async fn list<S: Store>(
    State(state): State<AppState<S>>,
    Auth(session): Auth,
) -> Result<Json<DeviceList>, AppError> {
    let devices = state.store().devices(&session.account).await?;
    Ok(Json(DeviceList {
        devices: devices
            .into_iter()
            .map(|d| DeviceBody {
                device_id: d.id,
                device_number: d.number,
                identity_key: b64(&d.identity_key),
                name: d.name_blob.as_deref().map(b64),
                created_at: d.created_at,
                current: d.id == session.device,
            })
            .collect(),
    }))
}

/// Replaces a device's encrypted name.
#[utoipa::path(put, path = "/v1/devices/{device_id}/name", tag = "devices", security(("bearer" = [])),
    params(("device_id" = String, Path, pattern = "^[0-9a-f]{32}$", description = "device id (32 hex digits)")),
    request_body = RenameRequest,
    responses((status = 204, description = "renamed"),
              (status = 400, description = "malformed input", body = ErrorBody),
              (status = 401, description = "no valid session", body = ErrorBody),
              (status = 404, description = "`device_not_found`", body = ErrorBody)))]
pub async fn rename<S: Store>(
    State(state): State<AppState<S>>,
    Auth(session): Auth,
    ApiPath(device_id): ApiPath<String>,
    ApiJson(req): ApiJson<RenameRequest>,
) -> Result<StatusCode, AppError> {
    let device_id = path_id(&device_id)?;
    let name = req
        .name
        .as_deref()
        .map(|n| decode_b64("name", n, MAX_DEVICE_NAME_LEN))
        .transpose()?;
    if state
        .store()
        .set_device_name(&session.account, &device_id, name.as_deref())
        .await?
    {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(AppError::not_found("device_not_found", "no such device"))
    }
}

/// Unlinks a device (requires a fresh authentication); its sessions end at once.
#[utoipa::path(delete, path = "/v1/devices/{device_id}", tag = "devices", security(("bearer" = [])),
    params(("device_id" = String, Path, pattern = "^[0-9a-f]{32}$", description = "device id (32 hex digits)"),
           ("haven-fresh-auth" = String, Header, description = "fresh-authentication proof")),
    responses((status = 204, description = "unlinked"),
              (status = 400, description = "malformed id", body = ErrorBody),
              (status = 401, description = "no valid session", body = ErrorBody),
              (status = 403, description = "`fresh_auth_required`, `fresh_auth_invalid`", body = ErrorBody),
              (status = 404, description = "`device_not_found`", body = ErrorBody)))]
pub async fn unlink<S: Store>(
    State(state): State<AppState<S>>,
    Auth(session): Auth,
    headers: HeaderMap,
    ApiPath(device_id): ApiPath<String>,
) -> Result<StatusCode, AppError> {
    let fresh = FreshAuth::from_headers(&headers)?;
    let device_id = path_id(&device_id)?;
    fresh.check(&state, &session).await?;
    if state
        .store()
        .device(&session.account, &device_id)
        .await?
        .is_none()
    {
        return Err(AppError::not_found("device_not_found", "no such device"));
    }
    fresh.spend(&state, &session).await?;
    if state
        .store()
        .delete_device(&session.account, &device_id, now_i64())
        .await?
    {
        tracing::info!("device unlinked");
        state.hub().notify_sessions_changed(session.account);
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(AppError::not_found("device_not_found", "no such device"))
    }
}
