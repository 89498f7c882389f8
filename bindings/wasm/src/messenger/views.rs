//! What the messenger hands the page: plain values serialised to JSON (camelCase, ids as 32
//! lowercase hex digits, `{type, …}` / `{kind, …}` tags), converted from the core's types.

use haven_client_core::messenger::{
    self as core, ConnectionState, Event, GroupInfo, MessageRecord, ReceiptPolicy,
};
use haven_protocol::content::{Conversation, ReceiptKind};
use serde::Serialize;

use crate::device::b64;
use crate::error::{WebResult, invalid};
use crate::frames::parse_id;

/// A conversation as the page names it: `{kind: "direct" | "group", id}`.
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct ConversationView {
    /// `"direct"` (a contact account) or `"group"`.
    pub kind: &'static str,
    /// The contact account or group id (32 hex).
    pub id: String,
}

impl From<&Conversation> for ConversationView {
    fn from(c: &Conversation) -> Self {
        match c {
            Conversation::Direct(id) => Self {
                kind: "direct",
                id: hex::encode(id),
            },
            Conversation::Group(id) => Self {
                kind: "group",
                id: hex::encode(id),
            },
        }
    }
}

/// A conversation from the page's `kind` and `id`.
///
/// # Errors
/// [`ErrorCode::InvalidArgument`] for another kind or a malformed id.
pub fn conversation(kind: &str, id: &str) -> WebResult<Conversation> {
    let id = parse_id(id)?;
    match kind {
        "direct" => Ok(Conversation::Direct(id)),
        "group" => Ok(Conversation::Group(id)),
        _ => Err(invalid("a conversation's kind is \"direct\" or \"group\"")),
    }
}

/// A reaction on a message.
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct ReactionView {
    /// Who reacted (32 hex).
    pub from: String,
    /// The reaction.
    pub emoji: String,
}

/// A stored message.
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct MessageView {
    /// Its conversation.
    pub conversation: ConversationView,
    /// The message id (32 hex), which receipts, reactions, edits and deletes name.
    pub message_id: String,
    /// The sending account (32 hex).
    pub sender: String,
    /// The sending device.
    pub sender_device: u32,
    /// Sent by this account (from this or another own device).
    pub outgoing: bool,
    /// Sender's clock, Unix ms.
    pub sent_at: u64,
    /// The text (empty once deleted).
    pub text: String,
    /// The encoded attachment pointer, base64 (`null` when none).
    pub attachment: Option<String>,
    /// Edited at least once.
    pub edited: bool,
    /// Deleted for everyone.
    pub deleted: bool,
    /// Reactions, one per account.
    pub reactions: Vec<ReactionView>,
    /// Accounts that confirmed delivery (32 hex each).
    pub delivered_to: Vec<String>,
    /// Accounts that read it.
    pub read_by: Vec<String>,
    /// When it disappears, Unix seconds (`null` without a timer).
    pub expires_at: Option<u64>,
}

pub(super) fn hexes(ids: &[[u8; 16]]) -> Vec<String> {
    ids.iter().map(hex::encode).collect()
}

impl From<&MessageRecord> for MessageView {
    fn from(m: &MessageRecord) -> Self {
        Self {
            conversation: (&m.conversation()).into(),
            message_id: hex::encode(m.message_id),
            sender: hex::encode(m.sender),
            sender_device: m.sender_device,
            outgoing: m.outgoing,
            sent_at: m.sent_at,
            text: m.text.clone(),
            attachment: (!m.attachment.is_empty()).then(|| b64(&m.attachment)),
            edited: m.edited,
            deleted: m.deleted,
            reactions: m
                .reactions
                .iter()
                .map(|r| ReactionView {
                    from: hex::encode(r.from),
                    emoji: r.emoji.clone(),
                })
                .collect(),
            delivered_to: hexes(&m.delivered_to),
            read_by: hexes(&m.read_by),
            expires_at: m.expires_at,
        }
    }
}

/// A contact.
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ContactView {
    /// The contact's account (32 hex).
    pub account: String,
    /// The username it was added by, if any.
    pub username: Option<String>,
    /// Whether this account's contact card went out to it (its sends to this account are then
    /// sealed).
    pub card_sent: bool,
    /// Whether the user blocked it.
    pub blocked: bool,
}

impl From<core::Contact> for ContactView {
    fn from(c: core::Contact) -> Self {
        Self {
            account: hex::encode(c.account),
            username: c.username,
            card_sent: c.card_sent,
            blocked: c.blocked,
        }
    }
}

/// A group.
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct GroupView {
    /// The group id (32 hex).
    pub id: String,
    /// Its name.
    pub name: String,
    /// Member accounts (32 hex each).
    pub members: Vec<String>,
    /// Current epoch (1 at creation, +1 per member change).
    pub epoch: u32,
    /// Whether this account is still a member.
    pub active: bool,
    /// Whether this device holds the group's admin key (can add and remove members).
    pub admin: bool,
}

impl From<GroupInfo> for GroupView {
    fn from(g: GroupInfo) -> Self {
        Self {
            id: hex::encode(g.id),
            name: g.name,
            members: hexes(&g.members),
            epoch: g.epoch,
            active: g.active,
            admin: g.admin,
        }
    }
}

/// The safety number with one device of a contact.
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct SafetyNumberView {
    /// The contact's device number.
    pub device: u32,
    /// The 60 digits, the same on both sides.
    pub digits: String,
}

/// Something the page should know about (the core's `Event`), `{type, …}`.
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
#[serde(
    tag = "type",
    rename_all = "snake_case",
    rename_all_fields = "camelCase"
)]
#[non_exhaustive]
pub enum EventView {
    /// A new message (incoming, or sent by another own device).
    Message {
        /// The message.
        message: MessageView,
    },
    /// Delivery or read receipts for own messages.
    Receipt {
        /// The conversation.
        conversation: ConversationView,
        /// Who sent the receipt.
        from: String,
        /// `"delivered"` or `"read"`.
        receipt: &'static str,
        /// The messages.
        message_ids: Vec<String>,
    },
    /// A contact started or stopped typing.
    Typing {
        /// The conversation.
        conversation: ConversationView,
        /// Who.
        from: String,
        /// Started or stopped.
        started: bool,
    },
    /// A reaction was added or removed.
    Reaction {
        /// The conversation.
        conversation: ConversationView,
        /// The message.
        target: String,
        /// Who.
        from: String,
        /// The reaction.
        emoji: String,
        /// Removed instead of added.
        removed: bool,
    },
    /// A message was edited.
    Edited {
        /// The conversation.
        conversation: ConversationView,
        /// The message.
        target: String,
        /// Its new text.
        text: String,
    },
    /// A message was deleted for everyone.
    Deleted {
        /// The conversation.
        conversation: ConversationView,
        /// The message.
        target: String,
    },
    /// The conversation's disappearing timer changed.
    Timer {
        /// The conversation.
        conversation: ConversationView,
        /// Seconds (0 = off).
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
    /// This account was removed from a group; nothing more is received from it.
    RemovedFromGroup {
        /// The group.
        group_id: String,
    },
    /// A contact device's identity key differs from the trusted one: compare the safety
    /// number of the new key and accept it (`safetyNumberWith`, `acceptIdentity`).
    IdentityChanged {
        /// The contact.
        account: String,
        /// Its device.
        device: u32,
    },
    /// An account's signed device list changed: devices added (for a verified contact, ask
    /// before trusting a new one), removed or re-keyed.
    DevicesChanged {
        /// The account.
        account: String,
        /// Devices added.
        added: Vec<u32>,
        /// Devices removed.
        removed: Vec<u32>,
        /// Devices with a new identity key.
        rekeyed: Vec<u32>,
    },
    /// An account's identity key changed: compare the account safety number, then accept it
    /// (`acceptAccountKey`). Nothing is exchanged with it until then.
    AccountKeyChanged {
        /// The account.
        account: String,
    },
    /// The relay served a device list, or named a device, that was refused: it is lying.
    DeviceListRefused {
        /// The account.
        account: String,
        /// Why (for people).
        reason: String,
    },
    /// An envelope or a channel entry was refused; nothing was changed by it.
    Rejected {
        /// Why (for people).
        reason: String,
    },
    /// The connection changed state (the page's own events have this shape too).
    Connection {
        /// `"connecting"`, `"connected"`, `"caught_up"`, `"disconnected"` or `"stopped"`.
        state: &'static str,
        /// Why, for the last two.
        reason: Option<String>,
    },
}

impl From<&Event> for EventView {
    fn from(e: &Event) -> Self {
        match e {
            Event::Message(m) => Self::Message { message: m.into() },
            Event::Receipt {
                conversation,
                from,
                kind,
                message_ids,
            } => Self::Receipt {
                conversation: conversation.into(),
                from: hex::encode(from),
                receipt: match kind {
                    ReceiptKind::Delivered => "delivered",
                    ReceiptKind::Read => "read",
                },
                message_ids: hexes(message_ids),
            },
            Event::Typing {
                conversation,
                from,
                started,
            } => Self::Typing {
                conversation: conversation.into(),
                from: hex::encode(from),
                started: *started,
            },
            Event::Reaction {
                conversation,
                target,
                from,
                emoji,
                removed,
            } => Self::Reaction {
                conversation: conversation.into(),
                target: hex::encode(target),
                from: hex::encode(from),
                emoji: emoji.clone(),
                removed: *removed,
            },
            Event::Edited {
                conversation,
                target,
                text,
            } => Self::Edited {
                conversation: conversation.into(),
                target: hex::encode(target),
                text: text.clone(),
            },
            Event::Deleted {
                conversation,
                target,
            } => Self::Deleted {
                conversation: conversation.into(),
                target: hex::encode(target),
            },
            Event::TimerChanged {
                conversation,
                expire_secs,
            } => Self::Timer {
                conversation: conversation.into(),
                expire_secs: *expire_secs,
            },
            Event::GroupUpdated {
                group_id,
                name,
                members,
            } => Self::GroupUpdated {
                group_id: hex::encode(group_id),
                name: name.clone(),
                members: hexes(members),
            },
            Event::RemovedFromGroup { group_id } => Self::RemovedFromGroup {
                group_id: hex::encode(group_id),
            },
            Event::IdentityChanged { account, device } => Self::IdentityChanged {
                account: hex::encode(account),
                device: *device,
            },
            Event::DevicesChanged {
                account,
                added,
                removed,
                rekeyed,
            } => Self::DevicesChanged {
                account: hex::encode(account),
                added: added.clone(),
                removed: removed.clone(),
                rekeyed: rekeyed.clone(),
            },
            Event::AccountKeyChanged { account } => Self::AccountKeyChanged {
                account: hex::encode(account),
            },
            Event::DeviceListRefused { account, reason } => Self::DeviceListRefused {
                account: hex::encode(account),
                reason: reason.to_string(),
            },
            Event::Rejected { reason } => Self::Rejected {
                reason: reason.to_string(),
            },
            // A refused group change is a refusal the page can show (PROTOCOL §13.3.1).
            Event::GroupChangeRefused { group_id, reason } => Self::Rejected {
                reason: format!("group {}: {reason}", hex::encode(group_id)),
            },
            Event::Connection(state) => connection(state),
            // A kind of event this binding does not know yet: nothing the page could act on.
            other => Self::Rejected {
                reason: format!("unsupported event {other:?}"),
            },
        }
    }
}

fn connection(state: &ConnectionState) -> EventView {
    let (state, reason) = match state {
        ConnectionState::Connecting => ("connecting", None),
        ConnectionState::Connected => ("connected", None),
        ConnectionState::CaughtUp => ("caught_up", None),
        ConnectionState::Disconnected { reason, .. } => ("disconnected", Some(reason.clone())),
        ConnectionState::Stopped { reason } => ("stopped", Some(reason.clone())),
    };
    EventView::Connection { state, reason }
}

/// One content prepared in the device, to deliver to every device of each of `accounts` (no
/// sync copy: invites, sender keys and follow-ups go to these accounts only).
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Delivery {
    /// The prepared content's relay message id (32 hex): `encryptPrepared(messageId, …)`,
    /// then `finishSend(messageId)`.
    pub message_id: String,
    /// The recipient accounts (32 hex each), in order.
    pub accounts: Vec<String>,
}

/// A 1:1 content prepared in the device: deliver it to every device of `account`, then, as a
/// sync copy, to this account's other devices.
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct DirectSend {
    /// The contact (32 hex).
    pub account: String,
    /// The prepared content's relay message id (32 hex).
    pub message_id: String,
    /// An ephemeral send (typing): never stored by the relay.
    pub ephemeral: bool,
}

/// A channel entry to post: `POST body` to `path` with `Authorization: Bearer token` (the
/// epoch's write capability); the answer is `{"seq": n}`.
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ChannelPost {
    /// The channel (32 hex).
    pub channel_id: String,
    /// `/v1/channels/{id}/entries`.
    pub path: String,
    /// The write capability (base64url), the bearer token of this request only.
    pub token: String,
    /// The JSON body `{"entry": "…"}`.
    pub body: String,
}

/// A content for a group: this device's sender key first when the members do not have it yet
/// (deliver it to each member account), then the sealed entry to post.
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct GroupSend {
    /// The group (32 hex).
    pub group_id: String,
    /// This device's sender key for the epoch, when it was just made: deliver before posting.
    pub sender_key: Option<Delivery>,
    /// The entry.
    pub post: ChannelPost,
}

/// A user action whose content the page delivers; then `actionDone(actionId, ok)` applies it
/// locally (or takes a text back out when the delivery failed).
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Action {
    /// The handle for `actionDone`.
    pub action_id: String,
    /// A text's message id (32 hex), which receipts, reactions, edits and deletes name.
    pub content_id: Option<String>,
    /// For a 1:1 conversation.
    pub direct: Option<DirectSend>,
    /// For a group.
    pub group: Option<GroupSend>,
}

/// A member change: post the group update first, then finish it with the relay's answer
/// (`addMemberPosted` / `removeMemberPosted`).
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct MemberChange {
    /// The handle of the change.
    pub change_id: String,
    /// The group update to post (and the sender key before it, if any).
    pub update: GroupSend,
}

/// A group's new epoch or member, to tell: deliver the invite, then this device's sender key,
/// to each account (after this account's contact card to each contact that has not had it).
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct GroupInvites {
    /// The group (32 hex).
    pub group_id: String,
    /// The invite.
    pub invite: Delivery,
    /// This device's sender key for the epoch.
    pub sender_key: Delivery,
    /// The group's [`EventView::GroupUpdated`], for the page.
    pub event: EventView,
    /// At creation, the group's admin key for this account's other devices: deliver it after
    /// the invite.
    pub admin_key: Option<Delivery>,
}

/// What a received envelope or channel entries did.
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Received {
    /// `"accepted"` (opened; its content may still be refused: a `rejected` event),
    /// `"duplicate"` (processed before) or `"rejected"` (refused by the device): ack the
    /// envelope. `"need_device_list"`: do not ack; fetch the device list of `account`
    /// (`acceptDeviceList`) and receive the envelope again with `listFresh`.
    pub status: &'static str,
    /// With `"need_device_list"`: the sender account whose list to fetch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// For the page, in order.
    pub events: Vec<EventView>,
    /// Groups joined or moved to a new epoch: send their `subscribeFrames` on an open socket.
    pub subscribe: Vec<String>,
    /// Follow-ups were queued: run those due now (`followUps`) and schedule the next
    /// (`nextTaskDueMs`).
    pub tasks_added: bool,
}

/// A page of channel entries applied.
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ChannelPage {
    /// What its entries did.
    #[serde(flatten)]
    pub received: Received,
    /// The next page to `GET` (same bearer token), `null` at the end.
    pub next: Option<String>,
}

/// A channel to read over REST: `GET path` with `Authorization: Bearer token`, then
/// `receiveChannelPage(channelId, answer)`.
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ChannelRead {
    /// The group (32 hex).
    pub group_id: String,
    /// The epoch.
    pub epoch: u32,
    /// The channel (32 hex).
    pub channel_id: String,
    /// The first page after the epoch's cursor.
    pub path: String,
    /// The read capability (base64url).
    pub token: String,
}

/// The receipt policy (PROTOCOL §13.4.1) as the page sees it:
/// `{mode: "immediate" | "delayed" | "off", minSecs, maxSecs}` (the seconds only with
/// `"delayed"`).
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ReceiptPolicyView {
    /// `"immediate"`, `"delayed"` or `"off"`.
    pub mode: &'static str,
    /// Shortest delay (seconds), with `"delayed"`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_secs: Option<u32>,
    /// Longest delay (seconds), with `"delayed"`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_secs: Option<u32>,
}

impl ReceiptPolicyView {
    /// The page's view of `policy`.
    #[must_use]
    pub fn of(policy: ReceiptPolicy) -> Self {
        match policy {
            ReceiptPolicy::Immediate => Self::mode("immediate"),
            ReceiptPolicy::Delayed { min_secs, max_secs } => Self {
                mode: "delayed",
                min_secs: Some(min_secs),
                max_secs: Some(max_secs),
            },
            // `Off`, and any mode a later core adds, reads as no receipts.
            _ => Self::mode("off"),
        }
    }

    fn mode(mode: &'static str) -> Self {
        Self {
            mode,
            min_secs: None,
            max_secs: None,
        }
    }
}

/// The policy a page names: `mode` with, for `"delayed"`, both delays in seconds.
///
/// # Errors
/// `invalid_argument` for an unknown mode or missing delays; the core's limits
/// ([`ReceiptPolicy::check`]) are checked when it is set.
pub fn receipt_policy(
    mode: &str,
    min_secs: Option<u32>,
    max_secs: Option<u32>,
) -> WebResult<ReceiptPolicy> {
    match (mode, min_secs, max_secs) {
        ("immediate", _, _) => Ok(ReceiptPolicy::Immediate),
        ("off", _, _) => Ok(ReceiptPolicy::Off),
        ("delayed", Some(min_secs), Some(max_secs)) => {
            Ok(ReceiptPolicy::Delayed { min_secs, max_secs })
        }
        ("delayed", _, _) => Err(invalid(
            "a delayed receipt policy needs minSecs and maxSecs",
        )),
        _ => Err(invalid(
            "receipt policy mode must be \"immediate\", \"delayed\" or \"off\"",
        )),
    }
}

/// What a push wake-up processed (PROTOCOL §13.4.2), for a local notification:
/// `{envelopes, messages, conversations, complete, nextTaskDueMs}`.
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct WakeSummaryView {
    /// Envelopes processed.
    pub envelopes: u32,
    /// New messages from other accounts.
    pub messages: u32,
    /// Their conversations, each once.
    pub conversations: Vec<ConversationView>,
    /// Whether everything waiting was fetched within the budget.
    pub complete: bool,
    /// When (ms since the epoch) the next delayed follow-up is due, if one is queued.
    pub next_task_due_ms: Option<u64>,
}

impl From<&core::WakeSummary> for WakeSummaryView {
    fn from(s: &core::WakeSummary) -> Self {
        Self {
            envelopes: s.envelopes,
            messages: s.messages,
            conversations: s.conversations.iter().map(Into::into).collect(),
            complete: s.complete,
            next_task_due_ms: s.next_task_due_ms,
        }
    }
}
