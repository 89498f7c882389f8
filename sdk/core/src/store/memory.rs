//! [`MemoryBackend`]: the store's rows in memory, and the whole state as one sealed snapshot
//! for platforms that persist it themselves (the web keeps it in IndexedDB). PROTOCOL §12.1.
//!
//! ```text
//! plaintext = 0x01 · storage_key (32)
//!           · u32 n · n × ( u32 len · name · u32 len · value )              -- the meta table
//!           · u32 m · m × ( u16 space · row key (32) · u32 len · sealed )   -- the rows
//! snapshot  = haven_sdk::snapshot::seal(page_key, "Haven_ClientStore_Snapshot_v1", plaintext)
//! ```
//!
//! Integers are big-endian. Meta and rows are exactly the two tables of the SQLite layout: rows
//! stay sealed under the store's own keys inside the snapshot. The storage key travels inside,
//! wrapped by the page key, so a store created before the page key is known (a new web device)
//! exports under whatever page key the page holds.

use std::cell::{RefCell, RefMut};
use std::collections::BTreeMap;

use haven_protocol::encoding::{Reader, put_bytes_u32};
use haven_sdk::snapshot::{self, SnapshotError, StorageKey};
use rand_core::CryptoRng;
use zeroize::Zeroizing;

use super::{Backend, ClientStoreError, EncryptedStore, RowKey, Space};

/// Snapshot label (associated data) of an exported memory store.
pub const SNAPSHOT_LABEL: &[u8] = b"Haven_ClientStore_Snapshot_v1";
/// Version byte of the snapshot plaintext.
const SNAPSHOT_FORMAT: u8 = 0x01;
/// Largest snapshot accepted (checked before decrypting) and exported (64 MiB).
pub const MAX_SNAPSHOT_LEN: usize = 64 << 20;
/// Longest meta name a snapshot may hold (the store writes `"schema"` and `"check"`).
const MAX_META_NAME: usize = 64;

/// The encrypted store in memory.
pub type MemoryStore = EncryptedStore<MemoryBackend>;

type Rows = BTreeMap<(u16, RowKey), Zeroizing<Vec<u8>>>;
type Meta = BTreeMap<String, Zeroizing<Vec<u8>>>;

#[derive(Default, Clone)]
struct Tables {
    meta: Meta,
    rows: Rows,
}

#[derive(Default, Clone)]
struct State {
    tables: Tables,
    /// The tables as they were at each open `begin`, innermost last.
    saved: Vec<Tables>,
}

/// Rows and meta in `BTreeMap`s; transactions snapshot the tables at `begin` and restore them
/// on `rollback`. Values (already sealed by the store) are zeroized when replaced or dropped.
#[derive(Default, Clone)]
pub struct MemoryBackend {
    state: RefCell<State>,
}

impl std::fmt::Debug for MemoryBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("MemoryBackend");
        if let Ok(s) = self.state.try_borrow() {
            d.field("rows", &s.tables.rows.len())
                .field("transactions", &s.saved.len());
        }
        d.finish_non_exhaustive()
    }
}

impl MemoryBackend {
    fn state(&self) -> Result<RefMut<'_, State>, ClientStoreError> {
        // Borrows never outlive a method, so this only fails on a re-entrant call.
        self.state
            .try_borrow_mut()
            .map_err(|_| ClientStoreError::backend("memory store borrowed re-entrantly"))
    }
}

impl AsRef<MemoryBackend> for MemoryBackend {
    fn as_ref(&self) -> &MemoryBackend {
        self
    }
}

impl Backend for MemoryBackend {
    /// Opening a memory backend copies it ([`EncryptedStore::with_backend`] takes one instead).
    type Location = MemoryBackend;

    fn open(location: &MemoryBackend) -> Result<Self, ClientStoreError> {
        Ok(location.clone())
    }

    fn in_memory() -> Result<Self, ClientStoreError> {
        Ok(Self::default())
    }

    fn meta(&self, name: &str) -> Result<Option<Vec<u8>>, ClientStoreError> {
        Ok(self.state()?.tables.meta.get(name).map(|v| v.to_vec()))
    }

    fn set_meta(&self, name: &str, value: &[u8]) -> Result<(), ClientStoreError> {
        self.state()?
            .tables
            .meta
            .insert(name.to_owned(), Zeroizing::new(value.to_vec()));
        Ok(())
    }

    fn get(&self, space: Space, row: &RowKey) -> Result<Option<Vec<u8>>, ClientStoreError> {
        Ok(self
            .state()?
            .tables
            .rows
            .get(&(space.value(), *row))
            .map(|v| v.to_vec()))
    }

    fn put(&self, space: Space, row: &RowKey, sealed: &[u8]) -> Result<(), ClientStoreError> {
        self.state()?
            .tables
            .rows
            .insert((space.value(), *row), Zeroizing::new(sealed.to_vec()));
        Ok(())
    }

    fn delete(&self, space: Space, row: &RowKey) -> Result<bool, ClientStoreError> {
        Ok(self
            .state()?
            .tables
            .rows
            .remove(&(space.value(), *row))
            .is_some())
    }

    fn scan(&self, space: Space) -> Result<Vec<(RowKey, Vec<u8>)>, ClientStoreError> {
        let s = space.value();
        Ok(self
            .state()?
            .tables
            .rows
            .range((s, [0; 32])..=(s, [0xFF; 32]))
            .map(|((_, row), v)| (*row, v.to_vec()))
            .collect())
    }

    fn begin(&self) -> Result<(), ClientStoreError> {
        let mut state = self.state()?;
        let copy = state.tables.clone();
        state.saved.push(copy);
        Ok(())
    }

    fn commit(&self) -> Result<(), ClientStoreError> {
        self.state()?
            .saved
            .pop()
            .map(drop)
            .ok_or_else(|| ClientStoreError::backend("commit without a transaction"))
    }

    fn rollback(&self) -> Result<(), ClientStoreError> {
        let mut state = self.state()?;
        let saved = state
            .saved
            .pop()
            .ok_or_else(|| ClientStoreError::backend("rollback without a transaction"))?;
        state.tables = saved;
        Ok(())
    }
}

impl EncryptedStore<MemoryBackend> {
    /// A new, empty store in memory under a freshly generated storage key (which
    /// [`export`](Self::export) carries inside the snapshot).
    ///
    /// # Errors
    /// [`ClientStoreError::KeyDerivation`] (cannot happen).
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Result<Self, ClientStoreError> {
        let mut key = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(key.as_mut());
        Self::open_in_memory(&key)
    }

    /// The whole store (meta, sealed rows and its storage key) sealed under `page_key`
    /// (PROTOCOL §12.1).
    ///
    /// # Errors
    /// [`ClientStoreError::TooLarge`] beyond [`MAX_SNAPSHOT_LEN`] (the snapshot would not import),
    /// [`ClientStoreError::Backend`] inside [`atomically`](Self::atomically) (the writes of an
    /// unfinished transaction are not exported).
    pub fn export(&self, page_key: &StorageKey) -> Result<Vec<u8>, ClientStoreError> {
        self.export_with(page_key, &mut rand::rng())
    }

    /// [`Self::export`] with the caller's RNG for the nonce (the published vectors fix it).
    pub(crate) fn export_with<R: CryptoRng + ?Sized>(
        &self,
        page_key: &StorageKey,
        rng: &mut R,
    ) -> Result<Vec<u8>, ClientStoreError> {
        let state = self.backend.state()?;
        if !state.saved.is_empty() {
            return Err(ClientStoreError::backend(
                "a snapshot cannot be taken inside a transaction",
            ));
        }
        let plain = encode(&self.storage_key, &state.tables);
        let len = plain.len() + snapshot::SNAPSHOT_OVERHEAD;
        if len > MAX_SNAPSHOT_LEN {
            return Err(ClientStoreError::TooLarge {
                what: "snapshot",
                len,
                max: MAX_SNAPSHOT_LEN,
            });
        }
        Ok(snapshot::seal(page_key, SNAPSHOT_LABEL, &plain, rng))
    }

    /// A store from [`export`](Self::export)'s output.
    ///
    /// # Errors
    /// [`ClientStoreError::WrongKey`] for a wrong page key or a tampered snapshot,
    /// [`ClientStoreError::MalformedSnapshot`], [`ClientStoreError::TooLarge`],
    /// [`ClientStoreError::UnsupportedSchema`].
    pub fn import(page_key: &StorageKey, sealed: &[u8]) -> Result<Self, ClientStoreError> {
        if sealed.len() > MAX_SNAPSHOT_LEN {
            return Err(ClientStoreError::TooLarge {
                what: "snapshot",
                len: sealed.len(),
                max: MAX_SNAPSHOT_LEN,
            });
        }
        let plain = snapshot::open(page_key, SNAPSHOT_LABEL, sealed).map_err(|e| match e {
            SnapshotError::DecryptionFailed => ClientStoreError::WrongKey,
            _ => ClientStoreError::MalformedSnapshot,
        })?;
        let (storage_key, tables) = decode(&plain).ok_or(ClientStoreError::MalformedSnapshot)?;
        let backend = MemoryBackend {
            state: RefCell::new(State {
                tables,
                saved: Vec::new(),
            }),
        };
        Self::with_backend(backend, &storage_key)
    }
}

/// The snapshot plaintext, allocated once at its final size (no copies left by reallocation).
fn encode(storage_key: &[u8; 32], tables: &Tables) -> Zeroizing<Vec<u8>> {
    let meta_len: usize = tables
        .meta
        .iter()
        .map(|(name, value)| 8 + name.len() + value.len())
        .sum();
    let rows_len: usize = tables.rows.values().map(|v| 2 + 32 + 4 + v.len()).sum();
    let mut out = Zeroizing::new(Vec::with_capacity(1 + 32 + 4 + meta_len + 4 + rows_len));
    out.push(SNAPSHOT_FORMAT);
    out.extend_from_slice(storage_key);
    // Counts and lengths are bounded by MAX_SNAPSHOT_LEN (checked by the caller), far below
    // u32::MAX; a saturated count would be refused on import.
    out.extend_from_slice(&count(tables.meta.len()));
    for (name, value) in &tables.meta {
        put_bytes_u32(&mut out, name.as_bytes());
        put_bytes_u32(&mut out, value);
    }
    out.extend_from_slice(&count(tables.rows.len()));
    for ((space, row), value) in &tables.rows {
        out.extend_from_slice(&space.to_be_bytes());
        out.extend_from_slice(row);
        put_bytes_u32(&mut out, value);
    }
    out
}

fn count(n: usize) -> [u8; 4] {
    u32::try_from(n).unwrap_or(u32::MAX).to_be_bytes()
}

/// The storage key and tables of a snapshot plaintext; `None` unless it is exactly one, with no
/// duplicate names or rows and no trailing bytes.
fn decode(plain: &[u8]) -> Option<(Zeroizing<[u8; 32]>, Tables)> {
    let mut r = Reader::new(plain);
    if r.u8()? != SNAPSHOT_FORMAT {
        return None;
    }
    let storage_key = Zeroizing::new(r.array::<32>()?);
    let mut tables = Tables::default();
    for _ in 0..r.u32()? {
        let name = std::str::from_utf8(r.bytes_u32(MAX_META_NAME)?).ok()?;
        let value = Zeroizing::new(r.bytes_u32(MAX_SNAPSHOT_LEN)?.to_vec());
        if tables.meta.insert(name.to_owned(), value).is_some() {
            return None;
        }
    }
    for _ in 0..r.u32()? {
        let space = r.u16()?;
        let row = r.array::<32>()?;
        let value = Zeroizing::new(r.bytes_u32(MAX_SNAPSHOT_LEN)?.to_vec());
        if tables.rows.insert((space, row), value).is_some() {
            return None;
        }
    }
    r.finish()?;
    Some((storage_key, tables))
}

#[cfg(test)]
fn conformance_store(
    identity: haven_sdk::identity::IdentityKeyPair,
    registration_id: u32,
) -> MemoryStore {
    #[allow(clippy::unwrap_used)]
    let store = MemoryStore::open_in_memory(&[7u8; 32]).unwrap();
    #[allow(clippy::unwrap_used)]
    store.set_identity(&identity, registration_id).unwrap();
    store
}

haven_sdk::store_conformance_tests!(conformance_store);

crate::encrypted_store_tests!(|key: &[u8; 32]| MemoryStore::open_in_memory(key).unwrap());

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use haven_sdk::identity::IdentityKeyPair;
    use haven_sdk::store::IdentityStore;

    fn rng() -> rand_chacha::ChaCha20Rng {
        <rand_chacha::ChaCha20Rng as rand_core::SeedableRng>::from_seed([3; 32])
    }

    fn filled() -> MemoryStore {
        let s = MemoryStore::generate(&mut rng()).unwrap();
        s.set_identity(&IdentityKeyPair::generate(&mut rng()), 9)
            .unwrap();
        s.put(Space::app(0xF0), b"account-record", b"account value 0123")
            .unwrap();
        s.put(Space::app(0xF2), b"message-one", &[1]).unwrap();
        s
    }

    #[test]
    fn export_import_roundtrip() {
        let s = filled();
        let page = StorageKey::from_bytes([9; 32]);
        let sealed = s.export(&page).unwrap();
        let back = MemoryStore::import(&page, &sealed).unwrap();
        assert_eq!(
            back.get(Space::app(0xF0), b"account-record")
                .unwrap()
                .unwrap()
                .as_slice(),
            b"account value 0123"
        );
        assert_eq!(back.entries(Space::app(0xF2)).unwrap().len(), 1);
        assert_eq!(back.local_registration_id().unwrap(), 9);
        // The import is a store like any other: it writes, and exports again.
        back.put(Space::app(0xF2), b"m2", &[2]).unwrap();
        let again = MemoryStore::import(&page, &back.export(&page).unwrap()).unwrap();
        assert_eq!(again.entries(Space::app(0xF2)).unwrap().len(), 2);
        // Nothing readable in the snapshot. The needles are 11 bytes and
        // more, so random ciphertext does not hold one by chance (a two-byte
        // needle in a snapshot of some kilobytes does, now and then).
        for needle in [
            &b"account value 0123"[..],
            b"account-record",
            b"message-one",
        ] {
            assert!(!sealed.windows(needle.len()).any(|w| w == needle));
        }
    }

    #[test]
    fn wrong_page_key_tampering_and_truncation_are_refused() {
        let page = StorageKey::from_bytes([9; 32]);
        let sealed = filled().export(&page).unwrap();
        assert!(matches!(
            MemoryStore::import(&StorageKey::from_bytes([8; 32]), &sealed),
            Err(ClientStoreError::WrongKey)
        ));
        for i in [0, 1, 30, sealed.len() / 2, sealed.len() - 1] {
            let mut t = sealed.clone();
            t[i] ^= 1;
            let err = MemoryStore::import(&page, &t).unwrap_err();
            assert!(
                matches!(
                    err,
                    ClientStoreError::WrongKey | ClientStoreError::MalformedSnapshot
                ),
                "byte {i}: {err:?}"
            );
        }
        for n in [0, 5, snapshot::SNAPSHOT_OVERHEAD - 1] {
            assert!(matches!(
                MemoryStore::import(&page, &sealed[..n]),
                Err(ClientStoreError::MalformedSnapshot)
            ));
        }
        // A cut-off ciphertext fails authentication.
        assert!(matches!(
            MemoryStore::import(&page, &sealed[..sealed.len() - 1]),
            Err(ClientStoreError::WrongKey)
        ));
        assert!(matches!(
            MemoryStore::import(&page, &vec![0; MAX_SNAPSHOT_LEN + 1]),
            Err(ClientStoreError::TooLarge {
                what: "snapshot",
                ..
            })
        ));
    }

    #[test]
    fn decoder_refuses_truncated_duplicate_and_trailing_bytes() {
        let s = filled();
        let state = s.backend.state().unwrap();
        let plain = encode(&s.storage_key, &state.tables);
        assert!(decode(&plain).is_some());
        for n in 0..plain.len() {
            assert!(decode(&plain[..n]).is_none(), "prefix {n}");
        }
        let mut longer = plain.to_vec();
        longer.push(0);
        assert!(decode(&longer).is_none());
        let mut version = plain.to_vec();
        version[0] = 2;
        assert!(decode(&version).is_none());
        // The same row twice: the rows of `tables` without the first, then it twice.
        let mut tables = state.tables.clone();
        let ((space, row), value) = tables.rows.pop_first().unwrap();
        let mut twice = encode(&s.storage_key, &tables).to_vec();
        for _ in 0..2 {
            twice.extend_from_slice(&space.to_be_bytes());
            twice.extend_from_slice(&row);
            put_bytes_u32(&mut twice, &value);
        }
        let meta_len: usize = tables.meta.iter().map(|(n, v)| 8 + n.len() + v.len()).sum();
        let at = 1 + 32 + 4 + meta_len;
        let rows = u32::try_from(tables.rows.len() + 2).unwrap();
        twice[at..at + 4].copy_from_slice(&rows.to_be_bytes());
        let once = {
            let mut t = twice[..twice.len() - (2 + 32 + 4 + value.len())].to_vec();
            t[at..at + 4].copy_from_slice(&(rows - 1).to_be_bytes());
            t
        };
        assert!(decode(&once).is_some());
        assert!(decode(&twice).is_none());
    }

    #[test]
    fn export_refuses_an_open_transaction_and_clones_are_independent() {
        let s = filled();
        let page = StorageKey::from_bytes([1; 32]);
        let inside: Result<Vec<u8>, ClientStoreError> = s.atomically(|s| s.export(&page));
        assert!(matches!(inside, Err(ClientStoreError::Backend(_))));
        let fork = s.clone();
        fork.put(Space::app(1), b"only in the fork", b"x").unwrap();
        assert!(s.get(Space::app(1), b"only in the fork").unwrap().is_none());
        assert!(s.export(&page).is_ok());
    }

    #[test]
    fn debug_shows_no_contents() {
        let s = filled();
        assert_eq!(format!("{s:?}"), "EncryptedStore { .. }");
        let shown = format!("{:?}", s.backend());
        assert!(shown.starts_with("MemoryBackend { rows: 3"), "{shown}");
    }
}
