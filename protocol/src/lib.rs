//! Wire and API types shared by the Haven relay and the Haven SDK.
//!
//! This crate holds plain data types only: no cryptography and no I/O. Every type here is
//! specified byte for byte (or field for field, for JSON bodies) in `docs/PROTOCOL.md`.
//! The one exception is the optional `opaque` feature, which names the OPAQUE parameter set
//! (a type-level choice of primitives, not an implementation) so relay and client agree on it.
//! The second is the `franking` feature: [`franking`]'s layouts are always here, and with the
//! feature `franking::verify` computes the franking MACs (PROTOCOL.md §16), because the relay
//! must verify abuse reports and may not depend on the SDK.
//!
//! [`api`] holds the relay's HTTP bodies. Its optional features only add to them: `openapi`
//! derives their OpenAPI schemas (for the relay's `/openapi.json`) and `random` lets the relay
//! mint [`api::Id`]s from the operating system's RNG.

/// Version of the relay HTTP API, carried in the `/v1` path prefix.
pub const API_VERSION: u32 = 1;

#[cfg(feature = "opaque")]
pub mod opaque;

pub mod account;
pub mod api;
pub mod attachment;
pub mod certificate;
pub mod content;
pub mod encoding;
pub mod frames;
pub mod franking;
pub mod group_change;
pub mod padding;
pub mod prekeys;
pub mod provisioning;
pub mod vault;
