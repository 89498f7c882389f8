//! Abuse limits of issue 19 on both engines: the per-(sender, recipient) quota on logged-in
//! sends and the per-device rate of prekey uploads. Every refusal is followed by a check that
//! nothing was stored.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common;
use crate::common::Api as _;
use crate::common::{Harness, Rows, Tokens, b64};

use axum::http::StatusCode;
use haven_relay::db::Store;
use haven_relay::ids::Id;
use haven_relay::settings::Settings;
use haven_testkit::harness::envelopes;
use serde_json::{Value, json};

const PASSWORD: &str = "pw for abuse limit tests";

fn settings() -> Settings {
    let mut s = haven_testkit::harness::key_directory_settings();
    s.mail.pair_sends_per_minute = 3;
    s.mail.pair_sends_per_day = 1000;
    s.keys.uploads_per_hour = 3;
    s
}

common::on_both_backends!(
    settings = super::settings;
    one_sender_cannot_flood_another_accounts_mailbox,
    prekey_uploads_are_rate_limited_per_device,
);

async fn one_sender_cannot_flood_another_accounts_mailbox<S: Store + Rows>(h: Harness<S>) {
    let alice = h.register(None, PASSWORD).await;
    let bob = h.register(None, PASSWORD).await;
    let carol = h.register(None, PASSWORD).await;
    for i in 0..3u8 {
        h.send_as(&alice, &bob.account_id, &Id::random(), &[1], &[i + 1])
            .await
            .expect(StatusCode::OK);
    }
    let refused = h
        .send_as(&alice, &bob.account_id, &Id::random(), &[1], b"4")
        .await
        .expect_error(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    assert!(refused.body["error"]["message"].is_string());
    assert_eq!(
        h.store.rows("envelopes").await,
        3,
        "nothing stored when refused"
    );
    // Per pair: another sender, and the same sender to another recipient, still get through.
    h.send_as(&carol, &bob.account_id, &Id::random(), &[1], b"c")
        .await
        .expect(StatusCode::OK);
    h.send_as(&alice, &carol.account_id, &Id::random(), &[1], b"a")
        .await
        .expect(StatusCode::OK);
    // Sealed sends are limited per recipient (`sealed_sends_per_minute`), not by this quota.
    h.put_as(
        "/v1/account/access-key",
        json!({"access_key": b64(&[3u8; 16])}),
        &bob,
    )
    .await
    .expect(StatusCode::NO_CONTENT);
    h.post(
        &format!("/v1/messages/{}/sealed", bob.account_id),
        json!({"message_id": Id::random(), "access_key": b64(&[3u8; 16]),
               "envelopes": envelopes(&[1], b"sealed")}),
    )
    .await
    .expect(StatusCode::OK);
    assert_eq!(h.store.rows("envelopes").await, 6);
}

fn upload(first_id: u32, n: u32) -> Value {
    json!({
        "registration_id": 7,
        "signed_prekey": {"key_id": first_id, "public_key": b64(&[1u8; 32]), "signature": b64(&[2u8; 64])},
        "last_resort_kem_prekey": {"key_id": first_id, "public_key": b64(&[3u8; 1568]), "signature": b64(&[4u8; 64])},
        "one_time_prekeys": (0..n).map(|i| json!({"key_id": first_id + i, "public_key": b64(&[5u8; 32])})).collect::<Vec<_>>(),
    })
}

async fn counts<S: Store>(h: &Harness<S>, t: &Tokens) -> Value {
    h.get_as("/v1/keys/counts", t)
        .await
        .expect(StatusCode::OK)
        .body
}

async fn prekey_uploads_are_rate_limited_per_device<S: Store + Rows>(h: Harness<S>) {
    let alice = h.register(None, PASSWORD).await;
    let alice2 = h.add_device(&alice, PASSWORD).await;
    for i in 0..3u32 {
        h.put_as("/v1/keys", upload(100 * (i + 1), 2), &alice)
            .await
            .expect(StatusCode::NO_CONTENT);
    }
    assert_eq!(counts(&h, &alice).await["one_time_prekeys"], 6);
    // A fourth upload within the hour: 429, nothing of it stored.
    h.put_as("/v1/keys", upload(900, 5), &alice)
        .await
        .expect_error(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    assert_eq!(counts(&h, &alice).await["one_time_prekeys"], 6);
    // Per device: the account's other device still uploads.
    h.put_as("/v1/keys", upload(100, 2), &alice2)
        .await
        .expect(StatusCode::NO_CONTENT);
    assert_eq!(counts(&h, &alice2).await["one_time_prekeys"], 2);
    // An upload over the per-upload bound (20 in these settings) is refused before it counts.
    h.put_as("/v1/keys", upload(500, 21), &alice2)
        .await
        .expect_error(StatusCode::BAD_REQUEST, "too_many_keys");
}
