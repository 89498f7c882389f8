//! The relay's HTTP API from the device side: OPAQUE registration and login, transparent token
//! refresh, and authenticated JSON requests (docs/PROTOCOL.md §11). Bodies are the types of
//! `haven_protocol::api`, the ones the relay itself serves; [`RelayClient::request_as`] and its
//! siblings send and read them.
//!
//! The password never leaves this module in any reusable form: only OPAQUE messages are sent.
//! Tokens are held in zeroizing strings and never logged. An access token is refreshed shortly
//! before it expires and, once, after the relay answers `token_expired`.

use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use haven_protocol::api::Id;
use haven_protocol::api::auth::{
    LoginFinishRequest, LoginStartRequest, LoginStartResponse, NewDeviceBody, RefreshRequest,
    RegisterFinishRequest, RegisterStartRequest, RegisterStartResponse, TokenResponse,
};
use haven_protocol::api::error::{DeviceMismatch, ErrorBody};
use haven_protocol::opaque::opaque_ke::{
    ClientLogin, ClientLoginFinishParameters, ClientRegistration,
    ClientRegistrationFinishParameters, CredentialResponse, Identifiers, RegistrationResponse,
};
use haven_protocol::opaque::{HavenCipherSuite, OPAQUE_CONTEXT};
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
    fn from_tokens(t: TokenResponse) -> Self {
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
        Ok(Self {
            http,
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
        let mut req = self.http.request(method, format!("{}{}", self.base, path));
        if let Some(token) = bearer {
            req = req.bearer_auth(token);
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

    /// Decodes a base64 field of an answer.
    fn b64_field(field: &str, text: &str) -> Result<Vec<u8>, RelayError> {
        STANDARD
            .decode(text)
            .map_err(|_| RelayError::InvalidResponse(format!("missing or invalid {field}")))
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
        let start = ClientRegistration::<HavenCipherSuite>::start(&mut opaque_rng(), password)
            .map_err(|_| RelayError::InvalidCredentials)?;
        let request = RegisterStartRequest {
            registration_request: STANDARD.encode(start.message.serialize()),
        };
        let path = "/v1/register/start";
        let reply: RegisterStartResponse = Self::decode(
            path,
            &self.send(Method::POST, path, Some(&request), None).await?,
        )?;
        let response = Self::b64_field("registration_response", &reply.registration_response)?;
        let response = RegistrationResponse::<HavenCipherSuite>::deserialize(&response)
            .map_err(|_| RelayError::InvalidResponse("registration_response".into()))?;
        let finish = start
            .state
            .finish(
                &mut opaque_rng(),
                password,
                response,
                ClientRegistrationFinishParameters::default(),
            )
            .map_err(|_| RelayError::InvalidResponse("registration_response".into()))?;
        let body = RegisterFinishRequest {
            registration_id: reply.registration_id,
            registration_upload: STANDARD.encode(finish.message.serialize()),
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
        let start = ClientLogin::<HavenCipherSuite>::start(&mut opaque_rng(), password)
            .map_err(|_| RelayError::InvalidCredentials)?;
        let body = LoginStartRequest {
            username,
            account_id,
            credential_request: STANDARD.encode(start.message.serialize()),
        };
        let path = "/v1/login/start";
        let reply: LoginStartResponse = Self::decode(
            path,
            &self.send(Method::POST, path, Some(&body), None).await?,
        )?;
        let response = Self::b64_field("credential_response", &reply.credential_response)?;
        let response = CredentialResponse::<HavenCipherSuite>::deserialize(&response)
            .map_err(|_| RelayError::InvalidResponse("credential_response".into()))?;
        let params =
            ClientLoginFinishParameters::new(Some(OPAQUE_CONTEXT), Identifiers::default(), None);
        let finish = start
            .state
            .finish(password, response, params)
            .map_err(|_| RelayError::InvalidCredentials)?;
        let new_device = match device {
            LoginDevice::Existing(_) => None,
            LoginDevice::New { identity_key, name } => Some(NewDeviceBody {
                identity_key: STANDARD.encode(identity_key),
                name: name.map(|n| STANDARD.encode(n)),
            }),
        };
        let body = LoginFinishRequest {
            login_id: reply.login_id,
            credential_finalization: STANDARD.encode(finish.message.serialize()),
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
        let token = self.access_token().await?;
        match self.send(method.clone(), path, body, Some(&token)).await {
            Err(err) if err.code() == Some("token_expired") => {
                let token = self.refresh().await?.access_token;
                self.send(method, path, body, Some(&token)).await
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
}
