//! Message franking end to end (PROTOCOL §16) against a relay with its moderation feature
//! (in process, SQLite), configured with a known franking secret and stamp key: the clients
//! fetch the relay's franking key themselves; Alice's messenger franks what it sends; the relay
//! stores each commitment and stamps it on delivery over the WebSocket (Bob) and on a REST
//! fetch (Carol); the recipients accept the messages only because their contents open the
//! commitments and keep the report material; the reports they build verify under the relay's
//! secrets, and `POST /v1/reports` takes them as attributed (the same id again on a repeat).
//! Messages that cannot be reported are refused before anything is sent.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use haven_client::messenger::{Event, Messenger, MessengerError};
use haven_client::relay::RelayClient;
use haven_client::{ClientStore, ConnectionState, Conversation, Device};
use haven_client_core::device::ReportError;
use haven_client_core::messenger as core;
use haven_protocol::api::moderation::FrankingKeyResponse;
use haven_protocol::franking::verify::{FrankingSecret, StampKey, verify_report};
use haven_protocol::franking::{Destination, Report};
use haven_testkit::RelayConfig;
use reqwest::Method;
use tokio::sync::broadcast;

use crate::common::Relay;

const PW: &[u8] = b"franking e2e: correct horse";
const STORE_KEY: [u8; 32] = [6; 32];
const FRANKING_SECRET: [u8; 32] = [0xF1; 32];
const STAMP_KEY: [u8; 32] = [0x5B; 32];
const TEXT: &str = "a message worth reporting, obsidian";

fn store(dir: &Path, name: &str) -> ClientStore {
    ClientStore::open(&dir.join(name), &STORE_KEY).unwrap()
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

async fn online(m: &Arc<Messenger>) -> broadcast::Receiver<Event> {
    let mut events = m.subscribe();
    let runner = m.clone();
    tokio::spawn(async move {
        let _ = runner.run().await;
    });
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            if let Ok(Event::Connection(ConnectionState::CaughtUp)) = events.recv().await {
                break;
            }
        }
    })
    .await
    .unwrap();
    events
}

/// The report body `dir/file`'s messenger would send for `id` from Alice, checked under the
/// relay's secrets as the relay checks it (§16.6 steps 3–6).
fn verify_locally(
    dir: &Path,
    file: &str,
    id: &[u8; 16],
    alice: [u8; 16],
    alice_ik: &[u8; 64],
) -> Report {
    let s = store(dir, file);
    let key = FrankingSecret::from_bytes(FRANKING_SECRET).public();
    let request =
        core::report_request(&s, &Conversation::Direct(alice), id, Some(&key), now()).unwrap();
    let report = Report::decode(&STANDARD.decode(&request.report).unwrap()).unwrap();
    verify_report(
        &report,
        &FrankingSecret::from_bytes(FRANKING_SECRET),
        &StampKey::from_bytes(STAMP_KEY),
        alice_ik,
    )
    .unwrap();
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alice_franks_bob_and_carol_report_and_the_relay_attributes() {
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start(RelayConfig::new().set_all(&[
        (
            "HAVEN_MODERATION_FRANKING_SECRET",
            STANDARD.encode(FRANKING_SECRET),
        ),
        ("HAVEN_MODERATION_STAMP_KEY", STANDARD.encode(STAMP_KEY)),
    ]));
    let url = relay.url();
    let client = || RelayClient::new(&url).unwrap();
    // The relay publishes the key of the configured secret.
    let published: FrankingKeyResponse = client()
        .request_anonymous_as::<_, ()>(Method::GET, "/v1/franking/key", None)
        .await
        .unwrap();
    assert_eq!(
        published.franking_key,
        STANDARD.encode(
            FrankingSecret::from_bytes(FRANKING_SECRET)
                .public()
                .encode()
        )
    );

    let register = |file: &'static str, name: &'static str| {
        let c = client();
        let s = store(dir.path(), file);
        async move { Device::register(c, s, Some(name), PW).await.unwrap() }
    };
    let alice = Arc::new(Messenger::new(Arc::new(
        register("a.db", "alice_franks").await,
    )));
    let bob = Arc::new(Messenger::new(Arc::new(
        register("b.db", "bob_reports").await,
    )));
    let carol = Arc::new(Messenger::new(Arc::new(
        register("c.db", "carol_fetches").await,
    )));
    let _alice_events = online(&alice).await;
    let mut bob_events = online(&bob).await;
    let (alice_id, bob_id, carol_id) = (
        alice.device().account_bytes(),
        bob.device().account_bytes(),
        carol.device().account_bytes(),
    );
    let alice_ik = alice.device().identity_key().unwrap().to_bytes();
    let from_alice = Conversation::Direct(alice_id);

    // --- Bob, over the WebSocket.
    alice.add_contact(&hex::encode(bob_id)).await.unwrap();
    alice
        .send_text(Conversation::Direct(bob_id), TEXT)
        .await
        .unwrap();
    let message_id = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match bob_events.recv().await.unwrap() {
                Event::Message(m) if m.text == TEXT => break m.message_id,
                Event::Rejected { reason } => panic!("rejected: {reason}"),
                _ => {}
            }
        }
    })
    .await
    .unwrap();
    assert!(bob.reportable(from_alice, message_id).unwrap());
    // Alice's own copy is not hers to report.
    assert!(
        !alice
            .reportable(Conversation::Direct(bob_id), message_id)
            .unwrap()
    );
    assert!(matches!(
        alice.report(Conversation::Direct(bob_id), message_id).await,
        Err(MessengerError::Report(ReportError::NotReportable))
    ));

    let report = verify_locally(dir.path(), "b.db", &message_id, alice_id, &alice_ik);
    assert_eq!((report.sender_account, report.sender_device), (alice_id, 1));
    assert_eq!(
        report.destination,
        Destination::Device {
            account: bob_id,
            device: 1
        }
    );
    let content = haven_protocol::content::Content::from_bytes(&report.content).unwrap();
    assert!(matches!(
        content.body,
        haven_protocol::content::Body::Text { ref text, .. } if text == TEXT
    ));
    let answer = bob.report(from_alice, message_id).await.unwrap();
    assert!(answer.attributed);
    // Reporting it again names the same report.
    let again = bob.report(from_alice, message_id).await.unwrap();
    assert_eq!(again.report_id, answer.report_id);

    // --- Carol, not connected: fetched over REST.
    alice.add_contact(&hex::encode(carol_id)).await.unwrap();
    let to_carol = alice
        .send_text(Conversation::Direct(carol_id), "fetched, franked")
        .await
        .unwrap();
    assert!(carol.sync().await.unwrap() >= 1);
    assert!(carol.reportable(from_alice, to_carol).unwrap());
    verify_locally(dir.path(), "c.db", &to_carol, alice_id, &alice_ik);
    let answer = carol.report(from_alice, to_carol).await.unwrap();
    assert!(answer.attributed);
    // Bob cannot report Carol's message (he has no such message).
    assert!(matches!(
        bob.report(from_alice, to_carol).await,
        Err(MessengerError::Report(ReportError::UnknownMessage))
    ));

    // --- A group: Alice's entry is franked for the channel; Bob (live, over the socket) and
    // Carol (REST read) accept it only because it opens the stamped commitment, and either can
    // report it with the channel's read token; the relay attributes it to Alice.
    let group = alice
        .create_group("franked group", &[bob_id, carol_id])
        .await
        .unwrap();
    const GROUP_TEXT: &str = "a group message worth reporting, basalt";
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            if let Event::GroupUpdated { group_id, .. } = bob_events.recv().await.unwrap()
                && group_id == group
            {
                break;
            }
        }
    })
    .await
    .unwrap();
    let in_group = Conversation::Group(group);
    let group_message = alice.send_text(in_group, GROUP_TEXT).await.unwrap();
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match bob_events.recv().await.unwrap() {
                Event::Message(m) if m.text == GROUP_TEXT => break,
                Event::Rejected { reason } => panic!("rejected: {reason}"),
                _ => {}
            }
        }
    })
    .await
    .unwrap();
    assert!(bob.reportable(in_group, group_message).unwrap());
    let s = store(dir.path(), "b.db");
    let key = FrankingSecret::from_bytes(FRANKING_SECRET).public();
    let request = core::report_request(&s, &in_group, &group_message, Some(&key), now()).unwrap();
    drop(s);
    assert!(request.read_token.is_some());
    let report = Report::decode(&STANDARD.decode(&request.report).unwrap()).unwrap();
    assert!(matches!(report.destination, Destination::Channel { .. }));
    assert_eq!((report.sender_account, report.sender_device), (alice_id, 1));
    verify_report(
        &report,
        &FrankingSecret::from_bytes(FRANKING_SECRET),
        &StampKey::from_bytes(STAMP_KEY),
        &alice_ik,
    )
    .unwrap();
    let answer = bob.report(in_group, group_message).await.unwrap();
    assert!(answer.attributed);
    // Carol reads the channel over REST: the same entry, reportable by her too (the same
    // delivered entry, so the same report id: one stamp names one entry).
    carol.sync().await.unwrap();
    assert!(carol.reportable(in_group, group_message).unwrap());
    let carols = carol.report(in_group, group_message).await.unwrap();
    assert!(carols.attributed);
    assert_eq!(carols.report_id, answer.report_id);
    // Alice's own group message is not hers to report.
    assert!(matches!(
        alice.report(in_group, group_message).await,
        Err(MessengerError::Report(ReportError::NotReportable))
    ));
}
