//! Attachments end to end: the I/O driver of the client core's attachment steps
//! ([`haven_client_core::attachments`], which holds the pointer, the resume state, the blob plan
//! and what each relay answer means). This module reads and writes files and makes the HTTP
//! transfers: encrypt with the core's streaming AEAD (PROTOCOL.md §10), upload the blob in parts
//! with progress and resume (§11.17), describe it with an [`AttachmentPointer`] (§14) that
//! travels only inside encrypted messages or diary entries; download from a pointer with
//! progress, verify the digest, decrypt and unpad.
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
use haven_client_core::attachments::{
    self as core_attachments, PartTarget, UploadEncryptor, UploadPlan, UploadStart,
    transfer_refusal,
};
use haven_protocol::api::blobs::{BlobInfo, DownloadUrl, PartUrls};
use haven_sdk::attachment::{AttachmentError, CHUNK_LEN, DIGEST_LEN};
use haven_sdk::diary::AttachmentRef;
use reqwest::{Method, StatusCode, header};
use serde::de::IgnoredAny;
use tokio::io::{AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::sync::mpsc;
use zeroize::Zeroizing;

pub use haven_client_core::attachments::{
    AttachmentPointer, MAX_CONTENT_TYPE_LEN, MAX_FILE_NAME_LEN, MAX_THUMBNAIL_LEN, POINTER_VERSION,
    PendingUpload, Progress, TransferError,
};

use crate::relay::{RelayClient, RelayError};

/// Ciphertext pieces in flight between the encrypting thread and the HTTP body.
const PIPE_DEPTH: usize = 8;
/// Connect timeout of transfers (a transfer itself may take as long as it needs).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// A transfer that moves no byte for this long fails.
const READ_TIMEOUT: Duration = Duration::from_secs(120);

/// Errors of attachment uploads and downloads: the I/O's own, or a core step's
/// [`TransferError`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AttachmentsError {
    /// The relay refused or failed a JSON request.
    #[error(transparent)]
    Relay(#[from] RelayError),
    /// A transfer failed on the network.
    #[error("transfer failed: {0}")]
    Transport(#[from] reqwest::Error),
    /// Reading the source or writing the destination failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// A core step refused: a malformed pointer, encryption or decryption (for downloads: the
    /// blob is not the one the pointer describes, or it was tampered with), a source of another
    /// length than announced, a blob of another size than the pointer implies, a refused part
    /// transfer, an unexpected relay answer.
    #[error(transparent)]
    Transfer(#[from] TransferError),
    /// The upload stopped before the whole source was encrypted (the transfer failed first).
    #[error("upload abandoned")]
    Abandoned,
}

impl From<AttachmentError> for AttachmentsError {
    fn from(e: AttachmentError) -> Self {
        Self::Transfer(TransferError::Crypto(e))
    }
}

/// The messenger sends and saves attachments through this module; a core step's error is an
/// attachment error there too.
impl From<TransferError> for crate::messenger::MessengerError {
    fn from(e: TransferError) -> Self {
        Self::Attachment(e.into())
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

/// Reads exactly `pending.size` plaintext bytes from `source`, encrypts them with the core's
/// encryptor and sends the ciphertext; returns the blob digest. Runs on a blocking thread.
fn encrypt_source(
    pending: &PendingUpload,
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
    let mut enc = UploadEncryptor::new(pending)?;
    let mut buf = Zeroizing::new(vec![0u8; CHUNK_LEN]);
    while enc.remaining() > 0 {
        let want = usize::try_from(enc.remaining())
            .unwrap_or(usize::MAX)
            .min(buf.len());
        let n = source.read(&mut buf[..want])?;
        if n == 0 {
            // Shorter than announced: the core says so.
            break;
        }
        send(enc.push(&buf[..n])?)?;
    }
    // One byte more than announced is refused by the encryptor.
    let extra = source.read(&mut buf[..1])?;
    send(enc.push(&buf[..extra])?)?;
    while let Some(chunk) = enc.next_tail()? {
        send(chunk)?;
    }
    enc.digest()
        .ok_or(AttachmentsError::from(AttachmentError::Poisoned))
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
        core_attachments::resolve_url(self.relay.base_url(), url)
    }

    /// Reserves a blob for `size` plaintext bytes under a fresh key. `ttl_secs` asks for a
    /// lifetime (the relay's default if `None`).
    ///
    /// # Errors
    /// [`AttachmentsError::Relay`] (e.g. `blob_quota_exceeded`, `blob_too_large`),
    /// [`TransferError::Crypto`] if the size is beyond the format.
    pub async fn start_upload(
        &self,
        size: u64,
        ttl_secs: Option<u64>,
    ) -> Result<PendingUpload, AttachmentsError> {
        let start = UploadStart::new(size, &mut rand::rng())?;
        let info: BlobInfo = self
            .relay
            .request_as(
                Method::POST,
                core_attachments::upload::CREATE_PATH,
                Some(&start.request(ttl_secs)),
            )
            .await?;
        Ok(start.created(&info)?)
    }

    /// Encrypts `source` (exactly `pending.size` bytes) and uploads the parts the relay does not
    /// have yet, then completes the blob; returns the blob digest. Call it again with the same
    /// pending upload and a fresh reader over the same content to resume after an
    /// interruption. `progress` is called as bytes go out (skipped parts count as done).
    ///
    /// # Errors
    /// Relay refusals, transfer failures, [`TransferError::SourceChanged`].
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
        let info: BlobInfo = self
            .relay
            .request_as::<BlobInfo, ()>(Method::GET, &pending.status_path(), None)
            .await?;
        let plan = pending.plan(&info)?;
        let (tx, rx) = mpsc::channel::<Bytes>(PIPE_DEPTH);
        let producer = {
            let pending = pending.clone();
            tokio::task::spawn_blocking(move || encrypt_source(&pending, source, &tx))
        };
        let mut feed = Feed {
            rx,
            leftover: Bytes::new(),
        };
        let sent = self
            .send_parts(pending, &plan, &mut feed, &mut progress)
            .await;
        // Unblocks the encryptor if the upload stopped early.
        drop(feed);
        let produced = producer
            .await
            .map_err(|e| TransferError::InvalidResponse(format!("encryptor: {e}")))?;
        // Report the root cause: a failing source (the transfer then fails too), else the
        // transfer (the encryptor then only saw its reader go away).
        let digest = match (sent, produced) {
            (Ok(()), Ok(digest)) => digest,
            (Err(err), Err(AttachmentsError::Abandoned)) | (Err(err), Ok(_)) => return Err(err),
            (_, Err(err)) => return Err(err),
        };
        if !plan.already_complete() {
            self.relay
                .request_as::<IgnoredAny, ()>(Method::POST, &pending.complete_path(), None)
                .await?;
        }
        Ok(digest)
    }

    async fn send_parts<F: FnMut(Progress) + Send>(
        &self,
        pending: &PendingUpload,
        plan: &UploadPlan,
        feed: &mut Feed,
        progress: &mut F,
    ) -> Result<(), AttachmentsError> {
        let total = plan.blob_size();
        let mut done = 0u64;
        for part in plan.parts() {
            if part.stored {
                // Already stored: re-encrypted bytes are only counted, not sent.
                let mut skipped = 0u64;
                while skipped < part.len {
                    let piece = feed
                        .next_upto(part.len - skipped)
                        .await
                        .ok_or(TransferError::SourceChanged { expected: 0 })?;
                    skipped += piece.len() as u64;
                }
                done += part.len;
                progress(Progress { done, total });
                continue;
            }
            let urls: PartUrls = self
                .relay
                .request_as(
                    Method::POST,
                    &pending.parts_path(),
                    Some(&plan.part_urls_request(part.part)),
                )
                .await?;
            let target = plan.part_target(part.part, urls)?;
            let etag = self
                .put_part(&target, feed, &mut done, total, progress)
                .await?;
            if target.report_etag {
                self.relay
                    .request_as::<IgnoredAny, _>(
                        Method::PUT,
                        &pending.part_report_path(part.part),
                        Some(&pending.part_report(etag)),
                    )
                    .await?;
            }
        }
        Ok(())
    }

    async fn put_part<F: FnMut(Progress) + Send>(
        &self,
        target: &PartTarget,
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
        if !response.status().is_success() {
            return Err(refused(response).await);
        }
        let etag = response
            .headers()
            .get(header::ETAG)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = if etag.is_some() {
            Bytes::new()
        } else {
            response.bytes().await?
        };
        Ok(core_attachments::part_etag(etag.as_deref(), &body)?)
    }
}

/// Turns a failed transfer response into an error carrying the relay's code (or S3's).
async fn refused(response: reqwest::Response) -> AttachmentsError {
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    transfer_refusal(status, &text).into()
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
        if !core_attachments::valid_content_type(content_type) {
            return Err(TransferError::Malformed.into());
        }
        let file = std::fs::File::open(path)?;
        let size = file.metadata()?.len();
        let pending = self.start_upload(size, None).await?;
        let digest = self.upload(&pending, file, progress).await?;
        Ok(pending.pointer(digest, content_type, file_name, thumbnail))
    }

    /// Asks the relay where to download the blob of `pointer` and checks its size.
    async fn locate(&self, pointer: &AttachmentPointer) -> Result<DownloadUrl, AttachmentsError> {
        let located: DownloadUrl = self
            .relay
            .request_as::<DownloadUrl, ()>(Method::GET, &pointer.download_path(), None)
            .await?;
        pointer.check_located(&located)?;
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
            return Err(
                TransferError::InvalidResponse("range request not honoured".to_owned()).into(),
            );
        }
        let mut received = offset;
        let mut body = response.bytes_stream();
        while let Some(piece) = body.next().await {
            let piece = piece?;
            received += piece.len() as u64;
            if received > total {
                return Err(TransferError::SizeMismatch {
                    expected: total,
                    actual: received,
                }
                .into());
            }
            sink(&piece).await?;
        }
        if received != total {
            return Err(TransferError::SizeMismatch {
                expected: total,
                actual: received,
            }
            .into());
        }
        Ok(())
    }

    /// Downloads, verifies, decrypts and unpads the attachment into `writer`, calling
    /// `progress` as blob bytes arrive. Plaintext is written as soon as each 64 KiB chunk
    /// authenticates, and the blob digest is checked at the end: on any error, discard what
    /// was written ([`download_to_file`](Self::download_to_file) does that for you).
    ///
    /// # Errors
    /// Relay refusals, transfer failures, [`TransferError::Crypto`] for a blob that is not
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
        let mut dec = pointer.decryptor()?;
        self.fetch(&located.url, 0, located.size, async |piece: &[u8]| {
            let plain = dec.push(piece)?;
            writer.write_all(&plain).await?;
            progress(dec.progress());
            Ok(())
        })
        .await?;
        let last = dec.finish()?;
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
        let mut pointer = AttachmentPointer::from_diary_ref(attachment, [0u8; DIGEST_LEN]);
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
            if matches!(err, AttachmentsError::Transfer(TransferError::Crypto(_))) {
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
    let mut dec = pointer.decryptor()?;
    let mut buf = vec![0u8; CHUNK_LEN + 16];
    loop {
        let n = input.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        let plain = dec.push(&buf[..n])?;
        output.write_all(&plain).await?;
    }
    let last = dec.finish()?;
    output.write_all(&last).await?;
    output.flush().await?;
    output.sync_all().await?;
    Ok(())
}
