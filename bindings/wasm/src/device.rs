//! One device, sans I/O: everything `haven-client::device` does with keys and bytes, without the
//! HTTP and WebSocket calls, which the page makes (`js/haven.ts`). Each step takes the relay's
//! JSON answer as text and returns the JSON body of the next request, so the JavaScript side
//! never touches a key, a password-derived value or a plaintext it did not type itself.
//!
//! Flows (PROTOCOL §11): registration and login (OPAQUE, §11.5–§11.6), key upload (§11.11),
//! sender certificate (§11.13), logged-in sends of sealed-sender envelopes (§11.12, §5) with
//! messenger content (§13.1), and opening envelopes from the WebSocket or the REST mailbox.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::VerifyingKey;
use haven_protocol::api::Id;
use haven_protocol::api::auth::{
    LoginFinishRequest, LoginStartRequest, LoginStartResponse, NewDeviceBody, RefreshRequest,
    RegisterFinishRequest, RegisterStartRequest, RegisterStartResponse, TokenResponse,
};
use haven_protocol::api::certificate::{CertificateKeyResponse, CertificateResponse};
use haven_protocol::api::error::ErrorBody;
use haven_protocol::api::keys::{BundlesResponse, KeyUploadRequest, OneTimeKeyBody, SignedKeyBody};
use haven_protocol::api::messages::{EnvelopeBody, SendBody};
use haven_protocol::opaque::opaque_ke::{
    ClientLogin, ClientLoginFinishParameters, ClientRegistration,
    ClientRegistrationFinishParameters, CredentialResponse, Identifiers, RegistrationResponse,
};
use haven_protocol::opaque::{HavenCipherSuite, OPAQUE_CONTEXT};
use haven_sdk::identity::IdentityKeyPair;
use haven_sdk::prekeys::{KemPreKey, KemPreKeyKind, OneTimePreKey, PreKeyBundle, SignedPreKey};
use haven_sdk::sealed_sender::{SenderCertificate, open_sealed, seal_sender};
use haven_sdk::session_cipher;
use haven_sdk::store::{DeviceAddress, IdentityStore, PreKeyStore, SessionStore};
use haven_sdk::{pad, unpad};
use serde::Serialize;
use serde::de::DeserializeOwned;
use zeroize::{Zeroize as _, Zeroizing};

use crate::error::{ErrorCode, WebError, WebResult, bad_response, invalid, protocol};
use crate::frames::parse_id;
use crate::store::{MemoryStore, address_key, space};
use haven_protocol::content::{Body, Content, Conversation, ReceiptKind};

/// One-time prekeys of each kind per upload (as the native client).
pub const PREKEY_BATCH: u32 = 50;
/// Sealed-sender content type of a Double Ratchet message (as the native client).
pub const CONTENT_SESSION: u8 = 0x01;
/// A cached sender certificate is renewed when it has less than this left (seconds).
const CERTIFICATE_MARGIN: u64 = 300;
/// Message ids remembered for deduplication (oldest forgotten first), up to
/// [`SEEN_PRUNE_EVERY`] more between prunings.
const MAX_SEEN: usize = 10_000;
/// The seen ids are pruned once per this many messages: finding the oldest means decrypting
/// every row of the space, too much to do for each message.
const SEEN_PRUNE_EVERY: u64 = 500;

fn b64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

/// Reads a relay answer (`haven_protocol::api`), refusing one of another shape.
fn parse_reply<T: DeserializeOwned>(text: &str, what: &str) -> WebResult<T> {
    serde_json::from_str(text).map_err(|_| bad_response(format!("{what} malformed")))
}

/// Decodes a base64 field of a relay answer.
fn b64_field(field: &str, text: &str) -> WebResult<Vec<u8>> {
    STANDARD
        .decode(text)
        .map_err(|_| bad_response(format!("missing or invalid {field}")))
}

/// The JSON text of a request body for the page to send.
fn request_json<T: Serialize>(body: &T) -> WebResult<String> {
    serde_json::to_string(body).map_err(protocol)
}

/// A signed prekey as the key directory takes it (§11.11).
fn signed_key_body(key_id: u32, public_key: &[u8], signature: &[u8]) -> SignedKeyBody {
    SignedKeyBody {
        key_id,
        public_key: b64(public_key),
        signature: b64(signature),
    }
}

/// What [`DeviceCore::set_session`] reports to the page.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionInfo {
    /// Account id (32 hex).
    pub account_id: String,
    /// Device id (32 hex).
    pub device_id: String,
    /// Device number.
    pub device_number: u32,
    /// The access token (bearer); the page keeps it in memory only.
    pub access_token: String,
    /// Seconds until the access token expires.
    pub expires_in: u64,
}

/// A prepared send (ciphertext only).
#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct PreparedSend {
    /// The relay message id (32 hex), for idempotent retries.
    pub message_id: String,
    /// The content's own message id (32 hex), referenced by receipts.
    pub content_id: String,
    /// JSON body of `POST /v1/messages/{account}`.
    pub body: String,
}

/// The sender of an opened envelope.
#[derive(Serialize, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Sender {
    /// Account id (32 hex).
    pub account_id: String,
    /// Device number.
    pub device_number: u32,
}

/// A decoded content, as the page sees it.
#[derive(Serialize, Debug, PartialEq, Eq)]
#[serde(
    tag = "kind",
    rename_all = "snake_case",
    rename_all_fields = "camelCase"
)]
#[non_exhaustive]
pub enum OpenedContent {
    /// A text message.
    Text {
        /// Content message id (32 hex).
        message_id: String,
        /// Sender's clock, ms.
        sent_at: u64,
        /// The text.
        text: String,
        /// Disappearing timer (0 = keep).
        expire_secs: u32,
    },
    /// A delivery or read receipt.
    Receipt {
        /// `"delivered"` or `"read"`.
        receipt: String,
        /// Content message ids (32 hex).
        message_ids: Vec<String>,
    },
    /// The sender's access key (kept by the device; not shown).
    ContactCard,
    /// Any other §13.1 kind (typing, reactions, edits, groups…), not handled by the web demo.
    Other {
        /// The kind's name.
        name: String,
    },
}

/// The outcome of [`DeviceCore::open_envelope`].
#[derive(Serialize, Debug, PartialEq, Eq)]
#[serde(
    tag = "status",
    rename_all = "snake_case",
    rename_all_fields = "camelCase"
)]
#[non_exhaustive]
pub enum Opened {
    /// Decrypted; ack it.
    Message {
        /// Relay message id.
        message_id: String,
        /// Sending device, from its relay-signed certificate.
        sender: Sender,
        /// The content.
        content: OpenedContent,
    },
    /// Already processed; ack it again.
    Duplicate {
        /// Relay message id.
        message_id: String,
    },
    /// Refused (tampered, replayed, unknown session, changed identity…); ack and drop it.
    /// Nothing in the device's state changed.
    Rejected {
        /// Relay message id.
        message_id: String,
        /// Why.
        reason: String,
    },
}

/// The device state and the in-flight OPAQUE state.
pub struct DeviceCore {
    store: MemoryStore,
    registration: Option<ClientRegistration<HavenCipherSuite>>,
    login: Option<ClientLogin<HavenCipherSuite>>,
}

impl std::fmt::Debug for DeviceCore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceCore")
            .field("account", &self.account_hex().ok())
            .finish_non_exhaustive()
    }
}

fn opaque_rng() -> rand_core_06::OsRng {
    rand_core_06::OsRng
}

impl DeviceCore {
    /// A new device with a fresh identity key pair and registration id, in a new store under a
    /// fresh storage key.
    ///
    /// # Errors
    /// A store error (none is expected for a store in memory).
    pub fn new() -> WebResult<Self> {
        let mut rng = rand::rng();
        let identity = IdentityKeyPair::generate(&mut rng);
        let registration_id = rand::Rng::next_u32(&mut rng) & 0x3FFF;
        let store = MemoryStore::generate(&mut rng)?;
        store.set_identity(&identity, registration_id)?;
        Ok(Self::from_store(store))
    }

    /// A device from its state.
    pub(crate) fn from_store(store: MemoryStore) -> Self {
        Self {
            store,
            registration: None,
            login: None,
        }
    }

    /// The state (for export).
    pub(crate) fn store(&self) -> &MemoryStore {
        &self.store
    }

    fn meta(&self, key: &[u8]) -> WebResult<Option<Zeroizing<Vec<u8>>>> {
        Ok(self.store.get(space::META, key)?)
    }

    fn meta_text(&self, key: &[u8]) -> WebResult<String> {
        let bytes = self
            .meta(key)?
            .ok_or_else(|| WebError::new(ErrorCode::InvalidState, "not logged in yet"))?;
        String::from_utf8(bytes.to_vec())
            .map_err(|_| WebError::new(ErrorCode::Malformed, "stored value malformed"))
    }

    /// An id kept in the state (the account's or this device's).
    fn stored_id(&self, key: &[u8]) -> WebResult<Id> {
        self.meta_text(key)?
            .parse()
            .map_err(|_| WebError::new(ErrorCode::Malformed, "stored id malformed"))
    }

    /// The account id (32 hex), once a session was set.
    ///
    /// # Errors
    /// [`ErrorCode::InvalidState`] before the first session.
    pub fn account_hex(&self) -> WebResult<String> {
        self.meta_text(b"account")
    }

    fn account(&self) -> WebResult<[u8; 16]> {
        parse_id(&self.account_hex()?)
    }

    /// This device's number, once a session was set.
    ///
    /// # Errors
    /// [`ErrorCode::InvalidState`] before the first session.
    pub fn device_number(&self) -> WebResult<u32> {
        let b = self
            .meta(b"device_number")?
            .ok_or_else(|| WebError::new(ErrorCode::InvalidState, "not logged in yet"))?;
        <[u8; 4]>::try_from(b.as_slice())
            .map(u32::from_be_bytes)
            .map_err(|_| WebError::new(ErrorCode::Malformed, "stored device number malformed"))
    }

    fn identity(&self) -> WebResult<IdentityKeyPair> {
        Ok(self.store.identity_key_pair()?)
    }

    /// The public identity key, base64 (64 bytes, PROTOCOL §1.1).
    ///
    /// # Errors
    /// A corrupt state.
    pub fn identity_key_b64(&self) -> WebResult<String> {
        Ok(b64(&self.identity()?.public().to_bytes()))
    }

    // ---- OPAQUE (§11.5, §11.6) ----

    /// Body of `POST /v1/register/start`.
    ///
    /// # Errors
    /// [`ErrorCode::InvalidArgument`] for an empty password.
    pub fn register_start(&mut self, password: &[u8]) -> WebResult<String> {
        if password.is_empty() {
            return Err(invalid("empty password"));
        }
        let start = ClientRegistration::<HavenCipherSuite>::start(&mut opaque_rng(), password)
            .map_err(protocol)?;
        self.registration = Some(start.state);
        request_json(&RegisterStartRequest {
            registration_request: b64(&start.message.serialize()),
        })
    }

    /// Body of `POST /v1/register/finish`, from the relay's answer to `register/start`.
    ///
    /// # Errors
    /// [`ErrorCode::InvalidState`] without [`DeviceCore::register_start`],
    /// [`ErrorCode::InvalidResponse`] for a malformed answer.
    pub fn register_finish(
        &mut self,
        password: &[u8],
        reply_json: &str,
        username: Option<&str>,
    ) -> WebResult<String> {
        let reply: RegisterStartResponse = parse_reply(reply_json, "register/start answer")?;
        let response = b64_field("registration_response", &reply.registration_response)?;
        let response = RegistrationResponse::<HavenCipherSuite>::deserialize(&response)
            .map_err(|_| bad_response("registration_response does not decode"))?;
        let state = self.registration.take().ok_or_else(|| {
            WebError::new(ErrorCode::InvalidState, "registerStart was not called")
        })?;
        let finish = state
            .finish(
                &mut opaque_rng(),
                password,
                response,
                ClientRegistrationFinishParameters::default(),
            )
            .map_err(|_| bad_response("registration_response refused"))?;
        request_json(&RegisterFinishRequest {
            registration_id: reply.registration_id,
            registration_upload: b64(&finish.message.serialize()),
            username: username.map(str::to_owned),
            device: NewDeviceBody {
                identity_key: self.identity_key_b64()?,
                name: None,
            },
        })
    }

    /// Body of `POST /v1/login/start`: by `username`, or by the stored account id when `None`.
    ///
    /// # Errors
    /// [`ErrorCode::InvalidState`] with neither, [`ErrorCode::InvalidArgument`] for an empty
    /// password.
    pub fn login_start(&mut self, password: &[u8], username: Option<&str>) -> WebResult<String> {
        if password.is_empty() {
            return Err(invalid("empty password"));
        }
        let account_id = match username {
            Some(_) => None,
            None => Some(self.stored_id(b"account")?),
        };
        let start = ClientLogin::<HavenCipherSuite>::start(&mut opaque_rng(), password)
            .map_err(protocol)?;
        let body = request_json(&LoginStartRequest {
            username: username.map(str::to_owned),
            account_id,
            credential_request: b64(&start.message.serialize()),
        })?;
        self.login = Some(start.state);
        Ok(body)
    }

    /// Body of `POST /v1/login/finish`: as this device if it has logged in before, else as a
    /// new device of the account.
    ///
    /// # Errors
    /// [`ErrorCode::WrongPassword`] (detected by OPAQUE on the device),
    /// [`ErrorCode::InvalidState`], [`ErrorCode::InvalidResponse`].
    pub fn login_finish(&mut self, password: &[u8], reply_json: &str) -> WebResult<String> {
        let reply: LoginStartResponse = parse_reply(reply_json, "login/start answer")?;
        let response = b64_field("credential_response", &reply.credential_response)?;
        let response = CredentialResponse::<HavenCipherSuite>::deserialize(&response)
            .map_err(|_| bad_response("credential_response does not decode"))?;
        let state = self
            .login
            .take()
            .ok_or_else(|| WebError::new(ErrorCode::InvalidState, "loginStart was not called"))?;
        let params =
            ClientLoginFinishParameters::new(Some(OPAQUE_CONTEXT), Identifiers::default(), None);
        let finish = state
            .finish(password, response, params)
            .map_err(|_| WebError::new(ErrorCode::WrongPassword, "invalid credentials"))?;
        let (device_id, device) = match self.meta(b"device_id")? {
            Some(_) => (Some(self.stored_id(b"device_id")?), None),
            None => (
                None,
                Some(NewDeviceBody {
                    identity_key: self.identity_key_b64()?,
                    name: None,
                }),
            ),
        };
        request_json(&LoginFinishRequest {
            login_id: reply.login_id,
            credential_finalization: b64(&finish.message.serialize()),
            totp_code: None,
            device_id,
            device,
        })
    }

    /// Takes a `TokenResponse` (§11.7) from register/finish, login/finish or token/refresh and
    /// keeps the refresh token in the state.
    ///
    /// # Errors
    /// [`ErrorCode::InvalidResponse`] for a malformed answer or one for another account or
    /// device than this state's.
    pub fn set_session(&mut self, token_json: &str) -> WebResult<SessionInfo> {
        let mut t: TokenResponse = parse_reply(token_json, "token response")?;
        let (account_id, device_id) = (t.account_id.to_hex(), t.device_id.to_hex());
        if let Ok(known) = self.account_hex()
            && known != account_id
        {
            return Err(bad_response("token response for another account"));
        }
        if let Ok(known) = self.meta_text(b"device_id")
            && known != device_id
        {
            return Err(bad_response("token response for another device"));
        }
        self.store
            .put(space::META, b"account", account_id.as_bytes())?;
        self.store
            .put(space::META, b"device_id", device_id.as_bytes())?;
        self.store.put(
            space::META,
            b"device_number",
            &t.device_number.to_be_bytes(),
        )?;
        self.store
            .put(space::META, b"refresh", t.refresh_token.as_bytes())?;
        // The stored copy is the only one kept; this one is wiped.
        t.refresh_token.zeroize();
        Ok(SessionInfo {
            account_id,
            device_id,
            device_number: t.device_number,
            access_token: std::mem::take(&mut t.access_token),
            expires_in: t.expires_in,
        })
    }

    /// Body of `POST /v1/token/refresh` with the stored refresh token.
    ///
    /// # Errors
    /// [`ErrorCode::InvalidState`] before the first session.
    pub fn refresh_body(&self) -> WebResult<String> {
        let mut body = RefreshRequest {
            refresh_token: self.meta_text(b"refresh")?,
        };
        let text = request_json(&body);
        body.refresh_token.zeroize();
        text
    }

    // ---- relay key, certificate (§11.13) ----

    /// Pins the relay's certificate key from `GET /v1/certificate/key`; a different key than the
    /// one pinned before is refused.
    ///
    /// # Errors
    /// [`ErrorCode::InvalidResponse`].
    pub fn set_relay_key(&mut self, json_text: &str) -> WebResult<()> {
        let reply: CertificateKeyResponse = parse_reply(json_text, "certificate key")?;
        let key: [u8; 32] = b64_field("public_key", &reply.public_key)?
            .try_into()
            .map_err(|_| bad_response("relay key is not 32 bytes"))?;
        VerifyingKey::from_bytes(&key).map_err(|_| bad_response("relay key is not a point"))?;
        if let Some(pinned) = self.meta(b"relay_key")?
            && pinned.as_slice() != key
        {
            return Err(bad_response("the relay's certificate key changed"));
        }
        self.store.put(space::META, b"relay_key", &key)?;
        Ok(())
    }

    fn relay_key(&self) -> WebResult<VerifyingKey> {
        let key: [u8; 32] = self
            .meta(b"relay_key")?
            .and_then(|k| k.as_slice().try_into().ok())
            .ok_or_else(|| WebError::new(ErrorCode::InvalidState, "relay key not set"))?;
        VerifyingKey::from_bytes(&key).map_err(protocol)
    }

    /// Whether a (new) sender certificate must be fetched before sending.
    #[must_use]
    pub fn needs_certificate(&self, now: u64) -> bool {
        self.certificate(now).is_err()
    }

    fn certificate(&self, now: u64) -> WebResult<SenderCertificate> {
        let bytes = self
            .meta(b"certificate")?
            .ok_or_else(|| WebError::new(ErrorCode::InvalidState, "no sender certificate"))?;
        let cert = SenderCertificate::from_bytes(&bytes).map_err(protocol)?;
        if cert.expires <= now.saturating_add(CERTIFICATE_MARGIN) {
            return Err(WebError::new(
                ErrorCode::InvalidState,
                "sender certificate expired",
            ));
        }
        Ok(cert)
    }

    /// Takes the answer of `POST /v1/certificate`, checked against the pinned relay key.
    ///
    /// # Errors
    /// [`ErrorCode::InvalidResponse`] for a malformed or invalid certificate.
    pub fn set_certificate(&mut self, json_text: &str, now: u64) -> WebResult<()> {
        let reply: CertificateResponse = parse_reply(json_text, "certificate")?;
        let bytes = b64_field("certificate", &reply.certificate)?;
        let cert = SenderCertificate::from_bytes(&bytes)
            .map_err(|_| bad_response("certificate malformed"))?;
        cert.validate(&self.relay_key()?, now)
            .map_err(|e| bad_response(format!("certificate refused: {e}")))?;
        if cert.identity_key != *self.identity()?.public() {
            return Err(bad_response("certificate for another identity"));
        }
        self.store.put(space::META, b"certificate", &bytes)?;
        Ok(())
    }

    // ---- keys (§11.11) ----

    fn next_id(&mut self, name: &[u8], count: u32) -> WebResult<u32> {
        let next = self
            .meta(name)?
            .and_then(|v| <[u8; 4]>::try_from(v.as_slice()).ok())
            .map_or(1, u32::from_be_bytes);
        self.store
            .put(space::META, name, &next.wrapping_add(count).to_be_bytes())?;
        Ok(next)
    }

    /// Body of `PUT /v1/keys`: on the first call the base keys (signed prekey, last-resort KEM
    /// prekey, registration id) and a batch of one-time keys; later calls a new batch of
    /// one-time keys (call when `GET /v1/keys/counts` reports `low`). Keys are kept in the state
    /// before the body is returned.
    ///
    /// # Errors
    /// A corrupt state.
    pub fn prekey_upload(&mut self, now: u64) -> WebResult<String> {
        let mut rng = rand::rng();
        let identity = self.identity()?;
        let first = self.next_id(b"next_otpk", PREKEY_BATCH)?;
        let first_kem = self.next_id(b"next_kem", PREKEY_BATCH)?;
        let mut otpks = Vec::new();
        let mut kems = Vec::new();
        for i in 0..PREKEY_BATCH {
            let k = OneTimePreKey::generate(first.wrapping_add(i), &mut rng);
            otpks.push(OneTimeKeyBody {
                key_id: k.id(),
                public_key: b64(k.public().as_bytes()),
            });
            self.store.save_one_time_prekey(k)?;
            let q = KemPreKey::generate(
                &identity,
                first_kem.wrapping_add(i),
                KemPreKeyKind::OneTime,
                now,
                &mut rng,
            );
            kems.push(signed_key_body(q.id(), q.public(), q.signature()));
            self.store.save_kem_prekey(q)?;
        }
        let mut body = KeyUploadRequest {
            one_time_prekeys: otpks,
            one_time_kem_prekeys: kems,
            ..KeyUploadRequest::default()
        };
        if self.store.signed_prekey_ages()?.is_empty() {
            let spk_id = self.next_id(b"next_spk", 1)?;
            // Last-resort KEM ids use the top half so they never collide with one-time ids.
            let lr_id = 0x8000_0000 | self.next_id(b"next_lr", 1)?;
            let spk = SignedPreKey::generate(&identity, spk_id, now, &mut rng);
            let lr =
                KemPreKey::generate(&identity, lr_id, KemPreKeyKind::LastResort, now, &mut rng);
            body.registration_id = Some(self.store.local_registration_id()?);
            body.signed_prekey = Some(signed_key_body(
                spk.id(),
                spk.public().as_bytes(),
                spk.signature(),
            ));
            body.last_resort_kem_prekey =
                Some(signed_key_body(lr.id(), lr.public(), lr.signature()));
            self.store.save_signed_prekey(spk)?;
            self.store.save_kem_prekey(lr)?;
        }
        request_json(&body)
    }

    // ---- sending (§11.12, §5, §13.1) ----

    fn known_devices(&self, account: &str) -> WebResult<Vec<u32>> {
        Ok(self
            .store
            .get(space::CONTACT_DEVICES, account.as_bytes())?
            .map(|v| {
                v.chunks_exact(4)
                    .filter_map(|c| <[u8; 4]>::try_from(c).ok().map(u32::from_be_bytes))
                    .collect()
            })
            .unwrap_or_default())
    }

    fn save_devices(&mut self, account: &str, devices: &[u32]) -> WebResult<()> {
        let bytes: Vec<u8> = devices.iter().flat_map(|d| d.to_be_bytes()).collect();
        Ok(self
            .store
            .put(space::CONTACT_DEVICES, account.as_bytes(), &bytes)?)
    }

    fn has_session(&self, peer: &DeviceAddress) -> WebResult<bool> {
        Ok(self
            .store
            .load_session(peer)?
            .is_some_and(|r| r.current().is_some()))
    }

    /// The key-directory paths to claim before sending to `account`: `/v1/keys/{account}` when
    /// its devices are unknown, else `/v1/keys/{account}/{n}` for each known device without a
    /// session; empty when every device has a session.
    ///
    /// # Errors
    /// [`ErrorCode::InvalidArgument`] for a malformed account id.
    pub fn claim_paths(&self, account: &str) -> WebResult<Vec<String>> {
        let peer = parse_id(account)?;
        let devices = self.known_devices(account)?;
        if devices.is_empty() {
            return Ok(vec![format!("/v1/keys/{account}")]);
        }
        let mut out = Vec::new();
        for d in devices {
            if !self.has_session(&DeviceAddress::new(peer, d))? {
                out.push(format!("/v1/keys/{account}/{d}"));
            }
        }
        Ok(out)
    }

    fn parse_bundles(replies: &[String]) -> WebResult<Vec<PreKeyBundle>> {
        let mut out = Vec::new();
        for reply in replies {
            let parsed: BundlesResponse = parse_reply(reply, "key claim answer")?;
            for b in parsed.bundles {
                let bytes = b
                    .bundle
                    .and_then(|s| STANDARD.decode(s).ok())
                    .ok_or_else(|| bad_response("bundle missing or not base64"))?;
                let bundle = PreKeyBundle::from_bytes(&bytes)
                    .map_err(|e| bad_response(format!("bundle: {e}")))?;
                if bundle.device_id != b.device_number {
                    return Err(bad_response("bundle device number mismatch"));
                }
                bundle
                    .verify()
                    .map_err(|e| bad_response(format!("bundle: {e}")))?;
                out.push(bundle);
            }
        }
        Ok(out)
    }

    /// Encrypts `padded` for one device and seals it (§5) under the certificate.
    fn encrypt_for(
        &mut self,
        peer: &DeviceAddress,
        bundle: Option<&PreKeyBundle>,
        padded: &[u8],
        cert: &SenderCertificate,
    ) -> WebResult<Vec<u8>> {
        let mut rng = rand::rng();
        let message = match (self.has_session(peer)?, bundle) {
            (true, _) => {
                session_cipher::encrypt(&mut self.store, peer, padded).map_err(protocol)?
            }
            (false, Some(b)) => {
                if !self.store.is_trusted(peer, &b.identity_key)? {
                    return Err(WebError::new(
                        ErrorCode::IdentityChanged,
                        format!(
                            "identity key of {} device {} changed",
                            hex::encode(peer.account_id),
                            peer.device_id
                        ),
                    ));
                }
                session_cipher::initiate(&mut self.store, peer, b, padded, &mut rng)
                    .map_err(protocol)?
            }
            (false, None) => {
                return Err(WebError::new(
                    ErrorCode::InvalidState,
                    format!("no session and no bundle for device {}", peer.device_id),
                ));
            }
        };
        let recipient = self
            .store
            .peer_identity(peer)?
            .ok_or_else(|| protocol("no identity for peer"))?;
        seal_sender(
            &self.identity()?,
            cert,
            &recipient,
            CONTENT_SESSION,
            &message,
            &mut rng,
        )
        .map_err(protocol)
    }

    /// Encrypts a §13.1 text content for every device of `account` and returns the body of
    /// `POST /v1/messages/{account}` (a logged-in send). `bundle_replies` are the answers to
    /// [`DeviceCore::claim_paths`]. Nothing is stored when an error is returned.
    ///
    /// # Errors
    /// [`ErrorCode::InvalidArgument`] (account id), [`ErrorCode::Limit`] (text too long),
    /// [`ErrorCode::IdentityChanged`], [`ErrorCode::InvalidState`] (no certificate, a device
    /// without session or bundle), [`ErrorCode::InvalidResponse`] (bad bundles).
    pub fn encrypt_text(
        &mut self,
        account: &str,
        text: &str,
        now_ms: u64,
        bundle_replies: &[String],
    ) -> WebResult<PreparedSend> {
        let peer_account = parse_id(account)?;
        let mut rng = rand::rng();
        let mut content_id = [0u8; 16];
        rand::Rng::fill_bytes(&mut rng, &mut content_id);
        let content = Content {
            sent_at: now_ms,
            conversation: Conversation::Direct(peer_account),
            body: Body::Text {
                message_id: content_id,
                expire_secs: 0,
                text: text.to_owned(),
                attachment: Vec::new(),
            },
        };
        let plain = Zeroizing::new(
            content
                .to_bytes()
                .map_err(|e| WebError::new(ErrorCode::Limit, e.to_string()))?,
        );
        let mut message_id = [0u8; 16];
        rand::Rng::fill_bytes(&mut rng, &mut message_id);
        let message_id = Id::from(message_id);
        let body =
            self.encrypt_content(account, &plain, message_id, now_ms / 1000, bundle_replies)?;
        let message_id = message_id.to_hex();
        Ok(PreparedSend {
            message_id,
            content_id: hex::encode(content_id),
            body,
        })
    }

    /// Encrypts encoded content for every device of `account` (on a copy of the state, kept
    /// only if every device succeeded).
    fn encrypt_content(
        &mut self,
        account: &str,
        plain: &[u8],
        message_id: Id,
        now: u64,
        bundle_replies: &[String],
    ) -> WebResult<String> {
        let peer_account = parse_id(account)?;
        let own = self.account()? == peer_account;
        let own_number = self.device_number()?;
        let cert = self.certificate(now)?;
        let bundles = Self::parse_bundles(bundle_replies)?;
        let padded = pad(plain).map_err(protocol)?;
        let mut devices = self.known_devices(account)?;
        for b in &bundles {
            if !devices.contains(&b.device_id) {
                devices.push(b.device_id);
            }
        }
        devices.sort_unstable();
        let saved = self.store.clone();
        let result = (|| -> WebResult<Vec<EnvelopeBody>> {
            let mut envelopes = Vec::new();
            for &d in &devices {
                if own && d == own_number {
                    continue;
                }
                let peer = DeviceAddress::new(peer_account, d);
                let bundle = bundles.iter().find(|b| b.device_id == d);
                let sealed = self.encrypt_for(&peer, bundle, &padded, &cert)?;
                envelopes.push(EnvelopeBody {
                    device_number: d,
                    content: b64(&sealed),
                });
            }
            Ok(envelopes)
        })();
        let envelopes = match result {
            Ok(e) => e,
            Err(e) => {
                self.store = saved;
                return Err(e);
            }
        };
        if envelopes.is_empty() {
            self.store = saved;
            return Err(WebError::new(
                ErrorCode::InvalidState,
                "no device to send to",
            ));
        }
        self.save_devices(account, &devices)?;
        request_json(&SendBody {
            message_id,
            envelopes,
            ephemeral: false,
            access_key: None,
        })
    }

    /// Applies a 409 `mismatched_devices` / 410 `stale_devices` answer (§11.12) to the device
    /// list of `account` (sessions with removed devices are dropped); then claim and encrypt
    /// again.
    ///
    /// # Errors
    /// [`ErrorCode::InvalidArgument`], [`ErrorCode::InvalidResponse`].
    pub fn repair_devices(&mut self, account: &str, error_json: &str) -> WebResult<()> {
        let peer_account = parse_id(account)?;
        let reply: ErrorBody = parse_reply(error_json, "error answer")?;
        let mismatch = reply
            .error
            .mismatches
            .unwrap_or_default()
            .into_iter()
            .find(|m| *m.account_id.as_bytes() == peer_account)
            .ok_or_else(|| bad_response("no mismatches for this account"))?;
        let remove: Vec<u32> = [mismatch.extra_devices, mismatch.removed_devices].concat();
        let mut devices: Vec<u32> = self
            .known_devices(account)?
            .into_iter()
            .filter(|d| !remove.contains(d))
            .collect();
        for d in mismatch.missing_devices {
            if !devices.contains(&d) {
                devices.push(d);
            }
        }
        for d in remove {
            self.store.delete(
                space::SESSION,
                &address_key(&DeviceAddress::new(peer_account, d)),
            )?;
        }
        devices.sort_unstable();
        self.save_devices(account, &devices)?;
        Ok(())
    }

    // ---- receiving ----

    fn mark_seen(&mut self, message_id: &str) -> WebResult<()> {
        let n = self.meta(b"seen_n")?.map_or(0u64, |b| {
            <[u8; 8]>::try_from(b.as_slice()).map_or(0, u64::from_be_bytes)
        });
        self.store
            .put(space::SEEN, message_id.as_bytes(), &n.to_be_bytes())?;
        self.store
            .put(space::META, b"seen_n", &n.wrapping_add(1).to_be_bytes())?;
        // Forget the oldest ids beyond the cap (a replay that old is refused by the ratchet).
        if n >= MAX_SEEN as u64 && n % SEEN_PRUNE_EVERY == 0 {
            let cutoff = n - MAX_SEEN as u64;
            for (id, v) in self.store.entries(space::SEEN)? {
                let keep =
                    <[u8; 8]>::try_from(v.as_slice()).is_ok_and(|b| u64::from_be_bytes(b) > cutoff);
                if !keep {
                    self.store.delete(space::SEEN, &id)?;
                }
            }
        }
        Ok(())
    }

    /// Opens one envelope (base64 `content` of a mailbox entry or WebSocket envelope frame):
    /// sealed-sender layer (certificate checked against the pinned relay key), identity check,
    /// Double Ratchet, unpadding and §13.1 decoding. A refused envelope changes nothing.
    ///
    /// # Errors
    /// [`ErrorCode::InvalidArgument`] for a malformed message id, [`ErrorCode::InvalidState`]
    /// before the relay key is set. Bad envelope bytes are an [`Opened::Rejected`], not an error.
    pub fn open_envelope(
        &mut self,
        message_id: &str,
        content_b64: &str,
        now: u64,
    ) -> WebResult<Opened> {
        parse_id(message_id)?;
        let message_id = message_id.to_owned();
        if self
            .store
            .get(space::SEEN, message_id.as_bytes())?
            .is_some()
        {
            return Ok(Opened::Duplicate { message_id });
        }
        let reject =
            |message_id: String, reason: String| Ok(Opened::Rejected { message_id, reason });
        let Ok(content) = STANDARD.decode(content_b64) else {
            return reject(message_id, "envelope is not base64".into());
        };
        let relay_key = self.relay_key()?;
        let identity = self.identity()?;
        let opened = match open_sealed(&identity, &relay_key, &content, now) {
            Ok(o) => o,
            Err(e) => return reject(message_id, format!("sealed sender: {e}")),
        };
        if opened.content_type != CONTENT_SESSION {
            return reject(message_id, "unknown content type".into());
        }
        let sender = opened.certificate.sender;
        if let Some(known) = self.store.peer_identity(&sender)?
            && known != opened.certificate.identity_key
        {
            return reject(message_id, "identity key changed".into());
        }
        let own_account = self.account()?;
        if sender.account_id == own_account && Some(sender.device_id) == self.device_number().ok() {
            return reject(message_id, "claims to come from this device".into());
        }
        let saved = self.store.clone();
        let plaintext = match session_cipher::decrypt(
            &mut self.store,
            &sender,
            &opened.content,
            &mut rand::rng(),
        ) {
            Ok(p) => p,
            Err(e) => {
                self.store = saved;
                return reject(message_id, format!("session: {e}"));
            }
        };
        let decoded = unpad(&plaintext)
            .ok()
            .and_then(|p| Content::from_bytes(p).ok());
        let Some(content) = decoded else {
            self.store = saved;
            return reject(message_id, "malformed content".into());
        };
        // §13.2: a direct content from another account must name this account.
        if let Conversation::Direct(id) = content.conversation
            && sender.account_id != own_account
            && id != own_account
        {
            self.store = saved;
            return reject(message_id, "content for another conversation".into());
        }
        let opened_content = match content.body {
            Body::Text {
                message_id: id,
                expire_secs,
                ref text,
                ..
            } => OpenedContent::Text {
                message_id: hex::encode(id),
                sent_at: content.sent_at,
                text: text.clone(),
                expire_secs,
            },
            Body::Receipt {
                kind,
                ref message_ids,
            } => OpenedContent::Receipt {
                receipt: match kind {
                    ReceiptKind::Delivered => "delivered".into(),
                    ReceiptKind::Read => "read".into(),
                },
                message_ids: message_ids.iter().map(hex::encode).collect(),
            },
            Body::ContactCard { access_key } => {
                let mut k = b"ak:".to_vec();
                k.extend_from_slice(hex::encode(sender.account_id).as_bytes());
                self.store.put(space::META, &k, &access_key)?;
                OpenedContent::ContactCard
            }
            ref other => OpenedContent::Other {
                name: body_name(other).into(),
            },
        };
        // The sender's device list grows with devices that write to us.
        let account_hex = hex::encode(sender.account_id);
        let mut devices = self.known_devices(&account_hex)?;
        if !devices.contains(&sender.device_id) {
            devices.push(sender.device_id);
            devices.sort_unstable();
            self.save_devices(&account_hex, &devices)?;
        }
        self.mark_seen(&message_id)?;
        Ok(Opened::Message {
            message_id,
            sender: Sender {
                account_id: account_hex,
                device_number: sender.device_id,
            },
            content: opened_content,
        })
    }
}

fn body_name(body: &Body) -> &'static str {
    match body {
        Body::Text { .. } => "text",
        Body::Receipt { .. } => "receipt",
        Body::Typing(_) => "typing",
        Body::Reaction { .. } => "reaction",
        Body::Edit { .. } => "edit",
        Body::Delete { .. } => "delete",
        Body::Timer(_) => "timer",
        Body::ContactCard { .. } => "contact_card",
        Body::GroupInvite(_) => "group_invite",
        Body::SenderKey { .. } => "sender_key",
        Body::GroupUpdate { .. } => "group_update",
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use ed25519_dalek::SigningKey;
    use haven_protocol::api::error::{DeviceMismatch, ErrorDetail};
    use haven_protocol::api::keys::BundleBody;

    const NOW: u64 = 1_790_000_000;

    /// A device logged in as `account`/`number` with a certificate from `relay`.
    fn device(relay: &SigningKey, account: [u8; 16], number: u32) -> DeviceCore {
        let mut d = DeviceCore::new().unwrap();
        let token = TokenResponse {
            account_id: Id::from(account),
            device_id: Id::from([number as u8; 16]),
            device_number: number,
            access_token: "a".into(),
            refresh_token: "r".into(),
            token_type: "Bearer".into(),
            expires_in: 900,
        };
        d.set_session(&request_json(&token).unwrap()).unwrap();
        let key = CertificateKeyResponse {
            public_key: b64(relay.verifying_key().as_bytes()),
        };
        d.set_relay_key(&request_json(&key).unwrap()).unwrap();
        assert!(d.needs_certificate(NOW));
        let cert = SenderCertificate::issue(
            relay,
            DeviceAddress::new(account, number),
            *d.identity().unwrap().public(),
            NOW + 3600,
        );
        let cert = CertificateResponse {
            certificate: b64(&cert.to_bytes()),
            expires: cert.expires,
        };
        d.set_certificate(&request_json(&cert).unwrap(), NOW)
            .unwrap();
        assert!(!d.needs_certificate(NOW));
        d
    }

    /// What the relay would answer to a claim of `d`'s keys (first one-time keys).
    fn claim_reply(d: &mut DeviceCore, upload: &str) -> String {
        let upload: KeyUploadRequest = serde_json::from_str(upload).unwrap();
        let signed_prekey = upload.signed_prekey.unwrap();
        let one_time_prekey = upload.one_time_prekeys[0].clone();
        let kem_prekey = upload.one_time_kem_prekeys[0].clone();
        let (spk_id, otpk_id, kem_id) = (
            signed_prekey.key_id,
            one_time_prekey.key_id,
            kem_prekey.key_id,
        );
        let s = &d.store;
        let bundle = PreKeyBundle::new(
            *s.identity_key_pair().unwrap().public(),
            s.local_registration_id().unwrap(),
            d.device_number().unwrap(),
            &s.signed_prekey(spk_id).unwrap().unwrap(),
            s.one_time_prekey(otpk_id).unwrap().as_ref(),
            &s.kem_prekey(kem_id).unwrap().unwrap(),
        );
        let reply = BundlesResponse {
            account_id: d.account_hex().unwrap().parse().unwrap(),
            bundles: vec![BundleBody {
                device_number: d.device_number().unwrap(),
                registration_id: upload.registration_id.unwrap(),
                identity_key: d.identity_key_b64().unwrap(),
                signed_prekey,
                one_time_prekey: Some(one_time_prekey),
                kem_prekey,
                kem_prekey_last_resort: false,
                bundle: Some(b64(&bundle.to_bytes())),
            }],
        };
        request_json(&reply).unwrap()
    }

    fn text_of(o: &Opened) -> &str {
        match o {
            Opened::Message {
                content: OpenedContent::Text { text, .. },
                ..
            } => text,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn two_devices_exchange_texts_and_bad_input_is_typed() {
        let relay = SigningKey::from_bytes(&[3; 32]);
        let (a_acc, b_acc) = ([0xa1; 16], [0xb2; 16]);
        let mut alice = device(&relay, a_acc, 1);
        let mut bob = device(&relay, b_acc, 1);
        alice.prekey_upload(NOW).unwrap();
        let bob_upload = bob.prekey_upload(NOW).unwrap();
        let bob_hex = hex::encode(b_acc);
        assert_eq!(
            alice.claim_paths(&bob_hex).unwrap(),
            vec![format!("/v1/keys/{bob_hex}")]
        );
        let reply = claim_reply(&mut bob, &bob_upload);
        let sent = alice
            .encrypt_text(&bob_hex, "hello periwinkle", NOW * 1000, &[reply])
            .unwrap();
        let body: SendBody = serde_json::from_str(&sent.body).unwrap();
        assert_eq!(body.message_id.to_hex(), sent.message_id);
        let content = body.envelopes[0].content.clone();
        assert!(!sent.body.contains("periwinkle"));

        // Garbage and a tampered copy are rejected without touching the session.
        let before = bob
            .store
            .clone()
            .export(&haven_sdk::StorageKey::from_bytes([1; 32]))
            .unwrap()
            .len();
        let mut raw = STANDARD.decode(&content).unwrap();
        let last = raw.len() - 1;
        raw[last] ^= 1;
        let tampered = bob
            .open_envelope(&"11".repeat(16), &b64(&raw), NOW)
            .unwrap();
        assert!(matches!(tampered, Opened::Rejected { .. }), "{tampered:?}");
        let garbage = bob.open_envelope(&"12".repeat(16), "!!", NOW).unwrap();
        assert!(matches!(garbage, Opened::Rejected { .. }));
        assert_eq!(
            bob.store
                .clone()
                .export(&haven_sdk::StorageKey::from_bytes([1; 32]))
                .unwrap()
                .len(),
            before
        );
        assert_eq!(
            bob.open_envelope("not-an-id", &content, NOW)
                .unwrap_err()
                .code,
            ErrorCode::InvalidArgument
        );

        let opened = bob.open_envelope(&sent.message_id, &content, NOW).unwrap();
        assert_eq!(text_of(&opened), "hello periwinkle");
        // Exactly once.
        assert!(matches!(
            bob.open_envelope(&sent.message_id, &content, NOW).unwrap(),
            Opened::Duplicate { .. }
        ));
        // A replay under a new message id is refused by the ratchet.
        assert!(matches!(
            bob.open_envelope(&"13".repeat(16), &content, NOW).unwrap(),
            Opened::Rejected { .. }
        ));

        // Bob answers over the session Alice started; no claim needed.
        let alice_hex = hex::encode(a_acc);
        assert!(bob.claim_paths(&alice_hex).unwrap().is_empty());
        let back = bob
            .encrypt_text(&alice_hex, "hi tangerine", NOW * 1000, &[])
            .unwrap();
        let body: SendBody = serde_json::from_str(&back.body).unwrap();
        let content = &body.envelopes[0].content;
        let opened = alice.open_envelope(&back.message_id, content, NOW).unwrap();
        assert_eq!(text_of(&opened), "hi tangerine");

        // State survives an encrypted export/import.
        let key = haven_sdk::StorageKey::from_bytes([5; 32]);
        let sealed = alice.store().export(&key).unwrap();
        let mut again = DeviceCore::from_store(MemoryStore::import(&key, &sealed).unwrap());
        let next = again
            .encrypt_text(&bob_hex, "after reload", NOW * 1000, &[])
            .unwrap();
        let body: SendBody = serde_json::from_str(&next.body).unwrap();
        let content = &body.envelopes[0].content;
        assert_eq!(
            text_of(&bob.open_envelope(&next.message_id, content, NOW).unwrap()),
            "after reload"
        );

        // Bad input: typed errors.
        assert_eq!(
            alice.encrypt_text("XYZ", "x", 0, &[]).unwrap_err().code,
            ErrorCode::InvalidArgument
        );
        assert_eq!(
            alice
                .encrypt_text(&hex::encode([9; 16]), "x", NOW * 1000, &["{".into()])
                .unwrap_err()
                .code,
            ErrorCode::InvalidResponse
        );
        assert_eq!(
            alice
                .encrypt_text(&bob_hex, &"x".repeat(20_000), NOW * 1000, &[])
                .unwrap_err()
                .code,
            ErrorCode::Limit
        );
        assert_eq!(
            alice
                .set_relay_key(r#"{"public_key":"AAAA"}"#)
                .unwrap_err()
                .code,
            ErrorCode::InvalidResponse
        );
        assert_eq!(
            alice
                .login_finish(b"pw", r#"{"credential_response":"AAAA"}"#)
                .unwrap_err()
                .code,
            ErrorCode::InvalidResponse
        );
    }

    #[test]
    fn seen_ids_are_pruned_in_batches() {
        let mut d = DeviceCore::new().unwrap();
        for (id, n) in [("old", 0u64), ("kept", 1), ("recent", 9_999)] {
            d.store
                .put(space::SEEN, id.as_bytes(), &n.to_be_bytes())
                .unwrap();
        }
        let at = |n: u64| n.to_be_bytes();
        d.store
            .put(space::META, b"seen_n", &at(MAX_SEEN as u64 - 1))
            .unwrap();
        d.mark_seen("below the cap").unwrap();
        assert_eq!(d.store.entries(space::SEEN).unwrap().len(), 4);
        // The 10_001st id: everything at or below counter 0 goes.
        d.mark_seen("at the cap").unwrap();
        let mut left: Vec<Vec<u8>> = d
            .store
            .entries(space::SEEN)
            .unwrap()
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        left.sort();
        assert_eq!(
            left,
            [&b"at the cap"[..], b"below the cap", b"kept", b"recent"]
        );
        // Not pruned again until SEEN_PRUNE_EVERY more.
        d.store.put(space::SEEN, b"old", &at(0)).unwrap();
        d.mark_seen("next").unwrap();
        assert!(d.store.get(space::SEEN, b"old").unwrap().is_some());
    }

    #[test]
    fn repair_devices_applies_mismatches() {
        let relay = SigningKey::from_bytes(&[4; 32]);
        let mut d = device(&relay, [1; 16], 1);
        let peer = hex::encode([2; 16]);
        d.save_devices(&peer, &[1, 2]).unwrap();
        let err = ErrorBody {
            error: ErrorDetail {
                code: "mismatched_devices".into(),
                message: String::new(),
                mismatches: Some(vec![DeviceMismatch {
                    account_id: Id::from([2; 16]),
                    missing_devices: vec![3],
                    extra_devices: vec![2],
                    removed_devices: Vec::new(),
                }]),
            },
        };
        d.repair_devices(&peer, &request_json(&err).unwrap())
            .unwrap();
        assert_eq!(d.known_devices(&peer).unwrap(), vec![1, 3]);
        assert_eq!(
            d.repair_devices(&peer, "{}").unwrap_err().code,
            ErrorCode::InvalidResponse
        );
    }
}
