//! The admin API (`docs/PROTOCOL.md` §11.17) in process on both engines, and the
//! `haven-relay admin …` subcommands against a real relay process.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request, StatusCode, header};
use haven_relay::admin::keys::create_key;
use haven_relay::db::Store;
use serde_json::json;

use crate::common::{self, Api as _, Harness, RelayConfig, RemoteApi};

async fn first_key<S: Store>(h: &Harness<S>) -> String {
    let created = create_key(&h.store, "first", None, haven_relay::clock::now_i64())
        .await
        .unwrap();
    created.secret.encode().to_string()
}

async fn keys_are_required_checked_rotated_and_revoked<S: Store>(h: Harness<S>) {
    // No key exists yet: the admin API answers 401 like for any wrong key.
    h.call(Method::GET, "/v1/admin/keys", None, None)
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "missing_admin_key");
    let unknown = format!("hvn_admin_{}", "A".repeat(43));
    h.call(Method::GET, "/v1/admin/keys", None, Some(&unknown))
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "invalid_admin_key");
    h.call(Method::GET, "/v1/admin/keys", None, Some("hvn_admin_short"))
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "invalid_admin_key");

    let old = first_key(&h).await;
    // A user's access token is not an admin key.
    h.call(Method::GET, "/v1/admin/keys", None, Some("eyJhbGciOi.x.y"))
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "invalid_admin_key");
    let listed = h
        .call(Method::GET, "/v1/admin/keys", None, Some(&old))
        .await
        .expect(StatusCode::OK);
    assert_eq!(listed.body["keys"].as_array().unwrap().len(), 1);
    assert_eq!(listed.body["keys"][0]["label"], "first");
    assert_eq!(listed.body["keys"][0]["active"], true);
    assert!(listed.body["keys"][0]["last_used_at"].is_i64());
    assert!(!listed.body.to_string().contains("hvn_admin_"));
    let old_id = listed.body["keys"][0]["id"].as_str().unwrap().to_owned();

    // Rotation: create a new key, then revoke the old one.
    let created = h
        .call(
            Method::POST,
            "/v1/admin/keys",
            Some(json!({"label": "second", "expires_days": 30})),
            Some(&old),
        )
        .await
        .expect(StatusCode::CREATED);
    let new = created.body["key"].as_str().unwrap().to_owned();
    assert!(new.starts_with("hvn_admin_") && new.len() == 10 + 43);
    assert!(
        created.body["expires_at"].as_i64().unwrap() > created.body["created_at"].as_i64().unwrap()
    );
    // Both keys work at once.
    for key in [&old, &new] {
        h.call(Method::GET, "/v1/admin/keys", None, Some(key))
            .await
            .expect(StatusCode::OK);
    }
    h.call(
        Method::DELETE,
        &format!("/v1/admin/keys/{old_id}"),
        None,
        Some(&new),
    )
    .await
    .expect(StatusCode::NO_CONTENT);
    h.call(Method::GET, "/v1/admin/keys", None, Some(&old))
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "invalid_admin_key");
    let listed = h
        .call(Method::GET, "/v1/admin/keys", None, Some(&new))
        .await
        .expect(StatusCode::OK);
    for info in listed.body["keys"].as_array().unwrap() {
        let is_old = info["id"] == old_id.as_str();
        assert_eq!(info["active"], !is_old);
        assert_eq!(info["revoked_at"].is_i64(), is_old);
    }
    // The audit log names the keys made and revoked, and which key did it.
    let new_id = created.body["id"].as_str().unwrap().to_owned();
    for (kind, subject, actor) in [
        ("admin_key_created", &new_id, &old_id),
        ("admin_key_revoked", &old_id, &new_id),
    ] {
        let page = h
            .call(
                Method::GET,
                &format!("/v1/admin/audit?kind={kind}"),
                None,
                Some(&new),
            )
            .await
            .expect(StatusCode::OK);
        let events = page.body["events"].as_array().unwrap();
        assert_eq!(events.len(), 1, "{kind}: {}", page.body);
        assert_eq!(events[0]["subject"], subject.as_str());
        assert_eq!(events[0]["actor"], actor.as_str());
    }

    // Bad input: clear errors, nothing created.
    for body in [
        json!({"label": ""}),
        json!({"label": "x", "expires_days": 0}),
        json!({"label": "x", "expires_days": 4000}),
        json!({"label": "x", "extra": 1}),
    ] {
        let reply = h
            .call(Method::POST, "/v1/admin/keys", Some(body), Some(&new))
            .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.body);
    }
    h.call(Method::DELETE, "/v1/admin/keys/nothex", None, Some(&new))
        .await
        .expect_error(StatusCode::NOT_FOUND, "unknown_admin_key");
    let unknown_id = haven_relay::ids::Id::random();
    h.call(
        Method::DELETE,
        &format!("/v1/admin/keys/{unknown_id}"),
        None,
        Some(&new),
    )
    .await
    .expect_error(StatusCode::NOT_FOUND, "unknown_admin_key");
    let listed = h
        .call(Method::GET, "/v1/admin/keys", None, Some(&new))
        .await
        .expect(StatusCode::OK);
    assert_eq!(listed.body["keys"].as_array().unwrap().len(), 2);
}

async fn expired_keys_are_refused<S: Store>(h: Harness<S>) {
    let now = haven_relay::clock::now_i64();
    // Created 2 days ago with a 1-day expiry.
    let created = create_key(&h.store, "old", Some(1), now - 2 * 86_400)
        .await
        .unwrap();
    let key = created.secret.encode().to_string();
    h.call(Method::GET, "/v1/admin/keys", None, Some(&key))
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "invalid_admin_key");
}

async fn wrong_keys_are_rate_limited_per_address<S: Store>(h: Harness<S>) {
    let good = first_key(&h).await;
    let wrong = format!("hvn_admin_{}", "B".repeat(43));
    let request = |key: &str, port: u16| {
        let mut req = Request::builder()
            .method(Method::GET)
            .uri("/v1/admin/keys")
            .header(header::AUTHORIZATION, format!("Bearer {key}"))
            .body(Body::empty())
            .unwrap();
        let addr: SocketAddr = format!("192.0.2.7:{port}").parse().unwrap();
        req.extensions_mut().insert(ConnectInfo(addr));
        req
    };
    let max = h.state.settings().addr_login_max_failures;
    for _ in 0..max {
        h.raw(request(&wrong, 1000))
            .await
            .expect_error(StatusCode::UNAUTHORIZED, "invalid_admin_key");
    }
    // Over the quota: even the right key waits, from that address.
    let reply = h.raw(request(&good, 1001)).await;
    assert_eq!(
        reply.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        reply.body
    );
    assert!(reply.headers.contains_key(header::RETRY_AFTER));
    // Another address is not affected.
    let mut other = request(&good, 1002);
    other
        .extensions_mut()
        .insert(ConnectInfo("198.51.100.9:1".parse::<SocketAddr>().unwrap()));
    h.raw(other).await.expect(StatusCode::OK);
}

async fn overview_reports_counts_and_request_figures<S: Store>(h: Harness<S>) {
    h.call(Method::GET, "/v1/admin/overview", None, None)
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "missing_admin_key");
    let key = first_key(&h).await;
    let before = h
        .call(Method::GET, "/v1/admin/overview", None, Some(&key))
        .await
        .expect(StatusCode::OK)
        .body;
    assert_eq!(before["storage"]["accounts"], 0);
    assert_eq!(before["storage"]["queued_envelopes"], 0);
    assert_eq!(before["live_sockets"], 0);
    // The moderation feature fills its figures.
    assert_eq!(before["pending_reports"], 0);
    assert_eq!(before["active_bans"], 0);
    h.register(Some("alice"), "correct horse battery staple")
        .await;
    h.register(Some("bob"), "correct horse battery staple")
        .await;
    for _ in 0..3 {
        h.call(Method::GET, "/v1/nowhere", None, None).await;
    }
    let after = h
        .call(Method::GET, "/v1/admin/overview", None, Some(&key))
        .await
        .expect(StatusCode::OK)
        .body;
    assert_eq!(after["storage"]["accounts"], 2);
    assert_eq!(after["storage"]["devices"], 2);
    // The window is process-wide (other tests run alongside): figures only grow here.
    let count = |v: &serde_json::Value, w: &str, f: &str| v["requests"][w][f].as_u64().unwrap();
    assert!(count(&after, "last_1m", "total") >= count(&before, "last_1m", "total") + 8);
    assert!(count(&after, "last_1m", "status_4xx") >= count(&before, "last_1m", "status_4xx") + 3);
    assert!(count(&after, "last_15m", "total") >= count(&after, "last_1m", "total"));
    assert_eq!(after["requests"]["last_5m"]["window_secs"], 300);
    let p50 = after["requests"]["last_1m"]["p50_ms"].as_f64().unwrap();
    let p99 = after["requests"]["last_1m"]["p99_ms"].as_f64().unwrap();
    assert!(p50 > 0.0 && p99 >= p50);
    // Nothing in it names anyone.
    let text = after.to_string();
    assert!(!text.contains("alice") && !text.contains("bob"));
}

async fn the_page_is_served_with_its_own_csp<S: Store>(h: Harness<S>) {
    for (path, kind) in [
        ("/admin", "text/html"),
        ("/admin/admin.js", "text/javascript"),
        ("/admin/admin.css", "text/css"),
    ] {
        let reply = h
            .call(Method::GET, path, None, None)
            .await
            .expect(StatusCode::OK);
        let csp = reply.headers[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap();
        assert_eq!(csp, haven_relay::admin::page::ADMIN_CSP);
        assert!(csp.contains("script-src 'self'") && csp.contains("form-action 'none'"));
        let content_type = reply.headers[header::CONTENT_TYPE].to_str().unwrap();
        assert!(content_type.starts_with(kind), "{path}: {content_type}");
        assert_eq!(reply.headers[header::X_FRAME_OPTIONS], "DENY");
    }
    let page = h.call(Method::GET, "/admin", None, None).await;
    let html = page.body.as_str().unwrap();
    // No inline script or style, and nothing from elsewhere.
    assert!(!html.contains("<script>") && !html.contains("<style") && !html.contains("style="));
    assert!(!html.contains("http://") && !html.contains("https://"));
    // The API keeps its own "load nothing" policy.
    let api = h.call(Method::GET, "/health", None, None).await;
    assert_eq!(
        api.headers[header::CONTENT_SECURITY_POLICY],
        "default-src 'none'; frame-ancestors 'none'"
    );
}

common::on_both_backends!(
    the_page_is_served_with_its_own_csp,
    overview_reports_counts_and_request_figures,
    keys_are_required_checked_rotated_and_revoked,
    expired_keys_are_refused,
    wrong_keys_are_rate_limited_per_address,
);

fn relay_admin(config: &RelayConfig, args: &[&str]) -> std::process::Output {
    std::process::Command::new(common::RELAY_BIN)
        .env_clear()
        .envs(config.settings())
        .current_dir(config.dir())
        .arg("admin")
        .args(args)
        .output()
        .unwrap()
}

/// `haven-relay admin create-key|list-keys|revoke-key` on the database a relay then serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_line_creates_lists_and_revokes_keys() {
    let config = RelayConfig::new();
    let out = relay_admin(&config, &["create-key", "--label", "bootstrap"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let key = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(key.starts_with("hvn_admin_"));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("shown only once"));
    let out = relay_admin(
        &config,
        &["create-key", "--label", "x", "--expires-days", "nope"],
    );
    assert_eq!(out.status.code(), Some(2));
    let out = relay_admin(&config, &["list-keys"]);
    assert!(out.status.success());
    let listing = String::from_utf8(out.stdout).unwrap();
    assert!(listing.contains("bootstrap") && listing.contains("active"));
    assert!(!listing.contains("hvn_admin_"));
    let id = listing
        .lines()
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();

    let mut relay = config.spawn(common::RELAY_BIN);
    let api = RemoteApi::new(relay.url());
    api.call(Method::GET, "/v1/admin/keys", None, Some(&key))
        .await
        .expect(StatusCode::OK);
    let out = relay_admin(relay.config(), &["revoke-key", &id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    api.call(Method::GET, "/v1/admin/keys", None, Some(&key))
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "invalid_admin_key");
    let out = relay_admin(relay.config(), &["revoke-key", "00"]);
    assert!(!out.status.success());
    let logs = relay.stop();
    assert!(!logs.contains(&key[10..]), "the key must never be logged");
}

/// `haven-relay admin rotate-franking-key`: the next start publishes the new key and still
/// accepts the old one (for the report window); a retired secret older than the window is erased
/// at start; the audit log records the rotation; a configured secret is not rotated here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_line_rotates_the_franking_key() {
    use haven_relay::secrets::SecretStore as _;

    let config = RelayConfig::new();
    let out = relay_admin(&config, &["create-key", "--label", "ops"]);
    assert!(out.status.success());
    let admin = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let published = |url: String| async move {
        RemoteApi::new(url)
            .call(Method::GET, "/v1/franking/key", None, None)
            .await
            .expect(StatusCode::OK)
            .body
    };
    let mut relay = config.clone().spawn(common::RELAY_BIN);
    let first = published(relay.url()).await;
    assert_eq!(first["previous"], json!([]));
    relay.stop();

    let out = relay_admin(&config, &["rotate-franking-key"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert_ne!(printed, first["franking_key"].as_str().unwrap());
    // A secret retired long ago (beyond the 30-day window) is erased at the next start.
    let db_url = config.get("HAVEN_DATABASE_URL").unwrap().to_owned();
    let store = haven_relay::db::SqliteStore::connect(&db_url)
        .await
        .unwrap();
    store
        .secret_or_insert("franking_secret.retired.5", &[9; 32])
        .await
        .unwrap();
    store.close().await;

    let mut relay = config.clone().spawn(common::RELAY_BIN);
    let second = published(relay.url()).await;
    assert_eq!(second["franking_key"], printed.as_str());
    assert_eq!(second["previous"], json!([first["franking_key"]]));
    let audit = RemoteApi::new(relay.url())
        .call(
            Method::GET,
            "/v1/admin/audit?kind=key_rotation",
            None,
            Some(&admin),
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(
        audit.body["events"].as_array().unwrap().len(),
        1,
        "{}",
        audit.body
    );
    relay.stop();
    let store = haven_relay::db::SqliteStore::connect(&db_url)
        .await
        .unwrap();
    assert_eq!(
        store
            .secrets_with_prefix("franking_secret.retired.")
            .await
            .unwrap()
            .len(),
        1,
        "only the secret retired within the window is kept"
    );
    store.close().await;

    // With the secret in the settings, the command refuses and changes nothing.
    let configured = config.clone().set_all(&[(
        "HAVEN_MODERATION_FRANKING_SECRET",
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
    )]);
    let out = relay_admin(&configured, &["rotate-franking-key"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("moderation.franking_secret"));
}
