//! Group admin keys and signed group changes (`docs/PROTOCOL.md` §13.3.1).
//!
//! A group's creator makes one Ed25519 [`GroupAdminKey`] for the group; its public half is
//! pinned by every member from the first change it accepts. Every change of membership is a
//! [`SignedGroupChange`] (layout in `haven_protocol::group_change`): the group, the epoch it
//! starts, the member list, and a [`group_key_commitment`] to the epoch's group key, signed with
//! strict Ed25519 verification (canonical `S`, no small-order key or `R`). What a verified change
//! may do (the exact epoch step, the pinned key) is the client core's rule.

use alloc::vec::Vec;

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use haven_protocol::group_change::{GroupChangeBody, GroupChangeFormatError};
use rand_core::CryptoRng;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// Label of the group-key commitment.
const COMMITMENT_LABEL: &[u8] = b"Haven_GroupKey_v1";

/// Why a group change was refused by [`SignedGroupChange::verify`] or not signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GroupChangeError {
    /// The bytes do not follow the layout.
    #[error(transparent)]
    Format(#[from] GroupChangeFormatError),
    /// The admin key is not a valid Ed25519 point of large order.
    #[error("invalid group admin key")]
    InvalidAdminKey,
    /// The signature does not verify under the change's admin key.
    #[error("group change signature does not verify")]
    BadSignature,
    /// Asked to sign a change naming another admin key.
    #[error("the change names another admin key")]
    WrongSigner,
}

/// The commitment a change makes to its epoch's group key:
/// `SHA-256("Haven_GroupKey_v1" || group_id || u32be(epoch) || group_key)`.
#[must_use]
pub fn group_key_commitment(group_id: &[u8; 16], epoch: u32, group_key: &[u8; 32]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(COMMITMENT_LABEL);
    h.update(group_id);
    h.update(epoch.to_be_bytes());
    h.update(group_key);
    h.finalize().into()
}

/// A group's admin signing key. Secret: no `Debug` of the key, zeroized on drop (by
/// `ed25519-dalek`'s `zeroize` feature).
pub struct GroupAdminKey {
    signing: SigningKey,
}

impl core::fmt::Debug for GroupAdminKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let p = self.public();
        write!(
            f,
            "GroupAdminKey(public {:02x}{:02x}{:02x}{:02x}…)",
            p[0], p[1], p[2], p[3]
        )
    }
}

impl GroupAdminKey {
    /// A fresh key.
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let mut seed = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(seed.as_mut());
        Self::from_seed(&seed)
    }

    /// The key of a 32-byte Ed25519 seed (RFC 8032).
    #[must_use]
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Self {
            signing: SigningKey::from_bytes(seed),
        }
    }

    /// The seed (store it encrypted; the admin account's other devices receive it end to end).
    #[must_use]
    pub fn seed(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(*self.signing.as_bytes())
    }

    /// The public key (what members pin).
    #[must_use]
    pub fn public(&self) -> [u8; 32] {
        self.signing.verifying_key().to_bytes()
    }

    /// Signs `body`, which must name this key as its admin key.
    ///
    /// # Errors
    /// [`GroupChangeError::WrongSigner`], [`GroupChangeError::Format`] for a body that breaks
    /// the layout's rules.
    pub fn sign(&self, body: &GroupChangeBody) -> Result<SignedGroupChange, GroupChangeError> {
        if body.admin_key != self.public() {
            return Err(GroupChangeError::WrongSigner);
        }
        let signature = self.signing.sign(&body.signing_input()?).to_bytes();
        Ok(SignedGroupChange {
            bytes: body.with_signature(&signature)?,
            body: body.clone(),
        })
    }
}

/// A group change whose signature verified under the admin key it names.
#[derive(Clone, PartialEq, Eq)]
pub struct SignedGroupChange {
    body: GroupChangeBody,
    bytes: Vec<u8>,
}

impl core::fmt::Debug for SignedGroupChange {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_tuple("SignedGroupChange")
            .field(&self.body)
            .finish()
    }
}

impl SignedGroupChange {
    /// Decodes a change and verifies its signature (strictly) under the admin key it names. The
    /// caller compares that key with the one it pinned.
    ///
    /// # Errors
    /// [`GroupChangeError`].
    pub fn verify(bytes: &[u8]) -> Result<Self, GroupChangeError> {
        let (body, signature) = GroupChangeBody::decode(bytes)?;
        let key = VerifyingKey::from_bytes(&body.admin_key)
            .map_err(|_| GroupChangeError::InvalidAdminKey)?;
        if key.is_weak() {
            return Err(GroupChangeError::InvalidAdminKey);
        }
        key.verify_strict(&body.signing_input()?, &Signature::from_bytes(&signature))
            .map_err(|_| GroupChangeError::BadSignature)?;
        Ok(Self {
            body,
            bytes: bytes.to_vec(),
        })
    }

    /// What it states.
    #[must_use]
    pub fn body(&self) -> &GroupChangeBody {
        &self.body
    }

    /// The signed encoding.
    #[must_use]
    pub fn to_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Whether `group_key` is the key the change commits to.
    #[must_use]
    pub fn commits_to(&self, group_key: &[u8; 32]) -> bool {
        let expected = group_key_commitment(&self.body.group_id, self.body.epoch, group_key);
        subtle::ConstantTimeEq::ct_eq(&expected[..], &self.body.key_commitment[..]).into()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use alloc::string::ToString;
    use alloc::vec;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    fn body(key: &GroupAdminKey) -> GroupChangeBody {
        GroupChangeBody {
            group_id: [1; 16],
            epoch: 1,
            admin_account: [2; 16],
            admin_key: key.public(),
            key_commitment: group_key_commitment(&[1; 16], 1, &[7; 32]),
            name: "g".to_string(),
            members: vec![[2; 16], [3; 16]],
        }
    }

    #[test]
    fn signed_changes_verify_and_any_change_of_a_byte_is_refused() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let key = GroupAdminKey::generate(&mut rng);
        let signed = key.sign(&body(&key)).unwrap();
        let verified = SignedGroupChange::verify(signed.to_bytes()).unwrap();
        assert_eq!(verified, signed);
        assert!(verified.commits_to(&[7; 32]));
        assert!(!verified.commits_to(&[8; 32]));
        for i in 0..signed.to_bytes().len() {
            let mut bytes = signed.to_bytes().to_vec();
            bytes[i] ^= 1;
            assert!(SignedGroupChange::verify(&bytes).is_err(), "byte {i}");
        }
        // Another key cannot sign for this one.
        let other = GroupAdminKey::generate(&mut rng);
        assert_eq!(other.sign(&body(&key)), Err(GroupChangeError::WrongSigner));
        // Seeds round-trip.
        let again = GroupAdminKey::from_seed(&key.seed());
        assert_eq!(again.public(), key.public());
        assert!(!alloc::format!("{key:?}").contains("seed"));
    }

    #[test]
    fn a_change_re_signed_by_another_key_names_that_key() {
        let mut rng = ChaCha20Rng::seed_from_u64(2);
        let key = GroupAdminKey::generate(&mut rng);
        let forger = GroupAdminKey::generate(&mut rng);
        let mut b = body(&key);
        b.admin_key = forger.public();
        // It verifies, but under the forger's key: the core's pin comparison refuses it.
        let forged = forger.sign(&b).unwrap();
        let verified = SignedGroupChange::verify(forged.to_bytes()).unwrap();
        assert_ne!(verified.body().admin_key, key.public());
        // A weak (small-order) admin key is refused.
        let mut weak = forged.to_bytes().to_vec();
        weak[38..70].copy_from_slice(&[0; 32]);
        weak[38] = 1; // the identity point
        assert_eq!(
            SignedGroupChange::verify(&weak),
            Err(GroupChangeError::InvalidAdminKey)
        );
    }
}
