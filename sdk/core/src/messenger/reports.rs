//! Report material of received messages and the abuse report built from it (PROTOCOL §13.6,
//! §16.5, §16.9).
//!
//! A text received from another account in a franked envelope (1:1) or franked channel entry
//! (group) keeps its report material (the §16.2 report body, [`ReportMaterial`]) in the space
//! `0x01E7` under the message's key (`conv_kind · conv_id · message_id`, as the message). It is
//! deleted with the message (its timer ran out) and once the report window
//! ([`REPORT_WINDOW`]) has passed. A delete for everyone by the sender keeps it: the sender
//! must not be able to withdraw a message from a report. Own messages, sync copies and
//! unfranked envelopes or entries (§16.9 transition) have none and cannot be reported. A group
//! message's report carries the read token of the channel it came through.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use haven_protocol::api::moderation::ReportRequest;
use haven_protocol::content::Conversation;
use haven_protocol::franking::{Destination, FrankingKey};

use super::groups::group;
use super::messages::{has_message, message_key};
use super::records::REPORTS;
use super::types::StateError;
use crate::device::{REPORT_WINDOW, ReportError, ReportMaterial};
use crate::store::{Backend, EncryptedStore};

/// Stores the report material of a received message (inside the envelope's transaction).
pub(super) fn keep_material<B: Backend>(
    store: &EncryptedStore<B>,
    conversation: &Conversation,
    id: &[u8; 16],
    material: &ReportMaterial,
) -> Result<(), StateError> {
    Ok(store.put(REPORTS, &message_key(conversation, id), material.as_bytes())?)
}

/// Deletes a message's report material, if any.
pub(super) fn drop_material<B: Backend>(
    store: &EncryptedStore<B>,
    key: &[u8],
) -> Result<(), StateError> {
    store.delete(REPORTS, key)?;
    Ok(())
}

/// Deletes the report material whose report window has passed at `now` (Unix seconds), and
/// material that does not decode. Returns how many rows were deleted.
///
/// # Errors
/// Store errors.
pub fn prune_report_material<B: Backend>(
    store: &EncryptedStore<B>,
    now: u64,
) -> Result<usize, StateError> {
    let mut deleted = 0;
    for (key, value) in store.entries(REPORTS)? {
        let keep = ReportMaterial::from_bytes(&value).is_ok_and(|m| !m.expired(now));
        if !keep {
            store.delete(REPORTS, &key)?;
            deleted += 1;
        }
    }
    Ok(deleted)
}

/// Whether the message can be reported now: it has report material within the window.
///
/// # Errors
/// Store errors.
pub fn reportable<B: Backend>(
    store: &EncryptedStore<B>,
    conversation: &Conversation,
    id: &[u8; 16],
    now: u64,
) -> Result<bool, StateError> {
    Ok(store
        .get(REPORTS, &message_key(conversation, id))?
        .and_then(|v| ReportMaterial::from_bytes(&v).ok())
        .is_some_and(|m| !m.expired(now)))
}

/// The body of `POST /v1/reports` (bearer) reporting message `id` of `conversation`: its
/// stored report body, with `current` (the relay's franking key now) when the device knew
/// none when the message arrived. Reveals this message's content to the relay and nothing
/// else (§16.7). Nothing changes in the store.
///
/// # Errors
/// [`StateError::Report`]: [`ReportError::UnknownMessage`], [`ReportError::NotReportable`],
/// [`ReportError::Expired`], [`ReportError::Unsupported`]; store errors.
pub fn report_request<B: Backend>(
    store: &EncryptedStore<B>,
    conversation: &Conversation,
    id: &[u8; 16],
    current: Option<&FrankingKey>,
    now: u64,
) -> Result<ReportRequest, StateError> {
    if !has_message(store, conversation, id)? {
        return Err(ReportError::UnknownMessage.into());
    }
    let material = store
        .get(REPORTS, &message_key(conversation, id))?
        .and_then(|v| ReportMaterial::from_bytes(&v).ok())
        .ok_or(ReportError::NotReportable)?;
    let body = material.report_body(current, now)?;
    // A group message was delivered through its epoch's channel: the relay takes the report
    // from whoever holds the channel's read token (§16.6), which this device still has while
    // it reads that epoch.
    let read_token = match (material.destination(), conversation) {
        (Some(Destination::Channel { channel_id }), Conversation::Group(group_id)) => {
            let state = group(store, group_id)?.ok_or(ReportError::NotReportable)?;
            let epoch = state
                .old
                .iter()
                .chain(std::iter::once(&state.current))
                .find(|e| *e.channel_id() == channel_id)
                .ok_or(ReportError::NotReportable)?;
            Some(epoch.read_bearer().to_string())
        }
        (Some(Destination::Device { .. }), Conversation::Direct(_)) => None,
        _ => return Err(ReportError::NotReportable.into()),
    };
    Ok(ReportRequest {
        report: STANDARD.encode(body.as_slice()),
        read_token,
    })
}

/// Whether the stored material of message `id` names the franking key the sender used; when
/// it does not, the driver fetches the relay's current key before [`report_request`].
///
/// # Errors
/// Store errors.
pub fn report_needs_key<B: Backend>(
    store: &EncryptedStore<B>,
    conversation: &Conversation,
    id: &[u8; 16],
) -> Result<bool, StateError> {
    Ok(store
        .get(REPORTS, &message_key(conversation, id))?
        .and_then(|v| ReportMaterial::from_bytes(&v).ok())
        .is_some_and(|m| !m.has_franking_key()))
}

/// The report window, for the application to show (seconds).
#[must_use]
pub const fn report_window() -> u64 {
    REPORT_WINDOW
}
