//! The `[blobs]` settings section (environment: `HAVEN_BLOBS_<FIELD>` in upper case, derived
//! from the field names by `crate::settings`).

use std::path::PathBuf;

use serde::Deserialize;

use crate::settings::values::{SecretSetting, SettingsError};

/// Where blob bytes are kept.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum BlobBackendKind {
    /// A local directory; the relay streams uploads and downloads itself (the default).
    #[default]
    Local,
    /// An S3-compatible bucket (AWS S3, MinIO, …); clients use presigned URLs.
    S3,
}

/// Blob storage, limits, expiry and garbage collection (`Debug` shows the secrets as
/// `[redacted]`).
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BlobSettings {
    /// `local` or `s3` (`HAVEN_BLOBS_BACKEND`).
    pub backend: BlobBackendKind,
    /// Directory of the local backend (`HAVEN_BLOBS_DIR`). Default: `blobs/` next to an SQLite
    /// database file, else `data/blobs`.
    pub dir: Option<PathBuf>,
    /// S3 endpoint URL, e.g. `http://127.0.0.1:9000` (`HAVEN_BLOBS_S3_ENDPOINT`); unset means
    /// AWS.
    pub s3_endpoint: Option<String>,
    /// Bucket name (`HAVEN_BLOBS_S3_BUCKET`).
    pub s3_bucket: Option<String>,
    /// Region (`HAVEN_BLOBS_S3_REGION`).
    pub s3_region: String,
    /// Access key id (`HAVEN_BLOBS_S3_ACCESS_KEY_ID`).
    pub s3_access_key_id: Option<SecretSetting>,
    /// Secret access key (`HAVEN_BLOBS_S3_SECRET_ACCESS_KEY`).
    pub s3_secret_access_key: Option<SecretSetting>,
    /// Allow a plain-http endpoint (`HAVEN_BLOBS_S3_ALLOW_HTTP`), for a local MinIO or s3s-fs.
    pub s3_allow_http: bool,
    /// Largest blob in bytes (`HAVEN_BLOBS_MAX_BLOB_BYTES`).
    pub max_blob_bytes: u64,
    /// Padded bytes per account, pending and complete blobs together
    /// (`HAVEN_BLOBS_QUOTA_BYTES`).
    pub quota_bytes: u64,
    /// Blobs per account (`HAVEN_BLOBS_MAX_BLOBS`).
    pub max_blobs: u64,
    /// Upload part size (`HAVEN_BLOBS_PART_SIZE_BYTES`): ≥ 64 KiB on the local backend, ≥ 5 MiB
    /// on S3 (its minimum part size), ≤ 1 GiB.
    pub part_size_bytes: u64,
    /// Lifetime of presigned URLs and transfer tokens in seconds (`HAVEN_BLOBS_URL_TTL_SECS`).
    pub url_ttl_secs: u64,
    /// Blob lifetime when the client asks for none (`HAVEN_BLOBS_DEFAULT_TTL_SECS`).
    pub default_ttl_secs: u64,
    /// Longest blob lifetime a client may ask for (`HAVEN_BLOBS_MAX_TTL_SECS`).
    pub max_ttl_secs: u64,
    /// A pending upload not completed within this many seconds is collected
    /// (`HAVEN_BLOBS_PENDING_TTL_SECS`).
    pub pending_ttl_secs: u64,
    /// Garbage-collection period in seconds (`HAVEN_BLOBS_GC_INTERVAL_SECS`).
    pub gc_interval_secs: u64,
    /// Longest single transfer through the relay (local backend) in seconds
    /// (`HAVEN_BLOBS_TRANSFER_TIMEOUT_SECS`).
    pub transfer_timeout_secs: u64,
    /// Key of the local transfer tokens, base64 of 32 bytes; generated and stored if absent
    /// (`HAVEN_BLOBS_TOKEN_SECRET`).
    pub token_secret: Option<SecretSetting>,
}

const MIB: u64 = 1 << 20;

impl Default for BlobSettings {
    fn default() -> Self {
        Self {
            backend: BlobBackendKind::Local,
            dir: None,
            s3_endpoint: None,
            s3_bucket: None,
            s3_region: "us-east-1".to_owned(),
            s3_access_key_id: None,
            s3_secret_access_key: None,
            s3_allow_http: false,
            max_blob_bytes: 2048 * MIB,
            quota_bytes: 10 * 1024 * MIB,
            max_blobs: 10_000,
            part_size_bytes: 8 * MIB,
            url_ttl_secs: 900,
            default_ttl_secs: 30 * 86_400,
            max_ttl_secs: 5 * 365 * 86_400,
            pending_ttl_secs: 86_400,
            gc_interval_secs: 3_600,
            transfer_timeout_secs: 3_600,
            token_secret: None,
        }
    }
}

impl BlobSettings {
    /// Checks every value is in range.
    pub(crate) fn validate(&self) -> Result<(), SettingsError> {
        let min_part = match self.backend {
            BlobBackendKind::Local => 64 * 1024,
            BlobBackendKind::S3 => 5 * MIB,
        };
        let s3 = self.backend == BlobBackendKind::S3;
        let checks: [(bool, &'static str); 12] = [
            (
                (273..=haven_protocol::padding::MAX_ATTACHMENT_PADDED_LEN * 2)
                    .contains(&self.max_blob_bytes),
                "blobs.max_blob_bytes",
            ),
            (self.quota_bytes >= 1, "blobs.quota_bytes"),
            (self.max_blobs >= 1, "blobs.max_blobs"),
            (
                (min_part..=1024 * MIB).contains(&self.part_size_bytes)
                    // S3 allows 10 000 parts; keep the largest blob within that.
                    && (!s3 || self.max_blob_bytes.div_ceil(self.part_size_bytes) <= 10_000),
                "blobs.part_size_bytes",
            ),
            // SigV4 presigned URLs live at most 7 days.
            (
                (1..=7 * 86_400).contains(&self.url_ttl_secs),
                "blobs.url_ttl_secs",
            ),
            (
                (1..=self.max_ttl_secs).contains(&self.default_ttl_secs),
                "blobs.default_ttl_secs",
            ),
            (
                (1..=100 * 365 * 86_400).contains(&self.max_ttl_secs),
                "blobs.max_ttl_secs",
            ),
            (self.pending_ttl_secs >= 1, "blobs.pending_ttl_secs"),
            (self.gc_interval_secs >= 1, "blobs.gc_interval_secs"),
            (
                self.transfer_timeout_secs >= 1,
                "blobs.transfer_timeout_secs",
            ),
            (
                !s3 || self.s3_bucket.as_deref().is_some_and(|b| !b.is_empty()),
                "blobs.s3_bucket",
            ),
            (
                !s3 || (self.s3_access_key_id.is_some() && self.s3_secret_access_key.is_some()),
                "blobs.s3_access_key_id",
            ),
        ];
        match checks.iter().find(|(ok, _)| !ok) {
            Some((_, name)) => Err(SettingsError::Range(name)),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use crate::settings::{Settings, SettingsError};

    fn load(pairs: &[(&str, &str)]) -> Result<Settings, SettingsError> {
        Settings::load(None, |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        })
    }

    #[test]
    fn table_env_and_ranges() {
        let s = Settings::from_toml("[blobs]\nquota_bytes = 7\npart_size_bytes = 65536\n").unwrap();
        assert_eq!(s.blobs.quota_bytes, 7);
        assert_eq!(s.blobs.part_size_bytes, 65536);
        assert!(Settings::from_toml("[blobs]\nunknown = 1").is_err());
        let s = load(&[
            ("HAVEN_BLOBS_MAX_BLOBS", "3"),
            ("HAVEN_BLOBS_URL_TTL_SECS", "60"),
        ])
        .unwrap();
        assert_eq!(s.blobs.max_blobs, 3);
        assert_eq!(s.blobs.url_ttl_secs, 60);
        assert!(matches!(
            load(&[("HAVEN_BLOBS_BACKEND", "ftp")]),
            Err(SettingsError::Env(name)) if name == "HAVEN_BLOBS_BACKEND"
        ));
        // S3 needs a bucket and credentials, and parts of at least 5 MiB.
        assert!(matches!(
            load(&[("HAVEN_BLOBS_BACKEND", "s3")]),
            Err(SettingsError::Range(_))
        ));
        let s3 = [
            ("HAVEN_BLOBS_BACKEND", "s3"),
            ("HAVEN_BLOBS_S3_BUCKET", "b"),
            ("HAVEN_BLOBS_S3_ACCESS_KEY_ID", "k"),
            ("HAVEN_BLOBS_S3_SECRET_ACCESS_KEY", "s"),
        ];
        let s = load(&s3).unwrap();
        assert!(!format!("{:?}", s.blobs).contains("\"s\""));
        let mut small = s3.to_vec();
        small.push(("HAVEN_BLOBS_PART_SIZE_BYTES", "65536"));
        assert!(matches!(
            load(&small),
            Err(SettingsError::Range("blobs.part_size_bytes"))
        ));
        assert!(matches!(
            load(&[("HAVEN_BLOBS_URL_TTL_SECS", "0")]),
            Err(SettingsError::Range("blobs.url_ttl_secs"))
        ));
        assert!(matches!(
            load(&[("HAVEN_BLOBS_MAX_BLOB_BYTES", "100")]),
            Err(SettingsError::Range("blobs.max_blob_bytes"))
        ));
    }

    #[test]
    fn default_dir_follows_the_database() {
        use super::super::default_dir;
        use std::path::PathBuf;
        assert_eq!(
            default_dir("sqlite:///var/lib/haven/haven.db?mode=rwc"),
            PathBuf::from("/var/lib/haven/blobs")
        );
        assert_eq!(
            default_dir("sqlite://data/haven.db"),
            PathBuf::from("data/blobs")
        );
        assert_eq!(default_dir("postgres://x@y/z"), PathBuf::from("data/blobs"));
    }
}
