//! Linking a device by approval (PROTOCOL.md §15.3): the new device's one-time key, and the
//! sealed message in which an approving device gives it the account.
//!
//! The new device makes an X25519 key pair and shows its public key (with its provisioning box
//! id) as a link code; the approving device reads the code out of band (typed, pasted or
//! scanned), so the key never passes through the relay, and seals the provisioning plaintext to
//! it:
//!
//! ```text
//! e        = fresh X25519 key pair of the approver
//! shared   = X25519(e, N)                       (refused if not contributory)
//! key      = HKDF-SHA256(salt = e_pub || N, ikm = shared, info = "Haven_Provisioning_v1"), 32 bytes
//! ad       = "Haven_Provisioning_v1" || box_id
//! sealed   = 01 | e_pub [32] | ChaCha20-Poly1305(key, nonce = 0^12, ad, plaintext)
//! ```
//!
//! The key encrypts one message only, so the all-zero nonce is never reused. The relay, which
//! carries `sealed`, can neither read it nor make one the new device accepts (it never learns
//! `N`).

use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{ChaCha20Poly1305, KeyInit};
use haven_protocol::provisioning::{LinkCode, ProvisioningPlaintext};
use hkdf::Hkdf;
use rand_core::CryptoRng;
use sha2::Sha256;
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

use crate::identity::{dh, x25519_public};

/// HKDF info and AD label.
pub const PROVISIONING_INFO: &[u8] = b"Haven_Provisioning_v1";
/// Version byte of a sealed provisioning message.
pub const SEALED_VERSION: u8 = 0x01;
/// Largest sealed message accepted (the plaintext is fixed-size; this bounds the decoder).
pub const MAX_SEALED_LEN: usize = 1024;

/// Why sealing or opening failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProvisioningError {
    /// A public key is not a valid X25519 key, or the exchange was not contributory.
    #[error("invalid provisioning key")]
    InvalidKey,
    /// The sealed message is malformed, not for this key and box, or was altered.
    #[error("the provisioning message does not open")]
    DoesNotOpen,
    /// The plaintext inside does not parse.
    #[error("malformed provisioning message")]
    Malformed,
}

fn key_for(ephemeral: &PublicKey, recipient: &PublicKey, shared: &[u8; 32]) -> Zeroizing<[u8; 32]> {
    let mut salt = [0u8; 64];
    salt[..32].copy_from_slice(ephemeral.as_bytes());
    salt[32..].copy_from_slice(recipient.as_bytes());
    let mut key = Zeroizing::new([0u8; 32]);
    // A 32-byte output is always within HKDF-SHA256's limit.
    let _ = Hkdf::<Sha256>::new(Some(&salt), shared).expand(PROVISIONING_INFO, key.as_mut());
    key
}

fn ad(box_id: &[u8; 16]) -> Vec<u8> {
    let mut ad = PROVISIONING_INFO.to_vec();
    ad.extend_from_slice(box_id);
    ad
}

/// The new device's side: its one-time key for one link.
pub struct ProvisioningKeys {
    secret: StaticSecret,
    box_id: [u8; 16],
}

impl core::fmt::Debug for ProvisioningKeys {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ProvisioningKeys").finish_non_exhaustive()
    }
}

impl ProvisioningKeys {
    /// A fresh key for the box `box_id` the new device opened.
    pub fn generate<R: CryptoRng + ?Sized>(box_id: [u8; 16], rng: &mut R) -> Self {
        let mut seed = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(seed.as_mut());
        Self {
            secret: StaticSecret::from(*seed),
            box_id,
        }
    }

    /// The link code to show.
    #[must_use]
    pub fn code(&self) -> LinkCode {
        LinkCode {
            box_id: self.box_id,
            public_key: PublicKey::from(&self.secret).to_bytes(),
        }
    }

    /// Opens what the approving device sealed to this key for this box.
    ///
    /// # Errors
    /// [`ProvisioningError::DoesNotOpen`], [`ProvisioningError::Malformed`].
    pub fn open(&self, sealed: &[u8]) -> Result<ProvisioningPlaintext, ProvisioningError> {
        let fail = ProvisioningError::DoesNotOpen;
        if sealed.len() > MAX_SEALED_LEN {
            return Err(fail);
        }
        let (head, ciphertext) = sealed.split_at_checked(33).ok_or(fail.clone())?;
        let (version, ephemeral) = head.split_first().ok_or(fail.clone())?;
        if *version != SEALED_VERSION {
            return Err(fail);
        }
        let ephemeral: [u8; 32] = ephemeral.try_into().map_err(|_| fail.clone())?;
        let ephemeral = x25519_public(ephemeral).ok_or(fail.clone())?;
        let shared = dh(&self.secret, &ephemeral).ok_or(fail.clone())?;
        let recipient = PublicKey::from(&self.secret);
        let key = key_for(&ephemeral, &recipient, &shared);
        let plaintext = Zeroizing::new(
            ChaCha20Poly1305::new((&*key).into())
                .decrypt(
                    &[0u8; 12].into(),
                    Payload {
                        msg: ciphertext,
                        aad: &ad(&self.box_id),
                    },
                )
                .map_err(|_| fail)?,
        );
        ProvisioningPlaintext::decode(&plaintext).map_err(|_| ProvisioningError::Malformed)
    }
}

/// The approving device's side: seals `plaintext` to the new device named by `code`.
///
/// # Errors
/// [`ProvisioningError::InvalidKey`] for a code whose key is not a usable X25519 key.
pub fn seal<R: CryptoRng + ?Sized>(
    code: &LinkCode,
    plaintext: &ProvisioningPlaintext,
    rng: &mut R,
) -> Result<Vec<u8>, ProvisioningError> {
    let mut seed = Zeroizing::new([0u8; 32]);
    rng.fill_bytes(seed.as_mut());
    seal_with(code, plaintext, &StaticSecret::from(*seed))
}

/// hazmat: [`seal`] with a given ephemeral secret (for test vectors; reusing one breaks the
/// one-message-per-key rule the zero nonce relies on).
///
/// # Errors
/// As [`seal`].
pub fn seal_with(
    code: &LinkCode,
    plaintext: &ProvisioningPlaintext,
    ephemeral: &StaticSecret,
) -> Result<Vec<u8>, ProvisioningError> {
    let recipient = x25519_public(code.public_key).ok_or(ProvisioningError::InvalidKey)?;
    let shared = dh(ephemeral, &recipient).ok_or(ProvisioningError::InvalidKey)?;
    let ephemeral_public = PublicKey::from(ephemeral);
    let key = key_for(&ephemeral_public, &recipient, &shared);
    let body = Zeroizing::new(plaintext.encode());
    let ciphertext = ChaCha20Poly1305::new((&*key).into())
        .encrypt(
            &[0u8; 12].into(),
            Payload {
                msg: &body,
                aad: &ad(&code.box_id),
            },
        )
        .map_err(|_| ProvisioningError::InvalidKey)?;
    let mut out = Vec::with_capacity(33 + ciphertext.len());
    out.push(SEALED_VERSION);
    out.extend_from_slice(ephemeral_public.as_bytes());
    out.extend_from_slice(&ciphertext);
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    fn plaintext() -> ProvisioningPlaintext {
        ProvisioningPlaintext {
            account_id: [1; 16],
            link_token: [2; 32],
            account_key_pair: [3; 34],
            access_key: [4; 16],
            approver_device: 1,
            list_version: 3,
        }
    }

    #[test]
    fn only_the_new_device_opens_it_and_alterations_fail() {
        let mut rng = ChaCha20Rng::from_seed([61; 32]);
        let new = ProvisioningKeys::generate([9; 16], &mut rng);
        let code = haven_protocol::provisioning::LinkCode::parse(&new.code().encode()).unwrap();
        let sealed = seal(&code, &plaintext(), &mut rng).unwrap();
        assert_eq!(new.open(&sealed).unwrap(), plaintext());
        // Another key, another box, any flipped byte, truncation: nothing opens.
        let other = ProvisioningKeys::generate([9; 16], &mut rng);
        assert_eq!(other.open(&sealed), Err(ProvisioningError::DoesNotOpen));
        let other_box = ProvisioningKeys {
            secret: new.secret.clone(),
            box_id: [8; 16],
        };
        assert_eq!(other_box.open(&sealed), Err(ProvisioningError::DoesNotOpen));
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0x01;
            assert!(new.open(&bad).is_err(), "byte {i}");
        }
        for n in [0, 1, 32, 33, sealed.len() - 1] {
            assert!(new.open(&sealed[..n]).is_err());
        }
        // A low-order key in a code is refused when sealing.
        let zero = LinkCode {
            box_id: [9; 16],
            public_key: [0; 32],
        };
        assert_eq!(
            seal(&zero, &plaintext(), &mut rng),
            Err(ProvisioningError::InvalidKey)
        );
    }
}
