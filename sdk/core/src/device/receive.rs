//! Opening envelopes exactly once (PROTOCOL §5.3, §4.4, §7, §13.4).
//!
//! ```text
//! seen(message id)?                              → Duplicate (ack again, no effect)
//! open_sealed(identity, pinned relay key, now)   certificate signed by the relay, not expired,
//!                                                matching the sealing identity
//! content type = CONTENT_SESSION, trusted identity = certificate identity,
//! not claiming to come from this device
//! ── one store transaction ─────────────────────────────────────────────────────────────
//! decrypt (Double Ratchet / PQXDH) · unpad · franking (§16.5: the opening of the delivered
//! commitment, or a bare content when none was delivered) · apply(store, sender, content,
//! report material)
//! · sender device added to its account's device list · message id marked seen
//! ─────────────────────────────────────────────────────────────────────────────────────
//! ```
//!
//! Any refusal is an [`Opened::Rejected`] and rolls the transaction back, so a tampered,
//! replayed or misaddressed envelope leaves every session as it was; an error of `apply` rolls
//! back too and is returned. The driver acks the envelope with the relay only after this
//! returns (duplicates and rejections included).
//!
//! Seen ids (`SEEN`): natural key the relay message id as given (32 hex), value the u64be
//! value of the `seen_n` counter when it was seen. Once per [`SEEN_PRUNE_EVERY`] ids, those more
//! than [`MAX_SEEN`] ids old are forgotten (a replay that old is refused by the ratchet as a
//! duplicate instead).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use haven_protocol::api::messages::QueuedBody;
use haven_protocol::franking::Destination;
use haven_sdk::sealed_sender::{SealedSenderError, open_sealed};
use haven_sdk::session_cipher::{self, SessionError};
use haven_sdk::store::{DeviceAddress, IdentityStore};
use haven_sdk::unpad;
use rand_core::CryptoRng;

use super::directory::{AccountTrust, Vouch};
use super::franking::{DeliveredFranking, ReportMaterial, Unwrapped, open_delivered};
use super::space::{INBOX, META, SEEN};
use super::state::{LocalDevice, contact_devices, save_contact_devices};
use super::{CONTENT_SESSION, DeviceError};
use crate::store::{Backend, ClientStoreError, EncryptedStore};

/// This device's mailbox as a franking destination (§16.2).
fn mailbox(me: &DeviceAddress) -> Destination {
    Destination::Device {
        account: me.account_id,
        device: me.device_id,
    }
}

/// Message ids remembered for deduplication (oldest forgotten first), up to
/// [`SEEN_PRUNE_EVERY`] more between prunings.
pub const MAX_SEEN: u64 = 10_000;
/// The seen ids are pruned once per this many messages: finding the oldest means decrypting
/// every row of the space, too much to do for each message.
pub const SEEN_PRUNE_EVERY: u64 = 500;

/// Why an envelope was refused. Nothing about the session changed when one is reported.
/// Exhaustive on purpose: drivers map each reason to their own events.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RejectReason {
    /// Not decodable at all (bad base64, bad padding, unknown content type).
    #[error("malformed envelope: {0}")]
    Malformed(String),
    /// The sender certificate is expired, signed by a key other than this relay's, does not
    /// match the sealing identity, or claims to be this device.
    #[error("invalid sender certificate: {0}")]
    Certificate(String),
    /// The sealed layer failed to decrypt (tampered, or not for this device).
    #[error("sealed envelope does not decrypt (tampered or misaddressed)")]
    Tampered,
    /// The ratchet refused the message as already decrypted (a replay).
    #[error("replayed message")]
    Replayed,
    /// No session with the sender and the message does not start one.
    #[error("no session with the sender")]
    UnknownSession,
    /// The sender device's identity key differs from the one this device trusts.
    #[error("identity key of {account} device {device} changed")]
    IdentityChanged {
        /// The sender account (hex).
        account: String,
        /// The sender device number.
        device: u32,
    },
    /// The sending device (or its identity key) is not in its account's signed device list,
    /// fetched again to be sure: a device or a certificate the relay made.
    #[error("device {device} of {account} is not in the account's signed device list")]
    UnlistedDevice {
        /// The sender account (hex).
        account: String,
        /// The sender device number.
        device: u32,
    },
    /// The sender account's identity key changed and the user has not accepted the new one.
    #[error("account identity key of {account} changed")]
    AccountKeyChanged {
        /// The sender account (hex).
        account: String,
    },
    /// The ratchet or handshake refused it for another reason (authentication failure,
    /// unknown prekey, too far ahead).
    #[error("session: {0}")]
    Session(String),
    /// The franking check failed (§16.5): the content does not open the commitment the relay
    /// delivered, the plaintext is no opening although a commitment was delivered, or it is an
    /// opening delivered without its commitment. A message that could not be reported is
    /// not accepted.
    #[error("the content does not match its franking commitment")]
    FrankingMismatch,
}

impl RejectReason {
    fn from_sealed(e: &SealedSenderError) -> Self {
        use SealedSenderError as E;
        match e {
            E::DecryptionFailed => Self::Tampered,
            E::BadCertificateSignature | E::CertificateExpired { .. } | E::IdentityMismatch => {
                Self::Certificate(e.to_string())
            }
            other => Self::Malformed(other.to_string()),
        }
    }

    fn from_session(e: &SessionError) -> Self {
        use haven_sdk::ratchet::RatchetError;
        match e {
            SessionError::Ratchet(RatchetError::DuplicateMessage { .. })
            | SessionError::ReplayedFirstMessage => Self::Replayed,
            SessionError::Ratchet(RatchetError::DecryptionFailed) => Self::Tampered,
            SessionError::NoSession => Self::UnknownSession,
            other => Self::Session(other.to_string()),
        }
    }
}

/// The outcome of [`LocalDevice::open_envelope`]. Exhaustive on purpose: a driver handles
/// each case (ack without effect, report, deliver).
#[derive(Debug)]
pub enum Opened<T> {
    /// Already processed (its message id was seen); nothing changed.
    Duplicate,
    /// Refused; nothing changed.
    Rejected(RejectReason),
    /// The sender's device list is not known, or does not name the sending device: fetch the
    /// list (`GET /v1/accounts/{account}/device-list`, [`LocalDevice::accept_device_list`]) and
    /// open the envelope again; if that says this again, the device is not the account's
    /// ([`Opened::unlisted`]). Nothing changed.
    NeedDeviceList {
        /// The sender account.
        account: [u8; 16],
        /// The sender device number.
        device: u32,
    },
    /// Decrypted and applied, and (when asked) its id marked seen, in one transaction.
    Accepted {
        /// The sending device, from its relay-signed certificate.
        sender: DeviceAddress,
        /// The content: the unpadded plaintext, without its franking opening.
        plaintext: Vec<u8>,
        /// What `apply` returned.
        value: T,
    },
}

impl<T> Opened<T> {
    /// After the sender's list was fetched: a [`Opened::NeedDeviceList`] again is a refusal
    /// ([`RejectReason::UnlistedDevice`]); any other outcome is kept.
    #[must_use]
    pub fn unlisted(self) -> Self {
        match self {
            Self::NeedDeviceList { account, device } => {
                Self::Rejected(RejectReason::UnlistedDevice {
                    account: hex::encode(account),
                    device,
                })
            }
            other => other,
        }
    }
}

/// What [`LocalDevice::receive`] found in one queued envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    /// A new message, durably stored (in the inbox space) before the relay is told to delete
    /// it.
    Message {
        /// The relay's message id (hex), unique per send.
        message_id: String,
        /// The sending device (from its relay-signed certificate).
        sender: DeviceAddress,
        /// The plaintext.
        plaintext: Vec<u8>,
    },
    /// The sender's device list is needed first: fetch it, accept it, and receive the
    /// envelope again with `list_fresh` (nothing changed; do not ack).
    NeedDeviceList {
        /// The sender account.
        account: [u8; 16],
    },
    /// An envelope that could not be opened; ack and drop it, nothing else changed.
    Rejected {
        /// The relay's message id (hex).
        message_id: String,
        /// Why.
        reason: RejectReason,
    },
}

/// Inside the transaction: a refusal (rolled back, reported) or the caller's error.
enum Refusal<E> {
    Reject(RejectReason),
    Fail(E),
}

impl<E: From<ClientStoreError>> From<ClientStoreError> for Refusal<E> {
    fn from(e: ClientStoreError) -> Self {
        Self::Fail(E::from(e))
    }
}

/// Marks `message_id` as processed, pruning the oldest ids once per [`SEEN_PRUNE_EVERY`].
fn record_seen<B: Backend>(store: &EncryptedStore<B>, message_id: &str) -> Result<(), DeviceError> {
    let n = store.get(META, b"seen_n")?.map_or(0u64, |b| {
        <[u8; 8]>::try_from(b.as_slice()).map_or(0, u64::from_be_bytes)
    });
    store.put(SEEN, message_id.as_bytes(), &n.to_be_bytes())?;
    store.put(META, b"seen_n", &n.wrapping_add(1).to_be_bytes())?;
    if n >= MAX_SEEN && n % SEEN_PRUNE_EVERY == 0 {
        let cutoff = n - MAX_SEEN;
        for (id, v) in store.entries(SEEN)? {
            let keep =
                <[u8; 8]>::try_from(v.as_slice()).is_ok_and(|b| u64::from_be_bytes(b) > cutoff);
            if !keep {
                store.delete(SEEN, &id)?;
            }
        }
    }
    Ok(())
}

impl LocalDevice {
    /// Whether `message_id` was processed already.
    ///
    /// # Errors
    /// Store errors.
    pub fn is_seen<B: Backend>(
        &self,
        store: &EncryptedStore<B>,
        message_id: &str,
    ) -> Result<bool, DeviceError> {
        Ok(store.get(SEEN, message_id.as_bytes())?.is_some())
    }

    /// Opens one sealed envelope (the raw bytes of a queued or WebSocket envelope, `now` in
    /// Unix seconds for the certificate's expiry) and runs `apply` on its plaintext inside the
    /// store transaction that saves the session, adds the sender device to its account's
    /// device list and (when `mark_seen`; ephemeral envelopes are not) records the message id.
    /// A refused envelope writes nothing and is an [`Opened::Rejected`]; an error of `apply`
    /// rolls everything back and is returned.
    ///
    /// # Errors
    /// Store errors and `apply`'s errors.
    #[allow(clippy::too_many_arguments)] // the envelope, its context and the callback
    pub fn open_envelope<B, R, T, E>(
        &self,
        store: &mut EncryptedStore<B>,
        message_id: &str,
        content: &[u8],
        delivered: Option<&DeliveredFranking>,
        mark_seen: bool,
        now: u64,
        rng: &mut R,
        apply: impl FnOnce(
            &mut EncryptedStore<B>,
            &DeviceAddress,
            &[u8],
            Option<&ReportMaterial>,
        ) -> Result<T, E>,
    ) -> Result<Opened<T>, E>
    where
        B: Backend,
        R: CryptoRng + ?Sized,
        E: From<DeviceError> + From<ClientStoreError>,
    {
        if mark_seen && self.is_seen(store, message_id)? {
            return Ok(Opened::Duplicate);
        }
        let identity = store.identity_key_pair().map_err(DeviceError::from)?;
        let opened = match open_sealed(&identity, self.relay_key(), content, now) {
            Ok(o) => o,
            Err(e) => return Ok(Opened::Rejected(RejectReason::from_sealed(&e))),
        };
        if opened.content_type != CONTENT_SESSION {
            return Ok(Opened::Rejected(RejectReason::Malformed(format!(
                "unknown content type {}",
                opened.content_type
            ))));
        }
        let sender = opened.certificate.sender;
        if sender == self.address() {
            return Ok(Opened::Rejected(RejectReason::Certificate(
                "envelope claims to come from this device".into(),
            )));
        }
        // The sending device must be one its account's signed list names, with the identity key
        // of the certificate; an account without a list is trusted on first use per device.
        match self.account_trust(store, &sender.account_id)? {
            AccountTrust::KeyChanged => {
                return Ok(Opened::Rejected(RejectReason::AccountKeyChanged {
                    account: hex::encode(sender.account_id),
                }));
            }
            AccountTrust::Unknown => {
                return Ok(Opened::NeedDeviceList {
                    account: sender.account_id,
                    device: sender.device_id,
                });
            }
            AccountTrust::Listed { .. } => {
                if self.vouch(store, &sender, &opened.certificate.identity_key)? != Vouch::Listed {
                    return Ok(Opened::NeedDeviceList {
                        account: sender.account_id,
                        device: sender.device_id,
                    });
                }
            }
            AccountTrust::Unverified => {}
        }
        // The identity in the relay-signed certificate must be the one the session uses.
        if let Some(known) = store.peer_identity(&sender).map_err(DeviceError::from)?
            && known != opened.certificate.identity_key
        {
            return Ok(Opened::Rejected(RejectReason::IdentityChanged {
                account: hex::encode(sender.account_id),
                device: sender.device_id,
            }));
        }
        // Only named in the report material (filled in at report time when absent): a stored
        // key that does not decode must not stop the queue.
        let franking_key = self.franking_key(store).ok().flatten();
        let me = self.address();
        let result = store.atomically_mut(|s| -> Result<_, Refusal<E>> {
            let plaintext = session_cipher::decrypt(s, &sender, &opened.content, now, rng)
                .map_err(|e| Refusal::Reject(RejectReason::from_session(&e)))?;
            // A first message (PreKeyMessage) names its sender's identity key: it must be the
            // certificate's (and so, for a listed account, the listed key).
            let session_identity = s
                .peer_identity(&sender)
                .map_err(|e| Refusal::Fail(E::from(DeviceError::from(e))))?;
            if session_identity != Some(opened.certificate.identity_key) {
                return Err(Refusal::Reject(RejectReason::Certificate(
                    "the message's identity key is not the certificate's".into(),
                )));
            }
            let unpadded = unpad(&plaintext)
                .map_err(|_| Refusal::Reject(RejectReason::Malformed("bad padding".into())))?;
            let (content, material) =
                match open_delivered(unpadded, delivered, franking_key, &sender, mailbox(&me)) {
                    Some(Unwrapped::Franked(content, material)) => (content, Some(material)),
                    Some(Unwrapped::Bare(content)) => (content, None),
                    None => return Err(Refusal::Reject(RejectReason::FrankingMismatch)),
                };
            let value = apply(s, &sender, content, material.as_ref()).map_err(Refusal::Fail)?;
            let fail = |e: DeviceError| Refusal::Fail(E::from(e));
            // The sender's device list grows with the devices that write to this one.
            let mut devices = contact_devices(s, &sender.account_id).map_err(fail)?;
            if !devices.contains(&sender.device_id) {
                devices.push(sender.device_id);
                save_contact_devices(s, &sender.account_id, &devices).map_err(fail)?;
            }
            if mark_seen {
                record_seen(s, message_id).map_err(fail)?;
            }
            Ok(Opened::Accepted {
                sender,
                plaintext: content.to_vec(),
                value,
            })
        });
        match result {
            Ok(opened) => Ok(opened),
            Err(Refusal::Reject(reason)) => Ok(Opened::Rejected(reason)),
            Err(Refusal::Fail(e)) => Err(e),
        }
    }

    /// Opens one envelope of `GET /v1/messages` into the inbox space (message id → sender
    /// account · u32be device · plaintext); `None` for a duplicate already delivered. Its
    /// franking is checked as for every envelope; the inbox keeps no report material (the
    /// messenger does, §13.6). Ack the
    /// envelope afterwards in every case but [`Received::NeedDeviceList`]; `list_fresh` says
    /// the sender's list was fetched for this envelope (an unlisted sender is then refused).
    ///
    /// # Errors
    /// Store errors (a bad envelope is a [`Received::Rejected`]).
    pub fn receive<B: Backend, R: CryptoRng + ?Sized>(
        &self,
        store: &mut EncryptedStore<B>,
        queued: &QueuedBody,
        list_fresh: bool,
        now: u64,
        rng: &mut R,
    ) -> Result<Option<Received>, DeviceError> {
        let message_id = queued.message_id.to_hex();
        let Ok(content) = STANDARD.decode(&queued.content) else {
            return Ok(Some(Received::Rejected {
                message_id,
                reason: RejectReason::Malformed("envelope is not base64".into()),
            }));
        };
        let delivered = match DeliveredFranking::from_queued(queued) {
            Ok(d) => d,
            Err(e) => {
                return Ok(Some(Received::Rejected {
                    message_id,
                    reason: RejectReason::Malformed(e.to_string()),
                }));
            }
        };
        let opened = self.open_envelope(
            store,
            &message_id,
            &content,
            delivered.as_ref(),
            true,
            now,
            rng,
            |s, sender, plain, _| -> Result<(), DeviceError> {
                let mut record = Vec::with_capacity(20 + plain.len());
                record.extend_from_slice(&sender.account_id);
                record.extend_from_slice(&sender.device_id.to_be_bytes());
                record.extend_from_slice(plain);
                s.put(INBOX, message_id.as_bytes(), &record)?;
                Ok(())
            },
        )?;
        let opened = if list_fresh {
            opened.unlisted()
        } else {
            opened
        };
        Ok(match opened {
            Opened::Duplicate => None,
            Opened::NeedDeviceList { account, .. } => Some(Received::NeedDeviceList { account }),
            Opened::Rejected(reason) => Some(Received::Rejected { message_id, reason }),
            Opened::Accepted {
                sender, plaintext, ..
            } => Some(Received::Message {
                message_id,
                sender,
                plaintext,
            }),
        })
    }
}
