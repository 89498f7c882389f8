//! Test support shared by Haven's tests (Rust, and through `haven-test-relay`, the binding and
//! browser tests).
//!
//! - [`services`]: the local PostgreSQL, Redis and S3 server, found without configuration;
//!   a test whose service is absent is reported as skipped by name (or fails, in CI).
//! - [`postgres`]: a fresh database per test, dropped afterwards.
//! - [`relay`]: relays from one table of settings, in process or as the binary.
//! - [`harness`]: the relay's router driven in process, and the same API over HTTP.
//! - [`s3`]: an `s3s-fs` S3 server checking signatures, on an ephemeral port.
//! - [`proxy`]: a real reverse proxy (`haproxy`) in front of a relay.
//! - [`blindness`]: the forms of a sender that must not appear in what the relay keeps, and
//!   the checks that its logs were searched whole.

#[cfg(feature = "in-process")]
pub mod blindness;
#[cfg(feature = "in-process")]
pub mod harness;
pub mod launcher;
pub mod postgres;
pub mod proxy;
pub mod relay;
pub mod s3;
pub mod services;

pub use postgres::TestDatabase;
pub use proxy::ReverseProxy;
#[cfg(feature = "in-process")]
pub use relay::InProcessRelay;
pub use relay::{RelayConfig, RelayProcess};
pub use s3::S3Server;

/// `n` random bytes as lower-case hex (for names of databases, buckets, prefixes), from the
/// standard library's randomly keyed hasher, the process id and a counter.
pub fn random_hex(n: usize) -> String {
    use std::hash::{BuildHasher as _, Hasher as _};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut out = String::with_capacity(2 * n);
    while out.len() < 2 * n {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u32(std::process::id());
        h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
        if let Ok(t) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
            h.write_u128(t.as_nanos());
        }
        out.push_str(&format!("{:016x}", h.finish()));
    }
    out.truncate(2 * n);
    out
}
