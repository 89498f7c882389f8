//! The SDK's protocol store traits over an [`EncryptedStore`], for every backend: the spaces
//! below [`Space::FIRST_APP`] and their natural keys and records (PROTOCOL §12).

use haven_sdk::groups::{DistributionId, GroupSenderSession, SenderKeyRecord};
use haven_sdk::identity::{IdentityKey, IdentityKeyPair};
use haven_sdk::prekeys::{KemPreKey, KemPreKeyKind, OneTimePreKey, SignedPreKey};
use haven_sdk::ratchet::session::SessionRecord;
use haven_sdk::store::{
    DeviceAddress, IdentityChange, IdentityStore, PreKeyStore, SenderKeyName, SenderKeyStore,
    SessionStore, StoreError,
};

use super::{Backend, ClientStoreError, EncryptedStore, Space};

/// Natural key of per-device rows (peer identities, sessions): `account_id || u32be(device)`.
#[must_use]
pub fn address_key(address: &DeviceAddress) -> [u8; 20] {
    let mut k = [0u8; 20];
    k[..16].copy_from_slice(&address.account_id);
    k[16..].copy_from_slice(&address.device_id.to_be_bytes());
    k
}

/// Natural key of a sender-key row: `distribution_id || u32be(device) || account`.
fn sender_key_name(name: &SenderKeyName) -> Vec<u8> {
    let mut k = Vec::with_capacity(16 + 4 + name.sender_account.len());
    k.extend_from_slice(&name.distribution_id.0);
    k.extend_from_slice(&name.device_id.to_be_bytes());
    k.extend_from_slice(&name.sender_account);
    k
}

impl<B: Backend> EncryptedStore<B> {
    /// The own identity: `u32be(registration_id) || identity pickle` under `"own"`.
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

    /// The record under `key`, parsed; a record that does not parse is corrupt.
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

impl<B: Backend> IdentityStore for EncryptedStore<B> {
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

impl<B: Backend> PreKeyStore for EncryptedStore<B> {
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
        let prefix = id.to_be_bytes();
        let seen: Vec<Vec<u8>> = self
            .entries(Space::SEEN_BASE_KEY)?
            .into_iter()
            .map(|(key, _)| key)
            .filter(|key| key.starts_with(&prefix))
            .collect();
        self.atomically_mut(|s| {
            s.delete(Space::SIGNED_PREKEY, &prefix)?;
            for key in &seen {
                s.delete(Space::SEEN_BASE_KEY, key)?;
            }
            Ok::<_, StoreError>(())
        })
    }

    fn base_key_seen(&self, signed_prekey: u32, base_key: &[u8; 32]) -> Result<bool, StoreError> {
        Ok(self
            .get(Space::SEEN_BASE_KEY, &seen_key(signed_prekey, base_key))?
            .is_some())
    }

    fn remember_base_key(
        &mut self,
        signed_prekey: u32,
        base_key: &[u8; 32],
    ) -> Result<(), StoreError> {
        Ok(self.put(
            Space::SEEN_BASE_KEY,
            &seen_key(signed_prekey, base_key),
            &[1],
        )?)
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

impl<B: Backend> SessionStore for EncryptedStore<B> {
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

impl<B: Backend> SenderKeyStore for EncryptedStore<B> {
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

/// The key of a remembered base key: `u32be(signed prekey id) || base key`.
fn seen_key(signed_prekey: u32, base_key: &[u8; 32]) -> [u8; 36] {
    let mut key = [0u8; 36];
    key[..4].copy_from_slice(&signed_prekey.to_be_bytes());
    key[4..].copy_from_slice(base_key);
    key
}
