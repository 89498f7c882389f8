//! Web Push as a sender (application server): message encryption (RFC 8291, `aes128gcm` of
//! RFC 8188) and VAPID authorization (RFC 8292). PROTOCOL.md §18.5.
//!
//! ```text
//! ecdh     = ECDH(as_private, ua_public)                       (x coordinate, 32 bytes)
//! ikm      = HKDF-SHA256(salt = auth, ikm = ecdh,
//!                        info = "WebPush: info" || 0x00 || ua_public || as_public, L = 32)
//! prk      = HKDF-Extract(salt, ikm)                           (salt: 16 random bytes)
//! cek      = HKDF-Expand(prk, "Content-Encoding: aes128gcm" || 0x00, 16)
//! nonce    = HKDF-Expand(prk, "Content-Encoding: nonce" || 0x00, 12)
//! body     = salt (16) || rs u32 BE (4096) || idlen u8 (65) || as_public (65)
//!            || AES-128-GCM(cek, nonce, plaintext || 0x02)
//! ```

use aes_gcm::Aes128Gcm;
use aes_gcm::aead::{Aead, KeyInit};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hkdf::Hkdf;
use p256::ecdsa::signature::Signer as _;
use p256::elliptic_curve::sec1::ToEncodedPoint as _;
use p256::{PublicKey, SecretKey};
use rand::RngCore as _;
use rand::rngs::OsRng;
use sha2::Sha256;
use zeroize::Zeroizing;

/// Bytes of an uncompressed P-256 point.
pub const POINT_LEN: usize = 65;
/// Bytes of a subscription's authentication secret.
pub const AUTH_LEN: usize = 16;
/// Record size written in the header (one record: the payload is far smaller).
const RECORD_SIZE: u32 = 4096;
/// Bytes of the salt.
const SALT_LEN: usize = 16;
/// How long a VAPID token is valid, seconds (RFC 8292 allows at most 24 h).
pub const VAPID_TOKEN_SECS: u64 = 12 * 3600;

/// Why a message or token could not be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WebPushError {
    /// The subscription's public key is not a valid uncompressed P-256 point.
    #[error("invalid subscription public key")]
    InvalidPublicKey,
    /// The key bytes are not a valid P-256 private key.
    #[error("invalid private key")]
    InvalidPrivateKey,
    /// The AEAD refused (does not happen for a small payload).
    #[error("encryption failed")]
    Encrypt,
}

/// Checks that `bytes` is an uncompressed P-256 point on the curve.
pub fn valid_public_key(bytes: &[u8]) -> bool {
    bytes.len() == POINT_LEN && bytes[0] == 0x04 && PublicKey::from_sec1_bytes(bytes).is_ok()
}

/// Encrypts `plaintext` for the subscription (`ua_public`, `auth`) with a fresh ephemeral key
/// and salt.
pub fn encrypt(
    ua_public: &[u8],
    auth: &[u8; AUTH_LEN],
    plaintext: &[u8],
) -> Result<Vec<u8>, WebPushError> {
    let as_secret = SecretKey::random(&mut OsRng);
    let mut salt = [0u8; SALT_LEN];
    OsRng.fill_bytes(&mut salt);
    encrypt_with(&as_secret, &salt, ua_public, auth, plaintext)
}

/// [`encrypt`] with a given ephemeral key and salt (the RFC's example fixes both).
fn encrypt_with(
    as_secret: &SecretKey,
    salt: &[u8; SALT_LEN],
    ua_public: &[u8],
    auth: &[u8; AUTH_LEN],
    plaintext: &[u8],
) -> Result<Vec<u8>, WebPushError> {
    if !valid_public_key(ua_public) {
        return Err(WebPushError::InvalidPublicKey);
    }
    let ua = PublicKey::from_sec1_bytes(ua_public).map_err(|_| WebPushError::InvalidPublicKey)?;
    let as_public = as_secret.public_key().to_encoded_point(false);
    let as_public = as_public.as_bytes();
    let shared = p256::ecdh::diffie_hellman(as_secret.to_nonzero_scalar(), ua.as_affine());
    let mut key_info = Vec::with_capacity(14 + 2 * POINT_LEN);
    key_info.extend_from_slice(b"WebPush: info\0");
    key_info.extend_from_slice(ua_public);
    key_info.extend_from_slice(as_public);
    let mut ikm = Zeroizing::new([0u8; 32]);
    Hkdf::<Sha256>::new(Some(&auth[..]), shared.raw_secret_bytes())
        .expand(&key_info, &mut ikm[..])
        .map_err(|_| WebPushError::Encrypt)?;
    let prk = Hkdf::<Sha256>::new(Some(&salt[..]), &ikm[..]);
    let mut cek = Zeroizing::new([0u8; 16]);
    let mut nonce = [0u8; 12];
    prk.expand(b"Content-Encoding: aes128gcm\0", &mut cek[..])
        .map_err(|_| WebPushError::Encrypt)?;
    prk.expand(b"Content-Encoding: nonce\0", &mut nonce)
        .map_err(|_| WebPushError::Encrypt)?;
    let mut record = Zeroizing::new(Vec::with_capacity(plaintext.len() + 1));
    record.extend_from_slice(plaintext);
    // The last (and only) record's delimiter; no padding: the plaintext has one fixed size.
    record.push(0x02);
    let cipher = Aes128Gcm::new_from_slice(&cek[..]).map_err(|_| WebPushError::Encrypt)?;
    let sealed = cipher
        .encrypt(&nonce.into(), record.as_slice())
        .map_err(|_| WebPushError::Encrypt)?;
    let mut body = Vec::with_capacity(SALT_LEN + 5 + POINT_LEN + sealed.len());
    body.extend_from_slice(salt);
    body.extend_from_slice(&RECORD_SIZE.to_be_bytes());
    body.push(POINT_LEN as u8);
    body.extend_from_slice(as_public);
    body.extend_from_slice(&sealed);
    Ok(body)
}

/// The relay's VAPID key pair (RFC 8292). No `Debug`: it holds the private key.
pub struct VapidKey {
    signing: p256::ecdsa::SigningKey,
    public: String,
}

impl VapidKey {
    /// The key with private scalar `bytes` (big-endian, 32 bytes).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, WebPushError> {
        let secret = SecretKey::from_slice(bytes).map_err(|_| WebPushError::InvalidPrivateKey)?;
        let public = URL_SAFE_NO_PAD.encode(secret.public_key().to_encoded_point(false).as_bytes());
        Ok(Self {
            signing: p256::ecdsa::SigningKey::from(secret),
            public,
        })
    }

    /// A fresh random private key, as the 32 bytes [`Self::from_bytes`] takes.
    pub fn generate() -> Zeroizing<Vec<u8>> {
        Zeroizing::new(SecretKey::random(&mut OsRng).to_bytes().to_vec())
    }

    /// The public key: uncompressed point, base64url without padding.
    pub fn public_key(&self) -> &str {
        &self.public
    }

    /// The `Authorization` header value for a push to `origin` (the endpoint's
    /// `scheme://host[:port]`): `vapid t=<ES256 JWT>, k=<public key>`.
    pub fn authorization(&self, origin: &str, subject: &str, now: u64) -> String {
        let header = URL_SAFE_NO_PAD.encode(br#"{"typ":"JWT","alg":"ES256"}"#);
        let claims = serde_json::json!({
            "aud": origin,
            "exp": now.saturating_add(VAPID_TOKEN_SECS),
            "sub": subject,
        });
        let claims = URL_SAFE_NO_PAD.encode(claims.to_string());
        let signing_input = format!("{header}.{claims}");
        let signature: p256::ecdsa::Signature = self.signing.sign(signing_input.as_bytes());
        let signature = URL_SAFE_NO_PAD.encode(signature.to_bytes());
        format!("vapid t={signing_input}.{signature}, k={}", self.public)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use p256::ecdsa::signature::Verifier as _;

    fn b64(s: &str) -> Vec<u8> {
        URL_SAFE_NO_PAD.decode(s).unwrap()
    }

    #[test]
    fn rfc8291_appendix_a_byte_for_byte() {
        let as_secret =
            SecretKey::from_slice(&b64("yfWPiYE-n46HLnH0KqZOF1fJJU3MYrct3AELtAQ-oRw")).unwrap();
        let ua_public = b64(
            "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4",
        );
        let auth: [u8; 16] = b64("BTBZMqHH6r4Tts7J_aSIgg").try_into().unwrap();
        let salt: [u8; 16] = b64("DGv6ra1nlYgDCS1FRnbzlw").try_into().unwrap();
        let body = encrypt_with(
            &as_secret,
            &salt,
            &ua_public,
            &auth,
            b"When I grow up, I want to be a watermelon",
        )
        .unwrap();
        assert_eq!(
            URL_SAFE_NO_PAD.encode(&body),
            "DGv6ra1nlYgDCS1FRnbzlwAAEABBBP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A_yl95bQpu6cVPTpK4Mqgkf1CXztLVBSt2Ks3oZwbuwXPXLWyouBWLVWGNWQexSgSxsj_Qulcy4a-fN"
        );
    }

    #[test]
    fn bad_subscription_keys_are_refused() {
        let auth = [0u8; 16];
        assert_eq!(
            encrypt(&[4u8; 65], &auth, b"x").err(),
            Some(WebPushError::InvalidPublicKey)
        );
        assert_eq!(
            encrypt(&[4u8; 10], &auth, b"x").err(),
            Some(WebPushError::InvalidPublicKey)
        );
    }

    #[test]
    fn vapid_token_verifies_under_the_published_key() {
        let key = VapidKey::from_bytes(&VapidKey::generate()).unwrap();
        let header = key.authorization("https://push.example", "mailto:a@b.example", 1000);
        let rest = header.strip_prefix("vapid t=").unwrap();
        let (jwt, k) = rest.split_once(", k=").unwrap();
        assert_eq!(k, key.public_key());
        let (input, sig) = jwt.rsplit_once('.').unwrap();
        let claims: serde_json::Value =
            serde_json::from_slice(&b64(input.split_once('.').unwrap().1)).unwrap();
        assert_eq!(claims["aud"], "https://push.example");
        assert_eq!(claims["exp"], 1000 + VAPID_TOKEN_SECS);
        let verifying = p256::ecdsa::VerifyingKey::from_sec1_bytes(&b64(k)).unwrap();
        let sig = p256::ecdsa::Signature::from_slice(&b64(sig)).unwrap();
        verifying.verify(input.as_bytes(), &sig).unwrap();
    }
}
