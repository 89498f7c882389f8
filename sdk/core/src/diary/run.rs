//! The diary's exchanges with the vault as sans-I/O runs: a [`SyncRun`] (push pending edits,
//! pull changes, resolve conflicts; or a delete) and a [`HistoryRun`] (every revision of one
//! entry). A driver loops `next_call` → send → `answer` until `next_call` returns `None`, then
//! calls `finish`.

use std::collections::VecDeque;

use haven_protocol::api::vault::{ChangesReply, HistoryReply, ItemWriteRequest, ItemWritten};
use haven_sdk::diary::{ChangesPage, Entry, RemoteItem, SealedEntry, SyncError, VaultRequest};
use rand_core::CryptoRng;

use super::state::LocalDiary;
use super::{
    HttpMethod, LocalDiaryError, MAX_HISTORY_PAGES, MAX_SYNC_REQUESTS, VaultAnswer, VaultCall, b64,
    b64_encode, item_path,
};
use crate::store::Backend;

/// What one sync did.
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

fn write_body(expected_revision: u64, sealed: &SealedEntry) -> ItemWriteRequest {
    ItemWriteRequest {
        expected_revision,
        body: b64_encode(&sealed.body),
        meta: b64_encode(&sealed.meta),
    }
}

/// The item a write request is about.
fn written_item(request: &VaultRequest) -> Option<[u8; 16]> {
    match request {
        VaultRequest::Put { item_id, .. }
        | VaultRequest::Restore { item_id, .. }
        | VaultRequest::Delete { item_id, .. } => Some(*item_id),
        _ => None,
    }
}

/// A page of changes with its blobs decoded.
fn page(reply: ChangesReply) -> Result<ChangesPage, LocalDiaryError> {
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

/// A sync (or a delete) in progress: the queue of vault requests the state machine asked for.
#[derive(Debug)]
pub struct SyncRun {
    collection: [u8; 16],
    queue: VecDeque<VaultRequest>,
    in_flight: Option<VaultRequest>,
    sent: usize,
    resyncing: bool,
    report: SyncReport,
    /// Delete this entry once the queue is empty (a creation had to reach the relay first).
    then_delete: Option<[u8; 16]>,
    /// The entry this run deletes.
    deleting: Option<[u8; 16]>,
}

impl SyncRun {
    pub(crate) fn new(
        collection: [u8; 16],
        queue: Vec<VaultRequest>,
        then_delete: Option<[u8; 16]>,
    ) -> Self {
        Self {
            collection,
            queue: queue.into(),
            in_flight: None,
            sent: 0,
            resyncing: false,
            report: SyncReport::default(),
            then_delete,
            deleting: None,
        }
    }

    pub(crate) fn then_delete(&mut self, id: [u8; 16]) {
        self.then_delete = Some(id);
    }

    pub(crate) fn deleting(&mut self, id: [u8; 16]) {
        self.deleting = Some(id);
    }

    /// The next request to send, `None` when the run is over (then [`finish`](Self::finish)).
    ///
    /// # Errors
    /// [`LocalDiaryError::SyncDidNotSettle`] after [`MAX_SYNC_REQUESTS`],
    /// [`LocalDiaryError::OutOfOrder`] while a call awaits its answer, the delete's own errors.
    pub fn next_call<B: Backend>(
        &mut self,
        diary: &LocalDiary<B>,
    ) -> Result<Option<VaultCall>, LocalDiaryError> {
        if self.in_flight.is_some() {
            return Err(LocalDiaryError::OutOfOrder(
                "answer the call in flight first",
            ));
        }
        if self.queue.is_empty()
            && let Some(id) = self.then_delete.take()
        {
            self.queue.push_back(diary.delete_request(&id)?);
            self.deleting = Some(id);
        }
        let Some(request) = self.queue.pop_front() else {
            return Ok(None);
        };
        self.sent += 1;
        if self.sent > MAX_SYNC_REQUESTS {
            return Err(LocalDiaryError::SyncDidNotSettle(MAX_SYNC_REQUESTS));
        }
        let call = match &request {
            VaultRequest::Changes { since } => VaultCall {
                method: HttpMethod::Get,
                path: format!(
                    "/v1/vault/{}/changes?since={since}",
                    hex::encode(self.collection)
                ),
                body: None,
            },
            VaultRequest::Put {
                item_id,
                expected_revision,
                sealed,
            } => VaultCall {
                method: HttpMethod::Put,
                path: item_path(&self.collection, item_id),
                body: Some(write_body(*expected_revision, sealed)),
            },
            VaultRequest::Restore {
                item_id,
                expected_revision,
                sealed,
            } => VaultCall {
                method: HttpMethod::Post,
                path: format!("{}/restore", item_path(&self.collection, item_id)),
                body: Some(write_body(*expected_revision, sealed)),
            },
            VaultRequest::Delete {
                item_id,
                expected_revision,
            } => VaultCall {
                method: HttpMethod::Delete,
                path: format!(
                    "{}?expected_revision={expected_revision}",
                    item_path(&self.collection, item_id)
                ),
                body: None,
            },
            _ => return Err(LocalDiaryError::InvalidResponse("unknown request kind")),
        };
        self.in_flight = Some(request);
        Ok(Some(call))
    }

    /// The relay's answer to the last call. A page that fails verification changes nothing
    /// local (the error is returned; the run is over).
    ///
    /// # Errors
    /// [`LocalDiaryError::Sync`] (tampering, rollback, fork), [`LocalDiaryError::Refused`] for
    /// a refusal other than a 409 to a write or a 410 to a pull, store errors.
    pub fn answer<B: Backend, R: CryptoRng + ?Sized>(
        &mut self,
        diary: &mut LocalDiary<B>,
        answer: VaultAnswer,
        rng: &mut R,
    ) -> Result<(), LocalDiaryError> {
        let request = self
            .in_flight
            .take()
            .ok_or(LocalDiaryError::OutOfOrder("no call in flight"))?;
        match request {
            VaultRequest::Changes { .. } => {
                if let VaultAnswer::Refused { code, .. } = &answer
                    && code == "sync_token_expired"
                {
                    self.resyncing = true;
                    self.queue.push_back(diary.token_expired());
                    return Ok(());
                }
                let page = page(answer.parse::<ChangesReply>("changes page")?)?;
                let follow = diary.apply_page(&page, self.resyncing && !page.more, rng)?;
                self.report.pulled += page.changes.len();
                self.queue.extend(follow);
            }
            write => {
                let item_id =
                    written_item(&write).ok_or(LocalDiaryError::InvalidResponse("request"))?;
                if let VaultAnswer::Refused { status: 409, .. } = answer {
                    self.report.conflicts += 1;
                    // A later write of the same item in the queue is stale now: the pull
                    // decides.
                    self.queue.retain(|r| written_item(r) != Some(item_id));
                    self.queue.extend(diary.conflicted(item_id, rng)?);
                    return Ok(());
                }
                let w: ItemWritten = answer.parse("write answer")?;
                let sealed = match &write {
                    VaultRequest::Put { sealed, .. } | VaultRequest::Restore { sealed, .. } => {
                        Some(sealed)
                    }
                    _ => None,
                };
                self.report.pushed += 1;
                let follow = diary.written(item_id, w.revision, w.deleted, sealed, rng)?;
                self.queue.extend(follow);
            }
        }
        Ok(())
    }

    /// What the run did. For a delete: [`LocalDiaryError::Conflict`] if the entry is still
    /// there (it changed on another device first; the change was pulled).
    ///
    /// # Errors
    /// [`LocalDiaryError::Conflict`], [`LocalDiaryError::OutOfOrder`] before the run is over.
    pub fn finish<B: Backend>(self, diary: &LocalDiary<B>) -> Result<SyncReport, LocalDiaryError> {
        if self.in_flight.is_some() || !self.queue.is_empty() || self.then_delete.is_some() {
            return Err(LocalDiaryError::OutOfOrder("the run is not over"));
        }
        if let Some(id) = self.deleting
            && diary.show(&id).is_some()
        {
            return Err(LocalDiaryError::Conflict);
        }
        Ok(SyncReport {
            pending: diary.pending_count(),
            ..self.report
        })
    }
}

/// Reading an entry's history, page by page.
#[derive(Debug)]
pub struct HistoryRun {
    collection: [u8; 16],
    item: [u8; 16],
    after: u64,
    pages: usize,
    waiting: bool,
    done: bool,
    out: Vec<HistoryRevision>,
}

impl HistoryRun {
    pub(crate) fn new(collection: [u8; 16], item: [u8; 16]) -> Self {
        Self {
            collection,
            item,
            after: 0,
            pages: 0,
            waiting: false,
            done: false,
            out: Vec::new(),
        }
    }

    /// The next page to fetch, `None` when the history is complete.
    ///
    /// # Errors
    /// [`LocalDiaryError::OutOfOrder`] while a call awaits its answer.
    pub fn next_call(&mut self) -> Result<Option<VaultCall>, LocalDiaryError> {
        if self.waiting {
            return Err(LocalDiaryError::OutOfOrder(
                "answer the call in flight first",
            ));
        }
        if self.done || self.pages >= MAX_HISTORY_PAGES {
            return Ok(None);
        }
        self.pages += 1;
        self.waiting = true;
        Ok(Some(VaultCall {
            method: HttpMethod::Get,
            path: format!(
                "{}/history?after={}",
                item_path(&self.collection, &self.item),
                self.after
            ),
            body: None,
        }))
    }

    /// The relay's answer: each revision is verified and decrypted under its id and number.
    ///
    /// # Errors
    /// [`LocalDiaryError::Entry`] if a revision does not open, [`LocalDiaryError::Sync`]
    /// (a live revision without blobs), [`LocalDiaryError::InvalidResponse`] (revisions out of
    /// order), [`LocalDiaryError::Refused`].
    pub fn answer<B: Backend>(
        &mut self,
        diary: &LocalDiary<B>,
        answer: VaultAnswer,
    ) -> Result<(), LocalDiaryError> {
        if !self.waiting {
            return Err(LocalDiaryError::OutOfOrder("no call in flight"));
        }
        self.waiting = false;
        let page: HistoryReply = answer.parse("history page")?;
        for r in page.revisions {
            if self
                .out
                .last()
                .is_some_and(|last| last.revision >= r.revision)
            {
                return Err(LocalDiaryError::InvalidResponse("history out of order"));
            }
            let entry = match (r.deleted, r.body, r.meta) {
                (true, _, _) => None,
                (false, Some(body), Some(meta)) => {
                    let sealed = SealedEntry {
                        body: b64(&body)?,
                        meta: b64(&meta)?,
                    };
                    Some(Entry::open(
                        diary.keys(),
                        diary.collection(),
                        &self.item,
                        r.revision,
                        &sealed,
                    )?)
                }
                _ => return Err(SyncError::MissingBlobs.into()),
            };
            self.out.push(HistoryRevision {
                revision: r.revision,
                deleted: r.deleted,
                created_at: r.created_at,
                entry,
            });
        }
        match page.next_after {
            Some(next) if next > self.after => self.after = next,
            _ => self.done = true,
        }
        Ok(())
    }

    /// The item whose history this is.
    #[must_use]
    pub fn item(&self) -> &[u8; 16] {
        &self.item
    }

    /// The revisions read, oldest first.
    #[must_use]
    pub fn finish(self) -> Vec<HistoryRevision> {
        self.out
    }
}
