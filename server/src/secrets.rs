//! Server-wide secrets: the username pepper, the JWT key, the OPAQUE server setup and the
//! sender-certificate signing key, and the client-address key derived from the pepper.
//!
//! Each comes from the settings if given; otherwise a fresh random value is offered to the
//! `server_secrets` table with insert-if-absent and the stored value read back, so N instances
//! sharing one database converge on the same secrets whichever starts first.

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
}

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
        let franking = match &m.franking_secret {
            Some(s) => decode_key("moderation.franking_secret", s)?,
            None => stored_key(store, "franking_secret").await?,
        };
        let stamp = match &m.stamp_key {
            Some(s) => decode_key("moderation.stamp_key", s)?,
            None => stored_key(store, "franking_stamp_key").await?,
        };
        let secret = match &m.secret {
            Some(s) => decode_key("moderation.secret", s)?,
            None => stored_key(store, "moderation_key").await?,
        };
        let mut previous_franking = Vec::new();
        if let Some(list) = &m.previous_franking_secrets {
            for item in list
                .expose()
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
            {
                let mut bytes = STANDARD
                    .decode(item)
                    .map_err(|_| SecretsError::Malformed("moderation.previous_franking_secrets"))?;
                let key = Key32::from_slice(&bytes).ok_or(SecretsError::Malformed(
                    "moderation.previous_franking_secrets",
                ));
                bytes.zeroize();
                previous_franking.push(key?);
            }
        }
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
            username_pepper,
            jwt_key,
            opaque_setup,
            certificate_key,
            franking_stamp,
            moderation,
        })
    }
}
