//! `haven-test-relay`, as pytest, the Kotlin program and the browser test run it: it prints its
//! address, serves, streams its logs, and stops (removing its files) when stdin closes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::process::{Command, Stdio};

#[test]
fn prints_its_address_serves_and_stops_when_stdin_closes() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_haven-test-relay"))
        .args(["--set", "HAVEN_LOG=info", "--set", "HAVEN_MAX_DEVICES=7"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let (url, dir) = {
        let rest = line.trim().strip_prefix("{\"url\":\"").expect(&line);
        let (url, rest) = rest.split_once("\",\"dir\":\"").expect(&line);
        (url.to_owned(), rest.trim_end_matches("\"}").to_owned())
    };
    let addr = url.strip_prefix("http://").unwrap();
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "GET /health HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(std::path::Path::new(&dir).join("relay.db").exists());
    drop(child.stdin.take());
    let status = child.wait().unwrap();
    assert!(status.success());
    let mut logs = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut logs)
        .unwrap();
    assert!(logs.contains("relay stopped"), "{logs}");
    assert!(
        !std::path::Path::new(&dir).exists(),
        "its directory is removed"
    );
}

#[test]
fn refuses_unknown_arguments() {
    let out = Command::new(env!("CARGO_BIN_EXE_haven-test-relay"))
        .arg("--nonsense")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("usage"));
}
