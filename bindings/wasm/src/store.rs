//! The device's state in memory: a map of (space, key) → value implementing the SDK's store
//! traits, with the same spaces and row encodings as the native client's store
//! (`haven-client::store`, PROTOCOL §12), so the whole state is one map that the page exports
//! as a single encrypted snapshot ([`WebStore::export`]) and keeps in IndexedDB.
//!
//! Snapshot plaintext (all integers big-endian):
//!
//! ```text
//! state = version u8 (0x01) · count u32 · count × ( space u16 · key_len u32 · key · value_len u32 · value )
//! ```
//!
//! sealed with `haven_sdk::snapshot::seal` (XChaCha20-Poly1305, PROTOCOL §1.4) under the page's
//! 32-byte key with the label [`STATE_LABEL`].

use std::collections::BTreeMap;

use haven_sdk::identity::{IdentityKey, IdentityKeyPair};
use haven_sdk::prekeys::{KemPreKey, KemPreKeyKind, OneTimePreKey, SignedPreKey};
use haven_sdk::ratchet::session::SessionRecord;
use haven_sdk::snapshot::{self, StorageKey};
use haven_sdk::store::{
    DeviceAddress, IdentityChange, IdentityStore, PreKeyStore, SessionStore, StoreError,
};
use zeroize::Zeroizing;

use crate::error::{ErrorCode, WebError, WebResult};

/// Snapshot label (associated data) of an exported web state.
pub const STATE_LABEL: &[u8] = b"Haven_Web_State_v1";
/// Version byte of the snapshot plaintext.
const STATE_VERSION: u8 = 0x01;
/// Largest accepted snapshot (64 MiB), checked before decrypting.
pub const MAX_STATE_BYTES: usize = 64 << 20;

/// Spaces, as in `haven-client::store::Space`.
pub(crate) mod space {
    pub(crate) const OWN_IDENTITY: u16 = 1;
    pub(crate) const PEER_IDENTITY: u16 = 2;
    pub(crate) const SIGNED_PREKEY: u16 = 3;
    pub(crate) const ONE_TIME_PREKEY: u16 = 4;
    pub(crate) const KEM_PREKEY: u16 = 5;
    pub(crate) const SESSION: u16 = 6;
    /// Device settings (ids, refresh token, relay key, counters).
    pub(crate) const META: u16 = 0x01F0;
    /// Known device numbers per contact account.
    pub(crate) const CONTACT_DEVICES: u16 = 0x01F1;
    /// Message ids already processed.
    pub(crate) const SEEN: u16 = 0x01F2;
}

/// `account_id || u32be(device)`, the key of per-device rows.
pub(crate) fn address_key(address: &DeviceAddress) -> [u8; 20] {
    let mut k = [0u8; 20];
    k[..16].copy_from_slice(&address.account_id);
    k[16..].copy_from_slice(&address.device_id.to_be_bytes());
    k
}

/// The device state. Values are zeroized when replaced or dropped.
#[derive(Default, Clone)]
pub struct WebStore {
    rows: BTreeMap<(u16, Vec<u8>), Zeroizing<Vec<u8>>>,
}

impl std::fmt::Debug for WebStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebStore")
            .field("rows", &self.rows.len())
            .finish()
    }
}

fn corrupt(space: u16) -> StoreError {
    StoreError::Backend(format!("corrupt row in space {space}"))
}

impl WebStore {
    /// A value.
    pub(crate) fn get(&self, space: u16, key: &[u8]) -> Option<&[u8]> {
        self.rows.get(&(space, key.to_vec())).map(|v| v.as_slice())
    }

    /// Sets a value.
    pub(crate) fn put(&mut self, space: u16, key: &[u8], value: &[u8]) {
        self.rows
            .insert((space, key.to_vec()), Zeroizing::new(value.to_vec()));
    }

    /// Removes a value.
    pub(crate) fn delete(&mut self, space: u16, key: &[u8]) {
        self.rows.remove(&(space, key.to_vec()));
    }

    /// Keeps only the rows of `space` whose value satisfies `keep`.
    pub(crate) fn retain_space(&mut self, space: u16, mut keep: impl FnMut(&[u8]) -> bool) {
        self.rows
            .retain(|(s, _), v| *s != space || keep(v.as_slice()));
    }

    fn values(&self, space: u16) -> impl Iterator<Item = &[u8]> {
        self.rows
            .range((space, Vec::new())..)
            .take_while(move |((s, _), _)| *s == space)
            .map(|(_, v)| v.as_slice())
    }

    fn decode<T>(
        &self,
        space: u16,
        key: &[u8],
        parse: impl FnOnce(&[u8]) -> Option<T>,
    ) -> Result<Option<T>, StoreError> {
        match self.get(space, key) {
            None => Ok(None),
            Some(b) => parse(b).map(Some).ok_or_else(|| corrupt(space)),
        }
    }

    /// Stores this device's identity (`u32be(registration_id) || pair`, as the native store).
    pub(crate) fn set_identity(&mut self, identity: &IdentityKeyPair, registration_id: u32) {
        let pair = identity.to_bytes();
        let mut value = Zeroizing::new(Vec::with_capacity(4 + pair.len()));
        value.extend_from_slice(&registration_id.to_be_bytes());
        value.extend_from_slice(&pair);
        self.put(space::OWN_IDENTITY, b"own", &value);
    }

    fn own(&self) -> Result<(u32, IdentityKeyPair), StoreError> {
        let bytes = self
            .get(space::OWN_IDENTITY, b"own")
            .ok_or_else(|| StoreError::Backend("no identity".into()))?;
        let (id, pair) = bytes
            .split_at_checked(4)
            .ok_or_else(|| corrupt(space::OWN_IDENTITY))?;
        let id: [u8; 4] = id.try_into().map_err(|_| corrupt(space::OWN_IDENTITY))?;
        let pair = IdentityKeyPair::from_bytes(pair).map_err(|_| corrupt(space::OWN_IDENTITY))?;
        Ok((u32::from_be_bytes(id), pair))
    }

    /// The plaintext of a snapshot.
    fn encode(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::new());
        out.push(STATE_VERSION);
        out.extend_from_slice(
            &u32::try_from(self.rows.len())
                .unwrap_or(u32::MAX)
                .to_be_bytes(),
        );
        for ((space, key), value) in &self.rows {
            out.extend_from_slice(&space.to_be_bytes());
            out.extend_from_slice(&u32::try_from(key.len()).unwrap_or(u32::MAX).to_be_bytes());
            out.extend_from_slice(key);
            out.extend_from_slice(&u32::try_from(value.len()).unwrap_or(u32::MAX).to_be_bytes());
            out.extend_from_slice(value);
        }
        out
    }

    fn decode_all(bytes: &[u8]) -> WebResult<Self> {
        let malformed = || WebError::new(ErrorCode::Malformed, "state snapshot is malformed");
        let mut r = Reader(bytes);
        if r.take(1).ok_or_else(malformed)? != [STATE_VERSION] {
            return Err(WebError::new(
                ErrorCode::Malformed,
                "unsupported state version",
            ));
        }
        let count = r.u32().ok_or_else(malformed)?;
        let mut rows = BTreeMap::new();
        for _ in 0..count {
            let space = u16::from_be_bytes(
                r.take(2)
                    .and_then(|b| b.try_into().ok())
                    .ok_or_else(malformed)?,
            );
            let klen = r.u32().ok_or_else(malformed)?;
            let key = r.take(klen as usize).ok_or_else(malformed)?.to_vec();
            let vlen = r.u32().ok_or_else(malformed)?;
            let value = Zeroizing::new(r.take(vlen as usize).ok_or_else(malformed)?.to_vec());
            rows.insert((space, key), value);
        }
        if !r.0.is_empty() {
            return Err(malformed());
        }
        Ok(Self { rows })
    }

    /// The whole state sealed under `page_key` (authenticated encryption, PROTOCOL §1.4).
    pub(crate) fn export(&self, page_key: &StorageKey) -> Vec<u8> {
        let plain = self.encode();
        snapshot::seal(page_key, STATE_LABEL, &plain, &mut rand::rng())
    }

    /// A state from [`WebStore::export`]'s output.
    ///
    /// # Errors
    /// [`ErrorCode::DecryptionFailed`] for a wrong key or tampering, [`ErrorCode::Malformed`].
    pub(crate) fn import(page_key: &StorageKey, sealed: &[u8]) -> WebResult<Self> {
        if sealed.len() > MAX_STATE_BYTES {
            return Err(WebError::new(ErrorCode::Limit, "state snapshot too large"));
        }
        let plain = snapshot::open(page_key, STATE_LABEL, sealed).map_err(|e| match e {
            snapshot::SnapshotError::DecryptionFailed => WebError::new(
                ErrorCode::DecryptionFailed,
                "state does not decrypt under this page key",
            ),
            other => WebError::new(ErrorCode::Malformed, other.to_string()),
        })?;
        Self::decode_all(&plain)
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(head)
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }
}

impl IdentityStore for WebStore {
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
        let previous = self.peer_identity(address)?;
        self.put(space::PEER_IDENTITY, &address_key(address), &key.to_bytes());
        Ok(match previous {
            None => IdentityChange::NewIdentity,
            Some(k) if k == *key => IdentityChange::Unchanged,
            Some(_) => IdentityChange::Changed,
        })
    }

    fn peer_identity(&self, address: &DeviceAddress) -> Result<Option<IdentityKey>, StoreError> {
        self.decode(space::PEER_IDENTITY, &address_key(address), |b| {
            IdentityKey::from_bytes(b).ok()
        })
    }
}

impl PreKeyStore for WebStore {
    fn signed_prekey(&self, id: u32) -> Result<Option<SignedPreKey>, StoreError> {
        self.decode(space::SIGNED_PREKEY, &id.to_be_bytes(), |b| {
            SignedPreKey::from_bytes(b).ok()
        })
    }

    fn save_signed_prekey(&mut self, key: SignedPreKey) -> Result<(), StoreError> {
        self.put(
            space::SIGNED_PREKEY,
            &key.id().to_be_bytes(),
            &key.to_bytes(),
        );
        Ok(())
    }

    fn remove_signed_prekey(&mut self, id: u32) -> Result<(), StoreError> {
        self.delete(space::SIGNED_PREKEY, &id.to_be_bytes());
        Ok(())
    }

    fn signed_prekey_ages(&self) -> Result<Vec<(u32, u64)>, StoreError> {
        self.values(space::SIGNED_PREKEY)
            .map(|b| {
                SignedPreKey::from_bytes(b)
                    .map(|k| (k.id(), k.created_at()))
                    .map_err(|_| corrupt(space::SIGNED_PREKEY))
            })
            .collect()
    }

    fn one_time_prekey(&self, id: u32) -> Result<Option<OneTimePreKey>, StoreError> {
        self.decode(space::ONE_TIME_PREKEY, &id.to_be_bytes(), |b| {
            OneTimePreKey::from_bytes(b).ok()
        })
    }

    fn save_one_time_prekey(&mut self, key: OneTimePreKey) -> Result<(), StoreError> {
        self.put(
            space::ONE_TIME_PREKEY,
            &key.id().to_be_bytes(),
            &key.to_bytes(),
        );
        Ok(())
    }

    fn kem_prekey(&self, id: u32) -> Result<Option<KemPreKey>, StoreError> {
        self.decode(space::KEM_PREKEY, &id.to_be_bytes(), |b| {
            KemPreKey::from_bytes(b).ok()
        })
    }

    fn save_kem_prekey(&mut self, key: KemPreKey) -> Result<(), StoreError> {
        self.put(space::KEM_PREKEY, &key.id().to_be_bytes(), &key.to_bytes());
        Ok(())
    }

    fn remove_kem_prekey(&mut self, id: u32) -> Result<(), StoreError> {
        self.delete(space::KEM_PREKEY, &id.to_be_bytes());
        Ok(())
    }

    fn consume_prekeys(&mut self, one_time: Option<u32>, kem: u32) -> Result<(), StoreError> {
        // Everything is checked before anything is removed: all or nothing.
        if let Some(id) = one_time
            && self.one_time_prekey(id)?.is_none()
        {
            return Err(StoreError::OneTimePreKeyNotFound { id });
        }
        let Some(kem_key) = self.kem_prekey(kem)? else {
            return Err(StoreError::KemPreKeyNotFound { id: kem });
        };
        if let Some(id) = one_time {
            self.delete(space::ONE_TIME_PREKEY, &id.to_be_bytes());
        }
        if kem_key.kind() == KemPreKeyKind::OneTime {
            self.delete(space::KEM_PREKEY, &kem.to_be_bytes());
        }
        Ok(())
    }
}

impl SessionStore for WebStore {
    fn load_session(&self, address: &DeviceAddress) -> Result<Option<SessionRecord>, StoreError> {
        self.decode(space::SESSION, &address_key(address), |b| {
            SessionRecord::from_bytes(b).ok()
        })
    }

    fn store_session(
        &mut self,
        address: &DeviceAddress,
        record: &SessionRecord,
    ) -> Result<(), StoreError> {
        self.put(space::SESSION, &address_key(address), &record.to_bytes());
        Ok(())
    }
}

#[cfg(test)]
fn conformance_store(identity: IdentityKeyPair, registration_id: u32) -> WebStore {
    let mut s = WebStore::default();
    s.set_identity(&identity, registration_id);
    s
}

haven_sdk::store_conformance_tests!(conformance_store);

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn export_import_roundtrip_wrong_key_tamper_truncation() {
        let mut s = WebStore::default();
        s.put(space::META, b"account", b"0123");
        s.put(space::SEEN, b"m1", &[1]);
        let key = StorageKey::from_bytes([9; 32]);
        let sealed = s.export(&key);
        let back = WebStore::import(&key, &sealed).unwrap();
        assert_eq!(back.get(space::META, b"account"), Some(&b"0123"[..]));
        assert_eq!(back.get(space::SEEN, b"m1"), Some(&[1u8][..]));
        let other = StorageKey::from_bytes([8; 32]);
        assert_eq!(
            WebStore::import(&other, &sealed).unwrap_err().code,
            ErrorCode::DecryptionFailed
        );
        let mut t = sealed.clone();
        let last = t.len() - 1;
        t[last] ^= 1;
        assert_eq!(
            WebStore::import(&key, &t).unwrap_err().code,
            ErrorCode::DecryptionFailed
        );
        assert_eq!(
            WebStore::import(&key, &sealed[..5]).unwrap_err().code,
            ErrorCode::Malformed
        );
    }

    #[test]
    fn decoder_refuses_truncated_and_trailing_bytes() {
        let mut s = WebStore::default();
        s.put(space::META, b"k", b"value");
        let plain = s.encode();
        for n in 0..plain.len() {
            assert!(WebStore::decode_all(&plain[..n]).is_err(), "prefix {n}");
        }
        let mut longer = plain.to_vec();
        longer.push(0);
        assert!(WebStore::decode_all(&longer).is_err());
        assert!(WebStore::decode_all(&plain).is_ok());
    }
}
