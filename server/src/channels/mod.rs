//! Channels: append-only logs addressed by random id, read and written with capability tokens
//! (PROTOCOL.md §11.15).

mod conformance;
pub mod routes;
pub mod service;
pub mod store;
