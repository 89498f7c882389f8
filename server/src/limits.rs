//! Rate limits, on `haven-ratelimit`.
//!
//! - Login failures (wrong password, wrong TOTP code) per account: key
//!   `login:acct:<hex HMAC(pepper, account id or unknown identifier)>` on the *shared* limiter
//!   (Redis when `REDIS_URL` is set, so every instance sees the same count).
//! - Login failures per client address and per-route request limits per client address: keyed
//!   by `ClientKey`, an HMAC of the address prefix under a key derived from the server secret
//!   (`ServerSecrets::addr_key`), so every instance hashes an address alike. On the shared
//!   limiter too when Redis is configured (keys `addr:…`), so N instances behind a load balancer
//!   count one address together; in process memory otherwise. The address itself never leaves
//!   the process.
//!
//! Limiter errors (Redis unreachable) fail closed: the request gets a 500 and the cause is logged.

use std::time::Duration;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use haven_ratelimit::{Decision, Quota, RateLimitError, RateLimiter};

use crate::client_addr::{ClientAddrSource, ClientKey};
use crate::error::AppError;
use crate::secrets::Key32;
use crate::settings::Settings;

/// Prefix of every Redis key the relay writes.
pub const REDIS_KEY_PREFIX: &str = "haven:rl:";

/// What the limit checks read of the relay: the limiters, the settings that size the quotas, and
/// the key that turns an account id into a limiter key. Implemented by the application state;
/// the checks take this instead of the state so that nothing here depends on the router.
pub trait LimitContext: Send + Sync {
    /// The rate limiters.
    fn limits(&self) -> &Limits;
    /// The settings (quotas).
    fn settings(&self) -> &Settings;
    /// The key of per-account limiter keys (the username pepper: never stored by a limiter).
    fn limit_pepper(&self) -> &Key32;
    /// Called when a per-address limit refuses a request on `route` (a route template, never a
    /// path with ids): the audit log's hook. Does nothing by default.
    fn rate_limited(&self, route: &MatchedPath) -> impl std::future::Future<Output = ()> + Send {
        let _ = route;
        async {}
    }
}

/// The two limiters of a relay process (one and the same on Redis).
#[derive(Clone)]
pub struct Limits {
    shared: RateLimiter,
    per_addr: RateLimiter,
    redis: bool,
}

impl Limits {
    /// Both limiters in process memory (single instance, tests).
    pub fn in_memory() -> Self {
        Self {
            shared: RateLimiter::in_memory(),
            per_addr: RateLimiter::in_memory(),
            redis: false,
        }
    }

    /// The shared limiter on Redis if `redis_url` is set, else in memory.
    pub async fn from_settings(settings: &Settings) -> Result<Self, RateLimitError> {
        match &settings.redis_url {
            Some(url) => Self::redis(url.expose()).await,
            None => Ok(Self::in_memory()),
        }
    }

    /// Both limiters on the Redis at `url`: instances sharing it count accounts and client
    /// addresses together.
    pub async fn redis(url: &str) -> Result<Self, RateLimitError> {
        let shared = RateLimiter::redis(url, REDIS_KEY_PREFIX).await?;
        Ok(Self {
            per_addr: shared.clone(),
            shared,
            redis: true,
        })
    }

    /// Whether the shared limiter answers (always true in memory).
    pub async fn ping(&self) -> bool {
        if !self.redis {
            return true;
        }
        match self.shared.ping().await {
            Ok(()) => true,
            Err(err) => {
                tracing::warn!(%err, "readiness: redis ping failed");
                false
            }
        }
    }
}

fn limiter_error(err: RateLimitError) -> AppError {
    AppError::internal(format!("rate limiter: {err}"))
}

fn refuse(decision: &Decision) -> Result<(), AppError> {
    match decision.retry_after() {
        Some(retry_after) => Err(AppError::RateLimited { retry_after }),
        None => Ok(()),
    }
}

fn account_key(limit_key: &[u8]) -> String {
    format!("login:acct:{}", hex::encode(limit_key))
}

fn failure_quotas(settings: &Settings) -> (Quota, Quota) {
    let window = Duration::from_secs(settings.login_failure_window_secs);
    (
        Quota::new(settings.login_max_failures, window),
        Quota::new(settings.addr_login_max_failures, window),
    )
}

/// Refuses (429) when the account behind `limit_key` is locked after too many failures.
pub(crate) async fn check_login<C: LimitContext>(
    state: &C,
    limit_key: &[u8],
) -> Result<(), AppError> {
    let (account, _) = failure_quotas(state.settings());
    let decision = state
        .limits()
        .shared
        .peek(&account_key(limit_key), account)
        .await
        .map_err(limiter_error)?;
    refuse(&decision)
}

/// Refuses (429) when the client address has too many recent failures.
pub(crate) async fn check_client<C: LimitContext>(
    state: &C,
    client: &ClientKey,
) -> Result<(), AppError> {
    let Some(addr) = &client.0 else { return Ok(()) };
    let (_, per_addr) = failure_quotas(state.settings());
    let key = addr_key("login", addr);
    let decision = state
        .limits()
        .per_addr
        .peek(&key, per_addr)
        .await
        .map_err(limiter_error)?;
    refuse(&decision)
}

/// Counts one failed login (or wrong TOTP code) against the account and the client address.
pub(crate) async fn record_failure<C: LimitContext>(
    state: &C,
    limit_key: &[u8],
    client: &ClientKey,
) -> Result<(), AppError> {
    let (account, per_addr) = failure_quotas(state.settings());
    let limits = state.limits();
    limits
        .shared
        .hit(&account_key(limit_key), account)
        .await
        .map_err(limiter_error)?;
    if let Some(addr) = &client.0 {
        limits
            .per_addr
            .hit(&addr_key("login", addr), per_addr)
            .await
            .map_err(limiter_error)?;
    }
    tracing::info!("failed login attempt counted");
    Ok(())
}

/// Counts one OPAQUE run against the account before its outcome is known: a client learns from
/// KE2 alone whether its password guess was right, so a guess that never sends KE3 must count
/// too. The count stays until a login of the account succeeds ([`record_success`]).
pub(crate) async fn record_attempt<C: LimitContext>(
    state: &C,
    limit_key: &[u8],
) -> Result<(), AppError> {
    let (account, _) = failure_quotas(state.settings());
    state
        .limits()
        .shared
        .hit(&account_key(limit_key), account)
        .await
        .map_err(limiter_error)?;
    Ok(())
}

/// Counts one failed OPAQUE finish (or wrong TOTP code at login) against the client address
/// only: its account was counted when the run started ([`record_attempt`]).
pub(crate) async fn record_address_failure<C: LimitContext>(
    state: &C,
    client: &ClientKey,
) -> Result<(), AppError> {
    if let Some(addr) = &client.0 {
        let (_, per_addr) = failure_quotas(state.settings());
        state
            .limits()
            .per_addr
            .hit(&addr_key("login", addr), per_addr)
            .await
            .map_err(limiter_error)?;
    }
    tracing::info!("failed login attempt counted");
    Ok(())
}

/// A successful login clears the account's failure count.
pub(crate) async fn record_success<C: LimitContext>(
    state: &C,
    limit_key: &[u8],
) -> Result<(), AppError> {
    state
        .limits()
        .shared
        .reset(&account_key(limit_key))
        .await
        .map_err(limiter_error)
}

/// Middleware: per-client-address request limits, a general one on every route and a stricter
/// one on registration, login, re-authentication and recovery. Requests without a known address (in-process) are not limited.
pub(crate) async fn per_client<C: LimitContext + ClientAddrSource + Clone>(
    State(state): State<C>,
    client: ClientKey,
    req: Request,
    next: Next,
) -> Response {
    if let Some(addr) = &client.0 {
        let settings = state.settings();
        let minute = Duration::from_secs(60);
        let mut checks = vec![(
            addr_key("req", addr),
            Quota::new(settings.rate_limit_per_minute, minute),
        )];
        let route = req
            .extensions()
            .get::<MatchedPath>()
            .map(MatchedPath::as_str)
            .unwrap_or("");
        if route.starts_with("/v1/register/")
            || route.starts_with("/v1/login/")
            || route.starts_with("/v1/recover/")
            || route.starts_with("/v1/account/reauth/")
        {
            checks.push((
                addr_key("auth", addr),
                Quota::new(settings.auth_rate_limit_per_minute, minute),
            ));
        }
        for (key, quota) in checks {
            let outcome = state
                .limits()
                .per_addr
                .hit(&key, quota)
                .await
                .map_err(limiter_error);
            if let Err(err) = outcome.and_then(|d| refuse(&d)) {
                if let (AppError::RateLimited { .. }, Some(route)) =
                    (&err, req.extensions().get::<MatchedPath>())
                {
                    state.rate_limited(route).await;
                }
                return err.into_response();
            }
        }
    }
    next.run(req).await
}

/// Counts one request against `quota` under `key` on the *shared* limiter (Redis when
/// configured, so the limit holds across instances); 429 when over. `key` must not contain raw
/// identifiers: callers pass a keyed hash (see [`keyed`]).
pub(crate) async fn hit_shared<C: LimitContext>(
    state: &C,
    key: &str,
    quota: Quota,
) -> Result<(), AppError> {
    let decision = state
        .limits()
        .shared
        .hit(key, quota)
        .await
        .map_err(limiter_error)?;
    refuse(&decision)
}

/// `<prefix>:<hex HMAC(pepper, label, id)>`: a limiter key that names an account without
/// putting its id into Redis.
pub(crate) fn keyed<C: LimitContext>(state: &C, prefix: &str, id: &crate::ids::Id) -> String {
    let mac = state
        .limit_pepper()
        .hmac(b"haven/limit-key/v1", id.as_bytes());
    format!("{prefix}:{}", hex::encode(mac))
}

fn admin_failure_key(addr: &str) -> String {
    addr_key("admin", addr)
}

/// `addr:<what>:<addr>`: a per-address limiter key (`addr` is a `ClientKey` hash).
fn addr_key(what: &str, addr: &str) -> String {
    format!("addr:{what}:{addr}")
}

/// Refuses (429) when the client address `addr` (a keyed hash, see `ClientKey`) has too many
/// recent failed admin authentications. Admin failures use the per-address login quota
/// (`addr_login_max_failures` per `login_failure_window_secs`) under a key of their own.
pub async fn check_admin_failures<C: LimitContext>(ctx: &C, addr: &str) -> Result<(), AppError> {
    let (_, per_addr) = failure_quotas(ctx.settings());
    let decision = ctx
        .limits()
        .per_addr
        .peek(&admin_failure_key(addr), per_addr)
        .await
        .map_err(limiter_error)?;
    refuse(&decision)
}

/// Counts one failed admin authentication against the client address `addr` (a keyed hash).
pub async fn record_admin_failure<C: LimitContext>(ctx: &C, addr: &str) -> Result<(), AppError> {
    let (_, per_addr) = failure_quotas(ctx.settings());
    ctx.limits()
        .per_addr
        .hit(&admin_failure_key(addr), per_addr)
        .await
        .map_err(limiter_error)?;
    Ok(())
}
