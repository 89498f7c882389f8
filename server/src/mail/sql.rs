//! The mailboxes' SQL outside the batched write path (reads, fetches, access keys), expanded
//! for both backends by `db::sqlite` and `db::postgres`; the write path is `mail::pg_writer`
//! (Postgres) and `mail::sqlite_writer` (SQLite).

/// Implements [`MailboxStore`](crate::mail::store::MailboxStore) for a type with a `pool` field.
macro_rules! impl_mailbox_sql {
    ($store:ty, $db:ty) => {
        impl $crate::mail::store::MailboxStore for $store {
            async fn deliver(
                &self,
                delivery: $crate::mail::store::Delivery,
                limits: $crate::mail::store::QueueLimits,
            ) -> $crate::db::error::StoreResult<$crate::mail::store::DeliveryOutcome> {
                Ok(self.writer.deliver(delivery, limits).await?.await?.outcome)
            }

            async fn queue_delivery(
                &self,
                delivery: $crate::mail::store::Delivery,
                limits: $crate::mail::store::QueueLimits,
            ) -> $crate::db::error::StoreResult<
                $crate::mail::store::PendingWrite<$crate::mail::store::DeliveryCommit>,
            > {
                self.writer.deliver(delivery, limits).await
            }

            async fn fetch_envelopes(
                &self,
                account: &$crate::ids::Id,
                device: u32,
                after_seq: i64,
                limit: u32,
                now: i64,
            ) -> $crate::db::error::StoreResult<Vec<$crate::mail::store::QueuedEnvelope>> {
                use sqlx::Row as _;
                let rows = sqlx::query(
                    "SELECT e.seq, e.message_id, e.source_account, e.source_device, e.content, \
                     p.payload, e.received_at, e.expires_at, e.franking_commitment \
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
                                    $crate::db::error::StoreError::Corrupt { table: "envelopes" }
                                })?,
                                u32::try_from(d).map_err(|_| {
                                    $crate::db::error::StoreError::Corrupt { table: "envelopes" }
                                })?,
                            )),
                            _ => None,
                        };
                        Ok($crate::mail::store::QueuedEnvelope {
                            seq: row.try_get("seq")?,
                            message_id: row_id(row, "message_id", "envelopes")?,
                            source,
                            content: row.try_get("content")?,
                            shared_payload: row.try_get("payload")?,
                            received_at: row.try_get("received_at")?,
                            expires_at: row.try_get("expires_at")?,
                            franking_commitment: row
                                .try_get::<Option<Vec<u8>>, _>("franking_commitment")?
                                .map(|c| <[u8; 32]>::try_from(c.as_slice()))
                                .transpose()
                                .map_err(|_| $crate::db::error::StoreError::Corrupt {
                                    table: "envelopes",
                                })?,
                        })
                    })
                    .collect()
            }

            async fn ack_ids(
                &self,
                account: &$crate::ids::Id,
                device: u32,
                ids: &[$crate::ids::Id],
            ) -> $crate::db::error::StoreResult<u64> {
                self.writer
                    .ack_ids(*account, device, ids.to_vec())
                    .await?
                    .await
            }

            async fn queue_ack_ids(
                &self,
                account: &$crate::ids::Id,
                device: u32,
                ids: Vec<$crate::ids::Id>,
            ) -> $crate::db::error::StoreResult<$crate::mail::store::PendingWrite<u64>> {
                self.writer.ack_ids(*account, device, ids).await
            }

            async fn ack_up_to(
                &self,
                account: &$crate::ids::Id,
                device: u32,
                up_to: i64,
            ) -> $crate::db::error::StoreResult<u64> {
                self.writer.ack_up_to(*account, device, up_to).await?.await
            }

            async fn queue_stats(
                &self,
                account: &$crate::ids::Id,
                device: u32,
            ) -> $crate::db::error::StoreResult<$crate::mail::store::QueueStats> {
                let row = sqlx::query(
                    "SELECT COUNT(*) AS n, CAST(COALESCE(SUM(size), 0) AS BIGINT) AS bytes \
                     FROM envelopes WHERE account_id = $1 AND device_number = $2",
                )
                .bind(&account.as_bytes()[..])
                .bind(i64::from(device))
                .fetch_one(&self.pool)
                .await?;
                Ok($crate::mail::store::QueueStats {
                    messages: row_u64(&row, "n", "envelopes")?,
                    bytes: row_u64(&row, "bytes", "envelopes")?,
                })
            }

            async fn purge_expired_mail(&self, now: i64) -> $crate::db::error::StoreResult<u64> {
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
            ) -> $crate::db::error::StoreResult<bool> {
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
            ) -> $crate::db::error::StoreResult<Option<Vec<u8>>> {
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

pub(crate) use impl_mailbox_sql;
