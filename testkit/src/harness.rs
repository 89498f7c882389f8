//! The relay's router in this process, driven request by request: fresh stores on both engines,
//! a real OPAQUE client, and the same API over HTTP to a relay process ([`RemoteApi`]).
//!
//! The endpoint tests, the store conformance suite and the login bench share it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // A failure here is the test's failure.

use std::future::Future;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use haven_protocol::opaque::{HavenCipherSuite, OPAQUE_CONTEXT};
use haven_relay::db::{PgStore, SqliteStore, Store};
use haven_relay::ids::Id;
use haven_relay::limits::Limits;
use haven_relay::secrets::ServerSecrets;
use haven_relay::settings::SecretSetting;
use haven_relay::{AppState, Settings, app};
use http_body_util::BodyExt as _;
use opaque_ke::{
    ClientLogin, ClientLoginFinishParameters, ClientRegistration,
    ClientRegistrationFinishParameters, CredentialResponse, Identifiers, RegistrationResponse,
};
use rand::rngs::OsRng;
use serde_json::{Value, json};
use tower::ServiceExt as _;

use crate::TestDatabase;

/// The OPAQUE cipher suite of the relay.
pub type Cs = HavenCipherSuite;

/// The JWT key every harness uses, so tests can mint expired or forged-claims tokens.
pub const TEST_JWT_KEY: [u8; 32] = [42u8; 32];

/// Keeps what a test store lives in until the test ends (a temporary directory or a database).
#[derive(Debug)]
pub enum Guard {
    /// Nothing to clean up (a second harness sharing another's store).
    None,
    /// An SQLite store's directory.
    Dir(tempfile::TempDir),
    /// A Postgres store's database.
    Postgres(TestDatabase),
}

impl Guard {
    /// The SQLite store's directory.
    pub fn dir(&self) -> &std::path::Path {
        match self {
            Self::Dir(dir) => dir.path(),
            _ => panic!("not an SQLite harness"),
        }
    }
}

/// A fresh, empty SQLite store in a temporary directory.
pub async fn sqlite_store() -> Option<(SqliteStore, Guard)> {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("haven.db").display());
    let store = SqliteStore::connect(&url).await.unwrap();
    Some((store, Guard::Dir(dir)))
}

/// A fresh, empty Postgres store in its own database, or `None` when Postgres is absent (the
/// test is then reported as skipped, see [`crate::services`]).
pub async fn pg_store() -> Option<(PgStore, Guard)> {
    let db = TestDatabase::create().await?;
    let store = PgStore::connect(db.url()).await.unwrap();
    Some((store, Guard::Postgres(db)))
}

/// The settings every harness starts from.
pub fn test_settings() -> Settings {
    let mut s = Settings {
        jwt_secret: Some(SecretSetting::new(STANDARD.encode(TEST_JWT_KEY))),
        totp_key: Some(SecretSetting::new(crate::relay::TEST_TOTP_KEY.to_owned())),
        max_devices: 3,
        login_max_failures: 3,
        addr_login_max_failures: 50,
        metrics_listen: None,
        body_limit_bytes: 8 * 1024,
        ..Settings::default()
    };
    // Tests send and upload far more between two accounts than a person would; the tests of
    // these limits set them low again.
    s.mail.pair_sends_per_minute = 100_000;
    s.mail.pair_sends_per_day = 1_000_000;
    s.keys.uploads_per_hour = 10_000;
    s
}

/// [`test_settings`] with room for the key directory and the mailboxes: four devices, 1 MiB
/// requests, 100 claims a minute per target and 1,000 per requester, 20 one-time keys an
/// upload and 40 a device.
pub fn key_directory_settings() -> Settings {
    let mut s = test_settings();
    s.max_devices = 4;
    s.mail.max_request_bytes = 1 << 20;
    s.keys.claims_per_minute_per_target = 100;
    s.keys.claims_per_minute_per_requester = 1000;
    s.keys.max_one_time_per_upload = 20;
    s.keys.max_one_time_per_device = 40;
    s
}

/// The `envelopes` of a send's body: `content` to each of `devices`.
pub fn envelopes(devices: &[u32], content: &[u8]) -> Value {
    devices
        .iter()
        .map(|d| json!({ "device_number": d, "content": b64(content) }))
        .collect()
}

/// Standard base64, as the API's JSON bodies carry bytes.
pub fn b64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

/// A reply, its body parsed as JSON (or kept as a string when it is not JSON).
#[derive(Debug)]
pub struct Reply {
    /// The status.
    pub status: StatusCode,
    /// The headers.
    pub headers: HeaderMap,
    /// The body.
    pub body: Value,
}

impl Reply {
    /// The error code of an error reply (empty otherwise).
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }

    /// Asserts the status.
    #[track_caller]
    pub fn expect(self, status: StatusCode) -> Self {
        assert_eq!(self.status, status, "unexpected reply: {}", self.body);
        self
    }

    /// Asserts an error reply with this status and code.
    #[track_caller]
    pub fn expect_error(self, status: StatusCode, code: &str) -> Self {
        assert_eq!(self.status, status, "unexpected reply: {}", self.body);
        assert_eq!(self.code(), code, "unexpected reply: {}", self.body);
        assert!(self.body["error"]["message"].is_string());
        self
    }

    fn parse(status: StatusCode, headers: HeaderMap, bytes: &[u8]) -> Self {
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(bytes).into_owned()))
        };
        Self {
            status,
            headers,
            body,
        }
    }
}

/// A logged-in session.
#[derive(Debug, Clone)]
pub struct Tokens {
    /// Account id (hex).
    pub account_id: String,
    /// Device id (hex).
    pub device_id: String,
    /// Device number within the account.
    pub device_number: u32,
    /// Access token.
    pub access: String,
    /// Refresh token.
    pub refresh: String,
}

impl Tokens {
    /// From a register/login/refresh reply body.
    pub fn from_json(v: &Value) -> Self {
        Self {
            account_id: v["account_id"].as_str().unwrap().to_owned(),
            device_id: v["device_id"].as_str().unwrap().to_owned(),
            device_number: u32::try_from(v["device_number"].as_u64().unwrap()).unwrap(),
            access: v["access_token"].as_str().unwrap().to_owned(),
            refresh: v["refresh_token"].as_str().unwrap().to_owned(),
        }
    }
}

/// The relay's HTTP API, whatever carries it; registration and login are real OPAQUE runs.
pub trait Api: Sync {
    /// Sends a raw request.
    fn raw(&self, req: Request<Body>) -> impl Future<Output = Reply> + Send;

    /// Sends JSON (or nothing) with an optional bearer token.
    fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        token: Option<&str>,
    ) -> impl Future<Output = Reply> + Send {
        let mut builder = Request::builder().method(method).uri(path);
        if let Some(t) = token {
            builder = builder.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let body = match body {
            Some(v) => {
                builder = builder.header(header::CONTENT_TYPE, "application/json");
                Body::from(serde_json::to_vec(&v).unwrap())
            }
            None => Body::empty(),
        };
        self.raw(builder.body(body).unwrap())
    }

    /// `POST` of a JSON body without a token.
    fn post(&self, path: &str, body: Value) -> impl Future<Output = Reply> + Send {
        self.call(Method::POST, path, Some(body), None)
    }

    /// `GET` with `t`'s access token.
    fn get_as(&self, path: &str, t: &Tokens) -> impl Future<Output = Reply> + Send {
        self.call(Method::GET, path, None, Some(&t.access))
    }

    /// `POST` of a JSON body with `t`'s access token.
    fn post_as(&self, path: &str, body: Value, t: &Tokens) -> impl Future<Output = Reply> + Send {
        self.call(Method::POST, path, Some(body), Some(&t.access))
    }

    /// `PUT` of a JSON body with `t`'s access token.
    fn put_as(&self, path: &str, body: Value, t: &Tokens) -> impl Future<Output = Reply> + Send {
        self.call(Method::PUT, path, Some(body), Some(&t.access))
    }

    /// Full OPAQUE registration with a fresh device; returns the reply of register/finish.
    fn try_register(
        &self,
        username: Option<&str>,
        password: &str,
    ) -> impl Future<Output = Reply> + Send {
        self.try_register_with_key(username, password, &[1u8; 32])
    }

    /// Like [`Self::try_register`] with the given device identity key.
    fn try_register_with_key(
        &self,
        username: Option<&str>,
        password: &str,
        identity_key: &[u8],
    ) -> impl Future<Output = Reply> + Send {
        async move {
            let start = ClientRegistration::<Cs>::start(&mut OsRng, password.as_bytes()).unwrap();
            let request = start.message.serialize();
            let reply = self
                .post(
                    "/v1/register/start",
                    json!({ "registration_request": b64(&request) }),
                )
                .await
                .expect(StatusCode::OK);
            let response = STANDARD
                .decode(reply.body["registration_response"].as_str().unwrap())
                .unwrap();
            // Sizes as specified in PROTOCOL.md §11.3.
            assert_eq!(request.len(), 32);
            assert_eq!(response.len(), 64);
            let response = RegistrationResponse::<Cs>::deserialize(&response).unwrap();
            let finish = start
                .state
                .finish(
                    &mut OsRng,
                    password.as_bytes(),
                    response,
                    ClientRegistrationFinishParameters::default(),
                )
                .unwrap();
            let upload = finish.message.serialize();
            assert_eq!(upload.len(), 192);
            let mut body = json!({
                "registration_id": reply.body["registration_id"],
                "registration_upload": b64(&upload),
                "device": { "identity_key": b64(identity_key), "name": b64(b"encrypted-name") },
            });
            if let Some(name) = username {
                body["username"] = json!(name);
            }
            self.post("/v1/register/finish", body).await
        }
    }

    /// Registers (expecting success) and returns the session.
    fn register(
        &self,
        username: Option<&str>,
        password: &str,
    ) -> impl Future<Output = Tokens> + Send {
        async move {
            let reply = self
                .try_register(username, password)
                .await
                .expect(StatusCode::CREATED);
            Tokens::from_json(&reply.body)
        }
    }

    /// Full OPAQUE login. `identifier` is `{"username": …}` or `{"account_id": …}`; `device` is
    /// the extra login/finish fields (`device_id` or `device`, optionally `totp_code`).
    fn try_login(
        &self,
        identifier: Value,
        password: &str,
        device: Value,
    ) -> impl Future<Output = Reply> + Send {
        async move {
            let start = ClientLogin::<Cs>::start(&mut OsRng, password.as_bytes()).unwrap();
            let request = start.message.serialize();
            let state = start.state;
            let mut body = identifier;
            body["credential_request"] = json!(b64(&request));
            let reply = self.post("/v1/login/start", body).await;
            if reply.status != StatusCode::OK {
                return reply;
            }
            let response = STANDARD
                .decode(reply.body["credential_response"].as_str().unwrap())
                .unwrap();
            assert_eq!(request.len(), 96);
            assert_eq!(response.len(), 320);
            let response = CredentialResponse::<Cs>::deserialize(&response).unwrap();
            let params = ClientLoginFinishParameters::new(
                Some(OPAQUE_CONTEXT),
                Identifiers::default(),
                None,
            );
            // A wrong password fails on the client already; send a well-formed but wrong KE3 so
            // the server sees (and counts) the failure, as a malicious client would.
            let finalization = match state.finish(password.as_bytes(), response, params) {
                Ok(done) => {
                    assert_eq!(done.message.serialize().len(), 64);
                    done.message.serialize().to_vec()
                }
                Err(_) => vec![0u8; 64],
            };
            let mut finish = device;
            finish["login_id"] = reply.body["login_id"].clone();
            finish["credential_finalization"] = json!(b64(&finalization));
            self.post("/v1/login/finish", finish).await
        }
    }

    /// A logged-in send by `from` of `content` to the listed devices of the account `to`.
    fn send_as(
        &self,
        from: &Tokens,
        to: &str,
        id: &Id,
        devices: &[u32],
        content: &[u8],
    ) -> impl Future<Output = Reply> + Send {
        let body = json!({ "message_id": id, "envelopes": envelopes(devices, content) });
        let path = format!("/v1/messages/{to}");
        async move { self.post_as(&path, body, from).await }
    }

    /// Logs a new device (identity key `[2; 32]`) into `t`'s account (expecting success); the
    /// relay numbers it after the account's others.
    fn add_device(&self, t: &Tokens, password: &str) -> impl Future<Output = Tokens> + Send {
        let account = t.account_id.clone();
        async move {
            let reply = self
                .try_login(
                    json!({ "account_id": account }),
                    password,
                    json!({ "device": { "identity_key": b64(&[2u8; 32]) } }),
                )
                .await
                .expect(StatusCode::OK);
            Tokens::from_json(&reply.body)
        }
    }

    /// Logs an existing device in again (expecting success).
    fn login_existing(&self, t: &Tokens, password: &str) -> impl Future<Output = Tokens> + Send {
        let (account, device) = (t.account_id.clone(), t.device_id.clone());
        async move {
            let reply = self
                .try_login(
                    json!({ "account_id": account }),
                    password,
                    json!({ "device_id": device }),
                )
                .await
                .expect(StatusCode::OK);
            Tokens::from_json(&reply.body)
        }
    }

    /// A full OPAQUE re-authentication of `t`'s session with `password` (and a TOTP code)
    /// (PROTOCOL.md §11.6.1); returns the reply of `reauth/finish` (or of `reauth/start` when
    /// that fails).
    fn try_reauth(
        &self,
        t: &Tokens,
        password: &str,
        totp_code: Option<&str>,
    ) -> impl Future<Output = Reply> + Send {
        let access = t.access.clone();
        let totp_code = totp_code.map(str::to_owned);
        async move {
            let start = ClientLogin::<Cs>::start(&mut OsRng, password.as_bytes()).unwrap();
            let reply = self
                .call(
                    Method::POST,
                    "/v1/account/reauth/start",
                    Some(json!({ "credential_request": b64(&start.message.serialize()) })),
                    Some(&access),
                )
                .await;
            if reply.status != StatusCode::OK {
                return reply;
            }
            let response = STANDARD
                .decode(reply.body["credential_response"].as_str().unwrap())
                .unwrap();
            let response = CredentialResponse::<Cs>::deserialize(&response).unwrap();
            let params = ClientLoginFinishParameters::new(
                Some(OPAQUE_CONTEXT),
                Identifiers::default(),
                None,
            );
            // A wrong password fails on the client; send a well-formed wrong KE3 so the relay
            // counts the failure.
            let finalization = match start.state.finish(password.as_bytes(), response, params) {
                Ok(done) => done.message.serialize().to_vec(),
                Err(_) => vec![0u8; 64],
            };
            let mut body = json!({
                "login_id": reply.body["login_id"],
                "credential_finalization": b64(&finalization),
            });
            if let Some(code) = totp_code {
                body["totp_code"] = json!(code);
            }
            self.call(
                Method::POST,
                "/v1/account/reauth/finish",
                Some(body),
                Some(&access),
            )
            .await
        }
    }

    /// A fresh-authentication proof for `t`'s session (expecting success).
    fn fresh_auth(&self, t: &Tokens, password: &str) -> impl Future<Output = String> + Send {
        async move {
            let reply = self
                .try_reauth(t, password, None)
                .await
                .expect(StatusCode::OK);
            reply.body["fresh_auth"].as_str().unwrap().to_owned()
        }
    }

    /// Unlinks the device `device_id` from `t`'s account, with a fresh-authentication proof
    /// (`password` is the account's).
    fn unlink_device(
        &self,
        t: &Tokens,
        device_id: &str,
        password: &str,
    ) -> impl Future<Output = Reply> + Send {
        async move {
            let proof = self.fresh_auth(t, password).await;
            let path = format!("/v1/devices/{device_id}");
            self.call_fresh(Method::DELETE, &path, None, &t.access, Some(&proof))
                .await
        }
    }

    /// Sends JSON (or nothing) with `token` and, if given, the `Haven-Fresh-Auth` header.
    fn call_fresh(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        token: &str,
        proof: Option<&str>,
    ) -> impl Future<Output = Reply> + Send {
        let mut builder = Request::builder()
            .method(method)
            .uri(path)
            .header(header::AUTHORIZATION, format!("Bearer {token}"));
        if let Some(p) = proof {
            builder = builder.header("haven-fresh-auth", p);
        }
        let body = match body {
            Some(v) => {
                builder = builder.header(header::CONTENT_TYPE, "application/json");
                Body::from(serde_json::to_vec(&v).unwrap())
            }
            None => Body::empty(),
        };
        self.raw(builder.body(body).unwrap())
    }
}

/// An in-process relay on one store, driven through its router.
pub struct Harness<S: Store> {
    /// The router.
    pub app: Router,
    /// The application state behind it.
    pub state: AppState<S>,
    /// The store.
    pub store: S,
    /// What the store lives in.
    pub guard: Guard,
}

impl Harness<SqliteStore> {
    /// On a fresh SQLite store.
    pub async fn sqlite() -> Option<Self> {
        let (store, guard) = sqlite_store().await?;
        Some(Self::with_settings(store, guard, test_settings()).await)
    }
}

impl Harness<PgStore> {
    /// On a fresh Postgres database, or `None` when Postgres is absent (reported as skipped).
    pub async fn postgres() -> Option<Self> {
        let (store, guard) = pg_store().await?;
        Some(Self::with_settings(store, guard, test_settings()).await)
    }
}

impl<S: Store> Harness<S> {
    /// On `store` with `settings` and in-memory rate limits.
    pub async fn with_settings(store: S, guard: Guard, settings: Settings) -> Self {
        Self::with_limits(store, guard, settings, Limits::in_memory()).await
    }

    /// On `store` with `settings` and `limits` (a second instance shares a store with another
    /// harness, with [`Guard::None`]).
    pub async fn with_limits(store: S, guard: Guard, settings: Settings, limits: Limits) -> Self {
        let secrets = ServerSecrets::load(&settings, &store).await.unwrap();
        let state = AppState::new(store.clone(), settings, secrets, limits);
        Self {
            app: app(state.clone()),
            state,
            store,
            guard,
        }
    }
}

impl<S: Store> Api for Harness<S> {
    async fn raw(&self, req: Request<Body>) -> Reply {
        let response = self.app.clone().oneshot(req).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        Reply::parse(status, headers, &bytes)
    }
}

/// The same API over real HTTP, to a relay listening at `base` (a process or an in-process
/// relay on a TCP listener).
#[derive(Debug, Clone)]
pub struct RemoteApi {
    base: String,
    client: reqwest::Client,
}

impl RemoteApi {
    /// To the relay at `base` (`http://host:port`).
    pub fn new(base: impl Into<String>) -> Self {
        Self {
            base: base.into(),
            client: reqwest::Client::new(),
        }
    }
}

impl Api for RemoteApi {
    async fn raw(&self, req: Request<Body>) -> Reply {
        let (parts, body) = req.into_parts();
        let bytes = body.collect().await.unwrap().to_bytes();
        let path = parts
            .uri
            .path_and_query()
            .map_or("/", axum::http::uri::PathAndQuery::as_str);
        let response = self
            .client
            .request(parts.method, format!("{}{path}", self.base))
            .headers(parts.headers)
            .body(bytes)
            .send()
            .await
            .unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.unwrap();
        Reply::parse(status, headers, &bytes)
    }
}

/// Counts a table's rows: tests prove a refused request changed nothing.
pub trait Rows {
    /// The number of rows of `table`.
    fn rows(&self, table: &str) -> impl Future<Output = i64> + Send;
}

impl Rows for SqliteStore {
    async fn rows(&self, table: &str) -> i64 {
        sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}"))
            .fetch_one(self.pool())
            .await
            .unwrap()
    }
}

impl Rows for PgStore {
    async fn rows(&self, table: &str) -> i64 {
        sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}"))
            .fetch_one(self.pool())
            .await
            .unwrap()
    }
}

/// Declares each listed `async fn name<S: Store>(h: Harness<S>)` as a test on SQLite and on
/// Postgres (reported as skipped when Postgres is absent), in modules `sqlite` and `postgres`.
/// With `settings = path;` first, the harnesses run with the settings that function returns
/// (the path as seen from inside those modules, e.g. `super::settings`).
#[macro_export]
macro_rules! on_both_backends {
    (settings = $settings:path; $($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let (store, guard) = $crate::harness::sqlite_store().await.unwrap();
                    let h = $crate::harness::Harness::with_settings(store, guard, $settings()).await;
                    super::$name(h).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some((store, guard)) = $crate::harness::pg_store().await else { return };
                    let h = $crate::harness::Harness::with_settings(store, guard, $settings()).await;
                    super::$name(h).await;
                }
            )*
        }
    };
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let h = $crate::harness::Harness::sqlite().await.unwrap();
                    super::$name(h).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(h) = $crate::harness::Harness::postgres().await else { return };
                    super::$name(h).await;
                }
            )*
        }
    };
}
