//! The shared backend: GCRA state in Redis, so every relay instance enforces the same limits.

use std::fmt;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use fred::prelude::{Builder, ClientLike, Config, KeysInterface, LuaInterface, ReconnectPolicy};
use sha1::{Digest, Sha1};

use crate::gcra::Params;
use crate::{Decision, Quota, RateLimitError, validate_key};

/// The GCRA script; see `gcra.lua` and [`gcra`](crate::gcra).
const SCRIPT: &str = include_str!("gcra.lua");

/// Longest accepted key prefix, in bytes.
pub const MAX_PREFIX_LEN: usize = 64;

/// How long one Redis command may take before [`RedisLimiter::hit`] gives up with
/// [`RateLimitError::Redis`]. Rate limiting sits on the request path, so this is short.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(1);

/// How long opening a TCP (and TLS) connection to Redis may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Commands queued while reconnecting beyond this are rejected instead of buffered.
const MAX_QUEUED_COMMANDS: usize = 10_000;

/// Rate limiter state in Redis, shared by every process using the same Redis and key prefix.
///
/// Each [`hit`](Self::hit) / [`peek`](Self::peek) is one atomic Lua script (`EVALSHA`, falling
/// back to `EVAL` when the server answers `NOSCRIPT`, e.g. after a restart or failover). The
/// script reads the Redis server's clock (`TIME`), so relay instances whose clocks disagree
/// still compute the same decisions. A key is stored as `PREFIX:KEY` holding one integer, and
/// carries a TTL (`SET … PX`) equal to the time until its state is indistinguishable from an
/// absent key, so nothing lingers.
///
/// **Failure behaviour.** If Redis is unreachable or slow, every operation returns
/// [`RateLimitError::Redis`] after at most about [`COMMAND_TIMEOUT`] (per attempt); nothing is
/// decided on the caller's behalf. The relay chooses whether that means fail open (serve) or fail
/// closed (refuse). The client reconnects in the background with exponential backoff.
///
/// Cloning is cheap; clones share one multiplexed connection.
#[derive(Clone)]
pub struct RedisLimiter {
    client: fred::clients::Client,
    prefix: Arc<str>,
    script_sha: Arc<str>,
}

impl RedisLimiter {
    /// Connects to the Redis at `url` (`redis://[user:password@]host[:port][/db]`; `rediss://`
    /// needs this crate's `tls` feature) and stores keys under `key_prefix:`.
    ///
    /// Fails if the URL or prefix is invalid or the first connection cannot be made.
    pub async fn connect(url: &str, key_prefix: &str) -> Result<Self, RateLimitError> {
        validate_prefix(key_prefix)?;
        let config = Config::from_url(url)?;
        let mut builder = Builder::from_config(config);
        builder
            .with_connection_config(|c| {
                c.connection_timeout = CONNECT_TIMEOUT;
                c.internal_command_timeout = CONNECT_TIMEOUT;
                // A retried hit can only count twice (stricter), never zero times.
                c.max_command_attempts = 2;
                c.max_command_buffer_len = MAX_QUEUED_COMMANDS;
            })
            .with_performance_config(|p| p.default_command_timeout = COMMAND_TIMEOUT)
            // Retry forever: a Redis restart must not disable the limiter for good.
            .set_policy(ReconnectPolicy::new_exponential(0, 100, 5_000, 2));
        let client = builder.build()?;
        // The connection task is detached; it lives as long as the client does.
        let _connection = client.init().await?;
        Ok(Self {
            client,
            prefix: key_prefix.into(),
            script_sha: script_sha().into(),
        })
    }

    /// Counts one hit. See [`RateLimiter::hit`](crate::RateLimiter::hit).
    pub async fn hit(&self, key: &str, quota: Quota) -> Result<Decision, RateLimitError> {
        self.run(key, quota, true).await
    }

    /// Decides without counting. See [`RateLimiter::peek`](crate::RateLimiter::peek).
    pub async fn peek(&self, key: &str, quota: Quota) -> Result<Decision, RateLimitError> {
        self.run(key, quota, false).await
    }

    /// Deletes `key`'s state, restoring its full budget.
    pub async fn reset(&self, key: &str) -> Result<(), RateLimitError> {
        validate_key(key)?;
        let _deleted: i64 = self.client.del(self.full_key(key)).await?;
        Ok(())
    }

    /// Round-trips a `PING` to Redis.
    pub async fn ping(&self) -> Result<(), RateLimitError> {
        let _pong: String = self.client.ping(None).await?;
        Ok(())
    }

    /// The key prefix this limiter writes under.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    async fn run(
        &self,
        key: &str,
        quota: Quota,
        consume: bool,
    ) -> Result<Decision, RateLimitError> {
        self.run_at(key, quota, consume, None).await
    }

    /// Runs the script; `now_us` overrides Redis' clock and is only ever `Some` in tests.
    async fn run_at(
        &self,
        key: &str,
        quota: Quota,
        consume: bool,
        now_us: Option<u64>,
    ) -> Result<Decision, RateLimitError> {
        validate_key(key)?;
        let params = Params::new(quota)?;
        let full_key = self.full_key(key);
        let mut args = vec![
            params.interval_us.to_string(),
            params.limit_us.to_string(),
            if consume { "1" } else { "0" }.to_owned(),
        ];
        args.extend(now_us.map(|now| now.to_string()));
        let reply: Vec<i64> = match self
            .client
            .evalsha(&*self.script_sha, full_key.as_str(), args.clone())
            .await
        {
            Err(e) if e.details().starts_with("NOSCRIPT") => {
                // The server lost its script cache; EVAL runs the script and caches it again.
                self.client.eval(SCRIPT, full_key.as_str(), args).await?
            }
            other => other?,
        };
        decode_reply(&reply)
    }

    fn full_key(&self, key: &str) -> String {
        format!("{}:{key}", self.prefix)
    }

    #[cfg(test)]
    fn with_script_sha(mut self, sha: &str) -> Self {
        self.script_sha = sha.into();
        self
    }
}

impl fmt::Debug for RedisLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URL (which may hold a password) is deliberately not kept or printed.
        f.debug_struct("RedisLimiter")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

fn validate_prefix(prefix: &str) -> Result<(), RateLimitError> {
    if prefix.is_empty() || prefix.len() > MAX_PREFIX_LEN {
        return Err(RateLimitError::InvalidPrefix {
            len: prefix.len(),
            max: MAX_PREFIX_LEN,
        });
    }
    Ok(())
}

/// Lower-case hex SHA-1 of [`SCRIPT`]: the name `EVALSHA` knows it by.
fn script_sha() -> String {
    let digest = Sha1::digest(SCRIPT.as_bytes());
    let mut hex = String::with_capacity(40);
    for byte in digest.iter() {
        // Writing to a String cannot fail.
        let _ = write!(hex, "{byte:02x}");
    }
    hex
}

/// Turns the script's `{allowed, remaining, retry_after_us}` into a [`Decision`].
fn decode_reply(reply: &[i64]) -> Result<Decision, RateLimitError> {
    let bad = || RateLimitError::UnexpectedReply { len: reply.len() };
    match *reply {
        [1, remaining, _] => Ok(Decision::Allowed {
            remaining: u32::try_from(remaining).map_err(|_| bad())?,
        }),
        [0, _, retry_us] => Ok(Decision::Limited {
            retry_after: Duration::from_micros(u64::try_from(retry_us).map_err(|_| bad())?),
        }),
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gcra;

    #[test]
    fn script_sha_is_the_sha1_of_the_script() {
        let sha = script_sha();
        assert_eq!(sha.len(), 40);
        assert!(
            sha.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        // Known-answer check of the hex encoding with SHA-1("abc").
        let digest = Sha1::digest(b"abc");
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "a9993e364706816aba3e25717850c26c9cd0d89d");
    }

    #[test]
    fn replies_are_decoded_strictly() {
        assert_eq!(
            decode_reply(&[1, 7, 0]).unwrap(),
            Decision::Allowed { remaining: 7 }
        );
        assert_eq!(
            decode_reply(&[0, 0, 1_500_000]).unwrap(),
            Decision::Limited {
                retry_after: Duration::from_millis(1500)
            }
        );
        for bad in [
            &[][..],
            &[1, 2][..],
            &[1, 2, 3, 4][..],
            &[2, 0, 0][..],
            &[1, -1, 0][..],
            &[0, 0, -5][..],
        ] {
            assert!(
                matches!(decode_reply(bad), Err(RateLimitError::UnexpectedReply { len }) if len == bad.len()),
                "{bad:?} accepted"
            );
        }
    }

    #[test]
    fn prefixes_are_bounded() {
        assert!(validate_prefix("haven").is_ok());
        assert!(validate_prefix(&"p".repeat(MAX_PREFIX_LEN)).is_ok());
        for bad in [String::new(), "p".repeat(MAX_PREFIX_LEN + 1)] {
            assert!(matches!(
                validate_prefix(&bad),
                Err(RateLimitError::InvalidPrefix { len, max: MAX_PREFIX_LEN }) if len == bad.len()
            ));
        }
    }

    /// The Lua script and `gcra.rs` compute the same decisions and the same stored TAT, bit for
    /// bit, over a long pseudo-random sequence of hits, peeks and clock advances (the script is
    /// given the same "now" as the Rust code, at a realistic epoch-microsecond magnitude).
    #[tokio::test]
    async fn lua_script_matches_rust_gcra() {
        let Some(url) = haven_testkit::services::redis() else {
            return;
        };
        let prefix = format!("haven-test-crosscheck-{}", std::process::id());
        let limiter = RedisLimiter::connect(&url, &prefix).await.unwrap();
        // Intervals of at least 1 s keep every real TTL far longer than the test's run time, so
        // Redis never expires a key behind the model's back; the simulated clock covers the
        // arithmetic (the step sizes below scale with the interval).
        let quotas = [
            Quota::new(3, Duration::from_secs(3)),
            Quota::new(7, Duration::from_secs(60)),
            Quota::new(13, Duration::from_secs(17)),
            Quota::new(1_000, Duration::from_secs(1_000)),
            Quota::new(1, crate::MAX_WINDOW),
        ];
        // xorshift64: deterministic, no dependency.
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut seen = [[0_u32; 2]; 2];
        for (qi, quota) in quotas.into_iter().enumerate() {
            let params = Params::new(quota).unwrap();
            let key = format!("q{qi}");
            let mut now: u64 = 1_763_900_000_123_457; // ~2025 in µs: 16 digits, like Redis TIME.
            let mut tat: Option<u64> = None;
            for step in 0..400 {
                let r = next();
                // Mostly tiny steps (bursts), sometimes about one interval, rarely a whole window.
                now += match r % 10 {
                    0..=5 => r % 3,
                    6..=8 => (r >> 8) % (2 * params.interval_us + 1),
                    _ => (r >> 8) % (2 * params.limit_us + 1),
                };
                let consume = (r >> 40) % 4 != 0;
                let lua = limiter
                    .run_at(&key, quota, consume, Some(now))
                    .await
                    .unwrap();
                let rust = if consume {
                    let out = gcra::hit(params, tat, now);
                    if out.new_tat_us.is_some() {
                        tat = out.new_tat_us;
                    }
                    out.decision
                } else {
                    gcra::peek(params, tat, now)
                };
                assert_eq!(lua, rust, "quota {qi} step {step} now {now}");
                seen[usize::from(consume)][usize::from(lua.is_allowed())] += 1;
                if let (Some(tat), true) = (tat, consume && lua.is_allowed()) {
                    let stored: String = limiter.client.get(limiter.full_key(&key)).await.unwrap();
                    assert_eq!(stored, tat.to_string(), "quota {qi} step {step}");
                    // The TTL is the time until the state equals "absent", in whole ms.
                    let expected = i64::try_from((tat - now).div_ceil(1_000)).unwrap();
                    let ttl: i64 = limiter.client.pttl(limiter.full_key(&key)).await.unwrap();
                    assert!(
                        ttl <= expected && ttl > expected - 1_000,
                        "quota {qi} step {step}: pttl {ttl}, expected {expected}"
                    );
                }
            }
            limiter.reset(&key).await.unwrap();
        }
        // Every branch of the script was exercised: {peek, hit} x {limited, allowed}.
        assert!(seen.iter().flatten().all(|&n| n > 20), "{seen:?}");
    }

    /// The EVAL fallback: a limiter that believes in a SHA the server never saw still works, and
    /// leaves the real script cached (so the normal EVALSHA path then succeeds).
    #[tokio::test]
    async fn noscript_falls_back_to_eval() {
        let Some(url) = haven_testkit::services::redis() else {
            return;
        };
        let prefix = format!("haven-test-noscript-{}", std::process::id());
        let real = RedisLimiter::connect(&url, &prefix).await.unwrap();
        let bogus = real
            .clone()
            .with_script_sha("0000000000000000000000000000000000000000");
        let quota = Quota::per_minute(2);
        assert_eq!(
            bogus.hit("k", quota).await.unwrap(),
            Decision::Allowed { remaining: 1 }
        );
        assert_eq!(
            real.hit("k", quota).await.unwrap(),
            Decision::Allowed { remaining: 0 }
        );
        assert!(!bogus.peek("k", quota).await.unwrap().is_allowed());
        // The SHA we compute is the one Redis computes.
        let loaded: String = real.client.script_load(SCRIPT).await.unwrap();
        assert_eq!(loaded, script_sha());
        real.reset("k").await.unwrap();
    }
}
