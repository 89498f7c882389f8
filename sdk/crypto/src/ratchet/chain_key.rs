//! Symmetric-key ratchet (`KDF_CK`).

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use zeroize::{Zeroize, ZeroizeOnDrop};

use super::message_key::MessageKey;

/// HMAC input byte deriving a message key seed.
pub const MESSAGE_KEY_SEED: u8 = 0x01;
/// HMAC input byte deriving the next chain key.
pub const CHAIN_KEY_SEED: u8 = 0x02;

/// A sending or receiving chain key together with the index of the next message key.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub(crate) struct ChainKey {
    key: Box<[u8; 32]>,
    #[zeroize(skip)]
    index: u32,
}

impl ChainKey {
    pub(crate) fn new(key: [u8; 32], index: u32) -> Self {
        Self {
            key: Box::new(key),
            index,
        }
    }

    pub(crate) fn as_bytes(&self) -> &[u8; 32] {
        &self.key
    }

    /// Index of the message key [`Self::message_key`] returns.
    pub(crate) fn index(&self) -> u32 {
        self.index
    }

    fn hmac(&self, byte: u8) -> [u8; 32] {
        // HMAC zero-pads keys shorter than the 64-byte block (RFC 2104), so padding here gives
        // exactly HMAC(ck, byte) while using the infallible fixed-size constructor.
        let mut block = zeroize::Zeroizing::new([0u8; 64]);
        block[..32].copy_from_slice(self.key.as_slice());
        let mut mac = <Hmac<Sha256> as KeyInit>::new(&(*block).into());
        mac.update(&[byte]);
        mac.finalize().into_bytes().into()
    }

    /// `HMAC(ck, 0x01)`: the message key for [`Self::index`].
    pub(crate) fn message_key(&self) -> MessageKey {
        MessageKey::new(self.hmac(MESSAGE_KEY_SEED), self.index)
    }

    /// `HMAC(ck, 0x02)`: the chain key for `index + 1`, or `None` when the counter is exhausted.
    pub(crate) fn next(&self) -> Option<ChainKey> {
        let index = self.index.checked_add(1)?;
        Some(ChainKey::new(self.hmac(CHAIN_KEY_SEED), index))
    }
}
