//! The vault's SQL, shared by both backends in the style of [`impl_sql_store!`](crate::db::sql):
//! portable statements (`$n` placeholders, `ON CONFLICT`, `RETURNING`) expanded once per engine.

/// Implements [`VaultStore`](crate::vault::store::VaultStore) for a type with a `pool` field.
macro_rules! impl_sql_vault_store {
    ($store:ty, $db:ty) => {
        /// What a vault write does once the head row has been read.
        #[derive(Clone, Copy)]
        enum VaultOp<'a> {
            Put(i64, $crate::vault::store::VaultBlobs<'a>),
            Delete(i64),
            Restore(i64, $crate::vault::store::VaultBlobs<'a>),
        }

        fn vault_item_from_row(
            row: &<$db as sqlx::Database>::Row,
        ) -> $crate::db::error::StoreResult<$crate::vault::store::VaultItemRecord> {
            use sqlx::Row as _;
            let item: Vec<u8> = row.try_get("item_id")?;
            Ok($crate::vault::store::VaultItemRecord {
                item_id: $crate::ids::Id::from_slice(&item)
                    .map_err(|_| $crate::db::error::StoreError::Corrupt { table: "vault_items" })?,
                revision: row.try_get("revision")?,
                deleted: row.try_get("deleted")?,
                seq: row.try_get("seq")?,
                created_at: row.try_get("created_at")?,
                updated_at: row.try_get("updated_at")?,
                body: row.try_get("body")?,
                meta: row.try_get("meta")?,
            })
        }

        const VAULT_ITEM_COLUMNS: &str = "i.item_id, i.revision, i.deleted, i.seq, i.created_at, \
             i.updated_at, r.body, r.meta";
        const VAULT_JOIN: &str = "vault_items i JOIN vault_revisions r ON r.account_id = i.account_id \
             AND r.collection_id = i.collection_id AND r.item_id = i.item_id AND r.revision = i.revision";

        async fn vault_write(
            pool: &sqlx::Pool<$db>,
            key: &$crate::vault::store::VaultKey,
            op: VaultOp<'_>,
            now: i64,
            quota: $crate::vault::store::VaultQuota,
        ) -> $crate::db::error::StoreResult<$crate::vault::store::VaultWriteOutcome> {
            use sqlx::Row as _;
            use $crate::vault::store::VaultWriteOutcome as Out;
            let account = &key.account.as_bytes()[..];
            let collection = &key.collection.as_bytes()[..];
            let item = &key.item.as_bytes()[..];
            let mut tx = pool.begin_with(<$db as $crate::db::sql::TxBegin>::BEGIN).await?;
            // First statement is a write: it takes the account's row lock (Postgres) or the
            // write lock (SQLite) at once, so concurrent writers queue here instead of failing
            // to upgrade a read, and sequence numbers commit in order. A rejected write rolls
            // back, leaving the counter untouched.
            let counters = sqlx::query(
                "INSERT INTO vault_accounts (account_id, last_seq, item_count, byte_count) \
                 VALUES ($1, 1, 0, 0) ON CONFLICT (account_id) \
                 DO UPDATE SET last_seq = vault_accounts.last_seq + 1 \
                 RETURNING last_seq, item_count, byte_count",
            )
            .bind(account)
            .fetch_one(&mut *tx)
            .await?;
            let seq: i64 = counters.try_get("last_seq")?;
            let item_count: i64 = counters.try_get("item_count")?;
            let byte_count: i64 = counters.try_get("byte_count")?;
            let head = sqlx::query(
                "SELECT revision, deleted, created_at FROM vault_items \
                 WHERE account_id = $1 AND collection_id = $2 AND item_id = $3",
            )
            .bind(account)
            .bind(collection)
            .bind(item)
            .fetch_optional(&mut *tx)
            .await?;
            let current: Option<(i64, bool, i64)> = match &head {
                Some(row) => Some((
                    row.try_get("revision")?,
                    row.try_get("deleted")?,
                    row.try_get("created_at")?,
                )),
                None => None,
            };
            let (expected, blobs, deleting) = match op {
                VaultOp::Put(e, b) => (e, Some(b), false),
                VaultOp::Delete(e) => (e, None, true),
                VaultOp::Restore(e, b) => (e, Some(b), false),
            };
            let created_at = match (op, current) {
                (VaultOp::Put(..), None) if expected == 0 => now,
                (VaultOp::Put(..), None) => {
                    return Ok(Out::RevisionMismatch { current_revision: 0, deleted: false });
                }
                (_, None) => return Ok(Out::NotFound),
                (_, Some((rev, deleted, _))) if rev != expected => {
                    return Ok(Out::RevisionMismatch { current_revision: rev, deleted });
                }
                (VaultOp::Put(..) | VaultOp::Delete(_), Some((rev, true, _))) => {
                    return Ok(Out::ItemDeleted { current_revision: rev });
                }
                (VaultOp::Restore(..), Some((rev, false, _))) => {
                    return Ok(Out::ItemNotDeleted { current_revision: rev });
                }
                (_, Some((_, _, created))) => created,
            };
            let is_new = current.is_none();
            let size = blobs.map_or(0, |b| b.size());
            let size = i64::try_from(size).unwrap_or(i64::MAX);
            // An item of the unversioned collection keeps no history: its earlier revisions go
            // in this transaction, and their bytes with them.
            let unversioned = collection == haven_protocol::vault::UNVERSIONED_COLLECTION.as_slice();
            let replaced: i64 = if unversioned && !is_new {
                sqlx::query(
                    "SELECT CAST(COALESCE(SUM(size_bytes), 0) AS BIGINT) AS bytes FROM vault_revisions \
                     WHERE account_id = $1 AND collection_id = $2 AND item_id = $3",
                )
                .bind(account)
                .bind(collection)
                .bind(item)
                .fetch_one(&mut *tx)
                .await?
                .try_get::<i64, _>("bytes")?
            } else {
                0
            };
            let new_items = item_count.saturating_add(i64::from(is_new));
            let new_bytes = byte_count.saturating_add(size).saturating_sub(replaced);
            if u64::try_from(new_items).unwrap_or(u64::MAX) > quota.max_items {
                return Ok(Out::ItemQuota);
            }
            if u64::try_from(new_bytes).unwrap_or(u64::MAX) > quota.max_bytes {
                return Ok(Out::ByteQuota);
            }
            let revision = expected.saturating_add(1);
            let deleted_at = deleting.then_some(now);
            if is_new {
                sqlx::query(
                    "INSERT INTO vault_items (account_id, collection_id, item_id, revision, \
                     deleted, seq, created_at, updated_at, deleted_at) \
                     VALUES ($1, $2, $3, $4, FALSE, $5, $6, $6, NULL)",
                )
                .bind(account)
                .bind(collection)
                .bind(item)
                .bind(revision)
                .bind(seq)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            } else {
                sqlx::query(
                    "UPDATE vault_items SET revision = $4, deleted = $5, seq = $6, \
                     updated_at = $7, deleted_at = $8 \
                     WHERE account_id = $1 AND collection_id = $2 AND item_id = $3",
                )
                .bind(account)
                .bind(collection)
                .bind(item)
                .bind(revision)
                .bind(deleting)
                .bind(seq)
                .bind(now)
                .bind(deleted_at)
                .execute(&mut *tx)
                .await?;
            }
            sqlx::query(
                "INSERT INTO vault_revisions (account_id, collection_id, item_id, revision, \
                 body, meta, size_bytes, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(account)
            .bind(collection)
            .bind(item)
            .bind(revision)
            .bind(blobs.map(|b| b.body))
            .bind(blobs.map(|b| b.meta))
            .bind(size)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            if unversioned {
                sqlx::query(
                    "DELETE FROM vault_revisions \
                     WHERE account_id = $1 AND collection_id = $2 AND item_id = $3 AND revision < $4",
                )
                .bind(account)
                .bind(collection)
                .bind(item)
                .bind(revision)
                .execute(&mut *tx)
                .await?;
            }
            sqlx::query(
                "UPDATE vault_accounts SET item_count = $2, byte_count = $3 WHERE account_id = $1",
            )
            .bind(account)
            .bind(new_items)
            .bind(new_bytes)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(Out::Written($crate::vault::store::VaultHead {
                revision,
                deleted: deleting,
                seq,
                created_at,
                updated_at: now,
            }))
        }

        impl $crate::vault::store::VaultStore for $store {
            async fn vault_put(
                &self,
                key: &$crate::vault::store::VaultKey,
                expected_revision: i64,
                blobs: $crate::vault::store::VaultBlobs<'_>,
                now: i64,
                quota: $crate::vault::store::VaultQuota,
            ) -> $crate::db::error::StoreResult<$crate::vault::store::VaultWriteOutcome> {
                vault_write(&self.pool, key, VaultOp::Put(expected_revision, blobs), now, quota).await
            }

            async fn vault_delete(
                &self,
                key: &$crate::vault::store::VaultKey,
                expected_revision: i64,
                now: i64,
            ) -> $crate::db::error::StoreResult<$crate::vault::store::VaultWriteOutcome> {
                // A tombstone adds no bytes and no item, so no quota can refuse it.
                let quota = $crate::vault::store::VaultQuota { max_items: u64::MAX, max_bytes: u64::MAX };
                vault_write(&self.pool, key, VaultOp::Delete(expected_revision), now, quota).await
            }

            async fn vault_restore(
                &self,
                key: &$crate::vault::store::VaultKey,
                expected_revision: i64,
                blobs: $crate::vault::store::VaultBlobs<'_>,
                now: i64,
                quota: $crate::vault::store::VaultQuota,
            ) -> $crate::db::error::StoreResult<$crate::vault::store::VaultWriteOutcome> {
                vault_write(&self.pool, key, VaultOp::Restore(expected_revision, blobs), now, quota)
                    .await
            }

            async fn vault_item(
                &self,
                key: &$crate::vault::store::VaultKey,
            ) -> $crate::db::error::StoreResult<Option<$crate::vault::store::VaultItemRecord>> {
                let sql = format!(
                    "SELECT {VAULT_ITEM_COLUMNS} FROM {VAULT_JOIN} \
                     WHERE i.account_id = $1 AND i.collection_id = $2 AND i.item_id = $3"
                );
                let row = sqlx::query(&sql)
                    .bind(&key.account.as_bytes()[..])
                    .bind(&key.collection.as_bytes()[..])
                    .bind(&key.item.as_bytes()[..])
                    .fetch_optional(&self.pool)
                    .await?;
                row.as_ref().map(vault_item_from_row).transpose()
            }

            async fn vault_history(
                &self,
                key: &$crate::vault::store::VaultKey,
                after_revision: i64,
                limit: u32,
            ) -> $crate::db::error::StoreResult<Option<Vec<$crate::vault::store::VaultRevisionRecord>>> {
                use sqlx::Row as _;
                let exists = sqlx::query(
                    "SELECT revision FROM vault_items \
                     WHERE account_id = $1 AND collection_id = $2 AND item_id = $3",
                )
                .bind(&key.account.as_bytes()[..])
                .bind(&key.collection.as_bytes()[..])
                .bind(&key.item.as_bytes()[..])
                .fetch_optional(&self.pool)
                .await?;
                if exists.is_none() {
                    return Ok(None);
                }
                let rows = sqlx::query(
                    "SELECT revision, body, meta, created_at FROM vault_revisions \
                     WHERE account_id = $1 AND collection_id = $2 AND item_id = $3 \
                     AND revision > $4 ORDER BY revision LIMIT $5",
                )
                .bind(&key.account.as_bytes()[..])
                .bind(&key.collection.as_bytes()[..])
                .bind(&key.item.as_bytes()[..])
                .bind(after_revision)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?;
                rows.iter()
                    .map(|row| {
                        Ok($crate::vault::store::VaultRevisionRecord {
                            revision: row.try_get("revision")?,
                            body: row.try_get("body")?,
                            meta: row.try_get("meta")?,
                            created_at: row.try_get("created_at")?,
                        })
                    })
                    .collect::<$crate::db::error::StoreResult<Vec<_>>>()
                    .map(Some)
            }

            async fn vault_changes(
                &self,
                account: &$crate::ids::Id,
                collection: &$crate::ids::Id,
                since: i64,
                limit: u32,
            ) -> $crate::db::error::StoreResult<$crate::vault::store::VaultChanges> {
                use sqlx::Row as _;
                // The committed head first: writers of an account commit in sequence order, so
                // every change up to it is visible and nothing below it can appear later.
                let head = sqlx::query("SELECT last_seq FROM vault_accounts WHERE account_id = $1")
                    .bind(&account.as_bytes()[..])
                    .fetch_optional(&self.pool)
                    .await?;
                let last_seq: i64 = match head {
                    Some(row) => row.try_get("last_seq")?,
                    None => 0,
                };
                let sql = format!(
                    "SELECT {VAULT_ITEM_COLUMNS} FROM {VAULT_JOIN} \
                     WHERE i.account_id = $1 AND i.collection_id = $2 AND i.seq > $3 \
                     AND i.seq <= $4 ORDER BY i.seq LIMIT $5"
                );
                let rows = sqlx::query(&sql)
                    .bind(&account.as_bytes()[..])
                    .bind(&collection.as_bytes()[..])
                    .bind(since)
                    .bind(last_seq)
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await?;
                let items = rows
                    .iter()
                    .map(vault_item_from_row)
                    .collect::<$crate::db::error::StoreResult<Vec<_>>>()?;
                // Read after the items: a purge that removed an item before the query above
                // is then always reflected here (the client is told to resync).
                let purged = sqlx::query("SELECT purged_seq FROM vault_accounts WHERE account_id = $1")
                    .bind(&account.as_bytes()[..])
                    .fetch_optional(&self.pool)
                    .await?;
                let purged_seq = match purged {
                    Some(row) => row.try_get("purged_seq")?,
                    None => 0,
                };
                Ok($crate::vault::store::VaultChanges { items, purged_seq, last_seq })
            }

            async fn vault_listing(
                &self,
                account: &$crate::ids::Id,
            ) -> $crate::db::error::StoreResult<Vec<$crate::vault::store::VaultListing>> {
                use sqlx::Row as _;
                let rows = sqlx::query(
                    "SELECT i.collection_id, i.item_id, i.revision, i.deleted, i.created_at, \
                     i.updated_at, CAST(COALESCE((SELECT SUM(r.size_bytes) FROM vault_revisions r \
                         WHERE r.account_id = i.account_id AND r.collection_id = i.collection_id \
                         AND r.item_id = i.item_id), 0) AS BIGINT) AS bytes \
                     FROM vault_items i WHERE i.account_id = $1 \
                     ORDER BY i.collection_id, i.item_id",
                )
                .bind(&account.as_bytes()[..])
                .fetch_all(&self.pool)
                .await?;
                let id = |row: &<$db as sqlx::Database>::Row, col: &str| -> $crate::db::error::StoreResult<$crate::ids::Id> {
                    let bytes: Vec<u8> = row.try_get(col)?;
                    $crate::ids::Id::from_slice(&bytes)
                        .map_err(|_| $crate::db::error::StoreError::Corrupt { table: "vault_items" })
                };
                rows.iter()
                    .map(|row| {
                        Ok($crate::vault::store::VaultListing {
                            collection_id: id(row, "collection_id")?,
                            item_id: id(row, "item_id")?,
                            revision: row.try_get("revision")?,
                            deleted: row.try_get("deleted")?,
                            created_at: row.try_get("created_at")?,
                            updated_at: row.try_get("updated_at")?,
                            bytes: row.try_get("bytes")?,
                        })
                    })
                    .collect()
            }

            async fn vault_usage(
                &self,
                account: &$crate::ids::Id,
            ) -> $crate::db::error::StoreResult<$crate::vault::store::VaultUsage> {
                use sqlx::Row as _;
                let row = sqlx::query(
                    "SELECT item_count, byte_count, last_seq FROM vault_accounts WHERE account_id = $1",
                )
                .bind(&account.as_bytes()[..])
                .fetch_optional(&self.pool)
                .await?;
                let Some(row) = row else { return Ok($crate::vault::store::VaultUsage::default()) };
                Ok($crate::vault::store::VaultUsage {
                    items: row.try_get("item_count")?,
                    bytes: row.try_get("byte_count")?,
                    last_seq: row.try_get("last_seq")?,
                })
            }

            async fn vault_purge_deleted(&self, deleted_before: i64) -> $crate::db::error::StoreResult<u64> {
                use sqlx::Row as _;
                let accounts = sqlx::query(
                    "SELECT DISTINCT account_id FROM vault_items \
                     WHERE deleted = TRUE AND deleted_at <= $1",
                )
                .bind(deleted_before)
                .fetch_all(&self.pool)
                .await?;
                let mut purged = 0u64;
                for row in &accounts {
                    let account: Vec<u8> = row.try_get("account_id")?;
                    let mut tx = self.pool.begin_with(<$db as $crate::db::sql::TxBegin>::BEGIN).await?;
                    // Take the account's write lock first, like every vault write, so the
                    // counters cannot race a concurrent restore.
                    let locked = sqlx::query(
                        "UPDATE vault_accounts SET last_seq = last_seq WHERE account_id = $1",
                    )
                    .bind(&account[..])
                    .execute(&mut *tx)
                    .await?;
                    if locked.rows_affected() == 0 {
                        continue;
                    }
                    let stats = sqlx::query(
                        "SELECT COUNT(*) AS n, CAST(COALESCE(MAX(i.seq), 0) AS BIGINT) AS max_seq, \
                         CAST(COALESCE((SELECT SUM(r.size_bytes) FROM vault_revisions r \
                             JOIN vault_items d ON r.account_id = d.account_id \
                             AND r.collection_id = d.collection_id AND r.item_id = d.item_id \
                             WHERE d.account_id = $1 AND d.deleted = TRUE AND d.deleted_at <= $2), 0) \
                             AS BIGINT) AS bytes \
                         FROM vault_items i WHERE i.account_id = $1 AND i.deleted = TRUE \
                         AND i.deleted_at <= $2",
                    )
                    .bind(&account[..])
                    .bind(deleted_before)
                    .fetch_one(&mut *tx)
                    .await?;
                    let n: i64 = stats.try_get("n")?;
                    let max_seq: i64 = stats.try_get("max_seq")?;
                    let bytes: i64 = stats.try_get("bytes")?;
                    sqlx::query(
                        "DELETE FROM vault_items WHERE account_id = $1 AND deleted = TRUE \
                         AND deleted_at <= $2",
                    )
                    .bind(&account[..])
                    .bind(deleted_before)
                    .execute(&mut *tx)
                    .await?;
                    sqlx::query(
                        "UPDATE vault_accounts SET item_count = item_count - $2, \
                         byte_count = byte_count - $3, \
                         purged_seq = CASE WHEN purged_seq > $4 THEN purged_seq ELSE $4 END \
                         WHERE account_id = $1",
                    )
                    .bind(&account[..])
                    .bind(n)
                    .bind(bytes)
                    .bind(max_seq)
                    .execute(&mut *tx)
                    .await?;
                    tx.commit().await?;
                    purged = purged.saturating_add(u64::try_from(n).unwrap_or(0));
                }
                Ok(purged)
            }
        }
    };
}

pub(crate) use impl_sql_vault_store;
