//! The storage key of a device's local store, as an opaque object: the host never gets the
//! bytes back, and they are wiped when the last reference goes.

use std::sync::Arc;

use base64::Engine as _;
use zeroize::{Zeroize, Zeroizing};

use haven_client::storage_key;

use crate::error::HavenError;
use crate::types::KdfSettings;

/// Length of a storage key.
const KEY_LEN: usize = 32;

/// The 32-byte key that encrypts a device's local store. Keep it in the platform's Keychain /
/// Keystore, or derive it from a passphrase; it is wiped from memory when dropped.
#[derive(uniffi::Object)]
pub struct StorageKey {
    key: Zeroizing<[u8; KEY_LEN]>,
}

impl StorageKey {
    /// The key bytes (for opening a store).
    pub(crate) fn bytes(&self) -> &[u8; KEY_LEN] {
        &self.key
    }

    fn from_slice(bytes: &[u8]) -> Result<Arc<Self>, HavenError> {
        let key: [u8; KEY_LEN] = bytes.try_into().map_err(|_| {
            HavenError::InvalidInput(format!(
                "a storage key is {KEY_LEN} bytes, not {}",
                bytes.len()
            ))
        })?;
        Ok(Arc::new(Self {
            key: Zeroizing::new(key),
        }))
    }
}

#[uniffi::export]
impl StorageKey {
    /// A fresh random key (store it in the Keychain / Keystore).
    #[uniffi::constructor]
    pub fn generate() -> Arc<Self> {
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        rand::Rng::fill_bytes(&mut rand::rng(), key.as_mut_slice());
        Arc::new(Self { key })
    }

    /// The key from its 32 bytes (the input is wiped).
    ///
    /// # Errors
    /// [`HavenError::InvalidInput`] unless exactly 32 bytes.
    #[uniffi::constructor]
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Arc<Self>, HavenError> {
        let bytes = Zeroizing::new(bytes);
        Self::from_slice(&bytes)
    }

    /// The key from 64 hex digits (the input is wiped).
    ///
    /// # Errors
    /// [`HavenError::InvalidInput`] for bad hex or a wrong length.
    #[uniffi::constructor]
    pub fn from_hex(hex: String) -> Result<Arc<Self>, HavenError> {
        let text = Zeroizing::new(hex);
        let bytes = Zeroizing::new(
            hex::decode(text.trim())
                .map_err(|_| HavenError::InvalidInput("storage key is not hex".into()))?,
        );
        Self::from_slice(&bytes)
    }

    /// The key from standard base64 (the input is wiped).
    ///
    /// # Errors
    /// [`HavenError::InvalidInput`] for bad base64 or a wrong length.
    #[uniffi::constructor]
    pub fn from_base64(base64: String) -> Result<Arc<Self>, HavenError> {
        let text = Zeroizing::new(base64);
        let bytes = Zeroizing::new(
            base64::engine::general_purpose::STANDARD
                .decode(text.trim())
                .map_err(|_| HavenError::InvalidInput("storage key is not base64".into()))?,
        );
        Self::from_slice(&bytes)
    }

    /// Derives the key from a passphrase with Argon2id (`salt`: at least 16 random bytes kept
    /// next to the store; `kdf`: the cost, `None` for 64 MiB and 3 passes). The passphrase is
    /// wiped. A wrong passphrase later shows up as [`HavenError::WrongStorageKey`] when the
    /// store is opened.
    ///
    /// # Errors
    /// [`HavenError::InvalidInput`] for a short salt or parameters out of bounds.
    #[uniffi::constructor]
    pub fn from_passphrase(
        passphrase: String,
        salt: Vec<u8>,
        kdf: Option<KdfSettings>,
    ) -> Result<Arc<Self>, HavenError> {
        let mut passphrase = passphrase;
        let result = Self::derive(passphrase.as_bytes(), &salt, kdf);
        passphrase.zeroize();
        result
    }
}

impl StorageKey {
    fn derive(
        passphrase: &[u8],
        salt: &[u8],
        kdf: Option<KdfSettings>,
    ) -> Result<Arc<Self>, HavenError> {
        let cost = kdf.map_or(Ok(storage_key::DEFAULT_COST), KdfSettings::to_params)?;
        let key = storage_key::derive(passphrase, salt, cost)
            .map_err(|e| HavenError::InvalidInput(e.to_string()))?;
        Ok(Arc::new(Self { key }))
    }
}
