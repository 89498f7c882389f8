//! The Postgres backend (several relay instances can share one database).

use sqlx::Row as _;
use sqlx::postgres::{PgPool, PgPoolOptions};

use super::{StoreError, StoreResult};
use crate::mail::batch::MailWriter;
use crate::settings::DatabaseSettings;

/// Store on a Postgres database.
#[derive(Clone, Debug)]
pub struct PgStore {
    pool: PgPool,
    writer: MailWriter,
}

impl PgStore {
    /// Connects to `url` (`postgres://…`) and runs the migrations, with the default
    /// [`DatabaseSettings`].
    pub async fn connect(url: &str) -> StoreResult<Self> {
        Self::connect_with(url, &DatabaseSettings::default()).await
    }

    /// Connects to `url`, runs the migrations and starts `database.postgres_writers` mailbox
    /// writers (group commit, `store/batch.rs`) on the current runtime.
    pub async fn connect_with(url: &str, db: &DatabaseSettings) -> StoreResult<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(db.max_connections)
            .connect(url)
            .await?;
        // Several instances may start at once; sqlx takes an advisory lock while migrating.
        sqlx::migrate!("../migrations/postgres").run(&pool).await?;
        let writer = spawn_mail_writers(&pool, db, db.postgres_writers);
        Ok(Self { pool, writer })
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

super::sql::sql_row_helpers!(sqlx::Postgres);
super::sql::impl_secret_store!(PgStore, sqlx::Postgres);
crate::accounts::sql::impl_account_sql!(PgStore, sqlx::Postgres);
crate::accounts::credentials::impl_credential_store!(PgStore, sqlx::Postgres);
crate::accounts::device_lists::impl_identity_store!(PgStore, sqlx::Postgres);
crate::blobs::store::impl_blob_meta_store!(PgStore, sqlx::Postgres);
crate::keys::sql::impl_key_sql!(PgStore, sqlx::Postgres, " FOR UPDATE SKIP LOCKED");
crate::mail::sql::impl_mailbox_sql!(PgStore, sqlx::Postgres);
crate::mail::pg_writer::impl_sql_mail_writer!(
    sqlx::Postgres,
    // Row locks taken in (account, device) order, so concurrent batches cannot deadlock.
    "SELECT account_id, device_number FROM devices WHERE (account_id, device_number) IN \
     (SELECT * FROM UNNEST($1::bytea[], $2::int8[])) \
     ORDER BY account_id, device_number FOR NO KEY UPDATE"
);
crate::vault::sql::impl_sql_vault_store!(PgStore, sqlx::Postgres);
crate::channels::store::impl_channel_store!(PgStore, sqlx::Postgres);
crate::audit::store::impl_audit_sql!(PgStore, sqlx::Postgres);
crate::moderation::store::impl_moderation_sql!(PgStore, sqlx::Postgres);
crate::admin::sql::impl_admin_sql!(PgStore, sqlx::Postgres);
crate::push::store::impl_push_sql!(PgStore, sqlx::Postgres, " FOR UPDATE SKIP LOCKED");

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
