//! The vault (`docs/PROTOCOL.md` §11.16): per-account collections of encrypted items with
//! optimistic concurrency, soft delete, restore, history, incremental sync and quotas.
//!
//! The relay stores the two blobs of each revision as it received them (after checking that
//! their sizes are padding buckets plus the item overhead, which every honest client produces),
//! the revision numbers, a per-account change sequence and its own coarse timestamps.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use haven_protocol::api::vault::{
    ChangesQuery, ChangesReply, DeleteQuery, HistoryQuery, HistoryReply, ItemBody,
    ItemWriteRequest, ItemWritten, RevisionBody, UsageReply, VaultConflictBody,
    VaultConflictDetail,
};

use crate::accounts::session::Auth;
use crate::app::state::AppState;
use crate::clock::now_i64;
use crate::db::Store;
use crate::db::error::StoreResult;
use crate::error::{ApiJson, ApiPath, AppError, ErrorBody};
use crate::http::{b64, path_id};
use crate::ids::Id;
use crate::settings::VaultSettings;
use crate::vault::store::{
    VaultBlobs, VaultHead, VaultItemRecord, VaultKey, VaultQuota, VaultWriteOutcome,
};

/// Status of the quota errors: 507 Insufficient Storage.
const QUOTA_STATUS: StatusCode = StatusCode::INSUFFICIENT_STORAGE;

/// Errors of the vault routes: an [`AppError`], or a conflict that also reports the item's
/// current revision (`{"error": {"code", "message", "current_revision", "deleted"}}`).
#[derive(Debug)]
pub enum VaultError {
    /// Any other error, in the usual format.
    App(AppError),
    /// 409 with the current revision.
    Conflict {
        /// `revision_conflict`, `item_deleted` or `item_not_deleted`.
        code: &'static str,
        /// Human message.
        message: &'static str,
        /// The item's current revision (0: no such item).
        current_revision: i64,
        /// Whether the current revision is a tombstone.
        deleted: bool,
    },
}

impl From<AppError> for VaultError {
    fn from(err: AppError) -> Self {
        Self::App(err)
    }
}

impl From<crate::db::error::StoreError> for VaultError {
    fn from(err: crate::db::error::StoreError) -> Self {
        Self::App(err.into())
    }
}

impl IntoResponse for VaultError {
    fn into_response(self) -> Response {
        match self {
            Self::App(err) => err.into_response(),
            Self::Conflict {
                code,
                message,
                current_revision,
                deleted,
            } => {
                let body = VaultConflictBody {
                    error: VaultConflictDetail {
                        code: code.to_owned(),
                        message: message.to_owned(),
                        current_revision: u64::try_from(current_revision).unwrap_or(0),
                        deleted,
                    },
                };
                (StatusCode::CONFLICT, Json(body)).into_response()
            }
        }
    }
}

fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, AppError> {
    q.map(|Query(v)| v)
        .map_err(|e| AppError::bad_request("invalid_query", e.body_text()))
}

fn page_limit(limit: Option<u32>, settings: &VaultSettings) -> Result<u32, AppError> {
    match limit {
        Some(0) => Err(AppError::bad_request(
            "invalid_query",
            "limit must be at least 1",
        )),
        Some(n) => Ok(n.min(settings.max_page)),
        None => Ok(settings.max_page),
    }
}

fn revision_arg(revision: u64) -> Result<i64, AppError> {
    i64::try_from(revision)
        .map_err(|_| AppError::bad_request("invalid_revision", "revision is out of range"))
}

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// Decodes one blob and checks its size: 413 `item_too_large` over `max`, 400
/// `invalid_item_size` when it is not a padding bucket plus the item overhead.
fn decode_blob(field: &'static str, text: &str, max: u64) -> Result<Vec<u8>, AppError> {
    let too_large = || {
        AppError::client(
            StatusCode::PAYLOAD_TOO_LARGE,
            "item_too_large",
            format!("{field} is over {max} bytes"),
        )
    };
    if text.len() as u64 > max.div_ceil(3).saturating_mul(4) {
        return Err(too_large());
    }
    let bytes = STANDARD.decode(text).map_err(|_| {
        AppError::bad_request("invalid_base64", format!("{field} is not valid base64"))
    })?;
    if bytes.len() as u64 > max {
        return Err(too_large());
    }
    if !haven_protocol::vault::is_item_len(bytes.len() as u64) {
        return Err(AppError::bad_request(
            "invalid_item_size",
            format!("{field} length is not a padding bucket plus the item overhead"),
        ));
    }
    Ok(bytes)
}

fn ids(account: Id, collection: &str, item: &str) -> Result<VaultKey, AppError> {
    Ok(VaultKey {
        account,
        collection: path_id(collection)?,
        item: path_id(item)?,
    })
}

/// The current time rounded down to the configured granularity.
fn coarse_now(settings: &VaultSettings) -> i64 {
    let now = now_i64();
    let step = i64::try_from(settings.time_granularity_secs)
        .unwrap_or(1)
        .max(1);
    now - now.rem_euclid(step)
}

fn quota(settings: &VaultSettings) -> VaultQuota {
    VaultQuota {
        max_items: settings.max_items,
        max_bytes: settings.max_bytes,
    }
}

fn written(item_id: Id, head: VaultHead) -> ItemWritten {
    ItemWritten {
        item_id,
        revision: to_u64(head.revision),
        deleted: head.deleted,
        sync_token: to_u64(head.seq),
        created_at: head.created_at,
        updated_at: head.updated_at,
    }
}

fn outcome(key: &VaultKey, out: VaultWriteOutcome) -> Result<Json<ItemWritten>, VaultError> {
    match out {
        VaultWriteOutcome::Written(head) => Ok(Json(written(key.item, head))),
        VaultWriteOutcome::RevisionMismatch {
            current_revision,
            deleted,
        } => Err(VaultError::Conflict {
            code: "revision_conflict",
            message: "expected_revision is not the current revision",
            current_revision,
            deleted,
        }),
        VaultWriteOutcome::ItemDeleted { current_revision } => Err(VaultError::Conflict {
            code: "item_deleted",
            message: "the item is deleted; restore it first",
            current_revision,
            deleted: true,
        }),
        VaultWriteOutcome::ItemNotDeleted { current_revision } => Err(VaultError::Conflict {
            code: "item_not_deleted",
            message: "only a deleted item can be restored",
            current_revision,
            deleted: false,
        }),
        VaultWriteOutcome::NotFound => Err(item_not_found().into()),
        VaultWriteOutcome::ItemQuota => Err(AppError::client(
            QUOTA_STATUS,
            "vault_item_quota_exceeded",
            "the account holds the maximum number of vault items",
        )
        .into()),
        VaultWriteOutcome::ByteQuota => Err(AppError::client(
            QUOTA_STATUS,
            "vault_byte_quota_exceeded",
            "the write would exceed the account's vault storage quota",
        )
        .into()),
    }
}

fn item_not_found() -> AppError {
    AppError::not_found("item_not_found", "no such vault item")
}

fn item_body(item: VaultItemRecord) -> ItemBody {
    ItemBody {
        item_id: item.item_id,
        revision: to_u64(item.revision),
        deleted: item.deleted,
        sync_token: to_u64(item.seq),
        created_at: item.created_at,
        updated_at: item.updated_at,
        body: item.body.as_deref().map(b64),
        meta: item.meta.as_deref().map(b64),
    }
}

fn blobs(req: &ItemWriteRequest, settings: &VaultSettings) -> Result<(Vec<u8>, Vec<u8>), AppError> {
    Ok((
        decode_blob("body", &req.body, settings.max_body_bytes)?,
        decode_blob("meta", &req.meta, settings.max_meta_bytes)?,
    ))
}

/// Creates (`expected_revision` 0) or updates an item.
#[utoipa::path(put, path = "/v1/vault/{collection_id}/items/{item_id}", tag = "vault",
    security(("bearer" = [])),
    params(("collection_id" = String, Path, pattern = "^[0-9a-f]{32}$", description = "collection id (32 hex digits)"),
           ("item_id" = String, Path, pattern = "^[0-9a-f]{32}$", description = "item id (32 hex digits)")),
    request_body = ItemWriteRequest,
    responses((status = 200, body = ItemWritten),
              (status = 400, description = "malformed input, `invalid_item_size`", body = ErrorBody),
              (status = 401, description = "no valid session", body = ErrorBody),
              (status = 409, description = "`revision_conflict`, `item_deleted`", body = VaultConflictBody),
              (status = 413, description = "`item_too_large`", body = ErrorBody),
              (status = 507, description = "`vault_item_quota_exceeded`, `vault_byte_quota_exceeded`", body = ErrorBody)))]
pub async fn put<S: Store>(
    State(state): State<AppState<S>>,
    Auth(session): Auth,
    ApiPath((collection, item)): ApiPath<(String, String)>,
    ApiJson(req): ApiJson<ItemWriteRequest>,
) -> Result<Json<ItemWritten>, VaultError> {
    let settings = &state.settings().vault;
    let key = ids(session.account, &collection, &item)?;
    let expected = revision_arg(req.expected_revision)?;
    let (body, meta) = blobs(&req, settings)?;
    let out = state
        .store()
        .vault_put(
            &key,
            expected,
            VaultBlobs {
                body: &body,
                meta: &meta,
            },
            coarse_now(settings),
            quota(settings),
        )
        .await?;
    outcome(&key, out)
}

/// Reads an item's current revision.
#[utoipa::path(get, path = "/v1/vault/{collection_id}/items/{item_id}", tag = "vault",
    security(("bearer" = [])),
    params(("collection_id" = String, Path, pattern = "^[0-9a-f]{32}$", description = "collection id (32 hex digits)"),
           ("item_id" = String, Path, pattern = "^[0-9a-f]{32}$", description = "item id (32 hex digits)")),
    responses((status = 200, body = ItemBody),
              (status = 400, description = "`invalid_id`", body = ErrorBody),
              (status = 401, description = "no valid session", body = ErrorBody),
              (status = 404, description = "`item_not_found`", body = ErrorBody)))]
pub async fn get<S: Store>(
    State(state): State<AppState<S>>,
    Auth(session): Auth,
    ApiPath((collection, item)): ApiPath<(String, String)>,
) -> Result<Json<ItemBody>, VaultError> {
    let key = ids(session.account, &collection, &item)?;
    let found = state.store().vault_item(&key).await?;
    Ok(Json(item_body(found.ok_or_else(item_not_found)?)))
}

/// Soft-deletes an item (a tombstone revision; purged after the retention period).
#[utoipa::path(delete, path = "/v1/vault/{collection_id}/items/{item_id}", tag = "vault",
    security(("bearer" = [])),
    params(("collection_id" = String, Path, pattern = "^[0-9a-f]{32}$", description = "collection id (32 hex digits)"),
           ("item_id" = String, Path, pattern = "^[0-9a-f]{32}$", description = "item id (32 hex digits)"),
           DeleteQuery),
    responses((status = 200, body = ItemWritten),
              (status = 400, description = "malformed input", body = ErrorBody),
              (status = 401, description = "no valid session", body = ErrorBody),
              (status = 404, description = "`item_not_found`", body = ErrorBody),
              (status = 409, description = "`revision_conflict`, `item_deleted`", body = VaultConflictBody)))]
pub async fn delete<S: Store>(
    State(state): State<AppState<S>>,
    Auth(session): Auth,
    ApiPath((collection, item)): ApiPath<(String, String)>,
    q: Result<Query<DeleteQuery>, QueryRejection>,
) -> Result<Json<ItemWritten>, VaultError> {
    let settings = &state.settings().vault;
    let key = ids(session.account, &collection, &item)?;
    let expected = revision_arg(query(q)?.expected_revision)?;
    let out = state
        .store()
        .vault_delete(&key, expected, coarse_now(settings))
        .await?;
    outcome(&key, out)
}

/// Restores a soft-deleted item with blobs encrypted for revision `expected_revision + 1`.
#[utoipa::path(post, path = "/v1/vault/{collection_id}/items/{item_id}/restore", tag = "vault",
    security(("bearer" = [])),
    params(("collection_id" = String, Path, pattern = "^[0-9a-f]{32}$", description = "collection id (32 hex digits)"),
           ("item_id" = String, Path, pattern = "^[0-9a-f]{32}$", description = "item id (32 hex digits)")),
    request_body = ItemWriteRequest,
    responses((status = 200, body = ItemWritten),
              (status = 400, description = "malformed input, `invalid_item_size`", body = ErrorBody),
              (status = 401, description = "no valid session", body = ErrorBody),
              (status = 404, description = "`item_not_found`", body = ErrorBody),
              (status = 409, description = "`revision_conflict`, `item_not_deleted`", body = VaultConflictBody),
              (status = 413, description = "`item_too_large`", body = ErrorBody),
              (status = 507, description = "`vault_byte_quota_exceeded`", body = ErrorBody)))]
pub async fn restore<S: Store>(
    State(state): State<AppState<S>>,
    Auth(session): Auth,
    ApiPath((collection, item)): ApiPath<(String, String)>,
    ApiJson(req): ApiJson<ItemWriteRequest>,
) -> Result<Json<ItemWritten>, VaultError> {
    let settings = &state.settings().vault;
    let key = ids(session.account, &collection, &item)?;
    let expected = revision_arg(req.expected_revision)?;
    let (body, meta) = blobs(&req, settings)?;
    let out = state
        .store()
        .vault_restore(
            &key,
            expected,
            VaultBlobs {
                body: &body,
                meta: &meta,
            },
            coarse_now(settings),
            quota(settings),
        )
        .await?;
    outcome(&key, out)
}

/// Lists an item's revisions, oldest first, paginated.
#[utoipa::path(get, path = "/v1/vault/{collection_id}/items/{item_id}/history", tag = "vault",
    security(("bearer" = [])),
    params(("collection_id" = String, Path, pattern = "^[0-9a-f]{32}$", description = "collection id (32 hex digits)"),
           ("item_id" = String, Path, pattern = "^[0-9a-f]{32}$", description = "item id (32 hex digits)"),
           HistoryQuery),
    responses((status = 200, body = HistoryReply),
              (status = 400, description = "malformed input", body = ErrorBody),
              (status = 401, description = "no valid session", body = ErrorBody),
              (status = 404, description = "`item_not_found`", body = ErrorBody)))]
pub async fn history<S: Store>(
    State(state): State<AppState<S>>,
    Auth(session): Auth,
    ApiPath((collection, item)): ApiPath<(String, String)>,
    q: Result<Query<HistoryQuery>, QueryRejection>,
) -> Result<Json<HistoryReply>, VaultError> {
    let settings = &state.settings().vault;
    let key = ids(session.account, &collection, &item)?;
    let q = query(q)?;
    let after = revision_arg(q.after.unwrap_or(0))?;
    let limit = page_limit(q.limit, settings)?;
    let rows = state
        .store()
        .vault_history(&key, after, limit.saturating_add(1))
        .await?
        .ok_or_else(item_not_found)?;
    let (rows, more) = within_page(rows, limit, settings.max_page_bytes, |r| {
        blob_len(&r.body) + blob_len(&r.meta)
    });
    let revisions: Vec<RevisionBody> = rows
        .into_iter()
        .map(|r| RevisionBody {
            revision: to_u64(r.revision),
            deleted: r.body.is_none(),
            body: r.body.as_deref().map(b64),
            meta: r.meta.as_deref().map(b64),
            created_at: r.created_at,
        })
        .collect();
    let next_after = if more {
        revisions.last().map(|r| r.revision)
    } else {
        None
    };
    Ok(Json(HistoryReply {
        revisions,
        next_after,
    }))
}

fn blob_len(blob: &Option<Vec<u8>>) -> u64 {
    blob.as_ref().map_or(0, |b| b.len() as u64)
}

/// Keeps at most `limit` rows and stops before the blob bytes exceed `max_bytes` (one row is
/// always kept so a client can make progress). Returns the rows and whether more remain.
fn within_page<T>(
    mut rows: Vec<T>,
    limit: u32,
    max_bytes: u64,
    size: impl Fn(&T) -> u64,
) -> (Vec<T>, bool) {
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let mut more = rows.len() > limit;
    rows.truncate(limit);
    let mut total = 0u64;
    let mut keep = rows.len();
    for (i, row) in rows.iter().enumerate() {
        total = total.saturating_add(size(row));
        if total > max_bytes && i > 0 {
            keep = i;
            more = true;
            break;
        }
    }
    rows.truncate(keep);
    (rows, more)
}

/// Incremental sync: items of a collection changed after `since`, with their current blobs.
#[utoipa::path(get, path = "/v1/vault/{collection_id}/changes", tag = "vault",
    security(("bearer" = [])),
    params(("collection_id" = String, Path, pattern = "^[0-9a-f]{32}$", description = "collection id (32 hex digits)"),
           ChangesQuery),
    responses((status = 200, body = ChangesReply),
              (status = 400, description = "malformed input", body = ErrorBody),
              (status = 401, description = "no valid session", body = ErrorBody),
              (status = 410, description = "`sync_token_expired`: resync with `since=0`", body = ErrorBody)))]
pub async fn changes<S: Store>(
    State(state): State<AppState<S>>,
    Auth(session): Auth,
    ApiPath(collection): ApiPath<String>,
    q: Result<Query<ChangesQuery>, QueryRejection>,
) -> Result<Json<ChangesReply>, VaultError> {
    let settings = &state.settings().vault;
    let collection = path_id(&collection)?;
    let q = query(q)?;
    let since = q.since.unwrap_or(0);
    let since_i = i64::try_from(since)
        .map_err(|_| AppError::bad_request("invalid_query", "since is out of range"))?;
    let limit = page_limit(q.limit, settings)?;
    let page = state
        .store()
        .vault_changes(
            &session.account,
            &collection,
            since_i,
            limit.saturating_add(1),
        )
        .await?;
    if since_i > 0 && since_i < page.purged_seq {
        return Err(AppError::client(
            StatusCode::GONE,
            "sync_token_expired",
            "items were purged since this token; resync from since=0",
        )
        .into());
    }
    let (items, more) = within_page(page.items, limit, settings.max_page_bytes, |i| {
        blob_len(&i.body) + blob_len(&i.meta)
    });
    // On the last page the token moves to the account's head, past changes of other
    // collections and past purged items, so the next call starts from there.
    let sync_token = if more {
        items.last().map_or(since, |i| to_u64(i.seq))
    } else {
        since.max(to_u64(page.last_seq))
    };
    Ok(Json(ChangesReply {
        changes: items.into_iter().map(item_body).collect(),
        sync_token,
        more,
    }))
}

/// The account's vault usage and quotas.
#[utoipa::path(get, path = "/v1/vault/usage", tag = "vault", security(("bearer" = [])),
    responses((status = 200, body = UsageReply),
              (status = 401, description = "no valid session", body = ErrorBody)))]
pub async fn usage<S: Store>(
    State(state): State<AppState<S>>,
    Auth(session): Auth,
) -> Result<Json<UsageReply>, AppError> {
    let settings = &state.settings().vault;
    let usage = state.store().vault_usage(&session.account).await?;
    Ok(Json(UsageReply {
        items: to_u64(usage.items),
        bytes: to_u64(usage.bytes),
        max_items: settings.max_items,
        max_bytes: settings.max_bytes,
    }))
}

/// Purges items soft-deleted more than `retention_secs` before `now` (the background task
/// calls this every `purge_interval_secs`; tests call it with a chosen `now`).
///
/// # Errors
/// Store errors.
pub async fn purge_expired<S: Store>(
    store: &S,
    settings: &VaultSettings,
    now: i64,
) -> StoreResult<u64> {
    let retention = i64::try_from(settings.retention_secs).unwrap_or(i64::MAX);
    store
        .vault_purge_deleted(now.saturating_sub(retention))
        .await
}

/// Runs [`purge_expired`] every `purge_interval_secs` until `stop` turns true.
pub async fn purge_task<S: Store>(
    store: S,
    settings: VaultSettings,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut tick =
        tokio::time::interval(std::time::Duration::from_secs(settings.purge_interval_secs));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                match purge_expired(&store, &settings, now_i64()).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(items = n, "purged deleted vault items"),
                    Err(err) => tracing::error!(%err, "vault purge failed"),
                }
            }
            _ = async { stop.wait_for(|s| *s).await.is_ok() } => break,
        }
    }
}
