//! Behaviour tests run against both backends, plus Redis-only properties (shared state across
//! instances, atomicity under concurrency, TTLs, failure when Redis goes away).
//!
//! Redis tests use the local Redis (`HAVEN_TEST_REDIS_URL`, default 127.0.0.1:6379) and are
//! reported as skipped by name when it is absent (haven-testkit). Every test writes under its own random prefix, so runs never interfere.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, Instant};

use fred::prelude::{Builder, ClientLike, Config, KeysInterface};
use haven_ratelimit::{Decision, MAX_KEY_LEN, Quota, RateLimitError, RateLimiter};
use tokio::io::copy_bidirectional;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

/// The local Redis, or `None` after the calling test is reported as skipped (haven-testkit).
fn redis_url(_test: &str) -> Option<String> {
    haven_testkit::services::redis()
}

fn unique_prefix(test: &str) -> String {
    let mut h = RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    format!("haven-test:{test}:{:016x}", h.finish())
}

async fn raw_client(url: &str) -> fred::clients::Client {
    let client = Builder::from_config(Config::from_url(url).unwrap())
        .build()
        .unwrap();
    client.init().await.unwrap();
    client
}

/// The observable contract, identical for every backend.
async fn conformance(limiter: &RateLimiter) {
    let quota = Quota::per_minute(5);
    // Peek on a fresh key reports the full burst and creates nothing.
    for _ in 0..3 {
        assert_eq!(
            limiter.peek("c:k", quota).await.unwrap(),
            Decision::Allowed { remaining: 5 }
        );
    }
    for remaining in (0..5).rev() {
        assert_eq!(
            limiter.hit("c:k", quota).await.unwrap(),
            Decision::Allowed { remaining }
        );
    }
    for _ in 0..3 {
        let decision = limiter.hit("c:k", quota).await.unwrap();
        let retry = decision.retry_after().expect("sixth hit must be limited");
        // One hit costs 12 s; a little of it has elapsed since the burst.
        assert!(
            retry <= Duration::from_secs(12) && retry > Duration::from_secs(11),
            "{retry:?}"
        );
    }
    let peeked = limiter.peek("c:k", quota).await.unwrap();
    assert!(!peeked.is_allowed());
    // Other keys are unaffected.
    assert!(limiter.hit("c:other", quota).await.unwrap().is_allowed());
    // Reset restores the whole burst.
    limiter.reset("c:k").await.unwrap();
    assert_eq!(
        limiter.peek("c:k", quota).await.unwrap(),
        Decision::Allowed { remaining: 5 }
    );
    limiter.reset("c:never-seen").await.unwrap();

    // Recovery in real time (Redis keeps its own clock, so it cannot be mocked): one hit
    // per 100 ms, burst 2.
    let fast = Quota::new(2, Duration::from_millis(200));
    assert!(limiter.hit("c:fast", fast).await.unwrap().is_allowed());
    assert!(limiter.hit("c:fast", fast).await.unwrap().is_allowed());
    let retry = limiter
        .hit("c:fast", fast)
        .await
        .unwrap()
        .retry_after()
        .unwrap();
    assert!(retry <= Duration::from_millis(100), "{retry:?}");
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(
        limiter.hit("c:fast", fast).await.unwrap(),
        Decision::Allowed { remaining: 1 }
    );

    // Invalid input is rejected before any state is touched.
    let long = "x".repeat(MAX_KEY_LEN + 1);
    for key in ["", long.as_str()] {
        assert!(matches!(
            limiter.hit(key, quota).await,
            Err(RateLimitError::InvalidKey { .. })
        ));
        assert!(limiter.peek(key, quota).await.is_err());
        assert!(limiter.reset(key).await.is_err());
    }
    for bad in [
        Quota::new(0, Duration::from_secs(1)),
        Quota::new(1, Duration::ZERO),
        Quota::new(1, Duration::from_secs(365 * 86_400)),
    ] {
        assert!(matches!(
            limiter.hit("c:bad", bad).await,
            Err(RateLimitError::InvalidQuota { .. })
        ));
    }
    assert!(
        limiter
            .hit(&"y".repeat(MAX_KEY_LEN), quota)
            .await
            .unwrap()
            .is_allowed()
    );
    limiter.ping().await.unwrap();
}

#[tokio::test]
async fn memory_conformance() {
    conformance(&RateLimiter::in_memory()).await;
}

#[tokio::test]
async fn redis_conformance() {
    let Some(url) = redis_url("redis_conformance") else {
        return;
    };
    let prefix = unique_prefix("conformance");
    let limiter = RateLimiter::redis(&url, &prefix).await.unwrap();
    assert!(matches!(limiter, RateLimiter::Redis(_)));
    conformance(&limiter).await;

    // Invalid keys and quotas created nothing in Redis.
    let raw = raw_client(&url).await;
    let bad: i64 = raw.exists(format!("{prefix}:c:bad")).await.unwrap();
    assert_eq!(bad, 0);
}

#[tokio::test]
async fn redis_instances_share_the_count() {
    let Some(url) = redis_url("redis_instances_share_the_count") else {
        return;
    };
    let prefix = unique_prefix("shared");
    let a = RateLimiter::redis(&url, &prefix).await.unwrap();
    let b = RateLimiter::redis(&url, &prefix).await.unwrap();
    let quota = Quota::per_hour(4);
    assert_eq!(
        a.hit("k", quota).await.unwrap(),
        Decision::Allowed { remaining: 3 }
    );
    assert_eq!(
        b.hit("k", quota).await.unwrap(),
        Decision::Allowed { remaining: 2 }
    );
    assert_eq!(
        a.peek("k", quota).await.unwrap(),
        Decision::Allowed { remaining: 2 }
    );
    assert!(b.hit("k", quota).await.unwrap().is_allowed());
    assert!(a.hit("k", quota).await.unwrap().is_allowed());
    assert!(!b.hit("k", quota).await.unwrap().is_allowed());
    assert!(!a.hit("k", quota).await.unwrap().is_allowed());
    // A reset through one instance is seen by the other.
    a.reset("k").await.unwrap();
    assert_eq!(
        b.peek("k", quota).await.unwrap(),
        Decision::Allowed { remaining: 4 }
    );

    // A different prefix is a different namespace.
    let other = RateLimiter::redis(&url, &unique_prefix("shared-other"))
        .await
        .unwrap();
    b.hit("k", Quota::per_hour(1)).await.unwrap();
    assert!(
        other
            .hit("k", Quota::per_hour(1))
            .await
            .unwrap()
            .is_allowed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_concurrent_hits_never_exceed_max() {
    let Some(url) = redis_url("redis_concurrent_hits_never_exceed_max") else {
        return;
    };
    let prefix = unique_prefix("concurrent");
    let instances = [
        RateLimiter::redis(&url, &prefix).await.unwrap(),
        RateLimiter::redis(&url, &prefix).await.unwrap(),
        RateLimiter::redis(&url, &prefix).await.unwrap(),
    ];
    let quota = Quota::per_hour(37);
    let mut tasks = JoinSet::new();
    for i in 0..300 {
        let limiter = instances[i % instances.len()].clone();
        tasks.spawn(async move { limiter.hit("hot", quota).await.unwrap() });
    }
    let mut allowed = Vec::new();
    while let Some(decision) = tasks.join_next().await {
        if let Decision::Allowed { remaining } = decision.unwrap() {
            allowed.push(remaining);
        }
    }
    assert_eq!(allowed.len(), 37);
    // Each remaining count was handed out exactly once: the script ran atomically.
    allowed.sort_unstable();
    assert_eq!(allowed, (0..37).collect::<Vec<u32>>());
}

#[tokio::test]
async fn redis_keys_are_prefixed_and_expire() {
    let Some(url) = redis_url("redis_keys_are_prefixed_and_expire") else {
        return;
    };
    let prefix = unique_prefix("ttl");
    let limiter = RateLimiter::redis(&url, &prefix).await.unwrap();
    let raw = raw_client(&url).await;
    let key = format!("{prefix}:k");

    limiter.peek("k", Quota::per_minute(10)).await.unwrap();
    let exists: i64 = raw.exists(&key).await.unwrap();
    assert_eq!(exists, 0, "peek must not write");

    // After 3 of 10 hits per minute the state matters for 3 × 6 s = 18 s, no longer.
    for _ in 0..3 {
        limiter.hit("k", Quota::per_minute(10)).await.unwrap();
    }
    let ttl: i64 = raw.pttl(&key).await.unwrap();
    assert!(ttl > 17_000 && ttl <= 18_000, "pttl {ttl}");
    // The stored value is the TAT: integer microseconds of Redis' clock, written in full.
    let tat: String = raw.get(&key).await.unwrap();
    assert!(tat.bytes().all(|b| b.is_ascii_digit()), "{tat}");
    assert!(tat.len() >= 16, "{tat}");

    // A limited hit changes neither value nor TTL.
    let one = Quota::per_minute(1);
    limiter.hit("one", one).await.unwrap();
    let before: String = raw.get(format!("{prefix}:one")).await.unwrap();
    assert!(!limiter.hit("one", one).await.unwrap().is_allowed());
    let after: String = raw.get(format!("{prefix}:one")).await.unwrap();
    assert_eq!(before, after);

    // Short windows really disappear.
    limiter
        .hit("short", Quota::new(1, Duration::from_millis(50)))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(120)).await;
    let exists: i64 = raw.exists(format!("{prefix}:short")).await.unwrap();
    assert_eq!(exists, 0);

    limiter.reset("k").await.unwrap();
    let exists: i64 = raw.exists(&key).await.unwrap();
    assert_eq!(exists, 0, "reset deletes the key");
}

#[tokio::test]
async fn redis_garbage_state_counts_as_fresh() {
    let Some(url) = redis_url("redis_garbage_state_counts_as_fresh") else {
        return;
    };
    let prefix = unique_prefix("garbage");
    let limiter = RateLimiter::redis(&url, &prefix).await.unwrap();
    let raw = raw_client(&url).await;
    let _: () = raw
        .set(format!("{prefix}:k"), "not a number", None, None, false)
        .await
        .unwrap();
    assert_eq!(
        limiter.hit("k", Quota::per_minute(2)).await.unwrap(),
        Decision::Allowed { remaining: 1 }
    );
}

#[tokio::test]
async fn redis_unreachable_at_start_is_an_error() {
    // No server needed: nothing listens on a port we just released.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let started = Instant::now();
    let result = RateLimiter::redis(&format!("redis://127.0.0.1:{port}"), "p").await;
    assert!(
        matches!(result, Err(RateLimitError::Redis(_))),
        "{result:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));

    assert!(matches!(
        RateLimiter::redis("not a url", "p").await,
        Err(RateLimitError::Redis(_))
    ));
    assert!(matches!(
        RateLimiter::redis("redis://127.0.0.1:6379", "").await,
        Err(RateLimitError::InvalidPrefix { len: 0, .. })
    ));
}

/// Forwards TCP connections from `listener` to `target` until aborted.
async fn proxy(listener: TcpListener, target: String) {
    let mut conns = JoinSet::new();
    while let Ok((mut inbound, _)) = listener.accept().await {
        let target = target.clone();
        conns.spawn(async move {
            if let Ok(mut outbound) = TcpStream::connect(target).await {
                let _ = copy_bidirectional(&mut inbound, &mut outbound).await;
            }
        });
    }
}

#[tokio::test]
async fn redis_outage_is_reported_then_recovered_from() {
    let Some(url) = redis_url("redis_outage_is_reported_then_recovered_from") else {
        return;
    };
    let target = url
        .trim_start_matches("redis://")
        .trim_end_matches('/')
        .to_owned();
    if target.contains(['@', '/']) {
        println!("skipping redis_outage_is_reported_then_recovered_from: URL too complex to proxy");
        return;
    }
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let proxy_task = tokio::spawn(proxy(listener, target.clone()));

    let limiter = RateLimiter::redis(&format!("redis://{addr}"), &unique_prefix("outage"))
        .await
        .unwrap();
    let quota = Quota::per_hour(100);
    assert!(limiter.hit("k", quota).await.unwrap().is_allowed());

    // Redis "goes down": the proxy and all its connections vanish.
    proxy_task.abort();
    let _ = proxy_task.await;
    let started = Instant::now();
    let result = limiter.hit("k", quota).await;
    assert!(
        matches!(result, Err(RateLimitError::Redis(_))),
        "{result:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(limiter.ping().await.is_err());

    // Redis comes back on the same address: the client reconnects by itself.
    let listener = TcpListener::bind(addr).await.unwrap();
    let proxy_task = tokio::spawn(proxy(listener, target));
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match limiter.hit("k", quota).await {
            Ok(decision) => {
                assert_eq!(decision, Decision::Allowed { remaining: 98 });
                break;
            }
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("no reconnect within 15 s: {e}"),
        }
    }
    limiter.ping().await.unwrap();
    proxy_task.abort();
}

#[tokio::test]
async fn redis_errors_do_not_echo_the_password() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut urls = vec![
        format!("redis://user:hunter2-secret@127.0.0.1:{port}"),
        "redis://user:hunter2-secret@[not-a-host".to_owned(),
    ];
    // Against a real server without ACLs the AUTH itself is refused.
    if let Some(url) = redis_url("redis_errors_do_not_echo_the_password (live part)")
        && let Some(host) = url.strip_prefix("redis://")
        && !host.contains('@')
    {
        urls.push(format!("redis://user:hunter2-secret@{host}"));
    }
    for url in urls {
        match RateLimiter::redis(&url, "p").await {
            Err(e) => {
                let shown = format!("{e} / {e:?}");
                assert!(!shown.contains("hunter2"), "{shown}");
            }
            Ok(limiter) => {
                let shown = format!("{limiter:?}");
                assert!(!shown.contains("hunter2"), "{shown}");
            }
        }
    }
}

#[tokio::test]
async fn redis_wrong_type_at_key_is_an_error_not_a_panic() {
    let Some(url) = redis_url("redis_wrong_type_at_key_is_an_error_not_a_panic") else {
        return;
    };
    let prefix = unique_prefix("wrongtype");
    let limiter = RateLimiter::redis(&url, &prefix).await.unwrap();
    let raw = raw_client(&url).await;
    let _: i64 = raw
        .custom(
            fred::types::CustomCommand::new_static("RPUSH", None, false),
            vec![format!("{prefix}:k"), "x".to_owned()],
        )
        .await
        .unwrap();
    let quota = Quota::per_minute(2);
    assert!(matches!(
        limiter.hit("k", quota).await,
        Err(RateLimitError::Redis(_))
    ));
    assert!(limiter.peek("k", quota).await.is_err());
    // Reset clears whatever is there, after which the key works normally.
    limiter.reset("k").await.unwrap();
    assert!(limiter.hit("k", quota).await.unwrap().is_allowed());
    let _: i64 = raw.del(format!("{prefix}:k")).await.unwrap();
}
