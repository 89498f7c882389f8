//! The diary on a device: the I/O driver of the client core's diary
//! ([`haven_client_core::diary`], which holds the state in the encrypted [`ClientStore`], the
//! key bundle, the local index and every sync rule). Each method runs a core step, makes the
//! vault request it asks for through the [`RelayClient`] (docs/PROTOCOL.md §11.16) and hands the
//! answer back, until the step is done.
//!
//! Where things are stored, and the sync rules, are documented in the core
//! ([`haven_client_core::diary`], PROTOCOL §11.16.1). Writes are local first: [`Diary::write`],
//! [`Diary::edit`] and [`Diary::restore`] record a pending edit, [`Diary::sync`] pushes the
//! pending edits (a 409 pulls the newer revision, merges three-way and retries) and pulls what
//! other devices wrote. A page that fails verification (tampered, moved, rolled back) is
//! refused as a whole: the error is returned and nothing local changes.

use haven_client_core::diary::{
    self as core_diary, BundleUpload, HttpMethod, LocalDiary, NewDiary, Unlocked, VaultAnswer,
    VaultCall, bundle,
};
use haven_sdk::diary::{
    DiaryError, DiaryQuery, Entry, EntryError, KdfParams, RecoveryCode, SyncError, WrappedKeyBundle,
};
use reqwest::Method;

pub use haven_client_core::diary::{
    BUNDLE_COLLECTION, BUNDLE_ITEM, BUNDLE_ITEM_FORMAT, HistoryRevision, LocalDiaryError,
    MAX_HISTORY_PAGES, MAX_SYNC_REQUESTS, SPACE_ITEMS, SPACE_META, SPACE_PENDING, SyncReport,
    codes_text, encode_bundle_item,
};

use crate::relay::{RelayClient, RelayError, Session};
use crate::store::{ClientStore, ClientStoreError, Space, SqliteBackend};

/// Errors of the diary client: the relay's, or the diary's own (the core's
/// [`LocalDiaryError`]: keys, entries, verification of the relay's data, conflicts).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DiaryClientError {
    /// The relay refused or could not be reached.
    #[error(transparent)]
    Relay(#[from] RelayError),
    /// The diary refused: see [`LocalDiaryError`].
    #[error(transparent)]
    Diary(LocalDiaryError),
}

impl DiaryClientError {
    /// Whether this is a verification failure of data served by the relay.
    #[must_use]
    pub fn is_tampering(&self) -> bool {
        matches!(self, Self::Diary(LocalDiaryError::Sync(_)))
    }
}

impl From<LocalDiaryError> for DiaryClientError {
    fn from(e: LocalDiaryError) -> Self {
        match e {
            // A refusal the core did not expect is the relay's own error.
            LocalDiaryError::Refused { status, code } => Self::Relay(RelayError::Refused {
                status,
                message: String::new(),
                code,
                mismatches: None,
            }),
            other => Self::Diary(other),
        }
    }
}

impl From<ClientStoreError> for DiaryClientError {
    fn from(e: ClientStoreError) -> Self {
        Self::Diary(LocalDiaryError::Store(e))
    }
}

impl From<DiaryError> for DiaryClientError {
    fn from(e: DiaryError) -> Self {
        Self::Diary(LocalDiaryError::Keys(e))
    }
}

impl From<SyncError> for DiaryClientError {
    fn from(e: SyncError) -> Self {
        Self::Diary(LocalDiaryError::Sync(e))
    }
}

impl From<EntryError> for DiaryClientError {
    fn from(e: EntryError) -> Self {
        Self::Diary(LocalDiaryError::Entry(e))
    }
}

/// Decodes the reserved bundle item's body (strict: the filler must be zero).
///
/// # Errors
/// [`LocalDiaryError::BundleMalformed`].
pub fn decode_bundle_item(body: &[u8]) -> Result<(WrappedKeyBundle, [u8; 16]), DiaryClientError> {
    Ok(core_diary::decode_bundle_item(body)?)
}

fn rng() -> impl rand_core::CryptoRng {
    rand::rng()
}

/// A vault answer for the core, and the relay's own error for a refusal (reported instead of
/// the core's [`LocalDiaryError::Refused`] when the step does not expect it).
struct Exchanged {
    answer: VaultAnswer,
    refusal: Option<RelayError>,
}

impl Exchanged {
    /// The answer, for the core (the refusal stays here).
    fn take(&mut self) -> VaultAnswer {
        std::mem::replace(&mut self.answer, VaultAnswer::Ok(serde_json::Value::Null))
    }

    /// The core's error, with an unexpected refusal reported as the relay's own error.
    fn fail(self, e: LocalDiaryError) -> DiaryClientError {
        match (e, self.refusal) {
            (LocalDiaryError::Refused { .. }, Some(original)) => original.into(),
            (e, _) => e.into(),
        }
    }
}

/// Sends a core step's request with the session's access token.
async fn exchange(relay: &RelayClient, call: &VaultCall) -> Result<Exchanged, RelayError> {
    let method = match call.method {
        HttpMethod::Get => Method::GET,
        HttpMethod::Put => Method::PUT,
        HttpMethod::Post => Method::POST,
        HttpMethod::Delete => Method::DELETE,
        _ => return Err(RelayError::InvalidResponse("unknown method".into())),
    };
    match relay
        .request_as::<serde_json::Value, _>(method, &call.path, call.body.as_ref())
        .await
    {
        Ok(value) => Ok(Exchanged {
            answer: VaultAnswer::Ok(value),
            refusal: None,
        }),
        Err(e) => match (e.status(), e.code()) {
            (Some(status), Some(code)) => Ok(Exchanged {
                answer: VaultAnswer::Refused {
                    status,
                    code: code.to_owned(),
                },
                refusal: Some(e),
            }),
            _ => Err(e),
        },
    }
}

/// Runs a core step that needs one answer: `step` gets it; an unexpected refusal is the relay's
/// error.
async fn one<T>(
    relay: &RelayClient,
    call: &VaultCall,
    step: impl FnOnce(VaultAnswer) -> Result<T, LocalDiaryError>,
) -> Result<T, DiaryClientError> {
    let mut exchanged = exchange(relay, call).await?;
    step(exchanged.take()).map_err(|e| exchanged.fail(e))
}

/// An unlocked diary on this device.
pub struct Diary {
    local: LocalDiary<SqliteBackend>,
    relay: RelayClient,
}

impl std::fmt::Debug for Diary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Diary")
            .field("local", &self.local)
            .finish_non_exhaustive()
    }
}

impl Diary {
    /// Creates the account's diary: fresh keys wrapped under `password` (Argon2id with
    /// `params`) and the recovery codes, the bundle uploaded as the reserved vault item.
    /// Returns the diary and the recovery codes, to show to the user once (they are stored
    /// nowhere).
    ///
    /// # Errors
    /// [`LocalDiaryError::AlreadyInitialised`] if the account has a diary, key and relay errors.
    pub async fn init(
        store: ClientStore,
        relay: RelayClient,
        password: &[u8],
        params: KdfParams,
    ) -> Result<(Self, Vec<RecoveryCode>), DiaryClientError> {
        let (new, codes) = NewDiary::create(password, params, &mut rng())?;
        let local = one(&relay, &new.call(), |answer| {
            new.finish(store, answer, &mut rng())
        })
        .await?;
        Ok((Self { local, relay }, codes))
    }

    /// Unlocks the diary with the password. Uses the local copy of the bundle; fetches it from
    /// the relay when there is none, or when the password does not open the local copy (it may
    /// have been changed on another device). Local state is loaded without contacting the relay.
    ///
    /// # Errors
    /// [`DiaryError::WrongPassword`] (as [`LocalDiaryError::Keys`]),
    /// [`LocalDiaryError::NotInitialised`], relay and store errors.
    pub async fn unlock(
        store: ClientStore,
        relay: RelayClient,
        password: &[u8],
    ) -> Result<Self, DiaryClientError> {
        let fetch = match LocalDiary::unlock(store, password, &mut rng())? {
            Unlocked::Open(local) => return Ok(Self::rewrapped(local, relay, password).await),
            Unlocked::NeedsBundle(fetch) => fetch,
        };
        let mut exchanged = match exchange(&relay, &fetch.call()).await {
            Ok(exchanged) => exchanged,
            // The local copy is what counts when the relay cannot say otherwise.
            Err(_) if fetch.has_local() => return Err(DiaryError::WrongPassword.into()),
            Err(e) => return Err(e.into()),
        };
        let local = fetch
            .finish(exchanged.take(), password, &mut rng())
            .map_err(|e| exchanged.fail(e))?;
        Ok(Self::rewrapped(local, relay, password).await)
    }

    /// The unlocked diary; if its bundle opened only with the password's bytes as typed
    /// (wrapped before passwords were normalised, PROTOCOL §9.1.1), its password slot is first
    /// re-wrapped under the normalised password and uploaded, so every form of the password
    /// opens it on every device. Best effort: the unlock stands if the upload fails (offline,
    /// or another device changed the bundle meanwhile), and the next unlock tries again.
    async fn rewrapped(
        local: LocalDiary<SqliteBackend>,
        relay: RelayClient,
        password: &[u8],
    ) -> Self {
        let mut diary = Self { local, relay };
        if let Ok(Some(upload)) = diary.local.password_rewrap(password, &mut rng()) {
            // Ignored on purpose (see above): the diary is open either way.
            let _ = diary.upload_bundle(&upload).await;
        }
        diary
    }

    /// Recovers the diary on a device with a recovery code and sets `new_password` (Argon2id
    /// with `params`); the new bundle is uploaded with optimistic concurrency. The recovery
    /// codes stay valid (regenerate them with [`Diary::regenerate_recovery_codes`]).
    ///
    /// # Errors
    /// [`DiaryError::WrongRecoveryCode`] / [`DiaryError::InvalidRecoveryCode`] (as
    /// [`LocalDiaryError::Keys`]), [`LocalDiaryError::BundleConflict`], relay errors.
    pub async fn recover(
        store: ClientStore,
        relay: RelayClient,
        code: &str,
        new_password: &[u8],
        params: KdfParams,
    ) -> Result<Self, DiaryClientError> {
        let new = one(&relay, &bundle::fetch_call(), |answer| {
            NewDiary::recover(answer, code, new_password, params, &mut rng())
        })
        .await?;
        let local = one(&relay, &new.call(), |answer| {
            new.finish(store, answer, &mut rng())
        })
        .await?;
        Ok(Self { local, relay })
    }

    /// The relay client (to persist its session after use).
    #[must_use]
    pub fn relay(&self) -> &RelayClient {
        &self.relay
    }

    /// The local store.
    #[must_use]
    pub fn store(&self) -> &ClientStore {
        self.local.store()
    }

    /// Keeps the relay's current (possibly rotated) session with [`save_session`] under
    /// `space`: refresh tokens rotate on use, so an app saves it after using the relay.
    ///
    /// # Errors
    /// Store errors.
    pub async fn save_session(&self, space: Space) -> Result<(), ClientStoreError> {
        match self.relay.session().await {
            Some(session) => save_session(self.store(), space, &session),
            None => Ok(()),
        }
    }

    /// The diary's collection id.
    #[must_use]
    pub fn collection(&self) -> &[u8; 16] {
        self.local.collection()
    }

    /// The Argon2id parameters of the current password slot.
    #[must_use]
    pub fn kdf_params(&self) -> KdfParams {
        self.local.kdf_params()
    }

    /// Changes the password and starts a new key epoch (entries are untouched and stay
    /// readable; the old password opens nothing written from now on), uploading the new
    /// bundle, failing with [`LocalDiaryError::BundleConflict`] if another device changed it
    /// first. Returns new recovery codes (to show once) when a diary created before key epochs
    /// was upgraded, replacing its old codes; otherwise none.
    ///
    /// # Errors
    /// [`LocalDiaryError::BundleConflict`], key and relay errors.
    pub async fn change_password(
        &mut self,
        new_password: &[u8],
        params: KdfParams,
    ) -> Result<Vec<RecoveryCode>, DiaryClientError> {
        let (upload, codes) = self
            .local
            .change_password(new_password, params, &mut rng())?;
        self.upload_bundle(&upload).await?;
        Ok(codes)
    }

    /// Replaces every recovery code and starts a new key epoch (the old codes stop working and
    /// open nothing written from now on); returns the new ones, to show once.
    ///
    /// # Errors
    /// [`LocalDiaryError::BundleConflict`], relay errors.
    pub async fn regenerate_recovery_codes(
        &mut self,
    ) -> Result<Vec<RecoveryCode>, DiaryClientError> {
        let (upload, codes) = self.local.regenerate_recovery_codes(&mut rng())?;
        self.upload_bundle(&upload).await?;
        Ok(codes)
    }

    async fn upload_bundle(&mut self, upload: &BundleUpload) -> Result<(), DiaryClientError> {
        let local = &mut self.local;
        one(&self.relay, &upload.call(), |answer| {
            local.bundle_uploaded(upload, answer)
        })
        .await
    }

    /// Writes a new entry (local first; [`Diary::sync`] sends it). `created_ms`/`updated_ms`
    /// are taken as given. Returns its id.
    ///
    /// # Errors
    /// [`LocalDiaryError::Entry`] over a limit (nothing is stored), store errors.
    pub fn write(&mut self, entry: Entry) -> Result<[u8; 16], DiaryClientError> {
        Ok(self.local.write(entry, &mut rng())?)
    }

    /// Replaces an entry with `entry` (local first; [`Diary::sync`] sends it).
    ///
    /// # Errors
    /// [`LocalDiaryError::UnknownEntry`], entry limits, store errors.
    pub fn edit(&mut self, id: &[u8; 16], entry: Entry) -> Result<(), DiaryClientError> {
        Ok(self.local.edit(id, entry, &mut rng())?)
    }

    /// Soft-deletes an entry on the relay (needs the relay; its history stays restorable).
    ///
    /// # Errors
    /// [`LocalDiaryError::UnknownEntry`], [`LocalDiaryError::Conflict`] if it changed
    /// elsewhere first (the change is pulled), relay errors.
    pub async fn delete(&mut self, id: &[u8; 16]) -> Result<(), DiaryClientError> {
        let run = self.local.delete_run(id, &mut rng())?;
        self.run(run).await.map(|_| ())
    }

    /// Restores a deleted entry from its last live revision (local first; [`Diary::sync`]
    /// sends it).
    ///
    /// # Errors
    /// [`LocalDiaryError::UnknownEntry`], [`LocalDiaryError::NothingToRestore`], relay
    /// errors, verification errors of the history.
    pub async fn restore(&mut self, id: &[u8; 16]) -> Result<(), DiaryClientError> {
        self.local.check_restorable(id)?;
        let history = self.history(id).await?;
        Ok(self.local.restore_from(id, history, &mut rng())?)
    }

    /// The entry as this device sees it (pending local edits included); `None` if deleted or
    /// unknown.
    #[must_use]
    pub fn show(&self, id: &[u8; 16]) -> Option<&Entry> {
        self.local.show(id)
    }

    /// Whether the entry has a local edit the relay has not acknowledged.
    #[must_use]
    pub fn is_pending(&self, id: &[u8; 16]) -> bool {
        self.local.is_pending(id)
    }

    /// Entries matching `query` (mood, tag, creation date range, text), newest first.
    #[must_use]
    pub fn list(&self, query: &DiaryQuery) -> Vec<([u8; 16], &Entry)> {
        self.local.list(query)
    }

    /// Full-text prefix search over the local index (no request leaves the device).
    #[must_use]
    pub fn search(&self, text: &str) -> Vec<([u8; 16], &Entry)> {
        self.local.search(text)
    }

    /// Every revision of an entry on the relay, oldest first, each verified and decrypted.
    ///
    /// # Errors
    /// [`LocalDiaryError::Entry`] if a revision does not open under its id and number, relay
    /// errors.
    pub async fn history(&self, id: &[u8; 16]) -> Result<Vec<HistoryRevision>, DiaryClientError> {
        let mut run = self.local.history_run(id);
        while let Some(call) = run.next_call()? {
            let local = &self.local;
            let run = &mut run;
            one(&self.relay, &call, |answer| run.answer(local, answer)).await?;
        }
        Ok(run.finish())
    }

    /// Pushes every pending edit (a 409 pulls, merges three-way and retries), then pulls what
    /// other devices wrote. If the relay serves data that fails verification the error is
    /// returned and nothing local changes for that page.
    ///
    /// # Errors
    /// [`LocalDiaryError::Sync`] (tampering, rollback, fork), relay and store errors.
    pub async fn sync(&mut self) -> Result<SyncReport, DiaryClientError> {
        let run = self.local.sync_run(&mut rng())?;
        self.run(run).await
    }

    /// Sends a run's requests until none is left.
    async fn run(&mut self, mut run: core_diary::SyncRun) -> Result<SyncReport, DiaryClientError> {
        while let Some(call) = run.next_call(&self.local)? {
            let local = &mut self.local;
            let run = &mut run;
            one(&self.relay, &call, |answer| {
                run.answer(local, answer, &mut rng())
            })
            .await?;
        }
        Ok(run.finish(&self.local)?)
    }
}

/// The key of the session [`save_session`] keeps in the app's space.
const SESSION_KEY: &[u8] = b"session";

/// Keeps `session` (account, device, refresh token) in `store` under the app's `space`, for a
/// diary app without a [`crate::Device`] (which keeps its own) to resume after a restart.
///
/// # Errors
/// Store errors.
pub fn save_session(
    store: &ClientStore,
    space: Space,
    session: &Session,
) -> Result<(), ClientStoreError> {
    let text = zeroize::Zeroizing::new(format!(
        "{}\n{}\n{}",
        session.account_id,
        session.device_id,
        session.refresh_token()
    ));
    store.put(space, SESSION_KEY, text.as_bytes())
}

/// The session [`save_session`] kept under `space`, if any.
///
/// # Errors
/// [`ClientStoreError::Corrupt`] when the stored session does not parse; store errors.
pub fn load_session(
    store: &ClientStore,
    space: Space,
) -> Result<Option<Session>, ClientStoreError> {
    let Some(bytes) = store.get(space, SESSION_KEY)? else {
        return Ok(None);
    };
    let damaged = || ClientStoreError::Corrupt {
        space: space.value(),
    };
    let text = std::str::from_utf8(&bytes).map_err(|_| damaged())?;
    let mut parts = text.splitn(3, '\n');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(account), Some(device), Some(refresh)) => Ok(Some(Session::restore(
            account.to_owned(),
            device.to_owned(),
            None,
            zeroize::Zeroizing::new(refresh.to_owned()),
        ))),
        _ => Err(damaged()),
    }
}

/// This device's public identity key, made on first use: what a diary app without a
/// [`crate::Device`] logs its device in with.
///
/// # Errors
/// Store errors.
pub fn device_identity(store: &ClientStore) -> Result<Vec<u8>, ClientStoreError> {
    if !store.has_identity()? {
        let pair = haven_sdk::identity::IdentityKeyPair::generate(&mut rand::rng());
        let registration_id = rand::Rng::next_u32(&mut rand::rng()) & 0x3fff;
        store.set_identity(&pair, registration_id)?;
    }
    // The SDK's store trait reports the store's own error as its message.
    let pair = haven_sdk::store::IdentityStore::identity_key_pair(store)
        .map_err(ClientStoreError::backend)?;
    Ok(pair.public().to_bytes().to_vec())
}
