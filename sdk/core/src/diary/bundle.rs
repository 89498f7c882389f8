//! The diary's key bundle on the relay (PROTOCOL §11.16.1): the reserved vault item that holds
//! the wrapped key bundle (§9.3) and the diary's collection id, how it is read and written with
//! optimistic concurrency, and the shorter record a local-only diary keeps instead.
//!
//! ```text
//! body = 0x01 (format) || diary_collection_id (16) || u32be(len(bundle)) || bundle || 0x00 …
//!        zero-filled to padded_len(1 + 16 + 4 + len(bundle)) + 41 bytes   (§7 padded_len)
//! meta = 297 zero bytes (MIN_ITEM_LEN)
//! ```

use haven_protocol::api::vault::{ItemBody, ItemWriteRequest, ItemWritten};
use haven_protocol::padding::padded_len;
use haven_protocol::vault::{ITEM_OVERHEAD, MIN_ITEM_LEN};
use haven_sdk::diary::{DiaryKeys, WrappedKeyBundle};

use super::{HttpMethod, LocalDiaryError, VaultAnswer, VaultCall, b64, b64_encode, item_path};

/// Collection id of the reserved key-bundle item: the collection the relay keeps no history
/// for (PROTOCOL §11.16), so a replaced bundle is not kept.
pub const BUNDLE_COLLECTION: [u8; 16] = haven_protocol::vault::UNVERSIONED_COLLECTION;
/// Item id of the reserved key-bundle item.
pub const BUNDLE_ITEM: [u8; 16] = [0; 16];
/// Format byte of the reserved bundle item's body.
pub const BUNDLE_ITEM_FORMAT: u8 = 0x01;

/// The bundle record without the item's zero filler:
/// `0x01 || collection_id (16) || u32be(len) || bundle`. A local-only diary keeps this (no
/// secret in clear); [`decode_bundle_item`] reads it too.
#[must_use]
pub fn encode_bundle_record(bundle: &WrappedKeyBundle, collection: &[u8; 16]) -> Vec<u8> {
    let bytes = bundle.to_bytes();
    let mut out = Vec::with_capacity(bytes.len() + 512);
    out.push(BUNDLE_ITEM_FORMAT);
    out.extend_from_slice(collection);
    // A bundle is at most a few kilobytes.
    out.extend_from_slice(&u32::try_from(bytes.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(&bytes);
    out
}

/// Encodes the reserved bundle item's body: [`encode_bundle_record`] zero-filled to the
/// smallest vault item length (a padding bucket plus 41) that holds it.
#[must_use]
pub fn encode_bundle_item(bundle: &WrappedKeyBundle, collection: &[u8; 16]) -> Vec<u8> {
    let mut out = encode_bundle_record(bundle, collection);
    let total = padded_len(out.len() as u64).map_or(out.len() as u64, |b| b + ITEM_OVERHEAD);
    out.resize(usize::try_from(total).unwrap_or(out.len()), 0);
    out
}

/// Decodes the reserved bundle item's body, or a record (strict: the filler must be zero).
///
/// # Errors
/// [`LocalDiaryError::BundleMalformed`].
pub fn decode_bundle_item(body: &[u8]) -> Result<(WrappedKeyBundle, [u8; 16]), LocalDiaryError> {
    let bad = || LocalDiaryError::BundleMalformed;
    let (&format, rest) = body.split_first().ok_or_else(bad)?;
    if format != BUNDLE_ITEM_FORMAT {
        return Err(bad());
    }
    let (collection, rest) = rest.split_first_chunk::<16>().ok_or_else(bad)?;
    let (len, rest) = rest.split_first_chunk::<4>().ok_or_else(bad)?;
    let len = usize::try_from(u32::from_be_bytes(*len)).map_err(|_| bad())?;
    let (bundle, filler) = rest.split_at_checked(len).ok_or_else(bad)?;
    if filler.iter().any(|b| *b != 0) {
        return Err(bad());
    }
    let bundle = WrappedKeyBundle::from_bytes(bundle).map_err(|_| bad())?;
    Ok((bundle, *collection))
}

/// The bundle as this device knows it: bundle, collection id, revision of the reserved item.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredBundle {
    /// The wrapped key bundle (no secret in clear).
    pub bundle: WrappedKeyBundle,
    /// The diary's collection id.
    pub collection: [u8; 16],
    /// The reserved item's revision on the relay.
    pub revision: u64,
}

impl std::fmt::Debug for StoredBundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredBundle")
            .field("collection", &hex::encode(self.collection))
            .field("revision", &self.revision)
            .finish_non_exhaustive()
    }
}

/// `GET` of the reserved bundle item (a new device reads it after logging in).
#[must_use]
pub fn fetch_call() -> VaultCall {
    VaultCall {
        method: HttpMethod::Get,
        path: item_path(&BUNDLE_COLLECTION, &BUNDLE_ITEM),
        body: None,
    }
}

/// The answer to [`fetch_call`].
///
/// # Errors
/// [`LocalDiaryError::NotInitialised`] (no bundle item, or a deleted one),
/// [`LocalDiaryError::BundleMalformed`], [`LocalDiaryError::Refused`] for other refusals.
pub fn read_fetched(answer: VaultAnswer) -> Result<StoredBundle, LocalDiaryError> {
    if let VaultAnswer::Refused { code, .. } = &answer
        && code == "item_not_found"
    {
        return Err(LocalDiaryError::NotInitialised);
    }
    let item: ItemBody = answer.parse("bundle item")?;
    let body = item.body.ok_or(LocalDiaryError::NotInitialised)?;
    let (bundle, collection) = decode_bundle_item(&b64(&body)?)?;
    Ok(StoredBundle {
        bundle,
        collection,
        revision: item.revision,
    })
}

/// A write of the reserved bundle item with optimistic concurrency: expected revision 0
/// creates the diary; any other is the revision this device last read (a password change or
/// recovery), so a bundle changed elsewhere first is reported instead of overwritten.
#[derive(Clone)]
pub struct BundleUpload {
    bundle: WrappedKeyBundle,
    collection: [u8; 16],
    expected_revision: u64,
    /// The keys of the epoch this upload starts (a password change or new codes).
    keys: Option<DiaryKeys>,
}

impl std::fmt::Debug for BundleUpload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BundleUpload")
            .field("expected_revision", &self.expected_revision)
            .finish_non_exhaustive()
    }
}

impl BundleUpload {
    pub(crate) fn new(
        bundle: WrappedKeyBundle,
        collection: [u8; 16],
        expected_revision: u64,
    ) -> Self {
        Self {
            bundle,
            collection,
            expected_revision,
            keys: None,
        }
    }

    /// The upload starts the key epoch of `keys`, used once it is stored.
    pub(crate) fn with_keys(mut self, keys: DiaryKeys) -> Self {
        self.keys = Some(keys);
        self
    }

    /// The keys of the epoch this upload starts, if any.
    pub(crate) fn keys(&self) -> Option<&DiaryKeys> {
        self.keys.as_ref()
    }

    /// The `PUT` of the reserved item.
    #[must_use]
    pub fn call(&self) -> VaultCall {
        let body = encode_bundle_item(&self.bundle, &self.collection);
        let meta = vec![0u8; usize::try_from(MIN_ITEM_LEN).unwrap_or(297)];
        VaultCall {
            method: HttpMethod::Put,
            path: item_path(&BUNDLE_COLLECTION, &BUNDLE_ITEM),
            body: Some(ItemWriteRequest {
                expected_revision: self.expected_revision,
                body: b64_encode(&body),
                meta: b64_encode(&meta),
            }),
        }
    }

    /// The answer to [`call`](Self::call): the bundle as stored now.
    ///
    /// # Errors
    /// [`LocalDiaryError::AlreadyInitialised`] (a 409 creating),
    /// [`LocalDiaryError::BundleConflict`] (a 409 replacing), [`LocalDiaryError::Refused`].
    pub fn read(&self, answer: VaultAnswer) -> Result<StoredBundle, LocalDiaryError> {
        if let VaultAnswer::Refused { status: 409, .. } = answer {
            return Err(if self.expected_revision == 0 {
                LocalDiaryError::AlreadyInitialised
            } else {
                LocalDiaryError::BundleConflict
            });
        }
        let written: ItemWritten = answer.parse("bundle write")?;
        Ok(StoredBundle {
            bundle: self.bundle.clone(),
            collection: self.collection,
            revision: written.revision,
        })
    }
}
