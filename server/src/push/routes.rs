//! The push routes (PROTOCOL.md §18.1, §18.2): the relay's VAPID key, and a device's push
//! endpoints. Authenticated routes act on the calling device only.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use haven_protocol::api::push::{
    PushEndpointBody, PushEndpointCreated, PushEndpointList, PushEndpointRequest, VapidKeyBody,
};

use crate::accounts::session::Auth;
use crate::app::state::AppState;
use crate::clock::now_i64;
use crate::db::Store;
use crate::error::{ApiJson, ApiPath, AppError, ErrorBody};
use crate::push::service::{PushError, PushService, endpoint_id_text, parse_endpoint_id};

fn service<S: Store>(state: &AppState<S>) -> Result<&PushService, AppError> {
    state
        .push()
        .ok_or_else(|| AppError::not_found("push_disabled", "push is not enabled on this relay"))
}

/// The calling device's number.
async fn device_number<S: Store>(state: &AppState<S>, auth: &Auth) -> Result<u32, AppError> {
    let Auth(session) = auth;
    state
        .store()
        .device(&session.account, &session.device)
        .await?
        .map(|d| d.number)
        .ok_or_else(|| AppError::unauthorized("session_revoked", "this session is no longer valid"))
}

impl From<PushError> for AppError {
    fn from(err: PushError) -> Self {
        match err {
            PushError::Target(t) => AppError::bad_request(t.code(), t.to_string()),
            PushError::TooMany => AppError::conflict(
                "too_many_push_endpoints",
                "this device has the maximum number of push endpoints (5)",
            ),
            PushError::NoDevice => {
                AppError::unauthorized("session_revoked", "this session is no longer valid")
            }
            PushError::Store(e) => e.into(),
            other => AppError::internal(other),
        }
    }
}

/// The relay's VAPID public key (what a browser passes as `applicationServerKey`).
#[utoipa::path(get, path = "/v1/push/vapid", tag = "push",
    responses((status = 200, body = VapidKeyBody),
              (status = 404, description = "`push_disabled`", body = ErrorBody)))]
pub async fn vapid<S: Store>(
    State(state): State<AppState<S>>,
) -> Result<Json<VapidKeyBody>, AppError> {
    Ok(Json(VapidKeyBody {
        public_key: service(&state)?.vapid().public_key().to_owned(),
    }))
}

/// Registers a push endpoint for the calling device (the same endpoint again: same id, keys
/// updated).
#[utoipa::path(post, path = "/v1/push/endpoints", tag = "push", security(("bearer" = [])),
    request_body = PushEndpointRequest,
    responses((status = 201, body = PushEndpointCreated),
              (status = 400, description = "`invalid_push_endpoint`, `push_endpoint_not_allowed`, `push_gateway_not_configured`", body = ErrorBody),
              (status = 401, description = "no valid session", body = ErrorBody),
              (status = 404, description = "`push_disabled`", body = ErrorBody),
              (status = 409, description = "`too_many_push_endpoints`", body = ErrorBody)))]
pub async fn register<S: Store>(
    State(state): State<AppState<S>>,
    auth: Auth,
    ApiJson(req): ApiJson<PushEndpointRequest>,
) -> Result<(StatusCode, Json<PushEndpointCreated>), AppError> {
    let push = service(&state)?;
    let device = device_number(&state, &auth).await?;
    let id = push
        .register(state.store(), &auth.0.account, device, &req, now_i64())
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(PushEndpointCreated {
            id: endpoint_id_text(&id),
        }),
    ))
}

/// Lists the calling device's push endpoints (ids, kinds and times only).
#[utoipa::path(get, path = "/v1/push/endpoints", tag = "push", security(("bearer" = [])),
    responses((status = 200, body = PushEndpointList),
              (status = 401, description = "no valid session", body = ErrorBody),
              (status = 404, description = "`push_disabled`", body = ErrorBody)))]
pub async fn list<S: Store>(
    State(state): State<AppState<S>>,
    auth: Auth,
) -> Result<Json<PushEndpointList>, AppError> {
    service(&state)?;
    let device = device_number(&state, &auth).await?;
    let endpoints = state
        .store()
        .push_endpoints(&auth.0.account, device)
        .await?;
    Ok(Json(PushEndpointList {
        endpoints: endpoints
            .iter()
            .map(|e| PushEndpointBody {
                id: endpoint_id_text(&e.id),
                kind: e.kind.name().to_owned(),
                created_at: e.created_at,
            })
            .collect(),
    }))
}

/// Removes one of the calling device's push endpoints.
#[utoipa::path(delete, path = "/v1/push/endpoints/{id}", tag = "push", security(("bearer" = [])),
    params(("id" = String, Path, pattern = "^[A-Za-z0-9_-]{22}$", description = "endpoint id (base64url, 16 bytes)")),
    responses((status = 204, description = "removed"),
              (status = 401, description = "no valid session", body = ErrorBody),
              (status = 404, description = "`push_endpoint_not_found`, `push_disabled`", body = ErrorBody)))]
pub async fn remove<S: Store>(
    State(state): State<AppState<S>>,
    auth: Auth,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, AppError> {
    service(&state)?;
    let device = device_number(&state, &auth).await?;
    let not_found = || AppError::not_found("push_endpoint_not_found", "no such push endpoint");
    let id = parse_endpoint_id(&id).ok_or_else(not_found)?;
    if state
        .store()
        .delete_push_endpoint(&auth.0.account, device, &id)
        .await?
    {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(not_found())
    }
}
