//! The key directory and sender certificates as the SDK reads them: keys made by the SDK are
//! uploaded, claimed (each one-time key handed out once, even under concurrent claims), digested
//! and rate limited; the bundles the relay serves parse and verify in the SDK; a certificate the
//! relay issues validates in the SDK and carries a sealed-sender message. On SQLite and Postgres.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use axum::http::{Method, StatusCode};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use haven_relay::db::Store;
use haven_relay::ids::Id;
use haven_relay::settings::Settings;
use haven_sdk::prekeys::{
    KEY_TYPE_X25519, KemPreKey, KemPreKeyKind, OneTimePreKey, PreKeyBundle, SignedPreKey,
    prekey_signature_message,
};
use haven_sdk::{IdentityKeyPair, SenderCertificate};
use haven_testkit::harness::{Api as _, Harness, Rows, Tokens, b64, key_directory_settings};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

const PASSWORD: &str = "pw for key directory tests";

haven_testkit::on_both_backends!(
    settings = super::key_directory_settings;
    key_directory_upload_claim_digest,
    concurrent_http_claims_hand_out_each_key_once,
    claims_are_rate_limited_per_target,
    sender_certificate_validates_in_the_sdk,
    unlink_and_account_deletion_purge_keys_and_mail,
);

fn id_of(t: &Tokens) -> Id {
    t.account_id.parse().unwrap()
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
            .map(|o| json!({"key_id": o.id(), "public_key": b64(o.public().as_bytes()),
                            "signature": b64(&k.identity.sign(&prekey_signature_message(
                                k.identity.public(), KEY_TYPE_X25519, o.id(), o.public().as_bytes())))}))
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
    let counts = h
        .get_as("/v1/keys/counts", &bob)
        .await
        .expect(StatusCode::OK);
    assert_eq!(
        counts.body,
        json!({"one_time_prekeys": 0, "one_time_kem_prekeys": 0, "has_base_keys": false, "low": true})
    );
    h.get_as(&format!("/v1/keys/{}", bob.account_id), &alice)
        .await
        .expect_error(StatusCode::NOT_FOUND, "keys_not_found");
    // First upload without the base keys is refused.
    h.put_as(
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
    unknown["one_time_prekeys"][0]["expires"] = json!(5);
    // Keys the device did not sign (a stolen token's junk): refused, nothing stored.
    let mut junk = upload_body(&k);
    junk["one_time_prekeys"][0]["signature"] = json!(b64(&[0u8; 64]));
    let mut unsigned = upload_body(&k);
    unsigned["one_time_prekeys"][1]
        .as_object_mut()
        .unwrap()
        .remove("signature");
    let mut swapped = upload_body(&k);
    swapped["signed_prekey"]["key_id"] = json!(8);
    let mut foreign = upload_body(&sdk_keys(2, 3, 2));
    foreign["registration_id"] = json!(4242);
    for (body, code) in [
        (bad_len, "invalid_length"),
        (bad_kem, "invalid_length"),
        (dup, "duplicate_key_id"),
        (many, "too_many_keys"),
        (unknown, "invalid_json"),
        (junk, "invalid_signature"),
        (unsigned, "invalid_signature"),
        (swapped, "invalid_signature"),
        (foreign, "invalid_signature"),
    ] {
        h.put_as("/v1/keys", body, &bob)
            .await
            .expect_error(StatusCode::BAD_REQUEST, code);
    }
    assert_eq!(h.store.rows("device_keys").await, 0);
    assert_eq!(h.store.rows("one_time_prekeys").await, 0);
    h.put_as("/v1/keys", upload_body(&k), &bob)
        .await
        .expect(StatusCode::NO_CONTENT);
    let counts = h
        .get_as("/v1/keys/counts", &bob)
        .await
        .expect(StatusCode::OK);
    assert_eq!(
        counts.body,
        json!({"one_time_prekeys": 3, "one_time_kem_prekeys": 2, "has_base_keys": true, "low": true})
    );
    let digest = h
        .get_as("/v1/keys/digest", &bob)
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
    h.put_as("/v1/keys", again, &bob)
        .await
        .expect_error(StatusCode::CONFLICT, "key_id_taken");
    assert_eq!(h.store.rows("one_time_prekeys").await, 5);
    // Claims build SDK bundles that verify; one-time keys go once, then the last resort.
    let mut seen_opk = Vec::new();
    for round in 0..4 {
        let r = h
            .get_as(&format!("/v1/keys/{}", bob.account_id), &alice)
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
    let digest = h
        .get_as("/v1/keys/digest", &bob)
        .await
        .expect(StatusCode::OK);
    assert_eq!(digest.body["digest"], expected_digest(&k, &[], &[]));
    // Rotating only the signed prekey keeps the rest.
    let mut rng = ChaCha20Rng::seed_from_u64(99);
    let newer = SignedPreKey::generate(&k.identity, 8, 2_000, &mut rng);
    h.put_as("/v1/keys", json!({"signed_prekey": {"key_id": 8, "public_key": b64(newer.public().as_bytes()), "signature": b64(newer.signature())}}), &bob)
        .await
        .expect(StatusCode::NO_CONTENT);
    let r = h
        .get_as(&format!("/v1/keys/{}/1", bob.account_id), &alice)
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
    h.get_as(&format!("/v1/keys/{}/9", bob.account_id), &alice)
        .await
        .expect_error(StatusCode::NOT_FOUND, "device_not_found");
    h.get_as(&format!("/v1/keys/{}/x", bob.account_id), &alice)
        .await
        .expect_error(StatusCode::BAD_REQUEST, "invalid_device_number");
    h.get_as(&format!("/v1/keys/{}", Id::random()), &alice)
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
    h.put_as("/v1/keys", upload_body(&k), &bob)
        .await
        .expect(StatusCode::NO_CONTENT);
    let h = Arc::new(h);
    let tasks: Vec<_> = (0..64)
        .map(|_| {
            let (h, alice, bob) = (Arc::clone(&h), alice.clone(), bob.account_id.clone());
            tokio::spawn(async move {
                h.get_as(&format!("/v1/keys/{bob}"), &alice)
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
    h.put_as("/v1/keys", upload_body(&k), &bob)
        .await
        .expect(StatusCode::NO_CONTENT);
    for _ in 0..100 {
        h.get_as(&format!("/v1/keys/{}", bob.account_id), &alice)
            .await
            .expect(StatusCode::OK);
    }
    // The limiter refills continuously (100 per minute: one per 0.6 s), so on a slow machine a
    // few more may pass before the refusal; never many.
    let mut extra = 0;
    let r = loop {
        let r = h
            .get_as(&format!("/v1/keys/{}", bob.account_id), &alice)
            .await;
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
        h.put_as("/v1/keys", upload_body(&k), &t)
            .await
            .expect(StatusCode::NO_CONTENT);
        targets.push(t);
    }
    for i in 0..5 {
        let target = &targets[i % 3];
        h.get_as(&format!("/v1/keys/{}", target.account_id), &alice)
            .await
            .expect(StatusCode::OK);
    }
    // Target 3 has never been asked for: only the requester's limit can refuse this.
    let r = h
        .get_as(&format!("/v1/keys/{}", targets[3].account_id), &alice)
        .await
        .expect_error(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    assert!(r.headers.contains_key("retry-after"));
    h.get_as(&format!("/v1/keys/{}/1", targets[3].account_id), &alice)
        .await
        .expect_error(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    // Another requester is not affected.
    let carol = h.register(None, PASSWORD).await;
    h.get_as(&format!("/v1/keys/{}", targets[3].account_id), &carol)
        .await
        .expect(StatusCode::OK);
}

fn requester_limited_settings() -> Settings {
    let mut s = key_directory_settings();
    s.keys.claims_per_minute_per_requester = 5;
    s.keys.claims_per_minute_per_target = 1000;
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_are_rate_limited_per_requester_sqlite() {
    let (store, guard) = haven_testkit::harness::sqlite_store().await.unwrap();
    let h = Harness::with_settings(store, guard, requester_limited_settings()).await;
    claims_are_rate_limited_per_requester(h).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_are_rate_limited_per_requester_postgres() {
    let Some((store, guard)) = haven_testkit::harness::pg_store().await else {
        return;
    };
    let h = Harness::with_settings(store, guard, requester_limited_settings()).await;
    claims_are_rate_limited_per_requester(h).await;
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
    let r = h
        .post_as("/v1/certificate", json!({}), &alice)
        .await
        .expect(StatusCode::OK);
    let bytes = STANDARD
        .decode(r.body["certificate"].as_str().unwrap())
        .unwrap();
    assert_eq!(bytes.len(), haven_sdk::sealed_sender::CERTIFICATE_LEN);
    let cert = SenderCertificate::from_bytes(&bytes).unwrap();
    let now = haven_relay::clock::now_secs();
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
    h.post_as("/v1/certificate", json!({}), &plain)
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
    let k2 = sdk_keys(8, 2, 2);
    // The second device has its own SDK identity: the relay takes only keys a device signed.
    let bob2 = Tokens::from_json(
        &h.try_login(
            json!({ "account_id": bob.account_id }),
            PASSWORD,
            json!({ "device": { "identity_key": b64(&k2.identity.public().to_bytes()) } }),
        )
        .await
        .expect(StatusCode::OK)
        .body,
    );
    for t in [&bob, &bob2] {
        let keys = if t.device_number == 1 { &k } else { &k2 };
        h.put_as("/v1/keys", upload_body(keys), t)
            .await
            .expect(StatusCode::NO_CONTENT);
    }
    h.send_as(&alice, &bob.account_id, &Id::random(), &[1, 2], b"mail")
        .await
        .expect(StatusCode::OK);
    assert_eq!(h.store.rows("device_keys").await, 2);
    assert_eq!(h.store.rows("one_time_prekeys").await, 8);
    assert_eq!(h.store.rows("envelopes").await, 2);
    h.unlink_device(&bob, &bob2.device_id, PASSWORD)
        .await
        .expect(StatusCode::NO_CONTENT);
    assert_eq!(h.store.rows("device_keys").await, 1);
    assert_eq!(h.store.rows("one_time_prekeys").await, 4);
    assert_eq!(h.store.rows("envelopes").await, 1);
    assert_eq!(
        h.store.key_counts(&id_of(&bob), 2).await.unwrap(),
        Default::default()
    );
    let proof = h.fresh_auth(&bob, PASSWORD).await;
    h.call_fresh(
        Method::DELETE,
        "/v1/account",
        None,
        &bob.access,
        Some(&proof),
    )
    .await
    .expect(StatusCode::NO_CONTENT);
    assert_eq!(h.store.rows("device_keys").await, 0);
    assert_eq!(h.store.rows("one_time_prekeys").await, 0);
    assert_eq!(h.store.rows("envelopes").await, 0);
}
