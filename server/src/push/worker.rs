//! The background side of push (PROTOCOL.md §18.3–§18.7): the enqueuer turns "device D got mail
//! while it had no socket here" into a durable queue row (after checking cluster presence), and
//! the worker claims due rows, checks presence again, sends, and records the outcome: sent
//! (the next one waits for the coalescing window), retried with exponential backoff, or given
//! up. Endpoints that answer 404 or 410, or that the gateway rejects, are deleted.
//!
//! Logs say "push sent", "push endpoint dropped", "push failed" with counts only: never an
//! account, device, endpoint URL, key or token.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt as _;
use haven_protocol::api::push::WAKE_PAYLOAD;

use crate::clock::now_millis;
use crate::db::Store;
use crate::push::delivery::Delivery;
use crate::push::service::PushService;
use crate::push::store::{ClaimedPush, Finish};
use crate::push::target::{PushTarget, check_endpoint_url, forbidden_ip};
use crate::realtime::hub::DeviceKey;

/// How long a claim holds a row, milliseconds: past it another worker may take the row (its
/// worker crashed).
const LEASE_MS: i64 = 120_000;
/// One hour in milliseconds (the per-device limit's period).
const HOUR_MS: i64 = 3_600_000;
/// Rows claimed per round.
const CLAIM_BATCH: u32 = 256;
/// Wake-up requests handled by the enqueuer per round.
const ENQUEUE_BATCH: usize = 256;
/// Entries of the enqueuer's cache of known due times before it is pruned.
const DUE_CACHE: usize = 100_000;

/// Starts the enqueuer and the worker of `service` on the current runtime, until `stop`.
pub fn spawn<S: Store>(
    store: S,
    service: Arc<PushService>,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Result<(), reqwest::Error> {
    let client = http_client(&service)?;
    tokio::spawn(enqueuer(store.clone(), Arc::clone(&service), stop.clone()));
    tokio::spawn(worker(store, service, client, stop));
    Ok(())
}

/// The HTTP client of the worker: a timeout, no redirects (a push service has no business
/// sending the relay elsewhere) and, unless `allow_insecure`, a resolver that refuses names
/// resolving to private, loopback or link-local addresses (the resolve-time half of the SSRF
/// rules).
fn http_client(service: &PushService) -> Result<reqwest::Client, reqwest::Error> {
    let settings = service.settings();
    let mut builder = reqwest::Client::builder()
        .timeout(Duration::from_secs(settings.request_timeout_secs))
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(settings.worker_concurrency);
    if !settings.allow_insecure {
        builder = builder.dns_resolver(Arc::new(PublicOnly));
    }
    builder.build()
}

/// A resolver that only returns public addresses.
struct PublicOnly;

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((name.as_str(), 0))
                .await?
                .filter(|a| !forbidden_ip(a.ip()))
                .collect();
            if addrs.is_empty() {
                return Err("push endpoint resolves to no public address".into());
            }
            let addrs: reqwest::dns::Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

async fn enqueuer<S: Store>(
    store: S,
    service: Arc<PushService>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let Some(mut rx) = service.take_wake_receiver() else {
        return;
    };
    let window = window_ms(service.settings());
    // Due times this instance queued: mail for a device whose wake-up is due later is covered
    // by that wake-up, so it needs no database write.
    let mut known_due: HashMap<DeviceKey, i64> = HashMap::new();
    let mut batch = Vec::with_capacity(ENQUEUE_BATCH);
    loop {
        batch.clear();
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            n = rx.recv_many(&mut batch, ENQUEUE_BATCH) => if n == 0 { return },
        }
        let now = now_millis();
        if known_due.len() > DUE_CACHE {
            known_due.retain(|_, due| *due > now);
        }
        let todo: HashSet<DeviceKey> = batch
            .iter()
            .filter(|d| known_due.get(*d).is_none_or(|due| *due <= now))
            .copied()
            .collect();
        let results = futures_util::stream::iter(todo)
            .map(|device| {
                let store = &store;
                let service = &service;
                async move {
                    if service.presence().is_online(&device).await {
                        return (device, None);
                    }
                    match store
                        .enqueue_push(&device.account, device.device, now, window)
                        .await
                    {
                        Ok(due) => (device, due),
                        Err(err) => {
                            tracing::warn!(%err, "queueing a push failed");
                            (device, None)
                        }
                    }
                }
            })
            .buffer_unordered(32)
            .collect::<Vec<_>>()
            .await;
        let mut due_now = false;
        for (device, due) in results {
            if let Some(due) = due {
                due_now |= due <= now;
                known_due.insert(device, due);
            }
        }
        if due_now {
            service.nudge_worker();
        }
    }
}

async fn worker<S: Store>(
    store: S,
    service: Arc<PushService>,
    client: reqwest::Client,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let settings = service.settings().clone();
    let mut tick = tokio::time::interval(Duration::from_millis(settings.poll_interval_ms));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = tick.tick() => {}
            _ = service.nudged() => {}
        }
        loop {
            let now = now_millis();
            let claimed = match store.claim_pushes(now, now + LEASE_MS, CLAIM_BATCH).await {
                Ok(c) => c,
                Err(err) => {
                    tracing::warn!(%err, "claiming pushes failed");
                    break;
                }
            };
            let full = claimed.len() == CLAIM_BATCH as usize;
            if claimed.is_empty() {
                break;
            }
            futures_util::stream::iter(claimed)
                .for_each_concurrent(settings.worker_concurrency, |c| {
                    let store = &store;
                    let service = &service;
                    let client = &client;
                    async move {
                        let finish = deliver(store, service, client, &c).await;
                        if let Err(err) = store.finish_push(&c.account, c.device, finish).await {
                            tracing::warn!(%err, "recording a push outcome failed");
                        }
                    }
                })
                .await;
            if !full {
                break;
            }
        }
    }
}

/// Sends one claimed wake-up to every endpoint of its device and says what to record.
async fn deliver<S: Store>(
    store: &S,
    service: &PushService,
    client: &reqwest::Client,
    c: &ClaimedPush,
) -> Finish {
    let settings = service.settings();
    let now = now_millis();
    let device = DeviceKey {
        account: c.account,
        device: c.device,
    };
    if service.presence().is_online(&device).await {
        metrics::counter!("haven_push_total", "outcome" => "online").increment(1);
        return Finish::Done { now };
    }
    let limit = settings.per_device_per_hour;
    if c.hour_count >= limit && now - c.hour_start < HOUR_MS {
        metrics::counter!("haven_push_total", "outcome" => "deferred").increment(1);
        return Finish::Defer {
            due_at: c.hour_start + HOUR_MS,
        };
    }
    let endpoints = match store.push_endpoints(&c.account, c.device).await {
        Ok(e) => e,
        Err(err) => {
            tracing::warn!(%err, "reading push endpoints failed");
            return retry(settings, c, now);
        }
    };
    let mut web = Vec::new();
    let mut gateway = Vec::new();
    for e in &endpoints {
        // Borrowed: a target zeroizes itself when dropped.
        match &service.open(&c.account, c.device, e) {
            Ok(PushTarget::WebPush {
                endpoint,
                p256dh,
                auth,
            }) => web.push((e.id, endpoint.clone(), p256dh.clone(), *auth)),
            Ok(PushTarget::Gateway { app_id, pushkey }) => {
                gateway.push((e.id, (app_id.clone(), pushkey.clone())));
            }
            Err(err) => tracing::warn!(%err, "a push endpoint does not open"),
        }
    }
    let mut results: Vec<(crate::ids::Id, Delivery)> = futures_util::stream::iter(web)
        .map(|(id, endpoint, p256dh, auth)| async move {
            (
                id,
                send_web_push(client, service, &endpoint, &p256dh, &auth, now).await,
            )
        })
        .buffer_unordered(4)
        .collect()
        .await;
    if !gateway.is_empty() {
        match &settings.gateway_url {
            Some(url) => {
                let devices: Vec<(String, String)> =
                    gateway.iter().map(|(_, d)| d.clone()).collect();
                let outcomes = crate::push::gateway::send(client, url, &devices).await;
                results.extend(gateway.iter().map(|(id, _)| *id).zip(outcomes));
            }
            // The gateway was unconfigured since: its endpoints cannot be served.
            None => results.extend(gateway.iter().map(|(id, _)| (*id, Delivery::Gone))),
        }
    }
    let mut delivered = 0u32;
    let mut retry_needed = false;
    for (id, outcome) in &results {
        match outcome {
            Delivery::Delivered => delivered += 1,
            Delivery::Gone => {
                match store.delete_push_endpoint(&c.account, c.device, id).await {
                    Ok(_) => tracing::info!("push endpoint dropped (gone)"),
                    Err(err) => tracing::warn!(%err, "dropping a push endpoint failed"),
                }
                metrics::counter!("haven_push_total", "outcome" => "gone").increment(1);
            }
            Delivery::Retry => retry_needed = true,
            Delivery::Failed => {
                metrics::counter!("haven_push_total", "outcome" => "refused").increment(1);
                tracing::warn!("push failed: refused by the push service");
            }
        }
    }
    if delivered > 0 {
        metrics::counter!("haven_push_total", "outcome" => "sent").increment(1);
        tracing::debug!(endpoints = delivered, "push sent");
        let (hour_start, hour_count) = if now - c.hour_start >= HOUR_MS {
            (now, 1)
        } else {
            (c.hour_start, c.hour_count.saturating_add(1))
        };
        return Finish::Sent {
            now,
            window: window_ms(settings),
            hour_start,
            hour_count,
        };
    }
    if retry_needed {
        return retry(settings, c, now);
    }
    Finish::Done { now }
}

/// The next attempt after a failed one, or giving up after `max_attempts`.
fn retry(settings: &crate::push::settings::PushSettings, c: &ClaimedPush, now: i64) -> Finish {
    let attempts = c.attempts.saturating_add(1);
    if attempts >= settings.max_attempts {
        metrics::counter!("haven_push_total", "outcome" => "given_up").increment(1);
        tracing::warn!(attempts, "push failed: attempts exhausted");
        return Finish::Done { now };
    }
    metrics::counter!("haven_push_total", "outcome" => "retry").increment(1);
    tracing::info!(attempts, "push failed: will retry");
    let delay_ms = settings
        .backoff_base_ms
        .saturating_mul(1u64 << c.attempts.min(30))
        .min(settings.backoff_max_secs.saturating_mul(1000));
    Finish::Retry {
        due_at: now.saturating_add(i64::try_from(delay_ms).unwrap_or(i64::MAX)),
        attempts,
    }
}

/// The coalescing window in milliseconds.
fn window_ms(settings: &crate::push::settings::PushSettings) -> i64 {
    i64::try_from(settings.coalesce_secs.saturating_mul(1000)).unwrap_or(i64::MAX)
}

/// One RFC 8030 push of the wake-up payload, encrypted per RFC 8291 and authorised per RFC 8292.
async fn send_web_push(
    client: &reqwest::Client,
    service: &PushService,
    endpoint: &str,
    p256dh: &[u8],
    auth: &[u8; 16],
    now: i64,
) -> Delivery {
    let settings = service.settings();
    // The rules may have tightened since the endpoint was registered.
    let Ok(url) = check_endpoint_url(endpoint, settings) else {
        return Delivery::Gone;
    };
    let Ok(body) = crate::push::web_push::encrypt(p256dh, auth, WAKE_PAYLOAD) else {
        return Delivery::Gone;
    };
    let origin = url.origin().ascii_serialization();
    let authorization = service.vapid().authorization(
        &origin,
        &settings.vapid_subject,
        u64::try_from(now / 1000).unwrap_or(0),
    );
    let response = client
        .post(url)
        .header("TTL", settings.ttl_secs.to_string())
        .header("Urgency", "high")
        .header(reqwest::header::CONTENT_ENCODING, "aes128gcm")
        .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
        .header(reqwest::header::AUTHORIZATION, authorization)
        .body(body)
        .send()
        .await;
    match response {
        Ok(r) => {
            let status = r.status();
            if status.is_success() {
                Delivery::Delivered
            } else if status == reqwest::StatusCode::NOT_FOUND
                || status == reqwest::StatusCode::GONE
            {
                Delivery::Gone
            } else if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
                Delivery::Retry
            } else {
                Delivery::Failed
            }
        }
        Err(_) => Delivery::Retry,
    }
}
