//! Per-message keys and the AEAD they drive.

use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{ChaCha20Poly1305, KeyInit};
use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// Info string expanding a message key seed into AEAD key and nonce.
pub const MESSAGE_KEY_INFO: &[u8] = b"Haven_Ratchet_MessageKeys_v1";

/// A message key seed (`HMAC(ck, 0x01)`) and its index in the chain.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub(crate) struct MessageKey {
    seed: Box<[u8; 32]>,
    #[zeroize(skip)]
    index: u32,
}

impl MessageKey {
    pub(crate) fn new(seed: [u8; 32], index: u32) -> Self {
        Self {
            seed: Box::new(seed),
            index,
        }
    }

    pub(crate) fn index(&self) -> u32 {
        self.index
    }

    pub(crate) fn as_bytes(&self) -> &[u8; 32] {
        &self.seed
    }

    /// `HKDF(salt = 32 zero bytes, ikm = seed, info = MESSAGE_KEY_INFO, L = 44)` →
    /// `key (32) || nonce (12)`. Each key encrypts exactly one message, so a derived nonce is safe.
    fn cipher(&self) -> (ChaCha20Poly1305, [u8; 12]) {
        let mut okm = Zeroizing::new([0u8; 44]);
        let _ = Hkdf::<Sha256>::new(Some(&[0u8; 32]), self.seed.as_slice())
            .expand(MESSAGE_KEY_INFO, okm.as_mut());
        let mut key = Zeroizing::new([0u8; 32]);
        key.copy_from_slice(&okm[..32]);
        let mut nonce = [0u8; 12];
        nonce.copy_from_slice(&okm[32..]);
        (ChaCha20Poly1305::new(&(*key).into()), nonce)
    }

    /// `None` only beyond ChaCha20-Poly1305's 256 GiB limit; callers cap messages far below.
    pub(crate) fn encrypt(&self, plaintext: &[u8], ad: &[u8]) -> Option<Vec<u8>> {
        let (cipher, nonce) = self.cipher();
        cipher
            .encrypt(
                &nonce.into(),
                Payload {
                    msg: plaintext,
                    aad: ad,
                },
            )
            .ok()
    }

    pub(crate) fn decrypt(&self, ciphertext: &[u8], ad: &[u8]) -> Option<Vec<u8>> {
        let (cipher, nonce) = self.cipher();
        cipher
            .decrypt(
                &nonce.into(),
                Payload {
                    msg: ciphertext,
                    aad: ad,
                },
            )
            .ok()
    }
}
