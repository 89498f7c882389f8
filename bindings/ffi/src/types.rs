//! Records and enums that cross the boundary, and the parsing of their string fields.
//!
//! Ids travel as lowercase hex text (32 digits for accounts, groups, messages and diary
//! entries) because every host language has strings; they are parsed back into byte arrays
//! here, before the SDK sees them.

use haven_client::attachments::AttachmentPointer;
use haven_client::messenger as core;

use crate::error::HavenError;

/// Parses a 16-byte id given as 32 hex digits.
pub(crate) fn parse_id(what: &str, text: &str) -> Result<[u8; 16], HavenError> {
    let text = text.trim();
    if text.len() != 32 {
        return Err(HavenError::InvalidInput(format!(
            "{what} must be 32 hex digits, got {} characters",
            text.len()
        )));
    }
    let mut id = [0u8; 16];
    hex::decode_to_slice(text, &mut id)
        .map_err(|_| HavenError::InvalidInput(format!("{what} is not hexadecimal")))?;
    Ok(id)
}

fn hex_ids(ids: &[[u8; 16]]) -> Vec<String> {
    ids.iter().map(hex::encode).collect()
}

/// A conversation: 1:1 with an account, or a group.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Enum)]
pub enum Conversation {
    /// 1:1 with `account_id` (32 hex digits).
    Direct {
        /// The other account.
        account_id: String,
    },
    /// A group, by its id (32 hex digits).
    Group {
        /// The group.
        group_id: String,
    },
}

impl Conversation {
    /// The SDK's conversation.
    pub(crate) fn parse(&self) -> Result<haven_client::Conversation, HavenError> {
        Ok(match self {
            Self::Direct { account_id } => {
                haven_client::Conversation::Direct(parse_id("account id", account_id)?)
            }
            Self::Group { group_id } => {
                haven_client::Conversation::Group(parse_id("group id", group_id)?)
            }
        })
    }
}

impl From<haven_client::Conversation> for Conversation {
    fn from(c: haven_client::Conversation) -> Self {
        match c {
            haven_client::Conversation::Direct(a) => Self::Direct {
                account_id: hex::encode(a),
            },
            haven_client::Conversation::Group(g) => Self::Group {
                group_id: hex::encode(g),
            },
        }
    }
}

/// A contact.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct Contact {
    /// The contact's account id (32 hex digits).
    pub account_id: String,
    /// The username it was added by, if any.
    pub username: Option<String>,
    /// Whether the user blocked it.
    pub blocked: bool,
}

impl From<core::Contact> for Contact {
    fn from(c: core::Contact) -> Self {
        Self {
            account_id: hex::encode(c.account),
            username: c.username,
            blocked: c.blocked,
        }
    }
}

/// A reaction on a message.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct Reaction {
    /// Who reacted (account id).
    pub sender: String,
    /// The emoji.
    pub emoji: String,
}

/// The relay's answer to a report (`Messenger.report_message`, PROTOCOL §16.9).
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct ReportReceipt {
    /// The report's id (32 hex digits); reporting the same message again gives the same id.
    pub report_id: String,
    /// Whether the relay could verify who sent the message (false: the sender's client sent
    /// a tag that does not verify; the content was still verified as delivered).
    pub attributed: bool,
}

/// What a message's attachment is (the key stays inside the SDK; fetch it with
/// `Messenger.save_attachment`).
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct AttachmentInfo {
    /// The blob's id on the relay (hex).
    pub blob_id: String,
    /// Plaintext size in bytes.
    pub size: u64,
    /// MIME type chosen by the sender (may be empty).
    pub content_type: String,
    /// Original file name, if the sender shared it.
    pub file_name: Option<String>,
}

impl AttachmentInfo {
    fn from_pointer(bytes: &[u8]) -> Option<Self> {
        if bytes.is_empty() {
            return None;
        }
        let p = AttachmentPointer::from_bytes(bytes).ok()?;
        Some(Self {
            blob_id: p.blob_id_hex(),
            size: p.size,
            content_type: p.content_type.clone(),
            file_name: p.file_name.clone(),
        })
    }
}

/// A stored message (incoming or outgoing).
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct Message {
    /// The conversation.
    pub conversation: Conversation,
    /// The message id (32 hex digits).
    pub message_id: String,
    /// The sending account.
    pub sender: String,
    /// The sending device number.
    pub sender_device: u32,
    /// Sent by this account (from this or another own device).
    pub outgoing: bool,
    /// The sender's clock at sending, Unix milliseconds.
    pub sent_at_ms: u64,
    /// The text (empty when deleted).
    pub text: String,
    /// The attachment, if any.
    pub attachment: Option<AttachmentInfo>,
    /// Edited after sending.
    pub edited: bool,
    /// Deleted for everyone.
    pub deleted: bool,
    /// Reactions.
    pub reactions: Vec<Reaction>,
    /// Accounts whose device confirmed delivery (outgoing messages).
    pub delivered_to: Vec<String>,
    /// Accounts that read it (outgoing messages).
    pub read_by: Vec<String>,
    /// When it disappears, Unix seconds, if a timer is set.
    pub expires_at: Option<u64>,
}

impl From<core::MessageRecord> for Message {
    fn from(m: core::MessageRecord) -> Self {
        Self {
            conversation: m.conversation().into(),
            message_id: hex::encode(m.message_id),
            sender: hex::encode(m.sender),
            sender_device: m.sender_device,
            outgoing: m.outgoing,
            sent_at_ms: m.sent_at,
            text: m.text.clone(),
            attachment: AttachmentInfo::from_pointer(&m.attachment),
            edited: m.edited,
            deleted: m.deleted,
            reactions: m
                .reactions
                .iter()
                .map(|r| Reaction {
                    sender: hex::encode(r.from),
                    emoji: r.emoji.clone(),
                })
                .collect(),
            delivered_to: hex_ids(&m.delivered_to),
            read_by: hex_ids(&m.read_by),
            expires_at: m.expires_at,
        }
    }
}

/// A safety number with one device of a contact.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct SafetyNumber {
    /// The contact's device number.
    pub device: u32,
    /// 60 digits, the same on both sides.
    pub digits: String,
}

/// A group as this device knows it.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct GroupInfo {
    /// The group id.
    pub group_id: String,
    /// Its name.
    pub name: String,
    /// Its members (account ids).
    pub members: Vec<String>,
    /// The current epoch (a new one starts at each member change).
    pub epoch: u32,
    /// Whether this account is still a member.
    pub active: bool,
    /// Whether this device holds the group's admin key (can add and remove members).
    pub admin: bool,
}

impl From<core::GroupInfo> for GroupInfo {
    fn from(g: core::GroupInfo) -> Self {
        Self {
            group_id: hex::encode(g.id),
            name: g.name.clone(),
            members: hex_ids(&g.members),
            epoch: g.epoch,
            active: g.active,
            admin: g.admin,
        }
    }
}

/// Delivered or read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum ReceiptKind {
    /// The message reached a device of the recipient.
    Delivered,
    /// The recipient displayed it.
    Read,
}

/// When the device sends the delivery receipts it owes (PROTOCOL §13.4.1). Read receipts are
/// sent when the user marks messages read, whatever this says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum ReceiptPolicy {
    /// As soon as a message is processed.
    Immediate,
    /// A random delay, uniform in `min_secs..=max_secs` (at most 3600), after the first
    /// message of a batch; the receipts owed to one account then go out as one.
    Delayed {
        /// Shortest delay (seconds).
        min_secs: u32,
        /// Longest delay (seconds).
        max_secs: u32,
    },
    /// None.
    Off,
}

impl From<haven_client::ReceiptPolicy> for ReceiptPolicy {
    fn from(p: haven_client::ReceiptPolicy) -> Self {
        match p {
            haven_client::ReceiptPolicy::Immediate => Self::Immediate,
            haven_client::ReceiptPolicy::Delayed { min_secs, max_secs } => {
                Self::Delayed { min_secs, max_secs }
            }
            // `Off`, and any mode a later core adds, reads as no receipts.
            _ => Self::Off,
        }
    }
}

impl From<ReceiptPolicy> for haven_client::ReceiptPolicy {
    fn from(p: ReceiptPolicy) -> Self {
        match p {
            ReceiptPolicy::Immediate => Self::Immediate,
            ReceiptPolicy::Delayed { min_secs, max_secs } => Self::Delayed { min_secs, max_secs },
            ReceiptPolicy::Off => Self::Off,
        }
    }
}

/// The connection's state.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Enum)]
pub enum ConnectionState {
    /// Opening the socket.
    Connecting,
    /// Open; queued envelopes follow.
    Connected,
    /// Every envelope queued at opening has been processed.
    CaughtUp,
    /// Closed; the next attempt follows after `retry_in_ms`.
    Disconnected {
        /// Why.
        reason: String,
        /// Delay before the next attempt, milliseconds.
        retry_in_ms: u64,
    },
    /// Stopped for good (session revoked, or replaced by a newer socket of this device).
    Stopped {
        /// Why.
        reason: String,
    },
}

/// Something the application should know about (see `Messenger.start`).
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Enum)]
#[non_exhaustive]
pub enum Event {
    /// A new message (incoming, or sent by another own device).
    NewMessage {
        /// The message.
        message: Message,
    },
    /// Delivery or read receipts for own messages.
    Receipt {
        /// The conversation.
        conversation: Conversation,
        /// Who sent the receipt.
        sender: String,
        /// Delivered or read.
        kind: ReceiptKind,
        /// The messages.
        message_ids: Vec<String>,
    },
    /// A contact started or stopped typing.
    Typing {
        /// The conversation.
        conversation: Conversation,
        /// Who.
        sender: String,
        /// Started (`true`) or stopped.
        started: bool,
    },
    /// A reaction was added or removed.
    Reaction {
        /// The conversation.
        conversation: Conversation,
        /// The message.
        target: String,
        /// Who.
        sender: String,
        /// The emoji.
        emoji: String,
        /// Removed instead of added.
        removed: bool,
    },
    /// A message was edited.
    Edited {
        /// The conversation.
        conversation: Conversation,
        /// The message.
        target: String,
        /// Its new text.
        text: String,
    },
    /// A message was deleted for everyone.
    Deleted {
        /// The conversation.
        conversation: Conversation,
        /// The message.
        target: String,
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
        group_id: String,
        /// Its name.
        name: String,
        /// Its members.
        members: Vec<String>,
    },
    /// This account was removed from a group.
    RemovedFromGroup {
        /// The group.
        group_id: String,
    },
    /// A contact device's identity key changed: compare safety numbers.
    IdentityChanged {
        /// The contact.
        account_id: String,
        /// Its device.
        device: u32,
    },
    /// An account's signed device list changed: devices added (for a verified contact, ask the
    /// user before trusting a new one), removed or re-keyed.
    DevicesChanged {
        /// The account (this one's own included).
        account_id: String,
        /// Devices added.
        added: Vec<u32>,
        /// Devices removed.
        removed: Vec<u32>,
        /// Devices with a new identity key.
        rekeyed: Vec<u32>,
    },
    /// An account's identity key changed: compare the account safety number, then
    /// `Messenger.accept_account_key`. Nothing is exchanged with it until then.
    AccountKeyChanged {
        /// The account.
        account_id: String,
    },
    /// The relay served a device list or named a device that was refused (it is lying);
    /// nothing changed.
    DeviceListRefused {
        /// The account.
        account_id: String,
        /// Why.
        reason: String,
    },
    /// An envelope or group entry was refused; nothing was changed by it.
    Rejected {
        /// Why.
        reason: String,
    },
    /// The connection changed state.
    Connection {
        /// The new state.
        state: ConnectionState,
    },
}

fn receipt_kind(k: haven_client::ReceiptKind) -> ReceiptKind {
    match k {
        haven_client::ReceiptKind::Delivered => ReceiptKind::Delivered,
        haven_client::ReceiptKind::Read => ReceiptKind::Read,
    }
}

impl Event {
    /// The bindings' view of an SDK event; `None` for kinds these bindings do not know yet.
    pub(crate) fn from_core(e: core::Event) -> Option<Self> {
        use core::Event as E;
        Some(match e {
            E::Message(m) => Self::NewMessage { message: m.into() },
            E::Receipt {
                conversation,
                from,
                kind,
                message_ids,
            } => Self::Receipt {
                conversation: conversation.into(),
                sender: hex::encode(from),
                kind: receipt_kind(kind),
                message_ids: hex_ids(&message_ids),
            },
            E::Typing {
                conversation,
                from,
                started,
            } => Self::Typing {
                conversation: conversation.into(),
                sender: hex::encode(from),
                started,
            },
            E::Reaction {
                conversation,
                target,
                from,
                emoji,
                removed,
            } => Self::Reaction {
                conversation: conversation.into(),
                target: hex::encode(target),
                sender: hex::encode(from),
                emoji,
                removed,
            },
            E::Edited {
                conversation,
                target,
                text,
            } => Self::Edited {
                conversation: conversation.into(),
                target: hex::encode(target),
                text,
            },
            E::Deleted {
                conversation,
                target,
            } => Self::Deleted {
                conversation: conversation.into(),
                target: hex::encode(target),
            },
            E::TimerChanged {
                conversation,
                expire_secs,
            } => Self::TimerChanged {
                conversation: conversation.into(),
                expire_secs,
            },
            E::GroupUpdated {
                group_id,
                name,
                members,
            } => Self::GroupUpdated {
                group_id: hex::encode(group_id),
                name,
                members: hex_ids(&members),
            },
            E::RemovedFromGroup { group_id } => Self::RemovedFromGroup {
                group_id: hex::encode(group_id),
            },
            E::IdentityChanged { account, device } => Self::IdentityChanged {
                account_id: hex::encode(account),
                device,
            },
            E::DevicesChanged {
                account,
                added,
                removed,
                rekeyed,
            } => Self::DevicesChanged {
                account_id: hex::encode(account),
                added,
                removed,
                rekeyed,
            },
            E::AccountKeyChanged { account } => Self::AccountKeyChanged {
                account_id: hex::encode(account),
            },
            E::DeviceListRefused { account, reason } => Self::DeviceListRefused {
                account_id: hex::encode(account),
                reason: reason.to_string(),
            },
            E::Rejected { reason } => Self::Rejected {
                reason: reason.to_string(),
            },
            // A refused group change is a refusal the app can show (PROTOCOL §13.3.1).
            E::GroupChangeRefused { group_id, reason } => Self::Rejected {
                reason: format!("group {}: {reason}", hex::encode(group_id)),
            },
            E::Connection(state) => Self::Connection {
                state: match state {
                    core::ConnectionState::Connecting => ConnectionState::Connecting,
                    core::ConnectionState::Connected => ConnectionState::Connected,
                    core::ConnectionState::CaughtUp => ConnectionState::CaughtUp,
                    core::ConnectionState::Disconnected { reason, retry_in } => {
                        ConnectionState::Disconnected {
                            reason,
                            retry_in_ms: u64::try_from(retry_in.as_millis()).unwrap_or(u64::MAX),
                        }
                    }
                    core::ConnectionState::Stopped { reason } => {
                        ConnectionState::Stopped { reason }
                    }
                },
            },
            _ => return None,
        })
    }
}

/// Argon2id cost of a password or passphrase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Record)]
pub struct KdfSettings {
    /// Memory in KiB (at least 19 456).
    pub memory_kib: u32,
    /// Passes (at least 2).
    pub passes: u32,
    /// Lanes (at least 1).
    pub lanes: u32,
}

impl KdfSettings {
    /// The SDK's parameters, checked against its bounds.
    pub(crate) fn to_params(self) -> Result<haven_sdk::KdfParams, HavenError> {
        let params = haven_sdk::KdfParams {
            m_cost_kib: self.memory_kib,
            t_cost: self.passes,
            p_cost: self.lanes,
        };
        params.validate()?;
        Ok(params)
    }
}

/// A diary entry. Times are Unix milliseconds chosen by the app (the relay never sees them).
#[derive(Clone, PartialEq, Eq, uniffi::Record)]
pub struct DiaryEntry {
    /// Title.
    pub title: String,
    /// Body text.
    pub body: String,
    /// Mood label chosen by the app, if any.
    pub mood: Option<String>,
    /// Tags.
    pub tags: Vec<String>,
    /// Creation time, Unix ms.
    pub created_ms: u64,
    /// Last edit time, Unix ms.
    pub updated_ms: u64,
}

// No text in Debug: entries are private.
impl std::fmt::Debug for DiaryEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiaryEntry")
            .field("title_len", &self.title.len())
            .field("body_len", &self.body.len())
            .finish_non_exhaustive()
    }
}

impl DiaryEntry {
    /// Moves the fields into an SDK entry (which wipes them when dropped).
    pub(crate) fn into_core(self) -> haven_sdk::Entry {
        haven_sdk::Entry {
            title: self.title,
            body: self.body,
            mood: self.mood,
            tags: self.tags,
            created_ms: self.created_ms,
            updated_ms: self.updated_ms,
            attachments: Vec::new(),
        }
    }

    pub(crate) fn from_core(e: &haven_sdk::Entry) -> Self {
        Self {
            title: e.title.clone(),
            body: e.body.clone(),
            mood: e.mood.clone(),
            tags: e.tags.clone(),
            created_ms: e.created_ms,
            updated_ms: e.updated_ms,
        }
    }
}

/// An entry with its id.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct DiaryEntryItem {
    /// The entry id (32 hex digits).
    pub id: String,
    /// The entry.
    pub entry: DiaryEntry,
    /// Whether a local edit has not reached the relay yet.
    pub pending: bool,
}

/// A query over the local diary index: every given criterion must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq, uniffi::Record)]
pub struct DiaryQuery {
    /// Only entries with this mood (case-insensitive).
    pub mood: Option<String>,
    /// Only entries with this tag (case-insensitive).
    pub tag: Option<String>,
    /// Only entries created at or after this time (Unix ms).
    pub from_ms: Option<u64>,
    /// Only entries created before this time (Unix ms).
    pub until_ms: Option<u64>,
    /// Full-text prefix search.
    pub text: Option<String>,
}

impl DiaryQuery {
    pub(crate) fn into_core(self) -> haven_sdk::DiaryQuery {
        haven_sdk::DiaryQuery {
            mood: self.mood,
            tag: self.tag,
            from_ms: self.from_ms,
            until_ms: self.until_ms,
            text: self.text,
        }
    }
}

/// One revision of an entry's history.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct DiaryRevision {
    /// Revision number.
    pub revision: u64,
    /// Whether this revision is a deletion.
    pub deleted: bool,
    /// The relay's coarse time of the write, Unix seconds.
    pub created_at: i64,
    /// The entry (`None` for a deletion).
    pub entry: Option<DiaryEntry>,
}

/// What one diary sync did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Record)]
pub struct DiarySyncReport {
    /// Changed items received from the relay.
    pub pulled: u64,
    /// Writes the relay accepted.
    pub pushed: u64,
    /// Writes refused as conflicting (each merged and retried).
    pub conflicts: u64,
    /// Local edits still not acknowledged.
    pub pending: u64,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn ids_are_parsed_strictly() {
        assert_eq!(parse_id("x", &"ab".repeat(16)).unwrap(), [0xab; 16]);
        assert_eq!(parse_id("x", &"AB".repeat(16)).unwrap(), [0xab; 16]);
        assert!(matches!(
            parse_id("x", "abc"),
            Err(HavenError::InvalidInput(_))
        ));
        assert!(matches!(
            parse_id("x", &"zz".repeat(16)),
            Err(HavenError::InvalidInput(_))
        ));
        // Multi-byte characters of the right byte length are refused, not sliced.
        assert!(matches!(
            parse_id("x", &"é".repeat(16)),
            Err(HavenError::InvalidInput(_))
        ));
    }

    #[test]
    fn conversations_round_trip() {
        let c = Conversation::Group {
            group_id: "01".repeat(16),
        };
        assert_eq!(Conversation::from(c.parse().unwrap()), c);
    }
}

/// One of this device's push endpoints on the relay (nothing of its address is given back).
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct PushEndpoint {
    /// Its id (base64url), for [`crate::Messenger::remove_push_endpoint`].
    pub id: String,
    /// `web_push` or `gateway`.
    pub kind: String,
    /// When it was registered, Unix seconds.
    pub created_at: i64,
}

impl From<haven_client::push::PushEndpointBody> for PushEndpoint {
    fn from(e: haven_client::push::PushEndpointBody) -> Self {
        Self {
            id: e.id,
            kind: e.kind,
            created_at: e.created_at,
        }
    }
}

/// What [`crate::Messenger::handle_wake_up`] processed: for a local notification ("3 new
/// messages in 2 conversations"); the relay learns nothing of it.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct WakeSummary {
    /// Envelopes fetched and processed.
    pub envelopes: u32,
    /// New messages from other accounts.
    pub messages: u32,
    /// Their conversations, each once.
    pub conversations: Vec<Conversation>,
    /// Whether everything waiting was fetched within the budget (the rest waits on the relay).
    pub complete: bool,
    /// When (Unix ms) the next delayed delivery receipt is due, if one is still queued.
    pub next_task_due_ms: Option<u64>,
}

impl From<haven_client::WakeSummary> for WakeSummary {
    fn from(s: haven_client::WakeSummary) -> Self {
        Self {
            envelopes: s.envelopes,
            messages: s.messages,
            conversations: s
                .conversations
                .into_iter()
                .map(Conversation::from)
                .collect(),
            complete: s.complete,
            next_task_due_ms: s.next_task_due_ms,
        }
    }
}
