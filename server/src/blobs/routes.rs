//! Blob routes (PROTOCOL.md §11.17): create an upload, get part upload URLs, complete, download,
//! delete, list; and, for the local backend, the token-authorised transfer routes that stream
//! bytes through the relay.

use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use futures_util::{StreamExt as _, TryStreamExt as _};
use haven_protocol::api::blobs::{
    BlobInfo, BlobList, CreateBlobRequest, DownloadUrl, PartReport, PartStored, PartUrl, PartUrls,
    PartUrlsRequest, TokenQuery,
};
use haven_protocol::padding::is_valid_blob_size;
use tower_http::timeout::TimeoutLayer;

use crate::accounts::session::Auth;
use crate::app::state::AppState;
use crate::blobs::store::{BlobPart, BlobQuota, BlobRecord, BlobState, CreateBlobOutcome};
use crate::blobs::token;
use crate::blobs::token::{BlobToken, TokenError, TokenPurpose};
use crate::blobs::{BackendError, BlobService};
use crate::clock::{now_i64, now_secs};
use crate::db::Store;
use crate::error::{ApiJson, ApiPath, ApiQuery, AppError, ErrorBody};
use crate::http::path_id;
use crate::ids::Id;

/// Most parts one URL request may ask for.
pub const MAX_PARTS_PER_REQUEST: usize = 1000;
/// Most blobs one listing returns.
pub const MAX_LISTED: u32 = 1000;
/// Longest ETag accepted from a client.
const MAX_ETAG_LEN: usize = 256;

fn service<S: Store>(state: &AppState<S>) -> Result<&BlobService, AppError> {
    state.blobs().ok_or_else(|| {
        AppError::client(
            StatusCode::SERVICE_UNAVAILABLE,
            "blobs_unavailable",
            "this relay has no blob store",
        )
    })
}

fn not_found() -> AppError {
    AppError::not_found("blob_not_found", "no such blob")
}

fn backend_error(err: BackendError) -> AppError {
    match err {
        BackendError::WrongSize { expected, actual } => AppError::bad_request(
            "wrong_size",
            format!("expected exactly {expected} bytes, got {actual}"),
        ),
        BackendError::InvalidParts(_) => AppError::conflict(
            "upload_incomplete",
            "the uploaded parts do not form the blob; upload the missing parts again",
        ),
        BackendError::NotFound => not_found(),
        BackendError::Body(_) => {
            AppError::bad_request("body_failed", "the request body could not be read")
        }
        other => AppError::internal(other),
    }
}

fn info(blob: &BlobRecord, parts: Vec<u64>) -> BlobInfo {
    BlobInfo {
        blob_id: blob.id,
        size: blob.size,
        part_size: blob.part_size,
        part_count: blob.part_count(),
        state: match blob.state {
            BlobState::Pending => "pending",
            BlobState::Complete => "complete",
        }
        .to_owned(),
        created_at: blob.created_at,
        expires_at: blob.expires_at,
        parts_received: parts,
    }
}

/// Loads a live (unexpired) blob owned by `account`; other accounts see 404.
async fn owned<S: Store>(
    state: &AppState<S>,
    account: &Id,
    id: &str,
) -> Result<BlobRecord, AppError> {
    let id = path_id(id)?;
    match state.store().blob(&id).await? {
        Some(b) if b.account == *account && b.expires_at > now_i64() => Ok(b),
        _ => Err(not_found()),
    }
}

fn pending(blob: &BlobRecord) -> Result<(), AppError> {
    if blob.state == BlobState::Pending {
        Ok(())
    } else {
        Err(AppError::conflict(
            "blob_not_pending",
            "the blob is already complete",
        ))
    }
}

/// `POST /v1/blobs`: reserves quota and starts an upload.
#[utoipa::path(post, path = "/v1/blobs", tag = "blobs", security(("bearer" = [])),
    request_body = CreateBlobRequest,
    responses((status = 201, body = BlobInfo),
              (status = 400, description = "`invalid_blob_size`, `invalid_ttl`, malformed input", body = ErrorBody),
              (status = 401, description = "no valid session", body = ErrorBody),
              (status = 413, description = "`blob_too_large`", body = ErrorBody),
              (status = 507, description = "`blob_quota_exceeded`, `blob_count_exceeded`", body = ErrorBody),
              (status = 503, description = "`blobs_unavailable`: no blob store configured", body = ErrorBody)))]
pub async fn create<S: Store>(
    State(state): State<AppState<S>>,
    Auth(session): Auth,
    ApiJson(req): ApiJson<CreateBlobRequest>,
) -> Result<(StatusCode, Json<BlobInfo>), AppError> {
    let svc = service(&state)?;
    let settings = svc.settings();
    if !is_valid_blob_size(req.size) {
        return Err(AppError::bad_request(
            "invalid_blob_size",
            "the size is not a padded attachment size (PROTOCOL.md §10)",
        ));
    }
    if req.size > settings.max_blob_bytes {
        return Err(AppError::client(
            StatusCode::PAYLOAD_TOO_LARGE,
            "blob_too_large",
            format!("blobs are limited to {} bytes", settings.max_blob_bytes),
        ));
    }
    let ttl = req.ttl_secs.unwrap_or(settings.default_ttl_secs);
    if ttl == 0 || ttl > settings.max_ttl_secs {
        return Err(AppError::bad_request(
            "invalid_ttl",
            format!("ttl_secs must be 1..={}", settings.max_ttl_secs),
        ));
    }
    let now = now_i64();
    let mut blob = BlobRecord {
        id: Id::random(),
        account: session.account,
        size: req.size,
        part_size: settings.part_size_bytes,
        state: BlobState::Pending,
        upload_id: None,
        created_at: now,
        expires_at: now.saturating_add(i64::try_from(ttl).unwrap_or(i64::MAX)),
    };
    let quota = BlobQuota {
        max_bytes: settings.quota_bytes,
        max_blobs: settings.max_blobs,
    };
    match state.store().create_blob(&blob, quota).await? {
        CreateBlobOutcome::Created => {}
        CreateBlobOutcome::ByteQuotaExceeded(used) => {
            return Err(AppError::client(
                StatusCode::INSUFFICIENT_STORAGE,
                "blob_quota_exceeded",
                format!(
                    "{} of {} bytes used; this blob needs {}",
                    used.bytes, settings.quota_bytes, req.size
                ),
            ));
        }
        CreateBlobOutcome::CountQuotaExceeded(used) => {
            return Err(AppError::client(
                StatusCode::INSUFFICIENT_STORAGE,
                "blob_count_exceeded",
                format!("{} of {} blobs stored", used.blobs, settings.max_blobs),
            ));
        }
    }
    // The row exists before any object, so the collector can always find what to delete.
    match svc.backend().begin_upload(&blob.id).await {
        Ok(Some(upload_id)) => {
            state
                .store()
                .set_blob_upload_id(&blob.id, &upload_id)
                .await?;
            blob.upload_id = Some(upload_id);
        }
        Ok(None) => {}
        Err(err) => {
            let _ = state.store().delete_blob(&blob.id).await;
            return Err(backend_error(err));
        }
    }
    Ok((StatusCode::CREATED, Json(info(&blob, Vec::new()))))
}

/// `GET /v1/blobs`: the account's blobs and quota use.
#[utoipa::path(get, path = "/v1/blobs", tag = "blobs", security(("bearer" = [])),
    responses((status = 200, body = BlobList), (status = 401, description = "no valid session", body = ErrorBody), (status = 503, description = "`blobs_unavailable`: no blob store configured", body = ErrorBody)))]
pub async fn list<S: Store>(
    State(state): State<AppState<S>>,
    Auth(session): Auth,
) -> Result<Json<BlobList>, AppError> {
    let svc = service(&state)?;
    let settings = svc.settings();
    let blobs = state
        .store()
        .account_blobs(&session.account, MAX_LISTED)
        .await?;
    let usage = state.store().blob_usage(&session.account).await?;
    Ok(Json(BlobList {
        blobs: blobs.iter().map(|b| info(b, Vec::new())).collect(),
        used_bytes: usage.bytes,
        used_blobs: usage.blobs,
        quota_bytes: settings.quota_bytes,
        max_blobs: settings.max_blobs,
        max_blob_bytes: settings.max_blob_bytes,
    }))
}

/// `GET /v1/blobs/{id}`: the owner's view, with the parts received (to resume an upload).
#[utoipa::path(get, path = "/v1/blobs/{blob_id}", tag = "blobs", security(("bearer" = [])),
    params(("blob_id" = String, Path, pattern = "^[0-9a-f]{32}$", description = "blob id (32 hex digits)")),
    responses((status = 200, body = BlobInfo), (status = 401, description = "no valid session", body = ErrorBody),
              (status = 404, description = "`blob_not_found` (also for another account's blob)", body = ErrorBody),
              (status = 503, description = "`blobs_unavailable`: no blob store configured", body = ErrorBody)))]
pub async fn status<S: Store>(
    State(state): State<AppState<S>>,
    Auth(session): Auth,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<BlobInfo>, AppError> {
    service(&state)?;
    let blob = owned(&state, &session.account, &id).await?;
    let parts = if blob.state == BlobState::Pending {
        state
            .store()
            .blob_parts(&blob.id)
            .await?
            .into_iter()
            .map(|p| p.part)
            .collect()
    } else {
        Vec::new()
    };
    Ok(Json(info(&blob, parts)))
}

/// `POST /v1/blobs/{id}/parts`: upload URLs for some parts.
#[utoipa::path(post, path = "/v1/blobs/{blob_id}/parts", tag = "blobs", security(("bearer" = [])),
    params(("blob_id" = String, Path, pattern = "^[0-9a-f]{32}$", description = "blob id (32 hex digits)")),
    request_body = PartUrlsRequest,
    responses((status = 200, body = PartUrls),
              (status = 400, description = "`invalid_parts`", body = ErrorBody), (status = 401, description = "no valid session", body = ErrorBody),
              (status = 404, description = "`blob_not_found`", body = ErrorBody),
              (status = 409, description = "`blob_not_pending`", body = ErrorBody), (status = 503, description = "`blobs_unavailable`: no blob store configured", body = ErrorBody)))]
pub async fn part_urls<S: Store>(
    State(state): State<AppState<S>>,
    Auth(session): Auth,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<PartUrlsRequest>,
) -> Result<Json<PartUrls>, AppError> {
    let svc = service(&state)?;
    let blob = owned(&state, &session.account, &id).await?;
    pending(&blob)?;
    if req.parts.is_empty() || req.parts.len() > MAX_PARTS_PER_REQUEST {
        return Err(AppError::bad_request(
            "invalid_parts",
            format!("ask for 1..={MAX_PARTS_PER_REQUEST} parts"),
        ));
    }
    let ttl = svc.url_ttl();
    let expires_at = now_secs().saturating_add(ttl.as_secs());
    let mut urls = Vec::with_capacity(req.parts.len());
    for &part in &req.parts {
        let len = blob.part_len(part).ok_or_else(|| {
            AppError::bad_request(
                "invalid_parts",
                format!("part {part} is past the last part"),
            )
        })?;
        let url = match svc
            .backend()
            .part_url(&blob, part, len, ttl)
            .await
            .map_err(backend_error)?
        {
            Some(url) => url.to_string(),
            None => {
                let t = token::issue(
                    svc.token_key(),
                    &BlobToken {
                        purpose: TokenPurpose::UploadPart,
                        blob: blob.id,
                        part,
                        len,
                        expires_at,
                    },
                );
                format!("/v1/blob-data/{}/{part}?token={t}", blob.id)
            }
        };
        urls.push(PartUrl {
            part,
            method: "PUT".to_owned(),
            url,
            len,
            expires_at,
        });
    }
    Ok(Json(PartUrls { urls }))
}

/// `PUT /v1/blobs/{id}/parts/{n}`: records the ETag of a part uploaded to S3.
#[utoipa::path(put, path = "/v1/blobs/{blob_id}/parts/{part}", tag = "blobs", security(("bearer" = [])),
    params(("blob_id" = String, Path, pattern = "^[0-9a-f]{32}$", description = "blob id (32 hex digits)"),
           ("part" = u64, Path, description = "part number (0-based)")),
    request_body = PartReport,
    responses((status = 204, description = "recorded"),
              (status = 400, description = "`not_supported` (local backend), `invalid_parts`, `invalid_etag`", body = ErrorBody),
              (status = 401, description = "no valid session", body = ErrorBody), (status = 404, description = "`blob_not_found`", body = ErrorBody),
              (status = 409, description = "`blob_not_pending`", body = ErrorBody), (status = 503, description = "`blobs_unavailable`: no blob store configured", body = ErrorBody)))]
pub async fn report_part<S: Store>(
    State(state): State<AppState<S>>,
    Auth(session): Auth,
    ApiPath((id, part)): ApiPath<(String, u64)>,
    ApiJson(req): ApiJson<PartReport>,
) -> Result<StatusCode, AppError> {
    let svc = service(&state)?;
    if svc.backend().kind() != crate::blobs::BlobBackendKind::S3 {
        return Err(AppError::bad_request(
            "not_supported",
            "the local backend records parts itself",
        ));
    }
    let blob = owned(&state, &session.account, &id).await?;
    pending(&blob)?;
    let size = blob
        .part_len(part)
        .ok_or_else(|| AppError::bad_request("invalid_parts", "part is past the last part"))?;
    if req.etag.is_empty() || req.etag.len() > MAX_ETAG_LEN || !req.etag.is_ascii() {
        return Err(AppError::bad_request("invalid_etag", "malformed ETag"));
    }
    let stored = state
        .store()
        .put_blob_part(
            &blob.id,
            &BlobPart {
                part,
                size,
                etag: req.etag,
            },
        )
        .await?;
    if !stored {
        return Err(not_found());
    }
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v1/blobs/{id}/complete`: seals the blob once every part is there.
#[utoipa::path(post, path = "/v1/blobs/{blob_id}/complete", tag = "blobs", security(("bearer" = [])),
    params(("blob_id" = String, Path, pattern = "^[0-9a-f]{32}$", description = "blob id (32 hex digits)")),
    responses((status = 200, body = BlobInfo),
              (status = 400, description = "`wrong_size`: the object is not the announced size (the blob is deleted)", body = ErrorBody),
              (status = 401, description = "no valid session", body = ErrorBody), (status = 404, description = "`blob_not_found`", body = ErrorBody),
              (status = 409, description = "`upload_incomplete`, `blob_not_pending`", body = ErrorBody), (status = 503, description = "`blobs_unavailable`: no blob store configured", body = ErrorBody)))]
pub async fn complete<S: Store>(
    State(state): State<AppState<S>>,
    Auth(session): Auth,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<BlobInfo>, AppError> {
    let svc = service(&state)?;
    let mut blob = owned(&state, &session.account, &id).await?;
    pending(&blob)?;
    let parts = state.store().blob_parts(&blob.id).await?;
    let missing: Vec<u64> = (0..blob.part_count())
        .filter(|n| !parts.iter().any(|p| p.part == *n))
        .take(100)
        .collect();
    if !missing.is_empty() {
        return Err(AppError::conflict(
            "upload_incomplete",
            format!("parts still missing: {missing:?}"),
        ));
    }
    if let Err(err) = svc.backend().complete(&blob, &parts).await {
        if matches!(err, BackendError::WrongSize { .. }) {
            // The stored object is not a blob of the announced size: drop it and its quota.
            let _ = svc.delete(state.store(), &blob).await;
        }
        return Err(backend_error(err));
    }
    if !state.store().complete_blob(&blob.id, now_i64()).await? {
        return Err(AppError::conflict(
            "blob_not_pending",
            "the blob is already complete",
        ));
    }
    blob.state = BlobState::Complete;
    blob.upload_id = None;
    Ok(Json(info(&blob, Vec::new())))
}

/// `GET /v1/blobs/{id}/download`: a download URL. Any account that knows the id may download:
/// the id travels inside encrypted messages, and the bytes are ciphertext.
#[utoipa::path(get, path = "/v1/blobs/{blob_id}/download", tag = "blobs", security(("bearer" = [])),
    params(("blob_id" = String, Path, pattern = "^[0-9a-f]{32}$", description = "blob id (32 hex digits)")),
    responses((status = 200, body = DownloadUrl), (status = 401, description = "no valid session", body = ErrorBody),
              (status = 404, description = "`blob_not_found`: unknown, pending or expired", body = ErrorBody), (status = 503, description = "`blobs_unavailable`: no blob store configured", body = ErrorBody)))]
pub async fn download<S: Store>(
    State(state): State<AppState<S>>,
    Auth(_session): Auth,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<DownloadUrl>, AppError> {
    let svc = service(&state)?;
    let id = path_id(&id)?;
    let blob = match state.store().blob(&id).await? {
        Some(b) if b.state == BlobState::Complete && b.expires_at > now_i64() => b,
        _ => return Err(not_found()),
    };
    let ttl = svc.url_ttl();
    let expires_at = now_secs().saturating_add(ttl.as_secs());
    let url = match svc
        .backend()
        .download_url(&blob, ttl)
        .await
        .map_err(backend_error)?
    {
        Some(url) => url.to_string(),
        None => {
            let t = token::issue(
                svc.token_key(),
                &BlobToken {
                    purpose: TokenPurpose::Download,
                    blob: blob.id,
                    part: 0,
                    len: blob.size,
                    expires_at,
                },
            );
            format!("/v1/blob-data/{}?token={t}", blob.id)
        }
    };
    Ok(Json(DownloadUrl {
        url,
        size: blob.size,
        expires_at,
    }))
}

/// `DELETE /v1/blobs/{id}`: deletes a blob (owner only) and refunds its quota.
#[utoipa::path(delete, path = "/v1/blobs/{blob_id}", tag = "blobs", security(("bearer" = [])),
    params(("blob_id" = String, Path, pattern = "^[0-9a-f]{32}$", description = "blob id (32 hex digits)")),
    responses((status = 204, description = "deleted, quota refunded"), (status = 401, description = "no valid session", body = ErrorBody),
              (status = 404, description = "`blob_not_found`", body = ErrorBody), (status = 503, description = "`blobs_unavailable`: no blob store configured", body = ErrorBody)))]
pub async fn delete<S: Store>(
    State(state): State<AppState<S>>,
    Auth(session): Auth,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, AppError> {
    let svc = service(&state)?;
    let id = path_id(&id)?;
    let blob = match state.store().blob(&id).await? {
        Some(b) if b.account == session.account => b,
        _ => return Err(not_found()),
    };
    svc.delete(state.store(), &blob)
        .await
        .map_err(AppError::internal)?;
    Ok(StatusCode::NO_CONTENT)
}

fn token_error(err: TokenError) -> AppError {
    match err {
        TokenError::Invalid => AppError::client(
            StatusCode::FORBIDDEN,
            "invalid_transfer_token",
            "the transfer token is not valid for this request",
        ),
        TokenError::Expired => AppError::client(
            StatusCode::FORBIDDEN,
            "transfer_token_expired",
            "the transfer token has expired; ask for a new URL",
        ),
    }
}

/// `PUT /v1/blob-data/{id}/{part}?token=…` (local backend): streams one part to disk.
#[utoipa::path(put, path = "/v1/blob-data/{blob_id}/{part}", tag = "blobs",
    params(("blob_id" = String, Path, pattern = "^[0-9a-f]{32}$", description = "blob id (32 hex digits)"),
           ("part" = u64, Path, description = "part number (0-based)"), TokenQuery),
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "exactly the part's length"),
    responses((status = 200, body = PartStored),
              (status = 400, description = "`wrong_size`, `invalid_parts`", body = ErrorBody),
              (status = 403, description = "`invalid_transfer_token`, `transfer_token_expired`", body = ErrorBody),
              (status = 404, description = "`blob_not_found`", body = ErrorBody),
              (status = 409, description = "`blob_not_pending`", body = ErrorBody), (status = 503, description = "`blobs_unavailable`: no blob store configured", body = ErrorBody)))]
pub async fn put_part<S: Store>(
    State(state): State<AppState<S>>,
    ApiPath((id, part)): ApiPath<(String, u64)>,
    ApiQuery(q): ApiQuery<TokenQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<PartStored>, AppError> {
    let svc = service(&state)?;
    let id = path_id(&id)?;
    // The token is checked before a single body byte is read.
    let claims = token::verify(
        svc.token_key(),
        &q.token,
        TokenPurpose::UploadPart,
        &id,
        part,
        now_secs(),
    )
    .map_err(token_error)?;
    let blob = match state.store().blob(&id).await? {
        Some(b) if b.expires_at > now_i64() => b,
        _ => return Err(not_found()),
    };
    pending(&blob)?;
    if blob.part_len(part) != Some(claims.len) {
        return Err(AppError::bad_request("invalid_parts", "no such part"));
    }
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(declared) = declared
        && declared != claims.len
    {
        return Err(AppError::bad_request(
            "wrong_size",
            format!("part {part} must be exactly {} bytes", claims.len),
        ));
    }
    let stream = body
        .into_data_stream()
        .map_err(|e| BackendError::Body(e.to_string()))
        .boxed();
    let etag = svc
        .backend()
        .write_part(&blob.id, part, claims.len, stream)
        .await
        .map_err(backend_error)?;
    let stored = state
        .store()
        .put_blob_part(
            &blob.id,
            &BlobPart {
                part,
                size: claims.len,
                etag: etag.clone(),
            },
        )
        .await?;
    if !stored {
        return Err(AppError::conflict(
            "blob_not_pending",
            "the blob was completed or deleted meanwhile",
        ));
    }
    Ok(Json(PartStored { part, etag }))
}

/// Parses `Range: bytes=N-` or `bytes=N-M` (the only forms served); `M` must be the last byte.
fn range_start(headers: &HeaderMap, size: u64) -> Result<u64, AppError> {
    let Some(value) = headers.get(header::RANGE) else {
        return Ok(0);
    };
    let unsatisfiable = || {
        AppError::client(
            StatusCode::RANGE_NOT_SATISFIABLE,
            "invalid_range",
            "only `Range: bytes=N-` within the blob is served",
        )
    };
    let text = value.to_str().map_err(|_| unsatisfiable())?;
    let spec = text.strip_prefix("bytes=").ok_or_else(unsatisfiable)?;
    let (start, end) = spec.split_once('-').ok_or_else(unsatisfiable)?;
    let start: u64 = start.trim().parse().map_err(|_| unsatisfiable())?;
    let end = end.trim();
    if !end.is_empty() && end.parse::<u64>().ok() != Some(size.saturating_sub(1)) {
        return Err(unsatisfiable());
    }
    if start >= size {
        return Err(unsatisfiable());
    }
    Ok(start)
}

/// `GET /v1/blob-data/{id}?token=…` (local backend): streams a complete blob, from the offset
/// of a `Range: bytes=N-` header if given (to resume a download).
#[utoipa::path(get, path = "/v1/blob-data/{blob_id}", tag = "blobs",
    params(("blob_id" = String, Path, pattern = "^[0-9a-f]{32}$", description = "blob id (32 hex digits)"), TokenQuery,
           ("Range" = Option<String>, Header, description = "`bytes=N-` to resume")),
    responses((status = 200, description = "the blob", content_type = "application/octet-stream", body = Vec<u8>),
              (status = 206, description = "the blob from offset N", content_type = "application/octet-stream", body = Vec<u8>),
              (status = 403, description = "`invalid_transfer_token`, `transfer_token_expired`", body = ErrorBody),
              (status = 404, description = "`blob_not_found`", body = ErrorBody),
              (status = 416, description = "`invalid_range`", body = ErrorBody), (status = 503, description = "`blobs_unavailable`: no blob store configured", body = ErrorBody)))]
pub async fn get_blob<S: Store>(
    State(state): State<AppState<S>>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<TokenQuery>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    let svc = service(&state)?;
    let id = path_id(&id)?;
    token::verify(
        svc.token_key(),
        &q.token,
        TokenPurpose::Download,
        &id,
        0,
        now_secs(),
    )
    .map_err(token_error)?;
    let blob = match state.store().blob(&id).await? {
        Some(b) if b.state == BlobState::Complete && b.expires_at > now_i64() => b,
        _ => return Err(not_found()),
    };
    let start = range_start(&headers, blob.size)?;
    let stream = svc
        .backend()
        .read(&blob, start)
        .await
        .map_err(backend_error)?;
    let body = Body::from_stream(stream.map(|r| r.map_err(std::io::Error::other)));
    let mut response = body.into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(blob.size - start));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if start > 0 {
        *response.status_mut() = StatusCode::PARTIAL_CONTENT;
        if let Ok(v) =
            HeaderValue::from_str(&format!("bytes {start}-{}/{}", blob.size - 1, blob.size))
        {
            response.headers_mut().insert(header::CONTENT_RANGE, v);
        }
    }
    Ok(response)
}

/// The JSON blob routes (mounted in the main router, with its timeout and body limit).
pub fn api_routes<S: Store>() -> Router<AppState<S>> {
    use axum::routing::post;
    Router::new()
        .route("/v1/blobs", post(create::<S>).get(list::<S>))
        .route("/v1/blobs/{blob_id}", get(status::<S>).delete(delete::<S>))
        .route("/v1/blobs/{blob_id}/parts", post(part_urls::<S>))
        .route("/v1/blobs/{blob_id}/parts/{part}", put(report_part::<S>))
        .route("/v1/blobs/{blob_id}/complete", post(complete::<S>))
        .route("/v1/blobs/{blob_id}/download", get(download::<S>))
}

/// The local backend's streaming transfer routes: no body limit (the token fixes the exact
/// length) and their own timeout (`blobs.transfer_timeout_secs`) instead of the API's.
pub fn transfer_routes<S: Store>(state: AppState<S>) -> Router {
    let timeout = Duration::from_secs(state.settings().blobs.transfer_timeout_secs);
    Router::new()
        .route(
            "/v1/blob-data/{blob_id}/{part}",
            put(put_part::<S>).layer(DefaultBodyLimit::disable()),
        )
        .route("/v1/blob-data/{blob_id}", get(get_blob::<S>))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            crate::limits::per_client::<AppState<S>>,
        ))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            timeout,
        ))
        .with_state(state)
}
