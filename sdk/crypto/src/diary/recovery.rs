//! Recovery codes: 128 random bits plus a 32-bit checksum, shown as 32 Crockford base32
//! characters in 8 groups of 4 (`XXXX-XXXX-…`).

use alloc::string::String;
use alloc::vec::Vec;

use rand_core::CryptoRng;
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use super::DiaryError;

/// Recovery codes generated at setup and on regeneration.
pub const RECOVERY_CODE_COUNT: usize = 10;
/// Random bytes per code (128 bits): HKDF suffices, no password stretching needed.
pub(crate) const ENTROPY_LEN: usize = 16;
const CHECKSUM_LEN: usize = 4;
const CHECKSUM_LABEL: &[u8] = b"Haven_RecoveryCode_v1";
const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
/// Characters of a code without separators.
const CODE_CHARS: usize = 32;

/// One recovery code. Secret: no `Debug`; show it to the user once.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct RecoveryCode {
    entropy: [u8; ENTROPY_LEN],
}

fn checksum(entropy: &[u8; ENTROPY_LEN]) -> [u8; CHECKSUM_LEN] {
    let digest = Sha256::new()
        .chain_update(CHECKSUM_LABEL)
        .chain_update(entropy)
        .finalize();
    let mut c = [0u8; CHECKSUM_LEN];
    c.copy_from_slice(&digest[..CHECKSUM_LEN]);
    c
}

fn decode_char(c: u8) -> Option<u8> {
    let c = match c.to_ascii_uppercase() {
        b'O' => b'0',
        b'I' | b'L' => b'1',
        other => other,
    };
    ALPHABET.iter().position(|&a| a == c).map(|p| p as u8)
}

impl RecoveryCode {
    /// A fresh random code.
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let mut entropy = [0u8; ENTROPY_LEN];
        rng.fill_bytes(&mut entropy);
        Self { entropy }
    }

    /// A code from known entropy (deterministic vectors).
    #[cfg(any(test, feature = "test-vectors"))]
    pub(crate) fn from_entropy(entropy: [u8; ENTROPY_LEN]) -> Self {
        Self { entropy }
    }

    pub(crate) fn entropy(&self) -> &[u8; ENTROPY_LEN] {
        &self.entropy
    }

    /// The text form: Crockford base32 of `entropy || checksum` (160 bits, 5 bits per
    /// character, most significant first), grouped by 4 with `-`.
    #[must_use]
    pub fn to_text(&self) -> Zeroizing<String> {
        let mut bytes = Zeroizing::new([0u8; ENTROPY_LEN + CHECKSUM_LEN]);
        bytes[..ENTROPY_LEN].copy_from_slice(&self.entropy);
        bytes[ENTROPY_LEN..].copy_from_slice(&checksum(&self.entropy));
        let mut out = Zeroizing::new(String::with_capacity(CODE_CHARS + 7));
        for i in 0..CODE_CHARS {
            if i > 0 && i % 4 == 0 {
                out.push('-');
            }
            let mut v = 0u8;
            for b in 0..5 {
                let bit = i * 5 + b;
                let byte = bytes.get(bit / 8).copied().unwrap_or(0);
                v = (v << 1) | ((byte >> (7 - bit % 8)) & 1);
            }
            out.push(char::from(
                ALPHABET.get(usize::from(v)).copied().unwrap_or(b'0'),
            ));
        }
        out
    }

    /// Parses a code typed by the user: case-insensitive, `O`→`0`, `I`/`L`→`1`, spaces and
    /// hyphens ignored; the checksum must match.
    ///
    /// # Errors
    /// [`DiaryError::InvalidRecoveryCode`].
    pub fn parse(text: &str) -> Result<Self, DiaryError> {
        let mut values = Zeroizing::new(Vec::with_capacity(CODE_CHARS));
        for c in text.bytes().filter(|c| !matches!(c, b'-' | b' ')) {
            values.push(decode_char(c).ok_or(DiaryError::InvalidRecoveryCode)?);
            if values.len() > CODE_CHARS {
                return Err(DiaryError::InvalidRecoveryCode);
            }
        }
        if values.len() != CODE_CHARS {
            return Err(DiaryError::InvalidRecoveryCode);
        }
        let mut bytes = Zeroizing::new([0u8; ENTROPY_LEN + CHECKSUM_LEN]);
        for (i, v) in values.iter().enumerate() {
            for b in 0..5 {
                let bit = i * 5 + b;
                if (v >> (4 - b)) & 1 == 1
                    && let Some(byte) = bytes.get_mut(bit / 8)
                {
                    *byte |= 1 << (7 - bit % 8);
                }
            }
        }
        let mut entropy = [0u8; ENTROPY_LEN];
        entropy.copy_from_slice(&bytes[..ENTROPY_LEN]);
        let code = Self { entropy };
        // The checksum is not secret-dependent in a useful way; a plain compare is fine.
        if bytes[ENTROPY_LEN..] != checksum(&code.entropy) {
            return Err(DiaryError::InvalidRecoveryCode);
        }
        Ok(code)
    }
}
