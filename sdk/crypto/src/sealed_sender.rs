//! Sealed sender (after Signal's sealed sender v1): the relay learns the recipient, not the
//! sender. Two layers:
//!
//! - ephemeral layer: `DH(e, IK_B)` encrypts the sender's identity key;
//! - static layer: `DH(IK_A, IK_B)` (salted with the ephemeral chain key and the first
//!   ciphertext) encrypts the relay-signed [`SenderCertificate`] and the inner message, so the
//!   recipient authenticates the sender's identity key.
//!
//! The caller pads the plaintext; this module does not.

use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{ChaCha20Poly1305, KeyInit};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use hkdf::Hkdf;
use rand_core::CryptoRng;
use sha2::Sha256;
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

use crate::identity::{
    IDENTITY_KEY_LEN, IdentityKey, IdentityKeyPair, SIGNATURE_LEN, dh, x25519_public,
};
use crate::store::DeviceAddress;
use haven_protocol::certificate::{self, CertificateBody};
use haven_protocol::encoding::{Reader, put_bytes_u32};

/// Version byte of envelopes, certificates and the inner content.
pub const SEALED_SENDER_VERSION: u8 = certificate::VERSION;
/// Type byte of a [`SenderCertificate`].
pub const CERTIFICATE_TYPE: u8 = certificate::TYPE;
/// Type byte of a sealed envelope.
pub const ENVELOPE_TYPE: u8 = 0x41;
/// Domain-separation prefix of the relay's certificate signature.
pub const CERTIFICATE_SIGNATURE_CONTEXT: &[u8] = certificate::SIGNATURE_CONTEXT;
/// HKDF info of the ephemeral layer.
pub const EPHEMERAL_INFO: &[u8] = b"Haven_SealedSender_Ephemeral_v1";
/// HKDF info of the static layer.
pub const STATIC_INFO: &[u8] = b"Haven_SealedSender_Static_v1";
/// Encoded certificate length: version, type, account id, device id, identity, expiry, signature.
pub const CERTIFICATE_LEN: usize = certificate::CERTIFICATE_LEN;
/// Largest inner message (256 KiB; a padded ratchet message fits comfortably).
pub const MAX_SEALED_CONTENT_LEN: usize = 256 * 1024;
const TAG_LEN: usize = 16;
const STATIC_CT_LEN: usize = IDENTITY_KEY_LEN + TAG_LEN;
/// The shortest envelope (§5.3): header 34, `static_ct` 80, and `message_ct` sealing an inner
/// message with empty content (`1 + 1 + 4 + 158 + 4` bytes) plus its tag: 298 bytes. Shorter
/// input is refused as [`SealedSenderError::Malformed`] before any key agreement.
pub const MIN_ENVELOPE_LEN: usize = 2 + 32 + STATIC_CT_LEN + (10 + CERTIFICATE_LEN) + TAG_LEN;

/// Errors of sealed sender.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SealedSenderError {
    /// The encoding is truncated, has trailing bytes or an invalid field.
    #[error("malformed sealed sender encoding")]
    Malformed,
    /// Unknown version or type byte.
    #[error("unsupported sealed sender version/type")]
    UnsupportedVersion,
    /// Either layer failed to authenticate (tampered, or not for us).
    #[error("sealed sender decryption failed")]
    DecryptionFailed,
    /// The certificate is not signed by the trusted relay key.
    #[error("sender certificate signature invalid")]
    BadCertificateSignature,
    /// The certificate expired at `expires` (unix seconds) before `now`.
    #[error("sender certificate expired at {expires} (now {now})")]
    CertificateExpired {
        /// Expiry, unix seconds.
        expires: u64,
        /// Time of the check, unix seconds.
        now: u64,
    },
    /// The certificate names a different identity key than the one that sealed the envelope.
    #[error("sender certificate does not match the sealing identity")]
    IdentityMismatch,
    /// The inner message exceeds [`MAX_SEALED_CONTENT_LEN`].
    #[error("content of {len} bytes exceeds the limit of {max}")]
    ContentTooLarge {
        /// Length.
        len: usize,
        /// Limit.
        max: usize,
    },
}

/// A relay-signed statement "this identity key belongs to (account, device) until `expires`".
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct SenderCertificate {
    /// The sender's address.
    pub sender: DeviceAddress,
    /// The sender device's identity key.
    pub identity_key: IdentityKey,
    /// Expiry, unix seconds.
    pub expires: u64,
    signature: [u8; SIGNATURE_LEN],
}

impl SenderCertificate {
    /// The layout of `haven_protocol::certificate` for these fields.
    fn body(sender: &DeviceAddress, identity: &IdentityKey, expires: u64) -> CertificateBody {
        CertificateBody {
            account: sender.account_id,
            device: sender.device_id,
            identity_key: identity.to_bytes(),
            expires,
        }
    }

    /// Issues a certificate (what the relay does, for tests and vectors): Ed25519 signature
    /// over `CERTIFICATE_SIGNATURE_CONTEXT || body`.
    #[must_use]
    pub fn issue(
        relay_key: &SigningKey,
        sender: DeviceAddress,
        identity_key: IdentityKey,
        expires: u64,
    ) -> Self {
        let m = Self::body(&sender, &identity_key, expires).signing_input();
        let signature = relay_key.sign(&m).to_bytes();
        Self {
            sender,
            identity_key,
            expires,
            signature,
        }
    }

    /// Checks the signature against `trusted_relay_key` and the expiry against `now` (unix
    /// seconds; valid while `now < expires`).
    ///
    /// # Errors
    /// [`SealedSenderError::BadCertificateSignature`], [`SealedSenderError::CertificateExpired`].
    pub fn validate(
        &self,
        trusted_relay_key: &VerifyingKey,
        now: u64,
    ) -> Result<(), SealedSenderError> {
        let m = Self::body(&self.sender, &self.identity_key, self.expires).signing_input();
        trusted_relay_key
            .verify_strict(&m, &Signature::from_bytes(&self.signature))
            .map_err(|_| SealedSenderError::BadCertificateSignature)?;
        if now >= self.expires {
            return Err(SealedSenderError::CertificateExpired {
                expires: self.expires,
                now,
            });
        }
        Ok(())
    }

    /// `body || signature` ([`CERTIFICATE_LEN`] bytes).
    #[must_use]
    pub fn to_bytes(&self) -> Vec<u8> {
        Self::body(&self.sender, &self.identity_key, self.expires).with_signature(&self.signature)
    }

    /// Parses [`Self::to_bytes`] (does not validate the signature or expiry; the identity key
    /// must be two valid public keys).
    ///
    /// # Errors
    /// [`SealedSenderError::Malformed`] / [`SealedSenderError::UnsupportedVersion`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, SealedSenderError> {
        let (body, signature) = CertificateBody::decode(bytes).map_err(|e| match e {
            certificate::CertificateError::UnsupportedVersion => {
                SealedSenderError::UnsupportedVersion
            }
            _ => SealedSenderError::Malformed,
        })?;
        let identity_key = IdentityKey::from_bytes(&body.identity_key)
            .map_err(|_| SealedSenderError::Malformed)?;
        Ok(Self {
            sender: DeviceAddress::new(body.account, body.device),
            identity_key,
            expires: body.expires,
            signature,
        })
    }
}

/// What [`open_sealed`] returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenedEnvelope {
    /// The validated certificate (sender address and identity).
    pub certificate: SenderCertificate,
    /// Caller-defined content type byte (e.g. prekey vs normal message).
    pub content_type: u8,
    /// The inner message.
    pub content: Vec<u8>,
}

struct LayerKeys {
    key: Zeroizing<[u8; 32]>,
    nonce: [u8; 12],
}

fn layer(salt: &[u8], ikm: &[u8; 32], info: &[u8], chain: Option<&mut [u8; 32]>) -> LayerKeys {
    // okm = [chain (32) ||] key (32) || nonce (12)
    let mut okm = Zeroizing::new([0u8; 76]);
    let _ = Hkdf::<Sha256>::new(Some(salt), ikm).expand(info, okm.as_mut());
    let mut key = Zeroizing::new([0u8; 32]);
    let mut nonce = [0u8; 12];
    let off = match chain {
        Some(c) => {
            c.copy_from_slice(&okm[..32]);
            32
        }
        None => 0,
    };
    key.copy_from_slice(&okm[off..off + 32]);
    nonce.copy_from_slice(&okm[off + 32..off + 44]);
    LayerKeys { key, nonce }
}

fn seal_layer(k: &LayerKeys, plaintext: &[u8], ad: &[u8]) -> Option<Vec<u8>> {
    ChaCha20Poly1305::new(&(*k.key).into())
        .encrypt(
            &k.nonce.into(),
            Payload {
                msg: plaintext,
                aad: ad,
            },
        )
        .ok()
}

fn open_layer(k: &LayerKeys, ciphertext: &[u8], ad: &[u8]) -> Result<Vec<u8>, SealedSenderError> {
    ChaCha20Poly1305::new(&(*k.key).into())
        .decrypt(
            &k.nonce.into(),
            Payload {
                msg: ciphertext,
                aad: ad,
            },
        )
        .map_err(|_| SealedSenderError::DecryptionFailed)
}

/// Seals `content` from `sender` (whose identity `certificate` certifies) to `recipient`.
///
/// # Errors
/// [`SealedSenderError::ContentTooLarge`].
pub fn seal_sender<R: CryptoRng + ?Sized>(
    sender: &IdentityKeyPair,
    certificate: &SenderCertificate,
    recipient: &IdentityKey,
    content_type: u8,
    content: &[u8],
    rng: &mut R,
) -> Result<Vec<u8>, SealedSenderError> {
    hazmat::seal_sender_with(
        sender,
        certificate,
        recipient,
        content_type,
        content,
        StaticSecret::random_from_rng(rng),
    )
}

fn envelope_header(e_pub: &PublicKey) -> [u8; 34] {
    let mut h = [0u8; 34];
    h[0] = SEALED_SENDER_VERSION;
    h[1] = ENVELOPE_TYPE;
    h[2..].copy_from_slice(e_pub.as_bytes());
    h
}

fn ephemeral_salt(recipient: &IdentityKey, e_pub: &PublicKey) -> Vec<u8> {
    let mut s = recipient.to_bytes().to_vec();
    s.extend_from_slice(e_pub.as_bytes());
    s
}

fn static_salt(chain: &[u8; 32], static_ct: &[u8]) -> Zeroizing<Vec<u8>> {
    let mut s = Zeroizing::new(chain.to_vec());
    s.extend_from_slice(static_ct);
    s
}

fn inner_content(
    certificate: &SenderCertificate,
    content_type: u8,
    content: &[u8],
) -> Zeroizing<Vec<u8>> {
    let mut inner = Zeroizing::new(Vec::with_capacity(CERTIFICATE_LEN + content.len() + 10));
    inner.push(SEALED_SENDER_VERSION);
    inner.push(content_type);
    put_bytes_u32(&mut inner, &certificate.to_bytes());
    put_bytes_u32(&mut inner, content);
    inner
}

/// Opens an envelope addressed to `recipient`, validating the certificate against
/// `trusted_relay_key` and `now` (unix seconds) and checking that the certificate's identity is
/// the one that sealed the envelope.
///
/// # Errors
/// [`SealedSenderError::Malformed`], [`SealedSenderError::UnsupportedVersion`],
/// [`SealedSenderError::DecryptionFailed`], [`SealedSenderError::BadCertificateSignature`],
/// [`SealedSenderError::CertificateExpired`], [`SealedSenderError::IdentityMismatch`].
pub fn open_sealed(
    recipient: &IdentityKeyPair,
    trusted_relay_key: &VerifyingKey,
    envelope: &[u8],
    now: u64,
) -> Result<OpenedEnvelope, SealedSenderError> {
    let m = SealedSenderError::Malformed;
    let mut r = Reader::new(envelope);
    match (r.u8(), r.u8()) {
        (Some(SEALED_SENDER_VERSION), Some(ENVELOPE_TYPE)) => {}
        (Some(_), Some(_)) => return Err(SealedSenderError::UnsupportedVersion),
        _ => return Err(m),
    }
    if envelope.len() < MIN_ENVELOPE_LEN {
        return Err(m);
    }
    let e_pub = x25519_public(r.array().ok_or(m.clone())?).ok_or(m.clone())?;
    let static_ct = r.take(STATIC_CT_LEN).ok_or(m.clone())?;
    let message_ct = r.rest();
    if message_ct.len() > MAX_SEALED_CONTENT_LEN + CERTIFICATE_LEN + 64 {
        return Err(SealedSenderError::ContentTooLarge {
            len: message_ct.len(),
            max: MAX_SEALED_CONTENT_LEN,
        });
    }
    let header = envelope_header(&e_pub);
    let me = recipient.public();
    let dh_e = dh(recipient.dh_secret(), &e_pub).ok_or(SealedSenderError::DecryptionFailed)?;
    let mut chain = Zeroizing::new([0u8; 32]);
    let eph = layer(
        &ephemeral_salt(me, &e_pub),
        &dh_e,
        EPHEMERAL_INFO,
        Some(&mut chain),
    );
    let sender_bytes = open_layer(&eph, static_ct, &header)?;
    let sender =
        IdentityKey::from_bytes(&sender_bytes).map_err(|_| SealedSenderError::DecryptionFailed)?;
    let dh_s =
        dh(recipient.dh_secret(), sender.dh_public()).ok_or(SealedSenderError::DecryptionFailed)?;
    let stat = layer(&static_salt(&chain, static_ct), &dh_s, STATIC_INFO, None);
    let inner = Zeroizing::new(open_layer(&stat, message_ct, &header)?);
    let (content_type, certificate, content) = decode_inner(&inner)?;
    certificate.validate(trusted_relay_key, now)?;
    if certificate.identity_key != sender {
        return Err(SealedSenderError::IdentityMismatch);
    }
    Ok(OpenedEnvelope {
        certificate,
        content_type,
        content,
    })
}

/// The inner plaintext `version || content_type || u32 len || certificate || u32 len || content`
/// (what [`inner_content`] writes), the certificate parsed but not yet validated.
fn decode_inner(inner: &[u8]) -> Result<(u8, SenderCertificate, Vec<u8>), SealedSenderError> {
    let m = SealedSenderError::Malformed;
    let mut ir = Reader::new(inner);
    match ir.u8() {
        Some(SEALED_SENDER_VERSION) => {}
        Some(_) => return Err(SealedSenderError::UnsupportedVersion),
        None => return Err(m),
    }
    let content_type = ir.u8().ok_or(m.clone())?;
    let certificate =
        SenderCertificate::from_bytes(ir.bytes_u32(CERTIFICATE_LEN).ok_or(m.clone())?)?;
    let content = ir
        .bytes_u32(MAX_SEALED_CONTENT_LEN)
        .ok_or(m.clone())?
        .to_vec();
    ir.finish().ok_or(m)?;
    Ok((content_type, certificate, content))
}

/// hazmat: sealing with caller-chosen randomness (test vectors only).
pub mod hazmat {
    use super::*;

    /// hazmat: the decoder of the plaintext behind an envelope's second layer (content type,
    /// certificate, content; the certificate is not validated), for fuzzing it without keys.
    ///
    /// # Errors
    /// [`SealedSenderError::Malformed`], [`SealedSenderError::UnsupportedVersion`].
    pub fn decode_inner_content(
        inner: &[u8],
    ) -> Result<(u8, SenderCertificate, Vec<u8>), SealedSenderError> {
        decode_inner(inner)
    }

    /// hazmat: [`seal_sender`] with an explicit ephemeral secret (test vectors only).
    ///
    /// # Errors
    /// As [`seal_sender`].
    pub fn seal_sender_with(
        sender: &IdentityKeyPair,
        certificate: &SenderCertificate,
        recipient: &IdentityKey,
        content_type: u8,
        content: &[u8],
        ephemeral: StaticSecret,
    ) -> Result<Vec<u8>, SealedSenderError> {
        if content.len() > MAX_SEALED_CONTENT_LEN {
            return Err(SealedSenderError::ContentTooLarge {
                len: content.len(),
                max: MAX_SEALED_CONTENT_LEN,
            });
        }
        let e_pub = PublicKey::from(&ephemeral);
        let header = envelope_header(&e_pub);
        let dh_e =
            dh(&ephemeral, recipient.dh_public()).ok_or(SealedSenderError::DecryptionFailed)?;
        let mut chain = Zeroizing::new([0u8; 32]);
        let eph = layer(
            &ephemeral_salt(recipient, &e_pub),
            &dh_e,
            EPHEMERAL_INFO,
            Some(&mut chain),
        );
        let static_ct = seal_layer(&eph, &sender.public().to_bytes(), &header)
            .ok_or(SealedSenderError::DecryptionFailed)?;
        let dh_s = dh(sender.dh_secret(), recipient.dh_public())
            .ok_or(SealedSenderError::DecryptionFailed)?;
        let stat = layer(&static_salt(&chain, &static_ct), &dh_s, STATIC_INFO, None);
        let inner = inner_content(certificate, content_type, content);
        let message_ct =
            seal_layer(&stat, &inner, &header).ok_or(SealedSenderError::DecryptionFailed)?;
        let mut out = header.to_vec();
        out.extend_from_slice(&static_ct);
        out.extend_from_slice(&message_ct);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    struct Fx {
        rng: ChaCha20Rng,
        relay: SigningKey,
        alice: IdentityKeyPair,
        bob: IdentityKeyPair,
        cert: SenderCertificate,
    }

    fn fx() -> Fx {
        let mut rng = ChaCha20Rng::from_seed([30; 32]);
        let relay = SigningKey::generate(&mut rng);
        let alice = IdentityKeyPair::generate(&mut rng);
        let bob = IdentityKeyPair::generate(&mut rng);
        let cert = SenderCertificate::issue(
            &relay,
            DeviceAddress::new([0xA1; 16], 3),
            *alice.public(),
            2_000,
        );
        Fx {
            rng,
            relay,
            alice,
            bob,
            cert,
        }
    }

    #[test]
    fn roundtrip() {
        let mut f = fx();
        let env = seal_sender(&f.alice, &f.cert, f.bob.public(), 7, b"inner", &mut f.rng).unwrap();
        let o = open_sealed(&f.bob, &f.relay.verifying_key(), &env, 1_999).unwrap();
        assert_eq!((o.content_type, o.content.as_slice()), (7, &b"inner"[..]));
        assert_eq!(o.certificate, f.cert);
        assert_eq!(o.certificate.sender, DeviceAddress::new([0xA1; 16], 3));
        assert_eq!(
            SenderCertificate::from_bytes(&f.cert.to_bytes()).unwrap(),
            f.cert
        );
    }

    #[test]
    fn expired_and_foreign_certificates() {
        let mut f = fx();
        let env = seal_sender(&f.alice, &f.cert, f.bob.public(), 1, b"x", &mut f.rng).unwrap();
        assert_eq!(
            open_sealed(&f.bob, &f.relay.verifying_key(), &env, 2_000),
            Err(SealedSenderError::CertificateExpired {
                expires: 2_000,
                now: 2_000
            })
        );
        let other_relay = SigningKey::generate(&mut f.rng);
        assert_eq!(
            open_sealed(&f.bob, &other_relay.verifying_key(), &env, 0),
            Err(SealedSenderError::BadCertificateSignature)
        );
    }

    #[test]
    fn certificate_for_another_identity_is_refused() {
        let mut f = fx();
        // Mallory holds a valid certificate for Alice's identity but seals with her own key.
        let mallory = IdentityKeyPair::generate(&mut f.rng);
        let env = seal_sender(&mallory, &f.cert, f.bob.public(), 1, b"x", &mut f.rng).unwrap();
        assert_eq!(
            open_sealed(&f.bob, &f.relay.verifying_key(), &env, 0),
            Err(SealedSenderError::IdentityMismatch)
        );
    }

    #[test]
    fn wrong_recipient_and_every_byte_tampered() {
        let mut f = fx();
        let env = seal_sender(&f.alice, &f.cert, f.bob.public(), 1, b"hello", &mut f.rng).unwrap();
        let carol = IdentityKeyPair::generate(&mut f.rng);
        assert_eq!(
            open_sealed(&carol, &f.relay.verifying_key(), &env, 0),
            Err(SealedSenderError::DecryptionFailed)
        );
        for i in 0..env.len() {
            let mut t = env.clone();
            t[i] ^= 0x01;
            assert!(
                open_sealed(&f.bob, &f.relay.verifying_key(), &t, 0).is_err(),
                "byte {i}"
            );
        }
        assert!(open_sealed(&f.bob, &f.relay.verifying_key(), &env[..env.len() - 1], 0).is_err());
    }

    #[test]
    fn envelopes_shorter_than_the_minimum_are_malformed() {
        let mut f = fx();
        let env = seal_sender(&f.alice, &f.cert, f.bob.public(), 1, b"", &mut f.rng).unwrap();
        assert_eq!(env.len(), MIN_ENVELOPE_LEN);
        assert_eq!(MIN_ENVELOPE_LEN, 298);
        let o = open_sealed(&f.bob, &f.relay.verifying_key(), &env, 0).unwrap();
        assert!(o.content.is_empty());
        for len in [2, 34, 114, 115, MIN_ENVELOPE_LEN - 1] {
            assert_eq!(
                open_sealed(&f.bob, &f.relay.verifying_key(), &env[..len], 0),
                Err(SealedSenderError::Malformed),
                "{len} bytes"
            );
        }
    }

    #[test]
    fn tampered_certificate_signature_is_typed() {
        let f = fx();
        let mut bytes = f.cert.to_bytes();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        let c = SenderCertificate::from_bytes(&bytes).unwrap();
        assert_eq!(
            c.validate(&f.relay.verifying_key(), 0),
            Err(SealedSenderError::BadCertificateSignature)
        );
    }
}
