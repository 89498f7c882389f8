//! Channels: append-only logs of opaque entries, addressed by a random id and guarded by two
//! capability tokens (read, write). The relay stores only SHA-256 of each token and nothing about
//! who created, writes or reads a channel, so it learns no group membership.
//!
//! Service functions ([`authorize`], [`append`], [`page`]) are shared by the REST handlers here
//! and by the WebSocket's channel subscriptions.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::header::AUTHORIZATION;
use axum::http::{HeaderMap, StatusCode};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use haven_protocol::api::channels::{
    AppendRequest, AppendResponse, CreateChannelRequest, CreateChannelResponse, EntriesPage,
    EntriesQuery, EntryBody,
};
use rand::RngCore as _;
use rand::rngs::OsRng;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::accounts::session::Auth;
use crate::app::state::AppState;
use crate::channels::store::{
    AppendOutcome, ChannelEntry, ChannelQuota, ChannelRecord, NewChannel,
};
use crate::clock::now_i64;
use crate::db::Store;
use crate::error::{ApiJson, AppError, ErrorBody};
use crate::http::{b64, decode_b64, path_id};
use crate::ids::Id;
use crate::realtime::hub::Topic;

/// A channel capability token (32 random bytes): zeroized on drop, no `Debug`.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct ChannelToken([u8; 32]);

impl ChannelToken {
    /// A fresh random token.
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        OsRng.fill_bytes(&mut bytes);
        Self(bytes)
    }

    /// The raw bytes (the WebSocket carries them in binary frames).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// Parses the text form: base64url without padding of 32 bytes (43 characters).
    pub fn parse(text: &str) -> Option<Self> {
        if text.len() != 43 {
            return None;
        }
        let mut bytes = URL_SAFE_NO_PAD.decode(text).ok()?;
        let token = <[u8; 32]>::try_from(bytes.as_slice()).ok().map(Self);
        bytes.zeroize();
        token
    }

    /// The text form.
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0)
    }

    /// SHA-256 of the token, the only form the relay stores.
    pub fn hash(&self) -> [u8; 32] {
        Sha256::digest(self.0).into()
    }
}

/// Which capability a request needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Read entries, subscribe.
    Read,
    /// Append entries.
    Write,
}

/// Checks `token` against the channel's stored hash for `access` (constant time) and returns the
/// channel. Unknown or expired channels are 404 `channel_not_found`; a wrong token is 401
/// `invalid_channel_token`.
pub async fn authorize<S: Store>(
    state: &AppState<S>,
    id: &Id,
    token: &ChannelToken,
    access: Access,
) -> Result<ChannelRecord, AppError> {
    let channel = state
        .store()
        .channel(id, now_i64())
        .await?
        .ok_or_else(|| AppError::not_found("channel_not_found", "no such channel"))?;
    let stored = match access {
        Access::Read => &channel.read_hash,
        Access::Write => &channel.write_hash,
    };
    let presented = token.hash();
    if bool::from(presented.as_slice().ct_eq(stored.as_slice())) {
        Ok(channel)
    } else {
        Err(AppError::unauthorized(
            "invalid_channel_token",
            "the channel token is not valid for this operation",
        ))
    }
}

/// Appends `body` to channel `id` (write token already checked by the caller through
/// [`authorize`]), then wakes subscribers everywhere. Returns the entry's sequence number.
pub async fn append<S: Store>(state: &AppState<S>, id: &Id, body: &[u8]) -> Result<i64, AppError> {
    let limits = &state.settings().channels;
    if body.is_empty() || body.len() > limits.max_entry_bytes {
        return Err(AppError::client(
            StatusCode::PAYLOAD_TOO_LARGE,
            "entry_too_large",
            format!("entries are 1 to {} bytes", limits.max_entry_bytes),
        ));
    }
    let quota = ChannelQuota {
        max_entries: i64::try_from(limits.max_entries).unwrap_or(i64::MAX),
        max_bytes: i64::try_from(limits.max_bytes).unwrap_or(i64::MAX),
    };
    match state
        .store()
        .append_entry(id, body, now_i64(), quota)
        .await?
    {
        AppendOutcome::Appended(seq) => {
            state.hub().publish(&Topic::Channel(*id));
            Ok(seq)
        }
        AppendOutcome::QuotaExceeded => Err(AppError::client(
            StatusCode::INSUFFICIENT_STORAGE,
            "channel_full",
            "the channel's entry count or size limit is reached",
        )),
        _ => Err(AppError::not_found("channel_not_found", "no such channel")),
    }
}

/// Entries after `after`, at most `limit` (capped by the configured page limit), plus whether
/// more follow.
pub async fn page<S: Store>(
    state: &AppState<S>,
    id: &Id,
    after: i64,
    limit: u32,
) -> Result<(Vec<ChannelEntry>, bool), AppError> {
    let limit = limit.clamp(1, state.settings().channels.page_limit);
    let mut entries = state
        .store()
        .entries(id, after.max(0), limit.saturating_add(1))
        .await?;
    let more = entries.len() > limit as usize;
    entries.truncate(limit as usize);
    Ok((entries, more))
}

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
    params(("channel_id" = String, Path, description = "channel id (32 hex digits)")),
    request_body = AppendRequest,
    responses((status = 201, body = AppendResponse),
              (status = 400, description = "malformed input", body = ErrorBody),
              (status = 401, description = "`missing_token`, `invalid_channel_token`", body = ErrorBody),
              (status = 404, description = "`channel_not_found`", body = ErrorBody),
              (status = 413, description = "`entry_too_large`", body = ErrorBody),
              (status = 507, description = "`channel_full`", body = ErrorBody)))]
pub async fn append_entry<S: Store>(
    State(state): State<AppState<S>>,
    Path(channel_id): Path<String>,
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
    authorize(&state, &id, &token, Access::Write).await?;
    let seq = append(&state, &id, &body).await?;
    Ok((StatusCode::CREATED, Json(AppendResponse { seq })))
}

/// Reads history (read token in `Authorization: Bearer`).
#[utoipa::path(get, path = "/v1/channels/{channel_id}/entries", tag = "channels",
    params(("channel_id" = String, Path, description = "channel id (32 hex digits)"), EntriesQuery),
    responses((status = 200, body = EntriesPage),
              (status = 400, description = "malformed input", body = ErrorBody),
              (status = 401, description = "`missing_token`, `invalid_channel_token`", body = ErrorBody),
              (status = 404, description = "`channel_not_found`", body = ErrorBody)))]
pub async fn read_entries<S: Store>(
    State(state): State<AppState<S>>,
    Path(channel_id): Path<String>,
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
    Ok(Json(EntriesPage {
        entries: entries
            .into_iter()
            .map(|e| EntryBody {
                seq: e.seq,
                entry: b64(&e.body),
                created_at: e.created_at,
            })
            .collect(),
        next_after,
        more,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_text_form() {
        let t = ChannelToken::generate();
        let text = t.encode();
        assert_eq!(text.len(), 43);
        let parsed = ChannelToken::parse(&text).unwrap();
        assert_eq!(parsed.hash(), t.hash());
        assert!(ChannelToken::parse(&text[..42]).is_none());
        assert!(ChannelToken::parse(&format!("{}=", &text[..42])).is_none());
        assert!(ChannelToken::parse("").is_none());
    }
}
