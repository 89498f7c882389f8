//! Device linking's formats (PROTOCOL.md §15.3): the link code a new device shows, and the
//! provisioning message an approving device sends it (the plaintext; `haven_sdk::provisioning`
//! seals and opens it).
//!
//! The check is a typo check over the code (SHA-256 is used as a checksum here, not for
//! security).
//!
//! ```text
//! code      = "haven-link:" || base32(payload)          (RFC 4648 alphabet, lower case, no padding)
//! payload   = 01 | box_id [16] | new device's X25519 public key [32] | check [4]
//! check     = SHA-256(01 | box_id | public key)[0..4]
//!
//! plaintext = 01 | account_id [16] | link_token [32] | account key pair [34]
//!             | access_key [16] | approver device u32 | list version u64
//! ```

use data_encoding::BASE32_NOPAD;
use sha2::{Digest, Sha256};

use crate::encoding::Reader;

/// Prefix of a link code.
pub const CODE_PREFIX: &str = "haven-link:";
/// Version byte of the code payload and of the plaintext.
pub const VERSION: u8 = 0x01;
/// Length of the code payload.
pub const PAYLOAD_LEN: usize = 1 + 16 + 32 + 4;
/// Length of the account key pair's secret encoding (`01 51 || seed`).
pub const ACCOUNT_KEY_PAIR_LEN: usize = 34;
/// Length of the plaintext.
pub const PLAINTEXT_LEN: usize = 1 + 16 + 32 + ACCOUNT_KEY_PAIR_LEN + 16 + 4 + 8;

/// Why a code or plaintext was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProvisioningFormatError {
    /// Not a link code (prefix, alphabet, length or version).
    #[error("not a link code")]
    NotACode,
    /// The code's check digits do not match: a typo.
    #[error("the link code has a typo")]
    Typo,
    /// The plaintext has the wrong length or version.
    #[error("malformed provisioning message")]
    Malformed,
}

/// What a link code carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkCode {
    /// The new device's provisioning box.
    pub box_id: [u8; 16],
    /// The new device's X25519 public key for this link.
    pub public_key: [u8; 32],
}

impl LinkCode {
    fn check(box_id: &[u8; 16], public_key: &[u8; 32]) -> [u8; 4] {
        let mut h = Sha256::new();
        h.update([VERSION]);
        h.update(box_id);
        h.update(public_key);
        let d = h.finalize();
        [d[0], d[1], d[2], d[3]]
    }

    /// The text to show (or put in a QR code).
    #[must_use]
    pub fn encode(&self) -> String {
        let mut payload = Vec::with_capacity(PAYLOAD_LEN);
        payload.push(VERSION);
        payload.extend_from_slice(&self.box_id);
        payload.extend_from_slice(&self.public_key);
        payload.extend_from_slice(&Self::check(&self.box_id, &self.public_key));
        format!(
            "{CODE_PREFIX}{}",
            BASE32_NOPAD.encode(&payload).to_ascii_lowercase()
        )
    }

    /// Parses a code as a person typed or pasted it: surrounding whitespace, inner spaces and
    /// dashes, and the case are ignored.
    ///
    /// # Errors
    /// [`ProvisioningFormatError::NotACode`], [`ProvisioningFormatError::Typo`].
    pub fn parse(text: &str) -> Result<Self, ProvisioningFormatError> {
        let text = text.trim();
        let body = text
            .get(..CODE_PREFIX.len())
            .filter(|p| p.eq_ignore_ascii_case(CODE_PREFIX))
            .and_then(|_| text.get(CODE_PREFIX.len()..))
            .ok_or(ProvisioningFormatError::NotACode)?;
        let cleaned: String = body
            .chars()
            .filter(|c| !c.is_whitespace() && *c != '-')
            .map(|c| c.to_ascii_uppercase())
            .collect();
        let payload = BASE32_NOPAD
            .decode(cleaned.as_bytes())
            .map_err(|_| ProvisioningFormatError::NotACode)?;
        if payload.len() != PAYLOAD_LEN {
            return Err(ProvisioningFormatError::NotACode);
        }
        let mut r = Reader::new(&payload);
        if r.u8() != Some(VERSION) {
            return Err(ProvisioningFormatError::NotACode);
        }
        let box_id: [u8; 16] = r.array().ok_or(ProvisioningFormatError::NotACode)?;
        let public_key: [u8; 32] = r.array().ok_or(ProvisioningFormatError::NotACode)?;
        let check: [u8; 4] = r.array().ok_or(ProvisioningFormatError::NotACode)?;
        if check != Self::check(&box_id, &public_key) {
            return Err(ProvisioningFormatError::Typo);
        }
        Ok(Self { box_id, public_key })
    }
}

/// What an approving device gives a new one. Secret (the account key pair, the link token, the
/// access key): the `Debug` output shows none of it.
#[derive(Clone, PartialEq, Eq)]
pub struct ProvisioningPlaintext {
    /// The account.
    pub account_id: [u8; 16],
    /// The link token that lets the new device join (`POST /v1/devices/link`).
    pub link_token: [u8; 32],
    /// The account identity key pair's secret encoding (PROTOCOL.md §15.1).
    pub account_key_pair: [u8; ACCOUNT_KEY_PAIR_LEN],
    /// The account's unidentified-access key (so contacts' sealed sends reach the new device).
    pub access_key: [u8; 16],
    /// The approving device's number.
    pub approver_device: u32,
    /// The version of the account's latest device list (the new device signs the next one).
    pub list_version: u64,
}

impl core::fmt::Debug for ProvisioningPlaintext {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ProvisioningPlaintext")
            .field("approver_device", &self.approver_device)
            .field("list_version", &self.list_version)
            .finish_non_exhaustive()
    }
}

impl ProvisioningPlaintext {
    /// The encoding ([`PLAINTEXT_LEN`] bytes).
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(PLAINTEXT_LEN);
        b.push(VERSION);
        b.extend_from_slice(&self.account_id);
        b.extend_from_slice(&self.link_token);
        b.extend_from_slice(&self.account_key_pair);
        b.extend_from_slice(&self.access_key);
        b.extend_from_slice(&self.approver_device.to_be_bytes());
        b.extend_from_slice(&self.list_version.to_be_bytes());
        b
    }

    /// Parses [`Self::encode`].
    ///
    /// # Errors
    /// [`ProvisioningFormatError::Malformed`].
    pub fn decode(bytes: &[u8]) -> Result<Self, ProvisioningFormatError> {
        let m = ProvisioningFormatError::Malformed;
        if bytes.len() != PLAINTEXT_LEN {
            return Err(m);
        }
        let mut r = Reader::new(bytes);
        if r.u8() != Some(VERSION) {
            return Err(m);
        }
        let out = Self {
            account_id: r.array().ok_or(m)?,
            link_token: r.array().ok_or(m)?,
            account_key_pair: r.array().ok_or(m)?,
            access_key: r.array().ok_or(m)?,
            approver_device: r.u32().ok_or(m)?,
            list_version: r.u64().ok_or(m)?,
        };
        r.finish().ok_or(m)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn codes_round_trip_tolerate_formatting_and_catch_typos() {
        let code = LinkCode {
            box_id: [0xab; 16],
            public_key: [0x11; 32],
        };
        let text = code.encode();
        assert!(text.starts_with("haven-link:"));
        assert_eq!(text.len(), CODE_PREFIX.len() + 85);
        assert_eq!(LinkCode::parse(&text).unwrap(), code);
        let spaced: String = text.as_bytes()[CODE_PREFIX.len()..]
            .chunks(5)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect::<Vec<_>>()
            .join("-");
        let shouted = format!("  HAVEN-LINK:{}\n", spaced.to_uppercase());
        assert_eq!(LinkCode::parse(&shouted).unwrap(), code);
        // One character changed: caught by the check (or not base32 at all).
        let mut typo = text.clone().into_bytes();
        let i = CODE_PREFIX.len() + 10;
        typo[i] = if typo[i] == b'a' { b'b' } else { b'a' };
        assert!(LinkCode::parse(std::str::from_utf8(&typo).unwrap()).is_err());
        for bad in [
            "",
            "haven-link:",
            "haven-link:abc",
            "other:abcdef",
            &text[..text.len() - 1],
        ] {
            assert!(LinkCode::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn plaintext_round_trip_and_refusals() {
        let p = ProvisioningPlaintext {
            account_id: [1; 16],
            link_token: [2; 32],
            account_key_pair: [3; 34],
            access_key: [4; 16],
            approver_device: 5,
            list_version: 6,
        };
        let bytes = p.encode();
        assert_eq!(bytes.len(), PLAINTEXT_LEN);
        assert_eq!(ProvisioningPlaintext::decode(&bytes).unwrap(), p);
        assert!(ProvisioningPlaintext::decode(&bytes[1..]).is_err());
        let mut v2 = bytes.clone();
        v2[0] = 2;
        assert!(ProvisioningPlaintext::decode(&v2).is_err());
        assert!(!format!("{p:?}").contains("[2, 2"));
    }
}
