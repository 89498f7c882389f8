//! Wire formats of ratchet messages and prekey (initial) messages.

use x25519_dalek::PublicKey;

use super::RatchetError;
use crate::identity::{IDENTITY_KEY_LEN, IdentityKey, x25519_public};
use crate::prekeys::KEM_CIPHERTEXT_LEN;
use haven_protocol::encoding::Reader;

/// Version byte of every session message.
pub const MESSAGE_VERSION: u8 = 0x01;
/// Type byte of a normal ratchet message.
pub const TYPE_RATCHET: u8 = 0x01;
/// Type byte of a prekey (initial) message.
pub const TYPE_PREKEY: u8 = 0x02;
/// Length of the ratchet header: version, type, ratchet key, PN, N.
pub const HEADER_LEN: usize = 1 + 1 + 32 + 4 + 4;
/// Poly1305 tag length.
pub const TAG_LEN: usize = 16;
/// Largest plaintext a ratchet message may carry (128 KiB). Attachments travel separately.
pub const MAX_PLAINTEXT_LEN: usize = 128 * 1024;

/// A Double Ratchet message: header (authenticated) and ciphertext.
#[derive(Clone, PartialEq, Eq)]
pub struct RatchetMessage {
    /// The sender's current ratchet public key.
    pub ratchet_key: PublicKey,
    /// PN: number of messages in the sender's previous sending chain.
    pub previous_counter: u32,
    /// N: index of this message in the current sending chain.
    pub counter: u32,
    /// AEAD ciphertext including the 16-byte tag.
    pub ciphertext: Vec<u8>,
}

impl RatchetMessage {
    /// The 42 header bytes `0x01 || 0x01 || ratchet_key || PN || N`, authenticated as AD.
    #[must_use]
    pub fn header_bytes(&self) -> [u8; HEADER_LEN] {
        encode_header(&self.ratchet_key, self.previous_counter, self.counter)
    }

    /// `header || ciphertext`.
    #[must_use]
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + self.ciphertext.len());
        out.extend_from_slice(&self.header_bytes());
        out.extend_from_slice(&self.ciphertext);
        out
    }

    /// Parses [`Self::to_bytes`].
    ///
    /// # Errors
    /// [`RatchetError::Malformed`], [`RatchetError::UnsupportedVersion`],
    /// [`RatchetError::MessageTooLarge`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, RatchetError> {
        let mut r = Reader::new(bytes);
        match (r.u8(), r.u8()) {
            (Some(MESSAGE_VERSION), Some(TYPE_RATCHET)) => {}
            (Some(_), Some(_)) => return Err(RatchetError::UnsupportedVersion),
            _ => return Err(RatchetError::Malformed),
        }
        let ratchet_key = x25519_public(r.array::<32>().ok_or(RatchetError::Malformed)?)
            .ok_or(RatchetError::Malformed)?;
        let previous_counter = r.u32().ok_or(RatchetError::Malformed)?;
        let counter = r.u32().ok_or(RatchetError::Malformed)?;
        let ciphertext = r.rest();
        if ciphertext.len() < TAG_LEN {
            return Err(RatchetError::Malformed);
        }
        if ciphertext.len() > MAX_PLAINTEXT_LEN + TAG_LEN {
            return Err(RatchetError::MessageTooLarge {
                len: ciphertext.len() - TAG_LEN,
                max: MAX_PLAINTEXT_LEN,
            });
        }
        Ok(Self {
            ratchet_key,
            previous_counter,
            counter,
            ciphertext: ciphertext.to_vec(),
        })
    }
}

pub(crate) fn encode_header(key: &PublicKey, pn: u32, n: u32) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[0] = MESSAGE_VERSION;
    h[1] = TYPE_RATCHET;
    h[2..34].copy_from_slice(key.as_bytes());
    h[34..38].copy_from_slice(&pn.to_be_bytes());
    h[38..42].copy_from_slice(&n.to_be_bytes());
    h
}

/// The initial message of a session: PQXDH parameters plus the first ratchet message. The
/// initiator keeps sending this form until it has received a reply, so a lost first message
/// does not break the session.
#[derive(Clone, PartialEq, Eq)]
pub struct PreKeyMessage {
    /// The initiator's identity key.
    pub identity_key: IdentityKey,
    /// The initiator's ephemeral (base) key `EK_A`.
    pub base_key: PublicKey,
    /// Id of the responder's signed prekey used.
    pub signed_prekey_id: u32,
    /// Id of the responder's one-time prekey used, if any.
    pub one_time_prekey_id: Option<u32>,
    /// Id of the responder's KEM prekey used.
    pub kem_prekey_id: u32,
    /// ML-KEM-1024 ciphertext.
    pub kem_ciphertext: Box<[u8; KEM_CIPHERTEXT_LEN]>,
    /// The embedded ratchet message.
    pub message: RatchetMessage,
}

impl PreKeyMessage {
    /// Encoding (PROTOCOL.md §3.4).
    #[must_use]
    pub fn to_bytes(&self) -> Vec<u8> {
        let inner = self.message.to_bytes();
        let mut out = Vec::with_capacity(1700 + inner.len());
        out.extend_from_slice(&[MESSAGE_VERSION, TYPE_PREKEY]);
        out.extend_from_slice(&self.identity_key.to_bytes());
        out.extend_from_slice(self.base_key.as_bytes());
        out.extend_from_slice(&self.signed_prekey_id.to_be_bytes());
        match self.one_time_prekey_id {
            None => out.push(0),
            Some(id) => {
                out.push(1);
                out.extend_from_slice(&id.to_be_bytes());
            }
        }
        out.extend_from_slice(&self.kem_prekey_id.to_be_bytes());
        out.extend_from_slice(self.kem_ciphertext.as_slice());
        out.extend_from_slice(&inner);
        out
    }

    /// Parses [`Self::to_bytes`].
    ///
    /// # Errors
    /// [`RatchetError::Malformed`], [`RatchetError::UnsupportedVersion`],
    /// [`RatchetError::MessageTooLarge`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, RatchetError> {
        let m = RatchetError::Malformed;
        let mut r = Reader::new(bytes);
        match (r.u8(), r.u8()) {
            (Some(MESSAGE_VERSION), Some(TYPE_PREKEY)) => {}
            (Some(_), Some(_)) => return Err(RatchetError::UnsupportedVersion),
            _ => return Err(m),
        }
        let identity_key = IdentityKey::from_bytes(r.take(IDENTITY_KEY_LEN).ok_or(m.clone())?)
            .map_err(|_| m.clone())?;
        let base_key = x25519_public(r.array::<32>().ok_or(m.clone())?).ok_or(m.clone())?;
        let signed_prekey_id = r.u32().ok_or(m.clone())?;
        let one_time_prekey_id = match r.u8() {
            Some(0) => None,
            Some(1) => Some(r.u32().ok_or(m.clone())?),
            _ => return Err(m),
        };
        let kem_prekey_id = r.u32().ok_or(m.clone())?;
        let kem_ciphertext = Box::new(r.array::<KEM_CIPHERTEXT_LEN>().ok_or(m.clone())?);
        let message = RatchetMessage::from_bytes(r.rest())?;
        Ok(Self {
            identity_key,
            base_key,
            signed_prekey_id,
            one_time_prekey_id,
            kem_prekey_id,
            kem_ciphertext,
            message,
        })
    }
}

/// Either kind of session message, dispatched on the type byte.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SessionMessage {
    /// An initial message that may create a session.
    PreKey(Box<PreKeyMessage>),
    /// A message on an existing session.
    Ratchet(RatchetMessage),
}

impl SessionMessage {
    /// Parses either format.
    ///
    /// # Errors
    /// As [`PreKeyMessage::from_bytes`] / [`RatchetMessage::from_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, RatchetError> {
        match bytes.get(..2) {
            Some([MESSAGE_VERSION, TYPE_PREKEY]) => {
                PreKeyMessage::from_bytes(bytes).map(|m| Self::PreKey(Box::new(m)))
            }
            Some([MESSAGE_VERSION, TYPE_RATCHET]) => {
                RatchetMessage::from_bytes(bytes).map(Self::Ratchet)
            }
            Some(_) => Err(RatchetError::UnsupportedVersion),
            None => Err(RatchetError::Malformed),
        }
    }

    /// Encoding.
    #[must_use]
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            Self::PreKey(m) => m.to_bytes(),
            Self::Ratchet(m) => m.to_bytes(),
        }
    }
}

impl core::fmt::Debug for RatchetMessage {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("RatchetMessage")
            .field("previous_counter", &self.previous_counter)
            .field("counter", &self.counter)
            .field("ciphertext_len", &self.ciphertext.len())
            .finish_non_exhaustive()
    }
}

impl core::fmt::Debug for PreKeyMessage {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PreKeyMessage")
            .field("identity_key", &self.identity_key)
            .field("signed_prekey_id", &self.signed_prekey_id)
            .field("one_time_prekey_id", &self.one_time_prekey_id)
            .field("kem_prekey_id", &self.kem_prekey_id)
            .field("message", &self.message)
            .finish_non_exhaustive()
    }
}

impl core::fmt::Debug for SessionMessage {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::PreKey(m) => m.fmt(f),
            Self::Ratchet(m) => m.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(ct_len: usize) -> RatchetMessage {
        RatchetMessage {
            ratchet_key: PublicKey::from([9u8; 32]),
            previous_counter: 3,
            counter: 4,
            ciphertext: vec![0xAB; ct_len],
        }
    }

    #[test]
    fn roundtrip_and_size_limits() {
        let m = msg(TAG_LEN + 5);
        assert_eq!(RatchetMessage::from_bytes(&m.to_bytes()).unwrap(), m);
        assert_eq!(
            RatchetMessage::from_bytes(&msg(TAG_LEN - 1).to_bytes()),
            Err(RatchetError::Malformed)
        );
        let max = msg(MAX_PLAINTEXT_LEN + TAG_LEN);
        assert!(RatchetMessage::from_bytes(&max.to_bytes()).is_ok());
        assert_eq!(
            RatchetMessage::from_bytes(&msg(MAX_PLAINTEXT_LEN + TAG_LEN + 1).to_bytes()),
            Err(RatchetError::MessageTooLarge {
                len: MAX_PLAINTEXT_LEN + 1,
                max: MAX_PLAINTEXT_LEN
            })
        );
    }

    #[test]
    fn version_type_and_key_checks() {
        let mut b = msg(TAG_LEN).to_bytes();
        b[0] = 2;
        assert_eq!(
            SessionMessage::from_bytes(&b),
            Err(RatchetError::UnsupportedVersion)
        );
        let mut b = msg(TAG_LEN).to_bytes();
        b[33] |= 0x80; // non-canonical ratchet key
        assert_eq!(RatchetMessage::from_bytes(&b), Err(RatchetError::Malformed));
        assert_eq!(
            SessionMessage::from_bytes(&[1]),
            Err(RatchetError::Malformed)
        );
    }

    #[test]
    fn debug_shows_no_ciphertext() {
        let s = format!("{:?}", msg(TAG_LEN));
        assert!(!s.to_lowercase().contains("abab"), "{s}");
    }
}
