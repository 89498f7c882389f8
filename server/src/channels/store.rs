//! Channels (append-only logs behind capability tokens) and single-use WebSocket tickets: the
//! store traits and their SQL, expanded for both backends like [`impl_sql_store!`].
//!
//! [`impl_sql_store!`]: crate::db::sql

use std::future::Future;

use crate::accounts::session::Session;
use crate::db::error::StoreResult;
use crate::ids::Id;

/// A new channel: its id and the SHA-256 hashes of its two capability tokens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewChannel {
    /// Random channel id.
    pub id: Id,
    /// SHA-256 of the read token.
    pub read_hash: [u8; 32],
    /// SHA-256 of the write token.
    pub write_hash: [u8; 32],
    /// Creation time.
    pub created_at: i64,
    /// When the channel and its entries are reaped.
    pub expires_at: i64,
}

/// A channel row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelRecord {
    /// Channel id.
    pub id: Id,
    /// SHA-256 of the read token.
    pub read_hash: Vec<u8>,
    /// SHA-256 of the write token.
    pub write_hash: Vec<u8>,
    /// Creation time.
    pub created_at: i64,
    /// Expiry time.
    pub expires_at: i64,
    /// Entries stored.
    pub entry_count: i64,
    /// Sum of the entries' sizes in bytes.
    pub byte_count: i64,
    /// Sequence number of the last entry appended (0 when none ever was).
    pub last_seq: i64,
}

/// One channel entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelEntry {
    /// Position in the channel, from 1, strictly increasing, never reused.
    pub seq: i64,
    /// The opaque entry.
    pub body: Vec<u8>,
    /// When it was appended.
    pub created_at: i64,
    /// The writer's franking commitment (PROTOCOL.md §16.3), if it sent one.
    pub franking_commitment: Option<[u8; 32]>,
}

/// Limits an append must respect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChannelQuota {
    /// Maximum entries per channel.
    pub max_entries: i64,
    /// Maximum total entry bytes per channel.
    pub max_bytes: i64,
}

/// Outcome of an append.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AppendOutcome {
    /// Stored under this sequence number.
    Appended(i64),
    /// No such channel, or it expired.
    NotFound,
    /// The channel's entry count or byte quota would be exceeded; nothing was stored.
    QuotaExceeded,
}

/// Channels.
pub trait ChannelStore {
    /// Inserts a channel.
    fn create_channel(&self, channel: &NewChannel) -> impl Future<Output = StoreResult<()>> + Send;
    /// Reads a channel unless it has expired at `now`.
    fn channel(
        &self,
        id: &Id,
        now: i64,
    ) -> impl Future<Output = StoreResult<Option<ChannelRecord>>> + Send;
    /// Appends an entry with its writer's franking commitment, if any, atomically (sequence
    /// number and quota checked in one transaction, so concurrent appends on any number of
    /// instances never share a sequence number).
    fn append_entry(
        &self,
        id: &Id,
        body: &[u8],
        commitment: Option<&[u8; 32]>,
        now: i64,
        quota: ChannelQuota,
    ) -> impl Future<Output = StoreResult<AppendOutcome>> + Send;
    /// Entries with `seq > after`, oldest first, at most `limit`.
    fn entries(
        &self,
        id: &Id,
        after: i64,
        limit: u32,
    ) -> impl Future<Output = StoreResult<Vec<ChannelEntry>>> + Send;
    /// Deletes channels (and their entries) expired at `now`. Returns how many channels.
    fn reap_channels(&self, now: i64) -> impl Future<Output = StoreResult<u64>> + Send;
}

/// Single-use WebSocket tickets.
pub trait TicketStore {
    /// Stores a ticket hash for `session`.
    fn put_ticket(
        &self,
        hash: &[u8; 32],
        session: &Session,
        expires_at: i64,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    /// Consumes (deletes) a ticket; `None` if unknown, used or expired at `now`.
    fn take_ticket(
        &self,
        hash: &[u8; 32],
        now: i64,
    ) -> impl Future<Output = StoreResult<Option<Session>>> + Send;
    /// Deletes expired tickets. Returns how many.
    fn reap_tickets(&self, now: i64) -> impl Future<Output = StoreResult<u64>> + Send;
}

/// Implements [`ChannelStore`] and [`TicketStore`] for a type with a `pool` field.
macro_rules! impl_channel_store {
    ($store:ty, $db:ty) => {
        fn channel_id(
            row: &<$db as sqlx::Database>::Row,
            column: &str,
            table: &'static str,
        ) -> $crate::db::error::StoreResult<$crate::ids::Id> {
            use sqlx::Row as _;
            let bytes: Vec<u8> = row.try_get(column)?;
            $crate::ids::Id::from_slice(&bytes)
                .map_err(|_| $crate::db::error::StoreError::Corrupt { table })
        }

        impl $crate::channels::store::ChannelStore for $store {
            async fn create_channel(
                &self,
                channel: &$crate::channels::store::NewChannel,
            ) -> $crate::db::error::StoreResult<()> {
                sqlx::query(
                    "INSERT INTO channels (id, read_hash, write_hash, created_at, expires_at) \
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(&channel.id.as_bytes()[..])
                .bind(&channel.read_hash[..])
                .bind(&channel.write_hash[..])
                .bind(channel.created_at)
                .bind(channel.expires_at)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn channel(
                &self,
                id: &$crate::ids::Id,
                now: i64,
            ) -> $crate::db::error::StoreResult<Option<$crate::channels::store::ChannelRecord>> {
                use sqlx::Row as _;
                let row = sqlx::query(
                    "SELECT id, read_hash, write_hash, created_at, expires_at, entry_count, \
                     byte_count, last_seq FROM channels WHERE id = $1 AND expires_at > $2",
                )
                .bind(&id.as_bytes()[..])
                .bind(now)
                .fetch_optional(&self.pool)
                .await?;
                let Some(row) = row else { return Ok(None) };
                Ok(Some($crate::channels::store::ChannelRecord {
                    id: channel_id(&row, "id", "channels")?,
                    read_hash: row.try_get("read_hash")?,
                    write_hash: row.try_get("write_hash")?,
                    created_at: row.try_get("created_at")?,
                    expires_at: row.try_get("expires_at")?,
                    entry_count: row.try_get("entry_count")?,
                    byte_count: row.try_get("byte_count")?,
                    last_seq: row.try_get("last_seq")?,
                }))
            }

            async fn append_entry(
                &self,
                id: &$crate::ids::Id,
                body: &[u8],
                commitment: Option<&[u8; 32]>,
                now: i64,
                quota: $crate::channels::store::ChannelQuota,
            ) -> $crate::db::error::StoreResult<$crate::channels::store::AppendOutcome> {
                use sqlx::Row as _;
                let len = i64::try_from(body.len()).unwrap_or(i64::MAX);
                let mut tx = self.pool.begin_with(<$db as $crate::db::sql::TxBegin>::BEGIN).await?;
                // The UPDATE takes the row's write lock (Postgres) / the database write lock
                // (SQLite), so the sequence number and the quota check are atomic.
                let row = sqlx::query(
                    "UPDATE channels SET last_seq = last_seq + 1, entry_count = entry_count + 1, \
                     byte_count = byte_count + $2 \
                     WHERE id = $1 AND expires_at > $3 AND entry_count < $4 \
                     AND byte_count + $2 <= $5 RETURNING last_seq",
                )
                .bind(&id.as_bytes()[..])
                .bind(len)
                .bind(now)
                .bind(quota.max_entries)
                .bind(quota.max_bytes)
                .fetch_optional(&mut *tx)
                .await?;
                let Some(row) = row else {
                    drop(tx);
                    let exists = sqlx::query("SELECT 1 AS one FROM channels WHERE id = $1 AND expires_at > $2")
                        .bind(&id.as_bytes()[..])
                        .bind(now)
                        .fetch_optional(&self.pool)
                        .await?;
                    return Ok(if exists.is_some() {
                        $crate::channels::store::AppendOutcome::QuotaExceeded
                    } else {
                        $crate::channels::store::AppendOutcome::NotFound
                    });
                };
                let seq: i64 = row.try_get("last_seq")?;
                sqlx::query(
                    "INSERT INTO channel_entries (channel_id, seq, body, created_at, \
                     franking_commitment) VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(&id.as_bytes()[..])
                .bind(seq)
                .bind(body)
                .bind(now)
                .bind(commitment.map(|c| &c[..]))
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok($crate::channels::store::AppendOutcome::Appended(seq))
            }

            async fn entries(
                &self,
                id: &$crate::ids::Id,
                after: i64,
                limit: u32,
            ) -> $crate::db::error::StoreResult<Vec<$crate::channels::store::ChannelEntry>> {
                use sqlx::Row as _;
                let rows = sqlx::query(
                    "SELECT seq, body, created_at, franking_commitment FROM channel_entries \
                     WHERE channel_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
                )
                .bind(&id.as_bytes()[..])
                .bind(after)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?;
                rows.iter()
                    .map(|row| {
                        let commitment: Option<Vec<u8>> = row.try_get("franking_commitment")?;
                        Ok($crate::channels::store::ChannelEntry {
                            seq: row.try_get("seq")?,
                            body: row.try_get("body")?,
                            created_at: row.try_get("created_at")?,
                            franking_commitment: commitment
                                .map(|c| <[u8; 32]>::try_from(c.as_slice()))
                                .transpose()
                                .map_err(|_| $crate::db::error::StoreError::Corrupt {
                                    table: "channel_entries",
                                })?,
                        })
                    })
                    .collect()
            }

            async fn reap_channels(&self, now: i64) -> $crate::db::error::StoreResult<u64> {
                let done = sqlx::query("DELETE FROM channels WHERE expires_at <= $1")
                    .bind(now)
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected())
            }
        }

        impl $crate::channels::store::TicketStore for $store {
            async fn put_ticket(
                &self,
                hash: &[u8; 32],
                session: &$crate::accounts::session::Session,
                expires_at: i64,
            ) -> $crate::db::error::StoreResult<()> {
                sqlx::query(
                    "INSERT INTO ws_tickets (ticket_hash, account_id, device_id, family_id, expires_at) \
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(&hash[..])
                .bind(&session.account.as_bytes()[..])
                .bind(&session.device.as_bytes()[..])
                .bind(&session.family.as_bytes()[..])
                .bind(expires_at)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn take_ticket(
                &self,
                hash: &[u8; 32],
                now: i64,
            ) -> $crate::db::error::StoreResult<Option<$crate::accounts::session::Session>> {
                use sqlx::Row as _;
                // DELETE … RETURNING: single use even when two instances race on one ticket.
                let row = sqlx::query(
                    "DELETE FROM ws_tickets WHERE ticket_hash = $1 \
                     RETURNING account_id, device_id, family_id, expires_at",
                )
                .bind(&hash[..])
                .fetch_optional(&self.pool)
                .await?;
                let Some(row) = row else { return Ok(None) };
                let expires_at: i64 = row.try_get("expires_at")?;
                if expires_at <= now {
                    return Ok(None);
                }
                Ok(Some($crate::accounts::session::Session {
                    account: channel_id(&row, "account_id", "ws_tickets")?,
                    device: channel_id(&row, "device_id", "ws_tickets")?,
                    family: channel_id(&row, "family_id", "ws_tickets")?,
                }))
            }

            async fn reap_tickets(&self, now: i64) -> $crate::db::error::StoreResult<u64> {
                let done = sqlx::query("DELETE FROM ws_tickets WHERE expires_at <= $1")
                    .bind(now)
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected())
            }
        }
    };
}

pub(crate) use impl_channel_store;
