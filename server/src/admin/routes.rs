//! The admin key routes (`docs/PROTOCOL.md` §11.17), generic over [`AdminContext`]:
//! `POST /v1/admin/keys`, `GET /v1/admin/keys`, `DELETE /v1/admin/keys/{id}`.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{delete, get};
use haven_protocol::api::admin::{
    AdminKeyInfo, AdminKeyList, CreateAdminKeyRequest, CreatedAdminKey,
};

use crate::admin::AdminContext;
use crate::admin::keys::{self, AdminAuth};
use crate::admin::store::{AdminKeyRecord, AdminStore as _};
use crate::error::{ApiJson, ApiPath, AppError, ErrorBody};
use crate::ids::Id;

/// The admin API routes and the admin page.
pub fn api_routes<C: AdminContext>() -> Router<C> {
    Router::new()
        .route("/v1/admin/keys", get(list::<C>).post(create::<C>))
        .route("/v1/admin/keys/{key_id}", delete(revoke::<C>))
        .route("/admin", get(crate::admin::page::html))
        .route("/admin/admin.js", get(crate::admin::page::script))
        .route("/admin/admin.css", get(crate::admin::page::style))
        .route(
            "/v1/admin/overview",
            get(crate::admin::overview::overview::<C>),
        )
}

/// The wire form of a stored key at `now`.
pub fn key_info(record: &AdminKeyRecord, now: i64) -> AdminKeyInfo {
    AdminKeyInfo {
        id: record.id,
        label: record.label.clone(),
        created_at: record.created_at,
        last_used_at: record.last_used_at,
        expires_at: record.expires_at,
        revoked_at: record.revoked_at,
        active: record.is_active(now),
    }
}

/// `POST /v1/admin/keys`: creates a key and returns it once (201).
#[utoipa::path(post, path = "/v1/admin/keys", tag = "admin",
    security(("admin_key" = [])),
    request_body = CreateAdminKeyRequest,
    responses((status = 201, body = CreatedAdminKey),
              (status = 400, description = "`invalid_label`, `invalid_expiry`, malformed input", body = ErrorBody),
              (status = 401, description = "`missing_admin_key`, `invalid_admin_key`", body = ErrorBody),
              (status = 429, description = "too many wrong admin keys from this address", body = ErrorBody)))]
pub async fn create<C: AdminContext>(
    admin: AdminAuth,
    State(ctx): State<C>,
    ApiJson(body): ApiJson<CreateAdminKeyRequest>,
) -> Result<impl IntoResponse, AppError> {
    let now = crate::clock::now_i64();
    let created = keys::create_key(ctx.admin_store(), &body.label, body.expires_days, now).await?;
    ctx.audit_key_event(true, created.record.id, admin.key_id)
        .await;
    let reply = CreatedAdminKey {
        info: key_info(&created.record, now),
        key: created.secret.encode().to_string(),
    };
    Ok((StatusCode::CREATED, ApiJson(reply)))
}

/// `GET /v1/admin/keys`: every key, without secrets.
#[utoipa::path(get, path = "/v1/admin/keys", tag = "admin",
    security(("admin_key" = [])),
    responses((status = 200, body = AdminKeyList),
              (status = 401, description = "`missing_admin_key`, `invalid_admin_key`", body = ErrorBody),
              (status = 429, description = "too many wrong admin keys from this address", body = ErrorBody)))]
pub async fn list<C: AdminContext>(
    _admin: AdminAuth,
    State(ctx): State<C>,
) -> Result<ApiJson<AdminKeyList>, AppError> {
    let now = crate::clock::now_i64();
    let records = ctx.admin_store().list_admin_keys().await?;
    Ok(ApiJson(AdminKeyList {
        keys: records.iter().map(|r| key_info(r, now)).collect(),
    }))
}

/// `DELETE /v1/admin/keys/{key_id}`: revokes a key (204; 404 if unknown). A key may revoke
/// itself; the request that does so still succeeds.
#[utoipa::path(delete, path = "/v1/admin/keys/{key_id}", tag = "admin",
    security(("admin_key" = [])),
    params(("key_id" = String, Path, pattern = "^[0-9a-f]{32}$", description = "admin key id (32 hex digits)")),
    responses((status = 204, description = "revoked (or already revoked)"),
              (status = 401, description = "`missing_admin_key`, `invalid_admin_key`", body = ErrorBody),
              (status = 404, description = "`unknown_admin_key`", body = ErrorBody),
              (status = 429, description = "too many wrong admin keys from this address", body = ErrorBody)))]
pub async fn revoke<C: AdminContext>(
    admin: AdminAuth,
    State(ctx): State<C>,
    ApiPath(key_id): ApiPath<String>,
) -> Result<StatusCode, AppError> {
    let id: Id = key_id
        .parse()
        .map_err(|_| AppError::not_found("unknown_admin_key", "no such admin key"))?;
    if keys::revoke_key(ctx.admin_store(), &id, crate::clock::now_i64()).await? {
        ctx.audit_key_event(false, id, admin.key_id).await;
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(AppError::not_found(
            "unknown_admin_key",
            "no such admin key",
        ))
    }
}
