//! The device's own record in the store (PROTOCOL §12, space `0x01F0`): the relay session
//! (§11.7), the pinned relay key and the cached sender certificate (§11.13), the account's and
//! its contacts' access keys (§11.12), the device lists it sends to, the identities it trusts and
//! the safety numbers computed from them (§6).
//!
//! Settings (`META`, natural key → value):
//!
//! ```text
//! "account"        account id, 32 lowercase hex (UTF-8)
//! "device_id"      device id, 32 lowercase hex (UTF-8)
//! "device_number"  u32be
//! "refresh"        refresh token (UTF-8)
//! "relay_key"      the relay's Ed25519 certificate key (32)
//! "certificate"    the last sender certificate (§5.1, 158)
//! "access_key"     the account's unidentified-access key (16)
//! "ak:" · hex(account)              a contact's access key (16)
//! "next_otpk" "next_kem" "next_spk" "next_lr"   key id counters (u32be), see `keys`
//! "lr_for_spk:" · u32be(spk id)     the last-resort KEM key id uploaded with it (u32be)
//! "seen_n"         counter of processed message ids (u64be), see `receive`
//! ```
//!
//! Contact device lists (`CONTACT_DEVICES`): natural key hex(account), value the device
//! numbers as u32be each, ascending.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::VerifyingKey;
use haven_protocol::api::Id;
use haven_protocol::api::certificate::{CertificateKeyResponse, CertificateResponse};
use haven_protocol::api::messages::AccessKeyBody;
use haven_sdk::identity::IdentityKey;
use haven_sdk::sealed_sender::SenderCertificate;
use haven_sdk::store::{DeviceAddress, IdentityStore, SessionStore};
use rand_core::CryptoRng;
use zeroize::Zeroizing;

use super::space::{CONTACT_DEVICES, META};
use super::{DeviceError, bad_response, protocol};
use crate::store::{Backend, EncryptedStore};

/// A cached sender certificate is renewed when it has less than this left (seconds).
pub const CERTIFICATE_MARGIN: u64 = 300;

/// Key of a contact's access key in `META`.
fn access_key_name(account: &[u8; 16]) -> Vec<u8> {
    let mut k = b"ak:".to_vec();
    k.extend_from_slice(hex::encode(account).as_bytes());
    k
}

fn meta_text<B: Backend>(
    store: &EncryptedStore<B>,
    key: &[u8],
) -> Result<Option<Zeroizing<String>>, DeviceError> {
    store
        .get(META, key)?
        .map(|b| {
            String::from_utf8(b.to_vec())
                .map(Zeroizing::new)
                .map_err(|_| protocol("stored setting is not UTF-8"))
        })
        .transpose()
}

fn meta_id<B: Backend>(store: &EncryptedStore<B>, key: &[u8]) -> Result<Option<Id>, DeviceError> {
    meta_text(store, key)?
        .map(|t| t.parse().map_err(|_| protocol("stored id malformed")))
        .transpose()
}

/// The relay session a device keeps (§11.7): its ids and the refresh token (the access token
/// lives only in the driver's memory). No `Debug` output of the token.
pub struct StoredSession {
    /// The account id.
    pub account: Id,
    /// This device's id.
    pub device_id: Id,
    /// This device's number within the account.
    pub device_number: u32,
    /// The refresh token, spent on the next request.
    pub refresh_token: Zeroizing<String>,
}

impl std::fmt::Debug for StoredSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredSession")
            .field("account", &self.account)
            .field("device_number", &self.device_number)
            .finish_non_exhaustive()
    }
}

impl StoredSession {
    /// The session kept in `store`, if the device has one.
    ///
    /// # Errors
    /// Store errors; [`DeviceError::Protocol`] for a malformed stored value.
    pub fn load<B: Backend>(store: &EncryptedStore<B>) -> Result<Option<Self>, DeviceError> {
        let (Some(account), Some(device_id), Some(number), Some(refresh_token)) = (
            meta_id(store, b"account")?,
            meta_id(store, b"device_id")?,
            store.get(META, b"device_number")?,
            meta_text(store, b"refresh")?,
        ) else {
            return Ok(None);
        };
        let device_number = <[u8; 4]>::try_from(number.as_slice())
            .map(u32::from_be_bytes)
            .map_err(|_| protocol("stored device number malformed"))?;
        Ok(Some(Self {
            account,
            device_id,
            device_number,
            refresh_token,
        }))
    }

    /// Stores the ids and refresh token of a token answer (register/finish, login/finish,
    /// token/refresh). A store that already belongs to another account or device refuses it.
    ///
    /// # Errors
    /// [`DeviceError::InvalidResponse`] for tokens of another account or device; store errors.
    pub fn store<B: Backend>(
        store: &EncryptedStore<B>,
        account: Id,
        device_id: Id,
        device_number: u32,
        refresh_token: &str,
    ) -> Result<(), DeviceError> {
        if let Some(known) = meta_id(store, b"account")?
            && known != account
        {
            return Err(bad_response("token response for another account"));
        }
        if let Some(known) = meta_id(store, b"device_id")?
            && known != device_id
        {
            return Err(bad_response("token response for another device"));
        }
        store.atomically(|s| -> Result<(), DeviceError> {
            s.put(META, b"account", account.to_hex().as_bytes())?;
            s.put(META, b"device_id", device_id.to_hex().as_bytes())?;
            s.put(META, b"device_number", &device_number.to_be_bytes())?;
            s.put(META, b"refresh", refresh_token.as_bytes())?;
            Ok(())
        })
    }

    /// The stored account id, once a session was stored.
    ///
    /// # Errors
    /// Store errors, a malformed stored value.
    pub fn account<B: Backend>(store: &EncryptedStore<B>) -> Result<Option<Id>, DeviceError> {
        meta_id(store, b"account")
    }

    /// The stored device id, once a session was stored (a device that has one logs in as
    /// itself, otherwise as a new device).
    ///
    /// # Errors
    /// Store errors, a malformed stored value.
    pub fn device_id<B: Backend>(store: &EncryptedStore<B>) -> Result<Option<Id>, DeviceError> {
        meta_id(store, b"device_id")
    }

    /// The stored refresh token.
    ///
    /// # Errors
    /// [`DeviceError::NotSetUp`] before the first session; store errors.
    pub fn refresh_token<B: Backend>(
        store: &EncryptedStore<B>,
    ) -> Result<Zeroizing<String>, DeviceError> {
        meta_text(store, b"refresh")?.ok_or(DeviceError::NotSetUp)
    }

    /// Replaces the stored refresh token (tokens rotate on every refresh).
    ///
    /// # Errors
    /// Store errors.
    pub fn set_refresh_token<B: Backend>(
        store: &EncryptedStore<B>,
        token: &str,
    ) -> Result<(), DeviceError> {
        Ok(store.put(META, b"refresh", token.as_bytes())?)
    }
}

/// Pins the relay's certificate key from `GET /v1/certificate/key` and returns it; a key other
/// than the one pinned before is refused.
///
/// # Errors
/// [`DeviceError::InvalidResponse`]; store errors.
pub fn pin_relay_key<B: Backend>(
    store: &EncryptedStore<B>,
    answer: &CertificateKeyResponse,
) -> Result<VerifyingKey, DeviceError> {
    let key: [u8; 32] = STANDARD
        .decode(&answer.public_key)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| bad_response("relay certificate key malformed"))?;
    let verifying =
        VerifyingKey::from_bytes(&key).map_err(|_| bad_response("relay key is not a point"))?;
    if let Some(pinned) = store.get(META, b"relay_key")?
        && pinned.as_slice() != key
    {
        return Err(bad_response("the relay's certificate key changed"));
    }
    store.put(META, b"relay_key", &key)?;
    Ok(verifying)
}

/// The account's own access key, if this device holds it.
///
/// # Errors
/// Store errors.
pub fn own_access_key<B: Backend>(
    store: &EncryptedStore<B>,
) -> Result<Option<[u8; 16]>, DeviceError> {
    Ok(store
        .get(META, b"access_key")?
        .and_then(|v| <[u8; 16]>::try_from(v.as_slice()).ok()))
}

/// Stores the account's own access key (after `PUT /v1/account/access-key` succeeded, or as
/// learned from another own device end to end).
///
/// # Errors
/// Store errors.
pub fn set_own_access_key<B: Backend>(
    store: &EncryptedStore<B>,
    key: &[u8; 16],
) -> Result<(), DeviceError> {
    Ok(store.put(META, b"access_key", key)?)
}

/// A fresh random access key for a new account.
pub fn generate_access_key<R: CryptoRng + ?Sized>(rng: &mut R) -> [u8; 16] {
    let mut key = [0u8; 16];
    rng.fill_bytes(&mut key);
    key
}

/// Body of `PUT /v1/account/access-key` setting `key` (the relay keeps only its hash).
#[must_use]
pub fn access_key_body(key: &[u8; 16]) -> AccessKeyBody {
    AccessKeyBody {
        access_key: Some(STANDARD.encode(key)),
    }
}

/// A contact's access key, if known (sends to it are then sealed).
///
/// # Errors
/// Store errors.
pub fn contact_access_key<B: Backend>(
    store: &EncryptedStore<B>,
    account: &[u8; 16],
) -> Result<Option<[u8; 16]>, DeviceError> {
    Ok(store
        .get(META, &access_key_name(account))?
        .and_then(|v| <[u8; 16]>::try_from(v.as_slice()).ok()))
}

/// Remembers a contact's access key (learned end to end, e.g. from a contact card).
///
/// # Errors
/// Store errors.
pub fn set_contact_access_key<B: Backend>(
    store: &EncryptedStore<B>,
    account: &[u8; 16],
    key: &[u8; 16],
) -> Result<(), DeviceError> {
    Ok(store.put(META, &access_key_name(account), key)?)
}

/// The device numbers of `account` this device sends to (ascending; empty when unknown).
///
/// # Errors
/// Store errors.
pub fn contact_devices<B: Backend>(
    store: &EncryptedStore<B>,
    account: &[u8; 16],
) -> Result<Vec<u32>, DeviceError> {
    Ok(store
        .get(CONTACT_DEVICES, hex::encode(account).as_bytes())?
        .map(|v| {
            v.chunks_exact(4)
                .filter_map(|c| <[u8; 4]>::try_from(c).ok().map(u32::from_be_bytes))
                .collect()
        })
        .unwrap_or_default())
}

/// Replaces the device list of `account` (sorted and deduplicated here).
///
/// # Errors
/// Store errors.
pub fn save_contact_devices<B: Backend>(
    store: &EncryptedStore<B>,
    account: &[u8; 16],
    devices: &[u32],
) -> Result<(), DeviceError> {
    let mut devices = devices.to_vec();
    devices.sort_unstable();
    devices.dedup();
    let bytes: Vec<u8> = devices.iter().flat_map(|d| d.to_be_bytes()).collect();
    Ok(store.put(CONTACT_DEVICES, hex::encode(account).as_bytes(), &bytes)?)
}

/// The safety number with one device of a contact (§6), compared out of band.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SafetyNumber {
    /// The contact's device number.
    pub device: u32,
    /// The 60 digits, the same on both sides.
    pub digits: String,
}

/// This registered device: its address and the relay key it pinned. Loaded from the store once
/// the device has a session and a relay key; every send and receive step is a method of it.
#[derive(Clone, PartialEq, Eq)]
pub struct LocalDevice {
    address: DeviceAddress,
    relay_key: VerifyingKey,
}

impl std::fmt::Debug for LocalDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalDevice")
            .field("account", &hex::encode(self.address.account_id))
            .field("device_number", &self.address.device_id)
            .finish_non_exhaustive()
    }
}

impl LocalDevice {
    /// The device kept in `store`.
    ///
    /// # Errors
    /// [`DeviceError::NotSetUp`] without a session or a pinned relay key; store errors.
    pub fn load<B: Backend>(store: &EncryptedStore<B>) -> Result<Self, DeviceError> {
        let session = StoredSession::load(store)?.ok_or(DeviceError::NotSetUp)?;
        let key: [u8; 32] = store
            .get(META, b"relay_key")?
            .ok_or(DeviceError::NotSetUp)?
            .as_slice()
            .try_into()
            .map_err(|_| protocol("stored relay key malformed"))?;
        let relay_key = VerifyingKey::from_bytes(&key).map_err(protocol)?;
        Ok(Self {
            address: DeviceAddress::new(*session.account.as_bytes(), session.device_number),
            relay_key,
        })
    }

    /// This device's address (account id and device number).
    #[must_use]
    pub fn address(&self) -> DeviceAddress {
        self.address
    }

    /// The account id.
    #[must_use]
    pub fn account(&self) -> [u8; 16] {
        self.address.account_id
    }

    /// This device's number within its account.
    #[must_use]
    pub fn device_number(&self) -> u32 {
        self.address.device_id
    }

    /// The relay's pinned certificate key.
    #[must_use]
    pub fn relay_key(&self) -> &VerifyingKey {
        &self.relay_key
    }

    /// The cached sender certificate, if it is valid for more than [`CERTIFICATE_MARGIN`]
    /// seconds after `now`; otherwise fetch a new one (`POST /v1/certificate`) and pass it to
    /// [`LocalDevice::accept_certificate`].
    ///
    /// # Errors
    /// Store errors.
    pub fn certificate<B: Backend>(
        &self,
        store: &EncryptedStore<B>,
        now: u64,
    ) -> Result<Option<SenderCertificate>, DeviceError> {
        Ok(store
            .get(META, b"certificate")?
            .and_then(|bytes| SenderCertificate::from_bytes(&bytes).ok())
            .filter(|cert| cert.expires > now.saturating_add(CERTIFICATE_MARGIN)))
    }

    /// Checks the answer of `POST /v1/certificate` (signed by the pinned relay key, not expired,
    /// for this device and its identity key) and caches it.
    ///
    /// # Errors
    /// [`DeviceError::InvalidResponse`]; store errors.
    pub fn accept_certificate<B: Backend>(
        &self,
        store: &EncryptedStore<B>,
        answer: &CertificateResponse,
        now: u64,
    ) -> Result<SenderCertificate, DeviceError> {
        let bytes = STANDARD
            .decode(&answer.certificate)
            .map_err(|_| bad_response("certificate is not base64"))?;
        let cert = SenderCertificate::from_bytes(&bytes)
            .map_err(|_| bad_response("certificate malformed"))?;
        cert.validate(&self.relay_key, now)
            .map_err(|e| bad_response(format!("certificate refused: {e}")))?;
        if cert.sender != self.address || cert.identity_key != *store.identity_key_pair()?.public()
        {
            return Err(bad_response("certificate for another device"));
        }
        store.put(META, b"certificate", &bytes)?;
        Ok(cert)
    }

    /// The identity key of a device as this device trusts it, if known.
    ///
    /// # Errors
    /// Store errors.
    pub fn peer_identity<B: Backend>(
        &self,
        store: &EncryptedStore<B>,
        address: &DeviceAddress,
    ) -> Result<Option<IdentityKey>, DeviceError> {
        Ok(store.peer_identity(address)?)
    }

    /// Accepts a contact device's new identity key (after the user compared safety numbers):
    /// the old session is dropped and the next send starts a new one from a bundle.
    ///
    /// # Errors
    /// Store errors.
    pub fn accept_identity<B: Backend>(
        &self,
        store: &mut EncryptedStore<B>,
        address: &DeviceAddress,
        key: &IdentityKey,
    ) -> Result<(), DeviceError> {
        store.atomically_mut(|s| -> Result<(), DeviceError> {
            s.save_identity(address, key)?;
            s.store_session(address, &haven_sdk::SessionRecord::default())?;
            Ok(())
        })
    }

    /// The safety numbers with each device of `account` whose identity this device knows
    /// (§6: this device's identity against each of theirs).
    ///
    /// # Errors
    /// Store errors.
    pub fn safety_numbers<B: Backend>(
        &self,
        store: &EncryptedStore<B>,
        account: &[u8; 16],
    ) -> Result<Vec<SafetyNumber>, DeviceError> {
        let own_key = *store.identity_key_pair()?.public();
        let mut out = Vec::new();
        for device in contact_devices(store, account)? {
            if let Some(key) = store.peer_identity(&DeviceAddress::new(*account, device))? {
                out.push(SafetyNumber {
                    device,
                    digits: haven_sdk::safety_number(&self.account(), &own_key, account, &key),
                });
            }
        }
        Ok(out)
    }
}
