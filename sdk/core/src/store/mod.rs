//! The client's encrypted store: every piece of client state as key-value rows, each value
//! encrypted under a key the host application provides, over a [`Backend`] that only ever sees
//! keyed hashes and sealed bytes.
//!
//! # Layout (see docs/PROTOCOL.md §12)
//!
//! ```text
//! value_key = HKDF-SHA256(salt = none, ikm = storage_key, info = "Haven_ClientStore_ValueKey_v1")
//! index_key = HKDF-SHA256(salt = none, ikm = storage_key, info = "Haven_ClientStore_IndexKey_v1")
//! row key   = HMAC-SHA256(index_key, u16be(space) || natural key)
//! value     = snapshot::seal(value_key, label = "Haven_ClientStore_Row_v1" || u16be(space) || row key,
//!                            u32be(len(natural key)) || natural key || record bytes)
//! meta      = "schema" → i64be(1), "check" → snapshot::seal(value_key, "Haven_ClientStore_Check_v1",
//!                                                         "haven-client-store")
//! ```
//!
//! Row keys are keyed hashes, so the backend reveals neither which peers a device talks to nor
//! which prekey ids it holds; each value is bound to its space and row, so rows cannot be
//! swapped; the natural key inside the ciphertext is compared on every read. The check value
//! written at creation detects a wrong storage key when the store is opened instead of at the
//! first read.
//!
//! The store implements the SDK's [`IdentityStore`](haven_sdk::store::IdentityStore),
//! [`PreKeyStore`](haven_sdk::store::PreKeyStore), [`SessionStore`](haven_sdk::store::SessionStore)
//! and [`SenderKeyStore`](haven_sdk::store::SenderKeyStore) for every backend, and offers a generic
//! key-value API ([`EncryptedStore::put`] and friends) for the client's own state (tokens,
//! contacts, message ids seen, the diary index).
//!
//! Backends: `haven_client::store::SqliteBackend` (one SQLite file, the native client) and
//! [`MemoryBackend`] (rows in memory, exported as one sealed snapshot: the web keeps it in
//! IndexedDB). [`encrypted_store_tests!`](crate::encrypted_store_tests) is the suite every backend
//! runs.

mod backend;
mod conformance;
mod memory;
mod sdk;

pub use backend::{Backend, RowKey};
pub use memory::{MAX_SNAPSHOT_LEN, MemoryBackend, MemoryStore, SNAPSHOT_LABEL};
pub use sdk::address_key;

use haven_sdk::groups::GroupError;
use haven_sdk::identity::IdentityKeyPair;
use haven_sdk::snapshot::{self, StorageKey};
use haven_sdk::store::StoreError;
use hkdf::Hkdf;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

/// Version of the layout, stored as the meta value `"schema"` (big-endian i64).
pub const SCHEMA_VERSION: i64 = 1;
pub(crate) const VALUE_KEY_INFO: &[u8] = b"Haven_ClientStore_ValueKey_v1";
pub(crate) const INDEX_KEY_INFO: &[u8] = b"Haven_ClientStore_IndexKey_v1";
const ROW_LABEL: &[u8] = b"Haven_ClientStore_Row_v1";
pub(crate) const CHECK_LABEL: &[u8] = b"Haven_ClientStore_Check_v1";
pub(crate) const CHECK_PLAINTEXT: &[u8] = b"haven-client-store";
const META_SCHEMA: &str = "schema";
const META_CHECK: &str = "check";
/// Largest natural key accepted by the key-value API.
pub const MAX_KEY_LEN: usize = 1024;
/// Largest value accepted by the key-value API.
pub const MAX_VALUE_LEN: usize = 64 << 20;

/// Errors of the client store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientStoreError {
    /// The backend (SQLite, memory) reported an error; the message never contains stored values.
    #[error("store backend: {0}")]
    Backend(String),
    /// The storage key does not open this store (or the page key does not open this snapshot,
    /// or the snapshot was tampered with).
    #[error("wrong storage key for this store")]
    WrongKey,
    /// A stored value failed authentication or has the wrong shape (tampering or corruption).
    #[error("stored value in space {space} is corrupt or was tampered with")]
    Corrupt {
        /// The space of the value.
        space: u16,
    },
    /// The store was written by a newer version of this library.
    #[error("store schema version {found} is not supported (expected {SCHEMA_VERSION})")]
    UnsupportedSchema {
        /// The version found.
        found: i64,
    },
    /// A memory store's snapshot opened but is not one (truncated, unknown version, trailing
    /// bytes) or is not a sealed snapshot at all.
    #[error("store snapshot is malformed")]
    MalformedSnapshot,
    /// Deriving the store's subkeys failed (cannot happen for 32-byte outputs; reported rather
    /// than continuing with a weak key).
    #[error("key derivation failed")]
    KeyDerivation,
    /// The store holds no identity yet ([`EncryptedStore::set_identity`] was never called).
    #[error("no identity stored")]
    NoIdentity,
    /// A key, value or snapshot is larger than the store accepts.
    #[error("{what} of {len} bytes exceeds the limit of {max}")]
    TooLarge {
        /// "key", "value" or "snapshot".
        what: &'static str,
        /// Length given.
        len: usize,
        /// Limit.
        max: usize,
    },
    /// A group record failed to decode.
    #[error(transparent)]
    Group(#[from] GroupError),
}

impl ClientStoreError {
    /// A [`ClientStoreError::Backend`] from a backend's error (its message only).
    pub fn backend(err: impl std::fmt::Display) -> Self {
        Self::Backend(err.to_string())
    }
}

impl From<ClientStoreError> for StoreError {
    fn from(err: ClientStoreError) -> Self {
        StoreError::Backend(err.to_string())
    }
}

/// A namespace of the store. Spaces below [`Space::FIRST_APP`] belong to the SDK's protocol
/// state; applications and the client use [`Space::app`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Space(u16);

impl Space {
    /// Own identity key pair and registration id.
    pub const OWN_IDENTITY: Self = Self(1);
    /// Peer identity keys by device address.
    pub const PEER_IDENTITY: Self = Self(2);
    /// Signed prekeys by id.
    pub const SIGNED_PREKEY: Self = Self(3);
    /// One-time prekeys by id.
    pub const ONE_TIME_PREKEY: Self = Self(4);
    /// KEM prekeys by id.
    pub const KEM_PREKEY: Self = Self(5);
    /// Sessions by device address.
    pub const SESSION: Self = Self(6);
    /// Receiving sender-key records by (group, sender account, sender device).
    pub const SENDER_KEY: Self = Self(7);
    /// Own group sending sessions by group.
    pub const OWN_SENDER_SESSION: Self = Self(8);
    /// Base keys of accepted first messages, per signed prekey (key `u32be(spk id) || base key`,
    /// value `0x01`), so a replayed first message cannot make a session (PROTOCOL.md §3.3).
    pub const SEEN_BASE_KEY: Self = Self(9);
    /// The first space free for applications.
    pub const FIRST_APP: u16 = 0x0100;

    /// An application space: `FIRST_APP + n`.
    #[must_use]
    pub const fn app(n: u8) -> Self {
        Self(Self::FIRST_APP + n as u16)
    }

    /// The numeric value.
    #[must_use]
    pub const fn value(self) -> u16 {
        self.0
    }
}

/// One (natural key, decrypted value) pair of a space.
pub type Entry = (Vec<u8>, Zeroizing<Vec<u8>>);

/// The encrypted store over backend `B`; `haven_client::ClientStore` is the SQLite one,
/// [`MemoryStore`] the one in memory. Not `Sync`: use one per thread or wrap it in a mutex.
pub struct EncryptedStore<B> {
    backend: B,
    /// Kept (zeroized on drop) only so that a memory store's snapshot can carry it; it opens
    /// nothing the two subkeys below do not.
    storage_key: Zeroizing<[u8; 32]>,
    value_key: StorageKey,
    /// HMAC-SHA256 keyed once with `index_key`; cloned per row key.
    index_mac: Hmac<Sha256>,
}

impl<B> std::fmt::Debug for EncryptedStore<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EncryptedStore").finish_non_exhaustive()
    }
}

/// An independent copy, for backends that can be copied (a memory store: a fork of the state,
/// e.g. to try an operation and keep the original if it fails).
impl<B: Clone> Clone for EncryptedStore<B> {
    fn clone(&self) -> Self {
        Self {
            backend: self.backend.clone(),
            storage_key: self.storage_key.clone(),
            value_key: self.value_key.clone(),
            index_mac: self.index_mac.clone(),
        }
    }
}

pub(crate) fn derive(
    storage_key: &[u8; 32],
    info: &[u8],
) -> Result<Zeroizing<[u8; 32]>, ClientStoreError> {
    let mut out = Zeroizing::new([0u8; 32]);
    Hkdf::<Sha256>::new(None, storage_key)
        .expand(info, out.as_mut())
        .map_err(|_| ClientStoreError::KeyDerivation)?;
    Ok(out)
}

fn rng() -> impl rand_core::CryptoRng {
    rand::rng()
}

impl<B: Backend> EncryptedStore<B> {
    /// Opens (creating if needed) the store at `location` (a path for SQLite:
    /// `ClientStore::open(&path, &storage_key)`) with the host's 32-byte storage key.
    ///
    /// # Errors
    /// [`ClientStoreError::WrongKey`] when the store was created with another key,
    /// [`ClientStoreError::UnsupportedSchema`], [`ClientStoreError::Backend`].
    pub fn open<L: AsRef<B::Location> + ?Sized>(
        location: &L,
        storage_key: &[u8; 32],
    ) -> Result<Self, ClientStoreError> {
        Self::with_backend(B::open(location.as_ref())?, storage_key)
    }

    /// A new store in memory (tests, ephemeral sessions).
    ///
    /// # Errors
    /// [`ClientStoreError::Backend`].
    pub fn open_in_memory(storage_key: &[u8; 32]) -> Result<Self, ClientStoreError> {
        Self::with_backend(B::in_memory()?, storage_key)
    }

    /// The store over an already opened backend: checks the key against the backend's check
    /// value, or initialises an empty backend.
    ///
    /// # Errors
    /// As [`EncryptedStore::open`].
    pub fn with_backend(backend: B, storage_key: &[u8; 32]) -> Result<Self, ClientStoreError> {
        let value_key = StorageKey::from_bytes(*derive(storage_key, VALUE_KEY_INFO)?);
        let index_key = derive(storage_key, INDEX_KEY_INFO)?;
        let index_mac = <Hmac<Sha256> as KeyInit>::new_from_slice(index_key.as_ref())
            .map_err(|_| ClientStoreError::KeyDerivation)?;
        let store = Self {
            backend,
            storage_key: Zeroizing::new(*storage_key),
            value_key,
            index_mac,
        };
        store.check_or_create()?;
        Ok(store)
    }

    /// The backend, holding only row keys and sealed values (for exports, backups and tests).
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// The backend, closing the store.
    pub fn into_backend(self) -> B {
        self.backend
    }

    fn check_or_create(&self) -> Result<(), ClientStoreError> {
        match self.backend.meta(META_SCHEMA)? {
            None => {
                let check =
                    snapshot::seal(&self.value_key, CHECK_LABEL, CHECK_PLAINTEXT, &mut rng());
                self.atomically(|s| {
                    s.backend
                        .set_meta(META_SCHEMA, &SCHEMA_VERSION.to_be_bytes())?;
                    s.backend.set_meta(META_CHECK, &check)
                })
            }
            Some(bytes) => {
                let found = <[u8; 8]>::try_from(bytes.as_slice())
                    .map(i64::from_be_bytes)
                    .unwrap_or(-1);
                if found != SCHEMA_VERSION {
                    return Err(ClientStoreError::UnsupportedSchema { found });
                }
                let check = self
                    .backend
                    .meta(META_CHECK)?
                    .ok_or_else(|| ClientStoreError::backend("the store has no check value"))?;
                match snapshot::open(&self.value_key, CHECK_LABEL, &check) {
                    Ok(plain) if plain.as_slice() == CHECK_PLAINTEXT => Ok(()),
                    _ => Err(ClientStoreError::WrongKey),
                }
            }
        }
    }

    /// The row key the backend files `key` of `space` under (PROTOCOL §12).
    #[must_use]
    pub fn row_key(&self, space: Space, key: &[u8]) -> RowKey {
        let mut mac = self.index_mac.clone();
        mac.update(&space.0.to_be_bytes());
        mac.update(key);
        mac.finalize().into_bytes().into()
    }

    fn label(space: Space, row: &RowKey) -> Vec<u8> {
        let mut label = Vec::with_capacity(ROW_LABEL.len() + 2 + 32);
        label.extend_from_slice(ROW_LABEL);
        label.extend_from_slice(&space.0.to_be_bytes());
        label.extend_from_slice(row);
        label
    }

    fn seal_row(&self, space: Space, key: &[u8], value: &[u8]) -> (RowKey, Vec<u8>) {
        self.seal_row_with(space, key, value, &mut rng())
    }

    /// [`Self::seal_row`] with the caller's RNG for the nonce (the published vectors fix it).
    pub(crate) fn seal_row_with<R: rand_core::CryptoRng + ?Sized>(
        &self,
        space: Space,
        key: &[u8],
        value: &[u8],
        rng: &mut R,
    ) -> (RowKey, Vec<u8>) {
        let row = self.row_key(space, key);
        let mut plain = Zeroizing::new(Vec::with_capacity(4 + key.len() + value.len()));
        // Keys are bounded by MAX_KEY_LEN, far below u32::MAX.
        plain.extend_from_slice(&u32::try_from(key.len()).unwrap_or(u32::MAX).to_be_bytes());
        plain.extend_from_slice(key);
        plain.extend_from_slice(value);
        let sealed = snapshot::seal(&self.value_key, &Self::label(space, &row), &plain, rng);
        (row, sealed)
    }

    /// Decrypts a row, returning (natural key, value).
    fn open_row(
        &self,
        space: Space,
        row: &RowKey,
        sealed: &[u8],
    ) -> Result<Entry, ClientStoreError> {
        let corrupt = || ClientStoreError::Corrupt { space: space.0 };
        let plain = snapshot::open(&self.value_key, &Self::label(space, row), sealed)
            .map_err(|_| corrupt())?;
        let (len, rest) = plain.split_at_checked(4).ok_or_else(corrupt)?;
        let len = u32::from_be_bytes(len.try_into().map_err(|_| corrupt())?) as usize;
        let (key, value) = rest.split_at_checked(len).ok_or_else(corrupt)?;
        if self.row_key(space, key) != *row {
            return Err(corrupt());
        }
        Ok((key.to_vec(), Zeroizing::new(value.to_vec())))
    }

    fn check_sizes(key: &[u8], value: &[u8]) -> Result<(), ClientStoreError> {
        if key.len() > MAX_KEY_LEN {
            return Err(ClientStoreError::TooLarge {
                what: "key",
                len: key.len(),
                max: MAX_KEY_LEN,
            });
        }
        if value.len() > MAX_VALUE_LEN {
            return Err(ClientStoreError::TooLarge {
                what: "value",
                len: value.len(),
                max: MAX_VALUE_LEN,
            });
        }
        Ok(())
    }

    /// Stores (replacing) `value` under `key` in `space`. Durable when this returns (for
    /// backends that persist).
    ///
    /// # Errors
    /// [`ClientStoreError::TooLarge`], [`ClientStoreError::Backend`].
    pub fn put(&self, space: Space, key: &[u8], value: &[u8]) -> Result<(), ClientStoreError> {
        Self::check_sizes(key, value)?;
        let (row, sealed) = self.seal_row(space, key, value);
        self.backend.put(space, &row, &sealed)
    }

    /// The value under `key` in `space`.
    ///
    /// # Errors
    /// [`ClientStoreError::Corrupt`], [`ClientStoreError::Backend`].
    pub fn get(
        &self,
        space: Space,
        key: &[u8],
    ) -> Result<Option<Zeroizing<Vec<u8>>>, ClientStoreError> {
        let row = self.row_key(space, key);
        self.backend
            .get(space, &row)?
            .map(|sealed| self.open_row(space, &row, &sealed).map(|(_, v)| v))
            .transpose()
    }

    /// Deletes `key` from `space`; whether it existed.
    ///
    /// # Errors
    /// [`ClientStoreError::Backend`].
    pub fn delete(&self, space: Space, key: &[u8]) -> Result<bool, ClientStoreError> {
        self.backend.delete(space, &self.row_key(space, key))
    }

    /// Every (key, value) of `space`, in no particular order.
    ///
    /// # Errors
    /// [`ClientStoreError::Corrupt`], [`ClientStoreError::Backend`].
    pub fn entries(&self, space: Space) -> Result<Vec<Entry>, ClientStoreError> {
        self.backend
            .scan(space)?
            .iter()
            .map(|(row, sealed)| self.open_row(space, row, sealed))
            .collect()
    }

    /// Runs `f` in one backend transaction: every write inside commits together or not at all.
    /// Transactions nest, so `f` may call other atomic operations.
    ///
    /// # Errors
    /// `f`'s error (after rolling back) or [`ClientStoreError::Backend`].
    pub fn atomically<T, E: From<ClientStoreError>>(
        &self,
        f: impl FnOnce(&Self) -> Result<T, E>,
    ) -> Result<T, E> {
        self.backend.begin()?;
        let out = f(self);
        self.end(out.is_ok())?;
        out
    }

    /// As [`EncryptedStore::atomically`], for operations that need the store mutably (the SDK's
    /// protocol store traits).
    ///
    /// # Errors
    /// `f`'s error (after rolling back) or [`ClientStoreError::Backend`].
    pub fn atomically_mut<T, E: From<ClientStoreError>>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<T, E>,
    ) -> Result<T, E> {
        self.backend.begin()?;
        let out = f(self);
        self.end(out.is_ok())?;
        out
    }

    fn end(&self, commit: bool) -> Result<(), ClientStoreError> {
        if commit {
            self.backend.commit()
        } else {
            self.backend.rollback()
        }
    }

    /// Stores this device's identity key pair and registration id (replacing any).
    ///
    /// # Errors
    /// [`ClientStoreError::Backend`].
    pub fn set_identity(
        &self,
        identity: &IdentityKeyPair,
        registration_id: u32,
    ) -> Result<(), ClientStoreError> {
        let pair = identity.to_bytes();
        let mut value = Zeroizing::new(Vec::with_capacity(4 + pair.len()));
        value.extend_from_slice(&registration_id.to_be_bytes());
        value.extend_from_slice(&pair);
        self.put(Space::OWN_IDENTITY, b"own", &value)
    }

    /// Whether an identity was stored.
    ///
    /// # Errors
    /// [`ClientStoreError::Corrupt`], [`ClientStoreError::Backend`].
    pub fn has_identity(&self) -> Result<bool, ClientStoreError> {
        Ok(self.get(Space::OWN_IDENTITY, b"own")?.is_some())
    }
}
