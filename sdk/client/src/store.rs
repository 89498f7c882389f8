//! The client's persistent store: one SQLite file holding every piece of SDK state, each value
//! encrypted under a key the host application provides (from the platform keychain).
//!
//! # Layout (see docs/PROTOCOL.md §12)
//!
//! ```text
//! value_key = HKDF-SHA256(salt = none, ikm = storage_key, info = "Haven_ClientStore_ValueKey_v1")
//! index_key = HKDF-SHA256(salt = none, ikm = storage_key, info = "Haven_ClientStore_IndexKey_v1")
//! row key   = HMAC-SHA256(index_key, u16be(space) || natural key)
//! value     = snapshot::seal(value_key, label = "Haven_ClientStore_Row_v1" || u16be(space) || row key,
//!                            u32be(len(natural key)) || natural key || record bytes)
//! ```
//!
//! Row keys are keyed hashes, so the file reveals neither which peers a device talks to nor which
//! prekey ids it holds; each value is bound to its space and row, so rows cannot be swapped; the
//! natural key inside the ciphertext is compared on every read. A check value written at creation
//! detects a wrong storage key at [`ClientStore::open`] instead of at the first read.
//!
//! The store implements the SDK's [`IdentityStore`], [`PreKeyStore`], [`SessionStore`] and
//! [`SenderKeyStore`], and offers a generic encrypted key-value API ([`ClientStore::put`] and
//! friends) for the client's own state (tokens, contacts, message ids seen, the diary index).

use std::path::Path;

use haven_sdk::groups::{DistributionId, GroupError, GroupSenderSession, SenderKeyRecord};
use haven_sdk::identity::{IdentityKey, IdentityKeyPair};
use haven_sdk::prekeys::{KemPreKey, KemPreKeyKind, OneTimePreKey, SignedPreKey};
use haven_sdk::ratchet::session::SessionRecord;
use haven_sdk::snapshot::{self, StorageKey};
use haven_sdk::store::{
    DeviceAddress, IdentityChange, IdentityStore, PreKeyStore, SenderKeyName, SenderKeyStore,
    SessionStore, StoreError,
};
use hkdf::Hkdf;
use hmac::{Hmac, KeyInit, Mac};
use rusqlite::{Connection, OptionalExtension, params};
use sha2::Sha256;
use zeroize::Zeroizing;

/// Version of the on-disk layout, stored in the `meta` table.
pub const SCHEMA_VERSION: i64 = 1;
const VALUE_KEY_INFO: &[u8] = b"Haven_ClientStore_ValueKey_v1";
const INDEX_KEY_INFO: &[u8] = b"Haven_ClientStore_IndexKey_v1";
const ROW_LABEL: &[u8] = b"Haven_ClientStore_Row_v1";
const CHECK_LABEL: &[u8] = b"Haven_ClientStore_Check_v1";
const CHECK_PLAINTEXT: &[u8] = b"haven-client-store";
/// Largest natural key accepted by the key-value API.
pub const MAX_KEY_LEN: usize = 1024;
/// Largest value accepted by the key-value API.
pub const MAX_VALUE_LEN: usize = 64 << 20;

/// Errors of the client store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientStoreError {
    /// SQLite reported an error (the message never contains stored values).
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The storage key does not open this store.
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
    /// Deriving the store's subkeys failed (cannot happen for 32-byte outputs; reported rather
    /// than continuing with a weak key).
    #[error("key derivation failed")]
    KeyDerivation,
    /// The store holds no identity yet ([`ClientStore::set_identity`] was never called).
    #[error("no identity stored")]
    NoIdentity,
    /// A key or value is larger than the store accepts.
    #[error("{what} of {len} bytes exceeds the limit of {max}")]
    TooLarge {
        /// "key" or "value".
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

impl From<ClientStoreError> for StoreError {
    fn from(err: ClientStoreError) -> Self {
        StoreError::Backend(err.to_string())
    }
}

/// A namespace of the store. Spaces below [`Space::FIRST_APP`] belong to the SDK's protocol
/// state; applications and the client use [`Space::app`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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

/// The encrypted SQLite store. Not `Sync`: use one per thread or wrap it in a mutex.
pub struct ClientStore {
    conn: Connection,
    value_key: StorageKey,
    /// HMAC-SHA256 keyed once with `index_key`; cloned per row key.
    index_mac: Hmac<Sha256>,
}

impl std::fmt::Debug for ClientStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientStore").finish_non_exhaustive()
    }
}

fn derive(storage_key: &[u8; 32], info: &[u8]) -> Result<Zeroizing<[u8; 32]>, ClientStoreError> {
    let mut out = Zeroizing::new([0u8; 32]);
    Hkdf::<Sha256>::new(None, storage_key)
        .expand(info, out.as_mut())
        .map_err(|_| ClientStoreError::KeyDerivation)?;
    Ok(out)
}

fn rng() -> impl rand_core::CryptoRng {
    rand::rng()
}

impl ClientStore {
    /// Opens (creating if needed) the store at `path` with the host's 32-byte storage key.
    ///
    /// # Errors
    /// [`ClientStoreError::WrongKey`] when the file was created with another key,
    /// [`ClientStoreError::UnsupportedSchema`], [`ClientStoreError::Sqlite`].
    pub fn open(path: &Path, storage_key: &[u8; 32]) -> Result<Self, ClientStoreError> {
        Self::init(Connection::open(path)?, storage_key)
    }

    /// An in-memory store (tests, ephemeral sessions).
    ///
    /// # Errors
    /// [`ClientStoreError::Sqlite`].
    pub fn open_in_memory(storage_key: &[u8; 32]) -> Result<Self, ClientStoreError> {
        Self::init(Connection::open_in_memory()?, storage_key)
    }

    fn init(conn: Connection, storage_key: &[u8; 32]) -> Result<Self, ClientStoreError> {
        // WAL + synchronous=FULL: a committed write survives power loss, which the client relies
        // on before it acknowledges a message to the relay. secure_delete overwrites freed pages.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "secure_delete", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value BLOB NOT NULL);
             CREATE TABLE IF NOT EXISTS kv (
                 space INTEGER NOT NULL,
                 key BLOB NOT NULL,
                 value BLOB NOT NULL,
                 PRIMARY KEY (space, key)
             ) WITHOUT ROWID;",
        )?;
        let value_key = StorageKey::from_bytes(*derive(storage_key, VALUE_KEY_INFO)?);
        let index_key = derive(storage_key, INDEX_KEY_INFO)?;
        let index_mac = <Hmac<Sha256> as KeyInit>::new_from_slice(index_key.as_ref())
            .map_err(|_| ClientStoreError::KeyDerivation)?;
        let store = Self {
            conn,
            value_key,
            index_mac,
        };
        store.check_or_create()?;
        Ok(store)
    }

    fn check_or_create(&self) -> Result<(), ClientStoreError> {
        let version: Option<Vec<u8>> = self
            .conn
            .query_row("SELECT value FROM meta WHERE name = 'schema'", [], |r| {
                r.get(0)
            })
            .optional()?;
        match version {
            None => {
                let check =
                    snapshot::seal(&self.value_key, CHECK_LABEL, CHECK_PLAINTEXT, &mut rng());
                let tx = self.conn.unchecked_transaction()?;
                tx.execute(
                    "INSERT INTO meta (name, value) VALUES ('schema', ?1), ('check', ?2)",
                    params![SCHEMA_VERSION.to_be_bytes().to_vec(), check],
                )?;
                tx.commit()?;
                Ok(())
            }
            Some(bytes) => {
                let found = <[u8; 8]>::try_from(bytes.as_slice())
                    .map(i64::from_be_bytes)
                    .unwrap_or(-1);
                if found != SCHEMA_VERSION {
                    return Err(ClientStoreError::UnsupportedSchema { found });
                }
                let check: Vec<u8> = self.conn.query_row(
                    "SELECT value FROM meta WHERE name = 'check'",
                    [],
                    |r| r.get(0),
                )?;
                match snapshot::open(&self.value_key, CHECK_LABEL, &check) {
                    Ok(plain) if plain.as_slice() == CHECK_PLAINTEXT => Ok(()),
                    _ => Err(ClientStoreError::WrongKey),
                }
            }
        }
    }

    fn row_key(&self, space: Space, key: &[u8]) -> [u8; 32] {
        let mut mac = self.index_mac.clone();
        mac.update(&space.0.to_be_bytes());
        mac.update(key);
        mac.finalize().into_bytes().into()
    }

    fn label(space: Space, row: &[u8; 32]) -> Vec<u8> {
        let mut label = Vec::with_capacity(ROW_LABEL.len() + 2 + 32);
        label.extend_from_slice(ROW_LABEL);
        label.extend_from_slice(&space.0.to_be_bytes());
        label.extend_from_slice(row);
        label
    }

    fn seal_row(&self, space: Space, key: &[u8], value: &[u8]) -> ([u8; 32], Vec<u8>) {
        let row = self.row_key(space, key);
        let mut plain = Zeroizing::new(Vec::with_capacity(4 + key.len() + value.len()));
        // Keys are bounded by MAX_KEY_LEN, far below u32::MAX.
        plain.extend_from_slice(&u32::try_from(key.len()).unwrap_or(u32::MAX).to_be_bytes());
        plain.extend_from_slice(key);
        plain.extend_from_slice(value);
        let sealed = snapshot::seal(
            &self.value_key,
            &Self::label(space, &row),
            &plain,
            &mut rng(),
        );
        (row, sealed)
    }

    /// Decrypts a row, returning (natural key, value).
    fn open_row(
        &self,
        space: Space,
        row: &[u8],
        sealed: &[u8],
    ) -> Result<(Vec<u8>, Zeroizing<Vec<u8>>), ClientStoreError> {
        let corrupt = ClientStoreError::Corrupt { space: space.0 };
        let row: [u8; 32] = row
            .try_into()
            .map_err(|_| ClientStoreError::Corrupt { space: space.0 })?;
        let plain = snapshot::open(&self.value_key, &Self::label(space, &row), sealed)
            .map_err(|_| ClientStoreError::Corrupt { space: space.0 })?;
        let (len, rest) = plain
            .split_at_checked(4)
            .ok_or(ClientStoreError::Corrupt { space: space.0 })?;
        let len = u32::from_be_bytes(
            len.try_into()
                .map_err(|_| ClientStoreError::Corrupt { space: space.0 })?,
        ) as usize;
        let (key, value) = rest.split_at_checked(len).ok_or(corrupt)?;
        if self.row_key(space, key) != row {
            return Err(ClientStoreError::Corrupt { space: space.0 });
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

    /// Stores (replacing) `value` under `key` in `space`. Durable when this returns.
    ///
    /// # Errors
    /// [`ClientStoreError::TooLarge`], [`ClientStoreError::Sqlite`].
    pub fn put(&self, space: Space, key: &[u8], value: &[u8]) -> Result<(), ClientStoreError> {
        Self::check_sizes(key, value)?;
        let (row, sealed) = self.seal_row(space, key, value);
        self.conn.execute(
            "INSERT INTO kv (space, key, value) VALUES (?1, ?2, ?3)
             ON CONFLICT (space, key) DO UPDATE SET value = excluded.value",
            params![space.0, row.as_slice(), sealed],
        )?;
        Ok(())
    }

    /// The value under `key` in `space`.
    ///
    /// # Errors
    /// [`ClientStoreError::Corrupt`], [`ClientStoreError::Sqlite`].
    pub fn get(
        &self,
        space: Space,
        key: &[u8],
    ) -> Result<Option<Zeroizing<Vec<u8>>>, ClientStoreError> {
        let row = self.row_key(space, key);
        let sealed: Option<Vec<u8>> = self
            .conn
            .query_row(
                "SELECT value FROM kv WHERE space = ?1 AND key = ?2",
                params![space.0, row.as_slice()],
                |r| r.get(0),
            )
            .optional()?;
        sealed
            .map(|s| self.open_row(space, &row, &s).map(|(_, v)| v))
            .transpose()
    }

    /// Deletes `key` from `space`; whether it existed.
    ///
    /// # Errors
    /// [`ClientStoreError::Sqlite`].
    pub fn delete(&self, space: Space, key: &[u8]) -> Result<bool, ClientStoreError> {
        let row = self.row_key(space, key);
        let n = self.conn.execute(
            "DELETE FROM kv WHERE space = ?1 AND key = ?2",
            params![space.0, row.as_slice()],
        )?;
        Ok(n > 0)
    }

    /// Every (key, value) of `space`, in no particular order.
    ///
    /// # Errors
    /// [`ClientStoreError::Corrupt`], [`ClientStoreError::Sqlite`].
    pub fn entries(&self, space: Space) -> Result<Vec<Entry>, ClientStoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT key, value FROM kv WHERE space = ?1")?;
        let rows = stmt.query_map(params![space.0], |r| {
            Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, Vec<u8>>(1)?))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (row, sealed) = row?;
            out.push(self.open_row(space, &row, &sealed)?);
        }
        Ok(out)
    }

    /// Runs `f` in one SQLite savepoint: every write inside commits together or not at all.
    /// Savepoints nest, so `f` may call other atomic operations.
    ///
    /// # Errors
    /// `f`'s error (after rolling back) or [`ClientStoreError::Sqlite`].
    pub fn atomically<T, E: From<ClientStoreError>>(
        &self,
        f: impl FnOnce(&Self) -> Result<T, E>,
    ) -> Result<T, E> {
        self.begin()?;
        let out = f(self);
        self.end(out.is_ok())?;
        out
    }

    /// As [`ClientStore::atomically`], for operations that need the store mutably (the SDK's
    /// protocol store traits).
    ///
    /// # Errors
    /// `f`'s error (after rolling back) or [`ClientStoreError::Sqlite`].
    pub fn atomically_mut<T, E: From<ClientStoreError>>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<T, E>,
    ) -> Result<T, E> {
        self.begin()?;
        let out = f(self);
        self.end(out.is_ok())?;
        out
    }

    fn begin(&self) -> Result<(), ClientStoreError> {
        Ok(self.conn.execute_batch("SAVEPOINT haven_atomic")?)
    }

    fn end(&self, commit: bool) -> Result<(), ClientStoreError> {
        if commit {
            self.conn.execute_batch("RELEASE haven_atomic")?;
        } else {
            self.conn
                .execute_batch("ROLLBACK TO haven_atomic; RELEASE haven_atomic")?;
        }
        Ok(())
    }

    /// Stores this device's identity key pair and registration id (replacing any).
    ///
    /// # Errors
    /// [`ClientStoreError::Sqlite`].
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
    /// [`ClientStoreError::Corrupt`], [`ClientStoreError::Sqlite`].
    pub fn has_identity(&self) -> Result<bool, ClientStoreError> {
        Ok(self.get(Space::OWN_IDENTITY, b"own")?.is_some())
    }

    fn own(&self) -> Result<(u32, IdentityKeyPair), ClientStoreError> {
        let bytes = self
            .get(Space::OWN_IDENTITY, b"own")?
            .ok_or(ClientStoreError::NoIdentity)?;
        let corrupt = || ClientStoreError::Corrupt {
            space: Space::OWN_IDENTITY.0,
        };
        let (id, pair) = bytes.split_at_checked(4).ok_or_else(corrupt)?;
        let id = u32::from_be_bytes(id.try_into().map_err(|_| corrupt())?);
        let pair = IdentityKeyPair::from_bytes(pair).map_err(|_| corrupt())?;
        Ok((id, pair))
    }

    fn decode<T>(
        &self,
        space: Space,
        key: &[u8],
        parse: impl FnOnce(&[u8]) -> Option<T>,
    ) -> Result<Option<T>, ClientStoreError> {
        match self.get(space, key)? {
            None => Ok(None),
            Some(bytes) => parse(&bytes)
                .map(Some)
                .ok_or(ClientStoreError::Corrupt { space: space.0 }),
        }
    }
}

/// Natural key of per-device rows (peer identities, sessions): `account_id || u32be(device)`.
pub(crate) fn address_key(address: &DeviceAddress) -> [u8; 20] {
    let mut k = [0u8; 20];
    k[..16].copy_from_slice(&address.account_id);
    k[16..].copy_from_slice(&address.device_id.to_be_bytes());
    k
}

fn sender_key_name(name: &SenderKeyName) -> Vec<u8> {
    let mut k = Vec::with_capacity(16 + 4 + name.sender_account.len());
    k.extend_from_slice(&name.distribution_id.0);
    k.extend_from_slice(&name.device_id.to_be_bytes());
    k.extend_from_slice(&name.sender_account);
    k
}

impl IdentityStore for ClientStore {
    fn identity_key_pair(&self) -> Result<IdentityKeyPair, StoreError> {
        Ok(self.own()?.1)
    }

    fn local_registration_id(&self) -> Result<u32, StoreError> {
        Ok(self.own()?.0)
    }

    fn save_identity(
        &mut self,
        address: &DeviceAddress,
        key: &IdentityKey,
    ) -> Result<IdentityChange, StoreError> {
        let old = self.peer_identity(address)?;
        self.put(Space::PEER_IDENTITY, &address_key(address), &key.to_bytes())?;
        Ok(match old {
            None => IdentityChange::NewIdentity,
            Some(old) if old == *key => IdentityChange::Unchanged,
            Some(_) => IdentityChange::Changed,
        })
    }

    fn peer_identity(&self, address: &DeviceAddress) -> Result<Option<IdentityKey>, StoreError> {
        Ok(
            self.decode(Space::PEER_IDENTITY, &address_key(address), |b| {
                IdentityKey::from_bytes(b).ok()
            })?,
        )
    }
}

impl PreKeyStore for ClientStore {
    fn signed_prekey(&self, id: u32) -> Result<Option<SignedPreKey>, StoreError> {
        Ok(self.decode(Space::SIGNED_PREKEY, &id.to_be_bytes(), |b| {
            SignedPreKey::from_bytes(b).ok()
        })?)
    }

    fn save_signed_prekey(&mut self, key: SignedPreKey) -> Result<(), StoreError> {
        Ok(self.put(
            Space::SIGNED_PREKEY,
            &key.id().to_be_bytes(),
            &key.to_bytes(),
        )?)
    }

    fn remove_signed_prekey(&mut self, id: u32) -> Result<(), StoreError> {
        self.delete(Space::SIGNED_PREKEY, &id.to_be_bytes())?;
        Ok(())
    }

    fn signed_prekey_ages(&self) -> Result<Vec<(u32, u64)>, StoreError> {
        let mut out = Vec::new();
        for (_, bytes) in self.entries(Space::SIGNED_PREKEY)? {
            let key = SignedPreKey::from_bytes(&bytes).map_err(|_| ClientStoreError::Corrupt {
                space: Space::SIGNED_PREKEY.0,
            })?;
            out.push((key.id(), key.created_at()));
        }
        out.sort_unstable();
        Ok(out)
    }

    fn one_time_prekey(&self, id: u32) -> Result<Option<OneTimePreKey>, StoreError> {
        Ok(self.decode(Space::ONE_TIME_PREKEY, &id.to_be_bytes(), |b| {
            OneTimePreKey::from_bytes(b).ok()
        })?)
    }

    fn save_one_time_prekey(&mut self, key: OneTimePreKey) -> Result<(), StoreError> {
        Ok(self.put(
            Space::ONE_TIME_PREKEY,
            &key.id().to_be_bytes(),
            &key.to_bytes(),
        )?)
    }

    fn kem_prekey(&self, id: u32) -> Result<Option<KemPreKey>, StoreError> {
        Ok(self.decode(Space::KEM_PREKEY, &id.to_be_bytes(), |b| {
            KemPreKey::from_bytes(b).ok()
        })?)
    }

    fn save_kem_prekey(&mut self, key: KemPreKey) -> Result<(), StoreError> {
        Ok(self.put(Space::KEM_PREKEY, &key.id().to_be_bytes(), &key.to_bytes())?)
    }

    fn remove_kem_prekey(&mut self, id: u32) -> Result<(), StoreError> {
        self.delete(Space::KEM_PREKEY, &id.to_be_bytes())?;
        Ok(())
    }

    fn consume_prekeys(&mut self, one_time: Option<u32>, kem: u32) -> Result<(), StoreError> {
        // Check everything first, then delete inside one transaction: all or nothing.
        if let Some(id) = one_time
            && self.one_time_prekey(id)?.is_none()
        {
            return Err(StoreError::OneTimePreKeyNotFound { id });
        }
        let Some(kem_key) = self.kem_prekey(kem)? else {
            return Err(StoreError::KemPreKeyNotFound { id: kem });
        };
        self.atomically_mut(|s| {
            if let Some(id) = one_time {
                s.delete(Space::ONE_TIME_PREKEY, &id.to_be_bytes())?;
            }
            if kem_key.kind() == KemPreKeyKind::OneTime {
                s.delete(Space::KEM_PREKEY, &kem.to_be_bytes())?;
            }
            Ok::<_, StoreError>(())
        })
    }
}

impl SessionStore for ClientStore {
    fn load_session(&self, address: &DeviceAddress) -> Result<Option<SessionRecord>, StoreError> {
        Ok(self.decode(Space::SESSION, &address_key(address), |b| {
            SessionRecord::from_bytes(b).ok()
        })?)
    }

    fn store_session(
        &mut self,
        address: &DeviceAddress,
        record: &SessionRecord,
    ) -> Result<(), StoreError> {
        Ok(self.put(Space::SESSION, &address_key(address), &record.to_bytes())?)
    }
}

impl SenderKeyStore for ClientStore {
    type Error = ClientStoreError;

    fn load_sender_key(
        &self,
        name: &SenderKeyName,
    ) -> Result<Option<SenderKeyRecord>, ClientStoreError> {
        match self.get(Space::SENDER_KEY, &sender_key_name(name))? {
            None => Ok(None),
            Some(b) => Ok(Some(SenderKeyRecord::from_bytes(&b)?)),
        }
    }

    fn store_sender_key(
        &mut self,
        name: &SenderKeyName,
        record: &SenderKeyRecord,
    ) -> Result<(), ClientStoreError> {
        self.put(
            Space::SENDER_KEY,
            &sender_key_name(name),
            &record.to_bytes(),
        )
    }

    fn load_own_sender_session(
        &self,
        distribution_id: &DistributionId,
    ) -> Result<Option<GroupSenderSession>, ClientStoreError> {
        match self.get(Space::OWN_SENDER_SESSION, &distribution_id.0)? {
            None => Ok(None),
            Some(b) => Ok(Some(GroupSenderSession::from_bytes(&b)?)),
        }
    }

    fn store_own_sender_session(
        &mut self,
        session: &GroupSenderSession,
    ) -> Result<(), ClientStoreError> {
        self.put(
            Space::OWN_SENDER_SESSION,
            &session.distribution_id().0,
            &session.to_bytes(),
        )
    }
}

#[cfg(test)]
fn conformance_store(identity: IdentityKeyPair, registration_id: u32) -> ClientStore {
    #[allow(clippy::unwrap_used)]
    let store = ClientStore::open_in_memory(&[7u8; 32]).unwrap();
    #[allow(clippy::unwrap_used)]
    store.set_identity(&identity, registration_id).unwrap();
    store
}

haven_sdk::store_conformance_tests!(conformance_store);

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn kv_roundtrip_and_wrong_key_and_tamper() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        {
            let s = ClientStore::open(&path, &[1u8; 32]).unwrap();
            s.put(Space::app(0), b"alpha", b"secret value one").unwrap();
            s.put(Space::app(0), b"beta", b"secret value two").unwrap();
            s.put(Space::app(1), b"alpha", b"other space").unwrap();
            assert!(s.delete(Space::app(0), b"beta").unwrap());
            assert!(!s.delete(Space::app(0), b"beta").unwrap());
        }
        // Plaintexts and natural keys never appear in the file.
        let mut raw = std::fs::read(&path).unwrap();
        for wal in ["state.db-wal"] {
            if let Ok(more) = std::fs::read(dir.path().join(wal)) {
                raw.extend(more);
            }
        }
        for needle in [&b"secret value"[..], b"alpha", b"other space"] {
            assert!(!raw.windows(needle.len()).any(|w| w == needle));
        }
        assert!(matches!(
            ClientStore::open(&path, &[2u8; 32]),
            Err(ClientStoreError::WrongKey)
        ));
        let s = ClientStore::open(&path, &[1u8; 32]).unwrap();
        assert_eq!(
            s.get(Space::app(0), b"alpha").unwrap().unwrap().as_slice(),
            b"secret value one"
        );
        assert_eq!(
            s.get(Space::app(1), b"alpha").unwrap().unwrap().as_slice(),
            b"other space"
        );
        assert!(s.get(Space::app(0), b"beta").unwrap().is_none());
        let entries = s.entries(Space::app(0)).unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].0, b"alpha");

        // Swapping a value into another row is detected.
        s.put(Space::app(0), b"gamma", b"third").unwrap();
        let row_a = s.row_key(Space::app(0), b"alpha");
        let row_g = s.row_key(Space::app(0), b"gamma");
        let sealed_g: Vec<u8> = s
            .conn
            .query_row(
                "SELECT value FROM kv WHERE key = ?1",
                [row_g.as_slice()],
                |r| r.get(0),
            )
            .unwrap();
        s.conn
            .execute(
                "UPDATE kv SET value = ?1 WHERE key = ?2",
                params![sealed_g, row_a.as_slice()],
            )
            .unwrap();
        assert!(matches!(
            s.get(Space::app(0), b"alpha"),
            Err(ClientStoreError::Corrupt { .. })
        ));
        // A flipped byte is detected.
        let mut flipped = sealed_g.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        s.conn
            .execute(
                "UPDATE kv SET value = ?1 WHERE key = ?2",
                params![flipped, row_g.as_slice()],
            )
            .unwrap();
        assert!(matches!(
            s.get(Space::app(0), b"gamma"),
            Err(ClientStoreError::Corrupt { .. })
        ));
    }

    #[test]
    fn limits_and_atomicity() {
        let s = ClientStore::open_in_memory(&[3u8; 32]).unwrap();
        assert!(matches!(
            s.put(Space::app(0), &[0u8; MAX_KEY_LEN + 1], b"x"),
            Err(ClientStoreError::TooLarge { what: "key", .. })
        ));
        let res: Result<(), ClientStoreError> = s.atomically(|s| {
            s.put(Space::app(0), b"k", b"v")?;
            Err(ClientStoreError::NoIdentity)
        });
        assert!(res.is_err());
        assert!(s.get(Space::app(0), b"k").unwrap().is_none());
        assert!(matches!(s.identity_key_pair(), Err(StoreError::Backend(_))));
    }
}
