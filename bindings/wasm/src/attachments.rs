//! Attachments on the web: the client core's attachment steps (`haven_client_core::attachments`,
//! PROTOCOL §10, §11.17, §14) behind objects the page drives. The page reads the file
//! (`File.stream()`), makes every request (`fetch`: the relay's JSON routes with the access
//! token, the part uploads and the download without it) and keeps no key: a part's ciphertext
//! leaves the module as soon as it is encrypted, a download's plaintext as soon as each 64 KiB
//! chunk authenticates, and the blob digest is checked at the end. Memory in the module stays
//! constant whatever the file's size.
//!
//! - [`UploadCore`] (`WebUpload`): reserve a blob, plan its parts, encrypt pushes and cut them
//!   into parts, the part targets and `ETag`s, the pointer once complete; resumable from
//!   [`UploadCore::resume_state`].
//! - [`DownloadCore`] (`WebDownload`): check the download answer, decrypt the stream.
//! - [`describe_pointer`]: what a pointer says about its file, without its key.

use haven_client_core::attachments::{
    AttachmentPointer, BlobDecryptor, PartSplitter, PendingUpload, Progress, TransferError,
    UploadEncryptor, UploadPlan, UploadStart,
};
use haven_protocol::api::blobs::{BlobInfo, DownloadUrl, PartUrls};
use haven_sdk::attachment::AttachmentError;
use serde::Serialize;
use zeroize::Zeroizing;

use crate::error::{ErrorCode, WebError, WebResult, bad_response, invalid};

#[allow(unsafe_code)]
mod web;

pub use web::{WebDownload, WebUpload, describe_attachment};

impl From<TransferError> for WebError {
    fn from(e: TransferError) -> Self {
        let code = match &e {
            TransferError::Malformed => ErrorCode::Malformed,
            TransferError::Crypto(AttachmentError::TooLarge(_)) => ErrorCode::Limit,
            TransferError::Crypto(_) => ErrorCode::DecryptionFailed,
            TransferError::SourceChanged { .. } => ErrorCode::InvalidArgument,
            TransferError::SizeMismatch { .. } | TransferError::InvalidResponse(_) => {
                ErrorCode::InvalidResponse
            }
            TransferError::Refused { .. } => ErrorCode::Refused,
            _ => ErrorCode::Protocol,
        };
        WebError::new(code, e.to_string())
    }
}

fn answer<T: serde::de::DeserializeOwned>(text: &str, what: &str) -> WebResult<T> {
    serde_json::from_str(text).map_err(|e| bad_response(format!("{what}: {e}")))
}

fn json(value: &impl Serialize) -> WebResult<String> {
    serde_json::to_string(value).map_err(|e| WebError::new(ErrorCode::Protocol, e.to_string()))
}

fn out_of_order(what: &str) -> WebError {
    WebError::new(ErrorCode::InvalidState, what.to_owned())
}

/// A blob's plan as the page sees it.
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PlanView {
    /// The blob (ciphertext) size.
    pub blob_size: u64,
    /// How many parts.
    pub part_count: u64,
    /// Bytes of the parts the relay already has.
    pub stored_bytes: u64,
    /// The blob is complete already (nothing to send, no `complete` call).
    pub already_complete: bool,
}

/// A run of ciphertext of one part, as the encryptor produced it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Piece {
    /// The part.
    pub part: u64,
    /// The bytes (empty when the relay already has the part).
    pub bytes: Vec<u8>,
    /// This piece completes the part: upload what was collected for it.
    pub ends_part: bool,
    /// The relay already has the part (nothing to upload).
    pub stored: bool,
}

/// Where to upload one part.
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct TargetView {
    /// Part number.
    pub part: u64,
    /// `PUT` here, without the access token: relative to the relay's base URL (starts with
    /// `/`) or absolute (S3).
    pub url: String,
    /// Exact body length.
    pub len: u64,
    /// Report the part's `ETag` (`partReportPath`, `partReportBody`) after the upload (S3).
    pub report_etag: bool,
}

/// One upload: the core's steps in the order the page takes them.
pub struct UploadCore {
    start: Option<UploadStart>,
    pending: Option<PendingUpload>,
    plan: Option<UploadPlan>,
    encryptor: Option<UploadEncryptor>,
    splitter: Option<PartSplitter>,
}

impl std::fmt::Debug for UploadCore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UploadCore")
            .field("pending", &self.pending)
            .finish_non_exhaustive()
    }
}

impl UploadCore {
    /// A new upload of `size` plaintext bytes under a fresh key.
    ///
    /// # Errors
    /// [`ErrorCode::Limit`] beyond the format's largest attachment.
    pub fn start(size: u64) -> WebResult<Self> {
        Ok(Self {
            start: Some(UploadStart::new(size, &mut rand::rng())?),
            pending: None,
            plan: None,
            encryptor: None,
            splitter: None,
        })
    }

    /// An upload resumed from [`resume_state`](Self::resume_state) (next: `status_path`, `plan`).
    ///
    /// # Errors
    /// [`ErrorCode::Malformed`].
    pub fn resume(state: &[u8]) -> WebResult<Self> {
        Ok(Self {
            start: None,
            pending: Some(PendingUpload::from_bytes(state)?),
            plan: None,
            encryptor: None,
            splitter: None,
        })
    }

    /// The body of `POST /v1/blobs` (`ttl_secs`: the relay's default when `None`).
    ///
    /// # Errors
    /// [`ErrorCode::InvalidState`] once created.
    pub fn create_body(&self, ttl_secs: Option<u64>) -> WebResult<String> {
        let start = self
            .start
            .as_ref()
            .ok_or_else(|| out_of_order("the blob is created already"))?;
        json(&start.request(ttl_secs))
    }

    /// The answer to `POST /v1/blobs`.
    ///
    /// # Errors
    /// [`ErrorCode::InvalidResponse`] (shape, size), [`ErrorCode::InvalidState`].
    pub fn created(&mut self, answer_json: &str) -> WebResult<()> {
        let info: BlobInfo = answer(answer_json, "blob")?;
        let start = self
            .start
            .as_ref()
            .ok_or_else(|| out_of_order("the blob is created already"))?;
        self.pending = Some(start.created(&info)?);
        self.start = None;
        Ok(())
    }

    fn pending(&self) -> WebResult<&PendingUpload> {
        self.pending
            .as_ref()
            .ok_or_else(|| out_of_order("create the blob first"))
    }

    fn plan_ref(&self) -> WebResult<&UploadPlan> {
        self.plan
            .as_ref()
            .ok_or_else(|| out_of_order("read the blob's plan first"))
    }

    /// The resume state (`0x01 · blob id · key · size`, PROTOCOL §14): secret, keep it only
    /// encrypted (e.g. in the device's exported state) to resume after a reload.
    ///
    /// # Errors
    /// [`ErrorCode::InvalidState`] before the blob is created.
    pub fn resume_state(&self) -> WebResult<Zeroizing<Vec<u8>>> {
        Ok(self.pending()?.to_bytes())
    }

    /// The blob id (32 hex).
    ///
    /// # Errors
    /// [`ErrorCode::InvalidState`] before the blob is created.
    pub fn blob_id(&self) -> WebResult<String> {
        Ok(self.pending()?.blob_id_hex())
    }

    /// `GET` this path for the blob's state, then [`plan`](Self::plan).
    ///
    /// # Errors
    /// [`ErrorCode::InvalidState`] before the blob is created.
    pub fn status_path(&self) -> WebResult<String> {
        Ok(self.pending()?.status_path())
    }

    /// The answer to `GET /v1/blobs/{id}`: the parts, which the relay has; encryption starts
    /// from the beginning (the bytes of stored parts are skipped).
    ///
    /// # Errors
    /// [`ErrorCode::InvalidResponse`] (another size, parts that do not add up).
    pub fn plan(&mut self, answer_json: &str) -> WebResult<PlanView> {
        let info: BlobInfo = answer(answer_json, "blob")?;
        let pending = self.pending()?;
        let plan = pending.plan(&info)?;
        let view = PlanView {
            blob_size: plan.blob_size(),
            part_count: plan.part_count(),
            stored_bytes: plan.stored_bytes(),
            already_complete: plan.already_complete(),
        };
        self.encryptor = Some(UploadEncryptor::new(pending)?);
        self.splitter = Some(PartSplitter::new(&plan));
        self.plan = Some(plan);
        Ok(view)
    }

    fn cut(&mut self, ciphertext: Vec<u8>) -> WebResult<Vec<Piece>> {
        let splitter = self
            .splitter
            .as_mut()
            .ok_or_else(|| out_of_order("read the blob's plan first"))?;
        Ok(splitter
            .split(ciphertext.len())?
            .into_iter()
            .map(|s| Piece {
                part: s.part,
                bytes: if s.stored {
                    Vec::new()
                } else {
                    ciphertext[s.start..s.end].to_vec()
                },
                ends_part: s.ends_part,
                stored: s.stored,
            })
            .collect())
    }

    /// Encrypts the next plaintext bytes (at most 64 KiB at a time keeps memory constant);
    /// returns the ciphertext pieces they completed, cut at part boundaries.
    ///
    /// # Errors
    /// [`ErrorCode::InvalidArgument`] if the source runs longer than announced,
    /// [`ErrorCode::InvalidState`] before the plan.
    pub fn push(&mut self, plaintext: &[u8]) -> WebResult<Vec<Piece>> {
        let encryptor = self
            .encryptor
            .as_mut()
            .ok_or_else(|| out_of_order("read the blob's plan first"))?;
        let ciphertext = encryptor.push(plaintext)?;
        self.cut(ciphertext)
    }

    /// After the whole source: the next pieces of the tail (last data chunk, padding), `None`
    /// once the blob is complete.
    ///
    /// # Errors
    /// [`ErrorCode::InvalidArgument`] if the source was shorter than announced.
    pub fn next_tail(&mut self) -> WebResult<Option<Vec<Piece>>> {
        let encryptor = self
            .encryptor
            .as_mut()
            .ok_or_else(|| out_of_order("read the blob's plan first"))?;
        match encryptor.next_tail()? {
            Some(ciphertext) => self.cut(ciphertext).map(Some),
            None => Ok(None),
        }
    }

    /// `POST` this path with [`part_urls_body`](Self::part_urls_body) for a part's URL.
    ///
    /// # Errors
    /// [`ErrorCode::InvalidState`] before the blob is created.
    pub fn parts_path(&self) -> WebResult<String> {
        Ok(self.pending()?.parts_path())
    }

    /// The body asking for part `part`'s upload URL.
    ///
    /// # Errors
    /// [`ErrorCode::InvalidState`] before the plan.
    pub fn part_urls_body(&self, part: u64) -> WebResult<String> {
        json(&self.plan_ref()?.part_urls_request(part))
    }

    /// Where to upload part `part`, from the answer to the part URL request.
    ///
    /// # Errors
    /// [`ErrorCode::InvalidResponse`] (no URL for the part, another length).
    pub fn part_target(&self, part: u64, answer_json: &str) -> WebResult<TargetView> {
        let urls: PartUrls = answer(answer_json, "part urls")?;
        let t = self.plan_ref()?.part_target(part, urls)?;
        Ok(TargetView {
            part: t.part,
            url: t.url,
            len: t.len,
            report_etag: t.report_etag,
        })
    }

    /// `PUT` this path with [`part_report_body`](Self::part_report_body) (S3 parts only).
    ///
    /// # Errors
    /// [`ErrorCode::InvalidState`] before the blob is created.
    pub fn part_report_path(&self, part: u64) -> WebResult<String> {
        Ok(self.pending()?.part_report_path(part))
    }

    /// The body reporting a part's `ETag`.
    ///
    /// # Errors
    /// [`ErrorCode::InvalidState`] before the blob is created.
    pub fn part_report_body(&self, etag: &str) -> WebResult<String> {
        json(&self.pending()?.part_report(etag.to_owned()))
    }

    /// `POST` this path once every part is uploaded (unless the plan said already complete).
    ///
    /// # Errors
    /// [`ErrorCode::InvalidState`] before the blob is created.
    pub fn complete_path(&self) -> WebResult<String> {
        Ok(self.pending()?.complete_path())
    }

    /// Ciphertext bytes produced so far, of the blob's total.
    #[must_use]
    pub fn progress(&self) -> Progress {
        self.splitter
            .as_ref()
            .map_or(Progress { done: 0, total: 0 }, PartSplitter::progress)
    }

    /// The encoded pointer (§14) to put into a message, once the whole blob went through: the
    /// blob id, the key, the digest, the size and what the sender says about the file. Secret.
    ///
    /// # Errors
    /// [`ErrorCode::InvalidState`] before the tail ended, [`ErrorCode::Malformed`] (content
    /// type not printable ASCII, a field over its limit).
    pub fn pointer(
        &self,
        content_type: &str,
        file_name: Option<&str>,
        thumbnail: Option<Vec<u8>>,
    ) -> WebResult<Zeroizing<Vec<u8>>> {
        let digest = self
            .encryptor
            .as_ref()
            .and_then(UploadEncryptor::digest)
            .ok_or_else(|| out_of_order("encrypt the whole source first"))?;
        Ok(self
            .pending()?
            .pointer(digest, content_type, file_name, thumbnail)
            .to_bytes()?)
    }
}

/// One download: the pointer, then the decryptor once the relay located the blob.
pub struct DownloadCore {
    pointer: AttachmentPointer,
    decryptor: Option<BlobDecryptor>,
}

impl std::fmt::Debug for DownloadCore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DownloadCore")
            .field("pointer", &self.pointer)
            .finish_non_exhaustive()
    }
}

impl DownloadCore {
    /// A download of the attachment an encoded pointer names.
    ///
    /// # Errors
    /// [`ErrorCode::Malformed`].
    pub fn start(pointer: &[u8]) -> WebResult<Self> {
        Ok(Self {
            pointer: AttachmentPointer::from_bytes(pointer)?,
            decryptor: None,
        })
    }

    /// `GET` this path (with the access token) for the download URL.
    #[must_use]
    pub fn path(&self) -> String {
        self.pointer.download_path()
    }

    /// The answer to [`path`](Self::path): the URL to `GET` (without the access token;
    /// relative to the relay's base URL when it starts with `/`), once the blob's size is the
    /// one the pointer implies.
    ///
    /// # Errors
    /// [`ErrorCode::InvalidResponse`] (shape, size).
    pub fn located(&mut self, answer_json: &str) -> WebResult<String> {
        let located: DownloadUrl = answer(answer_json, "download")?;
        self.pointer.check_located(&located)?;
        self.decryptor = Some(self.pointer.decryptor()?);
        Ok(located.url)
    }

    fn decryptor(&mut self) -> WebResult<&mut BlobDecryptor> {
        self.decryptor
            .as_mut()
            .ok_or_else(|| out_of_order("locate the blob first"))
    }

    /// Blob bytes in; the plaintext of the chunks they completed and verified out. Discard
    /// everything if a later call fails.
    ///
    /// # Errors
    /// [`ErrorCode::DecryptionFailed`] (tampered, another blob), [`ErrorCode::InvalidResponse`]
    /// (more bytes than the blob has).
    pub fn push(&mut self, ciphertext: &[u8]) -> WebResult<Zeroizing<Vec<u8>>> {
        Ok(self.decryptor()?.push(ciphertext)?)
    }

    /// After the last byte: the last plaintext, once the final chunk and the digest check out.
    ///
    /// # Errors
    /// [`ErrorCode::DecryptionFailed`] (digest, truncation), [`ErrorCode::InvalidResponse`]
    /// (the blob ended early), [`ErrorCode::InvalidState`].
    pub fn finish(&mut self) -> WebResult<Zeroizing<Vec<u8>>> {
        let decryptor = self
            .decryptor
            .take()
            .ok_or_else(|| out_of_order("locate the blob first"))?;
        Ok(decryptor.finish()?)
    }

    /// Blob bytes received, of the total.
    #[must_use]
    pub fn progress(&self) -> Progress {
        self.decryptor.as_ref().map_or(
            Progress {
                done: 0,
                total: self.pointer.blob_size().unwrap_or(0),
            },
            BlobDecryptor::progress,
        )
    }

    /// What the pointer says about the file.
    #[must_use]
    pub fn describe(&self) -> PointerView {
        PointerView::of(&self.pointer)
    }
}

/// What a pointer says about its file (no key, no digest).
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PointerView {
    /// The blob id (32 hex).
    pub blob_id: String,
    /// Plaintext length.
    pub size: u64,
    /// Blob (ciphertext) length.
    pub blob_size: u64,
    /// MIME type the sender gave (may be empty).
    pub content_type: String,
    /// File name, if the sender shared it.
    pub file_name: Option<String>,
    /// Whether a preview image is inline.
    pub has_thumbnail: bool,
}

impl PointerView {
    fn of(p: &AttachmentPointer) -> Self {
        Self {
            blob_id: p.blob_id_hex(),
            size: p.size,
            blob_size: p.blob_size().unwrap_or(0),
            content_type: p.content_type.clone(),
            file_name: p.file_name.clone(),
            has_thumbnail: p.thumbnail.is_some(),
        }
    }
}

/// What an encoded pointer says about its file, and its thumbnail.
///
/// # Errors
/// [`ErrorCode::Malformed`].
pub fn describe_pointer(pointer: &[u8]) -> WebResult<(PointerView, Option<Vec<u8>>)> {
    let p = AttachmentPointer::from_bytes(pointer)?;
    Ok((PointerView::of(&p), p.thumbnail.clone()))
}

/// A size given by the page (a `File`'s `size`).
fn size_arg(size: u64) -> WebResult<u64> {
    if haven_client_core::attachments::blob_size_for(size).is_none() {
        return Err(WebError::new(
            ErrorCode::Limit,
            format!("an attachment of {size} bytes is too large"),
        ));
    }
    Ok(size)
}

/// Checks a content type the page gives.
fn content_type_arg(t: &str) -> WebResult<()> {
    if haven_client_core::attachments::valid_content_type(t) {
        Ok(())
    } else {
        Err(invalid(
            "contentType must be printable ASCII of at most 255 bytes",
        ))
    }
}

#[cfg(test)]
mod tests;
