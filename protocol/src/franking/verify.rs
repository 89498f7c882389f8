//! The franking computations, PROTOCOL.md §16.3–§16.5 (feature `franking`): the HMAC-SHA-256
//! commitment, the designated-verifier sender tag, the relay's delivery stamp and the check
//! of a report.
//!
//! They live here, over the layouts of [`super`], because the relay must verify reports and
//! may depend on `haven-protocol` only, never on the SDK; the SDK (`haven_sdk::franking`) calls
//! the same functions, so there is one implementation and an independent one in
//! `sdk/vectors/crosscheck.py`. Primitives: `hmac`, `hkdf`, `sha2`, `x25519-dalek`; every
//! comparison is constant-time (`Mac::verify_slice`, `subtle`), secrets are zeroized on drop and
//! have no `Debug`.
//!
//! The commitment is an HMAC, not the AEAD's tag: ChaCha20-Poly1305 is not key-committing, so
//! a sender could craft one ciphertext that opens to two contents under two keys.

use hkdf::Hkdf;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use super::{
    Destination, FrankingKey, IDENTITY_KEY_LEN, LEN_32, Report, TAG_KEY_INFO, commitment_input,
    is_canonical_x25519, stamp_input, tag_input, tag_key_salt,
};

/// Why a franking computation or check failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrankingError {
    /// The content is longer than [`super::MAX_CONTENT_LEN`].
    #[error("franked content of {len} bytes exceeds the limit")]
    ContentTooLarge {
        /// The content's length.
        len: usize,
    },
    /// An X25519 key (the sender identity's or `F`) is not canonical, or gives an all-zero
    /// (non-contributory) shared secret.
    #[error("invalid X25519 public key")]
    InvalidPublicKey,
    /// The report names a franking key this relay does not hold the secret of.
    #[error("the report names another franking key")]
    WrongFrankingKey,
    /// The delivery stamp does not match: not delivered to this destination at this `seq` and
    /// time with this commitment, or stamped by another key.
    #[error("delivery stamp mismatch")]
    StampMismatch,
    /// The commitment does not open to this content under this franking key.
    #[error("commitment mismatch")]
    CommitmentMismatch,
    /// The sender tag was not made by the claimed sender's identity key for this commitment
    /// and destination.
    #[error("sender tag mismatch")]
    TagMismatch,
}

type HmacSha256 = Hmac<Sha256>;

/// HMAC-SHA-256 keyed by a 32-byte key. HMAC pads a key shorter than the 64-byte block with
/// zeros (RFC 2104), so passing the padded block is the same function without a fallible
/// variable-length constructor.
fn mac(key: &[u8; LEN_32], input: &[u8]) -> HmacSha256 {
    let mut block = Zeroizing::new([0u8; 64]);
    block[..LEN_32].copy_from_slice(key);
    let mut mac = <HmacSha256 as KeyInit>::new(&(*block).into());
    mac.update(input);
    mac
}

fn hmac(key: &[u8; LEN_32], input: &[u8]) -> [u8; LEN_32] {
    mac(key, input).finalize().into_bytes().into()
}

fn hmac_verify(key: &[u8; LEN_32], input: &[u8], expected: &[u8; LEN_32]) -> bool {
    mac(key, input).verify_slice(expected).is_ok()
}

/// The relay's franking secret (the X25519 secret of `F`). Zeroized on drop, no `Debug`.
pub struct FrankingSecret(StaticSecret);

impl FrankingSecret {
    /// The secret from its 32 bytes (X25519 clamps them).
    #[must_use]
    pub fn from_bytes(bytes: [u8; LEN_32]) -> Self {
        Self(StaticSecret::from(bytes))
    }

    /// The published key `F`.
    #[must_use]
    pub fn public(&self) -> FrankingKey {
        FrankingKey(PublicKey::from(&self.0).to_bytes())
    }
}

/// The relay's delivery-stamp key `K_stamp`. Zeroized on drop, no `Debug`.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct StampKey(Box<[u8; LEN_32]>);

impl StampKey {
    /// The key from its 32 bytes.
    #[must_use]
    pub fn from_bytes(bytes: [u8; LEN_32]) -> Self {
        Self(Box::new(bytes))
    }
}

/// The commitment's HMAC input; its only failure is a content over the limit.
fn commitment_message(content: &[u8]) -> Result<Zeroizing<Vec<u8>>, FrankingError> {
    commitment_input(content)
        .map(Zeroizing::new)
        .map_err(|_| FrankingError::ContentTooLarge { len: content.len() })
}

/// `c = HMAC(fk, "Haven_Franking_Commitment_v1" || u32 len || content)`.
///
/// # Errors
/// [`FrankingError::ContentTooLarge`].
pub fn commit(franking_key: &[u8; LEN_32], content: &[u8]) -> Result<[u8; LEN_32], FrankingError> {
    let input = commitment_message(content)?;
    Ok(hmac(franking_key, &input))
}

/// Checks, in constant time, that `commitment` opens to `content` under `franking_key`.
///
/// # Errors
/// [`FrankingError::CommitmentMismatch`], [`FrankingError::ContentTooLarge`].
pub fn check_commitment(
    franking_key: &[u8; LEN_32],
    content: &[u8],
    commitment: &[u8; LEN_32],
) -> Result<(), FrankingError> {
    let input = commitment_message(content)?;
    if hmac_verify(franking_key, &input, commitment) {
        Ok(())
    } else {
        Err(FrankingError::CommitmentMismatch)
    }
}

/// The X25519 public key inside an identity key (`ed25519_pub || x25519_pub`), if canonical.
fn identity_x25519(identity: &[u8; IDENTITY_KEY_LEN]) -> Result<PublicKey, FrankingError> {
    let mut x = [0u8; LEN_32];
    x.copy_from_slice(&identity[LEN_32..]);
    if is_canonical_x25519(&x) {
        Ok(PublicKey::from(x))
    } else {
        Err(FrankingError::InvalidPublicKey)
    }
}

/// `k = HKDF(salt = IK_A || F, ikm = shared, info = "Haven_Franking_TagKey_v1", 32)` and
/// `dv = HMAC(k, "Haven_Franking_Tag_v1" || c || destination)`.
fn tag_from_shared(
    shared: &x25519_dalek::SharedSecret,
    sender_identity: &[u8; IDENTITY_KEY_LEN],
    franking_key: &FrankingKey,
    commitment: &[u8; LEN_32],
    destination: &Destination,
) -> Result<Zeroizing<[u8; LEN_32]>, FrankingError> {
    if !shared.was_contributory() {
        return Err(FrankingError::InvalidPublicKey);
    }
    let salt = tag_key_salt(sender_identity, franking_key);
    let mut k = Zeroizing::new([0u8; LEN_32]);
    // 32 bytes is far below HKDF-SHA-256's 8160-byte limit: `expand` cannot fail.
    let _ = Hkdf::<Sha256>::new(Some(&salt), shared.as_bytes()).expand(TAG_KEY_INFO, k.as_mut());
    Ok(Zeroizing::new(hmac(
        &k,
        &tag_input(commitment, destination),
    )))
}

/// The sender's tag `dv` over `commitment` for `destination`, computed with the sender
/// device's identity X25519 secret and the relay's `F` (PROTOCOL.md §16.3). Only the sender
/// and the holder of `F`'s secret can compute it.
///
/// `sender_identity` is the sender device's public identity key (64 bytes, §1.1) whose X25519
/// half belongs to `sender_secret`.
///
/// # Errors
/// [`FrankingError::InvalidPublicKey`] for a non-canonical or low-order `F`.
pub fn sender_tag(
    sender_secret: &StaticSecret,
    sender_identity: &[u8; IDENTITY_KEY_LEN],
    franking_key: &FrankingKey,
    commitment: &[u8; LEN_32],
    destination: &Destination,
) -> Result<[u8; LEN_32], FrankingError> {
    if !is_canonical_x25519(&franking_key.0) {
        return Err(FrankingError::InvalidPublicKey);
    }
    let shared = sender_secret.diffie_hellman(&PublicKey::from(franking_key.0));
    let tag = tag_from_shared(
        &shared,
        sender_identity,
        franking_key,
        commitment,
        destination,
    )?;
    Ok(*tag)
}

/// The verifier's side of [`sender_tag`]: recomputes `dv` with `F`'s secret and the claimed
/// sender's identity key on record, and compares in constant time.
///
/// # Errors
/// [`FrankingError::InvalidPublicKey`] for a non-canonical or low-order identity X25519 key,
/// [`FrankingError::TagMismatch`].
pub fn verify_tag(
    secret: &FrankingSecret,
    sender_identity: &[u8; IDENTITY_KEY_LEN],
    commitment: &[u8; LEN_32],
    destination: &Destination,
    tag: &[u8; LEN_32],
) -> Result<(), FrankingError> {
    let shared = secret.0.diffie_hellman(&identity_x25519(sender_identity)?);
    let expected = tag_from_shared(
        &shared,
        sender_identity,
        &secret.public(),
        commitment,
        destination,
    )?;
    if bool::from(expected.ct_eq(tag)) {
        Ok(())
    } else {
        Err(FrankingError::TagMismatch)
    }
}

/// The relay's delivery stamp:
/// `s = HMAC(K_stamp, "Haven_Franking_Stamp_v1" || c || destination || seq u64 || time u64)`.
#[must_use]
pub fn delivery_stamp(
    key: &StampKey,
    commitment: &[u8; LEN_32],
    destination: &Destination,
    seq: u64,
    time: u64,
) -> [u8; LEN_32] {
    hmac(&key.0, &stamp_input(commitment, destination, seq, time))
}

/// Verifies a report (PROTOCOL.md §16.5), in this order: the report names `secret`'s `F`; the
/// stamp is the relay's for (c, destination, seq, time); `c` opens to the content under `fk`;
/// `dv` is the tag of `sender_identity` (the identity key the relay has on record for the
/// report's sender account and device) for (c, destination).
///
/// Policy checks are the caller's: that the reporter is the destination's account (or holds
/// the channel's read token), the report window, and replay (by [`super::report_id`]).
///
/// # Errors
/// The first failing check's [`FrankingError`].
pub fn verify_report(
    report: &Report,
    secret: &FrankingSecret,
    stamp_key: &StampKey,
    sender_identity: &[u8; IDENTITY_KEY_LEN],
) -> Result<(), FrankingError> {
    if !bool::from(secret.public().0.ct_eq(&report.franking_key.0)) {
        return Err(FrankingError::WrongFrankingKey);
    }
    let stamp = delivery_stamp(
        stamp_key,
        &report.commitment,
        &report.destination,
        report.seq,
        report.time,
    );
    if !bool::from(stamp.ct_eq(&report.stamp)) {
        return Err(FrankingError::StampMismatch);
    }
    check_commitment(&report.opening_key, &report.content, &report.commitment)?;
    verify_tag(
        secret,
        sender_identity,
        &report.commitment,
        &report.destination,
        &report.tag,
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn identity(secret: &StaticSecret) -> [u8; 64] {
        let mut ik = [0xEDu8; 64];
        ik[32..].copy_from_slice(PublicKey::from(secret).as_bytes());
        ik
    }

    #[test]
    fn report_verifies_and_every_field_is_bound() {
        let f = FrankingSecret::from_bytes([0xF0; 32]);
        let k = StampKey::from_bytes([0x57; 32]);
        let a = StaticSecret::from([0xA1; 32]);
        let ik = identity(&a);
        let fk = [0x4B; 32];
        let content = b"reported content".to_vec();
        let destination = Destination::Device {
            account: [0xB0; 16],
            device: 2,
        };
        let c = commit(&fk, &content).unwrap();
        let dv = sender_tag(&a, &ik, &f.public(), &c, &destination).unwrap();
        let report = Report {
            franking_key: f.public(),
            sender_account: [0xA1; 16],
            sender_device: 1,
            destination,
            seq: 17,
            time: 1_790_000_040,
            commitment: c,
            stamp: delivery_stamp(&k, &c, &destination, 17, 1_790_000_040),
            opening_key: fk,
            tag: dv,
            content,
        };
        verify_report(&report, &f, &k, &ik).unwrap();
        // Flip every bit of the encoded report that a MAC covers: each is refused (or the
        // encoding no longer decodes). The sender fields are not MAC-covered: the relay looks
        // the identity up by them, so changing them changes `ik` (tested below).
        let bytes = report.encode();
        let sender = 2 + 32..2 + 32 + 20;
        for i in 0..bytes.len() {
            if sender.contains(&i) {
                continue;
            }
            for bit in 0..8 {
                let mut b = bytes.clone();
                b[i] ^= 1 << bit;
                if let Ok(r) = Report::decode(&b) {
                    assert!(
                        verify_report(&r, &f, &k, &ik).is_err(),
                        "byte {i} bit {bit}"
                    );
                }
            }
        }
        let other = identity(&StaticSecret::from([0xC3; 32]));
        assert_eq!(
            verify_report(&report, &f, &k, &other),
            Err(FrankingError::TagMismatch)
        );
        let mut bad_ik = ik;
        bad_ik[63] = 0x80;
        assert_eq!(
            verify_report(&report, &f, &k, &bad_ik),
            Err(FrankingError::InvalidPublicKey)
        );
        let other_f = FrankingSecret::from_bytes([0xF1; 32]);
        assert_eq!(
            verify_report(&report, &other_f, &k, &ik),
            Err(FrankingError::WrongFrankingKey)
        );
        assert_eq!(
            verify_report(&report, &f, &StampKey::from_bytes([0x58; 32]), &ik),
            Err(FrankingError::StampMismatch)
        );
    }

    #[test]
    fn low_order_keys_are_refused() {
        let a = StaticSecret::from([0xA1; 32]);
        let ik = identity(&a);
        let zero = FrankingKey([0; 32]);
        assert_eq!(
            sender_tag(
                &a,
                &ik,
                &zero,
                &[0; 32],
                &Destination::Channel {
                    channel_id: [0; 16]
                }
            ),
            Err(FrankingError::InvalidPublicKey)
        );
        let mut low = ik;
        low[32..].fill(0);
        let f = FrankingSecret::from_bytes([0xF0; 32]);
        let d = Destination::Channel {
            channel_id: [0; 16],
        };
        assert_eq!(
            verify_tag(&f, &low, &[0; 32], &d, &[0; 32]),
            Err(FrankingError::InvalidPublicKey)
        );
    }
}
