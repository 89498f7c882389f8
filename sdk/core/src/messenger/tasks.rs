//! Durable follow-ups (PROTOCOL §13.4): network work a received content makes necessary
//! (distributing this device's sender key, a delivery receipt), recorded in the same store
//! transaction as the content's effects and retried by the driver until it succeeds.
//!
//! Delivery receipts follow the [`ReceiptPolicy`] (§13.4.1): by default each is due at a
//! random time after its message arrived and the receipts owed to one account that are due
//! together go out as one receipt content, so a relay watching when sealed messages arrive and
//! when their recipient sends cannot pair a message with its automatic answer by timing alone,
//! nor count the messages from the receipts (the statistical disclosure attack on sealed
//! sender, Martiny et al., NDSS 2021).

use haven_protocol::content::{Body, Content, Conversation, MAX_RECEIPT_IDS, ReceiptKind};
use serde::{Deserialize, Serialize};

use super::groups::group;
use super::outgoing::sender_key;
use super::records::{RECEIPTS, TASKS, get_json, hex16, put_json, random};
use super::types::{StateError, invalid};
use crate::store::{Backend, EncryptedStore};

/// The longest delay [`ReceiptPolicy::Delayed`] accepts (seconds): one hour.
pub const MAX_RECEIPT_DELAY_SECS: u32 = 3600;

/// When this device sends the delivery receipts it owes (a messenger setting, kept in the
/// store). Read receipts are sent when the user marks messages read, whatever the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ReceiptPolicy {
    /// As soon as the message is processed, one receipt per message (unless several are
    /// processed before the tasks run).
    Immediate,
    /// A receipt is due a random time, uniform in `[min_secs, max_secs]`, after the first
    /// message of its batch; messages from the same account that arrive before it is due join
    /// the batch (and go out with it). At most [`MAX_RECEIPT_DELAY_SECS`].
    Delayed {
        /// Shortest delay (seconds).
        min_secs: u32,
        /// Longest delay (seconds), at least `min_secs`.
        max_secs: u32,
    },
    /// No delivery receipts.
    Off,
}

impl ReceiptPolicy {
    /// The default: delayed, uniform in 5 to 60 seconds (PROTOCOL §13.4.1 says why).
    pub const DEFAULT: Self = Self::Delayed {
        min_secs: 5,
        max_secs: 60,
    };

    /// Checks the limits.
    ///
    /// # Errors
    /// [`StateError::Invalid`] when `min_secs > max_secs` or `max_secs` is over
    /// [`MAX_RECEIPT_DELAY_SECS`].
    pub fn check(&self) -> Result<(), StateError> {
        match *self {
            Self::Delayed { min_secs, max_secs } if min_secs > max_secs => Err(invalid(
                "the shortest receipt delay is longer than the longest",
            )),
            Self::Delayed { max_secs, .. } if max_secs > MAX_RECEIPT_DELAY_SECS => Err(invalid(
                format!("a receipt delay is at most {MAX_RECEIPT_DELAY_SECS} seconds"),
            )),
            _ => Ok(()),
        }
    }
}

impl Default for ReceiptPolicy {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Key of the policy in [`RECEIPTS`].
const POLICY_KEY: &[u8] = b"policy";

/// Key of the due time of the batch of receipts owed to `account` in [`RECEIPTS`].
fn batch_key(account: &[u8; 16]) -> Vec<u8> {
    let mut k = b"batch:".to_vec();
    k.extend_from_slice(account);
    k
}

/// The device's receipt policy ([`ReceiptPolicy::DEFAULT`] until one is set).
///
/// # Errors
/// Store errors, [`StateError::Corrupt`].
pub fn receipt_policy<B: Backend>(store: &EncryptedStore<B>) -> Result<ReceiptPolicy, StateError> {
    Ok(get_json(store, RECEIPTS, POLICY_KEY, "receipt policy")?.unwrap_or_default())
}

/// Sets the receipt policy. Receipts already owed follow it when they run: all due at once
/// under [`ReceiptPolicy::Immediate`], dropped under [`ReceiptPolicy::Off`], at their drawn
/// time under [`ReceiptPolicy::Delayed`].
///
/// # Errors
/// [`ReceiptPolicy::check`]; store errors.
pub fn set_receipt_policy<B: Backend>(
    store: &EncryptedStore<B>,
    policy: ReceiptPolicy,
) -> Result<(), StateError> {
    policy.check()?;
    put_json(store, RECEIPTS, POLICY_KEY, &policy)
}

/// One follow-up (stored as JSON under a random key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "task")]
#[non_exhaustive]
pub enum Task {
    /// Send this device's sender key for a group epoch to every device of `account`.
    SenderKey {
        /// The group.
        #[serde(with = "hex16")]
        group: [u8; 16],
        /// Its epoch.
        epoch: u32,
        /// The member account.
        #[serde(with = "hex16")]
        account: [u8; 16],
    },
    /// Send a delivery receipt.
    Delivered {
        /// The message's sender.
        #[serde(with = "hex16")]
        account: [u8; 16],
        /// The message.
        #[serde(with = "hex16")]
        message_id: [u8; 16],
    },
}

/// A task as stored: the task's fields, and `due_ms` when it must not run before then (a
/// record without it, as every record written before delayed receipts, is due at once).
#[derive(Serialize, Deserialize)]
struct StoredTask {
    #[serde(flatten)]
    task: Task,
    #[serde(default, skip_serializing_if = "is_zero")]
    due_ms: u64,
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's `skip_serializing_if` passes a reference
fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// A task waiting in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedTask {
    key: Vec<u8>,
    task: Task,
    due_ms: u64,
}

impl QueuedTask {
    /// The work.
    #[must_use]
    pub fn task(&self) -> &Task {
        &self.task
    }

    /// When it may run (Unix ms; 0: at once).
    #[must_use]
    pub fn due_ms(&self) -> u64 {
        self.due_ms
    }
}

/// What one send settles: one task, or the delivery receipts owed to one account that are
/// due (at most [`MAX_RECEIPT_IDS`]), which go out as one receipt content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FollowUp {
    tasks: Vec<QueuedTask>,
}

impl FollowUp {
    /// The tasks it settles.
    #[must_use]
    pub fn tasks(&self) -> &[QueuedTask] {
        &self.tasks
    }
}

/// A content to send 1:1 to every device of `to` (no copy to this account's other devices
/// unless `to` is this account).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectSend {
    /// The recipient account.
    pub to: [u8; 16],
    /// What to send.
    pub content: Content,
}

/// Queues `task`, due at once.
pub(super) fn add_task<B: Backend, R: rand_core::CryptoRng + ?Sized>(
    store: &EncryptedStore<B>,
    task: &Task,
    rng: &mut R,
) -> Result<(), StateError> {
    add_task_due(store, task, 0, rng)
}

fn add_task_due<B: Backend, R: rand_core::CryptoRng + ?Sized>(
    store: &EncryptedStore<B>,
    task: &Task,
    due_ms: u64,
    rng: &mut R,
) -> Result<(), StateError> {
    let stored = StoredTask {
        task: task.clone(),
        due_ms,
    };
    put_json(store, TASKS, &random::<16, R>(rng), &stored)
}

/// Queues the delivery receipt of `message_id` from `account`, received at `now_ms`, as the
/// policy says: due at once, in the account's open batch (or a new batch due a random delay
/// from now), or not at all. Returns whether a task was queued.
pub(super) fn queue_delivered<B: Backend, R: rand_core::CryptoRng + ?Sized>(
    store: &EncryptedStore<B>,
    account: &[u8; 16],
    message_id: &[u8; 16],
    now_ms: u64,
    rng: &mut R,
) -> Result<bool, StateError> {
    let due_ms = match receipt_policy(store)? {
        ReceiptPolicy::Off => return Ok(false),
        ReceiptPolicy::Immediate => 0,
        ReceiptPolicy::Delayed { min_secs, max_secs } => {
            let key = batch_key(account);
            let open = store
                .get(RECEIPTS, &key)?
                .and_then(|v| <[u8; 8]>::try_from(v.as_slice()).ok())
                .map(u64::from_be_bytes)
                .filter(|due| *due > now_ms);
            match open {
                Some(due) => due,
                None => {
                    let due = now_ms.saturating_add(random_delay_ms(min_secs, max_secs, rng));
                    store.put(RECEIPTS, &key, &due.to_be_bytes())?;
                    due
                }
            }
        }
    };
    let task = Task::Delivered {
        account: *account,
        message_id: *message_id,
    };
    add_task_due(store, &task, due_ms, rng)?;
    Ok(true)
}

/// A delay uniform in `[min_secs, max_secs]` seconds, in milliseconds (the modulo's bias is
/// below 2⁻⁴² for the spans allowed).
fn random_delay_ms<R: rand_core::CryptoRng + ?Sized>(
    min_secs: u32,
    max_secs: u32,
    rng: &mut R,
) -> u64 {
    let min = u64::from(min_secs) * 1000;
    let span = u64::from(max_secs.saturating_sub(min_secs)) * 1000 + 1;
    min + u64::from_be_bytes(random::<8, R>(rng)) % span
}

/// The queued tasks. A record that does not decode is deleted (it can never run).
///
/// # Errors
/// Store errors.
pub fn queued_tasks<B: Backend>(store: &EncryptedStore<B>) -> Result<Vec<QueuedTask>, StateError> {
    let mut out = Vec::new();
    for (key, value) in store.entries(TASKS)? {
        match serde_json::from_slice::<StoredTask>(&value) {
            Ok(StoredTask { task, due_ms }) => out.push(QueuedTask { key, task, due_ms }),
            Err(_) => {
                store.delete(TASKS, &key)?;
            }
        }
    }
    Ok(out)
}

/// Whether `task` may run at `now_ms` under `policy` (receipts are all due under
/// [`ReceiptPolicy::Immediate`], and under [`ReceiptPolicy::Off`], which drops them).
fn is_due(task: &QueuedTask, policy: ReceiptPolicy, now_ms: u64) -> bool {
    match task.task {
        Task::Delivered { .. } if !matches!(policy, ReceiptPolicy::Delayed { .. }) => true,
        _ => task.due_ms <= now_ms,
    }
}

/// The follow-ups due at `now_ms`, each settled by one send: every task but a delivery
/// receipt alone; the due delivery receipts owed to one account together, in chunks of at
/// most [`MAX_RECEIPT_IDS`], in the order their messages were due.
///
/// # Errors
/// Store errors.
pub fn due_follow_ups<B: Backend>(
    store: &EncryptedStore<B>,
    now_ms: u64,
) -> Result<Vec<FollowUp>, StateError> {
    let policy = receipt_policy(store)?;
    let mut out = Vec::new();
    let mut receipts: Vec<([u8; 16], Vec<QueuedTask>)> = Vec::new();
    for queued in queued_tasks(store)? {
        if !is_due(&queued, policy, now_ms) {
            continue;
        }
        match queued.task {
            Task::Delivered { account, .. } => {
                match receipts.iter_mut().find(|(a, _)| *a == account) {
                    Some((_, list)) => list.push(queued),
                    None => receipts.push((account, vec![queued])),
                }
            }
            _ => out.push(FollowUp {
                tasks: vec![queued],
            }),
        }
    }
    for (_, mut list) in receipts {
        list.sort_by_key(|t| t.due_ms);
        for chunk in list.chunks(MAX_RECEIPT_IDS) {
            out.push(FollowUp {
                tasks: chunk.to_vec(),
            });
        }
    }
    Ok(out)
}

/// The earliest time after `now_ms` a queued task becomes due (Unix ms), for a driver's
/// timer; `None` when nothing waits for a later time (tasks already due run at the next
/// catch-up when their send failed).
///
/// # Errors
/// Store errors.
pub fn next_due<B: Backend>(
    store: &EncryptedStore<B>,
    now_ms: u64,
) -> Result<Option<u64>, StateError> {
    let policy = receipt_policy(store)?;
    Ok(queued_tasks(store)?
        .iter()
        .filter(|t| !is_due(t, policy, now_ms))
        .map(|t| t.due_ms)
        .min())
}

/// Removes a task: done, or dropped for good (an account that no longer exists, an identity
/// change the user has to confirm).
///
/// # Errors
/// Store errors.
pub fn task_done<B: Backend>(
    store: &EncryptedStore<B>,
    task: &QueuedTask,
) -> Result<(), StateError> {
    store.delete(TASKS, &task.key)?;
    Ok(())
}

/// Removes every task of a follow-up (sent, or dropped for good).
///
/// # Errors
/// Store errors.
pub fn follow_up_done<B: Backend>(
    store: &EncryptedStore<B>,
    follow_up: &FollowUp,
) -> Result<(), StateError> {
    for task in &follow_up.tasks {
        task_done(store, task)?;
    }
    Ok(())
}

/// What `follow_up` sends now, or `None` when it no longer needs to (a sender key for an
/// epoch that is not the group's current one any more, or a group this account left;
/// receipts under [`ReceiptPolicy::Off`]): then it is done. Creates this device's group
/// sending session if needed.
///
/// # Errors
/// Store errors.
pub fn follow_up<B: Backend, R: rand_core::CryptoRng + ?Sized>(
    store: &mut EncryptedStore<B>,
    follow_up: &FollowUp,
    now_ms: u64,
    rng: &mut R,
) -> Result<Option<DirectSend>, StateError> {
    let mut receipt_to = None;
    let mut message_ids: Vec<[u8; 16]> = Vec::new();
    for queued in &follow_up.tasks {
        match &queued.task {
            Task::SenderKey { .. } => return task_send(store, &queued.task, now_ms, rng),
            Task::Delivered {
                account,
                message_id,
            } => {
                receipt_to = Some(*account);
                if !message_ids.contains(message_id) {
                    message_ids.push(*message_id);
                }
            }
        }
    }
    let Some(account) = receipt_to else {
        return Ok(None);
    };
    if receipt_policy(store)? == ReceiptPolicy::Off {
        return Ok(None);
    }
    Ok(Some(delivered(account, message_ids, now_ms)))
}

/// The delivery receipt of `message_ids` to `account`.
fn delivered(account: [u8; 16], message_ids: Vec<[u8; 16]>, now_ms: u64) -> DirectSend {
    DirectSend {
        to: account,
        content: Content {
            sent_at: now_ms,
            conversation: Conversation::Direct(account),
            body: Body::Receipt {
                kind: ReceiptKind::Delivered,
                message_ids,
            },
        },
    }
}

/// What one task sends now (see [`follow_up`]).
pub(super) fn task_send<B: Backend, R: rand_core::CryptoRng + ?Sized>(
    store: &mut EncryptedStore<B>,
    task: &Task,
    now_ms: u64,
    rng: &mut R,
) -> Result<Option<DirectSend>, StateError> {
    Ok(match task {
        Task::SenderKey {
            group: id,
            epoch,
            account,
        } => match group(store, id)? {
            Some(state) if state.active() && state.current().number() == *epoch => {
                Some(DirectSend {
                    to: *account,
                    content: sender_key(store, id, *epoch, now_ms, rng)?,
                })
            }
            _ => None,
        },
        Task::Delivered {
            account,
            message_id,
        } => Some(delivered(*account, vec![*message_id], now_ms)),
    })
}
