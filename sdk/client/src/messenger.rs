//! The Messenger: contacts, 1:1 conversations, groups and an event stream on top of a
//! [`Device`].
//!
//! This is the native I/O driver of the client core's messenger
//! ([`haven_client_core::messenger`]), which holds every state change (what a received content
//! does to the store and which events it yields, what each user action sends, the durable
//! follow-ups); here are the relay's HTTP API, the WebSocket and files.
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
//!   Delivery receipts follow the [`ReceiptPolicy`] (by default delayed a random time and
//!   batched per account, §13.4.1): [`Messenger::run`] sleeps until the next one is due.
//! - **Connection.** [`Messenger::run`] keeps the WebSocket open with jittered exponential
//!   backoff and processes queued and live envelopes and group channel entries;
//!   [`Messenger::sync`] does the same once over REST, and [`Messenger::handle_wake_up`] too,
//!   within a time budget, for a push handler, returning what it found (§13.4.2).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use futures_util::{SinkExt, StreamExt};
use haven_client_core::device::{ListRefusal, LocalDevice};
use haven_client_core::messenger::channels::ChannelItem;
use haven_client_core::messenger::{
    self as core, Channel, DirectSend, Epoch, GroupState, Outgoing, StateError, channels, outgoing,
};
use haven_sdk::store::DeviceAddress;
use reqwest::Method;
use tokio::sync::{broadcast, mpsc};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use zeroize::Zeroizing;

use crate::attachments::{AttachmentPointer, Attachments, AttachmentsError, Progress};
use crate::device::{DeliveredFranking, Device, DeviceError, Opened, ReportError};
use crate::store::ClientStoreError;
use crate::thumbnail;
use crate::ws::{self, Backoff, ConnectError};
use haven_protocol::api::channels::{
    AppendResponse, CreateChannelRequest, CreateChannelResponse, EntriesPage,
};
use haven_protocol::api::moderation::ReportResponse;
use haven_protocol::api::usernames::{LookupRequest, LookupResponse};
use haven_protocol::content::{Content, ContentError, Conversation};
use haven_protocol::frames::{ClientFrame, EnvelopeFrame, ServerFrame};

pub use haven_client_core::messenger::{
    Applied, ConnectionState, Contact, Event, GroupInfo, MAX_PENDING_PER_GROUP,
    MAX_PENDING_SENDER_KEYS, MAX_RECEIPT_DELAY_SECS, MessageRecord, ReactionRecord, ReceiptPolicy,
    RejectReason, SafetyNumber, WAKE_BUDGET_MS, WakeSummary, distribution_id,
};

/// Capacity of the event channel; a subscriber that falls further behind misses events
/// (and is told so by `broadcast`'s `Lagged`), the store keeps everything.
pub const EVENT_CAPACITY: usize = 1024;

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
    /// A message could not be reported (PROTOCOL §16.9): not reportable here, or refused by
    /// the relay.
    #[error(transparent)]
    Report(#[from] ReportError),
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

impl From<StateError> for MessengerError {
    fn from(e: StateError) -> Self {
        match e {
            StateError::Invalid(msg) => Self::Invalid(msg),
            StateError::Content(e) => Self::Content(e),
            StateError::Report(e) => Self::Report(e),
            other => Self::Device(device_error(other)),
        }
    }
}

/// A core error inside a device step (the envelope's transaction).
fn device_error(e: StateError) -> DeviceError {
    match e {
        StateError::Store(e) => DeviceError::Store(e),
        StateError::Device(e) => e.into(),
        other => DeviceError::Protocol(other.to_string()),
    }
}

fn invalid(msg: impl Into<String>) -> MessengerError {
    MessengerError::Invalid(msg.into())
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Sleeps until `at` (Unix ms; at once when past), forever when `None`.
async fn sleep_until_ms(at: Option<u64>) {
    match at {
        Some(at) => {
            tokio::time::sleep(std::time::Duration::from_millis(
                at.saturating_sub(now_ms()),
            ))
            .await;
        }
        None => std::future::pending().await,
    }
}

/// A relay message id for a send (client-chosen, making the send idempotent).
fn relay_message_id() -> String {
    let mut id = [0u8; 16];
    rand::Rng::fill_bytes(&mut rand::rng(), &mut id);
    hex::encode(id)
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
    /// Held by a REST catch-up ([`Messenger::sync`], [`Messenger::handle_wake_up`]).
    catching_up: tokio::sync::Mutex<()>,
    /// Held while follow-up tasks run.
    running_tasks: tokio::sync::Mutex<()>,
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
            catching_up: tokio::sync::Mutex::new(()),
            running_tasks: tokio::sync::Mutex::new(()),
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
        let account = core::parse_id(account_hex)?;
        let contact = core::add_contact(&self.device.lock(), &self.own(), &account, username)?;
        self.ensure_card_sent(&account).await?;
        Ok(self.contact(&account)?.unwrap_or(contact))
    }

    /// Blocks (`true`) or unblocks an account: a blocked account's messages are dropped on
    /// receipt, 1:1 and in groups, without receipts, and nothing is sent to it 1:1. The relay is
    /// not told. Returns the stored contact.
    ///
    /// # Errors
    /// A malformed id or this account (`Invalid`); store errors.
    pub fn set_blocked(&self, account_hex: &str, blocked: bool) -> Result<Contact, MessengerError> {
        let account = core::parse_id(account_hex)?;
        Ok(core::set_blocked(
            &self.device.lock(),
            &self.own(),
            &account,
            blocked,
        )?)
    }

    /// One contact.
    ///
    /// # Errors
    /// Store errors.
    pub fn contact(&self, account: &[u8; 16]) -> Result<Option<Contact>, MessengerError> {
        Ok(core::contact(&self.device.lock(), account)?)
    }

    /// Every contact.
    ///
    /// # Errors
    /// Store errors.
    pub fn contacts(&self) -> Result<Vec<Contact>, MessengerError> {
        Ok(core::contacts(&self.device.lock())?)
    }

    async fn ensure_card_sent(&self, account: &[u8; 16]) -> Result<(), MessengerError> {
        let needed = core::needs_card(&self.device.lock(), account)?;
        if !needed {
            return Ok(());
        }
        let card = core::contact_card(account, self.device.access_key()?, now_ms());
        self.send_direct_raw(account, &card, false).await?;
        core::card_sent(&self.device.lock(), account)?;
        Ok(())
    }

    /// The safety numbers with each known device of `account` (compare them out of band; they
    /// are the same on both sides).
    ///
    /// # Errors
    /// Store errors; [`MessengerError::Invalid`] when no device of the contact is known yet.
    pub fn safety_numbers(&self, account: &[u8; 16]) -> Result<Vec<SafetyNumber>, MessengerError> {
        let store = self.device.lock();
        let out = LocalDevice::load(&store)
            .and_then(|local| local.safety_numbers(&store, account))
            .map_err(DeviceError::from)?;
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

    /// The safety number with `account` (60 digits, PROTOCOL §15.4), stable while either side
    /// links or unlinks devices; `None` until its signed device list is known (or when it
    /// publishes none).
    ///
    /// # Errors
    /// Store errors.
    pub fn account_safety_number(
        &self,
        account: &[u8; 16],
    ) -> Result<Option<String>, MessengerError> {
        Ok(self.device.account_safety_number(account)?)
    }

    /// Accepts `account`'s new identity key after [`Event::AccountKeyChanged`], once the user
    /// compared the new account safety number; sessions with it start over.
    ///
    /// # Errors
    /// [`MessengerError::Device`] when no change is pending; store errors.
    pub fn accept_account_key(&self, account: &[u8; 16]) -> Result<(), MessengerError> {
        let update = self.device.accept_account_key(account)?;
        self.emit([Event::from(
            haven_client_core::device::DirectoryNotice::Changed(update),
        )]);
        Ok(())
    }

    /// Reads `account`'s signed device list again now (its devices, or a changed key, are
    /// reported as events).
    ///
    /// # Errors
    /// [`DeviceError::AccountKeyChanged`], [`DeviceError::DeviceList`] (also events), relay
    /// errors.
    pub async fn refresh_devices(&self, account: &[u8; 16]) -> Result<(), MessengerError> {
        let fetched = self.device.fetch_device_list(account).await;
        self.emit_notices();
        fetched?;
        Ok(())
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
        let relay_id = relay_message_id();
        let target = hex::encode(account);
        let sent = self
            .device
            .send_with_id(&target, &bytes, &relay_id, ephemeral)
            .await;
        self.emit_notices();
        match sent {
            Ok(_) => {}
            Err(DeviceError::UnlistedDevice { account: a, device }) => {
                if let Ok(acc) = core::parse_id(&a) {
                    self.emit([Event::DeviceListRefused {
                        account: acc,
                        reason: ListRefusal::Unlisted { device },
                    }]);
                }
                return Err(DeviceError::UnlistedDevice { account: a, device }.into());
            }
            Err(DeviceError::IdentityChanged { account: a, device }) => {
                if let Ok(acc) = core::parse_id(&a) {
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
            let copied = self
                .device
                .send_with_id(&hex::encode(self.own()), &bytes, &relay_id, ephemeral)
                .await;
            self.emit_notices();
            copied?;
        }
        Ok(())
    }

    /// Sends `content` 1:1 to every device of `to` only (follow-ups, invites, sender keys).
    async fn send_to_account(&self, to: &[u8; 16], bytes: &[u8]) -> Result<(), MessengerError> {
        let sent = self
            .device
            .send_with_id(&hex::encode(to), bytes, &relay_message_id(), false)
            .await;
        // What the send learned about the account's devices (or refused) reaches the app as
        // for a direct send.
        self.emit_notices();
        if let Err(DeviceError::UnlistedDevice { account, device }) = &sent
            && let Ok(acc) = core::parse_id(account)
        {
            self.emit([Event::DeviceListRefused {
                account: acc,
                reason: ListRefusal::Unlisted { device: *device },
            }]);
        }
        sent?;
        Ok(())
    }

    /// Sends an action's content, then applies its local change (or takes back what it stored
    /// when the send fails).
    async fn send_outgoing(&self, out: Outgoing) -> Result<(), MessengerError> {
        if let Err(e) = self.send_content(out.content()).await {
            out.failed(&self.device.lock())?;
            return Err(e);
        }
        out.sent(&self.device.lock())?;
        Ok(())
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
        // Stored before it is sent: a receipt can come back before the send call returns (the
        // recipient may answer while the copies to this account's other devices go out), and
        // must find the message. A send that fails takes the record back out.
        let (message_id, out) = outgoing::message(
            &self.device.lock(),
            &self.device.address(),
            conversation,
            text,
            attachment,
            now_ms(),
            &mut rand::rng(),
        )?;
        self.send_outgoing(out).await?;
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
            return Err(crate::attachments::TransferError::Malformed.into());
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
        match outgoing::read_receipt(conversation, message_ids, now_ms()) {
            Some(out) => self.send_outgoing(out).await,
            None => Ok(()),
        }
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
        let out = outgoing::typing(conversation, started, now_ms())?;
        self.send_direct_raw(conversation.id(), out.content(), true)
            .await
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
        let out = outgoing::reaction(&self.own(), conversation, target, emoji, remove, now_ms())?;
        self.send_outgoing(out).await
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
        let out = outgoing::edit(&self.device.lock(), conversation, target, text, now_ms())?;
        self.send_outgoing(out).await
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
        let out = outgoing::delete(&self.device.lock(), conversation, target, now_ms())?;
        self.send_outgoing(out).await
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
        self.send_outgoing(outgoing::timer(conversation, expire_secs, now_ms()))
            .await
    }

    /// The messages of a conversation, oldest first (disappeared ones are deleted first).
    ///
    /// # Errors
    /// Store errors.
    pub fn history(
        &self,
        conversation: Conversation,
    ) -> Result<Vec<MessageRecord>, MessengerError> {
        Ok(core::history(&self.device.lock(), conversation, now_ms())?)
    }

    /// The conversations with stored messages.
    ///
    /// # Errors
    /// Store errors.
    pub fn conversations(&self) -> Result<Vec<Conversation>, MessengerError> {
        Ok(core::conversations(&self.device.lock())?)
    }

    // ---------------------------------------------------------------- reports (§16)

    /// Reports message `message_id` of `conversation` to the relay as abuse
    /// (`POST /v1/reports`, PROTOCOL §16.9): reveals this message's content, its sender and
    /// the franking that proves both to the relay, and nothing about any other message.
    /// Returns the relay's report id and whether it could attribute the message to its sender
    /// (false: the sender's client put a tag that does not verify, §16.8).
    ///
    /// # Errors
    /// [`MessengerError::Report`]: [`ReportError::UnknownMessage`],
    /// [`ReportError::NotReportable`] (own or unfranked messages), [`ReportError::Expired`],
    /// [`ReportError::Unsupported`] (the relay takes no reports), and the relay's refusals
    /// ([`ReportError::Invalid`], [`ReportError::NotRecipient`], [`ReportError::Unverified`]);
    /// relay and store errors.
    pub async fn report(
        &self,
        conversation: Conversation,
        message_id: [u8; 16],
    ) -> Result<ReportResponse, MessengerError> {
        let now = now_ms() / 1000;
        let needs_key = core::report_needs_key(&self.device.lock(), &conversation, &message_id)?;
        let current = if needs_key {
            self.device.franking_key().await?
        } else {
            None
        };
        let request = core::report_request(
            &self.device.lock(),
            &conversation,
            &message_id,
            current.as_ref(),
            now,
        )?;
        let reply = self
            .device
            .relay()
            .request_as::<ReportResponse, _>(Method::POST, "/v1/reports", Some(&request))
            .await;
        match reply {
            Ok(answer) => {
                self.device.persist_session().await?;
                Ok(answer)
            }
            Err(e) => Err(match e.code().and_then(ReportError::from_code) {
                Some(refusal) => refusal.into(),
                None if e.status() == Some(404) && e.code() == Some("not_found") => {
                    ReportError::Unsupported.into()
                }
                None => e.into(),
            }),
        }
    }

    /// Whether message `message_id` of `conversation` can be reported now (it has report
    /// material within the report window).
    ///
    /// # Errors
    /// Store errors.
    pub fn reportable(
        &self,
        conversation: Conversation,
        message_id: [u8; 16],
    ) -> Result<bool, MessengerError> {
        Ok(core::reportable(
            &self.device.lock(),
            &conversation,
            &message_id,
            now_ms() / 1000,
        )?)
    }

    // ---------------------------------------------------------------- groups

    fn group(&self, id: &[u8; 16]) -> Result<Option<GroupState>, MessengerError> {
        Ok(core::group(&self.device.lock(), id)?)
    }

    fn groups_state(&self) -> Result<Vec<GroupState>, MessengerError> {
        Ok(core::group_states(&self.device.lock())?)
    }

    /// Every group this device knows.
    ///
    /// # Errors
    /// Store errors.
    pub fn groups(&self) -> Result<Vec<GroupInfo>, MessengerError> {
        Ok(core::groups(&self.device.lock())?)
    }

    async fn create_channel(&self) -> Result<Channel, MessengerError> {
        let relay = self.device.relay();
        let reply = relay
            .request_as::<CreateChannelResponse, _>(
                Method::POST,
                "/v1/channels",
                Some(&channels::create_request()),
            )
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
        Ok(Channel::from_reply(&reply)?)
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
        let channel = self.create_channel().await?;
        let state = outgoing::create_group(
            &self.device.lock(),
            &self.own(),
            name,
            members,
            &channel,
            &mut rand::rng(),
        )?;
        let (group_id, all) = (*state.id(), state.members().to_vec());
        self.send_invites(&state, &all, 0).await?;
        // The admin key, to this account's other devices (after their invite).
        if let Some(copy) = outgoing::admin_key(&state, now_ms()) {
            let bytes = Zeroizing::new(copy.to_bytes()?);
            self.send_to_account(&self.own(), &bytes).await?;
        }
        self.distribute_sender_key(&group_id, state.current().number(), &all)
            .await?;
        self.subscribe_group(&state);
        self.emit([state.updated_event()]);
        Ok(group_id)
    }

    async fn send_invites(
        &self,
        state: &GroupState,
        to: &[[u8; 16]],
        after: u64,
    ) -> Result<(), MessengerError> {
        let own = self.own();
        let content = outgoing::group_invite(state, after, now_ms());
        let bytes = Zeroizing::new(content.to_bytes()?);
        for account in to {
            if *account != own {
                self.ensure_card_sent(account).await?;
            }
            self.send_to_account(account, &bytes).await?;
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
        let content = outgoing::sender_key(
            &mut self.device.lock(),
            group,
            epoch,
            now_ms(),
            &mut rand::rng(),
        )?;
        let bytes = Zeroizing::new(content.to_bytes()?);
        for account in to {
            self.send_to_account(account, &bytes).await?;
        }
        Ok(())
    }

    async fn post_entry(
        &self,
        epoch: &Epoch,
        entry: &outgoing::GroupEntry,
    ) -> Result<u64, MessengerError> {
        let reply: AppendResponse = self
            .device
            .relay()
            .request_with_bearer_as(
                Method::POST,
                &epoch.append_path(),
                &epoch.write_bearer(),
                Some(&channels::append_body(
                    &entry.entry,
                    entry.commitment.as_ref(),
                )),
            )
            .await?;
        Ok(u64::try_from(reply.seq).unwrap_or(0))
    }

    async fn send_group(&self, group: &[u8; 16], content: &Content) -> Result<(), MessengerError> {
        let state = core::active_group(&self.device.lock(), group)?;
        // Make sure the sending session exists (it was distributed when the epoch started).
        let epoch = state.current().number();
        let has_session = core::has_own_sender_session(&self.device.lock(), group, epoch);
        if !has_session {
            self.distribute_sender_key(group, epoch, state.members())
                .await?;
        }
        // Franked for the channel with the relay's key once it offers one (§16.3).
        let franking_key = self.device.franking_key().await?;
        let entry = outgoing::group_entry(
            &mut self.device.lock(),
            &self.device.address(),
            &state,
            content,
            franking_key.as_ref(),
            &mut rand::rng(),
        )?;
        self.post_entry(state.current(), &entry).await?;
        Ok(())
    }

    /// Adds a member (this device must hold the group's admin key): a new epoch starts (new
    /// channel, group key and sender keys) that every member, the new one included, is invited
    /// to; the new member reads what is sent from now on (not the history).
    ///
    /// # Errors
    /// [`MessengerError::Invalid`] for an unknown group, an existing member, a full group or a
    /// device that is not the group's admin.
    pub async fn add_member(
        &self,
        group: &[u8; 16],
        account: &[u8; 16],
    ) -> Result<(), MessengerError> {
        let change = outgoing::add_member(
            &self.device.lock(),
            group,
            account,
            now_ms(),
            &mut rand::rng(),
        )?;
        self.finish_member_change(group, change).await
    }

    /// Posts a member change's signed update to the current channel (every member, a removed
    /// one included, learns it there), starts its epoch over a new channel, stores the group
    /// and invites the members of the new epoch.
    async fn finish_member_change(
        &self,
        group: &[u8; 16],
        change: outgoing::MemberChange,
    ) -> Result<(), MessengerError> {
        self.send_group(group, &change.update).await?;
        let mut state = change.state;
        let channel = self.create_channel().await?;
        state.start_epoch(&channel)?;
        core::save_group(&self.device.lock(), &state)?;
        let members = state.members().to_vec();
        self.send_invites(&state, &members, 0).await?;
        self.distribute_sender_key(group, state.current().number(), &members)
            .await?;
        self.subscribe_group(&state);
        self.emit([state.updated_event()]);
        Ok(())
    }

    /// Removes a member: a new epoch starts (new channel, group key and sender keys) that only
    /// the remaining members learn, so the removed member cannot read anything sent after.
    ///
    /// # Errors
    /// [`MessengerError::Invalid`] for an unknown group, a non-member or a device that is not
    /// the group's admin.
    pub async fn remove_member(
        &self,
        group: &[u8; 16],
        account: &[u8; 16],
    ) -> Result<(), MessengerError> {
        let change = outgoing::remove_member(
            &self.device.lock(),
            &self.own(),
            group,
            account,
            now_ms(),
            &mut rand::rng(),
        )?;
        self.finish_member_change(group, change).await
    }

    // ---------------------------------------------------------------- receiving

    /// Processes one 1:1 envelope (from the socket or a REST fetch). Returns the events; the
    /// caller acks the envelope afterwards (duplicates and rejects are acked too).
    async fn handle_envelope(
        &self,
        message_id: &str,
        content: &[u8],
        delivered: Option<&DeliveredFranking>,
        ephemeral: bool,
    ) -> Result<Applied, MessengerError> {
        let mut opened = self.open_direct(message_id, content, delivered, ephemeral)?;
        if let Opened::NeedDeviceList { account, .. } = opened {
            // The sender's list is unknown or does not name the sending device: read it again
            // (the contact may have linked the device since), then decide.
            match self.device.fetch_device_list(&account).await {
                Ok(_)
                | Err(DeviceError::AccountKeyChanged { .. } | DeviceError::DeviceList { .. }) => {}
                Err(e) => return Err(e.into()),
            }
            self.emit_notices();
            opened = self
                .open_direct(message_id, content, delivered, ephemeral)?
                .unlisted();
        }
        Ok(match opened {
            Opened::Duplicate => Applied::default(),
            Opened::Rejected(reason) => Applied::envelope_rejected(reason),
            Opened::NeedDeviceList { .. } => Applied::default(),
            Opened::Accepted { value, .. } => value,
        })
    }

    fn open_direct(
        &self,
        message_id: &str,
        content: &[u8],
        delivered: Option<&DeliveredFranking>,
        ephemeral: bool,
    ) -> Result<Opened<Applied>, MessengerError> {
        let me = self.device.address();
        let now = now_ms();
        Ok(self.device.open_envelope(
            message_id,
            content,
            delivered,
            !ephemeral,
            |s, sender, plain, franking| {
                core::apply_direct(
                    s,
                    &me,
                    sender,
                    plain,
                    franking,
                    ephemeral,
                    now,
                    &mut rand::rng(),
                )
                .map_err(device_error)
            },
        )?)
    }

    /// Emits what the device learned about accounts' device lists.
    fn emit_notices(&self) {
        let notices = self.device.take_notices();
        if !notices.is_empty() {
            self.emit(notices.into_iter().map(Event::from));
        }
    }

    /// Processes one sealed envelope the application obtained itself (e.g. from a push
    /// notification payload or its own transport), exactly as if it had arrived over the
    /// socket, with the franking the relay delivered with it (`delivered`, PROTOCOL §16.4:
    /// a franked envelope without it is refused); returns (and emits) the events. The caller
    /// acks it with the relay afterwards.
    ///
    /// # Errors
    /// Store errors (a bad envelope is an [`Event::Rejected`], not an error).
    pub async fn process_envelope(
        &self,
        message_id: &str,
        content: &[u8],
        delivered: Option<&DeliveredFranking>,
    ) -> Result<Vec<Event>, MessengerError> {
        let applied = self
            .handle_envelope(message_id, content, delivered, false)
            .await?;
        let events = applied.events.clone();
        self.finish(applied)?;
        Ok(events)
    }

    /// Processes channel entries of a group epoch in order.
    fn handle_entries(
        &self,
        group: &[u8; 16],
        epoch: u32,
        entries: &[ChannelItem],
    ) -> Result<Applied, MessengerError> {
        Ok(core::apply_entries(
            &mut self.device.lock(),
            &self.device.address(),
            group,
            epoch,
            entries,
            now_ms(),
            &mut rand::rng(),
        )?)
    }

    async fn fetch_entries(
        &self,
        epoch: &Epoch,
        after: u64,
    ) -> Result<(Vec<ChannelItem>, bool), MessengerError> {
        let page: EntriesPage = self
            .device
            .relay()
            .request_with_bearer_as::<_, ()>(
                Method::GET,
                &epoch.entries_path(after),
                &epoch.read_bearer(),
                None,
            )
            .await?;
        Ok((channels::page_entries(&page)?, page.more))
    }

    /// Reads every group channel after its cursor over REST; counts what it finds in `tally`.
    async fn poll_groups(&self, tally: &mut WakeSummary) -> Result<(), MessengerError> {
        for state in self.groups_state()? {
            for epoch in state.readable_epochs() {
                let mut after = epoch.cursor();
                loop {
                    let (entries, more) = match self.fetch_entries(epoch, after).await {
                        Ok(page) => page,
                        // An expired old channel has nothing more to give.
                        Err(MessengerError::Device(DeviceError::Relay(e)))
                            if e.code() == Some("channel_not_found") =>
                        {
                            break;
                        }
                        Err(e) => return Err(e),
                    };
                    if let Some(ChannelItem { seq, .. }) = entries.last() {
                        after = *seq;
                    }
                    let applied = self.handle_entries(state.id(), epoch.number(), &entries)?;
                    self.finish_counted(applied, tally)?;
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
        self.finish_counted(applied, &mut WakeSummary::default())
    }

    /// [`Self::finish`], counting the events (those of entries retried too) in `tally`.
    fn finish_counted(
        &self,
        applied: Applied,
        tally: &mut WakeSummary,
    ) -> Result<(), MessengerError> {
        tally.add_events(&applied.events);
        self.emit(applied.events);
        for g in applied.retry_groups {
            let events = core::retry_pending(
                &mut self.device.lock(),
                &self.device.address(),
                &g,
                now_ms(),
                &mut rand::rng(),
            )?;
            tally.add_events(&events);
            self.emit(events);
        }
        for g in applied.subscribe {
            if let Some(state) = self.group(&g)? {
                self.subscribe_group(&state);
            }
        }
        Ok(())
    }

    /// When this device sends the delivery receipts it owes (PROTOCOL §13.4.1; kept in the
    /// store, [`ReceiptPolicy::DEFAULT`] until set).
    ///
    /// # Errors
    /// Store errors.
    pub fn receipt_policy(&self) -> Result<ReceiptPolicy, MessengerError> {
        Ok(core::receipt_policy(&self.device.lock())?)
    }

    /// Sets the receipt policy; receipts already owed follow it when they run.
    ///
    /// # Errors
    /// [`MessengerError::Invalid`] for a delay outside the limits
    /// ([`ReceiptPolicy::check`]); store errors.
    pub fn set_receipt_policy(&self, policy: ReceiptPolicy) -> Result<(), MessengerError> {
        Ok(core::set_receipt_policy(&self.device.lock(), policy)?)
    }

    /// When (Unix ms) the next queued follow-up that is not due yet becomes due (a delayed
    /// delivery receipt), if any. [`Messenger::run`] sends it then by itself; a caller that only
    /// uses [`Messenger::sync`] calls [`Messenger::run_tasks`] at that time.
    ///
    /// # Errors
    /// Store errors.
    pub fn next_task_due(&self) -> Result<Option<u64>, MessengerError> {
        Ok(core::next_due(&self.device.lock(), now_ms())?)
    }

    /// Runs the durable follow-up tasks that are due (sender-key distribution, delivery
    /// receipts: those owed to one account go out as one receipt). A task that fails stays
    /// queued for the next run; one not due yet waits ([`Messenger::next_task_due`]).
    ///
    /// # Errors
    /// Store errors (network failures leave the task queued and are not errors).
    pub async fn run_tasks(&self) -> Result<usize, MessengerError> {
        // One run at a time (the run loop and a wake-up may both get here): a task is sent
        // once, not by each of them.
        let _one_at_a_time = self.running_tasks.lock().await;
        let due = core::due_follow_ups(&self.device.lock(), now_ms())?;
        let mut done = 0;
        for follow_up in due {
            let send = core::follow_up(
                &mut self.device.lock(),
                &follow_up,
                now_ms(),
                &mut rand::rng(),
            )?;
            let result = match send {
                Some(send) => self.send_follow_up(&send).await,
                None => Ok(()),
            };
            match result {
                Ok(()) => {
                    core::follow_up_done(&self.device.lock(), &follow_up)?;
                    done += follow_up.tasks().len();
                }
                // A changed identity needs the user: drop the task and say so (the next
                // message after accepting the key starts a new session).
                Err(MessengerError::Device(DeviceError::IdentityChanged { account, device })) => {
                    core::follow_up_done(&self.device.lock(), &follow_up)?;
                    if let Ok(account) = core::parse_id(&account) {
                        self.emit([Event::IdentityChanged { account, device }]);
                    }
                }
                // An account that no longer exists will never take the task.
                Err(MessengerError::Device(DeviceError::Relay(e)))
                    if e.code() == Some("account_not_found") =>
                {
                    core::follow_up_done(&self.device.lock(), &follow_up)?;
                }
                Err(_) => {}
            }
        }
        Ok(done)
    }

    async fn send_follow_up(&self, send: &DirectSend) -> Result<(), MessengerError> {
        let bytes = Zeroizing::new(send.content.to_bytes()?);
        self.send_to_account(&send.to, &bytes).await
    }

    /// Fetches and processes everything waiting (queued envelopes over REST, group channels,
    /// follow-up tasks) once. Returns the number of envelopes processed.
    ///
    /// # Errors
    /// Relay and store errors.
    pub async fn sync(&self) -> Result<usize, MessengerError> {
        let mut tally = WakeSummary::default();
        self.catch_up(&mut tally).await?;
        Ok(usize::try_from(tally.envelopes).unwrap_or(usize::MAX))
    }

    /// Handles a push wake-up (PROTOCOL §13.4.2), for the host application's push handler:
    /// fetches what is waiting over REST, processes it (decrypts, stores, queues delivery
    /// receipts per the [`ReceiptPolicy`]), acknowledges it, reads the group channels, runs the
    /// follow-ups that are due, and returns a [`WakeSummary`] the application can show locally
    /// (new messages and their conversations; the relay learns nothing of it).
    ///
    /// It stops at `budget` (e.g. [`WAKE_BUDGET_MS`]; iOS gives a handler about 30 s): the
    /// summary then says `complete: false`, whatever was processed stays processed, and what was
    /// processed but not yet acknowledged is acknowledged, without being delivered again, by
    /// the next wake-up or connection. Safe to call at any time, also twice at once or while
    /// [`Messenger::run`] is connected: every envelope and channel entry is processed exactly
    /// once (§13.4), whichever path gets it first, and counted only by that one. Events are
    /// emitted as usual.
    ///
    /// # Errors
    /// Relay errors (e.g. no network; a revoked session is [`MessengerError::Device`] with the
    /// relay's 401), store errors.
    pub async fn handle_wake_up(
        &self,
        budget: std::time::Duration,
    ) -> Result<WakeSummary, MessengerError> {
        let mut summary = WakeSummary::default();
        let outcome = tokio::time::timeout(budget, self.catch_up(&mut summary)).await;
        match outcome {
            Ok(Ok(())) => summary.complete = true,
            Ok(Err(e)) => return Err(e),
            // Cut off between two steps: each envelope's effects were committed atomically.
            Err(_elapsed) => self.device.persist_session().await?,
        }
        summary.next_task_due_ms = self.next_task_due()?;
        Ok(summary)
    }

    /// [`Messenger::sync`]'s work, one catch-up at a time (a second one waits, then finds
    /// nothing left), counting what it processed in `tally`.
    async fn catch_up(&self, tally: &mut WakeSummary) -> Result<(), MessengerError> {
        let _one_at_a_time = self.catching_up.lock().await;
        self.run_tasks().await?;
        let mut after = 0i64;
        loop {
            let page = self.device.fetch_page(after).await?;
            let mut acks = Vec::new();
            for q in &page.envelopes {
                after = after.max(q.seq);
                let delivered = DeliveredFranking::from_queued(q);
                let applied = match (STANDARD.decode(&q.content), delivered) {
                    (Ok(bytes), Ok(delivered)) => {
                        self.handle_envelope(
                            &q.message_id.to_hex(),
                            &bytes,
                            delivered.as_ref(),
                            false,
                        )
                        .await?
                    }
                    (Err(_), _) => {
                        Applied::rejected(RejectReason::Malformed("envelope is not base64".into()))
                    }
                    (_, Err(e)) => Applied::rejected(RejectReason::Malformed(e.to_string())),
                };
                tally.add_envelope();
                self.finish_counted(applied, tally)?;
                acks.push(q.message_id);
            }
            self.device.ack(&acks).await?;
            if !page.more || page.envelopes.is_empty() {
                break;
            }
        }
        self.poll_groups(tally).await?;
        self.run_tasks().await?;
        self.maintain_keys().await;
        self.device.persist_session().await?;
        Ok(())
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
        for e in state.readable_epochs() {
            let id = self.request_ids.fetch_add(1, Ordering::Relaxed);
            let frame = e.subscribe_frame(id);
            let _ = tx.send(WsMessage::Binary(frame.to_vec().into()));
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
        // Channel id → (group, epoch), refreshed when an entry of an unknown channel arrives.
        let mut channels: HashMap<[u8; 16], ([u8; 16], u32)> = HashMap::new();
        // When the next delayed follow-up (a delivery receipt) becomes due: looked up again
        // after anything that may have queued or run tasks.
        let mut wake: Option<u64> = None;
        let mut recheck = true;
        let outcome = loop {
            if recheck {
                wake = core::next_due(&self.device.lock(), now_ms())?;
                recheck = false;
            }
            let next = tokio::select! {
                frame = stream.next() => frame,
                () = sleep_until_ms(wake) => {
                    self.run_tasks().await?;
                    recheck = true;
                    continue;
                }
            };
            let Some(frame) = next else {
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
                ServerFrame::Envelope(frame) => {
                    let delivered = DeliveredFranking::from_frame(&frame);
                    let EnvelopeFrame {
                        message_id,
                        content,
                        ..
                    } = frame;
                    let applied = self
                        .handle_envelope(
                            &hex::encode(message_id),
                            content,
                            delivered.as_ref(),
                            false,
                        )
                        .await?;
                    let queued = applied.tasks_added;
                    self.finish(applied)?;
                    if let Ok(ack) = ClientFrame::Ack(vec![message_id]).encode() {
                        let _ = tx.send(WsMessage::Binary(ack.into()));
                    }
                    // A task that keeps failing is retried at the next catch-up, not on every
                    // frame (each retry may cost the contact a one-time prekey).
                    if queued {
                        self.run_tasks().await?;
                        recheck = true;
                    }
                }
                ServerFrame::Ephemeral {
                    message_id,
                    content,
                    ..
                } => {
                    let applied = self
                        .handle_envelope(&hex::encode(message_id), content, None, true)
                        .await?;
                    self.finish(applied)?;
                }
                ServerFrame::QueueEmpty => {
                    backoff.reset();
                    self.emit([Event::Connection(ConnectionState::CaughtUp)]);
                    self.run_tasks().await?;
                    recheck = true;
                    self.maintain_keys().await;
                    self.device.persist_session().await?;
                }
                ServerFrame::ChannelEntry {
                    channel: channel_id,
                    seq,
                    created_at,
                    entry,
                    franking,
                } => {
                    if !channels.contains_key(&channel_id) {
                        channels.extend(core::channel_index(&self.device.lock())?);
                    }
                    if let Some((group, epoch)) = channels.get(&channel_id).copied() {
                        let item = ChannelItem::from_frame(seq, created_at, entry, franking);
                        let applied = self.handle_entries(&group, epoch, &[item])?;
                        let queued = applied.tasks_added;
                        self.finish(applied)?;
                        if queued {
                            self.run_tasks().await?;
                            recheck = true;
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
