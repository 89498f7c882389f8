//! `haven-admin` against a real relay (`haven-testkit`, in process on a TCP port): the overview,
//! and key rotation (create a new key, revoke the old one, the old key now gets 401).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::{Command, Output};

use haven_relay::admin::keys::create_key;
use haven_relay::db::SqliteStore;
use haven_testkit::RelayConfig;

const BIN: &str = env!("CARGO_BIN_EXE_haven-admin");

fn admin(url: &str, key: &str, args: &[&str]) -> Output {
    Command::new(BIN)
        .env_clear()
        .env("HAVEN_ADMIN_URL", url)
        .env("HAVEN_ADMIN_KEY", key)
        .args(args)
        .output()
        .unwrap()
}

fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "haven-admin failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overview_and_key_rotation() {
    let config = RelayConfig::new();
    let db_url = config.get("HAVEN_DATABASE_URL").unwrap().to_owned();
    // The first key, as `haven-relay admin create-key` makes it: on the relay's database,
    // before the relay starts.
    let store = SqliteStore::connect(&db_url).await.unwrap();
    let first = create_key(&store, "first", None, haven_relay::clock::now_i64())
        .await
        .unwrap();
    let old = first.secret.encode().to_string();
    let old_id = first.record.id.to_hex();
    store.close().await;
    drop(store);
    let relay = config.start();
    let url = relay.url();

    let text = stdout(&admin(&url, &old, &["overview"]));
    assert!(
        text.contains("live sockets") && text.contains("accounts"),
        "{text}"
    );
    assert!(text.contains("1 min") && text.contains("15 min"), "{text}");
    let json: serde_json::Value =
        serde_json::from_str(&stdout(&admin(&url, &old, &["overview", "--json"]))).unwrap();
    assert_eq!(json["storage"]["accounts"], 0);
    assert!(json["requests"]["last_1m"]["total"].as_u64().unwrap() >= 1);

    // Rotation: create a new key with the old one, switch, revoke the old one.
    let out = admin(
        &url,
        &old,
        &[
            "keys",
            "create",
            "--label",
            "rotated",
            "--expires-days",
            "90",
        ],
    );
    let new = stdout(&out).trim().to_owned();
    assert!(new.starts_with("hvn_admin_"));
    assert!(String::from_utf8_lossy(&out.stderr).contains("shown only once"));
    let listing = stdout(&admin(&url, &new, &["keys", "list"]));
    assert!(
        listing.contains("first") && listing.contains("rotated"),
        "{listing}"
    );
    assert!(!listing.contains("hvn_admin_"));
    stdout(&admin(&url, &new, &["keys", "revoke", &old_id]));

    let refused = admin(&url, &old, &["overview"]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("401 invalid_admin_key"), "{stderr}");
    let list: serde_json::Value =
        serde_json::from_str(&stdout(&admin(&url, &new, &["keys", "list", "--json"]))).unwrap();
    let states: Vec<(String, bool)> = list["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            (
                k["label"].as_str().unwrap().to_owned(),
                k["active"].as_bool().unwrap(),
            )
        })
        .collect();
    assert!(states.contains(&("first".to_owned(), false)));
    assert!(states.contains(&("rotated".to_owned(), true)));
    stdout(&admin(&url, &new, &["overview"]));

    // Unknown ids and a missing key are clear errors.
    let out = admin(&url, &new, &["keys", "revoke", "00"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("404 unknown_admin_key"));
    let out = Command::new(BIN)
        .env_clear()
        .env("HAVEN_ADMIN_URL", &url)
        .arg("overview")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    // The key is never in --help.
    let help = Command::new(BIN)
        .env("HAVEN_ADMIN_KEY", &new)
        .arg("--help")
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&help.stdout).contains(&new));
}

/// The end to end, on a real relay and real clients: Alice sends Bob a text; Bob's
/// device reports it (franking, PROTOCOL §16); the report verifies and is attributed; the
/// operator finds it in the queue, reads the reported message and bans Alice with
/// `haven-admin`; Alice's sends and logins are then refused; the audit log shows each step; and
/// the relay's database holds neither the text nor a username nor the clients' address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reported_message_is_reviewed_and_its_sender_banned() {
    use std::sync::Arc;
    use std::time::Duration;

    use haven_client::relay::{LoginDevice, LoginIdentifier};
    use haven_client::{ClientStore, Conversation, Device, Event, Messenger, RelayClient};

    const PW: &[u8] = b"operator e2e: correct horse";
    const TEXT: &str = "buy cheap kumquats at spoiled-kumquat dot example";
    const USERNAMES: [&str; 2] = ["alice_reported", "bob_reporter"];

    let config = RelayConfig::new();
    let db_url = config.get("HAVEN_DATABASE_URL").unwrap().to_owned();
    let store = SqliteStore::connect(&db_url).await.unwrap();
    let key = create_key(&store, "moderator", None, haven_relay::clock::now_i64())
        .await
        .unwrap()
        .secret
        .encode()
        .to_string();
    store.close().await;
    drop(store);
    let relay = config.start();
    let url = relay.url();
    let dir = tempfile::tempdir().unwrap();
    let device = |name: &str, username: &'static str| {
        let url = url.clone();
        let path = dir.path().join(name);
        async move {
            Device::register(
                RelayClient::new(&url).unwrap(),
                ClientStore::open(&path, &[7u8; 32]).unwrap(),
                Some(username),
                PW,
            )
            .await
            .unwrap()
        }
    };
    let alice = Arc::new(Messenger::new(Arc::new(device("a.db", USERNAMES[0]).await)));
    let bob = Arc::new(Messenger::new(Arc::new(device("b.db", USERNAMES[1]).await)));
    let mut bob_events = bob.subscribe();
    for m in [&alice, &bob] {
        let m = m.clone();
        tokio::spawn(async move {
            let _ = m.run().await;
        });
    }
    let alice_id = alice.device().account_bytes();
    let bob_id = alice
        .add_contact_by_username(USERNAMES[1])
        .await
        .unwrap()
        .account;
    let sent = alice
        .send_text(Conversation::Direct(bob_id), TEXT)
        .await
        .unwrap();
    let received = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            if let Ok(Event::Message(m)) = bob_events.recv().await
                && m.text == TEXT
            {
                return m.message_id;
            }
        }
    })
    .await
    .expect("Bob got Alice's text");
    assert_eq!(received, sent);

    // Bob reports it; the relay verifies it and knows who sent it.
    let receipt = bob
        .report(Conversation::Direct(alice_id), received)
        .await
        .unwrap();
    assert!(receipt.attributed);
    let report_id = receipt.report_id.to_hex();

    // The operator reviews and bans.
    let queue = stdout(&admin(&url, &key, &["reports", "list"]));
    assert!(queue.contains(&report_id), "{queue}");
    assert!(queue.contains(&hex::encode(alice_id)), "{queue}");
    let shown = stdout(&admin(&url, &key, &["reports", "show", &report_id]));
    assert!(shown.contains(TEXT), "{shown}");
    let decided = stdout(&admin(
        &url,
        &key,
        &["reports", "decide", &report_id, "ban", "--days", "30"],
    ));
    assert!(decided.starts_with("ban"), "{decided}");
    let bans = stdout(&admin(&url, &key, &["bans", "accounts", "list"]));
    assert!(
        bans.contains(&hex::encode(alice_id)) && bans.contains("banned"),
        "{bans}"
    );
    let again = admin(&url, &key, &["reports", "decide", &report_id, "dismiss"]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("report_decided"));

    // Alice can neither send nor log in again.
    assert!(
        alice
            .send_text(Conversation::Direct(bob_id), "still here?")
            .await
            .is_err()
    );
    let login = RelayClient::new(&url)
        .unwrap()
        .login(
            LoginIdentifier::Username(USERNAMES[0]),
            PW,
            LoginDevice::New {
                identity_key: &[3u8; 64],
                name: None,
            },
            None,
        )
        .await
        .unwrap_err();
    assert_eq!(login.code(), Some("account_banned"), "{login}");

    // The audit log shows each step, and names no one but by opaque ids.
    let audit = stdout(&admin(&url, &key, &["audit", "--limit", "1000"]));
    for kind in [
        "report_filed",
        "report_opened",
        "report_decided",
        "account_banned",
    ] {
        assert!(audit.contains(kind), "{kind} missing from {audit}");
    }
    let export = stdout(&admin(&url, &key, &["audit-export"]));
    for secret in [TEXT, USERNAMES[0], USERNAMES[1], "127.0.0.1"] {
        assert!(
            !audit.contains(secret) && !export.contains(secret),
            "{secret}"
        );
    }

    // Nothing readable in the database files: not the reported text (sealed at rest), not a
    // username (keyed hashes), not the address (the relay still runs: its WAL is scanned too).
    let db_dir = std::path::Path::new(db_url.trim_start_matches("sqlite://"))
        .parent()
        .unwrap()
        .to_owned();
    for entry in std::fs::read_dir(&db_dir).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap_or_default();
        for secret in [TEXT.as_bytes(), USERNAMES[0].as_bytes(), b"127.0.0.1"] {
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret),
                "{} found in the relay's files",
                String::from_utf8_lossy(secret)
            );
        }
    }
}
