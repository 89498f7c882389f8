//! Size rules of vault items (`docs/PROTOCOL.md` §11.16), shared by the relay (which rejects
//! sizes that cannot come from an honest client) and the SDK (which produces them).
//!
//! A vault item's body and metadata are each one diary item ciphertext (§9):
//! `version (1) || nonce (24) || XAEAD(pad(plaintext))` where the AEAD adds a 16-byte tag, so
//! the length of an honest blob is always a padding bucket (§7) plus [`ITEM_OVERHEAD`] bytes.

use crate::padding::is_bucket_size;

/// Bytes an item ciphertext adds around its padded plaintext: version byte, 24-byte XChaCha20
/// nonce, 16-byte Poly1305 tag.
pub const ITEM_OVERHEAD: u64 = 1 + 24 + 16;

/// Collection id whose items keep no history: each write replaces the item's previous revisions
/// (`docs/PROTOCOL.md` §11.16). The diary's key bundle lives there (§11.16.1), so the relay does
/// not keep a replaced password's or recovery code's wrap.
pub const UNVERSIONED_COLLECTION: [u8; 16] = [0; 16];

/// Smallest possible item ciphertext (a 256-byte bucket plus the overhead).
pub const MIN_ITEM_LEN: u64 = crate::padding::MIN_BUCKET + ITEM_OVERHEAD;

/// Whether `len` is a possible length of an item ciphertext: a padding bucket plus
/// [`ITEM_OVERHEAD`].
#[must_use]
pub fn is_item_len(len: u64) -> bool {
    len.checked_sub(ITEM_OVERHEAD).is_some_and(is_bucket_size)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::padding::padded_len;

    #[test]
    fn item_lengths_are_buckets_plus_overhead() {
        assert!(!is_item_len(0));
        assert!(!is_item_len(ITEM_OVERHEAD));
        assert!(!is_item_len(256));
        assert!(is_item_len(MIN_ITEM_LEN));
        assert!(!is_item_len(MIN_ITEM_LEN + 1));
        for n in [0u64, 255, 256, 511, 512, 4000, 65_536, 1 << 20] {
            let Some(b) = padded_len(n) else { continue };
            assert!(is_item_len(b + ITEM_OVERHEAD), "{n}");
            assert!(!is_item_len(b + ITEM_OVERHEAD - 1), "{n}");
        }
        assert!(!is_item_len(u64::MAX));
    }
}
