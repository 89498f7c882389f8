//! The audit log's store trait, its records and its SQL (expanded for both backends by
//! [`impl_audit_sql!`]).

use std::future::Future;

use crate::audit::{AuditDetail, AuditKind};
use crate::db::error::StoreResult;
use crate::ids::Id;

/// An event to record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewAuditEvent {
    /// What happened.
    pub kind: AuditKind,
    /// When (Unix seconds).
    pub at: i64,
    /// The account concerned, as its opaque id (never a username).
    pub subject: Option<Id>,
    /// The admin key that acted, if any.
    pub actor: Option<Id>,
    /// Typed details (no address, username or content can be expressed in them).
    pub detail: AuditDetail,
}

/// A recorded event.
#[derive(Clone, Debug, PartialEq)]
pub struct AuditEvent {
    /// Position in the log (strictly increasing; the pagination cursor).
    pub id: i64,
    /// What happened (`None` for a kind this version does not know, written by a newer one).
    pub kind: String,
    /// When (Unix seconds).
    pub at: i64,
    /// The account concerned.
    pub subject: Option<Id>,
    /// The admin key that acted.
    pub actor: Option<Id>,
    /// The details as stored (a JSON object).
    pub detail: serde_json::Value,
}

/// A page query over the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditQuery {
    /// Only events at or after this time.
    pub since: i64,
    /// Only events of this kind.
    pub kind: Option<AuditKind>,
    /// Only events after this position (the previous page's cursor).
    pub after: i64,
    /// At most this many events.
    pub limit: u32,
}

/// The security audit log.
pub trait AuditStore {
    /// Appends an event.
    fn record_audit(&self, event: &NewAuditEvent) -> impl Future<Output = StoreResult<()>> + Send;
    /// Events matching `query`, oldest first.
    fn audit_events(
        &self,
        query: &AuditQuery,
    ) -> impl Future<Output = StoreResult<Vec<AuditEvent>>> + Send;
    /// Deletes events older than `before`. Returns how many.
    fn reap_audit(&self, before: i64) -> impl Future<Output = StoreResult<u64>> + Send;
}

/// Implements [`AuditStore`] for a type with a `pool` field.
macro_rules! impl_audit_sql {
    ($store:ty, $db:ty) => {
        impl $crate::audit::store::AuditStore for $store {
            async fn record_audit(
                &self,
                event: &$crate::audit::store::NewAuditEvent,
            ) -> $crate::db::error::StoreResult<()> {
                sqlx::query(
                    "INSERT INTO audit_events (kind, at, subject, actor, detail) \
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(event.kind.as_str())
                .bind(event.at)
                .bind(event.subject.map(|id| id.as_bytes().to_vec()))
                .bind(event.actor.map(|id| id.as_bytes().to_vec()))
                .bind(event.detail.to_json())
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn audit_events(
                &self,
                query: &$crate::audit::store::AuditQuery,
            ) -> $crate::db::error::StoreResult<Vec<$crate::audit::store::AuditEvent>> {
                use sqlx::Row as _;
                let rows = sqlx::query(
                    "SELECT id, kind, at, subject, actor, detail FROM audit_events \
                     WHERE at >= $1 AND id > $2 AND ($3 IS NULL OR kind = $3) \
                     ORDER BY id LIMIT $4",
                )
                .bind(query.since)
                .bind(query.after)
                .bind(query.kind.map(|k| k.as_str()))
                .bind(i64::from(query.limit))
                .fetch_all(&self.pool)
                .await?;
                let opt_id = |row: &<$db as sqlx::Database>::Row,
                              column: &str|
                 -> $crate::db::error::StoreResult<Option<$crate::ids::Id>> {
                    let bytes: Option<Vec<u8>> = row.try_get(column)?;
                    bytes
                        .map(|b| {
                            $crate::ids::Id::from_slice(&b).map_err(|_| {
                                $crate::db::error::StoreError::Corrupt {
                                    table: "audit_events",
                                }
                            })
                        })
                        .transpose()
                };
                rows.iter()
                    .map(|row| {
                        let detail: String = row.try_get("detail")?;
                        Ok($crate::audit::store::AuditEvent {
                            id: row.try_get("id")?,
                            kind: row.try_get("kind")?,
                            at: row.try_get("at")?,
                            subject: opt_id(row, "subject")?,
                            actor: opt_id(row, "actor")?,
                            detail: serde_json::from_str(&detail).map_err(|_| {
                                $crate::db::error::StoreError::Corrupt {
                                    table: "audit_events",
                                }
                            })?,
                        })
                    })
                    .collect()
            }

            async fn reap_audit(&self, before: i64) -> $crate::db::error::StoreResult<u64> {
                let done = sqlx::query("DELETE FROM audit_events WHERE at < $1")
                    .bind(before)
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected())
            }
        }
    };
}

pub(crate) use impl_audit_sql;
