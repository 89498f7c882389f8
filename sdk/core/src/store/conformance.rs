//! The suite every store backend runs: [`encrypted_store_tests!`](crate::encrypted_store_tests).

/// The key-value, tampering, transaction and identity tests of
/// [`EncryptedStore`](crate::store::EncryptedStore), run against one backend. Invoke it at module level with a
/// constructor `|key: &[u8; 32]| -> EncryptedStore<YourBackend>` making a fresh store, e.g.
/// `haven_client_core::encrypted_store_tests!(|key: &[u8; 32]| MemoryStore::open_in_memory(key).unwrap());`.
/// Expands to an `encrypted_store_conformance` test module (items of the invoking module are in
/// scope); the invoking crate needs `haven-sdk`, and `rand_chacha` and `rand_core` 0.10 as
/// dev-dependencies. Pair it with `haven_sdk::store_conformance_tests!` for the protocol traits.
#[macro_export]
macro_rules! encrypted_store_tests {
    ($make:expr) => {
        #[cfg(test)]
        mod encrypted_store_conformance {
            #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
            #[allow(unused_imports)]
            use super::*;
            use ::haven_sdk::identity::IdentityKeyPair;
            use ::haven_sdk::store::{IdentityStore, StoreError};
            use $crate::store::{
                Backend, ClientStoreError, EncryptedStore, MAX_KEY_LEN, MAX_VALUE_LEN, Space,
            };

            const KEY: [u8; 32] = [0x11; 32];

            fn fresh() -> EncryptedStore<impl Backend> {
                let make = $make;
                make(&KEY)
            }

            fn contains(haystack: &[u8], needle: &[u8]) -> bool {
                haystack.windows(needle.len()).any(|w| w == needle)
            }

            #[test]
            fn kv_roundtrip_spaces_and_entries() {
                let s = fresh();
                let (a, b) = (Space::app(0), Space::app(1));
                s.put(a, b"alpha", b"one").unwrap();
                s.put(a, b"beta", b"two").unwrap();
                s.put(b, b"alpha", b"other space").unwrap();
                s.put(a, b"alpha", b"one, replaced").unwrap();
                assert_eq!(
                    s.get(a, b"alpha").unwrap().unwrap().as_slice(),
                    b"one, replaced"
                );
                assert_eq!(
                    s.get(b, b"alpha").unwrap().unwrap().as_slice(),
                    b"other space"
                );
                assert!(s.get(Space::app(2), b"alpha").unwrap().is_none());
                let mut entries = s.entries(a).unwrap();
                entries.sort_by(|x, y| x.0.cmp(&y.0));
                let entries: Vec<(&[u8], &[u8])> = entries
                    .iter()
                    .map(|(k, v)| (k.as_slice(), v.as_slice()))
                    .collect();
                assert_eq!(
                    entries,
                    vec![(&b"alpha"[..], &b"one, replaced"[..]), (b"beta", b"two")]
                );
                assert!(s.delete(a, b"beta").unwrap());
                assert!(!s.delete(a, b"beta").unwrap());
                assert!(s.get(a, b"beta").unwrap().is_none());
                assert_eq!(s.entries(a).unwrap().len(), 1);
                assert!(s.entries(Space::app(2)).unwrap().is_empty());
                // Empty keys and values are values like any other.
                s.put(Space::app(3), b"", b"").unwrap();
                assert_eq!(s.get(Space::app(3), b"").unwrap().unwrap().as_slice(), b"");
            }

            #[test]
            fn reopening_keeps_rows_and_another_key_is_refused() {
                let s = fresh();
                s.put(Space::app(0), b"alpha", b"kept").unwrap();
                let s = EncryptedStore::with_backend(s.into_backend(), &KEY).unwrap();
                assert_eq!(
                    s.get(Space::app(0), b"alpha").unwrap().unwrap().as_slice(),
                    b"kept"
                );
                assert!(matches!(
                    EncryptedStore::with_backend(s.into_backend(), &[0x22; 32]),
                    Err(ClientStoreError::WrongKey)
                ));
            }

            #[test]
            fn a_newer_schema_is_refused() {
                let s = fresh();
                s.backend().set_meta("schema", &2i64.to_be_bytes()).unwrap();
                assert!(matches!(
                    EncryptedStore::with_backend(s.into_backend(), &KEY),
                    Err(ClientStoreError::UnsupportedSchema { found: 2 })
                ));
            }

            #[test]
            fn swapped_moved_and_flipped_rows_are_detected() {
                let s = fresh();
                let space = Space::app(0);
                s.put(space, b"alpha", b"first").unwrap();
                s.put(space, b"gamma", b"third").unwrap();
                let row_a = s.row_key(space, b"alpha");
                let row_g = s.row_key(space, b"gamma");
                let raw = s.backend();
                let sealed_a = raw.get(space, &row_a).unwrap().unwrap();
                let sealed_g = raw.get(space, &row_g).unwrap().unwrap();
                // A value copied into another row of the same space.
                raw.put(space, &row_a, &sealed_g).unwrap();
                assert!(matches!(
                    s.get(space, b"alpha"),
                    Err(ClientStoreError::Corrupt { space: 0x0100 })
                ));
                assert!(s.entries(space).is_err());
                // A row copied into another space under the same row key.
                raw.put(Space::app(1), &row_g, &sealed_g).unwrap();
                assert!(matches!(
                    s.entries(Space::app(1)),
                    Err(ClientStoreError::Corrupt { space: 0x0101 })
                ));
                // A flipped byte.
                let mut flipped = sealed_g.clone();
                let last = flipped.len() - 1;
                flipped[last] ^= 1;
                raw.put(space, &row_g, &flipped).unwrap();
                assert!(matches!(
                    s.get(space, b"gamma"),
                    Err(ClientStoreError::Corrupt { .. })
                ));
                // Put back, both read again.
                raw.put(space, &row_a, &sealed_a).unwrap();
                raw.put(space, &row_g, &sealed_g).unwrap();
                assert_eq!(
                    s.get(space, b"alpha").unwrap().unwrap().as_slice(),
                    b"first"
                );
                assert_eq!(
                    s.get(space, b"gamma").unwrap().unwrap().as_slice(),
                    b"third"
                );
            }

            #[test]
            fn the_backend_sees_neither_values_nor_natural_keys() {
                let s = fresh();
                s.put(Space::app(0), b"natural-key-alpha", b"secret value one")
                    .unwrap();
                let rows = s.backend().scan(Space::app(0)).unwrap();
                assert_eq!(rows.len(), 1);
                for (row, sealed) in rows {
                    for needle in [&b"natural-key-alpha"[..], b"secret value"] {
                        assert!(!contains(&row, needle));
                        assert!(!contains(&sealed, needle));
                    }
                }
                let check = s.backend().meta("check").unwrap().unwrap();
                assert!(!contains(&check, b"haven-client-store"));
            }

            #[test]
            fn limits() {
                let s = fresh();
                assert!(matches!(
                    s.put(Space::app(0), &[0u8; MAX_KEY_LEN + 1], b"x"),
                    Err(ClientStoreError::TooLarge { what: "key", .. })
                ));
                s.put(Space::app(0), &[0u8; MAX_KEY_LEN], b"x").unwrap();
                assert!(matches!(
                    s.put(Space::app(0), b"k", &vec![0u8; MAX_VALUE_LEN + 1]),
                    Err(ClientStoreError::TooLarge { what: "value", .. })
                ));
            }

            #[test]
            fn atomically_commits_or_rolls_back_and_nests() {
                let mut s = fresh();
                let sp = Space::app(0);
                let failed: Result<(), ClientStoreError> = s.atomically(|s| {
                    s.put(sp, b"k", b"v")?;
                    Err(ClientStoreError::NoIdentity)
                });
                assert!(matches!(failed, Err(ClientStoreError::NoIdentity)));
                assert!(s.get(sp, b"k").unwrap().is_none());
                // An inner failure undoes only the inner writes.
                s.atomically(|s| {
                    s.put(sp, b"outer", b"1")?;
                    let inner: Result<(), ClientStoreError> = s.atomically(|s| {
                        s.put(sp, b"inner", b"2")?;
                        s.delete(sp, b"outer")?;
                        Err(ClientStoreError::NoIdentity)
                    });
                    assert!(inner.is_err());
                    assert!(s.get(sp, b"outer")?.is_some());
                    Ok::<_, ClientStoreError>(())
                })
                .unwrap();
                assert!(s.get(sp, b"outer").unwrap().is_some());
                assert!(s.get(sp, b"inner").unwrap().is_none());
                // An outer failure undoes a committed inner transaction.
                let failed: Result<(), ClientStoreError> = s.atomically_mut(|s| {
                    s.atomically(|s| s.put(sp, b"nested", b"3"))?;
                    Err(ClientStoreError::NoIdentity)
                });
                assert!(failed.is_err());
                assert!(s.get(sp, b"nested").unwrap().is_none());
                // Every transaction was closed.
                assert!(s.backend().commit().is_err());
                assert!(s.backend().rollback().is_err());
            }

            #[test]
            fn own_identity() {
                let s = fresh();
                assert!(!s.has_identity().unwrap());
                assert!(matches!(s.identity_key_pair(), Err(StoreError::Backend(_))));
                let mut rng =
                    <rand_chacha::ChaCha20Rng as rand_core::SeedableRng>::from_seed([5; 32]);
                let id = IdentityKeyPair::generate(&mut rng);
                s.set_identity(&id, 5).unwrap();
                assert!(s.has_identity().unwrap());
                assert_eq!(s.identity_key_pair().unwrap().public(), id.public());
                assert_eq!(s.local_registration_id().unwrap(), 5);
                s.put(Space::OWN_IDENTITY, b"own", b"short").unwrap();
                assert!(s.identity_key_pair().is_err());
            }
        }
    };
}
