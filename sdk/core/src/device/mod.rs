//! One device of one account, sans I/O: its state in the [`EncryptedStore`], its keys on the
//! relay, sealed-sender sends to every device of a contact and to the account's own other
//! devices, and exactly-once receiving (PROTOCOL §2–§7, §11.11–§11.13, §12, §13.2, §13.4).
//!
//! Nothing here touches the network or a clock. Each step takes the store, `now` (Unix seconds)
//! and an RNG, and either returns a typed request body of [`haven_protocol::api`] for the driver
//! to send or consumes the relay's typed answer. The native client (`haven_client::Device`,
//! HTTP through its `RelayClient`) and the web bindings (`haven-wasm`, the page's `fetch`) drive
//! the same steps, so both behave alike by construction:
//!
//! ```text
//! set up     store_session(tokens) · pin_relay_key(GET /v1/certificate/key)
//!            keys::upload ──► PUT /v1/keys            (base keys + one-time batch)
//!            generate_access_key ─► PUT /v1/account/access-key ─► set_own_access_key
//! upkeep     GET /v1/keys/counts ─► keys::replenish ─► PUT /v1/keys
//!            keys::rotate ─► PUT /v1/keys ─► keys::retire
//! send       certificate (cached) | POST /v1/certificate ─► accept_certificate
//!            franking key (cached) | GET /v1/franking/key ─► accept_franking_key
//!            [own account] own_devices_due ─► GET /v1/devices ─► set_own_devices
//!            OutgoingPlaintext · claims ─► GET /v1/keys/{account}[/{n}] ─► encrypt
//!            ─► POST outgoing.path()
//!            409/410 ─► repair ─► claims ─► encrypt ─► POST        (at most SEND_ATTEMPTS)
//! receive    GET /v1/messages | WebSocket ─► open_envelope | receive ─► ack
//! ```
//!
//! - [`state`]: the device's own record ([`LocalDevice`]: account, device number, pinned relay
//!   key), the relay session, the sender certificate, access keys, contact device lists,
//!   identities and safety numbers.
//! - [`keys`]: prekey generation and the bodies of `PUT /v1/keys`.
//! - [`send`]: claims, per-device sealed envelopes, the send body, device-list repair.
//! - [`receive`]: opening an envelope exactly once.
//! - [`franking`]: the relay's franking key, delivered franking and report material (§16).
//!
//! Every write a step makes is one store transaction: a step that fails leaves the store as it
//! was.

use haven_sdk::store::StoreError;

use crate::store::{ClientStoreError, Space};

pub mod directory;
pub mod franking;
pub mod keys;
pub mod link;
pub mod receive;
pub mod send;
pub mod state;

#[cfg(test)]
mod tests;

pub use directory::{
    AccountTrust, DirectoryNotice, ListAnswer, ListRefusal, ListUpdate, Verification, Vouch,
};
pub use franking::{DeliveredFranking, REPORT_WINDOW, ReportError, ReportMaterial};
pub use keys::{PREKEY_BATCH, Rotation};
pub use link::{LinkGrant, LinkRequest};
pub use receive::{Opened, Received, RejectReason};
pub use send::{Claim, OutgoingPlaintext, OutgoingSend, SEND_ATTEMPTS};
pub use state::{LocalDevice, SafetyNumber, StoredSession};

/// Application spaces of the device in the store (PROTOCOL §12).
pub mod space {
    use super::Space;

    /// The device's own settings: account and device ids, refresh token, pinned relay key,
    /// sender certificate, key counters, the account's and contacts' access keys.
    pub const META: Space = Space::app(0xF0);
    /// The known device numbers of each account this device sends to (its own included).
    pub const CONTACT_DEVICES: Space = Space::app(0xF1);
    /// Relay message ids already processed (exactly-once delivery).
    pub const SEEN: Space = Space::app(0xF2);
    /// Received messages of [`receive`](super::LocalDevice::receive) (message id → sender and
    /// plaintext).
    pub const INBOX: Space = Space::app(0xF3);
    /// Each account's accepted signed device list and pinned account key (§15), see
    /// [`directory`](super::directory).
    pub const ACCOUNTS: Space = Space::app(0xF4);
}

/// Sealed-sender content type of a Double Ratchet message carried inside an envelope (§5.2).
pub const CONTENT_SESSION: u8 = 0x01;

/// Errors of the device steps. Messages never contain key bytes or plaintext.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeviceError {
    /// The local store failed.
    #[error(transparent)]
    Store(#[from] ClientStoreError),
    /// The store holds no registered device yet (no session, or no pinned relay key).
    #[error("device not set up")]
    NotSetUp,
    /// An argument of the caller is malformed (an account id that is not 16 bytes of hex).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// An answer of the relay is malformed or fails verification (a bundle, a certificate, the
    /// relay key, tokens for another account or device).
    #[error("invalid relay answer: {0}")]
    InvalidResponse(String),
    /// A contact device's identity key differs from the one this device trusts; the user must
    /// compare the new safety number and accept it ([`LocalDevice::accept_identity`]) before
    /// messages are sent to it again.
    #[error("identity key of {account} device {device} changed")]
    IdentityChanged {
        /// The contact account (32 hex).
        account: String,
        /// The device number.
        device: u32,
    },
    /// The account's signed device list was refused (invalid, rolled back, forked, or
    /// withdrawn after one was accepted): the relay lies or the account's history forked.
    /// Nothing changed; show it to the user.
    #[error("device list of {account} refused: {reason}")]
    DeviceList {
        /// The account (32 hex).
        account: String,
        /// Why.
        reason: directory::ListRefusal,
    },
    /// The account's identity key changed (its device list is signed by another key). Nothing
    /// is sent to or accepted from the account until the user compares the new safety number
    /// and accepts it ([`LocalDevice::accept_account_key`]).
    #[error("account identity key of {account} changed")]
    AccountKeyChanged {
        /// The account (32 hex).
        account: String,
    },
    /// The relay named a device (in a device mismatch, a bundle or a certificate) that the
    /// account's signed device list does not name with that identity key: a device the relay
    /// added or a key it forged. Nothing was sent to it.
    #[error("device {device} of {account} is not in the account's signed device list")]
    UnlistedDevice {
        /// The account (32 hex).
        account: String,
        /// The device number.
        device: u32,
    },
    /// The user verified the account, and its list now names devices (new or re-keyed) the
    /// user has not confirmed: ask (the blocking prompt), then
    /// [`LocalDevice::confirm_devices`]. Nothing was sent.
    #[error("{account} has new devices {devices:?} to confirm before sending")]
    UnconfirmedDevices {
        /// The account (32 hex).
        account: String,
        /// The devices to confirm.
        devices: Vec<u32>,
    },
    /// No device list of the account is known yet: fetch it
    /// (`GET /v1/accounts/{account}/device-list`, then [`LocalDevice::accept_device_list`])
    /// and try again.
    #[error("fetch the device list of {account} first")]
    NeedDeviceList {
        /// The account (32 hex).
        account: String,
    },
    /// This device does not hold its account's identity key, so it cannot sign a device list.
    #[error("this device does not hold the account identity key")]
    NoAccountKey,
    /// No sender certificate valid long enough is held: fetch one first.
    #[error("no valid sender certificate")]
    NoCertificate,
    /// A device to send to has neither a session nor a claimed bundle.
    #[error("no session and no bundle for device {device}")]
    NoSession {
        /// The device number.
        device: u32,
    },
    /// The account has no device to send to.
    #[error("no device to send to")]
    NoDevices,
    /// A protocol step failed (session, sealing, padding, a corrupt stored value).
    #[error("protocol: {0}")]
    Protocol(String),
}

impl From<StoreError> for DeviceError {
    fn from(e: StoreError) -> Self {
        Self::Protocol(e.to_string())
    }
}

pub(crate) fn protocol(e: impl std::fmt::Display) -> DeviceError {
    DeviceError::Protocol(e.to_string())
}

pub(crate) fn bad_response(what: impl Into<String>) -> DeviceError {
    DeviceError::InvalidResponse(what.into())
}

/// An account id from its 32 hex digits (either case).
///
/// # Errors
/// [`DeviceError::InvalidArgument`].
pub fn parse_account(hex_id: &str) -> Result<[u8; 16], DeviceError> {
    let mut out = [0u8; 16];
    hex::decode_to_slice(hex_id, &mut out)
        .map_err(|_| DeviceError::InvalidArgument("account id is not 32 hex digits".into()))?;
    Ok(out)
}
