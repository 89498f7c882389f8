//! The admin feature: admin API keys and their [`keys::AdminAuth`] extractor, key management
//! routes, the command line that bootstraps the first key (`haven-relay admin …`), and the
//! overview (`GET /v1/admin/overview`) with its page (`GET /admin`).
//!
//! Nothing here names the application state: routes and the extractor are generic over
//! [`AdminContext`], which the state implements (`app::admin`).

use std::future::Future;

use crate::client_addr::ClientAddrSource;
use crate::error::AppError;
use crate::limits::LimitContext;

pub mod cli;
pub mod keys;
pub mod overview;
pub mod page;
pub mod routes;
pub(crate) mod sql;
pub mod store;

/// What the admin feature needs from the application beyond the rate limiters
/// ([`LimitContext`]) and the client address ([`ClientAddrSource`]): its store and a few live
/// figures.
pub trait AdminContext: LimitContext + ClientAddrSource + Clone + Send + Sync + 'static {
    /// The store holding admin keys and answering the overview's counts.
    type Store: store::AdminStore + Send + Sync;

    /// The store.
    fn admin_store(&self) -> &Self::Store;

    /// WebSockets open on this instance now.
    fn live_sockets(&self) -> u64;

    /// The moderation figures of the overview. The default reports none (`null` in the JSON);
    /// the moderation feature fills them by overriding this method in the application state's
    /// implementation (`app::admin`).
    fn moderation_figures(
        &self,
    ) -> impl Future<Output = Result<overview::ModerationFigures, AppError>> + Send {
        std::future::ready(Ok(overview::ModerationFigures::default()))
    }

    /// Records that admin key `key` was created (`created`) or revoked by the holder of admin key
    /// `actor` in the security audit log. The default records nothing; the application state
    /// writes `admin_key_created` / `admin_key_revoked` events (`app::admin`).
    fn audit_key_event(
        &self,
        created: bool,
        key: crate::ids::Id,
        actor: crate::ids::Id,
    ) -> impl Future<Output = ()> + Send {
        let _ = (created, key, actor);
        std::future::ready(())
    }
}
