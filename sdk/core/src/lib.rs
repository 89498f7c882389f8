//! Haven's client core: the state and logic every client platform shares, no I/O.
//!
//! The native client (`haven-client`: SQLite, HTTP, WebSocket) and the web bindings
//! (`haven-wasm`: the page does the I/O) both build on this crate, so they behave alike by
//! construction. It has no tokio, no HTTP client, no database driver and no file access, and
//! builds for `wasm32-unknown-unknown`.
//!
//! - [`store`]: the encrypted key-value store holding every piece of client state (PROTOCOL
//!   §12), generic over where its sealed rows live ([`store::Backend`]); [`store::MemoryBackend`]
//!   keeps them in memory and exports them as one sealed snapshot.
//! - [`messenger`]: contacts, 1:1 and group conversations over that store (PROTOCOL §13): what
//!   a received content changes and which events it yields, what each user action sends, and
//!   the durable follow-ups; the driver does the I/O.
//! - [`device`]: one device sans I/O: its keys on the relay, sealed-sender sends to every device
//!   of a contact and to its own other devices, exactly-once receiving; steps that build the
//!   relay's request bodies and read its answers, driven over HTTP by `haven-client` and by the
//!   page through `haven-wasm`.
//! - [`auth`]: the client's OPAQUE steps (registration, login; §11.5–§11.6.3), the same for the
//!   native relay client and the web device.
//! - [`attachments`]: attachment pointers, the resume state of an upload, blob plans, the
//!   encryptor cut into parts and the decryptor of a download (PROTOCOL §10, §11.17, §14); the
//!   native client moves files and HTTP bodies, the page moves `File`s and `fetch` bodies.
//! - [`diary`]: the diary over the store (PROTOCOL §9, §11.16.1): key bundle, local index,
//!   pending edits, and the vault requests of sync, conflicts, delete, restore, history,
//!   recovery and password change as steps over the SDK's `DiarySync`.

pub mod attachments;
pub mod auth;
pub mod device;
pub mod diary;
pub mod messenger;
pub mod store;
#[cfg(any(test, feature = "test-vectors"))]
pub mod vectors;

pub use store::{
    Backend, ClientStoreError, EncryptedStore, Entry, MemoryBackend, MemoryStore, RowKey, Space,
};
