//! The diary's sync state machine (§9.7), sans-I/O: it is fed the relay's replies (pages of
//! changes, write results, 409s, 410s) and returns the requests to make next. It owns the local
//! view of one collection (decrypted entries, the search index, the highest revision seen per
//! item) and never performs I/O, reads a clock or draws randomness except through arguments.
//!
//! A page is applied all-or-nothing: every item is checked (rollback, fork, decryption) before
//! anything changes, so a tampered page leaves the state as it was.

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::vec::Vec;

use rand_core::CryptoRng;
use sha2::{Digest, Sha256};

use super::DiaryKeys;
use super::entry::{Entry, EntryError, SealedEntry};
use super::index::{DiaryIndex, DiaryQuery};
use super::merge::merge_entries;

/// Errors of the sync state machine. None of them changes the state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SyncError {
    /// An item did not open (tampered, moved, or the wrong key).
    #[error("item does not open: {0}")]
    Entry(#[from] EntryError),
    /// The relay served an older revision than one already seen for this item.
    #[error("rolled back: revision {served} served after {seen} was seen")]
    RolledBack {
        /// Highest revision seen before.
        seen: u64,
        /// Revision served now.
        served: u64,
    },
    /// The relay served different content for a revision already seen.
    #[error("revision {0} was served with different content")]
    Forked(u64),
    /// A live item came without blobs.
    #[error("item without blobs")]
    MissingBlobs,
    /// No such local item.
    #[error("unknown item")]
    UnknownItem,
    /// The item is deleted (edit) or not deleted (restore).
    #[error("operation not valid in the item's state")]
    WrongState,
}

/// One item of a changes page, as the relay sent it (blobs decoded from base64).
#[derive(Clone)]
pub struct RemoteItem {
    /// Item id.
    pub item_id: [u8; 16],
    /// Current revision.
    pub revision: u64,
    /// Whether it is a tombstone.
    pub deleted: bool,
    /// Encrypted body (`None` for a tombstone).
    pub body: Option<Vec<u8>>,
    /// Encrypted metadata (`None` for a tombstone).
    pub meta: Option<Vec<u8>>,
}

/// A page of `GET /v1/vault/{collection}/changes`.
#[derive(Clone)]
pub struct ChangesPage {
    /// Changed items.
    pub changes: Vec<RemoteItem>,
    /// Token for the next call.
    pub sync_token: u64,
    /// Whether more changes wait.
    pub more: bool,
}

/// A request for the host to send to the relay (§11.16).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum VaultRequest {
    /// `GET /v1/vault/{collection}/changes?since=…`.
    Changes {
        /// The sync token.
        since: u64,
    },
    /// `PUT /v1/vault/{collection}/items/{item_id}`.
    Put {
        /// Item id.
        item_id: [u8; 16],
        /// Expected current revision (0 to create).
        expected_revision: u64,
        /// The blobs, encrypted for `expected_revision + 1`.
        sealed: SealedEntry,
    },
    /// `DELETE /v1/vault/{collection}/items/{item_id}?expected_revision=…`.
    Delete {
        /// Item id.
        item_id: [u8; 16],
        /// Expected current revision.
        expected_revision: u64,
    },
    /// `POST /v1/vault/{collection}/items/{item_id}/restore`.
    Restore {
        /// Item id.
        item_id: [u8; 16],
        /// Expected current revision (the tombstone).
        expected_revision: u64,
        /// The blobs, encrypted for `expected_revision + 1`.
        sealed: SealedEntry,
    },
}

/// A local edit not yet acknowledged by the relay.
#[derive(Clone)]
struct Pending {
    /// The revision the edit was based on, and its entry (the merge base).
    base_revision: u64,
    base: Option<Entry>,
    /// What the user has now.
    ours: Entry,
    /// The revision the last request for this edit creates, and its meta digest.
    target: u64,
    digest: [u8; 32],
    /// After a conflicted merge: the revision, meta digest and entry of the preserved full
    /// version of this device, written before the merge.
    preserve: Option<(u64, [u8; 32], Entry)>,
}

#[derive(Clone, Default)]
struct Local {
    /// Highest revision seen from the relay or written by us (rollback protection).
    revision: u64,
    /// SHA-256 of the meta blob of `revision` (fork detection); zero for tombstones.
    digest: [u8; 32],
    deleted: bool,
    /// The entry at `revision` (as the relay has it).
    entry: Option<Entry>,
    pending: Option<Pending>,
}

impl Local {
    /// What the user sees: the pending edit if any, else the relay's version.
    fn shown(&self) -> Option<&Entry> {
        match &self.pending {
            Some(p) => Some(&p.ours),
            None if self.deleted => None,
            None => self.entry.as_ref(),
        }
    }
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// The local state of one diary collection and its sync with the relay.
pub struct DiarySync {
    collection: [u8; 16],
    token: u64,
    /// During a full resync (after 410), the ids seen so far.
    resync: Option<BTreeSet<[u8; 16]>>,
    items: BTreeMap<[u8; 16], Local>,
    index: DiaryIndex,
}

/// An item of a page after every check passed.
enum Checked {
    Skip,
    Deleted {
        id: [u8; 16],
        revision: u64,
    },
    Live {
        id: [u8; 16],
        revision: u64,
        digest: [u8; 32],
        entry: Entry,
    },
}

impl DiarySync {
    /// A fresh state for `collection` (sync from the beginning).
    pub fn new(collection: [u8; 16]) -> Self {
        Self {
            collection,
            token: 0,
            resync: None,
            items: BTreeMap::new(),
            index: DiaryIndex::new(),
        }
    }

    /// The collection id.
    pub fn collection(&self) -> &[u8; 16] {
        &self.collection
    }

    /// The current sync token.
    pub fn token(&self) -> u64 {
        self.token
    }

    /// The request that fetches what changed since the last sync.
    pub fn pull(&self) -> VaultRequest {
        VaultRequest::Changes { since: self.token }
    }

    /// The entry as the user sees it (a pending local edit included); `None` if deleted.
    pub fn entry(&self, item_id: &[u8; 16]) -> Option<&Entry> {
        self.items.get(item_id).and_then(Local::shown)
    }

    /// The highest revision seen of an item.
    pub fn revision(&self, item_id: &[u8; 16]) -> Option<u64> {
        self.items.get(item_id).map(|l| l.revision)
    }

    /// Whether an item has a local edit the relay has not acknowledged.
    pub fn has_pending(&self, item_id: &[u8; 16]) -> bool {
        self.items.get(item_id).is_some_and(|l| l.pending.is_some())
    }

    /// The local index (searches never leave the device).
    pub fn index(&self) -> &DiaryIndex {
        &self.index
    }

    /// Runs a search on the local index.
    pub fn search(&self, query: &DiaryQuery) -> Vec<[u8; 16]> {
        self.index.search(query)
    }

    fn reindex(&mut self, id: &[u8; 16]) {
        match self.items.get(id).and_then(Local::shown) {
            Some(e) => self.index.upsert(*id, e),
            None => self.index.remove(id),
        }
    }

    fn seal<R: CryptoRng + ?Sized>(
        &self,
        keys: &DiaryKeys,
        id: &[u8; 16],
        revision: u64,
        entry: &Entry,
        rng: &mut R,
    ) -> Result<SealedEntry, SyncError> {
        Ok(entry.seal(keys, &self.collection, id, revision, rng)?)
    }

    /// Creates an entry with a fresh random id; returns the id and the request.
    ///
    /// # Errors
    /// Entry limits.
    pub fn create<R: CryptoRng + ?Sized>(
        &mut self,
        keys: &DiaryKeys,
        entry: Entry,
        rng: &mut R,
    ) -> Result<([u8; 16], VaultRequest), SyncError> {
        let mut id = [0u8; 16];
        rng.fill_bytes(&mut id);
        let sealed = self.seal(keys, &id, 1, &entry, rng)?;
        let local = Local {
            pending: Some(Pending {
                base_revision: 0,
                base: None,
                ours: entry,
                target: 1,
                digest: digest(&sealed.meta),
                preserve: None,
            }),
            ..Local::default()
        };
        self.items.insert(id, local);
        self.reindex(&id);
        Ok((
            id,
            VaultRequest::Put {
                item_id: id,
                expected_revision: 0,
                sealed,
            },
        ))
    }

    /// Records a local edit of an existing entry; returns the write request.
    ///
    /// # Errors
    /// [`SyncError::UnknownItem`], [`SyncError::WrongState`] (deleted), entry limits.
    pub fn edit<R: CryptoRng + ?Sized>(
        &mut self,
        keys: &DiaryKeys,
        item_id: &[u8; 16],
        entry: Entry,
        rng: &mut R,
    ) -> Result<VaultRequest, SyncError> {
        let local = self.items.get(item_id).ok_or(SyncError::UnknownItem)?;
        if local.deleted && local.pending.is_none() {
            return Err(SyncError::WrongState);
        }
        let expected = local.revision;
        let sealed = self.seal(keys, item_id, expected + 1, &entry, rng)?;
        let base = match &local.pending {
            Some(p) => (p.base_revision, p.base.clone()),
            None => (local.revision, local.entry.clone()),
        };
        let restoring = local.deleted;
        let pending = Pending {
            base_revision: base.0,
            base: base.1,
            ours: entry,
            target: expected + 1,
            digest: digest(&sealed.meta),
            preserve: None,
        };
        if let Some(l) = self.items.get_mut(item_id) {
            l.pending = Some(pending);
        }
        self.reindex(item_id);
        Ok(if restoring {
            VaultRequest::Restore {
                item_id: *item_id,
                expected_revision: expected,
                sealed,
            }
        } else {
            VaultRequest::Put {
                item_id: *item_id,
                expected_revision: expected,
                sealed,
            }
        })
    }

    /// The request that soft-deletes an entry.
    ///
    /// # Errors
    /// [`SyncError::UnknownItem`], [`SyncError::WrongState`] (already deleted).
    pub fn delete(&self, item_id: &[u8; 16]) -> Result<VaultRequest, SyncError> {
        let local = self.items.get(item_id).ok_or(SyncError::UnknownItem)?;
        if local.deleted {
            return Err(SyncError::WrongState);
        }
        Ok(VaultRequest::Delete {
            item_id: *item_id,
            expected_revision: local.revision,
        })
    }

    /// Restores a deleted entry with `entry` (typically the last live revision from the
    /// history, opened with [`Entry::open`]), re-encrypted for the next revision.
    ///
    /// # Errors
    /// [`SyncError::UnknownItem`], [`SyncError::WrongState`] (not deleted), entry limits.
    pub fn restore<R: CryptoRng + ?Sized>(
        &mut self,
        keys: &DiaryKeys,
        item_id: &[u8; 16],
        entry: Entry,
        rng: &mut R,
    ) -> Result<VaultRequest, SyncError> {
        let local = self.items.get(item_id).ok_or(SyncError::UnknownItem)?;
        if !local.deleted {
            return Err(SyncError::WrongState);
        }
        if local.pending.is_some() {
            return self.edit(keys, item_id, entry, rng);
        }
        // `edit` refuses a deleted item without a pending edit: record the restore here.
        let expected = local.revision;
        let sealed = self.seal(keys, item_id, expected + 1, &entry, rng)?;
        let pending = Pending {
            base_revision: expected,
            base: None,
            ours: entry,
            target: expected + 1,
            digest: digest(&sealed.meta),
            preserve: None,
        };
        if let Some(l) = self.items.get_mut(item_id) {
            l.pending = Some(pending);
        }
        self.reindex(item_id);
        Ok(VaultRequest::Restore {
            item_id: *item_id,
            expected_revision: expected,
            sealed,
        })
    }

    /// The relay accepted a write (put, restore or delete) and reports the new revision.
    pub fn write_succeeded(&mut self, item_id: &[u8; 16], revision: u64, deleted: bool) {
        let Some(local) = self.items.get_mut(item_id) else {
            return;
        };
        if revision <= local.revision {
            return;
        }
        local.revision = revision;
        local.deleted = deleted;
        if deleted {
            local.entry = None;
            local.digest = [0; 32];
            local.pending = None;
        } else if let Some(p) = local.pending.take() {
            if p.target == revision {
                local.entry = Some(p.ours);
                local.digest = p.digest;
            } else {
                // An intermediate write (the preserved "ours" of a conflict): the final one is
                // still to come.
                if let Some((rev, d, e)) = &p.preserve
                    && *rev == revision
                {
                    local.entry = Some(e.clone());
                    local.digest = *d;
                }
                local.pending = Some(p);
            }
        }
        self.reindex(item_id);
    }

    /// The relay answered 409 to a write: pull the changes (the newer revision is merged with
    /// the pending edit when the page is applied).
    pub fn write_conflicted(&self) -> VaultRequest {
        self.pull()
    }

    /// The relay answered 410 `sync_token_expired`: resync from the beginning (items missing
    /// from the full listing are dropped when it ends, unless they have pending edits).
    pub fn token_expired(&mut self) -> VaultRequest {
        self.token = 0;
        self.resync = Some(BTreeSet::new());
        self.pull()
    }

    fn check(&self, keys: &DiaryKeys, item: &RemoteItem) -> Result<Checked, SyncError> {
        let local = self.items.get(&item.item_id);
        let seen = local.map_or(0, |l| l.revision);
        if item.revision < seen {
            return Err(SyncError::RolledBack {
                seen,
                served: item.revision,
            });
        }
        if item.deleted {
            if item.revision == seen && local.is_some_and(|l| !l.deleted) {
                return Err(SyncError::Forked(item.revision));
            }
            return Ok(if item.revision == seen {
                Checked::Skip
            } else {
                Checked::Deleted {
                    id: item.item_id,
                    revision: item.revision,
                }
            });
        }
        let (Some(body), Some(meta)) = (&item.body, &item.meta) else {
            return Err(SyncError::MissingBlobs);
        };
        let d = digest(meta);
        if item.revision == seen && seen > 0 {
            return match local {
                Some(l) if l.digest == d => Ok(Checked::Skip),
                _ => Err(SyncError::Forked(item.revision)),
            };
        }
        let sealed = SealedEntry {
            body: body.clone(),
            meta: meta.clone(),
        };
        let entry = Entry::open(
            keys,
            &self.collection,
            &item.item_id,
            item.revision,
            &sealed,
        )?;
        Ok(Checked::Live {
            id: item.item_id,
            revision: item.revision,
            digest: d,
            entry,
        })
    }

    /// Applies a page of changes. Every item is verified first (decryption under its id and
    /// revision, no rollback below the highest revision seen, no second content for a seen
    /// revision); on any failure nothing changes. Returns the requests to make: merged or
    /// preserved writes for items edited here and there, and the next page if `more`.
    ///
    /// # Errors
    /// [`SyncError`]; the state is unchanged.
    pub fn apply_changes<R: CryptoRng + ?Sized>(
        &mut self,
        keys: &DiaryKeys,
        page: &ChangesPage,
        rng: &mut R,
    ) -> Result<Vec<VaultRequest>, SyncError> {
        let mut checked = Vec::with_capacity(page.changes.len());
        for item in &page.changes {
            checked.push(self.check(keys, item)?);
        }
        // Merges are sealed before anything is applied, so sealing errors change nothing.
        let mut requests = Vec::new();
        let mut updates: Vec<([u8; 16], Local)> = Vec::new();
        for c in checked {
            let (id, revision, remote, d) = match c {
                Checked::Skip => continue,
                Checked::Deleted { id, revision } => (id, revision, None, [0; 32]),
                Checked::Live {
                    id,
                    revision,
                    digest,
                    entry,
                } => (id, revision, Some(entry), digest),
            };
            let mut local = self.items.get(&id).cloned().unwrap_or_default();
            local.revision = revision;
            local.digest = d;
            local.deleted = remote.is_none();
            local.entry = remote;
            if let Some(p) = local.pending.take() {
                let preserved = p
                    .preserve
                    .as_ref()
                    .is_some_and(|(rev, pd, _)| *rev == revision && *pd == d);
                if p.target == revision && p.digest == d {
                    // Our own write, whose reply was lost.
                    local.entry = Some(p.ours);
                } else if preserved {
                    // Our own preserved version; the merged write is still in flight.
                    local.pending = Some(p);
                } else {
                    let (next, reqs) = self.resolve(keys, &id, &local, p, rng)?;
                    local.pending = Some(next);
                    requests.extend(reqs);
                }
            }
            updates.push((id, local));
        }
        if let Some(seen) = self.resync.as_mut() {
            seen.extend(page.changes.iter().map(|c| c.item_id));
        }
        for (id, local) in updates {
            self.items.insert(id, local);
            self.reindex(&id);
        }
        self.token = page.sync_token;
        if page.more {
            requests.push(self.pull());
        } else if let Some(seen) = self.resync.take() {
            let gone: Vec<[u8; 16]> = self
                .items
                .iter()
                .filter(|(id, l)| {
                    // Keep what the listing had, and local creations not yet written.
                    let unsent = l.revision == 0 && l.pending.is_some();
                    !seen.contains(*id) && !unsent
                })
                .map(|(id, _)| *id)
                .collect();
            for id in gone {
                self.items.remove(&id);
                self.index.remove(&id);
            }
        }
        Ok(requests)
    }

    /// A pending edit met a newer remote revision: merge (or restore over a deletion).
    fn resolve<R: CryptoRng + ?Sized>(
        &self,
        keys: &DiaryKeys,
        id: &[u8; 16],
        local: &Local,
        p: Pending,
        rng: &mut R,
    ) -> Result<(Pending, Vec<VaultRequest>), SyncError> {
        let r = local.revision;
        let Some(theirs) = &local.entry else {
            // Deleted elsewhere while edited here: the edit wins, as a restore.
            let sealed = self.seal(keys, id, r + 1, &p.ours, rng)?;
            let next = Pending {
                base_revision: r,
                base: None,
                digest: digest(&sealed.meta),
                target: r + 1,
                ours: p.ours,
                preserve: None,
            };
            return Ok((
                next,
                alloc::vec![VaultRequest::Restore {
                    item_id: *id,
                    expected_revision: r,
                    sealed,
                }],
            ));
        };
        let merged = merge_entries(p.base.as_ref(), &p.ours, theirs);
        let mut requests = Vec::new();
        let mut expected = r;
        let mut preserve = None;
        if merged.conflicts > 0 {
            // Keep this device's full version as a revision of its own before the merge.
            let sealed = self.seal(keys, id, expected + 1, &p.ours, rng)?;
            preserve = Some((expected + 1, digest(&sealed.meta), p.ours.clone()));
            requests.push(VaultRequest::Put {
                item_id: *id,
                expected_revision: expected,
                sealed,
            });
            expected += 1;
        }
        let sealed = self.seal(keys, id, expected + 1, &merged.entry, rng)?;
        let next = Pending {
            base_revision: r,
            base: Some(theirs.clone()),
            digest: digest(&sealed.meta),
            target: expected + 1,
            ours: merged.entry,
            preserve,
        };
        requests.push(VaultRequest::Put {
            item_id: *id,
            expected_revision: expected,
            sealed,
        });
        Ok((next, requests))
    }
}
