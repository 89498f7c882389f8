//! Mailboxes and REST delivery, end to end through the HTTP API on SQLite and Postgres (the key
//! directory and sender certificates as the SDK reads them: `e2e/tests/e2e/keys.rs`). Every refused request is followed by a check of the database
//! state: nothing changed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common;
use crate::common::Api as _;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use crate::common::{Harness, Tokens, b64};
use axum::http::{Method, StatusCode};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use haven_relay::db::Store;
use haven_relay::ids::Id;
use haven_relay::mail::service as messaging;
use haven_relay::realtime::ephemeral::{EphemeralMessage, MailPush, Push};
use haven_relay::realtime::hub::Topic;
use haven_relay::settings::Settings;
use haven_testkit::harness::envelopes;
use serde_json::{Value, json};

const PASSWORD: &str = "pw for messaging tests";

use crate::common::Rows;

fn settings() -> Settings {
    let mut s = haven_testkit::harness::key_directory_settings();
    s.mail.max_envelope_bytes = 2048;
    s.mail.max_header_bytes = 64;
    s.mail.max_queue_messages = 6;
    s.mail.max_queue_bytes = 6 * 2048;
    s.mail.sealed_sends_per_minute = 30;
    s.mail.reaper_interval_secs = 1;
    s
}

common::on_both_backends!(
    settings = super::settings;
    delivers_to_every_device_in_order_and_acks,
    idempotent_resend_and_id_conflict,
    device_list_mismatch_and_removed_devices,
    self_send_excludes_the_sending_device,
    limits_and_malformed_bodies_change_nothing,
    sealed_send_needs_the_access_key,
    another_accounts_token_cannot_touch_a_queue,
    multi_recipient_payload_is_stored_once,
    ttl_expiry_by_the_reaper,
    ephemeral_messages_are_never_stored,
    strangers_learn_neither_devices_nor_presence,
    stored_mail_is_pushed_to_a_live_socket,
    unknown_accounts_get_clear_errors_and_change_nothing,
    franking_commitments_are_stored_and_stamped_on_delivery,
);

async fn fetch<S: Store>(h: &Harness<S>, t: &Tokens) -> Vec<Value> {
    let reply = h.get_as("/v1/messages", t).await.expect(StatusCode::OK);
    reply.body["envelopes"].as_array().unwrap().clone()
}

fn content(e: &Value) -> Vec<u8> {
    STANDARD.decode(e["content"].as_str().unwrap()).unwrap()
}

fn id_of(t: &Tokens) -> Id {
    t.account_id.parse().unwrap()
}

async fn delivers_to_every_device_in_order_and_acks<S: Store>(h: Harness<S>) {
    let alice = h.register(None, PASSWORD).await;
    let bob = h.register(None, PASSWORD).await;
    assert_eq!(bob.device_number, 1);
    let bob2 = h.add_device(&bob, PASSWORD).await;
    assert_eq!(bob2.device_number, 2);
    let mut hint = h.state.hub().subscribe(Topic::Mailbox {
        account: id_of(&bob),
        device: 2,
    });
    let ids: Vec<Id> = (0..3).map(|_| Id::random()).collect();
    for (i, id) in ids.iter().enumerate() {
        let reply = h
            .send_as(&alice, &bob.account_id, id, &[2, 1], &[i as u8 + 1; 10])
            .await
            .expect(StatusCode::OK);
        let devices = reply.body["devices"].as_array().unwrap();
        assert_eq!(devices.len(), 2);
        assert_eq!(devices[0]["device_number"], 1);
        assert_eq!(devices[0]["status"], "queued");
        assert_eq!(devices[0]["duplicate"], false);
    }
    // The socket of device 2 was woken.
    tokio::time::timeout(Duration::from_secs(2), hint.changed())
        .await
        .unwrap();
    for t in [&bob, &bob2] {
        let got = fetch(&h, t).await;
        assert_eq!(got.len(), 3);
        for (i, e) in got.iter().enumerate() {
            assert_eq!(content(e), vec![i as u8 + 1; 10]);
            assert_eq!(e["message_id"], json!(ids[i]));
            assert_eq!(e["source"]["account_id"], json!(alice.account_id));
            assert_eq!(e["source"]["device_number"], 1);
            assert_eq!(e["payload"], Value::Null);
            assert_eq!(e["received_at"].as_i64().unwrap() % 60, 0);
        }
        assert!(got[0]["seq"].as_i64() < got[1]["seq"].as_i64());
    }
    // Paging.
    let page = h
        .get_as("/v1/messages?limit=2", &bob)
        .await
        .expect(StatusCode::OK);
    assert_eq!(page.body["envelopes"].as_array().unwrap().len(), 2);
    assert_eq!(page.body["more"], true);
    let after = page.body["envelopes"][1]["seq"].as_i64().unwrap();
    let rest = h
        .get_as(&format!("/v1/messages?after={after}"), &bob)
        .await
        .expect(StatusCode::OK);
    assert_eq!(rest.body["envelopes"].as_array().unwrap().len(), 1);
    assert_eq!(rest.body["more"], false);
    // Ack by id on device 1 leaves device 2 alone; ack up to a seq.
    let acked = h
        .post_as(
            "/v1/messages/ack",
            json!({"message_ids": [ids[0], Id::random()]}),
            &bob,
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(acked.body["deleted"], 1);
    assert_eq!(fetch(&h, &bob).await.len(), 2);
    assert_eq!(fetch(&h, &bob2).await.len(), 3);
    let acked = h
        .post_as("/v1/messages/ack", json!({"up_to_seq": i64::MAX}), &bob)
        .await
        .expect(StatusCode::OK);
    assert_eq!(acked.body["deleted"], 2);
    assert!(fetch(&h, &bob).await.is_empty());
    assert_eq!(fetch(&h, &bob2).await.len(), 3);
    h.post_as("/v1/messages/ack", json!({}), &bob)
        .await
        .expect_error(StatusCode::BAD_REQUEST, "invalid_ack");
}

async fn idempotent_resend_and_id_conflict<S: Store + Rows>(h: Harness<S>) {
    let alice = h.register(None, PASSWORD).await;
    let bob = h.register(None, PASSWORD).await;
    let id = Id::random();
    let first = h
        .send_as(&alice, &bob.account_id, &id, &[1], b"hello")
        .await
        .expect(StatusCode::OK);
    let again = h
        .send_as(&alice, &bob.account_id, &id, &[1], b"hello")
        .await
        .expect(StatusCode::OK);
    assert_eq!(again.body["devices"][0]["duplicate"], true);
    assert_eq!(
        again.body["devices"][0]["seq"],
        first.body["devices"][0]["seq"]
    );
    assert_eq!(h.store.rows("envelopes").await, 1);
    h.send_as(&alice, &bob.account_id, &id, &[1], b"changed")
        .await
        .expect_error(StatusCode::CONFLICT, "message_id_conflict");
    assert_eq!(h.store.rows("envelopes").await, 1);
    assert_eq!(content(&fetch(&h, &bob).await[0]), b"hello");
    // After the ack, a resend of the same id is still the same message: answered as a
    // duplicate with the original seq, not queued (and so not delivered) again.
    h.post_as("/v1/messages/ack", json!({"message_ids": [id]}), &bob)
        .await
        .expect(StatusCode::OK);
    assert_eq!(h.store.rows("envelopes").await, 0);
    let late = h
        .send_as(&alice, &bob.account_id, &id, &[1], b"hello")
        .await
        .expect(StatusCode::OK);
    assert_eq!(late.body["devices"][0]["duplicate"], true);
    assert_eq!(
        late.body["devices"][0]["seq"],
        first.body["devices"][0]["seq"]
    );
    assert_eq!(h.store.rows("envelopes").await, 0);
    assert!(fetch(&h, &bob).await.is_empty());
    h.send_as(&alice, &bob.account_id, &id, &[1], b"changed")
        .await
        .expect_error(StatusCode::CONFLICT, "message_id_conflict");
    assert_eq!(h.store.rows("envelopes").await, 0);
    assert_eq!(h.store.rows("acked_envelopes").await, 1);
}

/// Sets `t`'s access key to `key`.
async fn set_key<S: Store>(h: &Harness<S>, t: &Tokens, key: &[u8; 16]) {
    h.put_as("/v1/account/access-key", json!({"access_key": b64(key)}), t)
        .await
        .expect(StatusCode::NO_CONTENT);
}

/// A logged-in send carrying the recipient's access key in the body.
async fn send_with_key<S: Store>(
    h: &Harness<S>,
    from: &Tokens,
    to: &Tokens,
    key: &[u8; 16],
    id: &Id,
    devices: &[u32],
    ephemeral: bool,
) -> common::Reply {
    h.post_as(
        &format!("/v1/messages/{}", to.account_id),
        json!({"message_id": id, "ephemeral": ephemeral, "access_key": b64(key),
               "envelopes": envelopes(devices, b"x")}),
        from,
    )
    .await
}

async fn device_list_mismatch_and_removed_devices<S: Store + Rows>(h: Harness<S>) {
    let alice = h.register(None, PASSWORD).await;
    let bob = h.register(None, PASSWORD).await;
    let bob2 = h.add_device(&bob, PASSWORD).await;
    // The device lists of a 409/410 are named only to a holder of bob's access key.
    let key = [7u8; 16];
    set_key(&h, &bob, &key).await;
    let id = Id::random();
    let r = send_with_key(&h, &alice, &bob, &key, &id, &[1], false)
        .await
        .expect_error(StatusCode::CONFLICT, "mismatched_devices");
    let m = &r.body["error"]["mismatches"][0];
    assert_eq!(m["account_id"], json!(bob.account_id));
    assert_eq!(m["missing_devices"], json!([2]));
    assert_eq!(m["extra_devices"], json!([]));
    let r = send_with_key(&h, &alice, &bob, &key, &id, &[1, 2, 7], false)
        .await
        .expect_error(StatusCode::CONFLICT, "mismatched_devices");
    assert_eq!(
        r.body["error"]["mismatches"][0]["extra_devices"],
        json!([7])
    );
    h.unlink_device(&bob, &bob2.device_id, PASSWORD)
        .await
        .expect(StatusCode::NO_CONTENT);
    let r = send_with_key(&h, &alice, &bob, &key, &id, &[1, 2], false)
        .await
        .expect_error(StatusCode::GONE, "stale_devices");
    assert_eq!(
        r.body["error"]["mismatches"][0]["removed_devices"],
        json!([2])
    );
    h.send_as(&alice, &Id::random().to_hex(), &id, &[1], b"x")
        .await
        .expect_error(StatusCode::NOT_FOUND, "account_not_found");
    assert_eq!(h.store.rows("envelopes").await, 0);
    // A new device gets a new number; 2 stays retired.
    let bob3 = h.add_device(&bob, PASSWORD).await;
    assert_eq!(bob3.device_number, 3);
    h.send_as(&alice, &bob.account_id, &id, &[1, 3], b"x")
        .await
        .expect(StatusCode::OK);
}

async fn self_send_excludes_the_sending_device<S: Store + Rows>(h: Harness<S>) {
    let alice = h.register(None, PASSWORD).await;
    let alice2 = h.add_device(&alice, PASSWORD).await;
    let id = Id::random();
    let r = h
        .send_as(&alice, &alice.account_id, &id, &[1, 2], b"sync")
        .await
        .expect_error(StatusCode::CONFLICT, "mismatched_devices");
    assert_eq!(
        r.body["error"]["mismatches"][0]["extra_devices"],
        json!([1])
    );
    h.send_as(&alice, &alice.account_id, &id, &[2], b"sync")
        .await
        .expect(StatusCode::OK);
    assert_eq!(content(&fetch(&h, &alice2).await[0]), b"sync");
    assert!(fetch(&h, &alice).await.is_empty());
}

async fn limits_and_malformed_bodies_change_nothing<S: Store + Rows>(h: Harness<S>) {
    let alice = h.register(None, PASSWORD).await;
    let bob = h.register(None, PASSWORD).await;
    let to = format!("/v1/messages/{}", bob.account_id);
    let id = Id::random();
    // Oversize envelope.
    h.send_as(&alice, &bob.account_id, &id, &[1], &[0u8; 2049])
        .await
        .expect_error(StatusCode::PAYLOAD_TOO_LARGE, "envelope_too_large");
    // Malformed bodies.
    let bad = [
        json!({"message_id": id, "envelopes": [{"device_number": 1, "content": "***"}]}),
        json!({"message_id": id, "envelopes": [{"device_number": 1, "content": ""}]}),
        json!({"message_id": "XYZ", "envelopes": envelopes(&[1], b"x")}),
        json!({"message_id": id}),
        json!({"message_id": id, "envelopes": envelopes(&[1], b"x"), "surprise": 1}),
        json!({"message_id": id, "envelopes": []}),
        json!({"message_id": id, "envelopes": [{"device_number": -1, "content": "eA=="}]}),
        json!({"message_id": id, "envelopes": envelopes(&[1, 1], b"x")}),
        // A logged-in send may carry the recipient's access key, but not a malformed one.
        json!({"message_id": id, "envelopes": envelopes(&[1], b"x"), "access_key": "***"}),
    ];
    for body in bad {
        let r = h.post_as(&to, body.clone(), &alice).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}: {}", r.body);
    }
    h.call(Method::POST, &to, Some(json!({})), None)
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "missing_token");
    h.post_as("/v1/messages/not-an-id", json!({}), &alice)
        .await
        .expect_error(StatusCode::BAD_REQUEST, "invalid_json");
    assert_eq!(h.store.rows("envelopes").await, 0);
    // Full queue: 6 messages, then 507 and nothing more stored.
    for i in 0..6u8 {
        h.send_as(&alice, &bob.account_id, &Id::random(), &[1], &[i; 16])
            .await
            .expect(StatusCode::OK);
    }
    h.send_as(&alice, &bob.account_id, &Id::random(), &[1], b"seven")
        .await
        .expect_error(StatusCode::INSUFFICIENT_STORAGE, "mailbox_full");
    assert_eq!(h.store.rows("envelopes").await, 6);
    // Acking frees room.
    h.post_as("/v1/messages/ack", json!({"up_to_seq": i64::MAX}), &bob)
        .await
        .expect(StatusCode::OK);
    h.send_as(&alice, &bob.account_id, &Id::random(), &[1], b"seven")
        .await
        .expect(StatusCode::OK);
    // Fetch query validation.
    h.get_as("/v1/messages?after=abc", &bob)
        .await
        .expect_error(StatusCode::BAD_REQUEST, "invalid_query");
}

async fn sealed_send_needs_the_access_key<S: Store + Rows>(h: Harness<S>) {
    let bob = h.register(None, PASSWORD).await;
    let sealed = format!("/v1/messages/{}/sealed", bob.account_id);
    let key = [9u8; 16];
    let body = |id: &Id| json!({"message_id": id, "envelopes": envelopes(&[1], b"sealed")});
    let with_key = |k: &[u8], body: Value| {
        axum::http::Request::builder()
            .method(Method::POST)
            .uri(&sealed)
            .header("content-type", "application/json")
            .header("unidentified-access-key", b64(k))
            .body(axum::body::Body::from(serde_json::to_vec(&body).unwrap()))
            .unwrap()
    };
    // No key stored yet: refused like a wrong key.
    h.raw(with_key(&key, body(&Id::random())))
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "invalid_access_key");
    h.put_as(
        "/v1/account/access-key",
        json!({"access_key": b64(&[1u8; 15])}),
        &bob,
    )
    .await
    .expect_error(StatusCode::BAD_REQUEST, "invalid_length");
    h.put_as(
        "/v1/account/access-key",
        json!({"access_key": b64(&key)}),
        &bob,
    )
    .await
    .expect(StatusCode::NO_CONTENT);
    h.raw(with_key(&[8u8; 16], body(&Id::random())))
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "invalid_access_key");
    h.post(&sealed, body(&Id::random()))
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "missing_access_key");
    // Unknown recipient: same answer as a wrong key.
    h.post(
        &format!("/v1/messages/{}/sealed", Id::random()),
        json!({"message_id": Id::random(), "envelopes": envelopes(&[1], b"x"), "access_key": b64(&key)}),
    )
    .await
    .expect_error(StatusCode::UNAUTHORIZED, "invalid_access_key");
    assert_eq!(h.store.rows("envelopes").await, 0);
    // Right key in the header, then in the body.
    let r = h
        .raw(with_key(&key, body(&Id::random())))
        .await
        .expect(StatusCode::OK);
    assert_eq!(r.body["devices"][0]["status"], "queued");
    let mut b = body(&Id::random());
    b["access_key"] = json!(b64(&key));
    h.post(&sealed, b).await.expect(StatusCode::OK);
    let got = fetch(&h, &bob).await;
    assert_eq!(got.len(), 2);
    assert!(got.iter().all(|e| e["source"].is_null()));
    // The device list is checked after the key.
    let mut b = json!({"message_id": Id::random(), "envelopes": envelopes(&[1, 2], b"x")});
    b["access_key"] = json!(b64(&key));
    h.post(&sealed, b)
        .await
        .expect_error(StatusCode::CONFLICT, "mismatched_devices");
    // Per-recipient rate limit (30 per minute; 2 accepted plus 1 refused above counted).
    let mut limited = false;
    for _ in 0..40 {
        let r = h.raw(with_key(&key, body(&Id::random()))).await;
        if r.status == StatusCode::TOO_MANY_REQUESTS {
            limited = true;
            break;
        }
        assert!(
            r.status == StatusCode::OK || r.status == StatusCode::INSUFFICIENT_STORAGE,
            "{}",
            r.body
        );
    }
    assert!(limited, "sealed sends were never rate limited");
    // Removing the key closes sealed delivery.
    h.put_as("/v1/account/access-key", json!({"access_key": null}), &bob)
        .await
        .expect(StatusCode::NO_CONTENT);
    assert_eq!(h.store.access_key_hash(&id_of(&bob)).await.unwrap(), None);
}

async fn another_accounts_token_cannot_touch_a_queue<S: Store + Rows>(h: Harness<S>) {
    let alice = h.register(None, PASSWORD).await;
    let bob = h.register(None, PASSWORD).await;
    let id = Id::random();
    h.send_as(&bob, &alice.account_id, &id, &[1], b"for alice")
        .await
        .expect(StatusCode::OK);
    // Bob acks Alice's message id: his own queue is the only one he can touch.
    let r = h
        .post_as("/v1/messages/ack", json!({"message_ids": [id]}), &bob)
        .await
        .expect(StatusCode::OK);
    assert_eq!(r.body["deleted"], 0);
    let r = h
        .post_as("/v1/messages/ack", json!({"up_to_seq": i64::MAX}), &bob)
        .await
        .expect(StatusCode::OK);
    assert_eq!(r.body["deleted"], 0);
    assert!(fetch(&h, &bob).await.is_empty());
    assert_eq!(fetch(&h, &alice).await.len(), 1);
    assert_eq!(h.store.rows("envelopes").await, 1);
}

async fn multi_recipient_payload_is_stored_once<S: Store + Rows>(h: Harness<S>) {
    let bob = h.register(None, PASSWORD).await;
    let bob2 = h.add_device(&bob, PASSWORD).await;
    let carol = h.register(None, PASSWORD).await;
    for (t, k) in [(&bob, [1u8; 16]), (&carol, [2u8; 16])] {
        h.put_as("/v1/account/access-key", json!({"access_key": b64(&k)}), t)
            .await
            .expect(StatusCode::NO_CONTENT);
    }
    let payload = vec![0x5Au8; 1500];
    let body = |carol_key: [u8; 16]| {
        json!({
            "message_id": Id::random(),
            "payload": b64(&payload),
            "recipients": [
                {"account_id": bob.account_id, "access_key": b64(&[1u8; 16]),
                 "devices": [{"device_number": 1, "header": b64(b"hdr-b1")},
                             {"device_number": 2, "header": b64(b"hdr-b2")}]},
                {"account_id": carol.account_id, "access_key": b64(&carol_key),
                 "devices": [{"device_number": 1, "header": b64(b"hdr-c1")}]},
            ],
        })
    };
    h.post("/v1/messages/multi", body([3u8; 16]))
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "invalid_access_key");
    assert_eq!(h.store.rows("envelopes").await, 0);
    assert_eq!(h.store.rows("shared_payloads").await, 0);
    let mut oversize = body([2u8; 16]);
    oversize["recipients"][0]["devices"][0]["header"] = json!(b64(&[0u8; 65]));
    h.post("/v1/messages/multi", oversize)
        .await
        .expect_error(StatusCode::PAYLOAD_TOO_LARGE, "envelope_too_large");
    let mut incomplete = body([2u8; 16]);
    incomplete["recipients"][0]["devices"] = json!([{"device_number": 1, "header": b64(b"h")}]);
    let r = h
        .post("/v1/messages/multi", incomplete)
        .await
        .expect_error(StatusCode::CONFLICT, "mismatched_devices");
    assert_eq!(
        r.body["error"]["mismatches"][0]["missing_devices"],
        json!([2])
    );
    assert_eq!(h.store.rows("envelopes").await, 0);
    let r = h
        .post("/v1/messages/multi", body([2u8; 16]))
        .await
        .expect(StatusCode::OK);
    assert_eq!(r.body["recipients"].as_array().unwrap().len(), 2);
    assert_eq!(h.store.rows("envelopes").await, 3);
    assert_eq!(h.store.rows("shared_payloads").await, 1);
    for (t, hdr) in [
        (&bob, &b"hdr-b1"[..]),
        (&bob2, b"hdr-b2"),
        (&carol, b"hdr-c1"),
    ] {
        let got = fetch(&h, t).await;
        assert_eq!(content(&got[0]), hdr);
        assert_eq!(
            STANDARD
                .decode(got[0]["payload"].as_str().unwrap())
                .unwrap(),
            payload
        );
        h.post_as("/v1/messages/ack", json!({"up_to_seq": i64::MAX}), t)
            .await
            .expect(StatusCode::OK);
    }
    // The last ack removed the shared payload too.
    assert_eq!(h.store.rows("shared_payloads").await, 0);
}

async fn ttl_expiry_by_the_reaper<S: Store + Rows>(h: Harness<S>) {
    let alice = h.register(None, PASSWORD).await;
    let bob = h.register(None, PASSWORD).await;
    h.send_as(&alice, &bob.account_id, &Id::random(), &[1], b"expiring")
        .await
        .expect(StatusCode::OK);
    let now = haven_relay::clock::now_i64();
    let ttl = i64::try_from(h.state.settings().mail.ttl_secs).unwrap();
    // Before the expiry nothing goes.
    assert_eq!(
        messaging::reap_once(&h.state, now + ttl - 5).await.unwrap(),
        0
    );
    assert_eq!(h.store.rows("envelopes").await, 1);
    // The background reaper with a controlled clock past the expiry deletes it.
    let clock = Arc::new(AtomicI64::new(now));
    let c = Arc::clone(&clock);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let reaper = messaging::spawn_reaper(
        h.state.clone(),
        Arc::new(move || c.load(Ordering::SeqCst)),
        stop_rx,
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(h.store.rows("envelopes").await, 1);
    clock.store(now + ttl + 1, Ordering::SeqCst);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while h.store.rows("envelopes").await > 0 {
        assert!(tokio::time::Instant::now() < deadline, "reaper did not run");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop_tx.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(5), reaper)
        .await
        .expect("reaper stops on shutdown")
        .unwrap();
}

async fn ephemeral_messages_are_never_stored<S: Store + Rows>(h: Harness<S>) {
    let alice = h.register(None, PASSWORD).await;
    let bob = h.register(None, PASSWORD).await;
    h.add_device(&bob, PASSWORD).await;
    let key = [8u8; 16];
    set_key(&h, &bob, &key).await;
    let mut live = h.state.ephemeral().subscribe(id_of(&bob), 1);
    let id = Id::random();
    let r = h
        .post_as(
            &format!("/v1/messages/{}", bob.account_id),
            json!({"message_id": id, "ephemeral": true, "access_key": b64(&key),
               "envelopes": envelopes(&[1, 2], b"typing")}),
            &alice,
        )
        .await
        .expect(StatusCode::OK);
    // Device 1 is live, device 2 is not: the same answer.
    assert_eq!(r.body["devices"][0]["status"], "accepted");
    assert_eq!(r.body["devices"][1]["status"], "accepted");
    let got = live.try_recv().unwrap();
    assert_eq!(
        got,
        Push::Ephemeral(EphemeralMessage {
            message_id: id,
            source: Some((id_of(&alice), 1)),
            content: b"typing".to_vec(),
        })
    );
    assert_eq!(h.store.rows("envelopes").await, 0);
    drop(live);
    let r = h
        .post_as(
            &format!("/v1/messages/{}", bob.account_id),
            json!({"message_id": id, "ephemeral": true, "access_key": b64(&key),
               "envelopes": envelopes(&[1, 2], b"typing")}),
            &alice,
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(r.body["devices"][0]["status"], "accepted");
}

/// A logged-in stranger (no access key) learns neither which devices an account has (a
/// 409/410 names none, and a 410 reads as a 409) nor whether one is online (ephemeral sends
/// are refused); with the key both work as documented.
async fn strangers_learn_neither_devices_nor_presence<S: Store + Rows>(h: Harness<S>) {
    let alice = h.register(None, PASSWORD).await;
    let bob = h.register(None, PASSWORD).await;
    let bob2 = h.add_device(&bob, PASSWORD).await;
    h.add_device(&bob, PASSWORD).await;
    let key = [9u8; 16];
    set_key(&h, &bob, &key).await;
    let mut live = h.state.ephemeral().subscribe(id_of(&bob), 1);
    // Wrong device list, no key: 409 naming nothing.
    for devices in [&[1u32][..], &[1, 2, 3, 7]] {
        let r = h
            .send_as(&alice, &bob.account_id, &Id::random(), devices, b"x")
            .await
            .expect_error(StatusCode::CONFLICT, "mismatched_devices");
        assert_eq!(r.body["error"]["mismatches"], json!([]), "{devices:?}");
    }
    h.unlink_device(&bob, &bob2.device_id, PASSWORD)
        .await
        .expect(StatusCode::NO_CONTENT);
    let r = h
        .send_as(&alice, &bob.account_id, &Id::random(), &[1, 2, 3], b"x")
        .await
        .expect_error(StatusCode::CONFLICT, "mismatched_devices");
    assert_eq!(r.body["error"]["mismatches"], json!([]));
    // Ephemeral without the key: refused, nothing handed to the live socket.
    h.post_as(
        &format!("/v1/messages/{}", bob.account_id),
        json!({"message_id": Id::random(), "ephemeral": true,
               "envelopes": envelopes(&[1, 3], b"typing")}),
        &alice,
    )
    .await
    .expect_error(StatusCode::UNAUTHORIZED, "missing_access_key");
    assert!(live.try_recv().is_err());
    // A wrong key is refused like on a sealed send.
    send_with_key(&h, &alice, &bob, &[1u8; 16], &Id::random(), &[1, 3], true)
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "invalid_access_key");
    send_with_key(&h, &alice, &bob, &[1u8; 16], &Id::random(), &[1], false)
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "invalid_access_key");
    assert!(live.try_recv().is_err());
    assert_eq!(h.store.rows("envelopes").await, 0);
    // With the key: the differences, and `accepted` for the live and the offline device.
    let r = send_with_key(&h, &alice, &bob, &key, &Id::random(), &[1, 2, 3], false)
        .await
        .expect_error(StatusCode::GONE, "stale_devices");
    assert_eq!(
        r.body["error"]["mismatches"][0]["removed_devices"],
        json!([2])
    );
    let r = send_with_key(&h, &alice, &bob, &key, &Id::random(), &[1, 3], true)
        .await
        .expect(StatusCode::OK);
    assert_eq!(r.body["devices"][0]["status"], "accepted");
    assert_eq!(r.body["devices"][1]["status"], "accepted");
    assert!(matches!(live.try_recv(), Ok(Push::Ephemeral(_))));
    // Without the key a right list is still delivered, and the own account needs no key.
    h.send_as(&alice, &bob.account_id, &Id::random(), &[1, 3], b"x")
        .await
        .expect(StatusCode::OK);
    let r = h
        .send_as(&bob, &bob.account_id, &Id::random(), &[1], b"x")
        .await
        .expect_error(StatusCode::CONFLICT, "mismatched_devices");
    assert_eq!(
        r.body["error"]["mismatches"][0]["missing_devices"],
        json!([3])
    );
    h.post_as(
        &format!("/v1/messages/{}", bob.account_id),
        json!({"message_id": Id::random(), "ephemeral": true,
               "envelopes": envelopes(&[3], b"typing")}),
        &bob,
    )
    .await
    .expect(StatusCode::OK);
}

/// A stored envelope is handed to the recipient device's live subscription after its commit,
/// naming the sequence number queued before it; duplicates and shared-payload sends are not.
async fn stored_mail_is_pushed_to_a_live_socket<S: Store + Rows>(h: Harness<S>) {
    let alice = h.register(None, PASSWORD).await;
    let bob = h.register(None, PASSWORD).await;
    let mut live = h.state.ephemeral().subscribe(id_of(&bob), 1);
    let mail = |push: Push| match push {
        Push::Mail(m) => m,
        other => panic!("expected mail, got {other:?}"),
    };
    let (m1, m2) = (Id::random(), Id::random());
    let r1 = h
        .send_as(&alice, &bob.account_id, &m1, &[1], b"first")
        .await
        .expect(StatusCode::OK);
    let seq1 = r1.body["devices"][0]["seq"].as_i64().unwrap();
    let got = mail(live.try_recv().unwrap());
    assert_eq!(
        *got,
        MailPush {
            seq: seq1,
            prev_seq: None,
            message_id: m1,
            source: Some((id_of(&alice), 1)),
            content: b"first".to_vec(),
            received_at: got.received_at,
            franking_commitment: None,
        }
    );
    let r2 = h
        .send_as(&alice, &bob.account_id, &m2, &[1], b"second")
        .await
        .expect(StatusCode::OK);
    let got = mail(live.try_recv().unwrap());
    assert_eq!(got.seq, r2.body["devices"][0]["seq"].as_i64().unwrap());
    assert_eq!(got.prev_seq, Some(seq1));
    assert_eq!(got.content, b"second");
    // An idempotent resend stores nothing and pushes nothing.
    h.send_as(&alice, &bob.account_id, &m2, &[1], b"second")
        .await
        .expect(StatusCode::OK);
    assert!(live.try_recv().is_err());
    // After an ack of everything the queue is empty again: the next push names nothing.
    let fetched = fetch(&h, &bob).await;
    assert_eq!(fetched.len(), 2);
    h.post_as("/v1/messages/ack", json!({"up_to_seq": got.seq}), &bob)
        .await
        .expect(StatusCode::OK);
    h.send_as(&alice, &bob.account_id, &Id::random(), &[1], b"third")
        .await
        .expect(StatusCode::OK);
    assert_eq!(mail(live.try_recv().unwrap()).prev_seq, None);
    // A refused send (stale device list) pushes nothing.
    h.send_as(&alice, &bob.account_id, &Id::random(), &[1, 2], b"x")
        .await
        .expect_error(StatusCode::CONFLICT, "mismatched_devices");
    assert!(live.try_recv().is_err());
}

async fn unknown_accounts_get_clear_errors_and_change_nothing<S: Store + Rows>(h: Harness<S>) {
    let alice = h.register(None, PASSWORD).await;
    let bob = h.register(None, PASSWORD).await;
    h.put_as(
        "/v1/account/access-key",
        json!({"access_key": b64(&[5u8; 16])}),
        &bob,
    )
    .await
    .expect(StatusCode::NO_CONTENT);
    let nobody = Id::random().to_hex();
    let id = Id::random();
    // Logged-in stored sends: 404; ephemeral ones need a key, which no unknown account has.
    h.send_as(&alice, &nobody, &id, &[1], b"x")
        .await
        .expect_error(StatusCode::NOT_FOUND, "account_not_found");
    h.post_as(
        &format!("/v1/messages/{nobody}"),
        json!({"message_id": id, "ephemeral": true, "envelopes": envelopes(&[1], b"typing")}),
        &alice,
    )
    .await
    .expect_error(StatusCode::UNAUTHORIZED, "missing_access_key");
    h.post_as(
        &format!("/v1/messages/{nobody}"),
        json!({"message_id": id, "ephemeral": true, "access_key": b64(&[5u8; 16]),
               "envelopes": envelopes(&[1], b"typing")}),
        &alice,
    )
    .await
    .expect_error(StatusCode::UNAUTHORIZED, "invalid_access_key");
    // Sealed sends learn nothing: the same 401 as a wrong key.
    h.post(
        &format!("/v1/messages/{nobody}/sealed"),
        json!({"message_id": id, "envelopes": envelopes(&[1], b"x"), "access_key": b64(&[5u8; 16])}),
    )
    .await
    .expect_error(StatusCode::UNAUTHORIZED, "invalid_access_key");
    // A multi-recipient send naming one unknown account stores nothing, not even for bob.
    h.post(
        "/v1/messages/multi",
        json!({
            "message_id": id,
            "payload": b64(b"shared payload"),
            "recipients": [
                {"account_id": bob.account_id, "access_key": b64(&[5u8; 16]),
                 "devices": [{"device_number": 1, "header": b64(b"hb")}]},
                {"account_id": nobody, "access_key": b64(&[5u8; 16]),
                 "devices": [{"device_number": 1, "header": b64(b"hn")}]},
            ],
        }),
    )
    .await
    .expect_error(StatusCode::UNAUTHORIZED, "invalid_access_key");
    // Claims: every claim route answers 404 for an unknown account.
    h.get_as(&format!("/v1/keys/{nobody}"), &alice)
        .await
        .expect_error(StatusCode::NOT_FOUND, "account_not_found");
    h.get_as(&format!("/v1/keys/{nobody}/1"), &alice)
        .await
        .expect_error(StatusCode::NOT_FOUND, "account_not_found");
    assert_eq!(h.store.rows("envelopes").await, 0);
    assert_eq!(h.store.rows("shared_payloads").await, 0);
    assert!(fetch(&h, &bob).await.is_empty());
}

/// PROTOCOL.md §16.4, §16.9: a send's franking commitment is stored with its envelope and
/// delivered with the relay's stamp over (c, destination, seq, received_at), over REST and the
/// WebSocket alike; the same id with another commitment is a conflict; ephemeral sends and
/// commitments that are not 32 bytes are refused and change nothing.
async fn franking_commitments_are_stored_and_stamped_on_delivery<S: Store + Rows>(h: Harness<S>) {
    use haven_protocol::franking::Destination;
    use haven_protocol::franking::verify::delivery_stamp;
    let alice = h.register(None, PASSWORD).await;
    let bob = h.register(None, PASSWORD).await;
    let commitment = [0x5a_u8; 32];
    let send = |id: &Id, c: Value, ephemeral: bool| {
        json!({"message_id": id, "ephemeral": ephemeral, "envelopes": [
            {"device_number": 1, "content": b64(b"franked"), "franking_commitment": c}]})
    };
    let path = format!("/v1/messages/{}", bob.account_id);
    // Refused without changing anything: a short commitment, an ephemeral franked send.
    h.post_as(
        &path,
        send(&Id::random(), json!(b64(&[1; 31])), false),
        &alice,
    )
    .await
    .expect_error(StatusCode::BAD_REQUEST, "invalid_franking_commitment");
    h.post_as(
        &path,
        send(&Id::random(), json!(b64(&commitment)), true),
        &alice,
    )
    .await
    .expect_error(StatusCode::BAD_REQUEST, "ephemeral_franked");
    assert_eq!(h.store.rows("envelopes").await, 0);

    let id = Id::random();
    let sent = h
        .post_as(&path, send(&id, json!(b64(&commitment)), false), &alice)
        .await
        .expect(StatusCode::OK);
    let seq = sent.body["devices"][0]["seq"].as_i64().unwrap();
    // The same id and bytes with another commitment is another message.
    h.post_as(&path, send(&id, json!(b64(&[0x5b; 32])), false), &alice)
        .await
        .expect_error(StatusCode::CONFLICT, "message_id_conflict");
    // An unfranked envelope is delivered with `franking: null`.
    h.send_as(&alice, &bob.account_id, &Id::random(), &[1], b"plain")
        .await
        .expect(StatusCode::OK);

    let got = fetch(&h, &bob).await;
    assert_eq!(got.len(), 2);
    let received_at = got[0]["received_at"].as_i64().unwrap();
    let bob_id: Id = bob.account_id.parse().unwrap();
    let expected = delivery_stamp(
        &h.state.secrets().franking_stamp,
        &commitment,
        &Destination::Device {
            account: *bob_id.as_bytes(),
            device: 1,
        },
        u64::try_from(seq).unwrap(),
        u64::try_from(received_at).unwrap(),
    );
    assert_eq!(got[0]["franking"]["commitment"], b64(&commitment));
    assert_eq!(got[0]["franking"]["stamp"], b64(&expected));
    assert_eq!(got[1]["franking"], Value::Null);
    // The stamp binds the destination: it is not the stamp of another device or time.
    let other = delivery_stamp(
        &h.state.secrets().franking_stamp,
        &commitment,
        &Destination::Device {
            account: *bob_id.as_bytes(),
            device: 2,
        },
        u64::try_from(seq).unwrap(),
        u64::try_from(received_at).unwrap(),
    );
    assert_ne!(other, expected);
}
