//! The vault: per-account encrypted items with revisions, history and sync (PROTOCOL.md §11.16).

mod conformance;
pub mod routes;
pub(crate) mod sql;
pub mod store;
