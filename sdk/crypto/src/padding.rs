//! Message padding: ISO/IEC 7816-4 (`0x80` then zeros) up to a Padmé bucket.
//!
//! The bucket function lives in [`haven_protocol::padding`] so the relay can validate blob sizes;
//! this module adds and removes the padding bytes. See `docs/PROTOCOL.md` §7.

use alloc::vec::Vec;

pub use haven_protocol::padding::{MIN_BUCKET, is_bucket_size, padded_len};

/// Errors from [`pad`] and [`unpad`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PaddingError {
    /// The payload is too large to be padded (its bucket would not fit in a `u64`/`usize`).
    #[error("payload of {0} bytes is too large to pad")]
    TooLarge(usize),
    /// The padded buffer's length is not a bucket size.
    #[error("padded length {0} is not a bucket size")]
    NotABucket(usize),
    /// The padding is not `0x80` followed by zeros (no marker, or a non-zero byte after it).
    #[error("malformed padding")]
    Malformed,
}

/// Pads `payload` to its bucket: `payload || 0x80 || 0x00 * k`.
///
/// # Errors
/// [`PaddingError::TooLarge`] if the bucket does not fit in memory addresses.
pub fn pad(payload: &[u8]) -> Result<Vec<u8>, PaddingError> {
    let too_large = PaddingError::TooLarge(payload.len());
    let n = u64::try_from(payload.len()).map_err(|_| too_large)?;
    let total = padded_len(n).ok_or(too_large)?;
    let total = usize::try_from(total).map_err(|_| too_large)?;
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(payload);
    out.push(0x80);
    out.resize(total, 0);
    Ok(out)
}

/// Removes the padding added by [`pad`], returning the payload.
///
/// The scan from the end reads every padding byte and stops at the marker, so its running time
/// reveals the padding length, which the payload length (the result) reveals anyway; payload
/// bytes are never inspected.
///
/// # Errors
/// [`PaddingError::NotABucket`] if the length is not a bucket; [`PaddingError::Malformed`] if
/// the buffer does not end in `0x80 || 0x00*`.
pub fn unpad(padded: &[u8]) -> Result<&[u8], PaddingError> {
    let len = u64::try_from(padded.len()).map_err(|_| PaddingError::NotABucket(padded.len()))?;
    if !is_bucket_size(len) {
        return Err(PaddingError::NotABucket(padded.len()));
    }
    let marker = padded
        .iter()
        .rposition(|&b| b != 0)
        .ok_or(PaddingError::Malformed)?;
    match padded.get(marker) {
        Some(0x80) => padded.get(..marker).ok_or(PaddingError::Malformed),
        _ => Err(PaddingError::Malformed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trip_edges() {
        for n in [0usize, 1, 254, 255, 256, 257, 1000, 70_000] {
            let payload: Vec<u8> = (0..n).map(|i| (i % 251) as u8).collect();
            let padded = pad(&payload).unwrap();
            assert!(is_bucket_size(padded.len() as u64));
            assert_eq!(unpad(&padded).unwrap(), &payload[..]);
        }
    }

    #[test]
    fn payload_ending_in_marker_and_zeros_survives() {
        let payload = [1u8, 0x80, 0, 0, 0x80, 0];
        let padded = pad(&payload).unwrap();
        assert_eq!(unpad(&padded).unwrap(), &payload);
    }

    #[test]
    fn malformed_rejected() {
        assert_eq!(unpad(&[]), Err(PaddingError::NotABucket(0)));
        assert_eq!(unpad(&[0u8; 257]), Err(PaddingError::NotABucket(257)));
        assert_eq!(unpad(&[0u8; 256]), Err(PaddingError::Malformed));
        let mut p = pad(b"hi").unwrap();
        *p.last_mut().unwrap() = 1;
        assert_eq!(unpad(&p), Err(PaddingError::Malformed));
        let mut p = pad(b"hi").unwrap();
        p[2] = 0x81;
        assert_eq!(unpad(&p), Err(PaddingError::Malformed));
        let mut p = pad(b"hi").unwrap();
        p.truncate(255);
        assert_eq!(unpad(&p), Err(PaddingError::NotABucket(255)));
    }

    proptest! {
        #[test]
        fn round_trip(payload in proptest::collection::vec(any::<u8>(), 0..5000)) {
            let padded = pad(&payload).unwrap();
            prop_assert_eq!(unpad(&padded).unwrap(), &payload[..]);
        }

        #[test]
        fn unpad_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
            let _ = unpad(&bytes);
        }
    }
}
