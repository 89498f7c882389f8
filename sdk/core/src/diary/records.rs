//! The diary's rows in the client store (PROTOCOL §11.16.1, local state): an item as the relay
//! has it, and a pending local edit sealed for the reserved local revision 0.
//!
//! ```text
//! item    = revision u64 || deleted u8 || u32be(len(body)) || body || meta   (blobs empty for a tombstone)
//! pending = u32be(len(body)) || body || meta
//! ```

use haven_sdk::diary::{RemoteItem, SealedEntry};

use super::LocalDiaryError;

fn len_prefix(len: usize) -> [u8; 4] {
    u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes()
}

/// An item row.
pub(crate) fn encode_record(revision: u64, deleted: bool, sealed: Option<&SealedEntry>) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&revision.to_be_bytes());
    out.push(u8::from(deleted));
    match sealed {
        Some(s) => {
            out.extend_from_slice(&len_prefix(s.body.len()));
            out.extend_from_slice(&s.body);
            out.extend_from_slice(&s.meta);
        }
        None => out.extend_from_slice(&0u32.to_be_bytes()),
    }
    out
}

/// Reads an item row of item `id`.
pub(crate) fn decode_record(id: [u8; 16], bytes: &[u8]) -> Result<RemoteItem, LocalDiaryError> {
    let bad = || LocalDiaryError::CorruptState;
    let (revision, rest) = bytes.split_first_chunk::<8>().ok_or_else(bad)?;
    let (&deleted, rest) = rest.split_first().ok_or_else(bad)?;
    let (len, rest) = rest.split_first_chunk::<4>().ok_or_else(bad)?;
    let len = usize::try_from(u32::from_be_bytes(*len)).map_err(|_| bad())?;
    let (body, meta) = rest.split_at_checked(len).ok_or_else(bad)?;
    let deleted = deleted != 0;
    Ok(RemoteItem {
        item_id: id,
        revision: u64::from_be_bytes(*revision),
        deleted,
        body: (!deleted).then(|| body.to_vec()),
        meta: (!deleted).then(|| meta.to_vec()),
    })
}

/// A pending row.
pub(crate) fn encode_sealed(s: &SealedEntry) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + s.body.len() + s.meta.len());
    out.extend_from_slice(&len_prefix(s.body.len()));
    out.extend_from_slice(&s.body);
    out.extend_from_slice(&s.meta);
    out
}

/// Reads a pending row.
pub(crate) fn decode_sealed(bytes: &[u8]) -> Result<SealedEntry, LocalDiaryError> {
    let bad = || LocalDiaryError::CorruptState;
    let (len, rest) = bytes.split_first_chunk::<4>().ok_or_else(bad)?;
    let len = usize::try_from(u32::from_be_bytes(*len)).map_err(|_| bad())?;
    let (body, meta) = rest.split_at_checked(len).ok_or_else(bad)?;
    Ok(SealedEntry {
        body: body.to_vec(),
        meta: meta.to_vec(),
    })
}
