//! Long-term identity keys.
//!
//! An identity is a pair: an Ed25519 key that signs (prekeys) and an X25519 key that takes part
//! in key agreement (PQXDH, sealed sender). The public identity ([`IdentityKey`]) is the 64 bytes
//! `ed25519_pub || x25519_pub`. Using two independent keys instead of XEdDSA keeps us on audited
//! primitives only.

use core::fmt;

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use rand_core::CryptoRng;
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

use haven_protocol::encoding::Reader;

/// Length of an encoded [`IdentityKey`].
pub const IDENTITY_KEY_LEN: usize = 64;
/// Length of an Ed25519 signature.
pub const SIGNATURE_LEN: usize = 64;
/// Version byte of [`IdentityKeyPair::to_bytes`].
const PAIR_VERSION: u8 = 0x01;
/// Type byte of [`IdentityKeyPair::to_bytes`] (distinguishes it from other snapshots).
const PAIR_TYPE: u8 = 0x10;

/// Errors of this module.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// The input had the wrong length.
    #[error("identity encoding has length {actual}, expected {expected}")]
    InvalidLength {
        /// Bytes received.
        actual: usize,
        /// Bytes required.
        expected: usize,
    },
    /// Unknown version or type byte.
    #[error("unsupported identity encoding version/type")]
    UnsupportedVersion,
    /// The Ed25519 public key is not a valid point (or is weak).
    #[error("invalid Ed25519 public key")]
    InvalidPublicKey,
    /// A signature did not verify.
    #[error("signature verification failed")]
    BadSignature,
}

/// A public identity: Ed25519 verification key and X25519 key-agreement key.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct IdentityKey {
    signing: VerifyingKey,
    dh: PublicKey,
}

impl IdentityKey {
    /// The 64-byte encoding `ed25519_pub || x25519_pub`.
    #[must_use]
    pub fn to_bytes(&self) -> [u8; IDENTITY_KEY_LEN] {
        let mut out = [0u8; IDENTITY_KEY_LEN];
        out[..32].copy_from_slice(self.signing.as_bytes());
        out[32..].copy_from_slice(self.dh.as_bytes());
        out
    }

    /// Parses the 64-byte encoding; rejects invalid and weak (small-order) Ed25519 keys.
    ///
    /// # Errors
    /// [`IdentityError::InvalidLength`] or [`IdentityError::InvalidPublicKey`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, IdentityError> {
        let arr: [u8; IDENTITY_KEY_LEN] =
            bytes.try_into().map_err(|_| IdentityError::InvalidLength {
                actual: bytes.len(),
                expected: IDENTITY_KEY_LEN,
            })?;
        let mut r = Reader::new(&arr);
        let ed: [u8; 32] = r.array().ok_or(IdentityError::InvalidPublicKey)?;
        let x: [u8; 32] = r.array().ok_or(IdentityError::InvalidPublicKey)?;
        let signing = VerifyingKey::from_bytes(&ed).map_err(|_| IdentityError::InvalidPublicKey)?;
        if signing.is_weak() {
            return Err(IdentityError::InvalidPublicKey);
        }
        let dh = x25519_public(x).ok_or(IdentityError::InvalidPublicKey)?;
        Ok(Self { signing, dh })
    }

    /// The X25519 half.
    #[must_use]
    pub fn dh_public(&self) -> &PublicKey {
        &self.dh
    }

    /// The Ed25519 half.
    #[must_use]
    pub fn verifying_key(&self) -> &VerifyingKey {
        &self.signing
    }

    /// Verifies an Ed25519 signature (strict verification: rejects malleable encodings).
    ///
    /// # Errors
    /// [`IdentityError::BadSignature`].
    pub fn verify(
        &self,
        message: &[u8],
        signature: &[u8; SIGNATURE_LEN],
    ) -> Result<(), IdentityError> {
        let sig = Signature::from_bytes(signature);
        self.signing
            .verify_strict(message, &sig)
            .map_err(|_| IdentityError::BadSignature)
    }
}

impl fmt::Debug for IdentityKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Public keys are not secret; a short prefix is enough to tell them apart in logs.
        let b = self.to_bytes();
        write!(
            f,
            "IdentityKey({:02x}{:02x}{:02x}{:02x}…)",
            b[0], b[1], b[2], b[3]
        )
    }
}

/// A private identity. Zeroized on drop (both inner keys zeroize themselves); `Debug` is redacted.
#[derive(Clone)]
pub struct IdentityKeyPair {
    signing: SigningKey,
    dh: StaticSecret,
    public: IdentityKey,
}

impl IdentityKeyPair {
    /// Generates a fresh identity from `rng`.
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let signing = SigningKey::generate(rng);
        let dh = StaticSecret::random_from_rng(rng);
        Self::from_parts(signing, dh)
    }

    fn from_parts(signing: SigningKey, dh: StaticSecret) -> Self {
        let public = IdentityKey {
            signing: signing.verifying_key(),
            dh: PublicKey::from(&dh),
        };
        Self {
            signing,
            dh,
            public,
        }
    }

    /// Builds an identity from its two 32-byte secrets (Ed25519 seed, X25519 scalar).
    #[must_use]
    pub fn from_secret_bytes(ed25519_seed: &[u8; 32], x25519_secret: &[u8; 32]) -> Self {
        Self::from_parts(
            SigningKey::from_bytes(ed25519_seed),
            StaticSecret::from(*x25519_secret),
        )
    }

    /// The public identity.
    #[must_use]
    pub fn public(&self) -> &IdentityKey {
        &self.public
    }

    /// Signs `message` with the Ed25519 half.
    #[must_use]
    pub fn sign(&self, message: &[u8]) -> [u8; SIGNATURE_LEN] {
        self.signing.sign(message).to_bytes()
    }

    /// The X25519 secret, for key agreement inside the crate.
    pub(crate) fn dh_secret(&self) -> &StaticSecret {
        &self.dh
    }

    /// Pickle: `0x01 || 0x10 || ed25519_seed(32) || x25519_secret(32)`. Secret: encrypt it with
    /// [`crate::snapshot::seal`] before storing.
    #[must_use]
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::with_capacity(66));
        out.push(PAIR_VERSION);
        out.push(PAIR_TYPE);
        out.extend_from_slice(self.signing.as_bytes());
        out.extend_from_slice(self.dh.as_bytes());
        out
    }

    /// Parses [`IdentityKeyPair::to_bytes`].
    ///
    /// # Errors
    /// [`IdentityError::InvalidLength`] or [`IdentityError::UnsupportedVersion`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, IdentityError> {
        if bytes.len() != 66 {
            return Err(IdentityError::InvalidLength {
                actual: bytes.len(),
                expected: 66,
            });
        }
        let mut r = Reader::new(bytes);
        let header = (r.u8(), r.u8());
        if header != (Some(PAIR_VERSION), Some(PAIR_TYPE)) {
            return Err(IdentityError::UnsupportedVersion);
        }
        let ed = Zeroizing::new(r.array::<32>().ok_or(IdentityError::UnsupportedVersion)?);
        let x = Zeroizing::new(r.array::<32>().ok_or(IdentityError::UnsupportedVersion)?);
        Ok(Self::from_secret_bytes(&ed, &x))
    }
}

impl fmt::Debug for IdentityKeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdentityKeyPair")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

/// Parses an X25519 public key, accepting only the canonical encoding (u < 2^255 - 19, top bit
/// clear). X25519 ignores the top bit, so without this check two encodings would give the same
/// key and a flipped bit in an unauthenticated field would go unnoticed.
pub(crate) fn x25519_public(bytes: [u8; 32]) -> Option<PublicKey> {
    let top_bit_clear = bytes[31] & 0x80 == 0;
    let at_least_p =
        bytes[31] == 0x7f && bytes[1..31].iter().all(|b| *b == 0xff) && bytes[0] >= 0xed;
    (top_bit_clear && !at_least_p).then(|| PublicKey::from(bytes))
}

/// X25519 (x25519-dalek's Montgomery ladder) that refuses non-contributory results (a
/// low-order peer key gives an all-zero output, which would make the derived secret
/// predictable).
pub(crate) fn dh(secret: &StaticSecret, public: &PublicKey) -> Option<Zeroizing<[u8; 32]>> {
    let shared = secret.diffie_hellman(public);
    shared
        .was_contributory()
        .then(|| Zeroizing::new(shared.to_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    #[test]
    fn public_key_roundtrip_and_signature() {
        let mut rng = ChaCha20Rng::from_seed([1; 32]);
        let id = IdentityKeyPair::generate(&mut rng);
        let pk = IdentityKey::from_bytes(&id.public().to_bytes()).unwrap();
        assert_eq!(&pk, id.public());
        let sig = id.sign(b"hello");
        pk.verify(b"hello", &sig).unwrap();
        assert_eq!(pk.verify(b"hellp", &sig), Err(IdentityError::BadSignature));
        let other = IdentityKeyPair::generate(&mut rng);
        assert_eq!(
            other.public().verify(b"hello", &sig),
            Err(IdentityError::BadSignature)
        );
    }

    #[test]
    fn pair_pickle_roundtrip_and_rejects_garbage() {
        let mut rng = ChaCha20Rng::from_seed([2; 32]);
        let id = IdentityKeyPair::generate(&mut rng);
        let back = IdentityKeyPair::from_bytes(&id.to_bytes()).unwrap();
        assert_eq!(back.public(), id.public());
        let mut bad = id.to_bytes().to_vec();
        bad[1] = 0x11;
        assert_eq!(
            IdentityKeyPair::from_bytes(&bad).unwrap_err(),
            IdentityError::UnsupportedVersion
        );
        assert!(matches!(
            IdentityKeyPair::from_bytes(&bad[..10]),
            Err(IdentityError::InvalidLength { actual: 10, .. })
        ));
        assert!(IdentityKey::from_bytes(&[0u8; 63]).is_err());
    }

    #[test]
    fn debug_is_redacted() {
        let id = IdentityKeyPair::from_secret_bytes(&[0xAB; 32], &[0xCD; 32]);
        let s = format!("{id:?}");
        assert!(!s.to_lowercase().contains("abab"));
        assert!(!s.to_lowercase().contains("cdcd"));
    }

    #[test]
    fn non_canonical_x25519_is_refused() {
        assert!(x25519_public([9; 32]).is_some());
        let mut top = [9u8; 32];
        top[31] |= 0x80;
        assert!(x25519_public(top).is_none());
        let mut p = [0xffu8; 32];
        p[31] = 0x7f;
        p[0] = 0xed;
        assert!(x25519_public(p).is_none());
        p[0] = 0xec;
        assert!(x25519_public(p).is_some());
    }

    fn unhex(s: &str) -> [u8; 32] {
        hex::decode(s).unwrap().try_into().unwrap()
    }

    /// RFC 7748 §5.2 (first vector) and §6.1, through the function every handshake uses.
    #[test]
    fn x25519_matches_rfc_7748() {
        let k = StaticSecret::from(unhex(
            "a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4",
        ));
        let u = PublicKey::from(unhex(
            "e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c",
        ));
        assert_eq!(
            *dh(&k, &u).unwrap(),
            unhex("c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552")
        );
        let alice = StaticSecret::from(unhex(
            "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a",
        ));
        let bob = PublicKey::from(unhex(
            "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f",
        ));
        assert_eq!(
            *dh(&alice, &bob).unwrap(),
            unhex("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742")
        );
    }

    #[test]
    fn low_order_point_is_refused() {
        let s = StaticSecret::from([7u8; 32]);
        assert!(dh(&s, &PublicKey::from([0u8; 32])).is_none());
    }
}
