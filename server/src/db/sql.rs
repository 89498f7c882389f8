//! The SQL shared by both backends. The statements are portable (SQLite ≥ 3.35 and Postgres both
//! accept `$n` placeholders, `ON CONFLICT`, `RETURNING`), so each feature's SQL is one macro
//! (`accounts::sql`, `keys::sql`, `mail::sql`, `vault::sql`, `channels::store`, `blobs::store`)
//! that [`super::sqlite`] and [`super::postgres`] expand into two concrete, monomorphic
//! implementations instead of a generic-over-driver maze. This file holds the row helpers they
//! share, how they open a write transaction ([`TxBegin`]), and the server secrets' SQL.

/// How the SQL stores open a write transaction.
///
/// SQLite's default `BEGIN` is deferred: a transaction that reads before it writes takes the
/// write lock only at its first write, and if another connection committed in between it fails
/// at once with `SQLITE_BUSY` (the busy timeout cannot help, its snapshot is stale). `BEGIN
/// IMMEDIATE` takes the write lock up front and waits for it under the busy timeout, so
/// concurrent writers queue instead of failing. Postgres' `BEGIN` needs nothing more.
pub trait TxBegin {
    /// The statement that starts a transaction.
    const BEGIN: &'static str;
}

impl TxBegin for sqlx::Sqlite {
    const BEGIN: &'static str = "BEGIN IMMEDIATE";
}

impl TxBegin for sqlx::Postgres {
    const BEGIN: &'static str = "BEGIN";
}

/// Row decoding helpers every feature's SQL uses (expanded once per backend module).
macro_rules! sql_row_helpers {
    ($db:ty) => {
        fn row_id(
            row: &<$db as sqlx::Database>::Row,
            column: &str,
            table: &'static str,
        ) -> $crate::db::error::StoreResult<$crate::ids::Id> {
            use sqlx::Row as _;
            let bytes: Vec<u8> = row.try_get(column)?;
            $crate::ids::Id::from_slice(&bytes)
                .map_err(|_| $crate::db::error::StoreError::Corrupt { table })
        }

        fn row_u32(
            row: &<$db as sqlx::Database>::Row,
            column: &str,
            table: &'static str,
        ) -> $crate::db::error::StoreResult<u32> {
            use sqlx::Row as _;
            let value: i64 = row.try_get(column)?;
            u32::try_from(value).map_err(|_| $crate::db::error::StoreError::Corrupt { table })
        }

        fn row_u64(
            row: &<$db as sqlx::Database>::Row,
            column: &str,
            table: &'static str,
        ) -> $crate::db::error::StoreResult<u64> {
            use sqlx::Row as _;
            let value: i64 = row.try_get(column)?;
            u64::try_from(value).map_err(|_| $crate::db::error::StoreError::Corrupt { table })
        }
    };
}

pub(crate) use sql_row_helpers;
/// Implements [`SecretStore`](crate::secrets::SecretStore) for a type with a `pool` field.
macro_rules! impl_secret_store {
    ($store:ty, $db:ty) => {

        impl $crate::secrets::SecretStore for $store {
            async fn secret_or_insert(
                &self,
                name: &str,
                value: &[u8],
            ) -> $crate::db::error::StoreResult<$crate::db::error::SecretBytes> {
                use sqlx::Row as _;
                sqlx::query(
                    "INSERT INTO server_secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
                )
                .bind(name)
                .bind(value)
                .execute(&self.pool)
                .await?;
                let row = sqlx::query("SELECT value FROM server_secrets WHERE name = $1")
                    .bind(name)
                    .fetch_one(&self.pool)
                    .await?;
                Ok($crate::db::error::SecretBytes::new(row.try_get("value")?))
            }

            async fn rotate_secret(
                &self,
                name: &str,
                value: &[u8],
                retired_as: &str,
            ) -> $crate::db::error::StoreResult<bool> {
                let mut tx = self.pool.begin_with(<$db as $crate::db::sql::TxBegin>::BEGIN).await?;
                let kept = sqlx::query(
                    "INSERT INTO server_secrets (name, value) \
                     SELECT $2, value FROM server_secrets WHERE name = $1",
                )
                .bind(name)
                .bind(retired_as)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if kept == 0 {
                    return Ok(false);
                }
                sqlx::query("UPDATE server_secrets SET value = $2 WHERE name = $1")
                    .bind(name)
                    .bind(value)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(true)
            }

            async fn secrets_with_prefix(
                &self,
                prefix: &str,
            ) -> $crate::db::error::StoreResult<Vec<(String, $crate::db::error::SecretBytes)>> {
                use sqlx::Row as _;
                // A prefix comparison without LIKE, so no metacharacter needs escaping.
                let rows = sqlx::query(
                    "SELECT name, value FROM server_secrets \
                     WHERE substr(name, 1, length($1)) = $1 ORDER BY name",
                )
                .bind(prefix)
                .fetch_all(&self.pool)
                .await?;
                rows.iter()
                    .map(|row| {
                        Ok((
                            row.try_get("name")?,
                            $crate::db::error::SecretBytes::new(row.try_get("value")?),
                        ))
                    })
                    .collect()
            }

            async fn delete_secret(&self, name: &str) -> $crate::db::error::StoreResult<bool> {
                let done = sqlx::query("DELETE FROM server_secrets WHERE name = $1")
                    .bind(name)
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected() > 0)
            }
        }
    };
}

pub(crate) use impl_secret_store;
