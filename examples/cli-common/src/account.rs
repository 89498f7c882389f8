//! The account's commands both CLIs run (PROTOCOL.md §11.6.1–§11.9): the device list, logout
//! (everywhere), logging in again, password change, the recovery code and recovery, TOTP,
//! export and deletion. Each CLI opens its relay session, names its account and device, and
//! keeps the session afterwards (refresh tokens rotate on use).
//!
//! Actions that need a fresh authentication prove the account password again
//! (`HAVEN_ACCOUNT_PASSWORD`, prompted for without it) and `--totp CODE` when TOTP is on.

use haven_client::RelayClient;
use haven_client::relay::{FreshAuth, LoginDevice, LoginIdentifier, RecoveryCode};

use crate::{Args, Failure, secret};

/// The account and device a CLI's state directory holds.
#[derive(Debug, Clone)]
pub struct Me {
    /// The account id (32 hex digits).
    pub account_id: String,
    /// This device's id (32 hex digits).
    pub device_id: String,
}

/// A fresh-authentication proof: the account password (and `--totp`) proven again.
///
/// # Errors
/// A wrong password (exit code 3), the relay's refusals (7), secrets not given.
pub async fn fresh_auth(args: &Args, relay: &RelayClient) -> Result<FreshAuth, Failure> {
    let password = secret("HAVEN_ACCOUNT_PASSWORD", "account password")?;
    Ok(relay
        .reauthenticate(password.as_bytes(), args.flag("--totp"))
        .await?)
}

/// Runs the account command `command` (`devices`, `logout`, `logout-all`, `relogin`,
/// `change-password`, `recovery-code`, `recover`, `totp-setup`, `totp-enable`, `totp-disable`,
/// `export`, `delete-account`) for `me` on `relay`; `Ok(false)` when `command` is none of them.
///
/// # Errors
/// Usage failures (missing words, a malformed recovery code, an unwritable export path), and
/// the relay's and the secrets' failures.
pub async fn run(
    args: &Args,
    relay: &RelayClient,
    me: &Me,
    command: &str,
) -> Result<bool, Failure> {
    match command {
        "devices" => {
            for d in relay.devices().await?.devices {
                println!(
                    "{}{} {} created {}",
                    if d.current { "*" } else { " " },
                    d.device_number,
                    d.device_id,
                    d.created_at
                );
            }
        }
        "logout" => {
            relay.logout().await?;
            println!("logged out (relogin to use this device again)");
        }
        "logout-all" => {
            relay.logout_everywhere().await?;
            println!("every session of the account ended (relogin to use this device again)");
        }
        "relogin" => {
            let password = secret("HAVEN_ACCOUNT_PASSWORD", "account password")?;
            let session = relay
                .login(
                    LoginIdentifier::AccountId(&me.account_id),
                    password.as_bytes(),
                    LoginDevice::Existing(&me.device_id),
                    args.flag("--totp"),
                )
                .await?;
            match session.device_number {
                Some(n) => println!("logged in again as device {n}"),
                None => println!("logged in again"),
            }
        }
        "change-password" => {
            let fresh = fresh_auth(args, relay).await?;
            let new = secret("HAVEN_NEW_ACCOUNT_PASSWORD", "new account password")?;
            relay.change_password(fresh, new.as_bytes()).await?;
            println!("password changed; every other session ended");
        }
        "recovery-code" => {
            let fresh = fresh_auth(args, relay).await?;
            let code = RecoveryCode::generate(&mut rand::rng());
            relay.set_recovery_code(fresh, &code).await?;
            println!("recovery code (write it down; it is shown once and works once):");
            println!("{}", code.to_text().as_str());
        }
        "recover" => {
            let text = secret("HAVEN_RECOVERY_CODE", "recovery code")?;
            let code = RecoveryCode::parse(&text).map_err(|_| {
                Failure::usage("not a recovery code (32 characters in groups of 4)")
            })?;
            let new = secret("HAVEN_NEW_ACCOUNT_PASSWORD", "new account password")?;
            relay
                .recover_account(
                    LoginIdentifier::AccountId(&me.account_id),
                    &code,
                    new.as_bytes(),
                    args.flag("--totp"),
                )
                .await?;
            println!("password replaced; every session ended: run relogin with the new password");
        }
        "totp-setup" => {
            let setup = relay.totp_setup().await?;
            println!("secret {}", setup.secret);
            println!("{}", setup.otpauth_uri);
            println!("then: totp-enable CODE");
        }
        "totp-enable" => {
            relay.totp_verify(args.word(0, "CODE")?).await?;
            println!("TOTP enabled");
        }
        "totp-disable" => {
            let code = args.word(0, "CODE")?;
            let fresh = fresh_auth(args, relay).await?;
            relay.totp_disable(fresh, code).await?;
            println!("TOTP disabled");
        }
        "export" => {
            let export = relay.export_account().await?;
            let json = serde_json::to_string_pretty(&export)
                .map_err(|e| Failure::other(format!("export: {e}")))?;
            match args.words.first() {
                Some(path) => {
                    std::fs::write(path, json)
                        .map_err(|e| Failure::usage(format!("cannot write {path}: {e}")))?;
                    println!(
                        "exported {} devices, {} sessions, {} vault items to {path}",
                        export.devices.len(),
                        export.sessions.len(),
                        export.vault.len()
                    );
                }
                None => println!("{json}"),
            }
        }
        "delete-account" => {
            let fresh = fresh_auth(args, relay).await?;
            relay.delete_account(fresh).await?;
            println!("account deleted on the relay (this state directory is left as it was)");
        }
        _ => return Ok(false),
    }
    Ok(true)
}
