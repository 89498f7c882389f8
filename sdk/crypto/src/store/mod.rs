//! Storage traits for session state, with in-memory implementations and a conformance suite.
//!
//! The traits are synchronous (sans-I/O core); an async client wraps them. Every backend runs
//! [`store_conformance_tests!`](crate::store_conformance_tests) so behaviour is identical.

pub mod identity;
pub mod prekeys;
pub mod sender_keys;
pub mod sessions;

pub use identity::{IdentityChange, IdentityStore, InMemoryIdentityStore};
pub use prekeys::{InMemoryPreKeyStore, PreKeyStore};
pub use sender_keys::{InMemorySenderKeyStore, SenderKeyName, SenderKeyStore};
pub use sessions::{InMemorySessionStore, SessionStore};

/// Errors any store may return.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The backend failed (I/O, database, decryption of a stored value). The message names the
    /// operation, never key material.
    #[error("store backend failure: {0}")]
    Backend(String),
    /// A one-time prekey to consume does not exist (already used).
    #[error("one-time prekey {id} not found")]
    OneTimePreKeyNotFound {
        /// Requested id.
        id: u32,
    },
    /// A KEM prekey to consume does not exist (already used).
    #[error("KEM prekey {id} not found")]
    KemPreKeyNotFound {
        /// Requested id.
        id: u32,
    },
}

/// Account id length (random, assigned by the relay).
pub const ACCOUNT_ID_LEN: usize = 16;

/// One device of one account: the unit a session belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeviceAddress {
    /// The account's 16-byte id.
    pub account_id: [u8; ACCOUNT_ID_LEN],
    /// The device id within the account.
    pub device_id: u32,
}

impl DeviceAddress {
    /// Builds an address.
    #[must_use]
    pub fn new(account_id: [u8; ACCOUNT_ID_LEN], device_id: u32) -> Self {
        Self {
            account_id,
            device_id,
        }
    }
}

/// Everything a session operation needs, implemented for any type implementing the three stores.
pub trait ProtocolStore: IdentityStore + PreKeyStore + SessionStore {}
impl<T: IdentityStore + PreKeyStore + SessionStore> ProtocolStore for T {}

/// The three in-memory stores together.
#[derive(Debug)]
pub struct InMemoryProtocolStore {
    /// Identities.
    pub identities: InMemoryIdentityStore,
    /// Prekeys.
    pub prekeys: InMemoryPreKeyStore,
    /// Sessions.
    pub sessions: InMemorySessionStore,
}

impl InMemoryProtocolStore {
    /// A store for `identity` with `registration_id` and no prekeys or sessions.
    #[must_use]
    pub fn new(identity: crate::identity::IdentityKeyPair, registration_id: u32) -> Self {
        Self {
            identities: InMemoryIdentityStore::new(identity, registration_id),
            prekeys: InMemoryPreKeyStore::default(),
            sessions: InMemorySessionStore::default(),
        }
    }
}

impl IdentityStore for InMemoryProtocolStore {
    fn identity_key_pair(&self) -> Result<crate::identity::IdentityKeyPair, StoreError> {
        self.identities.identity_key_pair()
    }
    fn local_registration_id(&self) -> Result<u32, StoreError> {
        self.identities.local_registration_id()
    }
    fn save_identity(
        &mut self,
        address: &DeviceAddress,
        key: &crate::identity::IdentityKey,
    ) -> Result<IdentityChange, StoreError> {
        self.identities.save_identity(address, key)
    }
    fn peer_identity(
        &self,
        address: &DeviceAddress,
    ) -> Result<Option<crate::identity::IdentityKey>, StoreError> {
        self.identities.peer_identity(address)
    }
}

impl PreKeyStore for InMemoryProtocolStore {
    fn signed_prekey(&self, id: u32) -> Result<Option<crate::prekeys::SignedPreKey>, StoreError> {
        self.prekeys.signed_prekey(id)
    }
    fn save_signed_prekey(&mut self, key: crate::prekeys::SignedPreKey) -> Result<(), StoreError> {
        self.prekeys.save_signed_prekey(key)
    }
    fn remove_signed_prekey(&mut self, id: u32) -> Result<(), StoreError> {
        self.prekeys.remove_signed_prekey(id)
    }
    fn base_key_seen(&self, signed_prekey: u32, base_key: &[u8; 32]) -> Result<bool, StoreError> {
        self.prekeys.base_key_seen(signed_prekey, base_key)
    }
    fn remember_base_key(
        &mut self,
        signed_prekey: u32,
        base_key: &[u8; 32],
    ) -> Result<(), StoreError> {
        self.prekeys.remember_base_key(signed_prekey, base_key)
    }
    fn signed_prekey_ages(&self) -> Result<Vec<(u32, u64)>, StoreError> {
        self.prekeys.signed_prekey_ages()
    }
    fn one_time_prekey(
        &self,
        id: u32,
    ) -> Result<Option<crate::prekeys::OneTimePreKey>, StoreError> {
        self.prekeys.one_time_prekey(id)
    }
    fn save_one_time_prekey(
        &mut self,
        key: crate::prekeys::OneTimePreKey,
    ) -> Result<(), StoreError> {
        self.prekeys.save_one_time_prekey(key)
    }
    fn kem_prekey(&self, id: u32) -> Result<Option<crate::prekeys::KemPreKey>, StoreError> {
        self.prekeys.kem_prekey(id)
    }
    fn save_kem_prekey(&mut self, key: crate::prekeys::KemPreKey) -> Result<(), StoreError> {
        self.prekeys.save_kem_prekey(key)
    }
    fn remove_kem_prekey(&mut self, id: u32) -> Result<(), StoreError> {
        self.prekeys.remove_kem_prekey(id)
    }
    fn consume_prekeys(&mut self, one_time: Option<u32>, kem: u32) -> Result<(), StoreError> {
        self.prekeys.consume_prekeys(one_time, kem)
    }
}

impl SessionStore for InMemoryProtocolStore {
    fn load_session(
        &self,
        address: &DeviceAddress,
    ) -> Result<Option<crate::ratchet::session::SessionRecord>, StoreError> {
        self.sessions.load_session(address)
    }
    fn store_session(
        &mut self,
        address: &DeviceAddress,
        record: &crate::ratchet::session::SessionRecord,
    ) -> Result<(), StoreError> {
        self.sessions.store_session(address, record)
    }
}

/// The conformance suite every store backend runs. Invoke it in a test module with a
/// constructor `fn(IdentityKeyPair, u32 /* registration id */) -> impl ProtocolStore`, e.g.
/// `haven_sdk::store_conformance_tests!(InMemoryProtocolStore::new);` (an SQLite store passes a
/// closure opening a fresh temporary database). Expands to a `conformance` test module; the
/// invoking crate needs `rand_chacha` and `rand_core` 0.10 as dev-dependencies.
#[macro_export]
macro_rules! store_conformance_tests {
    ($make:expr) => {
        #[cfg(test)]
        mod conformance {
            #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
            use super::*;
            use $crate::identity::IdentityKeyPair;
            use $crate::prekeys::{KemPreKey, KemPreKeyKind, OneTimePreKey, SignedPreKey};
            use $crate::ratchet::session::SessionRecord;
            use $crate::store::{
                DeviceAddress, IdentityChange, IdentityStore, PreKeyStore, ProtocolStore,
                SessionStore, StoreError,
            };

            fn rng() -> rand_chacha::ChaCha20Rng {
                <rand_chacha::ChaCha20Rng as rand_core::SeedableRng>::from_seed([42; 32])
            }

            fn fresh() -> (impl ProtocolStore, IdentityKeyPair) {
                let id = IdentityKeyPair::generate(&mut rng());
                let make = $make;
                (make(id.clone(), 77), id)
            }

            #[test]
            fn own_identity_and_registration() {
                let (s, id) = fresh();
                assert_eq!(s.identity_key_pair().unwrap().public(), id.public());
                assert_eq!(s.local_registration_id().unwrap(), 77);
            }

            #[test]
            fn identity_change_detection() {
                let (mut s, _) = fresh();
                let mut r = rng();
                let a = DeviceAddress::new([1; 16], 1);
                let k1 = *IdentityKeyPair::generate(&mut r).public();
                let k2 = *IdentityKeyPair::generate(&mut r).public();
                assert_eq!(s.peer_identity(&a).unwrap(), None);
                assert!(s.is_trusted(&a, &k1).unwrap());
                assert_eq!(
                    s.save_identity(&a, &k1).unwrap(),
                    IdentityChange::NewIdentity
                );
                assert_eq!(s.save_identity(&a, &k1).unwrap(), IdentityChange::Unchanged);
                assert!(s.is_trusted(&a, &k1).unwrap());
                assert!(!s.is_trusted(&a, &k2).unwrap());
                assert_eq!(s.save_identity(&a, &k2).unwrap(), IdentityChange::Changed);
                assert_eq!(s.peer_identity(&a).unwrap(), Some(k2));
                // Other devices are independent.
                assert_eq!(
                    s.peer_identity(&DeviceAddress::new([1; 16], 2)).unwrap(),
                    None
                );
            }

            #[test]
            fn base_keys_are_remembered_until_their_signed_prekey_goes() {
                let (mut s, id) = fresh();
                let mut r = rng();
                s.save_signed_prekey(SignedPreKey::generate(&id, 1, 100, &mut r))
                    .unwrap();
                s.save_signed_prekey(SignedPreKey::generate(&id, 2, 200, &mut r))
                    .unwrap();
                assert!(!s.base_key_seen(1, &[7; 32]).unwrap());
                s.remember_base_key(1, &[7; 32]).unwrap();
                s.remember_base_key(2, &[8; 32]).unwrap();
                s.remember_base_key(1, &[7; 32]).unwrap();
                assert!(s.base_key_seen(1, &[7; 32]).unwrap());
                assert!(!s.base_key_seen(2, &[7; 32]).unwrap());
                assert!(!s.base_key_seen(1, &[8; 32]).unwrap());
                s.remove_signed_prekey(1).unwrap();
                assert!(!s.base_key_seen(1, &[7; 32]).unwrap());
                assert!(s.base_key_seen(2, &[8; 32]).unwrap());
            }

            #[test]
            fn prekeys_save_load_remove() {
                let (mut s, id) = fresh();
                let mut r = rng();
                let spk = SignedPreKey::generate(&id, 1, 100, &mut r);
                s.save_signed_prekey(spk.clone()).unwrap();
                s.save_signed_prekey(SignedPreKey::generate(&id, 2, 200, &mut r))
                    .unwrap();
                assert_eq!(s.signed_prekey(1).unwrap().unwrap().public(), spk.public());
                let mut ages = s.signed_prekey_ages().unwrap();
                ages.sort();
                assert_eq!(ages, vec![(1, 100), (2, 200)]);
                s.remove_signed_prekey(1).unwrap();
                assert!(s.signed_prekey(1).unwrap().is_none());

                let otpk = OneTimePreKey::generate(5, &mut r);
                s.save_one_time_prekey(otpk.clone()).unwrap();
                assert_eq!(
                    s.one_time_prekey(5).unwrap().unwrap().public(),
                    otpk.public()
                );
                assert!(s.one_time_prekey(6).unwrap().is_none());
            }

            #[test]
            fn consume_is_all_or_nothing_and_keeps_last_resort() {
                let (mut s, id) = fresh();
                let mut r = rng();
                s.save_one_time_prekey(OneTimePreKey::generate(5, &mut r))
                    .unwrap();
                s.save_kem_prekey(KemPreKey::generate(
                    &id,
                    10,
                    KemPreKeyKind::OneTime,
                    0,
                    &mut r,
                ))
                .unwrap();
                s.save_kem_prekey(KemPreKey::generate(
                    &id,
                    11,
                    KemPreKeyKind::LastResort,
                    0,
                    &mut r,
                ))
                .unwrap();
                // Missing one-time key: nothing is removed.
                assert_eq!(
                    s.consume_prekeys(Some(6), 10),
                    Err(StoreError::OneTimePreKeyNotFound { id: 6 })
                );
                assert!(s.kem_prekey(10).unwrap().is_some());
                s.consume_prekeys(Some(5), 10).unwrap();
                assert!(s.one_time_prekey(5).unwrap().is_none());
                assert!(s.kem_prekey(10).unwrap().is_none());
                assert_eq!(
                    s.consume_prekeys(Some(5), 10),
                    Err(StoreError::OneTimePreKeyNotFound { id: 5 })
                );
                assert_eq!(
                    s.consume_prekeys(None, 10),
                    Err(StoreError::KemPreKeyNotFound { id: 10 })
                );
                // Last resort survives use.
                s.consume_prekeys(None, 11).unwrap();
                s.consume_prekeys(None, 11).unwrap();
                assert!(s.kem_prekey(11).unwrap().is_some());
                s.remove_kem_prekey(11).unwrap();
                assert!(s.kem_prekey(11).unwrap().is_none());
            }

            #[test]
            fn sessions_roundtrip_per_device() {
                let (mut s, _) = fresh();
                let a = DeviceAddress::new([3; 16], 1);
                assert!(s.load_session(&a).unwrap().is_none());
                s.store_session(&a, &SessionRecord::new()).unwrap();
                let back = s.load_session(&a).unwrap().unwrap();
                assert!(back.current().is_none());
                assert!(
                    s.load_session(&DeviceAddress::new([3; 16], 2))
                        .unwrap()
                        .is_none()
                );
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::InMemoryProtocolStore;

    crate::store_conformance_tests!(InMemoryProtocolStore::new);
}
