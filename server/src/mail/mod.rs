//! Mailboxes: sealed and logged-in sends, the batched write path, fetches, acks, expiry and
//! ephemeral delivery (PROTOCOL.md §11.12).

pub mod batch;
pub(crate) mod pg_writer;
pub mod routes;
pub mod service;
pub(crate) mod sql;
pub(crate) mod sqlite_writer;
pub mod store;
