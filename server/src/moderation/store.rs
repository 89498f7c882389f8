//! The moderation store: abuse reports, account sanctions and address bans, their records and
//! their SQL (expanded for both backends by [`impl_moderation_sql!`]).

use std::future::Future;

use crate::db::error::StoreResult;
use crate::ids::Id;

/// A verified report to store. `sealed` is the report body sealed under the moderation key;
/// the content is never stored in the clear.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewReport {
    /// `SHA-256("Haven_Franking_Report_v1" || stamp)[0..16]` (PROTOCOL.md §16.6).
    pub id: Id,
    /// The reporting account.
    pub reporter: Id,
    /// The reported sender account.
    pub sender_account: Id,
    /// The reported sender device number.
    pub sender_device: u32,
    /// The destination (21 bytes, §16.2).
    pub destination: Vec<u8>,
    /// The message's `seq`.
    pub message_seq: i64,
    /// The message's relay time.
    pub message_time: i64,
    /// Whether the sender tag verified (§16.6 step 6).
    pub attributed: bool,
    /// The sealed report body.
    pub sealed: Vec<u8>,
    /// When it was filed.
    pub created_at: i64,
}

/// A stored report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReportRecord {
    /// What was filed.
    pub report: NewReport,
    /// `pending` or `decided`.
    pub status: String,
    /// The decision taken (`dismiss`, `warn`, `suspend`, `ban`).
    pub decision: Option<String>,
    /// When it was decided.
    pub decided_at: Option<i64>,
    /// The admin key that decided.
    pub decided_by: Option<Id>,
}

/// A sanction on an account.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SanctionRecord {
    /// The account.
    pub account: Id,
    /// Banned (else suspended).
    pub banned: bool,
    /// When it lifts by itself (`None`: never).
    pub expires_at: Option<i64>,
    /// When it was imposed.
    pub created_at: i64,
}

/// A banned address prefix, as its keyed hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AddressBanRecord {
    /// HMAC of the prefix under the address-ban key.
    pub prefix_hash: [u8; 32],
    /// When it lifts by itself (`None`: never).
    pub expires_at: Option<i64>,
    /// When it was imposed.
    pub created_at: i64,
}

/// What `mail: purge` removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MailPurge {
    /// Undelivered envelopes the account sent with a logged-in (attributable) send.
    pub envelopes: u64,
    /// The account's blobs, marked expired for the blob collector.
    pub blobs: u64,
}

/// Reports, sanctions and bans.
pub trait ModerationStore {
    /// Stores a report; `false` (and nothing written) if its id is already stored.
    fn insert_report(&self, report: &NewReport) -> impl Future<Output = StoreResult<bool>> + Send;
    /// Replaces a pending unattributed report by an attributed report of the same message
    /// (same id); `false` if there is none such.
    fn upgrade_report(&self, report: &NewReport) -> impl Future<Output = StoreResult<bool>> + Send;
    /// One report.
    fn report(&self, id: &Id) -> impl Future<Output = StoreResult<Option<ReportRecord>>> + Send;
    /// How many reports have `status`.
    fn count_reports(&self, status: &str) -> impl Future<Output = StoreResult<u64>> + Send;
    /// Reports of `status`, oldest first, after the cursor `(created_at, id)`.
    fn reports(
        &self,
        status: &str,
        after: (i64, Id),
        limit: u32,
    ) -> impl Future<Output = StoreResult<Vec<ReportRecord>>> + Send;
    /// Marks a pending report decided; `false` if it is unknown or already decided.
    fn decide_report(
        &self,
        id: &Id,
        decision: &str,
        by: Option<Id>,
        at: i64,
    ) -> impl Future<Output = StoreResult<bool>> + Send;
    /// Suspends or bans an account (replacing any earlier sanction); `false` if the account
    /// does not exist.
    fn put_sanction(
        &self,
        sanction: &SanctionRecord,
    ) -> impl Future<Output = StoreResult<bool>> + Send;
    /// Lifts an account's sanction; `false` if it had none.
    fn remove_sanction(&self, account: &Id) -> impl Future<Output = StoreResult<bool>> + Send;
    /// Every sanction in force at `now`.
    fn sanctions(&self, now: i64) -> impl Future<Output = StoreResult<Vec<SanctionRecord>>> + Send;
    /// Bans an address prefix hash (replacing an earlier ban of it).
    fn put_address_ban(
        &self,
        ban: &AddressBanRecord,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    /// Lifts an address ban; `false` if there was none.
    fn remove_address_ban(
        &self,
        prefix_hash: &[u8; 32],
    ) -> impl Future<Output = StoreResult<bool>> + Send;
    /// Every address ban in force at `now`.
    fn address_bans(
        &self,
        now: i64,
    ) -> impl Future<Output = StoreResult<Vec<AddressBanRecord>>> + Send;
    /// `mail: purge` (PROTOCOL.md §11.19): deletes the account's undelivered attributable
    /// envelopes and marks its blobs expired at `now`.
    fn purge_account_mail(
        &self,
        account: &Id,
        now: i64,
    ) -> impl Future<Output = StoreResult<MailPurge>> + Send;
    /// Deletes sanctions and bans expired at `now`, reports decided before `reports_before`
    /// and the identity keys of devices unlinked before `retired_before`. Returns how many
    /// rows.
    fn reap_moderation(
        &self,
        now: i64,
        reports_before: i64,
        retired_before: i64,
    ) -> impl Future<Output = StoreResult<u64>> + Send;
}

/// Implements [`ModerationStore`] for a type with a `pool` field.
macro_rules! impl_moderation_sql {
    ($store:ty, $db:ty) => {
        fn moderation_id(
            row: &<$db as sqlx::Database>::Row,
            column: &str,
            table: &'static str,
        ) -> $crate::db::error::StoreResult<$crate::ids::Id> {
            use sqlx::Row as _;
            let bytes: Vec<u8> = row.try_get(column)?;
            $crate::ids::Id::from_slice(&bytes)
                .map_err(|_| $crate::db::error::StoreError::Corrupt { table })
        }

        fn report_row(
            row: &<$db as sqlx::Database>::Row,
        ) -> $crate::db::error::StoreResult<$crate::moderation::store::ReportRecord> {
            use sqlx::Row as _;
            let corrupt = || $crate::db::error::StoreError::Corrupt { table: "reports" };
            let device: i64 = row.try_get("sender_device")?;
            let decided_by: Option<Vec<u8>> = row.try_get("decided_by")?;
            Ok($crate::moderation::store::ReportRecord {
                report: $crate::moderation::store::NewReport {
                    id: moderation_id(row, "id", "reports")?,
                    reporter: moderation_id(row, "reporter", "reports")?,
                    sender_account: moderation_id(row, "sender_account", "reports")?,
                    sender_device: u32::try_from(device).map_err(|_| corrupt())?,
                    destination: row.try_get("destination")?,
                    message_seq: row.try_get("message_seq")?,
                    message_time: row.try_get("message_time")?,
                    attributed: row.try_get("attributed")?,
                    sealed: row.try_get("sealed")?,
                    created_at: row.try_get("created_at")?,
                },
                status: row.try_get("status")?,
                decision: row.try_get("decision")?,
                decided_at: row.try_get("decided_at")?,
                decided_by: decided_by
                    .map(|b| $crate::ids::Id::from_slice(&b).map_err(|_| corrupt()))
                    .transpose()?,
            })
        }

        const REPORT_COLUMNS: &str = "id, reporter, sender_account, sender_device, destination, \
             message_seq, message_time, attributed, sealed, status, decision, decided_at, \
             decided_by, created_at";

        impl $crate::moderation::store::ModerationStore for $store {
            async fn insert_report(
                &self,
                r: &$crate::moderation::store::NewReport,
            ) -> $crate::db::error::StoreResult<bool> {
                let done = sqlx::query(
                    "INSERT INTO reports (id, reporter, sender_account, sender_device, \
                     destination, message_seq, message_time, attributed, sealed, status, \
                     created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'pending', $10) \
                     ON CONFLICT (id) DO NOTHING",
                )
                .bind(&r.id.as_bytes()[..])
                .bind(&r.reporter.as_bytes()[..])
                .bind(&r.sender_account.as_bytes()[..])
                .bind(i64::from(r.sender_device))
                .bind(&r.destination[..])
                .bind(r.message_seq)
                .bind(r.message_time)
                .bind(r.attributed)
                .bind(&r.sealed[..])
                .bind(r.created_at)
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn upgrade_report(
                &self,
                r: &$crate::moderation::store::NewReport,
            ) -> $crate::db::error::StoreResult<bool> {
                let done = sqlx::query(
                    "UPDATE reports SET attributed = TRUE, sealed = $2, reporter = $3 \
                     WHERE id = $1 AND attributed = FALSE AND status = 'pending'",
                )
                .bind(&r.id.as_bytes()[..])
                .bind(&r.sealed[..])
                .bind(&r.reporter.as_bytes()[..])
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn report(
                &self,
                id: &$crate::ids::Id,
            ) -> $crate::db::error::StoreResult<Option<$crate::moderation::store::ReportRecord>> {
                let row = sqlx::query(&format!("SELECT {REPORT_COLUMNS} FROM reports WHERE id = $1"))
                    .bind(&id.as_bytes()[..])
                    .fetch_optional(&self.pool)
                    .await?;
                row.as_ref().map(report_row).transpose()
            }

            async fn count_reports(&self, status: &str) -> $crate::db::error::StoreResult<u64> {
                let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM reports WHERE status = $1")
                    .bind(status)
                    .fetch_one(&self.pool)
                    .await?;
                Ok(u64::try_from(n).unwrap_or(0))
            }

            async fn reports(
                &self,
                status: &str,
                after: (i64, $crate::ids::Id),
                limit: u32,
            ) -> $crate::db::error::StoreResult<Vec<$crate::moderation::store::ReportRecord>> {
                let rows = sqlx::query(&format!(
                    "SELECT {REPORT_COLUMNS} FROM reports WHERE status = $1 AND \
                     (created_at > $2 OR (created_at = $2 AND id > $3)) \
                     ORDER BY created_at, id LIMIT $4"
                ))
                .bind(status)
                .bind(after.0)
                .bind(&after.1.as_bytes()[..])
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?;
                rows.iter().map(report_row).collect()
            }

            async fn decide_report(
                &self,
                id: &$crate::ids::Id,
                decision: &str,
                by: Option<$crate::ids::Id>,
                at: i64,
            ) -> $crate::db::error::StoreResult<bool> {
                let done = sqlx::query(
                    "UPDATE reports SET status = 'decided', decision = $2, decided_by = $3, \
                     decided_at = $4 WHERE id = $1 AND status = 'pending'",
                )
                .bind(&id.as_bytes()[..])
                .bind(decision)
                .bind(by.map(|b| b.as_bytes().to_vec()))
                .bind(at)
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn put_sanction(
                &self,
                s: &$crate::moderation::store::SanctionRecord,
            ) -> $crate::db::error::StoreResult<bool> {
                let done = sqlx::query(
                    "INSERT INTO account_sanctions (account_id, kind, expires_at, created_at) \
                     SELECT $1, $2, $3, $4 WHERE EXISTS (SELECT 1 FROM accounts WHERE id = $1) \
                     ON CONFLICT (account_id) DO UPDATE SET kind = excluded.kind, \
                     expires_at = excluded.expires_at, created_at = excluded.created_at",
                )
                .bind(&s.account.as_bytes()[..])
                .bind(if s.banned { "banned" } else { "suspended" })
                .bind(s.expires_at)
                .bind(s.created_at)
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn remove_sanction(
                &self,
                account: &$crate::ids::Id,
            ) -> $crate::db::error::StoreResult<bool> {
                let done = sqlx::query("DELETE FROM account_sanctions WHERE account_id = $1")
                    .bind(&account.as_bytes()[..])
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn sanctions(
                &self,
                now: i64,
            ) -> $crate::db::error::StoreResult<Vec<$crate::moderation::store::SanctionRecord>> {
                use sqlx::Row as _;
                let rows = sqlx::query(
                    "SELECT account_id, kind, expires_at, created_at FROM account_sanctions \
                     WHERE expires_at IS NULL OR expires_at > $1",
                )
                .bind(now)
                .fetch_all(&self.pool)
                .await?;
                rows.iter()
                    .map(|row| {
                        let kind: String = row.try_get("kind")?;
                        Ok($crate::moderation::store::SanctionRecord {
                            account: moderation_id(row, "account_id", "account_sanctions")?,
                            banned: kind == "banned",
                            expires_at: row.try_get("expires_at")?,
                            created_at: row.try_get("created_at")?,
                        })
                    })
                    .collect()
            }

            async fn put_address_ban(
                &self,
                ban: &$crate::moderation::store::AddressBanRecord,
            ) -> $crate::db::error::StoreResult<()> {
                sqlx::query(
                    "INSERT INTO address_bans (prefix_hash, expires_at, created_at) \
                     VALUES ($1, $2, $3) ON CONFLICT (prefix_hash) DO UPDATE SET \
                     expires_at = excluded.expires_at, created_at = excluded.created_at",
                )
                .bind(&ban.prefix_hash[..])
                .bind(ban.expires_at)
                .bind(ban.created_at)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn remove_address_ban(
                &self,
                prefix_hash: &[u8; 32],
            ) -> $crate::db::error::StoreResult<bool> {
                let done = sqlx::query("DELETE FROM address_bans WHERE prefix_hash = $1")
                    .bind(&prefix_hash[..])
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn address_bans(
                &self,
                now: i64,
            ) -> $crate::db::error::StoreResult<Vec<$crate::moderation::store::AddressBanRecord>> {
                use sqlx::Row as _;
                let rows = sqlx::query(
                    "SELECT prefix_hash, expires_at, created_at FROM address_bans \
                     WHERE expires_at IS NULL OR expires_at > $1 ORDER BY created_at",
                )
                .bind(now)
                .fetch_all(&self.pool)
                .await?;
                rows.iter()
                    .map(|row| {
                        let hash: Vec<u8> = row.try_get("prefix_hash")?;
                        Ok($crate::moderation::store::AddressBanRecord {
                            prefix_hash: <[u8; 32]>::try_from(hash.as_slice()).map_err(|_| {
                                $crate::db::error::StoreError::Corrupt {
                                    table: "address_bans",
                                }
                            })?,
                            expires_at: row.try_get("expires_at")?,
                            created_at: row.try_get("created_at")?,
                        })
                    })
                    .collect()
            }

            async fn purge_account_mail(
                &self,
                account: &$crate::ids::Id,
                now: i64,
            ) -> $crate::db::error::StoreResult<$crate::moderation::store::MailPurge> {
                let envelopes = sqlx::query("DELETE FROM envelopes WHERE source_account = $1")
                    .bind(&account.as_bytes()[..])
                    .execute(&self.pool)
                    .await?
                    .rows_affected();
                let blobs = sqlx::query(
                    "UPDATE blobs SET expires_at = $2 WHERE account_id = $1 AND expires_at > $2",
                )
                .bind(&account.as_bytes()[..])
                .bind(now)
                .execute(&self.pool)
                .await?
                .rows_affected();
                Ok($crate::moderation::store::MailPurge { envelopes, blobs })
            }

            async fn reap_moderation(
                &self,
                now: i64,
                reports_before: i64,
                retired_before: i64,
            ) -> $crate::db::error::StoreResult<u64> {
                let mut n = sqlx::query(
                    "DELETE FROM account_sanctions WHERE expires_at IS NOT NULL AND expires_at <= $1",
                )
                .bind(now)
                .execute(&self.pool)
                .await?
                .rows_affected();
                n += sqlx::query(
                    "DELETE FROM address_bans WHERE expires_at IS NOT NULL AND expires_at <= $1",
                )
                .bind(now)
                .execute(&self.pool)
                .await?
                .rows_affected();
                n += sqlx::query(
                    "DELETE FROM reports WHERE status = 'decided' AND decided_at < $1",
                )
                .bind(reports_before)
                .execute(&self.pool)
                .await?
                .rows_affected();
                n += sqlx::query("DELETE FROM retired_devices WHERE retired_at < $1")
                    .bind(retired_before)
                    .execute(&self.pool)
                    .await?
                    .rows_affected();
                Ok(n)
            }
        }
    };
}

pub(crate) use impl_moderation_sql;
