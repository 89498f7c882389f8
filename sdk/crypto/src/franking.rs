//! Message franking, the client's half (PROTOCOL.md §16): verifiable abuse reports.
//!
//! The sender ([`frank`]) draws a fresh franking key `fk` for each envelope, commits to the
//! content with `c = HMAC(fk, …)` (sent *outside* the encryption, stored by the relay with the
//! envelope) and computes a designated-verifier tag `dv` that only it and the relay (the holder
//! of the franking key `F`'s secret) can compute; `fk` and `dv` travel *inside* the encryption
//! in front of the content ([`haven_protocol::franking::Opening`]).
//!
//! The recipient ([`open_franked`]) recomputes `c` from what it decrypted and refuses the
//! message when it differs from the commitment the relay delivered, so a sender cannot send an
//! unreportable message. It keeps the [`ReceivedFranking`] as the message's report material;
//! [`ReceivedFranking::report`] makes the report body for the relay.
//!
//! The computations are `haven_protocol::franking::verify`'s (shared with the relay, which may
//! not depend on this crate); this module adds the randomness, the identity key and the
//! recipient's checks.

use haven_protocol::franking::verify::{self, FrankingError as ComputeError};
use haven_protocol::franking::{
    Destination, FrankingFormatError, FrankingKey, Opening, Report, is_canonical_x25519,
};
use rand_core::CryptoRng;
use zeroize::Zeroizing;

use crate::identity::IdentityKeyPair;

pub use haven_protocol::franking::{MAX_CONTENT_LEN, report_id};

/// Errors of franking on the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrankingError {
    /// The content is longer than [`MAX_CONTENT_LEN`].
    #[error("franked content of {len} bytes exceeds {MAX_CONTENT_LEN}")]
    ContentTooLarge {
        /// The content's length.
        len: usize,
    },
    /// The relay's franking key is not a canonical, contributory X25519 key.
    #[error("invalid franking key")]
    InvalidFrankingKey,
    /// The decrypted plaintext is not a franking opening (truncated, unknown version or type).
    #[error("malformed franking opening")]
    Malformed,
    /// The decrypted content does not open the commitment the relay delivered: the message
    /// could not be reported, so it is refused.
    #[error("the content does not match its franking commitment")]
    CommitmentMismatch,
}

impl From<ComputeError> for FrankingError {
    fn from(e: ComputeError) -> Self {
        match e {
            ComputeError::ContentTooLarge { len } => Self::ContentTooLarge { len },
            ComputeError::CommitmentMismatch => Self::CommitmentMismatch,
            _ => Self::InvalidFrankingKey,
        }
    }
}

impl From<FrankingFormatError> for FrankingError {
    fn from(e: FrankingFormatError) -> Self {
        match e {
            FrankingFormatError::ContentTooLarge { len } => Self::ContentTooLarge { len },
            _ => Self::Malformed,
        }
    }
}

/// One franked envelope's outputs: the commitment to send beside the envelope and the
/// plaintext to encrypt in place of the content.
pub struct Franked {
    /// `c`, sent outside the encryption (the relay stores and delivers it with the envelope).
    pub commitment: [u8; 32],
    /// `01 || 70 || fk || dv || content`, to encrypt (it holds `fk`: zeroized on drop).
    pub plaintext: Zeroizing<Vec<u8>>,
}

impl core::fmt::Debug for Franked {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Franked")
            .field("plaintext_len", &self.plaintext.len())
            .finish_non_exhaustive()
    }
}

/// Franks `content` for one envelope to `destination`: fresh `fk` from `rng`, the commitment
/// and the sender tag under `sender`'s identity and the relay's `franking_key`.
///
/// Call it once per envelope (per recipient device), never once per content: equal
/// commitments on the envelopes of one content would let the relay link a sealed send to the
/// sender's own self-sync copies and to the other recipients (PROTOCOL.md §16.2).
///
/// # Errors
/// [`FrankingError::ContentTooLarge`], [`FrankingError::InvalidFrankingKey`].
pub fn frank<R: CryptoRng + ?Sized>(
    rng: &mut R,
    sender: &IdentityKeyPair,
    franking_key: &FrankingKey,
    destination: &Destination,
    content: &[u8],
) -> Result<Franked, FrankingError> {
    let mut fk = Zeroizing::new([0u8; 32]);
    rng.fill_bytes(fk.as_mut());
    hazmat::frank_with_key(&fk, sender, franking_key, destination, content)
}

/// hazmat: franking with a caller-chosen `fk` (test vectors only).
pub mod hazmat {
    use super::*;

    /// hazmat: [`frank`] with an explicit franking key `fk` (test vectors only: a repeated
    /// `fk` makes envelopes linkable).
    ///
    /// # Errors
    /// As [`frank`].
    pub fn frank_with_key(
        fk: &[u8; 32],
        sender: &IdentityKeyPair,
        franking_key: &FrankingKey,
        destination: &Destination,
        content: &[u8],
    ) -> Result<Franked, FrankingError> {
        if !is_canonical_x25519(&franking_key.0) {
            return Err(FrankingError::InvalidFrankingKey);
        }
        let commitment = verify::commit(fk, content)?;
        let tag = verify::sender_tag(
            sender.dh_secret(),
            &sender.public().to_bytes(),
            franking_key,
            &commitment,
            destination,
        )?;
        let opening = Opening {
            franking_key: *fk,
            tag,
            content,
        };
        Ok(Franked {
            commitment,
            plaintext: Zeroizing::new(opening.encode()),
        })
    }
}

/// What a recipient keeps of a franked message it accepted: the content and the opening
/// (`fk`, `dv`). `fk` is zeroized on drop; no `Debug` shows it.
pub struct ReceivedFranking<'a> {
    /// The content (what the opening wrapped).
    pub content: &'a [u8],
    /// The franking key `fk` that opens the commitment.
    pub opening_key: Zeroizing<[u8; 32]>,
    /// The sender tag `dv` (the recipient cannot check it: only the relay can, §16.6).
    pub tag: [u8; 32],
    /// The commitment the relay delivered (and the content opens).
    pub commitment: [u8; 32],
}

impl core::fmt::Debug for ReceivedFranking<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ReceivedFranking")
            .field("content_len", &self.content.len())
            .finish_non_exhaustive()
    }
}

/// Where and when the relay delivered a franked message, and who sealed it: what
/// [`ReceivedFranking::report`] adds to the opening.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// The relay's franking key `F` the sender used (the one published when it sent).
    pub franking_key: FrankingKey,
    /// The sender's account id (from the validated sender certificate).
    pub sender_account: [u8; 16],
    /// The sender's device number (from the validated sender certificate).
    pub sender_device: u32,
    /// The mailbox or channel the relay delivered to.
    pub destination: Destination,
    /// The relay's `seq` of the envelope or entry.
    pub seq: u64,
    /// The relay's `received_at` / `created_at`.
    pub time: u64,
    /// The relay's delivery stamp `s`.
    pub stamp: [u8; 32],
}

/// Recipient side: reads the opening from a decrypted `plaintext` and checks, in constant
/// time, that its content opens the `delivered_commitment`.
///
/// # Errors
/// [`FrankingError::Malformed`], [`FrankingError::ContentTooLarge`],
/// [`FrankingError::CommitmentMismatch`] (refuse the message).
pub fn open_franked<'a>(
    plaintext: &'a [u8],
    delivered_commitment: &[u8; 32],
) -> Result<ReceivedFranking<'a>, FrankingError> {
    let opening = Opening::decode(plaintext)?;
    let opening_key = Zeroizing::new(opening.franking_key);
    verify::check_commitment(&opening_key, opening.content, delivered_commitment)?;
    Ok(ReceivedFranking {
        content: opening.content,
        opening_key,
        tag: opening.tag,
        commitment: *delivered_commitment,
    })
}

impl ReceivedFranking<'_> {
    /// The report of this message (its body is [`Report::encode`]): reveals this content and
    /// its opening, nothing about any other message.
    #[must_use]
    pub fn report(&self, delivery: &Delivery) -> Report {
        Report {
            franking_key: delivery.franking_key,
            sender_account: delivery.sender_account,
            sender_device: delivery.sender_device,
            destination: delivery.destination,
            seq: delivery.seq,
            time: delivery.time,
            commitment: self.commitment,
            stamp: delivery.stamp,
            opening_key: *self.opening_key,
            tag: self.tag,
            content: self.content.to_vec(),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use haven_protocol::franking::verify::{
        FrankingSecret, StampKey, delivery_stamp, verify_report, verify_tag,
    };
    use proptest::prelude::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    fn dest(account: u8, device: u32) -> Destination {
        Destination::Device {
            account: [account; 16],
            device,
        }
    }

    struct World {
        relay: FrankingSecret,
        stamp_key: StampKey,
        alice: IdentityKeyPair,
        mallory: IdentityKeyPair,
    }

    fn world() -> World {
        let mut rng = ChaCha20Rng::from_seed([7; 32]);
        World {
            relay: FrankingSecret::from_bytes([0xF0; 32]),
            stamp_key: StampKey::from_bytes([0x57; 32]),
            alice: IdentityKeyPair::generate(&mut rng),
            mallory: IdentityKeyPair::generate(&mut rng),
        }
    }

    fn delivered(w: &World, franked: &Franked, to: Destination) -> Delivery {
        Delivery {
            franking_key: w.relay.public(),
            sender_account: [0xA1; 16],
            sender_device: 1,
            destination: to,
            seq: 42,
            time: 1_790_000_040,
            stamp: delivery_stamp(&w.stamp_key, &franked.commitment, &to, 42, 1_790_000_040),
        }
    }

    #[test]
    fn round_trip_and_report_verifies() {
        let w = world();
        let mut rng = ChaCha20Rng::from_seed([1; 32]);
        let to = dest(0xB0, 2);
        let f = frank(&mut rng, &w.alice, &w.relay.public(), &to, b"hello").unwrap();
        let got = open_franked(&f.plaintext, &f.commitment).unwrap();
        assert_eq!(got.content, b"hello");
        let report = got.report(&delivered(&w, &f, to));
        let decoded = Report::decode(&report.encode()).unwrap();
        let ik = w.alice.public().to_bytes();
        verify_report(&decoded, &w.relay, &w.stamp_key, &ik).unwrap();
        // Fresh fk per envelope: the same content to the same device commits differently.
        let g = frank(&mut rng, &w.alice, &w.relay.public(), &to, b"hello").unwrap();
        assert_ne!(f.commitment, g.commitment);
        assert!(!format!("{f:?}{got:?}").contains("hello"));
    }

    #[test]
    fn commitment_binds_every_byte() {
        let w = world();
        let mut rng = ChaCha20Rng::from_seed([2; 32]);
        let f = frank(&mut rng, &w.alice, &w.relay.public(), &dest(1, 1), b"abc").unwrap();
        // Any change of the decrypted plaintext (fk or content; dv is not covered by c, it is
        // checked by the relay) or of the delivered commitment is refused.
        for i in 0..f.plaintext.len() {
            if (34..66).contains(&i) {
                continue;
            }
            for bit in 0..8 {
                let mut p = f.plaintext.to_vec();
                p[i] ^= 1 << bit;
                assert!(open_franked(&p, &f.commitment).is_err(), "byte {i}");
            }
        }
        for i in 0..32 {
            let mut c = f.commitment;
            c[i] ^= 1;
            assert_eq!(
                open_franked(&f.plaintext, &c).unwrap_err(),
                FrankingError::CommitmentMismatch
            );
        }
        let mut longer = f.plaintext.to_vec();
        longer.push(0);
        assert!(open_franked(&longer, &f.commitment).is_err());
        assert_eq!(
            open_franked(&f.plaintext[..40], &f.commitment).unwrap_err(),
            FrankingError::Malformed
        );
    }

    #[test]
    fn tag_binds_commitment_destination_and_sender() {
        let w = world();
        let mut rng = ChaCha20Rng::from_seed([3; 32]);
        let to = dest(0xB0, 2);
        let f = frank(&mut rng, &w.alice, &w.relay.public(), &to, b"x").unwrap();
        let got = open_franked(&f.plaintext, &f.commitment).unwrap();
        let ik = w.alice.public().to_bytes();
        verify_tag(&w.relay, &ik, &f.commitment, &to, &got.tag).unwrap();
        let refused = |ik: &[u8; 64], c: &[u8; 32], d: &Destination| {
            verify_tag(&w.relay, ik, c, d, &got.tag).is_err()
        };
        assert!(refused(&w.mallory.public().to_bytes(), &f.commitment, &to));
        assert!(refused(&ik, &[0; 32], &to));
        assert!(refused(&ik, &f.commitment, &dest(0xB0, 3)));
        assert!(refused(&ik, &f.commitment, &dest(0xB1, 2)));
        assert!(refused(
            &ik,
            &f.commitment,
            &Destination::Channel {
                channel_id: [0xB0; 16]
            }
        ));
    }

    #[test]
    fn recipient_cannot_frame_another_sender() {
        // Mallory (a recipient, or any other account) has Alice's public identity key and F,
        // and franks a content with her own key claiming Alice sent it: the relay, looking up
        // Alice's identity key, refuses the tag.
        let w = world();
        let mut rng = ChaCha20Rng::from_seed([4; 32]);
        let to = dest(0xB0, 2);
        let forged = frank(&mut rng, &w.mallory, &w.relay.public(), &to, b"lie").unwrap();
        let got = open_franked(&forged.plaintext, &forged.commitment).unwrap();
        let report = got.report(&delivered(&w, &forged, to));
        assert_eq!(
            verify_report(
                &report,
                &w.relay,
                &w.stamp_key,
                &w.alice.public().to_bytes()
            ),
            Err(ComputeError::TagMismatch)
        );
        // Reusing a genuine tag of Alice's on other content fails at the commitment.
        let real = frank(&mut rng, &w.alice, &w.relay.public(), &to, b"hi").unwrap();
        let real_got = open_franked(&real.plaintext, &real.commitment).unwrap();
        let mut r = real_got.report(&delivered(&w, &real, to));
        r.content = b"lie".to_vec();
        assert_eq!(
            verify_report(&r, &w.relay, &w.stamp_key, &w.alice.public().to_bytes()),
            Err(ComputeError::CommitmentMismatch)
        );
    }

    #[test]
    fn invalid_franking_keys_are_refused() {
        let w = world();
        let mut rng = ChaCha20Rng::from_seed([5; 32]);
        for key in [[0u8; 32], {
            let mut k = [0xff; 32];
            k[31] = 0x7f;
            k
        }] {
            assert_eq!(
                frank(&mut rng, &w.alice, &FrankingKey(key), &dest(1, 1), b"x").unwrap_err(),
                FrankingError::InvalidFrankingKey
            );
        }
        assert!(matches!(
            frank(
                &mut rng,
                &w.alice,
                &w.relay.public(),
                &dest(1, 1),
                &vec![0; MAX_CONTENT_LEN + 1]
            ),
            Err(FrankingError::ContentTooLarge { .. })
        ));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn any_content_round_trips_and_any_change_is_refused(
            content in proptest::collection::vec(any::<u8>(), 0..300),
            seed in any::<[u8; 32]>(),
            flip in any::<prop::sample::Index>(),
        ) {
            let w = world();
            let mut rng = ChaCha20Rng::from_seed(seed);
            let f = frank(&mut rng, &w.alice, &w.relay.public(), &dest(2, 3), &content).unwrap();
            let got = open_franked(&f.plaintext, &f.commitment).unwrap();
            prop_assert_eq!(got.content, &content[..]);
            if !content.is_empty() {
                let mut p = f.plaintext.to_vec();
                let i = 66 + flip.index(content.len());
                p[i] ^= 0x01;
                prop_assert_eq!(
                    open_franked(&p, &f.commitment).unwrap_err(),
                    FrankingError::CommitmentMismatch
                );
            }
        }
    }
}
