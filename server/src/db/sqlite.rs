//! The SQLite backend (the zero-configuration default).

use std::str::FromStr;
use std::time::Duration;

use sqlx::Row as _;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use super::{StoreError, StoreResult};
use crate::mail::batch::MailWriter;
use crate::settings;
use crate::settings::DatabaseSettings;

/// SQLite page cache per connection, KiB.
const SQLITE_CACHE_KIB: u32 = 16 * 1024;

/// Store on an SQLite database file.
#[derive(Clone, Debug)]
pub struct SqliteStore {
    pool: SqlitePool,
    writer: MailWriter,
}

impl SqliteStore {
    /// Opens (creating the file and its directory if needed) and migrates the database at `url`
    /// (`sqlite:PATH` or `sqlite://PATH`) with the default [`DatabaseSettings`].
    pub async fn connect(url: &str) -> StoreResult<Self> {
        Self::connect_with(url, &DatabaseSettings::default()).await
    }

    /// Opens and migrates the database at `url`, in WAL mode with the configured durability,
    /// and starts its mailbox writer (group commit, `store/batch.rs`) on the current runtime.
    pub async fn connect_with(url: &str, db: &DatabaseSettings) -> StoreResult<Self> {
        let synchronous = match db.sqlite_synchronous {
            settings::SqliteSynchronous::Normal => SqliteSynchronous::Normal,
            _ => SqliteSynchronous::Full,
        };
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::InvalidUrl(e.to_string()))?
            .create_if_missing(true)
            .foreign_keys(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(synchronous)
            .busy_timeout(Duration::from_secs(5))
            // Pages cached per connection (negative: KiB). The mail writer keeps its connection,
            // so its working set (queue indexes, tombstones) stays cached between batches
            // instead of being read again from the file system.
            .pragma("cache_size", format!("-{}", SQLITE_CACHE_KIB));
        let path = options.get_filename().to_path_buf();
        if path.as_os_str().is_empty() || path == std::path::Path::new(":memory:") {
            return Err(StoreError::InvalidUrl(
                "the relay needs an SQLite database file, not an in-memory database".into(),
            ));
        }
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError::InvalidUrl(format!("cannot create directory: {e}")))?;
        }
        let pool = SqlitePoolOptions::new()
            .max_connections(db.max_connections)
            .connect_with(options)
            .await?;
        sqlx::migrate!("../migrations/sqlite").run(&pool).await?;
        // One writer, on a thread of its own: SQLite has one write lock, a second writer would
        // only wait for it.
        let (writer, rx) = MailWriter::dedicated(db.write_queue);
        crate::mail::sqlite_writer::spawn(&path, db, SQLITE_CACHE_KIB, rx)?;
        Ok(Self { pool, writer })
    }

    /// The underlying pool (tests use it to dump tables).
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Closes the pool (checkpointing the WAL happens on the last close).
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

super::sql::sql_row_helpers!(sqlx::Sqlite);
super::sql::impl_secret_store!(SqliteStore, sqlx::Sqlite);
crate::accounts::sql::impl_account_sql!(SqliteStore, sqlx::Sqlite);
crate::accounts::credentials::impl_credential_store!(SqliteStore, sqlx::Sqlite);
crate::accounts::device_lists::impl_identity_store!(SqliteStore, sqlx::Sqlite);
crate::blobs::store::impl_blob_meta_store!(SqliteStore, sqlx::Sqlite);
crate::keys::sql::impl_key_sql!(SqliteStore, sqlx::Sqlite, "");
crate::mail::sql::impl_mailbox_sql!(SqliteStore, sqlx::Sqlite);
crate::vault::sql::impl_sql_vault_store!(SqliteStore, sqlx::Sqlite);
crate::channels::store::impl_channel_store!(SqliteStore, sqlx::Sqlite);
crate::audit::store::impl_audit_sql!(SqliteStore, sqlx::Sqlite);
crate::moderation::store::impl_moderation_sql!(SqliteStore, sqlx::Sqlite);
crate::admin::sql::impl_admin_sql!(SqliteStore, sqlx::Sqlite);
crate::push::store::impl_push_sql!(SqliteStore, sqlx::Sqlite, "");

impl super::Store for SqliteStore {
    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn table_names(&self) -> StoreResult<Vec<String>> {
        let rows = sqlx::query(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' \
             ORDER BY name",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| r.try_get::<String, _>("name").map_err(StoreError::from))
            .collect()
    }
}
