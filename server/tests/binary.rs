//! End-to-end: the real `haven-relay` binary.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Spawns the binary in `dir` with `env`, returns it and the address it printed.
fn spawn(dir: &std::path::Path, env: &[(&str, &str)]) -> (Child, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_haven-relay"));
    cmd.current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env_clear();
    for key in ["PATH", "HOME"] {
        if let Ok(v) = std::env::var(key) {
            cmd.env(key, v);
        }
    }
    cmd.env("HAVEN_LISTEN", "127.0.0.1:0")
        .env("HAVEN_METRICS_LISTEN", "127.0.0.1:0");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("haven-relay listening on http://")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    (child, addr)
}

/// A minimal HTTP/1.1 GET; retries while the relay is still opening its database.
fn get(addr: &str, path: &str) -> (u16, String) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let attempt = (|| -> std::io::Result<(u16, String)> {
            let mut stream = TcpStream::connect(addr)?;
            stream.set_read_timeout(Some(Duration::from_secs(10)))?;
            write!(
                stream,
                "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
            )?;
            let mut response = String::new();
            stream.read_to_string(&mut response)?;
            let status = response
                .split(' ')
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            Ok((status, response))
        })();
        match attempt {
            Ok((status, body)) if status != 0 => return (status, body),
            _ if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
            other => panic!("no answer from {addr}: {other:?}"),
        }
    }
}

fn stop(mut child: Child) {
    // Graceful shutdown on SIGTERM: the process exits by itself with success.
    let status = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut stderr = String::new();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut stderr)
                .unwrap();
            assert!(status.success(), "exit {status}; stderr: {stderr}");
            assert!(stderr.contains("relay stopped"), "{stderr}");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "relay did not stop after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn starts_with_no_configuration_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let (child, addr) = spawn(dir.path(), &[]);
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
        dir.path().join("data/haven.db").exists(),
        "default database ./data/haven.db"
    );
    stop(child);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_on_postgres_and_redis() {
    let Some((url, _guard)) = common::pg_database().await else {
        return;
    };
    let Ok(redis) = std::env::var("HAVEN_TEST_REDIS_URL") else {
        println!("skipped: HAVEN_TEST_REDIS_URL is not set");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("DATABASE_URL", url.as_str()),
        ("REDIS_URL", redis.as_str()),
    ];
    let (child, addr) = tokio::task::block_in_place(|| spawn(dir.path(), &env));
    let (status, body) = tokio::task::block_in_place(|| get(&addr, "/ready"));
    assert_eq!(status, 200, "{body}");
    // Nothing was written locally: the state lives in Postgres.
    assert!(!dir.path().join("data").exists());
    tokio::task::block_in_place(|| stop(child));
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
    store: &haven_relay::store::SqliteStore,
    key: &haven_relay::secrets::Key32,
) -> (haven_relay::ids::Id, String) {
    use haven_relay::auth::tokens::{Session, sign_access};
    use haven_relay::ids::Id;
    use haven_relay::store::{
        AccountStore as _, DeviceRecord, FamilyRecord, NewAccount, RefreshTokenRecord,
        TokenStore as _,
    };
    let (account, device, family) = (Id::random(), Id::random(), Id::random());
    let now = haven_relay::state::now_i64();
    store
        .create_account(
            &NewAccount {
                id: account,
                username_hash: None,
                opaque_record: vec![1; 192],
                created_at: now,
            },
            &DeviceRecord {
                id: device,
                account_id: account,
                identity_key: vec![3; 32],
                name_blob: None,
                created_at: now,
                number: 1,
            },
        )
        .await
        .unwrap();
    store
        .create_family(
            &FamilyRecord {
                id: family,
                account_id: account,
                device_id: device,
                revoked: false,
                created_at: now,
            },
            &RefreshTokenRecord {
                token_hash: Id::random().as_bytes().to_vec(),
                family_id: family,
                created_at: now,
                expires_at: now + 3600,
                used_at: None,
            },
        )
        .await
        .unwrap();
    let session = Session {
        account,
        device,
        family,
    };
    let token = sign_access(key, &session, haven_relay::state::now_secs(), 3600).unwrap();
    (account, token)
}

/// SIGKILL during a burst of REST sends: every send that got a 2xx is still there after a
/// restart on the same SQLite file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_send_burst_loses_no_acknowledged_send() {
    use std::sync::{Arc, Mutex};
    const SENDERS: usize = 16;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("data/haven.db");
    std::fs::create_dir_all(db.parent().unwrap()).unwrap();
    let key = haven_relay::secrets::Key32::from_bytes(common::TEST_JWT_KEY);
    let store = haven_relay::store::SqliteStore::connect(&format!("sqlite://{}", db.display()))
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
    let (mut child, addr) = tokio::task::block_in_place(|| spawn(dir.path(), &env));
    tokio::task::block_in_place(|| get(&addr, "/ready"));
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
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let status = Command::new("kill")
        .arg("-KILL")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
    child.wait().unwrap();
    for s in senders {
        s.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    let attempted = attempted.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        acked.len() >= 10,
        "burst too small to prove anything: {}",
        acked.len()
    );
    // Restart on the same file and read everything back.
    let (child, addr) = tokio::task::block_in_place(|| spawn(dir.path(), &env));
    tokio::task::block_in_place(|| get(&addr, "/ready"));
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
    tokio::task::block_in_place(|| stop(child));
}
