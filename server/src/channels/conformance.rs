//! The conformance suite of [`ChannelStore`](crate::channels::store::ChannelStore) and
//! [`TicketStore`](crate::channels::store::TicketStore), run against every backend.

/// Expands into `#[tokio::test]`s checking [`ChannelStore`] and [`TicketStore`] of a backend
/// (`$make` as for [`store_conformance_tests!`](crate::store_conformance_tests)).
#[macro_export]
macro_rules! channel_store_conformance_tests {
    ($make:path) => {
        mod channel_store_conformance {
            #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
            use $crate::accounts::store::AccountStore;
            use $crate::channels::store::{
                AppendOutcome, ChannelQuota, ChannelStore, NewChannel, TicketStore,
            };
            use $crate::ids::Id;

            fn channel(expires_at: i64) -> NewChannel {
                NewChannel {
                    id: Id::random(),
                    read_hash: [1; 32],
                    write_hash: [2; 32],
                    created_at: 10,
                    expires_at,
                }
            }

            const QUOTA: ChannelQuota = ChannelQuota {
                max_entries: 3,
                max_bytes: 10,
            };

            #[tokio::test]
            async fn append_paginate_quota_and_expiry() {
                let Some((store, _guard)) = $make().await else {
                    return;
                };
                let c = channel(1_000);
                store.create_channel(&c).await.unwrap();
                let read = store.channel(&c.id, 20).await.unwrap().unwrap();
                assert_eq!(
                    (read.read_hash, read.write_hash),
                    (vec![1; 32], vec![2; 32])
                );
                assert_eq!(read.last_seq, 0);
                // The second entry is franked: its commitment is stored with it.
                for (i, body) in [&b"abc"[..], b"de", b"fgh"].iter().enumerate() {
                    let commitment = (i == 1).then_some([7u8; 32]);
                    let out = store
                        .append_entry(&c.id, body, commitment.as_ref(), 30, QUOTA)
                        .await
                        .unwrap();
                    assert_eq!(out, AppendOutcome::Appended(i as i64 + 1));
                }
                let all = store.entries(&c.id, 0, 10).await.unwrap();
                assert_eq!(
                    all.iter()
                        .map(|e| e.franking_commitment)
                        .collect::<Vec<_>>(),
                    vec![None, Some([7; 32]), None]
                );
                // Entry count quota, then byte quota on a fresh channel: nothing stored.
                assert_eq!(
                    store
                        .append_entry(&c.id, b"x", None, 30, QUOTA)
                        .await
                        .unwrap(),
                    AppendOutcome::QuotaExceeded
                );
                let small = channel(1_000);
                store.create_channel(&small).await.unwrap();
                store
                    .append_entry(&small.id, &[0; 8], None, 30, QUOTA)
                    .await
                    .unwrap();
                assert_eq!(
                    store
                        .append_entry(&small.id, &[0; 3], None, 30, QUOTA)
                        .await
                        .unwrap(),
                    AppendOutcome::QuotaExceeded
                );
                assert_eq!(store.entries(&small.id, 0, 10).await.unwrap().len(), 1);
                let page = store.entries(&c.id, 1, 1).await.unwrap();
                assert_eq!(page.len(), 1);
                assert_eq!((page[0].seq, page[0].body.as_slice()), (2, &b"de"[..]));
                assert_eq!(store.entries(&c.id, 3, 10).await.unwrap(), vec![]);
                let unknown = Id::random();
                assert_eq!(
                    store
                        .append_entry(&unknown, b"x", None, 30, QUOTA)
                        .await
                        .unwrap(),
                    AppendOutcome::NotFound
                );
                // Expired: invisible, refuses appends, reaped with its entries.
                assert!(store.channel(&c.id, 1_000).await.unwrap().is_none());
                assert_eq!(
                    store
                        .append_entry(&c.id, b"x", None, 1_000, QUOTA)
                        .await
                        .unwrap(),
                    AppendOutcome::NotFound
                );
                assert_eq!(store.reap_channels(999).await.unwrap(), 0);
                assert_eq!(store.reap_channels(1_000).await.unwrap(), 2);
                assert_eq!(store.entries(&c.id, 0, 10).await.unwrap(), vec![]);
            }

            #[tokio::test]
            async fn concurrent_appends_get_distinct_sequence_numbers() {
                let Some((store, _guard)) = $make().await else {
                    return;
                };
                let c = channel(1_000);
                store.create_channel(&c).await.unwrap();
                let quota = ChannelQuota {
                    max_entries: 1_000,
                    max_bytes: 1 << 20,
                };
                let mut tasks = Vec::new();
                for i in 0..32u8 {
                    let store = store.clone();
                    let id = c.id;
                    tasks.push(tokio::spawn(async move {
                        store.append_entry(&id, &[i], None, 5, quota).await.unwrap()
                    }));
                }
                let mut seqs = Vec::new();
                for t in tasks {
                    match t.await.unwrap() {
                        AppendOutcome::Appended(seq) => seqs.push(seq),
                        other => panic!("{other:?}"),
                    }
                }
                seqs.sort_unstable();
                assert_eq!(seqs, (1..=32).collect::<Vec<i64>>());
            }

            #[tokio::test]
            async fn tickets_are_single_use_and_expire() {
                let Some((store, _guard)) = $make().await else {
                    return;
                };
                let session = $crate::accounts::seed::seed_session(&store, 1, 99)
                    .await
                    .unwrap();
                let account = session.account;
                store.put_ticket(&[5; 32], &session, 50).await.unwrap();
                store.put_ticket(&[6; 32], &session, 50).await.unwrap();
                assert_eq!(
                    store.take_ticket(&[5; 32], 10).await.unwrap(),
                    Some(session)
                );
                assert_eq!(store.take_ticket(&[5; 32], 10).await.unwrap(), None);
                assert_eq!(store.take_ticket(&[7; 32], 10).await.unwrap(), None);
                // Expired: refused (and consumed).
                assert_eq!(store.take_ticket(&[6; 32], 50).await.unwrap(), None);
                store.put_ticket(&[8; 32], &session, 50).await.unwrap();
                assert_eq!(store.reap_tickets(49).await.unwrap(), 0);
                assert_eq!(store.reap_tickets(50).await.unwrap(), 1);
                // Deleting the account removes its tickets.
                store.put_ticket(&[9; 32], &session, 500).await.unwrap();
                assert!(store.delete_account(&account).await.unwrap());
                assert_eq!(store.take_ticket(&[9; 32], 10).await.unwrap(), None);
            }
        }
    };
}
