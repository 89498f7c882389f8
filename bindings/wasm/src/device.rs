//! One device for the web: the client core's device steps ([`haven_client_core::device`], the
//! ones `haven_client::Device` drives over HTTP natively) with JSON at the boundary. Each step
//! takes the relay's JSON answer as text and returns the JSON body of the next request, which
//! the page sends (`js/haven-client.js`), so the JavaScript side never touches a key, a
//! password-derived value or a plaintext it did not type itself.
//!
//! The OPAQUE steps are the core's ([`haven_client_core::auth`], the native `RelayClient`'s too);
//! linking by approval is the core's `device::link`. What is here and not in the core: the
//! OPAQUE and link state between two requests, the contents a page is delivering (padded, kept in memory until the
//! send is finished, not in the state), the access key between its upload and the relay's
//! answer, and the parsing of JSON and ids. Contents themselves (§13) are the messenger's
//! ([`crate::messenger`], over the core's `haven_client_core::messenger`): it prepares them here
//! and opens envelopes through [`DeviceCore::open_envelope`].

use haven_client_core::auth::{AuthError, Login, Registration};
use haven_client_core::device::state::{
    self, StoredSession, access_key_body, generate_access_key, pin_relay_key,
};
use haven_client_core::device::{
    DeliveredFranking, DeviceError, ListAnswer, ListUpdate, LocalDevice, Opened, OutgoingPlaintext,
    OutgoingSend, ReportMaterial, keys,
};
use haven_client_core::device::{LinkGrant, LinkRequest};
use haven_protocol::api::Id;
use haven_protocol::api::auth::{
    CredentialFinishRequest, CredentialStartRequest, CredentialStartResponse, LoginFinishRequest,
    LoginStartRequest, LoginStartResponse, NewDeviceBody, ReauthFinishRequest, ReauthStartRequest,
    RecoverFinishRequest, RecoverStartRequest, RecoverStartResponse, RefreshRequest,
    RegisterFinishRequest, RegisterStartRequest, RegisterStartResponse, TokenResponse,
};
use haven_protocol::api::certificate::{CertificateKeyResponse, CertificateResponse};
use haven_protocol::api::devices::DeviceList;
use haven_protocol::api::error::ErrorBody;
use haven_protocol::api::identity::{
    DeviceListReply, LinkTokenReply, ProvisioningCreated, ProvisioningMessage,
};
use haven_protocol::api::keys::{BundlesResponse, KeyCountsResponse};
use haven_protocol::api::moderation::FrankingKeyResponse;
use haven_protocol::content::Content;
use haven_sdk::identity::IdentityKeyPair;
use haven_sdk::store::{DeviceAddress, IdentityStore};
use serde::Serialize;
use serde::de::DeserializeOwned;
use zeroize::{Zeroize as _, Zeroizing};

use crate::error::{ErrorCode, WebError, WebResult, bad_response, invalid, protocol};
use crate::frames::parse_id;
use crate::store::MemoryStore;

/// Sends a page may have in flight at once (prepared, not yet finished); the oldest is
/// forgotten beyond this. A user action prepares at most two (a contact card and the content),
/// a group's creation two (the invite and the sender key), a follow-up one.
pub const MAX_PENDING_SENDS: usize = 64;

pub(crate) fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
fn b64_field(field: &str, text: &str) -> WebResult<Vec<u8>> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|_| bad_response(format!("missing or invalid {field}")))
}

/// Reads a relay answer (`haven_protocol::api`), refusing one of another shape.
pub(crate) fn parse_reply<T: DeserializeOwned>(text: &str, what: &str) -> WebResult<T> {
    serde_json::from_str(text).map_err(|_| bad_response(format!("{what} malformed")))
}

/// The JSON text of a request body for the page to send.
pub(crate) fn request_json<T: Serialize>(body: &T) -> WebResult<String> {
    serde_json::to_string(body).map_err(protocol)
}

fn not_logged_in() -> WebError {
    WebError::new(ErrorCode::InvalidState, "not logged in yet")
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

/// A prepared send to one account (ciphertext only).
#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct PreparedSend {
    /// The relay message id (32 hex), for idempotent retries.
    pub message_id: String,
    /// The path to `POST` the body to: `/v1/messages/{account}/sealed` when `sealed`, else
    /// `/v1/messages/{account}`.
    pub path: String,
    /// A sealed send: authorised by the recipient's access key (in the body), sent **without**
    /// the bearer token; otherwise a logged-in send with it.
    pub sealed: bool,
    /// The JSON body.
    pub body: String,
}

/// A content being delivered, kept until the page finishes the send (each envelope pads its
/// own, franked, plaintext).
struct PendingSend {
    message_id: Id,
    plaintext: OutgoingPlaintext,
    /// Never stored by the relay, dropped for offline devices (typing indicators).
    ephemeral: bool,
}

/// The device state and what is in flight (OPAQUE state, pending sends, the last read of the
/// own device list, an access key being set); only the store is exported.
pub struct DeviceCore {
    store: MemoryStore,
    registration: Option<Registration>,
    login: Option<Login>,
    /// A new device's link in progress: its box and one-time key, then the opened grant.
    link: Option<LinkRequest>,
    grant: Option<LinkGrant>,
    pending: Vec<PendingSend>,
    own_checked: Option<u64>,
    access_key: Option<Zeroizing<[u8; 16]>>,
    /// Signed prekeys to delete once the rotated pair is on the relay.
    retiring: Vec<u32>,
    /// The own device list being uploaded (`firstOwnList` until `ownListPublished`).
    pending_list: Option<haven_sdk::account::DeviceList>,
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

fn auth_error(e: AuthError) -> WebError {
    match e {
        AuthError::InvalidResponse(field) => bad_response(format!("{field} refused")),
        _ => WebError::new(ErrorCode::WrongPassword, "invalid credentials"),
    }
}

/// A recovery code as typed (spaces, dashes and case forgiven), in its canonical text.
fn recovery_text(code: &str) -> WebResult<Zeroizing<String>> {
    haven_sdk::RecoveryCode::parse(code)
        .map(|c| c.to_text())
        .map_err(|_| invalid("not a recovery code"))
}

/// A new account recovery code (§11.6.3) to show the user once and register.
#[must_use]
pub fn generate_recovery_code() -> Zeroizing<String> {
    haven_sdk::RecoveryCode::generate(&mut rand::rng()).to_text()
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
            link: None,
            grant: None,
            pending: Vec::new(),
            own_checked: None,
            pending_list: None,
            access_key: None,
            retiring: Vec::new(),
        }
    }

    /// The state (for export).
    pub(crate) fn store(&self) -> &MemoryStore {
        &self.store
    }

    /// The state, to change (the messenger's steps).
    pub(crate) fn store_mut(&mut self) -> &mut MemoryStore {
        &mut self.store
    }

    /// The registered device (after [`DeviceCore::set_session`] and
    /// [`DeviceCore::set_relay_key`]).
    pub(crate) fn local(&self) -> WebResult<LocalDevice> {
        Ok(LocalDevice::load(&self.store)?)
    }

    /// The account id (32 hex), once a session was set.
    ///
    /// # Errors
    /// [`ErrorCode::InvalidState`] before the first session.
    pub fn account_hex(&self) -> WebResult<String> {
        StoredSession::account(&self.store)?
            .map(|id| id.to_hex())
            .ok_or_else(not_logged_in)
    }

    /// This device's number, once a session was set.
    ///
    /// # Errors
    /// [`ErrorCode::InvalidState`] before the first session.
    pub fn device_number(&self) -> WebResult<u32> {
        StoredSession::load(&self.store)?
            .map(|s| s.device_number)
            .ok_or_else(not_logged_in)
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

    // ---- OPAQUE (§11.5, §11.6), the core's steps (`haven_client_core::auth`) ----

    fn take_login(&mut self, step: &str) -> WebResult<Login> {
        self.login
            .take()
            .ok_or_else(|| WebError::new(ErrorCode::InvalidState, format!("{step} was not called")))
    }

    fn take_registration(&mut self, step: &str) -> WebResult<Registration> {
        self.registration
            .take()
            .ok_or_else(|| WebError::new(ErrorCode::InvalidState, format!("{step} was not called")))
    }

    /// Starts an OPAQUE registration of `secret`; the `registration_request` to send.
    fn opaque_register(&mut self, secret: &[u8]) -> WebResult<String> {
        if secret.is_empty() {
            return Err(invalid("empty password"));
        }
        let (registration, request) =
            Registration::start(secret, &mut opaque_rng()).map_err(auth_error)?;
        self.registration = Some(registration);
        Ok(request)
    }

    /// Starts an OPAQUE login with `password`; the `credential_request` (KE1) to send.
    fn opaque_login(&mut self, password: &[u8]) -> WebResult<String> {
        if password.is_empty() {
            return Err(invalid("empty password"));
        }
        let (login, request) = Login::start(password, &mut opaque_rng()).map_err(auth_error)?;
        self.login = Some(login);
        Ok(request)
    }

    /// Body of `POST /v1/register/start`.
    ///
    /// # Errors
    /// [`ErrorCode::InvalidArgument`] for an empty password.
    pub fn register_start(&mut self, password: &[u8]) -> WebResult<String> {
        let registration_request = self.opaque_register(password)?;
        request_json(&RegisterStartRequest {
            registration_request,
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
        let registration = self.take_registration("registerStart")?;
        let registration_upload = registration
            .finish(password, &reply.registration_response, &mut opaque_rng())
            .map_err(auth_error)?;
        request_json(&RegisterFinishRequest {
            registration_id: reply.registration_id,
            registration_upload,
            username: username.map(str::to_owned),
            device: NewDeviceBody {
                identity_key: self.identity_key_b64()?,
                name: None,
            },
        })
    }

    /// Body of `POST /v1/login/start` for this device's account: a login again as this device
    /// (after a logout, a password change elsewhere, TOTP at login). A new device joins by
    /// linking ([`DeviceCore::link_start`]), never by password.
    ///
    /// # Errors
    /// [`ErrorCode::InvalidState`] before the first session, [`ErrorCode::InvalidArgument`] for
    /// an empty password.
    pub fn login_start(&mut self, password: &[u8]) -> WebResult<String> {
        let account_id = Some(StoredSession::account(&self.store)?.ok_or_else(not_logged_in)?);
        let credential_request = self.opaque_login(password)?;
        request_json(&LoginStartRequest {
            username: None,
            account_id,
            credential_request,
        })
    }

    /// Body of `POST /v1/login/finish` as this device, with the TOTP code when the account has
    /// TOTP on.
    ///
    /// # Errors
    /// [`ErrorCode::WrongPassword`] (detected by OPAQUE on the device),
    /// [`ErrorCode::InvalidState`], [`ErrorCode::InvalidResponse`].
    pub fn login_finish(
        &mut self,
        password: &[u8],
        reply_json: &str,
        totp: Option<&str>,
    ) -> WebResult<String> {
        let reply: LoginStartResponse = parse_reply(reply_json, "login/start answer")?;
        let login = self.take_login("loginStart")?;
        let device_id = StoredSession::device_id(&self.store)?.ok_or_else(not_logged_in)?;
        let credential_finalization = login
            .finish(password, &reply.credential_response)
            .map_err(auth_error)?;
        request_json(&LoginFinishRequest {
            login_id: reply.login_id,
            credential_finalization,
            totp_code: totp.map(str::to_owned),
            device_id: Some(device_id),
            device: None,
        })
    }

    /// Body of `POST /v1/account/reauth/start` (fresh authentication, §11.6.1).
    ///
    /// # Errors
    /// [`ErrorCode::InvalidArgument`] for an empty password.
    pub fn reauth_start(&mut self, password: &[u8]) -> WebResult<String> {
        let credential_request = self.opaque_login(password)?;
        request_json(&ReauthStartRequest { credential_request })
    }

    /// Body of `POST /v1/account/reauth/finish` from the answer of `reauth/start`; its answer
    /// is the proof for the `Haven-Fresh-Auth` header of the one call it is for.
    ///
    /// # Errors
    /// [`ErrorCode::WrongPassword`], [`ErrorCode::InvalidState`],
    /// [`ErrorCode::InvalidResponse`].
    pub fn reauth_finish(
        &mut self,
        password: &[u8],
        reply_json: &str,
        totp: Option<&str>,
    ) -> WebResult<String> {
        let reply: LoginStartResponse = parse_reply(reply_json, "reauth/start answer")?;
        let login = self.take_login("reauthStart")?;
        let credential_finalization = login
            .finish(password, &reply.credential_response)
            .map_err(auth_error)?;
        request_json(&ReauthFinishRequest {
            login_id: reply.login_id,
            credential_finalization,
            totp_code: totp.map(str::to_owned),
        })
    }

    /// Body of `POST /v1/account/password/start` or `/v1/account/recovery/start` (§11.6.2,
    /// §11.6.3): a registration of the new password or recovery code.
    ///
    /// # Errors
    /// [`ErrorCode::InvalidArgument`] for an empty secret.
    pub fn credential_start(&mut self, secret: &[u8]) -> WebResult<String> {
        let registration_request = self.opaque_register(secret)?;
        request_json(&CredentialStartRequest {
            registration_request,
        })
    }

    /// Body of the matching `…/finish` (sent with the fresh-authentication proof).
    ///
    /// # Errors
    /// [`ErrorCode::InvalidState`], [`ErrorCode::InvalidResponse`].
    pub fn credential_finish(&mut self, secret: &[u8], reply_json: &str) -> WebResult<String> {
        let reply: CredentialStartResponse = parse_reply(reply_json, "credential start answer")?;
        let registration = self.take_registration("credentialStart")?;
        let registration_upload = registration
            .finish(secret, &reply.registration_response, &mut opaque_rng())
            .map_err(auth_error)?;
        request_json(&CredentialFinishRequest {
            registration_upload,
        })
    }

    /// Body of `POST /v1/recover/start` (§11.6.3): the recovery code proven by OPAQUE and the
    /// new password registered, by `username` or by this device's account.
    ///
    /// # Errors
    /// [`ErrorCode::InvalidArgument`] for a malformed code or an empty password,
    /// [`ErrorCode::InvalidState`] with neither a username nor a session.
    pub fn recover_start(
        &mut self,
        code: &str,
        new_password: &[u8],
        username: Option<&str>,
    ) -> WebResult<String> {
        let code = recovery_text(code)?;
        let account_id = match username {
            Some(_) => None,
            None => Some(StoredSession::account(&self.store)?.ok_or_else(not_logged_in)?),
        };
        let registration_request = self.opaque_register(new_password)?;
        let credential_request = self.opaque_login(code.as_bytes())?;
        request_json(&RecoverStartRequest {
            username: username.map(str::to_owned),
            account_id,
            credential_request,
            registration_request,
        })
    }

    /// Body of `POST /v1/recover/finish` from the answer of `recover/start`.
    ///
    /// # Errors
    /// [`ErrorCode::WrongPassword`] for a wrong code, [`ErrorCode::InvalidArgument`],
    /// [`ErrorCode::InvalidState`], [`ErrorCode::InvalidResponse`].
    pub fn recover_finish(
        &mut self,
        code: &str,
        new_password: &[u8],
        reply_json: &str,
        totp: Option<&str>,
    ) -> WebResult<String> {
        let code = recovery_text(code)?;
        let reply: RecoverStartResponse = parse_reply(reply_json, "recover/start answer")?;
        let login = self.take_login("recoverStart")?;
        let registration = self.take_registration("recoverStart")?;
        let credential_finalization = login
            .finish(code.as_bytes(), &reply.credential_response)
            .map_err(auth_error)?;
        let registration_upload = registration
            .finish(
                new_password,
                &reply.registration_response,
                &mut opaque_rng(),
            )
            .map_err(auth_error)?;
        request_json(&RecoverFinishRequest {
            login_id: reply.login_id,
            credential_finalization,
            registration_upload,
            totp_code: totp.map(str::to_owned),
        })
    }

    // ---- linking by approval (§15.3, §11.18), the core's `device::link` steps ----

    /// The new device's side, from the answer of `POST /v1/provisioning`: the code to show
    /// the approving device and the box path to poll.
    ///
    /// # Errors
    /// [`ErrorCode::InvalidResponse`]; [`ErrorCode::InvalidState`] for a device that has a
    /// session already.
    pub fn link_start(&mut self, created_json: &str) -> WebResult<(String, String)> {
        if StoredSession::account(&self.store)?.is_some() {
            return Err(WebError::new(
                ErrorCode::InvalidState,
                "this device belongs to an account already",
            ));
        }
        let created: ProvisioningCreated = parse_reply(created_json, "provisioning box")?;
        let request = LinkRequest::new(&created, &mut rand::rng());
        let shown = (request.code(), request.box_path());
        self.link = Some(request);
        Ok(shown)
    }

    /// Opens the grant in the box (the `200` answer of the poll): the body of
    /// `POST /v1/devices/link`, whose `TokenResponse` goes to [`DeviceCore::set_session`].
    ///
    /// # Errors
    /// [`ErrorCode::InvalidState`] without [`DeviceCore::link_start`],
    /// [`ErrorCode::InvalidResponse`] for a grant that does not open.
    pub fn link_open(&mut self, message_json: &str) -> WebResult<String> {
        let message: ProvisioningMessage = parse_reply(message_json, "provisioning message")?;
        let request = self
            .link
            .as_ref()
            .ok_or_else(|| WebError::new(ErrorCode::InvalidState, "linkStart was not called"))?;
        let grant = request.open(&message)?;
        let body = request_json(&grant.link_body(self.identity()?.public(), None))?;
        self.link = None;
        self.grant = Some(grant);
        Ok(body)
    }

    /// Once the session is set and the keys uploaded: keeps the granted account key and
    /// access key, accepts the own list (`GET /v1/accounts/{own}/device-list`'s answer; it must
    /// match the grant) and returns the body of `PUT /v1/account/device-list` with this device
    /// added (then [`DeviceCore::own_list_published`]).
    ///
    /// # Errors
    /// [`ErrorCode::InvalidState`] without a grant; [`ErrorCode::AccountKeyChanged`],
    /// [`ErrorCode::DeviceListRefused`], [`ErrorCode::InvalidResponse`] for a list the grant
    /// does not vouch for.
    pub fn link_join(&mut self, list_json: &str, now: u64) -> WebResult<String> {
        let reply: DeviceListReply = parse_reply(list_json, "device list")?;
        let grant = self
            .grant
            .take()
            .ok_or_else(|| WebError::new(ErrorCode::InvalidState, "no link grant"))?;
        let local = self.local()?;
        grant.install(&local, &self.store)?;
        grant.accept_list(&local, &mut self.store, &reply, now)?;
        let own = *self.identity()?.public();
        let list = local.sign_own_list(&self.store, &[(local.device_number(), own)], &[], now)?;
        let body = request_json(&LocalDevice::device_list_upload(&list))?;
        self.pending_list = Some(list);
        Ok(body)
    }

    /// The approving device's side: seals the grant for the device showing `code` with the
    /// link token (`POST /v1/devices/link-token`'s answer). Returns the path and body of the
    /// `PUT /v1/provisioning/{id}`. Read the own list first when due.
    ///
    /// # Errors
    /// [`ErrorCode::InvalidArgument`] for a bad code, [`ErrorCode::InvalidState`] without the
    /// account key, [`ErrorCode::InvalidResponse`].
    pub fn approve_link(&self, code: &str, token_json: &str) -> WebResult<(String, String)> {
        let mut token: LinkTokenReply = parse_reply(token_json, "link token")?;
        let approved = self
            .local()?
            .approve_link(&self.store, code, &token, &mut rand::rng());
        token.link_token.zeroize();
        let (path, body) = approved?;
        Ok((path, request_json(&body)?))
    }

    /// Unlinking device `number` from the signed list: the body of
    /// `PUT /v1/account/device-list` without it (then [`DeviceCore::own_list_published`]), or
    /// `None` when the list (read just before) does not name it. The relay forgets the device
    /// afterwards (`DELETE /v1/devices/{id}` with a fresh-authentication proof).
    ///
    /// # Errors
    /// [`ErrorCode::InvalidArgument`] for this device itself, [`ErrorCode::InvalidState`]
    /// without the account key.
    pub fn unlink_list(&mut self, number: u32, now: u64) -> WebResult<Option<String>> {
        let local = self.local()?;
        if number == local.device_number() {
            return Err(invalid("this device cannot unlink itself"));
        }
        let listed = local
            .device_list(&self.store, &local.account())?
            .is_some_and(|l| l.device(number).is_some());
        if !listed {
            return Ok(None);
        }
        let list = local.sign_own_list(&self.store, &[], &[number], now)?;
        let body = request_json(&LocalDevice::device_list_upload(&list))?;
        self.pending_list = Some(list);
        Ok(Some(body))
    }

    /// Takes a `TokenResponse` (§11.7) from register/finish, login/finish or token/refresh and
    /// keeps the refresh token in the state.
    ///
    /// # Errors
    /// [`ErrorCode::InvalidResponse`] for a malformed answer or one for another account or
    /// device than this state's.
    pub fn set_session(&mut self, token_json: &str) -> WebResult<SessionInfo> {
        let mut t: TokenResponse = parse_reply(token_json, "token response")?;
        let stored = StoredSession::store(
            &self.store,
            t.account_id,
            t.device_id,
            t.device_number,
            &t.refresh_token,
        );
        // The stored copy is the only one kept; this one is wiped.
        t.refresh_token.zeroize();
        stored?;
        Ok(SessionInfo {
            account_id: t.account_id.to_hex(),
            device_id: t.device_id.to_hex(),
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
        let token = StoredSession::refresh_token(&self.store).map_err(|_| not_logged_in())?;
        let mut body = RefreshRequest {
            refresh_token: token.to_string(),
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
        pin_relay_key(&self.store, &reply)?;
        Ok(())
    }

    /// Whether a (new) sender certificate must be fetched before sending.
    #[must_use]
    pub fn needs_certificate(&self, now: u64) -> bool {
        !matches!(
            self.local()
                .and_then(|l| Ok(l.certificate(&self.store, now)?)),
            Ok(Some(_))
        )
    }

    /// Takes the answer of `POST /v1/certificate`, checked against the pinned relay key.
    ///
    /// # Errors
    /// [`ErrorCode::InvalidResponse`] for a malformed or invalid certificate,
    /// [`ErrorCode::InvalidState`] before the session and relay key are set.
    pub fn set_certificate(&mut self, json_text: &str, now: u64) -> WebResult<()> {
        let reply: CertificateResponse = parse_reply(json_text, "certificate")?;
        self.local()?.accept_certificate(&self.store, &reply, now)?;
        Ok(())
    }

    /// The relay's franking key this device holds, if any.
    ///
    /// # Errors
    /// [`ErrorCode::InvalidState`] before the session and relay key are set.
    pub(crate) fn franking_key(&self) -> WebResult<Option<haven_protocol::franking::FrankingKey>> {
        Ok(self.local()?.franking_key(&self.store)?)
    }

    /// Whether to fetch the relay's franking key (`GET /v1/franking/key`, no authentication)
    /// before sending, then [`DeviceCore::set_franking_key`] (PROTOCOL §16.9).
    ///
    /// # Errors
    /// [`ErrorCode::InvalidState`] before the session and relay key are set.
    pub fn needs_franking_key(&self, now: u64) -> WebResult<bool> {
        Ok(self.local()?.franking_key_due(&self.store, now)?)
    }

    /// Takes `GET /v1/franking/key`'s answer, or `None` for a 404 (the relay offers no key;
    /// a key offered before is kept). Stored sends are franked with it from now on.
    ///
    /// # Errors
    /// [`ErrorCode::InvalidResponse`] for a malformed key, [`ErrorCode::InvalidState`].
    pub fn set_franking_key(&mut self, json_text: Option<&str>, now: u64) -> WebResult<()> {
        let reply: Option<FrankingKeyResponse> = json_text
            .map(|t| parse_reply(t, "franking key"))
            .transpose()?;
        self.local()?
            .accept_franking_key(&self.store, reply.as_ref(), now)?;
        Ok(())
    }

    // ---- the account's access key (§11.12) ----

    /// Body of `PUT /v1/account/access-key` with a fresh random access key (a new account's
    /// first device sets it, as the native client does at registration). The key is kept in
    /// memory until [`DeviceCore::confirm_access_key`], so a refused upload changes nothing.
    ///
    /// # Errors
    /// None expected (JSON encoding).
    pub fn prepare_access_key(&mut self) -> WebResult<String> {
        let key = Zeroizing::new(generate_access_key(&mut rand::rng()));
        let body = request_json(&access_key_body(&key));
        self.access_key = Some(key);
        body
    }

    /// The relay accepted the key of [`DeviceCore::prepare_access_key`]: it becomes the
    /// account's access key, which contact cards carry (so contacts send sealed).
    ///
    /// # Errors
    /// [`ErrorCode::InvalidState`] without a prepared key.
    pub fn confirm_access_key(&mut self) -> WebResult<()> {
        let key = self
            .access_key
            .take()
            .ok_or_else(|| WebError::new(ErrorCode::InvalidState, "no access key is being set"))?;
        Ok(state::set_own_access_key(&self.store, &key)?)
    }

    /// Whether this device holds the account's access key (set at registration, or learned
    /// from another own device's copy of a contact card).
    ///
    /// # Errors
    /// A corrupt state.
    pub fn has_access_key(&self) -> WebResult<bool> {
        Ok(state::own_access_key(&self.store)?.is_some())
    }

    // ---- keys (§11.11) ----

    /// Body of `PUT /v1/keys`: on the first call the base keys (signed prekey, last-resort KEM
    /// prekey, registration id) and a batch of one-time keys; later calls a new batch of
    /// one-time keys. Keys are kept in the state before the body is returned.
    ///
    /// # Errors
    /// A corrupt state.
    pub fn prekey_upload(&mut self, now: u64) -> WebResult<String> {
        let body = keys::upload(&mut self.store, now, &mut rand::rng())?;
        request_json(&body)
    }

    /// From the answer of `GET /v1/keys/counts`: the body of `PUT /v1/keys` with a new batch of
    /// one-time keys when the relay reports low stock, else `None`.
    ///
    /// # Errors
    /// [`ErrorCode::InvalidResponse`] for a malformed answer.
    pub fn replenish_keys(&mut self, counts_json: &str, now: u64) -> WebResult<Option<String>> {
        let counts: KeyCountsResponse = parse_reply(counts_json, "key counts")?;
        keys::replenish(&mut self.store, &counts, now, &mut rand::rng())?
            .map(|body| request_json(&body))
            .transpose()
    }

    /// Signed-prekey rotation on Signal's cadence (weekly, the previous key kept 30 days, as
    /// natively): the body of `PUT /v1/keys` with a new signed prekey and last-resort KEM
    /// prekey when one is due (already stored; then [`DeviceCore::keys_rotated`]), else `None`
    /// and the keys whose successor is old enough are deleted at once.
    ///
    /// # Errors
    /// A corrupt state.
    pub fn rotate_keys(&mut self, now: u64) -> WebResult<Option<String>> {
        let policy = haven_sdk::prekeys::SignedPreKeyPolicy::default();
        let rotation = keys::rotate(&mut self.store, &policy, now, &mut rand::rng())?;
        match rotation.upload {
            Some(body) => {
                self.retiring = rotation.retire;
                request_json(&body).map(Some)
            }
            None => {
                keys::retire(&mut self.store, &rotation.retire)?;
                Ok(None)
            }
        }
    }

    /// The relay took the rotated keys of [`DeviceCore::rotate_keys`]: the retired ones are
    /// deleted (handshakes started against them have had their time).
    ///
    /// # Errors
    /// A corrupt state.
    pub fn keys_rotated(&mut self) -> WebResult<()> {
        let retire = std::mem::take(&mut self.retiring);
        Ok(keys::retire(&mut self.store, &retire)?)
    }

    // ---- sending (§11.12, §5, §13.1, §13.2) ----

    /// Whether to `GET /v1/devices` (and pass the answer to [`DeviceCore::set_own_devices`])
    /// before the copy of a send to this account's other devices: no other own device is
    /// known and the list was not read in the last minute.
    ///
    /// # Errors
    /// [`ErrorCode::InvalidState`] before the session and relay key are set.
    pub fn own_devices_due(&mut self, now: u64) -> WebResult<bool> {
        let local = self.local()?;
        let due = local.own_devices_due(&self.store, &local.account(), self.own_checked, now)?;
        if due {
            self.own_checked = Some(now);
        }
        Ok(due)
    }

    /// Takes `GET /v1/devices`'s answer as the devices of this account.
    ///
    /// # Errors
    /// [`ErrorCode::InvalidResponse`], [`ErrorCode::InvalidState`].
    pub fn set_own_devices(&mut self, json_text: &str) -> WebResult<()> {
        let list: DeviceList = parse_reply(json_text, "device list")?;
        Ok(self.local()?.set_own_devices(&self.store, &list)?)
    }

    /// The key-directory paths to claim before sending to `account`: `/v1/keys/{account}` when
    /// its devices are unknown, else `/v1/keys/{account}/{n}` for each known device without a
    /// session; empty when every device has a session (or, for this account, when no other own
    /// device is known).
    ///
    /// # Errors
    /// [`ErrorCode::InvalidArgument`] for a malformed account id, [`ErrorCode::InvalidState`]
    /// before the session and relay key are set.
    pub fn claim_paths(&self, account: &str) -> WebResult<Vec<String>> {
        let peer = parse_id(account)?;
        Ok(self
            .local()?
            .claims(&self.store, &peer)?
            .iter()
            .map(|c| c.path(&peer))
            .collect())
    }

    /// Prepares `content` for delivery: padded and kept in the device under a new relay message
    /// id until [`DeviceCore::finish_send`], so it can be encrypted for one or more accounts
    /// (a contact and, as a sync copy, this account's other devices) and again after a repair.
    /// `ephemeral` sends are never stored by the relay (typing indicators). Returns the relay
    /// message id (32 hex).
    ///
    /// # Errors
    /// [`ErrorCode::Limit`] for a content beyond a §13.1 limit or the padding limit.
    pub(crate) fn prepare_content(
        &mut self,
        content: &Content,
        ephemeral: bool,
    ) -> WebResult<String> {
        let plain = Zeroizing::new(
            content
                .to_bytes()
                .map_err(|e| WebError::new(ErrorCode::Limit, e.to_string()))?,
        );
        let plaintext = OutgoingPlaintext::new(&plain)
            .map_err(|e| WebError::new(ErrorCode::Limit, e.to_string()))?;
        let mut message_id = [0u8; 16];
        rand::Rng::fill_bytes(&mut rand::rng(), &mut message_id);
        if self.pending.len() >= MAX_PENDING_SENDS {
            self.pending.remove(0);
        }
        self.pending.push(PendingSend {
            message_id: Id::from(message_id),
            plaintext,
            ephemeral,
        });
        Ok(hex::encode(message_id))
    }

    /// Encrypts the prepared content `message_id` for every device of `account` (the contact,
    /// or this account for the copy to its other devices); `bundle_replies` are the answers to
    /// [`DeviceCore::claim_paths`]. `None` when there is nothing to send (this account without
    /// another device). Nothing is stored when an error is returned.
    ///
    /// # Errors
    /// [`ErrorCode::InvalidArgument`] (ids), [`ErrorCode::InvalidState`] (an unknown or finished
    /// send, no certificate, a device without session or bundle, no device at all),
    /// [`ErrorCode::IdentityChanged`], [`ErrorCode::InvalidResponse`] (bad bundles).
    pub fn encrypt_prepared(
        &mut self,
        message_id: &str,
        account: &str,
        bundle_replies: &[String],
        now: u64,
    ) -> WebResult<Option<PreparedSend>> {
        let id = Id::from(parse_id(message_id)?);
        let peer = parse_id(account)?;
        let mut bundles = Vec::with_capacity(bundle_replies.len());
        for reply in bundle_replies {
            bundles.push(parse_reply::<BundlesResponse>(reply, "key claim answer")?);
        }
        let local = self.local()?;
        let cert = local
            .certificate(&self.store, now)?
            .ok_or_else(|| WebError::from(DeviceError::NoCertificate))?;
        let pending = self
            .pending
            .iter()
            .find(|p| p.message_id == id)
            .ok_or_else(|| WebError::new(ErrorCode::InvalidState, "no such prepared send"))?;
        // Franked with the relay's key once it offered one (`needs_franking_key`).
        let franking_key = local.franking_key(&self.store)?;
        let outgoing = local.encrypt(
            &mut self.store,
            &peer,
            &pending.plaintext,
            id,
            pending.ephemeral,
            franking_key.as_ref(),
            &bundles,
            &cert,
            &mut rand::rng(),
        )?;
        outgoing.map(|o| Self::prepared_send(&o)).transpose()
    }

    fn prepared_send(outgoing: &OutgoingSend) -> WebResult<PreparedSend> {
        Ok(PreparedSend {
            message_id: outgoing.body().message_id.to_hex(),
            path: outgoing.path(),
            sealed: outgoing.is_sealed(),
            body: request_json(outgoing.body())?,
        })
    }

    /// Forgets the prepared content `message_id` (delivered, or given up).
    ///
    /// # Errors
    /// [`ErrorCode::InvalidArgument`] for a malformed id.
    pub fn finish_send(&mut self, message_id: &str) -> WebResult<()> {
        let id = Id::from(parse_id(message_id)?);
        self.pending.retain(|p| p.message_id != id);
        Ok(())
    }

    /// Applies a 409 `mismatched_devices` / 410 `stale_devices` answer (§11.12) to the device
    /// list of `account` (sessions with removed devices are dropped); then claim and encrypt
    /// again.
    ///
    /// # Errors
    /// [`ErrorCode::InvalidArgument`], [`ErrorCode::InvalidResponse`].
    /// With `list_fresh` false, a device the account's signed list does not name is
    /// [`ErrorCode::NeedDeviceList`] (fetch the list, accept it, repair again with
    /// `list_fresh`); after, [`ErrorCode::DeviceListRefused`].
    pub fn repair_devices(
        &mut self,
        account: &str,
        error_json: &str,
        list_fresh: bool,
    ) -> WebResult<()> {
        let peer = parse_id(account)?;
        let reply: ErrorBody = parse_reply(error_json, "error answer")?;
        let mismatches = reply.error.mismatches.unwrap_or_default();
        Ok(self
            .local()?
            .repair(&mut self.store, &peer, &mismatches, list_fresh)?)
    }

    // ---- who is who (§15) ----

    /// Whether to fetch `account`'s signed device list (`GET /v1/accounts/{account}/device-list`,
    /// then [`DeviceCore::accept_device_list`]) before a send.
    ///
    /// # Errors
    /// [`ErrorCode::InvalidArgument`], [`ErrorCode::InvalidState`].
    pub fn device_list_due(&self, account: &str, now: u64) -> WebResult<bool> {
        let peer = parse_id(account)?;
        Ok(self.local()?.device_list_due(&self.store, &peer, now)?)
    }

    /// Takes the answer for `account`'s device list: its JSON, or `None` for a 404
    /// `device_list_not_found`. Returns what the user should hear of (devices added, removed,
    /// re-keyed), if anything.
    ///
    /// # Errors
    /// [`ErrorCode::AccountKeyChanged`], [`ErrorCode::DeviceListRefused`],
    /// [`ErrorCode::InvalidResponse`].
    pub fn accept_device_list(
        &mut self,
        account: &str,
        reply_json: Option<&str>,
        now: u64,
    ) -> WebResult<Option<ListUpdate>> {
        let peer = parse_id(account)?;
        let reply: Option<DeviceListReply> = reply_json
            .map(|t| parse_reply(t, "device list"))
            .transpose()?;
        let answer = match &reply {
            Some(r) => ListAnswer::List(r),
            None => ListAnswer::NotPublished,
        };
        let update = self
            .local()?
            .accept_device_list(&mut self.store, &peer, answer, now)?;
        Ok(update.is_news().then_some(update))
    }

    /// Whether this account has no accepted own list yet (publish one with
    /// [`DeviceCore::first_own_list`]).
    ///
    /// # Errors
    /// [`ErrorCode::InvalidState`].
    pub fn needs_first_list(&self) -> WebResult<bool> {
        let local = self.local()?;
        Ok(local.device_list(&self.store, &local.account())?.is_none())
    }

    /// The body of `PUT /v1/account/device-list` with this account's first list (a new
    /// account key naming this device; kept for [`DeviceCore::own_list_published`]).
    ///
    /// # Errors
    /// [`ErrorCode::InvalidState`] when the account has a list already.
    pub fn first_own_list(&mut self, now: u64) -> WebResult<String> {
        let local = self.local()?;
        let list = local.first_own_list(&self.store, now, &mut rand::rng())?;
        let body = request_json(&LocalDevice::device_list_upload(&list))?;
        self.pending_list = Some(list);
        Ok(body)
    }

    /// The relay took the list of [`DeviceCore::first_own_list`] (204).
    ///
    /// # Errors
    /// [`ErrorCode::InvalidState`] without one.
    pub fn own_list_published(&mut self, now: u64) -> WebResult<()> {
        let list = self
            .pending_list
            .take()
            .ok_or_else(|| WebError::new(ErrorCode::InvalidState, "no list to publish"))?;
        self.local()?
            .own_list_published(&mut self.store, &list, now)?;
        Ok(())
    }

    /// The per-account safety number with `account` (60 digits, §15.4), once known.
    ///
    /// # Errors
    /// [`ErrorCode::InvalidArgument`].
    pub fn account_safety_number(&self, account: &str) -> WebResult<Option<String>> {
        let peer = parse_id(account)?;
        Ok(self.local()?.account_safety_number(&self.store, &peer)?)
    }

    /// Accepts `account`'s new identity key after [`ErrorCode::AccountKeyChanged`].
    ///
    /// # Errors
    /// [`ErrorCode::InvalidArgument`] when none is pending.
    pub fn accept_account_key(&mut self, account: &str, now: u64) -> WebResult<()> {
        let peer = parse_id(account)?;
        self.local()?
            .accept_account_key(&mut self.store, &peer, now)?;
        Ok(())
    }

    /// Marks `account` verified (the user compared the account safety number); a device it
    /// links later blocks sends (`unconfirmed_devices`) until
    /// [`DeviceCore::confirm_devices`].
    ///
    /// # Errors
    /// [`ErrorCode::NeedDeviceList`] before its list is known.
    pub fn mark_verified(&mut self, account: &str) -> WebResult<()> {
        let peer = parse_id(account)?;
        Ok(self.local()?.mark_verified(&self.store, &peer)?)
    }

    /// Confirms a verified account's new devices.
    ///
    /// # Errors
    /// [`ErrorCode::InvalidArgument`] for an account that is not verified.
    pub fn confirm_devices(&mut self, account: &str) -> WebResult<()> {
        let peer = parse_id(account)?;
        Ok(self.local()?.confirm_devices(&self.store, &peer)?)
    }

    /// The devices of a verified `account` that wait for confirmation (`None` when it is not
    /// verified; empty when all are confirmed).
    ///
    /// # Errors
    /// [`ErrorCode::InvalidArgument`].
    pub fn verification(&self, account: &str) -> WebResult<Option<Vec<u32>>> {
        use haven_client_core::device::Verification;
        let peer = parse_id(account)?;
        Ok(match self.local()?.verification(&self.store, &peer)? {
            Verification::NotVerified => None,
            Verification::Verified => Some(Vec::new()),
            Verification::NewDevices(d) => Some(d),
        })
    }

    // ---- receiving ----

    /// Opens one envelope (`content`: the raw bytes of a mailbox entry or WebSocket frame) with
    /// the core's exactly-once open (sealed sender, certificate against the pinned relay key,
    /// identity, Double Ratchet, unpadding) and runs `apply` on its plaintext inside the store
    /// transaction that saves the session and (unless `ephemeral`) the seen message id, after
    /// checking the franking the relay `delivered` with it (§16.5). A refused envelope writes
    /// nothing.
    ///
    /// # Errors
    /// [`ErrorCode::InvalidArgument`] for a malformed message id, [`ErrorCode::InvalidState`]
    /// before the relay key is set; `apply`'s errors (everything rolled back).
    pub(crate) fn open_envelope<T>(
        &mut self,
        message_id: &str,
        content: &[u8],
        delivered: Option<&DeliveredFranking>,
        ephemeral: bool,
        now: u64,
        apply: impl FnOnce(
            &mut MemoryStore,
            &DeviceAddress,
            &[u8],
            Option<&ReportMaterial>,
        ) -> WebResult<T>,
    ) -> WebResult<Opened<T>> {
        parse_id(message_id)?;
        let local = self.local()?;
        local.open_envelope(
            &mut self.store,
            message_id,
            content,
            delivered,
            !ephemeral,
            now,
            &mut rand::rng(),
            apply,
        )
    }
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use ed25519_dalek::SigningKey;
    use haven_protocol::api::devices::DeviceBody;
    use haven_protocol::api::error::{DeviceMismatch, ErrorDetail};
    use haven_protocol::api::keys::{BundleBody, KeyUploadRequest};
    use haven_protocol::api::messages::SendBody;
    use haven_protocol::content::{Body, Conversation};
    use haven_sdk::prekeys::PreKeyBundle;
    use haven_sdk::sealed_sender::SenderCertificate;
    use haven_sdk::store::PreKeyStore;

    pub(crate) const NOW: u64 = 1_790_000_000;

    /// A device logged in as `account`/`number` with a certificate from `relay`, its keys
    /// uploaded (the body is returned).
    pub(crate) fn device(
        relay: &SigningKey,
        account: [u8; 16],
        number: u32,
    ) -> (DeviceCore, String) {
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
        let info = d.set_session(&request_json(&token).unwrap()).unwrap();
        assert_eq!(info.access_token, "a");
        assert!(d.refresh_body().unwrap().contains("\"r\""));
        assert!(d.needs_certificate(NOW));
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
        // These tests play a relay from before signed device lists (404 for every list): the
        // accounts' devices are trusted on first use. Lists are tested in the client core.
        for legacy in [[0xa1; 16], [0xb2; 16], [0xb0; 16], [0xc0; 16]] {
            assert!(d.device_list_due(&hex::encode(legacy), NOW).unwrap());
            assert!(
                d.accept_device_list(&hex::encode(legacy), None, NOW)
                    .unwrap()
                    .is_none()
            );
        }
        let upload = d.prekey_upload(NOW).unwrap();
        (d, upload)
    }

    /// What the relay would answer to a claim of `devices` (the `n`th one-time keys).
    pub(crate) fn claim_reply(devices: &[(&DeviceCore, &str)], n: usize) -> String {
        let mut bundles = Vec::new();
        for (d, upload) in devices {
            let upload: KeyUploadRequest = serde_json::from_str(upload).unwrap();
            let signed_prekey = upload.signed_prekey.unwrap();
            let one_time_prekey = upload.one_time_prekeys[n].clone();
            let kem_prekey = upload.one_time_kem_prekeys[n].clone();
            let s = &d.store;
            let bundle = PreKeyBundle::new(
                *s.identity_key_pair().unwrap().public(),
                s.local_registration_id().unwrap(),
                d.device_number().unwrap(),
                &s.signed_prekey(signed_prekey.key_id).unwrap().unwrap(),
                s.one_time_prekey(one_time_prekey.key_id).unwrap().as_ref(),
                &s.kem_prekey(kem_prekey.key_id).unwrap().unwrap(),
            );
            bundles.push(BundleBody {
                device_number: d.device_number().unwrap(),
                registration_id: upload.registration_id.unwrap(),
                identity_key: d.identity_key_b64().unwrap(),
                signed_prekey,
                one_time_prekey: Some(one_time_prekey),
                kem_prekey,
                kem_prekey_last_resort: false,
                bundle: Some(b64(&bundle.to_bytes())),
            });
        }
        let reply = BundlesResponse {
            account_id: devices[0].0.account_hex().unwrap().parse().unwrap(),
            bundles,
        };
        request_json(&reply).unwrap()
    }

    /// The envelope for device `number` of a prepared send.
    pub(crate) fn envelope(sent: &PreparedSend, number: u32) -> String {
        let body: SendBody = serde_json::from_str(&sent.body).unwrap();
        body.envelopes
            .into_iter()
            .find(|e| e.device_number == number)
            .unwrap()
            .content
    }

    fn text(to: [u8; 16], text: &str) -> Content {
        Content {
            sent_at: NOW * 1000,
            conversation: Conversation::Direct(to),
            body: Body::Text {
                message_id: [0x1d; 16],
                expire_secs: 0,
                text: text.into(),
                attachment: Vec::new(),
            },
        }
    }

    /// Prepares `content` and encrypts it for `account` (the device's send steps).
    fn send(
        d: &mut DeviceCore,
        account: &str,
        content: &Content,
        replies: &[String],
    ) -> WebResult<PreparedSend> {
        let id = d.prepare_content(content, false)?;
        let sent = d.encrypt_prepared(&id, account, replies, NOW);
        d.finish_send(&id)?;
        sent?.ok_or_else(|| DeviceError::NoDevices.into())
    }

    /// Opens an envelope, the plaintext content as the result of the transaction.
    fn open(d: &mut DeviceCore, id: &str, content_b64: &str) -> WebResult<Opened<Content>> {
        let Ok(raw) = b64_field("content", content_b64) else {
            return Ok(Opened::Rejected(
                haven_client_core::device::RejectReason::Malformed("base64".into()),
            ));
        };
        d.open_envelope(id, &raw, None, false, NOW, |_, _, plain, _| {
            Content::from_bytes(plain).map_err(|e| WebError::new(ErrorCode::Malformed, e.0))
        })
    }

    fn text_of(o: &Opened<Content>) -> (&str, Conversation) {
        match o {
            Opened::Accepted {
                value:
                    Content {
                        conversation,
                        body: Body::Text { text, .. },
                        ..
                    },
                ..
            } => (text, *conversation),
            other => panic!("{other:?}"),
        }
    }

    fn snapshot_len(d: &DeviceCore) -> usize {
        d.store
            .clone()
            .export(&haven_sdk::StorageKey::from_bytes([1; 32]))
            .unwrap()
            .len()
    }

    #[test]
    fn verification_steps_are_typed() {
        let relay = SigningKey::from_bytes(&[3; 32]);
        let (mut d, _) = device(&relay, [0xa1; 16], 1);
        // An account whose list is not known (here: one that publishes none) cannot be marked.
        let unknown = hex::encode([0x77; 16]);
        assert_eq!(
            d.mark_verified(&unknown).unwrap_err().code,
            ErrorCode::NeedDeviceList
        );
        assert_eq!(d.verification(&unknown).unwrap(), None);
        assert_eq!(
            d.confirm_devices(&unknown).unwrap_err().code,
            ErrorCode::InvalidArgument
        );
        assert_eq!(
            d.mark_verified("not hex").unwrap_err().code,
            ErrorCode::InvalidArgument
        );
    }

    #[test]
    fn two_devices_exchange_contents_and_bad_input_is_typed() {
        let relay = SigningKey::from_bytes(&[3; 32]);
        let (a_acc, b_acc) = ([0xa1; 16], [0xb2; 16]);
        let (mut alice, _) = device(&relay, a_acc, 1);
        let (mut bob, bob_upload) = device(&relay, b_acc, 1);
        let bob_hex = hex::encode(b_acc);
        assert_eq!(
            alice.claim_paths(&bob_hex).unwrap(),
            vec![format!("/v1/keys/{bob_hex}")]
        );
        let reply = claim_reply(&[(&bob, &bob_upload)], 0);
        let sent = send(
            &mut alice,
            &bob_hex,
            &text(b_acc, "hello periwinkle"),
            &[reply],
        )
        .unwrap();
        assert!(!sent.sealed);
        assert_eq!(sent.path, format!("/v1/messages/{bob_hex}"));
        let body: SendBody = serde_json::from_str(&sent.body).unwrap();
        assert_eq!(body.message_id.to_hex(), sent.message_id);
        assert!(!body.ephemeral);
        let content = envelope(&sent, 1);
        assert!(!sent.body.contains("periwinkle"));

        // Garbage and a tampered copy are rejected without touching the session.
        let before = snapshot_len(&bob);
        let mut raw = b64_field("x", &content).unwrap();
        let last = raw.len() - 1;
        raw[last] ^= 1;
        let tampered = open(&mut bob, &"11".repeat(16), &b64(&raw)).unwrap();
        assert!(matches!(tampered, Opened::Rejected(_)), "{tampered:?}");
        assert_eq!(snapshot_len(&bob), before);
        assert_eq!(
            open(&mut bob, "not-an-id", &content).unwrap_err().code,
            ErrorCode::InvalidArgument
        );

        let opened = open(&mut bob, &sent.message_id, &content).unwrap();
        assert_eq!(
            text_of(&opened),
            ("hello periwinkle", Conversation::Direct(b_acc))
        );
        // Exactly once.
        assert!(matches!(
            open(&mut bob, &sent.message_id, &content).unwrap(),
            Opened::Duplicate
        ));
        // A replay under a new message id is refused by the ratchet.
        assert!(matches!(
            open(&mut bob, &"13".repeat(16), &content).unwrap(),
            Opened::Rejected(_)
        ));

        // Bob answers over the session Alice started; no claim needed.
        let alice_hex = hex::encode(a_acc);
        assert!(bob.claim_paths(&alice_hex).unwrap().is_empty());
        let back = send(&mut bob, &alice_hex, &text(a_acc, "hi tangerine"), &[]).unwrap();
        let opened = open(&mut alice, &back.message_id, &envelope(&back, 1)).unwrap();
        assert_eq!(text_of(&opened).0, "hi tangerine");

        // An ephemeral content is sent as such, and its id is not kept as seen; to another
        // account only with its access key (the relay refuses it otherwise).
        let id = bob.prepare_content(&text(a_acc, "fleeting"), true).unwrap();
        assert!(
            bob.encrypt_prepared(&id, &alice_hex, &[], NOW)
                .unwrap()
                .is_none()
        );
        state::set_contact_access_key(bob.store(), &a_acc, &[7; 16]).unwrap();
        let fleeting = bob
            .encrypt_prepared(&id, &alice_hex, &[], NOW)
            .unwrap()
            .unwrap();
        let body: SendBody = serde_json::from_str(&fleeting.body).unwrap();
        assert!(body.ephemeral);

        // State survives an encrypted export/import.
        let key = haven_sdk::StorageKey::from_bytes([5; 32]);
        let sealed = alice.store().export(&key).unwrap();
        let mut again = DeviceCore::from_store(MemoryStore::import(&key, &sealed).unwrap());
        let next = send(&mut again, &bob_hex, &text(b_acc, "after reload"), &[]).unwrap();
        assert_eq!(
            text_of(&open(&mut bob, &next.message_id, &envelope(&next, 1)).unwrap()).0,
            "after reload"
        );

        // Bad input: typed errors.
        assert_eq!(
            send(&mut alice, "XYZ", &text(b_acc, "x"), &[])
                .unwrap_err()
                .code,
            ErrorCode::InvalidArgument
        );
        assert_eq!(
            send(
                &mut alice,
                &hex::encode([9; 16]),
                &text([9; 16], "x"),
                &["{".into()]
            )
            .unwrap_err()
            .code,
            ErrorCode::InvalidResponse
        );
        assert_eq!(
            alice
                .prepare_content(&text(b_acc, &"x".repeat(20_000)), false)
                .unwrap_err()
                .code,
            ErrorCode::Limit
        );
        assert_eq!(
            alice
                .encrypt_prepared(&"77".repeat(16), &bob_hex, &[], NOW)
                .unwrap_err()
                .code,
            ErrorCode::InvalidState
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
                .login_finish(b"pw", r#"{"credential_response":"AAAA"}"#, None)
                .unwrap_err()
                .code,
            ErrorCode::InvalidResponse
        );
        assert_eq!(
            alice.replenish_keys("{}", NOW).unwrap_err().code,
            ErrorCode::InvalidResponse
        );
    }

    #[test]
    fn link_and_account_steps_are_typed_and_in_order() {
        let code = |r: WebResult<String>| r.unwrap_err().code;
        let mut fresh = DeviceCore::new().unwrap();
        // A new device logs in by linking only; steps out of order are refused.
        assert_eq!(code(fresh.login_start(b"pw")), ErrorCode::InvalidState);
        assert_eq!(
            code(fresh.link_open(r#"{"message":"AAAA"}"#)),
            ErrorCode::InvalidState
        );
        assert_eq!(
            code(fresh.link_join(r#"{"list":"AAAA","version":1}"#, NOW)),
            ErrorCode::InvalidState
        );
        let login = format!(
            r#"{{"login_id":"{}","credential_response":"AAAA"}}"#,
            "11".repeat(16)
        );
        assert_eq!(
            code(fresh.reauth_finish(b"pw", &login, None)),
            ErrorCode::InvalidState
        );
        assert_eq!(
            code(fresh.link_start("{}").map(|s| s.0)),
            ErrorCode::InvalidResponse
        );
        let created = format!(r#"{{"id":"{}","expires":1}}"#, "22".repeat(16));
        let (shown, path) = fresh.link_start(&created).unwrap();
        assert!(shown.starts_with("haven-link:"), "{shown}");
        assert_eq!(path, format!("/v1/provisioning/{}", "22".repeat(16)));
        // A message that is not a grant sealed to this link does not open.
        assert_eq!(
            code(fresh.link_open(r#"{"message":"AAAA"}"#)),
            ErrorCode::InvalidResponse
        );

        let relay = SigningKey::from_bytes(&[3; 32]);
        let (mut d, _) = device(&relay, [0xa1; 16], 1);
        assert_eq!(
            code(d.link_start(&created).map(|s| s.0)),
            ErrorCode::InvalidState
        );
        assert_eq!(
            d.unlink_list(1, NOW).unwrap_err().code,
            ErrorCode::InvalidArgument
        );
        let token = r#"{"link_token":"AAAA","expires":1}"#;
        assert_eq!(
            code(d.approve_link("haven-link:nonsense", token).map(|s| s.0)),
            ErrorCode::InvalidArgument
        );
        // OPAQUE bodies for re-authentication and a new credential; a recovery code round trip.
        let body: ReauthStartRequest =
            serde_json::from_str(&d.reauth_start(b"pw").unwrap()).unwrap();
        assert!(!body.credential_request.is_empty());
        assert_eq!(code(d.credential_start(b"")), ErrorCode::InvalidArgument);
        assert_eq!(
            code(d.credential_finish(b"pw", r#"{"registration_response":"AAAA"}"#)),
            ErrorCode::InvalidState
        );
        let recovery = generate_recovery_code();
        assert_eq!(recovery_text(&recovery.to_lowercase()).unwrap(), recovery);
        assert_eq!(
            code(d.recover_start("not a code", b"new", None)),
            ErrorCode::InvalidArgument
        );
        let body: RecoverStartRequest =
            serde_json::from_str(&d.recover_start(&recovery, b"new", None).unwrap()).unwrap();
        assert_eq!(body.account_id, Some(Id::from([0xa1; 16])));
    }

    #[test]
    fn the_access_key_is_kept_only_once_the_relay_took_it() {
        let relay = SigningKey::from_bytes(&[3; 32]);
        let (mut d, _) = device(&relay, [0xa1; 16], 1);
        assert!(!d.has_access_key().unwrap());
        assert_eq!(
            d.confirm_access_key().unwrap_err().code,
            ErrorCode::InvalidState
        );
        let first = d.prepare_access_key().unwrap();
        // A second upload replaces the first before the relay answered.
        let body = d.prepare_access_key().unwrap();
        assert_ne!(first, body);
        assert!(!d.has_access_key().unwrap());
        d.confirm_access_key().unwrap();
        let sent: haven_protocol::api::messages::AccessKeyBody =
            serde_json::from_str(&body).unwrap();
        let own = state::own_access_key(d.store()).unwrap().unwrap();
        assert_eq!(sent.access_key, Some(b64(&own)));
        assert_eq!(
            d.confirm_access_key().unwrap_err().code,
            ErrorCode::InvalidState
        );
    }

    #[test]
    fn signed_prekeys_rotate_weekly_and_retire_after_a_month() {
        let relay = SigningKey::from_bytes(&[3; 32]);
        let (mut d, upload) = device(&relay, [0xa1; 16], 1);
        let first: KeyUploadRequest = serde_json::from_str(&upload).unwrap();
        let first = first.signed_prekey.unwrap().key_id;
        assert_eq!(d.rotate_keys(NOW + 86_400).unwrap(), None);
        let body = d.rotate_keys(NOW + 8 * 86_400).unwrap().unwrap();
        let body: KeyUploadRequest = serde_json::from_str(&body).unwrap();
        let second = body.signed_prekey.unwrap().key_id;
        assert_ne!(first, second);
        assert!(body.last_resort_kem_prekey.is_some());
        d.keys_rotated().unwrap();
        // Both are kept until the new one is a month old.
        assert!(d.store().signed_prekey(first).unwrap().is_some());
        assert_eq!(d.rotate_keys(NOW + 9 * 86_400).unwrap(), None);
        assert!(d.store().signed_prekey(first).unwrap().is_some());
        // Then the first goes (a third key is due by then, and its upload retires the first).
        let third = d.rotate_keys(NOW + 40 * 86_400).unwrap();
        assert!(third.is_some());
        assert!(d.store().signed_prekey(first).unwrap().is_some());
        d.keys_rotated().unwrap();
        assert!(d.store().signed_prekey(first).unwrap().is_none());
        assert!(d.store().signed_prekey(second).unwrap().is_some());
    }

    #[test]
    fn sealed_sends_copies_to_own_devices_and_repair() {
        let relay = SigningKey::from_bytes(&[4; 32]);
        let (a_acc, b_acc) = ([0xa1; 16], [0xb2; 16]);
        let (a_hex, b_hex) = (hex::encode(a_acc), hex::encode(b_acc));
        let (mut alice1, a1_upload) = device(&relay, a_acc, 1);
        let (mut alice2, a2_upload) = device(&relay, a_acc, 2);
        let (mut bob, _) = device(&relay, b_acc, 1);

        // Bob learns Alice's device from a first message, and Alice gets Bob's access key
        // (what the messenger's contact card does).
        let reply = claim_reply(&[(&alice1, &a1_upload)], 0);
        let hello = send(&mut bob, &a_hex, &text(a_acc, "hello"), &[reply]).unwrap();
        open(&mut alice1, &hello.message_id, &envelope(&hello, 1)).unwrap();
        state::set_contact_access_key(alice1.store(), &b_acc, &[7; 16]).unwrap();

        // Alice's content to Bob is sealed now; the copy goes to her other device.
        let prepared = alice1
            .prepare_content(&text(b_acc, "sealed hello"), false)
            .unwrap();
        assert!(alice1.claim_paths(&b_hex).unwrap().is_empty());
        let to_bob = alice1
            .encrypt_prepared(&prepared, &b_hex, &[], NOW)
            .unwrap()
            .unwrap();
        assert!(to_bob.sealed);
        assert_eq!(to_bob.path, format!("/v1/messages/{b_hex}/sealed"));
        let body: SendBody = serde_json::from_str(&to_bob.body).unwrap();
        assert_eq!(body.access_key.as_deref(), Some(b64(&[7; 16]).as_str()));
        let opened = open(&mut bob, &to_bob.message_id, &envelope(&to_bob, 1)).unwrap();
        assert_eq!(text_of(&opened).0, "sealed hello");

        // The own copy: no other own device known yet, so the list is due (once a minute).
        assert!(alice1.own_devices_due(NOW).unwrap());
        assert!(!alice1.own_devices_due(NOW + 1).unwrap());
        assert!(alice1.claim_paths(&a_hex).unwrap().is_empty());
        let list = |numbers: &[u32]| DeviceList {
            devices: numbers
                .iter()
                .map(|&n| DeviceBody {
                    device_id: Id::from([n as u8; 16]),
                    device_number: n,
                    identity_key: String::new(),
                    name: None,
                    created_at: 0,
                    current: n == 1,
                })
                .collect(),
        };
        alice1
            .set_own_devices(&request_json(&list(&[1])).unwrap())
            .unwrap();
        assert!(
            alice1
                .encrypt_prepared(&prepared, &a_hex, &[], NOW)
                .unwrap()
                .is_none()
        );
        // Device 2 appears: the relay refuses the (empty) copy with a 409 naming it.
        let mismatch = ErrorBody {
            error: ErrorDetail {
                code: "mismatched_devices".into(),
                message: String::new(),
                mismatches: Some(vec![DeviceMismatch {
                    account_id: Id::from(a_acc),
                    missing_devices: vec![2],
                    extra_devices: Vec::new(),
                    removed_devices: Vec::new(),
                }]),
            },
        };
        alice1
            .repair_devices(&a_hex, &request_json(&mismatch).unwrap(), false)
            .unwrap();
        assert_eq!(
            alice1.claim_paths(&a_hex).unwrap(),
            [format!("/v1/keys/{a_hex}/2")]
        );
        let reply = claim_reply(&[(&alice2, &a2_upload)], 0);
        let copy = alice1
            .encrypt_prepared(&prepared, &a_hex, &[reply], NOW)
            .unwrap()
            .unwrap();
        // A copy to the own account carries no access key unless one was set for it.
        assert!(!copy.sealed);
        assert_eq!(copy.message_id, prepared);
        let opened = open(&mut alice2, &copy.message_id, &envelope(&copy, 2)).unwrap();
        assert_eq!(
            text_of(&opened),
            ("sealed hello", Conversation::Direct(b_acc))
        );
        alice1.finish_send(&prepared).unwrap();
        assert_eq!(
            alice1
                .encrypt_prepared(&prepared, &a_hex, &[], NOW)
                .unwrap_err()
                .code,
            ErrorCode::InvalidState
        );
        assert_eq!(
            alice1.repair_devices(&b_hex, "{}", false).unwrap_err().code,
            ErrorCode::InvalidResponse
        );
    }
}
