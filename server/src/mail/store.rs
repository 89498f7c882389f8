//! The mailboxes' store: per-device queues of envelopes, shared payloads, acks and the
//! unidentified-access key (PROTOCOL.md §11.12), with their records.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::sync::oneshot;

use crate::db::error::{StoreError, StoreResult};
use haven_protocol::api::error::DeviceMismatch;

use crate::ids::Id;

/// An envelope to queue for one device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewEnvelope {
    /// Recipient account.
    pub account: Id,
    /// Recipient device number.
    pub device: u32,
    /// Client-chosen id (unique per recipient device; resending the same id with the same bytes
    /// is a no-op).
    pub message_id: Id,
    /// The opaque envelope (or, in a multi-recipient send, the per-device header).
    pub content: Vec<u8>,
    /// The sender's franking commitment (PROTOCOL.md §16.3), if it sent one.
    pub franking_commitment: Option<[u8; 32]>,
}

/// A payload shared by every envelope of a multi-recipient send, stored once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SharedPayload {
    /// First 16 bytes of SHA-256(payload).
    pub id: Id,
    /// The payload.
    pub payload: Vec<u8>,
}

/// One send: envelopes for one or more devices, stored all-or-nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// The authenticated sender (account, device number), `None` for sealed sends.
    pub source: Option<(Id, u32)>,
    /// The shared payload of a multi-recipient send.
    pub shared_payload: Option<SharedPayload>,
    /// The envelopes.
    pub envelopes: Vec<NewEnvelope>,
    /// Coarse receive time.
    pub received_at: i64,
    /// Expiry time.
    pub expires_at: i64,
    /// Device lists to check, inside the transaction that stores the delivery (under the lock
    /// of the recipient devices), before anything else: if one differs from the account's
    /// current devices the delivery is refused with [`DeliveryOutcome::Devices`]. Empty: no
    /// check (the envelopes' devices must still exist, else [`DeliveryOutcome::DeviceGone`]).
    pub device_checks: Vec<DeviceListCheck>,
}

/// The device list a sender addressed for one recipient account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceListCheck {
    /// The recipient account.
    pub account: Id,
    /// The device numbers the send has an envelope for.
    pub listed: std::collections::BTreeSet<u32>,
    /// The sending device itself, on a send to one's own account (it needs no envelope).
    pub exclude: Option<u32>,
}

impl DeviceListCheck {
    /// Compares the listed devices with an account's current device numbers and the number its
    /// next device will get. `None` when they match.
    pub fn compare(&self, next: u32, current: &[u32]) -> Option<DeviceMismatch> {
        let current: std::collections::BTreeSet<u32> = current
            .iter()
            .copied()
            .filter(|n| Some(*n) != self.exclude)
            .collect();
        let missing: Vec<u32> = current.difference(&self.listed).copied().collect();
        let mut extra = Vec::new();
        let mut removed = Vec::new();
        for n in self.listed.difference(&current) {
            // A number below `next` that is not current was used by a device that is now gone
            // (the sender's own device, listed on a self-send, is simply extra).
            if *n >= 1 && *n < next && Some(*n) != self.exclude {
                removed.push(*n);
            } else {
                extra.push(*n);
            }
        }
        if missing.is_empty() && extra.is_empty() && removed.is_empty() {
            return None;
        }
        Some(DeviceMismatch {
            account_id: self.account,
            missing_devices: missing,
            extra_devices: extra,
            removed_devices: removed,
        })
    }
}

/// Per-device queue limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueLimits {
    /// Most envelopes queued per device.
    pub max_messages: u64,
    /// Most bytes queued per device (content plus shared payload, counted per envelope).
    pub max_bytes: u64,
}

/// Where one envelope of a delivery ended up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoredEnvelope {
    /// Recipient account.
    pub account: Id,
    /// Recipient device number.
    pub device: u32,
    /// Server sequence number.
    pub seq: i64,
    /// Whether it was already queued (an idempotent resend): nothing new was stored.
    pub duplicate: bool,
    /// For a new envelope: the highest sequence number queued for the device just before it
    /// (`None`: the queue was empty). A socket that has delivered everything up to this number
    /// can deliver the new envelope without reading the queue (see `ws/conn.rs`).
    pub prev_seq: Option<i64>,
}

/// What [`MailboxStore::deliver`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeliveryOutcome {
    /// Every envelope is queued (new or duplicate).
    Stored(Vec<StoredEnvelope>),
    /// A device's queue is full (messages or bytes). Nothing was stored.
    QueueFull {
        /// Account.
        account: Id,
        /// Device number.
        device: u32,
    },
    /// A message id was already used for this device with different bytes. Nothing was stored.
    IdConflict {
        /// Account.
        account: Id,
        /// Device number.
        device: u32,
    },
    /// A checked device list differs from the account's devices (see
    /// [`Delivery::device_checks`]). Nothing was stored.
    Devices(Vec<DeviceMismatch>),
    /// A checked account does not exist. Nothing was stored.
    UnknownAccount(Id),
    /// A recipient device does not exist (any more). Nothing was stored.
    DeviceGone {
        /// Account.
        account: Id,
        /// Device number.
        device: u32,
    },
}

/// A queued envelope as read back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueuedEnvelope {
    /// Server sequence number (increasing in queue order).
    pub seq: i64,
    /// Client-chosen id.
    pub message_id: Id,
    /// The authenticated sender, `None` for sealed sends.
    pub source: Option<(Id, u32)>,
    /// The envelope bytes (or the per-device header of a multi-recipient send).
    pub content: Vec<u8>,
    /// The shared payload of a multi-recipient send.
    pub shared_payload: Option<Vec<u8>>,
    /// Coarse receive time.
    pub received_at: i64,
    /// Expiry time.
    pub expires_at: i64,
    /// The sender's franking commitment (PROTOCOL.md §16.3), if it sent one.
    pub franking_commitment: Option<[u8; 32]>,
}

/// How full a device's queue is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Envelopes queued.
    pub messages: u64,
    /// Bytes queued.
    pub bytes: u64,
}

/// Mailboxes and sealed-sender access keys.
pub trait MailboxStore {
    /// Stores a delivery all-or-nothing, respecting `limits` per device (checked under a lock of
    /// each recipient device, so concurrent sends cannot overshoot). A message id that was
    /// already stored for a device, or stored and acked within its TTL, is a duplicate (same
    /// bytes) or a conflict (other bytes). Returns once the delivery is committed (group commit:
    /// concurrent writes share one transaction, see `store/batch.rs`).
    fn deliver(
        &self,
        delivery: Delivery,
        limits: QueueLimits,
    ) -> impl Future<Output = StoreResult<DeliveryOutcome>> + Send;
    /// Queues a delivery for the next group commit and returns as soon as it is queued (in the
    /// order of the calls); the [`PendingWrite`] resolves like [`Self::deliver`] once committed.
    fn queue_delivery(
        &self,
        delivery: Delivery,
        limits: QueueLimits,
    ) -> impl Future<Output = StoreResult<PendingWrite<DeliveryCommit>>> + Send;
    /// Reads up to `limit` unexpired envelopes of a device with `seq > after_seq`, in order.
    fn fetch_envelopes(
        &self,
        account: &Id,
        device: u32,
        after_seq: i64,
        limit: u32,
        now: i64,
    ) -> impl Future<Output = StoreResult<Vec<QueuedEnvelope>>> + Send;
    /// Deletes the device's envelopes with these message ids (unknown ids are ignored), keeping
    /// a tombstone of each until it would have expired. Returns how many were deleted.
    fn ack_ids(
        &self,
        account: &Id,
        device: u32,
        ids: &[Id],
    ) -> impl Future<Output = StoreResult<u64>> + Send;
    /// Queues [`Self::ack_ids`] for the next group commit; resolves once committed.
    fn queue_ack_ids(
        &self,
        account: &Id,
        device: u32,
        ids: Vec<Id>,
    ) -> impl Future<Output = StoreResult<PendingWrite<u64>>> + Send;
    /// Deletes the device's envelopes with `seq <= up_to` (keeping tombstones like
    /// [`Self::ack_ids`]). Returns how many were deleted.
    fn ack_up_to(
        &self,
        account: &Id,
        device: u32,
        up_to: i64,
    ) -> impl Future<Output = StoreResult<u64>> + Send;
    /// Counts a device's queue.
    fn queue_stats(
        &self,
        account: &Id,
        device: u32,
    ) -> impl Future<Output = StoreResult<QueueStats>> + Send;
    /// Deletes envelopes and ack tombstones with `expires_at <= now` and shared payloads nothing
    /// refers to. Returns how many envelopes were deleted.
    fn purge_expired_mail(&self, now: i64) -> impl Future<Output = StoreResult<u64>> + Send;
    /// Sets (or clears) the hash of the account's unidentified-access key. Returns whether the
    /// account exists.
    fn set_access_key_hash(
        &self,
        account: &Id,
        hash: Option<&[u8]>,
    ) -> impl Future<Output = StoreResult<bool>> + Send;
    /// The hash of the account's unidentified-access key, if the account exists and has one.
    fn access_key_hash(
        &self,
        account: &Id,
    ) -> impl Future<Output = StoreResult<Option<Vec<u8>>>> + Send;
}

/// What became of a queued delivery, with the delivery handed back, so that the caller can
/// pass the stored envelopes on to live sockets without copying them first.
#[derive(Debug)]
pub struct DeliveryCommit {
    /// What the store did.
    pub outcome: DeliveryOutcome,
    /// The delivery as it was queued.
    pub delivery: Delivery,
}

/// A queued mailbox write: resolves to its result once the transaction holding it committed
/// (or failed). Dropping it does not cancel the write.
#[must_use = "the result says whether the write was stored"]
pub struct PendingWrite<T> {
    rx: oneshot::Receiver<StoreResult<T>>,
}

impl<T> PendingWrite<T> {
    /// A write whose result arrives on `rx` (the writer answers on the other end).
    pub(crate) fn new(rx: oneshot::Receiver<StoreResult<T>>) -> Self {
        Self { rx }
    }
}

impl<T> std::fmt::Debug for PendingWrite<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PendingWrite")
    }
}

impl<T> Future for PendingWrite<T> {
    type Output = StoreResult<T>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.rx)
            .poll(cx)
            .map(|r| r.unwrap_or(Err(StoreError::WriterStopped)))
    }
}
