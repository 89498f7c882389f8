//! Typed settings: defaults, then a TOML file, then environment variables.
//!
//! Every setting is documented in `docs/SELF_HOSTING.md`. `Debug` never prints secrets.

use std::fmt;
use std::net::SocketAddr;
use std::path::Path;

use serde::Deserialize;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// Errors while loading settings.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SettingsError {
    /// The config file could not be read.
    #[error("cannot read config file: {0}")]
    Read(#[source] std::io::Error),
    /// The config file is not valid TOML for these settings.
    #[error("invalid config file: {0}")]
    Toml(#[source] toml::de::Error),
    /// An environment variable had an unparsable value; carries the variable name.
    #[error("invalid value in environment variable {0}")]
    Env(&'static str),
    /// A value is out of its allowed range; carries the setting name.
    #[error("setting {0} is out of range")]
    Range(&'static str),
}

/// A secret setting (base64 text): zeroized on drop, redacted in `Debug`, never serialized.
#[derive(Clone, Deserialize, Zeroize, ZeroizeOnDrop)]
#[serde(transparent)]
pub struct SecretSetting(String);

impl SecretSetting {
    /// Wraps a value.
    pub fn new(value: String) -> Self {
        Self(value)
    }

    /// The secret text.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretSetting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// A URL that may carry a password: `Debug` shows only the scheme.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct ConnectionUrl(String);

impl ConnectionUrl {
    /// Wraps a URL.
    pub fn new(url: impl Into<String>) -> Self {
        Self(url.into())
    }

    /// The full URL.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ConnectionUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = self.0.split(':').next().unwrap_or("");
        write!(f, "{scheme}:[redacted]")
    }
}

/// All relay settings.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// API listen address (`HAVEN_LISTEN`).
    pub listen: SocketAddr,
    /// Prometheus metrics listen address, `None` to disable (`HAVEN_METRICS_LISTEN`, `off`).
    pub metrics_listen: Option<SocketAddr>,
    /// Database URL, `sqlite:…` or `postgres://…` (`DATABASE_URL` / `HAVEN_DATABASE_URL`).
    pub database_url: ConnectionUrl,
    /// Redis URL for shared rate limits (`REDIS_URL` / `HAVEN_REDIS_URL`).
    pub redis_url: Option<ConnectionUrl>,
    /// Maximum devices per account (`HAVEN_MAX_DEVICES`).
    pub max_devices: u32,
    /// Access-token lifetime in seconds (`HAVEN_ACCESS_TOKEN_TTL_SECS`).
    pub access_token_ttl_secs: u64,
    /// Refresh-token lifetime in seconds (`HAVEN_REFRESH_TOKEN_TTL_SECS`).
    pub refresh_token_ttl_secs: u64,
    /// Maximum request body in bytes (`HAVEN_BODY_LIMIT_BYTES`).
    pub body_limit_bytes: usize,
    /// Per-request timeout in seconds (`HAVEN_REQUEST_TIMEOUT_SECS`).
    pub request_timeout_secs: u64,
    /// Origins allowed by CORS; empty means no CORS headers (`HAVEN_CORS_ALLOWED_ORIGINS`,
    /// comma-separated).
    pub cors_allowed_origins: Vec<String>,
    /// Send `Strict-Transport-Security` (`HAVEN_HSTS`).
    pub hsts: bool,
    /// Take the client address from `X-Forwarded-For` (`HAVEN_TRUSTED_PROXY`).
    pub trusted_proxy: bool,
    /// Failed logins allowed per account per window (`HAVEN_LOGIN_MAX_FAILURES`).
    pub login_max_failures: u32,
    /// Failed logins allowed per client address per window (`HAVEN_ADDR_LOGIN_MAX_FAILURES`).
    pub addr_login_max_failures: u32,
    /// Window for the failure limits in seconds (`HAVEN_LOGIN_FAILURE_WINDOW_SECS`).
    pub login_failure_window_secs: u64,
    /// Requests per minute per client address on all routes (`HAVEN_RATE_LIMIT_PER_MINUTE`).
    pub rate_limit_per_minute: u32,
    /// Requests per minute per client address on register/login (`HAVEN_AUTH_RATE_LIMIT_PER_MINUTE`).
    pub auth_rate_limit_per_minute: u32,
    /// Log filter (`HAVEN_LOG`, `RUST_LOG` syntax).
    pub log: String,
    /// Username pepper, base64 of 32 bytes; generated and stored if absent
    /// (`HAVEN_USERNAME_PEPPER`).
    pub username_pepper: Option<SecretSetting>,
    /// JWT signing key, base64 of 32–64 bytes; generated and stored if absent
    /// (`HAVEN_JWT_SECRET`).
    pub jwt_secret: Option<SecretSetting>,
    /// Serialized OPAQUE `ServerSetup`, base64; generated and stored if absent
    /// (`HAVEN_OPAQUE_SERVER_SETUP`).
    pub opaque_server_setup: Option<SecretSetting>,
    /// The WebSocket (`[ws]` section).
    pub ws: WsSettings,
    /// Channels (`[channels]` section).
    pub channels: ChannelSettings,
    /// Ed25519 seed (base64 of 32 bytes) of the key signing sender certificates; generated and
    /// stored if absent (`HAVEN_CERTIFICATE_KEY`).
    pub certificate_key: Option<SecretSetting>,
    /// Mailboxes and sealed delivery (`[mail]`).
    pub mail: MailSettings,
    /// Key directory and sender certificates (`[keys]`).
    pub keys: KeySettings,
    /// The vault's limits and retention (`[vault]` table).
    pub vault: VaultSettings,
    /// The `[database]` section: durability and group commit of the mailbox writes.
    pub database: DatabaseSettings,
    /// Blob storage, quotas and expiry (`[blobs]`).
    pub blobs: crate::blobs::BlobSettings,
}

/// The `[mail]` section: mailbox limits and expiry. Environment: `HAVEN_MAIL_<FIELD>` in upper
/// case (e.g. `HAVEN_MAIL_TTL_SECS`).
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MailSettings {
    /// Largest envelope (or per-device header plus shared payload) in bytes.
    pub max_envelope_bytes: usize,
    /// Largest per-device header of a multi-recipient send in bytes.
    pub max_header_bytes: usize,
    /// Most envelopes queued per device.
    pub max_queue_messages: u64,
    /// Most bytes queued per device.
    pub max_queue_bytes: u64,
    /// Envelopes expire (and are deleted by the reaper) this many seconds after receipt.
    pub ttl_secs: u64,
    /// `received_at` is rounded down to a multiple of this many seconds.
    pub received_at_granularity_secs: u64,
    /// Seconds between two runs of the expiry reaper.
    pub reaper_interval_secs: u64,
    /// Request body limit of the message and key routes in bytes (they carry many keys or one
    /// envelope per device, so they get more than `body_limit_bytes`).
    pub max_request_bytes: usize,
    /// Most devices (envelopes) in one send, and most recipients of a multi-recipient send.
    pub max_recipients_per_send: usize,
    /// Largest page of `GET /v1/messages`.
    pub max_fetch: u32,
    /// Most message ids in one ack.
    pub max_ack_ids: usize,
    /// Sealed sends accepted per recipient account per minute (shared limiter).
    pub sealed_sends_per_minute: u32,
}

impl Default for MailSettings {
    fn default() -> Self {
        Self {
            max_envelope_bytes: 320 * 1024,
            max_header_bytes: 1024,
            max_queue_messages: 10_000,
            max_queue_bytes: 256 << 20,
            ttl_secs: 30 * 86_400,
            received_at_granularity_secs: 60,
            reaper_interval_secs: 60,
            max_request_bytes: 4 << 20,
            max_recipients_per_send: 64,
            max_fetch: 100,
            max_ack_ids: 1000,
            sealed_sends_per_minute: 600,
        }
    }
}

/// How SQLite makes a commit durable (`PRAGMA synchronous`, in WAL mode).
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum SqliteSynchronous {
    /// `FULL`: every commit waits for the write-ahead log to reach the disk (`fsync`), so an
    /// acknowledged write survives a process crash *and* an operating-system crash or power
    /// loss. The default.
    #[default]
    Full,
    /// `NORMAL`: commits do not `fsync` (only checkpoints do). An acknowledged write survives a
    /// crash of the relay process, but the last commits before an operating-system crash or
    /// power loss may be lost (the database stays consistent).
    Normal,
}

impl std::str::FromStr for SqliteSynchronous {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        match s.to_ascii_lowercase().as_str() {
            "full" => Ok(Self::Full),
            "normal" => Ok(Self::Normal),
            _ => Err(()),
        }
    }
}

/// The `[database]` section (environment: `HAVEN_DATABASE_<FIELD>` in upper case).
///
/// Sends and acks are written by a writer task per database that commits everything queued
/// while its previous transaction was committing as one transaction (group commit), and answers
/// each caller only once its transaction committed.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseSettings {
    /// SQLite durability: `full` (default) or `normal` (`HAVEN_DATABASE_SQLITE_SYNCHRONOUS`).
    pub sqlite_synchronous: SqliteSynchronous,
    /// Most sends and acks committed together in one transaction
    /// (`HAVEN_DATABASE_MAX_WRITE_BATCH`).
    pub max_write_batch: usize,
    /// Sends and acks waiting for a writer before further ones wait for room
    /// (`HAVEN_DATABASE_WRITE_QUEUE`).
    pub write_queue: usize,
    /// Writer tasks on Postgres, each committing its own batches concurrently
    /// (`HAVEN_DATABASE_POSTGRES_WRITERS`); SQLite has one writer (it has one write lock).
    pub postgres_writers: usize,
    /// Connections of the pool (`HAVEN_DATABASE_MAX_CONNECTIONS`).
    pub max_connections: u32,
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            sqlite_synchronous: SqliteSynchronous::Full,
            max_write_batch: 512,
            write_queue: 8192,
            postgres_writers: 4,
            max_connections: 10,
        }
    }
}

impl DatabaseSettings {
    fn validate(&self) -> Result<(), SettingsError> {
        let checks: [(bool, &'static str); 5] = [
            (
                (1..=10_000).contains(&self.max_write_batch),
                "database.max_write_batch",
            ),
            (
                (1..=1_000_000).contains(&self.write_queue),
                "database.write_queue",
            ),
            (
                (1..=64).contains(&self.postgres_writers),
                "database.postgres_writers",
            ),
            (
                (2..=1000).contains(&self.max_connections),
                "database.max_connections",
            ),
            (
                // Each writer keeps a connection; at least one must be left for the rest.
                self.postgres_writers < usize::try_from(self.max_connections).unwrap_or(usize::MAX),
                "database.postgres_writers",
            ),
        ];
        match checks.iter().find(|(ok, _)| !ok) {
            Some((_, name)) => Err(SettingsError::Range(name)),
            None => Ok(()),
        }
    }
}

/// Limits and retention of the vault (`[vault]` in the TOML file, `HAVEN_VAULT_*` variables).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct VaultSettings {
    /// Largest encrypted body of one revision, bytes (`HAVEN_VAULT_MAX_BODY_BYTES`).
    pub max_body_bytes: u64,
    /// Largest encrypted metadata of one revision, bytes (`HAVEN_VAULT_MAX_META_BYTES`).
    pub max_meta_bytes: u64,
    /// Most items per account, live and soft-deleted (`HAVEN_VAULT_MAX_ITEMS`).
    pub max_items: u64,
    /// Most bytes per account, all revisions (`HAVEN_VAULT_MAX_BYTES`).
    pub max_bytes: u64,
    /// Largest page of changes or history (`HAVEN_VAULT_MAX_PAGE`).
    pub max_page: u32,
    /// Most blob bytes in one page of changes or history, at least one item is always
    /// returned (`HAVEN_VAULT_MAX_PAGE_BYTES`).
    pub max_page_bytes: u64,
    /// How long soft-deleted items are kept before they are purged, seconds
    /// (`HAVEN_VAULT_RETENTION_SECS`).
    pub retention_secs: u64,
    /// How often the purge runs, seconds (`HAVEN_VAULT_PURGE_INTERVAL_SECS`).
    pub purge_interval_secs: u64,
    /// Server timestamps are rounded down to a multiple of this, seconds
    /// (`HAVEN_VAULT_TIME_GRANULARITY_SECS`).
    pub time_granularity_secs: u64,
}

impl Default for VaultSettings {
    fn default() -> Self {
        Self {
            max_body_bytes: 1 << 20,
            max_meta_bytes: 64 * 1024,
            max_items: 100_000,
            max_bytes: 1 << 30,
            max_page: 200,
            max_page_bytes: 4 << 20,
            retention_secs: 30 * 24 * 3600,
            purge_interval_secs: 3600,
            time_granularity_secs: 3600,
        }
    }
}

/// WebSocket settings (`[ws]`; environment variables `HAVEN_WS_*`).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct WsSettings {
    /// Browser origins allowed to open a socket; a request without `Origin` (native clients) is
    /// always allowed, one with any other origin is refused (`HAVEN_WS_ALLOWED_ORIGINS`).
    pub allowed_origins: Vec<String>,
    /// Lifetime of a ticket from `POST /v1/ws/ticket` (`HAVEN_WS_TICKET_TTL_SECS`).
    pub ticket_ttl_secs: u64,
    /// Largest WebSocket message (and frame) accepted from a client; bigger ones close the socket
    /// with 1009 (`HAVEN_WS_MAX_MESSAGE_BYTES`).
    pub max_message_bytes: usize,
    /// Socket read buffer (`HAVEN_WS_READ_BUFFER_BYTES`): small keeps idle sockets cheap.
    pub read_buffer_bytes: usize,
    /// Largest ephemeral signal payload (`HAVEN_WS_MAX_SIGNAL_BYTES`).
    pub max_signal_bytes: usize,
    /// How long one write to the socket may block before the socket is closed with 1013
    /// (`HAVEN_WS_SEND_TIMEOUT_SECS`).
    pub send_timeout_secs: u64,
    /// Interval between server pings (`HAVEN_WS_PING_INTERVAL_SECS`).
    pub ping_interval_secs: u64,
    /// A socket from which nothing (not even a pong) arrived for this long is closed
    /// (`HAVEN_WS_IDLE_TIMEOUT_SECS`).
    pub idle_timeout_secs: u64,
    /// Interval of the safety poll of the mailbox in the database, in case a hint was lost
    /// (`HAVEN_WS_POLL_INTERVAL_SECS`).
    pub poll_interval_secs: u64,
    /// Envelopes delivered but not yet acknowledged, per socket, before delivery pauses
    /// (`HAVEN_WS_DELIVERY_WINDOW`).
    pub delivery_window: usize,
    /// Channel subscriptions per socket (`HAVEN_WS_MAX_SUBSCRIPTIONS`).
    pub max_subscriptions: usize,
    /// Client frames per second a socket may send; further frames in the same second are
    /// answered with `rate_limited`, and more than twice as many close the socket with 4003
    /// (`HAVEN_WS_MAX_FRAMES_PER_SEC`).
    pub max_frames_per_sec: u32,
    /// Sends and acks of one socket whose commit is awaited at once (later frames are read once
    /// one completes): a socket can keep several sends in one group commit
    /// (`HAVEN_WS_MAX_PENDING_WRITES`).
    pub max_pending_writes: usize,
}

impl Default for WsSettings {
    fn default() -> Self {
        Self {
            allowed_origins: Vec::new(),
            ticket_ttl_secs: 30,
            max_message_bytes: 512 * 1024,
            read_buffer_bytes: 4096,
            max_signal_bytes: 4096,
            send_timeout_secs: 10,
            ping_interval_secs: 30,
            idle_timeout_secs: 90,
            poll_interval_secs: 30,
            delivery_window: 256,
            max_subscriptions: 64,
            max_frames_per_sec: 2_000,
            max_pending_writes: 32,
        }
    }
}

/// Channel settings (`[channels]`; environment variables `HAVEN_CHANNEL_*`).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct ChannelSettings {
    /// Largest entry in bytes (`HAVEN_CHANNEL_MAX_ENTRY_BYTES`).
    pub max_entry_bytes: usize,
    /// Entries per channel (`HAVEN_CHANNEL_MAX_ENTRIES`).
    pub max_entries: u64,
    /// Total entry bytes per channel (`HAVEN_CHANNEL_MAX_BYTES`).
    pub max_bytes: u64,
    /// Longest lifetime a channel may ask for, and the default (`HAVEN_CHANNEL_MAX_TTL_SECS`).
    pub max_ttl_secs: u64,
    /// Largest page of `GET /v1/channels/{id}/entries` (`HAVEN_CHANNEL_PAGE_LIMIT`).
    pub page_limit: u32,
    /// Interval of the reaper that deletes expired channels and tickets
    /// (`HAVEN_CHANNEL_REAP_INTERVAL_SECS`).
    pub reap_interval_secs: u64,
}

impl Default for ChannelSettings {
    fn default() -> Self {
        Self {
            max_entry_bytes: 32 * 1024,
            max_entries: 100_000,
            max_bytes: 256 << 20,
            max_ttl_secs: 90 * 86_400,
            page_limit: 500,
            reap_interval_secs: 300,
        }
    }
}

/// The `[keys]` section: key directory limits and sender certificates. Environment:
/// `HAVEN_KEYS_<FIELD>` in upper case.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KeySettings {
    /// Most one-time keys of each kind in one upload.
    pub max_one_time_per_upload: usize,
    /// Most one-time keys of each kind stored per device.
    pub max_one_time_per_device: u32,
    /// `low` is reported by `GET /v1/keys/counts` below this many keys of either kind.
    pub low_stock_threshold: u64,
    /// Bundle requests per requesting account per minute (shared limiter).
    pub claims_per_minute_per_requester: u32,
    /// Bundle requests per target account per minute (shared limiter).
    pub claims_per_minute_per_target: u32,
    /// Lifetime of sender certificates in seconds.
    pub certificate_ttl_secs: u64,
    /// Username lookups (`POST /v1/usernames/lookup`) per requesting account per minute.
    pub username_lookups_per_minute: u32,
}

impl Default for KeySettings {
    fn default() -> Self {
        Self {
            max_one_time_per_upload: 200,
            max_one_time_per_device: 1000,
            low_stock_threshold: 10,
            claims_per_minute_per_requester: 120,
            claims_per_minute_per_target: 600,
            certificate_ttl_secs: 86_400,
            username_lookups_per_minute: 30,
        }
    }
}

impl VaultSettings {
    /// Largest JSON request body a vault write can need (both blobs in base64 plus room for
    /// the other fields), so vault routes can accept more than `body_limit_bytes`.
    pub fn request_limit_bytes(&self) -> usize {
        let blobs = self.max_body_bytes.saturating_add(self.max_meta_bytes);
        let b64 = blobs.div_ceil(3).saturating_mul(4);
        usize::try_from(b64.saturating_add(1024)).unwrap_or(usize::MAX)
    }

    fn validate(&self) -> Result<(), SettingsError> {
        let min_item = haven_protocol::vault::MIN_ITEM_LEN;
        let checks: [(bool, &'static str); 8] = [
            (
                (min_item..=16 << 20).contains(&self.max_body_bytes),
                "vault.max_body_bytes",
            ),
            (
                (min_item..=16 << 20).contains(&self.max_meta_bytes),
                "vault.max_meta_bytes",
            ),
            (self.max_items >= 1, "vault.max_items"),
            (
                self.max_bytes >= self.max_body_bytes.saturating_add(self.max_meta_bytes)
                    && i64::try_from(self.max_bytes).is_ok(),
                "vault.max_bytes",
            ),
            ((1..=10_000).contains(&self.max_page), "vault.max_page"),
            (self.max_page_bytes >= 1, "vault.max_page_bytes"),
            (
                (1..=86_400).contains(&self.purge_interval_secs)
                    && i64::try_from(self.retention_secs).is_ok(),
                "vault.purge_interval_secs",
            ),
            (
                (1..=86_400).contains(&self.time_granularity_secs),
                "vault.time_granularity_secs",
            ),
        ];
        match checks.iter().find(|(ok, _)| !ok) {
            Some((_, name)) => Err(SettingsError::Range(name)),
            None => Ok(()),
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            metrics_listen: Some(SocketAddr::from(([127, 0, 0, 1], 9464))),
            database_url: ConnectionUrl::new("sqlite://data/haven.db"),
            redis_url: None,
            max_devices: 5,
            access_token_ttl_secs: 15 * 60,
            refresh_token_ttl_secs: 30 * 24 * 3600,
            body_limit_bytes: 64 * 1024,
            request_timeout_secs: 30,
            cors_allowed_origins: Vec::new(),
            hsts: false,
            trusted_proxy: false,
            login_max_failures: 5,
            addr_login_max_failures: 20,
            login_failure_window_secs: 15 * 60,
            rate_limit_per_minute: 600,
            auth_rate_limit_per_minute: 30,
            log: "info".to_owned(),
            username_pepper: None,
            jwt_secret: None,
            opaque_server_setup: None,
            ws: WsSettings::default(),
            channels: ChannelSettings::default(),
            certificate_key: None,
            mail: MailSettings::default(),
            keys: KeySettings::default(),
            vault: VaultSettings::default(),
            database: DatabaseSettings::default(),
            blobs: crate::blobs::BlobSettings::default(),
        }
    }
}

fn parse<T: std::str::FromStr>(name: &'static str, value: &str) -> Result<T, SettingsError> {
    value.trim().parse().map_err(|_| SettingsError::Env(name))
}

fn parse_bool(name: &'static str, value: &str) -> Result<bool, SettingsError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(SettingsError::Env(name)),
    }
}

impl Settings {
    /// Loads settings: defaults, then the TOML file at `file` (if any), then the environment as
    /// read through `env` (a function so tests need not touch the process environment).
    pub fn load(
        file: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, SettingsError> {
        let mut settings = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(SettingsError::Read)?;
                Self::from_toml(&text)?
            }
            None => Self::default(),
        };
        settings.apply_env(env)?;
        settings.validate()?;
        Ok(settings)
    }

    /// Parses settings from TOML text (missing keys take their defaults).
    pub fn from_toml(text: &str) -> Result<Self, SettingsError> {
        toml::from_str(text).map_err(SettingsError::Toml)
    }

    fn apply_env(&mut self, env: impl Fn(&str) -> Option<String>) -> Result<(), SettingsError> {
        let get = |name: &str| env(name).filter(|v| !v.is_empty());
        if let Some(v) = get("HAVEN_LISTEN") {
            self.listen = parse("HAVEN_LISTEN", &v)?;
        }
        if let Some(v) = get("HAVEN_METRICS_LISTEN") {
            self.metrics_listen = if v.trim() == "off" {
                None
            } else {
                Some(parse("HAVEN_METRICS_LISTEN", &v)?)
            };
        }
        if let Some(v) = get("HAVEN_DATABASE_URL").or_else(|| get("DATABASE_URL")) {
            self.database_url = ConnectionUrl::new(v);
        }
        if let Some(v) = get("HAVEN_REDIS_URL").or_else(|| get("REDIS_URL")) {
            self.redis_url = Some(ConnectionUrl::new(v));
        }
        macro_rules! number {
            ($($field:ident).+, $name:literal) => {
                if let Some(v) = get($name) {
                    self.$($field).+ = parse($name, &v)?;
                }
            };
        }
        number!(max_devices, "HAVEN_MAX_DEVICES");
        number!(access_token_ttl_secs, "HAVEN_ACCESS_TOKEN_TTL_SECS");
        number!(refresh_token_ttl_secs, "HAVEN_REFRESH_TOKEN_TTL_SECS");
        number!(body_limit_bytes, "HAVEN_BODY_LIMIT_BYTES");
        number!(request_timeout_secs, "HAVEN_REQUEST_TIMEOUT_SECS");
        number!(login_max_failures, "HAVEN_LOGIN_MAX_FAILURES");
        number!(addr_login_max_failures, "HAVEN_ADDR_LOGIN_MAX_FAILURES");
        number!(login_failure_window_secs, "HAVEN_LOGIN_FAILURE_WINDOW_SECS");
        number!(rate_limit_per_minute, "HAVEN_RATE_LIMIT_PER_MINUTE");
        number!(
            auth_rate_limit_per_minute,
            "HAVEN_AUTH_RATE_LIMIT_PER_MINUTE"
        );
        number!(vault.max_body_bytes, "HAVEN_VAULT_MAX_BODY_BYTES");
        number!(vault.max_meta_bytes, "HAVEN_VAULT_MAX_META_BYTES");
        number!(vault.max_items, "HAVEN_VAULT_MAX_ITEMS");
        number!(vault.max_bytes, "HAVEN_VAULT_MAX_BYTES");
        number!(vault.max_page, "HAVEN_VAULT_MAX_PAGE");
        number!(vault.max_page_bytes, "HAVEN_VAULT_MAX_PAGE_BYTES");
        number!(vault.retention_secs, "HAVEN_VAULT_RETENTION_SECS");
        number!(vault.purge_interval_secs, "HAVEN_VAULT_PURGE_INTERVAL_SECS");
        number!(
            vault.time_granularity_secs,
            "HAVEN_VAULT_TIME_GRANULARITY_SECS"
        );
        number!(ws.ticket_ttl_secs, "HAVEN_WS_TICKET_TTL_SECS");
        number!(ws.max_message_bytes, "HAVEN_WS_MAX_MESSAGE_BYTES");
        number!(ws.read_buffer_bytes, "HAVEN_WS_READ_BUFFER_BYTES");
        number!(ws.max_signal_bytes, "HAVEN_WS_MAX_SIGNAL_BYTES");
        number!(ws.send_timeout_secs, "HAVEN_WS_SEND_TIMEOUT_SECS");
        number!(ws.ping_interval_secs, "HAVEN_WS_PING_INTERVAL_SECS");
        number!(ws.idle_timeout_secs, "HAVEN_WS_IDLE_TIMEOUT_SECS");
        number!(ws.poll_interval_secs, "HAVEN_WS_POLL_INTERVAL_SECS");
        number!(ws.delivery_window, "HAVEN_WS_DELIVERY_WINDOW");
        number!(ws.max_subscriptions, "HAVEN_WS_MAX_SUBSCRIPTIONS");
        number!(ws.max_frames_per_sec, "HAVEN_WS_MAX_FRAMES_PER_SEC");
        number!(ws.max_pending_writes, "HAVEN_WS_MAX_PENDING_WRITES");
        number!(channels.max_entry_bytes, "HAVEN_CHANNEL_MAX_ENTRY_BYTES");
        number!(channels.max_entries, "HAVEN_CHANNEL_MAX_ENTRIES");
        number!(channels.max_bytes, "HAVEN_CHANNEL_MAX_BYTES");
        number!(channels.max_ttl_secs, "HAVEN_CHANNEL_MAX_TTL_SECS");
        number!(channels.page_limit, "HAVEN_CHANNEL_PAGE_LIMIT");
        number!(
            channels.reap_interval_secs,
            "HAVEN_CHANNEL_REAP_INTERVAL_SECS"
        );
        let list = |v: String| -> Vec<String> {
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        };
        if let Some(v) = get("HAVEN_CORS_ALLOWED_ORIGINS") {
            self.cors_allowed_origins = list(v);
        }
        if let Some(v) = get("HAVEN_WS_ALLOWED_ORIGINS") {
            self.ws.allowed_origins = list(v);
        }
        if let Some(v) = get("HAVEN_HSTS") {
            self.hsts = parse_bool("HAVEN_HSTS", &v)?;
        }
        if let Some(v) = get("HAVEN_TRUSTED_PROXY") {
            self.trusted_proxy = parse_bool("HAVEN_TRUSTED_PROXY", &v)?;
        }
        if let Some(v) = get("HAVEN_LOG") {
            self.log = v;
        }
        if let Some(v) = get("HAVEN_USERNAME_PEPPER") {
            self.username_pepper = Some(SecretSetting::new(v));
        }
        if let Some(v) = get("HAVEN_JWT_SECRET") {
            self.jwt_secret = Some(SecretSetting::new(v));
        }
        if let Some(v) = get("HAVEN_OPAQUE_SERVER_SETUP") {
            self.opaque_server_setup = Some(SecretSetting::new(v));
        }
        if let Some(v) = get("HAVEN_CERTIFICATE_KEY") {
            self.certificate_key = Some(SecretSetting::new(v));
        }
        macro_rules! nested {
            ($section:ident . $field:ident, $name:literal) => {
                if let Some(v) = get($name) {
                    self.$section.$field = parse($name, &v)?;
                }
            };
        }
        nested!(mail.max_envelope_bytes, "HAVEN_MAIL_MAX_ENVELOPE_BYTES");
        nested!(mail.max_header_bytes, "HAVEN_MAIL_MAX_HEADER_BYTES");
        nested!(mail.max_queue_messages, "HAVEN_MAIL_MAX_QUEUE_MESSAGES");
        nested!(mail.max_queue_bytes, "HAVEN_MAIL_MAX_QUEUE_BYTES");
        nested!(mail.ttl_secs, "HAVEN_MAIL_TTL_SECS");
        nested!(
            mail.received_at_granularity_secs,
            "HAVEN_MAIL_RECEIVED_AT_GRANULARITY_SECS"
        );
        nested!(mail.reaper_interval_secs, "HAVEN_MAIL_REAPER_INTERVAL_SECS");
        nested!(mail.max_request_bytes, "HAVEN_MAIL_MAX_REQUEST_BYTES");
        nested!(
            mail.max_recipients_per_send,
            "HAVEN_MAIL_MAX_RECIPIENTS_PER_SEND"
        );
        nested!(mail.max_fetch, "HAVEN_MAIL_MAX_FETCH");
        nested!(mail.max_ack_ids, "HAVEN_MAIL_MAX_ACK_IDS");
        nested!(
            mail.sealed_sends_per_minute,
            "HAVEN_MAIL_SEALED_SENDS_PER_MINUTE"
        );
        nested!(
            keys.max_one_time_per_upload,
            "HAVEN_KEYS_MAX_ONE_TIME_PER_UPLOAD"
        );
        nested!(
            keys.max_one_time_per_device,
            "HAVEN_KEYS_MAX_ONE_TIME_PER_DEVICE"
        );
        nested!(keys.low_stock_threshold, "HAVEN_KEYS_LOW_STOCK_THRESHOLD");
        nested!(
            keys.claims_per_minute_per_requester,
            "HAVEN_KEYS_CLAIMS_PER_MINUTE_PER_REQUESTER"
        );
        nested!(
            keys.claims_per_minute_per_target,
            "HAVEN_KEYS_CLAIMS_PER_MINUTE_PER_TARGET"
        );
        nested!(keys.certificate_ttl_secs, "HAVEN_KEYS_CERTIFICATE_TTL_SECS");
        nested!(
            keys.username_lookups_per_minute,
            "HAVEN_KEYS_USERNAME_LOOKUPS_PER_MINUTE"
        );
        if let Some(v) = get("HAVEN_DATABASE_SQLITE_SYNCHRONOUS") {
            self.database.sqlite_synchronous = v
                .trim()
                .parse()
                .map_err(|()| SettingsError::Env("HAVEN_DATABASE_SQLITE_SYNCHRONOUS"))?;
        }
        nested!(database.max_write_batch, "HAVEN_DATABASE_MAX_WRITE_BATCH");
        nested!(database.write_queue, "HAVEN_DATABASE_WRITE_QUEUE");
        nested!(database.postgres_writers, "HAVEN_DATABASE_POSTGRES_WRITERS");
        nested!(database.max_connections, "HAVEN_DATABASE_MAX_CONNECTIONS");
        self.blobs.apply_env(&get)?;
        Ok(())
    }

    fn validate(&self) -> Result<(), SettingsError> {
        let checks: [(bool, &'static str); 8] = [
            ((1..=1000).contains(&self.max_devices), "max_devices"),
            (
                (10..=86_400).contains(&self.access_token_ttl_secs),
                "access_token_ttl_secs",
            ),
            (
                (60..=31_536_000).contains(&self.refresh_token_ttl_secs),
                "refresh_token_ttl_secs",
            ),
            (
                (1024..=16 << 20).contains(&self.body_limit_bytes),
                "body_limit_bytes",
            ),
            (
                (1..=3600).contains(&self.request_timeout_secs),
                "request_timeout_secs",
            ),
            (
                self.login_max_failures >= 1 && self.addr_login_max_failures >= 1,
                "login_max_failures",
            ),
            (
                (1..=86_400).contains(&self.login_failure_window_secs),
                "login_failure_window_secs",
            ),
            (
                self.rate_limit_per_minute >= 1 && self.auth_rate_limit_per_minute >= 1,
                "rate_limit_per_minute",
            ),
        ];
        let ws = &self.ws;
        let ws_checks: [(bool, &'static str); 11] = [
            (
                (1..=1_000_000).contains(&ws.max_frames_per_sec),
                "ws.max_frames_per_sec",
            ),
            (
                (1..=4096).contains(&ws.max_pending_writes),
                "ws.max_pending_writes",
            ),
            (
                (1..=600).contains(&ws.ticket_ttl_secs),
                "ws.ticket_ttl_secs",
            ),
            (
                (1024..=16 << 20).contains(&ws.max_message_bytes),
                "ws.max_message_bytes",
            ),
            (
                (256..=1 << 20).contains(&ws.read_buffer_bytes),
                "ws.read_buffer_bytes",
            ),
            (
                (1..=ws.max_message_bytes).contains(&ws.max_signal_bytes),
                "ws.max_signal_bytes",
            ),
            (
                (1..=600).contains(&ws.send_timeout_secs),
                "ws.send_timeout_secs",
            ),
            (
                ws.ping_interval_secs >= 1 && ws.idle_timeout_secs > ws.ping_interval_secs,
                "ws.idle_timeout_secs",
            ),
            (
                (1..=86_400).contains(&ws.poll_interval_secs),
                "ws.poll_interval_secs",
            ),
            (
                (1..=65_536).contains(&ws.delivery_window),
                "ws.delivery_window",
            ),
            (
                (1..=4096).contains(&ws.max_subscriptions),
                "ws.max_subscriptions",
            ),
        ];
        let ch = &self.channels;
        let channel_checks: [(bool, &'static str); 5] = [
            (
                (1..=16 << 20).contains(&ch.max_entry_bytes),
                "channels.max_entry_bytes",
            ),
            (
                ch.max_entries >= 1 && i64::try_from(ch.max_entries).is_ok(),
                "channels.max_entries",
            ),
            (
                ch.max_bytes >= 1 && i64::try_from(ch.max_bytes).is_ok(),
                "channels.max_bytes",
            ),
            (
                (60..=10 * 365 * 86_400).contains(&ch.max_ttl_secs),
                "channels.max_ttl_secs",
            ),
            (
                (1..=10_000).contains(&ch.page_limit) && ch.reap_interval_secs >= 1,
                "channels.page_limit",
            ),
        ];
        if let Some((_, name)) = ws_checks
            .iter()
            .chain(channel_checks.iter())
            .find(|(ok, _)| !ok)
        {
            return Err(SettingsError::Range(name));
        }
        let valid_origin = |o: &String| {
            (o.starts_with("https://") || o.starts_with("http://"))
                && axum::http::HeaderValue::from_str(o).is_ok()
        };
        if !self.ws.allowed_origins.iter().all(valid_origin) {
            return Err(SettingsError::Range("ws.allowed_origins"));
        }
        let origins_ok = self.cors_allowed_origins.iter().all(|o| {
            (o.starts_with("https://") || o.starts_with("http://"))
                && axum::http::HeaderValue::from_str(o).is_ok()
        });
        if !origins_ok {
            return Err(SettingsError::Range("cors_allowed_origins"));
        }
        let (mail, keys) = (&self.mail, &self.keys);
        let nested: [(bool, &'static str); 13] = [
            (
                (64..=64 << 20).contains(&mail.max_envelope_bytes),
                "mail.max_envelope_bytes",
            ),
            (
                (16..=64 << 10).contains(&mail.max_header_bytes),
                "mail.max_header_bytes",
            ),
            (mail.max_queue_messages >= 1, "mail.max_queue_messages"),
            (
                mail.max_queue_bytes >= mail.max_envelope_bytes as u64,
                "mail.max_queue_bytes",
            ),
            (
                (60..=366 * 86_400).contains(&mail.ttl_secs),
                "mail.ttl_secs",
            ),
            (
                (1..=3600).contains(&mail.received_at_granularity_secs),
                "mail.received_at_granularity_secs",
            ),
            (
                (1..=86_400).contains(&mail.reaper_interval_secs),
                "mail.reaper_interval_secs",
            ),
            (
                (1024..=256 << 20).contains(&mail.max_request_bytes),
                "mail.max_request_bytes",
            ),
            (
                (1..=10_000).contains(&mail.max_recipients_per_send)
                    && (1..=10_000).contains(&mail.max_fetch)
                    && (1..=100_000).contains(&mail.max_ack_ids),
                "mail.max_recipients_per_send",
            ),
            (
                mail.sealed_sends_per_minute >= 1,
                "mail.sealed_sends_per_minute",
            ),
            (
                (1..=10_000).contains(&keys.max_one_time_per_upload)
                    && keys.max_one_time_per_device >= 1,
                "keys.max_one_time_per_upload",
            ),
            (
                keys.claims_per_minute_per_requester >= 1 && keys.claims_per_minute_per_target >= 1,
                "keys.claims_per_minute_per_requester",
            ),
            (
                (60..=30 * 86_400).contains(&keys.certificate_ttl_secs),
                "keys.certificate_ttl_secs",
            ),
        ];
        if let Some((_, name)) = nested.iter().find(|(ok, _)| !ok) {
            return Err(SettingsError::Range(name));
        }
        self.vault.validate()?;
        self.database.validate()?;
        self.blobs.validate()?;
        match checks.iter().find(|(ok, _)| !ok) {
            Some((_, name)) => Err(SettingsError::Range(name)),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        }
    }

    /// Today's environment names and the setting each sets, copied once from the hand-written
    /// mapping that the derived one replaced: every one of them must keep working.
    const OLD_ENV_NAMES: &[(&str, &str)] = &[
        ("HAVEN_MAX_DEVICES", "max_devices"),
        ("HAVEN_ACCESS_TOKEN_TTL_SECS", "access_token_ttl_secs"),
        ("HAVEN_REFRESH_TOKEN_TTL_SECS", "refresh_token_ttl_secs"),
        ("HAVEN_BODY_LIMIT_BYTES", "body_limit_bytes"),
        ("HAVEN_REQUEST_TIMEOUT_SECS", "request_timeout_secs"),
        ("HAVEN_LOGIN_MAX_FAILURES", "login_max_failures"),
        ("HAVEN_ADDR_LOGIN_MAX_FAILURES", "addr_login_max_failures"),
        (
            "HAVEN_LOGIN_FAILURE_WINDOW_SECS",
            "login_failure_window_secs",
        ),
        ("HAVEN_RATE_LIMIT_PER_MINUTE", "rate_limit_per_minute"),
        (
            "HAVEN_AUTH_RATE_LIMIT_PER_MINUTE",
            "auth_rate_limit_per_minute",
        ),
        ("HAVEN_VAULT_MAX_BODY_BYTES", "vault.max_body_bytes"),
        ("HAVEN_VAULT_MAX_META_BYTES", "vault.max_meta_bytes"),
        ("HAVEN_VAULT_MAX_ITEMS", "vault.max_items"),
        ("HAVEN_VAULT_MAX_BYTES", "vault.max_bytes"),
        ("HAVEN_VAULT_MAX_PAGE", "vault.max_page"),
        ("HAVEN_VAULT_MAX_PAGE_BYTES", "vault.max_page_bytes"),
        ("HAVEN_VAULT_RETENTION_SECS", "vault.retention_secs"),
        (
            "HAVEN_VAULT_PURGE_INTERVAL_SECS",
            "vault.purge_interval_secs",
        ),
        (
            "HAVEN_VAULT_TIME_GRANULARITY_SECS",
            "vault.time_granularity_secs",
        ),
        ("HAVEN_WS_TICKET_TTL_SECS", "ws.ticket_ttl_secs"),
        ("HAVEN_WS_MAX_MESSAGE_BYTES", "ws.max_message_bytes"),
        ("HAVEN_WS_READ_BUFFER_BYTES", "ws.read_buffer_bytes"),
        ("HAVEN_WS_MAX_SIGNAL_BYTES", "ws.max_signal_bytes"),
        ("HAVEN_WS_SEND_TIMEOUT_SECS", "ws.send_timeout_secs"),
        ("HAVEN_WS_PING_INTERVAL_SECS", "ws.ping_interval_secs"),
        ("HAVEN_WS_IDLE_TIMEOUT_SECS", "ws.idle_timeout_secs"),
        ("HAVEN_WS_POLL_INTERVAL_SECS", "ws.poll_interval_secs"),
        ("HAVEN_WS_DELIVERY_WINDOW", "ws.delivery_window"),
        ("HAVEN_WS_MAX_SUBSCRIPTIONS", "ws.max_subscriptions"),
        ("HAVEN_WS_MAX_FRAMES_PER_SEC", "ws.max_frames_per_sec"),
        ("HAVEN_WS_MAX_PENDING_WRITES", "ws.max_pending_writes"),
        ("HAVEN_CHANNEL_MAX_ENTRY_BYTES", "channels.max_entry_bytes"),
        ("HAVEN_CHANNEL_MAX_ENTRIES", "channels.max_entries"),
        ("HAVEN_CHANNEL_MAX_BYTES", "channels.max_bytes"),
        ("HAVEN_CHANNEL_MAX_TTL_SECS", "channels.max_ttl_secs"),
        ("HAVEN_CHANNEL_PAGE_LIMIT", "channels.page_limit"),
        (
            "HAVEN_CHANNEL_REAP_INTERVAL_SECS",
            "channels.reap_interval_secs",
        ),
        ("HAVEN_MAIL_MAX_ENVELOPE_BYTES", "mail.max_envelope_bytes"),
        ("HAVEN_MAIL_MAX_HEADER_BYTES", "mail.max_header_bytes"),
        ("HAVEN_MAIL_MAX_QUEUE_MESSAGES", "mail.max_queue_messages"),
        ("HAVEN_MAIL_MAX_QUEUE_BYTES", "mail.max_queue_bytes"),
        ("HAVEN_MAIL_TTL_SECS", "mail.ttl_secs"),
        (
            "HAVEN_MAIL_RECEIVED_AT_GRANULARITY_SECS",
            "mail.received_at_granularity_secs",
        ),
        (
            "HAVEN_MAIL_REAPER_INTERVAL_SECS",
            "mail.reaper_interval_secs",
        ),
        ("HAVEN_MAIL_MAX_REQUEST_BYTES", "mail.max_request_bytes"),
        (
            "HAVEN_MAIL_MAX_RECIPIENTS_PER_SEND",
            "mail.max_recipients_per_send",
        ),
        ("HAVEN_MAIL_MAX_FETCH", "mail.max_fetch"),
        ("HAVEN_MAIL_MAX_ACK_IDS", "mail.max_ack_ids"),
        (
            "HAVEN_MAIL_SEALED_SENDS_PER_MINUTE",
            "mail.sealed_sends_per_minute",
        ),
        (
            "HAVEN_KEYS_MAX_ONE_TIME_PER_UPLOAD",
            "keys.max_one_time_per_upload",
        ),
        (
            "HAVEN_KEYS_MAX_ONE_TIME_PER_DEVICE",
            "keys.max_one_time_per_device",
        ),
        ("HAVEN_KEYS_LOW_STOCK_THRESHOLD", "keys.low_stock_threshold"),
        (
            "HAVEN_KEYS_CLAIMS_PER_MINUTE_PER_REQUESTER",
            "keys.claims_per_minute_per_requester",
        ),
        (
            "HAVEN_KEYS_CLAIMS_PER_MINUTE_PER_TARGET",
            "keys.claims_per_minute_per_target",
        ),
        (
            "HAVEN_KEYS_CERTIFICATE_TTL_SECS",
            "keys.certificate_ttl_secs",
        ),
        (
            "HAVEN_KEYS_USERNAME_LOOKUPS_PER_MINUTE",
            "keys.username_lookups_per_minute",
        ),
        ("HAVEN_DATABASE_MAX_WRITE_BATCH", "database.max_write_batch"),
        ("HAVEN_DATABASE_WRITE_QUEUE", "database.write_queue"),
        (
            "HAVEN_DATABASE_POSTGRES_WRITERS",
            "database.postgres_writers",
        ),
        ("HAVEN_DATABASE_MAX_CONNECTIONS", "database.max_connections"),
        ("HAVEN_BLOBS_MAX_BLOB_BYTES", "blobs.max_blob_bytes"),
        ("HAVEN_BLOBS_QUOTA_BYTES", "blobs.quota_bytes"),
        ("HAVEN_BLOBS_MAX_BLOBS", "blobs.max_blobs"),
        ("HAVEN_BLOBS_PART_SIZE_BYTES", "blobs.part_size_bytes"),
        ("HAVEN_BLOBS_URL_TTL_SECS", "blobs.url_ttl_secs"),
        ("HAVEN_BLOBS_DEFAULT_TTL_SECS", "blobs.default_ttl_secs"),
        ("HAVEN_BLOBS_MAX_TTL_SECS", "blobs.max_ttl_secs"),
        ("HAVEN_BLOBS_PENDING_TTL_SECS", "blobs.pending_ttl_secs"),
        ("HAVEN_BLOBS_GC_INTERVAL_SECS", "blobs.gc_interval_secs"),
        (
            "HAVEN_BLOBS_TRANSFER_TIMEOUT_SECS",
            "blobs.transfer_timeout_secs",
        ),
        ("DATABASE_URL", "database_url"),
        ("HAVEN_BLOBS_BACKEND", "blobs.backend"),
        ("HAVEN_BLOBS_DIR", "blobs.dir"),
        ("HAVEN_BLOBS_S3_ACCESS_KEY_ID", "blobs.s3_access_key_id"),
        ("HAVEN_BLOBS_S3_ALLOW_HTTP", "blobs.s3_allow_http"),
        ("HAVEN_BLOBS_S3_BUCKET", "blobs.s3_bucket"),
        ("HAVEN_BLOBS_S3_ENDPOINT", "blobs.s3_endpoint"),
        ("HAVEN_BLOBS_S3_REGION", "blobs.s3_region"),
        (
            "HAVEN_BLOBS_S3_SECRET_ACCESS_KEY",
            "blobs.s3_secret_access_key",
        ),
        ("HAVEN_BLOBS_TOKEN_SECRET", "blobs.token_secret"),
        ("HAVEN_CERTIFICATE_KEY", "certificate_key"),
        ("HAVEN_CORS_ALLOWED_ORIGINS", "cors_allowed_origins"),
        (
            "HAVEN_DATABASE_SQLITE_SYNCHRONOUS",
            "database.sqlite_synchronous",
        ),
        ("HAVEN_DATABASE_URL", "database_url"),
        ("HAVEN_HSTS", "hsts"),
        ("HAVEN_JWT_SECRET", "jwt_secret"),
        ("HAVEN_LISTEN", "listen"),
        ("HAVEN_LOG", "log"),
        ("HAVEN_METRICS_LISTEN", "metrics_listen"),
        ("HAVEN_OPAQUE_SERVER_SETUP", "opaque_server_setup"),
        ("HAVEN_REDIS_URL", "redis_url"),
        ("HAVEN_TRUSTED_PROXY", "trusted_proxy"),
        ("HAVEN_USERNAME_PEPPER", "username_pepper"),
        ("HAVEN_WS_ALLOWED_ORIGINS", "ws.allowed_origins"),
        ("REDIS_URL", "redis_url"),
    ];

    /// Loads from `pairs` without range checks, so one setting can be changed alone.
    fn load_unchecked(pairs: &[(&str, &str)]) -> Result<Settings, SettingsError> {
        let mut settings = Settings::default();
        settings.apply_env(env_of(pairs))?;
        Ok(settings)
    }

    /// The settings' `{:#?}` output as `path → value` (`mail.ttl_secs → 2592000`), values on
    /// one line with the trailing commas of multi-line values removed.
    fn debug_fields(settings: &Settings) -> std::collections::BTreeMap<String, String> {
        let text = format!("{settings:#?}");
        let mut fields = std::collections::BTreeMap::new();
        let (mut section, mut current) = (None::<String>, None::<String>);
        for line in text.lines().skip(1) {
            let indent = line.len() - line.trim_start().len();
            let body = line.trim();
            let named = body.split_once(": ").filter(|(k, _)| {
                k.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            });
            match (indent, named) {
                (4, Some((key, value))) if value.ends_with(" {") => {
                    section = Some(key.to_owned());
                    current = None;
                }
                (4 | 8, Some((key, value))) => {
                    let path = match (indent, &section) {
                        (8, Some(section)) => format!("{section}.{key}"),
                        _ => {
                            section = None;
                            key.to_owned()
                        }
                    };
                    fields.insert(path.clone(), value.to_owned());
                    current = Some(path);
                }
                (4, None) => {
                    // The closing line of a section or of a multi-line top-level value.
                    if body.starts_with('}') {
                        section = None;
                        current = None;
                    } else if let Some(path) = &current {
                        fields.entry(path.clone()).or_default().push_str(body);
                    }
                }
                _ => {
                    if let Some(path) = &current {
                        fields.entry(path.clone()).or_default().push_str(body);
                    }
                }
            }
        }
        for value in fields.values_mut() {
            *value = value.replace(",]", "]").replace(",)", ")");
            while value.ends_with(',') {
                value.pop();
            }
        }
        fields
    }

    /// A valid value for the setting whose default prints as `default`, different from it, and
    /// what it prints as once set (several forms for strings that may be secrets or URLs).
    fn sample_value(default: &str, i: usize) -> (String, Vec<String>) {
        let k = 1 + (i % 3) as u64;
        if let Ok(n) = default.parse::<u64>() {
            // Below the default: every default is comfortably above its minimum.
            let v = (n - k).to_string();
            return (v.clone(), vec![v]);
        }
        let one = |v: String, shown: String| (v, vec![shown]);
        match default {
            "false" => one(
                ["yes", "on", "1", "TRUE"][i % 4].to_owned(),
                "true".to_owned(),
            ),
            "true" => one(
                ["no", "off", "0", "False"][i % 4].to_owned(),
                "false".to_owned(),
            ),
            "[]" => one(
                format!("https://a{i}.example, https://b.example"),
                format!("[\"https://a{i}.example\",\"https://b.example\"]"),
            ),
            "Local" => one("s3".to_owned(), "S3".to_owned()),
            "Full" => one("NORMAL".to_owned(), "Normal".to_owned()),
            "None" => (
                format!("v{i}"),
                vec![
                    format!("Some(\"v{i}\")"),
                    "Some([redacted])".to_owned(),
                    format!("Some(v{i}:[redacted])"),
                ],
            ),
            _ if default.contains("127.0.0.1:") => {
                let addr = format!("127.0.0.1:{}", 20_000 + i);
                let shown = if default.starts_with("Some(") {
                    format!("Some({addr})")
                } else {
                    addr.clone()
                };
                one(addr, shown)
            }
            _ if default.ends_with(":[redacted]") => one(
                format!("postgres://u:pw{i}@db/x"),
                "postgres:[redacted]".to_owned(),
            ),
            _ if default.starts_with('"') => one(format!("w{i}"), format!("\"w{i}\"")),
            _ => panic!("no sample value for a setting whose default is {default}"),
        }
    }

    /// Sets `name` alone and checks that exactly the setting `path` changed, to the value set.
    fn assert_lands(name: &str, path: &str, i: usize) {
        let defaults = debug_fields(&Settings::default());
        let default = defaults
            .get(path)
            .unwrap_or_else(|| panic!("{name}: no setting {path}"));
        let (value, shown) = sample_value(default, i);
        let loaded =
            load_unchecked(&[(name, &value)]).unwrap_or_else(|e| panic!("{name}={value}: {e}"));
        let fields = debug_fields(&loaded);
        let changed: Vec<&String> = fields
            .iter()
            .filter(|(k, v)| defaults.get(*k) != Some(*v))
            .map(|(k, _)| k)
            .collect();
        assert_eq!(changed, [path], "{name}={value} changed {changed:?}");
        assert!(
            shown.contains(&fields[path]),
            "{name}={value} set {path} to {}, expected one of {shown:?}",
            fields[path]
        );
    }

    #[test]
    fn old_env_names_still_land_in_their_fields() {
        assert_eq!(OLD_ENV_NAMES.len(), 95);
        for (i, (name, path)) in OLD_ENV_NAMES.iter().enumerate() {
            assert_lands(name, path, i);
        }
    }

    #[test]
    fn defaults_then_file_then_env() {
        let dir = std::env::temp_dir().join(format!("haven-settings-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("relay.toml");
        std::fs::write(
            &file,
            "max_devices = 3\nhsts = true\nlisten = \"127.0.0.1:9000\"\n",
        )
        .unwrap();
        let s = Settings::load(
            Some(&file),
            env_of(&[
                ("HAVEN_LISTEN", "127.0.0.1:0"),
                ("DATABASE_URL", "postgres://u:hunter2@db/x"),
                (
                    "HAVEN_CORS_ALLOWED_ORIGINS",
                    "https://a.example, https://b.example",
                ),
                ("HAVEN_METRICS_LISTEN", "off"),
            ]),
        )
        .unwrap();
        assert_eq!(s.max_devices, 3);
        assert!(s.hsts);
        assert_eq!(s.listen, SocketAddr::from(([127, 0, 0, 1], 0)));
        assert_eq!(s.database_url.expose(), "postgres://u:hunter2@db/x");
        assert_eq!(
            s.cors_allowed_origins,
            ["https://a.example", "https://b.example"]
        );
        assert_eq!(s.metrics_listen, None);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn debug_redacts_secrets_and_urls() {
        let s = Settings::load(
            None,
            env_of(&[
                ("DATABASE_URL", "postgres://u:hunter2@db/x"),
                ("REDIS_URL", "redis://:sekret@r:6379"),
                ("HAVEN_JWT_SECRET", "c2VjcmV0LWp3dA=="),
                ("HAVEN_USERNAME_PEPPER", "cGVwcGVy"),
            ]),
        )
        .unwrap();
        let debug = format!("{s:?}");
        for secret in ["hunter2", "sekret", "c2VjcmV0LWp3dA==", "cGVwcGVy"] {
            assert!(!debug.contains(secret), "{secret} leaked in {debug}");
        }
        assert!(debug.contains("postgres:[redacted]"));
    }

    #[test]
    fn bad_values_are_rejected() {
        assert!(matches!(
            Settings::load(None, env_of(&[("HAVEN_MAX_DEVICES", "many")])),
            Err(SettingsError::Env("HAVEN_MAX_DEVICES"))
        ));
        assert!(matches!(
            Settings::load(None, env_of(&[("HAVEN_MAX_DEVICES", "0")])),
            Err(SettingsError::Range("max_devices"))
        ));
        assert!(matches!(
            Settings::from_toml("unknown_key = 1"),
            Err(SettingsError::Toml(_))
        ));
        assert!(matches!(
            Settings::load(None, env_of(&[("HAVEN_VAULT_MAX_BODY_BYTES", "100")])),
            Err(SettingsError::Range("vault.max_body_bytes"))
        ));
        assert!(matches!(
            Settings::from_toml("[vault]\nunknown = 1"),
            Err(SettingsError::Toml(_))
        ));
    }

    #[test]
    fn vault_table_and_env() {
        let s = Settings::from_toml("[vault]\nmax_items = 7\nretention_secs = 60\n").unwrap();
        assert_eq!(s.vault.max_items, 7);
        assert_eq!(s.vault.retention_secs, 60);
        assert_eq!(s.vault.max_page, VaultSettings::default().max_page);
        let s = Settings::load(None, env_of(&[("HAVEN_VAULT_MAX_BYTES", "9999999")])).unwrap();
        assert_eq!(s.vault.max_bytes, 9_999_999);
        assert!(s.vault.request_limit_bytes() > 4 * (1 << 20) / 3);
    }
}
