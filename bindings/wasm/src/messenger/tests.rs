//! The messenger's steps driven as `haven-client.js` drives them, against each other, through
//! a relay simulated in memory (mailboxes per device, sealed-send access keys, 409 device
//! repair, channels with their capabilities): contacts and cards, sealed replies, receipts,
//! typing, reactions, edits, deletes, timers, sync copies, safety numbers and a changed
//! identity, groups with an added and a removed member; every bad input a typed error.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ed25519_dalek::SigningKey;
use haven_protocol::api::Id;
use haven_protocol::api::channels::{
    AppendRequest, AppendResponse, CreateChannelResponse, EntriesPage, EntryBody,
};
use haven_protocol::api::devices::{DeviceBody, DeviceList};
use haven_protocol::api::error::{DeviceMismatch, ErrorBody, ErrorDetail};
use haven_protocol::api::keys::BundlesResponse;
use haven_protocol::api::messages::{AccessKeyBody, SendBody};
use haven_protocol::content::Conversation;

use super::*;
use crate::device::tests::{NOW, claim_reply, device};

const NOW_MS: u64 = NOW * 1000;
const ALICE: [u8; 16] = [0xa1; 16];
const BOB: [u8; 16] = [0xb0; 16];
const CAROL: [u8; 16] = [0xc0; 16];

/// One device of the simulation, with what the page would keep.
struct Dev {
    d: DeviceCore,
    m: MessengerCore,
    upload: String,
    account: [u8; 16],
    number: u32,
    /// One-time prekeys claimed from it.
    claimed: usize,
    events: Vec<EventView>,
}

impl Dev {
    fn hex(&self) -> String {
        hex::encode(self.account)
    }
}

/// A channel: its entries (with the writer's franking commitment, if any) and capabilities.
struct Chan {
    read: String,
    write: String,
    entries: Vec<Vec<u8>>,
    commitments: Vec<Option<String>>,
}

/// A queued envelope: relay message id, envelope base64, ephemeral.
/// A queued envelope: relay message id, content, ephemeral, and the franking JSON the page
/// would hand to `receiveEnvelope` (commitment, this relay's stamp, seq, time).
type Queued = (String, String, bool, Option<String>);

/// The relay, in memory.
struct Net {
    key: SigningKey,
    devs: Vec<Dev>,
    /// Mailboxes by (account, device): (relay message id, envelope base64, ephemeral).
    queues: HashMap<([u8; 16], u32), Vec<Queued>>,
    /// Access keys set by the accounts.
    access: HashMap<[u8; 16], String>,
    channels: HashMap<String, Chan>,
    /// (from, to, sealed) of every 1:1 send the relay took.
    sends: Vec<([u8; 16], [u8; 16], bool)>,
    /// Milliseconds since `NOW_MS`, one more per text (history is ordered by send time).
    clock: u64,
}

fn kind(e: &EventView) -> &'static str {
    match e {
        EventView::Message { .. } => "message",
        EventView::Receipt { .. } => "receipt",
        EventView::Typing { .. } => "typing",
        EventView::Reaction { .. } => "reaction",
        EventView::Edited { .. } => "edited",
        EventView::Deleted { .. } => "deleted",
        EventView::Timer { .. } => "timer",
        EventView::GroupUpdated { .. } => "group_updated",
        EventView::RemovedFromGroup { .. } => "removed_from_group",
        EventView::IdentityChanged { .. } => "identity_changed",
        EventView::Rejected { .. } => "rejected",
        EventView::DevicesChanged { .. } => "devices_changed",
        EventView::AccountKeyChanged { .. } => "account_key_changed",
        EventView::DeviceListRefused { .. } => "device_list_refused",
        EventView::Connection { .. } => "connection",
    }
}

impl Net {
    fn new() -> Self {
        Self {
            key: SigningKey::from_bytes(&[9; 32]),
            devs: Vec::new(),
            queues: HashMap::new(),
            access: HashMap::new(),
            channels: HashMap::new(),
            sends: Vec::new(),
            clock: 0,
        }
    }

    /// A device of `account`; the account's first device sets its access key, as the page
    /// does at registration.
    fn add(&mut self, account: [u8; 16], number: u32) -> usize {
        let (mut d, upload) = device(&self.key, account, number);
        if let std::collections::hash_map::Entry::Vacant(slot) = self.access.entry(account) {
            let body: AccessKeyBody =
                serde_json::from_str(&d.prepare_access_key().unwrap()).unwrap();
            slot.insert(body.access_key.unwrap());
            d.confirm_access_key().unwrap();
        }
        self.devs.push(Dev {
            d,
            m: MessengerCore::new(),
            upload,
            account,
            number,
            claimed: 0,
            events: Vec::new(),
        });
        self.devs.len() - 1
    }

    fn numbers(&self, account: &[u8; 16]) -> Vec<u32> {
        let mut out: Vec<u32> = self
            .devs
            .iter()
            .filter(|d| d.account == *account)
            .map(|d| d.number)
            .collect();
        out.sort_unstable();
        out
    }

    /// `GET /v1/keys/{account}[/{n}]`.
    fn claim(&mut self, path: &str) -> String {
        let rest = path.strip_prefix("/v1/keys/").unwrap();
        let (account, only) = match rest.split_once('/') {
            Some((a, n)) => (a, Some(n.parse::<u32>().unwrap())),
            None => (rest, None),
        };
        let account: [u8; 16] = hex::decode(account).unwrap().try_into().unwrap();
        let mut all: Option<BundlesResponse> = None;
        for i in 0..self.devs.len() {
            let d = &self.devs[i];
            if d.account != account || only.is_some_and(|n| n != d.number) {
                continue;
            }
            let reply: BundlesResponse =
                serde_json::from_str(&claim_reply(&[(&d.d, &d.upload)], d.claimed)).unwrap();
            self.devs[i].claimed += 1;
            match &mut all {
                Some(a) => a.bundles.extend(reply.bundles),
                None => all = Some(reply),
            }
        }
        serde_json::to_string(&all.unwrap()).unwrap()
    }

    /// The page's `deliver`: claims, encrypts, posts; a 409 repairs the device list once.
    fn deliver(&mut self, i: usize, message_id: &str, account: &str) -> WebResult<()> {
        let to: [u8; 16] = parse_id(account).unwrap();
        for attempt in 0..2 {
            let paths = self.devs[i].d.claim_paths(account)?;
            let replies: Vec<String> = paths.iter().map(|p| self.claim(p)).collect();
            let Some(send) = self.devs[i]
                .d
                .encrypt_prepared(message_id, account, &replies, NOW)?
            else {
                return Ok(());
            };
            let body: SendBody = serde_json::from_str(&send.body).unwrap();
            assert_eq!(body.message_id.to_hex(), message_id);
            if send.sealed {
                assert_eq!(body.access_key.as_ref(), self.access.get(&to), "access key");
                assert!(send.path.ends_with("/sealed"));
            }
            let from = (self.devs[i].account, self.devs[i].number);
            let mut expected = self.numbers(&to);
            if to == from.0 {
                expected.retain(|n| *n != from.1);
            }
            let got: Vec<u32> = body.envelopes.iter().map(|e| e.device_number).collect();
            if got != expected {
                assert_eq!(attempt, 0, "still stale after a repair");
                let answer = ErrorBody {
                    error: ErrorDetail {
                        code: "mismatched_devices".into(),
                        message: String::new(),
                        mismatches: Some(vec![DeviceMismatch {
                            account_id: Id::from(to),
                            missing_devices: expected
                                .iter()
                                .filter(|n| !got.contains(n))
                                .copied()
                                .collect(),
                            extra_devices: got
                                .iter()
                                .filter(|n| !expected.contains(n))
                                .copied()
                                .collect(),
                            removed_devices: Vec::new(),
                        }]),
                    },
                };
                self.devs[i].d.repair_devices(
                    account,
                    &serde_json::to_string(&answer).unwrap(),
                    false,
                )?;
                continue;
            }
            self.sends.push((from.0, to, send.sealed));
            for e in body.envelopes {
                let franking = e
                    .franking_commitment
                    .as_deref()
                    .map(|c| stamped(c, to, e.device_number));
                self.queues.entry((to, e.device_number)).or_default().push((
                    message_id.to_owned(),
                    e.content,
                    body.ephemeral,
                    franking,
                ));
            }
            return Ok(());
        }
        unreachable!()
    }

    /// A delivery to each account in order, then the prepared content is finished.
    fn deliver_all(&mut self, i: usize, delivery: &Delivery) -> WebResult<()> {
        for account in &delivery.accounts {
            self.deliver(i, &delivery.message_id, account)?;
        }
        self.devs[i].d.finish_send(&delivery.message_id)
    }

    /// To a contact, then the sync copy to the own other devices.
    fn deliver_direct(&mut self, i: usize, message_id: &str, account: &str) -> WebResult<()> {
        self.deliver(i, message_id, account)?;
        let own = self.devs[i].hex();
        if account != own {
            if self.devs[i].d.own_devices_due(NOW)? {
                let list = DeviceList {
                    devices: self
                        .numbers(&self.devs[i].account)
                        .into_iter()
                        .map(|n| DeviceBody {
                            device_id: Id::from([n as u8; 16]),
                            device_number: n,
                            identity_key: String::new(),
                            name: None,
                            created_at: 0,
                            current: false,
                        })
                        .collect(),
                };
                self.devs[i]
                    .d
                    .set_own_devices(&serde_json::to_string(&list).unwrap())?;
            }
            self.deliver(i, message_id, &own)?;
        }
        self.devs[i].d.finish_send(message_id)
    }

    fn ensure_card(&mut self, i: usize, account: &str) -> WebResult<()> {
        let dev = &mut self.devs[i];
        if let Some(id) = dev.m.card_for(&mut dev.d, account, NOW_MS)? {
            self.deliver_direct(i, &id, account)?;
            let dev = &mut self.devs[i];
            dev.m.card_sent(&mut dev.d, account)?;
        }
        Ok(())
    }

    /// `POST path` with a write token.
    fn post(&mut self, post: &ChannelPost) -> String {
        let chan = self.channels.get_mut(&post.channel_id).unwrap();
        assert_eq!(post.token, chan.write, "the write token");
        assert_eq!(
            post.path,
            format!("/v1/channels/{}/entries", post.channel_id)
        );
        let body: AppendRequest = serde_json::from_str(&post.body).unwrap();
        chan.entries.push(STANDARD.decode(body.entry).unwrap());
        chan.commitments.push(body.franking_commitment);
        serde_json::to_string(&AppendResponse {
            seq: chan.entries.len() as i64,
        })
        .unwrap()
    }

    fn group_send(&mut self, i: usize, send: &GroupSend) -> WebResult<String> {
        if let Some(key) = &send.sender_key {
            self.deliver_all(i, key)?;
        }
        Ok(self.post(&send.post))
    }

    /// The page's action: deliver (a card first to a contact), then `actionDone`.
    fn run(&mut self, i: usize, action: Action) -> WebResult<Action> {
        let result = match (&action.direct, &action.group) {
            (Some(direct), _) => {
                if !direct.ephemeral {
                    self.ensure_card(i, &direct.account)?;
                }
                self.deliver_direct(i, &direct.message_id, &direct.account)
            }
            (_, Some(group)) => self.group_send(i, group).map(|_| ()),
            _ => panic!("an action without a send"),
        };
        let dev = &mut self.devs[i];
        dev.m
            .action_done(&mut dev.d, &action.action_id, result.is_ok())?;
        result.map(|()| action)
    }

    fn invites(&mut self, i: usize, invites: &GroupInvites) -> WebResult<()> {
        let own = self.devs[i].hex();
        for account in &invites.invite.accounts {
            if *account != own {
                self.ensure_card(i, account)?;
            }
        }
        self.deliver_all(i, &invites.invite)?;
        self.deliver_all(i, &invites.sender_key)?;
        self.devs[i].events.push(invites.event.clone());
        Ok(())
    }

    fn new_channel(&mut self) -> String {
        let id: [u8; 16] = rand::random();
        let (read, write): ([u8; 32], [u8; 32]) = (rand::random(), rand::random());
        let reply = CreateChannelResponse {
            channel_id: Id::from(id),
            read_token: URL_SAFE_NO_PAD.encode(read),
            write_token: URL_SAFE_NO_PAD.encode(write),
            expires_at: 0,
        };
        self.channels.insert(
            hex::encode(id),
            Chan {
                read: reply.read_token.clone(),
                write: reply.write_token.clone(),
                entries: Vec::new(),
                commitments: Vec::new(),
            },
        );
        serde_json::to_string(&reply).unwrap()
    }

    fn run_tasks(&mut self, i: usize) {
        let dev = &mut self.devs[i];
        for task in dev.m.follow_ups(&dev.d).unwrap() {
            let dev = &mut self.devs[i];
            if let Some(delivery) = dev.m.follow_up(&mut dev.d, &task, NOW_MS).unwrap() {
                self.deliver_all(i, &delivery).unwrap();
            }
            let dev = &mut self.devs[i];
            // A task `followUp` found nothing to send for is done already.
            let _ = dev.m.task_done(&mut dev.d, &task);
        }
    }

    fn take(&mut self, i: usize, received: Received) -> bool {
        self.devs[i].events.extend(received.events);
        received.tasks_added
    }

    /// The page's catch-up of one device: its mailbox, its channels, its follow-ups.
    fn sync(&mut self, i: usize) -> bool {
        let key = (self.devs[i].account, self.devs[i].number);
        let queued = self.queues.remove(&key).unwrap_or_default();
        let mut busy = !queued.is_empty();
        for (id, content, ephemeral, franking) in queued {
            let dev = &mut self.devs[i];
            let r = dev
                .m
                .receive_envelope(
                    &mut dev.d,
                    &id,
                    &content,
                    franking.as_deref(),
                    ephemeral,
                    false,
                    NOW_MS,
                )
                .unwrap();
            self.take(i, r);
        }
        let reads = self.devs[i].m.channel_reads(&self.devs[i].d).unwrap();
        for read in reads {
            let mut path = read.path.clone();
            loop {
                let chan = &self.channels[&read.channel_id];
                assert_eq!(read.token, chan.read, "the read token");
                let after: usize = path
                    .split("after=")
                    .nth(1)
                    .unwrap()
                    .split('&')
                    .next()
                    .unwrap()
                    .parse()
                    .unwrap();
                let entries: Vec<EntryBody> = chan
                    .entries
                    .iter()
                    .enumerate()
                    .skip(after)
                    .take(2)
                    .map(|(n, e)| EntryBody {
                        seq: n as i64 + 1,
                        entry: STANDARD.encode(e),
                        created_at: NOW as i64,
                        franking: chan.commitments[n]
                            .as_deref()
                            .map(|c| entry_stamped(c, &read.channel_id, n as u64 + 1)),
                    })
                    .collect();
                busy |= !entries.is_empty();
                let page = EntriesPage {
                    next_after: entries.last().map_or(after as i64, |e| e.seq),
                    more: after + entries.len() < chan.entries.len(),
                    entries,
                };
                let dev = &mut self.devs[i];
                let page = dev
                    .m
                    .receive_channel_page(
                        &mut dev.d,
                        &read.channel_id,
                        &serde_json::to_string(&page).unwrap(),
                        NOW_MS,
                    )
                    .unwrap();
                self.take(i, page.received);
                match page.next {
                    Some(next) => path = next,
                    None => break,
                }
            }
        }
        let dev = &mut self.devs[i];
        busy |= !dev.m.follow_ups(&dev.d).unwrap().is_empty();
        self.run_tasks(i);
        busy
    }

    /// Syncs every device until nothing moves.
    fn settle(&mut self) {
        for _ in 0..20 {
            let mut busy = false;
            for i in 0..self.devs.len() {
                busy |= self.sync(i);
            }
            if !busy {
                return;
            }
        }
        panic!("the devices never settled");
    }

    fn events(&mut self, i: usize) -> Vec<EventView> {
        std::mem::take(&mut self.devs[i].events)
    }

    fn history(&mut self, i: usize, conversation: Conversation) -> Vec<MessageView> {
        let dev = &mut self.devs[i];
        dev.m.history(&dev.d, conversation, NOW_MS).unwrap()
    }

    fn texts(&mut self, i: usize, conversation: Conversation) -> Vec<String> {
        self.history(i, conversation)
            .into_iter()
            .map(|m| m.text)
            .collect()
    }

    fn send_text(&mut self, i: usize, conversation: Conversation, text: &str) -> String {
        self.clock += 1;
        let now = NOW_MS + self.clock;
        let dev = &mut self.devs[i];
        let action = dev
            .m
            .send_text(&mut dev.d, conversation, text, Vec::new(), now)
            .unwrap();
        self.run(i, action).unwrap().content_id.unwrap()
    }
}

const FRANKING_SECRET: [u8; 32] = [0xF2; 32];
const STAMP_KEY: [u8; 32] = [0x5A; 32];
const STAMP_SEQ: u64 = 41;

/// What this test relay delivers with a franked envelope to `device` of `account` (§16.4).
fn stamped(commitment: &str, account: [u8; 16], device: u32) -> String {
    use haven_protocol::franking::Destination;
    use haven_protocol::franking::verify::{StampKey, delivery_stamp};
    let c: [u8; 32] = STANDARD.decode(commitment).unwrap().try_into().unwrap();
    let stamp = delivery_stamp(
        &StampKey::from_bytes(STAMP_KEY),
        &c,
        &Destination::Device { account, device },
        STAMP_SEQ,
        NOW,
    );
    serde_json::json!({
        "commitment": commitment,
        "stamp": STANDARD.encode(stamp),
        "seq": STAMP_SEQ,
        "receivedAt": NOW,
    })
    .to_string()
}

/// What this test relay delivers with a franked entry of `channel` at `seq` (§16.4; every
/// entry's `created_at` is `NOW` here).
fn entry_stamped(
    commitment: &str,
    channel: &str,
    seq: u64,
) -> haven_protocol::api::messages::FrankingBody {
    use haven_protocol::franking::Destination;
    use haven_protocol::franking::verify::{StampKey, delivery_stamp};
    let c: [u8; 32] = STANDARD.decode(commitment).unwrap().try_into().unwrap();
    let channel_id: [u8; 16] = hex::decode(channel).unwrap().try_into().unwrap();
    let stamp = delivery_stamp(
        &StampKey::from_bytes(STAMP_KEY),
        &c,
        &Destination::Channel { channel_id },
        seq,
        NOW,
    );
    haven_protocol::api::messages::FrankingBody {
        commitment: commitment.to_owned(),
        stamp: STANDARD.encode(stamp),
    }
}

fn no_rejections(events: &[EventView]) {
    assert!(!events.iter().any(|e| kind(e) == "rejected"), "{events:?}");
}

#[test]
fn one_to_one_with_cards_receipts_reactions_edits_deletes_timers_and_sync_copies() {
    let mut net = Net::new();
    let (a1, b) = (net.add(ALICE, 1), net.add(BOB, 1));
    let a2 = net.add(ALICE, 2);
    let (with_bob, with_alice) = (Conversation::Direct(BOB), Conversation::Direct(ALICE));
    let bob_hex = hex::encode(BOB);

    // Alice adds Bob and writes; her card goes first (logged-in: she has no key of Bob's).
    let dev = &mut net.devs[a1];
    let contact = dev
        .m
        .add_contact(&mut dev.d, &bob_hex, Some(" Bob "))
        .unwrap();
    assert_eq!(
        (contact.username.as_deref(), contact.card_sent),
        (Some("bob"), false)
    );
    let hello = net.send_text(a1, with_bob, "hello periwinkle");
    assert_eq!(net.sends[0], (ALICE, BOB, false));
    let dev = &mut net.devs[a1];
    assert!(dev.m.contact(&dev.d, &bob_hex).unwrap().unwrap().card_sent);
    assert_eq!(dev.m.card_for(&mut dev.d, &bob_hex, NOW_MS).unwrap(), None);
    net.settle();

    // Bob got the text (and Alice's card), sent a delivery receipt automatically.
    let events = net.events(b);
    no_rejections(&events);
    let message = events
        .iter()
        .find_map(|e| match e {
            EventView::Message { message } => Some(message.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(
        (
            message.text.as_str(),
            message.outgoing,
            message.message_id.as_str()
        ),
        ("hello periwinkle", false, hello.as_str())
    );
    assert_eq!(message.conversation, (&with_alice).into());
    let alice_msg = &net.history(a1, with_bob)[0];
    assert_eq!(alice_msg.delivered_to, vec![bob_hex.clone()]);
    // Alice's other device has the sync copy as outgoing, and learned the account's access
    // key from the copy of the card.
    let copy = &net.history(a2, with_bob)[0];
    assert_eq!(
        (copy.text.as_str(), copy.outgoing),
        ("hello periwinkle", true)
    );
    assert!(net.devs[a2].d.has_access_key().unwrap());

    // Bob answers: his card and text go sealed (he holds Alice's key from her card); Alice's
    // later sends to Bob are sealed too.
    let sends = net.sends.len();
    let reply = net.send_text(b, with_alice, "hi tangerine");
    assert!(
        net.sends[sends..]
            .iter()
            .filter(|(f, t, _)| *f == BOB && *t == ALICE)
            .all(|(_, _, sealed)| *sealed)
    );
    net.settle();
    assert_eq!(
        net.texts(a1, with_bob),
        ["hello periwinkle", "hi tangerine"]
    );
    assert_eq!(
        net.texts(a2, with_bob),
        ["hello periwinkle", "hi tangerine"]
    );
    let sends = net.sends.len();
    net.send_text(a1, with_bob, "sealed now");
    assert!(
        net.sends[sends..]
            .iter()
            .filter(|(_, t, _)| *t == BOB)
            .all(|(_, _, sealed)| *sealed)
    );
    net.settle();

    // Read receipt, on demand.
    let dev = &mut net.devs[b];
    assert!(
        dev.m
            .mark_read(&mut dev.d, with_alice, &[], NOW_MS)
            .unwrap()
            .is_none()
    );
    let read = dev
        .m
        .mark_read(&mut dev.d, with_alice, std::slice::from_ref(&hello), NOW_MS)
        .unwrap()
        .unwrap();
    net.run(b, read).unwrap();
    net.settle();
    assert_eq!(net.history(a1, with_bob)[0].read_by, vec![bob_hex.clone()]);
    assert!(net.events(a1).iter().any(|e| matches!(
        e,
        EventView::Receipt {
            receipt: "read",
            ..
        }
    )));

    // Typing: ephemeral, no card, no copy stored.
    let dev = &mut net.devs[b];
    let typing = dev.m.typing(&mut dev.d, with_alice, true, NOW_MS).unwrap();
    assert!(typing.direct.as_ref().unwrap().ephemeral);
    net.run(b, typing).unwrap();
    net.settle();
    assert!(
        net.events(a1)
            .iter()
            .any(|e| matches!(e, EventView::Typing { started: true, .. }))
    );

    // A reaction, an edit, a delete.
    let dev = &mut net.devs[b];
    let react = dev
        .m
        .react(&mut dev.d, with_alice, &hello, "🍊", false, NOW_MS)
        .unwrap();
    net.run(b, react).unwrap();
    let dev = &mut net.devs[a1];
    let edit = dev
        .m
        .edit(&mut dev.d, with_bob, &hello, "hello, edited", NOW_MS)
        .unwrap();
    net.run(a1, edit).unwrap();
    net.settle();
    let bobs = net.history(b, with_alice);
    assert_eq!(
        (bobs[0].text.as_str(), bobs[0].edited),
        ("hello, edited", true)
    );
    assert_eq!(bobs[0].reactions[0].emoji, "🍊");
    let alices = net.history(a1, with_bob);
    assert_eq!(alices[0].reactions[0].from, bob_hex);
    assert!(
        net.events(a1)
            .iter()
            .any(|e| matches!(e, EventView::Reaction { emoji, .. } if emoji == "🍊"))
    );
    // Only the sender edits or deletes its message.
    let dev = &mut net.devs[b];
    assert_eq!(
        dev.m
            .edit(&mut dev.d, with_alice, &hello, "mine now", NOW_MS)
            .unwrap_err()
            .code,
        ErrorCode::InvalidArgument
    );
    let dev = &mut net.devs[a1];
    let delete = dev.m.delete(&mut dev.d, with_bob, &hello, NOW_MS).unwrap();
    net.run(a1, delete).unwrap();
    net.settle();
    let gone = &net.history(b, with_alice)[0];
    assert!(gone.deleted && gone.text.is_empty());
    assert!(net.events(b).iter().any(|e| kind(e) == "deleted"));
    let _ = reply;

    // A timer: the next texts disappear after it.
    let dev = &mut net.devs[a1];
    let timer = dev.m.set_timer(&mut dev.d, with_bob, 60, NOW_MS).unwrap();
    net.run(a1, timer).unwrap();
    net.settle();
    assert!(net.events(b).iter().any(|e| matches!(
        e,
        EventView::Timer {
            expire_secs: 60,
            ..
        }
    )));
    let dev = &net.devs[b];
    assert_eq!(dev.m.timer(&dev.d, with_alice).unwrap(), 60);
    net.send_text(b, with_alice, "gone in a minute");
    net.settle();
    let last = net.history(a1, with_bob).pop().unwrap();
    assert_eq!(last.expires_at, Some(NOW + 60));
    let dev = &mut net.devs[a1];
    let later = dev.m.history(&dev.d, with_bob, (NOW + 61) * 1000).unwrap();
    assert!(later.iter().all(|m| m.text != "gone in a minute"));
    assert_eq!(
        dev.m.conversations(&dev.d).unwrap(),
        vec![ConversationView::from(&with_bob)]
    );
    no_rejections(&net.events(a1));
}

#[test]
fn safety_numbers_and_a_changed_identity() {
    let mut net = Net::new();
    let (a, b) = (net.add(ALICE, 1), net.add(BOB, 1));
    let bob_hex = hex::encode(BOB);
    let alice_hex = hex::encode(ALICE);
    let dev = &net.devs[a];
    assert_eq!(
        dev.m.safety_numbers(&dev.d, &bob_hex).unwrap_err().code,
        ErrorCode::InvalidArgument
    );
    net.send_text(a, Conversation::Direct(BOB), "hi");
    net.settle();
    let (da, db) = (&net.devs[a], &net.devs[b]);
    let ours = da.m.safety_numbers(&da.d, &bob_hex).unwrap();
    let theirs = db.m.safety_numbers(&db.d, &alice_hex).unwrap();
    assert_eq!(ours.len(), 1);
    assert_eq!((ours[0].device, ours[0].digits.len()), (1, 60));
    assert_eq!(ours[0].digits, theirs[0].digits);
    let bob_key = db.d.identity_key_b64().unwrap();
    assert_eq!(
        da.m.safety_number_with(&da.d, &bob_hex, &bob_key).unwrap(),
        ours[0].digits
    );

    // Alice is made to trust another key for Bob's device: her next send is refused with the
    // device named, and Bob's envelopes are refused as a changed identity.
    let impostor = haven_sdk::IdentityKeyPair::generate(&mut rand::rng());
    let impostor = STANDARD.encode(impostor.public().to_bytes());
    let other = da.m.safety_number_with(&da.d, &bob_hex, &impostor).unwrap();
    assert_ne!(other, ours[0].digits);
    let dev = &mut net.devs[a];
    dev.m
        .accept_identity(&mut dev.d, &bob_hex, 1, &impostor)
        .unwrap();
    let action = dev
        .m
        .send_text(
            &mut dev.d,
            Conversation::Direct(BOB),
            "again",
            Vec::new(),
            NOW_MS,
        )
        .unwrap();
    let err = net.run(a, action).unwrap_err();
    assert_eq!(err.code, ErrorCode::IdentityChanged);
    let changed = err.identity.unwrap();
    assert_eq!(
        (changed.account.as_str(), changed.device),
        (bob_hex.as_str(), 1)
    );
    // The failed text was taken back out.
    assert_eq!(net.texts(a, Conversation::Direct(BOB)), ["hi"]);
    net.send_text(b, Conversation::Direct(ALICE), "from the real bob");
    net.settle();
    let events = net.events(a);
    assert!(events.iter().any(|e| matches!(
        e,
        EventView::IdentityChanged { device: 1, account } if *account == bob_hex
    )));
    assert!(events.iter().any(|e| kind(e) == "rejected"));

    // Accepting the real key again lets messages through.
    let dev = &mut net.devs[a];
    dev.m
        .accept_identity(&mut dev.d, &bob_hex, 1, &bob_key)
        .unwrap();
    net.send_text(a, Conversation::Direct(BOB), "all good");
    net.settle();
    assert_eq!(
        net.texts(b, Conversation::Direct(ALICE)),
        ["hi", "from the real bob", "all good"]
    );
}

#[test]
fn a_group_with_an_added_and_a_removed_member() {
    let mut net = Net::new();
    let (a, b, c) = (net.add(ALICE, 1), net.add(BOB, 1), net.add(CAROL, 1));
    let (bob_hex, carol_hex) = (hex::encode(BOB), hex::encode(CAROL));

    let answer = net.new_channel();
    let dev = &mut net.devs[a];
    let created = dev
        .m
        .create_group(
            &mut dev.d,
            "harbour walkers",
            std::slice::from_ref(&bob_hex),
            &answer,
            NOW_MS,
        )
        .unwrap();
    assert_eq!(
        created.invite.accounts,
        [hex::encode(ALICE), bob_hex.clone()]
    );
    // The admin key goes to Alice's other devices only.
    assert_eq!(
        created.admin_key.as_ref().map(|d| d.accounts.clone()),
        Some(vec![hex::encode(ALICE)])
    );
    let group = created.group_id.clone();
    let conv = conversation("group", &group).unwrap();
    net.invites(a, &created).unwrap();
    net.settle();
    assert!(net.events(b).iter().any(|e| matches!(
        e,
        EventView::GroupUpdated { name, .. } if name == "harbour walkers"
    )));
    let dev = &net.devs[b];
    let groups = dev.m.groups(&dev.d).unwrap();
    assert_eq!(
        (groups[0].name.as_str(), groups[0].epoch, groups[0].active),
        ("harbour walkers", 1, true)
    );

    // Texts both ways; a reaction.
    let first = net.send_text(a, conv, "group hello");
    net.send_text(b, conv, "group hi back");
    net.settle();
    assert_eq!(net.texts(b, conv), ["group hello", "group hi back"]);
    assert_eq!(net.texts(a, conv), ["group hello", "group hi back"]);
    let dev = &mut net.devs[b];
    let react = dev
        .m
        .react(&mut dev.d, conv, &first, "👍", false, NOW_MS)
        .unwrap();
    assert!(react.group.is_some() && react.direct.is_none());
    net.run(b, react).unwrap();
    net.settle();
    assert_eq!(net.history(a, conv)[0].reactions[0].from, bob_hex);
    // Typing is for 1:1 conversations.
    let dev = &mut net.devs[a];
    assert_eq!(
        dev.m
            .typing(&mut dev.d, conv, true, NOW_MS)
            .unwrap_err()
            .code,
        ErrorCode::InvalidArgument
    );

    // Bob is no admin: he cannot add anyone.
    let dev = &mut net.devs[b];
    assert_eq!(
        dev.m
            .add_member(&mut dev.d, &group, &carol_hex, NOW_MS)
            .unwrap_err()
            .code,
        ErrorCode::InvalidArgument
    );
    // Alice adds Carol: a new epoch everyone moves to; Carol reads what follows, not the
    // history.
    let dev = &mut net.devs[a];
    let change = dev
        .m
        .add_member(&mut dev.d, &group, &carol_hex, NOW_MS)
        .unwrap();
    net.group_send(a, &change.update).unwrap();
    let answer = net.new_channel();
    let dev = &mut net.devs[a];
    let invites = dev
        .m
        .add_member_posted(&mut dev.d, &change.change_id, &answer, NOW_MS)
        .unwrap();
    assert_eq!(
        invites.invite.accounts,
        [hex::encode(ALICE), bob_hex.clone(), carol_hex.clone()]
    );
    assert!(invites.admin_key.is_none());
    net.invites(a, &invites).unwrap();
    net.settle();
    net.send_text(c, conv, "carol here");
    net.send_text(b, conv, "welcome carol");
    net.settle();
    assert_eq!(net.texts(c, conv), ["carol here", "welcome carol"]);
    assert_eq!(
        net.texts(a, conv),
        [
            "group hello",
            "group hi back",
            "carol here",
            "welcome carol"
        ]
    );

    // Alice removes Bob: a new epoch Bob never reads.
    let dev = &mut net.devs[a];
    let change = dev
        .m
        .remove_member(&mut dev.d, &group, &bob_hex, NOW_MS)
        .unwrap();
    net.group_send(a, &change.update).unwrap();
    let answer = net.new_channel();
    let dev = &mut net.devs[a];
    let invites = dev
        .m
        .remove_member_posted(&mut dev.d, &change.change_id, &answer, NOW_MS)
        .unwrap();
    assert_eq!(
        invites.invite.accounts,
        [hex::encode(ALICE), carol_hex.clone()]
    );
    net.invites(a, &invites).unwrap();
    net.settle();
    assert!(
        net.events(b)
            .iter()
            .any(|e| matches!(e, EventView::RemovedFromGroup { group_id } if *group_id == group))
    );
    net.send_text(a, conv, "without bob");
    net.send_text(c, conv, "just us");
    net.settle();
    assert_eq!(net.texts(c, conv)[2..], ["without bob", "just us"]);
    assert!(
        !net.texts(b, conv)
            .iter()
            .any(|t| t == "without bob" || t == "just us")
    );
    let dev = &net.devs[b];
    let info = &dev.m.groups(&dev.d).unwrap()[0];
    assert!(!info.active);
    // Bob knows no channel of the new epoch (3: the add started 2); the others read it.
    let new_channel: String = serde_json::from_str::<CreateChannelResponse>(&answer)
        .unwrap()
        .channel_id
        .to_hex();
    assert!(
        dev.m
            .channel_reads(&dev.d)
            .unwrap()
            .iter()
            .all(|r| r.channel_id != new_channel)
    );
    let dev = &mut net.devs[c];
    assert!(
        dev.m
            .channel_reads(&dev.d)
            .unwrap()
            .iter()
            .any(|r| r.channel_id == new_channel && r.epoch == 3)
    );
    // And Bob can no longer post.
    let dev = &mut net.devs[b];
    assert_eq!(
        dev.m
            .send_text(&mut dev.d, conv, "let me in", Vec::new(), NOW_MS)
            .unwrap_err()
            .code,
        ErrorCode::InvalidArgument
    );
    // Subscription frames for the readable epochs, after their cursors.
    let dev = &mut net.devs[c];
    let frames = dev.m.subscribe_frames(&dev.d, Some(&group)).unwrap();
    assert!(!frames.is_empty());
    for f in &frames {
        assert!(matches!(
            haven_protocol::frames::ClientFrame::decode(f).unwrap(),
            haven_protocol::frames::ClientFrame::Subscribe { .. }
        ));
    }
    for i in [a, b, c] {
        no_rejections(&net.events(i));
    }
}

#[test]
fn channel_entries_from_the_socket_are_processed_once() {
    let mut net = Net::new();
    let (a, b) = (net.add(ALICE, 1), net.add(BOB, 1));
    let answer = net.new_channel();
    let dev = &mut net.devs[a];
    let created = dev
        .m
        .create_group(&mut dev.d, "g", &[hex::encode(BOB)], &answer, NOW_MS)
        .unwrap();
    net.invites(a, &created).unwrap();
    net.settle();
    let conv = conversation("group", &created.group_id).unwrap();
    let dev = &mut net.devs[a];
    let action = dev
        .m
        .send_text(&mut dev.d, conv, "over the socket", Vec::new(), NOW_MS)
        .unwrap();
    let post = action.group.clone().unwrap().post;
    let seq: AppendResponse = serde_json::from_str(&net.post(&post)).unwrap();
    let dev = &mut net.devs[a];
    dev.m
        .action_done(&mut dev.d, &action.action_id, true)
        .unwrap();
    let entry = STANDARD.encode(&net.channels[&post.channel_id].entries[0]);
    let dev = &mut net.devs[b];
    let seq = seq.seq as u64;
    let got = dev
        .m
        .receive_channel_entry(&mut dev.d, &post.channel_id, seq, &entry, None, NOW_MS)
        .unwrap();
    assert!(matches!(
        got.events.as_slice(),
        [EventView::Message { message }] if message.text == "over the socket"
    ));
    let again = dev
        .m
        .receive_channel_entry(&mut dev.d, &post.channel_id, seq, &entry, None, NOW_MS)
        .unwrap();
    assert!(again.events.is_empty());
    // An unknown channel changes nothing.
    let other = dev
        .m
        .receive_channel_entry(&mut dev.d, &"ee".repeat(16), 1, &entry, None, NOW_MS)
        .unwrap();
    assert!(other.events.is_empty());
}

#[test]
fn bad_input_is_typed() {
    let mut net = Net::new();
    let a = net.add(ALICE, 1);
    let channel_answer = net.new_channel();
    let code = |e: WebError| e.code;
    let dev = &mut net.devs[a];
    let (m, d) = (&mut dev.m, &mut dev.d);
    let bob = hex::encode(BOB);
    let direct = Conversation::Direct(BOB);

    assert_eq!(
        code(conversation("channel", &bob).unwrap_err()),
        ErrorCode::InvalidArgument
    );
    assert_eq!(
        code(conversation("direct", "BOB").unwrap_err()),
        ErrorCode::InvalidArgument
    );
    assert_eq!(
        code(m.add_contact(d, &hex::encode(ALICE), None).unwrap_err()),
        ErrorCode::InvalidArgument
    );
    assert_eq!(
        code(m.add_contact(d, "xyz", None).unwrap_err()),
        ErrorCode::InvalidArgument
    );
    assert_eq!(
        code(m.set_blocked(d, &hex::encode(ALICE), true).unwrap_err()),
        ErrorCode::InvalidArgument
    );
    // Blocking Bob: texts to him are refused; unblocking lets them through again.
    assert!(m.set_blocked(d, &bob, true).unwrap().blocked);
    assert!(m.contact(d, &bob).unwrap().unwrap().blocked);
    let refused = m
        .send_text(d, direct, "hi", Vec::new(), NOW_MS)
        .unwrap_err();
    assert_eq!(refused.code, ErrorCode::InvalidArgument);
    assert!(refused.message.contains("blocked"), "{}", refused.message);
    assert!(!m.set_blocked(d, &bob, false).unwrap().blocked);
    assert_eq!(
        code(m.contact(d, &"AB".repeat(16)).unwrap_err()),
        ErrorCode::InvalidArgument
    );
    assert_eq!(
        code(m.send_text(d, direct, "", Vec::new(), NOW_MS).unwrap_err()),
        ErrorCode::InvalidArgument
    );
    assert_eq!(
        code(
            m.send_text(d, direct, &"x".repeat(20_000), Vec::new(), NOW_MS)
                .unwrap_err()
        ),
        ErrorCode::Limit
    );
    assert_eq!(
        code(
            m.send_text(d, Conversation::Group([1; 16]), "x", Vec::new(), NOW_MS)
                .unwrap_err()
        ),
        ErrorCode::InvalidArgument
    );
    // A failed start stores nothing.
    assert!(m.history(d, direct, NOW_MS).unwrap().is_empty());
    assert_eq!(
        code(m.react(d, direct, "nope", "x", false, NOW_MS).unwrap_err()),
        ErrorCode::InvalidArgument
    );
    assert_eq!(
        code(
            m.react(d, direct, &"11".repeat(16), "", false, NOW_MS)
                .unwrap_err()
        ),
        ErrorCode::Limit
    );
    assert_eq!(
        code(
            m.edit(d, direct, &"11".repeat(16), "x", NOW_MS)
                .unwrap_err()
        ),
        ErrorCode::InvalidArgument
    );
    assert_eq!(
        code(m.delete(d, direct, &"11".repeat(16), NOW_MS).unwrap_err()),
        ErrorCode::InvalidArgument
    );
    assert_eq!(
        code(m.mark_read(d, direct, &["zz".into()], NOW_MS).unwrap_err()),
        ErrorCode::InvalidArgument
    );
    // Unknown handles.
    for id in ["x", &"12".repeat(16)] {
        let expected = if id == "x" {
            ErrorCode::InvalidArgument
        } else {
            ErrorCode::InvalidState
        };
        assert_eq!(code(m.action_done(d, id, true).unwrap_err()), expected);
        assert_eq!(
            code(
                m.add_member_posted(d, id, &channel_answer, NOW_MS)
                    .unwrap_err()
            ),
            expected
        );
        assert_eq!(code(m.follow_up(d, id, NOW_MS).unwrap_err()), expected);
        assert_eq!(code(m.task_done(d, id).unwrap_err()), expected);
    }
    // A text action reported failed is taken back; done twice is unknown.
    let action = m.send_text(d, direct, "x", Vec::new(), NOW_MS).unwrap();
    assert_eq!(m.history(d, direct, NOW_MS).unwrap().len(), 1);
    m.action_done(d, &action.action_id, false).unwrap();
    assert!(m.history(d, direct, NOW_MS).unwrap().is_empty());
    assert_eq!(
        code(m.action_done(d, &action.action_id, true).unwrap_err()),
        ErrorCode::InvalidState
    );
    // Relay answers of the wrong shape.
    for answer in [
        "{",
        "{}",
        r#"{"channel_id":"00","read_token":"a","write_token":"b","expires_at":0}"#,
    ] {
        assert_eq!(
            code(
                m.create_group(d, "g", std::slice::from_ref(&bob), answer, NOW_MS)
                    .unwrap_err()
            ),
            ErrorCode::InvalidResponse
        );
    }
    let bad_token = format!(
        r#"{{"channel_id":"{}","read_token":"AAAA","write_token":"AAAA","expires_at":0}}"#,
        "00".repeat(16)
    );
    assert_eq!(
        code(
            m.create_group(d, "g", std::slice::from_ref(&bob), &bad_token, NOW_MS)
                .unwrap_err()
        ),
        ErrorCode::InvalidResponse
    );
    assert_eq!(
        code(
            m.create_group(d, "g", &["nope".into()], &bad_token, NOW_MS)
                .unwrap_err()
        ),
        ErrorCode::InvalidArgument
    );
    assert_eq!(
        code(
            m.receive_channel_page(d, &"00".repeat(16), "[]", NOW_MS)
                .unwrap_err()
        ),
        ErrorCode::InvalidResponse
    );
    assert_eq!(
        code(
            m.receive_channel_page(
                d,
                &"00".repeat(16),
                r#"{"entries":[{"seq":1,"entry":"!!","created_at":0}],"next_after":1,"more":false}"#,
                NOW_MS
            )
            .unwrap_err()
        ),
        ErrorCode::InvalidResponse
    );
    assert_eq!(
        code(
            m.receive_channel_entry(d, &"00".repeat(16), 1, "!!", None, NOW_MS)
                .unwrap_err()
        ),
        ErrorCode::InvalidArgument
    );
    assert_eq!(
        code(m.add_member(d, "g", &bob, NOW_MS).unwrap_err()),
        ErrorCode::InvalidArgument
    );
    assert_eq!(
        code(m.add_member(d, &"01".repeat(16), &bob, NOW_MS).unwrap_err()),
        ErrorCode::InvalidArgument
    );
    assert_eq!(
        code(m.subscribe_frames(d, Some("g")).unwrap_err()),
        ErrorCode::InvalidArgument
    );
    // Identity keys and envelopes.
    assert_eq!(
        code(m.accept_identity(d, &bob, 1, "!!").unwrap_err()),
        ErrorCode::InvalidArgument
    );
    assert_eq!(
        code(
            m.safety_number_with(d, &bob, &STANDARD.encode([1u8; 10]))
                .unwrap_err()
        ),
        ErrorCode::InvalidArgument
    );
    assert_eq!(
        code(
            m.receive_envelope(d, "nope", "AAAA", None, false, false, NOW_MS)
                .unwrap_err()
        ),
        ErrorCode::InvalidArgument
    );
    let garbage = m
        .receive_envelope(d, &"13".repeat(16), "!!", None, false, false, NOW_MS)
        .unwrap();
    assert_eq!(garbage.status, "rejected");
    assert!(matches!(
        garbage.events.as_slice(),
        [EventView::Rejected { .. }]
    ));
    let junk = m
        .receive_envelope(
            d,
            &"14".repeat(16),
            &STANDARD.encode([7u8; 300]),
            None,
            false,
            false,
            NOW_MS,
        )
        .unwrap();
    assert_eq!(junk.status, "rejected");
    // A device without the account's access key cannot send its card.
    let (mut linked, _) = device(&net.key, ALICE, 3);
    let mut m2 = MessengerCore::new();
    assert_eq!(
        code(m2.card_for(&mut linked, &bob, NOW_MS).unwrap_err()),
        ErrorCode::InvalidState
    );
    // Before login nothing works.
    let mut fresh = DeviceCore::new().unwrap();
    assert_eq!(
        code(
            m2.send_text(&mut fresh, direct, "x", Vec::new(), NOW_MS)
                .unwrap_err()
        ),
        ErrorCode::InvalidState
    );
    // The channel request.
    assert!(channel_request().unwrap().contains("ttl_secs"));
}

#[test]
fn franked_texts_are_checked_and_reported() {
    use haven_protocol::franking::Report;
    use haven_protocol::franking::verify::{FrankingSecret, StampKey, verify_report};
    let mut net = Net::new();
    let (a, b) = (net.add(ALICE, 1), net.add(BOB, 1));
    let answer = serde_json::json!({
        "franking_key": STANDARD.encode(FrankingSecret::from_bytes(FRANKING_SECRET).public().encode()),
        "previous": [],
    })
    .to_string();
    for i in [a, b] {
        assert!(net.devs[i].d.needs_franking_key(NOW).unwrap());
        net.devs[i].d.set_franking_key(Some(&answer), NOW).unwrap();
        assert!(!net.devs[i].d.needs_franking_key(NOW).unwrap());
    }
    let dev = &mut net.devs[a];
    dev.m
        .add_contact(&mut dev.d, &hex::encode(BOB), None)
        .unwrap();
    let id = net.send_text(a, Conversation::Direct(BOB), "report me, obsidian");
    net.settle();
    let events = net.events(b);
    no_rejections(&events);
    assert_eq!(
        net.texts(b, Conversation::Direct(ALICE)),
        ["report me, obsidian"]
    );

    let dev = &net.devs[b];
    let body = dev
        .m
        .report_request(&dev.d, Conversation::Direct(ALICE), &id, NOW_MS)
        .unwrap();
    let request: haven_protocol::api::moderation::ReportRequest =
        serde_json::from_str(&body).unwrap();
    let report = Report::decode(&STANDARD.decode(&request.report).unwrap()).unwrap();
    assert_eq!((report.sender_account, report.sender_device), (ALICE, 1));
    let alice_ik = net.devs[a]
        .d
        .store()
        .identity_key_pair()
        .unwrap()
        .public()
        .to_bytes();
    verify_report(
        &report,
        &FrankingSecret::from_bytes(FRANKING_SECRET),
        &StampKey::from_bytes(STAMP_KEY),
        &alice_ik,
    )
    .unwrap();
    // Alice's own message is not hers to report; an unknown one is not found.
    let dev = &net.devs[a];
    let own = dev
        .m
        .report_request(&dev.d, Conversation::Direct(BOB), &id, NOW_MS)
        .unwrap_err();
    assert_eq!(own.code, ErrorCode::NotReportable);
    let unknown = dev
        .m
        .report_request(&dev.d, Conversation::Direct(BOB), &"ab".repeat(16), NOW_MS)
        .unwrap_err();
    assert_eq!(unknown.code, ErrorCode::NotFound);

    // A franked envelope handed over without its franking is refused.
    net.send_text(a, Conversation::Direct(BOB), "stripped");
    let key = (BOB, 1);
    for q in net.queues.get_mut(&key).unwrap() {
        q.3 = None;
    }
    net.settle();
    let events = net.events(b);
    assert!(
        events.iter().any(|e| matches!(
            e,
            EventView::Rejected { reason } if reason.contains("franking")
        )),
        "{events:?}"
    );
}

/// The web messenger franks group entries like the native one (PROTOCOL §16.3 "Groups"): the
/// append carries the commitment, a reader checks it from a page or a socket frame, and the
/// report names the channel, carries its read token and verifies as the relay checks it.
#[test]
fn franked_group_texts_are_checked_and_reported() {
    use haven_protocol::franking::verify::{FrankingSecret, StampKey, verify_report};
    use haven_protocol::franking::{Destination, Report};
    let mut net = Net::new();
    let (a, b) = (net.add(ALICE, 1), net.add(BOB, 1));
    let answer = serde_json::json!({
        "franking_key": STANDARD.encode(FrankingSecret::from_bytes(FRANKING_SECRET).public().encode()),
        "previous": [],
    })
    .to_string();
    for i in [a, b] {
        net.devs[i].d.set_franking_key(Some(&answer), NOW).unwrap();
    }
    let channel = net.new_channel();
    let dev = &mut net.devs[a];
    let created = dev
        .m
        .create_group(&mut dev.d, "g", &[hex::encode(BOB)], &channel, NOW_MS)
        .unwrap();
    net.invites(a, &created).unwrap();
    net.settle();
    let conv = conversation("group", &created.group_id).unwrap();
    let id = net.send_text(a, conv, "franked for the group");
    net.settle();
    no_rejections(&net.events(b));
    assert_eq!(net.texts(b, conv), ["franked for the group"]);
    assert_eq!(net.channels.len(), 1, "the group's one channel");
    let channel_id = net.channels.keys().next().unwrap().clone();
    assert!(net.channels[&channel_id].commitments[0].is_some());

    let dev = &net.devs[b];
    let body = dev.m.report_request(&dev.d, conv, &id, NOW_MS).unwrap();
    let request: haven_protocol::api::moderation::ReportRequest =
        serde_json::from_str(&body).unwrap();
    assert_eq!(
        request.read_token.as_deref(),
        Some(net.channels[&channel_id].read.as_str())
    );
    let report = Report::decode(&STANDARD.decode(&request.report).unwrap()).unwrap();
    assert_eq!(
        report.destination,
        Destination::Channel {
            channel_id: hex::decode(&channel_id).unwrap().try_into().unwrap()
        }
    );
    let alice_ik = net.devs[a]
        .d
        .store()
        .identity_key_pair()
        .unwrap()
        .public()
        .to_bytes();
    verify_report(
        &report,
        &FrankingSecret::from_bytes(FRANKING_SECRET),
        &StampKey::from_bytes(STAMP_KEY),
        &alice_ik,
    )
    .unwrap();

    // Over the socket: the frame's franking goes with the entry; without it, refused.
    let dev = &mut net.devs[a];
    let action = dev
        .m
        .send_text(&mut dev.d, conv, "socket", Vec::new(), NOW_MS)
        .unwrap();
    let post = action.group.clone().unwrap().post;
    let seq: AppendResponse = serde_json::from_str(&net.post(&post)).unwrap();
    let chan = &net.channels[&post.channel_id];
    let entry = STANDARD.encode(chan.entries.last().unwrap());
    assert!(chan.commitments.last().unwrap().is_some());
    let seq = seq.seq as u64;
    let dev = &mut net.devs[b];
    let stripped = dev
        .m
        .receive_channel_entry(&mut dev.d, &post.channel_id, seq, &entry, None, NOW_MS)
        .unwrap();
    assert!(
        stripped.events.iter().any(|e| matches!(
            e,
            EventView::Rejected { reason } if reason.contains("franking")
        )),
        "{:?}",
        stripped.events
    );
    // A frame with its franking is taken (the next entry; the stripped one's position is
    // spent).
    let dev = &mut net.devs[a];
    let action = dev
        .m
        .send_text(&mut dev.d, conv, "socket again", Vec::new(), NOW_MS)
        .unwrap();
    let post = action.group.clone().unwrap().post;
    let next: AppendResponse = serde_json::from_str(&net.post(&post)).unwrap();
    let chan = &net.channels[&post.channel_id];
    let entry = STANDARD.encode(chan.entries.last().unwrap());
    let commitment = chan.commitments.last().unwrap().clone().unwrap();
    let next = next.seq as u64;
    let f = entry_stamped(&commitment, &post.channel_id, next);
    let frame = serde_json::json!({
        "commitment": f.commitment, "stamp": f.stamp, "seq": next, "createdAt": NOW,
    })
    .to_string();
    let dev = &mut net.devs[b];
    let got = dev
        .m
        .receive_channel_entry(
            &mut dev.d,
            &post.channel_id,
            next,
            &entry,
            Some(&frame),
            NOW_MS,
        )
        .unwrap();
    assert!(
        matches!(got.events.as_slice(), [EventView::Message { message }] if message.text == "socket again"),
        "{:?}",
        got.events
    );
}
