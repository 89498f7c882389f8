//! Random 16-byte identifiers, written as 32 lowercase hex digits in JSON and URLs.
//!
//! The type is the wire type of `haven_protocol::api` (with its `random` feature, so the relay
//! mints ids with `Id::random()`); it is re-exported here so the relay names it in one place.

pub use haven_protocol::api::{ID_LEN, Id, IdError};
