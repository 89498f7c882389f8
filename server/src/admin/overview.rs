//! The admin overview (`GET /v1/admin/overview`, `docs/PROTOCOL.md` §11.19): rolling request
//! figures of this process, live sockets, relay-wide storage counts, and the moderation figures
//! when that feature provides them.
//!
//! The request figures come from an in-process rolling window fed by the router's metrics
//! middleware ([`record_request`]): 180 slots of 5 seconds (15 minutes), each holding the count
//! per status class and a latency histogram with logarithmic bins (each bin 15 % wider than the
//! one before, from 0.05 ms). A percentile is reported as the upper bound of the bin it falls
//! in, so it overstates the true value by at most 15 %. Like the Prometheus recorder, the window
//! is process-wide: on several instances, each shows its own traffic.

use std::sync::{LazyLock, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::extract::State;
use haven_protocol::api::admin::{AdminOverview, RequestWindow, RequestWindows, StorageFigures};

use crate::admin::AdminContext;
use crate::admin::keys::AdminAuth;
use crate::admin::store::AdminStore as _;
use crate::error::{ApiJson, AppError};

/// Seconds per slot of the rolling window.
const SLOT_SECS: u64 = 5;
/// Slots kept: 15 minutes.
const SLOTS: usize = 180;
/// Latency histogram bins; the last one holds everything slower than the others.
const BINS: usize = 96;
/// Upper bound of the first bin, milliseconds.
const FIRST_BIN_MS: f64 = 0.05;
/// Each bin's upper bound is this factor times the previous one.
const BIN_GROWTH: f64 = 1.15;

/// Figures a moderation feature adds to the overview. `None` (the default) is written as
/// `null`: the relay has no moderation feature, or it does not count this.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ModerationFigures {
    /// Abuse reports waiting for review.
    pub pending_reports: Option<u64>,
    /// Bans in force.
    pub active_bans: Option<u64>,
}

#[derive(Clone)]
struct Slot {
    /// Slot number (seconds since the window's start / `SLOT_SECS`) these counts belong to.
    number: u64,
    /// Answers by status class: 2xx, 4xx, 5xx, anything else.
    status: [u64; 4],
    latency: [u32; BINS],
}

impl Slot {
    const EMPTY: Self = Self {
        number: u64::MAX,
        status: [0; 4],
        latency: [0; BINS],
    };
}

/// The rolling window of request figures: a ring of slots.
struct RollingWindow {
    started: Instant,
    slots: Mutex<Vec<Slot>>,
}

static WINDOW: LazyLock<RollingWindow> = LazyLock::new(|| RollingWindow {
    started: Instant::now(),
    slots: Mutex::new(vec![Slot::EMPTY; SLOTS]),
});

/// Starts the process-wide window (and the uptime clock) if it has not started yet.
pub fn mark_started() {
    LazyLock::force(&WINDOW);
}

/// Records one answered request (the router's metrics middleware calls this).
pub fn record_request(status: u16, latency: Duration) {
    WINDOW.record(WINDOW.started.elapsed(), status, latency);
}

fn bin_of(latency: Duration) -> usize {
    let ms = latency.as_secs_f64() * 1000.0;
    if ms <= FIRST_BIN_MS {
        return 0;
    }
    let bin = ((ms / FIRST_BIN_MS).ln() / BIN_GROWTH.ln()).ceil();
    // Saturating float-to-int conversion; NaN cannot occur for ms > FIRST_BIN_MS.
    (bin as usize).min(BINS - 1)
}

fn bin_upper_ms(bin: usize) -> f64 {
    let exponent = i32::try_from(bin).unwrap_or(i32::MAX);
    FIRST_BIN_MS * BIN_GROWTH.powi(exponent)
}

impl RollingWindow {
    fn record(&self, at: Duration, status: u16, latency: Duration) {
        let number = at.as_secs() / SLOT_SECS;
        let class = match status {
            200..=299 => 0,
            400..=499 => 1,
            500..=599 => 2,
            _ => 3,
        };
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        let index = usize::try_from(number % SLOTS as u64).unwrap_or(0);
        let Some(slot) = slots.get_mut(index) else {
            return;
        };
        if slot.number != number {
            *slot = Slot::EMPTY;
            slot.number = number;
        }
        if let Some(count) = slot.status.get_mut(class) {
            *count += 1;
        }
        if let Some(count) = slot.latency.get_mut(bin_of(latency)) {
            *count = count.saturating_add(1);
        }
    }

    /// The figures of the last `window_secs` seconds as seen at `at` (since the start).
    fn figures(&self, at: Duration, window_secs: u64) -> RequestWindow {
        let current = at.as_secs() / SLOT_SECS;
        let span = window_secs / SLOT_SECS;
        let mut status = [0u64; 4];
        let mut latency = [0u64; BINS];
        {
            let slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
            for slot in slots
                .iter()
                .filter(|s| s.number <= current && current - s.number < span)
            {
                for (sum, n) in status.iter_mut().zip(slot.status) {
                    *sum += n;
                }
                for (sum, n) in latency.iter_mut().zip(slot.latency) {
                    *sum += u64::from(n);
                }
            }
        }
        let total: u64 = status.iter().sum();
        let percentile = |q: f64| -> Option<f64> {
            if total == 0 {
                return None;
            }
            // Rank of the q-quantile, 1-based: ceil(q * total), at least 1.
            let rank = ((q * total as f64).ceil() as u64).max(1);
            let mut seen = 0;
            let bin = latency.iter().position(|&n| {
                seen += n;
                seen >= rank
            })?;
            Some((bin_upper_ms(bin) * 1000.0).round() / 1000.0)
        };
        RequestWindow {
            window_secs,
            total,
            status_2xx: status[0],
            status_4xx: status[1],
            status_5xx: status[2],
            p50_ms: percentile(0.50),
            p95_ms: percentile(0.95),
            p99_ms: percentile(0.99),
        }
    }
}

/// The request figures of the last 1, 5 and 15 minutes.
pub fn request_windows() -> RequestWindows {
    let at = WINDOW.started.elapsed();
    RequestWindows {
        last_1m: WINDOW.figures(at, 60),
        last_5m: WINDOW.figures(at, 300),
        last_15m: WINDOW.figures(at, 900),
    }
}

/// `GET /v1/admin/overview`.
#[utoipa::path(get, path = "/v1/admin/overview", tag = "admin",
    security(("admin_key" = [])),
    responses((status = 200, body = AdminOverview),
              (status = 401, description = "`missing_admin_key`, `invalid_admin_key`", body = crate::error::ErrorBody),
              (status = 429, description = "too many wrong admin keys from this address", body = crate::error::ErrorBody)))]
pub async fn overview<C: AdminContext>(
    _admin: AdminAuth,
    State(ctx): State<C>,
) -> Result<ApiJson<AdminOverview>, AppError> {
    let now = crate::clock::now_i64();
    let counts = ctx.admin_store().admin_counts(now).await?;
    let moderation = ctx.moderation_figures().await?;
    Ok(ApiJson(AdminOverview {
        generated_at: now,
        uptime_secs: WINDOW.started.elapsed().as_secs(),
        requests: request_windows(),
        live_sockets: ctx.live_sockets(),
        storage: StorageFigures {
            accounts: counts.accounts,
            devices: counts.devices,
            queued_envelopes: counts.queued_envelopes,
            devices_with_mail: counts.devices_with_mail,
            blob_bytes: counts.blob_bytes,
            vault_bytes: counts.vault_bytes,
        },
        pending_reports: moderation.pending_reports,
        active_bans: moderation.active_bans,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window() -> RollingWindow {
        RollingWindow {
            started: Instant::now(),
            slots: Mutex::new(vec![Slot::EMPTY; SLOTS]),
        }
    }

    #[test]
    fn bins_grow_and_saturate() {
        assert_eq!(bin_of(Duration::ZERO), 0);
        assert_eq!(bin_of(Duration::from_micros(50)), 0);
        assert_eq!(bin_of(Duration::from_micros(57)), 1);
        assert_eq!(bin_of(Duration::from_secs(3600)), BINS - 1);
        for ms in [0.2, 1.0, 7.0, 120.0, 2500.0] {
            let bin = bin_of(Duration::from_secs_f64(ms / 1000.0));
            assert!(bin_upper_ms(bin) >= ms && bin_upper_ms(bin) <= ms * BIN_GROWTH + 1e-9);
        }
    }

    #[test]
    fn windows_count_classes_and_percentiles() {
        let w = window();
        let t = Duration::from_secs(1000);
        for i in 0..100u64 {
            w.record(t, 200, Duration::from_millis(1 + i % 10));
        }
        w.record(t, 404, Duration::from_millis(1));
        w.record(t, 503, Duration::from_millis(900));
        // Four minutes earlier: inside 5 and 15 minutes, not inside 1.
        w.record(t - Duration::from_secs(240), 200, Duration::from_millis(2));
        let one = w.figures(t, 60);
        assert_eq!(
            (one.total, one.status_2xx, one.status_4xx, one.status_5xx),
            (102, 100, 1, 1)
        );
        let p50 = one.p50_ms.unwrap();
        assert!((5.0..=5.0 * BIN_GROWTH).contains(&p50), "{p50}");
        assert!(one.p99_ms.unwrap() >= 10.0 && one.p99_ms.unwrap() < 900.0);
        assert_eq!(w.figures(t, 300).total, 103);
        assert_eq!(w.figures(t, 900).total, 103);
        // 16 minutes later everything has left the window, even though the slots were not reused.
        let later = w.figures(t + Duration::from_secs(960), 900);
        assert_eq!((later.total, later.p50_ms), (0, None));
    }

    #[test]
    fn old_slots_are_reused() {
        let w = window();
        let t = Duration::from_secs(10);
        w.record(t, 200, Duration::from_millis(1));
        // Exactly one ring later the same slot index is reused and starts from zero.
        let t2 = t + Duration::from_secs(SLOT_SECS * SLOTS as u64);
        w.record(t2, 500, Duration::from_millis(1));
        let f = w.figures(t2, 900);
        assert_eq!((f.total, f.status_2xx, f.status_5xx), (1, 0, 1));
    }
}
