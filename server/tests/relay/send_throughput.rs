//! REST send throughput (a measurement, not a check).
//! Run: `cargo test -p haven-relay --test send_throughput -- --ignored --nocapture`
//! (add `--release` for release-profile figures; set `HAVEN_TEST_POSTGRES_URL` for Postgres).
//!
//! Each send is a full `POST /v1/messages/{account}` through the in-process router (JSON
//! parsing, bearer-token check against the store, device-list check, one all-or-nothing
//! transaction) with a 1 KiB envelope. The baseline in the same run is the store's `deliver`
//! alone (the transaction, no HTTP, JSON or authentication).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common;
use crate::common::Api as _;

use std::sync::Arc;
use std::time::Instant;

use crate::common::{Harness, b64};
use axum::http::{Method, StatusCode};
use haven_relay::db::Store;
use haven_relay::ids::Id;
use haven_relay::mail::store::{Delivery, NewEnvelope, QueueLimits};
use serde_json::json;

const N: usize = 2000;
const TASKS: usize = 8;

async fn measure<S: Store>(name: &str, h: Harness<S>) {
    let alice = h.register(None, "pw").await;
    let bob = h.register(None, "pw").await;
    let bob_id: Id = bob.account_id.parse().unwrap();
    let envelope = b64(&[0x42u8; 1024]);
    let h = Arc::new(h);
    let limits = QueueLimits {
        max_messages: u64::MAX / 2,
        max_bytes: u64::MAX / 2,
    };
    // Baseline: the store transaction alone.
    let start = Instant::now();
    for _ in 0..N {
        let d = Delivery {
            source: None,
            shared_payload: None,
            envelopes: vec![NewEnvelope {
                account: bob_id,
                device: 1,
                message_id: Id::random(),
                content: vec![0x42; 1024],
                franking_commitment: None,
            }],
            received_at: 0,
            expires_at: i64::MAX,
            device_checks: Vec::new(),
        };
        h.store.deliver(d, limits).await.unwrap();
    }
    let base = N as f64 / start.elapsed().as_secs_f64();
    // Sequential REST sends.
    let start = Instant::now();
    for _ in 0..N {
        h.call(
            Method::POST,
            &format!("/v1/messages/{}", bob.account_id),
            Some(json!({"message_id": Id::random(), "envelopes": [{"device_number": 1, "content": envelope}]})),
            Some(&alice.access),
        )
        .await
        .expect(StatusCode::OK);
    }
    let seq = N as f64 / start.elapsed().as_secs_f64();
    // Concurrent REST sends, each task to its own recipient (one recipient's queue is
    // serialised by its device lock, by design).
    let mut recipients = Vec::new();
    for _ in 0..TASKS {
        recipients.push(h.register(None, "pw").await.account_id);
    }
    let start = Instant::now();
    let tasks: Vec<_> = recipients
        .into_iter()
        .map(|to| {
            let (h, alice, envelope) = (Arc::clone(&h), alice.clone(), envelope.clone());
            tokio::spawn(async move {
                for _ in 0..N / TASKS {
                    h.call(
                        Method::POST,
                        &format!("/v1/messages/{to}"),
                        Some(json!({"message_id": Id::random(), "envelopes": [{"device_number": 1, "content": envelope}]})),
                        Some(&alice.access),
                    )
                    .await
                    .expect(StatusCode::OK);
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let conc = N as f64 / start.elapsed().as_secs_f64();
    println!(
        "{name}: store deliver {base:.0}/s; REST sequential {seq:.0}/s ({:.2}x of store); \
         REST {TASKS} concurrent (distinct recipients) {conc:.0}/s ({:.2}x of store)",
        seq / base,
        conc / base
    );
}

fn settings() -> haven_relay::Settings {
    let mut s = common::test_settings();
    s.mail.max_queue_messages = u64::MAX / 2;
    s.mail.max_queue_bytes = u64::MAX / 2;
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement, not a check"]
async fn send_throughput_sqlite() {
    let (store, guard) = common::sqlite_store().await.unwrap();
    measure(
        "sqlite",
        Harness::with_settings(store, guard, settings()).await,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement, not a check"]
async fn send_throughput_postgres() {
    let Some((store, guard)) = common::pg_store().await else {
        return;
    };
    measure(
        "postgres",
        Harness::with_settings(store, guard, settings()).await,
    )
    .await;
}
