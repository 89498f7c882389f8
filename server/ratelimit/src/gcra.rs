//! The Generic Cell Rate Algorithm, as pure arithmetic on microseconds.
//!
//! Both backends run exactly this arithmetic: [`MemoryLimiter`](crate::MemoryLimiter) calls these
//! functions, and the Redis Lua script (`gcra.lua`) is a line-by-line transcription of them. Keep
//! the two in step; the Redis tests check the same observable behaviour as the memory tests.
//!
//! For a quota of `max` hits per `window`:
//!
//! ```text
//! interval = floor(window_us / max)      time that one hit "costs"
//! limit    = interval * max              how far ahead of `now` the schedule may run (<= window)
//!
//! state: tat  (theoretical arrival time; absent = "now")
//!
//! hit(now):
//!     tat     = max(stored_tat or now, now)
//!     new_tat = tat + interval
//!     if new_tat - now > limit:  Limited  { retry_after = new_tat - limit - now }   (state unchanged)
//!     else:                      Allowed  { remaining = floor((limit - (new_tat - now)) / interval) }
//!                                store new_tat, expiring at new_tat (after which it equals "absent")
//!
//! peek(now):  same test for a hypothetical hit, nothing stored;
//!             Allowed { remaining = floor((limit - (tat - now)) / interval) }  (hits available now)
//! ```
//!
//! A fresh key therefore allows a burst of exactly `max` hits, then one more hit every `interval`;
//! after a full `window` without hits the whole burst is available again.

use std::time::Duration;

use crate::{Decision, Quota, RateLimitError};

/// Largest accepted [`Quota::window`]: 30 days. Keeps every microsecond sum far below 2^53, the
/// integer range that Redis' Lua (IEEE doubles) represents exactly.
pub const MAX_WINDOW: Duration = Duration::from_secs(30 * 24 * 60 * 60);

/// Smallest accepted [`Quota::window`]: one millisecond (Redis TTLs are in milliseconds).
pub const MIN_WINDOW: Duration = Duration::from_millis(1);

/// A quota converted to the integers the algorithm works with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Params {
    /// Microseconds one hit costs; at least 1.
    pub(crate) interval_us: u64,
    /// `interval_us * max`: the burst tolerance in microseconds; at most the window.
    pub(crate) limit_us: u64,
}

impl Params {
    /// Validates `quota` and derives the GCRA parameters.
    pub(crate) fn new(quota: Quota) -> Result<Self, RateLimitError> {
        let invalid = || RateLimitError::InvalidQuota {
            max: quota.max,
            window: quota.window,
        };
        if quota.max == 0 || quota.window < MIN_WINDOW || quota.window > MAX_WINDOW {
            return Err(invalid());
        }
        // Bounded by MAX_WINDOW above, so this fits a u64 easily.
        let window_us = u64::try_from(quota.window.as_micros()).map_err(|_| invalid())?;
        let interval_us = window_us / u64::from(quota.max);
        if interval_us == 0 {
            // More than one hit per microsecond cannot be represented.
            return Err(invalid());
        }
        let limit_us = interval_us
            .checked_mul(u64::from(quota.max))
            .ok_or_else(invalid)?;
        Ok(Self {
            interval_us,
            limit_us,
        })
    }

    /// Converts a count of microseconds that is at most `limit / interval` into the `u32` range.
    fn count(&self, budget_us: u64) -> u32 {
        // budget_us <= limit_us = interval_us * max, so the quotient is <= max <= u32::MAX.
        u32::try_from(budget_us / self.interval_us).unwrap_or(u32::MAX)
    }
}

/// Outcome of [`hit`]: the decision, and the new TAT to store when the hit was allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HitOutcome {
    /// What the caller is told.
    pub(crate) decision: Decision,
    /// The TAT to store (it expires at that instant), or `None` when nothing changes.
    pub(crate) new_tat_us: Option<u64>,
}

/// One hit at `now_us` against a key whose stored TAT is `stored_tat_us`.
pub(crate) fn hit(params: Params, stored_tat_us: Option<u64>, now_us: u64) -> HitOutcome {
    let tat = stored_tat_us.map_or(now_us, |t| t.max(now_us));
    let new_tat = tat.saturating_add(params.interval_us);
    let ahead = new_tat - now_us;
    if ahead > params.limit_us {
        HitOutcome {
            decision: Decision::Limited {
                retry_after: Duration::from_micros(ahead - params.limit_us),
            },
            new_tat_us: None,
        }
    } else {
        HitOutcome {
            decision: Decision::Allowed {
                remaining: params.count(params.limit_us - ahead),
            },
            new_tat_us: Some(new_tat),
        }
    }
}

/// What [`hit`] would decide at `now_us`, without consuming anything. `remaining` counts the hits
/// that would be allowed right now.
pub(crate) fn peek(params: Params, stored_tat_us: Option<u64>, now_us: u64) -> Decision {
    let tat = stored_tat_us.map_or(now_us, |t| t.max(now_us));
    let ahead = tat - now_us;
    let next = ahead.saturating_add(params.interval_us);
    if next > params.limit_us {
        Decision::Limited {
            retry_after: Duration::from_micros(next - params.limit_us),
        }
    } else {
        Decision::Allowed {
            remaining: params.count(params.limit_us - ahead),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(max: u32, window: Duration) -> Params {
        Params::new(Quota { max, window }).unwrap()
    }

    #[test]
    fn params_divide_the_window() {
        let p = params(10, Duration::from_secs(1));
        assert_eq!(p.interval_us, 100_000);
        assert_eq!(p.limit_us, 1_000_000);
        // Non-divisible windows round the interval down, so the burst never exceeds `max`.
        let p = params(7, Duration::from_secs(60));
        assert_eq!(p.interval_us, 8_571_428);
        assert_eq!(p.limit_us, 8_571_428 * 7);
        assert!(p.limit_us <= 60_000_000);
    }

    #[test]
    fn invalid_quotas_are_rejected() {
        let bad = [
            Quota::new(0, Duration::from_secs(1)),
            Quota::new(1, Duration::ZERO),
            Quota::new(1, Duration::from_micros(999)),
            Quota::new(1, MAX_WINDOW + Duration::from_secs(1)),
            Quota::new(2_000, Duration::from_millis(1)), // < 1 µs per hit
            Quota::new(u32::MAX, Duration::from_secs(1)),
        ];
        for quota in bad {
            assert!(
                matches!(Params::new(quota), Err(RateLimitError::InvalidQuota { max, window })
                    if max == quota.max && window == quota.window),
                "{quota:?} accepted"
            );
        }
        assert!(Params::new(Quota::new(1, MIN_WINDOW)).is_ok());
        assert!(Params::new(Quota::new(1, MAX_WINDOW)).is_ok());
        assert!(Params::new(Quota::new(1_000, Duration::from_millis(1))).is_ok());
    }

    #[test]
    fn burst_then_one_per_interval() {
        let p = params(3, Duration::from_secs(3));
        let mut tat = None;
        let now = 5_000_000;
        for expected in [2, 1, 0] {
            let out = hit(p, tat, now);
            assert_eq!(
                out.decision,
                Decision::Allowed {
                    remaining: expected
                }
            );
            tat = out.new_tat_us;
        }
        assert_eq!(tat, Some(now + 3_000_000));
        let out = hit(p, tat, now);
        assert_eq!(
            out.decision,
            Decision::Limited {
                retry_after: Duration::from_secs(1)
            }
        );
        assert_eq!(out.new_tat_us, None);
        // Half-way through the interval: still limited, with half the wait.
        let out = hit(p, tat, now + 500_000);
        assert_eq!(
            out.decision,
            Decision::Limited {
                retry_after: Duration::from_millis(500)
            }
        );
        // One interval later, exactly one hit is available again.
        let out = hit(p, tat, now + 1_000_000);
        assert_eq!(out.decision, Decision::Allowed { remaining: 0 });
    }

    #[test]
    fn stale_state_counts_as_fresh() {
        let p = params(5, Duration::from_secs(10));
        let out = hit(p, Some(1), 1_000_000_000);
        assert_eq!(out.decision, Decision::Allowed { remaining: 4 });
        assert_eq!(out.new_tat_us, Some(1_000_000_000 + 2_000_000));
    }

    #[test]
    fn peek_matches_hit_without_consuming() {
        let p = params(2, Duration::from_secs(2));
        assert_eq!(peek(p, None, 0), Decision::Allowed { remaining: 2 });
        let first = hit(p, None, 0);
        assert_eq!(
            peek(p, first.new_tat_us, 0),
            Decision::Allowed { remaining: 1 }
        );
        let second = hit(p, first.new_tat_us, 0);
        assert_eq!(second.decision, Decision::Allowed { remaining: 0 });
        let peeked = peek(p, second.new_tat_us, 0);
        assert_eq!(peeked, hit(p, second.new_tat_us, 0).decision);
        assert_eq!(
            peeked,
            Decision::Limited {
                retry_after: Duration::from_secs(1)
            }
        );
    }

    #[test]
    fn extreme_values_do_not_panic() {
        // The clocks never get near u64::MAX; this only proves the arithmetic cannot panic.
        let p = params(1, MAX_WINDOW);
        let _ = hit(p, Some(u64::MAX), u64::MAX - 1);
        assert!(!peek(p, Some(u64::MAX), 0).is_allowed());
        assert!(hit(p, None, u64::MAX).decision.is_allowed());
        assert!(peek(p, Some(0), u64::MAX).is_allowed());
    }
}
