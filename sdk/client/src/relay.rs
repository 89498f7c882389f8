//! The relay's HTTP API from the device side: OPAQUE registration and login, transparent token
//! refresh, and authenticated JSON requests (docs/PROTOCOL.md §11). Bodies are the types of
//! `haven_protocol::api`, the ones the relay itself serves; [`RelayClient::request_as`] and its
//! siblings send and read them.
//!
//! The account's lifecycle (§11.6.1–§11.9) is typed methods: TOTP at login and its setup,
//! re-authentication for a [`FreshAuth`] proof, password change, the recovery code and recovery,
//! logout (everywhere), the device list, unlinking, deletion and export.
//!
//! The OPAQUE steps are the client core's (`haven_client_core::auth`, the web bindings' too).
//! The password never leaves this module in any reusable form: only OPAQUE messages are sent.
//! Tokens are held in zeroizing strings and never logged. An access token is refreshed shortly
//! before it expires and, once, after the relay answers `token_expired`.

use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use haven_client_core::auth::{AuthError, Login, Registration};
use haven_protocol::api::Id;
use haven_protocol::api::account::{AccountExport, TotpCodeRequest, TotpSetupResponse};
use haven_protocol::api::auth::{
    CredentialFinishRequest, CredentialStartRequest, CredentialStartResponse, FRESH_AUTH_HEADER,
    FreshAuthResponse, LoginFinishRequest, LoginStartRequest, LoginStartResponse, NewDeviceBody,
    ReauthFinishRequest, ReauthStartRequest, RecoverFinishRequest, RecoverStartRequest,
    RecoverStartResponse, RefreshRequest, RegisterFinishRequest, RegisterStartRequest,
    RegisterStartResponse, TokenResponse,
};
use haven_protocol::api::devices::{DeviceList, RenameRequest};
use haven_protocol::api::error::{DeviceMismatch, ErrorBody};
use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::{DeserializeOwned, IgnoredAny};
use serde_json::Value;
use tokio::sync::Mutex;
use zeroize::{Zeroize as _, Zeroizing};

/// Refresh the access token when it has less than this left (or half its lifetime, if shorter).
const REFRESH_MARGIN: Duration = Duration::from_secs(30);
/// Timeout of one HTTP request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Errors talking to the relay.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RelayError {
    /// The relay answered with an error (`code` is the stable machine-readable code of §11.2).
    #[error("relay refused ({status}): {code}: {message}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// Stable error code.
        code: String,
        /// Human-readable message.
        message: String,
        /// On 409 `mismatched_devices` / 410 `stale_devices`: how the send's device lists
        /// differ from the recipients' devices (§11.12).
        mismatches: Option<Vec<DeviceMismatch>>,
    },
    /// The request could not be sent or the answer not read.
    #[error("transport: {0}")]
    Transport(#[from] reqwest::Error),
    /// The relay's answer did not have the expected shape.
    #[error("unexpected response from relay: {0}")]
    InvalidResponse(String),
    /// OPAQUE failed on the client (e.g. the password is wrong, detected during login).
    #[error("invalid credentials")]
    InvalidCredentials,
    /// The base URL is not an http(s) URL.
    #[error("invalid relay url")]
    InvalidUrl,
    /// The operation needs a logged-in session.
    #[error("not logged in")]
    NotLoggedIn,
    /// An id given for a request is not 32 lowercase hex digits (nothing was sent).
    #[error("invalid {0}: ids are 32 lowercase hex digits")]
    InvalidId(&'static str),
}

impl RelayError {
    /// The relay's error code, if the relay answered with an error.
    #[must_use]
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Refused { code, .. } => Some(code),
            _ => None,
        }
    }

    /// The HTTP status, if the relay answered with an error.
    #[must_use]
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Refused { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// A logged-in device: ids and tokens. Tokens are zeroized on drop and never printed.
#[derive(Clone)]
pub struct Session {
    /// The account id (32 lowercase hex digits).
    pub account_id: String,
    /// The device id (32 lowercase hex digits).
    pub device_id: String,
    /// The device's small number within the account, when the relay assigns one.
    pub device_number: Option<u32>,
    access_token: Zeroizing<String>,
    refresh_token: Zeroizing<String>,
    /// When the access token should be refreshed (ahead of its real expiry).
    expires_at: Instant,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("account_id", &self.account_id)
            .field("device_id", &self.device_id)
            .field("device_number", &self.device_number)
            .finish_non_exhaustive()
    }
}

impl Session {
    pub(crate) fn from_tokens(t: TokenResponse) -> Self {
        Self {
            account_id: t.account_id.to_hex(),
            device_id: t.device_id.to_hex(),
            device_number: Some(t.device_number),
            access_token: Zeroizing::new(t.access_token),
            refresh_token: Zeroizing::new(t.refresh_token),
            // Refresh ahead of expiry by the margin, or by half the lifetime if that is shorter.
            expires_at: Instant::now() + Duration::from_secs(t.expires_in)
                - REFRESH_MARGIN.min(Duration::from_secs(t.expires_in / 2)),
        }
    }

    /// The current access token (a short-lived bearer credential, §11.7), for handing to
    /// another HTTP tool of the same user (e.g. the API fuzz run of CI). Keep it secret.
    pub fn access_token(&self) -> &str {
        &self.access_token
    }

    /// The refresh token, for persisting the session in the encrypted store.
    #[must_use]
    pub fn refresh_token(&self) -> &str {
        &self.refresh_token
    }

    /// A session restored from a persisted refresh token; the next request refreshes it.
    #[must_use]
    pub fn restore(
        account_id: String,
        device_id: String,
        device_number: Option<u32>,
        refresh_token: Zeroizing<String>,
    ) -> Self {
        Self {
            account_id,
            device_id,
            device_number,
            access_token: Zeroizing::new(String::new()),
            refresh_token,
            expires_at: Instant::now(),
        }
    }
}

/// A fresh-authentication proof (PROTOCOL.md §11.6.1): the password (and the TOTP code, when
/// enabled) was proven again for this session within the last 5 minutes. It is spent by the
/// one action it is given to (the methods take it by value), and is never printed.
pub struct FreshAuth {
    proof: Zeroizing<String>,
    expires_at: Instant,
}

impl std::fmt::Debug for FreshAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FreshAuth").finish_non_exhaustive()
    }
}

impl FreshAuth {
    /// Whether the proof has not expired yet (by this device's clock; the relay decides).
    #[must_use]
    pub fn is_live(&self) -> bool {
        Instant::now() < self.expires_at
    }
}

/// The account recovery code (PROTOCOL.md §11.6.3): the format of the diary's recovery codes
/// (§9.2), 128 random bits and a checksum as 32 Crockford base32 characters. Generate one with
/// [`RecoveryCode::generate`] and show its [`RecoveryCode::to_text`] to the user once; parse what
/// the user types with [`RecoveryCode::parse`].
pub use haven_sdk::RecoveryCode;

/// How to identify the account at login.
#[derive(Debug, Clone, Copy)]
pub enum LoginIdentifier<'a> {
    /// By username (if the account chose one).
    Username(&'a str),
    /// By account id (hex).
    AccountId(&'a str),
}

/// Which device logs in.
#[derive(Debug, Clone, Copy)]
pub enum LoginDevice<'a> {
    /// An existing device of the account (hex id).
    Existing(&'a str),
    /// A new device with its public identity key and optional encrypted name.
    New {
        /// The device's public identity key bytes.
        identity_key: &'a [u8],
        /// An encrypted device name (opaque to the relay).
        name: Option<&'a [u8]>,
    },
}

/// A client of one relay. Cheap to share behind an `Arc`; requests may run concurrently.
pub struct RelayClient {
    http: reqwest::Client,
    /// Sealed sends only (PROTOCOL §5, THREAT_MODEL): never given a credential, and keeps no
    /// connection for reuse, so every sealed send opens a connection of its own that no
    /// authenticated request (nor another sealed send) ever used.
    sealed: reqwest::Client,
    base: String,
    session: Mutex<Option<Session>>,
}

impl std::fmt::Debug for RelayClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayClient")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

fn opaque_rng() -> rand_core_06::OsRng {
    rand_core_06::OsRng
}

/// Parses an id the caller gave (checked here, so a malformed one is never sent).
fn parse_id(what: &'static str, text: &str) -> Result<Id, RelayError> {
    text.parse().map_err(|_| RelayError::InvalidId(what))
}

impl RelayClient {
    /// A client for the relay at `base_url` (e.g. `http://127.0.0.1:8080`).
    ///
    /// # Errors
    /// [`RelayError::InvalidUrl`], [`RelayError::Transport`] if the HTTP client cannot be built.
    pub fn new(base_url: &str) -> Result<Self, RelayError> {
        let base = base_url.trim_end_matches('/').to_owned();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(RelayError::InvalidUrl);
        }
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .user_agent(concat!("haven-client/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let sealed = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .user_agent(concat!("haven-client/", env!("CARGO_PKG_VERSION")))
            .pool_max_idle_per_host(0)
            .build()?;
        Ok(Self {
            http,
            sealed,
            base,
            session: Mutex::new(None),
        })
    }

    /// The relay's base URL.
    #[must_use]
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// The current session, if logged in.
    pub async fn session(&self) -> Option<Session> {
        self.session.lock().await.clone()
    }

    /// Marks the current access token as unusable, so the next request refreshes first (used
    /// when the relay answered `token_expired` outside [`RelayClient::request`], e.g. on a
    /// WebSocket upgrade).
    pub(crate) async fn invalidate_access_token(&self) {
        if let Some(s) = self.session.lock().await.as_mut() {
            s.expires_at = Instant::now();
        }
    }

    /// Installs a session (e.g. restored from the store).
    pub async fn set_session(&self, session: Session) {
        *self.session.lock().await = Some(session);
    }

    /// Sends one request; returns the answer's bytes on success, the relay's error otherwise.
    async fn send<B: Serialize + ?Sized>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        bearer: Option<&str>,
    ) -> Result<bytes::Bytes, RelayError> {
        self.send_with(method, path, body, bearer, None).await
    }

    /// [`Self::send`] with, optionally, a fresh-authentication proof in its header.
    async fn send_with<B: Serialize + ?Sized>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        bearer: Option<&str>,
        fresh: Option<&str>,
    ) -> Result<bytes::Bytes, RelayError> {
        Self::exchange(&self.http, &self.base, method, path, body, bearer, fresh).await
    }

    /// One request on `client`'s connections.
    async fn exchange<B: Serialize + ?Sized>(
        client: &reqwest::Client,
        base: &str,
        method: Method,
        path: &str,
        body: Option<&B>,
        bearer: Option<&str>,
        fresh: Option<&str>,
    ) -> Result<bytes::Bytes, RelayError> {
        let mut req = client.request(method, format!("{base}{path}"));
        if let Some(token) = bearer {
            req = req.bearer_auth(token);
        }
        if let Some(proof) = fresh {
            req = req.header(FRESH_AUTH_HEADER, proof);
        }
        if let Some(body) = body {
            req = req.json(body);
        }
        let resp = req.send().await?;
        let status = resp.status();
        let bytes = resp.bytes().await?;
        if status.is_success() {
            Ok(bytes)
        } else {
            Err(Self::refusal(path, status, &bytes))
        }
    }

    /// The error an unsuccessful answer stands for: the relay's `ErrorBody` (§11.2), or just the
    /// status for other JSON (or none); a body that is not JSON at all is an invalid response.
    fn refusal(path: &str, status: StatusCode, bytes: &[u8]) -> RelayError {
        let (code, message, mismatches) = match serde_json::from_slice::<ErrorBody>(bytes) {
            Ok(ErrorBody { error }) => (error.code, error.message, error.mismatches),
            Err(_) if bytes.is_empty() || serde_json::from_slice::<IgnoredAny>(bytes).is_ok() => {
                (String::new(), String::new(), None)
            }
            Err(e) => return RelayError::InvalidResponse(format!("{path}: {e}")),
        };
        RelayError::Refused {
            status: status.as_u16(),
            code,
            message,
            mismatches,
        }
    }

    /// Reads an answer as `T`; an empty answer (e.g. 204) reads as JSON `null`.
    fn decode<T: DeserializeOwned>(path: &str, bytes: &[u8]) -> Result<T, RelayError> {
        let bytes: &[u8] = if bytes.is_empty() { b"null" } else { bytes };
        serde_json::from_slice(bytes)
            .map_err(|e| RelayError::InvalidResponse(format!("{path}: {e}")))
    }

    /// Registers a new account with OPAQUE and logs its first device in.
    ///
    /// # Errors
    /// [`RelayError::Refused`] (e.g. `username_taken`, `rate_limited`), transport errors.
    pub async fn register(
        &self,
        username: Option<&str>,
        password: &[u8],
        identity_key: &[u8],
        device_name: Option<&[u8]>,
    ) -> Result<Session, RelayError> {
        let (start, registration_request) = opaque_registration_start(password)?;
        let request = RegisterStartRequest {
            registration_request,
        };
        let path = "/v1/register/start";
        let reply: RegisterStartResponse = Self::decode(
            path,
            &self.send(Method::POST, path, Some(&request), None).await?,
        )?;
        let registration_upload =
            opaque_registration_finish(start, password, &reply.registration_response)?;
        let body = RegisterFinishRequest {
            registration_id: reply.registration_id,
            registration_upload,
            username: username.map(str::to_owned),
            device: NewDeviceBody {
                identity_key: STANDARD.encode(identity_key),
                name: device_name.map(|n| STANDARD.encode(n)),
            },
        };
        let path = "/v1/register/finish";
        let tokens = self.send(Method::POST, path, Some(&body), None).await?;
        let session = Session::from_tokens(Self::decode(path, &tokens)?);
        *self.session.lock().await = Some(session.clone());
        Ok(session)
    }

    /// Logs in with OPAQUE as an existing or a new device.
    ///
    /// # Errors
    /// [`RelayError::InvalidCredentials`] for a wrong password, [`RelayError::Refused`]
    /// (`totp_required`, `device_limit`, `rate_limited`, ...), [`RelayError::InvalidId`] for an
    /// account or device id that is not 32 lowercase hex digits, transport errors.
    pub async fn login(
        &self,
        identifier: LoginIdentifier<'_>,
        password: &[u8],
        device: LoginDevice<'_>,
        totp_code: Option<&str>,
    ) -> Result<Session, RelayError> {
        let (username, account_id) = match identifier {
            LoginIdentifier::Username(u) => (Some(u.to_owned()), None),
            LoginIdentifier::AccountId(a) => (None, Some(parse_id("account id", a)?)),
        };
        let device_id = match device {
            LoginDevice::Existing(id) => Some(parse_id("device id", id)?),
            LoginDevice::New { .. } => None,
        };
        let (start, credential_request) = opaque_login_start(password)?;
        let body = LoginStartRequest {
            username,
            account_id,
            credential_request,
        };
        let path = "/v1/login/start";
        let reply: LoginStartResponse = Self::decode(
            path,
            &self.send(Method::POST, path, Some(&body), None).await?,
        )?;
        let credential_finalization =
            opaque_login_finish(start, password, &reply.credential_response)?;
        let new_device = match device {
            LoginDevice::Existing(_) => None,
            LoginDevice::New { identity_key, name } => Some(NewDeviceBody {
                identity_key: STANDARD.encode(identity_key),
                name: name.map(|n| STANDARD.encode(n)),
            }),
        };
        let body = LoginFinishRequest {
            login_id: reply.login_id,
            credential_finalization,
            totp_code: totp_code.map(str::to_owned),
            device_id,
            device: new_device,
        };
        let path = "/v1/login/finish";
        let tokens = self.send(Method::POST, path, Some(&body), None).await?;
        let session = Session::from_tokens(Self::decode(path, &tokens)?);
        *self.session.lock().await = Some(session.clone());
        Ok(session)
    }

    /// Spends the refresh token for a new token pair (rotation, §11.7).
    ///
    /// # Errors
    /// [`RelayError::NotLoggedIn`], [`RelayError::Refused`] (`refresh_reused`, ...).
    pub async fn refresh(&self) -> Result<Session, RelayError> {
        let mut guard = self.session.lock().await;
        let current = guard.as_ref().ok_or(RelayError::NotLoggedIn)?;
        let mut body = RefreshRequest {
            refresh_token: current.refresh_token.to_string(),
        };
        let path = "/v1/token/refresh";
        let result = self.send(Method::POST, path, Some(&body), None).await;
        body.refresh_token.zeroize();
        match result {
            Ok(tokens) => {
                let session = Session::from_tokens(Self::decode(path, &tokens)?);
                *guard = Some(session.clone());
                Ok(session)
            }
            Err(err) => {
                if err.status() == Some(401) {
                    // The session is over (reused, revoked or expired): forget it.
                    *guard = None;
                }
                Err(err)
            }
        }
    }

    /// A valid access token, refreshing first if it is about to expire.
    pub(crate) async fn access_token(&self) -> Result<Zeroizing<String>, RelayError> {
        {
            let guard = self.session.lock().await;
            let s = guard.as_ref().ok_or(RelayError::NotLoggedIn)?;
            if s.expires_at > Instant::now() && !s.access_token.is_empty() {
                return Ok(s.access_token.clone());
            }
        }
        Ok(self.refresh().await?.access_token)
    }

    /// Sends an authenticated request (refreshing the access token when needed, and once more
    /// after `token_expired`) and returns the answer's bytes.
    async fn send_authenticated<B: Serialize + ?Sized>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<bytes::Bytes, RelayError> {
        self.send_authenticated_with(method, path, body, None).await
    }

    /// [`Self::send_authenticated`] with, optionally, a fresh-authentication proof (a refresh
    /// keeps the session, so the proof stays valid for the retry).
    async fn send_authenticated_with<B: Serialize + ?Sized>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        fresh: Option<&str>,
    ) -> Result<bytes::Bytes, RelayError> {
        let token = self.access_token().await?;
        match self
            .send_with(method.clone(), path, body, Some(&token), fresh)
            .await
        {
            Err(err) if err.code() == Some("token_expired") => {
                let token = self.refresh().await?.access_token;
                self.send_with(method, path, body, Some(&token), fresh)
                    .await
            }
            other => other,
        }
    }

    /// Sends a JSON request authorised by a capability token (e.g. a channel's read or write
    /// token) instead of the session's access token.
    ///
    /// # Errors
    /// As [`RelayClient::request_anonymous`].
    pub async fn request_with_bearer(
        &self,
        method: Method,
        path: &str,
        bearer: &str,
        body: Option<&Value>,
    ) -> Result<Value, RelayError> {
        self.request_with_bearer_as(method, path, bearer, body)
            .await
    }

    /// Typed variant of [`RelayClient::request_with_bearer`]: sends `body` and reads the answer
    /// as `T` (use [`serde::de::IgnoredAny`] to ignore it).
    ///
    /// # Errors
    /// As [`RelayClient::request_anonymous`].
    pub async fn request_with_bearer_as<T: DeserializeOwned, B: Serialize + ?Sized>(
        &self,
        method: Method,
        path: &str,
        bearer: &str,
        body: Option<&B>,
    ) -> Result<T, RelayError> {
        let bytes = self.send(method, path, body, Some(bearer)).await?;
        Self::decode(path, &bytes)
    }

    /// Sends an authenticated JSON request and returns the JSON answer (`Value::Null` for an
    /// empty body). Refreshes the access token when needed and retries once on `token_expired`.
    ///
    /// # Errors
    /// [`RelayError::NotLoggedIn`], [`RelayError::Refused`], transport errors.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, RelayError> {
        self.request_as(method, path, body).await
    }

    /// Sends an unauthenticated JSON request (sealed sends, public keys).
    ///
    /// # Errors
    /// [`RelayError::Refused`], transport errors.
    pub async fn request_anonymous(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, RelayError> {
        self.request_anonymous_as(method, path, body).await
    }

    /// Typed variant of [`RelayClient::request_anonymous`]: sends `body` and reads the answer as
    /// `T` (use [`serde::de::IgnoredAny`] to ignore it).
    ///
    /// # Errors
    /// As [`RelayClient::request_anonymous`], plus [`RelayError::InvalidResponse`].
    pub async fn request_anonymous_as<T: DeserializeOwned, B: Serialize + ?Sized>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, RelayError> {
        let bytes = self.send(method, path, body, None).await?;
        Self::decode(path, &bytes)
    }

    /// A sealed send (`POST /v1/messages/{account}/sealed`, authorised by the recipient's
    /// access key in the body): on a connection of its own that never carries a credential and
    /// is closed afterwards, so the relay cannot tie it to this device's authenticated traffic
    /// by the connection it came on (THREAT_MODEL, "sealed sender"). Reads the answer as `T`.
    ///
    /// # Errors
    /// As [`RelayClient::request_anonymous_as`].
    pub async fn request_sealed_as<T: DeserializeOwned, B: Serialize + ?Sized>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, RelayError> {
        let bytes =
            Self::exchange(&self.sealed, &self.base, method, path, body, None, None).await?;
        Self::decode(path, &bytes)
    }

    /// Typed variant of [`RelayClient::request`]: sends `body` and reads the answer as `T` (an
    /// empty answer reads as `null`, so `()` fits a 204; use [`serde::de::IgnoredAny`] to ignore
    /// an answer).
    ///
    /// # Errors
    /// As [`RelayClient::request`], plus [`RelayError::InvalidResponse`].
    pub async fn request_as<T: DeserializeOwned, B: Serialize + ?Sized>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, RelayError> {
        let bytes = self.send_authenticated(method, path, body).await?;
        Self::decode(path, &bytes)
    }

    /// Logs the session out on the relay and forgets it locally.
    ///
    /// # Errors
    /// [`RelayError::NotLoggedIn`], [`RelayError::Refused`], transport errors.
    pub async fn logout(&self) -> Result<(), RelayError> {
        self.request_as::<IgnoredAny, ()>(Method::POST, "/v1/logout", None)
            .await?;
        *self.session.lock().await = None;
        Ok(())
    }

    /// Proves the password again (and the TOTP code, when enabled) for the current session and
    /// returns the [`FreshAuth`] proof that unlinking, deletion, disabling TOTP, a password
    /// change and setting the recovery code need (§11.6.1).
    ///
    /// # Errors
    /// [`RelayError::InvalidCredentials`] for a wrong password (detected by OPAQUE; nothing is
    /// sent to finish), [`RelayError::Refused`] (`totp_required`, `totp_invalid`,
    /// `rate_limited`, ...), [`RelayError::NotLoggedIn`], transport errors.
    pub async fn reauthenticate(
        &self,
        password: &[u8],
        totp_code: Option<&str>,
    ) -> Result<FreshAuth, RelayError> {
        let (start, credential_request) = opaque_login_start(password)?;
        let reply: LoginStartResponse = self
            .request_as(
                Method::POST,
                "/v1/account/reauth/start",
                Some(&ReauthStartRequest { credential_request }),
            )
            .await?;
        let credential_finalization =
            opaque_login_finish(start, password, &reply.credential_response)?;
        let body = ReauthFinishRequest {
            login_id: reply.login_id,
            credential_finalization,
            totp_code: totp_code.map(str::to_owned),
        };
        let mut reply: FreshAuthResponse = self
            .request_as(Method::POST, "/v1/account/reauth/finish", Some(&body))
            .await?;
        let proof = Zeroizing::new(std::mem::take(&mut reply.fresh_auth));
        Ok(FreshAuth {
            proof,
            // Count from the request, a little early, so `is_live` never claims too much.
            expires_at: Instant::now() + Duration::from_secs(reply.expires_in.saturating_sub(5)),
        })
    }

    /// Runs an OPAQUE re-registration of `secret` through `{what}/start` and `{what}/finish`
    /// (the password or the recovery code of the logged-in account) with the proof.
    async fn reregister<T: DeserializeOwned>(
        &self,
        what: &str,
        fresh: FreshAuth,
        secret: &[u8],
    ) -> Result<T, RelayError> {
        let (start, registration_request) = opaque_registration_start(secret)?;
        let path = format!("/v1/account/{what}/start");
        let reply: CredentialStartResponse = self
            .request_as(
                Method::POST,
                &path,
                Some(&CredentialStartRequest {
                    registration_request,
                }),
            )
            .await?;
        let registration_upload =
            opaque_registration_finish(start, secret, &reply.registration_response)?;
        let path = format!("/v1/account/{what}/finish");
        let bytes = self
            .send_authenticated_with(
                Method::POST,
                &path,
                Some(&CredentialFinishRequest {
                    registration_upload,
                }),
                Some(&fresh.proof),
            )
            .await?;
        Self::decode(&path, &bytes)
    }

    /// Changes the account password (OPAQUE re-registration, §11.6.2). Every session of the
    /// account ends; this client gets the new session it returns (persist its refresh token, e.g.
    /// with `Device::persist_session`). Messages and keys are unaffected.
    ///
    /// # Errors
    /// [`RelayError::Refused`] (`fresh_auth_required`, `fresh_auth_invalid`, ...),
    /// [`RelayError::NotLoggedIn`], transport errors.
    pub async fn change_password(
        &self,
        fresh: FreshAuth,
        new_password: &[u8],
    ) -> Result<Session, RelayError> {
        let tokens: TokenResponse = self.reregister("password", fresh, new_password).await?;
        let session = Session::from_tokens(tokens);
        *self.session.lock().await = Some(session.clone());
        Ok(session)
    }

    /// Sets (or replaces) the account's recovery code (§11.6.3). The relay stores only its OPAQUE
    /// record; the previous code stops working.
    ///
    /// # Errors
    /// As [`RelayClient::change_password`].
    pub async fn set_recovery_code(
        &self,
        fresh: FreshAuth,
        code: &RecoveryCode,
    ) -> Result<(), RelayError> {
        let text = code.to_text();
        self.reregister::<IgnoredAny>("recovery", fresh, text.as_bytes())
            .await?;
        Ok(())
    }

    /// Recovers an account whose password is lost (§11.6.3): proves the recovery code with
    /// OPAQUE and sets `new_password`. Every session of the account ends and the code is used up
    /// (set a new one after logging in). Nothing else is granted: log in with the new password
    /// afterwards ([`RelayClient::login`]).
    ///
    /// # Errors
    /// [`RelayError::InvalidCredentials`] for a wrong code (or an account without one),
    /// [`RelayError::Refused`] (`totp_required`, `totp_invalid`, `rate_limited`, ...),
    /// [`RelayError::InvalidId`], transport errors.
    pub async fn recover_account(
        &self,
        identifier: LoginIdentifier<'_>,
        code: &RecoveryCode,
        new_password: &[u8],
        totp_code: Option<&str>,
    ) -> Result<(), RelayError> {
        let (username, account_id) = match identifier {
            LoginIdentifier::Username(u) => (Some(u.to_owned()), None),
            LoginIdentifier::AccountId(a) => (None, Some(parse_id("account id", a)?)),
        };
        let code = code.to_text();
        let (login, credential_request) = opaque_login_start(code.as_bytes())?;
        let (registration, registration_request) = opaque_registration_start(new_password)?;
        let body = RecoverStartRequest {
            username,
            account_id,
            credential_request,
            registration_request,
        };
        let reply: RecoverStartResponse = self
            .request_anonymous_as(Method::POST, "/v1/recover/start", Some(&body))
            .await?;
        let credential_finalization =
            opaque_login_finish(login, code.as_bytes(), &reply.credential_response)?;
        let registration_upload =
            opaque_registration_finish(registration, new_password, &reply.registration_response)?;
        let body = RecoverFinishRequest {
            login_id: reply.login_id,
            credential_finalization,
            registration_upload,
            totp_code: totp_code.map(str::to_owned),
        };
        self.request_anonymous_as::<IgnoredAny, _>(Method::POST, "/v1/recover/finish", Some(&body))
            .await?;
        // Whatever session this client held has just been revoked.
        *self.session.lock().await = None;
        Ok(())
    }

    /// Ends every session of the account, this one included, and forgets it locally.
    ///
    /// # Errors
    /// [`RelayError::NotLoggedIn`], [`RelayError::Refused`], transport errors.
    pub async fn logout_everywhere(&self) -> Result<(), RelayError> {
        self.request_as::<IgnoredAny, ()>(Method::POST, "/v1/logout/all", None)
            .await?;
        *self.session.lock().await = None;
        Ok(())
    }

    /// The account's devices, oldest first (`current` marks this one).
    ///
    /// # Errors
    /// [`RelayError::NotLoggedIn`], [`RelayError::Refused`], transport errors.
    pub async fn devices(&self) -> Result<DeviceList, RelayError> {
        self.request_as::<_, ()>(Method::GET, "/v1/devices", None)
            .await
    }

    /// Replaces a device's encrypted name (`None` clears it; the relay cannot read it).
    ///
    /// # Errors
    /// [`RelayError::InvalidId`], [`RelayError::Refused`] (`device_not_found`,
    /// `field_too_large`), [`RelayError::NotLoggedIn`], transport errors.
    pub async fn rename_device(
        &self,
        device_id: &str,
        name: Option<&[u8]>,
    ) -> Result<(), RelayError> {
        let id = parse_id("device id", device_id)?;
        let body = RenameRequest {
            name: name.map(|n| STANDARD.encode(n)),
        };
        self.request_as::<IgnoredAny, _>(
            Method::PUT,
            &format!("/v1/devices/{}/name", id.to_hex()),
            Some(&body),
        )
        .await?;
        Ok(())
    }

    /// Unlinks a device of the account (with a fresh authentication); its sessions end at once.
    ///
    /// # Errors
    /// [`RelayError::InvalidId`], [`RelayError::Refused`] (`device_not_found`,
    /// `fresh_auth_invalid`, ...), [`RelayError::NotLoggedIn`], transport errors.
    pub async fn unlink_device(&self, fresh: FreshAuth, device_id: &str) -> Result<(), RelayError> {
        let id = parse_id("device id", device_id)?;
        self.send_authenticated_with::<()>(
            Method::DELETE,
            &format!("/v1/devices/{}", id.to_hex()),
            None,
            Some(&fresh.proof),
        )
        .await?;
        Ok(())
    }

    /// Deletes the account and everything the relay stores for it (with a fresh
    /// authentication), and forgets the session.
    ///
    /// # Errors
    /// [`RelayError::Refused`] (`fresh_auth_required`, `fresh_auth_invalid`),
    /// [`RelayError::NotLoggedIn`], transport errors.
    pub async fn delete_account(&self, fresh: FreshAuth) -> Result<(), RelayError> {
        self.send_authenticated_with::<()>(Method::DELETE, "/v1/account", None, Some(&fresh.proof))
            .await?;
        *self.session.lock().await = None;
        Ok(())
    }

    /// Everything the relay stores about the account (§11.9).
    ///
    /// # Errors
    /// [`RelayError::NotLoggedIn`], [`RelayError::Refused`], transport errors.
    pub async fn export_account(&self) -> Result<AccountExport, RelayError> {
        self.request_as::<_, ()>(Method::GET, "/v1/account/export", None)
            .await
    }

    /// Starts TOTP setup: a new pending secret (for the authenticator app) that takes effect
    /// once [`RelayClient::totp_verify`] confirms a code from it.
    ///
    /// # Errors
    /// [`RelayError::Refused`] (`totp_already_enabled`), [`RelayError::NotLoggedIn`], transport
    /// errors.
    pub async fn totp_setup(&self) -> Result<TotpSetupResponse, RelayError> {
        self.request_as::<_, ()>(Method::POST, "/v1/account/totp/setup", None)
            .await
    }

    /// Enables TOTP with a code from the pending secret; from then on every login,
    /// re-authentication and recovery needs a code.
    ///
    /// # Errors
    /// [`RelayError::Refused`] (`totp_invalid`, `totp_not_set_up`, ...), transport errors.
    pub async fn totp_verify(&self, code: &str) -> Result<(), RelayError> {
        let body = TotpCodeRequest {
            code: code.to_owned(),
        };
        self.request_as::<IgnoredAny, _>(Method::POST, "/v1/account/totp/verify", Some(&body))
            .await?;
        Ok(())
    }

    /// Disables TOTP (with a fresh authentication and a current code, which may be the one the
    /// re-authentication used).
    ///
    /// # Errors
    /// [`RelayError::Refused`] (`totp_invalid`, `totp_not_enabled`, `fresh_auth_invalid`, ...),
    /// transport errors.
    pub async fn totp_disable(&self, fresh: FreshAuth, code: &str) -> Result<(), RelayError> {
        let body = TotpCodeRequest {
            code: code.to_owned(),
        };
        self.send_authenticated_with(
            Method::POST,
            "/v1/account/totp/disable",
            Some(&body),
            Some(&fresh.proof),
        )
        .await?;
        Ok(())
    }
}

/// The core's OPAQUE failure as this client's error.
fn auth_error(e: AuthError) -> RelayError {
    match e {
        AuthError::InvalidResponse(field) => RelayError::InvalidResponse(field.into()),
        _ => RelayError::InvalidCredentials,
    }
}

/// KE1 of an OPAQUE login with `password` (the core's step), and the login for KE3.
fn opaque_login_start(password: &[u8]) -> Result<(Login, String), RelayError> {
    Login::start(password, &mut opaque_rng()).map_err(auth_error)
}

/// KE3 for the relay's KE2 (base64); a wrong password is detected here.
fn opaque_login_finish(start: Login, password: &[u8], ke2: &str) -> Result<String, RelayError> {
    start.finish(password, ke2).map_err(auth_error)
}

/// The `RegistrationRequest` of an OPAQUE registration of `secret`, and the registration.
fn opaque_registration_start(secret: &[u8]) -> Result<(Registration, String), RelayError> {
    Registration::start(secret, &mut opaque_rng()).map_err(auth_error)
}

/// The `RegistrationUpload` for the relay's `RegistrationResponse` (base64).
fn opaque_registration_finish(
    start: Registration,
    secret: &[u8],
    response: &str,
) -> Result<String, RelayError> {
    start
        .finish(secret, response, &mut opaque_rng())
        .map_err(auth_error)
}
