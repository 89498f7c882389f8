//! Uploading an attachment (PROTOCOL §10, §11.17, §14): reserving a blob of the exact padded
//! size, the plan of its parts (which the relay already has), the encryptor that holds the
//! source to its announced length, and the splitter that cuts the ciphertext stream at part
//! boundaries.
//!
//! Encryption is deterministic given the key and the source, so a resumed upload re-encrypts
//! from the start and skips the bytes of the parts the relay already has ([`PartSlice::stored`]).

use haven_protocol::api::blobs::{
    BlobInfo, CreateBlobRequest, PartStored, PartUrls, PartUrlsRequest,
};
use haven_sdk::attachment::{
    AttachmentEncryptor, AttachmentError, AttachmentKey, AttachmentTail, DIGEST_LEN,
};
use rand_core::CryptoRng;

use super::{PendingUpload, Progress, TransferError, blob_size_for};

/// The relay's path to create a blob (`POST`, body [`UploadStart::request`]).
pub const CREATE_PATH: &str = "/v1/blobs";

/// A blob about to be reserved: a fresh key and the exact blob size of `size` plaintext bytes.
pub struct UploadStart {
    key: AttachmentKey,
    size: u64,
    blob_size: u64,
}

impl std::fmt::Debug for UploadStart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UploadStart")
            .field("size", &self.size)
            .field("blob_size", &self.blob_size)
            .finish_non_exhaustive()
    }
}

impl UploadStart {
    /// Draws a fresh key for an attachment of `size` plaintext bytes.
    ///
    /// # Errors
    /// [`TransferError::Crypto`] ([`AttachmentError::TooLarge`]) if the size is beyond the
    /// format.
    pub fn new<R: CryptoRng + ?Sized>(size: u64, rng: &mut R) -> Result<Self, TransferError> {
        let blob_size = blob_size_for(size).ok_or(AttachmentError::TooLarge(size))?;
        Ok(Self {
            key: AttachmentKey::generate(rng),
            size,
            blob_size,
        })
    }

    /// The blob (ciphertext) size: only its bucket tells anything about the file.
    #[must_use]
    pub fn blob_size(&self) -> u64 {
        self.blob_size
    }

    /// The body of `POST /v1/blobs`; `ttl_secs` asks for a lifetime (the relay's default if
    /// `None`).
    #[must_use]
    pub fn request(&self, ttl_secs: Option<u64>) -> CreateBlobRequest {
        CreateBlobRequest {
            size: self.blob_size,
            ttl_secs,
        }
    }

    /// The relay's answer ([`BlobInfo`]) to the request: the upload to resume from now on.
    ///
    /// # Errors
    /// [`TransferError::SizeMismatch`] if the relay reserved another size (the start stays
    /// usable, e.g. to read a corrected answer).
    pub fn created(&self, info: &BlobInfo) -> Result<PendingUpload, TransferError> {
        if info.size != self.blob_size {
            return Err(TransferError::SizeMismatch {
                expected: self.blob_size,
                actual: info.size,
            });
        }
        Ok(PendingUpload {
            blob_id: *info.blob_id.as_bytes(),
            key: self.key.clone(),
            size: self.size,
        })
    }
}

/// One part of a blob: its number, where it starts in the blob, its length, and whether the
/// relay already has it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartPlan {
    /// Part number (from 0).
    pub part: u64,
    /// Offset of its first byte in the blob.
    pub offset: u64,
    /// Its length (`part_size`, the last one the remainder).
    pub len: u64,
    /// Whether the relay already has it (skip it: the re-encrypted bytes are only counted).
    pub stored: bool,
}

/// How a blob is uploaded, from the relay's [`BlobInfo`]: its parts and which are stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadPlan {
    blob_size: u64,
    part_size: u64,
    part_count: u64,
    received: Vec<u64>,
    complete: bool,
}

impl PendingUpload {
    /// The plan of this upload from the answer to `GET /v1/blobs/{id}`
    /// ([`status_path`](Self::status_path)).
    ///
    /// # Errors
    /// [`TransferError::SizeMismatch`] if the blob is not the size this upload needs,
    /// [`TransferError::InvalidResponse`] for parts that do not add up.
    pub fn plan(&self, info: &BlobInfo) -> Result<UploadPlan, TransferError> {
        let expected = self.blob_size().ok_or(TransferError::Malformed)?;
        if info.blob_id.as_bytes() != &self.blob_id {
            return Err(TransferError::InvalidResponse("another blob".into()));
        }
        if info.size != expected || info.part_size == 0 {
            return Err(TransferError::SizeMismatch {
                expected,
                actual: info.size,
            });
        }
        if info.part_count != expected.div_ceil(info.part_size).max(1) {
            return Err(TransferError::InvalidResponse("part count".into()));
        }
        let complete = match info.state.as_str() {
            "complete" => true,
            "pending" => false,
            _ => return Err(TransferError::InvalidResponse("blob state".into())),
        };
        let mut received: Vec<u64> = info
            .parts_received
            .iter()
            .copied()
            .filter(|p| *p < info.part_count)
            .collect();
        received.sort_unstable();
        received.dedup();
        Ok(UploadPlan {
            blob_size: expected,
            part_size: info.part_size,
            part_count: info.part_count,
            received,
            complete,
        })
    }
}

impl UploadPlan {
    /// The blob size.
    #[must_use]
    pub fn blob_size(&self) -> u64 {
        self.blob_size
    }

    /// The number of parts.
    #[must_use]
    pub fn part_count(&self) -> u64 {
        self.part_count
    }

    /// Whether the blob is complete already (a resumed upload that only lost the answer to
    /// `complete`): nothing is sent, and `complete` is not called again.
    #[must_use]
    pub fn already_complete(&self) -> bool {
        self.complete
    }

    /// Part `part`, `None` past the last.
    #[must_use]
    pub fn part(&self, part: u64) -> Option<PartPlan> {
        if part >= self.part_count {
            return None;
        }
        let offset = part.checked_mul(self.part_size)?;
        Some(PartPlan {
            part,
            offset,
            len: self.blob_size.saturating_sub(offset).min(self.part_size),
            stored: self.complete || self.received.binary_search(&part).is_ok(),
        })
    }

    /// Every part, in order.
    pub fn parts(&self) -> impl Iterator<Item = PartPlan> + '_ {
        (0..self.part_count).filter_map(|p| self.part(p))
    }

    /// Bytes of the parts the relay already has.
    #[must_use]
    pub fn stored_bytes(&self) -> u64 {
        self.parts().filter(|p| p.stored).map(|p| p.len).sum()
    }

    /// The body of `POST /v1/blobs/{id}/parts` for one part.
    #[must_use]
    pub fn part_urls_request(&self, part: u64) -> PartUrlsRequest {
        PartUrlsRequest { parts: vec![part] }
    }

    /// Where to `PUT` part `part`, from the answer to [`part_urls_request`](Self::part_urls_request).
    ///
    /// # Errors
    /// [`TransferError::InvalidResponse`] if the answer has no URL for the part, or one for
    /// another length.
    pub fn part_target(&self, part: u64, answer: PartUrls) -> Result<PartTarget, TransferError> {
        let plan = self
            .part(part)
            .ok_or_else(|| TransferError::InvalidResponse("no such part".into()))?;
        let url = answer
            .urls
            .into_iter()
            .find(|u| u.part == part && u.len == plan.len)
            .ok_or_else(|| TransferError::InvalidResponse("part url".into()))?;
        if !url.method.eq_ignore_ascii_case("PUT") {
            return Err(TransferError::InvalidResponse("part method".into()));
        }
        // The relay's own URLs are relative (local backend, which records the part itself);
        // S3's presigned URLs are absolute, and the relay learns of the part by our report.
        let report_etag = !url.url.starts_with('/');
        Ok(PartTarget {
            part,
            url: url.url,
            len: plan.len,
            report_etag,
        })
    }
}

/// Where to upload one part: `PUT` exactly `len` bytes to `url` (no access token), then, for
/// S3, report the `ETag` to the relay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartTarget {
    /// Part number.
    pub part: u64,
    /// Relative to the relay's base URL (starts with `/`) or absolute (S3, presigned); see
    /// [`resolve_url`](super::resolve_url).
    pub url: String,
    /// Exact body length.
    pub len: u64,
    /// Whether to report the part's `ETag` with `PUT /v1/blobs/{id}/parts/{n}`.
    pub report_etag: bool,
}

/// The `ETag` of an uploaded part: S3's `ETag` header, else the local backend's JSON answer
/// `{part, etag}`.
///
/// # Errors
/// [`TransferError::InvalidResponse`] when neither is there.
pub fn part_etag(etag_header: Option<&str>, body: &[u8]) -> Result<String, TransferError> {
    if let Some(etag) = etag_header.filter(|e| !e.is_empty()) {
        return Ok(etag.to_owned());
    }
    serde_json::from_slice::<PartStored>(body)
        .map(|stored| stored.etag)
        .map_err(|e| TransferError::InvalidResponse(format!("part answer: {e}")))
}

enum EncryptState {
    Body(AttachmentEncryptor),
    Tail(AttachmentTail),
    Done([u8; DIGEST_LEN]),
    Failed,
}

/// The encryptor of one upload: takes exactly the announced number of plaintext bytes (in any
/// split), then produces the padding chunks one at a time, then the blob digest. Memory is
/// constant (one 64 KiB chunk) apart from what each call returns.
pub struct UploadEncryptor {
    state: EncryptState,
    expected: u64,
    pushed: u64,
}

impl std::fmt::Debug for UploadEncryptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UploadEncryptor")
            .field("expected", &self.expected)
            .field("pushed", &self.pushed)
            .finish_non_exhaustive()
    }
}

impl UploadEncryptor {
    /// Starts encrypting `pending`'s source.
    ///
    /// # Errors
    /// [`TransferError::Crypto`] if the size is beyond the format.
    pub fn new(pending: &PendingUpload) -> Result<Self, TransferError> {
        Ok(Self {
            state: EncryptState::Body(AttachmentEncryptor::new(&pending.key, pending.size)?),
            expected: pending.size,
            pushed: 0,
        })
    }

    /// Plaintext bytes still expected.
    #[must_use]
    pub fn remaining(&self) -> u64 {
        self.expected - self.pushed
    }

    /// Encrypts the next plaintext bytes; returns the ciphertext of the chunks they completed
    /// (often empty). Push at most 64 KiB at a time to keep memory constant.
    ///
    /// # Errors
    /// [`TransferError::SourceChanged`] if the source is longer than announced; after any error
    /// the encryptor is spent ([`AttachmentError::Poisoned`]).
    pub fn push(&mut self, plaintext: &[u8]) -> Result<Vec<u8>, TransferError> {
        let EncryptState::Body(enc) = &mut self.state else {
            return Err(self.spent());
        };
        if plaintext.len() as u64 > self.expected - self.pushed {
            self.state = EncryptState::Failed;
            return Err(TransferError::SourceChanged {
                expected: self.expected,
            });
        }
        match enc.push(plaintext) {
            Ok(out) => {
                self.pushed += plaintext.len() as u64;
                Ok(out)
            }
            Err(e) => {
                self.state = EncryptState::Failed;
                Err(e.into())
            }
        }
    }

    /// After the whole source: the next piece of the tail (the last data chunk and the padding
    /// chunks, one at a time), `None` once the blob is complete (then [`digest`](Self::digest)).
    ///
    /// # Errors
    /// [`TransferError::SourceChanged`] if the source was shorter than announced.
    pub fn next_tail(&mut self) -> Result<Option<Vec<u8>>, TransferError> {
        match std::mem::replace(&mut self.state, EncryptState::Failed) {
            EncryptState::Body(enc) => {
                if self.pushed != self.expected {
                    return Err(TransferError::SourceChanged {
                        expected: self.expected,
                    });
                }
                self.state = EncryptState::Tail(enc.finish_streaming()?);
                self.next_tail()
            }
            EncryptState::Tail(mut tail) => match tail.next_chunk()? {
                Some(chunk) => {
                    self.state = EncryptState::Tail(tail);
                    Ok(Some(chunk))
                }
                None => {
                    let digest = tail.digest().ok_or(AttachmentError::Poisoned)?;
                    self.state = EncryptState::Done(digest);
                    Ok(None)
                }
            },
            EncryptState::Done(digest) => {
                self.state = EncryptState::Done(digest);
                Ok(None)
            }
            EncryptState::Failed => Err(AttachmentError::Poisoned.into()),
        }
    }

    /// The blob's SHA-256, once [`next_tail`](Self::next_tail) returned `None`.
    #[must_use]
    pub fn digest(&self) -> Option<[u8; DIGEST_LEN]> {
        match self.state {
            EncryptState::Done(d) => Some(d),
            _ => None,
        }
    }

    fn spent(&self) -> TransferError {
        match self.state {
            EncryptState::Failed => AttachmentError::Poisoned.into(),
            // Pushing after the tail started: the source ran long.
            _ => TransferError::SourceChanged {
                expected: self.expected,
            },
        }
    }
}

/// A run of bytes of one ciphertext piece that belongs to one part (offsets into the piece).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartSlice {
    /// The part.
    pub part: u64,
    /// First byte in the piece.
    pub start: usize,
    /// One past the last byte in the piece.
    pub end: usize,
    /// Whether this slice completes the part (upload it now).
    pub ends_part: bool,
    /// Whether the relay already has the part (drop the bytes).
    pub stored: bool,
}

/// Cuts the ciphertext stream, as the encryptor produces it, at part boundaries.
#[derive(Debug, Clone)]
pub struct PartSplitter {
    plan: UploadPlan,
    offset: u64,
    current: Option<PartPlan>,
}

impl PartSplitter {
    /// A splitter for `plan`'s parts, at the start of the blob.
    #[must_use]
    pub fn new(plan: &UploadPlan) -> Self {
        Self {
            current: plan.part(0),
            plan: plan.clone(),
            offset: 0,
        }
    }

    /// The slices of the next `piece_len` ciphertext bytes, in order.
    ///
    /// # Errors
    /// [`TransferError::SizeMismatch`] if the stream runs past the blob size.
    pub fn split(&mut self, piece_len: usize) -> Result<Vec<PartSlice>, TransferError> {
        let mut out = Vec::new();
        let mut start = 0usize;
        while start < piece_len {
            let Some(part) = self.current else {
                return Err(TransferError::SizeMismatch {
                    expected: self.plan.blob_size,
                    actual: self.offset + (piece_len - start) as u64,
                });
            };
            let part_end = part.offset + part.len;
            let room = usize::try_from(part_end - self.offset).unwrap_or(usize::MAX);
            let end = start + room.min(piece_len - start);
            self.offset += (end - start) as u64;
            let ends_part = self.offset == part_end;
            out.push(PartSlice {
                part: part.part,
                start,
                end,
                ends_part,
                stored: part.stored,
            });
            if ends_part {
                self.current = self.plan.part(part.part + 1);
            }
            start = end;
        }
        Ok(out)
    }

    /// Ciphertext bytes cut so far.
    #[must_use]
    pub fn progress(&self) -> Progress {
        Progress {
            done: self.offset,
            total: self.plan.blob_size,
        }
    }

    /// Whether the whole blob went through.
    #[must_use]
    pub fn is_done(&self) -> bool {
        self.offset == self.plan.blob_size
    }
}
