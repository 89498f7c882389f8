//! Who is who (PROTOCOL §15): the account identity key this device holds for its own account,
//! and, for every account it talks to, the signed device list it accepted and the account key
//! it pinned.
//!
//! A device of another account is one that account's signed list names with its identity key.
//! The relay serves the lists but cannot forge one (the account key signs it), roll one back
//! (versions only go up) or show two histories (one version, one list):
//!
//! ```text
//! due(account)        ─► GET /v1/accounts/{account}/device-list ─► accept_device_list
//!                         200: verify, pin the account key on first contact, refuse a changed
//!                              key (kept pending until the user accepts it), a rollback, a fork
//!                         404: the account publishes no list (legacy, trust on first use per
//!                              device, reported as unverified); refused once a list was seen
//! send                 only to listed devices, each bundle's identity key must be the listed one
//! receive              only from listed devices with the listed key (else: fetch, then refuse)
//! ```
//!
//! Records (`ACCOUNTS`, natural key the 16-byte account id):
//!
//! ```text
//! 01 | fetched_at u64 | list_len u16 | list | pending_len u16 | pending
//! ```
//!
//! `list` is the last accepted list (§15.2, empty when the account publishes none), `pending` a
//! list signed by another account key that waits for the user's decision
//! ([`LocalDevice::accept_account_key`]). The own account identity key pair is kept in `META`
//! under `"account_key"` (its secret encoding, §15.1).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use haven_protocol::api::identity::{DeviceListReply, DeviceListUpload};
use haven_protocol::encoding::Reader;
use haven_sdk::account::{
    AccountIdentityKeyPair, DeviceList, DeviceListError, account_party_digits,
    account_safety_number,
};
use haven_sdk::identity::IdentityKey;
use haven_sdk::store::{DeviceAddress, IdentityStore};
use rand_core::CryptoRng;

use super::space::{ACCOUNTS, META};
use super::state::{LocalDevice, contact_devices, save_contact_devices};
use super::{DeviceError, bad_response, protocol};
use crate::store::{Backend, EncryptedStore, Space, address_key};

/// A device list older than this (seconds) is fetched again before a send.
pub const LIST_REFRESH: u64 = 3600;

const RECORD_VERSION: u8 = 1;

/// Why a device list or a device was refused. Each is shown to the user: a relay that serves
/// these is lying or an account's history forked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ListRefusal {
    /// The list does not parse, its signature does not verify, or it names another account.
    #[error("invalid device list: {0}")]
    Invalid(String),
    /// An older version than one already accepted.
    #[error("rolled back to version {offered} after version {seen}")]
    Rollback {
        /// The version offered.
        offered: u64,
        /// The version accepted before.
        seen: u64,
    },
    /// Another list with a version already accepted.
    #[error("two different device lists carry version {version}")]
    Equivocation {
        /// The version.
        version: u64,
    },
    /// The relay says the account publishes no list, after this device accepted one.
    #[error("the account's device list was withdrawn")]
    Withdrawn,
    /// The relay named a device (in a device mismatch, a bundle or a certificate) that the
    /// account's signed list does not name with that key.
    #[error("device {device} is not in the signed device list")]
    Unlisted {
        /// The device number.
        device: u32,
    },
}

/// What the relay answered to `GET /v1/accounts/{account}/device-list`.
#[derive(Debug, Clone, Copy)]
pub enum ListAnswer<'a> {
    /// 200 with the list.
    List(&'a DeviceListReply),
    /// 404 `device_list_not_found`: the account publishes none.
    NotPublished,
}

/// What accepting a list changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListUpdate {
    /// The account.
    pub account: [u8; 16],
    /// The accepted version (`None` when the account publishes no list).
    pub version: Option<u64>,
    /// Devices added since the last accepted list (all of them on first contact).
    pub added: Vec<u32>,
    /// Devices removed (their sessions are dropped).
    pub removed: Vec<u32>,
    /// Devices with a new identity key (their sessions are dropped).
    pub rekeyed: Vec<u32>,
    /// Whether this is the first list accepted for the account (its key was pinned now).
    pub first: bool,
}

impl ListUpdate {
    /// Whether the list changed anything a user should hear about (devices added, removed or
    /// re-keyed after the first contact).
    #[must_use]
    pub fn is_news(&self) -> bool {
        let changed =
            !self.added.is_empty() || !self.removed.is_empty() || !self.rekeyed.is_empty();
        !self.first && changed
    }
}

/// Something about an account's devices the user should hear of: drivers collect these while
/// they send and receive and hand them to the application (the messenger's events).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DirectoryNotice {
    /// Devices were added, removed or re-keyed (a contact linked a new device: for a verified
    /// contact, ask the user before trusting it).
    Changed(ListUpdate),
    /// The account's identity key changed: compare safety numbers, then accept it.
    AccountKeyChanged {
        /// The account.
        account: [u8; 16],
    },
    /// A device list or a device was refused: the relay lies.
    Refused {
        /// The account.
        account: [u8; 16],
        /// Why.
        reason: ListRefusal,
    },
}

impl DirectoryNotice {
    /// The notice for the outcome of [`LocalDevice::accept_device_list`] (none for an update
    /// that is no news, or for an error that is not about the list).
    #[must_use]
    pub fn of(account: &[u8; 16], outcome: &Result<ListUpdate, DeviceError>) -> Option<Self> {
        match outcome {
            Ok(update) if update.is_news() => Some(Self::Changed(update.clone())),
            Ok(_) => None,
            Err(DeviceError::AccountKeyChanged { .. }) => {
                Some(Self::AccountKeyChanged { account: *account })
            }
            Err(DeviceError::DeviceList { reason, .. }) => Some(Self::Refused {
                account: *account,
                reason: reason.clone(),
            }),
            Err(DeviceError::UnlistedDevice { device, .. }) => Some(Self::Refused {
                account: *account,
                reason: ListRefusal::Unlisted { device: *device },
            }),
            Err(_) => None,
        }
    }
}

/// How this device knows an account's devices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountTrust {
    /// No list fetched yet.
    Unknown,
    /// The account publishes no signed list (a client from before lists): its devices are
    /// trusted on first use, each on its own, and cannot be told from devices the relay added.
    Unverified,
    /// A signed list was accepted; only its devices are used.
    Listed {
        /// The accepted version.
        version: u64,
        /// The listed device numbers.
        devices: Vec<u32>,
    },
    /// A list signed by another account key waits for the user's decision; nothing is sent to
    /// or accepted from the account until then.
    KeyChanged,
}

/// Whether a device (with an identity key) belongs to its account, as far as this device
/// knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vouch {
    /// The accepted list names the device with this key.
    Listed,
    /// The account publishes no list: trust on first use.
    Unverified,
    /// No list known yet: fetch it.
    Unknown,
    /// The accepted list does not name this device with this key (or a key change waits).
    Refused,
}

#[derive(Default)]
struct Record {
    fetched_at: u64,
    list: Option<DeviceList>,
    pending: Option<Vec<u8>>,
}

impl Record {
    fn encode(&self) -> Vec<u8> {
        let list = self.list.as_ref().map_or(&[][..], DeviceList::to_bytes);
        let pending = self.pending.as_deref().unwrap_or_default();
        let mut out = Vec::with_capacity(1 + 8 + 4 + list.len() + pending.len());
        out.push(RECORD_VERSION);
        out.extend_from_slice(&self.fetched_at.to_be_bytes());
        for part in [list, pending] {
            // Lists are at most MAX_LIST_LEN (4,546) bytes.
            out.extend_from_slice(&u16::try_from(part.len()).unwrap_or(0).to_be_bytes());
            out.extend_from_slice(part);
        }
        out
    }

    fn decode(bytes: &[u8]) -> Result<Self, DeviceError> {
        let bad = || protocol("stored device list record malformed");
        let mut r = Reader::new(bytes);
        if r.u8().ok_or_else(bad)? != RECORD_VERSION {
            return Err(bad());
        }
        let fetched_at = r.u64().ok_or_else(bad)?;
        let mut part = || -> Result<Option<Vec<u8>>, DeviceError> {
            let len = r.u16().ok_or_else(bad)?;
            let bytes = r.take(usize::from(len)).ok_or_else(bad)?;
            Ok((!bytes.is_empty()).then(|| bytes.to_vec()))
        };
        let list = part()?
            .map(|b| DeviceList::verify(&b).map_err(|_| bad()))
            .transpose()?;
        let pending = part()?;
        r.finish().ok_or_else(bad)?;
        Ok(Self {
            fetched_at,
            list,
            pending,
        })
    }
}

fn load_record<B: Backend>(
    store: &EncryptedStore<B>,
    account: &[u8; 16],
) -> Result<Option<Record>, DeviceError> {
    store
        .get(ACCOUNTS, account)?
        .map(|b| Record::decode(&b))
        .transpose()
}

fn refusal(account: &[u8; 16], reason: ListRefusal) -> DeviceError {
    DeviceError::DeviceList {
        account: hex::encode(account),
        reason,
    }
}

/// Drops the session with one device (a removed or re-keyed device).
fn drop_session<B: Backend>(
    store: &EncryptedStore<B>,
    account: &[u8; 16],
    device: u32,
) -> Result<(), DeviceError> {
    store.delete(
        Space::SESSION,
        &address_key(&DeviceAddress::new(*account, device)),
    )?;
    Ok(())
}

/// The own account identity key pair, if this device holds it.
///
/// # Errors
/// Store errors; a malformed stored key.
pub fn account_key_pair<B: Backend>(
    store: &EncryptedStore<B>,
) -> Result<Option<AccountIdentityKeyPair>, DeviceError> {
    store
        .get(META, b"account_key")?
        .map(|b| AccountIdentityKeyPair::from_bytes(&b).map_err(protocol))
        .transpose()
}

/// Keeps the own account identity key pair (from registration or a link).
///
/// # Errors
/// Store errors.
pub fn set_account_key_pair<B: Backend>(
    store: &EncryptedStore<B>,
    key: &AccountIdentityKeyPair,
) -> Result<(), DeviceError> {
    Ok(store.put(META, b"account_key", key.to_bytes().as_slice())?)
}

impl LocalDevice {
    /// Whether to fetch `account`'s device list before a send: none is known, or the last one
    /// was fetched [`LIST_REFRESH`] seconds ago or more.
    ///
    /// # Errors
    /// Store errors.
    pub fn device_list_due<B: Backend>(
        &self,
        store: &EncryptedStore<B>,
        account: &[u8; 16],
        now: u64,
    ) -> Result<bool, DeviceError> {
        Ok(load_record(store, account)?
            .is_none_or(|r| now.saturating_sub(r.fetched_at) >= LIST_REFRESH))
    }

    /// How this device knows `account`'s devices.
    ///
    /// # Errors
    /// Store errors.
    pub fn account_trust<B: Backend>(
        &self,
        store: &EncryptedStore<B>,
        account: &[u8; 16],
    ) -> Result<AccountTrust, DeviceError> {
        Ok(match load_record(store, account)? {
            None => AccountTrust::Unknown,
            Some(r) if r.pending.is_some() => AccountTrust::KeyChanged,
            Some(Record {
                list: Some(list), ..
            }) => AccountTrust::Listed {
                version: list.version(),
                devices: list.devices().iter().map(|(n, _)| *n).collect(),
            },
            Some(_) => AccountTrust::Unverified,
        })
    }

    /// The accepted device list of `account`, if any.
    ///
    /// # Errors
    /// Store errors.
    pub fn device_list<B: Backend>(
        &self,
        store: &EncryptedStore<B>,
        account: &[u8; 16],
    ) -> Result<Option<DeviceList>, DeviceError> {
        Ok(load_record(store, account)?.and_then(|r| r.list))
    }

    /// Whether device `address` with identity `key` belongs to its account.
    ///
    /// # Errors
    /// Store errors.
    pub fn vouch<B: Backend>(
        &self,
        store: &EncryptedStore<B>,
        address: &DeviceAddress,
        key: &IdentityKey,
    ) -> Result<Vouch, DeviceError> {
        Ok(match load_record(store, &address.account_id)? {
            None => Vouch::Unknown,
            Some(r) if r.pending.is_some() => Vouch::Refused,
            Some(Record {
                list: Some(list), ..
            }) => {
                if list.vouches_for(address.device_id, key) {
                    Vouch::Listed
                } else {
                    Vouch::Refused
                }
            }
            Some(_) => Vouch::Unverified,
        })
    }

    /// Takes the relay's answer for `account`'s device list (§15.2 acceptance). On success the
    /// devices this device sends to become the listed ones (the own device left out), each
    /// listed identity key is trusted, and sessions with removed or re-keyed devices are
    /// dropped, in one transaction.
    ///
    /// # Errors
    /// [`DeviceError::AccountKeyChanged`] (the new list is kept pending for
    /// [`LocalDevice::accept_account_key`]), [`DeviceError::DeviceList`] (invalid, rollback,
    /// equivocation, withdrawn: nothing changes), store errors.
    pub fn accept_device_list<B: Backend>(
        &self,
        store: &mut EncryptedStore<B>,
        account: &[u8; 16],
        answer: ListAnswer<'_>,
        now: u64,
    ) -> Result<ListUpdate, DeviceError> {
        let record = load_record(store, account)?;
        let reply = match answer {
            ListAnswer::NotPublished => {
                if record.as_ref().is_some_and(|r| r.list.is_some()) {
                    return Err(refusal(account, ListRefusal::Withdrawn));
                }
                let mut r = record.unwrap_or_default();
                r.fetched_at = now;
                store.put(ACCOUNTS, account, &r.encode())?;
                return Ok(ListUpdate {
                    account: *account,
                    first: true,
                    ..ListUpdate::default()
                });
            }
            ListAnswer::List(reply) => reply,
        };
        let bytes = STANDARD
            .decode(&reply.list)
            .map_err(|_| bad_response("device list is not base64"))?;
        let list = DeviceList::verify(&bytes)
            .map_err(|e| refusal(account, ListRefusal::Invalid(e.to_string())))?;
        if list.version() != reply.version {
            return Err(refusal(
                account,
                ListRefusal::Invalid("version field differs from the signed version".into()),
            ));
        }
        let previous = record.as_ref().and_then(|r| r.list.as_ref());
        let own_key = if *account == self.account() {
            account_key_pair(store)?.map(|k| *k.public())
        } else {
            None
        };
        // The own account's key is the one this device holds, from the first list on.
        let pinned = own_key.as_ref().or(previous.map(DeviceList::account_key));
        let change = match list.accept(account, pinned, previous) {
            Ok(change) => change,
            Err(DeviceListError::AccountKeyChanged) => {
                let mut r = record.unwrap_or_default();
                r.pending = Some(bytes);
                r.fetched_at = now;
                store.put(ACCOUNTS, account, &r.encode())?;
                return Err(DeviceError::AccountKeyChanged {
                    account: hex::encode(account),
                });
            }
            Err(DeviceListError::Rollback { offered, seen }) => {
                return Err(refusal(account, ListRefusal::Rollback { offered, seen }));
            }
            Err(DeviceListError::Equivocation { version }) => {
                return Err(refusal(account, ListRefusal::Equivocation { version }));
            }
            Err(e) => return Err(refusal(account, ListRefusal::Invalid(e.to_string()))),
        };
        let first = previous.is_none();
        let pending = record.and_then(|r| r.pending);
        let update = ListUpdate {
            account: *account,
            version: Some(list.version()),
            added: if first {
                list.devices().iter().map(|(n, _)| *n).collect()
            } else {
                change.added
            },
            removed: change.removed,
            rekeyed: change.rekeyed,
            first,
        };
        store.atomically_mut(|s| self.install(s, account, list, pending, &update, now))?;
        Ok(update)
    }

    /// Writes an accepted list: the record, the trusted identities, the devices to send to,
    /// and drops the sessions of removed and re-keyed devices.
    fn install<B: Backend>(
        &self,
        s: &mut EncryptedStore<B>,
        account: &[u8; 16],
        list: DeviceList,
        pending: Option<Vec<u8>>,
        update: &ListUpdate,
        now: u64,
    ) -> Result<(), DeviceError> {
        for &d in update.removed.iter().chain(&update.rekeyed) {
            drop_session(s, account, d)?;
        }
        let own = *account == self.account();
        let mut devices = Vec::new();
        for (n, key) in list.devices() {
            if own && *n == self.device_number() {
                continue;
            }
            s.save_identity(&DeviceAddress::new(*account, *n), key)?;
            devices.push(*n);
        }
        // Devices used before the list (trusted on first use) that it does not name are
        // dropped too.
        for d in contact_devices(s, account)? {
            if !devices.contains(&d) {
                drop_session(s, account, d)?;
            }
        }
        save_contact_devices(s, account, &devices)?;
        let record = Record {
            fetched_at: now,
            list: Some(list),
            pending,
        };
        s.put(ACCOUNTS, account, &record.encode())?;
        Ok(())
    }

    /// Accepts the new account key of `account` that [`DeviceError::AccountKeyChanged`]
    /// reported (after the user compared the new safety number): its pending list replaces the
    /// old one as on first contact, and every session with the account is dropped.
    ///
    /// # Errors
    /// [`DeviceError::InvalidArgument`] when no key change is pending; store errors.
    pub fn accept_account_key<B: Backend>(
        &self,
        store: &mut EncryptedStore<B>,
        account: &[u8; 16],
        now: u64,
    ) -> Result<ListUpdate, DeviceError> {
        let record = load_record(store, account)?;
        let pending = record
            .as_ref()
            .and_then(|r| r.pending.clone())
            .ok_or_else(|| {
                DeviceError::InvalidArgument("no account key change is pending".into())
            })?;
        let list = DeviceList::verify(&pending).map_err(protocol)?;
        let old_devices: Vec<u32> = record
            .as_ref()
            .and_then(|r| r.list.as_ref())
            .map(|l| l.devices().iter().map(|(n, _)| *n).collect())
            .unwrap_or_default();
        let update = ListUpdate {
            account: *account,
            version: Some(list.version()),
            added: list.devices().iter().map(|(n, _)| *n).collect(),
            removed: Vec::new(),
            rekeyed: old_devices,
            first: true,
        };
        store.atomically_mut(|s| {
            // A verification was of the old key.
            s.delete(META, &verified_name(account))?;
            self.install(s, account, list, None, &update, now)
        })?;
        Ok(update)
    }

    /// The per-account safety number with `account` (§15.4), once both accounts' keys are
    /// known; `None` before (or for an account without a list).
    ///
    /// # Errors
    /// Store errors.
    pub fn account_safety_number<B: Backend>(
        &self,
        store: &EncryptedStore<B>,
        account: &[u8; 16],
    ) -> Result<Option<String>, DeviceError> {
        let Some(own) = account_key_pair(store)? else {
            return Ok(None);
        };
        Ok(self.device_list(store, account)?.map(|list| {
            account_safety_number(&self.account(), own.public(), account, list.account_key())
        }))
    }

    /// This account's own half of the safety number (30 digits), shown for comparison.
    ///
    /// # Errors
    /// Store errors.
    pub fn own_safety_digits<B: Backend>(
        &self,
        store: &EncryptedStore<B>,
    ) -> Result<Option<String>, DeviceError> {
        Ok(account_key_pair(store)?.map(|k| account_party_digits(&self.account(), k.public())))
    }

    /// The next list of this device's own account, signed with the account key: the devices of
    /// the accepted own list with `add` added (or re-keyed) and `remove` left out, one version
    /// up. Upload it (`PUT /v1/account/device-list`), then pass the relay's acceptance to
    /// [`LocalDevice::own_list_published`].
    ///
    /// # Errors
    /// [`DeviceError::NoAccountKey`] when this device does not hold the account key;
    /// [`DeviceError::InvalidArgument`] for a list with no device or too many; store errors.
    pub fn sign_own_list<B: Backend>(
        &self,
        store: &EncryptedStore<B>,
        add: &[(u32, IdentityKey)],
        remove: &[u32],
        now: u64,
    ) -> Result<DeviceList, DeviceError> {
        let key = account_key_pair(store)?.ok_or(DeviceError::NoAccountKey)?;
        let current = self.device_list(store, &self.account())?;
        let mut devices: Vec<(u32, IdentityKey)> = current
            .as_ref()
            .map(|l| l.devices().to_vec())
            .unwrap_or_default();
        devices.retain(|(n, _)| !remove.contains(n) && !add.iter().any(|(a, _)| a == n));
        devices.extend_from_slice(add);
        let version = current.map_or(1, |l| l.version().saturating_add(1));
        key.sign_device_list(self.account(), version, now, &devices)
            .map_err(|e| DeviceError::InvalidArgument(e.to_string()))
    }

    /// The body of `PUT /v1/account/device-list` for `list`.
    #[must_use]
    pub fn device_list_upload(list: &DeviceList) -> DeviceListUpload {
        DeviceListUpload {
            list: STANDARD.encode(list.to_bytes()),
            replace_account_key: false,
        }
    }

    /// Records the own account's `list` once the relay took it (204).
    ///
    /// # Errors
    /// As [`LocalDevice::accept_device_list`].
    pub fn own_list_published<B: Backend>(
        &self,
        store: &mut EncryptedStore<B>,
        list: &DeviceList,
        now: u64,
    ) -> Result<ListUpdate, DeviceError> {
        let reply = DeviceListReply {
            list: STANDARD.encode(list.to_bytes()),
            version: list.version(),
        };
        self.accept_device_list(store, &self.account(), ListAnswer::List(&reply), now)
    }

    /// The first list of a new account (or of an account from before lists, upgraded by this
    /// device): version 1 with this device alone, signed by a fresh account key kept in the
    /// store (or the one kept by an earlier attempt whose upload failed). Other devices of an
    /// upgraded account join by being linked again.
    ///
    /// # Errors
    /// [`DeviceError::InvalidArgument`] when the own account already has an accepted list;
    /// store errors.
    pub fn first_own_list<B: Backend, R: CryptoRng + ?Sized>(
        &self,
        store: &EncryptedStore<B>,
        now: u64,
        rng: &mut R,
    ) -> Result<DeviceList, DeviceError> {
        if self.device_list(store, &self.account())?.is_some() {
            return Err(DeviceError::InvalidArgument(
                "the account already has a device list".into(),
            ));
        }
        let key = match account_key_pair(store)? {
            Some(key) => key,
            None => {
                let key = AccountIdentityKeyPair::generate(rng);
                set_account_key_pair(store, &key)?;
                key
            }
        };
        let own = *store.identity_key_pair()?.public();
        key.sign_device_list(self.account(), 1, now, &[(self.device_number(), own)])
            .map_err(protocol)
    }
}

/// Whether the user verified an account (compared its safety number), and whether devices
/// came since that the user has not confirmed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verification {
    /// Not verified (or verified under an account key that has changed since).
    NotVerified,
    /// Verified, and every listed device is one the user confirmed.
    Verified,
    /// Verified, but the list names devices (new or re-keyed) the user has not confirmed:
    /// nothing is sent to the account until [`LocalDevice::confirm_devices`].
    NewDevices(Vec<u32>),
}

fn verified_name(account: &[u8; 16]) -> Vec<u8> {
    let mut k = b"verified:".to_vec();
    k.extend_from_slice(hex::encode(account).as_bytes());
    k
}

/// The record of a verified account (`META`, `"verified:" · hex(account)`): the account key
/// the user verified and the devices (number and identity key) confirmed under it:
/// `01 | account_key [32] | count u16 | count × (number u32 | identity_key [64])`.
fn encode_verified(list: &DeviceList) -> Vec<u8> {
    let mut out = vec![RECORD_VERSION];
    out.extend_from_slice(&list.account_key().to_bytes());
    let count = u16::try_from(list.devices().len()).unwrap_or(0);
    out.extend_from_slice(&count.to_be_bytes());
    for (n, key) in list.devices().iter().take(usize::from(count)) {
        out.extend_from_slice(&n.to_be_bytes());
        out.extend_from_slice(&key.to_bytes());
    }
    out
}

type Confirmed = ([u8; 32], Vec<(u32, Vec<u8>)>);

fn decode_verified(bytes: &[u8]) -> Result<Confirmed, DeviceError> {
    let bad = || protocol("stored verification record malformed");
    let mut r = Reader::new(bytes);
    if r.u8().ok_or_else(bad)? != RECORD_VERSION {
        return Err(bad());
    }
    let key: [u8; 32] = r.array().ok_or_else(bad)?;
    let count = r.u16().ok_or_else(bad)?;
    let mut devices = Vec::with_capacity(usize::from(count));
    for _ in 0..count {
        let n = r.u32().ok_or_else(bad)?;
        let k = r
            .take(haven_protocol::account::DEVICE_KEY_LEN)
            .ok_or_else(bad)?;
        devices.push((n, k.to_vec()));
    }
    r.finish().ok_or_else(bad)?;
    Ok((key, devices))
}

impl LocalDevice {
    /// Marks `account` as verified by the user (after comparing the account safety number):
    /// its account key and the devices its list names now are confirmed. Later devices (or
    /// re-keyed ones) block sends to it until [`LocalDevice::confirm_devices`].
    ///
    /// # Errors
    /// [`DeviceError::NeedDeviceList`] when no list of the account is accepted; store errors.
    pub fn mark_verified<B: Backend>(
        &self,
        store: &EncryptedStore<B>,
        account: &[u8; 16],
    ) -> Result<(), DeviceError> {
        let list =
            self.device_list(store, account)?
                .ok_or_else(|| DeviceError::NeedDeviceList {
                    account: hex::encode(account),
                })?;
        Ok(store.put(META, &verified_name(account), &encode_verified(&list))?)
    }

    /// Forgets that `account` was verified.
    ///
    /// # Errors
    /// Store errors.
    pub fn clear_verified<B: Backend>(
        &self,
        store: &EncryptedStore<B>,
        account: &[u8; 16],
    ) -> Result<(), DeviceError> {
        store.delete(META, &verified_name(account))?;
        Ok(())
    }

    /// Confirms the devices `account`'s list names now (the user accepted its new devices).
    ///
    /// # Errors
    /// [`DeviceError::InvalidArgument`] for an account that is not verified; store errors.
    pub fn confirm_devices<B: Backend>(
        &self,
        store: &EncryptedStore<B>,
        account: &[u8; 16],
    ) -> Result<(), DeviceError> {
        if self.verification(store, account)? == Verification::NotVerified {
            return Err(DeviceError::InvalidArgument(
                "the account is not verified".into(),
            ));
        }
        self.mark_verified(store, account)
    }

    /// Whether the user verified `account`, and which listed devices wait for confirmation.
    ///
    /// # Errors
    /// Store errors.
    pub fn verification<B: Backend>(
        &self,
        store: &EncryptedStore<B>,
        account: &[u8; 16],
    ) -> Result<Verification, DeviceError> {
        let Some(bytes) = store.get(META, &verified_name(account))? else {
            return Ok(Verification::NotVerified);
        };
        let (key, confirmed) = decode_verified(&bytes)?;
        let Some(list) = self.device_list(store, account)? else {
            return Ok(Verification::NotVerified);
        };
        if list.account_key().to_bytes() != key {
            return Ok(Verification::NotVerified);
        }
        let new: Vec<u32> = list
            .devices()
            .iter()
            .filter(|(n, k)| {
                !confirmed
                    .iter()
                    .any(|(cn, ck)| cn == n && ck.as_slice() == k.to_bytes().as_slice())
            })
            .map(|(n, _)| *n)
            .collect();
        Ok(if new.is_empty() {
            Verification::Verified
        } else {
            Verification::NewDevices(new)
        })
    }
}
