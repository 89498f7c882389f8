//! TOTP secrets at rest (issue 19): sealed under a key kept out of the database, bound to their
//! account; secrets stored in the clear by an earlier version keep working and are sealed; the
//! key rotates. On SQLite and Postgres.

use crate::api::{base32_decode, early_in_step};
use crate::common;
use crate::common::{Api as _, Harness};
use axum::http::{Method, StatusCode};
use haven_relay::accounts::totp;
use haven_relay::db::Store;
use haven_relay::ids::Id;
use haven_relay::secrets::{Key32, TotpKeyring};
use serde_json::json;

const PASSWORD: &str = "correct horse battery staple";

/// The `totp_secret` column of `id`, as the store's SQL reads it (no decoding).
async fn column<S: Store>(h: &Harness<S>, id: &Id) -> Vec<u8> {
    h.store
        .account(id)
        .await
        .unwrap()
        .unwrap()
        .totp_secret
        .map(|s| s.expose().to_vec())
        .unwrap_or_default()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn keyring(current: u8, previous: &[u8]) -> TotpKeyring {
    TotpKeyring {
        current: Key32::from_bytes([current; 32]),
        previous: previous
            .iter()
            .map(|b| Key32::from_bytes([*b; 32]))
            .collect(),
    }
}

async fn a_database_dump_does_not_hold_totp_secrets<S: Store>(h: Harness<S>) {
    let alice = h.register(Some("alice"), PASSWORD).await;
    let id: Id = alice.account_id.parse().unwrap();
    let token = Some(alice.access.as_str());
    let setup = h
        .call(Method::POST, "/v1/account/totp/setup", None, token)
        .await
        .expect(StatusCode::OK);
    let secret = base32_decode(setup.body["secret"].as_str().unwrap());
    assert_eq!(secret.len(), totp::SECRET_LEN);
    let stored = column(&h, &id).await;
    assert!(
        !contains(&stored, &secret),
        "the pending TOTP secret is stored in the clear"
    );
    assert_eq!(stored.len(), 69, "0x01 || key id || nonce || sealed secret");
    assert_eq!(stored[0], 0x01);
    // And it works: enabling, then logging in with a code.
    let t = early_in_step().await;
    h.call(
        Method::POST,
        "/v1/account/totp/verify",
        Some(json!({"code": totp::code_at(&secret, t - 30)})),
        token,
    )
    .await
    .expect(StatusCode::NO_CONTENT);
    h.try_login(
        json!({"account_id": alice.account_id}),
        PASSWORD,
        json!({"device_id": alice.device_id, "totp_code": totp::code_at(&secret, t)}),
    )
    .await
    .expect(StatusCode::OK);
    assert!(!contains(&column(&h, &id).await, &secret));
}

async fn a_secret_stored_in_the_clear_still_works_and_is_sealed_on_use<S: Store>(h: Harness<S>) {
    let alice = h.register(Some("alice"), PASSWORD).await;
    let id: Id = alice.account_id.parse().unwrap();
    // A row as an earlier version wrote it: the 20 secret bytes themselves.
    let secret = [0x5au8; totp::SECRET_LEN];
    assert!(h.store.set_totp_pending(&id, &secret).await.unwrap());
    h.store.set_totp_enabled(&id, true).await.unwrap();
    assert_eq!(column(&h, &id).await, secret);
    let t = early_in_step().await;
    h.try_login(
        json!({"account_id": alice.account_id}),
        PASSWORD,
        json!({"device_id": alice.device_id, "totp_code": totp::code_at(&secret, t)}),
    )
    .await
    .expect(StatusCode::OK);
    let stored = column(&h, &id).await;
    assert!(!contains(&stored, &secret), "sealed after its first use");
    let opened = totp::open(&h.state.secrets().totp, &id, &stored).unwrap();
    assert!(opened.current);
    assert_eq!(&opened.secret[..], &secret[..]);
    // And the sealed row keeps working.
    h.try_login(
        json!({"account_id": alice.account_id}),
        PASSWORD,
        json!({"device_id": alice.device_id, "totp_code": totp::code_at(&secret, t + 30)}),
    )
    .await
    .expect(StatusCode::OK);
}

async fn start_up_seals_old_rows_and_rotates_keys<S: Store>(h: Harness<S>) {
    let mut ids = Vec::new();
    for i in 0..3u8 {
        let t = h.register(None, PASSWORD).await;
        let id: Id = t.account_id.parse().unwrap();
        assert!(
            h.store
                .set_totp_pending(&id, &[i; totp::SECRET_LEN])
                .await
                .unwrap()
        );
        ids.push(id);
    }
    let old = keyring(1, &[]);
    let done = totp::reseal_all(&h.store, &old).await.unwrap();
    assert_eq!((done.resealed, done.current, done.unreadable), (3, 0, 0));
    for (i, id) in ids.iter().enumerate() {
        let stored = column(&h, id).await;
        assert!(!contains(&stored, &[i as u8; totp::SECRET_LEN]));
        assert!(totp::open(&old, id, &stored).unwrap().current);
    }
    // Idempotent.
    let again = totp::reseal_all(&h.store, &old).await.unwrap();
    assert_eq!((again.resealed, again.current), (0, 3));

    // Rotation: the new key with the old one listed; rows are sealed again under the new key.
    let rotated = keyring(2, &[1]);
    let stored = column(&h, &ids[0]).await;
    assert!(!totp::open(&rotated, &ids[0], &stored).unwrap().current);
    let done = totp::reseal_all(&h.store, &rotated).await.unwrap();
    assert_eq!((done.resealed, done.current, done.unreadable), (3, 0, 0));
    let new_only = keyring(2, &[]);
    for (i, id) in ids.iter().enumerate() {
        let opened = totp::open(&new_only, id, &column(&h, id).await).unwrap();
        assert!(opened.current);
        assert_eq!(&opened.secret[..], &[i as u8; totp::SECRET_LEN][..]);
    }
    // Without the key, nothing opens; the rows are counted and left alone.
    let other = keyring(3, &[]);
    assert_eq!(
        totp::open(&other, &ids[0], &column(&h, &ids[0]).await).err(),
        Some(totp::SealError::UnknownKey)
    );
    let before = column(&h, &ids[0]).await;
    let done = totp::reseal_all(&h.store, &other).await.unwrap();
    assert_eq!((done.resealed, done.unreadable), (0, 3));
    assert_eq!(column(&h, &ids[0]).await, before);

    // A sealed row copied to another account does not open there.
    let copied = column(&h, &ids[0]).await;
    let target = ids[1];
    let current = column(&h, &target).await;
    assert!(
        h.store
            .replace_totp_secret(&target, &current, &copied)
            .await
            .unwrap()
    );
    assert_eq!(
        totp::open(&new_only, &target, &copied).err(),
        Some(totp::SealError::Forged)
    );
    // The replacement is conditional on the value read.
    assert!(
        !h.store
            .replace_totp_secret(&target, &current, &copied)
            .await
            .unwrap()
    );
}

common::on_both_backends!(
    a_database_dump_does_not_hold_totp_secrets,
    a_secret_stored_in_the_clear_still_works_and_is_sealed_on_use,
    start_up_seals_old_rows_and_rotates_keys,
);
