//! Blob metadata (`migrations/*/0006_blobs.sql`): owner, padded size, state, expiry, the parts
//! received so far and each account's quota use. The blob bytes themselves live in the blob
//! store (`crate::blobs`), never in the database.
//!
//! One SQL text serves both engines (portable `$n` placeholders, `ON CONFLICT`), expanded once
//! per backend by [`impl_blob_meta_store!`]; it uses only the backends' public `pool()`.

use std::future::Future;

use crate::db::error::StoreResult;
use crate::ids::Id;

/// Lifecycle of a blob.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlobState {
    /// Created; parts are being uploaded.
    Pending,
    /// Every part arrived and the blob was sealed; it can be downloaded.
    Complete,
}

impl BlobState {
    pub(crate) fn code(self) -> i16 {
        match self {
            Self::Pending => 0,
            Self::Complete => 1,
        }
    }

    fn from_code(code: i16) -> Option<Self> {
        match code {
            0 => Some(Self::Pending),
            1 => Some(Self::Complete),
            _ => None,
        }
    }
}

/// A blob's metadata row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlobRecord {
    /// Random blob id (also the object name in the blob store).
    pub id: Id,
    /// The account that uploaded it (pays its quota, may delete it).
    pub account: Id,
    /// Exact padded size in bytes.
    pub size: u64,
    /// Size of every part but the last.
    pub part_size: u64,
    /// Pending or complete.
    pub state: BlobState,
    /// The S3 multipart upload id while pending (S3 backend only).
    pub upload_id: Option<String>,
    /// Creation time.
    pub created_at: i64,
    /// Expiry time: the garbage collector deletes the blob after it.
    pub expires_at: i64,
}

impl BlobRecord {
    /// Number of parts (at least one).
    #[must_use]
    pub fn part_count(&self) -> u64 {
        self.size.div_ceil(self.part_size.max(1)).max(1)
    }

    /// Exact length of part `part` (0-based), `None` past the last part.
    #[must_use]
    pub fn part_len(&self, part: u64) -> Option<u64> {
        let start = part.checked_mul(self.part_size)?;
        (start < self.size).then(|| (self.size - start).min(self.part_size))
    }
}

/// One part received (local) or reported uploaded (S3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlobPart {
    /// 0-based part number.
    pub part: u64,
    /// Its length.
    pub size: u64,
    /// Entity tag from the object store (S3 needs them to complete the upload).
    pub etag: String,
}

/// Per-account quota, checked atomically when a blob is created.
#[derive(Clone, Copy, Debug)]
pub struct BlobQuota {
    /// Most padded bytes (pending and complete) per account.
    pub max_bytes: u64,
    /// Most blobs per account.
    pub max_blobs: u64,
}

/// Quota use of one account.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlobUsage {
    /// Padded bytes of all its blobs.
    pub bytes: u64,
    /// Number of blobs.
    pub blobs: u64,
}

/// Outcome of [`BlobMetaStore::create_blob`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CreateBlobOutcome {
    /// Created; the quota was charged.
    Created,
    /// The byte quota would be exceeded (nothing changed).
    ByteQuotaExceeded(BlobUsage),
    /// The blob-count quota would be exceeded (nothing changed).
    CountQuotaExceeded(BlobUsage),
}

/// Storage of blob metadata.
pub trait BlobMetaStore {
    /// Inserts a pending blob and charges its size to the owner's quota, in one transaction.
    fn create_blob(
        &self,
        blob: &BlobRecord,
        quota: BlobQuota,
    ) -> impl Future<Output = StoreResult<CreateBlobOutcome>> + Send;
    /// Reads a blob.
    fn blob(&self, id: &Id) -> impl Future<Output = StoreResult<Option<BlobRecord>>> + Send;
    /// Records the S3 multipart upload id of a pending blob.
    fn set_blob_upload_id(
        &self,
        id: &Id,
        upload_id: &str,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    /// Records (or replaces) a received part of a pending blob. Returns false if the blob is
    /// gone or no longer pending.
    fn put_blob_part(
        &self,
        id: &Id,
        part: &BlobPart,
    ) -> impl Future<Output = StoreResult<bool>> + Send;
    /// The parts recorded for a blob, in part order.
    fn blob_parts(&self, id: &Id) -> impl Future<Output = StoreResult<Vec<BlobPart>>> + Send;
    /// Marks a pending blob complete (clearing its upload id). Returns false if it was not
    /// pending.
    fn complete_blob(&self, id: &Id, now: i64) -> impl Future<Output = StoreResult<bool>> + Send;
    /// Deletes a blob row (its parts cascade) and refunds its owner's quota. Returns the deleted
    /// row, `None` if it did not exist.
    fn delete_blob(&self, id: &Id) -> impl Future<Output = StoreResult<Option<BlobRecord>>> + Send;
    /// An account's blobs, newest first, at most `limit`.
    fn account_blobs(
        &self,
        account: &Id,
        limit: u32,
    ) -> impl Future<Output = StoreResult<Vec<BlobRecord>>> + Send;
    /// An account's quota use.
    fn blob_usage(&self, account: &Id) -> impl Future<Output = StoreResult<BlobUsage>> + Send;
    /// Blobs due for garbage collection, at most `limit`: expired (`expires_at <= now`),
    /// pending and created at or before `pending_before`, or owned by an account that no longer
    /// exists.
    fn collectable_blobs(
        &self,
        now: i64,
        pending_before: i64,
        limit: u32,
    ) -> impl Future<Output = StoreResult<Vec<BlobRecord>>> + Send;
    /// Whether a blob row exists (the garbage collector asks before deleting stray objects).
    fn blob_exists(&self, id: &Id) -> impl Future<Output = StoreResult<bool>> + Send;
}

/// Implements [`BlobMetaStore`] for a store type with a public `pool()`.
macro_rules! impl_blob_meta_store {
    ($store:ty, $db:ty) => {
        impl $crate::blobs::store::BlobMetaStore for $store {
            async fn create_blob(
                &self,
                blob: &$crate::blobs::store::BlobRecord,
                quota: $crate::blobs::store::BlobQuota,
            ) -> $crate::db::error::StoreResult<$crate::blobs::store::CreateBlobOutcome> {
                let account = &blob.account.as_bytes()[..];
                let size = $crate::blobs::store::to_i64(blob.size);
                let mut tx = self.pool().begin().await?;
                // The upsert comes first so it takes the row lock (Postgres) or the write lock
                // (SQLite) before the check: concurrent creates of one account serialise here
                // and cannot both squeeze under the quota.
                let row = sqlx::query(
                    "INSERT INTO blob_accounts (account_id, byte_count, blob_count) \
                     VALUES ($1, 0, 0) ON CONFLICT (account_id) \
                     DO UPDATE SET byte_count = blob_accounts.byte_count \
                     RETURNING byte_count, blob_count",
                )
                .bind(account)
                .fetch_one(&mut *tx)
                .await?;
                let usage = $crate::blobs::store::usage_from_row::<$db>(&row)?;
                if usage.bytes.saturating_add(blob.size) > quota.max_bytes {
                    return Ok($crate::blobs::store::CreateBlobOutcome::ByteQuotaExceeded(
                        usage,
                    ));
                }
                if usage.blobs.saturating_add(1) > quota.max_blobs {
                    return Ok($crate::blobs::store::CreateBlobOutcome::CountQuotaExceeded(
                        usage,
                    ));
                }
                sqlx::query(
                    "UPDATE blob_accounts SET byte_count = byte_count + $2, \
                     blob_count = blob_count + 1 WHERE account_id = $1",
                )
                .bind(account)
                .bind(size)
                .execute(&mut *tx)
                .await?;
                sqlx::query(
                    "INSERT INTO blobs (id, account_id, size, part_size, state, upload_id, \
                     created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .bind(&blob.id.as_bytes()[..])
                .bind(account)
                .bind(size)
                .bind($crate::blobs::store::to_i64(blob.part_size))
                .bind(blob.state.code())
                .bind(blob.upload_id.as_deref())
                .bind(blob.created_at)
                .bind(blob.expires_at)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok($crate::blobs::store::CreateBlobOutcome::Created)
            }

            async fn blob(
                &self,
                id: &$crate::ids::Id,
            ) -> $crate::db::error::StoreResult<Option<$crate::blobs::store::BlobRecord>> {
                let row = sqlx::query(&format!(
                    "SELECT {BLOB_COLUMNS} FROM blobs WHERE id = $1",
                    BLOB_COLUMNS = $crate::blobs::store::BLOB_COLUMNS
                ))
                .bind(&id.as_bytes()[..])
                .fetch_optional(self.pool())
                .await?;
                row.as_ref()
                    .map($crate::blobs::store::blob_from_row::<$db>)
                    .transpose()
            }

            async fn set_blob_upload_id(
                &self,
                id: &$crate::ids::Id,
                upload_id: &str,
            ) -> $crate::db::error::StoreResult<()> {
                sqlx::query("UPDATE blobs SET upload_id = $2 WHERE id = $1 AND state = 0")
                    .bind(&id.as_bytes()[..])
                    .bind(upload_id)
                    .execute(self.pool())
                    .await?;
                Ok(())
            }

            async fn put_blob_part(
                &self,
                id: &$crate::ids::Id,
                part: &$crate::blobs::store::BlobPart,
            ) -> $crate::db::error::StoreResult<bool> {
                let mut tx = self.pool().begin().await?;
                let pending =
                    sqlx::query("UPDATE blobs SET state = state WHERE id = $1 AND state = 0")
                        .bind(&id.as_bytes()[..])
                        .execute(&mut *tx)
                        .await?
                        .rows_affected()
                        > 0;
                if !pending {
                    return Ok(false);
                }
                sqlx::query(
                    "INSERT INTO blob_parts (blob_id, part, size, etag) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (blob_id, part) DO UPDATE SET size = $3, etag = $4",
                )
                .bind(&id.as_bytes()[..])
                .bind($crate::blobs::store::to_i64(part.part))
                .bind($crate::blobs::store::to_i64(part.size))
                .bind(&part.etag)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(true)
            }

            async fn blob_parts(
                &self,
                id: &$crate::ids::Id,
            ) -> $crate::db::error::StoreResult<Vec<$crate::blobs::store::BlobPart>> {
                use sqlx::Row as _;
                let rows = sqlx::query(
                    "SELECT part, size, etag FROM blob_parts WHERE blob_id = $1 ORDER BY part",
                )
                .bind(&id.as_bytes()[..])
                .fetch_all(self.pool())
                .await?;
                rows.iter()
                    .map(|row| {
                        Ok($crate::blobs::store::BlobPart {
                            part: $crate::blobs::store::to_u64(row.try_get("part")?, "blob_parts")?,
                            size: $crate::blobs::store::to_u64(row.try_get("size")?, "blob_parts")?,
                            etag: row.try_get("etag")?,
                        })
                    })
                    .collect()
            }

            async fn complete_blob(
                &self,
                id: &$crate::ids::Id,
                now: i64,
            ) -> $crate::db::error::StoreResult<bool> {
                let done = sqlx::query(
                    "UPDATE blobs SET state = 1, upload_id = NULL, completed_at = $2 \
                     WHERE id = $1 AND state = 0",
                )
                .bind(&id.as_bytes()[..])
                .bind(now)
                .execute(self.pool())
                .await?;
                Ok(done.rows_affected() > 0)
            }

            async fn delete_blob(
                &self,
                id: &$crate::ids::Id,
            ) -> $crate::db::error::StoreResult<Option<$crate::blobs::store::BlobRecord>> {
                let mut tx = self.pool().begin().await?;
                let row = sqlx::query(&format!(
                    "DELETE FROM blobs WHERE id = $1 RETURNING {BLOB_COLUMNS}",
                    BLOB_COLUMNS = $crate::blobs::store::BLOB_COLUMNS
                ))
                .bind(&id.as_bytes()[..])
                .fetch_optional(&mut *tx)
                .await?;
                let Some(row) = row else {
                    return Ok(None);
                };
                let blob = $crate::blobs::store::blob_from_row::<$db>(&row)?;
                sqlx::query(
                    "UPDATE blob_accounts SET byte_count = byte_count - $2, \
                     blob_count = blob_count - 1 WHERE account_id = $1",
                )
                .bind(&blob.account.as_bytes()[..])
                .bind($crate::blobs::store::to_i64(blob.size))
                .execute(&mut *tx)
                .await?;
                sqlx::query("DELETE FROM blob_accounts WHERE account_id = $1 AND blob_count <= 0")
                    .bind(&blob.account.as_bytes()[..])
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(Some(blob))
            }

            async fn account_blobs(
                &self,
                account: &$crate::ids::Id,
                limit: u32,
            ) -> $crate::db::error::StoreResult<Vec<$crate::blobs::store::BlobRecord>> {
                let rows = sqlx::query(&format!(
                    "SELECT {BLOB_COLUMNS} FROM blobs WHERE account_id = $1 \
                     ORDER BY created_at DESC, id LIMIT $2",
                    BLOB_COLUMNS = $crate::blobs::store::BLOB_COLUMNS
                ))
                .bind(&account.as_bytes()[..])
                .bind(i64::from(limit))
                .fetch_all(self.pool())
                .await?;
                rows.iter()
                    .map($crate::blobs::store::blob_from_row::<$db>)
                    .collect()
            }

            async fn blob_usage(
                &self,
                account: &$crate::ids::Id,
            ) -> $crate::db::error::StoreResult<$crate::blobs::store::BlobUsage> {
                let row = sqlx::query(
                    "SELECT byte_count, blob_count FROM blob_accounts WHERE account_id = $1",
                )
                .bind(&account.as_bytes()[..])
                .fetch_optional(self.pool())
                .await?;
                row.as_ref()
                    .map($crate::blobs::store::usage_from_row::<$db>)
                    .transpose()
                    .map(Option::unwrap_or_default)
            }

            async fn collectable_blobs(
                &self,
                now: i64,
                pending_before: i64,
                limit: u32,
            ) -> $crate::db::error::StoreResult<Vec<$crate::blobs::store::BlobRecord>> {
                let rows = sqlx::query(&format!(
                    "SELECT {BLOB_COLUMNS} FROM blobs b WHERE b.expires_at <= $1 \
                     OR (b.state = 0 AND b.created_at <= $2) \
                     OR NOT EXISTS (SELECT 1 FROM accounts a WHERE a.id = b.account_id) \
                     ORDER BY b.expires_at LIMIT $3",
                    BLOB_COLUMNS = $crate::blobs::store::BLOB_COLUMNS
                ))
                .bind(now)
                .bind(pending_before)
                .bind(i64::from(limit))
                .fetch_all(self.pool())
                .await?;
                rows.iter()
                    .map($crate::blobs::store::blob_from_row::<$db>)
                    .collect()
            }

            async fn blob_exists(
                &self,
                id: &$crate::ids::Id,
            ) -> $crate::db::error::StoreResult<bool> {
                let row = sqlx::query("SELECT 1 AS one FROM blobs WHERE id = $1")
                    .bind(&id.as_bytes()[..])
                    .fetch_optional(self.pool())
                    .await?;
                Ok(row.is_some())
            }
        }
    };
}

pub(crate) const BLOB_COLUMNS: &str =
    "id, account_id, size, part_size, state, upload_id, created_at, expires_at";

pub(crate) fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

pub(crate) fn to_u64(value: i64, table: &'static str) -> StoreResult<u64> {
    u64::try_from(value).map_err(|_| crate::db::error::StoreError::Corrupt { table })
}

pub(crate) fn usage_from_row<DB: sqlx::Database>(row: &DB::Row) -> StoreResult<BlobUsage>
where
    for<'r> i64: sqlx::Decode<'r, DB> + sqlx::Type<DB>,
    for<'r> &'r str: sqlx::ColumnIndex<DB::Row>,
{
    use sqlx::Row as _;
    Ok(BlobUsage {
        bytes: to_u64(row.try_get("byte_count")?, "blob_accounts")?,
        blobs: to_u64(row.try_get("blob_count")?, "blob_accounts")?,
    })
}

pub(crate) fn blob_from_row<DB: sqlx::Database>(row: &DB::Row) -> StoreResult<BlobRecord>
where
    for<'r> i64: sqlx::Decode<'r, DB> + sqlx::Type<DB>,
    for<'r> i16: sqlx::Decode<'r, DB> + sqlx::Type<DB>,
    for<'r> Vec<u8>: sqlx::Decode<'r, DB> + sqlx::Type<DB>,
    for<'r> Option<String>: sqlx::Decode<'r, DB>,
    String: sqlx::Type<DB>,
    for<'r> &'r str: sqlx::ColumnIndex<DB::Row>,
{
    use sqlx::Row as _;
    let corrupt = crate::db::error::StoreError::Corrupt { table: "blobs" };
    let id: Vec<u8> = row.try_get("id")?;
    let account: Vec<u8> = row.try_get("account_id")?;
    let state: i16 = row.try_get("state")?;
    Ok(BlobRecord {
        id: Id::from_slice(&id)
            .map_err(|_| crate::db::error::StoreError::Corrupt { table: "blobs" })?,
        account: Id::from_slice(&account)
            .map_err(|_| crate::db::error::StoreError::Corrupt { table: "blobs" })?,
        size: to_u64(row.try_get("size")?, "blobs")?,
        part_size: to_u64(row.try_get("part_size")?, "blobs")?,
        state: BlobState::from_code(state).ok_or(corrupt)?,
        upload_id: row.try_get("upload_id")?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
    })
}

pub(crate) use impl_blob_meta_store;
