//! Content-free wake-ups (PROTOCOL.md §18) against real relay processes and a real push service
//! on loopback (`tests/support/push_sink.py`: decrypts each push with the PyPI `http_ece`
//! package and verifies its VAPID token with `cryptography`): a push when a device is offline,
//! none while it has a socket (on this instance or, through Redis, on another), coalescing,
//! dropping endpoints that answer 404/410 or that the gateway rejects, retries with backoff,
//! the gateway kind, two instances on Postgres + Redis, endpoints gone with their device or
//! account, the SSRF rules, and what the database, the logs and the pushes hold.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use haven_relay::ids::Id;
use serde_json::{Value, json};

use crate::common::{self, Api as _, RelayConfig, RelayProcess, RemoteApi, Tokens, services};
use crate::ws_client;

const PASSWORD: &str = "correct horse battery staple";
const SINK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/push_sink.py");
/// What every push must decrypt to, byte for byte.
const WAKE: &[u8] = br#"{"type":"wake"}"#;

/// The loopback push service and gateway.
struct Sink {
    child: Child,
    port: u16,
    p256dh: String,
    auth: String,
    http: reqwest::Client,
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Sink {
    /// Starts the sink, or `None` (test skipped, or failed when services are required) when
    /// Python or its packages are missing.
    fn start() -> Option<Self> {
        let python = std::env::var("HAVEN_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
        let probe = Command::new(&python)
            .args(["-c", "import http_ece, cryptography"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if !probe.is_ok_and(|s| s.success()) {
            services::skip("no python3 with http_ece (pip install http_ece py_vapid)");
            return None;
        }
        let mut child = Command::new(&python)
            .arg(SINK)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("push sink");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let hello: Value = serde_json::from_str(&line).expect("push sink hello");
        Some(Self {
            child,
            port: u16::try_from(hello["port"].as_u64().unwrap()).unwrap(),
            p256dh: hello["p256dh"].as_str().unwrap().to_owned(),
            auth: hello["auth"].as_str().unwrap().to_owned(),
            http: reqwest::Client::new(),
        })
    }

    fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn endpoint(&self, name: &str) -> String {
        format!("{}/push/{name}", self.base())
    }

    fn web_push_body(&self, name: &str) -> Value {
        json!({"kind": "web_push", "endpoint": self.endpoint(name),
               "p256dh": self.p256dh, "auth": self.auth})
    }

    /// Tells `name` (`gateway` for the gateway) what to answer next.
    async fn control(&self, name: &str, statuses: &[u16], rejected: &[&str]) {
        let r = self
            .http
            .post(format!("{}/_control/{name}", self.base()))
            .json(&json!({"statuses": statuses, "rejected": rejected}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204);
    }

    /// Everything recorded for `name` so far.
    async fn seen(&self, name: &str) -> Vec<Value> {
        let all: Vec<Value> = self
            .http
            .get(format!("{}/_seen", self.base()))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        all.into_iter()
            .filter(|r| r["name"] == name || (name == "gateway" && r["kind"] == "gateway"))
            .collect()
    }

    /// Waits until `name` has at least `n` records (fails after `timeout`).
    async fn wait_for(&self, name: &str, n: usize, timeout: Duration) -> Vec<Value> {
        let start = Instant::now();
        loop {
            let seen = self.seen(name).await;
            if seen.len() >= n {
                return seen;
            }
            assert!(
                start.elapsed() < timeout,
                "{name}: {} of {n} pushes after {timeout:?}: {seen:?}",
                seen.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A relay process that may push to loopback, with short windows for tests.
fn push_relay() -> RelayConfig {
    RelayConfig::new()
        .set("HAVEN_PUSH_ALLOW_INSECURE", "true")
        .set("HAVEN_PUSH_COALESCE_SECS", "2")
        .set("HAVEN_PUSH_BACKOFF_BASE_MS", "1000")
        .set("HAVEN_PUSH_POLL_INTERVAL_MS", "100")
}

async fn send(api: &RemoteApi, from: &Tokens, to: &Tokens, content: &[u8]) {
    api.post_as(
        &format!("/v1/messages/{}", to.account_id),
        json!({
            "message_id": Id::random(),
            "envelopes": [{"device_number": 1, "content": common::b64(content)}],
        }),
        from,
    )
    .await
    .expect(StatusCode::OK);
}

async fn register_endpoint(api: &RemoteApi, who: &Tokens, body: Value) -> String {
    api.post_as("/v1/push/endpoints", body, who)
        .await
        .expect(StatusCode::CREATED)
        .body["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn endpoint_count(api: &RemoteApi, who: &Tokens) -> usize {
    api.get_as("/v1/push/endpoints", who)
        .await
        .expect(StatusCode::OK)
        .body["endpoints"]
        .as_array()
        .unwrap()
        .len()
}

/// Checks one recorded Web Push: decrypts to exactly the wake-up, VAPID verifies under the
/// relay's published key for the sink's origin, RFC 8030 headers.
fn assert_wake(record: &Value, vapid_key: &str) {
    assert_eq!(
        record["plaintext"]
            .as_str()
            .map(|p| URL_SAFE_NO_PAD.decode(p).unwrap()),
        Some(WAKE.to_vec()),
        "the push decrypts to the wake-up and nothing else: {record}"
    );
    assert_eq!(record["vapid"]["ok"], true, "{record}");
    assert_eq!(record["vapid"]["k"], vapid_key);
    assert_eq!(record["urgency"], "high");
    assert_eq!(record["content_encoding"], "aes128gcm");
    assert_eq!(record["ttl"], "3600");
    // salt 16 + rs 4 + idlen 1 + key 65 + (15 + delimiter 1) + tag 16: every push one size.
    assert_eq!(record["body_len"], 118);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offline_device_gets_one_content_free_wake_up_per_window() {
    let Some(sink) = Sink::start() else { return };
    // Every log line, at trace level (the HTTP client's address logging is capped).
    let mut relay = push_relay()
        .set("HAVEN_LOG", "trace")
        .spawn(common::RELAY_BIN);
    let api = RemoteApi::new(relay.url());
    let alice = api.register(None, PASSWORD).await;
    let bob = api.register(None, PASSWORD).await;
    let vapid = api
        .call(Method::GET, "/v1/push/vapid", None, None)
        .await
        .expect(StatusCode::OK)
        .body["public_key"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(URL_SAFE_NO_PAD.decode(&vapid).unwrap().len(), 65);
    let id = register_endpoint(&api, &bob, sink.web_push_body("bob")).await;
    assert_eq!(URL_SAFE_NO_PAD.decode(&id).unwrap().len(), 16);
    // The same endpoint again: the same id, still one endpoint.
    assert_eq!(
        register_endpoint(&api, &bob, sink.web_push_body("bob")).await,
        id
    );
    let listed = api
        .get_as("/v1/push/endpoints", &bob)
        .await
        .expect(StatusCode::OK);
    assert_eq!(listed.body["endpoints"][0]["id"], id.as_str());
    assert_eq!(listed.body["endpoints"][0]["kind"], "web_push");
    assert_eq!(listed.body["endpoints"].as_array().unwrap().len(), 1);

    let secret = b"meet me at the old mill at noon";
    send(&api, &alice, &bob, secret).await;
    let first = sink.wait_for("bob", 1, Duration::from_secs(10)).await;
    assert_wake(&first[0], &vapid);
    // More mail within the window: coalesced into one more wake-up at the window's end.
    for _ in 0..5 {
        send(&api, &alice, &bob, secret).await;
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        sink.seen("bob").await.len(),
        1,
        "coalesced within the window"
    );
    let both = sink.wait_for("bob", 2, Duration::from_secs(10)).await;
    assert_wake(&both[1], &vapid);
    let gap = both[1]["received_at"].as_f64().unwrap() - both[0]["received_at"].as_f64().unwrap();
    assert!(
        gap >= 1.95,
        "the second wake-up waited for the 2 s window: {gap}s"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        sink.seen("bob").await.len(),
        2,
        "no mail since: no more pushes"
    );

    // Blindness: the logs and the database hold neither the endpoint URL nor its keys, the logs
    // neither the sender nor the content; the pushes held only the wake-up (checked above).
    let logs = tokio::task::block_in_place(|| relay.stop());
    assert!(logs.contains("push sent"), "the worker logged its pushes");
    let mut db = std::fs::read(relay.config().dir().join("relay.db")).unwrap();
    if let Ok(wal) = std::fs::read(relay.config().dir().join("relay.db-wal")) {
        db.extend_from_slice(&wal);
    }
    let p256dh = URL_SAFE_NO_PAD.decode(&sink.p256dh).unwrap();
    let auth = URL_SAFE_NO_PAD.decode(&sink.auth).unwrap();
    let forms: Vec<Vec<u8>> = vec![
        sink.endpoint("bob").into_bytes(),
        format!("127.0.0.1:{}", sink.port).into_bytes(),
        sink.p256dh.clone().into_bytes(),
        sink.auth.clone().into_bytes(),
        p256dh,
        auth,
    ];
    haven_testkit::blindness::assert_free_of(&db, &forms, "database");
    haven_testkit::blindness::assert_free_of(logs.as_bytes(), &forms, "logs");
    // The content is opaque bytes the database holds until fetched; the logs never.
    haven_testkit::blindness::assert_free_of(logs.as_bytes(), &[secret.to_vec()], "logs");
    haven_testkit::blindness::assert_free_of(
        logs.as_bytes(),
        &[alice.account_id.clone().into_bytes()],
        "logs",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_with_a_socket_gets_no_push_and_one_without_does() {
    let Some(sink) = Sink::start() else { return };
    let relay = push_relay().spawn(common::RELAY_BIN);
    let api = RemoteApi::new(relay.url());
    let alice = api.register(None, PASSWORD).await;
    let bob = api.register(None, PASSWORD).await;
    register_endpoint(&api, &bob, sink.web_push_body("online")).await;
    let mut ws = ws_client::connect(&relay.addr().to_string(), &bob.access).await;
    assert_eq!(
        ws_client::next(&mut ws, Duration::from_secs(5)).await,
        ws_client::Frame::QueueEmpty
    );
    send(&api, &alice, &bob, b"live").await;
    assert!(matches!(
        ws_client::next(&mut ws, Duration::from_secs(5)).await,
        ws_client::Frame::Envelope { .. }
    ));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(sink.seen("online").await.is_empty(), "online: no push");
    drop(ws);
    tokio::time::sleep(Duration::from_millis(300)).await;
    send(&api, &alice, &bob, b"later").await;
    sink.wait_for("online", 1, Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_answering_410_or_404_are_dropped_and_500_is_retried_with_backoff() {
    let Some(sink) = Sink::start() else { return };
    let relay = push_relay().spawn(common::RELAY_BIN);
    let api = RemoteApi::new(relay.url());
    let alice = api.register(None, PASSWORD).await;
    for (name, status) in [("gone410", 410), ("gone404", 404)] {
        let bob = api.register(None, PASSWORD).await;
        register_endpoint(&api, &bob, sink.web_push_body(name)).await;
        sink.control(name, &[status], &[]).await;
        send(&api, &alice, &bob, b"x").await;
        sink.wait_for(name, 1, Duration::from_secs(10)).await;
        let start = Instant::now();
        while endpoint_count(&api, &bob).await > 0 {
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "{name}: endpoint kept"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Gone: later mail pushes nothing.
        send(&api, &alice, &bob, b"y").await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(sink.seen(name).await.len(), 1);
    }

    let carol = api.register(None, PASSWORD).await;
    register_endpoint(&api, &carol, sink.web_push_body("flaky")).await;
    sink.control("flaky", &[500, 503], &[]).await;
    send(&api, &alice, &carol, b"z").await;
    let seen = sink.wait_for("flaky", 3, Duration::from_secs(15)).await;
    let statuses: Vec<u64> = seen.iter().map(|r| r["status"].as_u64().unwrap()).collect();
    assert_eq!(statuses, [500, 503, 201]);
    let at: Vec<f64> = seen
        .iter()
        .map(|r| r["received_at"].as_f64().unwrap())
        .collect();
    let (first, second) = (at[1] - at[0], at[2] - at[1]);
    // Backoff base 1 s, doubled: 1 s, then 2 s.
    assert!(first >= 0.95, "first retry after {first}s");
    assert!(
        second >= 1.95 && second > first,
        "second retry after {second}s"
    );
    assert_eq!(
        endpoint_count(&api, &carol).await,
        1,
        "a 5xx keeps the endpoint"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attempts_are_bounded() {
    let Some(sink) = Sink::start() else { return };
    let relay = push_relay()
        .set("HAVEN_PUSH_MAX_ATTEMPTS", "2")
        .spawn(common::RELAY_BIN);
    let api = RemoteApi::new(relay.url());
    let alice = api.register(None, PASSWORD).await;
    let bob = api.register(None, PASSWORD).await;
    register_endpoint(&api, &bob, sink.web_push_body("down")).await;
    sink.control("down", &[500, 500, 500, 500], &[]).await;
    send(&api, &alice, &bob, b"x").await;
    sink.wait_for("down", 2, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        sink.seen("down").await.len(),
        2,
        "given up after 2 attempts"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_gets_the_tokens_and_rejected_ones_are_dropped() {
    let Some(sink) = Sink::start() else { return };
    let relay = push_relay()
        .set("HAVEN_PUSH_GATEWAY_URL", format!("{}/gateway", sink.base()))
        .spawn(common::RELAY_BIN);
    let api = RemoteApi::new(relay.url());
    let alice = api.register(None, PASSWORD).await;
    let bob = api.register(None, PASSWORD).await;
    for key in ["good-token", "dead-token"] {
        register_endpoint(
            &api,
            &bob,
            json!({"kind": "gateway", "app_id": "org.haven.test", "pushkey": key}),
        )
        .await;
    }
    let listed = api
        .get_as("/v1/push/endpoints", &bob)
        .await
        .expect(StatusCode::OK);
    assert!(
        listed.body["endpoints"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["kind"] == "gateway")
    );
    sink.control("gateway", &[], &["dead-token"]).await;
    send(&api, &alice, &bob, b"secret words").await;
    let seen = sink.wait_for("gateway", 1, Duration::from_secs(10)).await;
    let mut devices = seen[0]["json"]["notification"]["devices"]
        .as_array()
        .unwrap()
        .clone();
    devices.sort_by_key(|d| d["pushkey"].as_str().unwrap().to_owned());
    assert_eq!(
        seen[0]["json"],
        json!({"notification": {"type": "wake", "devices": seen[0]["json"]["notification"]["devices"]}}),
        "nothing but the wake-up and the tokens"
    );
    assert_eq!(
        devices,
        [
            json!({"app_id": "org.haven.test", "pushkey": "dead-token"}),
            json!({"app_id": "org.haven.test", "pushkey": "good-token"}),
        ]
    );
    let start = Instant::now();
    while endpoint_count(&api, &bob).await != 1 {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "rejected token kept"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A gateway answering 5xx is retried.
    sink.control("gateway", &[502], &[]).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    send(&api, &alice, &bob, b"again").await;
    let seen = sink.wait_for("gateway", 3, Duration::from_secs(15)).await;
    assert_eq!(seen[1]["status"], 502);
    assert_eq!(seen[2]["status"], 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registrations_are_checked_and_refusals_change_nothing() {
    let relay = RelayConfig::new()
        .set("HAVEN_PUSH_ALLOWED_HOSTS", "push.example,.push.example.net")
        .spawn(common::RELAY_BIN);
    let api = RemoteApi::new(relay.url());
    let bob = api.register(None, PASSWORD).await;
    let key = {
        use p256::elliptic_curve::sec1::ToEncodedPoint as _;
        URL_SAFE_NO_PAD.encode(
            p256::SecretKey::from_slice(&[7u8; 32])
                .unwrap()
                .public_key()
                .to_encoded_point(false)
                .as_bytes(),
        )
    };
    let auth = URL_SAFE_NO_PAD.encode([1u8; 16]);
    let web = |endpoint: &str| json!({"kind": "web_push", "endpoint": endpoint, "p256dh": key, "auth": auth});
    for (body, code) in [
        (web("http://push.example/a"), "push_endpoint_not_allowed"),
        (web("https://127.0.0.1/a"), "push_endpoint_not_allowed"),
        (web("https://10.0.0.1/a"), "push_endpoint_not_allowed"),
        (
            web("https://169.254.169.254/latest/meta-data"),
            "push_endpoint_not_allowed",
        ),
        (web("https://[::1]/a"), "push_endpoint_not_allowed"),
        (web("https://localhost/a"), "push_endpoint_not_allowed"),
        (web("https://evil.example/a"), "push_endpoint_not_allowed"),
        (
            web(&format!("https://push.example/{}", "a".repeat(1100))),
            "invalid_push_endpoint",
        ),
        (web("not a url"), "invalid_push_endpoint"),
        (
            json!({"kind": "web_push", "endpoint": "https://push.example/a", "p256dh": URL_SAFE_NO_PAD.encode([4u8; 65]), "auth": auth}),
            "invalid_push_endpoint",
        ),
        (
            json!({"kind": "web_push", "endpoint": "https://push.example/a", "p256dh": key, "auth": URL_SAFE_NO_PAD.encode([1u8; 15])}),
            "invalid_push_endpoint",
        ),
        (
            json!({"kind": "gateway", "app_id": "org.example", "pushkey": "t"}),
            "push_gateway_not_configured",
        ),
    ] {
        api.post_as("/v1/push/endpoints", body.clone(), &bob)
            .await
            .expect_error(StatusCode::BAD_REQUEST, code);
    }
    assert_eq!(
        endpoint_count(&api, &bob).await,
        0,
        "refusals stored nothing"
    );
    let mut ids = Vec::new();
    for i in 0..5 {
        let host = if i % 2 == 0 {
            "push.example"
        } else {
            "a.push.example.net"
        };
        ids.push(register_endpoint(&api, &bob, web(&format!("https://{host}/sub/{i}"))).await);
    }
    api.post_as(
        "/v1/push/endpoints",
        web("https://push.example/sub/6"),
        &bob,
    )
    .await
    .expect_error(StatusCode::CONFLICT, "too_many_push_endpoints");
    // Re-registering one of the five is still fine (same id).
    assert_eq!(
        register_endpoint(&api, &bob, web("https://push.example/sub/0")).await,
        ids[0]
    );
    // Another device cannot see or delete bob's endpoints.
    let eve = api.register(None, PASSWORD).await;
    assert_eq!(endpoint_count(&api, &eve).await, 0);
    api.call(
        Method::DELETE,
        &format!("/v1/push/endpoints/{}", ids[1]),
        None,
        Some(&eve.access),
    )
    .await
    .expect_error(StatusCode::NOT_FOUND, "push_endpoint_not_found");
    api.call(
        Method::DELETE,
        &format!("/v1/push/endpoints/{}", ids[1]),
        None,
        Some(&bob.access),
    )
    .await
    .expect(StatusCode::NO_CONTENT);
    api.call(
        Method::DELETE,
        &format!("/v1/push/endpoints/{}", ids[1]),
        None,
        Some(&bob.access),
    )
    .await
    .expect_error(StatusCode::NOT_FOUND, "push_endpoint_not_found");
    api.call(
        Method::DELETE,
        "/v1/push/endpoints/!!",
        None,
        Some(&bob.access),
    )
    .await
    .expect_error(StatusCode::NOT_FOUND, "push_endpoint_not_found");
    assert_eq!(endpoint_count(&api, &bob).await, 4);
    api.post_as("/v1/push/endpoints", json!({"kind": "smoke_signal"}), &bob)
        .await
        .expect(StatusCode::BAD_REQUEST);
    api.call(Method::GET, "/v1/push/endpoints", None, None)
        .await
        .expect(StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_are_deleted_with_their_account() {
    let Some(sink) = Sink::start() else { return };
    let mut relay = push_relay().spawn(common::RELAY_BIN);
    let api = RemoteApi::new(relay.url());
    let alice = api.register(None, PASSWORD).await;
    let bob = api.register(None, PASSWORD).await;
    register_endpoint(&api, &bob, sink.web_push_body("deleted")).await;
    register_endpoint(&api, &alice, sink.web_push_body("kept")).await;
    send(&api, &alice, &bob, b"x").await;
    sink.wait_for("deleted", 1, Duration::from_secs(10)).await;
    let proof = api.fresh_auth(&bob, PASSWORD).await;
    api.call_fresh(
        Method::DELETE,
        "/v1/account",
        None,
        &bob.access,
        Some(&proof),
    )
    .await
    .expect(StatusCode::NO_CONTENT);
    tokio::task::block_in_place(|| relay.stop());
    let db = relay.config().dir().join("relay.db");
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    let bob_id: Id = bob.account_id.parse().unwrap();
    for table in ["push_endpoints", "push_queue"] {
        let n: i64 = sqlx::query_scalar(&format!(
            "SELECT COUNT(*) FROM {table} WHERE account_id = $1"
        ))
        .bind(&bob_id.as_bytes()[..])
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!(n, 0, "{table} rows of the deleted account");
    }
    let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM push_endpoints")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(left, 1, "the other account's endpoint stays");
    pool.close().await;
}

/// Device deletion removes the device's endpoints and pending wake-up (both engines).
async fn device_deletion_removes_endpoints<S: haven_relay::db::Store>(h: common::Harness<S>) {
    use haven_relay::push::store::EndpointKind;
    let bob = h.register(None, PASSWORD).await;
    let account: Id = bob.account_id.parse().unwrap();
    let device: Id = bob.device_id.parse().unwrap();
    let outcome = h
        .store
        .put_push_endpoint(
            &account,
            1,
            &Id::random(),
            EndpointKind::WebPush,
            b"l",
            b"t",
            1,
            5,
        )
        .await
        .unwrap();
    assert_eq!(outcome, haven_relay::push::store::PutOutcome::Stored);
    assert_eq!(
        h.store.enqueue_push(&account, 1, 100, 30).await.unwrap(),
        Some(100)
    );
    assert_eq!(h.store.push_endpoints(&account, 1).await.unwrap().len(), 1);
    assert!(h.store.delete_device(&account, &device, 200).await.unwrap());
    assert!(
        h.store
            .push_endpoints(&account, 1)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(h.store.pending_pushes().await.unwrap(), 0);
}

#[tokio::test]
async fn device_deletion_removes_endpoints_sqlite() {
    let Some(h) = common::Harness::sqlite().await else {
        return;
    };
    device_deletion_removes_endpoints(h).await;
}

#[tokio::test]
async fn device_deletion_removes_endpoints_postgres() {
    let Some(h) = common::Harness::postgres().await else {
        return;
    };
    device_deletion_removes_endpoints(h).await;
}

/// Two instances on one Postgres database and one Redis: the instance that stores the mail is
/// not the one holding the socket. A socket on B keeps A from pushing; without it exactly one
/// wake-up goes out although both instances run a worker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_presence_and_the_queue() {
    let Some(sink) = Sink::start() else { return };
    let Some(redis) = services::redis() else {
        return;
    };
    let Some((db, _guard)) = common::pg_database().await else {
        return;
    };
    let a: RelayProcess = push_relay()
        .database(&db)
        .set("HAVEN_REDIS_URL", redis.as_str())
        .spawn(common::RELAY_BIN);
    let b: RelayProcess = push_relay()
        .database(&db)
        .set("HAVEN_REDIS_URL", redis.as_str())
        .spawn(common::RELAY_BIN);
    let api_a = RemoteApi::new(a.url());
    let api_b = RemoteApi::new(b.url());
    let alice = api_a.register(None, PASSWORD).await;
    let bob = api_a.register(None, PASSWORD).await;
    // The same VAPID key on both (generated once, stored in the shared database).
    let key = |api: RemoteApi| async move {
        api.call(Method::GET, "/v1/push/vapid", None, None)
            .await
            .expect(StatusCode::OK)
            .body["public_key"]
            .clone()
    };
    assert_eq!(key(api_a.clone()).await, key(api_b.clone()).await);
    register_endpoint(&api_b, &bob, sink.web_push_body("cluster")).await;

    let mut ws = ws_client::connect(&b.addr().to_string(), &bob.access).await;
    assert_eq!(
        ws_client::next(&mut ws, Duration::from_secs(5)).await,
        ws_client::Frame::QueueEmpty
    );
    send(&api_a, &alice, &bob, b"via A").await;
    assert!(matches!(
        ws_client::next(&mut ws, Duration::from_secs(5)).await,
        ws_client::Frame::Envelope { .. }
    ));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        sink.seen("cluster").await.is_empty(),
        "online on B: A sent no push"
    );

    drop(ws);
    tokio::time::sleep(Duration::from_millis(500)).await;
    for _ in 0..3 {
        send(&api_a, &alice, &bob, b"offline").await;
        send(&api_b, &alice, &bob, b"offline").await;
    }
    let seen = sink.wait_for("cluster", 1, Duration::from_secs(10)).await;
    assert_eq!(
        URL_SAFE_NO_PAD
            .decode(seen[0]["plaintext"].as_str().unwrap())
            .unwrap(),
        WAKE
    );
    // At most one more (the window's coalesced one), never one per instance or per message.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let n = sink.seen("cluster").await.len();
    assert!(
        (1..=2).contains(&n),
        "{n} pushes for 6 messages on two instances"
    );
}

/// Pushes per second one relay instance sustains (its worker sending Web Push, RFC 8291
/// encryption and a VAPID signature per push, to the loopback sink, which only counts), next to
/// the envelopes per second of the sends that caused them, in the same run. BENCHMARKS.md.
///
/// `cargo test -p haven-relay --test relay push_throughput -- --ignored --nocapture`
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "benchmark"]
async fn push_throughput() {
    let Some(sink) = Sink::start() else { return };
    let devices = 40;
    let rounds = 25;
    let relay = push_relay()
        .set("HAVEN_PUSH_COALESCE_SECS", "0")
        .set("HAVEN_PUSH_PER_DEVICE_PER_HOUR", "1000000")
        .set("HAVEN_PUSH_POLL_INTERVAL_MS", "10")
        .spawn(common::RELAY_BIN);
    let api = RemoteApi::new(relay.url());
    let alice = api.register(None, PASSWORD).await;
    let mut bobs = Vec::new();
    for i in 0..devices {
        let bob = api.register(None, PASSWORD).await;
        let body = json!({"kind": "web_push", "endpoint": format!("{}/count/d{i}", sink.base()),
                          "p256dh": sink.p256dh, "auth": sink.auth});
        register_endpoint(&api, &bob, body).await;
        bobs.push(bob);
    }
    let counted = || async {
        let counts: Value = sink
            .http
            .get(format!("{}/_count", sink.base()))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        counts
            .as_object()
            .unwrap()
            .values()
            .map(|v| v.as_u64().unwrap())
            .sum::<u64>()
    };
    let start = Instant::now();
    let mut sent = 0u64;
    let mut send_time = Duration::ZERO;
    for _ in 0..rounds {
        let t = Instant::now();
        let sends = bobs.iter().map(|bob| send(&api, &alice, bob, b"bench"));
        futures_util::future::join_all(sends).await;
        send_time += t.elapsed();
        sent += devices as u64;
        // Let each round's wake-ups go out before the next round's mail (else coalesced).
        let want = sent;
        let wait = Instant::now();
        while counted().await < want && wait.elapsed() < Duration::from_secs(30) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    let total = start.elapsed();
    let pushes = counted().await;
    let push_time = total - send_time;
    println!(
        "push_throughput: {sent} envelopes in {:.2}s of sending = {:.0} envelopes/s; \
         {pushes} pushes in {:.2}s of pushing = {:.0} pushes/s ({devices} devices, {rounds} rounds)",
        send_time.as_secs_f64(),
        sent as f64 / send_time.as_secs_f64(),
        push_time.as_secs_f64(),
        pushes as f64 / push_time.as_secs_f64(),
    );
    assert_eq!(pushes, sent, "one wake-up per envelope with coalescing off");
}

/// The queue is durable: a wake-up waiting for its retry when the relay stops is sent by the
/// restarted relay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_wake_up_survives_a_restart() {
    let Some(sink) = Sink::start() else { return };
    let mut relay = push_relay()
        .set("HAVEN_PUSH_BACKOFF_BASE_MS", "3000")
        .spawn(common::RELAY_BIN);
    let api = RemoteApi::new(relay.url());
    let alice = api.register(None, PASSWORD).await;
    let bob = api.register(None, PASSWORD).await;
    register_endpoint(&api, &bob, sink.web_push_body("restart")).await;
    sink.control("restart", &[503], &[]).await;
    send(&api, &alice, &bob, b"x").await;
    sink.wait_for("restart", 1, Duration::from_secs(10)).await;
    tokio::task::block_in_place(|| relay.restart());
    let seen = sink.wait_for("restart", 2, Duration::from_secs(30)).await;
    assert_eq!(seen[1]["status"], 201);
    assert_eq!(
        URL_SAFE_NO_PAD
            .decode(seen[1]["plaintext"].as_str().unwrap())
            .unwrap(),
        WAKE
    );
}
