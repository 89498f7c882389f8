//! The vault's endpoints through `app` with `oneshot`, on SQLite and Postgres: every rule of
//! `docs/PROTOCOL.md` §11.16 and every bad input (which must change nothing).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common;
use crate::common::Api as _;

use crate::common::{Guard, Harness, Tokens, b64, test_settings};
use axum::http::{Method, StatusCode};
use haven_protocol::padding::padded_len;
use haven_protocol::vault::ITEM_OVERHEAD;
use haven_relay::Settings;
use haven_relay::db::Store;
use haven_relay::ids::Id;
use haven_relay::vault::routes::purge_expired;
use serde_json::{Value, json};

const PASSWORD: &str = "correct horse battery staple";

/// An honest-looking blob: a padding bucket for `payload` bytes plus the item overhead.
fn blob(payload: u64, fill: u8) -> Vec<u8> {
    vec![fill; usize::try_from(padded_len(payload).unwrap() + ITEM_OVERHEAD).unwrap()]
}

fn item_url(collection: &str, item: &str) -> String {
    format!("/v1/vault/{collection}/items/{item}")
}

fn hex_id() -> String {
    Id::random().to_hex()
}

fn write_body(expected: u64, body: &[u8], meta: &[u8]) -> Value {
    json!({"expected_revision": expected, "body": b64(body), "meta": b64(meta)})
}

async fn put<S: Store>(
    h: &Harness<S>,
    t: &Tokens,
    c: &str,
    i: &str,
    expected: u64,
    body: &[u8],
    meta: &[u8],
) -> common::Reply {
    h.call(
        Method::PUT,
        &item_url(c, i),
        Some(write_body(expected, body, meta)),
        Some(&t.access),
    )
    .await
}

async fn get<S: Store>(h: &Harness<S>, t: &Tokens, path: &str) -> common::Reply {
    h.call(Method::GET, path, None, Some(&t.access)).await
}

async fn usage<S: Store>(h: &Harness<S>, t: &Tokens) -> (u64, u64) {
    let u = get(h, t, "/v1/vault/usage").await.expect(StatusCode::OK);
    (
        u.body["items"].as_u64().unwrap(),
        u.body["bytes"].as_u64().unwrap(),
    )
}

fn with_settings<S: Store>(h: &Harness<S>, edit: impl FnOnce(&mut Settings)) -> Settings {
    let _ = h;
    let mut s = test_settings();
    edit(&mut s);
    s
}

async fn create_update_and_stale_revisions<S: Store>(h: Harness<S>) {
    let t = h.register(None, PASSWORD).await;
    let (c, i) = (hex_id(), hex_id());
    let (b1, m1) = (blob(10, 1), blob(0, 2));
    let r = put(&h, &t, &c, &i, 0, &b1, &m1)
        .await
        .expect(StatusCode::OK);
    assert_eq!(r.body["revision"], 1);
    assert_eq!(r.body["item_id"], i.as_str());
    assert_eq!(r.body["deleted"], false);
    let token1 = r.body["sync_token"].as_u64().unwrap();
    // Creating twice, or updating from a stale revision: 409 with the current revision.
    for expected in [0, 2, 5] {
        let r = put(&h, &t, &c, &i, expected, &blob(1, 9), &m1)
            .await
            .expect_error(StatusCode::CONFLICT, "revision_conflict");
        assert_eq!(r.body["error"]["current_revision"], 1);
        assert_eq!(r.body["error"]["deleted"], false);
    }
    // Updating an item that does not exist reports revision 0.
    let r = put(&h, &t, &c, &hex_id(), 4, &b1, &m1)
        .await
        .expect_error(StatusCode::CONFLICT, "revision_conflict");
    assert_eq!(r.body["error"]["current_revision"], 0);
    let (b2, m2) = (blob(300, 3), blob(0, 4));
    let r = put(&h, &t, &c, &i, 1, &b2, &m2)
        .await
        .expect(StatusCode::OK);
    assert_eq!(r.body["revision"], 2);
    assert!(r.body["sync_token"].as_u64().unwrap() > token1);
    let g = get(&h, &t, &item_url(&c, &i)).await.expect(StatusCode::OK);
    assert_eq!(g.body["revision"], 2);
    assert_eq!(g.body["body"], b64(&b2));
    assert_eq!(g.body["meta"], b64(&m2));
    // Server times are coarse (a multiple of the granularity, one hour by default).
    assert_eq!(g.body["updated_at"].as_i64().unwrap() % 3600, 0);
    let hist = get(&h, &t, &format!("{}/history", item_url(&c, &i)))
        .await
        .expect(StatusCode::OK);
    let revs = hist.body["revisions"].as_array().unwrap();
    assert_eq!(revs.len(), 2);
    assert_eq!(revs[0]["body"], b64(&b1));
    assert_eq!(revs[1]["meta"], b64(&m2));
    assert_eq!(hist.body["next_after"], Value::Null);
    // The rejected writes changed nothing: two revisions of one item are stored.
    let bytes = (b1.len() + m1.len() + b2.len() + m2.len()) as u64;
    assert_eq!(usage(&h, &t).await, (1, bytes));
}

async fn delete_restore_and_history<S: Store>(h: Harness<S>) {
    let t = h.register(None, PASSWORD).await;
    let (c, i) = (hex_id(), hex_id());
    let url = item_url(&c, &i);
    h.call(
        Method::DELETE,
        &format!("{url}?expected_revision=1"),
        None,
        Some(&t.access),
    )
    .await
    .expect_error(StatusCode::NOT_FOUND, "item_not_found");
    put(&h, &t, &c, &i, 0, &blob(1, 1), &blob(1, 1))
        .await
        .expect(StatusCode::OK);
    put(&h, &t, &c, &i, 1, &blob(2, 2), &blob(2, 2))
        .await
        .expect(StatusCode::OK);
    h.call(Method::DELETE, &url, None, Some(&t.access))
        .await
        .expect_error(StatusCode::BAD_REQUEST, "invalid_query");
    let r = h
        .call(
            Method::DELETE,
            &format!("{url}?expected_revision=1"),
            None,
            Some(&t.access),
        )
        .await
        .expect_error(StatusCode::CONFLICT, "revision_conflict");
    assert_eq!(r.body["error"]["current_revision"], 2);
    let r = h
        .call(
            Method::DELETE,
            &format!("{url}?expected_revision=2"),
            None,
            Some(&t.access),
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(r.body["revision"], 3);
    assert_eq!(r.body["deleted"], true);
    let g = get(&h, &t, &url).await.expect(StatusCode::OK);
    assert_eq!(g.body["deleted"], true);
    assert_eq!(g.body["body"], Value::Null);
    // A deleted item cannot be updated or deleted again; restore needs the current revision.
    let r = put(&h, &t, &c, &i, 3, &blob(3, 3), &blob(3, 3))
        .await
        .expect_error(StatusCode::CONFLICT, "item_deleted");
    assert_eq!(r.body["error"]["current_revision"], 3);
    h.call(
        Method::DELETE,
        &format!("{url}?expected_revision=3"),
        None,
        Some(&t.access),
    )
    .await
    .expect_error(StatusCode::CONFLICT, "item_deleted");
    let restore = format!("{url}/restore");
    h.call(
        Method::POST,
        &restore,
        Some(write_body(2, &blob(4, 4), &blob(4, 4))),
        Some(&t.access),
    )
    .await
    .expect_error(StatusCode::CONFLICT, "revision_conflict");
    let r = h
        .call(
            Method::POST,
            &restore,
            Some(write_body(3, &blob(4, 4), &blob(4, 4))),
            Some(&t.access),
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(r.body["revision"], 4);
    assert_eq!(r.body["deleted"], false);
    h.call(
        Method::POST,
        &restore,
        Some(write_body(4, &blob(4, 4), &blob(4, 4))),
        Some(&t.access),
    )
    .await
    .expect_error(StatusCode::CONFLICT, "item_not_deleted");
    h.call(
        Method::POST,
        &format!("{}/restore", item_url(&c, &hex_id())),
        Some(write_body(1, &blob(4, 4), &blob(4, 4))),
        Some(&t.access),
    )
    .await
    .expect_error(StatusCode::NOT_FOUND, "item_not_found");
    // History: every revision, tombstone included, paginated.
    let mut after = 0;
    let mut seen = Vec::new();
    loop {
        let page = get(&h, &t, &format!("{url}/history?after={after}&limit=3"))
            .await
            .expect(StatusCode::OK);
        for r in page.body["revisions"].as_array().unwrap() {
            seen.push((
                r["revision"].as_u64().unwrap(),
                r["deleted"].as_bool().unwrap(),
            ));
        }
        match page.body["next_after"].as_u64() {
            Some(n) => after = n,
            None => break,
        }
    }
    assert_eq!(seen, [(1, false), (2, false), (3, true), (4, false)]);
    get(&h, &t, &format!("{}/history", item_url(&c, &hex_id())))
        .await
        .expect_error(StatusCode::NOT_FOUND, "item_not_found");
}

async fn changes_sync_paginated_with_deletions<S: Store>(h: Harness<S>) {
    let t = h.register(None, PASSWORD).await;
    let c = hex_id();
    let other = hex_id();
    put(&h, &t, &other, &hex_id(), 0, &blob(0, 0), &blob(0, 0))
        .await
        .expect(StatusCode::OK);
    let items: Vec<String> = (0..5).map(|_| hex_id()).collect();
    for i in &items {
        put(&h, &t, &c, i, 0, &blob(0, 1), &blob(0, 1))
            .await
            .expect(StatusCode::OK);
    }
    let sync = |since: u64| {
        let (h, t, c) = (&h, &t, &c);
        async move {
            let mut since = since;
            let mut got = Vec::new();
            loop {
                let page = get(
                    h,
                    t,
                    &format!("/v1/vault/{c}/changes?since={since}&limit=2"),
                )
                .await
                .expect(StatusCode::OK);
                let changes = page.body["changes"].as_array().unwrap().clone();
                assert!(changes.len() <= 2);
                for ch in &changes {
                    got.push((
                        ch["item_id"].as_str().unwrap().to_owned(),
                        ch["revision"].as_u64().unwrap(),
                        ch["deleted"].as_bool().unwrap(),
                    ));
                }
                since = page.body["sync_token"].as_u64().unwrap();
                if !page.body["more"].as_bool().unwrap() {
                    break;
                }
            }
            (got, since)
        }
    };
    let (first, token) = sync(0).await;
    assert_eq!(first.len(), 5);
    assert!(first.iter().zip(&items).all(|(g, i)| &g.0 == i && g.1 == 1));
    // Nothing new: same token back, no changes.
    let (none, same) = sync(token).await;
    assert!(none.is_empty());
    assert_eq!(same, token);
    // An update and a deletion show up, in change order, once each.
    put(&h, &t, &c, &items[3], 1, &blob(0, 2), &blob(0, 2))
        .await
        .expect(StatusCode::OK);
    h.call(
        Method::DELETE,
        &format!("{}?expected_revision=1", item_url(&c, &items[0])),
        None,
        Some(&t.access),
    )
    .await
    .expect(StatusCode::OK);
    let (delta, _) = sync(token).await;
    assert_eq!(
        delta,
        [(items[3].clone(), 2, false), (items[0].clone(), 2, true)]
    );
    // Another collection's changes never appear.
    let (all, _) = sync(0).await;
    assert_eq!(all.len(), 5);
    // Bad queries.
    for q in [
        "since=abc",
        "limit=0",
        "since=-1",
        "bogus=1",
        "since=99999999999999999999",
    ] {
        get(&h, &t, &format!("/v1/vault/{c}/changes?{q}"))
            .await
            .expect_error(StatusCode::BAD_REQUEST, "invalid_query");
    }
}

async fn pages_are_bounded_in_bytes<S: Store>(h: Harness<S>) {
    let settings = with_settings(&h, |s| s.vault.max_page_bytes = 3000);
    let h = Harness::with_settings(h.store.clone(), Guard::None, settings).await;
    let t = h.register(None, PASSWORD).await;
    let c = hex_id();
    for _ in 0..4 {
        // 1065 + 297 bytes per item: two fit in 3000 bytes, three do not.
        put(&h, &t, &c, &hex_id(), 0, &blob(1000, 1), &blob(0, 1))
            .await
            .expect(StatusCode::OK);
    }
    let page = get(&h, &t, &format!("/v1/vault/{c}/changes"))
        .await
        .expect(StatusCode::OK);
    assert_eq!(page.body["changes"].as_array().unwrap().len(), 2);
    assert_eq!(page.body["more"], true);
    // A single item larger than the page budget is still returned alone.
    let h2 = Harness::with_settings(
        h.store.clone(),
        Guard::None,
        with_settings(&h, |s| s.vault.max_page_bytes = 10),
    )
    .await;
    let page = get(&h2, &t, &format!("/v1/vault/{c}/changes"))
        .await
        .expect(StatusCode::OK);
    assert_eq!(page.body["changes"].as_array().unwrap().len(), 1);
    assert_eq!(page.body["more"], true);
}

async fn bad_input_is_rejected_and_changes_nothing<S: Store>(h: Harness<S>) {
    let t = h.register(None, PASSWORD).await;
    let (c, i) = (hex_id(), hex_id());
    let good = blob(0, 1);
    // Sizes that no honest client produces.
    for bad in [
        vec![1u8; 10],
        vec![1u8; 256],
        vec![1u8; good.len() + 1],
        vec![1u8; good.len() - 1],
    ] {
        put(&h, &t, &c, &i, 0, &bad, &good)
            .await
            .expect_error(StatusCode::BAD_REQUEST, "invalid_item_size");
        put(&h, &t, &c, &i, 0, &good, &bad)
            .await
            .expect_error(StatusCode::BAD_REQUEST, "invalid_item_size");
    }
    // Oversize: over max_body_bytes (1 MiB by default) / max_meta_bytes (64 KiB).
    put(&h, &t, &c, &i, 0, &blob(1 << 20, 1), &good)
        .await
        .expect_error(StatusCode::PAYLOAD_TOO_LARGE, "item_too_large");
    // Beyond what any vault request may need, the body is refused before it is parsed.
    put(&h, &t, &c, &i, 0, &blob(2 << 20, 1), &good)
        .await
        .expect_error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    put(&h, &t, &c, &i, 0, &good, &blob(100_000, 1))
        .await
        .expect_error(StatusCode::PAYLOAD_TOO_LARGE, "item_too_large");
    // Malformed JSON, base64, ids and revisions.
    let url = item_url(&c, &i);
    for (body, code) in [
        (
            json!({"expected_revision": 0, "body": "***", "meta": b64(&good)}),
            "invalid_base64",
        ),
        (
            json!({"expected_revision": 0, "body": b64(&good)}),
            "invalid_json",
        ),
        (
            json!({"expected_revision": -1, "body": b64(&good), "meta": b64(&good)}),
            "invalid_json",
        ),
        (
            json!({"expected_revision": 0, "body": b64(&good), "meta": b64(&good), "x": 1}),
            "invalid_json",
        ),
        (
            json!({"expected_revision": u64::MAX, "body": b64(&good), "meta": b64(&good)}),
            "invalid_revision",
        ),
    ] {
        h.call(Method::PUT, &url, Some(body), Some(&t.access))
            .await
            .expect_error(StatusCode::BAD_REQUEST, code);
    }
    for path in [
        item_url(&c.to_uppercase(), &i),
        item_url(&c, &i[..30]),
        item_url("zz", &i),
    ] {
        h.call(
            Method::PUT,
            &path,
            Some(write_body(0, &good, &good)),
            Some(&t.access),
        )
        .await
        .expect_error(StatusCode::BAD_REQUEST, "invalid_id");
        get(&h, &t, &path)
            .await
            .expect_error(StatusCode::BAD_REQUEST, "invalid_id");
    }
    get(&h, &t, "/v1/vault/nothex/changes")
        .await
        .expect_error(StatusCode::BAD_REQUEST, "invalid_id");
    // No token, a forged token.
    h.call(Method::PUT, &url, Some(write_body(0, &good, &good)), None)
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "missing_token");
    h.call(
        Method::PUT,
        &url,
        Some(write_body(0, &good, &good)),
        Some("not.a.jwt"),
    )
    .await
    .expect_error(StatusCode::UNAUTHORIZED, "invalid_token");
    get(&h, &t, &url)
        .await
        .expect_error(StatusCode::NOT_FOUND, "item_not_found");
    assert_eq!(usage(&h, &t).await, (0, 0));
    let account: Id = t.account_id.parse().unwrap();
    assert_eq!(h.store.vault_usage(&account).await.unwrap().last_seq, 0);
    // Blobs larger than the general body limit (8 KiB in tests) are fine on vault routes.
    put(&h, &t, &c, &i, 0, &blob(20_000, 7), &good)
        .await
        .expect(StatusCode::OK);
}

async fn another_accounts_token_sees_and_changes_nothing<S: Store>(h: Harness<S>) {
    let alice = h.register(None, PASSWORD).await;
    let bob = h.register(None, PASSWORD).await;
    let (c, i) = (hex_id(), hex_id());
    let secret = blob(5, 5);
    put(&h, &alice, &c, &i, 0, &secret, &secret)
        .await
        .expect(StatusCode::OK);
    let url = item_url(&c, &i);
    get(&h, &bob, &url)
        .await
        .expect_error(StatusCode::NOT_FOUND, "item_not_found");
    get(&h, &bob, &format!("{url}/history"))
        .await
        .expect_error(StatusCode::NOT_FOUND, "item_not_found");
    h.call(
        Method::DELETE,
        &format!("{url}?expected_revision=1"),
        None,
        Some(&bob.access),
    )
    .await
    .expect_error(StatusCode::NOT_FOUND, "item_not_found");
    put(&h, &bob, &c, &i, 1, &blob(1, 1), &blob(1, 1))
        .await
        .expect_error(StatusCode::CONFLICT, "revision_conflict");
    let changes = get(&h, &bob, &format!("/v1/vault/{c}/changes"))
        .await
        .expect(StatusCode::OK);
    assert!(changes.body["changes"].as_array().unwrap().is_empty());
    // Bob's own item under the same ids is a separate item.
    put(&h, &bob, &c, &i, 0, &blob(1, 1), &blob(1, 1))
        .await
        .expect(StatusCode::OK);
    let a = get(&h, &alice, &url).await.expect(StatusCode::OK);
    assert_eq!(a.body["revision"], 1);
    assert_eq!(a.body["body"], b64(&secret));
    // A logged-out session is refused.
    h.call(Method::POST, "/v1/logout", None, Some(&bob.access))
        .await
        .expect(StatusCode::NO_CONTENT);
    get(&h, &bob, &url)
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "session_revoked");
}

async fn quotas_give_clear_errors<S: Store>(h: Harness<S>) {
    let settings = with_settings(&h, |s| {
        s.vault.max_items = 2;
        s.vault.max_bytes = 2000;
    });
    let h = Harness::with_settings(h.store.clone(), Guard::None, settings).await;
    let t = h.register(None, PASSWORD).await;
    let c = hex_id();
    let small = blob(0, 1); // 297 bytes
    let (i1, i2) = (hex_id(), hex_id());
    put(&h, &t, &c, &i1, 0, &small, &small)
        .await
        .expect(StatusCode::OK);
    put(&h, &t, &c, &i2, 0, &small, &small)
        .await
        .expect(StatusCode::OK);
    put(&h, &t, &c, &hex_id(), 0, &small, &small)
        .await
        .expect_error(
            StatusCode::INSUFFICIENT_STORAGE,
            "vault_item_quota_exceeded",
        );
    put(&h, &t, &c, &i1, 1, &blob(1000, 1), &small)
        .await
        .expect_error(
            StatusCode::INSUFFICIENT_STORAGE,
            "vault_byte_quota_exceeded",
        );
    let u = get(&h, &t, "/v1/vault/usage").await.expect(StatusCode::OK);
    assert_eq!(u.body["items"], 2);
    assert_eq!(u.body["bytes"], 4 * 297);
    assert_eq!(u.body["max_items"], 2);
    assert_eq!(u.body["max_bytes"], 2000);
    let g = get(&h, &t, &item_url(&c, &i1)).await.expect(StatusCode::OK);
    assert_eq!(g.body["revision"], 1);
    // Deleting always works (tombstones are free).
    h.call(
        Method::DELETE,
        &format!("{}?expected_revision=1", item_url(&c, &i1)),
        None,
        Some(&t.access),
    )
    .await
    .expect(StatusCode::OK);
}

async fn retention_purges_deleted_items_and_expires_old_tokens<S: Store>(h: Harness<S>) {
    let settings = with_settings(&h, |s| s.vault.retention_secs = 60);
    let h = Harness::with_settings(h.store.clone(), Guard::None, settings.clone()).await;
    let t = h.register(None, PASSWORD).await;
    let c = hex_id();
    let (gone, kept) = (hex_id(), hex_id());
    let old_token = put(&h, &t, &c, &gone, 0, &blob(0, 1), &blob(0, 1))
        .await
        .expect(StatusCode::OK)
        .body["sync_token"]
        .as_u64()
        .unwrap();
    put(&h, &t, &c, &kept, 0, &blob(0, 1), &blob(0, 1))
        .await
        .expect(StatusCode::OK);
    let del = h
        .call(
            Method::DELETE,
            &format!("{}?expected_revision=1", item_url(&c, &gone)),
            None,
            Some(&t.access),
        )
        .await
        .expect(StatusCode::OK);
    let deleted_at = del.body["updated_at"].as_i64().unwrap();
    // Not yet: within the retention period.
    assert_eq!(
        purge_expired(&h.store, &settings.vault, deleted_at + 59)
            .await
            .unwrap(),
        0
    );
    assert!(get(&h, &t, &item_url(&c, &gone)).await.status == StatusCode::OK);
    assert_eq!(
        purge_expired(&h.store, &settings.vault, deleted_at + 60)
            .await
            .unwrap(),
        1
    );
    get(&h, &t, &item_url(&c, &gone))
        .await
        .expect_error(StatusCode::NOT_FOUND, "item_not_found");
    assert_eq!(usage(&h, &t).await, (1, 2 * 297));
    // A client whose token predates the purge may have missed the deletion: 410, resync.
    get(&h, &t, &format!("/v1/vault/{c}/changes?since={old_token}"))
        .await
        .expect_error(StatusCode::GONE, "sync_token_expired");
    let full = get(&h, &t, &format!("/v1/vault/{c}/changes?since=0"))
        .await
        .expect(StatusCode::OK);
    let ids: Vec<&str> = full.body["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["item_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [kept.as_str()]);
    let fresh = full.body["sync_token"].as_u64().unwrap();
    get(&h, &t, &format!("/v1/vault/{c}/changes?since={fresh}"))
        .await
        .expect(StatusCode::OK);
}

async fn export_lists_the_vault<S: Store>(h: Harness<S>) {
    let t = h.register(None, PASSWORD).await;
    let (c, i1, i2) = (hex_id(), hex_id(), hex_id());
    put(&h, &t, &c, &i1, 0, &blob(0, 1), &blob(0, 1))
        .await
        .expect(StatusCode::OK);
    put(&h, &t, &c, &i1, 1, &blob(300, 1), &blob(0, 1))
        .await
        .expect(StatusCode::OK);
    put(&h, &t, &c, &i2, 0, &blob(0, 1), &blob(0, 1))
        .await
        .expect(StatusCode::OK);
    h.call(
        Method::DELETE,
        &format!("{}?expected_revision=1", item_url(&c, &i2)),
        None,
        Some(&t.access),
    )
    .await
    .expect(StatusCode::OK);
    let doc = get(&h, &t, "/v1/account/export")
        .await
        .expect(StatusCode::OK)
        .body;
    let vault = doc["vault"].as_array().unwrap();
    assert_eq!(vault.len(), 2);
    let find = |id: &str| vault.iter().find(|v| v["item_id"] == id).unwrap();
    assert_eq!(find(&i1)["revision"], 2);
    assert_eq!(find(&i1)["bytes"], 297 * 3 + blob(300, 1).len());
    assert_eq!(find(&i2)["deleted"], true);
    assert_eq!(find(&i2)["collection_id"], c.as_str());
    let other = h.register(None, PASSWORD).await;
    let doc = get(&h, &other, "/v1/account/export")
        .await
        .expect(StatusCode::OK)
        .body;
    assert!(doc["vault"].as_array().unwrap().is_empty());
}

async fn account_deletion_purges_the_vault<S: Store>(h: Harness<S>) {
    let t = h.register(None, PASSWORD).await;
    let other = h.register(None, PASSWORD).await;
    let (c, i) = (hex_id(), hex_id());
    put(&h, &t, &c, &i, 0, &blob(0, 1), &blob(0, 1))
        .await
        .expect(StatusCode::OK);
    put(&h, &t, &c, &i, 1, &blob(0, 2), &blob(0, 2))
        .await
        .expect(StatusCode::OK);
    put(&h, &other, &c, &i, 0, &blob(0, 3), &blob(0, 3))
        .await
        .expect(StatusCode::OK);
    let proof = h.fresh_auth(&t, PASSWORD).await;
    h.call_fresh(Method::DELETE, "/v1/account", None, &t.access, Some(&proof))
        .await
        .expect(StatusCode::NO_CONTENT);
    let account: Id = t.account_id.parse().unwrap();
    let key = haven_relay::vault::store::VaultKey {
        account,
        collection: c.parse().unwrap(),
        item: i.parse().unwrap(),
    };
    assert!(h.store.vault_item(&key).await.unwrap().is_none());
    assert!(h.store.vault_history(&key, 0, 10).await.unwrap().is_none());
    assert_eq!(h.store.vault_usage(&account).await.unwrap().items, 0);
    assert_eq!(usage(&h, &other).await.0, 1);
}

/// The all-zero collection (where the diary keeps its key bundle, §11.16.1) keeps no history:
/// each write replaces the earlier revisions, so a dump of every vault row holds only the
/// current bundle, not one a replaced password still opens.
async fn the_key_bundle_item_keeps_no_history<S: Store>(h: Harness<S>) {
    let t = h.register(None, PASSWORD).await;
    let zero = "0".repeat(32);
    let blobs: Vec<(Vec<u8>, Vec<u8>)> = (1..=3u8).map(|n| (blob(600, n), blob(0, n))).collect();
    for (expected, (body, meta)) in blobs.iter().enumerate() {
        let r = put(&h, &t, &zero, &zero, expected as u64, body, meta)
            .await
            .expect(StatusCode::OK);
        assert_eq!(r.body["revision"], expected as u64 + 1);
    }
    let hist = get(&h, &t, &format!("{}/history", item_url(&zero, &zero)))
        .await
        .expect(StatusCode::OK);
    let revs = hist.body["revisions"].as_array().unwrap();
    assert_eq!(revs.len(), 1);
    assert_eq!(revs[0]["revision"], 3);
    assert_eq!(revs[0]["body"], b64(&blobs[2].0));
    // Only the current revision is stored and counted.
    let account: Id = t.account_id.parse().unwrap();
    let key = haven_relay::vault::store::VaultKey {
        account,
        collection: zero.parse().unwrap(),
        item: zero.parse().unwrap(),
    };
    let stored = h.store.vault_history(&key, 0, 100).await.unwrap().unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].body.as_deref(), Some(blobs[2].0.as_slice()));
    let current = (blobs[2].0.len() + blobs[2].1.len()) as u64;
    assert_eq!(usage(&h, &t).await, (1, current));
    // A stale write still conflicts; other items of the collection keep no history either,
    // while any other collection keeps every revision.
    put(&h, &t, &zero, &zero, 2, &blobs[0].0, &blobs[0].1)
        .await
        .expect_error(StatusCode::CONFLICT, "revision_conflict");
    let c = hex_id();
    put(&h, &t, &c, &zero, 0, &blobs[0].0, &blobs[0].1)
        .await
        .expect(StatusCode::OK);
    put(&h, &t, &c, &zero, 1, &blobs[1].0, &blobs[1].1)
        .await
        .expect(StatusCode::OK);
    let hist = get(&h, &t, &format!("{}/history", item_url(&c, &zero)))
        .await
        .expect(StatusCode::OK);
    assert_eq!(hist.body["revisions"].as_array().unwrap().len(), 2);
    // A deletion leaves only its tombstone.
    h.call(
        Method::DELETE,
        &format!("{}?expected_revision=3", item_url(&zero, &zero)),
        None,
        Some(&t.access),
    )
    .await
    .expect(StatusCode::OK);
    let stored = h.store.vault_history(&key, 0, 100).await.unwrap().unwrap();
    assert_eq!(stored.len(), 1);
    assert!(stored[0].body.is_none());
}

common::on_both_backends!(
    the_key_bundle_item_keeps_no_history,
    create_update_and_stale_revisions,
    delete_restore_and_history,
    changes_sync_paginated_with_deletions,
    pages_are_bounded_in_bytes,
    bad_input_is_rejected_and_changes_nothing,
    another_accounts_token_sees_and_changes_nothing,
    quotas_give_clear_errors,
    retention_purges_deleted_items_and_expires_old_tokens,
    account_deletion_purges_the_vault,
    export_lists_the_vault,
);

/// Databases written before the rule: the migration drops the stored history of the all-zero
/// collection and recounts the bytes (run again here over rows written the old way).
mod migration {
    use super::*;
    use haven_relay::vault::store::{VaultBlobs, VaultKey, VaultQuota, VaultStore};

    const Q: VaultQuota = VaultQuota {
        max_items: 100,
        max_bytes: 1 << 30,
    };

    /// Writes three revisions of the bundle item and of an ordinary item, then puts back the
    /// bundle's earlier revisions as a relay without the rule had kept them.
    async fn old_rows<S: Store>(
        store: &S,
        insert: impl AsyncFn(&[u8], &[u8], i64, &[u8]),
    ) -> (Id, VaultKey, VaultKey) {
        let account = Id::random();
        let new = haven_relay::accounts::store::NewAccount {
            id: account,
            username_hash: None,
            opaque_record: vec![9u8; 64],
            created_at: 10,
        };
        let dev = haven_relay::accounts::store::DeviceRecord {
            id: Id::random(),
            account_id: account,
            identity_key: vec![7u8; 32],
            name_blob: None,
            created_at: 10,
            number: 0,
        };
        haven_relay::accounts::store::AccountStore::create_account(store, &new, &dev)
            .await
            .unwrap();
        let bundle = VaultKey {
            account,
            collection: Id::from_slice(&[0; 16]).unwrap(),
            item: Id::from_slice(&[0; 16]).unwrap(),
        };
        let other = VaultKey {
            account,
            collection: Id::random(),
            item: Id::random(),
        };
        for key in [&bundle, &other] {
            for rev in 0..3u8 {
                let b = blob(300, rev);
                let blobs = VaultBlobs { body: &b, meta: &b };
                store
                    .vault_put(key, i64::from(rev), blobs, 1, Q)
                    .await
                    .unwrap();
            }
        }
        for rev in 1..=2u8 {
            let b = blob(300, rev - 1);
            insert(account.as_bytes(), &[0; 16], i64::from(rev), &b).await;
        }
        (account, bundle, other)
    }

    async fn check<S: Store>(store: &S, account: Id, bundle: VaultKey, other: VaultKey) {
        assert_eq!(
            store
                .vault_history(&bundle, 0, 10)
                .await
                .unwrap()
                .unwrap()
                .len(),
            1
        );
        assert_eq!(
            store
                .vault_history(&other, 0, 10)
                .await
                .unwrap()
                .unwrap()
                .len(),
            3
        );
        let one = 2 * blob(300, 0).len() as i64;
        assert_eq!(store.vault_usage(&account).await.unwrap().bytes, 4 * one);
    }

    /// Old rows written straight into an engine's tables (three revisions of the bundle, as
    /// before the migration), then that engine's migration run on them: `$store` is the store
    /// (its `pool()` is the engine's pool), `$migration` the migration file.
    macro_rules! drops_the_stored_bundle_history {
        ($store:expr, $migration:literal) => {{
            let store = $store;
            let pool = store.pool().clone();
            let (account, bundle, other) = old_rows(&store, async |a, c, rev, b| {
                sqlx::query(
                    "INSERT INTO vault_revisions (account_id, collection_id, item_id, revision, \
                     body, meta, size_bytes, created_at) VALUES ($1, $2, $2, $3, $4, $4, $5, 1)",
                )
                .bind(a)
                .bind(c)
                .bind(rev)
                .bind(b)
                .bind(2 * b.len() as i64)
                .execute(&pool)
                .await
                .unwrap();
                sqlx::query(
                    "UPDATE vault_accounts SET byte_count = byte_count + $2 WHERE account_id = $1",
                )
                .bind(a)
                .bind(2 * b.len() as i64)
                .execute(&pool)
                .await
                .unwrap();
            })
            .await;
            assert_eq!(
                store
                    .vault_history(&bundle, 0, 10)
                    .await
                    .unwrap()
                    .unwrap()
                    .len(),
                3
            );
            sqlx::raw_sql(include_str!($migration))
                .execute(&pool)
                .await
                .unwrap();
            check(&store, account, bundle, other).await;
        }};
    }

    #[tokio::test]
    async fn sqlite_drops_the_stored_bundle_history() {
        let (store, _guard) = common::sqlite_store().await.unwrap();
        drops_the_stored_bundle_history!(
            store,
            "../../../migrations/sqlite/0014_vault_bundle_history.sql"
        );
    }

    #[tokio::test]
    async fn postgres_drops_the_stored_bundle_history() {
        let Some((store, _guard)) = common::pg_store().await else {
            return;
        };
        drops_the_stored_bundle_history!(
            store,
            "../../../migrations/postgres/0014_vault_bundle_history.sql"
        );
    }
}
