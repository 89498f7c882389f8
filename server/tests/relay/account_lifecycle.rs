//! The account lifecycle on both engines (PROTOCOL.md §11.6.1–§11.6.3): fresh authentication
//! before unlinking, deleting and changing credentials; the password change that ends every
//! other session; recovery with a recovery code; logout everywhere.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use axum::http::{Method, StatusCode};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use haven_protocol::opaque::OPAQUE_CONTEXT;
use haven_relay::accounts::totp;
use haven_relay::db::Store;
use haven_relay::ids::Id;
use opaque_ke::{
    ClientLogin, ClientLoginFinishParameters, ClientRegistration,
    ClientRegistrationFinishParameters, CredentialResponse, Identifiers, RegistrationResponse,
};
use rand::rngs::OsRng;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use crate::common;
use crate::common::{Api as _, Cs, Harness, Reply, Tokens, b64};

const PASSWORD: &str = "correct horse battery staple";
const NEW_PASSWORD: &str = "a completely different passphrase";
const CODE: &str = "K7Q2M-9XW4T-RB3JD-H6NPV-C8FZL-5YAGE-U2SXK-QWMT4";

fn decode(v: &Value) -> Vec<u8> {
    STANDARD.decode(v.as_str().unwrap()).unwrap()
}

fn fam(jwt: &str) -> Id {
    let payload = jwt.split('.').nth(1).unwrap();
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    claims["fam"].as_str().unwrap().parse().unwrap()
}

/// KE1 of an OPAQUE login with `password`.
fn ke1(password: &str) -> (opaque_ke::ClientLoginStartResult<Cs>, String) {
    let start = ClientLogin::<Cs>::start(&mut OsRng, password.as_bytes()).unwrap();
    let ke1 = b64(&start.message.serialize());
    (start, ke1)
}

/// KE3 for KE2, or a well-formed wrong one when the password does not fit (so the relay sees and
/// counts the failure).
fn ke3(start: opaque_ke::ClientLoginStartResult<Cs>, password: &str, ke2: &Value) -> String {
    let ke2 = decode(ke2);
    assert_eq!(ke2.len(), 320);
    let response = CredentialResponse::<Cs>::deserialize(&ke2).unwrap();
    let params =
        ClientLoginFinishParameters::new(Some(OPAQUE_CONTEXT), Identifiers::default(), None);
    match start.state.finish(password.as_bytes(), response, params) {
        Ok(done) => b64(&done.message.serialize()),
        Err(_) => b64(&[0u8; 64]),
    }
}

/// The two rounds of an OPAQUE re-registration (`password` or `recovery`) of `t`'s account.
async fn reregister<S: Store>(
    h: &Harness<S>,
    what: &str,
    t: &Tokens,
    secret: &str,
    proof: Option<&str>,
) -> Reply {
    let start = ClientRegistration::<Cs>::start(&mut OsRng, secret.as_bytes()).unwrap();
    let reply = h
        .call(
            Method::POST,
            &format!("/v1/account/{what}/start"),
            Some(json!({"registration_request": b64(&start.message.serialize())})),
            Some(&t.access),
        )
        .await
        .expect(StatusCode::OK);
    let response = decode(&reply.body["registration_response"]);
    assert_eq!(response.len(), 64);
    let finish = start
        .state
        .finish(
            &mut OsRng,
            secret.as_bytes(),
            RegistrationResponse::<Cs>::deserialize(&response).unwrap(),
            ClientRegistrationFinishParameters::default(),
        )
        .unwrap();
    h.call_fresh(
        Method::POST,
        &format!("/v1/account/{what}/finish"),
        Some(json!({"registration_upload": b64(&finish.message.serialize())})),
        &t.access,
        proof,
    )
    .await
}

/// A full recovery: the recovery login with `code` and the registration of `new_password`.
async fn recover<S: Store>(
    h: &Harness<S>,
    identifier: Value,
    code: &str,
    new_password: &str,
) -> Reply {
    recover_with_totp(h, identifier, code, new_password, None).await
}

/// [`recover`] with a TOTP code.
async fn recover_with_totp<S: Store>(
    h: &Harness<S>,
    identifier: Value,
    code: &str,
    new_password: &str,
    totp_code: Option<&str>,
) -> Reply {
    let (login, credential_request) = ke1(code);
    let registration =
        ClientRegistration::<Cs>::start(&mut OsRng, new_password.as_bytes()).unwrap();
    let mut body = identifier;
    body["credential_request"] = json!(credential_request);
    body["registration_request"] = json!(b64(&registration.message.serialize()));
    let reply = h.post("/v1/recover/start", body).await;
    if reply.status != StatusCode::OK {
        return reply;
    }
    let response = decode(&reply.body["registration_response"]);
    assert_eq!(response.len(), 64);
    let upload = registration
        .state
        .finish(
            &mut OsRng,
            new_password.as_bytes(),
            RegistrationResponse::<Cs>::deserialize(&response).unwrap(),
            ClientRegistrationFinishParameters::default(),
        )
        .unwrap();
    let mut finish = json!({
        "login_id": reply.body["login_id"],
        "credential_finalization": ke3(login, code, &reply.body["credential_response"]),
        "registration_upload": b64(&upload.message.serialize()),
    });
    if let Some(totp_code) = totp_code {
        finish["totp_code"] = json!(totp_code);
    }
    h.post("/v1/recover/finish", finish).await
}

async fn devices<S: Store>(h: &Harness<S>, account: &str) -> usize {
    h.store
        .devices(&account.parse().unwrap())
        .await
        .unwrap()
        .len()
}

async fn fresh_auth_gates_unlink_and_delete<S: Store>(h: Harness<S>) {
    let alice = h.register(Some("alice"), PASSWORD).await;
    let second = Tokens::from_json(
        &h.try_login(
            json!({"username": "alice"}),
            PASSWORD,
            json!({"device": {"identity_key": b64(&[2u8; 32])}}),
        )
        .await
        .expect(StatusCode::OK)
        .body,
    );
    let unlink = format!("/v1/devices/{}", second.device_id);
    // The proof's shape: 43 characters (base64url of 32 bytes), valid 300 s.
    let reply = h
        .try_reauth(&alice, PASSWORD, None)
        .await
        .expect(StatusCode::OK);
    assert_eq!(reply.body["expires_in"], 300);
    assert_eq!(
        URL_SAFE_NO_PAD
            .decode(reply.body["fresh_auth"].as_str().unwrap())
            .unwrap()
            .len(),
        32
    );
    // The access token alone (as a thief holding it has) is not enough: nothing changes.
    h.call(Method::DELETE, &unlink, None, Some(&alice.access))
        .await
        .expect_error(StatusCode::FORBIDDEN, "fresh_auth_required");
    h.call(Method::DELETE, "/v1/account", None, Some(&alice.access))
        .await
        .expect_error(StatusCode::FORBIDDEN, "fresh_auth_required");
    for bad in ["", "not a proof", &URL_SAFE_NO_PAD.encode([7u8; 32])] {
        h.call_fresh(Method::DELETE, &unlink, None, &alice.access, Some(bad))
            .await
            .expect_error(StatusCode::FORBIDDEN, "fresh_auth_invalid");
    }
    // Nor can the stolen token be turned into a proof without the password (a failure counts).
    h.try_reauth(&alice, "wrong password", None)
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "invalid_credentials");
    h.call(
        Method::POST,
        "/v1/account/reauth/start",
        Some(json!({"credential_request": ke1(PASSWORD).1})),
        None,
    )
    .await
    .expect_error(StatusCode::UNAUTHORIZED, "missing_token");
    // A refresh token gives new tokens, never a proof.
    let refreshed = Tokens::from_json(
        &h.post("/v1/token/refresh", json!({"refresh_token": alice.refresh}))
            .await
            .expect(StatusCode::OK)
            .body,
    );
    h.call(Method::DELETE, &unlink, None, Some(&refreshed.access))
        .await
        .expect_error(StatusCode::FORBIDDEN, "fresh_auth_required");
    assert_eq!(devices(&h, &alice.account_id).await, 2);

    // A proof belongs to the session that re-authenticated: the second device's proof does not
    // work with Alice's first session (and stays usable by its own).
    let other_proof = h.fresh_auth(&second, PASSWORD).await;
    h.call_fresh(
        Method::DELETE,
        &unlink,
        None,
        &refreshed.access,
        Some(&other_proof),
    )
    .await
    .expect_error(StatusCode::FORBIDDEN, "fresh_auth_invalid");
    // A proof of the session works with any access token of that session, once.
    let proof = h.fresh_auth(&refreshed, PASSWORD).await;
    h.call_fresh(
        Method::DELETE,
        "/v1/devices/XYZ",
        None,
        &refreshed.access,
        Some(&proof),
    )
    .await
    .expect_error(StatusCode::BAD_REQUEST, "invalid_id");
    h.call_fresh(
        Method::DELETE,
        &format!("/v1/devices/{}", Id::random()),
        None,
        &refreshed.access,
        Some(&proof),
    )
    .await
    .expect_error(StatusCode::NOT_FOUND, "device_not_found");
    h.call_fresh(
        Method::DELETE,
        &unlink,
        None,
        &refreshed.access,
        Some(&proof),
    )
    .await
    .expect(StatusCode::NO_CONTENT);
    assert_eq!(devices(&h, &alice.account_id).await, 1);
    // Spent: the same proof fails for the next action; the unlinked device's proof died with it.
    h.call_fresh(
        Method::DELETE,
        "/v1/account",
        None,
        &refreshed.access,
        Some(&proof),
    )
    .await
    .expect_error(StatusCode::FORBIDDEN, "fresh_auth_invalid");
    h.call_fresh(
        Method::DELETE,
        "/v1/account",
        None,
        &refreshed.access,
        Some(&other_proof),
    )
    .await
    .expect_error(StatusCode::FORBIDDEN, "fresh_auth_invalid");

    // An expired proof is refused and changes nothing.
    let account: Id = alice.account_id.parse().unwrap();
    let token = [9u8; 32];
    let hash: [u8; 32] = Sha256::digest(token).into();
    let now = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap();
    h.store
        .put_fresh_auth(
            &hash,
            &account,
            &fam(&refreshed.access),
            now - 1,
            now - 301,
            8,
        )
        .await
        .unwrap();
    h.call_fresh(
        Method::DELETE,
        "/v1/account",
        None,
        &refreshed.access,
        Some(&URL_SAFE_NO_PAD.encode(token)),
    )
    .await
    .expect_error(StatusCode::FORBIDDEN, "fresh_auth_invalid");
    assert!(h.store.account(&account).await.unwrap().is_some());

    let proof = h.fresh_auth(&refreshed, PASSWORD).await;
    h.call_fresh(
        Method::DELETE,
        "/v1/account",
        None,
        &refreshed.access,
        Some(&proof),
    )
    .await
    .expect(StatusCode::NO_CONTENT);
    assert!(h.store.account(&account).await.unwrap().is_none());
}

async fn reauth_runs_are_bound_to_their_purpose_and_account<S: Store>(h: Harness<S>) {
    let alice = h.register(Some("alice"), PASSWORD).await;
    let bob = h.register(Some("bob"), PASSWORD).await;
    // Bob's own re-authentication run cannot be finished by Alice's session.
    let (start, credential_request) = ke1(PASSWORD);
    let reply = h
        .call(
            Method::POST,
            "/v1/account/reauth/start",
            Some(json!({"credential_request": credential_request})),
            Some(&bob.access),
        )
        .await
        .expect(StatusCode::OK);
    let finish = json!({
        "login_id": reply.body["login_id"],
        "credential_finalization": ke3(start, PASSWORD, &reply.body["credential_response"]),
    });
    h.call(
        Method::POST,
        "/v1/account/reauth/finish",
        Some(finish.clone()),
        Some(&alice.access),
    )
    .await
    .expect_error(StatusCode::UNAUTHORIZED, "login_expired");
    // (and the run is spent).
    h.call(
        Method::POST,
        "/v1/account/reauth/finish",
        Some(finish),
        Some(&bob.access),
    )
    .await
    .expect_error(StatusCode::UNAUTHORIZED, "login_expired");
    // A plain login run is not a re-authentication, and a re-authentication run is not a login.
    let (start, credential_request) = ke1(PASSWORD);
    let reply = h
        .post(
            "/v1/login/start",
            json!({"username": "alice", "credential_request": credential_request}),
        )
        .await
        .expect(StatusCode::OK);
    h.call(
        Method::POST,
        "/v1/account/reauth/finish",
        Some(json!({
            "login_id": reply.body["login_id"],
            "credential_finalization": ke3(start, PASSWORD, &reply.body["credential_response"]),
        })),
        Some(&alice.access),
    )
    .await
    .expect_error(StatusCode::UNAUTHORIZED, "login_expired");
    let (start, credential_request) = ke1(PASSWORD);
    let reply = h
        .call(
            Method::POST,
            "/v1/account/reauth/start",
            Some(json!({"credential_request": credential_request})),
            Some(&alice.access),
        )
        .await
        .expect(StatusCode::OK);
    h.post(
        "/v1/login/finish",
        json!({
            "login_id": reply.body["login_id"],
            "credential_finalization": ke3(start, PASSWORD, &reply.body["credential_response"]),
            "device_id": alice.device_id,
        }),
    )
    .await
    .expect_error(StatusCode::UNAUTHORIZED, "login_expired");
    // Failed re-authentications count like failed logins: after three, 429 (and the account's
    // password login is locked as well). Every start counts until a success clears the count
    // (KE2 alone tells a client whether its guess was right), so clear the runs above first.
    h.fresh_auth(&alice, PASSWORD).await;
    for _ in 0..3 {
        h.try_reauth(&alice, "wrong", None)
            .await
            .expect_error(StatusCode::UNAUTHORIZED, "invalid_credentials");
    }
    h.try_reauth(&alice, PASSWORD, None)
        .await
        .expect_error(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    h.try_login(
        json!({"username": "alice"}),
        PASSWORD,
        json!({"device_id": alice.device_id}),
    )
    .await
    .expect_error(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    // Malformed input is refused before anything is stored.
    h.call(
        Method::POST,
        "/v1/account/reauth/start",
        Some(json!({"credential_request": b64(&[1u8; 10])})),
        Some(&bob.access),
    )
    .await
    .expect_error(StatusCode::BAD_REQUEST, "invalid_opaque_message");
}

async fn password_change_ends_every_other_session<S: Store>(h: Harness<S>) {
    let alice = h.register(Some("alice"), PASSWORD).await;
    let other = h.login_existing(&alice, PASSWORD).await;
    let second = Tokens::from_json(
        &h.try_login(
            json!({"username": "alice"}),
            PASSWORD,
            json!({"device": {"identity_key": b64(&[2u8; 32])}}),
        )
        .await
        .expect(StatusCode::OK)
        .body,
    );
    // Without a fresh authentication nothing changes.
    reregister(&h, "password", &alice, NEW_PASSWORD, None)
        .await
        .expect_error(StatusCode::FORBIDDEN, "fresh_auth_required");
    let proof = h.fresh_auth(&alice, PASSWORD).await;
    h.call_fresh(
        Method::POST,
        "/v1/account/password/finish",
        Some(json!({"registration_upload": b64(&[1u8; 192])})),
        &alice.access,
        Some(&proof),
    )
    .await
    .expect_error(StatusCode::BAD_REQUEST, "invalid_opaque_message");
    h.login_existing(&alice, PASSWORD).await;
    // A login started under the old password cannot finish after the change.
    let (pending, credential_request) = ke1(PASSWORD);
    let pending_start = h
        .post(
            "/v1/login/start",
            json!({"username": "alice", "credential_request": credential_request}),
        )
        .await
        .expect(StatusCode::OK);

    // The malformed upload left the proof usable.
    let reply = reregister(&h, "password", &alice, NEW_PASSWORD, Some(&proof))
        .await
        .expect(StatusCode::OK);
    let renewed = Tokens::from_json(&reply.body);
    assert_eq!(renewed.account_id, alice.account_id);
    assert_eq!(renewed.device_id, alice.device_id);
    assert_eq!(renewed.device_number, 1);
    h.call(Method::GET, "/v1/devices", None, Some(&renewed.access))
        .await
        .expect(StatusCode::OK);
    for old in [&alice, &other, &second] {
        h.call(Method::GET, "/v1/devices", None, Some(&old.access))
            .await
            .expect_error(StatusCode::UNAUTHORIZED, "session_revoked");
        h.post("/v1/token/refresh", json!({"refresh_token": old.refresh}))
            .await
            .expect_error(StatusCode::UNAUTHORIZED, "invalid_token");
    }
    h.post(
        "/v1/login/finish",
        json!({
            "login_id": pending_start.body["login_id"],
            "credential_finalization": ke3(pending, PASSWORD, &pending_start.body["credential_response"]),
            "device_id": alice.device_id,
        }),
    )
    .await
    .expect_error(StatusCode::UNAUTHORIZED, "login_expired");
    // The proof was spent; the old password is gone, the new one works on every device.
    reregister(&h, "password", &renewed, PASSWORD, Some(&proof))
        .await
        .expect_error(StatusCode::FORBIDDEN, "fresh_auth_invalid");
    h.try_login(
        json!({"username": "alice"}),
        PASSWORD,
        json!({"device_id": alice.device_id}),
    )
    .await
    .expect_error(StatusCode::UNAUTHORIZED, "invalid_credentials");
    h.login_existing(&second, NEW_PASSWORD).await;
    assert_eq!(devices(&h, &alice.account_id).await, 2);
}

async fn recovery_code_replaces_a_lost_password<S: Store>(h: Harness<S>) {
    let alice = h.register(Some("alice"), PASSWORD).await;
    let second = h.login_existing(&alice, PASSWORD).await;
    let account: Id = alice.account_id.parse().unwrap();
    // Setting the code needs a fresh authentication.
    reregister(&h, "recovery", &alice, CODE, None)
        .await
        .expect_error(StatusCode::FORBIDDEN, "fresh_auth_required");
    assert!(h.store.recovery_record(&account).await.unwrap().is_none());
    // No code yet: recovery fails exactly like a wrong code, and changes nothing.
    recover(&h, json!({"username": "alice"}), CODE, NEW_PASSWORD)
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "invalid_credentials");
    let proof = h.fresh_auth(&alice, PASSWORD).await;
    reregister(&h, "recovery", &alice, "an earlier code", Some(&proof))
        .await
        .expect(StatusCode::NO_CONTENT);
    // Rotating replaces it (the earlier code stops working).
    let proof = h.fresh_auth(&alice, PASSWORD).await;
    reregister(&h, "recovery", &alice, CODE, Some(&proof))
        .await
        .expect(StatusCode::NO_CONTENT);
    let record = h.store.recovery_record(&account).await.unwrap().unwrap();
    assert_eq!(record.len(), 192);
    let export = h
        .call(
            Method::GET,
            "/v1/account/export",
            None,
            Some(&second.access),
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(
        export.body["account"]["opaque_recovery_record"],
        json!(b64(&record))
    );

    // A wrong code (or the rotated one): refused, nothing changes.
    recover(
        &h,
        json!({"username": "alice"}),
        "an earlier code",
        NEW_PASSWORD,
    )
    .await
    .expect_error(StatusCode::UNAUTHORIZED, "invalid_credentials");
    h.call(Method::GET, "/v1/devices", None, Some(&second.access))
        .await
        .expect(StatusCode::OK);
    // The right code replaces the password and ends every session; it yields no session.
    let done = recover(
        &h,
        json!({"account_id": alice.account_id}),
        CODE,
        NEW_PASSWORD,
    )
    .await
    .expect(StatusCode::NO_CONTENT);
    assert_eq!(done.body, Value::Null);
    for old in [&alice, &second] {
        h.call(Method::GET, "/v1/devices", None, Some(&old.access))
            .await
            .expect_error(StatusCode::UNAUTHORIZED, "session_revoked");
    }
    h.try_login(
        json!({"username": "alice"}),
        PASSWORD,
        json!({"device_id": alice.device_id}),
    )
    .await
    .expect_error(StatusCode::UNAUTHORIZED, "invalid_credentials");
    let back = h.login_existing(&alice, NEW_PASSWORD).await;
    assert_eq!(devices(&h, &alice.account_id).await, 1);
    // A recovery code works once.
    assert!(h.store.recovery_record(&account).await.unwrap().is_none());
    recover(&h, json!({"username": "alice"}), CODE, "third password")
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "invalid_credentials");
    h.login_existing(&back, NEW_PASSWORD).await;
}

async fn recovery_is_rate_limited_and_hides_accounts<S: Store>(h: Harness<S>) {
    let alice = h.register(Some("alice"), PASSWORD).await;
    let proof = h.fresh_auth(&alice, PASSWORD).await;
    reregister(&h, "recovery", &alice, CODE, Some(&proof))
        .await
        .expect(StatusCode::NO_CONTENT);
    // Unknown accounts get answers of the same shape and sizes.
    let (_, credential_request) = ke1(CODE);
    let registration = ClientRegistration::<Cs>::start(&mut OsRng, b"x").unwrap();
    let body = |who: Value| {
        let mut b = who;
        b["credential_request"] = json!(credential_request);
        b["registration_request"] = json!(b64(&registration.message.serialize()));
        b
    };
    for who in [
        json!({"username": "nobody"}),
        json!({"account_id": Id::random().to_hex()}),
    ] {
        let reply = h
            .post("/v1/recover/start", body(who))
            .await
            .expect(StatusCode::OK);
        assert_eq!(decode(&reply.body["credential_response"]).len(), 320);
        assert_eq!(decode(&reply.body["registration_response"]).len(), 64);
    }
    recover(&h, json!({"username": "nobody"}), CODE, NEW_PASSWORD)
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "invalid_credentials");
    h.post(
        "/v1/recover/start",
        body(json!({"username": "alice", "account_id": alice.account_id})),
    )
    .await
    .expect_error(StatusCode::BAD_REQUEST, "invalid_identifier");
    // Three wrong codes lock recovery for the account (429), but not its password login.
    for _ in 0..3 {
        recover(&h, json!({"username": "alice"}), "guess", NEW_PASSWORD)
            .await
            .expect_error(StatusCode::UNAUTHORIZED, "invalid_credentials");
    }
    recover(&h, json!({"username": "alice"}), CODE, NEW_PASSWORD)
        .await
        .expect_error(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    h.login_existing(&alice, PASSWORD).await;
    h.call(Method::GET, "/v1/devices", None, Some(&alice.access))
        .await
        .expect(StatusCode::OK);
}

async fn recovery_needs_the_second_factor<S: Store>(h: Harness<S>) {
    let alice = h.register(Some("alice"), PASSWORD).await;
    let proof = h.fresh_auth(&alice, PASSWORD).await;
    reregister(&h, "recovery", &alice, CODE, Some(&proof))
        .await
        .expect(StatusCode::NO_CONTENT);
    h.call(
        Method::POST,
        "/v1/account/totp/setup",
        None,
        Some(&alice.access),
    )
    .await
    .expect(StatusCode::OK);
    let account: Id = alice.account_id.parse().unwrap();
    let stored = h.store.account(&account).await.unwrap().unwrap();
    // Stored sealed (PROTOCOL.md §11.8): opened with the relay's TOTP key.
    let secret = totp::open(
        &h.state.secrets().totp,
        &account,
        stored.totp_secret.unwrap().expose(),
    )
    .unwrap()
    .secret
    .to_vec();
    let t = {
        let t = now();
        if t % 30 > 20 {
            tokio::time::sleep(std::time::Duration::from_secs(31 - t % 30)).await;
        }
        now()
    };
    h.call(
        Method::POST,
        "/v1/account/totp/verify",
        Some(json!({"code": totp::code_at(&secret, t - 30)})),
        Some(&alice.access),
    )
    .await
    .expect(StatusCode::NO_CONTENT);
    // The recovery code replaces the password, not the second factor: without a code nothing
    // changes.
    recover(&h, json!({"username": "alice"}), CODE, NEW_PASSWORD)
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "totp_required");
    h.call(Method::GET, "/v1/devices", None, Some(&alice.access))
        .await
        .expect(StatusCode::OK);
    let code = totp::code_at(&secret, t);
    recover_with_totp(
        &h,
        json!({"username": "alice"}),
        CODE,
        NEW_PASSWORD,
        Some(&code),
    )
    .await
    .expect(StatusCode::NO_CONTENT);
    let next = totp::code_at(&secret, t + 30);
    h.try_login(
        json!({"username": "alice"}),
        NEW_PASSWORD,
        json!({"device_id": alice.device_id, "totp_code": next}),
    )
    .await
    .expect(StatusCode::OK);
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

async fn logout_everywhere<S: Store>(h: Harness<S>) {
    let alice = h.register(None, PASSWORD).await;
    let other = h.login_existing(&alice, PASSWORD).await;
    let bob = h.register(None, PASSWORD).await;
    h.call(Method::POST, "/v1/logout/all", None, None)
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "missing_token");
    h.call(Method::POST, "/v1/logout/all", None, Some(&other.access))
        .await
        .expect(StatusCode::NO_CONTENT);
    for t in [&alice, &other] {
        h.call(Method::GET, "/v1/devices", None, Some(&t.access))
            .await
            .expect_error(StatusCode::UNAUTHORIZED, "session_revoked");
        h.post("/v1/token/refresh", json!({"refresh_token": t.refresh}))
            .await
            .expect_error(StatusCode::UNAUTHORIZED, "invalid_token");
    }
    h.call(Method::GET, "/v1/devices", None, Some(&bob.access))
        .await
        .expect(StatusCode::OK);
    h.login_existing(&alice, PASSWORD).await;
}

common::on_both_backends!(
    fresh_auth_gates_unlink_and_delete,
    reauth_runs_are_bound_to_their_purpose_and_account,
    password_change_ends_every_other_session,
    recovery_code_replaces_a_lost_password,
    recovery_is_rate_limited_and_hides_accounts,
    recovery_needs_the_second_factor,
    logout_everywhere,
);
