//! Rate limiting for the Haven relay.
//!
//! One algorithm, two places to keep its state:
//!
//! - [`RateLimiter::in_memory`]: a bounded map inside the process (the zero-config default);
//! - [`RateLimiter::redis`]: Redis, so several relay instances behind a load balancer share the
//!   same limits (used when the relay is given `REDIS_URL`).
//!
//! Both run the **Generic Cell Rate Algorithm** (GCRA) with identical integer arithmetic (see
//! [Algorithm](#algorithm)), so adding Redis does not change behaviour. A [`Quota`] of `max` hits
//! per `window` allows a burst of `max` hits on a fresh key, then refills smoothly at one hit per
//! `window / max`; a key left alone for `window` has its full burst again. Each key costs one
//! integer of state, and a denied hit costs nothing (hammering a limited key does not extend the
//! wait).
//!
//! ```
//! # async fn demo() -> Result<(), haven_ratelimit::RateLimitError> {
//! use haven_ratelimit::{Decision, Quota, RateLimiter};
//!
//! let limiter = RateLimiter::in_memory();
//! let quota = Quota::per_minute(5);
//! // Callers pass keys that are already hashed (never a raw IP or username).
//! match limiter.hit("login:ip:3f2a…", quota).await? {
//!     Decision::Allowed { remaining } => println!("ok, {remaining} left"),
//!     Decision::Limited { retry_after } => println!("429, Retry-After: {retry_after:?}"),
//!     _ => {}
//! }
//! # Ok(()) }
//! ```
//!
//! # Keys
//!
//! Keys are opaque strings of 1 to [`MAX_KEY_LEN`] bytes. Callers must hash anything personal
//! (IP prefixes, usernames) with a server secret before using it as a key, and should namespace
//! keys per quota (`"login:…"`, `"send:…"`): one key's state is only meaningful for one quota.
//!
//! # Algorithm
//!
//! GCRA rather than a sliding-window counter: it needs one integer per key instead of two
//! counters, has no window-boundary burst (a sliding-window counter approximates; GCRA is
//! exact), and yields an exact `retry_after`. All times are integer microseconds.
//!
//! ```text
//! interval = floor(window_us / max)      what one hit costs (>= 1 µs)
//! limit    = interval * max              how far ahead of now the schedule may run (<= window)
//! state    = tat, the "theoretical arrival time"; an absent key means tat = now
//!
//! hit(now):   tat = max(tat, now); new = tat + interval
//!             new - now > limit  =>  Limited { retry_after = new - limit - now }, nothing stored
//!             otherwise          =>  Allowed { remaining = floor((limit - (new - now)) / interval) },
//!                                    store new, expiring at `new` (then it equals "absent")
//! peek(now):  tat = max(tat, now)
//!             tat + interval - now > limit  =>  Limited { retry_after = tat + interval - limit - now }
//!             otherwise  =>  Allowed { remaining = floor((limit - (tat - now)) / interval) }
//! ```
//!
//! The in-memory backend reads time from a [`Clock`] (monotonic; injectable for tests). The Redis
//! backend runs the same steps in one Lua script using the Redis server's `TIME`, so instances
//! with skewed clocks agree; a test checks the script against the Rust code step by step.
//!
//! # Errors
//!
//! Bad keys and quotas are rejected without touching any state. With Redis, every operation
//! can also fail with [`RateLimitError::Redis`] when Redis is down or slow; the crate never
//! silently allows or denies in that case — the caller decides to fail open or closed.

mod clock;
mod error;
mod gcra;
mod memory;
mod redis;

use std::time::Duration;

pub use clock::{Clock, ManualClock, SystemClock};
pub use error::RateLimitError;
pub use gcra::{MAX_WINDOW, MIN_WINDOW};
pub use memory::{DEFAULT_CAPACITY, MemoryLimiter};
pub use redis::{COMMAND_TIMEOUT, CONNECT_TIMEOUT, MAX_PREFIX_LEN, RedisLimiter};

/// Longest accepted key, in bytes. Hashed keys (e.g. `"login:ip:" + 64 hex digits`) fit easily;
/// the cap bounds memory per entry and Redis key size.
pub const MAX_KEY_LEN: usize = 256;

/// "At most `max` hits per `window`", enforced with GCRA (a burst of `max`, then one hit every
/// `window / max`).
///
/// Valid quotas have `max >= 1`, [`MIN_WINDOW`] `<= window <=` [`MAX_WINDOW`], and at least one
/// microsecond per hit (`window / max >= 1 µs`); others are rejected with
/// [`RateLimitError::InvalidQuota`] when used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Quota {
    /// Hits allowed in one burst, and in any one `window` on average.
    pub max: u32,
    /// The period over which `max` hits are allowed.
    pub window: Duration,
}

impl Quota {
    /// `max` hits per `window`.
    pub const fn new(max: u32, window: Duration) -> Self {
        Self { max, window }
    }

    /// `max` hits per second.
    pub const fn per_second(max: u32) -> Self {
        Self::new(max, Duration::from_secs(1))
    }

    /// `max` hits per minute.
    pub const fn per_minute(max: u32) -> Self {
        Self::new(max, Duration::from_secs(60))
    }

    /// `max` hits per hour.
    pub const fn per_hour(max: u32) -> Self {
        Self::new(max, Duration::from_secs(60 * 60))
    }

    /// `max` hits per day.
    pub const fn per_day(max: u32) -> Self {
        Self::new(max, Duration::from_secs(24 * 60 * 60))
    }
}

/// The answer to a [`RateLimiter::hit`] or [`RateLimiter::peek`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Decision {
    /// The hit is allowed (and, for `hit`, was counted).
    Allowed {
        /// How many further hits would be allowed immediately after this call.
        remaining: u32,
    },
    /// The hit is refused and was not counted.
    Limited {
        /// How long until one hit will be allowed again (suitable for `Retry-After`, rounded up
        /// to whole seconds by the caller).
        retry_after: Duration,
    },
}

impl Decision {
    /// Whether the hit is allowed.
    pub const fn is_allowed(&self) -> bool {
        matches!(self, Self::Allowed { .. })
    }

    /// The remaining budget, if allowed.
    pub const fn remaining(&self) -> Option<u32> {
        match self {
            Self::Allowed { remaining } => Some(*remaining),
            Self::Limited { .. } => None,
        }
    }

    /// The wait before retrying, if limited.
    pub const fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Allowed { .. } => None,
            Self::Limited { retry_after } => Some(*retry_after),
        }
    }
}

/// A rate limiter: in-process or Redis-backed, with the same algorithm and API.
///
/// Cheap to clone; clones share state.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum RateLimiter {
    /// State in this process; see [`MemoryLimiter`].
    Memory(MemoryLimiter),
    /// State in Redis, shared by every instance using the same prefix; see [`RedisLimiter`].
    Redis(RedisLimiter),
}

impl RateLimiter {
    /// An in-process limiter tracking at most [`DEFAULT_CAPACITY`] keys (see [`MemoryLimiter`]
    /// for the eviction policy). Use [`MemoryLimiter::with_capacity`] for another cap.
    pub fn in_memory() -> Self {
        Self::Memory(MemoryLimiter::new())
    }

    /// A Redis-backed limiter storing keys as `key_prefix:KEY` (prefix 1 to
    /// [`MAX_PREFIX_LEN`] bytes). Fails if the URL is invalid or Redis cannot be reached now.
    ///
    /// Each call opens its own connection: create one limiter at start-up and clone it. Every
    /// instance that should share limits must use the same Redis and the same prefix.
    pub async fn redis(url: &str, key_prefix: &str) -> Result<Self, RateLimitError> {
        RedisLimiter::connect(url, key_prefix)
            .await
            .map(Self::Redis)
    }

    /// Counts one hit on `key` against `quota`, if allowed.
    ///
    /// Returns [`Decision::Allowed`] (hit counted) or [`Decision::Limited`] (nothing counted).
    /// Errors on an invalid key or quota (nothing changed) and, with Redis, when Redis fails
    /// ([`RateLimitError::Redis`]; the caller decides whether to fail open or closed).
    pub async fn hit(&self, key: &str, quota: Quota) -> Result<Decision, RateLimitError> {
        match self {
            Self::Memory(m) => m.hit(key, quota),
            Self::Redis(r) => r.hit(key, quota).await,
        }
    }

    /// What [`hit`](Self::hit) would decide right now, without counting anything.
    /// `Allowed { remaining }` is the number of hits currently available.
    pub async fn peek(&self, key: &str, quota: Quota) -> Result<Decision, RateLimitError> {
        match self {
            Self::Memory(m) => m.peek(key, quota),
            Self::Redis(r) => r.peek(key, quota).await,
        }
    }

    /// Forgets `key`, restoring its full budget (e.g. after a successful login).
    pub async fn reset(&self, key: &str) -> Result<(), RateLimitError> {
        match self {
            Self::Memory(m) => m.reset(key),
            Self::Redis(r) => r.reset(key).await,
        }
    }

    /// Checks the backend is usable, for readiness probes: always `Ok` in memory, a `PING`
    /// round trip with Redis.
    pub async fn ping(&self) -> Result<(), RateLimitError> {
        match self {
            Self::Memory(_) => Ok(()),
            Self::Redis(r) => r.ping().await,
        }
    }
}

/// Checks a key's length: 1 to [`MAX_KEY_LEN`] bytes.
fn validate_key(key: &str) -> Result<(), RateLimitError> {
    if key.is_empty() || key.len() > MAX_KEY_LEN {
        return Err(RateLimitError::InvalidKey {
            len: key.len(),
            max: MAX_KEY_LEN,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quota_helpers() {
        assert_eq!(
            Quota::per_second(3),
            Quota {
                max: 3,
                window: Duration::from_secs(1)
            }
        );
        assert_eq!(Quota::per_minute(1).window, Duration::from_secs(60));
        assert_eq!(Quota::per_hour(1).window, Duration::from_secs(3600));
        assert_eq!(
            Quota::per_day(2),
            Quota::new(2, Duration::from_secs(86_400))
        );
    }

    #[test]
    fn decision_helpers() {
        let ok = Decision::Allowed { remaining: 4 };
        let no = Decision::Limited {
            retry_after: Duration::from_secs(2),
        };
        assert!(ok.is_allowed());
        assert!(!no.is_allowed());
        assert_eq!(ok.remaining(), Some(4));
        assert_eq!(no.remaining(), None);
        assert_eq!(ok.retry_after(), None);
        assert_eq!(no.retry_after(), Some(Duration::from_secs(2)));
    }

    #[tokio::test]
    async fn in_memory_facade_delegates() {
        let limiter = RateLimiter::in_memory();
        let quota = Quota::per_hour(2);
        limiter.ping().await.unwrap();
        assert_eq!(
            limiter.peek("k", quota).await.unwrap(),
            Decision::Allowed { remaining: 2 }
        );
        assert_eq!(
            limiter.hit("k", quota).await.unwrap(),
            Decision::Allowed { remaining: 1 }
        );
        assert_eq!(
            limiter.hit("k", quota).await.unwrap(),
            Decision::Allowed { remaining: 0 }
        );
        assert!(!limiter.hit("k", quota).await.unwrap().is_allowed());
        limiter.reset("k").await.unwrap();
        assert!(limiter.hit("k", quota).await.unwrap().is_allowed());
        let RateLimiter::Memory(m) = &limiter else {
            panic!("in_memory() built {limiter:?}");
        };
        assert_eq!(m.capacity(), DEFAULT_CAPACITY);
    }
}
