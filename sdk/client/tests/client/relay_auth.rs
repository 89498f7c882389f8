//! The client's relay API against a real relay (in-process, SQLite, real TCP and HTTP).

use haven_client::relay::{LoginDevice, LoginIdentifier, RelayClient, RelayError};
use haven_testkit::RelayConfig;
use reqwest::Method;

use crate::common::Relay;

/// A relay on a fresh SQLite database, with `extra` settings.
fn relay(extra: &[(&str, &str)]) -> Relay {
    Relay::start(RelayConfig::new().set("HAVEN_LOG", "warn").set_all(extra))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_login_refresh_logout() {
    let relay = relay(&[]);
    let url = relay.url();
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
    let relay = relay(&[("HAVEN_ACCESS_TOKEN_TTL_SECS", "10")]);
    let url = relay.url();
    let c = RelayClient::new(&url).unwrap();
    let s0 = c.register(None, b"pw", &[1u8; 64], None).await.unwrap();
    c.request(Method::GET, "/v1/devices", None).await.unwrap();
    assert_eq!(
        s0.refresh_token(),
        c.session().await.unwrap().refresh_token(),
        "no refresh yet"
    );
    // Not synchronisation: the token has to age past half its lifetime (the client's refresh
    // point), and only time passing does that.
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
