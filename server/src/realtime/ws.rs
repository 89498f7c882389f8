//! The WebSocket: `GET /v1/ws` (one socket per device) and `POST /v1/ws/ticket`.
//!
//! Authentication happens before the upgrade, with `Authorization: Bearer <access token>`
//! (native clients) or `?ticket=` (browsers, which cannot set headers on a WebSocket). A refused
//! request is an ordinary HTTP error in the relay's JSON format and changes nothing (an
//! `Origin` that is not allowed is refused before a ticket is spent). Frames are specified in
//! [`frame`] and PROTOCOL.md §11.14; the per-socket loop is in [`conn`].

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use haven_protocol::api::websocket::{TicketResponse, WsQuery};
use rand::RngCore as _;
use rand::rngs::OsRng;
use sha2::{Digest as _, Sha256};
use zeroize::Zeroize as _;

use crate::accounts::session::{Auth, Session};
use crate::app::state::AppState;
use crate::clock::now_i64;
use crate::db::Store;
use crate::error::{AppError, ErrorBody};
use crate::realtime::hub::DeviceKey;

/// Issues a single-use ticket for opening the WebSocket as this session's device. The relay
/// stores only SHA-256 of it.
#[utoipa::path(post, path = "/v1/ws/ticket", tag = "websocket", security(("bearer" = [])),
    responses((status = 201, body = TicketResponse),
              (status = 401, description = "no valid session", body = ErrorBody)))]
pub async fn ticket<S: Store>(
    State(state): State<AppState<S>>,
    Auth(session): Auth,
) -> Result<(StatusCode, Json<TicketResponse>), AppError> {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    let hash: [u8; 32] = Sha256::digest(bytes).into();
    let ttl = state.settings().ws.ticket_ttl_secs;
    let expires_at = now_i64().saturating_add(i64::try_from(ttl).unwrap_or(i64::MAX));
    state
        .store()
        .put_ticket(&hash, &session, expires_at)
        .await?;
    let ticket = URL_SAFE_NO_PAD.encode(bytes);
    bytes.zeroize();
    Ok((
        StatusCode::CREATED,
        Json(TicketResponse {
            ticket,
            expires_in: ttl,
        }),
    ))
}

fn invalid_ticket() -> AppError {
    AppError::unauthorized("invalid_ticket", "the ticket is unknown, used or expired")
}

/// SHA-256 of a well-formed ticket (43 base64url characters); 401 `invalid_ticket` otherwise.
fn ticket_hash(text: &str) -> Result<[u8; 32], AppError> {
    if text.len() != 43 {
        return Err(invalid_ticket());
    }
    let mut bytes = URL_SAFE_NO_PAD.decode(text).map_err(|_| invalid_ticket())?;
    let hash: [u8; 32] = Sha256::digest(&bytes).into();
    bytes.zeroize();
    Ok(hash)
}

/// Spends the ticket whose hash is `hash` and returns its session.
async fn ticket_session<S: Store>(
    state: &AppState<S>,
    hash: &[u8; 32],
) -> Result<Session, AppError> {
    let session = state
        .store()
        .take_ticket(hash, now_i64())
        .await?
        .ok_or_else(invalid_ticket)?;
    // The session may have ended since the ticket was issued.
    if !state
        .store()
        .session_valid(&session.account, &session.device, &session.family)
        .await?
    {
        return Err(AppError::unauthorized(
            "session_revoked",
            "this session is no longer valid",
        ));
    }
    Ok(session)
}

/// Opens the device's WebSocket (see PROTOCOL.md §11.14). A newer socket of the same device
/// replaces this one (close code 4000).
#[utoipa::path(get, path = "/v1/ws", tag = "websocket", security(("bearer" = [])),
    params(WsQuery),
    responses((status = 101, description = "switching to the WebSocket protocol"),
              (status = 400, description = "`not_websocket`, `invalid_query`", body = ErrorBody),
              (status = 401, description = "`missing_token`, `invalid_token`, `token_expired`, `session_revoked`, `invalid_ticket`", body = ErrorBody),
              (status = 403, description = "`origin_not_allowed`", body = ErrorBody)))]
pub async fn upgrade<S: Store>(
    State(state): State<AppState<S>>,
    headers: HeaderMap,
    query: Result<Query<WsQuery>, QueryRejection>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
    auth: Result<Auth, AppError>,
) -> Response {
    match authorize(&state, &headers, query, ws, auth).await {
        Ok((ws, session, device)) => {
            let cfg = &state.settings().ws;
            let max = cfg.max_message_bytes;
            ws.read_buffer_size(cfg.read_buffer_bytes)
                .write_buffer_size(0)
                .max_write_buffer_size(max.saturating_mul(4).max(1 << 20))
                .max_message_size(max)
                .max_frame_size(max)
                .on_upgrade(move |socket| {
                    crate::realtime::conn::run(state, session, device, socket)
                })
        }
        Err(err) => err.into_response(),
    }
}

/// What a socket request authenticates with: an access token (already checked) or a ticket
/// (checked when spent).
enum Credential {
    Session(Session),
    Ticket([u8; 32]),
}

async fn authorize<S: Store>(
    state: &AppState<S>,
    headers: &HeaderMap,
    query: Result<Query<WsQuery>, QueryRejection>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
    auth: Result<Auth, AppError>,
) -> Result<(WebSocketUpgrade, Session, DeviceKey), AppError> {
    if let Some(origin) = headers.get(header::ORIGIN) {
        let allowed = origin
            .to_str()
            .is_ok_and(|o| state.settings().ws.allowed_origins.iter().any(|a| a == o));
        if !allowed {
            return Err(AppError::client(
                StatusCode::FORBIDDEN,
                "origin_not_allowed",
                "this origin may not open a WebSocket",
            ));
        }
    }
    let Query(query) = query.map_err(|_| {
        AppError::bad_request("invalid_query", "the only query parameter is ticket")
    })?;
    // Credentials are checked before the upgrade itself (401 before 400), but a ticket is only
    // spent once the request is a valid upgrade: a refused request changes nothing.
    let credential = match &query.ticket {
        Some(ticket) => Credential::Ticket(ticket_hash(ticket)?),
        None => Credential::Session(auth?.0),
    };
    let ws = ws.map_err(|_| {
        AppError::bad_request(
            "not_websocket",
            "expected a WebSocket upgrade request (HTTP/1.1 GET with Upgrade: websocket)",
        )
    })?;
    let session = match credential {
        Credential::Session(session) => session,
        Credential::Ticket(hash) => ticket_session(state, &hash).await?,
    };
    let device = state
        .store()
        .device(&session.account, &session.device)
        .await?
        .ok_or_else(|| {
            AppError::unauthorized("session_revoked", "this session is no longer valid")
        })?;
    let key = DeviceKey {
        account: session.account,
        device: device.number,
    };
    Ok((ws, session, key))
}
