//! Encrypted snapshots ("pickles") of secret state for persistent stores.
//!
//! ```text
//! snapshot = 0x01 || nonce (24, random) || XChaCha20-Poly1305(storage_key, nonce, bytes,
//!                                                             ad = 0x01 || label)
//! ```
//! The label (e.g. `b"Haven_Snapshot_Session_v1"`) binds a snapshot to what it holds, so a
//! snapshot of one kind cannot be substituted for another.

use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{KeyInit, XChaCha20Poly1305};
use rand_core::CryptoRng;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// Version byte of a snapshot.
pub const SNAPSHOT_VERSION: u8 = 0x01;
/// Nonce length.
pub const SNAPSHOT_NONCE_LEN: usize = 24;
/// Bytes a snapshot adds to its plaintext (version, nonce, tag).
pub const SNAPSHOT_OVERHEAD: usize = 1 + SNAPSHOT_NONCE_LEN + 16;
/// Label for identity key pairs.
pub const LABEL_IDENTITY: &[u8] = b"Haven_Snapshot_Identity_v1";
/// Label for prekey records.
pub const LABEL_PREKEY: &[u8] = b"Haven_Snapshot_PreKey_v1";
/// Label for session records.
pub const LABEL_SESSION: &[u8] = b"Haven_Snapshot_Session_v1";

/// Errors of this module.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SnapshotError {
    /// Shorter than [`SNAPSHOT_OVERHEAD`].
    #[error("snapshot of {len} bytes is too short")]
    TooShort {
        /// Length received.
        len: usize,
    },
    /// Unknown version byte.
    #[error("unsupported snapshot version {version}")]
    UnsupportedVersion {
        /// The version byte found.
        version: u8,
    },
    /// Wrong key, wrong label or tampered.
    #[error("snapshot authentication failed")]
    DecryptionFailed,
}

/// The 32-byte key persistent stores encrypt with (from the platform keychain).
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct StorageKey(Box<[u8; 32]>);

impl StorageKey {
    /// Wraps key bytes.
    #[must_use]
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(Box::new(bytes))
    }

    /// A random key.
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let mut k = [0u8; 32];
        rng.fill_bytes(&mut k);
        let key = Self::from_bytes(k);
        k.zeroize();
        key
    }
}

fn ad(label: &[u8]) -> Vec<u8> {
    let mut a = Vec::with_capacity(1 + label.len());
    a.push(SNAPSHOT_VERSION);
    a.extend_from_slice(label);
    a
}

/// Encrypts `bytes` under `storage_key`, bound to `label`.
pub fn seal<R: CryptoRng + ?Sized>(
    storage_key: &StorageKey,
    label: &[u8],
    bytes: &[u8],
    rng: &mut R,
) -> Vec<u8> {
    let mut nonce = [0u8; SNAPSHOT_NONCE_LEN];
    rng.fill_bytes(&mut nonce);
    let cipher = XChaCha20Poly1305::new(&(*storage_key.0).into());
    // Only fails beyond 256 GiB; snapshots are far smaller.
    let ct = cipher
        .encrypt(
            &nonce.into(),
            Payload {
                msg: bytes,
                aad: &ad(label),
            },
        )
        .unwrap_or_default();
    let mut out = Vec::with_capacity(SNAPSHOT_OVERHEAD + bytes.len());
    out.push(SNAPSHOT_VERSION);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ct);
    out
}

/// Decrypts a snapshot made by [`seal`] with the same key and label.
///
/// # Errors
/// [`SnapshotError::TooShort`], [`SnapshotError::UnsupportedVersion`],
/// [`SnapshotError::DecryptionFailed`].
pub fn open(
    storage_key: &StorageKey,
    label: &[u8],
    snapshot: &[u8],
) -> Result<Zeroizing<Vec<u8>>, SnapshotError> {
    if snapshot.len() < SNAPSHOT_OVERHEAD {
        return Err(SnapshotError::TooShort {
            len: snapshot.len(),
        });
    }
    let (version, rest) = snapshot
        .split_at_checked(1)
        .ok_or(SnapshotError::TooShort { len: 0 })?;
    if version != [SNAPSHOT_VERSION] {
        return Err(SnapshotError::UnsupportedVersion {
            version: version.first().copied().unwrap_or(0),
        });
    }
    let (nonce, ct) = rest
        .split_at_checked(SNAPSHOT_NONCE_LEN)
        .ok_or(SnapshotError::TooShort {
            len: snapshot.len(),
        })?;
    let nonce: [u8; SNAPSHOT_NONCE_LEN] =
        nonce.try_into().map_err(|_| SnapshotError::TooShort {
            len: snapshot.len(),
        })?;
    let cipher = XChaCha20Poly1305::new(&(*storage_key.0).into());
    cipher
        .decrypt(
            &nonce.into(),
            Payload {
                msg: ct,
                aad: &ad(label),
            },
        )
        .map(Zeroizing::new)
        .map_err(|_| SnapshotError::DecryptionFailed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::IdentityKeyPair;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    #[test]
    fn roundtrip_identity_snapshot() {
        let mut rng = ChaCha20Rng::from_seed([50; 32]);
        let key = StorageKey::generate(&mut rng);
        let id = IdentityKeyPair::generate(&mut rng);
        let snap = seal(&key, LABEL_IDENTITY, &id.to_bytes(), &mut rng);
        let back =
            IdentityKeyPair::from_bytes(&open(&key, LABEL_IDENTITY, &snap).unwrap()).unwrap();
        assert_eq!(back.public(), id.public());
    }

    #[test]
    fn wrong_key_label_tamper_and_short_are_typed() {
        let mut rng = ChaCha20Rng::from_seed([51; 32]);
        let key = StorageKey::generate(&mut rng);
        let other = StorageKey::generate(&mut rng);
        let snap = seal(&key, LABEL_SESSION, b"state", &mut rng);
        assert_eq!(
            open(&other, LABEL_SESSION, &snap),
            Err(SnapshotError::DecryptionFailed)
        );
        assert_eq!(
            open(&key, LABEL_PREKEY, &snap),
            Err(SnapshotError::DecryptionFailed)
        );
        for i in 1..snap.len() {
            let mut t = snap.clone();
            t[i] ^= 1;
            assert_eq!(
                open(&key, LABEL_SESSION, &t),
                Err(SnapshotError::DecryptionFailed),
                "byte {i}"
            );
        }
        let mut t = snap.clone();
        t[0] = 2;
        assert_eq!(
            open(&key, LABEL_SESSION, &t),
            Err(SnapshotError::UnsupportedVersion { version: 2 })
        );
        assert_eq!(
            open(&key, LABEL_SESSION, &snap[..10]),
            Err(SnapshotError::TooShort { len: 10 })
        );
    }
}
