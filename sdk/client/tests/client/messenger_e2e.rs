//! The Messenger end to end against a real relay (in process, SQLite): Alice with two devices, Bob
//! and Carol talk over WebSockets: first contact by username, replies, receipts, typing,
//! reactions, edits, deletes, timers, out-of-order delivery, Bob offline then back, a group of
//! three with a member removed (who then reads nothing new), bad envelopes rejected as typed
//! events without damage, and the relay's database and logs free of every plaintext and
//! username.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use haven_client::device::DeliveredFranking;
use haven_client::messenger::{Event, Messenger};
use haven_client::relay::RelayClient;
use haven_client::{
    ClientStore, ConnectionState, Conversation, Device, ReceiptKind, ReceiptPolicy, RejectReason,
};
use haven_protocol::api::messages::FetchResponse;
use haven_sdk::identity::IdentityKeyPair;
use haven_sdk::sealed_sender::{SenderCertificate, seal_sender};
use haven_sdk::store::DeviceAddress;
use haven_testkit::RelayConfig;
use reqwest::Method;
use serde_json::json;
use tokio::sync::broadcast;

use crate::common::{self, Relay, read_all};

const PW: &[u8] = b"messenger e2e: correct horse";
/// The relay's certificate signing seed, so the test can forge certificates it would issue.
const CERT_SEED: [u8; 32] = [42; 32];
const USERNAMES: &[&str] = &["alice_wonder", "bob_builder", "carol_singer"];
/// Every plaintext typed below; none may reach the relay's database or logs.
const SECRETS: &[&str] = &[
    "Hello Bob, first contact via periwinkle",
    "Hi Alice, reply about tangerine",
    "offline one nebula",
    "offline two quasar",
    "ooo-alpha-walrus",
    "ooo-beta-walrus",
    "ooo-gamma-walrus",
    "group hello from marzipan",
    "group reply from Bob obsidian",
    "after removal secret lanternfish",
    "edited text cormorant",
    "climbing club",
];

/// A relay logging at `debug` (so the blindness check covers its most talkative logs), issuing
/// sender certificates with [`CERT_SEED`].
fn start_relay() -> Relay {
    Relay::start(RelayConfig::new().set_all(&[
        ("HAVEN_LOG", "debug".to_owned()),
        ("HAVEN_CERTIFICATE_KEY", STANDARD.encode(CERT_SEED)),
    ]))
}

fn store(dir: &Path, name: &str) -> ClientStore {
    ClientStore::open(&dir.join(name), &[5u8; 32]).unwrap()
}

/// Waits for the first event matching `pick`, skipping others.
async fn expect<T>(
    rx: &mut broadcast::Receiver<Event>,
    what: &str,
    mut pick: impl FnMut(&Event) -> Option<T>,
) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match tokio::time::timeout(left, rx.recv()).await {
            Ok(Ok(e)) => {
                if let Some(v) = pick(&e) {
                    return v;
                }
                seen.push(format!("{e:?}"));
            }
            Ok(Err(broadcast::error::RecvError::Lagged(_))) => {}
            Ok(Err(e)) => panic!("event stream closed waiting for {what}: {e}"),
            Err(_) => panic!("timed out waiting for {what}; saw {seen:#?}"),
        }
    }
}

fn text_of(e: &Event) -> Option<(Conversation, String, bool, [u8; 16])> {
    match e {
        Event::Message(m) => Some((m.conversation(), m.text.clone(), m.outgoing, m.message_id)),
        _ => None,
    }
}

async fn expect_text(
    rx: &mut broadcast::Receiver<Event>,
    text: &str,
) -> (Conversation, bool, [u8; 16]) {
    expect(rx, text, |e| {
        text_of(e).and_then(|(c, t, o, id)| (t == text).then_some((c, o, id)))
    })
    .await
}

struct Party {
    messenger: Arc<Messenger>,
    events: broadcast::Receiver<Event>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Party {
    /// A party whose delivery receipts are immediate (the tests here wait for them).
    fn new(device: Device) -> Self {
        let party = Self::with_default_receipts(device);
        party
            .messenger
            .set_receipt_policy(ReceiptPolicy::Immediate)
            .unwrap();
        party
    }

    fn with_default_receipts(device: Device) -> Self {
        let messenger = Arc::new(Messenger::new(Arc::new(device)));
        let events = messenger.subscribe();
        Self {
            messenger,
            events,
            task: None,
        }
    }

    /// Connects the WebSocket and waits until the queue has been drained.
    async fn online(&mut self) {
        let m = self.messenger.clone();
        self.task = Some(tokio::spawn(async move {
            let _ = m.run().await;
        }));
        expect(&mut self.events, "caught up", |e| {
            matches!(e, Event::Connection(ConnectionState::CaughtUp)).then_some(())
        })
        .await;
    }

    /// Stops reading the socket; returns once the task is gone, so nothing sent from now on is
    /// processed (or acknowledged) until [`Party::online`].
    async fn offline(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
            let _ = t.await;
        }
    }

    fn account(&self) -> [u8; 16] {
        self.messenger.device().account_bytes()
    }
}

/// POSTs raw envelope bytes to every device of `to` (sealed, with its access key).
async fn post_raw(url: &str, to: &Party, envelopes: &[(u32, Vec<u8>)]) -> String {
    let id = hex::encode(rand::random::<[u8; 16]>());
    let body = json!({
        "message_id": id,
        "access_key": STANDARD.encode(to.messenger.device().access_key().unwrap()),
        "envelopes": envelopes.iter().map(|(d, c)| json!({"device_number": d, "content": STANDARD.encode(c)})).collect::<Vec<_>>(),
    });
    let client = RelayClient::new(url).unwrap();
    client
        .request_anonymous(
            Method::POST,
            &format!("/v1/messages/{}/sealed", hex::encode(to.account())),
            Some(&body),
        )
        .await
        .unwrap();
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_people_a_group_and_bad_input_through_a_relay() {
    let dir = tempfile::tempdir().unwrap();
    let mut relay = start_relay();
    let url = relay.url();
    let client = || RelayClient::new(&url).unwrap();

    let a1 = Device::register(client(), store(dir.path(), "a1.db"), Some(USERNAMES[0]), PW)
        .await
        .unwrap();
    let a2 = common::link_device(&a1, client(), store(dir.path(), "a2.db")).await;
    let b = Device::register(client(), store(dir.path(), "b.db"), Some(USERNAMES[1]), PW)
        .await
        .unwrap();
    let c = Device::register(client(), store(dir.path(), "c.db"), Some(USERNAMES[2]), PW)
        .await
        .unwrap();
    let mut alice1 = Party::new(a1);
    let mut alice2 = Party::new(a2);
    let mut bob = Party::new(b);
    let mut carol = Party::new(c);
    alice1.online().await;
    alice2.online().await;
    bob.online().await;
    carol.online().await;
    let (alice, bob_id, carol_id) = (alice1.account(), bob.account(), carol.account());

    // --- First contact by username; Bob and Alice's other device see it live.
    let contact = alice1
        .messenger
        .add_contact_by_username("Bob_Builder")
        .await
        .unwrap();
    assert_eq!(contact.account, bob_id);
    assert!(contact.card_sent);
    let first = alice1
        .messenger
        .send_text(Conversation::Direct(bob_id), SECRETS[0])
        .await
        .unwrap();
    let (conv, outgoing, id) = expect_text(&mut bob.events, SECRETS[0]).await;
    assert_eq!(
        (conv, outgoing, id),
        (Conversation::Direct(alice), false, first)
    );
    let (conv, outgoing, _) = expect_text(&mut alice2.events, SECRETS[0]).await;
    assert_eq!((conv, outgoing), (Conversation::Direct(bob_id), true));
    // Bob's device confirms delivery automatically.
    let (kind, ids) = expect(&mut alice1.events, "delivery receipt", |e| match e {
        Event::Receipt {
            kind,
            message_ids,
            from,
            ..
        } if *from == bob_id => Some((*kind, message_ids.clone())),
        _ => None,
    })
    .await;
    assert_eq!((kind, ids), (ReceiptKind::Delivered, vec![first]));

    // Safety numbers agree on both sides.
    let from_alice = alice1.messenger.safety_numbers(&bob_id).unwrap();
    let from_bob = bob.messenger.safety_numbers(&alice).unwrap();
    let bob_on_alice1: Vec<_> = from_bob
        .iter()
        .filter(|s| s.device == alice1.messenger.device().device_number())
        .collect();
    assert_eq!(bob_on_alice1.len(), 1);
    assert_eq!(bob_on_alice1[0].digits, from_alice[0].digits);
    assert_eq!(from_alice[0].digits.len(), 60);

    // --- Bob replies (sealed now: he learned Alice's access key from her card); both of
    // Alice's devices get it.
    assert!(
        bob.messenger
            .device()
            .has_contact_access_key(&hex::encode(alice))
            .unwrap()
    );
    let reply = bob
        .messenger
        .send_text(Conversation::Direct(alice), SECRETS[1])
        .await
        .unwrap();
    expect_text(&mut alice1.events, SECRETS[1]).await;
    expect_text(&mut alice2.events, SECRETS[1]).await;

    // Read receipt, typing, reaction, edit, delete, timer.
    alice1
        .messenger
        .mark_read(Conversation::Direct(bob_id), &[reply])
        .await
        .unwrap();
    expect(&mut bob.events, "read receipt", |e| {
        matches!(e, Event::Receipt { kind: ReceiptKind::Read, message_ids, .. } if message_ids == &vec![reply]).then_some(())
    })
    .await;
    bob.messenger
        .send_typing(Conversation::Direct(alice), true)
        .await
        .unwrap();
    expect(&mut alice1.events, "typing", |e| {
        matches!(e, Event::Typing { from, started: true, .. } if *from == bob_id).then_some(())
    })
    .await;
    bob.messenger
        .react(Conversation::Direct(alice), first, "👍", false)
        .await
        .unwrap();
    expect(&mut alice1.events, "reaction", |e| {
        matches!(e, Event::Reaction { target, emoji, .. } if *target == first && emoji == "👍")
            .then_some(())
    })
    .await;
    alice1
        .messenger
        .edit(Conversation::Direct(bob_id), first, SECRETS[10])
        .await
        .unwrap();
    expect(&mut bob.events, "edit", |e| {
        matches!(e, Event::Edited { target, text, .. } if *target == first && text == SECRETS[10])
            .then_some(())
    })
    .await;
    // Bob cannot edit or delete Alice's message.
    assert!(
        bob.messenger
            .edit(Conversation::Direct(alice), first, "forged")
            .await
            .is_err()
    );
    bob.messenger
        .delete(Conversation::Direct(alice), reply)
        .await
        .unwrap();
    expect(&mut alice1.events, "delete", |e| {
        matches!(e, Event::Deleted { target, .. } if *target == reply).then_some(())
    })
    .await;
    let history = alice1
        .messenger
        .history(Conversation::Direct(bob_id))
        .unwrap();
    let firstm = history.iter().find(|m| m.message_id == first).unwrap();
    assert_eq!(firstm.text, SECRETS[10]);
    assert!(firstm.edited);
    assert_eq!(firstm.reactions.len(), 1);
    assert_eq!(firstm.delivered_to, vec![bob_id]);
    assert!(
        history
            .iter()
            .find(|m| m.message_id == reply)
            .unwrap()
            .deleted
    );
    alice1
        .messenger
        .set_timer(Conversation::Direct(bob_id), 3600)
        .await
        .unwrap();
    expect(&mut bob.events, "timer", |e| {
        matches!(
            e,
            Event::TimerChanged {
                expire_secs: 3600,
                ..
            }
        )
        .then_some(())
    })
    .await;

    // --- Bob offline, then back: what was sent meanwhile arrives in order.
    bob.offline().await;
    for text in &SECRETS[2..4] {
        alice1
            .messenger
            .send_text(Conversation::Direct(bob_id), text)
            .await
            .unwrap();
    }
    bob.online().await;
    let texts: Vec<String> = bob
        .messenger
        .history(Conversation::Direct(alice))
        .unwrap()
        .into_iter()
        .map(|m| m.text)
        .collect();
    let at = |t: &str| texts.iter().position(|x| x == t).unwrap();
    assert!(at(SECRETS[2]) < at(SECRETS[3]));
    let timed = bob
        .messenger
        .history(Conversation::Direct(alice))
        .unwrap()
        .into_iter()
        .find(|m| m.text == SECRETS[2])
        .unwrap();
    assert!(
        timed.expires_at.is_some(),
        "the timer applies to new messages"
    );

    // --- Out-of-order delivery: Bob processes three queued envelopes in reverse order.
    bob.offline().await;
    for text in &SECRETS[4..7] {
        alice1
            .messenger
            .send_text(Conversation::Direct(bob_id), text)
            .await
            .unwrap();
    }
    let page = bob
        .messenger
        .device()
        .relay()
        .request(Method::GET, "/v1/messages?after=0&limit=100", None)
        .await
        .unwrap();
    // With the relay's franking of each (§16.4), as the messenger's own fetch hands it over.
    let page: FetchResponse = serde_json::from_value(page).unwrap();
    let mut queued: Vec<(String, Vec<u8>, Option<DeliveredFranking>)> = page
        .envelopes
        .iter()
        .map(|e| {
            (
                e.message_id.to_hex(),
                STANDARD.decode(&e.content).unwrap(),
                DeliveredFranking::from_queued(e).unwrap(),
            )
        })
        .collect();
    assert!(queued.len() >= 3);
    queued.reverse();
    let mut seen = Vec::new();
    for (id, content, franking) in &queued {
        for e in bob
            .messenger
            .process_envelope(id, content, franking.as_ref())
            .await
            .unwrap()
        {
            if let Some((_, t, _, _)) = text_of(&e) {
                seen.push(t);
            }
        }
    }
    for t in &SECRETS[4..7] {
        assert!(seen.iter().any(|s| s == t), "{t} decrypted out of order");
    }
    // Processing them again (as after a crash before the ack) delivers nothing twice.
    for (id, content, franking) in &queued {
        assert!(
            bob.messenger
                .process_envelope(id, content, franking.as_ref())
                .await
                .unwrap()
                .iter()
                .all(|e| text_of(e).is_none())
        );
    }
    bob.online().await;

    // --- A group of three; everyone reads everyone; Carol is removed and reads nothing new.
    let group = alice1
        .messenger
        .create_group(SECRETS[11], &[bob_id, carol_id])
        .await
        .unwrap();
    for p in [&mut bob, &mut carol, &mut alice2] {
        expect(&mut p.events, "group joined", |e| {
            matches!(e, Event::GroupUpdated { group_id, members, .. } if *group_id == group && members.len() == 3).then_some(())
        })
        .await;
    }
    alice1
        .messenger
        .send_text(Conversation::Group(group), SECRETS[7])
        .await
        .unwrap();
    for p in [&mut bob, &mut carol, &mut alice2] {
        let (conv, _, _) = expect_text(&mut p.events, SECRETS[7]).await;
        assert_eq!(conv, Conversation::Group(group));
    }
    // Bob needs Alice's and Carol's keys: his sender key reaches them through tasks.
    bob.messenger
        .send_text(Conversation::Group(group), SECRETS[8])
        .await
        .unwrap();
    for p in [&mut alice1, &mut carol, &mut alice2] {
        expect_text(&mut p.events, SECRETS[8]).await;
    }
    alice1
        .messenger
        .remove_member(&group, &carol_id)
        .await
        .unwrap();
    expect(&mut carol.events, "removed", |e| {
        matches!(e, Event::RemovedFromGroup { group_id } if *group_id == group).then_some(())
    })
    .await;
    for p in [&mut bob, &mut alice2] {
        expect(&mut p.events, "new epoch", |e| {
            matches!(e, Event::GroupUpdated { group_id, members, .. } if *group_id == group && members.len() == 2).then_some(())
        })
        .await;
    }
    assert!(
        carol
            .messenger
            .send_text(Conversation::Group(group), "still here?")
            .await
            .is_err()
    );
    alice1
        .messenger
        .send_text(Conversation::Group(group), SECRETS[9])
        .await
        .unwrap();
    expect_text(&mut bob.events, SECRETS[9]).await;
    expect_text(&mut alice2.events, SECRETS[9]).await;
    carol.messenger.sync().await.unwrap();
    // Not synchronisation but a grace period: this checks that something does *not* arrive, so
    // there is no event to wait for; a wrongly delivered live frame would land within it.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        carol
            .messenger
            .history(Conversation::Group(group))
            .unwrap()
            .iter()
            .all(|m| m.text != SECRETS[9]),
        "a removed member must not read new messages"
    );
    let info = carol.messenger.groups().unwrap();
    assert!(!info[0].active);

    // --- Bad input: each is a typed Rejected event and the session still works afterwards.
    let bob_dev = bob.messenger.device().clone();
    let bob_key = bob_dev.identity_key().unwrap();
    let bob_n = bob_dev.device_number();
    let relay_key = ed25519_dalek::SigningKey::from_bytes(&CERT_SEED);
    let mallory = IdentityKeyPair::generate(&mut rand::rng());
    let mallory_addr = DeviceAddress::new([0xAB; 16], 1);
    let far = u64::MAX / 2;
    // A well-formed ratchet message (type 0x01) from a session Bob does not have.
    let mut ratchet = vec![0x01, 0x01];
    ratchet.extend_from_slice(&[9u8; 32]);
    ratchet.extend_from_slice(&0u32.to_be_bytes());
    ratchet.extend_from_slice(&0u32.to_be_bytes());
    ratchet.extend_from_slice(&[0u8; 48]);
    let seal = |cert: &SenderCertificate| {
        seal_sender(&mallory, cert, &bob_key, 0x01, &ratchet, &mut rand::rng()).unwrap()
    };
    let good_cert = SenderCertificate::issue(&relay_key, mallory_addr, *mallory.public(), far);
    let expired = SenderCertificate::issue(&relay_key, mallory_addr, *mallory.public(), 1_000);
    let foreign = SenderCertificate::issue(
        &ed25519_dalek::SigningKey::from_bytes(&[7; 32]),
        mallory_addr,
        *mallory.public(),
        far,
    );
    let mut tampered = seal(&good_cert);
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    type Check = fn(&RejectReason) -> bool;
    let cases: Vec<(Vec<u8>, Check)> = vec![
        (tampered, |r| matches!(r, RejectReason::Tampered)),
        (seal(&expired), |r| {
            matches!(r, RejectReason::Certificate(_))
        }),
        (seal(&foreign), |r| {
            matches!(r, RejectReason::Certificate(_))
        }),
        (seal(&good_cert), |r| {
            matches!(r, RejectReason::UnknownSession)
        }),
    ];
    for (envelope, check) in cases {
        post_raw(&url, &bob, &[(bob_n, envelope)]).await;
        let reason = expect(&mut bob.events, "rejection", |e| match e {
            Event::Rejected { reason } => Some(reason.clone()),
            _ => None,
        })
        .await;
        assert!(check(&reason), "unexpected reason {reason:?}");
    }
    // A replay: one of Alice's real envelopes delivered a second time under a new relay id.
    let (_, replay_content, replay_franking) = queued[0].clone();
    let events = bob
        .messenger
        .process_envelope(
            &hex::encode([0xEE; 16]),
            &replay_content,
            replay_franking.as_ref(),
        )
        .await
        .unwrap();
    assert!(
        events.iter().any(|e| matches!(
            e,
            Event::Rejected {
                reason: RejectReason::Replayed
            }
        )),
        "{events:?}"
    );
    // The session with Alice still works both ways.
    alice1
        .messenger
        .send_text(Conversation::Direct(bob_id), "still fine")
        .await
        .unwrap();
    expect_text(&mut bob.events, "still fine").await;
    bob.messenger
        .send_text(Conversation::Direct(alice), "still fine too")
        .await
        .unwrap();
    expect_text(&mut alice1.events, "still fine too").await;

    // --- An account identity change is a typed error and an event; accepting it (after
    // comparing the new account safety number) lets sends resume.
    let dave = Device::register(client(), store(dir.path(), "d.db"), None, PW)
        .await
        .unwrap();
    let dave_id = dave.account_bytes();
    alice1
        .messenger
        .add_contact(&hex::encode(dave_id))
        .await
        .unwrap();
    let before = alice1.messenger.account_safety_number(&dave_id).unwrap();
    assert_eq!(before.as_ref().map(String::len), Some(60));
    // Dave's account gets a new identity key (as after a reset): a list signed by it.
    let new_key = haven_sdk::account::AccountIdentityKeyPair::generate(&mut rand::rng());
    let list = new_key
        .sign_device_list(dave_id, 2, 0, &[(1, dave.identity_key().unwrap())])
        .unwrap();
    dave.relay()
        .request(
            Method::PUT,
            "/v1/account/device-list",
            Some(&json!({"list": STANDARD.encode(list.to_bytes()), "replace_account_key": true})),
        )
        .await
        .unwrap();
    let err = alice1
        .messenger
        .refresh_devices(&dave_id)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("account identity key"), "{err}");
    expect(&mut alice1.events, "account key changed", |e| {
        matches!(e, Event::AccountKeyChanged { account } if *account == dave_id).then_some(())
    })
    .await;
    // Nothing goes to Dave until the user accepts the new key.
    let err = alice1
        .messenger
        .send_text(Conversation::Direct(dave_id), "held back")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("account identity key"), "{err}");
    alice1.messenger.accept_account_key(&dave_id).unwrap();
    let after = alice1.messenger.account_safety_number(&dave_id).unwrap();
    assert_ne!(before, after, "the safety number follows the account key");
    alice1
        .messenger
        .send_text(Conversation::Direct(dave_id), "after accepting")
        .await
        .unwrap();

    // --- The relay's files and logs hold none of the plaintexts or usernames.
    for p in [&mut alice1, &mut alice2, &mut bob, &mut carol] {
        p.offline().await;
    }
    // Without their messengers the sockets close, so the relay's shutdown need not wait for them.
    drop((alice1, alice2, bob, carol));
    // The files as a crash would leave them, then after a clean stop; then the complete logs.
    let mut haystack = read_all(relay.config().dir());
    relay.stop();
    haystack.extend(read_all(relay.config().dir()));
    assert!(haystack.len() > 10_000, "relay files were read");
    let logs = relay.logs();
    // Its own events from start to stop, and at `debug` (the SQL statements of its database).
    haven_testkit::blindness::assert_logged(&logs, haven_testkit::blindness::LIFETIME_AT_DEBUG);
    haystack.extend(logs.into_bytes());
    let lower = String::from_utf8_lossy(&haystack).to_lowercase();
    for needle in SECRETS.iter().chain(USERNAMES) {
        assert!(
            !lower.contains(&needle.to_lowercase()),
            "relay files or logs contain {needle:?}"
        );
    }
}

/// Delayed receipts (PROTOCOL §13.4.1) through a relay: Bob's device sends nothing for the
/// messages it receives until the drawn delay has passed (with no other traffic to wake it),
/// then one receipt listing all of them; the policy survives reopening the store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delayed_receipts_go_out_after_the_delay_batched() {
    const MIN: u64 = 2;
    const MAX: u64 = 3;
    let dir = tempfile::tempdir().unwrap();
    let relay = start_relay();
    let url = relay.url();
    let client = || RelayClient::new(&url).unwrap();
    let a = Device::register(client(), store(dir.path(), "a.db"), Some(USERNAMES[0]), PW)
        .await
        .unwrap();
    let b = Device::register(client(), store(dir.path(), "b.db"), Some(USERNAMES[1]), PW)
        .await
        .unwrap();
    let mut alice = Party::new(a);
    let mut bob = Party::with_default_receipts(b);
    assert_eq!(
        bob.messenger.receipt_policy().unwrap(),
        ReceiptPolicy::DEFAULT
    );
    let window = ReceiptPolicy::Delayed {
        min_secs: MIN as u32,
        max_secs: MAX as u32,
    };
    bob.messenger.set_receipt_policy(window).unwrap();
    alice.online().await;
    bob.online().await;
    let bob_id = bob.account();
    alice
        .messenger
        .add_contact(&hex::encode(bob_id))
        .await
        .unwrap();
    let mut sent = Vec::new();
    for text in &SECRETS[2..5] {
        sent.push(
            alice
                .messenger
                .send_text(Conversation::Direct(bob_id), text)
                .await
                .unwrap(),
        );
    }
    expect_text(&mut bob.events, SECRETS[2]).await;
    let first_seen = tokio::time::Instant::now();
    expect_text(&mut bob.events, SECRETS[4]).await;
    assert!(bob.messenger.next_task_due().unwrap().is_some());

    let mut receipts = Vec::new();
    let deadline = first_seen + Duration::from_millis(MAX * 1000 + 2500);
    while let Ok(Ok(e)) = tokio::time::timeout_at(deadline, alice.events.recv()).await {
        if let Event::Receipt {
            kind: ReceiptKind::Delivered,
            message_ids,
            from,
            ..
        } = e
            && from == bob_id
        {
            receipts.push((first_seen.elapsed(), message_ids));
        }
    }
    assert_eq!(
        receipts.len(),
        1,
        "one receipt for three messages: {receipts:?}"
    );
    let (after, ids) = &receipts[0];
    eprintln!("delivery receipt after {after:?} (window {MIN}-{MAX} s)");
    // Bob drew the delay when he stored the first text, just before the test saw it.
    assert!(
        *after >= Duration::from_millis(MIN * 1000 - 200),
        "{after:?}"
    );
    let (mut ids, mut sent) = (ids.clone(), sent);
    ids.sort_unstable();
    sent.sort_unstable();
    assert_eq!(ids, sent);
    assert_eq!(bob.messenger.next_task_due().unwrap(), None);
    let history = alice
        .messenger
        .history(Conversation::Direct(bob_id))
        .unwrap();
    assert!(history.iter().all(|m| m.delivered_to == vec![bob_id]));
    bob.offline().await;
    drop(bob);
    // The setting is kept in the (encrypted) store.
    let reopened = Device::open(client(), store(dir.path(), "b.db"))
        .await
        .unwrap();
    assert_eq!(
        Messenger::new(Arc::new(reopened)).receipt_policy().unwrap(),
        window
    );
}
