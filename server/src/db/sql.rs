//! The SQL shared by both backends. The statements are portable (SQLite ≥ 3.35 and Postgres both
//! accept `$n` placeholders, `ON CONFLICT`, `RETURNING`), so each feature's SQL is one macro
//! (`accounts::sql`, `keys::sql`, `mail::sql`, `vault::sql`, `channels::store`, `blobs::store`)
//! that [`super::sqlite`] and [`super::postgres`] expand into two concrete, monomorphic
//! implementations instead of a generic-over-driver maze. This file holds the row helpers they
//! share and the server secrets' SQL.

/// Row decoding helpers every feature's SQL uses (expanded once per backend module).
macro_rules! sql_row_helpers {
    ($db:ty) => {
        fn row_id(
            row: &<$db as sqlx::Database>::Row,
            column: &str,
            table: &'static str,
        ) -> $crate::db::StoreResult<$crate::ids::Id> {
            use sqlx::Row as _;
            let bytes: Vec<u8> = row.try_get(column)?;
            $crate::ids::Id::from_slice(&bytes)
                .map_err(|_| $crate::db::StoreError::Corrupt { table })
        }

        fn row_u32(
            row: &<$db as sqlx::Database>::Row,
            column: &str,
            table: &'static str,
        ) -> $crate::db::StoreResult<u32> {
            use sqlx::Row as _;
            let value: i64 = row.try_get(column)?;
            u32::try_from(value).map_err(|_| $crate::db::StoreError::Corrupt { table })
        }

        fn row_u64(
            row: &<$db as sqlx::Database>::Row,
            column: &str,
            table: &'static str,
        ) -> $crate::db::StoreResult<u64> {
            use sqlx::Row as _;
            let value: i64 = row.try_get(column)?;
            u64::try_from(value).map_err(|_| $crate::db::StoreError::Corrupt { table })
        }
    };
}

pub(crate) use sql_row_helpers;
/// Implements [`SecretStore`](crate::db::SecretStore) for a type with a `pool` field.
macro_rules! impl_secret_store {
    ($store:ty, $db:ty) => {

        impl $crate::db::SecretStore for $store {
            async fn secret_or_insert(
                &self,
                name: &str,
                value: &[u8],
            ) -> $crate::db::StoreResult<$crate::db::SecretBytes> {
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
                Ok($crate::db::SecretBytes::new(row.try_get("value")?))
            }
        }
    };
}

pub(crate) use impl_secret_store;
