//! The Messenger: contacts, 1:1 conversations, groups and an event stream on top of a
//! [`Device`].
//!
//! - **1:1.** Every content (§13) is sealed to every device of the contact and, as a sync copy,
//!   to the user's own other devices. The first message to a contact carries a contact card
//!   (the account's access key) so the contact's replies are sealed too.
//! - **Groups.** Sender keys (§8) over a relay channel (§11.15). The channel holds the group's
//!   entries (messages and membership updates) encrypted under a group key the relay never
//!   sees; its secrets travel 1:1 in group invites. Removing a member starts a new *epoch*: a new
//!   channel, a new group key and new sender keys, given only to the remaining members, so the
//!   removed member cannot read what follows. Layouts: `docs/PROTOCOL.md` §13.
//! - **Exactly once.** An envelope's decryption, the application's resulting writes (message,
//!   group state, follow-up tasks) and its seen-marker commit in one store transaction before
//!   the relay is told to delete it; events are emitted after the commit. Follow-up network
//!   work (distributing sender keys, delivery receipts) is a durable task, retried until done.
//! - **Connection.** [`Messenger::run`] keeps the WebSocket open with jittered exponential
//!   backoff and processes queued and live envelopes and group channel entries;
//!   [`Messenger::sync`] does the same once over REST.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use futures_util::{SinkExt, StreamExt};
use haven_sdk::groups::{
    DistributionId, GroupError, GroupSenderSession, SenderKeyDistributionMessage,
};
use haven_sdk::store::DeviceAddress;
use haven_sdk::store::sender_keys::{SenderKeyName, SenderKeyStore, group_decrypt};
use haven_sdk::{pad, unpad};
use reqwest::Method;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::{broadcast, mpsc};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use zeroize::Zeroizing;

use crate::attachments::{AttachmentPointer, Attachments, AttachmentsError, Progress};
use crate::device::{Device, DeviceError, Opened, RejectReason};
use crate::store::{ClientStore, ClientStoreError, Space};
use crate::thumbnail;
use crate::ws::{self, Backoff, ConnectError};
use haven_protocol::api::channels::{
    AppendRequest, AppendResponse, CreateChannelRequest, CreateChannelResponse, EntriesPage,
};
use haven_protocol::api::usernames::{LookupRequest, LookupResponse};
use haven_protocol::content::{
    Body, Content, ContentError, Conversation, GroupInvite, ReceiptKind,
};
use haven_protocol::frames::{ClientFrame, EnvelopeFrame, ServerFrame};

/// Contacts by account.
const CONTACTS: Space = Space::app(0xE0);
/// Messages by conversation key (17 bytes) · message id.
const MESSAGES: Space = Space::app(0xE1);
/// Group state by group id.
const GROUPS: Space = Space::app(0xE2);
/// Group channel entries waiting for their sender's key, by group id · epoch · seq.
const GROUP_PENDING: Space = Space::app(0xE3);
/// Durable follow-up tasks by random id.
const TASKS: Space = Space::app(0xE4);
/// Per-conversation settings (disappearing timer) by conversation key.
const CONV_SETTINGS: Space = Space::app(0xE5);
/// Sender keys that arrived before the invite of their group epoch, by group id · epoch ·
/// sender account · sender device.
const PENDING_SENDER_KEYS: Space = Space::app(0xE6);
/// Most early sender keys kept (all groups together).
pub const MAX_PENDING_SENDER_KEYS: usize = 1024;

/// Most channel entries kept per group while their sender's key has not arrived.
pub const MAX_PENDING_PER_GROUP: usize = 512;
/// Capacity of the event channel; a subscriber that falls further behind misses events
/// (and is told so by `broadcast`'s `Lagged`), the store keeps everything.
pub const EVENT_CAPACITY: usize = 1024;
/// Most entries read from a channel per REST page.
const CHANNEL_PAGE: u32 = 100;
/// AAD label of group channel entries.
const ENTRY_LABEL: &[u8] = b"haven/group-entry/v1";
/// Label of a group epoch's distribution id.
const DISTRIBUTION_LABEL: &[u8] = b"haven/group-distribution/v1";
/// Lifetime requested for a group channel (the relay caps it at its maximum).
const CHANNEL_TTL_SECS: u64 = 90 * 86_400;

/// Errors of the messenger.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MessengerError {
    /// The device layer failed (relay, store, protocol), including
    /// [`DeviceError::IdentityChanged`].
    #[error(transparent)]
    Device(#[from] DeviceError),
    /// Content could not be encoded (a limit was exceeded).
    #[error(transparent)]
    Content(#[from] ContentError),
    /// An attachment upload or download failed.
    #[error(transparent)]
    Attachment(#[from] AttachmentsError),
    /// Bad input from the application (unknown group, empty text, not a member, …).
    #[error("{0}")]
    Invalid(String),
    /// The session is gone (logged out or unlinked); log in again.
    #[error("session no longer valid: {0}")]
    SessionRevoked(String),
}

impl From<ClientStoreError> for MessengerError {
    fn from(e: ClientStoreError) -> Self {
        Self::Device(DeviceError::Store(e))
    }
}

impl From<crate::relay::RelayError> for MessengerError {
    fn from(e: crate::relay::RelayError) -> Self {
        Self::Device(DeviceError::Relay(e))
    }
}

fn invalid(msg: impl Into<String>) -> MessengerError {
    MessengerError::Invalid(msg.into())
}

fn corrupt(what: &str) -> DeviceError {
    DeviceError::Protocol(format!("stored {what} malformed"))
}

/// The connection's state, as reported in [`Event::Connection`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectionState {
    /// Opening the socket.
    Connecting,
    /// Open; queued envelopes follow.
    Connected,
    /// Every envelope queued at opening has been processed.
    CaughtUp,
    /// Closed; the next attempt follows after `retry_in`.
    Disconnected {
        /// Why.
        reason: String,
        /// Delay before the next attempt.
        retry_in: Duration,
    },
    /// Stopped for good (session revoked, or replaced by a newer socket of this device).
    Stopped {
        /// Why.
        reason: String,
    },
}

/// Something the application should know about.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A new message (incoming, or sent by another own device).
    Message(MessageRecord),
    /// Delivery or read receipts for own messages.
    Receipt {
        /// The conversation.
        conversation: Conversation,
        /// Who sent the receipt.
        from: [u8; 16],
        /// Delivered or read.
        kind: ReceiptKind,
        /// The messages.
        message_ids: Vec<[u8; 16]>,
    },
    /// A contact started or stopped typing.
    Typing {
        /// The conversation.
        conversation: Conversation,
        /// Who.
        from: [u8; 16],
        /// Started (`true`) or stopped.
        started: bool,
    },
    /// A reaction was added or removed.
    Reaction {
        /// The conversation.
        conversation: Conversation,
        /// The message.
        target: [u8; 16],
        /// Who.
        from: [u8; 16],
        /// The reaction.
        emoji: String,
        /// Removed instead of added.
        removed: bool,
    },
    /// A message was edited.
    Edited {
        /// The conversation.
        conversation: Conversation,
        /// The message.
        target: [u8; 16],
        /// Its new text.
        text: String,
    },
    /// A message was deleted for everyone.
    Deleted {
        /// The conversation.
        conversation: Conversation,
        /// The message.
        target: [u8; 16],
    },
    /// The conversation's disappearing timer changed.
    TimerChanged {
        /// The conversation.
        conversation: Conversation,
        /// New timer in seconds (0 = off).
        expire_secs: u32,
    },
    /// A group's name or members changed, or this account joined it.
    GroupUpdated {
        /// The group.
        group_id: [u8; 16],
        /// Its name.
        name: String,
        /// Its members.
        members: Vec<[u8; 16]>,
    },
    /// This account was removed from a group; nothing more is received from it.
    RemovedFromGroup {
        /// The group.
        group_id: [u8; 16],
    },
    /// A contact device's identity key differs from the trusted one: compare safety numbers
    /// and call [`Messenger::accept_identity`].
    IdentityChanged {
        /// The contact.
        account: [u8; 16],
        /// Its device.
        device: u32,
    },
    /// An envelope or a group entry was refused; nothing was changed by it.
    Rejected {
        /// Why.
        reason: RejectReason,
    },
    /// The connection changed state.
    Connection(ConnectionState),
}

mod hex16 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(v: &[u8; 16], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 16], D::Error> {
        let text = String::deserialize(d)?;
        hex::decode(&text)
            .ok()
            .and_then(|b| <[u8; 16]>::try_from(b).ok())
            .ok_or_else(|| serde::de::Error::custom("expected 32 hex digits"))
    }
}

mod hex16_vec {
    use serde::{Deserialize, Deserializer, Serializer, ser::SerializeSeq};

    pub(super) fn serialize<S: Serializer>(v: &[[u8; 16]], s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(v.len()))?;
        for item in v {
            seq.serialize_element(&hex::encode(item))?;
        }
        seq.end()
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<[u8; 16]>, D::Error> {
        let items = Vec::<String>::deserialize(d)?;
        items
            .iter()
            .map(|t| {
                hex::decode(t)
                    .ok()
                    .and_then(|b| <[u8; 16]>::try_from(b).ok())
                    .ok_or_else(|| serde::de::Error::custom("expected 32 hex digits"))
            })
            .collect()
    }
}

mod b64bytes {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer, T: AsRef<[u8]>>(v: &T, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(v.as_ref()))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>, const N: usize>(
        d: D,
    ) -> Result<[u8; N], D::Error> {
        let text = String::deserialize(d)?;
        STANDARD
            .decode(text)
            .ok()
            .and_then(|b| <[u8; N]>::try_from(b).ok())
            .ok_or_else(|| serde::de::Error::custom("bad length"))
    }
}

/// A contact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contact {
    /// The contact's account id.
    #[serde(with = "hex16")]
    pub account: [u8; 16],
    /// The username it was added by, if any.
    pub username: Option<String>,
    /// Whether this account's contact card (access key) was sent to it.
    pub card_sent: bool,
}

/// A reaction on a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReactionRecord {
    /// Who reacted.
    #[serde(with = "hex16")]
    pub from: [u8; 16],
    /// The reaction.
    pub emoji: String,
}

/// A stored message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageRecord {
    /// `0` direct, `1` group.
    pub conversation_kind: u8,
    /// The conversation id (the contact account or the group id).
    #[serde(with = "hex16")]
    pub conversation_id: [u8; 16],
    /// The message id.
    #[serde(with = "hex16")]
    pub message_id: [u8; 16],
    /// The sending account.
    #[serde(with = "hex16")]
    pub sender: [u8; 16],
    /// The sending device.
    pub sender_device: u32,
    /// Sent by this account (from this or another own device).
    pub outgoing: bool,
    /// Sender's clock (ms).
    pub sent_at: u64,
    /// The text (empty once deleted).
    pub text: String,
    /// Encoded attachment pointer (empty when none).
    #[serde(default)]
    pub attachment: Vec<u8>,
    /// Edited at least once.
    pub edited: bool,
    /// Deleted for everyone.
    pub deleted: bool,
    /// Reactions, one per account.
    pub reactions: Vec<ReactionRecord>,
    /// Accounts that confirmed delivery.
    #[serde(with = "hex16_vec")]
    pub delivered_to: Vec<[u8; 16]>,
    /// Accounts that read it.
    #[serde(with = "hex16_vec")]
    pub read_by: Vec<[u8; 16]>,
    /// When it disappears (Unix seconds), if a timer applies.
    pub expires_at: Option<u64>,
}

impl MessageRecord {
    /// The conversation.
    #[must_use]
    pub fn conversation(&self) -> Conversation {
        if self.conversation_kind == 1 {
            Conversation::Group(self.conversation_id)
        } else {
            Conversation::Direct(self.conversation_id)
        }
    }
}

/// The keys and position of one group epoch.
#[derive(Clone, Serialize, Deserialize)]
struct Epoch {
    epoch: u32,
    #[serde(with = "hex16")]
    channel_id: [u8; 16],
    #[serde(
        serialize_with = "b64bytes::serialize",
        deserialize_with = "b64bytes::deserialize"
    )]
    read_token: [u8; 32],
    #[serde(
        serialize_with = "b64bytes::serialize",
        deserialize_with = "b64bytes::deserialize"
    )]
    write_token: [u8; 32],
    #[serde(
        serialize_with = "b64bytes::serialize",
        deserialize_with = "b64bytes::deserialize"
    )]
    group_key: [u8; 32],
    /// Last channel seq processed.
    cursor: u64,
}

impl Drop for Epoch {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        self.read_token.zeroize();
        self.write_token.zeroize();
        self.group_key.zeroize();
    }
}

/// A group as this device knows it.
#[derive(Clone, Serialize, Deserialize)]
struct GroupState {
    #[serde(with = "hex16")]
    id: [u8; 16],
    name: String,
    #[serde(with = "hex16_vec")]
    members: Vec<[u8; 16]>,
    current: Epoch,
    /// Earlier epochs whose channels may still hold unread entries.
    old: Vec<Epoch>,
    /// False once this account was removed.
    active: bool,
}

/// A public view of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupInfo {
    /// The group id.
    pub id: [u8; 16],
    /// Its name.
    pub name: String,
    /// Member accounts.
    pub members: Vec<[u8; 16]>,
    /// Current epoch.
    pub epoch: u32,
    /// Whether this account is still a member.
    pub active: bool,
}

/// Durable follow-up work.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "task")]
enum Task {
    /// Send this device's sender key for a group epoch to every device of `account`.
    SenderKey {
        #[serde(with = "hex16")]
        group: [u8; 16],
        epoch: u32,
        #[serde(with = "hex16")]
        account: [u8; 16],
    },
    /// Send a delivery receipt.
    Delivered {
        #[serde(with = "hex16")]
        account: [u8; 16],
        #[serde(with = "hex16")]
        message_id: [u8; 16],
    },
}

/// A safety number with one device of a contact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SafetyNumber {
    /// The contact's device.
    pub device: u32,
    /// 60 digits, the same on both sides.
    pub digits: String,
}

/// Group-session messages a device processes before it has the sender's key are kept here.
fn pending_key(group: &[u8; 16], epoch: u32, seq: u64) -> Vec<u8> {
    let mut k = group.to_vec();
    k.extend_from_slice(&epoch.to_be_bytes());
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

fn message_key(conversation: &Conversation, id: &[u8; 16]) -> Vec<u8> {
    let mut k = conversation.key().to_vec();
    k.extend_from_slice(id);
    k
}

/// The distribution id of a group epoch: the first 16 bytes of
/// `SHA-256("haven/group-distribution/v1" || group_id || epoch u32)`.
#[must_use]
pub fn distribution_id(group: &[u8; 16], epoch: u32) -> DistributionId {
    let mut h = Sha256::new();
    h.update(DISTRIBUTION_LABEL);
    h.update(group);
    h.update(epoch.to_be_bytes());
    let digest = h.finalize();
    let mut id = [0u8; 16];
    id.copy_from_slice(&digest[..16]);
    DistributionId(id)
}

fn entry_aad(group: &[u8; 16], epoch: u32, channel: &[u8; 16]) -> Vec<u8> {
    let mut aad = ENTRY_LABEL.to_vec();
    aad.extend_from_slice(group);
    aad.extend_from_slice(&epoch.to_be_bytes());
    aad.extend_from_slice(channel);
    aad
}

/// Seals a group channel entry: `nonce [24] · XChaCha20-Poly1305(group_key, nonce, aad,
/// sender_account [16] · sender_device u32 · sender-key message)`.
fn seal_entry(
    group: &[u8; 16],
    epoch: &Epoch,
    sender: &DeviceAddress,
    message: &[u8],
) -> Result<Vec<u8>, DeviceError> {
    let cipher = XChaCha20Poly1305::new((&epoch.group_key).into());
    let mut nonce = [0u8; 24];
    rand::Rng::fill_bytes(&mut rand::rng(), &mut nonce);
    let mut plain = Zeroizing::new(Vec::with_capacity(20 + message.len()));
    plain.extend_from_slice(&sender.account_id);
    plain.extend_from_slice(&sender.device_id.to_be_bytes());
    plain.extend_from_slice(message);
    let aad = entry_aad(group, epoch.epoch, &epoch.channel_id);
    let ct = cipher
        .encrypt(
            &XNonce::from(nonce),
            Payload {
                msg: &plain,
                aad: &aad,
            },
        )
        .map_err(|_| DeviceError::Protocol("group entry encryption failed".into()))?;
    let mut out = nonce.to_vec();
    out.extend_from_slice(&ct);
    Ok(out)
}

fn open_entry(group: &[u8; 16], epoch: &Epoch, entry: &[u8]) -> Option<(DeviceAddress, Vec<u8>)> {
    if entry.len() < 24 + 16 + 20 {
        return None;
    }
    let (nonce, ct) = entry.split_at(24);
    let nonce = XNonce::from(<[u8; 24]>::try_from(nonce).ok()?);
    let cipher = XChaCha20Poly1305::new((&epoch.group_key).into());
    let aad = entry_aad(group, epoch.epoch, &epoch.channel_id);
    let plain = Zeroizing::new(
        cipher
            .decrypt(&nonce, Payload { msg: ct, aad: &aad })
            .ok()?,
    );
    let account: [u8; 16] = plain[..16].try_into().ok()?;
    let device = u32::from_be_bytes(plain[16..20].try_into().ok()?);
    Some((DeviceAddress::new(account, device), plain[20..].to_vec()))
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn random16() -> [u8; 16] {
    let mut id = [0u8; 16];
    rand::Rng::fill_bytes(&mut rand::rng(), &mut id);
    id
}

fn random32() -> [u8; 32] {
    let mut id = [0u8; 32];
    rand::Rng::fill_bytes(&mut rand::rng(), &mut id);
    id
}

fn get_json<T: for<'de> Deserialize<'de>>(
    s: &ClientStore,
    space: Space,
    key: &[u8],
    what: &str,
) -> Result<Option<T>, DeviceError> {
    match s.get(space, key)? {
        Some(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|_| corrupt(what)),
        None => Ok(None),
    }
}

fn put_json<T: Serialize>(
    s: &ClientStore,
    space: Space,
    key: &[u8],
    value: &T,
) -> Result<(), DeviceError> {
    let bytes = Zeroizing::new(serde_json::to_vec(value).map_err(|_| corrupt("record"))?);
    Ok(s.put(space, key, &bytes)?)
}

fn add_task(s: &ClientStore, task: &Task) -> Result<(), DeviceError> {
    put_json(s, TASKS, &random16(), task)
}

/// What applying one content produced: events for the app, and whether the group's pending
/// entries should be retried (a sender key arrived).
#[derive(Default)]
struct Applied {
    events: Vec<Event>,
    retry_groups: Vec<[u8; 16]>,
    subscribe: Vec<[u8; 16]>,
    /// Follow-up tasks were queued: run them now rather than at the next catch-up.
    tasks_added: bool,
}

/// Closes a served socket when its serving future ends in any way: forgets the socket's sender
/// and stops its writer (which drops the connection).
struct SocketGuard<'a> {
    slot: &'a Mutex<Option<mpsc::UnboundedSender<WsMessage>>>,
    writer: tokio::task::AbortHandle,
}

impl Drop for SocketGuard<'_> {
    fn drop(&mut self) {
        *self
            .slot
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
        self.writer.abort();
    }
}

/// The messenger of one device. Share it behind an `Arc`.
pub struct Messenger {
    device: Arc<Device>,
    events: broadcast::Sender<Event>,
    /// Frames to the open socket, if any (channel subscriptions made while connected).
    socket: Mutex<Option<mpsc::UnboundedSender<WsMessage>>>,
    request_ids: AtomicU32,
}

impl std::fmt::Debug for Messenger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Messenger")
            .field("device", &self.device)
            .finish_non_exhaustive()
    }
}

impl Messenger {
    /// A messenger over `device`.
    #[must_use]
    pub fn new(device: Arc<Device>) -> Self {
        let (events, _) = broadcast::channel(EVENT_CAPACITY);
        Self {
            device,
            events,
            socket: Mutex::new(None),
            request_ids: AtomicU32::new(1),
        }
    }

    /// The device.
    #[must_use]
    pub fn device(&self) -> &Arc<Device> {
        &self.device
    }

    /// Subscribes to the event stream.
    #[must_use]
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    fn emit(&self, events: impl IntoIterator<Item = Event>) {
        for e in events {
            // No subscriber is fine: the store holds the messages.
            let _ = self.events.send(e);
        }
    }

    fn own(&self) -> [u8; 16] {
        self.device.account_bytes()
    }

    // ---------------------------------------------------------------- contacts

    /// Adds a contact by account id (32 hex digits) and sends it this account's contact card
    /// (so its replies are sealed); this also establishes sessions with all its devices, whose
    /// safety numbers are then available.
    ///
    /// # Errors
    /// [`MessengerError::Invalid`] for a malformed id or one's own account; relay errors
    /// (`account_not_found`), [`DeviceError::IdentityChanged`].
    pub async fn add_contact(&self, account_hex: &str) -> Result<Contact, MessengerError> {
        self.add_contact_inner(account_hex, None).await
    }

    /// Adds a contact by username: the relay resolves it to an account id (it hashes the name
    /// and forgets it; nothing about the lookup is stored).
    ///
    /// # Errors
    /// As [`Messenger::add_contact`]; `username_not_found`.
    pub async fn add_contact_by_username(&self, username: &str) -> Result<Contact, MessengerError> {
        let body = LookupRequest {
            username: username.to_owned(),
        };
        let reply: LookupResponse = self
            .device
            .relay()
            .request_as(Method::POST, "/v1/usernames/lookup", Some(&body))
            .await?;
        let account = reply.account_id.to_hex();
        self.add_contact_inner(&account, Some(username.trim().to_lowercase()))
            .await
    }

    async fn add_contact_inner(
        &self,
        account_hex: &str,
        username: Option<String>,
    ) -> Result<Contact, MessengerError> {
        let account = parse_hex16(account_hex)?;
        if account == self.own() {
            return Err(invalid("that is this account"));
        }
        let existing = self.contact(&account)?;
        let mut contact = existing.unwrap_or(Contact {
            account,
            username: None,
            card_sent: false,
        });
        if username.is_some() {
            contact.username = username;
        }
        put_json(&self.device.lock(), CONTACTS, &account, &contact)?;
        self.ensure_card_sent(&account).await?;
        Ok(self.contact(&account)?.unwrap_or(contact))
    }

    /// One contact.
    ///
    /// # Errors
    /// Store errors.
    pub fn contact(&self, account: &[u8; 16]) -> Result<Option<Contact>, MessengerError> {
        Ok(get_json(&self.device.lock(), CONTACTS, account, "contact")?)
    }

    /// Every contact.
    ///
    /// # Errors
    /// Store errors.
    pub fn contacts(&self) -> Result<Vec<Contact>, MessengerError> {
        let entries = self.device.lock().entries(CONTACTS)?;
        let mut out = Vec::new();
        for (_, v) in entries {
            out.push(serde_json::from_slice(&v).map_err(|_| corrupt("contact"))?);
        }
        Ok(out)
    }

    async fn ensure_card_sent(&self, account: &[u8; 16]) -> Result<(), MessengerError> {
        let contact = self.contact(account)?;
        if contact.as_ref().is_some_and(|c| c.card_sent) {
            return Ok(());
        }
        let key = self.device.access_key()?;
        let content = Content {
            sent_at: now_ms(),
            conversation: Conversation::Direct(*account),
            body: Body::ContactCard { access_key: key },
        };
        self.send_direct_raw(account, &content, false).await?;
        let mut c = contact.unwrap_or(Contact {
            account: *account,
            username: None,
            card_sent: false,
        });
        c.card_sent = true;
        put_json(&self.device.lock(), CONTACTS, account, &c)?;
        Ok(())
    }

    /// The safety numbers with each known device of `account` (compare them out of band; they
    /// are the same on both sides).
    ///
    /// # Errors
    /// Store errors; [`MessengerError::Invalid`] when no device of the contact is known yet.
    pub fn safety_numbers(&self, account: &[u8; 16]) -> Result<Vec<SafetyNumber>, MessengerError> {
        let own_key = self.device.identity_key()?;
        let mut out = Vec::new();
        for device in self.device.contact_devices(&hex::encode(account))? {
            if let Some(key) = self.device.peer_identity(account, device)? {
                out.push(SafetyNumber {
                    device,
                    digits: haven_sdk::safety_number(&self.own(), &own_key, account, &key),
                });
            }
        }
        if out.is_empty() {
            return Err(invalid("no device of this contact is known yet"));
        }
        Ok(out)
    }

    /// Accepts a contact device's new identity key after the user compared the new safety
    /// number; the old session is dropped and the next message starts a new one.
    ///
    /// # Errors
    /// Store errors.
    pub fn accept_identity(
        &self,
        account: &[u8; 16],
        device: u32,
        key: &haven_sdk::IdentityKey,
    ) -> Result<(), MessengerError> {
        Ok(self
            .device
            .accept_identity(&DeviceAddress::new(*account, device), key)?)
    }

    // ---------------------------------------------------------------- sending

    /// Sends `content` to every device of `account` (sealed when its access key is known)
    /// and, unless `account` is this one, a copy to this account's other devices.
    async fn send_direct_raw(
        &self,
        account: &[u8; 16],
        content: &Content,
        ephemeral: bool,
    ) -> Result<(), MessengerError> {
        let bytes = Zeroizing::new(content.to_bytes()?);
        let relay_id = hex::encode(random16());
        let target = hex::encode(account);
        match self
            .device
            .send_with_id(&target, &bytes, &relay_id, ephemeral)
            .await
        {
            Ok(_) => {}
            Err(DeviceError::IdentityChanged { account: a, device }) => {
                if let Ok(acc) = parse_hex16(&a) {
                    self.emit([Event::IdentityChanged {
                        account: acc,
                        device,
                    }]);
                }
                return Err(DeviceError::IdentityChanged { account: a, device }.into());
            }
            Err(e) => return Err(e.into()),
        }
        if *account != self.own() {
            self.device
                .send_with_id(&hex::encode(self.own()), &bytes, &relay_id, ephemeral)
                .await?;
        }
        Ok(())
    }

    fn expiry_for(&self, conversation: &Conversation) -> Result<u32, MessengerError> {
        Ok(self
            .device
            .lock()
            .get(CONV_SETTINGS, &conversation.key())?
            .and_then(|v| <[u8; 4]>::try_from(v.as_slice()).ok())
            .map_or(0, u32::from_be_bytes))
    }

    /// Sends a text message; returns its id.
    ///
    /// # Errors
    /// [`MessengerError::Invalid`] (empty or too long text, unknown group), relay and device
    /// errors ([`DeviceError::IdentityChanged`] also surfaces as an event).
    pub async fn send_text(
        &self,
        conversation: Conversation,
        text: &str,
    ) -> Result<[u8; 16], MessengerError> {
        self.send_message(conversation, text, Vec::new()).await
    }

    /// Sends a message with an encoded attachment pointer (see `haven_client::attachments`)
    /// and an optional caption.
    ///
    /// # Errors
    /// As [`Messenger::send_text`].
    pub async fn send_message(
        &self,
        conversation: Conversation,
        text: &str,
        attachment: Vec<u8>,
    ) -> Result<[u8; 16], MessengerError> {
        if text.is_empty() && attachment.is_empty() {
            return Err(invalid("empty message"));
        }
        let message_id = random16();
        let expire_secs = self.expiry_for(&conversation)?;
        let content = Content {
            sent_at: now_ms(),
            conversation,
            body: Body::Text {
                message_id,
                expire_secs,
                text: text.to_owned(),
                attachment,
            },
        };
        // Validate before anything is stored or sent.
        content.to_bytes()?;
        let own = self.own();
        let record = MessageRecord {
            conversation_kind: conversation.tag(),
            conversation_id: *conversation.id(),
            message_id,
            sender: own,
            sender_device: self.device.device_number(),
            outgoing: true,
            sent_at: content.sent_at,
            text: text.to_owned(),
            attachment: match &content.body {
                Body::Text { attachment, .. } => attachment.clone(),
                _ => Vec::new(),
            },
            edited: false,
            deleted: false,
            reactions: Vec::new(),
            delivered_to: Vec::new(),
            read_by: Vec::new(),
            expires_at: (expire_secs > 0).then(|| now_secs() + u64::from(expire_secs)),
        };
        // Stored before it is sent: a receipt can come back before the send call returns (the
        // recipient may answer while the copies to this account's other devices go out), and
        // must find the message. A send that fails takes the record back out.
        let key = message_key(&conversation, &message_id);
        put_json(&self.device.lock(), MESSAGES, &key, &record)?;
        if let Err(e) = self.send_content(&content).await {
            self.device.lock().delete(MESSAGES, &key)?;
            return Err(e);
        }
        Ok(message_id)
    }

    /// Encrypts and uploads the file at `path` as an attachment (streaming, padded to a size
    /// bucket, `progress` called as blob bytes go out) and sends a message carrying its pointer
    /// (blob id, key, digest, size, type and file name: all only inside the encrypted message).
    ///
    /// For image types ([`thumbnail::supports`]) the sender makes a JPEG preview
    /// ([`thumbnail::thumbnail_from_file`]) and puts it in the pointer; an image that cannot be
    /// previewed (undecodable, over the decoding limits) is sent without one.
    ///
    /// # Errors
    /// [`MessengerError::Attachment`] (quota, size, transfer), then as
    /// [`Messenger::send_text`].
    pub async fn send_file<F: FnMut(Progress) + Send>(
        &self,
        conversation: Conversation,
        path: &std::path::Path,
        content_type: &str,
        caption: &str,
        progress: F,
    ) -> Result<[u8; 16], MessengerError> {
        let thumbnail = if thumbnail::supports(content_type) {
            let (path, content_type) = (path.to_owned(), content_type.to_owned());
            match tokio::task::spawn_blocking(move || {
                thumbnail::thumbnail_from_file(&path, &content_type)
            })
            .await
            {
                Ok(Ok(t)) => Some(t.jpeg),
                // Not previewable (or the blocking task failed): the file itself still goes.
                Ok(Err(_)) | Err(_) => None,
            }
        } else {
            None
        };
        self.send_file_with_thumbnail(
            conversation,
            path,
            content_type,
            caption,
            thumbnail,
            progress,
        )
        .await
    }

    /// [`send_file`](Self::send_file) with a preview the app made itself (at most
    /// [`MAX_THUMBNAIL_LEN`](crate::attachments::MAX_THUMBNAIL_LEN) bytes, any image format the
    /// receiving apps display), or none.
    ///
    /// # Errors
    /// As [`send_file`](Self::send_file); [`MessengerError::Attachment`] for an oversized
    /// thumbnail (checked before anything is uploaded).
    pub async fn send_file_with_thumbnail<F: FnMut(Progress) + Send>(
        &self,
        conversation: Conversation,
        path: &std::path::Path,
        content_type: &str,
        caption: &str,
        thumbnail: Option<Vec<u8>>,
        progress: F,
    ) -> Result<[u8; 16], MessengerError> {
        if thumbnail
            .as_ref()
            .is_some_and(|t| t.len() > crate::attachments::MAX_THUMBNAIL_LEN)
        {
            return Err(crate::attachments::AttachmentsError::Malformed.into());
        }
        let name = path.file_name().and_then(|n| n.to_str()).map(str::to_owned);
        let pointer = Attachments::new(self.device.relay())?
            .upload_file(path, content_type, name.as_deref(), thumbnail, progress)
            .await?;
        let bytes = pointer.to_bytes()?;
        self.send_message(conversation, caption, bytes.to_vec())
            .await
    }

    /// The attachment pointer of a stored message, if it has one.
    ///
    /// # Errors
    /// [`MessengerError::Attachment`] when the stored pointer does not decode.
    pub fn attachment(
        &self,
        record: &MessageRecord,
    ) -> Result<Option<AttachmentPointer>, MessengerError> {
        if record.attachment.is_empty() {
            return Ok(None);
        }
        Ok(Some(AttachmentPointer::from_bytes(&record.attachment)?))
    }

    /// Downloads, verifies and decrypts a message's attachment into `dest` (resumable; `dest`
    /// only ever holds verified plaintext).
    ///
    /// # Errors
    /// [`MessengerError::Invalid`] when the message has no attachment, otherwise
    /// [`MessengerError::Attachment`].
    pub async fn save_attachment<F: FnMut(Progress) + Send>(
        &self,
        record: &MessageRecord,
        dest: &std::path::Path,
        progress: F,
    ) -> Result<(), MessengerError> {
        let pointer = self
            .attachment(record)?
            .ok_or_else(|| invalid("this message has no attachment"))?;
        Attachments::new(self.device.relay())?
            .download_to_file(&pointer, dest, progress)
            .await?;
        Ok(())
    }

    async fn send_content(&self, content: &Content) -> Result<(), MessengerError> {
        match content.conversation {
            Conversation::Direct(account) => {
                if account != self.own() {
                    self.ensure_card_sent(&account).await?;
                }
                self.send_direct_raw(&account, content, false).await
            }
            Conversation::Group(group) => self.send_group(&group, content).await,
        }
    }

    /// Marks messages as read and tells their senders.
    ///
    /// # Errors
    /// As [`Messenger::send_text`].
    pub async fn mark_read(
        &self,
        conversation: Conversation,
        message_ids: &[[u8; 16]],
    ) -> Result<(), MessengerError> {
        if message_ids.is_empty() {
            return Ok(());
        }
        let content = Content {
            sent_at: now_ms(),
            conversation,
            body: Body::Receipt {
                kind: ReceiptKind::Read,
                message_ids: message_ids.to_vec(),
            },
        };
        self.send_content(&content).await
    }

    /// Tells a contact that this user started or stopped typing (ephemeral: never stored by
    /// the relay, dropped when the contact is offline).
    ///
    /// # Errors
    /// As [`Messenger::send_text`]; groups are refused (their channel stores entries).
    pub async fn send_typing(
        &self,
        conversation: Conversation,
        started: bool,
    ) -> Result<(), MessengerError> {
        let Conversation::Direct(account) = conversation else {
            return Err(invalid("typing indicators are for 1:1 conversations"));
        };
        let content = Content {
            sent_at: now_ms(),
            conversation,
            body: Body::Typing(started),
        };
        self.send_direct_raw(&account, &content, true).await
    }

    /// Reacts to a message (or removes this account's reaction).
    ///
    /// # Errors
    /// As [`Messenger::send_text`].
    pub async fn react(
        &self,
        conversation: Conversation,
        target: [u8; 16],
        emoji: &str,
        remove: bool,
    ) -> Result<(), MessengerError> {
        let content = Content {
            sent_at: now_ms(),
            conversation,
            body: Body::Reaction {
                target,
                emoji: emoji.to_owned(),
                remove,
            },
        };
        content.to_bytes()?;
        self.send_content(&content).await?;
        let own = self.own();
        self.with_message(&conversation, &target, |m| {
            apply_reaction(m, own, emoji, remove);
        })?;
        Ok(())
    }

    /// Edits one of this account's messages.
    ///
    /// # Errors
    /// [`MessengerError::Invalid`] when the message is unknown or not this account's.
    pub async fn edit(
        &self,
        conversation: Conversation,
        target: [u8; 16],
        text: &str,
    ) -> Result<(), MessengerError> {
        self.check_own_message(&conversation, &target)?;
        let content = Content {
            sent_at: now_ms(),
            conversation,
            body: Body::Edit {
                target,
                text: text.to_owned(),
            },
        };
        content.to_bytes()?;
        self.send_content(&content).await?;
        self.with_message(&conversation, &target, |m| {
            m.text = text.to_owned();
            m.edited = true;
        })?;
        Ok(())
    }

    /// Deletes one of this account's messages for everyone.
    ///
    /// # Errors
    /// As [`Messenger::edit`].
    pub async fn delete(
        &self,
        conversation: Conversation,
        target: [u8; 16],
    ) -> Result<(), MessengerError> {
        self.check_own_message(&conversation, &target)?;
        let content = Content {
            sent_at: now_ms(),
            conversation,
            body: Body::Delete { target },
        };
        self.send_content(&content).await?;
        self.with_message(&conversation, &target, |m| {
            m.text.clear();
            m.attachment.clear();
            m.deleted = true;
        })?;
        Ok(())
    }

    /// Sets the conversation's disappearing-message timer (0 = off) for both sides.
    ///
    /// # Errors
    /// As [`Messenger::send_text`].
    pub async fn set_timer(
        &self,
        conversation: Conversation,
        expire_secs: u32,
    ) -> Result<(), MessengerError> {
        let content = Content {
            sent_at: now_ms(),
            conversation,
            body: Body::Timer(expire_secs),
        };
        self.send_content(&content).await?;
        self.device.lock().put(
            CONV_SETTINGS,
            &conversation.key(),
            &expire_secs.to_be_bytes(),
        )?;
        Ok(())
    }

    fn check_own_message(
        &self,
        conversation: &Conversation,
        target: &[u8; 16],
    ) -> Result<(), MessengerError> {
        let record: Option<MessageRecord> = get_json(
            &self.device.lock(),
            MESSAGES,
            &message_key(conversation, target),
            "message",
        )?;
        match record {
            Some(m) if m.outgoing && !m.deleted => Ok(()),
            Some(_) => Err(invalid("only one's own, undeleted messages can be changed")),
            None => Err(invalid("unknown message")),
        }
    }

    fn with_message(
        &self,
        conversation: &Conversation,
        target: &[u8; 16],
        f: impl FnOnce(&mut MessageRecord),
    ) -> Result<bool, MessengerError> {
        let store = self.device.lock();
        Ok(update_message(&store, conversation, target, f)?)
    }

    /// The messages of a conversation, oldest first (disappeared ones are deleted first).
    ///
    /// # Errors
    /// Store errors.
    pub fn history(
        &self,
        conversation: Conversation,
    ) -> Result<Vec<MessageRecord>, MessengerError> {
        let store = self.device.lock();
        let now = now_secs();
        let mut out = Vec::new();
        for (key, value) in store.entries(MESSAGES)? {
            let m: MessageRecord =
                serde_json::from_slice(&value).map_err(|_| corrupt("message"))?;
            if m.expires_at.is_some_and(|t| t <= now) {
                store.delete(MESSAGES, &key)?;
                continue;
            }
            if m.conversation() == conversation {
                out.push(m);
            }
        }
        out.sort_by_key(|m| (m.sent_at, m.message_id));
        Ok(out)
    }

    /// The conversations with stored messages.
    ///
    /// # Errors
    /// Store errors.
    pub fn conversations(&self) -> Result<Vec<Conversation>, MessengerError> {
        let store = self.device.lock();
        let mut out = Vec::new();
        for (_, value) in store.entries(MESSAGES)? {
            let m: MessageRecord =
                serde_json::from_slice(&value).map_err(|_| corrupt("message"))?;
            let c = m.conversation();
            if !out.contains(&c) {
                out.push(c);
            }
        }
        out.sort();
        Ok(out)
    }

    // ---------------------------------------------------------------- groups

    fn group(&self, id: &[u8; 16]) -> Result<Option<GroupState>, DeviceError> {
        get_json(&self.device.lock(), GROUPS, id, "group")
    }

    fn groups_state(&self) -> Result<Vec<GroupState>, DeviceError> {
        let entries = self.device.lock().entries(GROUPS)?;
        entries
            .iter()
            .map(|(_, v)| serde_json::from_slice(v).map_err(|_| corrupt("group")))
            .collect()
    }

    /// Every group this device knows.
    ///
    /// # Errors
    /// Store errors.
    pub fn groups(&self) -> Result<Vec<GroupInfo>, MessengerError> {
        Ok(self
            .groups_state()?
            .into_iter()
            .map(|g| GroupInfo {
                id: g.id,
                name: g.name.clone(),
                members: g.members.clone(),
                epoch: g.current.epoch,
                active: g.active,
            })
            .collect())
    }

    async fn create_channel(&self) -> Result<([u8; 16], [u8; 32], [u8; 32]), MessengerError> {
        let relay = self.device.relay();
        let wanted = CreateChannelRequest {
            ttl_secs: Some(CHANNEL_TTL_SECS),
        };
        let reply = relay
            .request_as::<CreateChannelResponse, _>(Method::POST, "/v1/channels", Some(&wanted))
            .await;
        // A relay with a lower maximum TTL refuses ours: fall back to its default.
        let reply = match reply {
            Ok(reply) => reply,
            Err(e) if e.code() == Some("invalid_ttl") => {
                relay
                    .request_as(
                        Method::POST,
                        "/v1/channels",
                        Some(&CreateChannelRequest::default()),
                    )
                    .await?
            }
            Err(e) => return Err(e.into()),
        };
        let token = |text: &str| -> Result<[u8; 32], MessengerError> {
            URL_SAFE_NO_PAD
                .decode(text)
                .ok()
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
                .ok_or_else(|| invalid("relay answered with a malformed channel token"))
        };
        Ok((
            *reply.channel_id.as_bytes(),
            token(&reply.read_token)?,
            token(&reply.write_token)?,
        ))
    }

    /// Creates a group with `members` (account ids; this account is added), invites them and
    /// distributes this device's sender key.
    ///
    /// # Errors
    /// [`MessengerError::Invalid`] for a too long name or too many members; relay errors.
    pub async fn create_group(
        &self,
        name: &str,
        members: &[[u8; 16]],
    ) -> Result<[u8; 16], MessengerError> {
        let own = self.own();
        let mut all = vec![own];
        for m in members {
            if !all.contains(m) {
                all.push(*m);
            }
        }
        let group_id = random16();
        let (channel_id, read_token, write_token) = self.create_channel().await?;
        let state = GroupState {
            id: group_id,
            name: name.to_owned(),
            members: all.clone(),
            current: Epoch {
                epoch: 1,
                channel_id,
                read_token,
                write_token,
                group_key: random32(),
                cursor: 0,
            },
            old: Vec::new(),
            active: true,
        };
        let invite = invite_of(&state, 0);
        // Validates the name and member count.
        Content {
            sent_at: 0,
            conversation: Conversation::Group(group_id),
            body: Body::GroupInvite(invite),
        }
        .to_bytes()?;
        put_json(&self.device.lock(), GROUPS, &group_id, &state)?;
        self.send_invites(&state, &all, 0).await?;
        self.distribute_sender_key(&group_id, 1, &all).await?;
        self.subscribe_group(&state);
        self.emit([Event::GroupUpdated {
            group_id,
            name: state.name.clone(),
            members: all,
        }]);
        Ok(group_id)
    }

    async fn send_invites(
        &self,
        state: &GroupState,
        to: &[[u8; 16]],
        after: u64,
    ) -> Result<(), MessengerError> {
        let own = self.own();
        let content = Content {
            sent_at: now_ms(),
            conversation: Conversation::Group(state.id),
            body: Body::GroupInvite(invite_of(state, after)),
        };
        let bytes = Zeroizing::new(content.to_bytes()?);
        for account in to {
            if *account != own {
                self.ensure_card_sent(account).await?;
            }
            self.device
                .send_with_id(
                    &hex::encode(account),
                    &bytes,
                    &hex::encode(random16()),
                    false,
                )
                .await?;
        }
        Ok(())
    }

    /// Creates (if needed) this device's sending session for the epoch and sends its
    /// distribution message to every device of `to`.
    async fn distribute_sender_key(
        &self,
        group: &[u8; 16],
        epoch: u32,
        to: &[[u8; 16]],
    ) -> Result<(), MessengerError> {
        let skdm = self.own_distribution(group, epoch)?;
        let content = Content {
            sent_at: now_ms(),
            conversation: Conversation::Group(*group),
            body: Body::SenderKey {
                epoch,
                distribution: skdm.to_vec(),
            },
        };
        let bytes = Zeroizing::new(content.to_bytes()?);
        for account in to {
            self.device
                .send_with_id(
                    &hex::encode(account),
                    &bytes,
                    &hex::encode(random16()),
                    false,
                )
                .await?;
        }
        Ok(())
    }

    fn own_distribution(
        &self,
        group: &[u8; 16],
        epoch: u32,
    ) -> Result<Zeroizing<Vec<u8>>, MessengerError> {
        let dist = distribution_id(group, epoch);
        let mut store = self.device.lock();
        let session = match store.load_own_sender_session(&dist) {
            Ok(Some(s)) => s,
            Ok(None) => {
                let s = GroupSenderSession::new(dist, &mut rand::rng());
                store
                    .store_own_sender_session(&s)
                    .map_err(|e| DeviceError::Protocol(e.to_string()))?;
                s
            }
            Err(e) => return Err(DeviceError::Protocol(e.to_string()).into()),
        };
        Ok(session.distribution_message().to_bytes())
    }

    async fn post_entry(&self, epoch: &Epoch, entry: &[u8]) -> Result<u64, MessengerError> {
        let token = URL_SAFE_NO_PAD.encode(epoch.write_token);
        let body = AppendRequest {
            entry: STANDARD.encode(entry),
        };
        let reply: AppendResponse = self
            .device
            .relay()
            .request_with_bearer_as(
                Method::POST,
                &format!("/v1/channels/{}/entries", hex::encode(epoch.channel_id)),
                &token,
                Some(&body),
            )
            .await?;
        Ok(u64::try_from(reply.seq).unwrap_or(0))
    }

    async fn send_group(&self, group: &[u8; 16], content: &Content) -> Result<(), MessengerError> {
        let state = self.group(group)?.ok_or_else(|| invalid("unknown group"))?;
        if !state.active {
            return Err(invalid("this account is no longer a member of the group"));
        }
        // Make sure the sending session exists (it was distributed when the epoch started).
        let dist = distribution_id(group, state.current.epoch);
        let has_session = {
            let store = self.device.lock();
            matches!(store.load_own_sender_session(&dist), Ok(Some(_)))
        };
        if !has_session {
            self.distribute_sender_key(group, state.current.epoch, &state.members)
                .await?;
        }
        let padded = pad(&content.to_bytes()?).map_err(|e| invalid(e.to_string()))?;
        let message = {
            let mut store = self.device.lock();
            let mut session = store
                .load_own_sender_session(&dist)
                .map_err(|e| DeviceError::Protocol(e.to_string()))?
                .ok_or_else(|| invalid("no sending session"))?;
            let m = session
                .encrypt(&padded)
                .map_err(|e| DeviceError::Protocol(e.to_string()))?;
            store
                .store_own_sender_session(&session)
                .map_err(|e| DeviceError::Protocol(e.to_string()))?;
            m
        };
        let entry = seal_entry(group, &state.current, &self.device.address(), &message)?;
        self.post_entry(&state.current, &entry).await?;
        Ok(())
    }

    /// Adds a member: it gets the group's current secrets and, from every member device, its
    /// sender key; it can read what is sent from now on (not the history).
    ///
    /// # Errors
    /// [`MessengerError::Invalid`] for an unknown group, an existing member or a full group.
    pub async fn add_member(
        &self,
        group: &[u8; 16],
        account: &[u8; 16],
    ) -> Result<(), MessengerError> {
        let mut state = self.group(group)?.ok_or_else(|| invalid("unknown group"))?;
        if !state.active {
            return Err(invalid("this account is no longer a member of the group"));
        }
        if state.members.contains(account) {
            return Err(invalid("already a member"));
        }
        state.members.push(*account);
        let update = Content {
            sent_at: now_ms(),
            conversation: Conversation::Group(*group),
            body: Body::GroupUpdate {
                epoch: state.current.epoch,
                name: state.name.clone(),
                members: state.members.clone(),
            },
        };
        update.to_bytes()?;
        // Everyone (own other devices included) learns the new list from the channel.
        self.send_group(group, &update).await?;
        let after = self.channel_last_seq(&state.current).await?;
        put_json(&self.device.lock(), GROUPS, group, &state)?;
        self.send_invites(&state, &[*account], after).await?;
        self.distribute_sender_key(group, state.current.epoch, &[*account])
            .await?;
        self.emit([Event::GroupUpdated {
            group_id: *group,
            name: state.name.clone(),
            members: state.members.clone(),
        }]);
        Ok(())
    }

    async fn channel_last_seq(&self, epoch: &Epoch) -> Result<u64, MessengerError> {
        // The highest seq: read pages until the end (cheap for the common small gap).
        let mut after = epoch.cursor;
        loop {
            let (entries, more) = self.fetch_entries(epoch, after).await?;
            if let Some((seq, _)) = entries.last() {
                after = *seq;
            }
            if !more || entries.is_empty() {
                return Ok(after);
            }
        }
    }

    /// Removes a member: a new epoch starts (new channel, group key and sender keys) that only
    /// the remaining members learn, so the removed member cannot read anything sent after.
    ///
    /// # Errors
    /// [`MessengerError::Invalid`] for an unknown group or a non-member.
    pub async fn remove_member(
        &self,
        group: &[u8; 16],
        account: &[u8; 16],
    ) -> Result<(), MessengerError> {
        let mut state = self.group(group)?.ok_or_else(|| invalid("unknown group"))?;
        if !state.active {
            return Err(invalid("this account is no longer a member of the group"));
        }
        if !state.members.contains(account) || *account == self.own() {
            return Err(invalid("not a member (or this account)"));
        }
        state.members.retain(|m| m != account);
        // Tell everyone, the removed member included, on the old channel.
        let update = Content {
            sent_at: now_ms(),
            conversation: Conversation::Group(*group),
            body: Body::GroupUpdate {
                epoch: state.current.epoch,
                name: state.name.clone(),
                members: state.members.clone(),
            },
        };
        self.send_group(group, &update).await?;
        let (channel_id, read_token, write_token) = self.create_channel().await?;
        let next = Epoch {
            epoch: state.current.epoch.saturating_add(1),
            channel_id,
            read_token,
            write_token,
            group_key: random32(),
            cursor: 0,
        };
        let previous = std::mem::replace(&mut state.current, next);
        state.old.insert(0, previous);
        state.old.truncate(2);
        put_json(&self.device.lock(), GROUPS, group, &state)?;
        let members = state.members.clone();
        self.send_invites(&state, &members, 0).await?;
        self.distribute_sender_key(group, state.current.epoch, &members)
            .await?;
        self.subscribe_group(&state);
        self.emit([Event::GroupUpdated {
            group_id: *group,
            name: state.name.clone(),
            members,
        }]);
        Ok(())
    }

    // ---------------------------------------------------------------- receiving

    /// Processes one 1:1 envelope (from the socket or a REST fetch). Returns the events; the
    /// caller acks the envelope afterwards (duplicates and rejects are acked too).
    fn handle_envelope(
        &self,
        message_id: &str,
        content: &[u8],
        ephemeral: bool,
    ) -> Result<Applied, MessengerError> {
        let own = self.own();
        let own_device = self.device.device_number();
        let opened =
            self.device
                .open_envelope(message_id, content, !ephemeral, |s, sender, plain| {
                    apply_direct(s, own, own_device, sender, plain, ephemeral)
                })?;
        Ok(match opened {
            Opened::Duplicate => Applied::default(),
            Opened::Rejected(reason) => {
                let mut applied = Applied::default();
                if let RejectReason::IdentityChanged { account, device } = &reason
                    && let Ok(acc) = parse_hex16(account)
                {
                    applied.events.push(Event::IdentityChanged {
                        account: acc,
                        device: *device,
                    });
                }
                applied.events.push(Event::Rejected { reason });
                applied
            }
            Opened::Accepted { value, .. } => value,
        })
    }

    /// Processes one sealed envelope the application obtained itself (e.g. from a push
    /// notification payload or its own transport), exactly as if it had arrived over the
    /// socket; returns (and emits) the events. The caller acks it with the relay afterwards.
    ///
    /// # Errors
    /// Store errors (a bad envelope is an [`Event::Rejected`], not an error).
    pub fn process_envelope(
        &self,
        message_id: &str,
        content: &[u8],
    ) -> Result<Vec<Event>, MessengerError> {
        let applied = self.handle_envelope(message_id, content, false)?;
        let events = applied.events.clone();
        self.finish(applied)?;
        Ok(events)
    }

    /// Processes channel entries of a group epoch in order.
    fn handle_entries(
        &self,
        group: &[u8; 16],
        epoch_no: u32,
        entries: &[(u64, Vec<u8>)],
    ) -> Result<Applied, MessengerError> {
        let mut applied = Applied::default();
        let own = self.own();
        let me = self.device.address();
        let mut store = self.device.lock();
        for (seq, entry) in entries {
            let result = store.atomically_mut(|s| -> Result<Applied, DeviceError> {
                let Some(mut state) = get_json::<GroupState>(s, GROUPS, group, "group")? else {
                    return Ok(Applied::default());
                };
                let Some(epoch) = epoch_mut(&mut state, epoch_no) else {
                    return Ok(Applied::default());
                };
                if *seq <= epoch.cursor {
                    return Ok(Applied::default());
                }
                epoch.cursor = *seq;
                let epoch = epoch.clone();
                let out = apply_entry(s, &mut state, &epoch, *seq, entry, own, &me)?;
                put_json(s, GROUPS, group, &state)?;
                Ok(out)
            })?;
            applied.events.extend(result.events);
            applied.retry_groups.extend(result.retry_groups);
            applied.tasks_added |= result.tasks_added;
        }
        Ok(applied)
    }

    /// Retries the entries of `group` kept while their sender's key was missing.
    fn retry_pending(&self, group: &[u8; 16]) -> Result<Vec<Event>, MessengerError> {
        let own = self.own();
        let me = self.device.address();
        let mut store = self.device.lock();
        let mut events = Vec::new();
        let pending: Vec<(Vec<u8>, Zeroizing<Vec<u8>>)> = store
            .entries(GROUP_PENDING)?
            .into_iter()
            .filter(|(k, _)| k.len() == 28 && k[..16] == group[..])
            .collect();
        type Pending = (u32, u64, Vec<u8>, Zeroizing<Vec<u8>>);
        let mut pending: Vec<Pending> = pending
            .into_iter()
            .filter_map(|(k, v)| {
                let epoch = u32::from_be_bytes(k[16..20].try_into().ok()?);
                let seq = u64::from_be_bytes(k[20..28].try_into().ok()?);
                Some((epoch, seq, k, v))
            })
            .collect();
        pending.sort_by_key(|(e, s, _, _)| (*e, *s));
        for (epoch_no, seq, key, entry) in pending {
            let out = store.atomically_mut(|s| -> Result<Option<Applied>, DeviceError> {
                let Some(mut state) = get_json::<GroupState>(s, GROUPS, group, "group")? else {
                    s.delete(GROUP_PENDING, &key)?;
                    return Ok(None);
                };
                let Some(epoch) = epoch_mut(&mut state, epoch_no).map(|e| e.clone()) else {
                    s.delete(GROUP_PENDING, &key)?;
                    return Ok(None);
                };
                let Some((sender, message)) = open_entry(group, &epoch, &entry) else {
                    s.delete(GROUP_PENDING, &key)?;
                    return Ok(None);
                };
                let name = SenderKeyName {
                    distribution_id: distribution_id(group, epoch_no),
                    sender_account: sender.account_id.to_vec(),
                    device_id: sender.device_id,
                };
                if s.load_sender_key(&name).ok().flatten().is_none() {
                    // Still waiting for this sender's key.
                    return Ok(None);
                }
                s.delete(GROUP_PENDING, &key)?;
                let _ = message;
                let out = apply_entry(s, &mut state, &epoch, seq, &entry, own, &me)?;
                put_json(s, GROUPS, group, &state)?;
                Ok(Some(out))
            })?;
            if let Some(out) = out {
                events.extend(out.events);
            }
        }
        Ok(events)
    }

    async fn fetch_entries(
        &self,
        epoch: &Epoch,
        after: u64,
    ) -> Result<(Vec<(u64, Vec<u8>)>, bool), MessengerError> {
        let token = URL_SAFE_NO_PAD.encode(epoch.read_token);
        let page: EntriesPage = self
            .device
            .relay()
            .request_with_bearer_as::<_, ()>(
                Method::GET,
                &format!(
                    "/v1/channels/{}/entries?after={after}&limit={CHANNEL_PAGE}",
                    hex::encode(epoch.channel_id)
                ),
                &token,
                None,
            )
            .await?;
        let mut out = Vec::with_capacity(page.entries.len());
        for item in page.entries {
            let seq = u64::try_from(item.seq).map_err(|_| invalid("malformed channel page"))?;
            let bytes = STANDARD
                .decode(item.entry)
                .map_err(|_| invalid("malformed channel entry"))?;
            out.push((seq, bytes));
        }
        Ok((out, page.more))
    }

    /// Reads every group channel after its cursor over REST.
    async fn poll_groups(&self) -> Result<(), MessengerError> {
        for state in self.groups_state()? {
            if !state.active && state.old.is_empty() {
                continue;
            }
            let mut epochs: Vec<Epoch> = state.old.clone();
            if state.active {
                epochs.push(state.current.clone());
            }
            for epoch in epochs {
                let mut after = epoch.cursor;
                loop {
                    let (entries, more) = match self.fetch_entries(&epoch, after).await {
                        Ok(page) => page,
                        // An expired old channel has nothing more to give.
                        Err(MessengerError::Device(DeviceError::Relay(e)))
                            if e.code() == Some("channel_not_found") =>
                        {
                            break;
                        }
                        Err(e) => return Err(e),
                    };
                    if let Some((seq, _)) = entries.last() {
                        after = *seq;
                    }
                    let applied = self.handle_entries(&state.id, epoch.epoch, &entries)?;
                    self.finish(applied)?;
                    if !more || entries.is_empty() {
                        break;
                    }
                }
            }
        }
        Ok(())
    }

    /// Emits events and runs the follow-ups of an applied batch.
    fn finish(&self, applied: Applied) -> Result<(), MessengerError> {
        self.emit(applied.events);
        for g in applied.retry_groups {
            let events = self.retry_pending(&g)?;
            self.emit(events);
        }
        for g in applied.subscribe {
            if let Some(state) = self.group(&g)? {
                self.subscribe_group(&state);
            }
        }
        Ok(())
    }

    /// Runs the durable follow-up tasks (sender-key distribution, delivery receipts). A task
    /// that fails stays queued for the next run.
    ///
    /// # Errors
    /// Store errors (network failures leave the task queued and are not errors).
    pub async fn run_tasks(&self) -> Result<usize, MessengerError> {
        let tasks = self.device.lock().entries(TASKS)?;

        let mut done = 0;
        for (key, value) in tasks {
            let Ok(task) = serde_json::from_slice::<Task>(&value) else {
                self.device.lock().delete(TASKS, &key)?;
                continue;
            };
            let result = match &task {
                Task::SenderKey {
                    group,
                    epoch,
                    account,
                } => match self.group(group)? {
                    Some(state) if state.active && state.current.epoch == *epoch => {
                        self.distribute_sender_key(group, *epoch, &[*account]).await
                    }
                    _ => Ok(()),
                },
                Task::Delivered {
                    account,
                    message_id,
                } => {
                    let content = Content {
                        sent_at: now_ms(),
                        conversation: Conversation::Direct(*account),
                        body: Body::Receipt {
                            kind: ReceiptKind::Delivered,
                            message_ids: vec![*message_id],
                        },
                    };
                    let bytes = Zeroizing::new(content.to_bytes()?);
                    self.device
                        .send_with_id(
                            &hex::encode(account),
                            &bytes,
                            &hex::encode(random16()),
                            false,
                        )
                        .await
                        .map(|_| ())
                        .map_err(MessengerError::from)
                }
            };
            match result {
                Ok(()) => {
                    self.device.lock().delete(TASKS, &key)?;
                    done += 1;
                }
                // A changed identity needs the user: drop the task and say so (the next
                // message after accepting the key starts a new session).
                Err(MessengerError::Device(DeviceError::IdentityChanged { account, device })) => {
                    self.device.lock().delete(TASKS, &key)?;
                    if let Ok(account) = parse_hex16(&account) {
                        self.emit([Event::IdentityChanged { account, device }]);
                    }
                }
                // An account that no longer exists will never take the task.
                Err(MessengerError::Device(DeviceError::Relay(e)))
                    if e.code() == Some("account_not_found") =>
                {
                    self.device.lock().delete(TASKS, &key)?;
                }
                Err(_) => {}
            }
        }
        Ok(done)
    }

    /// Fetches and processes everything waiting (queued envelopes over REST, group channels,
    /// follow-up tasks) once. Returns the number of envelopes processed.
    ///
    /// # Errors
    /// Relay and store errors.
    pub async fn sync(&self) -> Result<usize, MessengerError> {
        self.run_tasks().await?;
        let mut after = 0i64;
        let mut count = 0;
        loop {
            let page = self.device.fetch_page(after).await?;
            let mut acks = Vec::new();
            for q in &page.envelopes {
                after = after.max(q.seq);
                let applied = match STANDARD.decode(&q.content) {
                    Ok(bytes) => self.handle_envelope(&q.message_id.to_hex(), &bytes, false)?,
                    Err(_) => Applied {
                        events: vec![Event::Rejected {
                            reason: RejectReason::Malformed("envelope is not base64".into()),
                        }],
                        ..Applied::default()
                    },
                };
                self.finish(applied)?;
                acks.push(q.message_id);
                count += 1;
            }
            self.device.ack(&acks).await?;
            if !page.more || page.envelopes.is_empty() {
                break;
            }
        }
        self.poll_groups().await?;
        self.run_tasks().await?;
        self.maintain_keys().await;
        self.device.persist_session().await?;
        Ok(count)
    }

    /// Replenishes one-time prekeys and rotates the signed prekey (weekly, Signal's cadence).
    /// A failure is retried at the next catch-up; messaging goes on with the current keys.
    async fn maintain_keys(&self) {
        let _ = self
            .device
            .maintain_keys(&haven_sdk::prekeys::SignedPreKeyPolicy::default())
            .await;
    }

    fn subscribe_group(&self, state: &GroupState) {
        let guard = self
            .socket
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(tx) = guard.as_ref() else { return };
        let mut epochs: Vec<&Epoch> = state.old.iter().collect();
        if state.active {
            epochs.push(&state.current);
        }
        for e in epochs {
            let id = self.request_ids.fetch_add(1, Ordering::Relaxed);
            let frame = ClientFrame::Subscribe {
                request_id: id,
                channel: e.channel_id,
                token: e.read_token,
                after: e.cursor,
            };
            if let Ok(frame) = frame.encode() {
                let _ = tx.send(WsMessage::Binary(frame.into()));
            }
        }
    }

    /// Keeps the WebSocket open until the session is revoked or a newer socket of this device
    /// replaces it: processes queued and live envelopes (acking each after its effects are
    /// stored) and group channel entries, runs follow-up tasks, and reconnects with jittered
    /// exponential backoff after any failure. Connection changes are [`Event::Connection`]s.
    ///
    /// # Errors
    /// [`MessengerError::SessionRevoked`] when the relay no longer accepts the session.
    pub async fn run(self: Arc<Self>) -> Result<(), MessengerError> {
        let mut backoff = Backoff::default();
        loop {
            self.emit([Event::Connection(ConnectionState::Connecting)]);
            let reason = match ws::connect(self.device.relay()).await {
                Ok(socket) => {
                    self.emit([Event::Connection(ConnectionState::Connected)]);
                    match self.serve(socket, &mut backoff).await {
                        Ok(Some(stop)) => {
                            self.emit([Event::Connection(ConnectionState::Stopped {
                                reason: stop.clone(),
                            })]);
                            return if stop.starts_with("revoked") {
                                Err(MessengerError::SessionRevoked(stop))
                            } else {
                                Ok(())
                            };
                        }
                        Ok(None) => "closed by the relay".to_owned(),
                        Err(e) => e.to_string(),
                    }
                }
                Err(ConnectError::Unauthorized(reason)) => {
                    self.emit([Event::Connection(ConnectionState::Stopped {
                        reason: reason.clone(),
                    })]);
                    return Err(MessengerError::SessionRevoked(reason));
                }
                Err(ConnectError::Transient(reason)) => reason,
            };
            *self
                .socket
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
            let retry_in = backoff.next_delay();
            self.emit([Event::Connection(ConnectionState::Disconnected {
                reason,
                retry_in,
            })]);
            tokio::time::sleep(retry_in).await;
        }
    }

    /// Serves one open socket. `Ok(Some(reason))` = stop for good; `Ok(None)` = reconnect.
    async fn serve(
        &self,
        socket: ws::Socket,
        backoff: &mut Backoff,
    ) -> Result<Option<String>, MessengerError> {
        let (mut sink, mut stream) = socket.split();
        let (tx, mut rx) = mpsc::unbounded_channel::<WsMessage>();
        *self
            .socket
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(tx.clone());
        let writer = tokio::spawn(async move {
            while let Some(m) = rx.recv().await {
                if sink.send(m).await.is_err() {
                    break;
                }
            }
            let _ = sink.close().await;
        });
        // If this future is dropped (the app aborts `run`), the socket must close with it: the
        // writer holds its sending half, and the stored sender would keep the writer alive.
        let _close_on_drop = SocketGuard {
            slot: &self.socket,
            writer: writer.abort_handle(),
        };
        for state in self.groups_state()? {
            self.subscribe_group(&state);
        }
        let channels: HashMap<[u8; 16], ([u8; 16], u32)> = HashMap::new();
        let mut channels = channels;
        let outcome = loop {
            let Some(frame) = stream.next().await else {
                break Ok(None);
            };
            let bytes = match frame {
                Ok(WsMessage::Binary(b)) => b,
                Ok(WsMessage::Close(close)) => {
                    let code = close.as_ref().map(|c| c.code);
                    break Ok(match code {
                        Some(CloseCode::Library(4000)) => {
                            Some("replaced by a newer connection of this device".to_owned())
                        }
                        Some(CloseCode::Library(4001)) => Some("revoked by the relay".to_owned()),
                        _ => None,
                    });
                }
                Ok(_) => continue,
                Err(e) => break Err(invalid(e.to_string())),
            };
            let frame = match ServerFrame::decode(&bytes) {
                Ok(f) => f,
                Err(e) => {
                    self.emit([Event::Rejected {
                        reason: RejectReason::Malformed(e.to_string()),
                    }]);
                    continue;
                }
            };
            match frame {
                ServerFrame::Envelope(EnvelopeFrame {
                    message_id,
                    content,
                    ..
                }) => {
                    let applied = self.handle_envelope(&hex::encode(message_id), content, false)?;
                    let queued = applied.tasks_added;
                    self.finish(applied)?;
                    if let Ok(ack) = ClientFrame::Ack(vec![message_id]).encode() {
                        let _ = tx.send(WsMessage::Binary(ack.into()));
                    }
                    // A task that keeps failing is retried at the next catch-up, not on every
                    // frame (each retry may cost the contact a one-time prekey).
                    if queued {
                        self.run_tasks().await?;
                    }
                }
                ServerFrame::Ephemeral {
                    message_id,
                    content,
                    ..
                } => {
                    let applied = self.handle_envelope(&hex::encode(message_id), content, true)?;
                    self.finish(applied)?;
                }
                ServerFrame::QueueEmpty => {
                    backoff.reset();
                    self.emit([Event::Connection(ConnectionState::CaughtUp)]);
                    self.run_tasks().await?;
                    self.maintain_keys().await;
                    self.device.persist_session().await?;
                }
                ServerFrame::ChannelEntry {
                    channel: channel_id,
                    seq,
                    entry,
                    ..
                } => {
                    if !channels.contains_key(&channel_id) {
                        for g in self.groups_state()? {
                            for e in g.old.iter().chain(std::iter::once(&g.current)) {
                                channels.insert(e.channel_id, (g.id, e.epoch));
                            }
                        }
                    }
                    if let Some((group, epoch)) = channels.get(&channel_id).copied() {
                        let applied =
                            self.handle_entries(&group, epoch, &[(seq, entry.to_vec())])?;
                        let queued = applied.tasks_added;
                        self.finish(applied)?;
                        if queued {
                            self.run_tasks().await?;
                        }
                    }
                }
                ServerFrame::Result { .. } | ServerFrame::Error { .. } => {}
            }
        };
        *self
            .socket
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
        drop(tx);
        let _ = writer.await;
        outcome
    }
}

fn invite_of(state: &GroupState, after: u64) -> GroupInvite {
    GroupInvite {
        epoch: state.current.epoch,
        channel_id: state.current.channel_id,
        read_token: state.current.read_token,
        write_token: state.current.write_token,
        group_key: state.current.group_key,
        after,
        name: state.name.clone(),
        members: state.members.clone(),
    }
}

fn epoch_mut(state: &mut GroupState, epoch: u32) -> Option<&mut Epoch> {
    if state.current.epoch == epoch {
        return Some(&mut state.current);
    }
    state.old.iter_mut().find(|e| e.epoch == epoch)
}

fn parse_hex16(text: &str) -> Result<[u8; 16], MessengerError> {
    hex::decode(text.trim())
        .ok()
        .and_then(|b| <[u8; 16]>::try_from(b).ok())
        .ok_or_else(|| invalid("an account or group id is 32 hex digits"))
}

fn apply_reaction(m: &mut MessageRecord, from: [u8; 16], emoji: &str, remove: bool) {
    m.reactions.retain(|r| r.from != from);
    if !remove {
        m.reactions.push(ReactionRecord {
            from,
            emoji: emoji.to_owned(),
        });
    }
}

fn update_message(
    s: &ClientStore,
    conversation: &Conversation,
    target: &[u8; 16],
    f: impl FnOnce(&mut MessageRecord),
) -> Result<bool, DeviceError> {
    let key = message_key(conversation, target);
    let Some(mut m) = get_json::<MessageRecord>(s, MESSAGES, &key, "message")? else {
        return Ok(false);
    };
    f(&mut m);
    put_json(s, MESSAGES, &key, &m)?;
    Ok(true)
}

fn content_rejected(e: impl std::fmt::Display) -> Applied {
    Applied {
        events: vec![Event::Rejected {
            reason: RejectReason::Malformed(e.to_string()),
        }],
        ..Applied::default()
    }
}

/// Applies the content kinds 1:1 and group conversations share (texts, receipts, reactions,
/// edits, deletes, timers) to `conversation`; hands any other body back to the caller.
/// `outgoing`: the sender is this account (another own device, or a group post of ours).
fn apply_message_body(
    s: &ClientStore,
    conversation: Conversation,
    sender: &DeviceAddress,
    outgoing: bool,
    sent_at: u64,
    body: Body,
    applied: &mut Applied,
) -> Result<Option<Body>, DeviceError> {
    let from = sender.account_id;
    match body {
        Body::Text {
            message_id,
            expire_secs,
            text,
            attachment,
        } => {
            let key = message_key(&conversation, &message_id);
            if s.get(MESSAGES, &key)?.is_some() {
                return Ok(None);
            }
            let record = MessageRecord {
                conversation_kind: conversation.tag(),
                conversation_id: *conversation.id(),
                message_id,
                sender: from,
                sender_device: sender.device_id,
                outgoing,
                sent_at,
                text,
                attachment,
                edited: false,
                deleted: false,
                reactions: Vec::new(),
                delivered_to: Vec::new(),
                read_by: Vec::new(),
                expires_at: (expire_secs > 0).then(|| now_secs() + u64::from(expire_secs)),
            };
            put_json(s, MESSAGES, &key, &record)?;
            // Delivery receipts are for 1:1 messages from others.
            if !outgoing && matches!(conversation, Conversation::Direct(_)) {
                add_task(
                    s,
                    &Task::Delivered {
                        account: from,
                        message_id,
                    },
                )?;
                applied.tasks_added = true;
            }
            applied.events.push(Event::Message(record));
        }
        Body::Receipt { kind, message_ids } => {
            for id in &message_ids {
                update_message(s, &conversation, id, |m| {
                    // Receipts count for own messages (or are an own device's sync copy).
                    if m.outgoing || outgoing {
                        let list = match kind {
                            ReceiptKind::Delivered => &mut m.delivered_to,
                            ReceiptKind::Read => &mut m.read_by,
                        };
                        if !list.contains(&from) {
                            list.push(from);
                        }
                    }
                })?;
            }
            applied.events.push(Event::Receipt {
                conversation,
                from,
                kind,
                message_ids,
            });
        }
        Body::Reaction {
            target,
            emoji,
            remove,
        } => {
            update_message(s, &conversation, &target, |m| {
                apply_reaction(m, from, &emoji, remove);
            })?;
            applied.events.push(Event::Reaction {
                conversation,
                target,
                from,
                emoji,
                removed: remove,
            });
        }
        Body::Edit { target, text } => {
            let mut allowed = false;
            update_message(s, &conversation, &target, |m| {
                if m.sender == from && !m.deleted {
                    allowed = true;
                    m.text.clone_from(&text);
                    m.edited = true;
                }
            })?;
            if allowed {
                applied.events.push(Event::Edited {
                    conversation,
                    target,
                    text,
                });
            } else {
                applied
                    .events
                    .extend(content_rejected("edit of a message that is not the sender's").events);
            }
        }
        Body::Delete { target } => {
            let mut allowed = false;
            update_message(s, &conversation, &target, |m| {
                if m.sender == from {
                    allowed = true;
                    m.text.clear();
                    m.attachment.clear();
                    m.deleted = true;
                }
            })?;
            if allowed {
                applied.events.push(Event::Deleted {
                    conversation,
                    target,
                });
            } else {
                applied.events.extend(
                    content_rejected("delete of a message that is not the sender's").events,
                );
            }
        }
        Body::Timer(secs) => {
            s.put(CONV_SETTINGS, &conversation.key(), &secs.to_be_bytes())?;
            applied.events.push(Event::TimerChanged {
                conversation,
                expire_secs: secs,
            });
        }
        other => return Ok(Some(other)),
    }
    Ok(None)
}

/// Applies a decrypted 1:1 content inside the envelope's transaction.
fn apply_direct(
    s: &mut ClientStore,
    own: [u8; 16],
    own_device: u32,
    sender: &DeviceAddress,
    plain: &[u8],
    ephemeral: bool,
) -> Result<Applied, DeviceError> {
    let content = match Content::from_bytes(plain) {
        Ok(c) => c,
        Err(e) => return Ok(content_rejected(e)),
    };
    let from_self = sender.account_id == own;
    if from_self && sender.device_id == own_device {
        return Ok(content_rejected("envelope claims to come from this device"));
    }
    // Ephemeral delivery is only for typing indicators.
    if ephemeral != matches!(content.body, Body::Typing(_)) {
        return Ok(content_rejected("ephemeral class mismatch"));
    }
    let conversation = match content.conversation {
        Conversation::Direct(id) if from_self => Conversation::Direct(id),
        Conversation::Direct(id) if id == own => Conversation::Direct(sender.account_id),
        Conversation::Direct(_) => {
            return Ok(content_rejected("message addressed to another account"));
        }
        Conversation::Group(g) => {
            return apply_group_direct(s, own, sender, g, content.body);
        }
    };
    let mut applied = Applied::default();
    let Some(body) = apply_message_body(
        s,
        conversation,
        sender,
        from_self,
        content.sent_at,
        content.body,
        &mut applied,
    )?
    else {
        return Ok(applied);
    };
    let from = sender.account_id;
    match body {
        Body::Typing(started) => applied.events.push(Event::Typing {
            conversation,
            from,
            started,
        }),
        Body::ContactCard { access_key } => {
            if from_self {
                // Another own device's copy of a card sent to `conversation`: nothing to learn
                // except the account's own key (a linked device may not have it yet).
                Device::put_own_access_key(s, &access_key)?;
            } else {
                Device::put_contact_access_key(s, &hex::encode(from), &access_key)?;
                if get_json::<Contact>(s, CONTACTS, &from, "contact")?.is_none() {
                    put_json(
                        s,
                        CONTACTS,
                        &from,
                        &Contact {
                            account: from,
                            username: None,
                            card_sent: false,
                        },
                    )?;
                }
            }
        }
        // Group invites, sender keys (1:1 but `conv_kind` group) are routed before; a group
        // update belongs in a channel.
        _ => return Ok(content_rejected("group content in a 1:1 conversation")),
    }
    Ok(applied)
}

/// Applies a group invite or a sender key received 1:1.
fn apply_group_direct(
    s: &mut ClientStore,
    own: [u8; 16],
    sender: &DeviceAddress,
    group: [u8; 16],
    body: Body,
) -> Result<Applied, DeviceError> {
    let mut applied = Applied::default();
    let existing = get_json::<GroupState>(s, GROUPS, &group, "group")?;
    match body {
        Body::GroupInvite(invite) => {
            if !invite.members.contains(&own) {
                return Ok(content_rejected(
                    "group invite that does not list this account",
                ));
            }
            if !invite.members.contains(&sender.account_id) {
                return Ok(content_rejected("group invite from a non-member"));
            }
            let state = match existing {
                None => GroupState {
                    id: group,
                    name: invite.name.clone(),
                    members: invite.members.clone(),
                    current: Epoch {
                        epoch: invite.epoch,
                        channel_id: invite.channel_id,
                        read_token: invite.read_token,
                        write_token: invite.write_token,
                        group_key: invite.group_key,
                        cursor: invite.after,
                    },
                    old: Vec::new(),
                    active: true,
                },
                Some(mut state) => {
                    let known_member =
                        state.members.contains(&sender.account_id) || sender.account_id == own;
                    if invite.epoch <= state.current.epoch || !known_member {
                        // Stale, repeated, or from someone not in the group as we know it.
                        return Ok(applied);
                    }
                    let next = Epoch {
                        epoch: invite.epoch,
                        channel_id: invite.channel_id,
                        read_token: invite.read_token,
                        write_token: invite.write_token,
                        group_key: invite.group_key,
                        cursor: invite.after,
                    };
                    let previous = std::mem::replace(&mut state.current, next);
                    state.old.insert(0, previous);
                    state.old.truncate(2);
                    state.name.clone_from(&invite.name);
                    state.members.clone_from(&invite.members);
                    state.active = true;
                    state
                }
            };
            put_json(s, GROUPS, &group, &state)?;
            apply_early_sender_keys(s, &state)?;
            // Every member device needs this device's sender key for the epoch (own other
            // devices included; the creator of the epoch distributes its own).
            for m in &state.members {
                add_task(
                    s,
                    &Task::SenderKey {
                        group,
                        epoch: state.current.epoch,
                        account: *m,
                    },
                )?;
            }
            applied.tasks_added = true;
            applied.subscribe.push(group);
            applied.retry_groups.push(group);
            applied.events.push(Event::GroupUpdated {
                group_id: group,
                name: state.name.clone(),
                members: state.members.clone(),
            });
        }
        Body::SenderKey {
            epoch,
            distribution,
        } => {
            let Ok(skdm) = SenderKeyDistributionMessage::from_bytes(&distribution) else {
                return Ok(content_rejected("malformed sender key"));
            };
            if skdm.distribution_id() != distribution_id(&group, epoch) {
                return Ok(content_rejected("sender key for another group"));
            }
            // Invites and sender keys come from different senders through different queues:
            // a member's key can arrive before the invite that makes this device a member of
            // the group (or of its new epoch). Keep it until then.
            let known_epoch = existing.as_ref().is_some_and(|st| {
                st.current.epoch == epoch || st.old.iter().any(|e| e.epoch == epoch)
            });
            if !known_epoch {
                let later = existing.as_ref().is_none_or(|st| epoch > st.current.epoch);
                if !later {
                    return Ok(content_rejected("sender key for an old epoch"));
                }
                if s.entries(PENDING_SENDER_KEYS)?.len() >= MAX_PENDING_SENDER_KEYS {
                    return Ok(content_rejected("too many early sender keys"));
                }
                let mut key = group.to_vec();
                key.extend_from_slice(&epoch.to_be_bytes());
                key.extend_from_slice(&sender.account_id);
                key.extend_from_slice(&sender.device_id.to_be_bytes());
                s.put(PENDING_SENDER_KEYS, &key, &distribution)?;
                return Ok(applied);
            }
            let Some(state) = existing else {
                return Ok(applied);
            };
            if !state.members.contains(&sender.account_id) && sender.account_id != own {
                return Ok(content_rejected("sender key from a non-member"));
            }
            if !store_sender_key(s, sender, &skdm)? {
                return Ok(content_rejected("sender key mismatch"));
            }
            applied.retry_groups.push(group);
        }
        _ => return Ok(content_rejected("unexpected group content")),
    }
    Ok(applied)
}

/// Stores (or merges) a member device's sender key; `false` if it does not fit the record.
fn store_sender_key(
    s: &mut ClientStore,
    sender: &DeviceAddress,
    skdm: &SenderKeyDistributionMessage,
) -> Result<bool, DeviceError> {
    let name = SenderKeyName {
        distribution_id: skdm.distribution_id(),
        sender_account: sender.account_id.to_vec(),
        device_id: sender.device_id,
    };
    let record = match s.load_sender_key(&name) {
        Ok(Some(mut r)) => {
            if r.process_distribution(skdm).is_err() {
                return Ok(false);
            }
            r
        }
        _ => haven_sdk::SenderKeyRecord::new(skdm),
    };
    s.store_sender_key(&name, &record)?;
    Ok(true)
}

/// Applies the sender keys of `state`'s current epoch that arrived before its invite (from
/// members only) and drops every early key of the group for this or an older epoch.
fn apply_early_sender_keys(s: &mut ClientStore, state: &GroupState) -> Result<(), DeviceError> {
    for (key, value) in s.entries(PENDING_SENDER_KEYS)? {
        if key.len() != 40 || key[..16] != state.id[..] {
            continue;
        }
        let epoch = u32::from_be_bytes([key[16], key[17], key[18], key[19]]);
        if epoch > state.current.epoch {
            continue;
        }
        s.delete(PENDING_SENDER_KEYS, &key)?;
        if epoch < state.current.epoch {
            continue;
        }
        let mut account = [0u8; 16];
        account.copy_from_slice(&key[20..36]);
        let device = u32::from_be_bytes([key[36], key[37], key[38], key[39]]);
        if !state.members.contains(&account) {
            continue;
        }
        if let Ok(skdm) = SenderKeyDistributionMessage::from_bytes(&value)
            && skdm.distribution_id() == distribution_id(&state.id, epoch)
        {
            store_sender_key(s, &DeviceAddress::new(account, device), &skdm)?;
        }
    }
    Ok(())
}

/// Applies one channel entry inside its transaction (cursor already advanced by the caller).
fn apply_entry(
    s: &mut ClientStore,
    state: &mut GroupState,
    epoch: &Epoch,
    seq: u64,
    entry: &[u8],
    own: [u8; 16],
    me: &DeviceAddress,
) -> Result<Applied, DeviceError> {
    let group = state.id;
    let mut applied = Applied::default();
    let Some((sender, message)) = open_entry(&group, epoch, entry) else {
        applied.events.push(Event::Rejected {
            reason: RejectReason::Tampered,
        });
        return Ok(applied);
    };
    if sender == *me {
        return Ok(applied);
    }
    let name = SenderKeyName {
        distribution_id: distribution_id(&group, epoch.epoch),
        sender_account: sender.account_id.to_vec(),
        device_id: sender.device_id,
    };
    let padded = match group_decrypt(s, &name, &message) {
        Ok(p) => Zeroizing::new(p),
        Err(ClientStoreError::Group(GroupError::UnknownChain(_))) => {
            // The sender's key has not arrived yet: keep the entry (bounded) for a retry.
            let count = s
                .entries(GROUP_PENDING)?
                .iter()
                .filter(|(k, _)| k.len() == 28 && k[..16] == group[..])
                .count();
            if count < MAX_PENDING_PER_GROUP {
                s.put(GROUP_PENDING, &pending_key(&group, epoch.epoch, seq), entry)?;
            }
            return Ok(applied);
        }
        Err(ClientStoreError::Group(GroupError::DuplicateMessage(_))) => {
            applied.events.push(Event::Rejected {
                reason: RejectReason::Replayed,
            });
            return Ok(applied);
        }
        Err(ClientStoreError::Group(e)) => {
            applied.events.push(Event::Rejected {
                reason: RejectReason::Session(e.to_string()),
            });
            return Ok(applied);
        }
        Err(e) => return Err(e.into()),
    };
    let Ok(plain) = unpad(&padded) else {
        return Ok(content_rejected("bad padding"));
    };
    let content = match Content::from_bytes(plain) {
        Ok(c) => c,
        Err(e) => return Ok(content_rejected(e)),
    };
    if content.conversation != Conversation::Group(group) {
        return Ok(content_rejected("group entry for another conversation"));
    }
    if !state.members.contains(&sender.account_id) {
        return Ok(content_rejected("group entry from a non-member"));
    }
    let conversation = content.conversation;
    let Some(body) = apply_message_body(
        s,
        conversation,
        &sender,
        sender.account_id == own,
        content.sent_at,
        content.body,
        &mut applied,
    )?
    else {
        return Ok(applied);
    };
    match body {
        Body::GroupUpdate {
            epoch: e,
            name,
            members,
        } => {
            if e != state.current.epoch {
                return Ok(applied);
            }
            let added: Vec<[u8; 16]> = members
                .iter()
                .filter(|m| !state.members.contains(m))
                .copied()
                .collect();
            state.name = name;
            state.members = members;
            if !state.members.contains(&own) {
                state.active = false;
                applied
                    .events
                    .push(Event::RemovedFromGroup { group_id: group });
                return Ok(applied);
            }
            for account in added {
                add_task(
                    s,
                    &Task::SenderKey {
                        group,
                        epoch: state.current.epoch,
                        account,
                    },
                )?;
                applied.tasks_added = true;
            }
            applied.events.push(Event::GroupUpdated {
                group_id: group,
                name: state.name.clone(),
                members: state.members.clone(),
            });
        }
        // Typing, contact cards, invites and sender keys never travel in a channel.
        _ => return Ok(content_rejected("content not allowed in a group channel")),
    }
    Ok(applied)
}
