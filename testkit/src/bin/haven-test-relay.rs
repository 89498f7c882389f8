//! `haven-test-relay`: one test relay for the tests that are not Rust (pytest, the Kotlin
//! program, the browser end-to-end test), from the same table of settings as the Rust tests.
//!
//! ```text
//! haven-test-relay [--set NAME=VALUE]... [--postgres] [--redis]
//! ```
//!
//! Starts a relay in this process with `haven-testkit`'s test defaults (a fresh SQLite database
//! and blob directory in a temporary directory, an ephemeral port, raised rate limits) plus the
//! given settings; `--postgres` puts it on a fresh database of the local PostgreSQL, `--redis`
//! connects it to the local Redis. Prints one JSON line on stdout once it accepts connections,
//! `{"url":"http://127.0.0.1:PORT","dir":"/tmp/haven-relay-…"}`, streams the relay's logs to
//! stderr, and stops gracefully (deleting its directory) when stdin closes or on SIGTERM/SIGINT,
//! so a test that dies takes its relay with it.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::io::Write as _;
use std::process::ExitCode;

use haven_testkit::{RelayConfig, TestDatabase, launcher, services};

const USAGE: &str = "usage: haven-test-relay [--set NAME=VALUE]... [--postgres] [--redis]";

fn main() -> ExitCode {
    let mut config = RelayConfig::new();
    let (mut postgres, mut redis) = (false, false);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--set" => {
                let Some((name, value)) = args.next().and_then(|kv| {
                    kv.split_once('=')
                        .map(|(k, v)| (k.to_owned(), v.to_owned()))
                }) else {
                    eprintln!("haven-test-relay: --set needs NAME=VALUE\n{USAGE}");
                    return ExitCode::from(2);
                };
                config = config.set(&name, value);
            }
            "--postgres" => postgres = true,
            "--redis" => redis = true,
            _ => {
                eprintln!("haven-test-relay: unknown argument {arg:?}\n{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        eprintln!("haven-test-relay: no runtime");
        return ExitCode::FAILURE;
    };
    // Kept alive until the relay stops.
    let database = if postgres {
        let Some(db) = rt.block_on(TestDatabase::create()) else {
            eprintln!("haven-test-relay: PostgreSQL is not available");
            return ExitCode::from(3);
        };
        config = config.database(db.url());
        Some(db)
    } else {
        None
    };
    if redis {
        let Some(url) = services::redis() else {
            eprintln!("haven-test-relay: Redis is not available");
            return ExitCode::from(3);
        };
        config = config.set("HAVEN_REDIS_URL", url);
    }
    let dir = config.dir().display().to_string();
    let mut relay = config.start();
    println!(
        "{{\"url\":\"{}\",\"dir\":{}}}",
        relay.url(),
        json_string(&dir)
    );
    let _ = std::io::stdout().flush();
    let sent = rt.block_on(launcher::forward_until_closed(|| relay.logs()));
    relay.stop();
    launcher::forward_logs(&relay.logs(), sent);
    drop(relay);
    drop(database);
    ExitCode::SUCCESS
}

/// `text` as a JSON string literal.
fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
