//! The store conformance suite, run against every backend.

/// Expands into `#[tokio::test]`s that check a [`Store`](crate::store::Store) implementation.
///
/// `$make` is a path to an `async fn() -> Option<(S, G)>` returning a fresh, empty store and a
/// guard that cleans it up when dropped, or `None` (after printing why) to skip the backend.
#[macro_export]
macro_rules! store_conformance_tests {
    ($make:path) => {
        mod store_conformance {
            #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
            use $crate::ids::Id;
            use $crate::store::{
                AccountStore, AuthStateStore, DeviceRecord, DeviceStore, FamilyRecord, LoginState,
                NewAccount, RefreshOutcome, RefreshTokenRecord, SecretBytes, SecretStore, Store,
                StoreError, TokenStore,
            };

            fn device(account: Id, created_at: i64) -> DeviceRecord {
                DeviceRecord {
                    id: Id::random(),
                    account_id: account,
                    identity_key: vec![7u8; 32],
                    name_blob: Some(vec![1, 2, 3]),
                    created_at,
                    number: 1,
                }
            }

            async fn account<S: Store>(store: &S, username: Option<&[u8]>) -> (Id, DeviceRecord) {
                let id = Id::random();
                let dev = device(id, 10);
                let new = NewAccount {
                    id,
                    username_hash: username.map(<[u8]>::to_vec),
                    opaque_record: vec![9u8; 64],
                    created_at: 10,
                };
                store.create_account(&new, &dev).await.unwrap();
                (id, dev)
            }

            async fn session<S: Store>(store: &S, account: Id, device: Id, hash: &[u8]) -> Id {
                let family = FamilyRecord {
                    id: Id::random(),
                    account_id: account,
                    device_id: device,
                    revoked: false,
                    created_at: 20,
                };
                let token = RefreshTokenRecord {
                    token_hash: hash.to_vec(),
                    family_id: family.id,
                    created_at: 20,
                    expires_at: 1_000,
                    used_at: None,
                };
                store.create_family(&family, &token).await.unwrap();
                family.id
            }

            #[tokio::test]
            async fn account_round_trip_and_username_lookup() {
                let Some((store, _guard)) = $make().await else {
                    return;
                };
                let (id, dev) = account(&store, Some(b"hash-a")).await;
                let read = store.account(&id).await.unwrap().unwrap();
                assert_eq!(read.id, id);
                assert_eq!(read.username_hash.as_deref(), Some(&b"hash-a"[..]));
                assert_eq!(read.opaque_record, vec![9u8; 64]);
                assert!(!read.totp_enabled && read.totp_secret.is_none());
                assert_eq!(
                    store.account_by_username_hash(b"hash-a").await.unwrap(),
                    Some(id)
                );
                assert!(store.username_hash_taken(b"hash-a").await.unwrap());
                assert!(!store.username_hash_taken(b"hash-b").await.unwrap());
                assert!(store.account(&Id::random()).await.unwrap().is_none());
                assert_eq!(store.devices(&id).await.unwrap(), vec![dev]);
            }

            #[tokio::test]
            async fn accounts_without_username_and_taken_username() {
                let Some((store, _guard)) = $make().await else {
                    return;
                };
                // Several accounts may have no username at all.
                account(&store, None).await;
                account(&store, None).await;
                account(&store, Some(b"taken")).await;
                let id = Id::random();
                let new = NewAccount {
                    id,
                    username_hash: Some(b"taken".to_vec()),
                    opaque_record: vec![1],
                    created_at: 1,
                };
                let err = store
                    .create_account(&new, &device(id, 1))
                    .await
                    .unwrap_err();
                assert!(matches!(err, StoreError::Conflict), "{err:?}");
                // The failed transaction left no device behind.
                assert!(store.account(&id).await.unwrap().is_none());
                assert!(store.devices(&id).await.unwrap().is_empty());
            }

            #[tokio::test]
            async fn device_limit_rename_and_delete() {
                let Some((store, _guard)) = $make().await else {
                    return;
                };
                let (a, first) = account(&store, None).await;
                let (b, _) = account(&store, None).await;
                let mut second = device(a, 11);
                second.number = store.create_device(&second, 2).await.unwrap();
                assert_eq!(second.number, 2);
                let err = store.create_device(&device(a, 12), 2).await.unwrap_err();
                assert!(matches!(err, StoreError::LimitReached), "{err:?}");
                assert_eq!(store.devices(&a).await.unwrap().len(), 2);
                // A duplicate id is a conflict, not a silent overwrite.
                let err = store.create_device(&second, 9).await.unwrap_err();
                assert!(matches!(err, StoreError::Conflict), "{err:?}");

                assert!(
                    store
                        .set_device_name(&a, &second.id, Some(b"new"))
                        .await
                        .unwrap()
                );
                let read = store.device(&a, &second.id).await.unwrap().unwrap();
                assert_eq!(read.name_blob.as_deref(), Some(&b"new"[..]));
                assert!(store.set_device_name(&a, &second.id, None).await.unwrap());
                assert_eq!(
                    store
                        .device(&a, &second.id)
                        .await
                        .unwrap()
                        .unwrap()
                        .name_blob,
                    None
                );
                // Another account can neither see, rename nor delete it.
                assert!(store.device(&b, &second.id).await.unwrap().is_none());
                assert!(
                    !store
                        .set_device_name(&b, &second.id, Some(b"x"))
                        .await
                        .unwrap()
                );
                assert!(!store.delete_device(&b, &second.id).await.unwrap());
                assert!(store.delete_device(&a, &second.id).await.unwrap());
                assert!(!store.delete_device(&a, &second.id).await.unwrap());
                assert_eq!(store.devices(&a).await.unwrap(), vec![first]);
            }

            #[tokio::test]
            async fn refresh_rotation_and_reuse_revokes_family() {
                let Some((store, _guard)) = $make().await else {
                    return;
                };
                let (a, dev) = account(&store, None).await;
                let fam = session(&store, a, dev.id, b"t1").await;
                assert!(store.session_valid(&a, &dev.id, &fam).await.unwrap());
                let out = store.rotate_refresh(b"t1", b"t2", 30, 2_000).await.unwrap();
                let RefreshOutcome::Rotated(family) = out else {
                    panic!("{out:?}")
                };
                assert_eq!(
                    (family.id, family.account_id, family.device_id),
                    (fam, a, dev.id)
                );
                // Spending t1 again is reuse: the family (and so t2) dies.
                let out = store.rotate_refresh(b"t1", b"t3", 31, 2_000).await.unwrap();
                assert_eq!(out, RefreshOutcome::Reused);
                assert!(!store.session_valid(&a, &dev.id, &fam).await.unwrap());
                let out = store.rotate_refresh(b"t2", b"t4", 32, 2_000).await.unwrap();
                assert_eq!(out, RefreshOutcome::Invalid);
                assert_eq!(
                    store
                        .rotate_refresh(b"nope", b"t5", 32, 2_000)
                        .await
                        .unwrap(),
                    RefreshOutcome::Invalid
                );
                let tokens = store.refresh_tokens(&a).await.unwrap();
                assert_eq!(tokens.len(), 2);
                assert!(store.families(&a).await.unwrap()[0].revoked);
            }

            #[tokio::test]
            async fn expired_refresh_and_revoked_or_unlinked_sessions() {
                let Some((store, _guard)) = $make().await else {
                    return;
                };
                let (a, dev) = account(&store, None).await;
                let fam = session(&store, a, dev.id, b"e1").await;
                assert_eq!(
                    store
                        .rotate_refresh(b"e1", b"e2", 1_000, 3_000)
                        .await
                        .unwrap(),
                    RefreshOutcome::Invalid
                );
                assert!(store.revoke_family(&fam).await.unwrap());
                assert!(!store.session_valid(&a, &dev.id, &fam).await.unwrap());

                let (b, dev_b) = account(&store, None).await;
                let fam_b = session(&store, b, dev_b.id, b"b1").await;
                // Another account's ids never validate.
                assert!(!store.session_valid(&a, &dev_b.id, &fam_b).await.unwrap());
                assert!(store.session_valid(&b, &dev_b.id, &fam_b).await.unwrap());
                assert!(store.delete_device(&b, &dev_b.id).await.unwrap());
                assert!(!store.session_valid(&b, &dev_b.id, &fam_b).await.unwrap());
                assert!(store.families(&b).await.unwrap().is_empty());
            }

            #[tokio::test]
            async fn auth_states_are_single_use_and_expire() {
                let Some((store, _guard)) = $make().await else {
                    return;
                };
                let (a, _) = account(&store, None).await;
                let (r, acc) = (Id::random(), Id::random());
                store.put_registration(&r, &acc, 100).await.unwrap();
                assert_eq!(store.take_registration(&r, 50).await.unwrap(), Some(acc));
                assert_eq!(store.take_registration(&r, 50).await.unwrap(), None);
                store.put_registration(&r, &acc, 100).await.unwrap();
                assert_eq!(store.take_registration(&r, 100).await.unwrap(), None);

                let l = Id::random();
                let state = LoginState {
                    account_id: Some(a),
                    state: SecretBytes::new(vec![5; 8]),
                };
                store.put_login(&l, &state, 100).await.unwrap();
                let got = store.take_login(&l, 99).await.unwrap().unwrap();
                assert_eq!(got.account_id, Some(a));
                assert_eq!(got.state.expose(), &[5; 8]);
                assert!(store.take_login(&l, 99).await.unwrap().is_none());

                let fake = LoginState {
                    account_id: None,
                    state: SecretBytes::new(vec![6]),
                };
                store.put_login(&l, &fake, 100).await.unwrap();
                assert!(store.take_login(&l, 150).await.unwrap().is_none());

                store.put_login(&Id::random(), &fake, 10).await.unwrap();
                store
                    .put_registration(&Id::random(), &acc, 10)
                    .await
                    .unwrap();
                store.put_login(&Id::random(), &fake, 500).await.unwrap();
                assert_eq!(store.purge_expired(20).await.unwrap(), 2);
            }

            #[tokio::test]
            async fn totp_steps_are_never_accepted_twice() {
                let Some((store, _guard)) = $make().await else {
                    return;
                };
                let (a, _) = account(&store, None).await;
                // No secret yet: nothing to claim.
                assert!(!store.claim_totp_step(&a, 5).await.unwrap());
                assert!(store.set_totp_pending(&a, b"secret-1").await.unwrap());
                assert!(store.claim_totp_step(&a, 5).await.unwrap());
                assert!(!store.claim_totp_step(&a, 5).await.unwrap());
                assert!(!store.claim_totp_step(&a, 4).await.unwrap());
                assert!(store.claim_totp_step(&a, 6).await.unwrap());
                store.set_totp_enabled(&a, true).await.unwrap();
                let read = store.account(&a).await.unwrap().unwrap();
                assert!(read.totp_enabled);
                assert_eq!(read.totp_secret.unwrap().expose(), b"secret-1");
                assert_eq!(read.totp_last_step, Some(6));
                // While enabled, setup cannot silently replace the secret.
                assert!(!store.set_totp_pending(&a, b"secret-2").await.unwrap());
                store.set_totp_enabled(&a, false).await.unwrap();
                let read = store.account(&a).await.unwrap().unwrap();
                assert!(!read.totp_enabled && read.totp_secret.is_none());
            }

            #[tokio::test]
            async fn secrets_converge_on_first_value() {
                let Some((store, _guard)) = $make().await else {
                    return;
                };
                let first = store.secret_or_insert("pepper", b"one").await.unwrap();
                let second = store.secret_or_insert("pepper", b"two").await.unwrap();
                assert_eq!(first.expose(), b"one");
                assert_eq!(second.expose(), b"one");
                let other = store.secret_or_insert("jwt", b"three").await.unwrap();
                assert_eq!(other.expose(), b"three");
            }

            #[tokio::test]
            async fn deleting_an_account_removes_every_row() {
                let Some((store, _guard)) = $make().await else {
                    return;
                };
                let (a, dev) = account(&store, Some(b"gone")).await;
                let (b, dev_b) = account(&store, None).await;
                store.create_device(&device(a, 12), 5).await.unwrap();
                session(&store, a, dev.id, b"d1").await;
                session(&store, b, dev_b.id, b"d2").await;
                let state = LoginState {
                    account_id: Some(a),
                    state: SecretBytes::new(vec![1]),
                };
                let login = Id::random();
                store.put_login(&login, &state, 100).await.unwrap();
                store.set_totp_pending(&a, b"s").await.unwrap();

                assert!(store.delete_account(&a).await.unwrap());
                assert!(!store.delete_account(&a).await.unwrap());
                assert!(store.account(&a).await.unwrap().is_none());
                assert!(store.devices(&a).await.unwrap().is_empty());
                assert!(store.families(&a).await.unwrap().is_empty());
                assert!(store.refresh_tokens(&a).await.unwrap().is_empty());
                assert!(store.take_login(&login, 0).await.unwrap().is_none());
                assert!(!store.username_hash_taken(b"gone").await.unwrap());
                // The other account is untouched.
                assert_eq!(store.devices(&b).await.unwrap().len(), 1);
                assert_eq!(store.refresh_tokens(&b).await.unwrap().len(), 1);
            }

            #[tokio::test]
            async fn ping_and_tables() {
                let Some((store, _guard)) = $make().await else {
                    return;
                };
                store.ping().await.unwrap();
                let tables = store.table_names().await.unwrap();
                for t in [
                    "accounts",
                    "devices",
                    "token_families",
                    "refresh_tokens",
                    "login_states",
                ] {
                    assert!(tables.iter().any(|n| n == t), "{t} missing from {tables:?}");
                }
            }
        }
    };
}
