//! The messaging service: sending envelopes into per-device mailboxes, fetching and acking them,
//! ephemeral (never stored) messages, and the expiry reaper.
//!
//! These are plain async functions over a [`MailContext`] (what the service uses of the relay:
//! the store, the `[mail]` settings, the hubs and the limiter), used by the REST handlers
//! (`mail::routes`) and by the WebSocket layer alike. They validate everything, check
//! authorisation, apply the limits of the `[mail]` settings and only then touch the store, so a
//! refused request has changed nothing. Errors are [`MessagingError`]s, which convert into the
//! HTTP [`AppError`] format.
//!
//! Addressing: a device is `(account id, device number)`; device numbers are the small per-account
//! numbers of [`crate::accounts::store::DeviceRecord::number`] (the SDK's `DeviceAddress::device_id`).
//!
//! Wake-ups: once an envelope is newly queued for a device, it is handed to that device's socket
//! on this instance ([`MailPush`], with the sequence number queued before it, so the socket can
//! tell whether it may deliver it without reading its queue); when no socket here takes it,
//! [`notify_mailbox`] publishes [`Topic::Mailbox`] on the [`crate::realtime::hub::Hub`] (and through Redis
//! to the other instances), so a socket of that device reads its queue. The database stays the
//! only source of truth: a push or hint that is lost delays a delivery, never loses it.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use haven_protocol::frames::Franking;
use haven_protocol::franking::Destination;
use haven_protocol::franking::verify::StampKey;
use haven_ratelimit::Quota;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::accounts::session::Session;
use crate::accounts::store::DeviceStore;
use crate::clock::now_i64;
use crate::db::Store;
use crate::db::error::StoreError;
use crate::error::{AppError, DeviceMismatch};
use crate::ids::Id;
use crate::limits::LimitContext;
use crate::mail::store::{
    Delivery, DeliveryOutcome, DeviceListCheck, MailboxStore, NewEnvelope, QueueLimits,
    QueuedEnvelope, SharedPayload, StoredEnvelope,
};
use crate::mail::store::{DeliveryCommit, PendingWrite};
use crate::moderation::stamp::stamped;
use crate::realtime::ephemeral::{EphemeralHub, EphemeralMessage, MailPush, Push};
use crate::realtime::hub::{DeviceKey, Hub, Topic};
use crate::settings::MailSettings;

/// What the mail service uses of the relay. Implemented by the application state; the service
/// takes this instead of the state, so nothing here depends on the router.
pub trait MailContext: LimitContext + Clone + Send + Sync + 'static {
    /// The store the service reads and writes.
    type Store: Store;
    /// The store.
    fn store(&self) -> &Self::Store;
    /// The `[mail]` settings.
    fn mail_settings(&self) -> &MailSettings;
    /// The wake-up hub.
    fn hub(&self) -> &Hub;
    /// The router of pushes to live sockets on this instance.
    fn ephemeral(&self) -> &EphemeralHub;
    /// Mail was stored for a device with no socket on this instance: the push service's hook
    /// (`crate::push`), which wakes it if it has no socket anywhere. Does nothing by default.
    fn mail_queued_offline(&self, _account: Id, _device: u32) {}
}

/// Length of an unidentified-access key in bytes.
pub const ACCESS_KEY_LEN: usize = 16;
/// Domain prefix of the stored access-key hash (PROTOCOL.md §11.12).
pub const ACCESS_KEY_HASH_LABEL: &[u8] = b"haven/access-key/v1";

/// Errors of the messaging service.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MessagingError {
    /// Malformed or out-of-limit input (400 with the given code).
    #[error("invalid request: {message}")]
    Invalid {
        /// Stable error code.
        code: &'static str,
        /// Human-readable explanation.
        message: String,
    },
    /// An envelope (or header, or shared payload) is over its size limit (413).
    #[error("envelope of {len} bytes exceeds {max}")]
    EnvelopeTooLarge {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The recipient account does not exist (404; sealed sends get [`Self::AccessDenied`]).
    #[error("no such account")]
    UnknownAccount,
    /// A sealed send presented a wrong access key, or the recipient has none, or does not exist
    /// (401, indistinguishable).
    #[error("access denied")]
    AccessDenied,
    /// The device list does not match (409 `mismatched_devices`) or names removed devices (410
    /// `stale_devices`).
    #[error("device list mismatch")]
    Devices {
        /// Whether any listed device was removed (410) rather than only missing/extra (409).
        stale: bool,
        /// The differences per account.
        mismatches: Vec<DeviceMismatch>,
    },
    /// A recipient device's queue is full (507 `mailbox_full`).
    #[error("mailbox full")]
    MailboxFull {
        /// The device number.
        device: u32,
    },
    /// The message id was already used for a device with different bytes (409).
    #[error("message id reused with different content")]
    MessageIdConflict,
    /// Rate limited (429).
    #[error("rate limited")]
    RateLimited(AppError),
    /// A store failure (500, cause logged).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Any other already-formatted HTTP error.
    #[error(transparent)]
    Http(AppError),
}

impl MessagingError {
    fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        Self::Invalid {
            code,
            message: message.into(),
        }
    }
}

impl From<AppError> for MessagingError {
    fn from(err: AppError) -> Self {
        match err {
            AppError::RateLimited { .. } => Self::RateLimited(err),
            other => Self::Http(other),
        }
    }
}

impl From<MessagingError> for AppError {
    fn from(err: MessagingError) -> Self {
        match err {
            MessagingError::Invalid { code, message } => AppError::bad_request(code, message),
            MessagingError::EnvelopeTooLarge { len, max } => AppError::client(
                StatusCode::PAYLOAD_TOO_LARGE,
                "envelope_too_large",
                format!("an envelope of {len} bytes exceeds the limit of {max}"),
            ),
            MessagingError::UnknownAccount => {
                AppError::not_found("account_not_found", "no such account")
            }
            MessagingError::AccessDenied => AppError::unauthorized(
                "invalid_access_key",
                "the unidentified-access key is not valid for this recipient",
            ),
            MessagingError::Devices { stale, mismatches } => AppError::Devices {
                status: if stale {
                    StatusCode::GONE
                } else {
                    StatusCode::CONFLICT
                },
                code: if stale {
                    "stale_devices"
                } else {
                    "mismatched_devices"
                },
                mismatches,
            },
            MessagingError::MailboxFull { device } => AppError::client(
                StatusCode::INSUFFICIENT_STORAGE,
                "mailbox_full",
                format!("the mailbox of device {device} is full; retry later"),
            ),
            MessagingError::MessageIdConflict => AppError::conflict(
                "message_id_conflict",
                "this message id was already used with different content",
            ),
            MessagingError::RateLimited(err) | MessagingError::Http(err) => err,
            MessagingError::Store(err) => err.into(),
        }
    }
}

/// Who is sending.
#[derive(Clone)]
#[non_exhaustive]
pub enum SendAuth {
    /// A logged-in device (bearer token). The envelopes are stored with it as their source.
    Session {
        /// The sender's account.
        account: Id,
        /// The sender's device number.
        device: u32,
        /// The recipient's unidentified-access key, if the sender presented one. Needed for an
        /// ephemeral send and for the device lists of a 409/410 answer, unless the recipient is
        /// the sender's own account (PROTOCOL.md §11.12).
        access_key: Option<Vec<u8>>,
    },
    /// Sealed sender: no login, authorised by the recipient's unidentified-access key as
    /// presented by the sender (checked in constant time). Nothing about the sender is stored.
    AccessKey(Vec<u8>),
}

impl std::fmt::Debug for SendAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Session {
                device, access_key, ..
            } => f
                .debug_struct("Session")
                .field("device", device)
                .field("access_key", &access_key.as_ref().map(|_| "[redacted]"))
                .finish_non_exhaustive(),
            Self::AccessKey(_) => f.write_str("AccessKey([redacted])"),
        }
    }
}

/// The envelope for one recipient device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceEnvelope {
    /// Recipient device number.
    pub device: u32,
    /// Opaque envelope bytes.
    pub content: Vec<u8>,
    /// The sender's franking commitment (PROTOCOL.md §16.3); never on an ephemeral send.
    pub franking_commitment: Option<[u8; 32]>,
}

/// A send to every device of one account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SendRequest {
    /// Client-chosen id, used for every device of this send (idempotency key per device).
    pub message_id: Id,
    /// One envelope per recipient device: exactly the account's devices (minus the sending
    /// device when sending to one's own account).
    pub envelopes: Vec<DeviceEnvelope>,
    /// Ephemeral class (e.g. typing): never stored, only handed to live sockets.
    pub ephemeral: bool,
}

/// What happened to the envelope of one device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeviceDelivery {
    /// Queued with this sequence number (`duplicate` for an idempotent resend).
    Queued {
        /// Device number.
        device: u32,
        /// Server sequence number.
        seq: i64,
        /// Whether it was already queued before this request.
        duplicate: bool,
    },
    /// Ephemeral: accepted and handed on to the device if it is connected (to this instance's
    /// socket, or through Redis to the other instances), else dropped. The answer is the same
    /// either way, so a sender cannot tell whether the device is online.
    Accepted {
        /// Device number.
        device: u32,
    },
}

impl DeviceDelivery {
    /// The device number.
    pub fn device(&self) -> u32 {
        match self {
            Self::Queued { device, .. } | Self::Accepted { device } => *device,
        }
    }
}

/// Result of [`send`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SendReceipt {
    /// One entry per device, ascending device number.
    pub devices: Vec<DeviceDelivery>,
}

/// The per-device headers for one recipient of a multi-recipient send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MultiRecipient {
    /// Recipient account.
    pub account: Id,
    /// The recipient's unidentified-access key as presented by the sender.
    pub access_key: Vec<u8>,
    /// One header per device.
    pub headers: Vec<DeviceEnvelope>,
}

/// A sealed multi-recipient send: the payload is stored once, plus a small header per device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MultiSendRequest {
    /// Client-chosen id, used for every recipient device.
    pub message_id: Id,
    /// The shared payload.
    pub payload: Vec<u8>,
    /// The recipients.
    pub recipients: Vec<MultiRecipient>,
}

/// Result of [`send_multi`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MultiReceipt {
    /// Per recipient account, its devices' results.
    pub recipients: Vec<(Id, Vec<DeviceDelivery>)>,
}

/// Wakes the sockets of a device whose queue got mail (in-process hub). The single place where
/// the messaging service announces new mail, so a cross-instance publisher can hook in here.
pub fn notify_mailbox<C: MailContext>(state: &C, account: Id, device: u32) {
    state.hub().publish(&Topic::Mailbox { account, device });
    state.mail_queued_offline(account, device);
}

/// `SHA-256("haven/access-key/v1" || 0x00 || key)`: what the relay stores of an
/// unidentified-access key.
pub fn access_key_hash(key: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(ACCESS_KEY_HASH_LABEL);
    h.update([0u8]);
    h.update(key);
    h.finalize().into()
}

/// The device number of an authenticated session (its device exists: the session check proved
/// it a moment ago; a vanished device reads as a revoked session).
pub async fn session_device<C: MailContext>(
    state: &C,
    session: &Session,
) -> Result<u32, MessagingError> {
    state
        .store()
        .device(&session.account, &session.device)
        .await?
        .map(|d| d.number)
        .ok_or_else(|| {
            MessagingError::Http(AppError::unauthorized(
                "session_revoked",
                "this session is no longer valid",
            ))
        })
}

/// Sets (`Some`, exactly [`ACCESS_KEY_LEN`] bytes) or clears (`None`) the account's
/// unidentified-access key. Only its hash is stored.
pub async fn set_access_key<C: MailContext>(
    state: &C,
    account: &Id,
    key: Option<&[u8]>,
) -> Result<(), MessagingError> {
    let hash = match key {
        Some(k) if k.len() == ACCESS_KEY_LEN => Some(access_key_hash(k)),
        Some(k) => {
            return Err(MessagingError::invalid(
                "invalid_length",
                format!("access_key must be {ACCESS_KEY_LEN} bytes, got {}", k.len()),
            ));
        }
        None => None,
    };
    if state
        .store()
        .set_access_key_hash(account, hash.as_ref().map(|h| &h[..]))
        .await?
    {
        Ok(())
    } else {
        Err(MessagingError::UnknownAccount)
    }
}

/// Checks a presented access key against the recipient's stored hash in constant time. An
/// unknown account or one without a key fails exactly like a wrong key.
async fn check_access_key<C: MailContext>(
    state: &C,
    account: &Id,
    presented: &[u8],
) -> Result<(), MessagingError> {
    let stored = state.store().access_key_hash(account).await?;
    let presented = access_key_hash(presented);
    // Compare against a dummy when nothing is stored so both paths do the same work.
    let (expected, present) = match stored {
        Some(h) => (h, true),
        None => (vec![0u8; 32], false),
    };
    let equal: bool = presented.ct_eq(expected.as_slice()).into();
    if equal && present {
        Ok(())
    } else {
        Err(MessagingError::AccessDenied)
    }
}

async fn check_sealed_rate<C: MailContext>(
    state: &C,
    recipient: &Id,
) -> Result<(), MessagingError> {
    let key = crate::limits::keyed(state, "sealed:rcpt", recipient);
    let quota = Quota::new(
        state.mail_settings().sealed_sends_per_minute,
        Duration::from_secs(60),
    );
    crate::limits::hit_shared(state, &key, quota).await?;
    Ok(())
}

/// Counts a logged-in stored send from `sender` into `recipient`'s mailboxes against the
/// per-pair quotas (`mail.pair_sends_per_minute`, `mail.pair_sends_per_day`) on the shared
/// limiter; 429 `rate_limited` when over, before anything is stored. The limiter key is a keyed
/// hash of both account ids, so Redis sees neither.
async fn check_pair_rate<C: MailContext>(
    state: &C,
    sender: &Id,
    recipient: &Id,
) -> Result<(), MessagingError> {
    let mut h = Sha256::new();
    h.update(b"haven/send-pair/v1");
    h.update(sender.as_bytes());
    h.update(recipient.as_bytes());
    let digest = h.finalize();
    let pair = Id::from_slice(&digest[..16])
        .map_err(|_| MessagingError::Http(AppError::internal("pair id")))?;
    let mail = state.mail_settings();
    for (prefix, quota) in [
        (
            "send:pair:min",
            Quota::new(mail.pair_sends_per_minute, Duration::from_secs(60)),
        ),
        (
            "send:pair:day",
            Quota::new(mail.pair_sends_per_day, Duration::from_secs(86_400)),
        ),
    ] {
        let key = crate::limits::keyed(state, prefix, &pair);
        crate::limits::hit_shared(state, &key, quota).await?;
    }
    Ok(())
}

/// Compares the listed device numbers with the account's devices. `exclude` is the sending
/// device on a send to one's own account. `Ok(None)` when they match.
async fn compare_devices<C: MailContext>(
    state: &C,
    account: &Id,
    listed: &BTreeSet<u32>,
    exclude: Option<u32>,
) -> Result<Option<(bool, DeviceMismatch)>, MessagingError> {
    let Some((next, numbers)) = state.store().device_numbers(account).await? else {
        return Err(MessagingError::UnknownAccount);
    };
    let check = DeviceListCheck {
        account: *account,
        listed: listed.clone(),
        exclude,
    };
    Ok(check
        .compare(next, &numbers)
        .map(|m| (!m.removed_devices.is_empty(), m)))
}

fn listed_devices(envelopes: &[DeviceEnvelope]) -> Result<BTreeSet<u32>, MessagingError> {
    let mut set = BTreeSet::new();
    for e in envelopes {
        if !set.insert(e.device) {
            return Err(MessagingError::invalid(
                "duplicate_device",
                format!("device {} is listed twice", e.device),
            ));
        }
    }
    Ok(set)
}

fn coarse_now<C: MailContext>(state: &C) -> (i64, i64) {
    let mail = state.mail_settings();
    let now = now_i64();
    let granularity = i64::try_from(mail.received_at_granularity_secs)
        .unwrap_or(1)
        .max(1);
    let received = now - now.rem_euclid(granularity);
    let ttl = i64::try_from(mail.ttl_secs).unwrap_or(i64::MAX);
    (received, now.saturating_add(ttl))
}

fn queue_limits<C: MailContext>(state: &C) -> QueueLimits {
    let mail = state.mail_settings();
    QueueLimits {
        max_messages: mail.max_queue_messages,
        max_bytes: mail.max_queue_bytes,
    }
}

/// What a live socket is handed of a new envelope: message id, bytes, franking commitment.
type PushedEnvelope = (Id, Vec<u8>, Option<[u8; 32]>);

/// Passes every new (not duplicate) envelope of a committed delivery on to its device: handed
/// to the device's socket here if there is one (no database read), else announced by a hint.
fn announce<C: MailContext>(state: &C, stored: &[StoredEnvelope], delivery: Delivery) {
    let Delivery {
        source,
        shared_payload,
        envelopes,
        received_at,
        ..
    } = delivery;
    // Envelopes with a shared payload are read back whole by the socket.
    let mut contents: HashMap<(Id, u32), PushedEnvelope> = if shared_payload.is_none() {
        envelopes
            .into_iter()
            .map(|e| {
                (
                    (e.account, e.device),
                    (e.message_id, e.content, e.franking_commitment),
                )
            })
            .collect()
    } else {
        HashMap::new()
    };
    for s in stored.iter().filter(|s| !s.duplicate) {
        let handed = contents.remove(&(s.account, s.device)).is_some_and(
            |(message_id, content, franking_commitment)| {
                let push = Push::Mail(Arc::new(MailPush {
                    seq: s.seq,
                    prev_seq: s.prev_seq,
                    message_id,
                    source,
                    content,
                    received_at,
                    franking_commitment,
                }));
                state.ephemeral().push(s.account, s.device, &push)
            },
        );
        if !handed {
            notify_mailbox(state, s.account, s.device);
        }
    }
}

/// A send whose checks passed: either already answered (ephemeral) or queued for the next group
/// commit. [`PendingSend::wait`] gives the receipt once the envelopes are stored.
#[must_use = "the send is only acknowledged once `wait` returns"]
pub struct PendingSend<C: MailContext> {
    state: C,
    recipient: Id,
    inner: PendingInner,
}

enum PendingInner {
    Done(SendReceipt),
    Queued {
        pending: PendingWrite<DeliveryCommit>,
        sealed: bool,
        /// Whether a 409/410 may name the recipient's devices.
        entitled: bool,
    },
}

impl<C: MailContext> PendingSend<C> {
    /// Waits for the commit, wakes the recipients' sockets and returns the receipt.
    pub async fn wait(self) -> Result<SendReceipt, MessagingError> {
        match self.inner {
            PendingInner::Done(receipt) => Ok(receipt),
            PendingInner::Queued {
                pending,
                sealed,
                entitled,
            } => {
                let commit = pending.await?;
                let stored = outcome_to_result(commit.outcome, sealed)
                    .map_err(|err| if entitled { err } else { withhold_devices(err) })?;
                announce(&self.state, &stored, commit.delivery);
                Ok(SendReceipt {
                    devices: queued(&stored, &self.recipient),
                })
            }
        }
    }
}

/// A 409/410 for a sender that may not learn the recipient's devices (a logged-in sender
/// without the recipient's access key): the same 409 `mismatched_devices` whatever the
/// difference, naming no device.
fn withhold_devices(err: MessagingError) -> MessagingError {
    match err {
        MessagingError::Devices { .. } => MessagingError::Devices {
            stale: false,
            mismatches: Vec::new(),
        },
        other => other,
    }
}

fn missing_access_key() -> MessagingError {
    MessagingError::Http(AppError::unauthorized(
        "missing_access_key",
        "an ephemeral send or signal to another account needs the recipient's access key",
    ))
}

/// Whether logged-in `sender` may learn about `recipient`'s devices: `recipient` is its own
/// account, or it presented `recipient`'s access key (checked like a sealed send's: a wrong
/// one is 401 `invalid_access_key`). No key: `false`.
pub async fn entitled<C: MailContext>(
    state: &C,
    sender: &Id,
    recipient: &Id,
    access_key: Option<&[u8]>,
) -> Result<bool, MessagingError> {
    if sender == recipient {
        return Ok(true);
    }
    match access_key {
        Some(key) => {
            check_access_key(state, recipient, key).await?;
            Ok(true)
        }
        None => Ok(false),
    }
}

/// Checks a WebSocket `signal` from logged-in `sender` to `recipient` (PROTOCOL.md §11.14):
/// allowed to the own account, else only with the recipient's access key (401
/// `missing_access_key` / `invalid_access_key`).
pub async fn authorize_signal<C: MailContext>(
    state: &C,
    sender: &Id,
    recipient: &Id,
    access_key: Option<&[u8]>,
) -> Result<(), MessagingError> {
    if entitled(state, sender, recipient, access_key).await? {
        Ok(())
    } else {
        Err(missing_access_key())
    }
}

/// Maps what the store did to the send's result. `sealed`: an unknown account is refused like a
/// wrong access key (a sealed sender must not learn which accounts exist).
fn outcome_to_result(
    outcome: DeliveryOutcome,
    sealed: bool,
) -> Result<Vec<StoredEnvelope>, MessagingError> {
    match outcome {
        DeliveryOutcome::Stored(stored) => Ok(stored),
        DeliveryOutcome::Devices(mismatches) => Err(MessagingError::Devices {
            stale: mismatches.iter().any(|m| !m.removed_devices.is_empty()),
            mismatches,
        }),
        DeliveryOutcome::UnknownAccount(_) if sealed => Err(MessagingError::AccessDenied),
        DeliveryOutcome::UnknownAccount(_) => Err(MessagingError::UnknownAccount),
        DeliveryOutcome::QueueFull { device, .. } => Err(MessagingError::MailboxFull { device }),
        DeliveryOutcome::IdConflict { .. } => Err(MessagingError::MessageIdConflict),
        // A device of a delivery without device-list check is gone: the same answer as a
        // checked list naming a removed device (the client refreshes its list and retries).
        DeliveryOutcome::DeviceGone { account, device } => Err(MessagingError::Devices {
            stale: true,
            mismatches: vec![DeviceMismatch {
                account_id: account,
                missing_devices: Vec::new(),
                extra_devices: Vec::new(),
                removed_devices: vec![device],
            }],
        }),
    }
}

fn queued(stored: &[StoredEnvelope], account: &Id) -> Vec<DeviceDelivery> {
    let mut out: Vec<DeviceDelivery> = stored
        .iter()
        .filter(|s| s.account == *account)
        .map(|s| DeviceDelivery::Queued {
            device: s.device,
            seq: s.seq,
            duplicate: s.duplicate,
        })
        .collect();
    out.sort_by_key(DeviceDelivery::device);
    out
}

/// Sends one envelope to every device of `recipient` (see [`SendRequest`]).
///
/// Order of checks (each failure changes nothing): sizes and duplicates (400/413), the
/// sender's authorisation (sealed: access key, 401, then the per-recipient rate limit, 429),
/// the device list (410 `stale_devices`, 409 `mismatched_devices`, 404 for an unknown account
/// on a logged-in send), then queue limits (507) and message-id reuse (409), all-or-nothing.
pub async fn send<C: MailContext>(
    state: &C,
    auth: SendAuth,
    recipient: &Id,
    request: SendRequest,
) -> Result<SendReceipt, MessagingError> {
    queue_send(state, auth, recipient, request)
        .await?
        .wait()
        .await
}

/// [`send`] in two steps: runs every check and queues the envelopes for the next group commit
/// (in call order), returning before the commit. A socket uses it to keep several of its sends
/// in one commit while still storing them in the order they arrived.
pub async fn queue_send<C: MailContext>(
    state: &C,
    auth: SendAuth,
    recipient: &Id,
    request: SendRequest,
) -> Result<PendingSend<C>, MessagingError> {
    let mail = state.mail_settings();
    if request.envelopes.is_empty() {
        return Err(MessagingError::invalid(
            "no_envelopes",
            "a send needs at least one envelope",
        ));
    }
    if request.envelopes.len() > mail.max_recipients_per_send {
        return Err(MessagingError::invalid(
            "too_many_envelopes",
            format!(
                "at most {} envelopes per send",
                mail.max_recipients_per_send
            ),
        ));
    }
    for e in &request.envelopes {
        if e.content.is_empty() {
            return Err(MessagingError::invalid(
                "invalid_length",
                "envelope content must not be empty",
            ));
        }
        if e.content.len() > mail.max_envelope_bytes {
            return Err(MessagingError::EnvelopeTooLarge {
                len: e.content.len(),
                max: mail.max_envelope_bytes,
            });
        }
    }
    let listed = listed_devices(&request.envelopes)?;
    if request.ephemeral
        && request
            .envelopes
            .iter()
            .any(|e| e.franking_commitment.is_some())
    {
        return Err(MessagingError::Invalid {
            code: "ephemeral_franked",
            message: "an ephemeral send carries no franking commitment".into(),
        });
    }
    // `entitled`: the sender may learn about the recipient's devices (the device lists of a
    // 409/410, an ephemeral send): its own account, or it holds the recipient's access key.
    let (source, exclude, entitled) = match &auth {
        SendAuth::Session {
            account,
            device,
            access_key,
        } => {
            let entitled = entitled(state, account, recipient, access_key.as_deref()).await?;
            (
                Some((*account, *device)),
                (account == recipient).then_some(*device),
                entitled,
            )
        }
        SendAuth::AccessKey(key) => {
            check_access_key(state, recipient, key).await?;
            check_sealed_rate(state, recipient).await?;
            (None, None, true)
        }
    };
    if request.ephemeral && !entitled {
        return Err(missing_access_key());
    }
    if let SendAuth::Session { account, .. } = &auth
        && account != recipient
        && !request.ephemeral
    {
        check_pair_rate(state, account, recipient).await?;
    }
    if request.ephemeral {
        // Nothing is stored, so the device list is checked here; a stored send has it checked
        // inside its transaction, under the lock of the recipient devices.
        let mismatch = match compare_devices(state, recipient, &listed, exclude).await {
            // On a sealed send the access key already proved the account exists.
            Err(MessagingError::UnknownAccount) if source.is_none() => {
                return Err(MessagingError::AccessDenied);
            }
            other => other?,
        };
        if let Some((stale, m)) = mismatch {
            return Err(MessagingError::Devices {
                stale,
                mismatches: vec![m],
            });
        }
        let mut devices: Vec<DeviceDelivery> = request
            .envelopes
            .into_iter()
            .map(|e| {
                let message = EphemeralMessage {
                    message_id: request.message_id,
                    source,
                    content: e.content,
                };
                let key = DeviceKey {
                    account: *recipient,
                    device: e.device,
                };
                // Whether it reached a socket is not told (no online oracle).
                let _ = state.hub().send_ephemeral(&key, message);
                DeviceDelivery::Accepted { device: e.device }
            })
            .collect();
        devices.sort_by_key(DeviceDelivery::device);
        return Ok(PendingSend {
            state: state.clone(),
            recipient: *recipient,
            inner: PendingInner::Done(SendReceipt { devices }),
        });
    }
    let (received_at, expires_at) = coarse_now(state);
    let delivery = Delivery {
        source,
        shared_payload: None,
        envelopes: request
            .envelopes
            .into_iter()
            .map(|e| NewEnvelope {
                account: *recipient,
                device: e.device,
                message_id: request.message_id,
                content: e.content,
                franking_commitment: e.franking_commitment,
            })
            .collect(),
        received_at,
        expires_at,
        device_checks: vec![DeviceListCheck {
            account: *recipient,
            listed,
            exclude,
        }],
    };
    let pending = state
        .store()
        .queue_delivery(delivery, queue_limits(state))
        .await?;
    Ok(PendingSend {
        state: state.clone(),
        recipient: *recipient,
        inner: PendingInner::Queued {
            pending,
            sealed: source.is_none(),
            entitled,
        },
    })
}

/// A sealed multi-recipient send: checks every recipient's access key (401 if any is wrong),
/// rate limit and device list (one 409/410 listing the differences of every recipient), then
/// stores the payload once and a header per device, all-or-nothing.
pub async fn send_multi<C: MailContext>(
    state: &C,
    request: MultiSendRequest,
) -> Result<MultiReceipt, MessagingError> {
    let mail = state.mail_settings();
    if request.recipients.is_empty() {
        return Err(MessagingError::invalid(
            "no_envelopes",
            "a send needs at least one recipient",
        ));
    }
    let total: usize = request.recipients.iter().map(|r| r.headers.len()).sum();
    if request.recipients.len() > mail.max_recipients_per_send
        || total > mail.max_recipients_per_send
    {
        return Err(MessagingError::invalid(
            "too_many_envelopes",
            format!(
                "at most {} recipient devices per send",
                mail.max_recipients_per_send
            ),
        ));
    }
    if request.payload.is_empty() {
        return Err(MessagingError::invalid(
            "invalid_length",
            "payload must not be empty",
        ));
    }
    if request.payload.len() > mail.max_envelope_bytes {
        return Err(MessagingError::EnvelopeTooLarge {
            len: request.payload.len(),
            max: mail.max_envelope_bytes,
        });
    }
    let mut accounts = BTreeSet::new();
    let mut listed = Vec::with_capacity(request.recipients.len());
    for r in &request.recipients {
        if !accounts.insert(r.account) {
            return Err(MessagingError::invalid(
                "duplicate_recipient",
                format!("account {} is listed twice", r.account),
            ));
        }
        if r.headers.is_empty() {
            return Err(MessagingError::invalid(
                "no_envelopes",
                "every recipient needs at least one device header",
            ));
        }
        for h in &r.headers {
            if h.content.is_empty() {
                return Err(MessagingError::invalid(
                    "invalid_length",
                    "headers must not be empty",
                ));
            }
            if h.content.len() > mail.max_header_bytes {
                return Err(MessagingError::EnvelopeTooLarge {
                    len: h.content.len(),
                    max: mail.max_header_bytes,
                });
            }
        }
        listed.push(listed_devices(&r.headers)?);
    }
    // Every access key before anything else, so a wrong key reveals nothing about devices.
    for r in &request.recipients {
        check_access_key(state, &r.account, &r.access_key).await?;
    }
    for r in &request.recipients {
        check_sealed_rate(state, &r.account).await?;
    }
    // The device lists are checked inside the transaction (one 409/410 listing every
    // recipient's differences).
    let device_checks = request
        .recipients
        .iter()
        .zip(listed)
        .map(|(r, listed)| DeviceListCheck {
            account: r.account,
            listed,
            exclude: None,
        })
        .collect();
    let digest = Sha256::digest(&request.payload);
    let payload_id = Id::from_slice(&digest[..16])
        .map_err(|_| MessagingError::Http(AppError::internal("payload id")))?;
    let (received_at, expires_at) = coarse_now(state);
    let delivery = Delivery {
        source: None,
        shared_payload: Some(SharedPayload {
            id: payload_id,
            payload: request.payload,
        }),
        envelopes: request
            .recipients
            .iter()
            .flat_map(|r| {
                r.headers.iter().map(|h| NewEnvelope {
                    account: r.account,
                    device: h.device,
                    message_id: request.message_id,
                    content: h.content.clone(),
                    franking_commitment: h.franking_commitment,
                })
            })
            .collect(),
        received_at,
        expires_at,
        device_checks,
    };
    let commit = state
        .store()
        .queue_delivery(delivery, queue_limits(state))
        .await?
        .await?;
    let stored = outcome_to_result(commit.outcome, true)?;
    announce(state, &stored, commit.delivery);
    Ok(MultiReceipt {
        recipients: request
            .recipients
            .iter()
            .map(|r| (r.account, queued(&stored, &r.account)))
            .collect(),
    })
}

/// Reads a device's unexpired envelopes with `seq > after_seq`, in queue order, at most `limit`
/// (clamped to `1..=mail.max_fetch`). Reading does not delete: envelopes stay until acked or
/// expired, so a client that crashes after fetching gets them again.
pub async fn fetch<C: MailContext>(
    state: &C,
    account: &Id,
    device: u32,
    after_seq: i64,
    limit: u32,
) -> Result<Vec<QueuedEnvelope>, MessagingError> {
    let limit = limit.clamp(1, state.mail_settings().max_fetch);
    Ok(state
        .store()
        .fetch_envelopes(account, device, after_seq.max(0), limit, now_i64())
        .await?)
}

/// Deletes the device's envelopes with these message ids. Unknown ids (or ids of another
/// device's queue) are ignored. Returns how many were deleted.
pub async fn ack<C: MailContext>(
    state: &C,
    account: &Id,
    device: u32,
    ids: &[Id],
) -> Result<u64, MessagingError> {
    let max = state.mail_settings().max_ack_ids;
    if ids.len() > max {
        return Err(MessagingError::invalid(
            "too_many_ids",
            format!("at most {max} ids per ack"),
        ));
    }
    Ok(state.store().ack_ids(account, device, ids).await?)
}

/// [`ack`] in two steps: checks and queues the ack for the next group commit (in call order);
/// the [`PendingWrite`] resolves to the number deleted once committed.
pub async fn queue_ack<C: MailContext>(
    state: &C,
    account: &Id,
    device: u32,
    ids: Vec<Id>,
) -> Result<PendingWrite<u64>, MessagingError> {
    let max = state.mail_settings().max_ack_ids;
    if ids.len() > max {
        return Err(MessagingError::invalid(
            "too_many_ids",
            format!("at most {max} ids per ack"),
        ));
    }
    Ok(state.store().queue_ack_ids(account, device, ids).await?)
}

/// Deletes the device's envelopes with `seq <= up_to`. Returns how many were deleted.
pub async fn ack_up_to<C: MailContext>(
    state: &C,
    account: &Id,
    device: u32,
    up_to: i64,
) -> Result<u64, MessagingError> {
    Ok(state.store().ack_up_to(account, device, up_to).await?)
}

/// The franking of an envelope as delivered to `(account, device)` (PROTOCOL.md §16.4): its
/// commitment and the relay's stamp over it, the destination, `seq` and `received_at`. `None`
/// for an envelope sent without a commitment.
#[must_use]
pub fn delivery_franking(
    key: &StampKey,
    commitment: Option<&[u8; 32]>,
    account: &Id,
    device: u32,
    seq: i64,
    received_at: i64,
) -> Option<Franking> {
    let destination = Destination::Device {
        account: *account.as_bytes(),
        device,
    };
    stamped(key, commitment, &destination, seq, received_at)
}

/// Deletes every envelope expired at `now`. Returns how many.
pub async fn reap_once<C: MailContext>(state: &C, now: i64) -> Result<u64, MessagingError> {
    Ok(state.store().purge_expired_mail(now).await?)
}

/// A source of "now" in Unix seconds (tests pass a controllable one).
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// The system clock.
pub fn system_clock() -> Clock {
    Arc::new(now_i64)
}

/// Spawns the expiry reaper: every `mail.reaper_interval_secs` (and once at start) it deletes
/// expired envelopes and orphaned shared payloads, until `stop` turns `true`.
pub fn spawn_reaper<C: MailContext>(
    state: C,
    clock: Clock,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    let every = Duration::from_secs(state.mail_settings().reaper_interval_secs.max(1));
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if *stop.borrow() {
                break;
            }
            tokio::select! {
                _ = ticker.tick() => {
                    match reap_once(&state, clock()).await {
                        Ok(0) => {}
                        Ok(n) => tracing::debug!(deleted = n, "expired envelopes reaped"),
                        Err(err) => tracing::warn!(%err, "reaper failed"),
                    }
                }
                changed = stop.changed() => {
                    if changed.is_err() || *stop.borrow() {
                        break;
                    }
                }
            }
        }
    })
}
