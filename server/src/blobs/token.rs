//! Signed, expiring, single-purpose transfer tokens for the local backend (PROTOCOL.md §11.17).
//!
//! With S3 the bucket checks presigned URLs; with the local backend the relay itself serves the
//! transfer routes, which take no access token (a recipient downloading an attachment is not the
//! uploader) but a token naming exactly one blob, one purpose and, for uploads, one part and its
//! length, valid until `expires_at`:
//!
//! ```text
//! payload = 0x01 || purpose u8 || blob_id 16 || part u64 || len u64 || expires_at u64   (42 bytes)
//! mac     = HMAC-SHA256(token_key, "haven/blob-token/v1" || 0x00 || payload)
//! token   = base64url_nopad(payload || mac)                                          (99 chars)
//! ```

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use subtle::ConstantTimeEq as _;

use crate::ids::Id;
use crate::secrets::Key32;

const VERSION: u8 = 0x01;
const PAYLOAD_LEN: usize = 42;
const MAC_LEN: usize = 32;
const LABEL: &[u8] = b"haven/blob-token/v1";

/// What a token allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenPurpose {
    /// `PUT` of one part of a pending blob.
    UploadPart,
    /// `GET` of a complete blob.
    Download,
}

impl TokenPurpose {
    fn code(self) -> u8 {
        match self {
            Self::UploadPart => 1,
            Self::Download => 2,
        }
    }
}

/// The claims of a transfer token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlobToken {
    /// What it allows.
    pub purpose: TokenPurpose,
    /// The blob.
    pub blob: Id,
    /// The part (uploads; 0 for downloads).
    pub part: u64,
    /// Exact length of the part (uploads) or of the blob (downloads).
    pub len: u64,
    /// Unix seconds after which it is refused.
    pub expires_at: u64,
}

/// Why a token was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Malformed, tampered, signed by another key, or for another blob, part or purpose.
    #[error("invalid transfer token")]
    Invalid,
    /// Well-formed and authentic but past its expiry.
    #[error("transfer token expired")]
    Expired,
}

fn payload(t: &BlobToken) -> [u8; PAYLOAD_LEN] {
    let mut p = [0u8; PAYLOAD_LEN];
    p[0] = VERSION;
    p[1] = t.purpose.code();
    p[2..18].copy_from_slice(t.blob.as_bytes());
    p[18..26].copy_from_slice(&t.part.to_be_bytes());
    p[26..34].copy_from_slice(&t.len.to_be_bytes());
    p[34..42].copy_from_slice(&t.expires_at.to_be_bytes());
    p
}

/// Issues a token for `claims` under `key`.
pub fn issue(key: &Key32, claims: &BlobToken) -> String {
    let p = payload(claims);
    let mac = key.hmac(LABEL, &p);
    let mut out = Vec::with_capacity(PAYLOAD_LEN + MAC_LEN);
    out.extend_from_slice(&p);
    out.extend_from_slice(&mac);
    URL_SAFE_NO_PAD.encode(out)
}

/// Verifies `text` as a token for exactly (`purpose`, `blob`, `part`) at time `now`; returns its
/// claims. The MAC is checked (in constant time) before anything else is believed.
///
/// # Errors
/// [`TokenError::Invalid`] for anything but an authentic token for this blob, part and purpose;
/// [`TokenError::Expired`] for an authentic one past its expiry.
pub fn verify(
    key: &Key32,
    text: &str,
    purpose: TokenPurpose,
    blob: &Id,
    part: u64,
    now: u64,
) -> Result<BlobToken, TokenError> {
    if text.len() > 2 * (PAYLOAD_LEN + MAC_LEN) {
        return Err(TokenError::Invalid);
    }
    let raw = URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|_| TokenError::Invalid)?;
    let (p, mac) = raw
        .split_at_checked(PAYLOAD_LEN)
        .ok_or(TokenError::Invalid)?;
    if mac.len() != MAC_LEN {
        return Err(TokenError::Invalid);
    }
    let expected = key.hmac(LABEL, p);
    if !bool::from(expected.ct_eq(mac)) {
        return Err(TokenError::Invalid);
    }
    let u64_at = |at: usize| -> Result<u64, TokenError> {
        p.get(at..at + 8)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map(u64::from_be_bytes)
            .ok_or(TokenError::Invalid)
    };
    let claims = BlobToken {
        purpose,
        blob: Id::from_slice(p.get(2..18).ok_or(TokenError::Invalid)?)
            .map_err(|_| TokenError::Invalid)?,
        part: u64_at(18)?,
        len: u64_at(26)?,
        expires_at: u64_at(34)?,
    };
    if p.first() != Some(&VERSION)
        || p.get(1) != Some(&purpose.code())
        || claims.blob != *blob
        || claims.part != part
    {
        return Err(TokenError::Invalid);
    }
    if now >= claims.expires_at {
        return Err(TokenError::Expired);
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn claims() -> BlobToken {
        BlobToken {
            purpose: TokenPurpose::UploadPart,
            blob: Id::from([7u8; 16]),
            part: 3,
            len: 1 << 20,
            expires_at: 1_000,
        }
    }

    #[test]
    fn round_trip_and_refusals() {
        let key = Key32::from_bytes([1; 32]);
        let c = claims();
        let t = issue(&key, &c);
        assert_eq!(t.len(), 99);
        assert_eq!(
            verify(&key, &t, TokenPurpose::UploadPart, &c.blob, 3, 999),
            Ok(c)
        );
        let refused = |k: &Key32, t: &str, p, b: &Id, part, now| verify(k, t, p, b, part, now);
        assert_eq!(
            refused(&key, &t, TokenPurpose::UploadPart, &c.blob, 3, 1_000),
            Err(TokenError::Expired)
        );
        assert_eq!(
            refused(&key, &t, TokenPurpose::Download, &c.blob, 3, 0),
            Err(TokenError::Invalid)
        );
        assert_eq!(
            refused(&key, &t, TokenPurpose::UploadPart, &c.blob, 4, 0),
            Err(TokenError::Invalid)
        );
        let other = Id::from([8u8; 16]);
        assert_eq!(
            refused(&key, &t, TokenPurpose::UploadPart, &other, 3, 0),
            Err(TokenError::Invalid)
        );
        let other_key = Key32::from_bytes([2; 32]);
        assert_eq!(
            refused(&other_key, &t, TokenPurpose::UploadPart, &c.blob, 3, 0),
            Err(TokenError::Invalid)
        );
        // Every flipped character is refused (a changed expiry most of all).
        for i in 0..t.len() {
            let mut bytes = t.clone().into_bytes();
            bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
            let tampered = String::from_utf8(bytes).unwrap();
            assert!(
                refused(&key, &tampered, TokenPurpose::UploadPart, &c.blob, 3, 0).is_err(),
                "position {i}"
            );
        }
        for junk in ["", "x", "!!!!", &"A".repeat(500)] {
            assert_eq!(
                refused(&key, junk, TokenPurpose::UploadPart, &c.blob, 3, 0),
                Err(TokenError::Invalid)
            );
        }
    }
}
