//! End to end: two devices running the SDK's diary sync state machine against the real relay
//! (in-process `app`, SQLite and Postgres): concurrent edits merge, conflicts keep both texts and
//! the losing version in the history, deletions and restores propagate, and every blob the relay
//! stores opens on the other device.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common::{self, Api as _};

use crate::common::{Harness, Tokens, b64};
use axum::http::{Method, StatusCode};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use haven_relay::db::Store;
use haven_sdk::diary::merge::MARKER_OURS;
use haven_sdk::diary::{
    ChangesPage, DiaryKeys, DiaryQuery, DiarySync, Entry, KdfParams, RemoteItem, SealedEntry,
    VaultRequest,
};
use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::SeedableRng as _;
use serde_json::{Value, json};

const PASSWORD: &str = "correct horse battery staple";
const C: [u8; 16] = [0xd1; 16];

fn blob(v: &Value) -> Option<Vec<u8>> {
    v.as_str().map(|s| STANDARD.decode(s).unwrap())
}

/// The host's I/O loop: sends each request, feeds the reply back, until nothing is left.
async fn drive<S: Store>(
    h: &Harness<S>,
    t: &Tokens,
    dev: &mut DiarySync,
    keys: &DiaryKeys,
    first: VaultRequest,
    seed: u8,
) {
    let mut rng = ChaCha20Rng::from_seed([seed; 32]);
    let mut queue = vec![first];
    let coll = hex::encode(C);
    let mut rounds = 0;
    while !queue.is_empty() {
        rounds += 1;
        assert!(rounds < 50, "sync does not converge");
        let req = queue.remove(0);
        let (method, path, body, item) = match &req {
            VaultRequest::Changes { since } => (
                Method::GET,
                format!("/v1/vault/{coll}/changes?since={since}&limit=2"),
                None,
                None,
            ),
            VaultRequest::Put {
                item_id,
                expected_revision,
                sealed,
            } => (
                Method::PUT,
                format!("/v1/vault/{coll}/items/{}", hex::encode(item_id)),
                Some(json!({"expected_revision": expected_revision,
                    "body": b64(&sealed.body), "meta": b64(&sealed.meta)})),
                Some(*item_id),
            ),
            VaultRequest::Delete {
                item_id,
                expected_revision,
            } => (
                Method::DELETE,
                format!(
                    "/v1/vault/{coll}/items/{}?expected_revision={expected_revision}",
                    hex::encode(item_id)
                ),
                None,
                Some(*item_id),
            ),
            VaultRequest::Restore {
                item_id,
                expected_revision,
                sealed,
            } => (
                Method::POST,
                format!("/v1/vault/{coll}/items/{}/restore", hex::encode(item_id)),
                Some(json!({"expected_revision": expected_revision,
                    "body": b64(&sealed.body), "meta": b64(&sealed.meta)})),
                Some(*item_id),
            ),
            other => panic!("unexpected request {other:?}"),
        };
        let reply = h.call(method, &path, body, Some(&t.access)).await;
        match (reply.status, item) {
            (StatusCode::OK, Some(id)) => queue.extend(
                dev.write_succeeded(
                    keys,
                    &id,
                    reply.body["revision"].as_u64().unwrap(),
                    reply.body["deleted"].as_bool().unwrap(),
                    &mut rng,
                )
                .unwrap(),
            ),
            (StatusCode::OK, None) => {
                let page = ChangesPage {
                    changes: reply.body["changes"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|c| RemoteItem {
                            item_id: hex::decode(c["item_id"].as_str().unwrap())
                                .unwrap()
                                .try_into()
                                .unwrap(),
                            revision: c["revision"].as_u64().unwrap(),
                            deleted: c["deleted"].as_bool().unwrap(),
                            body: blob(&c["body"]),
                            meta: blob(&c["meta"]),
                        })
                        .collect(),
                    sync_token: reply.body["sync_token"].as_u64().unwrap(),
                    more: reply.body["more"].as_bool().unwrap(),
                };
                queue.extend(dev.apply_changes(keys, &page, &mut rng).unwrap());
            }
            (StatusCode::CONFLICT, Some(id)) => {
                assert!(reply.body["error"]["current_revision"].is_u64());
                queue.clear();
                queue.extend(dev.write_conflicted(keys, &id, &mut rng).unwrap());
            }
            (status, _) => panic!("{status}: {}", reply.body),
        }
    }
}

async fn pull<S: Store>(h: &Harness<S>, t: &Tokens, dev: &mut DiarySync, keys: &DiaryKeys) {
    let req = dev.pull();
    drive(h, t, dev, keys, req, 99).await;
}

fn entry(title: &str, body: &str) -> Entry {
    Entry {
        title: title.into(),
        body: body.into(),
        mood: Some("calm".into()),
        tags: vec!["daily".into()],
        created_ms: 1_700_000_000_000,
        updated_ms: 1_700_000_000_000,
        attachments: Vec::new(),
    }
}

async fn two_devices_sync_through_the_relay<S: Store>(h: Harness<S>) {
    let phone = h.register(None, PASSWORD).await;
    let laptop = h.login_existing(&phone, PASSWORD).await;
    let keys = DiaryKeys::create(
        PASSWORD.as_bytes(),
        KdfParams::MIN,
        &mut ChaCha20Rng::from_seed([1; 32]),
    )
    .unwrap()
    .0;
    let (mut a, mut b) = (DiarySync::new(C), DiarySync::new(C));
    let mut rng = ChaCha20Rng::from_seed([2; 32]);
    // Three entries from the phone; the laptop pulls them (pages of 2).
    let mut ids = Vec::new();
    for i in 0..3 {
        let (id, req) = a
            .create(
                &keys,
                entry(&format!("Day {i}"), "morning\nlunch\nevening\n"),
                &mut rng,
            )
            .unwrap();
        drive(&h, &phone, &mut a, &keys, req, 3).await;
        ids.push(id);
    }
    pull(&h, &laptop, &mut b, &keys).await;
    assert_eq!(b.index().len(), 3);
    let id = ids[0];

    // Concurrent edits of different lines merge cleanly.
    let mut ea = a.entry(&id).unwrap().clone();
    ea.body = "morning run\nlunch\nevening\n".into();
    let mut eb = b.entry(&id).unwrap().clone();
    eb.body = "morning\nlunch\nevening with a book\n".into();
    let ra = a.edit(&keys, &id, ea, &mut rng).unwrap().unwrap();
    let rb = b.edit(&keys, &id, eb, &mut rng).unwrap().unwrap();
    drive(&h, &phone, &mut a, &keys, ra, 4).await;
    drive(&h, &laptop, &mut b, &keys, rb, 5).await; // 409 → pull → merge → put
    pull(&h, &phone, &mut a, &keys).await;
    let merged = "morning run\nlunch\nevening with a book\n";
    assert_eq!(a.entry(&id).unwrap().body, merged);
    assert_eq!(b.entry(&id).unwrap().body, merged);

    // Conflicting edits of the same line: both texts in the entry, the laptop's full version
    // in the relay's history.
    let mut ea = a.entry(&id).unwrap().clone();
    ea.body = merged.replace("lunch", "lunch at the harbour");
    let mut eb = b.entry(&id).unwrap().clone();
    eb.body = merged.replace("lunch", "no lunch today");
    let ra = a.edit(&keys, &id, ea, &mut rng).unwrap().unwrap();
    let rb = b.edit(&keys, &id, eb.clone(), &mut rng).unwrap().unwrap();
    drive(&h, &phone, &mut a, &keys, ra, 6).await;
    drive(&h, &laptop, &mut b, &keys, rb, 7).await;
    pull(&h, &phone, &mut a, &keys).await;
    let body = a.entry(&id).unwrap().body.clone();
    assert_eq!(body, b.entry(&id).unwrap().body);
    assert!(body.contains("lunch at the harbour") && body.contains("no lunch today"));
    assert!(body.contains(MARKER_OURS));
    let coll = hex::encode(C);
    let hist = h
        .call(
            Method::GET,
            &format!("/v1/vault/{coll}/items/{}/history", hex::encode(id)),
            None,
            Some(&phone.access),
        )
        .await
        .expect(StatusCode::OK);
    let revs = hist.body["revisions"].as_array().unwrap();
    let opened: Vec<Entry> = revs
        .iter()
        .map(|r| {
            let sealed = SealedEntry {
                body: blob(&r["body"]).unwrap(),
                meta: blob(&r["meta"]).unwrap(),
            };
            Entry::open(&keys, &C, &id, r["revision"].as_u64().unwrap(), &sealed).unwrap()
        })
        .collect();
    assert!(
        opened.iter().any(|e| e.body == eb.body),
        "laptop's version kept"
    );
    assert_eq!(opened.last().unwrap().body, body);

    // Deletion propagates; an edit made meanwhile on the other device restores the entry.
    let del = a.delete(&ids[1]).unwrap();
    drive(&h, &phone, &mut a, &keys, del, 8).await;
    let mut e = b.entry(&ids[1]).unwrap().clone();
    e.body.push_str("night\n");
    let rb = b.edit(&keys, &ids[1], e, &mut rng).unwrap().unwrap();
    drive(&h, &laptop, &mut b, &keys, rb, 9).await;
    pull(&h, &phone, &mut a, &keys).await;
    assert_eq!(
        a.entry(&ids[1]).unwrap().body,
        "morning\nlunch\nevening\nnight\n"
    );
    // A plain deletion reaches the other device and leaves its index.
    let del = a.delete(&ids[2]).unwrap();
    drive(&h, &phone, &mut a, &keys, del, 10).await;
    pull(&h, &laptop, &mut b, &keys).await;
    assert!(b.entry(&ids[2]).is_none());
    let all = b.search(&DiaryQuery::default());
    assert_eq!(all.len(), 2);
    assert!(
        b.search(&DiaryQuery {
            text: Some("harbour".into()),
            ..DiaryQuery::default()
        }) == [id]
    );
}

common::on_both_backends!(two_devices_sync_through_the_relay);
