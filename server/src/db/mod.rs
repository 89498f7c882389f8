//! The database: the two backends (SQLite and Postgres), the [`Store`] trait that gathers every
//! feature's store trait, the store error, and server secrets kept in the database.
//!
//! Each feature keeps its own store trait, records and SQL (`accounts::store`, `keys::store`,
//! `mail::store`, `channels::store`, `vault::store`, `blobs::store`, `admin::store`); this module only opens
//! the pool, runs the migrations and expands each feature's SQL for both backends. Handlers are
//! generic over [`Store`] (no `dyn`): the binary picks the backend from the URL scheme. All
//! timestamps are Unix seconds passed in by the caller, so tests control time.

use std::future::Future;

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
use crate::push::store::PushStore;
use crate::secrets::SecretStore;
use crate::vault::store::VaultStore;

mod conformance;
pub mod error;
mod postgres;
pub(crate) mod sql;
mod sqlite;

pub use error::{SecretBytes, StoreError, StoreResult};
pub use postgres::PgStore;
pub use sql::TxBegin;
pub use sqlite::SqliteStore;

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
    + PushStore
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
