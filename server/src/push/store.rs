//! Storage of push endpoints and of the durable wake-up queue (tables `push_endpoints`,
//! `push_queue`, migration 0015), with its SQL for both backends ([`impl_push_sql`]).
//!
//! The queue holds one row per device. Sending the mail only marks the row pending
//! ([`PushStore::enqueue_push`]); a worker on any instance claims due rows
//! ([`PushStore::claim_pushes`]: `FOR UPDATE SKIP LOCKED` on Postgres, one write lock on
//! SQLite, plus a lease so a crashed worker's rows come back), sends, and records the outcome
//! ([`PushStore::finish_push`]). A restart loses nothing: pending rows stay until sent.
//!
//! Every time in `push_queue` (and every `now`, `window` and due time here) is in Unix
//! **milliseconds**, so backoff and coalescing are exact; `push_endpoints.created_at` is in
//! seconds like every other creation time.

use std::future::Future;

use crate::db::error::StoreResult;
use crate::ids::Id;

/// What kind of endpoint a row holds (`push_endpoints.kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum EndpointKind {
    /// A Web Push subscription.
    WebPush,
    /// A pushkey for the operator's gateway.
    Gateway,
}

impl EndpointKind {
    /// The stored code.
    pub fn code(self) -> i16 {
        match self {
            Self::WebPush => 1,
            Self::Gateway => 2,
        }
    }

    /// The kind of a stored code.
    pub fn from_code(code: i16) -> Option<Self> {
        match code {
            1 => Some(Self::WebPush),
            2 => Some(Self::Gateway),
            _ => None,
        }
    }

    /// The API's name (`web_push`, `gateway`).
    pub fn name(self) -> &'static str {
        match self {
            Self::WebPush => "web_push",
            Self::Gateway => "gateway",
        }
    }
}

/// One stored endpoint (its target still sealed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEndpoint {
    /// Endpoint id.
    pub id: Id,
    /// Its kind.
    pub kind: EndpointKind,
    /// The sealed target (`push::target`).
    pub target: Vec<u8>,
    /// Registration time.
    pub created_at: i64,
}

/// What [`PushStore::put_push_endpoint`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PutOutcome {
    /// Stored (inserted, or the row with this id and lookup updated).
    Stored,
    /// The device already has the maximum number of other endpoints.
    TooMany,
    /// A row with this lookup exists under another id (a concurrent registration): look it up
    /// again and retry.
    Raced,
    /// The device does not exist.
    NoDevice,
}

/// A claimed wake-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClaimedPush {
    /// The account.
    pub account: Id,
    /// The device number.
    pub device: u32,
    /// Attempts made so far.
    pub attempts: u32,
    /// Start of the device's current hour of the per-device limit.
    pub hour_start: i64,
    /// Wake-ups sent in that hour.
    pub hour_count: u32,
}

/// What became of a claimed wake-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Finish {
    /// Sent at `now`: the next one is not due before `now + window`; counts in the hour that
    /// started at `hour_start` as its `hour_count`-th.
    Sent {
        /// When.
        now: i64,
        /// Coalescing window, seconds.
        window: i64,
        /// Start of the hour counted in.
        hour_start: i64,
        /// Count in that hour, this one included.
        hour_count: u32,
    },
    /// Try again at `due_at` (attempt number `attempts` failed).
    Retry {
        /// Next attempt.
        due_at: i64,
        /// Attempts made.
        attempts: u32,
    },
    /// Not sent and not to be retried (device online, no endpoint left, attempts exhausted).
    Done {
        /// When.
        now: i64,
    },
    /// Over the per-device limit: wait until `due_at`.
    Defer {
        /// When it may go.
        due_at: i64,
    },
}

/// The push tables.
pub trait PushStore {
    /// The id of the device's endpoint with this lookup hash, if any.
    fn push_endpoint_by_lookup(
        &self,
        account: &Id,
        device: u32,
        lookup: &[u8],
    ) -> impl Future<Output = StoreResult<Option<Id>>> + Send;
    /// Inserts the endpoint, or replaces the target of the device's endpoint with the same
    /// `id` and `lookup`; refuses a new one beyond `max` endpoints per device.
    #[allow(clippy::too_many_arguments)] // One row's columns.
    fn put_push_endpoint(
        &self,
        account: &Id,
        device: u32,
        id: &Id,
        kind: EndpointKind,
        lookup: &[u8],
        target: &[u8],
        now: i64,
        max: usize,
    ) -> impl Future<Output = StoreResult<PutOutcome>> + Send;
    /// The device's endpoints, oldest first.
    fn push_endpoints(
        &self,
        account: &Id,
        device: u32,
    ) -> impl Future<Output = StoreResult<Vec<StoredEndpoint>>> + Send;
    /// Deletes the device's endpoint `id`; whether it existed.
    fn delete_push_endpoint(
        &self,
        account: &Id,
        device: u32,
        id: &Id,
    ) -> impl Future<Output = StoreResult<bool>> + Send;
    /// Marks a wake-up owed to the device if it has an endpoint. Returns when it is due (`None`:
    /// no endpoint, nothing queued). A wake-up already pending keeps its due time; one being
    /// sent right now is owed again after it ("rearm"); otherwise it is due at `now`, or at the
    /// end of the coalescing window `window` after the last one sent.
    fn enqueue_push(
        &self,
        account: &Id,
        device: u32,
        now: i64,
        window: i64,
    ) -> impl Future<Output = StoreResult<Option<i64>>> + Send;
    /// Claims up to `limit` due wake-ups until `lease_until`.
    fn claim_pushes(
        &self,
        now: i64,
        lease_until: i64,
        limit: u32,
    ) -> impl Future<Output = StoreResult<Vec<ClaimedPush>>> + Send;
    /// Records the outcome of a claimed wake-up.
    fn finish_push(
        &self,
        account: &Id,
        device: u32,
        finish: Finish,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    /// Wake-ups pending (owed, sent or not yet): for tests and the benchmark.
    fn pending_pushes(&self) -> impl Future<Output = StoreResult<u64>> + Send;
}

/// Implements [`PushStore`] for a type with a `pool` field. `$skip_locked` is appended to the
/// `SELECT` picking rows to claim (Postgres: ` FOR UPDATE SKIP LOCKED`).
macro_rules! impl_push_sql {
    ($store:ty, $db:ty, $skip_locked:literal) => {
        impl $crate::push::store::PushStore for $store {
            async fn push_endpoint_by_lookup(
                &self,
                account: &$crate::ids::Id,
                device: u32,
                lookup: &[u8],
            ) -> $crate::db::error::StoreResult<Option<$crate::ids::Id>> {
                let row = sqlx::query(
                    "SELECT id FROM push_endpoints \
                     WHERE account_id = $1 AND device_number = $2 AND lookup = $3",
                )
                .bind(&account.as_bytes()[..])
                .bind(i64::from(device))
                .bind(lookup)
                .fetch_optional(&self.pool)
                .await?;
                row.map(|r| row_id(&r, "id", "push_endpoints")).transpose()
            }

            async fn put_push_endpoint(
                &self,
                account: &$crate::ids::Id,
                device: u32,
                id: &$crate::ids::Id,
                kind: $crate::push::store::EndpointKind,
                lookup: &[u8],
                target: &[u8],
                now: i64,
                max: usize,
            ) -> $crate::db::error::StoreResult<$crate::push::store::PutOutcome> {
                use sqlx::Row as _;
                use $crate::push::store::PutOutcome;
                let mut tx = self
                    .pool
                    .begin_with(<$db as $crate::db::sql::TxBegin>::BEGIN)
                    .await?;
                // Serialises registrations of one device (a row lock on Postgres, the write
                // lock on SQLite), so two at once cannot both pass the count.
                let locked = sqlx::query(
                    "UPDATE devices SET device_number = device_number \
                     WHERE account_id = $1 AND device_number = $2",
                )
                .bind(&account.as_bytes()[..])
                .bind(i64::from(device))
                .execute(&mut *tx)
                .await?;
                if locked.rows_affected() == 0 {
                    return Ok(PutOutcome::NoDevice);
                }
                let others: i64 = sqlx::query(
                    "SELECT COUNT(*) AS n FROM push_endpoints \
                     WHERE account_id = $1 AND device_number = $2 AND lookup <> $3",
                )
                .bind(&account.as_bytes()[..])
                .bind(i64::from(device))
                .bind(lookup)
                .fetch_one(&mut *tx)
                .await?
                .try_get("n")?;
                if usize::try_from(others).unwrap_or(usize::MAX) >= max {
                    return Ok(PutOutcome::TooMany);
                }
                let stored = sqlx::query(
                    "INSERT INTO push_endpoints \
                     (id, account_id, device_number, kind, lookup, target, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7) \
                     ON CONFLICT (account_id, device_number, lookup) DO UPDATE \
                     SET target = excluded.target WHERE push_endpoints.id = excluded.id",
                )
                .bind(&id.as_bytes()[..])
                .bind(&account.as_bytes()[..])
                .bind(i64::from(device))
                .bind(kind.code())
                .bind(lookup)
                .bind(target)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(if stored.rows_affected() == 0 {
                    PutOutcome::Raced
                } else {
                    PutOutcome::Stored
                })
            }

            async fn push_endpoints(
                &self,
                account: &$crate::ids::Id,
                device: u32,
            ) -> $crate::db::error::StoreResult<Vec<$crate::push::store::StoredEndpoint>> {
                use sqlx::Row as _;
                let rows = sqlx::query(
                    "SELECT id, kind, target, created_at FROM push_endpoints \
                     WHERE account_id = $1 AND device_number = $2 ORDER BY created_at, id",
                )
                .bind(&account.as_bytes()[..])
                .bind(i64::from(device))
                .fetch_all(&self.pool)
                .await?;
                rows.iter()
                    .map(|r| {
                        let kind: i16 = r.try_get("kind")?;
                        Ok($crate::push::store::StoredEndpoint {
                            id: row_id(r, "id", "push_endpoints")?,
                            kind: $crate::push::store::EndpointKind::from_code(kind).ok_or(
                                $crate::db::error::StoreError::Corrupt {
                                    table: "push_endpoints",
                                },
                            )?,
                            target: r.try_get("target")?,
                            created_at: r.try_get("created_at")?,
                        })
                    })
                    .collect()
            }

            async fn delete_push_endpoint(
                &self,
                account: &$crate::ids::Id,
                device: u32,
                id: &$crate::ids::Id,
            ) -> $crate::db::error::StoreResult<bool> {
                let done = sqlx::query(
                    "DELETE FROM push_endpoints \
                     WHERE account_id = $1 AND device_number = $2 AND id = $3",
                )
                .bind(&account.as_bytes()[..])
                .bind(i64::from(device))
                .bind(&id.as_bytes()[..])
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected() > 0)
            }

            async fn enqueue_push(
                &self,
                account: &$crate::ids::Id,
                device: u32,
                now: i64,
                window: i64,
            ) -> $crate::db::error::StoreResult<Option<i64>> {
                use sqlx::Row as _;
                // A read first: most devices have no endpoint, and a read takes no write lock.
                let has = sqlx::query(
                    "SELECT 1 AS one FROM push_endpoints \
                     WHERE account_id = $1 AND device_number = $2 LIMIT 1",
                )
                .bind(&account.as_bytes()[..])
                .bind(i64::from(device))
                .fetch_optional(&self.pool)
                .await?;
                if has.is_none() {
                    return Ok(None);
                }
                let row = sqlx::query(
                    "INSERT INTO push_queue (account_id, device_number, pending, due_at) \
                     VALUES ($1, $2, 1, $3) \
                     ON CONFLICT (account_id, device_number) DO UPDATE SET \
                     due_at = CASE \
                       WHEN push_queue.pending = 1 THEN push_queue.due_at \
                       WHEN push_queue.last_sent_at + $4 > $3 THEN push_queue.last_sent_at + $4 \
                       ELSE $3 END, \
                     rearm = CASE \
                       WHEN push_queue.pending = 1 AND push_queue.claimed_until > $3 THEN 1 \
                       ELSE push_queue.rearm END, \
                     pending = 1 \
                     RETURNING due_at",
                )
                .bind(&account.as_bytes()[..])
                .bind(i64::from(device))
                .bind(now)
                .bind(window)
                .fetch_one(&self.pool)
                .await?;
                Ok(Some(row.try_get("due_at")?))
            }

            async fn claim_pushes(
                &self,
                now: i64,
                lease_until: i64,
                limit: u32,
            ) -> $crate::db::error::StoreResult<Vec<$crate::push::store::ClaimedPush>> {
                // A read first: the claim is a write, and on SQLite even one that changes no
                // row waits for the write lock the mail writer holds almost all the time under
                // load (it waited 5 s and failed), then stalls the writer while it holds it.
                let due = sqlx::query(
                    "SELECT 1 FROM push_queue \
                     WHERE pending = 1 AND due_at <= $1 AND claimed_until <= $1 LIMIT 1",
                )
                .bind(now)
                .fetch_optional(&self.pool)
                .await?;
                if due.is_none() {
                    return Ok(Vec::new());
                }
                let rows = sqlx::query(concat!(
                    "UPDATE push_queue SET claimed_until = $2 \
                     WHERE (account_id, device_number) IN ( \
                       SELECT account_id, device_number FROM push_queue \
                       WHERE pending = 1 AND due_at <= $1 AND claimed_until <= $1 \
                       ORDER BY due_at LIMIT $3",
                    $skip_locked,
                    ") RETURNING account_id, device_number, attempts, hour_start, hour_count"
                ))
                .bind(now)
                .bind(lease_until)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?;
                rows.iter()
                    .map(|r| {
                        use sqlx::Row as _;
                        Ok($crate::push::store::ClaimedPush {
                            account: row_id(r, "account_id", "push_queue")?,
                            device: row_u32(r, "device_number", "push_queue")?,
                            attempts: row_u32(r, "attempts", "push_queue")?,
                            hour_start: r.try_get("hour_start")?,
                            hour_count: row_u32(r, "hour_count", "push_queue")?,
                        })
                    })
                    .collect()
            }

            async fn finish_push(
                &self,
                account: &$crate::ids::Id,
                device: u32,
                finish: $crate::push::store::Finish,
            ) -> $crate::db::error::StoreResult<()> {
                use $crate::push::store::Finish;
                let account = &account.as_bytes()[..];
                let device = i64::from(device);
                let query = match finish {
                    // A wake-up owed while this one was in flight ("rearm") is due after the
                    // coalescing window.
                    Finish::Sent {
                        now,
                        window,
                        hour_start,
                        hour_count,
                    } => sqlx::query(
                        "UPDATE push_queue SET pending = rearm, rearm = 0, attempts = 0, \
                         claimed_until = 0, last_sent_at = $3, due_at = $3 + $4, \
                         hour_start = $5, hour_count = $6 \
                         WHERE account_id = $1 AND device_number = $2",
                    )
                    .bind(account)
                    .bind(device)
                    .bind(now)
                    .bind(window)
                    .bind(hour_start)
                    .bind(i64::from(hour_count)),
                    Finish::Retry { due_at, attempts } => sqlx::query(
                        "UPDATE push_queue SET pending = 1, rearm = 0, attempts = $4, \
                         claimed_until = 0, due_at = $3 \
                         WHERE account_id = $1 AND device_number = $2",
                    )
                    .bind(account)
                    .bind(device)
                    .bind(due_at)
                    .bind(i64::from(attempts)),
                    Finish::Done { now } => sqlx::query(
                        "UPDATE push_queue SET pending = rearm, rearm = 0, attempts = 0, \
                         claimed_until = 0, due_at = $3 \
                         WHERE account_id = $1 AND device_number = $2",
                    )
                    .bind(account)
                    .bind(device)
                    .bind(now),
                    Finish::Defer { due_at } => sqlx::query(
                        "UPDATE push_queue SET claimed_until = 0, due_at = $3 \
                         WHERE account_id = $1 AND device_number = $2",
                    )
                    .bind(account)
                    .bind(device)
                    .bind(due_at),
                };
                query.execute(&self.pool).await?;
                Ok(())
            }

            async fn pending_pushes(&self) -> $crate::db::error::StoreResult<u64> {
                use sqlx::Row as _;
                let n: i64 = sqlx::query("SELECT COUNT(*) AS n FROM push_queue WHERE pending = 1")
                    .fetch_one(&self.pool)
                    .await?
                    .try_get("n")?;
                Ok(u64::try_from(n).unwrap_or(0))
            }
        }
    };
}

pub(crate) use impl_push_sql;
