//! Test support shared by the integration tests and the login bench: fresh stores on both
//! backends, an in-process harness around `app`, and a real OPAQUE client.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    unreachable_pub
)]

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use haven_protocol::opaque::{HavenCipherSuite, OPAQUE_CONTEXT};
use haven_relay::ids::Id;
use haven_relay::limits::Limits;
use haven_relay::secrets::ServerSecrets;
use haven_relay::settings::SecretSetting;
use haven_relay::store::{PgStore, SqliteStore, Store};
use haven_relay::{AppState, Settings, app};
use http_body_util::BodyExt as _;
use opaque_ke::{
    ClientLogin, ClientLoginFinishParameters, ClientRegistration,
    ClientRegistrationFinishParameters, CredentialResponse, Identifiers, RegistrationResponse,
};
use rand::rngs::OsRng;
use serde_json::{Value, json};
use tower::ServiceExt as _;

pub type Cs = HavenCipherSuite;

/// The JWT key every harness uses, so tests can mint expired or forged-claims tokens.
pub const TEST_JWT_KEY: [u8; 32] = [42u8; 32];

/// Deletes what a test store created when dropped (temp dir or Postgres database).
pub enum Guard {
    /// Nothing to clean up (a second harness sharing another's store).
    None,
    Dir(tempfile::TempDir),
    Postgres {
        admin_url: String,
        db: String,
    },
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Guard::Postgres { admin_url, db } = self {
            let (admin_url, db) = (admin_url.clone(), db.clone());
            // Drop may run inside a runtime (or during a panic): use a fresh thread and runtime.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async {
                    use sqlx::Connection as _;
                    if let Ok(mut conn) = sqlx::PgConnection::connect(&admin_url).await {
                        let sql = format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)");
                        let _ = sqlx::query(&sql).execute(&mut conn).await;
                    }
                });
            })
            .join();
        }
    }
}

pub async fn sqlite_store() -> Option<(SqliteStore, Guard)> {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("haven.db").display());
    let store = SqliteStore::connect(&url).await.unwrap();
    Some((store, Guard::Dir(dir)))
}

/// A fresh Postgres database, or `None` (with a message) when `HAVEN_TEST_POSTGRES_URL` is unset.
pub async fn pg_database() -> Option<(String, Guard)> {
    let Ok(admin_url) = std::env::var("HAVEN_TEST_POSTGRES_URL") else {
        println!("skipped: HAVEN_TEST_POSTGRES_URL is not set, Postgres test not run");
        return None;
    };
    use sqlx::Connection as _;
    let db = format!("haven_test_{}", Id::random().to_hex());
    let mut conn = sqlx::PgConnection::connect(&admin_url).await.unwrap();
    sqlx::query(&format!("CREATE DATABASE {db}"))
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    let url = with_database(&admin_url, &db);
    Some((url, Guard::Postgres { admin_url, db }))
}

/// Replaces the database name (the path) of a Postgres URL.
pub fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let host_end = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    let mut out = format!("{}/{db}", &base[..host_end]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

pub async fn pg_store() -> Option<(PgStore, Guard)> {
    let (url, guard) = pg_database().await?;
    let store = PgStore::connect(&url).await.unwrap();
    Some((store, guard))
}

pub fn test_settings() -> Settings {
    Settings {
        jwt_secret: Some(SecretSetting::new(STANDARD.encode(TEST_JWT_KEY))),
        max_devices: 3,
        login_max_failures: 3,
        addr_login_max_failures: 50,
        metrics_listen: None,
        body_limit_bytes: 8 * 1024,
        ..Settings::default()
    }
}

/// An in-process relay on one store.
pub struct Harness<S: Store> {
    pub app: Router,
    pub state: AppState<S>,
    pub store: S,
    pub guard: Guard,
}

impl Harness<SqliteStore> {
    pub async fn sqlite() -> Option<Self> {
        let (store, guard) = sqlite_store().await?;
        Some(Self::with_settings(store, guard, test_settings()).await)
    }
}

impl Harness<PgStore> {
    pub async fn postgres() -> Option<Self> {
        let (store, guard) = pg_store().await?;
        Some(Self::with_settings(store, guard, test_settings()).await)
    }
}

/// A JSON reply.
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Reply {
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }

    #[track_caller]
    pub fn expect(self, status: StatusCode) -> Self {
        assert_eq!(self.status, status, "unexpected reply: {}", self.body);
        self
    }

    #[track_caller]
    pub fn expect_error(self, status: StatusCode, code: &str) -> Self {
        assert_eq!(self.status, status, "unexpected reply: {}", self.body);
        assert_eq!(self.code(), code, "unexpected reply: {}", self.body);
        assert!(self.body["error"]["message"].is_string());
        self
    }
}

/// A logged-in session.
#[derive(Debug, Clone)]
pub struct Tokens {
    pub account_id: String,
    pub device_id: String,
    pub device_number: u32,
    pub access: String,
    pub refresh: String,
}

impl Tokens {
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

pub fn b64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

impl<S: Store> Harness<S> {
    pub async fn with_settings(store: S, guard: Guard, settings: Settings) -> Self {
        let secrets = ServerSecrets::load(&settings, &store).await.unwrap();
        let state = AppState::new(store.clone(), settings, secrets, Limits::in_memory());
        Self {
            app: app(state.clone()),
            state,
            store,
            guard,
        }
    }

    /// Sends a raw request.
    pub async fn raw(&self, req: Request<Body>) -> Reply {
        let response = self.app.clone().oneshot(req).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        Reply {
            status,
            headers,
            body,
        }
    }

    /// Sends JSON (or nothing) with an optional bearer token.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        token: Option<&str>,
    ) -> Reply {
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
        self.raw(builder.body(body).unwrap()).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Reply {
        self.call(Method::POST, path, Some(body), None).await
    }

    /// Full OPAQUE registration with a fresh device; returns the reply of register/finish.
    pub async fn try_register(&self, username: Option<&str>, password: &str) -> Reply {
        self.try_register_with_key(username, password, &[1u8; 32])
            .await
    }

    /// Like [`Self::try_register`] with the given device identity key.
    pub async fn try_register_with_key(
        &self,
        username: Option<&str>,
        password: &str,
        identity_key: &[u8],
    ) -> Reply {
        let start = ClientRegistration::<Cs>::start(&mut OsRng, password.as_bytes()).unwrap();
        let reply = self
            .post(
                "/v1/register/start",
                json!({
                    "registration_request": b64(&start.message.serialize()),
                }),
            )
            .await
            .expect(StatusCode::OK);
        let response = STANDARD
            .decode(reply.body["registration_response"].as_str().unwrap())
            .unwrap();
        // Sizes as specified in PROTOCOL.md §11.3.
        assert_eq!(start.message.serialize().len(), 32);
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
        assert_eq!(finish.message.serialize().len(), 192);
        let mut body = json!({
            "registration_id": reply.body["registration_id"],
            "registration_upload": b64(&finish.message.serialize()),
            "device": { "identity_key": b64(identity_key), "name": b64(b"encrypted-name") },
        });
        if let Some(name) = username {
            body["username"] = json!(name);
        }
        self.post("/v1/register/finish", body).await
    }

    pub async fn register(&self, username: Option<&str>, password: &str) -> Tokens {
        let reply = self
            .try_register(username, password)
            .await
            .expect(StatusCode::CREATED);
        Tokens::from_json(&reply.body)
    }

    /// Full OPAQUE login. `identifier` is `{"username": …}` or `{"account_id": …}`; `device` is
    /// the extra login/finish fields (`device_id` or `device`, optionally `totp_code`).
    pub async fn try_login(&self, identifier: Value, password: &str, device: Value) -> Reply {
        let start = ClientLogin::<Cs>::start(&mut OsRng, password.as_bytes()).unwrap();
        let mut body = identifier;
        body["credential_request"] = json!(b64(&start.message.serialize()));
        let reply = self.post("/v1/login/start", body).await;
        if reply.status != StatusCode::OK {
            return reply;
        }
        let response = STANDARD
            .decode(reply.body["credential_response"].as_str().unwrap())
            .unwrap();
        assert_eq!(start.message.serialize().len(), 96);
        assert_eq!(response.len(), 320);
        let response = CredentialResponse::<Cs>::deserialize(&response).unwrap();
        let params =
            ClientLoginFinishParameters::new(Some(OPAQUE_CONTEXT), Identifiers::default(), None);
        // A wrong password fails on the client already; send a well-formed but wrong KE3 so the
        // server sees (and counts) the failure, as a malicious client would.
        let finalization = match start.state.finish(password.as_bytes(), response, params) {
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

    pub async fn login_existing(&self, t: &Tokens, password: &str) -> Tokens {
        let reply = self
            .try_login(
                json!({"account_id": t.account_id}),
                password,
                json!({"device_id": t.device_id}),
            )
            .await
            .expect(StatusCode::OK);
        Tokens::from_json(&reply.body)
    }
}

/// Declares each listed `async fn name<S: Store>(h: Harness<S>)` as a test on SQLite and on
/// Postgres (skipped without `HAVEN_TEST_POSTGRES_URL`).
#[allow(unused_macros)] // Only the endpoint tests use it.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(h) = crate::common::Harness::sqlite().await else { return };
                    super::$name(h).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(h) = crate::common::Harness::postgres().await else { return };
                    super::$name(h).await;
                }
            )*
        }
    };
}
