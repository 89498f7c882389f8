//! Account identity on the relay (PROTOCOL.md §11.18, §15): signed device lists stored and
//! served but never forged, rolled back or mixed up between accounts; device linking by an
//! existing device's approval (link tokens, provisioning boxes), on SQLite and Postgres.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common;
use crate::common::{Api as _, Harness, Tokens, b64};
use axum::http::{Method, StatusCode};
use ed25519_dalek::{Signer as _, SigningKey};
use haven_protocol::account::{DeviceListBody, ListedDevice};
use haven_relay::accounts::device_lists::{FillOutcome, PutListOutcome};
use haven_relay::db::Store;
use haven_relay::ids::Id;
use rand_chacha::ChaCha20Rng;
use rand_core::{Rng as _, SeedableRng as _};
use serde_json::json;

/// A device identity key: the relay treats it as opaque bytes.
type IdentityKey = [u8; 64];

/// An account key: the relay only verifies Ed25519 signatures with it.
struct AccountKey(SigningKey);

impl AccountKey {
    fn generate(rng: &mut ChaCha20Rng) -> Self {
        let mut seed = [0u8; 32];
        rng.fill_bytes(&mut seed);
        Self(SigningKey::from_bytes(&seed))
    }

    /// A signed device list (PROTOCOL.md §15.2) built from the layout, as a client would.
    fn sign(
        &self,
        account: [u8; 16],
        version: u64,
        issued_at: u64,
        devices: &[(u32, IdentityKey)],
    ) -> Vec<u8> {
        let mut devices: Vec<ListedDevice> = devices
            .iter()
            .map(|(number, key)| ListedDevice {
                number: *number,
                identity_key: *key,
            })
            .collect();
        devices.sort_by_key(|d| d.number);
        let body = DeviceListBody {
            account,
            version,
            issued_at,
            account_key: self.0.verifying_key().to_bytes(),
            devices,
        };
        let signature = self.0.sign(&body.signing_input().unwrap()).to_bytes();
        body.with_signature(&signature).unwrap()
    }
}

fn identity_key(rng: &mut ChaCha20Rng) -> IdentityKey {
    let mut key = [0u8; 64];
    rng.fill_bytes(&mut key);
    key
}

const PASSWORD: &str = "correct horse battery staple";

struct Account {
    tokens: Tokens,
    key: AccountKey,
    device: IdentityKey,
}

impl Account {
    fn id(&self) -> [u8; 16] {
        hex::decode(&self.tokens.account_id)
            .unwrap()
            .try_into()
            .unwrap()
    }

    /// The account's list at `version` naming `devices`, base64.
    fn list(&self, version: u64, devices: &[(u32, IdentityKey)]) -> String {
        b64(&self.key.sign(self.id(), version, 1_800_000_000, devices))
    }
}

async fn account<S: Store>(h: &Harness<S>, rng: &mut ChaCha20Rng) -> Account {
    let device = identity_key(rng);
    let reply = h
        .try_register_with_key(None, PASSWORD, &device)
        .await
        .expect(StatusCode::CREATED);
    Account {
        tokens: Tokens::from_json(&reply.body),
        key: AccountKey::generate(rng),
        device,
    }
}

async fn put_list<S: Store>(
    h: &Harness<S>,
    who: &Account,
    body: serde_json::Value,
) -> common::Reply {
    h.call(
        Method::PUT,
        "/v1/account/device-list",
        Some(body),
        Some(&who.tokens.access),
    )
    .await
}

async fn device_lists_are_stored_served_and_checked<S: Store>(h: Harness<S>) {
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let alice = account(&h, &mut rng).await;
    let bob = account(&h, &mut rng).await;
    let path = format!("/v1/accounts/{}/device-list", alice.tokens.account_id);
    h.call(Method::GET, &path, None, Some(&bob.tokens.access))
        .await
        .expect_error(StatusCode::NOT_FOUND, "device_list_not_found");

    let v1 = alice.list(1, &[(1, alice.device)]);
    put_list(&h, &alice, json!({ "list": v1 }))
        .await
        .expect(StatusCode::NO_CONTENT);
    let got = h
        .call(Method::GET, &path, None, Some(&bob.tokens.access))
        .await
        .expect(StatusCode::OK);
    assert_eq!(got.body["list"], v1, "served byte for byte");
    assert_eq!(got.body["version"], 1);
    h.call(Method::GET, &path, None, None)
        .await
        .expect(StatusCode::UNAUTHORIZED);

    // The same version again, or an older one: stale, nothing changes.
    put_list(&h, &alice, json!({ "list": v1 }))
        .await
        .expect_error(StatusCode::CONFLICT, "stale_device_list");
    // A list for another account, a device the account does not have, a device under another
    // key, a flipped signature, garbage: refused.
    let stranger = bob.list(2, &[(1, bob.device)]);
    put_list(&h, &alice, json!({ "list": stranger }))
        .await
        .expect_error(StatusCode::BAD_REQUEST, "invalid_device_list");
    let ghost = identity_key(&mut rng);
    for devices in [vec![(1, alice.device), (2, ghost)], vec![(1, ghost)]] {
        put_list(&h, &alice, json!({ "list": alice.list(2, &devices) }))
            .await
            .expect_error(StatusCode::BAD_REQUEST, "invalid_device_list");
    }
    let mut flipped = base64_decode(&alice.list(2, &[(1, alice.device)]));
    let last = flipped.len() - 1;
    flipped[last] ^= 1;
    put_list(&h, &alice, json!({ "list": b64(&flipped) }))
        .await
        .expect_error(StatusCode::BAD_REQUEST, "invalid_device_list");
    put_list(&h, &alice, json!({ "list": b64(b"not a list") }))
        .await
        .expect_error(StatusCode::BAD_REQUEST, "invalid_device_list");

    // Another account key: an identity change, only when asked for.
    let new_key = AccountKey::generate(&mut rng);
    let rekeyed = b64(&new_key.sign(alice.id(), 2, 1_800_000_100, &[(1, alice.device)]));
    put_list(&h, &alice, json!({ "list": rekeyed }))
        .await
        .expect_error(StatusCode::CONFLICT, "account_key_changed");
    put_list(
        &h,
        &alice,
        json!({ "list": rekeyed, "replace_account_key": true }),
    )
    .await
    .expect(StatusCode::NO_CONTENT);
    let got = h
        .call(Method::GET, &path, None, Some(&bob.tokens.access))
        .await
        .expect(StatusCode::OK);
    assert_eq!(got.body["version"], 2);

    // Deleting the account deletes its list.
    let proof = h.fresh_auth(&alice.tokens, PASSWORD).await;
    h.call_fresh(
        Method::DELETE,
        "/v1/account",
        None,
        &alice.tokens.access,
        Some(&proof),
    )
    .await
    .expect(StatusCode::NO_CONTENT);
    let account = Id::from_slice(&alice.id()).unwrap();
    assert!(h.store.device_list(&account).await.unwrap().is_none());
}

fn base64_decode(text: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .unwrap()
}

async fn a_device_joins_by_approval<S: Store>(h: Harness<S>) {
    let mut rng = ChaCha20Rng::seed_from_u64(2);
    let alice = account(&h, &mut rng).await;
    // The new device opens a box and shows its id; the old device makes a link token and puts
    // its (here: stand-in) provisioning message into the box.
    let opened = h
        .call(Method::POST, "/v1/provisioning", None, None)
        .await
        .expect(StatusCode::CREATED);
    let box_path = format!("/v1/provisioning/{}", opened.body["id"].as_str().unwrap());
    h.call(Method::GET, &box_path, None, None)
        .await
        .expect(StatusCode::NO_CONTENT);
    let token = h
        .call(
            Method::POST,
            "/v1/devices/link-token",
            None,
            Some(&alice.tokens.access),
        )
        .await
        .expect(StatusCode::OK);
    let link_token = token.body["link_token"].as_str().unwrap().to_owned();
    let sealed = b64(b"ciphertext for the new device");
    h.call(
        Method::PUT,
        &box_path,
        Some(json!({ "message": sealed })),
        None,
    )
    .await
    .expect(StatusCode::UNAUTHORIZED);
    h.call(
        Method::PUT,
        &box_path,
        Some(json!({ "message": sealed })),
        Some(&alice.tokens.access),
    )
    .await
    .expect(StatusCode::NO_CONTENT);
    h.call(
        Method::PUT,
        &box_path,
        Some(json!({ "message": b64(b"a second message") })),
        Some(&alice.tokens.access),
    )
    .await
    .expect_error(StatusCode::CONFLICT, "provisioning_filled");
    let got = h
        .call(Method::GET, &box_path, None, None)
        .await
        .expect(StatusCode::OK);
    assert_eq!(got.body["message"], sealed);
    h.call(Method::GET, &box_path, None, None)
        .await
        .expect_error(StatusCode::NOT_FOUND, "provisioning_not_found");

    // The new device links with the token: a device of Alice's account, logged in.
    let new_device = identity_key(&mut rng);
    let link = json!({
        "link_token": link_token,
        "device": {"identity_key": b64(&new_device)},
    });
    let linked = h
        .post("/v1/devices/link", link.clone())
        .await
        .expect(StatusCode::CREATED);
    let tokens = Tokens::from_json(&linked.body);
    assert_eq!(tokens.account_id, alice.tokens.account_id);
    assert_eq!(tokens.device_number, 2);
    h.call(Method::GET, "/v1/devices", None, Some(&tokens.access))
        .await
        .expect(StatusCode::OK);
    // The token is spent; an unknown one is refused the same way.
    h.post("/v1/devices/link", link)
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "invalid_link_token");
    h.post(
        "/v1/devices/link",
        json!({"link_token": b64(&[7; 32]), "device": {"identity_key": b64(&[1; 64])}}),
    )
    .await
    .expect_error(StatusCode::UNAUTHORIZED, "invalid_link_token");
    // The account then states its two devices.
    put_list(
        &h,
        &alice,
        json!({ "list": alice.list(1, &[(1, alice.device), (2, new_device)]) }),
    )
    .await
    .expect(StatusCode::NO_CONTENT);
    // Malformed ids and bodies are refused without effect.
    h.call(Method::GET, "/v1/provisioning/zz", None, None)
        .await
        .expect_error(StatusCode::BAD_REQUEST, "invalid_id");
    h.post(
        "/v1/devices/link",
        json!({"link_token": "not base64!", "device": {"identity_key": b64(&[1; 64])}}),
    )
    .await
    .expect(StatusCode::BAD_REQUEST);
}

/// The store's rules with an explicit clock: expiry, single use, the per-account token cap,
/// monotonic versions.
async fn store_rules_with_a_clock<S: Store>(h: Harness<S>) {
    let mut rng = ChaCha20Rng::seed_from_u64(3);
    let alice = account(&h, &mut rng).await;
    let account = Id::from_slice(&alice.id()).unwrap();
    let store = &h.store;
    // Link tokens: expiry, single use, at most 2 live per account here.
    let t = |n: u8| [n; 32];
    store
        .put_link_token(&t(1), &account, 100, 10, 2)
        .await
        .unwrap();
    assert_eq!(
        store.take_link_token(&t(1), 100).await.unwrap(),
        None,
        "expired"
    );
    store
        .put_link_token(&t(2), &account, 200, 10, 2)
        .await
        .unwrap();
    store
        .put_link_token(&t(3), &account, 300, 11, 2)
        .await
        .unwrap();
    store
        .put_link_token(&t(4), &account, 400, 12, 2)
        .await
        .unwrap();
    assert_eq!(
        store.take_link_token(&t(2), 50).await.unwrap(),
        None,
        "dropped by the cap"
    );
    assert_eq!(
        store.take_link_token(&t(4), 50).await.unwrap(),
        Some(account)
    );
    assert_eq!(
        store.take_link_token(&t(4), 50).await.unwrap(),
        None,
        "single use"
    );
    assert_eq!(
        store.take_link_token(&t(3), 50).await.unwrap(),
        Some(account)
    );
    // Boxes: empty, filled once, read once, expired.
    let b = Id::random();
    store.create_box(&b, 100, 10).await.unwrap();
    assert_eq!(store.take_box(&b, 20).await.unwrap(), Some(None));
    assert_eq!(
        store.fill_box(&b, b"m", 20).await.unwrap(),
        FillOutcome::Filled
    );
    assert_eq!(
        store.fill_box(&b, b"n", 21).await.unwrap(),
        FillOutcome::AlreadyFilled
    );
    assert_eq!(
        store.take_box(&b, 22).await.unwrap(),
        Some(Some(b"m".to_vec()))
    );
    assert_eq!(store.take_box(&b, 23).await.unwrap(), None);
    let late = Id::random();
    store.create_box(&late, 100, 10).await.unwrap();
    assert_eq!(
        store.fill_box(&late, b"m", 100).await.unwrap(),
        FillOutcome::NotFound
    );
    assert_eq!(store.take_box(&late, 100).await.unwrap(), None);
    // Versions only go up, also when two writers race.
    assert_eq!(
        store
            .put_device_list(&account, 5, b"five", 1)
            .await
            .unwrap(),
        PutListOutcome::Stored
    );
    assert_eq!(
        store
            .put_device_list(&account, 5, b"other five", 2)
            .await
            .unwrap(),
        PutListOutcome::Stale { current: 5 }
    );
    assert_eq!(
        store
            .put_device_list(&account, 4, b"four", 3)
            .await
            .unwrap(),
        PutListOutcome::Stale { current: 5 }
    );
    let (a, b) = tokio::join!(
        store.put_device_list(&account, 6, b"six a", 4),
        store.put_device_list(&account, 6, b"six b", 4)
    );
    let outcomes = [a.unwrap(), b.unwrap()];
    assert_eq!(
        outcomes
            .iter()
            .filter(|o| **o == PutListOutcome::Stored)
            .count(),
        1,
        "{outcomes:?}"
    );
    assert_eq!(
        store.device_list(&account).await.unwrap().unwrap().version,
        6
    );
}

common::on_both_backends!(
    device_lists_are_stored_served_and_checked,
    a_device_joins_by_approval,
    store_rules_with_a_clock,
);
