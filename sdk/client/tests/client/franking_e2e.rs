//! Message franking end to end (PROTOCOL §16): Alice's messenger franks what it sends to Bob
//! through a real relay, which stores each commitment and stamps it on delivery over the
//! WebSocket (and on a REST fetch, for Carol); Bob's messenger accepts the message only because
//! its content opens the commitment, keeps the report material, and the report it builds
//! verifies under the relay's stamp key with the franking secret whose key Alice franked under.
//!
//! A relay without `GET /v1/franking/key` and `POST /v1/reports` (main before the `moderation`
//! branch): the test hands the clients the franking key of a test secret through their
//! stores, reads the relay's stamp key from its database, verifies the reports with both, and
//! checks that `Messenger::report` reports the missing endpoint as
//! [`ReportError::Unsupported`]. A relay that publishes a key: the clients fetch it themselves
//! and the relay must accept the reports as attributed.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use haven_client::messenger::{Event, Messenger, MessengerError};
use haven_client::relay::RelayClient;
use haven_client::{ClientStore, ConnectionState, Conversation, Device};
use haven_client_core::device::{LocalDevice, ReportError};
use haven_client_core::messenger as core;
use haven_protocol::api::moderation::FrankingKeyResponse;
use haven_protocol::franking::Report;
use haven_protocol::franking::verify::{FrankingSecret, StampKey, verify_report};
use haven_sdk::store::IdentityStore;
use haven_testkit::RelayConfig;
use reqwest::Method;
use tokio::sync::broadcast;

use crate::common::Relay;

const PW: &[u8] = b"franking e2e: correct horse";
const STORE_KEY: [u8; 32] = [6; 32];
const FRANKING_SECRET: [u8; 32] = [0xF1; 32];
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

/// Gives the device in `file` the franking key of [`FRANKING_SECRET`], as if the relay had
/// answered `GET /v1/franking/key` with it (through a second connection to its store).
fn give_franking_key(dir: &Path, file: &str) {
    let s = store(dir, file);
    let answer = FrankingKeyResponse {
        franking_key: STANDARD.encode(
            FrankingSecret::from_bytes(FRANKING_SECRET)
                .public()
                .encode(),
        ),
        previous: Vec::new(),
    };
    LocalDevice::load(&s)
        .unwrap()
        .accept_franking_key(&s, Some(&answer), now())
        .unwrap();
}

/// The relay's delivery-stamp key, read from its database (a server secret, §16.4).
fn relay_stamp_key(relay: &Relay) -> StampKey {
    let db = rusqlite::Connection::open(relay.config().dir().join("relay.db")).unwrap();
    let bytes: Vec<u8> = db
        .query_row(
            "SELECT value FROM server_secrets WHERE name = 'franking_stamp_key'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    StampKey::from_bytes(bytes.try_into().unwrap())
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alice_franks_bob_reports_and_the_report_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start(RelayConfig::new());
    let url = relay.url();
    let client = || RelayClient::new(&url).unwrap();
    let a = Device::register(
        client(),
        store(dir.path(), "a.db"),
        Some("alice_franks"),
        PW,
    )
    .await
    .unwrap();
    let b = Device::register(client(), store(dir.path(), "b.db"), Some("bob_reports"), PW)
        .await
        .unwrap();
    // A relay with the moderation feature publishes its own key (and verifies reports itself);
    // this one does not, so the clients get the test key.
    let offered = client()
        .request_anonymous(Method::GET, "/v1/franking/key", None)
        .await
        .is_ok();
    if !offered {
        give_franking_key(dir.path(), "a.db");
        give_franking_key(dir.path(), "b.db");
    }
    let alice = Arc::new(Messenger::new(Arc::new(a)));
    let bob = Arc::new(Messenger::new(Arc::new(b)));
    let _alice_events = online(&alice).await;
    let mut bob_events = online(&bob).await;
    let (alice_id, bob_id) = (alice.device().account_bytes(), bob.device().account_bytes());

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
    let conversation = Conversation::Direct(alice_id);
    assert!(bob.reportable(conversation, message_id).unwrap());
    // Alice's own copy is not reportable (by her).
    assert!(
        !alice
            .reportable(Conversation::Direct(bob_id), message_id)
            .unwrap()
    );

    let alice_ik = store(dir.path(), "a.db")
        .identity_key_pair()
        .unwrap()
        .public()
        .to_bytes();
    // The report Bob's messenger would send verifies under the relay's stamp key and the
    // franking secret, naming Alice's device and Bob's mailbox.
    let bob_store = store(dir.path(), "b.db");
    if !offered {
        let request =
            core::report_request(&bob_store, &conversation, &message_id, None, now()).unwrap();
        let report = Report::decode(&STANDARD.decode(&request.report).unwrap()).unwrap();
        assert_eq!(report.sender_account, alice_id);
        assert_eq!(report.sender_device, 1);
        let content = haven_protocol::content::Content::from_bytes(&report.content).unwrap();
        assert!(matches!(
            content.body,
            haven_protocol::content::Body::Text { ref text, .. } if text == TEXT
        ));
        verify_report(
            &report,
            &FrankingSecret::from_bytes(FRANKING_SECRET),
            &relay_stamp_key(&relay),
            &alice_ik,
        )
        .unwrap();
    }

    // Through the relay: this relay has no POST /v1/reports (moderation branch) → Unsupported;
    // a relay with it verifies the report itself.
    match bob.report(conversation, message_id).await {
        Err(MessengerError::Report(ReportError::Unsupported)) if !offered => {}
        Ok(answer) => assert!(offered && answer.attributed),
        Err(e) => panic!("{e}"),
    }
    // The same over REST: Carol is not connected and fetches with `sync`.
    let c = Device::register(
        client(),
        store(dir.path(), "c.db"),
        Some("carol_fetches"),
        PW,
    )
    .await
    .unwrap();
    if !offered {
        give_franking_key(dir.path(), "c.db");
    }
    let carol = Arc::new(Messenger::new(Arc::new(c)));
    let carol_id = carol.device().account_bytes();
    alice.add_contact(&hex::encode(carol_id)).await.unwrap();
    let to_carol = alice
        .send_text(Conversation::Direct(carol_id), "fetched, franked")
        .await
        .unwrap();
    assert!(carol.sync().await.unwrap() >= 1);
    assert!(carol.reportable(conversation, to_carol).unwrap());
    if offered {
        assert!(
            carol
                .report(conversation, to_carol)
                .await
                .unwrap()
                .attributed
        );
    } else {
        let carol_store = store(dir.path(), "c.db");
        let request =
            core::report_request(&carol_store, &conversation, &to_carol, None, now()).unwrap();
        let report = Report::decode(&STANDARD.decode(&request.report).unwrap()).unwrap();
        verify_report(
            &report,
            &FrankingSecret::from_bytes(FRANKING_SECRET),
            &relay_stamp_key(&relay),
            &alice_ik,
        )
        .unwrap();
    }

    // Unknown messages are refused before anything is sent.
    assert!(matches!(
        bob.report(conversation, [0x77; 16]).await,
        Err(MessengerError::Report(ReportError::UnknownMessage))
    ));
}
