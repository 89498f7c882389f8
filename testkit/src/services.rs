//! The local services the service-backed tests use, found without configuration.
//!
//! Each service is taken from its `HAVEN_TEST_*` variable when set, and otherwise from the
//! standard local address (PostgreSQL on 127.0.0.1:5432 as `postgres`, Redis on
//! 127.0.0.1:6379, the `s3s-fs` binary on `PATH` or in `~/.cargo/bin`, `haproxy` on `PATH` or
//! in `/usr/sbin`). The value `off` turns a service off. A service is probed once per test
//! process.
//!
//! When a service is absent the test is *skipped by name*, never silently passed:
//! - a line `SKIPPED <test>: <why>` goes straight to the terminal (past libtest's output capture,
//!   so it shows even for a test that then reports `ok`), and to the file named by
//!   `HAVEN_TEST_SKIP_LOG` when that is set;
//! - with `HAVEN_TEST_REQUIRE_SERVICES=1` (CI sets it) an absent service fails the test instead.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs as _};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

/// Where to find PostgreSQL (an admin URL: tests create and drop their own databases with it).
pub const POSTGRES_VAR: &str = "HAVEN_TEST_POSTGRES_URL";
/// Where to find Redis.
pub const REDIS_VAR: &str = "HAVEN_TEST_REDIS_URL";
/// The `s3s-fs` binary (S3 server) for the blob tests.
pub const S3S_FS_VAR: &str = "HAVEN_TEST_S3S_FS";
/// The `haproxy` binary (reverse proxy) for the tests of client addresses behind a proxy.
pub const HAPROXY_VAR: &str = "HAVEN_TEST_HAPROXY";
/// When set (to anything but `0` or empty), an absent service fails the test.
pub const REQUIRE_VAR: &str = "HAVEN_TEST_REQUIRE_SERVICES";
/// When set, every skip is also appended to this file (one line each).
pub const SKIP_LOG_VAR: &str = "HAVEN_TEST_SKIP_LOG";

/// The default admin URL of the local PostgreSQL.
pub const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
/// The default URL of the local Redis.
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";

const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// The admin URL of a reachable PostgreSQL, or `None` after reporting the calling test as
/// skipped (or panicking, when services are required).
pub fn postgres() -> Option<String> {
    static FOUND: OnceLock<Result<String, String>> = OnceLock::new();
    available(
        "PostgreSQL",
        FOUND.get_or_init(|| {
            let url = configured(POSTGRES_VAR, DEFAULT_POSTGRES_URL)?;
            let addr = host_port(&url, 5432)?;
            // A PostgreSQL SSLRequest: any server answers it with one byte, 'S' or 'N'.
            let reply = exchange(&addr, &[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f], 1)
                .map_err(|e| format!("no PostgreSQL at {addr} ({e}); set {POSTGRES_VAR}"))?;
            match reply.first() {
                Some(b'S' | b'N') => Ok(url),
                _ => Err(format!("{addr} does not speak the PostgreSQL protocol")),
            }
        }),
    )
}

/// The URL of a reachable Redis, or `None` after reporting the calling test as skipped.
pub fn redis() -> Option<String> {
    static FOUND: OnceLock<Result<String, String>> = OnceLock::new();
    available(
        "Redis",
        FOUND.get_or_init(|| {
            let url = configured(REDIS_VAR, DEFAULT_REDIS_URL)?;
            let addr = host_port(&url, 6379)?;
            let reply = exchange(&addr, b"PING\r\n", 7)
                .map_err(|e| format!("no Redis at {addr} ({e}); set {REDIS_VAR}"))?;
            if reply.starts_with(b"+PONG") {
                Ok(url)
            } else {
                Err(format!(
                    "Redis at {addr} answered PING with {:?}",
                    String::from_utf8_lossy(&reply)
                ))
            }
        }),
    )
}

/// The `s3s-fs` binary, or `None` after reporting the calling test as skipped.
pub fn s3s_fs() -> Option<PathBuf> {
    static FOUND: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    available(
        "s3s-fs",
        FOUND.get_or_init(|| {
            let install = "cargo install s3s-fs@0.14.1 --features binary --locked";
            match std::env::var(S3S_FS_VAR) {
                Ok(v) if v == "off" => Err(format!("{S3S_FS_VAR}=off")),
                Ok(v) if Path::new(&v).is_file() => Ok(PathBuf::from(v)),
                Ok(v) => Err(format!("{S3S_FS_VAR}={v} is not a file")),
                Err(_) => find_s3s_fs()
                    .ok_or_else(|| format!("no s3s-fs on PATH or in ~/.cargo/bin ({install})")),
            }
        }),
    )
}

/// The `haproxy` binary (Debian: `apt-get install haproxy`), from `HAVEN_TEST_HAPROXY`, `PATH`,
/// `/usr/sbin` or `/usr/local/sbin`; or `None` after reporting the calling test as skipped.
pub fn haproxy() -> Option<PathBuf> {
    static FOUND: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    available(
        "haproxy",
        FOUND.get_or_init(|| match std::env::var(HAPROXY_VAR) {
            Ok(v) if v == "off" => Err(format!("{HAPROXY_VAR}=off")),
            Ok(v) if Path::new(&v).is_file() => Ok(PathBuf::from(v)),
            Ok(v) => Err(format!("{HAPROXY_VAR}={v} is not a file")),
            Err(_) => {
                let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
                    .map(|p| std::env::split_paths(&p).collect())
                    .unwrap_or_default();
                dirs.extend(["/usr/sbin", "/usr/local/sbin"].map(PathBuf::from));
                dirs.into_iter()
                    .map(|d| d.join("haproxy"))
                    .find(|p| p.is_file())
                    .ok_or_else(|| {
                        "no haproxy on PATH or in /usr/sbin (apt-get install haproxy)".to_owned()
                    })
            }
        }),
    )
}

fn find_s3s_fs() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(Path::new(&home).join(".cargo/bin"));
    }
    dirs.into_iter()
        .map(|d| d.join("s3s-fs"))
        .find(|p| p.is_file())
}

/// Whether an absent service fails the test (`HAVEN_TEST_REQUIRE_SERVICES`).
pub fn services_required() -> bool {
    std::env::var(REQUIRE_VAR).is_ok_and(|v| !v.is_empty() && v != "0")
}

/// The value of `var`, its default when unset, or an error when it is `off`.
fn configured(var: &str, default: &str) -> Result<String, String> {
    match std::env::var(var) {
        Ok(v) if v == "off" => Err(format!("{var}=off")),
        Ok(v) if !v.is_empty() => Ok(v),
        _ => Ok(default.to_owned()),
    }
}

fn available<T: Clone>(service: &str, found: &Result<T, String>) -> Option<T> {
    match found {
        Ok(v) => Some(v.clone()),
        Err(why) => {
            skip(&format!("{service} is not available: {why}"));
            None
        }
    }
}

/// Reports the calling test as skipped (or fails it when services are required).
///
/// The test's name is the name of the calling thread, which libtest sets to the test's path.
pub fn skip(why: &str) {
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("<unnamed test>");
    // A test that skips must be visible as such: with services required it fails.
    #[allow(clippy::panic)] // Failing the calling test is the point.
    if services_required() {
        panic!("{test}: {why}, and {REQUIRE_VAR} is set");
    }
    let line = format!("SKIPPED {test}: {why}\n");
    // Straight to the process's stderr: libtest captures only the print macros, and a skip must
    // show even when the test then reports `ok`.
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
    if let Some(path) = std::env::var_os(SKIP_LOG_VAR)
        && let Ok(mut file) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
    {
        let _ = file.write_all(line.as_bytes());
    }
}

/// `host:port` of a URL (`scheme://[user[:password]@]host[:port][/…]`), resolved.
fn host_port(url: &str, default_port: u16) -> Result<SocketAddr, String> {
    let rest = url
        .split_once("://")
        .map_or(url, |(_, rest)| rest)
        .split(['/', '?'])
        .next()
        .unwrap_or_default();
    let authority = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    let with_port = if authority.starts_with('[') {
        if authority.contains("]:") {
            authority.to_owned()
        } else {
            format!("{authority}:{default_port}")
        }
    } else if authority.contains(':') {
        authority.to_owned()
    } else {
        format!("{authority}:{default_port}")
    };
    with_port
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {with_port}: {e}"))?
        .next()
        .ok_or_else(|| format!("{with_port} resolves to nothing"))
}

/// Connects, writes `request` and reads up to `want` bytes (less if the peer closes first).
fn exchange(addr: &SocketAddr, request: &[u8], want: usize) -> std::io::Result<Vec<u8>> {
    let mut stream = TcpStream::connect_timeout(addr, PROBE_TIMEOUT)?;
    stream.set_read_timeout(Some(PROBE_TIMEOUT))?;
    stream.set_write_timeout(Some(PROBE_TIMEOUT))?;
    stream.write_all(request)?;
    let mut reply = vec![0u8; want];
    let mut got = 0;
    while got < want {
        match stream.read(&mut reply[got..])? {
            0 => break,
            n => got += n,
        }
    }
    reply.truncate(got);
    Ok(reply)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn host_port_reads_the_authority() {
        let a = |u: &str, p: u16| host_port(u, p).unwrap().to_string();
        assert_eq!(
            a("postgres://postgres@127.0.0.1:5433/x", 5432),
            "127.0.0.1:5433"
        );
        assert_eq!(a("postgres://u:pw@127.0.0.1/x?y=z", 5432), "127.0.0.1:5432");
        assert_eq!(a("redis://127.0.0.1", 6379), "127.0.0.1:6379");
        assert_eq!(a("redis://[::1]:7000", 6379), "[::1]:7000");
        assert_eq!(a("redis://[::1]", 6379), "[::1]:6379");
    }

    #[test]
    fn a_closed_port_is_reported_not_hung() {
        let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = free.local_addr().unwrap();
        drop(free);
        assert!(exchange(&addr, b"PING\r\n", 7).is_err());
    }
}
