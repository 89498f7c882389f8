//! One device of one account, end to end: the I/O driver of the client core's device
//! ([`haven_client_core::device`], which holds the protocol logic and the state): each method
//! runs a core step, makes the HTTP request it asks for through the [`RelayClient`] and hands
//! the answer to the next core step.
//!
//! - **Keys.** [`Device::register`] creates the identity, registers with OPAQUE, uploads a signed
//!   prekey, a last-resort KEM prekey and batches of one-time prekeys; [`Device::replenish_keys`]
//!   tops the relay's stock up when it reports low; every private key lives only in the encrypted
//!   [`ClientStore`].
//! - **Sending.** Each message is padded, encrypted per recipient device with the Double Ratchet
//!   (a PQXDH handshake from a claimed bundle when there is no session yet), wrapped in a sealed
//!   sender envelope, and sent sealed (authorised by the contact's access key) when the
//!   application knows that key, or as a logged-in send otherwise. A stale device list (409/410)
//!   is repaired from the relay's answer and the send retried once.
//! - **Receiving.** [`Device::receive`] fetches queued envelopes, opens the sealed layer
//!   (certificate checked against the relay's published key), decrypts, and in one store
//!   transaction saves the session, the message and its id; only then is the envelope acked. A
//!   message id seen before is acked without being delivered again, so the application sees each
//!   message exactly once. Envelopes that fail (tampered, replayed, expired certificate, unknown
//!   session) are reported as [`Received::Rejected`] and acked; session state is not touched.

use std::sync::Mutex;

use haven_client_core::device::state::{
    self, StoredSession, access_key_body, contact_access_key, generate_access_key, pin_relay_key,
};
use haven_client_core::device::{
    self as core_device, AccountTrust, DirectoryNotice, LinkRequest, ListAnswer, ListRefusal,
    ListUpdate, LocalDevice, OutgoingPlaintext, SEND_ATTEMPTS, keys,
};
use haven_protocol::api::Id;
use haven_protocol::api::auth::TokenResponse;
use haven_protocol::api::certificate::{CertificateKeyResponse, CertificateResponse};
use haven_protocol::api::devices::DeviceList;
use haven_protocol::api::identity::{
    DeviceListReply, LinkTokenReply, ProvisioningCreated, ProvisioningMessage,
};
use haven_protocol::api::keys::{BundlesResponse, KeyCountsResponse};
use haven_protocol::api::messages::{AckBody, FetchResponse};
use haven_protocol::api::moderation::FrankingKeyResponse;
use haven_protocol::franking::FrankingKey;
use haven_sdk::identity::{IdentityKey, IdentityKeyPair};
use haven_sdk::sealed_sender::SenderCertificate;
use haven_sdk::store::{DeviceAddress, IdentityStore};
use reqwest::Method;
use serde::de::IgnoredAny;

/// Outcome of [`Device::open_envelope`]: the core's.
pub(crate) use haven_client_core::device::Opened;
pub use haven_client_core::device::{
    CONTENT_SESSION, DeliveredFranking, PREKEY_BATCH, Received, RejectReason, ReportError,
};

use crate::relay::{RelayClient, RelayError, Session};
use crate::store::{ClientStore, ClientStoreError};

/// Largest fetch page.
const FETCH_PAGE: u32 = 100;

/// Errors of the device layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeviceError {
    /// The relay refused or could not be reached.
    #[error(transparent)]
    Relay(#[from] RelayError),
    /// The local store failed.
    #[error(transparent)]
    Store(#[from] ClientStoreError),
    /// A protocol step failed (bad bundle, session error, sealing error).
    #[error("protocol: {0}")]
    Protocol(String),
    /// The contact's identity key changed; the application must confirm the new safety number
    /// (by calling [`Device::accept_identity`]) before messages are sent again.
    #[error("identity key of {account} device {device} changed")]
    IdentityChanged {
        /// The contact account (hex).
        account: String,
        /// The device number.
        device: u32,
    },
    /// The device has not been registered or restored.
    #[error("device not set up")]
    NotSetUp,
    /// An account's identity key changed (its device list is signed by another key). Nothing
    /// is sent to or accepted from it until the user compares the new safety number and calls
    /// [`Device::accept_account_key`].
    #[error("account identity key of {account} changed")]
    AccountKeyChanged {
        /// The account (hex).
        account: String,
    },
    /// An account's signed device list was refused (invalid, rolled back, forked, withdrawn):
    /// the relay lies. Nothing changed.
    #[error("device list of {account} refused: {reason}")]
    DeviceList {
        /// The account (hex).
        account: String,
        /// Why.
        reason: ListRefusal,
    },
    /// The relay named a device (or a key) the account's signed list does not: nothing was
    /// sent to it.
    #[error("device {device} of {account} is not in the account's signed device list")]
    UnlistedDevice {
        /// The account (hex).
        account: String,
        /// The device number.
        device: u32,
    },
    /// The user verified the account and its list now names devices the user has not
    /// confirmed (the blocking prompt): ask, then [`Device::confirm_devices`]. Nothing was
    /// sent.
    #[error("{account} has new devices {devices:?} to confirm before sending")]
    UnconfirmedDevices {
        /// The account (hex).
        account: String,
        /// The devices to confirm.
        devices: Vec<u32>,
    },
    /// This device does not hold the account identity key (it was added without approval, or
    /// its account is from before device lists and another device signs them).
    #[error("this device does not hold the account identity key")]
    NoAccountKey,
    /// An argument is malformed (a link code, an account id).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

fn protocol(e: impl std::fmt::Display) -> DeviceError {
    DeviceError::Protocol(e.to_string())
}

impl From<haven_sdk::store::StoreError> for DeviceError {
    fn from(e: haven_sdk::store::StoreError) -> Self {
        DeviceError::Protocol(e.to_string())
    }
}

impl From<core_device::DeviceError> for DeviceError {
    fn from(e: core_device::DeviceError) -> Self {
        match e {
            core_device::DeviceError::Store(e) => Self::Store(e),
            core_device::DeviceError::NotSetUp => Self::NotSetUp,
            core_device::DeviceError::IdentityChanged { account, device } => {
                Self::IdentityChanged { account, device }
            }
            core_device::DeviceError::AccountKeyChanged { account } => {
                Self::AccountKeyChanged { account }
            }
            core_device::DeviceError::DeviceList { account, reason } => {
                Self::DeviceList { account, reason }
            }
            core_device::DeviceError::UnlistedDevice { account, device } => {
                Self::UnlistedDevice { account, device }
            }
            core_device::DeviceError::NoAccountKey => Self::NoAccountKey,
            core_device::DeviceError::UnconfirmedDevices { account, devices } => {
                Self::UnconfirmedDevices { account, devices }
            }
            core_device::DeviceError::InvalidArgument(why) => Self::InvalidArgument(why),
            other => Self::Protocol(other.to_string()),
        }
    }
}

/// A registered device. Share it behind an `Arc`; calls may run concurrently.
pub struct Device {
    relay: RelayClient,
    store: Mutex<ClientStore>,
    local: LocalDevice,
    account_hex: String,
    /// When the relay's list of own devices was last read because no other own device was
    /// known (Unix seconds; the core says when it is due again).
    own_checked: Mutex<Option<u64>>,
    /// What the user should hear about accounts' device lists (devices added, removed,
    /// re-keyed; key changes; refusals), until the messenger takes it
    /// ([`Device::take_notices`]).
    list_updates: Mutex<Vec<DirectoryNotice>>,
}

impl std::fmt::Debug for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Device")
            .field("account", &self.account_hex)
            .field("device_number", &self.local.device_number())
            .finish_non_exhaustive()
    }
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn parse_account(hex_id: &str) -> Result<[u8; 16], DeviceError> {
    Ok(core_device::parse_account(hex_id)?)
}

fn random_message_id() -> String {
    let mut id = [0u8; 16];
    rand::Rng::fill_bytes(&mut rand::rng(), &mut id);
    hex::encode(id)
}

impl Device {
    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, ClientStore> {
        // A poisoned lock means another thread panicked mid-operation; the store's own
        // transactions keep the file consistent, so continuing is safe.
        self.store
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Registers a new account (OPAQUE) with this device as its first device, stores every
    /// secret in `store`, uploads prekeys and sets a fresh access key.
    ///
    /// # Errors
    /// Relay refusals (e.g. `username_taken`), store and protocol errors.
    pub async fn register(
        relay: RelayClient,
        store: ClientStore,
        username: Option<&str>,
        password: &[u8],
    ) -> Result<Self, DeviceError> {
        let mut rng = rand::rng();
        let identity = IdentityKeyPair::generate(&mut rng);
        let registration_id = rand::Rng::next_u32(&mut rng) & 0x3FFF;
        let session = relay
            .register(username, password, &identity.public().to_bytes(), None)
            .await?;
        store.set_identity(&identity, registration_id)?;
        let device = Self::finish_setup(relay, store, session, true).await?;
        device.publish_first_list().await?;
        Ok(device)
    }

    /// Starts linking this (new) device to an existing account by approval: opens a
    /// provisioning box on the relay. Show [`PendingLink::code`] to a device of the account
    /// (typed, pasted or as a QR code), which approves it ([`Device::approve_link`]); then
    /// [`PendingLink::finish`] joins. A password alone never adds a device.
    ///
    /// # Errors
    /// Relay errors.
    pub async fn start_link(relay: RelayClient) -> Result<PendingLink, DeviceError> {
        let created: ProvisioningCreated = relay
            .request_anonymous_as::<_, ()>(Method::POST, "/v1/provisioning", None)
            .await?;
        let request = LinkRequest::new(&created, &mut rand::rng());
        Ok(PendingLink { relay, request })
    }

    /// Stores the session, pins the relay key, uploads keys and, for a new account
    /// (`first_device`), sets a fresh access key. A linked device keeps the account's existing
    /// key (the other devices share it with it end to end), so it does not replace the key
    /// contacts already hold.
    async fn finish_setup(
        relay: RelayClient,
        store: ClientStore,
        session: Session,
        first_device: bool,
    ) -> Result<Self, DeviceError> {
        let device_number = session
            .device_number
            .ok_or_else(|| protocol("relay did not assign a device number"))?;
        let id = |hex: &str, what: &str| -> Result<Id, DeviceError> {
            hex.parse()
                .map_err(|_| protocol(format!("{what} is not hex")))
        };
        let account = id(&session.account_id, "account id")?;
        let device_id = id(&session.device_id, "device id")?;
        let key: CertificateKeyResponse = relay
            .request_anonymous_as::<_, ()>(Method::GET, "/v1/certificate/key", None)
            .await?;
        store.atomically(|s| -> Result<(), DeviceError> {
            StoredSession::store(
                s,
                account,
                device_id,
                device_number,
                session.refresh_token(),
            )?;
            pin_relay_key(s, &key)?;
            Ok(())
        })?;
        let local = LocalDevice::load(&store)?;
        let device = Self {
            relay,
            store: Mutex::new(store),
            account_hex: session.account_id.clone(),
            local,
            own_checked: Mutex::new(None),
            list_updates: Mutex::new(Vec::new()),
        };
        let body = keys::upload(&mut device.lock(), now_secs(), &mut rand::rng())?;
        device.put_keys(&body).await?;
        if first_device {
            let access = generate_access_key(&mut rand::rng());
            device.set_access_key(access).await?;
        }
        Ok(device)
    }

    /// Reopens a registered device from its store (e.g. after an app restart); the saved
    /// refresh token is spent on the first request.
    ///
    /// # Errors
    /// [`DeviceError::NotSetUp`] when the store holds no device, store errors.
    pub async fn open(relay: RelayClient, store: ClientStore) -> Result<Self, DeviceError> {
        let session = StoredSession::load(&store)?.ok_or(DeviceError::NotSetUp)?;
        let local = LocalDevice::load(&store)?;
        let account_hex = session.account.to_hex();
        relay
            .set_session(Session::restore(
                account_hex.clone(),
                session.device_id.to_hex(),
                Some(session.device_number),
                session.refresh_token,
            ))
            .await;
        Ok(Self {
            relay,
            store: Mutex::new(store),
            local,
            account_hex,
            own_checked: Mutex::new(None),
            list_updates: Mutex::new(Vec::new()),
        })
    }

    /// Persists the current refresh token in the store, so a restart resumes the session
    /// (refresh tokens rotate on use: call this after work done through [`Device::relay`]
    /// before the process exits).
    ///
    /// # Errors
    /// Store errors.
    pub async fn persist_session(&self) -> Result<(), DeviceError> {
        self.save_refresh().await
    }

    /// Persists the current refresh token (call after requests, so a restart can resume).
    async fn save_refresh(&self) -> Result<(), DeviceError> {
        if let Some(session) = self.relay.session().await {
            StoredSession::set_refresh_token(&self.lock(), session.refresh_token())?;
        }
        Ok(())
    }

    /// This device's address.
    #[must_use]
    pub fn address(&self) -> DeviceAddress {
        self.local.address()
    }

    /// The account id (hex).
    #[must_use]
    pub fn account_id(&self) -> &str {
        &self.account_hex
    }

    /// The relay client (for other APIs on the same session).
    #[must_use]
    pub fn relay(&self) -> &RelayClient {
        &self.relay
    }

    /// The account's access key: share it with contacts end to end so they can send sealed.
    ///
    /// # Errors
    /// Store errors, [`DeviceError::NotSetUp`].
    pub fn access_key(&self) -> Result<[u8; 16], DeviceError> {
        state::own_access_key(&self.lock())?.ok_or(DeviceError::NotSetUp)
    }

    /// Sets the account's access key on the relay (stored there only as a hash) and locally.
    ///
    /// # Errors
    /// Relay and store errors.
    pub async fn set_access_key(&self, key: [u8; 16]) -> Result<(), DeviceError> {
        self.relay
            .request_as::<IgnoredAny, _>(
                Method::PUT,
                "/v1/account/access-key",
                Some(&access_key_body(&key)),
            )
            .await?;
        Self::put_own_access_key(&self.lock(), &key)?;
        self.save_refresh().await
    }

    /// Remembers a contact's access key (learned end to end) so sends to it are sealed.
    ///
    /// # Errors
    /// Store errors.
    pub fn set_contact_access_key(&self, account: &str, key: [u8; 16]) -> Result<(), DeviceError> {
        Self::put_contact_access_key(&self.lock(), account, &key)
    }

    /// `PUT /v1/keys` with a core key body.
    async fn put_keys(
        &self,
        body: &haven_protocol::api::keys::KeyUploadRequest,
    ) -> Result<(), DeviceError> {
        self.relay
            .request_as::<IgnoredAny, _>(Method::PUT, "/v1/keys", Some(body))
            .await?;
        self.save_refresh().await
    }

    /// Uploads another batch of one-time prekeys if the relay reports low stock; returns
    /// whether it did.
    ///
    /// # Errors
    /// Relay, store and protocol errors.
    pub async fn replenish_keys(&self) -> Result<bool, DeviceError> {
        let counts: KeyCountsResponse = self
            .relay
            .request_as::<_, ()>(Method::GET, "/v1/keys/counts", None)
            .await?;
        let body = keys::replenish(&mut self.lock(), &counts, now_secs(), &mut rand::rng())?;
        let Some(body) = body else {
            return Ok(false);
        };
        self.put_keys(&body).await?;
        Ok(true)
    }

    /// Rotates the signed prekey (and the last-resort KEM prekey with it) when the newest is
    /// older than `policy.rotate_after`, uploading the new pair; deletes retired keys once their
    /// successor is older than `policy.keep_old_for` (so handshakes started against an old
    /// bundle still complete). Returns whether a new pair was uploaded.
    ///
    /// # Errors
    /// Relay and store errors (a failed upload leaves the current keys in place).
    pub async fn rotate_signed_prekey(
        &self,
        policy: &haven_sdk::prekeys::SignedPreKeyPolicy,
    ) -> Result<bool, DeviceError> {
        let rotation = keys::rotate(&mut self.lock(), policy, now_secs(), &mut rand::rng())?;
        let generated = rotation.upload.is_some();
        if let Some(body) = &rotation.upload {
            self.put_keys(body).await?;
        }
        keys::retire(&mut self.lock(), &rotation.retire)?;
        Ok(generated)
    }

    /// Key upkeep for a device that is online: tops one-time prekeys up when the relay reports
    /// low stock and rotates the signed prekey on `policy`'s schedule.
    ///
    /// # Errors
    /// As [`Device::replenish_keys`] and [`Device::rotate_signed_prekey`].
    pub async fn maintain_keys(
        &self,
        policy: &haven_sdk::prekeys::SignedPreKeyPolicy,
    ) -> Result<(), DeviceError> {
        self.replenish_keys().await?;
        self.rotate_signed_prekey(policy).await?;
        Ok(())
    }

    /// Accepts a contact device's new identity key (after the user compared safety numbers):
    /// the old session is dropped and the next send starts a new one.
    ///
    /// # Errors
    /// Store errors.
    pub fn accept_identity(
        &self,
        address: &DeviceAddress,
        key: &IdentityKey,
    ) -> Result<(), DeviceError> {
        Ok(self.local.accept_identity(&mut self.lock(), address, key)?)
    }

    /// The cached sender certificate, or a new one from the relay.
    async fn certificate(&self) -> Result<SenderCertificate, DeviceError> {
        let now = now_secs();
        let cached = self.local.certificate(&self.lock(), now)?;
        if let Some(cert) = cached {
            return Ok(cert);
        }
        let reply: CertificateResponse = self
            .relay
            .request_as::<_, ()>(Method::POST, "/v1/certificate", None)
            .await?;
        Ok(self.local.accept_certificate(&self.lock(), &reply, now)?)
    }

    /// The relay's franking key to frank sends with (PROTOCOL §16.3): the cached one, asked for
    /// again (`GET /v1/franking/key`, no authentication) when the core says it is due. A 404
    /// means the relay offers none (an older relay): `None` until the next ask, unless a key
    /// was offered before, which is kept.
    ///
    /// # Errors
    /// Relay errors other than 404 when no key is cached (a cached key is used when the ask
    /// fails); an invalid key; store errors.
    pub async fn franking_key(&self) -> Result<Option<FrankingKey>, DeviceError> {
        let now = now_secs();
        if !self.local.franking_key_due(&self.lock(), now)? {
            return Ok(self.local.franking_key(&self.lock())?);
        }
        let reply = self
            .relay
            .request_anonymous_as::<FrankingKeyResponse, ()>(Method::GET, "/v1/franking/key", None)
            .await;
        match reply {
            Ok(answer) => Ok(self
                .local
                .accept_franking_key(&self.lock(), Some(&answer), now)?),
            Err(e) if e.status() == Some(404) => {
                Ok(self.local.accept_franking_key(&self.lock(), None, now)?)
            }
            Err(e) => match self.local.franking_key(&self.lock())? {
                Some(key) => Ok(Some(key)),
                None => Err(e.into()),
            },
        }
    }

    /// Sends `plaintext` to every device of `account` (hex). Returns the message id.
    ///
    /// # Errors
    /// [`DeviceError::IdentityChanged`], relay refusals (after one repair of a stale device
    /// list), store and protocol errors.
    pub async fn send(&self, account: &str, plaintext: &[u8]) -> Result<String, DeviceError> {
        let message_id = random_message_id();
        self.send_with_id(account, plaintext, &message_id, false)
            .await?;
        Ok(message_id)
    }

    /// Sends `plaintext` under a caller-chosen `message_id` (32 hex digits; resending the same
    /// id is idempotent on the relay). `ephemeral` sends are never stored by the relay and are
    /// dropped for offline devices (typing indicators). On a send to the device's own account
    /// (self-sync) the sending device is skipped; with no other own device nothing is sent and
    /// `Ok(false)` is returned.
    ///
    /// # Errors
    /// As [`Device::send`]; [`RelayError::InvalidId`] (as [`DeviceError::Relay`]) for a
    /// `message_id` that is not 32 lowercase hex digits (checked before anything is encrypted).
    pub async fn send_with_id(
        &self,
        account: &str,
        plaintext: &[u8],
        message_id: &str,
        ephemeral: bool,
    ) -> Result<bool, DeviceError> {
        let message_id: Id = message_id
            .parse()
            .map_err(|_| RelayError::InvalidId("message id"))?;
        let plaintext = OutgoingPlaintext::new(plaintext)?;
        let cert = self.certificate().await?;
        // Every stored send is franked once the relay offers a key; typing never is.
        let franking_key = if ephemeral {
            None
        } else {
            self.franking_key().await?
        };
        let peer = parse_account(account)?;
        // The own account's list too: it says which own devices get copies, and an account
        // from before lists is upgraded here (this device publishes its first list).
        self.ensure_device_list(&self.local.account()).await?;
        self.ensure_device_list(&peer).await?;
        self.refresh_own_devices(&peer).await?;
        for attempt in 1..=SEND_ATTEMPTS {
            let claims = self.local.claims(&self.lock(), &peer)?;
            let mut bundles = Vec::with_capacity(claims.len());
            for claim in claims {
                let reply: BundlesResponse = self
                    .relay
                    .request_as::<_, ()>(Method::GET, &claim.path(&peer), None)
                    .await?;
                bundles.push(reply);
            }
            let outgoing = self.local.encrypt(
                &mut self.lock(),
                &peer,
                &plaintext,
                message_id,
                ephemeral,
                franking_key.as_ref(),
                &bundles,
                &cert,
                &mut rand::rng(),
            )?;
            let Some(outgoing) = outgoing else {
                return Ok(false);
            };
            let path = outgoing.path();
            let result = if outgoing.is_sealed() {
                self.relay
                    .request_sealed_as::<IgnoredAny, _>(Method::POST, &path, Some(outgoing.body()))
                    .await
            } else {
                self.relay
                    .request_as::<IgnoredAny, _>(Method::POST, &path, Some(outgoing.body()))
                    .await
            };
            match result {
                Ok(_) => {
                    self.save_refresh().await?;
                    return Ok(true);
                }
                Err(RelayError::Refused {
                    status: 409 | 410,
                    mismatches,
                    ..
                }) if attempt < SEND_ATTEMPTS => {
                    let mismatches = mismatches.unwrap_or_default();
                    let repaired = self
                        .local
                        .repair(&mut self.lock(), &peer, &mismatches, false);
                    match repaired {
                        // A device the list we hold does not name: the account may have linked
                        // it since; read its list again, then decide.
                        Err(core_device::DeviceError::NeedDeviceList { .. }) => {
                            self.fetch_device_list(&peer).await?;
                            self.local
                                .repair(&mut self.lock(), &peer, &mismatches, true)?;
                        }
                        other => other?,
                    }
                }
                Err(err) => return Err(err.into()),
            }
        }
        Err(protocol("device list still stale after repair"))
    }

    /// Before a copy to the own account: re-reads the account's device list when the core says
    /// it is due (no other own device known, not read in the last minute).
    async fn refresh_own_devices(&self, account: &[u8; 16]) -> Result<(), DeviceError> {
        let now = now_secs();
        let due = {
            let mut checked = self
                .own_checked
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let due = self
                .local
                .own_devices_due(&self.lock(), account, *checked, now)?;
            if due {
                *checked = Some(now);
            }
            due
        };
        if due {
            let trust = self.local.account_trust(&self.lock(), account)?;
            if matches!(trust, AccountTrust::Listed { .. }) {
                self.fetch_device_list(account).await?;
            } else {
                let list: DeviceList = self
                    .relay
                    .request_as::<_, ()>(Method::GET, "/v1/devices", None)
                    .await?;
                self.local.set_own_devices(&self.lock(), &list)?;
            }
        }
        Ok(())
    }

    // ------------------------------------------------------------ who is who (§15)

    /// Takes what the user should hear about accounts' device lists since the last call.
    pub fn take_notices(&self) -> Vec<DirectoryNotice> {
        std::mem::take(
            &mut *self
                .list_updates
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    fn notice(&self, notice: Option<DirectoryNotice>) {
        if let Some(notice) = notice {
            self.list_updates
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(notice);
        }
    }

    /// Reads `account`'s signed device list from the relay and accepts it (§15.2): pins the
    /// account key on first contact, refuses a changed key, a rollback or a fork. For this
    /// device's own account with no list published yet (an account from before lists), this
    /// device publishes the first one. What the user should hear of is kept for
    /// [`Device::take_notices`].
    ///
    /// # Errors
    /// [`DeviceError::AccountKeyChanged`], [`DeviceError::DeviceList`], relay and store errors.
    pub async fn fetch_device_list(&self, account: &[u8; 16]) -> Result<ListUpdate, DeviceError> {
        let path = format!("/v1/accounts/{}/device-list", hex::encode(account));
        let reply = self
            .relay
            .request_as::<DeviceListReply, ()>(Method::GET, &path, None)
            .await;
        let outcome = match reply {
            Ok(reply) => self.local.accept_device_list(
                &mut self.lock(),
                account,
                ListAnswer::List(&reply),
                now_secs(),
            ),
            Err(e) if e.code() == Some("device_list_not_found") => {
                if *account == self.local.account()
                    && self.local.device_list(&self.lock(), account)?.is_none()
                {
                    return self.publish_first_list().await;
                }
                self.local.accept_device_list(
                    &mut self.lock(),
                    account,
                    ListAnswer::NotPublished,
                    now_secs(),
                )
            }
            Err(e) => return Err(e.into()),
        };
        self.notice(DirectoryNotice::of(account, &outcome));
        Ok(outcome?)
    }

    /// [`Device::fetch_device_list`] for a receive: a refusal is reported as a notice (and the
    /// envelope then refused), not as an error that would stop the queue.
    async fn fetch_device_list_reporting(&self, account: &[u8; 16]) -> Result<(), DeviceError> {
        match self.fetch_device_list(account).await {
            Ok(_) | Err(DeviceError::AccountKeyChanged { .. } | DeviceError::DeviceList { .. }) => {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Fetches `account`'s device list when none is known or it is older than
    /// [`core_device::directory::LIST_REFRESH`].
    async fn ensure_device_list(&self, account: &[u8; 16]) -> Result<(), DeviceError> {
        let due = self
            .local
            .device_list_due(&self.lock(), account, now_secs())?;
        if due {
            self.fetch_device_list(account).await?;
        }
        Ok(())
    }

    /// Publishes the first device list of this device's account: version 1 naming this device,
    /// signed by a new account identity key (at registration, or to upgrade an account from
    /// before device lists; its other devices are then linked again by approval).
    async fn publish_first_list(&self) -> Result<ListUpdate, DeviceError> {
        let list = self
            .local
            .first_own_list(&self.lock(), now_secs(), &mut rand::rng())?;
        self.put_own_list(&list).await
    }

    async fn put_own_list(
        &self,
        list: &haven_sdk::account::DeviceList,
    ) -> Result<ListUpdate, DeviceError> {
        self.relay
            .request_as::<IgnoredAny, _>(
                Method::PUT,
                "/v1/account/device-list",
                Some(&LocalDevice::device_list_upload(list)),
            )
            .await?;
        let update = self
            .local
            .own_list_published(&mut self.lock(), list, now_secs())?;
        self.save_refresh().await?;
        Ok(update)
    }

    /// How this device knows `account`'s devices (signed list, unverified, key change
    /// pending).
    ///
    /// # Errors
    /// Store errors.
    pub fn account_trust(&self, account: &[u8; 16]) -> Result<AccountTrust, DeviceError> {
        Ok(self.local.account_trust(&self.lock(), account)?)
    }

    /// The per-account safety number with `account` (§15.4: 60 digits, stable while devices
    /// come and go), once its list is known.
    ///
    /// # Errors
    /// Store errors.
    pub fn account_safety_number(&self, account: &[u8; 16]) -> Result<Option<String>, DeviceError> {
        Ok(self.local.account_safety_number(&self.lock(), account)?)
    }

    /// Accepts `account`'s new identity key after [`DeviceError::AccountKeyChanged`] (once the
    /// user compared the new safety number): its sessions start over.
    ///
    /// # Errors
    /// [`DeviceError::InvalidArgument`] when no change is pending; store errors.
    pub fn accept_account_key(&self, account: &[u8; 16]) -> Result<ListUpdate, DeviceError> {
        Ok(self
            .local
            .accept_account_key(&mut self.lock(), account, now_secs())?)
    }

    /// Marks `account` as verified (the user compared the account safety number): its
    /// devices now are confirmed, and any later device blocks sends until
    /// [`Device::confirm_devices`].
    ///
    /// # Errors
    /// [`DeviceError::Protocol`] (need device list) before its list is known; store errors.
    pub fn mark_verified(&self, account: &[u8; 16]) -> Result<(), DeviceError> {
        Ok(self.local.mark_verified(&self.lock(), account)?)
    }

    /// Forgets that `account` was verified.
    ///
    /// # Errors
    /// Store errors.
    pub fn clear_verified(&self, account: &[u8; 16]) -> Result<(), DeviceError> {
        Ok(self.local.clear_verified(&self.lock(), account)?)
    }

    /// Confirms a verified account's new devices (after [`DeviceError::UnconfirmedDevices`]).
    ///
    /// # Errors
    /// [`DeviceError::InvalidArgument`] for an account that is not verified; store errors.
    pub fn confirm_devices(&self, account: &[u8; 16]) -> Result<(), DeviceError> {
        Ok(self.local.confirm_devices(&self.lock(), account)?)
    }

    /// Whether `account` is verified, and which of its devices wait for confirmation.
    ///
    /// # Errors
    /// Store errors.
    pub fn verification(
        &self,
        account: &[u8; 16],
    ) -> Result<core_device::Verification, DeviceError> {
        Ok(self.local.verification(&self.lock(), account)?)
    }

    /// Approves the new device showing `code` (`haven-link:…`): it receives, end to end, a
    /// link token, the account identity key and the access key, joins, and adds itself to the
    /// account's signed device list.
    ///
    /// # Errors
    /// [`DeviceError::InvalidArgument`] for a bad code, [`DeviceError::NoAccountKey`], relay
    /// errors (`provisioning_not_found` for an expired box).
    pub async fn approve_link(&self, code: &str) -> Result<(), DeviceError> {
        self.ensure_device_list(&self.local.account()).await?;
        let token: LinkTokenReply = self
            .relay
            .request_as::<_, ()>(Method::POST, "/v1/devices/link-token", None)
            .await?;
        let (path, body) = self
            .local
            .approve_link(&self.lock(), code, &token, &mut rand::rng())?;
        self.relay
            .request_as::<IgnoredAny, _>(Method::PUT, &path, Some(&body))
            .await?;
        self.save_refresh().await
    }

    /// Unlinks one of this account's other devices: a new signed list without it (so no
    /// contact encrypts to it or accepts its messages any more), then the relay forgets it
    /// (which needs `fresh`, a proof of the password from [`RelayClient::reauthenticate`]).
    ///
    /// # Errors
    /// [`DeviceError::InvalidArgument`] for this device or one not in the list,
    /// [`DeviceError::NoAccountKey`], relay and store errors.
    pub async fn unlink_device(
        &self,
        device_number: u32,
        fresh: crate::relay::FreshAuth,
    ) -> Result<(), DeviceError> {
        if device_number == self.local.device_number() {
            return Err(DeviceError::InvalidArgument(
                "this device cannot unlink itself".into(),
            ));
        }
        let own = self.local.account();
        self.fetch_device_list(&own).await?;
        let listed = self
            .local
            .device_list(&self.lock(), &own)?
            .is_some_and(|l| l.device(device_number).is_some());
        if listed {
            let list = self
                .local
                .sign_own_list(&self.lock(), &[], &[device_number], now_secs())?;
            self.put_own_list(&list).await?;
        }
        let devices: DeviceList = self
            .relay
            .request_as::<_, ()>(Method::GET, "/v1/devices", None)
            .await?;
        let Some(device) = devices
            .devices
            .iter()
            .find(|d| d.device_number == device_number)
        else {
            return if listed {
                Ok(())
            } else {
                Err(DeviceError::InvalidArgument(format!(
                    "no device {device_number} in this account"
                )))
            };
        };
        self.relay
            .unlink_device(fresh, &device.device_id.to_hex())
            .await?;
        self.save_refresh().await
    }

    /// This device's account id (raw bytes).
    #[must_use]
    pub fn account_bytes(&self) -> [u8; 16] {
        self.local.account()
    }

    /// This device's number within its account.
    #[must_use]
    pub fn device_number(&self) -> u32 {
        self.local.device_number()
    }

    /// Stores the account's access key locally only (a linked device learning it from another
    /// own device, end to end), in `store` (the caller holds the device's store).
    pub(crate) fn put_own_access_key(
        store: &ClientStore,
        key: &[u8; 16],
    ) -> Result<(), DeviceError> {
        Ok(state::set_own_access_key(store, key)?)
    }

    /// Stores a contact's access key in `store` (the caller holds the device's store).
    pub(crate) fn put_contact_access_key(
        store: &ClientStore,
        account: &str,
        key: &[u8; 16],
    ) -> Result<(), DeviceError> {
        Ok(state::set_contact_access_key(
            store,
            &parse_account(account)?,
            key,
        )?)
    }

    /// Whether a contact's access key is known (sends to it are sealed).
    ///
    /// # Errors
    /// Store errors.
    pub fn has_contact_access_key(&self, account: &str) -> Result<bool, DeviceError> {
        Ok(contact_access_key(&self.lock(), &parse_account(account)?)?.is_some())
    }

    /// One page of the queue after `after` (REST fallback of the WebSocket).
    pub(crate) async fn fetch_page(&self, after: i64) -> Result<FetchResponse, DeviceError> {
        Ok(self
            .relay
            .request_as::<_, ()>(
                Method::GET,
                &format!("/v1/messages?after={after}&limit={FETCH_PAGE}"),
                None,
            )
            .await?)
    }

    /// Acks (deletes) envelopes of this device's queue over REST.
    pub(crate) async fn ack(&self, ids: &[Id]) -> Result<(), DeviceError> {
        if ids.is_empty() {
            return Ok(());
        }
        let body = AckBody {
            message_ids: Some(ids.to_vec()),
            up_to_seq: None,
        };
        self.relay
            .request_as::<IgnoredAny, _>(Method::POST, "/v1/messages/ack", Some(&body))
            .await?;
        self.save_refresh().await
    }

    /// The identity key of one of `account`'s devices as this device trusts it, if known.
    ///
    /// # Errors
    /// Store errors.
    pub fn peer_identity(
        &self,
        account: &[u8; 16],
        device: u32,
    ) -> Result<Option<IdentityKey>, DeviceError> {
        Ok(self
            .local
            .peer_identity(&self.lock(), &DeviceAddress::new(*account, device))?)
    }

    /// This device's public identity key.
    ///
    /// # Errors
    /// Store errors.
    pub fn identity_key(&self) -> Result<IdentityKey, DeviceError> {
        Ok(*self.lock().identity_key_pair()?.public())
    }

    /// The device numbers of `account` this device currently sends to.
    ///
    /// # Errors
    /// Store errors.
    pub fn contact_devices(&self, account: &str) -> Result<Vec<u32>, DeviceError> {
        Ok(state::contact_devices(
            &self.lock(),
            &parse_account(account)?,
        )?)
    }

    /// Fetches and processes every queued envelope; returns what was found, in queue order.
    ///
    /// # Errors
    /// Relay and store errors (a failing envelope is a [`Received::Rejected`], not an error).
    pub async fn receive(&self) -> Result<Vec<Received>, DeviceError> {
        let mut out = Vec::new();
        let mut after = 0i64;
        loop {
            let page = self.fetch_page(after).await?;
            let mut acks = Vec::new();
            for q in &page.envelopes {
                after = after.max(q.seq);
                let mut received =
                    self.local
                        .receive(&mut self.lock(), q, false, now_secs(), &mut rand::rng())?;
                if let Some(Received::NeedDeviceList { account }) = received {
                    self.fetch_device_list_reporting(&account).await?;
                    received = self.local.receive(
                        &mut self.lock(),
                        q,
                        true,
                        now_secs(),
                        &mut rand::rng(),
                    )?;
                }
                out.extend(received);
                acks.push(q.message_id);
            }
            self.ack(&acks).await?;
            if !page.more || page.envelopes.is_empty() {
                break;
            }
        }
        self.save_refresh().await?;
        Ok(out)
    }

    /// Opens one sealed envelope: sealed-sender layer (certificate checked against the relay's
    /// key), identity check, Double Ratchet decryption and unpadding; then runs `apply` on the
    /// plaintext **inside the same store transaction** that saves the session and (when
    /// `mark_seen`) the message id. A failed check writes nothing and is returned as
    /// [`Opened::Rejected`]; an error of `apply` rolls everything back and is returned.
    /// `delivered` is the franking the relay delivered with the envelope (§16.5): the content
    /// must open it; `apply` gets the content and the report material.
    pub(crate) fn open_envelope<T>(
        &self,
        message_id: &str,
        content: &[u8],
        delivered: Option<&DeliveredFranking>,
        mark_seen: bool,
        apply: impl FnOnce(
            &mut ClientStore,
            &DeviceAddress,
            &[u8],
            Option<&core_device::ReportMaterial>,
        ) -> Result<T, DeviceError>,
    ) -> Result<Opened<T>, DeviceError> {
        self.local.open_envelope(
            &mut self.lock(),
            message_id,
            content,
            delivered,
            mark_seen,
            now_secs(),
            &mut rand::rng(),
            apply,
        )
    }
}

/// A new device waiting for approval ([`Device::start_link`]).
pub struct PendingLink {
    relay: RelayClient,
    request: LinkRequest,
}

impl std::fmt::Debug for PendingLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingLink").finish_non_exhaustive()
    }
}

/// How often a waiting new device asks the relay whether it was approved.
const LINK_POLL: std::time::Duration = std::time::Duration::from_millis(500);

impl PendingLink {
    /// The code to show the approving device (`haven-link:` and 85 letters and digits).
    #[must_use]
    pub fn code(&self) -> String {
        self.request.code()
    }

    /// Waits (up to `timeout`) for the approval, then joins the account with the granted
    /// link token: a new identity in `store`, keys uploaded, the account key and access key
    /// kept, and a new signed device list naming this device published.
    ///
    /// # Errors
    /// [`DeviceError::Protocol`] when no approval came in time, [`DeviceError::AccountKeyChanged`]
    /// or [`DeviceError::DeviceList`] when the relay serves a list the grant does not match;
    /// relay errors (`invalid_link_token`, `device_limit`, `provisioning_not_found` once the box
    /// expired).
    pub async fn finish(
        self,
        store: ClientStore,
        timeout: std::time::Duration,
    ) -> Result<Device, DeviceError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let path = self.request.box_path();
        let message = loop {
            let reply: Option<ProvisioningMessage> = self
                .relay
                .request_anonymous_as::<_, ()>(Method::GET, &path, None)
                .await?;
            if let Some(message) = reply {
                break message;
            }
            if tokio::time::Instant::now() + LINK_POLL > deadline {
                return Err(protocol("no approval arrived in time"));
            }
            tokio::time::sleep(LINK_POLL).await;
        };
        let grant = self.request.open(&message)?;
        let mut rng = rand::rng();
        let identity = IdentityKeyPair::generate(&mut rng);
        let registration_id = rand::Rng::next_u32(&mut rng) & 0x3FFF;
        let tokens: TokenResponse = self
            .relay
            .request_anonymous_as(
                Method::POST,
                "/v1/devices/link",
                Some(&grant.link_body(identity.public(), None)),
            )
            .await?;
        let session = Session::from_tokens(tokens);
        self.relay.set_session(session.clone()).await;
        store.set_identity(&identity, registration_id)?;
        let device = Device::finish_setup(self.relay, store, session, false).await?;
        grant.install(&device.local, &device.lock())?;
        let own = device.local.account();
        let reply: DeviceListReply = device
            .relay
            .request_as::<_, ()>(
                Method::GET,
                &format!("/v1/accounts/{}/device-list", hex::encode(own)),
                None,
            )
            .await?;
        grant.accept_list(&device.local, &mut device.lock(), &reply, now_secs())?;
        let list = device.local.sign_own_list(
            &device.lock(),
            &[(device.local.device_number(), *identity.public())],
            &[],
            now_secs(),
        )?;
        device.put_own_list(&list).await?;
        Ok(device)
    }
}
