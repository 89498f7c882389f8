//! Attachments end to end: encrypt with the core's streaming AEAD (PROTOCOL.md §10), which pads
//! to a size bucket inside the stream, upload the blob in parts with progress and resume
//! (§11.17), and describe it with an [`AttachmentPointer`] (§14) that travels only inside
//! encrypted messages or diary entries; download from a pointer with progress, verify the
//! digest, decrypt and unpad.
//!
//! Memory stays constant whatever the file size: the plaintext is read 64 KiB at a time on a
//! blocking thread, ciphertext flows to the HTTP body through a small bounded channel, and
//! downloads are decrypted chunk by chunk.
//!
//! Resuming: an upload is described by a [`PendingUpload`] (blob id and key: secret, keep it in
//! the encrypted client store). After an interruption, [`Attachments::upload`] with the same
//! pending upload and the same file asks the relay which parts it has and sends only the
//! others: encryption is deterministic given the key, so the re-encrypted bytes of the parts
//! already stored are simply skipped. Downloads to a file stage the ciphertext next to the
//! destination and continue with an HTTP range request.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt as _;
use haven_protocol::api::blobs::{
    BlobInfo, CreateBlobRequest, DownloadUrl, PartReport, PartStored, PartUrl, PartUrls,
    PartUrlsRequest,
};
use haven_protocol::api::error::ErrorBody;
use haven_protocol::padding::attachment_padded_len;
use haven_sdk::attachment::{
    AttachmentDecryptor, AttachmentEncryptor, AttachmentError, AttachmentKey, CHUNK_LEN,
    DIGEST_LEN, attachment_ciphertext_len,
};
use haven_sdk::diary::AttachmentRef;
use reqwest::{Method, StatusCode, header};
use serde::de::IgnoredAny;
use tokio::io::{AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::sync::mpsc;
use zeroize::{Zeroize as _, Zeroizing};

use crate::relay::{RelayClient, RelayError};

/// Format version of [`AttachmentPointer::to_bytes`].
pub const POINTER_VERSION: u8 = 0x01;
/// Longest content type in a pointer (bytes of printable ASCII).
pub const MAX_CONTENT_TYPE_LEN: usize = 255;
/// Longest file name in a pointer (bytes of UTF-8).
pub const MAX_FILE_NAME_LEN: usize = 1024;
/// Largest inline thumbnail in a pointer.
pub const MAX_THUMBNAIL_LEN: usize = 64 * 1024;

const FLAG_FILE_NAME: u8 = 0x01;
const FLAG_THUMBNAIL: u8 = 0x02;
/// Ciphertext pieces in flight between the encrypting thread and the HTTP body.
const PIPE_DEPTH: usize = 8;
/// Connect timeout of transfers (a transfer itself may take as long as it needs).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// A transfer that moves no byte for this long fails.
const READ_TIMEOUT: Duration = Duration::from_secs(120);

/// Errors of attachment uploads and downloads.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AttachmentsError {
    /// The relay refused or failed a JSON request.
    #[error(transparent)]
    Relay(#[from] RelayError),
    /// A transfer (part upload or download) was refused: the HTTP status and, when the relay
    /// answered, its error code.
    #[error("transfer refused ({status}): {code}")]
    TransferRefused {
        /// HTTP status.
        status: u16,
        /// The relay's error code, or the S3 error text.
        code: String,
    },
    /// A transfer failed on the network.
    #[error("transfer failed: {0}")]
    Transport(#[from] reqwest::Error),
    /// Reading the source or writing the destination failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
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
    /// The relay's blob does not have the size the pointer implies.
    #[error("blob has {actual} bytes, expected {expected}")]
    SizeMismatch {
        /// Size implied by the pointer.
        expected: u64,
        /// Size reported by the relay.
        actual: u64,
    },
    /// A pointer or pending upload does not decode, or a field is over its limit.
    #[error("malformed attachment pointer")]
    Malformed,
    /// The upload stopped before the whole source was encrypted (the transfer failed first).
    #[error("upload abandoned")]
    Abandoned,
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

/// Everything needed to fetch and open an attachment. Secret (holds the key): it travels only
/// inside end-to-end encrypted messages or diary entries; `Debug` shows no key, name or
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

/// A bounds-checked reader over a byte slice.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], AttachmentsError> {
        let (head, rest) = self
            .0
            .split_at_checked(n)
            .ok_or(AttachmentsError::Malformed)?;
        self.0 = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], AttachmentsError> {
        <[u8; N]>::try_from(self.take(N)?).map_err(|_| AttachmentsError::Malformed)
    }

    fn u8(&mut self) -> Result<u8, AttachmentsError> {
        Ok(self.array::<1>()?[0])
    }
}

fn valid_content_type(t: &str) -> bool {
    t.len() <= MAX_CONTENT_TYPE_LEN && t.bytes().all(|b| (0x20..0x7f).contains(&b))
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

    /// The blob size this pointer implies.
    #[must_use]
    pub fn blob_size(&self) -> Option<u64> {
        attachment_ciphertext_len(attachment_padded_len(self.size)?)
    }

    /// The blob id as the relay writes it (32 lowercase hex digits).
    #[must_use]
    pub fn blob_id_hex(&self) -> String {
        hex::encode(self.blob_id)
    }

    /// Encodes the pointer (§14):
    /// `0x01 || blob_id 16 || key 32 || digest 32 || size u64 || u8 len || content_type ||
    /// flags u8 || [u16 len || file_name] || [u32 len || thumbnail]`.
    ///
    /// # Errors
    /// [`AttachmentsError::Malformed`] if a field is over its limit or the content type is not
    /// printable ASCII.
    pub fn to_bytes(&self) -> Result<Zeroizing<Vec<u8>>, AttachmentsError> {
        if !valid_content_type(&self.content_type)
            || self
                .file_name
                .as_ref()
                .is_some_and(|n| n.len() > MAX_FILE_NAME_LEN)
            || self
                .thumbnail
                .as_ref()
                .is_some_and(|t| t.len() > MAX_THUMBNAIL_LEN)
        {
            return Err(AttachmentsError::Malformed);
        }
        let mut out = Zeroizing::new(Vec::with_capacity(
            128 + self.content_type.len() + self.thumbnail.as_ref().map_or(0, Vec::len),
        ));
        out.push(POINTER_VERSION);
        out.extend_from_slice(&self.blob_id);
        out.extend_from_slice(self.key.as_bytes());
        out.extend_from_slice(&self.digest);
        out.extend_from_slice(&self.size.to_be_bytes());
        // Checked above: ≤ 255.
        out.push(self.content_type.len() as u8);
        out.extend_from_slice(self.content_type.as_bytes());
        let mut flags = 0u8;
        if self.file_name.is_some() {
            flags |= FLAG_FILE_NAME;
        }
        if self.thumbnail.is_some() {
            flags |= FLAG_THUMBNAIL;
        }
        out.push(flags);
        if let Some(name) = &self.file_name {
            // Checked above: ≤ 1024.
            out.extend_from_slice(&(name.len() as u16).to_be_bytes());
            out.extend_from_slice(name.as_bytes());
        }
        if let Some(t) = &self.thumbnail {
            // Checked above: ≤ 64 KiB.
            out.extend_from_slice(&(t.len() as u32).to_be_bytes());
            out.extend_from_slice(t);
        }
        Ok(out)
    }

    /// Decodes [`to_bytes`](Self::to_bytes) output. Every length is checked before it is read;
    /// unknown versions or flags, over-long fields and trailing bytes are refused.
    ///
    /// # Errors
    /// [`AttachmentsError::Malformed`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, AttachmentsError> {
        let mut r = Reader(bytes);
        if r.u8()? != POINTER_VERSION {
            return Err(AttachmentsError::Malformed);
        }
        let blob_id = r.array::<16>()?;
        let key = AttachmentKey::from_bytes(r.array::<32>()?);
        let digest = r.array::<DIGEST_LEN>()?;
        let size = u64::from_be_bytes(r.array::<8>()?);
        if attachment_padded_len(size).is_none() {
            return Err(AttachmentsError::Malformed);
        }
        let ct_len = usize::from(r.u8()?);
        let content_type = std::str::from_utf8(r.take(ct_len)?)
            .map_err(|_| AttachmentsError::Malformed)?
            .to_owned();
        if !valid_content_type(&content_type) {
            return Err(AttachmentsError::Malformed);
        }
        let flags = r.u8()?;
        if flags & !(FLAG_FILE_NAME | FLAG_THUMBNAIL) != 0 {
            return Err(AttachmentsError::Malformed);
        }
        let file_name = if flags & FLAG_FILE_NAME != 0 {
            let len = usize::from(u16::from_be_bytes(r.array::<2>()?));
            if len > MAX_FILE_NAME_LEN {
                return Err(AttachmentsError::Malformed);
            }
            Some(
                std::str::from_utf8(r.take(len)?)
                    .map_err(|_| AttachmentsError::Malformed)?
                    .to_owned(),
            )
        } else {
            None
        };
        let thumbnail = if flags & FLAG_THUMBNAIL != 0 {
            let len = usize::try_from(u32::from_be_bytes(r.array::<4>()?))
                .map_err(|_| AttachmentsError::Malformed)?;
            if len > MAX_THUMBNAIL_LEN {
                return Err(AttachmentsError::Malformed);
            }
            Some(r.take(len)?.to_vec())
        } else {
            None
        };
        if !r.0.is_empty() {
            return Err(AttachmentsError::Malformed);
        }
        Ok(Self {
            blob_id,
            key,
            digest,
            size,
            content_type,
            file_name,
            thumbnail,
        })
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
    /// `0x01 || blob_id 16 || key 32 || size u64` (57 bytes).
    #[must_use]
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::with_capacity(57));
        out.push(POINTER_VERSION);
        out.extend_from_slice(&self.blob_id);
        out.extend_from_slice(self.key.as_bytes());
        out.extend_from_slice(&self.size.to_be_bytes());
        out
    }

    /// Decodes [`to_bytes`](Self::to_bytes) output.
    ///
    /// # Errors
    /// [`AttachmentsError::Malformed`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, AttachmentsError> {
        let mut r = Reader(bytes);
        if r.u8()? != POINTER_VERSION {
            return Err(AttachmentsError::Malformed);
        }
        let blob_id = r.array::<16>()?;
        let key = AttachmentKey::from_bytes(r.array::<32>()?);
        let size = u64::from_be_bytes(r.array::<8>()?);
        if !r.0.is_empty() || attachment_padded_len(size).is_none() {
            return Err(AttachmentsError::Malformed);
        }
        Ok(Self { blob_id, key, size })
    }

    /// The blob size (ciphertext) of this upload.
    #[must_use]
    pub fn blob_size(&self) -> Option<u64> {
        attachment_ciphertext_len(attachment_padded_len(self.size)?)
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

/// Ciphertext handed from the encrypting thread to the uploader, cut at part boundaries on
/// demand.
struct Feed {
    rx: mpsc::Receiver<Bytes>,
    leftover: Bytes,
}

impl Feed {
    /// At most `max` next bytes; `None` when the encryptor stopped (finished or failed).
    async fn next_upto(&mut self, max: u64) -> Option<Bytes> {
        if self.leftover.is_empty() {
            self.leftover = self.rx.recv().await?;
        }
        let n = usize::try_from(max)
            .unwrap_or(usize::MAX)
            .min(self.leftover.len());
        Some(self.leftover.split_to(n))
    }
}

/// Reads exactly `len` plaintext bytes from `source`, encrypts them and sends the ciphertext;
/// returns the blob digest. Runs on a blocking thread.
fn encrypt_source(
    key: &AttachmentKey,
    len: u64,
    mut source: impl Read,
    tx: &mpsc::Sender<Bytes>,
) -> Result<[u8; DIGEST_LEN], AttachmentsError> {
    let send = |out: Vec<u8>| -> Result<(), AttachmentsError> {
        if out.is_empty() {
            return Ok(());
        }
        // The receiver is gone only if the upload was abandoned; stop quietly.
        tx.blocking_send(Bytes::from(out))
            .map_err(|_| AttachmentsError::Abandoned)
    };
    let mut enc = AttachmentEncryptor::new(key, len)?;
    let mut buf = Zeroizing::new(vec![0u8; CHUNK_LEN]);
    let mut remaining = len;
    while remaining > 0 {
        let want = usize::try_from(remaining)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        let n = source.read(&mut buf[..want])?;
        if n == 0 {
            return Err(AttachmentsError::SourceChanged { expected: len });
        }
        remaining -= n as u64;
        send(enc.push(&buf[..n])?)?;
    }
    if source.read(&mut buf[..1])? != 0 {
        return Err(AttachmentsError::SourceChanged { expected: len });
    }
    let mut tail = enc.finish_streaming()?;
    while let Some(chunk) = tail.next_chunk()? {
        send(chunk)?;
    }
    tail.digest()
        .ok_or(AttachmentsError::Crypto(AttachmentError::Poisoned))
}

/// Attachment transfers for one logged-in [`RelayClient`].
pub struct Attachments<'a> {
    relay: &'a RelayClient,
    http: reqwest::Client,
}

impl fmt::Debug for Attachments<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Attachments").finish_non_exhaustive()
    }
}

impl<'a> Attachments<'a> {
    /// Transfers through `relay`'s session (presigned URLs and transfer tokens are fetched
    /// with its access token; the transfers themselves carry no access token).
    ///
    /// # Errors
    /// [`AttachmentsError::Transport`] if the HTTP client cannot be built.
    pub fn new(relay: &'a RelayClient) -> Result<Self, AttachmentsError> {
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(READ_TIMEOUT)
            .user_agent(concat!("haven-client/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self { relay, http })
    }

    fn absolute(&self, url: &str) -> String {
        if url.starts_with('/') {
            format!("{}{url}", self.relay.base_url())
        } else {
            url.to_owned()
        }
    }

    /// Reserves a blob for `size` plaintext bytes under a fresh key. `ttl_secs` asks for a
    /// lifetime (the relay's default if `None`).
    ///
    /// # Errors
    /// [`AttachmentsError::Relay`] (e.g. `blob_quota_exceeded`, `blob_too_large`),
    /// [`AttachmentsError::Crypto`] if the size is beyond the format.
    pub async fn start_upload(
        &self,
        size: u64,
        ttl_secs: Option<u64>,
    ) -> Result<PendingUpload, AttachmentsError> {
        let padded = attachment_padded_len(size).ok_or(AttachmentError::TooLarge(size))?;
        let blob_size = attachment_ciphertext_len(padded).ok_or(AttachmentError::TooLarge(size))?;
        let mut rng = rand::rng();
        let key = AttachmentKey::generate(&mut rng);
        let body = CreateBlobRequest {
            size: blob_size,
            ttl_secs,
        };
        let info: BlobInfo = self
            .relay
            .request_as(Method::POST, "/v1/blobs", Some(&body))
            .await?;
        if info.size != blob_size {
            return Err(AttachmentsError::SizeMismatch {
                expected: blob_size,
                actual: info.size,
            });
        }
        Ok(PendingUpload {
            blob_id: *info.blob_id.as_bytes(),
            key,
            size,
        })
    }

    /// Encrypts `source` (exactly `pending.size` bytes) and uploads the parts the relay does not
    /// have yet, then completes the blob; returns the blob digest. Call it again with the same
    /// pending upload and a fresh reader over the same content to resume after an
    /// interruption. `progress` is called as bytes go out (skipped parts count as done).
    ///
    /// # Errors
    /// Relay refusals, transfer failures, [`AttachmentsError::SourceChanged`].
    pub async fn upload<R, F>(
        &self,
        pending: &PendingUpload,
        source: R,
        mut progress: F,
    ) -> Result<[u8; DIGEST_LEN], AttachmentsError>
    where
        R: Read + Send + 'static,
        F: FnMut(Progress) + Send,
    {
        let path = format!("/v1/blobs/{}", hex::encode(pending.blob_id));
        let info: BlobInfo = self
            .relay
            .request_as::<BlobInfo, ()>(Method::GET, &path, None)
            .await?;
        let expected = pending.blob_size().ok_or(AttachmentsError::Malformed)?;
        if info.size != expected || info.part_size == 0 {
            return Err(AttachmentsError::SizeMismatch {
                expected,
                actual: info.size,
            });
        }
        let complete = info.state == "complete";
        let (tx, rx) = mpsc::channel::<Bytes>(PIPE_DEPTH);
        let key = pending.key.clone();
        let len = pending.size;
        let producer = tokio::task::spawn_blocking(move || encrypt_source(&key, len, source, &tx));
        let mut feed = Feed {
            rx,
            leftover: Bytes::new(),
        };
        let sent = self
            .send_parts(&path, &info, complete, &mut feed, &mut progress)
            .await;
        // Unblocks the encryptor if the upload stopped early.
        drop(feed);
        let produced = producer
            .await
            .map_err(|e| AttachmentsError::InvalidResponse(format!("encryptor: {e}")))?;
        // Report the root cause: a failing source (the transfer then fails too), else the
        // transfer (the encryptor then only saw its reader go away).
        let digest = match (sent, produced) {
            (Ok(()), Ok(digest)) => digest,
            (Err(err), Err(AttachmentsError::Abandoned)) | (Err(err), Ok(_)) => return Err(err),
            (_, Err(err)) => return Err(err),
        };
        if !complete {
            self.relay
                .request_as::<IgnoredAny, ()>(Method::POST, &format!("{path}/complete"), None)
                .await?;
        }
        Ok(digest)
    }

    async fn send_parts<F: FnMut(Progress) + Send>(
        &self,
        path: &str,
        info: &BlobInfo,
        complete: bool,
        feed: &mut Feed,
        progress: &mut F,
    ) -> Result<(), AttachmentsError> {
        let mut done = 0u64;
        for part in 0..info.part_count {
            let start = part.saturating_mul(info.part_size);
            let part_len = info.size.saturating_sub(start).min(info.part_size);
            if complete || info.parts_received.contains(&part) {
                // Already stored: re-encrypted bytes are only counted, not sent.
                let mut skipped = 0u64;
                while skipped < part_len {
                    let piece = feed
                        .next_upto(part_len - skipped)
                        .await
                        .ok_or_else(|| AttachmentsError::SourceChanged { expected: 0 })?;
                    skipped += piece.len() as u64;
                }
                done += part_len;
                progress(Progress {
                    done,
                    total: info.size,
                });
                continue;
            }
            let urls: PartUrls = self
                .relay
                .request_as(
                    Method::POST,
                    &format!("{path}/parts"),
                    Some(&PartUrlsRequest { parts: vec![part] }),
                )
                .await?;
            let target = urls
                .urls
                .into_iter()
                .find(|u| u.part == part && u.len == part_len)
                .ok_or_else(|| AttachmentsError::InvalidResponse("part url".to_owned()))?;
            let etag = self
                .put_part(&target, feed, &mut done, info.size, progress)
                .await?;
            if !target.url.starts_with('/') {
                // S3: tell the relay the part's ETag (the relay records local parts itself).
                self.relay
                    .request_as::<IgnoredAny, _>(
                        Method::PUT,
                        &format!("{path}/parts/{part}"),
                        Some(&PartReport { etag }),
                    )
                    .await?;
            }
        }
        Ok(())
    }

    async fn put_part<F: FnMut(Progress) + Send>(
        &self,
        target: &PartUrl,
        feed: &mut Feed,
        done: &mut u64,
        total: u64,
        progress: &mut F,
    ) -> Result<String, AttachmentsError> {
        let (body_tx, body_rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(2);
        let body = reqwest::Body::wrap_stream(futures_util::stream::unfold(
            body_rx,
            |mut rx| async move { rx.recv().await.map(|item| (item, rx)) },
        ));
        let request = self
            .http
            .put(self.absolute(&target.url))
            .header(header::CONTENT_LENGTH, target.len)
            .header(header::CONTENT_TYPE, "application/octet-stream")
            .body(body)
            .send();
        let forward = async move {
            let body_tx = body_tx;
            let mut sent = 0u64;
            while sent < target.len {
                let Some(piece) = feed.next_upto(target.len - sent).await else {
                    // The encryptor stopped early; its error is reported by the caller.
                    let _ = body_tx
                        .send(Err(std::io::Error::other("encryptor stopped")))
                        .await;
                    return;
                };
                let n = piece.len() as u64;
                if body_tx.send(Ok(piece)).await.is_err() {
                    // The request ended early (refused or failed); its result says why.
                    return;
                }
                sent += n;
                *done += n;
                progress(Progress { done: *done, total });
            }
        };
        let (response, ()) = tokio::join!(request, forward);
        let response = response?;
        let status = response.status();
        if !status.is_success() {
            return Err(refused(response).await);
        }
        let etag = response
            .headers()
            .get(header::ETAG)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        match etag {
            Some(etag) => Ok(etag),
            // The local backend answers JSON `{part, etag}`.
            None => {
                let stored: PartStored = response
                    .json()
                    .await
                    .map_err(|e| AttachmentsError::InvalidResponse(e.to_string()))?;
                Ok(stored.etag)
            }
        }
    }
}

/// Turns a failed transfer response into an error carrying the relay's code (or S3's text).
async fn refused(response: reqwest::Response) -> AttachmentsError {
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    let code = serde_json::from_str::<ErrorBody>(&text)
        .ok()
        .map(|body| body.error.code)
        .or_else(|| {
            // S3 error documents: <Error><Code>…</Code>…
            let start = text.find("<Code>")? + "<Code>".len();
            let end = text[start..].find("</Code>")? + start;
            Some(text[start..end].to_owned())
        })
        .unwrap_or_default();
    AttachmentsError::TransferRefused { status, code }
}

impl Attachments<'_> {
    /// Uploads the file at `path` and returns the pointer to embed in a message: starts a
    /// blob, encrypts and uploads, completes. For resumable uploads use
    /// [`start_upload`](Self::start_upload) + [`upload`](Self::upload) and keep the
    /// [`PendingUpload`].
    ///
    /// # Errors
    /// As [`start_upload`](Self::start_upload) and [`upload`](Self::upload).
    pub async fn upload_file<F: FnMut(Progress) + Send>(
        &self,
        path: &Path,
        content_type: &str,
        file_name: Option<&str>,
        thumbnail: Option<Vec<u8>>,
        progress: F,
    ) -> Result<AttachmentPointer, AttachmentsError> {
        if !valid_content_type(content_type) {
            return Err(AttachmentsError::Malformed);
        }
        let file = std::fs::File::open(path)?;
        let size = file.metadata()?.len();
        let pending = self.start_upload(size, None).await?;
        let digest = self.upload(&pending, file, progress).await?;
        Ok(pending.pointer(digest, content_type, file_name, thumbnail))
    }

    /// Asks the relay where to download the blob of `pointer` and checks its size.
    async fn locate(&self, pointer: &AttachmentPointer) -> Result<DownloadUrl, AttachmentsError> {
        let expected = pointer.blob_size().ok_or(AttachmentsError::Malformed)?;
        let located: DownloadUrl = self
            .relay
            .request_as::<DownloadUrl, ()>(
                Method::GET,
                &format!("/v1/blobs/{}/download", pointer.blob_id_hex()),
                None,
            )
            .await?;
        if located.size != expected {
            return Err(AttachmentsError::SizeMismatch {
                expected,
                actual: located.size,
            });
        }
        Ok(located)
    }

    /// Streams the blob from byte `offset` into `sink` (called per received piece).
    async fn fetch<F>(
        &self,
        url: &str,
        offset: u64,
        total: u64,
        mut sink: F,
    ) -> Result<(), AttachmentsError>
    where
        F: AsyncFnMut(&[u8]) -> Result<(), AttachmentsError>,
    {
        let mut request = self.http.get(self.absolute(url));
        if offset > 0 {
            request = request.header(header::RANGE, format!("bytes={offset}-"));
        }
        let response = request.send().await?;
        let status = response.status();
        if !status.is_success() {
            return Err(refused(response).await);
        }
        if offset > 0 && status != StatusCode::PARTIAL_CONTENT {
            return Err(AttachmentsError::InvalidResponse(
                "range request not honoured".to_owned(),
            ));
        }
        let mut received = offset;
        let mut body = response.bytes_stream();
        while let Some(piece) = body.next().await {
            let piece = piece?;
            received += piece.len() as u64;
            if received > total {
                return Err(AttachmentsError::SizeMismatch {
                    expected: total,
                    actual: received,
                });
            }
            sink(&piece).await?;
        }
        if received != total {
            return Err(AttachmentsError::SizeMismatch {
                expected: total,
                actual: received,
            });
        }
        Ok(())
    }

    /// Downloads, verifies, decrypts and unpads the attachment into `writer`, calling
    /// `progress` as blob bytes arrive. Plaintext is written as soon as each 64 KiB chunk
    /// authenticates, and the blob digest is checked at the end: on any error, discard what
    /// was written ([`download_to_file`](Self::download_to_file) does that for you).
    ///
    /// # Errors
    /// Relay refusals, transfer failures, [`AttachmentsError::Crypto`] for a blob that is not
    /// the one the pointer describes.
    pub async fn download<W, F>(
        &self,
        pointer: &AttachmentPointer,
        writer: &mut W,
        mut progress: F,
    ) -> Result<(), AttachmentsError>
    where
        W: AsyncWrite + Unpin + Send,
        F: FnMut(Progress) + Send,
    {
        let located = self.locate(pointer).await?;
        let total = located.size;
        let mut dec = AttachmentDecryptor::new(&pointer.key, pointer.digest);
        let mut done = 0u64;
        self.fetch(&located.url, 0, total, async |piece: &[u8]| {
            let plain = Zeroizing::new(dec.push(piece)?);
            writer.write_all(&plain).await?;
            done += piece.len() as u64;
            progress(Progress { done, total });
            Ok(())
        })
        .await?;
        let last = Zeroizing::new(dec.finish()?);
        writer.write_all(&last).await?;
        writer.flush().await?;
        Ok(())
    }

    /// Downloads the attachment to `dest`, resumably: the ciphertext is staged in
    /// `<dest>.haven-part` (an interrupted download continues from its length with a range
    /// request), then verified and decrypted into `<dest>.haven-tmp`, which is renamed to
    /// `dest` only once the digest matched. `dest` never holds unverified data.
    ///
    /// # Errors
    /// As [`download`](Self::download); a staged file that fails verification is deleted.
    pub async fn download_to_file<F: FnMut(Progress) + Send>(
        &self,
        pointer: &AttachmentPointer,
        dest: &Path,
        mut progress: F,
    ) -> Result<(), AttachmentsError> {
        let staged = self.stage(pointer, dest, &mut progress).await?;
        self.open_staged(pointer, &staged, dest).await
    }

    /// Downloads a diary attachment (§11.16.1: an entry's [`AttachmentRef`] carries the blob id,
    /// the key and the plaintext length, but no digest) to `dest`, resumably. The staged
    /// ciphertext's own SHA-256 stands in for the digest: integrity rests on the stream's
    /// per-chunk authentication and final-chunk flag under the secret key, which never leaves
    /// the account's devices.
    ///
    /// # Errors
    /// As [`download_to_file`](Self::download_to_file).
    pub async fn download_diary_attachment<F: FnMut(Progress) + Send>(
        &self,
        attachment: &AttachmentRef,
        dest: &Path,
        mut progress: F,
    ) -> Result<(), AttachmentsError> {
        let mut pointer = AttachmentPointer {
            blob_id: attachment.blob_id,
            key: AttachmentKey::from_bytes(attachment.key),
            digest: [0u8; DIGEST_LEN],
            size: attachment.plaintext_len,
            content_type: String::new(),
            file_name: None,
            thumbnail: None,
        };
        let staged = self.stage(&pointer, dest, &mut progress).await?;
        pointer.digest = sha256_file(&staged).await?;
        self.open_staged(&pointer, &staged, dest).await
    }

    /// Downloads the ciphertext of `pointer`'s blob into `<dest>.haven-part`, continuing a
    /// partial one with a range request.
    async fn stage<F: FnMut(Progress) + Send>(
        &self,
        pointer: &AttachmentPointer,
        dest: &Path,
        progress: &mut F,
    ) -> Result<PathBuf, AttachmentsError> {
        let staged = with_suffix(dest, ".haven-part");
        let located = self.locate(pointer).await?;
        let total = located.size;
        let mut have = match tokio::fs::metadata(&staged).await {
            Ok(m) => m.len(),
            Err(_) => 0,
        };
        if have > total {
            tokio::fs::remove_file(&staged).await?;
            have = 0;
        }
        if have < total {
            let mut file = tokio::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&staged)
                .await?;
            let mut done = have;
            progress(Progress { done, total });
            self.fetch(&located.url, have, total, async |piece: &[u8]| {
                file.write_all(piece).await?;
                done += piece.len() as u64;
                progress(Progress { done, total });
                Ok(())
            })
            .await?;
            file.flush().await?;
            file.sync_all().await?;
        }
        Ok(staged)
    }

    /// Verifies and decrypts a staged blob into `dest` (through `<dest>.haven-tmp`).
    async fn open_staged(
        &self,
        pointer: &AttachmentPointer,
        staged: &Path,
        dest: &Path,
    ) -> Result<(), AttachmentsError> {
        let tmp = with_suffix(dest, ".haven-tmp");
        let opened = decrypt_file(pointer, staged, &tmp).await;
        if let Err(err) = opened {
            let _ = tokio::fs::remove_file(&tmp).await;
            if matches!(err, AttachmentsError::Crypto(_)) {
                // Tampered or wrong blob: a retry must download it again.
                let _ = tokio::fs::remove_file(staged).await;
            }
            return Err(err);
        }
        tokio::fs::rename(&tmp, dest).await?;
        tokio::fs::remove_file(staged).await?;
        Ok(())
    }

    /// Deletes a blob this account uploaded (e.g. an abandoned upload).
    ///
    /// # Errors
    /// [`AttachmentsError::Relay`] (`blob_not_found` for another account's blob).
    pub async fn delete(&self, blob_id: &[u8; 16]) -> Result<(), AttachmentsError> {
        self.relay
            .request_as::<IgnoredAny, ()>(
                Method::DELETE,
                &format!("/v1/blobs/{}", hex::encode(blob_id)),
                None,
            )
            .await?;
        Ok(())
    }
}

/// SHA-256 of a file, read 64 KiB at a time.
async fn sha256_file(path: &Path) -> Result<[u8; DIGEST_LEN], AttachmentsError> {
    use sha2::Digest as _;
    let mut input = tokio::fs::File::open(path).await?;
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0u8; CHUNK_LEN];
    loop {
        let n = input.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finalize().into())
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Verifies and decrypts a staged blob file into `out`.
async fn decrypt_file(
    pointer: &AttachmentPointer,
    staged: &Path,
    out: &Path,
) -> Result<(), AttachmentsError> {
    let mut input = tokio::fs::File::open(staged).await?;
    let mut output = tokio::fs::File::create(out).await?;
    let mut dec = AttachmentDecryptor::new(&pointer.key, pointer.digest);
    let mut buf = vec![0u8; CHUNK_LEN + 16];
    loop {
        let n = input.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        let plain = Zeroizing::new(dec.push(&buf[..n])?);
        output.write_all(&plain).await?;
    }
    let last = Zeroizing::new(dec.finish()?);
    output.write_all(&last).await?;
    output.flush().await?;
    output.sync_all().await?;
    Ok(())
}
