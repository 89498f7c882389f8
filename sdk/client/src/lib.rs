//! Haven's native client: everything the sans-I/O SDK core needs from a real device.
//!
//! - [`store`]: an SQLite store for all SDK state, every value encrypted under a storage key the
//!   host application provides.
//! - [`device`]: one device end to end: keys on the relay, sealed-sender sends to every device
//!   of a contact, exactly-once receiving with acks after durable storage.
//! - [`relay`]: the relay's HTTP API: OPAQUE registration and login, transparent token refresh.
//! - [`diary`]: the diary on a device, synced through the relay's vault.
//! - [`messenger`]: contacts, 1:1 and group conversations, message types and an event stream:
//!   the I/O driver of the client core's messenger (`haven_client_core::messenger`, which holds
//!   its state and types); its encrypted content format is `haven_protocol::content`, [`ws`] the
//!   WebSocket connection.
//! - [`push`]: this device's push endpoints on the relay; a push handler then calls
//!   [`Messenger::handle_wake_up`].
//! - [`storage_key`]: the store's key from a passphrase and a state directory's salt file.
//! - [`attachments`]: encrypted, padded, resumable blob transfers; [`thumbnail`] makes the
//!   previews image attachments carry.
#![cfg_attr(
    not(test),
    warn(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod attachments;
pub mod device;
pub mod diary;
pub mod messenger;
pub mod push;
pub mod relay;
pub mod storage_key;
pub mod store;
pub mod thumbnail;
pub mod ws;

pub use device::{Device, DeviceError, PendingLink, Received, RejectReason, ReportError};
pub use diary::{Diary, DiaryClientError};
pub use haven_client_core::device::Verification;
pub use haven_protocol::content::{Conversation, ReceiptKind};
pub use messenger::{
    ConnectionState, Event, MessageRecord, Messenger, MessengerError, ReceiptPolicy, WakeSummary,
};
pub use relay::{RelayClient, RelayError, Session};
pub use store::{ClientStore, ClientStoreError, Space};
