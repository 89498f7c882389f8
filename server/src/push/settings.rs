//! The `[push]` settings section (environment: `HAVEN_PUSH_<FIELD>` in upper case, derived from
//! the field names by `crate::settings`).

use serde::Deserialize;

use crate::settings::values::{SecretSetting, SettingsError};

/// Content-free wake-ups (PROTOCOL.md §18): delivery, coalescing, retries and what endpoints
/// may be registered (`Debug` redacts the VAPID key).
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PushSettings {
    /// Whether the relay sends wake-ups and accepts endpoints (`HAVEN_PUSH_ENABLED`, default
    /// `true`). Off: the routes answer 404 `push_disabled` and no worker runs.
    pub enabled: bool,
    /// At most one wake-up per device per this many seconds (`HAVEN_PUSH_COALESCE_SECS`).
    pub coalesce_secs: u64,
    /// Attempts per wake-up before it is given up (`HAVEN_PUSH_MAX_ATTEMPTS`).
    pub max_attempts: u32,
    /// First retry delay, milliseconds; doubled per attempt (`HAVEN_PUSH_BACKOFF_BASE_MS`).
    pub backoff_base_ms: u64,
    /// Longest retry delay, seconds (`HAVEN_PUSH_BACKOFF_MAX_SECS`).
    pub backoff_max_secs: u64,
    /// Wake-ups per device per hour, after coalescing (`HAVEN_PUSH_PER_DEVICE_PER_HOUR`).
    pub per_device_per_hour: u32,
    /// Wake-ups sent at once by one instance (`HAVEN_PUSH_WORKER_CONCURRENCY`).
    pub worker_concurrency: usize,
    /// How often the worker looks for due wake-ups when nothing woke it, milliseconds
    /// (`HAVEN_PUSH_POLL_INTERVAL_MS`).
    pub poll_interval_ms: u64,
    /// Timeout of one request to a push service or the gateway, seconds
    /// (`HAVEN_PUSH_REQUEST_TIMEOUT_SECS`).
    pub request_timeout_secs: u64,
    /// `TTL` header of Web Push requests: how long a push service keeps an undelivered
    /// wake-up, seconds (`HAVEN_PUSH_TTL_SECS`).
    pub ttl_secs: u64,
    /// The operator's push gateway, `https://…` (`HAVEN_PUSH_GATEWAY_URL`); unset: gateway
    /// endpoints are refused (400 `push_gateway_not_configured`).
    pub gateway_url: Option<String>,
    /// The `sub` claim of VAPID tokens: a `mailto:` or `https:` contact for push services
    /// (`HAVEN_PUSH_VAPID_SUBJECT`).
    pub vapid_subject: String,
    /// The VAPID private key, base64 (standard or url-safe) of the 32-byte P-256 scalar
    /// (`HAVEN_PUSH_VAPID_KEY`); generated and stored in the database if absent.
    pub vapid_key: Option<SecretSetting>,
    /// Accept `http://` endpoints and private, loopback or link-local addresses
    /// (`HAVEN_PUSH_ALLOW_INSECURE`): for tests only.
    pub allow_insecure: bool,
    /// When not empty, the only push-service hosts endpoints may name (exact host names, or
    /// `.example.com` for every subdomain), comma-separated (`HAVEN_PUSH_ALLOWED_HOSTS`).
    #[serde(deserialize_with = "crate::settings::values::list_or_commas")]
    pub allowed_hosts: Vec<String>,
}

impl Default for PushSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            coalesce_secs: 30,
            max_attempts: 5,
            backoff_base_ms: 2_000,
            backoff_max_secs: 600,
            per_device_per_hour: 60,
            worker_concurrency: 32,
            poll_interval_ms: 1_000,
            request_timeout_secs: 10,
            ttl_secs: 3_600,
            gateway_url: None,
            vapid_subject: "mailto:postmaster@localhost".into(),
            vapid_key: None,
            allow_insecure: false,
            allowed_hosts: Vec::new(),
        }
    }
}

impl PushSettings {
    /// Checks every value is in range.
    pub(crate) fn validate(&self) -> Result<(), SettingsError> {
        let checks: [(bool, &'static str); 9] = [
            (self.coalesce_secs <= 86_400, "push.coalesce_secs"),
            ((1..=20).contains(&self.max_attempts), "push.max_attempts"),
            (
                (1..=3_600_000).contains(&self.backoff_base_ms),
                "push.backoff_base_ms",
            ),
            (
                (1..=86_400).contains(&self.backoff_max_secs),
                "push.backoff_max_secs",
            ),
            (self.per_device_per_hour >= 1, "push.per_device_per_hour"),
            (
                (1..=1024).contains(&self.worker_concurrency),
                "push.worker_concurrency",
            ),
            (
                (10..=60_000).contains(&self.poll_interval_ms),
                "push.poll_interval_ms",
            ),
            (
                (1..=120).contains(&self.request_timeout_secs),
                "push.request_timeout_secs",
            ),
            ((1..=2_419_200).contains(&self.ttl_secs), "push.ttl_secs"),
        ];
        match checks.iter().find(|(ok, _)| !ok) {
            Some((_, name)) => Err(SettingsError::Range(name)),
            None => Ok(()),
        }
    }

    /// The checks of the gateway URL (`https://`, or `http://` with `allow_insecure`) and the
    /// VAPID subject (`mailto:` or `https:`), made when push starts (only when it is enabled).
    pub(crate) fn check_addresses(&self) -> Result<(), SettingsError> {
        let gateway_ok = self.gateway_url.as_deref().is_none_or(|u| {
            url::Url::parse(u).is_ok_and(|u| {
                u.scheme() == "https" || (self.allow_insecure && u.scheme() == "http")
            })
        });
        if !gateway_ok {
            return Err(SettingsError::Range("push.gateway_url"));
        }
        if !(self.vapid_subject.starts_with("mailto:") || self.vapid_subject.starts_with("https:"))
        {
            return Err(SettingsError::Range("push.vapid_subject"));
        }
        Ok(())
    }
}
