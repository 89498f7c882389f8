//! The vault's store conformance suite, run against every backend.

/// Expands into `#[tokio::test]`s that check a [`VaultStore`](crate::vault::store::VaultStore)
/// implementation; `$make` as for [`store_conformance_tests!`](crate::store_conformance_tests).
#[macro_export]
macro_rules! vault_conformance_tests {
    ($make:path) => {
        mod vault_conformance {
            #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
            use $crate::accounts::store::{AccountStore, DeviceRecord, NewAccount};
            use $crate::db::Store;
            use $crate::ids::Id;
            use $crate::vault::store::{
                VaultBlobs, VaultKey, VaultQuota, VaultStore, VaultUsage, VaultWriteOutcome,
            };

            const Q: VaultQuota = VaultQuota {
                max_items: 1_000,
                max_bytes: 1 << 30,
            };

            async fn account<S: Store>(store: &S) -> Id {
                let id = Id::random();
                let new = NewAccount {
                    id,
                    username_hash: None,
                    opaque_record: vec![9u8; 64],
                    created_at: 10,
                };
                let dev = DeviceRecord {
                    id: Id::random(),
                    account_id: id,
                    identity_key: vec![7u8; 32],
                    name_blob: None,
                    created_at: 10,
                    number: 0,
                };
                store.create_account(&new, &dev).await.unwrap();
                id
            }

            fn key(account: Id, collection: Id) -> VaultKey {
                VaultKey {
                    account,
                    collection,
                    item: Id::random(),
                }
            }

            fn blobs<'a>(body: &'a [u8], meta: &'a [u8]) -> VaultBlobs<'a> {
                VaultBlobs { body, meta }
            }

            fn head(out: VaultWriteOutcome) -> $crate::vault::store::VaultHead {
                match out {
                    VaultWriteOutcome::Written(h) => h,
                    other => panic!("expected a write, got {other:?}"),
                }
            }

            #[tokio::test]
            async fn put_get_update_and_conflicts() {
                let Some((store, _guard)) = $make().await else {
                    return;
                };
                let a = account(&store).await;
                let k = key(a, Id::random());
                // Updating an item that does not exist reports current revision 0.
                assert_eq!(
                    store
                        .vault_put(&k, 3, blobs(b"b", b"m"), 100, Q)
                        .await
                        .unwrap(),
                    VaultWriteOutcome::RevisionMismatch {
                        current_revision: 0,
                        deleted: false
                    }
                );
                let h1 = head(
                    store
                        .vault_put(&k, 0, blobs(b"b1", b"m1"), 100, Q)
                        .await
                        .unwrap(),
                );
                assert_eq!((h1.revision, h1.deleted, h1.created_at), (1, false, 100));
                // Creating it again, or updating from a stale revision: 409 with revision 1.
                for expected in [0, 2, 7] {
                    assert_eq!(
                        store
                            .vault_put(&k, expected, blobs(b"x", b"x"), 200, Q)
                            .await
                            .unwrap(),
                        VaultWriteOutcome::RevisionMismatch {
                            current_revision: 1,
                            deleted: false
                        }
                    );
                }
                let h2 = head(
                    store
                        .vault_put(&k, 1, blobs(b"b2", b"m2"), 200, Q)
                        .await
                        .unwrap(),
                );
                assert_eq!((h2.revision, h2.created_at, h2.updated_at), (2, 100, 200));
                assert!(h2.seq > h1.seq);
                let item = store.vault_item(&k).await.unwrap().unwrap();
                assert_eq!(item.revision, 2);
                assert_eq!(item.body.as_deref(), Some(&b"b2"[..]));
                assert_eq!(item.meta.as_deref(), Some(&b"m2"[..]));
                assert_eq!(item.seq, h2.seq);
                // Another account (or another collection) does not see it.
                let b = account(&store).await;
                assert!(
                    store
                        .vault_item(&VaultKey { account: b, ..k })
                        .await
                        .unwrap()
                        .is_none()
                );
                assert!(
                    store
                        .vault_item(&VaultKey {
                            collection: Id::random(),
                            ..k
                        })
                        .await
                        .unwrap()
                        .is_none()
                );
                // Failed writes changed nothing, not even the sequence.
                let usage = store.vault_usage(&a).await.unwrap();
                assert_eq!(
                    usage,
                    VaultUsage {
                        items: 1,
                        bytes: 8,
                        last_seq: h2.seq
                    }
                );
                let history = store.vault_history(&k, 0, 10).await.unwrap().unwrap();
                assert_eq!(history.len(), 2);
                assert_eq!(history[0].body.as_deref(), Some(&b"b1"[..]));
                assert_eq!(history[1].revision, 2);
                assert_eq!(
                    store.vault_history(&k, 1, 10).await.unwrap().unwrap().len(),
                    1
                );
                assert_eq!(
                    store.vault_history(&k, 0, 1).await.unwrap().unwrap().len(),
                    1
                );
                assert!(
                    store
                        .vault_history(&key(a, k.collection), 0, 10)
                        .await
                        .unwrap()
                        .is_none()
                );
            }

            #[tokio::test]
            async fn delete_restore_and_tombstones() {
                let Some((store, _guard)) = $make().await else {
                    return;
                };
                let a = account(&store).await;
                let k = key(a, Id::random());
                assert_eq!(
                    store.vault_delete(&k, 1, 100).await.unwrap(),
                    VaultWriteOutcome::NotFound
                );
                head(
                    store
                        .vault_put(&k, 0, blobs(b"b1", b"m1"), 100, Q)
                        .await
                        .unwrap(),
                );
                assert_eq!(
                    store
                        .vault_restore(&k, 1, blobs(b"r", b"r"), 100, Q)
                        .await
                        .unwrap(),
                    VaultWriteOutcome::ItemNotDeleted {
                        current_revision: 1
                    }
                );
                assert_eq!(
                    store.vault_delete(&k, 0, 100).await.unwrap(),
                    VaultWriteOutcome::RevisionMismatch {
                        current_revision: 1,
                        deleted: false
                    }
                );
                let d = head(store.vault_delete(&k, 1, 150).await.unwrap());
                assert_eq!((d.revision, d.deleted), (2, true));
                let item = store.vault_item(&k).await.unwrap().unwrap();
                assert!(item.deleted && item.body.is_none() && item.meta.is_none());
                // A deleted item can neither be updated nor deleted again.
                assert_eq!(
                    store
                        .vault_put(&k, 2, blobs(b"x", b"x"), 160, Q)
                        .await
                        .unwrap(),
                    VaultWriteOutcome::ItemDeleted {
                        current_revision: 2
                    }
                );
                assert_eq!(
                    store.vault_delete(&k, 2, 160).await.unwrap(),
                    VaultWriteOutcome::ItemDeleted {
                        current_revision: 2
                    }
                );
                assert_eq!(
                    store
                        .vault_put(&k, 0, blobs(b"x", b"x"), 160, Q)
                        .await
                        .unwrap(),
                    VaultWriteOutcome::RevisionMismatch {
                        current_revision: 2,
                        deleted: true
                    }
                );
                let r = head(
                    store
                        .vault_restore(&k, 2, blobs(b"b3", b"m3"), 170, Q)
                        .await
                        .unwrap(),
                );
                assert_eq!((r.revision, r.deleted), (3, false));
                let history = store.vault_history(&k, 0, 10).await.unwrap().unwrap();
                let shape: Vec<(i64, bool)> = history
                    .iter()
                    .map(|r| (r.revision, r.body.is_none()))
                    .collect();
                assert_eq!(shape, [(1, false), (2, true), (3, false)]);
                assert_eq!(store.vault_usage(&a).await.unwrap().bytes, 8);
            }

            #[tokio::test]
            async fn changes_are_ordered_paginated_and_scoped() {
                let Some((store, _guard)) = $make().await else {
                    return;
                };
                let a = account(&store).await;
                let c = Id::random();
                let other = key(a, Id::random());
                head(
                    store
                        .vault_put(&other, 0, blobs(b"o", b"o"), 1, Q)
                        .await
                        .unwrap(),
                );
                let keys: Vec<VaultKey> = (0..5).map(|_| key(a, c)).collect();
                for k in &keys {
                    head(
                        store
                            .vault_put(k, 0, blobs(b"b", b"m"), 1, Q)
                            .await
                            .unwrap(),
                    );
                }
                head(
                    store
                        .vault_put(&keys[0], 1, blobs(b"b", b"m"), 2, Q)
                        .await
                        .unwrap(),
                );
                head(store.vault_delete(&keys[1], 1, 2).await.unwrap());
                let all = store.vault_changes(&a, &c, 0, 100).await.unwrap();
                let order: Vec<Id> = all.items.iter().map(|i| i.item_id).collect();
                assert_eq!(
                    order,
                    [
                        keys[2].item,
                        keys[3].item,
                        keys[4].item,
                        keys[0].item,
                        keys[1].item
                    ]
                );
                assert!(all.items.windows(2).all(|w| w[0].seq < w[1].seq));
                assert!(all.items[4].deleted && all.items[4].body.is_none());
                assert_eq!(all.purged_seq, 0);
                // Paging with the last seq seen resumes exactly after it.
                let first = store.vault_changes(&a, &c, 0, 2).await.unwrap();
                assert_eq!(first.items.len(), 2);
                let rest = store
                    .vault_changes(&a, &c, first.items[1].seq, 100)
                    .await
                    .unwrap();
                assert_eq!(rest.items.len(), 3);
                assert_eq!(rest.items[0].item_id, keys[4].item);
                let b = account(&store).await;
                assert!(
                    store
                        .vault_changes(&b, &c, 0, 100)
                        .await
                        .unwrap()
                        .items
                        .is_empty()
                );
            }

            #[tokio::test]
            async fn quotas_refuse_and_change_nothing() {
                let Some((store, _guard)) = $make().await else {
                    return;
                };
                let a = account(&store).await;
                let c = Id::random();
                let q = VaultQuota {
                    max_items: 2,
                    max_bytes: 20,
                };
                let k1 = key(a, c);
                head(
                    store
                        .vault_put(&k1, 0, blobs(&[1; 4], &[1; 4]), 1, q)
                        .await
                        .unwrap(),
                );
                head(
                    store
                        .vault_put(&key(a, c), 0, blobs(&[1; 2], &[1; 2]), 1, q)
                        .await
                        .unwrap(),
                );
                let before = store.vault_usage(&a).await.unwrap();
                assert_eq!((before.items, before.bytes), (2, 12));
                let k3 = key(a, c);
                assert_eq!(
                    store
                        .vault_put(&k3, 0, blobs(&[1], &[1]), 1, q)
                        .await
                        .unwrap(),
                    VaultWriteOutcome::ItemQuota
                );
                assert!(store.vault_item(&k3).await.unwrap().is_none());
                assert_eq!(
                    store
                        .vault_put(&k1, 1, blobs(&[1; 5], &[1; 4]), 1, q)
                        .await
                        .unwrap(),
                    VaultWriteOutcome::ByteQuota
                );
                assert_eq!(store.vault_item(&k1).await.unwrap().unwrap().revision, 1);
                assert_eq!(store.vault_usage(&a).await.unwrap(), before);
                // A tombstone costs nothing, so deleting is always possible.
                head(store.vault_delete(&k1, 1, 1).await.unwrap());
                assert_eq!(store.vault_usage(&a).await.unwrap().bytes, before.bytes);
            }

            #[tokio::test]
            async fn purge_removes_old_tombstones_and_marks_tokens() {
                let Some((store, _guard)) = $make().await else {
                    return;
                };
                let a = account(&store).await;
                let c = Id::random();
                let old = key(a, c);
                let recent = key(a, c);
                let live = key(a, c);
                head(
                    store
                        .vault_put(&old, 0, blobs(&[1; 10], &[1; 10]), 100, Q)
                        .await
                        .unwrap(),
                );
                head(
                    store
                        .vault_put(&old, 1, blobs(&[1; 10], &[1; 10]), 100, Q)
                        .await
                        .unwrap(),
                );
                head(
                    store
                        .vault_put(&recent, 0, blobs(&[1; 3], &[1; 3]), 100, Q)
                        .await
                        .unwrap(),
                );
                head(
                    store
                        .vault_put(&live, 0, blobs(&[1; 1], &[1; 1]), 100, Q)
                        .await
                        .unwrap(),
                );
                let tomb = head(store.vault_delete(&old, 2, 1_000).await.unwrap());
                head(store.vault_delete(&recent, 1, 5_000).await.unwrap());
                assert_eq!(store.vault_purge_deleted(999).await.unwrap(), 0);
                assert_eq!(store.vault_purge_deleted(1_000).await.unwrap(), 1);
                assert!(store.vault_item(&old).await.unwrap().is_none());
                assert!(store.vault_history(&old, 0, 10).await.unwrap().is_none());
                assert!(store.vault_item(&recent).await.unwrap().unwrap().deleted);
                let usage = store.vault_usage(&a).await.unwrap();
                assert_eq!((usage.items, usage.bytes), (2, 8));
                let changes = store.vault_changes(&a, &c, 0, 100).await.unwrap();
                assert_eq!(changes.purged_seq, tomb.seq);
                assert_eq!(changes.items.len(), 2);
                // The id is free again.
                head(
                    store
                        .vault_put(&old, 0, blobs(b"n", b"n"), 6_000, Q)
                        .await
                        .unwrap(),
                );
            }

            #[tokio::test]
            async fn deleting_the_account_purges_its_vault() {
                let Some((store, _guard)) = $make().await else {
                    return;
                };
                let a = account(&store).await;
                let b = account(&store).await;
                let c = Id::random();
                let ka = key(a, c);
                let kb = key(b, c);
                head(
                    store
                        .vault_put(&ka, 0, blobs(b"x", b"x"), 1, Q)
                        .await
                        .unwrap(),
                );
                head(
                    store
                        .vault_put(&kb, 0, blobs(b"y", b"y"), 1, Q)
                        .await
                        .unwrap(),
                );
                head(store.vault_delete(&ka, 1, 1).await.unwrap());
                assert!(store.delete_account(&a).await.unwrap());
                assert!(store.vault_item(&ka).await.unwrap().is_none());
                assert!(store.vault_history(&ka, 0, 10).await.unwrap().is_none());
                assert_eq!(store.vault_usage(&a).await.unwrap(), VaultUsage::default());
                assert!(store.vault_item(&kb).await.unwrap().is_some());
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn concurrent_writers_one_winner_and_ordered_seqs() {
                let Some((store, _guard)) = $make().await else {
                    return;
                };
                let a = account(&store).await;
                let c = Id::random();
                let k = key(a, c);
                head(
                    store
                        .vault_put(&k, 0, blobs(b"b", b"m"), 1, Q)
                        .await
                        .unwrap(),
                );
                let mut tasks = Vec::new();
                for i in 0..8u8 {
                    let store = store.clone();
                    tasks.push(tokio::spawn(async move {
                        store
                            .vault_put(&k, 1, blobs(&[i], &[i]), 2, Q)
                            .await
                            .unwrap()
                    }));
                }
                let mut wins = 0;
                for t in tasks {
                    match t.await.unwrap() {
                        VaultWriteOutcome::Written(h) => {
                            wins += 1;
                            assert_eq!(h.revision, 2);
                        }
                        VaultWriteOutcome::RevisionMismatch {
                            current_revision: 2,
                            ..
                        } => {}
                        other => panic!("{other:?}"),
                    }
                }
                assert_eq!(wins, 1);
                // Many items written at once get distinct sequence numbers.
                let mut tasks = Vec::new();
                for _ in 0..8 {
                    let store = store.clone();
                    tasks.push(tokio::spawn(async move {
                        store
                            .vault_put(&key(a, c), 0, blobs(b"b", b"m"), 3, Q)
                            .await
                            .unwrap()
                    }));
                }
                let mut seqs = Vec::new();
                for t in tasks {
                    seqs.push(head(t.await.unwrap()).seq);
                }
                seqs.sort_unstable();
                seqs.dedup();
                assert_eq!(seqs.len(), 8);
                assert_eq!(store.vault_usage(&a).await.unwrap().items, 9);
                assert_eq!(
                    store
                        .vault_changes(&a, &c, 0, 100)
                        .await
                        .unwrap()
                        .items
                        .len(),
                    9
                );
            }
        }
    };
}
