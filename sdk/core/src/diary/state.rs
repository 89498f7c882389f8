//! [`LocalDiary`]: one account's unlocked diary on this device, its state in the encrypted
//! store, and the steps that create, unlock and recover it.

use std::collections::BTreeSet;

use haven_sdk::diary::{
    ChangesPage, DiaryError, DiaryKeys, DiaryQuery, DiarySync, Entry, KdfParams, RecoveryCode,
    RemoteItem, Rotation, SealedEntry, SyncError, VaultRequest,
};
use rand_core::CryptoRng;

use super::bundle::{self, BundleUpload, StoredBundle};
use super::records::{decode_record, decode_sealed, encode_record, encode_sealed};
use super::run::{HistoryRevision, HistoryRun, SyncRun};
use super::{LocalDiaryError, SPACE_ITEMS, SPACE_META, SPACE_PENDING, VaultAnswer, VaultCall};
use crate::store::{Backend, ClientStoreError, EncryptedStore};

const KEY_BUNDLE: &[u8] = b"bundle";
const KEY_BUNDLE_REVISION: &[u8] = b"bundle_revision";
const KEY_COLLECTION: &[u8] = b"collection";
const KEY_TOKEN: &[u8] = b"sync_token";
/// Revision pending edits are sealed for in the local store (never a relay revision).
pub(crate) const LOCAL_REVISION: u64 = 0;

/// A pending row: item id and its sealed pending entry (`None`: no pending edit).
type PendingRow = ([u8; 16], Option<Vec<u8>>);

fn u64_value(bytes: &[u8]) -> Result<u64, LocalDiaryError> {
    <[u8; 8]>::try_from(bytes)
        .map(u64::from_be_bytes)
        .map_err(|_| LocalDiaryError::CorruptState)
}

/// The bundle stored in `store`, if any.
fn load_bundle<B: Backend>(
    store: &EncryptedStore<B>,
) -> Result<Option<StoredBundle>, LocalDiaryError> {
    let Some(bytes) = store.get(SPACE_META, KEY_BUNDLE)? else {
        return Ok(None);
    };
    let bundle = haven_sdk::diary::WrappedKeyBundle::from_bytes(&bytes)
        .map_err(|_| LocalDiaryError::CorruptState)?;
    let collection: [u8; 16] = store
        .get(SPACE_META, KEY_COLLECTION)?
        .and_then(|c| <[u8; 16]>::try_from(c.as_slice()).ok())
        .ok_or(LocalDiaryError::CorruptState)?;
    let revision = match store.get(SPACE_META, KEY_BUNDLE_REVISION)? {
        Some(r) => u64_value(&r)?,
        None => 0,
    };
    Ok(Some(StoredBundle {
        bundle,
        collection,
        revision,
    }))
}

pub(crate) fn save_bundle<B: Backend>(
    store: &EncryptedStore<B>,
    b: &StoredBundle,
) -> Result<(), ClientStoreError> {
    store.atomically(|s| {
        s.put(SPACE_META, KEY_BUNDLE, &b.bundle.to_bytes())?;
        s.put(SPACE_META, KEY_COLLECTION, &b.collection)?;
        s.put(SPACE_META, KEY_BUNDLE_REVISION, &b.revision.to_be_bytes())
    })
}

/// A diary about to be stored on the relay: fresh keys (creation) or keys re-wrapped under a
/// new password (recovery), and the bundle write that makes it the account's.
pub struct NewDiary {
    pub(crate) keys: DiaryKeys,
    pub(crate) upload: BundleUpload,
}

impl std::fmt::Debug for NewDiary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewDiary").finish_non_exhaustive()
    }
}

impl NewDiary {
    /// A new diary: fresh keys wrapped under `password` (Argon2id with `params`), the recovery
    /// codes (to show to the user once; they are stored nowhere) and a random collection id.
    /// The diary exists once [`finish`](Self::finish) has its bundle stored on the relay.
    ///
    /// # Errors
    /// Key errors (parameters out of bounds).
    pub fn create<R: CryptoRng + ?Sized>(
        password: &[u8],
        params: KdfParams,
        rng: &mut R,
    ) -> Result<(NewDiary, Vec<RecoveryCode>), LocalDiaryError> {
        let (keys, bundle, codes) = DiaryKeys::create(password, params, rng)?;
        let mut collection = [0u8; 16];
        rng.fill_bytes(&mut collection);
        Ok((
            NewDiary {
                keys,
                upload: BundleUpload::new(bundle, collection, 0),
            },
            codes,
        ))
    }

    /// Recovery on a device: from the answer to [`bundle::fetch_call`], opens the keys with a
    /// recovery code and sets `new_password`, starting a new key epoch (the forgotten password
    /// opens nothing written from now on); the bundle write expects the revision read, so a
    /// concurrent change is reported rather than overwritten. The recovery codes stay valid
    /// (regenerate them with [`LocalDiary::regenerate_recovery_codes`]). A version-1 bundle is
    /// only re-wrapped under the new password (its codes cannot be kept across an upgrade);
    /// the next password change or code regeneration upgrades it.
    ///
    /// # Errors
    /// [`DiaryError::WrongRecoveryCode`] / [`DiaryError::InvalidRecoveryCode`] (as
    /// [`LocalDiaryError::Keys`]), [`LocalDiaryError::NotInitialised`].
    pub fn recover<R: CryptoRng + ?Sized>(
        fetched: VaultAnswer,
        code: &str,
        new_password: &[u8],
        params: KdfParams,
        rng: &mut R,
    ) -> Result<NewDiary, LocalDiaryError> {
        let remote = bundle::read_fetched(fetched)?;
        let keys = DiaryKeys::unlock_with_recovery_code(&remote.bundle, code)?;
        let (keys, bundle) =
            match keys.rewrap_legacy_password(&remote.bundle, new_password, params, rng)? {
                Some(rewrapped) => rewrapped,
                None => {
                    let rotation =
                        keys.change_password(&remote.bundle, new_password, params, rng)?;
                    (rotation.keys, rotation.bundle)
                }
            };
        Ok(NewDiary {
            keys,
            upload: BundleUpload::new(bundle, remote.collection, remote.revision),
        })
    }

    /// The `PUT` of the reserved bundle item.
    #[must_use]
    pub fn call(&self) -> VaultCall {
        self.upload.call()
    }

    /// The answer to [`call`](Self::call): the diary, its bundle saved in `store`.
    ///
    /// # Errors
    /// [`LocalDiaryError::AlreadyInitialised`] (creating), [`LocalDiaryError::BundleConflict`]
    /// (recovering while another device changed the bundle), store errors.
    pub fn finish<B: Backend, R: CryptoRng + ?Sized>(
        self,
        store: EncryptedStore<B>,
        answer: VaultAnswer,
        rng: &mut R,
    ) -> Result<LocalDiary<B>, LocalDiaryError> {
        let stored = self.upload.read(answer)?;
        self.open(store, stored, rng)
    }

    /// The diary, once the relay stored its bundle as `stored`: the bundle saved in `store`.
    pub(crate) fn open<B: Backend, R: CryptoRng + ?Sized>(
        self,
        store: EncryptedStore<B>,
        stored: StoredBundle,
        rng: &mut R,
    ) -> Result<LocalDiary<B>, LocalDiaryError> {
        save_bundle(&store, &stored)?;
        LocalDiary::open(store, self.keys, stored, rng)
    }
}

/// What [`LocalDiary::unlock`] found.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // One value per unlock; boxing buys nothing.
pub enum Unlocked<B> {
    /// The local copy of the bundle opened: the diary, loaded without the relay.
    Open(LocalDiary<B>),
    /// The relay's copy of the bundle is needed (none here, or the password does not open the
    /// local copy: it may have been changed on another device).
    NeedsBundle(BundleFetch<B>),
}

/// What [`LocalDiary::opening`] found: the keys of the local bundle, or the relay's bundle is
/// needed (with the local one, if any).
pub(crate) enum Opening {
    Keys(DiaryKeys, StoredBundle),
    Fetch(Option<StoredBundle>),
}

/// Unlocking with the relay's copy of the bundle.
pub struct BundleFetch<B> {
    pub(crate) store: EncryptedStore<B>,
    local: Option<StoredBundle>,
}

impl<B> std::fmt::Debug for BundleFetch<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BundleFetch")
            .field("has_local", &self.local.is_some())
            .finish_non_exhaustive()
    }
}

impl<B: Backend> BundleFetch<B> {
    pub(crate) fn with(store: EncryptedStore<B>, local: Option<StoredBundle>) -> Self {
        Self { store, local }
    }

    /// The `GET` of the reserved bundle item.
    #[must_use]
    pub fn call(&self) -> VaultCall {
        bundle::fetch_call()
    }

    /// Whether a local copy exists (its password check failed). A driver that cannot reach
    /// the relay then reports [`DiaryError::WrongPassword`]: the local copy is what counts.
    #[must_use]
    pub fn has_local(&self) -> bool {
        self.local.is_some()
    }

    /// The answer to [`call`](Self::call): unlocks with the relay's bundle and keeps it.
    ///
    /// # Errors
    /// [`DiaryError::WrongPassword`] (as [`LocalDiaryError::Keys`]) when the relay's bundle is
    /// the local one, or any refusal while a local copy exists;
    /// [`LocalDiaryError::NotInitialised`], [`LocalDiaryError::BundleMalformed`] (the relay
    /// names another diary than the local one), store errors.
    pub fn finish<R: CryptoRng + ?Sized>(
        self,
        answer: VaultAnswer,
        password: &[u8],
        rng: &mut R,
    ) -> Result<LocalDiary<B>, LocalDiaryError> {
        let (keys, remote) = self.check(answer, password)?;
        self.open(keys, remote, rng)
    }

    /// The keys the relay's bundle opens with `password` (nothing changes yet).
    pub(crate) fn check(
        &self,
        answer: VaultAnswer,
        password: &[u8],
    ) -> Result<(DiaryKeys, StoredBundle), LocalDiaryError> {
        let remote = match (bundle::read_fetched(answer), &self.local) {
            (Ok(remote), Some(local)) if remote.bundle == local.bundle => {
                return Err(DiaryError::WrongPassword.into());
            }
            (Ok(remote), Some(local)) if remote.collection != local.collection => {
                return Err(LocalDiaryError::BundleMalformed);
            }
            (Ok(remote), _) => remote,
            (Err(_), Some(_)) => return Err(DiaryError::WrongPassword.into()),
            (Err(e), None) => return Err(e),
        };
        let keys = DiaryKeys::unlock_with_password(&remote.bundle, password)?;
        Ok((keys, remote))
    }

    /// Unlocked with the relay's bundle: kept in the store, the state loaded.
    pub(crate) fn open<R: CryptoRng + ?Sized>(
        self,
        keys: DiaryKeys,
        remote: StoredBundle,
        rng: &mut R,
    ) -> Result<LocalDiary<B>, LocalDiaryError> {
        save_bundle(&self.store, &remote)?;
        LocalDiary::open(self.store, keys, remote, rng)
    }

    /// Gives the store back (the unlock is abandoned).
    #[must_use]
    pub fn into_store(self) -> EncryptedStore<B> {
        self.store
    }
}

/// An unlocked diary on this device: keys, bundle, the sync state machine, and the store that
/// keeps all of it across restarts.
pub struct LocalDiary<B> {
    pub(crate) store: EncryptedStore<B>,
    pub(crate) keys: DiaryKeys,
    pub(crate) bundle: StoredBundle,
    pub(crate) sync: DiarySync,
}

impl<B> std::fmt::Debug for LocalDiary<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalDiary")
            .field("entries", &self.sync.index().len())
            .finish_non_exhaustive()
    }
}

impl<B: Backend> LocalDiary<B> {
    /// Unlocks with the password: with the local copy of the bundle (the state then loads
    /// without the relay), else asks for the relay's copy.
    ///
    /// # Errors
    /// Key errors other than a wrong password, store errors, [`LocalDiaryError::CorruptState`].
    pub fn unlock<R: CryptoRng + ?Sized>(
        store: EncryptedStore<B>,
        password: &[u8],
        rng: &mut R,
    ) -> Result<Unlocked<B>, LocalDiaryError> {
        Ok(match Self::opening(&store, password)? {
            Opening::Keys(keys, local) => Unlocked::Open(Self::open(store, keys, local, rng)?),
            Opening::Fetch(local) => Unlocked::NeedsBundle(BundleFetch { store, local }),
        })
    }

    /// What unlocking `store` with `password` takes (nothing is consumed or changed).
    pub(crate) fn opening(
        store: &EncryptedStore<B>,
        password: &[u8],
    ) -> Result<Opening, LocalDiaryError> {
        let Some(local) = load_bundle(store)? else {
            return Ok(Opening::Fetch(None));
        };
        match DiaryKeys::unlock_with_password(&local.bundle, password) {
            Ok(keys) => Ok(Opening::Keys(keys, local)),
            Err(DiaryError::WrongPassword) => Ok(Opening::Fetch(Some(local))),
            Err(e) => Err(e.into()),
        }
    }

    /// Loads the local state: the stored items are verified and indexed again, the pending
    /// edits re-applied on top.
    pub(crate) fn open<R: CryptoRng + ?Sized>(
        store: EncryptedStore<B>,
        keys: DiaryKeys,
        bundle: StoredBundle,
        rng: &mut R,
    ) -> Result<Self, LocalDiaryError> {
        let collection = bundle.collection;
        let token = match store.get(SPACE_META, KEY_TOKEN)? {
            Some(t) => u64_value(&t)?,
            None => 0,
        };
        let id_of = |key: &[u8]| -> Result<[u8; 16], LocalDiaryError> {
            key.try_into().map_err(|_| LocalDiaryError::CorruptState)
        };
        let mut changes = Vec::new();
        let mut known = BTreeSet::new();
        for (key, value) in store.entries(SPACE_ITEMS)? {
            let id = id_of(&key)?;
            known.insert(id);
            changes.push(decode_record(id, &value)?);
        }
        let mut pending = Vec::new();
        for (key, value) in store.entries(SPACE_PENDING)? {
            let id = id_of(&key)?;
            let sealed = decode_sealed(&value)?;
            if !known.contains(&id) {
                // A creation the relay has not acknowledged: it enters as revision 0.
                changes.push(RemoteItem {
                    item_id: id,
                    revision: LOCAL_REVISION,
                    deleted: false,
                    body: Some(sealed.body.clone()),
                    meta: Some(sealed.meta.clone()),
                });
            }
            pending.push((id, sealed));
        }
        let mut sync = DiarySync::new(collection);
        let page = ChangesPage {
            changes,
            sync_token: token,
            more: false,
        };
        sync.apply_changes(&keys, &page, rng)
            .map_err(|_| LocalDiaryError::CorruptState)?;
        for (id, sealed) in pending {
            let entry = Entry::open(&keys, &collection, &id, LOCAL_REVISION, &sealed)
                .map_err(|_| LocalDiaryError::CorruptState)?;
            let deleted = sync.revision(&id).is_some() && sync.entry(&id).is_none();
            let replay = if deleted {
                sync.restore(&keys, &id, entry, rng)
            } else {
                sync.edit(&keys, &id, entry, rng)
            };
            replay.map_err(|_| LocalDiaryError::CorruptState)?;
        }
        Ok(Self {
            store,
            keys,
            bundle,
            sync,
        })
    }

    /// The local store.
    #[must_use]
    pub fn store(&self) -> &EncryptedStore<B> {
        &self.store
    }

    /// The local store, the diary closed.
    #[must_use]
    pub fn into_store(self) -> EncryptedStore<B> {
        self.store
    }

    /// The diary's collection id.
    #[must_use]
    pub fn collection(&self) -> &[u8; 16] {
        &self.bundle.collection
    }

    /// The Argon2id parameters of the current password slot.
    #[must_use]
    pub fn kdf_params(&self) -> KdfParams {
        self.bundle.bundle.kdf_params()
    }

    /// The bundle as this device knows it.
    #[must_use]
    pub fn bundle(&self) -> &StoredBundle {
        &self.bundle
    }

    /// The unlocked keys (to seal or open entries outside the sync, e.g. a history revision).
    #[must_use]
    pub fn keys(&self) -> &DiaryKeys {
        &self.keys
    }

    /// Changes the password and starts a new key epoch (entries are untouched and stay
    /// readable; the old password opens nothing written after the change). Send the upload,
    /// then hand its answer to [`bundle_uploaded`](Self::bundle_uploaded), which switches to
    /// the new keys; a bundle changed by another device first fails with
    /// [`LocalDiaryError::BundleConflict`]. The codes are empty, except when a version-1
    /// bundle is upgraded: then they replace the old ones (show them once).
    ///
    /// # Errors
    /// Key errors (parameters out of bounds, too many epochs).
    pub fn change_password<R: CryptoRng + ?Sized>(
        &self,
        new_password: &[u8],
        params: KdfParams,
        rng: &mut R,
    ) -> Result<(BundleUpload, Vec<RecoveryCode>), LocalDiaryError> {
        let rotation = self
            .keys
            .change_password(&self.bundle.bundle, new_password, params, rng)?;
        Ok(self.bundle_upload(rotation))
    }

    /// Whether the password opened this diary's bundle only in the bytes as typed (a bundle
    /// wrapped before passwords were normalised, PROTOCOL §9.1.1): then
    /// [`password_rewrap`](Self::password_rewrap) has an upload to store.
    #[must_use]
    pub fn password_needs_rewrap(&self) -> bool {
        self.keys.password_needs_rewrap()
    }

    /// For a bundle that opened only with the password's bytes as typed (§9.1.1): the upload
    /// that re-wraps its password slot under the normalised password (nothing else changes, no
    /// new epoch), stored like a password change ([`bundle_uploaded`](Self::bundle_uploaded));
    /// `None` when no re-wrap is needed. `password` is the one the diary was unlocked with.
    ///
    /// # Errors
    /// Key errors ([`DiaryError::WrongPassword`] for another password).
    pub fn password_rewrap<R: CryptoRng + ?Sized>(
        &self,
        password: &[u8],
        rng: &mut R,
    ) -> Result<Option<BundleUpload>, LocalDiaryError> {
        let rewrapped = self
            .keys
            .rewrap_normalised_password(&self.bundle.bundle, password, rng)?;
        Ok(rewrapped.map(|(keys, bundle)| {
            BundleUpload::new(bundle, self.bundle.collection, self.bundle.revision).with_keys(keys)
        }))
    }

    /// Replaces every recovery code and starts a new key epoch (the old codes stop working
    /// once the upload is stored, and open nothing written after it); returns the upload and
    /// the new codes, to show once.
    ///
    /// # Errors
    /// Key errors (too many epochs; a version-1 bundle whose keys were not unlocked by its
    /// password).
    pub fn regenerate_recovery_codes<R: CryptoRng + ?Sized>(
        &self,
        rng: &mut R,
    ) -> Result<(BundleUpload, Vec<RecoveryCode>), LocalDiaryError> {
        let rotation = self
            .keys
            .regenerate_recovery_codes(&self.bundle.bundle, rng)?;
        Ok(self.bundle_upload(rotation))
    }

    fn bundle_upload(&self, rotation: Rotation) -> (BundleUpload, Vec<RecoveryCode>) {
        let Rotation {
            keys,
            bundle,
            codes,
        } = rotation;
        let upload =
            BundleUpload::new(bundle, self.bundle.collection, self.bundle.revision).with_keys(keys);
        (upload, codes)
    }

    /// The answer to a [`BundleUpload`] of this diary: the new bundle is kept and, when the
    /// upload started a new key epoch, its keys are used from now on.
    ///
    /// # Errors
    /// [`LocalDiaryError::BundleConflict`], [`LocalDiaryError::Refused`], store errors.
    pub fn bundle_uploaded(
        &mut self,
        upload: &BundleUpload,
        answer: VaultAnswer,
    ) -> Result<(), LocalDiaryError> {
        let stored = upload.read(answer)?;
        save_bundle(&self.store, &stored)?;
        self.bundle = stored;
        if let Some(keys) = upload.keys() {
            self.keys = keys.clone();
        }
        Ok(())
    }

    /// Writes a new entry (local first; a sync sends it). `created_ms`/`updated_ms` are taken
    /// as given. Returns its id.
    ///
    /// # Errors
    /// [`LocalDiaryError::Entry`] over a limit (nothing is stored), store errors.
    pub fn write<R: CryptoRng + ?Sized>(
        &mut self,
        entry: Entry,
        rng: &mut R,
    ) -> Result<[u8; 16], LocalDiaryError> {
        entry.validate()?;
        let (id, _request) = self.sync.create(&self.keys, entry, rng)?;
        self.persist_pending(&[id], rng)?;
        Ok(id)
    }

    /// Replaces an entry with `entry` (local first; a sync sends it).
    ///
    /// # Errors
    /// [`LocalDiaryError::UnknownEntry`], entry limits, store errors.
    pub fn edit<R: CryptoRng + ?Sized>(
        &mut self,
        id: &[u8; 16],
        entry: Entry,
        rng: &mut R,
    ) -> Result<(), LocalDiaryError> {
        entry.validate()?;
        if self.sync.entry(id).is_none() {
            return Err(LocalDiaryError::UnknownEntry);
        }
        self.sync.edit(&self.keys, id, entry, rng)?;
        self.persist_pending(&[*id], rng)
    }

    /// The entry as this device sees it (pending local edits included); `None` if deleted or
    /// unknown.
    #[must_use]
    pub fn show(&self, id: &[u8; 16]) -> Option<&Entry> {
        self.sync.entry(id)
    }

    /// The highest revision seen of an entry (0: written here, not acknowledged yet).
    #[must_use]
    pub fn revision(&self, id: &[u8; 16]) -> Option<u64> {
        self.sync.revision(id)
    }

    /// Whether the entry has a local edit the relay has not acknowledged.
    #[must_use]
    pub fn is_pending(&self, id: &[u8; 16]) -> bool {
        self.sync.has_pending(id)
    }

    /// Entries matching `query` (mood, tag, creation date range, text), newest first.
    #[must_use]
    pub fn list(&self, query: &DiaryQuery) -> Vec<([u8; 16], &Entry)> {
        self.sync
            .search(query)
            .into_iter()
            .filter_map(|id| self.sync.entry(&id).map(|e| (id, e)))
            .collect()
    }

    /// Full-text prefix search over the local index (no request leaves the device).
    #[must_use]
    pub fn search(&self, text: &str) -> Vec<([u8; 16], &Entry)> {
        self.list(&DiaryQuery {
            text: Some(text.to_owned()),
            ..DiaryQuery::default()
        })
    }

    /// Entries with a local edit the relay has not acknowledged.
    #[must_use]
    pub fn pending_count(&self) -> usize {
        self.sync
            .search(&DiaryQuery::default())
            .into_iter()
            .filter(|id| self.sync.has_pending(id))
            .count()
    }

    /// A sync: every pending edit pushed (a 409 pulls, merges three-way and retries), then
    /// what other devices wrote pulled.
    ///
    /// # Errors
    /// Entry limits while sealing a pending edit.
    pub fn sync_run<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
    ) -> Result<SyncRun, LocalDiaryError> {
        let mut queue: Vec<VaultRequest> = self.sync.resend_pending(&self.keys, rng)?;
        queue.push(self.sync.pull());
        Ok(SyncRun::new(self.bundle.collection, queue, None))
    }

    /// A soft delete of an entry on the relay (its history stays restorable). An entry that
    /// never reached the relay is synced first. [`SyncRun::finish`] reports
    /// [`LocalDiaryError::Conflict`] if the entry changed elsewhere first (the change is
    /// pulled).
    ///
    /// # Errors
    /// [`LocalDiaryError::UnknownEntry`], [`LocalDiaryError::Sync`] (already deleted).
    pub fn delete_run<R: CryptoRng + ?Sized>(
        &mut self,
        id: &[u8; 16],
        rng: &mut R,
    ) -> Result<SyncRun, LocalDiaryError> {
        if self.sync.entry(id).is_none() {
            return Err(LocalDiaryError::UnknownEntry);
        }
        if self.sync.revision(id) == Some(0) {
            // Never reached the relay: send the creation first, then delete it.
            let mut run = self.sync_run(rng)?;
            run.then_delete(*id);
            return Ok(run);
        }
        let request = self.sync.delete(id)?;
        let mut run = SyncRun::new(self.bundle.collection, vec![request], None);
        run.deleting(*id);
        Ok(run)
    }

    /// Every revision of an entry on the relay, oldest first, each verified and decrypted.
    #[must_use]
    pub fn history_run(&self, id: &[u8; 16]) -> HistoryRun {
        HistoryRun::new(self.bundle.collection, *id)
    }

    /// Whether `id` is a deleted entry [`restore_from`](Self::restore_from) can restore (read
    /// its history first).
    ///
    /// # Errors
    /// [`LocalDiaryError::UnknownEntry`], [`SyncError::WrongState`] (not deleted).
    pub fn check_restorable(&self, id: &[u8; 16]) -> Result<(), LocalDiaryError> {
        if self.sync.revision(id).is_none() {
            return Err(LocalDiaryError::UnknownEntry);
        }
        if self.sync.entry(id).is_some() {
            return Err(SyncError::WrongState.into());
        }
        Ok(())
    }

    /// Restores a deleted entry from its last live revision in `history` (local first; a sync
    /// sends it).
    ///
    /// # Errors
    /// As [`check_restorable`](Self::check_restorable),
    /// [`LocalDiaryError::NothingToRestore`], store errors.
    pub fn restore_from<R: CryptoRng + ?Sized>(
        &mut self,
        id: &[u8; 16],
        history: Vec<HistoryRevision>,
        rng: &mut R,
    ) -> Result<(), LocalDiaryError> {
        self.check_restorable(id)?;
        let entry = history
            .into_iter()
            .rev()
            .find_map(|r| r.entry)
            .ok_or(LocalDiaryError::NothingToRestore)?;
        self.sync.restore(&self.keys, id, entry, rng)?;
        self.persist_pending(&[*id], rng)
    }

    /// The pending rows of `ids`: the sealed pending entry, or `None` to delete the row.
    fn pending_rows<R: CryptoRng + ?Sized>(
        &self,
        ids: &[[u8; 16]],
        rng: &mut R,
    ) -> Result<Vec<PendingRow>, LocalDiaryError> {
        let mut rows = Vec::with_capacity(ids.len());
        for id in ids {
            let row = match (self.sync.has_pending(id), self.sync.entry(id)) {
                (true, Some(entry)) => Some(encode_sealed(&entry.seal(
                    &self.keys,
                    &self.bundle.collection,
                    id,
                    LOCAL_REVISION,
                    rng,
                )?)),
                _ => None,
            };
            rows.push((*id, row));
        }
        Ok(rows)
    }

    /// Writes pending rows and the sync token (inside the caller's transaction).
    fn write_pending_rows(
        &self,
        s: &EncryptedStore<B>,
        rows: &[PendingRow],
    ) -> Result<(), ClientStoreError> {
        for (id, row) in rows {
            match row {
                Some(bytes) => s.put(SPACE_PENDING, id, bytes)?,
                None => {
                    s.delete(SPACE_PENDING, id)?;
                }
            }
        }
        s.put(SPACE_META, KEY_TOKEN, &self.sync.token().to_be_bytes())
    }

    /// Persists the pending state of `ids` and the token, in one transaction.
    fn persist_pending<R: CryptoRng + ?Sized>(
        &self,
        ids: &[[u8; 16]],
        rng: &mut R,
    ) -> Result<(), LocalDiaryError> {
        let rows = self.pending_rows(ids, rng)?;
        self.store
            .atomically(|s| self.write_pending_rows(s, &rows))?;
        Ok(())
    }

    /// A verified page of changes: applied to the sync state, then persisted (the items as the
    /// relay has them, the pending state of each, the token; after the last page of a full
    /// resync, the items it did not list are forgotten). Returns the follow-up requests.
    pub(crate) fn apply_page<R: CryptoRng + ?Sized>(
        &mut self,
        page: &ChangesPage,
        resync_done: bool,
        rng: &mut R,
    ) -> Result<Vec<VaultRequest>, LocalDiaryError> {
        let follow = self.sync.apply_changes(&self.keys, page, rng)?;
        let mut gone = Vec::new();
        if resync_done {
            for (key, _) in self.store.entries(SPACE_ITEMS)? {
                if let Ok(id) = <[u8; 16]>::try_from(key.as_slice())
                    && self.sync.revision(&id).is_none()
                {
                    gone.push(id);
                }
            }
        }
        let ids: Vec<[u8; 16]> = page.changes.iter().map(|c| c.item_id).collect();
        let rows = self.pending_rows(&ids, rng)?;
        self.store.atomically(|s| {
            for item in &page.changes {
                let sealed = match (&item.body, &item.meta) {
                    (Some(body), Some(meta)) if !item.deleted => Some(SealedEntry {
                        body: body.clone(),
                        meta: meta.clone(),
                    }),
                    _ => None,
                };
                s.put(
                    SPACE_ITEMS,
                    &item.item_id,
                    &encode_record(item.revision, item.deleted, sealed.as_ref()),
                )?;
            }
            for id in &gone {
                s.delete(SPACE_ITEMS, id)?;
                s.delete(SPACE_PENDING, id)?;
            }
            self.write_pending_rows(s, &rows)
        })?;
        Ok(follow)
    }

    /// The relay accepted a write of `item_id` (with `sealed`, none for a delete): recorded and
    /// persisted; returns the follow-up requests.
    pub(crate) fn written<R: CryptoRng + ?Sized>(
        &mut self,
        item_id: [u8; 16],
        revision: u64,
        deleted: bool,
        sealed: Option<&SealedEntry>,
        rng: &mut R,
    ) -> Result<Vec<VaultRequest>, LocalDiaryError> {
        let follow = self
            .sync
            .write_succeeded(&self.keys, &item_id, revision, deleted, rng)?;
        let record = encode_record(revision, deleted, sealed.filter(|_| !deleted));
        let rows = self.pending_rows(&[item_id], rng)?;
        self.store.atomically(|s| {
            s.put(SPACE_ITEMS, &item_id, &record)?;
            self.write_pending_rows(s, &rows)
        })?;
        Ok(follow)
    }

    /// The relay refused a write of `item_id` with 409: the follow-up requests (a pull, or the
    /// merged write).
    pub(crate) fn conflicted<R: CryptoRng + ?Sized>(
        &mut self,
        item_id: [u8; 16],
        rng: &mut R,
    ) -> Result<Vec<VaultRequest>, LocalDiaryError> {
        Ok(self.sync.write_conflicted(&self.keys, &item_id, rng)?)
    }

    /// A 410 to a pull: the resync from the beginning.
    pub(crate) fn token_expired(&mut self) -> VaultRequest {
        self.sync.token_expired()
    }

    /// The delete request of `id` (the entry must still exist).
    pub(crate) fn delete_request(&self, id: &[u8; 16]) -> Result<VaultRequest, LocalDiaryError> {
        Ok(self.sync.delete(id)?)
    }
}
