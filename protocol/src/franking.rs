//! Verifiable abuse reports (message franking): the byte layouts, PROTOCOL.md §16.
//!
//! Every format and every KDF/MAC input of franking has its one home here: the relay's
//! published franking key, the destination a message was delivered to, the opening a sender
//! puts inside the encryption, the report body, and the exact bytes each HMAC and HKDF step
//! reads. This module computes nothing; the computations over these inputs are in `verify`
//! (feature `franking`), which both the relay and the SDK use.
//!
//! ```text
//! franking key   = 01 | X25519 public F [32]                                   (33 bytes)
//! destination    = 01 | account [16] | device u32        a device's mailbox    (21 bytes)
//!                | 02 | channel id [16] | 00 00 00 00    a channel entry
//! opening        = 01 | 70 | fk [32] | dv [32] | content                       (inside the AEAD)
//! report         = 01 | 71 | F [32] | sender account [16] | sender device u32
//!                  | destination [21] | seq u64 | time u64 | c [32] | s [32]
//!                  | fk [32] | dv [32] | u32 len | content                      (≥ 223 bytes)
//! ```

#[cfg(feature = "franking")]
pub mod verify;

use crate::encoding::{self, Reader};

/// Version byte of every franking layout.
pub const VERSION: u8 = 0x01;
/// Type byte of an [`Opening`] (the sender's franking material inside the encryption).
pub const OPENING_TYPE: u8 = 0x70;
/// Type byte of a [`Report`].
pub const REPORT_TYPE: u8 = 0x71;

/// HMAC label of the commitment: `c = HMAC(fk, COMMITMENT_LABEL || u32 len || content)`.
pub const COMMITMENT_LABEL: &[u8] = b"Haven_Franking_Commitment_v1";
/// HKDF info of the sender tag's key.
pub const TAG_KEY_INFO: &[u8] = b"Haven_Franking_TagKey_v1";
/// HMAC label of the sender tag: `dv = HMAC(k, TAG_LABEL || c || destination)`.
pub const TAG_LABEL: &[u8] = b"Haven_Franking_Tag_v1";
/// HMAC label of the relay's delivery stamp.
pub const STAMP_LABEL: &[u8] = b"Haven_Franking_Stamp_v1";
/// Hash label of a report's id (the relay's replay key).
pub const REPORT_ID_LABEL: &[u8] = b"Haven_Franking_Report_v1";

/// Length of a franking key (`fk`), a commitment (`c`), a tag (`dv`), a stamp (`s`) and an
/// X25519 public key.
pub const LEN_32: usize = 32;
/// Length of an encoded [`FrankingKey`].
pub const FRANKING_KEY_LEN: usize = 1 + LEN_32;
/// Length of an encoded [`Destination`].
pub const DESTINATION_LEN: usize = 1 + 16 + 4;
/// Length of an identity key (`ed25519_pub || x25519_pub`, PROTOCOL.md §1.1).
pub const IDENTITY_KEY_LEN: usize = 64;
/// Length of an [`Opening`]'s header (version, type, `fk`, `dv`) before the content.
pub const OPENING_HEADER_LEN: usize = 2 + 2 * LEN_32;
/// Length of a [`Report`] with empty content.
pub const REPORT_MIN_LEN: usize = 2 + LEN_32 + 16 + 4 + DESTINATION_LEN + 8 + 8 + 4 * LEN_32 + 4;
/// Largest franked content (the sealed-sender content limit, PROTOCOL.md §5.3).
pub const MAX_CONTENT_LEN: usize = 256 * 1024;
/// Length of a report id.
pub const REPORT_ID_LEN: usize = 16;

/// Destination kind byte: a device's mailbox (PROTOCOL.md §11.12).
const DEST_DEVICE: u8 = 0x01;
/// Destination kind byte: a channel entry (PROTOCOL.md §11.15).
const DEST_CHANNEL: u8 = 0x02;

/// Why franking bytes were refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrankingFormatError {
    /// Truncated, too long, trailing bytes, or a length beyond its limit.
    #[error("malformed franking encoding")]
    Malformed,
    /// Unknown version, type or destination kind byte.
    #[error("unsupported franking version or type")]
    UnsupportedVersion,
    /// An X25519 public key that is not canonical (PROTOCOL.md §1.3).
    #[error("non-canonical X25519 public key")]
    NonCanonicalKey,
    /// Content longer than [`MAX_CONTENT_LEN`].
    #[error("franked content of {len} bytes exceeds {MAX_CONTENT_LEN}")]
    ContentTooLarge {
        /// The content's length.
        len: usize,
    },
}

/// Whether `bytes` is a canonical X25519 public key: top bit clear and `u < 2^255 − 19`
/// (PROTOCOL.md §1.3).
#[must_use]
pub fn is_canonical_x25519(bytes: &[u8; 32]) -> bool {
    let top_bit_clear = bytes[31] & 0x80 == 0;
    let at_least_p =
        bytes[31] == 0x7f && bytes[1..31].iter().all(|b| *b == 0xff) && bytes[0] >= 0xed;
    top_bit_clear && !at_least_p
}

/// The relay's published franking public key `F` (X25519), versioned so that another key type
/// can follow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrankingKey(pub [u8; LEN_32]);

impl FrankingKey {
    /// `01 || F` ([`FRANKING_KEY_LEN`] bytes).
    #[must_use]
    pub fn encode(&self) -> [u8; FRANKING_KEY_LEN] {
        let mut out = [0u8; FRANKING_KEY_LEN];
        out[0] = VERSION;
        out[1..].copy_from_slice(&self.0);
        out
    }

    /// Reads an encoded key, refusing a wrong length, version or a non-canonical point.
    ///
    /// # Errors
    /// [`FrankingFormatError::Malformed`], [`FrankingFormatError::UnsupportedVersion`],
    /// [`FrankingFormatError::NonCanonicalKey`].
    pub fn decode(bytes: &[u8]) -> Result<Self, FrankingFormatError> {
        let mut r = Reader::new(bytes);
        let m = FrankingFormatError::Malformed;
        if r.u8().ok_or(m)? != VERSION {
            return Err(FrankingFormatError::UnsupportedVersion);
        }
        let key: [u8; LEN_32] = r.array().ok_or(m)?;
        r.finish().ok_or(m)?;
        if !is_canonical_x25519(&key) {
            return Err(FrankingFormatError::NonCanonicalKey);
        }
        Ok(Self(key))
    }
}

/// Where the relay delivered a franked message: what the sender tag and the delivery stamp
/// bind, so a message sent to one recipient cannot be reported by another.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Destination {
    /// One device's mailbox (1:1 messages and self-sync, PROTOCOL.md §11.12).
    Device {
        /// The recipient's account id.
        account: [u8; 16],
        /// The recipient's device number.
        device: u32,
    },
    /// One channel entry, read by every group member (PROTOCOL.md §11.15, §13.3).
    Channel {
        /// The channel's id.
        channel_id: [u8; 16],
    },
}

impl Destination {
    /// The 21 bytes `kind || id [16] || device u32` (a channel's device field is zero).
    #[must_use]
    pub fn encode(&self) -> [u8; DESTINATION_LEN] {
        let (kind, id, device) = match *self {
            Self::Device { account, device } => (DEST_DEVICE, account, device),
            Self::Channel { channel_id } => (DEST_CHANNEL, channel_id, 0),
        };
        let mut out = [0u8; DESTINATION_LEN];
        out[0] = kind;
        out[1..17].copy_from_slice(&id);
        out[17..].copy_from_slice(&device.to_be_bytes());
        out
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, FrankingFormatError> {
        let m = FrankingFormatError::Malformed;
        let kind = r.u8().ok_or(m)?;
        let id: [u8; 16] = r.array().ok_or(m)?;
        let device = r.u32().ok_or(m)?;
        match (kind, device) {
            (DEST_DEVICE, device) => Ok(Self::Device {
                account: id,
                device,
            }),
            (DEST_CHANNEL, 0) => Ok(Self::Channel { channel_id: id }),
            (DEST_CHANNEL, _) => Err(m),
            _ => Err(FrankingFormatError::UnsupportedVersion),
        }
    }
}

/// The sender's franking material for one content, carried inside the end-to-end encryption
/// in front of the content: `01 || 70 || fk || dv || content`.
#[derive(Clone, PartialEq, Eq)]
pub struct Opening<'a> {
    /// The per-envelope franking key `fk` (secret until reported).
    pub franking_key: [u8; LEN_32],
    /// The designated-verifier sender tag `dv`.
    pub tag: [u8; LEN_32],
    /// The content the commitment opens to.
    pub content: &'a [u8],
}

impl core::fmt::Debug for Opening<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // `fk` opens the commitment: as secret as the content.
        f.debug_struct("Opening")
            .field("content_len", &self.content.len())
            .finish_non_exhaustive()
    }
}

impl<'a> Opening<'a> {
    /// The encoding ([`OPENING_HEADER_LEN`] + content bytes).
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(OPENING_HEADER_LEN + self.content.len());
        out.extend_from_slice(&[VERSION, OPENING_TYPE]);
        out.extend_from_slice(&self.franking_key);
        out.extend_from_slice(&self.tag);
        out.extend_from_slice(self.content);
        out
    }

    /// Reads an opening; the content is the rest, at most [`MAX_CONTENT_LEN`] bytes.
    ///
    /// # Errors
    /// [`FrankingFormatError`] for a short input, a wrong version or type, or too long content.
    pub fn decode(bytes: &'a [u8]) -> Result<Self, FrankingFormatError> {
        let mut r = Reader::new(bytes);
        let m = FrankingFormatError::Malformed;
        if (r.u8(), r.u8()) != (Some(VERSION), Some(OPENING_TYPE)) {
            return Err(if bytes.len() < 2 {
                m
            } else {
                FrankingFormatError::UnsupportedVersion
            });
        }
        let franking_key = r.array().ok_or(m)?;
        let tag = r.array().ok_or(m)?;
        let content = r.rest();
        if content.len() > MAX_CONTENT_LEN {
            return Err(FrankingFormatError::ContentTooLarge { len: content.len() });
        }
        Ok(Self {
            franking_key,
            tag,
            content,
        })
    }
}

/// A report: everything the relay needs to verify one delivered message, and nothing about
/// any other. The recipient keeps it as the message's report material and sends it on report.
#[derive(Clone, PartialEq, Eq)]
pub struct Report {
    /// The relay franking key `F` the sender tag was made for.
    pub franking_key: FrankingKey,
    /// The claimed sender's account id.
    pub sender_account: [u8; 16],
    /// The claimed sender's device number.
    pub sender_device: u32,
    /// Where the relay delivered the message.
    pub destination: Destination,
    /// The relay's sequence number of the envelope or channel entry.
    pub seq: u64,
    /// The relay's delivery time (`received_at` or `created_at`, Unix seconds).
    pub time: u64,
    /// The commitment `c` the relay stored and delivered.
    pub commitment: [u8; LEN_32],
    /// The relay's delivery stamp `s`.
    pub stamp: [u8; LEN_32],
    /// The franking key `fk` that opens `c`.
    pub opening_key: [u8; LEN_32],
    /// The sender tag `dv`.
    pub tag: [u8; LEN_32],
    /// The reported content.
    pub content: Vec<u8>,
}

impl core::fmt::Debug for Report {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Report")
            .field("sender_device", &self.sender_device)
            .field("seq", &self.seq)
            .field("time", &self.time)
            .field("content_len", &self.content.len())
            .finish_non_exhaustive()
    }
}

impl Report {
    /// The report body ([`REPORT_MIN_LEN`] + content bytes).
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(REPORT_MIN_LEN + self.content.len());
        out.extend_from_slice(&[VERSION, REPORT_TYPE]);
        out.extend_from_slice(&self.franking_key.0);
        out.extend_from_slice(&self.sender_account);
        out.extend_from_slice(&self.sender_device.to_be_bytes());
        out.extend_from_slice(&self.destination.encode());
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.time.to_be_bytes());
        out.extend_from_slice(&self.commitment);
        out.extend_from_slice(&self.stamp);
        out.extend_from_slice(&self.opening_key);
        out.extend_from_slice(&self.tag);
        encoding::put_bytes_u32(&mut out, &self.content);
        out
    }

    /// Reads a report body. Checks only the layout; `verify::verify_report` (feature
    /// `franking`) checks the MACs.
    ///
    /// # Errors
    /// [`FrankingFormatError`] for a wrong length, version, type or destination kind, a
    /// non-canonical `F`, content beyond [`MAX_CONTENT_LEN`] or trailing bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, FrankingFormatError> {
        let m = FrankingFormatError::Malformed;
        if bytes.len() < REPORT_MIN_LEN {
            return Err(m);
        }
        let mut r = Reader::new(bytes);
        if (r.u8(), r.u8()) != (Some(VERSION), Some(REPORT_TYPE)) {
            return Err(FrankingFormatError::UnsupportedVersion);
        }
        let f: [u8; LEN_32] = r.array().ok_or(m)?;
        if !is_canonical_x25519(&f) {
            return Err(FrankingFormatError::NonCanonicalKey);
        }
        let sender_account = r.array().ok_or(m)?;
        let sender_device = r.u32().ok_or(m)?;
        let destination = Destination::read(&mut r)?;
        let seq = r.u64().ok_or(m)?;
        let time = r.u64().ok_or(m)?;
        let commitment = r.array().ok_or(m)?;
        let stamp = r.array().ok_or(m)?;
        let opening_key = r.array().ok_or(m)?;
        let tag = r.array().ok_or(m)?;
        let declared = usize::try_from(r.u32().ok_or(m)?).map_err(|_| m)?;
        if declared > MAX_CONTENT_LEN {
            return Err(FrankingFormatError::ContentTooLarge { len: declared });
        }
        let content = r.take(declared).ok_or(m)?.to_vec();
        r.finish().ok_or(m)?;
        Ok(Self {
            franking_key: FrankingKey(f),
            sender_account,
            sender_device,
            destination,
            seq,
            time,
            commitment,
            stamp,
            opening_key,
            tag,
            content,
        })
    }
}

/// The commitment's HMAC input: `COMMITMENT_LABEL || u32 len || content` (the key is `fk`).
///
/// # Errors
/// [`FrankingFormatError::ContentTooLarge`] beyond [`MAX_CONTENT_LEN`].
pub fn commitment_input(content: &[u8]) -> Result<Vec<u8>, FrankingFormatError> {
    if content.len() > MAX_CONTENT_LEN {
        return Err(FrankingFormatError::ContentTooLarge { len: content.len() });
    }
    let mut out = Vec::with_capacity(COMMITMENT_LABEL.len() + 4 + content.len());
    out.extend_from_slice(COMMITMENT_LABEL);
    encoding::put_bytes_u32(&mut out, content);
    Ok(out)
}

/// The tag key's HKDF salt: `IK_A (64) || F (32)` (the sender's identity key and the relay's
/// franking key, so the key is bound to both even if a DH output repeated).
#[must_use]
pub fn tag_key_salt(
    sender_identity: &[u8; IDENTITY_KEY_LEN],
    franking_key: &FrankingKey,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(IDENTITY_KEY_LEN + LEN_32);
    out.extend_from_slice(sender_identity);
    out.extend_from_slice(&franking_key.0);
    out
}

/// The sender tag's HMAC input: `TAG_LABEL || c || destination` (the key is the tag key).
#[must_use]
pub fn tag_input(commitment: &[u8; LEN_32], destination: &Destination) -> Vec<u8> {
    let mut out = Vec::with_capacity(TAG_LABEL.len() + LEN_32 + DESTINATION_LEN);
    out.extend_from_slice(TAG_LABEL);
    out.extend_from_slice(commitment);
    out.extend_from_slice(&destination.encode());
    out
}

/// The delivery stamp's HMAC input: `STAMP_LABEL || c || destination || seq u64 || time u64`
/// (the key is the relay's stamp key).
#[must_use]
pub fn stamp_input(
    commitment: &[u8; LEN_32],
    destination: &Destination,
    seq: u64,
    time: u64,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(STAMP_LABEL.len() + LEN_32 + DESTINATION_LEN + 16);
    out.extend_from_slice(STAMP_LABEL);
    out.extend_from_slice(commitment);
    out.extend_from_slice(&destination.encode());
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(&time.to_be_bytes());
    out
}

/// A report's id, the relay's replay key: `SHA-256(REPORT_ID_LABEL || s)[0..16]`. One stamp
/// names one delivered envelope or entry, so a second report of it has the same id.
#[must_use]
pub fn report_id(stamp: &[u8; LEN_32]) -> [u8; REPORT_ID_LEN] {
    use sha2::{Digest, Sha256};
    let digest = Sha256::new()
        .chain_update(REPORT_ID_LABEL)
        .chain_update(stamp)
        .finalize();
    let mut id = [0u8; REPORT_ID_LEN];
    id.copy_from_slice(&digest[..REPORT_ID_LEN]);
    id
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn report() -> Report {
        Report {
            franking_key: FrankingKey([9; 32]),
            sender_account: [1; 16],
            sender_device: 2,
            destination: Destination::Device {
                account: [3; 16],
                device: 4,
            },
            seq: 5,
            time: 6,
            commitment: [7; 32],
            stamp: [8; 32],
            opening_key: [10; 32],
            tag: [11; 32],
            content: b"hello".to_vec(),
        }
    }

    #[test]
    fn report_round_trip_and_refusals() {
        let r = report();
        let bytes = r.encode();
        assert_eq!(bytes.len(), REPORT_MIN_LEN + 5);
        assert_eq!(REPORT_MIN_LEN, 223);
        assert_eq!(Report::decode(&bytes).unwrap(), r);
        // Every truncation and any trailing byte is refused, never a panic.
        for n in 0..bytes.len() {
            assert!(Report::decode(&bytes[..n]).is_err(), "prefix {n}");
        }
        let mut long = bytes.clone();
        long.push(0);
        assert_eq!(Report::decode(&long), Err(FrankingFormatError::Malformed));
        let mut v = bytes.clone();
        v[0] = 2;
        assert_eq!(
            Report::decode(&v),
            Err(FrankingFormatError::UnsupportedVersion)
        );
        let mut k = bytes.clone();
        k[2 + 31] = 0x80;
        assert_eq!(
            Report::decode(&k),
            Err(FrankingFormatError::NonCanonicalKey)
        );
        let mut d = bytes.clone();
        d[2 + 32 + 20] = 3;
        assert_eq!(
            Report::decode(&d),
            Err(FrankingFormatError::UnsupportedVersion)
        );
        let mut big = bytes[..REPORT_MIN_LEN - 4].to_vec();
        big.extend_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(
            Report::decode(&big),
            Err(FrankingFormatError::ContentTooLarge { .. })
        ));
    }

    #[test]
    fn channel_destination_has_a_zero_device() {
        let c = Destination::Channel {
            channel_id: [5; 16],
        };
        let mut r = report();
        r.destination = c;
        let mut bytes = r.encode();
        assert_eq!(Report::decode(&bytes).unwrap().destination, c);
        bytes[2 + 32 + 20 + 1 + 16 + 3] = 1;
        assert_eq!(Report::decode(&bytes), Err(FrankingFormatError::Malformed));
    }

    #[test]
    fn opening_and_key_round_trip() {
        let o = Opening {
            franking_key: [1; 32],
            tag: [2; 32],
            content: b"abc",
        };
        let bytes = o.encode();
        assert_eq!(Opening::decode(&bytes).unwrap(), o);
        assert!(Opening::decode(&bytes[..OPENING_HEADER_LEN - 1]).is_err());
        assert_eq!(Opening::decode(&[]), Err(FrankingFormatError::Malformed));
        assert_eq!(
            Opening::decode(&[1, 0x71, 0]),
            Err(FrankingFormatError::UnsupportedVersion)
        );
        assert!(!format!("{o:?}").contains("1, 1"));
        let k = FrankingKey([4; 32]);
        assert_eq!(FrankingKey::decode(&k.encode()).unwrap(), k);
        assert!(FrankingKey::decode(&k.encode()[..32]).is_err());
        let mut p = [0xff; 32];
        p[31] = 0x7f;
        assert_eq!(
            FrankingKey::decode(&FrankingKey(p).encode()),
            Err(FrankingFormatError::NonCanonicalKey)
        );
    }

    #[test]
    fn inputs_are_length_prefixed_and_labelled() {
        let i = commitment_input(b"m").unwrap();
        assert_eq!(&i[..COMMITMENT_LABEL.len()], COMMITMENT_LABEL);
        assert_eq!(&i[COMMITMENT_LABEL.len()..], &[0, 0, 0, 1, b'm']);
        assert!(commitment_input(&vec![0; MAX_CONTENT_LEN + 1]).is_err());
        let d = Destination::Device {
            account: [3; 16],
            device: 4,
        };
        assert_eq!(
            stamp_input(&[0; 32], &d, 1, 2).len(),
            STAMP_LABEL.len() + 32 + 21 + 16
        );
        assert_ne!(report_id(&[0; 32]), report_id(&[1; 32]));
    }
}
