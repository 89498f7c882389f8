//! End-to-end: the real `haven-relay` binary.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Spawns the binary in `dir` with `env`, returns it and the address it printed.
fn spawn(dir: &std::path::Path, env: &[(&str, &str)]) -> (Child, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_haven-relay"));
    cmd.current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env_clear();
    for key in ["PATH", "HOME"] {
        if let Ok(v) = std::env::var(key) {
            cmd.env(key, v);
        }
    }
    cmd.env("HAVEN_LISTEN", "127.0.0.1:0")
        .env("HAVEN_METRICS_LISTEN", "127.0.0.1:0");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("haven-relay listening on http://")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    (child, addr)
}

/// A minimal HTTP/1.1 GET; retries while the relay is still opening its database.
fn get(addr: &str, path: &str) -> (u16, String) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let attempt = (|| -> std::io::Result<(u16, String)> {
            let mut stream = TcpStream::connect(addr)?;
            stream.set_read_timeout(Some(Duration::from_secs(10)))?;
            write!(
                stream,
                "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
            )?;
            let mut response = String::new();
            stream.read_to_string(&mut response)?;
            let status = response
                .split(' ')
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            Ok((status, response))
        })();
        match attempt {
            Ok((status, body)) if status != 0 => return (status, body),
            _ if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
            other => panic!("no answer from {addr}: {other:?}"),
        }
    }
}

fn stop(mut child: Child) {
    // Graceful shutdown on SIGTERM: the process exits by itself with success.
    let status = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut stderr = String::new();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut stderr)
                .unwrap();
            assert!(status.success(), "exit {status}; stderr: {stderr}");
            assert!(stderr.contains("relay stopped"), "{stderr}");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "relay did not stop after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn starts_with_no_configuration_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let (child, addr) = spawn(dir.path(), &[]);
    let (status, body) = get(&addr, "/health");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"ok\""));
    assert!(body.contains("x-frame-options: DENY"), "{body}");
    let (status, _) = get(&addr, "/ready");
    assert_eq!(status, 200);
    let (status, body) = get(&addr, "/openapi.json");
    assert_eq!(status, 200);
    assert!(body.contains("/v1/login/finish"));
    assert!(
        dir.path().join("data/haven.db").exists(),
        "default database ./data/haven.db"
    );
    stop(child);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_on_postgres_and_redis() {
    let Some((url, _guard)) = common::pg_database().await else {
        return;
    };
    let Ok(redis) = std::env::var("HAVEN_TEST_REDIS_URL") else {
        println!("skipped: HAVEN_TEST_REDIS_URL is not set");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("DATABASE_URL", url.as_str()),
        ("REDIS_URL", redis.as_str()),
    ];
    let (child, addr) = tokio::task::block_in_place(|| spawn(dir.path(), &env));
    let (status, body) = tokio::task::block_in_place(|| get(&addr, "/ready"));
    assert_eq!(status, 200, "{body}");
    // Nothing was written locally: the state lives in Postgres.
    assert!(!dir.path().join("data").exists());
    tokio::task::block_in_place(|| stop(child));
}
