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

    /// Index of the message key [`Self::step`] returns.
    pub(crate) fn index(&self) -> u32 {
        self.index
    }

    /// `HMAC(ck, ·)` keyed once; both outputs of `KDF_CK` are finished from a copy of it.
    fn keyed(&self) -> Hmac<Sha256> {
        // HMAC zero-pads keys shorter than the 64-byte block (RFC 2104), so padding here gives
        // exactly HMAC(ck, ·) while using the infallible fixed-size constructor.
        let mut block = zeroize::Zeroizing::new([0u8; 64]);
        block[..32].copy_from_slice(self.key.as_slice());
        <Hmac<Sha256> as KeyInit>::new(&(*block).into())
    }

    fn finish(mut mac: Hmac<Sha256>, byte: u8) -> [u8; 32] {
        mac.update(&[byte]);
        mac.finalize().into_bytes().into()
    }

    /// `KDF_CK`: the message key `HMAC(ck, 0x01)` for [`Self::index`] and the next chain key
    /// `HMAC(ck, 0x02)`, or `None` for it when the counter is exhausted. Keying HMAC costs two
    /// SHA-256 blocks; doing it once for both outputs saves them on every message.
    pub(crate) fn step(&self) -> (MessageKey, Option<ChainKey>) {
        let mac = self.keyed();
        let message_key = MessageKey::new(Self::finish(mac.clone(), MESSAGE_KEY_SEED), self.index);
        let next = self
            .index
            .checked_add(1)
            .map(|index| ChainKey::new(Self::finish(mac, CHAIN_KEY_SEED), index));
        (message_key, next)
    }
}
