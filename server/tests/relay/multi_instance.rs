//! Two relay instances on one database: login state and (with Redis) failure limits are shared.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common;
use crate::common::Api as _;
use crate::ws_client as relay;

use crate::common::{Guard, Harness};
use axum::http::StatusCode;
use haven_relay::db::Store;
use haven_relay::limits::Limits;
use haven_relay::settings::ConnectionUrl;
use serde_json::json;

const PASSWORD: &str = "correct horse battery staple";

async fn second_instance<S: Store>(h: &Harness<S>, limits: Limits) -> Harness<S> {
    let settings = common::test_settings();
    Harness::with_limits(h.store.clone(), Guard::None, settings, limits).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_started_on_one_instance_finishes_on_another() {
    let Some(a) = Harness::postgres().await else {
        return;
    };
    let b = second_instance(&a, Limits::in_memory()).await;
    let alice = a.register(Some("alice"), PASSWORD).await;
    // The secrets converged through the database, so B knows A's OPAQUE setup and JWT key.
    let tokens = b.login_existing(&alice, PASSWORD).await;
    a.call(
        axum::http::Method::GET,
        "/v1/devices",
        None,
        Some(&tokens.access),
    )
    .await
    .expect(StatusCode::OK);
    // Split one login across the two instances.
    let start =
        opaque_ke::ClientLogin::<common::Cs>::start(&mut rand::rngs::OsRng, PASSWORD.as_bytes())
            .unwrap();
    let reply = a
        .post(
            "/v1/login/start",
            json!({
                "account_id": alice.account_id,
                "credential_request": common::b64(&start.message.serialize()),
            }),
        )
        .await
        .expect(StatusCode::OK);
    use base64::Engine as _;
    let ke2 = base64::engine::general_purpose::STANDARD
        .decode(reply.body["credential_response"].as_str().unwrap())
        .unwrap();
    let ke2 = opaque_ke::CredentialResponse::<common::Cs>::deserialize(&ke2).unwrap();
    let params = opaque_ke::ClientLoginFinishParameters::new(
        Some(haven_protocol::opaque::OPAQUE_CONTEXT),
        opaque_ke::Identifiers::default(),
        None,
    );
    let ke3 = start
        .state
        .finish(PASSWORD.as_bytes(), ke2, params)
        .unwrap()
        .message;
    b.post(
        "/v1/login/finish",
        json!({
            "login_id": reply.body["login_id"],
            "credential_finalization": common::b64(&ke3.serialize()),
            "device_id": alice.device_id,
        }),
    )
    .await
    .expect(StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failure_limits_are_shared_through_redis() {
    let Some(redis) = common::services::redis() else {
        return;
    };
    let Some(a0) = Harness::sqlite().await else {
        return;
    };
    let mut settings = common::test_settings();
    settings.redis_url = Some(ConnectionUrl::new(redis));
    let a = second_instance(&a0, Limits::from_settings(&settings).await.unwrap()).await;
    let b = second_instance(&a0, Limits::from_settings(&settings).await.unwrap()).await;
    let alice = a.register(Some("alice"), PASSWORD).await;
    for h in [&a, &b, &a] {
        h.try_login(
            json!({"account_id": alice.account_id}),
            "wrong",
            json!({"device_id": alice.device_id}),
        )
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "invalid_credentials");
    }
    // Three failures spread over two instances lock the account on both.
    for h in [&a, &b] {
        h.try_login(
            json!({"account_id": alice.account_id}),
            PASSWORD,
            json!({"device_id": alice.device_id}),
        )
        .await
        .expect_error(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    }
    let ready = b.call(axum::http::Method::GET, "/ready", None, None).await;
    ready.expect(StatusCode::OK);
}

/// Two (or three) relay processes on one Postgres database, A and B sharing Redis.
struct Cluster {
    _h: Harness<haven_relay::db::PgStore>,
    url: String,
    redis: String,
    alice: common::Tokens,
    bob: common::Tokens,
}

async fn cluster() -> Option<Cluster> {
    let redis = common::services::redis()?;
    let (url, guard) = common::pg_database().await?;
    let store = haven_relay::db::PgStore::connect(&url).await.unwrap();
    let h = Harness::with_settings(store, guard, common::test_settings()).await;
    let alice = h.register(None, PASSWORD).await;
    let bob = h.register(None, PASSWORD).await;
    Some(Cluster {
        _h: h,
        url,
        redis,
        alice,
        bob,
    })
}

impl Cluster {
    fn spawn(&self, redis: bool, poll_secs: &str) -> relay::Relay {
        use base64::Engine as _;
        let jwt = base64::engine::general_purpose::STANDARD.encode(common::TEST_JWT_KEY);
        let mut env = vec![
            ("HAVEN_DATABASE_URL", self.url.as_str()),
            ("HAVEN_JWT_SECRET", jwt.as_str()),
            ("HAVEN_WS_POLL_INTERVAL_SECS", poll_secs),
        ];
        if redis {
            env.push(("HAVEN_REDIS_URL", self.redis.as_str()));
        }
        tokio::task::block_in_place(|| relay::Relay::spawn(&env))
    }
}

const WAIT: std::time::Duration = std::time::Duration::from_secs(10);

async fn rest_send(addr: &str, from: &common::Tokens, to: &common::Tokens, content: &[u8]) {
    let (status, body) = relay::http(
        addr,
        "POST",
        &format!("/v1/messages/{}", to.account_id),
        Some(&from.access),
        Some(&json!({
            "message_id": haven_relay::ids::Id::random().to_hex(),
            "envelopes": [{"device_number": 1, "content": relay::b64(content)}],
        })),
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

async fn expect_envelope(ws: &mut relay::Ws, content: &[u8]) {
    match relay::next(ws, WAIT).await {
        relay::Frame::Envelope { content: got, .. } => assert_eq!(got, content),
        other => panic!("expected {content:?}, got {other:?}"),
    }
}

/// Sets bob's access key (ephemeral sends and signals to him need it) and returns it.
async fn set_bob_key(addr: &str, bob: &common::Tokens) -> [u8; 16] {
    let key = [6u8; 16];
    let (status, body) = relay::http(
        addr,
        "PUT",
        "/v1/account/access-key",
        Some(&bob.access),
        Some(&json!({"access_key": relay::b64(&key)})),
    )
    .await;
    assert_eq!(status, 204, "{body}");
    key
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_on_one_instance_gets_mail_signals_and_replacement_from_another() {
    let Some(c) = cluster().await else { return };
    // Polls are hourly: anything prompt below travelled as a Redis hint.
    let a = c.spawn(true, "3600");
    let b = c.spawn(true, "3600");
    let mut bob = relay::connect(&a.addr, &c.bob.access).await;
    assert_eq!(relay::next(&mut bob, WAIT).await, relay::Frame::QueueEmpty);
    let started = std::time::Instant::now();
    rest_send(&b.addr, &c.alice, &c.bob, b"via-b").await;
    expect_envelope(&mut bob, b"via-b").await;
    let latency = started.elapsed();
    assert!(latency < std::time::Duration::from_secs(2), "{latency:?}");
    println!("send on B -> delivery on A: {latency:?}");

    // An ephemeral signal from a socket on B reaches bob's socket on A through Redis.
    let mut alice = relay::connect(&b.addr, &c.alice.access).await;
    assert_eq!(
        relay::next(&mut alice, WAIT).await,
        relay::Frame::QueueEmpty
    );
    let bob_account = relay::hex16(&c.bob.account_id);
    let key = set_bob_key(&b.addr, &c.bob).await;
    relay::send_bin(
        &mut alice,
        relay::signal_frame(1, &bob_account, 1, &key, b"typing"),
    )
    .await;
    match relay::next(&mut alice, WAIT).await {
        relay::Frame::Result { body, .. } => assert_eq!(body["outcome"], "accepted"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        relay::next(&mut bob, WAIT).await,
        relay::Frame::Ephemeral { content, .. } if content == b"typing"
    ));

    // Bob opening a socket on B closes the one on A (4000).
    let mut bob_b = relay::connect(&b.addr, &c.bob.access).await;
    // The unacked envelope is delivered again on the new socket.
    expect_envelope(&mut bob_b, b"via-b").await;
    assert_eq!(
        relay::next(&mut bob_b, WAIT).await,
        relay::Frame::QueueEmpty
    );
    assert_eq!(
        relay::next(&mut bob, WAIT).await,
        relay::Frame::Close(Some(4000))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_hint_is_covered_by_the_database_poll() {
    let Some(c) = cluster().await else { return };
    // A polls every second; C has no Redis, so its sends never produce a hint on A.
    let a = c.spawn(true, "1");
    let cc = c.spawn(false, "1");
    let mut bob = relay::connect(&a.addr, &c.bob.access).await;
    assert_eq!(relay::next(&mut bob, WAIT).await, relay::Frame::QueueEmpty);
    let started = std::time::Instant::now();
    rest_send(&cc.addr, &c.alice, &c.bob, b"hint-lost").await;
    expect_envelope(&mut bob, b"hint-lost").await;
    let latency = started.elapsed();
    assert!(latency < std::time::Duration::from_secs(4), "{latency:?}");
    println!("send without hint -> delivery by poll: {latency:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_ephemeral_and_revocations_reach_sockets_on_another_instance() {
    let Some(c) = cluster().await else { return };
    // Polls are hourly: anything prompt below travelled through Redis.
    let a = c.spawn(true, "3600");
    let b = c.spawn(true, "3600");
    let mut bob = relay::connect(&a.addr, &c.bob.access).await;
    assert_eq!(relay::next(&mut bob, WAIT).await, relay::Frame::QueueEmpty);
    // An ephemeral REST send on B: bob has no socket on B, so it is relayed to A.
    let key = set_bob_key(&b.addr, &c.bob).await;
    let (status, body) = relay::http(
        &b.addr,
        "POST",
        &format!("/v1/messages/{}", c.bob.account_id),
        Some(&c.alice.access),
        Some(&json!({
            "message_id": haven_relay::ids::Id::random().to_hex(),
            "ephemeral": true,
            "access_key": relay::b64(&key),
            "envelopes": [{"device_number": 1, "content": relay::b64(b"typing")}],
        })),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["devices"][0]["status"], "accepted", "{body}");
    assert!(matches!(
        relay::next(&mut bob, WAIT).await,
        relay::Frame::Ephemeral { content, .. } if content == b"typing"
    ));
    // Logging out on B closes bob's socket on A at once (4001).
    let started = std::time::Instant::now();
    let (status, body) =
        relay::http(&b.addr, "POST", "/v1/logout", Some(&c.bob.access), None).await;
    assert_eq!(status, 204, "{body}");
    assert_eq!(
        relay::next(&mut bob, WAIT).await,
        relay::Frame::Close(Some(4001))
    );
    let latency = started.elapsed();
    assert!(latency < std::time::Duration::from_secs(3), "{latency:?}");
    println!("logout on B -> socket on A closed: {latency:?}");
}

/// One client of the SIGKILL test: sends to `to` over a socket through the balancer, acks what
/// it receives, and reconnects through the balancer when its socket is lost. Returns the
/// message ids it sent, those the relay acknowledged to it, those delivered to it, and its
/// reconnections.
async fn cluster_client(
    proxy: String,
    token: String,
    to: [u8; 16],
    stop_sending: tokio::sync::watch::Receiver<bool>,
    stop: tokio::sync::watch::Receiver<bool>,
    acked_total: std::sync::Arc<std::sync::atomic::AtomicUsize>,
) -> (
    Vec<[u8; 16]>,
    Vec<[u8; 16]>,
    std::collections::HashSet<[u8; 16]>,
    usize,
) {
    use futures_util::{SinkExt as _, StreamExt as _};
    use tokio_tungstenite::tungstenite::Message;
    let mut ws = relay::connect(&proxy, &token).await;
    let (mut sent, mut acked, mut received, mut reconnects) =
        (Vec::new(), Vec::new(), std::collections::HashSet::new(), 0);
    let mut pending = std::collections::HashMap::new();
    let mut request_id = 0u32;
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(4));
    while !*stop.borrow() {
        let lost = tokio::select! {
            _ = tick.tick() => {
                if *stop_sending.borrow() {
                    false
                } else {
                    request_id += 1;
                    let id = *haven_relay::ids::Id::random().as_bytes();
                    pending.insert(request_id, id);
                    sent.push(id);
                    let frame = relay::send_frame(request_id, &to, &id, false, &[(1, &id[..])]);
                    ws.send(Message::Binary(frame.into())).await.is_err()
                }
            }
            msg = ws.next() => match msg {
                Some(Ok(Message::Binary(b))) => {
                    match relay::parse(&b) {
                        relay::Frame::Envelope { message_id, content, .. } => {
                            assert_eq!(content, message_id, "an envelope's content is its id");
                            received.insert(message_id);
                            ws.send(Message::Binary(relay::ack_frame(&[message_id]).into()))
                                .await
                                .is_err()
                        }
                        relay::Frame::Result { request_id, status, .. } => {
                            let id = pending.remove(&request_id);
                            if status == 200 {
                                acked.extend(id);
                                acked_total.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            }
                            false
                        }
                        _ => false,
                    }
                }
                Some(Ok(_)) => false,
                Some(Err(_)) | None => true,
            },
        };
        if lost {
            // Sends without a result are in doubt: neither counted as acknowledged nor lost.
            pending.clear();
            reconnects += 1;
            let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
            ws = loop {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                if let Ok(ws) = relay::try_connect(&proxy, Some(&token), None, None).await {
                    break ws;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "no reconnection through the balancer"
                );
            };
        }
    }
    (sent, acked, received, reconnects)
}

/// Three relays on one Postgres and Redis behind HAProxy; one is killed with SIGKILL in the
/// middle of a burst of sends over the sockets. Its clients reconnect through the balancer, the
/// other relays go on serving, and every envelope the relays acknowledged to a sender is
/// delivered to its recipient.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_behind_haproxy_lose_no_acknowledged_envelope_to_a_sigkill() {
    use std::sync::atomic::Ordering;
    const CLIENTS: usize = 9;
    let Some(c) = cluster().await else { return };
    let key = haven_relay::secrets::Key32::from_bytes(common::TEST_JWT_KEY);
    let store = haven_relay::db::PgStore::connect(&c.url).await.unwrap();
    let mut devices = Vec::new();
    for _ in 0..CLIENTS {
        let session =
            haven_relay::accounts::seed::seed_session(&store, haven_relay::clock::now_i64(), 3600)
                .await
                .unwrap();
        let token = haven_relay::accounts::tokens::sign_access(
            &key,
            &session,
            haven_relay::clock::now_secs(),
            3600,
        )
        .unwrap();
        devices.push((*session.account.as_bytes(), token));
    }
    store.close().await;
    // Polls are hourly: deliveries across instances travel as Redis hints.
    let relays: Vec<relay::Relay> = (0..3).map(|_| c.spawn(true, "3600")).collect();
    let backends: Vec<std::net::SocketAddr> = relays.iter().map(|r| r.process.addr()).collect();
    let Some(proxy) =
        tokio::task::block_in_place(|| haven_testkit::ReverseProxy::balancer(&backends))
    else {
        return;
    };
    let proxy = proxy.addr().to_string();
    let (stop_sending_tx, stop_sending) = tokio::sync::watch::channel(false);
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let acked_total = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| {
            tokio::spawn(cluster_client(
                proxy.clone(),
                devices[i].1.clone(),
                devices[(i + 1) % CLIENTS].0,
                stop_sending.clone(),
                stop.clone(),
                acked_total.clone(),
            ))
        })
        .collect();
    // Let the burst build up, then kill one relay in the middle of it.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    while acked_total.load(Ordering::Relaxed) < 600 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "too few sends acknowledged"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    relays[0].process.sigkill();
    let at_kill = acked_total.load(Ordering::Relaxed);
    // The survivors go on acknowledging sends, from the reconnected clients too.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    while acked_total.load(Ordering::Relaxed) < at_kill + 600 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "sends stopped after the kill"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    stop_sending_tx.send(true).unwrap();
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    stop_tx.send(true).unwrap();
    let (mut sent, mut acked, mut received, mut reconnects) = (
        std::collections::HashSet::new(),
        Vec::new(),
        std::collections::HashSet::new(),
        0,
    );
    for client in clients {
        let (s, a, r, n) = client.await.unwrap();
        sent.extend(s);
        acked.extend(a);
        received.extend(r);
        reconnects += n;
    }
    // Whatever is still queued is read to the end (`queue_empty`) on a fresh socket.
    for (_, token) in &devices {
        let mut ws = relay::connect(&proxy, token).await;
        loop {
            match relay::next(&mut ws, WAIT).await {
                relay::Frame::Envelope { message_id, .. } => {
                    received.insert(message_id);
                    relay::send_bin(&mut ws, relay::ack_frame(&[message_id])).await;
                }
                relay::Frame::QueueEmpty => break,
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    let lost: Vec<_> = acked.iter().filter(|id| !received.contains(*id)).collect();
    println!(
        "acknowledged {} ({at_kill} before the kill), delivered {}, reconnections {reconnects}, lost {}",
        acked.len(),
        received.len(),
        lost.len()
    );
    assert!(reconnects >= 1, "no client was on the killed relay");
    assert!(
        lost.is_empty(),
        "{} acknowledged envelopes lost",
        lost.len()
    );
    // Nothing delivered that nobody sent (sends in doubt may or may not have arrived).
    assert!(
        received.is_subset(&sent),
        "the relays delivered envelopes nobody sent"
    );
}
