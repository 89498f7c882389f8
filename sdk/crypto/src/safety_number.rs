//! Safety numbers: a 60-digit number both parties compute from their (stable id, identity key)
//! pairs and compare out of band. Follows Signal's numeric fingerprint (iterated SHA-512, 5200
//! iterations, 30 digits per party), with Haven's own version number.

use sha2::{Digest, Sha512};

use crate::identity::IdentityKey;

/// Version mixed into every hash (u16, big-endian).
pub const SAFETY_NUMBER_VERSION: u16 = 1;
/// SHA-512 iterations per party.
pub const ITERATIONS: u32 = 5200;
/// Digits in the combined safety number.
pub const SAFETY_NUMBER_DIGITS: usize = 60;

/// The 30 digits of one party:
/// `h = SHA512(version || key || id)`, then `ITERATIONS` times `h = SHA512(h || key)`; the first
/// 30 bytes, as six 5-byte big-endian integers each taken mod 100000, zero-padded to 5 digits.
#[must_use]
pub fn party_digits(stable_id: &[u8], identity: &IdentityKey) -> String {
    let key = identity.to_bytes();
    let mut h = Sha512::new();
    h.update(SAFETY_NUMBER_VERSION.to_be_bytes());
    h.update(key);
    h.update(stable_id);
    let mut hash = h.finalize();
    for _ in 0..ITERATIONS {
        let mut h = Sha512::new();
        h.update(hash);
        h.update(key);
        hash = h.finalize();
    }
    digits_of(&hash)
}

/// The 30 digits of a final hash: its first 30 bytes as six 5-byte big-endian integers, each
/// taken mod 100000 and zero-padded to 5 digits.
pub(crate) fn digits_of(hash: &[u8]) -> String {
    let mut out = String::with_capacity(30);
    for chunk in hash.chunks_exact(5).take(6) {
        let mut v = 0u64;
        for b in chunk {
            v = (v << 8) | u64::from(*b);
        }
        out.push_str(&format!("{:05}", v % 100_000));
    }
    out
}

/// The 60-digit safety number: both parties' digits, the numerically smaller first, so both
/// sides display the same number.
#[must_use]
pub fn safety_number(
    local_id: &[u8],
    local_key: &IdentityKey,
    remote_id: &[u8],
    remote_key: &IdentityKey,
) -> String {
    let a = party_digits(local_id, local_key);
    let b = party_digits(remote_id, remote_key);
    if a <= b { a + &b } else { b + &a }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::IdentityKeyPair;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    #[test]
    fn symmetric_and_sensitive() {
        let mut rng = ChaCha20Rng::from_seed([40; 32]);
        let a = IdentityKeyPair::generate(&mut rng);
        let b = IdentityKeyPair::generate(&mut rng);
        let c = IdentityKeyPair::generate(&mut rng);
        let ab = safety_number(b"alice", a.public(), b"bob", b.public());
        assert_eq!(ab, safety_number(b"bob", b.public(), b"alice", a.public()));
        assert_eq!(ab.len(), SAFETY_NUMBER_DIGITS);
        assert!(ab.bytes().all(|d| d.is_ascii_digit()));
        assert_ne!(ab, safety_number(b"alice", a.public(), b"bob", c.public()));
        assert_ne!(
            ab,
            safety_number(b"alice", a.public(), b"bobby", b.public())
        );
    }
}
