//! A hostile relay for tests: a real relay (`haven-testkit`, in this process) behind an HTTP
//! proxy that lies the way a compromised relay would (THREAT_MODEL "Who is who", PROTOCOL
//! §15.6). Clients talk to [`HostileRelay::url`] over REST (the proxy does not carry
//! WebSockets); the test switches attacks on at run time, after setting up honest state, with
//! [`HostileRelay::attack`] or `POST {control}/attack` (the same [`Attack`] as JSON), and asks
//! `GET {control}/captured` whether anything was ever sent to a device the proxy made up.
//!
//! | attack | what the proxy does |
//! |---|---|
//! | `inject_device` | sends to the account get 409 `mismatched_devices` naming a device that does not exist (99), and the key directory serves a valid self-signed bundle for it |
//! | `forge_bundle` | the key directory serves, for each real device of the account, a valid bundle under an identity key the proxy made |
//! | `forge_certificate` | issues a sender certificate naming a device of `account` with a key the proxy chose (it holds the relay's certificate key) and drops a sealed message under it into `victim`'s mailbox |
//! | `rollback` | the account's device list is served as the first one the proxy ever saw |
//! | `password_device` | logs in to the account with its password as a new device (the relay still allows it), uploads its keys and, with `victim`, sends from it |
//!
//! Test support only: the proxy keeps every forged key in memory and logs nothing secret.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use haven_client::relay::{LoginDevice, LoginIdentifier};
use haven_client::{ClientStore, Device, RelayClient};
use haven_client_core::device::send::verify_bundles;
use haven_client_core::device::state::{StoredSession, pin_relay_key};
use haven_client_core::device::{CONTENT_SESSION, keys};
use haven_protocol::api::Id;
use haven_protocol::api::certificate::CertificateKeyResponse;
use haven_protocol::api::keys::{BundleBody, BundlesResponse, SignedKeyBody};
use haven_protocol::content::{Body as ContentBody, Content, Conversation};
use haven_sdk::identity::IdentityKeyPair;
use haven_sdk::prekeys::{KemPreKey, KemPreKeyKind, PreKeyBundle, SignedPreKey};
use haven_sdk::sealed_sender::{SenderCertificate, seal_sender};
use haven_sdk::session_cipher;
use haven_sdk::store::{DeviceAddress, IdentityStore, InMemoryProtocolStore};
use haven_testkit::{InProcessRelay, RelayConfig};
use serde::Deserialize;
use serde_json::json;

/// The device number an `inject_device` attack makes up when the test names none.
pub const INJECTED_DEVICE: u32 = 99;

/// Largest request body the proxy reads (attachments go to the blob API in parts).
const MAX_BODY: usize = 64 * 1024 * 1024;

/// Path prefix of the control API on the proxy's own port.
const CONTROL: &str = "/hostile";

/// One lie, switched on for the rest of the relay's life. Accounts are 32 hex digits.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Attack {
    /// Sends to `account` get a 409 naming `device` (default [`INJECTED_DEVICE`]), and the key
    /// directory serves a valid bundle for it.
    InjectDevice {
        /// The account.
        account: String,
        /// The made-up device number.
        #[serde(default)]
        device: Option<u32>,
    },
    /// `account`'s bundles carry identity keys the proxy made.
    ForgeBundle {
        /// The account.
        account: String,
    },
    /// A sender certificate for `account`'s device `device` with a key the proxy chose, and a
    /// sealed text `text` under it dropped into `victim`'s mailbox.
    ForgeCertificate {
        /// The mailbox.
        victim: String,
        /// The account the certificate names.
        account: String,
        /// The device it names.
        device: u32,
        /// What the forged message says.
        text: String,
    },
    /// `account`'s device list is served as the first one the proxy saw.
    Rollback {
        /// The account.
        account: String,
    },
    /// A new device of the account `username` by password login, with its keys uploaded; with
    /// `victim`, it sends `text` to it.
    PasswordDevice {
        /// The account's username.
        username: String,
        /// Its password (test accounts only).
        password: String,
        /// Who the new device writes to, if anyone.
        #[serde(default)]
        victim: Option<String>,
        /// What it writes.
        #[serde(default)]
        text: String,
    },
}

/// What the proxy knows and which lies are on.
#[derive(Default)]
struct Lies {
    /// Accounts whose sends get a 409 naming this made-up device, with its bundle.
    injected: HashMap<String, BundleBody>,
    /// Accounts whose bundles are forged, with the forgeries served so far (per device).
    forged: HashMap<String, HashMap<u32, BundleBody>>,
    /// Accounts whose device list is rolled back.
    rolled_back: Vec<String>,
    /// The first device list served per account (status 200 body).
    first_lists: HashMap<String, Vec<u8>>,
    /// Devices the proxy made or added (account, device number): any envelope for one is a leak.
    planted: Vec<(String, u32)>,
    /// Envelopes that reached a planted device, or sends to an account under `forge_bundle`.
    captured: u32,
    /// Stores of devices added by password login (kept until the relay stops).
    rogue_dirs: Vec<tempfile::TempDir>,
}

struct Proxy {
    upstream: String,
    http: reqwest::Client,
    certificate_key: ed25519_dalek::SigningKey,
    lies: Mutex<Lies>,
}

impl Proxy {
    fn lies(&self) -> std::sync::MutexGuard<'_, Lies> {
        self.lies
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A real relay behind a lying proxy. Dropping it stops both.
pub struct HostileRelay {
    relay: InProcessRelay,
    proxy: Arc<Proxy>,
    url: String,
    runtime: Option<tokio::runtime::Runtime>,
}

impl std::fmt::Debug for HostileRelay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostileRelay")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

/// Why the hostile relay could not do what it was asked.
#[derive(Debug)]
pub struct HostileError(String);

impl std::error::Error for HostileError {}

impl std::fmt::Display for HostileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn fail(what: &str, e: impl std::fmt::Display) -> HostileError {
    HostileError(format!("{what}: {e}"))
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn account_bytes(hex_id: &str) -> Result<[u8; 16], HostileError> {
    let id: Id = hex_id
        .parse()
        .map_err(|e| fail("account id", format!("{e:?}")))?;
    Ok(*id.as_bytes())
}

impl HostileRelay {
    /// Starts a relay (test defaults plus `config`'s settings; its certificate key is chosen
    /// here, so the proxy can issue certificates) and the proxy in front of it.
    ///
    /// # Errors
    /// When the proxy's runtime or port cannot be had.
    pub fn start(config: RelayConfig) -> Result<Self, HostileError> {
        let mut seed = [0u8; 32];
        rand10::Rng::fill_bytes(&mut rand10::rng(), &mut seed);
        let config = config.set("HAVEN_CERTIFICATE_KEY", STANDARD.encode(seed));
        let relay = config.start();
        let proxy = Arc::new(Proxy {
            upstream: relay.url(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .map_err(|e| fail("http client", e))?,
            certificate_key: ed25519_dalek::SigningKey::from_bytes(&seed),
            lies: Mutex::new(Lies::default()),
        });
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| fail("runtime", e))?;
        // Bound here (not inside the runtime), so this works from a test's own runtime too.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| fail("bind", e))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| fail("bind", e))?;
        let addr = listener.local_addr().map_err(|e| fail("bind", e))?;
        let app = Router::new().fallback(handle).with_state(proxy.clone());
        runtime.spawn(async move {
            if let Ok(listener) = tokio::net::TcpListener::from_std(listener) {
                let _ = axum::serve(listener, app).await;
            }
        });
        Ok(Self {
            relay,
            proxy,
            url: format!("http://{addr}"),
            runtime: Some(runtime),
        })
    }

    /// The URL clients use (the proxy's).
    #[must_use]
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// The control API's base URL (`POST …/attack`, `GET …/captured`).
    #[must_use]
    pub fn control_url(&self) -> String {
        format!("{}{CONTROL}", self.url)
    }

    /// The real relay behind the proxy (its logs, its directory).
    #[must_use]
    pub fn relay(&self) -> &InProcessRelay {
        &self.relay
    }

    /// How many envelopes reached a device the proxy made or added (or a send went through
    /// under a forged bundle): a client that refuses every attack leaves it at 0.
    #[must_use]
    pub fn captured(&self) -> u32 {
        self.proxy.lies().captured
    }

    /// Switches `attack` on; returns the device number it made or added, if any.
    ///
    /// # Errors
    /// When the attack cannot be mounted (bad account id, relay refusals).
    pub async fn attack(&self, attack: Attack) -> Result<Option<u32>, HostileError> {
        let proxy = self.proxy.clone();
        let handle = self
            .runtime
            .as_ref()
            .ok_or_else(|| HostileError("stopped".into()))?
            .spawn(async move { mount(&proxy, attack).await });
        handle.await.map_err(|e| fail("attack task", e))?
    }
}

impl Drop for HostileRelay {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
        self.relay.stop();
    }
}

/// Mounts one attack.
async fn mount(proxy: &Proxy, attack: Attack) -> Result<Option<u32>, HostileError> {
    match attack {
        Attack::InjectDevice { account, device } => {
            account_bytes(&account)?;
            let device = device.unwrap_or(INJECTED_DEVICE);
            let bundle = made_up_bundle(device)?;
            let mut lies = proxy.lies();
            lies.planted.push((account.clone(), device));
            lies.injected.insert(account, bundle);
            Ok(Some(device))
        }
        Attack::ForgeBundle { account } => {
            account_bytes(&account)?;
            proxy.lies().forged.entry(account).or_default();
            Ok(None)
        }
        Attack::Rollback { account } => {
            account_bytes(&account)?;
            proxy.lies().rolled_back.push(account);
            Ok(None)
        }
        Attack::ForgeCertificate {
            victim,
            account,
            device,
            text,
        } => {
            forge_certificate(proxy, &victim, &account, device, &text).await?;
            Ok(None)
        }
        Attack::PasswordDevice {
            username,
            password,
            victim,
            text,
        } => password_device(proxy, &username, &password, victim.as_deref(), &text)
            .await
            .map(Some),
    }
}

/// A valid, self-signed bundle for `device` under a fresh identity key the proxy made.
fn made_up_bundle(device: u32) -> Result<BundleBody, HostileError> {
    let rng = &mut rand10::rng();
    let identity = IdentityKeyPair::generate(rng);
    let registration_id = rand10::Rng::next_u32(rng) & 0x3FFF;
    let now = now_secs();
    let signed = SignedPreKey::generate(&identity, 1, now, rng);
    let kem = KemPreKey::generate(&identity, 1, KemPreKeyKind::LastResort, now, rng);
    let bundle = PreKeyBundle::new(
        *identity.public(),
        registration_id,
        device,
        &signed,
        None,
        &kem,
    );
    if bundle.verify().is_err() {
        return Err(HostileError("made-up bundle does not verify".into()));
    }
    Ok(BundleBody {
        device_number: device,
        registration_id,
        identity_key: STANDARD.encode(identity.public().to_bytes()),
        signed_prekey: SignedKeyBody {
            key_id: 1,
            public_key: STANDARD.encode(signed.public().as_bytes()),
            signature: STANDARD.encode(signed.signature()),
        },
        one_time_prekey: None,
        kem_prekey: SignedKeyBody {
            key_id: 1,
            public_key: STANDARD.encode(kem.public()),
            signature: STANDARD.encode(kem.signature()),
        },
        kem_prekey_last_resort: true,
        bundle: Some(STANDARD.encode(bundle.to_bytes())),
    })
}

/// The proxy's own account on the real relay (what it sends through), registered fresh.
async fn attacker(proxy: &Proxy) -> Result<RelayClient, HostileError> {
    let relay = RelayClient::new(&proxy.upstream).map_err(|e| fail("relay client", e))?;
    let identity = IdentityKeyPair::generate(&mut rand10::rng());
    let mut password = [0u8; 16];
    rand10::Rng::fill_bytes(&mut rand10::rng(), &mut password);
    relay
        .register(None, &password, &identity.public().to_bytes(), None)
        .await
        .map_err(|e| fail("attacker registration", e))?;
    Ok(relay)
}

/// A text content for `to`, as a messenger would send it.
fn text_content(to: [u8; 16], text: &str) -> Result<Vec<u8>, HostileError> {
    let mut message_id = [0u8; 16];
    rand10::Rng::fill_bytes(&mut rand10::rng(), &mut message_id);
    Content {
        sent_at: now_secs().saturating_mul(1000),
        conversation: Conversation::Direct(to),
        body: ContentBody::Text {
            message_id,
            expire_secs: 0,
            text: text.to_owned(),
            attachment: Vec::new(),
        },
    }
    .to_bytes()
    .map_err(|e| fail("content", e))
}

/// Issues a certificate naming `account`'s device `device` with a key the proxy chose and
/// drops a real first message (PQXDH to each of `victim`'s devices) sealed under it into
/// `victim`'s mailbox, as a logged-in send of the proxy's own account.
async fn forge_certificate(
    proxy: &Proxy,
    victim: &str,
    account: &str,
    device: u32,
    text: &str,
) -> Result<(), HostileError> {
    let victim_id = account_bytes(victim)?;
    let sender = DeviceAddress::new(account_bytes(account)?, device);
    let relay = attacker(proxy).await?;
    let answer: BundlesResponse = relay
        .request_as::<_, ()>(reqwest::Method::GET, &format!("/v1/keys/{victim}"), None)
        .await
        .map_err(|e| fail("victim's bundles", e))?;
    let bundles = verify_bundles(&answer, &victim_id).map_err(|e| fail("victim's bundles", e))?;
    let body = forged_send(proxy, victim_id, sender, &bundles, text)?;
    relay
        .request_as::<serde::de::IgnoredAny, _>(
            reqwest::Method::POST,
            &format!("/v1/messages/{victim}"),
            Some(&body),
        )
        .await
        .map_err(|e| fail("dropping the forged message", e))?;
    Ok(())
}

/// The logged-in send body of [`forge_certificate`]: one sealed first message per device.
fn forged_send(
    proxy: &Proxy,
    victim_id: [u8; 16],
    sender: DeviceAddress,
    bundles: &[PreKeyBundle],
    text: &str,
) -> Result<serde_json::Value, HostileError> {
    let rng = &mut rand10::rng();
    let chosen = IdentityKeyPair::generate(rng);
    let certificate = SenderCertificate::issue(
        &proxy.certificate_key,
        sender,
        *chosen.public(),
        now_secs() + 86_400,
    );
    let mut store = InMemoryProtocolStore::new(chosen, 1);
    let identity = store
        .identity_key_pair()
        .map_err(|e| fail("forged identity", e))?;
    let padded = haven_sdk::pad(&text_content(victim_id, text)?).map_err(|e| fail("pad", e))?;
    let mut envelopes = Vec::with_capacity(bundles.len());
    for b in bundles {
        let peer = DeviceAddress::new(victim_id, b.device_id);
        let message = session_cipher::initiate(&mut store, &peer, b, &padded, rng)
            .map_err(|e| fail("forged handshake", e))?;
        let sealed = seal_sender(
            &identity,
            &certificate,
            &b.identity_key,
            CONTENT_SESSION,
            &message,
            rng,
        )
        .map_err(|e| fail("seal", e))?;
        envelopes.push(json!({"device_number": b.device_id, "content": STANDARD.encode(sealed)}));
    }
    Ok(json!({"message_id": Id::random().to_hex(), "envelopes": envelopes}))
}

/// Logs in to `username`'s account as a new device with its password, uploads its keys, and
/// (with `victim`) sends `text` from it. Returns the new device's number.
async fn password_device(
    proxy: &Proxy,
    username: &str,
    password: &str,
    victim: Option<&str>,
    text: &str,
) -> Result<u32, HostileError> {
    let relay = RelayClient::new(&proxy.upstream).map_err(|e| fail("relay client", e))?;
    let identity = IdentityKeyPair::generate(&mut rand10::rng());
    let registration_id = rand10::Rng::next_u32(&mut rand10::rng()) & 0x3FFF;
    let session = relay
        .login(
            LoginIdentifier::Username(username),
            password.as_bytes(),
            LoginDevice::New {
                identity_key: &identity.public().to_bytes(),
                name: None,
            },
            None,
        )
        .await
        .map_err(|e| fail("password login", e))?;
    let number = session
        .device_number
        .ok_or_else(|| HostileError("no device number".into()))?;
    let dir = tempfile::tempdir().map_err(|e| fail("temporary directory", e))?;
    let mut key = [0u8; 32];
    rand10::Rng::fill_bytes(&mut rand10::rng(), &mut key);
    let mut store =
        ClientStore::open(&dir.path().join("rogue.db"), &key).map_err(|e| fail("store", e))?;
    store
        .set_identity(&identity, registration_id)
        .map_err(|e| fail("store", e))?;
    let relay_key: CertificateKeyResponse = relay
        .request_anonymous_as::<_, ()>(reqwest::Method::GET, "/v1/certificate/key", None)
        .await
        .map_err(|e| fail("certificate key", e))?;
    let id = |hex_id: &str| -> Result<Id, HostileError> {
        hex_id.parse().map_err(|e| fail("id", format!("{e:?}")))
    };
    StoredSession::store(
        &store,
        id(&session.account_id)?,
        id(&session.device_id)?,
        number,
        session.refresh_token(),
    )
    .map_err(|e| fail("store", e))?;
    pin_relay_key(&store, &relay_key).map_err(|e| fail("store", e))?;
    let upload =
        keys::upload(&mut store, now_secs(), &mut rand10::rng()).map_err(|e| fail("keys", e))?;
    relay
        .request_as::<serde::de::IgnoredAny, _>(reqwest::Method::PUT, "/v1/keys", Some(&upload))
        .await
        .map_err(|e| fail("key upload", e))?;
    {
        let mut lies = proxy.lies();
        lies.planted.push((session.account_id.clone(), number));
    }
    if let Some(victim) = victim {
        let device = Device::open(relay, store)
            .await
            .map_err(|e| fail("rogue device", e))?;
        let content = text_content(account_bytes(victim)?, text)?;
        device
            .send(victim, &content)
            .await
            .map_err(|e| fail("rogue send", e))?;
    }
    proxy.lies().rogue_dirs.push(dir);
    Ok(number)
}

/// What a request path asks for, as far as the lies care.
enum Route<'a> {
    /// `POST /v1/messages/{account}[/sealed]`.
    Send(&'a str),
    /// `GET /v1/keys/{account}[/{device}]`.
    Keys(&'a str, Option<u32>),
    /// `GET /v1/accounts/{account}/device-list`.
    DeviceList(&'a str),
    Other,
}

fn route<'a>(method: &Method, path: &'a str) -> Route<'a> {
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (method, parts.as_slice()) {
        (&Method::POST, ["v1", "messages", account]) if account.len() == 32 => Route::Send(account),
        (&Method::POST, ["v1", "messages", account, "sealed"]) => Route::Send(account),
        (&Method::GET, ["v1", "keys", account]) if account.len() == 32 => {
            Route::Keys(account, None)
        }
        (&Method::GET, ["v1", "keys", account, device]) => match device.parse() {
            Ok(n) => Route::Keys(account, Some(n)),
            Err(_) => Route::Other,
        },
        (&Method::GET, ["v1", "accounts", account, "device-list"]) => Route::DeviceList(account),
        _ => Route::Other,
    }
}

fn json_response(status: StatusCode, body: &serde_json::Value) -> Response {
    (
        status,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// Every request: the control API, or the relay's answer with the lies that are on. An answer
/// the proxy made up carries the CORS header the relay would have sent, so a browser reads it.
async fn handle(State(proxy): State<Arc<Proxy>>, request: Request) -> Response {
    let origin = request.headers().get(axum::http::header::ORIGIN).cloned();
    let mut response = answer(&proxy, request).await;
    if let Some(origin) = origin {
        let headers = response.headers_mut();
        if !headers.contains_key(axum::http::header::ACCESS_CONTROL_ALLOW_ORIGIN) {
            headers.insert(axum::http::header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
            headers.insert(
                axum::http::header::VARY,
                axum::http::HeaderValue::from_static("origin"),
            );
        }
    }
    response
}

async fn answer(proxy: &Arc<Proxy>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, MAX_BODY).await else {
        return StatusCode::PAYLOAD_TOO_LARGE.into_response();
    };
    let path = parts.uri.path().to_owned();
    if let Some(control) = path.strip_prefix(CONTROL) {
        return handle_control(proxy, &parts.method, control, &body).await;
    }
    match route(&parts.method, &path) {
        Route::Send(account) => {
            if let Some(answer) = before_send(proxy, account, &body) {
                return answer;
            }
        }
        Route::Keys(account, Some(device)) => {
            let injected = proxy.lies().injected.get(account).cloned();
            if let Some(bundle) = injected.filter(|b| b.device_number == device) {
                return bundles_response(account, vec![bundle]);
            }
        }
        _ => {}
    }
    let (status, headers, answer) = match forward(proxy, &parts, body).await {
        Ok(reply) => reply,
        Err(e) => {
            return json_response(
                StatusCode::BAD_GATEWAY,
                &json!({"error": {"code": "bad_gateway", "message": e.0}}),
            );
        }
    };
    let answer = match route(&parts.method, &path) {
        Route::Keys(account, _) if status == StatusCode::OK => {
            match lie_about_bundles(proxy, account, &answer) {
                Some(lie) => return lie,
                None => answer,
            }
        }
        Route::DeviceList(account) if status == StatusCode::OK => {
            let mut lies = proxy.lies();
            let first = lies
                .first_lists
                .entry(account.to_owned())
                .or_insert_with(|| answer.clone())
                .clone();
            if lies.rolled_back.iter().any(|a| a == account) {
                first
            } else {
                answer
            }
        }
        _ => answer,
    };
    let mut response = Response::new(Body::from(answer));
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}

/// The control API: `POST /attack` (an [`Attack`] as JSON → `{"device": n|null}`),
/// `GET /captured` → `{"captured": n}`.
async fn handle_control(proxy: &Proxy, method: &Method, path: &str, body: &[u8]) -> Response {
    match (method, path) {
        (&Method::POST, "/attack") => {
            let attack: Attack = match serde_json::from_slice(body) {
                Ok(a) => a,
                Err(e) => {
                    return json_response(
                        StatusCode::BAD_REQUEST,
                        &json!({"error": format!("attack: {e}")}),
                    );
                }
            };
            match mount(proxy, attack).await {
                Ok(device) => json_response(StatusCode::OK, &json!({"device": device})),
                Err(e) => json_response(StatusCode::BAD_REQUEST, &json!({"error": e.0})),
            }
        }
        (&Method::GET, "/captured") => {
            json_response(StatusCode::OK, &json!({"captured": proxy.lies().captured}))
        }
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

/// Counts envelopes for planted devices and sends under a forged bundle; answers a send to an
/// account under `inject_device` that leaves the made-up device out with a 409 naming it.
fn before_send(proxy: &Proxy, account: &str, body: &[u8]) -> Option<Response> {
    let devices: Vec<u32> = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            v.get("envelopes").and_then(|e| e.as_array()).map(|e| {
                e.iter()
                    .filter_map(|x| x.get("device_number")?.as_u64())
                    .filter_map(|n| u32::try_from(n).ok())
                    .collect()
            })
        })
        .unwrap_or_default();
    let mut lies = proxy.lies();
    let leaked = devices
        .iter()
        .filter(|&&d| lies.planted.iter().any(|(a, n)| a == account && *n == d))
        .count();
    let forged = usize::from(lies.forged.contains_key(account));
    lies.captured += u32::try_from(leaked + forged).unwrap_or(u32::MAX);
    let injected = lies.injected.get(account)?.device_number;
    if devices.contains(&injected) {
        // Swallowed: nothing for a made-up device reaches the relay.
        return Some(json_response(StatusCode::OK, &json!({"devices": []})));
    }
    Some(json_response(
        StatusCode::CONFLICT,
        &json!({"error": {
            "code": "mismatched_devices",
            "message": "the account has devices this send has no envelope for",
            "mismatches": [{
                "account_id": account,
                "missing_devices": [injected],
                "extra_devices": [],
                "removed_devices": [],
            }],
        }}),
    ))
}

fn bundles_response(account: &str, bundles: Vec<BundleBody>) -> Response {
    let Ok(account_id) = account.parse::<Id>() else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    match serde_json::to_value(BundlesResponse {
        account_id,
        bundles,
    }) {
        Ok(v) => json_response(StatusCode::OK, &v),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// The key directory's answer with the made-up device added (`inject_device`) or every bundle
/// replaced by one under a key the proxy made (`forge_bundle`); `None` when no lie applies.
fn lie_about_bundles(proxy: &Proxy, account: &str, answer: &[u8]) -> Option<Response> {
    let mut reply: BundlesResponse = serde_json::from_slice(answer).ok()?;
    let mut lies = proxy.lies();
    let mut lied = false;
    if let Some(forged) = lies.forged.get_mut(account) {
        for b in &mut reply.bundles {
            let made = match forged.get(&b.device_number) {
                Some(made) => made.clone(),
                None => {
                    let made = made_up_bundle(b.device_number).ok()?;
                    forged.insert(b.device_number, made.clone());
                    made
                }
            };
            *b = made;
        }
        lied = true;
    }
    if let Some(bundle) = lies.injected.get(account) {
        reply.bundles.push(bundle.clone());
        lied = true;
    }
    drop(lies);
    lied.then(|| bundles_response(account, reply.bundles))
}

/// Hop-by-hop headers, not forwarded.
const HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
];

/// Sends the request on to the real relay; returns its status, headers and body.
async fn forward(
    proxy: &Proxy,
    parts: &axum::http::request::Parts,
    body: axum::body::Bytes,
) -> Result<(StatusCode, HeaderMap, Vec<u8>), HostileError> {
    let target = format!(
        "{}{}",
        proxy.upstream,
        parts
            .uri
            .path_and_query()
            .map_or_else(|| parts.uri.path(), |p| p.as_str())
    );
    let method = reqwest::Method::from_bytes(parts.method.as_str().as_bytes())
        .map_err(|e| fail("method", e))?;
    let mut request = proxy.http.request(method, target).body(body.to_vec());
    for (name, value) in &parts.headers {
        if !HOP.contains(&name.as_str()) {
            request = request.header(name.as_str(), value.as_bytes());
        }
    }
    let reply = request.send().await.map_err(|e| fail("relay", e))?;
    let status = StatusCode::from_u16(reply.status().as_u16()).map_err(|e| fail("status", e))?;
    let mut headers = HeaderMap::new();
    for (name, value) in reply.headers() {
        if HOP.contains(&name.as_str()) {
            continue;
        }
        if let (Ok(n), Ok(v)) = (
            axum::http::HeaderName::from_bytes(name.as_str().as_bytes()),
            axum::http::HeaderValue::from_bytes(value.as_bytes()),
        ) {
            headers.append(n, v);
        }
    }
    let bytes = reply.bytes().await.map_err(|e| fail("relay body", e))?;
    Ok((status, headers, bytes.to_vec()))
}
