//! Client addresses behind a real reverse proxy, address prefixes, and per-address limits that
//! instances sharing Redis count together (issue 19).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request, StatusCode};
use base64::Engine as _;
use haven_relay::ids::Id;
use serde_json::json;

use crate::common::{self, Api, Harness, RelayConfig, RemoteApi, Reply};

/// The relay API through `inner`, with an `X-Forwarded-For` of a new made-up address on every
/// request: what a client trying to escape per-address limits sends.
struct Forging {
    inner: RemoteApi,
    n: AtomicU32,
}

impl Forging {
    fn new(inner: RemoteApi) -> Self {
        Self {
            inner,
            n: AtomicU32::new(0),
        }
    }
}

impl Api for Forging {
    async fn raw(&self, mut req: Request<Body>) -> Reply {
        let n = self.n.fetch_add(1, Ordering::Relaxed);
        let forged = format!("198.51.{}.{}", n / 250 % 250, n % 250 + 1);
        req.headers_mut()
            .insert("x-forwarded-for", forged.parse().unwrap());
        self.inner.raw(req).await
    }
}

/// A failed login of an unknown username (a new one each time, so the per-account limit never
/// applies): counted against the client address only.
async fn failed_login(api: &impl Api, i: usize) -> Reply {
    api.try_login(
        json!({"username": format!("nobody-{i}")}),
        "wrong password",
        json!({"device": {"identity_key": common::b64(&[7; 32])}}),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_forwarded_for_does_not_escape_the_address_limit_behind_haproxy() {
    let relay = RelayConfig::new()
        .set("HAVEN_TRUSTED_PROXY", "true")
        .set("HAVEN_ADDR_LOGIN_MAX_FAILURES", "3")
        .spawn(common::RELAY_BIN);
    let Some(proxy) = haven_testkit::ReverseProxy::haproxy(relay.addr()) else {
        return;
    };
    let forger = Forging::new(RemoteApi::new(proxy.url()));
    for i in 0..3 {
        failed_login(&forger, i)
            .await
            .expect_error(StatusCode::UNAUTHORIZED, "invalid_credentials");
    }
    // Each request claimed another address, but haproxy appended the real one (127.0.0.1).
    let reply = failed_login(&forger, 3).await;
    assert_eq!(
        reply.status,
        StatusCode::TOO_MANY_REQUESTS,
        "a forged X-Forwarded-For escaped the per-address limit: {}",
        reply.body
    );
    // The same holds without forging, through the proxy: it is the one address.
    let plain = RemoteApi::new(proxy.url());
    failed_login(&plain, 4)
        .await
        .expect(StatusCode::TOO_MANY_REQUESTS);
    // The relay never logged an address.
    let logs = relay.logs();
    assert!(!logs.contains("198.51."), "{logs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_sharing_redis_count_one_address_together() {
    let Some(redis) = common::services::redis() else {
        return;
    };
    // A fresh pepper: this test's limiter keys are its own in the shared Redis.
    let pepper = base64::engine::general_purpose::STANDARD.encode(Id::random().to_hex());
    let spawn = || {
        RelayConfig::new()
            .set("HAVEN_REDIS_URL", redis.as_str())
            .set("HAVEN_USERNAME_PEPPER", pepper.as_str())
            .set("HAVEN_ADDR_LOGIN_MAX_FAILURES", "3")
            .spawn(common::RELAY_BIN)
    };
    let (a, b) = tokio::task::block_in_place(|| (spawn(), spawn()));
    let (api_a, api_b) = (RemoteApi::new(a.url()), RemoteApi::new(b.url()));
    failed_login(&api_a, 0)
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "invalid_credentials");
    failed_login(&api_b, 1)
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "invalid_credentials");
    failed_login(&api_a, 2)
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "invalid_credentials");
    // Three failures from this address in all, none of the instances saw three itself.
    let reply = failed_login(&api_b, 3).await;
    assert_eq!(
        reply.status,
        StatusCode::TOO_MANY_REQUESTS,
        "instance b did not count the failures a saw: {}",
        reply.body
    );
    failed_login(&api_a, 4)
        .await
        .expect(StatusCode::TOO_MANY_REQUESTS);
}

/// A request to `/health`-free route from `peer`.
fn from(peer: &str) -> Request<Body> {
    let mut req = Request::builder()
        .method(Method::POST)
        .uri("/v1/login/start")
        .header("content-type", "application/json")
        .body(Body::from(
            serde_json::to_vec(&json!({"username": "nobody", "credential_request": "AA=="}))
                .unwrap(),
        ))
        .unwrap();
    req.extensions_mut()
        .insert(ConnectInfo(peer.parse::<SocketAddr>().unwrap()));
    req
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_count_an_ipv6_64_as_one_address() {
    for (v6_bits, shared) in [(64, true), (128, false)] {
        let (store, guard) = common::sqlite_store().await.unwrap();
        let mut settings = common::test_settings();
        settings.auth_rate_limit_per_minute = 2;
        settings.addr_prefix_v6 = v6_bits;
        let h = Harness::with_settings(store, guard, settings).await;
        for peer in ["[2001:db8:1:2::1]:1000", "[2001:db8:1:2::2]:1000"] {
            assert_ne!(
                h.raw(from(peer)).await.status,
                StatusCode::TOO_MANY_REQUESTS
            );
        }
        // A third address of the same /64.
        let third = h.raw(from("[2001:db8:1:2:ffff::9]:1000")).await.status;
        assert_eq!(third == StatusCode::TOO_MANY_REQUESTS, shared, "/{v6_bits}");
        // Another /64 is not affected; nor is an IPv4 address.
        assert_ne!(
            h.raw(from("[2001:db8:1:3::1]:1000")).await.status,
            StatusCode::TOO_MANY_REQUESTS
        );
        assert_ne!(
            h.raw(from("203.0.113.7:1000")).await.status,
            StatusCode::TOO_MANY_REQUESTS
        );
    }
}
