//! The router, its middleware, and the server launch functions.

mod admin;
pub mod health;
pub mod openapi;
pub mod state;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{delete, get, post, put};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::timeout::TimeoutLayer;

use crate::accounts::routes::{account, auth, certificate, devices, identity, usernames};
use crate::app::state::AppState;
use crate::db::error::StoreError;
use crate::db::{PgStore, SqliteStore, Store};
use crate::error::AppError;
use crate::keys::routes as keys;
use crate::mail::routes as messages;
use crate::secrets::{SecretsError, ServerSecrets};
use crate::settings::Settings;
use crate::vault::routes as vault;
use axum::serve::ListenerExt as _;

/// Errors that stop the relay from starting or serving.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LaunchError {
    /// The database URL has an unsupported scheme (only `sqlite:` and `postgres://`).
    #[error("unsupported database url scheme (use sqlite: or postgres://)")]
    UnsupportedDatabase,
    /// Opening or migrating the store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Loading the server secrets failed.
    #[error(transparent)]
    Secrets(#[from] SecretsError),
    /// Connecting to Redis for the shared rate limits failed.
    #[error("rate limiter: {0}")]
    RateLimit(#[from] haven_ratelimit::RateLimitError),
    /// Connecting the hub to Redis pub/sub failed.
    #[error(transparent)]
    Hints(#[from] crate::realtime::redis::HintError),
    /// Opening the blob store failed.
    #[error(transparent)]
    Blobs(#[from] crate::blobs::BlobSetupError),
    /// Binding or serving failed.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

/// Builds the API router for `state` (tests drive it with `tower::ServiceExt::oneshot`).
pub fn app<S: Store>(state: AppState<S>) -> Router {
    crate::admin::overview::mark_started();
    let settings = state.settings().clone();
    // Key uploads and sends carry many keys or one envelope per device.
    let big = settings.mail.max_request_bytes;
    // Vault writes carry two base64 blobs and may exceed the general body limit.
    let vault_limit = DefaultBodyLimit::max(
        settings
            .vault
            .request_limit_bytes()
            .max(settings.body_limit_bytes),
    );
    let router = Router::new()
        .route("/health", get(health::health))
        .route("/ready", get(health::ready::<S>))
        .route("/openapi.json", get(crate::app::openapi::openapi_json))
        .route("/v1/register/start", post(auth::register_start::<S>))
        .route("/v1/register/finish", post(auth::register_finish::<S>))
        .route("/v1/login/start", post(auth::login_start::<S>))
        .route("/v1/login/finish", post(auth::login_finish::<S>))
        .route("/v1/token/refresh", post(auth::refresh::<S>))
        .route("/v1/logout", post(auth::logout::<S>))
        .route("/v1/logout/all", post(auth::logout_all::<S>))
        .route("/v1/account/reauth/start", post(auth::reauth_start::<S>))
        .route("/v1/account/reauth/finish", post(auth::reauth_finish::<S>))
        .route("/v1/recover/start", post(auth::recover_start::<S>))
        .route("/v1/recover/finish", post(auth::recover_finish::<S>))
        .route(
            "/v1/account/password/start",
            post(account::password_start::<S>),
        )
        .route(
            "/v1/account/password/finish",
            post(account::password_finish::<S>),
        )
        .route(
            "/v1/account/recovery/start",
            post(account::recovery_start::<S>),
        )
        .route(
            "/v1/account/recovery/finish",
            post(account::recovery_finish::<S>),
        )
        .route("/v1/devices", get(devices::list::<S>))
        .route("/v1/devices/{device_id}", delete(devices::unlink::<S>))
        .route("/v1/devices/{device_id}/name", put(devices::rename::<S>))
        .route("/v1/account", delete(account::delete::<S>))
        .route("/v1/account/export", get(account::export::<S>))
        .route("/v1/account/totp/setup", post(account::totp_setup::<S>))
        .route("/v1/account/totp/verify", post(account::totp_verify::<S>))
        .route("/v1/account/totp/disable", post(account::totp_disable::<S>))
        .route("/v1/account/access-key", put(messages::set_access_key::<S>))
        .route(
            "/v1/account/device-list",
            put(identity::put_device_list::<S>),
        )
        .route(
            "/v1/accounts/{account_id}/device-list",
            get(identity::device_list::<S>),
        )
        .route("/v1/devices/link-token", post(identity::link_token::<S>))
        .route("/v1/devices/link", post(identity::link::<S>))
        .route("/v1/provisioning", post(identity::create_box::<S>))
        .route(
            "/v1/provisioning/{id}",
            put(identity::fill_box::<S>).get(identity::take_box::<S>),
        )
        .route(
            "/v1/keys",
            put(keys::upload::<S>).layer(DefaultBodyLimit::max(big)),
        )
        .route("/v1/keys/counts", get(keys::counts::<S>))
        .route("/v1/keys/digest", get(keys::digest::<S>))
        .route("/v1/keys/{account_id}", get(keys::bundles::<S>))
        .route(
            "/v1/keys/{account_id}/{device_number}",
            get(keys::device_bundle::<S>),
        )
        .route("/v1/messages", get(messages::fetch::<S>))
        .route("/v1/messages/ack", post(messages::ack::<S>))
        .route(
            "/v1/messages/multi",
            post(messages::send_multi::<S>).layer(DefaultBodyLimit::max(big)),
        )
        .route(
            "/v1/messages/{account_id}",
            post(messages::send::<S>).layer(DefaultBodyLimit::max(big)),
        )
        .route(
            "/v1/messages/{account_id}/sealed",
            post(messages::send_sealed::<S>).layer(DefaultBodyLimit::max(big)),
        )
        .route("/v1/usernames/lookup", post(usernames::lookup::<S>))
        .route("/v1/certificate", post(certificate::issue::<S>))
        .route("/v1/certificate/key", get(certificate::key::<S>))
        .route(
            "/v1/franking/key",
            get(crate::moderation::routes::franking_key::<S>),
        )
        .route(
            "/v1/reports",
            post(crate::moderation::routes::file_report::<S>)
                .layer(DefaultBodyLimit::max(REPORT_REQUEST_LIMIT)),
        )
        .route("/v1/vault/usage", get(vault::usage::<S>))
        .route(
            "/v1/vault/{collection_id}/items/{item_id}",
            put(vault::put::<S>)
                .get(vault::get::<S>)
                .delete(vault::delete::<S>)
                .layer(vault_limit),
        )
        .route(
            "/v1/vault/{collection_id}/items/{item_id}/restore",
            post(vault::restore::<S>).layer(vault_limit),
        )
        .route(
            "/v1/vault/{collection_id}/items/{item_id}/history",
            get(vault::history::<S>),
        )
        .route(
            "/v1/vault/{collection_id}/changes",
            get(vault::changes::<S>),
        )
        .merge(crate::blobs::routes::api_routes::<S>())
        .merge(crate::admin::routes::api_routes::<AppState<S>>())
        .merge(crate::moderation::routes::admin_routes::<S>())
        .merge(crate::audit::routes::admin_routes::<S>())
        .route("/v1/ws", get(crate::realtime::ws::upgrade::<S>))
        .route("/v1/ws/ticket", post(crate::realtime::ws::ticket::<S>))
        .route("/v1/channels", post(crate::channels::routes::create::<S>))
        .route(
            "/v1/channels/{channel_id}/entries",
            post(crate::channels::routes::append_entry::<S>)
                .get(crate::channels::routes::read_entries::<S>),
        )
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(settings.body_limit_bytes))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            crate::limits::per_client::<AppState<S>>,
        ))
        // Outside the rate limits: a banned prefix is refused before it counts or costs more.
        .layer(middleware::from_fn_with_state(
            state.clone(),
            crate::moderation::routes::refuse_banned_addresses::<S>,
        ))
        .layer(middleware::from_fn(track_metrics))
        .with_state(state.clone());
    router
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(settings.request_timeout_secs),
        ))
        .merge(crate::blobs::routes::transfer_routes(state))
        .layer(cors_layer(&settings.cors_allowed_origins))
        // Every error leaves in the JSON error format (PROTOCOL.md §11.2), whoever produced it.
        .layer(middleware::from_fn(crate::error::json_errors))
        // Outermost, so every response (errors, timeouts, CORS preflights) gets the headers.
        .layer(middleware::from_fn_with_state(
            settings.hsts,
            security_headers,
        ))
}

/// A report body in base64 plus its JSON: the largest report (§16.2) with room to spare.
const REPORT_REQUEST_LIMIT: usize = 400 * 1024;

async fn not_found() -> AppError {
    AppError::not_found("not_found", "no such route")
}

async fn method_not_allowed() -> AppError {
    AppError::client(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "method not allowed here",
    )
}

fn cors_layer(origins: &[String]) -> CorsLayer {
    // Settings validation guarantees every origin parses; an empty list allows no origin.
    let origins: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_methods([Method::GET, Method::POST, Method::PUT, Method::DELETE])
        // Browsers send the fresh-authentication proof cross-origin too (§11.6.1).
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            HeaderName::from_static(haven_protocol::api::auth::FRESH_AUTH_HEADER),
        ])
        .max_age(Duration::from_secs(600))
}

async fn security_headers(State(hsts): State<bool>, req: Request, next: Next) -> Response {
    let mut response = next.run(req).await;
    let headers = response.headers_mut();
    let fixed: [(HeaderName, &'static str); 4] = [
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::CACHE_CONTROL, "no-store"),
    ];
    for (name, value) in fixed {
        headers.insert(name, HeaderValue::from_static(value));
    }
    // A handler may set a CSP of its own (the admin page, `admin::page`); everything else gets
    // the API's "load nothing" policy.
    headers
        .entry(header::CONTENT_SECURITY_POLICY)
        .or_insert(HeaderValue::from_static(
            "default-src 'none'; frame-ancestors 'none'",
        ));
    if hsts {
        headers.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=63072000; includeSubDomains"),
        );
    }
    response
}

/// Records request count and latency by route template (never the raw path, which has ids).
async fn track_metrics(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = req.method().as_str().to_owned();
    let started = Instant::now();
    let response = next.run(req).await;
    crate::admin::overview::record_request(response.status().as_u16(), started.elapsed());
    let status = response.status().as_u16().to_string();
    metrics::counter!("haven_http_requests_total",
        "method" => method.clone(), "route" => route.clone(), "status" => status)
    .increment(1);
    metrics::histogram!("haven_http_request_duration_seconds", "method" => method, "route" => route)
        .record(started.elapsed().as_secs_f64());
    response
}

/// The process-wide Prometheus recorder (installed on first use).
pub fn metrics_handle() -> Option<PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            PrometheusBuilder::new()
                .set_buckets(&[
                    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                ])
                .ok()?
                .install_recorder()
                .ok()
        })
        .clone()
}

/// The router of the metrics listener: `GET /metrics` in Prometheus text format.
pub fn metrics_app(handle: PrometheusHandle) -> Router {
    Router::new().route("/metrics", get(move || async move { handle.render() }))
}

/// Opens the store named by `settings.database_url` and serves on `listener` until `shutdown`
/// completes (then drains in-flight requests).
pub async fn launch_with_listener(
    settings: Settings,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), LaunchError> {
    let url = settings.database_url.expose().to_owned();
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let store = PgStore::connect_with(&url, &settings.database).await?;
        serve(settings, store, listener, shutdown).await
    } else if url.starts_with("sqlite:") {
        let store = SqliteStore::connect_with(&url, &settings.database).await?;
        serve(settings, store, listener, shutdown).await
    } else {
        Err(LaunchError::UnsupportedDatabase)
    }
}

async fn serve<S: Store>(
    settings: Settings,
    store: S,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), LaunchError> {
    let secrets = ServerSecrets::load(&settings, &store).await?;
    // TOTP secrets stored in the clear by an earlier version, or under an earlier key, are
    // sealed under the current key before anything is served.
    let resealed = crate::accounts::totp::reseal_all(&store, &secrets.totp).await?;
    if resealed.resealed > 0 {
        tracing::info!(
            count = resealed.resealed,
            "TOTP secrets sealed under the current key"
        );
    }
    if resealed.unreadable > 0 {
        tracing::warn!(
            count = resealed.unreadable,
            "TOTP secrets that open under no configured key (HAVEN_TOTP_KEY, HAVEN_TOTP_PREVIOUS_KEYS): their accounts cannot log in"
        );
    }
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let wait = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    if let (Some(addr), Some(handle)) = (settings.metrics_listen, metrics_handle()) {
        let metrics_listener = TcpListener::bind(addr).await?;
        tracing::info!(addr = %metrics_listener.local_addr()?, "metrics listening");
        let rx = stop_rx.clone();
        tokio::spawn(async move {
            let served = axum::serve(metrics_listener, metrics_app(handle))
                .with_graceful_shutdown(wait(rx))
                .await;
            if let Err(err) = served {
                tracing::error!(%err, "metrics listener failed");
            }
        });
    }
    let limits = crate::limits::Limits::from_settings(&settings).await?;
    tokio::spawn(crate::vault::routes::purge_task(
        store.clone(),
        settings.vault.clone(),
        stop_rx.clone(),
    ));
    let blobs = std::sync::Arc::new(crate::blobs::BlobService::open(&settings, &store).await?);
    tokio::spawn(crate::blobs::gc_task(
        store.clone(),
        std::sync::Arc::clone(&blobs),
        stop_rx.clone(),
    ));
    let state = AppState::new(store, settings, secrets, limits);
    state.set_blobs(blobs);
    let reaper = crate::mail::service::spawn_reaper(
        state.clone(),
        crate::mail::service::system_clock(),
        stop_rx.clone(),
    );
    if let Some(url) = &state.settings().redis_url {
        state.hub().attach_redis(url.expose()).await?;
    }
    tokio::spawn(reap_channels(state.clone(), stop_rx.clone()));
    tokio::spawn(crate::audit::reap_task(
        state.store().clone(),
        state.settings().audit.retention_days,
        Duration::from_secs(state.settings().audit.reap_interval_secs),
        stop_rx.clone(),
    ));
    tokio::spawn(crate::moderation::service::reap_task(
        state.store().clone(),
        state.settings().moderation.clone(),
        stop_rx.clone(),
    ));
    // Sockets outlive the HTTP connection that upgraded them: tell them to close (1001) as soon
    // as shutdown starts, and wait for them after the HTTP server drained.
    let hub = state.hub().clone();
    let mut hub_stop = stop_rx.clone();
    tokio::spawn(async move {
        let _ = hub_stop.wait_for(|stop| *stop).await;
        hub.begin_shutdown();
    });
    let hub = state.hub().clone();
    tracing::info!(addr = %listener.local_addr()?, "relay listening");
    // Small frames (results, envelopes, acks) must not wait for Nagle's algorithm: without
    // TCP_NODELAY a socket's second small write in flight waits for the peer's delayed ACK
    // (tens of milliseconds of added latency).
    let listener = listener.tap_io(|tcp| {
        if let Err(err) = tcp.set_nodelay(true) {
            tracing::debug!(%err, "cannot set TCP_NODELAY");
        }
    });
    axum::serve(
        listener,
        app(state).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(wait(stop_rx))
    .await?;
    if let Err(err) = reaper.await {
        tracing::warn!(%err, "reaper task ended abnormally");
    }
    if !hub.wait_sockets_closed(SOCKET_DRAIN).await {
        tracing::warn!(
            open = hub.live_sockets(),
            "websockets still open at shutdown"
        );
    }
    tracing::info!("relay stopped");
    Ok(())
}

/// How long shutdown waits for WebSockets to finish their close handshake.
const SOCKET_DRAIN: Duration = Duration::from_secs(5);

/// Deletes expired channels (with their entries) and expired WebSocket tickets periodically.
async fn reap_channels<S: Store>(state: AppState<S>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let every = Duration::from_secs(state.settings().channels.reap_interval_secs);
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = tick.tick() => {}
        }
        let now = crate::clock::now_i64();
        match state.store().reap_channels(now).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(channels = n, "expired channels reaped"),
            Err(err) => tracing::warn!(%err, "channel reaper failed"),
        }
        if let Err(err) = state.store().reap_tickets(now).await {
            tracing::warn!(%err, "ticket reaper failed");
        }
    }
}
