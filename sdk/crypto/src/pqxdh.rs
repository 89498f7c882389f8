//! The PQXDH handshake (Signal PQXDH specification, revision 3) with X25519, SHA-256 and
//! ML-KEM-1024.
//!
//! ```text
//! DH1 = DH(IK_A, SPK_B)   DH2 = DH(EK_A, IK_B)   DH3 = DH(EK_A, SPK_B)   DH4 = DH(EK_A, OPK_B)
//! (CT, SS) = ML-KEM-1024.Encaps(PQPK_B)
//! SK = HKDF(salt = 32 zero bytes, ikm = F || DH1 || DH2 || DH3 [|| DH4] || SS, info, 32)
//! F = 32 × 0xFF, info = "Haven_PQXDH_CURVE25519_SHA-256_ML-KEM-1024_v1"
//! AD = IK_A || IK_B
//! ```

use hkdf::Hkdf;
use rand_core::CryptoRng;
use sha2::Sha256;
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

use crate::identity::{IdentityKey, IdentityKeyPair, dh};
use crate::prekeys::{
    KEM_CIPHERTEXT_LEN, KemPreKey, OneTimePreKey, PreKeyBundle, PreKeyError, SignedPreKey,
    kem_encapsulate,
};
use crate::ratchet::message::PreKeyMessage;
use crate::ratchet::session::{PendingPreKey, Session};

/// HKDF info of the handshake.
pub const PQXDH_INFO: &[u8] = b"Haven_PQXDH_CURVE25519_SHA-256_ML-KEM-1024_v1";
/// The 32 0xFF bytes prefixed to the KDF input (domain separation from XEdDSA-style uses).
pub const PQXDH_F: [u8; 32] = [0xFF; 32];

/// The 32-byte handshake output `SK`.
pub type SharedKey = Zeroizing<[u8; 32]>;
/// An ML-KEM-1024 ciphertext.
pub type KemCiphertext = Box<[u8; KEM_CIPHERTEXT_LEN]>;

/// Errors of the handshake.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PqxdhError {
    /// The bundle failed validation (bad signature or invalid KEM key); nothing was stored.
    #[error("invalid prekey bundle: {0}")]
    InvalidBundle(#[from] PreKeyError),
    /// A Diffie-Hellman output was all zeros (low-order peer key).
    #[error("invalid public key in handshake")]
    InvalidPublicKey,
    /// The signed prekey named by the message is not (or no longer) held.
    #[error("unknown signed prekey {id}")]
    UnknownSignedPreKey {
        /// Requested id.
        id: u32,
    },
    /// The one-time prekey named by the message is not held (already used, or never existed).
    #[error("unknown one-time prekey {id}")]
    UnknownOneTimePreKey {
        /// Requested id.
        id: u32,
    },
    /// The KEM prekey named by the message is not held (one-time key already used).
    #[error("unknown KEM prekey {id}")]
    UnknownKemPreKey {
        /// Requested id.
        id: u32,
    },
}

/// Derives `SK` from the DH outputs and the KEM shared secret.
pub(crate) fn derive_sk(dhs: &[&[u8; 32]], ss: &[u8; 32]) -> Zeroizing<[u8; 32]> {
    let mut ikm = Zeroizing::new(Vec::with_capacity(32 * 6));
    ikm.extend_from_slice(&PQXDH_F);
    for d in dhs {
        ikm.extend_from_slice(d.as_slice());
    }
    ikm.extend_from_slice(ss);
    let mut sk = Zeroizing::new([0u8; 32]);
    let _ = Hkdf::<Sha256>::new(Some(&[0u8; 32]), &ikm).expand(PQXDH_INFO, sk.as_mut());
    sk
}

/// Initiator side: verifies the bundle, computes `SK` and returns a session whose messages are
/// [`PreKeyMessage`]s until the responder answers. Randomness is drawn from `rng`.
///
/// # Errors
/// [`PqxdhError::InvalidBundle`] (bad signature → nothing is created),
/// [`PqxdhError::InvalidPublicKey`].
pub fn initiate<R: CryptoRng + ?Sized>(
    own: &IdentityKeyPair,
    bundle: &PreKeyBundle,
    rng: &mut R,
) -> Result<Session, PqxdhError> {
    hazmat::initiate_with(own, bundle, hazmat::InitiatorRandomness::generate(rng))
}

/// The responder's private keys named by a [`PreKeyMessage`].
pub struct ResponderKeys<'a> {
    /// The signed prekey with id `signed_prekey_id`.
    pub signed_prekey: &'a SignedPreKey,
    /// The one-time prekey, if the message names one.
    pub one_time_prekey: Option<&'a OneTimePreKey>,
    /// The KEM prekey with id `kem_prekey_id`.
    pub kem_prekey: &'a KemPreKey,
}

/// Responder side: builds the session `message` creates. The caller decrypts the embedded
/// ratchet message with it and only then deletes the one-time keys.
///
/// # Errors
/// As [`hazmat::responder_secret`].
pub fn respond(
    own: &IdentityKeyPair,
    message: &PreKeyMessage,
    keys: &ResponderKeys<'_>,
) -> Result<Session, PqxdhError> {
    let sk = hazmat::responder_secret(own, message, keys)?;
    Ok(Session::responder(
        *own.public(),
        message.identity_key,
        &sk,
        keys.signed_prekey.secret().clone(),
        *keys.signed_prekey.public(),
        message.base_key,
    ))
}

/// `IK_A || IK_B` as used for every AEAD in the session.
#[must_use]
pub fn associated_data(initiator: &IdentityKey, responder: &IdentityKey) -> [u8; 128] {
    crate::ratchet::session::session_ad(initiator, responder)
}

/// hazmat: explicit-randomness and raw-secret variants of the handshake, for test vectors and
/// independent implementations. Reusing randomness breaks forward secrecy.
pub mod hazmat {
    use super::*;

    /// The initiator's random inputs, explicit so vectors can fix them.
    pub struct InitiatorRandomness {
        /// Ephemeral key `EK_A` (also the session's base key).
        pub ephemeral: StaticSecret,
        /// ML-KEM encapsulation randomness `m` (FIPS 203 `Encaps_internal`).
        pub kem_m: Zeroizing<[u8; 32]>,
        /// First sending ratchet key pair.
        pub ratchet: StaticSecret,
    }

    impl InitiatorRandomness {
        /// Draws all three from `rng`.
        pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
            let ephemeral = StaticSecret::random_from_rng(rng);
            let mut kem_m = Zeroizing::new([0u8; 32]);
            rng.fill_bytes(kem_m.as_mut());
            let ratchet = StaticSecret::random_from_rng(rng);
            Self {
                ephemeral,
                kem_m,
                ratchet,
            }
        }
    }

    /// hazmat: [`initiate`] with explicit randomness (test vectors). Reusing randomness breaks
    /// forward secrecy.
    ///
    /// # Errors
    /// As [`initiate`].
    pub fn initiate_with(
        own: &IdentityKeyPair,
        bundle: &PreKeyBundle,
        randomness: InitiatorRandomness,
    ) -> Result<Session, PqxdhError> {
        bundle.verify()?;
        // The signed prekey takes part in three key agreements (DH1, DH3, the first ratchet
        // step): prepared once.
        let spk = bundle.signed_prekey;
        let (sk, kem_ciphertext) = initiator_secret_with(own, bundle, &randomness, &spk)?;
        let pending = PendingPreKey {
            signed_prekey_id: bundle.signed_prekey_id,
            one_time_prekey_id: bundle.one_time_prekey.map(|(id, _)| id),
            kem_prekey_id: bundle.kem_prekey_id,
            kem_ciphertext,
        };
        Session::initiator(
            *own.public(),
            bundle.identity_key,
            &sk,
            &spk,
            PublicKey::from(&randomness.ephemeral),
            randomness.ratchet,
            pending,
        )
        .map_err(|_| PqxdhError::InvalidPublicKey)
    }

    /// hazmat: the initiator's `SK` and KEM ciphertext, without verifying the bundle.
    ///
    /// # Errors
    /// [`PqxdhError::InvalidPublicKey`], [`PqxdhError::InvalidBundle`] (invalid KEM key).
    pub fn initiator_secret(
        own: &IdentityKeyPair,
        bundle: &PreKeyBundle,
        randomness: &InitiatorRandomness,
    ) -> Result<(SharedKey, KemCiphertext), PqxdhError> {
        let spk = bundle.signed_prekey;
        initiator_secret_with(own, bundle, randomness, &spk)
    }

    /// [`initiator_secret`] with the bundle's signed prekey already prepared.
    fn initiator_secret_with(
        own: &IdentityKeyPair,
        bundle: &PreKeyBundle,
        randomness: &InitiatorRandomness,
        spk: &PublicKey,
    ) -> Result<(SharedKey, KemCiphertext), PqxdhError> {
        let bad = || PqxdhError::InvalidPublicKey;
        let ek = &randomness.ephemeral;
        let dh1 = dh(own.dh_secret(), spk).ok_or_else(bad)?;
        let dh2 = dh(ek, bundle.identity_key.dh_public()).ok_or_else(bad)?;
        let dh3 = dh(ek, spk).ok_or_else(bad)?;
        let dh4 = match &bundle.one_time_prekey {
            Some((_, opk)) => Some(dh(ek, opk).ok_or_else(bad)?),
            None => None,
        };
        let (ct, ss) = kem_encapsulate(&bundle.kem_prekey, &randomness.kem_m)?;
        let mut dhs: Vec<&[u8; 32]> = vec![&dh1, &dh2, &dh3];
        if let Some(d) = &dh4 {
            dhs.push(d);
        }
        Ok((derive_sk(&dhs, &ss), ct))
    }

    /// hazmat: the responder's `SK` for `message` (no store access, no deletion).
    ///
    /// # Errors
    /// [`PqxdhError::InvalidPublicKey`].
    pub fn responder_secret(
        own: &IdentityKeyPair,
        message: &PreKeyMessage,
        keys: &ResponderKeys<'_>,
    ) -> Result<Zeroizing<[u8; 32]>, PqxdhError> {
        let bad = || PqxdhError::InvalidPublicKey;
        let spk = keys.signed_prekey.secret();
        // The base key takes part in up to three key agreements: prepared once.
        let base_key = message.base_key;
        let dh1 = dh(spk, message.identity_key.dh_public()).ok_or_else(bad)?;
        let dh2 = dh(own.dh_secret(), &base_key).ok_or_else(bad)?;
        let dh3 = dh(spk, &base_key).ok_or_else(bad)?;
        let dh4 = match keys.one_time_prekey {
            Some(k) => Some(dh(k.secret(), &base_key).ok_or_else(bad)?),
            None => None,
        };
        let ss = keys.kem_prekey.decapsulate(&message.kem_ciphertext);
        let mut dhs: Vec<&[u8; 32]> = vec![&dh1, &dh2, &dh3];
        if let Some(d) = &dh4 {
            dhs.push(d);
        }
        Ok(derive_sk(&dhs, &ss))
    }
}
