//! What a push wake-up found (PROTOCOL §13.4.2): the summary a host application's push handler
//! shows locally ("3 new messages in 2 conversations") once the driver has fetched, processed
//! and acknowledged what was waiting. It is computed from the events the processing emitted, on
//! the device: the relay learns nothing from it.
//!
//! Exactly once: an envelope already processed (by the live connection, or an earlier wake-up
//! whose acknowledgement was lost) yields no event the second time, so it is not counted again.

use haven_protocol::content::Conversation;

use super::Event;

/// Default time budget of a wake-up (iOS gives a push handler about 30 s; a margin is kept).
pub const WAKE_BUDGET_MS: u64 = 25_000;

/// What one wake-up processed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WakeSummary {
    /// Envelopes fetched and processed (acknowledged unless the budget ran out first).
    pub envelopes: u32,
    /// New messages from other accounts (not this account's own sends synced from its other
    /// devices).
    pub messages: u32,
    /// The conversations those messages are in, each once, in the order first seen.
    pub conversations: Vec<Conversation>,
    /// Whether everything waiting was fetched within the budget (`false`: the rest stays queued
    /// on the relay for the next wake-up or connection, nothing is lost).
    pub complete: bool,
    /// When (Unix ms) the next delayed follow-up (a delivery receipt, §13.4.1) becomes due, if
    /// one is still queued: the application may schedule background work for it.
    pub next_task_due_ms: Option<u64>,
}

impl WakeSummary {
    /// Counts what `events` (of one processed envelope or channel entry) bring.
    pub fn add_events<'a>(&mut self, events: impl IntoIterator<Item = &'a Event>) {
        for event in events {
            if let Event::Message(record) = event
                && !record.outgoing
            {
                self.messages = self.messages.saturating_add(1);
                let conversation = record.conversation();
                if !self.conversations.contains(&conversation) {
                    self.conversations.push(conversation);
                }
            }
        }
    }

    /// Counts one processed envelope.
    pub fn add_envelope(&mut self) {
        self.envelopes = self.envelopes.saturating_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messenger::MessageRecord;

    fn message(conversation: [u8; 16], sender: u8, outgoing: bool, id: u8) -> Event {
        Event::Message(MessageRecord {
            conversation_kind: 0,
            conversation_id: conversation,
            message_id: [id; 16],
            sender: [sender; 16],
            sender_device: 1,
            outgoing,
            sent_at: 1,
            text: "hi".into(),
            attachment: Vec::new(),
            edited: false,
            deleted: false,
            reactions: Vec::new(),
            delivered_to: Vec::new(),
            read_by: Vec::new(),
            expires_at: None,
        })
    }

    #[test]
    fn counts_incoming_messages_and_their_conversations_once() {
        let mut s = WakeSummary::default();
        let typing = Event::Typing {
            conversation: Conversation::Direct([1; 16]),
            from: [1; 16],
            started: true,
        };
        s.add_events(&[message([1; 16], 1, false, 1), typing]);
        s.add_events(&[message([2; 16], 2, false, 2)]);
        s.add_events(&[message([1; 16], 1, false, 3)]);
        // A sync copy of this account's own send is not a new message.
        s.add_events(&[message([3; 16], 9, true, 4)]);
        assert_eq!(s.messages, 3);
        assert_eq!(
            s.conversations,
            vec![Conversation::Direct([1; 16]), Conversation::Direct([2; 16])]
        );
        assert_eq!(s.envelopes, 0);
    }
}
