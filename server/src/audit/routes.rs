//! The audit log over the admin API (PROTOCOL.md §11.19): `GET /v1/admin/audit` (paginated)
//! and `GET /v1/admin/audit/export` (NDJSON, one event a line, every page).

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use crate::admin::keys::AdminAuth;
use crate::app::state::AppState;
use crate::audit::store::{AuditEvent, AuditQuery};
use crate::audit::{AuditDetail, AuditKind};
use crate::db::Store;
use crate::error::{ApiQuery, AppError, ErrorBody};
use crate::ids::Id;

/// One audit event (a page's item, one line of the export).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditEventView {
    /// Position in the log (the cursor).
    pub id: i64,
    /// The event kind (`login_failed`, `report_filed`, …).
    pub kind: String,
    /// Unix seconds.
    pub at: i64,
    /// The account concerned (an opaque id, never a username).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Id>,
    /// The admin key that acted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<Id>,
    /// Typed details (route template, report id, decision, expiry, counts, prefix hash).
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
}

/// A page of the audit log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditPage {
    /// The events, oldest first.
    pub events: Vec<AuditEventView>,
    /// The cursor of the next page (`after=`), if there may be more.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<i64>,
}

/// Query of `GET /v1/admin/audit`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AuditParams {
    /// Only events at or after this Unix time (default: all kept).
    pub since: Option<i64>,
    /// Only this kind (an [`AuditKind`] name; `kind_pattern_names_every_kind` keeps the pattern
    /// and the kinds together).
    #[param(
        pattern = "^(login_failed|login_locked_out|refresh_token_reused|rate_limited|report_filed|report_opened|report_decided|account_warned|account_suspended|account_banned|account_unbanned|mail_purged|sanction_enforced|address_banned|address_unbanned|admin_action|admin_key_created|admin_key_revoked|key_rotation)$"
    )]
    pub kind: Option<String>,
    /// The previous page's `next`.
    pub after: Option<i64>,
    /// Page size, 1–1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

/// Query of `GET /v1/admin/audit/export`: the filters only (the export pages itself).
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AuditExportParams {
    /// Only events at or after this Unix time (default: all kept).
    pub since: Option<i64>,
    /// Only this kind (an [`AuditKind`] name).
    #[param(
        pattern = "^(login_failed|login_locked_out|refresh_token_reused|rate_limited|report_filed|report_opened|report_decided|account_warned|account_suspended|account_banned|account_unbanned|mail_purged|sanction_enforced|address_banned|address_unbanned|admin_action|admin_key_created|admin_key_revoked|key_rotation)$"
    )]
    pub kind: Option<String>,
}

fn view(e: AuditEvent) -> AuditEventView {
    AuditEventView {
        id: e.id,
        kind: e.kind,
        at: e.at,
        subject: e.subject,
        actor: e.actor,
        detail: e.detail,
    }
}

fn invalid(message: &'static str) -> AppError {
    AppError::bad_request("invalid_query", message)
}

fn kind(kind: Option<&str>) -> Result<Option<AuditKind>, AppError> {
    kind.map(|k| AuditKind::parse(k).ok_or_else(|| invalid("unknown event kind")))
        .transpose()
}

fn query(p: &AuditParams) -> Result<AuditQuery, AppError> {
    let limit = match p.limit.unwrap_or(100) {
        n @ 1..=1000 => n,
        _ => return Err(invalid("limit must be 1–1000")),
    };
    Ok(AuditQuery {
        since: p.since.unwrap_or(0),
        kind: kind(p.kind.as_deref())?,
        after: p.after.unwrap_or(0),
        limit,
    })
}

/// A page of the audit log, oldest first.
#[utoipa::path(get, path = "/v1/admin/audit", tag = "admin", security(("admin_key" = [])),
    params(AuditParams),
    responses((status = 200, body = AuditPage),
              (status = 400, description = "`invalid_query`", body = ErrorBody),
              (status = 401, description = "`missing_admin_key`, `invalid_admin_key`", body = ErrorBody)))]
pub async fn page<S: Store>(
    _admin: AdminAuth,
    State(state): State<AppState<S>>,
    ApiQuery(params): ApiQuery<AuditParams>,
) -> Result<Json<AuditPage>, AppError> {
    let q = query(&params)?;
    let events = state.store().audit_events(&q).await?;
    let next = match events.last() {
        Some(last) if events.len() == q.limit as usize => Some(last.id),
        _ => None,
    };
    Ok(Json(AuditPage {
        events: events.into_iter().map(view).collect(),
        next,
    }))
}

/// The whole (filtered) log as NDJSON, read page by page as it is sent. The export itself is
/// recorded as an admin action.
#[utoipa::path(get, path = "/v1/admin/audit/export", tag = "admin", security(("admin_key" = [])),
    params(AuditExportParams),
    responses((status = 200, description = "NDJSON, one event a line", content_type = "application/x-ndjson"),
              (status = 400, description = "`invalid_query`", body = ErrorBody),
              (status = 401, description = "`missing_admin_key`, `invalid_admin_key`", body = ErrorBody)))]
pub async fn export<S: Store>(
    admin: AdminAuth,
    State(state): State<AppState<S>>,
    ApiQuery(params): ApiQuery<AuditExportParams>,
) -> Result<Response, AppError> {
    let q = AuditQuery {
        since: params.since.unwrap_or(0),
        kind: kind(params.kind.as_deref())?,
        after: 0,
        limit: 1000,
    };
    state
        .audit()
        .record(
            AuditKind::AdminAction,
            None,
            Some(admin.key_id),
            AuditDetail::none().reason("audit_exported"),
        )
        .await;
    let store = state.store().clone();
    let pages = futures_util::stream::unfold(Some(q), move |q| {
        let store = store.clone();
        async move {
            let mut q = q?;
            match store.audit_events(&q).await {
                Ok(events) if events.is_empty() => None,
                Ok(events) => {
                    let full = events.len() == q.limit as usize;
                    let mut text = String::new();
                    for event in &events {
                        if let Ok(line) = serde_json::to_string(&view(event.clone())) {
                            text.push_str(&line);
                            text.push('\n');
                        }
                    }
                    q.after = events.last().map_or(q.after, |e| e.id);
                    Some((
                        Ok::<_, std::io::Error>(text.into_bytes()),
                        full.then_some(q),
                    ))
                }
                Err(err) => {
                    tracing::error!(%err, "audit export failed");
                    Some((Err(std::io::Error::other("audit export failed")), None))
                }
            }
        }
    });
    Ok((
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(pages),
    )
        .into_response())
}

/// The audit admin routes.
pub fn admin_routes<S: Store>() -> axum::Router<AppState<S>> {
    axum::Router::new()
        .route("/v1/admin/audit", axum::routing::get(page::<S>))
        .route("/v1/admin/audit/export", axum::routing::get(export::<S>))
}

#[cfg(test)]
mod tests {
    use super::*;
    use utoipa::IntoParams;

    /// The documented `kind` pattern admits exactly the kinds the relay parses.
    #[test]
    fn kind_pattern_names_every_kind() {
        let names: Vec<&str> = AuditKind::ALL.iter().map(|k| k.as_str()).collect();
        for params in [
            AuditParams::into_params(|| None),
            AuditExportParams::into_params(|| None),
        ] {
            let kind = params.iter().find(|p| p.name == "kind").unwrap();
            let schema = serde_json::to_value(&kind.schema).unwrap();
            let pattern = schema["pattern"].as_str().unwrap();
            let inner = pattern
                .strip_prefix("^(")
                .unwrap()
                .strip_suffix(")$")
                .unwrap();
            assert_eq!(inner.split('|').collect::<Vec<_>>(), names);
        }
    }
}
