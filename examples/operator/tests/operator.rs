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
