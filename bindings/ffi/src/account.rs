//! The account's lifecycle (PROTOCOL.md §11.6.1–§11.9), shared by [`crate::Messenger`] and
//! [`crate::Diary`]: the device list, renaming, logout (everywhere), TOTP, password change, the
//! recovery code, export and deletion, plus [`recover_account`] for a device without a session.
//!
//! Actions that need a fresh authentication take the account password (and the TOTP code when
//! TOTP is on) and prove it again here, inside the call: the single-use proof never crosses the
//! boundary, and the password is held in a `Zeroizing` buffer and wiped after use.

use base64::Engine as _;
use haven_client::RelayClient;
use haven_client::relay::{FreshAuth, LoginDevice, LoginIdentifier, RecoveryCode, Session};
use zeroize::Zeroizing;

use crate::error::HavenError;
use crate::runtime;
use crate::types::parse_id;

/// One device of the account, as the relay lists it.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct AccountDevice {
    /// The device's small number within the account (what `unlink_device` takes).
    pub number: u32,
    /// The device id (32 hex digits).
    pub id: String,
    /// Whether it is the device making the call.
    pub current: bool,
    /// When it joined the account (Unix seconds).
    pub created_at: i64,
    /// The name blob set by `rename_device`, as it was given (the app encrypts it: the relay
    /// must not read device names).
    pub name: Option<Vec<u8>>,
}

/// A pending TOTP secret for the authenticator app (PROTOCOL.md §11.8), as the relay gives it.
/// TOTP is on only once `totp_verify` confirms a code from it.
#[derive(Clone, PartialEq, Eq, uniffi::Record)]
pub struct TotpSetup {
    /// The secret, RFC 4648 base32 without padding (for typing it in).
    pub secret: String,
    /// The `otpauth://totp/Haven:…` URI (for a QR code).
    pub otpauth_uri: String,
}

/// How to name an account without a session (for [`recover_account`]).
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Enum)]
pub enum AccountIdentifier {
    /// By its username.
    Username {
        /// The username.
        username: String,
    },
    /// By its account id.
    AccountId {
        /// 32 hex digits.
        account_id: String,
    },
}

/// Proves the password (and TOTP code) again for the relay's session; the password is wiped
/// when the caller drops it.
pub(crate) async fn fresh_auth(
    relay: &RelayClient,
    password: &Zeroizing<String>,
    totp_code: Option<&str>,
) -> Result<FreshAuth, HavenError> {
    Ok(relay
        .reauthenticate(password.as_bytes(), totp_code.map(str::trim))
        .await?)
}

/// The account's devices, oldest first.
pub(crate) async fn devices(relay: &RelayClient) -> Result<Vec<AccountDevice>, HavenError> {
    Ok(relay
        .devices()
        .await?
        .devices
        .into_iter()
        .map(|d| AccountDevice {
            number: d.device_number,
            id: d.device_id.to_hex(),
            current: d.current,
            created_at: d.created_at,
            name: d
                .name
                .and_then(|n| base64::engine::general_purpose::STANDARD.decode(n).ok()),
        })
        .collect())
}

/// The id of the account's device `number`.
async fn device_id(relay: &RelayClient, number: u32) -> Result<String, HavenError> {
    devices(relay)
        .await?
        .into_iter()
        .find(|d| d.number == number)
        .map(|d| d.id)
        .ok_or_else(|| HavenError::InvalidInput(format!("no device {number} in this account")))
}

/// Replaces the encrypted name blob of device `number` (`None` clears it).
pub(crate) async fn rename_device(
    relay: &RelayClient,
    number: u32,
    name: Option<Vec<u8>>,
) -> Result<(), HavenError> {
    let id = device_id(relay, number).await?;
    Ok(relay.rename_device(&id, name.as_deref()).await?)
}

/// Unlinks device `number` on the relay only (no signed device list: for a diary account).
pub(crate) async fn unlink_device(
    relay: &RelayClient,
    number: u32,
    password: &Zeroizing<String>,
    totp_code: Option<&str>,
) -> Result<(), HavenError> {
    let device = devices(relay)
        .await?
        .into_iter()
        .find(|d| d.number == number)
        .ok_or_else(|| HavenError::InvalidInput(format!("no device {number} in this account")))?;
    if device.current {
        return Err(HavenError::InvalidInput(
            "this device cannot unlink itself (use logout)".into(),
        ));
    }
    let fresh = fresh_auth(relay, password, totp_code).await?;
    Ok(relay.unlink_device(fresh, &device.id).await?)
}

/// Changes the account password; the relay's new session is installed in `relay`.
pub(crate) async fn change_password(
    relay: &RelayClient,
    password: &Zeroizing<String>,
    new_password: &Zeroizing<String>,
    totp_code: Option<&str>,
) -> Result<(), HavenError> {
    if new_password.is_empty() {
        return Err(HavenError::InvalidInput("the new password is empty".into()));
    }
    let fresh = fresh_auth(relay, password, totp_code).await?;
    relay
        .change_password(fresh, new_password.as_bytes())
        .await?;
    Ok(())
}

/// Makes and sets a new recovery code; returns its text, to show once.
pub(crate) async fn set_recovery_code(
    relay: &RelayClient,
    password: &Zeroizing<String>,
    totp_code: Option<&str>,
) -> Result<String, HavenError> {
    let fresh = fresh_auth(relay, password, totp_code).await?;
    let code = RecoveryCode::generate(&mut rand::rng());
    relay.set_recovery_code(fresh, &code).await?;
    Ok(code.to_text().as_str().to_owned())
}

/// Logs `relay` in again as the existing device `device_id` of `account_id`.
pub(crate) async fn relogin(
    relay: &RelayClient,
    account_id: &str,
    device_id: &str,
    password: &Zeroizing<String>,
    totp_code: Option<&str>,
) -> Result<Session, HavenError> {
    Ok(relay
        .login(
            LoginIdentifier::AccountId(account_id),
            password.as_bytes(),
            LoginDevice::Existing(device_id),
            totp_code.map(str::trim),
        )
        .await?)
}

/// Starts TOTP setup.
pub(crate) async fn totp_setup(relay: &RelayClient) -> Result<TotpSetup, HavenError> {
    let setup = relay.totp_setup().await?;
    Ok(TotpSetup {
        secret: setup.secret,
        otpauth_uri: setup.otpauth_uri,
    })
}

/// Disables TOTP with a fresh authentication; `code` serves both (it is not claimed twice).
pub(crate) async fn totp_disable(
    relay: &RelayClient,
    password: &Zeroizing<String>,
    code: &str,
) -> Result<(), HavenError> {
    let code = code.trim();
    let fresh = fresh_auth(relay, password, Some(code)).await?;
    Ok(relay.totp_disable(fresh, code).await?)
}

/// Deletes the account with a fresh authentication.
pub(crate) async fn delete_account(
    relay: &RelayClient,
    password: &Zeroizing<String>,
    totp_code: Option<&str>,
) -> Result<(), HavenError> {
    let fresh = fresh_auth(relay, password, totp_code).await?;
    Ok(relay.delete_account(fresh).await?)
}

/// Everything the relay stores about the account, as pretty-printed JSON.
pub(crate) async fn export_account(relay: &RelayClient) -> Result<String, HavenError> {
    let export = relay.export_account().await?;
    serde_json::to_string_pretty(&export)
        .map_err(|e| HavenError::Internal(format!("export as JSON: {e}")))
}

/// Replaces a lost account password with the recovery code (PROTOCOL.md §11.6.3), without a
/// session: every session of the account ends, the code is used up, and nothing else is
/// granted. Log in again with `new_password` afterwards (`Messenger.relogin`,
/// `Diary.relogin`) and set a new recovery code. The code and the password are wiped after use.
///
/// # Errors
/// `WrongRecoveryCode` (malformed, wrong, already used, or the account has none),
/// `TotpRequired` / `WrongTotpCode` (TOTP is on), `InvalidInput` (relay URL, account id, empty
/// password), `Refused` (`rate_limited`), `Network`.
#[uniffi::export(default(totp_code = None))]
pub async fn recover_account(
    relay_url: String,
    account: AccountIdentifier,
    recovery_code: String,
    new_password: String,
    totp_code: Option<String>,
) -> Result<(), HavenError> {
    let recovery_code = Zeroizing::new(recovery_code);
    let new_password = Zeroizing::new(new_password);
    let code = RecoveryCode::parse(&recovery_code).map_err(|_| HavenError::WrongRecoveryCode)?;
    if new_password.is_empty() {
        return Err(HavenError::InvalidInput("the new password is empty".into()));
    }
    let account_hex = match &account {
        AccountIdentifier::Username { .. } => None,
        AccountIdentifier::AccountId { account_id } => {
            Some(hex::encode(parse_id("account id", account_id)?))
        }
    };
    let relay = RelayClient::new(relay_url.trim())?;
    runtime::run(async move {
        let identifier = match (&account, &account_hex) {
            (_, Some(id)) => LoginIdentifier::AccountId(id),
            (AccountIdentifier::Username { username }, None) => {
                LoginIdentifier::Username(username.trim())
            }
            (AccountIdentifier::AccountId { .. }, None) => {
                return Err(HavenError::Internal("account id not parsed".into()));
            }
        };
        let result = relay
            .recover_account(
                identifier,
                &code,
                new_password.as_bytes(),
                totp_code.as_deref().map(str::trim),
            )
            .await;
        match result {
            // A wrong code is indistinguishable from an account without one (§11.6.3).
            Err(e)
                if matches!(e, haven_client::RelayError::InvalidCredentials)
                    || e.code() == Some("invalid_credentials") =>
            {
                Err(HavenError::WrongRecoveryCode)
            }
            other => Ok(other?),
        }
    })
    .await
}
