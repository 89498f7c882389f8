//! The diary on the web, two ways, both on the client core:
//!
//! - [`SyncedDiaryCore`] (`WebSyncedDiary` in JavaScript): the diary synced through the relay's
//!   vault, the client core's [`LocalDiary`] over a [`MemoryStore`] the page keeps as one sealed
//!   snapshot (IndexedDB). Every exchange with the vault is an operation the page drives:
//!   `begin…`, then `nextRequest` → `fetch` → `answer` until `nextRequest` is `null`, then
//!   `finish`. The steps, the store rows and the sync rules are the core's
//!   (`haven_client_core::diary`, PROTOCOL §9, §11.16.1), the ones `haven_client::Diary` drives
//!   natively, so a diary written in the browser syncs with the native apps.
//! - [`DiaryCore`] (`WebDiary`): a diary kept in the page only: the key hierarchy (§9) with its
//!   record (the bundle item of §11.16.1 without its filler) and entries sealed as vault items
//!   (§9.5) that the page stores itself (IndexedDB); all of it ciphertext.

use haven_client_core::diary::{
    self as core_diary, DiaryMachine, HistoryRevision, LocalDiary, LocalDiaryError, Outcome,
    SyncReport, VaultAnswer, VaultCall,
};
use haven_client_core::store::{MemoryBackend, MemoryStore};
use haven_sdk::diary::entry::SealedEntry;
use haven_sdk::diary::{DiaryQuery, RecoveryCode};
use haven_sdk::snapshot::StorageKey;
use haven_sdk::{DiaryKeys, Entry, KdfParams, WrappedKeyBundle};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::error::{ErrorCode, WebError, WebResult, bad_response, invalid};
use crate::frames::parse_id;

#[allow(unsafe_code)]
mod web;

pub use web::WebSyncedDiary;

/// An entry as the page gives and gets it (JSON, camelCase).
#[derive(Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EntryJson {
    /// Title.
    #[serde(default)]
    pub title: String,
    /// Body text.
    #[serde(default)]
    pub body: String,
    /// Mood label.
    #[serde(default)]
    pub mood: Option<String>,
    /// Tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Creation time, Unix ms.
    #[serde(default)]
    pub created_ms: u64,
    /// Last edit time, Unix ms.
    #[serde(default)]
    pub updated_ms: u64,
}

impl EntryJson {
    fn parse(text: &str) -> WebResult<Self> {
        serde_json::from_str(text).map_err(|err| invalid(format!("entry JSON: {err}")))
    }

    /// The entry, with `attachments` (the page does not see attachment keys: an edit keeps
    /// the entry's attachments).
    fn into_entry(mut self, attachments: Vec<haven_sdk::diary::AttachmentRef>) -> Entry {
        Entry {
            title: std::mem::take(&mut self.title),
            body: std::mem::take(&mut self.body),
            mood: self.mood.take(),
            tags: std::mem::take(&mut self.tags),
            created_ms: self.created_ms,
            updated_ms: self.updated_ms,
            attachments,
        }
    }

    fn of(entry: &Entry) -> Self {
        Self {
            title: entry.title.clone(),
            body: entry.body.clone(),
            mood: entry.mood.clone(),
            tags: entry.tags.clone(),
            created_ms: entry.created_ms,
            updated_ms: entry.updated_ms,
        }
    }
}

impl Drop for EntryJson {
    fn drop(&mut self) {
        use zeroize::Zeroize as _;
        self.title.zeroize();
        self.body.zeroize();
        self.mood.zeroize();
        self.tags.zeroize();
    }
}

/// A sealed entry: the two blobs of one vault item revision.
#[derive(Debug)]
pub struct SealedJson {
    /// Item id (32 hex).
    pub item_id: String,
    /// Revision the blobs are bound to.
    pub revision: u64,
    /// Encrypted body.
    pub body: Vec<u8>,
    /// Encrypted metadata.
    pub meta: Vec<u8>,
}

fn diary_error(e: haven_sdk::DiaryError) -> WebError {
    use haven_sdk::DiaryError as E;
    let code = match e {
        E::WrongPassword | E::WrongRecoveryCode | E::InvalidRecoveryCode => {
            ErrorCode::WrongPassword
        }
        E::KdfParamsTooWeak { .. } | E::KdfParamsTooExpensive { .. } | E::ItemTooLarge(_) => {
            ErrorCode::Limit
        }
        E::ItemDecryptionFailed => ErrorCode::DecryptionFailed,
        _ => ErrorCode::Malformed,
    };
    WebError::new(code, e.to_string())
}

fn entry_error(e: haven_sdk::diary::entry::EntryError) -> WebError {
    use haven_sdk::diary::entry::EntryError as E;
    let code = match e {
        E::Diary(haven_sdk::DiaryError::ItemDecryptionFailed) | E::BodyMismatch => {
            ErrorCode::DecryptionFailed
        }
        E::FieldTooLong { .. } | E::TooMany { .. } => ErrorCode::Limit,
        _ => ErrorCode::Malformed,
    };
    WebError::new(code, e.to_string())
}

impl From<LocalDiaryError> for WebError {
    fn from(e: LocalDiaryError) -> Self {
        use LocalDiaryError as E;
        match e {
            E::Store(e) => e.into(),
            E::Keys(e) => diary_error(e),
            E::Entry(e) => entry_error(e),
            E::Sync(haven_sdk::diary::SyncError::Entry(e)) if !e_is_relay_data(&e) => {
                entry_error(e)
            }
            // The relay served data that fails verification: nothing local changed.
            E::Sync(_) => bad_response(e.to_string()),
            E::NotInitialised | E::UnknownEntry | E::NothingToRestore => {
                WebError::new(ErrorCode::NotFound, e.to_string())
            }
            E::AlreadyInitialised | E::BundleConflict | E::Conflict => {
                WebError::new(ErrorCode::Conflict, e.to_string())
            }
            E::BundleMalformed | E::InvalidResponse(_) | E::SyncDidNotSettle(_) => {
                bad_response(e.to_string())
            }
            E::Refused { .. } => WebError::new(ErrorCode::Refused, e.to_string()),
            E::OutOfOrder(_) => WebError::new(ErrorCode::InvalidState, e.to_string()),
            E::CorruptState => WebError::new(ErrorCode::Malformed, e.to_string()),
            other => WebError::new(ErrorCode::Protocol, other.to_string()),
        }
    }
}

/// Whether an entry error inside a sync error is about data the relay served (it always is,
/// except limits this device's own edit broke).
fn e_is_relay_data(e: &haven_sdk::diary::entry::EntryError) -> bool {
    use haven_sdk::diary::entry::EntryError as E;
    !matches!(e, E::FieldTooLong { .. } | E::TooMany { .. })
}

fn kdf(m_cost_kib: u32, t_cost: u32) -> KdfParams {
    KdfParams {
        m_cost_kib,
        t_cost,
        p_cost: 1,
    }
}

/// A request for the page to send (`fetch` with the access token).
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct RequestView {
    /// `GET`, `PUT`, `POST` or `DELETE`.
    pub method: &'static str,
    /// Path and query, relative to the relay's base URL.
    pub path: String,
    /// The JSON body, if any.
    pub body: Option<String>,
}

impl RequestView {
    fn of(call: &VaultCall) -> WebResult<Self> {
        Ok(Self {
            method: call.method.as_str(),
            path: call.path.clone(),
            body: call
                .body
                .as_ref()
                .map(serde_json::to_string)
                .transpose()
                .map_err(|e| WebError::new(ErrorCode::Protocol, e.to_string()))?,
        })
    }
}

/// One entry of a listing.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListedEntry {
    /// Item id (32 hex).
    pub item_id: String,
    /// The highest revision seen (0: written here, not acknowledged yet).
    pub revision: u64,
    /// Whether a local edit waits for the next sync.
    pub pending: bool,
    /// How many attachments the entry references (their keys stay in the module).
    pub attachments: usize,
    /// The entry.
    pub entry: EntryJson,
}

/// One revision of an entry's history.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RevisionView {
    /// Revision number.
    pub revision: u64,
    /// A deletion tombstone.
    pub deleted: bool,
    /// The relay's coarse time of the write (Unix seconds).
    pub created_at: i64,
    /// The entry (`null` for a tombstone).
    pub entry: Option<EntryJson>,
}

/// What a sync did.
#[derive(Serialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportView {
    /// Changed items received.
    pub pulled: usize,
    /// Writes the relay accepted.
    pub pushed: usize,
    /// Writes refused with 409 (each merged).
    pub conflicts: usize,
    /// Local edits still not acknowledged.
    pub pending: usize,
}

impl From<SyncReport> for ReportView {
    fn from(r: SyncReport) -> Self {
        Self {
            pulled: r.pulled,
            pushed: r.pushed,
            conflicts: r.conflicts,
            pending: r.pending,
        }
    }
}

/// A search: every given criterion must hold (JSON, camelCase).
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct QueryJson {
    /// Full-text prefix search.
    #[serde(default)]
    pub text: Option<String>,
    /// Only this mood (case-insensitive).
    #[serde(default)]
    pub mood: Option<String>,
    /// Only this tag (case-insensitive).
    #[serde(default)]
    pub tag: Option<String>,
    /// Created at or after (Unix ms).
    #[serde(default)]
    pub from_ms: Option<u64>,
    /// Created before (Unix ms).
    #[serde(default)]
    pub until_ms: Option<u64>,
}

/// What an operation's `finish` returns.
#[derive(Serialize, Debug, Default, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct OutcomeView {
    /// After `create` and `regenerateRecoveryCodes` (and `changePassword` when it upgraded a
    /// diary created before key epochs, replacing its codes): the codes, to show once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recovery_codes: Option<Vec<String>>,
    /// After `sync` and `delete`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub report: Option<ReportView>,
}

/// The synced diary of one account on this page: the client core's [`DiaryMachine`] over a
/// memory store, with ids, entries and answers converted at the boundary. Plain Rust (tested
/// natively); `WebSyncedDiary` converts JS values.
pub struct SyncedDiaryCore {
    machine: DiaryMachine<MemoryBackend>,
}

impl std::fmt::Debug for SyncedDiaryCore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncedDiaryCore")
            .field("machine", &self.machine)
            .finish()
    }
}

fn rng() -> impl rand_core::CryptoRng {
    rand::rng()
}

fn passphrase_arg(p: &[u8]) -> WebResult<&[u8]> {
    if p.is_empty() {
        Err(invalid("empty passphrase"))
    } else {
        Ok(p)
    }
}

impl SyncedDiaryCore {
    /// A diary over a new, empty store (a fresh random storage key).
    ///
    /// # Errors
    /// Store errors.
    pub fn new() -> WebResult<Self> {
        Ok(Self::over(MemoryStore::generate(&mut rand::rng())?))
    }

    /// A diary over a store exported earlier ([`export`](Self::export)), locked.
    ///
    /// # Errors
    /// [`ErrorCode::DecryptionFailed`] (wrong page key, tampered), [`ErrorCode::Malformed`].
    pub fn import(page_key: &StorageKey, snapshot: &[u8]) -> WebResult<Self> {
        Ok(Self::over(MemoryStore::import(page_key, snapshot)?))
    }

    fn over(store: MemoryStore) -> Self {
        Self {
            machine: DiaryMachine::new(store),
        }
    }

    /// The whole state (store, diary rows included) sealed under the page key (PROTOCOL §12.1).
    ///
    /// # Errors
    /// [`ErrorCode::InvalidState`] during an unlock, store errors.
    pub fn export(&self, page_key: &StorageKey) -> WebResult<Vec<u8>> {
        Ok(self.machine.store()?.export(page_key)?)
    }

    /// Whether the diary is unlocked.
    #[must_use]
    pub fn is_unlocked(&self) -> bool {
        self.machine.diary().is_some()
    }

    fn open(&self) -> WebResult<&LocalDiary<MemoryBackend>> {
        self.machine
            .diary()
            .ok_or_else(|| WebError::new(ErrorCode::InvalidState, "the diary is locked"))
    }

    fn open_mut(&mut self) -> WebResult<&mut LocalDiary<MemoryBackend>> {
        self.machine
            .diary_mut()
            .ok_or_else(|| WebError::new(ErrorCode::InvalidState, "the diary is locked"))
    }

    /// Creates the account's diary (Argon2id with `m_cost_kib` KiB and `t_cost` passes): one
    /// request, then `finish` gives the recovery codes.
    ///
    /// # Errors
    /// [`ErrorCode::InvalidArgument`] (empty passphrase), [`ErrorCode::Limit`] (cost out of
    /// bounds), [`ErrorCode::InvalidState`] (unlocked, busy).
    pub fn begin_create(
        &mut self,
        passphrase: &[u8],
        m_cost_kib: u32,
        t_cost: u32,
    ) -> WebResult<()> {
        let passphrase = passphrase_arg(passphrase)?;
        Ok(self
            .machine
            .begin_create(passphrase, kdf(m_cost_kib, t_cost), &mut rng())?)
    }

    /// Unlocks with the passphrase: from this store's copy of the bundle (no request), else
    /// from the relay's (one request).
    ///
    /// # Errors
    /// [`ErrorCode::InvalidState`] (unlocked, busy), [`ErrorCode::Malformed`] (corrupt state).
    pub fn begin_unlock(&mut self, passphrase: &[u8]) -> WebResult<()> {
        Ok(self.machine.begin_unlock(passphrase, &mut rng())?)
    }

    /// Recovers the diary with a recovery code and sets a new passphrase: two requests.
    ///
    /// # Errors
    /// [`ErrorCode::InvalidState`] (unlocked, busy), [`ErrorCode::InvalidArgument`].
    pub fn begin_recover(
        &mut self,
        code: &str,
        new_passphrase: &[u8],
        m_cost_kib: u32,
        t_cost: u32,
    ) -> WebResult<()> {
        let passphrase = passphrase_arg(new_passphrase)?;
        Ok(self
            .machine
            .begin_recover(code, passphrase, kdf(m_cost_kib, t_cost))?)
    }

    /// A sync: pending edits pushed (conflicts merged), changes pulled.
    ///
    /// # Errors
    /// [`ErrorCode::InvalidState`] (locked, busy), entry limits.
    pub fn begin_sync(&mut self) -> WebResult<()> {
        Ok(self.machine.begin_sync(&mut rng())?)
    }

    /// Deletes an entry on the relay (its history stays); `finish` fails with `conflict` if it
    /// changed elsewhere first (the change is pulled).
    ///
    /// # Errors
    /// [`ErrorCode::InvalidArgument`] (id), [`ErrorCode::NotFound`], [`ErrorCode::InvalidState`].
    pub fn begin_delete(&mut self, item_id: &str) -> WebResult<()> {
        let id = parse_id(item_id)?;
        Ok(self.machine.begin_delete(&id, &mut rng())?)
    }

    /// Reads an entry's history (every revision, verified and decrypted); `finish` returns it.
    ///
    /// # Errors
    /// [`ErrorCode::InvalidArgument`] (id), [`ErrorCode::InvalidState`].
    pub fn begin_history(&mut self, item_id: &str) -> WebResult<()> {
        let id = parse_id(item_id)?;
        Ok(self.machine.begin_history(&id)?)
    }

    /// Restores a deleted entry from its last live revision (reads the history; the restore
    /// itself is local first, the next sync sends it).
    ///
    /// # Errors
    /// [`ErrorCode::NotFound`], [`ErrorCode::InvalidArgument`], [`ErrorCode::InvalidState`]
    /// (not deleted, locked, busy).
    pub fn begin_restore(&mut self, item_id: &str) -> WebResult<()> {
        let id = parse_id(item_id)?;
        self.machine.begin_restore(&id).map_err(|e| match e {
            LocalDiaryError::Sync(_) => {
                WebError::new(ErrorCode::InvalidState, "the entry is not deleted")
            }
            other => other.into(),
        })
    }

    /// Changes the passphrase and starts a new key epoch (entries are untouched; the old
    /// passphrase opens nothing written from now on): one request; `finish` fails with
    /// `conflict` if another device changed it first, and gives new recovery codes only when a
    /// diary created before key epochs was upgraded.
    ///
    /// # Errors
    /// [`ErrorCode::Limit`] (cost), [`ErrorCode::InvalidState`].
    pub fn begin_change_password(
        &mut self,
        new_passphrase: &[u8],
        m_cost_kib: u32,
        t_cost: u32,
    ) -> WebResult<()> {
        let passphrase = passphrase_arg(new_passphrase)?;
        Ok(self
            .machine
            .begin_change_password(passphrase, kdf(m_cost_kib, t_cost), &mut rng())?)
    }

    /// Replaces every recovery code: one request, then `finish` gives the new codes.
    ///
    /// # Errors
    /// [`ErrorCode::InvalidState`].
    pub fn begin_regenerate_codes(&mut self) -> WebResult<()> {
        Ok(self.machine.begin_regenerate_codes(&mut rng())?)
    }

    /// The next request of the operation, `None` when it is over (then `finish`).
    ///
    /// # Errors
    /// [`ErrorCode::InvalidState`] (no operation, or the last request not answered).
    pub fn next_request(&mut self) -> WebResult<Option<RequestView>> {
        self.machine
            .next_call()?
            .map(|c| RequestView::of(&c))
            .transpose()
    }

    /// The relay's answer to the last request: its HTTP status and body text. An error ends
    /// the operation (nothing local changed by the failed step).
    ///
    /// # Errors
    /// The step's errors: `wrong_password`, `not_found` (no diary yet), `conflict`,
    /// `invalid_response` (data failing verification), `refused` (a refusal the step does not
    /// expect: report the relay's own error), `invalid_state` (no request in flight).
    pub fn answer(&mut self, status: u16, body: &str) -> WebResult<()> {
        let answer = match VaultAnswer::from_http(status, body) {
            Ok(a) => a,
            Err(e) => {
                self.machine.abort();
                return Err(e.into());
            }
        };
        Ok(self.machine.answer(answer, &mut rng())?)
    }

    /// Abandons the operation in progress (an unlock gives the store back, locked).
    pub fn abort(&mut self) {
        self.machine.abort();
    }

    /// Ends the operation once `next_request` returned `None`: its outcome as JSON (recovery
    /// codes, a sync report, a history).
    ///
    /// # Errors
    /// [`ErrorCode::InvalidState`] before the operation is over; a delete's `conflict`.
    pub fn finish(&mut self) -> WebResult<String> {
        let codes =
            |c: Vec<RecoveryCode>| c.iter().map(|c| c.to_text().as_str().to_owned()).collect();
        match self.machine.finish(&mut rng())? {
            Outcome::History(revisions) => json(&history_view(&revisions)),
            Outcome::RecoveryCodes(c) => json(&OutcomeView {
                recovery_codes: Some(codes(c)),
                ..OutcomeView::default()
            }),
            Outcome::Report(r) => json(&OutcomeView {
                report: Some(r.into()),
                ..OutcomeView::default()
            }),
            _ => json(&OutcomeView::default()),
        }
    }

    /// Writes a new entry (JSON of [`EntryJson`]); local first, the next sync sends it.
    ///
    /// # Errors
    /// [`ErrorCode::InvalidArgument`] (JSON), [`ErrorCode::Limit`], [`ErrorCode::InvalidState`].
    pub fn write(&mut self, entry_json: &str) -> WebResult<String> {
        let entry = EntryJson::parse(entry_json)?.into_entry(Vec::new());
        let id = self.open_mut()?.write(entry, &mut rng())?;
        Ok(hex::encode(id))
    }

    /// Replaces an entry's text fields (its attachments are kept); local first.
    ///
    /// # Errors
    /// [`ErrorCode::NotFound`], [`ErrorCode::InvalidArgument`], [`ErrorCode::Limit`].
    pub fn edit(&mut self, item_id: &str, entry_json: &str) -> WebResult<()> {
        let id = parse_id(item_id)?;
        let parsed = EntryJson::parse(entry_json)?;
        let diary = self.open_mut()?;
        let attachments = diary
            .show(&id)
            .ok_or_else(|| WebError::new(ErrorCode::NotFound, "no such entry"))?
            .attachments
            .clone();
        diary.edit(&id, parsed.into_entry(attachments), &mut rng())?;
        Ok(())
    }

    /// An entry as this page sees it (pending edits included), `None` if deleted or unknown.
    ///
    /// # Errors
    /// [`ErrorCode::InvalidArgument`] (id), [`ErrorCode::InvalidState`] (locked).
    pub fn show(&self, item_id: &str) -> WebResult<Option<Zeroizing<String>>> {
        let id = parse_id(item_id)?;
        let diary = self.open()?;
        diary
            .show(&id)
            .map(|e| json(&listed(diary, id, e)).map(Zeroizing::new))
            .transpose()
    }

    /// Entries matching a query (JSON of [`QueryJson`]; `{}` for all), newest first.
    ///
    /// # Errors
    /// [`ErrorCode::InvalidArgument`] (JSON), [`ErrorCode::InvalidState`] (locked).
    pub fn list(&self, query_json: &str) -> WebResult<Zeroizing<String>> {
        let q: QueryJson =
            serde_json::from_str(query_json).map_err(|e| invalid(format!("query JSON: {e}")))?;
        let query = DiaryQuery {
            mood: q.mood,
            tag: q.tag,
            from_ms: q.from_ms,
            until_ms: q.until_ms,
            text: q.text,
        };
        let diary = self.open()?;
        let rows: Vec<ListedEntry> = diary
            .list(&query)
            .into_iter()
            .map(|(id, e)| listed(diary, id, e))
            .collect();
        json(&rows).map(Zeroizing::new)
    }

    /// The collection id (32 hex).
    ///
    /// # Errors
    /// [`ErrorCode::InvalidState`] (locked).
    pub fn collection_id(&self) -> WebResult<String> {
        Ok(hex::encode(self.open()?.collection()))
    }

    /// Locks the diary: the keys and decrypted entries are dropped, the store stays.
    ///
    /// # Errors
    /// [`ErrorCode::InvalidState`] while an operation is in progress.
    pub fn lock(&mut self) -> WebResult<()> {
        Ok(self.machine.lock()?)
    }
}

fn listed(diary: &LocalDiary<MemoryBackend>, id: [u8; 16], e: &Entry) -> ListedEntry {
    ListedEntry {
        item_id: hex::encode(id),
        revision: diary.revision(&id).unwrap_or(0),
        pending: diary.is_pending(&id),
        attachments: e.attachments.len(),
        entry: EntryJson::of(e),
    }
}

fn history_view(revisions: &[HistoryRevision]) -> Vec<RevisionView> {
    revisions
        .iter()
        .map(|r| RevisionView {
            revision: r.revision,
            deleted: r.deleted,
            created_at: r.created_at,
            entry: r.entry.as_ref().map(EntryJson::of),
        })
        .collect()
}

/// JSON text of a view (its `String`s may hold plaintext: callers wipe the text).
fn json(value: &impl Serialize) -> WebResult<String> {
    serde_json::to_string(value).map_err(|e| WebError::new(ErrorCode::Protocol, e.to_string()))
}

/// Unlocked diary keys and the diary's collection id, kept by the page only.
pub struct DiaryCore {
    keys: DiaryKeys,
    bundle: WrappedKeyBundle,
    collection_id: [u8; 16],
    recovery_codes: Vec<Zeroizing<String>>,
}

impl std::fmt::Debug for DiaryCore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiaryCore")
            .field("collection_id", &hex::encode(self.collection_id))
            .finish_non_exhaustive()
    }
}

impl DiaryCore {
    /// A new diary: fresh master key wrapped under `passphrase` (Argon2id with the given cost)
    /// and under ten recovery codes, and a fresh collection id.
    ///
    /// # Errors
    /// [`ErrorCode::InvalidArgument`] for an empty passphrase, [`ErrorCode::Limit`] for KDF
    /// parameters outside PROTOCOL §9.1's bounds.
    pub fn create(passphrase: &[u8], m_cost_kib: u32, t_cost: u32) -> WebResult<Self> {
        if passphrase.is_empty() {
            return Err(invalid("empty passphrase"));
        }
        let mut rng = rand::rng();
        let (keys, bundle, codes) =
            DiaryKeys::create(passphrase, kdf(m_cost_kib, t_cost), &mut rng)
                .map_err(diary_error)?;
        let mut collection_id = [0u8; 16];
        rand::Rng::fill_bytes(&mut rng, &mut collection_id);
        Ok(Self {
            keys,
            bundle,
            collection_id,
            recovery_codes: core_diary::codes_text(&codes),
        })
    }

    /// Unlocks a diary from its record ([`DiaryCore::record`]) with the passphrase.
    ///
    /// # Errors
    /// [`ErrorCode::WrongPassword`], [`ErrorCode::Malformed`] for a bad record.
    pub fn unlock(record: &[u8], passphrase: &[u8]) -> WebResult<Self> {
        let (bundle, collection_id) = core_diary::decode_bundle_item(record)
            .map_err(|_| WebError::new(ErrorCode::Malformed, "diary record is malformed"))?;
        let keys = DiaryKeys::unlock_with_password(&bundle, passphrase).map_err(diary_error)?;
        Ok(Self {
            keys,
            bundle,
            collection_id,
            recovery_codes: Vec::new(),
        })
    }

    /// The diary record to store in clear next to the entries:
    /// `0x01 · collection_id [16] · u32be(len) · bundle` (the §11.16.1 key-bundle item body
    /// without its filler). It holds no secret in clear.
    #[must_use]
    pub fn record(&self) -> Vec<u8> {
        core_diary::encode_bundle_record(&self.bundle, &self.collection_id)
    }

    /// The recovery codes, once: available only right after [`DiaryCore::create`].
    pub fn take_recovery_codes(&mut self) -> Vec<String> {
        std::mem::take(&mut self.recovery_codes)
            .iter()
            .map(|c| c.as_str().to_owned())
            .collect()
    }

    /// The collection id (32 hex).
    #[must_use]
    pub fn collection_id(&self) -> String {
        hex::encode(self.collection_id)
    }

    /// Seals an entry (JSON of [`EntryJson`]) as revision `revision` of item `item_id` (a new
    /// random id when `None`).
    ///
    /// # Errors
    /// [`ErrorCode::InvalidArgument`] (JSON, id), [`ErrorCode::Limit`] (field lengths).
    pub fn encrypt_entry(
        &self,
        entry_json: &str,
        item_id: Option<&str>,
        revision: u64,
    ) -> WebResult<SealedJson> {
        let entry = EntryJson::parse(entry_json)?.into_entry(Vec::new());
        let item = match item_id {
            Some(id) => parse_id(id)?,
            None => {
                let mut id = [0u8; 16];
                rand::Rng::fill_bytes(&mut rand::rng(), &mut id);
                id
            }
        };
        let sealed = entry
            .seal(
                &self.keys,
                &self.collection_id,
                &item,
                revision,
                &mut rand::rng(),
            )
            .map_err(entry_error)?;
        Ok(SealedJson {
            item_id: hex::encode(item),
            revision,
            body: sealed.body,
            meta: sealed.meta,
        })
    }

    /// Opens the two blobs of item `item_id` at `revision`; returns the entry as JSON.
    ///
    /// # Errors
    /// [`ErrorCode::InvalidArgument`] (id), [`ErrorCode::DecryptionFailed`] (tampered, moved,
    /// rolled back or another diary's), [`ErrorCode::Malformed`].
    pub fn decrypt_entry(
        &self,
        item_id: &str,
        revision: u64,
        body: &[u8],
        meta: &[u8],
    ) -> WebResult<Zeroizing<String>> {
        let item = parse_id(item_id)?;
        let sealed = SealedEntry {
            body: body.to_vec(),
            meta: meta.to_vec(),
        };
        let entry = Entry::open(&self.keys, &self.collection_id, &item, revision, &sealed)
            .map_err(entry_error)?;
        json(&EntryJson::of(&entry)).map(Zeroizing::new)
    }
}

#[cfg(test)]
mod tests;
