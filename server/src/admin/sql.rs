//! The admin feature's SQL, expanded for both backends by `db::sqlite` and `db::postgres`.

/// Implements [`AdminStore`](crate::admin::store::AdminStore) for a type with a `pool` field.
macro_rules! impl_admin_sql {
    ($store:ty, $db:ty) => {
        fn admin_key_from_row(
            row: &<$db as sqlx::Database>::Row,
        ) -> $crate::db::error::StoreResult<$crate::admin::store::AdminKeyRecord> {
            use sqlx::Row as _;
            Ok($crate::admin::store::AdminKeyRecord {
                id: row_id(row, "id", "admin_keys")?,
                label: row.try_get("label")?,
                created_at: row.try_get("created_at")?,
                last_used_at: row.try_get("last_used_at")?,
                expires_at: row.try_get("expires_at")?,
                revoked_at: row.try_get("revoked_at")?,
            })
        }

        /// `SELECT COALESCE(…, 0)` of one aggregate as a `u64`.
        async fn admin_count(
            pool: &sqlx::Pool<$db>,
            sql: &'static str,
            now: Option<i64>,
            table: &'static str,
        ) -> $crate::db::error::StoreResult<u64> {
            use sqlx::Row as _;
            let mut query = sqlx::query(sql);
            if let Some(now) = now {
                query = query.bind(now);
            }
            let row = query.fetch_one(pool).await?;
            let value: i64 = row.try_get(0)?;
            u64::try_from(value).map_err(|_| $crate::db::error::StoreError::Corrupt { table })
        }

        impl $crate::admin::store::AdminStore for $store {
            async fn insert_admin_key(
                &self,
                record: &$crate::admin::store::AdminKeyRecord,
                key_hash: &[u8; 32],
            ) -> $crate::db::error::StoreResult<()> {
                sqlx::query(
                    "INSERT INTO admin_keys \
                     (id, key_hash, label, created_at, last_used_at, expires_at, revoked_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(&record.id.as_bytes()[..])
                .bind(&key_hash[..])
                .bind(&record.label)
                .bind(record.created_at)
                .bind(record.last_used_at)
                .bind(record.expires_at)
                .bind(record.revoked_at)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn admin_key_by_hash(
                &self,
                key_hash: &[u8; 32],
            ) -> $crate::db::error::StoreResult<Option<$crate::admin::store::AdminKeyRecord>> {
                let row = sqlx::query(
                    "SELECT id, label, created_at, last_used_at, expires_at, revoked_at \
                     FROM admin_keys WHERE key_hash = $1",
                )
                .bind(&key_hash[..])
                .fetch_optional(&self.pool)
                .await?;
                row.as_ref().map(admin_key_from_row).transpose()
            }

            async fn touch_admin_key(
                &self,
                id: &$crate::ids::Id,
                now: i64,
            ) -> $crate::db::error::StoreResult<()> {
                // At most one write a minute per key: the page polls every few seconds.
                sqlx::query(
                    "UPDATE admin_keys SET last_used_at = $2 \
                     WHERE id = $1 AND (last_used_at IS NULL OR last_used_at <= $2 - 60)",
                )
                .bind(&id.as_bytes()[..])
                .bind(now)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn list_admin_keys(
                &self,
            ) -> $crate::db::error::StoreResult<Vec<$crate::admin::store::AdminKeyRecord>> {
                let rows = sqlx::query(
                    "SELECT id, label, created_at, last_used_at, expires_at, revoked_at \
                     FROM admin_keys ORDER BY created_at, id",
                )
                .fetch_all(&self.pool)
                .await?;
                rows.iter().map(admin_key_from_row).collect()
            }

            async fn revoke_admin_key(
                &self,
                id: &$crate::ids::Id,
                now: i64,
            ) -> $crate::db::error::StoreResult<bool> {
                let done = sqlx::query(
                    "UPDATE admin_keys SET revoked_at = COALESCE(revoked_at, $2) WHERE id = $1",
                )
                .bind(&id.as_bytes()[..])
                .bind(now)
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected() > 0)
            }

            async fn admin_counts(
                &self,
                now: i64,
            ) -> $crate::db::error::StoreResult<$crate::admin::store::AdminCounts> {
                let pool = &self.pool;
                Ok($crate::admin::store::AdminCounts {
                    accounts: admin_count(pool, "SELECT COUNT(*) FROM accounts", None, "accounts")
                        .await?,
                    devices: admin_count(pool, "SELECT COUNT(*) FROM devices", None, "devices")
                        .await?,
                    queued_envelopes: admin_count(
                        pool,
                        "SELECT COUNT(*) FROM envelopes WHERE expires_at > $1",
                        Some(now),
                        "envelopes",
                    )
                    .await?,
                    devices_with_mail: admin_count(
                        pool,
                        "SELECT COUNT(*) FROM (SELECT DISTINCT account_id, device_number \
                         FROM envelopes WHERE expires_at > $1) AS queues",
                        Some(now),
                        "envelopes",
                    )
                    .await?,
                    blob_bytes: admin_count(
                        pool,
                        "SELECT CAST(COALESCE(SUM(byte_count), 0) AS BIGINT) FROM blob_accounts",
                        None,
                        "blob_accounts",
                    )
                    .await?,
                    vault_bytes: admin_count(
                        pool,
                        "SELECT CAST(COALESCE(SUM(byte_count), 0) AS BIGINT) FROM vault_accounts",
                        None,
                        "vault_accounts",
                    )
                    .await?,
                })
            }
        }
    };
}

pub(crate) use impl_admin_sql;
