//! The crate's error type.

use std::time::Duration;

/// Why a rate-limiter operation failed. Input errors change no state.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RateLimitError {
    /// The key is empty or longer than [`MAX_KEY_LEN`](crate::MAX_KEY_LEN).
    #[error("rate-limit key must be 1 to {max} bytes, got {len}")]
    InvalidKey {
        /// Length of the rejected key, in bytes.
        len: usize,
        /// The maximum accepted length.
        max: usize,
    },
    /// The Redis key prefix is empty or longer than [`MAX_PREFIX_LEN`](crate::MAX_PREFIX_LEN).
    #[error("rate-limit key prefix must be 1 to {max} bytes, got {len}")]
    InvalidPrefix {
        /// Length of the rejected prefix, in bytes.
        len: usize,
        /// The maximum accepted length.
        max: usize,
    },
    /// The quota is outside the supported range (see [`Quota`](crate::Quota)).
    #[error("unsupported rate-limit quota: {max} per {window:?}")]
    InvalidQuota {
        /// The requested number of hits.
        max: u32,
        /// The requested window.
        window: Duration,
    },
    /// Redis could not be reached, timed out, or returned an error (including an invalid URL).
    #[error("rate-limit backend (Redis) failed: {0}")]
    Redis(#[from] fred::error::Error),
    /// The Redis script's reply did not have the expected shape.
    #[error("unexpected reply from the rate-limit script ({len} elements)")]
    UnexpectedReply {
        /// Number of elements in the reply.
        len: usize,
    },
}
