//! The key directory: prekey uploads, counts, digests and bundle claims (PROTOCOL.md §11.11).

pub mod routes;
pub(crate) mod sql;
pub mod store;
