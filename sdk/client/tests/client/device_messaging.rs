//! Two people talk end to end through a real relay (in-process on a real TCP listener, SQLite):
//! Alice with two devices, Bob with one; sealed and logged-in sends, every device reached,
//! exactly-once delivery, persistence across restarts, and bad input rejected without damage.

use haven_client::relay::RelayClient;
use haven_client::{ClientStore, Device, Received};
use haven_testkit::RelayConfig;

use crate::common::{self, Relay};

fn relay() -> Relay {
    Relay::start(RelayConfig::new().set("HAVEN_LOG", "warn"))
}

fn texts(received: &[Received]) -> Vec<String> {
    received
        .iter()
        .filter_map(|r| match r {
            Received::Message { plaintext, .. } => {
                Some(String::from_utf8(plaintext.clone()).unwrap())
            }
            Received::Rejected { .. } | Received::NeedDeviceList { .. } => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alice_two_devices_and_bob_talk() {
    let relay = relay();
    let url = relay.url();
    let dir = tempfile::tempdir().unwrap();
    let key = [9u8; 32];
    let open = |name: &str| ClientStore::open(&dir.path().join(name), &key).unwrap();

    let alice1 = Device::register(
        RelayClient::new(&url).unwrap(),
        open("a1.db"),
        Some("alice_dm"),
        b"pw-a",
    )
    .await
    .unwrap();
    let alice2 = common::link_device(&alice1, RelayClient::new(&url).unwrap(), open("a2.db")).await;
    let bob = Device::register(RelayClient::new(&url).unwrap(), open("b.db"), None, b"pw-b")
        .await
        .unwrap();
    assert_eq!(alice1.account_id(), alice2.account_id());

    // First contact: Bob does not know Alice's access key yet, so this is a logged-in send;
    // it reaches both of Alice's devices.
    bob.send(alice1.account_id(), b"hello alice").await.unwrap();
    assert_eq!(texts(&alice1.receive().await.unwrap()), ["hello alice"]);
    assert_eq!(texts(&alice2.receive().await.unwrap()), ["hello alice"]);
    // Nothing is delivered twice.
    assert!(alice1.receive().await.unwrap().is_empty());

    // Alice shares her access key end to end; Bob's next sends are sealed.
    let alice_key = alice1.access_key().unwrap();
    bob.set_contact_access_key(alice1.account_id(), alice_key)
        .unwrap();
    bob.set_contact_access_key(bob.account_id(), bob.access_key().unwrap())
        .unwrap();
    alice1
        .set_contact_access_key(bob.account_id(), bob.access_key().unwrap())
        .unwrap();
    for i in 0..3 {
        bob.send(alice1.account_id(), format!("sealed {i}").as_bytes())
            .await
            .unwrap();
    }
    alice1
        .send(bob.account_id(), b"reply from alice")
        .await
        .unwrap();
    assert_eq!(texts(&bob.receive().await.unwrap()), ["reply from alice"]);
    // In order, on both devices.
    assert_eq!(
        texts(&alice1.receive().await.unwrap()),
        ["sealed 0", "sealed 1", "sealed 2"]
    );
    assert_eq!(
        texts(&alice2.receive().await.unwrap()),
        ["sealed 0", "sealed 1", "sealed 2"]
    );

    // A wrong access key is refused and nothing is queued.
    bob.set_contact_access_key(alice1.account_id(), [0u8; 16])
        .unwrap();
    let err = bob
        .send(alice1.account_id(), b"should not arrive")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("access_key"), "{err}");
    assert!(alice1.receive().await.unwrap().is_empty());
    bob.set_contact_access_key(alice1.account_id(), alice_key)
        .unwrap();

    // Restart: Alice's first device reopens from its encrypted store and keeps its sessions.
    let a1_account = alice1.account_id().to_owned();
    drop(alice1);
    let alice1 = Device::open(RelayClient::new(&url).unwrap(), open("a1.db"))
        .await
        .unwrap();
    assert_eq!(alice1.account_id(), a1_account);
    bob.send(alice1.account_id(), b"after restart")
        .await
        .unwrap();
    assert_eq!(texts(&alice1.receive().await.unwrap()), ["after restart"]);
    alice1.send(bob.account_id(), b"still here").await.unwrap();
    assert_eq!(texts(&bob.receive().await.unwrap()), ["still here"]);

    // A third device of Alice appears: Bob's stale device list is repaired from the relay's
    // 409 and the message reaches all three.
    // Bob verified Alice (compared the account safety number): her new device is a prompt.
    let alice_acc = alice1.account_bytes();
    bob.mark_verified(&alice_acc).unwrap();
    let alice3 = common::link_device(&alice2, RelayClient::new(&url).unwrap(), open("a3.db")).await;
    let err = bob
        .send(alice1.account_id(), b"held until confirmed")
        .await
        .unwrap_err();
    assert!(
        matches!(err, haven_client::DeviceError::UnconfirmedDevices { ref devices, .. } if devices == &[3]),
        "{err}"
    );
    bob.confirm_devices(&alice_acc).unwrap();
    bob.send(alice1.account_id(), b"to all three")
        .await
        .unwrap();
    for d in [&alice1, &alice2, &alice3] {
        let got = texts(&d.receive().await.unwrap());
        assert_eq!(
            got.last().map(String::as_str),
            Some("to all three"),
            "{got:?}"
        );
    }

    // Key stock: after claims the relay still has plenty, so no top-up is needed yet.
    assert!(!bob.replenish_keys().await.unwrap());

    // The relay's files (its database with its WAL) never saw the plaintexts or the username.
    let raw = common::read_all(relay.config().dir());
    assert!(!raw.is_empty(), "the relay's files were read");
    for needle in [
        "hello alice",
        "sealed 1",
        "reply from alice",
        "after restart",
        "to all three",
        "alice_dm",
    ] {
        assert!(
            !raw.windows(needle.len()).any(|w| w == needle.as_bytes()),
            "{needle} found in the relay's files"
        );
    }
    // Nor does any client store hold them in the clear.
    for name in ["a1.db", "a2.db", "b.db"] {
        let mut raw = std::fs::read(dir.path().join(name)).unwrap();
        if let Ok(wal) = std::fs::read(dir.path().join(format!("{name}-wal"))) {
            raw.extend(wal);
        }
        assert!(!raw.windows(11).any(|w| w == b"hello alice"), "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_prekey_rotation_keeps_new_and_pending_handshakes_working() {
    use haven_sdk::prekeys::SignedPreKeyPolicy;
    let relay = relay();
    let url = relay.url();
    let dir = tempfile::tempdir().unwrap();
    let open = |name: &str| ClientStore::open(&dir.path().join(name), &[3u8; 32]).unwrap();
    let bob = Device::register(RelayClient::new(&url).unwrap(), open("b.db"), None, b"pw-b")
        .await
        .unwrap();
    let alice = Device::register(RelayClient::new(&url).unwrap(), open("a.db"), None, b"pw-a")
        .await
        .unwrap();
    // Nothing to do on the default weekly schedule right after registration.
    assert!(
        !bob.rotate_signed_prekey(&SignedPreKeyPolicy::default())
            .await
            .unwrap()
    );
    async fn digest(d: &Device) -> String {
        d.relay()
            .request(reqwest::Method::GET, "/v1/keys/digest", None)
            .await
            .unwrap()["digest"]
            .as_str()
            .unwrap()
            .to_owned()
    }
    let before = digest(&bob).await;
    // Due now: a new pair is uploaded (the relay's digest changes) and the old key is kept.
    let due = SignedPreKeyPolicy {
        rotate_after: 0,
        keep_old_for: 3600,
    };
    assert!(bob.rotate_signed_prekey(&due).await.unwrap());
    assert_ne!(digest(&bob).await, before);
    // A contact's first message uses the new bundle and decrypts.
    alice
        .send(bob.account_id(), b"after rotation")
        .await
        .unwrap();
    assert_eq!(texts(&bob.receive().await.unwrap()), vec!["after rotation"]);
    // Retiring immediately: the old key goes, messaging on the session continues.
    let retire = SignedPreKeyPolicy {
        rotate_after: 0,
        keep_old_for: 0,
    };
    assert!(bob.rotate_signed_prekey(&retire).await.unwrap());
    alice.send(bob.account_id(), b"still here").await.unwrap();
    assert_eq!(texts(&bob.receive().await.unwrap()), vec!["still here"]);
}

/// Accounts and stores from before signed device lists (no list on the relay, no account key
/// in the store) keep working, keep what they received, and are upgraded: the first device
/// that finds its account without a list publishes one, and contacts then pin it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_from_before_device_lists_upgrades_without_losing_messages() {
    use haven_client::Space;
    let relay = relay();
    let url = relay.url();
    let dir = tempfile::tempdir().unwrap();
    let key = [7u8; 32];
    let open = |name: &str| ClientStore::open(&dir.path().join(name), &key).unwrap();
    let alice = Device::register(RelayClient::new(&url).unwrap(), open("a.db"), None, b"pw-a")
        .await
        .unwrap();
    let bob = Device::register(RelayClient::new(&url).unwrap(), open("b.db"), None, b"pw-b")
        .await
        .unwrap();
    let (alice_id, bob_id) = (alice.account_bytes(), bob.account_bytes());
    bob.send(alice.account_id(), b"before the upgrade")
        .await
        .unwrap();
    assert_eq!(
        texts(&alice.receive().await.unwrap()),
        ["before the upgrade"]
    );
    alice.persist_session().await.unwrap();
    bob.persist_session().await.unwrap();
    drop((alice, bob));

    // Back to the old world: no list on the relay, no account key or list records in the stores.
    let db = rusqlite::Connection::open(relay.config().dir().join("relay.db")).unwrap();
    assert_eq!(db.execute("DELETE FROM device_lists", []).unwrap(), 2);
    for name in ["a.db", "b.db"] {
        let store = open(name);
        assert!(store.delete(Space::app(0xF0), b"account_key").unwrap());
        for (k, _) in store.entries(Space::app(0xF4)).unwrap() {
            store.delete(Space::app(0xF4), &k).unwrap();
        }
    }

    let alice = Device::open(RelayClient::new(&url).unwrap(), open("a.db"))
        .await
        .unwrap();
    let bob = Device::open(RelayClient::new(&url).unwrap(), open("b.db"))
        .await
        .unwrap();
    // Both talk as before (each sees the other as an account without a list); a device that
    // sends finds its own account without a list and publishes the first one.
    bob.send(alice.account_id(), b"after the upgrade")
        .await
        .unwrap();
    assert_eq!(
        texts(&alice.receive().await.unwrap()),
        ["after the upgrade"]
    );
    // Bob published his list before he sent; Alice fetched it for his message and pinned it.
    assert!(matches!(
        alice.account_trust(&bob_id).unwrap(),
        haven_client_core::device::AccountTrust::Listed { version: 1, .. }
    ));
    alice.send(bob.account_id(), b"reply").await.unwrap();
    assert_eq!(texts(&bob.receive().await.unwrap()), ["reply"]);
    assert!(matches!(
        alice.account_trust(&alice_id).unwrap(),
        haven_client_core::device::AccountTrust::Listed { version: 1, .. }
    ));
    // Bob saw Alice's account without a list when he sent; reading it again pins it, and from
    // then on Alice's devices are the signed ones.
    assert_eq!(
        bob.account_trust(&alice_id).unwrap(),
        haven_client_core::device::AccountTrust::Unverified
    );
    bob.fetch_device_list(&alice_id).await.unwrap();
    assert!(matches!(
        bob.account_trust(&alice_id).unwrap(),
        haven_client_core::device::AccountTrust::Listed { version: 1, .. }
    ));
    assert_eq!(
        bob.account_safety_number(&alice_id)
            .unwrap()
            .map(|s| s.len()),
        Some(60)
    );
    bob.send(alice.account_id(), b"pinned").await.unwrap();
    assert_eq!(texts(&alice.receive().await.unwrap()), ["pinned"]);
    // What Alice received before the upgrade is still in her store.
    drop(alice);
    let inbox = open("a.db").entries(Space::app(0xF3)).unwrap();
    assert_eq!(inbox.len(), 3, "every received message kept");
}
