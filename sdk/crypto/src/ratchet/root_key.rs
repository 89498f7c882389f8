//! The root key and `KDF_RK`.

use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::{Zeroize, ZeroizeOnDrop};

use super::chain_key::ChainKey;

/// Info string of `KDF_RK`.
pub const ROOT_KDF_INFO: &[u8] = b"Haven_Ratchet_Root_v1";

/// The Double Ratchet root key (32 bytes, secret).
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub(crate) struct RootKey(Box<[u8; 32]>);

impl RootKey {
    pub(crate) fn new(bytes: [u8; 32]) -> Self {
        Self(Box::new(bytes))
    }

    pub(crate) fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// `KDF_RK(rk, dh_out)`: `HKDF(salt = rk, ikm = dh_out, info = ROOT_KDF_INFO, L = 64)`,
    /// split into the next root key (first 32 bytes) and a chain key (last 32 bytes).
    pub(crate) fn kdf(&self, dh_out: &[u8; 32]) -> (RootKey, ChainKey) {
        let mut okm = zeroize::Zeroizing::new([0u8; 64]);
        // 64 bytes is far below HKDF-SHA-256's 8160-byte limit, so expand cannot fail.
        let _ = Hkdf::<Sha256>::new(Some(self.0.as_slice()), dh_out)
            .expand(ROOT_KDF_INFO, okm.as_mut());
        let mut rk = [0u8; 32];
        let mut ck = [0u8; 32];
        rk.copy_from_slice(&okm[..32]);
        ck.copy_from_slice(&okm[32..]);
        let out = (RootKey::new(rk), ChainKey::new(ck, 0));
        rk.zeroize();
        ck.zeroize();
        out
    }
}
