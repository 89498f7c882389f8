//! Abuse limits of issue 19 on both engines: the per-(sender, recipient) quota on logged-in
//! sends and the per-device rate of prekey uploads. Every refusal is followed by a check that
//! nothing was stored.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common;
use crate::common::Api as _;
use crate::common::{Harness, Rows, Tokens, b64};

use axum::http::StatusCode;
use ed25519_dalek::{Signer as _, SigningKey};
use haven_protocol::prekeys::{KEY_TYPE_ML_KEM_1024, KEY_TYPE_X25519, prekey_signature_message};
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
    junk_prekeys_are_refused,
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

/// A device identity as the SDK makes it (Ed25519 || X25519), with its signing half.
fn identity(seed: u8) -> (SigningKey, [u8; 64]) {
    let signing = SigningKey::from_bytes(&[seed; 32]);
    let mut ik = [seed; 64];
    ik[..32].copy_from_slice(signing.verifying_key().as_bytes());
    (signing, ik)
}

/// An upload whose every key is signed by `id` (PROTOCOL.md §2.1), as a device makes it.
fn upload(id: &(SigningKey, [u8; 64]), first_id: u32, n: u32) -> Value {
    let (signing, ik) = id;
    let sign = |kind: u8, key_id: u32, public: &[u8]| {
        b64(&signing
            .sign(&prekey_signature_message(ik, kind, key_id, public))
            .to_bytes())
    };
    json!({
        "registration_id": 7,
        "signed_prekey": {"key_id": first_id, "public_key": b64(&[1u8; 32]),
                          "signature": sign(KEY_TYPE_X25519, first_id, &[1u8; 32])},
        "last_resort_kem_prekey": {"key_id": first_id, "public_key": b64(&[3u8; 1568]),
                                   "signature": sign(KEY_TYPE_ML_KEM_1024, first_id, &[3u8; 1568])},
        "one_time_prekeys": (0..n).map(|i| json!({"key_id": first_id + i, "public_key": b64(&[5u8; 32]),
                                                  "signature": sign(KEY_TYPE_X25519, first_id + i, &[5u8; 32])}))
            .collect::<Vec<_>>(),
    })
}

async fn counts<S: Store>(h: &Harness<S>, t: &Tokens) -> Value {
    h.get_as("/v1/keys/counts", t)
        .await
        .expect(StatusCode::OK)
        .body
}

async fn prekey_uploads_are_rate_limited_per_device<S: Store + Rows>(h: Harness<S>) {
    let (a1, a2) = (identity(11), identity(12));
    let alice = Tokens::from_json(
        &h.try_register_with_key(None, PASSWORD, &a1.1)
            .await
            .expect(StatusCode::CREATED)
            .body,
    );
    let alice2 = Tokens::from_json(
        &h.try_login(
            json!({ "account_id": alice.account_id }),
            PASSWORD,
            json!({ "device": { "identity_key": b64(&a2.1) } }),
        )
        .await
        .expect(StatusCode::OK)
        .body,
    );
    for i in 0..3u32 {
        h.put_as("/v1/keys", upload(&a1, 100 * (i + 1), 2), &alice)
            .await
            .expect(StatusCode::NO_CONTENT);
    }
    assert_eq!(counts(&h, &alice).await["one_time_prekeys"], 6);
    // A fourth upload within the hour: 429, nothing of it stored.
    h.put_as("/v1/keys", upload(&a1, 900, 5), &alice)
        .await
        .expect_error(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    assert_eq!(counts(&h, &alice).await["one_time_prekeys"], 6);
    // Per device: the account's other device still uploads.
    h.put_as("/v1/keys", upload(&a2, 100, 2), &alice2)
        .await
        .expect(StatusCode::NO_CONTENT);
    assert_eq!(counts(&h, &alice2).await["one_time_prekeys"], 2);
    // An upload over the per-upload bound (20 in these settings) is refused before it counts.
    h.put_as("/v1/keys", upload(&a2, 500, 21), &alice2)
        .await
        .expect_error(StatusCode::BAD_REQUEST, "too_many_keys");
}

/// A thief of a device's access token cannot store keys the device did not sign: keys signed by
/// another identity, or junk, are refused and nothing of the upload is stored (PROTOCOL.md
/// §11.11).
async fn junk_prekeys_are_refused<S: Store + Rows>(h: Harness<S>) {
    let (mine, other) = (identity(21), identity(22));
    let t = Tokens::from_json(
        &h.try_register_with_key(None, PASSWORD, &mine.1)
            .await
            .expect(StatusCode::CREATED)
            .body,
    );
    // Signed by another identity (every key well formed).
    h.put_as("/v1/keys", upload(&other, 100, 3), &t)
        .await
        .expect_error(StatusCode::BAD_REQUEST, "invalid_signature");
    // The device's own upload with one junk one-time key, or one without its signature.
    let mut junk = upload(&mine, 100, 3);
    junk["one_time_prekeys"][2]["public_key"] = json!(b64(&[6u8; 32]));
    h.put_as("/v1/keys", junk, &t)
        .await
        .expect_error(StatusCode::BAD_REQUEST, "invalid_signature");
    let mut unsigned = upload(&mine, 100, 3);
    unsigned["one_time_prekeys"][0]
        .as_object_mut()
        .unwrap()
        .remove("signature");
    h.put_as("/v1/keys", unsigned, &t)
        .await
        .expect_error(StatusCode::BAD_REQUEST, "invalid_signature");
    let mut kem = upload(&mine, 100, 3);
    kem["last_resort_kem_prekey"]["public_key"] = json!(b64(&[7u8; 1568]));
    h.put_as("/v1/keys", kem, &t)
        .await
        .expect_error(StatusCode::BAD_REQUEST, "invalid_signature");
    assert_eq!(h.store.rows("one_time_prekeys").await, 0);
    assert_eq!(h.store.rows("device_keys").await, 0);
    // The device's own keys are stored.
    h.put_as("/v1/keys", upload(&mine, 100, 3), &t)
        .await
        .expect(StatusCode::NO_CONTENT);
    assert_eq!(counts(&h, &t).await["one_time_prekeys"], 3);
}
