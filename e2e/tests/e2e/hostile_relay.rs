//! A hostile relay against real clients (THREAT_MODEL "Who is who", PROTOCOL §15.6): native
//! `haven_client::Messenger` users talk through `haven_e2e::hostile::HostileRelay` (a real relay
//! behind a lying proxy), set up honest state, then the test switches one lie on. Each lie is
//! refused with a typed error and a user-visible event, and nothing reaches a device the relay
//! made or added.

use std::sync::Arc;

use haven_client::messenger::{Event, Messenger, MessengerError};
use haven_client::relay::RelayClient;
use haven_client::{ClientStore, Conversation, Device, DeviceError, RejectReason};
use haven_client_core::device::ListRefusal;
use haven_e2e::hostile::{Attack, HostileRelay, INJECTED_DEVICE};
use haven_testkit::RelayConfig;
use tokio::sync::broadcast;

const PW: &str = "hostile relay: correct horse";

struct User {
    messenger: Arc<Messenger>,
    events: broadcast::Receiver<Event>,
}

impl User {
    fn new(device: Device) -> Self {
        let messenger = Arc::new(Messenger::new(Arc::new(device)));
        let events = messenger.subscribe();
        Self { messenger, events }
    }

    async fn register(relay: &HostileRelay, dir: &std::path::Path, name: &str) -> Self {
        let device = Device::register(
            RelayClient::new(&relay.url()).unwrap(),
            store(dir, name),
            Some(name),
            PW.as_bytes(),
        )
        .await
        .unwrap();
        Self::new(device)
    }

    fn account(&self) -> [u8; 16] {
        self.messenger.device().account_bytes()
    }

    fn hex(&self) -> String {
        hex::encode(self.account())
    }

    /// Everything emitted since the last call.
    fn drain(&mut self) -> Vec<Event> {
        let mut out = Vec::new();
        loop {
            match self.events.try_recv() {
                Ok(e) => out.push(e),
                Err(broadcast::error::TryRecvError::Lagged(_)) => {}
                Err(_) => return out,
            }
        }
    }

    /// Fetches and processes the queue (REST: the proxy carries no WebSocket); returns the
    /// events it produced.
    async fn sync(&mut self) -> Vec<Event> {
        self.drain();
        self.messenger.sync().await.unwrap();
        self.drain()
    }

    fn texts_from(&self, peer: [u8; 16]) -> Vec<String> {
        self.messenger
            .history(Conversation::Direct(peer))
            .unwrap()
            .into_iter()
            .map(|m| m.text)
            .collect()
    }
}

fn store(dir: &std::path::Path, name: &str) -> ClientStore {
    ClientStore::open(&dir.join(format!("{name}.db")), &[7u8; 32]).unwrap()
}

fn refused(events: &[Event], account: [u8; 16], pick: impl Fn(&ListRefusal) -> bool) -> bool {
    events.iter().any(|e| {
        matches!(e, Event::DeviceListRefused { account: a, reason } if *a == account && pick(reason))
    })
}

fn rejected_unlisted(events: &[Event], account: &str, device: u32) -> bool {
    events.iter().any(|e| {
        matches!(e, Event::Rejected { reason: RejectReason::UnlistedDevice { account: a, device: d } }
            if a == account && *d == device)
    })
}

fn start() -> (HostileRelay, tempfile::TempDir) {
    (
        HostileRelay::start(RelayConfig::new()).unwrap(),
        tempfile::tempdir().unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_relay_injects_a_device_into_a_409() {
    let (relay, dir) = start();
    let mut alice = User::register(&relay, dir.path(), "alice").await;
    let mut bob = User::register(&relay, dir.path(), "bob").await;
    alice.messenger.add_contact(&bob.hex()).await.unwrap();
    bob.sync().await;

    relay
        .attack(Attack::InjectDevice {
            account: bob.hex(),
            device: None,
        })
        .await
        .unwrap();
    alice.drain();
    let err = alice
        .messenger
        .send_text(
            Conversation::Direct(bob.account()),
            "to a device the relay made up",
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, MessengerError::Device(DeviceError::UnlistedDevice { account, device })
            if *account == bob.hex() && *device == INJECTED_DEVICE),
        "{err:?}"
    );
    let events = alice.drain();
    assert!(
        refused(
            &events,
            bob.account(),
            |r| matches!(r, ListRefusal::Unlisted { device } if *device == INJECTED_DEVICE)
        ),
        "{events:?}"
    );
    assert_eq!(relay.captured(), 0);
    bob.sync().await;
    assert!(
        !bob.texts_from(alice.account())
            .iter()
            .any(|t| t == "to a device the relay made up")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_relay_serves_a_forged_bundle() {
    let (relay, dir) = start();
    let mut alice = User::register(&relay, dir.path(), "alice").await;
    let bob = User::register(&relay, dir.path(), "bob").await;
    let bob_n = bob.messenger.device().device_number();

    relay
        .attack(Attack::ForgeBundle { account: bob.hex() })
        .await
        .unwrap();
    alice.drain();
    let err = alice.messenger.add_contact(&bob.hex()).await.unwrap_err();
    assert!(
        matches!(&err, MessengerError::Device(DeviceError::UnlistedDevice { account, device })
            if *account == bob.hex() && *device == bob_n),
        "{err:?}"
    );
    let events = alice.drain();
    assert!(
        refused(
            &events,
            bob.account(),
            |r| matches!(r, ListRefusal::Unlisted { device } if *device == bob_n)
        ),
        "{events:?}"
    );
    assert_eq!(
        relay.captured(),
        0,
        "a send went out under the forged bundle"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_relay_issues_a_certificate_for_a_key_it_chose() {
    let (relay, dir) = start();
    let mut alice = User::register(&relay, dir.path(), "alice").await;
    let bob = User::register(&relay, dir.path(), "bob").await;
    let bob_n = bob.messenger.device().device_number();
    bob.messenger.add_contact(&alice.hex()).await.unwrap();
    alice.sync().await;

    let forged = "from bob, says the relay";
    relay
        .attack(Attack::ForgeCertificate {
            victim: alice.hex(),
            account: bob.hex(),
            device: bob_n,
            text: forged.into(),
        })
        .await
        .unwrap();
    let events = alice.sync().await;
    assert!(rejected_unlisted(&events, &bob.hex(), bob_n), "{events:?}");
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, Event::Message(m) if m.text == forged))
    );
    assert!(!alice.texts_from(bob.account()).iter().any(|t| t == forged));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_relay_rolls_a_device_list_back() {
    let (relay, dir) = start();
    let mut alice = User::register(&relay, dir.path(), "alice").await;
    let bob = User::register(&relay, dir.path(), "bob").await;
    alice.messenger.add_contact(&bob.hex()).await.unwrap();
    // Bob links a second device: his list goes to version 2, which Alice accepts.
    let pending = Device::start_link(RelayClient::new(&relay.url()).unwrap())
        .await
        .unwrap();
    bob.messenger
        .device()
        .approve_link(&pending.code())
        .await
        .unwrap();
    let bob2 = pending
        .finish(
            store(dir.path(), "bob2"),
            std::time::Duration::from_secs(20),
        )
        .await
        .unwrap();
    alice.drain();
    alice
        .messenger
        .refresh_devices(&bob.account())
        .await
        .unwrap();
    let events = alice.drain();
    assert!(
        events.iter().any(|e| matches!(e, Event::DevicesChanged { added, .. } if added.contains(&bob2.device_number()))),
        "{events:?}"
    );

    relay
        .attack(Attack::Rollback { account: bob.hex() })
        .await
        .unwrap();
    let err = alice
        .messenger
        .refresh_devices(&bob.account())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, MessengerError::Device(DeviceError::DeviceList { account, reason: ListRefusal::Rollback { offered: 1, seen: 2 } })
            if *account == bob.hex()),
        "{err:?}"
    );
    let events = alice.drain();
    assert!(
        refused(&events, bob.account(), |r| matches!(
            r,
            ListRefusal::Rollback {
                offered: 1,
                seen: 2
            }
        )),
        "{events:?}"
    );
    // The accepted list still stands: Bob's second device stays.
    let devices = alice
        .messenger
        .device()
        .contact_devices(&bob.hex())
        .unwrap();
    assert!(devices.contains(&bob2.device_number()), "{devices:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_relay_adds_a_device_by_password_login() {
    let (relay, dir) = start();
    let mut alice = User::register(&relay, dir.path(), "alice").await;
    let bob = User::register(&relay, dir.path(), "bob").await;
    bob.messenger.add_contact(&alice.hex()).await.unwrap();
    alice.sync().await;

    let forged = "hi alice, from my new phone (says the relay)";
    let rogue = relay
        .attack(Attack::PasswordDevice {
            username: "bob".into(),
            password: PW.into(),
            victim: Some(alice.hex()),
            text: forged.into(),
        })
        .await
        .unwrap()
        .unwrap();
    // Accepting from it: refused.
    let events = alice.sync().await;
    assert!(rejected_unlisted(&events, &bob.hex(), rogue), "{events:?}");
    assert!(!alice.texts_from(bob.account()).iter().any(|t| t == forged));
    // Encrypting to it: the relay's 409 names it; refused, nothing sent.
    let err = alice
        .messenger
        .send_text(
            Conversation::Direct(bob.account()),
            "only for bob's real devices",
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, MessengerError::Device(DeviceError::UnlistedDevice { account, device })
            if *account == bob.hex() && *device == rogue),
        "{err:?}"
    );
    let events = alice.drain();
    assert!(
        refused(
            &events,
            bob.account(),
            |r| matches!(r, ListRefusal::Unlisted { device } if *device == rogue)
        ),
        "{events:?}"
    );
    assert_eq!(relay.captured(), 0);
}
