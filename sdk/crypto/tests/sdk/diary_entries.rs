#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Diary entries, index, merge and sync (PROTOCOL.md §9.5–§9.7), against a model of the relay's
//! vault rules (§11.16): concurrent edits on two devices, conflicts, deletions, tampering,
//! rollback and resync.

use std::collections::BTreeMap;

use haven_protocol::vault::is_item_len;
use haven_sdk::diary::merge::{MARKER_OURS, MARKER_THEIRS};
use haven_sdk::diary::{
    AttachmentRef, ChangesPage, DiaryError, DiaryIndex, DiaryKeys, DiaryQuery, DiarySync, Entry,
    EntryError, KdfParams, RemoteItem, SealedEntry, SyncError, VaultRequest,
};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

const C: [u8; 16] = [7; 16];

fn rng(seed: u8) -> ChaCha20Rng {
    ChaCha20Rng::from_seed([seed; 32])
}

fn keys() -> DiaryKeys {
    DiaryKeys::create(b"pw", KdfParams::MIN, &mut rng(0))
        .unwrap()
        .0
}

fn entry(title: &str, body: &str) -> Entry {
    Entry {
        title: title.into(),
        body: body.into(),
        mood: Some("calm".into()),
        tags: vec!["travel".into(), "Family".into()],
        created_ms: 1_700_000_000_000,
        updated_ms: 1_700_000_000_000,
        attachments: vec![AttachmentRef {
            blob_id: [3; 16],
            key: [4; 32],
            plaintext_len: 12345,
        }],
    }
}

#[test]
fn entries_round_trip_and_sizes_are_buckets() {
    let k = keys();
    let e = entry("Lisbon", "We walked up to the castle.\nSardines!\n");
    let sealed = e.seal(&k, &C, &[1; 16], 3, &mut rng(1)).unwrap();
    assert!(is_item_len(sealed.body.len() as u64));
    assert!(is_item_len(sealed.meta.len() as u64));
    assert_eq!(Entry::open(&k, &C, &[1; 16], 3, &sealed).unwrap(), e);
    let meta = Entry::open_meta(&k, &C, &[1; 16], 3, &sealed.meta).unwrap();
    assert_eq!(meta.title, "Lisbon");
    assert_eq!(meta.tags, e.tags);
    // Debug never shows the text.
    let dbg = format!("{e:?} {meta:?} {sealed:?}");
    assert!(!dbg.contains("Lisbon") && !dbg.contains("castle"), "{dbg}");
}

#[test]
fn tampered_moved_and_rolled_back_items_are_rejected() {
    let k = keys();
    let e = entry("t", "b");
    let id = [1; 16];
    let sealed = e.seal(&k, &C, &id, 2, &mut rng(1)).unwrap();
    let failed = Err(EntryError::Diary(DiaryError::ItemDecryptionFailed));
    for i in [0usize, 1, 30, sealed.meta.len() - 1] {
        if i == 0 {
            continue; // the version byte: UnsupportedVersion, checked below
        }
        let mut t = sealed.clone();
        t.meta[i] ^= 1;
        assert_eq!(Entry::open(&k, &C, &id, 2, &t), failed);
        let mut t = sealed.clone();
        t.body[i] ^= 1;
        assert!(matches!(
            Entry::open(&k, &C, &id, 2, &t),
            Err(EntryError::BodyMismatch)
        ));
    }
    let mut t = sealed.clone();
    t.meta[0] = 9;
    assert_eq!(
        Entry::open(&k, &C, &id, 2, &t),
        Err(EntryError::Diary(DiaryError::UnsupportedVersion(9)))
    );
    // Moved to another item or collection, or served as another revision.
    assert_eq!(Entry::open(&k, &C, &[2; 16], 2, &sealed), failed);
    assert_eq!(Entry::open(&k, &[8; 16], &id, 2, &sealed), failed);
    assert_eq!(Entry::open(&k, &C, &id, 1, &sealed), failed);
    // Body and metadata swapped; a body from another write of the same revision.
    let swapped = SealedEntry {
        body: sealed.meta.clone(),
        meta: sealed.body.clone(),
    };
    assert!(matches!(
        Entry::open(&k, &C, &id, 2, &swapped),
        Err(EntryError::WrongKind { .. } | EntryError::BodyMismatch)
    ));
    let other = entry("t", "other")
        .seal(&k, &C, &id, 2, &mut rng(2))
        .unwrap();
    let mixed = SealedEntry {
        body: other.body,
        meta: sealed.meta.clone(),
    };
    assert_eq!(
        Entry::open(&k, &C, &id, 2, &mixed),
        Err(EntryError::BodyMismatch)
    );
}

#[test]
fn oversize_and_malformed_entries_are_errors() {
    let k = keys();
    let mut e = entry("t", "b");
    e.title = "x".repeat(2000);
    assert!(matches!(
        e.seal(&k, &C, &[1; 16], 1, &mut rng(1)),
        Err(EntryError::FieldTooLong { field: "title", .. })
    ));
    let mut e = entry("t", "b");
    e.tags = (0..40).map(|i| i.to_string()).collect();
    assert!(matches!(
        e.seal(&k, &C, &[1; 16], 1, &mut rng(1)),
        Err(EntryError::TooMany { field: "tags", .. })
    ));
    let mut e = entry("t", "b");
    e.body = "x".repeat(600 * 1024);
    assert!(e.seal(&k, &C, &[1; 16], 1, &mut rng(1)).is_err());
    // Well-encrypted garbage: every prefix of a valid plaintext and random bytes are refused.
    let good = entry("t", "body").encode_body().unwrap();
    for n in 0..good.len() {
        let ct = k
            .encrypt_item(&C, &[1; 16], 1, &good[..n], &mut rng(3))
            .unwrap();
        let sealed = SealedEntry {
            body: ct.clone(),
            meta: ct,
        };
        assert!(Entry::open(&k, &C, &[1; 16], 1, &sealed).is_err());
    }
}

#[test]
fn index_filters_searches_and_round_trips() {
    let mut idx = DiaryIndex::new();
    let mut a = entry("Café in Lisbon", "Naïve pastéis de nata. 日記 Ελλάδα");
    a.created_ms = 1000;
    let mut b = entry("Work", "Quarterly planning meeting");
    b.created_ms = 2000;
    b.mood = Some("Tired".into());
    b.tags = vec!["work".into()];
    let mut c = entry("Weekend", "Walk in the park, planning a trip");
    c.created_ms = 3000;
    c.mood = None;
    c.tags = vec![];
    idx.upsert([1; 16], &a);
    idx.upsert([2; 16], &b);
    idx.upsert([3; 16], &c);
    let q = |f: fn(&mut DiaryQuery)| {
        let mut q = DiaryQuery::default();
        f(&mut q);
        q
    };
    assert_eq!(
        idx.search(&q(|q| q.text = Some("plan".into()))),
        [[3; 16], [2; 16]]
    );
    assert_eq!(
        idx.search(&q(|q| q.text = Some("CAFÉ lis".into()))),
        [[1; 16]]
    );
    assert_eq!(idx.search(&q(|q| q.text = Some("naïve".into()))), [[1; 16]]);
    assert_eq!(idx.search(&q(|q| q.text = Some("ελλ".into()))), [[1; 16]]);
    assert_eq!(idx.search(&q(|q| q.text = Some("日記".into()))), [[1; 16]]);
    assert!(idx.search(&q(|q| q.text = Some("zebra".into()))).is_empty());
    assert_eq!(idx.search(&q(|q| q.mood = Some("tired".into()))), [[2; 16]]);
    assert_eq!(idx.search(&q(|q| q.tag = Some("family".into()))), [[1; 16]]);
    let range = idx.search(&q(|q| {
        q.from_ms = Some(1500);
        q.until_ms = Some(3000);
    }));
    assert_eq!(range, [[2; 16]]);
    assert_eq!(idx.search(&DiaryQuery::default()).len(), 3);
    // Serialise, restore, then update and remove.
    let bytes = idx.to_bytes();
    let mut back = DiaryIndex::from_bytes(&bytes).unwrap();
    assert_eq!(
        back.search(&q(|q| q.text = Some("plan".into()))),
        [[3; 16], [2; 16]]
    );
    for n in 0..bytes.len() {
        assert!(DiaryIndex::from_bytes(&bytes[..n]).is_none());
    }
    back.upsert([3; 16], &entry("Weekend", "Swimming"));
    assert_eq!(back.search(&q(|q| q.text = Some("plan".into()))), [[2; 16]]);
    back.remove(&[2; 16]);
    assert!(back.search(&q(|q| q.text = Some("plan".into()))).is_empty());
    assert_eq!(back.len(), 2);
}

/// A model of the relay's vault rules for one account and collection (§11.16).
#[derive(Default)]
struct Relay {
    seq: u64,
    items: BTreeMap<[u8; 16], (u64, bool, u64, Option<SealedEntry>)>, // revision, deleted, seq, blobs
    history: BTreeMap<([u8; 16], u64), Option<SealedEntry>>,
}

enum Reply {
    Written(u64, bool),
    Conflict,
    Page(ChangesPage),
}

impl Relay {
    fn handle(&mut self, req: &VaultRequest) -> Reply {
        match req {
            VaultRequest::Changes { since } => {
                let mut changes: Vec<_> = self
                    .items
                    .iter()
                    .filter(|(_, v)| v.2 > *since)
                    .map(|(id, v)| (v.2, *id, v.clone()))
                    .collect();
                changes.sort_by_key(|c| c.0);
                Reply::Page(ChangesPage {
                    changes: changes
                        .into_iter()
                        .map(|(_, id, (revision, deleted, _, blobs))| RemoteItem {
                            item_id: id,
                            revision,
                            deleted,
                            body: blobs.as_ref().map(|b| b.body.clone()),
                            meta: blobs.map(|b| b.meta),
                        })
                        .collect(),
                    sync_token: self.seq,
                    more: false,
                })
            }
            VaultRequest::Put {
                item_id,
                expected_revision,
                sealed,
            } => {
                let cur = self.items.get(item_id).map(|v| (v.0, v.1));
                let ok = match cur {
                    None => *expected_revision == 0,
                    Some((rev, deleted)) => !deleted && rev == *expected_revision,
                };
                self.write(ok, *item_id, *expected_revision, Some(sealed.clone()))
            }
            VaultRequest::Delete {
                item_id,
                expected_revision,
            } => {
                let ok = self
                    .items
                    .get(item_id)
                    .is_some_and(|v| !v.1 && v.0 == *expected_revision);
                self.write(ok, *item_id, *expected_revision, None)
            }
            VaultRequest::Restore {
                item_id,
                expected_revision,
                sealed,
            } => {
                let ok = self
                    .items
                    .get(item_id)
                    .is_some_and(|v| v.1 && v.0 == *expected_revision);
                self.write(ok, *item_id, *expected_revision, Some(sealed.clone()))
            }
            _ => unreachable!(),
        }
    }

    fn write(
        &mut self,
        ok: bool,
        id: [u8; 16],
        expected: u64,
        blobs: Option<SealedEntry>,
    ) -> Reply {
        if !ok {
            return Reply::Conflict;
        }
        self.seq += 1;
        let deleted = blobs.is_none();
        self.history.insert((id, expected + 1), blobs.clone());
        self.items
            .insert(id, (expected + 1, deleted, self.seq, blobs));
        Reply::Written(expected + 1, deleted)
    }
}

/// Runs requests until none are left (the host's I/O loop).
fn drive(relay: &mut Relay, dev: &mut DiarySync, k: &DiaryKeys, first: VaultRequest, seed: u8) {
    let mut queue = vec![first];
    let mut r = rng(seed);
    let mut rounds = 0;
    while let Some(req) = (!queue.is_empty()).then(|| queue.remove(0)) {
        rounds += 1;
        assert!(rounds < 50, "sync does not converge");
        let item = match &req {
            VaultRequest::Put { item_id, .. }
            | VaultRequest::Delete { item_id, .. }
            | VaultRequest::Restore { item_id, .. } => Some(*item_id),
            _ => None,
        };
        match relay.handle(&req) {
            Reply::Written(rev, deleted) => {
                queue.extend(
                    dev.write_succeeded(k, &item.unwrap(), rev, deleted, &mut r)
                        .unwrap(),
                );
            }
            Reply::Conflict => {
                // The rest of this batch was built on the stale revision.
                queue.clear();
                queue.extend(dev.write_conflicted(k, &item.unwrap(), &mut r).unwrap());
            }
            Reply::Page(page) => queue.extend(dev.apply_changes(k, &page, &mut r).unwrap()),
        }
    }
}

fn sync(relay: &mut Relay, dev: &mut DiarySync, k: &DiaryKeys) {
    let pull = dev.pull();
    drive(relay, dev, k, pull, 9);
}

#[test]
fn two_devices_merge_concurrent_edits_and_lose_nothing() {
    let k = keys();
    let mut relay = Relay::default();
    let (mut a, mut b) = (DiarySync::new(C), DiarySync::new(C));
    let (id, req) = a
        .create(&k, entry("Day", "morning\nlunch\nevening\n"), &mut rng(1))
        .unwrap();
    drive(&mut relay, &mut a, &k, req, 1);
    assert_eq!(a.revision(&id), Some(1));
    sync(&mut relay, &mut b, &k);
    assert_eq!(b.entry(&id).unwrap().body, "morning\nlunch\nevening\n");

    // Clean merge: different lines edited on each device.
    let mut ea = a.entry(&id).unwrap().clone();
    ea.body = "morning coffee\nlunch\nevening\n".into();
    let mut eb = b.entry(&id).unwrap().clone();
    eb.body = "morning\nlunch\nevening walk\n".into();
    eb.tags.push("walks".into());
    let ra = a.edit(&k, &id, ea, &mut rng(2)).unwrap().unwrap();
    let rb = b.edit(&k, &id, eb, &mut rng(3)).unwrap().unwrap();
    drive(&mut relay, &mut a, &k, ra, 2);
    drive(&mut relay, &mut b, &k, rb, 3); // 409, pull, merge, put
    sync(&mut relay, &mut a, &k);
    let merged = "morning coffee\nlunch\nevening walk\n";
    assert_eq!(a.entry(&id).unwrap().body, merged);
    assert_eq!(b.entry(&id).unwrap().body, merged);
    assert!(a.entry(&id).unwrap().tags.contains(&"walks".to_owned()));
    assert!(!a.has_pending(&id) && !b.has_pending(&id));
    assert_eq!(a.revision(&id), Some(3));

    // Conflict: the same line edited differently. Both texts survive in the merged entry, and
    // the losing device's full version is a revision of its own in the history.
    let mut ea = a.entry(&id).unwrap().clone();
    ea.body = merged.replace("lunch", "lunch with Ana");
    let mut eb = b.entry(&id).unwrap().clone();
    eb.body = merged.replace("lunch", "skipped lunch, too busy");
    let ra = a.edit(&k, &id, ea.clone(), &mut rng(4)).unwrap().unwrap();
    let rb = b.edit(&k, &id, eb.clone(), &mut rng(5)).unwrap().unwrap();
    drive(&mut relay, &mut a, &k, ra, 4);
    drive(&mut relay, &mut b, &k, rb, 5);
    sync(&mut relay, &mut a, &k);
    let final_a = a.entry(&id).unwrap().body.clone();
    assert_eq!(final_a, b.entry(&id).unwrap().body);
    assert!(final_a.contains("lunch with Ana") && final_a.contains("skipped lunch, too busy"));
    assert!(final_a.contains(MARKER_OURS) && final_a.contains(MARKER_THEIRS));
    let current = relay.items[&id].0;
    let preserved = relay.history[&(id, current - 1)].as_ref().unwrap();
    let preserved = Entry::open(&k, &C, &id, current - 1, preserved).unwrap();
    assert_eq!(preserved.body, eb.body);
    // The search index follows.
    assert_eq!(
        a.search(&DiaryQuery {
            text: Some("ana".into()),
            ..DiaryQuery::default()
        }),
        [id]
    );
}

#[test]
fn edit_of_an_entry_deleted_elsewhere_restores_it() {
    let k = keys();
    let mut relay = Relay::default();
    let (mut a, mut b) = (DiarySync::new(C), DiarySync::new(C));
    let (id, req) = a.create(&k, entry("x", "one\n"), &mut rng(1)).unwrap();
    drive(&mut relay, &mut a, &k, req, 1);
    sync(&mut relay, &mut b, &k);
    let del = a.delete(&id).unwrap();
    drive(&mut relay, &mut a, &k, del, 2);
    assert!(a.entry(&id).is_none());
    let mut eb = b.entry(&id).unwrap().clone();
    eb.body.push_str("two\n");
    let rb = b.edit(&k, &id, eb, &mut rng(3)).unwrap().unwrap();
    drive(&mut relay, &mut b, &k, rb, 3);
    sync(&mut relay, &mut a, &k);
    assert_eq!(a.entry(&id).unwrap().body, "one\ntwo\n");
    assert_eq!(relay.items[&id].0, 3); // create, delete, restore carrying the edit
    assert!(relay.history[&(id, 2)].is_none());
}

#[test]
fn tampered_pages_rollback_and_forks_change_nothing() {
    let k = keys();
    let mut relay = Relay::default();
    let mut a = DiarySync::new(C);
    let (id, req) = a.create(&k, entry("x", "v1\n"), &mut rng(1)).unwrap();
    drive(&mut relay, &mut a, &k, req, 1);
    let mut e = a.entry(&id).unwrap().clone();
    e.body = "v2\n".into();
    let req = a.edit(&k, &id, e, &mut rng(2)).unwrap().unwrap();
    drive(&mut relay, &mut a, &k, req, 2);
    let mut fresh = DiarySync::new(C);
    sync(&mut relay, &mut fresh, &k);
    let token = fresh.token();
    let v1 = relay.history[&(id, 1)].clone().unwrap();
    let v2 = relay.history[&(id, 2)].clone().unwrap();
    let page = |revision, s: &SealedEntry, item_id| ChangesPage {
        changes: vec![RemoteItem {
            item_id,
            revision,
            deleted: false,
            body: Some(s.body.clone()),
            meta: Some(s.meta.clone()),
        }],
        sync_token: token + 5,
        more: false,
    };
    let check_unchanged = |d: &DiarySync| {
        assert_eq!(d.token(), token);
        assert_eq!(d.revision(&id), Some(2));
        assert_eq!(d.entry(&id).unwrap().body, "v2\n");
    };
    // Rolled back: revision 1 served again (validly encrypted for revision 1).
    assert_eq!(
        fresh
            .apply_changes(&k, &page(1, &v1, id), &mut rng(3))
            .err(),
        Some(SyncError::RolledBack { seen: 2, served: 1 })
    );
    check_unchanged(&fresh);
    // Old content relabelled as a newer revision: the AD binding refuses it.
    assert!(matches!(
        fresh.apply_changes(&k, &page(3, &v1, id), &mut rng(3)),
        Err(SyncError::Entry(_))
    ));
    check_unchanged(&fresh);
    // A flipped byte; swapped item ids.
    let mut flipped = v2.clone();
    flipped.meta[40] ^= 0x80;
    assert!(
        fresh
            .apply_changes(&k, &page(3, &flipped, id), &mut rng(3))
            .is_err()
    );
    assert!(
        fresh
            .apply_changes(&k, &page(3, &v2, [9; 16]), &mut rng(3))
            .is_err()
    );
    check_unchanged(&fresh);
    // A different ciphertext for an already seen revision (a fork).
    let forged = entry("x", "other\n")
        .seal(&k, &C, &id, 2, &mut rng(7))
        .unwrap();
    assert_eq!(
        fresh
            .apply_changes(&k, &page(2, &forged, id), &mut rng(3))
            .err(),
        Some(SyncError::Forked(2))
    );
    // A bad item anywhere in the page rejects the whole page.
    let (id2, req) = a.create(&k, entry("y", "new\n"), &mut rng(8)).unwrap();
    drive(&mut relay, &mut a, &k, req, 8);
    let good = relay.history[&(id2, 1)].clone().unwrap();
    let mut mixed = page(1, &good, id2);
    mixed.changes.push(page(1, &v1, id).changes.remove(0));
    assert!(fresh.apply_changes(&k, &mixed, &mut rng(3)).is_err());
    assert!(fresh.entry(&id2).is_none());
    check_unchanged(&fresh);
}

#[test]
fn expired_token_resync_drops_purged_items() {
    let k = keys();
    let mut relay = Relay::default();
    let mut a = DiarySync::new(C);
    let (gone, req) = a.create(&k, entry("gone", "x\n"), &mut rng(1)).unwrap();
    drive(&mut relay, &mut a, &k, req, 1);
    let (kept, req) = a.create(&k, entry("kept", "y\n"), &mut rng(2)).unwrap();
    drive(&mut relay, &mut a, &k, req, 2);
    let mut b = DiarySync::new(C);
    sync(&mut relay, &mut b, &k);
    // Deleted and purged on the relay while b was away: b's token is too old (410).
    relay.items.remove(&gone);
    let req = b.token_expired();
    drive(&mut relay, &mut b, &k, req, 3);
    assert!(b.entry(&gone).is_none());
    assert!(b.revision(&gone).is_none());
    assert!(b.entry(&kept).is_some());
    assert_eq!(b.index().len(), 1);
}

fn shared_keys() -> &'static DiaryKeys {
    static KEYS: std::sync::OnceLock<DiaryKeys> = std::sync::OnceLock::new();
    KEYS.get_or_init(keys)
}

fn edit_lines(base: &[String], ops: &[(u8, usize)], tag: &str) -> Vec<String> {
    let mut v = base.to_vec();
    for (n, (op, at)) in ops.iter().enumerate() {
        let at = if v.is_empty() { 0 } else { at % (v.len() + 1) };
        match op % 3 {
            0 => v.insert(at, format!("{tag}{n} typed\n")),
            1 if at < v.len() => {
                v.remove(at);
            }
            _ if at < v.len() => v[at] = format!("{tag}{n} changed {}", v[at]),
            _ => v.push(format!("{tag}{n} end\n")),
        }
    }
    v
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]

    /// Two devices edit the same entry concurrently and sync through the (model) relay: both
    /// end with the same entry, every line either typed is in it (or, word-merged, every word),
    /// and when the merge had conflicts the second writer's full text is a revision of its own.
    #[test]
    fn concurrent_edits_through_sync_lose_nothing(
        base in proptest::collection::vec("[ab]{0,2}\n", 0..8),
        a_ops in proptest::collection::vec((0u8..3, 0usize..10), 0..5),
        b_ops in proptest::collection::vec((0u8..3, 0usize..10), 0..5),
    ) {
        let k = shared_keys();
        let mut relay = Relay::default();
        let (mut a, mut b) = (DiarySync::new(C), DiarySync::new(C));
        let (id, req) = a.create(k, entry("t", &base.concat()), &mut rng(1)).unwrap();
        drive(&mut relay, &mut a, k, req, 1);
        sync(&mut relay, &mut b, k);
        let a_lines = edit_lines(&base, &a_ops, "a");
        let b_lines = edit_lines(&base, &b_ops, "b");
        let mut ea = a.entry(&id).unwrap().clone();
        ea.body = a_lines.concat();
        let mut eb = b.entry(&id).unwrap().clone();
        eb.body = b_lines.concat();
        let ra = a.edit(k, &id, ea, &mut rng(2)).unwrap().unwrap();
        let rb = b.edit(k, &id, eb.clone(), &mut rng(3)).unwrap().unwrap();
        drive(&mut relay, &mut a, k, ra, 2);
        drive(&mut relay, &mut b, k, rb, 3);
        sync(&mut relay, &mut a, k);
        let final_a = a.entry(&id).unwrap().body.clone();
        proptest::prop_assert_eq!(&final_a, &b.entry(&id).unwrap().body);
        for line in a_lines.iter().chain(b_lines.iter()) {
            if !base.contains(line) {
                let kept = final_a.split_inclusive('\n').any(|l| l == line)
                    || line.split_whitespace().all(|w| final_a.contains(w));
                proptest::prop_assert!(kept, "lost {:?} in {:?}", line, final_a);
            }
        }
        if final_a.contains(MARKER_OURS) {
            let rev = relay.items[&id].0;
            let kept = relay.history[&(id, rev - 1)].as_ref().unwrap();
            let kept = Entry::open(k, &C, &id, rev - 1, kept).unwrap();
            proptest::prop_assert_eq!(&kept.body, &eb.body);
        }
    }
}

#[test]
fn edits_made_while_a_write_is_in_flight_follow_it() {
    let k = keys();
    let mut relay = Relay::default();
    let (mut a, mut b) = (DiarySync::new(C), DiarySync::new(C));
    let (id, req) = a.create(&k, entry("x", "one\n"), &mut rng(1)).unwrap();
    drive(&mut relay, &mut a, &k, req, 1);
    sync(&mut relay, &mut b, &k);
    // The user keeps typing while the first save is on its way.
    let req1 = a
        .edit(&k, &id, entry("x", "one\ntwo\n"), &mut rng(2))
        .unwrap()
        .unwrap();
    assert!(
        a.edit(&k, &id, entry("x", "one\ntwo\nthree\n"), &mut rng(3))
            .unwrap()
            .is_none()
    );
    assert_eq!(a.entry(&id).unwrap().body, "one\ntwo\nthree\n");
    drive(&mut relay, &mut a, &k, req1, 2); // success → follow-up put of the newer text
    assert!(!a.has_pending(&id));
    assert_eq!(relay.items[&id].0, 3);
    sync(&mut relay, &mut b, &k);
    assert_eq!(b.entry(&id).unwrap().body, "one\ntwo\nthree\n");

    // Same, while another device wrote first: the 409 merges the newest local text.
    let mut eb = b.entry(&id).unwrap().clone();
    eb.body = "zero\none\ntwo\nthree\n".into();
    let rb = b.edit(&k, &id, eb, &mut rng(4)).unwrap().unwrap();
    drive(&mut relay, &mut b, &k, rb, 4);
    let req = a
        .edit(&k, &id, entry("x", "one\ntwo\nthree\nfour\n"), &mut rng(5))
        .unwrap()
        .unwrap();
    assert!(
        a.edit(
            &k,
            &id,
            entry("x", "one\ntwo\nthree\nfour\nfive\n"),
            &mut rng(6)
        )
        .unwrap()
        .is_none()
    );
    drive(&mut relay, &mut a, &k, req, 5);
    sync(&mut relay, &mut b, &k);
    assert_eq!(
        a.entry(&id).unwrap().body,
        "zero\none\ntwo\nthree\nfour\nfive\n"
    );
    assert_eq!(b.entry(&id).unwrap().body, a.entry(&id).unwrap().body);
    assert!(!a.has_pending(&id));
}

#[test]
fn delete_then_restore_from_history() {
    let k = keys();
    let mut relay = Relay::default();
    let mut a = DiarySync::new(C);
    let (id, req) = a.create(&k, entry("x", "keep me\n"), &mut rng(1)).unwrap();
    drive(&mut relay, &mut a, &k, req, 1);
    assert_eq!(
        a.edit(&k, &[9; 16], entry("x", "y"), &mut rng(1)).err(),
        Some(SyncError::UnknownItem)
    );
    assert_eq!(
        a.restore(&k, &id, entry("x", "y"), &mut rng(1)).err(),
        Some(SyncError::WrongState)
    );
    let del = a.delete(&id).unwrap();
    drive(&mut relay, &mut a, &k, del, 2);
    assert!(a.entry(&id).is_none());
    assert_eq!(a.delete(&id).err(), Some(SyncError::WrongState));
    assert!(a.search(&DiaryQuery::default()).is_empty());
    // The app opens the last live revision from the history and restores it.
    let old = relay.history[&(id, 1)].clone().unwrap();
    let old = Entry::open(&k, &C, &id, 1, &old).unwrap();
    let req = a.restore(&k, &id, old, &mut rng(3)).unwrap().unwrap();
    assert!(matches!(
        req,
        VaultRequest::Restore {
            expected_revision: 2,
            ..
        }
    ));
    drive(&mut relay, &mut a, &k, req, 3);
    assert_eq!(a.revision(&id), Some(3));
    assert_eq!(a.entry(&id).unwrap().body, "keep me\n");
    assert_eq!(a.search(&DiaryQuery::default()), [id]);
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

    /// Any authenticated plaintext that is not a valid entry is an error, never a panic; any
    /// bytes given to the index decoder are refused or decoded, never a panic.
    #[test]
    fn decoders_never_panic(
        pt in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300),
        head in 0u8..3,
    ) {
        let k = shared_keys();
        let mut bytes = pt.clone();
        if head > 0 && bytes.len() >= 2 {
            bytes[0] = 1;
            bytes[1] = head;
        }
        let ct = k.encrypt_item(&C, &[1; 16], 1, &bytes, &mut rng(1)).unwrap();
        let sealed = SealedEntry { body: ct.clone(), meta: ct };
        let _ = Entry::open(k, &C, &[1; 16], 1, &sealed);
        let _ = Entry::open_meta(k, &C, &[1; 16], 1, &sealed.meta);
        let _ = DiaryIndex::from_bytes(&bytes);
    }
}

#[test]
fn merge_too_large_to_seal_keeps_both_versions_in_history() {
    let k = keys();
    let mut relay = Relay::default();
    let (mut a, mut b) = (DiarySync::new(C), DiarySync::new(C));
    let (id, req) = a.create(&k, entry("x", "base\n"), &mut rng(1)).unwrap();
    drive(&mut relay, &mut a, &k, req, 1);
    sync(&mut relay, &mut b, &k);
    let big = |c: char| format!("{}\n", c.to_string().repeat(300 * 1024));
    let ra = a
        .edit(&k, &id, entry("x", &big('a')), &mut rng(2))
        .unwrap()
        .unwrap();
    let rb = b
        .edit(&k, &id, entry("x", &big('b')), &mut rng(3))
        .unwrap()
        .unwrap();
    drive(&mut relay, &mut a, &k, ra, 2);
    drive(&mut relay, &mut b, &k, rb, 3);
    sync(&mut relay, &mut a, &k);
    assert_eq!(a.entry(&id).unwrap().body, big('b'));
    let theirs = relay.history[&(id, 2)].as_ref().unwrap();
    assert_eq!(Entry::open(&k, &C, &id, 2, theirs).unwrap().body, big('a'));
    assert!(!b.has_pending(&id));
}
