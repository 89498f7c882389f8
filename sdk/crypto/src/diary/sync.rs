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
    /// The write of this edit in flight, if any.
    in_flight: Option<InFlight>,
    /// After a conflicted merge: the revision, meta digest and entry of the preserved full
    /// version of this device, written before the merge.
    preserve: Option<(u64, [u8; 32], Entry)>,
}

/// A write handed to the host and not answered yet.
#[derive(Clone)]
struct InFlight {
    /// The revision it creates.
    target: u64,
    /// SHA-256 of its meta blob.
    digest: [u8; 32],
    /// The entry it carries.
    entry: Entry,
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
                in_flight: Some(InFlight {
                    target: 1,
                    digest: digest(&sealed.meta),
                    entry: entry.clone(),
                }),
                ours: entry,
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

    /// Records a local edit of an existing entry and returns the write request, or `None` when
    /// a write of this entry is already in flight (the newer text is sent when that write is
    /// answered: [`write_succeeded`](Self::write_succeeded) or
    /// [`write_conflicted`](Self::write_conflicted) return it).
    ///
    /// # Errors
    /// [`SyncError::UnknownItem`], [`SyncError::WrongState`] (deleted), entry limits.
    pub fn edit<R: CryptoRng + ?Sized>(
        &mut self,
        keys: &DiaryKeys,
        item_id: &[u8; 16],
        entry: Entry,
        rng: &mut R,
    ) -> Result<Option<VaultRequest>, SyncError> {
        let local = self.items.get(item_id).ok_or(SyncError::UnknownItem)?;
        if local.deleted && local.pending.is_none() {
            return Err(SyncError::WrongState);
        }
        entry.validate()?;
        if local
            .pending
            .as_ref()
            .is_some_and(|p| p.in_flight.is_some())
        {
            if let Some(p) = self.items.get_mut(item_id).and_then(|l| l.pending.as_mut()) {
                p.ours = entry;
            }
            self.reindex(item_id);
            return Ok(None);
        }
        let (base_revision, base) = match &local.pending {
            Some(p) => (p.base_revision, p.base.clone()),
            None => (local.revision, local.entry.clone()),
        };
        let pending = Pending {
            base_revision,
            base,
            ours: entry,
            in_flight: None,
            preserve: None,
        };
        let req = self.send(keys, item_id, pending, rng)?;
        self.reindex(item_id);
        Ok(Some(req))
    }

    /// Seals `pending.ours` for the item's next revision, records it as in flight and returns
    /// the put (or restore, for a deleted item).
    fn send<R: CryptoRng + ?Sized>(
        &mut self,
        keys: &DiaryKeys,
        item_id: &[u8; 16],
        mut pending: Pending,
        rng: &mut R,
    ) -> Result<VaultRequest, SyncError> {
        let (expected, deleted) = self
            .items
            .get(item_id)
            .map_or((0, false), |l| (l.revision, l.deleted));
        let sealed = self.seal(keys, item_id, expected + 1, &pending.ours, rng)?;
        pending.in_flight = Some(InFlight {
            target: expected + 1,
            digest: digest(&sealed.meta),
            entry: pending.ours.clone(),
        });
        if let Some(l) = self.items.get_mut(item_id) {
            l.pending = Some(pending);
        }
        Ok(if deleted {
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

    /// Forgets that writes are in flight (the host never sent them, or lost the answer: it was
    /// offline or restarted) and returns a fresh write for every item with a pending local edit.
    /// Re-sending is safe: each write carries its expected revision, so a write that did reach
    /// the relay makes its retry conflict (409), which [`write_conflicted`](Self::write_conflicted)
    /// resolves by merging.
    ///
    /// # Errors
    /// Entry limits while sealing (the item keeps its pending edit).
    pub fn resend_pending<R: CryptoRng + ?Sized>(
        &mut self,
        keys: &DiaryKeys,
        rng: &mut R,
    ) -> Result<Vec<VaultRequest>, SyncError> {
        let pending: Vec<([u8; 16], Pending)> = self
            .items
            .iter()
            .filter_map(|(id, l)| l.pending.clone().map(|p| (*id, p)))
            .collect();
        let mut out = Vec::with_capacity(pending.len());
        for (id, mut p) in pending {
            p.in_flight = None;
            out.push(self.send(keys, &id, p, rng)?);
        }
        Ok(out)
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
    ) -> Result<Option<VaultRequest>, SyncError> {
        let local = self.items.get(item_id).ok_or(SyncError::UnknownItem)?;
        if !local.deleted {
            return Err(SyncError::WrongState);
        }
        if local.pending.is_some() {
            return self.edit(keys, item_id, entry, rng);
        }
        entry.validate()?;
        let pending = Pending {
            base_revision: local.revision,
            base: None,
            ours: entry,
            in_flight: None,
            preserve: None,
        };
        let req = self.send(keys, item_id, pending, rng)?;
        self.reindex(item_id);
        Ok(Some(req))
    }

    /// The relay accepted a write (put, restore or delete) of `item_id` and reports the new
    /// revision. Returns the follow-up write when the user edited the entry meanwhile.
    ///
    /// # Errors
    /// Entry limits while sealing the follow-up (the state is then unchanged).
    pub fn write_succeeded<R: CryptoRng + ?Sized>(
        &mut self,
        keys: &DiaryKeys,
        item_id: &[u8; 16],
        revision: u64,
        deleted: bool,
        rng: &mut R,
    ) -> Result<Vec<VaultRequest>, SyncError> {
        let Some(local) = self.items.get(item_id) else {
            return Ok(Vec::new());
        };
        if revision <= local.revision {
            return Ok(Vec::new());
        }
        let mut local = local.clone();
        local.revision = revision;
        local.deleted = deleted;
        let mut requests = Vec::new();
        if deleted {
            local.entry = None;
            local.digest = [0; 32];
            local.pending = None;
        } else if let Some(p) = local.pending.take() {
            let (next, reqs) = self.acknowledge(keys, item_id, &mut local, p, rng)?;
            local.pending = next;
            requests = reqs;
        }
        self.items.insert(*item_id, local);
        self.reindex(item_id);
        Ok(requests)
    }

    /// `local` (already at the new revision) learnt that one of our writes landed: records its
    /// content and decides what is still pending.
    fn acknowledge<R: CryptoRng + ?Sized>(
        &self,
        keys: &DiaryKeys,
        item_id: &[u8; 16],
        local: &mut Local,
        mut p: Pending,
        rng: &mut R,
    ) -> Result<(Option<Pending>, Vec<VaultRequest>), SyncError> {
        let revision = local.revision;
        if let Some((_, d, e)) = p.preserve.take_if(|pr| pr.0 == revision) {
            // The preserved full version landed; the merged write is still to come.
            local.entry = Some(e);
            local.digest = d;
            return Ok((Some(p), Vec::new()));
        }
        let Some(f) = p.in_flight.take_if(|f| f.target == revision) else {
            return Ok((Some(p), Vec::new()));
        };
        local.entry = Some(f.entry.clone());
        local.digest = f.digest;
        if p.ours == f.entry {
            return Ok((None, Vec::new()));
        }
        // Edited again while the write was in flight: send the newer text on top of it.
        let sealed = self.seal(keys, item_id, revision + 1, &p.ours, rng)?;
        let next = Pending {
            base_revision: revision,
            base: Some(f.entry),
            in_flight: Some(InFlight {
                target: revision + 1,
                digest: digest(&sealed.meta),
                entry: p.ours.clone(),
            }),
            ours: p.ours,
            preserve: None,
        };
        Ok((
            Some(next),
            alloc::vec![VaultRequest::Put {
                item_id: *item_id,
                expected_revision: revision,
                sealed,
            }],
        ))
    }

    /// The relay answered 409 to a write of `item_id`. If a newer revision is already known
    /// here, the pending edit is merged with it at once; otherwise the changes are pulled (the
    /// merge happens when the page is applied).
    ///
    /// # Errors
    /// Entry limits while sealing the merge (the state is then unchanged).
    pub fn write_conflicted<R: CryptoRng + ?Sized>(
        &mut self,
        keys: &DiaryKeys,
        item_id: &[u8; 16],
        rng: &mut R,
    ) -> Result<Vec<VaultRequest>, SyncError> {
        let Some(local) = self.items.get(item_id) else {
            return Ok(alloc::vec![self.pull()]);
        };
        let Some(mut p) = local.pending.clone() else {
            return Ok(alloc::vec![self.pull()]);
        };
        p.in_flight = None;
        p.preserve = None;
        if local.revision > p.base_revision {
            let mut local = local.clone();
            let (next, requests) = self.resolve(keys, item_id, &local, p, rng)?;
            local.pending = Some(next);
            self.items.insert(*item_id, local);
            return Ok(requests);
        }
        if let Some(l) = self.items.get_mut(item_id) {
            l.pending = Some(p);
        }
        Ok(alloc::vec![self.pull()])
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
                let ours_landed = p
                    .in_flight
                    .as_ref()
                    .is_some_and(|f| f.target == revision && f.digest == d)
                    || p.preserve
                        .as_ref()
                        .is_some_and(|pr| pr.0 == revision && pr.1 == d);
                if ours_landed {
                    // Our own write, seen in the changes before (or instead of) its reply.
                    let (next, reqs) = self.acknowledge(keys, &id, &mut local, p, rng)?;
                    local.pending = next;
                    requests.extend(reqs);
                } else if p.in_flight.is_some() {
                    // Someone else's newer revision: our write in flight gets a 409 and the
                    // merge happens then (`write_conflicted`).
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
                in_flight: Some(InFlight {
                    target: r + 1,
                    digest: digest(&sealed.meta),
                    entry: p.ours.clone(),
                }),
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
        let mut merged = merge_entries(p.base.as_ref(), &p.ours, theirs);
        if merged.entry.validate().is_err() {
            // Both versions together exceed the entry limits: this device's version becomes
            // the current one and theirs stays in the history (revision `r`), so nothing is
            // lost and the sync does not get stuck on an entry it cannot seal.
            merged.entry = p.ours.clone();
            merged.conflicts = 0;
        }
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
            in_flight: Some(InFlight {
                target: expected + 1,
                digest: digest(&sealed.meta),
                entry: merged.entry.clone(),
            }),
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
