//! The client's relay API against a real relay (in-process, SQLite, real TCP and HTTP).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use haven_client::relay::{LoginDevice, LoginIdentifier, RelayClient, RelayError};
use haven_relay::Settings;
use reqwest::Method;

/// Starts a relay on a temporary SQLite database; returns its base URL and the temp dir.
async fn relay(extra: &[(&str, &str)]) -> (String, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let db = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("relay.db").display()
    );
    let mut env: Vec<(String, String)> = vec![
        ("HAVEN_LISTEN".into(), "127.0.0.1:0".into()),
        ("HAVEN_METRICS_LISTEN".into(), "off".into()),
        ("HAVEN_DATABASE_URL".into(), db),
        ("HAVEN_LOG".into(), "warn".into()),
    ];
    env.extend(
        extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    let settings = Settings::load(None, |name| {
        env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    })
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(haven_relay::launch_with_listener(
        settings,
        listener,
        std::future::pending::<()>(),
    ));
    let url = format!("http://{addr}");
    // Wait until the relay answers (migrations run before it serves).
    for _ in 0..100 {
        if reqwest::get(format!("{url}/ready"))
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    (url, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_login_refresh_logout() {
    let (url, _dir) = relay(&[]).await;
    let alice = RelayClient::new(&url).unwrap();
    let session = alice
        .register(
            Some("alice_client"),
            b"correct horse",
            &[5u8; 64],
            Some(b"enc-name"),
        )
        .await
        .unwrap();
    assert_eq!(session.account_id.len(), 32);
    let devices = alice
        .request(Method::GET, "/v1/devices", None)
        .await
        .unwrap();
    assert_eq!(devices["devices"].as_array().unwrap().len(), 1);

    // A taken username is a typed refusal.
    let other = RelayClient::new(&url).unwrap();
    let err = other
        .register(Some("alice_client"), b"pw", &[6u8; 64], None)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("username_taken"));

    // Wrong password: detected by OPAQUE, no session.
    let bad = other
        .login(
            LoginIdentifier::Username("alice_client"),
            b"wrong",
            LoginDevice::Existing(&session.device_id),
            None,
        )
        .await
        .unwrap_err();
    assert!(matches!(bad, RelayError::InvalidCredentials), "{bad:?}");
    assert!(other.session().await.is_none());
    assert!(matches!(
        other.request(Method::GET, "/v1/devices", None).await,
        Err(RelayError::NotLoggedIn)
    ));

    // A second device logs in by username.
    let phone = RelayClient::new(&url).unwrap();
    let second = phone
        .login(
            LoginIdentifier::Username("alice_client"),
            b"correct horse",
            LoginDevice::New {
                identity_key: &[7u8; 64],
                name: None,
            },
            None,
        )
        .await
        .unwrap();
    assert_eq!(second.account_id, session.account_id);
    assert_ne!(second.device_id, session.device_id);
    let devices = phone
        .request(Method::GET, "/v1/devices", None)
        .await
        .unwrap();
    assert_eq!(devices["devices"].as_array().unwrap().len(), 2);

    // Refresh rotates the refresh token; the old one is spent.
    let before = phone.session().await.unwrap();
    let after = phone.refresh().await.unwrap();
    assert_ne!(before.refresh_token(), after.refresh_token());
    phone
        .request(Method::GET, "/v1/devices", None)
        .await
        .unwrap();

    // Replaying the spent refresh token revokes the whole session (§11.7).
    let thief = RelayClient::new(&url).unwrap();
    thief.set_session(before).await;
    let err = thief.refresh().await.unwrap_err();
    assert_eq!(err.code(), Some("refresh_reused"));
    assert!(thief.session().await.is_none());
    let err = phone
        .request(Method::GET, "/v1/devices", None)
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(401));

    // Logout ends the first device's session.
    alice.logout().await.unwrap();
    assert!(alice.session().await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_access_token_is_refreshed_transparently() {
    // Ten-second access tokens: the client refreshes once half of that has passed.
    let (url, _dir) = relay(&[("HAVEN_ACCESS_TOKEN_TTL_SECS", "10")]).await;
    let c = RelayClient::new(&url).unwrap();
    let s0 = c.register(None, b"pw", &[1u8; 64], None).await.unwrap();
    c.request(Method::GET, "/v1/devices", None).await.unwrap();
    assert_eq!(
        s0.refresh_token(),
        c.session().await.unwrap().refresh_token(),
        "no refresh yet"
    );
    tokio::time::sleep(std::time::Duration::from_millis(5200)).await;
    let devices = c.request(Method::GET, "/v1/devices", None).await.unwrap();
    assert_eq!(devices["devices"].as_array().unwrap().len(), 1);
    let s1 = c.session().await.unwrap();
    assert_ne!(
        s0.refresh_token(),
        s1.refresh_token(),
        "the client refreshed"
    );
    assert!(matches!(
        RelayClient::new("ftp://x"),
        Err(RelayError::InvalidUrl)
    ));
}
