//! What each user action sends and what it changes locally (PROTOCOL §13.1–§13.3).
//!
//! A 1:1 or group action is an [`Outgoing`]: the content to send and the local change, which
//! the driver applies with [`Outgoing::sent`] once the content went out (or takes back with
//! [`Outgoing::failed`]). A text is stored *before* it is sent, because a receipt can come back
//! before the send call returns and must find it. Group actions that need the relay in between
//! (a channel for a new epoch) are split at that point.

use haven_protocol::content::{Body, Content, Conversation, ReceiptKind};
use haven_protocol::franking::{Destination, FrankingKey};
use haven_sdk::franking::frank;
use haven_sdk::pad;
use haven_sdk::store::DeviceAddress;
use haven_sdk::store::IdentityStore as _;
use haven_sdk::store::sender_keys::SenderKeyStore;
use zeroize::Zeroizing;

use super::groups::{
    Channel, GroupState, active_group, distribution_id, own_distribution, save_group, seal_entry,
};
use super::messages::{
    apply_reaction, expires_at, put_message, remove_message, set_timer, update_message,
};
use super::records::random;
use super::types::{MessageRecord, StateError, invalid};
use crate::store::{Backend, EncryptedStore};

/// A content to send and the local change that goes with it.
#[must_use = "send the content, then call `sent` (or `failed`)"]
pub struct Outgoing {
    content: Content,
    change: Change,
}

/// The local side of an action.
enum Change {
    None,
    /// The text was stored before sending: taken back out if the send fails.
    Stored {
        message_id: [u8; 16],
    },
    Reaction {
        from: [u8; 16],
        target: [u8; 16],
        emoji: String,
        remove: bool,
    },
    Edit {
        target: [u8; 16],
        text: String,
    },
    Delete {
        target: [u8; 16],
    },
    Timer(u32),
}

impl std::fmt::Debug for Outgoing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outgoing")
            .field("content", &self.content)
            .finish_non_exhaustive()
    }
}

impl Outgoing {
    fn new(content: Content, change: Change) -> Self {
        Self { content, change }
    }

    /// What to send: to every device of the contact and, as a sync copy, this account's other
    /// devices (1:1), or sealed to the group's channel
    /// ([`group_entry`]).
    #[must_use]
    pub fn content(&self) -> &Content {
        &self.content
    }

    /// The content went out: applies the action locally (this account's reaction, the edited
    /// or deleted message, the conversation's new timer).
    ///
    /// # Errors
    /// Store errors.
    pub fn sent<B: Backend>(self, store: &EncryptedStore<B>) -> Result<(), StateError> {
        let conversation = self.content.conversation;
        match self.change {
            Change::None | Change::Stored { .. } => {}
            Change::Reaction {
                from,
                target,
                emoji,
                remove,
            } => {
                update_message(store, &conversation, &target, |m| {
                    apply_reaction(m, from, &emoji, remove);
                })?;
            }
            Change::Edit { target, text } => {
                update_message(store, &conversation, &target, |m| {
                    m.text = text;
                    m.edited = true;
                })?;
            }
            Change::Delete { target } => {
                update_message(store, &conversation, &target, |m| {
                    m.text.clear();
                    m.attachment.clear();
                    m.deleted = true;
                })?;
            }
            Change::Timer(secs) => set_timer(store, &conversation, secs)?,
        }
        Ok(())
    }

    /// The content did not go out: takes back what was stored before sending (a text).
    ///
    /// # Errors
    /// Store errors.
    pub fn failed<B: Backend>(self, store: &EncryptedStore<B>) -> Result<(), StateError> {
        if let Change::Stored { message_id } = self.change {
            remove_message(store, &self.content.conversation, &message_id)?;
        }
        Ok(())
    }
}

/// A message from this device (`me`) with `text` and an encoded attachment pointer (either may
/// be empty, not both), carrying the conversation's timer; stored as outgoing before it is
/// sent. Returns its random id.
///
/// # Errors
/// [`StateError::Invalid`] for an empty message, [`StateError::Content`] beyond a limit
/// (checked before anything is stored); store errors.
pub fn message<B: Backend, R: rand_core::CryptoRng + ?Sized>(
    store: &EncryptedStore<B>,
    me: &DeviceAddress,
    conversation: Conversation,
    text: &str,
    attachment: Vec<u8>,
    now_ms: u64,
    rng: &mut R,
) -> Result<([u8; 16], Outgoing), StateError> {
    if text.is_empty() && attachment.is_empty() {
        return Err(invalid("empty message"));
    }
    if let Conversation::Direct(account) = &conversation
        && super::contacts::is_blocked(store, account)?
    {
        return Err(invalid("this contact is blocked"));
    }
    let message_id = random(rng);
    let expire_secs = super::messages::timer(store, &conversation)?;
    let content = Content {
        sent_at: now_ms,
        conversation,
        body: Body::Text {
            message_id,
            expire_secs,
            text: text.to_owned(),
            attachment: attachment.clone(),
        },
    };
    // Validate before anything is stored or sent.
    content.to_bytes()?;
    let record = MessageRecord {
        conversation_kind: conversation.tag(),
        conversation_id: *conversation.id(),
        message_id,
        sender: me.account_id,
        sender_device: me.device_id,
        outgoing: true,
        sent_at: now_ms,
        text: text.to_owned(),
        attachment,
        edited: false,
        deleted: false,
        reactions: Vec::new(),
        delivered_to: Vec::new(),
        read_by: Vec::new(),
        expires_at: expires_at(expire_secs, now_ms),
    };
    put_message(store, &record)?;
    Ok((
        message_id,
        Outgoing::new(content, Change::Stored { message_id }),
    ))
}

/// A read receipt for messages of the conversation; `None` for no messages.
#[must_use]
pub fn read_receipt(
    conversation: Conversation,
    message_ids: &[[u8; 16]],
    now_ms: u64,
) -> Option<Outgoing> {
    (!message_ids.is_empty()).then(|| {
        Outgoing::new(
            Content {
                sent_at: now_ms,
                conversation,
                body: Body::Receipt {
                    kind: ReceiptKind::Read,
                    message_ids: message_ids.to_vec(),
                },
            },
            Change::None,
        )
    })
}

/// A typing indicator (sent ephemeral, to the contact only).
///
/// # Errors
/// [`StateError::Invalid`] for a group (its channel stores entries).
pub fn typing(
    conversation: Conversation,
    started: bool,
    now_ms: u64,
) -> Result<Outgoing, StateError> {
    if !matches!(conversation, Conversation::Direct(_)) {
        return Err(invalid("typing indicators are for 1:1 conversations"));
    }
    Ok(Outgoing::new(
        Content {
            sent_at: now_ms,
            conversation,
            body: Body::Typing(started),
        },
        Change::None,
    ))
}

/// This account's (`own`) reaction to a message, or its removal.
///
/// # Errors
/// [`StateError::Content`] for an empty or too long reaction.
pub fn reaction(
    own: &[u8; 16],
    conversation: Conversation,
    target: [u8; 16],
    emoji: &str,
    remove: bool,
    now_ms: u64,
) -> Result<Outgoing, StateError> {
    let content = Content {
        sent_at: now_ms,
        conversation,
        body: Body::Reaction {
            target,
            emoji: emoji.to_owned(),
            remove,
        },
    };
    content.to_bytes()?;
    Ok(Outgoing::new(
        content,
        Change::Reaction {
            from: *own,
            target,
            emoji: emoji.to_owned(),
            remove,
        },
    ))
}

/// New text for one of this account's messages.
///
/// # Errors
/// [`StateError::Invalid`] when the message is unknown, not this account's or deleted;
/// [`StateError::Content`] for a too long text.
pub fn edit<B: Backend>(
    store: &EncryptedStore<B>,
    conversation: Conversation,
    target: [u8; 16],
    text: &str,
    now_ms: u64,
) -> Result<Outgoing, StateError> {
    check_own_message(store, &conversation, &target)?;
    let content = Content {
        sent_at: now_ms,
        conversation,
        body: Body::Edit {
            target,
            text: text.to_owned(),
        },
    };
    content.to_bytes()?;
    Ok(Outgoing::new(
        content,
        Change::Edit {
            target,
            text: text.to_owned(),
        },
    ))
}

/// Deletes one of this account's messages for everyone.
///
/// # Errors
/// As [`edit`].
pub fn delete<B: Backend>(
    store: &EncryptedStore<B>,
    conversation: Conversation,
    target: [u8; 16],
    now_ms: u64,
) -> Result<Outgoing, StateError> {
    check_own_message(store, &conversation, &target)?;
    Ok(Outgoing::new(
        Content {
            sent_at: now_ms,
            conversation,
            body: Body::Delete { target },
        },
        Change::Delete { target },
    ))
}

/// Sets the conversation's disappearing timer (0 = off) for both sides.
pub fn timer(conversation: Conversation, expire_secs: u32, now_ms: u64) -> Outgoing {
    Outgoing::new(
        Content {
            sent_at: now_ms,
            conversation,
            body: Body::Timer(expire_secs),
        },
        Change::Timer(expire_secs),
    )
}

fn check_own_message<B: Backend>(
    store: &EncryptedStore<B>,
    conversation: &Conversation,
    target: &[u8; 16],
) -> Result<(), StateError> {
    match super::messages::message(store, conversation, target)? {
        Some(m) if m.outgoing && !m.deleted => Ok(()),
        Some(_) => Err(invalid("only one's own, undeleted messages can be changed")),
        None => Err(invalid("unknown message")),
    }
}

/// A new group named `name` of `own` and `members` at epoch 1 over `channel` (the driver made
/// it on the relay), with a random id, group key and admin key (this account is the group's
/// admin) and its first signed change; stored. Invite every member ([`group_invite`], `after`
/// 0), send the admin key to this account's other devices ([`admin_key`]), then distribute
/// this device's [`sender_key`].
///
/// # Errors
/// [`StateError::Content`] for a too long name or too many members; store errors.
pub fn create_group<B: Backend, R: rand_core::CryptoRng + ?Sized>(
    store: &EncryptedStore<B>,
    own: &[u8; 16],
    name: &str,
    members: &[[u8; 16]],
    channel: &Channel,
    rng: &mut R,
) -> Result<GroupState, StateError> {
    let mut all = vec![*own];
    for m in members {
        if !all.contains(m) {
            all.push(*m);
        }
    }
    let state = GroupState::create(random(rng), name.to_owned(), all, *own, channel, rng)?;
    // Validates the encoding's limits.
    group_invite(&state, 0, 0).to_bytes()?;
    save_group(store, &state)?;
    Ok(state)
}

/// The invite to `state`'s current epoch, reading from channel position `after` (sent 1:1 to
/// each member account, own included).
#[must_use]
pub fn group_invite(state: &GroupState, after: u64, now_ms: u64) -> Content {
    Content {
        sent_at: now_ms,
        conversation: Conversation::Group(*state.id()),
        body: Body::GroupInvite(state.invite(after)),
    }
}

/// The group's admin key for this account's other devices (sent 1:1 to this account only,
/// after the invite); `None` when this device does not hold it.
#[must_use]
pub fn admin_key(state: &GroupState, now_ms: u64) -> Option<Content> {
    let seed = state.admin_seed()?;
    Some(Content {
        sent_at: now_ms,
        conversation: Conversation::Group(*state.id()),
        body: Body::GroupAdminKey { seed: *seed },
    })
}

/// This device's sender key for the group epoch as a content (sent 1:1 to every member
/// account), creating its sending session first if needed.
///
/// # Errors
/// Store errors.
pub fn sender_key<B: Backend, R: rand_core::CryptoRng + ?Sized>(
    store: &mut EncryptedStore<B>,
    group: &[u8; 16],
    epoch: u32,
    now_ms: u64,
    rng: &mut R,
) -> Result<Content, StateError> {
    let distribution = own_distribution(store, group, epoch, rng)?;
    Ok(Content {
        sent_at: now_ms,
        conversation: Conversation::Group(*group),
        body: Body::SenderKey {
            epoch,
            distribution: distribution.to_vec(),
        },
    })
}

/// A sealed channel entry and, when franked, the commitment to append beside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupEntry {
    /// The sealed entry (§13.3).
    pub entry: Vec<u8>,
    /// The franking commitment `c` (§16.3), sent with the append; `None` when unfranked.
    pub commitment: Option<[u8; 32]>,
}

/// `content` as a channel entry of `state`'s current epoch from this device (`me`): franked
/// for the channel when the relay offers a franking key (`franking_key`, §16.3: the opening
/// replaces the content, with the destination `0x02 || channel id || 0`), padded, encrypted
/// with this device's sender key (the driver distributes it first when
/// [`has_own_sender_session`](super::has_own_sender_session) says there is none) and sealed
/// under the group key. Post it to the epoch's channel with its commitment.
///
/// # Errors
/// [`StateError::Invalid`] without a sending session, for content beyond the padding or
/// franking limit, or a franking key that is not a valid X25519 key; [`StateError::Content`],
/// [`StateError::Group`], store errors.
pub fn group_entry<B: Backend, R: rand_core::CryptoRng + ?Sized>(
    store: &mut EncryptedStore<B>,
    me: &DeviceAddress,
    state: &GroupState,
    content: &Content,
    franking_key: Option<&FrankingKey>,
    rng: &mut R,
) -> Result<GroupEntry, StateError> {
    let bytes = Zeroizing::new(content.to_bytes()?);
    let (plaintext, commitment) = match franking_key {
        None => (bytes, None),
        Some(key) => {
            let identity = store
                .identity_key_pair()
                .map_err(|e| invalid(format!("no identity key to frank with: {e}")))?;
            let destination = Destination::Channel {
                channel_id: *state.current().channel_id(),
            };
            let franked = frank(rng, &identity, key, &destination, &bytes)
                .map_err(|e| invalid(e.to_string()))?;
            (franked.plaintext, Some(franked.commitment))
        }
    };
    let padded = Zeroizing::new(pad(&plaintext).map_err(|e| invalid(e.to_string()))?);
    let dist = distribution_id(state.id(), state.current().number());
    let mut session = store
        .load_own_sender_session(&dist)?
        .ok_or_else(|| invalid("no sending session"))?;
    let message = session.encrypt(&padded)?;
    store.store_own_sender_session(&session)?;
    let entry = seal_entry(state.id(), state.current(), me, &message, rng)?;
    Ok(GroupEntry { entry, commitment })
}

/// A change of members of an active group, signed with its admin key: the state with the new
/// member list and the prepared next epoch (not stored yet), and the signed change to post to
/// the current channel first.
#[must_use = "post the update, create a channel, start the epoch, then store the state"]
pub struct MemberChange {
    /// The group with its new member list; [`GroupState::start_epoch`] starts the signed epoch
    /// over the channel the driver creates.
    pub state: GroupState,
    /// The group change (PROTOCOL §13.1 kind `0x14`), for the current channel.
    pub update: Content,
}

impl std::fmt::Debug for MemberChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemberChange")
            .field("update", &self.update)
            .finish_non_exhaustive()
    }
}

/// Adds `account` to the group (PROTOCOL §13.3 "Add"): the next epoch's change, signed. Post
/// the update, create a channel, [`GroupState::start_epoch`], store the state, then invite
/// every member (the new one included) and send them this device's sender key. The new member
/// reads the new epoch only, not the history.
///
/// # Errors
/// [`StateError::Invalid`] for an unknown or left group, an existing member, a device without
/// the group's admin key, a legacy group or used-up epochs; [`StateError::Content`] for a full
/// group; store errors.
pub fn add_member<B: Backend, R: rand_core::CryptoRng + ?Sized>(
    store: &EncryptedStore<B>,
    group: &[u8; 16],
    account: &[u8; 16],
    now_ms: u64,
    rng: &mut R,
) -> Result<MemberChange, StateError> {
    let mut state = active_group(store, group)?;
    if state.members.contains(account) {
        return Err(invalid("already a member"));
    }
    let mut members = state.members.clone();
    members.push(*account);
    let change = state.prepare_change(members, rng)?;
    member_change(change, state, now_ms)
}

/// Removes `account` from the group (PROTOCOL §13.3 "Remove"): the next epoch's change,
/// signed. Post the update to the current channel (the removed member learns it there), create
/// a channel, [`GroupState::start_epoch`], store the state, then invite the remaining members
/// and send them this device's sender key for the new epoch.
///
/// # Errors
/// [`StateError::Invalid`] for an unknown or left group, a non-member or this account, a
/// device without the group's admin key, a legacy group or used-up epochs; store errors.
pub fn remove_member<B: Backend, R: rand_core::CryptoRng + ?Sized>(
    store: &EncryptedStore<B>,
    own: &[u8; 16],
    group: &[u8; 16],
    account: &[u8; 16],
    now_ms: u64,
    rng: &mut R,
) -> Result<MemberChange, StateError> {
    let mut state = active_group(store, group)?;
    if !state.members.contains(account) || account == own {
        return Err(invalid("not a member (or this account)"));
    }
    let members: Vec<[u8; 16]> = state
        .members
        .iter()
        .filter(|m| *m != account)
        .copied()
        .collect();
    let change = state.prepare_change(members, rng)?;
    member_change(change, state, now_ms)
}

fn member_change(
    change: Vec<u8>,
    state: GroupState,
    now_ms: u64,
) -> Result<MemberChange, StateError> {
    let update = Content {
        sent_at: now_ms,
        conversation: Conversation::Group(*state.id()),
        body: Body::GroupChange { change },
    };
    update.to_bytes()?;
    Ok(MemberChange { state, update })
}
