//! The security audit log (PROTOCOL.md §11.19): what happened to whom and by which admin key,
//! with coarse times, never an address, a username or content.
//!
//! An event is a [`AuditKind`], a time in Unix seconds, an optional subject (an opaque
//! account id), an optional actor (an admin key id) and an [`AuditDetail`] built only from typed
//! fields (route templates, report ids, decisions, expiries, counts, keyed prefix hashes), so no
//! caller can put free text into it. [`Audit`] records events for the routes; recording never
//! fails a request: a store error is logged and counted (`haven_audit_write_failures_total`).
//! Every recorded kind is counted in `haven_audit_events_total{kind}`.

pub mod routes;
pub mod store;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::clock::now_i64;
use crate::ids::Id;
use store::{AuditStore, NewAuditEvent};

/// What an audit event records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AuditKind {
    /// An OPAQUE login (or re-authentication, recovery) failed: wrong password or TOTP code.
    LoginFailed,
    /// A login was refused because the account's failure limit is reached.
    LoginLockedOut,
    /// A spent refresh token was presented; its session was revoked.
    RefreshTokenReused,
    /// A per-address request limit was hit (at most one event per route and minute per
    /// instance; the counter counts all).
    RateLimited,
    /// A user filed an abuse report.
    ReportFiled,
    /// An admin opened a report's sealed content.
    ReportOpened,
    /// An admin decided a report.
    ReportDecided,
    /// An account was warned.
    AccountWarned,
    /// An account was suspended.
    AccountSuspended,
    /// An account was banned.
    AccountBanned,
    /// An account's suspension or ban was lifted by an admin.
    AccountUnbanned,
    /// An account's own mailboxes were purged by a decision.
    MailPurged,
    /// A sanctioned account was refused (login, refresh, send, certificate).
    SanctionEnforced,
    /// An address prefix was banned.
    AddressBanned,
    /// An address prefix ban was lifted.
    AddressUnbanned,
    /// Any other admin action (reads of the log, of the review queue).
    AdminAction,
    /// An admin key was created.
    AdminKeyCreated,
    /// An admin key was revoked.
    AdminKeyRevoked,
    /// A franking key was rotated.
    KeyRotation,
}

impl AuditKind {
    /// Every kind, for parsing and metrics.
    pub const ALL: [Self; 19] = [
        Self::LoginFailed,
        Self::LoginLockedOut,
        Self::RefreshTokenReused,
        Self::RateLimited,
        Self::ReportFiled,
        Self::ReportOpened,
        Self::ReportDecided,
        Self::AccountWarned,
        Self::AccountSuspended,
        Self::AccountBanned,
        Self::AccountUnbanned,
        Self::MailPurged,
        Self::SanctionEnforced,
        Self::AddressBanned,
        Self::AddressUnbanned,
        Self::AdminAction,
        Self::AdminKeyCreated,
        Self::AdminKeyRevoked,
        Self::KeyRotation,
    ];

    /// The stored and exported name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::LoginFailed => "login_failed",
            Self::LoginLockedOut => "login_locked_out",
            Self::RefreshTokenReused => "refresh_token_reused",
            Self::RateLimited => "rate_limited",
            Self::ReportFiled => "report_filed",
            Self::ReportOpened => "report_opened",
            Self::ReportDecided => "report_decided",
            Self::AccountWarned => "account_warned",
            Self::AccountSuspended => "account_suspended",
            Self::AccountBanned => "account_banned",
            Self::AccountUnbanned => "account_unbanned",
            Self::MailPurged => "mail_purged",
            Self::SanctionEnforced => "sanction_enforced",
            Self::AddressBanned => "address_banned",
            Self::AddressUnbanned => "address_unbanned",
            Self::AdminAction => "admin_action",
            Self::AdminKeyCreated => "admin_key_created",
            Self::AdminKeyRevoked => "admin_key_revoked",
            Self::KeyRotation => "key_rotation",
        }
    }

    /// Parses a stored or queried name.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == text)
    }
}

/// The details of an event: typed fields only, so an address, a username or content cannot be
/// expressed. Serialized as a JSON object without the absent fields.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditDetail {
    #[serde(skip_serializing_if = "Option::is_none")]
    route: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    report_id: Option<Id>,
    #[serde(skip_serializing_if = "Option::is_none")]
    decision: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    expires_at: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    prefix_hash: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    count: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    attributed: Option<bool>,
}

impl AuditDetail {
    /// No details.
    pub fn none() -> Self {
        Self::default()
    }

    /// The route *template* (e.g. `/v1/messages/{account_id}`), from axum's `MatchedPath`, which
    /// names no id or address.
    pub fn route(mut self, template: &axum::extract::MatchedPath) -> Self {
        self.route = Some(template.as_str().to_owned());
        self
    }

    /// A fixed reason (a code of this crate, never user input).
    pub fn reason(mut self, reason: &'static str) -> Self {
        self.reason = Some(reason.to_owned());
        self
    }

    /// The report concerned.
    pub fn report(mut self, id: Id) -> Self {
        self.report_id = Some(id);
        self
    }

    /// A moderation decision (a fixed name).
    pub fn decision(mut self, decision: &'static str) -> Self {
        self.decision = Some(decision.to_owned());
        self
    }

    /// When a sanction or ban expires.
    pub fn expires_at(mut self, at: Option<i64>) -> Self {
        self.expires_at = at;
        self
    }

    /// The keyed HMAC of a banned address prefix (never the prefix).
    pub fn prefix_hash(mut self, hash: &[u8; 32]) -> Self {
        self.prefix_hash = Some(hex::encode(hash));
        self
    }

    /// A count (events suppressed, rows purged).
    pub fn count(mut self, count: u64) -> Self {
        self.count = Some(count);
        self
    }

    /// Whether a report's sender tag verified.
    pub fn attributed(mut self, attributed: bool) -> Self {
        self.attributed = Some(attributed);
        self
    }

    /// The stored JSON text.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| "{}".to_owned())
    }
}

/// Records audit events (cheap to clone).
pub struct Audit<S> {
    store: S,
    /// Last minute a `rate_limited` event was written per route template, and how many hits
    /// were not written since.
    throttle: Arc<Mutex<HashMap<String, (i64, u64)>>>,
}

impl<S: Clone> Clone for Audit<S> {
    fn clone(&self) -> Self {
        Self {
            store: self.store.clone(),
            throttle: Arc::clone(&self.throttle),
        }
    }
}

impl<S: AuditStore + Clone + Send + Sync + 'static> Audit<S> {
    /// Records into `store`.
    pub fn new(store: S) -> Self {
        Self {
            store,
            throttle: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Records an event now. Never fails: a store error is logged and counted.
    pub async fn record(
        &self,
        kind: AuditKind,
        subject: Option<Id>,
        actor: Option<Id>,
        detail: AuditDetail,
    ) {
        metrics::counter!("haven_audit_events_total", "kind" => kind.as_str()).increment(1);
        let event = NewAuditEvent {
            kind,
            at: now_i64(),
            subject,
            actor,
            detail,
        };
        if let Err(err) = self.store.record_audit(&event).await {
            metrics::counter!("haven_audit_write_failures_total").increment(1);
            tracing::error!(%err, kind = kind.as_str(), "audit event not recorded");
        }
    }

    /// Records a rate-limit hit on `route`: counted always, written at most once per route
    /// template and minute (an attacker must not be able to fill the log), with the number of
    /// hits not written since the last event.
    pub async fn rate_limited(&self, route: &axum::extract::MatchedPath) {
        let minute = now_i64() / 60;
        let suppressed = {
            let Ok(mut map) = self.throttle.lock() else {
                return;
            };
            let entry = map.entry(route.as_str().to_owned()).or_insert((-1, 0));
            if entry.0 == minute {
                entry.1 += 1;
                metrics::counter!("haven_audit_events_total", "kind" => AuditKind::RateLimited.as_str())
                    .increment(1);
                return;
            }
            let suppressed = entry.1;
            *entry = (minute, 0);
            suppressed
        };
        self.record(
            AuditKind::RateLimited,
            None,
            None,
            AuditDetail::none().route(route).count(suppressed),
        )
        .await;
    }

    /// The store (the admin routes read the log through it).
    pub fn store(&self) -> &S {
        &self.store
    }
}

/// Deletes audit events older than `retention_days` every `interval` until `stop` is set.
pub async fn reap_task<S: AuditStore + Send + Sync + 'static>(
    store: S,
    retention_days: u64,
    interval: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let retention = i64::try_from(retention_days.saturating_mul(86_400)).unwrap_or(i64::MAX);
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = tick.tick() => {}
        }
        match store.reap_audit(now_i64().saturating_sub(retention)).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(events = n, "expired audit events reaped"),
            Err(err) => tracing::warn!(%err, "audit reaper failed"),
        }
    }
}
