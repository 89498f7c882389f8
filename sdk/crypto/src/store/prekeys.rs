//! Own prekeys (private halves).

use std::collections::{BTreeMap, BTreeSet};

use super::StoreError;
use crate::prekeys::{KemPreKey, KemPreKeyKind, OneTimePreKey, SignedPreKey};

/// Own signed, one-time and KEM prekeys.
pub trait PreKeyStore {
    /// The signed prekey `id`.
    ///
    /// # Errors
    /// [`StoreError::Backend`].
    fn signed_prekey(&self, id: u32) -> Result<Option<SignedPreKey>, StoreError>;
    /// Stores a signed prekey (replacing one with the same id).
    ///
    /// # Errors
    /// [`StoreError::Backend`].
    fn save_signed_prekey(&mut self, key: SignedPreKey) -> Result<(), StoreError>;
    /// Deletes a signed prekey (no error if absent).
    ///
    /// # Errors
    /// [`StoreError::Backend`].
    fn remove_signed_prekey(&mut self, id: u32) -> Result<(), StoreError>;
    /// `(id, created_at)` of every signed prekey, for
    /// [`SignedPreKeyPolicy::plan`](crate::prekeys::SignedPreKeyPolicy::plan).
    ///
    /// # Errors
    /// [`StoreError::Backend`].
    fn signed_prekey_ages(&self) -> Result<Vec<(u32, u64)>, StoreError>;
    /// The one-time prekey `id`.
    ///
    /// # Errors
    /// [`StoreError::Backend`].
    fn one_time_prekey(&self, id: u32) -> Result<Option<OneTimePreKey>, StoreError>;
    /// Stores a one-time prekey.
    ///
    /// # Errors
    /// [`StoreError::Backend`].
    fn save_one_time_prekey(&mut self, key: OneTimePreKey) -> Result<(), StoreError>;
    /// The KEM prekey `id` (one-time or last-resort).
    ///
    /// # Errors
    /// [`StoreError::Backend`].
    fn kem_prekey(&self, id: u32) -> Result<Option<KemPreKey>, StoreError>;
    /// Stores a KEM prekey.
    ///
    /// # Errors
    /// [`StoreError::Backend`].
    fn save_kem_prekey(&mut self, key: KemPreKey) -> Result<(), StoreError>;
    /// Deletes a KEM prekey of either kind (rotation of last-resort keys; no error if absent).
    ///
    /// # Errors
    /// [`StoreError::Backend`].
    fn remove_kem_prekey(&mut self, id: u32) -> Result<(), StoreError>;
    /// After a successful handshake: atomically deletes the one-time prekey `one_time` (if any)
    /// and the KEM prekey `kem` if it is one-time (a last-resort key stays). If a named key is
    /// missing, nothing is deleted.
    ///
    /// # Errors
    /// [`StoreError::OneTimePreKeyNotFound`], [`StoreError::KemPreKeyNotFound`],
    /// [`StoreError::Backend`].
    fn consume_prekeys(&mut self, one_time: Option<u32>, kem: u32) -> Result<(), StoreError>;
    /// Whether a first message with this base key under signed prekey `signed_prekey` was
    /// accepted already (PROTOCOL.md §3.3: a replayed first message must not make a session).
    ///
    /// # Errors
    /// [`StoreError::Backend`].
    fn base_key_seen(&self, signed_prekey: u32, base_key: &[u8; 32]) -> Result<bool, StoreError>;
    /// Remembers the base key of an accepted first message, until signed prekey
    /// `signed_prekey` is removed ([`PreKeyStore::remove_signed_prekey`] forgets them too).
    ///
    /// # Errors
    /// [`StoreError::Backend`].
    fn remember_base_key(
        &mut self,
        signed_prekey: u32,
        base_key: &[u8; 32],
    ) -> Result<(), StoreError>;
}

/// In-memory [`PreKeyStore`].
#[derive(Debug, Default)]
pub struct InMemoryPreKeyStore {
    signed: BTreeMap<u32, SignedPreKey>,
    one_time: BTreeMap<u32, OneTimePreKey>,
    kem: BTreeMap<u32, KemPreKey>,
    seen_base_keys: BTreeSet<(u32, [u8; 32])>,
}

impl PreKeyStore for InMemoryPreKeyStore {
    fn signed_prekey(&self, id: u32) -> Result<Option<SignedPreKey>, StoreError> {
        Ok(self.signed.get(&id).cloned())
    }
    fn save_signed_prekey(&mut self, key: SignedPreKey) -> Result<(), StoreError> {
        self.signed.insert(key.id(), key);
        Ok(())
    }
    fn remove_signed_prekey(&mut self, id: u32) -> Result<(), StoreError> {
        self.signed.remove(&id);
        self.seen_base_keys.retain(|(spk, _)| *spk != id);
        Ok(())
    }
    fn base_key_seen(&self, signed_prekey: u32, base_key: &[u8; 32]) -> Result<bool, StoreError> {
        Ok(self.seen_base_keys.contains(&(signed_prekey, *base_key)))
    }
    fn remember_base_key(
        &mut self,
        signed_prekey: u32,
        base_key: &[u8; 32],
    ) -> Result<(), StoreError> {
        self.seen_base_keys.insert((signed_prekey, *base_key));
        Ok(())
    }
    fn signed_prekey_ages(&self) -> Result<Vec<(u32, u64)>, StoreError> {
        Ok(self
            .signed
            .values()
            .map(|k| (k.id(), k.created_at()))
            .collect())
    }
    fn one_time_prekey(&self, id: u32) -> Result<Option<OneTimePreKey>, StoreError> {
        Ok(self.one_time.get(&id).cloned())
    }
    fn save_one_time_prekey(&mut self, key: OneTimePreKey) -> Result<(), StoreError> {
        self.one_time.insert(key.id(), key);
        Ok(())
    }
    fn kem_prekey(&self, id: u32) -> Result<Option<KemPreKey>, StoreError> {
        Ok(self.kem.get(&id).cloned())
    }
    fn save_kem_prekey(&mut self, key: KemPreKey) -> Result<(), StoreError> {
        self.kem.insert(key.id(), key);
        Ok(())
    }
    fn remove_kem_prekey(&mut self, id: u32) -> Result<(), StoreError> {
        self.kem.remove(&id);
        Ok(())
    }
    fn consume_prekeys(&mut self, one_time: Option<u32>, kem: u32) -> Result<(), StoreError> {
        // Check everything first so the removal below is all-or-nothing.
        if let Some(id) = one_time
            && !self.one_time.contains_key(&id)
        {
            return Err(StoreError::OneTimePreKeyNotFound { id });
        }
        let kem_kind = self.kem.get(&kem).map(KemPreKey::kind);
        let Some(kind) = kem_kind else {
            return Err(StoreError::KemPreKeyNotFound { id: kem });
        };
        if let Some(id) = one_time {
            self.one_time.remove(&id);
        }
        if kind == KemPreKeyKind::OneTime {
            self.kem.remove(&kem);
        }
        Ok(())
    }
}
