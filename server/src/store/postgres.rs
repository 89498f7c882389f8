//! The Postgres backend (several relay instances can share one database).

use sqlx::Row as _;
use sqlx::postgres::{PgPool, PgPoolOptions};

use super::{StoreError, StoreResult};

/// Store on a Postgres database.
#[derive(Clone, Debug)]
pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    /// Connects to `url` (`postgres://…`) and runs the migrations.
    pub async fn connect(url: &str) -> StoreResult<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(10)
            .connect(url)
            .await?;
        // Several instances may start at once; sqlx takes an advisory lock while migrating.
        sqlx::migrate!("../migrations/postgres").run(&pool).await?;
        Ok(Self { pool })
    }

    /// The underlying pool (tests use it to dump tables).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Closes the pool.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

super::sql::impl_sql_store!(PgStore, sqlx::Postgres, " FOR UPDATE SKIP LOCKED");
super::vault_sql::impl_sql_vault_store!(PgStore, sqlx::Postgres);
super::channels::impl_channel_store!(PgStore, sqlx::Postgres);

impl super::Store for PgStore {
    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn table_names(&self) -> StoreResult<Vec<String>> {
        let rows = sqlx::query(
            "SELECT table_name::text AS name FROM information_schema.tables \
             WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' ORDER BY 1",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| r.try_get::<String, _>("name").map_err(StoreError::from))
            .collect()
    }
}
