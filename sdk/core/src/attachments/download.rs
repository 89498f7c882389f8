//! Downloading an attachment (PROTOCOL §10, §11.17, §14): the relay's answer to
//! `GET /v1/blobs/{id}/download` must name a blob of exactly the size the pointer implies; the
//! bytes are then decrypted as they arrive, each 64 KiB chunk released only once it
//! authenticates, and the blob's digest checked at the end.

use haven_protocol::api::blobs::DownloadUrl;
use haven_sdk::attachment::AttachmentDecryptor;
use zeroize::Zeroizing;

use super::{AttachmentPointer, Progress, TransferError};

impl AttachmentPointer {
    /// `GET` this path for the blob's download URL, then [`check_located`](Self::check_located).
    #[must_use]
    pub fn download_path(&self) -> String {
        format!("/v1/blobs/{}/download", self.blob_id_hex())
    }

    /// Checks the relay's answer to [`download_path`](Self::download_path): the blob must have
    /// exactly the size the pointer implies (checked before any byte is fetched).
    ///
    /// # Errors
    /// [`TransferError::Malformed`] for a size beyond the format,
    /// [`TransferError::SizeMismatch`].
    pub fn check_located(&self, located: &DownloadUrl) -> Result<(), TransferError> {
        let expected = self.blob_size().ok_or(TransferError::Malformed)?;
        if located.size != expected {
            return Err(TransferError::SizeMismatch {
                expected,
                actual: located.size,
            });
        }
        Ok(())
    }

    /// A decryptor for this pointer's blob.
    ///
    /// # Errors
    /// [`TransferError::Malformed`] for a size beyond the format.
    pub fn decryptor(&self) -> Result<BlobDecryptor, TransferError> {
        Ok(BlobDecryptor {
            dec: AttachmentDecryptor::new(&self.key, self.digest),
            total: self.blob_size().ok_or(TransferError::Malformed)?,
            received: 0,
        })
    }
}

/// Decrypts one blob as it arrives, in any split. Holds at most two sealed chunks.
pub struct BlobDecryptor {
    dec: AttachmentDecryptor,
    total: u64,
    received: u64,
}

impl std::fmt::Debug for BlobDecryptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobDecryptor")
            .field("total", &self.total)
            .field("received", &self.received)
            .finish_non_exhaustive()
    }
}

impl BlobDecryptor {
    /// Adds blob bytes; returns the plaintext of the chunks they completed and verified (often
    /// empty). A caller must discard everything returned if a later call fails.
    ///
    /// # Errors
    /// [`TransferError::SizeMismatch`] when more bytes arrive than the blob has,
    /// [`TransferError::Crypto`] for a blob that is not the one the pointer describes.
    pub fn push(&mut self, piece: &[u8]) -> Result<Zeroizing<Vec<u8>>, TransferError> {
        let received = self.received.saturating_add(piece.len() as u64);
        if received > self.total {
            return Err(TransferError::SizeMismatch {
                expected: self.total,
                actual: received,
            });
        }
        self.received = received;
        Ok(Zeroizing::new(self.dec.push(piece)?))
    }

    /// Bytes received so far.
    #[must_use]
    pub fn progress(&self) -> Progress {
        Progress {
            done: self.received,
            total: self.total,
        }
    }

    /// After the last byte: the last plaintext bytes, once the final chunk authenticates and
    /// the blob's SHA-256 equals the pointer's digest.
    ///
    /// # Errors
    /// [`TransferError::SizeMismatch`] if the blob ended early, [`TransferError::Crypto`]
    /// (`DigestMismatch`, `InvalidCiphertext`, …).
    pub fn finish(self) -> Result<Zeroizing<Vec<u8>>, TransferError> {
        if self.received != self.total {
            return Err(TransferError::SizeMismatch {
                expected: self.total,
                actual: self.received,
            });
        }
        Ok(Zeroizing::new(self.dec.finish()?))
    }
}
