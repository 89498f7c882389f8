//! Login latency: full OPAQUE login (client + server, start + finish) through `app` in-process on
//! SQLite, against the bare Argon2id hash at the same parameters as a baseline.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use haven_testkit::harness::{self as common, Api as _};

use criterion::{Criterion, criterion_group, criterion_main};
use haven_protocol::opaque::HavenKsf;
use serde_json::json;

fn login(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (h, tokens) = rt.block_on(async {
        let h = common::Harness::sqlite().await.unwrap();
        let tokens = h
            .register(Some("alice"), "correct horse battery staple")
            .await;
        (h, tokens)
    });
    let mut group = c.benchmark_group("relay_login");
    group.sample_size(20);
    group.bench_function("argon2id_baseline", |b| {
        let argon = HavenKsf::argon2().unwrap();
        let input = [7u8; 64];
        b.iter(|| {
            let mut out = [0u8; 64];
            argon
                .hash_password_into(&input, &[0u8; 16], &mut out)
                .unwrap();
            out
        });
    });
    group.bench_function("opaque_login_start_finish", |b| {
        b.to_async(&rt).iter(|| async {
            let reply = h
                .try_login(
                    json!({"username": "alice"}),
                    "correct horse battery staple",
                    json!({"device_id": tokens.device_id}),
                )
                .await;
            assert_eq!(reply.status, axum::http::StatusCode::OK);
        });
    });
    group.finish();
}

criterion_group!(benches, login);
criterion_main!(benches);
