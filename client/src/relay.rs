//! The relay's HTTP API from the device side: OPAQUE registration and login, transparent token
//! refresh, and authenticated JSON requests (docs/PROTOCOL.md §11).
//!
//! The password never leaves this module in any reusable form: only OPAQUE messages are sent.
//! Tokens are held in zeroizing strings and never logged. An access token is refreshed shortly
//! before it expires and, once, after the relay answers `token_expired`.

use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use haven_protocol::opaque::opaque_ke::{
    ClientLogin, ClientLoginFinishParameters, ClientRegistration,
    ClientRegistrationFinishParameters, CredentialResponse, Identifiers, RegistrationResponse,
};
use haven_protocol::opaque::{HavenCipherSuite, OPAQUE_CONTEXT};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::Mutex;
use zeroize::Zeroizing;

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
        /// Extra fields of the error object (e.g. the device lists of a 409), if any.
        details: Option<Value>,
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

/// The relay's `TokenResponse` (§11.7).
#[derive(Deserialize)]
struct TokenResponse {
    account_id: String,
    device_id: String,
    #[serde(default)]
    device_number: Option<u32>,
    access_token: String,
    refresh_token: String,
    expires_in: u64,
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
            account_id: t.account_id,
            device_id: t.device_id,
            device_number: t.device_number,
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

    async fn send_json(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        bearer: Option<&str>,
    ) -> Result<(StatusCode, Value), RelayError> {
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
        let value: Value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .map_err(|e| RelayError::InvalidResponse(format!("{path}: {e}")))?
        };
        if status.is_success() {
            return Ok((status, value));
        }
        let err = value.get("error");
        let text = |k: &str| {
            err.and_then(|e| e.get(k))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        let details = err.and_then(|e| {
            let obj = e.as_object()?;
            let extra: serde_json::Map<String, Value> = obj
                .iter()
                .filter(|(k, _)| k.as_str() != "code" && k.as_str() != "message")
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            (!extra.is_empty()).then_some(Value::Object(extra))
        });
        Err(RelayError::Refused {
            status: status.as_u16(),
            code: text("code"),
            message: text("message"),
            details,
        })
    }

    fn parse<T: DeserializeOwned>(path: &str, value: Value) -> Result<T, RelayError> {
        serde_json::from_value(value)
            .map_err(|e| RelayError::InvalidResponse(format!("{path}: {e}")))
    }

    fn b64_field(value: &Value, field: &str) -> Result<Vec<u8>, RelayError> {
        value
            .get(field)
            .and_then(Value::as_str)
            .and_then(|s| STANDARD.decode(s).ok())
            .ok_or_else(|| RelayError::InvalidResponse(format!("missing or invalid {field}")))
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
        let request = STANDARD.encode(start.message.serialize());
        let (_, reply) = self
            .send_json(
                Method::POST,
                "/v1/register/start",
                Some(&json!({ "registration_request": request })),
                None,
            )
            .await?;
        let response = Self::b64_field(&reply, "registration_response")?;
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
        let mut device = json!({ "identity_key": STANDARD.encode(identity_key) });
        if let Some(name) = device_name {
            device["name"] = json!(STANDARD.encode(name));
        }
        let mut body = json!({
            "registration_id": reply.get("registration_id").cloned().unwrap_or(Value::Null),
            "registration_upload": STANDARD.encode(finish.message.serialize()),
            "device": device,
        });
        if let Some(name) = username {
            body["username"] = json!(name);
        }
        let (_, tokens) = self
            .send_json(Method::POST, "/v1/register/finish", Some(&body), None)
            .await?;
        let session = Session::from_tokens(Self::parse("/v1/register/finish", tokens)?);
        *self.session.lock().await = Some(session.clone());
        Ok(session)
    }

    /// Logs in with OPAQUE as an existing or a new device.
    ///
    /// # Errors
    /// [`RelayError::InvalidCredentials`] for a wrong password, [`RelayError::Refused`]
    /// (`totp_required`, `device_limit`, `rate_limited`, ...), transport errors.
    pub async fn login(
        &self,
        identifier: LoginIdentifier<'_>,
        password: &[u8],
        device: LoginDevice<'_>,
        totp_code: Option<&str>,
    ) -> Result<Session, RelayError> {
        let start = ClientLogin::<HavenCipherSuite>::start(&mut opaque_rng(), password)
            .map_err(|_| RelayError::InvalidCredentials)?;
        let mut body = match identifier {
            LoginIdentifier::Username(u) => json!({ "username": u }),
            LoginIdentifier::AccountId(a) => json!({ "account_id": a }),
        };
        body["credential_request"] = json!(STANDARD.encode(start.message.serialize()));
        let (_, reply) = self
            .send_json(Method::POST, "/v1/login/start", Some(&body), None)
            .await?;
        let response = Self::b64_field(&reply, "credential_response")?;
        let response = CredentialResponse::<HavenCipherSuite>::deserialize(&response)
            .map_err(|_| RelayError::InvalidResponse("credential_response".into()))?;
        let params =
            ClientLoginFinishParameters::new(Some(OPAQUE_CONTEXT), Identifiers::default(), None);
        let finish = start
            .state
            .finish(password, response, params)
            .map_err(|_| RelayError::InvalidCredentials)?;
        let mut body = match device {
            LoginDevice::Existing(id) => json!({ "device_id": id }),
            LoginDevice::New { identity_key, name } => {
                let mut d = json!({ "identity_key": STANDARD.encode(identity_key) });
                if let Some(name) = name {
                    d["name"] = json!(STANDARD.encode(name));
                }
                json!({ "device": d })
            }
        };
        body["login_id"] = reply.get("login_id").cloned().unwrap_or(Value::Null);
        body["credential_finalization"] = json!(STANDARD.encode(finish.message.serialize()));
        if let Some(code) = totp_code {
            body["totp_code"] = json!(code);
        }
        let (_, tokens) = self
            .send_json(Method::POST, "/v1/login/finish", Some(&body), None)
            .await?;
        let session = Session::from_tokens(Self::parse("/v1/login/finish", tokens)?);
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
        let body = json!({ "refresh_token": current.refresh_token.as_str() });
        let result = self
            .send_json(Method::POST, "/v1/token/refresh", Some(&body), None)
            .await;
        match result {
            Ok((_, tokens)) => {
                let session = Session::from_tokens(Self::parse("/v1/token/refresh", tokens)?);
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
        Ok(self.send_json(method, path, body, Some(bearer)).await?.1)
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
        let token = self.access_token().await?;
        match self
            .send_json(method.clone(), path, body, Some(&token))
            .await
        {
            Err(err) if err.code() == Some("token_expired") => {
                let token = self.refresh().await?.access_token;
                Ok(self.send_json(method, path, body, Some(&token)).await?.1)
            }
            other => Ok(other?.1),
        }
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
        Ok(self.send_json(method, path, body, None).await?.1)
    }

    /// Typed variant of [`RelayClient::request`].
    ///
    /// # Errors
    /// As [`RelayClient::request`], plus [`RelayError::InvalidResponse`].
    pub async fn request_as<T: DeserializeOwned, B: Serialize + ?Sized>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, RelayError> {
        let body = body
            .map(serde_json::to_value)
            .transpose()
            .map_err(|e| RelayError::InvalidResponse(e.to_string()))?;
        let value = self.request(method, path, body.as_ref()).await?;
        Self::parse(path, value)
    }

    /// Logs the session out on the relay and forgets it locally.
    ///
    /// # Errors
    /// [`RelayError::NotLoggedIn`], [`RelayError::Refused`], transport errors.
    pub async fn logout(&self) -> Result<(), RelayError> {
        self.request(Method::POST, "/v1/logout", None).await?;
        *self.session.lock().await = None;
        Ok(())
    }
}
