//! The key directory's SQL, expanded for both backends by `db::sqlite` and `db::postgres`.

/// Implements [`KeyStore`](crate::keys::store::KeyStore) for a type with a `pool` field.
///
/// `$skip_locked` is appended to the `SELECT` that picks a one-time key to claim: Postgres needs
/// `FOR UPDATE SKIP LOCKED` so concurrent claims take different rows instead of colliding on
/// one; SQLite runs each write statement under the database write lock and needs nothing.
macro_rules! impl_key_sql {
    ($store:ty, $db:ty, $skip_locked:literal) => {

        fn base_keys_from_row(row: &<$db as sqlx::Database>::Row) -> $crate::db::error::StoreResult<$crate::keys::store::BaseKeys> {
            use sqlx::Row as _;
            Ok($crate::keys::store::BaseKeys {
                registration_id: row_u32(row, "registration_id", "device_keys")?,
                signed_prekey: $crate::keys::store::PublicPreKey {
                    key_id: row_u32(row, "signed_prekey_id", "device_keys")?,
                    public_key: row.try_get("signed_prekey")?,
                    signature: row.try_get("signed_prekey_signature")?,
                },
                last_resort_kem_prekey: $crate::keys::store::PublicPreKey {
                    key_id: row_u32(row, "last_resort_kem_id", "device_keys")?,
                    public_key: row.try_get("last_resort_kem")?,
                    signature: row.try_get("last_resort_kem_signature")?,
                },
            })
        }


        fn one_time_from_row(row: &<$db as sqlx::Database>::Row) -> $crate::db::error::StoreResult<$crate::keys::store::PublicPreKey> {
            use sqlx::Row as _;
            let signature: Option<Vec<u8>> = row.try_get("signature")?;
            Ok($crate::keys::store::PublicPreKey {
                key_id: row_u32(row, "key_id", "one_time_prekeys")?,
                public_key: row.try_get("public_key")?,
                signature: signature.unwrap_or_default(),
            })
        }


        /// Locks one device row for the rest of the transaction (a row lock on Postgres, the
        /// database write lock on SQLite). Returns whether the device exists.
        async fn lock_device(
            tx: &mut sqlx::Transaction<'_, $db>,
            account: &$crate::ids::Id,
            device: u32,
        ) -> $crate::db::error::StoreResult<bool> {
            let done = sqlx::query(
                "UPDATE devices SET device_number = device_number \
                 WHERE account_id = $1 AND device_number = $2",
            )
            .bind(&account.as_bytes()[..])
            .bind(i64::from(device))
            .execute(&mut **tx)
            .await?;
            Ok(done.rows_affected() > 0)
        }



        async fn claim_one_time(
            pool: &sqlx::Pool<$db>,
            account: &$crate::ids::Id,
            device: u32,
            kind: $crate::keys::store::OneTimeKeyKind,
        ) -> $crate::db::error::StoreResult<Option<$crate::keys::store::PublicPreKey>> {
            // One statement: the key picked is deleted and returned atomically, so no key is
            // ever handed out twice.
            let row = sqlx::query(concat!(
                "DELETE FROM one_time_prekeys WHERE account_id = $1 AND device_number = $2 \
                 AND kind = $3 AND key_id = (SELECT key_id FROM one_time_prekeys \
                 WHERE account_id = $1 AND device_number = $2 AND kind = $3 \
                 ORDER BY key_id LIMIT 1",
                $skip_locked,
                ") RETURNING key_id, public_key, signature"
            ))
            .bind(&account.as_bytes()[..])
            .bind(i64::from(device))
            .bind(kind.code())
            .fetch_optional(pool)
            .await?;
            row.as_ref().map(one_time_from_row).transpose()
        }


        impl $crate::keys::store::KeyStore for $store {
            async fn upload_keys(
                &self,
                account: &$crate::ids::Id,
                device: u32,
                upload: &$crate::keys::store::KeyUpload,
                max_one_time: u32,
                now: i64,
            ) -> $crate::db::error::StoreResult<$crate::keys::store::UploadOutcome> {
                use sqlx::Row as _;
                use $crate::keys::store::{OneTimeKeyKind, UploadOutcome};
                let mut tx = self.pool.begin_with(<$db as $crate::db::sql::TxBegin>::BEGIN).await?;
                if !lock_device(&mut tx, account, device).await? {
                    return Ok(UploadOutcome::DeviceGone);
                }
                let acct = &account.as_bytes()[..];
                let dev = i64::from(device);
                match (
                    upload.registration_id,
                    &upload.signed_prekey,
                    &upload.last_resort_kem_prekey,
                ) {
                    (Some(registration_id), Some(spk), Some(kem)) => {
                        sqlx::query(
                            "INSERT INTO device_keys (account_id, device_number, registration_id, \
                             signed_prekey_id, signed_prekey, signed_prekey_signature, \
                             last_resort_kem_id, last_resort_kem, last_resort_kem_signature, updated_at) \
                             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
                             ON CONFLICT (account_id, device_number) DO UPDATE SET \
                             registration_id = excluded.registration_id, \
                             signed_prekey_id = excluded.signed_prekey_id, \
                             signed_prekey = excluded.signed_prekey, \
                             signed_prekey_signature = excluded.signed_prekey_signature, \
                             last_resort_kem_id = excluded.last_resort_kem_id, \
                             last_resort_kem = excluded.last_resort_kem, \
                             last_resort_kem_signature = excluded.last_resort_kem_signature, \
                             updated_at = excluded.updated_at",
                        )
                        .bind(acct)
                        .bind(dev)
                        .bind(i64::from(registration_id))
                        .bind(i64::from(spk.key_id))
                        .bind(&spk.public_key[..])
                        .bind(&spk.signature[..])
                        .bind(i64::from(kem.key_id))
                        .bind(&kem.public_key[..])
                        .bind(&kem.signature[..])
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                    }
                    (None, None, None) => {}
                    (registration_id, spk, kem) => {
                        let exists = sqlx::query(
                            "SELECT 1 AS one FROM device_keys WHERE account_id = $1 AND device_number = $2",
                        )
                        .bind(acct)
                        .bind(dev)
                        .fetch_optional(&mut *tx)
                        .await?;
                        if exists.is_none() {
                            return Ok(UploadOutcome::MissingBaseKeys);
                        }
                        if let Some(registration_id) = registration_id {
                            sqlx::query(
                                "UPDATE device_keys SET registration_id = $3, updated_at = $4 \
                                 WHERE account_id = $1 AND device_number = $2",
                            )
                            .bind(acct)
                            .bind(dev)
                            .bind(i64::from(registration_id))
                            .bind(now)
                            .execute(&mut *tx)
                            .await?;
                        }
                        if let Some(spk) = spk {
                            sqlx::query(
                                "UPDATE device_keys SET signed_prekey_id = $3, signed_prekey = $4, \
                                 signed_prekey_signature = $5, updated_at = $6 \
                                 WHERE account_id = $1 AND device_number = $2",
                            )
                            .bind(acct)
                            .bind(dev)
                            .bind(i64::from(spk.key_id))
                            .bind(&spk.public_key[..])
                            .bind(&spk.signature[..])
                            .bind(now)
                            .execute(&mut *tx)
                            .await?;
                        }
                        if let Some(kem) = kem {
                            sqlx::query(
                                "UPDATE device_keys SET last_resort_kem_id = $3, last_resort_kem = $4, \
                                 last_resort_kem_signature = $5, updated_at = $6 \
                                 WHERE account_id = $1 AND device_number = $2",
                            )
                            .bind(acct)
                            .bind(dev)
                            .bind(i64::from(kem.key_id))
                            .bind(&kem.public_key[..])
                            .bind(&kem.signature[..])
                            .bind(now)
                            .execute(&mut *tx)
                            .await?;
                        }
                    }
                }
                for (kind, keys) in [
                    (OneTimeKeyKind::X25519, &upload.one_time_prekeys),
                    (OneTimeKeyKind::Kem, &upload.one_time_kem_prekeys),
                ] {
                    if keys.is_empty() {
                        continue;
                    }
                    for key in keys {
                        // A duplicate id violates the primary key: Conflict, and dropping the
                        // transaction rolls the whole upload back.
                        sqlx::query(
                            "INSERT INTO one_time_prekeys (account_id, device_number, kind, key_id, \
                             public_key, signature) VALUES ($1, $2, $3, $4, $5, $6)",
                        )
                        .bind(acct)
                        .bind(dev)
                        .bind(kind.code())
                        .bind(i64::from(key.key_id))
                        .bind(&key.public_key[..])
                        .bind((!key.signature.is_empty()).then_some(&key.signature[..]))
                        .execute(&mut *tx)
                        .await?;
                    }
                    let row = sqlx::query(
                        "SELECT COUNT(*) AS n FROM one_time_prekeys \
                         WHERE account_id = $1 AND device_number = $2 AND kind = $3",
                    )
                    .bind(acct)
                    .bind(dev)
                    .bind(kind.code())
                    .fetch_one(&mut *tx)
                    .await?;
                    let n: i64 = row.try_get("n")?;
                    if n > i64::from(max_one_time) {
                        return Ok(UploadOutcome::TooManyKeys);
                    }
                }
                tx.commit().await?;
                Ok(UploadOutcome::Stored)
            }

            async fn key_counts(
                &self,
                account: &$crate::ids::Id,
                device: u32,
            ) -> $crate::db::error::StoreResult<$crate::keys::store::KeyCounts> {
                use sqlx::Row as _;
                let row = sqlx::query(
                    "SELECT \
                     (SELECT COUNT(*) FROM one_time_prekeys WHERE account_id = $1 AND device_number = $2 AND kind = 1) AS opk, \
                     (SELECT COUNT(*) FROM one_time_prekeys WHERE account_id = $1 AND device_number = $2 AND kind = 2) AS kem, \
                     (SELECT COUNT(*) FROM device_keys WHERE account_id = $1 AND device_number = $2) AS base",
                )
                .bind(&account.as_bytes()[..])
                .bind(i64::from(device))
                .fetch_one(&self.pool)
                .await?;
                let base: i64 = row.try_get("base")?;
                Ok($crate::keys::store::KeyCounts {
                    one_time_prekeys: row_u64(&row, "opk", "one_time_prekeys")?,
                    one_time_kem_prekeys: row_u64(&row, "kem", "one_time_prekeys")?,
                    has_base_keys: base > 0,
                })
            }

            async fn device_key_set(
                &self,
                account: &$crate::ids::Id,
                device: u32,
            ) -> $crate::db::error::StoreResult<$crate::keys::store::DeviceKeySet> {
                use sqlx::Row as _;
                let mut tx = self.pool.begin_with(<$db as $crate::db::sql::TxBegin>::BEGIN).await?;
                let base = sqlx::query(
                    "SELECT registration_id, signed_prekey_id, signed_prekey, signed_prekey_signature, \
                     last_resort_kem_id, last_resort_kem, last_resort_kem_signature \
                     FROM device_keys WHERE account_id = $1 AND device_number = $2",
                )
                .bind(&account.as_bytes()[..])
                .bind(i64::from(device))
                .fetch_optional(&mut *tx)
                .await?;
                let rows = sqlx::query(
                    "SELECT kind, key_id, public_key, signature FROM one_time_prekeys \
                     WHERE account_id = $1 AND device_number = $2 ORDER BY kind, key_id",
                )
                .bind(&account.as_bytes()[..])
                .bind(i64::from(device))
                .fetch_all(&mut *tx)
                .await?;
                tx.commit().await?;
                let mut set = $crate::keys::store::DeviceKeySet {
                    base: base.as_ref().map(base_keys_from_row).transpose()?,
                    ..Default::default()
                };
                for row in &rows {
                    let kind: i16 = row.try_get("kind")?;
                    let key = one_time_from_row(row)?;
                    if kind == $crate::keys::store::OneTimeKeyKind::Kem.code() {
                        set.one_time_kem_prekeys.push(key);
                    } else {
                        set.one_time_prekeys.push(key);
                    }
                }
                Ok(set)
            }

            async fn claim_keys(
                &self,
                account: &$crate::ids::Id,
                device: u32,
            ) -> $crate::db::error::StoreResult<Option<$crate::keys::store::ClaimedKeys>> {
                use $crate::keys::store::OneTimeKeyKind;
                let base = sqlx::query(
                    "SELECT registration_id, signed_prekey_id, signed_prekey, signed_prekey_signature, \
                     last_resort_kem_id, last_resort_kem, last_resort_kem_signature \
                     FROM device_keys WHERE account_id = $1 AND device_number = $2",
                )
                .bind(&account.as_bytes()[..])
                .bind(i64::from(device))
                .fetch_optional(&self.pool)
                .await?;
                let Some(base) = base else { return Ok(None) };
                let base = base_keys_from_row(&base)?;
                let one_time_prekey =
                    claim_one_time(&self.pool, account, device, OneTimeKeyKind::X25519).await?;
                let one_time_kem_prekey =
                    claim_one_time(&self.pool, account, device, OneTimeKeyKind::Kem).await?;
                Ok(Some($crate::keys::store::ClaimedKeys {
                    base,
                    one_time_prekey,
                    one_time_kem_prekey,
                }))
            }
        }

    };
}

pub(crate) use impl_key_sql;
