//! The Double Ratchet (Signal specification, revision 4), one file per concept.
//!
//! - [`root_key`]: `KDF_RK` = HKDF-SHA-256 with the root key as salt.
//! - [`chain_key`]: `KDF_CK` = `HMAC(ck, 0x01)` (message key) / `HMAC(ck, 0x02)` (next chain key).
//! - [`message_key`]: message key → ChaCha20-Poly1305 key and nonce via HKDF.
//! - [`message`]: wire formats.
//! - [`session`]: the state machine and its limits.

pub mod chain_key;
pub mod message;
pub mod message_key;
pub mod root_key;
pub mod session;

/// Errors of the ratchet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RatchetError {
    /// The encoding is truncated, has trailing bytes or an invalid field.
    #[error("malformed message or session encoding")]
    Malformed,
    /// Unknown version or type byte.
    #[error("unsupported version/type")]
    UnsupportedVersion,
    /// The plaintext exceeds [`message::MAX_PLAINTEXT_LEN`].
    #[error("message of {len} bytes exceeds the limit of {max}")]
    MessageTooLarge {
        /// Plaintext length.
        len: usize,
        /// Limit.
        max: usize,
    },
    /// The message key for this index was already used (or evicted): a replay.
    #[error("duplicate message (index {index})")]
    DuplicateMessage {
        /// Message index in its chain.
        index: u32,
    },
    /// Accepting the message would require skipping more than [`session::MAX_SKIP_PER_CHAIN`]
    /// message keys.
    #[error("message skips {gap} keys, more than the limit of {max}")]
    TooFarInFuture {
        /// Keys that would have to be skipped.
        gap: u64,
        /// Limit.
        max: u32,
    },
    /// Authentication failed (wrong key, tampered header or ciphertext).
    #[error("decryption failed")]
    DecryptionFailed,
    /// The peer's ratchet key is a low-order point.
    #[error("invalid ratchet public key")]
    InvalidRatchetKey,
    /// This session cannot send yet (a responder session before its first receive).
    #[error("session has no sending chain")]
    NoSendingChain,
    /// A chain counter reached `u32::MAX`.
    #[error("chain counter exhausted")]
    ChainExhausted,
}

/// hazmat: the raw ratchet KDFs, exposed for test vectors and independent implementations.
/// Nothing here is needed to use sessions; misuse (key reuse) breaks security.
pub mod hazmat {
    use zeroize::Zeroizing;

    /// `KDF_RK(rk, dh_out)` → `(next root key, chain key)`.
    #[must_use]
    pub fn kdf_rk(rk: &[u8; 32], dh_out: &[u8; 32]) -> (Zeroizing<[u8; 32]>, Zeroizing<[u8; 32]>) {
        let (root, chain) = super::root_key::RootKey::new(*rk).kdf(dh_out);
        (
            Zeroizing::new(*root.as_bytes()),
            Zeroizing::new(*chain.as_bytes()),
        )
    }

    /// `KDF_CK(ck)` → `(message key seed, next chain key)`.
    #[must_use]
    pub fn kdf_ck(ck: &[u8; 32]) -> (Zeroizing<[u8; 32]>, Zeroizing<[u8; 32]>) {
        let (mk, next) = super::chain_key::ChainKey::new(*ck, 0).step();
        let next = next.map_or([0u8; 32], |c| *c.as_bytes());
        (Zeroizing::new(*mk.as_bytes()), Zeroizing::new(next))
    }
}
