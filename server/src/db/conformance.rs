//! The store conformance suite, run against every backend.

/// Expands into `#[tokio::test]`s that check a [`Store`](crate::db::Store) implementation.
///
/// `$make` is a path to an `async fn() -> Option<(S, G)>` returning a fresh, empty store and a
/// guard that cleans it up when dropped, or `None` (after printing why) to skip the backend.
#[macro_export]
macro_rules! store_conformance_tests {
    ($make:path) => {
        mod store_conformance {
            #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
            use $crate::error::DeviceMismatch;
            use $crate::ids::Id;
            use $crate::accounts::store::{AccountStore, AuthStateStore, DeviceRecord, DeviceStore, FamilyRecord, LoginPurpose, LoginState, NewAccount, RefreshOutcome, RefreshTokenRecord, TokenStore};
use $crate::mail::store::{Delivery, DeliveryOutcome, DeviceListCheck, MailboxStore, NewEnvelope, QueueLimits, SharedPayload};
use $crate::accounts::credentials::{CredentialChange, CredentialStore};
use $crate::keys::store::{KeyStore, KeyUpload, PublicPreKey, UploadOutcome};
use $crate::db::error::{SecretBytes, StoreError};
use $crate::secrets::SecretStore;
use $crate::db::Store;

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
                assert!(!store.delete_device(&b, &second.id, 50).await.unwrap());
                assert_eq!(store.retired_identity_key(&a, 2, 0).await.unwrap(), None);
                assert!(store.delete_device(&a, &second.id, 50).await.unwrap());
                assert!(!store.delete_device(&a, &second.id, 50).await.unwrap());
                assert_eq!(store.devices(&a).await.unwrap(), vec![first]);
                // The unlinked device's identity key stays on record under its number (for
                // attributing reports), from the time it was unlinked; not for another account.
                assert_eq!(
                    store.retired_identity_key(&a, 2, 50).await.unwrap(),
                    Some(second.identity_key.clone())
                );
                assert_eq!(store.retired_identity_key(&a, 2, 51).await.unwrap(), None);
                assert_eq!(store.retired_identity_key(&b, 2, 0).await.unwrap(), None);
                assert_eq!(store.retired_identity_key(&a, 1, 0).await.unwrap(), None);
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
                assert_eq!(out, RefreshOutcome::Reused { account: a });
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
                assert!(store.delete_device(&b, &dev_b.id, 50).await.unwrap());
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
                    purpose: LoginPurpose::Reauth,
                    state: SecretBytes::new(vec![5; 8]),
                };
                store.put_login(&l, &state, 100).await.unwrap();
                let got = store.take_login(&l, 99).await.unwrap().unwrap();
                assert_eq!(got.account_id, Some(a));
                assert_eq!(got.purpose, LoginPurpose::Reauth);
                assert_eq!(got.state.expose(), &[5; 8]);
                assert!(store.take_login(&l, 99).await.unwrap().is_none());

                let fake = LoginState {
                    account_id: None,
                    purpose: LoginPurpose::Login,
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
            async fn fresh_auth_recovery_and_credential_replacement() {
                let Some((store, _guard)) = $make().await else {
                    return;
                };
                let (a, dev) = account(&store, None).await;
                let (b, dev_b) = account(&store, None).await;
                let fam = session(&store, a, dev.id, b"c1").await;
                let other = session(&store, a, dev.id, b"c2").await;
                let fam_b = session(&store, b, dev_b.id, b"c3").await;
                // A proof belongs to one session of one account and lives until it expires.
                store.put_fresh_auth(&[1; 32], &a, &fam, 100, 10, 2).await.unwrap();
                assert!(store.fresh_auth_valid(&[1; 32], &a, &fam, 99).await.unwrap());
                assert!(!store.fresh_auth_valid(&[1; 32], &a, &fam, 100).await.unwrap());
                assert!(!store.fresh_auth_valid(&[1; 32], &a, &other, 50).await.unwrap());
                assert!(!store.take_fresh_auth(&[1; 32], &a, &other, 50).await.unwrap());
                assert!(!store.take_fresh_auth(&[1; 32], &b, &fam_b, 50).await.unwrap());
                assert!(!store.take_fresh_auth(&[1; 32], &a, &fam, 100).await.unwrap());
                // Spent once.
                assert!(store.take_fresh_auth(&[1; 32], &a, &fam, 50).await.unwrap());
                assert!(!store.take_fresh_auth(&[1; 32], &a, &fam, 50).await.unwrap());
                // At most `max_per_account` live proofs: the oldest is dropped.
                store.put_fresh_auth(&[2; 32], &a, &fam, 101, 10, 2).await.unwrap();
                store.put_fresh_auth(&[3; 32], &a, &fam, 102, 10, 2).await.unwrap();
                store.put_fresh_auth(&[4; 32], &a, &fam, 103, 10, 2).await.unwrap();
                assert!(!store.fresh_auth_valid(&[2; 32], &a, &fam, 50).await.unwrap());
                assert!(store.fresh_auth_valid(&[3; 32], &a, &fam, 50).await.unwrap());
                store.put_fresh_auth(&[5; 32], &b, &fam_b, 100, 10, 2).await.unwrap();

                // The recovery record.
                assert_eq!(store.recovery_record(&a).await.unwrap(), None);
                assert!(store.set_recovery_record(&a, b"rec-1").await.unwrap());
                assert!(store.set_recovery_record(&a, b"rec-2").await.unwrap());
                assert_eq!(store.recovery_record(&a).await.unwrap().as_deref(), Some(&b"rec-2"[..]));
                assert!(!store.set_recovery_record(&Id::random(), b"x").await.unwrap());

                // Replacing the password revokes every session of the account, deletes its
                // proofs and pending logins, and creates the new session.
                let login = Id::random();
                let state = LoginState {
                    account_id: Some(a),
                    purpose: LoginPurpose::Login,
                    state: SecretBytes::new(vec![1]),
                };
                store.put_login(&login, &state, 100).await.unwrap();
                let new_family = FamilyRecord {
                    id: Id::random(),
                    account_id: a,
                    device_id: dev.id,
                    revoked: false,
                    created_at: 30,
                };
                let new_token = RefreshTokenRecord {
                    token_hash: b"c4".to_vec(),
                    family_id: new_family.id,
                    created_at: 30,
                    expires_at: 1_000,
                    used_at: None,
                };
                let change = CredentialChange {
                    opaque_record: vec![8u8; 64],
                    clear_recovery: false,
                    new_session: Some((new_family.clone(), new_token)),
                };
                assert!(store.replace_credentials(&a, &change).await.unwrap());
                assert_eq!(store.account(&a).await.unwrap().unwrap().opaque_record, vec![8u8; 64]);
                assert!(!store.session_valid(&a, &dev.id, &fam).await.unwrap());
                assert!(!store.session_valid(&a, &dev.id, &other).await.unwrap());
                assert!(store.session_valid(&a, &dev.id, &new_family.id).await.unwrap());
                assert!(!store.fresh_auth_valid(&[3; 32], &a, &fam, 50).await.unwrap());
                assert!(store.take_login(&login, 0).await.unwrap().is_none());
                assert!(store.recovery_record(&a).await.unwrap().is_some());
                // Recovery clears the recovery record too; other accounts are untouched.
                let change = CredentialChange {
                    opaque_record: vec![7u8; 64],
                    clear_recovery: true,
                    new_session: None,
                };
                assert!(store.replace_credentials(&a, &change).await.unwrap());
                assert_eq!(store.recovery_record(&a).await.unwrap(), None);
                assert!(!store.session_valid(&a, &dev.id, &new_family.id).await.unwrap());
                assert!(!store.replace_credentials(&Id::random(), &change).await.unwrap());
                assert!(store.session_valid(&b, &dev_b.id, &fam_b).await.unwrap());
                assert!(store.fresh_auth_valid(&[5; 32], &b, &fam_b, 50).await.unwrap());
                // Logout everywhere.
                let again = session(&store, b, dev_b.id, b"c5").await;
                assert_eq!(store.revoke_sessions(&b).await.unwrap(), 2);
                assert!(!store.session_valid(&b, &dev_b.id, &again).await.unwrap());
                assert!(!store.fresh_auth_valid(&[5; 32], &b, &fam_b, 50).await.unwrap());
                assert_eq!(store.revoke_sessions(&b).await.unwrap(), 0);
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
            async fn secrets_rotate_keeping_the_old_value_under_a_new_name() {
                let Some((store, _guard)) = $make().await else {
                    return;
                };
                // Nothing to rotate: nothing changes.
                assert!(!store.rotate_secret("fs", b"new", "fs.retired.1").await.unwrap());
                assert!(store.secrets_with_prefix("fs").await.unwrap().is_empty());
                store.secret_or_insert("fs", b"one").await.unwrap();
                assert!(store.rotate_secret("fs", b"two", "fs.retired.10").await.unwrap());
                assert!(store.rotate_secret("fs", b"three", "fs.retired.20").await.unwrap());
                // A retired name already taken refuses the whole rotation.
                assert!(store.rotate_secret("fs", b"four", "fs.retired.20").await.is_err());
                assert_eq!(store.secret_or_insert("fs", b"x").await.unwrap().expose(), b"three");
                let retired: Vec<(String, Vec<u8>)> = store
                    .secrets_with_prefix("fs.retired.")
                    .await
                    .unwrap()
                    .into_iter()
                    .map(|(n, v)| (n, v.expose().to_vec()))
                    .collect();
                assert_eq!(
                    retired,
                    vec![
                        ("fs.retired.10".to_owned(), b"one".to_vec()),
                        ("fs.retired.20".to_owned(), b"two".to_vec())
                    ]
                );
                // A prefix is a prefix, not a pattern.
                assert!(store.secrets_with_prefix("f_").await.unwrap().is_empty());
                assert!(store.delete_secret("fs.retired.10").await.unwrap());
                assert!(!store.delete_secret("fs.retired.10").await.unwrap());
                assert_eq!(store.secrets_with_prefix("fs.").await.unwrap().len(), 1);
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
                    purpose: LoginPurpose::Recovery,
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

            fn key(key_id: u32, len: usize, signed: bool) -> PublicPreKey {
                PublicPreKey {
                    key_id,
                    public_key: vec![key_id as u8; len],
                    signature: if signed { vec![0xAB; 64] } else { Vec::new() },
                }
            }

            fn full_upload(opks: std::ops::Range<u32>, kems: std::ops::Range<u32>) -> KeyUpload {
                KeyUpload {
                    registration_id: Some(77),
                    signed_prekey: Some(key(1, 32, true)),
                    last_resort_kem_prekey: Some(key(9_999, 1568, true)),
                    one_time_prekeys: opks.map(|i| key(i, 32, false)).collect(),
                    one_time_kem_prekeys: kems.map(|i| key(i, 1568, true)).collect(),
                }
            }

            #[tokio::test]
            async fn key_upload_counts_claims_and_limits() {
                let Some((store, _guard)) = $make().await else {
                    return;
                };
                let (a, _) = account(&store, None).await;
                // One-time keys alone are fine, partial medium-term keys without a row are not.
                let partial = KeyUpload {
                    signed_prekey: Some(key(1, 32, true)),
                    ..KeyUpload::default()
                };
                assert_eq!(
                    store.upload_keys(&a, 1, &partial, 10, 5).await.unwrap(),
                    UploadOutcome::MissingBaseKeys
                );
                assert_eq!(
                    store
                        .upload_keys(&a, 7, &full_upload(0..1, 0..1), 10, 5)
                        .await
                        .unwrap(),
                    UploadOutcome::DeviceGone
                );
                assert!(store.claim_keys(&a, 1).await.unwrap().is_none());
                assert_eq!(
                    store
                        .upload_keys(&a, 1, &full_upload(10..13, 20..22), 5, 5)
                        .await
                        .unwrap(),
                    UploadOutcome::Stored
                );
                let counts = store.key_counts(&a, 1).await.unwrap();
                assert_eq!(
                    (counts.one_time_prekeys, counts.one_time_kem_prekeys),
                    (3, 2)
                );
                assert!(counts.has_base_keys);
                // A stored id again: conflict, and nothing of that upload is kept.
                let dup = KeyUpload {
                    one_time_prekeys: vec![key(30, 32, false), key(10, 32, false)],
                    ..KeyUpload::default()
                };
                let err = store.upload_keys(&a, 1, &dup, 5, 6).await.unwrap_err();
                assert!(matches!(err, StoreError::Conflict), "{err:?}");
                assert_eq!(store.key_counts(&a, 1).await.unwrap().one_time_prekeys, 3);
                // Over the per-device maximum: refused, nothing kept.
                let more = KeyUpload {
                    one_time_prekeys: (40..43).map(|i| key(i, 32, false)).collect(),
                    ..KeyUpload::default()
                };
                assert_eq!(
                    store.upload_keys(&a, 1, &more, 5, 6).await.unwrap(),
                    UploadOutcome::TooManyKeys
                );
                assert_eq!(store.key_counts(&a, 1).await.unwrap().one_time_prekeys, 3);
                // Replacing only the signed prekey keeps the rest.
                let rotate = KeyUpload {
                    signed_prekey: Some(key(2, 32, true)),
                    ..KeyUpload::default()
                };
                assert_eq!(
                    store.upload_keys(&a, 1, &rotate, 5, 7).await.unwrap(),
                    UploadOutcome::Stored
                );
                let set = store.device_key_set(&a, 1).await.unwrap();
                let base = set.base.unwrap();
                assert_eq!(base.signed_prekey.key_id, 2);
                assert_eq!(base.registration_id, 77);
                assert_eq!(base.last_resort_kem_prekey.key_id, 9_999);
                let ids: Vec<u32> = set.one_time_prekeys.iter().map(|k| k.key_id).collect();
                assert_eq!(ids, [10, 11, 12]);
                assert!(set.one_time_prekeys.iter().all(|k| k.signature.is_empty()));
                let ids: Vec<u32> = set.one_time_kem_prekeys.iter().map(|k| k.key_id).collect();
                assert_eq!(ids, [20, 21]);
                // Claims take the lowest ids, each once; then the last-resort KEM key.
                let c = store.claim_keys(&a, 1).await.unwrap().unwrap();
                assert_eq!(c.one_time_prekey.unwrap().key_id, 10);
                assert_eq!(c.one_time_kem_prekey.as_ref().unwrap().key_id, 20);
                assert_eq!(c.one_time_kem_prekey.unwrap().public_key, vec![20u8; 1568]);
                store.claim_keys(&a, 1).await.unwrap().unwrap();
                let c = store.claim_keys(&a, 1).await.unwrap().unwrap();
                assert_eq!(c.one_time_prekey.unwrap().key_id, 12);
                assert!(c.one_time_kem_prekey.is_none());
                assert_eq!(c.base.last_resort_kem_prekey.key_id, 9_999);
                let c = store.claim_keys(&a, 1).await.unwrap().unwrap();
                assert!(c.one_time_prekey.is_none() && c.one_time_kem_prekey.is_none());
                // Unlinking purges the device's keys.
                let mut second = device(a, 11);
                second.number = store.create_device(&second, 5).await.unwrap();
                store
                    .upload_keys(&a, second.number, &full_upload(0..4, 0..4), 10, 8)
                    .await
                    .unwrap();
                assert!(store.delete_device(&a, &second.id, 50).await.unwrap());
                assert_eq!(
                    store.key_counts(&a, second.number).await.unwrap(),
                    Default::default()
                );
                // Numbers are never reused.
                let mut third = device(a, 12);
                third.number = store.create_device(&third, 5).await.unwrap();
                assert_eq!(third.number, second.number + 1);
                assert_eq!(
                    store.next_device_number(&a).await.unwrap(),
                    Some(third.number + 1)
                );
                assert_eq!(
                    store
                        .device_by_number(&a, third.number)
                        .await
                        .unwrap()
                        .unwrap()
                        .id,
                    third.id
                );
                assert!(
                    store
                        .device_by_number(&a, second.number)
                        .await
                        .unwrap()
                        .is_none()
                );
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn concurrent_claims_hand_out_each_key_once() {
                let Some((store, _guard)) = $make().await else {
                    return;
                };
                let (a, _) = account(&store, None).await;
                store
                    .upload_keys(&a, 1, &full_upload(100..116, 200..216), 100, 1)
                    .await
                    .unwrap();
                let tasks: Vec<_> = (0..64)
                    .map(|_| {
                        let store = store.clone();
                        tokio::spawn(async move { store.claim_keys(&a, 1).await.unwrap().unwrap() })
                    })
                    .collect();
                let mut opks = Vec::new();
                let mut kems = Vec::new();
                let mut last_resort = 0;
                for t in tasks {
                    let c = t.await.unwrap();
                    if let Some(k) = c.one_time_prekey {
                        opks.push(k.key_id);
                    }
                    match c.one_time_kem_prekey {
                        Some(k) => kems.push(k.key_id),
                        None => {
                            assert_eq!(c.base.last_resort_kem_prekey.key_id, 9_999);
                            last_resort += 1;
                        }
                    }
                }
                opks.sort_unstable();
                kems.sort_unstable();
                assert_eq!(
                    opks,
                    (100..116).collect::<Vec<_>>(),
                    "each OPK exactly once"
                );
                assert_eq!(
                    kems,
                    (200..216).collect::<Vec<_>>(),
                    "each PQOPK exactly once"
                );
                assert_eq!(last_resort, 48);
                let counts = store.key_counts(&a, 1).await.unwrap();
                assert_eq!(
                    (counts.one_time_prekeys, counts.one_time_kem_prekeys),
                    (0, 0)
                );
            }

            fn env(account: Id, device: u32, id: Id, content: &[u8]) -> NewEnvelope {
                NewEnvelope {
                    account,
                    device,
                    message_id: id,
                    content: content.to_vec(),
                    franking_commitment: None,
                }
            }

            fn delivery(envelopes: Vec<NewEnvelope>, expires_at: i64) -> Delivery {
                Delivery {
                    source: None,
                    shared_payload: None,
                    envelopes,
                    received_at: 60,
                    expires_at,
                    device_checks: Vec::new(),
                }
            }

            const ROOMY: QueueLimits = QueueLimits {
                max_messages: 100,
                max_bytes: 1 << 20,
            };

            #[tokio::test]
            async fn mailbox_deliver_fetch_ack_and_limits() {
                let Some((store, _guard)) = $make().await else {
                    return;
                };
                let (a, _) = account(&store, None).await;
                let (b, _) = account(&store, None).await;
                let mut second = device(a, 11);
                second.number = store.create_device(&second, 5).await.unwrap();
                let (m1, m2, m3) = (Id::random(), Id::random(), Id::random());
                let mut d = delivery(vec![env(a, 1, m1, b"one"), env(a, 2, m1, b"one-2")], 1_000);
                d.source = Some((b, 1));
                let DeliveryOutcome::Stored(stored) = store.deliver(d.clone(), ROOMY).await.unwrap()
                else {
                    panic!("not stored")
                };
                assert_eq!(stored.len(), 2);
                assert!(stored.iter().all(|s| !s.duplicate));
                // Same id, same bytes: nothing new. Same id, other bytes: refused.
                let DeliveryOutcome::Stored(again) = store.deliver(d.clone(), ROOMY).await.unwrap() else {
                    panic!("not stored")
                };
                assert!(again.iter().all(|s| s.duplicate));
                assert_eq!(again[0].seq, stored[0].seq);
                let clash = delivery(vec![env(a, 1, m1, b"other")], 1_000);
                assert_eq!(
                    store.deliver(clash, ROOMY).await.unwrap(),
                    DeliveryOutcome::IdConflict {
                        account: a,
                        device: 1
                    }
                );
                store
                    .deliver(delivery(vec![env(a, 1, m2, b"two")], 1_000), ROOMY)
                    .await
                    .unwrap();
                store
                    .deliver(delivery(vec![env(a, 1, m3, b"three")], 100), ROOMY)
                    .await
                    .unwrap();
                let got = store.fetch_envelopes(&a, 1, 0, 10, 50).await.unwrap();
                let contents: Vec<&[u8]> = got.iter().map(|e| &e.content[..]).collect();
                assert_eq!(contents, [&b"one"[..], b"two", b"three"]);
                assert!(got.windows(2).all(|w| w[0].seq < w[1].seq));
                assert_eq!(got[0].source, Some((b, 1)));
                assert_eq!(got[1].source, None);
                assert_eq!(got[0].received_at, 60);
                // Paging and expiry filtering.
                let page = store
                    .fetch_envelopes(&a, 1, got[0].seq, 1, 50)
                    .await
                    .unwrap();
                assert_eq!(page[0].message_id, m2);
                assert_eq!(
                    store
                        .fetch_envelopes(&a, 1, 0, 10, 100)
                        .await
                        .unwrap()
                        .len(),
                    2
                );
                // A full queue refuses the whole delivery (the other device gets nothing).
                let tight = QueueLimits {
                    max_messages: 3,
                    max_bytes: 1 << 20,
                };
                let m4 = Id::random();
                let both = delivery(vec![env(a, 2, m4, b"x"), env(a, 1, m4, b"x")], 1_000);
                assert_eq!(
                    store.deliver(both, tight).await.unwrap(),
                    DeliveryOutcome::QueueFull {
                        account: a,
                        device: 1
                    }
                );
                assert_eq!(store.queue_stats(&a, 2).await.unwrap().messages, 1);
                let small = QueueLimits {
                    max_messages: 100,
                    max_bytes: 12,
                };
                assert_eq!(
                    store
                        .deliver(delivery(vec![env(a, 2, m4, b"12345678")], 1_000), small)
                        .await
                        .unwrap(),
                    DeliveryOutcome::QueueFull {
                        account: a,
                        device: 2
                    }
                );
                assert_eq!(
                    store
                        .deliver(delivery(vec![env(a, 9, m4, b"x")], 1_000), ROOMY)
                        .await
                        .unwrap(),
                    DeliveryOutcome::DeviceGone {
                        account: a,
                        device: 9
                    }
                );
                // Acks: another device's queue is untouched, unknown ids are ignored.
                assert_eq!(store.ack_ids(&a, 2, &[m2, Id::random()]).await.unwrap(), 0);
                assert_eq!(store.ack_ids(&b, 1, &[m1]).await.unwrap(), 0);
                assert_eq!(store.ack_ids(&a, 1, &[m1]).await.unwrap(), 1);
                assert_eq!(store.queue_stats(&a, 2).await.unwrap().messages, 1);
                let stats = store.queue_stats(&a, 1).await.unwrap();
                assert_eq!((stats.messages, stats.bytes), (2, 8));
                assert_eq!(store.ack_up_to(&a, 1, got[1].seq).await.unwrap(), 1);
                // The reaper removes what expired.
                assert_eq!(store.purge_expired_mail(100).await.unwrap(), 1);
                assert_eq!(store.queue_stats(&a, 1).await.unwrap().messages, 0);
                // Unlinking a device purges its queue.
                assert!(store.delete_device(&a, &second.id, 50).await.unwrap());
                assert_eq!(store.queue_stats(&a, 2).await.unwrap().messages, 0);
                // New sequence numbers keep growing after deletes.
                store
                    .deliver(
                        delivery(vec![env(a, 1, Id::random(), b"later")], 1_000),
                        ROOMY,
                    )
                    .await
                    .unwrap();
                let later = store.fetch_envelopes(&a, 1, 0, 10, 50).await.unwrap();
                assert!(later[0].seq > got[2].seq);
                // Deleting the account removes its queue.
                assert!(store.delete_account(&a).await.unwrap());
                assert!(
                    store
                        .fetch_envelopes(&a, 1, 0, 10, 50)
                        .await
                        .unwrap()
                        .is_empty()
                );
            }

            #[tokio::test]
            async fn acked_ids_stay_duplicates_until_they_expire() {
                let Some((store, _guard)) = $make().await else {
                    return;
                };
                let (a, _) = account(&store, None).await;
                let (m1, m2) = (Id::random(), Id::random());
                let d1 = delivery(vec![env(a, 1, m1, b"one")], 1_000);
                let DeliveryOutcome::Stored(first) = store.deliver(d1.clone(), ROOMY).await.unwrap()
                else {
                    panic!("not stored")
                };
                store
                    .deliver(delivery(vec![env(a, 1, m2, b"two")], 500), ROOMY)
                    .await
                    .unwrap();
                assert_eq!(store.ack_ids(&a, 1, &[m1]).await.unwrap(), 1);
                // A resend after the ack is the same message: a duplicate with the original
                // seq, nothing queued again.
                let DeliveryOutcome::Stored(again) = store.deliver(d1.clone(), ROOMY).await.unwrap()
                else {
                    panic!("not stored")
                };
                assert_eq!(again[0].seq, first[0].seq);
                assert!(again[0].duplicate);
                assert!(
                    store
                        .fetch_envelopes(&a, 1, 0, 10, 50)
                        .await
                        .unwrap()
                        .iter()
                        .all(|e| e.message_id != m1)
                );
                // Other bytes under an acked id: a conflict, nothing stored.
                assert_eq!(
                    store
                        .deliver(delivery(vec![env(a, 1, m1, b"other")], 1_000), ROOMY)
                        .await
                        .unwrap(),
                    DeliveryOutcome::IdConflict {
                        account: a,
                        device: 1
                    }
                );
                assert_eq!(store.queue_stats(&a, 1).await.unwrap().messages, 1);
                // Acking up to a seq keeps tombstones too.
                assert_eq!(store.ack_up_to(&a, 1, i64::MAX).await.unwrap(), 1);
                let DeliveryOutcome::Stored(again) = store
                    .deliver(delivery(vec![env(a, 1, m2, b"two")], 500), ROOMY)
                    .await
                    .unwrap()
                else {
                    panic!("not stored")
                };
                assert!(again[0].duplicate);
                assert_eq!(store.queue_stats(&a, 1).await.unwrap().messages, 0);
                // Once the envelope would have expired, its tombstone is reaped and the id is
                // free again.
                store.purge_expired_mail(500).await.unwrap();
                let DeliveryOutcome::Stored(again) = store
                    .deliver(delivery(vec![env(a, 1, m2, b"two")], 1_500), ROOMY)
                    .await
                    .unwrap()
                else {
                    panic!("not stored")
                };
                assert!(!again[0].duplicate);
                // The m1 tombstone (expires 1000) is still there.
                assert!(matches!(
                    store.deliver(d1.clone(), ROOMY).await.unwrap(),
                    DeliveryOutcome::Stored(s) if s[0].duplicate
                ));
                // Unlinking the device (or deleting the account) removes its tombstones.
                assert!(store.delete_account(&a).await.unwrap());
            }

            #[tokio::test]
            async fn concurrent_deliveries_share_commits_and_respect_limits() {
                let Some((store, _guard)) = $make().await else {
                    return;
                };
                let (a, _) = account(&store, None).await;
                let (b, _) = account(&store, None).await;
                let limit = QueueLimits {
                    max_messages: 25,
                    max_bytes: 1 << 20,
                };
                // 60 concurrent sends to one device (25 fit), 60 to another (all fit), plus a
                // send to a device that does not exist: each gets its own answer.
                let mut tasks = Vec::new();
                for i in 0..60u32 {
                    for (acct, lim) in [(a, limit), (b, ROOMY)] {
                        let store = store.clone();
                        tasks.push(tokio::spawn(async move {
                            let d = delivery(vec![env(acct, 1, Id::random(), &i.to_be_bytes())], 1_000);
                            (acct, store.deliver(d, lim).await.unwrap())
                        }));
                    }
                }
                let gone = {
                    let store = store.clone();
                    tokio::spawn(async move {
                        store
                            .deliver(delivery(vec![env(a, 7, Id::random(), b"x")], 1_000), ROOMY)
                            .await
                            .unwrap()
                    })
                };
                let (mut stored_a, mut full_a, mut stored_b) = (0, 0, 0);
                for t in tasks {
                    match t.await.unwrap() {
                        (acct, DeliveryOutcome::Stored(_)) if acct == a => stored_a += 1,
                        (_, DeliveryOutcome::Stored(_)) => stored_b += 1,
                        (acct, DeliveryOutcome::QueueFull { .. }) if acct == a => full_a += 1,
                        other => panic!("{other:?}"),
                    }
                }
                assert_eq!((stored_a, full_a, stored_b), (25, 35, 60));
                assert_eq!(
                    gone.await.unwrap(),
                    DeliveryOutcome::DeviceGone {
                        account: a,
                        device: 7
                    }
                );
                assert_eq!(store.queue_stats(&a, 1).await.unwrap().messages, 25);
                assert_eq!(store.queue_stats(&b, 1).await.unwrap().messages, 60);
                let got = store.fetch_envelopes(&b, 1, 0, 100, 0).await.unwrap();
                assert!(got.windows(2).all(|w| w[0].seq < w[1].seq));
                // Concurrent acks of both queues.
                let ids: Vec<Id> = got.iter().map(|e| e.message_id).collect();
                let acks: Vec<_> = ids
                    .chunks(7)
                    .map(|c| {
                        let (store, c) = (store.clone(), c.to_vec());
                        tokio::spawn(async move { store.ack_ids(&b, 1, &c).await.unwrap() })
                    })
                    .collect();
                let mut acked = 0;
                for t in acks {
                    acked += t.await.unwrap();
                }
                assert_eq!(acked, 60);
                assert_eq!(store.queue_stats(&b, 1).await.unwrap().messages, 0);
                // The account's device numbers in one query.
                assert_eq!(store.device_numbers(&a).await.unwrap(), Some((2, vec![1])));
                assert_eq!(store.device_numbers(&Id::random()).await.unwrap(), None);
            }

            #[tokio::test]
            async fn concurrent_acks_and_deliveries_to_one_device_stay_consistent() {
                let Some((store, _guard)) = $make().await else {
                    return;
                };
                let (a, _) = account(&store, None).await;
                // Deliveries and "ack everything" interleaved on one device: batches that mix
                // them are applied in strict queue order, and every envelope is either still
                // queued or counted by exactly one ack.
                let mut tasks = Vec::new();
                for i in 0..40u32 {
                    let store = store.clone();
                    tasks.push(tokio::spawn(async move {
                        if i % 8 == 7 {
                            (0, store.ack_up_to(&a, 1, i64::MAX).await.unwrap())
                        } else {
                            let d = delivery(vec![env(a, 1, Id::random(), &i.to_be_bytes())], 1_000);
                            match store.deliver(d, ROOMY).await.unwrap() {
                                DeliveryOutcome::Stored(s) => (s.len() as u64, 0),
                                other => panic!("{other:?}"),
                            }
                        }
                    }));
                }
                let (mut stored, mut acked) = (0, 0);
                for t in tasks {
                    let (s, k) = t.await.unwrap();
                    stored += s;
                    acked += k;
                }
                assert_eq!(stored, 35);
                assert_eq!(store.queue_stats(&a, 1).await.unwrap().messages, stored - acked);
            }

            #[tokio::test]
            async fn device_lists_are_checked_inside_the_delivery() {
                let Some((store, _guard)) = $make().await else {
                    return;
                };
                let (a, _) = account(&store, None).await;
                let mut second = device(a, 12);
                second.number = store.create_device(&second, 5).await.unwrap();
                assert_eq!(second.number, 2);
                let check = |listed: &[u32], exclude: Option<u32>| DeviceListCheck {
                    account: a,
                    listed: listed.iter().copied().collect(),
                    exclude,
                };
                let checked = |devices: &[u32], c: DeviceListCheck| {
                    let m = Id::random();
                    let mut d = delivery(devices.iter().map(|n| env(a, *n, m, b"x")).collect(), 1_000);
                    d.device_checks = vec![c];
                    d
                };
                // The right list is stored; so is a self-send that leaves out the sender.
                assert!(matches!(
                    store.deliver(checked(&[1, 2], check(&[1, 2], None)), ROOMY).await.unwrap(),
                    DeliveryOutcome::Stored(s) if s.len() == 2
                ));
                assert!(matches!(
                    store.deliver(checked(&[2], check(&[2], Some(1))), ROOMY).await.unwrap(),
                    DeliveryOutcome::Stored(s) if s.len() == 1
                ));
                let before = store.queue_stats(&a, 1).await.unwrap();
                // A missing device and an extra one: refused, nothing stored.
                assert_eq!(
                    store.deliver(checked(&[1], check(&[1], None)), ROOMY).await.unwrap(),
                    DeliveryOutcome::Devices(vec![DeviceMismatch {
                        account_id: a,
                        missing_devices: vec![2],
                        extra_devices: vec![],
                        removed_devices: vec![],
                    }])
                );
                assert_eq!(
                    store.deliver(checked(&[1, 2], check(&[1, 2, 9], None)), ROOMY).await.unwrap(),
                    DeliveryOutcome::Devices(vec![DeviceMismatch {
                        account_id: a,
                        missing_devices: vec![],
                        extra_devices: vec![9],
                        removed_devices: vec![],
                    }])
                );
                // Device 2 removed, device 3 added: both reported.
                assert!(store.delete_device(&a, &second.id, 50).await.unwrap());
                let third = device(a, 13);
                assert_eq!(store.create_device(&third, 5).await.unwrap(), 3);
                assert_eq!(
                    store.deliver(checked(&[1], check(&[1, 2], None)), ROOMY).await.unwrap(),
                    DeliveryOutcome::Devices(vec![DeviceMismatch {
                        account_id: a,
                        missing_devices: vec![3],
                        extra_devices: vec![],
                        removed_devices: vec![2],
                    }])
                );
                let unknown = Id::random();
                let mut d = checked(&[1], check(&[1, 3], None));
                d.device_checks.push(DeviceListCheck {
                    account: unknown,
                    listed: [1].into_iter().collect(),
                    exclude: None,
                });
                assert_eq!(
                    store.deliver(d, ROOMY).await.unwrap(),
                    DeliveryOutcome::UnknownAccount(unknown)
                );
                assert_eq!(store.queue_stats(&a, 1).await.unwrap(), before);
                // Concurrent deliveries share batches: the stale ones are refused alone.
                let tasks: Vec<_> = (0..32u32)
                    .map(|i| {
                        let store = store.clone();
                        let d = if i % 2 == 0 {
                            checked(&[1, 3], check(&[1, 3], None))
                        } else {
                            checked(&[1], check(&[1], None))
                        };
                        tokio::spawn(async move { (i, store.deliver(d, ROOMY).await.unwrap()) })
                    })
                    .collect();
                for t in tasks {
                    match t.await.unwrap() {
                        (i, DeliveryOutcome::Stored(s)) if i % 2 == 0 => assert_eq!(s.len(), 2),
                        (i, DeliveryOutcome::Devices(m)) if i % 2 == 1 => {
                            assert_eq!(m[0].missing_devices, vec![3]);
                        }
                        other => panic!("{other:?}"),
                    }
                }
                assert_eq!(store.queue_stats(&a, 1).await.unwrap().messages, before.messages + 16);
            }

            #[tokio::test]
            async fn stored_envelopes_name_their_predecessor_in_the_queue() {
                let Some((store, _guard)) = $make().await else {
                    return;
                };
                let (a, _) = account(&store, None).await;
                let one = |content: &[u8]| delivery(vec![env(a, 1, Id::random(), content)], 1_000);
                let stored = |o: DeliveryOutcome| match o {
                    DeliveryOutcome::Stored(s) => s,
                    other => panic!("{other:?}"),
                };
                let first = stored(store.deliver(one(b"1"), ROOMY).await.unwrap());
                assert_eq!(first[0].prev_seq, None, "empty queue");
                let second = stored(store.deliver(one(b"2"), ROOMY).await.unwrap());
                assert_eq!(second[0].prev_seq, Some(first[0].seq));
                // A duplicate is not new and names nothing.
                let d = one(b"3");
                let third = stored(store.deliver(d.clone(), ROOMY).await.unwrap());
                assert_eq!(third[0].prev_seq, Some(second[0].seq));
                let again = stored(store.deliver(d, ROOMY).await.unwrap());
                assert!(again[0].duplicate);
                assert_eq!(again[0].prev_seq, None);
                // After everything is acked the queue is empty again.
                assert_eq!(store.ack_up_to(&a, 1, i64::MAX).await.unwrap(), 3);
                let fourth = stored(store.deliver(one(b"4"), ROOMY).await.unwrap());
                assert_eq!(fourth[0].prev_seq, None);
                // Concurrent deliveries (shared batches): the new sequence numbers form one
                // chain, each naming the one before it.
                let tasks: Vec<_> = (0..40u32)
                    .map(|i| {
                        let store = store.clone();
                        let d = one(&i.to_be_bytes());
                        tokio::spawn(async move { store.deliver(d, ROOMY).await.unwrap() })
                    })
                    .collect();
                let mut chain = Vec::new();
                for t in tasks {
                    let s = stored(t.await.unwrap());
                    chain.push((s[0].seq, s[0].prev_seq));
                }
                chain.sort_unstable();
                let mut known: std::collections::HashSet<i64> =
                    chain.iter().map(|(seq, _)| *seq).collect();
                known.insert(fourth[0].seq);
                let mut prev = Some(fourth[0].seq);
                for (seq, p) in chain {
                    assert_eq!(p, prev, "predecessor of {seq}");
                    prev = Some(seq);
                }
                // With acks in the same batches, a predecessor is always an earlier envelope of
                // the same queue.
                let mut tasks = Vec::new();
                for i in 0..40u32 {
                    let store = store.clone();
                    tasks.push(tokio::spawn(async move {
                        if i % 5 == 4 {
                            store.ack_up_to(&a, 1, i64::MAX).await.unwrap();
                            None
                        } else {
                            let d = delivery(vec![env(a, 1, Id::random(), &i.to_be_bytes())], 1_000);
                            Some(store.deliver(d, ROOMY).await.unwrap())
                        }
                    }));
                }
                let mut pairs = Vec::new();
                for t in tasks {
                    if let Some(o) = t.await.unwrap() {
                        let s = stored(o);
                        known.insert(s[0].seq);
                        pairs.push((s[0].seq, s[0].prev_seq));
                    }
                }
                assert_eq!(pairs.len(), 32);
                for (seq, p) in pairs {
                    if let Some(p) = p {
                        assert!(p < seq && known.contains(&p), "{p} before {seq}");
                    }
                }
            }

            #[tokio::test]
            async fn shared_payload_is_stored_once_and_collected() {
                let Some((store, _guard)) = $make().await else {
                    return;
                };
                let (a, _) = account(&store, None).await;
                let (b, _) = account(&store, None).await;
                let m = Id::random();
                let shared = SharedPayload {
                    id: Id::random(),
                    payload: vec![5u8; 300],
                };
                let mut d = delivery(vec![env(a, 1, m, b"ha"), env(b, 1, m, b"hb")], 1_000);
                d.shared_payload = Some(shared.clone());
                assert!(matches!(
                    store.deliver(d.clone(), ROOMY).await.unwrap(),
                    DeliveryOutcome::Stored(_)
                ));
                let got = store.fetch_envelopes(&b, 1, 0, 10, 0).await.unwrap();
                assert_eq!(got[0].content, b"hb");
                assert_eq!(got[0].shared_payload.as_deref(), Some(&shared.payload[..]));
                assert_eq!(store.queue_stats(&b, 1).await.unwrap().bytes, 302);
                assert_eq!(store.ack_ids(&a, 1, &[m]).await.unwrap(), 1);
                // Still referenced by b's envelope.
                let got = store.fetch_envelopes(&b, 1, 0, 10, 0).await.unwrap();
                assert_eq!(got[0].shared_payload.as_deref(), Some(&shared.payload[..]));
                assert_eq!(store.ack_ids(&b, 1, &[m]).await.unwrap(), 1);
                store.purge_expired_mail(0).await.unwrap();
            }

            #[tokio::test]
            async fn access_key_hash_round_trip() {
                let Some((store, _guard)) = $make().await else {
                    return;
                };
                let (a, _) = account(&store, None).await;
                assert_eq!(store.access_key_hash(&a).await.unwrap(), None);
                assert!(
                    store
                        .set_access_key_hash(&a, Some(&[3u8; 32]))
                        .await
                        .unwrap()
                );
                assert_eq!(
                    store.access_key_hash(&a).await.unwrap(),
                    Some(vec![3u8; 32])
                );
                assert!(store.set_access_key_hash(&a, None).await.unwrap());
                assert_eq!(store.access_key_hash(&a).await.unwrap(), None);
                assert!(
                    !store
                        .set_access_key_hash(&Id::random(), None)
                        .await
                        .unwrap()
                );
                assert_eq!(store.access_key_hash(&Id::random()).await.unwrap(), None);
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
                    "device_keys",
                    "one_time_prekeys",
                    "envelopes",
                    "shared_payloads",
                    "acked_envelopes",
                ] {
                    assert!(tables.iter().any(|n| n == t), "{t} missing from {tables:?}");
                }
            }
        }
    };
}
