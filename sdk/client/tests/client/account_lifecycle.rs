//! The account's lifecycle through the client's typed methods against a real relay (in
//! process, SQLite, real HTTP): TOTP at login and its management, fresh authentication, the
//! device list, password change, the recovery code and recovery, logout everywhere, export and
//! deletion (PROTOCOL.md §11.6.1–§11.9).

use haven_client::relay::{
    FreshAuth, LoginDevice, LoginIdentifier, RecoveryCode, RelayClient, RelayError,
};
use haven_relay::accounts::totp;
use haven_testkit::RelayConfig;

use crate::common::Relay;

const PASSWORD: &[u8] = b"correct horse battery staple";
const NEW_PASSWORD: &[u8] = b"a different passphrase";

fn relay() -> Relay {
    Relay::start(RelayConfig::new().set("HAVEN_LOG", "warn"))
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A time early in a 30-second TOTP step, so the codes of the previous, this and the next step
/// all stay within the relay's window for the rest of a short test.
async fn early_in_step() -> u64 {
    let t = now();
    if t % 30 > 20 {
        tokio::time::sleep(std::time::Duration::from_secs(31 - t % 30)).await;
    }
    now()
}

fn base32_decode(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let (mut bits, mut n, mut out) = (0u64, 0, Vec::new());
    for c in text.trim_end_matches('=').bytes() {
        let v = ALPHABET.iter().position(|&a| a == c).unwrap() as u64;
        bits = (bits << 5) | v;
        n += 5;
        if n >= 8 {
            n -= 8;
            out.push((bits >> n) as u8);
        }
    }
    out
}

fn code(err: &RelayError) -> &str {
    err.code().unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn totp_login_reauth_and_disable() {
    let relay = relay();
    let alice = RelayClient::new(&relay.url()).unwrap();
    let session = alice
        .register(Some("totp_alice"), PASSWORD, &[1u8; 64], None)
        .await
        .unwrap();
    let setup = alice.totp_setup().await.unwrap();
    assert!(setup.otpauth_uri.starts_with("otpauth://totp/Haven:"));
    let secret = base32_decode(&setup.secret);
    let t = early_in_step().await;
    alice
        .totp_verify(&totp::code_at(&secret, t - 30))
        .await
        .unwrap();

    // Login needs the code; with it the SDK logs in.
    let phone = RelayClient::new(&relay.url()).unwrap();
    let login = |totp_code: Option<String>| {
        let phone = &phone;
        let device = session.device_id.clone();
        async move {
            phone
                .login(
                    LoginIdentifier::Username("totp_alice"),
                    PASSWORD,
                    LoginDevice::Existing(&device),
                    totp_code.as_deref(),
                )
                .await
        }
    };
    let err = login(None).await.unwrap_err();
    assert_eq!(code(&err), "totp_required");
    assert!(phone.session().await.is_none());
    let again = login(Some(totp::code_at(&secret, t))).await.unwrap();
    assert_eq!(again.device_id, session.device_id);
    assert_eq!(
        code(&login(Some(totp::code_at(&secret, t))).await.unwrap_err()),
        "totp_invalid"
    );

    // Disabling: a fresh authentication (with the next code), then the same code again.
    let err = alice.reauthenticate(PASSWORD, None).await.unwrap_err();
    assert_eq!(code(&err), "totp_required");
    let next = totp::code_at(&secret, t + 30);
    let fresh = alice.reauthenticate(PASSWORD, Some(&next)).await.unwrap();
    assert!(fresh.is_live());
    assert_eq!(format!("{fresh:?}"), "FreshAuth { .. }");
    alice.totp_disable(fresh, &next).await.unwrap();
    assert!(!alice.export_account().await.unwrap().account.totp_enabled);
    phone
        .login(
            LoginIdentifier::Username("totp_alice"),
            PASSWORD,
            LoginDevice::Existing(&session.device_id),
            None,
        )
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_password_change_logout_everywhere_and_deletion() {
    let relay = relay();
    let url = relay.url();
    let alice = RelayClient::new(&url).unwrap();
    let first = alice
        .register(Some("life_alice"), PASSWORD, &[1u8; 64], Some(b"enc-1"))
        .await
        .unwrap();
    let phone = RelayClient::new(&url).unwrap();
    let second = phone
        .login(
            LoginIdentifier::Username("life_alice"),
            PASSWORD,
            LoginDevice::New {
                identity_key: &[2u8; 64],
                name: None,
            },
            None,
        )
        .await
        .unwrap();

    // List and rename.
    let list = alice.devices().await.unwrap();
    assert_eq!(list.devices.len(), 2);
    assert!(list.devices[0].current && !list.devices[1].current);
    alice
        .rename_device(&second.device_id, Some(b"enc-phone"))
        .await
        .unwrap();
    let list = phone.devices().await.unwrap();
    assert_eq!(list.devices[1].name.as_deref(), Some("ZW5jLXBob25l"));
    assert!(matches!(
        alice.rename_device("XYZ", None).await,
        Err(RelayError::InvalidId(_))
    ));

    // A wrong password gives no proof.
    assert!(matches!(
        alice.reauthenticate(b"wrong", None).await,
        Err(RelayError::InvalidCredentials)
    ));
    // A proof is bound to its session: the phone's proof does not unlink from Alice's client.
    let phones: FreshAuth = phone.reauthenticate(PASSWORD, None).await.unwrap();
    let err = alice
        .unlink_device(phones, &second.device_id)
        .await
        .unwrap_err();
    assert_eq!(code(&err), "fresh_auth_invalid");

    // Password change: every other session ends, this client keeps a new one.
    let fresh = alice.reauthenticate(PASSWORD, None).await.unwrap();
    let renewed = alice.change_password(fresh, NEW_PASSWORD).await.unwrap();
    assert_eq!(renewed.device_id, first.device_id);
    assert_ne!(renewed.refresh_token(), first.refresh_token());
    alice.devices().await.unwrap();
    let err = phone.devices().await.unwrap_err();
    assert_eq!(err.status(), Some(401));
    let err = phone
        .login(
            LoginIdentifier::Username("life_alice"),
            PASSWORD,
            LoginDevice::Existing(&second.device_id),
            None,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, RelayError::InvalidCredentials), "{err:?}");
    phone
        .login(
            LoginIdentifier::Username("life_alice"),
            NEW_PASSWORD,
            LoginDevice::Existing(&second.device_id),
            None,
        )
        .await
        .unwrap();

    // Unlink with a fresh authentication.
    let fresh = alice.reauthenticate(NEW_PASSWORD, None).await.unwrap();
    alice.unlink_device(fresh, &second.device_id).await.unwrap();
    assert_eq!(alice.devices().await.unwrap().devices.len(), 1);
    assert_eq!(phone.devices().await.unwrap_err().status(), Some(401));

    // Export, logout everywhere.
    let export = alice.export_account().await.unwrap();
    assert_eq!(export.format, "haven-relay-export/v1");
    assert_eq!(export.account.account_id.to_hex(), first.account_id);
    assert_eq!(export.devices.len(), 1);
    let other = RelayClient::new(&url).unwrap();
    other
        .login(
            LoginIdentifier::AccountId(&first.account_id),
            NEW_PASSWORD,
            LoginDevice::Existing(&first.device_id),
            None,
        )
        .await
        .unwrap();
    other.logout_everywhere().await.unwrap();
    assert!(other.session().await.is_none());
    assert_eq!(alice.devices().await.unwrap_err().status(), Some(401));

    // Deletion needs a fresh authentication.
    alice
        .login(
            LoginIdentifier::AccountId(&first.account_id),
            NEW_PASSWORD,
            LoginDevice::Existing(&first.device_id),
            None,
        )
        .await
        .unwrap();
    let err = alice
        .request(reqwest::Method::DELETE, "/v1/account", None)
        .await
        .unwrap_err();
    assert_eq!(code(&err), "fresh_auth_required");
    let fresh = alice.reauthenticate(NEW_PASSWORD, None).await.unwrap();
    alice.delete_account(fresh).await.unwrap();
    assert!(alice.session().await.is_none());
    let err = other
        .login(
            LoginIdentifier::Username("life_alice"),
            NEW_PASSWORD,
            LoginDevice::Existing(&first.device_id),
            None,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, RelayError::InvalidCredentials), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_password_is_recovered_with_the_recovery_code() {
    let relay = relay();
    let url = relay.url();
    let alice = RelayClient::new(&url).unwrap();
    let first = alice
        .register(Some("rec_alice"), PASSWORD, &[1u8; 64], None)
        .await
        .unwrap();
    let code = RecoveryCode::generate(&mut rand::rng());
    let fresh = alice.reauthenticate(PASSWORD, None).await.unwrap();
    alice.set_recovery_code(fresh, &code).await.unwrap();
    assert!(
        alice
            .export_account()
            .await
            .unwrap()
            .account
            .opaque_recovery_record
            .is_some()
    );

    // The password is lost. A wrong code is refused and changes nothing.
    let lost = RelayClient::new(&url).unwrap();
    let wrong = RecoveryCode::generate(&mut rand::rng());
    let err = lost
        .recover_account(
            LoginIdentifier::Username("rec_alice"),
            &wrong,
            NEW_PASSWORD,
            None,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, RelayError::InvalidCredentials), "{err:?}");
    alice.devices().await.unwrap();

    // The code as the user types it back (lowercase, spaces) recovers the account.
    let typed = code.to_text().to_lowercase().replace('-', " ");
    let parsed = RecoveryCode::parse(&typed).unwrap();
    lost.recover_account(
        LoginIdentifier::AccountId(&first.account_id),
        &parsed,
        NEW_PASSWORD,
        None,
    )
    .await
    .unwrap();
    assert!(lost.session().await.is_none(), "recovery grants no session");
    assert_eq!(alice.devices().await.unwrap_err().status(), Some(401));
    lost.login(
        LoginIdentifier::Username("rec_alice"),
        NEW_PASSWORD,
        LoginDevice::Existing(&first.device_id),
        None,
    )
    .await
    .unwrap();
    assert_eq!(lost.devices().await.unwrap().devices.len(), 1);
    // The code worked once.
    let err = lost
        .recover_account(
            LoginIdentifier::Username("rec_alice"),
            &code,
            b"third",
            None,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, RelayError::InvalidCredentials), "{err:?}");
    // A new code can be set after logging in.
    let fresh = lost.reauthenticate(NEW_PASSWORD, None).await.unwrap();
    lost.set_recovery_code(fresh, &RecoveryCode::generate(&mut rand::rng()))
        .await
        .unwrap();
}
