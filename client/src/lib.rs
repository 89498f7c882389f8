//! Haven's native client: everything the sans-I/O SDK core needs from a real device.
//!
//! - [`store`]: an SQLite store for all SDK state, every value encrypted under a storage key the
//!   host application provides.
#![cfg_attr(
    not(test),
    warn(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod store;

pub use store::{ClientStore, ClientStoreError, Space};
