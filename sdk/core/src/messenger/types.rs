//! The messenger's public values: records the store keeps (contacts, messages), the events an
//! application receives, and what applying one content produced ([`Applied`]).

use std::time::Duration;

use haven_protocol::content::{ContentError, Conversation, ReceiptKind};
use haven_sdk::groups::{GroupChangeError, GroupError};
use serde::{Deserialize, Serialize};

use super::records::{hex16, hex16_vec};
use crate::device::{DeviceError, DirectoryNotice, ListRefusal, RejectReason};
use crate::store::ClientStoreError;

/// Errors of the messenger's state operations.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] ClientStoreError),
    /// A stored record does not decode (corruption, or a newer layout).
    #[error("stored {what} malformed")]
    Corrupt {
        /// Which record: "contact", "message", "group", "record".
        what: &'static str,
    },
    /// Content could not be encoded (a limit was exceeded).
    #[error(transparent)]
    Content(#[from] ContentError),
    /// Bad input from the application (unknown group, empty text, not a member, …).
    #[error("{0}")]
    Invalid(String),
    /// This device's group sending session refused (its chain is exhausted, or its record is
    /// corrupt).
    #[error("group session: {0}")]
    Group(#[from] GroupError),
    /// Sealing a group channel entry failed.
    #[error("group entry encryption failed")]
    EntrySealing,
    /// A device step failed (storing the access key a contact card brought).
    #[error(transparent)]
    Device(#[from] DeviceError),
    /// A message cannot be reported (§16.9).
    #[error(transparent)]
    Report(#[from] crate::device::ReportError),
}

pub(super) fn invalid(msg: impl Into<String>) -> StateError {
    StateError::Invalid(msg.into())
}

/// The connection's state, as reported in [`Event::Connection`] by the driver that holds the
/// socket.
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
    /// A change of a group's membership (an invite, a change posted to its channel, a copy of
    /// its admin key) was refused: not signed by the group's admin, not the next epoch, a
    /// replay. Nothing was changed by it.
    GroupChangeRefused {
        /// The group.
        group_id: [u8; 16],
        /// Why.
        reason: GroupChangeRefusal,
    },
    /// A contact device's identity key differs from the trusted one: compare safety numbers
    /// and accept the new key (`haven_client::Messenger::accept_identity` natively).
    IdentityChanged {
        /// The contact.
        account: [u8; 16],
        /// Its device.
        device: u32,
    },
    /// An account's signed device list changed: devices added (a contact linked a new device;
    /// for a contact the user verified, ask before trusting it), removed or re-keyed.
    DevicesChanged {
        /// The account (this one's own included).
        account: [u8; 16],
        /// Devices added.
        added: Vec<u32>,
        /// Devices removed.
        removed: Vec<u32>,
        /// Devices with a new identity key.
        rekeyed: Vec<u32>,
    },
    /// An account's identity key changed: nothing is sent to or accepted from it until the
    /// user compares the new safety number and accepts the key
    /// (`haven_client::Messenger::accept_account_key` natively).
    AccountKeyChanged {
        /// The account.
        account: [u8; 16],
    },
    /// The relay served a device list or named a device that was refused (an invalid, rolled
    /// back or forked list, a device no signed list names): it is lying. Nothing changed.
    DeviceListRefused {
        /// The account.
        account: [u8; 16],
        /// Why.
        reason: ListRefusal,
    },
    /// An envelope or a group entry was refused; nothing was changed by it.
    Rejected {
        /// Why.
        reason: RejectReason,
    },
    /// The connection changed state.
    Connection(ConnectionState),
}

impl From<DirectoryNotice> for Event {
    fn from(notice: DirectoryNotice) -> Self {
        match notice {
            DirectoryNotice::Changed(u) => Self::DevicesChanged {
                account: u.account,
                added: u.added,
                removed: u.removed,
                rekeyed: u.rekeyed,
            },
            DirectoryNotice::AccountKeyChanged { account } => Self::AccountKeyChanged { account },
            DirectoryNotice::Refused { account, reason } => {
                Self::DeviceListRefused { account, reason }
            }
        }
    }
}

/// Why a group change was refused ([`Event::GroupChangeRefused`], PROTOCOL §13.3.1).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GroupChangeRefusal {
    /// Malformed, or its signature does not verify under the admin key it names.
    #[error("group change does not verify: {0}")]
    Invalid(GroupChangeError),
    /// It names another group than the one it came for.
    #[error("group change for another group")]
    WrongGroup,
    /// Signed by (or naming) another key than the group's pinned admin key.
    #[error("group change not signed by the group's admin key")]
    NotAdmin,
    /// Sent by an account other than the group's admin account.
    #[error("group change sent by an account that is not the group's admin")]
    NotFromAdmin,
    /// An epoch other than the next one (ahead by more than one).
    #[error("group change for epoch {got}, the group is at {current}: only the next is accepted")]
    EpochGap {
        /// The group's epoch on this device.
        current: u32,
        /// The change's.
        got: u32,
    },
    /// An older epoch's change (a replay).
    #[error("group change for old epoch {got}, the group is at {current}")]
    Stale {
        /// The group's epoch on this device.
        current: u32,
        /// The change's.
        got: u32,
    },
    /// Another change for the current epoch than the one accepted.
    #[error("a different group change for the current epoch {0}")]
    Conflict(u32),
    /// The invite's group key is not the one the change commits to.
    #[error("the invite's group key does not match its change")]
    KeyMismatch,
    /// The invite's change does not list this account.
    #[error("group invite that does not list this account")]
    NotListed,
    /// A group stored before signed changes: its membership can no longer change.
    #[error("group made before signed changes: re-create it to change its members")]
    LegacyGroup,
    /// An admin key for a group this device does not know.
    #[error("admin key for an unknown group")]
    UnknownGroup,
}

/// A contact (stored as JSON, PROTOCOL §13.6).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contact {
    /// The contact's account id.
    #[serde(with = "hex16")]
    pub account: [u8; 16],
    /// The username it was added by, if any.
    pub username: Option<String>,
    /// Whether this account's contact card (access key) was sent to it.
    pub card_sent: bool,
    /// Blocked by the user: nothing it sends is shown or stored (1:1 or in groups), and nothing
    /// is sent to it 1:1 (PROTOCOL §13.6). Absent in records from before blocking: not blocked.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub blocked: bool,
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

/// A stored message (JSON, PROTOCOL §13.6).
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
    /// Whether this device holds the group's admin key (can add and remove members).
    pub admin: bool,
}

/// What applying one content (or a batch of channel entries) produced: events for the
/// application (to emit once the store transaction committed) and the follow-ups the driver
/// owes.
#[derive(Debug, Clone, Default)]
pub struct Applied {
    /// For the application, in order.
    pub events: Vec<Event>,
    /// Groups for which a sender key arrived: retry their entries kept while it was missing
    /// ([`retry_pending`](super::retry_pending)).
    pub retry_groups: Vec<[u8; 16]>,
    /// Groups joined or moved to a new epoch: subscribe to their channels.
    pub subscribe: Vec<[u8; 16]>,
    /// Follow-up tasks were queued: run them now rather than at the next catch-up.
    pub tasks_added: bool,
}

impl Applied {
    /// Only `events`.
    #[must_use]
    pub fn events(events: Vec<Event>) -> Self {
        Self {
            events,
            ..Self::default()
        }
    }

    /// One [`Event::Rejected`].
    #[must_use]
    pub fn rejected(reason: RejectReason) -> Self {
        Self::events(vec![Event::Rejected { reason }])
    }

    /// A content refused by §13 ([`RejectReason::Malformed`]).
    pub(super) fn malformed(why: impl std::fmt::Display) -> Self {
        Self::rejected(RejectReason::Malformed(why.to_string()))
    }

    /// What an envelope the device refused yields: [`Event::Rejected`], preceded by
    /// [`Event::IdentityChanged`] when the sender's identity key changed.
    #[must_use]
    pub fn envelope_rejected(reason: RejectReason) -> Self {
        let mut events = Vec::with_capacity(2);
        if let RejectReason::IdentityChanged { account, device } = &reason
            && let Ok(account) = parse_id(account)
        {
            events.push(Event::IdentityChanged {
                account,
                device: *device,
            });
        }
        events.push(Event::Rejected { reason });
        Self::events(events)
    }

    /// Adds `other`'s results after this one's.
    pub fn extend(&mut self, other: Applied) {
        self.events.extend(other.events);
        self.retry_groups.extend(other.retry_groups);
        self.subscribe.extend(other.subscribe);
        self.tasks_added |= other.tasks_added;
    }
}

/// An account or group id from its 32 hex digits (surrounding white space ignored).
///
/// # Errors
/// [`StateError::Invalid`] for anything else.
pub fn parse_id(text: &str) -> Result<[u8; 16], StateError> {
    hex::decode(text.trim())
        .ok()
        .and_then(|b| <[u8; 16]>::try_from(b).ok())
        .ok_or_else(|| invalid("an account or group id is 32 hex digits"))
}
