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
    self as core_device, LocalDevice, PaddedPlaintext, SEND_ATTEMPTS, keys,
};
use haven_protocol::api::Id;
use haven_protocol::api::certificate::{CertificateKeyResponse, CertificateResponse};
use haven_protocol::api::devices::DeviceList;
use haven_protocol::api::keys::{BundlesResponse, KeyCountsResponse};
use haven_protocol::api::messages::{AckBody, FetchResponse};
use haven_sdk::identity::{IdentityKey, IdentityKeyPair};
use haven_sdk::sealed_sender::SenderCertificate;
use haven_sdk::store::{DeviceAddress, IdentityStore};
use reqwest::Method;
use serde::de::IgnoredAny;

/// Outcome of [`Device::open_envelope`]: the core's.
pub(crate) use haven_client_core::device::Opened;
pub use haven_client_core::device::{CONTENT_SESSION, PREKEY_BATCH, Received, RejectReason};

use crate::relay::{LoginDevice, LoginIdentifier, RelayClient, RelayError, Session};
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
        Self::finish_setup(relay, store, session, true).await
    }

    /// Adds this device to an existing account (OPAQUE login as a new device).
    ///
    /// # Errors
    /// As [`Device::register`], plus `invalid_credentials`.
    pub async fn link(
        relay: RelayClient,
        store: ClientStore,
        identifier: LoginIdentifier<'_>,
        password: &[u8],
    ) -> Result<Self, DeviceError> {
        let mut rng = rand::rng();
        let identity = IdentityKeyPair::generate(&mut rng);
        let registration_id = rand::Rng::next_u32(&mut rng) & 0x3FFF;
        let key = identity.public().to_bytes();
        let session = relay
            .login(
                identifier,
                password,
                LoginDevice::New {
                    identity_key: &key,
                    name: None,
                },
                None,
            )
            .await?;
        store.set_identity(&identity, registration_id)?;
        Self::finish_setup(relay, store, session, false).await
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
        let padded = PaddedPlaintext::new(plaintext)?;
        let cert = self.certificate().await?;
        let peer = parse_account(account)?;
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
                &padded,
                message_id,
                ephemeral,
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
                    .request_anonymous_as::<IgnoredAny, _>(
                        Method::POST,
                        &path,
                        Some(outgoing.body()),
                    )
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
                    self.local.repair(&mut self.lock(), &peer, &mismatches)?;
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
            let list: DeviceList = self
                .relay
                .request_as::<_, ()>(Method::GET, "/v1/devices", None)
                .await?;
            self.local.set_own_devices(&self.lock(), &list)?;
        }
        Ok(())
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
                let received =
                    self.local
                        .receive(&mut self.lock(), q, now_secs(), &mut rand::rng())?;
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
    pub(crate) fn open_envelope<T>(
        &self,
        message_id: &str,
        content: &[u8],
        mark_seen: bool,
        apply: impl FnOnce(&mut ClientStore, &DeviceAddress, &[u8]) -> Result<T, DeviceError>,
    ) -> Result<Opened<T>, DeviceError> {
        self.local.open_envelope(
            &mut self.lock(),
            message_id,
            content,
            mark_seen,
            now_secs(),
            &mut rand::rng(),
            apply,
        )
    }
}
