//! The JavaScript API (`#[wasm_bindgen]` exports): thin wrappers that check arguments, call the
//! cores and turn every failure into a `HavenError` (an `Error` with a stable `code`). Objects
//! are created by async factories (`WebDevice.create()`, `WebDiary.unlock(…)`), never by
//! constructors; `close()` wipes an object's secrets and later calls fail with code `closed`.

use std::cell::RefCell;
use std::rc::Rc;

use haven_sdk::snapshot::StorageKey;
use js_sys::{Object, Reflect, Uint8Array};
use wasm_bindgen::prelude::*;
use zeroize::Zeroizing;

use crate::device::DeviceCore;
use crate::diary::DiaryCore;
use crate::error::{ErrorCode, WebError, WebResult, invalid};
use crate::store::MemoryStore;

#[wasm_bindgen(typescript_custom_section)]
const TS_TYPES: &'static str = r#"
/** Every error thrown by this package: `name` is "HavenError", `code` is stable. */
export interface HavenError extends Error {
  name: "HavenError";
  code: "invalid_argument" | "invalid_key_length" | "malformed" | "closed" | "invalid_state"
      | "wrong_password" | "decryption_failed" | "identity_changed" | "invalid_response"
      | "protocol" | "limit" | "not_found" | "conflict" | "refused";
  /** For `identity_changed`: the contact account and device whose identity key changed. */
  account?: string;
  device?: number;
}
export interface SessionInfo {
  accountId: string; deviceId: string; deviceNumber: number; accessToken: string; expiresIn: number;
}
export interface LinkStart { code: string; boxPath: string; }
export interface PreparedSend { messageId: string; path: string; sealed: boolean; body: string; }
export type ServerFrame =
  | { type: "envelope"; seq: number; messageId: string; receivedAt: number;
      source: { accountId: string; deviceNumber: number } | null; content: string; hasPayload: boolean }
  | { type: "queue_empty" }
  | { type: "channel_entry"; channelId: string; seq: number; createdAt: number; entry: string }
  | { type: "ephemeral"; messageId: string; source: { accountId: string; deviceNumber: number } | null; content: string }
  | { type: "result"; requestId: number; status: number; json: string }
  | { type: "error"; json: string };
export interface DiaryEntry {
  title: string; body: string; mood?: string | null; tags: string[]; createdMs: number; updatedMs: number;
}
export interface SealedEntry { itemId: string; revision: number; body: Uint8Array; meta: Uint8Array; }
"#;

/// Converts an error to the JS `HavenError`.
pub(crate) fn js_error(e: WebError) -> JsValue {
    let err = js_sys::Error::new(&e.message);
    err.set_name("HavenError");
    // Setting a property on a fresh Error object cannot fail.
    let _ = Reflect::set(&err, &"code".into(), &e.code.as_str().into());
    if let Some(changed) = &e.identity {
        let _ = Reflect::set(&err, &"account".into(), &changed.account.as_str().into());
        let _ = Reflect::set(&err, &"device".into(), &changed.device.into());
    }
    err.into()
}

pub(crate) type JsResult<T> = Result<T, JsValue>;

pub(crate) fn lift<T>(r: WebResult<T>) -> JsResult<T> {
    r.map_err(js_error)
}

/// A JSON text as a JS value.
pub(crate) fn to_js(value: &impl serde::Serialize) -> JsResult<JsValue> {
    let text = serde_json::to_string(value)
        .map_err(|e| js_error(WebError::new(ErrorCode::Malformed, e.to_string())))?;
    js_sys::JSON::parse(&text)
}

/// A time or revision given as a JS number: a non-negative integer below 2^53.
pub(crate) fn whole(n: f64, what: &str) -> WebResult<u64> {
    if n.is_finite() && n >= 0.0 && n.fract() == 0.0 && n <= 9_007_199_254_740_991.0 {
        // Checked above: an exact non-negative integer below 2^53, so the cast is lossless.
        Ok(n as u64)
    } else {
        Err(invalid(format!("{what} must be a non-negative integer")))
    }
}

/// A string argument. Arguments arrive as `JsValue` and are checked here, so a value of the
/// wrong type from untyped JavaScript is a typed error instead of a trap in the glue code.
pub(crate) fn string_arg(v: &JsValue, what: &str) -> WebResult<String> {
    v.as_string()
        .ok_or_else(|| invalid(format!("{what} must be a string")))
}

/// An optional string argument (`undefined` or `null` for none).
pub(crate) fn opt_string_arg(v: &JsValue, what: &str) -> WebResult<Option<String>> {
    if v.is_undefined() || v.is_null() {
        Ok(None)
    } else {
        string_arg(v, what).map(Some)
    }
}

/// A secret string argument (wiped after use).
pub(crate) fn secret_arg(v: &JsValue, what: &str) -> WebResult<Zeroizing<String>> {
    string_arg(v, what).map(Zeroizing::new)
}

/// An array of strings.
pub(crate) fn strings_arg(v: &JsValue, what: &str) -> WebResult<Vec<String>> {
    if !js_sys::Array::is_array(v) {
        return Err(invalid(format!("{what} must be an array of strings")));
    }
    js_sys::Array::from(v)
        .iter()
        .map(|s| string_arg(&s, what))
        .collect()
}

/// A byte argument: a `Uint8Array`.
pub(crate) fn bytes_arg(v: &JsValue, what: &str) -> WebResult<Vec<u8>> {
    v.dyn_ref::<Uint8Array>()
        .map(Uint8Array::to_vec)
        .ok_or_else(|| invalid(format!("{what} must be a Uint8Array")))
}

/// A number argument holding a non-negative integer below 2^53.
pub(crate) fn number_arg(v: &JsValue, what: &str) -> WebResult<u64> {
    whole(
        v.as_f64()
            .ok_or_else(|| invalid(format!("{what} must be a number")))?,
        what,
    )
}

/// A `u32` number argument.
pub(crate) fn u32_arg(v: &JsValue, what: &str) -> WebResult<u32> {
    u32::try_from(number_arg(v, what)?).map_err(|_| invalid(format!("{what} is too large")))
}

/// The page key argument (32 bytes).
pub(crate) fn page_key(bytes: &[u8]) -> WebResult<StorageKey> {
    let key: [u8; 32] = bytes
        .try_into()
        .map_err(|_| WebError::new(ErrorCode::InvalidKeyLength, "the page key must be 32 bytes"))?;
    Ok(StorageKey::from_bytes(key))
}

pub(crate) fn closed() -> WebError {
    WebError::new(ErrorCode::Closed, "this object was closed")
}

/// 32 random bytes for a page key (`crypto.getRandomValues` underneath).
#[wasm_bindgen(js_name = generatePageKey)]
#[must_use]
pub fn generate_page_key() -> Vec<u8> {
    let mut k = [0u8; 32];
    rand::Rng::fill_bytes(&mut rand::rng(), &mut k);
    k.to_vec()
}

/// Decodes one binary WebSocket frame from the relay (PROTOCOL §11.14).
#[wasm_bindgen(js_name = parseServerFrame, unchecked_return_type = "ServerFrame")]
pub fn parse_server_frame(
    #[wasm_bindgen(unchecked_param_type = "Uint8Array")] frame: JsValue,
) -> JsResult<JsValue> {
    let frame = lift(bytes_arg(&frame, "frame"))?;
    to_js(&lift(crate::frames::parse_server_frame(&frame))?)
}

/// The binary ack frame (type 0x10) for message ids (32 hex each).
#[wasm_bindgen(js_name = ackFrame)]
pub fn ack_frame(
    #[wasm_bindgen(unchecked_param_type = "string[]")] message_ids: JsValue,
) -> JsResult<Vec<u8>> {
    let ids = lift(strings_arg(&message_ids, "messageIds"))?;
    lift(crate::frames::ack_frame(&ids))
}

/// The names of the published test vectors (`sdk/vectors/<name>.json`): the SDK's and the
/// client core's.
#[cfg(feature = "test-vectors")]
#[wasm_bindgen(js_name = testVectorNames)]
#[must_use]
pub fn test_vector_names() -> Vec<String> {
    haven_client_core::vectors::all_names()
        .into_iter()
        .map(str::to_owned)
        .collect()
}

/// Recomputes one published test vector file with this wasm build of the core; the text equals
/// `sdk/vectors/<name>.json`.
#[cfg(feature = "test-vectors")]
#[wasm_bindgen(js_name = computeTestVector)]
pub fn compute_test_vector(
    #[wasm_bindgen(unchecked_param_type = "string")] name: JsValue,
) -> JsResult<String> {
    let name = lift(string_arg(&name, "name"))?;
    haven_client_core::vectors::build_any_json(&name)
        .ok_or_else(|| js_error(invalid(format!("unknown test vector {name}"))))
}

/// One device: keys, sessions and relay session, all inside the wasm memory. Its state is
/// shared with the `WebMessenger` made for it.
#[wasm_bindgen]
pub struct WebDevice {
    inner: Rc<RefCell<Option<DeviceCore>>>,
}

impl std::fmt::Debug for WebDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebDevice").finish_non_exhaustive()
    }
}

impl WebDevice {
    fn with<T>(&self, f: impl FnOnce(&mut DeviceCore) -> WebResult<T>) -> JsResult<T> {
        let mut guard = self
            .inner
            .try_borrow_mut()
            .map_err(|_| js_error(WebError::new(ErrorCode::InvalidState, "re-entrant call")))?;
        let core = guard.as_mut().ok_or_else(|| js_error(closed()))?;
        lift(f(core))
    }

    /// The device's state, shared with a messenger (closing the device closes it for both).
    pub(crate) fn shared(&self) -> Rc<RefCell<Option<DeviceCore>>> {
        Rc::clone(&self.inner)
    }
}

#[wasm_bindgen]
impl WebDevice {
    /// A new device with a fresh identity key.
    pub async fn create() -> JsResult<WebDevice> {
        Ok(Self {
            inner: Rc::new(RefCell::new(Some(lift(DeviceCore::new())?))),
        })
    }

    /// A device from `exportState`'s bytes, decrypted with the page key (32 bytes).
    #[wasm_bindgen(js_name = importState)]
    pub async fn import_state(
        #[wasm_bindgen(js_name = pageKey, unchecked_param_type = "Uint8Array")]
        page_key_bytes: JsValue,
        #[wasm_bindgen(unchecked_param_type = "Uint8Array")] state: JsValue,
    ) -> JsResult<WebDevice> {
        let key = lift(bytes_arg(&page_key_bytes, "pageKey").map(Zeroizing::new))?;
        let key = lift(page_key(&key))?;
        let state = lift(bytes_arg(&state, "state"))?;
        let store = lift(MemoryStore::import(&key, &state).map_err(WebError::from))?;
        Ok(Self {
            inner: Rc::new(RefCell::new(Some(DeviceCore::from_store(store)))),
        })
    }

    /// The whole state, encrypted and authenticated under the page key (32 bytes), for
    /// IndexedDB. Export again after every call that changes state.
    #[wasm_bindgen(js_name = exportState)]
    pub fn export_state(
        &self,
        #[wasm_bindgen(js_name = pageKey, unchecked_param_type = "Uint8Array")]
        page_key_bytes: JsValue,
    ) -> JsResult<Vec<u8>> {
        let key = lift(bytes_arg(&page_key_bytes, "pageKey").map(Zeroizing::new))?;
        let key = lift(page_key(&key))?;
        self.with(|d| Ok(d.store().export(&key)?))
    }

    /// Wipes the device from memory; later calls throw `closed`.
    pub fn close(&self) {
        if let Ok(mut g) = self.inner.try_borrow_mut() {
            *g = None;
        }
    }

    /// Account id (32 hex), once logged in.
    #[wasm_bindgen(js_name = accountId)]
    pub fn account_id(&self) -> JsResult<String> {
        self.with(|d| d.account_hex())
    }

    /// This device's number, once logged in.
    #[wasm_bindgen(js_name = deviceNumber)]
    pub fn device_number(&self) -> JsResult<u32> {
        self.with(|d| d.device_number())
    }

    /// Public identity key, base64.
    #[wasm_bindgen(js_name = identityKey)]
    pub fn identity_key(&self) -> JsResult<String> {
        self.with(|d| d.identity_key_b64())
    }

    /// JSON body of `POST /v1/register/start`.
    #[wasm_bindgen(js_name = registerStart)]
    pub fn register_start(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string")] password: JsValue,
    ) -> JsResult<String> {
        let password = lift(secret_arg(&password, "password"))?;
        self.with(|d| d.register_start(password.as_bytes()))
    }

    /// JSON body of `POST /v1/register/finish` from the answer of `register/start`.
    #[wasm_bindgen(js_name = registerFinish)]
    pub fn register_finish(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string")] password: JsValue,
        #[wasm_bindgen(js_name = startAnswer, unchecked_param_type = "string")] reply_json: JsValue,
        #[wasm_bindgen(unchecked_param_type = "string | undefined")] username: JsValue,
    ) -> JsResult<String> {
        let password = lift(secret_arg(&password, "password"))?;
        let reply = lift(string_arg(&reply_json, "startAnswer"))?;
        let username = lift(opt_string_arg(&username, "username"))?;
        self.with(|d| d.register_finish(password.as_bytes(), &reply, username.as_deref()))
    }

    /// JSON body of `POST /v1/login/start`: this device logs in again (after a logout or the
    /// end of its session). A new device joins by linking (`linkStart`), never by password.
    #[wasm_bindgen(js_name = loginStart)]
    pub fn login_start(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string")] password: JsValue,
    ) -> JsResult<String> {
        let password = lift(secret_arg(&password, "password"))?;
        self.with(|d| d.login_start(password.as_bytes()))
    }

    /// JSON body of `POST /v1/login/finish` from the answer of `login/start` (with the TOTP
    /// code when the account has TOTP on); throws `wrong_password` when OPAQUE detects a wrong
    /// password.
    #[wasm_bindgen(js_name = loginFinish)]
    pub fn login_finish(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string")] password: JsValue,
        #[wasm_bindgen(js_name = startAnswer, unchecked_param_type = "string")] reply_json: JsValue,
        #[wasm_bindgen(unchecked_param_type = "string | undefined")] totp: JsValue,
    ) -> JsResult<String> {
        let password = lift(secret_arg(&password, "password"))?;
        let reply = lift(string_arg(&reply_json, "startAnswer"))?;
        let totp = lift(opt_string_arg(&totp, "totp"))?;
        self.with(|d| d.login_finish(password.as_bytes(), &reply, totp.as_deref()))
    }

    /// JSON body of `POST /v1/account/reauth/start` (fresh authentication).
    #[wasm_bindgen(js_name = reauthStart)]
    pub fn reauth_start(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string")] password: JsValue,
    ) -> JsResult<String> {
        let password = lift(secret_arg(&password, "password"))?;
        self.with(|d| d.reauth_start(password.as_bytes()))
    }

    /// JSON body of `POST /v1/account/reauth/finish` from the answer of `reauth/start`; its
    /// answer's `fresh_auth` is the proof for one call's `Haven-Fresh-Auth` header.
    #[wasm_bindgen(js_name = reauthFinish)]
    pub fn reauth_finish(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string")] password: JsValue,
        #[wasm_bindgen(js_name = startAnswer, unchecked_param_type = "string")] reply_json: JsValue,
        #[wasm_bindgen(unchecked_param_type = "string | undefined")] totp: JsValue,
    ) -> JsResult<String> {
        let password = lift(secret_arg(&password, "password"))?;
        let reply = lift(string_arg(&reply_json, "startAnswer"))?;
        let totp = lift(opt_string_arg(&totp, "totp"))?;
        self.with(|d| d.reauth_finish(password.as_bytes(), &reply, totp.as_deref()))
    }

    /// JSON body of `POST /v1/account/password/start` or `/v1/account/recovery/start`: an
    /// OPAQUE registration of the new password or recovery code.
    #[wasm_bindgen(js_name = credentialStart)]
    pub fn credential_start(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string")] secret: JsValue,
    ) -> JsResult<String> {
        let secret = lift(secret_arg(&secret, "secret"))?;
        self.with(|d| d.credential_start(secret.as_bytes()))
    }

    /// JSON body of the matching `…/finish` from the answer of `…/start`.
    #[wasm_bindgen(js_name = credentialFinish)]
    pub fn credential_finish(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string")] secret: JsValue,
        #[wasm_bindgen(js_name = startAnswer, unchecked_param_type = "string")] reply_json: JsValue,
    ) -> JsResult<String> {
        let secret = lift(secret_arg(&secret, "secret"))?;
        let reply = lift(string_arg(&reply_json, "startAnswer"))?;
        self.with(|d| d.credential_finish(secret.as_bytes(), &reply))
    }

    /// JSON body of `POST /v1/recover/start`: the recovery code (as typed) and the new
    /// password, by `username` or by this device's account when omitted.
    #[wasm_bindgen(js_name = recoverStart)]
    pub fn recover_start(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string")] code: JsValue,
        #[wasm_bindgen(js_name = newPassword, unchecked_param_type = "string")]
        new_password: JsValue,
        #[wasm_bindgen(unchecked_param_type = "string | undefined")] username: JsValue,
    ) -> JsResult<String> {
        let code = lift(secret_arg(&code, "code"))?;
        let new_password = lift(secret_arg(&new_password, "newPassword"))?;
        let username = lift(opt_string_arg(&username, "username"))?;
        self.with(|d| d.recover_start(&code, new_password.as_bytes(), username.as_deref()))
    }

    /// JSON body of `POST /v1/recover/finish` from the answer of `recover/start`.
    #[wasm_bindgen(js_name = recoverFinish)]
    pub fn recover_finish(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string")] code: JsValue,
        #[wasm_bindgen(js_name = newPassword, unchecked_param_type = "string")]
        new_password: JsValue,
        #[wasm_bindgen(js_name = startAnswer, unchecked_param_type = "string")] reply_json: JsValue,
        #[wasm_bindgen(unchecked_param_type = "string | undefined")] totp: JsValue,
    ) -> JsResult<String> {
        let code = lift(secret_arg(&code, "code"))?;
        let new_password = lift(secret_arg(&new_password, "newPassword"))?;
        let reply = lift(string_arg(&reply_json, "startAnswer"))?;
        let totp = lift(opt_string_arg(&totp, "totp"))?;
        self.with(|d| d.recover_finish(&code, new_password.as_bytes(), &reply, totp.as_deref()))
    }

    /// A new recovery code to show the user once (then register it with `credentialStart`).
    #[wasm_bindgen(js_name = generateRecoveryCode)]
    pub fn generate_recovery_code(&self) -> JsResult<String> {
        self.with(|_| Ok(crate::device::generate_recovery_code().to_string()))
    }

    /// A new device's link, from the answer of `POST /v1/provisioning`: `{code, boxPath}`
    /// (show the code to a device of the account; poll the box).
    #[wasm_bindgen(js_name = linkStart, unchecked_return_type = "LinkStart")]
    pub fn link_start(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string")] created: JsValue,
    ) -> JsResult<JsValue> {
        let created = lift(string_arg(&created, "created"))?;
        let (code, box_path) = self.with(|d| d.link_start(&created))?;
        to_js(&serde_json::json!({ "code": code, "boxPath": box_path }))
    }

    /// Opens the grant polled from the box: the JSON body of `POST /v1/devices/link`.
    #[wasm_bindgen(js_name = linkOpen)]
    pub fn link_open(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string")] message: JsValue,
    ) -> JsResult<String> {
        let message = lift(string_arg(&message, "message"))?;
        self.with(|d| d.link_open(&message))
    }

    /// After the session and keys: the granted keys kept, the own list (its JSON) accepted;
    /// returns the body of `PUT /v1/account/device-list` naming this device (then
    /// `ownListPublished`).
    #[wasm_bindgen(js_name = linkJoin)]
    pub fn link_join(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string")] list: JsValue,
        #[wasm_bindgen(js_name = nowSecs, unchecked_param_type = "number")] now_secs: JsValue,
    ) -> JsResult<String> {
        let list = lift(string_arg(&list, "list"))?;
        let now = lift(number_arg(&now_secs, "nowSecs"))?;
        self.with(|d| d.link_join(&list, now))
    }

    /// Approves the device showing `code` with the answer of `POST /v1/devices/link-token`:
    /// `{path, body}` of the `PUT` that delivers the sealed grant.
    #[wasm_bindgen(js_name = approveLink, unchecked_return_type = "{ path: string; body: string }")]
    pub fn approve_link(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string")] code: JsValue,
        #[wasm_bindgen(js_name = tokenAnswer, unchecked_param_type = "string")] token: JsValue,
    ) -> JsResult<JsValue> {
        let code = lift(string_arg(&code, "code"))?;
        let token = lift(secret_arg(&token, "tokenAnswer"))?;
        let (path, body) = self.with(|d| d.approve_link(&code, &token))?;
        to_js(&serde_json::json!({ "path": path, "body": body }))
    }

    /// The body of `PUT /v1/account/device-list` without device `number` (then
    /// `ownListPublished`), or `null` when the own list does not name it.
    #[wasm_bindgen(js_name = unlinkList)]
    pub fn unlink_list(
        &self,
        number: u32,
        #[wasm_bindgen(js_name = nowSecs, unchecked_param_type = "number")] now_secs: JsValue,
    ) -> JsResult<Option<String>> {
        let now = lift(number_arg(&now_secs, "nowSecs"))?;
        self.with(|d| d.unlink_list(number, now))
    }

    /// Takes a `TokenResponse` (register/finish, login/finish, token/refresh).
    #[wasm_bindgen(js_name = setSession, unchecked_return_type = "SessionInfo")]
    pub fn set_session(
        &self,
        #[wasm_bindgen(js_name = tokenResponse, unchecked_param_type = "string")]
        token_json: JsValue,
    ) -> JsResult<JsValue> {
        let text = lift(secret_arg(&token_json, "tokenResponse"))?;
        let info = self.with(|d| d.set_session(&text))?;
        to_js(&info)
    }

    /// JSON body of `POST /v1/token/refresh`.
    #[wasm_bindgen(js_name = refreshBody)]
    pub fn refresh_body(&self) -> JsResult<String> {
        self.with(|d| d.refresh_body())
    }

    /// JSON body of `PUT /v1/account/access-key` with a fresh access key (a new account's first
    /// device, after its keys are uploaded); `confirmAccessKey()` once the relay accepted it.
    #[wasm_bindgen(js_name = prepareAccessKey)]
    pub fn prepare_access_key(&self) -> JsResult<String> {
        self.with(|d| d.prepare_access_key())
    }

    /// The relay accepted the access key of `prepareAccessKey`: contact cards carry it from
    /// now on, so contacts send to this account sealed.
    #[wasm_bindgen(js_name = confirmAccessKey)]
    pub fn confirm_access_key(&self) -> JsResult<()> {
        self.with(|d| d.confirm_access_key())
    }

    /// Whether this device holds the account's access key.
    #[wasm_bindgen(js_name = hasAccessKey)]
    pub fn has_access_key(&self) -> JsResult<bool> {
        self.with(|d| d.has_access_key())
    }

    /// Pins the relay key from `GET /v1/certificate/key`'s answer.
    #[wasm_bindgen(js_name = setRelayKey)]
    pub fn set_relay_key(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string")] answer: JsValue,
    ) -> JsResult<()> {
        let text = lift(string_arg(&answer, "answer"))?;
        self.with(|d| d.set_relay_key(&text))
    }

    /// Whether to fetch `POST /v1/certificate` before sending.
    #[wasm_bindgen(js_name = needsCertificate)]
    pub fn needs_certificate(
        &self,
        #[wasm_bindgen(unchecked_param_type = "number")] now_secs: JsValue,
    ) -> JsResult<bool> {
        let now = lift(number_arg(&now_secs, "now"))?;
        self.with(|d| Ok(d.needs_certificate(now)))
    }

    /// Takes `POST /v1/certificate`'s answer (checked against the pinned relay key).
    #[wasm_bindgen(js_name = setCertificate)]
    pub fn set_certificate(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string")] answer: JsValue,
        #[wasm_bindgen(unchecked_param_type = "number")] now_secs: JsValue,
    ) -> JsResult<()> {
        let text = lift(string_arg(&answer, "answer"))?;
        let now = lift(number_arg(&now_secs, "now"))?;
        self.with(|d| d.set_certificate(&text, now))
    }

    /// Whether to fetch the relay's franking key (`GET /v1/franking/key`, no authentication)
    /// before sending (PROTOCOL §16.9).
    #[wasm_bindgen(js_name = needsFrankingKey)]
    pub fn needs_franking_key(
        &self,
        #[wasm_bindgen(unchecked_param_type = "number")] now_secs: JsValue,
    ) -> JsResult<bool> {
        let now = lift(number_arg(&now_secs, "now"))?;
        self.with(|d| d.needs_franking_key(now))
    }

    /// Takes `GET /v1/franking/key`'s answer, or `null` for a 404 (the relay offers none);
    /// stored sends are franked with it from now on.
    #[wasm_bindgen(js_name = setFrankingKey)]
    pub fn set_franking_key(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string | null")] answer: JsValue,
        #[wasm_bindgen(unchecked_param_type = "number")] now_secs: JsValue,
    ) -> JsResult<()> {
        let text = answer.as_string();
        let now = lift(number_arg(&now_secs, "now"))?;
        self.with(|d| d.set_franking_key(text.as_deref(), now))
    }

    /// JSON body of `PUT /v1/keys` (base keys on the first call, then a one-time batch).
    #[wasm_bindgen(js_name = prekeyUpload)]
    pub fn prekey_upload(
        &self,
        #[wasm_bindgen(unchecked_param_type = "number")] now_secs: JsValue,
    ) -> JsResult<String> {
        let now = lift(number_arg(&now_secs, "now"))?;
        self.with(|d| d.prekey_upload(now))
    }

    /// From `GET /v1/keys/counts`'s answer: the JSON body of `PUT /v1/keys` with a new batch of
    /// one-time keys when the relay reports low stock, else `undefined`.
    #[wasm_bindgen(js_name = replenishKeys)]
    pub fn replenish_keys(
        &self,
        #[wasm_bindgen(js_name = countsAnswer, unchecked_param_type = "string")]
        counts_json: JsValue,
        #[wasm_bindgen(unchecked_param_type = "number")] now_secs: JsValue,
    ) -> JsResult<Option<String>> {
        let text = lift(string_arg(&counts_json, "countsAnswer"))?;
        let now = lift(number_arg(&now_secs, "now"))?;
        self.with(|d| d.replenish_keys(&text, now))
    }

    /// Signed-prekey rotation (weekly, as natively): the JSON body of `PUT /v1/keys` with a new
    /// signed prekey when one is due (then `keysRotated()`), else `undefined`.
    #[wasm_bindgen(js_name = rotateKeys)]
    pub fn rotate_keys(
        &self,
        #[wasm_bindgen(unchecked_param_type = "number")] now_secs: JsValue,
    ) -> JsResult<Option<String>> {
        let now = lift(number_arg(&now_secs, "now"))?;
        self.with(|d| d.rotate_keys(now))
    }

    /// The relay took the keys of `rotateKeys`: the retired ones are deleted.
    #[wasm_bindgen(js_name = keysRotated)]
    pub fn keys_rotated(&self) -> JsResult<()> {
        self.with(|d| d.keys_rotated())
    }

    /// Whether to `GET /v1/devices` (then `setOwnDevices`) before the copy of a send to this
    /// account's other devices.
    #[wasm_bindgen(js_name = ownDevicesDue)]
    pub fn own_devices_due(
        &self,
        #[wasm_bindgen(unchecked_param_type = "number")] now_secs: JsValue,
    ) -> JsResult<bool> {
        let now = lift(number_arg(&now_secs, "now"))?;
        self.with(|d| d.own_devices_due(now))
    }

    /// Takes `GET /v1/devices`'s answer as this account's devices.
    #[wasm_bindgen(js_name = setOwnDevices)]
    pub fn set_own_devices(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string")] answer: JsValue,
    ) -> JsResult<()> {
        let text = lift(string_arg(&answer, "answer"))?;
        self.with(|d| d.set_own_devices(&text))
    }

    /// Key-directory paths to `GET` before sending to `account`.
    #[wasm_bindgen(js_name = claimPaths)]
    pub fn claim_paths(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string")] account: JsValue,
    ) -> JsResult<Vec<String>> {
        let account = lift(string_arg(&account, "account"))?;
        self.with(|d| d.claim_paths(&account))
    }

    /// Encrypts the prepared content `messageId` (made by a `WebMessenger` step) for every
    /// device of `account`; `claimAnswers` are the answers to `claimPaths(account)`. `null` when
    /// there is nothing to send (this account without another device).
    #[wasm_bindgen(js_name = encryptPrepared, unchecked_return_type = "PreparedSend | null")]
    pub fn encrypt_prepared(
        &self,
        #[wasm_bindgen(js_name = messageId, unchecked_param_type = "string")] message_id: JsValue,
        #[wasm_bindgen(unchecked_param_type = "string")] account: JsValue,
        #[wasm_bindgen(js_name = claimAnswers, unchecked_param_type = "string[]")]
        bundle_replies: JsValue,
        #[wasm_bindgen(unchecked_param_type = "number")] now_secs: JsValue,
    ) -> JsResult<JsValue> {
        let message_id = lift(string_arg(&message_id, "messageId"))?;
        let account = lift(string_arg(&account, "account"))?;
        let replies = lift(strings_arg(&bundle_replies, "claimAnswers"))?;
        let now = lift(number_arg(&now_secs, "now"))?;
        match self.with(|d| d.encrypt_prepared(&message_id, &account, &replies, now))? {
            Some(prepared) => to_js(&prepared),
            None => Ok(JsValue::NULL),
        }
    }

    /// Forgets the prepared content `messageId` (delivered, or given up).
    #[wasm_bindgen(js_name = finishSend)]
    pub fn finish_send(
        &self,
        #[wasm_bindgen(js_name = messageId, unchecked_param_type = "string")] message_id: JsValue,
    ) -> JsResult<()> {
        let message_id = lift(string_arg(&message_id, "messageId"))?;
        self.with(|d| d.finish_send(&message_id))
    }

    /// Applies a 409/410 answer of a send to the device list of `account`. A device the
    /// account's signed list does not name throws `need_device_list` (fetch the list,
    /// `acceptDeviceList`, repair again with `listFresh`), then `device_list_refused`.
    #[wasm_bindgen(js_name = repairDevices)]
    pub fn repair_devices(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string")] account: JsValue,
        #[wasm_bindgen(js_name = errorAnswer, unchecked_param_type = "string")] error_json: JsValue,
        #[wasm_bindgen(js_name = listFresh, unchecked_param_type = "boolean | undefined")]
        list_fresh: JsValue,
    ) -> JsResult<()> {
        let account = lift(string_arg(&account, "account"))?;
        let text = lift(string_arg(&error_json, "errorAnswer"))?;
        let fresh = list_fresh.as_bool().unwrap_or(false);
        self.with(|d| d.repair_devices(&account, &text, fresh))
    }

    /// Whether to fetch `account`'s signed device list (`deviceListPath`) before a send.
    #[wasm_bindgen(js_name = deviceListDue)]
    pub fn device_list_due(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string")] account: JsValue,
        #[wasm_bindgen(js_name = nowSecs, unchecked_param_type = "number")] now_secs: JsValue,
    ) -> JsResult<bool> {
        let account = lift(string_arg(&account, "account"))?;
        let now = lift(number_arg(&now_secs, "nowSecs"))?;
        self.with(|d| d.device_list_due(&account, now))
    }

    /// Takes the relay's answer for `account`'s signed device list: its JSON text, or `null`
    /// for a 404 `device_list_not_found`. Returns the change worth telling the user (devices
    /// added, removed, re-keyed) or `null`; throws `account_key_changed` or
    /// `device_list_refused`.
    #[wasm_bindgen(js_name = acceptDeviceList)]
    pub fn accept_device_list(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string")] account: JsValue,
        #[wasm_bindgen(unchecked_param_type = "string | null")] answer: JsValue,
        #[wasm_bindgen(js_name = nowSecs, unchecked_param_type = "number")] now_secs: JsValue,
    ) -> JsResult<JsValue> {
        let account = lift(string_arg(&account, "account"))?;
        let answer = answer.as_string();
        let now = lift(number_arg(&now_secs, "nowSecs"))?;
        let update = self.with(|d| d.accept_device_list(&account, answer.as_deref(), now))?;
        Ok(match update {
            None => JsValue::NULL,
            Some(u) => {
                let view = serde_json::json!({
                    "account": hex::encode(u.account),
                    "added": u.added,
                    "removed": u.removed,
                    "rekeyed": u.rekeyed,
                });
                to_js(&view)?
            }
        })
    }

    /// Whether this account has no signed device list of its own yet (publish one:
    /// `firstOwnList`, `PUT /v1/account/device-list`, `ownListPublished`).
    #[wasm_bindgen(js_name = needsFirstList)]
    pub fn needs_first_list(&self) -> JsResult<bool> {
        self.with(|d| d.needs_first_list())
    }

    /// The body of `PUT /v1/account/device-list` with this account's first signed list.
    #[wasm_bindgen(js_name = firstOwnList)]
    pub fn first_own_list(
        &self,
        #[wasm_bindgen(js_name = nowSecs, unchecked_param_type = "number")] now_secs: JsValue,
    ) -> JsResult<String> {
        let now = lift(number_arg(&now_secs, "nowSecs"))?;
        self.with(|d| d.first_own_list(now))
    }

    /// The relay took the list of `firstOwnList` (204).
    #[wasm_bindgen(js_name = ownListPublished)]
    pub fn own_list_published(
        &self,
        #[wasm_bindgen(js_name = nowSecs, unchecked_param_type = "number")] now_secs: JsValue,
    ) -> JsResult<()> {
        let now = lift(number_arg(&now_secs, "nowSecs"))?;
        self.with(|d| d.own_list_published(now))
    }

    /// The per-account safety number with `account` (60 digits), or `null` while unknown.
    #[wasm_bindgen(js_name = accountSafetyNumber)]
    pub fn account_safety_number(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string")] account: JsValue,
    ) -> JsResult<Option<String>> {
        let account = lift(string_arg(&account, "account"))?;
        self.with(|d| d.account_safety_number(&account))
    }

    /// Accepts `account`'s new identity key after `account_key_changed`.
    #[wasm_bindgen(js_name = acceptAccountKey)]
    pub fn accept_account_key(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string")] account: JsValue,
        #[wasm_bindgen(js_name = nowSecs, unchecked_param_type = "number")] now_secs: JsValue,
    ) -> JsResult<()> {
        let account = lift(string_arg(&account, "account"))?;
        let now = lift(number_arg(&now_secs, "nowSecs"))?;
        self.with(|d| d.accept_account_key(&account, now))
    }

    /// Marks `account` verified (after comparing the account safety number): a device it
    /// links later makes sends throw `unconfirmed_devices` until `confirmDevices`.
    #[wasm_bindgen(js_name = markVerified)]
    pub fn mark_verified(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string")] account: JsValue,
    ) -> JsResult<()> {
        let account = lift(string_arg(&account, "account"))?;
        self.with(|d| d.mark_verified(&account))
    }

    /// Confirms a verified account's new devices.
    #[wasm_bindgen(js_name = confirmDevices)]
    pub fn confirm_devices(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string")] account: JsValue,
    ) -> JsResult<()> {
        let account = lift(string_arg(&account, "account"))?;
        self.with(|d| d.confirm_devices(&account))
    }

    /// `null` when `account` is not verified, else the device numbers that wait for
    /// confirmation (empty when all are confirmed).
    #[wasm_bindgen(js_name = verification, unchecked_return_type = "number[] | null")]
    pub fn verification(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string")] account: JsValue,
    ) -> JsResult<JsValue> {
        let account = lift(string_arg(&account, "account"))?;
        match self.with(|d| d.verification(&account))? {
            None => Ok(JsValue::NULL),
            Some(devices) => to_js(&devices),
        }
    }
}

/// An unlocked diary.
#[wasm_bindgen]
pub struct WebDiary {
    inner: RefCell<Option<DiaryCore>>,
}

impl std::fmt::Debug for WebDiary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebDiary").finish_non_exhaustive()
    }
}

impl WebDiary {
    fn with<T>(&self, f: impl FnOnce(&mut DiaryCore) -> WebResult<T>) -> JsResult<T> {
        let mut guard = self
            .inner
            .try_borrow_mut()
            .map_err(|_| js_error(WebError::new(ErrorCode::InvalidState, "re-entrant call")))?;
        let core = guard.as_mut().ok_or_else(|| js_error(closed()))?;
        lift(f(core))
    }
}

#[wasm_bindgen]
impl WebDiary {
    /// A new diary under `passphrase` (Argon2id with `memoryKib` KiB and `passes` passes; at
    /// least 19456 KiB and 2 passes).
    pub async fn create(
        #[wasm_bindgen(unchecked_param_type = "string")] passphrase: JsValue,
        #[wasm_bindgen(js_name = memoryKib, unchecked_param_type = "number")] memory_kib: JsValue,
        #[wasm_bindgen(unchecked_param_type = "number")] passes: JsValue,
    ) -> JsResult<WebDiary> {
        let passphrase = lift(secret_arg(&passphrase, "passphrase"))?;
        let memory = lift(u32_arg(&memory_kib, "memoryKib"))?;
        let passes = lift(u32_arg(&passes, "passes"))?;
        let core = lift(DiaryCore::create(passphrase.as_bytes(), memory, passes))?;
        Ok(Self {
            inner: RefCell::new(Some(core)),
        })
    }

    /// Unlocks a diary from its record with the passphrase (throws `wrong_password`).
    pub async fn unlock(
        #[wasm_bindgen(unchecked_param_type = "Uint8Array")] record: JsValue,
        #[wasm_bindgen(unchecked_param_type = "string")] passphrase: JsValue,
    ) -> JsResult<WebDiary> {
        let record = lift(bytes_arg(&record, "record"))?;
        let passphrase = lift(secret_arg(&passphrase, "passphrase"))?;
        let core = lift(DiaryCore::unlock(&record, passphrase.as_bytes()))?;
        Ok(Self {
            inner: RefCell::new(Some(core)),
        })
    }

    /// The diary record to keep (no secret in clear: the wrapped key bundle and collection id).
    pub fn record(&self) -> JsResult<Vec<u8>> {
        self.with(|d| Ok(d.record()))
    }

    /// The ten recovery codes, available once right after `create`.
    #[wasm_bindgen(js_name = takeRecoveryCodes)]
    pub fn take_recovery_codes(&self) -> JsResult<Vec<String>> {
        self.with(|d| Ok(d.take_recovery_codes()))
    }

    /// The collection id (32 hex).
    #[wasm_bindgen(js_name = collectionId)]
    pub fn collection_id(&self) -> JsResult<String> {
        self.with(|d| Ok(d.collection_id()))
    }

    /// Seals an entry as revision `revision` of item `itemId` (new random id when omitted).
    #[wasm_bindgen(js_name = encryptEntry, unchecked_return_type = "SealedEntry")]
    pub fn encrypt_entry(
        &self,
        #[wasm_bindgen(unchecked_param_type = "DiaryEntry")] entry: JsValue,
        #[wasm_bindgen(js_name = itemId, unchecked_param_type = "string | undefined")]
        item_id: JsValue,
        #[wasm_bindgen(unchecked_param_type = "number")] revision: JsValue,
    ) -> JsResult<JsValue> {
        let item_id = lift(opt_string_arg(&item_id, "itemId"))?;
        let revision = lift(number_arg(&revision, "revision"))?;
        if !entry.is_object() {
            return Err(js_error(invalid("entry must be an object")));
        }
        let text = js_sys::JSON::stringify(&entry)
            .ok()
            .and_then(|s| s.as_string())
            .map(Zeroizing::new)
            .ok_or_else(|| js_error(invalid("entry is not a JSON object")))?;
        let sealed = self.with(|d| d.encrypt_entry(&text, item_id.as_deref(), revision))?;
        let out = Object::new();
        Reflect::set(&out, &"itemId".into(), &sealed.item_id.into())?;
        // Revisions are below 2^53 (checked on the way in), so the cast is lossless.
        Reflect::set(&out, &"revision".into(), &(sealed.revision as f64).into())?;
        Reflect::set(
            &out,
            &"body".into(),
            &Uint8Array::from(sealed.body.as_slice()).into(),
        )?;
        Reflect::set(
            &out,
            &"meta".into(),
            &Uint8Array::from(sealed.meta.as_slice()).into(),
        )?;
        Ok(out.into())
    }

    /// Opens an entry's two blobs (throws `decryption_failed` when tampered, moved or rolled
    /// back).
    #[wasm_bindgen(js_name = decryptEntry, unchecked_return_type = "DiaryEntry")]
    pub fn decrypt_entry(
        &self,
        #[wasm_bindgen(js_name = itemId, unchecked_param_type = "string")] item_id: JsValue,
        #[wasm_bindgen(unchecked_param_type = "number")] revision: JsValue,
        #[wasm_bindgen(unchecked_param_type = "Uint8Array")] body: JsValue,
        #[wasm_bindgen(unchecked_param_type = "Uint8Array")] meta: JsValue,
    ) -> JsResult<JsValue> {
        let item_id = lift(string_arg(&item_id, "itemId"))?;
        let revision = lift(number_arg(&revision, "revision"))?;
        let body = lift(bytes_arg(&body, "body"))?;
        let meta = lift(bytes_arg(&meta, "meta"))?;
        let text = self.with(|d| d.decrypt_entry(&item_id, revision, &body, &meta))?;
        js_sys::JSON::parse(&text)
    }

    /// Wipes the keys from memory; later calls throw `closed`.
    pub fn close(&self) {
        if let Ok(mut g) = self.inner.try_borrow_mut() {
            *g = None;
        }
    }
}
