//! Durable follow-ups (PROTOCOL §13.4): network work a received content makes necessary
//! (distributing this device's sender key, a delivery receipt), recorded in the same store
//! transaction as the content's effects and retried by the driver until it succeeds.

use haven_protocol::content::{Body, Content, Conversation, ReceiptKind};
use serde::{Deserialize, Serialize};

use super::groups::group;
use super::outgoing::sender_key;
use super::records::{TASKS, hex16, put_json, random};
use super::types::StateError;
use crate::store::{Backend, EncryptedStore};

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

/// A task waiting in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedTask {
    key: Vec<u8>,
    task: Task,
}

impl QueuedTask {
    /// The work.
    #[must_use]
    pub fn task(&self) -> &Task {
        &self.task
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

/// Queues `task`.
pub(super) fn add_task<B: Backend, R: rand_core::CryptoRng + ?Sized>(
    store: &EncryptedStore<B>,
    task: &Task,
    rng: &mut R,
) -> Result<(), StateError> {
    put_json(store, TASKS, &random::<16, R>(rng), task)
}

/// The queued tasks. A record that does not decode is deleted (it can never run).
///
/// # Errors
/// Store errors.
pub fn queued_tasks<B: Backend>(store: &EncryptedStore<B>) -> Result<Vec<QueuedTask>, StateError> {
    let mut out = Vec::new();
    for (key, value) in store.entries(TASKS)? {
        match serde_json::from_slice::<Task>(&value) {
            Ok(task) => out.push(QueuedTask { key, task }),
            Err(_) => {
                store.delete(TASKS, &key)?;
            }
        }
    }
    Ok(out)
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

/// What `task` sends now, or `None` when it no longer needs to (a sender key for an epoch
/// that is not the group's current one any more, or a group this account left): then it is
/// done. Creates this device's group sending session if needed.
///
/// # Errors
/// Store errors.
pub fn follow_up<B: Backend, R: rand_core::CryptoRng + ?Sized>(
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
        } => Some(DirectSend {
            to: *account,
            content: Content {
                sent_at: now_ms,
                conversation: Conversation::Direct(*account),
                body: Body::Receipt {
                    kind: ReceiptKind::Delivered,
                    message_ids: vec![*message_id],
                },
            },
        }),
    })
}
