//! Diary entries (`docs/PROTOCOL.md` §9.5): the versioned, length-checked plaintext encoding of
//! an entry's metadata (what a list view needs) and body, and their encryption as the two blobs
//! of one vault item revision.
//!
//! Both blobs are item ciphertexts (§9) under the same collection, item id and revision, so a
//! blob moved to another item or revision fails to decrypt. Inside, a kind byte tells metadata
//! from body (swapping the two is detected), and the metadata carries the SHA-256 of the body
//! ciphertext, so a body from another write of the same revision cannot be paired with it.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use rand_core::CryptoRng;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use super::{DiaryError, DiaryKeys};
use haven_protocol::encoding::{Reader, put_bytes_u32};

/// Version byte of both entry plaintexts.
pub const ENTRY_VERSION: u8 = 0x01;
/// Kind byte of the metadata plaintext.
pub const KIND_META: u8 = 0x01;
/// Kind byte of the body plaintext.
pub const KIND_BODY: u8 = 0x02;
/// Longest title in bytes (UTF-8).
pub const MAX_TITLE_LEN: usize = 1024;
/// Longest mood label in bytes.
pub const MAX_MOOD_LEN: usize = 64;
/// Longest tag in bytes.
pub const MAX_TAG_LEN: usize = 64;
/// Most tags per entry.
pub const MAX_TAGS: usize = 32;
/// Longest body text in bytes (its ciphertext stays below the relay's default 1 MiB limit).
pub const MAX_BODY_LEN: usize = 512 * 1024;
/// Most attachment references per entry.
pub const MAX_ATTACHMENTS: usize = 64;

const DIGEST_LEN: usize = 32;

/// Errors from encoding, decoding, sealing and opening entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EntryError {
    /// The item ciphertext did not open (tampered, moved to another item, collection or
    /// revision, or the wrong key).
    #[error(transparent)]
    Diary(#[from] DiaryError),
    /// The plaintext is not a well-formed entry encoding.
    #[error("malformed diary entry")]
    Malformed,
    /// Unknown entry encoding version.
    #[error("unsupported entry version {0}")]
    UnsupportedVersion(u8),
    /// A metadata blob was found where a body was expected, or the reverse.
    #[error("wrong entry blob kind {found}, expected {expected}")]
    WrongKind {
        /// The kind expected.
        expected: u8,
        /// The kind found.
        found: u8,
    },
    /// A field is longer than its limit.
    #[error("{field} of {len} bytes is over its limit")]
    FieldTooLong {
        /// Which field.
        field: &'static str,
        /// Its length.
        len: usize,
    },
    /// Too many tags or attachments.
    #[error("{count} {field} is over the limit")]
    TooMany {
        /// Which list.
        field: &'static str,
        /// Its length.
        count: usize,
    },
    /// The metadata does not belong to this body (a body from another write was paired with it).
    #[error("body does not match the metadata")]
    BodyMismatch,
}

/// A reference to an encrypted attachment (§10): where the blob is and the key to open it.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct AttachmentRef {
    /// The blob's id in the blob store.
    pub blob_id: [u8; 16],
    /// The attachment key (secret).
    pub key: [u8; 32],
    /// Plaintext length in bytes.
    pub plaintext_len: u64,
}

impl fmt::Debug for AttachmentRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AttachmentRef")
            .field("plaintext_len", &self.plaintext_len)
            .finish_non_exhaustive()
    }
}

/// A diary entry as the user sees it. Times are Unix milliseconds set by the device (the relay
/// never sees them). `Debug` shows only sizes, never the text.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Entry {
    /// Title.
    pub title: String,
    /// Body text.
    pub body: String,
    /// Mood label chosen by the app (e.g. `"calm"`), if any.
    pub mood: Option<String>,
    /// Tags.
    pub tags: Vec<String>,
    /// Creation time, Unix ms.
    pub created_ms: u64,
    /// Last edit time, Unix ms.
    pub updated_ms: u64,
    /// Attachments.
    pub attachments: Vec<AttachmentRef>,
}

impl fmt::Debug for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Entry")
            .field("title_len", &self.title.len())
            .field("body_len", &self.body.len())
            .field("tags", &self.tags.len())
            .field("created_ms", &self.created_ms)
            .field("updated_ms", &self.updated_ms)
            .field("attachments", &self.attachments.len())
            .finish_non_exhaustive()
    }
}

impl Drop for Entry {
    fn drop(&mut self) {
        self.title.zeroize();
        self.body.zeroize();
        self.mood.zeroize();
        self.tags.zeroize();
    }
}

/// The metadata of an entry (what a list view shows), decoded without the body.
#[derive(Clone, PartialEq, Eq)]
pub struct EntryMeta {
    /// Title.
    pub title: String,
    /// Mood label.
    pub mood: Option<String>,
    /// Tags.
    pub tags: Vec<String>,
    /// Creation time, Unix ms.
    pub created_ms: u64,
    /// Last edit time, Unix ms.
    pub updated_ms: u64,
}

impl fmt::Debug for EntryMeta {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EntryMeta")
            .field("title_len", &self.title.len())
            .field("created_ms", &self.created_ms)
            .field("updated_ms", &self.updated_ms)
            .finish_non_exhaustive()
    }
}

/// The two blobs of one vault item revision.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedEntry {
    /// Encrypted body.
    pub body: Vec<u8>,
    /// Encrypted metadata.
    pub meta: Vec<u8>,
}

impl fmt::Debug for SealedEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealedEntry")
            .field("body_len", &self.body.len())
            .field("meta_len", &self.meta.len())
            .finish()
    }
}

fn check_len(field: &'static str, len: usize, max: usize) -> Result<(), EntryError> {
    if len > max {
        Err(EntryError::FieldTooLong { field, len })
    } else {
        Ok(())
    }
}

impl Entry {
    /// Checks every limit.
    ///
    /// # Errors
    /// [`EntryError::FieldTooLong`], [`EntryError::TooMany`].
    pub fn validate(&self) -> Result<(), EntryError> {
        check_len("title", self.title.len(), MAX_TITLE_LEN)?;
        check_len("body", self.body.len(), MAX_BODY_LEN)?;
        if let Some(m) = &self.mood {
            check_len("mood", m.len(), MAX_MOOD_LEN)?;
        }
        if self.tags.len() > MAX_TAGS {
            return Err(EntryError::TooMany {
                field: "tags",
                count: self.tags.len(),
            });
        }
        for t in &self.tags {
            check_len("tag", t.len(), MAX_TAG_LEN)?;
        }
        if self.attachments.len() > MAX_ATTACHMENTS {
            return Err(EntryError::TooMany {
                field: "attachments",
                count: self.attachments.len(),
            });
        }
        Ok(())
    }

    /// The metadata part.
    pub fn meta(&self) -> EntryMeta {
        EntryMeta {
            title: self.title.clone(),
            mood: self.mood.clone(),
            tags: self.tags.clone(),
            created_ms: self.created_ms,
            updated_ms: self.updated_ms,
        }
    }

    /// hazmat: the metadata plaintext (§9.5), binding `body_digest` (SHA-256 of the body
    /// ciphertext). Exposed for test vectors.
    ///
    /// # Errors
    /// Limits as [`Entry::validate`].
    pub fn encode_meta(&self, body_digest: &[u8; 32]) -> Result<Zeroizing<Vec<u8>>, EntryError> {
        self.validate()?;
        let mut out = Zeroizing::new(Vec::with_capacity(64 + self.title.len()));
        out.push(ENTRY_VERSION);
        out.push(KIND_META);
        out.extend_from_slice(&self.created_ms.to_be_bytes());
        out.extend_from_slice(&self.updated_ms.to_be_bytes());
        put_bytes_u32(&mut out, self.title.as_bytes());
        match &self.mood {
            Some(m) => {
                out.push(1);
                put_bytes_u32(&mut out, m.as_bytes());
            }
            None => out.push(0),
        }
        out.push(self.tags.len() as u8);
        for t in &self.tags {
            put_bytes_u32(&mut out, t.as_bytes());
        }
        out.extend_from_slice(body_digest);
        Ok(out)
    }

    /// hazmat: the body plaintext (§9.5). Exposed for test vectors.
    ///
    /// # Errors
    /// Limits as [`Entry::validate`].
    pub fn encode_body(&self) -> Result<Zeroizing<Vec<u8>>, EntryError> {
        self.validate()?;
        let mut out = Zeroizing::new(Vec::with_capacity(8 + self.body.len()));
        out.push(ENTRY_VERSION);
        out.push(KIND_BODY);
        put_bytes_u32(&mut out, self.body.as_bytes());
        out.push(self.attachments.len() as u8);
        for a in &self.attachments {
            out.extend_from_slice(&a.blob_id);
            out.extend_from_slice(&a.key);
            out.extend_from_slice(&a.plaintext_len.to_be_bytes());
        }
        Ok(out)
    }

    /// Encrypts the entry as revision `revision` of item `item_id`: the body first, then the
    /// metadata bound to the body ciphertext's digest.
    ///
    /// # Errors
    /// Limits as [`Entry::validate`].
    pub fn seal<R: CryptoRng + ?Sized>(
        &self,
        keys: &DiaryKeys,
        collection_id: &[u8; 16],
        item_id: &[u8; 16],
        revision: u64,
        rng: &mut R,
    ) -> Result<SealedEntry, EntryError> {
        let mut n1 = [0u8; 24];
        let mut n2 = [0u8; 24];
        rng.fill_bytes(&mut n1);
        rng.fill_bytes(&mut n2);
        self.seal_with_nonces(keys, collection_id, item_id, revision, n1, n2)
    }

    pub(crate) fn seal_with_nonces(
        &self,
        keys: &DiaryKeys,
        collection_id: &[u8; 16],
        item_id: &[u8; 16],
        revision: u64,
        body_nonce: [u8; 24],
        meta_nonce: [u8; 24],
    ) -> Result<SealedEntry, EntryError> {
        let body_pt = self.encode_body()?;
        let body =
            keys.encrypt_item_with_nonce(collection_id, item_id, revision, &body_pt, body_nonce)?;
        let digest: [u8; DIGEST_LEN] = Sha256::digest(&body).into();
        let meta_pt = self.encode_meta(&digest)?;
        let meta =
            keys.encrypt_item_with_nonce(collection_id, item_id, revision, &meta_pt, meta_nonce)?;
        Ok(SealedEntry { body, meta })
    }

    /// Decrypts and decodes both blobs of revision `revision` of item `item_id`.
    ///
    /// # Errors
    /// [`EntryError::Diary`] (tampered, moved or rolled back), [`EntryError::BodyMismatch`],
    /// decoding errors.
    pub fn open(
        keys: &DiaryKeys,
        collection_id: &[u8; 16],
        item_id: &[u8; 16],
        revision: u64,
        sealed: &SealedEntry,
    ) -> Result<Self, EntryError> {
        let meta_pt = keys.decrypt_item(collection_id, item_id, revision, &sealed.meta)?;
        let (meta, digest) = decode_meta(&meta_pt)?;
        let actual: [u8; DIGEST_LEN] = Sha256::digest(&sealed.body).into();
        if !bool::from(actual.ct_eq(&digest)) {
            return Err(EntryError::BodyMismatch);
        }
        let body_pt = keys.decrypt_item(collection_id, item_id, revision, &sealed.body)?;
        let (body, attachments) = decode_body(&body_pt)?;
        let EntryMeta {
            title,
            mood,
            tags,
            created_ms,
            updated_ms,
        } = meta;
        Ok(Self {
            title,
            body,
            mood,
            tags,
            created_ms,
            updated_ms,
            attachments,
        })
    }

    /// Decrypts only the metadata blob (for list views).
    ///
    /// # Errors
    /// As [`Entry::open`], without the body check.
    pub fn open_meta(
        keys: &DiaryKeys,
        collection_id: &[u8; 16],
        item_id: &[u8; 16],
        revision: u64,
        meta: &[u8],
    ) -> Result<EntryMeta, EntryError> {
        let pt = keys.decrypt_item(collection_id, item_id, revision, meta)?;
        Ok(decode_meta(&pt)?.0)
    }
}

fn header(r: &mut Reader<'_>, kind: u8) -> Result<(), EntryError> {
    let version = r.u8().ok_or(EntryError::Malformed)?;
    if version != ENTRY_VERSION {
        return Err(EntryError::UnsupportedVersion(version));
    }
    let found = r.u8().ok_or(EntryError::Malformed)?;
    if found != kind {
        return Err(EntryError::WrongKind {
            expected: kind,
            found,
        });
    }
    Ok(())
}

fn text(r: &mut Reader<'_>, max: usize) -> Result<String, EntryError> {
    let bytes = r.bytes_u32(max).ok_or(EntryError::Malformed)?;
    String::from_utf8(bytes.to_vec()).map_err(|_| EntryError::Malformed)
}

/// Decodes a metadata plaintext; returns it and the body digest it binds.
pub(crate) fn decode_meta(pt: &[u8]) -> Result<(EntryMeta, [u8; DIGEST_LEN]), EntryError> {
    let mut r = Reader::new(pt);
    header(&mut r, KIND_META)?;
    let created_ms = r.u64().ok_or(EntryError::Malformed)?;
    let updated_ms = r.u64().ok_or(EntryError::Malformed)?;
    let title = text(&mut r, MAX_TITLE_LEN)?;
    let mood = match r.u8().ok_or(EntryError::Malformed)? {
        0 => None,
        1 => Some(text(&mut r, MAX_MOOD_LEN)?),
        _ => return Err(EntryError::Malformed),
    };
    let count = usize::from(r.u8().ok_or(EntryError::Malformed)?);
    if count > MAX_TAGS {
        return Err(EntryError::Malformed);
    }
    let mut tags = Vec::with_capacity(count);
    for _ in 0..count {
        tags.push(text(&mut r, MAX_TAG_LEN)?);
    }
    let digest = r.array::<DIGEST_LEN>().ok_or(EntryError::Malformed)?;
    r.finish().ok_or(EntryError::Malformed)?;
    Ok((
        EntryMeta {
            title,
            mood,
            tags,
            created_ms,
            updated_ms,
        },
        digest,
    ))
}

/// Decodes a body plaintext.
pub(crate) fn decode_body(pt: &[u8]) -> Result<(String, Vec<AttachmentRef>), EntryError> {
    let mut r = Reader::new(pt);
    header(&mut r, KIND_BODY)?;
    let body = text(&mut r, MAX_BODY_LEN)?;
    let count = usize::from(r.u8().ok_or(EntryError::Malformed)?);
    if count > MAX_ATTACHMENTS {
        return Err(EntryError::Malformed);
    }
    let mut attachments = Vec::with_capacity(count);
    for _ in 0..count {
        attachments.push(AttachmentRef {
            blob_id: r.array().ok_or(EntryError::Malformed)?,
            key: r.array().ok_or(EntryError::Malformed)?,
            plaintext_len: r.u64().ok_or(EntryError::Malformed)?,
        });
    }
    r.finish().ok_or(EntryError::Malformed)?;
    Ok((body, attachments))
}
