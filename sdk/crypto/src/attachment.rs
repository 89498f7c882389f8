//! Attachments: streaming chunked AEAD (the STREAM construction of Hoang, Reyhanitabar, Rogaway
//! and Vizár) with padding to a size bucket inside the stream.
//!
//! Blob layout (`docs/PROTOCOL.md` §10): `0x01 || chunk_0 || … || chunk_{k-1}` where each chunk is
//! ChaCha20-Poly1305 over [`CHUNK_LEN`] bytes of the padded plaintext (the last one may be
//! shorter), with nonce `prefix(7) || chunk index u32 || final flag u8`. The padded plaintext is
//! `u64 plaintext length || plaintext || 0x80 || 0x00*` up to the Padmé bucket, so the blob size
//! depends only on the bucket. Memory use is constant: at most two chunks are buffered.

use alloc::boxed::Box;
use alloc::vec::Vec;

use chacha20poly1305::aead::{AeadInOut, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Nonce, Tag};
use haven_protocol::padding::{
    ATTACHMENT_CHUNK_LEN, ATTACHMENT_LENGTH_PREFIX_LEN, ATTACHMENT_TAG_LEN, attachment_padded_len,
};
use hkdf::Hkdf;
use rand_core::CryptoRng;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

pub use haven_protocol::padding::{
    MAX_ATTACHMENT_PADDED_LEN, attachment_ciphertext_len, is_valid_blob_size,
};

/// Format version, the first byte of every attachment blob.
pub const ATTACHMENT_VERSION: u8 = 0x01;

/// Plaintext bytes per chunk (64 KiB): big enough that the 16-byte tags cost 0.02 %, small
/// enough that a decryptor buffers little and releases verified data early.
pub const CHUNK_LEN: usize = ATTACHMENT_CHUNK_LEN as usize;

const TAG_LEN: usize = ATTACHMENT_TAG_LEN as usize;
const PREFIX_LEN: usize = ATTACHMENT_LENGTH_PREFIX_LEN as usize;
/// A full encrypted chunk.
const SEALED_CHUNK_LEN: usize = CHUNK_LEN + TAG_LEN;
const NONCE_PREFIX_LEN: usize = 7;
/// HKDF info for the stream key and nonce prefix.
const INFO: &[u8] = b"Haven_Attachment_v1";

/// Length of a SHA-256 digest of an attachment blob.
pub const DIGEST_LEN: usize = 32;

/// Errors from attachment encryption and decryption.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AttachmentError {
    /// The plaintext is larger than the format allows.
    #[error("attachment of {0} bytes is too large")]
    TooLarge(u64),
    /// More or fewer plaintext bytes were pushed than announced to the encryptor.
    #[error("expected {expected} plaintext bytes, got {actual}")]
    LengthMismatch {
        /// Length announced in `AttachmentEncryptor::new`.
        expected: u64,
        /// Bytes pushed so far.
        actual: u64,
    },
    /// The blob starts with an unknown version byte.
    #[error("unsupported attachment version {0}")]
    UnsupportedVersion(u8),
    /// The blob ended before its final chunk (or is empty).
    #[error("attachment truncated")]
    Truncated,
    /// A chunk failed authentication: wrong key, tampered, reordered, dropped, appended or
    /// truncated chunk, or a final flag in the wrong place.
    #[error("attachment chunk failed authentication")]
    InvalidCiphertext,
    /// The chunks authenticated but their content is not a well-formed padded attachment (bad
    /// length prefix or padding); only a sender holding the key can cause this.
    #[error("authenticated attachment is malformed")]
    MalformedPlaintext,
    /// The SHA-256 of the blob differs from the expected digest.
    #[error("attachment digest mismatch")]
    DigestMismatch,
    /// An earlier call failed; the stream cannot be continued.
    #[error("attachment stream already failed")]
    Poisoned,
}

/// The per-attachment random 32-byte key, sent to recipients inside an encrypted message.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct AttachmentKey(Box<[u8; 32]>);

impl AttachmentKey {
    /// Draws a fresh random key.
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let mut key = Box::new([0u8; 32]);
        rng.fill_bytes(key.as_mut_slice());
        Self(key)
    }

    /// Wraps received key bytes.
    #[must_use]
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        let mut bytes = Zeroizing::new(bytes);
        Self(Box::new(core::mem::take(&mut *bytes)))
    }

    /// The key bytes, to put into the message that references the attachment.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

/// The stream cipher state derived from an [`AttachmentKey`].
pub(crate) struct StreamKeys {
    aead: ChaCha20Poly1305,
    pub(crate) nonce_prefix: [u8; NONCE_PREFIX_LEN],
}

impl StreamKeys {
    pub(crate) fn derive(key: &AttachmentKey) -> Self {
        let mut okm = Zeroizing::new([0u8; 32 + NONCE_PREFIX_LEN]);
        // 39 bytes is far below HKDF-SHA-256's 8160-byte limit, so expand cannot fail.
        let _ = Hkdf::<Sha256>::new(None, key.as_bytes()).expand(INFO, okm.as_mut_slice());
        let mut k = Zeroizing::new([0u8; 32]);
        k.copy_from_slice(&okm[..32]);
        let mut nonce_prefix = [0u8; NONCE_PREFIX_LEN];
        nonce_prefix.copy_from_slice(&okm[32..]);
        let aead = ChaCha20Poly1305::new(&(*k).into());
        Self { aead, nonce_prefix }
    }

    fn nonce(&self, index: u32, last: bool) -> Nonce {
        let mut n = [0u8; 12];
        n[..NONCE_PREFIX_LEN].copy_from_slice(&self.nonce_prefix);
        n[NONCE_PREFIX_LEN..11].copy_from_slice(&index.to_be_bytes());
        n[11] = u8::from(last);
        n.into()
    }

    /// Encrypts `chunk` in place and appends its tag.
    fn seal(&self, index: u32, last: bool, chunk: &mut Vec<u8>) {
        let nonce = self.nonce(index, last);
        // ChaCha20-Poly1305 only fails for messages over 256 GiB; chunks are 64 KiB.
        if let Ok(tag) = self.aead.encrypt_inout_detached(
            &nonce,
            &[ATTACHMENT_VERSION],
            chunk.as_mut_slice().into(),
        ) {
            chunk.extend_from_slice(&tag);
        }
    }

    /// Decrypts one sealed chunk in place, leaving the plaintext in `chunk`.
    fn open(&self, index: u32, last: bool, chunk: &mut Vec<u8>) -> Result<(), AttachmentError> {
        let body_len = chunk
            .len()
            .checked_sub(TAG_LEN)
            .ok_or(AttachmentError::InvalidCiphertext)?;
        let (body, tag) = chunk.split_at_mut(body_len);
        let tag = Tag::try_from(&*tag).map_err(|_| AttachmentError::InvalidCiphertext)?;
        let nonce = self.nonce(index, last);
        self.aead
            .decrypt_inout_detached(&nonce, &[ATTACHMENT_VERSION], body.into(), &tag)
            .map_err(|_| AttachmentError::InvalidCiphertext)?;
        chunk.truncate(body_len);
        Ok(())
    }
}

fn to_u32(index: u64) -> Result<u32, AttachmentError> {
    u32::try_from(index).map_err(|_| AttachmentError::TooLarge(index))
}

/// Incremental attachment encryptor. Feed the plaintext with [`push`](Self::push) (any split),
/// then call [`finish`](Self::finish) or [`finish_streaming`](Self::finish_streaming); the
/// concatenation of all returned bytes is the blob.
pub struct AttachmentEncryptor {
    keys: StreamKeys,
    total_len: u64,
    pushed: u64,
    padded_len: u64,
    /// Padded-plaintext bytes already placed into `buf` or sealed.
    filled: u64,
    chunks: u64,
    next_index: u64,
    buf: Zeroizing<Vec<u8>>,
    hasher: Sha256,
    header_done: bool,
}

impl AttachmentEncryptor {
    /// Starts encrypting an attachment of exactly `total_plaintext_len` bytes under `key`.
    ///
    /// No randomness is needed here: the key is random and the nonces are derived from it, so a
    /// key must encrypt only one attachment (use [`AttachmentKey::generate`] each time).
    ///
    /// # Errors
    /// [`AttachmentError::TooLarge`] if the padded size exceeds [`MAX_ATTACHMENT_PADDED_LEN`].
    pub fn new(key: &AttachmentKey, total_plaintext_len: u64) -> Result<Self, AttachmentError> {
        let padded_len = attachment_padded_len(total_plaintext_len)
            .ok_or(AttachmentError::TooLarge(total_plaintext_len))?;
        let mut buf = Zeroizing::new(Vec::with_capacity(CHUNK_LEN + TAG_LEN));
        buf.extend_from_slice(&total_plaintext_len.to_be_bytes());
        Ok(Self {
            keys: StreamKeys::derive(key),
            total_len: total_plaintext_len,
            pushed: 0,
            padded_len,
            filled: ATTACHMENT_LENGTH_PREFIX_LEN,
            chunks: padded_len.div_ceil(ATTACHMENT_CHUNK_LEN),
            next_index: 0,
            buf,
            hasher: Sha256::new(),
            header_done: false,
        })
    }

    /// Generates a fresh key and starts an encryptor with it.
    ///
    /// # Errors
    /// As [`new`](Self::new).
    pub fn generate<R: CryptoRng + ?Sized>(
        total_plaintext_len: u64,
        rng: &mut R,
    ) -> Result<(Self, AttachmentKey), AttachmentError> {
        let key = AttachmentKey::generate(rng);
        Ok((Self::new(&key, total_plaintext_len)?, key))
    }

    /// The padded plaintext length (the bucket) of this attachment.
    #[must_use]
    pub fn padded_len(&self) -> u64 {
        self.padded_len
    }

    /// The exact blob size this encryptor will produce.
    #[must_use]
    pub fn ciphertext_len(&self) -> u64 {
        attachment_ciphertext_len(self.padded_len).unwrap_or(0)
    }

    fn emit(&mut self, out: &mut Vec<u8>) -> Result<(), AttachmentError> {
        let index = to_u32(self.next_index)?;
        let last = self.next_index + 1 == self.chunks;
        self.keys.seal(index, last, &mut self.buf);
        self.hasher.update(self.buf.as_slice());
        out.extend_from_slice(&self.buf);
        self.buf.clear();
        self.next_index += 1;
        Ok(())
    }

    fn header(&mut self, out: &mut Vec<u8>) {
        if !self.header_done {
            self.header_done = true;
            self.hasher.update([ATTACHMENT_VERSION]);
            out.push(ATTACHMENT_VERSION);
        }
    }

    /// Adds plaintext; returns the ciphertext of every chunk completed by it.
    ///
    /// # Errors
    /// [`AttachmentError::LengthMismatch`] if more bytes than announced are pushed.
    pub fn push(&mut self, mut data: &[u8]) -> Result<Vec<u8>, AttachmentError> {
        let len = data.len() as u64;
        let pushed = self.pushed.saturating_add(len);
        if pushed > self.total_len {
            return Err(AttachmentError::LengthMismatch {
                expected: self.total_len,
                actual: pushed,
            });
        }
        self.pushed = pushed;
        self.filled += len;
        let mut out = Vec::with_capacity(data.len() + SEALED_CHUNK_LEN);
        self.header(&mut out);
        while !data.is_empty() {
            let room = CHUNK_LEN - self.buf.len();
            if room == 0 {
                // Unreachable: the last chunk always keeps room for the padding marker.
                return Err(AttachmentError::Poisoned);
            }
            let (now, rest) = data.split_at(room.min(data.len()));
            self.buf.extend_from_slice(now);
            data = rest;
            // A full chunk is sealed at once unless it is the last one, which also gets padding.
            if self.buf.len() == CHUNK_LEN && self.next_index + 1 < self.chunks {
                self.emit(&mut out)?;
            }
        }
        Ok(out)
    }

    /// Finishes the stream, returning the remaining ciphertext and the blob's SHA-256. The
    /// returned buffer holds all padding chunks (up to ~3 % of the blob for large files); use
    /// [`finish_streaming`](Self::finish_streaming) to keep memory constant.
    ///
    /// # Errors
    /// [`AttachmentError::LengthMismatch`] if fewer bytes than announced were pushed.
    pub fn finish(self) -> Result<(Vec<u8>, [u8; DIGEST_LEN]), AttachmentError> {
        let mut tail = self.finish_streaming()?;
        let mut out = Vec::new();
        while let Some(chunk) = tail.next_chunk()? {
            out.extend_from_slice(&chunk);
        }
        Ok((out, tail.digest().ok_or(AttachmentError::Poisoned)?))
    }

    /// Finishes the plaintext; the padding chunks are then produced one at a time by the
    /// returned [`AttachmentTail`].
    ///
    /// # Errors
    /// [`AttachmentError::LengthMismatch`] if fewer bytes than announced were pushed.
    pub fn finish_streaming(mut self) -> Result<AttachmentTail, AttachmentError> {
        if self.pushed != self.total_len {
            return Err(AttachmentError::LengthMismatch {
                expected: self.total_len,
                actual: self.pushed,
            });
        }
        let mut pending = Vec::new();
        self.header(&mut pending);
        Ok(AttachmentTail {
            enc: self,
            pending,
            marker_done: false,
            digest: None,
        })
    }
}

/// The padding tail of an attachment stream, produced chunk by chunk.
pub struct AttachmentTail {
    enc: AttachmentEncryptor,
    pending: Vec<u8>,
    marker_done: bool,
    digest: Option<[u8; DIGEST_LEN]>,
}

impl AttachmentTail {
    /// The next piece of ciphertext, or `None` once the blob is complete.
    ///
    /// # Errors
    /// Only on internal limits ([`AttachmentError::TooLarge`]); the size was checked up front.
    pub fn next_chunk(&mut self) -> Result<Option<Vec<u8>>, AttachmentError> {
        let enc = &mut self.enc;
        if enc.next_index >= enc.chunks {
            if self.digest.is_none() {
                self.digest = Some(enc.hasher.clone().finalize().into());
            }
            return Ok(None);
        }
        let mut out = core::mem::take(&mut self.pending);
        let room = (CHUNK_LEN - enc.buf.len()) as u64;
        let take = (enc.padded_len - enc.filled).min(room);
        let mut zeros = take;
        if !self.marker_done && take > 0 {
            self.marker_done = true;
            enc.buf.push(0x80);
            zeros -= 1;
        }
        // zeros <= CHUNK_LEN, so the cast is lossless.
        let new_len = enc.buf.len() + zeros as usize;
        enc.buf.resize(new_len, 0);
        enc.filled += take;
        enc.emit(&mut out)?;
        Ok(Some(out))
    }

    /// The SHA-256 of the whole blob, available once [`next_chunk`](Self::next_chunk) has
    /// returned `None`.
    #[must_use]
    pub fn digest(&self) -> Option<[u8; DIGEST_LEN]> {
        self.digest
    }
}

/// Incremental attachment decryptor. Push the blob in any split; each call returns the
/// plaintext of the chunks it completed and verified. The final chunk is held back until
/// [`finish`](Self::finish), which also checks the blob digest.
pub struct AttachmentDecryptor {
    keys: StreamKeys,
    expected_digest: [u8; DIGEST_LEN],
    hasher: Sha256,
    header_done: bool,
    buf: Zeroizing<Vec<u8>>,
    next_index: u64,
    /// Padded-plaintext bytes verified so far.
    seen: u64,
    /// Plaintext length and padded length, known once chunk 0 is verified.
    lengths: Option<(u64, u64)>,
    /// Length-prefix bytes collected (chunk 0 always holds all 8, as buckets are >= 256).
    poisoned: bool,
}

impl AttachmentDecryptor {
    /// Starts decrypting a blob encrypted under `key` whose SHA-256 must be `expected_digest`.
    #[must_use]
    pub fn new(key: &AttachmentKey, expected_digest: [u8; DIGEST_LEN]) -> Self {
        Self {
            keys: StreamKeys::derive(key),
            expected_digest,
            hasher: Sha256::new(),
            header_done: false,
            buf: Zeroizing::new(Vec::with_capacity(2 * SEALED_CHUNK_LEN)),
            next_index: 0,
            seen: 0,
            lengths: None,
            poisoned: false,
        }
    }

    /// Adds ciphertext; returns the plaintext of each non-final chunk completed by it.
    ///
    /// # Errors
    /// Any [`AttachmentError`] from authentication or format checks; after an error every
    /// further call returns [`AttachmentError::Poisoned`].
    pub fn push(&mut self, data: &[u8]) -> Result<Vec<u8>, AttachmentError> {
        if self.poisoned {
            return Err(AttachmentError::Poisoned);
        }
        let result = self.push_inner(data);
        self.poisoned = result.is_err();
        result
    }

    fn push_inner(&mut self, mut data: &[u8]) -> Result<Vec<u8>, AttachmentError> {
        self.hasher.update(data);
        if !self.header_done {
            let Some((&version, rest)) = data.split_first() else {
                return Ok(Vec::new());
            };
            if version != ATTACHMENT_VERSION {
                return Err(AttachmentError::UnsupportedVersion(version));
            }
            self.header_done = true;
            data = rest;
        }
        let mut out = Vec::new();
        while !data.is_empty() {
            // Keep one full sealed chunk buffered: it may be the final one.
            let room = 2 * SEALED_CHUNK_LEN - self.buf.len();
            let (now, rest) = data.split_at(room.min(data.len()));
            self.buf.extend_from_slice(now);
            data = rest;
            if self.buf.len() > SEALED_CHUNK_LEN {
                let mut chunk =
                    Zeroizing::new(self.buf.drain(..SEALED_CHUNK_LEN).collect::<Vec<u8>>());
                self.open_chunk(false, &mut chunk, &mut out)?;
            }
        }
        Ok(out)
    }

    fn open_chunk(
        &mut self,
        last: bool,
        chunk: &mut Vec<u8>,
        out: &mut Vec<u8>,
    ) -> Result<(), AttachmentError> {
        if let Some((_, padded)) = self.lengths
            && self.next_index >= padded.div_ceil(ATTACHMENT_CHUNK_LEN)
        {
            // More chunks than the length prefix allows: appended data.
            return Err(AttachmentError::InvalidCiphertext);
        }
        let index = to_u32(self.next_index)?;
        self.keys.open(index, last, chunk)?;
        self.next_index += 1;
        let mut pt: &[u8] = chunk;
        let offset = self.seen;
        self.seen += pt.len() as u64;
        if offset == 0 {
            let (len_bytes, rest) = pt
                .split_first_chunk::<PREFIX_LEN>()
                .ok_or(AttachmentError::MalformedPlaintext)?;
            let n = u64::from_be_bytes(*len_bytes);
            let padded = attachment_padded_len(n).ok_or(AttachmentError::MalformedPlaintext)?;
            self.lengths = Some((n, padded));
            pt = rest;
        }
        let (n, padded) = self.lengths.ok_or(AttachmentError::MalformedPlaintext)?;
        let data_end = ATTACHMENT_LENGTH_PREFIX_LEN + n;
        let start = offset.max(ATTACHMENT_LENGTH_PREFIX_LEN);
        // Bytes of this chunk that are content, then padding.
        let content = data_end.saturating_sub(start).min(pt.len() as u64) as usize;
        let (data, pad) = pt.split_at(content);
        let pad_start = start + content as u64;
        let mut bad = 0u8;
        for (i, &b) in pad.iter().enumerate() {
            let expected = if pad_start + i as u64 == data_end {
                0x80
            } else {
                0
            };
            bad |= b ^ expected;
        }
        if bad != 0 || self.seen > padded || (last && self.seen != padded) {
            return Err(AttachmentError::MalformedPlaintext);
        }
        out.extend_from_slice(data);
        Ok(())
    }

    /// Verifies the final chunk and the digest; returns the last plaintext bytes.
    ///
    /// # Errors
    /// [`AttachmentError::Truncated`] if no final chunk was received,
    /// [`AttachmentError::InvalidCiphertext`] if it does not authenticate as the final chunk,
    /// [`AttachmentError::DigestMismatch`] if the blob digest differs.
    pub fn finish(mut self) -> Result<Vec<u8>, AttachmentError> {
        if self.poisoned {
            return Err(AttachmentError::Poisoned);
        }
        if !self.header_done || self.buf.len() <= TAG_LEN {
            return Err(AttachmentError::Truncated);
        }
        let mut chunk = Zeroizing::new(core::mem::take(&mut *self.buf));
        let mut out = Vec::new();
        self.open_chunk(true, &mut chunk, &mut out)?;
        let digest: [u8; DIGEST_LEN] = self.hasher.clone().finalize().into();
        if !bool::from(digest.ct_eq(&self.expected_digest)) {
            out.zeroize();
            return Err(AttachmentError::DigestMismatch);
        }
        Ok(out)
    }
}

/// `std::io` adapters around the incremental encryptor and decryptor. They only move bytes
/// between the caller's reader/writer and the core; the core itself performs no I/O.
#[cfg(feature = "std")]
pub mod io {
    use std::io::{self, Read, Write};

    use super::{AttachmentDecryptor, AttachmentEncryptor, AttachmentError, CHUNK_LEN, DIGEST_LEN};

    fn to_io(e: AttachmentError) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, e)
    }

    /// Encrypts everything written to it into `inner`. Call [`finish`](Self::finish) at the end.
    pub struct EncryptingWriter<W: Write> {
        enc: AttachmentEncryptor,
        inner: W,
    }

    impl<W: Write> EncryptingWriter<W> {
        /// Wraps `inner`; `enc` must be fresh.
        pub fn new(enc: AttachmentEncryptor, inner: W) -> Self {
            Self { enc, inner }
        }

        /// Writes the padding chunks and returns the writer and the blob digest.
        ///
        /// # Errors
        /// Write errors of `inner`, or `InvalidData` if fewer bytes than announced were written.
        pub fn finish(mut self) -> io::Result<(W, [u8; DIGEST_LEN])> {
            let mut tail = self.enc.finish_streaming().map_err(to_io)?;
            while let Some(chunk) = tail.next_chunk().map_err(to_io)? {
                self.inner.write_all(&chunk)?;
            }
            let digest = tail
                .digest()
                .ok_or_else(|| to_io(AttachmentError::Poisoned))?;
            Ok((self.inner, digest))
        }
    }

    impl<W: Write> Write for EncryptingWriter<W> {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let out = self.enc.push(buf).map_err(to_io)?;
            self.inner.write_all(&out)?;
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            self.inner.flush()
        }
    }

    /// Reads a blob from `inner` and yields verified plaintext.
    pub struct DecryptingReader<R: Read> {
        dec: Option<AttachmentDecryptor>,
        inner: R,
        out: Vec<u8>,
        pos: usize,
        buf: Vec<u8>,
    }

    impl<R: Read> DecryptingReader<R> {
        /// Wraps `inner`.
        pub fn new(dec: AttachmentDecryptor, inner: R) -> Self {
            Self {
                dec: Some(dec),
                inner,
                out: Vec::new(),
                pos: 0,
                buf: vec![0; CHUNK_LEN],
            }
        }
    }

    impl<R: Read> Read for DecryptingReader<R> {
        fn read(&mut self, dst: &mut [u8]) -> io::Result<usize> {
            loop {
                if let Some(avail) = self.out.get(self.pos..).filter(|a| !a.is_empty()) {
                    let n = avail.len().min(dst.len());
                    dst[..n].copy_from_slice(&avail[..n]);
                    self.pos += n;
                    return Ok(n);
                }
                let Some(dec) = self.dec.as_mut() else {
                    return Ok(0);
                };
                let n = self.inner.read(&mut self.buf)?;
                self.pos = 0;
                self.out = if n == 0 {
                    match self.dec.take() {
                        Some(dec) => dec.finish().map_err(to_io)?,
                        None => Vec::new(),
                    }
                } else {
                    dec.push(&self.buf[..n]).map_err(to_io)?
                };
            }
        }
    }
}
