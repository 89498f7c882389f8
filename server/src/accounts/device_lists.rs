//! Account identity (PROTOCOL.md §11.18, §15): the signed device lists, link tokens and
//! provisioning boxes: the store trait and its SQL, expanded for both backends like
//! [`impl_sql_store!`](crate::db::sql).

use std::future::Future;

use crate::db::error::StoreResult;
use crate::ids::Id;

/// An account's stored device list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredDeviceList {
    /// Its version.
    pub version: u64,
    /// The signed bytes.
    pub list: Vec<u8>,
}

/// Outcome of storing a device list.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PutListOutcome {
    /// Stored (it replaced an older version, or it is the first).
    Stored,
    /// Not stored: a list of this version or a newer one is stored.
    Stale {
        /// The stored version.
        current: u64,
    },
}

/// Outcome of writing a provisioning box.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FillOutcome {
    /// The message is in the box.
    Filled,
    /// No such box, or it expired.
    NotFound,
    /// The box already holds a message (a box is written once).
    AlreadyFilled,
}

/// Device lists, link tokens, provisioning boxes.
pub trait AccountIdentityStore {
    /// Stores `list` (of `version`) as the account's list if no list of that version or newer
    /// is stored (atomically, so two concurrent uploads cannot both win with one version).
    fn put_device_list(
        &self,
        account: &Id,
        version: u64,
        list: &[u8],
        now: i64,
    ) -> impl Future<Output = StoreResult<PutListOutcome>> + Send;
    /// The account's stored list.
    fn device_list(
        &self,
        account: &Id,
    ) -> impl Future<Output = StoreResult<Option<StoredDeviceList>>> + Send;
    /// Stores a link token's hash for the account, keeping at most `max_per_account` live
    /// tokens (the oldest beyond that are dropped) and deleting expired ones.
    fn put_link_token(
        &self,
        hash: &[u8; 32],
        account: &Id,
        expires_at: i64,
        now: i64,
        max_per_account: u32,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    /// Consumes a link token: its account, if the token exists and has not expired at `now`.
    fn take_link_token(
        &self,
        hash: &[u8; 32],
        now: i64,
    ) -> impl Future<Output = StoreResult<Option<Id>>> + Send;
    /// Creates an empty provisioning box (deleting expired ones).
    fn create_box(
        &self,
        id: &Id,
        expires_at: i64,
        now: i64,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    /// Writes the message into an empty, live box.
    fn fill_box(
        &self,
        id: &Id,
        message: &[u8],
        now: i64,
    ) -> impl Future<Output = StoreResult<FillOutcome>> + Send;
    /// Reads a live box: `None` if there is no such box, `Some(None)` while it is empty, and
    /// `Some(Some(message))` once, deleting the box.
    fn take_box(
        &self,
        id: &Id,
        now: i64,
    ) -> impl Future<Output = StoreResult<Option<Option<Vec<u8>>>>> + Send;
}

/// Implements [`AccountIdentityStore`] for a store type with a public `pool()`.
macro_rules! impl_identity_store {
    ($store:ty, $db:ty) => {
        impl $crate::accounts::device_lists::AccountIdentityStore for $store {
            async fn put_device_list(
                &self,
                account: &$crate::ids::Id,
                version: u64,
                list: &[u8],
                now: i64,
            ) -> $crate::db::error::StoreResult<$crate::accounts::device_lists::PutListOutcome> {
                use sqlx::Row as _;
                let version = i64::try_from(version)
                    .map_err(|_| $crate::db::error::StoreError::Corrupt { table: "device_lists" })?;
                let stored = sqlx::query(
                    "INSERT INTO device_lists (account_id, version, list, updated_at) \
                     VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (account_id) DO UPDATE \
                     SET version = excluded.version, list = excluded.list, \
                         updated_at = excluded.updated_at \
                     WHERE device_lists.version < excluded.version",
                )
                .bind(&account.as_bytes()[..])
                .bind(version)
                .bind(list)
                .bind(now)
                .execute(self.pool())
                .await?;
                if stored.rows_affected() > 0 {
                    return Ok($crate::accounts::device_lists::PutListOutcome::Stored);
                }
                let row = sqlx::query("SELECT version FROM device_lists WHERE account_id = $1")
                    .bind(&account.as_bytes()[..])
                    .fetch_one(self.pool())
                    .await?;
                let current: i64 = row.try_get("version")?;
                Ok($crate::accounts::device_lists::PutListOutcome::Stale {
                    current: u64::try_from(current).map_err(|_| {
                        $crate::db::error::StoreError::Corrupt { table: "device_lists" }
                    })?,
                })
            }

            async fn device_list(
                &self,
                account: &$crate::ids::Id,
            ) -> $crate::db::error::StoreResult<Option<$crate::accounts::device_lists::StoredDeviceList>> {
                use sqlx::Row as _;
                let row = sqlx::query("SELECT version, list FROM device_lists WHERE account_id = $1")
                    .bind(&account.as_bytes()[..])
                    .fetch_optional(self.pool())
                    .await?;
                let Some(row) = row else { return Ok(None) };
                let version: i64 = row.try_get("version")?;
                Ok(Some($crate::accounts::device_lists::StoredDeviceList {
                    version: u64::try_from(version).map_err(|_| {
                        $crate::db::error::StoreError::Corrupt { table: "device_lists" }
                    })?,
                    list: row.try_get("list")?,
                }))
            }

            async fn put_link_token(
                &self,
                hash: &[u8; 32],
                account: &$crate::ids::Id,
                expires_at: i64,
                now: i64,
                max_per_account: u32,
            ) -> $crate::db::error::StoreResult<()> {
                let mut tx = self.pool().begin().await?;
                sqlx::query("DELETE FROM link_tokens WHERE expires_at <= $1")
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(
                    "INSERT INTO link_tokens (token_hash, account_id, expires_at) VALUES ($1, $2, $3)",
                )
                .bind(&hash[..])
                .bind(&account.as_bytes()[..])
                .bind(expires_at)
                .execute(&mut *tx)
                .await?;
                // Keep the newest `max_per_account` (ties broken by hash, arbitrary but stable).
                sqlx::query(
                    "DELETE FROM link_tokens WHERE account_id = $1 AND token_hash NOT IN \
                     (SELECT token_hash FROM link_tokens WHERE account_id = $1 \
                      ORDER BY expires_at DESC, token_hash LIMIT $2)",
                )
                .bind(&account.as_bytes()[..])
                .bind(i64::from(max_per_account))
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(())
            }

            async fn take_link_token(
                &self,
                hash: &[u8; 32],
                now: i64,
            ) -> $crate::db::error::StoreResult<Option<$crate::ids::Id>> {
                use sqlx::Row as _;
                let row = sqlx::query(
                    "DELETE FROM link_tokens WHERE token_hash = $1 RETURNING account_id, expires_at",
                )
                .bind(&hash[..])
                .fetch_optional(self.pool())
                .await?;
                let Some(row) = row else { return Ok(None) };
                let expires_at: i64 = row.try_get("expires_at")?;
                if expires_at <= now {
                    return Ok(None);
                }
                let account: Vec<u8> = row.try_get("account_id")?;
                $crate::ids::Id::from_slice(&account)
                    .map(Some)
                    .map_err(|_| $crate::db::error::StoreError::Corrupt { table: "link_tokens" })
            }

            async fn create_box(
                &self,
                id: &$crate::ids::Id,
                expires_at: i64,
                now: i64,
            ) -> $crate::db::error::StoreResult<()> {
                let mut tx = self.pool().begin().await?;
                sqlx::query("DELETE FROM provisioning_boxes WHERE expires_at <= $1")
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("INSERT INTO provisioning_boxes (id, expires_at) VALUES ($1, $2)")
                    .bind(&id.as_bytes()[..])
                    .bind(expires_at)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(())
            }

            async fn fill_box(
                &self,
                id: &$crate::ids::Id,
                message: &[u8],
                now: i64,
            ) -> $crate::db::error::StoreResult<$crate::accounts::device_lists::FillOutcome> {
                use sqlx::Row as _;
                let filled = sqlx::query(
                    "UPDATE provisioning_boxes SET message = $2 \
                     WHERE id = $1 AND expires_at > $3 AND message IS NULL",
                )
                .bind(&id.as_bytes()[..])
                .bind(message)
                .bind(now)
                .execute(self.pool())
                .await?;
                if filled.rows_affected() > 0 {
                    return Ok($crate::accounts::device_lists::FillOutcome::Filled);
                }
                let row = sqlx::query(
                    "SELECT message IS NOT NULL AS full FROM provisioning_boxes \
                     WHERE id = $1 AND expires_at > $2",
                )
                .bind(&id.as_bytes()[..])
                .bind(now)
                .fetch_optional(self.pool())
                .await?;
                Ok(match row {
                    Some(row) if row.try_get::<bool, _>("full")? => {
                        $crate::accounts::device_lists::FillOutcome::AlreadyFilled
                    }
                    // Empty and live, yet not updated: it was filled or taken in between.
                    Some(_) => $crate::accounts::device_lists::FillOutcome::AlreadyFilled,
                    None => $crate::accounts::device_lists::FillOutcome::NotFound,
                })
            }

            async fn take_box(
                &self,
                id: &$crate::ids::Id,
                now: i64,
            ) -> $crate::db::error::StoreResult<Option<Option<Vec<u8>>>> {
                use sqlx::Row as _;
                let taken = sqlx::query(
                    "DELETE FROM provisioning_boxes \
                     WHERE id = $1 AND expires_at > $2 AND message IS NOT NULL RETURNING message",
                )
                .bind(&id.as_bytes()[..])
                .bind(now)
                .fetch_optional(self.pool())
                .await?;
                if let Some(row) = taken {
                    let message: Vec<u8> = row.try_get("message")?;
                    return Ok(Some(Some(message)));
                }
                let waiting = sqlx::query(
                    "SELECT 1 AS one FROM provisioning_boxes WHERE id = $1 AND expires_at > $2",
                )
                .bind(&id.as_bytes()[..])
                .bind(now)
                .fetch_optional(self.pool())
                .await?;
                Ok(waiting.map(|_| None))
            }
        }
    };
}

pub(crate) use impl_identity_store;
