//! Haven's native client: everything the sans-I/O SDK core needs from a real device.
//!
//! - [`store`]: an SQLite store for all SDK state, every value encrypted under a storage key the
//!   host application provides.
//! - [`device`]: one device end to end: keys on the relay, sealed-sender sends to every device
//!   of a contact, exactly-once receiving with acks after durable storage.
//! - [`relay`]: the relay's HTTP API: OPAQUE registration and login, transparent token refresh.
//! - [`diary`]: the diary on a device, synced through the relay's vault.
#![cfg_attr(
    not(test),
    warn(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod attachments;
pub mod device;
pub mod diary;
pub mod relay;
pub mod store;

pub use device::{Device, DeviceError, Received};
pub use diary::{Diary, DiaryClientError};
pub use relay::{RelayClient, RelayError, Session};
pub use store::{ClientStore, ClientStoreError, Space};
