//! Endpoint tests through `app` with `oneshot`, on SQLite and Postgres.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common;
use crate::common::Api as _;

use crate::common::{Harness, TEST_JWT_KEY, Tokens, b64};
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use haven_relay::accounts::tokens::{Claims, encode_claims};
use haven_relay::accounts::totp;
use haven_relay::db::Store;
use haven_relay::ids::Id;
use haven_relay::secrets::Key32;
use serde_json::{Value, json};

const PASSWORD: &str = "correct horse battery staple";

fn new_device(tag: u8) -> Value {
    json!({"device": {"identity_key": b64(&[tag; 32])}})
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Returns a time early in a TOTP step, so codes for `t - 30`, `t` and `t + 30` stay within the
/// server's ±1-step window for the rest of a short test.
pub(crate) async fn early_in_step() -> u64 {
    let t = now();
    if t % 30 > 20 {
        tokio::time::sleep(std::time::Duration::from_secs(31 - t % 30)).await;
    }
    now()
}

async fn register_and_login<S: Store>(h: Harness<S>) {
    let alice = h.register(Some("alice"), PASSWORD).await;
    // Username logins are case-insensitive and trimmed; a new device is added.
    let reply = h
        .try_login(json!({"username": " ALICE "}), PASSWORD, new_device(2))
        .await
        .expect(StatusCode::OK);
    let second = Tokens::from_json(&reply.body);
    assert_eq!(second.account_id, alice.account_id);
    assert_ne!(second.device_id, alice.device_id);
    // Login by account id as the existing first device.
    let again = h.login_existing(&alice, PASSWORD).await;
    assert_eq!(again.device_id, alice.device_id);
    let list = h
        .call(Method::GET, "/v1/devices", None, Some(&again.access))
        .await
        .expect(StatusCode::OK);
    assert_eq!(list.body["devices"].as_array().unwrap().len(), 2);
    // An account without a username can log in by id only.
    let anon = h.register(None, "another password").await;
    h.login_existing(&anon, "another password").await;
}

async fn wrong_password_and_unknown_accounts<S: Store>(h: Harness<S>) {
    let alice = h.register(Some("alice"), PASSWORD).await;
    h.try_login(json!({"username": "alice"}), "wrong", new_device(2))
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "invalid_credentials");
    // Unknown username and unknown id: login/start looks exactly like for a real account.
    let real = h
        .post(
            "/v1/login/start",
            json!({"username": "alice", "credential_request": ke1()}),
        )
        .await;
    for ident in [
        json!({"username": "nobody"}),
        json!({"account_id": Id::random().to_hex()}),
    ] {
        let mut body = ident.clone();
        body["credential_request"] = json!(ke1());
        let fake = h.post("/v1/login/start", body).await.expect(StatusCode::OK);
        let fake_len = fake.body["credential_response"].as_str().unwrap().len();
        assert_eq!(
            fake_len,
            real.body["credential_response"].as_str().unwrap().len()
        );
        h.try_login(ident, PASSWORD, new_device(3))
            .await
            .expect_error(StatusCode::UNAUTHORIZED, "invalid_credentials");
    }
    // The failed logins added no device.
    let list = h
        .call(Method::GET, "/v1/devices", None, Some(&alice.access))
        .await;
    assert_eq!(list.body["devices"].as_array().unwrap().len(), 1);
}

fn ke1() -> String {
    let start = opaque_ke::ClientLogin::<common::Cs>::start(&mut rand::rngs::OsRng, b"pw").unwrap();
    b64(&start.message.serialize())
}

async fn login_state_is_single_use<S: Store>(h: Harness<S>) {
    let alice = h.register(None, PASSWORD).await;
    let start = h
        .post(
            "/v1/login/start",
            json!({"account_id": alice.account_id, "credential_request": ke1()}),
        )
        .await
        .expect(StatusCode::OK);
    let finish = json!({
        "login_id": start.body["login_id"],
        "credential_finalization": b64(&[0u8; 64]),
        "device_id": alice.device_id,
    });
    h.post("/v1/login/finish", finish.clone())
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "invalid_credentials");
    h.post("/v1/login/finish", finish)
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "login_expired");
    h.post(
        "/v1/register/finish",
        json!({
            "registration_id": Id::random().to_hex(),
            "registration_upload": b64(&[0u8; 10]),
            "device": {"identity_key": b64(&[1; 32])},
        }),
    )
    .await
    .expect_error(StatusCode::BAD_REQUEST, "invalid_opaque_message");
}

async fn taken_username_and_bad_usernames<S: Store>(h: Harness<S>) {
    h.register(Some("alice"), PASSWORD).await;
    h.try_register(Some("Alice"), "other")
        .await
        .expect_error(StatusCode::CONFLICT, "username_taken");
    h.try_register(Some("a"), "other")
        .await
        .expect_error(StatusCode::BAD_REQUEST, "invalid_username");
    h.try_register(Some("bad name!"), "x")
        .await
        .expect_error(StatusCode::BAD_REQUEST, "invalid_username");
    h.post(
        "/v1/login/start",
        json!({"username": "no way", "credential_request": ke1()}),
    )
    .await
    .expect_error(StatusCode::BAD_REQUEST, "invalid_username");
    h.post("/v1/login/start", json!({"credential_request": ke1()}))
        .await
        .expect_error(StatusCode::BAD_REQUEST, "invalid_identifier");
    h.post("/v1/login/start", json!({"username": "alice", "account_id": Id::random().to_hex(), "credential_request": ke1()}))
        .await
        .expect_error(StatusCode::BAD_REQUEST, "invalid_identifier");
}

async fn username_lookup<S: Store>(h: Harness<S>) {
    let alice = h.register(Some("alice.lookup"), PASSWORD).await;
    let bob = h.register(None, PASSWORD).await;
    let lookup = |name: &str| json!({ "username": name });
    // Normalised like registration: case and surrounding blanks do not matter.
    let found = h
        .call(
            Method::POST,
            "/v1/usernames/lookup",
            Some(lookup("  Alice.Lookup ")),
            Some(&bob.access),
        )
        .await
        .expect(StatusCode::OK)
        .body;
    assert_eq!(found["account_id"], json!(alice.account_id));
    h.call(
        Method::POST,
        "/v1/usernames/lookup",
        Some(lookup("nobody.here")),
        Some(&bob.access),
    )
    .await
    .expect_error(StatusCode::NOT_FOUND, "username_not_found");
    h.call(
        Method::POST,
        "/v1/usernames/lookup",
        Some(lookup("no way!")),
        Some(&bob.access),
    )
    .await
    .expect_error(StatusCode::BAD_REQUEST, "invalid_username");
    // A login is required.
    h.post("/v1/usernames/lookup", lookup("alice.lookup"))
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "missing_token");
}

async fn malformed_requests<S: Store>(h: Harness<S>) {
    let raw = |body: &'static str, content_type: &'static str| {
        Request::builder()
            .method(Method::POST)
            .uri("/v1/register/start")
            .header(header::CONTENT_TYPE, content_type)
            .body(Body::from(body))
            .unwrap()
    };
    h.raw(raw("{not json", "application/json"))
        .await
        .expect_error(StatusCode::BAD_REQUEST, "invalid_json");
    h.raw(raw("{}", "application/json"))
        .await
        .expect_error(StatusCode::BAD_REQUEST, "invalid_json");
    h.raw(raw("{}", "text/plain"))
        .await
        .expect_error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type");
    h.post(
        "/v1/register/start",
        json!({"registration_request": b64(&[0; 32]), "extra": 1}),
    )
    .await
    .expect_error(StatusCode::BAD_REQUEST, "invalid_json");
    h.post("/v1/register/start", json!({"registration_request": "***"}))
        .await
        .expect_error(StatusCode::BAD_REQUEST, "invalid_base64");
    h.post(
        "/v1/register/start",
        json!({"registration_request": b64(&[0; 31])}),
    )
    .await
    .expect_error(StatusCode::BAD_REQUEST, "invalid_opaque_message");
    h.post(
        "/v1/register/start",
        json!({"registration_request": "A".repeat(4000)}),
    )
    .await
    .expect_error(StatusCode::BAD_REQUEST, "field_too_large");
    // Over the 8 KiB body limit of the test settings.
    let big = json!({"registration_request": "A".repeat(9000)});
    h.post("/v1/register/start", big)
        .await
        .expect_error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    let chunked = Request::builder()
        .method(Method::POST)
        .uri("/v1/login/start")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(futures_stream(20_000)))
        .unwrap();
    h.raw(chunked)
        .await
        .expect_error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    h.post("/v1/login/finish", json!({"login_id": "xyz", "credential_finalization": b64(&[0; 64]), "device_id": Id::random().to_hex()}))
        .await
        .expect_error(StatusCode::BAD_REQUEST, "invalid_json");
    h.post(
        "/v1/login/finish",
        json!({"login_id": Id::random().to_hex(), "credential_finalization": b64(&[0; 64])}),
    )
    .await
    .expect_error(StatusCode::BAD_REQUEST, "invalid_device");
    // Bad device fields are rejected before the login state is looked at.
    h.post(
        "/v1/login/finish",
        json!({
            "login_id": Id::random().to_hex(),
            "credential_finalization": b64(&[0; 64]),
            "device": {"identity_key": ""},
        }),
    )
    .await
    .expect_error(StatusCode::BAD_REQUEST, "invalid_length");
    h.post(
        "/v1/login/finish",
        json!({
            "login_id": Id::random().to_hex(),
            "credential_finalization": b64(&[0; 64]),
            "device": {"identity_key": b64(&[0; 2049])},
        }),
    )
    .await
    .expect_error(StatusCode::BAD_REQUEST, "field_too_large");
    h.call(Method::GET, "/v1/nope", None, None)
        .await
        .expect_error(StatusCode::NOT_FOUND, "not_found");
    h.call(Method::GET, "/v1/login/start", None, None)
        .await
        .expect_error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
}

/// A body stream without Content-Length of `len` bytes (so only the streaming limit applies).
fn futures_stream(
    len: usize,
) -> impl futures_core::Stream<Item = Result<Vec<u8>, std::io::Error>> + Send {
    struct Chunks(usize);
    impl futures_core::Stream for Chunks {
        type Item = Result<Vec<u8>, std::io::Error>;
        fn poll_next(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Self::Item>> {
            if self.0 == 0 {
                return std::task::Poll::Ready(None);
            }
            let n = self.0.min(1000);
            self.0 -= n;
            std::task::Poll::Ready(Some(Ok(vec![b' '; n])))
        }
    }
    Chunks(len)
}

async fn bad_tokens_are_rejected<S: Store>(h: Harness<S>) {
    let alice = h.register(Some("alice"), PASSWORD).await;
    let bob = h.register(Some("bob"), PASSWORD).await;
    let get = |token: Option<String>| {
        let h = &h;
        async move {
            h.call(Method::GET, "/v1/devices", None, token.as_deref())
                .await
        }
    };
    get(None)
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "missing_token");
    get(Some("garbage".into()))
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "invalid_token");
    let bare = Request::builder()
        .uri("/v1/devices")
        .header(header::AUTHORIZATION, format!("Basic {}", alice.access))
        .body(Body::empty())
        .unwrap();
    h.raw(bare)
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "invalid_token");
    // Expired, and signed with another key.
    let t = now();
    let claims = |exp: u64| Claims {
        sub: alice.account_id.clone(),
        dev: alice.device_id.clone(),
        fam: decode_fam(&alice.access),
        exp,
        iat: t - 3600,
        jti: Id::random().to_hex(),
    };
    let key = test_key();
    get(Some(encode_claims(&key, &claims(t - 10)).unwrap()))
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "token_expired");
    get(Some(
        encode_claims(&Key32::random(), &claims(t + 600)).unwrap(),
    ))
    .await
    .expect_error(StatusCode::UNAUTHORIZED, "invalid_token");
    // Correctly signed but mixing Alice's account with Bob's session: not a valid session.
    let mut mixed = claims(t + 600);
    mixed.fam = decode_fam(&bob.access);
    get(Some(encode_claims(&key, &mixed).unwrap()))
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "session_revoked");
    // Bob's token cannot touch Alice's device.
    let path = format!("/v1/devices/{}", alice.device_id);
    let proof = h.fresh_auth(&bob, PASSWORD).await;
    h.call_fresh(Method::DELETE, &path, None, &bob.access, Some(&proof))
        .await
        .expect_error(StatusCode::NOT_FOUND, "device_not_found");
    h.call(
        Method::PUT,
        &format!("{path}/name"),
        Some(json!({"name": b64(b"x")})),
        Some(&bob.access),
    )
    .await
    .expect_error(StatusCode::NOT_FOUND, "device_not_found");
    get(Some(alice.access.clone())).await.expect(StatusCode::OK);
}

fn test_key() -> Key32 {
    // Same bytes as the harness's configured JWT secret.
    let settings = common::test_settings();
    let secret = settings.jwt_secret.unwrap();
    assert_eq!(STANDARD.decode(secret.expose()).unwrap(), TEST_JWT_KEY);
    Key32::from_bytes(TEST_JWT_KEY)
}

fn decode_fam(jwt: &str) -> String {
    let payload = jwt.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    let claims: Value = serde_json::from_slice(&bytes).unwrap();
    claims["fam"].as_str().unwrap().to_owned()
}

async fn refresh_rotation_and_reuse<S: Store>(h: Harness<S>) {
    let alice = h.register(Some("alice"), PASSWORD).await;
    let r1 = h
        .post("/v1/token/refresh", json!({"refresh_token": alice.refresh}))
        .await
        .expect(StatusCode::OK);
    let second = Tokens::from_json(&r1.body);
    assert_ne!(second.refresh, alice.refresh);
    h.call(Method::GET, "/v1/devices", None, Some(&second.access))
        .await
        .expect(StatusCode::OK);
    // Replaying the spent token revokes the whole family: the new tokens die too.
    h.post("/v1/token/refresh", json!({"refresh_token": alice.refresh}))
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "refresh_reused");
    h.call(Method::GET, "/v1/devices", None, Some(&second.access))
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "session_revoked");
    h.post(
        "/v1/token/refresh",
        json!({"refresh_token": second.refresh}),
    )
    .await
    .expect_error(StatusCode::UNAUTHORIZED, "invalid_token");
    h.post("/v1/token/refresh", json!({"refresh_token": "short"}))
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "invalid_token");
    h.post("/v1/token/refresh", json!({"token": "x"}))
        .await
        .expect_error(StatusCode::BAD_REQUEST, "invalid_json");
    // Other sessions of the account are unaffected.
    let other = h.login_existing(&alice, PASSWORD).await;
    h.call(Method::GET, "/v1/devices", None, Some(&other.access))
        .await
        .expect(StatusCode::OK);
}

async fn logout_revokes_session<S: Store>(h: Harness<S>) {
    let alice = h.register(None, PASSWORD).await;
    let other = h.login_existing(&alice, PASSWORD).await;
    h.call(Method::POST, "/v1/logout", None, Some(&alice.access))
        .await
        .expect(StatusCode::NO_CONTENT);
    h.call(Method::GET, "/v1/devices", None, Some(&alice.access))
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "session_revoked");
    h.post("/v1/token/refresh", json!({"refresh_token": alice.refresh}))
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "invalid_token");
    h.call(Method::POST, "/v1/logout", None, None)
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "missing_token");
    h.call(Method::GET, "/v1/devices", None, Some(&other.access))
        .await
        .expect(StatusCode::OK);
}

async fn devices_rename_unlink_and_limit<S: Store>(h: Harness<S>) {
    let alice = h.register(Some("alice"), PASSWORD).await;
    let second = Tokens::from_json(
        &h.try_login(json!({"username": "alice"}), PASSWORD, new_device(2))
            .await
            .expect(StatusCode::OK)
            .body,
    );
    h.try_login(json!({"username": "alice"}), PASSWORD, new_device(3))
        .await
        .expect(StatusCode::OK);
    // max_devices = 3 in the test settings.
    h.try_login(json!({"username": "alice"}), PASSWORD, new_device(4))
        .await
        .expect_error(StatusCode::CONFLICT, "device_limit");
    let list = h
        .call(Method::GET, "/v1/devices", None, Some(&alice.access))
        .await
        .expect(StatusCode::OK);
    let devices = list.body["devices"].as_array().unwrap();
    assert_eq!(devices.len(), 3);
    let current: Vec<_> = devices
        .iter()
        .filter(|d| d["current"] == json!(true))
        .collect();
    assert_eq!(current.len(), 1);
    assert_eq!(current[0]["device_id"], json!(alice.device_id));
    assert_eq!(current[0]["name"], json!(b64(b"encrypted-name")));
    assert_eq!(current[0]["identity_key"], json!(b64(&[1u8; 32])));

    let name_path = format!("/v1/devices/{}/name", second.device_id);
    h.call(
        Method::PUT,
        &name_path,
        Some(json!({"name": b64(b"new name")})),
        Some(&alice.access),
    )
    .await
    .expect(StatusCode::NO_CONTENT);
    h.call(
        Method::PUT,
        &name_path,
        Some(json!({"name": b64(&[0u8; 1025])})),
        Some(&alice.access),
    )
    .await
    .expect_error(StatusCode::BAD_REQUEST, "field_too_large");
    h.call(
        Method::PUT,
        "/v1/devices/XYZ/name",
        Some(json!({"name": null})),
        Some(&alice.access),
    )
    .await
    .expect_error(StatusCode::BAD_REQUEST, "invalid_id");
    let list = h
        .call(Method::GET, "/v1/devices", None, Some(&second.access))
        .await;
    let renamed = list.body["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["device_id"] == json!(second.device_id))
        .cloned()
        .unwrap();
    assert_eq!(renamed["name"], json!(b64(b"new name")));

    // Unlinking ends that device's sessions at once and frees a slot.
    let path = format!("/v1/devices/{}", second.device_id);
    let proof = h.fresh_auth(&alice, PASSWORD).await;
    h.call_fresh(Method::DELETE, &path, None, &alice.access, Some(&proof))
        .await
        .expect(StatusCode::NO_CONTENT);
    h.call(Method::GET, "/v1/devices", None, Some(&second.access))
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "session_revoked");
    h.post(
        "/v1/token/refresh",
        json!({"refresh_token": second.refresh}),
    )
    .await
    .expect_error(StatusCode::UNAUTHORIZED, "invalid_token");
    let proof = h.fresh_auth(&alice, PASSWORD).await;
    h.call_fresh(Method::DELETE, &path, None, &alice.access, Some(&proof))
        .await
        .expect_error(StatusCode::NOT_FOUND, "device_not_found");
    h.try_login(json!({"username": "alice"}), PASSWORD, new_device(5))
        .await
        .expect(StatusCode::OK);
    h.try_login(
        json!({"username": "alice"}),
        PASSWORD,
        json!({"device_id": second.device_id}),
    )
    .await
    .expect_error(StatusCode::NOT_FOUND, "device_not_found");
}

async fn totp_enable_login_and_replay<S: Store>(h: Harness<S>) {
    // Every OPAQUE start counts against the account until a login succeeds, and
    // login_max_failures = 3: the steps below keep at most two unfinished or failed attempts
    // between successes.
    let alice = h.register(Some("alice"), PASSWORD).await;
    let token = Some(alice.access.as_str());
    h.call(
        Method::POST,
        "/v1/account/totp/verify",
        Some(json!({"code": "123456"})),
        token,
    )
    .await
    .expect_error(StatusCode::CONFLICT, "totp_not_set_up");
    let setup = h
        .call(Method::POST, "/v1/account/totp/setup", None, token)
        .await
        .expect(StatusCode::OK);
    let secret = base32_decode(setup.body["secret"].as_str().unwrap());
    assert!(
        setup.body["otpauth_uri"]
            .as_str()
            .unwrap()
            .starts_with("otpauth://totp/Haven:")
    );
    let t = early_in_step().await;
    let wrong_for = |secret: &[u8]| {
        if (0..3).any(|i| totp::code_at(secret, t + i * 30 - 30) == "000000") {
            "111111"
        } else {
            "000000"
        }
    };
    let wrong = wrong_for(&secret);
    // Enabling uses the previous step, so the current one is still free for a login.
    h.call(
        Method::POST,
        "/v1/account/totp/verify",
        Some(json!({"code": totp::code_at(&secret, t - 30)})),
        token,
    )
    .await
    .expect(StatusCode::NO_CONTENT);
    h.call(Method::POST, "/v1/account/totp/setup", None, token)
        .await
        .expect_error(StatusCode::CONFLICT, "totp_already_enabled");

    let by_id = || json!({"account_id": alice.account_id});
    let dev = || json!({"device_id": alice.device_id});
    h.try_login(by_id(), PASSWORD, dev())
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "totp_required");
    h.try_reauth(&alice, PASSWORD, None)
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "totp_required");
    let mut with = dev();
    with["totp_code"] = json!(totp::code_at(&secret, t));
    h.try_login(by_id(), PASSWORD, with.clone())
        .await
        .expect(StatusCode::OK);
    // The same code (time step) is never accepted twice.
    h.try_login(by_id(), PASSWORD, with)
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "totp_invalid");
    // Nor an older one.
    let mut with = dev();
    with["totp_code"] = json!(totp::code_at(&secret, t - 30));
    h.try_login(by_id(), PASSWORD, with)
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "totp_invalid");
    // Disabling needs a fresh authentication, which with TOTP on needs a code too.
    let disable = "/v1/account/totp/disable";
    let next = totp::code_at(&secret, t + 30);
    h.call_fresh(
        Method::POST,
        disable,
        Some(json!({"code": next})),
        &alice.access,
        None,
    )
    .await
    .expect_error(StatusCode::FORBIDDEN, "fresh_auth_required");
    let reauth = h
        .try_reauth(&alice, PASSWORD, Some(&next))
        .await
        .expect(StatusCode::OK);
    let proof = reauth.body["fresh_auth"].as_str().unwrap();
    // A wrong code is refused and leaves the proof usable; the code of the re-authentication
    // is accepted again (the single-use proof is what prevents a replay here).
    h.call_fresh(
        Method::POST,
        disable,
        Some(json!({"code": wrong})),
        &alice.access,
        Some(proof),
    )
    .await
    .expect_error(StatusCode::UNAUTHORIZED, "totp_invalid");
    let id: Id = alice.account_id.parse().unwrap();
    assert!(h.store.account(&id).await.unwrap().unwrap().totp_enabled);
    h.call_fresh(
        Method::POST,
        disable,
        Some(json!({"code": next})),
        &alice.access,
        Some(proof),
    )
    .await
    .expect(StatusCode::NO_CONTENT);
    h.call_fresh(
        Method::POST,
        disable,
        Some(json!({"code": next})),
        &alice.access,
        Some(proof),
    )
    .await
    .expect_error(StatusCode::FORBIDDEN, "fresh_auth_invalid");
    let proof = h.fresh_auth(&alice, PASSWORD).await;
    h.call_fresh(
        Method::POST,
        disable,
        Some(json!({"code": "123456"})),
        &alice.access,
        Some(&proof),
    )
    .await
    .expect_error(StatusCode::CONFLICT, "totp_not_enabled");
    // A new setup: a wrong code does not enable it.
    let setup = h
        .call(Method::POST, "/v1/account/totp/setup", None, token)
        .await
        .expect(StatusCode::OK);
    let secret = base32_decode(setup.body["secret"].as_str().unwrap());
    h.call(
        Method::POST,
        "/v1/account/totp/verify",
        Some(json!({"code": wrong_for(&secret)})),
        token,
    )
    .await
    .expect_error(StatusCode::UNAUTHORIZED, "totp_invalid");
    h.login_existing(&alice, PASSWORD).await;
}

pub(crate) fn base32_decode(text: &str) -> Vec<u8> {
    // RFC 4648 base32 without padding (what authenticator apps get).
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut bits = 0u64;
    let mut nbits = 0;
    let mut out = Vec::new();
    for c in text.trim_end_matches('=').bytes() {
        let v = ALPHABET.iter().position(|&a| a == c).unwrap() as u64;
        bits = (bits << 5) | v;
        nbits += 5;
        if nbits >= 8 {
            nbits -= 8;
            out.push((bits >> nbits) as u8);
        }
    }
    out
}

async fn delete_account_removes_everything<S: Store>(h: Harness<S>) {
    let alice = h.register(Some("alice"), PASSWORD).await;
    let bob = h.register(Some("bob"), PASSWORD).await;
    let other = h.login_existing(&alice, PASSWORD).await;
    h.call(Method::DELETE, "/v1/account", None, None)
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "missing_token");
    h.call(Method::DELETE, "/v1/account", None, Some(&alice.access))
        .await
        .expect_error(StatusCode::FORBIDDEN, "fresh_auth_required");
    let proof = h.fresh_auth(&alice, PASSWORD).await;
    h.call_fresh(
        Method::DELETE,
        "/v1/account",
        None,
        &alice.access,
        Some(&proof),
    )
    .await
    .expect(StatusCode::NO_CONTENT);
    h.call(Method::GET, "/v1/devices", None, Some(&other.access))
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "session_revoked");
    h.post("/v1/token/refresh", json!({"refresh_token": other.refresh}))
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "invalid_token");
    h.try_login(json!({"username": "alice"}), PASSWORD, new_device(9))
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "invalid_credentials");
    let id: Id = alice.account_id.parse().unwrap();
    assert!(h.store.account(&id).await.unwrap().is_none());
    assert!(h.store.devices(&id).await.unwrap().is_empty());
    assert!(h.store.families(&id).await.unwrap().is_empty());
    assert!(h.store.refresh_tokens(&id).await.unwrap().is_empty());
    // The username is free again; Bob is untouched.
    h.register(Some("alice"), "new password").await;
    h.call(Method::GET, "/v1/devices", None, Some(&bob.access))
        .await
        .expect(StatusCode::OK);
}

async fn export_returns_everything<S: Store>(h: Harness<S>) {
    let alice = h.register(Some("alice"), PASSWORD).await;
    let second = h.login_existing(&alice, PASSWORD).await;
    h.call(Method::GET, "/v1/account/export", None, None)
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "missing_token");
    let doc = h
        .call(
            Method::GET,
            "/v1/account/export",
            None,
            Some(&second.access),
        )
        .await
        .expect(StatusCode::OK)
        .body;
    assert_eq!(doc["format"], "haven-relay-export/v1");
    assert_eq!(doc["account"]["account_id"], json!(alice.account_id));
    let id: Id = alice.account_id.parse().unwrap();
    let stored = h.store.account(&id).await.unwrap().unwrap();
    assert_eq!(
        doc["account"]["username_hash"],
        json!(b64(stored.username_hash.as_deref().unwrap()))
    );
    assert_eq!(
        doc["account"]["opaque_registration_record"],
        json!(b64(&stored.opaque_record))
    );
    assert_eq!(doc["account"]["totp_enabled"], json!(false));
    assert_eq!(doc["devices"].as_array().unwrap().len(), 1);
    assert_eq!(doc["devices"][0]["identity_key"], json!(b64(&[1u8; 32])));
    let sessions = doc["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 2);
    let tokens: usize = sessions
        .iter()
        .map(|s| s["refresh_tokens"].as_array().unwrap().len())
        .sum();
    assert_eq!(tokens, h.store.refresh_tokens(&id).await.unwrap().len());
    // Only hashes: the live refresh tokens themselves are not in the export.
    let text = doc.to_string();
    assert!(!text.contains(&alice.refresh) && !text.contains(&second.refresh));
}

async fn health_ready_headers_and_openapi<S: Store>(h: Harness<S>) {
    let health = h
        .call(Method::GET, "/health", None, None)
        .await
        .expect(StatusCode::OK);
    assert_eq!(health.body["status"], "ok");
    for (name, value) in [
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "no-referrer"),
        ("x-frame-options", "DENY"),
        (
            "content-security-policy",
            "default-src 'none'; frame-ancestors 'none'",
        ),
        ("cache-control", "no-store"),
    ] {
        assert_eq!(health.headers.get(name).unwrap(), value, "{name}");
    }
    assert!(health.headers.get("strict-transport-security").is_none());
    let ready = h
        .call(Method::GET, "/ready", None, None)
        .await
        .expect(StatusCode::OK);
    assert_eq!(ready.body["status"], "ready");
    // Error responses carry the headers too.
    let missing = h.call(Method::GET, "/nope", None, None).await;
    assert_eq!(missing.headers.get("x-frame-options").unwrap(), "DENY");
    let doc = h
        .call(Method::GET, "/openapi.json", None, None)
        .await
        .expect(StatusCode::OK)
        .body;
    assert_eq!(
        doc["openapi"].as_str().unwrap().split('.').next(),
        Some("3")
    );
    let mut listed: Vec<String> = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            listed.push(format!("{} {path}", method.to_uppercase()));
        }
    }
    listed.sort();
    let mut expected: Vec<String> = ROUTES.iter().map(|(m, p)| format!("{m} {p}")).collect();
    expected.sort();
    assert_eq!(listed, expected);
    // Every documented route exists in the router (not the 404 fallback or 405).
    for (method, path) in ROUTES {
        let mut path = path.replace("{device_number}", "1").replace("{part}", "0");
        for param in [
            "{blob_id}",
            "{device_id}",
            "{account_id}",
            "{collection_id}",
            "{item_id}",
            "{channel_id}",
            "{report_id}",
            "{prefix}",
            "{key_id}",
            "{id}",
        ] {
            path = path.replace(param, &Id::random().to_hex());
        }
        let reply = h.call(method.parse().unwrap(), &path, None, None).await;
        // A 404 may name a missing resource, never the router's fallback.
        assert!(
            reply.status != StatusCode::NOT_FOUND || reply.code() != "not_found",
            "{method} {path}: {}",
            reply.body
        );
        assert_ne!(
            reply.status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}"
        );
    }
}

async fn login_lockout_after_failures<S: Store>(h: Harness<S>) {
    let alice = h.register(Some("alice"), PASSWORD).await;
    // login_max_failures = 3 in the test settings.
    for _ in 0..3 {
        h.try_login(
            json!({"username": "alice"}),
            "wrong",
            json!({"device_id": alice.device_id}),
        )
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "invalid_credentials");
    }
    // Now even the right password is refused, by username and by id alike.
    let locked = h
        .try_login(
            json!({"username": "alice"}),
            PASSWORD,
            json!({"device_id": alice.device_id}),
        )
        .await
        .expect_error(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    let retry: u64 = locked
        .headers
        .get(header::RETRY_AFTER)
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=900).contains(&retry), "{retry}");
    h.try_login(
        json!({"account_id": alice.account_id}),
        PASSWORD,
        json!({"device_id": alice.device_id}),
    )
    .await
    .expect_error(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    // Other accounts are unaffected; a success clears the count.
    let bob = h.register(Some("bob"), PASSWORD).await;
    h.try_login(
        json!({"username": "bob"}),
        "wrong",
        json!({"device_id": bob.device_id}),
    )
    .await;
    h.login_existing(&bob, PASSWORD).await;
    for _ in 0..2 {
        h.try_login(
            json!({"username": "bob"}),
            "wrong",
            json!({"device_id": bob.device_id}),
        )
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "invalid_credentials");
    }
    h.login_existing(&bob, PASSWORD).await;
    // Unknown usernames lock the same way, so lockout does not reveal which accounts exist.
    for _ in 0..3 {
        h.try_login(json!({"username": "nobody"}), PASSWORD, new_device(1))
            .await
            .expect_error(StatusCode::UNAUTHORIZED, "invalid_credentials");
    }
    h.try_login(json!({"username": "nobody"}), PASSWORD, new_device(1))
        .await
        .expect_error(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
}

async fn wrong_totp_codes_count_as_failures<S: Store>(h: Harness<S>) {
    let alice = h.register(None, PASSWORD).await;
    let token = Some(alice.access.as_str());
    let setup = h
        .call(Method::POST, "/v1/account/totp/setup", None, token)
        .await
        .expect(StatusCode::OK);
    let secret = base32_decode(setup.body["secret"].as_str().unwrap());
    let t = early_in_step().await;
    let wrong = if totp::code_at(&secret, t) == "000000" {
        "111111"
    } else {
        "000000"
    };
    for _ in 0..3 {
        h.call(
            Method::POST,
            "/v1/account/totp/verify",
            Some(json!({"code": wrong})),
            token,
        )
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "totp_invalid");
    }
    let right = json!({"code": totp::code_at(&secret, t)});
    h.call(Method::POST, "/v1/account/totp/verify", Some(right), token)
        .await
        .expect_error(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
}

/// Sends `body` to `path` as if from `ip` (the socket peer address).
async fn from_addr<S: Store>(
    h: &Harness<S>,
    ip: [u8; 4],
    path: &str,
    body: Value,
) -> common::Reply {
    let mut req = Request::builder()
        .method(Method::POST)
        .uri(path)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let peer = std::net::SocketAddr::from((ip, 40_000));
    req.extensions_mut()
        .insert(axum::extract::ConnectInfo(peer));
    h.raw(req).await
}

async fn per_address_limits<S: Store>(h: Harness<S>) {
    // auth_rate_limit_per_minute = 30 by default: the 31st login/start from one address is refused.
    // (Other identifiers each time: every start also counts against its account, §11.6.)
    let body = |i: usize| json!({"username": format!("someone{i}"), "credential_request": ke1()});
    for i in 0..30 {
        from_addr(&h, [10, 0, 0, 1], "/v1/login/start", body(i))
            .await
            .expect(StatusCode::OK);
    }
    let refused = from_addr(&h, [10, 0, 0, 1], "/v1/login/start", body(30))
        .await
        .expect_error(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    assert!(refused.headers.get(header::RETRY_AFTER).is_some());
    // Another address is unaffected, and so are non-auth routes from the first one.
    from_addr(&h, [10, 0, 0, 2], "/v1/login/start", body(31))
        .await
        .expect(StatusCode::OK);
    from_addr(
        &h,
        [10, 0, 0, 1],
        "/v1/token/refresh",
        json!({"refresh_token": "x"}),
    )
    .await
    .expect_error(StatusCode::UNAUTHORIZED, "invalid_token");
}

/// Every route of the API (the router and the OpenAPI document must both match this).
const ROUTES: &[(&str, &str)] = &[
    ("GET", "/health"),
    ("GET", "/openapi.json"),
    ("GET", "/ready"),
    ("POST", "/v1/register/start"),
    ("POST", "/v1/register/finish"),
    ("POST", "/v1/login/start"),
    ("POST", "/v1/login/finish"),
    ("POST", "/v1/token/refresh"),
    ("POST", "/v1/logout"),
    ("POST", "/v1/logout/all"),
    ("POST", "/v1/account/reauth/start"),
    ("POST", "/v1/account/reauth/finish"),
    ("POST", "/v1/account/password/start"),
    ("POST", "/v1/account/password/finish"),
    ("POST", "/v1/account/recovery/start"),
    ("POST", "/v1/account/recovery/finish"),
    ("POST", "/v1/recover/start"),
    ("POST", "/v1/recover/finish"),
    ("GET", "/v1/devices"),
    ("PUT", "/v1/devices/{device_id}/name"),
    ("DELETE", "/v1/devices/{device_id}"),
    ("GET", "/v1/push/vapid"),
    ("POST", "/v1/push/endpoints"),
    ("GET", "/v1/push/endpoints"),
    ("DELETE", "/v1/push/endpoints/{id}"),
    ("DELETE", "/v1/account"),
    ("GET", "/v1/account/export"),
    ("POST", "/v1/account/totp/setup"),
    ("POST", "/v1/account/totp/verify"),
    ("POST", "/v1/account/totp/disable"),
    ("PUT", "/v1/account/access-key"),
    ("PUT", "/v1/account/device-list"),
    ("GET", "/v1/accounts/{account_id}/device-list"),
    ("POST", "/v1/devices/link-token"),
    ("POST", "/v1/devices/link"),
    ("POST", "/v1/provisioning"),
    ("PUT", "/v1/provisioning/{id}"),
    ("GET", "/v1/provisioning/{id}"),
    ("PUT", "/v1/keys"),
    ("GET", "/v1/keys/counts"),
    ("GET", "/v1/keys/digest"),
    ("GET", "/v1/keys/{account_id}"),
    ("GET", "/v1/keys/{account_id}/{device_number}"),
    ("POST", "/v1/messages/{account_id}"),
    ("POST", "/v1/messages/{account_id}/sealed"),
    ("POST", "/v1/messages/multi"),
    ("GET", "/v1/messages"),
    ("POST", "/v1/messages/ack"),
    ("GET", "/v1/certificate/key"),
    ("POST", "/v1/certificate"),
    ("POST", "/v1/usernames/lookup"),
    ("PUT", "/v1/vault/{collection_id}/items/{item_id}"),
    ("GET", "/v1/vault/{collection_id}/items/{item_id}"),
    ("DELETE", "/v1/vault/{collection_id}/items/{item_id}"),
    ("POST", "/v1/vault/{collection_id}/items/{item_id}/restore"),
    ("GET", "/v1/vault/{collection_id}/items/{item_id}/history"),
    ("GET", "/v1/vault/{collection_id}/changes"),
    ("GET", "/v1/vault/usage"),
    ("GET", "/v1/ws"),
    ("POST", "/v1/ws/ticket"),
    ("POST", "/v1/channels"),
    ("POST", "/v1/channels/{channel_id}/entries"),
    ("GET", "/v1/channels/{channel_id}/entries"),
    ("POST", "/v1/blobs"),
    ("GET", "/v1/blobs"),
    ("GET", "/v1/blobs/{blob_id}"),
    ("DELETE", "/v1/blobs/{blob_id}"),
    ("POST", "/v1/blobs/{blob_id}/parts"),
    ("PUT", "/v1/blobs/{blob_id}/parts/{part}"),
    ("POST", "/v1/blobs/{blob_id}/complete"),
    ("GET", "/v1/blobs/{blob_id}/download"),
    ("PUT", "/v1/blob-data/{blob_id}/{part}"),
    ("GET", "/v1/blob-data/{blob_id}"),
    ("GET", "/v1/franking/key"),
    ("POST", "/v1/reports"),
    ("GET", "/v1/admin/reports"),
    ("GET", "/v1/admin/reports/{report_id}"),
    ("POST", "/v1/admin/reports/{report_id}/decision"),
    ("GET", "/v1/admin/bans/accounts"),
    ("POST", "/v1/admin/bans/accounts"),
    ("DELETE", "/v1/admin/bans/accounts/{account_id}"),
    ("GET", "/v1/admin/bans/addresses"),
    ("POST", "/v1/admin/bans/addresses"),
    ("DELETE", "/v1/admin/bans/addresses/{prefix}"),
    ("GET", "/v1/admin/audit"),
    ("GET", "/v1/admin/audit/export"),
    ("POST", "/v1/admin/keys"),
    ("GET", "/v1/admin/keys"),
    ("DELETE", "/v1/admin/keys/{key_id}"),
    ("GET", "/v1/admin/overview"),
    ("GET", "/admin"),
    ("GET", "/admin/admin.js"),
    ("GET", "/admin/admin.css"),
];

common::on_both_backends!(
    register_and_login,
    wrong_password_and_unknown_accounts,
    login_state_is_single_use,
    taken_username_and_bad_usernames,
    username_lookup,
    malformed_requests,
    bad_tokens_are_rejected,
    refresh_rotation_and_reuse,
    logout_revokes_session,
    devices_rename_unlink_and_limit,
    totp_enable_login_and_replay,
    delete_account_removes_everything,
    export_returns_everything,
    health_ready_headers_and_openapi,
    login_lockout_after_failures,
    wrong_totp_codes_count_as_failures,
    per_address_limits,
);
