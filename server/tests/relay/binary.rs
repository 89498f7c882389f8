//! End-to-end: the real `haven-relay` binary.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common;

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::common::{RELAY_BIN, RelayConfig, RelayProcess};

/// A minimal HTTP/1.1 GET (the relay printed its address after binding, so it answers).
fn get(addr: &str, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, response)
}

/// Graceful shutdown on SIGTERM: the process exits by itself with success.
fn stop(relay: &mut RelayProcess) {
    let logs = relay.stop();
    assert!(logs.contains("relay stopped"), "{logs}");
}

/// The binary with only an ephemeral address (and metrics port) set: everything else is the
/// relay's own default, relative to its working directory.
fn unconfigured() -> RelayConfig {
    let mut config = RelayConfig::new();
    for key in [
        "HAVEN_DATABASE_URL",
        "HAVEN_BLOBS_DIR",
        "HAVEN_LOG",
        "HAVEN_RATE_LIMIT_PER_MINUTE",
        "HAVEN_AUTH_RATE_LIMIT_PER_MINUTE",
    ] {
        config = config.unset(key);
    }
    config.set("HAVEN_METRICS_LISTEN", "127.0.0.1:0")
}

#[test]
fn starts_with_no_configuration_on_sqlite() {
    let mut relay = unconfigured().unset("HAVEN_TOTP_KEY").spawn(RELAY_BIN);
    let addr = relay.addr().to_string();
    let (status, body) = get(&addr, "/health");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"ok\""));
    assert!(body.contains("x-frame-options: DENY"), "{body}");
    let (status, _) = get(&addr, "/ready");
    assert_eq!(status, 200);
    let (status, body) = get(&addr, "/openapi.json");
    assert_eq!(status, 200);
    assert!(body.contains("/v1/login/finish"));
    assert!(
        relay.config().dir().join("data/haven.db").exists(),
        "default database ./data/haven.db"
    );
    // The TOTP key is kept next to the database, readable by the owner only.
    let key = relay.config().dir().join("data/totp.key");
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{}", key.display());
    }
    stop(&mut relay);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_to_start_on_postgres_without_a_totp_key() {
    let Some((url, _guard)) = common::pg_database().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let out = tokio::task::block_in_place(|| {
        std::process::Command::new(RELAY_BIN)
            .env_clear()
            .current_dir(dir.path())
            .env("HAVEN_DATABASE_URL", &url)
            .env("HAVEN_LISTEN", "127.0.0.1:0")
            .env("HAVEN_METRICS_LISTEN", "off")
            .output()
            .unwrap()
    });
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("HAVEN_TOTP_KEY"), "{stderr}");
    // Nothing was written locally, and no secret was stored.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_on_postgres_and_redis() {
    let Some((url, _guard)) = common::pg_database().await else {
        return;
    };
    let Some(redis) = common::services::redis() else {
        return;
    };
    // The plain names a container platform sets (`DATABASE_URL`, `REDIS_URL`) are honoured.
    let env = [
        ("DATABASE_URL", url.as_str()),
        ("REDIS_URL", redis.as_str()),
    ];
    let mut relay = unconfigured().set_all(&env).spawn(RELAY_BIN);
    let addr = relay.addr().to_string();
    let (status, body) = tokio::task::block_in_place(|| get(&addr, "/ready"));
    assert_eq!(status, 200, "{body}");
    // Nothing was written locally: the state lives in Postgres.
    assert!(!relay.config().dir().join("data").exists());
    tokio::task::block_in_place(|| stop(&mut relay));
}

/// One HTTP/1.1 request on a fresh connection; `None` on any I/O failure (a dead relay).
fn request(
    addr: &str,
    method: &str,
    path: &str,
    token: &str,
    body: Option<&str>,
) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(addr).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    let body = body.unwrap_or("");
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Authorization: Bearer {token}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split(' ').nth(1)?.parse().ok()?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Some((status, body))
}

/// An account with one device and a session, written straight into the store, plus an access
/// token for it signed with the key the relay process is given.
async fn seeded_account(
    store: &haven_relay::db::SqliteStore,
    key: &haven_relay::secrets::Key32,
) -> (haven_relay::ids::Id, String) {
    let session =
        haven_relay::accounts::seed::seed_session(store, haven_relay::clock::now_i64(), 3600)
            .await
            .unwrap();
    let token = haven_relay::accounts::tokens::sign_access(
        key,
        &session,
        haven_relay::clock::now_secs(),
        3600,
    )
    .unwrap();
    (session.account, token)
}

/// SIGKILL during a burst of REST sends: every send that got a 2xx is still there after a
/// restart on the same SQLite file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_send_burst_loses_no_acknowledged_send() {
    use std::sync::{Arc, Mutex};
    const SENDERS: usize = 16;
    let config = RelayConfig::new();
    let db = config.dir().join("relay.db");
    let key = haven_relay::secrets::Key32::from_bytes(common::TEST_JWT_KEY);
    let store = haven_relay::db::SqliteStore::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    let (_alice, alice_token) = seeded_account(&store, &key).await;
    let (bob, bob_token) = seeded_account(&store, &key).await;
    store.close().await;
    let jwt = common::b64(&common::TEST_JWT_KEY);
    let env = [
        ("HAVEN_JWT_SECRET", jwt.as_str()),
        ("HAVEN_RATE_LIMIT_PER_MINUTE", "10000000"),
        ("HAVEN_MAIL_MAX_QUEUE_MESSAGES", "10000000"),
    ];
    let mut relay = config.set_all(&env).spawn(RELAY_BIN);
    let addr = relay.addr().to_string();
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let attempted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    // Enough concurrent senders that the relay's group commits hold several sends each.
    let senders: Vec<_> = (0..SENDERS)
        .map(|_| {
            let (addr, token, acked, attempted) = (
                addr.clone(),
                alice_token.clone(),
                Arc::clone(&acked),
                Arc::clone(&attempted),
            );
            let path = format!("/v1/messages/{bob}");
            std::thread::spawn(move || {
                loop {
                    let id = haven_relay::ids::Id::random().to_hex();
                    let body = format!(
                        r#"{{"message_id":"{id}","envelopes":[{{"device_number":1,"content":"{}"}}]}}"#,
                        common::b64(id.as_bytes())
                    );
                    attempted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    match request(&addr, "POST", &path, &token, Some(&body)) {
                        Some((200, _)) => acked.lock().unwrap().push(id),
                        Some((status, body)) => panic!("unexpected {status}: {body}"),
                        None => return,
                    }
                }
            })
        })
        .collect();
    // Kill once a good number of sends were acknowledged (and many more are in flight).
    let deadline = Instant::now() + Duration::from_secs(60);
    while acked.lock().unwrap().len() < 200 {
        assert!(
            Instant::now() < deadline,
            "the relay acknowledged too few sends"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    relay.sigkill();
    tokio::task::block_in_place(|| relay.wait_exit(Duration::from_secs(20)));
    for s in senders {
        s.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    let attempted = attempted.load(std::sync::atomic::Ordering::Relaxed);
    assert!(acked.len() >= 200, "burst too small: {}", acked.len());
    // Restart on the same file and read everything back.
    tokio::task::block_in_place(|| relay.restart());
    let addr = relay.addr().to_string();
    let mut stored = std::collections::HashSet::new();
    let mut after = 0i64;
    loop {
        let (status, body) = tokio::task::block_in_place(|| {
            request(
                &addr,
                "GET",
                &format!("/v1/messages?after={after}&limit=100"),
                &bob_token,
                None,
            )
        })
        .unwrap();
        assert_eq!(status, 200, "{body}");
        let page: serde_json::Value = serde_json::from_str(&body).unwrap();
        let envelopes = page["envelopes"].as_array().unwrap();
        for e in envelopes {
            stored.insert(e["message_id"].as_str().unwrap().to_owned());
            after = e["seq"].as_i64().unwrap();
        }
        if page["more"] != true {
            break;
        }
    }
    let lost: Vec<&String> = acked.iter().filter(|id| !stored.contains(*id)).collect();
    println!(
        "sends attempted {attempted}, acknowledged {}, stored after restart {}",
        acked.len(),
        stored.len()
    );
    assert!(lost.is_empty(), "{} acknowledged sends lost", lost.len());
    // At most the requests in flight at the kill may have been stored without an answer.
    assert!(stored.len() <= acked.len() + SENDERS);
    tokio::task::block_in_place(|| stop(&mut relay));
}
