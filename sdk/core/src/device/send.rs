//! Sending one message to every device of an account (PROTOCOL §11.12, §5, §7, §13.2).
//!
//! ```text
//! claims(account)            which bundles to claim: all of the account's when its devices
//!                            are unknown, else one per known device without a session
//! encrypt(account, …)        pad (§7), Double Ratchet per device (PQXDH from a claimed bundle
//!                            when there is no session, §3), seal under the sender certificate
//!                            (§5) → the body of POST /v1/messages/{account}[/sealed]: sealed
//!                            with the account's access key when known, else logged-in
//! repair(account, answer)    a 409 mismatched_devices / 410 stale_devices answer applied to the
//!                            device list (sessions with devices that are gone are dropped);
//!                            then claims and encrypt again, at most SEND_ATTEMPTS in all
//! ```
//!
//! A send to the device's own account (the copy to its other devices, §13.2) skips the sending
//! device and is `None` while no other own device is known; [`LocalDevice::own_devices_due`]
//! says when to re-read the account's device list (`GET /v1/devices`) for it.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use haven_protocol::api::Id;
use haven_protocol::api::devices::DeviceList;
use haven_protocol::api::error::DeviceMismatch;
use haven_protocol::api::keys::BundlesResponse;
use haven_protocol::api::messages::{EnvelopeBody, SendBody};
use haven_protocol::franking::{Destination, FrankingKey, MAX_CONTENT_LEN};
use haven_sdk::franking::frank;
use haven_sdk::identity::IdentityKeyPair;
use haven_sdk::pad;
use haven_sdk::prekeys::PreKeyBundle;
use haven_sdk::sealed_sender::{SenderCertificate, seal_sender};
use haven_sdk::session_cipher;
use haven_sdk::store::{DeviceAddress, IdentityStore, SessionStore};
use rand_core::CryptoRng;
use zeroize::Zeroizing;

use super::directory::{AccountTrust, Verification, Vouch};
use super::state::{LocalDevice, contact_access_key, contact_devices, save_contact_devices};
use super::{CONTENT_SESSION, DeviceError, bad_response, protocol};
use crate::store::{Backend, EncryptedStore, Space, address_key};

/// Attempts of one send: the first, and one more after repairing a stale device list.
pub const SEND_ATTEMPTS: usize = 2;

/// How often (seconds) a device that knows no other own device re-reads its account's device
/// list before a copy to its own account.
pub const OWN_DEVICES_RECHECK: u64 = 60;

/// A message's plaintext (the §13.1 content), made once per message before anything is
/// claimed, then encrypted for each recipient account (a contact and the copy to the own
/// devices) and each retry. Each envelope pads (§7) its own plaintext: the content, or its
/// franking opening (§16.3), which differs per envelope. Wiped on drop; no `Debug`.
pub struct OutgoingPlaintext(Zeroizing<Vec<u8>>);

impl OutgoingPlaintext {
    /// Takes `plaintext`.
    ///
    /// # Errors
    /// [`DeviceError::Protocol`] for a plaintext beyond the franking content limit (256 KiB,
    /// the sealed-sender content limit).
    pub fn new(plaintext: &[u8]) -> Result<Self, DeviceError> {
        if plaintext.len() > MAX_CONTENT_LEN {
            return Err(protocol(format!(
                "content of {} bytes exceeds {MAX_CONTENT_LEN}",
                plaintext.len()
            )));
        }
        Ok(Self(Zeroizing::new(plaintext.to_vec())))
    }

    /// The bytes to pad and encrypt for one envelope: the content as is (unfranked), or its
    /// opening for `destination` under `franking_key` with a fresh `fk`, and the commitment.
    fn for_envelope<R: CryptoRng + ?Sized>(
        &self,
        franking_key: Option<&FrankingKey>,
        sender: &IdentityKeyPair,
        destination: &Destination,
        rng: &mut R,
    ) -> Result<EnvelopePlaintext, DeviceError> {
        match franking_key {
            None => Ok((Zeroizing::new(pad(&self.0).map_err(protocol)?), None)),
            Some(key) => {
                let franked = frank(rng, sender, key, destination, &self.0).map_err(protocol)?;
                let padded = Zeroizing::new(pad(&franked.plaintext).map_err(protocol)?);
                Ok((padded, Some(franked.commitment)))
            }
        }
    }
}

/// One envelope's padded plaintext and, when franked, its commitment.
type EnvelopePlaintext = (Zeroizing<Vec<u8>>, Option<[u8; 32]>);

/// A prekey-bundle claim to make before encrypting (§11.11).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Claim {
    /// Every device of the account (its devices are not known yet).
    All,
    /// One device.
    Device(u32),
}

impl Claim {
    /// The path to `GET` (bearer) for this claim on `account`.
    #[must_use]
    pub fn path(&self, account: &[u8; 16]) -> String {
        let account = hex::encode(account);
        match self {
            Self::All => format!("/v1/keys/{account}"),
            Self::Device(n) => format!("/v1/keys/{account}/{n}"),
        }
    }
}

/// One send to one account, ready for the relay.
#[derive(Debug, Clone)]
pub struct OutgoingSend {
    account: [u8; 16],
    body: SendBody,
}

impl OutgoingSend {
    /// The recipient account.
    #[must_use]
    pub fn account(&self) -> [u8; 16] {
        self.account
    }

    /// Whether this is a sealed send (authorised by the recipient's access key, no bearer
    /// token, the relay does not learn the sender) rather than a logged-in one.
    #[must_use]
    pub fn is_sealed(&self) -> bool {
        self.body.access_key.is_some()
    }

    /// The path to `POST` the body to: `/v1/messages/{account}/sealed` without a bearer token
    /// when sealed, else `/v1/messages/{account}` with one.
    #[must_use]
    pub fn path(&self) -> String {
        let account = hex::encode(self.account);
        if self.is_sealed() {
            format!("/v1/messages/{account}/sealed")
        } else {
            format!("/v1/messages/{account}")
        }
    }

    /// The request body.
    #[must_use]
    pub fn body(&self) -> &SendBody {
        &self.body
    }

    /// The request body, by value.
    #[must_use]
    pub fn into_body(self) -> SendBody {
        self.body
    }
}

/// Verifies the bundles of a claim answer (§2.4 signatures, device numbers, the account).
///
/// # Errors
/// [`DeviceError::InvalidResponse`].
pub fn verify_bundles(
    answer: &BundlesResponse,
    account: &[u8; 16],
) -> Result<Vec<PreKeyBundle>, DeviceError> {
    if answer.account_id.as_bytes() != account {
        return Err(bad_response("bundles of another account"));
    }
    let mut out = Vec::with_capacity(answer.bundles.len());
    for b in &answer.bundles {
        let bytes = b
            .bundle
            .as_deref()
            .and_then(|s| STANDARD.decode(s).ok())
            .ok_or_else(|| bad_response("bundle missing or not base64"))?;
        let bundle =
            PreKeyBundle::from_bytes(&bytes).map_err(|e| bad_response(format!("bundle: {e}")))?;
        if bundle.device_id != b.device_number {
            return Err(bad_response("bundle device number mismatch"));
        }
        bundle
            .verify()
            .map_err(|e| bad_response(format!("bundle: {e}")))?;
        out.push(bundle);
    }
    Ok(out)
}

fn has_session<B: Backend>(
    store: &EncryptedStore<B>,
    peer: &DeviceAddress,
) -> Result<bool, DeviceError> {
    Ok(store
        .load_session(peer)?
        .is_some_and(|r| r.current().is_some()))
}

impl LocalDevice {
    /// Whether to re-read the account's device list before a send to `account` (its signed
    /// list when it has one, [`LocalDevice::accept_device_list`]; else `GET /v1/devices`, then
    /// [`LocalDevice::set_own_devices`]): it is this device's own
    /// account, no other own device is known, and the list was not read in the last
    /// [`OWN_DEVICES_RECHECK`] seconds (`last_checked`, kept by the driver).
    ///
    /// # Errors
    /// Store errors.
    pub fn own_devices_due<B: Backend>(
        &self,
        store: &EncryptedStore<B>,
        account: &[u8; 16],
        last_checked: Option<u64>,
        now: u64,
    ) -> Result<bool, DeviceError> {
        if *account != self.account() || self.knows_other_own_device(store)? {
            return Ok(false);
        }
        Ok(last_checked.is_none_or(|t| now.saturating_sub(t) >= OWN_DEVICES_RECHECK))
    }

    fn knows_other_own_device<B: Backend>(
        &self,
        store: &EncryptedStore<B>,
    ) -> Result<bool, DeviceError> {
        Ok(contact_devices(store, &self.account())?
            .iter()
            .any(|&d| d != self.device_number()))
    }

    /// Takes the account's device list (`GET /v1/devices`) as the devices of its own account.
    ///
    /// # Errors
    /// Store errors.
    pub fn set_own_devices<B: Backend>(
        &self,
        store: &EncryptedStore<B>,
        list: &DeviceList,
    ) -> Result<(), DeviceError> {
        if !matches!(
            self.account_trust(store, &self.account())?,
            AccountTrust::Unknown | AccountTrust::Unverified
        ) {
            // The relay's unsigned list never adds a device to an account with a signed list.
            return Ok(());
        }
        let numbers: Vec<u32> = list.devices.iter().map(|d| d.device_number).collect();
        save_contact_devices(store, &self.account(), &numbers)
    }

    /// Refuses a send to an account whose device list is not known yet or whose key change
    /// waits for the user.
    fn check_trust<B: Backend>(
        &self,
        store: &EncryptedStore<B>,
        account: &[u8; 16],
    ) -> Result<(), DeviceError> {
        match self.account_trust(store, account)? {
            AccountTrust::Listed { .. } => match self.verification(store, account)? {
                Verification::NewDevices(devices) => Err(DeviceError::UnconfirmedDevices {
                    account: hex::encode(account),
                    devices,
                }),
                Verification::Verified | Verification::NotVerified => Ok(()),
            },
            AccountTrust::Unverified => Ok(()),
            AccountTrust::KeyChanged => Err(DeviceError::AccountKeyChanged {
                account: hex::encode(account),
            }),
            AccountTrust::Unknown => Err(DeviceError::NeedDeviceList {
                account: hex::encode(account),
            }),
        }
    }

    /// The claims to make before [`LocalDevice::encrypt`] for `account`: [`Claim::All`] when its
    /// devices are unknown, else one per known device without a session; empty when every
    /// device has a session (or, on the own account, when no other own device is known).
    ///
    /// # Errors
    /// Store errors.
    pub fn claims<B: Backend>(
        &self,
        store: &EncryptedStore<B>,
        account: &[u8; 16],
    ) -> Result<Vec<Claim>, DeviceError> {
        let own = *account == self.account();
        self.check_trust(store, account)?;
        let devices = contact_devices(store, account)?;
        if own {
            if !self.knows_other_own_device(store)? {
                return Ok(Vec::new());
            }
        } else if devices.is_empty() {
            return Ok(vec![Claim::All]);
        }
        let mut out = Vec::new();
        for d in devices {
            if own && d == self.device_number() {
                continue;
            }
            if !has_session(store, &DeviceAddress::new(*account, d))? {
                out.push(Claim::Device(d));
            }
        }
        Ok(out)
    }

    /// Encrypts `plaintext` for every device of `account` (known devices and those of the
    /// claimed `bundles`, the answers to [`LocalDevice::claims`]): a Double Ratchet message per
    /// device (a PQXDH handshake from its bundle when there is no session), sealed
    /// under `certificate`. Returns the send (sealed when the account's access key is known),
    /// or `None` for the own account while no other own device is known, and for an
    /// `ephemeral` send to another account whose access key is not known (the relay refuses
    /// those, PROTOCOL.md §11.12). Sessions and the
    /// device list are updated in one transaction; nothing is kept when an error is returned.
    ///
    /// With the relay's `franking_key` every envelope is franked (§16.3): a fresh `fk` per
    /// envelope, the opening for that device's mailbox inside the encryption, the commitment
    /// in its [`EnvelopeBody::franking_commitment`]. `ephemeral` sends are never franked (the
    /// relay refuses a commitment on them, and nothing ephemeral can be reported).
    ///
    /// # Errors
    /// [`DeviceError::IdentityChanged`] (a bundle with an identity other than the trusted one),
    /// [`DeviceError::NoSession`] (a device without session or bundle),
    /// [`DeviceError::InvalidResponse`] (bad bundles), [`DeviceError::NoDevices`],
    /// [`DeviceError::Protocol`], store errors.
    #[allow(clippy::too_many_arguments)] // one send's inputs; a struct would only rename them
    pub fn encrypt<B: Backend, R: CryptoRng + ?Sized>(
        &self,
        store: &mut EncryptedStore<B>,
        account: &[u8; 16],
        plaintext: &OutgoingPlaintext,
        message_id: Id,
        ephemeral: bool,
        franking_key: Option<&FrankingKey>,
        bundles: &[BundlesResponse],
        certificate: &SenderCertificate,
        rng: &mut R,
    ) -> Result<Option<OutgoingSend>, DeviceError> {
        let own = *account == self.account();
        self.check_trust(store, account)?;
        let access_key = contact_access_key(store, account)?;
        if ephemeral && !own && access_key.is_none() {
            // The relay takes an ephemeral send to another account only with its access key
            // (no online oracle for strangers): nothing to send, no ratchet step spent.
            return Ok(None);
        }
        let mut claimed = Vec::new();
        for answer in bundles {
            claimed.extend(verify_bundles(answer, account)?);
        }
        // A bundle is used only for a device the account's signed list names with the bundle's
        // identity key: the relay can neither add a device nor substitute a key.
        for b in &claimed {
            let peer = DeviceAddress::new(*account, b.device_id);
            match self.vouch(store, &peer, &b.identity_key)? {
                Vouch::Listed | Vouch::Unverified => {}
                Vouch::Unknown | Vouch::Refused => {
                    return Err(DeviceError::UnlistedDevice {
                        account: hex::encode(account),
                        device: b.device_id,
                    });
                }
            }
        }
        let mut devices = contact_devices(store, account)?;
        for b in &claimed {
            if !devices.contains(&b.device_id) {
                devices.push(b.device_id);
            }
        }
        devices.sort_unstable();
        let targets: Vec<u32> = devices
            .iter()
            .copied()
            .filter(|&d| !(own && d == self.device_number()))
            .collect();
        if targets.is_empty() {
            return if own {
                Ok(None)
            } else {
                Err(DeviceError::NoDevices)
            };
        }
        let franking_key = franking_key.filter(|_| !ephemeral);
        let envelopes = store.atomically_mut(|s| -> Result<_, DeviceError> {
            let identity = s.identity_key_pair()?;
            let mut envelopes = Vec::with_capacity(targets.len());
            for &d in &targets {
                let peer = DeviceAddress::new(*account, d);
                let destination = Destination::Device {
                    account: *account,
                    device: d,
                };
                let (padded, commitment) =
                    plaintext.for_envelope(franking_key, &identity, &destination, rng)?;
                let padded = padded.as_slice();
                let bundle = claimed.iter().find(|b| b.device_id == d);
                let message = match (has_session(s, &peer)?, bundle) {
                    (true, _) => session_cipher::encrypt(s, &peer, padded).map_err(protocol)?,
                    (false, Some(b)) => {
                        if !s.is_trusted(&peer, &b.identity_key)? {
                            return Err(DeviceError::IdentityChanged {
                                account: hex::encode(account),
                                device: d,
                            });
                        }
                        session_cipher::initiate(s, &peer, b, padded, rng).map_err(protocol)?
                    }
                    (false, None) => return Err(DeviceError::NoSession { device: d }),
                };
                let recipient = s
                    .peer_identity(&peer)?
                    .ok_or_else(|| protocol("no identity for peer"))?;
                let sealed = seal_sender(
                    &identity,
                    certificate,
                    &recipient,
                    CONTENT_SESSION,
                    &message,
                    rng,
                )
                .map_err(protocol)?;
                envelopes.push(EnvelopeBody {
                    device_number: d,
                    content: STANDARD.encode(sealed),
                    franking_commitment: commitment.map(|c| STANDARD.encode(c)),
                });
            }
            save_contact_devices(s, account, &devices)?;
            Ok(envelopes)
        })?;
        Ok(Some(OutgoingSend {
            account: *account,
            body: SendBody {
                message_id,
                envelopes,
                ephemeral,
                access_key: access_key.map(|key| STANDARD.encode(key)),
            },
        }))
    }

    /// Applies the `mismatches` of a 409 `mismatched_devices` / 410 `stale_devices` answer to
    /// the device list of `account`: missing devices are added, extra and removed ones dropped
    /// with their sessions. Then claim and encrypt again.
    ///
    /// For an account with a signed device list, a missing device the list does not name is
    /// refused: [`DeviceError::NeedDeviceList`] while `list_fresh` is false (the account may
    /// have linked it since: fetch the list, accept it, and repair again with `list_fresh`),
    /// [`DeviceError::UnlistedDevice`] after (the relay added it). Devices the relay says are
    /// gone are left out of sends even when listed (the relay can withhold mail anyway).
    ///
    /// The relay names another account's devices only to a sender holding that account's
    /// access key (a sealed send, or a logged-in one carrying it). An answer naming no mismatch
    /// for another account is such a withheld answer: the devices known for it are forgotten,
    /// so the next [`LocalDevice::claims`] claims all of them again ([`Claim::All`]).
    ///
    /// # Errors
    /// [`DeviceError::InvalidResponse`] when the answer names no mismatch for the own account;
    /// [`DeviceError::NeedDeviceList`], [`DeviceError::UnlistedDevice`]; store errors.
    pub fn repair<B: Backend>(
        &self,
        store: &mut EncryptedStore<B>,
        account: &[u8; 16],
        mismatches: &[DeviceMismatch],
        list_fresh: bool,
    ) -> Result<(), DeviceError> {
        let Some(mismatch) = mismatches
            .iter()
            .find(|m| m.account_id.as_bytes() == account)
        else {
            if *account == self.account() {
                return Err(bad_response(
                    "device mismatch without details for this account",
                ));
            }
            return save_contact_devices(store, account, &[]);
        };
        if let Some(list) = self.device_list(store, account)? {
            let own = *account == self.account();
            for &d in &mismatch.missing_devices {
                if list.device(d).is_none() || (own && d == self.device_number()) {
                    return Err(if list_fresh {
                        DeviceError::UnlistedDevice {
                            account: hex::encode(account),
                            device: d,
                        }
                    } else {
                        DeviceError::NeedDeviceList {
                            account: hex::encode(account),
                        }
                    });
                }
            }
        }
        let remove: Vec<u32> = [
            mismatch.extra_devices.as_slice(),
            mismatch.removed_devices.as_slice(),
        ]
        .concat();
        let mut devices: Vec<u32> = contact_devices(store, account)?
            .into_iter()
            .filter(|d| !remove.contains(d))
            .collect();
        for &d in &mismatch.missing_devices {
            if !devices.contains(&d) {
                devices.push(d);
            }
        }
        store.atomically_mut(|s| -> Result<(), DeviceError> {
            for &d in &remove {
                // Sessions with devices that are gone are useless.
                s.delete(
                    Space::SESSION,
                    &address_key(&DeviceAddress::new(*account, d)),
                )?;
            }
            save_contact_devices(s, account, &devices)
        })
    }
}
