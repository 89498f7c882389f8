//! What the relay binary logs: run at `trace` behind a trusted proxy, a sealed send leaves in
//! its whole output (stdout and stderr, from every thread, read to the end of the process)
//! neither the sender's account, device or identity key, nor the client's address, nor the
//! address of the connection; and its stored envelope carries no source. The content is opaque
//! bytes here: what the SDK's sealed envelopes hide is `e2e/tests/e2e/blindness.rs`'s subject.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use axum::http::{Method, StatusCode};
use haven_relay::ids::Id;
use serde_json::json;

use crate::common;
use crate::common::{Api as _, RelayConfig, RemoteApi, Tokens, b64};
use haven_testkit::blindness::{
    assert_free_of, assert_logged, assert_no_peer_address, sender_forms,
};

const PASSWORD: &str = "correct horse battery staple";
const CLIENT_IP: &str = "203.0.113.77";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sealed_send_leaves_no_sender_or_address_in_the_logs_or_the_envelope() {
    let mut relay = RelayConfig::new()
        .set("HAVEN_LOG", "trace")
        .set("HAVEN_TRUSTED_PROXY", "true")
        .spawn(common::RELAY_BIN);
    let api = RemoteApi::new(relay.url());
    let identity = [0x5a; 64];
    let alice = Tokens::from_json(
        &api.try_register_with_key(None, PASSWORD, &identity)
            .await
            .expect(StatusCode::CREATED)
            .body,
    );
    let bob = api.register(None, PASSWORD).await;
    let access_key = [7u8; 16];
    api.call(
        Method::PUT,
        "/v1/account/access-key",
        Some(json!({"access_key": b64(&access_key)})),
        Some(&bob.access),
    )
    .await
    .expect(StatusCode::NO_CONTENT);
    // Alice asks for her sender certificate (a client seals it into the envelope, encrypted;
    // the content here stays opaque bytes).
    api.call(Method::POST, "/v1/certificate", None, Some(&alice.access))
        .await
        .expect(StatusCode::OK);
    let content = vec![0x41; 96];
    let request = axum::http::Request::builder()
        .method(Method::POST)
        .uri(format!("/v1/messages/{}/sealed", bob.account_id))
        .header("content-type", "application/json")
        .header("unidentified-access-key", b64(&access_key))
        .header("x-forwarded-for", CLIENT_IP)
        .body(axum::body::Body::from(
            serde_json::to_vec(&json!({
                "message_id": Id::random(),
                "envelopes": [{"device_number": 1, "content": b64(&content)}],
            }))
            .unwrap(),
        ))
        .unwrap();
    common::Api::raw(&api, request).await.expect(StatusCode::OK);

    // A graceful stop: every log line is written and read, the database checkpointed.
    let logs = tokio::task::block_in_place(|| relay.stop());
    assert_logged(&logs, &["account registered", "relay stopped"]);
    let forms = sender_forms(&alice.account_id, &alice.device_id, &identity, CLIENT_IP);
    assert_free_of(logs.as_bytes(), &forms, "logs");
    // Nor the address of the connection (here the proxy's; without a proxy, the client's):
    // the only loopback address in the logs is the relay's own.
    assert_no_peer_address(&logs, &relay.addr().to_string());

    let db = relay.config().dir().join("relay.db");
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    type Row = (Option<Vec<u8>>, Option<i64>, Vec<u8>);
    let rows: Vec<Row> =
        sqlx::query_as("SELECT source_account, source_device, content FROM envelopes")
            .fetch_all(&pool)
            .await
            .unwrap();
    pool.close().await;
    assert_eq!(rows.len(), 1);
    assert!(
        rows[0].0.is_none() && rows[0].1.is_none(),
        "no source on a sealed send"
    );
    assert_eq!(rows[0].2, content, "stored as sent, nothing added");
}
