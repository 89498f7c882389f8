//! Size buckets shared by the SDK (which pads) and the relay (which rejects blob uploads whose
//! size is not a possible padded size).
//!
//! The bucket function is Padmé (Nikitin et al., "Reducing Metadata Leakage from Encrypted Files
//! and Communication with PURBs", PETS 2019) with a minimum bucket of [`MIN_BUCKET`] bytes. Padmé
//! rounds a length `L` with `E = floor(log2 L)` up to a multiple of `2^(E - S)` where
//! `S = floor(log2 E) + 1`, i.e. it keeps only the top `S` bits of `L` free. It leaks
//! `O(log log L)` bits about the length and its overhead is at most `2^-(S-1)` of `L`
//! (≤ 6.25 % for 256 B ≤ L < 64 KiB, ≤ 3.2 % up to 4 GiB, and shrinking from there), see
//! `docs/PROTOCOL.md` §7 for the rationale. Everything here is pure integer arithmetic.
//!
//! A padded buffer always contains at least one padding byte (the ISO/IEC 7816-4 marker `0x80`),
//! so the bucket for a payload of `n` bytes is chosen for `n + 1`.

/// Smallest bucket: every padded message or attachment is at least this long, so all short
/// messages ("ok", "yes", an emoji) look alike.
pub const MIN_BUCKET: u64 = 256;

/// Size in bytes of one plaintext chunk of the attachment stream (§10); the last chunk may be
/// shorter.
pub const ATTACHMENT_CHUNK_LEN: u64 = 64 * 1024;

/// Poly1305 tag appended to every attachment chunk.
pub const ATTACHMENT_TAG_LEN: u64 = 16;

/// The attachment blob starts with this one-byte header (the format version).
pub const ATTACHMENT_HEADER_LEN: u64 = 1;

/// Length of the big-endian `u64` plaintext length that starts the padded attachment plaintext.
pub const ATTACHMENT_LENGTH_PREFIX_LEN: u64 = 8;

/// Largest padded attachment plaintext (64 GiB). Keeps chunk indices far below `u32::MAX`.
pub const MAX_ATTACHMENT_PADDED_LEN: u64 = 1 << 36;

/// Padmé rounding of `len` (no minimum applied). `None` on overflow.
fn padme(len: u64) -> Option<u64> {
    if len < 2 {
        return Some(len);
    }
    let e = u64::from(len.ilog2());
    let s = u64::from(e.ilog2()) + 1;
    let last_bits = e - s;
    let mask = (1u64 << last_bits) - 1;
    Some(len.checked_add(mask)? & !mask)
}

/// The bucket (total padded length) for a payload of `n` bytes: the smallest Padmé size that is
/// at least `max(n + 1, MIN_BUCKET)`. `None` if the result would not fit in a `u64`.
#[must_use]
pub fn padded_len(n: u64) -> Option<u64> {
    padme(n.checked_add(1)?.max(MIN_BUCKET))
}

/// Whether `n` is a possible padded length (a bucket).
#[must_use]
pub fn is_bucket_size(n: u64) -> bool {
    n >= MIN_BUCKET && padme(n) == Some(n)
}

/// Number of chunks an attachment with `padded_len` bytes of padded plaintext is split into.
fn attachment_chunks(padded_len: u64) -> u64 {
    padded_len.div_ceil(ATTACHMENT_CHUNK_LEN)
}

/// The padded plaintext length of an attachment of `plaintext_len` bytes (length prefix +
/// content + padding). `None` if it exceeds [`MAX_ATTACHMENT_PADDED_LEN`].
#[must_use]
pub fn attachment_padded_len(plaintext_len: u64) -> Option<u64> {
    let padded = padded_len(plaintext_len.checked_add(ATTACHMENT_LENGTH_PREFIX_LEN)?)?;
    (padded <= MAX_ATTACHMENT_PADDED_LEN).then_some(padded)
}

/// Size of the encrypted attachment blob for a padded plaintext of `padded_len` bytes: header,
/// the padded plaintext, and one tag per chunk. `None` if `padded_len` is not a bucket or is
/// larger than [`MAX_ATTACHMENT_PADDED_LEN`].
#[must_use]
pub fn attachment_ciphertext_len(padded_len: u64) -> Option<u64> {
    if !is_bucket_size(padded_len) || padded_len > MAX_ATTACHMENT_PADDED_LEN {
        return None;
    }
    // Cannot overflow: padded_len <= 2^36.
    Some(ATTACHMENT_HEADER_LEN + padded_len + ATTACHMENT_TAG_LEN * attachment_chunks(padded_len))
}

/// Whether `n` is the size of some well-formed encrypted attachment blob. The relay rejects
/// uploads for which this is false.
#[must_use]
pub fn is_valid_blob_size(n: u64) -> bool {
    // blob = 1 + B + 16 * ceil(B / CHUNK) is strictly increasing in B, so at most one B fits;
    // with c = ceil(B / CHUNK), n - 1 lies in ((c-1)*CHUNK + 16c, c*(CHUNK + 16)], hence
    // c = ceil((n - 1) / (CHUNK + 16)).
    let Some(body) = n.checked_sub(ATTACHMENT_HEADER_LEN) else {
        return false;
    };
    let chunks = body.div_ceil(ATTACHMENT_CHUNK_LEN + ATTACHMENT_TAG_LEN);
    let Some(padded) = body.checked_sub(chunks * ATTACHMENT_TAG_LEN) else {
        return false;
    };
    attachment_ciphertext_len(padded) == Some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_payloads_share_the_minimum_bucket() {
        for n in 0..MIN_BUCKET {
            assert_eq!(padded_len(n), Some(MIN_BUCKET), "n = {n}");
        }
        assert_eq!(padded_len(MIN_BUCKET), Some(MIN_BUCKET + 16));
    }

    #[test]
    fn known_buckets() {
        // E = 9, S = 4: multiples of 32 between 512 and 1024.
        assert_eq!(padded_len(511), Some(512));
        assert_eq!(padded_len(512), Some(544));
        assert_eq!(padded_len(1000), Some(1024));
        // E = 16, S = 5: multiples of 2048 between 64 KiB and 128 KiB.
        assert_eq!(padded_len(65536), Some(65536 + 2048));
        assert_eq!(padded_len(u64::MAX), None);
        assert_eq!(padded_len(u64::MAX - 1), None);
    }

    #[test]
    fn padded_len_is_a_bucket_and_bounded() {
        let mut n = 0u64;
        while n < (1 << 40) {
            let p = padded_len(n).unwrap_or(0);
            assert!(is_bucket_size(p), "n = {n} p = {p}");
            assert!(p > n);
            // Overhead bound: at most 12 % above n + 1, or the minimum bucket.
            assert!(
                p == MIN_BUCKET || (p - n - 1) * 100 <= (n + 1) * 12,
                "n = {n} p = {p}"
            );
            // Every bucket is a fixed point and the next one up is for p itself.
            assert_eq!(padded_len(p - 1), Some(p));
            n = n * 3 / 2 + 7;
        }
    }

    #[test]
    fn non_buckets_rejected() {
        assert!(!is_bucket_size(0));
        assert!(!is_bucket_size(255));
        assert!(is_bucket_size(256));
        assert!(!is_bucket_size(257));
        assert!(is_bucket_size(272));
        assert!(!is_bucket_size(u64::MAX));
    }

    #[test]
    fn blob_sizes_round_trip() {
        let sizes = [
            0u64,
            1,
            247,
            248,
            65535,
            65536,
            65537,
            1 << 20,
            5 << 20,
            123_456_789,
        ];
        for n in sizes {
            let p = attachment_padded_len(n).unwrap_or(0);
            let c = attachment_ciphertext_len(p).unwrap_or(0);
            assert!(is_valid_blob_size(c), "n = {n}");
            assert!(!is_valid_blob_size(c + 1));
            assert!(!is_valid_blob_size(c - 1));
        }
        assert_eq!(attachment_ciphertext_len(256), Some(1 + 256 + 16));
        assert_eq!(attachment_ciphertext_len(65536), Some(1 + 65536 + 16));
        assert_eq!(
            attachment_ciphertext_len(65536 + 2048),
            Some(1 + 65536 + 2048 + 32)
        );
        assert_eq!(attachment_ciphertext_len(257), None);
        assert!(!is_valid_blob_size(0));
        assert!(!is_valid_blob_size(1));
        assert!(!is_valid_blob_size(u64::MAX));
        assert_eq!(attachment_padded_len(MAX_ATTACHMENT_PADDED_LEN), None);
    }

    #[test]
    fn blob_sizes_exhaustive_small_range() {
        // Exactly the sizes produced by some bucket are valid.
        let mut expected = std::collections::BTreeSet::new();
        let mut b = MIN_BUCKET;
        while b < 300_000 {
            if let Some(c) = attachment_ciphertext_len(b) {
                expected.insert(c);
            }
            b += 1;
        }
        for n in 0..300_000u64 {
            assert_eq!(is_valid_blob_size(n), expected.contains(&n), "n = {n}");
        }
    }
}
