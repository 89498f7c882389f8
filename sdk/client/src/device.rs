//! One device of one account, end to end: its keys on the relay, sealed-sender sends to every
//! device of a contact, and receiving with exactly-once delivery to the application.
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

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::VerifyingKey;
use haven_protocol::api::Id;
use haven_protocol::api::certificate::{CertificateKeyResponse, CertificateResponse};
use haven_protocol::api::devices::DeviceList;
use haven_protocol::api::keys::{
    BundlesResponse, KeyCountsResponse, KeyUploadRequest, OneTimeKeyBody, SignedKeyBody,
};
use haven_protocol::api::messages::{
    AccessKeyBody, AckBody, EnvelopeBody, FetchResponse, QueuedBody, SendBody,
};
use haven_sdk::identity::{IdentityKey, IdentityKeyPair};
use haven_sdk::prekeys::{KemPreKey, KemPreKeyKind, OneTimePreKey, PreKeyBundle, SignedPreKey};
use haven_sdk::sealed_sender::{SenderCertificate, open_sealed, seal_sender};
use haven_sdk::session_cipher;
use haven_sdk::store::{DeviceAddress, IdentityStore, PreKeyStore, SessionStore};
use haven_sdk::{pad, unpad};
use reqwest::Method;
use serde::de::IgnoredAny;
use zeroize::Zeroizing;

use crate::relay::{LoginDevice, LoginIdentifier, RelayClient, RelayError, Session};
use crate::store::{ClientStore, ClientStoreError, Space};

/// Space of the device's own settings (account ids, refresh token, key counters, access key).
const META: Space = Space::app(0xF0);
/// Space of the known device numbers of each contact account.
const CONTACT_DEVICES: Space = Space::app(0xF1);
/// Space of received message ids (dedup).
const SEEN: Space = Space::app(0xF2);
/// Space of received messages (message id → sender and plaintext).
const INBOX: Space = Space::app(0xF3);

/// One-time prekeys of each kind uploaded at registration and per top-up.
pub const PREKEY_BATCH: u32 = 50;
/// Sealed-sender content type of a Double Ratchet message carried inside an envelope.
pub const CONTENT_SESSION: u8 = 0x01;
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

/// What [`Device::receive`] found in one envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    /// A new message, durably stored before the relay was told to delete it.
    Message {
        /// The relay's message id (hex), unique per send.
        message_id: String,
        /// The sending device (from its relay-signed certificate).
        sender: DeviceAddress,
        /// The plaintext.
        plaintext: Vec<u8>,
    },
    /// An envelope that could not be opened; acked and dropped, nothing else changed.
    Rejected {
        /// The relay's message id (hex).
        message_id: String,
        /// Why.
        reason: RejectReason,
    },
}

/// Why an envelope was refused. Nothing about the session changed when one is reported.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RejectReason {
    /// Not decodable at all (bad base64, bad padding, unknown content type).
    #[error("malformed envelope: {0}")]
    Malformed(String),
    /// The sender certificate is expired, signed by a key other than this relay's, or does
    /// not match the sealing identity.
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
    /// The ratchet or handshake refused it for another reason (authentication failure,
    /// unknown prekey, too far ahead).
    #[error("session: {0}")]
    Session(String),
}

impl RejectReason {
    fn from_sealed(e: &haven_sdk::sealed_sender::SealedSenderError) -> Self {
        use haven_sdk::sealed_sender::SealedSenderError as E;
        match e {
            E::DecryptionFailed => Self::Tampered,
            E::BadCertificateSignature | E::CertificateExpired { .. } | E::IdentityMismatch => {
                Self::Certificate(e.to_string())
            }
            other => Self::Malformed(other.to_string()),
        }
    }

    fn from_session(e: &session_cipher::SessionError) -> Self {
        use haven_sdk::ratchet::RatchetError;
        use session_cipher::SessionError as E;
        match e {
            E::Ratchet(RatchetError::DuplicateMessage { .. }) => Self::Replayed,
            E::Ratchet(RatchetError::DecryptionFailed) => Self::Tampered,
            E::NoSession => Self::UnknownSession,
            other => Self::Session(other.to_string()),
        }
    }
}

/// Outcome of [`Device::open_envelope`].
#[derive(Debug)]
pub(crate) enum Opened<T> {
    /// Already processed (message id seen).
    Duplicate,
    /// Refused; nothing changed.
    Rejected(RejectReason),
    /// Decrypted and applied.
    Accepted {
        /// The sending device.
        sender: DeviceAddress,
        /// The unpadded plaintext.
        plaintext: Vec<u8>,
        /// What `apply` returned.
        value: T,
    },
}

/// A registered device. Share it behind an `Arc`; calls may run concurrently.
pub struct Device {
    relay: RelayClient,
    store: Mutex<ClientStore>,
    account: [u8; 16],
    account_hex: String,
    device_number: u32,
    relay_key: VerifyingKey,
    /// When the relay's list of own devices was last read because no other own device was
    /// known (self-sync with a single device checks at most once per [`OWN_DEVICES_RECHECK`]).
    own_checked: Mutex<Option<std::time::Instant>>,
}

/// How often a device that knows no other own device re-reads the account's device list.
const OWN_DEVICES_RECHECK: std::time::Duration = std::time::Duration::from_secs(60);

impl std::fmt::Debug for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Device")
            .field("account", &self.account_hex)
            .field("device_number", &self.device_number)
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
    let bytes = hex::decode(hex_id).map_err(|_| protocol("account id is not hex"))?;
    bytes
        .try_into()
        .map_err(|_| protocol("account id is not 16 bytes"))
}

fn random_message_id() -> String {
    let mut id = [0u8; 16];
    rand::Rng::fill_bytes(&mut rand::rng(), &mut id);
    hex::encode(id)
}

/// A signed prekey as the key directory takes it (§11.11).
fn signed_key_body(key_id: u32, public_key: &[u8], signature: &[u8]) -> SignedKeyBody {
    SignedKeyBody {
        key_id,
        public_key: STANDARD.encode(public_key),
        signature: STANDARD.encode(signature),
    }
}

impl Device {
    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, ClientStore> {
        // A poisoned lock means another thread panicked mid-operation; the store's own
        // transactions keep the file consistent, so continuing is safe.
        self.store
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    async fn fetch_relay_key(relay: &RelayClient) -> Result<VerifyingKey, DeviceError> {
        let reply: CertificateKeyResponse = relay
            .request_anonymous_as::<_, ()>(Method::GET, "/v1/certificate/key", None)
            .await?;
        let bytes = STANDARD
            .decode(&reply.public_key)
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .ok_or_else(|| protocol("relay certificate key malformed"))?;
        VerifyingKey::from_bytes(&bytes).map_err(protocol)
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

    /// Stores the session, uploads keys and, for a new account (`first_device`), sets a fresh
    /// access key. A linked device keeps the account's existing key (the other devices share it
    /// with it end to end), so it does not replace the key contacts already hold.
    async fn finish_setup(
        relay: RelayClient,
        store: ClientStore,
        session: Session,
        first_device: bool,
    ) -> Result<Self, DeviceError> {
        let device_number = session
            .device_number
            .ok_or_else(|| protocol("relay did not assign a device number"))?;
        let account = parse_account(&session.account_id)?;
        let relay_key = Self::fetch_relay_key(&relay).await?;
        store.atomically(|s| {
            s.put(META, b"account", session.account_id.as_bytes())?;
            s.put(META, b"device_id", session.device_id.as_bytes())?;
            s.put(META, b"device_number", &device_number.to_be_bytes())?;
            s.put(META, b"refresh", session.refresh_token().as_bytes())?;
            s.put(META, b"relay_key", relay_key.as_bytes())
        })?;
        let device = Self {
            relay,
            store: Mutex::new(store),
            account_hex: session.account_id.clone(),
            account,
            device_number,
            relay_key,
            own_checked: Mutex::new(None),
        };
        device.upload_initial_keys().await?;
        if first_device {
            let mut access = [0u8; 16];
            rand::Rng::fill_bytes(&mut rand::rng(), &mut access);
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
        let get = |k: &[u8]| -> Result<Zeroizing<Vec<u8>>, DeviceError> {
            store.get(META, k)?.ok_or(DeviceError::NotSetUp)
        };
        let text = |b: Zeroizing<Vec<u8>>| String::from_utf8(b.to_vec()).map_err(protocol);
        let account_hex = text(get(b"account")?)?;
        let device_id = text(get(b"device_id")?)?;
        let refresh = Zeroizing::new(text(get(b"refresh")?)?);
        let number = get(b"device_number")?;
        let device_number = u32::from_be_bytes(
            number
                .as_slice()
                .try_into()
                .map_err(|_| protocol("stored device number malformed"))?,
        );
        let key = get(b"relay_key")?;
        let key: [u8; 32] = key
            .as_slice()
            .try_into()
            .map_err(|_| protocol("stored relay key malformed"))?;
        let relay_key = VerifyingKey::from_bytes(&key).map_err(protocol)?;
        relay
            .set_session(Session::restore(
                account_hex.clone(),
                device_id,
                Some(device_number),
                refresh,
            ))
            .await;
        Ok(Self {
            relay,
            store: Mutex::new(store),
            account: parse_account(&account_hex)?,
            account_hex,
            device_number,
            relay_key,
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
            self.lock()
                .put(META, b"refresh", session.refresh_token().as_bytes())?;
        }
        Ok(())
    }

    /// This device's address.
    #[must_use]
    pub fn address(&self) -> DeviceAddress {
        DeviceAddress::new(self.account, self.device_number)
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
        let key = self
            .lock()
            .get(META, b"access_key")?
            .ok_or(DeviceError::NotSetUp)?;
        key.as_slice()
            .try_into()
            .map_err(|_| protocol("stored access key malformed"))
    }

    /// Sets the account's access key on the relay (stored there only as a hash) and locally.
    ///
    /// # Errors
    /// Relay and store errors.
    pub async fn set_access_key(&self, key: [u8; 16]) -> Result<(), DeviceError> {
        let body = AccessKeyBody {
            access_key: Some(STANDARD.encode(key)),
        };
        self.relay
            .request_as::<IgnoredAny, _>(Method::PUT, "/v1/account/access-key", Some(&body))
            .await?;
        self.lock().put(META, b"access_key", &key)?;
        self.save_refresh().await
    }

    /// Remembers a contact's access key (learned end to end) so sends to it are sealed.
    ///
    /// # Errors
    /// Store errors.
    pub fn set_contact_access_key(&self, account: &str, key: [u8; 16]) -> Result<(), DeviceError> {
        let mut k = b"ak:".to_vec();
        k.extend_from_slice(account.as_bytes());
        Ok(self.lock().put(META, &k, &key)?)
    }

    fn contact_access_key(&self, account: &str) -> Result<Option<[u8; 16]>, DeviceError> {
        let mut k = b"ak:".to_vec();
        k.extend_from_slice(account.as_bytes());
        Ok(self
            .lock()
            .get(META, &k)?
            .and_then(|v| <[u8; 16]>::try_from(v.as_slice()).ok()))
    }

    fn next_id(&self, name: &[u8], count: u32) -> Result<u32, DeviceError> {
        let store = self.lock();
        let next = store
            .get(META, name)?
            .and_then(|v| <[u8; 4]>::try_from(v.as_slice()).ok())
            .map_or(1, u32::from_be_bytes);
        store.put(META, name, &next.wrapping_add(count).to_be_bytes())?;
        Ok(next)
    }

    fn one_time_batch(&self) -> Result<(Vec<OneTimeKeyBody>, Vec<SignedKeyBody>), DeviceError> {
        let mut rng = rand::rng();
        let first = self.next_id(b"next_otpk", PREKEY_BATCH)?;
        let first_kem = self.next_id(b"next_kem", PREKEY_BATCH)?;
        let mut store = self.lock();
        let identity = store.identity_key_pair()?;
        let now = now_secs();
        let mut otpks = Vec::new();
        let mut kems = Vec::new();
        for i in 0..PREKEY_BATCH {
            let k = OneTimePreKey::generate(first.wrapping_add(i), &mut rng);
            otpks.push(OneTimeKeyBody {
                key_id: k.id(),
                public_key: STANDARD.encode(k.public().as_bytes()),
            });
            store.save_one_time_prekey(k)?;
            let q = KemPreKey::generate(
                &identity,
                first_kem.wrapping_add(i),
                KemPreKeyKind::OneTime,
                now,
                &mut rng,
            );
            kems.push(signed_key_body(q.id(), q.public(), q.signature()));
            store.save_kem_prekey(q)?;
        }
        Ok((otpks, kems))
    }

    async fn upload_initial_keys(&self) -> Result<(), DeviceError> {
        let (otpks, kems) = self.one_time_batch()?;
        let spk_id = self.next_id(b"next_spk", 1)?;
        // Last-resort KEM keys use ids from the top half so they never collide with one-time ids.
        let last_resort_id = 0x8000_0000 | self.next_id(b"next_lr", 1)?;
        let body = {
            let mut rng = rand::rng();
            let mut store = self.lock();
            let identity = store.identity_key_pair()?;
            let registration_id = store.local_registration_id()?;
            let now = now_secs();
            let spk = SignedPreKey::generate(&identity, spk_id, now, &mut rng);
            let lr = KemPreKey::generate(
                &identity,
                last_resort_id,
                KemPreKeyKind::LastResort,
                now,
                &mut rng,
            );
            let body = KeyUploadRequest {
                registration_id: Some(registration_id),
                signed_prekey: Some(signed_key_body(
                    spk.id(),
                    spk.public().as_bytes(),
                    spk.signature(),
                )),
                last_resort_kem_prekey: Some(signed_key_body(lr.id(), lr.public(), lr.signature())),
                one_time_prekeys: otpks,
                one_time_kem_prekeys: kems,
            };
            store.save_signed_prekey(spk)?;
            store.save_kem_prekey(lr)?;
            let mut k = b"lr_for_spk:".to_vec();
            k.extend_from_slice(&spk_id.to_be_bytes());
            store.put(META, &k, &last_resort_id.to_be_bytes())?;
            body
        };
        self.relay
            .request_as::<IgnoredAny, _>(Method::PUT, "/v1/keys", Some(&body))
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
        if !counts.low {
            return Ok(false);
        }
        let (otpks, kems) = self.one_time_batch()?;
        let body = KeyUploadRequest {
            one_time_prekeys: otpks,
            one_time_kem_prekeys: kems,
            ..KeyUploadRequest::default()
        };
        self.relay
            .request_as::<IgnoredAny, _>(Method::PUT, "/v1/keys", Some(&body))
            .await?;
        self.save_refresh().await?;
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
        let now = now_secs();
        let plan = {
            let store = self.lock();
            policy.plan(&store.signed_prekey_ages()?, now)
        };
        if plan.generate_new {
            let spk_id = self.next_id(b"next_spk", 1)?;
            let last_resort_id = 0x8000_0000 | self.next_id(b"next_lr", 1)?;
            let (spk, lr) = {
                let mut rng = rand::rng();
                let store = self.lock();
                let identity = store.identity_key_pair()?;
                (
                    SignedPreKey::generate(&identity, spk_id, now, &mut rng),
                    KemPreKey::generate(
                        &identity,
                        last_resort_id,
                        KemPreKeyKind::LastResort,
                        now,
                        &mut rng,
                    ),
                )
            };
            let body = KeyUploadRequest {
                signed_prekey: Some(signed_key_body(
                    spk.id(),
                    spk.public().as_bytes(),
                    spk.signature(),
                )),
                last_resort_kem_prekey: Some(signed_key_body(lr.id(), lr.public(), lr.signature())),
                ..KeyUploadRequest::default()
            };
            // Stored before the upload: a bundle naming them may be handed out the moment the
            // relay has them.
            {
                let mut store = self.lock();
                store.atomically_mut(|s| -> Result<(), DeviceError> {
                    s.save_signed_prekey(spk)?;
                    s.save_kem_prekey(lr)?;
                    let mut k = b"lr_for_spk:".to_vec();
                    k.extend_from_slice(&spk_id.to_be_bytes());
                    s.put(META, &k, &last_resort_id.to_be_bytes())?;
                    Ok(())
                })?;
            }
            self.relay
                .request_as::<IgnoredAny, _>(Method::PUT, "/v1/keys", Some(&body))
                .await?;
            self.save_refresh().await?;
        }
        if !plan.delete.is_empty() {
            let mut store = self.lock();
            store.atomically_mut(|s| -> Result<(), DeviceError> {
                for id in &plan.delete {
                    s.remove_signed_prekey(*id)?;
                    let mut k = b"lr_for_spk:".to_vec();
                    k.extend_from_slice(&id.to_be_bytes());
                    if let Some(lr) = s.get(META, &k)?
                        && let Ok(lr) = <[u8; 4]>::try_from(lr.as_slice())
                    {
                        s.remove_kem_prekey(u32::from_be_bytes(lr))?;
                        s.delete(META, &k)?;
                    }
                }
                Ok(())
            })?;
        }
        Ok(plan.generate_new)
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
        let mut store = self.lock();
        store.save_identity(address, key)?;
        store.store_session(address, &haven_sdk::SessionRecord::default())?;
        Ok(())
    }

    fn known_devices(&self, account: &str) -> Result<Vec<u32>, DeviceError> {
        Ok(self
            .lock()
            .get(CONTACT_DEVICES, account.as_bytes())?
            .map(|v| {
                v.chunks_exact(4)
                    .filter_map(|c| <[u8; 4]>::try_from(c).ok().map(u32::from_be_bytes))
                    .collect()
            })
            .unwrap_or_default())
    }

    fn save_devices(&self, account: &str, devices: &[u32]) -> Result<(), DeviceError> {
        let bytes: Vec<u8> = devices.iter().flat_map(|d| d.to_be_bytes()).collect();
        Ok(self
            .lock()
            .put(CONTACT_DEVICES, account.as_bytes(), &bytes)?)
    }

    async fn claim_bundles(
        &self,
        account: &str,
        device: Option<u32>,
    ) -> Result<Vec<PreKeyBundle>, DeviceError> {
        let path = match device {
            Some(n) => format!("/v1/keys/{account}/{n}"),
            None => format!("/v1/keys/{account}"),
        };
        let reply: BundlesResponse = self
            .relay
            .request_as::<_, ()>(Method::GET, &path, None)
            .await?;
        let mut out = Vec::new();
        for b in reply.bundles {
            let bytes = b
                .bundle
                .and_then(|s| STANDARD.decode(s).ok())
                .ok_or_else(|| protocol("bundle missing or not base64"))?;
            let bundle = PreKeyBundle::from_bytes(&bytes).map_err(protocol)?;
            if bundle.device_id != b.device_number {
                return Err(protocol("bundle device number mismatch"));
            }
            bundle.verify().map_err(protocol)?;
            out.push(bundle);
        }
        Ok(out)
    }

    async fn certificate(&self) -> Result<SenderCertificate, DeviceError> {
        let cached = self.lock().get(META, b"certificate")?;
        if let Some(bytes) = cached
            && let Ok(cert) = SenderCertificate::from_bytes(&bytes)
            && cert.expires > now_secs() + 300
        {
            return Ok(cert);
        }
        let reply: CertificateResponse = self
            .relay
            .request_as::<_, ()>(Method::POST, "/v1/certificate", None)
            .await?;
        let bytes = STANDARD
            .decode(&reply.certificate)
            .map_err(|_| protocol("certificate malformed"))?;
        let cert = SenderCertificate::from_bytes(&bytes).map_err(protocol)?;
        cert.validate(&self.relay_key, now_secs())
            .map_err(protocol)?;
        self.lock().put(META, b"certificate", &bytes)?;
        Ok(cert)
    }

    /// Encrypts `padded` for one device: with the session if there is one, else from a bundle.
    fn encrypt_for(
        &self,
        peer: &DeviceAddress,
        bundle: Option<&PreKeyBundle>,
        padded: &[u8],
        cert: &SenderCertificate,
    ) -> Result<Vec<u8>, DeviceError> {
        let mut rng = rand::rng();
        let mut store = self.lock();
        let has_session = store
            .load_session(peer)?
            .is_some_and(|r| r.current().is_some());
        let message = match (has_session, bundle) {
            (true, _) => session_cipher::encrypt(&mut *store, peer, padded).map_err(protocol)?,
            (false, Some(b)) => {
                if !store.is_trusted(peer, &b.identity_key)? {
                    return Err(DeviceError::IdentityChanged {
                        account: hex::encode(peer.account_id),
                        device: peer.device_id,
                    });
                }
                session_cipher::initiate(&mut *store, peer, b, padded, &mut rng)
                    .map_err(protocol)?
            }
            (false, None) => return Err(protocol("no session and no bundle")),
        };
        let recipient = store
            .peer_identity(peer)?
            .ok_or_else(|| protocol("no identity for peer"))?;
        let identity = store.identity_key_pair()?;
        seal_sender(
            &identity,
            cert,
            &recipient,
            CONTENT_SESSION,
            &message,
            &mut rng,
        )
        .map_err(protocol)
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
        let padded = pad(plaintext).map_err(protocol)?;
        let cert = self.certificate().await?;
        let peer_account = parse_account(account)?;
        let own = peer_account == self.account;
        let mut devices = self.known_devices(account)?;
        let mut bundles: Vec<PreKeyBundle> = Vec::new();
        if own && !devices.iter().any(|&d| d != self.device_number) {
            let due = {
                let mut checked = self
                    .own_checked
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                let due = checked.is_none_or(|t| t.elapsed() >= OWN_DEVICES_RECHECK);
                if due {
                    *checked = Some(std::time::Instant::now());
                }
                due
            };
            if due {
                devices = self.own_devices().await?;
                self.save_devices(account, &devices)?;
            }
        }
        if devices.is_empty() {
            bundles = self.claim_bundles(account, None).await?;
            devices = bundles.iter().map(|b| b.device_id).collect();
        }
        if own && !devices.iter().any(|&d| d != self.device_number) {
            return Ok(false);
        }
        for attempt in 0..2 {
            let mut envelopes = Vec::new();
            for &d in &devices {
                if peer_account == self.account && d == self.device_number {
                    continue;
                }
                let peer = DeviceAddress::new(peer_account, d);
                let has_session = self
                    .lock()
                    .load_session(&peer)?
                    .is_some_and(|r| r.current().is_some());
                let needs_bundle = !has_session;
                if needs_bundle && !bundles.iter().any(|b| b.device_id == d) {
                    bundles.extend(self.claim_bundles(account, Some(d)).await?);
                }
                let bundle = bundles.iter().find(|b| b.device_id == d);
                let sealed = self.encrypt_for(&peer, bundle, &padded, &cert)?;
                envelopes.push(EnvelopeBody {
                    device_number: d,
                    content: STANDARD.encode(sealed),
                });
            }
            let access_key = self.contact_access_key(account)?;
            let body = SendBody {
                message_id,
                envelopes,
                ephemeral,
                access_key: access_key.map(|key| STANDARD.encode(key)),
            };
            let result = match access_key {
                Some(_) => {
                    self.relay
                        .request_anonymous_as::<IgnoredAny, _>(
                            Method::POST,
                            &format!("/v1/messages/{account}/sealed"),
                            Some(&body),
                        )
                        .await
                }
                None => {
                    self.relay
                        .request_as::<IgnoredAny, _>(
                            Method::POST,
                            &format!("/v1/messages/{account}"),
                            Some(&body),
                        )
                        .await
                }
            };
            match result {
                Ok(_) => {
                    self.save_devices(account, &devices)?;
                    self.save_refresh().await?;
                    return Ok(true);
                }
                Err(err) if attempt == 0 && matches!(err.status(), Some(409 | 410)) => {
                    devices = self.repair_devices(account, &devices, &err)?;
                    // Sessions with removed devices are useless; new ones need bundles.
                    bundles.clear();
                }
                Err(err) => return Err(err.into()),
            }
        }
        Err(protocol("device list still stale after repair"))
    }

    /// The numbers of this account's devices, from the relay's device list.
    async fn own_devices(&self) -> Result<Vec<u32>, DeviceError> {
        let list: DeviceList = self
            .relay
            .request_as::<_, ()>(Method::GET, "/v1/devices", None)
            .await?;
        let mut numbers: Vec<u32> = list.devices.iter().map(|d| d.device_number).collect();
        numbers.sort_unstable();
        Ok(numbers)
    }

    /// Applies the relay's 409/410 `mismatches` (`missing_devices`, `extra_devices`,
    /// `removed_devices`) to the known device list of `account`.
    fn repair_devices(
        &self,
        account: &str,
        current: &[u32],
        err: &RelayError,
    ) -> Result<Vec<u32>, DeviceError> {
        let mismatches = match err {
            RelayError::Refused {
                mismatches: Some(m),
                ..
            } => m,
            _ => return Err(protocol("device mismatch without details")),
        };
        let mismatch = mismatches.iter().find(|m| m.account_id.to_hex() == account);
        let remove: Vec<u32> = mismatch
            .map(|m| [m.extra_devices.as_slice(), m.removed_devices.as_slice()].concat())
            .unwrap_or_default();
        let missing = mismatch
            .map(|m| m.missing_devices.as_slice())
            .unwrap_or_default();
        let mut devices: Vec<u32> = current
            .iter()
            .copied()
            .filter(|d| !remove.contains(d))
            .collect();
        for &d in missing {
            if !devices.contains(&d) {
                devices.push(d);
            }
        }
        let peer_account = parse_account(account)?;
        let store = self.lock();
        for d in remove {
            // Forget sessions with devices that are gone.
            store.delete(
                Space::SESSION,
                &crate::store::address_key(&DeviceAddress::new(peer_account, d)),
            )?;
        }
        devices.sort_unstable();
        Ok(devices)
    }

    /// This device's account id (raw bytes).
    #[must_use]
    pub fn account_bytes(&self) -> [u8; 16] {
        self.account
    }

    /// This device's number within its account.
    #[must_use]
    pub fn device_number(&self) -> u32 {
        self.device_number
    }

    /// Stores the account's access key locally only (a linked device learning it from another
    /// own device, end to end), in `store` (the caller holds the device's store).
    pub(crate) fn put_own_access_key(
        store: &ClientStore,
        key: &[u8; 16],
    ) -> Result<(), DeviceError> {
        Ok(store.put(META, b"access_key", key)?)
    }

    /// Stores a contact's access key in `store` (the caller holds the device's store).
    pub(crate) fn put_contact_access_key(
        store: &ClientStore,
        account: &str,
        key: &[u8; 16],
    ) -> Result<(), DeviceError> {
        let mut k = b"ak:".to_vec();
        k.extend_from_slice(account.as_bytes());
        Ok(store.put(META, &k, key)?)
    }

    /// Whether a contact's access key is known (sends to it are sealed).
    ///
    /// # Errors
    /// Store errors.
    pub fn has_contact_access_key(&self, account: &str) -> Result<bool, DeviceError> {
        Ok(self.contact_access_key(account)?.is_some())
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
            .lock()
            .peer_identity(&DeviceAddress::new(*account, device))?)
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
        self.known_devices(account)
    }

    /// Fetches and processes every queued envelope; returns what was found, in queue order.
    ///
    /// # Errors
    /// Relay and store errors (a failing envelope is a [`Received::Rejected`], not an error).
    pub async fn receive(&self) -> Result<Vec<Received>, DeviceError> {
        let mut out = Vec::new();
        let mut after = 0i64;
        loop {
            let page: FetchResponse = self
                .relay
                .request_as::<_, ()>(
                    Method::GET,
                    &format!("/v1/messages?after={after}&limit={FETCH_PAGE}"),
                    None,
                )
                .await?;
            let mut acks = Vec::new();
            for q in &page.envelopes {
                after = after.max(q.seq);
                if let Some(r) = self.process(q)? {
                    out.push(r);
                }
                acks.push(q.message_id);
            }
            if !acks.is_empty() {
                let body = AckBody {
                    message_ids: Some(acks),
                    up_to_seq: None,
                };
                self.relay
                    .request_as::<IgnoredAny, _>(Method::POST, "/v1/messages/ack", Some(&body))
                    .await?;
            }
            if !page.more || page.envelopes.is_empty() {
                break;
            }
        }
        self.save_refresh().await?;
        Ok(out)
    }

    /// Opens one envelope into the INBOX space; `None` for a duplicate already delivered.
    fn process(&self, q: &QueuedBody) -> Result<Option<Received>, DeviceError> {
        let message_id = q.message_id.to_hex();
        let Ok(content) = STANDARD.decode(&q.content) else {
            return Ok(Some(Received::Rejected {
                message_id,
                reason: RejectReason::Malformed("envelope is not base64".into()),
            }));
        };
        let opened = self.open_envelope(&message_id, &content, true, |s, sender, plain| {
            let mut record = Vec::with_capacity(20 + plain.len());
            record.extend_from_slice(&sender.account_id);
            record.extend_from_slice(&sender.device_id.to_be_bytes());
            record.extend_from_slice(plain);
            s.put(INBOX, message_id.as_bytes(), &record)?;
            Ok(())
        })?;
        Ok(match opened {
            Opened::Duplicate => None,
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
        let mut store = self.lock();
        if mark_seen && store.get(SEEN, message_id.as_bytes())?.is_some() {
            return Ok(Opened::Duplicate);
        }
        let identity = store.identity_key_pair()?;
        let opened = match open_sealed(&identity, &self.relay_key, content, now_secs()) {
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
        // The identity in the relay-signed certificate must be the one the session uses.
        if let Some(known) = store.peer_identity(&sender)?
            && known != opened.certificate.identity_key
        {
            return Ok(Opened::Rejected(RejectReason::IdentityChanged {
                account: hex::encode(sender.account_id),
                device: sender.device_id,
            }));
        }
        let mut rng = rand::rng();
        // Session update, the application's writes and the seen-marker commit together; a
        // failed decrypt writes nothing (the SDK only replaces session state after
        // authentication).
        store.atomically_mut(|s| -> Result<Opened<T>, DeviceError> {
            let plaintext = match session_cipher::decrypt(s, &sender, &opened.content, &mut rng) {
                Ok(p) => p,
                Err(e) => return Ok(Opened::Rejected(RejectReason::from_session(&e))),
            };
            let Ok(unpadded) = unpad(&plaintext) else {
                return Ok(Opened::Rejected(RejectReason::Malformed(
                    "bad padding".into(),
                )));
            };
            let value = apply(s, &sender, unpadded)?;
            if mark_seen {
                s.put(SEEN, message_id.as_bytes(), &[1])?;
            }
            Ok(Opened::Accepted {
                sender,
                plaintext: unpadded.to_vec(),
                value,
            })
        })
    }
}
