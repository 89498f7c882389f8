//! The WebSocket (PROTOCOL.md §11.14) and channels (§11.15) against a real `haven-relay`
//! process on SQLite, with real WebSocket clients (tokio-tungstenite).
//!
//! Accounts are registered in-process (real OPAQUE) on the same SQLite file the process serves.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common;
use crate::common::Api as _;
use crate::ws_client as relay;

use std::time::{Duration, Instant};

use crate::common::{Guard, Harness, TEST_JWT_KEY, Tokens};
use base64::Engine as _;
use haven_protocol::franking::Destination;
use haven_protocol::franking::verify::{StampKey, delivery_stamp};
use haven_relay::db::SqliteStore;
use haven_relay::ids::Id;
use haven_relay::mail::store::MailboxStore as _;
use relay::{Frame, Relay, Ws, b64, hex16, http, http_with, next, send_bin};
use serde_json::{Value, json};

const PASSWORD: &str = "correct horse battery staple";
const T: Duration = Duration::from_secs(10);
/// The relay's delivery-stamp key in the channel test (`HAVEN_MODERATION_STAMP_KEY`).
const STAMP_KEY: [u8; 32] = [0x5C; 32];

struct Env {
    relay: Relay,
    h: Harness<SqliteStore>,
    alice: Tokens,
    bob: Tokens,
}

async fn setup(extra: &[(&str, &str)]) -> Env {
    let (store, guard) = common::sqlite_store().await.unwrap();
    let Guard::Dir(dir) = &guard else {
        unreachable!()
    };
    let url = format!("sqlite://{}", dir.path().join("haven.db").display());
    let h = Harness::with_settings(store, guard, common::test_settings()).await;
    let alice = h.register(None, PASSWORD).await;
    let bob = h.register(None, PASSWORD).await;
    let jwt = base64::engine::general_purpose::STANDARD.encode(TEST_JWT_KEY);
    let mut env = vec![
        ("HAVEN_DATABASE_URL", url.as_str()),
        ("HAVEN_JWT_SECRET", jwt.as_str()),
    ];
    env.extend_from_slice(extra);
    let relay = tokio::task::block_in_place(|| Relay::spawn(&env));
    Env {
        relay,
        h,
        alice,
        bob,
    }
}

fn account(t: &Tokens) -> [u8; 16] {
    hex16(&t.account_id)
}

/// REST send of one envelope to the single device (number 1) of `to`.
async fn rest_send(env: &Env, from: &Tokens, to: &Tokens, content: &[u8]) -> [u8; 16] {
    let id = *Id::random().as_bytes();
    let (status, body) = http(
        &env.relay.addr,
        "POST",
        &format!("/v1/messages/{}", to.account_id),
        Some(&from.access),
        Some(&json!({
            "message_id": hex::encode(id),
            "envelopes": [{"device_number": 1, "content": b64(content)}],
        })),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    id
}

async fn queued(env: &Env, t: &Tokens) -> usize {
    let account = Id::from(account(t));
    env.h
        .store
        .fetch_envelopes(&account, 1, 0, 1000, haven_relay::clock::now_i64())
        .await
        .unwrap()
        .len()
}

async fn expect_envelope(ws: &mut Ws, content: &[u8]) -> ([u8; 16], u64) {
    match next(ws, T).await {
        Frame::Envelope {
            message_id,
            content: got,
            seq,
            ..
        } => {
            assert_eq!(got, content);
            (message_id, seq)
        }
        other => panic!("expected envelope {content:?}, got {other:?}"),
    }
}

/// A queue longer than one read (`mail.max_fetch`, 100 by default) is delivered whole before
/// `queue_empty`. The socket used to read batches of 128 through reads capped at 100, took the
/// short read for the end of the queue, said `queue_empty` after 100 envelopes and left the
/// rest until the next wake-up or poll.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_longer_than_one_read_is_delivered_whole_before_queue_empty() {
    let env = setup(&[("HAVEN_WS_POLL_INTERVAL_SECS", "3600")]).await;
    let mut sent = Vec::new();
    for i in 0..150u8 {
        sent.push(rest_send(&env, &env.alice, &env.bob, &[b'q', i]).await);
    }
    let mut bob = relay::connect(&env.relay.addr, &env.bob.access).await;
    let mut got = Vec::new();
    loop {
        match next(&mut bob, T).await {
            Frame::Envelope { message_id, .. } => {
                got.push(message_id);
                send_bin(&mut bob, relay::ack_frame(&[message_id])).await;
            }
            Frame::QueueEmpty => break,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(got.len(), sent.len(), "envelopes before queue_empty");
    assert_eq!(got, sent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_then_queue_empty_then_live_in_order_and_acks_delete() {
    let env = setup(&[]).await;
    let sent: Vec<[u8; 16]> = {
        let mut ids = Vec::new();
        for i in 0..3u8 {
            ids.push(rest_send(&env, &env.alice, &env.bob, &[b'q', i]).await);
        }
        ids
    };
    let mut bob = relay::connect(&env.relay.addr, &env.bob.access).await;
    let mut last = 0;
    let mut got = Vec::new();
    for i in 0..3u8 {
        match next(&mut bob, T).await {
            Frame::Envelope {
                seq,
                message_id,
                source,
                content,
            } => {
                assert!(seq > last, "sequence numbers increase");
                last = seq;
                assert_eq!(content, [b'q', i]);
                assert_eq!(source, Some((account(&env.alice), 1)));
                got.push(message_id);
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(got, sent);
    assert_eq!(next(&mut bob, T).await, Frame::QueueEmpty);

    // Live: a send over alice's socket reaches bob's socket at once.
    let mut alice = relay::connect(&env.relay.addr, &env.alice.access).await;
    assert_eq!(next(&mut alice, T).await, Frame::QueueEmpty);
    let live_id = *Id::random().as_bytes();
    let started = Instant::now();
    send_bin(
        &mut alice,
        relay::send_frame(7, &account(&env.bob), &live_id, false, &[(1, b"live")]),
    )
    .await;
    match next(&mut alice, T).await {
        Frame::Result {
            request_id: 7,
            status: 200,
            body,
        } => assert_eq!(body["devices"][0]["status"], "queued", "{body}"),
        other => panic!("{other:?}"),
    }
    let (id, seq) = expect_envelope(&mut bob, b"live").await;
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(id, live_id);
    assert!(seq > last);
    // A send the relay refuses (no envelope for bob's device) gets an error result, not a frame.
    send_bin(
        &mut alice,
        relay::send_frame(8, &account(&env.bob), &live_id, false, &[(9, b"x")]),
    )
    .await;
    match next(&mut alice, T).await {
        Frame::Result {
            request_id: 8,
            status,
            body,
        } => {
            assert!(status == 409 || status == 410, "{status} {body}");
            assert!(body["error"]["code"].is_string());
        }
        other => panic!("{other:?}"),
    }

    assert_eq!(queued(&env, &env.bob).await, 4);
    got.push(id);
    send_bin(&mut bob, relay::ack_frame(&got)).await;
    let deadline = Instant::now() + T;
    while queued(&env, &env.bob).await != 0 {
        assert!(Instant::now() < deadline, "acks did not delete");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unacked_mail_is_redelivered_after_reconnect() {
    let env = setup(&[]).await;
    rest_send(&env, &env.alice, &env.bob, b"one").await;
    rest_send(&env, &env.alice, &env.bob, b"two").await;
    let mut bob = relay::connect(&env.relay.addr, &env.bob.access).await;
    let (first, _) = expect_envelope(&mut bob, b"one").await;
    expect_envelope(&mut bob, b"two").await;
    assert_eq!(next(&mut bob, T).await, Frame::QueueEmpty);
    send_bin(&mut bob, relay::ack_frame(&[first])).await;
    // Wait for the ack to be applied, then drop the socket without acking "two".
    let deadline = Instant::now() + T;
    while queued(&env, &env.bob).await != 1 {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(bob);
    let mut bob = relay::connect(&env.relay.addr, &env.bob.access).await;
    expect_envelope(&mut bob, b"two").await;
    assert_eq!(next(&mut bob, T).await, Frame::QueueEmpty);
    relay::silent(&mut bob, Duration::from_millis(300)).await;
}

/// The `outcome` of a signal's result frame (panics on anything else).
async fn signal_result(ws: &mut Ws, request_id: u32) -> (u16, Value) {
    match next(ws, T).await {
        Frame::Result {
            request_id: id,
            status,
            body,
        } if id == request_id => (status, body),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ephemeral_signals_are_delivered_live_and_dropped_offline() {
    let env = setup(&[]).await;
    let key = [4u8; 16];
    env.h
        .put_as(
            "/v1/account/access-key",
            json!({"access_key": b64(&key)}),
            &env.bob,
        )
        .await
        .expect(axum::http::StatusCode::NO_CONTENT);
    let mut alice = relay::connect(&env.relay.addr, &env.alice.access).await;
    assert_eq!(next(&mut alice, T).await, Frame::QueueEmpty);
    send_bin(
        &mut alice,
        relay::signal_frame(1, &account(&env.bob), 1, &key, b"typing"),
    )
    .await;
    let offline = signal_result(&mut alice, 1).await;
    assert_eq!(offline, (200, json!({"outcome": "accepted"})));
    let mut bob = relay::connect(&env.relay.addr, &env.bob.access).await;
    assert_eq!(next(&mut bob, T).await, Frame::QueueEmpty);
    // The dropped signal was never stored: bob gets nothing.
    relay::silent(&mut bob, Duration::from_millis(200)).await;
    send_bin(
        &mut alice,
        relay::signal_frame(2, &account(&env.bob), 1, &key, b"typing"),
    )
    .await;
    // Online: the same answer as offline.
    assert_eq!(signal_result(&mut alice, 2).await, offline);
    assert_eq!(
        next(&mut bob, T).await,
        Frame::Ephemeral {
            source: Some((account(&env.alice), 1)),
            content: b"typing".to_vec()
        }
    );
    // The ephemeral class of the messaging API reaches the socket too.
    let (status, body) = http(
        &env.relay.addr,
        "POST",
        &format!("/v1/messages/{}", env.bob.account_id),
        Some(&env.alice.access),
        Some(&json!({
            "message_id": Id::random().to_hex(),
            "envelopes": [{"device_number": 1, "content": b64(b"read-receipt")}],
            "ephemeral": true,
            "access_key": b64(&key),
        })),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["devices"][0]["status"], "accepted");
    assert!(
        matches!(next(&mut bob, T).await, Frame::Ephemeral { content, .. } if content == b"read-receipt")
    );
    // Oversize signal: an error result, nothing delivered.
    send_bin(
        &mut alice,
        relay::signal_frame(3, &account(&env.bob), 1, &key, &[0u8; 5000]),
    )
    .await;
    assert_eq!(signal_result(&mut alice, 3).await.0, 413);
    relay::silent(&mut bob, Duration::from_millis(200)).await;
    assert_eq!(queued(&env, &env.bob).await, 0, "ephemeral is never stored");
}

/// Without bob's access key a logged-in stranger can neither signal bob nor send him an
/// ephemeral frame: 401, nothing reaches bob's socket, and the answer is the same whether
/// bob is online or not. A send frame's 409 names no device without the key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strangers_cannot_probe_presence_or_devices_over_the_socket() {
    let env = setup(&[]).await;
    let key = [4u8; 16];
    env.h
        .put_as(
            "/v1/account/access-key",
            json!({"access_key": b64(&key)}),
            &env.bob,
        )
        .await
        .expect(axum::http::StatusCode::NO_CONTENT);
    let mut alice = relay::connect(&env.relay.addr, &env.alice.access).await;
    assert_eq!(next(&mut alice, T).await, Frame::QueueEmpty);
    let probe = |request_id, key: [u8; 16]| {
        relay::signal_frame(request_id, &account(&env.bob), 1, &key, b"?")
    };
    send_bin(&mut alice, probe(1, [0; 16])).await;
    let offline = signal_result(&mut alice, 1).await;
    assert_eq!(offline.0, 401, "{offline:?}");
    assert_eq!(offline.1["error"]["code"], "invalid_access_key");
    let mut bob = relay::connect(&env.relay.addr, &env.bob.access).await;
    assert_eq!(next(&mut bob, T).await, Frame::QueueEmpty);
    send_bin(&mut alice, probe(2, [0; 16])).await;
    assert_eq!(signal_result(&mut alice, 2).await, offline);
    // An ephemeral send frame without the key.
    send_bin(
        &mut alice,
        relay::send_frame(3, &account(&env.bob), &[3; 16], true, &[(1, b"typing")]),
    )
    .await;
    let r = signal_result(&mut alice, 3).await;
    assert_eq!(
        (r.0, &r.1["error"]["code"]),
        (401, &json!("missing_access_key"))
    );
    relay::silent(&mut bob, Duration::from_millis(200)).await;
    // A stored send with a wrong device list: 409 naming nothing; with the key, the details.
    send_bin(
        &mut alice,
        relay::send_frame(4, &account(&env.bob), &[4; 16], false, &[(9, b"x")]),
    )
    .await;
    let r = signal_result(&mut alice, 4).await;
    assert_eq!(r.0, 409, "{r:?}");
    assert_eq!(r.1["error"]["mismatches"], json!([]));
    let with_key = haven_protocol::frames::ClientFrame::Send {
        request_id: 5,
        account: account(&env.bob),
        message_id: [5; 16],
        ephemeral: false,
        access_key: Some(key),
        envelopes: vec![haven_protocol::frames::SendEnvelope {
            device: 9,
            content: b"x",
            commitment: None,
        }],
    };
    send_bin(&mut alice, with_key.encode().unwrap()).await;
    let r = signal_result(&mut alice, 5).await;
    assert_eq!(r.0, 409, "{r:?}");
    assert_eq!(r.1["error"]["mismatches"][0]["missing_devices"], json!([1]));
    assert_eq!(r.1["error"]["mismatches"][0]["extra_devices"], json!([9]));
    // With the key the signal goes through.
    send_bin(&mut alice, probe(6, key)).await;
    assert_eq!(signal_result(&mut alice, 6).await.0, 200);
    assert!(matches!(next(&mut bob, T).await, Frame::Ephemeral { .. }));
    assert_eq!(queued(&env, &env.bob).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tickets_origins_and_tokens() {
    let env = setup(&[("HAVEN_WS_ALLOWED_ORIGINS", "https://app.example")]).await;
    let addr = env.relay.addr.clone();
    let ticket = || async {
        let (status, body) =
            http(&addr, "POST", "/v1/ws/ticket", Some(&env.bob.access), None).await;
        assert_eq!(status, 201, "{body}");
        assert_eq!(body["expires_in"], 30);
        body["ticket"].as_str().unwrap().to_owned()
    };
    let refused = |r: Result<Ws, (u16, Value)>, status: u16, code: &str| match r {
        Ok(_) => panic!("upgrade accepted, expected {status} {code}"),
        Err((s, body)) => {
            assert_eq!(s, status, "{body}");
            assert_eq!(body["error"]["code"], code, "{body}");
        }
    };
    refused(
        relay::try_connect(&addr, None, None, None).await,
        401,
        "missing_token",
    );
    refused(
        relay::try_connect(&addr, Some("not-a-jwt"), None, None).await,
        401,
        "invalid_token",
    );
    refused(
        relay::try_connect(&addr, None, Some("AAAA"), None).await,
        401,
        "invalid_ticket",
    );
    // A wrong origin is refused before the ticket is looked at, so the ticket stays valid.
    let t = ticket().await;
    refused(
        relay::try_connect(&addr, None, Some(&t), Some("https://evil.example")).await,
        403,
        "origin_not_allowed",
    );
    let mut ws = relay::try_connect(&addr, None, Some(&t), Some("https://app.example"))
        .await
        .unwrap();
    assert_eq!(next(&mut ws, T).await, Frame::QueueEmpty);
    // Single use.
    refused(
        relay::try_connect(&addr, None, Some(&t), Some("https://app.example")).await,
        401,
        "invalid_ticket",
    );
    // Native clients send no Origin.
    let mut native = relay::connect(&addr, &env.alice.access).await;
    assert_eq!(next(&mut native, T).await, Frame::QueueEmpty);
    // A logged-out session cannot open a socket, even with a ticket issued before.
    let t = ticket().await;
    let (status, _) = http(&addr, "POST", "/v1/logout", Some(&env.bob.access), None).await;
    assert_eq!(status, 204);
    refused(
        relay::try_connect(&addr, None, Some(&t), None).await,
        401,
        "session_revoked",
    );
    // Bob's open socket notices at its next poll... (poll interval is 30 s by default: not waited for)
    drop(ws);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_oversize_frames() {
    let env = setup(&[("HAVEN_WS_MAX_MESSAGE_BYTES", "4096")]).await;
    let mut bob = relay::connect(&env.relay.addr, &env.bob.access).await;
    assert_eq!(next(&mut bob, T).await, Frame::QueueEmpty);
    let expect_error = |f: Frame, code: &str| match f {
        Frame::Error(body) => assert_eq!(body["error"]["code"], code, "{body}"),
        other => panic!("expected error {code}, got {other:?}"),
    };
    send_bin(&mut bob, vec![1, 0x7f]).await;
    expect_error(next(&mut bob, T).await, "unknown_frame_type");
    send_bin(&mut bob, vec![2, 0x10, 0, 1]).await;
    expect_error(next(&mut bob, T).await, "unsupported_version");
    send_bin(&mut bob, vec![]).await;
    expect_error(next(&mut bob, T).await, "invalid_frame_length");
    send_bin(&mut bob, vec![1, 0x10, 0, 0]).await;
    expect_error(next(&mut bob, T).await, "invalid_count");
    bob.send_text("hello").await;
    expect_error(next(&mut bob, T).await, "text_not_supported");
    // A truncated send with a readable request id is answered as that request.
    let mut send = relay::send_frame(9, &account(&env.alice), &[1; 16], false, &[(1, b"abc")]);
    send.truncate(send.len() - 1);
    send_bin(&mut bob, send).await;
    assert!(matches!(
        next(&mut bob, T).await,
        Frame::Result {
            request_id: 9,
            status: 400,
            ..
        }
    ));
    // Nothing was stored by any of it, and the socket still works.
    assert_eq!(queued(&env, &env.alice).await, 0);
    send_bin(
        &mut bob,
        relay::subscribe_frame(4, Id::random().as_bytes(), &[0; 32], 0),
    )
    .await;
    assert!(matches!(
        next(&mut bob, T).await,
        Frame::Result {
            request_id: 4,
            status: 404,
            ..
        }
    ));
    // Oversize: close 1009.
    send_bin(&mut bob, vec![1; 10_000]).await;
    assert_eq!(next(&mut bob, T).await, Frame::Close(Some(1009)));
}

trait SendText {
    async fn send_text(&mut self, text: &str);
}

impl SendText for Ws {
    async fn send_text(&mut self, text: &str) {
        use futures_util::SinkExt as _;
        self.send(tokio_tungstenite::tungstenite::Message::Text(text.into()))
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_socket_replaces_the_first() {
    let env = setup(&[]).await;
    let mut first = relay::connect(&env.relay.addr, &env.bob.access).await;
    assert_eq!(next(&mut first, T).await, Frame::QueueEmpty);
    let mut second = relay::connect(&env.relay.addr, &env.bob.access).await;
    assert_eq!(next(&mut second, T).await, Frame::QueueEmpty);
    assert_eq!(next(&mut first, T).await, Frame::Close(Some(4000)));
    rest_send(&env, &env.alice, &env.bob, b"to-the-new-one").await;
    expect_envelope(&mut second, b"to-the-new-one").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_consumer_is_disconnected() {
    let env = setup(&[
        ("HAVEN_WS_SEND_TIMEOUT_SECS", "1"),
        ("HAVEN_WS_DELIVERY_WINDOW", "4096"),
    ])
    .await;
    let mut alice = relay::connect(&env.relay.addr, &env.alice.access).await;
    assert_eq!(next(&mut alice, T).await, Frame::QueueEmpty);
    let big = vec![0x5a; 256 * 1024];
    let total = 120u32;
    for i in 0..total {
        send_bin(
            &mut alice,
            relay::send_frame(
                i,
                &account(&env.bob),
                Id::random().as_bytes(),
                false,
                &[(1, &big)],
            ),
        )
        .await;
        assert!(matches!(
            next(&mut alice, T).await,
            Frame::Result { status: 200, .. }
        ));
    }
    // 30 MiB queued; bob connects and does not read.
    let mut bob = relay::connect(&env.relay.addr, &env.bob.access).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while !env.relay.stderr().contains("slow consumer") {
        assert!(Instant::now() < deadline, "{}", env.relay.stderr());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Reading now drains what was in flight, then the connection ends early.
    let mut received = 0;
    loop {
        match next(&mut bob, T).await {
            Frame::Envelope { .. } => received += 1,
            Frame::Close(_) => break,
            other => panic!("{other:?}"),
        }
    }
    assert!(received < total, "received {received} of {total}");
    // Nothing was lost: the rest is still queued.
    assert_eq!(queued(&env, &env.bob).await, total as usize);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_closes_every_socket_with_1001() {
    let mut env = setup(&[]).await;
    let mut alice = relay::connect(&env.relay.addr, &env.alice.access).await;
    let mut bob = relay::connect(&env.relay.addr, &env.bob.access).await;
    assert_eq!(next(&mut alice, T).await, Frame::QueueEmpty);
    assert_eq!(next(&mut bob, T).await, Frame::QueueEmpty);
    env.relay.sigterm();
    assert_eq!(next(&mut alice, T).await, Frame::Close(Some(1001)));
    assert_eq!(next(&mut bob, T).await, Frame::Close(Some(1001)));
    let ok = tokio::task::block_in_place(|| env.relay.wait_exit(Duration::from_secs(20)));
    assert!(ok, "{}", env.relay.stderr());
    assert!(env.relay.stderr().contains("relay stopped"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channels_history_tokens_and_live_entries() {
    let stamp_key = b64(&STAMP_KEY);
    let env = setup(&[("HAVEN_MODERATION_STAMP_KEY", stamp_key.as_str())]).await;
    let addr = env.relay.addr.clone();
    let (status, created) = http(
        &addr,
        "POST",
        "/v1/channels",
        Some(&env.bob.access),
        Some(&json!({})),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let channel = created["channel_id"].as_str().unwrap().to_owned();
    let read = created["read_token"].as_str().unwrap().to_owned();
    let write = created["write_token"].as_str().unwrap().to_owned();
    assert_eq!(read.len(), 43);
    let (status, _) = http(&addr, "POST", "/v1/channels", None, Some(&json!({}))).await;
    assert_eq!(status, 401, "creating needs a login");
    let append = |token: String, entry: Vec<u8>| {
        let addr = addr.clone();
        let path = format!("/v1/channels/{channel}/entries");
        async move {
            http(
                &addr,
                "POST",
                &path,
                Some(&token),
                Some(&json!({"entry": b64(&entry)})),
            )
            .await
        }
    };
    for i in 1..=5u8 {
        let (status, body) = append(write.clone(), vec![i; 3]).await;
        assert_eq!(status, 201, "{body}");
        assert_eq!(body["seq"], i64::from(i));
    }
    // The read token cannot write, the write token cannot read, a random token neither.
    let (status, body) = append(read.clone(), vec![9]).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("invalid_channel_token"))
    );
    let page = |after: u64, limit: u32, token: String| {
        let addr = addr.clone();
        let path = format!("/v1/channels/{channel}/entries?after={after}&limit={limit}");
        async move { http(&addr, "GET", &path, Some(&token), None).await }
    };
    let (status, _) = page(0, 2, write.clone()).await;
    assert_eq!(status, 401);
    let (status, body) = page(0, 2, read.clone()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["entries"].as_array().unwrap().len(), 2);
    assert_eq!(body["next_after"], 2);
    assert_eq!(body["more"], true);
    let (_, body) = page(4, 2, read.clone()).await;
    assert_eq!(body["entries"][0]["seq"], 5);
    assert_eq!(
        relay::unb64(body["entries"][0]["entry"].as_str().unwrap()),
        vec![5; 3]
    );
    assert_eq!(body["more"], false);
    let (status, body) = page(0, 0, read.clone()).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid_query"))
    );
    let (status, _) = http(
        &addr,
        "GET",
        &format!("/v1/channels/{}/entries", Id::random().to_hex()),
        Some(&read),
        None,
    )
    .await;
    assert_eq!(status, 404);

    // Live over the socket: subscribe after 3 → entries 4, 5, then a new one as it is appended.
    let mut bob = relay::connect(&addr, &env.bob.access).await;
    assert_eq!(next(&mut bob, T).await, Frame::QueueEmpty);
    let token: [u8; 32] = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(&read)
        .unwrap()
        .try_into()
        .unwrap();
    let mut wrong = token;
    wrong[0] ^= 1;
    send_bin(
        &mut bob,
        relay::subscribe_frame(1, &hex16(&channel), &wrong, 0),
    )
    .await;
    assert!(matches!(
        next(&mut bob, T).await,
        Frame::Result {
            request_id: 1,
            status: 401,
            ..
        }
    ));
    send_bin(
        &mut bob,
        relay::subscribe_frame(2, &hex16(&channel), &token, 3),
    )
    .await;
    match next(&mut bob, T).await {
        Frame::Result {
            request_id: 2,
            status: 200,
            body,
        } => assert_eq!(body["last_seq"], 5),
        other => panic!("{other:?}"),
    }
    for seq in [4u64, 5] {
        assert_eq!(
            next(&mut bob, T).await,
            Frame::ChannelEntry {
                channel: hex16(&channel),
                seq,
                entry: vec![seq as u8; 3],
                franking: None,
            }
        );
    }
    let (status, _) = append(write.clone(), b"live".to_vec()).await;
    assert_eq!(status, 201);
    assert_eq!(
        next(&mut bob, T).await,
        Frame::ChannelEntry {
            channel: hex16(&channel),
            seq: 6,
            entry: b"live".to_vec(),
            franking: None,
        }
    );

    // A franked entry (§16.3, §16.4): the commitment is stored with it and delivered with the
    // relay's stamp over the channel, seq and created_at, live (`0x07`) and over REST; a
    // malformed commitment is refused and stores nothing.
    let franked_append = |commitment: String| {
        let addr = addr.clone();
        let write = write.clone();
        let path = format!("/v1/channels/{channel}/entries");
        async move {
            http(
                &addr,
                "POST",
                &path,
                Some(&write),
                Some(&json!({"entry": b64(b"franked"), "franking_commitment": commitment})),
            )
            .await
        }
    };
    let (status, body) = franked_append(b64(&[7; 31])).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid_franking_commitment"))
    );
    let (status, body) = franked_append("not base64!".into()).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid_franking_commitment"))
    );
    let (status, body) = franked_append(b64(&[7; 32])).await;
    assert_eq!((status, body["seq"].as_i64()), (201, Some(7)), "{body}");
    let Frame::ChannelEntry {
        seq: 7,
        entry,
        franking: Some((commitment, stamp)),
        ..
    } = next(&mut bob, T).await
    else {
        panic!("not the franked entry")
    };
    assert_eq!((entry.as_slice(), commitment), (&b"franked"[..], [7; 32]));
    let (_, body) = page(6, 10, read.clone()).await;
    let entries = body["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "the refused appends stored nothing");
    assert_eq!(entries[0]["seq"], 7);
    let created_at = entries[0]["created_at"].as_u64().unwrap();
    assert_eq!(
        relay::unb64(entries[0]["franking"]["commitment"].as_str().unwrap()),
        vec![7; 32]
    );
    assert_eq!(
        relay::unb64(entries[0]["franking"]["stamp"].as_str().unwrap()),
        stamp.to_vec()
    );
    let expected = delivery_stamp(
        &StampKey::from_bytes(STAMP_KEY),
        &[7; 32],
        &Destination::Channel {
            channel_id: hex16(&channel),
        },
        7,
        created_at,
    );
    assert_eq!(stamp, expected);
    let (_, body) = page(4, 1, read.clone()).await;
    assert_eq!(body["entries"][0]["franking"], Value::Null);
}

/// Polls are hourly in these tests: a prompt close can only come from the revocation itself.
const NO_POLL: (&str, &str) = ("HAVEN_WS_POLL_INTERVAL_SECS", "3600");

async fn expect_session_closed(ws: &mut Ws, what: &str) {
    let started = Instant::now();
    assert_eq!(
        next(ws, T).await,
        Frame::Close(Some(4001)),
        "{what}: socket not closed with 4001"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{what}: closed only after {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_sessions_close_their_sockets_at_once() {
    let env = setup(&[NO_POLL]).await;
    // Unlinking a device closes that device's socket; the other device's socket stays.
    let bob2 = env.h.add_device(&env.bob, PASSWORD).await;
    let mut bob = relay::connect(&env.relay.addr, &env.bob.access).await;
    assert_eq!(next(&mut bob, T).await, Frame::QueueEmpty);
    let mut second = relay::connect(&env.relay.addr, &bob2.access).await;
    assert_eq!(next(&mut second, T).await, Frame::QueueEmpty);
    let proof = env.h.fresh_auth(&env.bob, PASSWORD).await;
    let (status, body) = http_with(
        &env.relay.addr,
        "DELETE",
        &format!("/v1/devices/{}", bob2.device_id),
        Some(&env.bob.access),
        &[("Haven-Fresh-Auth", &proof)],
        None,
    )
    .await;
    assert_eq!(status, 204, "{body}");
    expect_session_closed(&mut second, "device unlinked").await;
    relay::silent(&mut bob, Duration::from_millis(300)).await;

    // Logout.
    let (status, body) = http(
        &env.relay.addr,
        "POST",
        "/v1/logout",
        Some(&env.bob.access),
        None,
    )
    .await;
    assert_eq!(status, 204, "{body}");
    expect_session_closed(&mut bob, "logout").await;

    // Refresh-token reuse revokes the session, and its socket.
    let alice = env.h.login_existing(&env.alice, PASSWORD).await;
    let mut ws = relay::connect(&env.relay.addr, &alice.access).await;
    assert_eq!(next(&mut ws, T).await, Frame::QueueEmpty);
    let refresh = json!({"refresh_token": alice.refresh});
    let (status, body) = http(
        &env.relay.addr,
        "POST",
        "/v1/token/refresh",
        None,
        Some(&refresh),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    // A legitimate rotation keeps the socket.
    relay::silent(&mut ws, Duration::from_millis(300)).await;
    let (status, body) = http(
        &env.relay.addr,
        "POST",
        "/v1/token/refresh",
        None,
        Some(&refresh),
    )
    .await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"]["code"], "refresh_reused");
    expect_session_closed(&mut ws, "refresh token reused").await;

    // Account deletion.
    let bob = env.h.login_existing(&env.bob, PASSWORD).await;
    let mut ws = relay::connect(&env.relay.addr, &bob.access).await;
    assert_eq!(next(&mut ws, T).await, Frame::QueueEmpty);
    let proof = env.h.fresh_auth(&bob, PASSWORD).await;
    let (status, body) = http_with(
        &env.relay.addr,
        "DELETE",
        "/v1/account",
        Some(&bob.access),
        &[("Haven-Fresh-Auth", &proof)],
        None,
    )
    .await;
    assert_eq!(status, 204, "{body}");
    expect_session_closed(&mut ws, "account deleted").await;
}

fn unsubscribe_frame(request_id: u32) -> Vec<u8> {
    relay::unsubscribe_frame(request_id, Id::random().as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frame_rate_limit_is_a_setting() {
    let env = setup(&[("HAVEN_WS_MAX_FRAMES_PER_SEC", "5")]).await;
    let mut bob = relay::connect(&env.relay.addr, &env.bob.access).await;
    assert_eq!(next(&mut bob, T).await, Frame::QueueEmpty);
    // A burst of 30 frames: the first 5 of a second are served, the next ones refused with
    // `rate_limited`, and more than twice the limit in one second closes the socket (4003).
    for i in 0..30 {
        send_bin(&mut bob, unsubscribe_frame(i)).await;
    }
    let mut statuses = Vec::new();
    loop {
        match next(&mut bob, T).await {
            Frame::Result { status, body, .. } => {
                if status == 429 {
                    assert_eq!(body["error"]["code"], "rate_limited", "{body}");
                }
                statuses.push(status);
            }
            Frame::Close(code) => {
                assert_eq!(code, Some(4003));
                break;
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(statuses[..5], [200; 5]);
    assert!(statuses.contains(&429), "{statuses:?}");
    assert!(statuses.len() < 30, "{statuses:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_sends_are_all_answered_and_stored_in_order() {
    let env = setup(&[]).await;
    let mut alice = relay::connect(&env.relay.addr, &env.alice.access).await;
    assert_eq!(next(&mut alice, T).await, Frame::QueueEmpty);
    let mut bob = relay::connect(&env.relay.addr, &env.bob.access).await;
    assert_eq!(next(&mut bob, T).await, Frame::QueueEmpty);
    // 60 sends written back to back, without waiting for any answer.
    const N: u32 = 60;
    for i in 0..N {
        send_bin(
            &mut alice,
            relay::send_frame(
                i,
                &account(&env.bob),
                Id::random().as_bytes(),
                false,
                &[(1, &i.to_be_bytes())],
            ),
        )
        .await;
    }
    let mut answered = std::collections::BTreeMap::new();
    while answered.len() < N as usize {
        match next(&mut alice, T).await {
            Frame::Result {
                request_id,
                status: 200,
                body,
            } => {
                let seq = body["devices"][0]["seq"].as_i64().unwrap();
                assert!(answered.insert(request_id, seq).is_none());
            }
            other => panic!("{other:?}"),
        }
    }
    // Stored in the order the frames arrived: seq increases with the request id.
    let seqs: Vec<i64> = answered.values().copied().collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    let mut ids = Vec::new();
    for i in 0..N {
        let (id, _) = expect_envelope(&mut bob, &i.to_be_bytes()).await;
        ids.push(id);
    }
    send_bin(&mut bob, relay::ack_frame(&ids)).await;
    let deadline = Instant::now() + T;
    while queued(&env, &env.bob).await != 0 {
        assert!(Instant::now() < deadline, "acks did not delete");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// With the smallest read buffer (`ws.read_buffer_bytes`, which keeps idle sockets cheap), a
/// frame many times its size is still read whole, delivered whole, and the socket goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_larger_than_the_read_buffer_are_read_whole() {
    let env = setup(&[("HAVEN_WS_READ_BUFFER_BYTES", "256")]).await;
    let mut alice = relay::connect(&env.relay.addr, &env.alice.access).await;
    assert_eq!(next(&mut alice, T).await, Frame::QueueEmpty);
    let mut bob = relay::connect(&env.relay.addr, &env.bob.access).await;
    assert_eq!(next(&mut bob, T).await, Frame::QueueEmpty);
    let big: Vec<u8> = (0..40_000u32).map(|i| (i % 251) as u8).collect();
    for (request_id, content) in [(1, big.as_slice()), (2, b"small after big".as_slice())] {
        send_bin(
            &mut alice,
            relay::send_frame(
                request_id,
                &account(&env.bob),
                Id::random().as_bytes(),
                false,
                &[(1, content)],
            ),
        )
        .await;
        match next(&mut alice, T).await {
            Frame::Result {
                request_id: got,
                status: 200,
                ..
            } => assert_eq!(got, request_id),
            other => panic!("{other:?}"),
        }
        expect_envelope(&mut bob, content).await;
    }
}

/// Envelopes stored while the recipient's socket is live are handed to it directly, or read
/// from its queue when it cannot take them (delivery window full, a gap before them): with
/// both happening at once, every envelope still arrives exactly once and in sequence order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_sends_reach_a_live_socket_once_each_in_order() {
    let env = setup(&[("HAVEN_WS_DELIVERY_WINDOW", "4")]).await;
    let mut alice = relay::connect(&env.relay.addr, &env.alice.access).await;
    assert_eq!(next(&mut alice, T).await, Frame::QueueEmpty);
    let mut bob = relay::connect(&env.relay.addr, &env.bob.access).await;
    assert_eq!(next(&mut bob, T).await, Frame::QueueEmpty);
    const N: u32 = 40;
    // Pipelined socket sends, then REST sends while Bob reads and acks in small steps.
    for i in 0..N {
        let content = format!("ws-{i}");
        send_bin(
            &mut alice,
            relay::send_frame(
                i,
                &account(&env.bob),
                Id::random().as_bytes(),
                false,
                &[(1, content.as_bytes())],
            ),
        )
        .await;
    }
    let rest = async {
        for i in 0..N {
            rest_send(&env, &env.alice, &env.bob, format!("rest-{i}").as_bytes()).await;
        }
    };
    let receive = async {
        let mut got = Vec::new();
        let mut unacked = Vec::new();
        while got.len() < 2 * N as usize {
            match next(&mut bob, T).await {
                Frame::Envelope {
                    message_id,
                    content,
                    seq,
                    ..
                } => {
                    got.push((seq, String::from_utf8(content).unwrap(), message_id));
                    unacked.push(message_id);
                    if unacked.len() == 3 {
                        send_bin(&mut bob, relay::ack_frame(&unacked)).await;
                        unacked.clear();
                    }
                }
                other => panic!("{other:?}"),
            }
        }
        send_bin(&mut bob, relay::ack_frame(&unacked)).await;
        got
    };
    let ((), got) = tokio::join!(rest, receive);
    let seqs: Vec<u64> = got.iter().map(|(seq, _, _)| *seq).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    let ids: std::collections::HashSet<_> = got.iter().map(|(_, _, id)| *id).collect();
    assert_eq!(ids.len(), got.len(), "an envelope arrived twice");
    // The WebSocket sends were stored in frame order, so they arrive in that order too.
    let ws_order: Vec<u32> = got
        .iter()
        .filter_map(|(_, c, _)| c.strip_prefix("ws-").map(|n| n.parse().unwrap()))
        .collect();
    assert_eq!(ws_order, (0..N).collect::<Vec<_>>());
    let contents: std::collections::BTreeSet<String> = got.into_iter().map(|(_, c, _)| c).collect();
    let expected: std::collections::BTreeSet<String> = (0..N)
        .flat_map(|i| [format!("ws-{i}"), format!("rest-{i}")])
        .collect();
    assert_eq!(contents, expected);
    let deadline = Instant::now() + T;
    while queued(&env, &env.bob).await != 0 {
        assert!(Instant::now() < deadline, "acks did not delete");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Nothing more arrives.
    assert!(
        tokio::time::timeout(Duration::from_millis(300), next(&mut bob, T))
            .await
            .is_err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resend_after_the_ack_is_not_delivered_again() {
    let env = setup(&[]).await;
    let mut bob = relay::connect(&env.relay.addr, &env.bob.access).await;
    assert_eq!(next(&mut bob, T).await, Frame::QueueEmpty);
    let id = Id::random().to_hex();
    let body = |content: &[u8]| {
        json!({
            "message_id": id,
            "envelopes": [{"device_number": 1, "content": b64(content)}],
        })
    };
    let path = format!("/v1/messages/{}", env.bob.account_id);
    let (status, first) = http(
        &env.relay.addr,
        "POST",
        &path,
        Some(&env.alice.access),
        Some(&body(b"once")),
    )
    .await;
    assert_eq!(status, 200, "{first}");
    let (got, _) = expect_envelope(&mut bob, b"once").await;
    send_bin(&mut bob, relay::ack_frame(&[got])).await;
    let deadline = Instant::now() + T;
    while queued(&env, &env.bob).await != 0 {
        assert!(Instant::now() < deadline, "ack did not delete");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The sender retries (it never saw the answer): a duplicate, not a second delivery.
    let (status, again) = http(
        &env.relay.addr,
        "POST",
        &path,
        Some(&env.alice.access),
        Some(&body(b"once")),
    )
    .await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["devices"][0]["duplicate"], true);
    assert_eq!(again["devices"][0]["seq"], first["devices"][0]["seq"]);
    relay::silent(&mut bob, Duration::from_millis(500)).await;
    assert_eq!(queued(&env, &env.bob).await, 0);
    // Other bytes under the same id: refused, nothing stored.
    let (status, conflict) = http(
        &env.relay.addr,
        "POST",
        &path,
        Some(&env.alice.access),
        Some(&body(b"twice")),
    )
    .await;
    assert_eq!(status, 409, "{conflict}");
    assert_eq!(conflict["error"]["code"], "message_id_conflict");
    assert_eq!(queued(&env, &env.bob).await, 0);
}

/// PROTOCOL.md §11.14, §16.4: a franked send frame's commitments are stored, and the envelope
/// frame (live, and read back from the queue) carries the commitment and the relay's stamp for
/// the receiving device; a send frame that is both ephemeral and franked is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn franked_send_frames_are_delivered_with_the_relays_stamp() {
    use futures_util::StreamExt as _;
    use haven_protocol::frames::{ClientFrame, SendEnvelope, ServerFrame};
    use haven_protocol::franking::Destination;
    use haven_protocol::franking::verify::delivery_stamp;
    use tokio_tungstenite::tungstenite::Message;

    async fn raw_envelope(ws: &mut Ws) -> (u64, u64, Vec<u8>, Option<([u8; 32], [u8; 32])>) {
        loop {
            let msg = tokio::time::timeout(T, ws.next()).await.unwrap();
            if let Some(Ok(Message::Binary(b))) = msg
                && let Ok(ServerFrame::Envelope(e)) = ServerFrame::decode(&b)
            {
                return (
                    e.seq,
                    e.received_at,
                    e.content.to_vec(),
                    e.franking.map(|f| (f.commitment, f.stamp)),
                );
            }
        }
    }

    let env = setup(&[]).await;
    let mut alice = relay::connect(&env.relay.addr, &env.alice.access).await;
    assert_eq!(next(&mut alice, T).await, Frame::QueueEmpty);
    let mut bob = relay::connect(&env.relay.addr, &env.bob.access).await;
    assert_eq!(next(&mut bob, T).await, Frame::QueueEmpty);
    let commitment = [0x6c; 32];
    let frame = |request_id, ephemeral| ClientFrame::Send {
        request_id,
        account: account(&env.bob),
        message_id: *Id::random().as_bytes(),
        ephemeral,
        access_key: None,
        envelopes: vec![SendEnvelope {
            device: 1,
            content: b"franked",
            commitment: Some(commitment),
        }],
    };
    send_bin(&mut alice, frame(1, false).encode().unwrap()).await;
    match next(&mut alice, T).await {
        Frame::Result {
            request_id: 1,
            status: 200,
            ..
        } => {}
        other => panic!("{other:?}"),
    }
    let (seq, received_at, content, franking) = raw_envelope(&mut bob).await;
    assert_eq!(content, b"franked");
    let expected = delivery_stamp(
        &env.h.state.secrets().franking_stamp,
        &commitment,
        &Destination::Device {
            account: account(&env.bob),
            device: 1,
        },
        seq,
        received_at,
    );
    assert_eq!(franking, Some((commitment, expected)));
    // Read back from the queue by a new socket: the same stamp.
    drop(bob);
    let mut again = relay::connect(&env.relay.addr, &env.bob.access).await;
    let (seq2, _, _, franking2) = raw_envelope(&mut again).await;
    assert_eq!(seq2, seq);
    assert_eq!(franking2, Some((commitment, expected)));

    // Ephemeral and franked (flags 0x03), forged on the wire: refused, nothing queued.
    let mut forged = frame(2, false).encode().unwrap();
    forged[2 + 4 + 16 + 16] = 0x03;
    send_bin(&mut alice, forged).await;
    match next(&mut alice, T).await {
        Frame::Result {
            status: 400, body, ..
        }
        | Frame::Error(body) => {
            assert_eq!(body["error"]["code"], "invalid_flags", "{body}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(queued(&env, &env.bob).await, 1);
}

/// A suspended account's WebSocket sends are refused (403 `account_suspended` in the result
/// frame) once the relay process has reloaded its sanction list (`cache_secs`); nothing is
/// queued.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suspended_account_cannot_send_over_the_websocket() {
    use axum::http::{Method, StatusCode};
    let env = setup(&[("HAVEN_MODERATION_CACHE_SECS", "1")]).await;
    let mut alice = relay::connect(&env.relay.addr, &env.alice.access).await;
    assert_eq!(next(&mut alice, T).await, Frame::QueueEmpty);
    let admin = haven_relay::admin::keys::create_key(
        &env.h.store,
        "moderator",
        None,
        haven_relay::clock::now_i64(),
    )
    .await
    .unwrap()
    .secret
    .encode()
    .to_string();
    env.h
        .call(
            Method::POST,
            "/v1/admin/bans/accounts",
            Some(json!({"account_id": env.alice.account_id, "decision": "suspend"})),
            Some(&admin),
        )
        .await
        .expect(StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    send_bin(
        &mut alice,
        relay::send_frame(
            3,
            &account(&env.bob),
            Id::random().as_bytes(),
            false,
            &[(1, b"x")],
        ),
    )
    .await;
    match next(&mut alice, T).await {
        Frame::Result {
            request_id: 3,
            status: 403,
            body,
        } => assert_eq!(body["error"]["code"], "account_suspended", "{body}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(queued(&env, &env.bob).await, 0);
}
