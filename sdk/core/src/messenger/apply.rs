//! What a received content does (PROTOCOL §13.2–§13.4): the store changes it makes and the
//! events it yields, for a 1:1 envelope's plaintext and for group channel entries.
//!
//! The functions run inside the caller's store transaction (for an envelope: the one that also
//! saves the ratchet session and the seen marker) or open one per channel entry, so a content's
//! effects, its follow-up tasks and the position that marks it processed commit together.
//! Events are the caller's to emit once that transaction committed.

use haven_protocol::content::{Body, Content, Conversation, ReceiptKind};
use haven_protocol::franking::Destination;
use haven_sdk::groups::GroupError;
use haven_sdk::store::DeviceAddress;
use haven_sdk::store::sender_keys::{SenderKeyName, group_decrypt};
use haven_sdk::unpad;
use zeroize::Zeroizing;

use super::channels::ChannelItem;
use super::contacts::card_received;
use super::groups::{
    GroupState, MAX_PENDING_PER_GROUP, Verdict, accept_invite, change_refused, check_change,
    distribution_id, group, has_sender_key, open_entry, parse_pending_key, pending_count,
    pending_key, receive_admin_key, receive_sender_key, save_group,
};
use super::messages::{
    apply_reaction, expires_at, has_message, put_message, set_timer, update_message,
};
use super::records::{GROUP_PENDING, GROUP_PENDING_FRANKING};
use super::reports::keep_material;
use super::tasks::{Task, add_task};
use super::types::{Applied, Event, GroupChangeRefusal, MessageRecord, StateError};
use crate::device::franking::{Unwrapped, open_delivered, stored_key};
use crate::device::state::{set_contact_access_key, set_own_access_key};
use crate::device::{DeliveredFranking, RejectReason, ReportMaterial};
use crate::store::{Backend, ClientStoreError, EncryptedStore};

/// Applies the plaintext of a 1:1 envelope `sender` sealed to this device (`me`), received at
/// `now_ms`. Run it inside the transaction that stores the envelope's session update and seen
/// marker (as the `apply` of
/// [`LocalDevice::open_envelope`](crate::device::LocalDevice::open_envelope)); a refused
/// content is an [`Event::Rejected`] and changes nothing. `ephemeral`: it came as an ephemeral
/// send (only typing indicators may). The access key of a contact card goes to the device's
/// settings ([`crate::device::state`]). `franking` is the report material the device kept of a
/// franked envelope (§16.5): stored with a text received from another account (§13.6), so
/// the user can report it.
///
/// # Errors
/// Store errors (the transaction should then roll back).
#[allow(clippy::too_many_arguments)] // one envelope's content and its circumstances
pub fn apply_direct<B: Backend, R: rand_core::CryptoRng + ?Sized>(
    store: &mut EncryptedStore<B>,
    me: &DeviceAddress,
    sender: &DeviceAddress,
    plaintext: &[u8],
    franking: Option<&ReportMaterial>,
    ephemeral: bool,
    now_ms: u64,
    rng: &mut R,
) -> Result<Applied, StateError> {
    let own = me.account_id;
    let content = match Content::from_bytes(plaintext) {
        Ok(c) => c,
        Err(e) => return Ok(Applied::malformed(e)),
    };
    let from_self = sender.account_id == own;
    if from_self && sender.device_id == me.device_id {
        return Ok(Applied::malformed(
            "envelope claims to come from this device",
        ));
    }
    // A blocked account's contents are dropped unseen: no event, no record, no receipt.
    if !from_self && super::contacts::is_blocked(store, &sender.account_id)? {
        return Ok(Applied::default());
    }
    // Ephemeral delivery is only for typing indicators.
    if ephemeral != matches!(content.body, Body::Typing(_)) {
        return Ok(Applied::malformed("ephemeral class mismatch"));
    }
    let conversation = match content.conversation {
        Conversation::Direct(id) if from_self => Conversation::Direct(id),
        Conversation::Direct(id) if id == own => Conversation::Direct(sender.account_id),
        Conversation::Direct(_) => {
            return Ok(Applied::malformed("message addressed to another account"));
        }
        Conversation::Group(g) => {
            return match content.body {
                Body::GroupInvite(invite) => accept_invite(store, &own, sender, g, &invite, rng),
                Body::SenderKey {
                    epoch,
                    distribution,
                } => receive_sender_key(store, &own, sender, g, epoch, &distribution),
                Body::GroupAdminKey { seed } => {
                    let seed = Zeroizing::new(seed);
                    receive_admin_key(store, &own, sender, g, &seed)
                }
                _ => Ok(Applied::malformed("unexpected group content")),
            };
        }
    };
    let mut applied = Applied::default();
    let incoming = Incoming {
        conversation,
        sender,
        outgoing: from_self,
        sent_at: content.sent_at,
        now_ms,
        franking,
    };
    let Some(body) = apply_message_body(store, &incoming, content.body, &mut applied, rng)? else {
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
            let key = Zeroizing::new(access_key);
            if from_self {
                // Another own device's copy of a card sent to `conversation`: nothing to learn
                // except the account's own key (a linked device may not have it yet).
                set_own_access_key(store, &key)?;
            } else {
                set_contact_access_key(store, &from, &key)?;
                card_received(store, &from)?;
            }
        }
        // Group invites, sender keys and admin keys (1:1 but `conv_kind` group) are routed
        // before; a group change belongs in a channel.
        _ => return Ok(Applied::malformed("group content in a 1:1 conversation")),
    }
    Ok(applied)
}

/// Processes channel entries of one epoch of `group`, in order, each in its own transaction
/// with the epoch's advanced cursor. Entries at or before the cursor were processed already
/// and are skipped; entries of an unknown group or epoch are ignored. A franked entry must open
/// its delivered commitment (§16.5, else it is refused as
/// [`RejectReason::FrankingMismatch`]) and leaves report material with its text.
///
/// # Errors
/// Store errors (the failing entry's transaction rolled back; earlier entries stay applied).
pub fn apply_entries<B: Backend, R: rand_core::CryptoRng + ?Sized>(
    store: &mut EncryptedStore<B>,
    me: &DeviceAddress,
    group_id: &[u8; 16],
    epoch: u32,
    entries: &[ChannelItem],
    now_ms: u64,
    rng: &mut R,
) -> Result<Applied, StateError> {
    let mut applied = Applied::default();
    for item in entries {
        let seq = &item.seq;
        let result = store.atomically_mut(|s| -> Result<Applied, StateError> {
            let Some(mut state) = group(s, group_id)? else {
                return Ok(Applied::default());
            };
            let Some(position) = state.epoch_mut(epoch) else {
                return Ok(Applied::default());
            };
            if *seq <= position.cursor() {
                return Ok(Applied::default());
            }
            position.set_cursor(*seq);
            let entry = Received {
                epoch,
                seq: *seq,
                entry: &item.entry,
                franking: item.franking.as_ref(),
            };
            let out = apply_entry(s, &mut state, &entry, me, now_ms, rng)?;
            save_group(s, &state)?;
            Ok(out)
        })?;
        applied.extend(result);
    }
    Ok(applied)
}

/// Retries the entries of `group` kept while their sender's key was missing (call it for each
/// of [`Applied::retry_groups`] after the transaction that brought the key committed); returns
/// their events. Entries whose key is still missing stay; entries of a group or epoch no
/// longer known, or that do not open, are dropped.
///
/// # Errors
/// Store errors.
pub fn retry_pending<B: Backend, R: rand_core::CryptoRng + ?Sized>(
    store: &mut EncryptedStore<B>,
    me: &DeviceAddress,
    group_id: &[u8; 16],
    now_ms: u64,
    rng: &mut R,
) -> Result<Vec<Event>, StateError> {
    // ((epoch, seq), (natural key, entry)), in channel order.
    let mut pending: Vec<_> = store
        .entries(GROUP_PENDING)?
        .into_iter()
        .filter_map(|(k, v)| Some((parse_pending_key(&k, group_id)?, (k, v))))
        .collect();
    pending.sort_by_key(|(position, _)| *position);
    let mut events = Vec::new();
    for ((epoch, seq), (key, entry)) in pending {
        let out = store.atomically_mut(|s| -> Result<Option<Applied>, StateError> {
            let forget = |s: &EncryptedStore<B>| -> Result<(), StateError> {
                s.delete(GROUP_PENDING, &key)?;
                s.delete(GROUP_PENDING_FRANKING, &key)?;
                Ok(())
            };
            let Some(mut state) = group(s, group_id)? else {
                forget(s)?;
                return Ok(None);
            };
            let Some(keys) = state.epoch_mut(epoch).map(|e| e.clone()) else {
                forget(s)?;
                return Ok(None);
            };
            let Some((sender, _)) = open_entry(group_id, &keys, &entry) else {
                forget(s)?;
                return Ok(None);
            };
            if !has_sender_key(s, group_id, epoch, &sender) {
                // Still waiting for this sender's key.
                return Ok(None);
            }
            let franking = s
                .get(GROUP_PENDING_FRANKING, &key)?
                .and_then(|b| DeliveredFranking::from_pending(&b, seq));
            forget(s)?;
            let received = Received {
                epoch,
                seq,
                entry: &entry,
                franking: franking.as_ref(),
            };
            let out = apply_entry(s, &mut state, &received, me, now_ms, rng)?;
            save_group(s, &state)?;
            Ok(Some(out))
        })?;
        if let Some(out) = out {
            events.extend(out.events);
        }
    }
    Ok(events)
}

/// A received content's circumstances.
struct Incoming<'a> {
    conversation: Conversation,
    sender: &'a DeviceAddress,
    /// The sender is this account (another own device, or a group post of ours).
    outgoing: bool,
    sent_at: u64,
    now_ms: u64,
    /// The report material of a franked envelope or channel entry.
    franking: Option<&'a ReportMaterial>,
}

/// A channel entry of one epoch as the relay delivered it.
struct Received<'a> {
    epoch: u32,
    seq: u64,
    entry: &'a [u8],
    /// Its commitment and stamp, when franked.
    franking: Option<&'a DeliveredFranking>,
}

/// Applies the content kinds 1:1 and group conversations share (texts, receipts, reactions,
/// edits, deletes, timers); hands any other body back to the caller.
fn apply_message_body<B: Backend, R: rand_core::CryptoRng + ?Sized>(
    store: &EncryptedStore<B>,
    incoming: &Incoming<'_>,
    body: Body,
    applied: &mut Applied,
    rng: &mut R,
) -> Result<Option<Body>, StateError> {
    let conversation = incoming.conversation;
    let outgoing = incoming.outgoing;
    let from = incoming.sender.account_id;
    // A blocked member's group posts are dropped unseen, like its 1:1 contents.
    if !outgoing && super::contacts::is_blocked(store, &from)? {
        return Ok(None);
    }
    match body {
        Body::Text {
            message_id,
            expire_secs,
            text,
            attachment,
        } => {
            // A text is stored once: a copy under a new relay id changes nothing.
            if has_message(store, &conversation, &message_id)? {
                return Ok(None);
            }
            let record = MessageRecord {
                conversation_kind: conversation.tag(),
                conversation_id: *conversation.id(),
                message_id,
                sender: from,
                sender_device: incoming.sender.device_id,
                outgoing,
                sent_at: incoming.sent_at,
                text,
                attachment,
                edited: false,
                deleted: false,
                reactions: Vec::new(),
                delivered_to: Vec::new(),
                read_by: Vec::new(),
                expires_at: expires_at(expire_secs, incoming.now_ms),
            };
            put_message(store, &record)?;
            if !outgoing && let Some(material) = incoming.franking {
                keep_material(store, &conversation, &message_id, material)?;
            }
            // Delivery receipts are for 1:1 messages from others.
            if !outgoing && matches!(conversation, Conversation::Direct(_)) {
                add_task(
                    store,
                    &Task::Delivered {
                        account: from,
                        message_id,
                    },
                    rng,
                )?;
                applied.tasks_added = true;
            }
            applied.events.push(Event::Message(record));
        }
        Body::Receipt { kind, message_ids } => {
            for id in &message_ids {
                update_message(store, &conversation, id, |m| {
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
            update_message(store, &conversation, &target, |m| {
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
            update_message(store, &conversation, &target, |m| {
                if m.sender == from && !m.deleted {
                    allowed = true;
                    m.text.clone_from(&text);
                    m.edited = true;
                }
            })?;
            applied.extend(if allowed {
                Applied::events(vec![Event::Edited {
                    conversation,
                    target,
                    text,
                }])
            } else {
                Applied::malformed("edit of a message that is not the sender's")
            });
        }
        Body::Delete { target } => {
            let mut allowed = false;
            update_message(store, &conversation, &target, |m| {
                if m.sender == from {
                    allowed = true;
                    m.text.clear();
                    m.attachment.clear();
                    m.deleted = true;
                }
            })?;
            applied.extend(if allowed {
                Applied::events(vec![Event::Deleted {
                    conversation,
                    target,
                }])
            } else {
                Applied::malformed("delete of a message that is not the sender's")
            });
        }
        Body::Timer(secs) => {
            set_timer(store, &conversation, secs)?;
            applied.events.push(Event::TimerChanged {
                conversation,
                expire_secs: secs,
            });
        }
        other => return Ok(Some(other)),
    }
    Ok(None)
}

/// Applies one channel entry inside its transaction (the caller advanced the cursor and stores
/// `state` afterwards).
fn apply_entry<B: Backend, R: rand_core::CryptoRng + ?Sized>(
    store: &mut EncryptedStore<B>,
    state: &mut GroupState,
    received: &Received<'_>,
    me: &DeviceAddress,
    now_ms: u64,
    rng: &mut R,
) -> Result<Applied, StateError> {
    let Received {
        epoch,
        seq,
        entry,
        franking,
    } = *received;
    let group = state.id;
    let Some(keys) = state.epoch_mut(epoch).map(|e| e.clone()) else {
        return Ok(Applied::default());
    };
    let Some((sender, message)) = open_entry(&group, &keys, entry) else {
        return Ok(Applied::rejected(RejectReason::Tampered));
    };
    if sender == *me {
        return Ok(Applied::default());
    }
    let name = SenderKeyName {
        distribution_id: distribution_id(&group, epoch),
        sender_account: sender.account_id.to_vec(),
        device_id: sender.device_id,
    };
    let padded = match group_decrypt(store, &name, &message) {
        Ok(p) => Zeroizing::new(p),
        Err(ClientStoreError::Group(GroupError::UnknownChain(_))) => {
            // The sender's key has not arrived yet: keep the entry (bounded) for a retry.
            if pending_count(store, &group)? < MAX_PENDING_PER_GROUP {
                let key = pending_key(&group, epoch, seq);
                store.put(GROUP_PENDING, &key, entry)?;
                if let Some(f) = franking {
                    store.put(GROUP_PENDING_FRANKING, &key, &f.to_pending())?;
                }
            }
            return Ok(Applied::default());
        }
        Err(ClientStoreError::Group(GroupError::DuplicateMessage(_))) => {
            return Ok(Applied::rejected(RejectReason::Replayed));
        }
        Err(ClientStoreError::Group(e)) => {
            return Ok(Applied::rejected(RejectReason::Session(e.to_string())));
        }
        Err(e) => return Err(e.into()),
    };
    let Ok(plain) = unpad(&padded) else {
        return Ok(Applied::malformed("bad padding"));
    };
    // §16.5: a franked entry must open its commitment; the destination is the channel.
    let destination = Destination::Channel {
        channel_id: *keys.channel_id(),
    };
    let (plain, material) =
        match open_delivered(plain, franking, stored_key(store)?, &sender, destination) {
            Some(Unwrapped::Franked(content, material)) => (content, Some(material)),
            Some(Unwrapped::Bare(content)) => (content, None),
            None => return Ok(Applied::rejected(RejectReason::FrankingMismatch)),
        };
    let content = match Content::from_bytes(plain) {
        Ok(c) => c,
        Err(e) => return Ok(Applied::malformed(e)),
    };
    if content.conversation != Conversation::Group(group) {
        return Ok(Applied::malformed("group entry for another conversation"));
    }
    if !state.members.contains(&sender.account_id) {
        return Ok(Applied::malformed("group entry from a non-member"));
    }
    let own = me.account_id;
    let mut applied = Applied::default();
    let incoming = Incoming {
        conversation: content.conversation,
        sender: &sender,
        outgoing: sender.account_id == own,
        sent_at: content.sent_at,
        now_ms,
        franking: material.as_ref(),
    };
    let Some(body) = apply_message_body(store, &incoming, content.body, &mut applied, rng)? else {
        return Ok(applied);
    };
    match body {
        // The admin's change to the next epoch, posted to this one: a removed member learns
        // its removal here; the others wait for their invite (which carries the new keys).
        Body::GroupChange { change } => match check_change(state, &change) {
            Ok(Verdict::Current) => {}
            Ok(Verdict::Next(next)) => {
                if !next.body().members.contains(&own) {
                    state.active = false;
                    applied
                        .events
                        .push(Event::RemovedFromGroup { group_id: group });
                }
            }
            // An older change read late from a kept channel (the device already moved past
            // it by invites): history, not an attempt.
            Err(GroupChangeRefusal::Stale { .. }) => {}
            Err(reason) => applied.extend(change_refused(group, reason)),
        },
        // Typing, contact cards, invites, sender keys and admin keys never travel in a channel.
        _ => return Ok(Applied::malformed("content not allowed in a group channel")),
    }
    Ok(applied)
}
