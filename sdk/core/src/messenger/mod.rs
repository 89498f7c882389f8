//! The messenger's state, without I/O (PROTOCOL §13): contacts, 1:1 and group conversations,
//! message records, receipts, reactions, edits, deletes, disappearing timers, group epochs,
//! signed membership changes and invites, early sender keys, pending channel entries and durable
//! follow-up tasks, all kept in
//! an [`EncryptedStore`](crate::store::EncryptedStore) over any backend.
//!
//! A driver (natively `haven_client::Messenger`: HTTP, WebSocket, files) does the I/O and
//! calls these functions with the store, the time (`now_ms`, Unix milliseconds) and an RNG:
//!
//! - **Receiving.** [`apply_direct`] applies a 1:1 envelope's plaintext inside the transaction
//!   that also stores the ratchet session and the seen marker; [`apply_entries`] processes a
//!   group channel's entries, one transaction per entry with the epoch's cursor. Both return an
//!   [`Applied`]: the [`Event`]s to emit after the commit and the follow-ups the driver owes
//!   ([`retry_pending`] for groups whose sender key arrived, channels to subscribe to, tasks to
//!   run).
//! - **Sending.** [`outgoing`] builds the content of every user action and the local change
//!   that goes with it; group posts are sealed with [`outgoing::group_entry`].
//! - **Follow-ups.** [`due_follow_ups`] lists the durable tasks due now (sender-key
//!   distribution, delivery receipts batched per account by the [`ReceiptPolicy`]);
//!   [`follow_up`] says what each sends; [`follow_up_done`] removes it; [`next_due`] says when
//!   a driver's timer should look again.
//! - **Wake-ups.** [`WakeSummary`] counts what a push wake-up's catch-up processed, from the
//!   events it emitted (§13.4.2).
//! - **Queries.** [`contacts`], [`history`] (deleting disappeared messages), [`conversations`],
//!   [`groups`].
//! - **Reports.** [`report_request`] builds the abuse report of a received franked message
//!   from the report material kept with it (§16); [`prune_report_material`] forgets material
//!   past the report window.
//! - **Channels.** [`channels`]: the relay requests of a group epoch's channel (create, append,
//!   read a page, subscribe) that both drivers make.
//!
//! Exactly once: a text is stored once per message id, a channel entry once per position
//! (its epoch's cursor); the relay message id of an envelope is the device's to mark seen.

mod apply;
pub mod channels;
mod contacts;
mod groups;
mod messages;
pub mod outgoing;
mod records;
mod reports;
mod tasks;
mod types;
mod wake;

#[cfg(test)]
mod tests;

pub use apply::{apply_direct, apply_entries, retry_pending};
pub use contacts::{
    add_contact, card_sent, contact, contact_card, contacts, is_blocked, needs_card, set_blocked,
};
pub use groups::{
    Channel, ChannelIndex, Epoch, GroupState, MAX_PENDING_PER_GROUP, MAX_PENDING_SENDER_KEYS,
    MAX_PENDING_SENDER_KEYS_PER_CONTACT, active_group, channel_index, distribution_id, group,
    group_states, groups, has_own_sender_session, open_entry, own_distribution, save_group,
    seal_entry,
};
pub use messages::{conversations, history, message, timer};
pub use outgoing::{MemberChange, Outgoing};
pub use reports::{
    prune_report_material, report_needs_key, report_request, report_window, reportable,
};
pub use tasks::{
    DirectSend, FollowUp, MAX_RECEIPT_DELAY_SECS, QueuedTask, ReceiptPolicy, Task, due_follow_ups,
    follow_up, follow_up_done, next_due, queued_tasks, receipt_policy, set_receipt_policy,
    task_done,
};
pub use types::{
    Applied, ConnectionState, Contact, Event, GroupChangeRefusal, GroupInfo, MessageRecord,
    ReactionRecord, StateError, parse_id,
};
pub use wake::{WAKE_BUDGET_MS, WakeSummary};
// The device's: an envelope refused by the device or a content refused here is one event, and
// safety numbers are the device's identities.
pub use crate::device::{RejectReason, ReportError, SafetyNumber};
