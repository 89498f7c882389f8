//! Wire and API types shared by the Haven relay and the Haven SDK.
//!
//! This crate holds plain data types only: no cryptography and no I/O. Every type here is
//! specified byte for byte (or field for field, for JSON bodies) in `docs/PROTOCOL.md`.

/// Version of the relay HTTP API, carried in the `/v1` path prefix.
pub const API_VERSION: u32 = 1;

pub mod padding;
