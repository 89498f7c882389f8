//! Server-wide secrets: the username pepper, the JWT key, the OPAQUE server setup and the
//! sender-certificate signing key, the client-address key derived from the pepper, and the TOTP
//! sealing keys.
//!
//! Each comes from the settings if given; otherwise a fresh random value is offered to the
//! `server_secrets` table with insert-if-absent and the stored value read back, so N instances
//! sharing one database converge on the same secrets whichever starts first.
//!
//! The TOTP sealing key is the exception: it protects TOTP secrets *in* the database, so it is
//! never stored there. It comes from `totp_key`, or from a key file (`totp_key_file`, by default
//! `totp.key` next to an SQLite database file) created with mode 0600 and a random key on first
//! start; with Postgres one of the two settings is required, so that every instance has the same
//! key ([`TotpKeyring::load`]).

use std::future::Future;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use haven_protocol::franking::verify::StampKey;
use haven_protocol::opaque::HavenCipherSuite;
use hmac::{Hmac, Mac};
use opaque_ke::ServerSetup;
use rand::RngCore;
use rand::rngs::OsRng;
use sha2::Sha256;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::db::error::{SecretBytes, StoreError, StoreResult};
use crate::settings::{SecretSetting, Settings};

/// Server-wide secrets (pepper, JWT key, OPAQUE server setup).
pub trait SecretStore {
    /// Inserts `value` under `name` unless present, then returns the stored value, so several
    /// instances starting at once converge on one secret.
    fn secret_or_insert(
        &self,
        name: &str,
        value: &[u8],
    ) -> impl Future<Output = StoreResult<SecretBytes>> + Send;
    /// Replaces the secret under `name` with `value` and keeps the replaced one under
    /// `retired_as`, in one transaction. Returns `false` (and changes nothing) when there is no
    /// secret under `name`.
    fn rotate_secret(
        &self,
        name: &str,
        value: &[u8],
        retired_as: &str,
    ) -> impl Future<Output = StoreResult<bool>> + Send;
    /// Every secret whose name starts with `prefix`, by name.
    fn secrets_with_prefix(
        &self,
        prefix: &str,
    ) -> impl Future<Output = StoreResult<Vec<(String, SecretBytes)>>> + Send;
    /// Deletes the secret under `name`. Returns whether it existed.
    fn delete_secret(&self, name: &str) -> impl Future<Output = StoreResult<bool>> + Send;
}

/// Name of the stored franking secret (when `moderation.franking_secret` is not configured).
pub const FRANKING_SECRET_NAME: &str = "franking_secret";
/// Prefix of retired franking secrets: `franking_secret.retired.<unix seconds>` (written by
/// `haven-relay admin rotate-franking-key`; read back for the report window, then erased).
pub const RETIRED_FRANKING_PREFIX: &str = "franking_secret.retired.";

/// Errors while loading the server secrets.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SecretsError {
    /// A configured secret is not valid base64 or has the wrong length; carries its name.
    #[error("configured secret {0} is malformed")]
    Malformed(&'static str),
    /// The stored OPAQUE server setup could not be decoded.
    #[error("stored OPAQUE server setup is corrupt")]
    CorruptSetup,
    /// No TOTP sealing key is configured and none can be kept next to the database (Postgres):
    /// `totp_key` or `totp_key_file` must be set, the same on every instance.
    #[error(
        "set HAVEN_TOTP_KEY or HAVEN_TOTP_KEY_FILE (the same key on every instance): TOTP secrets are sealed under a key kept out of the database"
    )]
    TotpKeyRequired,
    /// The TOTP key file could not be read or created; carries the I/O error.
    #[error("TOTP key file: {0}")]
    KeyFile(std::io::Error),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A 32-byte key: zeroized on drop, no `Debug`.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct Key32([u8; 32]);

impl Key32 {
    /// A random key.
    pub fn random() -> Self {
        let mut key = [0u8; 32];
        OsRng.fill_bytes(&mut key);
        Self(key)
    }

    /// Wraps given key bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    fn from_slice(bytes: &[u8]) -> Option<Self> {
        <[u8; 32]>::try_from(bytes).ok().map(Self)
    }

    /// HMAC-SHA256 under this key of `label || 0x00 || data` (the label separates uses).
    pub fn hmac(&self, label: &[u8], data: &[u8]) -> [u8; 32] {
        // HMAC accepts keys of any length, so this cannot fail for a 32-byte key.
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&self.0).unwrap_or_else(|_| unreachable_hmac());
        mac.update(label);
        mac.update(&[0]);
        mac.update(data);
        mac.finalize().into_bytes().into()
    }

    /// The raw key bytes.
    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }
}

#[allow(clippy::panic)] // HMAC-SHA256 accepts every key length; this is unreachable.
fn unreachable_hmac() -> Hmac<Sha256> {
    panic!("HMAC-SHA256 rejected a 32-byte key")
}

/// The loaded server secrets.
pub struct ServerSecrets {
    /// Key of HMAC-SHA256 over usernames (and other identifiers that must not be stored raw).
    pub username_pepper: Key32,
    /// HS256 key for access tokens.
    pub jwt_key: Key32,
    /// OPAQUE server key pair and OPRF seed.
    pub opaque_setup: ServerSetup<HavenCipherSuite>,
    /// Ed25519 key signing sender certificates (PROTOCOL.md §5.1, §11.13).
    pub certificate_key: ed25519_dalek::SigningKey,
    /// Key of the delivery stamps over franking commitments (PROTOCOL.md §16.4). Generated and
    /// stored on first start, so every instance sharing the database stamps alike; or
    /// `moderation.stamp_key`. The same key verifies reports (`moderation`).
    pub franking_stamp: StampKey,
    /// The moderation secrets (PROTOCOL.md §16.1, §11.20), from which
    /// `moderation::keys::ModerationKeys` is built.
    pub moderation: ModerationSecrets,
    /// Key of the keyed hashes of client address prefixes (`client_addr::ClientKey`):
    /// `HMAC-SHA256(username_pepper, "haven/client-addr-key/v1" || 0x00)`, so every instance
    /// sharing the pepper hashes an address alike and the shared limiter counts it once.
    pub addr_key: Key32,
    /// The keys sealing TOTP secrets at rest (`accounts::totp`).
    pub totp: TotpKeyring,
}

/// The TOTP sealing keys: the current one, which seals, and earlier ones still accepted for
/// opening (rows sealed under them are sealed again under the current key).
pub struct TotpKeyring {
    /// The current key.
    pub current: Key32,
    /// Earlier keys (`totp_previous_keys`).
    pub previous: Vec<Key32>,
}

/// Name of the default TOTP key file, next to the SQLite database file.
pub const TOTP_KEY_FILE: &str = "totp.key";

impl TotpKeyring {
    /// The keys from the settings: `totp_key`, else the key file `totp_key_file`, else
    /// `totp.key` in the directory of an SQLite database file (a key file is created, mode
    /// 0600, with a random key when absent). With Postgres and neither setting:
    /// [`SecretsError::TotpKeyRequired`].
    pub fn load(settings: &Settings) -> Result<Self, SecretsError> {
        let current = match (&settings.totp_key, &settings.totp_key_file) {
            (Some(key), _) => decode_key("totp_key", key)?,
            (None, Some(path)) => key_file(path)?,
            (None, None) => {
                key_file(&default_key_file(settings).ok_or(SecretsError::TotpKeyRequired)?)?
            }
        };
        let previous = match &settings.totp_previous_keys {
            Some(list) => decode_key_list("totp_previous_keys", list)?,
            None => Vec::new(),
        };
        Ok(Self { current, previous })
    }
}

/// `totp.key` next to the SQLite database file of `settings`, `None` for other databases.
fn default_key_file(settings: &Settings) -> Option<std::path::PathBuf> {
    use std::str::FromStr as _;
    let url = settings.database_url.expose();
    if !url.starts_with("sqlite:") {
        return None;
    }
    let options = sqlx::sqlite::SqliteConnectOptions::from_str(url).ok()?;
    let db = options.get_filename();
    Some(
        db.parent()
            .map_or_else(|| TOTP_KEY_FILE.into(), |dir| dir.join(TOTP_KEY_FILE)),
    )
}

/// The key (base64 of 32 bytes) in the file at `path`, creating the file (and its directory)
/// with a random key, readable by the owner only, when it does not exist. Instances racing to
/// create it all end up with the first one's key: the file is written in full under a temporary
/// name, then hard-linked into place, which fails if another got there first.
fn key_file(path: &std::path::Path) -> Result<Key32, SecretsError> {
    use std::io::Write as _;
    let malformed = || SecretsError::Malformed("totp_key_file");
    if !path.exists() {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(SecretsError::KeyFile)?;
        }
        let fresh = Key32::random();
        let mut text = zeroize::Zeroizing::new(STANDARD.encode(fresh.expose()));
        text.push('\n');
        let mut tmp_name = path.as_os_str().to_owned();
        tmp_name.push(format!(
            ".{}.tmp",
            hex::encode(&Key32::random().expose()[..8])
        ));
        let tmp = std::path::PathBuf::from(tmp_name);
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let written = options.open(&tmp).and_then(|mut file| {
            file.write_all(text.as_bytes())?;
            file.sync_all()
        });
        let linked = written.and_then(|()| match std::fs::hard_link(&tmp, path) {
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
            other => other,
        });
        let _ = std::fs::remove_file(&tmp);
        linked.map_err(SecretsError::KeyFile)?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
            && let Ok(dir) = std::fs::File::open(dir)
        {
            let _ = dir.sync_all();
        }
    }
    let text =
        zeroize::Zeroizing::new(std::fs::read_to_string(path).map_err(SecretsError::KeyFile)?);
    let mut bytes = STANDARD.decode(text.trim()).map_err(|_| malformed())?;
    let key = Key32::from_slice(&bytes).ok_or_else(malformed);
    bytes.zeroize();
    key
}

/// A comma-separated list of base64 keys (empty items skipped).
fn decode_key_list(name: &'static str, list: &SecretSetting) -> Result<Vec<Key32>, SecretsError> {
    let mut keys = Vec::new();
    for item in list
        .expose()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        let mut bytes = STANDARD
            .decode(item)
            .map_err(|_| SecretsError::Malformed(name))?;
        let key = Key32::from_slice(&bytes).ok_or(SecretsError::Malformed(name));
        bytes.zeroize();
        keys.push(key?);
    }
    Ok(keys)
}

/// The moderation secrets as loaded: the franking X25519 secret and earlier ones, the stamp
/// key, and the moderation secret (sealing and address-ban keys are derived from it).
pub struct ModerationSecrets {
    /// The current franking secret `f`.
    pub franking: Key32,
    /// Earlier franking secrets still accepted for reports.
    pub previous_franking: Vec<Key32>,
    /// The delivery-stamp key `K_stamp`.
    pub stamp: Key32,
    /// The moderation secret.
    pub secret: Key32,
}

impl ModerationSecrets {
    /// Loads each from the settings, or generates and stores it.
    async fn load<S: SecretStore>(settings: &Settings, store: &S) -> Result<Self, SecretsError> {
        let m = &settings.moderation;
        let mut retired = Vec::new();
        let franking = match &m.franking_secret {
            Some(s) => decode_key("moderation.franking_secret", s)?,
            None => {
                // Secrets retired by a rotation stay usable for reports during the window,
                // and are erased after it (so old report material can no longer be verified).
                let window =
                    i64::try_from(m.report_window_days.saturating_mul(86_400)).unwrap_or(i64::MAX);
                let cutoff = crate::clock::now_i64().saturating_sub(window);
                for (name, value) in store.secrets_with_prefix(RETIRED_FRANKING_PREFIX).await? {
                    let retired_at = name
                        .strip_prefix(RETIRED_FRANKING_PREFIX)
                        .and_then(|t| t.parse::<i64>().ok());
                    match (retired_at, Key32::from_slice(value.expose())) {
                        (Some(at), Some(key)) if at >= cutoff => retired.push(key),
                        _ => {
                            store.delete_secret(&name).await?;
                        }
                    }
                }
                stored_key(store, FRANKING_SECRET_NAME).await?
            }
        };
        let stamp = match &m.stamp_key {
            Some(s) => decode_key("moderation.stamp_key", s)?,
            None => stored_key(store, "franking_stamp_key").await?,
        };
        let secret = match &m.secret {
            Some(s) => decode_key("moderation.secret", s)?,
            None => stored_key(store, "moderation_key").await?,
        };
        let mut previous_franking = match &m.previous_franking_secrets {
            Some(list) => decode_key_list("moderation.previous_franking_secrets", list)?,
            None => Vec::new(),
        };
        previous_franking.extend(retired);
        Ok(Self {
            franking,
            previous_franking,
            stamp,
            secret,
        })
    }
}

fn decode_key(name: &'static str, setting: &SecretSetting) -> Result<Key32, SecretsError> {
    let mut bytes = STANDARD
        .decode(setting.expose().trim())
        .map_err(|_| SecretsError::Malformed(name))?;
    let key = Key32::from_slice(&bytes).ok_or(SecretsError::Malformed(name));
    bytes.zeroize();
    key
}

async fn stored_key<S: SecretStore>(store: &S, name: &'static str) -> Result<Key32, SecretsError> {
    let fresh = Key32::random();
    let stored = store.secret_or_insert(name, fresh.expose()).await?;
    Key32::from_slice(stored.expose()).ok_or(SecretsError::Malformed(name))
}

impl ServerSecrets {
    /// Loads (or generates and stores) every secret.
    pub async fn load<S: SecretStore>(
        settings: &Settings,
        store: &S,
    ) -> Result<Self, SecretsError> {
        // First: a relay that lacks its TOTP key stops before writing anything.
        let totp = TotpKeyring::load(settings)?;
        let username_pepper = match &settings.username_pepper {
            Some(s) => decode_key("username_pepper", s)?,
            None => stored_key(store, "username_pepper").await?,
        };
        let jwt_key = match &settings.jwt_secret {
            Some(s) => decode_key("jwt_secret", s)?,
            None => stored_key(store, "jwt_key").await?,
        };
        let opaque_setup = match &settings.opaque_server_setup {
            Some(s) => {
                let mut bytes = STANDARD
                    .decode(s.expose().trim())
                    .map_err(|_| SecretsError::Malformed("opaque_server_setup"))?;
                let setup = ServerSetup::deserialize(&bytes)
                    .map_err(|_| SecretsError::Malformed("opaque_server_setup"));
                bytes.zeroize();
                setup?
            }
            None => {
                let fresh = ServerSetup::<HavenCipherSuite>::new(&mut OsRng);
                let mut fresh_bytes = fresh.serialize().to_vec();
                let stored = store
                    .secret_or_insert("opaque_server_setup", &fresh_bytes)
                    .await;
                fresh_bytes.zeroize();
                ServerSetup::deserialize(stored?.expose())
                    .map_err(|_| SecretsError::CorruptSetup)?
            }
        };
        let certificate_seed = match &settings.certificate_key {
            Some(s) => decode_key("certificate_key", s)?,
            None => stored_key(store, "certificate_key").await?,
        };
        let certificate_key = ed25519_dalek::SigningKey::from_bytes(certificate_seed.expose());
        let moderation = ModerationSecrets::load(settings, store).await?;
        let franking_stamp = StampKey::from_bytes(*moderation.stamp.expose());
        let addr_key = Key32::from_bytes(username_pepper.hmac(b"haven/client-addr-key/v1", b""));
        Ok(Self {
            addr_key,
            totp,
            username_pepper,
            jwt_key,
            opaque_setup,
            certificate_key,
            franking_stamp,
            moderation,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::settings::ConnectionUrl;

    fn sqlite_at(dir: &std::path::Path) -> Settings {
        Settings {
            database_url: ConnectionUrl::new(format!(
                "sqlite://{}?mode=rwc",
                dir.join("db/haven.db").display()
            )),
            ..Settings::default()
        }
    }

    #[test]
    fn the_default_key_file_is_created_once_next_to_the_sqlite_database() {
        let dir = tempfile::tempdir().unwrap();
        let settings = sqlite_at(dir.path());
        let first = TotpKeyring::load(&settings).unwrap();
        let path = dir.path().join("db").join(TOTP_KEY_FILE);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let again = TotpKeyring::load(&settings).unwrap();
        assert_eq!(first.current.expose(), again.current.expose());
        // No temporary file is left behind.
        assert_eq!(std::fs::read_dir(dir.path().join("db")).unwrap().count(), 1);
    }

    #[test]
    fn configured_keys_win_and_postgres_needs_one() {
        let dir = tempfile::tempdir().unwrap();
        let key = STANDARD.encode([9u8; 32]);
        let mut settings = sqlite_at(dir.path());
        settings.totp_key = Some(SecretSetting::new(key.clone()));
        settings.totp_previous_keys = Some(SecretSetting::new(format!(
            "{}, {}",
            STANDARD.encode([1u8; 32]),
            STANDARD.encode([2u8; 32])
        )));
        let keys = TotpKeyring::load(&settings).unwrap();
        assert_eq!(keys.current.expose(), &[9u8; 32]);
        assert_eq!(keys.previous.len(), 2);
        assert!(
            !dir.path().join("db").exists(),
            "no key file with a key set"
        );

        let mut pg = Settings {
            database_url: ConnectionUrl::new("postgres://db/haven"),
            ..Settings::default()
        };
        assert!(matches!(
            TotpKeyring::load(&pg),
            Err(SecretsError::TotpKeyRequired)
        ));
        let file = dir.path().join("keys/totp.key");
        pg.totp_key_file = Some(file.clone());
        let from_file = TotpKeyring::load(&pg).unwrap();
        assert!(file.exists());
        assert_eq!(
            TotpKeyring::load(&pg).unwrap().current.expose(),
            from_file.current.expose()
        );
    }

    #[test]
    fn malformed_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut settings = sqlite_at(dir.path());
        settings.totp_key = Some(SecretSetting::new("not base64!".to_owned()));
        assert!(matches!(
            TotpKeyring::load(&settings),
            Err(SecretsError::Malformed("totp_key"))
        ));
        settings.totp_key = None;
        settings.totp_previous_keys = Some(SecretSetting::new(STANDARD.encode([1u8; 16])));
        assert!(matches!(
            TotpKeyring::load(&settings),
            Err(SecretsError::Malformed("totp_previous_keys"))
        ));
        let file = dir.path().join("short.key");
        std::fs::write(&file, STANDARD.encode([1u8; 31])).unwrap();
        settings.totp_previous_keys = None;
        settings.totp_key_file = Some(file);
        assert!(matches!(
            TotpKeyring::load(&settings),
            Err(SecretsError::Malformed("totp_key_file"))
        ));
    }
}
