//! Blindness: after registering (and logging in as) `alice` with a password and storing a diary
//! item in the vault, neither string nor the diary text, in any common encoding, appears
//! anywhere in the database (both engines).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common::{self, Api};

use crate::common::{Harness, RelayConfig, RemoteApi};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use haven_relay::db::Store;
use haven_testkit::blindness::{
    assert_free_of, assert_logged, assert_no_peer_address, sender_forms,
};
use serde_json::json;

const USERNAME: &str = "alice";
const PASSWORD: &str = "correct horse battery staple";
/// Diary text that is encrypted on the "device" and uploaded to the vault.
const DIARY_TEXT: &str = "the lighthouse keeper kept a secret diary";
const DIARY_TITLE: &str = "Lighthouse";

/// Every form in which a string could plausibly leak.
fn forbidden_forms() -> Vec<Vec<u8>> {
    let mut forms = Vec::new();
    for s in [
        USERNAME,
        PASSWORD,
        "Alice",
        "ALICE",
        DIARY_TEXT,
        DIARY_TITLE,
        "lighthouse",
    ] {
        let b = s.as_bytes();
        forms.push(b.to_vec());
        forms.push(hex::encode(b).into_bytes());
        forms.push(hex::encode_upper(b).into_bytes());
        forms.push(STANDARD.encode(b).trim_end_matches('=').as_bytes().to_vec());
        forms.push(URL_SAFE_NO_PAD.encode(b).into_bytes());
        // UTF-16LE, as some engines store text.
        forms.push(s.encode_utf16().flat_map(u16::to_le_bytes).collect());
    }
    forms
}

fn assert_clean(haystack: &[u8], what: &str) {
    assert!(
        !haystack.is_empty(),
        "{what} is empty: the test would prove nothing"
    );
    for form in forbidden_forms() {
        assert!(
            !haystack.windows(form.len()).any(|w| w == form.as_slice()),
            "{what} contains {:?}",
            String::from_utf8_lossy(&form)
        );
    }
}

async fn exercise<S: Store>(h: &Harness<S>) {
    let tokens = h.register(Some(USERNAME), PASSWORD).await;
    h.try_login(
        json!({"username": USERNAME}),
        PASSWORD,
        json!({"device_id": tokens.device_id}),
    )
    .await
    .expect(axum::http::StatusCode::OK);
    // A failed attempt and a pending login leave state behind too.
    h.try_login(
        json!({"username": USERNAME}),
        "wrong",
        json!({"device_id": tokens.device_id}),
    )
    .await;
    let start =
        opaque_ke::ClientLogin::<common::Cs>::start(&mut rand::rngs::OsRng, PASSWORD.as_bytes())
            .unwrap();
    h.post(
        "/v1/login/start",
        json!({
            "username": USERNAME,
            "credential_request": common::b64(&start.message.serialize()),
        }),
    )
    .await
    .expect(axum::http::StatusCode::OK);
    store_diary_item(h, &tokens).await;
}

/// Encrypts a diary item with the SDK (as a device would) and stores it in the vault: created,
/// updated, deleted and restored, so every table holds a row.
async fn store_diary_item<S: Store>(h: &Harness<S>, tokens: &common::Tokens) {
    use axum::http::{Method, StatusCode};
    use haven_sdk::{DiaryKeys, KdfParams};
    use rand_chacha::ChaCha20Rng;
    use rand_chacha::rand_core::SeedableRng as _;
    let mut rng = ChaCha20Rng::from_seed([7; 32]);
    let (keys, bundle, _codes) =
        DiaryKeys::create(PASSWORD.as_bytes(), KdfParams::MIN, &mut rng).unwrap();
    assert!(!bundle.to_bytes().is_empty());
    let (collection, item) = ([1u8; 16], [2u8; 16]);
    let url = format!(
        "/v1/vault/{}/items/{}",
        hex::encode(collection),
        hex::encode(item)
    );
    let entry = haven_sdk::diary::Entry {
        title: DIARY_TITLE.into(),
        body: DIARY_TEXT.into(),
        mood: Some("lighthouse".into()),
        tags: vec!["lighthouse".into()],
        created_ms: 1_700_000_000_000,
        updated_ms: 1_700_000_000_000,
        attachments: Vec::new(),
    };
    let mut expected = 0;
    for revision in 1..=2u64 {
        let sealed = entry
            .seal(&keys, &collection, &item, revision, &mut rng)
            .unwrap();
        let reply = h
            .call(
                Method::PUT,
                &url,
                Some(
                    json!({"expected_revision": expected, "body": common::b64(&sealed.body),
                            "meta": common::b64(&sealed.meta)}),
                ),
                Some(&tokens.access),
            )
            .await
            .expect(StatusCode::OK);
        expected = reply.body["revision"].as_u64().unwrap();
    }
    h.call(
        Method::DELETE,
        &format!("{url}?expected_revision=2"),
        None,
        Some(&tokens.access),
    )
    .await
    .expect(StatusCode::OK);
    let sealed = entry.seal(&keys, &collection, &item, 4, &mut rng).unwrap();
    h.call(
        Method::POST,
        &format!("{url}/restore"),
        Some(
            json!({"expected_revision": 3, "body": common::b64(&sealed.body),
                    "meta": common::b64(&sealed.meta)}),
        ),
        Some(&tokens.access),
    )
    .await
    .expect(StatusCode::OK);
    // What the relay hands back decrypts on the device: the relay stored exactly the bytes.
    let got = h
        .call(Method::GET, &url, None, Some(&tokens.access))
        .await
        .expect(StatusCode::OK);
    let blob = |k: &str| STANDARD.decode(got.body[k].as_str().unwrap()).unwrap();
    let stored = haven_sdk::diary::SealedEntry {
        body: blob("body"),
        meta: blob("meta"),
    };
    let opened = haven_sdk::diary::Entry::open(&keys, &collection, &item, 4, &stored).unwrap();
    assert_eq!(opened, entry);
}

#[tokio::test]
async fn sqlite_file_never_contains_username_or_password() {
    let h = Harness::sqlite().await.unwrap();
    exercise(&h).await;
    let common::Guard::Dir(dir) = &h.guard else {
        panic!("sqlite harness has a directory")
    };
    let read_all = || {
        let mut bytes = Vec::new();
        let mut names = Vec::new();
        for entry in std::fs::read_dir(dir.path()).unwrap() {
            let path = entry.unwrap().path();
            names.push(path.file_name().unwrap().to_string_lossy().into_owned());
            bytes.extend(std::fs::read(&path).unwrap());
        }
        (bytes, names)
    };
    // While open: the main file plus the write-ahead log (where fresh rows live).
    let (bytes, names) = read_all();
    assert!(names.iter().any(|n| n == "haven.db-wal"), "{names:?}");
    assert_clean(&bytes, "sqlite db + wal");
    // After a checkpoint on close, everything is in the main file.
    h.store.close().await;
    let (bytes, _) = read_all();
    assert_clean(&bytes, "sqlite db after close");
}

#[tokio::test]
async fn postgres_tables_never_contain_username_or_password() {
    let Some(h) = Harness::postgres().await else {
        return;
    };
    exercise(&h).await;
    let mut dump = String::new();
    let tables = h.store.table_names().await.unwrap();
    assert!(tables.iter().any(|t| t == "accounts"));
    assert!(tables.iter().any(|t| t == "vault_revisions"));
    for table in tables {
        let rows: Vec<(String,)> = sqlx::query_as(&format!("SELECT t::text FROM {table} t"))
            .fetch_all(h.store.pool())
            .await
            .unwrap();
        for (row,) in rows {
            dump.push_str(&row);
            dump.push('\n');
        }
    }
    assert!(dump.contains("\\x"), "bytea columns are dumped in hex");
    assert_clean(dump.as_bytes(), "postgres dump");
    assert_clean(dump.to_lowercase().as_bytes(), "postgres dump (lowercased)");
}

/// A sealed send from Alice to Bob (a real SDK sealed-sender envelope carrying Alice's relay
/// certificate), made from a known client address: the peer address in process, and the
/// `X-Forwarded-For` entry of a trusted proxy over HTTP. Returns the forbidden forms.
async fn sealed_exercise<A: Api>(h: &A) -> Vec<Vec<u8>> {
    use axum::http::{Method, Request, StatusCode};
    use rand_core::SeedableRng as _;
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(11);
    let alice_id = haven_sdk::IdentityKeyPair::generate(&mut rng);
    let bob_id = haven_sdk::IdentityKeyPair::generate(&mut rng);
    let alice = common::Tokens::from_json(
        &h.try_register_with_key(None, PASSWORD, &alice_id.public().to_bytes())
            .await
            .expect(StatusCode::CREATED)
            .body,
    );
    let bob = common::Tokens::from_json(
        &h.try_register_with_key(None, PASSWORD, &bob_id.public().to_bytes())
            .await
            .expect(StatusCode::CREATED)
            .body,
    );
    let access_key = [7u8; 16];
    h.call(
        Method::PUT,
        "/v1/account/access-key",
        Some(json!({"access_key": common::b64(&access_key)})),
        Some(&bob.access),
    )
    .await
    .expect(StatusCode::NO_CONTENT);
    let cert = h
        .call(Method::POST, "/v1/certificate", None, Some(&alice.access))
        .await
        .expect(StatusCode::OK);
    let cert = haven_sdk::SenderCertificate::from_bytes(
        &STANDARD
            .decode(cert.body["certificate"].as_str().unwrap())
            .unwrap(),
    )
    .unwrap();
    let sealed =
        haven_sdk::seal_sender(&alice_id, &cert, bob_id.public(), 1, b"hello", &mut rng).unwrap();
    let ip = "203.0.113.77";
    let body = json!({
        "message_id": haven_relay::ids::Id::random(),
        "envelopes": [{"device_number": 1, "content": common::b64(&sealed)}],
    });
    let mut req = Request::builder()
        .method(Method::POST)
        .uri(format!("/v1/messages/{}/sealed", bob.account_id))
        .header("content-type", "application/json")
        .header("unidentified-access-key", common::b64(&access_key))
        .header("x-forwarded-for", ip)
        .body(axum::body::Body::from(serde_json::to_vec(&body).unwrap()))
        .unwrap();
    req.extensions_mut()
        .insert(axum::extract::ConnectInfo(std::net::SocketAddr::from((
            [203, 0, 113, 77],
            40_000,
        ))));
    h.raw(req).await.expect(StatusCode::OK);
    sender_forms(
        &alice.account_id,
        &alice.device_id,
        &alice_id.public().to_bytes(),
        ip,
    )
}

/// Through a relay logging at `trace` behind a trusted proxy, with a real SDK sealed envelope:
/// its database and everything it logged hold nothing about the sender. (The relay binary's own
/// output is checked the same way by the relay's tests, with opaque content.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sealed_send_leaves_nothing_about_the_sender_in_envelopes_or_logs_sqlite() {
    let mut relay = RelayConfig::new()
        .set("HAVEN_LOG", "trace")
        .set("HAVEN_TRUSTED_PROXY", "true")
        .start();
    let forms = sealed_exercise(&RemoteApi::new(relay.url())).await;
    // A graceful stop: every log line is written, the database checkpointed.
    tokio::task::block_in_place(|| relay.stop());
    let logs = relay.logs();
    let db = relay.config().dir().join("relay.db");
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    type EnvelopeRow = (Vec<u8>, Vec<u8>, Option<Vec<u8>>, Option<i64>);
    let rows: Vec<EnvelopeRow> =
        sqlx::query_as("SELECT message_id, content, source_account, source_device FROM envelopes")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(rows.len(), 1);
    assert!(
        rows[0].2.is_none() && rows[0].3.is_none(),
        "no source on a sealed send"
    );
    let mut dump = Vec::new();
    for table in ["envelopes", "shared_payloads"] {
        let all: Vec<(String,)> =
            sqlx::query_as(&format!("SELECT quote(t.rowid) || '' FROM {table} t"))
                .fetch_all(&pool)
                .await
                .unwrap();
        for (row,) in all {
            dump.extend_from_slice(row.as_bytes());
        }
    }
    pool.close().await;
    for (id, content, _, _) in &rows {
        dump.extend_from_slice(id);
        dump.extend_from_slice(content);
        dump.extend_from_slice(hex::encode(content).as_bytes());
    }
    assert_free_of(&dump, &forms, "envelope rows");
    // The logs are the real thing, read to the end of the process.
    assert_logged(&logs, &["account registered", "relay stopped"]);
    assert_free_of(
        logs.as_bytes(),
        &forms[forms.len() - 1..],
        "logs (client address)",
    );
    assert_free_of(logs.as_bytes(), &forms, "logs");
    // Nor the address of the connection (here the proxy's; without a proxy, the client's):
    // the only loopback address in the logs is the relay's own.
    assert_no_peer_address(&logs, &relay.addr().to_string());
}

#[tokio::test(flavor = "current_thread")]
async fn sealed_send_leaves_nothing_about_the_sender_in_envelopes_postgres() {
    let Some(h) = Harness::postgres().await else {
        return;
    };
    let forms = sealed_exercise(&h).await;
    let rows: Vec<(String,)> = sqlx::query_as("SELECT t::text FROM envelopes t")
        .fetch_all(h.store.pool())
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    let dump: String = rows.into_iter().map(|(r,)| r).collect();
    assert_free_of(dump.as_bytes(), &forms, "postgres envelope rows");
    assert_free_of(
        dump.to_lowercase().as_bytes(),
        &forms,
        "postgres envelope rows",
    );
}
