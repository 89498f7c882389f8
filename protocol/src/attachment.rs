//! The attachment pointer's layout (PROTOCOL.md §14): everything a recipient needs to fetch,
//! verify and open an attachment blob (§10, §11.17). It travels only inside end-to-end encrypted
//! messages (§13.1) or diary entries; the relay never sees one.
//!
//! ```text
//! 0x01 | blob_id [16] | key [32] | digest [32] | size u64
//!      | ct_len u8 | content_type [ct_len]            printable ASCII 0x20..0x7e
//!      | flags u8                                      bit 0: file name, bit 1: thumbnail
//!      [ | name_len u16  | file_name [name_len] ]      UTF-8, ≤ 1024 bytes      (bit 0)
//!      [ | thumb_len u32 | thumbnail [thumb_len] ]     ≤ 65536 bytes            (bit 1)
//! ```
//!
//! This module is the layout only (the key is 32 opaque bytes here); the client core wraps it
//! with the attachment key type and the transfers (`haven_client_core::attachments`).

use crate::encoding::Reader;
use crate::padding::attachment_padded_len;

/// Format version, the first byte of a pointer.
pub const POINTER_VERSION: u8 = 0x01;
/// Longest content type (bytes of printable ASCII).
pub const MAX_CONTENT_TYPE_LEN: usize = 255;
/// Longest file name (bytes of UTF-8).
pub const MAX_FILE_NAME_LEN: usize = 1024;
/// Largest inline thumbnail.
pub const MAX_THUMBNAIL_LEN: usize = 64 * 1024;
/// Length of the fixed part: version, blob id, key, digest, size.
pub const FIXED_LEN: usize = 1 + 16 + 32 + 32 + 8;

const FLAG_FILE_NAME: u8 = 0x01;
const FLAG_THUMBNAIL: u8 = 0x02;

/// Why pointer bytes were refused, or a pointer could not be encoded. One variant: the bytes
/// come from a peer, and which check failed helps nobody.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("malformed attachment pointer")]
pub struct PointerFormatError;

/// The fields of a pointer. Secret (the key opens the attachment): `Debug` shows only the blob
/// id, the size and the thumbnail's length.
#[derive(Clone, PartialEq, Eq)]
pub struct PointerFields {
    /// The blob's id on the relay.
    pub blob_id: [u8; 16],
    /// The attachment key `K` (§10).
    pub key: [u8; 32],
    /// SHA-256 of the whole blob.
    pub digest: [u8; 32],
    /// Plaintext length; `attachment_padded_len(size)` must exist.
    pub size: u64,
    /// MIME type (printable ASCII, ≤ [`MAX_CONTENT_TYPE_LEN`] bytes; may be empty).
    pub content_type: String,
    /// File name (≤ [`MAX_FILE_NAME_LEN`] bytes of UTF-8).
    pub file_name: Option<String>,
    /// A small preview image (≤ [`MAX_THUMBNAIL_LEN`] bytes).
    pub thumbnail: Option<Vec<u8>>,
}

impl core::fmt::Debug for PointerFields {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PointerFields")
            .field("blob_id", &hex::encode(self.blob_id))
            .field("size", &self.size)
            .field("thumbnail", &self.thumbnail.as_ref().map(Vec::len))
            .finish_non_exhaustive()
    }
}

/// Whether `t` may be a pointer's content type: printable ASCII, at most
/// [`MAX_CONTENT_TYPE_LEN`] bytes.
#[must_use]
pub fn valid_content_type(t: &str) -> bool {
    t.len() <= MAX_CONTENT_TYPE_LEN && t.bytes().all(|b| (0x20..0x7f).contains(&b))
}

/// The encoded length of a pointer with these fields (without checking them).
#[must_use]
pub fn encoded_len(p: &PointerFields) -> usize {
    FIXED_LEN
        + 1
        + p.content_type.len()
        + 1
        + p.file_name.as_ref().map_or(0, |n| 2 + n.len())
        + p.thumbnail.as_ref().map_or(0, |t| 4 + t.len())
}

/// Appends the encoding of `p` to `out` (a caller holding secrets passes a buffer it wipes).
///
/// # Errors
/// [`PointerFormatError`] if a field is over its limit, the content type is not printable
/// ASCII, or the size is beyond the attachment format; nothing is appended then.
pub fn encode_into(p: &PointerFields, out: &mut Vec<u8>) -> Result<(), PointerFormatError> {
    if !valid_content_type(&p.content_type)
        || attachment_padded_len(p.size).is_none()
        || p.file_name
            .as_ref()
            .is_some_and(|n| n.len() > MAX_FILE_NAME_LEN)
        || p.thumbnail
            .as_ref()
            .is_some_and(|t| t.len() > MAX_THUMBNAIL_LEN)
    {
        return Err(PointerFormatError);
    }
    out.reserve(encoded_len(p));
    out.push(POINTER_VERSION);
    out.extend_from_slice(&p.blob_id);
    out.extend_from_slice(&p.key);
    out.extend_from_slice(&p.digest);
    out.extend_from_slice(&p.size.to_be_bytes());
    // Checked above: at most 255 bytes.
    out.push(u8::try_from(p.content_type.len()).map_err(|_| PointerFormatError)?);
    out.extend_from_slice(p.content_type.as_bytes());
    let mut flags = 0u8;
    if p.file_name.is_some() {
        flags |= FLAG_FILE_NAME;
    }
    if p.thumbnail.is_some() {
        flags |= FLAG_THUMBNAIL;
    }
    out.push(flags);
    if let Some(name) = &p.file_name {
        let len = u16::try_from(name.len()).map_err(|_| PointerFormatError)?;
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(name.as_bytes());
    }
    if let Some(t) = &p.thumbnail {
        let len = u32::try_from(t.len()).map_err(|_| PointerFormatError)?;
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(t);
    }
    Ok(())
}

/// Decodes a pointer. Every length is checked before it is read; a wrong version, unknown
/// flags, an over-long field, invalid UTF-8 or ASCII, a size beyond the format and trailing
/// bytes are refused.
///
/// # Errors
/// [`PointerFormatError`].
pub fn decode(bytes: &[u8]) -> Result<PointerFields, PointerFormatError> {
    decode_inner(bytes).ok_or(PointerFormatError)
}

fn decode_inner(bytes: &[u8]) -> Option<PointerFields> {
    let mut r = Reader::new(bytes);
    if r.u8()? != POINTER_VERSION {
        return None;
    }
    let blob_id = r.array::<16>()?;
    let key = r.array::<32>()?;
    let digest = r.array::<32>()?;
    let size = r.u64()?;
    attachment_padded_len(size)?;
    let ct_len = usize::from(r.u8()?);
    let content_type = core::str::from_utf8(r.take(ct_len)?).ok()?.to_owned();
    if !valid_content_type(&content_type) {
        return None;
    }
    let flags = r.u8()?;
    if flags & !(FLAG_FILE_NAME | FLAG_THUMBNAIL) != 0 {
        return None;
    }
    let file_name = if flags & FLAG_FILE_NAME != 0 {
        let len = usize::from(r.u16()?);
        if len > MAX_FILE_NAME_LEN {
            return None;
        }
        Some(core::str::from_utf8(r.take(len)?).ok()?.to_owned())
    } else {
        None
    };
    let thumbnail = if flags & FLAG_THUMBNAIL != 0 {
        Some(r.bytes_u32(MAX_THUMBNAIL_LEN)?.to_vec())
    } else {
        None
    };
    r.finish()?;
    Some(PointerFields {
        blob_id,
        key,
        digest,
        size,
        content_type,
        file_name,
        thumbnail,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn sample() -> PointerFields {
        PointerFields {
            blob_id: [1; 16],
            key: [2; 32],
            digest: [3; 32],
            size: 1000,
            content_type: "image/png".into(),
            file_name: Some("été.png".into()),
            thumbnail: Some(vec![9; 300]),
        }
    }

    fn encode(p: &PointerFields) -> Result<Vec<u8>, PointerFormatError> {
        let mut out = Vec::new();
        encode_into(p, &mut out).map(|()| out)
    }

    #[test]
    fn round_trip_and_layout() {
        let p = sample();
        let bytes = encode(&p).unwrap();
        assert_eq!(bytes.len(), encoded_len(&p));
        assert_eq!(bytes[0], POINTER_VERSION);
        assert_eq!(&bytes[1..17], &[1; 16]);
        assert_eq!(&bytes[81..89], &1000u64.to_be_bytes());
        assert_eq!(bytes[89], 9);
        assert_eq!(bytes[99], 0x03);
        assert_eq!(decode(&bytes).unwrap(), p);

        let bare = PointerFields {
            content_type: String::new(),
            file_name: None,
            thumbnail: None,
            ..sample()
        };
        let bytes = encode(&bare).unwrap();
        assert_eq!(bytes.len(), FIXED_LEN + 2);
        assert_eq!(decode(&bytes).unwrap(), bare);
        assert!(!format!("{bare:?}").contains("0202"));
    }

    #[test]
    fn refuses_bad_input() {
        let bytes = encode(&sample()).unwrap();
        for cut in 0..bytes.len() {
            assert_eq!(decode(&bytes[..cut]), Err(PointerFormatError), "{cut}");
        }
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert!(decode(&trailing).is_err());
        let mut version = bytes.clone();
        version[0] = 2;
        assert!(decode(&version).is_err());
        let mut flags = bytes.clone();
        flags[99] |= 0x04;
        assert!(decode(&flags).is_err());
        let mut ascii = bytes.clone();
        ascii[90] = 0x7f;
        assert!(decode(&ascii).is_err());
        let mut size = bytes;
        size[81..89].copy_from_slice(&u64::MAX.to_be_bytes());
        assert!(decode(&size).is_err());

        for bad in [
            PointerFields {
                content_type: "a\nb".into(),
                ..sample()
            },
            PointerFields {
                content_type: "x".repeat(256),
                ..sample()
            },
            PointerFields {
                file_name: Some("n".repeat(MAX_FILE_NAME_LEN + 1)),
                ..sample()
            },
            PointerFields {
                thumbnail: Some(vec![0; MAX_THUMBNAIL_LEN + 1]),
                ..sample()
            },
            PointerFields {
                size: u64::MAX,
                ..sample()
            },
        ] {
            let mut out = Vec::new();
            assert_eq!(encode_into(&bad, &mut out), Err(PointerFormatError));
            assert!(out.is_empty());
        }
    }
}
