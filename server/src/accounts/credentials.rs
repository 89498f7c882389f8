//! The account's credentials over its lifetime (PROTOCOL.md §11.6.1–§11.6.3): fresh-
//! authentication proofs, the recovery code's OPAQUE record, and replacing the password's
//! record (which ends every session). The store trait and its SQL, expanded for both backends
//! like [`impl_sql_store!`](crate::db::sql).

use std::future::Future;

use crate::accounts::store::{FamilyRecord, RefreshTokenRecord};
use crate::db::error::StoreResult;
use crate::ids::Id;

/// A new OPAQUE password record for an account, and what else changes with it.
pub struct CredentialChange {
    /// The new serialized OPAQUE registration record of the password.
    pub opaque_record: Vec<u8>,
    /// Whether the recovery record is removed too (a recovery code works once).
    pub clear_recovery: bool,
    /// A session created in the same transaction, after every other one was revoked (the
    /// device that changed the password stays logged in).
    pub new_session: Option<(FamilyRecord, RefreshTokenRecord)>,
}

/// Fresh-authentication proofs, the recovery record and password replacement.
pub trait CredentialStore {
    /// Stores a fresh-authentication proof's hash for a session, deleting expired proofs and
    /// keeping at most `max_per_account` live ones for the account (the oldest beyond that are
    /// dropped).
    fn put_fresh_auth(
        &self,
        hash: &[u8; 32],
        account: &Id,
        family: &Id,
        expires_at: i64,
        now: i64,
        max_per_account: u32,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    /// Whether the proof exists for this session and has not expired at `now` (nothing changes).
    fn fresh_auth_valid(
        &self,
        hash: &[u8; 32],
        account: &Id,
        family: &Id,
        now: i64,
    ) -> impl Future<Output = StoreResult<bool>> + Send;
    /// Spends the proof: deletes it and returns whether it existed for this session and had not
    /// expired (atomically, so two requests cannot both spend one proof).
    fn take_fresh_auth(
        &self,
        hash: &[u8; 32],
        account: &Id,
        family: &Id,
        now: i64,
    ) -> impl Future<Output = StoreResult<bool>> + Send;
    /// The account's recovery record, if one is set (`None` also when the account is gone).
    fn recovery_record(
        &self,
        account: &Id,
    ) -> impl Future<Output = StoreResult<Option<Vec<u8>>>> + Send;
    /// Sets (or replaces) the recovery record. Returns whether the account exists.
    fn set_recovery_record(
        &self,
        account: &Id,
        record: &[u8],
    ) -> impl Future<Output = StoreResult<bool>> + Send;
    /// In one transaction: replaces the password's record, revokes every session of the account,
    /// deletes its fresh-authentication proofs and pending logins (a login started under the old
    /// password cannot finish), optionally clears the recovery record, and creates
    /// `new_session`. Returns whether the account exists (nothing changes if not).
    fn replace_credentials(
        &self,
        account: &Id,
        change: &CredentialChange,
    ) -> impl Future<Output = StoreResult<bool>> + Send;
    /// Revokes every session of the account and deletes its fresh-authentication proofs
    /// (logout everywhere). Returns how many sessions were revoked.
    fn revoke_sessions(&self, account: &Id) -> impl Future<Output = StoreResult<u64>> + Send;
}

/// Implements [`CredentialStore`] for a store type with a public `pool()`.
macro_rules! impl_credential_store {
    ($store:ty, $db:ty) => {
        impl $crate::accounts::credentials::CredentialStore for $store {
            async fn put_fresh_auth(
                &self,
                hash: &[u8; 32],
                account: &$crate::ids::Id,
                family: &$crate::ids::Id,
                expires_at: i64,
                now: i64,
                max_per_account: u32,
            ) -> $crate::db::error::StoreResult<()> {
                let mut tx = self
                    .pool()
                    .begin_with(<$db as $crate::db::sql::TxBegin>::BEGIN)
                    .await?;
                sqlx::query("DELETE FROM fresh_auth WHERE expires_at <= $1")
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(
                    "INSERT INTO fresh_auth (token_hash, account_id, family_id, expires_at) \
                     VALUES ($1, $2, $3, $4)",
                )
                .bind(&hash[..])
                .bind(&account.as_bytes()[..])
                .bind(&family.as_bytes()[..])
                .bind(expires_at)
                .execute(&mut *tx)
                .await?;
                // Keep the newest `max_per_account` (ties broken by hash, arbitrary but stable).
                sqlx::query(
                    "DELETE FROM fresh_auth WHERE account_id = $1 AND token_hash NOT IN \
                     (SELECT token_hash FROM fresh_auth WHERE account_id = $1 \
                      ORDER BY expires_at DESC, token_hash LIMIT $2)",
                )
                .bind(&account.as_bytes()[..])
                .bind(i64::from(max_per_account))
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(())
            }

            async fn fresh_auth_valid(
                &self,
                hash: &[u8; 32],
                account: &$crate::ids::Id,
                family: &$crate::ids::Id,
                now: i64,
            ) -> $crate::db::error::StoreResult<bool> {
                let row = sqlx::query(
                    "SELECT 1 AS one FROM fresh_auth WHERE token_hash = $1 AND account_id = $2 \
                     AND family_id = $3 AND expires_at > $4",
                )
                .bind(&hash[..])
                .bind(&account.as_bytes()[..])
                .bind(&family.as_bytes()[..])
                .bind(now)
                .fetch_optional(self.pool())
                .await?;
                Ok(row.is_some())
            }

            async fn take_fresh_auth(
                &self,
                hash: &[u8; 32],
                account: &$crate::ids::Id,
                family: &$crate::ids::Id,
                now: i64,
            ) -> $crate::db::error::StoreResult<bool> {
                // Only a live proof of this session is deleted: a proof presented by another
                // session stays usable by its own.
                let done = sqlx::query(
                    "DELETE FROM fresh_auth WHERE token_hash = $1 AND account_id = $2 \
                     AND family_id = $3 AND expires_at > $4",
                )
                .bind(&hash[..])
                .bind(&account.as_bytes()[..])
                .bind(&family.as_bytes()[..])
                .bind(now)
                .execute(self.pool())
                .await?;
                Ok(done.rows_affected() > 0)
            }

            async fn recovery_record(
                &self,
                account: &$crate::ids::Id,
            ) -> $crate::db::error::StoreResult<Option<Vec<u8>>> {
                use sqlx::Row as _;
                let row = sqlx::query("SELECT recovery_record FROM accounts WHERE id = $1")
                    .bind(&account.as_bytes()[..])
                    .fetch_optional(self.pool())
                    .await?;
                match row {
                    Some(row) => Ok(row.try_get("recovery_record")?),
                    None => Ok(None),
                }
            }

            async fn set_recovery_record(
                &self,
                account: &$crate::ids::Id,
                record: &[u8],
            ) -> $crate::db::error::StoreResult<bool> {
                let done = sqlx::query("UPDATE accounts SET recovery_record = $2 WHERE id = $1")
                    .bind(&account.as_bytes()[..])
                    .bind(record)
                    .execute(self.pool())
                    .await?;
                Ok(done.rows_affected() > 0)
            }

            async fn replace_credentials(
                &self,
                account: &$crate::ids::Id,
                change: &$crate::accounts::credentials::CredentialChange,
            ) -> $crate::db::error::StoreResult<bool> {
                let id = &account.as_bytes()[..];
                let mut tx = self
                    .pool()
                    .begin_with(<$db as $crate::db::sql::TxBegin>::BEGIN)
                    .await?;
                let sql = if change.clear_recovery {
                    "UPDATE accounts SET opaque_record = $2, recovery_record = NULL WHERE id = $1"
                } else {
                    "UPDATE accounts SET opaque_record = $2 WHERE id = $1"
                };
                let done = sqlx::query(sql)
                    .bind(id)
                    .bind(&change.opaque_record[..])
                    .execute(&mut *tx)
                    .await?;
                if done.rows_affected() == 0 {
                    return Ok(false);
                }
                sqlx::query("UPDATE token_families SET revoked = TRUE WHERE account_id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("DELETE FROM fresh_auth WHERE account_id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("DELETE FROM login_states WHERE account_id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                if let Some((family, token)) = &change.new_session {
                    sqlx::query(
                        "INSERT INTO token_families (id, account_id, device_id, revoked, created_at) \
                         VALUES ($1, $2, $3, $4, $5)",
                    )
                    .bind(&family.id.as_bytes()[..])
                    .bind(&family.account_id.as_bytes()[..])
                    .bind(&family.device_id.as_bytes()[..])
                    .bind(family.revoked)
                    .bind(family.created_at)
                    .execute(&mut *tx)
                    .await?;
                    sqlx::query(
                        "INSERT INTO refresh_tokens (token_hash, family_id, created_at, expires_at, used_at) \
                         VALUES ($1, $2, $3, $4, $5)",
                    )
                    .bind(&token.token_hash[..])
                    .bind(&family.id.as_bytes()[..])
                    .bind(token.created_at)
                    .bind(token.expires_at)
                    .bind(token.used_at)
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
                Ok(true)
            }

            async fn revoke_sessions(
                &self,
                account: &$crate::ids::Id,
            ) -> $crate::db::error::StoreResult<u64> {
                let id = &account.as_bytes()[..];
                let mut tx = self
                    .pool()
                    .begin_with(<$db as $crate::db::sql::TxBegin>::BEGIN)
                    .await?;
                let done = sqlx::query(
                    "UPDATE token_families SET revoked = TRUE \
                     WHERE account_id = $1 AND revoked = FALSE",
                )
                .bind(id)
                .execute(&mut *tx)
                .await?;
                sqlx::query("DELETE FROM fresh_auth WHERE account_id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(done.rows_affected())
            }
        }
    };
}

pub(crate) use impl_credential_store;
