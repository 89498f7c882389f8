//! Own identity and trusted peer identities.

use std::collections::HashMap;

use super::{DeviceAddress, StoreError};
use crate::identity::{IdentityKey, IdentityKeyPair};

/// Result of recording a peer identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum IdentityChange {
    /// First identity seen for this device.
    NewIdentity,
    /// Same identity as stored.
    Unchanged,
    /// A different identity replaced the stored one: the safety number changed; the app
    /// should tell the user.
    Changed,
}

/// Own identity and peer identities (trust on first use, change detection).
pub trait IdentityStore {
    /// The device's own identity key pair.
    ///
    /// # Errors
    /// [`StoreError::Backend`].
    fn identity_key_pair(&self) -> Result<IdentityKeyPair, StoreError>;

    /// The device's registration id.
    ///
    /// # Errors
    /// [`StoreError::Backend`].
    fn local_registration_id(&self) -> Result<u32, StoreError>;

    /// Records `key` as the identity of `address` (replacing any previous one) and reports what
    /// changed. Calling it with a changed key is how the app accepts the new identity.
    ///
    /// # Errors
    /// [`StoreError::Backend`].
    fn save_identity(
        &mut self,
        address: &DeviceAddress,
        key: &IdentityKey,
    ) -> Result<IdentityChange, StoreError>;

    /// The stored identity of `address`.
    ///
    /// # Errors
    /// [`StoreError::Backend`].
    fn peer_identity(&self, address: &DeviceAddress) -> Result<Option<IdentityKey>, StoreError>;

    /// Whether `key` may be used for `address`: nothing stored yet, or equal to the stored one.
    ///
    /// # Errors
    /// [`StoreError::Backend`].
    fn is_trusted(&self, address: &DeviceAddress, key: &IdentityKey) -> Result<bool, StoreError> {
        Ok(self.peer_identity(address)?.is_none_or(|k| k == *key))
    }
}

/// In-memory [`IdentityStore`].
#[derive(Debug)]
pub struct InMemoryIdentityStore {
    own: IdentityKeyPair,
    registration_id: u32,
    peers: HashMap<DeviceAddress, IdentityKey>,
}

impl InMemoryIdentityStore {
    /// A store for `own` with no peers.
    #[must_use]
    pub fn new(own: IdentityKeyPair, registration_id: u32) -> Self {
        Self {
            own,
            registration_id,
            peers: HashMap::new(),
        }
    }
}

impl IdentityStore for InMemoryIdentityStore {
    fn identity_key_pair(&self) -> Result<IdentityKeyPair, StoreError> {
        Ok(self.own.clone())
    }

    fn local_registration_id(&self) -> Result<u32, StoreError> {
        Ok(self.registration_id)
    }

    fn save_identity(
        &mut self,
        address: &DeviceAddress,
        key: &IdentityKey,
    ) -> Result<IdentityChange, StoreError> {
        Ok(match self.peers.insert(*address, *key) {
            None => IdentityChange::NewIdentity,
            Some(old) if old == *key => IdentityChange::Unchanged,
            Some(_) => IdentityChange::Changed,
        })
    }

    fn peer_identity(&self, address: &DeviceAddress) -> Result<Option<IdentityKey>, StoreError> {
        Ok(self.peers.get(address).copied())
    }
}
