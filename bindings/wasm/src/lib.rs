//! Haven for the web: the SDK core compiled to WebAssembly with a JavaScript/TypeScript API
//! (wasm-bindgen). The page does the I/O (`fetch` to the relay's HTTP API, the binary
//! `WebSocket`, IndexedDB); this crate does all cryptography and keeps every secret inside the
//! wasm memory:
//!
//! - [`api::WebDevice`]: the client core's device steps (`haven_client_core::device`, the ones
//!   the native client drives): identity and prekeys with the bodies of the key upload,
//!   sealed-sender envelopes per recipient device (PQXDH + Double Ratchet), sealed with a
//!   contact's access key and copied to the own other devices, device-list repair, opening
//!   received envelopes exactly once, the account's access key, signed device lists, linking a
//!   device by approval and unlinking one; the OPAQUE messages (`haven_client_core::auth`) of
//!   registration, login, re-authentication, a new password or recovery code and recovery; and
//!   the whole state as one snapshot encrypted under a key the page holds
//!   (`exportState`/`importState`).
//! - [`messenger::WebMessenger`]: the client core's messenger (`haven_client_core::messenger`)
//!   over the same state: contacts and contact cards, texts, receipts, typing, reactions,
//!   edits, deletes, timers, groups (epochs, channels, sender keys), received envelopes and
//!   channel entries as events, follow-ups, safety numbers (PROTOCOL §13).
//! - [`diary::WebSyncedDiary`]: the client core's diary (`haven_client_core::diary`) synced
//!   through the relay's vault, its state a sealed snapshot the page keeps; the vault requests
//!   are steps the page drives (create, unlock, recover, sync with merges, delete, history,
//!   restore, password change, recovery codes); search runs on the page's local index.
//! - [`api::WebDiary`]: a diary kept by the page only: the key hierarchy (§9) and sealed
//!   entries (§9.5).
//! - [`attachments`]: `WebUpload` / `WebDownload`, the client core's attachment steps (§10,
//!   §11.17, §14): files encrypted and decrypted as streams in constant memory, parts cut for
//!   the page's uploads, the digest checked at the end; `describeAttachment`.
//! - WebSocket frame codec (§11.14).
//!
//! Every error reaching JavaScript is a `HavenError` with a stable `code` ([`ErrorCode`]); no
//! input makes the module trap. The Rust cores ([`device`], [`messenger::MessengerCore`],
//! [`diary`], [`attachments`], [`store`], [`frames`]) are plain Rust, tested natively; `api` and the messenger's
//! JavaScript face only convert arguments and errors.

// wasm-bindgen's macros expand to `unsafe` FFI glue; no `unsafe` is written by hand here.
#[allow(unsafe_code)]
pub mod api;
pub mod attachments;
pub mod device;
pub mod diary;
pub mod error;
pub mod frames;
pub mod messenger;
pub mod store;

pub use error::{ErrorCode, WebError};
