//! Attachments sans I/O (PROTOCOL §10, §11.17, §14): the pointer that travels inside encrypted
//! messages and diary entries, the resume state of an upload, how a blob is planned (sizes,
//! bucket, parts), how the ciphertext stream is cut at part boundaries, and what each answer of
//! the relay (or of S3) means. The native client (`haven_client::attachments`: files, HTTP) and
//! the web package (`haven-wasm`: `File`/`ReadableStream`, `fetch` by the page) drive the same
//! steps:
//!
//! ```text
//! upload    UploadStart::new(size) ─► POST /v1/blobs (request) ─► created ─► PendingUpload
//!           GET /v1/blobs/{id} ─► PendingUpload::plan ─► UploadPlan (parts, which are stored)
//!           UploadEncryptor::push / next_tail ─► PartSplitter::split ─► per part:
//!             POST /v1/blobs/{id}/parts ─► UploadPlan::part_target ─► PUT <url>
//!             ─► part_etag ─► [S3] PUT /v1/blobs/{id}/parts/{n}
//!           POST /v1/blobs/{id}/complete ─► PendingUpload::pointer
//! download  GET /v1/blobs/{id}/download ─► AttachmentPointer::check_located
//!           GET <url> ─► BlobDecryptor::push … finish (digest checked last)
//! ```
//!
//! Memory stays constant whatever the attachment's size: the encryptor and the decryptor hold
//! at most two 64 KiB chunks, and the splitter only counts bytes.
//!
//! - [`upload`]: reserving a blob, the plan, the encryptor and the part splitter.
//! - [`download`]: checking the relay's download answer and decrypting the stream.

use std::fmt;

use haven_protocol::attachment::{self as layout, PointerFields};
use haven_protocol::padding::attachment_padded_len;
use haven_sdk::attachment::{
    AttachmentError, AttachmentKey, DIGEST_LEN, attachment_ciphertext_len,
};
use haven_sdk::diary::AttachmentRef;
use zeroize::{Zeroize as _, Zeroizing};

pub mod download;
pub mod upload;

#[cfg(test)]
mod tests;

pub use download::BlobDecryptor;
pub use haven_protocol::attachment::{
    MAX_CONTENT_TYPE_LEN, MAX_FILE_NAME_LEN, MAX_THUMBNAIL_LEN, POINTER_VERSION, valid_content_type,
};
pub use upload::{
    PartPlan, PartSlice, PartSplitter, PartTarget, UploadEncryptor, UploadPlan, UploadStart,
    part_etag,
};

/// Format version of [`PendingUpload::to_bytes`].
pub const PENDING_UPLOAD_VERSION: u8 = 0x01;
/// Length of [`PendingUpload::to_bytes`].
pub const PENDING_UPLOAD_LEN: usize = 1 + 16 + 32 + 8;

/// Errors of the attachment steps. Messages never contain key bytes or plaintext.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TransferError {
    /// A pointer or pending upload does not decode, a field is over its limit, or a content
    /// type is not printable ASCII.
    #[error("malformed attachment pointer")]
    Malformed,
    /// Encryption or decryption failed (for downloads: the blob is not the one the pointer
    /// describes, or it was tampered with).
    #[error(transparent)]
    Crypto(#[from] AttachmentError),
    /// The source has a different length than announced (the file changed).
    #[error("the source is not {expected} bytes long")]
    SourceChanged {
        /// The announced plaintext length.
        expected: u64,
    },
    /// The relay's blob (or the bytes it sent) does not have the size the pointer implies.
    #[error("blob has {actual} bytes, expected {expected}")]
    SizeMismatch {
        /// Size implied by the pointer.
        expected: u64,
        /// Size reported by the relay, or bytes received.
        actual: u64,
    },
    /// A transfer (part upload or download) was refused: the HTTP status and, when the relay
    /// or S3 said, its error code.
    #[error("transfer refused ({status}): {code}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// The relay's error code, or the S3 error code; empty when neither said.
        code: String,
    },
    /// The relay answered something unexpected.
    #[error("unexpected relay answer: {0}")]
    InvalidResponse(String),
}

/// Progress of a transfer in blob (ciphertext) bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    /// Bytes transferred (or found already transferred).
    pub done: u64,
    /// Total blob bytes.
    pub total: u64,
}

/// The blob size (ciphertext) of an attachment of `size` plaintext bytes (§10).
#[must_use]
pub fn blob_size_for(size: u64) -> Option<u64> {
    attachment_ciphertext_len(attachment_padded_len(size)?)
}

/// A refused transfer from its HTTP status and body: the relay's JSON error code, or the
/// `<Code>` of an S3 error document.
#[must_use]
pub fn transfer_refusal(status: u16, body: &str) -> TransferError {
    let code = serde_json::from_str::<haven_protocol::api::error::ErrorBody>(body)
        .ok()
        .map(|b| b.error.code)
        .or_else(|| {
            let start = body.find("<Code>")? + "<Code>".len();
            let end = body.get(start..)?.find("</Code>")? + start;
            body.get(start..end).map(str::to_owned)
        })
        .unwrap_or_default();
    TransferError::Refused { status, code }
}

/// `url` as a full URL: the relay's relative URLs (local backend, starting with `/`) are joined
/// to `base_url`; S3's presigned URLs are absolute already.
#[must_use]
pub fn resolve_url(base_url: &str, url: &str) -> String {
    if url.starts_with('/') {
        format!("{}{url}", base_url.trim_end_matches('/'))
    } else {
        url.to_owned()
    }
}

/// Everything needed to fetch and open an attachment (§14). Secret (holds the key): it travels
/// only inside end-to-end encrypted messages or diary entries; `Debug` shows no key, name or
/// thumbnail.
#[derive(Clone)]
pub struct AttachmentPointer {
    /// The blob's id on the relay.
    pub blob_id: [u8; 16],
    /// The attachment key.
    pub key: AttachmentKey,
    /// SHA-256 of the whole blob.
    pub digest: [u8; DIGEST_LEN],
    /// Plaintext length in bytes.
    pub size: u64,
    /// MIME type chosen by the sender (printable ASCII, ≤ 255 bytes; may be empty).
    pub content_type: String,
    /// Original file name, if the sender shares it (≤ 1024 bytes of UTF-8).
    pub file_name: Option<String>,
    /// A small preview image generated by the sender (≤ 64 KiB), for images and videos.
    pub thumbnail: Option<Vec<u8>>,
}

impl fmt::Debug for AttachmentPointer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AttachmentPointer")
            .field("blob_id", &hex::encode(self.blob_id))
            .field("size", &self.size)
            .field("thumbnail", &self.thumbnail.as_ref().map(Vec::len))
            .finish_non_exhaustive()
    }
}

impl Drop for AttachmentPointer {
    fn drop(&mut self) {
        if let Some(name) = self.file_name.as_mut() {
            name.zeroize();
        }
        if let Some(t) = self.thumbnail.as_mut() {
            t.zeroize();
        }
    }
}

/// Wipes the key and the optional fields of decoded or encoded pointer fields.
fn wipe(fields: &mut PointerFields) {
    fields.key.zeroize();
    if let Some(name) = fields.file_name.as_mut() {
        name.zeroize();
    }
    if let Some(t) = fields.thumbnail.as_mut() {
        t.zeroize();
    }
}

impl AttachmentPointer {
    /// The reference a diary entry stores for this attachment (§11.16.1): blob id, key and
    /// plaintext length. Content type, file name and thumbnail are not part of it; an app keeps
    /// them in the entry's text or tags if it wants them.
    #[must_use]
    pub fn diary_ref(&self) -> AttachmentRef {
        AttachmentRef {
            blob_id: self.blob_id,
            key: *self.key.as_bytes(),
            plaintext_len: self.size,
        }
    }

    /// A pointer for a diary entry's attachment, which carries no digest (§11.16.1): the caller
    /// supplies the one it computed over the blob it fetched (integrity then rests on the
    /// stream's authentication under the key only the account's devices hold).
    #[must_use]
    pub fn from_diary_ref(attachment: &AttachmentRef, digest: [u8; DIGEST_LEN]) -> Self {
        Self {
            blob_id: attachment.blob_id,
            key: AttachmentKey::from_bytes(attachment.key),
            digest,
            size: attachment.plaintext_len,
            content_type: String::new(),
            file_name: None,
            thumbnail: None,
        }
    }

    /// The blob size this pointer implies.
    #[must_use]
    pub fn blob_size(&self) -> Option<u64> {
        blob_size_for(self.size)
    }

    /// The blob id as the relay writes it (32 lowercase hex digits).
    #[must_use]
    pub fn blob_id_hex(&self) -> String {
        hex::encode(self.blob_id)
    }

    /// Encodes the pointer (§14, `haven_protocol::attachment`).
    ///
    /// # Errors
    /// [`TransferError::Malformed`] if a field is over its limit or the content type is not
    /// printable ASCII.
    pub fn to_bytes(&self) -> Result<Zeroizing<Vec<u8>>, TransferError> {
        let mut fields = PointerFields {
            blob_id: self.blob_id,
            key: *self.key.as_bytes(),
            digest: self.digest,
            size: self.size,
            content_type: self.content_type.clone(),
            file_name: self.file_name.clone(),
            thumbnail: self.thumbnail.clone(),
        };
        let mut out = Zeroizing::new(Vec::new());
        let encoded = layout::encode_into(&fields, &mut out);
        wipe(&mut fields);
        encoded.map_err(|_| TransferError::Malformed)?;
        Ok(out)
    }

    /// Decodes [`to_bytes`](Self::to_bytes) output. Every length is checked before it is read;
    /// unknown versions or flags, over-long fields and trailing bytes are refused.
    ///
    /// # Errors
    /// [`TransferError::Malformed`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, TransferError> {
        let mut fields = layout::decode(bytes).map_err(|_| TransferError::Malformed)?;
        let pointer = Self {
            blob_id: fields.blob_id,
            key: AttachmentKey::from_bytes(fields.key),
            digest: fields.digest,
            size: fields.size,
            content_type: fields.content_type.clone(),
            file_name: fields.file_name.take(),
            thumbnail: fields.thumbnail.take(),
        };
        wipe(&mut fields);
        Ok(pointer)
    }
}

/// An upload in progress: which blob, under which key, of how many plaintext bytes. Secret
/// (holds the key); persist it (e.g. in the encrypted client store) to resume after a restart.
#[derive(Clone)]
pub struct PendingUpload {
    /// The blob's id on the relay.
    pub blob_id: [u8; 16],
    /// The attachment key.
    pub key: AttachmentKey,
    /// Plaintext length.
    pub size: u64,
}

impl fmt::Debug for PendingUpload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PendingUpload")
            .field("blob_id", &hex::encode(self.blob_id))
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl PendingUpload {
    /// `0x01 || blob_id 16 || key 32 || size u64` (57 bytes, §14).
    #[must_use]
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::with_capacity(PENDING_UPLOAD_LEN));
        out.push(PENDING_UPLOAD_VERSION);
        out.extend_from_slice(&self.blob_id);
        out.extend_from_slice(self.key.as_bytes());
        out.extend_from_slice(&self.size.to_be_bytes());
        out
    }

    /// Decodes [`to_bytes`](Self::to_bytes) output.
    ///
    /// # Errors
    /// [`TransferError::Malformed`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, TransferError> {
        let mut r = haven_protocol::encoding::Reader::new(bytes);
        let bad = || TransferError::Malformed;
        if r.u8().ok_or_else(bad)? != PENDING_UPLOAD_VERSION {
            return Err(bad());
        }
        let blob_id = r.array::<16>().ok_or_else(bad)?;
        let key = AttachmentKey::from_bytes(r.array::<32>().ok_or_else(bad)?);
        let size = r.u64().ok_or_else(bad)?;
        r.finish().ok_or_else(bad)?;
        if attachment_padded_len(size).is_none() {
            return Err(bad());
        }
        Ok(Self { blob_id, key, size })
    }

    /// The blob size (ciphertext) of this upload.
    #[must_use]
    pub fn blob_size(&self) -> Option<u64> {
        blob_size_for(self.size)
    }

    /// The blob id as the relay writes it (32 lowercase hex digits).
    #[must_use]
    pub fn blob_id_hex(&self) -> String {
        hex::encode(self.blob_id)
    }

    /// `GET` this path for the blob's state (parts received), then [`plan`](Self::plan).
    #[must_use]
    pub fn status_path(&self) -> String {
        format!("/v1/blobs/{}", self.blob_id_hex())
    }

    /// `POST` this path (with [`UploadPlan::part_urls_request`]) for a part's upload URL.
    #[must_use]
    pub fn parts_path(&self) -> String {
        format!("/v1/blobs/{}/parts", self.blob_id_hex())
    }

    /// `PUT` this path with [`part_report`](Self::part_report) to report an S3 part's `ETag`.
    #[must_use]
    pub fn part_report_path(&self, part: u64) -> String {
        format!("/v1/blobs/{}/parts/{part}", self.blob_id_hex())
    }

    /// The body reporting a part's `ETag` (S3 only, [`PartTarget::report_etag`]).
    #[must_use]
    pub fn part_report(&self, etag: String) -> haven_protocol::api::blobs::PartReport {
        haven_protocol::api::blobs::PartReport { etag }
    }

    /// `POST` this path once every part is stored (unless [`UploadPlan::already_complete`]).
    #[must_use]
    pub fn complete_path(&self) -> String {
        format!("/v1/blobs/{}/complete", self.blob_id_hex())
    }

    /// The pointer to send once the upload completed with `digest`.
    #[must_use]
    pub fn pointer(
        &self,
        digest: [u8; DIGEST_LEN],
        content_type: &str,
        file_name: Option<&str>,
        thumbnail: Option<Vec<u8>>,
    ) -> AttachmentPointer {
        AttachmentPointer {
            blob_id: self.blob_id,
            key: self.key.clone(),
            digest,
            size: self.size,
            content_type: content_type.to_owned(),
            file_name: file_name.map(str::to_owned),
            thumbnail,
        }
    }
}
