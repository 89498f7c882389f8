//! uniffi bindings of Haven's client SDK for Swift, Kotlin and Python.
//!
//! A thin layer: every exported object wraps one `haven-client` type (`Messenger`, `Diary`) or
//! one secret (`StorageKey`), and every function parses its string arguments into typed values
//! (account ids, group ids, keys) before anything else happens, so bad input from the host is a
//! typed [`HavenError`] in the host language, never a crash. Passphrases and keys handed across
//! the boundary are moved into `Zeroizing` buffers at once and wiped after use.
//!
//! - [`StorageKey`]: the 32-byte key that encrypts a device's local store (from the Keychain /
//!   Keystore as bytes, hex or base64, or derived from a passphrase with Argon2id).
//! - [`Messenger`]: register / link / load a device, contacts, 1:1 and group messages,
//!   attachments, safety numbers, and the event stream (a callback interface,
//!   [`EventListener`], or pulling with [`Messenger::next_event`]).
//! - [`Diary`]: the end-to-end encrypted diary (create, unlock, write, read, search, sync).
//! - The account's lifecycle on both (PROTOCOL §11.6.1–§11.9): devices, rename, logout
//!   (everywhere), log in again, TOTP, password change, the recovery code, export, deletion;
//!   [`recover_account`] replaces a lost password without a session. Actions that need a fresh
//!   authentication take the password (and TOTP code) and prove it inside the call.
//! - [`safety_number`], [`compute_test_vector`]: stateless helpers (the latter recomputes the
//!   SDK's published test vectors with this build of the library).
//!
//! Async functions run on one multi-threaded tokio runtime owned by this library (the relay
//! client and WebSocket need tokio); the host's executor (asyncio, coroutines, Swift
//! concurrency) only awaits their completion.

mod account;
mod diary;
mod error;
mod key;
mod messenger;
mod runtime;
mod types;
mod vectors;

pub use account::{AccountDevice, AccountIdentifier, TotpSetup, recover_account};
pub use diary::{AccountAccess, Diary};
pub use error::HavenError;
pub use key::StorageKey;
pub use messenger::{EventListener, LinkRequest, Messenger};
pub use types::{
    AttachmentInfo, ConnectionState, Contact, Conversation, DiaryEntry, DiaryEntryItem, DiaryQuery,
    DiaryRevision, DiarySyncReport, Event, GroupInfo, KdfSettings, Message, Reaction, ReceiptKind,
    ReceiptPolicy, SafetyNumber,
};
pub use vectors::{compute_test_vector, test_vector_names};

uniffi::setup_scaffolding!("haven");

use base64::Engine as _;

/// The version of the Haven SDK these bindings were built from.
#[uniffi::export]
pub fn haven_version() -> String {
    env!("CARGO_PKG_VERSION").to_owned()
}

/// The 60-digit safety number of two identities (the same on both sides): compare it out of
/// band to rule out a man in the middle. Account ids are 32 hex digits, identity keys base64
/// (as [`Messenger::identity_key`] returns them).
///
/// # Errors
/// [`HavenError::InvalidInput`] for a malformed id or key.
#[uniffi::export]
pub fn safety_number(
    local_account_id: String,
    local_identity_key: String,
    remote_account_id: String,
    remote_identity_key: String,
) -> Result<String, HavenError> {
    let local = types::parse_id("local account id", &local_account_id)?;
    let remote = types::parse_id("remote account id", &remote_account_id)?;
    let local_key = parse_identity_key("local identity key", &local_identity_key)?;
    let remote_key = parse_identity_key("remote identity key", &remote_identity_key)?;
    Ok(haven_sdk::safety_number(
        &local,
        &local_key,
        &remote,
        &remote_key,
    ))
}

/// Parses a base64 identity key (checking the length before decoding the point).
fn parse_identity_key(what: &str, text: &str) -> Result<haven_sdk::IdentityKey, HavenError> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|_| HavenError::InvalidInput(format!("{what} is not base64")))?;
    haven_sdk::IdentityKey::from_bytes(&bytes).map_err(|e| {
        HavenError::InvalidInput(format!(
            "{what} of {} bytes is not an identity key: {e}",
            bytes.len()
        ))
    })
}
