//! The SQLite backend (the zero-configuration default).

use std::str::FromStr;
use std::time::Duration;

use sqlx::Row as _;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use super::batch::MailWriter;
use super::{StoreError, StoreResult};
use crate::settings::{self, DatabaseSettings};

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
            .busy_timeout(Duration::from_secs(5));
        if let Some(dir) = options.get_filename().parent()
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
        // One writer: SQLite has one write lock, a second writer would only wait for it.
        let writer = spawn_mail_writers(&pool, db, 1);
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

super::sql::impl_sql_store!(
    SqliteStore,
    sqlx::Sqlite,
    "",
    // The first write of a batch takes SQLite's write lock; RETURNING names the devices found.
    "UPDATE devices SET device_number = device_number WHERE (account_id, device_number) IN (",
    ") RETURNING account_id, device_number"
);
super::vault_sql::impl_sql_vault_store!(SqliteStore, sqlx::Sqlite);
super::channels::impl_channel_store!(SqliteStore, sqlx::Sqlite);

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
