//! Moderation over HTTP (PROTOCOL.md §11.19, §16.9): the franking key, filing a report, the
//! address-ban middleware, and the admin routes (review queue, decisions, account and address
//! bans; guarded by `AdminAuth`).

use std::time::Duration;

use axum::Json;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use haven_protocol::api::moderation::{FrankingKeyResponse, ReportRequest, ReportResponse};
use haven_protocol::franking::verify::FrankingError;
use haven_ratelimit::Quota;

use crate::accounts::session::{Auth, client_ip};
use crate::app::state::AppState;
use crate::audit::{AuditDetail, AuditKind};
use crate::channels::service::ChannelToken;
use crate::db::Store;
use crate::error::{ApiJson, AppError, ErrorBody};
use crate::http::{b64, decode_b64};
use crate::moderation::service::{ReportError, Sanctioned};

/// Largest report body: the §16.2 header plus the largest content.
const MAX_REPORT_BYTES: usize =
    haven_protocol::franking::REPORT_MIN_LEN + haven_protocol::franking::MAX_CONTENT_LEN;

impl From<Sanctioned> for AppError {
    fn from(s: Sanctioned) -> Self {
        let until = s
            .expires_at
            .map_or_else(|| "indefinitely".to_owned(), |at| format!("until {at}"));
        if s.banned {
            AppError::client(
                StatusCode::FORBIDDEN,
                "account_banned",
                format!("this account is banned {until}"),
            )
        } else {
            AppError::client(
                StatusCode::FORBIDDEN,
                "account_suspended",
                format!("this account is suspended {until}"),
            )
        }
    }
}

impl From<ReportError> for AppError {
    fn from(err: ReportError) -> Self {
        match err {
            ReportError::Invalid => {
                AppError::bad_request("invalid_report", "the report does not decode (§16.2)")
            }
            ReportError::NotRecipient => AppError::client(
                StatusCode::FORBIDDEN,
                "not_recipient",
                "only the recipient of a message (or a holder of the channel's read token) may report it",
            ),
            ReportError::Expired => AppError::client(
                StatusCode::GONE,
                "report_expired",
                "the message is older than the report window",
            ),
            ReportError::Unverified(reason) => AppError::client(
                StatusCode::UNPROCESSABLE_ENTITY,
                "report_unverified",
                format!("the report does not verify: {}", unverified_reason(reason)),
            ),
            ReportError::Store(e) => e.into(),
            ReportError::Seal => AppError::internal("sealing a report failed"),
        }
    }
}

/// A stable word per §16.6 step, for the message of 422 `report_unverified`.
fn unverified_reason(err: FrankingError) -> &'static str {
    match err {
        FrankingError::WrongFrankingKey => "wrong_franking_key",
        FrankingError::StampMismatch => "stamp_mismatch",
        FrankingError::CommitmentMismatch => "commitment_mismatch",
        FrankingError::ContentTooLarge { .. } => "content_too_large",
        FrankingError::TagMismatch => "tag_mismatch",
        FrankingError::InvalidPublicKey => "invalid_public_key",
        _ => "unverified",
    }
}

/// Refuses a sanctioned account with 403 `account_suspended` / `account_banned` (sends,
/// certificates: served from the cache), recording the refusal.
pub(crate) async fn refuse_sanctioned<S: Store>(
    state: &AppState<S>,
    account: &crate::ids::Id,
) -> Result<(), AppError> {
    match state.moderation().check_account(account).await {
        Ok(()) => Ok(()),
        Err(s) => {
            state
                .audit()
                .record(
                    AuditKind::SanctionEnforced,
                    Some(*account),
                    None,
                    AuditDetail::none().reason(if s.banned { "banned" } else { "suspended" }),
                )
                .await;
            Err(s.into())
        }
    }
}

/// As [`refuse_sanctioned`], read from the database (logins and refreshes).
pub(crate) async fn refuse_sanctioned_now<S: Store>(
    state: &AppState<S>,
    account: &crate::ids::Id,
) -> Result<(), AppError> {
    match state.moderation().check_account_now(account).await? {
        Ok(()) => Ok(()),
        Err(s) => {
            state
                .audit()
                .record(
                    AuditKind::SanctionEnforced,
                    Some(*account),
                    None,
                    AuditDetail::none().reason(if s.banned { "banned" } else { "suspended" }),
                )
                .await;
            Err(s.into())
        }
    }
}

/// The relay's franking keys (PROTOCOL.md §16.9).
#[utoipa::path(get, path = "/v1/franking/key", tag = "moderation",
    responses((status = 200, body = FrankingKeyResponse)))]
pub async fn franking_key<S: Store>(State(state): State<AppState<S>>) -> Json<FrankingKeyResponse> {
    let keys = state.moderation().keys();
    Json(FrankingKeyResponse {
        franking_key: b64(&keys.franking_key().encode()),
        previous: keys
            .previous_keys()
            .iter()
            .map(|k| b64(&k.encode()))
            .collect(),
    })
}

/// Files an abuse report (PROTOCOL.md §16.6, §16.9).
#[utoipa::path(post, path = "/v1/reports", tag = "moderation", security(("bearer" = [])),
    request_body = ReportRequest,
    responses((status = 202, body = ReportResponse),
              (status = 400, description = "`invalid_report`, malformed input", body = ErrorBody),
              (status = 401, description = "no valid session", body = ErrorBody),
              (status = 403, description = "`not_recipient`", body = ErrorBody),
              (status = 410, description = "`report_expired`", body = ErrorBody),
              (status = 422, description = "`report_unverified`", body = ErrorBody),
              (status = 429, description = "too many reports", body = ErrorBody)))]
pub async fn file_report<S: Store>(
    State(state): State<AppState<S>>,
    Auth(session): Auth,
    ApiJson(req): ApiJson<ReportRequest>,
) -> Result<(StatusCode, Json<ReportResponse>), AppError> {
    let body = decode_b64("report", &req.report, MAX_REPORT_BYTES)?;
    let token = match &req.read_token {
        Some(text) => Some(ChannelToken::parse(text).ok_or_else(|| {
            AppError::bad_request("invalid_channel_token", "read_token is not a channel token")
        })?),
        None => None,
    };
    let day = Duration::from_secs(86_400);
    crate::limits::hit_shared(
        &state,
        &crate::limits::keyed(&state, "reports", &session.account),
        Quota::new(state.moderation().settings().reports_per_day, day),
    )
    .await?;
    let filed = state
        .moderation()
        .file_report(session.account, &body, token.as_ref())
        .await;
    let filed = match filed {
        Ok(f) => f,
        Err(err) => {
            if let ReportError::Unverified(reason) = &err {
                metrics::counter!("haven_reports_refused_total", "reason" => unverified_reason(*reason))
                    .increment(1);
            }
            return Err(err.into());
        }
    };
    if filed.new {
        state
            .audit()
            .record(
                AuditKind::ReportFiled,
                Some(filed.sender),
                None,
                AuditDetail::none()
                    .report(filed.id)
                    .attributed(filed.attributed),
            )
            .await;
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(ReportResponse {
            report_id: filed.id,
            attributed: filed.attributed,
        }),
    ))
}

/// Middleware: requests from a banned address prefix get 403 `address_banned` before anything
/// else runs. The address is the one `accounts::session::client_ip` derives (the rate limits'
/// too); it is hashed, never kept. The admin API and the health checks are exempt, so an
/// operator cannot lock themselves out.
pub(crate) async fn refuse_banned_addresses<S: Store>(
    State(state): State<AppState<S>>,
    req: Request,
    next: Next,
) -> Response {
    let path = req.uri().path();
    let exempt = path.starts_with("/v1/admin/") || path == "/health" || path == "/ready";
    if !exempt {
        let (parts, body) = req.into_parts();
        if let Some(ip) = client_ip(&parts, state.settings().trusted_proxy)
            && state.moderation().address_banned(ip).await
        {
            metrics::counter!("haven_address_ban_refusals_total").increment(1);
            return AppError::client(
                StatusCode::FORBIDDEN,
                "address_banned",
                "requests from this network are refused",
            )
            .into_response();
        }
        return next.run(Request::from_parts(parts, body)).await;
    }
    next.run(req).await
}
