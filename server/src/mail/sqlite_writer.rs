//! The SQLite mailbox writer: group commit (`store/batch.rs`) on a dedicated thread with its own
//! connection, through the SQLite C library directly (rusqlite) rather than the async pool.
//!
//! Why a separate path: the async driver runs every connection on a thread of its own and hands
//! each statement, and each result row, across a channel; a batch of a dozen statements was a
//! few dozen thread switches, which cost more CPU than SQLite's own work and added milliseconds
//! of latency to every send on a busy machine. Here one thread owns the connection, takes
//! everything queued while its previous batch was committing, runs the batch with prepared,
//! cached statements (microseconds each) and answers the callers: one hand-over per batch in
//! each direction. The connection's page cache also stays warm, since nothing else writes.
//!
//! The semantics are those of the Postgres writer applying a batch in queue order: each write
//! is all-or-nothing inside the batch transaction (a delivery checks everything before writing
//! anything), later writes see earlier ones, and nobody is answered before the commit. If the
//! batch transaction fails as a whole, its writes are retried one transaction each, so one bad
//! write cannot fail its neighbours.
//!
//! The writer opens the database after the async pool has created and migrated it, with the
//! same settings (WAL, `synchronous`, foreign keys, busy timeout).
//!
//! Checkpoints (copying the WAL back into the database file) are taken off the write path.
//! SQLite's automatic checkpoint runs inside the commit that crosses 1000 WAL pages, so under
//! load a few percent of the batches waited for megabytes of copying and an `fsync` of the
//! database file: those were the slowest sends. The writer's connection has it turned off; a
//! checkpointer thread with its own connection, woken after commits (at most every
//! [`BACKGROUND_PAUSE`]), copies in `PASSIVE` mode while the writer goes on. A checkpoint that
//! runs while the writer appends can never finish the WAL, and only a finished one lets the
//! next transaction start the WAL over, so the writer itself also checkpoints whenever its
//! queue is empty and after every [`WRITER_CHECKPOINT_EVERY`] batches: by then only the pages
//! written since the background's last pass are left to copy.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension as _, Transaction, TransactionBehavior, params};
use tokio::sync::mpsc;

use crate::db::error::{StoreError, StoreResult};
use crate::ids::Id;
use crate::mail::batch::{MailWrite, WriteOutcome, envelope_digest, settle, single};
use crate::mail::store::{Delivery, DeliveryOutcome, QueueLimits, StoredEnvelope};
use crate::settings;
use crate::settings::DatabaseSettings;

/// Pause of the background checkpointer between two passes.
const BACKGROUND_PAUSE: Duration = Duration::from_millis(20);

/// Batches after which the writer finishes a checkpoint itself, if its queue never ran empty.
const WRITER_CHECKPOINT_EVERY: u32 = 16;

/// Opens a connection to the (already migrated) database file, without automatic checkpoints.
fn open(path: &Path, db: &DatabaseSettings, cache_kib: u32) -> StoreResult<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    let synchronous = match db.sqlite_synchronous {
        settings::SqliteSynchronous::Normal => "NORMAL",
        _ => "FULL",
    };
    conn.execute_batch(&format!(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = {synchronous}; \
         PRAGMA foreign_keys = ON; PRAGMA cache_size = -{cache_kib}; \
         PRAGMA wal_autocheckpoint = 0;"
    ))?;
    conn.set_prepared_statement_cache_capacity(32);
    Ok(conn)
}

/// Starts the writer thread and its checkpointer on the database file at `path`. Both stop
/// once every sender of `rx` is gone.
pub(crate) fn spawn(
    path: &Path,
    db: &DatabaseSettings,
    cache_kib: u32,
    rx: mpsc::Receiver<MailWrite>,
) -> StoreResult<()> {
    let conn = open(path, db, cache_kib)?;
    let checkpoint_conn = open(path, db, 256)?;
    let (wake, woken) = std::sync::mpsc::sync_channel::<()>(1);
    let thread_error =
        |e: std::io::Error| StoreError::InvalidUrl(format!("cannot start a database thread: {e}"));
    // The threads log to whatever subscriber the relay runs under (the binary's global one,
    // or the scoped one of an application or test that embeds the relay).
    let dispatch = tracing::dispatcher::get_default(Clone::clone);
    let writer_dispatch = dispatch.clone();
    std::thread::Builder::new()
        .name("haven-checkpoint".into())
        .spawn(move || {
            let _logs = tracing::dispatcher::set_default(&dispatch);
            // Ends when the writer is gone.
            while woken.recv().is_ok() {
                checkpoint(&checkpoint_conn);
                std::thread::sleep(BACKGROUND_PAUSE);
            }
        })
        .map_err(thread_error)?;
    let max_batch = db.max_write_batch.max(1);
    std::thread::Builder::new()
        .name("haven-mail-writer".into())
        .spawn(move || {
            let _logs = tracing::dispatcher::set_default(&writer_dispatch);
            run(conn, rx, max_batch, wake);
        })
        .map_err(thread_error)?;
    Ok(())
}

/// One `PASSIVE` checkpoint (never waits for a lock; does nothing if another is running).
fn checkpoint(conn: &Connection) {
    let done: rusqlite::Result<(i64, i64, i64)> =
        conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        });
    match done {
        Ok((_, frames, copied)) => {
            metrics::gauge!("haven_sqlite_wal_pages").set(frames as f64);
            metrics::gauge!("haven_sqlite_wal_pages_checkpointed").set(copied as f64);
        }
        Err(err) => tracing::warn!(%err, "sqlite checkpoint failed"),
    }
}

fn run(
    mut conn: Connection,
    mut rx: mpsc::Receiver<MailWrite>,
    max_batch: usize,
    wake_checkpointer: std::sync::mpsc::SyncSender<()>,
) {
    let mut batch: Vec<MailWrite> = Vec::with_capacity(max_batch);
    let mut cache = Cache::default();
    let mut since_checkpoint = 0u32;
    loop {
        let first = match rx.try_recv() {
            Ok(write) => write,
            Err(mpsc::error::TryRecvError::Empty) => {
                // Nothing waiting: finish the checkpoint now, so the WAL starts over.
                if since_checkpoint > 0 {
                    checkpoint(&conn);
                    since_checkpoint = 0;
                }
                match rx.blocking_recv() {
                    Some(write) => write,
                    None => break,
                }
            }
            Err(mpsc::error::TryRecvError::Disconnected) => break,
        };
        batch.push(first);
        while batch.len() < max_batch {
            match rx.try_recv() {
                Ok(write) => batch.push(write),
                Err(_) => break,
            }
        }
        let items: Vec<MailWrite> = std::mem::take(&mut batch);
        metrics::histogram!("haven_mail_write_batch_size").record(items.len() as f64);
        let started = std::time::Instant::now();
        let applied = apply(&mut conn, &mut cache, &items);
        metrics::histogram!("haven_mail_write_batch_seconds")
            .record(started.elapsed().as_secs_f64());
        for item in settle(items, applied).unwrap_or_default() {
            let result = single(apply(&mut conn, &mut cache, std::slice::from_ref(&item)));
            item.answer(result);
        }
        since_checkpoint += 1;
        let _ = wake_checkpointer.try_send(());
        if since_checkpoint >= WRITER_CHECKPOINT_EVERY {
            checkpoint(&conn);
            since_checkpoint = 0;
        }
    }
}

/// Most accounts plus devices the writer keeps cached; past that the cache starts over.
const MAX_CACHED: usize = 100_000;

/// What the writer has read (device lists and queue usage), kept up to date by its own writes
/// and valid as long as no other connection has written: SQLite's `data_version` of this
/// connection changes exactly when another connection commits. Checked at the start of every
/// batch, under the write lock, so nothing can change it until the commit.
#[derive(Default)]
struct Cache {
    /// `data_version` the entries are valid for.
    data_version: Option<i64>,
    /// Per account: next device number and current device numbers; `None`: no such account.
    lists: HashMap<Id, Option<(u32, Vec<u32>)>>,
    /// Per device: queued envelopes, bytes, highest sequence number (possibly higher than the
    /// real one after acks out of order: a push then names a predecessor that is gone, and its
    /// socket reads the queue, which is always safe).
    usage: HashMap<(Id, u32), (u64, u64, Option<i64>)>,
}

impl Cache {
    fn clear(&mut self) {
        self.data_version = None;
        self.lists.clear();
        self.usage.clear();
    }
}

/// Applies the writes in queue order in one `BEGIN IMMEDIATE` transaction and commits once.
/// The cache is dropped if anything fails (it may hold what the rolled back batch wrote).
fn apply(
    conn: &mut Connection,
    cache: &mut Cache,
    items: &[MailWrite],
) -> StoreResult<Vec<WriteOutcome>> {
    let result = apply_in(conn, cache, items);
    if result.is_err() {
        cache.clear();
    }
    result
}

fn apply_in(
    conn: &mut Connection,
    state: &mut Cache,
    items: &[MailWrite],
) -> StoreResult<Vec<WriteOutcome>> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let version: i64 = tx.query_row("PRAGMA data_version", [], |r| r.get(0))?;
    if state.data_version != Some(version) || state.lists.len() + state.usage.len() > MAX_CACHED {
        state.clear();
        state.data_version = Some(version);
    }
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        out.push(match item {
            MailWrite::Deliver {
                delivery, limits, ..
            } => WriteOutcome::Delivered(deliver(&tx, delivery, *limits, state)?),
            MailWrite::AckIds {
                account,
                device,
                ids,
                ..
            } => WriteOutcome::Acked(ack(&tx, state, account, *device, Selection::Ids(ids))?),
            MailWrite::AckUpTo {
                account,
                device,
                up_to,
                ..
            } => WriteOutcome::Acked(ack(&tx, state, account, *device, Selection::UpTo(*up_to))?),
        });
    }
    tx.commit()?;
    Ok(out)
}

fn u32_from(n: i64, table: &'static str) -> StoreResult<u32> {
    u32::try_from(n).map_err(|_| StoreError::Corrupt { table })
}

fn u64_from(n: i64, table: &'static str) -> StoreResult<u64> {
    u64::try_from(n).map_err(|_| StoreError::Corrupt { table })
}

/// The account's device list, read once per batch.
fn device_list<'s>(
    tx: &Transaction<'_>,
    state: &'s mut Cache,
    account: &Id,
) -> StoreResult<Option<&'s (u32, Vec<u32>)>> {
    if !state.lists.contains_key(account) {
        let next: Option<i64> = tx
            .prepare_cached("SELECT next_device_number FROM accounts WHERE id = ?1")?
            .query_row(params![&account.as_bytes()[..]], |r| r.get(0))
            .optional()?;
        let list = match next {
            None => None,
            Some(next) => {
                let mut stmt = tx.prepare_cached(
                    "SELECT device_number FROM devices WHERE account_id = ?1 ORDER BY device_number",
                )?;
                let mut numbers = Vec::new();
                let mut rows = stmt.query(params![&account.as_bytes()[..]])?;
                while let Some(row) = rows.next()? {
                    numbers.push(u32_from(row.get(0)?, "devices")?);
                }
                Some((u32_from(next, "accounts")?, numbers))
            }
        };
        state.lists.insert(*account, list);
    }
    Ok(state.lists.get(account).and_then(Option::as_ref))
}

/// A device's queue usage, read once per batch.
fn usage(
    tx: &Transaction<'_>,
    state: &mut Cache,
    account: &Id,
    device: u32,
) -> StoreResult<(u64, u64, Option<i64>)> {
    if let Some(u) = state.usage.get(&(*account, device)) {
        return Ok(*u);
    }
    let (n, bytes, max): (i64, i64, Option<i64>) = tx
        .prepare_cached(
            "SELECT COUNT(*), COALESCE(SUM(size), 0), MAX(seq) FROM envelopes \
             WHERE account_id = ?1 AND device_number = ?2",
        )?
        .query_row(params![&account.as_bytes()[..], i64::from(device)], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?;
    let u = (
        u64_from(n, "envelopes")?,
        u64_from(bytes, "envelopes")?,
        max,
    );
    state.usage.insert((*account, device), u);
    Ok(u)
}

/// One delivery: device lists, devices, idempotency and queue limits are all checked before
/// anything is written, so a refused delivery leaves the batch untouched.
fn deliver(
    tx: &Transaction<'_>,
    delivery: &Delivery,
    limits: QueueLimits,
    state: &mut Cache,
) -> StoreResult<DeliveryOutcome> {
    let mut mismatches = Vec::new();
    for check in &delivery.device_checks {
        let Some((next, numbers)) = device_list(tx, state, &check.account)? else {
            return Ok(DeliveryOutcome::UnknownAccount(check.account));
        };
        if let Some(m) = check.compare(*next, numbers) {
            mismatches.push(m);
        }
    }
    if !mismatches.is_empty() {
        return Ok(DeliveryOutcome::Devices(mismatches));
    }
    for e in &delivery.envelopes {
        let present = device_list(tx, state, &e.account)?
            .is_some_and(|(_, numbers)| numbers.binary_search(&e.device).is_ok());
        if !present {
            return Ok(DeliveryOutcome::DeviceGone {
                account: e.account,
                device: e.device,
            });
        }
    }
    let shared_len = delivery
        .shared_payload
        .as_ref()
        .map_or(0, |p| p.payload.len());
    // Check: idempotency (queued or acked within its TTL), then the queue limits, counting what
    // this delivery itself adds. `Ok(seq)`: a duplicate; `Err((digest, size))`: new.
    let mut plans: Vec<Result<i64, (Vec<u8>, u64)>> = Vec::with_capacity(delivery.envelopes.len());
    let mut added: HashMap<(Id, u32), (u64, u64)> = HashMap::new();
    let mut keys: HashSet<(Id, u32, Id)> = HashSet::new();
    for e in &delivery.envelopes {
        let digest = envelope_digest(e, delivery.shared_payload.as_ref());
        if !keys.insert((e.account, e.device, e.message_id)) {
            // The same key twice in one delivery: the second is a duplicate of the first.
            return Ok(DeliveryOutcome::IdConflict {
                account: e.account,
                device: e.device,
            });
        }
        let existing: Option<(i64, Vec<u8>)> = tx
            .prepare_cached(
                "SELECT seq, digest FROM envelopes \
                 WHERE account_id = ?1 AND device_number = ?2 AND message_id = ?3 \
                 UNION ALL SELECT seq, digest FROM acked_envelopes \
                 WHERE account_id = ?1 AND device_number = ?2 AND message_id = ?3",
            )?
            .query_row(
                params![
                    &e.account.as_bytes()[..],
                    i64::from(e.device),
                    &e.message_id.as_bytes()[..]
                ],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        if let Some((seq, old)) = existing {
            if old != digest {
                return Ok(DeliveryOutcome::IdConflict {
                    account: e.account,
                    device: e.device,
                });
            }
            plans.push(Ok(seq));
            continue;
        }
        let size = u64::try_from(e.content.len() + shared_len).unwrap_or(u64::MAX);
        let (count, bytes, _) = usage(tx, state, &e.account, e.device)?;
        let extra = added.entry((e.account, e.device)).or_default();
        if count.saturating_add(extra.0) >= limits.max_messages
            || bytes.saturating_add(extra.1).saturating_add(size) > limits.max_bytes
        {
            return Ok(DeliveryOutcome::QueueFull {
                account: e.account,
                device: e.device,
            });
        }
        extra.0 += 1;
        extra.1 = extra.1.saturating_add(size);
        plans.push(Err((digest, size)));
    }
    // Write.
    if let Some(shared) = &delivery.shared_payload
        && plans.iter().any(Result::is_err)
    {
        tx.prepare_cached(
            "INSERT INTO shared_payloads (id, payload, expires_at) VALUES (?1, ?2, ?3) \
             ON CONFLICT (id) DO UPDATE SET expires_at = excluded.expires_at \
             WHERE shared_payloads.expires_at < excluded.expires_at",
        )?
        .execute(params![
            &shared.id.as_bytes()[..],
            &shared.payload[..],
            delivery.expires_at
        ])?;
    }
    let source_account = delivery.source.as_ref().map(|(a, _)| a.as_bytes().to_vec());
    let source_device = delivery.source.as_ref().map(|(_, d)| i64::from(*d));
    let payload_id = delivery
        .shared_payload
        .as_ref()
        .map(|p| p.id.as_bytes().to_vec());
    let mut stored = Vec::with_capacity(delivery.envelopes.len());
    for (e, plan) in delivery.envelopes.iter().zip(plans) {
        let (digest, size) = match plan {
            Ok(seq) => {
                stored.push(StoredEnvelope {
                    account: e.account,
                    device: e.device,
                    seq,
                    duplicate: true,
                    prev_seq: None,
                });
                continue;
            }
            Err(new) => new,
        };
        tx.prepare_cached(
            "INSERT INTO envelopes (account_id, device_number, message_id, source_account, \
             source_device, content, payload_id, digest, size, received_at, expires_at, \
             franking_commitment) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        )?
        .execute(params![
            &e.account.as_bytes()[..],
            i64::from(e.device),
            &e.message_id.as_bytes()[..],
            source_account,
            source_device,
            &e.content[..],
            payload_id,
            &digest[..],
            i64::try_from(size).unwrap_or(i64::MAX),
            delivery.received_at,
            delivery.expires_at,
            e.franking_commitment.as_ref().map(|c| &c[..]),
        ])?;
        let seq = tx.last_insert_rowid();
        // The device's usage was read during the checks; keep it current for later writes.
        let prev_seq = match state.usage.get_mut(&(e.account, e.device)) {
            Some(u) => {
                u.0 = u.0.saturating_add(1);
                u.1 = u.1.saturating_add(size);
                u.2.replace(seq)
            }
            None => None,
        };
        stored.push(StoredEnvelope {
            account: e.account,
            device: e.device,
            seq,
            duplicate: false,
            prev_seq,
        });
    }
    Ok(DeliveryOutcome::Stored(stored))
}

/// Which envelopes of a device an ack removes.
enum Selection<'a> {
    Ids(&'a [Id]),
    UpTo(i64),
}

/// One ack: records a tombstone of each acked envelope (until the envelope would have expired)
/// and deletes it, then drops the shared payloads nothing refers to any more. Returns how many
/// envelopes were deleted.
fn ack(
    tx: &Transaction<'_>,
    state: &mut Cache,
    account: &Id,
    device: u32,
    selection: Selection<'_>,
) -> StoreResult<u64> {
    let acct = &account.as_bytes()[..];
    let dev = i64::from(device);
    let mut deleted = 0u64;
    let mut deleted_bytes = 0u64;
    let mut payloads: Vec<Vec<u8>> = Vec::new();
    let mut collect = |rows: &mut rusqlite::Rows<'_>| -> StoreResult<()> {
        while let Some(row) = rows.next()? {
            deleted += 1;
            deleted_bytes = deleted_bytes.saturating_add(u64_from(row.get(1)?, "envelopes")?);
            if let Some(p) = row.get::<_, Option<Vec<u8>>>(0)? {
                payloads.push(p);
            }
        }
        Ok(())
    };
    match selection {
        Selection::Ids(ids) => {
            let mut tomb = tx.prepare_cached(
                "INSERT INTO acked_envelopes (account_id, device_number, message_id, seq, digest, \
                 expires_at) SELECT account_id, device_number, message_id, seq, digest, expires_at \
                 FROM envelopes WHERE account_id = ?1 AND device_number = ?2 AND message_id = ?3 \
                 ON CONFLICT (account_id, device_number, message_id) DO UPDATE SET \
                 seq = excluded.seq, digest = excluded.digest, expires_at = excluded.expires_at",
            )?;
            let mut delete = tx.prepare_cached(
                "DELETE FROM envelopes WHERE account_id = ?1 AND device_number = ?2 \
                 AND message_id = ?3 RETURNING payload_id, size",
            )?;
            let mut seen = HashSet::with_capacity(ids.len());
            for id in ids {
                if !seen.insert(*id) {
                    continue;
                }
                let p = params![acct, dev, &id.as_bytes()[..]];
                tomb.execute(p)?;
                collect(&mut delete.query(p)?)?;
            }
        }
        Selection::UpTo(up_to) => {
            tx.prepare_cached(
                "INSERT INTO acked_envelopes (account_id, device_number, message_id, seq, digest, \
                 expires_at) SELECT account_id, device_number, message_id, seq, digest, expires_at \
                 FROM envelopes WHERE account_id = ?1 AND device_number = ?2 AND seq <= ?3 \
                 ON CONFLICT (account_id, device_number, message_id) DO UPDATE SET \
                 seq = excluded.seq, digest = excluded.digest, expires_at = excluded.expires_at",
            )?
            .execute(params![acct, dev, up_to])?;
            collect(
                &mut tx
                    .prepare_cached(
                        "DELETE FROM envelopes WHERE account_id = ?1 AND device_number = ?2 \
                         AND seq <= ?3 RETURNING payload_id, size",
                    )?
                    .query(params![acct, dev, up_to])?,
            )?;
        }
    }
    // Keep the cached usage of the queue current (an empty queue has no highest number).
    if let Some(u) = state.usage.get_mut(&(*account, device)) {
        u.0 = u.0.saturating_sub(deleted);
        u.1 = u.1.saturating_sub(deleted_bytes);
        if u.0 == 0 {
            u.2 = None;
        }
    }
    payloads.sort_unstable();
    payloads.dedup();
    for p in &payloads {
        tx.prepare_cached(
            "DELETE FROM shared_payloads WHERE id = ?1 \
             AND NOT EXISTS (SELECT 1 FROM envelopes WHERE payload_id = ?1)",
        )?
        .execute(params![&p[..]])?;
    }
    Ok(deleted)
}
