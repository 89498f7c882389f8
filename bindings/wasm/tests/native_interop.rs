//! Interop with the native client through a real relay (in-process, SQLite): the web core
//! (`DeviceCore`, driven here over HTTP the way `js/haven-client.js` drives it) registers with
//! OPAQUE and uploads keys; a native `haven_client::Device` opens what the web sent and decodes
//! it with the native content codec, and the web core opens what the native device sent.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![cfg(not(target_arch = "wasm32"))]

use haven_client::relay::RelayClient;
use haven_client::{ClientStore, Device, Received};
use haven_protocol::content::{Body, Content, Conversation};
use haven_testkit::RelayConfig;
use haven_wasm::device::{DeviceCore, Opened, OpenedContent};
use reqwest::Method;
use serde_json::Value;

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The page's side: one JSON request (body text in, JSON out), as haven-client.js makes it.
async fn call(
    http: &RelayClient,
    method: Method,
    path: &str,
    body: Option<&str>,
    token: Option<&str>,
) -> Value {
    let body: Option<Value> = body.map(|b| serde_json::from_str(b).unwrap());
    match token {
        Some(t) => {
            http.request_with_bearer(method, path, t, body.as_ref())
                .await
        }
        None => http.request_anonymous(method, path, body.as_ref()).await,
    }
    .unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_and_native_devices_talk_through_a_relay() {
    let relay = RelayConfig::new().set("HAVEN_LOG", "warn").start();
    let url = relay.url();
    let http = RelayClient::new(&url).unwrap();

    // The web device registers (OPAQUE), pins the relay key and uploads its keys.
    let mut web = DeviceCore::new().unwrap();
    let start = call(
        &http,
        Method::POST,
        "/v1/register/start",
        Some(&web.register_start(b"pw-web").unwrap()),
        None,
    )
    .await;
    let finish = web
        .register_finish(b"pw-web", &start.to_string(), Some("web_alice"))
        .unwrap();
    let tokens = call(
        &http,
        Method::POST,
        "/v1/register/finish",
        Some(&finish),
        None,
    )
    .await;
    let info = web.set_session(&tokens.to_string()).unwrap();
    let token = info.access_token.clone();
    let key = call(&http, Method::GET, "/v1/certificate/key", None, None).await;
    web.set_relay_key(&key.to_string()).unwrap();
    let upload = web.prekey_upload(now()).unwrap();
    call(&http, Method::PUT, "/v1/keys", Some(&upload), Some(&token)).await;

    // The native device.
    let bob = Device::register(
        RelayClient::new(&url).unwrap(),
        ClientStore::open_in_memory(&[7u8; 32]).unwrap(),
        Some("native_bob"),
        b"pw-bob",
    )
    .await
    .unwrap();
    let bob_account = bob.account_id().to_owned();

    // Web → native.
    let cert = call(&http, Method::POST, "/v1/certificate", None, Some(&token)).await;
    web.set_certificate(&cert.to_string(), now()).unwrap();
    let mut claims = Vec::new();
    for path in web.claim_paths(&bob_account).unwrap() {
        claims.push(
            call(&http, Method::GET, &path, None, Some(&token))
                .await
                .to_string(),
        );
    }
    let sent = web
        .encrypt_text(
            &bob_account,
            "from the web, periwinkle",
            now() * 1000,
            &claims,
        )
        .unwrap();
    call(
        &http,
        Method::POST,
        &format!("/v1/messages/{bob_account}"),
        Some(&sent.body),
        Some(&token),
    )
    .await;
    let received = bob.receive().await.unwrap();
    let plaintext = match received.as_slice() {
        [
            Received::Message {
                plaintext, sender, ..
            },
        ] => {
            assert_eq!(hex::encode(sender.account_id), info.account_id);
            plaintext.clone()
        }
        other => panic!("{other:?}"),
    };
    let content = Content::from_bytes(&plaintext).unwrap();
    let bob_bytes: [u8; 16] = hex::decode(&bob_account).unwrap().try_into().unwrap();
    assert_eq!(content.conversation, Conversation::Direct(bob_bytes));
    match content.body {
        Body::Text {
            text, message_id, ..
        } => {
            assert_eq!(text, "from the web, periwinkle");
            assert_eq!(hex::encode(message_id), sent.content_id);
        }
        other => panic!("{other:?}"),
    }

    // Native → web, content encoded by the native codec.
    let web_bytes: [u8; 16] = hex::decode(&info.account_id).unwrap().try_into().unwrap();
    let reply = Content {
        sent_at: now() * 1000,
        conversation: Conversation::Direct(web_bytes),
        body: Body::Text {
            message_id: [5; 16],
            expire_secs: 0,
            text: "from native, tangerine".into(),
            attachment: Vec::new(),
        },
    };
    bob.send(&info.account_id, &reply.to_bytes().unwrap())
        .await
        .unwrap();
    let page = call(
        &http,
        Method::GET,
        "/v1/messages?after=0&limit=100",
        None,
        Some(&token),
    )
    .await;
    let envelopes = page["envelopes"].as_array().unwrap();
    assert_eq!(envelopes.len(), 1);
    let id = envelopes[0]["message_id"].as_str().unwrap();
    let opened = web
        .open_envelope(id, envelopes[0]["content"].as_str().unwrap(), now())
        .unwrap();
    match opened {
        Opened::Message {
            sender,
            content: OpenedContent::Text {
                text, message_id, ..
            },
            ..
        } => {
            assert_eq!(sender.account_id, bob_account);
            assert_eq!(text, "from native, tangerine");
            assert_eq!(message_id, hex::encode([5u8; 16]));
        }
        other => panic!("{other:?}"),
    }
}
