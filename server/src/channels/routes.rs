//! The channels' HTTP handlers (PROTOCOL.md §11.15).

use axum::Json;
use axum::extract::{Query, State};
use axum::http::header::AUTHORIZATION;
use axum::http::{HeaderMap, StatusCode};
use haven_protocol::api::channels::{
    AppendRequest, AppendResponse, CreateChannelRequest, CreateChannelResponse, EntriesPage,
    EntriesQuery, EntryBody,
};
use haven_protocol::api::messages::FrankingBody;

use crate::accounts::session::Auth;
use crate::app::state::AppState;
use crate::channels::service::{Access, ChannelToken, append, authorize, entry_franking, page};
use crate::channels::store::NewChannel;
use crate::clock::now_i64;
use crate::db::Store;
use crate::error::{ApiJson, ApiPath, AppError, ErrorBody};
use crate::http::{b64, decode_b64, path_id};
use crate::ids::Id;
use crate::moderation::stamp::decode_commitment;

/// The capability token from `Authorization: Bearer <token>`.
fn bearer_token(headers: &HeaderMap) -> Result<ChannelToken, AppError> {
    let header = headers
        .get(AUTHORIZATION)
        .ok_or_else(|| AppError::unauthorized("missing_token", "a channel token is required"))?;
    header
        .to_str()
        .ok()
        .and_then(|h| h.strip_prefix("Bearer "))
        .and_then(|t| ChannelToken::parse(t.trim()))
        .ok_or_else(|| {
            AppError::unauthorized(
                "invalid_channel_token",
                "expected Bearer and a 43-character channel token",
            )
        })
}

/// Creates a channel. The caller must be logged in (abuse control), but the channel records
/// nothing about who created it.
#[utoipa::path(post, path = "/v1/channels", tag = "channels", security(("bearer" = [])),
    request_body = CreateChannelRequest,
    responses((status = 201, body = CreateChannelResponse),
              (status = 400, description = "`invalid_ttl` or malformed body", body = ErrorBody),
              (status = 401, description = "no valid session", body = ErrorBody)))]
pub async fn create<S: Store>(
    State(state): State<AppState<S>>,
    Auth(_session): Auth,
    ApiJson(req): ApiJson<CreateChannelRequest>,
) -> Result<(StatusCode, Json<CreateChannelResponse>), AppError> {
    let max = state.settings().channels.max_ttl_secs;
    let ttl = req.ttl_secs.unwrap_or(max);
    if !(60..=max).contains(&ttl) {
        return Err(AppError::bad_request(
            "invalid_ttl",
            format!("ttl_secs must be 60 to {max}"),
        ));
    }
    let (read, write) = (ChannelToken::generate(), ChannelToken::generate());
    let now = now_i64();
    let channel = NewChannel {
        id: Id::random(),
        read_hash: read.hash(),
        write_hash: write.hash(),
        created_at: now,
        expires_at: now.saturating_add(i64::try_from(ttl).unwrap_or(i64::MAX)),
    };
    state.store().create_channel(&channel).await?;
    Ok((
        StatusCode::CREATED,
        Json(CreateChannelResponse {
            channel_id: channel.id,
            read_token: read.encode(),
            write_token: write.encode(),
            expires_at: channel.expires_at,
        }),
    ))
}

/// Appends an entry (write token in `Authorization: Bearer`).
#[utoipa::path(post, path = "/v1/channels/{channel_id}/entries", tag = "channels",
    params(("channel_id" = String, Path, pattern = "^[0-9a-f]{32}$", description = "channel id (32 hex digits)")),
    request_body = AppendRequest,
    responses((status = 201, body = AppendResponse),
              (status = 400, description = "malformed input, `invalid_franking_commitment`", body = ErrorBody),
              (status = 401, description = "`missing_token`, `invalid_channel_token`", body = ErrorBody),
              (status = 404, description = "`channel_not_found`", body = ErrorBody),
              (status = 413, description = "`entry_too_large`", body = ErrorBody),
              (status = 507, description = "`channel_full`", body = ErrorBody)))]
pub async fn append_entry<S: Store>(
    State(state): State<AppState<S>>,
    ApiPath(channel_id): ApiPath<String>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<AppendRequest>,
) -> Result<(StatusCode, Json<AppendResponse>), AppError> {
    let id = path_id(&channel_id)?;
    let token = bearer_token(&headers)?;
    let max = state.settings().channels.max_entry_bytes;
    let body = decode_b64("entry", &req.entry, max).map_err(|e| match e.code() {
        "field_too_large" => AppError::client(
            StatusCode::PAYLOAD_TOO_LARGE,
            "entry_too_large",
            format!("entries are 1 to {max} bytes"),
        ),
        _ => e,
    })?;
    let commitment = decode_commitment(req.franking_commitment.as_deref())?;
    authorize(&state, &id, &token, Access::Write).await?;
    let seq = append(&state, &id, &body, commitment.as_ref()).await?;
    Ok((StatusCode::CREATED, Json(AppendResponse { seq })))
}

/// Reads history (read token in `Authorization: Bearer`).
#[utoipa::path(get, path = "/v1/channels/{channel_id}/entries", tag = "channels",
    params(("channel_id" = String, Path, pattern = "^[0-9a-f]{32}$", description = "channel id (32 hex digits)"), EntriesQuery),
    responses((status = 200, body = EntriesPage),
              (status = 400, description = "malformed input", body = ErrorBody),
              (status = 401, description = "`missing_token`, `invalid_channel_token`", body = ErrorBody),
              (status = 404, description = "`channel_not_found`", body = ErrorBody)))]
pub async fn read_entries<S: Store>(
    State(state): State<AppState<S>>,
    ApiPath(channel_id): ApiPath<String>,
    query: Result<Query<EntriesQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
) -> Result<Json<EntriesPage>, AppError> {
    let id = path_id(&channel_id)?;
    let Query(query) = query.map_err(|_| {
        AppError::bad_request(
            "invalid_query",
            "after and limit must be non-negative integers",
        )
    })?;
    let token = bearer_token(&headers)?;
    let after = i64::try_from(query.after)
        .map_err(|_| AppError::bad_request("invalid_query", "after is too large"))?;
    let limit = query.limit.unwrap_or(100);
    if limit == 0 || limit > state.settings().channels.page_limit {
        return Err(AppError::bad_request(
            "invalid_query",
            format!(
                "limit must be 1 to {}",
                state.settings().channels.page_limit
            ),
        ));
    }
    authorize(&state, &id, &token, Access::Read).await?;
    let (entries, more) = page(&state, &id, after, limit).await?;
    let next_after = entries.last().map_or(after, |e| e.seq);
    let stamp_key = &state.secrets().franking_stamp;
    Ok(Json(EntriesPage {
        entries: entries
            .iter()
            .map(|e| EntryBody {
                seq: e.seq,
                entry: b64(&e.body),
                created_at: e.created_at,
                franking: entry_franking(stamp_key, &id, e).map(|f| FrankingBody {
                    commitment: b64(&f.commitment),
                    stamp: b64(&f.stamp),
                }),
            })
            .collect(),
        next_after,
        more,
    }))
}
