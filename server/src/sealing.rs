//! Sealing at rest: values the relay must be able to read again but that a dump of its database
//! must not reveal (TOTP secrets, push endpoints), sealed under a key kept out of the database
//! (`secrets::TotpKeyring`: `HAVEN_TOTP_KEY` or the `totp.key` file).
//!
//! One format for every use; each use ([`Purpose`]) derives its own key and key id and binds its
//! own label and a context (the row the value belongs to) as associated data, so a value sealed
//! for one use or one row does not open for another:
//!
//! ```text
//! K_seal  = HMAC-SHA256(K, purpose.seal_label || 0x00)
//! key_id  = HMAC-SHA256(K, purpose.key_id_label || 0x00)[0..8]
//! aad     = purpose.aad_label || 0x01 || key_id || context
//! sealed  = 0x01 || key_id (8) || nonce (24) || XChaCha20-Poly1305(K_seal, nonce, value, aad)
//! ```
//!
//! A value sealed under an earlier key (the keyring's `previous`) still opens, and
//! [`Opened::current`] says it should be sealed again.

use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{KeyInit, XChaCha20Poly1305};
use rand::RngCore;
use rand::rngs::OsRng;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::secrets::{Key32, TotpKeyring};

/// Version byte of a sealed value.
const SEALED_VERSION: u8 = 0x01;
/// Bytes of the key id.
const KEY_ID_LEN: usize = 8;
/// XChaCha20-Poly1305 nonce length.
const NONCE_LEN: usize = 24;
/// Poly1305 tag length.
const TAG_LEN: usize = 16;
/// Bytes a sealed value adds to its plaintext.
pub const OVERHEAD: usize = 1 + KEY_ID_LEN + NONCE_LEN + TAG_LEN;

/// One use of sealing: its labels.
#[derive(Debug, Clone, Copy)]
pub struct Purpose {
    /// Label of the derived sealing key.
    pub seal_label: &'static [u8],
    /// Label of the derived key id.
    pub key_id_label: &'static [u8],
    /// Label that starts the associated data.
    pub aad_label: &'static [u8],
}

/// Why a stored value does not open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SealError {
    /// Not a sealed value of a known version.
    #[error("sealed value is malformed")]
    Malformed,
    /// Sealed under a key this relay does not hold (neither the current key nor an earlier one).
    #[error("sealed value is sealed under an unknown key")]
    UnknownKey,
    /// The AEAD does not verify: corrupt, or sealed for another row or use.
    #[error("sealed value does not verify")]
    Forged,
    /// The AEAD refused to seal (does not happen for values under 256 GiB).
    #[error("sealing failed")]
    Seal,
}

/// A stored value, opened.
pub struct Opened {
    /// The value.
    pub value: Zeroizing<Vec<u8>>,
    /// Whether it is sealed under the current key (else it should be sealed again).
    pub current: bool,
}

/// One sealing key, derived from a configured key for one purpose.
struct SealKey {
    id: [u8; KEY_ID_LEN],
    cipher: XChaCha20Poly1305,
    aad_label: &'static [u8],
}

impl SealKey {
    fn derive(key: &Key32, purpose: &Purpose) -> Self {
        let seal = Zeroizing::new(key.hmac(purpose.seal_label, b""));
        let mut id = [0u8; KEY_ID_LEN];
        id.copy_from_slice(&key.hmac(purpose.key_id_label, b"")[..KEY_ID_LEN]);
        Self {
            id,
            cipher: XChaCha20Poly1305::new(&(*seal).into()),
            aad_label: purpose.aad_label,
        }
    }

    fn aad(&self, context: &[u8]) -> Vec<u8> {
        let mut aad = Vec::with_capacity(self.aad_label.len() + 1 + KEY_ID_LEN + context.len());
        aad.extend_from_slice(self.aad_label);
        aad.push(SEALED_VERSION);
        aad.extend_from_slice(&self.id);
        aad.extend_from_slice(context);
        aad
    }
}

/// Seals `value` for `context` under the keyring's current key.
pub fn seal(
    keys: &TotpKeyring,
    purpose: &Purpose,
    context: &[u8],
    value: &[u8],
) -> Result<Vec<u8>, SealError> {
    let key = SealKey::derive(&keys.current, purpose);
    let mut nonce = [0u8; NONCE_LEN];
    OsRng.fill_bytes(&mut nonce);
    let aad = key.aad(context);
    let sealed = key
        .cipher
        .encrypt(
            &nonce.into(),
            Payload {
                msg: value,
                aad: &aad,
            },
        )
        .map_err(|_| SealError::Seal)?;
    let mut out = Vec::with_capacity(OVERHEAD + value.len());
    out.push(SEALED_VERSION);
    out.extend_from_slice(&key.id);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&sealed);
    Ok(out)
}

/// Opens what [`seal`] sealed for `context` under the current or an earlier key.
pub fn open(
    keys: &TotpKeyring,
    purpose: &Purpose,
    context: &[u8],
    stored: &[u8],
) -> Result<Opened, SealError> {
    let (version, rest) = stored.split_first().ok_or(SealError::Malformed)?;
    if *version != SEALED_VERSION || rest.len() < KEY_ID_LEN + NONCE_LEN + TAG_LEN {
        return Err(SealError::Malformed);
    }
    let (id, rest) = rest
        .split_at_checked(KEY_ID_LEN)
        .ok_or(SealError::Malformed)?;
    let (nonce, ciphertext) = rest
        .split_at_checked(NONCE_LEN)
        .ok_or(SealError::Malformed)?;
    let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| SealError::Malformed)?;
    let mut known = false;
    for (i, raw) in std::iter::once(&keys.current)
        .chain(&keys.previous)
        .enumerate()
    {
        let key = SealKey::derive(raw, purpose);
        if !bool::from(key.id.ct_eq(id)) {
            continue;
        }
        known = true;
        let aad = key.aad(context);
        if let Ok(value) = key.cipher.decrypt(
            &nonce.into(),
            Payload {
                msg: ciphertext,
                aad: &aad,
            },
        ) {
            return Ok(Opened {
                value: Zeroizing::new(value),
                current: i == 0,
            });
        }
    }
    Err(if known {
        SealError::Forged
    } else {
        SealError::UnknownKey
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const A: Purpose = Purpose {
        seal_label: b"test/a/seal",
        key_id_label: b"test/a/id",
        aad_label: b"test/a",
    };
    const B: Purpose = Purpose {
        seal_label: b"test/b/seal",
        key_id_label: b"test/b/id",
        aad_label: b"test/b",
    };

    #[test]
    fn a_value_opens_only_for_its_purpose_context_and_keys() {
        let keys = TotpKeyring {
            current: Key32::from_bytes([1; 32]),
            previous: vec![],
        };
        let sealed = seal(&keys, &A, b"row 1", b"secret").unwrap();
        assert_eq!(sealed.len(), OVERHEAD + 6);
        let opened = open(&keys, &A, b"row 1", &sealed).unwrap();
        assert_eq!(opened.value.as_slice(), b"secret");
        assert!(opened.current);
        assert_eq!(
            open(&keys, &A, b"row 2", &sealed).err(),
            Some(SealError::Forged)
        );
        assert_eq!(
            open(&keys, &B, b"row 1", &sealed).err(),
            Some(SealError::UnknownKey)
        );
        assert_eq!(
            open(&keys, &A, b"row 1", &sealed[..10]).err(),
            Some(SealError::Malformed)
        );
        let rotated = TotpKeyring {
            current: Key32::from_bytes([2; 32]),
            previous: vec![Key32::from_bytes([1; 32])],
        };
        let opened = open(&rotated, &A, b"row 1", &sealed).unwrap();
        assert!(!opened.current);
    }
}
