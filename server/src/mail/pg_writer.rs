//! The group-commit mailbox writer over sqlx (`store/batch.rs`), used by the Postgres store.
//! SQLite has its own writer on a dedicated thread (`store/sqlite_mail.rs`).

/// Expands, inside a store module that also expands [`impl_sql_store!`](crate::db::sql), to
/// the writer tasks (`spawn_mail_writers`). `$lock_devices` locks a batch's recipient devices
/// (column arrays `$1` of accounts, `$2` of device numbers) and returns those that exist.
///
/// Every set statement binds column arrays (`UNNEST`) rather than a list of values: its text is
/// the same for any number of rows, so each connection prepares it once (a `VALUES` list of a
/// new length was a new statement to parse and plan, and evicted others from the cache).
macro_rules! impl_sql_mail_writer {
    ($db:ty, $lock_devices:literal) => {
        /// Counts deleted envelope rows and collects the shared payloads they referred to.
        fn collect_payloads(
            rows: &[<$db as sqlx::Database>::Row],
            payloads: &mut Vec<Vec<u8>>,
        ) -> $crate::db::error::StoreResult<u64> {
            use sqlx::Row as _;
            for row in rows {
                if let Some(p) = row.try_get::<Option<Vec<u8>>, _>("payload_id")? {
                    payloads.push(p);
                }
            }
            Ok(u64::try_from(rows.len()).unwrap_or(u64::MAX))
        }

        /// Deletes those of `payloads` that no envelope refers to any more.
        async fn drop_orphan_payloads(
            tx: &mut sqlx::Transaction<'_, $db>,
            mut payloads: Vec<Vec<u8>>,
        ) -> $crate::db::error::StoreResult<()> {
            payloads.sort_unstable();
            payloads.dedup();
            for payload in &payloads {
                sqlx::query(
                    "DELETE FROM shared_payloads WHERE id = $1 \
                     AND NOT EXISTS (SELECT 1 FROM envelopes WHERE payload_id = $1)",
                )
                .bind(&payload[..])
                .execute(&mut **tx)
                .await?;
            }
            Ok(())
        }

        use $crate::mail::batch::envelope_digest;

        /// Queue usage per device (envelopes, bytes, highest sequence number), read once per
        /// batch and then kept up to date by the batch's own inserts.
        type QueueUsage = std::collections::HashMap<($crate::ids::Id, u32), (u64, u64, Option<i64>)>;

        /// Device lists of accounts: next device number and current device numbers. An
        /// account that does not exist has no entry.
        type DeviceLists = std::collections::HashMap<$crate::ids::Id, (u32, Vec<u32>)>;

        /// Reads the device lists of every account a batch's deliveries check, in one statement
        /// per chunk. Runs after the recipient devices are locked.
        async fn load_device_lists<'d>(
            tx: &mut sqlx::Transaction<'_, $db>,
            deliveries: impl Iterator<Item = &'d $crate::mail::store::Delivery>,
        ) -> $crate::db::error::StoreResult<DeviceLists> {
            use sqlx::Row as _;
            let mut accounts: Vec<$crate::ids::Id> =
                deliveries.flat_map(|d| d.device_checks.iter().map(|c| c.account)).collect();
            accounts.sort_unstable();
            accounts.dedup();
            let mut lists = DeviceLists::new();
            if accounts.is_empty() {
                return Ok(lists);
            }
            let ids: Vec<&[u8]> = accounts.iter().map(|a| &a.as_bytes()[..]).collect();
            {
                let rows = sqlx::query(
                    "SELECT a.id AS account_id, a.next_device_number, d.device_number \
                     FROM accounts a LEFT JOIN devices d ON d.account_id = a.id \
                     WHERE a.id = ANY($1::bytea[])",
                )
                .bind(&ids)
                .fetch_all(&mut **tx)
                .await?;
                for row in rows {
                    let account = row_id(&row, "account_id", "accounts")?;
                    let next = row_u32(&row, "next_device_number", "accounts")?;
                    let entry = lists.entry(account).or_insert_with(|| (next, Vec::new()));
                    let number: Option<i64> = row.try_get("device_number")?;
                    if let Some(n) = number {
                        entry.1.push(
                            u32::try_from(n).map_err(|_| $crate::db::error::StoreError::Corrupt { table: "devices" })?,
                        );
                    }
                }
            }
            Ok(lists)
        }

        /// The outcome refusing `delivery` because a device list it checks is stale or its
        /// account is unknown, if so.
        fn check_device_lists(
            delivery: &$crate::mail::store::Delivery,
            lists: &DeviceLists,
        ) -> Option<$crate::mail::store::DeliveryOutcome> {
            let mut mismatches = Vec::new();
            for check in &delivery.device_checks {
                let Some((next, numbers)) = lists.get(&check.account) else {
                    return Some($crate::mail::store::DeliveryOutcome::UnknownAccount(check.account));
                };
                if let Some(m) = check.compare(*next, numbers) {
                    mismatches.push(m);
                }
            }
            (!mismatches.is_empty()).then_some($crate::mail::store::DeliveryOutcome::Devices(mismatches))
        }

        async fn queue_usage(
            tx: &mut sqlx::Transaction<'_, $db>,
            usage: &mut QueueUsage,
            account: &$crate::ids::Id,
            device: u32,
        ) -> $crate::db::error::StoreResult<(u64, u64, Option<i64>)> {
            if let Some(u) = usage.get(&(*account, device)) {
                return Ok(*u);
            }
            use sqlx::Row as _;
            let row = sqlx::query(
                "SELECT COUNT(*) AS n, CAST(COALESCE(SUM(size), 0) AS BIGINT) AS bytes, \
                 MAX(seq) AS max_seq FROM envelopes WHERE account_id = $1 AND device_number = $2",
            )
            .bind(&account.as_bytes()[..])
            .bind(i64::from(device))
            .fetch_one(&mut **tx)
            .await?;
            let u = (
                row_u64(&row, "n", "envelopes")?,
                row_u64(&row, "bytes", "envelopes")?,
                row.try_get::<Option<i64>, _>("max_seq")?,
            );
            usage.insert((*account, device), u);
            Ok(u)
        }

        /// One delivery inside a batch transaction whose recipient devices are already locked
        /// (`gone`: those that do not exist). Checks every envelope first and writes nothing
        /// unless all of them can be stored, so a refused delivery leaves the batch untouched.
        async fn deliver_in(
            tx: &mut sqlx::Transaction<'_, $db>,
            delivery: &$crate::mail::store::Delivery,
            limits: $crate::mail::store::QueueLimits,
            gone: &std::collections::HashSet<($crate::ids::Id, u32)>,
            lists: &DeviceLists,
            usage: &mut QueueUsage,
        ) -> $crate::db::error::StoreResult<$crate::mail::store::DeliveryOutcome> {
            use sqlx::Row as _;
            use $crate::mail::store::{DeliveryOutcome, StoredEnvelope};
            if let Some(refused) = check_device_lists(delivery, lists) {
                return Ok(refused);
            }
            let mut targets: Vec<($crate::ids::Id, u32)> =
                delivery.envelopes.iter().map(|e| (e.account, e.device)).collect();
            targets.sort_unstable();
            targets.dedup();
            if let Some((account, device)) = targets.iter().find(|t| gone.contains(t)) {
                return Ok(DeliveryOutcome::DeviceGone { account: *account, device: *device });
            }
            let shared_len = delivery.shared_payload.as_ref().map_or(0, |p| p.payload.len());
            // Check: idempotency (queued or acked within its TTL), then the queue limits,
            // counting what this delivery itself adds.
            let mut plans: Vec<Result<i64, (Vec<u8>, u64)>> = Vec::with_capacity(delivery.envelopes.len());
            let mut added: QueueUsage = std::collections::HashMap::new();
            for envelope in &delivery.envelopes {
                let acct = &envelope.account.as_bytes()[..];
                let dev = i64::from(envelope.device);
                let digest = envelope_digest(envelope, delivery.shared_payload.as_ref());
                let existing = sqlx::query(
                    "SELECT seq, digest FROM envelopes \
                     WHERE account_id = $1 AND device_number = $2 AND message_id = $3 \
                     UNION ALL SELECT seq, digest FROM acked_envelopes \
                     WHERE account_id = $1 AND device_number = $2 AND message_id = $3",
                )
                .bind(acct)
                .bind(dev)
                .bind(&envelope.message_id.as_bytes()[..])
                .fetch_optional(&mut **tx)
                .await?;
                if let Some(row) = existing {
                    let old: Vec<u8> = row.try_get("digest")?;
                    if old != digest {
                        return Ok(DeliveryOutcome::IdConflict {
                            account: envelope.account,
                            device: envelope.device,
                        });
                    }
                    plans.push(Ok(row.try_get("seq")?));
                    continue;
                }
                let size = u64::try_from(envelope.content.len() + shared_len).unwrap_or(u64::MAX);
                let (count, bytes, _) = queue_usage(tx, usage, &envelope.account, envelope.device).await?;
                let extra = added.entry((envelope.account, envelope.device)).or_default();
                let count = count.saturating_add(extra.0);
                let bytes = bytes.saturating_add(extra.1);
                if count >= limits.max_messages || bytes.saturating_add(size) > limits.max_bytes {
                    return Ok(DeliveryOutcome::QueueFull {
                        account: envelope.account,
                        device: envelope.device,
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
                sqlx::query(
                    "INSERT INTO shared_payloads (id, payload, expires_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (id) DO UPDATE SET expires_at = excluded.expires_at \
                     WHERE shared_payloads.expires_at < excluded.expires_at",
                )
                .bind(&shared.id.as_bytes()[..])
                .bind(&shared.payload[..])
                .bind(delivery.expires_at)
                .execute(&mut **tx)
                .await?;
            }
            let mut stored = Vec::with_capacity(delivery.envelopes.len());
            for (envelope, plan) in delivery.envelopes.iter().zip(plans) {
                let (digest, size) = match plan {
                    Ok(seq) => {
                        stored.push(StoredEnvelope {
                            account: envelope.account,
                            device: envelope.device,
                            seq,
                            duplicate: true,
                            prev_seq: None,
                        });
                        continue;
                    }
                    Err(new) => new,
                };
                let row = sqlx::query(
                    "INSERT INTO envelopes (account_id, device_number, message_id, source_account, \
                     source_device, content, payload_id, digest, size, received_at, expires_at, \
                     franking_commitment) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING seq",
                )
                .bind(&envelope.account.as_bytes()[..])
                .bind(i64::from(envelope.device))
                .bind(&envelope.message_id.as_bytes()[..])
                .bind(delivery.source.as_ref().map(|(a, _)| &a.as_bytes()[..]))
                .bind(delivery.source.as_ref().map(|(_, d)| i64::from(*d)))
                .bind(&envelope.content[..])
                .bind(delivery.shared_payload.as_ref().map(|p| &p.id.as_bytes()[..]))
                .bind(&digest[..])
                .bind(i64::try_from(size).unwrap_or(i64::MAX))
                .bind(delivery.received_at)
                .bind(delivery.expires_at)
                .bind(envelope.franking_commitment.as_ref().map(|c| &c[..]))
                .fetch_one(&mut **tx)
                .await?;
                let seq: i64 = row.try_get("seq")?;
                // Every new envelope's device had its usage read during the checks above.
                let max = usage.get_mut(&(envelope.account, envelope.device)).map(|u| &mut u.2);
                let prev_seq = match max {
                    Some(max) => max.replace(seq),
                    None => None,
                };
                stored.push(StoredEnvelope {
                    account: envelope.account,
                    device: envelope.device,
                    seq,
                    duplicate: false,
                    prev_seq,
                });
            }
            for (key, (n, bytes, _)) in added {
                if let Some(u) = usage.get_mut(&key) {
                    u.0 = u.0.saturating_add(n);
                    u.1 = u.1.saturating_add(bytes);
                }
            }
            Ok(DeliveryOutcome::Stored(stored))
        }

        /// Which envelopes of a device an ack removes.
        enum AckSelection<'a> {
            Ids(&'a [$crate::ids::Id]),
            UpTo(i64),
        }

        /// One ack inside a batch transaction: records a tombstone of each acked envelope (until
        /// the envelope would have expired) and deletes it, then drops orphaned shared payloads.
        async fn ack_in(
            tx: &mut sqlx::Transaction<'_, $db>,
            account: &$crate::ids::Id,
            device: u32,
            selection: AckSelection<'_>,
        ) -> $crate::db::error::StoreResult<u64> {
            const TOMBSTONE: &str = "INSERT INTO acked_envelopes (account_id, device_number, \
                message_id, seq, digest, expires_at) SELECT account_id, device_number, message_id, \
                seq, digest, expires_at FROM envelopes WHERE account_id = $1 AND device_number = $2";
            const CONFLICT: &str = " ON CONFLICT (account_id, device_number, message_id) DO UPDATE \
                SET seq = excluded.seq, digest = excluded.digest, expires_at = excluded.expires_at";
            const DELETE: &str = "DELETE FROM envelopes WHERE account_id = $1 AND device_number = $2";
            let acct = &account.as_bytes()[..];
            let dev = i64::from(device);
            let rows = match selection {
                AckSelection::Ids([]) => return Ok(0),
                AckSelection::Ids(ids) => {
                    let ids: Vec<&[u8]> = ids.iter().map(|id| &id.as_bytes()[..]).collect();
                    sqlx::query(&format!("{TOMBSTONE} AND message_id = ANY($3::bytea[]){CONFLICT}"))
                        .bind(acct)
                        .bind(dev)
                        .bind(&ids)
                        .execute(&mut **tx)
                        .await?;
                    sqlx::query(&format!(
                        "{DELETE} AND message_id = ANY($3::bytea[]) RETURNING payload_id"
                    ))
                    .bind(acct)
                    .bind(dev)
                    .bind(&ids)
                    .fetch_all(&mut **tx)
                    .await?
                }
                AckSelection::UpTo(up_to) => {
                    sqlx::query(&format!("{TOMBSTONE} AND seq <= $3{CONFLICT}"))
                        .bind(acct)
                        .bind(dev)
                        .bind(up_to)
                        .execute(&mut **tx)
                        .await?;
                    sqlx::query(&format!("{DELETE} AND seq <= $3 RETURNING payload_id"))
                        .bind(acct)
                        .bind(dev)
                        .bind(up_to)
                        .fetch_all(&mut **tx)
                        .await?
                }
            };
            let mut payloads: Vec<Vec<u8>> = Vec::new();
            let deleted = collect_payloads(&rows, &mut payloads)?;
            drop_orphan_payloads(tx, payloads).await?;
            Ok(deleted)
        }

        /// A queued envelope's identity: recipient account, device number, message id.
        type EnvelopeKey = ($crate::ids::Id, u32, $crate::ids::Id);

        /// Column arrays of envelope keys, bound as `bytea[]`, `int8[]`, `bytea[]`.
        fn key_arrays(keys: &[EnvelopeKey]) -> (Vec<&[u8]>, Vec<i64>, Vec<&[u8]>) {
            let mut accounts = Vec::with_capacity(keys.len());
            let mut devices = Vec::with_capacity(keys.len());
            let mut ids = Vec::with_capacity(keys.len());
            for (account, device, id) in keys {
                accounts.push(&account.as_bytes()[..]);
                devices.push(i64::from(*device));
                ids.push(&id.as_bytes()[..]);
            }
            (accounts, devices, ids)
        }

        /// Column arrays of devices, bound as `bytea[]`, `int8[]`.
        fn device_arrays(devices: &[($crate::ids::Id, u32)]) -> (Vec<&[u8]>, Vec<i64>) {
            devices
                .iter()
                .map(|(account, device)| (&account.as_bytes()[..], i64::from(*device)))
                .unzip()
        }

        fn key_from_row(row: &<$db as sqlx::Database>::Row, table: &'static str) -> $crate::db::error::StoreResult<EnvelopeKey> {
            Ok((
                row_id(row, "account_id", table)?,
                row_u32(row, "device_number", table)?,
                row_id(row, "message_id", table)?,
            ))
        }

        /// Locks the devices (Postgres: row locks taken in one global order; SQLite: the write
        /// lock) and returns those that exist.
        async fn lock_devices(
            tx: &mut sqlx::Transaction<'_, $db>,
            devices: &[($crate::ids::Id, u32)],
        ) -> $crate::db::error::StoreResult<std::collections::HashSet<($crate::ids::Id, u32)>> {
            let mut present = std::collections::HashSet::new();
            if devices.is_empty() {
                return Ok(present);
            }
            let (accounts, numbers) = device_arrays(devices);
            let rows = sqlx::query($lock_devices)
                .bind(&accounts)
                .bind(&numbers)
                .fetch_all(&mut **tx)
                .await?;
            for row in rows {
                present.insert((row_id(&row, "account_id", "devices")?, row_u32(&row, "device_number", "devices")?));
            }
            Ok(present)
        }

        /// Deliveries and acks of a batch applied set-wise: a fixed handful of statements per
        /// batch (lock, look up, count, insert; tombstone, delete) instead of several per
        /// envelope. Only used when the result equals applying the writes in queue order (see
        /// `apply_mail_batch`).
        async fn apply_set_batch(
            tx: &mut sqlx::Transaction<'_, $db>,
            items: &[$crate::mail::batch::MailWrite],
        ) -> $crate::db::error::StoreResult<Vec<$crate::mail::batch::WriteOutcome>> {
            use sqlx::Row as _;
            use std::collections::{HashMap, HashSet};
            use $crate::mail::batch::{MailWrite, WriteOutcome};
            use $crate::mail::store::{DeliveryOutcome, StoredEnvelope};
            let mut out: Vec<Option<WriteOutcome>> = items.iter().map(|_| None).collect();
            // Acks first (they commute with the deliveries here): tombstones, then deletes.
            let mut ack_keys: Vec<EnvelopeKey> = Vec::new();
            let mut first_ack: HashMap<EnvelopeKey, usize> = HashMap::new();
            for (i, item) in items.iter().enumerate() {
                match item {
                    MailWrite::AckIds { account, device, ids, .. } => {
                        out[i] = Some(WriteOutcome::Acked(0));
                        for id in ids {
                            let key = (*account, *device, *id);
                            if let std::collections::hash_map::Entry::Vacant(e) = first_ack.entry(key) {
                                e.insert(i);
                                ack_keys.push(key);
                            }
                        }
                    }
                    MailWrite::AckUpTo { account, device, up_to, .. } => {
                        out[i] = Some(WriteOutcome::Acked(
                            ack_in(tx, account, *device, AckSelection::UpTo(*up_to)).await?,
                        ));
                    }
                    MailWrite::Deliver { .. } => {}
                }
            }
            let mut payloads: Vec<Vec<u8>> = Vec::new();
            if !ack_keys.is_empty() {
                let (accounts, devices, ids) = key_arrays(&ack_keys);
                sqlx::query(
                    "INSERT INTO acked_envelopes (account_id, device_number, message_id, seq, \
                     digest, expires_at) SELECT account_id, device_number, message_id, seq, \
                     digest, expires_at FROM envelopes \
                     WHERE (account_id, device_number, message_id) IN \
                     (SELECT * FROM UNNEST($1::bytea[], $2::int8[], $3::bytea[])) \
                     ON CONFLICT (account_id, device_number, message_id) DO UPDATE SET \
                     seq = excluded.seq, digest = excluded.digest, expires_at = excluded.expires_at",
                )
                .bind(&accounts)
                .bind(&devices)
                .bind(&ids)
                .execute(&mut **tx)
                .await?;
                let rows = sqlx::query(
                    "DELETE FROM envelopes WHERE (account_id, device_number, message_id) IN \
                     (SELECT * FROM UNNEST($1::bytea[], $2::int8[], $3::bytea[])) \
                     RETURNING account_id, device_number, message_id, payload_id",
                )
                .bind(&accounts)
                .bind(&devices)
                .bind(&ids)
                .fetch_all(&mut **tx)
                .await?;
                collect_payloads(&rows, &mut payloads)?;
                for row in &rows {
                    let key = key_from_row(row, "envelopes")?;
                    if let Some(i) = first_ack.get(&key)
                        && let Some(Some(WriteOutcome::Acked(n))) = out.get_mut(*i)
                    {
                        *n += 1;
                    }
                }
            }
            drop_orphan_payloads(tx, payloads).await?;

            // Deliveries: lock every recipient device, look up every key (queued or acked),
            // count every queue, then plan each delivery in queue order and insert once.
            let deliveries: Vec<(usize, &$crate::mail::store::Delivery, $crate::mail::store::QueueLimits)> = items
                .iter()
                .enumerate()
                .filter_map(|(i, item)| match item {
                    MailWrite::Deliver { delivery, limits, .. } => Some((i, delivery, *limits)),
                    _ => None,
                })
                .collect();
            if deliveries.is_empty() {
                return out.into_iter().map(|o| o.ok_or($crate::db::error::StoreError::Corrupt { table: "mail write batch" })).collect();
            }
            let mut targets: Vec<($crate::ids::Id, u32)> = deliveries
                .iter()
                .flat_map(|(_, d, _)| d.envelopes.iter().map(|e| (e.account, e.device)))
                .collect();
            targets.sort_unstable();
            targets.dedup();
            let present = lock_devices(tx, &targets).await?;
            let lists = load_device_lists(tx, deliveries.iter().map(|(_, d, _)| *d)).await?;
            let keys: Vec<EnvelopeKey> = deliveries
                .iter()
                .flat_map(|(_, d, _)| d.envelopes.iter().map(|e| (e.account, e.device, e.message_id)))
                .filter(|(a, d, _)| present.contains(&(*a, *d)))
                .collect::<HashSet<_>>()
                .into_iter()
                .collect();
            let mut existing: HashMap<EnvelopeKey, (i64, Vec<u8>)> = HashMap::new();
            if !keys.is_empty() {
                let (accounts, devices, ids) = key_arrays(&keys);
                let rows = sqlx::query(
                    "SELECT account_id, device_number, message_id, seq, digest FROM envelopes \
                     WHERE (account_id, device_number, message_id) IN \
                     (SELECT * FROM UNNEST($1::bytea[], $2::int8[], $3::bytea[])) \
                     UNION ALL SELECT account_id, device_number, message_id, seq, digest \
                     FROM acked_envelopes WHERE (account_id, device_number, message_id) IN \
                     (SELECT * FROM UNNEST($1::bytea[], $2::int8[], $3::bytea[]))",
                )
                .bind(&accounts)
                .bind(&devices)
                .bind(&ids)
                .fetch_all(&mut **tx)
                .await?;
                for row in rows {
                    let key = key_from_row(&row, "envelopes")?;
                    let seq: i64 = row.try_get("seq")?;
                    let digest: Vec<u8> = row.try_get("digest")?;
                    existing.entry(key).or_insert((seq, digest));
                }
            }
            let live: Vec<($crate::ids::Id, u32)> =
                targets.iter().copied().filter(|t| present.contains(t)).collect();
            let mut usage: QueueUsage = live.iter().map(|t| (*t, (0, 0, None))).collect();
            if !live.is_empty() {
                let (accounts, devices) = device_arrays(&live);
                let rows = sqlx::query(
                    "SELECT account_id, device_number, COUNT(*) AS n, \
                     CAST(COALESCE(SUM(size), 0) AS BIGINT) AS bytes, MAX(seq) AS max_seq \
                     FROM envelopes WHERE (account_id, device_number) IN \
                     (SELECT * FROM UNNEST($1::bytea[], $2::int8[])) \
                     GROUP BY account_id, device_number",
                )
                .bind(&accounts)
                .bind(&devices)
                .fetch_all(&mut **tx)
                .await?;
                for row in rows {
                    let device = (row_id(&row, "account_id", "envelopes")?, row_u32(&row, "device_number", "envelopes")?);
                    usage.insert(device, (
                        row_u64(&row, "n", "envelopes")?,
                        row_u64(&row, "bytes", "envelopes")?,
                        row.try_get::<Option<i64>, _>("max_seq")?,
                    ));
                }
            }
            // The highest sequence number of each queue before this batch's inserts.
            let max_before: HashMap<($crate::ids::Id, u32), i64> =
                usage.iter().filter_map(|(k, u)| u.2.map(|m| (*k, m))).collect();
            // Plan: Ok(seq) for a duplicate of a stored envelope, Err(key) for one stored by
            // this batch (an earlier delivery or a new row).
            struct NewRow<'a> {
                delivery: &'a $crate::mail::store::Delivery,
                envelope: &'a $crate::mail::store::NewEnvelope,
                digest: Vec<u8>,
                size: u64,
            }
            let mut new_rows: Vec<NewRow<'_>> = Vec::new();
            let mut batch_digests: HashMap<EnvelopeKey, Vec<u8>> = HashMap::new();
            let mut planned: Vec<(usize, Vec<(EnvelopeKey, Result<i64, ()>, bool)>)> = Vec::new();
            let mut shared: Vec<(&$crate::mail::store::SharedPayload, i64)> = Vec::new();
            for (i, delivery, limits) in &deliveries {
                if let Some(refused) = check_device_lists(delivery, &lists) {
                    out[*i] = Some(WriteOutcome::Delivered(refused));
                    continue;
                }
                let mut own: Vec<($crate::ids::Id, u32)> =
                    delivery.envelopes.iter().map(|e| (e.account, e.device)).collect();
                own.sort_unstable();
                own.dedup();
                if let Some((account, device)) = own.iter().find(|t| !present.contains(t)) {
                    out[*i] = Some(WriteOutcome::Delivered(DeliveryOutcome::DeviceGone { account: *account, device: *device }));
                    continue;
                }
                let shared_len = delivery.shared_payload.as_ref().map_or(0, |p| p.payload.len());
                let mut plan = Vec::with_capacity(delivery.envelopes.len());
                let mut added: QueueUsage = HashMap::new();
                let mut rows = Vec::new();
                let mut refused = None;
                for envelope in &delivery.envelopes {
                    let key = (envelope.account, envelope.device, envelope.message_id);
                    let digest = envelope_digest(envelope, delivery.shared_payload.as_ref());
                    let known = existing
                        .get(&key)
                        .map(|(seq, d)| (Ok(*seq), d))
                        .or_else(|| batch_digests.get(&key).map(|d| (Err(()), d)));
                    if let Some((seq, old)) = known {
                        if *old != digest {
                            refused = Some(DeliveryOutcome::IdConflict { account: envelope.account, device: envelope.device });
                            break;
                        }
                        plan.push((key, seq, true));
                        continue;
                    }
                    let size = u64::try_from(envelope.content.len() + shared_len).unwrap_or(u64::MAX);
                    let (count, bytes, _) = usage.get(&(envelope.account, envelope.device)).copied().unwrap_or_default();
                    let extra = added.entry((envelope.account, envelope.device)).or_default();
                    if count.saturating_add(extra.0) >= limits.max_messages
                        || bytes.saturating_add(extra.1).saturating_add(size) > limits.max_bytes
                    {
                        refused = Some(DeliveryOutcome::QueueFull { account: envelope.account, device: envelope.device });
                        break;
                    }
                    extra.0 += 1;
                    extra.1 = extra.1.saturating_add(size);
                    plan.push((key, Err(()), false));
                    rows.push(NewRow { delivery, envelope, digest, size });
                }
                if let Some(refused) = refused {
                    out[*i] = Some(WriteOutcome::Delivered(refused));
                    continue;
                }
                for (device, (n, b, _)) in added {
                    let u = usage.entry(device).or_default();
                    u.0 = u.0.saturating_add(n);
                    u.1 = u.1.saturating_add(b);
                }
                if !rows.is_empty()
                    && let Some(p) = &delivery.shared_payload
                {
                    shared.push((p, delivery.expires_at));
                }
                for row in rows {
                    batch_digests.insert((row.envelope.account, row.envelope.device, row.envelope.message_id), row.digest.clone());
                    new_rows.push(row);
                }
                planned.push((*i, plan));
            }
            for (p, expires_at) in shared {
                sqlx::query(
                    "INSERT INTO shared_payloads (id, payload, expires_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (id) DO UPDATE SET expires_at = excluded.expires_at \
                     WHERE shared_payloads.expires_at < excluded.expires_at",
                )
                .bind(&p.id.as_bytes()[..])
                .bind(&p.payload[..])
                .bind(expires_at)
                .execute(&mut **tx)
                .await?;
            }
            let mut inserted: HashMap<EnvelopeKey, i64> = HashMap::new();
            if !new_rows.is_empty() {
                // One statement of column arrays, whatever the number of rows: its text never
                // changes, so each connection prepares it once.
                let n = new_rows.len();
                let mut accounts = Vec::with_capacity(n);
                let mut devices = Vec::with_capacity(n);
                let mut ids = Vec::with_capacity(n);
                let mut source_accounts = Vec::with_capacity(n);
                let mut source_devices = Vec::with_capacity(n);
                let mut contents = Vec::with_capacity(n);
                let mut payload_ids = Vec::with_capacity(n);
                let mut digests = Vec::with_capacity(n);
                let mut sizes = Vec::with_capacity(n);
                let mut received = Vec::with_capacity(n);
                let mut expires = Vec::with_capacity(n);
                let mut commitments = Vec::with_capacity(n);
                for row in &new_rows {
                    let d = row.delivery;
                    accounts.push(&row.envelope.account.as_bytes()[..]);
                    devices.push(i64::from(row.envelope.device));
                    ids.push(&row.envelope.message_id.as_bytes()[..]);
                    source_accounts.push(d.source.as_ref().map(|(a, _)| &a.as_bytes()[..]));
                    source_devices.push(d.source.as_ref().map(|(_, n)| i64::from(*n)));
                    contents.push(row.envelope.content.as_slice());
                    payload_ids.push(d.shared_payload.as_ref().map(|p| &p.id.as_bytes()[..]));
                    digests.push(row.digest.as_slice());
                    sizes.push(i64::try_from(row.size).unwrap_or(i64::MAX));
                    received.push(d.received_at);
                    expires.push(d.expires_at);
                    commitments.push(row.envelope.franking_commitment.as_ref().map(|c| &c[..]));
                }
                let rows = sqlx::query(
                    "INSERT INTO envelopes (account_id, device_number, message_id, source_account, \
                     source_device, content, payload_id, digest, size, received_at, expires_at, \
                     franking_commitment) \
                     SELECT * FROM UNNEST($1::bytea[], $2::int8[], $3::bytea[], $4::bytea[], \
                     $5::int8[], $6::bytea[], $7::bytea[], $8::bytea[], $9::int8[], $10::int8[], \
                     $11::int8[], $12::bytea[]) \
                     RETURNING account_id, device_number, message_id, seq",
                )
                .bind(&accounts)
                .bind(&devices)
                .bind(&ids)
                .bind(&source_accounts)
                .bind(&source_devices)
                .bind(&contents)
                .bind(&payload_ids)
                .bind(&digests)
                .bind(&sizes)
                .bind(&received)
                .bind(&expires)
                .bind(&commitments)
                .fetch_all(&mut **tx)
                .await?;
                for row in rows {
                    inserted.insert(key_from_row(&row, "envelopes")?, row.try_get("seq")?);
                }
            }
            // Each new envelope's predecessor in its queue: the queue's highest sequence number
            // before the batch, then the batch's own inserts for that device in sequence order.
            let mut new_seqs: HashMap<($crate::ids::Id, u32), Vec<i64>> = HashMap::new();
            for ((account, device, _), seq) in &inserted {
                new_seqs.entry((*account, *device)).or_default().push(*seq);
            }
            let mut prev_of: HashMap<i64, Option<i64>> = HashMap::with_capacity(inserted.len());
            for (device, mut seqs) in new_seqs {
                seqs.sort_unstable();
                let mut prev = max_before.get(&device).copied();
                for seq in seqs {
                    prev_of.insert(seq, prev);
                    prev = Some(seq);
                }
            }
            for (i, plan) in planned {
                let mut stored = Vec::with_capacity(plan.len());
                for ((account, device, id), seq, duplicate) in plan {
                    let seq = match seq {
                        Ok(seq) => seq,
                        Err(()) => *inserted
                            .get(&(account, device, id))
                            .ok_or($crate::db::error::StoreError::Corrupt { table: "envelopes" })?,
                    };
                    // A duplicate within the batch points at a new row: not new itself.
                    let prev_seq = if duplicate { None } else { prev_of.get(&seq).copied().flatten() };
                    stored.push(StoredEnvelope { account, device, seq, duplicate, prev_seq });
                }
                out[i] = Some(WriteOutcome::Delivered(DeliveryOutcome::Stored(stored)));
            }
            out.into_iter()
                .map(|o| o.ok_or($crate::db::error::StoreError::Corrupt { table: "mail write batch" }))
                .collect()
        }

        /// Applies a batch of mailbox writes in one transaction and commits once. The set-wise
        /// path is taken unless the batch mixes writes whose order matters (an ack of a key,
        /// or an ack-up-to of a device, that a delivery of the same batch also writes); then
        /// the writes are applied one after the other in queue order, after locking every
        /// recipient device (in one global order on Postgres, so batches cannot deadlock).
        async fn apply_mail_batch(
            conn: &mut <$db as sqlx::Database>::Connection,
            items: &[$crate::mail::batch::MailWrite],
        ) -> $crate::db::error::StoreResult<Vec<$crate::mail::batch::WriteOutcome>> {
            use $crate::mail::batch::{MailWrite, WriteOutcome};
            let mut delivered_devices = std::collections::HashSet::new();
            let mut delivered_keys = std::collections::HashSet::new();
            for item in items {
                if let MailWrite::Deliver { delivery, .. } = item {
                    for e in &delivery.envelopes {
                        delivered_devices.insert((e.account, e.device));
                        delivered_keys.insert((e.account, e.device, e.message_id));
                    }
                }
            }
            let ordered = items.iter().any(|item| match item {
                MailWrite::AckUpTo { account, device, .. } => {
                    delivered_devices.contains(&(*account, *device))
                }
                MailWrite::AckIds { account, device, ids, .. } => {
                    ids.iter().any(|id| delivered_keys.contains(&(*account, *device, *id)))
                }
                MailWrite::Deliver { .. } => false,
            });
            let mut tx = sqlx::Connection::begin_with(conn, <$db as $crate::db::sql::TxBegin>::BEGIN).await?;
            let out = if ordered {
                let mut targets: Vec<($crate::ids::Id, u32)> = delivered_devices.into_iter().collect();
                targets.sort_unstable();
                let present = lock_devices(&mut tx, &targets).await?;
                let gone: std::collections::HashSet<_> =
                    targets.into_iter().filter(|t| !present.contains(t)).collect();
                let lists = load_device_lists(
                    &mut tx,
                    items.iter().filter_map(|item| match item {
                        MailWrite::Deliver { delivery, .. } => Some(delivery),
                        _ => None,
                    }),
                )
                .await?;
                let mut usage = QueueUsage::new();
                let mut out = Vec::with_capacity(items.len());
                for item in items {
                    out.push(match item {
                        MailWrite::Deliver { delivery, limits, .. } => WriteOutcome::Delivered(
                            deliver_in(&mut tx, delivery, *limits, &gone, &lists, &mut usage).await?,
                        ),
                        MailWrite::AckIds { account, device, ids, .. } => {
                            // An ack changes the queue counts a later delivery checks.
                            usage.remove(&(*account, *device));
                            WriteOutcome::Acked(
                                ack_in(&mut tx, account, *device, AckSelection::Ids(ids)).await?,
                            )
                        }
                        MailWrite::AckUpTo { account, device, up_to, .. } => {
                            usage.remove(&(*account, *device));
                            WriteOutcome::Acked(
                                ack_in(&mut tx, account, *device, AckSelection::UpTo(*up_to)).await?,
                            )
                        }
                    });
                }
                out
            } else {
                apply_set_batch(&mut tx, items).await?
            };
            tx.commit().await?;
            Ok(out)
        }

        /// A writer task: takes batches from the shared queue until every sender is gone.
        ///
        /// It keeps one pooled connection for itself between batches, so it pays for no pool
        /// checkout per batch. After a failed batch the connection is given back and a fresh
        /// one taken for the next; a batch that cannot get a connection fails and its writes
        /// are retried one by one like any failed batch.
        async fn run_mail_writer(
            pool: sqlx::Pool<$db>,
            queue: $crate::mail::batch::WriteQueue,
            max_batch: usize,
        ) {
            let mut batch = Vec::with_capacity(max_batch);
            let mut held: Option<sqlx::pool::PoolConnection<$db>> = None;
            while $crate::mail::batch::next_batch(&queue, &mut batch, max_batch).await {
                let items: Vec<_> = batch.drain(..).collect();
                metrics::histogram!("haven_mail_write_batch_size").record(items.len() as f64);
                let conn = match held.take() {
                    Some(conn) => Ok(conn),
                    None => pool.acquire().await,
                };
                let result = match conn {
                    Ok(mut conn) => {
                        let result = apply_mail_batch(&mut conn, &items).await;
                        if result.is_ok() {
                            held = Some(conn);
                        }
                        result
                    }
                    Err(err) => Err(err.into()),
                };
                for item in $crate::mail::batch::settle(items, result).unwrap_or_default() {
                    let result = match pool.acquire().await {
                        Ok(mut conn) => apply_mail_batch(&mut conn, std::slice::from_ref(&item)).await,
                        Err(err) => Err(err.into()),
                    };
                    item.answer($crate::mail::batch::single(result));
                }
            }
        }

        /// Starts `writers` writer tasks on the current runtime and returns the handle that
        /// queues writes to them.
        fn spawn_mail_writers(
            pool: &sqlx::Pool<$db>,
            settings: &$crate::settings::DatabaseSettings,
            writers: usize,
        ) -> $crate::mail::batch::MailWriter {
            let (writer, queue) = $crate::mail::batch::MailWriter::new(settings.write_queue);
            for _ in 0..writers.max(1) {
                tokio::spawn(run_mail_writer(pool.clone(), queue.clone(), settings.max_write_batch));
            }
            writer
        }
    };
}

pub(crate) use impl_sql_mail_writer;
