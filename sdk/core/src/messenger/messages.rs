//! Stored messages and per-conversation settings: history with disappearing messages, the
//! conversation list, and the record updates receipts, reactions, edits and deletes make.

use haven_protocol::content::Conversation;

use super::records::{CONV_SETTINGS, MESSAGES, all_json, get_json, put_json};
use super::reports::{drop_material, prune_report_material};
use super::types::{MessageRecord, ReactionRecord, StateError};
use crate::store::{Backend, EncryptedStore};

/// A message's natural key: `conv_kind · conv_id · message_id` (33 bytes).
pub(super) fn message_key(conversation: &Conversation, id: &[u8; 16]) -> Vec<u8> {
    let mut k = conversation.key().to_vec();
    k.extend_from_slice(id);
    k
}

/// One stored message.
///
/// # Errors
/// Store errors, [`StateError::Corrupt`].
pub fn message<B: Backend>(
    store: &EncryptedStore<B>,
    conversation: &Conversation,
    id: &[u8; 16],
) -> Result<Option<MessageRecord>, StateError> {
    get_json(store, MESSAGES, &message_key(conversation, id), "message")
}

/// The messages of a conversation, oldest first. Messages whose timer ran out by `now_ms`
/// (Unix milliseconds) are deleted first, of every conversation, with their report material,
/// and report material past the report window is deleted.
///
/// # Errors
/// Store errors, [`StateError::Corrupt`].
pub fn history<B: Backend>(
    store: &EncryptedStore<B>,
    conversation: Conversation,
    now_ms: u64,
) -> Result<Vec<MessageRecord>, StateError> {
    let now = now_ms / 1000;
    let mut out = Vec::new();
    for (key, value) in store.entries(MESSAGES)? {
        let m: MessageRecord =
            serde_json::from_slice(&value).map_err(|_| StateError::Corrupt { what: "message" })?;
        if m.expires_at.is_some_and(|t| t <= now) {
            store.delete(MESSAGES, &key)?;
            drop_material(store, &key)?;
            continue;
        }
        if m.conversation() == conversation {
            out.push(m);
        }
    }
    prune_report_material(store, now)?;
    out.sort_by_key(|m| (m.sent_at, m.message_id));
    Ok(out)
}

/// The conversations with stored messages, sorted.
///
/// # Errors
/// Store errors, [`StateError::Corrupt`].
pub fn conversations<B: Backend>(
    store: &EncryptedStore<B>,
) -> Result<Vec<Conversation>, StateError> {
    let mut out = Vec::new();
    for m in all_json::<MessageRecord, B>(store, MESSAGES, "message")? {
        let c = m.conversation();
        if !out.contains(&c) {
            out.push(c);
        }
    }
    out.sort();
    Ok(out)
}

/// The conversation's disappearing timer in seconds (0 = off): what its next texts carry.
///
/// # Errors
/// Store errors.
pub fn timer<B: Backend>(
    store: &EncryptedStore<B>,
    conversation: &Conversation,
) -> Result<u32, StateError> {
    Ok(store
        .get(CONV_SETTINGS, &conversation.key())?
        .and_then(|v| <[u8; 4]>::try_from(v.as_slice()).ok())
        .map_or(0, u32::from_be_bytes))
}

/// Sets the conversation's timer (`u32be(expire_secs)` under the conversation key).
pub(super) fn set_timer<B: Backend>(
    store: &EncryptedStore<B>,
    conversation: &Conversation,
    expire_secs: u32,
) -> Result<(), StateError> {
    Ok(store.put(
        CONV_SETTINGS,
        &conversation.key(),
        &expire_secs.to_be_bytes(),
    )?)
}

/// When a text stored at `now_ms` with `expire_secs` disappears (Unix seconds), if at all.
pub(super) fn expires_at(expire_secs: u32, now_ms: u64) -> Option<u64> {
    (expire_secs > 0).then(|| now_ms / 1000 + u64::from(expire_secs))
}

/// Stores a new message record.
pub(super) fn put_message<B: Backend>(
    store: &EncryptedStore<B>,
    record: &MessageRecord,
) -> Result<(), StateError> {
    let key = message_key(&record.conversation(), &record.message_id);
    put_json(store, MESSAGES, &key, record)
}

/// Whether a message is stored.
pub(super) fn has_message<B: Backend>(
    store: &EncryptedStore<B>,
    conversation: &Conversation,
    id: &[u8; 16],
) -> Result<bool, StateError> {
    Ok(store
        .get(MESSAGES, &message_key(conversation, id))?
        .is_some())
}

/// Deletes a message record.
pub(super) fn remove_message<B: Backend>(
    store: &EncryptedStore<B>,
    conversation: &Conversation,
    id: &[u8; 16],
) -> Result<(), StateError> {
    let key = message_key(conversation, id);
    store.delete(MESSAGES, &key)?;
    drop_material(store, &key)?;
    Ok(())
}

/// Runs `f` on a stored message and stores the result; `false` when the message is unknown.
pub(super) fn update_message<B: Backend>(
    store: &EncryptedStore<B>,
    conversation: &Conversation,
    target: &[u8; 16],
    f: impl FnOnce(&mut MessageRecord),
) -> Result<bool, StateError> {
    let key = message_key(conversation, target);
    let Some(mut m) = get_json::<MessageRecord, B>(store, MESSAGES, &key, "message")? else {
        return Ok(false);
    };
    f(&mut m);
    put_json(store, MESSAGES, &key, &m)?;
    Ok(true)
}

/// `from`'s reaction replaces its previous one (or is removed).
pub(super) fn apply_reaction(m: &mut MessageRecord, from: [u8; 16], emoji: &str, remove: bool) {
    m.reactions.retain(|r| r.from != from);
    if !remove {
        m.reactions.push(ReactionRecord {
            from,
            emoji: emoji.to_owned(),
        });
    }
}
