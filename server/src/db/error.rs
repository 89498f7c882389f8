//! The store's error and result types, and secret bytes read from the store. A leaf: every
//! feature's store trait uses these without depending on the backends.

use zeroize::{Zeroize, ZeroizeOnDrop};

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
