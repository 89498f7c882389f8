//! `haven-hostile-relay`: a test relay that lies, for the tests that are not Rust (pytest, the
//! browser end-to-end test); see [`haven_e2e::hostile`].
//!
//! ```text
//! haven-hostile-relay [--set NAME=VALUE]...
//! ```
//!
//! Starts a relay in this process with `haven-testkit`'s test defaults plus the given settings,
//! behind the lying proxy. Prints one JSON line on stdout once both accept connections,
//! `{"url":"http://127.0.0.1:PORT","dir":"/tmp/haven-relay-…","control":"http://127.0.0.1:PORT/hostile"}`
//! (`url` is the proxy, what clients use; REST only), streams the relay's logs to stderr, and
//! stops when stdin closes or on SIGTERM/SIGINT.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::io::{Read as _, Write as _};
use std::process::ExitCode;
use std::time::Duration;

use haven_e2e::hostile::HostileRelay;
use haven_testkit::RelayConfig;

const USAGE: &str = "usage: haven-hostile-relay [--set NAME=VALUE]...";

fn main() -> ExitCode {
    let mut config = RelayConfig::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg != "--set" {
            eprintln!("haven-hostile-relay: unknown argument {arg:?}\n{USAGE}");
            return ExitCode::from(2);
        }
        let Some((name, value)) = args.next().and_then(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
        }) else {
            eprintln!("haven-hostile-relay: --set needs NAME=VALUE\n{USAGE}");
            return ExitCode::from(2);
        };
        config = config.set(&name, value);
    }
    let dir = config.dir().display().to_string();
    let relay = match HostileRelay::start(config) {
        Ok(relay) => relay,
        Err(e) => {
            eprintln!("haven-hostile-relay: {e}");
            return ExitCode::FAILURE;
        }
    };
    let line = serde_json::json!({"url": relay.url(), "dir": dir, "control": relay.control_url()});
    println!("{line}");
    let _ = std::io::stdout().flush();
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        eprintln!("haven-hostile-relay: no runtime");
        return ExitCode::FAILURE;
    };
    rt.block_on(async {
        let stdin_closed = tokio::task::spawn_blocking(|| {
            let mut sink = [0u8; 256];
            let mut stdin = std::io::stdin();
            while matches!(stdin.read(&mut sink), Ok(n) if n > 0) {}
        });
        let mut sent = 0usize;
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::pin!(stdin_closed);
        loop {
            tokio::select! {
                _ = &mut stdin_closed => break,
                _ = tokio::signal::ctrl_c() => break,
                Some(()) = async { match term.as_mut() { Some(t) => t.recv().await, None => None } } => break,
                _ = tick.tick() => sent = forward_logs(&relay.relay().logs(), sent),
            }
        }
        forward_logs(&relay.relay().logs(), sent);
    });
    drop(relay);
    ExitCode::SUCCESS
}

/// Writes what the relay logged since `sent` bytes to stderr; returns the new position.
fn forward_logs(logs: &str, sent: usize) -> usize {
    if let Some(new) = logs.get(sent..)
        && !new.is_empty()
    {
        let _ = std::io::stderr().write_all(new.as_bytes());
    }
    logs.len()
}
