//! The accounts feature's SQL (accounts, devices, token families, login states), expanded for
//! both backends by `db::sqlite` and `db::postgres` (see `db::sql`).

/// Implements the accounts store traits for a type with a `pool` field of a concrete sqlx pool.
macro_rules! impl_account_sql {
    ($store:ty, $db:ty) => {

        fn device_from_row(row: &<$db as sqlx::Database>::Row) -> $crate::db::error::StoreResult<$crate::accounts::store::DeviceRecord> {
            use sqlx::Row as _;
            Ok($crate::accounts::store::DeviceRecord {
                id: row_id(row, "id", "devices")?,
                account_id: row_id(row, "account_id", "devices")?,
                identity_key: row.try_get("identity_key")?,
                name_blob: row.try_get("name_blob")?,
                created_at: row.try_get("created_at")?,
                number: row_u32(row, "device_number", "devices")?,
            })
        }


        fn family_from_row(row: &<$db as sqlx::Database>::Row) -> $crate::db::error::StoreResult<$crate::accounts::store::FamilyRecord> {
            use sqlx::Row as _;
            Ok($crate::accounts::store::FamilyRecord {
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
        ) -> $crate::db::error::StoreResult<$crate::accounts::store::RefreshOutcome> {
            sqlx::query("UPDATE token_families SET revoked = TRUE WHERE id = $1")
                .bind(&family.as_bytes()[..])
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok($crate::accounts::store::RefreshOutcome::Reused { account: *account })
        }



        const DEVICE_COLUMNS: &str = "id, account_id, identity_key, name_blob, created_at, device_number";

        const FAMILY_COLUMNS: &str = "id, account_id, device_id, revoked, created_at";


        impl $crate::accounts::store::AccountStore for $store {
            async fn create_account(
                &self,
                account: &$crate::accounts::store::NewAccount,
                device: &$crate::accounts::store::DeviceRecord,
            ) -> $crate::db::error::StoreResult<()> {
                let mut tx = self.pool.begin_with(<$db as $crate::db::sql::TxBegin>::BEGIN).await?;
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
            ) -> $crate::db::error::StoreResult<Option<$crate::accounts::store::AccountRecord>> {
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
                Ok(Some($crate::accounts::store::AccountRecord {
                    id: row_id(&row, "id", "accounts")?,
                    username_hash: row.try_get("username_hash")?,
                    opaque_record: row.try_get("opaque_record")?,
                    totp_secret: secret.map($crate::db::error::SecretBytes::new),
                    totp_enabled: row.try_get("totp_enabled")?,
                    totp_last_step: row.try_get("totp_last_step")?,
                    created_at: row.try_get("created_at")?,
                }))
            }

            async fn account_by_username_hash(
                &self,
                hash: &[u8],
            ) -> $crate::db::error::StoreResult<Option<$crate::ids::Id>> {
                let row = sqlx::query("SELECT id FROM accounts WHERE username_hash = $1")
                    .bind(hash)
                    .fetch_optional(&self.pool)
                    .await?;
                row.map(|row| row_id(&row, "id", "accounts")).transpose()
            }

            async fn username_hash_taken(&self, hash: &[u8]) -> $crate::db::error::StoreResult<bool> {
                Ok(self.account_by_username_hash(hash).await?.is_some())
            }

            async fn delete_account(&self, id: &$crate::ids::Id) -> $crate::db::error::StoreResult<bool> {
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
            ) -> $crate::db::error::StoreResult<bool> {
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
            ) -> $crate::db::error::StoreResult<bool> {
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
            ) -> $crate::db::error::StoreResult<()> {
                let sql = if enabled {
                    "UPDATE accounts SET totp_enabled = TRUE WHERE id = $1 AND totp_secret IS NOT NULL"
                } else {
                    "UPDATE accounts SET totp_enabled = FALSE, totp_secret = NULL WHERE id = $1"
                };
                sqlx::query(sql).bind(&id.as_bytes()[..]).execute(&self.pool).await?;
                Ok(())
            }

            async fn replace_totp_secret(
                &self,
                id: &$crate::ids::Id,
                old: &[u8],
                new: &[u8],
            ) -> $crate::db::error::StoreResult<bool> {
                let done = sqlx::query(
                    "UPDATE accounts SET totp_secret = $3 WHERE id = $1 AND totp_secret = $2",
                )
                .bind(&id.as_bytes()[..])
                .bind(old)
                .bind(new)
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected() > 0)
            }

            async fn totp_secrets_page(
                &self,
                after: Option<&$crate::ids::Id>,
                limit: u32,
            ) -> $crate::db::error::StoreResult<Vec<($crate::ids::Id, $crate::db::error::SecretBytes)>> {
                use sqlx::Row as _;
                let after: &[u8] = after.map_or(&[], |id| &id.as_bytes()[..]);
                let rows = sqlx::query(
                    "SELECT id, totp_secret FROM accounts \
                     WHERE totp_secret IS NOT NULL AND id > $1 ORDER BY id LIMIT $2",
                )
                .bind(after)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?;
                rows.iter()
                    .map(|row| {
                        let secret: Vec<u8> = row.try_get("totp_secret")?;
                        Ok((
                            row_id(row, "id", "accounts")?,
                            $crate::db::error::SecretBytes::new(secret),
                        ))
                    })
                    .collect()
            }
        }


        impl $crate::accounts::store::DeviceStore for $store {
            async fn create_device(
                &self,
                device: &$crate::accounts::store::DeviceRecord,
                max_devices: u32,
            ) -> $crate::db::error::StoreResult<u32> {
                use sqlx::Row as _;
                let mut tx = self.pool.begin_with(<$db as $crate::db::sql::TxBegin>::BEGIN).await?;
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
                    return Err($crate::db::error::StoreError::Database(sqlx::Error::RowNotFound));
                };
                let next: i64 = row.try_get("next_device_number")?;
                let number = u32::try_from(next - 1)
                    .map_err(|_| $crate::db::error::StoreError::Corrupt { table: "accounts" })?;
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
                    return Err($crate::db::error::StoreError::LimitReached);
                }
                tx.commit().await?;
                Ok(number)
            }

            async fn device_by_number(
                &self,
                account: &$crate::ids::Id,
                number: u32,
            ) -> $crate::db::error::StoreResult<Option<$crate::accounts::store::DeviceRecord>> {
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
            ) -> $crate::db::error::StoreResult<Option<u32>> {
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
            ) -> $crate::db::error::StoreResult<Option<$crate::accounts::store::DeviceRecord>> {
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
            ) -> $crate::db::error::StoreResult<Option<(u32, Vec<u32>)>> {
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
                        numbers.push(u32::try_from(n).map_err(|_| $crate::db::error::StoreError::Corrupt { table: "devices" })?);
                    }
                }
                Ok(Some((next, numbers)))
            }

            async fn devices(
                &self,
                account: &$crate::ids::Id,
            ) -> $crate::db::error::StoreResult<Vec<$crate::accounts::store::DeviceRecord>> {
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
            ) -> $crate::db::error::StoreResult<bool> {
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
                now: i64,
            ) -> $crate::db::error::StoreResult<bool> {
                let mut tx = self.pool.begin_with(<$db as $crate::db::sql::TxBegin>::BEGIN).await?;
                sqlx::query(
                    "INSERT INTO retired_devices (account_id, device_number, identity_key, retired_at) \
                     SELECT account_id, device_number, identity_key, $3 FROM devices \
                     WHERE id = $1 AND account_id = $2 \
                     ON CONFLICT (account_id, device_number) DO NOTHING",
                )
                .bind(&device.as_bytes()[..])
                .bind(&account.as_bytes()[..])
                .bind(now)
                .execute(&mut *tx)
                .await?;
                let done = sqlx::query("DELETE FROM devices WHERE id = $1 AND account_id = $2")
                    .bind(&device.as_bytes()[..])
                    .bind(&account.as_bytes()[..])
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(done.rows_affected() > 0)
            }

            async fn retired_identity_key(
                &self,
                account: &$crate::ids::Id,
                number: u32,
                since: i64,
            ) -> $crate::db::error::StoreResult<Option<Vec<u8>>> {
                use sqlx::Row as _;
                let row = sqlx::query(
                    "SELECT identity_key FROM retired_devices \
                     WHERE account_id = $1 AND device_number = $2 AND retired_at >= $3",
                )
                .bind(&account.as_bytes()[..])
                .bind(i64::from(number))
                .bind(since)
                .fetch_optional(&self.pool)
                .await?;
                row.map(|r| r.try_get("identity_key")).transpose().map_err(Into::into)
            }
        }


        impl $crate::accounts::store::TokenStore for $store {
            async fn create_family(
                &self,
                family: &$crate::accounts::store::FamilyRecord,
                token: &$crate::accounts::store::RefreshTokenRecord,
            ) -> $crate::db::error::StoreResult<()> {
                let mut tx = self.pool.begin_with(<$db as $crate::db::sql::TxBegin>::BEGIN).await?;
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
            ) -> $crate::db::error::StoreResult<$crate::accounts::store::RefreshOutcome> {
                use sqlx::Row as _;
                use $crate::accounts::store::RefreshOutcome;
                let mut tx = self.pool.begin_with(<$db as $crate::db::sql::TxBegin>::BEGIN).await?;
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

            async fn revoke_family(&self, family: &$crate::ids::Id) -> $crate::db::error::StoreResult<bool> {
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
            ) -> $crate::db::error::StoreResult<bool> {
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
            ) -> $crate::db::error::StoreResult<Vec<$crate::accounts::store::FamilyRecord>> {
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
            ) -> $crate::db::error::StoreResult<Vec<$crate::accounts::store::RefreshTokenRecord>> {
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
                        Ok($crate::accounts::store::RefreshTokenRecord {
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


        impl $crate::accounts::store::AuthStateStore for $store {
            async fn put_registration(
                &self,
                id: &$crate::ids::Id,
                account_id: &$crate::ids::Id,
                expires_at: i64,
            ) -> $crate::db::error::StoreResult<()> {
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
            ) -> $crate::db::error::StoreResult<Option<$crate::ids::Id>> {
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
                state: &$crate::accounts::store::LoginState,
                expires_at: i64,
            ) -> $crate::db::error::StoreResult<()> {
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
            ) -> $crate::db::error::StoreResult<Option<$crate::accounts::store::LoginState>> {
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
                    .map_err(|_| $crate::db::error::StoreError::Corrupt { table: "login_states" })?;
                let purpose: i16 = row.try_get("purpose")?;
                let purpose = $crate::accounts::store::LoginPurpose::from_code(purpose)
                    .ok_or($crate::db::error::StoreError::Corrupt { table: "login_states" })?;
                let state: Vec<u8> = row.try_get("state")?;
                Ok(Some($crate::accounts::store::LoginState {
                    account_id,
                    purpose,
                    state: $crate::db::error::SecretBytes::new(state),
                }))
            }

            async fn purge_expired(&self, now: i64) -> $crate::db::error::StoreResult<u64> {
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

    };
}

pub(crate) use impl_account_sql;
