//! Key directory, mailboxes, REST delivery and sender certificates, end to end through the HTTP
//! API on SQLite and Postgres. Every refused request is followed by a check of the database
//! state: nothing changed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common::{self, Api as _};

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use crate::common::{Harness, Reply, Tokens, b64};
use axum::http::{Method, StatusCode};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use haven_relay::hub::Topic;
use haven_relay::ids::Id;
use haven_relay::messaging::{self, EphemeralMessage, MailPush, Push};
use haven_relay::settings::Settings;
use haven_relay::store::{PgStore, SqliteStore, Store};
use haven_sdk::prekeys::{KemPreKey, KemPreKeyKind, OneTimePreKey, PreKeyBundle, SignedPreKey};
use haven_sdk::{IdentityKeyPair, SenderCertificate};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

const PASSWORD: &str = "pw for messaging tests";

/// Raw row counts, to prove refused requests changed nothing.
trait Rows {
    async fn rows(&self, table: &str) -> i64;
}

impl Rows for SqliteStore {
    async fn rows(&self, table: &str) -> i64 {
        sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}"))
            .fetch_one(self.pool())
            .await
            .unwrap()
    }
}

impl Rows for PgStore {
    async fn rows(&self, table: &str) -> i64 {
        sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}"))
            .fetch_one(self.pool())
            .await
            .unwrap()
    }
}

fn settings() -> Settings {
    let mut s = common::test_settings();
    s.max_devices = 4;
    s.mail.max_envelope_bytes = 2048;
    s.mail.max_header_bytes = 64;
    s.mail.max_queue_messages = 6;
    s.mail.max_queue_bytes = 6 * 2048;
    s.mail.max_request_bytes = 1 << 20;
    s.mail.sealed_sends_per_minute = 30;
    s.mail.reaper_interval_secs = 1;
    s.keys.claims_per_minute_per_target = 100;
    s.keys.claims_per_minute_per_requester = 1000;
    s.keys.max_one_time_per_upload = 20;
    s.keys.max_one_time_per_device = 40;
    s
}

macro_rules! on_both {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let (store, guard) = crate::common::sqlite_store().await.unwrap();
                    let h = crate::common::Harness::with_settings(store, guard, super::settings()).await;
                    super::$name(h).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some((store, guard)) = crate::common::pg_store().await else { return };
                    let h = crate::common::Harness::with_settings(store, guard, super::settings()).await;
                    super::$name(h).await;
                }
            )*
        }
    };
}

on_both!(
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
    stored_mail_is_pushed_to_a_live_socket,
    key_directory_upload_claim_digest,
    concurrent_http_claims_hand_out_each_key_once,
    claims_are_rate_limited_per_target,
    unknown_accounts_get_clear_errors_and_change_nothing,
    sender_certificate_validates_in_the_sdk,
    unlink_and_account_deletion_purge_keys_and_mail,
);

async fn get<S: Store>(h: &Harness<S>, path: &str, t: &Tokens) -> Reply {
    h.call(Method::GET, path, None, Some(&t.access)).await
}

async fn post<S: Store>(h: &Harness<S>, path: &str, body: Value, t: &Tokens) -> Reply {
    h.call(Method::POST, path, Some(body), Some(&t.access))
        .await
}

async fn put<S: Store>(h: &Harness<S>, path: &str, body: Value, t: &Tokens) -> Reply {
    h.call(Method::PUT, path, Some(body), Some(&t.access)).await
}

/// A second device of `t`'s account (device numbers 2, 3, …).
async fn add_device<S: Store>(h: &Harness<S>, t: &Tokens) -> Tokens {
    let reply = h
        .try_login(
            json!({"account_id": t.account_id}),
            PASSWORD,
            json!({"device": {"identity_key": b64(&[2u8; 32])}}),
        )
        .await
        .expect(StatusCode::OK);
    Tokens::from_json(&reply.body)
}

fn envelopes(devices: &[u32], content: &[u8]) -> Value {
    Value::Array(
        devices
            .iter()
            .map(|d| json!({"device_number": d, "content": b64(content)}))
            .collect(),
    )
}

async fn send<S: Store>(
    h: &Harness<S>,
    from: &Tokens,
    to: &str,
    id: &Id,
    devices: &[u32],
    content: &[u8],
) -> Reply {
    post(
        h,
        &format!("/v1/messages/{to}"),
        json!({"message_id": id, "envelopes": envelopes(devices, content)}),
        from,
    )
    .await
}

async fn fetch<S: Store>(h: &Harness<S>, t: &Tokens) -> Vec<Value> {
    let reply = get(h, "/v1/messages", t).await.expect(StatusCode::OK);
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
    let bob2 = add_device(&h, &bob).await;
    assert_eq!(bob2.device_number, 2);
    let mut hint = h.state.hub().subscribe(Topic::Mailbox {
        account: id_of(&bob),
        device: 2,
    });
    let ids: Vec<Id> = (0..3).map(|_| Id::random()).collect();
    for (i, id) in ids.iter().enumerate() {
        let reply = send(&h, &alice, &bob.account_id, id, &[2, 1], &[i as u8 + 1; 10])
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
    let page = get(&h, "/v1/messages?limit=2", &bob)
        .await
        .expect(StatusCode::OK);
    assert_eq!(page.body["envelopes"].as_array().unwrap().len(), 2);
    assert_eq!(page.body["more"], true);
    let after = page.body["envelopes"][1]["seq"].as_i64().unwrap();
    let rest = get(&h, &format!("/v1/messages?after={after}"), &bob)
        .await
        .expect(StatusCode::OK);
    assert_eq!(rest.body["envelopes"].as_array().unwrap().len(), 1);
    assert_eq!(rest.body["more"], false);
    // Ack by id on device 1 leaves device 2 alone; ack up to a seq.
    let acked = post(
        &h,
        "/v1/messages/ack",
        json!({"message_ids": [ids[0], Id::random()]}),
        &bob,
    )
    .await
    .expect(StatusCode::OK);
    assert_eq!(acked.body["deleted"], 1);
    assert_eq!(fetch(&h, &bob).await.len(), 2);
    assert_eq!(fetch(&h, &bob2).await.len(), 3);
    let acked = post(&h, "/v1/messages/ack", json!({"up_to_seq": i64::MAX}), &bob)
        .await
        .expect(StatusCode::OK);
    assert_eq!(acked.body["deleted"], 2);
    assert!(fetch(&h, &bob).await.is_empty());
    assert_eq!(fetch(&h, &bob2).await.len(), 3);
    post(&h, "/v1/messages/ack", json!({}), &bob)
        .await
        .expect_error(StatusCode::BAD_REQUEST, "invalid_ack");
}

async fn idempotent_resend_and_id_conflict<S: Store + Rows>(h: Harness<S>) {
    let alice = h.register(None, PASSWORD).await;
    let bob = h.register(None, PASSWORD).await;
    let id = Id::random();
    let first = send(&h, &alice, &bob.account_id, &id, &[1], b"hello")
        .await
        .expect(StatusCode::OK);
    let again = send(&h, &alice, &bob.account_id, &id, &[1], b"hello")
        .await
        .expect(StatusCode::OK);
    assert_eq!(again.body["devices"][0]["duplicate"], true);
    assert_eq!(
        again.body["devices"][0]["seq"],
        first.body["devices"][0]["seq"]
    );
    assert_eq!(h.store.rows("envelopes").await, 1);
    send(&h, &alice, &bob.account_id, &id, &[1], b"changed")
        .await
        .expect_error(StatusCode::CONFLICT, "message_id_conflict");
    assert_eq!(h.store.rows("envelopes").await, 1);
    assert_eq!(content(&fetch(&h, &bob).await[0]), b"hello");
    // After the ack, a resend of the same id is still the same message: answered as a
    // duplicate with the original seq, not queued (and so not delivered) again.
    post(&h, "/v1/messages/ack", json!({"message_ids": [id]}), &bob)
        .await
        .expect(StatusCode::OK);
    assert_eq!(h.store.rows("envelopes").await, 0);
    let late = send(&h, &alice, &bob.account_id, &id, &[1], b"hello")
        .await
        .expect(StatusCode::OK);
    assert_eq!(late.body["devices"][0]["duplicate"], true);
    assert_eq!(
        late.body["devices"][0]["seq"],
        first.body["devices"][0]["seq"]
    );
    assert_eq!(h.store.rows("envelopes").await, 0);
    assert!(fetch(&h, &bob).await.is_empty());
    send(&h, &alice, &bob.account_id, &id, &[1], b"changed")
        .await
        .expect_error(StatusCode::CONFLICT, "message_id_conflict");
    assert_eq!(h.store.rows("envelopes").await, 0);
    assert_eq!(h.store.rows("acked_envelopes").await, 1);
}

async fn device_list_mismatch_and_removed_devices<S: Store + Rows>(h: Harness<S>) {
    let alice = h.register(None, PASSWORD).await;
    let bob = h.register(None, PASSWORD).await;
    let bob2 = add_device(&h, &bob).await;
    let id = Id::random();
    let r = send(&h, &alice, &bob.account_id, &id, &[1], b"x")
        .await
        .expect_error(StatusCode::CONFLICT, "mismatched_devices");
    let m = &r.body["error"]["mismatches"][0];
    assert_eq!(m["account_id"], json!(bob.account_id));
    assert_eq!(m["missing_devices"], json!([2]));
    assert_eq!(m["extra_devices"], json!([]));
    let r = send(&h, &alice, &bob.account_id, &id, &[1, 2, 7], b"x")
        .await
        .expect_error(StatusCode::CONFLICT, "mismatched_devices");
    assert_eq!(
        r.body["error"]["mismatches"][0]["extra_devices"],
        json!([7])
    );
    h.call(
        Method::DELETE,
        &format!("/v1/devices/{}", bob2.device_id),
        None,
        Some(&bob.access),
    )
    .await
    .expect(StatusCode::NO_CONTENT);
    let r = send(&h, &alice, &bob.account_id, &id, &[1, 2], b"x")
        .await
        .expect_error(StatusCode::GONE, "stale_devices");
    assert_eq!(
        r.body["error"]["mismatches"][0]["removed_devices"],
        json!([2])
    );
    send(&h, &alice, &Id::random().to_hex(), &id, &[1], b"x")
        .await
        .expect_error(StatusCode::NOT_FOUND, "account_not_found");
    assert_eq!(h.store.rows("envelopes").await, 0);
    // A new device gets a new number; 2 stays retired.
    let bob3 = add_device(&h, &bob).await;
    assert_eq!(bob3.device_number, 3);
    send(&h, &alice, &bob.account_id, &id, &[1, 3], b"x")
        .await
        .expect(StatusCode::OK);
}

async fn self_send_excludes_the_sending_device<S: Store + Rows>(h: Harness<S>) {
    let alice = h.register(None, PASSWORD).await;
    let alice2 = add_device(&h, &alice).await;
    let id = Id::random();
    let r = send(&h, &alice, &alice.account_id, &id, &[1, 2], b"sync")
        .await
        .expect_error(StatusCode::CONFLICT, "mismatched_devices");
    assert_eq!(
        r.body["error"]["mismatches"][0]["extra_devices"],
        json!([1])
    );
    send(&h, &alice, &alice.account_id, &id, &[2], b"sync")
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
    send(&h, &alice, &bob.account_id, &id, &[1], &[0u8; 2049])
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
        json!({"message_id": id, "envelopes": envelopes(&[1], b"x"), "access_key": "AAAA"}),
    ];
    for body in bad {
        let r = post(&h, &to, body.clone(), &alice).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}: {}", r.body);
    }
    h.call(Method::POST, &to, Some(json!({})), None)
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "missing_token");
    post(&h, "/v1/messages/not-an-id", json!({}), &alice)
        .await
        .expect_error(StatusCode::BAD_REQUEST, "invalid_json");
    assert_eq!(h.store.rows("envelopes").await, 0);
    // Full queue: 6 messages, then 507 and nothing more stored.
    for i in 0..6u8 {
        send(&h, &alice, &bob.account_id, &Id::random(), &[1], &[i; 16])
            .await
            .expect(StatusCode::OK);
    }
    send(&h, &alice, &bob.account_id, &Id::random(), &[1], b"seven")
        .await
        .expect_error(StatusCode::INSUFFICIENT_STORAGE, "mailbox_full");
    assert_eq!(h.store.rows("envelopes").await, 6);
    // Acking frees room.
    post(&h, "/v1/messages/ack", json!({"up_to_seq": i64::MAX}), &bob)
        .await
        .expect(StatusCode::OK);
    send(&h, &alice, &bob.account_id, &Id::random(), &[1], b"seven")
        .await
        .expect(StatusCode::OK);
    // Fetch query validation.
    get(&h, "/v1/messages?after=abc", &bob)
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
    put(
        &h,
        "/v1/account/access-key",
        json!({"access_key": b64(&[1u8; 15])}),
        &bob,
    )
    .await
    .expect_error(StatusCode::BAD_REQUEST, "invalid_length");
    put(
        &h,
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
    put(
        &h,
        "/v1/account/access-key",
        json!({"access_key": null}),
        &bob,
    )
    .await
    .expect(StatusCode::NO_CONTENT);
    assert_eq!(h.store.access_key_hash(&id_of(&bob)).await.unwrap(), None);
}

async fn another_accounts_token_cannot_touch_a_queue<S: Store + Rows>(h: Harness<S>) {
    let alice = h.register(None, PASSWORD).await;
    let bob = h.register(None, PASSWORD).await;
    let id = Id::random();
    send(&h, &bob, &alice.account_id, &id, &[1], b"for alice")
        .await
        .expect(StatusCode::OK);
    // Bob acks Alice's message id: his own queue is the only one he can touch.
    let r = post(&h, "/v1/messages/ack", json!({"message_ids": [id]}), &bob)
        .await
        .expect(StatusCode::OK);
    assert_eq!(r.body["deleted"], 0);
    let r = post(&h, "/v1/messages/ack", json!({"up_to_seq": i64::MAX}), &bob)
        .await
        .expect(StatusCode::OK);
    assert_eq!(r.body["deleted"], 0);
    assert!(fetch(&h, &bob).await.is_empty());
    assert_eq!(fetch(&h, &alice).await.len(), 1);
    assert_eq!(h.store.rows("envelopes").await, 1);
}

async fn multi_recipient_payload_is_stored_once<S: Store + Rows>(h: Harness<S>) {
    let bob = h.register(None, PASSWORD).await;
    let bob2 = add_device(&h, &bob).await;
    let carol = h.register(None, PASSWORD).await;
    for (t, k) in [(&bob, [1u8; 16]), (&carol, [2u8; 16])] {
        put(
            &h,
            "/v1/account/access-key",
            json!({"access_key": b64(&k)}),
            t,
        )
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
        post(&h, "/v1/messages/ack", json!({"up_to_seq": i64::MAX}), t)
            .await
            .expect(StatusCode::OK);
    }
    // The last ack removed the shared payload too.
    assert_eq!(h.store.rows("shared_payloads").await, 0);
}

async fn ttl_expiry_by_the_reaper<S: Store + Rows>(h: Harness<S>) {
    let alice = h.register(None, PASSWORD).await;
    let bob = h.register(None, PASSWORD).await;
    send(
        &h,
        &alice,
        &bob.account_id,
        &Id::random(),
        &[1],
        b"expiring",
    )
    .await
    .expect(StatusCode::OK);
    let now = haven_relay::state::now_i64();
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
    add_device(&h, &bob).await;
    let mut live = h.state.ephemeral().subscribe(id_of(&bob), 1);
    let id = Id::random();
    let r = post(
        &h,
        &format!("/v1/messages/{}", bob.account_id),
        json!({"message_id": id, "ephemeral": true, "envelopes": envelopes(&[1, 2], b"typing")}),
        &alice,
    )
    .await
    .expect(StatusCode::OK);
    assert_eq!(r.body["devices"][0]["status"], "delivered");
    assert_eq!(r.body["devices"][1]["status"], "dropped");
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
    let r = post(
        &h,
        &format!("/v1/messages/{}", bob.account_id),
        json!({"message_id": id, "ephemeral": true, "envelopes": envelopes(&[1, 2], b"typing")}),
        &alice,
    )
    .await
    .expect(StatusCode::OK);
    assert_eq!(r.body["devices"][0]["status"], "dropped");
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
    let r1 = send(&h, &alice, &bob.account_id, &m1, &[1], b"first")
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
        }
    );
    let r2 = send(&h, &alice, &bob.account_id, &m2, &[1], b"second")
        .await
        .expect(StatusCode::OK);
    let got = mail(live.try_recv().unwrap());
    assert_eq!(got.seq, r2.body["devices"][0]["seq"].as_i64().unwrap());
    assert_eq!(got.prev_seq, Some(seq1));
    assert_eq!(got.content, b"second");
    // An idempotent resend stores nothing and pushes nothing.
    send(&h, &alice, &bob.account_id, &m2, &[1], b"second")
        .await
        .expect(StatusCode::OK);
    assert!(live.try_recv().is_err());
    // After an ack of everything the queue is empty again: the next push names nothing.
    let fetched = fetch(&h, &bob).await;
    assert_eq!(fetched.len(), 2);
    post(&h, "/v1/messages/ack", json!({"up_to_seq": got.seq}), &bob)
        .await
        .expect(StatusCode::OK);
    send(&h, &alice, &bob.account_id, &Id::random(), &[1], b"third")
        .await
        .expect(StatusCode::OK);
    assert_eq!(mail(live.try_recv().unwrap()).prev_seq, None);
    // A refused send (stale device list) pushes nothing.
    send(&h, &alice, &bob.account_id, &Id::random(), &[1, 2], b"x")
        .await
        .expect_error(StatusCode::CONFLICT, "mismatched_devices");
    assert!(live.try_recv().is_err());
}

/// A device's SDK keys and the upload body for them.
struct DeviceKeys {
    identity: IdentityKeyPair,
    signed: SignedPreKey,
    last_resort: KemPreKey,
    one_time: Vec<OneTimePreKey>,
    kem: Vec<KemPreKey>,
}

fn sdk_keys(seed: u64, opks: u32, kems: u32) -> DeviceKeys {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let identity = IdentityKeyPair::generate(&mut rng);
    let signed = SignedPreKey::generate(&identity, 7, 1_000, &mut rng);
    let last_resort =
        KemPreKey::generate(&identity, 900, KemPreKeyKind::LastResort, 1_000, &mut rng);
    let one_time = OneTimePreKey::generate_batch(100, opks, &mut rng);
    let kem = (0..kems)
        .map(|i| KemPreKey::generate(&identity, 200 + i, KemPreKeyKind::OneTime, 1_000, &mut rng))
        .collect();
    DeviceKeys {
        identity,
        signed,
        last_resort,
        one_time,
        kem,
    }
}

fn kem_json(k: &KemPreKey) -> Value {
    json!({"key_id": k.id(), "public_key": b64(k.public()), "signature": b64(k.signature())})
}

fn upload_body(k: &DeviceKeys) -> Value {
    json!({
        "registration_id": 4242,
        "signed_prekey": {"key_id": k.signed.id(), "public_key": b64(k.signed.public().as_bytes()),
                          "signature": b64(k.signed.signature())},
        "last_resort_kem_prekey": kem_json(&k.last_resort),
        "one_time_prekeys": k.one_time.iter()
            .map(|o| json!({"key_id": o.id(), "public_key": b64(o.public().as_bytes())}))
            .collect::<Vec<_>>(),
        "one_time_kem_prekeys": k.kem.iter().map(kem_json).collect::<Vec<_>>(),
    })
}

/// The digest of PROTOCOL.md §11.11, computed independently from the SDK objects.
fn expected_digest(k: &DeviceKeys, opks: &[&OneTimePreKey], kems: &[&KemPreKey]) -> String {
    let mut d = b"Haven_KeyDigest_v1".to_vec();
    d.push(1);
    d.extend_from_slice(&4242u32.to_be_bytes());
    d.extend_from_slice(&k.signed.id().to_be_bytes());
    d.extend_from_slice(k.signed.public().as_bytes());
    d.extend_from_slice(k.signed.signature());
    d.extend_from_slice(&k.last_resort.id().to_be_bytes());
    d.extend_from_slice(k.last_resort.public());
    d.extend_from_slice(k.last_resort.signature());
    d.extend_from_slice(&(opks.len() as u32).to_be_bytes());
    for o in opks {
        d.extend_from_slice(&o.id().to_be_bytes());
        d.extend_from_slice(o.public().as_bytes());
    }
    d.extend_from_slice(&(kems.len() as u32).to_be_bytes());
    for q in kems {
        d.extend_from_slice(&q.id().to_be_bytes());
        d.extend_from_slice(q.public());
        d.extend_from_slice(q.signature());
    }
    b64(&Sha256::digest(&d))
}

/// Registers an account whose first device has the SDK identity of `k`.
async fn register_sdk<S: Store>(h: &Harness<S>, k: &DeviceKeys) -> Tokens {
    let reply = h
        .try_register_with_key(None, PASSWORD, &k.identity.public().to_bytes())
        .await
        .expect(StatusCode::CREATED);
    Tokens::from_json(&reply.body)
}

async fn key_directory_upload_claim_digest<S: Store + Rows>(h: Harness<S>) {
    let alice = h.register(None, PASSWORD).await;
    let k = sdk_keys(1, 3, 2);
    let bob = register_sdk(&h, &k).await;
    let counts = get(&h, "/v1/keys/counts", &bob)
        .await
        .expect(StatusCode::OK);
    assert_eq!(
        counts.body,
        json!({"one_time_prekeys": 0, "one_time_kem_prekeys": 0, "has_base_keys": false, "low": true})
    );
    get(&h, &format!("/v1/keys/{}", bob.account_id), &alice)
        .await
        .expect_error(StatusCode::NOT_FOUND, "keys_not_found");
    // First upload without the base keys is refused.
    put(
        &h,
        "/v1/keys",
        json!({"signed_prekey": upload_body(&k)["signed_prekey"]}),
        &bob,
    )
    .await
    .expect_error(StatusCode::BAD_REQUEST, "missing_base_keys");
    // Malformed uploads: wrong lengths, duplicate ids, too many, unknown fields.
    let mut bad_len = upload_body(&k);
    bad_len["signed_prekey"]["signature"] = json!(b64(&[0u8; 63]));
    let mut bad_kem = upload_body(&k);
    bad_kem["one_time_kem_prekeys"][0]["public_key"] = json!(b64(&[0u8; 1567]));
    let mut dup = upload_body(&k);
    dup["one_time_prekeys"][1]["key_id"] = dup["one_time_prekeys"][0]["key_id"].clone();
    let mut many = upload_body(&k);
    many["one_time_prekeys"] = Value::Array(
        (0..21)
            .map(|i| json!({"key_id": i, "public_key": b64(&[9u8; 32])}))
            .collect(),
    );
    let mut unknown = upload_body(&k);
    unknown["one_time_prekeys"][0]["signature"] = json!(b64(&[0u8; 64]));
    for (body, code) in [
        (bad_len, "invalid_length"),
        (bad_kem, "invalid_length"),
        (dup, "duplicate_key_id"),
        (many, "too_many_keys"),
        (unknown, "invalid_json"),
    ] {
        put(&h, "/v1/keys", body, &bob)
            .await
            .expect_error(StatusCode::BAD_REQUEST, code);
    }
    assert_eq!(h.store.rows("device_keys").await, 0);
    assert_eq!(h.store.rows("one_time_prekeys").await, 0);
    put(&h, "/v1/keys", upload_body(&k), &bob)
        .await
        .expect(StatusCode::NO_CONTENT);
    let counts = get(&h, "/v1/keys/counts", &bob)
        .await
        .expect(StatusCode::OK);
    assert_eq!(
        counts.body,
        json!({"one_time_prekeys": 3, "one_time_kem_prekeys": 2, "has_base_keys": true, "low": true})
    );
    let digest = get(&h, "/v1/keys/digest", &bob)
        .await
        .expect(StatusCode::OK);
    let all_opk: Vec<&OneTimePreKey> = k.one_time.iter().collect();
    let all_kem: Vec<&KemPreKey> = k.kem.iter().collect();
    assert_eq!(
        digest.body["digest"],
        expected_digest(&k, &all_opk, &all_kem)
    );
    // Re-uploading a stored one-time id: 409, nothing changes.
    let again = json!({"one_time_prekeys": [upload_body(&k)["one_time_prekeys"][0]]});
    put(&h, "/v1/keys", again, &bob)
        .await
        .expect_error(StatusCode::CONFLICT, "key_id_taken");
    assert_eq!(h.store.rows("one_time_prekeys").await, 5);
    // Claims build SDK bundles that verify; one-time keys go once, then the last resort.
    let mut seen_opk = Vec::new();
    for round in 0..4 {
        let r = get(&h, &format!("/v1/keys/{}", bob.account_id), &alice)
            .await
            .expect(StatusCode::OK);
        let b = &r.body["bundles"][0];
        let bytes = STANDARD.decode(b["bundle"].as_str().unwrap()).unwrap();
        let bundle = PreKeyBundle::from_bytes(&bytes).unwrap();
        bundle.verify().unwrap();
        assert_eq!(bundle.identity_key, *k.identity.public());
        assert_eq!((bundle.registration_id, bundle.device_id), (4242, 1));
        assert_eq!(bundle.signed_prekey_id, k.signed.id());
        if let Some((id, key)) = bundle.one_time_prekey {
            let expected = k.one_time.iter().find(|o| o.id() == id).unwrap();
            assert_eq!(key, *expected.public());
            assert!(!seen_opk.contains(&id));
            seen_opk.push(id);
        }
        let last_resort = round >= 2;
        assert_eq!(b["kem_prekey_last_resort"], last_resort);
        let expected_kem = if last_resort {
            &k.last_resort
        } else {
            &k.kem[round]
        };
        assert_eq!(bundle.kem_prekey_id, expected_kem.id());
        assert_eq!(&bundle.kem_prekey[..], &expected_kem.public()[..]);
        assert_eq!(b["one_time_prekey"].is_null(), round >= 3);
    }
    assert_eq!(seen_opk.len(), 3);
    // The digest now covers only what is left.
    let digest = get(&h, "/v1/keys/digest", &bob)
        .await
        .expect(StatusCode::OK);
    assert_eq!(digest.body["digest"], expected_digest(&k, &[], &[]));
    // Rotating only the signed prekey keeps the rest.
    let mut rng = ChaCha20Rng::seed_from_u64(99);
    let newer = SignedPreKey::generate(&k.identity, 8, 2_000, &mut rng);
    put(&h, "/v1/keys", json!({"signed_prekey": {"key_id": 8, "public_key": b64(newer.public().as_bytes()), "signature": b64(newer.signature())}}), &bob)
        .await
        .expect(StatusCode::NO_CONTENT);
    let r = get(&h, &format!("/v1/keys/{}/1", bob.account_id), &alice)
        .await
        .expect(StatusCode::OK);
    let bundle = PreKeyBundle::from_bytes(
        &STANDARD
            .decode(r.body["bundles"][0]["bundle"].as_str().unwrap())
            .unwrap(),
    )
    .unwrap();
    bundle.verify().unwrap();
    assert_eq!(bundle.signed_prekey_id, 8);
    // Errors of the claim routes.
    get(&h, &format!("/v1/keys/{}/9", bob.account_id), &alice)
        .await
        .expect_error(StatusCode::NOT_FOUND, "device_not_found");
    get(&h, &format!("/v1/keys/{}/x", bob.account_id), &alice)
        .await
        .expect_error(StatusCode::BAD_REQUEST, "invalid_device_number");
    get(&h, &format!("/v1/keys/{}", Id::random()), &alice)
        .await
        .expect_error(StatusCode::NOT_FOUND, "account_not_found");
    h.call(
        Method::GET,
        &format!("/v1/keys/{}", bob.account_id),
        None,
        None,
    )
    .await
    .expect_error(StatusCode::UNAUTHORIZED, "missing_token");
}

async fn concurrent_http_claims_hand_out_each_key_once<S: Store + Rows>(h: Harness<S>) {
    let alice = h.register(None, PASSWORD).await;
    let k = sdk_keys(2, 16, 16);
    let bob = register_sdk(&h, &k).await;
    put(&h, "/v1/keys", upload_body(&k), &bob)
        .await
        .expect(StatusCode::NO_CONTENT);
    let h = Arc::new(h);
    let tasks: Vec<_> = (0..64)
        .map(|_| {
            let (h, alice, bob) = (Arc::clone(&h), alice.clone(), bob.account_id.clone());
            tokio::spawn(async move {
                get(&h, &format!("/v1/keys/{bob}"), &alice)
                    .await
                    .expect(StatusCode::OK)
                    .body
            })
        })
        .collect();
    let (mut opks, mut kems, mut last_resort) = (Vec::new(), Vec::new(), 0);
    for t in tasks {
        let body = t.await.unwrap();
        let b = &body["bundles"][0];
        if let Some(id) = b["one_time_prekey"]["key_id"].as_u64() {
            opks.push(id);
        }
        if b["kem_prekey_last_resort"] == true {
            assert_eq!(b["kem_prekey"]["key_id"], 900);
            last_resort += 1;
        } else {
            kems.push(b["kem_prekey"]["key_id"].as_u64().unwrap());
        }
    }
    opks.sort_unstable();
    kems.sort_unstable();
    assert_eq!(opks, (100..116).collect::<Vec<u64>>());
    assert_eq!(kems, (200..216).collect::<Vec<u64>>());
    assert_eq!(last_resort, 48);
    assert_eq!(h.store.rows("one_time_prekeys").await, 0);
}

async fn claims_are_rate_limited_per_target<S: Store>(h: Harness<S>) {
    let alice = h.register(None, PASSWORD).await;
    let k = sdk_keys(3, 0, 0);
    let bob = register_sdk(&h, &k).await;
    put(&h, "/v1/keys", upload_body(&k), &bob)
        .await
        .expect(StatusCode::NO_CONTENT);
    for _ in 0..100 {
        get(&h, &format!("/v1/keys/{}", bob.account_id), &alice)
            .await
            .expect(StatusCode::OK);
    }
    // The limiter refills continuously (100 per minute: one per 0.6 s), so on a slow machine a
    // few more may pass before the refusal; never many.
    let mut extra = 0;
    let r = loop {
        let r = get(&h, &format!("/v1/keys/{}", bob.account_id), &alice).await;
        if r.status != StatusCode::OK {
            break r;
        }
        extra += 1;
        assert!(extra < 20, "the per-target limit never refused");
    };
    let r = r.expect_error(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    assert!(r.headers.contains_key("retry-after"));
}

/// The per-requester claim limit, on a harness whose requester limit (5 per minute) is far below
/// the per-target one, so only the requester's own count can refuse. The limiter refills
/// continuously (GCRA): 5 per minute is one per 12 s, far slower than this test.
async fn claims_are_rate_limited_per_requester<S: Store>(h: Harness<S>) {
    let alice = h.register(None, PASSWORD).await;
    let mut targets = Vec::new();
    for seed in 0..4 {
        let k = sdk_keys(40 + seed, 0, 0);
        let t = register_sdk(&h, &k).await;
        put(&h, "/v1/keys", upload_body(&k), &t)
            .await
            .expect(StatusCode::NO_CONTENT);
        targets.push(t);
    }
    for i in 0..5 {
        let target = &targets[i % 3];
        get(&h, &format!("/v1/keys/{}", target.account_id), &alice)
            .await
            .expect(StatusCode::OK);
    }
    // Target 3 has never been asked for: only the requester's limit can refuse this.
    let r = get(&h, &format!("/v1/keys/{}", targets[3].account_id), &alice)
        .await
        .expect_error(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    assert!(r.headers.contains_key("retry-after"));
    get(&h, &format!("/v1/keys/{}/1", targets[3].account_id), &alice)
        .await
        .expect_error(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    // Another requester is not affected.
    let carol = h.register(None, PASSWORD).await;
    get(&h, &format!("/v1/keys/{}", targets[3].account_id), &carol)
        .await
        .expect(StatusCode::OK);
}

fn requester_limited_settings() -> Settings {
    let mut s = settings();
    s.keys.claims_per_minute_per_requester = 5;
    s.keys.claims_per_minute_per_target = 1000;
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_are_rate_limited_per_requester_sqlite() {
    let (store, guard) = common::sqlite_store().await.unwrap();
    let h = Harness::with_settings(store, guard, requester_limited_settings()).await;
    claims_are_rate_limited_per_requester(h).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_are_rate_limited_per_requester_postgres() {
    let Some((store, guard)) = common::pg_store().await else {
        return;
    };
    let h = Harness::with_settings(store, guard, requester_limited_settings()).await;
    claims_are_rate_limited_per_requester(h).await;
}

async fn unknown_accounts_get_clear_errors_and_change_nothing<S: Store + Rows>(h: Harness<S>) {
    let alice = h.register(None, PASSWORD).await;
    let bob = h.register(None, PASSWORD).await;
    put(
        &h,
        "/v1/account/access-key",
        json!({"access_key": b64(&[5u8; 16])}),
        &bob,
    )
    .await
    .expect(StatusCode::NO_CONTENT);
    let nobody = Id::random().to_hex();
    let id = Id::random();
    // Logged-in sends (stored and ephemeral): 404.
    send(&h, &alice, &nobody, &id, &[1], b"x")
        .await
        .expect_error(StatusCode::NOT_FOUND, "account_not_found");
    post(
        &h,
        &format!("/v1/messages/{nobody}"),
        json!({"message_id": id, "ephemeral": true, "envelopes": envelopes(&[1], b"typing")}),
        &alice,
    )
    .await
    .expect_error(StatusCode::NOT_FOUND, "account_not_found");
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
    get(&h, &format!("/v1/keys/{nobody}"), &alice)
        .await
        .expect_error(StatusCode::NOT_FOUND, "account_not_found");
    get(&h, &format!("/v1/keys/{nobody}/1"), &alice)
        .await
        .expect_error(StatusCode::NOT_FOUND, "account_not_found");
    assert_eq!(h.store.rows("envelopes").await, 0);
    assert_eq!(h.store.rows("shared_payloads").await, 0);
    assert!(fetch(&h, &bob).await.is_empty());
}

async fn sender_certificate_validates_in_the_sdk<S: Store>(h: Harness<S>) {
    let k = sdk_keys(4, 0, 0);
    let alice = register_sdk(&h, &k).await;
    let key = h
        .call(Method::GET, "/v1/certificate/key", None, None)
        .await
        .expect(StatusCode::OK);
    let relay_key: [u8; 32] = STANDARD
        .decode(key.body["public_key"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    let relay_key = ed25519_dalek::VerifyingKey::from_bytes(&relay_key).unwrap();
    let r = post(&h, "/v1/certificate", json!({}), &alice)
        .await
        .expect(StatusCode::OK);
    let bytes = STANDARD
        .decode(r.body["certificate"].as_str().unwrap())
        .unwrap();
    assert_eq!(bytes.len(), haven_sdk::sealed_sender::CERTIFICATE_LEN);
    let cert = SenderCertificate::from_bytes(&bytes).unwrap();
    let now = haven_relay::state::now_secs();
    cert.validate(&relay_key, now).unwrap();
    assert_eq!(cert.sender.account_id, *id_of(&alice).as_bytes());
    assert_eq!(cert.sender.device_id, 1);
    assert_eq!(cert.identity_key, *k.identity.public());
    assert_eq!(cert.expires, r.body["expires"].as_u64().unwrap());
    assert!(cert.expires > now && cert.expires <= now + 86_400);
    let other = ed25519_dalek::SigningKey::from_bytes(&[5u8; 32]).verifying_key();
    assert!(matches!(
        cert.validate(&other, now),
        Err(haven_sdk::sealed_sender::SealedSenderError::BadCertificateSignature)
    ));
    // A sealed envelope carrying it opens at the recipient, who trusts the relay key.
    let bob_keys = sdk_keys(5, 0, 0);
    let mut rng = ChaCha20Rng::seed_from_u64(6);
    let sealed = haven_sdk::seal_sender(
        &k.identity,
        &cert,
        bob_keys.identity.public(),
        1,
        b"hi bob",
        &mut rng,
    )
    .unwrap();
    let opened = haven_sdk::open_sealed(&bob_keys.identity, &relay_key, &sealed, now).unwrap();
    assert_eq!(opened.content, b"hi bob");
    // A device whose identity key is not an SDK key gets a clear refusal.
    let plain = h.register(None, PASSWORD).await;
    post(&h, "/v1/certificate", json!({}), &plain)
        .await
        .expect_error(StatusCode::CONFLICT, "identity_key_unsupported");
    h.call(Method::POST, "/v1/certificate", None, None)
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "missing_token");
}

async fn unlink_and_account_deletion_purge_keys_and_mail<S: Store + Rows>(h: Harness<S>) {
    let alice = h.register(None, PASSWORD).await;
    let k = sdk_keys(7, 2, 2);
    let bob = register_sdk(&h, &k).await;
    let bob2 = add_device(&h, &bob).await;
    let k2 = sdk_keys(8, 2, 2);
    for t in [&bob, &bob2] {
        let keys = if t.device_number == 1 { &k } else { &k2 };
        put(&h, "/v1/keys", upload_body(keys), t)
            .await
            .expect(StatusCode::NO_CONTENT);
    }
    send(&h, &alice, &bob.account_id, &Id::random(), &[1, 2], b"mail")
        .await
        .expect(StatusCode::OK);
    assert_eq!(h.store.rows("device_keys").await, 2);
    assert_eq!(h.store.rows("one_time_prekeys").await, 8);
    assert_eq!(h.store.rows("envelopes").await, 2);
    h.call(
        Method::DELETE,
        &format!("/v1/devices/{}", bob2.device_id),
        None,
        Some(&bob.access),
    )
    .await
    .expect(StatusCode::NO_CONTENT);
    assert_eq!(h.store.rows("device_keys").await, 1);
    assert_eq!(h.store.rows("one_time_prekeys").await, 4);
    assert_eq!(h.store.rows("envelopes").await, 1);
    assert_eq!(
        h.store.key_counts(&id_of(&bob), 2).await.unwrap(),
        Default::default()
    );
    h.call(Method::DELETE, "/v1/account", None, Some(&bob.access))
        .await
        .expect(StatusCode::NO_CONTENT);
    assert_eq!(h.store.rows("device_keys").await, 0);
    assert_eq!(h.store.rows("one_time_prekeys").await, 0);
    assert_eq!(h.store.rows("envelopes").await, 0);
}
