//! The client's persistent store: [`ClientStore`], the client core's encrypted store
//! ([`haven_client_core::store`], PROTOCOL §12) over one SQLite file.
//!
//! Everything about encryption lives in the core; this module only keeps sealed rows:
//!
//! ```text
//! meta(name TEXT PRIMARY KEY, value BLOB)         -- 'schema', 'check'
//! kv(space INTEGER, key BLOB, value BLOB, PRIMARY KEY (space, key)) WITHOUT ROWID
//! ```
//!
//! `kv.key` is the 32-byte row key (a keyed hash of the space and natural key) and `kv.value` the
//! sealed value, so the file reveals neither values nor which peers or prekey ids it holds.

use std::path::Path;

use haven_client_core::store::{Backend, EncryptedStore, RowKey};
use rusqlite::{Connection, OptionalExtension, params};

pub use haven_client_core::store::{
    ClientStoreError, Entry, MAX_KEY_LEN, MAX_VALUE_LEN, SCHEMA_VERSION, Space,
};

/// The encrypted SQLite store: `ClientStore::open(&path, &storage_key)`. Not `Sync`: use one per
/// thread or wrap it in a mutex.
pub type ClientStore = EncryptedStore<SqliteBackend>;

/// SQLite savepoint of [`Backend::begin`]; savepoints of the same name nest.
const SAVEPOINT: &str = "haven_atomic";

fn sql(err: rusqlite::Error) -> ClientStoreError {
    ClientStoreError::backend(err)
}

/// The rows of a [`ClientStore`] in one SQLite file (WAL, `synchronous = FULL`,
/// `secure_delete`); transactions are savepoints.
pub struct SqliteBackend {
    conn: Connection,
}

impl std::fmt::Debug for SqliteBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteBackend").finish_non_exhaustive()
    }
}

impl SqliteBackend {
    fn init(conn: Connection) -> Result<Self, rusqlite::Error> {
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
        Ok(Self { conn })
    }
}

impl Backend for SqliteBackend {
    /// The database file.
    type Location = Path;

    fn open(path: &Path) -> Result<Self, ClientStoreError> {
        Connection::open(path).and_then(Self::init).map_err(sql)
    }

    fn in_memory() -> Result<Self, ClientStoreError> {
        Connection::open_in_memory()
            .and_then(Self::init)
            .map_err(sql)
    }

    fn meta(&self, name: &str) -> Result<Option<Vec<u8>>, ClientStoreError> {
        self.conn
            .query_row("SELECT value FROM meta WHERE name = ?1", [name], |r| {
                r.get(0)
            })
            .optional()
            .map_err(sql)
    }

    fn set_meta(&self, name: &str, value: &[u8]) -> Result<(), ClientStoreError> {
        self.conn
            .execute(
                "INSERT INTO meta (name, value) VALUES (?1, ?2)
                 ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                params![name, value],
            )
            .map(drop)
            .map_err(sql)
    }

    fn get(&self, space: Space, row: &RowKey) -> Result<Option<Vec<u8>>, ClientStoreError> {
        self.conn
            .query_row(
                "SELECT value FROM kv WHERE space = ?1 AND key = ?2",
                params![space.value(), row.as_slice()],
                |r| r.get(0),
            )
            .optional()
            .map_err(sql)
    }

    fn put(&self, space: Space, row: &RowKey, sealed: &[u8]) -> Result<(), ClientStoreError> {
        self.conn
            .execute(
                "INSERT INTO kv (space, key, value) VALUES (?1, ?2, ?3)
                 ON CONFLICT (space, key) DO UPDATE SET value = excluded.value",
                params![space.value(), row.as_slice(), sealed],
            )
            .map(drop)
            .map_err(sql)
    }

    fn delete(&self, space: Space, row: &RowKey) -> Result<bool, ClientStoreError> {
        self.conn
            .execute(
                "DELETE FROM kv WHERE space = ?1 AND key = ?2",
                params![space.value(), row.as_slice()],
            )
            .map(|n| n > 0)
            .map_err(sql)
    }

    fn scan(&self, space: Space) -> Result<Vec<(RowKey, Vec<u8>)>, ClientStoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT key, value FROM kv WHERE space = ?1")
            .map_err(sql)?;
        let rows = stmt
            .query_map(params![space.value()], |r| {
                Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, Vec<u8>>(1)?))
            })
            .map_err(sql)?;
        let mut out = Vec::new();
        for row in rows {
            let (key, sealed) = row.map_err(sql)?;
            let key = RowKey::try_from(key.as_slice()).map_err(|_| ClientStoreError::Corrupt {
                space: space.value(),
            })?;
            out.push((key, sealed));
        }
        Ok(out)
    }

    fn begin(&self) -> Result<(), ClientStoreError> {
        self.conn
            .execute_batch(&format!("SAVEPOINT {SAVEPOINT}"))
            .map_err(sql)
    }

    fn commit(&self) -> Result<(), ClientStoreError> {
        self.conn
            .execute_batch(&format!("RELEASE {SAVEPOINT}"))
            .map_err(sql)
    }

    fn rollback(&self) -> Result<(), ClientStoreError> {
        self.conn
            .execute_batch(&format!("ROLLBACK TO {SAVEPOINT}; RELEASE {SAVEPOINT}"))
            .map_err(sql)
    }
}

#[cfg(test)]
fn conformance_store(
    identity: haven_sdk::identity::IdentityKeyPair,
    registration_id: u32,
) -> ClientStore {
    #[allow(clippy::unwrap_used)]
    let store = ClientStore::open_in_memory(&[7u8; 32]).unwrap();
    #[allow(clippy::unwrap_used)]
    store.set_identity(&identity, registration_id).unwrap();
    store
}

haven_sdk::store_conformance_tests!(conformance_store);

haven_client_core::encrypted_store_tests!(
    |key: &[u8; 32]| ClientStore::open_in_memory(key).unwrap()
);

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    /// The file and its write-ahead log, as an attacker holding the disk would read them.
    fn on_disk(dir: &std::path::Path) -> Vec<u8> {
        let mut raw = std::fs::read(dir.join("state.db")).unwrap();
        if let Ok(more) = std::fs::read(dir.join("state.db-wal")) {
            raw.extend(more);
        }
        raw
    }

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
        let raw = on_disk(dir.path());
        for needle in [&b"secret value"[..], b"alpha", b"other space"] {
            assert!(!raw.windows(needle.len()).any(|w| w == needle));
        }
        assert!(matches!(
            ClientStore::open(&path, &[2u8; 32]),
            Err(ClientStoreError::WrongKey)
        ));
        let s = ClientStore::open(path.as_path(), &[1u8; 32]).unwrap();
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
        let conn = &s.backend().conn;
        let sealed_g: Vec<u8> = conn
            .query_row(
                "SELECT value FROM kv WHERE key = ?1",
                [row_g.as_slice()],
                |r| r.get(0),
            )
            .unwrap();
        conn.execute(
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
        conn.execute(
            "UPDATE kv SET value = ?1 WHERE key = ?2",
            params![flipped, row_g.as_slice()],
        )
        .unwrap();
        assert!(matches!(
            s.get(Space::app(0), b"gamma"),
            Err(ClientStoreError::Corrupt { .. })
        ));
        // A row key of the wrong length is corruption, not a crash.
        conn.execute(
            "INSERT INTO kv (space, key, value) VALUES (?1, x'00', x'00')",
            [Space::app(2).value()],
        )
        .unwrap();
        assert!(matches!(
            s.entries(Space::app(2)),
            Err(ClientStoreError::Corrupt { space: 0x0102 })
        ));
    }

    /// The layout of PROTOCOL §12, byte for byte: a store written by this version opens with
    /// the keys and labels computed independently here (and so does one written before the
    /// store moved to the client core).
    #[test]
    fn layout_is_protocol_section_12() {
        use haven_sdk::snapshot::{self, StorageKey};
        use hkdf::Hkdf;
        use hmac::{Hmac, KeyInit, Mac};
        use sha2::Sha256;

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let storage_key = [4u8; 32];
        ClientStore::open(&path, &storage_key)
            .unwrap()
            .put(Space::app(7), b"natural", b"record")
            .unwrap();
        let derive = |info: &[u8]| {
            let mut out = [0u8; 32];
            Hkdf::<Sha256>::new(None, &storage_key)
                .expand(info, &mut out)
                .unwrap();
            out
        };
        let value_key = StorageKey::from_bytes(derive(b"Haven_ClientStore_ValueKey_v1"));
        let mut mac =
            <Hmac<Sha256> as KeyInit>::new_from_slice(&derive(b"Haven_ClientStore_IndexKey_v1"))
                .unwrap();
        mac.update(&0x0107u16.to_be_bytes());
        mac.update(b"natural");
        let row: [u8; 32] = mac.finalize().into_bytes().into();

        let conn = Connection::open(&path).unwrap();
        let schema: Vec<u8> = conn
            .query_row("SELECT value FROM meta WHERE name = 'schema'", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(schema, 1i64.to_be_bytes());
        let check: Vec<u8> = conn
            .query_row("SELECT value FROM meta WHERE name = 'check'", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(
            snapshot::open(&value_key, b"Haven_ClientStore_Check_v1", &check)
                .unwrap()
                .as_slice(),
            b"haven-client-store"
        );
        let sealed: Vec<u8> = conn
            .query_row(
                "SELECT value FROM kv WHERE space = ?1 AND key = ?2",
                params![0x0107, row.as_slice()],
                |r| r.get(0),
            )
            .unwrap();
        let mut label = b"Haven_ClientStore_Row_v1".to_vec();
        label.extend_from_slice(&0x0107u16.to_be_bytes());
        label.extend_from_slice(&row);
        let plain = snapshot::open(&value_key, &label, &sealed).unwrap();
        assert_eq!(plain.as_slice(), b"\0\0\0\x07naturalrecord");
    }
}
