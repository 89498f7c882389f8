//! The `[moderation]` and `[audit]` settings sections (environment: `HAVEN_MODERATION_<FIELD>`
//! and `HAVEN_AUDIT_<FIELD>` in upper case, derived from the field names by `crate::settings`).

use serde::Deserialize;

use crate::settings::values::{SecretSetting, SettingsError};

/// Abuse reports, franking keys, sanctions and address bans (`Debug` redacts the secrets).
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModerationSettings {
    /// The relay's franking X25519 secret `f` (PROTOCOL.md §16.1), base64 of 32 bytes;
    /// generated and stored if absent (`HAVEN_MODERATION_FRANKING_SECRET`).
    pub franking_secret: Option<SecretSetting>,
    /// Earlier franking secrets still accepted for reports during the report window,
    /// comma-separated base64 (`HAVEN_MODERATION_PREVIOUS_FRANKING_SECRETS`). To rotate: move
    /// the current secret here and set a new `franking_secret`; drop it after the window.
    pub previous_franking_secrets: Option<SecretSetting>,
    /// The delivery-stamp key `K_stamp`, base64 of 32 bytes; generated and stored if absent
    /// (`HAVEN_MODERATION_STAMP_KEY`).
    pub stamp_key: Option<SecretSetting>,
    /// Key from which the report-sealing key and the address-ban HMAC key are derived, base64
    /// of 32 bytes; generated and stored if absent (`HAVEN_MODERATION_SECRET`).
    pub secret: Option<SecretSetting>,
    /// A message older than this many days cannot be reported
    /// (`HAVEN_MODERATION_REPORT_WINDOW_DAYS`).
    pub report_window_days: u64,
    /// Decided reports are deleted this many days after their decision
    /// (`HAVEN_MODERATION_REPORT_RETENTION_DAYS`).
    pub report_retention_days: u64,
    /// Address bans cover this IPv4 prefix length (`HAVEN_MODERATION_IPV4_PREFIX_LEN`).
    pub ipv4_prefix_len: u8,
    /// Address bans cover this IPv6 prefix length (`HAVEN_MODERATION_IPV6_PREFIX_LEN`).
    pub ipv6_prefix_len: u8,
    /// How long an instance may serve from its cached ban and sanction lists before reading
    /// them again, seconds (`HAVEN_MODERATION_CACHE_SECS`): the delay before a ban made on
    /// another instance takes effect here.
    pub cache_secs: u64,
    /// Reports a user may file per day (`HAVEN_MODERATION_REPORTS_PER_DAY`).
    pub reports_per_day: u32,
    /// Period of the reaper (expired sanctions and bans, old reports), seconds
    /// (`HAVEN_MODERATION_REAP_INTERVAL_SECS`).
    pub reap_interval_secs: u64,
}

impl Default for ModerationSettings {
    fn default() -> Self {
        Self {
            franking_secret: None,
            previous_franking_secrets: None,
            stamp_key: None,
            secret: None,
            report_window_days: 30,
            report_retention_days: 365,
            ipv4_prefix_len: 24,
            ipv6_prefix_len: 64,
            cache_secs: 10,
            reports_per_day: 50,
            reap_interval_secs: 3_600,
        }
    }
}

impl ModerationSettings {
    /// Checks every value is in range.
    pub(crate) fn validate(&self) -> Result<(), SettingsError> {
        let checks: [(bool, &'static str); 7] = [
            (
                (1..=3650).contains(&self.report_window_days),
                "moderation.report_window_days",
            ),
            (
                (1..=3650).contains(&self.report_retention_days),
                "moderation.report_retention_days",
            ),
            (
                (8..=32).contains(&self.ipv4_prefix_len),
                "moderation.ipv4_prefix_len",
            ),
            (
                (16..=128).contains(&self.ipv6_prefix_len),
                "moderation.ipv6_prefix_len",
            ),
            (
                (1..=3600).contains(&self.cache_secs),
                "moderation.cache_secs",
            ),
            (self.reports_per_day >= 1, "moderation.reports_per_day"),
            (
                self.reap_interval_secs >= 1,
                "moderation.reap_interval_secs",
            ),
        ];
        match checks.iter().find(|(ok, _)| !ok) {
            Some((_, name)) => Err(SettingsError::Range(name)),
            None => Ok(()),
        }
    }
}

/// The security audit log (`[audit]`).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct AuditSettings {
    /// Events are deleted after this many days (`HAVEN_AUDIT_RETENTION_DAYS`).
    pub retention_days: u64,
    /// Period of the audit reaper, seconds (`HAVEN_AUDIT_REAP_INTERVAL_SECS`).
    pub reap_interval_secs: u64,
}

impl Default for AuditSettings {
    fn default() -> Self {
        Self {
            retention_days: 90,
            reap_interval_secs: 3_600,
        }
    }
}

impl AuditSettings {
    /// Checks every value is in range.
    pub(crate) fn validate(&self) -> Result<(), SettingsError> {
        if !(1..=3650).contains(&self.retention_days) {
            return Err(SettingsError::Range("audit.retention_days"));
        }
        if self.reap_interval_secs < 1 {
            return Err(SettingsError::Range("audit.reap_interval_secs"));
        }
        Ok(())
    }
}
