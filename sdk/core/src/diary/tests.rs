//! The diary steps without a relay: devices of one account driven against an in-memory vault
//! that answers as §11.16 specifies (revisions, 409s, tombstones, restore, history, paged
//! changes, 410 after a purge). Creation, unlock from the store alone and from the relay's
//! bundle, sync between devices, conflicts merged three-way, delete and restore, history,
//! search, recovery, password change, tampered and rolled-back pages refused as a whole.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;

use haven_protocol::api::vault::{
    ChangesReply, HistoryReply, ItemBody, ItemWriteRequest, ItemWritten, RevisionBody,
};
use haven_sdk::diary::{DiaryError, Entry, KdfParams, SyncError};
use rand::SeedableRng as _;
use rand_chacha::ChaCha20Rng;
use serde_json::json;

use super::*;
use crate::store::{MemoryBackend, MemoryStore};

type Diary = LocalDiary<MemoryBackend>;

const PASSWORD: &[u8] = b"correct horse battery staple";

#[derive(Clone)]
struct Revision {
    revision: u64,
    deleted: bool,
    body: Option<String>,
    meta: Option<String>,
}

#[derive(Clone, Default)]
struct Item {
    revisions: Vec<Revision>,
    seq: u64,
}

/// The relay's vault for one account, in memory.
#[derive(Clone, Default)]
struct FakeVault {
    items: BTreeMap<(String, String), Item>,
    seq: u64,
    /// Changes pages hold at most this many items.
    page: usize,
    /// `since` values other than 0 below this get 410 (a purge happened).
    expired_below: u64,
}

fn refused(status: u16, code: &str) -> VaultAnswer {
    VaultAnswer::Refused {
        status,
        code: code.into(),
    }
}

impl FakeVault {
    fn new() -> Self {
        Self {
            page: 2,
            ..Self::default()
        }
    }

    fn written(&self, item: &str, it: &Item) -> VaultAnswer {
        let last = it.revisions.last().unwrap();
        let w = ItemWritten {
            item_id: item.parse().unwrap(),
            revision: last.revision,
            deleted: last.deleted,
            sync_token: it.seq,
            created_at: 0,
            updated_at: 0,
        };
        VaultAnswer::Ok(serde_json::to_value(w).unwrap())
    }

    fn body_of(item: &str, it: &Item) -> ItemBody {
        let last = it.revisions.last().unwrap();
        ItemBody {
            item_id: item.parse().unwrap(),
            revision: last.revision,
            deleted: last.deleted,
            sync_token: it.seq,
            created_at: 0,
            updated_at: 0,
            body: last.body.clone(),
            meta: last.meta.clone(),
        }
    }

    fn handle(&mut self, call: &VaultCall) -> VaultAnswer {
        let (path, query) = call.path.split_once('?').unwrap_or((&call.path, ""));
        let parts: Vec<&str> = path.trim_start_matches("/v1/vault/").split('/').collect();
        let param = |name: &str| -> u64 {
            query
                .split('&')
                .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
                .map_or(0, |v| v.parse().unwrap())
        };
        match (call.method, parts.as_slice()) {
            (HttpMethod::Get, [c, "changes"]) => {
                let since = param("since");
                if since > 0 && since < self.expired_below {
                    return refused(410, "sync_token_expired");
                }
                let mut changed: Vec<(&(String, String), &Item)> = self
                    .items
                    .iter()
                    .filter(|((col, _), it)| col == c && it.seq > since)
                    .collect();
                changed.sort_by_key(|(_, it)| it.seq);
                let more = changed.len() > self.page;
                changed.truncate(self.page);
                let token = if more {
                    changed.last().unwrap().1.seq
                } else {
                    self.seq
                };
                let reply = ChangesReply {
                    changes: changed
                        .into_iter()
                        .map(|((_, i), it)| Self::body_of(i, it))
                        .collect(),
                    sync_token: token,
                    more,
                };
                VaultAnswer::Ok(serde_json::to_value(reply).unwrap())
            }
            (HttpMethod::Get, [c, "items", i]) => match self
                .items
                .get(&(c.to_string(), i.to_string()))
            {
                Some(it) => VaultAnswer::Ok(serde_json::to_value(Self::body_of(i, it)).unwrap()),
                None => refused(404, "item_not_found"),
            },
            (HttpMethod::Get, [c, "items", i, "history"]) => {
                let Some(it) = self.items.get(&(c.to_string(), i.to_string())) else {
                    return refused(404, "item_not_found");
                };
                let after = param("after");
                let revisions: Vec<RevisionBody> = it
                    .revisions
                    .iter()
                    .filter(|r| r.revision > after)
                    .take(2)
                    .map(|r| RevisionBody {
                        revision: r.revision,
                        deleted: r.deleted,
                        body: r.body.clone(),
                        meta: r.meta.clone(),
                        created_at: 0,
                    })
                    .collect();
                let last = revisions.last().map(|r| r.revision);
                let next_after = last.filter(|l| *l < it.revisions.last().unwrap().revision);
                VaultAnswer::Ok(
                    serde_json::to_value(HistoryReply {
                        revisions,
                        next_after,
                    })
                    .unwrap(),
                )
            }
            (HttpMethod::Put, [c, "items", i]) => {
                let body: &ItemWriteRequest = call.body.as_ref().unwrap();
                let key = (c.to_string(), i.to_string());
                let current = self
                    .items
                    .get(&key)
                    .and_then(|it| it.revisions.last().cloned());
                match (&current, body.expected_revision) {
                    (None, 0) => {}
                    (Some(cur), n) if cur.revision == n && !cur.deleted => {}
                    (Some(cur), _) if cur.deleted => return refused(409, "item_deleted"),
                    _ => return refused(409, "revision_conflict"),
                }
                self.push(key, i, false, Some(body))
            }
            (HttpMethod::Post, [c, "items", i, "restore"]) => {
                let body = call.body.as_ref().unwrap();
                let key = (c.to_string(), i.to_string());
                match self.items.get(&key).and_then(|it| it.revisions.last()) {
                    None => return refused(404, "item_not_found"),
                    Some(cur) if !cur.deleted => return refused(409, "item_not_deleted"),
                    Some(cur) if cur.revision != body.expected_revision => {
                        return refused(409, "revision_conflict");
                    }
                    Some(_) => {}
                }
                self.push(key, i, false, Some(body))
            }
            (HttpMethod::Delete, [c, "items", i]) => {
                let key = (c.to_string(), i.to_string());
                match self.items.get(&key).and_then(|it| it.revisions.last()) {
                    None => return refused(404, "item_not_found"),
                    Some(cur) if cur.deleted => return refused(409, "item_deleted"),
                    Some(cur) if cur.revision != param("expected_revision") => {
                        return refused(409, "revision_conflict");
                    }
                    Some(_) => {}
                }
                self.push(key, i, true, None)
            }
            other => panic!("unexpected call {other:?}"),
        }
    }

    fn push(
        &mut self,
        key: (String, String),
        item: &str,
        deleted: bool,
        body: Option<&ItemWriteRequest>,
    ) -> VaultAnswer {
        self.seq += 1;
        let it = self.items.entry(key).or_default();
        let revision = it.revisions.last().map_or(1, |r| r.revision + 1);
        it.revisions.push(Revision {
            revision,
            deleted,
            body: body.map(|b| b.body.clone()),
            meta: body.map(|b| b.meta.clone()),
        });
        it.seq = self.seq;
        let it = it.clone();
        self.written(item, &it)
    }

    /// The latest revision of an entry item, for tampering.
    fn latest_mut(&mut self, item: &[u8; 16]) -> &mut Revision {
        let id = hex::encode(item);
        self.items
            .iter_mut()
            .find(|((_, i), _)| *i == id)
            .map(|(_, it)| it.revisions.last_mut().unwrap())
            .unwrap()
    }

    fn touch(&mut self, item: &[u8; 16]) {
        let id = hex::encode(item);
        self.seq += 1;
        let seq = self.seq;
        for ((_, i), it) in &mut self.items {
            if *i == id {
                it.seq = seq;
            }
        }
    }
}

/// A deterministic RNG per call: a new seed each time (ids drawn by separate calls differ).
fn rng() -> ChaCha20Rng {
    static SEED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(11);
    ChaCha20Rng::seed_from_u64(SEED.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
}

fn store() -> MemoryStore {
    MemoryStore::generate(&mut rand::rng()).unwrap()
}

fn entry(title: &str, body: &str, at: u64) -> Entry {
    Entry {
        title: title.into(),
        body: body.into(),
        mood: Some("calm".into()),
        tags: vec!["sea".into()],
        created_ms: at,
        updated_ms: at,
        attachments: Vec::new(),
    }
}

fn create(vault: &mut FakeVault) -> (Diary, Vec<haven_sdk::diary::RecoveryCode>) {
    let (new, codes) = NewDiary::create(PASSWORD, KdfParams::MIN, &mut rng()).unwrap();
    let answer = vault.handle(&new.call());
    (new.finish(store(), answer, &mut rng()).unwrap(), codes)
}

/// Unlocks on a new device (no local state) through the relay's bundle.
fn second_device(vault: &mut FakeVault, store: MemoryStore) -> Diary {
    match Diary::unlock(store, PASSWORD, &mut rng()).unwrap() {
        Unlocked::NeedsBundle(fetch) => {
            let answer = vault.handle(&fetch.call());
            fetch.finish(answer, PASSWORD, &mut rng()).unwrap()
        }
        Unlocked::Open(_) => panic!("no local bundle expected"),
    }
}

fn sync(diary: &mut Diary, vault: &mut FakeVault) -> Result<SyncReport, LocalDiaryError> {
    let run = diary.sync_run(&mut rng())?;
    drive(diary, vault, run)
}

fn drive(
    diary: &mut Diary,
    vault: &mut FakeVault,
    mut run: SyncRun,
) -> Result<SyncReport, LocalDiaryError> {
    while let Some(call) = run.next_call(diary)? {
        let answer = vault.handle(&call);
        run.answer(diary, answer, &mut rng())?;
    }
    run.finish(diary)
}

fn history(diary: &Diary, vault: &mut FakeVault, id: &[u8; 16]) -> Vec<HistoryRevision> {
    let mut run = diary.history_run(id);
    while let Some(call) = run.next_call().unwrap() {
        run.answer(diary, vault.handle(&call)).unwrap();
    }
    run.finish()
}

/// Reopens a diary from its store alone (a restart): no relay needed.
fn restart(diary: Diary) -> Diary {
    match Diary::unlock(diary.into_store(), PASSWORD, &mut rng()).unwrap() {
        Unlocked::Open(d) => d,
        Unlocked::NeedsBundle(_) => panic!("the local bundle should open"),
    }
}

#[test]
fn bundle_item_layout_and_record() {
    let (new, _) = NewDiary::create(PASSWORD, KdfParams::MIN, &mut rng()).unwrap();
    let call = new.call();
    assert_eq!(call.method, HttpMethod::Put);
    assert_eq!(call.path, item_path(&BUNDLE_COLLECTION, &BUNDLE_ITEM));
    let body = call.body.unwrap();
    assert_eq!(body.expected_revision, 0);
    let bytes = b64(&body.body).unwrap();
    assert!(haven_protocol::vault::is_item_len(bytes.len() as u64));
    assert_eq!(
        b64(&body.meta).unwrap(),
        vec![0u8; haven_protocol::vault::MIN_ITEM_LEN as usize]
    );
    let (bundle, collection) = decode_bundle_item(&bytes).unwrap();
    let record = encode_bundle_record(&bundle, &collection);
    assert_eq!(&bytes[..record.len()], &record[..]);
    assert_eq!(decode_bundle_item(&record).unwrap().1, collection);
    let mut dirty = bytes.clone();
    *dirty.last_mut().unwrap() = 1;
    assert!(matches!(
        decode_bundle_item(&dirty),
        Err(LocalDiaryError::BundleMalformed)
    ));
    for cut in 0..record.len() {
        assert!(decode_bundle_item(&record[..cut]).is_err(), "{cut}");
    }
}

#[test]
fn two_devices_sync_through_the_vault_and_restart_without_it() {
    let mut vault = FakeVault::new();
    let (mut a, codes) = create(&mut vault);
    assert_eq!(codes.len(), 10);
    // A second create for the same account is refused.
    let (again, _) = NewDiary::create(PASSWORD, KdfParams::MIN, &mut rng()).unwrap();
    let answer = vault.handle(&again.call());
    assert!(matches!(
        again.finish(store(), answer, &mut rng()),
        Err(LocalDiaryError::AlreadyInitialised)
    ));

    let mut ids = Vec::new();
    for n in 0..5u64 {
        ids.push(
            a.write(
                entry(
                    &format!("day {n}"),
                    &format!("walked to the harbour {n}"),
                    n,
                ),
                &mut rng(),
            )
            .unwrap(),
        );
    }
    assert!(a.is_pending(&ids[0]));
    assert_eq!(a.pending_count(), 5);
    // Pending edits survive a restart (sealed in the store), before any sync.
    let mut a = restart(a);
    assert_eq!(a.pending_count(), 5);
    let report = sync(&mut a, &mut vault).unwrap();
    assert_eq!(report.pushed, 5);
    assert_eq!(report.pending, 0);
    assert_eq!(a.revision(&ids[0]), Some(1));

    let mut b = second_device(&mut vault, store());
    assert_eq!(b.collection(), a.collection());
    let report = sync(&mut b, &mut vault).unwrap();
    // Pages of two: every entry arrives.
    assert_eq!(report.pulled, 5);
    assert_eq!(b.show(&ids[3]).unwrap().title, "day 3");
    assert_eq!(b.search("harb").len(), 5);
    assert_eq!(b.search("harbour 4")[0].0, ids[4]);

    b.edit(&ids[1], entry("day 1", "edited on b", 1), &mut rng())
        .unwrap();
    sync(&mut b, &mut vault).unwrap();
    let report = sync(&mut a, &mut vault).unwrap();
    assert_eq!(report.pulled, 1);
    assert_eq!(a.show(&ids[1]).unwrap().body, "edited on b");

    // A restart loads everything from the store alone.
    let a = restart(a);
    assert_eq!(a.list(&haven_sdk::diary::DiaryQuery::default()).len(), 5);
    assert_eq!(a.show(&ids[1]).unwrap().body, "edited on b");
}

#[test]
fn concurrent_edits_merge_and_deletes_restore() {
    let mut vault = FakeVault::new();
    let (mut a, _) = create(&mut vault);
    let id = a
        .write(
            entry("shared", "line one\nline two\nline three\n", 1),
            &mut rng(),
        )
        .unwrap();
    sync(&mut a, &mut vault).unwrap();
    let mut b = second_device(&mut vault, store());
    sync(&mut b, &mut vault).unwrap();

    a.edit(
        &id,
        entry("shared", "line ONE\nline two\nline three\n", 2),
        &mut rng(),
    )
    .unwrap();
    b.edit(
        &id,
        entry("shared", "line one\nline two\nline THREE\n", 3),
        &mut rng(),
    )
    .unwrap();
    sync(&mut a, &mut vault).unwrap();
    let report = sync(&mut b, &mut vault).unwrap();
    assert_eq!(report.conflicts, 1);
    assert_eq!(report.pending, 0);
    assert_eq!(
        b.show(&id).unwrap().body,
        "line ONE\nline two\nline THREE\n"
    );
    sync(&mut a, &mut vault).unwrap();
    assert_eq!(a.show(&id).unwrap().body, b.show(&id).unwrap().body);

    // Delete on b; a sees it gone; restore on a from the history.
    let run = b.delete_run(&id, &mut rng()).unwrap();
    drive(&mut b, &mut vault, run).unwrap();
    assert!(b.show(&id).is_none());
    sync(&mut a, &mut vault).unwrap();
    assert!(a.show(&id).is_none());
    assert!(matches!(
        a.delete_run(&id, &mut rng()),
        Err(LocalDiaryError::UnknownEntry)
    ));
    let revisions = history(&a, &mut vault, &id);
    assert_eq!(
        revisions.iter().map(|r| r.revision).collect::<Vec<_>>(),
        (1..=revisions.len() as u64).collect::<Vec<_>>()
    );
    assert!(revisions.last().unwrap().deleted);
    a.restore_from(&id, revisions, &mut rng()).unwrap();
    sync(&mut a, &mut vault).unwrap();
    sync(&mut b, &mut vault).unwrap();
    assert_eq!(
        b.show(&id).unwrap().body,
        "line ONE\nline two\nline THREE\n"
    );
    assert!(matches!(
        a.check_restorable(&id),
        Err(LocalDiaryError::Sync(SyncError::WrongState))
    ));

    // A delete racing an edit elsewhere: the delete reports the conflict, the edit is pulled.
    b.edit(&id, entry("shared", "newer", 9), &mut rng())
        .unwrap();
    sync(&mut b, &mut vault).unwrap();
    let run = a.delete_run(&id, &mut rng()).unwrap();
    assert!(matches!(
        drive(&mut a, &mut vault, run),
        Err(LocalDiaryError::Conflict)
    ));
    assert_eq!(a.show(&id).unwrap().body, "newer");

    // Deleting an entry that never reached the relay sends it first.
    let fresh = a
        .write(entry("draft", "soon gone", 10), &mut rng())
        .unwrap();
    let run = a.delete_run(&fresh, &mut rng()).unwrap();
    drive(&mut a, &mut vault, run).unwrap();
    assert!(a.show(&fresh).is_none());
}

#[test]
fn tampered_and_rolled_back_pages_change_nothing() {
    let mut vault = FakeVault::new();
    let (mut a, _) = create(&mut vault);
    let id = a.write(entry("t", "original", 1), &mut rng()).unwrap();
    sync(&mut a, &mut vault).unwrap();
    let mut b = second_device(&mut vault, store());
    sync(&mut b, &mut vault).unwrap();
    a.edit(&id, entry("t", "second", 2), &mut rng()).unwrap();
    sync(&mut a, &mut vault).unwrap();

    // A flipped byte in the meta blob: the page is refused, b keeps its state and token.
    let honest = vault.clone();
    let rev = vault.latest_mut(&id);
    let mut meta = b64(rev.meta.as_ref().unwrap()).unwrap();
    meta[50] ^= 1;
    rev.meta = Some(b64_encode(&meta));
    let err = sync(&mut b, &mut vault).unwrap_err();
    assert!(err.is_tampering(), "{err:?}");
    assert_eq!(b.show(&id).unwrap().body, "original");

    // Served again under the right bytes, the sync goes through.
    let mut vault = honest;
    sync(&mut b, &mut vault).unwrap();
    assert_eq!(b.show(&id).unwrap().body, "second");

    // Revision 1 served again as the current one: a rollback.
    let mut rolled = vault.clone();
    rolled.items.values_mut().for_each(|it| {
        if it.revisions.len() == 2 {
            it.revisions.pop();
        }
    });
    rolled.touch(&id);
    let err = sync(&mut b, &mut rolled).unwrap_err();
    assert!(
        matches!(
            err,
            LocalDiaryError::Sync(SyncError::RolledBack { seen: 2, served: 1 })
        ),
        "{err:?}"
    );
    assert_eq!(b.show(&id).unwrap().body, "second");
}

#[test]
fn an_expired_token_resyncs_and_drops_purged_items() {
    let mut vault = FakeVault::new();
    let (mut a, _) = create(&mut vault);
    let keep = a.write(entry("keep", "k", 1), &mut rng()).unwrap();
    let purge = a.write(entry("purge", "p", 2), &mut rng()).unwrap();
    sync(&mut a, &mut vault).unwrap();
    // The relay purged an item (deleted elsewhere long ago) and the token is too old now.
    vault.items.retain(|(_, i), _| *i != hex::encode(purge));
    vault.seq += 1;
    vault.expired_below = vault.seq;
    let local_only = a.write(entry("new", "n", 3), &mut rng()).unwrap();
    sync(&mut a, &mut vault).unwrap();
    assert!(a.show(&purge).is_none());
    assert!(a.show(&keep).is_some());
    assert!(a.show(&local_only).is_some());
    let a = restart(a);
    assert!(a.show(&purge).is_none() && a.revision(&purge).is_none());
}

#[test]
fn unlock_recover_and_password_change() {
    let mut vault = FakeVault::new();
    let (mut a, codes) = create(&mut vault);
    a.write(entry("x", "kept across keys", 1), &mut rng())
        .unwrap();
    sync(&mut a, &mut vault).unwrap();

    // Wrong password: the local copy refuses, the relay's is the same bundle.
    let store_a = a.into_store();
    let fetch = match Diary::unlock(store_a, b"wrong", &mut rng()).unwrap() {
        Unlocked::NeedsBundle(f) => f,
        Unlocked::Open(_) => panic!("wrong password opened"),
    };
    assert!(fetch.has_local());
    let answer = vault.handle(&fetch.call());
    assert!(matches!(
        fetch.finish(answer, b"wrong", &mut rng()),
        Err(LocalDiaryError::Keys(DiaryError::WrongPassword))
    ));

    // A new device recovers with a code and sets a new password.
    let fetched = vault.handle(&bundle::fetch_call());
    assert!(matches!(
        NewDiary::recover(
            fetched.clone(),
            "0000-0000",
            b"new pass",
            KdfParams::MIN,
            &mut rng()
        ),
        Err(LocalDiaryError::Keys(DiaryError::InvalidRecoveryCode))
    ));
    let code = codes[3].to_text();
    let new =
        NewDiary::recover(fetched, &code, b"new password", KdfParams::MIN, &mut rng()).unwrap();
    let answer = vault.handle(&new.call());
    let mut c = new.finish(store(), answer, &mut rng()).unwrap();
    sync(&mut c, &mut vault).unwrap();
    assert_eq!(c.search("kept").len(), 1);

    // A device still holding the old bundle changes the password: the relay's revision moved.
    let mut old = second_device_with(&mut vault, b"new password");
    let (upload, _) = old
        .change_password(b"third password", KdfParams::MIN, &mut rng())
        .unwrap();
    let answer = vault.handle(&upload.call());
    old.bundle_uploaded(&upload, answer).unwrap();
    let (stale, _) = c
        .change_password(b"other", KdfParams::MIN, &mut rng())
        .unwrap();
    let answer = vault.handle(&stale.call());
    assert!(matches!(
        c.bundle_uploaded(&stale, answer),
        Err(LocalDiaryError::BundleConflict)
    ));

    // The device with the stale local copy unlocks with the new password via the relay.
    let store_c = c.into_store();
    let fetch = match Diary::unlock(store_c, b"third password", &mut rng()).unwrap() {
        Unlocked::NeedsBundle(f) => f,
        Unlocked::Open(_) => panic!("the old local bundle should not open"),
    };
    let answer = vault.handle(&fetch.call());
    let c = fetch.finish(answer, b"third password", &mut rng()).unwrap();
    assert_eq!(c.search("kept").len(), 1);
    // Regenerated codes replace the old ones.
    let (upload, fresh) = c.regenerate_recovery_codes(&mut rng()).unwrap();
    assert_eq!(fresh.len(), 10);
    assert_eq!(codes_text(&fresh).len(), 10);
    drop(upload);

    // No diary yet on another account.
    let empty = FakeVault::new().handle(&bundle::fetch_call());
    assert!(matches!(
        bundle::read_fetched(empty),
        Err(LocalDiaryError::NotInitialised)
    ));
}

/// PROTOCOL §9.1.1: a diary created before passwords were normalised, under a password typed
/// with a decomposed `é`, still opens with those bytes; the re-wrap upload then lets the
/// precomposed form (another keyboard) open it too, on a device that fetches the bundle.
#[test]
fn a_bundle_wrapped_before_normalisation_is_rewrapped_on_unlock() {
    const DECOMPOSED: &[u8] = "cafe\u{0301} au lait".as_bytes();
    const PRECOMPOSED: &[u8] = "caf\u{00E9} au lait".as_bytes();
    let mut vault = FakeVault::new();
    let (keys, old, _) =
        haven_sdk::diary::hazmat::create_unnormalised(DECOMPOSED, KdfParams::MIN, &mut rng())
            .unwrap();
    let new = NewDiary {
        keys,
        upload: BundleUpload::new(old, [9; 16], 0),
    };
    let answer = vault.handle(&new.call());
    let mut a = new.finish(store(), answer, &mut rng()).unwrap();
    a.write(entry("x", "written before the re-wrap", 1), &mut rng())
        .unwrap();
    sync(&mut a, &mut vault).unwrap();

    // Before the re-wrap, the other form of the password does not open it.
    let fetch = match Diary::unlock(store(), PRECOMPOSED, &mut rng()).unwrap() {
        Unlocked::NeedsBundle(f) => f,
        Unlocked::Open(_) => panic!("no local bundle expected"),
    };
    let answer = vault.handle(&fetch.call());
    assert!(matches!(
        fetch.finish(answer, PRECOMPOSED, &mut rng()),
        Err(LocalDiaryError::Keys(DiaryError::WrongPassword))
    ));

    // The bytes it was wrapped under open it (nobody is locked out) and ask for the re-wrap.
    let mut a = match Diary::unlock(a.into_store(), DECOMPOSED, &mut rng()).unwrap() {
        Unlocked::Open(d) => d,
        Unlocked::NeedsBundle(_) => panic!("the local bundle should open"),
    };
    assert!(a.password_needs_rewrap());
    let upload = a.password_rewrap(DECOMPOSED, &mut rng()).unwrap().unwrap();
    let answer = vault.handle(&upload.call());
    a.bundle_uploaded(&upload, answer).unwrap();
    assert!(!a.password_needs_rewrap());
    assert!(a.password_rewrap(DECOMPOSED, &mut rng()).unwrap().is_none());

    // Now both forms open it, locally and on a new device through the relay's bundle.
    for pw in [DECOMPOSED, PRECOMPOSED] {
        let mut b = second_device_with(&mut vault, pw);
        assert!(!b.password_needs_rewrap());
        sync(&mut b, &mut vault).unwrap();
        assert_eq!(b.search("written").len(), 1);
    }
    match Diary::unlock(a.into_store(), PRECOMPOSED, &mut rng()).unwrap() {
        Unlocked::Open(d) => assert!(!d.password_needs_rewrap()),
        Unlocked::NeedsBundle(_) => panic!("the re-wrapped local bundle should open"),
    }
}

/// The keys an attacker gets from every bundle revision the vault ever held (the fake keeps
/// them all, as a series of dumps of the relay would) with `unlock`.
fn dumped_keys(
    vault: &FakeVault,
    unlock: impl Fn(&haven_sdk::diary::WrappedKeyBundle) -> Result<haven_sdk::DiaryKeys, DiaryError>,
) -> Vec<haven_sdk::DiaryKeys> {
    let key = (hex::encode(BUNDLE_COLLECTION), hex::encode(BUNDLE_ITEM));
    vault.items[&key]
        .revisions
        .iter()
        .filter_map(|r| {
            let (bundle, _) = decode_bundle_item(&b64(r.body.as_ref()?).ok()?).ok()?;
            unlock(&bundle).ok()
        })
        .collect()
}

/// Whether any of `keys` opens any stored revision of entry `item`.
fn opens_any(
    vault: &FakeVault,
    collection: &[u8; 16],
    item: &[u8; 16],
    keys: &[haven_sdk::DiaryKeys],
) -> bool {
    let it = &vault.items[&(hex::encode(collection), hex::encode(item))];
    it.revisions.iter().any(|r| {
        let (Some(body), Some(meta)) = (&r.body, &r.meta) else {
            return false;
        };
        let sealed = haven_sdk::diary::SealedEntry {
            body: b64(body).unwrap(),
            meta: b64(meta).unwrap(),
        };
        keys.iter()
            .any(|k| Entry::open(k, collection, item, r.revision, &sealed).is_ok())
    })
}

#[test]
fn an_old_password_or_code_with_every_vault_row_opens_nothing_written_after_the_change() {
    let mut vault = FakeVault::new();
    let (mut a, codes) = create(&mut vault);
    let before = a
        .write(entry("before", "written first", 1), &mut rng())
        .unwrap();
    sync(&mut a, &mut vault).unwrap();

    let (upload, new_codes) = a
        .change_password(b"new password", KdfParams::MIN, &mut rng())
        .unwrap();
    assert!(new_codes.is_empty(), "a version-2 diary keeps its codes");
    let answer = vault.handle(&upload.call());
    a.bundle_uploaded(&upload, answer).unwrap();
    let after = a
        .write(entry("after", "password changed", 2), &mut rng())
        .unwrap();
    sync(&mut a, &mut vault).unwrap();
    let c = *a.collection();
    let stolen = dumped_keys(&vault, |b| {
        haven_sdk::DiaryKeys::unlock_with_password(b, PASSWORD)
    });
    assert_eq!(
        stolen.len(),
        1,
        "the old password opens the first bundle revision"
    );
    assert!(opens_any(&vault, &c, &before, &stolen));
    assert!(!opens_any(&vault, &c, &after, &stolen));

    let (upload, fresh) = a.regenerate_recovery_codes(&mut rng()).unwrap();
    assert_eq!(fresh.len(), 10);
    let answer = vault.handle(&upload.call());
    a.bundle_uploaded(&upload, answer).unwrap();
    let last = a.write(entry("last", "new codes", 3), &mut rng()).unwrap();
    sync(&mut a, &mut vault).unwrap();
    for code in &codes {
        let stolen = dumped_keys(&vault, |b| {
            haven_sdk::DiaryKeys::unlock_with_recovery_code(b, &code.to_text())
        });
        assert_eq!(
            stolen.len(),
            2,
            "the old code opened the first two revisions"
        );
        assert!(!opens_any(&vault, &c, &last, &stolen));
    }
    let stolen = dumped_keys(&vault, |b| {
        haven_sdk::DiaryKeys::unlock_with_password(b, PASSWORD)
    });
    assert!(!opens_any(&vault, &c, &last, &stolen));

    // The new password reads everything, on another device and after a restart.
    let mut b = second_device_with(&mut vault, b"new password");
    sync(&mut b, &mut vault).unwrap();
    let a = match Diary::unlock(a.into_store(), b"new password", &mut rng()).unwrap() {
        Unlocked::Open(d) => d,
        Unlocked::NeedsBundle(_) => panic!("the local bundle should open"),
    };
    for d in [&a, &b] {
        for (id, title) in [(before, "before"), (after, "after"), (last, "last")] {
            assert_eq!(d.show(&id).unwrap().title, title);
        }
    }
    // The new codes recover it all.
    let fetched = vault.handle(&bundle::fetch_call());
    let new = NewDiary::recover(
        fetched,
        &fresh[2].to_text(),
        b"third",
        KdfParams::MIN,
        &mut rng(),
    )
    .unwrap();
    let answer = vault.handle(&new.call());
    let mut r = new.finish(store(), answer, &mut rng()).unwrap();
    sync(&mut r, &mut vault).unwrap();
    assert_eq!(r.list(&haven_sdk::diary::DiaryQuery::default()).len(), 3);
}

fn second_device_with(vault: &mut FakeVault, password: &[u8]) -> Diary {
    match Diary::unlock(store(), password, &mut rng()).unwrap() {
        Unlocked::NeedsBundle(fetch) => {
            let answer = vault.handle(&fetch.call());
            fetch.finish(answer, password, &mut rng()).unwrap()
        }
        Unlocked::Open(_) => panic!("no local bundle expected"),
    }
}

#[test]
fn answers_out_of_order_and_unexpected_refusals_are_typed() {
    let mut vault = FakeVault::new();
    let (mut a, _) = create(&mut vault);
    let mut run = a.sync_run(&mut rng()).unwrap();
    assert!(matches!(
        run.answer(&mut a, VaultAnswer::Ok(json!(null)), &mut rng()),
        Err(LocalDiaryError::OutOfOrder(_))
    ));
    let call = run.next_call(&a).unwrap().unwrap();
    assert!(matches!(
        run.next_call(&a),
        Err(LocalDiaryError::OutOfOrder(_))
    ));
    assert_eq!(call.method, HttpMethod::Get);
    assert!(matches!(
        run.answer(&mut a, VaultAnswer::Ok(json!({"changes": 5})), &mut rng()),
        Err(LocalDiaryError::InvalidResponse(_))
    ));
    let mut run = a.sync_run(&mut rng()).unwrap();
    run.next_call(&a).unwrap();
    let err = run
        .answer(
            &mut a,
            refused(507, "vault_byte_quota_exceeded"),
            &mut rng(),
        )
        .unwrap_err();
    assert!(matches!(err, LocalDiaryError::Refused { status: 507, .. }));
    assert_eq!(
        VaultAnswer::from_http(
            409,
            r#"{"error":{"code":"revision_conflict","message":"m"}}"#
        )
        .unwrap(),
        refused(409, "revision_conflict")
    );
    assert_eq!(
        VaultAnswer::from_http(200, "").unwrap(),
        VaultAnswer::Ok(json!(null))
    );
    assert!(VaultAnswer::from_http(200, "<html>").is_err());
}

/// Drives a machine's operation against the vault; its outcome.
fn run_machine(
    m: &mut DiaryMachine<MemoryBackend>,
    vault: &mut FakeVault,
) -> Result<Outcome, LocalDiaryError> {
    while let Some(call) = m.next_call()? {
        m.answer(vault.handle(&call), &mut rng())?;
    }
    m.finish(&mut rng())
}

#[test]
fn the_machine_runs_every_operation_and_keeps_the_diary_on_failures() {
    let mut vault = FakeVault::new();
    let mut a = DiaryMachine::new(store());
    assert!(matches!(a.next_call(), Err(LocalDiaryError::OutOfOrder(_))));
    assert!(matches!(
        a.begin_sync(&mut rng()),
        Err(LocalDiaryError::OutOfOrder(_))
    ));
    // No diary yet: unlocking is `NotInitialised`, and the store is still there.
    a.begin_unlock(PASSWORD, &mut rng()).unwrap();
    assert!(matches!(
        run_machine(&mut a, &mut vault),
        Err(LocalDiaryError::NotInitialised)
    ));
    assert!(a.store().is_ok() && a.diary().is_none());

    a.begin_create(PASSWORD, KdfParams::MIN, &mut rng())
        .unwrap();
    assert!(matches!(
        a.begin_create(PASSWORD, KdfParams::MIN, &mut rng()),
        Err(LocalDiaryError::OutOfOrder(_))
    ));
    let call = a.next_call().unwrap().unwrap();
    assert!(matches!(a.next_call(), Err(LocalDiaryError::OutOfOrder(_))));
    a.answer(vault.handle(&call), &mut rng()).unwrap();
    assert!(a.next_call().unwrap().is_none());
    let Outcome::RecoveryCodes(codes) = a.finish(&mut rng()).unwrap() else {
        panic!("codes expected");
    };
    assert_eq!(codes.len(), 10);
    let id = a
        .diary_mut()
        .unwrap()
        .write(
            entry("machine", "written through the machine", 1),
            &mut rng(),
        )
        .unwrap();
    a.begin_sync(&mut rng()).unwrap();
    let Outcome::Report(report) = run_machine(&mut a, &mut vault).unwrap() else {
        panic!("a report expected");
    };
    assert_eq!(report.pushed, 1);

    // A second machine of the account: a wrong password leaves it locked with its store.
    let mut b = DiaryMachine::new(store());
    b.begin_unlock(b"wrong", &mut rng()).unwrap();
    assert!(matches!(
        run_machine(&mut b, &mut vault),
        Err(LocalDiaryError::Keys(DiaryError::WrongPassword))
    ));
    assert!(b.diary().is_none() && b.store().is_ok());
    b.begin_unlock(PASSWORD, &mut rng()).unwrap();
    run_machine(&mut b, &mut vault).unwrap();
    b.begin_sync(&mut rng()).unwrap();
    run_machine(&mut b, &mut vault).unwrap();
    assert_eq!(b.diary().unwrap().search("machine").len(), 1);

    // Delete, history, restore, password change, new codes.
    b.begin_delete(&id, &mut rng()).unwrap();
    run_machine(&mut b, &mut vault).unwrap();
    b.begin_history(&id).unwrap();
    let Outcome::History(h) = run_machine(&mut b, &mut vault).unwrap() else {
        panic!("a history expected");
    };
    assert_eq!(h.len(), 2);
    b.begin_restore(&id).unwrap();
    run_machine(&mut b, &mut vault).unwrap();
    assert!(b.diary().unwrap().is_pending(&id));
    b.begin_change_password(b"second password", KdfParams::MIN, &mut rng())
        .unwrap();
    run_machine(&mut b, &mut vault).unwrap();
    b.begin_regenerate_codes(&mut rng()).unwrap();
    assert!(matches!(
        run_machine(&mut b, &mut vault).unwrap(),
        Outcome::RecoveryCodes(c) if c.len() == 10
    ));
    // The other machine's bundle is stale now: its password change conflicts, it stays open.
    a.begin_change_password(b"third", KdfParams::MIN, &mut rng())
        .unwrap();
    assert!(matches!(
        run_machine(&mut a, &mut vault),
        Err(LocalDiaryError::BundleConflict)
    ));
    assert!(a.diary().is_some());

    // Locked, then unlocked from the store alone with the old password (the relay's bundle is
    // needed for the new one).
    a.lock().unwrap();
    assert!(a.diary().is_none());
    a.begin_unlock(b"second password", &mut rng()).unwrap();
    run_machine(&mut a, &mut vault).unwrap();
    assert!(a.diary().is_some());

    // A recovery on a third machine.
    let mut c = DiaryMachine::new(store());
    c.begin_recover("not a code", b"x", KdfParams::MIN).unwrap();
    assert!(matches!(
        run_machine(&mut c, &mut vault),
        Err(LocalDiaryError::Keys(DiaryError::InvalidRecoveryCode))
    ));
    assert!(c.store().is_ok());
}
