//! The JavaScript API (`#[wasm_bindgen]` exports): thin wrappers that check arguments, call the
//! cores and turn every failure into a `HavenError` (an `Error` with a stable `code`). Objects
//! are created by async factories (`WebDevice.create()`, `WebDiary.unlock(…)`), never by
//! constructors; `close()` wipes an object's secrets and later calls fail with code `closed`.

use std::cell::RefCell;

use haven_sdk::snapshot::StorageKey;
use js_sys::{Object, Reflect, Uint8Array};
use wasm_bindgen::prelude::*;
use zeroize::Zeroizing;

use crate::device::DeviceCore;
use crate::diary::DiaryCore;
use crate::error::{ErrorCode, WebError, WebResult, invalid};
use crate::store::WebStore;

#[wasm_bindgen(typescript_custom_section)]
const TS_TYPES: &'static str = r#"
/** Every error thrown by this package: `name` is "HavenError", `code` is stable. */
export interface HavenError extends Error {
  name: "HavenError";
  code: "invalid_argument" | "invalid_key_length" | "malformed" | "closed" | "invalid_state"
      | "wrong_password" | "decryption_failed" | "identity_changed" | "invalid_response"
      | "protocol" | "limit";
}
export interface SessionInfo {
  accountId: string; deviceId: string; deviceNumber: number; accessToken: string; expiresIn: number;
}
export interface PreparedSend { messageId: string; contentId: string; body: string; }
export type OpenedContent =
  | { kind: "text"; messageId: string; sentAt: number; text: string; expireSecs: number }
  | { kind: "receipt"; receipt: "delivered" | "read"; messageIds: string[] }
  | { kind: "contact_card" }
  | { kind: "other"; name: string };
export type Opened =
  | { status: "message"; messageId: string; sender: { accountId: string; deviceNumber: number }; content: OpenedContent }
  | { status: "duplicate"; messageId: string }
  | { status: "rejected"; messageId: string; reason: string };
export type ServerFrame =
  | { type: "envelope"; seq: number; messageId: string; receivedAt: number;
      source: { accountId: string; deviceNumber: number } | null; content: string; hasPayload: boolean }
  | { type: "queue_empty" }
  | { type: "channel_entry"; channelId: string; seq: number }
  | { type: "ephemeral"; messageId: string; source: { accountId: string; deviceNumber: number } | null; content: string }
  | { type: "result"; requestId: number; status: number; json: string }
  | { type: "error"; json: string };
export interface DiaryEntry {
  title: string; body: string; mood?: string | null; tags: string[]; createdMs: number; updatedMs: number;
}
export interface SealedEntry { itemId: string; revision: number; body: Uint8Array; meta: Uint8Array; }
"#;

/// Converts an error to the JS `HavenError`.
fn js_error(e: WebError) -> JsValue {
    let err = js_sys::Error::new(&e.message);
    err.set_name("HavenError");
    // Setting a property on a fresh Error object cannot fail.
    let _ = Reflect::set(&err, &"code".into(), &e.code.as_str().into());
    err.into()
}

type JsResult<T> = Result<T, JsValue>;

fn lift<T>(r: WebResult<T>) -> JsResult<T> {
    r.map_err(js_error)
}

/// A JSON text as a JS value.
fn to_js(value: &impl serde::Serialize) -> JsResult<JsValue> {
    let text = serde_json::to_string(value)
        .map_err(|e| js_error(WebError::new(ErrorCode::Malformed, e.to_string())))?;
    js_sys::JSON::parse(&text)
}

/// A time or revision given as a JS number: a non-negative integer below 2^53.
fn whole(n: f64, what: &str) -> WebResult<u64> {
    if n.is_finite() && n >= 0.0 && n.fract() == 0.0 && n <= 9_007_199_254_740_991.0 {
        // Checked above: an exact non-negative integer below 2^53, so the cast is lossless.
        Ok(n as u64)
    } else {
        Err(invalid(format!("{what} must be a non-negative integer")))
    }
}

fn page_key(bytes: &[u8]) -> WebResult<StorageKey> {
    let key: [u8; 32] = bytes
        .try_into()
        .map_err(|_| WebError::new(ErrorCode::InvalidKeyLength, "the page key must be 32 bytes"))?;
    Ok(StorageKey::from_bytes(key))
}

fn closed() -> WebError {
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
pub fn parse_server_frame(frame: &[u8]) -> JsResult<JsValue> {
    to_js(&lift(crate::frames::parse_server_frame(frame))?)
}

/// The binary ack frame (type 0x10) for message ids (32 hex each).
#[wasm_bindgen(js_name = ackFrame)]
pub fn ack_frame(message_ids: Vec<String>) -> JsResult<Vec<u8>> {
    lift(crate::frames::ack_frame(&message_ids))
}

/// One device: keys, sessions and relay session, all inside the wasm memory.
#[wasm_bindgen]
pub struct WebDevice {
    inner: RefCell<Option<DeviceCore>>,
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
}

#[wasm_bindgen]
impl WebDevice {
    /// A new device with a fresh identity key.
    pub async fn create() -> JsResult<WebDevice> {
        Ok(Self {
            inner: RefCell::new(Some(DeviceCore::new())),
        })
    }

    /// A device from `exportState`'s bytes, decrypted with the page key (32 bytes).
    #[wasm_bindgen(js_name = importState)]
    pub async fn import_state(page_key_bytes: Vec<u8>, state: Vec<u8>) -> JsResult<WebDevice> {
        let key = lift(page_key(&page_key_bytes))?;
        drop(Zeroizing::new(page_key_bytes));
        let store = lift(WebStore::import(&key, &state))?;
        Ok(Self {
            inner: RefCell::new(Some(DeviceCore::from_store(store))),
        })
    }

    /// The whole state, encrypted and authenticated under the page key (32 bytes), for
    /// IndexedDB. Export again after every call that changes state.
    #[wasm_bindgen(js_name = exportState)]
    pub fn export_state(&self, page_key_bytes: &[u8]) -> JsResult<Vec<u8>> {
        let key = lift(page_key(page_key_bytes))?;
        self.with(|d| Ok(d.store().export(&key)))
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
    pub fn register_start(&self, password: String) -> JsResult<String> {
        let password = Zeroizing::new(password);
        self.with(|d| d.register_start(password.as_bytes()))
    }

    /// JSON body of `POST /v1/register/finish` from the answer of `register/start`.
    #[wasm_bindgen(js_name = registerFinish)]
    pub fn register_finish(
        &self,
        password: String,
        reply_json: &str,
        username: Option<String>,
    ) -> JsResult<String> {
        let password = Zeroizing::new(password);
        self.with(|d| d.register_finish(password.as_bytes(), reply_json, username.as_deref()))
    }

    /// JSON body of `POST /v1/login/start` (by username, or by this device's account id when
    /// `username` is omitted).
    #[wasm_bindgen(js_name = loginStart)]
    pub fn login_start(&self, password: String, username: Option<String>) -> JsResult<String> {
        let password = Zeroizing::new(password);
        self.with(|d| d.login_start(password.as_bytes(), username.as_deref()))
    }

    /// JSON body of `POST /v1/login/finish` from the answer of `login/start`; throws
    /// `wrong_password` when OPAQUE detects a wrong password.
    #[wasm_bindgen(js_name = loginFinish)]
    pub fn login_finish(&self, password: String, reply_json: &str) -> JsResult<String> {
        let password = Zeroizing::new(password);
        self.with(|d| d.login_finish(password.as_bytes(), reply_json))
    }

    /// Takes a `TokenResponse` (register/finish, login/finish, token/refresh).
    #[wasm_bindgen(js_name = setSession, unchecked_return_type = "SessionInfo")]
    pub fn set_session(&self, token_json: &str) -> JsResult<JsValue> {
        let info = self.with(|d| d.set_session(token_json))?;
        to_js(&info)
    }

    /// JSON body of `POST /v1/token/refresh`.
    #[wasm_bindgen(js_name = refreshBody)]
    pub fn refresh_body(&self) -> JsResult<String> {
        self.with(|d| d.refresh_body())
    }

    /// Pins the relay key from `GET /v1/certificate/key`'s answer.
    #[wasm_bindgen(js_name = setRelayKey)]
    pub fn set_relay_key(&self, json_text: &str) -> JsResult<()> {
        self.with(|d| d.set_relay_key(json_text))
    }

    /// Whether to fetch `POST /v1/certificate` before sending.
    #[wasm_bindgen(js_name = needsCertificate)]
    pub fn needs_certificate(&self, now_secs: f64) -> JsResult<bool> {
        let now = lift(whole(now_secs, "now"))?;
        self.with(|d| Ok(d.needs_certificate(now)))
    }

    /// Takes `POST /v1/certificate`'s answer (checked against the pinned relay key).
    #[wasm_bindgen(js_name = setCertificate)]
    pub fn set_certificate(&self, json_text: &str, now_secs: f64) -> JsResult<()> {
        let now = lift(whole(now_secs, "now"))?;
        self.with(|d| d.set_certificate(json_text, now))
    }

    /// JSON body of `PUT /v1/keys` (base keys on the first call, then a one-time batch).
    #[wasm_bindgen(js_name = prekeyUpload)]
    pub fn prekey_upload(&self, now_secs: f64) -> JsResult<String> {
        let now = lift(whole(now_secs, "now"))?;
        self.with(|d| d.prekey_upload(now))
    }

    /// Key-directory paths to `GET` before sending to `account`.
    #[wasm_bindgen(js_name = claimPaths)]
    pub fn claim_paths(&self, account: &str) -> JsResult<Vec<String>> {
        self.with(|d| d.claim_paths(account))
    }

    /// Encrypts a text for every device of `account`; `bundleReplies` are the answers to
    /// `claimPaths`. Returns the body of `POST /v1/messages/{account}`.
    #[wasm_bindgen(js_name = encryptText, unchecked_return_type = "PreparedSend")]
    pub fn encrypt_text(
        &self,
        account: &str,
        text: String,
        now_ms: f64,
        bundle_replies: Vec<String>,
    ) -> JsResult<JsValue> {
        let text = Zeroizing::new(text);
        let now = lift(whole(now_ms, "now"))?;
        let prepared = self.with(|d| d.encrypt_text(account, &text, now, &bundle_replies))?;
        to_js(&prepared)
    }

    /// Applies a 409/410 answer of a send to the device list of `account`.
    #[wasm_bindgen(js_name = repairDevices)]
    pub fn repair_devices(&self, account: &str, error_json: &str) -> JsResult<()> {
        self.with(|d| d.repair_devices(account, error_json))
    }

    /// Opens an envelope (`content` in base64, from a WebSocket frame or the REST mailbox).
    #[wasm_bindgen(js_name = openEnvelope, unchecked_return_type = "Opened")]
    pub fn open_envelope(
        &self,
        message_id: &str,
        content_b64: &str,
        now_secs: f64,
    ) -> JsResult<JsValue> {
        let now = lift(whole(now_secs, "now"))?;
        let opened = self.with(|d| d.open_envelope(message_id, content_b64, now))?;
        to_js(&opened)
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
    pub async fn create(passphrase: String, memory_kib: u32, passes: u32) -> JsResult<WebDiary> {
        let passphrase = Zeroizing::new(passphrase);
        let core = lift(DiaryCore::create(passphrase.as_bytes(), memory_kib, passes))?;
        Ok(Self {
            inner: RefCell::new(Some(core)),
        })
    }

    /// Unlocks a diary from its record with the passphrase (throws `wrong_password`).
    pub async fn unlock(record: Vec<u8>, passphrase: String) -> JsResult<WebDiary> {
        let passphrase = Zeroizing::new(passphrase);
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
        item_id: Option<String>,
        revision: f64,
    ) -> JsResult<JsValue> {
        let revision = lift(whole(revision, "revision"))?;
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
        item_id: &str,
        revision: f64,
        body: &[u8],
        meta: &[u8],
    ) -> JsResult<JsValue> {
        let revision = lift(whole(revision, "revision"))?;
        let text = self.with(|d| d.decrypt_entry(item_id, revision, body, meta))?;
        js_sys::JSON::parse(&text)
    }

    /// Wipes the keys from memory; later calls throw `closed`.
    pub fn close(&self) {
        if let Ok(mut g) = self.inner.try_borrow_mut() {
            *g = None;
        }
    }
}
