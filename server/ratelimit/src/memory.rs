//! The in-process backend: one bounded map from key to GCRA state.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use crate::clock::{Clock, SystemClock};
use crate::gcra::{self, Params};
use crate::{Decision, Quota, RateLimitError, validate_key};

/// Default hard cap on the number of keys a [`MemoryLimiter`] tracks.
pub const DEFAULT_CAPACITY: usize = 100_000;

/// When the map is full and nothing has expired, evict this fraction (1/N) of it at once, so a
/// flood of new keys costs one O(n) pass per `capacity / N` insertions rather than per insertion.
const EVICT_DIVISOR: usize = 16;

/// Rate limiter state held in this process (the zero-config default).
///
/// Keys map to a single `u64` (the GCRA theoretical arrival time) behind one
/// [`std::sync::Mutex`]; every operation is a hash-map lookup, so contention is short.
///
/// **Bounded.** At most `capacity` keys are tracked (default [`DEFAULT_CAPACITY`]; each costs
/// roughly the key length plus ~50 bytes). When a new key arrives and the map is full:
///
/// 1. every expired entry is removed (an expired entry is indistinguishable from an absent one,
///    so this changes no decision);
/// 2. if that freed nothing, the 1/16 of entries *closest to expiring* are evicted. Those are
///    the keys with the most budget left, so forgetting them loosens limits the least; keys that
///    are currently throttled hard are the last to go. An attacker would need more than
///    `capacity` distinct keys inside one window to cause any eviction at all.
///
/// Cloning is cheap and clones share state.
#[derive(Clone)]
pub struct MemoryLimiter {
    inner: Arc<Inner>,
}

struct Inner {
    clock: Arc<dyn Clock>,
    capacity: usize,
    /// Key -> theoretical arrival time, in clock microseconds. The entry is dead once `now >= tat`.
    entries: Mutex<HashMap<Box<str>, u64>>,
}

impl MemoryLimiter {
    /// A limiter with [`DEFAULT_CAPACITY`] and the system's monotonic clock.
    pub fn new() -> Self {
        Self::with_capacity(DEFAULT_CAPACITY)
    }

    /// A limiter tracking at most `capacity` keys (at least 1) with the system's monotonic clock.
    pub fn with_capacity(capacity: usize) -> Self {
        Self::with_clock(capacity, SystemClock::new())
    }

    /// A limiter tracking at most `capacity` keys (at least 1) that reads time from `clock`
    /// (tests pass a [`ManualClock`](crate::ManualClock) to move time without sleeping).
    pub fn with_clock(capacity: usize, clock: impl Clock) -> Self {
        Self {
            inner: Arc::new(Inner {
                clock: Arc::new(clock),
                capacity: capacity.max(1),
                entries: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The hard cap on tracked keys.
    pub fn capacity(&self) -> usize {
        self.inner.capacity
    }

    /// Number of keys currently tracked, including expired ones not yet swept. Never exceeds
    /// [`capacity`](Self::capacity).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no key is tracked.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// Counts one hit on `key` against `quota`. See [`RateLimiter::hit`](crate::RateLimiter::hit).
    pub fn hit(&self, key: &str, quota: Quota) -> Result<Decision, RateLimitError> {
        validate_key(key)?;
        let params = Params::new(quota)?;
        let now = self.now_us();
        let mut entries = self.lock();
        let stored = entries.get(key).copied();
        let outcome = gcra::hit(params, stored, now);
        if let Some(new_tat) = outcome.new_tat_us {
            if let Some(tat) = entries.get_mut(key) {
                *tat = new_tat;
            } else {
                make_room(&mut entries, self.inner.capacity, now);
                entries.insert(key.into(), new_tat);
            }
        }
        Ok(outcome.decision)
    }

    /// What [`hit`](Self::hit) would decide, without counting. See
    /// [`RateLimiter::peek`](crate::RateLimiter::peek).
    pub fn peek(&self, key: &str, quota: Quota) -> Result<Decision, RateLimitError> {
        validate_key(key)?;
        let params = Params::new(quota)?;
        let now = self.now_us();
        let stored = self.lock().get(key).copied();
        Ok(gcra::peek(params, stored, now))
    }

    /// Forgets `key`, restoring its full budget.
    pub fn reset(&self, key: &str) -> Result<(), RateLimitError> {
        validate_key(key)?;
        self.lock().remove(key);
        Ok(())
    }

    fn now_us(&self) -> u64 {
        duration_to_us(self.inner.clock.now())
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Box<str>, u64>> {
        // The map holds plain integers and every update is a single insert/assign, so a panic
        // elsewhere while the lock was held cannot leave it inconsistent.
        self.inner
            .entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl Default for MemoryLimiter {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for MemoryLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Keys are never printed: they are derived from user identifiers.
        f.debug_struct("MemoryLimiter")
            .field("capacity", &self.inner.capacity)
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

fn duration_to_us(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Ensures there is room for one more entry; see the eviction policy on [`MemoryLimiter`].
fn make_room(entries: &mut HashMap<Box<str>, u64>, capacity: usize, now: u64) {
    if entries.len() < capacity {
        return;
    }
    entries.retain(|_, tat| *tat > now);
    if entries.len() < capacity {
        return;
    }
    let keep = (capacity - capacity / EVICT_DIVISOR).min(capacity - 1);
    let evict = entries.len().saturating_sub(keep);
    let mut tats: Vec<u64> = entries.values().copied().collect();
    let Some(nth) = evict.checked_sub(1).filter(|&n| n < tats.len()) else {
        return;
    };
    let (_, &mut threshold, _) = tats.select_nth_unstable(nth);
    // Remove exactly `evict` entries among those with the earliest TATs (ties broken arbitrarily).
    let mut budget = evict;
    entries.retain(|_, tat| {
        if budget > 0 && *tat <= threshold {
            budget -= 1;
            false
        } else {
            true
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ManualClock;

    fn limiter(capacity: usize) -> (MemoryLimiter, ManualClock) {
        let clock = ManualClock::new();
        (MemoryLimiter::with_clock(capacity, clock.clone()), clock)
    }

    #[test]
    fn allows_up_to_max_then_limits() {
        let (limiter, _) = limiter(10);
        let quota = Quota::per_minute(5);
        for remaining in (0..5).rev() {
            assert_eq!(
                limiter.hit("k", quota).unwrap(),
                Decision::Allowed { remaining }
            );
        }
        for _ in 0..3 {
            let decision = limiter.hit("k", quota).unwrap();
            // One hit costs 12 s; the next one becomes available 12 s from now.
            assert_eq!(
                decision,
                Decision::Limited {
                    retry_after: Duration::from_secs(12)
                }
            );
        }
    }

    #[test]
    fn retry_after_is_exact_and_recovery_needs_the_window() {
        let (limiter, clock) = limiter(10);
        let quota = Quota::per_second(4);
        for _ in 0..4 {
            assert!(limiter.hit("k", quota).unwrap().is_allowed());
        }
        let retry = limiter.hit("k", quota).unwrap().retry_after().unwrap();
        assert_eq!(retry, Duration::from_millis(250));
        clock.advance(retry - Duration::from_micros(1));
        assert!(!limiter.hit("k", quota).unwrap().is_allowed());
        clock.advance(Duration::from_micros(1));
        assert_eq!(
            limiter.hit("k", quota).unwrap(),
            Decision::Allowed { remaining: 0 }
        );
        // A full window after the last hit the whole burst is back, and no more.
        clock.advance(Duration::from_secs(1));
        for remaining in (0..4).rev() {
            assert_eq!(
                limiter.hit("k", quota).unwrap(),
                Decision::Allowed { remaining }
            );
        }
        assert!(!limiter.hit("k", quota).unwrap().is_allowed());
    }

    #[test]
    fn limited_hits_do_not_push_the_schedule() {
        let (limiter, clock) = limiter(10);
        let quota = Quota::new(2, Duration::from_secs(10));
        limiter.hit("k", quota).unwrap();
        limiter.hit("k", quota).unwrap();
        for _ in 0..100 {
            assert!(!limiter.hit("k", quota).unwrap().is_allowed());
        }
        clock.advance(Duration::from_secs(5));
        assert!(limiter.hit("k", quota).unwrap().is_allowed());
    }

    #[test]
    fn keys_are_independent() {
        let (limiter, _) = limiter(10);
        let quota = Quota::per_hour(1);
        assert!(limiter.hit("a", quota).unwrap().is_allowed());
        assert!(!limiter.hit("a", quota).unwrap().is_allowed());
        assert!(limiter.hit("b", quota).unwrap().is_allowed());
    }

    #[test]
    fn peek_does_not_count() {
        let (limiter, _) = limiter(10);
        let quota = Quota::per_minute(3);
        for _ in 0..10 {
            assert_eq!(
                limiter.peek("k", quota).unwrap(),
                Decision::Allowed { remaining: 3 }
            );
        }
        assert!(limiter.is_empty(), "peek must not create state");
        limiter.hit("k", quota).unwrap();
        assert_eq!(
            limiter.peek("k", quota).unwrap(),
            Decision::Allowed { remaining: 2 }
        );
        limiter.hit("k", quota).unwrap();
        limiter.hit("k", quota).unwrap();
        let peeked = limiter.peek("k", quota).unwrap();
        assert_eq!(peeked, limiter.hit("k", quota).unwrap());
        assert_eq!(peeked.retry_after(), Some(Duration::from_secs(20)));
    }

    #[test]
    fn reset_restores_the_budget() {
        let (limiter, _) = limiter(10);
        let quota = Quota::per_day(1);
        assert!(limiter.hit("k", quota).unwrap().is_allowed());
        assert!(!limiter.hit("k", quota).unwrap().is_allowed());
        limiter.reset("k").unwrap();
        assert_eq!(limiter.len(), 0);
        assert!(limiter.hit("k", quota).unwrap().is_allowed());
        // Resetting an unknown key is not an error.
        limiter.reset("never-seen").unwrap();
    }

    #[test]
    fn capacity_is_a_hard_cap() {
        let (limiter, _) = limiter(64);
        let quota = Quota::per_hour(1);
        for i in 0..1_000 {
            assert!(limiter.hit(&format!("k{i}"), quota).unwrap().is_allowed());
            assert!(limiter.len() <= 64);
        }
        assert_eq!(limiter.capacity(), 64);
    }

    #[test]
    fn expired_entries_are_swept_before_live_ones_are_evicted() {
        let (limiter, clock) = limiter(4);
        let short = Quota::new(1, Duration::from_secs(1));
        let long = Quota::per_hour(1);
        limiter.hit("long", long).unwrap();
        for key in ["s1", "s2", "s3"] {
            limiter.hit(key, short).unwrap();
        }
        assert_eq!(limiter.len(), 4);
        clock.advance(Duration::from_secs(2));
        limiter.hit("new", long).unwrap();
        // The three expired short-window keys went; the throttled key survived.
        assert_eq!(limiter.len(), 2);
        assert!(!limiter.hit("long", long).unwrap().is_allowed());
        assert!(!limiter.hit("new", long).unwrap().is_allowed());
    }

    #[test]
    fn full_of_live_keys_evicts_those_closest_to_expiry() {
        let (limiter, _) = limiter(32);
        let hard = Quota::per_day(1);
        let soft = Quota::new(1, Duration::from_secs(10));
        for i in 0..16 {
            limiter.hit(&format!("hard{i}"), hard).unwrap();
        }
        for i in 0..16 {
            limiter.hit(&format!("soft{i}"), soft).unwrap();
        }
        assert_eq!(limiter.len(), 32);
        limiter.hit("newcomer", hard).unwrap();
        // 32 - 32/16 = 30 kept, then the newcomer: 31. Only soft keys were evicted.
        assert_eq!(limiter.len(), 31);
        for i in 0..16 {
            assert!(!limiter.hit(&format!("hard{i}"), hard).unwrap().is_allowed());
        }
        assert!(!limiter.hit("newcomer", hard).unwrap().is_allowed());
    }

    #[test]
    fn capacity_one_still_works() {
        let (limiter, _) = limiter(0);
        assert_eq!(limiter.capacity(), 1);
        let quota = Quota::per_hour(1);
        assert!(limiter.hit("a", quota).unwrap().is_allowed());
        assert!(limiter.hit("b", quota).unwrap().is_allowed());
        assert_eq!(limiter.len(), 1);
        assert!(!limiter.hit("b", quota).unwrap().is_allowed());
    }

    #[test]
    fn bad_keys_and_quotas_change_nothing() {
        let (limiter, _) = limiter(10);
        let long = "x".repeat(crate::MAX_KEY_LEN + 1);
        let ok = Quota::per_minute(1);
        for key in ["", long.as_str()] {
            assert!(matches!(
                limiter.hit(key, ok),
                Err(RateLimitError::InvalidKey { len, max: crate::MAX_KEY_LEN }) if len == key.len()
            ));
            assert!(limiter.peek(key, ok).is_err());
            assert!(limiter.reset(key).is_err());
        }
        let bad = Quota::new(0, Duration::from_secs(1));
        assert!(matches!(
            limiter.hit("k", bad),
            Err(RateLimitError::InvalidQuota { .. })
        ));
        assert!(limiter.peek("k", bad).is_err());
        assert!(limiter.is_empty());
        let max_len = "y".repeat(crate::MAX_KEY_LEN);
        assert!(limiter.hit(&max_len, ok).unwrap().is_allowed());
    }

    #[test]
    fn clones_share_state_across_threads() {
        let (limiter, _) = limiter(100);
        let quota = Quota::per_hour(50);
        let allowed: usize = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    let limiter = limiter.clone();
                    s.spawn(move || {
                        (0..20)
                            .filter(|_| limiter.hit("shared", quota).unwrap().is_allowed())
                            .count()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!(allowed, 50);
    }

    #[test]
    fn debug_does_not_print_keys() {
        let (limiter, _) = limiter(10);
        limiter
            .hit("secret-key-material", Quota::per_hour(1))
            .unwrap();
        let printed = format!("{limiter:?}");
        assert!(!printed.contains("secret"), "{printed}");
        assert!(printed.contains("len: 1"), "{printed}");
    }
}
