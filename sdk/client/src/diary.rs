//! The diary on a device: the SDK's [`DiaryKeys`] and [`DiarySync`] driven against the relay's
//! vault (docs/PROTOCOL.md §11.16), with every piece of local state in the encrypted
//! [`ClientStore`] so a restart needs no full resync.
//!
//! # What is stored where (docs/PROTOCOL.md §11.16.1)
//!
//! - On the relay: the wrapped key bundle as a reserved vault item (collection and item id all
//!   zero, see [`BUNDLE_COLLECTION`]) together with the diary's random collection id, and one
//!   vault item per entry in that collection.
//! - In the client store (space [`SPACE_META`]): the bundle, its revision, the collection id and
//!   the sync token; (space [`SPACE_ITEMS`]) each item's latest revision as the relay has it
//!   (the encrypted blobs, which [`Diary::unlock`] decrypts and indexes again); (space
//!   [`SPACE_PENDING`]) each local edit the relay has not acknowledged, sealed for revision 0
//!   (a revision the relay never stores).
//!
//! Writes are local first: [`Diary::write`], [`Diary::edit`] and [`Diary::restore`] record a
//! pending edit, [`Diary::sync`] pushes the pending edits (a 409 pulls the newer revision, merges
//! three-way and retries) and pulls what other devices wrote. A page that fails verification
//! (tampered, moved, rolled back) is refused as a whole: the error is returned and nothing local
//! changes.

use std::collections::{BTreeSet, VecDeque};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use haven_protocol::api::vault::{
    ChangesReply, HistoryReply, ItemBody, ItemWriteRequest, ItemWritten,
};
use haven_protocol::padding::padded_len;
use haven_protocol::vault::{ITEM_OVERHEAD, MIN_ITEM_LEN};
use haven_sdk::diary::{
    ChangesPage, DiaryError, DiaryKeys, DiaryQuery, DiarySync, Entry, EntryError, KdfParams,
    RecoveryCode, RemoteItem, SealedEntry, SyncError, VaultRequest, WrappedKeyBundle,
};
use reqwest::Method;
use zeroize::Zeroizing;

use crate::relay::{RelayClient, RelayError};
use crate::store::{ClientStore, ClientStoreError, Space};

/// Store space of the diary's own settings (bundle, collection, sync token).
pub const SPACE_META: Space = Space::app(0x40);
/// Store space of the items as the relay has them (encrypted blobs), by item id.
pub const SPACE_ITEMS: Space = Space::app(0x41);
/// Store space of the pending local edits, by item id.
pub const SPACE_PENDING: Space = Space::app(0x42);
/// Collection id of the reserved key-bundle item.
pub const BUNDLE_COLLECTION: [u8; 16] = [0; 16];
/// Item id of the reserved key-bundle item.
pub const BUNDLE_ITEM: [u8; 16] = [0; 16];
/// Format byte of the reserved bundle item's body.
pub const BUNDLE_ITEM_FORMAT: u8 = 0x01;
/// Most requests one [`Diary::sync`] makes before giving up (a relay that never settles).
pub const MAX_SYNC_REQUESTS: usize = 10_000;
/// Most history pages read for one item.
pub const MAX_HISTORY_PAGES: usize = 1_000;

const KEY_BUNDLE: &[u8] = b"bundle";
const KEY_BUNDLE_REVISION: &[u8] = b"bundle_revision";
const KEY_COLLECTION: &[u8] = b"collection";
const KEY_TOKEN: &[u8] = b"sync_token";
/// Revision pending edits are sealed for in the local store (never a relay revision).
const LOCAL_REVISION: u64 = 0;

/// Errors of the diary client.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DiaryClientError {
    /// The relay refused or could not be reached.
    #[error(transparent)]
    Relay(#[from] RelayError),
    /// The local store failed.
    #[error(transparent)]
    Store(#[from] ClientStoreError),
    /// Key errors: wrong password or recovery code, bad parameters.
    #[error(transparent)]
    Keys(#[from] DiaryError),
    /// Verification of the relay's data failed (tampered, moved, rolled back or forked item);
    /// nothing local changed.
    #[error("sync refused the relay's data: {0}")]
    Sync(#[from] SyncError),
    /// An entry is over a limit or does not open.
    #[error(transparent)]
    Entry(#[from] EntryError),
    /// The account has no diary yet.
    #[error("this account has no diary yet (run init first)")]
    NotInitialised,
    /// The account already has a diary.
    #[error("this account already has a diary (unlock it instead)")]
    AlreadyInitialised,
    /// The reserved bundle item does not have the expected layout.
    #[error("the key bundle stored on the relay is malformed")]
    BundleMalformed,
    /// The bundle changed on another device since this one read it.
    #[error("the key bundle was changed by another device; unlock again and retry")]
    BundleConflict,
    /// No entry with this id.
    #[error("no such entry")]
    UnknownEntry,
    /// The entry changed on another device before the operation reached the relay; the newer
    /// version was pulled, retry the operation.
    #[error("the entry changed on another device; it was synced, retry")]
    Conflict,
    /// The entry has no earlier live revision to restore.
    #[error("nothing to restore")]
    NothingToRestore,
    /// The local state does not decode.
    #[error("the local diary state is corrupt")]
    CorruptState,
    /// The relay kept answering without the sync settling.
    #[error("sync did not settle after {0} requests")]
    SyncDidNotSettle(usize),
    /// The relay's answer did not have the expected shape.
    #[error("unexpected answer from the relay: {0}")]
    InvalidResponse(&'static str),
}

impl DiaryClientError {
    /// Whether this is a verification failure of data served by the relay.
    #[must_use]
    pub fn is_tampering(&self) -> bool {
        matches!(self, Self::Sync(_))
    }
}

/// One revision of an entry's history, decrypted.
#[derive(Debug, Clone)]
pub struct HistoryRevision {
    /// Revision number.
    pub revision: u64,
    /// Whether this revision is a deletion tombstone.
    pub deleted: bool,
    /// The relay's coarse time of the write (Unix seconds).
    pub created_at: i64,
    /// The entry (`None` for a tombstone).
    pub entry: Option<Entry>,
}

/// What one [`Diary::sync`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// Changed items received from the relay.
    pub pulled: usize,
    /// Writes the relay accepted.
    pub pushed: usize,
    /// Writes refused with 409 (each followed by a pull and a merge).
    pub conflicts: usize,
    /// Local edits still not acknowledged (e.g. pushed again after a merge that another device
    /// raced).
    pub pending: usize,
}

fn rng() -> impl rand_core::CryptoRng {
    rand::rng()
}

fn random_id<R: rand_core::CryptoRng>(rng: &mut R) -> [u8; 16] {
    let mut id = [0u8; 16];
    rng.fill_bytes(&mut id);
    id
}

fn item_path(collection: &[u8; 16], item: &[u8; 16]) -> String {
    format!(
        "/v1/vault/{}/items/{}",
        hex::encode(collection),
        hex::encode(item)
    )
}

fn b64(s: &str) -> Result<Vec<u8>, DiaryClientError> {
    STANDARD
        .decode(s)
        .map_err(|_| DiaryClientError::InvalidResponse("blob is not base64"))
}

fn u64_value(bytes: &[u8]) -> Result<u64, DiaryClientError> {
    <[u8; 8]>::try_from(bytes)
        .map(u64::from_be_bytes)
        .map_err(|_| DiaryClientError::CorruptState)
}

/// Encodes the reserved bundle item's body:
/// `0x01 || collection_id (16) || u32be(len) || bundle || zero bytes`, zero-filled to the
/// smallest vault item length (a padding bucket plus 41) that holds it.
#[must_use]
pub fn encode_bundle_item(bundle: &WrappedKeyBundle, collection: &[u8; 16]) -> Vec<u8> {
    let bytes = bundle.to_bytes();
    let mut out = Vec::with_capacity(bytes.len() + 512);
    out.push(BUNDLE_ITEM_FORMAT);
    out.extend_from_slice(collection);
    // A bundle is at most a few kilobytes.
    out.extend_from_slice(&u32::try_from(bytes.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(&bytes);
    let total = padded_len(out.len() as u64).map_or(out.len() as u64, |b| b + ITEM_OVERHEAD);
    out.resize(usize::try_from(total).unwrap_or(out.len()), 0);
    out
}

/// Decodes the reserved bundle item's body (strict: the filler must be zero).
///
/// # Errors
/// [`DiaryClientError::BundleMalformed`].
pub fn decode_bundle_item(body: &[u8]) -> Result<(WrappedKeyBundle, [u8; 16]), DiaryClientError> {
    let bad = || DiaryClientError::BundleMalformed;
    let (&format, rest) = body.split_first().ok_or_else(bad)?;
    if format != BUNDLE_ITEM_FORMAT {
        return Err(bad());
    }
    let (collection, rest) = rest.split_first_chunk::<16>().ok_or_else(bad)?;
    let (len, rest) = rest.split_first_chunk::<4>().ok_or_else(bad)?;
    let len = u32::from_be_bytes(*len) as usize;
    let (bundle, filler) = rest.split_at_checked(len).ok_or_else(bad)?;
    if filler.iter().any(|b| *b != 0) {
        return Err(bad());
    }
    let bundle = WrappedKeyBundle::from_bytes(bundle).map_err(|_| bad())?;
    Ok((bundle, *collection))
}

/// `revision || deleted || u32be(len(body)) || body || meta` (blobs empty for a tombstone).
fn encode_record(revision: u64, deleted: bool, sealed: Option<&SealedEntry>) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&revision.to_be_bytes());
    out.push(u8::from(deleted));
    match sealed {
        Some(s) => {
            out.extend_from_slice(
                &u32::try_from(s.body.len())
                    .unwrap_or(u32::MAX)
                    .to_be_bytes(),
            );
            out.extend_from_slice(&s.body);
            out.extend_from_slice(&s.meta);
        }
        None => out.extend_from_slice(&0u32.to_be_bytes()),
    }
    out
}

fn decode_record(id: [u8; 16], bytes: &[u8]) -> Result<RemoteItem, DiaryClientError> {
    let bad = || DiaryClientError::CorruptState;
    let (revision, rest) = bytes.split_first_chunk::<8>().ok_or_else(bad)?;
    let (&deleted, rest) = rest.split_first().ok_or_else(bad)?;
    let (len, rest) = rest.split_first_chunk::<4>().ok_or_else(bad)?;
    let (body, meta) = rest
        .split_at_checked(u32::from_be_bytes(*len) as usize)
        .ok_or_else(bad)?;
    let deleted = deleted != 0;
    Ok(RemoteItem {
        item_id: id,
        revision: u64::from_be_bytes(*revision),
        deleted,
        body: (!deleted).then(|| body.to_vec()),
        meta: (!deleted).then(|| meta.to_vec()),
    })
}

fn encode_sealed(s: &SealedEntry) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + s.body.len() + s.meta.len());
    out.extend_from_slice(
        &u32::try_from(s.body.len())
            .unwrap_or(u32::MAX)
            .to_be_bytes(),
    );
    out.extend_from_slice(&s.body);
    out.extend_from_slice(&s.meta);
    out
}

fn decode_sealed(bytes: &[u8]) -> Result<SealedEntry, DiaryClientError> {
    let (len, rest) = bytes
        .split_first_chunk::<4>()
        .ok_or(DiaryClientError::CorruptState)?;
    let (body, meta) = rest
        .split_at_checked(u32::from_be_bytes(*len) as usize)
        .ok_or(DiaryClientError::CorruptState)?;
    Ok(SealedEntry {
        body: body.to_vec(),
        meta: meta.to_vec(),
    })
}

/// A pending row: item id and its sealed pending entry (`None`: no pending edit).
type PendingRow = ([u8; 16], Option<Vec<u8>>);

/// The bundle as stored locally: bundle, collection id, revision of the reserved item.
struct StoredBundle {
    bundle: WrappedKeyBundle,
    collection: [u8; 16],
    revision: u64,
}

fn load_bundle(store: &ClientStore) -> Result<Option<StoredBundle>, DiaryClientError> {
    let Some(bytes) = store.get(SPACE_META, KEY_BUNDLE)? else {
        return Ok(None);
    };
    let bundle =
        WrappedKeyBundle::from_bytes(&bytes).map_err(|_| DiaryClientError::CorruptState)?;
    let collection: [u8; 16] = store
        .get(SPACE_META, KEY_COLLECTION)?
        .and_then(|c| <[u8; 16]>::try_from(c.as_slice()).ok())
        .ok_or(DiaryClientError::CorruptState)?;
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

fn save_bundle(store: &ClientStore, b: &StoredBundle) -> Result<(), ClientStoreError> {
    store.atomically(|s| {
        s.put(SPACE_META, KEY_BUNDLE, &b.bundle.to_bytes())?;
        s.put(SPACE_META, KEY_COLLECTION, &b.collection)?;
        s.put(SPACE_META, KEY_BUNDLE_REVISION, &b.revision.to_be_bytes())
    })
}

/// Reads the reserved bundle item from the relay.
async fn fetch_bundle(relay: &RelayClient) -> Result<StoredBundle, DiaryClientError> {
    let path = item_path(&BUNDLE_COLLECTION, &BUNDLE_ITEM);
    let item: ItemBody = match relay.request_as(Method::GET, &path, None::<&()>).await {
        Ok(item) => item,
        Err(e) if e.code() == Some("item_not_found") => {
            return Err(DiaryClientError::NotInitialised);
        }
        Err(e) => return Err(e.into()),
    };
    let body = item.body.ok_or(DiaryClientError::NotInitialised)?;
    let (bundle, collection) = decode_bundle_item(&b64(&body)?)?;
    Ok(StoredBundle {
        bundle,
        collection,
        revision: item.revision,
    })
}

/// Writes the reserved bundle item with optimistic concurrency; returns its new revision.
async fn upload_bundle(
    relay: &RelayClient,
    bundle: &WrappedKeyBundle,
    collection: &[u8; 16],
    expected_revision: u64,
) -> Result<u64, DiaryClientError> {
    let body = encode_bundle_item(bundle, collection);
    let meta = vec![0u8; usize::try_from(MIN_ITEM_LEN).unwrap_or(297)];
    let req = ItemWriteRequest {
        expected_revision,
        body: STANDARD.encode(&body),
        meta: STANDARD.encode(&meta),
    };
    let path = item_path(&BUNDLE_COLLECTION, &BUNDLE_ITEM);
    match relay
        .request_as::<ItemWritten, _>(Method::PUT, &path, Some(&req))
        .await
    {
        Ok(w) => Ok(w.revision),
        Err(e) if e.status() == Some(409) && expected_revision == 0 => {
            Err(DiaryClientError::AlreadyInitialised)
        }
        Err(e) if e.status() == Some(409) => Err(DiaryClientError::BundleConflict),
        Err(e) => Err(e.into()),
    }
}

/// An unlocked diary on this device.
pub struct Diary {
    store: ClientStore,
    relay: RelayClient,
    keys: DiaryKeys,
    bundle: StoredBundle,
    sync: DiarySync,
}

impl std::fmt::Debug for Diary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Diary")
            .field("entries", &self.sync.index().len())
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
    /// [`DiaryClientError::AlreadyInitialised`] if the account has a diary, key and relay errors.
    pub async fn init(
        store: ClientStore,
        relay: RelayClient,
        password: &[u8],
        params: KdfParams,
    ) -> Result<(Self, Vec<RecoveryCode>), DiaryClientError> {
        let (keys, bundle, codes) = DiaryKeys::create(password, params, &mut rng())?;
        let collection = random_id(&mut rng());
        let revision = upload_bundle(&relay, &bundle, &collection, 0).await?;
        let stored = StoredBundle {
            bundle,
            collection,
            revision,
        };
        save_bundle(&store, &stored)?;
        let sync = DiarySync::new(collection);
        Ok((
            Self {
                store,
                relay,
                keys,
                bundle: stored,
                sync,
            },
            codes,
        ))
    }

    /// Unlocks the diary with the password. Uses the local copy of the bundle; fetches it from
    /// the relay when there is none, or when the password does not open the local copy (it may
    /// have been changed on another device). Local state is loaded without contacting the relay.
    ///
    /// # Errors
    /// [`DiaryError::WrongPassword`] (as [`DiaryClientError::Keys`]),
    /// [`DiaryClientError::NotInitialised`], relay and store errors.
    pub async fn unlock(
        store: ClientStore,
        relay: RelayClient,
        password: &[u8],
    ) -> Result<Self, DiaryClientError> {
        let (keys, bundle) = match load_bundle(&store)? {
            Some(local) => match DiaryKeys::unlock_with_password(&local.bundle, password) {
                Ok(keys) => (keys, local),
                Err(DiaryError::WrongPassword) => {
                    // Maybe changed elsewhere: the relay's copy decides.
                    let remote = match fetch_bundle(&relay).await {
                        Ok(r) if r.bundle != local.bundle => r,
                        _ => return Err(DiaryError::WrongPassword.into()),
                    };
                    if remote.collection != local.collection {
                        return Err(DiaryClientError::BundleMalformed);
                    }
                    let keys = DiaryKeys::unlock_with_password(&remote.bundle, password)?;
                    save_bundle(&store, &remote)?;
                    (keys, remote)
                }
                Err(e) => return Err(e.into()),
            },
            None => {
                let remote = fetch_bundle(&relay).await?;
                let keys = DiaryKeys::unlock_with_password(&remote.bundle, password)?;
                save_bundle(&store, &remote)?;
                (keys, remote)
            }
        };
        Self::open(store, relay, keys, bundle)
    }

    /// Recovers the diary on a device with a recovery code and sets `new_password` (Argon2id
    /// with `params`); the new bundle is uploaded with optimistic concurrency. The recovery
    /// codes stay valid (regenerate them with [`Diary::regenerate_recovery_codes`]).
    ///
    /// # Errors
    /// [`DiaryError::WrongRecoveryCode`] / [`DiaryError::InvalidRecoveryCode`] (as
    /// [`DiaryClientError::Keys`]), [`DiaryClientError::BundleConflict`], relay errors.
    pub async fn recover(
        store: ClientStore,
        relay: RelayClient,
        code: &str,
        new_password: &[u8],
        params: KdfParams,
    ) -> Result<Self, DiaryClientError> {
        let remote = fetch_bundle(&relay).await?;
        let keys = DiaryKeys::unlock_with_recovery_code(&remote.bundle, code)?;
        let bundle = keys.change_password(&remote.bundle, new_password, params, &mut rng())?;
        let revision = upload_bundle(&relay, &bundle, &remote.collection, remote.revision).await?;
        let stored = StoredBundle {
            bundle,
            collection: remote.collection,
            revision,
        };
        save_bundle(&store, &stored)?;
        Self::open(store, relay, keys, stored)
    }

    /// Loads the local state: the stored items are verified and indexed again, the pending
    /// edits re-applied on top.
    fn open(
        store: ClientStore,
        relay: RelayClient,
        keys: DiaryKeys,
        bundle: StoredBundle,
    ) -> Result<Self, DiaryClientError> {
        let collection = bundle.collection;
        let token = match store.get(SPACE_META, KEY_TOKEN)? {
            Some(t) => u64_value(&t)?,
            None => 0,
        };
        let mut changes = Vec::new();
        let mut known = BTreeSet::new();
        for (key, value) in store.entries(SPACE_ITEMS)? {
            let id: [u8; 16] = key
                .as_slice()
                .try_into()
                .map_err(|_| DiaryClientError::CorruptState)?;
            known.insert(id);
            changes.push(decode_record(id, &value)?);
        }
        let mut pending = Vec::new();
        for (key, value) in store.entries(SPACE_PENDING)? {
            let id: [u8; 16] = key
                .as_slice()
                .try_into()
                .map_err(|_| DiaryClientError::CorruptState)?;
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
        sync.apply_changes(&keys, &page, &mut rng())
            .map_err(|_| DiaryClientError::CorruptState)?;
        for (id, sealed) in pending {
            let entry = Entry::open(&keys, &collection, &id, LOCAL_REVISION, &sealed)
                .map_err(|_| DiaryClientError::CorruptState)?;
            let deleted = sync.revision(&id).is_some() && sync.entry(&id).is_none();
            let replay = if deleted {
                sync.restore(&keys, &id, entry, &mut rng())
            } else {
                sync.edit(&keys, &id, entry, &mut rng())
            };
            replay.map_err(|_| DiaryClientError::CorruptState)?;
        }
        Ok(Self {
            store,
            relay,
            keys,
            bundle,
            sync,
        })
    }

    /// The relay client (to persist its session after use).
    #[must_use]
    pub fn relay(&self) -> &RelayClient {
        &self.relay
    }

    /// The local store.
    #[must_use]
    pub fn store(&self) -> &ClientStore {
        &self.store
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

    /// Changes the password: re-wraps the master key only (entries are untouched) and uploads
    /// the new bundle, failing with [`DiaryClientError::BundleConflict`] if another device
    /// changed it first.
    ///
    /// # Errors
    /// [`DiaryClientError::BundleConflict`], key and relay errors.
    pub async fn change_password(
        &mut self,
        new_password: &[u8],
        params: KdfParams,
    ) -> Result<(), DiaryClientError> {
        let bundle =
            self.keys
                .change_password(&self.bundle.bundle, new_password, params, &mut rng())?;
        self.replace_bundle(bundle).await
    }

    /// Replaces every recovery code (the old ones stop working); returns the new ones, to show
    /// once.
    ///
    /// # Errors
    /// [`DiaryClientError::BundleConflict`], relay errors.
    pub async fn regenerate_recovery_codes(
        &mut self,
    ) -> Result<Vec<RecoveryCode>, DiaryClientError> {
        let (bundle, codes) = self
            .keys
            .regenerate_recovery_codes(&self.bundle.bundle, &mut rng());
        self.replace_bundle(bundle).await?;
        Ok(codes)
    }

    async fn replace_bundle(&mut self, bundle: WrappedKeyBundle) -> Result<(), DiaryClientError> {
        let revision = upload_bundle(
            &self.relay,
            &bundle,
            &self.bundle.collection,
            self.bundle.revision,
        )
        .await?;
        let stored = StoredBundle {
            bundle,
            collection: self.bundle.collection,
            revision,
        };
        save_bundle(&self.store, &stored)?;
        self.bundle = stored;
        Ok(())
    }

    /// The pending rows of `ids`: the sealed pending entry, or `None` to delete the row.
    fn pending_rows(&self, ids: &[[u8; 16]]) -> Result<Vec<PendingRow>, DiaryClientError> {
        let mut rows = Vec::with_capacity(ids.len());
        for id in ids {
            let row = match (self.sync.has_pending(id), self.sync.entry(id)) {
                (true, Some(entry)) => Some(encode_sealed(&entry.seal(
                    &self.keys,
                    &self.bundle.collection,
                    id,
                    LOCAL_REVISION,
                    &mut rng(),
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
        s: &ClientStore,
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
    fn persist_pending(&self, ids: &[[u8; 16]]) -> Result<(), DiaryClientError> {
        let rows = self.pending_rows(ids)?;
        self.store
            .atomically(|s| self.write_pending_rows(s, &rows))?;
        Ok(())
    }

    /// Writes a new entry (local first; [`Diary::sync`] sends it). `created_ms`/`updated_ms`
    /// are taken as given. Returns its id.
    ///
    /// # Errors
    /// [`DiaryClientError::Sync`] with an entry limit error (nothing is stored), store errors.
    pub fn write(&mut self, entry: Entry) -> Result<[u8; 16], DiaryClientError> {
        entry.validate()?;
        let (id, _request) = self.sync.create(&self.keys, entry, &mut rng())?;
        self.persist_pending(&[id])?;
        Ok(id)
    }

    /// Replaces an entry with `entry` (local first; [`Diary::sync`] sends it).
    ///
    /// # Errors
    /// [`DiaryClientError::UnknownEntry`], entry limits, store errors.
    pub fn edit(&mut self, id: &[u8; 16], entry: Entry) -> Result<(), DiaryClientError> {
        entry.validate()?;
        if self.sync.entry(id).is_none() {
            return Err(DiaryClientError::UnknownEntry);
        }
        self.sync.edit(&self.keys, id, entry, &mut rng())?;
        self.persist_pending(&[*id])
    }

    /// Soft-deletes an entry on the relay (needs the relay; its history stays restorable).
    ///
    /// # Errors
    /// [`DiaryClientError::UnknownEntry`], [`DiaryClientError::Conflict`] if it changed
    /// elsewhere first (the change is pulled), relay errors.
    pub async fn delete(&mut self, id: &[u8; 16]) -> Result<(), DiaryClientError> {
        if self.sync.entry(id).is_none() {
            return Err(DiaryClientError::UnknownEntry);
        }
        if self.sync.revision(id) == Some(0) {
            // Never reached the relay: send the creation first, then delete it.
            self.sync().await?;
        }
        let request = self.sync.delete(id)?;
        let mut report = SyncReport::default();
        self.run(VecDeque::from([request]), &mut report).await?;
        if self.sync.entry(id).is_some() {
            return Err(DiaryClientError::Conflict);
        }
        Ok(())
    }

    /// Restores a deleted entry from its last live revision (local first; [`Diary::sync`]
    /// sends it).
    ///
    /// # Errors
    /// [`DiaryClientError::UnknownEntry`], [`DiaryClientError::NothingToRestore`], relay
    /// errors, verification errors of the history.
    pub async fn restore(&mut self, id: &[u8; 16]) -> Result<(), DiaryClientError> {
        if self.sync.revision(id).is_none() {
            return Err(DiaryClientError::UnknownEntry);
        }
        if self.sync.entry(id).is_some() {
            return Err(SyncError::WrongState.into());
        }
        let history = self.history(id).await?;
        let entry = history
            .into_iter()
            .rev()
            .find_map(|r| r.entry)
            .ok_or(DiaryClientError::NothingToRestore)?;
        self.sync.restore(&self.keys, id, entry, &mut rng())?;
        self.persist_pending(&[*id])
    }

    /// The entry as this device sees it (pending local edits included); `None` if deleted or
    /// unknown.
    #[must_use]
    pub fn show(&self, id: &[u8; 16]) -> Option<&Entry> {
        self.sync.entry(id)
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

    /// Every revision of an entry on the relay, oldest first, each verified and decrypted.
    ///
    /// # Errors
    /// [`DiaryClientError::Entry`] if a revision does not open under its id and number, relay
    /// errors.
    pub async fn history(&self, id: &[u8; 16]) -> Result<Vec<HistoryRevision>, DiaryClientError> {
        let base = item_path(&self.bundle.collection, id);
        let mut after = 0u64;
        let mut out: Vec<HistoryRevision> = Vec::new();
        for _ in 0..MAX_HISTORY_PAGES {
            let page: HistoryReply = self
                .relay
                .request_as(
                    Method::GET,
                    &format!("{base}/history?after={after}"),
                    None::<&()>,
                )
                .await?;
            for r in page.revisions {
                if out.last().is_some_and(|last| last.revision >= r.revision) {
                    return Err(DiaryClientError::InvalidResponse("history out of order"));
                }
                let entry = match (r.deleted, r.body, r.meta) {
                    (true, _, _) => None,
                    (false, Some(body), Some(meta)) => {
                        let sealed = SealedEntry {
                            body: b64(&body)?,
                            meta: b64(&meta)?,
                        };
                        Some(Entry::open(
                            &self.keys,
                            &self.bundle.collection,
                            id,
                            r.revision,
                            &sealed,
                        )?)
                    }
                    _ => return Err(SyncError::MissingBlobs.into()),
                };
                out.push(HistoryRevision {
                    revision: r.revision,
                    deleted: r.deleted,
                    created_at: r.created_at,
                    entry,
                });
            }
            match page.next_after {
                Some(next) if next > after => after = next,
                _ => return Ok(out),
            }
        }
        Ok(out)
    }

    /// Pushes every pending edit (a 409 pulls, merges three-way and retries), then pulls what
    /// other devices wrote. If the relay serves data that fails verification the error is
    /// returned and nothing local changes for that page.
    ///
    /// # Errors
    /// [`DiaryClientError::Sync`] (tampering, rollback, fork), relay and store errors.
    pub async fn sync(&mut self) -> Result<SyncReport, DiaryClientError> {
        let mut queue: VecDeque<VaultRequest> = self
            .sync
            .resend_pending(&self.keys, &mut rng())?
            .into_iter()
            .collect();
        queue.push_back(self.sync.pull());
        let mut report = SyncReport::default();
        self.run(queue, &mut report).await?;
        report.pending = self
            .sync
            .search(&DiaryQuery::default())
            .into_iter()
            .filter(|id| self.sync.has_pending(id))
            .count();
        Ok(report)
    }

    /// Sends requests until none is left.
    async fn run(
        &mut self,
        mut queue: VecDeque<VaultRequest>,
        report: &mut SyncReport,
    ) -> Result<(), DiaryClientError> {
        let mut sent = 0usize;
        let mut resyncing = false;
        while let Some(request) = queue.pop_front() {
            sent += 1;
            if sent > MAX_SYNC_REQUESTS {
                return Err(DiaryClientError::SyncDidNotSettle(MAX_SYNC_REQUESTS));
            }
            match request {
                VaultRequest::Changes { since } => {
                    let path = format!(
                        "/v1/vault/{}/changes?since={since}",
                        hex::encode(self.bundle.collection)
                    );
                    let reply: ChangesReply =
                        match self.relay.request_as(Method::GET, &path, None::<&()>).await {
                            Ok(r) => r,
                            Err(e) if e.code() == Some("sync_token_expired") => {
                                resyncing = true;
                                queue.push_back(self.sync.token_expired());
                                continue;
                            }
                            Err(e) => return Err(e.into()),
                        };
                    let page = Self::page(reply)?;
                    let follow = self.sync.apply_changes(&self.keys, &page, &mut rng())?;
                    report.pulled += page.changes.len();
                    self.persist_page(&page, resyncing && !page.more)?;
                    queue.extend(follow);
                }
                VaultRequest::Put {
                    item_id,
                    expected_revision,
                    sealed,
                } => {
                    let path = item_path(&self.bundle.collection, &item_id);
                    let body = ItemWriteRequest {
                        expected_revision,
                        body: STANDARD.encode(&sealed.body),
                        meta: STANDARD.encode(&sealed.meta),
                    };
                    let result = self
                        .relay
                        .request_as::<ItemWritten, _>(Method::PUT, &path, Some(&body))
                        .await;
                    self.written(result, item_id, Some(&sealed), &mut queue, report)?;
                }
                VaultRequest::Restore {
                    item_id,
                    expected_revision,
                    sealed,
                } => {
                    let path = format!("{}/restore", item_path(&self.bundle.collection, &item_id));
                    let body = ItemWriteRequest {
                        expected_revision,
                        body: STANDARD.encode(&sealed.body),
                        meta: STANDARD.encode(&sealed.meta),
                    };
                    let result = self
                        .relay
                        .request_as::<ItemWritten, _>(Method::POST, &path, Some(&body))
                        .await;
                    self.written(result, item_id, Some(&sealed), &mut queue, report)?;
                }
                VaultRequest::Delete {
                    item_id,
                    expected_revision,
                } => {
                    let path = format!(
                        "{}?expected_revision={expected_revision}",
                        item_path(&self.bundle.collection, &item_id)
                    );
                    let result = self
                        .relay
                        .request_as::<ItemWritten, _>(Method::DELETE, &path, None::<&()>)
                        .await;
                    self.written(result, item_id, None, &mut queue, report)?;
                }
                _ => return Err(DiaryClientError::InvalidResponse("unknown request kind")),
            }
        }
        Ok(())
    }

    fn page(reply: ChangesReply) -> Result<ChangesPage, DiaryClientError> {
        let mut changes = Vec::with_capacity(reply.changes.len());
        for item in reply.changes {
            changes.push(RemoteItem {
                item_id: *item.item_id.as_bytes(),
                revision: item.revision,
                deleted: item.deleted,
                body: item.body.as_deref().map(b64).transpose()?,
                meta: item.meta.as_deref().map(b64).transpose()?,
            });
        }
        Ok(ChangesPage {
            changes,
            sync_token: reply.sync_token,
            more: reply.more,
        })
    }

    /// Handles the answer to a write.
    fn written(
        &mut self,
        result: Result<ItemWritten, RelayError>,
        item_id: [u8; 16],
        sealed: Option<&SealedEntry>,
        queue: &mut VecDeque<VaultRequest>,
        report: &mut SyncReport,
    ) -> Result<(), DiaryClientError> {
        match result {
            Ok(w) => {
                report.pushed += 1;
                let follow_ups = self.sync.write_succeeded(
                    &self.keys,
                    &item_id,
                    w.revision,
                    w.deleted,
                    &mut rng(),
                )?;
                queue.extend(follow_ups);
                let record = encode_record(w.revision, w.deleted, sealed.filter(|_| !w.deleted));
                let rows = self.pending_rows(&[item_id])?;
                self.store.atomically(|s| {
                    s.put(SPACE_ITEMS, &item_id, &record)?;
                    self.write_pending_rows(s, &rows)
                })?;
                Ok(())
            }
            Err(e) if e.status() == Some(409) => {
                report.conflicts += 1;
                // A later write of the same item in the queue is stale now: the pull decides.
                queue.retain(|r| {
                    !matches!(r, VaultRequest::Put { item_id: i, .. }
                    | VaultRequest::Restore { item_id: i, .. }
                    | VaultRequest::Delete { item_id: i, .. } if *i == item_id)
                });
                queue.extend(
                    self.sync
                        .write_conflicted(&self.keys, &item_id, &mut rng())?,
                );
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Persists a verified page: the items as the relay has them, the pending state of each,
    /// the token; after the last page of a full resync, forgets the items it did not list.
    fn persist_page(&self, page: &ChangesPage, resync_done: bool) -> Result<(), DiaryClientError> {
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
        let rows = self.pending_rows(&ids)?;
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
        Ok(())
    }
}

/// The recovery codes as text, to show to the user once.
#[must_use]
pub fn codes_text(codes: &[RecoveryCode]) -> Vec<Zeroizing<String>> {
    codes.iter().map(RecoveryCode::to_text).collect()
}
