//! The synced diary's JavaScript face (`#[wasm_bindgen]` exports): `WebSyncedDiary` checks its
//! arguments, calls [`SyncedDiaryCore`] and turns results into JS values and failures into
//! `HavenError`s.

use std::cell::RefCell;

use wasm_bindgen::prelude::*;
use zeroize::Zeroizing;

use super::SyncedDiaryCore;
use crate::api::{
    JsResult, bytes_arg, closed, js_error, lift, number_arg, page_key, secret_arg, string_arg,
    u32_arg,
};
use crate::error::{ErrorCode, WebError, WebResult, invalid};

#[wasm_bindgen(typescript_custom_section)]
const TS_DIARY: &'static str = r#"
/** A vault request for the page to send with the access token (`HavenClient.call`). */
export interface DiaryRequest { method: "GET" | "PUT" | "POST" | "DELETE"; path: string; body: string | null; }
export interface DiaryQuery { text?: string; mood?: string; tag?: string; fromMs?: number; untilMs?: number; }
export interface ListedEntry {
  itemId: string; revision: number; pending: boolean; attachments: number; entry: DiaryEntry;
}
export interface DiaryRevision { revision: number; deleted: boolean; createdAt: number; entry: DiaryEntry | null; }
export interface DiarySyncReport { pulled: number; pushed: number; conflicts: number; pending: number; }
export interface DiaryOutcome { recoveryCodes?: string[]; report?: DiarySyncReport; }
"#;

/// The diary of one account synced through the relay's vault. Its state is the client core's
/// store in memory, exported as one sealed snapshot (`exportState`) for IndexedDB. Operations
/// that need the relay are driven by the page: `begin…`, then `nextRequest()` → `fetch` →
/// `answer(status, body)` until `nextRequest()` is `null`, then `finish()`.
#[wasm_bindgen]
pub struct WebSyncedDiary {
    inner: RefCell<Option<SyncedDiaryCore>>,
}

impl std::fmt::Debug for WebSyncedDiary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebSyncedDiary").finish_non_exhaustive()
    }
}

impl WebSyncedDiary {
    fn with<T>(&self, f: impl FnOnce(&mut SyncedDiaryCore) -> WebResult<T>) -> JsResult<T> {
        let mut guard = self
            .inner
            .try_borrow_mut()
            .map_err(|_| js_error(WebError::new(ErrorCode::InvalidState, "re-entrant call")))?;
        let core = guard.as_mut().ok_or_else(|| js_error(closed()))?;
        lift(f(core))
    }

    fn wrap(core: SyncedDiaryCore) -> Self {
        Self {
            inner: RefCell::new(Some(core)),
        }
    }
}

/// A JSON text handed to JavaScript as a value.
fn parse(text: &str) -> JsResult<JsValue> {
    js_sys::JSON::parse(text)
}

/// An entry or query argument: a plain object, as JSON text (wiped after use).
fn object_json(v: &JsValue, what: &str) -> WebResult<Zeroizing<String>> {
    if !v.is_object() {
        return Err(invalid(format!("{what} must be an object")));
    }
    js_sys::JSON::stringify(v)
        .ok()
        .and_then(|s| s.as_string())
        .map(Zeroizing::new)
        .ok_or_else(|| invalid(format!("{what} is not a JSON object")))
}

/// A page key argument (32 bytes), wiped after use.
fn key_arg(v: &JsValue) -> WebResult<haven_sdk::snapshot::StorageKey> {
    let bytes = bytes_arg(v, "pageKey").map(Zeroizing::new)?;
    page_key(&bytes)
}

#[wasm_bindgen]
impl WebSyncedDiary {
    /// A diary over a fresh, empty state (locked; `beginCreate`, `beginUnlock` or
    /// `beginRecover` next).
    pub async fn create() -> JsResult<WebSyncedDiary> {
        Ok(Self::wrap(lift(SyncedDiaryCore::new())?))
    }

    /// A diary over the state `exportState` gave, decrypted with the page key (locked).
    #[wasm_bindgen(js_name = importState)]
    pub async fn import_state(
        #[wasm_bindgen(js_name = pageKey, unchecked_param_type = "Uint8Array")] page_key: JsValue,
        #[wasm_bindgen(unchecked_param_type = "Uint8Array")] state: JsValue,
    ) -> JsResult<WebSyncedDiary> {
        let key = lift(key_arg(&page_key))?;
        let state = lift(bytes_arg(&state, "state"))?;
        Ok(Self::wrap(lift(SyncedDiaryCore::import(&key, &state))?))
    }

    /// The whole state (wrapped key bundle, entries as the relay has them, pending edits, sync
    /// token), sealed under the page key (32 bytes). Export again after every change.
    #[wasm_bindgen(js_name = exportState)]
    pub fn export_state(
        &self,
        #[wasm_bindgen(js_name = pageKey, unchecked_param_type = "Uint8Array")] page_key: JsValue,
    ) -> JsResult<Vec<u8>> {
        let key = lift(key_arg(&page_key))?;
        self.with(|d| d.export(&key))
    }

    /// Whether the diary is unlocked.
    #[wasm_bindgen(js_name = isUnlocked)]
    pub fn is_unlocked(&self) -> JsResult<bool> {
        self.with(|d| Ok(d.is_unlocked()))
    }

    /// Starts creating the account's diary under `passphrase` (Argon2id with `memoryKib` KiB and
    /// `passes` passes); `finish()` gives `{recoveryCodes}`, to show once.
    #[wasm_bindgen(js_name = beginCreate)]
    pub fn begin_create(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string")] passphrase: JsValue,
        #[wasm_bindgen(js_name = memoryKib, unchecked_param_type = "number")] memory_kib: JsValue,
        #[wasm_bindgen(unchecked_param_type = "number")] passes: JsValue,
    ) -> JsResult<()> {
        let passphrase = lift(secret_arg(&passphrase, "passphrase"))?;
        let memory = lift(u32_arg(&memory_kib, "memoryKib"))?;
        let passes = lift(u32_arg(&passes, "passes"))?;
        self.with(|d| d.begin_create(passphrase.as_bytes(), memory, passes))
    }

    /// Starts unlocking with the passphrase (no request when this state's copy of the bundle
    /// opens; else one, for the relay's copy).
    #[wasm_bindgen(js_name = beginUnlock)]
    pub fn begin_unlock(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string")] passphrase: JsValue,
    ) -> JsResult<()> {
        let passphrase = lift(secret_arg(&passphrase, "passphrase"))?;
        self.with(|d| d.begin_unlock(passphrase.as_bytes()))
    }

    /// Starts a recovery with a recovery code and a new passphrase.
    #[wasm_bindgen(js_name = beginRecover)]
    pub fn begin_recover(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string")] code: JsValue,
        #[wasm_bindgen(js_name = newPassphrase, unchecked_param_type = "string")]
        new_passphrase: JsValue,
        #[wasm_bindgen(js_name = memoryKib, unchecked_param_type = "number")] memory_kib: JsValue,
        #[wasm_bindgen(unchecked_param_type = "number")] passes: JsValue,
    ) -> JsResult<()> {
        let code = lift(secret_arg(&code, "code"))?;
        let passphrase = lift(secret_arg(&new_passphrase, "newPassphrase"))?;
        let memory = lift(u32_arg(&memory_kib, "memoryKib"))?;
        let passes = lift(u32_arg(&passes, "passes"))?;
        self.with(|d| d.begin_recover(&code, passphrase.as_bytes(), memory, passes))
    }

    /// Starts a sync (pending edits pushed, conflicts merged, changes pulled); `finish()` gives
    /// `{report}`.
    #[wasm_bindgen(js_name = beginSync)]
    pub fn begin_sync(&self) -> JsResult<()> {
        self.with(SyncedDiaryCore::begin_sync)
    }

    /// Starts deleting an entry on the relay; `finish()` throws `conflict` if it changed
    /// elsewhere first.
    #[wasm_bindgen(js_name = beginDelete)]
    pub fn begin_delete(
        &self,
        #[wasm_bindgen(js_name = itemId, unchecked_param_type = "string")] item_id: JsValue,
    ) -> JsResult<()> {
        let id = lift(string_arg(&item_id, "itemId"))?;
        self.with(|d| d.begin_delete(&id))
    }

    /// Starts reading an entry's history; `finish()` gives its revisions, oldest first.
    #[wasm_bindgen(js_name = beginHistory)]
    pub fn begin_history(
        &self,
        #[wasm_bindgen(js_name = itemId, unchecked_param_type = "string")] item_id: JsValue,
    ) -> JsResult<()> {
        let id = lift(string_arg(&item_id, "itemId"))?;
        self.with(|d| d.begin_history(&id))
    }

    /// Starts restoring a deleted entry from its history (the next sync sends it).
    #[wasm_bindgen(js_name = beginRestore)]
    pub fn begin_restore(
        &self,
        #[wasm_bindgen(js_name = itemId, unchecked_param_type = "string")] item_id: JsValue,
    ) -> JsResult<()> {
        let id = lift(string_arg(&item_id, "itemId"))?;
        self.with(|d| d.begin_restore(&id))
    }

    /// Starts changing the passphrase.
    #[wasm_bindgen(js_name = beginChangePassword)]
    pub fn begin_change_password(
        &self,
        #[wasm_bindgen(js_name = newPassphrase, unchecked_param_type = "string")]
        new_passphrase: JsValue,
        #[wasm_bindgen(js_name = memoryKib, unchecked_param_type = "number")] memory_kib: JsValue,
        #[wasm_bindgen(unchecked_param_type = "number")] passes: JsValue,
    ) -> JsResult<()> {
        let passphrase = lift(secret_arg(&new_passphrase, "newPassphrase"))?;
        let memory = lift(u32_arg(&memory_kib, "memoryKib"))?;
        let passes = lift(u32_arg(&passes, "passes"))?;
        self.with(|d| d.begin_change_password(passphrase.as_bytes(), memory, passes))
    }

    /// Starts replacing the recovery codes; `finish()` gives `{recoveryCodes}`.
    #[wasm_bindgen(js_name = beginRegenerateCodes)]
    pub fn begin_regenerate_codes(&self) -> JsResult<()> {
        self.with(SyncedDiaryCore::begin_regenerate_codes)
    }

    /// The next request of the operation in progress, `null` once it is over.
    #[wasm_bindgen(js_name = nextRequest, unchecked_return_type = "DiaryRequest | null")]
    pub fn next_request(&self) -> JsResult<JsValue> {
        match self.with(SyncedDiaryCore::next_request)? {
            Some(request) => crate::api::to_js(&request),
            None => Ok(JsValue::NULL),
        }
    }

    /// The relay's answer to the last request (HTTP status and body text). Throws the step's
    /// error, which ends the operation; `refused` means a refusal the step does not expect
    /// (the page reports the relay's own error).
    pub fn answer(
        &self,
        #[wasm_bindgen(unchecked_param_type = "number")] status: JsValue,
        #[wasm_bindgen(unchecked_param_type = "string")] body: JsValue,
    ) -> JsResult<()> {
        let status =
            lift(number_arg(&status, "status").and_then(|s| {
                u16::try_from(s).map_err(|_| invalid("status is not an HTTP status"))
            }))?;
        let body = lift(secret_arg(&body, "body"))?;
        self.with(|d| d.answer(status, &body))
    }

    /// Ends the operation once `nextRequest()` returned `null`: recovery codes, a sync report,
    /// a history, or nothing.
    #[wasm_bindgen(unchecked_return_type = "DiaryOutcome | DiaryRevision[]")]
    pub fn finish(&self) -> JsResult<JsValue> {
        let text = self.with(|d| d.finish().map(Zeroizing::new))?;
        parse(&text)
    }

    /// Abandons the operation in progress.
    pub fn abort(&self) -> JsResult<()> {
        self.with(|d| {
            d.abort();
            Ok(())
        })
    }

    /// Writes a new entry (local first; the next sync sends it); returns its id.
    pub fn write(
        &self,
        #[wasm_bindgen(unchecked_param_type = "DiaryEntry")] entry: JsValue,
    ) -> JsResult<String> {
        let text = lift(object_json(&entry, "entry"))?;
        self.with(|d| d.write(&text))
    }

    /// Replaces an entry's fields (its attachments are kept; local first).
    pub fn edit(
        &self,
        #[wasm_bindgen(js_name = itemId, unchecked_param_type = "string")] item_id: JsValue,
        #[wasm_bindgen(unchecked_param_type = "DiaryEntry")] entry: JsValue,
    ) -> JsResult<()> {
        let id = lift(string_arg(&item_id, "itemId"))?;
        let text = lift(object_json(&entry, "entry"))?;
        self.with(|d| d.edit(&id, &text))
    }

    /// An entry as this page sees it (pending edits included), `null` if deleted or unknown.
    #[wasm_bindgen(unchecked_return_type = "ListedEntry | null")]
    pub fn show(
        &self,
        #[wasm_bindgen(js_name = itemId, unchecked_param_type = "string")] item_id: JsValue,
    ) -> JsResult<JsValue> {
        let id = lift(string_arg(&item_id, "itemId"))?;
        match self.with(|d| d.show(&id))? {
            Some(text) => parse(&text),
            None => Ok(JsValue::NULL),
        }
    }

    /// Entries matching `query` (all when omitted), newest first; the search runs here, no
    /// request leaves the page.
    #[wasm_bindgen(unchecked_return_type = "ListedEntry[]")]
    pub fn list(
        &self,
        #[wasm_bindgen(unchecked_param_type = "DiaryQuery | undefined")] query: JsValue,
    ) -> JsResult<JsValue> {
        let text = if query.is_undefined() || query.is_null() {
            Zeroizing::new("{}".to_owned())
        } else {
            lift(object_json(&query, "query"))?
        };
        let out = self.with(|d| d.list(&text))?;
        parse(&out)
    }

    /// Full-text prefix search over the local index.
    #[wasm_bindgen(unchecked_return_type = "ListedEntry[]")]
    pub fn search(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string")] text: JsValue,
    ) -> JsResult<JsValue> {
        let text = lift(secret_arg(&text, "text"))?;
        let query = lift(
            serde_json::to_string(&serde_json::json!({ "text": text.as_str() }))
                .map(Zeroizing::new)
                .map_err(|e| invalid(e.to_string())),
        )?;
        let out = self.with(|d| d.list(&query))?;
        parse(&out)
    }

    /// The diary's collection id (32 hex), once unlocked.
    #[wasm_bindgen(js_name = collectionId)]
    pub fn collection_id(&self) -> JsResult<String> {
        self.with(|d| d.collection_id())
    }

    /// Locks the diary (keys and decrypted entries dropped; the state stays, to export).
    pub fn lock(&self) -> JsResult<()> {
        self.with(SyncedDiaryCore::lock)
    }

    /// Wipes the diary from memory; later calls throw `closed`.
    pub fn close(&self) {
        if let Ok(mut g) = self.inner.try_borrow_mut() {
            *g = None;
        }
    }
}
