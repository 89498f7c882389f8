//! The SQL shared by both backends. The statements are portable (SQLite ≥ 3.35 and Postgres both
//! accept `$n` placeholders, `ON CONFLICT`, `RETURNING`), so one macro expands them into two
//! concrete, monomorphic implementations instead of a generic-over-driver maze.

/// Implements every store trait for a type with a `pool` field of a concrete sqlx pool.
///
/// `$skip_locked` is appended to the `SELECT` that picks a one-time key to claim: Postgres needs
/// `FOR UPDATE SKIP LOCKED` so concurrent claims take different rows instead of colliding on
/// one; SQLite runs each write statement under the database write lock and needs nothing.
macro_rules! impl_sql_store {
    ($store:ty, $db:ty, $skip_locked:literal) => {
        fn row_id(row: &<$db as sqlx::Database>::Row, column: &str, table: &'static str) -> $crate::store::StoreResult<$crate::ids::Id> {
            use sqlx::Row as _;
            let bytes: Vec<u8> = row.try_get(column)?;
            $crate::ids::Id::from_slice(&bytes).map_err(|_| $crate::store::StoreError::Corrupt { table })
        }

        fn device_from_row(row: &<$db as sqlx::Database>::Row) -> $crate::store::StoreResult<$crate::store::DeviceRecord> {
            use sqlx::Row as _;
            Ok($crate::store::DeviceRecord {
                id: row_id(row, "id", "devices")?,
                account_id: row_id(row, "account_id", "devices")?,
                identity_key: row.try_get("identity_key")?,
                name_blob: row.try_get("name_blob")?,
                created_at: row.try_get("created_at")?,
                number: row_u32(row, "device_number", "devices")?,
            })
        }

        fn row_u32(row: &<$db as sqlx::Database>::Row, column: &str, table: &'static str) -> $crate::store::StoreResult<u32> {
            use sqlx::Row as _;
            let value: i64 = row.try_get(column)?;
            u32::try_from(value).map_err(|_| $crate::store::StoreError::Corrupt { table })
        }

        fn row_u64(row: &<$db as sqlx::Database>::Row, column: &str, table: &'static str) -> $crate::store::StoreResult<u64> {
            use sqlx::Row as _;
            let value: i64 = row.try_get(column)?;
            u64::try_from(value).map_err(|_| $crate::store::StoreError::Corrupt { table })
        }

        fn base_keys_from_row(row: &<$db as sqlx::Database>::Row) -> $crate::store::StoreResult<$crate::store::BaseKeys> {
            use sqlx::Row as _;
            Ok($crate::store::BaseKeys {
                registration_id: row_u32(row, "registration_id", "device_keys")?,
                signed_prekey: $crate::store::PublicPreKey {
                    key_id: row_u32(row, "signed_prekey_id", "device_keys")?,
                    public_key: row.try_get("signed_prekey")?,
                    signature: row.try_get("signed_prekey_signature")?,
                },
                last_resort_kem_prekey: $crate::store::PublicPreKey {
                    key_id: row_u32(row, "last_resort_kem_id", "device_keys")?,
                    public_key: row.try_get("last_resort_kem")?,
                    signature: row.try_get("last_resort_kem_signature")?,
                },
            })
        }

        fn one_time_from_row(row: &<$db as sqlx::Database>::Row) -> $crate::store::StoreResult<$crate::store::PublicPreKey> {
            use sqlx::Row as _;
            let signature: Option<Vec<u8>> = row.try_get("signature")?;
            Ok($crate::store::PublicPreKey {
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
        ) -> $crate::store::StoreResult<bool> {
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
            kind: $crate::store::OneTimeKeyKind,
        ) -> $crate::store::StoreResult<Option<$crate::store::PublicPreKey>> {
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

        fn family_from_row(row: &<$db as sqlx::Database>::Row) -> $crate::store::StoreResult<$crate::store::FamilyRecord> {
            use sqlx::Row as _;
            Ok($crate::store::FamilyRecord {
                id: row_id(row, "id", "token_families")?,
                account_id: row_id(row, "account_id", "token_families")?,
                device_id: row_id(row, "device_id", "token_families")?,
                revoked: row.try_get("revoked")?,
                created_at: row.try_get("created_at")?,
            })
        }

        async fn revoke_in(
            mut tx: sqlx::Transaction<'_, $db>,
            family: &$crate::ids::Id,
            account: &$crate::ids::Id,
        ) -> $crate::store::StoreResult<$crate::store::RefreshOutcome> {
            sqlx::query("UPDATE token_families SET revoked = TRUE WHERE id = $1")
                .bind(&family.as_bytes()[..])
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok($crate::store::RefreshOutcome::Reused { account: *account })
        }


        const DEVICE_COLUMNS: &str = "id, account_id, identity_key, name_blob, created_at, device_number";
        const FAMILY_COLUMNS: &str = "id, account_id, device_id, revoked, created_at";

        impl $crate::store::AccountStore for $store {
            async fn create_account(
                &self,
                account: &$crate::store::NewAccount,
                device: &$crate::store::DeviceRecord,
            ) -> $crate::store::StoreResult<()> {
                let mut tx = self.pool.begin_with(<$db as $crate::store::TxBegin>::BEGIN).await?;
                sqlx::query(
                    "INSERT INTO accounts (id, username_hash, opaque_record, created_at, \
                     next_device_number) VALUES ($1, $2, $3, $4, 2)",
                )
                .bind(&account.id.as_bytes()[..])
                .bind(account.username_hash.as_deref())
                .bind(&account.opaque_record[..])
                .bind(account.created_at)
                .execute(&mut *tx)
                .await?;
                sqlx::query(
                    "INSERT INTO devices (id, account_id, identity_key, name_blob, created_at, \
                     device_number) VALUES ($1, $2, $3, $4, $5, 1)",
                )
                .bind(&device.id.as_bytes()[..])
                .bind(&account.id.as_bytes()[..])
                .bind(&device.identity_key[..])
                .bind(device.name_blob.as_deref())
                .bind(device.created_at)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(())
            }

            async fn account(
                &self,
                id: &$crate::ids::Id,
            ) -> $crate::store::StoreResult<Option<$crate::store::AccountRecord>> {
                use sqlx::Row as _;
                let row = sqlx::query(
                    "SELECT id, username_hash, opaque_record, totp_secret, totp_enabled, \
                     totp_last_step, created_at FROM accounts WHERE id = $1",
                )
                .bind(&id.as_bytes()[..])
                .fetch_optional(&self.pool)
                .await?;
                let Some(row) = row else { return Ok(None) };
                let secret: Option<Vec<u8>> = row.try_get("totp_secret")?;
                Ok(Some($crate::store::AccountRecord {
                    id: row_id(&row, "id", "accounts")?,
                    username_hash: row.try_get("username_hash")?,
                    opaque_record: row.try_get("opaque_record")?,
                    totp_secret: secret.map($crate::store::SecretBytes::new),
                    totp_enabled: row.try_get("totp_enabled")?,
                    totp_last_step: row.try_get("totp_last_step")?,
                    created_at: row.try_get("created_at")?,
                }))
            }

            async fn account_by_username_hash(
                &self,
                hash: &[u8],
            ) -> $crate::store::StoreResult<Option<$crate::ids::Id>> {
                let row = sqlx::query("SELECT id FROM accounts WHERE username_hash = $1")
                    .bind(hash)
                    .fetch_optional(&self.pool)
                    .await?;
                row.map(|row| row_id(&row, "id", "accounts")).transpose()
            }

            async fn username_hash_taken(&self, hash: &[u8]) -> $crate::store::StoreResult<bool> {
                Ok(self.account_by_username_hash(hash).await?.is_some())
            }

            async fn delete_account(&self, id: &$crate::ids::Id) -> $crate::store::StoreResult<bool> {
                // One statement, so one implicit transaction; ON DELETE CASCADE removes devices,
                // sessions, tokens and login states with it.
                let done = sqlx::query("DELETE FROM accounts WHERE id = $1")
                    .bind(&id.as_bytes()[..])
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected() > 0)
            }

            async fn set_totp_pending(
                &self,
                id: &$crate::ids::Id,
                secret: &[u8],
            ) -> $crate::store::StoreResult<bool> {
                let done = sqlx::query(
                    "UPDATE accounts SET totp_secret = $2, totp_last_step = NULL \
                     WHERE id = $1 AND totp_enabled = FALSE",
                )
                .bind(&id.as_bytes()[..])
                .bind(secret)
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected() > 0)
            }

            async fn claim_totp_step(
                &self,
                id: &$crate::ids::Id,
                step: i64,
            ) -> $crate::store::StoreResult<bool> {
                // A single conditional UPDATE is atomic, so two concurrent uses of one code
                // cannot both succeed.
                let done = sqlx::query(
                    "UPDATE accounts SET totp_last_step = $2 WHERE id = $1 \
                     AND totp_secret IS NOT NULL \
                     AND (totp_last_step IS NULL OR totp_last_step < $2)",
                )
                .bind(&id.as_bytes()[..])
                .bind(step)
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected() > 0)
            }

            async fn set_totp_enabled(
                &self,
                id: &$crate::ids::Id,
                enabled: bool,
            ) -> $crate::store::StoreResult<()> {
                let sql = if enabled {
                    "UPDATE accounts SET totp_enabled = TRUE WHERE id = $1 AND totp_secret IS NOT NULL"
                } else {
                    "UPDATE accounts SET totp_enabled = FALSE, totp_secret = NULL WHERE id = $1"
                };
                sqlx::query(sql).bind(&id.as_bytes()[..]).execute(&self.pool).await?;
                Ok(())
            }
        }

        impl $crate::store::DeviceStore for $store {
            async fn create_device(
                &self,
                device: &$crate::store::DeviceRecord,
                max_devices: u32,
            ) -> $crate::store::StoreResult<u32> {
                use sqlx::Row as _;
                let mut tx = self.pool.begin_with(<$db as $crate::store::TxBegin>::BEGIN).await?;
                // Taking the number locks the account row, which also serialises the limit check
                // below against concurrent inserts.
                let row = sqlx::query(
                    "UPDATE accounts SET next_device_number = next_device_number + 1 \
                     WHERE id = $1 RETURNING next_device_number",
                )
                .bind(&device.account_id.as_bytes()[..])
                .fetch_optional(&mut *tx)
                .await?;
                let Some(row) = row else {
                    return Err($crate::store::StoreError::Database(sqlx::Error::RowNotFound));
                };
                let next: i64 = row.try_get("next_device_number")?;
                let number = u32::try_from(next - 1)
                    .map_err(|_| $crate::store::StoreError::Corrupt { table: "accounts" })?;
                let done = sqlx::query(
                    "INSERT INTO devices (id, account_id, identity_key, name_blob, created_at, device_number) \
                     SELECT $1, $2, $3, $4, $5, $7 \
                     WHERE (SELECT COUNT(*) FROM devices WHERE account_id = $2) < $6",
                )
                .bind(&device.id.as_bytes()[..])
                .bind(&device.account_id.as_bytes()[..])
                .bind(&device.identity_key[..])
                .bind(device.name_blob.as_deref())
                .bind(device.created_at)
                .bind(i64::from(max_devices))
                .bind(i64::from(number))
                .execute(&mut *tx)
                .await?;
                if done.rows_affected() == 0 {
                    return Err($crate::store::StoreError::LimitReached);
                }
                tx.commit().await?;
                Ok(number)
            }

            async fn device_by_number(
                &self,
                account: &$crate::ids::Id,
                number: u32,
            ) -> $crate::store::StoreResult<Option<$crate::store::DeviceRecord>> {
                let sql = format!("SELECT {DEVICE_COLUMNS} FROM devices WHERE account_id = $1 AND device_number = $2");
                let row = sqlx::query(&sql)
                    .bind(&account.as_bytes()[..])
                    .bind(i64::from(number))
                    .fetch_optional(&self.pool)
                    .await?;
                row.as_ref().map(device_from_row).transpose()
            }

            async fn next_device_number(
                &self,
                account: &$crate::ids::Id,
            ) -> $crate::store::StoreResult<Option<u32>> {
                let row = sqlx::query("SELECT next_device_number FROM accounts WHERE id = $1")
                    .bind(&account.as_bytes()[..])
                    .fetch_optional(&self.pool)
                    .await?;
                row.as_ref().map(|r| row_u32(r, "next_device_number", "accounts")).transpose()
            }

            async fn device(
                &self,
                account: &$crate::ids::Id,
                device: &$crate::ids::Id,
            ) -> $crate::store::StoreResult<Option<$crate::store::DeviceRecord>> {
                let sql = format!("SELECT {DEVICE_COLUMNS} FROM devices WHERE id = $1 AND account_id = $2");
                let row = sqlx::query(&sql)
                    .bind(&device.as_bytes()[..])
                    .bind(&account.as_bytes()[..])
                    .fetch_optional(&self.pool)
                    .await?;
                row.as_ref().map(device_from_row).transpose()
            }

            async fn device_numbers(
                &self,
                account: &$crate::ids::Id,
            ) -> $crate::store::StoreResult<Option<(u32, Vec<u32>)>> {
                use sqlx::Row as _;
                let rows = sqlx::query(
                    "SELECT a.next_device_number, d.device_number FROM accounts a \
                     LEFT JOIN devices d ON d.account_id = a.id WHERE a.id = $1 \
                     ORDER BY d.device_number",
                )
                .bind(&account.as_bytes()[..])
                .fetch_all(&self.pool)
                .await?;
                let Some(first) = rows.first() else { return Ok(None) };
                let next = row_u32(first, "next_device_number", "accounts")?;
                let mut numbers = Vec::with_capacity(rows.len());
                for row in &rows {
                    if let Some(n) = row.try_get::<Option<i64>, _>("device_number")? {
                        numbers.push(u32::try_from(n).map_err(|_| $crate::store::StoreError::Corrupt { table: "devices" })?);
                    }
                }
                Ok(Some((next, numbers)))
            }

            async fn devices(
                &self,
                account: &$crate::ids::Id,
            ) -> $crate::store::StoreResult<Vec<$crate::store::DeviceRecord>> {
                let sql = format!(
                    "SELECT {DEVICE_COLUMNS} FROM devices WHERE account_id = $1 ORDER BY device_number"
                );
                let rows = sqlx::query(&sql)
                    .bind(&account.as_bytes()[..])
                    .fetch_all(&self.pool)
                    .await?;
                rows.iter().map(device_from_row).collect()
            }

            async fn set_device_name(
                &self,
                account: &$crate::ids::Id,
                device: &$crate::ids::Id,
                name_blob: Option<&[u8]>,
            ) -> $crate::store::StoreResult<bool> {
                let done = sqlx::query(
                    "UPDATE devices SET name_blob = $3 WHERE id = $1 AND account_id = $2",
                )
                .bind(&device.as_bytes()[..])
                .bind(&account.as_bytes()[..])
                .bind(name_blob)
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected() > 0)
            }

            async fn delete_device(
                &self,
                account: &$crate::ids::Id,
                device: &$crate::ids::Id,
            ) -> $crate::store::StoreResult<bool> {
                let done = sqlx::query("DELETE FROM devices WHERE id = $1 AND account_id = $2")
                    .bind(&device.as_bytes()[..])
                    .bind(&account.as_bytes()[..])
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected() > 0)
            }
        }

        impl $crate::store::TokenStore for $store {
            async fn create_family(
                &self,
                family: &$crate::store::FamilyRecord,
                token: &$crate::store::RefreshTokenRecord,
            ) -> $crate::store::StoreResult<()> {
                let mut tx = self.pool.begin_with(<$db as $crate::store::TxBegin>::BEGIN).await?;
                sqlx::query(
                    "INSERT INTO token_families (id, account_id, device_id, revoked, created_at) \
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(&family.id.as_bytes()[..])
                .bind(&family.account_id.as_bytes()[..])
                .bind(&family.device_id.as_bytes()[..])
                .bind(family.revoked)
                .bind(family.created_at)
                .execute(&mut *tx)
                .await?;
                sqlx::query(
                    "INSERT INTO refresh_tokens (token_hash, family_id, created_at, expires_at, used_at) \
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(&token.token_hash[..])
                .bind(&family.id.as_bytes()[..])
                .bind(token.created_at)
                .bind(token.expires_at)
                .bind(token.used_at)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(())
            }

            async fn rotate_refresh(
                &self,
                presented: &[u8],
                next_hash: &[u8],
                now: i64,
                next_expires_at: i64,
            ) -> $crate::store::StoreResult<$crate::store::RefreshOutcome> {
                use sqlx::Row as _;
                use $crate::store::RefreshOutcome;
                let mut tx = self.pool.begin_with(<$db as $crate::store::TxBegin>::BEGIN).await?;
                let row = sqlx::query(
                    "SELECT r.expires_at, r.used_at, f.id, f.account_id, f.device_id, f.revoked, \
                     f.created_at FROM refresh_tokens r JOIN token_families f ON f.id = r.family_id \
                     WHERE r.token_hash = $1",
                )
                .bind(presented)
                .fetch_optional(&mut *tx)
                .await?;
                let Some(row) = row else { return Ok(RefreshOutcome::Invalid) };
                let family = family_from_row(&row)?;
                let expires_at: i64 = row.try_get("expires_at")?;
                let used_at: Option<i64> = row.try_get("used_at")?;
                if used_at.is_some() {
                    return revoke_in(tx, &family.id, &family.account_id).await;
                }
                if family.revoked || expires_at <= now {
                    return Ok(RefreshOutcome::Invalid);
                }
                let spent = sqlx::query(
                    "UPDATE refresh_tokens SET used_at = $2 WHERE token_hash = $1 AND used_at IS NULL",
                )
                .bind(presented)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                if spent.rows_affected() == 0 {
                    // Lost a race with a concurrent use of the same token: that is reuse too.
                    return revoke_in(tx, &family.id, &family.account_id).await;
                }
                sqlx::query(
                    "INSERT INTO refresh_tokens (token_hash, family_id, created_at, expires_at, used_at) \
                     VALUES ($1, $2, $3, $4, NULL)",
                )
                .bind(next_hash)
                .bind(&family.id.as_bytes()[..])
                .bind(now)
                .bind(next_expires_at)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(RefreshOutcome::Rotated(family))
            }

            async fn revoke_family(&self, family: &$crate::ids::Id) -> $crate::store::StoreResult<bool> {
                let done = sqlx::query("UPDATE token_families SET revoked = TRUE WHERE id = $1")
                    .bind(&family.as_bytes()[..])
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected() > 0)
            }

            async fn session_valid(
                &self,
                account: &$crate::ids::Id,
                device: &$crate::ids::Id,
                family: &$crate::ids::Id,
            ) -> $crate::store::StoreResult<bool> {
                let row = sqlx::query(
                    "SELECT f.id FROM token_families f JOIN devices d ON d.id = f.device_id \
                     WHERE f.id = $1 AND f.account_id = $2 AND f.device_id = $3 \
                     AND d.account_id = $2 AND f.revoked = FALSE",
                )
                .bind(&family.as_bytes()[..])
                .bind(&account.as_bytes()[..])
                .bind(&device.as_bytes()[..])
                .fetch_optional(&self.pool)
                .await?;
                Ok(row.is_some())
            }

            async fn families(
                &self,
                account: &$crate::ids::Id,
            ) -> $crate::store::StoreResult<Vec<$crate::store::FamilyRecord>> {
                let sql = format!(
                    "SELECT {FAMILY_COLUMNS} FROM token_families WHERE account_id = $1 ORDER BY created_at, id"
                );
                let rows = sqlx::query(&sql)
                    .bind(&account.as_bytes()[..])
                    .fetch_all(&self.pool)
                    .await?;
                rows.iter().map(family_from_row).collect()
            }

            async fn refresh_tokens(
                &self,
                account: &$crate::ids::Id,
            ) -> $crate::store::StoreResult<Vec<$crate::store::RefreshTokenRecord>> {
                use sqlx::Row as _;
                let rows = sqlx::query(
                    "SELECT r.token_hash, r.family_id, r.created_at, r.expires_at, r.used_at \
                     FROM refresh_tokens r JOIN token_families f ON f.id = r.family_id \
                     WHERE f.account_id = $1 ORDER BY r.created_at, r.token_hash",
                )
                .bind(&account.as_bytes()[..])
                .fetch_all(&self.pool)
                .await?;
                rows.iter()
                    .map(|row| {
                        Ok($crate::store::RefreshTokenRecord {
                            token_hash: row.try_get("token_hash")?,
                            family_id: row_id(row, "family_id", "refresh_tokens")?,
                            created_at: row.try_get("created_at")?,
                            expires_at: row.try_get("expires_at")?,
                            used_at: row.try_get("used_at")?,
                        })
                    })
                    .collect()
            }
        }

        impl $crate::store::AuthStateStore for $store {
            async fn put_registration(
                &self,
                id: &$crate::ids::Id,
                account_id: &$crate::ids::Id,
                expires_at: i64,
            ) -> $crate::store::StoreResult<()> {
                sqlx::query(
                    "INSERT INTO registration_states (id, account_id, expires_at) VALUES ($1, $2, $3)",
                )
                .bind(&id.as_bytes()[..])
                .bind(&account_id.as_bytes()[..])
                .bind(expires_at)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn take_registration(
                &self,
                id: &$crate::ids::Id,
                now: i64,
            ) -> $crate::store::StoreResult<Option<$crate::ids::Id>> {
                use sqlx::Row as _;
                // DELETE … RETURNING makes the state single-use even across instances.
                let row = sqlx::query(
                    "DELETE FROM registration_states WHERE id = $1 RETURNING account_id, expires_at",
                )
                .bind(&id.as_bytes()[..])
                .fetch_optional(&self.pool)
                .await?;
                let Some(row) = row else { return Ok(None) };
                let expires_at: i64 = row.try_get("expires_at")?;
                if expires_at <= now {
                    return Ok(None);
                }
                row_id(&row, "account_id", "registration_states").map(Some)
            }

            async fn put_login(
                &self,
                id: &$crate::ids::Id,
                state: &$crate::store::LoginState,
                expires_at: i64,
            ) -> $crate::store::StoreResult<()> {
                sqlx::query(
                    "INSERT INTO login_states (id, account_id, state, expires_at, purpose) \
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(&id.as_bytes()[..])
                .bind(state.account_id.as_ref().map(|a| &a.as_bytes()[..]))
                .bind(state.state.expose())
                .bind(expires_at)
                .bind(state.purpose.code())
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn take_login(
                &self,
                id: &$crate::ids::Id,
                now: i64,
            ) -> $crate::store::StoreResult<Option<$crate::store::LoginState>> {
                use sqlx::Row as _;
                let row = sqlx::query(
                    "DELETE FROM login_states WHERE id = $1 \
                     RETURNING account_id, state, expires_at, purpose",
                )
                .bind(&id.as_bytes()[..])
                .fetch_optional(&self.pool)
                .await?;
                let Some(row) = row else { return Ok(None) };
                let expires_at: i64 = row.try_get("expires_at")?;
                if expires_at <= now {
                    return Ok(None);
                }
                let account: Option<Vec<u8>> = row.try_get("account_id")?;
                let account_id = account
                    .map(|bytes| $crate::ids::Id::from_slice(&bytes))
                    .transpose()
                    .map_err(|_| $crate::store::StoreError::Corrupt { table: "login_states" })?;
                let purpose: i16 = row.try_get("purpose")?;
                let purpose = $crate::store::LoginPurpose::from_code(purpose)
                    .ok_or($crate::store::StoreError::Corrupt { table: "login_states" })?;
                let state: Vec<u8> = row.try_get("state")?;
                Ok(Some($crate::store::LoginState {
                    account_id,
                    purpose,
                    state: $crate::store::SecretBytes::new(state),
                }))
            }

            async fn purge_expired(&self, now: i64) -> $crate::store::StoreResult<u64> {
                let a = sqlx::query("DELETE FROM registration_states WHERE expires_at <= $1")
                    .bind(now)
                    .execute(&self.pool)
                    .await?;
                let b = sqlx::query("DELETE FROM login_states WHERE expires_at <= $1")
                    .bind(now)
                    .execute(&self.pool)
                    .await?;
                Ok(a.rows_affected() + b.rows_affected())
            }
        }

        impl $crate::store::SecretStore for $store {
            async fn secret_or_insert(
                &self,
                name: &str,
                value: &[u8],
            ) -> $crate::store::StoreResult<$crate::store::SecretBytes> {
                use sqlx::Row as _;
                sqlx::query(
                    "INSERT INTO server_secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
                )
                .bind(name)
                .bind(value)
                .execute(&self.pool)
                .await?;
                let row = sqlx::query("SELECT value FROM server_secrets WHERE name = $1")
                    .bind(name)
                    .fetch_one(&self.pool)
                    .await?;
                Ok($crate::store::SecretBytes::new(row.try_get("value")?))
            }
        }

        impl $crate::store::KeyStore for $store {
            async fn upload_keys(
                &self,
                account: &$crate::ids::Id,
                device: u32,
                upload: &$crate::store::KeyUpload,
                max_one_time: u32,
                now: i64,
            ) -> $crate::store::StoreResult<$crate::store::UploadOutcome> {
                use sqlx::Row as _;
                use $crate::store::{OneTimeKeyKind, UploadOutcome};
                let mut tx = self.pool.begin_with(<$db as $crate::store::TxBegin>::BEGIN).await?;
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
            ) -> $crate::store::StoreResult<$crate::store::KeyCounts> {
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
                Ok($crate::store::KeyCounts {
                    one_time_prekeys: row_u64(&row, "opk", "one_time_prekeys")?,
                    one_time_kem_prekeys: row_u64(&row, "kem", "one_time_prekeys")?,
                    has_base_keys: base > 0,
                })
            }

            async fn device_key_set(
                &self,
                account: &$crate::ids::Id,
                device: u32,
            ) -> $crate::store::StoreResult<$crate::store::DeviceKeySet> {
                use sqlx::Row as _;
                let mut tx = self.pool.begin_with(<$db as $crate::store::TxBegin>::BEGIN).await?;
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
                let mut set = $crate::store::DeviceKeySet {
                    base: base.as_ref().map(base_keys_from_row).transpose()?,
                    ..Default::default()
                };
                for row in &rows {
                    let kind: i16 = row.try_get("kind")?;
                    let key = one_time_from_row(row)?;
                    if kind == $crate::store::OneTimeKeyKind::Kem.code() {
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
            ) -> $crate::store::StoreResult<Option<$crate::store::ClaimedKeys>> {
                use $crate::store::OneTimeKeyKind;
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
                Ok(Some($crate::store::ClaimedKeys {
                    base,
                    one_time_prekey,
                    one_time_kem_prekey,
                }))
            }
        }

        impl $crate::store::MailboxStore for $store {
            async fn deliver(
                &self,
                delivery: $crate::store::Delivery,
                limits: $crate::store::QueueLimits,
            ) -> $crate::store::StoreResult<$crate::store::DeliveryOutcome> {
                Ok(self.writer.deliver(delivery, limits).await?.await?.outcome)
            }

            async fn queue_delivery(
                &self,
                delivery: $crate::store::Delivery,
                limits: $crate::store::QueueLimits,
            ) -> $crate::store::StoreResult<$crate::store::PendingWrite<$crate::store::DeliveryCommit>> {
                self.writer.deliver(delivery, limits).await
            }

            async fn fetch_envelopes(
                &self,
                account: &$crate::ids::Id,
                device: u32,
                after_seq: i64,
                limit: u32,
                now: i64,
            ) -> $crate::store::StoreResult<Vec<$crate::store::QueuedEnvelope>> {
                use sqlx::Row as _;
                let rows = sqlx::query(
                    "SELECT e.seq, e.message_id, e.source_account, e.source_device, e.content, \
                     p.payload, e.received_at, e.expires_at \
                     FROM envelopes e LEFT JOIN shared_payloads p ON p.id = e.payload_id \
                     WHERE e.account_id = $1 AND e.device_number = $2 AND e.seq > $3 \
                     AND e.expires_at > $4 ORDER BY e.seq LIMIT $5",
                )
                .bind(&account.as_bytes()[..])
                .bind(i64::from(device))
                .bind(after_seq)
                .bind(now)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?;
                rows.iter()
                    .map(|row| {
                        let source_account: Option<Vec<u8>> = row.try_get("source_account")?;
                        let source_device: Option<i64> = row.try_get("source_device")?;
                        let source = match (source_account, source_device) {
                            (Some(a), Some(d)) => Some((
                                $crate::ids::Id::from_slice(&a).map_err(|_| {
                                    $crate::store::StoreError::Corrupt { table: "envelopes" }
                                })?,
                                u32::try_from(d).map_err(|_| $crate::store::StoreError::Corrupt {
                                    table: "envelopes",
                                })?,
                            )),
                            _ => None,
                        };
                        Ok($crate::store::QueuedEnvelope {
                            seq: row.try_get("seq")?,
                            message_id: row_id(row, "message_id", "envelopes")?,
                            source,
                            content: row.try_get("content")?,
                            shared_payload: row.try_get("payload")?,
                            received_at: row.try_get("received_at")?,
                            expires_at: row.try_get("expires_at")?,
                        })
                    })
                    .collect()
            }

            async fn ack_ids(
                &self,
                account: &$crate::ids::Id,
                device: u32,
                ids: &[$crate::ids::Id],
            ) -> $crate::store::StoreResult<u64> {
                self.writer.ack_ids(*account, device, ids.to_vec()).await?.await
            }

            async fn queue_ack_ids(
                &self,
                account: &$crate::ids::Id,
                device: u32,
                ids: Vec<$crate::ids::Id>,
            ) -> $crate::store::StoreResult<$crate::store::PendingWrite<u64>> {
                self.writer.ack_ids(*account, device, ids).await
            }

            async fn ack_up_to(
                &self,
                account: &$crate::ids::Id,
                device: u32,
                up_to: i64,
            ) -> $crate::store::StoreResult<u64> {
                self.writer.ack_up_to(*account, device, up_to).await?.await
            }

            async fn queue_stats(
                &self,
                account: &$crate::ids::Id,
                device: u32,
            ) -> $crate::store::StoreResult<$crate::store::QueueStats> {
                let row = sqlx::query(
                    "SELECT COUNT(*) AS n, CAST(COALESCE(SUM(size), 0) AS BIGINT) AS bytes \
                     FROM envelopes WHERE account_id = $1 AND device_number = $2",
                )
                .bind(&account.as_bytes()[..])
                .bind(i64::from(device))
                .fetch_one(&self.pool)
                .await?;
                Ok($crate::store::QueueStats {
                    messages: row_u64(&row, "n", "envelopes")?,
                    bytes: row_u64(&row, "bytes", "envelopes")?,
                })
            }

            async fn purge_expired_mail(&self, now: i64) -> $crate::store::StoreResult<u64> {
                let done = sqlx::query("DELETE FROM envelopes WHERE expires_at <= $1")
                    .bind(now)
                    .execute(&self.pool)
                    .await?;
                sqlx::query("DELETE FROM acked_envelopes WHERE expires_at <= $1")
                    .bind(now)
                    .execute(&self.pool)
                    .await?;
                sqlx::query(
                    "DELETE FROM shared_payloads WHERE NOT EXISTS \
                     (SELECT 1 FROM envelopes e WHERE e.payload_id = shared_payloads.id)",
                )
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected())
            }

            async fn set_access_key_hash(
                &self,
                account: &$crate::ids::Id,
                hash: Option<&[u8]>,
            ) -> $crate::store::StoreResult<bool> {
                let done = sqlx::query("UPDATE accounts SET access_key_hash = $2 WHERE id = $1")
                    .bind(&account.as_bytes()[..])
                    .bind(hash)
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected() > 0)
            }

            async fn access_key_hash(
                &self,
                account: &$crate::ids::Id,
            ) -> $crate::store::StoreResult<Option<Vec<u8>>> {
                use sqlx::Row as _;
                let row = sqlx::query("SELECT access_key_hash FROM accounts WHERE id = $1")
                    .bind(&account.as_bytes()[..])
                    .fetch_optional(&self.pool)
                    .await?;
                match row {
                    Some(row) => Ok(row.try_get("access_key_hash")?),
                    None => Ok(None),
                }
            }
        }
    };
}

pub(crate) use impl_sql_store;
