//! Push from the device side against a real relay (in process, SQLite): registering, listing,
//! re-registering and removing push endpoints with the relay's limits and refusals, and
//! [`Messenger::handle_wake_up`] fetching, processing and acknowledging mail sent while the
//! device was offline, exactly once: twice in a row, cut short by its time budget at varying
//! points, and concurrently with a live connection and a second wake-up.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use haven_client::messenger::{Event, Messenger, WakeSummary};
use haven_client::push::PushEndpointError;
use haven_client::relay::{RelayClient, RelayError};
use haven_client::{ClientStore, Conversation, Device, ReceiptPolicy};
use haven_protocol::api::messages::FetchResponse;
use haven_testkit::RelayConfig;
use reqwest::Method;
use tokio::sync::broadcast;

use crate::common::Relay;

const PW: &[u8] = b"push tests: correct horse";

fn store(dir: &Path, name: &str) -> ClientStore {
    ClientStore::open(&dir.join(name), &[9u8; 32]).unwrap()
}

/// Two registered accounts: the sender (connected whenever it sends) and the receiver, whose
/// delivery receipts are immediate, so the wake-up sends them.
async fn two_accounts(url: &str, dir: &Path) -> (Arc<Messenger>, Arc<Messenger>) {
    let client = || RelayClient::new(url).unwrap();
    let a = Device::register(client(), store(dir, "a.db"), None, PW)
        .await
        .unwrap();
    let b = Device::register(client(), store(dir, "b.db"), None, PW)
        .await
        .unwrap();
    let (alice, bob) = (
        Arc::new(Messenger::new(Arc::new(a))),
        Arc::new(Messenger::new(Arc::new(b))),
    );
    bob.set_receipt_policy(ReceiptPolicy::Immediate).unwrap();
    (alice, bob)
}

/// What is still queued on the relay for `m`'s device.
async fn queued(m: &Messenger) -> usize {
    let page: FetchResponse = m
        .device()
        .relay()
        .request_as::<_, ()>(Method::GET, "/v1/messages?after=0&limit=100", None)
        .await
        .unwrap();
    page.envelopes.len()
}

/// Alice sends `texts` to Bob (who is offline).
async fn send_all(alice: &Messenger, bob: [u8; 16], texts: &[String]) -> Vec<[u8; 16]> {
    let mut ids = Vec::new();
    for t in texts {
        ids.push(alice.send_text(Conversation::Direct(bob), t).await.unwrap());
    }
    ids
}

/// Every incoming message event waiting in `rx`, as (message id, text).
fn drain_messages(rx: &mut broadcast::Receiver<Event>) -> Vec<([u8; 16], String)> {
    let mut out = Vec::new();
    loop {
        match rx.try_recv() {
            Ok(Event::Message(m)) if !m.outgoing => out.push((m.message_id, m.text.clone())),
            Ok(_) | Err(broadcast::error::TryRecvError::Lagged(_)) => {}
            Err(_) => return out,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wake_up_fetches_processes_and_acknowledges_offline_mail_once() {
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start(RelayConfig::new());
    let (alice, bob) = two_accounts(&relay.url(), dir.path()).await;
    let (alice_id, bob_id) = (alice.device().account_bytes(), bob.device().account_bytes());
    let mut bob_events = bob.subscribe();

    // While Bob is offline: three texts 1:1, and a group with a message in its channel.
    alice.add_contact(&hex::encode(bob_id)).await.unwrap();
    let texts: Vec<String> = (0..3).map(|i| format!("while you slept {i}")).collect();
    let sent = send_all(&alice, bob_id, &texts).await;
    let group = alice.create_group("night owls", &[bob_id]).await.unwrap();
    alice
        .send_text(Conversation::Group(group), "group at night")
        .await
        .unwrap();
    assert!(queued(&bob).await >= 3, "the texts wait on the relay");

    let summary = bob
        .handle_wake_up(Duration::from_millis(
            haven_client::messenger::WAKE_BUDGET_MS,
        ))
        .await
        .unwrap();
    assert!(summary.complete, "{summary:?}");
    assert_eq!(summary.messages, 4, "{summary:?}");
    let conversations: HashSet<Conversation> = summary.conversations.iter().copied().collect();
    assert_eq!(
        conversations,
        HashSet::from([Conversation::Direct(alice_id), Conversation::Group(group)])
    );
    assert_eq!(summary.conversations.len(), 2, "each conversation once");
    // Contact card, three texts, the group invite and its sender key at least.
    assert!(summary.envelopes >= 5, "{summary:?}");
    // Receipts are immediate here: nothing is left for later.
    assert_eq!(summary.next_task_due_ms, None);

    // Processed and stored: the history holds each text once, in order.
    let history: Vec<String> = bob
        .history(Conversation::Direct(alice_id))
        .unwrap()
        .into_iter()
        .map(|m| m.text)
        .collect();
    assert_eq!(history, texts);
    let in_group: Vec<String> = bob
        .history(Conversation::Group(group))
        .unwrap()
        .into_iter()
        .map(|m| m.text)
        .collect();
    assert_eq!(in_group, ["group at night"]);
    // Acknowledged: nothing is queued for Bob any more.
    assert_eq!(queued(&bob).await, 0);
    // The app got the messages as events too, each once.
    assert_eq!(drain_messages(&mut bob_events).len(), 4);

    // Bob's device sent delivery receipts: Alice learns of them when she syncs.
    alice.sync().await.unwrap();
    let delivered: Vec<bool> = alice
        .history(Conversation::Direct(bob_id))
        .unwrap()
        .iter()
        .filter(|m| sent.contains(&m.message_id))
        .map(|m| m.delivered_to.contains(&bob_id))
        .collect();
    assert_eq!(delivered, [true, true, true]);

    // A second wake-up (a duplicate push) finds nothing and changes nothing.
    let again = bob.handle_wake_up(Duration::from_secs(25)).await.unwrap();
    assert_eq!(
        again,
        WakeSummary {
            complete: true,
            ..WakeSummary::default()
        }
    );
    assert_eq!(
        bob.history(Conversation::Direct(alice_id)).unwrap().len(),
        3
    );
    assert!(drain_messages(&mut bob_events).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wake_up_cut_short_by_its_budget_loses_and_repeats_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start(RelayConfig::new());
    let (alice, bob) = two_accounts(&relay.url(), dir.path()).await;
    let (alice_id, bob_id) = (alice.device().account_bytes(), bob.device().account_bytes());
    let mut bob_events = bob.subscribe();
    alice.add_contact(&hex::encode(bob_id)).await.unwrap();
    let texts: Vec<String> = (0..12).map(|i| format!("budgeted {i}")).collect();
    send_all(&alice, bob_id, &texts).await;

    // Budgets growing from far too short: each wake-up is cut off somewhere else (before the
    // first fetch, between envelopes, before the acknowledgement...) until one completes.
    let mut total = 0;
    let mut cut = 0;
    let mut budget = Duration::from_millis(1);
    loop {
        let summary = bob.handle_wake_up(budget).await.unwrap();
        total += summary.messages;
        if summary.complete {
            break;
        }
        cut += 1;
        budget = budget.mul_f64(1.6);
        assert!(budget < Duration::from_secs(60), "never completed");
    }
    assert!(cut >= 1, "the first, 1 ms budget must be too short");
    assert_eq!(total, 12, "each message counted by exactly one wake-up");
    let history: Vec<String> = bob
        .history(Conversation::Direct(alice_id))
        .unwrap()
        .into_iter()
        .map(|m| m.text)
        .collect();
    assert_eq!(history, texts);
    let events = drain_messages(&mut bob_events);
    assert_eq!(events.len(), 12, "each message emitted once: {events:?}");
    assert_eq!(queued(&bob).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wake_ups_racing_the_live_connection_process_each_message_once() {
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start(RelayConfig::new());
    let (alice, bob) = two_accounts(&relay.url(), dir.path()).await;
    let (alice_id, bob_id) = (alice.device().account_bytes(), bob.device().account_bytes());
    let mut bob_events = bob.subscribe();
    alice.add_contact(&hex::encode(bob_id)).await.unwrap();
    let texts: Vec<String> = (0..15).map(|i| format!("raced {i}")).collect();
    send_all(&alice, bob_id, &texts).await;

    // The push arrives as the app comes to the foreground: the run loop connects (and is
    // handed the queue over the WebSocket) while two wake-ups fetch the same queue over REST.
    let live = tokio::spawn({
        let bob = bob.clone();
        async move {
            let _ = bob.run().await;
        }
    });
    let (first, second) = tokio::join!(
        bob.handle_wake_up(Duration::from_secs(25)),
        bob.handle_wake_up(Duration::from_secs(25)),
    );
    let (first, second) = (first.unwrap(), second.unwrap());
    assert!(first.complete && second.complete);
    assert!(first.messages + second.messages <= 15);

    // Whatever path got each message, it was stored and emitted exactly once.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut seen = Vec::new();
    while seen.len() < 15 && tokio::time::Instant::now() < deadline {
        if let Ok(Ok(Event::Message(m))) =
            tokio::time::timeout(Duration::from_millis(200), bob_events.recv()).await
            && !m.outgoing
        {
            seen.push(m.text.clone());
        }
    }
    // A little longer, so a duplicate would show up.
    tokio::time::sleep(Duration::from_millis(500)).await;
    seen.extend(drain_messages(&mut bob_events).into_iter().map(|(_, t)| t));
    seen.sort();
    let mut expected = texts.clone();
    expected.sort();
    assert_eq!(seen, expected, "each message emitted exactly once");
    let mut history: Vec<String> = bob
        .history(Conversation::Direct(alice_id))
        .unwrap()
        .into_iter()
        .map(|m| m.text)
        .collect();
    history.sort();
    assert_eq!(history, expected, "each message stored exactly once");
    live.abort();
    let _ = live.await;
    // Everything was acknowledged by one path or the other.
    let late = bob.handle_wake_up(Duration::from_secs(25)).await.unwrap();
    assert_eq!(late.messages, 0);
    assert_eq!(queued(&bob).await, 0);
}

/// The P-256 base point, uncompressed: a valid subscription key (the relay checks the curve).
const P256_G: &str = "046b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c2964fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5";

/// A browser subscription's endpoint and keys for endpoint number `n` (the relay only stores them
/// here: no push service is reached).
fn subscription(n: u8) -> (String, String, String) {
    (
        format!("https://push.example.test/send/{n}"),
        URL_SAFE_NO_PAD.encode(hex::decode(P256_G).unwrap()),
        URL_SAFE_NO_PAD.encode([n; 16]),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_endpoints_are_registered_listed_and_removed_within_the_limits() {
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start(RelayConfig::new());
    let url = relay.url();
    let (alice, bob) = two_accounts(&url, dir.path()).await;
    let client = alice.device().relay();

    // The VAPID key a browser subscribes with: 65 bytes, uncompressed point, no login needed.
    let vapid = RelayClient::new(&url)
        .unwrap()
        .push_vapid_key()
        .await
        .unwrap();
    let key = URL_SAFE_NO_PAD.decode(&vapid).unwrap();
    assert_eq!((key.len(), key[0]), (65, 4));

    // Register, list, and register the same subscription again: the same endpoint.
    let (e1, k1, a1) = subscription(1);
    let id1 = client.register_web_push(&e1, &k1, &a1).await.unwrap();
    assert_eq!(id1.len(), 22, "base64url of 16 bytes");
    let again = client.register_web_push(&e1, &k1, &a1).await.unwrap();
    assert_eq!(again, id1, "registering again is idempotent");
    let list = client.push_endpoints().await.unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(
        (list[0].id.as_str(), list[0].kind.as_str()),
        (id1.as_str(), "web_push")
    );
    // Another device's list is its own.
    assert!(
        bob.device()
            .relay()
            .push_endpoints()
            .await
            .unwrap()
            .is_empty()
    );

    // Up to five per device; the sixth is refused and changes nothing.
    let mut ids = vec![id1.clone()];
    for n in 2..=5 {
        let (e, k, a) = subscription(n);
        ids.push(client.register_web_push(&e, &k, &a).await.unwrap());
    }
    let (e6, k6, a6) = subscription(6);
    let err = client.register_web_push(&e6, &k6, &a6).await.unwrap_err();
    assert_eq!(
        (err.status(), err.code()),
        (Some(409), Some("too_many_push_endpoints"))
    );
    assert_eq!(client.push_endpoints().await.unwrap().len(), 5);

    // Bad input is refused on the device, before anything is sent.
    let bad = client
        .register_web_push("http://plain.example/x", &k6, &a6)
        .await;
    assert!(matches!(
        bad,
        Err(RelayError::InvalidPushEndpoint(PushEndpointError::Endpoint))
    ));
    let bad = client.register_gateway_push("bad app id", "token").await;
    assert!(matches!(
        bad,
        Err(RelayError::InvalidPushEndpoint(PushEndpointError::AppId))
    ));
    assert!(matches!(
        client.remove_push_endpoint("../../v1/account").await,
        Err(RelayError::InvalidPushEndpoint(PushEndpointError::Id))
    ));
    // A gateway needs the relay to have one.
    let err = client
        .register_gateway_push("com.example.chat", "apns-token-1")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("push_gateway_not_configured"));

    // Removing one makes room; removing it again is refused; Bob cannot remove Alice's.
    let err = bob
        .device()
        .relay()
        .remove_push_endpoint(&ids[1])
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(404));
    client.remove_push_endpoint(&ids[1]).await.unwrap();
    assert_eq!(
        client
            .remove_push_endpoint(&ids[1])
            .await
            .unwrap_err()
            .status(),
        Some(404)
    );
    let listed: HashSet<String> = client
        .push_endpoints()
        .await
        .unwrap()
        .iter()
        .map(|e| e.id.clone())
        .collect();
    let expected: HashSet<String> = ids
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 1)
        .map(|(_, id)| id.clone())
        .collect();
    assert_eq!(listed, expected);
    client.register_web_push(&e6, &k6, &a6).await.unwrap();
    assert_eq!(client.push_endpoints().await.unwrap().len(), 5);
}
