//! The messenger's state updates without a relay: contents built with `haven_protocol::content`
//! (or by [`outgoing`]) and applied to in-memory stores, group entries carried by a vector
//! standing in for the relay's channel.

use haven_protocol::content::{Body, Content, Conversation, GroupInvite, ReceiptKind};
use haven_protocol::group_change::GroupChangeBody;
use haven_sdk::groups::{GroupAdminKey, GroupSenderSession, group_key_commitment};
use haven_sdk::store::DeviceAddress;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

use super::channels::ChannelItem;
use super::records::{GROUP_PENDING, PENDING_SENDER_KEYS};
use super::*;
use crate::device::state::{contact_access_key, own_access_key};
use crate::device::{DeliveredFranking, ReportError, ReportMaterial};
use crate::store::MemoryStore;

const ALICE: [u8; 16] = [0xA1; 16];
const BOB: [u8; 16] = [0xB0; 16];
const CAROL: [u8; 16] = [0xC0; 16];
const MALLORY: [u8; 16] = [0x66; 16];
/// 2023-11-14T22:13:20Z in Unix milliseconds.
const NOW: u64 = 1_700_000_000_000;

/// One device: its store, address and RNG (seeded from the address: deterministic runs).
struct Dev {
    store: MemoryStore,
    me: DeviceAddress,
    rng: ChaCha20Rng,
}

impl Dev {
    /// A device whose delivery receipts are immediate (most tests are about what a receipt
    /// does, not when it goes out).
    fn new(account: [u8; 16], device: u32) -> Self {
        let dev = Self::with_default_policy(account, device);
        set_receipt_policy(&dev.store, ReceiptPolicy::Immediate).unwrap();
        dev
    }

    /// A device with the default receipt policy.
    fn with_default_policy(account: [u8; 16], device: u32) -> Self {
        let mut seed = [0u8; 32];
        seed[..16].copy_from_slice(&account);
        seed[16..20].copy_from_slice(&device.to_be_bytes());
        Self {
            store: MemoryStore::open_in_memory(&[7; 32]).unwrap(),
            me: DeviceAddress::new(account, device),
            rng: ChaCha20Rng::from_seed(seed),
        }
    }

    fn account(&self) -> [u8; 16] {
        self.me.account_id
    }

    /// Applies `content` as the plaintext of an envelope from `from`.
    fn receive(&mut self, from: &DeviceAddress, content: &Content) -> Applied {
        self.receive_bytes(from, &content.to_bytes().unwrap(), false)
    }

    fn receive_bytes(&mut self, from: &DeviceAddress, plain: &[u8], ephemeral: bool) -> Applied {
        // As the device does: the content's effects in the envelope's transaction.
        let (me, rng) = (self.me, &mut self.rng);
        self.store
            .atomically_mut(|s| apply_direct(s, &me, from, plain, None, ephemeral, NOW, rng))
            .unwrap()
    }

    /// Applies channel entries of a group epoch, then retries pending entries as a driver
    /// does for every group a sender key arrived for.
    fn read(&mut self, group: &[u8; 16], epoch: u32, entries: &[ChannelItem]) -> Applied {
        let mut applied = apply_entries(
            &mut self.store,
            &self.me,
            group,
            epoch,
            entries,
            NOW,
            &mut self.rng,
        )
        .unwrap();
        self.retry(&mut applied);
        applied
    }

    fn retry(&mut self, applied: &mut Applied) {
        for g in std::mem::take(&mut applied.retry_groups) {
            let events = retry_pending(&mut self.store, &self.me, &g, NOW, &mut self.rng).unwrap();
            applied.events.extend(events);
        }
    }

    fn message(&self, conversation: Conversation, id: &[u8; 16]) -> MessageRecord {
        message(&self.store, &conversation, id).unwrap().unwrap()
    }

    fn tasks(&self) -> Vec<Task> {
        queued_tasks(&self.store)
            .unwrap()
            .iter()
            .map(|t| t.task().clone())
            .collect()
    }

    /// Runs this device's follow-ups as the driver would: each content goes to every device
    /// (of `devices`) of its recipient account, and the task is done.
    fn run_tasks(&mut self, devices: &mut [&mut Dev]) {
        self.run_tasks_at(NOW, devices);
    }

    /// Runs the follow-ups due at `now`; returns what was sent.
    fn run_tasks_at(&mut self, now: u64, devices: &mut [&mut Dev]) -> Vec<DirectSend> {
        let mut sent = Vec::new();
        for due in due_follow_ups(&self.store, now).unwrap() {
            if let Some(send) = follow_up(&mut self.store, &due, now, &mut self.rng).unwrap() {
                for d in devices.iter_mut().filter(|d| d.account() == send.to) {
                    let mut applied = d.receive(&self.me, &send.content);
                    d.retry(&mut applied);
                    assert!(!has_rejection(&applied), "{applied:?}");
                }
                sent.push(send);
            }
            follow_up_done(&self.store, &due).unwrap();
        }
        sent
    }
}

/// A relay channel: entries in order, `seq` from 1, with the commitment of franked ones.
#[derive(Default)]
struct ChannelLog(Vec<Vec<u8>>, Vec<Option<[u8; 32]>>);

/// The stamp the test relay puts on franked entries (the client cannot check it).
const STAMP: [u8; 32] = [0x5a; 32];

impl ChannelLog {
    fn post(&mut self, entry: Vec<u8>) -> u64 {
        self.post_with(entry, None)
    }

    fn post_with(&mut self, entry: Vec<u8>, commitment: Option<[u8; 32]>) -> u64 {
        self.0.push(entry);
        self.1.push(commitment);
        self.0.len() as u64
    }

    fn after(&self, seq: u64) -> Vec<ChannelItem> {
        (seq..self.0.len() as u64)
            .map(|i| ChannelItem {
                seq: i + 1,
                entry: self.0[i as usize].clone(),
                franking: self.1[i as usize].map(|commitment| DeliveredFranking {
                    commitment,
                    stamp: STAMP,
                    seq: i + 1,
                    time: NOW / 1000,
                }),
            })
            .collect()
    }
}

fn direct(to: [u8; 16], body: Body) -> Content {
    Content {
        sent_at: NOW,
        conversation: Conversation::Direct(to),
        body,
    }
}

fn text_body(message_id: [u8; 16], text: &str) -> Body {
    Body::Text {
        message_id,
        expire_secs: 0,
        text: text.into(),
        attachment: Vec::new(),
    }
}

fn channel(n: u8) -> Channel {
    Channel {
        id: [n; 16],
        read_token: [n.wrapping_add(1); 32],
        write_token: [n.wrapping_add(2); 32],
    }
}

fn has_rejection(applied: &Applied) -> bool {
    applied
        .events
        .iter()
        .any(|e| matches!(e, Event::Rejected { .. }))
}

fn rejection(applied: &Applied) -> String {
    match applied.events.as_slice() {
        [Event::Rejected { reason }] => reason.to_string(),
        other => panic!("expected one rejection, got {other:?}"),
    }
}

fn only_message(applied: &Applied) -> &MessageRecord {
    match applied.events.as_slice() {
        [Event::Message(m)] => m,
        other => panic!("expected one message, got {other:?}"),
    }
}

// ------------------------------------------------------------------------------------ 1:1

#[test]
fn a_contact_card_makes_a_contact_and_teaches_its_access_key() {
    let mut bob = Dev::new(BOB, 1);
    let alice = DeviceAddress::new(ALICE, 1);
    let card = contact_card(&BOB, [9; 16], NOW);

    let applied = bob.receive(&alice, &card);
    assert!(applied.events.is_empty());
    // Sends to Alice can be sealed from now on.
    assert_eq!(
        contact_access_key(&bob.store, &ALICE).unwrap(),
        Some([9; 16])
    );
    let alices = contact(&bob.store, &ALICE).unwrap().unwrap();
    assert_eq!((alices.account, alices.card_sent), (ALICE, false));
    assert!(needs_card(&bob.store, &ALICE).unwrap());

    // Another own device's copy of a card this account sent to Carol: the account's own key.
    let own_copy = bob.receive(
        &DeviceAddress::new(BOB, 2),
        &contact_card(&CAROL, [4; 16], NOW),
    );
    assert!(own_copy.events.is_empty());
    assert_eq!(own_access_key(&bob.store).unwrap(), Some([4; 16]));
    assert_eq!(contact_access_key(&bob.store, &CAROL).unwrap(), None);
    assert_eq!(contact(&bob.store, &CAROL).unwrap(), None);

    // A card addressed to someone else, or claiming to come from this very device, is refused.
    let misaddressed = bob.receive(&alice, &contact_card(&CAROL, [5; 16], NOW));
    assert!(rejection(&misaddressed).contains("another account"));
    let from_self = bob.receive(&bob.me.clone(), &card);
    assert!(rejection(&from_self).contains("this device"));
    // Neither changed a key.
    assert_eq!(
        contact_access_key(&bob.store, &ALICE).unwrap(),
        Some([9; 16])
    );
    assert_eq!(own_access_key(&bob.store).unwrap(), Some([4; 16]));

    // Sending one's own card: needed once, then recorded.
    assert!(needs_card(&bob.store, &CAROL).unwrap());
    assert!(card_sent(&bob.store, &CAROL).unwrap().card_sent);
    assert!(!needs_card(&bob.store, &CAROL).unwrap());
    assert_eq!(contacts(&bob.store).unwrap().len(), 2);
}

#[test]
fn adding_contacts_keeps_usernames_and_refuses_oneself() {
    let alice = Dev::new(ALICE, 1);
    let added = add_contact(&alice.store, &ALICE, &BOB, Some("bob".into())).unwrap();
    assert_eq!(added.username.as_deref(), Some("bob"));
    // Adding again by id keeps the username.
    let again = add_contact(&alice.store, &ALICE, &BOB, None).unwrap();
    assert_eq!(again.username.as_deref(), Some("bob"));
    assert!(matches!(
        add_contact(&alice.store, &ALICE, &ALICE, None),
        Err(StateError::Invalid(_))
    ));
    assert_eq!(parse_id(&format!(" {} ", hex::encode(BOB))).unwrap(), BOB);
    assert!(parse_id("b0b0").is_err());
}

#[test]
fn a_blocked_contact_is_dropped_unseen_and_gets_nothing() {
    let mut bob = Dev::new(BOB, 1);
    let alice = DeviceAddress::new(ALICE, 1);
    set_blocked(&bob.store, &BOB, &ALICE, true).unwrap();
    assert!(is_blocked(&bob.store, &ALICE).unwrap());
    assert!(set_blocked(&bob.store, &BOB, &BOB, true).is_err());
    // Her text: no event, no record, no receipt task.
    let applied = bob.receive(&alice, &direct(BOB, text_body([1; 16], "let me in")));
    assert!(applied.events.is_empty(), "{applied:?}");
    assert!(
        message(&bob.store, &Conversation::Direct(ALICE), &[1; 16])
            .unwrap()
            .is_none()
    );
    assert!(bob.tasks().is_empty());
    // Nothing goes to her 1:1.
    assert!(
        outgoing::message(
            &bob.store,
            &bob.me,
            Conversation::Direct(ALICE),
            "hi",
            Vec::new(),
            NOW,
            &mut bob.rng,
        )
        .is_err()
    );
    // Unblocked, her next text arrives as usual.
    set_blocked(&bob.store, &BOB, &ALICE, false).unwrap();
    let applied = bob.receive(&alice, &direct(BOB, text_body([2; 16], "hello")));
    assert_eq!(only_message(&applied).text, "hello");
}

#[test]
fn a_blocked_members_group_posts_are_dropped() {
    let mut g = Group::new();
    set_blocked(&g.bob.store, &BOB, &ALICE, true).unwrap();
    Group::post(
        &mut g.alice,
        &mut g.channel,
        &g.id,
        text_body([1; 16], "from alice"),
    );
    Group::post(
        &mut g.carol,
        &mut g.channel,
        &g.id,
        text_body([2; 16], "from carol"),
    );
    let read = g.bob.read(&g.id, 1, &g.channel.after(0));
    assert_eq!(only_message(&read).sender, CAROL);
}

#[test]
fn a_text_then_receipts_then_reactions() {
    let mut alice = Dev::new(ALICE, 1);
    let mut alice2 = Dev::new(ALICE, 2);
    let mut bob = Dev::new(BOB, 1);
    let to_bob = Conversation::Direct(BOB);
    let to_alice = Conversation::Direct(ALICE);

    // Alice stores her message before sending it.
    let (id, out) = outgoing::message(
        &alice.store,
        &alice.me,
        to_bob,
        "hello bob",
        Vec::new(),
        NOW,
        &mut alice.rng,
    )
    .unwrap();
    let sent = alice.message(to_bob, &id);
    assert!(sent.outgoing && sent.delivered_to.is_empty());
    let content = out.content().clone();
    out.sent(&alice.store).unwrap();

    // Bob files it under the conversation with Alice and owes her a delivery receipt.
    let applied = bob.receive(&alice.me, &content);
    let m = only_message(&applied);
    assert_eq!((m.conversation(), m.outgoing), (to_alice, false));
    assert_eq!((m.sender, m.sender_device, m.sent_at), (ALICE, 1, NOW));
    assert!(applied.tasks_added);
    assert_eq!(
        bob.tasks(),
        vec![Task::Delivered {
            account: ALICE,
            message_id: id
        }]
    );
    // Alice's other device gets the sync copy: outgoing, in the conversation with Bob, and no
    // receipt owed.
    let synced = alice2.receive(&alice.me, &content);
    assert_eq!(only_message(&synced).conversation(), to_bob);
    assert!(only_message(&synced).outgoing);
    assert!(alice2.tasks().is_empty());

    // The receipt task reaches both of Alice's devices.
    bob.run_tasks(&mut [&mut alice, &mut alice2]);
    assert!(bob.tasks().is_empty());
    assert_eq!(alice.message(to_bob, &id).delivered_to, vec![BOB]);
    assert_eq!(alice2.message(to_bob, &id).delivered_to, vec![BOB]);

    // Bob reads it.
    let read = outgoing::read_receipt(to_alice, &[id], NOW).unwrap();
    let applied = alice.receive(&bob.me, read.content());
    assert_eq!(
        applied.events,
        vec![Event::Receipt {
            conversation: to_bob,
            from: BOB,
            kind: ReceiptKind::Read,
            message_ids: vec![id]
        }]
    );
    assert_eq!(alice.message(to_bob, &id).read_by, vec![BOB]);
    // A repeated receipt does not list Bob twice.
    alice.receive(&bob.me, read.content());
    assert_eq!(alice.message(to_bob, &id).read_by, vec![BOB]);
    assert!(outgoing::read_receipt(to_alice, &[], NOW).is_none());

    // Bob reacts, changes his reaction, then takes it back: one reaction per account.
    for (emoji, remove, expected) in [
        ("👍", false, vec!["👍"]),
        ("🎉", false, vec!["🎉"]),
        ("🎉", true, vec![]),
    ] {
        let out = outgoing::reaction(&BOB, to_alice, id, emoji, remove, NOW).unwrap();
        let applied = alice.receive(&bob.me, out.content());
        assert_eq!(
            applied.events,
            vec![Event::Reaction {
                conversation: to_bob,
                target: id,
                from: BOB,
                emoji: emoji.into(),
                removed: remove
            }]
        );
        out.sent(&bob.store).unwrap();
        for (dev, conversation) in [(&alice, to_bob), (&bob, to_alice)] {
            let reactions: Vec<String> = dev
                .message(conversation, &id)
                .reactions
                .into_iter()
                .map(|r| r.emoji)
                .collect();
            assert_eq!(reactions, expected);
        }
    }
    assert!(matches!(
        outgoing::reaction(&BOB, to_alice, id, "", false, NOW),
        Err(StateError::Content(_))
    ));
    assert_eq!(conversations(&alice.store).unwrap(), vec![to_bob]);
}

#[test]
fn a_failed_send_takes_the_stored_text_back() {
    let mut alice = Dev::new(ALICE, 1);
    let to_bob = Conversation::Direct(BOB);
    let (id, out) = outgoing::message(
        &alice.store,
        &alice.me,
        to_bob,
        "x",
        Vec::new(),
        NOW,
        &mut alice.rng,
    )
    .unwrap();
    out.failed(&alice.store).unwrap();
    assert_eq!(message(&alice.store, &to_bob, &id).unwrap(), None);
    // Nothing is stored for what cannot be sent.
    let empty = outgoing::message(
        &alice.store,
        &alice.me,
        to_bob,
        "",
        Vec::new(),
        NOW,
        &mut alice.rng,
    );
    assert!(matches!(empty, Err(StateError::Invalid(_))));
    let huge = outgoing::message(
        &alice.store,
        &alice.me,
        to_bob,
        &"x".repeat(20_000),
        Vec::new(),
        NOW,
        &mut alice.rng,
    );
    assert!(matches!(huge, Err(StateError::Content(_))));
    assert!(history(&alice.store, to_bob, NOW).unwrap().is_empty());
}

#[test]
fn only_the_sender_edits_or_deletes_a_message() {
    let mut alice = Dev::new(ALICE, 1);
    let mut bob = Dev::new(BOB, 1);
    let (to_bob, to_alice) = (Conversation::Direct(BOB), Conversation::Direct(ALICE));
    let (id, out) = outgoing::message(
        &alice.store,
        &alice.me,
        to_bob,
        "first",
        Vec::new(),
        NOW,
        &mut alice.rng,
    )
    .unwrap();
    bob.receive(&alice.me, out.content());

    // Alice edits her message.
    let edit = outgoing::edit(&alice.store, to_bob, id, "second", NOW).unwrap();
    let applied = bob.receive(&alice.me, edit.content());
    assert_eq!(
        applied.events,
        vec![Event::Edited {
            conversation: to_alice,
            target: id,
            text: "second".into()
        }]
    );
    edit.sent(&alice.store).unwrap();
    for (dev, conversation) in [(&alice, to_bob), (&bob, to_alice)] {
        let m = dev.message(conversation, &id);
        assert_eq!((m.text.as_str(), m.edited), ("second", true));
    }

    // Bob may not: his own API refuses, and a forged edit or delete is rejected unapplied.
    assert!(matches!(
        outgoing::edit(&bob.store, to_alice, id, "bob was here", NOW),
        Err(StateError::Invalid(_))
    ));
    assert!(matches!(
        outgoing::delete(&bob.store, to_alice, id, NOW),
        Err(StateError::Invalid(_))
    ));
    let forged_edit = direct(
        ALICE,
        Body::Edit {
            target: id,
            text: "bob was here".into(),
        },
    );
    assert!(rejection(&alice.receive(&bob.me, &forged_edit)).contains("not the sender's"));
    let forged_delete = direct(ALICE, Body::Delete { target: id });
    assert!(rejection(&alice.receive(&bob.me, &forged_delete)).contains("not the sender's"));
    let m = alice.message(to_bob, &id);
    assert_eq!((m.text.as_str(), m.deleted), ("second", false));
    // Nor may anyone edit a message that does not exist.
    assert!(matches!(
        outgoing::edit(&alice.store, to_bob, [0; 16], "x", NOW),
        Err(StateError::Invalid(_))
    ));

    // Alice deletes it for everyone; a deleted message cannot be edited any more.
    let delete = outgoing::delete(&alice.store, to_bob, id, NOW).unwrap();
    let applied = bob.receive(&alice.me, delete.content());
    assert_eq!(
        applied.events,
        vec![Event::Deleted {
            conversation: to_alice,
            target: id
        }]
    );
    delete.sent(&alice.store).unwrap();
    for (dev, conversation) in [(&alice, to_bob), (&bob, to_alice)] {
        let m = dev.message(conversation, &id);
        assert!(m.deleted && m.text.is_empty() && m.attachment.is_empty());
    }
    assert!(matches!(
        outgoing::edit(&alice.store, to_bob, id, "revived", NOW),
        Err(StateError::Invalid(_))
    ));
    let late_edit = direct(
        BOB,
        Body::Edit {
            target: id,
            text: "revived".into(),
        },
    );
    assert!(has_rejection(&bob.receive(&alice.me, &late_edit)));
    assert!(bob.message(to_alice, &id).text.is_empty());
}

#[test]
fn disappearing_timers_apply_to_the_next_texts() {
    let mut alice = Dev::new(ALICE, 1);
    let mut bob = Dev::new(BOB, 1);
    let (to_bob, to_alice) = (Conversation::Direct(BOB), Conversation::Direct(ALICE));
    assert_eq!(timer(&alice.store, &to_bob).unwrap(), 0);

    let set = outgoing::timer(to_bob, 60, NOW);
    assert_eq!(
        bob.receive(&alice.me, set.content()).events,
        vec![Event::TimerChanged {
            conversation: to_alice,
            expire_secs: 60
        }]
    );
    set.sent(&alice.store).unwrap();
    assert_eq!(timer(&alice.store, &to_bob).unwrap(), 60);
    assert_eq!(timer(&bob.store, &to_alice).unwrap(), 60);

    // Alice's next text carries the timer; both sides drop it once it ran out.
    let (id, out) = outgoing::message(
        &alice.store,
        &alice.me,
        to_bob,
        "gone in a minute",
        Vec::new(),
        NOW,
        &mut alice.rng,
    )
    .unwrap();
    assert!(matches!(
        out.content().body,
        Body::Text {
            expire_secs: 60,
            ..
        }
    ));
    let received = bob.receive(&alice.me, out.content());
    assert_eq!(only_message(&received).expires_at, Some(NOW / 1000 + 60));
    assert_eq!(alice.message(to_bob, &id).expires_at, Some(NOW / 1000 + 60));
    // Bob's reply half a minute later disappears half a minute later.
    let (reply, out) = outgoing::message(
        &bob.store,
        &bob.me,
        to_alice,
        "a timer is per conversation, both sides",
        Vec::new(),
        NOW + 30_000,
        &mut bob.rng,
    )
    .unwrap();
    out.sent(&bob.store).unwrap();
    assert_eq!(
        bob.message(to_alice, &reply).expires_at,
        Some(NOW / 1000 + 90)
    );
    assert_eq!(
        history(&bob.store, to_alice, NOW + 59_999).unwrap().len(),
        2
    );
    let later = history(&bob.store, to_alice, NOW + 60_000).unwrap();
    assert_eq!(later.len(), 1);
    assert_eq!(later[0].message_id, reply);
    // Deleted from the store, not only hidden.
    assert_eq!(message(&bob.store, &to_alice, &id).unwrap(), None);
    assert!(
        history(&alice.store, to_bob, NOW + 60_000)
            .unwrap()
            .is_empty()
    );

    // Off again: texts keep.
    let off = outgoing::timer(to_bob, 0, NOW);
    bob.receive(&alice.me, off.content());
    off.sent(&alice.store).unwrap();
    let (id, out) = outgoing::message(
        &alice.store,
        &alice.me,
        to_bob,
        "kept",
        Vec::new(),
        NOW,
        &mut alice.rng,
    )
    .unwrap();
    bob.receive(&alice.me, out.content());
    assert_eq!(bob.message(to_alice, &id).expires_at, None);
}

#[test]
fn the_same_message_id_is_processed_once() {
    let mut bob = Dev::new(BOB, 1);
    let alice = DeviceAddress::new(ALICE, 1);
    let text = direct(BOB, text_body([1; 16], "once"));
    assert_eq!(bob.receive(&alice, &text).events.len(), 1);
    // The same content again (a resend under a new relay id, or another copy): no event, no
    // second receipt, the stored message unchanged.
    let again = Content {
        sent_at: NOW + 5,
        ..direct(BOB, text_body([1; 16], "twice"))
    };
    let applied = bob.receive(&alice, &again);
    assert!(applied.events.is_empty() && !applied.tasks_added);
    assert_eq!(bob.tasks().len(), 1);
    let m = bob.message(Conversation::Direct(ALICE), &[1; 16]);
    assert_eq!((m.text.as_str(), m.sent_at), ("once", NOW));
    assert_eq!(
        history(&bob.store, Conversation::Direct(ALICE), NOW)
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn contents_where_they_do_not_belong_are_refused() {
    let mut bob = Dev::new(BOB, 1);
    let alice = DeviceAddress::new(ALICE, 1);
    // Typing only as an ephemeral send, and an ephemeral send only for typing.
    let typing = direct(BOB, Body::Typing(true));
    assert_eq!(
        bob.receive_bytes(&alice, &typing.to_bytes().unwrap(), true)
            .events,
        vec![Event::Typing {
            conversation: Conversation::Direct(ALICE),
            from: ALICE,
            started: true
        }]
    );
    assert!(rejection(&bob.receive(&alice, &typing)).contains("ephemeral"));
    let text = direct(BOB, text_body([2; 16], "x"));
    assert!(
        rejection(&bob.receive_bytes(&alice, &text.to_bytes().unwrap(), true))
            .contains("ephemeral")
    );
    // Garbage, a group update outside a channel, group content kinds that are 1:1-only.
    assert!(rejection(&bob.receive_bytes(&alice, b"\x01garbage", false)).contains("malformed"));
    let update = direct(BOB, Body::GroupChange { change: vec![1] });
    assert!(rejection(&bob.receive(&alice, &update)).contains("1:1"));
    let group_text = Content {
        conversation: Conversation::Group([3; 16]),
        ..text
    };
    assert!(rejection(&bob.receive(&alice, &group_text)).contains("unexpected group content"));
    assert!(outgoing::typing(Conversation::Group([3; 16]), true, NOW).is_err());
    assert!(
        history(&bob.store, Conversation::Direct(ALICE), NOW)
            .unwrap()
            .is_empty()
    );
}

// ------------------------------------------------------------------------------------ groups

/// Alice creates a group with Bob and Carol; everyone joins and exchanges sender keys.
struct Group {
    alice: Dev,
    bob: Dev,
    carol: Dev,
    id: [u8; 16],
    channel: ChannelLog,
}

impl Group {
    fn new() -> Self {
        let mut alice = Dev::new(ALICE, 1);
        let mut bob = Dev::new(BOB, 1);
        let mut carol = Dev::new(CAROL, 1);
        let state = outgoing::create_group(
            &alice.store,
            &ALICE,
            "climbers",
            &[BOB, CAROL, BOB],
            &channel(1),
            &mut alice.rng,
        )
        .unwrap();
        let id = *state.id();
        assert_eq!(state.members(), &[ALICE, BOB, CAROL]);
        assert_eq!(state.current().number(), 1);

        let invite = outgoing::group_invite(&state, 0, NOW);
        let key = outgoing::sender_key(&mut alice.store, &id, 1, NOW, &mut alice.rng).unwrap();
        for dev in [&mut bob, &mut carol] {
            let joined = dev.receive(&alice.me, &invite);
            assert_eq!(
                joined.events,
                vec![Event::GroupUpdated {
                    group_id: id,
                    name: "climbers".into(),
                    members: vec![ALICE, BOB, CAROL]
                }]
            );
            assert_eq!(
                (joined.subscribe.as_slice(), joined.tasks_added),
                (&[id][..], true)
            );
            // Its own sender key goes to every member account (its own other devices too).
            assert_eq!(dev.tasks().len(), 3);
            let applied = dev.receive(&alice.me, &key);
            assert_eq!(applied.retry_groups, vec![id]);
        }
        bob.run_tasks(&mut [&mut alice, &mut carol]);
        carol.run_tasks(&mut [&mut alice, &mut bob]);
        Self {
            alice,
            bob,
            carol,
            id,
            channel: ChannelLog::default(),
        }
    }

    /// `dev` posts `body` to the group's current channel.
    fn post(dev: &mut Dev, channel: &mut ChannelLog, id: &[u8; 16], body: Body) -> u64 {
        let state = active_group(&dev.store, id).unwrap();
        let epoch = state.current().number();
        if !has_own_sender_session(&dev.store, id, epoch) {
            // Made, and not distributed to anyone.
            own_distribution(&mut dev.store, id, epoch, &mut dev.rng).unwrap();
        }
        let content = Content {
            sent_at: NOW,
            conversation: Conversation::Group(*id),
            body,
        };
        let entry = outgoing::group_entry(
            &mut dev.store,
            &dev.me,
            &state,
            &content,
            None,
            &mut dev.rng,
        )
        .unwrap();
        assert_eq!(entry.commitment, None);
        channel.post(entry.entry)
    }
}

#[test]
fn group_create_invite_and_talk() {
    let mut g = Group::new();
    let conversation = Conversation::Group(g.id);
    let seq = Group::post(
        &mut g.alice,
        &mut g.channel,
        &g.id,
        text_body([1; 16], "hello group"),
    );
    assert_eq!(seq, 1);
    for dev in [&mut g.bob, &mut g.carol] {
        let read = dev.read(&g.id, 1, &g.channel.after(0));
        let m = only_message(&read);
        assert_eq!(
            (m.conversation(), m.sender, m.outgoing),
            (conversation, ALICE, false)
        );
        // No delivery receipts in groups.
        assert!(dev.tasks().is_empty());
        assert_eq!(
            group(&dev.store, &g.id)
                .unwrap()
                .unwrap()
                .current()
                .cursor(),
            1
        );
    }
    // The poster's own entry is skipped; its record is its own.
    assert!(
        g.alice
            .read(&g.id, 1, &g.channel.after(0))
            .events
            .is_empty()
    );
    Group::post(&mut g.bob, &mut g.channel, &g.id, text_body([2; 16], "hi"));
    let read = g.alice.read(&g.id, 1, &g.channel.after(1));
    assert_eq!(only_message(&read).sender, BOB);
    // Receipts, reactions and edits work in groups too.
    Group::post(
        &mut g.bob,
        &mut g.channel,
        &g.id,
        Body::Reaction {
            target: [1; 16],
            emoji: "🧗".into(),
            remove: false,
        },
    );
    let read = g.alice.read(&g.id, 1, &g.channel.after(2));
    assert!(matches!(
        read.events.as_slice(),
        [Event::Reaction { from: BOB, .. }]
    ));
    // Carol may not edit Alice's message.
    Group::post(
        &mut g.carol,
        &mut g.channel,
        &g.id,
        Body::Edit {
            target: [1; 16],
            text: "carol's now".into(),
        },
    );
    assert!(has_rejection(&g.bob.read(&g.id, 1, &g.channel.after(1))));
    assert_eq!(g.bob.message(conversation, &[1; 16]).text, "hello group");

    let info = groups(&g.bob.store).unwrap();
    assert_eq!(
        info,
        vec![GroupInfo {
            id: g.id,
            name: "climbers".into(),
            members: vec![ALICE, BOB, CAROL],
            epoch: 1,
            active: true,
            admin: false
        }]
    );
    assert!(groups(&g.alice.store).unwrap()[0].admin);
    assert_eq!(
        channel_index(&g.bob.store).unwrap().get(&[1; 16]),
        Some(&(g.id, 1))
    );
}

#[test]
fn the_same_channel_entry_is_processed_once() {
    let mut g = Group::new();
    Group::post(
        &mut g.alice,
        &mut g.channel,
        &g.id,
        text_body([1; 16], "once"),
    );
    let entries = g.channel.after(0);
    assert_eq!(g.bob.read(&g.id, 1, &entries).events.len(), 1);
    // The same position again: skipped by the cursor.
    assert!(g.bob.read(&g.id, 1, &entries).events.is_empty());
    // The same entry at a new position (a relay replaying it): the sender-key chain refuses.
    g.channel.post(entries[0].entry.clone());
    let replayed = g.bob.read(&g.id, 1, &g.channel.after(1));
    assert_eq!(
        replayed.events,
        vec![Event::Rejected {
            reason: RejectReason::Replayed
        }]
    );
    // A tampered entry is refused as such and advances the cursor.
    let mut tampered = entries[0].entry.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    let seq = g.channel.post(tampered);
    let applied = g.bob.read(&g.id, 1, &g.channel.after(seq - 1));
    assert_eq!(
        applied.events,
        vec![Event::Rejected {
            reason: RejectReason::Tampered
        }]
    );
    assert_eq!(
        group(&g.bob.store, &g.id)
            .unwrap()
            .unwrap()
            .current()
            .cursor(),
        seq
    );
    assert_eq!(
        history(&g.bob.store, Conversation::Group(g.id), NOW)
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn removing_a_member_starts_an_epoch_the_removed_member_never_sees() {
    let mut g = Group::new();
    let conversation = Conversation::Group(g.id);
    Group::post(
        &mut g.alice,
        &mut g.channel,
        &g.id,
        text_body([1; 16], "before"),
    );

    // Alice removes Carol: the signed change on the old channel, then epoch 2 on a new one.
    let (state, invite, key) = g.remove(&CAROL, 2);
    assert_eq!(state.current().number(), 2);
    assert_eq!(state.readable_epochs().len(), 2);

    // Carol reads the old channel: the first message, then her removal.
    let read = g.carol.read(&g.id, 1, &g.channel.after(0));
    assert!(matches!(read.events[0], Event::Message(_)));
    assert_eq!(read.events[1], Event::RemovedFromGroup { group_id: g.id });
    let carols = group(&g.carol.store, &g.id).unwrap().unwrap();
    assert!(!carols.active());
    assert_eq!(carols.current().number(), 1);
    assert!(carols.readable_epochs().is_empty());
    assert!(matches!(
        active_group(&g.carol.store, &g.id),
        Err(StateError::Invalid(_))
    ));

    // Bob reads the change (and waits for his invite), then takes the invite and Alice's new
    // key.
    let read = g.bob.read(&g.id, 1, &g.channel.after(0));
    assert_eq!(read.events.len(), 1, "{read:?}");
    let moved = g.bob.receive(&g.alice.me, &invite);
    assert_eq!(
        moved.events,
        vec![Event::GroupUpdated {
            group_id: g.id,
            name: "climbers".into(),
            members: vec![ALICE, BOB]
        }]
    );
    assert_eq!(moved.subscribe, vec![g.id]);
    assert!(g.bob.receive(&g.alice.me, &key).events.is_empty());
    let bobs = group(&g.bob.store, &g.id).unwrap().unwrap();
    assert_eq!(bobs.current().number(), 2);
    // The old channel is still read (entries posted before the switch are not lost).
    assert_eq!(
        bobs.readable_epochs()
            .iter()
            .map(|e| e.number())
            .collect::<Vec<_>>(),
        vec![1, 2]
    );
    // Bob's sender key for epoch 2 goes to the remaining members only.
    let to: Vec<[u8; 16]> = g
        .bob
        .tasks()
        .iter()
        .filter_map(|t| match t {
            Task::SenderKey {
                epoch: 2, account, ..
            } => Some(*account),
            _ => None,
        })
        .collect();
    assert_eq!(to.len(), 2);
    assert!(!to.contains(&CAROL));

    // Epoch 2 traffic: Bob reads it, Carol has nothing to read it with.
    let mut second = ChannelLog::default();
    Group::post(
        &mut g.alice,
        &mut second,
        &g.id,
        text_body([2; 16], "after"),
    );
    let read = g.bob.read(&g.id, 2, &second.after(0));
    assert_eq!(only_message(&read).text, "after");
    let nothing = g.carol.read(&g.id, 2, &second.after(0));
    assert!(nothing.events.is_empty());
    // Not even with the new channel's entries posted to the old one.
    g.channel.post(second.0[0].clone());
    let refused = g.carol.read(&g.id, 1, &g.channel.after(2));
    assert_eq!(
        refused.events,
        vec![Event::Rejected {
            reason: RejectReason::Tampered
        }]
    );
    assert!(
        message(&g.carol.store, &conversation, &[2; 16])
            .unwrap()
            .is_none()
    );
    assert_eq!(
        group(&g.carol.store, &g.id)
            .unwrap()
            .unwrap()
            .current()
            .number(),
        1
    );
    // Tasks for an epoch that is no longer current are dropped as done.
    assert_eq!(
        super::tasks::task_send(
            &mut g.bob.store,
            &Task::SenderKey {
                group: g.id,
                epoch: 1,
                account: ALICE
            },
            NOW,
            &mut g.bob.rng
        )
        .unwrap(),
        None
    );
}

impl Group {
    fn post_content(dev: &mut Dev, channel: &mut ChannelLog, id: &[u8; 16], content: &Content) {
        Self::post(dev, channel, id, content.body.clone());
    }
}

impl Group {
    /// Alice (the admin) completes a member change as a driver does: the signed change posted
    /// to the current channel, the epoch started over `channel(n)`, the state stored. Returns
    /// the state, the invite and Alice's sender key for the new epoch.
    fn finish(&mut self, change: MemberChange, n: u8) -> (GroupState, Content, Content) {
        Self::post_content(&mut self.alice, &mut self.channel, &self.id, &change.update);
        let mut state = change.state;
        state.start_epoch(&channel(n)).unwrap();
        save_group(&self.alice.store, &state).unwrap();
        let invite = outgoing::group_invite(&state, 0, NOW);
        let epoch = state.current().number();
        let key = outgoing::sender_key(
            &mut self.alice.store,
            &self.id,
            epoch,
            NOW,
            &mut self.alice.rng,
        )
        .unwrap();
        (state, invite, key)
    }

    /// Alice removes `account`; the new epoch's channel is `channel(n)`.
    fn remove(&mut self, account: &[u8; 16], n: u8) -> (GroupState, Content, Content) {
        let change = outgoing::remove_member(
            &self.alice.store,
            &ALICE,
            &self.id,
            account,
            NOW,
            &mut self.alice.rng,
        )
        .unwrap();
        self.finish(change, n)
    }
}

/// A change of group `id` to `epoch` signed with `key` (the group's or not), naming `admin`
/// as the admin account and committing to `group_key`.
fn signed_change(
    key: &GroupAdminKey,
    id: [u8; 16],
    epoch: u32,
    admin: [u8; 16],
    members: Vec<[u8; 16]>,
    group_key: &[u8; 32],
) -> Vec<u8> {
    let body = GroupChangeBody {
        group_id: id,
        epoch,
        admin_account: admin,
        admin_key: key.public(),
        key_commitment: group_key_commitment(&id, epoch, group_key),
        name: "climbers".into(),
        members,
    };
    key.sign(&body).unwrap().to_bytes().to_vec()
}

/// An invite carrying `change`, with `group_key` and a channel made of `n`.
fn invite_of(id: [u8; 16], change: Vec<u8>, group_key: [u8; 32], n: u8) -> Content {
    Content {
        sent_at: NOW,
        conversation: Conversation::Group(id),
        body: Body::GroupInvite(GroupInvite {
            change,
            channel_id: [n; 16],
            read_token: [n; 32],
            write_token: [n; 32],
            group_key,
            after: 0,
        }),
    }
}

fn refusal(applied: &Applied) -> GroupChangeRefusal {
    match applied.events.as_slice() {
        [Event::GroupChangeRefused { reason, .. }] => reason.clone(),
        other => panic!("expected one refused group change, got {other:?}"),
    }
}

/// The group's admin key, from a device that holds it.
fn admin_key_of(dev: &Dev, id: &[u8; 16]) -> GroupAdminKey {
    let state = group(&dev.store, id).unwrap().unwrap();
    GroupAdminKey::from_seed(&state.admin_seed().unwrap())
}

/// `dev` still has the group as created: epoch 1 on channel 1, all three members.
fn assert_unchanged(dev: &Dev, id: &[u8; 16]) {
    let state = group(&dev.store, id).unwrap().unwrap();
    assert_eq!(
        (
            state.current().number(),
            state.current().channel_id(),
            state.members(),
            state.active()
        ),
        (1, &[1; 16], &[ALICE, BOB, CAROL][..], true)
    );
}

const GROUP_KEY: [u8; 32] = [5; 32];

#[test]
fn a_forged_change_by_a_non_admin_is_refused() {
    let mut g = Group::new();
    // Bob is a member, not the admin: his device does not sign changes.
    assert!(matches!(
        outgoing::add_member(&g.bob.store, &g.id, &MALLORY, NOW, &mut g.bob.rng),
        Err(StateError::Invalid(m)) if m.contains("admin")
    ));
    assert!(matches!(
        outgoing::remove_member(&g.bob.store, &BOB, &g.id, &CAROL, NOW, &mut g.bob.rng),
        Err(StateError::Invalid(_))
    ));
    // He forges changes with a key of his own, naming himself or Alice as the admin account.
    let bobs_key = GroupAdminKey::generate(&mut g.bob.rng);
    let everyone = vec![ALICE, BOB, CAROL, MALLORY];
    for admin in [BOB, ALICE] {
        let forged = signed_change(&bobs_key, g.id, 2, admin, everyone.clone(), &GROUP_KEY);
        let applied = g
            .carol
            .receive(&g.bob.me, &invite_of(g.id, forged, GROUP_KEY, 9));
        assert_eq!(refusal(&applied), GroupChangeRefusal::NotAdmin);
    }
    // Naming Alice's admin key over his own signature does not verify.
    let alices = admin_key_of(&g.alice, &g.id).public();
    let mut forged = signed_change(&bobs_key, g.id, 2, ALICE, everyone.clone(), &GROUP_KEY);
    forged[38..70].copy_from_slice(&alices);
    let applied = g
        .carol
        .receive(&g.bob.me, &invite_of(g.id, forged, GROUP_KEY, 9));
    assert!(matches!(refusal(&applied), GroupChangeRefusal::Invalid(_)));
    // Posted to the channel to remove Carol: refused there too; Carol stays a member.
    let forged = signed_change(&bobs_key, g.id, 2, ALICE, vec![ALICE, BOB], &GROUP_KEY);
    Group::post(
        &mut g.bob,
        &mut g.channel,
        &g.id,
        Body::GroupChange { change: forged },
    );
    let read = g.carol.read(&g.id, 1, &g.channel.after(0));
    assert_eq!(refusal(&read), GroupChangeRefusal::NotAdmin);
    // Alice's genuine next change forwarded by Bob (with a channel of his) is refused: invites
    // come from the admin account; and the admin's with another group key than it commits to.
    let admin = admin_key_of(&g.alice, &g.id);
    let genuine = signed_change(&admin, g.id, 2, ALICE, vec![ALICE, BOB, CAROL], &GROUP_KEY);
    let forwarded = invite_of(g.id, genuine.clone(), GROUP_KEY, 9);
    assert_eq!(
        refusal(&g.carol.receive(&g.bob.me, &forwarded)),
        GroupChangeRefusal::NotFromAdmin
    );
    let swapped = invite_of(g.id, genuine, [6; 32], 9);
    assert_eq!(
        refusal(&g.carol.receive(&g.alice.me, &swapped)),
        GroupChangeRefusal::KeyMismatch
    );
    for dev in [&g.bob, &g.carol] {
        assert_unchanged(dev, &g.id);
    }
}

#[test]
fn epoch_steps_other_than_one_are_refused() {
    let mut g = Group::new();
    let admin = admin_key_of(&g.alice, &g.id);
    let members = vec![ALICE, BOB, CAROL];
    // Even the admin's own signature does not make a jump acceptable: +2, far, u32::MAX.
    for epoch in [3, 1_000, u32::MAX] {
        let change = signed_change(&admin, g.id, epoch, ALICE, members.clone(), &GROUP_KEY);
        let applied = g
            .bob
            .receive(&g.alice.me, &invite_of(g.id, change, GROUP_KEY, 9));
        assert_eq!(
            refusal(&applied),
            GroupChangeRefusal::EpochGap {
                current: 1,
                got: epoch
            }
        );
        assert!(!applied.tasks_added);
    }
    assert_unchanged(&g.bob, &g.id);
    // Exactly the next epoch is accepted.
    let change = signed_change(&admin, g.id, 2, ALICE, members, &GROUP_KEY);
    let moved = g
        .bob
        .receive(&g.alice.me, &invite_of(g.id, change, GROUP_KEY, 9));
    assert!(matches!(
        moved.events.as_slice(),
        [Event::GroupUpdated { .. }]
    ));
    let bobs = group(&g.bob.store, &g.id).unwrap().unwrap();
    assert_eq!(
        (bobs.current().number(), bobs.current().channel_id()),
        (2, &[9; 16])
    );
}

#[test]
fn a_removed_members_forged_invite_is_refused() {
    let mut g = Group::new();
    let (_, invite, key) = g.remove(&CAROL, 2);
    g.bob.receive(&g.alice.me, &invite);
    g.bob.receive(&g.alice.me, &key);
    let read = g.carol.read(&g.id, 1, &g.channel.after(0));
    assert_eq!(
        read.events,
        vec![Event::RemovedFromGroup { group_id: g.id }]
    );

    // Carol tries to move Bob to an epoch (and channel) of hers, listing herself again.
    let carols_key = GroupAdminKey::generate(&mut g.carol.rng);
    for epoch in [2, 3] {
        let forged = signed_change(
            &carols_key,
            g.id,
            epoch,
            CAROL,
            vec![ALICE, BOB, CAROL],
            &GROUP_KEY,
        );
        let applied = g
            .bob
            .receive(&g.carol.me, &invite_of(g.id, forged, GROUP_KEY, 9));
        assert_eq!(refusal(&applied), GroupChangeRefusal::NotAdmin);
    }
    // The genuine epoch-1 change she holds, with a channel of hers: an old epoch.
    let mut replay = group(&g.carol.store, &g.id).unwrap().unwrap().invite(0);
    replay.channel_id = [9; 16];
    let replay = Content {
        sent_at: NOW,
        conversation: Conversation::Group(g.id),
        body: Body::GroupInvite(replay),
    };
    assert_eq!(
        refusal(&g.bob.receive(&g.carol.me, &replay)),
        GroupChangeRefusal::Stale { current: 2, got: 1 }
    );
    let bobs = group(&g.bob.store, &g.id).unwrap().unwrap();
    assert_eq!(
        (
            bobs.current().number(),
            bobs.current().channel_id(),
            bobs.members()
        ),
        (2, &[2; 16], &[ALICE, BOB][..])
    );
}

#[test]
fn replayed_and_conflicting_changes_are_refused() {
    let mut g = Group::new();
    let first = outgoing::group_invite(&group(&g.alice.store, &g.id).unwrap().unwrap(), 0, NOW);
    let (_, invite, _) = g.remove(&CAROL, 2);
    assert!(matches!(
        g.bob.receive(&g.alice.me, &invite).events.as_slice(),
        [Event::GroupUpdated { .. }]
    ));
    // The same invite again (a re-send, byte for byte): nothing happens, nothing is refused.
    let again = g.bob.receive(&g.alice.me, &invite);
    assert!(again.events.is_empty() && !again.tasks_added);
    // The creation invite again: an old epoch.
    assert_eq!(
        refusal(&g.bob.receive(&g.alice.me, &first)),
        GroupChangeRefusal::Stale { current: 2, got: 1 }
    );
    // Another change for epoch 2, even signed by the admin: a conflict.
    let admin = admin_key_of(&g.alice, &g.id);
    let other = signed_change(
        &admin,
        g.id,
        2,
        ALICE,
        vec![ALICE, BOB, MALLORY],
        &GROUP_KEY,
    );
    assert_eq!(
        refusal(
            &g.bob
                .receive(&g.alice.me, &invite_of(g.id, other, GROUP_KEY, 9))
        ),
        GroupChangeRefusal::Conflict(2)
    );
    // Bob moves on to epoch 3 by invite before reading the old channel: the removal change
    // read there late is older than his epoch, history rather than an attempt (no event).
    let change = signed_change(&admin, g.id, 3, ALICE, vec![ALICE, BOB], &GROUP_KEY);
    let moved = g
        .bob
        .receive(&g.alice.me, &invite_of(g.id, change, GROUP_KEY, 9));
    assert_eq!(moved.subscribe, vec![g.id]);
    let read = g.bob.read(&g.id, 1, &g.channel.after(0));
    assert!(read.events.is_empty(), "{read:?}");
    let bobs = group(&g.bob.store, &g.id).unwrap().unwrap();
    assert_eq!(
        (bobs.current().number(), bobs.members()),
        (3, &[ALICE, BOB][..])
    );
}

#[test]
fn the_admin_key_reaches_the_admins_other_devices() {
    let mut alice = Dev::new(ALICE, 1);
    let mut alice2 = Dev::new(ALICE, 2);
    let mut bob = Dev::new(BOB, 1);
    let state = outgoing::create_group(
        &alice.store,
        &ALICE,
        "own",
        &[BOB],
        &channel(1),
        &mut alice.rng,
    )
    .unwrap();
    let id = *state.id();
    let invite = outgoing::group_invite(&state, 0, NOW);
    alice2.receive(&alice.me, &invite);
    bob.receive(&alice.me, &invite);
    assert!(!groups(&alice2.store).unwrap()[0].admin);
    let copy = outgoing::admin_key(&state, NOW).unwrap();
    assert!(!format!("{copy:?}").contains(&format!("{:?}", *state.admin_seed().unwrap())));
    // To another account, or another key: refused.
    assert_eq!(
        refusal(&bob.receive(&alice.me, &copy)),
        GroupChangeRefusal::NotFromAdmin
    );
    let wrong = Content {
        body: Body::GroupAdminKey { seed: [3; 32] },
        ..copy.clone()
    };
    assert_eq!(
        refusal(&alice2.receive(&alice.me, &wrong)),
        GroupChangeRefusal::NotAdmin
    );
    assert!(outgoing::admin_key(&group(&bob.store, &id).unwrap().unwrap(), NOW).is_none());
    // The copy: Alice's second device is an admin device too, and its changes verify.
    let applied = alice2.receive(&alice.me, &copy);
    assert!(matches!(
        applied.events.as_slice(),
        [Event::GroupUpdated { .. }]
    ));
    assert!(groups(&alice2.store).unwrap()[0].admin);
    let change = outgoing::add_member(&alice2.store, &id, &CAROL, NOW, &mut alice2.rng).unwrap();
    let mut next = change.state;
    next.start_epoch(&channel(2)).unwrap();
    let moved = bob.receive(&alice2.me, &outgoing::group_invite(&next, 0, NOW));
    assert!(matches!(
        moved.events.as_slice(),
        [Event::GroupUpdated { members, .. }] if members.len() == 3
    ));
}

#[test]
fn a_group_at_the_last_epoch_starts_no_other() {
    let alice = Dev::new(ALICE, 1);
    let mut alice2 = Dev::new(ALICE, 2);
    let key = GroupAdminKey::generate(&mut alice2.rng);
    let id = [8; 16];
    // A device learning a group late accepts its current epoch, whatever it is.
    let change = signed_change(&key, id, u32::MAX, ALICE, vec![ALICE, BOB], &GROUP_KEY);
    alice2.receive(&alice.me, &invite_of(id, change, GROUP_KEY, 9));
    let copy = Content {
        sent_at: NOW,
        conversation: Conversation::Group(id),
        body: Body::GroupAdminKey { seed: *key.seed() },
    };
    alice2.receive(&alice.me, &copy);
    assert!(groups(&alice2.store).unwrap()[0].admin);
    // No change can follow it: an epoch number is never reused.
    assert!(matches!(
        outgoing::remove_member(&alice2.store, &ALICE, &id, &BOB, NOW, &mut alice2.rng),
        Err(StateError::Invalid(m)) if m.contains("used up")
    ));
}

#[test]
fn groups_stored_before_signed_changes_stay_readable_and_frozen() {
    let mut g = Group::new();
    // Alice's and Bob's records as an earlier version stored them: no change, no admin key.
    for dev in [&mut g.alice, &mut g.bob] {
        let state = group(&dev.store, &g.id).unwrap().unwrap();
        let mut json = serde_json::to_value(&state).unwrap();
        let record = json.as_object_mut().unwrap();
        record.remove("change");
        record.remove("admin_seed");
        let bytes = serde_json::to_vec(&json).unwrap();
        dev.store
            .put(super::records::GROUPS, &g.id, &bytes)
            .unwrap();
    }
    let legacy = group(&g.bob.store, &g.id).unwrap().unwrap();
    assert!(legacy.active() && !legacy.info().admin);
    // Messages are still sent and read.
    Group::post(
        &mut g.alice,
        &mut g.channel,
        &g.id,
        text_body([1; 16], "still here"),
    );
    let read = g.bob.read(&g.id, 1, &g.channel.after(0));
    assert_eq!(only_message(&read).text, "still here");
    // Its membership no longer changes: no member signs a change, none is accepted.
    assert!(matches!(
        outgoing::add_member(&g.alice.store, &g.id, &MALLORY, NOW, &mut g.alice.rng),
        Err(StateError::Invalid(m)) if m.contains("re-create")
    ));
    let key = GroupAdminKey::generate(&mut g.alice.rng);
    let change = signed_change(&key, g.id, 2, ALICE, vec![ALICE, BOB], &GROUP_KEY);
    let applied = g
        .bob
        .receive(&g.alice.me, &invite_of(g.id, change, GROUP_KEY, 9));
    assert_eq!(refusal(&applied), GroupChangeRefusal::LegacyGroup);
    assert!(group(&g.bob.store, &g.id).unwrap().unwrap().active());
}

#[test]
fn a_sender_key_before_the_invite_is_applied_when_the_invite_arrives() {
    let mut alice = Dev::new(ALICE, 1);
    let mut bob = Dev::new(BOB, 1);
    let mut carol = Dev::new(CAROL, 1);
    let state = outgoing::create_group(
        &alice.store,
        &ALICE,
        "early",
        &[BOB, CAROL],
        &channel(1),
        &mut alice.rng,
    )
    .unwrap();
    let id = *state.id();
    let mut log = ChannelLog::default();

    // Carol joined first and already sent her key and a message; Bob gets both before
    // Alice's invite.
    carol.receive(&alice.me, &outgoing::group_invite(&state, 0, NOW));
    let carols_key = outgoing::sender_key(&mut carol.store, &id, 1, NOW, &mut carol.rng).unwrap();
    let early = bob.receive(&carol.me, &carols_key);
    assert!(early.events.is_empty() && early.retry_groups.is_empty());
    assert_eq!(bob.store.entries(PENDING_SENDER_KEYS).unwrap().len(), 1);
    assert!(group(&bob.store, &id).unwrap().is_none());
    // Mallory, no member, slips in a key for the same epoch.
    let mallory = DeviceAddress::new(MALLORY, 1);
    let mallorys = GroupSenderSession::new(distribution_id(&id, 1), &mut bob.rng);
    let mallorys_key = Content {
        sent_at: NOW,
        conversation: Conversation::Group(id),
        body: Body::SenderKey {
            epoch: 1,
            distribution: mallorys.distribution_message().to_bytes().to_vec(),
        },
    };
    assert!(bob.receive(&mallory, &mallorys_key).events.is_empty());
    // A key for another group's distribution id is refused outright.
    let wrong = Content {
        conversation: Conversation::Group([8; 16]),
        ..carols_key.clone()
    };
    assert!(rejection(&bob.receive(&carol.me, &wrong)).contains("another group"));

    // The invite arrives: Carol's key is applied (her message reads at once), Mallory's
    // dropped, nothing left over.
    let mut joined = bob.receive(&alice.me, &outgoing::group_invite(&state, 0, NOW));
    bob.retry(&mut joined);
    assert!(bob.store.entries(PENDING_SENDER_KEYS).unwrap().is_empty());
    assert!(super::groups::has_sender_key(&bob.store, &id, 1, &carol.me));
    assert!(!super::groups::has_sender_key(&bob.store, &id, 1, &mallory));
    Group::post(&mut carol, &mut log, &id, text_body([1; 16], "carol first"));
    let read = bob.read(&id, 1, &log.after(0));
    assert_eq!(only_message(&read).sender, CAROL);

    // Keys for an epoch Bob has left behind are refused, not kept.
    let stale = Content {
        body: Body::SenderKey {
            epoch: 0,
            distribution: carols_key_for(&mut carol, &id, 0),
        },
        ..carols_key
    };
    assert!(rejection(&bob.receive(&carol.me, &stale)).contains("old epoch"));
}

fn carols_key_for(carol: &mut Dev, id: &[u8; 16], epoch: u32) -> Vec<u8> {
    own_distribution(&mut carol.store, id, epoch, &mut carol.rng)
        .unwrap()
        .to_vec()
}

#[test]
fn early_sender_keys_are_capped() {
    let mut bob = Dev::new(BOB, 1);
    // The space full (keys of groups Bob has not joined, each from another device).
    for n in 0..MAX_PENDING_SENDER_KEYS as u32 {
        let mut key = [5u8; 16].to_vec();
        key.extend_from_slice(&1u32.to_be_bytes());
        key.extend_from_slice(&CAROL);
        key.extend_from_slice(&n.to_be_bytes());
        bob.store.put(PENDING_SENDER_KEYS, &key, b"skdm").unwrap();
    }
    let id = [6u8; 16];
    let session = GroupSenderSession::new(distribution_id(&id, 1), &mut bob.rng);
    let key = Content {
        sent_at: NOW,
        conversation: Conversation::Group(id),
        body: Body::SenderKey {
            epoch: 1,
            distribution: session.distribution_message().to_bytes().to_vec(),
        },
    };
    let refused = bob.receive(&DeviceAddress::new(ALICE, 1), &key);
    assert!(rejection(&refused).contains("too many early sender keys"));
    assert_eq!(
        bob.store.entries(PENDING_SENDER_KEYS).unwrap().len(),
        MAX_PENDING_SENDER_KEYS
    );
}

/// One contact cannot fill the early sender keys' room: at most
/// `MAX_PENDING_SENDER_KEYS_PER_CONTACT` are kept from it, and another contact's key is still
/// kept after it was refused.
#[test]
fn early_sender_keys_are_capped_per_contact() {
    let mut bob = Dev::new(BOB, 1);
    let kept = |a: &Applied| !a.events.iter().any(|e| matches!(e, Event::Rejected { .. }));
    let key_for = |group: [u8; 16], rng: &mut _| Content {
        sent_at: NOW,
        conversation: Conversation::Group(group),
        body: Body::SenderKey {
            epoch: 1,
            distribution: GroupSenderSession::new(distribution_id(&group, 1), rng)
                .distribution_message()
                .to_bytes()
                .to_vec(),
        },
    };
    let groups: Vec<[u8; 16]> = (0..=MAX_PENDING_SENDER_KEYS_PER_CONTACT as u8)
        .map(|n| [n + 1; 16])
        .collect();
    // Carol's devices 1 and 2 share one contact's room.
    for (n, group) in groups[..MAX_PENDING_SENDER_KEYS_PER_CONTACT]
        .iter()
        .enumerate()
    {
        let device = 1 + (n % 2) as u32;
        let content = key_for(*group, &mut bob.rng);
        let applied = bob.receive(&DeviceAddress::new(CAROL, device), &content);
        assert!(kept(&applied), "{n}: {:?}", applied.events);
    }
    let content = key_for(groups[MAX_PENDING_SENDER_KEYS_PER_CONTACT], &mut bob.rng);
    let refused = bob.receive(&DeviceAddress::new(CAROL, 3), &content);
    assert!(rejection(&refused).contains("from this contact"));
    assert_eq!(
        bob.store.entries(PENDING_SENDER_KEYS).unwrap().len(),
        MAX_PENDING_SENDER_KEYS_PER_CONTACT
    );
    // A key Carol already has kept may be replaced.
    let again = key_for(groups[0], &mut bob.rng);
    assert!(kept(&bob.receive(&DeviceAddress::new(CAROL, 1), &again)));
    // Another contact still gets its key kept.
    let alices = key_for(groups[MAX_PENDING_SENDER_KEYS_PER_CONTACT], &mut bob.rng);
    assert!(kept(&bob.receive(&DeviceAddress::new(ALICE, 1), &alices)));
    assert_eq!(
        bob.store.entries(PENDING_SENDER_KEYS).unwrap().len(),
        MAX_PENDING_SENDER_KEYS_PER_CONTACT + 1
    );
}

#[test]
fn entries_wait_for_their_senders_key_and_are_released_when_it_arrives() {
    let mut alice = Dev::new(ALICE, 1);
    let mut bob = Dev::new(BOB, 1);
    let mut carol = Dev::new(CAROL, 1);
    let state = outgoing::create_group(
        &alice.store,
        &ALICE,
        "pending",
        &[BOB, CAROL],
        &channel(1),
        &mut alice.rng,
    )
    .unwrap();
    let id = *state.id();
    let mut log = ChannelLog::default();
    bob.receive(&alice.me, &outgoing::group_invite(&state, 0, NOW));
    carol.receive(&alice.me, &outgoing::group_invite(&state, 0, NOW));
    let key = outgoing::sender_key(&mut alice.store, &id, 1, NOW, &mut alice.rng).unwrap();
    Group::post(&mut alice, &mut log, &id, text_body([1; 16], "one"));
    Group::post(&mut alice, &mut log, &id, text_body([2; 16], "two"));

    // Bob reads the channel before Alice's key arrived: kept, cursor advanced, no event.
    let read = bob.read(&id, 1, &log.after(0));
    assert!(read.events.is_empty());
    assert_eq!(bob.store.entries(GROUP_PENDING).unwrap().len(), 2);
    assert_eq!(
        group(&bob.store, &id).unwrap().unwrap().current().cursor(),
        2
    );
    // Retrying without the key changes nothing.
    assert!(
        retry_pending(&mut bob.store, &bob.me, &id, NOW, &mut bob.rng)
            .unwrap()
            .is_empty()
    );
    assert_eq!(bob.store.entries(GROUP_PENDING).unwrap().len(), 2);

    // The key arrives: both entries are released, in channel order.
    let mut applied = bob.receive(&alice.me, &key);
    assert_eq!(applied.retry_groups, vec![id]);
    bob.retry(&mut applied);
    let texts: Vec<&str> = applied
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Message(m) => Some(m.text.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(texts, ["one", "two"]);
    assert!(bob.store.entries(GROUP_PENDING).unwrap().is_empty());

    // At most MAX_PENDING_PER_GROUP entries wait per group: with the space full, an entry of
    // Carol (whose key Bob never got) is not kept.
    for seq in 0..MAX_PENDING_PER_GROUP as u64 {
        let key = super::groups::pending_key(&id, 1, 1000 + seq);
        bob.store.put(GROUP_PENDING, &key, b"x").unwrap();
    }
    let seq = Group::post(&mut carol, &mut log, &id, text_body([3; 16], "three"));
    assert!(bob.read(&id, 1, &log.after(seq - 1)).events.is_empty());
    let kept = bob.store.entries(GROUP_PENDING).unwrap();
    assert_eq!(kept.len(), MAX_PENDING_PER_GROUP);
    assert!(kept.iter().all(|(_, v)| v.as_slice() == b"x"));
}

#[test]
fn adding_a_member_starts_an_epoch_every_member_moves_to() {
    let mut g = Group::new();
    Group::post(
        &mut g.alice,
        &mut g.channel,
        &g.id,
        text_body([1; 16], "before"),
    );
    assert!(matches!(
        outgoing::add_member(&g.alice.store, &g.id, &BOB, NOW, &mut g.alice.rng),
        Err(StateError::Invalid(_))
    ));
    let change =
        outgoing::add_member(&g.alice.store, &g.id, &MALLORY, NOW, &mut g.alice.rng).unwrap();
    let (state, invite, key) = g.finish(change, 2);
    assert_eq!(
        (state.current().number(), state.members()),
        (2, &[ALICE, BOB, CAROL, MALLORY][..])
    );
    // Members see the change on the channel and wait for the invite that carries the keys.
    let read = g.bob.read(&g.id, 1, &g.channel.after(0));
    assert_eq!(read.events.len(), 1, "{read:?}");
    let mut mallory = Dev::new(MALLORY, 1);
    for dev in [&mut g.bob, &mut g.carol, &mut mallory] {
        let moved = dev.receive(&g.alice.me, &invite);
        assert!(
            matches!(moved.events.as_slice(), [Event::GroupUpdated { members, .. }] if members.len() == 4),
            "{moved:?}"
        );
        dev.receive(&g.alice.me, &key);
    }
    // Carol reads the old channel after her invite: the text, and the change she already
    // applied (nothing more).
    let read = g.carol.read(&g.id, 1, &g.channel.after(0));
    assert!(
        matches!(read.events.as_slice(), [Event::Message(m)] if m.text == "before"),
        "{read:?}"
    );
    // Every member device owes its epoch-2 key to every member, the new one included.
    assert!(g.bob.tasks().contains(&Task::SenderKey {
        group: g.id,
        epoch: 2,
        account: MALLORY
    }));
    // The new member reads the new epoch, not the history.
    let mut second = ChannelLog::default();
    Group::post(
        &mut g.alice,
        &mut second,
        &g.id,
        text_body([2; 16], "welcome"),
    );
    let read = mallory.read(&g.id, 2, &second.after(0));
    assert_eq!(only_message(&read).text, "welcome");
    assert_eq!(
        history(&mallory.store, Conversation::Group(g.id), NOW)
            .unwrap()
            .len(),
        1
    );
    // Removing oneself or a stranger is refused; so is a name beyond the limit.
    let rng = &mut g.alice.rng;
    assert!(outgoing::remove_member(&g.alice.store, &ALICE, &g.id, &ALICE, NOW, rng).is_err());
    assert!(outgoing::remove_member(&g.alice.store, &ALICE, &g.id, &[0x77; 16], NOW, rng).is_err());
    assert!(matches!(
        outgoing::create_group(
            &g.alice.store,
            &ALICE,
            &"n".repeat(300),
            &[BOB],
            &channel(4),
            rng
        ),
        Err(StateError::Content(_))
    ));
}

#[test]
fn stored_records_keep_their_json_layout() {
    // PROTOCOL §13.6: these bytes are on every device's disk.
    let contact = Contact {
        account: ALICE,
        username: Some("alice".into()),
        card_sent: true,
        blocked: false,
    };
    assert_eq!(
        serde_json::to_string(&contact).unwrap(),
        format!(
            r#"{{"account":"{}","username":"alice","card_sent":true}}"#,
            hex::encode(ALICE)
        )
    );
    let blocked = Contact {
        blocked: true,
        ..contact
    };
    assert_eq!(
        serde_json::to_string(&blocked).unwrap(),
        format!(
            r#"{{"account":"{}","username":"alice","card_sent":true,"blocked":true}}"#,
            hex::encode(ALICE)
        )
    );
    // A record from before blocking reads as not blocked.
    let old: Contact = serde_json::from_str(&format!(
        r#"{{"account":"{}","username":null,"card_sent":false}}"#,
        hex::encode(ALICE)
    ))
    .unwrap();
    assert!(!old.blocked);
    let task = Task::Delivered {
        account: BOB,
        message_id: [1; 16],
    };
    assert_eq!(
        serde_json::to_string(&task).unwrap(),
        format!(
            r#"{{"task":"Delivered","account":"{}","message_id":"{}"}}"#,
            hex::encode(BOB),
            hex::encode([1u8; 16])
        )
    );
    let state = GroupState::create(
        [2; 16],
        "g".into(),
        vec![ALICE],
        ALICE,
        &channel(1),
        &mut ChaCha20Rng::from_seed([0; 32]),
    )
    .unwrap();
    let json: serde_json::Value = serde_json::to_value(&state).unwrap();
    assert_eq!(json["id"], hex::encode([2u8; 16]));
    assert_eq!(json["current"]["epoch"], 1);
    assert_eq!(json["current"]["channel_id"], hex::encode([1u8; 16]));
    assert_eq!(
        json["current"]["read_token"],
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, [2u8; 32])
    );
    assert_eq!(json["current"]["cursor"], 0);
    assert_eq!(json["old"], serde_json::json!([]));
    assert_eq!(json["active"], true);
    // The signed change and the admin key's seed, base64; no prepared epoch.
    assert_eq!(
        json["change"],
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &state.change)
    );
    assert_eq!(
        json["admin_seed"],
        base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            *state.admin_seed().unwrap()
        )
    );
    assert!(json.get("next").is_none());
    let record = MessageRecord {
        conversation_kind: 0,
        conversation_id: BOB,
        message_id: [1; 16],
        sender: ALICE,
        sender_device: 2,
        outgoing: true,
        sent_at: 5,
        text: "hi".into(),
        attachment: vec![7],
        edited: false,
        deleted: false,
        reactions: vec![ReactionRecord {
            from: BOB,
            emoji: "👍".into(),
        }],
        delivered_to: vec![BOB],
        read_by: Vec::new(),
        expires_at: Some(9),
    };
    let (a, b, one) = (hex::encode(ALICE), hex::encode(BOB), hex::encode([1u8; 16]));
    assert_eq!(
        serde_json::to_string(&record).unwrap(),
        format!(
            r#"{{"conversation_kind":0,"conversation_id":"{b}","message_id":"{one}","sender":"{a}","sender_device":2,"outgoing":true,"sent_at":5,"text":"hi","attachment":[7],"edited":false,"deleted":false,"reactions":[{{"from":"{b}","emoji":"👍"}}],"delivered_to":["{b}"],"read_by":[],"expires_at":9}}"#
        )
    );
    let invite: GroupInvite = state.invite(7);
    assert_eq!(
        (&invite.change, invite.after, invite.channel_id),
        (&state.change, 7, [1; 16])
    );
}

#[test]
fn channel_requests_and_answers() {
    use haven_protocol::api::Id;
    use haven_protocol::api::channels::{CreateChannelResponse, EntriesPage, EntryBody};
    use haven_protocol::api::messages::FrankingBody;
    use haven_protocol::frames::ClientFrame;

    use base64::Engine as _;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

    assert_eq!(
        serde_json::to_string(&channels::create_request()).unwrap(),
        format!(r#"{{"ttl_secs":{}}}"#, channels::CHANNEL_TTL_SECS)
    );
    let reply = |read: &str| CreateChannelResponse {
        channel_id: Id::from([3; 16]),
        read_token: read.to_owned(),
        write_token: URL_SAFE_NO_PAD.encode([5u8; 32]),
        expires_at: 0,
    };
    let made = Channel::from_reply(&reply(&URL_SAFE_NO_PAD.encode([4u8; 32]))).unwrap();
    assert_eq!(
        (made.id, made.read_token, made.write_token),
        ([3; 16], [4; 32], [5; 32])
    );
    for bad in [
        "",
        "AAAA",
        &STANDARD.encode([4u8; 32]),
        &URL_SAFE_NO_PAD.encode([4u8; 31]),
    ] {
        assert!(matches!(
            Channel::from_reply(&reply(bad)),
            Err(StateError::Invalid(_))
        ));
    }

    let mut rng = ChaCha20Rng::from_seed([1; 32]);
    let state = outgoing::create_group(
        &Dev::new(ALICE, 1).store,
        &ALICE,
        "g",
        &[BOB],
        &made,
        &mut rng,
    )
    .unwrap();
    let epoch = state.current();
    let id = hex::encode([3u8; 16]);
    assert_eq!(epoch.append_path(), format!("/v1/channels/{id}/entries"));
    assert_eq!(
        epoch.entries_path(7),
        format!("/v1/channels/{id}/entries?after=7&limit=100")
    );
    assert_eq!(*epoch.read_bearer(), URL_SAFE_NO_PAD.encode([4u8; 32]));
    assert_eq!(*epoch.write_bearer(), URL_SAFE_NO_PAD.encode([5u8; 32]));
    assert_eq!(
        ClientFrame::decode(&epoch.subscribe_frame(9)).unwrap(),
        ClientFrame::Subscribe {
            request_id: 9,
            channel: [3; 16],
            token: [4; 32],
            after: 0,
        }
    );
    let body = channels::append_body(b"xy", None);
    assert_eq!(
        (body.entry, body.franking_commitment),
        (STANDARD.encode(b"xy"), None)
    );
    let body = channels::append_body(b"xy", Some(&[7; 32]));
    assert_eq!(body.franking_commitment, Some(STANDARD.encode([7; 32])));

    let page = |seq: i64, entry: &str, franking: Option<FrankingBody>| EntriesPage {
        entries: vec![EntryBody {
            seq,
            entry: entry.to_owned(),
            created_at: 1_700,
            franking,
        }],
        next_after: seq,
        more: false,
    };
    assert_eq!(
        channels::page_entries(&page(4, &STANDARD.encode(b"e"), None)).unwrap(),
        vec![ChannelItem {
            seq: 4,
            entry: b"e".to_vec(),
            franking: None
        }]
    );
    let franked = FrankingBody {
        commitment: STANDARD.encode([1; 32]),
        stamp: STANDARD.encode([2; 32]),
    };
    assert_eq!(
        channels::page_entries(&page(4, &STANDARD.encode(b"e"), Some(franked))).unwrap()[0]
            .franking,
        Some(DeliveredFranking {
            commitment: [1; 32],
            stamp: [2; 32],
            seq: 4,
            time: 1_700,
        })
    );
    let short = FrankingBody {
        commitment: STANDARD.encode([1; 31]),
        stamp: STANDARD.encode([2; 32]),
    };
    assert!(channels::page_entries(&page(4, "ZQ==", Some(short))).is_err());
    assert!(channels::page_entries(&page(-1, "ZQ==", None)).is_err());
    assert!(channels::page_entries(&page(1, "!!", None)).is_err());
}

/// Report material as the device makes it for a franked envelope from `from` to `me`.
fn material(from: &DeviceAddress, me: &DeviceAddress, content: &[u8]) -> ReportMaterial {
    use haven_protocol::franking::{Destination, FrankingKey, Report};
    let report = Report {
        franking_key: FrankingKey([9; 32]),
        sender_account: from.account_id,
        sender_device: from.device_id,
        destination: Destination::Device {
            account: me.account_id,
            device: me.device_id,
        },
        seq: 5,
        time: NOW / 1000,
        commitment: [1; 32],
        stamp: [2; 32],
        opening_key: [3; 32],
        tag: [4; 32],
        content: content.to_vec(),
    };
    ReportMaterial::from_bytes(&report.encode()).unwrap()
}

#[test]
fn received_franked_texts_keep_report_material_until_deleted_or_expired() {
    use base64::Engine as _;
    let mut bob = Dev::new(BOB, 1);
    let alice = DeviceAddress::new(ALICE, 1);
    let to_alice = Conversation::Direct(ALICE);
    let receive_franked = |bob: &mut Dev, content: &Content| {
        let bytes = content.to_bytes().unwrap();
        let m = material(&alice, &bob.me, &bytes);
        let (me, rng) = (bob.me, &mut bob.rng);
        bob.store
            .atomically_mut(|s| apply_direct(s, &me, &alice, &bytes, Some(&m), false, NOW, rng))
            .unwrap()
    };
    let text = direct(BOB, text_body([0x11; 16], "report me"));
    receive_franked(&mut bob, &text);
    let now = NOW / 1000;
    assert!(reportable(&bob.store, &to_alice, &[0x11; 16], now).unwrap());
    let request = report_request(&bob.store, &to_alice, &[0x11; 16], None, now).unwrap();
    let body = base64::engine::general_purpose::STANDARD
        .decode(&request.report)
        .unwrap();
    assert_eq!(
        body,
        material(&alice, &bob.me, &text.to_bytes().unwrap()).as_bytes()
    );
    assert_eq!(request.read_token, None);
    assert!(!report_needs_key(&bob.store, &to_alice, &[0x11; 16]).unwrap());

    // Unknown, unfranked and own messages cannot be reported.
    let report_err =
        |bob: &Dev, id: [u8; 16]| match report_request(&bob.store, &to_alice, &id, None, now)
            .unwrap_err()
        {
            StateError::Report(e) => e,
            other => panic!("{other:?}"),
        };
    assert_eq!(report_err(&bob, [0x99; 16]), ReportError::UnknownMessage);
    bob.receive(&alice, &direct(BOB, text_body([0x12; 16], "old client")));
    assert_eq!(report_err(&bob, [0x12; 16]), ReportError::NotReportable);
    // A sync copy of Bob's own message, even franked, keeps nothing.
    let other_own = DeviceAddress::new(BOB, 2);
    let own = direct(ALICE, text_body([0x13; 16], "mine"));
    let bytes = own.to_bytes().unwrap();
    let m = material(&other_own, &bob.me, &bytes);
    let (me, rng) = (bob.me, &mut bob.rng);
    bob.store
        .atomically_mut(|s| apply_direct(s, &me, &other_own, &bytes, Some(&m), false, NOW, rng))
        .unwrap();
    assert_eq!(report_err(&bob, [0x13; 16]), ReportError::NotReportable);

    // The sender deleting it for everyone does not withdraw it from a report.
    bob.receive(&alice, &direct(BOB, Body::Delete { target: [0x11; 16] }));
    assert!(bob.message(to_alice, &[0x11; 16]).deleted);
    assert!(reportable(&bob.store, &to_alice, &[0x11; 16], now).unwrap());

    // A disappearing text takes its material with it.
    let mut gone = direct(BOB, text_body([0x14; 16], "brief"));
    if let Body::Text { expire_secs, .. } = &mut gone.body {
        *expire_secs = 60;
    }
    receive_franked(&mut bob, &gone);
    assert!(reportable(&bob.store, &to_alice, &[0x14; 16], now).unwrap());
    history(&bob.store, to_alice, NOW + 60_000).unwrap();
    assert!(!reportable(&bob.store, &to_alice, &[0x14; 16], now).unwrap());

    // After the report window the material is refused, then pruned.
    let late = now + report_window();
    assert_eq!(
        match report_request(&bob.store, &to_alice, &[0x11; 16], None, late).unwrap_err() {
            StateError::Report(e) => e,
            other => panic!("{other:?}"),
        },
        ReportError::Expired
    );
    assert_eq!(prune_report_material(&bob.store, late - 1).unwrap(), 0);
    assert_eq!(prune_report_material(&bob.store, late).unwrap(), 1);
    assert_eq!(report_err(&bob, [0x11; 16]), ReportError::NotReportable);
}

/// Group messages are franked per channel entry (PROTOCOL §16.3 "Groups"): the writer's opening
/// travels inside the sender-key message, the commitment beside the entry; a reader accepts the
/// entry only if the opening matches the delivered commitment, keeps report material naming the
/// channel, and its report carries the channel's read token and verifies as the relay checks it.
#[test]
fn group_messages_are_franked_checked_and_reportable() {
    use base64::Engine as _;
    use haven_protocol::franking::verify::{
        FrankingSecret, StampKey, delivery_stamp, verify_report,
    };
    use haven_protocol::franking::{Destination, Report};
    use haven_sdk::identity::IdentityKeyPair;
    use haven_sdk::store::IdentityStore as _;

    let mut g = Group::new();
    let identity = IdentityKeyPair::generate(&mut g.alice.rng);
    g.alice.store.set_identity(&identity, 7).unwrap();
    let secret = FrankingSecret::from_bytes([0xF0; 32]);
    let key = secret.public();
    let stamp_key = StampKey::from_bytes([0x57; 32]);
    let conversation = Conversation::Group(g.id);
    let state = active_group(&g.alice.store, &g.id).unwrap();
    let channel_id = *state.current().channel_id();
    own_distribution(&mut g.alice.store, &g.id, 1, &mut g.alice.rng).unwrap();
    let content = |id: [u8; 16], text: &str| Content {
        sent_at: NOW,
        conversation,
        body: text_body(id, text),
    };
    // The relay: stores the commitment, stamps it for the channel with the entry's seq and time.
    let deliver = |seq: u64, entry: &outgoing::GroupEntry, commitment: Option<[u8; 32]>| {
        let time = NOW / 1000;
        ChannelItem {
            seq,
            entry: entry.entry.clone(),
            franking: commitment.map(|c| DeliveredFranking {
                commitment: c,
                stamp: delivery_stamp(
                    &stamp_key,
                    &c,
                    &Destination::Channel { channel_id },
                    seq,
                    time,
                ),
                seq,
                time,
            }),
        }
    };
    let post = |alice: &mut Dev, id: [u8; 16], text: &str| {
        outgoing::group_entry(
            &mut alice.store,
            &alice.me,
            &state,
            &content(id, text),
            Some(&key),
            &mut alice.rng,
        )
        .unwrap()
    };

    // Franked, delivered as sent: accepted and reportable.
    let first = post(&mut g.alice, [1; 16], "franked hello");
    let c = first.commitment.expect("franked with the relay's key");
    let applied = g.bob.read(&g.id, 1, &[deliver(1, &first, Some(c))]);
    assert_eq!(only_message(&applied).text, "franked hello");
    let now = NOW / 1000;
    assert!(reportable(&g.bob.store, &conversation, &[1; 16], now).unwrap());
    let request = report_request(&g.bob.store, &conversation, &[1; 16], Some(&key), now).unwrap();
    let token = request
        .read_token
        .clone()
        .expect("a group report names its channel");
    assert_eq!(token, *state.current().read_bearer());
    let body = base64::engine::general_purpose::STANDARD
        .decode(&request.report)
        .unwrap();
    let report = Report::decode(&body).unwrap();
    assert_eq!(report.destination, Destination::Channel { channel_id });
    assert_eq!((report.sender_account, report.sender_device), (ALICE, 1));
    assert_eq!(
        report.content,
        content([1; 16], "franked hello").to_bytes().unwrap()
    );
    let ik = g
        .alice
        .store
        .identity_key_pair()
        .unwrap()
        .public()
        .to_bytes();
    verify_report(&report, &secret, &stamp_key, &ik).unwrap();
    // Carol, another member, got the same entry: she can report it too.
    g.carol.read(&g.id, 1, &[deliver(1, &first, Some(c))]);
    assert!(reportable(&g.carol.store, &conversation, &[1; 16], now).unwrap());

    // A relay that swaps the commitment (another entry's), or drops it: refused, no message.
    let second = post(&mut g.alice, [2; 16], "second");
    let other = post(&mut g.alice, [3; 16], "third");
    let swapped = g
        .bob
        .read(&g.id, 1, &[deliver(2, &second, other.commitment)]);
    assert_eq!(
        swapped.events,
        vec![Event::Rejected {
            reason: RejectReason::FrankingMismatch
        }]
    );
    let dropped = g.bob.read(&g.id, 1, &[deliver(3, &other, None)]);
    assert_eq!(
        dropped.events,
        vec![Event::Rejected {
            reason: RejectReason::FrankingMismatch
        }]
    );
    assert!(!super::messages::has_message(&g.bob.store, &conversation, &[2; 16]).unwrap());
    assert!(!super::messages::has_message(&g.bob.store, &conversation, &[3; 16]).unwrap());

    // An unfranked entry (a writer before franking, or a relay offering no key) is accepted,
    // and cannot be reported.
    let bare = outgoing::group_entry(
        &mut g.alice.store,
        &g.alice.me,
        &state,
        &content([4; 16], "bare"),
        None,
        &mut g.alice.rng,
    )
    .unwrap();
    assert_eq!(bare.commitment, None);
    let applied = g.bob.read(&g.id, 1, &[deliver(4, &bare, None)]);
    assert_eq!(only_message(&applied).text, "bare");
    assert!(!reportable(&g.bob.store, &conversation, &[4; 16], now).unwrap());
    assert!(matches!(
        report_request(&g.bob.store, &conversation, &[4; 16], Some(&key), now),
        Err(StateError::Report(ReportError::NotReportable))
    ));
}

/// A franked entry that arrives before its writer's sender key waits with its franking, and is
/// checked and made reportable when the key arrives.
#[test]
fn a_franked_entry_waiting_for_its_sender_key_keeps_its_franking() {
    use haven_protocol::franking::verify::FrankingSecret;
    use haven_sdk::identity::IdentityKeyPair;

    let mut alice = Dev::new(ALICE, 1);
    let mut bob = Dev::new(BOB, 1);
    let identity = IdentityKeyPair::generate(&mut alice.rng);
    alice.store.set_identity(&identity, 7).unwrap();
    let franking_key = FrankingSecret::from_bytes([0xF0; 32]).public();
    let state = outgoing::create_group(
        &alice.store,
        &ALICE,
        "early",
        &[BOB],
        &channel(1),
        &mut alice.rng,
    )
    .unwrap();
    let id = *state.id();
    let conversation = Conversation::Group(id);
    bob.receive(&alice.me, &outgoing::group_invite(&state, 0, NOW));
    let key = outgoing::sender_key(&mut alice.store, &id, 1, NOW, &mut alice.rng).unwrap();
    let entry = outgoing::group_entry(
        &mut alice.store,
        &alice.me,
        &state,
        &Content {
            sent_at: NOW,
            conversation,
            body: text_body([5; 16], "early"),
        },
        Some(&franking_key),
        &mut alice.rng,
    )
    .unwrap();
    let mut log = ChannelLog::default();
    log.post_with(entry.entry, entry.commitment);
    let waiting = bob.read(&id, 1, &log.after(0));
    assert!(waiting.events.is_empty(), "{waiting:?}");
    assert_eq!(bob.store.entries(GROUP_PENDING).unwrap().len(), 1);
    // The key arrives: the entry is applied with its franking and can be reported.
    let mut applied = bob.receive(&alice.me, &key);
    bob.retry(&mut applied);
    assert_eq!(only_message(&applied).text, "early");
    assert!(bob.store.entries(GROUP_PENDING).unwrap().is_empty());
    assert!(reportable(&bob.store, &conversation, &[5; 16], NOW / 1000).unwrap());
}

// ------------------------------------------------------------------------ receipt policy

/// A text from `from` to `to` with id `[n; 16]`.
fn text_to(to: [u8; 16], n: u8) -> Content {
    Content {
        sent_at: NOW,
        conversation: Conversation::Direct(to),
        body: Body::Text {
            message_id: [n; 16],
            expire_secs: 0,
            text: format!("text {n}"),
            attachment: Vec::new(),
        },
    }
}

impl Dev {
    /// Applies `content` from `from` received at `now`.
    fn receive_at(&mut self, from: &DeviceAddress, content: &Content, now: u64) -> Applied {
        let (me, rng) = (self.me, &mut self.rng);
        let plain = content.to_bytes().unwrap();
        self.store
            .atomically_mut(|s| apply_direct(s, &me, from, &plain, None, false, now, rng))
            .unwrap()
    }
}

/// The receipt contents among `sent`: (recipient, message ids).
fn receipts(sent: &[DirectSend]) -> Vec<([u8; 16], Vec<[u8; 16]>)> {
    sent.iter()
        .filter_map(|s| match &s.content.body {
            Body::Receipt {
                kind: ReceiptKind::Delivered,
                message_ids,
            } => Some((s.to, message_ids.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn the_default_policy_delays_delivery_receipts_and_batches_them_per_account() {
    let mut bob = Dev::with_default_policy(BOB, 1);
    assert_eq!(receipt_policy(&bob.store).unwrap(), ReceiptPolicy::DEFAULT);
    let (mut alice, mut carol) = (Dev::new(ALICE, 1), Dev::new(CAROL, 1));
    // Three texts from Alice within a few seconds, one from Carol.
    for (n, at) in [(1u8, 0u64), (2, 1000), (3, 2500)] {
        let applied = bob.receive_at(&alice.me, &text_to(BOB, n), NOW + at);
        assert!(applied.tasks_added);
    }
    bob.receive_at(&carol.me, &text_to(BOB, 9), NOW + 3000);
    let queued = queued_tasks(&bob.store).unwrap();
    assert_eq!(queued.len(), 4);
    // Alice's receipts share one due time (her batch), drawn in [5 s, 60 s] after the first.
    let alice_due: Vec<u64> = queued
        .iter()
        .filter(|t| matches!(t.task(), Task::Delivered { account, .. } if *account == ALICE))
        .map(QueuedTask::due_ms)
        .collect();
    assert_eq!(alice_due.len(), 3);
    assert!(alice_due.iter().all(|d| *d == alice_due[0]));
    assert!(
        (NOW + 5000..=NOW + 60_000).contains(&alice_due[0]),
        "{alice_due:?}"
    );
    let carol_due = queued
        .iter()
        .find(|t| matches!(t.task(), Task::Delivered { account, .. } if *account == CAROL))
        .unwrap()
        .due_ms();
    assert!((NOW + 8000..=NOW + 63_000).contains(&carol_due));

    // Nothing goes out before it is due; the driver's timer is told when to look again.
    let first = alice_due[0].min(carol_due);
    assert!(
        bob.run_tasks_at(NOW + 3000, &mut [&mut alice, &mut carol])
            .is_empty()
    );
    assert!(
        bob.run_tasks_at(first - 1, &mut [&mut alice, &mut carol])
            .is_empty()
    );
    assert_eq!(next_due(&bob.store, NOW + 3000).unwrap(), Some(first));
    assert_eq!(queued_tasks(&bob.store).unwrap().len(), 4);

    // Once both are due: one receipt to Alice listing her three messages, one to Carol.
    let last = alice_due[0].max(carol_due);
    let mut sent = receipts(&bob.run_tasks_at(last, &mut [&mut alice, &mut carol]));
    sent.sort();
    assert_eq!(
        sent,
        vec![
            (ALICE, vec![[1; 16], [2; 16], [3; 16]]),
            (CAROL, vec![[9; 16]])
        ]
    );
    assert!(queued_tasks(&bob.store).unwrap().is_empty());
    assert_eq!(next_due(&bob.store, last).unwrap(), None);

    // A text after the batch went out starts a new batch with a new random delay.
    bob.receive_at(&alice.me, &text_to(BOB, 4), last + 1);
    let due = queued_tasks(&bob.store).unwrap()[0].due_ms();
    assert!((last + 1 + 5000..=last + 1 + 60_000).contains(&due));
}

#[test]
fn a_batch_of_receipts_is_split_at_the_content_limit() {
    let mut bob = Dev::with_default_policy(BOB, 1);
    let alice = Dev::new(ALICE, 1);
    let count = haven_protocol::content::MAX_RECEIPT_IDS + 3;
    for i in 0..count {
        let mut content = text_to(BOB, 0);
        if let Body::Text { message_id, .. } = &mut content.body {
            message_id[..8].copy_from_slice(&(i as u64).to_be_bytes());
        }
        bob.receive_at(&alice.me, &content, NOW);
    }
    let due = due_follow_ups(&bob.store, NOW + 61_000).unwrap();
    let mut sizes: Vec<usize> = due.iter().map(|f| f.tasks().len()).collect();
    sizes.sort_unstable();
    assert_eq!(sizes, vec![3, haven_protocol::content::MAX_RECEIPT_IDS]);
    let sent = bob.run_tasks_at(NOW + 61_000, &mut []);
    assert_eq!(sent.len(), 2);
    // Each encodes (the decoder's limit holds).
    for s in &sent {
        Content::from_bytes(&s.content.to_bytes().unwrap()).unwrap();
    }
}

#[test]
fn receipts_off_sends_none_and_drops_those_owed() {
    let mut bob = Dev::with_default_policy(BOB, 1);
    let mut alice = Dev::new(ALICE, 1);
    bob.receive_at(&alice.me, &text_to(BOB, 1), NOW);
    set_receipt_policy(&bob.store, ReceiptPolicy::Off).unwrap();
    assert_eq!(receipt_policy(&bob.store).unwrap(), ReceiptPolicy::Off);
    // A new text queues nothing.
    let applied = bob.receive_at(&alice.me, &text_to(BOB, 2), NOW);
    assert!(!applied.tasks_added);
    assert_eq!(queued_tasks(&bob.store).unwrap().len(), 1);
    // The receipt owed from before is dropped without a send, at once.
    assert_eq!(next_due(&bob.store, NOW).unwrap(), None);
    assert!(bob.run_tasks_at(NOW, &mut [&mut alice]).is_empty());
    assert!(queued_tasks(&bob.store).unwrap().is_empty());
}

#[test]
fn immediate_receipts_go_out_at_once_one_per_processed_message() {
    let mut bob = Dev::new(BOB, 1);
    let mut alice = Dev::new(ALICE, 1);
    bob.receive_at(&alice.me, &text_to(BOB, 1), NOW);
    assert_eq!(queued_tasks(&bob.store).unwrap()[0].due_ms(), 0);
    assert_eq!(next_due(&bob.store, NOW).unwrap(), None);
    let sent = receipts(&bob.run_tasks_at(NOW, &mut [&mut alice]));
    assert_eq!(sent, vec![(ALICE, vec![[1; 16]])]);
    bob.receive_at(&alice.me, &text_to(BOB, 2), NOW);
    let sent = receipts(&bob.run_tasks_at(NOW, &mut [&mut alice]));
    assert_eq!(sent, vec![(ALICE, vec![[2; 16]])]);

    // Switching to immediate makes receipts delayed before due at once.
    let mut carol = Dev::with_default_policy(CAROL, 1);
    carol.receive_at(&alice.me, &text_to(CAROL, 3), NOW);
    assert!(carol.run_tasks_at(NOW, &mut []).is_empty());
    set_receipt_policy(&carol.store, ReceiptPolicy::Immediate).unwrap();
    assert_eq!(
        receipts(&carol.run_tasks_at(NOW, &mut [])),
        vec![(ALICE, vec![[3; 16]])]
    );
}

#[test]
fn tasks_stored_before_delayed_receipts_still_run_at_once() {
    let mut bob = Dev::with_default_policy(BOB, 1);
    let mut alice = Dev::new(ALICE, 1);
    // A record as earlier versions wrote it: no due time.
    let old = format!(
        r#"{{"task":"Delivered","account":"{}","message_id":"{}"}}"#,
        hex::encode(ALICE),
        hex::encode([7u8; 16])
    );
    bob.store
        .put(super::records::TASKS, &[1; 16], old.as_bytes())
        .unwrap();
    let queued = queued_tasks(&bob.store).unwrap();
    assert_eq!(queued.len(), 1);
    assert_eq!(queued[0].due_ms(), 0);
    let sent = receipts(&bob.run_tasks_at(NOW, &mut [&mut alice]));
    assert_eq!(sent, vec![(ALICE, vec![[7; 16]])]);
    // A delayed task's record carries its due time; an immediate one's is as before.
    bob.receive_at(&alice.me, &text_to(BOB, 8), NOW);
    let (_, value) = bob.store.entries(super::records::TASKS).unwrap().remove(0);
    let json: serde_json::Value = serde_json::from_slice(&value).unwrap();
    assert_eq!(json["task"], "Delivered");
    assert!(json["due_ms"].as_u64().unwrap() >= NOW + 5000);
}

#[test]
fn a_receipt_policy_outside_its_limits_is_refused_and_changes_nothing() {
    let bob = Dev::with_default_policy(BOB, 1);
    for bad in [
        ReceiptPolicy::Delayed {
            min_secs: 10,
            max_secs: 9,
        },
        ReceiptPolicy::Delayed {
            min_secs: 0,
            max_secs: MAX_RECEIPT_DELAY_SECS + 1,
        },
    ] {
        assert!(matches!(
            set_receipt_policy(&bob.store, bad),
            Err(StateError::Invalid(_))
        ));
    }
    assert_eq!(receipt_policy(&bob.store).unwrap(), ReceiptPolicy::DEFAULT);
    assert_eq!(
        serde_json::to_string(&ReceiptPolicy::DEFAULT).unwrap(),
        r#"{"mode":"delayed","min_secs":5,"max_secs":60}"#
    );
}
