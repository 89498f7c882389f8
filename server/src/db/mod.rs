//! The database: the two backends (SQLite and Postgres), the [`Store`] trait that gathers every
//! feature's store trait, the store error, and server secrets kept in the database.
//!
//! Each feature keeps its own store trait, records and SQL (`accounts::store`, `keys::store`,
//! `mail::store`, `channels::store`, `vault::store`, `blobs::store`, `admin::store`); this module only opens
//! the pool, runs the migrations and expands each feature's SQL for both backends. Handlers are
//! generic over [`Store`] (no `dyn`): the binary picks the backend from the URL scheme. All
//! timestamps are Unix seconds passed in by the caller, so tests control time.

use std::future::Future;

use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::accounts::credentials::CredentialStore;
use crate::accounts::device_lists::AccountIdentityStore;
use crate::accounts::store::{AccountStore, AuthStateStore, DeviceStore, TokenStore};
use crate::admin::store::AdminStore;
use crate::audit::store::AuditStore;
use crate::blobs::store::BlobMetaStore;
use crate::channels::store::{ChannelStore, TicketStore};
use crate::keys::store::KeyStore;
use crate::mail::store::MailboxStore;
use crate::moderation::store::ModerationStore;
use crate::vault::store::VaultStore;

mod conformance;
mod postgres;
pub(crate) mod sql;
mod sqlite;

pub use postgres::PgStore;
pub use sqlite::SqliteStore;

/// Errors from a store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A unique constraint was violated (maps to HTTP 409).
    #[error("unique constraint violated")]
    Conflict,
    /// A configured count limit (e.g. devices per account) was reached.
    #[error("limit reached")]
    LimitReached,
    /// A stored value had an unexpected shape (e.g. an id that is not 16 bytes).
    #[error("corrupt row in {table}")]
    Corrupt {
        /// The table the row came from.
        table: &'static str,
    },
    /// The database reported an error.
    #[error("database error: {0}")]
    Database(#[source] sqlx::Error),
    /// Running the migrations failed.
    #[error("migration error: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The database URL could not be used.
    #[error("invalid database url: {0}")]
    InvalidUrl(String),
    /// The SQLite library reported an error (the SQLite mailbox writer).
    #[error("database error: {0}")]
    Sqlite(#[source] rusqlite::Error),
    /// The mailbox writer task is gone (the store is shutting down).
    #[error("mailbox writer stopped")]
    WriterStopped,
}

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> Self {
        match &err {
            sqlx::Error::Database(db) if db.is_unique_violation() => Self::Conflict,
            _ => Self::Database(err),
        }
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(err: rusqlite::Error) -> Self {
        match &err {
            rusqlite::Error::SqliteFailure(e, _)
                if e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                    || e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY =>
            {
                Self::Conflict
            }
            _ => Self::Sqlite(err),
        }
    }
}

/// Shorthand for store results.
pub type StoreResult<T> = Result<T, StoreError>;

/// Secret bytes read from the store (TOTP secrets, server secrets): zeroized, no `Debug`.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct SecretBytes(Vec<u8>);

impl SecretBytes {
    /// Wraps bytes.
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }

    /// The bytes.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

/// Server-wide secrets (pepper, JWT key, OPAQUE server setup).
pub trait SecretStore {
    /// Inserts `value` under `name` unless present, then returns the stored value, so several
    /// instances starting at once converge on one secret.
    fn secret_or_insert(
        &self,
        name: &str,
        value: &[u8],
    ) -> impl Future<Output = StoreResult<SecretBytes>> + Send;
}

/// Everything the relay needs from storage.
pub trait Store:
    AccountStore
    + DeviceStore
    + KeyStore
    + MailboxStore
    + TokenStore
    + AuthStateStore
    + SecretStore
    + VaultStore
    + ChannelStore
    + TicketStore
    + BlobMetaStore
    + AccountIdentityStore
    + CredentialStore
    + AuditStore
    + ModerationStore
    + AdminStore
    + Clone
    + Send
    + Sync
    + 'static
{
    /// Checks the database answers (readiness).
    fn ping(&self) -> impl Future<Output = StoreResult<()>> + Send;
    /// Names every table with rows (used by tests that dump the database).
    fn table_names(&self) -> impl Future<Output = StoreResult<Vec<String>>> + Send;
}

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
