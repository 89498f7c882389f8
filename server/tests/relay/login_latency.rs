//! Quick login-latency measurement (dev profile; dependencies are built with opt-level 2).
//! Run: `cargo test -p haven-relay --test login_latency -- --ignored --nocapture`.
//! The criterion bench `benches/login.rs` measures the same in the release profile.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common;
use crate::common::Api as _;

use std::time::{Duration, Instant};

use haven_protocol::opaque::HavenKsf;
use serde_json::json;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement, not a check"]
async fn login_latency() {
    let h = common::Harness::sqlite().await.unwrap();
    let t = h
        .register(Some("alice"), "correct horse battery staple")
        .await;
    let argon = HavenKsf::argon2().unwrap();
    let mut base = Vec::new();
    for _ in 0..15 {
        let start = Instant::now();
        let mut out = [0u8; 64];
        argon
            .hash_password_into(&[7u8; 64], &[0u8; 16], &mut out)
            .unwrap();
        base.push(start.elapsed());
    }
    let mut login = Vec::new();
    for _ in 0..15 {
        let start = Instant::now();
        h.try_login(
            json!({"username": "alice"}),
            "correct horse battery staple",
            json!({"device_id": t.device_id}),
        )
        .await
        .expect(axum::http::StatusCode::OK);
        login.push(start.elapsed());
    }
    let (b, l) = (median(base), median(login));
    println!(
        "argon2id baseline median: {b:?}; full login median: {l:?}; ratio {:.2}",
        l.as_secs_f64() / b.as_secs_f64()
    );
    assert!(l > b, "a login includes one Argon2id evaluation");
}
