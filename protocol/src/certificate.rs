//! The sender certificate's layout (PROTOCOL.md §5.1): the relay's signed statement "this
//! identity key belongs to (account, device) until `expires`".
//!
//! ```text
//! body        = 01 | 40 | account [16] | device u32 | identity key [64] | expires u64
//! certificate = body | Ed25519 signature [64] over ("Haven_SenderCertificate_v1" || body)
//! ```
//!
//! This module is the layout only: the relay signs [`CertificateBody::signing_input`] with its
//! Ed25519 key; the SDK checks the signature, the expiry and the identity key's points.

use crate::encoding::{self, Reader};

/// Version byte (shared with the sealed-sender envelope and its inner content).
pub const VERSION: u8 = 0x01;
/// Type byte of a certificate.
pub const TYPE: u8 = 0x40;
/// Domain-separation prefix of the relay's signature.
pub const SIGNATURE_CONTEXT: &[u8] = b"Haven_SenderCertificate_v1";
/// Length of an identity key (X25519 public key, then Ed25519 public key).
pub const IDENTITY_KEY_LEN: usize = 64;
/// Length of an Ed25519 signature.
pub const SIGNATURE_LEN: usize = 64;
/// Length of the signed body.
pub const BODY_LEN: usize = 2 + 16 + 4 + IDENTITY_KEY_LEN + 8;
/// Length of an encoded certificate (always exactly this).
pub const CERTIFICATE_LEN: usize = BODY_LEN + SIGNATURE_LEN;

/// Why certificate bytes were refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CertificateError {
    /// Not exactly [`CERTIFICATE_LEN`] bytes.
    #[error("a certificate is {CERTIFICATE_LEN} bytes")]
    Malformed,
    /// Unknown version or type byte.
    #[error("unsupported certificate version or type")]
    UnsupportedVersion,
}

/// What a certificate states.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertificateBody {
    /// The sender's account id.
    pub account: [u8; 16],
    /// The sender's device number.
    pub device: u32,
    /// The sender device's identity key.
    pub identity_key: [u8; IDENTITY_KEY_LEN],
    /// Expiry, Unix seconds (valid while `now < expires`).
    pub expires: u64,
}

impl CertificateBody {
    /// The signed body ([`BODY_LEN`] bytes).
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(CERTIFICATE_LEN);
        b.extend_from_slice(&[VERSION, TYPE]);
        b.extend_from_slice(&self.account);
        b.extend_from_slice(&self.device.to_be_bytes());
        b.extend_from_slice(&self.identity_key);
        b.extend_from_slice(&self.expires.to_be_bytes());
        b
    }

    /// What the relay signs: [`SIGNATURE_CONTEXT`] `||` body.
    #[must_use]
    pub fn signing_input(&self) -> Vec<u8> {
        encoding::signing_input(SIGNATURE_CONTEXT, &self.encode())
    }

    /// The certificate: body `||` signature.
    #[must_use]
    pub fn with_signature(&self, signature: &[u8; SIGNATURE_LEN]) -> Vec<u8> {
        encoding::with_signature(self.encode(), signature)
    }

    /// Splits a certificate into its body and signature (nothing is verified).
    ///
    /// # Errors
    /// [`CertificateError`] for a wrong length, version or type.
    pub fn decode(bytes: &[u8]) -> Result<(Self, [u8; SIGNATURE_LEN]), CertificateError> {
        if bytes.len() != CERTIFICATE_LEN {
            return Err(CertificateError::Malformed);
        }
        let mut r = Reader::new(bytes);
        let m = CertificateError::Malformed;
        if (r.u8(), r.u8()) != (Some(VERSION), Some(TYPE)) {
            return Err(CertificateError::UnsupportedVersion);
        }
        let body = Self {
            account: r.array().ok_or(m)?,
            device: r.u32().ok_or(m)?,
            identity_key: r.array().ok_or(m)?,
            expires: r.u64().ok_or(m)?,
        };
        let signature = r.array().ok_or(m)?;
        r.finish().ok_or(m)?;
        Ok((body, signature))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn layout_round_trip_and_refusals() {
        let body = CertificateBody {
            account: [1; 16],
            device: 2,
            identity_key: [3; 64],
            expires: 4,
        };
        let cert = body.with_signature(&[5; 64]);
        assert_eq!(cert.len(), 158);
        assert_eq!(&cert[..2], &[0x01, 0x40]);
        assert_eq!(&cert[18..22], &2u32.to_be_bytes());
        assert_eq!(&cert[86..94], &4u64.to_be_bytes());
        assert_eq!(
            CertificateBody::decode(&cert).unwrap(),
            (body.clone(), [5; 64])
        );
        assert!(body.signing_input().starts_with(SIGNATURE_CONTEXT));
        for n in [0, 157, 159] {
            let mut c = cert.clone();
            c.resize(n, 0);
            assert_eq!(
                CertificateBody::decode(&c),
                Err(CertificateError::Malformed)
            );
        }
        let mut c = cert;
        c[1] = 0x41;
        assert_eq!(
            CertificateBody::decode(&c),
            Err(CertificateError::UnsupportedVersion)
        );
    }
}
