//! Where an [`EncryptedStore`](super::EncryptedStore) keeps its rows (PROTOCOL §12).
//!
//! A backend stores bytes it cannot read: row keys are keyed hashes and values are sealed by the
//! store before they reach it. It holds two tables, the rows and a small `meta` table (schema
//! version and check value), and offers nestable transactions. Everything about encryption,
//! encodings and limits lives in the store, once; a backend is only storage.

use super::{ClientStoreError, Space};

/// The key of a row as the backend stores it: `HMAC-SHA256(index_key, u16be(space) || natural
/// key)` (PROTOCOL §12), never the natural key itself.
pub type RowKey = [u8; 32];

/// Raw storage for an [`EncryptedStore`](super::EncryptedStore): `(space, row key) → sealed
/// value` plus a `name → value` meta table.
///
/// Methods take `&self` because the store's API does (a SQLite connection is internally
/// mutable; a backend in memory uses a `RefCell`), so backends are not `Sync`. Errors are
/// [`ClientStoreError::Backend`] with the backend's message (never a stored value), or
/// [`ClientStoreError::Corrupt`] for a row the backend holds in an impossible shape.
pub trait Backend: Sized {
    /// What [`Backend::open`] opens: a file path for SQLite, rows already held in memory.
    type Location: ?Sized;

    /// Opens (creating if needed) the storage at `location`.
    ///
    /// # Errors
    /// [`ClientStoreError::Backend`].
    fn open(location: &Self::Location) -> Result<Self, ClientStoreError>;

    /// New, empty storage that lives as long as the value (tests, ephemeral sessions).
    ///
    /// # Errors
    /// [`ClientStoreError::Backend`].
    fn in_memory() -> Result<Self, ClientStoreError>;

    /// The meta value `name`, if set.
    ///
    /// # Errors
    /// [`ClientStoreError::Backend`].
    fn meta(&self, name: &str) -> Result<Option<Vec<u8>>, ClientStoreError>;

    /// Sets (replacing) the meta value `name`.
    ///
    /// # Errors
    /// [`ClientStoreError::Backend`].
    fn set_meta(&self, name: &str, value: &[u8]) -> Result<(), ClientStoreError>;

    /// The sealed value of a row, if present.
    ///
    /// # Errors
    /// [`ClientStoreError::Backend`].
    fn get(&self, space: Space, row: &RowKey) -> Result<Option<Vec<u8>>, ClientStoreError>;

    /// Stores (replacing) the sealed value of a row. Durable when this returns outside a
    /// transaction (for backends that persist).
    ///
    /// # Errors
    /// [`ClientStoreError::Backend`].
    fn put(&self, space: Space, row: &RowKey, sealed: &[u8]) -> Result<(), ClientStoreError>;

    /// Removes a row; whether it existed.
    ///
    /// # Errors
    /// [`ClientStoreError::Backend`].
    fn delete(&self, space: Space, row: &RowKey) -> Result<bool, ClientStoreError>;

    /// Every row of `space` as (row key, sealed value), in no particular order.
    ///
    /// # Errors
    /// [`ClientStoreError::Backend`], [`ClientStoreError::Corrupt`] for a stored row key that is
    /// not 32 bytes.
    fn scan(&self, space: Space) -> Result<Vec<(RowKey, Vec<u8>)>, ClientStoreError>;

    /// Starts a transaction. Transactions nest: each `begin` is closed by one `commit` or
    /// `rollback`, innermost first.
    ///
    /// # Errors
    /// [`ClientStoreError::Backend`].
    fn begin(&self) -> Result<(), ClientStoreError>;

    /// Ends the innermost transaction keeping its writes (durable once the outermost commits).
    ///
    /// # Errors
    /// [`ClientStoreError::Backend`], also when no transaction is open.
    fn commit(&self) -> Result<(), ClientStoreError>;

    /// Ends the innermost transaction undoing its writes (rows and meta).
    ///
    /// # Errors
    /// [`ClientStoreError::Backend`], also when no transaction is open.
    fn rollback(&self) -> Result<(), ClientStoreError>;
}
