//! Message franking on the device (PROTOCOL §16.3, §16.5, §16.9): the relay's franking key,
//! cached; what a delivered envelope's franking is; the report material a franked message
//! leaves.
//!
//! ```text
//! send       franking_key_due? ─► GET /v1/franking/key ─► accept_franking_key (404: None)
//!            encrypt(…, franking_key): per envelope a fresh fk, the opening inside the
//!            sealed content, c in EnvelopeBody.franking_commitment (ephemeral: none)
//! receive    DeliveredFranking (QueuedBody.franking / EnvelopeFrame.franking, seq, time)
//!            open_envelope: open_franked against c, else refused (FrankingMismatch);
//!            no c and a bare content: accepted, unreportable (transition, §16.9)
//!            apply(…, Some(ReportMaterial)) keeps it with the message
//! report     ReportMaterial::report_body ─► POST /v1/reports
//! ```
//!
//! Settings (`META`): `"franking_key"` the relay's current key as published (33 bytes, §16.2),
//! `"franking_checked"` when it was last asked for (u64be, Unix seconds). The key is not pinned:
//! the relay is the only verifier of reports, so a key of its choosing harms no one but its own
//! moderation; it must only be a canonical, contributory X25519 key (checked by
//! [`haven_sdk::franking::frank`] on every use).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use haven_protocol::api::channels::EntryBody;
use haven_protocol::api::messages::{FrankingBody, QueuedBody};
use haven_protocol::api::moderation::FrankingKeyResponse;
use haven_protocol::frames::{EnvelopeFrame, Franking};
use haven_protocol::franking::{Destination, FrankingKey, OPENING_TYPE, Report, VERSION};
use haven_sdk::franking::{ReceivedFranking, open_franked};
use haven_sdk::store::DeviceAddress;
use zeroize::Zeroizing;

use super::space::META;
use super::state::LocalDevice;
use super::{DeviceError, bad_response, protocol};
use crate::store::{Backend, EncryptedStore};

/// A cached franking key is asked for again after this long (seconds), so a rotated key
/// reaches senders within a day.
pub const FRANKING_KEY_REFRESH: u64 = 24 * 60 * 60;

/// A relay that offered no franking key (404) is asked again after this long (seconds).
pub const FRANKING_KEY_RECHECK: u64 = 60 * 60;

/// How long a received franked message stays reportable (seconds): the relay's default
/// report window (`moderation.report_window_days` = 30). Report material older than this is
/// deleted; the relay would refuse it (`report_expired`).
pub const REPORT_WINDOW: u64 = 30 * 24 * 60 * 60;

const KEY_NAME: &[u8] = b"franking_key";
const CHECKED_NAME: &[u8] = b"franking_checked";

/// How a delivered envelope was franked: the relay's commitment and stamp with the envelope's
/// `seq` and `time` (`received_at`), everything a report needs from the relay.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeliveredFranking {
    /// The sender's commitment `c` as the relay delivered it.
    pub commitment: [u8; 32],
    /// The relay's delivery stamp `s`.
    pub stamp: [u8; 32],
    /// The envelope's `seq`.
    pub seq: u64,
    /// The envelope's `received_at` (Unix seconds, already rounded by the relay).
    pub time: u64,
}

impl DeliveredFranking {
    /// The franking of a fetched envelope (`GET /v1/messages`); `None` when it carries none.
    ///
    /// # Errors
    /// [`DeviceError::InvalidResponse`] for a commitment or stamp that is not base64 of 32
    /// bytes, or a negative `seq` or time.
    pub fn from_queued(queued: &QueuedBody) -> Result<Option<Self>, DeviceError> {
        queued
            .franking
            .as_ref()
            .map(|f| Self::from_body(f, queued.seq, queued.received_at))
            .transpose()
    }

    /// The franking of a channel entry read over REST (`GET /v1/channels/{id}/entries`,
    /// §11.15); `None` when it carries none.
    ///
    /// # Errors
    /// As [`DeliveredFranking::from_queued`].
    pub fn from_entry(entry: &EntryBody) -> Result<Option<Self>, DeviceError> {
        entry
            .franking
            .as_ref()
            .map(|f| Self::from_body(f, entry.seq, entry.created_at))
            .transpose()
    }

    /// The franking a REST answer carries (base64 commitment and stamp) with the envelope's or
    /// entry's `seq` and time.
    fn from_body(f: &FrankingBody, seq: i64, time: i64) -> Result<Self, DeviceError> {
        let bytes32 = |s: &str| -> Result<[u8; 32], DeviceError> {
            STANDARD
                .decode(s)
                .ok()
                .and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok())
                .ok_or_else(|| bad_response("franking is not base64 of 32 bytes"))
        };
        Ok(Self {
            commitment: bytes32(&f.commitment)?,
            stamp: bytes32(&f.stamp)?,
            seq: u64::try_from(seq).map_err(|_| bad_response("negative seq"))?,
            time: u64::try_from(time).map_err(|_| bad_response("negative time"))?,
        })
    }

    /// The franking of a WebSocket channel entry frame (§11.14 `0x07`): its commitment and
    /// stamp with the entry's `seq` and `created_at`.
    #[must_use]
    pub fn from_channel_frame(
        franking: Option<Franking>,
        seq: u64,
        created_at: u64,
    ) -> Option<Self> {
        franking.map(|Franking { commitment, stamp }| Self {
            commitment,
            stamp,
            seq,
            time: created_at,
        })
    }

    /// The 72-byte form kept with a group entry that waits for its sender's key
    /// (PROTOCOL §13.6): `commitment [32] · stamp [32] · time u64` (the `seq` is the record's
    /// key).
    #[must_use]
    pub fn to_pending(&self) -> [u8; 72] {
        let mut out = [0u8; 72];
        out[..32].copy_from_slice(&self.commitment);
        out[32..64].copy_from_slice(&self.stamp);
        out[64..].copy_from_slice(&self.time.to_be_bytes());
        out
    }

    /// Reads [`DeliveredFranking::to_pending`]'s form back, for the entry at `seq`; `None`
    /// when it is not 72 bytes.
    #[must_use]
    pub fn from_pending(bytes: &[u8], seq: u64) -> Option<Self> {
        let bytes: &[u8; 72] = bytes.try_into().ok()?;
        let mut commitment = [0u8; 32];
        let mut stamp = [0u8; 32];
        let mut time = [0u8; 8];
        commitment.copy_from_slice(&bytes[..32]);
        stamp.copy_from_slice(&bytes[32..64]);
        time.copy_from_slice(&bytes[64..]);
        Some(Self {
            commitment,
            stamp,
            seq,
            time: u64::from_be_bytes(time),
        })
    }

    /// The franking of a WebSocket envelope frame; `None` when it carries none.
    #[must_use]
    pub fn from_frame(frame: &EnvelopeFrame<'_>) -> Option<Self> {
        frame.franking.map(|Franking { commitment, stamp }| Self {
            commitment,
            stamp,
            seq: frame.seq,
            time: frame.received_at,
        })
    }
}

/// Why a message cannot be reported (before or by the relay, §16.9). Never carries content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReportError {
    /// No such message in the conversation.
    #[error("no such message")]
    UnknownMessage,
    /// The message has no report material: it is this account's own, it arrived without
    /// franking (before franking, or in a group), or its material was deleted.
    #[error("this message cannot be reported")]
    NotReportable,
    /// The report window has passed (here, or the relay's 410 `report_expired`).
    #[error("the report window of this message has passed")]
    Expired,
    /// The relay offers no franking key (or no reports): it cannot verify a report.
    #[error("the relay does not take reports")]
    Unsupported,
    /// The relay refused the body (400 `invalid_report`).
    #[error("the relay refused the report as malformed")]
    Invalid,
    /// The relay says this device is not the message's recipient (403 `not_recipient`).
    #[error("the relay says this device did not receive the message")]
    NotRecipient,
    /// The relay could not verify the stamp, the commitment or its key (422
    /// `report_unverified`).
    #[error("the relay could not verify the report")]
    Unverified,
}

impl ReportError {
    /// The refusal a `POST /v1/reports` error code names, if it is one of §16.9's.
    #[must_use]
    pub fn from_code(code: &str) -> Option<Self> {
        Some(match code {
            "invalid_report" => Self::Invalid,
            "not_recipient" => Self::NotRecipient,
            "report_expired" => Self::Expired,
            "report_unverified" => Self::Unverified,
            _ => return None,
        })
    }
}

/// What a recipient keeps of a franked message it accepted (§16.5 step 3): the §16.2 report
/// body itself, with the franking key this device knew when the message arrived (32 zero bytes
/// when it knew none; the current key is put in at report time). Holds `fk` and the content:
/// wiped on drop, no content in `Debug`.
pub struct ReportMaterial(Zeroizing<Vec<u8>>);

impl std::fmt::Debug for ReportMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReportMaterial")
            .field("len", &self.0.len())
            .finish_non_exhaustive()
    }
}

impl ReportMaterial {
    fn new(
        opened: &ReceivedFranking<'_>,
        delivered: &DeliveredFranking,
        key: Option<FrankingKey>,
        sender: &DeviceAddress,
        destination: Destination,
    ) -> Self {
        let report = Report {
            franking_key: key.unwrap_or(FrankingKey([0; 32])),
            sender_account: sender.account_id,
            sender_device: sender.device_id,
            destination,
            seq: delivered.seq,
            time: delivered.time,
            commitment: delivered.commitment,
            stamp: delivered.stamp,
            opening_key: *opened.opening_key,
            tag: opened.tag,
            content: opened.content.to_vec(),
        };
        Self(encode_wiping(report))
    }

    /// The stored bytes (the record of the messenger's report space, PROTOCOL §13.6).
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Reads stored material.
    ///
    /// # Errors
    /// [`DeviceError::Protocol`] when the bytes are not a report body.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DeviceError> {
        let report = Report::decode(bytes).map_err(protocol)?;
        wipe(report);
        Ok(Self(Zeroizing::new(bytes.to_vec())))
    }

    /// The relay's delivery time of the message (Unix seconds).
    #[must_use]
    pub fn time(&self) -> u64 {
        // version, type, F, sender account, sender device, destination, seq: 2+32+16+4+21+8.
        self.0
            .get(83..91)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map_or(0, u64::from_be_bytes)
    }

    /// Where the relay delivered the message: this device's mailbox, or a group channel (the
    /// report then needs the channel's read token, §16.6). `None` for corrupt material.
    #[must_use]
    pub fn destination(&self) -> Option<Destination> {
        let report = Report::decode(&self.0).ok()?;
        let destination = report.destination;
        wipe(report);
        Some(destination)
    }

    /// Whether the report window has passed at `now` (Unix seconds).
    #[must_use]
    pub fn expired(&self, now: u64) -> bool {
        now.saturating_sub(self.time()) >= REPORT_WINDOW
    }

    /// Whether the material names the franking key the sender used (it was known on receipt).
    #[must_use]
    pub fn has_franking_key(&self) -> bool {
        self.0.get(2..34).is_some_and(|f| f.iter().any(|&b| b != 0))
    }

    /// The §16.2 report body for `POST /v1/reports`: the stored one, or with `current` (the
    /// relay's key now) when none was known on receipt.
    ///
    /// # Errors
    /// [`ReportError::Expired`] after the window, [`ReportError::Unsupported`] without any
    /// franking key, [`ReportError::NotReportable`] for corrupt material.
    pub fn report_body(
        &self,
        current: Option<&FrankingKey>,
        now: u64,
    ) -> Result<Zeroizing<Vec<u8>>, ReportError> {
        if self.expired(now) {
            return Err(ReportError::Expired);
        }
        if self.has_franking_key() {
            return Ok(self.0.clone());
        }
        let key = current.ok_or(ReportError::Unsupported)?;
        let mut report = Report::decode(&self.0).map_err(|_| ReportError::NotReportable)?;
        report.franking_key = *key;
        Ok(encode_wiping(report))
    }
}

/// Encodes a report and wipes the copy of `fk` and the content it held.
fn encode_wiping(report: Report) -> Zeroizing<Vec<u8>> {
    let out = Zeroizing::new(report.encode());
    wipe(report);
    out
}

fn wipe(mut report: Report) {
    use zeroize::Zeroize as _;
    report.opening_key.zeroize();
    report.content.zeroize();
}

/// What [`open_delivered`] found in an unpadded plaintext.
pub(crate) enum Unwrapped<'a> {
    /// A franked content that opens the delivered commitment, and its report material.
    Franked(&'a [u8], ReportMaterial),
    /// A bare content delivered without a commitment (§16.9 transition): accepted, not
    /// reportable.
    Bare(&'a [u8]),
}

/// The franking check of §16.5 on an unpadded plaintext that `sender` sent to `destination`
/// (this device's mailbox, or a group channel): with a delivered commitment the plaintext must
/// be an opening of it; without one it must be a bare content (an opening without its
/// commitment could not be reported). `None`: refuse the message.
pub(crate) fn open_delivered<'a>(
    plaintext: &'a [u8],
    delivered: Option<&DeliveredFranking>,
    key: Option<FrankingKey>,
    sender: &DeviceAddress,
    destination: Destination,
) -> Option<Unwrapped<'a>> {
    match delivered {
        Some(d) => {
            let opened = open_franked(plaintext, &d.commitment).ok()?;
            let material = ReportMaterial::new(&opened, d, key, sender, destination);
            Some(Unwrapped::Franked(opened.content, material))
        }
        // §16.9: an opening is told from a bare content by its second byte.
        None if plaintext.get(..2) == Some(&[VERSION, OPENING_TYPE][..]) => None,
        None => Some(Unwrapped::Bare(plaintext)),
    }
}

/// The relay's franking key as last fetched and kept in the store (`None` while it has offered
/// none): what a device frankes with and names in report material.
pub(crate) fn stored_key<B: Backend>(
    store: &EncryptedStore<B>,
) -> Result<Option<FrankingKey>, DeviceError> {
    store
        .get(META, KEY_NAME)?
        .map(|b| FrankingKey::decode(&b).map_err(|_| protocol("stored franking key malformed")))
        .transpose()
}

impl LocalDevice {
    /// The relay's franking key as last fetched, whatever its age (sends are franked with it;
    /// `None` while the relay has offered none).
    ///
    /// # Errors
    /// Store errors, a corrupt stored key.
    pub fn franking_key<B: Backend>(
        &self,
        store: &EncryptedStore<B>,
    ) -> Result<Option<FrankingKey>, DeviceError> {
        stored_key(store)
    }

    /// Whether to ask the relay for its franking key (`GET /v1/franking/key`, then
    /// [`LocalDevice::accept_franking_key`]) before a send: never asked, the cached key older
    /// than [`FRANKING_KEY_REFRESH`], or no key offered at the last ask more than
    /// [`FRANKING_KEY_RECHECK`] ago.
    ///
    /// # Errors
    /// Store errors.
    pub fn franking_key_due<B: Backend>(
        &self,
        store: &EncryptedStore<B>,
        now: u64,
    ) -> Result<bool, DeviceError> {
        let checked = store
            .get(META, CHECKED_NAME)?
            .and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
            .map(u64::from_be_bytes);
        let Some(checked) = checked else {
            return Ok(true);
        };
        let after = if stored_key(store)?.is_some() {
            FRANKING_KEY_REFRESH
        } else {
            FRANKING_KEY_RECHECK
        };
        Ok(now.saturating_sub(checked) >= after)
    }

    /// Takes the answer of `GET /v1/franking/key` (`None` for a 404: the relay offers no key)
    /// and returns the key to frank with. A key once offered is kept when a later ask finds
    /// none, so a device never falls back to unfranked sends.
    ///
    /// # Errors
    /// [`DeviceError::InvalidResponse`] for a key that is not base64 of a canonical §16.2 key
    /// (nothing stored); store errors.
    pub fn accept_franking_key<B: Backend>(
        &self,
        store: &EncryptedStore<B>,
        answer: Option<&FrankingKeyResponse>,
        now: u64,
    ) -> Result<Option<FrankingKey>, DeviceError> {
        let key = answer
            .map(|a| {
                STANDARD
                    .decode(&a.franking_key)
                    .ok()
                    .and_then(|b| FrankingKey::decode(&b).ok())
                    .ok_or_else(|| bad_response("franking key malformed"))
            })
            .transpose()?;
        store.atomically(|s| -> Result<(), DeviceError> {
            if let Some(key) = &key {
                s.put(META, KEY_NAME, &key.encode())?;
            }
            s.put(META, CHECKED_NAME, &now.to_be_bytes())?;
            Ok(())
        })?;
        match key {
            Some(key) => Ok(Some(key)),
            None => stored_key(store),
        }
    }
}
