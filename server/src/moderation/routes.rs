//! Moderation over HTTP (PROTOCOL.md §11.19, §16.9): the franking key, filing a report, the
//! address-ban middleware, and the admin routes (review queue, decisions, account and address
//! bans; guarded by `AdminAuth`).

use std::net::IpAddr;
use std::time::Duration;

use axum::Json;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use haven_protocol::api::moderation::{
    AddressBanRequest, AddressBanView, DecisionRequest, DecisionResponse, FrankingKeyResponse,
    ReportDetail, ReportPage, ReportRequest, ReportResponse, ReportSummary, SanctionView,
};
use haven_protocol::franking::verify::FrankingError;
use haven_ratelimit::Quota;

use crate::accounts::session::Auth;
use crate::admin::keys::AdminAuth;
use crate::app::state::AppState;
use crate::audit::{AuditDetail, AuditKind};
use crate::channels::service::ChannelToken;
use crate::client_addr::client_ip;
use crate::db::Store;
use crate::error::{ApiJson, ApiPath, ApiQuery, AppError, ErrorBody};
use crate::http::{b64, decode_b64, path_id};
use crate::ids::Id;
use crate::moderation::service::{Applied, Decision, DecisionError, ReportError, Sanctioned};
use crate::moderation::store::ReportRecord;

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

/// Whether requests to `path` are served to banned addresses: the admin API and the health
/// checks, so an operator cannot lock themselves out (the OpenAPI document reads this too).
pub(crate) fn ban_exempt(path: &str) -> bool {
    path.starts_with("/v1/admin/") || path == "/health" || path == "/ready"
}

/// Middleware: requests from a banned address prefix get 403 `address_banned` before anything
/// else runs. The address is the one `client_addr::client_ip` derives (the rate limits'
/// too); it is hashed, never kept. The admin API and the health checks are exempt, so an
/// operator cannot lock themselves out.
pub(crate) async fn refuse_banned_addresses<S: Store>(
    State(state): State<AppState<S>>,
    req: Request,
    next: Next,
) -> Response {
    if !ban_exempt(req.uri().path()) {
        let (parts, body) = req.into_parts();
        if let Some(ip) = client_ip(&parts, state.settings().proxy_hops())
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

// ---------------------------------------------------------------------------------------------
// Admin API (AdminAuth): the review queue, decisions, account and address bans.
// ---------------------------------------------------------------------------------------------

/// Query of `GET /v1/admin/reports`.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ReportQuery {
    /// `pending` (default) or `decided`.
    #[param(pattern = "^(pending|decided)$")]
    pub status: Option<String>,
    /// The previous page's `next` cursor (`created_at:report_id`).
    #[param(pattern = "^-?[0-9]{1,18}:[0-9a-f]{32}$")]
    pub after: Option<String>,
    /// Page size, 1–500 (default 100).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
}

fn summary(record: &ReportRecord) -> ReportSummary {
    let r = &record.report;
    ReportSummary {
        report_id: r.id,
        reporter: r.reporter,
        sender_account: r.sender_account,
        sender_device: r.sender_device,
        destination: b64(&r.destination),
        message_time: r.message_time,
        attributed: r.attributed,
        status: record.status.clone(),
        decision: record.decision.clone(),
        created_at: r.created_at,
    }
}

fn invalid_query(message: &'static str) -> AppError {
    AppError::bad_request("invalid_query", message)
}

fn page_limit(limit: Option<u32>) -> Result<u32, AppError> {
    match limit.unwrap_or(100) {
        n @ 1..=500 => Ok(n),
        _ => Err(invalid_query("limit must be 1–500")),
    }
}

/// The review queue.
#[utoipa::path(get, path = "/v1/admin/reports", tag = "admin", security(("admin_key" = [])),
    params(ReportQuery),
    responses((status = 200, body = ReportPage),
              (status = 400, description = "`invalid_query`", body = ErrorBody),
              (status = 401, description = "`missing_admin_key`, `invalid_admin_key`", body = ErrorBody)))]
pub async fn list_reports<S: Store>(
    admin: AdminAuth,
    State(state): State<AppState<S>>,
    ApiQuery(q): ApiQuery<ReportQuery>,
) -> Result<Json<ReportPage>, AppError> {
    let status = match q.status.as_deref().unwrap_or("pending") {
        "pending" => "pending",
        "decided" => "decided",
        _ => return Err(invalid_query("status is pending or decided")),
    };
    let limit = page_limit(q.limit)?;
    let after = match q.after.as_deref() {
        None => (i64::MIN, Id::from([0u8; 16])),
        Some(text) => {
            let (at, id) = text
                .split_once(':')
                .ok_or_else(|| invalid_query("after is a cursor from an earlier page"))?;
            (
                at.parse()
                    .map_err(|_| invalid_query("after is a cursor from an earlier page"))?,
                id.parse()
                    .map_err(|_| invalid_query("after is a cursor from an earlier page"))?,
            )
        }
    };
    let records = state.store().reports(status, after, limit).await?;
    let next = match records.last() {
        Some(last) if records.len() == limit as usize => {
            Some(format!("{}:{}", last.report.created_at, last.report.id))
        }
        _ => None,
    };
    state
        .audit()
        .record(
            AuditKind::AdminAction,
            None,
            Some(admin.key_id),
            AuditDetail::none().reason("reports_listed"),
        )
        .await;
    Ok(Json(ReportPage {
        reports: records.iter().map(summary).collect(),
        next,
    }))
}

/// One report, its sealed content opened for the reviewer (recorded in the audit log).
#[utoipa::path(get, path = "/v1/admin/reports/{report_id}", tag = "admin", security(("admin_key" = [])),
    params(("report_id" = String, Path, pattern = "^[0-9a-f]{32}$", description = "report id (32 hex digits)")),
    responses((status = 200, body = ReportDetail),
              (status = 401, description = "`missing_admin_key`, `invalid_admin_key`", body = ErrorBody),
              (status = 404, description = "`report_not_found`", body = ErrorBody)))]
pub async fn get_report<S: Store>(
    admin: AdminAuth,
    State(state): State<AppState<S>>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<ReportDetail>, AppError> {
    let id = path_id(&id)?;
    let (record, opened) = state
        .moderation()
        .open_report(&id)
        .await?
        .ok_or_else(report_not_found)?;
    let report = opened.ok_or_else(|| AppError::internal("a stored report does not open"))?;
    state
        .audit()
        .record(
            AuditKind::ReportOpened,
            Some(record.report.sender_account),
            Some(admin.key_id),
            AuditDetail::none().report(id),
        )
        .await;
    Ok(Json(ReportDetail {
        summary: summary(&record),
        content: b64(&report.content),
        message_seq: report.seq,
    }))
}

fn report_not_found() -> AppError {
    AppError::not_found("report_not_found", "no such report")
}

fn parse_decision(text: &str) -> Result<Decision, AppError> {
    match text {
        "dismiss" => Ok(Decision::Dismiss),
        "warn" => Ok(Decision::Warn),
        "suspend" => Ok(Decision::Suspend),
        "ban" => Ok(Decision::Ban),
        _ => Err(AppError::bad_request(
            "invalid_decision",
            "decision is dismiss, warn, suspend or ban",
        )),
    }
}

/// Checks the options of a suspend/ban (`expires_at` in the future, `mail` keep/purge) and
/// returns whether to purge.
fn sanction_options(
    decision: Decision,
    expires_at: Option<i64>,
    mail: Option<&str>,
) -> Result<bool, AppError> {
    let sanction = matches!(decision, Decision::Suspend | Decision::Ban);
    if !sanction && (expires_at.is_some() || mail.is_some()) {
        return Err(AppError::bad_request(
            "invalid_decision",
            "expires_at and mail apply to suspend and ban only",
        ));
    }
    if expires_at.is_some_and(|at| at <= crate::clock::now_i64()) {
        return Err(AppError::bad_request(
            "invalid_decision",
            "expires_at must be in the future",
        ));
    }
    match mail {
        None | Some("keep") => Ok(false),
        Some("purge") => Ok(true),
        Some(_) => Err(AppError::bad_request(
            "invalid_decision",
            "mail is keep or purge",
        )),
    }
}

fn decision_error(err: DecisionError) -> AppError {
    match err {
        DecisionError::NotFound => report_not_found(),
        DecisionError::AlreadyDecided => {
            AppError::conflict("report_decided", "the report was already decided")
        }
        DecisionError::Unattributed => AppError::conflict(
            "report_unattributed",
            "the sender tag did not verify: the relay cannot tell who sent it, so it cannot \
             sanction anyone on this report (use the account ban API on other evidence)",
        ),
        DecisionError::AccountNotFound => {
            AppError::not_found("account_not_found", "no such account")
        }
        DecisionError::Store(e) => e.into(),
    }
}

/// Records a sanction's audit events and tells the account's sockets (a ban revoked its
/// sessions).
async fn after_sanction<S: Store>(
    state: &AppState<S>,
    admin: &AdminAuth,
    account: Id,
    decision: Decision,
    expires_at: Option<i64>,
    applied: &Applied,
) {
    let kind = match decision {
        Decision::Ban => AuditKind::AccountBanned,
        Decision::Suspend => AuditKind::AccountSuspended,
        Decision::Warn => AuditKind::AccountWarned,
        Decision::Dismiss => return,
    };
    state
        .audit()
        .record(
            kind,
            Some(account),
            Some(admin.key_id),
            AuditDetail::none().expires_at(expires_at),
        )
        .await;
    if let Some(purged) = applied.purged {
        state
            .audit()
            .record(
                AuditKind::MailPurged,
                Some(account),
                Some(admin.key_id),
                AuditDetail::none().count(purged.envelopes.saturating_add(purged.blobs)),
            )
            .await;
    }
    if decision == Decision::Ban {
        state.hub().notify_sessions_changed(account);
    }
}

fn decision_response(
    decision: Decision,
    account: Option<Id>,
    applied: &Applied,
) -> Json<DecisionResponse> {
    let purged = applied.purged.unwrap_or_default();
    Json(DecisionResponse {
        decision: decision.as_str().to_owned(),
        account_id: account,
        sessions_revoked: applied.sessions_revoked,
        envelopes_purged: purged.envelopes,
        blobs_purged: purged.blobs,
    })
}

/// Decides a pending report.
#[utoipa::path(post, path = "/v1/admin/reports/{report_id}/decision", tag = "admin",
    security(("admin_key" = [])),
    params(("report_id" = String, Path, pattern = "^[0-9a-f]{32}$", description = "report id (32 hex digits)")),
    request_body = DecisionRequest,
    responses((status = 200, body = DecisionResponse),
              (status = 400, description = "`invalid_decision`", body = ErrorBody),
              (status = 401, description = "`missing_admin_key`, `invalid_admin_key`", body = ErrorBody),
              (status = 404, description = "`report_not_found`, `account_not_found`", body = ErrorBody),
              (status = 409, description = "`report_decided`, `report_unattributed`", body = ErrorBody)))]
pub async fn decide_report<S: Store>(
    admin: AdminAuth,
    State(state): State<AppState<S>>,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<DecisionRequest>,
) -> Result<Json<DecisionResponse>, AppError> {
    let id = path_id(&id)?;
    let decision = parse_decision(&body.decision)?;
    if body.account_id.is_some() {
        return Err(AppError::bad_request(
            "invalid_decision",
            "a report decision applies to the report's sender; account_id is not accepted",
        ));
    }
    let purge = sanction_options(decision, body.expires_at, body.mail.as_deref())?;
    let (record, applied) = state
        .moderation()
        .decide(&id, decision, body.expires_at, purge, Some(admin.key_id))
        .await
        .map_err(decision_error)?;
    let sender = record.report.sender_account;
    state
        .audit()
        .record(
            AuditKind::ReportDecided,
            Some(sender),
            Some(admin.key_id),
            AuditDetail::none()
                .report(id)
                .decision(decision.as_str())
                .expires_at(body.expires_at),
        )
        .await;
    after_sanction(&state, &admin, sender, decision, body.expires_at, &applied).await;
    let sanctioned = matches!(decision, Decision::Suspend | Decision::Ban);
    Ok(decision_response(
        decision,
        sanctioned.then_some(sender),
        &applied,
    ))
}

/// Suspends or bans an account directly (not through a report).
#[utoipa::path(post, path = "/v1/admin/bans/accounts", tag = "admin", security(("admin_key" = [])),
    request_body = DecisionRequest,
    responses((status = 200, body = DecisionResponse),
              (status = 400, description = "`invalid_decision`", body = ErrorBody),
              (status = 401, description = "`missing_admin_key`, `invalid_admin_key`", body = ErrorBody),
              (status = 404, description = "`account_not_found`", body = ErrorBody)))]
pub async fn ban_account<S: Store>(
    admin: AdminAuth,
    State(state): State<AppState<S>>,
    ApiJson(body): ApiJson<DecisionRequest>,
) -> Result<Json<DecisionResponse>, AppError> {
    let decision = parse_decision(&body.decision)?;
    if !matches!(decision, Decision::Suspend | Decision::Ban) {
        return Err(AppError::bad_request(
            "invalid_decision",
            "an account ban is suspend or ban",
        ));
    }
    let account = body
        .account_id
        .ok_or_else(|| AppError::bad_request("invalid_decision", "account_id is required"))?;
    let purge = sanction_options(decision, body.expires_at, body.mail.as_deref())?;
    let applied = state
        .moderation()
        .sanction(&account, decision == Decision::Ban, body.expires_at, purge)
        .await
        .map_err(decision_error)?;
    after_sanction(&state, &admin, account, decision, body.expires_at, &applied).await;
    Ok(decision_response(decision, Some(account), &applied))
}

/// Lifts an account's suspension or ban.
#[utoipa::path(delete, path = "/v1/admin/bans/accounts/{account_id}", tag = "admin",
    security(("admin_key" = [])),
    params(("account_id" = String, Path, pattern = "^[0-9a-f]{32}$", description = "account id (32 hex digits)")),
    responses((status = 204, description = "lifted"),
              (status = 401, description = "`missing_admin_key`, `invalid_admin_key`", body = ErrorBody),
              (status = 404, description = "`sanction_not_found`", body = ErrorBody)))]
pub async fn unban_account<S: Store>(
    admin: AdminAuth,
    State(state): State<AppState<S>>,
    ApiPath(account): ApiPath<String>,
) -> Result<StatusCode, AppError> {
    let account = path_id(&account)?;
    if !state.moderation().lift(&account).await? {
        return Err(AppError::not_found(
            "sanction_not_found",
            "the account is not suspended or banned",
        ));
    }
    state
        .audit()
        .record(
            AuditKind::AccountUnbanned,
            Some(account),
            Some(admin.key_id),
            AuditDetail::none(),
        )
        .await;
    Ok(StatusCode::NO_CONTENT)
}

/// The sanctions in force.
#[utoipa::path(get, path = "/v1/admin/bans/accounts", tag = "admin", security(("admin_key" = [])),
    responses((status = 200, body = Vec<SanctionView>),
              (status = 401, description = "`missing_admin_key`, `invalid_admin_key`", body = ErrorBody)))]
pub async fn list_account_bans<S: Store>(
    _admin: AdminAuth,
    State(state): State<AppState<S>>,
) -> Result<Json<Vec<SanctionView>>, AppError> {
    let list = state.moderation().sanctions().await?;
    Ok(Json(
        list.into_iter()
            .map(|s| SanctionView {
                account_id: s.account,
                kind: if s.banned { "banned" } else { "suspended" }.to_owned(),
                expires_at: s.expires_at,
                created_at: s.created_at,
            })
            .collect(),
    ))
}

/// Parses an operator's address or `addr/len` prefix (the length must be the configured one:
/// the relay only ever hashes prefixes of that length).
fn operator_prefix<S: Store>(state: &AppState<S>, text: &str) -> Result<[u8; 32], AppError> {
    let invalid = |message: String| AppError::bad_request("invalid_address", message);
    let (addr, len) = match text.trim().split_once('/') {
        Some((a, l)) => (
            a,
            Some(
                l.parse::<u8>()
                    .map_err(|_| invalid("the prefix length is not a number".to_owned()))?,
            ),
        ),
        None => (text.trim(), None),
    };
    let ip: IpAddr = addr
        .parse()
        .map_err(|_| invalid("not an IPv4 or IPv6 address".to_owned()))?;
    let settings = state.moderation().settings();
    let configured = match ip.to_canonical() {
        IpAddr::V4(_) => settings.ipv4_prefix_len,
        IpAddr::V6(_) => settings.ipv6_prefix_len,
    };
    if let Some(len) = len
        && len != configured
    {
        return Err(invalid(format!(
            "this relay bans /{configured} prefixes of this address family"
        )));
    }
    Ok(state.moderation().prefix_hash(ip))
}

/// Bans an address prefix (stored as its keyed hash only).
#[utoipa::path(post, path = "/v1/admin/bans/addresses", tag = "admin", security(("admin_key" = [])),
    request_body = AddressBanRequest,
    responses((status = 201, body = AddressBanView),
              (status = 400, description = "`invalid_address`, `invalid_decision`", body = ErrorBody),
              (status = 401, description = "`missing_admin_key`, `invalid_admin_key`", body = ErrorBody)))]
pub async fn ban_address<S: Store>(
    admin: AdminAuth,
    State(state): State<AppState<S>>,
    ApiJson(body): ApiJson<AddressBanRequest>,
) -> Result<(StatusCode, Json<AddressBanView>), AppError> {
    let hash = operator_prefix(&state, &body.address)?;
    let now = crate::clock::now_i64();
    if body.expires_at.is_some_and(|at| at <= now) {
        return Err(AppError::bad_request(
            "invalid_decision",
            "expires_at must be in the future",
        ));
    }
    state.moderation().ban_prefix(hash, body.expires_at).await?;
    state
        .audit()
        .record(
            AuditKind::AddressBanned,
            None,
            Some(admin.key_id),
            AuditDetail::none()
                .prefix_hash(&hash)
                .expires_at(body.expires_at),
        )
        .await;
    Ok((
        StatusCode::CREATED,
        Json(AddressBanView {
            prefix_hash: hex::encode(hash),
            expires_at: body.expires_at,
            created_at: now,
        }),
    ))
}

/// Lifts an address ban, named by its prefix hash (64 hex digits) or by an address in it.
#[utoipa::path(delete, path = "/v1/admin/bans/addresses/{prefix}", tag = "admin",
    security(("admin_key" = [])),
    params(("prefix" = String, Path, pattern = "^([0-9a-f]{64}|[0-9A-Fa-f:.]{2,45})$", description = "prefix hash (64 hex digits) or an address")),
    responses((status = 204, description = "lifted"),
              (status = 400, description = "`invalid_address`", body = ErrorBody),
              (status = 401, description = "`missing_admin_key`, `invalid_admin_key`", body = ErrorBody),
              (status = 404, description = "`ban_not_found`", body = ErrorBody)))]
pub async fn unban_address<S: Store>(
    admin: AdminAuth,
    State(state): State<AppState<S>>,
    ApiPath(prefix): ApiPath<String>,
) -> Result<StatusCode, AppError> {
    let hash = match hex::decode(&prefix)
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok())
    {
        Some(hash) if prefix.len() == 64 => hash,
        _ => operator_prefix(&state, &prefix)?,
    };
    if !state.moderation().unban_prefix(&hash).await? {
        return Err(AppError::not_found("ban_not_found", "no such address ban"));
    }
    state
        .audit()
        .record(
            AuditKind::AddressUnbanned,
            None,
            Some(admin.key_id),
            AuditDetail::none().prefix_hash(&hash),
        )
        .await;
    Ok(StatusCode::NO_CONTENT)
}

/// The address bans in force, as hashes and expiries.
#[utoipa::path(get, path = "/v1/admin/bans/addresses", tag = "admin", security(("admin_key" = [])),
    responses((status = 200, body = Vec<AddressBanView>),
              (status = 401, description = "`missing_admin_key`, `invalid_admin_key`", body = ErrorBody)))]
pub async fn list_address_bans<S: Store>(
    _admin: AdminAuth,
    State(state): State<AppState<S>>,
) -> Result<Json<Vec<AddressBanView>>, AppError> {
    let list = state.moderation().address_bans().await?;
    Ok(Json(
        list.into_iter()
            .map(|b| AddressBanView {
                prefix_hash: hex::encode(b.prefix_hash),
                expires_at: b.expires_at,
                created_at: b.created_at,
            })
            .collect(),
    ))
}

/// The moderation admin routes.
pub fn admin_routes<S: Store>() -> axum::Router<AppState<S>> {
    use axum::routing::{delete, get, post};
    axum::Router::new()
        .route("/v1/admin/reports", get(list_reports::<S>))
        .route("/v1/admin/reports/{report_id}", get(get_report::<S>))
        .route(
            "/v1/admin/reports/{report_id}/decision",
            post(decide_report::<S>),
        )
        .route(
            "/v1/admin/bans/accounts",
            get(list_account_bans::<S>).post(ban_account::<S>),
        )
        .route(
            "/v1/admin/bans/accounts/{account_id}",
            delete(unban_account::<S>),
        )
        .route(
            "/v1/admin/bans/addresses",
            get(list_address_bans::<S>).post(ban_address::<S>),
        )
        .route(
            "/v1/admin/bans/addresses/{prefix}",
            delete(unban_address::<S>),
        )
}
