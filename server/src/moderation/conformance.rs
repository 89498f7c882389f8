//! The audit and moderation store conformance suite, run against every backend.

/// Expands into `#[tokio::test]`s that check the
/// [`AuditStore`](crate::audit::store::AuditStore) and
/// [`ModerationStore`](crate::moderation::store::ModerationStore) of a backend; `$make` as for
/// [`store_conformance_tests!`](crate::store_conformance_tests).
#[macro_export]
macro_rules! moderation_store_conformance_tests {
    ($make:path) => {
        mod moderation_store_conformance {
            #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
            use $crate::accounts::store::{AccountStore, DeviceRecord, DeviceStore, NewAccount};
            use $crate::audit::store::{AuditQuery, AuditStore, NewAuditEvent};
            use $crate::audit::{AuditDetail, AuditKind};
            use $crate::db::Store;
            use $crate::ids::Id;
            use $crate::moderation::store::{
                AddressBanRecord, ModerationStore, NewReport, SanctionRecord,
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
                    identity_key: vec![7u8; 64],
                    name_blob: None,
                    created_at: 10,
                    number: 0,
                };
                store.create_account(&new, &dev).await.unwrap();
                id
            }

            fn report(id: Id, attributed: bool, created_at: i64) -> NewReport {
                NewReport {
                    id,
                    reporter: Id::random(),
                    sender_account: Id::random(),
                    sender_device: 3,
                    destination: vec![1; 21],
                    message_seq: 17,
                    message_time: 100,
                    attributed,
                    sealed: vec![0xAB; 40],
                    created_at,
                }
            }

            #[tokio::test]
            async fn audit_events_append_filter_page_and_reap() {
                let Some((store, _guard)) = $make().await else {
                    return;
                };
                let subject = Id::random();
                for (i, kind) in [
                    AuditKind::LoginFailed,
                    AuditKind::ReportFiled,
                    AuditKind::LoginFailed,
                ]
                .into_iter()
                .enumerate()
                {
                    store
                        .record_audit(&NewAuditEvent {
                            kind,
                            at: 100 + i as i64,
                            subject: Some(subject),
                            actor: None,
                            detail: AuditDetail::none().reason("invalid_credentials").count(2),
                        })
                        .await
                        .unwrap();
                }
                let all = AuditQuery {
                    since: 0,
                    kind: None,
                    after: 0,
                    limit: 10,
                };
                let events = store.audit_events(&all).await.unwrap();
                assert_eq!(events.len(), 3);
                assert!(events.windows(2).all(|w| w[0].id < w[1].id));
                assert_eq!(events[0].kind, "login_failed");
                assert_eq!(events[0].subject, Some(subject));
                assert_eq!(events[0].detail["reason"], "invalid_credentials");
                assert_eq!(events[0].detail["count"], 2);
                let failed = store
                    .audit_events(&AuditQuery {
                        kind: Some(AuditKind::LoginFailed),
                        ..all.clone()
                    })
                    .await
                    .unwrap();
                assert_eq!(failed.len(), 2);
                let page = store
                    .audit_events(&AuditQuery {
                        after: events[0].id,
                        limit: 1,
                        ..all.clone()
                    })
                    .await
                    .unwrap();
                assert_eq!(page[0].id, events[1].id);
                let since = store
                    .audit_events(&AuditQuery {
                        since: 102,
                        ..all.clone()
                    })
                    .await
                    .unwrap();
                assert_eq!(since.len(), 1);
                assert_eq!(store.reap_audit(101).await.unwrap(), 1);
                assert_eq!(store.audit_events(&all).await.unwrap().len(), 2);
            }

            #[tokio::test]
            async fn reports_are_stored_once_upgraded_decided_and_paged() {
                let Some((store, _guard)) = $make().await else {
                    return;
                };
                let first = report(Id::random(), false, 50);
                assert!(store.insert_report(&first).await.unwrap());
                assert!(!store.insert_report(&first).await.unwrap());
                let mut better = first.clone();
                better.attributed = true;
                better.sealed = vec![0xCD; 40];
                assert!(store.upgrade_report(&better).await.unwrap());
                assert!(!store.upgrade_report(&better).await.unwrap());
                let stored = store.report(&first.id).await.unwrap().unwrap();
                assert!(stored.report.attributed);
                assert_eq!(stored.report.sealed, better.sealed);
                assert_eq!(stored.report.sender_device, 3);
                assert_eq!(stored.status, "pending");
                for at in [60, 60, 70] {
                    store
                        .insert_report(&report(Id::random(), true, at))
                        .await
                        .unwrap();
                }
                assert_eq!(store.count_reports("pending").await.unwrap(), 4);
                let start = (i64::MIN, Id::from([0u8; 16]));
                let page = store.reports("pending", start, 2).await.unwrap();
                assert_eq!(page.len(), 2);
                let last = &page[1].report;
                let rest = store
                    .reports("pending", (last.created_at, last.id), 10)
                    .await
                    .unwrap();
                assert_eq!(rest.len(), 2);
                assert!(rest.iter().all(|r| r.report.id != page[0].report.id));
                let by = Id::random();
                assert!(
                    store
                        .decide_report(&first.id, "warn", Some(by), 80)
                        .await
                        .unwrap()
                );
                assert!(
                    !store
                        .decide_report(&first.id, "ban", Some(by), 81)
                        .await
                        .unwrap()
                );
                let decided = store.report(&first.id).await.unwrap().unwrap();
                assert_eq!(decided.decision.as_deref(), Some("warn"));
                assert_eq!(decided.decided_by, Some(by));
                assert_eq!(store.reports("decided", start, 10).await.unwrap().len(), 1);
                // Decided reports are reaped after retention; pending ones stay.
                assert_eq!(store.reap_moderation(0, 81, 0).await.unwrap(), 1);
                assert!(store.report(&first.id).await.unwrap().is_none());
                assert_eq!(store.reports("pending", start, 10).await.unwrap().len(), 3);
            }

            #[tokio::test]
            async fn sanctions_and_address_bans() {
                let Some((store, _guard)) = $make().await else {
                    return;
                };
                let a = account(&store).await;
                let b = account(&store).await;
                let sanction = |account, banned, expires_at| SanctionRecord {
                    account,
                    banned,
                    expires_at,
                    created_at: 10,
                };
                assert!(
                    !store
                        .put_sanction(&sanction(Id::random(), true, None))
                        .await
                        .unwrap()
                );
                assert!(
                    store
                        .put_sanction(&sanction(a, false, Some(100)))
                        .await
                        .unwrap()
                );
                assert!(store.put_sanction(&sanction(a, true, None)).await.unwrap());
                assert!(
                    store
                        .put_sanction(&sanction(b, false, Some(100)))
                        .await
                        .unwrap()
                );
                let now = store.sanctions(50).await.unwrap();
                assert_eq!(now.len(), 2);
                assert!(
                    now.iter()
                        .any(|s| s.account == a && s.banned && s.expires_at.is_none())
                );
                assert_eq!(store.sanctions(100).await.unwrap().len(), 1);
                assert!(store.remove_sanction(&a).await.unwrap());
                assert!(!store.remove_sanction(&a).await.unwrap());
                // Deleting the account removes its sanction.
                store.delete_account(&b).await.unwrap();
                assert!(store.sanctions(50).await.unwrap().is_empty());

                let ban = |hash: u8, expires_at| AddressBanRecord {
                    prefix_hash: [hash; 32],
                    expires_at,
                    created_at: 10,
                };
                store.put_address_ban(&ban(1, None)).await.unwrap();
                store.put_address_ban(&ban(2, Some(100))).await.unwrap();
                store.put_address_ban(&ban(2, Some(200))).await.unwrap();
                assert_eq!(store.address_bans(150).await.unwrap().len(), 2);
                assert_eq!(store.reap_moderation(250, 0, 0).await.unwrap(), 1);
                assert_eq!(store.address_bans(0).await.unwrap().len(), 1);
                assert!(store.remove_address_ban(&[1; 32]).await.unwrap());
                assert!(!store.remove_address_ban(&[1; 32]).await.unwrap());

                // The identity key of an unlinked device is reaped once older than the window.
                let c = account(&store).await;
                let device = store.devices(&c).await.unwrap().remove(0);
                assert!(store.delete_device(&c, &device.id, 300).await.unwrap());
                assert!(
                    store
                        .retired_identity_key(&c, 1, 0)
                        .await
                        .unwrap()
                        .is_some()
                );
                assert_eq!(store.reap_moderation(0, 0, 300).await.unwrap(), 0);
                assert_eq!(store.reap_moderation(0, 0, 301).await.unwrap(), 1);
                assert_eq!(store.retired_identity_key(&c, 1, 0).await.unwrap(), None);
            }

            #[tokio::test]
            async fn purge_without_mail_is_empty() {
                let Some((store, _guard)) = $make().await else {
                    return;
                };
                let a = account(&store).await;
                let purged = store.purge_account_mail(&a, 100).await.unwrap();
                assert_eq!((purged.envelopes, purged.blobs), (0, 0));
            }
        }
    };
}
