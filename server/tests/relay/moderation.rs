//! Moderation end to end, in process on both engines (PROTOCOL.md §11.19, §16): every case of
//! `sdk/vectors/franking.json` through `POST /v1/reports`; a report made from the vectors' key
//! material by a registered sender, reviewed and decided; bans, suspensions and their expiry
//! refusing logins, refreshes, sends and certificates; address bans behind a trusted proxy;
//! and what the database and the audit log hold afterwards (no address, no username, no
//! plaintext).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use haven_protocol::franking::verify::{StampKey, commit, delivery_stamp, sender_tag};
use haven_protocol::franking::{Destination, FrankingKey, Report};
use haven_relay::accounts::store::{DeviceRecord, FamilyRecord, NewAccount, RefreshTokenRecord};
use haven_relay::accounts::tokens::{Session, sign_access};
use haven_relay::admin::keys::create_key;
use haven_relay::channels::service::ChannelToken;
use haven_relay::channels::store::NewChannel;
use haven_relay::clock::{now_i64, now_secs};
use haven_relay::db::{PgStore, SqliteStore, Store};
use haven_relay::ids::Id;
use haven_relay::settings::{SecretSetting, Settings};
use serde_json::{Value, json};

use crate::common::{self, Api as _, Guard, Harness, Reply, Tokens, b64};

const PASSWORD: &str = "correct horse battery staple";

fn vectors() -> Value {
    serde_json::from_str(include_str!("../../../sdk/vectors/franking.json")).unwrap()
}

fn hex_field(v: &Value, name: &str) -> Vec<u8> {
    hex::decode(v[name].as_str().unwrap()).unwrap()
}

fn key32(v: &Value, name: &str) -> [u8; 32] {
    hex_field(v, name).try_into().unwrap()
}

/// The test settings with the vectors' franking secret and stamp key, a report window long
/// enough for the vectors' times, and the client address taken from `X-Forwarded-For`.
fn settings() -> Settings {
    let v = vectors();
    let mut s = common::test_settings();
    s.moderation.franking_secret = Some(SecretSetting::new(
        STANDARD.encode(key32(&v, "relay_franking_secret")),
    ));
    s.moderation.stamp_key = Some(SecretSetting::new(STANDARD.encode(key32(&v, "stamp_key"))));
    s.moderation.report_window_days = 3650;
    s.trusted_proxy = true;
    s.body_limit_bytes = 64 * 1024;
    s
}

async fn harness<S: Store>(store: S, guard: Guard) -> Harness<S> {
    Harness::with_settings(store, guard, settings()).await
}

/// An account with the given id and one device per identity key (numbers 1, 2, …).
async fn seed_account<S: Store>(h: &Harness<S>, id: Id, keys: &[Vec<u8>]) {
    let device = |key: &Vec<u8>| DeviceRecord {
        id: Id::random(),
        account_id: id,
        identity_key: key.clone(),
        name_blob: None,
        created_at: now_i64(),
        number: 0,
    };
    h.store
        .create_account(
            &NewAccount {
                id,
                username_hash: None,
                opaque_record: vec![0; 192],
                created_at: now_i64(),
            },
            &device(&keys[0]),
        )
        .await
        .unwrap();
    for key in &keys[1..] {
        h.store.create_device(&device(key), 10).await.unwrap();
    }
}

/// An access token of a new session of (account, device number).
async fn session_token<S: Store>(h: &Harness<S>, account: Id, number: u32) -> String {
    let device = h
        .store
        .device_by_number(&account, number)
        .await
        .unwrap()
        .unwrap();
    let family = Id::random();
    h.store
        .create_family(
            &FamilyRecord {
                id: family,
                account_id: account,
                device_id: device.id,
                revoked: false,
                created_at: now_i64(),
            },
            &RefreshTokenRecord {
                token_hash: Id::random().as_bytes().to_vec(),
                family_id: family,
                created_at: now_i64(),
                expires_at: now_i64() + 3600,
                used_at: None,
            },
        )
        .await
        .unwrap();
    let session = Session {
        account,
        device: device.id,
        family,
    };
    sign_access(&h.state.secrets().jwt_key, &session, now_secs(), 900).unwrap()
}

async fn file<S: Store>(
    h: &Harness<S>,
    token: &str,
    report: &[u8],
    read_token: Option<&str>,
) -> Reply {
    let mut body = json!({ "report": b64(report) });
    if let Some(t) = read_token {
        body["read_token"] = json!(t);
    }
    h.call(Method::POST, "/v1/reports", Some(body), Some(token))
        .await
}

async fn admin_key<S: Store>(h: &Harness<S>) -> String {
    create_key(&h.store, "moderator", None, now_i64())
        .await
        .unwrap()
        .secret
        .encode()
        .to_string()
}

fn snake(error: &str) -> &'static str {
    match error {
        "WrongFrankingKey" => "wrong_franking_key",
        "StampMismatch" => "stamp_mismatch",
        "CommitmentMismatch" => "commitment_mismatch",
        "TagMismatch" => "tag_mismatch",
        other => panic!("unexpected vector error {other}"),
    }
}

/// Seeds the vectors' accounts on `h` with `sender_key` on record for the sender's device 3,
/// and returns the reporters' tokens by destination account (b0…, b1…) and the channel's read
/// token.
async fn seed_vector_world<S: Store>(
    h: &Harness<S>,
    sender_key: Vec<u8>,
) -> (std::collections::HashMap<[u8; 16], String>, String) {
    let v = vectors();
    let sender = Id::from_slice(&hex_field(&v, "sender_account_id")).unwrap();
    seed_account(h, sender, &[vec![1; 64], vec![2; 64], sender_key]).await;
    let mut tokens = std::collections::HashMap::new();
    for byte in [0xB0u8, 0xB1] {
        let id = Id::from([byte; 16]);
        seed_account(h, id, &[vec![3; 64], vec![4; 64]]).await;
        tokens.insert([byte; 16], session_token(h, id, 2).await);
    }
    let read = ChannelToken::from_bytes([0x33; 32]);
    h.store
        .create_channel(&NewChannel {
            id: Id::from([0xC4; 16]),
            read_hash: read.hash(),
            write_hash: [0x44; 32],
            created_at: now_i64(),
            expires_at: now_i64() + 86_400,
        })
        .await
        .unwrap();
    (tokens, read.encode())
}

fn destination_account(report: &[u8]) -> [u8; 16] {
    match Report::decode(report).unwrap().destination {
        Destination::Device { account, .. } => account,
        _ => panic!("a device destination"),
    }
}

/// Every vector through the endpoint. `other` is a second relay on the same engine, whose
/// record of the sender's identity key is the one the `wrong_sender_key` case lists.
async fn franking_vectors<S: Store>(h: Harness<S>, other: Harness<S>) {
    let v = vectors();
    let sender_key = hex_field(&v, "sender_identity_key");
    let (tokens, read_token) = seed_vector_world(&h, sender_key.clone()).await;

    // The published key is the vectors' F.
    let key = h
        .call(Method::GET, "/v1/franking/key", None, None)
        .await
        .expect(StatusCode::OK);
    assert_eq!(
        STANDARD
            .decode(key.body["franking_key"].as_str().unwrap())
            .unwrap(),
        hex_field(&v, "franking_key_encoding")
    );
    assert_eq!(key.body["previous"], json!([]));

    // Negative cases first: a refused report stores nothing; a tag mismatch is stored
    // unattributed (steps 3–5 passed).
    for case in v["negative"].as_array().unwrap() {
        let report = hex_field(case, "report");
        let error = case["error"].as_str().unwrap();
        let name = case["name"].as_str().unwrap();
        let target = if hex_field(case, "sender_identity_key") == sender_key {
            &h
        } else {
            &other
        };
        let token = if std::ptr::eq(target, &h) {
            tokens[&destination_account(&report)].clone()
        } else {
            let (t, _) = seed_vector_world(&other, hex_field(case, "sender_identity_key")).await;
            t[&destination_account(&report)].clone()
        };
        let reply = file(target, &token, &report, None).await;
        if error == "TagMismatch" {
            let reply = reply.expect(StatusCode::ACCEPTED);
            assert_eq!(reply.body["attributed"], false, "{name}");
        } else {
            let reply = reply.expect_error(StatusCode::UNPROCESSABLE_ENTITY, "report_unverified");
            let message = reply.body["error"]["message"].as_str().unwrap();
            assert!(message.contains(snake(error)), "{name}: {message}");
        }
    }

    // The positive cases verify, with the listed report ids. Case 0 supersedes the
    // unattributed copy filed above (`altered_tag`, same stamp, same id).
    let cases = v["cases"].as_array().unwrap();
    let mailbox = hex_field(&cases[0], "report");
    let reply = file(&h, &tokens[&[0xB0; 16]], &mailbox, None)
        .await
        .expect(StatusCode::ACCEPTED);
    assert_eq!(reply.body["report_id"], cases[0]["report_id"]);
    assert_eq!(reply.body["attributed"], true);
    // A replay answers the first outcome, and stores nothing new.
    let again = file(&h, &tokens[&[0xB0; 16]], &mailbox, None)
        .await
        .expect(StatusCode::ACCEPTED);
    assert_eq!(again.body, reply.body);
    // The altered tag again: the verified report stands.
    let altered_tag = v["negative"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "altered_tag")
        .unwrap();
    let stands = file(
        &h,
        &tokens[&[0xB0; 16]],
        &hex_field(altered_tag, "report"),
        None,
    )
    .await
    .expect(StatusCode::ACCEPTED);
    assert_eq!(stands.body["attributed"], true);
    // Another account is not the recipient.
    file(&h, &tokens[&[0xB1; 16]], &mailbox, None)
        .await
        .expect_error(StatusCode::FORBIDDEN, "not_recipient");

    // The channel case needs the channel's read token.
    let channel = hex_field(&cases[1], "report");
    file(&h, &tokens[&[0xB1; 16]], &channel, None)
        .await
        .expect_error(StatusCode::FORBIDDEN, "not_recipient");
    let wrong = ChannelToken::from_bytes([0x34; 32]).encode();
    file(&h, &tokens[&[0xB1; 16]], &channel, Some(&wrong))
        .await
        .expect_error(StatusCode::FORBIDDEN, "not_recipient");
    let reply = file(&h, &tokens[&[0xB1; 16]], &channel, Some(&read_token))
        .await
        .expect(StatusCode::ACCEPTED);
    assert_eq!(reply.body["report_id"], cases[1]["report_id"]);
    assert_eq!(reply.body["attributed"], true);

    // Malformed bodies.
    file(&h, &tokens[&[0xB0; 16]], &mailbox[..100], None)
        .await
        .expect_error(StatusCode::BAD_REQUEST, "invalid_report");
    let mut trailing = mailbox.clone();
    trailing.push(0);
    file(&h, &tokens[&[0xB0; 16]], &trailing, None)
        .await
        .expect_error(StatusCode::BAD_REQUEST, "invalid_report");

    // The queue holds exactly: case 0, case 1, and the unattributed `wrong_recipient_restamped`.
    let admin = admin_key(&h).await;
    let queue = h
        .call(
            Method::GET,
            "/v1/admin/reports?status=pending",
            None,
            Some(&admin),
        )
        .await
        .expect(StatusCode::OK);
    let reports = queue.body["reports"].as_array().unwrap();
    assert_eq!(reports.len(), 3, "{}", queue.body);
    let attributed: Vec<bool> = reports
        .iter()
        .map(|r| r["attributed"].as_bool().unwrap())
        .collect();
    assert_eq!(attributed.iter().filter(|a| **a).count(), 2);

    // The report window: a relay whose window is shorter than the vectors' age refuses them.
    let mut short = settings();
    short.moderation.report_window_days = 1;
    let (store, guard) = common::sqlite_store().await.unwrap();
    let late = Harness::with_settings(store, guard, short).await;
    let (late_tokens, _) = seed_vector_world(&late, sender_key).await;
    file(&late, &late_tokens[&[0xB0; 16]], &mailbox, None)
        .await
        .expect_error(StatusCode::GONE, "report_expired");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn franking_vectors_sqlite() {
    let (a, ga) = common::sqlite_store().await.unwrap();
    let (b, gb) = common::sqlite_store().await.unwrap();
    franking_vectors::<SqliteStore>(harness(a, ga).await, harness(b, gb).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn franking_vectors_postgres() {
    let Some((a, ga)) = common::pg_store().await else {
        return;
    };
    let Some((b, gb)) = common::pg_store().await else {
        return;
    };
    franking_vectors::<PgStore>(harness(a, ga).await, harness(b, gb).await).await;
}

/// A report of a message that a device sent before it was unlinked is still attributed: its
/// identity key stays on record, under its never reused number, for the report window.
async fn unlinked_senders_stay_attributable<S: Store>(h: Harness<S>) {
    let v = vectors();
    let (tokens, _) = seed_vector_world(&h, hex_field(&v, "sender_identity_key")).await;
    let sender = Id::from_slice(&hex_field(&v, "sender_account_id")).unwrap();
    let number = u32::try_from(v["sender_device_id"].as_u64().unwrap()).unwrap();
    let device = h
        .store
        .device_by_number(&sender, number)
        .await
        .unwrap()
        .unwrap();
    assert!(
        h.store
            .delete_device(&sender, &device.id, now_i64())
            .await
            .unwrap()
    );
    let mailbox = hex_field(&v["cases"][0], "report");
    let reply = file(&h, &tokens[&[0xB0; 16]], &mailbox, None)
        .await
        .expect(StatusCode::ACCEPTED);
    assert_eq!(reply.body["attributed"], true, "{:?}", reply.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unlinked_senders_stay_attributable_sqlite() {
    let (a, ga) = common::sqlite_store().await.unwrap();
    unlinked_senders_stay_attributable::<SqliteStore>(harness(a, ga).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unlinked_senders_stay_attributable_postgres() {
    let Some((a, ga)) = common::pg_store().await else {
        return;
    };
    unlinked_senders_stay_attributable::<PgStore>(harness(a, ga).await).await;
}

/// Every byte of the database, in a form to scan: SQLite's files, or every Postgres row as
/// text (bytea as hex).
trait Dump {
    async fn dump(&self, guard: &Guard) -> Vec<u8>;
}

impl Dump for SqliteStore {
    async fn dump(&self, guard: &Guard) -> Vec<u8> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(guard.dir()).unwrap() {
            let path = entry.unwrap().path();
            if path.is_file() {
                out.extend(std::fs::read(path).unwrap());
            }
        }
        out
    }
}

impl Dump for PgStore {
    async fn dump(&self, _guard: &Guard) -> Vec<u8> {
        let mut out = Vec::new();
        for table in self.table_names().await.unwrap() {
            let rows: Vec<String> =
                sqlx::query_scalar(&format!("SELECT CAST(x AS TEXT) FROM {table} x"))
                    .fetch_all(self.pool())
                    .await
                    .unwrap();
            for row in rows {
                out.extend(row.into_bytes());
                out.push(b'\n');
            }
        }
        out
    }
}

/// A reply's body as text (NDJSON of several lines arrives as a JSON string).
fn text_of(reply: &Reply) -> String {
    match &reply.body {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Login as `t`'s existing device.
async fn login<S: Store>(h: &Harness<S>, t: &Tokens, password: &str) -> Reply {
    h.try_login(
        json!({"account_id": t.account_id}),
        password,
        json!({"device_id": t.device_id}),
    )
    .await
}

/// The vectors' sender identity registers for real; its recipient reports a message it sent;
/// the reviewer reads it, bans with purge; logins, sends and refreshes are refused; unban
/// restores; a suspension refuses and then expires; the audit log shows every step and no
/// username or plaintext, and the database holds no plaintext.
async fn report_review_ban_unban<S: Store + Dump>(h: Harness<S>) {
    let v = vectors();
    let identity = hex_field(&v, "sender_identity_key");
    let mallory = Tokens::from_json(
        &h.try_register_with_key(Some("mallory"), PASSWORD, &identity)
            .await
            .expect(StatusCode::CREATED)
            .body,
    );
    let bob = h.register(Some("bobby"), PASSWORD).await;
    let bob_id: Id = bob.account_id.parse().unwrap();
    let mallory_id: Id = mallory.account_id.parse().unwrap();

    // What mallory's client does per envelope (§16.3) and the relay at delivery (§16.4).
    let content = b"an abusive message, franked".to_vec();
    let fk = [0x5e; 32];
    let f = FrankingKey(key32(&v, "relay_franking_public"));
    let destination = Destination::Device {
        account: *bob_id.as_bytes(),
        device: bob.device_number,
    };
    let c = commit(&fk, &content).unwrap();
    let secret = x25519_dalek::StaticSecret::from(key32(&v, "sender_identity_x25519_secret"));
    let ik: [u8; 64] = identity.clone().try_into().unwrap();
    let dv = sender_tag(&secret, &ik, &f, &c, &destination).unwrap();
    let time = now_secs();
    let stamp = delivery_stamp(
        &StampKey::from_bytes(key32(&v, "stamp_key")),
        &c,
        &destination,
        7,
        time,
    );
    let report = Report {
        franking_key: f,
        sender_account: *mallory_id.as_bytes(),
        sender_device: mallory.device_number,
        destination,
        seq: 7,
        time,
        commitment: c,
        stamp,
        opening_key: fk,
        tag: dv,
        content: content.clone(),
    };
    let mut altered = report.clone();
    altered.content[0] ^= 1;
    file(&h, &bob.access, &altered.encode(), None)
        .await
        .expect_error(StatusCode::UNPROCESSABLE_ENTITY, "report_unverified");
    let filed = file(&h, &bob.access, &report.encode(), None)
        .await
        .expect(StatusCode::ACCEPTED);
    assert_eq!(filed.body["attributed"], true);
    let report_id = filed.body["report_id"].as_str().unwrap().to_owned();
    // Mallory cannot report a message sent to bob.
    file(&h, &mallory.access, &report.encode(), None)
        .await
        .expect_error(StatusCode::FORBIDDEN, "not_recipient");

    // The admin API needs an admin key; a user's token is not one.
    h.call(Method::GET, "/v1/admin/reports", None, Some(&bob.access))
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "invalid_admin_key");
    let admin = admin_key(&h).await;
    let queue = h
        .call(Method::GET, "/v1/admin/reports", None, Some(&admin))
        .await
        .expect(StatusCode::OK);
    assert_eq!(queue.body["reports"][0]["report_id"], report_id.as_str());
    let overview = h
        .call(Method::GET, "/v1/admin/overview", None, Some(&admin))
        .await
        .expect(StatusCode::OK);
    assert_eq!(overview.body["pending_reports"], 1);
    assert_eq!(overview.body["active_bans"], 0);
    assert_eq!(
        queue.body["reports"][0]["sender_account"],
        mallory.account_id.as_str()
    );
    let opened = h
        .call(
            Method::GET,
            &format!("/v1/admin/reports/{report_id}"),
            None,
            Some(&admin),
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(opened.body["content"], b64(&content));
    // Bad decisions change nothing.
    let decide = |body: Value| {
        let path = format!("/v1/admin/reports/{report_id}/decision");
        let admin = admin.clone();
        let h = &h;
        async move { h.call(Method::POST, &path, Some(body), Some(&admin)).await }
    };
    decide(json!({"decision": "obliterate"}))
        .await
        .expect_error(StatusCode::BAD_REQUEST, "invalid_decision");
    decide(json!({"decision": "ban", "mail": "shred"}))
        .await
        .expect_error(StatusCode::BAD_REQUEST, "invalid_decision");
    decide(json!({"decision": "ban", "expires_at": 5}))
        .await
        .expect_error(StatusCode::BAD_REQUEST, "invalid_decision");

    // A queued logged-in send from mallory, undelivered: purged by the ban.
    h.send_as(&mallory, &bob.account_id, &Id::random(), &[1], b"queued")
        .await
        .expect(StatusCode::OK);
    let banned = decide(json!({"decision": "ban", "mail": "purge"}))
        .await
        .expect(StatusCode::OK);
    assert_eq!(banned.body["account_id"], mallory.account_id.as_str());
    assert!(banned.body["sessions_revoked"].as_u64().unwrap() >= 1);
    assert_eq!(banned.body["envelopes_purged"], 1);
    decide(json!({"decision": "dismiss"}))
        .await
        .expect_error(StatusCode::CONFLICT, "report_decided");

    // Banned: the sessions are gone, login (with the right password) is refused with the code.
    h.send_as(&mallory, &bob.account_id, &Id::random(), &[1], b"hi")
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "session_revoked");
    let refused = login(&h, &mallory, PASSWORD)
        .await
        .expect_error(StatusCode::FORBIDDEN, "account_banned");
    assert!(
        refused.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("indefinitely")
    );
    // A wrong password still says only invalid_credentials (the ban is not revealed).
    login(&h, &mallory, "wrong password")
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "invalid_credentials");
    let listed = h
        .call(Method::GET, "/v1/admin/bans/accounts", None, Some(&admin))
        .await
        .expect(StatusCode::OK);
    assert_eq!(listed.body[0]["kind"], "banned");

    // Unban restores.
    let unban = format!("/v1/admin/bans/accounts/{}", mallory.account_id);
    h.call(Method::DELETE, &unban, None, Some(&admin))
        .await
        .expect(StatusCode::NO_CONTENT);
    h.call(Method::DELETE, &unban, None, Some(&admin))
        .await
        .expect_error(StatusCode::NOT_FOUND, "sanction_not_found");
    let mallory = Tokens::from_json(
        &login(&h, &mallory, PASSWORD)
            .await
            .expect(StatusCode::OK)
            .body,
    );
    h.send_as(
        &mallory,
        &bob.account_id,
        &Id::random(),
        &[1],
        b"hello again",
    )
    .await
    .expect(StatusCode::OK);

    // A suspension: sends, certificates and refreshes refused with the expiry; then it lifts.
    let until = now_i64() + 2;
    h.call(
        Method::POST,
        "/v1/admin/bans/accounts",
        Some(json!({"account_id": mallory.account_id, "decision": "suspend", "expires_at": until})),
        Some(&admin),
    )
    .await
    .expect(StatusCode::OK);
    let refused = h
        .send_as(&mallory, &bob.account_id, &Id::random(), &[1], b"x")
        .await
        .expect_error(StatusCode::FORBIDDEN, "account_suspended");
    assert!(
        refused.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains(&until.to_string())
    );
    h.call(Method::POST, "/v1/certificate", None, Some(&mallory.access))
        .await
        .expect_error(StatusCode::FORBIDDEN, "account_suspended");
    h.post(
        "/v1/token/refresh",
        json!({"refresh_token": mallory.refresh}),
    )
    .await
    .expect_error(StatusCode::FORBIDDEN, "account_suspended");
    login(&h, &mallory, PASSWORD)
        .await
        .expect_error(StatusCode::FORBIDDEN, "account_suspended");
    tokio::time::sleep(std::time::Duration::from_millis(2600)).await;
    let mallory = Tokens::from_json(
        &login(&h, &mallory, PASSWORD)
            .await
            .expect(StatusCode::OK)
            .body,
    );
    h.send_as(&mallory, &bob.account_id, &Id::random(), &[1], b"free")
        .await
        .expect(StatusCode::OK);
    h.call(Method::POST, "/v1/certificate", None, Some(&mallory.access))
        .await
        .expect(StatusCode::OK);
    // Unknown accounts cannot be banned.
    h.call(
        Method::POST,
        "/v1/admin/bans/accounts",
        Some(json!({"account_id": Id::random(), "decision": "ban"})),
        Some(&admin),
    )
    .await
    .expect_error(StatusCode::NOT_FOUND, "account_not_found");

    // The audit log shows each step, with the admin key as actor where an admin acted.
    let page = h
        .call(
            Method::GET,
            "/v1/admin/audit?limit=1000",
            None,
            Some(&admin),
        )
        .await
        .expect(StatusCode::OK);
    let events = page.body["events"].as_array().unwrap();
    let kinds: Vec<&str> = events.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    for kind in [
        "report_filed",
        "report_opened",
        "report_decided",
        "account_banned",
        "mail_purged",
        "sanction_enforced",
        "login_failed",
        "account_unbanned",
        "account_suspended",
    ] {
        assert!(kinds.contains(&kind), "{kind} missing from {kinds:?}");
    }
    let decided = events
        .iter()
        .find(|e| e["kind"] == "report_decided")
        .unwrap();
    assert!(decided["actor"].is_string());
    assert_eq!(decided["subject"], mallory.account_id.as_str());
    assert_eq!(decided["detail"]["decision"], "ban");
    // Filtered and paginated.
    let bans = h
        .call(
            Method::GET,
            "/v1/admin/audit?kind=account_banned",
            None,
            Some(&admin),
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(bans.body["events"].as_array().unwrap().len(), 1);
    let first = h
        .call(Method::GET, "/v1/admin/audit?limit=2", None, Some(&admin))
        .await
        .expect(StatusCode::OK);
    let next = first.body["next"].as_i64().unwrap();
    let second = h
        .call(
            Method::GET,
            &format!("/v1/admin/audit?limit=2&after={next}"),
            None,
            Some(&admin),
        )
        .await
        .expect(StatusCode::OK);
    assert!(second.body["events"][0]["id"].as_i64().unwrap() > next);
    h.call(
        Method::GET,
        "/v1/admin/audit?kind=nonsense",
        None,
        Some(&admin),
    )
    .await
    .expect_error(StatusCode::BAD_REQUEST, "invalid_query");
    // The NDJSON export: one event a line, the same events.
    let export = h
        .raw(
            Request::builder()
                .uri("/v1/admin/audit/export")
                .header(header::AUTHORIZATION, format!("Bearer {admin}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .expect(StatusCode::OK);
    let text = text_of(&export);
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(lines.len() >= events.len());
    // No username and no revealed content anywhere in the log or the database (the envelopes'
    // own bytes are opaque ciphertext to the relay and stay as sent).
    let dump = h.store.dump(&h.guard).await;
    for (what, haystack) in [("audit export", text.as_bytes()), ("database", &dump[..])] {
        for needle in [&b"mallory"[..], b"bobby", &content[..]] {
            assert!(
                !contains(haystack, needle),
                "{what} holds {:?}",
                String::from_utf8_lossy(needle)
            );
        }
    }
}

/// An address ban refuses its whole prefix (behind the trusted proxy), is stored and listed as
/// a keyed hash only, and is lifted by address; the admin API stays reachable.
async fn address_bans<S: Store + Dump>(h: Harness<S>) {
    let admin = admin_key(&h).await;
    let from = |addr: &str, path: &str, token: Option<&str>| {
        let mut b = Request::builder().uri(path).header("x-forwarded-for", addr);
        if let Some(t) = token {
            b = b.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        b.body(Body::empty()).unwrap()
    };
    h.raw(from("203.0.113.77", "/v1/franking/key", None))
        .await
        .expect(StatusCode::OK);
    let ban = |body: Value| {
        h.call(
            Method::POST,
            "/v1/admin/bans/addresses",
            Some(body),
            Some(&admin),
        )
    };
    ban(json!({"address": "203.0.113.0/16"}))
        .await
        .expect_error(StatusCode::BAD_REQUEST, "invalid_address");
    ban(json!({"address": "not an address"}))
        .await
        .expect_error(StatusCode::BAD_REQUEST, "invalid_address");
    let created = ban(json!({"address": "203.0.113.5"}))
        .await
        .expect(StatusCode::CREATED);
    let hash = created.body["prefix_hash"].as_str().unwrap().to_owned();
    h.raw(from("203.0.113.77", "/v1/franking/key", None))
        .await
        .expect_error(StatusCode::FORBIDDEN, "address_banned");
    // Behind the one trusted proxy the right-most entry is the client: one it made up to the
    // left does not get it past the ban.
    h.raw(from("198.51.100.1, 203.0.113.77", "/v1/login/start", None))
        .await
        .expect_error(StatusCode::FORBIDDEN, "address_banned");
    h.raw(from("203.0.114.77", "/v1/franking/key", None))
        .await
        .expect(StatusCode::OK);
    // The operator is not locked out.
    let listed = h
        .raw(from(
            "203.0.113.77",
            "/v1/admin/bans/addresses",
            Some(&admin),
        ))
        .await
        .expect(StatusCode::OK);
    assert_eq!(listed.body[0]["prefix_hash"], hash.as_str());
    assert!(!text_of(&listed).contains("203.0.113"));

    // IPv6 /64.
    ban(json!({"address": "2001:db8:1:2::1/64", "expires_at": now_i64() + 3600}))
        .await
        .expect(StatusCode::CREATED);
    h.raw(from("2001:db8:1:2:ffff::9", "/v1/franking/key", None))
        .await
        .expect_error(StatusCode::FORBIDDEN, "address_banned");
    h.raw(from("2001:db8:1:3::9", "/v1/franking/key", None))
        .await
        .expect(StatusCode::OK);

    // The database and the audit log hold no address, textual or binary.
    let dump = h.store.dump(&h.guard).await;
    let audit = h
        .call(Method::GET, "/v1/admin/audit/export", None, Some(&admin))
        .await
        .expect(StatusCode::OK);
    let forms: Vec<Vec<u8>> = vec![
        b"203.0.113".to_vec(),
        vec![203, 0, 113, 77],
        vec![203, 0, 113, 5],
        hex::encode([203u8, 0, 113]).into_bytes(),
        b"2001:db8".to_vec(),
        vec![0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 2],
        hex::encode([0x20u8, 0x01, 0x0d, 0xb8]).into_bytes(),
    ];
    for form in &forms {
        assert!(!contains(&dump, form), "database holds {form:?}");
        assert!(
            !contains(text_of(&audit).as_bytes(), form),
            "audit holds {form:?}"
        );
    }
    assert!(text_of(&audit).contains("address_banned"));

    // Lifted by an address in the prefix (or by the hash).
    h.call(
        Method::DELETE,
        "/v1/admin/bans/addresses/203.0.113.9",
        None,
        Some(&admin),
    )
    .await
    .expect(StatusCode::NO_CONTENT);
    h.call(
        Method::DELETE,
        &format!("/v1/admin/bans/addresses/{hash}"),
        None,
        Some(&admin),
    )
    .await
    .expect_error(StatusCode::NOT_FOUND, "ban_not_found");
    h.raw(from("203.0.113.77", "/v1/franking/key", None))
        .await
        .expect(StatusCode::OK);
}

/// Failed logins, a lockout and a refresh-token reuse are audited with the account id only.
async fn security_events_are_audited<S: Store>(h: Harness<S>) {
    let alice = h.register(Some("alice"), PASSWORD).await;
    for _ in 0..3 {
        login(&h, &alice, "wrong").await;
    }
    login(&h, &alice, PASSWORD)
        .await
        .expect_error(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    let refreshed = h
        .post("/v1/token/refresh", json!({"refresh_token": alice.refresh}))
        .await
        .expect(StatusCode::OK);
    assert!(refreshed.body["access_token"].is_string());
    h.post("/v1/token/refresh", json!({"refresh_token": alice.refresh}))
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "refresh_reused");
    // A per-address limit hit: one event for the route template, however many hits.
    let mut limited = 0;
    for _ in 0..(h.state.settings().auth_rate_limit_per_minute + 5) {
        let reply = h
            .raw(
                Request::builder()
                    .method(Method::POST)
                    .uri("/v1/register/start")
                    .header("x-forwarded-for", "198.51.100.9")
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(Body::from("{}"))
                    .unwrap(),
            )
            .await;
        if reply.status == StatusCode::TOO_MANY_REQUESTS {
            limited += 1;
        }
    }
    assert!(limited >= 2);
    let admin = admin_key(&h).await;
    let page = h
        .call(
            Method::GET,
            "/v1/admin/audit?limit=1000",
            None,
            Some(&admin),
        )
        .await
        .expect(StatusCode::OK);
    let events = page.body["events"].as_array().unwrap();
    let of = |kind: &str| events.iter().filter(|e| e["kind"] == kind).count();
    assert_eq!(of("rate_limited"), 1, "{}", page.body);
    let limit = events.iter().find(|e| e["kind"] == "rate_limited").unwrap();
    assert_eq!(limit["detail"]["route"], "/v1/register/start");
    assert!(limit["subject"].is_null());
    assert!(!text_of(&page).contains("198.51.100"));
    assert_eq!(of("login_failed"), 3, "{}", page.body);
    assert_eq!(of("login_locked_out"), 1);
    assert_eq!(of("refresh_token_reused"), 1);
    for e in events.iter().filter(|e| e["kind"] != "rate_limited") {
        assert_eq!(e["subject"], alice.account_id.as_str());
    }
    assert!(!text_of(&page).contains("alice"));
}

common::on_both_backends!(
    settings = super::settings;
    report_review_ban_unban,
    address_bans,
    security_events_are_audited,
);
