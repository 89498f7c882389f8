//! Typed settings: defaults, then a TOML file, then environment variables, layered by
//! [`figment`].
//!
//! Every setting is documented in `docs/SELF_HOSTING.md`. `Debug` never prints secrets.
//!
//! # Environment variables
//!
//! The names are derived from the structs' serde field names, not listed by hand:
//! `HAVEN_<FIELD>` sets a top-level setting (`HAVEN_MAX_DEVICES` → `max_devices`) and
//! `HAVEN_<SECTION>_<FIELD>` a setting of a section (`HAVEN_MAIL_TTL_SECS` → `mail.ttl_secs`),
//! in upper case, with the section prefixes of `SECTIONS`. Two exceptions, kept from before:
//! the `[channels]` variables are `HAVEN_CHANNEL_*` (singular), and `database_url` and
//! `redis_url` also read the conventional `DATABASE_URL` and `REDIS_URL` when their `HAVEN_`
//! name is unset (`FALLBACKS`).
//!
//! An empty variable counts as unset. Values are trimmed, then read as the field's type: numbers
//! in decimal, booleans as `1`/`true`/`yes`/`on` or `0`/`false`/`no`/`off` in any case, lists as
//! comma-separated text, `HAVEN_METRICS_LISTEN=off` as no metrics listener. A value that does not
//! fit is an error naming the variable ([`SettingsError::Env`]).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;

use figment::providers::{Format, Toml};
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};
use serde::{Deserialize, Deserializer};

pub mod values;

pub use values::{ConnectionUrl, SecretSetting, SettingsError};

/// Most trusted proxies in a chain (`trusted_proxy_hops`).
pub const MAX_PROXY_HOPS: u8 = 16;

/// All relay settings.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// API listen address (`HAVEN_LISTEN`).
    pub listen: SocketAddr,
    /// Prometheus metrics listen address, `None` to disable (`HAVEN_METRICS_LISTEN`, `off`).
    #[serde(deserialize_with = "address_or_off")]
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
    #[serde(deserialize_with = "values::list_or_commas")]
    pub cors_allowed_origins: Vec<String>,
    /// Send `Strict-Transport-Security` (`HAVEN_HSTS`).
    pub hsts: bool,
    /// One trusted reverse proxy in front appends the client address to `X-Forwarded-For`
    /// (`HAVEN_TRUSTED_PROXY`); the same as `trusted_proxy_hops = 1`.
    pub trusted_proxy: bool,
    /// How many trusted reverse proxies are chained in front, each appending to
    /// `X-Forwarded-For` (`HAVEN_TRUSTED_PROXY_HOPS`, 0..=16; 0 defers to `trusted_proxy`).
    /// See [`Settings::proxy_hops`].
    pub trusted_proxy_hops: u8,
    /// Bits of an IPv4 address the per-address limits count (`HAVEN_ADDR_PREFIX_V4`, 1..=32).
    pub addr_prefix_v4: u8,
    /// Bits of an IPv6 address the per-address limits count (`HAVEN_ADDR_PREFIX_V6`, 1..=128).
    pub addr_prefix_v6: u8,
    /// Key sealing TOTP secrets at rest, base64 of 32 bytes (`HAVEN_TOTP_KEY`). Absent: read
    /// from (or created in) `totp_key_file`. See `accounts::totp`.
    pub totp_key: Option<SecretSetting>,
    /// Earlier TOTP sealing keys, comma-separated base64, still accepted for reading; rows
    /// sealed under them are sealed again under the current key (`HAVEN_TOTP_PREVIOUS_KEYS`).
    pub totp_previous_keys: Option<SecretSetting>,
    /// File holding the TOTP sealing key (base64), created with mode 0600 and a random key if
    /// absent, when `totp_key` is unset (`HAVEN_TOTP_KEY_FILE`). Unset: `totp.key` next to an
    /// SQLite database file; required (or `totp_key`) with Postgres.
    pub totp_key_file: Option<std::path::PathBuf>,
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
    pub blobs: crate::blobs::settings::BlobSettings,
    /// Abuse reports, franking keys, sanctions and address bans (`[moderation]`).
    pub moderation: crate::moderation::settings::ModerationSettings,
    /// The security audit log (`[audit]`).
    pub audit: crate::moderation::settings::AuditSettings,
    /// Content-free wake-ups of devices without a socket (`[push]`).
    pub push: crate::push::settings::PushSettings,
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
    /// Logged-in (not sealed) stored sends accepted per (sender account, recipient account)
    /// pair per minute (shared limiter); sends to the own account are not counted.
    pub pair_sends_per_minute: u32,
    /// The same per day: one sender alone cannot fill another account's queue within the TTL.
    pub pair_sends_per_day: u32,
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
            pair_sends_per_minute: 30,
            pair_sends_per_day: 300,
        }
    }
}

/// How SQLite makes a commit durable (`PRAGMA synchronous`, in WAL mode): `full` or `normal`,
/// in any case.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
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

impl<'de> Deserialize<'de> for SqliteSynchronous {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.trim()
            .parse()
            .map_err(|()| serde::de::Error::unknown_variant(&text, &["full", "normal"]))
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
    #[serde(deserialize_with = "values::list_or_commas")]
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
            read_buffer_bytes: 2048,
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
    /// `PUT /v1/keys` uploads per device per hour (shared limiter).
    pub uploads_per_hour: u32,
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
            uploads_per_hour: 20,
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
            trusted_proxy_hops: 0,
            addr_prefix_v4: 32,
            addr_prefix_v6: 64,
            totp_key: None,
            totp_previous_keys: None,
            totp_key_file: None,
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
            blobs: crate::blobs::settings::BlobSettings::default(),
            moderation: crate::moderation::settings::ModerationSettings::default(),
            audit: crate::moderation::settings::AuditSettings::default(),
            push: crate::push::settings::PushSettings::default(),
        }
    }
}

impl Settings {
    /// Loads settings: defaults, then the TOML file at `file` (if any), then the environment as
    /// read through `env` (a function so tests need not touch the process environment), then
    /// checks every value's range.
    pub fn load(
        file: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, SettingsError> {
        let settings = Self::load_unchecked(file, env)?;
        settings.validate()?;
        Ok(settings)
    }

    fn load_unchecked(
        file: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, SettingsError> {
        let mut figment = Figment::new();
        if let Some(path) = file {
            // figment would take a missing file for an empty one.
            std::fs::read_to_string(path).map_err(SettingsError::Read)?;
            // The file alone first, read as strictly as `from_toml` reads it: the lossy reading
            // below ("yes" for a boolean, "5" for a number) is meant for environment strings.
            // Its errors name the file.
            Figment::from(Toml::file_exact(path))
                .extract::<Self>()
                .map_err(|err| SettingsError::Toml(Box::new(err)))?;
            figment = figment.merge(Toml::file_exact(path));
        }
        let env = EnvVars::read(env);
        figment.merge(&env).extract_lossy().map_err(|err| {
            let from_env = err
                .metadata
                .as_ref()
                .is_some_and(|m| m.name == EnvVars::NAME);
            match env.names.get(&err.path.join(".")) {
                Some(name) if from_env => SettingsError::Env(name.clone()),
                _ => SettingsError::Toml(Box::new(err)),
            }
        })
    }

    /// Parses settings from TOML text (missing keys take their defaults).
    pub fn from_toml(text: &str) -> Result<Self, SettingsError> {
        Figment::from(Toml::string(text))
            .extract()
            .map_err(|err| SettingsError::Toml(Box::new(err)))
    }

    /// The names among `names` (say, those of the process environment) that start with
    /// `HAVEN_` but that no setting reads, `HAVEN_CONFIG` (the file's path) excepted: most
    /// likely misspelt, worth a warning. Not an error: other Haven tools read `HAVEN_*`
    /// variables of their own (`HAVEN_RELAY_URL`, …) that may be set in the same environment.
    pub fn unknown_env_vars<'a>(names: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
        let known: Vec<String> = env_keys().into_iter().flat_map(|k| k.names).collect();
        names
            .into_iter()
            .filter(|n| {
                n.starts_with("HAVEN_") && *n != "HAVEN_CONFIG" && !n.starts_with("HAVEN_TEST_")
            })
            .filter(|n| !known.iter().any(|k| k == n))
            .collect()
    }

    /// How many trusted proxies append to `X-Forwarded-For`: `trusted_proxy_hops` if set, else
    /// 1 with `trusted_proxy`, else 0 (the socket peer is the client).
    pub fn proxy_hops(&self) -> u8 {
        match (self.trusted_proxy_hops, self.trusted_proxy) {
            (0, true) => 1,
            (hops, _) => hops,
        }
    }

    fn validate(&self) -> Result<(), SettingsError> {
        let address_checks: [(bool, &'static str); 3] = [
            (
                self.trusted_proxy_hops <= MAX_PROXY_HOPS,
                "trusted_proxy_hops",
            ),
            ((1..=32).contains(&self.addr_prefix_v4), "addr_prefix_v4"),
            ((1..=128).contains(&self.addr_prefix_v6), "addr_prefix_v6"),
        ];
        if let Some((_, name)) = address_checks.iter().find(|(ok, _)| !ok) {
            return Err(SettingsError::Range(name));
        }
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
                per_minute(self.rate_limit_per_minute)
                    && per_minute(self.auth_rate_limit_per_minute),
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
        let nested: [(bool, &'static str); 17] = [
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
                per_minute(mail.sealed_sends_per_minute),
                "mail.sealed_sends_per_minute",
            ),
            (
                per_minute(mail.pair_sends_per_minute),
                "mail.pair_sends_per_minute",
            ),
            (mail.pair_sends_per_day >= 1, "mail.pair_sends_per_day"),
            (keys.uploads_per_hour >= 1, "keys.uploads_per_hour"),
            (
                (1..=10_000).contains(&keys.max_one_time_per_upload)
                    && keys.max_one_time_per_device >= 1,
                "keys.max_one_time_per_upload",
            ),
            (
                per_minute(keys.claims_per_minute_per_requester)
                    && per_minute(keys.claims_per_minute_per_target),
                "keys.claims_per_minute_per_requester",
            ),
            (
                per_minute(keys.username_lookups_per_minute),
                "keys.username_lookups_per_minute",
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
        self.moderation.validate()?;
        self.audit.validate()?;
        self.push.validate()?;
        match checks.iter().find(|(ok, _)| !ok) {
            Some((_, name)) => Err(SettingsError::Range(name)),
            None => Ok(()),
        }
    }
}

/// `metrics_listen`: an address, or `off` for none.
fn address_or_off<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<SocketAddr>, D::Error> {
    let text = String::deserialize(deserializer)?;
    match text.trim() {
        "off" => Ok(None),
        addr => addr.parse().map(Some).map_err(serde::de::Error::custom),
    }
}

/// The sections (TOML tables) of [`Settings`], the prefix of their environment variables
/// (`HAVEN_<PREFIX>_<FIELD>`), and their field names. The prefix is the section's name in upper
/// case except for `channels`, whose variables have always been `HAVEN_CHANNEL_*`.
type FieldNames = fn() -> &'static [&'static str];
const SECTIONS: [(&str, &str, FieldNames); 10] = [
    ("ws", "WS", field_names::<WsSettings>),
    ("channels", "CHANNEL", field_names::<ChannelSettings>),
    ("mail", "MAIL", field_names::<MailSettings>),
    ("keys", "KEYS", field_names::<KeySettings>),
    ("vault", "VAULT", field_names::<VaultSettings>),
    ("database", "DATABASE", field_names::<DatabaseSettings>),
    (
        "blobs",
        "BLOBS",
        field_names::<crate::blobs::settings::BlobSettings>,
    ),
    (
        "moderation",
        "MODERATION",
        field_names::<crate::moderation::settings::ModerationSettings>,
    ),
    (
        "audit",
        "AUDIT",
        field_names::<crate::moderation::settings::AuditSettings>,
    ),
    (
        "push",
        "PUSH",
        field_names::<crate::push::settings::PushSettings>,
    ),
];

/// Top-level settings also read from a conventional name, when their `HAVEN_` name is unset
/// or empty.
/// The most hits a per-minute quota can allow: the rate limiter spends at least one
/// microsecond per hit (`haven_ratelimit::Quota`), and a setting above this would be accepted
/// at startup and then fail every request it applies to.
pub const MAX_PER_MINUTE: u32 = 60_000_000;

/// A per-minute quota the rate limiter can enforce: 1 to [`MAX_PER_MINUTE`].
fn per_minute(quota: u32) -> bool {
    (1..=MAX_PER_MINUTE).contains(&quota)
}

const FALLBACKS: [(&str, &str); 2] = [("database_url", "DATABASE_URL"), ("redis_url", "REDIS_URL")];

/// One setting as the environment sets it.
struct EnvKey {
    /// `field` or `section.field`.
    path: String,
    /// The variables it is read from, the first set one wins.
    names: Vec<String>,
}

/// Every setting's environment variables, derived from the field names of the structs.
fn env_keys() -> Vec<EnvKey> {
    let mut keys = Vec::new();
    for &field in field_names::<Settings>() {
        match SECTIONS.iter().find(|(section, ..)| *section == field) {
            Some((section, prefix, fields)) => keys.extend(fields().iter().map(|f| EnvKey {
                path: format!("{section}.{f}"),
                names: vec![format!("HAVEN_{prefix}_{}", f.to_ascii_uppercase())],
            })),
            None => keys.push(EnvKey {
                path: field.to_owned(),
                names: std::iter::once(format!("HAVEN_{}", field.to_ascii_uppercase()))
                    .chain(
                        FALLBACKS
                            .iter()
                            .filter(|(f, _)| *f == field)
                            .map(|(_, n)| (*n).to_owned()),
                    )
                    .collect(),
            }),
        }
    }
    keys
}

/// The field names serde derives for the struct `T`, read by letting `T` deserialize itself
/// from a deserializer that only records them.
fn field_names<T: serde::de::DeserializeOwned>() -> &'static [&'static str] {
    use serde::de::{Error, Visitor};
    struct Probe<'a>(&'a mut &'static [&'static str]);
    impl<'de> Deserializer<'de> for Probe<'_> {
        type Error = serde::de::value::Error;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(Self::Error::custom("not a struct"))
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Self::Error> {
            *self.0 = fields;
            Err(Self::Error::custom("fields recorded"))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
            option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
            ignored_any
        }
    }
    let mut fields: &'static [&'static str] = &[];
    // Always an error: the probe only records the names.
    let _ = T::deserialize(Probe(&mut fields));
    fields
}

/// The environment as a figment provider: the variables of [`env_keys`] read through a lookup
/// function, empty ones skipped, values trimmed and given as strings (`extract_lossy` reads
/// them as numbers or booleans where a field wants one).
struct EnvVars {
    values: Dict,
    /// Which variable set each path, to name it in errors.
    names: BTreeMap<String, String>,
}

impl EnvVars {
    const NAME: &'static str = "environment variables";

    fn read(env: impl Fn(&str) -> Option<String>) -> Self {
        let mut vars = Self {
            values: Dict::new(),
            names: BTreeMap::new(),
        };
        for key in env_keys() {
            let set = key.names.iter().find_map(|name| {
                env(name)
                    .filter(|v| !v.is_empty())
                    .map(|v| (name, Value::from(v.trim().to_owned())))
            });
            let Some((name, value)) = set else { continue };
            match key.path.split_once('.') {
                Some((section, field)) => {
                    let section = vars
                        .values
                        .entry(section.to_owned())
                        .or_insert_with(|| Value::from(Dict::new()));
                    if let Value::Dict(_, dict) = section {
                        dict.insert(field.to_owned(), value);
                    }
                }
                None => {
                    vars.values.insert(key.path.clone(), value);
                }
            }
            vars.names.insert(key.path, name.clone());
        }
        vars
    }
}

impl Provider for EnvVars {
    fn metadata(&self) -> Metadata {
        Metadata::named(Self::NAME)
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Ok(Profile::Default.collect(self.values.clone()))
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
        // Push (added with the settings).
        ("HAVEN_PUSH_ENABLED", "push.enabled"),
        ("HAVEN_PUSH_COALESCE_SECS", "push.coalesce_secs"),
        ("HAVEN_PUSH_MAX_ATTEMPTS", "push.max_attempts"),
        ("HAVEN_PUSH_BACKOFF_BASE_MS", "push.backoff_base_ms"),
        ("HAVEN_PUSH_BACKOFF_MAX_SECS", "push.backoff_max_secs"),
        ("HAVEN_PUSH_PER_DEVICE_PER_HOUR", "push.per_device_per_hour"),
        ("HAVEN_PUSH_WORKER_CONCURRENCY", "push.worker_concurrency"),
        ("HAVEN_PUSH_POLL_INTERVAL_MS", "push.poll_interval_ms"),
        (
            "HAVEN_PUSH_REQUEST_TIMEOUT_SECS",
            "push.request_timeout_secs",
        ),
        ("HAVEN_PUSH_TTL_SECS", "push.ttl_secs"),
        ("HAVEN_PUSH_GATEWAY_URL", "push.gateway_url"),
        ("HAVEN_PUSH_VAPID_SUBJECT", "push.vapid_subject"),
        ("HAVEN_PUSH_VAPID_KEY", "push.vapid_key"),
        ("HAVEN_PUSH_ALLOW_INSECURE", "push.allow_insecure"),
        ("HAVEN_PUSH_ALLOWED_HOSTS", "push.allowed_hosts"),
        // Moderation and audit (added with the settings, not renamed).
        (
            "HAVEN_MODERATION_FRANKING_SECRET",
            "moderation.franking_secret",
        ),
        (
            "HAVEN_MODERATION_PREVIOUS_FRANKING_SECRETS",
            "moderation.previous_franking_secrets",
        ),
        ("HAVEN_MODERATION_STAMP_KEY", "moderation.stamp_key"),
        ("HAVEN_MODERATION_SECRET", "moderation.secret"),
        (
            "HAVEN_MODERATION_REPORT_WINDOW_DAYS",
            "moderation.report_window_days",
        ),
        (
            "HAVEN_MODERATION_REPORT_RETENTION_DAYS",
            "moderation.report_retention_days",
        ),
        (
            "HAVEN_MODERATION_IPV4_PREFIX_LEN",
            "moderation.ipv4_prefix_len",
        ),
        (
            "HAVEN_MODERATION_IPV6_PREFIX_LEN",
            "moderation.ipv6_prefix_len",
        ),
        ("HAVEN_MODERATION_CACHE_SECS", "moderation.cache_secs"),
        (
            "HAVEN_MODERATION_REPORTS_PER_DAY",
            "moderation.reports_per_day",
        ),
        (
            "HAVEN_MODERATION_REAP_INTERVAL_SECS",
            "moderation.reap_interval_secs",
        ),
        ("HAVEN_AUDIT_RETENTION_DAYS", "audit.retention_days"),
        ("HAVEN_AUDIT_REAP_INTERVAL_SECS", "audit.reap_interval_secs"),
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
            "HAVEN_MAIL_PAIR_SENDS_PER_MINUTE",
            "mail.pair_sends_per_minute",
        ),
        ("HAVEN_MAIL_PAIR_SENDS_PER_DAY", "mail.pair_sends_per_day"),
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
        ("HAVEN_KEYS_UPLOADS_PER_HOUR", "keys.uploads_per_hour"),
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
        // Added with the proxy hops, address prefixes and TOTP sealing keys (not renamed).
        ("HAVEN_TRUSTED_PROXY_HOPS", "trusted_proxy_hops"),
        ("HAVEN_ADDR_PREFIX_V4", "addr_prefix_v4"),
        ("HAVEN_ADDR_PREFIX_V6", "addr_prefix_v6"),
        ("HAVEN_TOTP_KEY", "totp_key"),
        ("HAVEN_TOTP_PREVIOUS_KEYS", "totp_previous_keys"),
        ("HAVEN_TOTP_KEY_FILE", "totp_key_file"),
        ("HAVEN_USERNAME_PEPPER", "username_pepper"),
        ("HAVEN_WS_ALLOWED_ORIGINS", "ws.allowed_origins"),
        ("REDIS_URL", "redis_url"),
    ];

    /// Loads from `pairs` without range checks, so one setting can be changed alone.
    fn load_unchecked(pairs: &[(&str, &str)]) -> Result<Settings, SettingsError> {
        Settings::load_unchecked(None, env_of(pairs))
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
            // Below the default: every default is comfortably above its minimum (0, the
            // least, goes up).
            let v = n.checked_sub(k).unwrap_or(n + k).to_string();
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
        assert_eq!(OLD_ENV_NAMES.len(), 132);
        for (i, (name, path)) in OLD_ENV_NAMES.iter().enumerate() {
            assert_lands(name, path, i);
        }
    }

    /// The environment variables of `docs/SELF_HOSTING.md`'s settings tables and the setting
    /// each names: the main table gives them in its second column, each `[section]` table by
    /// the prefix its introduction states.
    fn documented_env_vars() -> Vec<(String, String)> {
        let doc = include_str!("../../../docs/SELF_HOSTING.md");
        let settings = doc
            .split("\n## Settings\n")
            .nth(1)
            .and_then(|rest| rest.split("\n## ").next())
            .expect("a Settings chapter");
        let ticked = |cell: &str| -> Vec<String> {
            cell.split('`')
                .skip(1)
                .step_by(2)
                .map(str::to_owned)
                .collect()
        };
        let (mut section, mut prefix) = (None::<String>, None::<String>);
        let mut vars = Vec::new();
        for line in settings.lines() {
            if let Some(heading) = line.strip_prefix("### `[") {
                section = heading.split(']').next().map(str::to_owned);
                prefix = None;
            } else if line.starts_with("Environment variables are `HAVEN_") {
                prefix = ticked(line).into_iter().next();
            } else if line.starts_with("| `") {
                let cells: Vec<&str> = line.split('|').collect();
                let keys = ticked(cells[1]);
                match (&section, &prefix) {
                    (None, _) => {
                        for name in ticked(cells[2]) {
                            vars.push((name, keys[0].clone()));
                        }
                    }
                    (Some(section), Some(prefix)) => {
                        for key in keys {
                            vars.push((
                                format!("{prefix}{}", key.to_ascii_uppercase()),
                                format!("{section}.{key}"),
                            ));
                        }
                    }
                    (Some(section), None) => panic!("[{section}] states no variable prefix"),
                }
            }
        }
        vars
    }

    #[test]
    fn documented_env_vars_land_in_the_documented_settings() {
        let documented = documented_env_vars();
        assert!(documented.len() >= 90, "only {} parsed", documented.len());
        // One at a time: exactly the documented setting changes.
        for (i, (name, path)) in documented.iter().enumerate() {
            assert_lands(name, path, i);
        }
        // All at once (one name per setting), each to its own valid value, range checks on.
        let defaults = debug_fields(&Settings::default());
        let mut env = Vec::new();
        let mut expected = Vec::new();
        for (i, (name, path)) in documented.iter().enumerate() {
            if env
                .iter()
                .any(|(_, p, _): &(String, String, String)| p == path)
            {
                continue;
            }
            let (value, shown) = sample_value(&defaults[path], i);
            env.push((name.clone(), path.clone(), value));
            expected.push((path.clone(), shown));
        }
        let pairs: Vec<(&str, &str)> = env
            .iter()
            .map(|(n, _, v)| (n.as_str(), v.as_str()))
            .collect();
        let loaded = Settings::load(None, env_of(&pairs)).unwrap();
        let fields = debug_fields(&loaded);
        for (path, shown) in expected {
            assert!(
                shown.contains(&fields[&path]),
                "{path} is {}",
                fields[&path]
            );
        }
    }

    #[test]
    fn derived_names_are_exactly_the_old_names() {
        let mut derived: Vec<(String, String)> = env_keys()
            .into_iter()
            .flat_map(|k| k.names.into_iter().map(move |n| (n, k.path.clone())))
            .collect();
        derived.sort();
        let mut old: Vec<(String, String)> = OLD_ENV_NAMES
            .iter()
            .map(|(n, p)| ((*n).to_owned(), (*p).to_owned()))
            .collect();
        old.sort();
        assert_eq!(derived, old);
        // Every section of the struct has its prefix (else it would be read as one value).
        let fields = field_names::<Settings>();
        assert!(SECTIONS.iter().all(|(s, ..)| fields.contains(s)));
    }

    #[test]
    fn invalid_values_name_the_variable() {
        let defaults = debug_fields(&Settings::default());
        let mut checked = 0;
        for (name, path) in OLD_ENV_NAMES {
            let default = &defaults[*path];
            let typed = default.parse::<u64>().is_ok()
                || ["true", "false", "Local", "Full"].contains(&default.as_str())
                || default.contains("127.0.0.1:");
            if !typed {
                continue;
            }
            for bad in ["x1", "-1", "1.5", "maybe"] {
                match load_unchecked(&[(name, bad)]) {
                    Err(SettingsError::Env(n)) => assert_eq!(n, *name),
                    other => panic!("{name}={bad}: {other:?}"),
                }
            }
            checked += 1;
        }
        assert!(checked >= 75, "{checked}");
        // Too big for the field's type.
        assert!(matches!(
            Settings::load(None, env_of(&[("HAVEN_MAX_DEVICES", "4294967296")])),
            Err(SettingsError::Env(n)) if n == "HAVEN_MAX_DEVICES"
        ));
        // The message names the variable, not the value.
        let err = Settings::load(None, env_of(&[("HAVEN_WS_TICKET_TTL_SECS", "sekret")]))
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "invalid value in environment variable HAVEN_WS_TICKET_TTL_SECS"
        );
        // `off` is the only word the metrics address takes.
        assert!(matches!(
            Settings::load(None, env_of(&[("HAVEN_METRICS_LISTEN", "on")])),
            Err(SettingsError::Env(n)) if n == "HAVEN_METRICS_LISTEN"
        ));
    }

    #[test]
    fn environment_spellings_as_before() {
        let s = load_unchecked(&[
            ("HAVEN_HSTS", " Yes "),
            ("HAVEN_TRUSTED_PROXY", "ON"),
            ("HAVEN_BLOBS_S3_ALLOW_HTTP", "1"),
            ("HAVEN_MAX_DEVICES", " 7 "),
            ("HAVEN_WS_MAX_FRAMES_PER_SEC", "+9"),
            ("HAVEN_LISTEN", " 127.0.0.1:1234 "),
            ("HAVEN_METRICS_LISTEN", " off "),
            ("HAVEN_DATABASE_SQLITE_SYNCHRONOUS", "Normal"),
            (
                "HAVEN_WS_ALLOWED_ORIGINS",
                "https://a.example,,https://b.example ,",
            ),
            ("HAVEN_LOG", "5"),
            ("HAVEN_JWT_SECRET", "123"),
            // Empty means unset: the default stays.
            ("HAVEN_REQUEST_TIMEOUT_SECS", ""),
        ])
        .unwrap();
        assert!(s.hsts && s.trusted_proxy && s.blobs.s3_allow_http);
        assert_eq!((s.max_devices, s.ws.max_frames_per_sec), (7, 9));
        assert_eq!(s.listen, SocketAddr::from(([127, 0, 0, 1], 1234)));
        assert_eq!(s.metrics_listen, None);
        assert_eq!(s.database.sqlite_synchronous, SqliteSynchronous::Normal);
        assert_eq!(
            s.ws.allowed_origins,
            ["https://a.example", "https://b.example"]
        );
        assert_eq!(s.log, "5");
        assert_eq!(
            s.jwt_secret.as_ref().map(SecretSetting::expose),
            Some("123")
        );
        assert_eq!(s.request_timeout_secs, 30);
        let s = load_unchecked(&[("HAVEN_HSTS", "no"), ("HAVEN_TRUSTED_PROXY", "0")]).unwrap();
        assert!(!s.hsts && !s.trusted_proxy);
    }

    #[test]
    fn file_then_environment_then_fallbacks() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("relay.toml");
        std::fs::write(
            &file,
            "max_devices = 3\nmetrics_listen = \"off\"\n\
             database_url = \"sqlite://file.db\"\n\
             [mail]\nttl_secs = 120\nmax_fetch = 7\n\
             [ws]\nallowed_origins = [\"https://file.example\"]\n\
             [database]\nsqlite_synchronous = \"normal\"\n",
        )
        .unwrap();
        let load = |pairs: &[(&str, &str)]| Settings::load(Some(&file), env_of(pairs)).unwrap();
        let s = load(&[]);
        assert_eq!(
            (s.max_devices, s.mail.ttl_secs, s.mail.max_fetch),
            (3, 120, 7)
        );
        assert_eq!(s.metrics_listen, None);
        assert_eq!(s.database_url.expose(), "sqlite://file.db");
        assert_eq!(s.ws.allowed_origins, ["https://file.example"]);
        assert_eq!(s.database.sqlite_synchronous, SqliteSynchronous::Normal);
        // The environment wins, per field, inside sections too; empty values do not count.
        let s = load(&[
            ("HAVEN_MAIL_TTL_SECS", "180"),
            ("HAVEN_MAX_DEVICES", ""),
            ("HAVEN_METRICS_LISTEN", "127.0.0.1:9"),
            ("HAVEN_WS_ALLOWED_ORIGINS", "https://env.example"),
            ("DATABASE_URL", "postgres://u:p@db/fallback"),
        ]);
        assert_eq!(
            (s.max_devices, s.mail.ttl_secs, s.mail.max_fetch),
            (3, 180, 7)
        );
        assert_eq!(
            s.metrics_listen,
            Some(SocketAddr::from(([127, 0, 0, 1], 9)))
        );
        assert_eq!(s.ws.allowed_origins, ["https://env.example"]);
        assert_eq!(s.database_url.expose(), "postgres://u:p@db/fallback");
        // The HAVEN_ name before the conventional one; an empty one falls back.
        let s = load(&[
            ("HAVEN_DATABASE_URL", "postgres://u:p@db/haven"),
            ("DATABASE_URL", "postgres://u:p@db/fallback"),
            ("HAVEN_REDIS_URL", ""),
            ("REDIS_URL", "redis://r:6379"),
        ]);
        assert_eq!(s.database_url.expose(), "postgres://u:p@db/haven");
        assert_eq!(
            s.redis_url.as_ref().map(ConnectionUrl::expose),
            Some("redis://r:6379")
        );
        // The file is read strictly: lossy reading is for the environment only.
        std::fs::write(&file, "hsts = \"yes\"\n").unwrap();
        assert!(matches!(
            Settings::load(Some(&file), env_of(&[])),
            Err(SettingsError::Toml(_))
        ));
        std::fs::write(&file, "[mail]\nttl = 1\n").unwrap();
        let err = Settings::load(Some(&file), env_of(&[])).unwrap_err();
        assert!(matches!(err, SettingsError::Toml(_)));
        assert!(err.to_string().contains("relay.toml"), "{err}");
        assert!(matches!(
            Settings::load(Some(&dir.path().join("missing.toml")), env_of(&[])),
            Err(SettingsError::Read(_))
        ));
    }

    #[test]
    fn unknown_haven_variables_are_reported() {
        let names = [
            "HAVEN_JWT_SECERT",
            "HAVEN_JWT_SECRET",
            "HAVEN_CONFIG",
            "HAVEN_CHANNELS_MAX_BYTES",
            "HAVEN_CHANNEL_MAX_BYTES",
            "DATABASE_URL",
            "PATH",
        ];
        assert_eq!(
            Settings::unknown_env_vars(names),
            ["HAVEN_JWT_SECERT", "HAVEN_CHANNELS_MAX_BYTES"]
        );
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
                ("HAVEN_OPAQUE_SERVER_SETUP", "b3BhcXVl"),
                ("HAVEN_CERTIFICATE_KEY", "Y2VydGlmaWNhdGU="),
                ("HAVEN_BLOBS_S3_ACCESS_KEY_ID", "AKIDSECRET"),
                ("HAVEN_BLOBS_S3_SECRET_ACCESS_KEY", "s3-secret-key"),
                ("HAVEN_BLOBS_TOKEN_SECRET", "dG9rZW4="),
            ]),
        )
        .unwrap();
        let debug = format!("{s:?}{s:#?}");
        for secret in [
            "hunter2",
            "sekret",
            "c2VjcmV0LWp3dA==",
            "cGVwcGVy",
            "b3BhcXVl",
            "Y2VydGlmaWNhdGU=",
            "AKIDSECRET",
            "s3-secret-key",
            "dG9rZW4=",
        ] {
            assert!(!debug.contains(secret), "{secret} leaked in {debug}");
        }
        assert!(debug.contains("postgres:[redacted]"));
    }

    #[test]
    fn bad_values_are_rejected() {
        assert!(matches!(
            Settings::load(None, env_of(&[("HAVEN_MAX_DEVICES", "many")])),
            Err(SettingsError::Env(name)) if name == "HAVEN_MAX_DEVICES"
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

    /// A per-minute quota the rate limiter cannot enforce is refused at startup; it used to be
    /// accepted and then fail every request it applied to with a 500.
    #[test]
    fn per_minute_quotas_the_limiter_cannot_enforce_are_rejected() {
        for (var, name) in [
            (
                "HAVEN_MAIL_PAIR_SENDS_PER_MINUTE",
                "mail.pair_sends_per_minute",
            ),
            (
                "HAVEN_MAIL_SEALED_SENDS_PER_MINUTE",
                "mail.sealed_sends_per_minute",
            ),
            ("HAVEN_RATE_LIMIT_PER_MINUTE", "rate_limit_per_minute"),
            (
                "HAVEN_KEYS_USERNAME_LOOKUPS_PER_MINUTE",
                "keys.username_lookups_per_minute",
            ),
        ] {
            let over = (MAX_PER_MINUTE + 1).to_string();
            assert!(
                matches!(
                    Settings::load(None, env_of(&[(var, over.as_str())])),
                    Err(SettingsError::Range(n)) if n == name
                ),
                "{var}"
            );
            let most = MAX_PER_MINUTE.to_string();
            assert!(
                Settings::load(None, env_of(&[(var, most.as_str())])).is_ok(),
                "{var}"
            );
        }
        // The largest accepted value is one the limiter takes.
        let quota = haven_ratelimit::Quota::new(MAX_PER_MINUTE, std::time::Duration::from_secs(60));
        assert!(
            haven_ratelimit::MemoryLimiter::new()
                .hit("k", quota)
                .is_ok()
        );
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
